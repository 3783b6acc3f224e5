package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// bounceFixture is a store with a job sent to n consumers.
func bounceFixture(t *testing.T, n int) (*Store, *postoffice.Job, []int64) {
	t.Helper()
	s := openTest(t)
	s.Now = func() time.Time { return ackT0 }
	ids := seedAckConsumers(t, s, n)
	job := seedAckJob(t, s, seedAckIssuer(t, s, "acme"), ackT0.Add(24*time.Hour))
	return s, job, ids
}

func consumerStatus(t *testing.T, s *Store, id int64) rewards.ConsumerStatus {
	t.Helper()
	var st string
	if err := s.write.QueryRow(`SELECT status FROM consumers WHERE id = ?`, id).Scan(&st); err != nil {
		t.Fatal(err)
	}
	return rewards.ConsumerStatus(st)
}

func mustRecordBounce(t *testing.T, s *Store, b *Bounce) {
	t.Helper()
	if err := s.RecordBounce(context.Background(), b); err != nil {
		t.Fatalf("RecordBounce: %v", err)
	}
}

func TestRecordBounceHardRejectsAndSuppressesOnce(t *testing.T) {
	s, job, ids := bounceFixture(t, 2)
	ctx := context.Background()
	b := &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[0], From: "MAILER-DAEMON@mx"},
		Key: "<b1@mx>", Failures: []BounceFailure{
			{Email: "c000000@example.com", Severity: BounceSoft, Status: "4.4.7"},
			{Email: "c000000@example.com", Severity: BounceHard, Status: "5.1.1", Detail: "5.1.1 user unknown"},
		}}
	mustRecordBounce(t, s, b)
	if b.Duplicate || len(b.Suppressed) != 1 || b.Suppressed[0] != ids[0] {
		t.Fatalf("first record: duplicate %v, suppressed %v", b.Duplicate, b.Suppressed)
	}
	d, err := s.Delivery(ctx, job.Key, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if !d.Rejected || d.LastError != "bounced: 5.1.1 user unknown" {
		t.Errorf("delivery: rejected %v, last error %q", d.Rejected, d.LastError)
	}
	if st := consumerStatus(t, s, ids[0]); st != rewards.StatusBounced {
		t.Errorf("consumer status %s, want bounced", st)
	}
	if st := consumerStatus(t, s, ids[1]); st != rewards.StatusActive {
		t.Errorf("the other consumer is %s", st)
	}

	// The same bounce redelivered: recorded once, counted once.
	again := &Bounce{Message: b.Message, Key: b.Key, Failures: b.Failures}
	again.Message.ID = 0
	mustRecordBounce(t, s, again)
	if !again.Duplicate {
		t.Error("a redelivered bounce is not a duplicate")
	}
	if n := ackCount(t, s, `SELECT count(*) FROM inbound_messages`); n != 1 {
		t.Errorf("%d inbound messages, want 1", n)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM bounces WHERE consumer_id = ?`, ids[0]); n != 1 {
		t.Errorf("%d bounces, want 1", n)
	}
	bs, err := s.ConsumerBounces(ctx, ids[0])
	if err != nil || len(bs) != 1 || bs[0].Kind != BounceHard || !bs[0].Suppressed || bs[0].DeliveryID != d.ID {
		t.Errorf("ConsumerBounces: %+v, %v", bs, err)
	}
}

func TestRecordBounceSoftLimitAndAcknowledgementReset(t *testing.T) {
	s, job, ids := bounceFixture(t, 1)
	ctx := context.Background()
	if err := s.SetSoftBounceLimit(ctx, 0); err == nil {
		t.Error("a limit of 0 was taken")
	}
	if err := s.SetSoftBounceLimit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	soft := func(key string) *Bounce {
		return &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[0]}, Key: key,
			Failures: []BounceFailure{{Severity: BounceSoft, Status: "5.2.2", Detail: "mailbox full"}}}
	}
	mustRecordBounce(t, s, soft("<s1@mx>"))
	d, _ := s.Delivery(ctx, job.Key, ids[0])
	if !d.Rejected || consumerStatus(t, s, ids[0]) != rewards.StatusActive {
		t.Fatalf("after one soft bounce: rejected %v, status %s", d.Rejected, consumerStatus(t, s, ids[0]))
	}
	// An acknowledgement proves the mailbox works: the count starts again after it.
	s.Now = func() time.Time { return ackT0.Add(time.Minute) }
	mustAcknowledge(t, s, ackAt(job, ids[0], postoffice.ChannelClick, ackT0.Add(time.Minute)))
	s.Now = func() time.Time { return ackT0.Add(2 * time.Minute) }
	b := soft("<s2@mx>")
	mustRecordBounce(t, s, b)
	if st := consumerStatus(t, s, ids[0]); st != rewards.StatusActive || len(b.Suppressed) != 0 {
		t.Fatalf("one soft bounce after an acknowledgement suppressed: %s %v", st, b.Suppressed)
	}
	b = soft("<s3@mx>")
	mustRecordBounce(t, s, b)
	if st := consumerStatus(t, s, ids[0]); st != rewards.StatusBounced || len(b.Suppressed) != 1 {
		t.Fatalf("two soft bounces past the acknowledgement: %s %v", st, b.Suppressed)
	}
}

func TestRecordBounceWithoutToken(t *testing.T) {
	s, _, ids := bounceFixture(t, 1)
	ctx := context.Background()
	// A consumer never mailed: a bounce naming her changes nothing.
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "never@example.com"}}); err != nil {
		t.Fatal(err)
	}
	never, _ := s.ConsumerByEmail(ctx, "never@example.com")
	b := &Bounce{Message: InboundMessage{Kind: "bounce"}, Key: "<n1@mx>", Failures: []BounceFailure{
		{Email: "NEVER@example.com", Severity: BounceHard, Status: "5.1.1"},
		{Email: "nobody@example.com", Severity: BounceHard, Status: "5.1.1"},
		{Email: " C000000@Example.com", Severity: BounceHard, Status: "5.1.1"},
		{Email: "c000000@example.com", Severity: BounceHard, Status: "5.1.1"},
	}}
	mustRecordBounce(t, s, b)
	if consumerStatus(t, s, never.ID) != rewards.StatusActive {
		t.Error("a consumer never mailed was bounced")
	}
	if consumerStatus(t, s, ids[0]) != rewards.StatusBounced || len(b.Suppressed) != 1 {
		t.Errorf("the mailed consumer: %s, suppressed %v", consumerStatus(t, s, ids[0]), b.Suppressed)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM bounces WHERE delivery_id IS NULL`); n != 1 {
		t.Errorf("%d bounces without a delivery, want 1", n)
	}
	// A delay names no failure: recorded, nothing else.
	b = &Bounce{Message: InboundMessage{Kind: "bounce"}, Key: "<n2@mx>", Failures: []BounceFailure{{Email: "c000000@example.com"}}}
	mustRecordBounce(t, s, b)
	if n := ackCount(t, s, `SELECT count(*) FROM bounces`); n != 1 {
		t.Errorf("a delay made a bounce: %d", n)
	}
}

