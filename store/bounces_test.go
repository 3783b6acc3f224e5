package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// inboundDetail is the stored detail of the inbound message with id.
func inboundDetail(t *testing.T, s *Store, id int64) (detail string, jobKey, consumerID int64) {
	t.Helper()
	if err := s.write.QueryRow(`SELECT detail, coalesce(job_key, 0), coalesce(consumer_id, 0)
		FROM inbound_messages WHERE id = ?`, id).Scan(&detail, &jobKey, &consumerID); err != nil {
		t.Fatal(err)
	}
	return detail, jobKey, consumerID
}

// TestRecordBounceWithoutToken: a bounce no verified token ties to a delivery is anyone's
// word. It is kept, marked and naming its addresses, and changes no consumer or delivery.
func TestRecordBounceWithoutToken(t *testing.T) {
	s, job, ids := bounceFixture(t, 1)
	ctx := context.Background()
	b := &Bounce{Message: InboundMessage{Kind: "bounce", Detail: "5.1.1 user unknown"}, Key: "<n1@mx>", Failures: []BounceFailure{
		{Email: "nobody@example.com", Severity: BounceHard, Status: "5.1.1"},
		{Email: "c000000@example.com", Severity: BounceHard, Status: "5.1.1"},
	}}
	mustRecordBounce(t, s, b)
	if !b.Unverified || len(b.Suppressed) != 0 || b.Message.ID == 0 {
		t.Fatalf("unverified %v, suppressed %v, id %d", b.Unverified, b.Suppressed, b.Message.ID)
	}
	if st := consumerStatus(t, s, ids[0]); st != rewards.StatusActive {
		t.Errorf("a tokenless bounce naming her made her %s", st)
	}
	if d, _ := s.Delivery(ctx, job.Key, ids[0]); d.Rejected {
		t.Error("a tokenless bounce rejected her delivery")
	}
	if n := ackCount(t, s, `SELECT count(*) FROM bounces`); n != 0 {
		t.Errorf("%d bounce rows; a forged soft bounce must not count towards the limit", n)
	}
	detail, jk, cid := inboundDetail(t, s, b.Message.ID)
	if !strings.HasPrefix(detail, UnverifiedPrefix) || !strings.Contains(detail, "c000000@example.com") ||
		!strings.Contains(detail, "5.1.1 user unknown") || jk != 0 || cid != 0 {
		t.Errorf("recorded as %q, job %d, consumer %d", detail, jk, cid)
	}

	// A token whose delivery does not exist (her id with a job she was never sent) is no
	// better: recorded, nothing else.
	b = &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key + 1000, ConsumerID: ids[0]}, Key: "<n2@mx>",
		Failures: []BounceFailure{{Email: "c000000@example.com", Severity: BounceHard, Status: "5.1.1"}}}
	mustRecordBounce(t, s, b)
	if !b.Unverified || consumerStatus(t, s, ids[0]) != rewards.StatusActive {
		t.Errorf("a token naming no delivery: unverified %v, status %s", b.Unverified, consumerStatus(t, s, ids[0]))
	}
	if detail, _, _ := inboundDetail(t, s, b.Message.ID); !strings.Contains(detail, "no such delivery") {
		t.Errorf("recorded as %q", detail)
	}

	// A delay names no failure: recorded, nothing else.
	b = &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[0]}, Key: "<n3@mx>",
		Failures: []BounceFailure{{Email: "c000000@example.com"}}}
	mustRecordBounce(t, s, b)
	if n := ackCount(t, s, `SELECT count(*) FROM bounces`); n != 0 || b.Unverified {
		t.Errorf("a delay made %d bounces (unverified %v)", n, b.Unverified)
	}
}

