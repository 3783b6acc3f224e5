package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// ackT0 is the tests' "now": acknowledgements carry times around it, so rule dates and periods
// do not depend on the wall clock.
var ackT0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

// seedAckConsumers adds n consumers and returns their ids in order.
func seedAckConsumers(t testing.TB, s *Store, n int) []int64 {
	t.Helper()
	ctx := context.Background()
	batch := make([]rewards.Consumer, n)
	for i := range batch {
		batch[i] = rewards.Consumer{Email: fmt.Sprintf("c%06d@example.com", i), FirstName: "C"}
	}
	if _, _, err := s.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	rows, err := s.read.Query(`SELECT id FROM consumers ORDER BY email`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) != n {
		t.Fatalf("%d consumers, %v", len(ids), err)
	}
	return ids
}

func seedAckIssuer(t testing.TB, s *Store, slug string) int64 {
	t.Helper()
	iss, err := s.EnsureIssuer(context.Background(), slug, "")
	if err != nil {
		t.Fatal(err)
	}
	return iss.ID
}

func seedAckRule(t testing.TB, s *Store, r rewards.AwardRule) rewards.AwardRule {
	t.Helper()
	if err := s.CreateRule(context.Background(), &r); err != nil {
		t.Fatalf("CreateRule(%+v): %v", r, err)
	}
	return r
}

// seedAckJob creates a running job of the issuer to every active consumer, stopping at stop
// (ackT0 + 30 days when zero), links the rules, and marks every delivery sent.
func seedAckJob(t testing.TB, s *Store, issuerID int64, stop time.Time, rules ...rewards.AwardRule) *postoffice.Job {
	t.Helper()
	ctx := context.Background()
	if stop.IsZero() {
		stop = ackT0.Add(30 * 24 * time.Hour)
	}
	job := &postoffice.Job{IssuerID: issuerID, Name: "spring", State: postoffice.JobRunning,
		Start: ackT0.Add(-time.Hour), Stop: stop, ClientCount: 1 << 30}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	for complete := false; !complete; {
		var err error
		if _, complete, err = s.SelectBatch(ctx, job, false, 10000); err != nil {
			t.Fatal(err)
		}
	}
	var ids []int64
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	if err := s.LinkJobRules(ctx, job.Key, ids); err != nil {
		t.Fatal(err)
	}
	for after := int64(0); ; {
		rs, err := s.ClaimRecipients(ctx, job.Key, after, ackT0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		outs := make([]postoffice.Outcome, len(rs))
		for i, r := range rs {
			outs[i] = postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent, At: ackT0}
			after = r.DeliveryID
		}
		if err := s.RecordOutcomes(ctx, outs); err != nil {
			t.Fatal(err)
		}
	}
	return job
}

func ackAt(job *postoffice.Job, consumerID int64, ch postoffice.Channel, at time.Time) postoffice.Ack {
	return postoffice.Ack{JobKey: job.Key, ConsumerID: consumerID, Channel: ch, At: at, Source: "test"}
}

func mustAcknowledge(t testing.TB, s *Store, ack postoffice.Ack) *postoffice.AckResult {
	t.Helper()
	res, err := s.Acknowledge(context.Background(), ack)
	if err != nil {
		t.Fatalf("Acknowledge(%+v): %v", ack, err)
	}
	return res
}