func TestRecordBounceComplaintSuppresses(t *testing.T) {
	s, job, ids := bounceFixture(t, 3)
	ctx := context.Background()
	if err := s.Unsubscribe(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	for i, b := range []*Bounce{
		{Message: InboundMessage{Kind: "complaint", JobKey: job.Key, ConsumerID: ids[0]}, Key: "<c1@fbl>", Complaint: true},
		{Message: InboundMessage{Kind: "complaint"}, Key: "<c2@fbl>", Complaint: true, Reported: "c000001@example.com"},
		{Message: InboundMessage{Kind: "complaint"}, Key: "<c3@fbl>", Complaint: true, Reported: "stranger@example.com"},
	} {
		mustRecordBounce(t, s, b)
		if i < 2 && len(b.Suppressed) != 1 {
			t.Errorf("complaint %d suppressed %v", i, b.Suppressed)
		}
	}
	for i, want := range []rewards.ConsumerStatus{rewards.StatusSuppressed, rewards.StatusSuppressed, rewards.StatusActive} {
		if st := consumerStatus(t, s, ids[i]); st != want {
			t.Errorf("consumer %d: %s, want %s", i, st, want)
		}
	}
	d, _ := s.Delivery(ctx, job.Key, ids[0])
	if d.Rejected {
		t.Error("a complaint rejected a delivery that arrived")
	}
}

func TestRecordOutcomesCountsRefusalsAsBounces(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ids := seedAckConsumers(t, s, 5)
	job := seedAckJob(t, s, seedAckIssuer(t, s, "acme"), ackT0.Add(-time.Minute)) // sends nothing: stopped
	_ = job
	// A fresh job whose deliveries are still to send.
	job2 := &postoffice.Job{IssuerID: job.IssuerID, Name: "j2", State: postoffice.JobRunning,
		Start: ackT0.Add(-time.Hour), Stop: ackT0.Add(time.Hour), ClientCount: 100}
	if err := s.CreateJob(ctx, job2, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SelectBatch(ctx, job2, false, 100); err != nil {
		t.Fatal(err)
	}
	rs, err := s.ClaimRecipients(ctx, job2.Key, 0, ackT0, 100)
	if err != nil || len(rs) != 5 {
		t.Fatalf("%d recipients, %v", len(rs), err)
	}
	byConsumer := map[int64]int64{}
	for _, r := range rs {
		byConsumer[r.Consumer.ID] = r.DeliveryID
	}
	texts := []string{
		"SMTP error 550: 5.1.1 no such user", // hard by its status
		"SMTP error 550: User unknown",       // hard by its phrase (go-smtp strips the code)
		"SMTP error 554: 5.7.1 blocked as spam",
		"SMTP error 552: 5.2.2 mailbox full",
		"SMTP error 550: 5.1.8 bad sender domain", // ours
	}
	var outs []postoffice.Outcome
	for i, text := range texts {
		outs = append(outs, postoffice.Outcome{DeliveryID: byConsumer[ids[i]], Kind: postoffice.OutcomeRejected, At: ackT0, Error: text})
	}
	if err := s.RecordOutcomes(ctx, outs); err != nil {
		t.Fatal(err)
	}
	for i, want := range []rewards.ConsumerStatus{rewards.StatusBounced, rewards.StatusBounced, rewards.StatusActive, rewards.StatusActive, rewards.StatusActive} {
		if st := consumerStatus(t, s, ids[i]); st != want {
			t.Errorf("%q: consumer %s, want %s", texts[i], st, want)
		}
	}
	if n := ackCount(t, s, `SELECT count(*) FROM bounces WHERE kind = 'soft' AND inbound_id IS NULL`); n != 3 {
		t.Errorf("%d soft bounces at send time, want 3", n)
	}

	// The bounced consumers' deliveries of a later job are still handed out, with their
	// status, so the mail server closes them and the job ends.
	job3 := &postoffice.Job{IssuerID: job.IssuerID, Name: "j3", State: postoffice.JobRunning,
		Start: ackT0.Add(-time.Hour), Stop: ackT0.Add(time.Hour), ClientCount: 100}
	if err := s.CreateJob(ctx, job3, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SelectBatch(ctx, job3, false, 100); err != nil {
		t.Fatal(err)
	}
	rs, err = s.ClaimRecipients(ctx, job3.Key, 0, ackT0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Errorf("selection took %d consumers, want the 3 still active", len(rs))
	}
	// A consumer unsubscribed after selection is claimed with her new status.
	if err := s.Unsubscribe(ctx, rs[0].Consumer.ID); err != nil {
		t.Fatal(err)
	}
	again, err := s.ClaimRecipients(ctx, job3.Key, 0, ackT0, 100)
	if err != nil || len(again) != 3 || again[0].Mailable() || !again[1].Mailable() {
		t.Errorf("claim after an unsubscribe: %d, %v", len(again), err)
	}
}

func TestRejectionFailure(t *testing.T) {
	for _, c := range []struct{ text, sev, status string }{
		{"SMTP error 550: 5.1.1 <a@b>: Recipient address rejected", BounceHard, "5.1.1"},
		{"SMTP error 550: 5.2.1 account disabled", BounceHard, "5.2.1"},
		{"SMTP error 550: no such user here", BounceHard, "5.1.1"},
		{"SMTP error 550: mailbox unavailable", BounceSoft, "5.0.0"},
		{"SMTP error 550: 5.7.1 user unknown to our spam filter", BounceSoft, "5.7.1"},
		{"SMTP error 421: 4.7.0 try later", "", ""},
		{"connection reset by peer", "", ""},
		{"SMTP error 554: relay 10.5.1.1 said no", BounceSoft, "5.0.0"},
	} {
		f := rejectionFailure(c.text)
		if f.Severity != c.sev || f.Status != c.status {
			t.Errorf("rejectionFailure(%q) = %s %s, want %s %s", c.text, f.Severity, f.Status, c.sev, c.status)
		}
	}
}

func TestPolicyRefusalsDoNotSuppress(t *testing.T) {
	s, job, ids := bounceFixture(t, 1)
	ctx := context.Background()
	if err := s.SetSoftBounceLimit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for i, status := range []string{"5.7.1", "4.7.0", "5.1.7", "5.7.26"} {
		mustRecordBounce(t, s, &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[0]},
			Key: fmt.Sprintf("<p%d@mx>", i), Failures: []BounceFailure{{Severity: BounceSoft, Status: status, Detail: "blocked"}}})
	}
	if st := consumerStatus(t, s, ids[0]); st != rewards.StatusActive {
		t.Fatalf("four policy refusals of our mail suppressed her address: %s", st)
	}
	for i := range 2 {
		mustRecordBounce(t, s, &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[0]},
			Key: fmt.Sprintf("<f%d@mx>", i), Failures: []BounceFailure{{Severity: BounceSoft, Status: "5.2.2", Detail: "full"}}})
	}
	if st := consumerStatus(t, s, ids[0]); st != rewards.StatusBounced {
		t.Fatalf("two mailbox-full bounces at a limit of 2: %s", st)
	}
	for status, want := range map[string]bool{"5.7.1": true, "4.7.0": true, "5.1.7": true, "5.1.8": true,
		"5.2.2": false, "4.2.2": false, "5.1.1": false, "": false, "5.7": false} {
		if got := policyStatus(status); got != want {
			t.Errorf("policyStatus(%q) = %v, want %v", status, got, want)
		}
	}
}
