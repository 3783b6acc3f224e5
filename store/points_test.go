package store

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// One issuer whose running total cannot take another award (a total stored before the bounds
// existed) and one rule with points past rewards.MaxAwardPoints (likewise): their
// acknowledgements share a batch with other issuers' ones, which must go through.
func TestAcknowledgePoisonFailsAlone(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 4)
	full := seedAckIssuer(t, s, "full")
	huge := seedAckIssuer(t, s, "huge")
	fair := seedAckIssuer(t, s, "fair")
	fullRule := seedAckRule(t, s, rewards.AwardRule{IssuerID: full, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	fairRule := seedAckRule(t, s, rewards.AwardRule{IssuerID: fair, Type: rewards.RuleClick, Points: 7, Frequency: rewards.FrequencyOnce})
	// A rule stored before migration 0010 could hold any points.
	if _, err := s.write.Exec(`DROP TRIGGER award_rules_points_bound_insert`); err != nil {
		t.Fatal(err)
	}
	hugeRule := seedAckRule(t, s, rewards.AwardRule{IssuerID: huge, Type: rewards.RuleClick, Points: 1, Frequency: rewards.FrequencyOnce})
	if _, err := s.write.Exec(`UPDATE award_rules SET points = ? WHERE id = ?`, int64(math.MaxInt64), hugeRule.ID); err == nil {
		t.Fatal("the update trigger let a rule's points past the bound")
	}
	if _, err := s.write.Exec(`DROP TRIGGER award_rules_points_bound_update`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(`UPDATE award_rules SET points = ? WHERE id = ?`, int64(math.MaxInt64), hugeRule.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(`UPDATE issuers SET spent = ? WHERE id = ?`, int64(math.MaxInt64-2), full); err != nil {
		t.Fatal(err)
	}
	fullJob := seedAckJob(t, s, full, time.Time{}, fullRule)
	hugeJob := seedAckJob(t, s, huge, time.Time{}, hugeRule)
	fairJob := seedAckJob(t, s, fair, time.Time{}, fairRule)

	acks := []postoffice.Ack{
		ackAt(fairJob, cs[0], postoffice.ChannelClick, ackT0),
		ackAt(hugeJob, cs[0], postoffice.ChannelClick, ackT0),
		ackAt(hugeJob, cs[1], postoffice.ChannelClick, ackT0),
		ackAt(fullJob, cs[1], postoffice.ChannelClick, ackT0),
		ackAt(fairJob, cs[1], postoffice.ChannelClick, ackT0),
		ackAt(fairJob, cs[2], postoffice.ChannelClick, ackT0),
	}
	var reqs []*ackRequest
	for _, a := range acks {
		reqs = append(reqs, &ackRequest{ctx: context.Background(), ack: a, reply: make(chan struct{})})
	}
	s.commitAcks(slices.Clone(reqs))
	for _, req := range reqs {
		<-req.reply
	}
	for _, i := range []int{0, 4, 5} {
		if reqs[i].err != nil {
			t.Fatalf("innocent acknowledgement %d: %v", i, reqs[i].err)
		}
		wantAckDecision(t, reqs[i].res, 7, "")
	}
	for _, i := range []int{1, 2} {
		if reqs[i].err != nil {
			t.Fatalf("acknowledgement %d under the huge rule: %v", i, reqs[i].err)
		}
		wantAckDecision(t, reqs[i].res, 0, "outside 1 to 1000000")
	}
	if reqs[3].err == nil || reqs[3].res != nil {
		t.Fatalf("the full issuer's acknowledgement: %+v, %v; want its own error", reqs[3].res, reqs[3].err)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals WHERE issuer_id = ?`, fair); n != 3 {
		t.Fatalf("%d accruals of the fair issuer, want 3", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals WHERE issuer_id != ?`, fair); n != 0 {
		t.Fatalf("%d accruals of the poisoned issuers, want 0", n)
	}
	// Answered through the committer, as a caller is.
	res := mustAcknowledge(t, s, ackAt(fairJob, cs[3], postoffice.ChannelClick, ackT0))
	wantAckDecision(t, res, 7, "")
}

// An accrual that cannot be posted (its consumer's balance would overflow; its points are
// past the bound, stored before it) is held, and settlement posts everyone else's.
func TestSettleHoldsWhatItCannotPost(t *testing.T) {
	w := newLedgerWorld(t, "alice@example.com", "bob@example.com", "carol@example.com")
	ctx := context.Background()
	alice, bob, carol := w.consumers[0].ID, w.consumers[1].ID, w.consumers[2].ID
	forceBalance(t, w, alice, math.MaxInt64-5)
	w.accrue(t, alice, 1, 10)
	if _, err := w.s.write.Exec(`DROP TRIGGER accruals_points_bound_insert`); err != nil {
		t.Fatal(err)
	}
	w.accrue(t, carol, 2, 1<<40)
	w.accrue(t, bob, 3, 10)
	w.accrue(t, bob, 4, 5)

	n, err := w.s.Settle(ctx, 100)
	var se *rewards.SettleError
	if !errors.As(err, &se) || n != 2 {
		t.Fatalf("Settle = %d, %v; want 2 and a SettleError", n, err)
	}
	if len(se.Held) != 2 || se.Held[0].ConsumerID != alice || se.Held[1].ConsumerID != carol {
		t.Fatalf("held %+v, want alice's and carol's", se.Held)
	}
	if !strings.Contains(se.Held[1].Reason, "outside 1 to 1000000") {
		t.Fatalf("carol's reason %q", se.Held[1].Reason)
	}
	if b := w.balance(t, bob); b != 15 {
		t.Fatalf("bob's balance %d, want 15", b)
	}
	if b := w.balance(t, alice); b != math.MaxInt64-5 {
		t.Fatalf("alice's balance %d, want it untouched", b)
	}
	// Held accruals are skipped from now on: the next run posts the new one and no error.
	w.accrue(t, bob, 5, 1)
	if n, err := w.s.Settle(ctx, 100); err != nil || n != 1 {
		t.Fatalf("next Settle = %d, %v; want 1, nil", n, err)
	}
	var pending int
	if err := w.s.read.QueryRow(`SELECT count(*) FROM accruals WHERE posted_at IS NULL AND settle_error IS NOT NULL`).Scan(&pending); err != nil || pending != 2 {
		t.Fatalf("%d held accruals pending, %v; want 2", pending, err)
	}
}

// The Settler goes on past held accruals to every batch after them.
func TestSettlerGoesOnPastHeldAccruals(t *testing.T) {
	w := newLedgerWorld(t, "alice@example.com", "bob@example.com")
	alice, bob := w.consumers[0].ID, w.consumers[1].ID
	forceBalance(t, w, alice, math.MaxInt64-5)
	w.accrue(t, alice, 1, 10)
	w.accrue(t, alice, 2, 10)
	for i := range int64(7) {
		w.accrue(t, bob, 10+i, 1)
	}
	st := &rewards.Settler{Store: w.s, Batch: 2}
	n, err := st.SettleNow(context.Background())
	var se *rewards.SettleError
	if !errors.As(err, &se) || len(se.Held) != 2 || n != 7 {
		t.Fatalf("SettleNow = %d, %v; want 7 posted and 2 held", n, err)
	}
	if b := w.balance(t, bob); b != 7 {
		t.Fatalf("bob's balance %d, want 7", b)
	}
}

// The database refuses points past the bounds of rewards, whoever writes.
func TestPointsBoundsInTheDatabase(t *testing.T) {
	w := newLedgerWorld(t, "alice@example.com")
	for _, tc := range []struct {
		name string
		ok   bool
		q    string
		args []any
	}{
		{"rule at the bound", true, `UPDATE award_rules SET points = ? WHERE id = ?`, []any{rewards.MaxAwardPoints, w.rule}},
		{"rule past the bound", false, `UPDATE award_rules SET points = ? WHERE id = ?`, []any{rewards.MaxAwardPoints + 1, w.rule}},
		{"rule budget at the bound", true, `UPDATE award_rules SET budget = ? WHERE id = ?`, []any{rewards.MaxBudget, w.rule}},
		{"rule budget past the bound", false, `UPDATE award_rules SET budget = ? WHERE id = ?`, []any{rewards.MaxBudget + 1, w.rule}},
		{"issuer budget at the bound", true, `UPDATE issuers SET budget = ? WHERE id = ?`, []any{rewards.MaxBudget, w.issuer.ID}},
		{"issuer budget past the bound", false, `UPDATE issuers SET budget = ? WHERE id = ?`, []any{rewards.MaxBudget + 1, w.issuer.ID}},
		{"accrual at the bound", true, `INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
			VALUES (?, ?, ?, 1, ?, ?, 0)`, []any{w.rule, w.job.Key, w.consumers[0].ID, w.issuer.ID, rewards.MaxAwardPoints}},
		{"accrual past the bound", false, `INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
			VALUES (?, ?, ?, 2, ?, ?, 0)`, []any{w.rule, w.job.Key, w.consumers[0].ID, w.issuer.ID, rewards.MaxAwardPoints + 1}},
		{"catalog cost at the bound", true, `INSERT INTO catalog (name, cost, stock, created_at) VALUES ('a', ?, 1, 0)`, []any{rewards.MaxBudget}},
		{"catalog cost past the bound", false, `INSERT INTO catalog (name, cost, stock, created_at) VALUES ('b', ?, 1, 0)`, []any{rewards.MaxBudget + 1}},
		{"ledger amount past the bound", false, `INSERT INTO ledger_entries (posting_id, account, amount, kind, created_at)
			VALUES (999, 'redeemed', ?, 'correction', 0)`, []any{rewards.MaxBudget + 1}},
	} {
		_, err := w.s.write.Exec(tc.q, tc.args...)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// Every way in refuses points past the bounds, with the field named.
func TestPointsBoundsRefusedWithTheField(t *testing.T) {
	w := newLedgerWorld(t, "alice@example.com")
	ctx := context.Background()
	if err := w.s.SetIssuerBudget(ctx, w.issuer.ID, rewards.MaxBudget+1); err == nil || !strings.HasPrefix(err.Error(), "budget:") {
		t.Fatalf("SetIssuerBudget past the bound: %v", err)
	}
	if err := w.s.SetIssuerBudget(ctx, w.issuer.ID, rewards.MaxBudget); err != nil {
		t.Fatalf("SetIssuerBudget at the bound: %v", err)
	}
	r := rewards.AwardRule{IssuerID: w.issuer.ID, Type: rewards.RuleReply, Points: rewards.MaxAwardPoints + 1, Frequency: rewards.FrequencyOnce}
	if err := w.s.CreateRule(ctx, &r); err == nil || !strings.HasPrefix(err.Error(), "points:") {
		t.Fatalf("CreateRule past the bound: %v", err)
	}
	it := rewards.CatalogItem{Name: "yacht", Cost: rewards.MaxBudget + 1, Stock: 1}
	if err := w.s.AddCatalogItem(ctx, &it); err == nil || !strings.HasPrefix(err.Error(), "cost:") {
		t.Fatalf("AddCatalogItem past the bound: %v", err)
	}
	if err := w.s.Correct(ctx, w.consumers[0].ID, w.issuer.ID, rewards.MaxBudget+1, "typo"); err == nil || !strings.Contains(err.Error(), "points must be from") {
		t.Fatalf("Correct past the bound: %v", err)
	}
	forceBalance(t, w, w.consumers[0].ID, math.MaxInt64-10)
	if err := w.s.Correct(ctx, w.consumers[0].ID, w.issuer.ID, 100, "bonus"); err == nil || !strings.Contains(err.Error(), "overflow") {
		t.Fatalf("Correct past int64: %v", err)
	}
	if b := w.balance(t, w.consumers[0].ID); b != math.MaxInt64-10 {
		t.Fatalf("balance %d after a refused correction", b)
	}
}

// forceBalance writes a balance by SQL, as one kept before the bounds could be.
func forceBalance(t *testing.T, w *ledgerWorld, consumerID, points int64) {
	t.Helper()
	if _, err := w.s.write.Exec(`UPDATE consumers SET points_balance = ? WHERE id = ?`, points, consumerID); err != nil {
		t.Fatal(err)
	}
}
