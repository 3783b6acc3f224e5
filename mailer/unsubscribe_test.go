package mailer

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/rewards"
	"pointpost/store"
)

// stopAfterFirstSend returns a relay answer that, at the first message the relay takes,
// runs stop; every other message waits for it to finish. The four workers are then each
// held in a send, so nothing later in the batch can go out until stop has returned: the
// deliveries stop names are claimed, read as active, and not yet sent.
func stopAfterFirstSend(stop func()) func(to string, attempt int) error {
	var once sync.Once
	return func(string, int) error {
		once.Do(stop)
		return nil
	}
}

// deliveryRank is the place of the consumer's delivery in the job's id order, the order in
// which the mail server claims and hands them out.
func (h *harness) deliveryRank(email string) int {
	h.t.Helper()
	var ids []int64
	for _, e := range h.emails {
		ids = append(ids, h.delivery(e).ID)
	}
	slices.Sort(ids)
	return slices.Index(ids, h.delivery(email).ID)
}

// TestMailServerUnsubscribeBeforeTheNextSend: a consumer who unsubscribes (RFC 8058 POST →
// Unsubscribe), is suppressed by the operator or complains while her delivery sits claimed
// in a batch never receives the message; her delivery is closed unsent as the claim would
// have closed it, the job ends, and everyone else gets exactly one.
func TestMailServerUnsubscribeBeforeTheNextSend(t *testing.T) {
	t.Parallel()
	const n = 40
	const unsubscriber, suppressed, complainer = "c014@example.com", "c011@example.com", "c012@example.com"
	var early *harness // set before the mail servers start
	var triedEarly atomic.Int32
	stop := func() {
		ctx, h := context.Background(), early
		for _, e := range []string{unsubscriber, suppressed, complainer} {
			if len(h.relay.tries(e)) > 0 {
				triedEarly.Add(1)
			}
		}
		// The three ways a consumer leaves 'active' while mail goes out: the web's one-click
		// POST, the operator's status action, an abuse report.
		if err := h.st.Unsubscribe(ctx, h.ids[unsubscriber]); err != nil {
			t.Errorf("Unsubscribe: %v", err)
		}
		if err := h.st.SetConsumerStatus(ctx, suppressed, rewards.StatusSuppressed); err != nil {
			t.Errorf("SetConsumerStatus: %v", err)
		}
		if err := h.st.RecordBounce(ctx, &store.Bounce{Complaint: true, Key: "<arf-1@fbl.example>",
			Message: store.InboundMessage{Kind: "complaint", JobKey: h.job.Key, ConsumerID: h.ids[complainer]}}); err != nil {
			t.Errorf("RecordBounce: %v", err)
		}
	}
	h := newHarness(t, setup{consumers: n, delay: 20 * time.Millisecond, workers: 4,
		answer: stopAfterFirstSend(stop), before: func(h *harness) { early = h }})
	h.waitDone(30 * time.Second)

	gone := map[string]string{unsubscriber: "unsubscribed", suppressed: "suppressed", complainer: "suppressed"}
	for e := range gone {
		// All three were in the first claimed batch (16), late in it.
		if r := h.deliveryRank(e); r < 8 || r >= 16 {
			t.Fatalf("%s's delivery is number %d in claim order, want one late in the first batch of 16", e, r)
		}
	}
	if triedEarly.Load() != 0 {
		t.Fatal("a consumer was sent to before she left 'active': the test proves nothing")
	}
	h.checkEachOnce(unsubscriber, suppressed, complainer)
	for e, status := range gone {
		if tries := h.relay.tries(e); len(tries) != 0 {
			t.Errorf("the relay saw %d attempts to %s after she became %s", len(tries), e, status)
		}
		d := h.delivery(e)
		if d.Sent || !d.Failed || d.Rejected || d.LastError != "not sent: consumer is "+status {
			t.Errorf("delivery to %s = %+v, want failed unsent because she is %s", e, d, status)
		}
	}
	if c := h.counts(); c.Sent != n-3 || c.Failed != 3 || c.Pending != 0 || c.Rejected != 0 {
		t.Errorf("job counts %+v, want %d sent and 3 closed unsent", c, n-3)
	}
	if c := h.server(1).Counters(); c != (Counters{Sent: n - 3, Failed: 3}) {
		t.Errorf("counters %+v, want %d sent and 3 failed", c, n-3)
	}
	if got := h.po.finishedCount(h.job.Key); got != 1 {
		t.Errorf("Finished called %d times, want 1", got)
	}
}

