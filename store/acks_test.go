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

	"github.com/jackc/pgx/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store/pgtest"
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
		rs, err := s.DueRecipients(ctx, job.Key, after, ackT0, 10000)
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

// One batch that holds duplicates of the same invitation and the same reply: it decides as
// the acknowledgements would one after the other, on either engine (on PostgreSQL the
// batch's decisions are taken in Go from what it read once).
func TestAcknowledgeBatchMixingDuplicates(t *testing.T) {
	s := openTest(t)
	cs := seedAckConsumers(t, s, 2)
	iss := seedAckIssuer(t, s, "acme")
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	reply := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 3,
		Frequency: rewards.FrequencyPeriod, Period: time.Hour})
	job := seedAckJob(t, s, iss, time.Time{}, click, reply)
	replyAt := func(msgID string, at time.Time) postoffice.Ack {
		a := ackAt(job, cs[1], postoffice.ChannelReply, at)
		a.Source = "smtp <" + msgID + ">"
		return a
	}
	later := ackT0.Add(2 * time.Hour) // the reply rule's next period
	acks := []struct {
		ack    postoffice.Ack
		first  bool
		points int64
		reason string
	}{
		{ackAt(job, cs[0], postoffice.ChannelClick, ackT0), true, 5, ""},
		{ackAt(job, cs[0], postoffice.ChannelClick, ackT0.Add(time.Minute)), false, 0, "already awarded for this invitation"},
		{replyAt("m1@example.com", ackT0), true, 3, ""},
		{replyAt("m1@example.com", later), false, 0, "already counted"},
		{replyAt("m2@example.com", later), false, 3, ""},
		{replyAt("m3@example.com", later.Add(time.Minute)), false, 0, "already awarded"},
		{ackAt(job, cs[0], postoffice.ChannelClick, ackT0.Add(2*time.Minute)), false, 0, "already awarded for this invitation"},
		{replyAt("m2@example.com", later.Add(5*time.Minute)), false, 0, "already counted"},
	}
	var reqs []*ackRequest
	for _, a := range acks {
		reqs = append(reqs, &ackRequest{ctx: context.Background(), ack: a.ack, reply: make(chan struct{})})
	}
	before := s.acks.batches.Load()
	s.commitAcks(slices.Clone(reqs))
	if n := s.acks.batches.Load() - before; n != 1 {
		t.Fatalf("%d transactions, want 1", n)
	}
	for i, req := range reqs {
		<-req.reply
		if req.err != nil {
			t.Fatalf("ack %d: %v", i, req.err)
		}
		if req.res.FirstReceipt != acks[i].first {
			t.Errorf("ack %d: FirstReceipt %v", i, req.res.FirstReceipt)
		}
		wantAckDecision(t, req.res, acks[i].points, acks[i].reason)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 3 {
		t.Errorf("%d accruals, want 3", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements`); n != 6 {
		t.Errorf("%d acknowledgement rows, want 6 (a reply counted before adds none)", n)
	}
	for _, c := range cs {
		d, err := s.Delivery(context.Background(), job.Key, c)
		if err != nil || !d.ReceivedAt.Equal(ackT0) {
			t.Errorf("consumer %d received at %v, %v; want the first acknowledgement's %v", c, d.ReceivedAt, err, ackT0)
		}
	}
}

// openPostgresTest opens a Store on a fresh PostgreSQL database, whatever the engine of the
// run; a second Open of its Path is a second process on the same database.
func openPostgresTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.Need(t, pgServer).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Two processes receiving the same acknowledgements at once, of two issuers' jobs: each
// invitation is received first once and awards at most once, and neither issuer's budget is
// overspent although both processes spend it.
func TestAcknowledgeTwoProcessesAwardOnce(t *testing.T) {
	a := openPostgresTest(t)
	b, err := Open(context.Background(), a.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const consumers, budgeted = 30, 20
	cs := seedAckConsumers(t, a, consumers)
	var jobs []*postoffice.Job
	var rules []rewards.AwardRule
	for _, slug := range []string{"acme", "globex"} {
		iss := seedAckIssuer(t, a, slug)
		r := seedAckRule(t, a, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce,
			Budget: 5 * budgeted})
		rules = append(rules, r)
		jobs = append(jobs, seedAckJob(t, a, iss, time.Time{}, r))
	}
	type invitation struct{ job, consumer int64 }
	var mu sync.Mutex
	awarded, firsts := map[invitation]int{}, map[invitation]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	const callers = 6 // per process; each acknowledges every invitation, from its own offset
	for p, s := range []*Store{a, b} {
		for g := range callers {
			wg.Go(func() {
				<-start
				for k := range consumers * len(jobs) {
					k += g*7 + p*3
					job, c := jobs[k%len(jobs)], cs[k/len(jobs)%consumers]
					res, err := s.Acknowledge(context.Background(), ackAt(job, c, postoffice.ChannelClick, ackT0))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if res.Decisions[0].Awarded {
						awarded[invitation{job.Key, c}]++
					}
					if res.FirstReceipt {
						firsts[invitation{job.Key, c}]++
					}
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if len(awarded) != budgeted*len(jobs) || len(firsts) != consumers*len(jobs) {
		t.Errorf("%d invitations awarded (want %d, the budgets), %d received (want %d)",
			len(awarded), budgeted*len(jobs), len(firsts), consumers*len(jobs))
	}
	for inv, n := range awarded {
		if n != 1 {
			t.Errorf("%+v awarded %d times", inv, n)
		}
	}
	for inv, n := range firsts {
		if n != 1 {
			t.Errorf("%+v received first %d times", inv, n)
		}
	}
	for _, r := range rules {
		if n := ackCount(t, a, `SELECT count(*) FROM accruals WHERE rule_id = ?`, r.ID); n != budgeted {
			t.Errorf("rule %d: %d accruals, want %d", r.ID, n, budgeted)
		}
		if n := ackCount(t, b, `SELECT spent FROM award_rules WHERE id = ?`, r.ID); n != 5*budgeted {
			t.Errorf("rule %d spent %d, want %d", r.ID, n, 5*budgeted)
		}
	}
	if n := ackCount(t, a, `SELECT count(*) FROM acknowledgements`); n != 2*callers*consumers*len(jobs) {
		t.Errorf("%d acknowledgement rows, want %d", n, 2*callers*consumers*len(jobs))
	}
}

// A second process acknowledging for an issuer whose batch the first has read but not yet
// written waits for it, and then sees what it spent: the issuer's row lock, not luck, keeps
// a budget from being spent twice.
func TestAcknowledgeOtherProcessWaitsForTheIssuer(t *testing.T) {
	a := openPostgresTest(t)
	b, err := Open(context.Background(), a.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cs := seedAckConsumers(t, a, 2)
	iss := seedAckIssuer(t, a, "acme")
	r := seedAckRule(t, a, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce,
		Budget: 5})
	job := seedAckJob(t, a, iss, time.Time{}, r)
	ctx := context.Background()
	type outcome struct {
		res *postoffice.AckResult
		err error
	}
	other := make(chan outcome, 1)
	var waited bool
	a.acks.beforeWrite = func() {
		a.acks.beforeWrite = nil
		go func() {
			res, err := b.Acknowledge(ctx, ackAt(job, cs[1], postoffice.ChannelClick, ackT0))
			other <- outcome{res, err}
		}()
		// Until the other process's batch waits for a lock, or (were it not to) ends.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			var n int
			if err := a.read.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
				t.Error(err)
				return
			}
			if n > 0 {
				waited = true
				return
			}
			if len(other) > 0 {
				return
			}
		}
	}
	first := mustAcknowledge(t, a, ackAt(job, cs[0], postoffice.ChannelClick, ackT0))
	second := <-other
	if second.err != nil {
		t.Fatal(second.err)
	}
	if !waited {
		t.Error("the other process did not wait for the issuer")
	}
	wantAckDecision(t, first, 5, "")
	wantAckDecision(t, second.res, 0, "the rule's points budget is spent")
	if n := ackCount(t, a, `SELECT spent FROM award_rules WHERE id = ?`, r.ID); n != 5 {
		t.Errorf("rule spent %d, want 5", n)
	}
}

// An accrual whose key another writer took between the batch's read and its write (one
// that did not hold the issuer's lock): the unique key refuses it, and the batch is read and
// decided again.
func TestAcknowledgeTakenKeyReadsAgain(t *testing.T) {
	s := openPostgresTest(t)
	cs := seedAckConsumers(t, s, 1)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	ctx := context.Background()
	var hookErr error
	s.acks.beforeWrite = func() {
		s.acks.beforeWrite = nil
		conn, err := s.read.Conn(ctx)
		if err != nil {
			hookErr = err
			return
		}
		defer conn.Close()
		// Triggers off: the running totals' trigger would wait for the issuer's lock.
		if _, err := conn.ExecContext(ctx, `SET session_replication_role = replica`); err != nil {
			hookErr = err
			return
		}
		defer conn.ExecContext(ctx, `RESET session_replication_role`)
		_, hookErr = conn.ExecContext(ctx, `INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
			VALUES (?, ?, ?, 0, ?, 5, ?)`, r.ID, job.Key, cs[0], iss, ms(ackT0))
	}
	before := s.acks.batches.Load()
	res := mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelClick, ackT0))
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if n := s.acks.batches.Load() - before; n != 2 {
		t.Errorf("%d transactions, want 2 (the batch read again)", n)
	}
	if !res.FirstReceipt {
		t.Error("the delivery's receipt was rolled back with the first attempt but not set again")
	}
	wantAckDecision(t, res, 0, "already awarded for this invitation")
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 1 {
		t.Errorf("%d accruals, want 1", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM acknowledgements`); n != 1 {
		t.Errorf("%d acknowledgement rows, want 1", n)
	}
}

// On PostgreSQL a batch's rows go in together, so an acknowledgement the database refuses
// is found out by applying each alone: it fails with its own error, and the others commit.
func TestAcknowledgePoisonFailsAlonePostgres(t *testing.T) {
	s := openPostgresTest(t)
	cs := seedAckConsumers(t, s, 3)
	iss := seedAckIssuer(t, s, "acme")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	if _, err := s.write.Exec(fmt.Sprintf(`CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'check_violation'; END $$;
		CREATE TRIGGER boom BEFORE INSERT ON acknowledgements FOR EACH ROW WHEN (NEW.consumer_id = %d)
		EXECUTE FUNCTION boom()`, cs[1])); err != nil {
		t.Fatal(err)
	}
	var reqs []*ackRequest
	for _, c := range cs {
		reqs = append(reqs, &ackRequest{ctx: context.Background(), ack: ackAt(job, c, postoffice.ChannelClick, ackT0), reply: make(chan struct{})})
	}
	s.commitAcks(slices.Clone(reqs))
	for _, req := range reqs {
		<-req.reply
	}
	for _, i := range []int{0, 2} {
		if reqs[i].err != nil {
			t.Fatalf("innocent acknowledgement %d: %v", i, reqs[i].err)
		}
		wantAckDecision(t, reqs[i].res, 5, "")
	}
	if reqs[1].res != nil || reqs[1].err == nil || !strings.Contains(reqs[1].err.Error(), "boom") {
		t.Fatalf("the poisoned acknowledgement: %+v, %v; want its own error", reqs[1].res, reqs[1].err)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM accruals`); n != 2 {
		t.Errorf("%d accruals, want 2", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM deliveries WHERE received = 1`); n != 2 {
		t.Errorf("%d received, want 2", n)
	}
}

// The store's PostgreSQL sessions commit durably whatever the database's default, and a URL
// that turns that off is refused.
func TestPostgresSynchronousCommit(t *testing.T) {
	if _, err := openPostgres("postgres://pointpost@127.0.0.1:1/pointpost?synchronous_commit=off"); err == nil ||
		!strings.Contains(err.Error(), "synchronous_commit=off") {
		t.Fatalf("a URL with synchronous_commit=off: %v", err)
	}
	ctx := context.Background()
	url := pgtest.Need(t, pgServer).NewDatabase(t)
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var name string
	if err := s.write.QueryRow(`SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(`ALTER DATABASE ` + name + ` SET synchronous_commit = off`); err != nil {
		t.Fatal(err)
	}
	show := func(db interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) string {
		var v string
		if err := db.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	plain, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	if v := show(plain); v != "off" {
		t.Fatalf("a plain session: synchronous_commit = %s, want the database's off", v)
	}
	s2, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var v string
	if err := s2.write.QueryRow(`SHOW synchronous_commit`).Scan(&v); err != nil || v != "on" {
		t.Fatalf("the store's session: synchronous_commit = %s, %v; want on", v, err)
	}
}
