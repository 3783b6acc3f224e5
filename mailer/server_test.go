package mailer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
)

// fakePostOffice records what the mail servers tell it and, like the real one, marks a job
// done when a mail server finds nothing left to send. Tests wait on what it hears.
type fakePostOffice struct {
	st       *store.Store
	mu       sync.Mutex
	reports  []postoffice.MailServerStatus
	finished map[int64]int
	done     map[int64]chan struct{} // closed once the job is marked done
	waiters  []reportWaiter
}

// reportWaiter is a channel for the first report that matches.
type reportWaiter struct {
	match func(postoffice.MailServerStatus) bool
	got   chan postoffice.MailServerStatus
}

var _ PostOffice = (*fakePostOffice)(nil)

func (f *fakePostOffice) Report(s postoffice.MailServerStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, s)
	waiting := f.waiters[:0]
	for _, w := range f.waiters {
		if w.match(s) {
			w.got <- s
		} else {
			waiting = append(waiting, w)
		}
	}
	f.waiters = waiting
}

func (f *fakePostOffice) Finished(ctx context.Context, key int64) error {
	f.mu.Lock()
	f.finished[key]++
	f.mu.Unlock()
	if err := f.st.SetJobState(ctx, key, postoffice.JobDone, "all sent"); err != nil {
		return err
	}
	done := f.doneSignal(key)
	select {
	case <-done:
	default:
		close(done)
	}
	return nil
}

func (f *fakePostOffice) finishedCount(key int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.finished[key]
}

// doneSignal is closed once a mail server has marked the job done.
func (f *fakePostOffice) doneSignal(key int64) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done == nil {
		f.done = map[int64]chan struct{}{}
	}
	if f.done[key] == nil {
		f.done[key] = make(chan struct{})
	}
	return f.done[key]
}

// waitReport waits for the next report that matches and returns it; within only bounds a
// hang (the mail servers report every second).
func (f *fakePostOffice) waitReport(t *testing.T, within time.Duration, what string, match func(postoffice.MailServerStatus) bool) postoffice.MailServerStatus {
	t.Helper()
	w := reportWaiter{match, make(chan postoffice.MailServerStatus, 1)}
	f.mu.Lock()
	f.waiters = append(f.waiters, w)
	f.mu.Unlock()
	select {
	case s := <-w.got:
		return s
	case <-time.After(within):
		t.Fatalf("no report in %v: %s", within, what)
		return postoffice.MailServerStatus{}
	}
}

// waitDone waits until a mail server has marked the job done.
func (f *fakePostOffice) waitDone(t *testing.T, within time.Duration, key int64) {
	t.Helper()
	select {
	case <-f.doneSignal(key):
	case <-time.After(within):
		t.Fatalf("after %v: the job is not done", within)
	}
}

// relay is the sink's behaviour: it counts each recipient's attempts, may be slow, and may
// refuse by recipient and attempt.
type relay struct {
	delay  time.Duration
	answer func(to string, attempt int) error

	mu       sync.Mutex
	attempts map[string][]time.Time
}

func (r *relay) handle(from, to string, data []byte) error {
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	r.attempts[to] = append(r.attempts[to], time.Now())
	n := len(r.attempts[to])
	r.mu.Unlock()
	if r.answer != nil {
		return r.answer(to, n)
	}
	return nil
}

func (r *relay) tries(to string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts[to])
}

// clock is a mail server clock the test can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

type setup struct {
	consumers int
	delay     time.Duration
	answer    func(to string, attempt int) error
	workers   int
	// before runs after the selection, before the mail servers start.
	before func(h *harness)
	// relayURL, when set, is where the mail servers send instead of the harness's sink.
	relayURL string
	// dkim, when set, signs the messages, and checkEachOnce verifies them.
	dkim *DKIMSigner
	// sender, when set, makes the mail servers' Sender instead of one to the relay URL.
	sender func(h *harness, relayURL string) Sender
}

