package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

func editorDraft(t *testing.T, s *Store, issuer int64, text, html *postoffice.Message, rules postoffice.JobRules) *postoffice.Job {
	t.Helper()
	j := &postoffice.Job{IssuerID: issuer, Name: "draft", State: postoffice.JobDraft, Start: ackT0, Stop: ackT0.Add(time.Hour), ClientCount: 5}
	if err := s.CreateJob(context.Background(), j, text, html, rules); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestUpdateDraftJobRewritesMessagesAndRules(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme := seedAckIssuer(t, s, "acme")
	old := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleReply, Points: 1, Frequency: rewards.FrequencyOnce})
	kept := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleClick, Points: 2, Frequency: rewards.FrequencyOnce})
	j := editorDraft(t, s, acme, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil,
		postoffice.JobRules{Existing: []int64{old.ID}})
	textID := j.TextMessageID

	up := &postoffice.Job{Key: j.Key, IssuerID: acme, Name: "renamed", State: postoffice.JobScheduled, Start: ackT0,
		Stop: ackT0.Add(2 * time.Hour), ClientCount: 9, Selection: `{"all":[]}`, SelectionSQL: "country = ?", SelectionArgs: []any{"US"}}
	newRule := &rewards.AwardRule{Type: rewards.RuleReply, Points: 7, Frequency: rewards.FrequencyOnce}
	err := s.UpdateDraftJob(ctx, up, nil, &postoffice.Message{Type: "html", Subject: "H", Body: "<p>x</p>"},
		postoffice.JobRules{Existing: []int64{kept.ID}, New: []*rewards.AwardRule{newRule}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Job(ctx, j.Key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "renamed" || got.State != postoffice.JobScheduled || got.ClientCount != 9 || got.TextMessageID != 0 ||
		got.HTMLMessageID == 0 || got.SelectionSQL != "country = ?" || len(got.SelectionArgs) != 1 {
		t.Fatalf("job after update: %+v", got)
	}
	text, html, err := s.Messages(ctx, got)
	if err != nil || text != nil || html == nil || html.Subject != "H" {
		t.Fatalf("messages: %v %+v %+v", err, text, html)
	}
	var n int
	if err := s.read.QueryRow(`SELECT count(*) FROM messages WHERE id = ?`, textID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the dropped text message is still stored: %d, %v", n, err)
	}
	rules, err := s.JobRules(ctx, j.Key)
	if err != nil || len(rules) != 2 || rules[0].ID != kept.ID || rules[1].ID != newRule.ID {
		t.Fatalf("job rules: %v %+v", err, rules)
	}

	// Now scheduled, it is no longer a draft: nothing changes.
	up.Name, up.State = "again", postoffice.JobDraft
	if err := s.UpdateDraftJob(ctx, up, nil, &postoffice.Message{Type: "html", Subject: "H", Body: "b"}, postoffice.JobRules{}); !errors.Is(err, rewards.ErrConflict) ||
		!strings.Contains(err.Error(), "only a draft") {
		t.Fatalf("update of a scheduled job: %v, want rewards.ErrConflict saying only a draft can be changed", err)
	}
	if got, _ := s.Job(ctx, j.Key); got.Name != "renamed" {
		t.Fatalf("a refused update changed the job: %q", got.Name)
	}
	up.Key = 999
	if err := s.UpdateDraftJob(ctx, up, nil, &postoffice.Message{Type: "html", Subject: "H", Body: "b"}, postoffice.JobRules{}); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
}

func TestUpdateDraftJobRefusesAnotherIssuersRule(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme, bolt := seedAckIssuer(t, s, "acme"), seedAckIssuer(t, s, "bolt")
	theirs := seedAckRule(t, s, rewards.AwardRule{IssuerID: bolt, Type: rewards.RuleReply, Points: 1, Frequency: rewards.FrequencyOnce})
	j := editorDraft(t, s, acme, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{})
	j.Name = "changed"
	err := s.UpdateDraftJob(ctx, j, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{Existing: []int64{theirs.ID}})
	var fe *postoffice.FieldError
	if !errors.As(err, &fe) || fe.Field != "rule_ids[0]" {
		t.Fatalf("another issuer's rule: %v", err)
	}
	if got, _ := s.Job(ctx, j.Key); got.Name != "draft" {
		t.Fatal("the refused update was partly written")
	}
}

func TestSampleConsumerAndBudget(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{
		{Email: "a@example.com", Country: "FR"}, {Email: "b@example.com", Country: "US", FirstName: "Bea"},
		{Email: "c@example.com", Country: "US", Status: rewards.StatusUnsubscribed},
	}); err != nil {
		t.Fatal(err)
	}
	c, err := s.SampleConsumer(ctx, "country = ?", []any{"US"}, false)
	if err != nil || c.Email != "b@example.com" || c.FirstName != "Bea" {
		t.Fatalf("sample: %+v, %v", c, err)
	}
	if _, err := s.SampleConsumer(ctx, "country = ?", []any{"DE"}, false); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("no match: %v", err)
	}
	if _, err := s.SampleConsumer(ctx, "email IN (SELECT mail_from FROM outbox)", nil, true); !errors.Is(err, ErrSelectionRefused) {
		t.Fatalf("a raw selection reading another table: %v", err)
	}

	acme := seedAckIssuer(t, s, "acme")
	if err := s.SetIssuerBudget(ctx, acme, 500); err != nil {
		t.Fatal(err)
	}
	if budget, spent, err := s.BudgetOfIssuer(ctx, acme); err != nil || budget != 500 || spent != 0 {
		t.Fatalf("budget %d spent %d: %v", budget, spent, err)
	}
	if _, _, err := s.BudgetOfIssuer(ctx, 999); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("missing issuer: %v", err)
	}
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleReply, Points: 1, Frequency: rewards.FrequencyOnce})
	spent, err := s.RulesSpent(ctx, acme)
	if v, ok := spent[r.ID]; err != nil || !ok || v != 0 || len(spent) != 1 {
		t.Fatalf("rules spent: %v %v", spent, err)
	}
}