// TestRecordBounceComplaintSuppresses: a complaint carrying a verified token suppresses
// its consumer, from any status; one naming her only by address changes nothing.
func TestRecordBounceComplaintSuppresses(t *testing.T) {
	s, job, ids := bounceFixture(t, 3)
	ctx := context.Background()
	if err := s.Unsubscribe(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	for i, b := range []*Bounce{
		{Message: InboundMessage{Kind: "complaint", JobKey: job.Key, ConsumerID: ids[0]}, Key: "<c1@fbl>", Complaint: true},
		{Message: InboundMessage{Kind: "complaint", JobKey: job.Key, ConsumerID: ids[1]}, Key: "<c2@fbl>", Complaint: true,
			Reported: "c000002@example.com"}, // the token decides, not what the report says
		{Message: InboundMessage{Kind: "complaint"}, Key: "<c3@fbl>", Complaint: true, Reported: "c000002@example.com"},
	} {
		mustRecordBounce(t, s, b)
		if verified := i < 2; len(b.Suppressed) != map[bool]int{true: 1, false: 0}[verified] || b.Unverified == verified {
			t.Errorf("complaint %d: suppressed %v, unverified %v", i, b.Suppressed, b.Unverified)
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
	bs, err := s.ConsumerBounces(ctx, ids[0])
	if err != nil || len(bs) != 1 || bs[0].Kind != BounceComplaint || bs[0].DeliveryID != d.ID {
		t.Errorf("ConsumerBounces: %+v, %v", bs, err)
	}
}

// TestRecordBounceAffectsOnlyTheTokensConsumer: a bounce whose token names consumer A but
// whose failures name B bounces A and never B; failures that name A decide for her.
func TestRecordBounceAffectsOnlyTheTokensConsumer(t *testing.T) {
	s, job, ids := bounceFixture(t, 3)
	ctx := context.Background()
	b := &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[0]}, Key: "<x1@mx>",
		Failures: []BounceFailure{{Email: "c000001@example.com", Severity: BounceHard, Status: "5.1.1"}}}
	mustRecordBounce(t, s, b)
	if consumerStatus(t, s, ids[0]) != rewards.StatusBounced || consumerStatus(t, s, ids[1]) != rewards.StatusActive ||
		len(b.Suppressed) != 1 || b.Suppressed[0] != ids[0] {
		t.Errorf("A %s, B %s, suppressed %v", consumerStatus(t, s, ids[0]), consumerStatus(t, s, ids[1]), b.Suppressed)
	}
	if d, _ := s.Delivery(ctx, job.Key, ids[1]); d.Rejected {
		t.Error("B's delivery was rejected")
	}
	// Her own line says delivered; another address's failure is not hers.
	b = &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[2]}, Key: "<x2@mx>",
		Failures: []BounceFailure{
			{Email: "C000002@example.com", Status: "2.0.0"},
			{Email: "c000001@example.com", Severity: BounceHard, Status: "5.1.1"},
		}}
	mustRecordBounce(t, s, b)
	if d, _ := s.Delivery(ctx, job.Key, ids[2]); d.Rejected || consumerStatus(t, s, ids[2]) != rewards.StatusActive {
		t.Errorf("delivered per her own line: rejected %v, %s", d.Rejected, consumerStatus(t, s, ids[2]))
	}
	if n := ackCount(t, s, `SELECT count(*) FROM bounces WHERE consumer_id = ?`, ids[1]); n != 0 {
		t.Errorf("B has %d bounces", n)
	}
}

// TestRecordBounceSparesAcknowledgedDelivery: a delivery she acknowledged arrived; a later
// bounce about it records her bounce and its effect on her, but leaves the delivery
// received and not rejected, so reports don't count it twice.
func TestRecordBounceSparesAcknowledgedDelivery(t *testing.T) {
	s, job, ids := bounceFixture(t, 1)
	ctx := context.Background()
	mustAcknowledge(t, s, ackAt(job, ids[0], postoffice.ChannelClick, ackT0))
	s.Now = func() time.Time { return ackT0.Add(time.Hour) }
	b := &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: job.Key, ConsumerID: ids[0]}, Key: "<r1@mx>",
		Failures: []BounceFailure{{Email: "c000000@example.com", Severity: BounceHard, Status: "5.1.1", Detail: "gone"}}}
	mustRecordBounce(t, s, b)
	d, err := s.Delivery(ctx, job.Key, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if !d.Received || d.Rejected || strings.Contains(d.LastError, "bounced") {
		t.Errorf("acknowledged delivery: received %v, rejected %v, last error %q", d.Received, d.Rejected, d.LastError)
	}
	if n := ackCount(t, s, `SELECT count(*) FROM deliveries WHERE received = 1 AND rejected = 1`); n != 0 {
		t.Errorf("%d deliveries both received and rejected", n)
	}
	bs, err := s.ConsumerBounces(ctx, ids[0])
	if err != nil || len(bs) != 1 || bs[0].DeliveryID != d.ID || consumerStatus(t, s, ids[0]) != rewards.StatusBounced {
		t.Errorf("her bounce: %+v, %v, status %s", bs, err, consumerStatus(t, s, ids[0]))
	}
}

