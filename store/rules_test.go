package store

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

func TestRulesCreateReadUpdateRetire(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme := seedAckIssuer(t, s, "acme")
	r := rewards.AwardRule{IssuerID: acme, Description: "daily click", Type: rewards.RuleClick, Points: 3,
		Frequency: rewards.FrequencyPeriod, Period: 24 * time.Hour, Start: ackT0, Stop: ackT0.Add(90 * 24 * time.Hour),
		IssuerURL: "https://acme.example", SuccessURL: "https://acme.example/thanks", Budget: 1000}
	if err := s.CreateRule(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.ID == 0 {
		t.Fatal("CreateRule did not set the ID")
	}
	got, err := s.Rule(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, r) {
		t.Fatalf("Rule = %+v\nwant %+v", *got, r)
	}

	r.Points, r.Frequency, r.Period, r.MaxTimes, r.Stop = 4, rewards.FrequencyTimes, 0, 5, time.Time{}
	if err := s.UpdateRule(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.Rule(ctx, r.ID); !reflect.DeepEqual(*got, r) {
		t.Fatalf("after update %+v\nwant %+v", *got, r)
	}

	if err := s.RetireRule(ctx, acme, r.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.Rule(ctx, r.ID); !got.Retired {
		t.Fatal("not retired")
	}
	// An update keeps the rule retired and says so.
	r.Retired = false
	if err := s.UpdateRule(ctx, &r); err != nil || !r.Retired {
		t.Fatalf("UpdateRule of a retired rule: %v, Retired %v", err, r.Retired)
	}

	other := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleReply, Points: 1, Frequency: rewards.FrequencyOnce})
	bolt := seedAckIssuer(t, s, "bolt")
	seedAckRule(t, s, rewards.AwardRule{IssuerID: bolt, Type: rewards.RuleReply, Points: 1, Frequency: rewards.FrequencyOnce})
	rules, err := s.Rules(ctx, acme)
	if err != nil || len(rules) != 2 || rules[0].ID != r.ID || rules[1].ID != other.ID {
		t.Fatalf("Rules = %+v, %v", rules, err)
	}
}

func TestRulesErrors(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme := seedAckIssuer(t, s, "acme")
	bad := rewards.AwardRule{IssuerID: acme, Type: "fax", Points: 1, Frequency: rewards.FrequencyOnce}
	if err := s.CreateRule(ctx, &bad); err == nil || !strings.HasPrefix(err.Error(), "type:") {
		t.Fatalf("bad type: %v", err)
	}
	orphan := rewards.AwardRule{IssuerID: acme + 10, Type: rewards.RuleClick, Points: 1, Frequency: rewards.FrequencyOnce}
	if err := s.CreateRule(ctx, &orphan); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("no issuer: %v", err)
	}
	if _, err := s.Rule(ctx, 99); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("Rule(99): %v", err)
	}
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleClick, Points: 1, Frequency: rewards.FrequencyOnce})
	bolt := seedAckIssuer(t, s, "bolt")
	if err := s.RetireRule(ctx, bolt, r.ID); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("retire another issuer's rule: %v", err)
	}
	stolen := r
	stolen.IssuerID = bolt
	if err := s.UpdateRule(ctx, &stolen); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("update another issuer's rule: %v", err)
	}
	if err := s.SetIssuerBudget(ctx, 99, 10); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("budget of no issuer: %v", err)
	}
	if err := s.SetIssuerBudget(ctx, acme, -1); err == nil {
		t.Fatal("a negative budget was accepted")
	}
	if _, err := s.RuleSpent(ctx, 99); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("RuleSpent(99): %v", err)
	}
}

func TestLinkJobRules(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	seedAckConsumers(t, s, 1)
	acme, bolt := seedAckIssuer(t, s, "acme"), seedAckIssuer(t, s, "bolt")
	reply := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce})
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	foreign := seedAckRule(t, s, rewards.AwardRule{IssuerID: bolt, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	retired := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	if err := s.RetireRule(ctx, acme, retired.ID); err != nil {
		t.Fatal(err)
	}
	job := seedAckJob(t, s, acme, time.Time{}, click)

	// All or nothing: the foreign rule refuses the reply rule's link too.
	err := s.LinkJobRules(ctx, job.Key, []int64{reply.ID, foreign.ID})
	if err == nil || !strings.Contains(err.Error(), "rule "+strconv.FormatInt(foreign.ID, 10)) {
		t.Fatalf("foreign rule: %v", err)
	}
	if err := s.LinkJobRules(ctx, job.Key, []int64{retired.ID}); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("retired rule: %v", err)
	}
	if err := s.LinkJobRules(ctx, job.Key, []int64{999}); !errors.Is(err, rewards.ErrNotFound) || !strings.Contains(err.Error(), "rule 999") {
		t.Fatalf("no such rule: %v", err)
	}
	if err := s.LinkJobRules(ctx, job.Key+1, []int64{reply.ID}); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("no such job: %v", err)
	}
	got, err := s.JobRules(ctx, job.Key)
	if err != nil || len(got) != 1 || got[0].ID != click.ID {
		t.Fatalf("JobRules after refusals = %+v, %v", got, err)
	}
	if err := s.LinkJobRules(ctx, job.Key, []int64{reply.ID, click.ID}); err != nil {
		t.Fatal(err)
	}
	got, err = s.JobRules(ctx, job.Key)
	if err != nil || len(got) != 2 || got[0].ID != reply.ID || got[1].ID != click.ID {
		t.Fatalf("JobRules = %+v, %v", got, err)
	}
}

// The running totals of migration 0003 follow the accruals, whoever writes them.
func TestRuleSpentFollowsAccruals(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cs := seedAckConsumers(t, s, 3)
	acme := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, acme, time.Time{}, r)
	for _, c := range cs {
		mustAcknowledge(t, s, ackAt(job, c, postoffice.ChannelClick, ackT0))
	}
	if spent, err := s.RuleSpent(ctx, r.ID); err != nil || spent != 15 {
		t.Fatalf("RuleSpent = %d, %v", spent, err)
	}
	if _, err := s.write.Exec(`UPDATE accruals SET points = 7 WHERE consumer_id = ?`, cs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(`DELETE FROM accruals WHERE consumer_id = ?`, cs[1]); err != nil {
		t.Fatal(err)
	}
	var ruleSpent, issuerSpent int64
	if err := s.read.QueryRow(`SELECT r.spent, i.spent FROM award_rules r JOIN issuers i ON i.id = r.issuer_id WHERE r.id = ?`, r.ID).
		Scan(&ruleSpent, &issuerSpent); err != nil {
		t.Fatal(err)
	}
	if ruleSpent != 12 || issuerSpent != 12 {
		t.Fatalf("spent %d (rule), %d (issuer); want 12", ruleSpent, issuerSpent)
	}
}