// ackCount runs a count(*) query on the writer, which sees every commit.
func ackCount(t testing.TB, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.write.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// wantAckDecision checks a result's one decision.
func wantAckDecision(t testing.TB, res *postoffice.AckResult, points int64, reason string) {
	t.Helper()
	if len(res.Decisions) != 1 {
		t.Fatalf("decisions %+v, want one", res.Decisions)
	}
	d := res.Decisions[0]
	if d.Points != points || d.Awarded != (points > 0) || !strings.Contains(d.Reason, reason) || (reason == "") != (d.Reason == "") {
		t.Fatalf("decision %+v, want %d points, reason %q", d, points, reason)
	}
}

func TestAcknowledgeFirstAckAccrues(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cs := seedAckConsumers(t, s, 3)
	iss := seedAckIssuer(t, s, "acme")
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce,
		SuccessURL: "https://acme.example/thanks", IssuerURL: "https://acme.example"})
	job := seedAckJob(t, s, iss, time.Time{}, click)

	at := ackT0.Add(time.Minute)
	res := mustAcknowledge(t, s, ackAt(job, cs[1], postoffice.ChannelClick, at))
	d, err := s.Delivery(ctx, job.Key, cs[1])
	if err != nil {
		t.Fatal(err)
	}
	if res.DeliveryID != d.ID || res.JobKey != job.Key || res.ConsumerID != cs[1] || res.JobName != "spring" ||
		!res.FirstReceipt || res.SuccessURL != click.SuccessURL || res.IssuerURL != click.IssuerURL {
		t.Fatalf("result %+v", res)
	}
	wantAckDecision(t, res, 5, "")
	if res.Decisions[0].RuleID != click.ID || res.Points() != 5 {
		t.Fatalf("decision %+v", res.Decisions[0])
	}
	if !d.Received || !d.ReceivedAt.Equal(at) {
		t.Fatalf("delivery %+v, want received at %v", d, at)
	}
	var ruleID, points, created, occurrence, issuerID int64
	var posted any
	if err := s.read.QueryRow(`SELECT rule_id, points, created_at, occurrence, issuer_id, posted_at FROM accruals
		WHERE job_key = ? AND consumer_id = ?`, job.Key, cs[1]).Scan(&ruleID, &points, &created, &occurrence, &issuerID, &posted); err != nil {
		t.Fatal(err)
	}
	if ruleID != click.ID || points != 5 || created != at.UnixMilli() || occurrence != 0 || issuerID != iss || posted != nil {
		t.Fatalf("accrual rule %d points %d created %d occurrence %d issuer %d posted %v", ruleID, points, created, occurrence, issuerID, posted)
	}
	var channel, source, reason string
	var awarded bool
	if err := s.read.QueryRow(`SELECT channel, source, rule_id, awarded, points, reason FROM acknowledgements
		WHERE job_key = ? AND consumer_id = ?`, job.Key, cs[1]).Scan(&channel, &source, &ruleID, &awarded, &points, &reason); err != nil {
		t.Fatal(err)
	}
	if channel != "click" || source != "test" || ruleID != click.ID || !awarded || points != 5 || reason != "" {
		t.Fatalf("acknowledgement %s %s %d %v %d %q", channel, source, ruleID, awarded, points, reason)
	}
	if spent, err := s.RuleSpent(ctx, click.ID); err != nil || spent != 5 {
		t.Fatalf("RuleSpent = %d, %v", spent, err)
	}
	// The others are untouched.
	if n := ackCount(t, s, `SELECT count(*) FROM deliveries WHERE received = 1`); n != 1 {
		t.Fatalf("%d deliveries received", n)
	}

	// No caller hears of its acknowledgement before the WAL holding it is fsynced.
	release := make(chan struct{})
	syncing := make(chan struct{}, 1)
	s.acks.syncHook = func() error {
		syncing <- struct{}{}
		<-release
		return nil
	}
	answered := make(chan error, 1)
	go func() {
		_, err := s.Acknowledge(context.Background(), ackAt(job, cs[2], postoffice.ChannelClick, at))
		answered <- err
	}()
	<-syncing
	select {
	case err := <-answered:
		t.Fatalf("answered (%v) before the WAL was synced", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
}

func TestAcknowledgeReplaysAwardOnce(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 2)
	iss := seedAckIssuer(t, s, "acme")
	reply := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, reply)
	for i := range 5 {
		res := mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelReply, ackT0.Add(time.Duration(i)*time.Minute)))
		if res.FirstReceipt != (i == 0) {
			t.Fatalf("ack %d: FirstReceipt %v", i, res.FirstReceipt)
		}
		if i == 0 {
			wantAckDecision(t, res, 10, "")
		} else {
			wantAckDecision(t, res, 0, "already awarded for this invitation")
		}
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 1 {
		t.Fatalf("%d accruals, want 1", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements WHERE consumer_id = ?`, cs[0]); n != 5 {
		t.Fatalf("%d acknowledgements, want 5", n)
	}
	d, err := s.Delivery(context.Background(), job.Key, cs[0])
	if err != nil || !d.ReceivedAt.Equal(ackT0) {
		t.Fatalf("received at %v, %v; want the first acknowledgement's %v", d.ReceivedAt, err, ackT0)
	}
}

func TestAcknowledgeParallelDuplicatesAwardOnce(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 2)
	iss := seedAckIssuer(t, s, "acme")
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, click)
	var awarded, first atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			res, err := s.Acknowledge(context.Background(), ackAt(job, cs[1], postoffice.ChannelClick, ackT0))
			if err != nil {
				t.Error(err)
				return
			}
			if res.Decisions[0].Awarded {
				awarded.Add(1)
			} else if res.Decisions[0].Reason != "already awarded for this invitation" {
				t.Errorf("reason %q", res.Decisions[0].Reason)
			}
			if res.FirstReceipt {
				first.Add(1)
			}
		})
	}
	wg.Wait()
	if awarded.Load() != 1 || first.Load() != 1 {
		t.Fatalf("%d awarded, %d first receipts; want 1 and 1", awarded.Load(), first.Load())
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 1 {
		t.Fatalf("%d accruals, want 1", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements`); n != 50 {
		t.Fatalf("%d acknowledgements, want 50", n)
	}
}

