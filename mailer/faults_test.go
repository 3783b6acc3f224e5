package mailer

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
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

// The fault tests run real mail servers against a real store and a real SMTP sink that
// misbehaves: refusing, hanging up, stalling, and a database that cannot commit.

// logBuffer collects a logger's output for the test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// faultRig is a store with n consumers and one running job of them all, assigned to mail
// server 1.
type faultRig struct {
	t      *testing.T
	ctx    context.Context
	st     *store.Store
	po     *fakePostOffice
	keys   *postoffice.Keyring
	job    *postoffice.Job
	emails []string
	ids    map[string]int64
	log    *logBuffer
	pool   *Pool
	// stopped is closed when the pool's Run returns.
	stopped chan struct{}
}

func newFaultRig(t *testing.T, n int) *faultRig {
	t.Helper()
	ctx := context.Background()
	r := &faultRig{t: t, ctx: ctx, st: openStore(t), keys: testKeyring(t), ids: map[string]int64{}, log: &logBuffer{},
		stopped: make(chan struct{})}
	r.po = &fakePostOffice{st: r.st, finished: map[int64]int{}}
	if err := r.st.RegisterMailServers(ctx, 1, "smtp://sink"); err != nil {
		t.Fatal(err)
	}
	iss, err := r.st.EnsureIssuer(ctx, "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]rewards.Consumer, 0, n)
	for i := range n {
		c := rewards.Consumer{Email: fmt.Sprintf("c%05d@example.com", i), FirstName: fmt.Sprintf("Name%d", i),
			City: "Oslo", Format: rewards.FormatText}
		if i%2 == 1 {
			c.Format = rewards.FormatHTML
		}
		batch = append(batch, c)
		r.emails = append(r.emails, c.Email)
	}
	if _, _, err := r.st.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, e := range r.emails {
		c, err := r.st.ConsumerByEmail(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		r.ids[e] = c.ID
	}
	now := time.Now()
	job := &postoffice.Job{IssuerID: iss.ID, Name: "Faults", State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: n, MailServerID: 1}
	if err := r.st.CreateJob(ctx, job, textMessage(), htmlMessage(), postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	for complete := false; !complete; {
		if _, complete, err = r.st.SelectBatch(ctx, job, false, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if r.job, err = r.st.Job(ctx, job.Key); err != nil {
		t.Fatal(err)
	}
	if r.job.Selected != n {
		t.Fatalf("selected %d, want %d", r.job.Selected, n)
	}
	return r
}

// run starts one mail server with cfg (store, post office, tokens and logger filled in)
// until the test ends.
func (r *faultRig) run(cfg Config) {
	cfg.Store, cfg.PostOffice, cfg.Tokens, cfg.Addresses = r.st, r.po, r.keys, testAddresses
	cfg.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r.pool = NewPool([]int{1}, cfg)
	ctx, cancel := context.WithCancel(r.ctx)
	go func() {
		defer close(r.stopped)
		r.pool.Run(ctx)
	}()
	r.t.Cleanup(func() {
		cancel()
		select {
		case <-r.stopped:
		case <-time.After(10 * time.Second):
			r.t.Error("the pool did not stop within 10s of its context ending")
		}
	})
}

func (r *faultRig) waitDone(within time.Duration) {
	r.t.Helper()
	r.po.waitDone(r.t, within, r.job.Key)
}

// checkEachGotOne fails the test unless the sink took one message for each of the job's
// consumers.
func (r *faultRig) checkEachGotOne(sink *Sink) {
	r.t.Helper()
	per := map[string]int{}
	for _, m := range sink.Messages() {
		per[m.To]++
	}
	for _, e := range r.emails {
		if per[e] != 1 {
			r.t.Errorf("%s got %d messages", e, per[e])
		}
	}
}

func (r *faultRig) counts() postoffice.JobCounts {
	c, err := r.st.JobCounts(r.ctx, r.job.Key)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// fate is what the faulty relay does with one attempt.
type fate int

const (
	fateAccept fate = iota
	fateStall       // accepts after a stall well inside the sender's timeout
	fate4xx
	fate5xx
	fateDrop      // takes the message, then hangs up without a reply
	fateLongStall // takes the message, and answers only after the sender has timed out
)

func (f fate) String() string {
	return [...]string{"accept", "short stall", "4xx", "5xx", "drop after DATA", "stall past the timeout"}[f]
}

const (
	faultSeed = 20250501
	// The sender's command timeout; the final reply after DATA gets four times as long. A
	// command that times out on a loaded machine before DATA would be a retry the relay never
	// saw, so this is generous.
	faultTimeout = time.Second
	shortStall   = 60 * time.Millisecond
	longStall    = 4*faultTimeout + time.Second
)

// fateOf decides an attempt from the recipient and the attempt's number alone, so a
// failure reproduces: 20% 4xx, 5% 5xx, 1% dropped after DATA, 0.5% stalled past the
// timeout, 4% stalled within it.
func fateOf(to string, attempt int) fate {
	h := fnv.New64a()
	h.Write([]byte(to))
	u := rand.New(rand.NewPCG(h.Sum64()^faultSeed, uint64(attempt))).Float64()
	switch {
	case u < 0.20:
		return fate4xx
	case u < 0.25:
		return fate5xx
	case u < 0.26:
		return fateDrop
	case u < 0.265:
		return fateLongStall
	case u < 0.305:
		return fateStall
	}
	return fateAccept
}

// faultyRelay is the sink's Answer: it counts each recipient's attempts and the copies it
// took, and behaves as fateOf says.
type faultyRelay struct {
	mu       sync.Mutex
	attempts map[string]int
	copies   map[string]int
	fates    map[fate]int
}

func (f *faultyRelay) answer(from, to string, data []byte) error {
	f.mu.Lock()
	f.attempts[to]++
	n := f.attempts[to]
	fa := fateOf(to, n)
	f.fates[fa]++
	if fa != fate4xx && fa != fate5xx {
		f.copies[to]++ // taken: a reply lost after this is a duplicate, not a loss
	}
	f.mu.Unlock()
	switch fa {
	case fate4xx:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	case fate5xx:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case fateDrop:
		return ErrDrop
	case fateLongStall:
		time.Sleep(longStall)
	case fateStall:
		time.Sleep(shortStall)
	}
	return nil
}

// expected is what must become of a delivery, worked out from fateOf alone.
type expected struct {
	kind     postoffice.OutcomeKind
	retries  int // the delivery's retry count at the end
	attempts int // DATA the relay saw
	copies   int // messages the relay took
}

func expect(to string, maxRetries int) expected {
	var e expected
	for a := 1; ; a++ {
		e.attempts = a
		switch fateOf(to, a) {
		case fateAccept, fateStall:
			e.copies++
			e.kind, e.retries = postoffice.OutcomeSent, a-1
			return e
		case fate5xx:
			e.kind, e.retries = postoffice.OutcomeRejected, a-1
			return e
		case fateDrop, fateLongStall:
			e.copies++
		}
		if a-1 >= maxRetries {
			e.kind, e.retries = postoffice.OutcomeFailed, maxRetries
			return e
		}
	}
}

// TestRelayFaults sends a job of 3,000 through a relay that refuses, hangs up and stalls.
// Every delivery ends exactly as the relay's answers dictate: sent, rejected (5xx, never
// retried) or given up after exactly MaxRetries temporary failures, and the relay saw
// exactly the attempts and took exactly the copies that implies. The only duplicates are
// messages the relay took before the connection dropped or the sender timed out: the sender
// cannot tell those from lost ones, and retrying is the side that loses nothing.
func TestRelayFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a few thousand messages")
	}
	const n, maxRetries, workers = 3000, 3, 16
	r := newFaultRig(t, n)
	relay := &faultyRelay{attempts: map[string]int{}, copies: map[string]int{}, fates: map[fate]int{}}
	sink := &Sink{Answer: relay.answer}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	began := time.Now()
	r.run(Config{Relay: sink.URL(), Sender: newSender(t, sink.URL(), faultTimeout), Workers: workers,
		CommitSize: 64, CommitEvery: 10 * time.Millisecond, MaxRetries: maxRetries,
		RetryBase: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond, Poll: 20 * time.Millisecond, HaltCheck: 50 * time.Millisecond})
	r.waitDone(2 * time.Minute)
	elapsed := time.Since(began)

	c := r.counts()
	if c.Sent+c.Rejected+c.Failed != n || c.Pending != 0 || c.Total != n {
		t.Errorf("counts %+v: sent+rejected+failed = %d, want %d", c, c.Sent+c.Rejected+c.Failed, n)
	}
	relay.mu.Lock()
	defer relay.mu.Unlock()
	var want postoffice.JobCounts
	retries, duplicates, mismatches := 0, 0, 0
	for _, e := range r.emails {
		x := expect(e, maxRetries)
		d, err := r.st.Delivery(r.ctx, r.job.Key, r.ids[e])
		if err != nil {
			t.Fatal(err)
		}
		got := d.Sent && !d.Rejected && !d.Failed && x.kind == postoffice.OutcomeSent ||
			d.Rejected && !d.Sent && !d.Failed && x.kind == postoffice.OutcomeRejected ||
			d.Failed && !d.Sent && !d.Rejected && x.kind == postoffice.OutcomeFailed
		if !got || d.RetryCount != x.retries || relay.attempts[e] != x.attempts || relay.copies[e] != x.copies {
			if mismatches++; mismatches <= 10 {
				t.Errorf("%s: delivery sent %v rejected %v failed %v retries %d, relay saw %d attempts and took %d; want %v with %d retries, %d attempts, %d taken",
					e, d.Sent, d.Rejected, d.Failed, d.RetryCount, relay.attempts[e], relay.copies[e], x.kind, x.retries, x.attempts, x.copies)
			}
		}
		if d.RetryCount > maxRetries || d.Failed && d.RetryCount != maxRetries {
			t.Errorf("%s: retry count %d (failed %v), max retries %d", e, d.RetryCount, d.Failed, maxRetries)
		}
		if d.Sent && relay.copies[e] == 0 {
			t.Errorf("%s is marked sent but the relay never took her message", e)
		}
		if x.copies > 1 {
			duplicates += x.copies - 1
		}
		retries += d.RetryCount
		switch x.kind {
		case postoffice.OutcomeSent:
			want.Sent++
		case postoffice.OutcomeRejected:
			want.Rejected++
		case postoffice.OutcomeFailed:
			want.Failed++
		}
	}
	if c.Sent != want.Sent || c.Rejected != want.Rejected || c.Failed != want.Failed {
		t.Errorf("counts %+v, want sent %d rejected %d failed %d", c, want.Sent, want.Rejected, want.Failed)
	}
	if relay.fates[fateLongStall] == 0 || relay.fates[fateDrop] == 0 || want.Failed == 0 {
		t.Errorf("the faults were not exercised: %v, %d given up", relay.fates, want.Failed)
	}
	if strings.Contains(r.log.String(), "relay unreachable") {
		t.Errorf("a refusing relay was taken for a down one:\n%s", r.log.String())
	}
	t.Logf("seed %d, %d deliveries in %v: %d sent, %d rejected, %d given up after %d retries; %d retries in all; relay answers %v; %d duplicates (all after a drop or a timeout)",
		faultSeed, n, elapsed.Round(time.Millisecond), c.Sent, c.Rejected, c.Failed, maxRetries, retries, relay.fates, duplicates)
}

// troubledRig runs a job of n against a sink that takes a millisecond a message, with
// workers and small commit batches, for the database trouble tests.
func troubledRig(t *testing.T, n, workers, commitSize int) (*faultRig, *Sink) {
	r := newFaultRig(t, n)
	sink := &Sink{Keep: true, Answer: func(from, to string, data []byte) error {
		time.Sleep(time.Millisecond)
		return nil
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	r.run(Config{Relay: sink.URL(), Sender: newSender(t, sink.URL(), 5*time.Second), Workers: workers,
		CommitSize: commitSize, CommitEvery: 10 * time.Millisecond, MaxRetries: 2,
		RetryBase: 10 * time.Millisecond, Poll: 20 * time.Millisecond, HaltCheck: 50 * time.Millisecond})
	return r, sink
}

// TestDatabaseLocked holds the database's write lock from another connection for longer
// than the store's busy timeout while a job runs: the commit of outcomes fails, the mail
// server keeps the outcomes and stops sending (at most what the committer and the workers
// hold goes out meanwhile), marks nothing failed, does not stop, and finishes once the lock
// is gone with every consumer mailed exactly once.
func TestDatabaseLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a lock for 12s")
	}
	const n, workers, commitSize = 2000, 8, 50
	r, sink := troubledRig(t, n, workers, commitSize)
	waitFor(t, 30*time.Second, "sending to begin", func() bool { return sink.Count() >= 200 })

	db, err := sql.Open("sqlite3", "file:"+r.st.Path()+"?_busy_timeout=20000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(r.ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked, lockedAt := sink.Count(), time.Now()
	// Longer than the store's 10s busy timeout, so a commit fails and is retried.
	const hold = 12 * time.Second
	waitFor(t, hold, "a failed commit", func() bool { return strings.Contains(r.log.String(), "recording outcomes failed") })
	time.Sleep(time.Until(lockedAt.Add(hold))) // the trouble lasts a while longer
	during := sink.Count() - locked
	c := r.counts()
	select {
	case <-r.stopped:
		t.Fatal("the mail server stopped while the database was locked")
	default:
	}
	if _, err := conn.ExecContext(r.ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// Held back: one batch being committed, a full results channel, one message per worker.
	if limit := int64(2*commitSize + workers); during > limit {
		t.Errorf("%d messages went out while no outcome could be recorded, want at most %d", during, limit)
	}
	if c.Failed != 0 || c.Rejected != 0 {
		t.Errorf("while locked: counts %+v, want nothing failed or rejected", c)
	}

	r.waitDone(time.Minute)
	r.checkEachGotOne(sink)
	if c := r.counts(); c.Sent != n || c.Failed != 0 || c.Pending != 0 {
		t.Errorf("after the lock: counts %+v, want all %d sent", c, n)
	}
	t.Logf("locked at %d sent for %v; %d sent meanwhile; then all %d sent once; log:\n%s", locked, hold, during, n,
		strings.TrimSpace(r.log.String()))
}

// TestDatabaseFull caps the database at the pages it has while a job runs, as a full disk
// would: a commit of outcomes that needs a new page fails with "database or disk is full".
// The committer keeps its batch and retries, so the workers wait: after the first failed
// commit at most a full results channel and one message per worker go out, nothing more is
// recorded, nothing is marked failed, rejected or retried, and the mail server does not stop.
// Once there is room again it finishes with every consumer mailed exactly once.
func TestDatabaseFull(t *testing.T) {
	if testing.Short() {
		t.Skip("keeps the database full for 3s")
	}
	const n, workers, commitSize = 2000, 8, 50
	r, sink := troubledRig(t, n, workers, commitSize)
	server := r.pool.Servers()[0]
	waitFor(t, 30*time.Second, "sending to begin", func() bool { return sink.Count() >= 200 })

	// SQLite never sets the cap below the pages in use: 1 caps the file where it is.
	capped, err := r.st.SetMaxPageCount(r.ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	atCap := sink.Count()
	const failed = "recording outcomes failed"
	waitFor(t, 10*time.Second, "a commit failing for want of room", func() bool { return strings.Contains(r.log.String(), failed) })
	full, fullAt, committed, counters := sink.Count(), time.Now(), r.counts(), server.Counters()
	if line := firstLine(r.log.String(), failed); !strings.Contains(line, "full") {
		t.Errorf("the failed commit does not say the database is full: %s", line)
	}
	const hold = 3 * time.Second
	time.Sleep(hold) // the trouble lasts a while; the bound below is what must not move
	during, c := sink.Count()-full, r.counts()
	select {
	case <-r.stopped:
		t.Fatal("the mail server stopped while the database was full")
	default:
	}
	if _, err := r.st.SetMaxPageCount(r.ctx, 0); err != nil {
		t.Fatal(err)
	}
	roomAt := time.Now()
	// From the first failed commit the committer takes nothing more: the results channel
	// fills (CommitSize) and each worker sends one more message and waits to hand it in.
	if limit := int64(commitSize + workers); during > limit {
		t.Errorf("%d messages went out in the %v after the first failed commit, want at most %d", during, hold, limit)
	}
	if c != committed {
		t.Errorf("counts moved while the database was full: %+v, then %+v", committed, c)
	}
	if c.Failed != 0 || c.Rejected != 0 || c.Retrying != 0 {
		t.Errorf("while full: counts %+v, want nothing failed, rejected or retrying", c)
	}
	if got := server.Counters(); got != counters {
		t.Errorf("the server counted commits while the database was full: %+v, then %+v", counters, got)
	}

	r.waitDone(30 * time.Second)
	doneIn := time.Since(roomAt)
	select {
	case <-r.stopped:
		t.Fatal("the mail server stopped")
	default:
	}
	r.checkEachGotOne(sink)
	for _, e := range r.emails {
		d, err := r.st.Delivery(r.ctx, r.job.Key, r.ids[e])
		if err != nil {
			t.Fatal(err)
		}
		if !d.Sent || d.Failed || d.Rejected || d.RetryCount != 0 {
			t.Errorf("%s: sent %v failed %v rejected %v retries %d, want sent at the first attempt", e, d.Sent, d.Failed, d.Rejected, d.RetryCount)
		}
	}
	if c := r.counts(); c.Sent != n || int64(c.Sent) != sink.Count() || c.Failed != 0 || c.Rejected != 0 || c.Pending != 0 {
		t.Errorf("after the room came back: counts %+v, sink took %d; want all %d sent", c, sink.Count(), n)
	}
	if got := server.Counters(); got != (Counters{Sent: n}) {
		t.Errorf("server counters %+v, want %d sent and nothing else", got, n)
	}
	if strings.Contains(r.log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", r.log.String())
	}
	retries := strings.Count(r.log.String(), failed)
	t.Logf("capped at %d pages with %d sent; first failed commit after %d more; %d sent in the %v after it (bound %d); room back after %v; %d commit attempts failed in all; the job done %v later, all %d sent once; first failure: %s",
		capped, atCap, full-atCap, during, hold, commitSize+workers, roomAt.Sub(fullAt).Round(time.Millisecond), retries,
		doneIn.Round(time.Millisecond), n,
		firstLine(r.log.String(), failed))
}

// firstLine is the first line of log that contains s.
func firstLine(log, s string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// releaseFailingStore is the real store whose ReleaseLeases works once (at the mail
// server's start) and then fails, as on a database that takes the heartbeat but not that
// update.
type releaseFailingStore struct {
	*store.Store
	calls atomic.Int64
}

func (s *releaseFailingStore) ReleaseLeases(ctx context.Context, owner int) error {
	if s.calls.Add(1) > 1 {
		return errors.New("injected failure")
	}
	return s.Store.ReleaseLeases(ctx, owner)
}

// TestLeftLeasesEnd: a pass of mail server 1 claims every delivery, finds the relay down and
// cannot release its leases. The job then goes to mail server 2 while server 1 runs on, its
// heartbeat saved all the while: server 1's leases are not extended outside a pass, so they
// end, and server 2 sends every delivery once. Server 1 sends nothing.
func TestLeftLeasesEnd(t *testing.T) {
	const n, lease = 40, 300 * time.Millisecond
	r := newFaultRig(t, n)
	if err := r.st.RegisterMailServers(r.ctx, 2, "smtp://sink"); err != nil {
		t.Fatal(err)
	}
	// A port nobody listens on: the relay of server 1 is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "smtp://" + l.Addr().String()
	l.Close()
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })

	failing := &releaseFailingStore{Store: r.st}
	base := Config{Tokens: r.keys, Addresses: testAddresses, PostOffice: r.po, Workers: 2, Batch: n, Lease: lease,
		CommitEvery: 10 * time.Millisecond, Poll: 20 * time.Millisecond, HaltCheck: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	one, two := base, base
	one.ID, one.Store, one.Relay, one.Sender = 1, failing, down, newSender(t, down, 5*time.Second)
	two.ID, two.Store, two.Relay, two.Sender = 2, r.st, sink.URL(), newSender(t, sink.URL(), 5*time.Second)
	servers := []*MailServer{New(one), New(two)}

	ctx, cancel := context.WithCancel(r.ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, m := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Run(ctx)
		}()
	}
	// The post office's heartbeat, which saves each server's status and so extends its leases.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := r.st.ReportMailServers(ctx, []postoffice.MailServerStatus{servers[0].Status(), servers[1].Status()}); err != nil && ctx.Err() == nil {
				t.Errorf("heartbeat: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	// Server 1's first pass claims all, finds the relay down, and cannot release.
	waitFor(t, 30*time.Second, "server 1 to fail releasing after a pass", func() bool {
		return strings.Contains(r.log.String(), "releasing leases: injected failure")
	})
	if err := r.st.AssignJob(r.ctx, r.job.Key, 2); err != nil {
		t.Fatal(err)
	}
	movedAt := time.Now()
	r.waitDone(30 * time.Second)
	tookOver := time.Since(movedAt)

	r.checkEachGotOne(sink)
	if c := r.counts(); c.Sent != n || c.Pending != 0 || c.Failed != 0 {
		t.Errorf("counts %+v, want all %d sent", c, n)
	}
	if got := servers[0].Counters(); got != (Counters{}) {
		t.Errorf("server 1 counted %+v, want nothing", got)
	}
	if st := servers[0].Status(); !st.Leases.IsZero() {
		t.Errorf("idle server 1 reports leases until %v, want none", st.Leases)
	}
	t.Logf("server 2 sent all %d in %v after the job moved (lease %v); %d failed releases", n,
		tookOver.Round(time.Millisecond), lease, failing.calls.Load()-1)
}