func TestClipDetailKeepsRunesWhole(t *testing.T) {
	for _, r := range []string{"a", "é", "€", "😀"} {
		for pad := range 4 {
			s := strings.Repeat("x", pad) + strings.Repeat(r, 600)
			got := clipDetail(s)
			body := strings.TrimSuffix(got, "...")
			if !utf8.ValidString(got) || len(body) > 500 || len(body) < 500-utf8.UTFMax+1 || !strings.HasPrefix(s, body) {
				t.Errorf("%q×600 after %d bytes: %d bytes, valid %v", r, pad, len(got), utf8.ValidString(got))
			}
		}
	}
	// A stray byte early on is kept with the rest, not a reason to drop the text.
	s := "\xff" + strings.Repeat("y", 1000)
	if got := clipDetail(s); len(got) != 503 || !strings.HasPrefix(got, "\xffyyy") {
		t.Errorf("text after an invalid byte clipped to %d bytes", len(got))
	}
	if got := clipDetail("short é"); got != "short é" {
		t.Errorf("short text changed: %q", got)
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
	rs, err := s.DueRecipients(ctx, job2.Key, 0, ackT0, 100)
	if err != nil || len(rs) != 5 {
		t.Fatalf("%d recipients, %v", len(rs), err)
	}
	byConsumer := map[int64]int64{}
	for _, r := range rs {
		byConsumer[r.Consumer.ID] = r.DeliveryID
	}
	// The mail server's classification decides; the text is only kept.
	refusals := []postoffice.Refusal{
		{Reply: 550, Status: "5.1.1", Class: postoffice.RefusalHard},
		{Reply: 550, Status: "5.1.1", Class: postoffice.RefusalHard},
		{Reply: 554, Status: "5.7.1", Class: postoffice.RefusalPolicy},
		{Reply: 552, Status: "5.2.2", Class: postoffice.RefusalSoft},
		{Reply: 550, Status: "5.1.8", Class: postoffice.RefusalPolicy}, // ours
	}
	var outs []postoffice.Outcome
	for i, rf := range refusals {
		outs = append(outs, postoffice.Outcome{DeliveryID: byConsumer[ids[i]], Kind: postoffice.OutcomeRejected, At: ackT0,
			Error: fmt.Sprintf("SMTP error %d: %s refused", rf.Reply, rf.Status), Refusal: rf})
	}
	if err := s.RecordOutcomes(ctx, outs); err != nil {
		t.Fatal(err)
	}
	for i, want := range []rewards.ConsumerStatus{rewards.StatusBounced, rewards.StatusBounced, rewards.StatusActive, rewards.StatusActive, rewards.StatusActive} {
		if st := consumerStatus(t, s, ids[i]); st != want {
			t.Errorf("%+v: consumer %s, want %s", refusals[i], st, want)
		}
		d, err := s.Delivery(ctx, job2.Key, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if !d.Rejected || d.LastRefusal != refusals[i] || d.LastError != outs[i].Error {
			t.Errorf("delivery after %+v: rejected %v, refusal %+v, error %q", refusals[i], d.Rejected, d.LastRefusal, d.LastError)
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
	rs, err = s.DueRecipients(ctx, job3.Key, 0, ackT0, 100)
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
	again, err := s.DueRecipients(ctx, job3.Key, 0, ackT0, 100)
	if err != nil || len(again) != 3 || again[0].Mailable() || !again[1].Mailable() {
		t.Errorf("claim after an unsubscribe: %d, %v", len(again), err)
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