func TestAcknowledgeEarnsOnlyUnderTheChannelsRules(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 2)
	iss := seedAckIssuer(t, s, "acme")
	reply := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce,
		SuccessURL: "https://acme.example/replied"})
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce,
		SuccessURL: "https://acme.example/clicked"})
	job := seedAckJob(t, s, iss, time.Time{}, reply, click)

	res := mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelReply, ackT0))
	wantAckDecision(t, res, 10, "")
	if res.Decisions[0].RuleID != reply.ID || res.SuccessURL != reply.SuccessURL {
		t.Fatalf("reply result %+v", res)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals WHERE rule_id = ?`, click.ID); n != 0 {
		t.Fatalf("a reply accrued %d under the click rule", n)
	}
	res = mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelClick, ackT0))
	wantAckDecision(t, res, 5, "")
	if res.Decisions[0].RuleID != click.ID || res.SuccessURL != click.SuccessURL || res.FirstReceipt {
		t.Fatalf("click result %+v", res)
	}
}

func TestAcknowledgeWithoutARuleOfTheChannel(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 1)
	iss := seedAckIssuer(t, s, "acme")
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, click)
	res := mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelReply, ackT0))
	if len(res.Decisions) != 0 || !res.FirstReceipt || res.Points() != 0 {
		t.Fatalf("result %+v", res)
	}
	var ruleID any
	var reason string
	if err := s.read.QueryRow(`SELECT rule_id, reason FROM acknowledgements`).Scan(&ruleID, &reason); err != nil {
		t.Fatal(err)
	}
	if ruleID != nil || reason != "no award rule of this campaign applies to a reply" {
		t.Fatalf("acknowledgement rule %v, reason %q", ruleID, reason)
	}
}

func TestAcknowledgeRuleDates(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 3)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce,
		Start: ackT0, Stop: ackT0.Add(24 * time.Hour)})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelClick, ackT0.Add(-time.Second))), 0, "has not started")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[1], postoffice.ChannelClick, ackT0.Add(24*time.Hour))), 0, "the rule has ended")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[2], postoffice.ChannelClick, ackT0)), 5, "")
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 1 {
		t.Fatalf("%d accruals, want 1", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM deliveries WHERE received = 1`); n != 3 {
		t.Fatalf("%d deliveries received, want all 3: refused acknowledgements are still received", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements WHERE awarded = 0 AND reason <> ''`); n != 2 {
		t.Fatalf("%d refusals with a reason, want 2", n)
	}
}

func TestAcknowledgePeriodRule(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 1)
	iss := seedAckIssuer(t, s, "acme")
	day := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 3, Frequency: rewards.FrequencyPeriod,
		Period: 24 * time.Hour})
	job1 := seedAckJob(t, s, iss, time.Time{}, day)
	job2 := seedAckJob(t, s, iss, time.Time{}, day)
	start := day.PeriodStart(ackT0)

	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job1, cs[0], postoffice.ChannelClick, start.Add(time.Hour))), 3, "")
	// Another job in the same period: refused, whatever the job.
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job2, cs[0], postoffice.ChannelClick, start.Add(23*time.Hour))), 0, "already awarded in this period")
	// The same job again in the same period.
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job1, cs[0], postoffice.ChannelClick, start.Add(2*time.Hour))), 0, "already awarded for this invitation")
	// The next period: both jobs may earn once more, one of them first.
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job2, cs[0], postoffice.ChannelClick, start.Add(24*time.Hour))), 3, "")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job1, cs[0], postoffice.ChannelClick, start.Add(25*time.Hour))), 0, "already awarded in this period")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job1, cs[0], postoffice.ChannelClick, start.Add(48*time.Hour))), 3, "")
	// Late news from the first period does not count the later periods' awards.
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job2, cs[0], postoffice.ChannelClick, start.Add(3*time.Hour))), 0, "already awarded in this period")
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 3 {
		t.Fatalf("%d accruals, want 3", n)
	}
}

func TestAcknowledgeTimesRule(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 1)
	iss := seedAckIssuer(t, s, "acme")
	twice := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 7, Frequency: rewards.FrequencyTimes, MaxTimes: 2})
	var jobs []*postoffice.Job
	for range 3 {
		jobs = append(jobs, seedAckJob(t, s, iss, time.Time{}, twice))
	}
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(jobs[0], cs[0], postoffice.ChannelReply, ackT0)), 7, "")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(jobs[0], cs[0], postoffice.ChannelReply, ackT0)), 0, "already awarded for this invitation")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(jobs[1], cs[0], postoffice.ChannelReply, ackT0)), 7, "")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(jobs[2], cs[0], postoffice.ChannelReply, ackT0)), 0, "the most times allowed (2)")
	if spent, err := s.RuleSpent(context.Background(), twice.ID); err != nil || spent != 14 {
		t.Fatalf("RuleSpent = %d, %v", spent, err)
	}
}

func TestAcknowledgeBudgets(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cs := seedAckConsumers(t, s, 4)

	// The rule's budget: 15 points pays one award of 10.
	acme := seedAckIssuer(t, s, "acme")
	capped := seedAckRule(t, s, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleClick, Points: 10, Frequency: rewards.FrequencyOnce, Budget: 15})
	job := seedAckJob(t, s, acme, time.Time{}, capped)
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelClick, ackT0)), 10, "")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[1], postoffice.ChannelClick, ackT0)), 0, "the rule's points budget is spent")

	// The issuer's budget: 25 points across two rules pays two awards of 10.
	bolt := seedAckIssuer(t, s, "bolt")
	if err := s.SetIssuerBudget(ctx, bolt, 25); err != nil {
		t.Fatal(err)
	}
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: bolt, Type: rewards.RuleClick, Points: 10, Frequency: rewards.FrequencyOnce})
	reply := seedAckRule(t, s, rewards.AwardRule{IssuerID: bolt, Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce})
	job = seedAckJob(t, s, bolt, time.Time{}, click, reply)
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelClick, ackT0)), 10, "")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[1], postoffice.ChannelReply, ackT0)), 10, "")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[2], postoffice.ChannelClick, ackT0)), 0, "the issuer's points budget is spent")
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[3], postoffice.ChannelReply, ackT0)), 0, "the issuer's points budget is spent")

	// The running totals agree with the accruals.
	if n := ackCount(t, s, `SELECT count(*) FROM award_rules r
		WHERE spent <> (SELECT coalesce(sum(points), 0) FROM accruals WHERE rule_id = r.id)`); n != 0 {
		t.Fatalf("%d rules' spent disagree with their accruals", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM issuers i
		WHERE spent <> (SELECT coalesce(sum(points), 0) FROM accruals WHERE issuer_id = i.id)`); n != 0 {
		t.Fatalf("%d issuers' spent disagree with their accruals", n)
	}
}

