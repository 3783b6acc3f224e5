package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"pointpost/rewards"
)

func TestTimelineExplainsPoints(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com")
	ann := w.consumers[0].ID
	fall := w.newJob(t, "Fall golf")
	click := w.newRule(t, "click bonus", 5)
	at := func() int64 { return ms(w.s.Now()) }
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := w.s.write.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	// Spring golf: sent, replied (awarded), replied again (refused), clicked (awarded,
	// left pending). Fall golf: rejected by her server.
	sent := at()
	exec(`INSERT INTO deliveries (job_key, consumer_id, sent, received, sent_at, received_at, updated_at)
		VALUES (?, ?, 1, 1, ?, ?4, ?4)`, w.job.Key, ann, sent, sent+60000)
	exec(`INSERT INTO deliveries (job_key, consumer_id, rejected, last_error, updated_at)
		VALUES (?, ?, 1, '550 5.1.1 mailbox unknown', ?)`, fall.Key, ann, at())
	exec(`INSERT INTO acknowledgements (job_key, consumer_id, channel, source, rule_id, awarded, points, created_at)
		VALUES (?, ?, 'reply', 'smtp <a@b>', ?, 1, 10, ?)`, w.job.Key, ann, w.rule, at())
	w.accrue(t, ann, 0, 10)
	exec(`INSERT INTO acknowledgements (job_key, consumer_id, channel, source, rule_id, awarded, points, reason, created_at)
		VALUES (?, ?, 'reply', 'smtp <c@d>', ?, 0, 0, 'already awarded for this invitation', ?)`, w.job.Key, ann, w.rule, at())
	if n, err := w.s.Settle(ctx, 100); err != nil || n != 1 {
		t.Fatalf("Settle = %d, %v", n, err)
	}
	item := &rewards.CatalogItem{Name: "Golf tee", Cost: 4, Stock: 2}
	if err := w.s.AddCatalogItem(ctx, item); err != nil {
		t.Fatal(err)
	}
	if _, err := w.s.Redeem(ctx, ann, item.ID); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO acknowledgements (job_key, consumer_id, channel, rule_id, awarded, points, created_at)
		VALUES (?, ?, 'click', ?, 1, 5, ?)`, w.job.Key, ann, click, at())
	exec(`INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
		VALUES (?, ?, ?, 0, ?, 5, ?)`, click, w.job.Key, ann, w.issuer.ID, at())

	tl, err := w.s.Timeline(ctx, " Ann@Example.com ")
	if err != nil {
		t.Fatal(err)
	}
	if tl.Consumer.ID != ann || tl.Balance != 6 || tl.LedgerBalance != 6 || tl.Pending != 5 || tl.Consumer.PointsBalance != 6 {
		t.Errorf("consumer %d balance %d ledger %d pending %d; want %d, 6, 6, 5", tl.Consumer.ID, tl.Balance,
			tl.LedgerBalance, tl.Pending, ann)
	}
	if len(tl.Deliveries) != 2 || !tl.Deliveries[0].Sent || !tl.Deliveries[0].Received || tl.Deliveries[0].SentAt.IsZero() ||
		!tl.Deliveries[1].Rejected || tl.Deliveries[1].LastError == "" || tl.Deliveries[1].JobName != "Fall golf" {
		t.Errorf("deliveries %+v", tl.Deliveries)
	}
	if len(tl.Acknowledgements) != 3 || !tl.Acknowledgements[0].Awarded || tl.Acknowledgements[0].RuleDescription != "reply bonus" ||
		tl.Acknowledgements[1].Awarded || tl.Acknowledgements[1].Reason != "already awarded for this invitation" {
		t.Errorf("acknowledgements %+v", tl.Acknowledgements)
	}
	if len(tl.Accruals) != 2 || !tl.Accruals[0].Posted || tl.Accruals[1].Posted || tl.Accruals[1].Points != 5 ||
		tl.Accruals[0].IssuerName != "Acme Golf" {
		t.Errorf("accruals %+v", tl.Accruals)
	}
	if len(tl.Postings) != 2 || tl.Postings[0].Kind != "accrual" || tl.Postings[0].Amount != 10 ||
		tl.Postings[0].Counter != rewards.IssuerAccount(w.issuer.ID) || tl.Postings[0].JobKey != w.job.Key ||
		tl.Postings[1].Kind != "redemption" || tl.Postings[1].Amount != -4 || tl.Postings[1].Counter != rewards.AccountRedeemed {
		t.Errorf("postings %+v", tl.Postings)
	}
	if len(tl.Redemptions) != 1 || tl.Redemptions[0].ItemName != "Golf tee" || tl.Redemptions[0].Cost != 4 {
		t.Errorf("redemptions %+v", tl.Redemptions)
	}

	var text bytes.Buffer
	if err := tl.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	report := text.String()
	t.Log("\n" + report)
	for _, want := range []string{
		"ann@example.com",
		"6 points posted, 5 points pending settlement",
		"no points under rule",
		"already awarded for this invitation",
		"550 5.1.1 mailbox unknown",
		`redeemed "Golf tee"`,
		`job ` + strconv.FormatInt(fall.Key, 10) + ` "Fall golf": never delivered`,
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Index(report, "already awarded") < strings.Index(report, "reply acknowledged (smtp <a@b>): 10 points") {
		t.Errorf("the report is not in time order:\n%s", report)
	}

	b, err := json.Marshal(tl)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if c, _ := raw["consumer"].(map[string]any); c["email"] != "ann@example.com" || c["first_name"] != "Ann" {
		t.Errorf("consumer in JSON: %v", raw["consumer"])
	}
	if acks, _ := raw["acknowledgements"].([]any); len(acks) != 3 || acks[1].(map[string]any)["reason"] != "already awarded for this invitation" {
		t.Errorf("acknowledgements in JSON: %v", raw["acknowledgements"])
	}
	for _, key := range []string{"balance", "ledger_balance", "pending", "deliveries", "accruals", "postings", "redemptions"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, b)
		}
	}
	var back rewards.Timeline
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, tl) {
		t.Errorf("JSON round trip:\n got %+v\nwant %+v", back, *tl)
	}

	acct, err := w.s.Account(ctx, ann, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range acct.History {
		kinds = append(kinds, e.Kind)
	}
	// One line per award (its acknowledgement and posting are the same points), pending
	// until posted; the refused acknowledgement keeps its own line.
	want := []string{"accrual", "redemption", "acknowledgement", "accrual"}
	if acct.Balance != 6 || acct.Pending != 5 || !reflect.DeepEqual(kinds, want) {
		t.Fatalf("account balance %d pending %d history %v; want 6, 5, %v", acct.Balance, acct.Pending, kinds, want)
	}
	if !acct.History[0].Pending || acct.History[3].Pending {
		t.Errorf("awards pending %v and %v, want the newest pending and the oldest posted", acct.History[0].Pending, acct.History[3].Pending)
	}
	if e := acct.History[2]; e.Points != 0 || !strings.Contains(e.Detail, "already awarded") || e.JobName != "Spring golf" {
		t.Errorf("refused acknowledgement in history: %+v", e)
	}

	if _, err := w.s.Timeline(ctx, "nobody@example.com"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("Timeline of a stranger: %v, want rewards.ErrNotFound", err)
	}
	if _, err := w.s.Account(ctx, ann+100, 10); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("Account of a stranger: %v, want rewards.ErrNotFound", err)
	}
}