// harness is a store with consumers and one running job, fully selected and assigned to mail
// server 1 of a pool of two, sending over SMTP to a sink.
type harness struct {
	t      *testing.T
	ctx    context.Context
	st     *store.Store
	po     *fakePostOffice
	relay  *relay
	sink   *Sink
	keys   *postoffice.Keyring
	clock  *clock
	job    *postoffice.Job
	emails []string
	ids    map[string]int64
	format map[string]rewards.Format
	pool   *Pool
	dkim   *DKIMSigner
}

func newHarness(t *testing.T, s setup) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, ctx: ctx, st: openStore(t), keys: testKeyring(t), clock: &clock{},
		ids: map[string]int64{}, format: map[string]rewards.Format{}, dkim: s.dkim}
	h.po = &fakePostOffice{st: h.st, finished: map[int64]int{}}
	h.relay = &relay{delay: s.delay, answer: s.answer, attempts: map[string][]time.Time{}}
	h.sink = &Sink{Keep: true, Answer: h.relay.handle}
	if err := h.sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.sink.Close() })

	if err := h.st.RegisterMailServers(ctx, 2, h.sink.URL()); err != nil {
		t.Fatal(err)
	}
	iss, err := h.st.EnsureIssuer(ctx, "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	var batch []rewards.Consumer
	for i := range s.consumers {
		c := rewards.Consumer{Email: fmt.Sprintf("c%03d@example.com", i), FirstName: fmt.Sprintf("Name%d", i),
			LastName: "Ünïcode", City: "Oslo", Format: rewards.FormatText}
		if i%2 == 1 {
			c.Format = rewards.FormatHTML
		}
		batch = append(batch, c)
		h.emails = append(h.emails, c.Email)
		h.format[c.Email] = c.Format
	}
	if _, _, err := h.st.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, e := range h.emails {
		c, err := h.st.ConsumerByEmail(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		h.ids[e] = c.ID
	}
	now := time.Now()
	job := &postoffice.Job{IssuerID: iss.ID, Name: "Spring", State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: s.consumers, MailServerID: 1}
	if err := h.st.CreateJob(ctx, job, textMessage(), htmlMessage(), postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	for complete := false; !complete; {
		if _, complete, err = h.st.SelectBatch(ctx, job, false, 64); err != nil {
			t.Fatal(err)
		}
	}
	if h.job, err = h.st.Job(ctx, job.Key); err != nil {
		t.Fatal(err)
	}
	if h.job.Selected != s.consumers || !h.job.SelectedAll {
		t.Fatalf("selection made %d deliveries (complete %v), want %d", h.job.Selected, h.job.SelectedAll, s.consumers)
	}
	if s.before != nil {
		s.before(h)
	}

	relayURL := h.sink.URL()
	if s.relayURL != "" {
		relayURL = s.relayURL
	}
	var sender Sender = newSender(t, relayURL, 5*time.Second)
	if s.sender != nil {
		sender = s.sender(h, relayURL)
	}
	workers := s.workers
	if workers == 0 {
		workers = 4
	}
	h.pool = NewPool([]int{1, 2}, Config{
		Relay: h.sink.URL(), Store: h.st, PostOffice: h.po, Sender: sender, Tokens: h.keys, Addresses: testAddresses, DKIM: s.dkim,
		Workers: workers, Batch: 16, CommitSize: 8, CommitEvery: 10 * time.Millisecond,
		MaxRetries: 2, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Poll: 20 * time.Millisecond, HaltCheck: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Now:    h.clock.now,
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.pool.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pool.Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the pool did not stop within 10s of its context ending")
		}
	})
	return h
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) jobState() postoffice.JobState {
	j, err := h.st.Job(h.ctx, h.job.Key)
	if err != nil {
		h.t.Fatal(err)
	}
	return j.State
}

func (h *harness) waitDone(within time.Duration) {
	h.t.Helper()
	h.po.waitDone(h.t, within, h.job.Key)
}

func (h *harness) counts() postoffice.JobCounts {
	c, err := h.st.JobCounts(h.ctx, h.job.Key)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) delivery(email string) *postoffice.Delivery {
	d, err := h.st.Delivery(h.ctx, h.job.Key, h.ids[email])
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) server(id int) *MailServer { return h.pool.Servers()[id-1] }

// received returns what the sink accepted, by recipient.
func (h *harness) received() map[string][]SinkMessage {
	out := map[string][]SinkMessage{}
	for _, m := range h.sink.Messages() {
		out[m.To] = append(out[m.To], m)
	}
	return out
}

// checkEachOnce checks every consumer but those in except got exactly one message, and that
// it is hers: her token, her format.
func (h *harness) checkEachOnce(except ...string) {
	h.t.Helper()
	got := h.received()
	for _, e := range h.emails {
		want := 1
		if slices.Contains(except, e) {
			want = 0
		}
		if len(got[e]) != want {
			h.t.Errorf("%s got %d messages, want %d", e, len(got[e]), want)
			continue
		}
		if want == 0 {
			continue
		}
		b := parseBuilt(h.t, got[e][0].Data, "")
		subject, _ := b.header.Subject()
		found := postoffice.FindToken(subject)
		if len(found) != 1 {
			h.t.Errorf("%s: no token in subject %q", e, subject)
			continue
		}
		job, consumer, err := h.keys.Decode(found[0])
		if err != nil || job != h.job.Key || consumer != h.ids[e] {
			h.t.Errorf("%s: token names job %d consumer %d (%v), want %d, %d", e, job, consumer, err, h.job.Key, h.ids[e])
		}
		// VERP: the envelope sender names the delivery; the From field stays the issuer's.
		local, domain, _ := strings.Cut(got[e][0].From, "@")
		verp, isVERP := strings.CutPrefix(local, "bounce+")
		if !isVERP || domain != "reply.acme.example" {
			h.t.Errorf("%s: MAIL FROM %q, want bounce+TOKEN@reply.acme.example", e, got[e][0].From)
		} else if job, consumer, err := h.keys.Decode(verp); err != nil || job != h.job.Key || consumer != h.ids[e] {
			h.t.Errorf("%s: MAIL FROM token names job %d consumer %d (%v), want %d, %d", e, job, consumer, err, h.job.Key, h.ids[e])
		}
		if from, err := b.header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "rewards@acme.example" {
			h.t.Errorf("%s: From %v (%v), want rewards@acme.example", e, from, err)
		}
		if h.dkim != nil {
			checkSigned(h.t, got[e][0].Data, dnsOf(h.dkim), len(h.dkim.Records()))
		} else if b.header.Has("DKIM-Signature") {
			h.t.Errorf("%s: signed, with no signer configured", e)
		}
		wantType := "text/plain"
		if h.format[e] == rewards.FormatHTML {
			wantType = "text/html"
		}
		if b.contentType != wantType {
			h.t.Errorf("%s reads %s but got %s", e, h.format[e], b.contentType)
		}
		if to, err := b.header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != e {
			h.t.Errorf("%s: message is addressed To %v (%v)", e, to, err)
		}
	}
	for to := range got {
		if _, ok := h.ids[to]; !ok {
			h.t.Errorf("a message went to %s, who is no consumer", to)
		}
	}
}

func (h *harness) metrics() string {
	var buf bytes.Buffer
	h.pool.WriteMetrics(&buf)
	return buf.String()
}

// metric returns the value of name for mail server id in the Prometheus text.
func metric(t *testing.T, text, name string, id int) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(fmt.Sprintf(`%s{mail_server="%d"}`, name, id)) + ` (\S+)$`)
	m := re.FindAllStringSubmatch(text, -1)
	if len(m) != 1 {
		t.Fatalf("metrics have %d samples of %s for mail server %d:\n%s", len(m), name, id, text)
	}
	v, err := strconv.ParseFloat(m[0][1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMailServerSendsEveryConsumerOnce(t *testing.T) {
	t.Parallel()
	const n = 40
	h := newHarness(t, setup{consumers: n})
	h.waitDone(15 * time.Second)
	// After finishing, server 1 goes back to idle; only then is "finished once" settled.
	waitFor(t, 5*time.Second, "mail server 1 is not idle after its job", func() bool {
		return h.server(1).Status().State == "idle"
	})

	h.checkEachOnce()
	if c := h.counts(); c.Total != n || c.Sent != n || c.Pending != 0 || c.Rejected != 0 || c.Failed != 0 {
		t.Errorf("job counts %+v, want all %d sent", c, n)
	}
	for _, e := range h.emails {
		if d := h.delivery(e); !d.Sent || d.SentAt.IsZero() || d.RetryCount != 0 || d.LastError != "" {
			t.Errorf("delivery to %s = %+v, want sent at once", e, d)
		}
	}
	if got := h.po.finishedCount(h.job.Key); got != 1 {
		t.Errorf("Finished called %d times for the job, want 1", got)
	}
	if c := h.server(1).Counters(); c != (Counters{Sent: n}) {
		t.Errorf("mail server 1 counters %+v, want %d sent", c, n)
	}
	if c := h.server(2).Counters(); c != (Counters{}) {
		t.Errorf("mail server 2, which has no job, counters %+v", c)
	}
	if st := h.server(1).Status(); st.ID != 1 || st.Name != "mail-1" || st.Sent != n || st.Queue != 0 || len(st.Jobs) != 0 {
		t.Errorf("mail server 1 status %+v", st)
	}

	h.po.mu.Lock()
	reported := map[int]bool{}
	for _, r := range h.po.reports {
		reported[r.ID] = true
		if r.Relay != h.sink.URL() {
			t.Errorf("mail server %d reported relay %q, want %q", r.ID, r.Relay, h.sink.URL())
		}
	}
	h.po.mu.Unlock()
	if !reported[1] || !reported[2] {
		t.Errorf("reports came from servers %v, want 1 and 2", reported)
	}

	text := h.metrics()
	for _, want := range []string{
		"# TYPE pointpost_messages_sent_total counter", "# TYPE pointpost_messages_retried_total counter",
		"# TYPE pointpost_messages_rejected_total counter", "# TYPE pointpost_messages_failed_total counter",
		"# TYPE pointpost_queue_depth gauge", "# TYPE pointpost_send_rate gauge",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	for name, want := range map[string][2]float64{
		"pointpost_messages_sent_total":     {n, 0},
		"pointpost_messages_retried_total":  {0, 0},
		"pointpost_messages_rejected_total": {0, 0},
		"pointpost_messages_failed_total":   {0, 0},
		"pointpost_queue_depth":             {0, 0},
	} {
		for id := 1; id <= 2; id++ {
			if got := metric(t, text, name, id); got != want[id-1] {
				t.Errorf("%s{mail_server=\"%d\"} = %g, want %g", name, id, got, want[id-1])
			}
		}
	}
	metric(t, text, "pointpost_send_rate", 1)
}

func TestMailServerSignsWithDKIM(t *testing.T) {
	t.Parallel()
	const n = 12
	h := newHarness(t, setup{consumers: n, dkim: testSigner(t, "rsa", "ed25519")})
	h.waitDone(15 * time.Second)
	h.checkEachOnce()
	if c := h.counts(); c.Sent != n {
		t.Errorf("job counts %+v, want all %d sent", c, n)
	}
}

func TestMailServerSigningFailureSendsNothing(t *testing.T) {
	t.Parallel()
	signer, err := NewDKIMSigner("acme.example", DKIMKey{Selector: "hsm", Key: failingKey{testKey(t, "ed25519")}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	h := newHarness(t, setup{consumers: n, dkim: signer})
	h.waitDone(15 * time.Second)
	if got := h.sink.Count(); got != 0 {
		t.Errorf("the relay got %d messages that could not be signed", got)
	}
	for _, e := range h.emails {
		d := h.delivery(e)
		if d.Sent || !d.Failed || d.RetryCount != 2 || !strings.Contains(d.LastError, "token removed") {
			t.Errorf("delivery to %s = %+v, want failed after 2 retries with the signing error", e, d)
		}
	}
	if c := h.server(1).Counters(); c != (Counters{Retried: 2 * n, Failed: n}) {
		t.Errorf("counters %+v, want %d retries and %d failed", c, 2*n, n)
	}
}

func TestMailServerRetriesTemporaryFailure(t *testing.T) {
	t.Parallel()
	const flaky = "c003@example.com"
	h := newHarness(t, setup{consumers: 8, answer: func(to string, attempt int) error {
		if to == flaky && attempt <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "greylisted"}
		}
		return nil
	}})
	h.waitDone(15 * time.Second)

	h.checkEachOnce()
	d := h.delivery(flaky)
	if !d.Sent || d.RetryCount != 2 || d.Rejected || d.Failed || d.LastError != "" {
		t.Errorf("delivery to %s = %+v, want sent after 2 retries", flaky, d)
	}
	tries := h.relay.tries(flaky)
	if len(tries) != 3 {
		t.Fatalf("the relay saw %d attempts to %s, want 3", len(tries), flaky)
	}
	// Each retry waits out its backoff: RetryBase, then twice that (less a millisecond the
	// store's rounding may take).
	for i, wait := range []time.Duration{20 * time.Millisecond, 40 * time.Millisecond} {
		if gap := tries[i+1].Sub(tries[i]); gap < wait-time.Millisecond {
			t.Errorf("retry %d came %v after the attempt before it, want at least %v", i+1, gap, wait)
		}
	}
	if c := h.server(1).Counters(); c != (Counters{Sent: 8, Retried: 2}) {
		t.Errorf("counters %+v, want 8 sent and 2 retries", c)
	}
	if got := metric(t, h.metrics(), "pointpost_messages_retried_total", 1); got != 2 {
		t.Errorf("retried metric %g, want 2", got)
	}
	if got := h.po.finishedCount(h.job.Key); got != 1 {
		t.Errorf("Finished called %d times, want 1", got)
	}
}

func TestMailServerRejectsPermanentFailure(t *testing.T) {
	t.Parallel()
	const bad = "c002@example.com"
	h := newHarness(t, setup{consumers: 6, answer: func(to string, attempt int) error {
		if to == bad {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox here"}
		}
		return nil
	}})
	h.waitDone(15 * time.Second)

	h.checkEachOnce(bad)
	d := h.delivery(bad)
	if d.Sent || !d.Rejected || d.Failed || d.RetryCount != 0 {
		t.Errorf("delivery to %s = %+v, want rejected without retry", bad, d)
	}
	if !strings.Contains(d.LastError, "550") || !strings.Contains(d.LastError, "no such mailbox here") {
		t.Errorf("last error %q does not carry the relay's reply", d.LastError)
	}
	if want := (postoffice.Refusal{Reply: 550, Status: "5.1.1", Class: postoffice.RefusalHard}); d.LastRefusal != want {
		t.Errorf("delivery's refusal %+v, want %+v", d.LastRefusal, want)
	}
	if st, err := h.st.ConsumerStatuses(context.Background(), []int64{h.ids[bad]}); err != nil || st[h.ids[bad]] != rewards.StatusBounced {
		t.Errorf("a 5.1.1 at send time left her %v (%v), want bounced", st, err)
	}
	if n := len(h.relay.tries(bad)); n != 1 {
		t.Errorf("the relay saw %d attempts to %s, want 1", n, bad)
	}
	if c := h.server(1).Counters(); c != (Counters{Sent: 5, Rejected: 1}) {
		t.Errorf("counters %+v, want 5 sent and 1 rejected", c)
	}
	if c := h.counts(); c.Sent != 5 || c.Rejected != 1 || c.Pending != 0 {
		t.Errorf("job counts %+v", c)
	}
}

func TestMailServerGivesUpAfterMaxRetries(t *testing.T) {
	t.Parallel()
	const down = "c001@example.com"
	h := newHarness(t, setup{consumers: 5, answer: func(to string, attempt int) error {
		if to == down {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "mailbox host down"}
		}
		return nil
	}})
	h.waitDone(15 * time.Second)

	h.checkEachOnce(down)
	d := h.delivery(down)
	if d.Sent || d.Rejected || !d.Failed || d.RetryCount != 2 {
		t.Errorf("delivery to %s = %+v, want failed after 2 retries", down, d)
	}
	if !strings.Contains(d.LastError, "451") || !strings.Contains(d.LastError, "mailbox host down") {
		t.Errorf("last error %q does not carry the relay's reply", d.LastError)
	}
	if n := len(h.relay.tries(down)); n != 3 {
		t.Errorf("the relay saw %d attempts to %s, want 3 (MaxRetries 2)", n, down)
	}
	if c := h.server(1).Counters(); c != (Counters{Sent: 4, Retried: 2, Failed: 1}) {
		t.Errorf("counters %+v, want 4 sent, 2 retries, 1 failed", c)
	}
}

func TestMailServerSkipsUnsubscribed(t *testing.T) {
	t.Parallel()
	const gone, bounced = "c001@example.com", "c004@example.com"
	h := newHarness(t, setup{consumers: 6, before: func(h *harness) {
		// After selection: the deliveries exist, but the consumers may no longer be mailed.
		if err := h.st.SetConsumerStatus(h.ctx, gone, rewards.StatusUnsubscribed); err != nil {
			h.t.Fatal(err)
		}
		if err := h.st.SetConsumerStatus(h.ctx, bounced, rewards.StatusBounced); err != nil {
			h.t.Fatal(err)
		}
	}})
	h.waitDone(15 * time.Second)

	h.checkEachOnce(gone, bounced)
	for e, reason := range map[string]string{gone: "unsubscribed", bounced: "bounced"} {
		d := h.delivery(e)
		if d.Sent || !d.Failed || !strings.Contains(d.LastError, reason) {
			t.Errorf("delivery to %s = %+v, want failed saying %q", e, d, reason)
		}
		if n := len(h.relay.tries(e)); n != 0 {
			t.Errorf("the relay saw %d attempts to %s", n, e)
		}
	}
	if c := h.server(1).Counters(); c != (Counters{Sent: 4, Failed: 2}) {
		t.Errorf("counters %+v, want 4 sent and 2 failed", c)
	}
}

func TestMailServerSuspendAndResume(t *testing.T) {
	t.Parallel()
	const n = 300
	h := newHarness(t, setup{consumers: n, delay: 5 * time.Millisecond, workers: 2})
	waitFor(t, 15*time.Second, "sending did not start", func() bool { return h.sink.Count() >= 20 })

	if err := h.st.SetJobSuspended(h.ctx, h.job.Key, true); err != nil {
		t.Fatal(err)
	}
	// The server reports "waiting" once its pass has halted: the sends in flight are done
	// and their outcomes committed.
	halted := h.po.waitReport(t, 15*time.Second, "mail server 1 halting on the suspend", func(s postoffice.MailServerStatus) bool {
		return s.ID == 1 && s.State == "waiting"
	})
	stopped := h.sink.Count()
	t.Logf("sends stopped at %d of %d", stopped, n)
	if stopped >= n {
		t.Fatalf("the whole job went out (%d) despite the suspend", stopped)
	}
	// What went out is recorded, and the rest waits.
	if c := h.counts(); c.Sent != int(stopped) || c.Pending != n-int(stopped) || c.Failed != 0 || c.Rejected != 0 || halted.Sent != stopped {
		t.Errorf("job counts while suspended %+v, server sent %d, want %d sent and %d pending", c, halted.Sent, stopped, n-int(stopped))
	}
	// A report later the server has looked at the job again many times and still waits.
	h.po.waitReport(t, 15*time.Second, "mail server 1 reporting again while suspended", func(s postoffice.MailServerStatus) bool {
		return s.ID == 1
	})
	if again := h.sink.Count(); again != stopped || h.server(1).Status().State != "waiting" {
		t.Errorf("sends went on while suspended: %d, then %d (server %s)", stopped, again, h.server(1).Status().State)
	}
	if s := h.jobState(); s != postoffice.JobRunning || h.po.finishedCount(h.job.Key) != 0 {
		t.Errorf("suspended job is %s, finished %d times", s, h.po.finishedCount(h.job.Key))
	}

	if err := h.st.SetJobSuspended(h.ctx, h.job.Key, false); err != nil {
		t.Fatal(err)
	}
	h.waitDone(30 * time.Second)
	h.checkEachOnce()
	for _, e := range h.emails {
		if n := len(h.relay.tries(e)); n != 1 {
			t.Errorf("the relay saw %d attempts to %s, want 1", n, e)
		}
	}
	if c := h.counts(); c.Sent != n || c.Pending != 0 {
		t.Errorf("job counts after resuming %+v, want all %d sent", c, n)
	}
	if c := h.server(1).Counters(); c != (Counters{Sent: n}) {
		t.Errorf("counters %+v, want %d sent", c, n)
	}
}

func TestMailServerStopsAtStopDate(t *testing.T) {
	t.Parallel()
	const n = 300
	h := newHarness(t, setup{consumers: n, delay: 5 * time.Millisecond, workers: 2})
	waitFor(t, 15*time.Second, "sending did not start", func() bool { return h.sink.Count() >= 20 })

	// The mail servers' clock passes the job's stop date mid-run.
	h.clock.advance(time.Until(h.job.Stop) + time.Minute)
	h.po.waitReport(t, 15*time.Second, "mail server 1 halting at the stop date", func(s postoffice.MailServerStatus) bool {
		return s.ID == 1 && s.State == "waiting"
	})
	stopped := h.sink.Count()
	if stopped >= n {
		t.Fatalf("the whole job went out (%d) past its stop date", stopped)
	}
	h.po.waitReport(t, 15*time.Second, "mail server 1 reporting again past the stop date", func(s postoffice.MailServerStatus) bool {
		return s.ID == 1
	})
	if again := h.sink.Count(); again != stopped {
		t.Errorf("sends went on past the stop date: %d, then %d", stopped, again)
	}
	// Nothing was written once the stop date had passed: every Date is before it.
	for _, m := range h.sink.Messages() {
		b := parseBuilt(t, m.Data, "")
		if date, err := b.header.Date(); err != nil || !date.Before(h.job.Stop) {
			t.Errorf("message to %s dated %v (%v), at or after the stop date %v", m.To, date, err, h.job.Stop)
		}
	}
	if c := h.counts(); c.Sent != int(stopped) || c.Pending != n-int(stopped) || c.Failed != 0 {
		t.Errorf("job counts after the stop date %+v, want %d sent and %d still pending", c, stopped, n-int(stopped))
	}
	if got := h.po.finishedCount(h.job.Key); got != 0 {
		t.Errorf("Finished called %d times for a job stopped with mail pending", got)
	}
}

// TestMailServerPausesWhileRelayIsDown: while no connection to the relay can be had, the
// deliveries are not charged retries; once the relay is back, every consumer gets one message.
func TestMailServerPausesWhileRelayIsDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there until the relay "comes back"
	h := newHarness(t, setup{consumers: 6, relayURL: "smtp://" + addr})
	// "waiting" once a pass found the relay down and paused.
	h.po.waitReport(t, 15*time.Second, "mail server 1 pausing for the relay", func(s postoffice.MailServerStatus) bool {
		return s.ID == 1 && s.State == "waiting"
	})
	if c := h.server(1).Counters(); c != (Counters{}) {
		t.Errorf("counters while the relay is down: %+v, want none", c)
	}
	for _, e := range h.emails {
		if d := h.delivery(e); d.RetryCount != 0 || d.Sent || d.Failed {
			t.Errorf("delivery to %s while the relay is down: %+v", e, d)
		}
	}
	back := &Sink{Keep: true}
	if err := back.Start(addr); err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	defer back.Close()
	h.waitDone(15 * time.Second)
	if n := back.Count(); n != 6 {
		t.Errorf("the relay got %d messages after coming back, want 6", n)
	}
	for _, e := range h.emails {
		if d := h.delivery(e); !d.Sent || d.RetryCount != 0 {
			t.Errorf("delivery to %s: %+v, want sent without retries", e, d)
		}
	}
}