func TestAcknowledgeAfterTheJobStops(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 1)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, ackT0.Add(time.Hour), r)
	res := mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelClick, ackT0.Add(2*time.Hour)))
	wantAckDecision(t, res, 0, "the campaign has ended")
	if !res.FirstReceipt {
		t.Fatal("a late acknowledgement is still a receipt")
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 0 {
		t.Fatalf("%d accruals", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements WHERE reason = 'the campaign has ended'`); n != 1 {
		t.Fatalf("%d acknowledgements recorded", n)
	}
}

func TestAcknowledgeUnknownDelivery(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 2)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	for _, ack := range []postoffice.Ack{
		ackAt(job, cs[1]+100, postoffice.ChannelClick, ackT0),                                   // no such consumer
		{JobKey: job.Key + 100, ConsumerID: cs[0], Channel: postoffice.ChannelClick, At: ackT0}, // no such job
	} {
		res, err := s.Acknowledge(context.Background(), ack)
		if !errors.Is(err, postoffice.ErrNoDelivery) || res != nil {
			t.Fatalf("Acknowledge(%+v) = %+v, %v; want ErrNoDelivery", ack, res, err)
		}
	}
	if n := ackCount(t, s, `SELECT (SELECT count(*) FROM acknowledgements) + (SELECT count(*) FROM accruals)
		+ (SELECT count(*) FROM deliveries WHERE received = 1)`); n != 0 {
		t.Fatalf("%d rows written", n)
	}
	if _, err := s.Acknowledge(context.Background(), postoffice.Ack{JobKey: job.Key, ConsumerID: cs[0], Channel: "fax"}); err == nil {
		t.Fatal("a fax acknowledgement was accepted")
	}
}

// A failing acknowledgement fails alone; the rest of its batch commits.
func TestAcknowledgeBatchWithAFailure(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 3)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	acks := []struct {
		ctx context.Context
		ack postoffice.Ack
	}{
		{context.Background(), ackAt(job, cs[0], postoffice.ChannelClick, ackT0)},
		{context.Background(), ackAt(job, cs[2]+1, postoffice.ChannelClick, ackT0)}, // no delivery
		{gone, ackAt(job, cs[1], postoffice.ChannelClick, ackT0)},                   // its caller left
		{context.Background(), ackAt(job, cs[2], postoffice.ChannelClick, ackT0)},
		{context.Background(), ackAt(job, cs[0], postoffice.ChannelClick, ackT0)}, // a replay of the first
	}
	var batch []*ackRequest
	for _, a := range acks {
		batch = append(batch, &ackRequest{ctx: a.ctx, ack: a.ack, reply: make(chan struct{})})
	}
	reqs := slices.Clone(batch)
	before := s.acks.batches.Load()
	s.commitAcks(batch)
	if n := s.acks.batches.Load() - before; n != 1 {
		t.Fatalf("%d transactions, want 1", n)
	}
	for _, req := range reqs {
		<-req.reply
	}
	if reqs[0].err != nil || reqs[3].err != nil || reqs[4].err != nil {
		t.Fatalf("errors %v, %v, %v", reqs[0].err, reqs[3].err, reqs[4].err)
	}
	wantAckDecision(t, reqs[0].res, 5, "")
	wantAckDecision(t, reqs[3].res, 5, "")
	wantAckDecision(t, reqs[4].res, 0, "already awarded")
	if !errors.Is(reqs[1].err, postoffice.ErrNoDelivery) || reqs[1].res != nil {
		t.Fatalf("unknown delivery: %+v, %v", reqs[1].res, reqs[1].err)
	}
	if !errors.Is(reqs[2].err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", reqs[2].err)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 2 {
		t.Fatalf("%d accruals, want 2", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements`); n != 3 {
		t.Fatalf("%d acknowledgements, want 3", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM deliveries WHERE received = 1`); n != 2 {
		t.Fatalf("%d received, want 2", n)
	}
}

// When the commit fails, no acknowledgement of the batch was accepted: all its callers hear
// the error, and nothing of it is written.
func TestAcknowledgeCommitFailureFailsTheBatch(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 3)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	// A deferred foreign key broken by cs[1]'s acknowledgement fails the COMMIT, not the
	// statement.
	for _, q := range []string{
		`CREATE TABLE boom_parent (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE boom (p INTEGER REFERENCES boom_parent(id) DEFERRABLE INITIALLY DEFERRED)`,
		fmt.Sprintf(`CREATE TRIGGER boom AFTER INSERT ON acknowledgements WHEN NEW.consumer_id = %d
			BEGIN INSERT INTO boom VALUES (1); END`, cs[1]),
	} {
		if _, err := s.write.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var reqs []*ackRequest
	for _, c := range cs {
		reqs = append(reqs, &ackRequest{ctx: context.Background(), ack: ackAt(job, c, postoffice.ChannelClick, ackT0), reply: make(chan struct{})})
	}
	s.commitAcks(slices.Clone(reqs))
	for i, req := range reqs {
		<-req.reply
		if req.res != nil || req.err == nil || !strings.Contains(req.err.Error(), "FOREIGN KEY") {
			t.Errorf("ack %d: %+v, %v; want the commit's error", i, req.res, req.err)
		}
	}
	if n := ackCount(t, s, `SELECT (SELECT count(*) FROM acknowledgements) + (SELECT count(*) FROM accruals)
		+ (SELECT count(*) FROM deliveries WHERE received = 1)`); n != 0 {
		t.Fatalf("%d rows written by a failed batch", n)
	}
	// The connection is left out of the transaction and back at NORMAL.
	if _, err := s.write.Exec(`DROP TRIGGER boom`); err != nil {
		t.Fatal(err)
	}
	var sync int
	if err := s.write.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 1 {
		t.Fatalf("synchronous = %d, %v", sync, err)
	}
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[1], postoffice.ChannelClick, ackT0)), 5, "")
}

// 64 callers at once: each gets its own result, and the commits are shared.
func TestAcknowledgeGroupCommit(t *testing.T) {
	s := openTest(t)
	const callers = 64
	cs := seedAckConsumers(t, s, callers)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 4, Frequency: rewards.FrequencyOnce, Budget: 4 * 60})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	before := s.acks.batches.Load()
	const rounds = 20
	var awarded atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			won := false
			for round := range rounds {
				res, err := s.Acknowledge(context.Background(), ackAt(job, cs[i], postoffice.ChannelReply, ackT0))
				if err != nil {
					t.Error(err)
					return
				}
				d, _ := s.Delivery(context.Background(), job.Key, cs[i])
				if res.ConsumerID != cs[i] || res.DeliveryID != d.ID || res.FirstReceipt != (round == 0) || len(res.Decisions) != 1 {
					t.Errorf("caller %d round %d: result %+v", i, round, res)
					return
				}
				switch dec := res.Decisions[0]; {
				case dec.Awarded:
					awarded.Add(1)
					if round != 0 {
						t.Errorf("caller %d awarded in round %d", i, round)
					}
					won = true
				case won && dec.Reason != "already awarded for this invitation",
					!won && dec.Reason != "the rule's points budget is spent":
					t.Errorf("caller %d round %d: %q", i, round, dec.Reason)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if awarded.Load() != 60 {
		t.Fatalf("%d awarded, want 60 (the budget)", awarded.Load())
	}
	batches := s.acks.batches.Load() - before
	t.Logf("%d acknowledgements in %d transactions", callers*rounds, batches)
	if batches >= callers*rounds/2 {
		t.Fatalf("%d transactions for %d acknowledgements: commits are not shared", batches, callers*rounds)
	}
}

func TestAcknowledgeContextAndClose(t *testing.T) {
	s, err := Open(context.Background(), testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cs := seedAckConsumers(t, s, 1)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 4, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Acknowledge(ctx, ackAt(job, cs[0], postoffice.ChannelReply, ackT0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements`); n != 0 {
		t.Fatalf("a cancelled acknowledgement wrote %d rows", n)
	}
	// A caller waiting while the writer is busy leaves when its context ends.
	conn, err := s.write.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Acknowledge(ctx, ackAt(job, cs[0], postoffice.ChannelReply, ackT0)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed out: %v", err)
	}
	conn.Close()
	mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelReply, ackT0))
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 1 {
		t.Fatalf("%d accruals", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acknowledge(context.Background(), ackAt(job, cs[0], postoffice.ChannelReply, ackT0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// Close applies what was queued before it, then refuses.
func TestAcknowledgeCloseAppliesQueued(t *testing.T) {
	s, err := Open(context.Background(), testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	cs := seedAckConsumers(t, s, n+1)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 4, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	mustAcknowledge(t, s, ackAt(job, cs[n], postoffice.ChannelReply, ackT0)) // the committer runs

	poll := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	// Hold the writer, so that the committer waits with what it took; queue the rest as
	// submit does, so they are known to be queued before Close.
	conn, err := s.write.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waits := s.write.Stats().WaitCount
	var reqs []*ackRequest
	for i := range n {
		req := &ackRequest{ctx: context.Background(), ack: ackAt(job, cs[i], postoffice.ChannelReply, ackT0), reply: make(chan struct{})}
		s.acks.queue <- req
		reqs = append(reqs, req)
		if i == 0 {
			poll("the committer to take the first and wait for the writer", func() bool { return s.write.Stats().WaitCount > waits })
		}
	}
	t.Logf("%d of %d still queued at Close", len(s.acks.queue), n)
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	poll("Close to begin", func() bool {
		s.acks.mu.Lock()
		defer s.acks.mu.Unlock()
		return s.acks.closed
	})
	conn.Close()
	for _, req := range reqs {
		<-req.reply
		if req.err != nil || !req.res.Decisions[0].Awarded {
			t.Errorf("queued before Close: %+v, %v", req.res, req.err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acknowledge(context.Background(), ackAt(job, cs[0], postoffice.ChannelReply, ackT0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	s, err = Open(context.Background(), s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := ackCount(t, s, `SELECT count(*) FROM accruals`); got != n+1 {
		t.Fatalf("%d accruals, want %d", got, n+1)
	}
}

// BenchmarkAcknowledgeParallel acknowledges distinct deliveries from 64 goroutines, each
// waiting for its commit, and reports the rate and the 99th percentile latency.
func BenchmarkAcknowledgeParallel(b *testing.B) {
	s := openTest(b)
	cs := seedAckConsumers(b, s, b.N)
	iss := seedAckIssuer(b, s, "acme")
	r := seedAckRule(b, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(b, s, iss, time.Time{}, r)
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			begin := time.Now()
			res, err := s.Acknowledge(context.Background(), ackAt(job, cs[i], postoffice.ChannelClick, ackT0))
			latencies[i] = time.Since(begin)
			if err != nil || !res.Decisions[0].Awarded {
				b.Errorf("ack %d: %+v, %v", i, res, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks/s")
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(b.N)/float64(max(1, s.acks.batches.Load())), "acks/commit")
}

// TestAcknowledgeSameReplyAgainInALaterPeriod: a reply a mail server delivers twice, the
// second time in the rule's next period, earns once and is recorded once; another reply then
// earns again.
func TestAcknowledgeSameReplyAgainInALaterPeriod(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 1)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 3,
		Frequency: rewards.FrequencyPeriod, Period: time.Hour})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	reply := func(msgID string, at time.Time) *postoffice.AckResult {
		a := ackAt(job, cs[0], postoffice.ChannelReply, at)
		a.Source = "smtp <" + msgID + ">"
		return mustAcknowledge(t, s, a)
	}
	if res := reply("m1@example.com", ackT0); res.Points() != 3 {
		t.Fatalf("first reply earned %d", res.Points())
	}
	if res := reply("m1@example.com", ackT0.Add(2*time.Hour)); res.Points() != 0 ||
		!strings.Contains(res.Decisions[0].Reason, "already counted") {
		t.Fatalf("the same reply redelivered in the next period: %+v", res.Decisions)
	}
	var rows int
	if err := s.read.QueryRow(`SELECT count(*) FROM acknowledgements WHERE consumer_id = ?`, cs[0]).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%d acknowledgements after the same reply twice, want 1 (%v)", rows, err)
	}
	if res := reply("m2@example.com", ackT0.Add(2*time.Hour)); res.Points() != 3 {
		t.Fatalf("a new reply in the next period earned %d", res.Points())
	}
}