// flakyStatuses is the real store whose ConsumerStatuses fails, as a locked database would,
// whenever it is asked about one consumer.
type flakyStatuses struct {
	*store.Store
	failFor int64
	failed  atomic.Int32
}

func (f *flakyStatuses) ConsumerStatuses(ctx context.Context, ids []int64) (map[int64]rewards.ConsumerStatus, error) {
	if slices.Contains(ids, f.failFor) {
		f.failed.Add(1)
		return nil, errors.New("database is locked")
	}
	return f.Store.ConsumerStatuses(ctx, ids)
}

// TestMailServerStatusRereadFailureLosesNothing: when rereading the statuses fails, the
// deliveries that needed it are neither sent nor closed but wait for the next pass, which
// claims them afresh: the unsubscriber, whose own reread fails, still gets nothing, everyone
// else exactly one message, and no retry is charged.
func TestMailServerStatusRereadFailureLosesNothing(t *testing.T) {
	t.Parallel()
	const n = 24
	const unsubscriber = "c013@example.com"
	var st *store.Store
	var target int64
	h := newHarness(t, setup{consumers: n, delay: 20 * time.Millisecond, workers: 4,
		answer: stopAfterFirstSend(func() {
			if err := st.Unsubscribe(context.Background(), target); err != nil {
				t.Errorf("Unsubscribe: %v", err)
			}
		}),
		before: func(h *harness) {
			st, target = h.st, h.ids[unsubscriber]
			// The job goes to a mail server outside the harness's pool, reading the flaky store.
			if err := h.st.RegisterMailServers(h.ctx, 3, h.sink.URL()); err != nil {
				t.Fatal(err)
			}
			if err := h.st.AssignJob(h.ctx, h.job.Key, 3); err != nil {
				t.Fatal(err)
			}
		}})
	flaky := &flakyStatuses{Store: h.st, failFor: target}
	var logs logBuffer
	srv := New(Config{ID: 3, Relay: h.sink.URL(), Store: flaky, PostOffice: h.po, Sender: newSender(t, h.sink.URL(), 5*time.Second),
		Tokens: h.keys, Addresses: testAddresses, Workers: 4, Batch: 16, CommitSize: 8, CommitEvery: 10 * time.Millisecond,
		Poll: 20 * time.Millisecond, HaltCheck: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h.waitDone(30 * time.Second)

	if flaky.failed.Load() == 0 {
		t.Fatal("no reread of the statuses failed: the test proves nothing")
	}
	if !strings.Contains(logs.String(), "rereading consumer statuses") {
		t.Errorf("the failed reread was not logged:\n%s", logs.String())
	}
	h.checkEachOnce(unsubscriber)
	if tries := h.relay.tries(unsubscriber); len(tries) != 0 {
		t.Errorf("the relay saw %d attempts to the unsubscriber", len(tries))
	}
	if d := h.delivery(unsubscriber); d.Sent || !d.Failed || d.LastError != "not sent: consumer is unsubscribed" {
		t.Errorf("the unsubscriber's delivery = %+v, want failed unsent", d)
	}
	for _, e := range h.emails {
		if d := h.delivery(e); d.RetryCount != 0 {
			t.Errorf("delivery to %s was charged %d retries", e, d.RetryCount)
		}
	}
	if c := h.counts(); c.Sent != n-1 || c.Failed != 1 || c.Pending != 0 {
		t.Errorf("job counts %+v, want %d sent and 1 closed unsent", c, n-1)
	}
	if c := srv.Counters(); c != (Counters{Sent: n - 1, Failed: 1}) {
		t.Errorf("counters %+v, want %d sent and 1 failed", c, n-1)
	}
}
