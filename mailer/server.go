// Package mailer is the pool of mail servers 195: each one's dispatcher 197 claims the
// deliveries of the jobs assigned to it, writes every message on the fly (DKIM-signed, with
// its unsubscribe headers) and sends it over an SMTP relay or into the embedded outbox. It
// also holds the receiver 199, which takes replies, bounces and complaints over SMTP and
// hands them to the post office, and the notices and test sends the toolbox asks for.
package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// Store is what a mail server reads and writes in the post office database.
type Store interface {
	Jobs(ctx context.Context, states ...postoffice.JobState) ([]*postoffice.Job, error)
	Job(ctx context.Context, key int64) (*postoffice.Job, error)
	Messages(ctx context.Context, job *postoffice.Job) (text, html *postoffice.Message, err error)
	// LeaseRecipients claims due deliveries of a job for the mail server owner until until;
	// RecordOutcomes records them and ends their leases; ReleaseLeases ends the leases of
	// what the server claimed and did not send.
	LeaseRecipients(ctx context.Context, jobKey int64, owner int, now, until time.Time, limit int) ([]postoffice.Recipient, error)
	RecordOutcomes(ctx context.Context, outcomes []postoffice.Outcome) error
	ReleaseLeases(ctx context.Context, owner int) error
	// NextClaimable is when the first of a job's deliveries still to send can next be
	// claimed; ok is false when none is left.
	NextClaimable(ctx context.Context, jobKey int64) (at time.Time, ok bool, err error)
	PendingCount(ctx context.Context, jobKey int64) (int, error)
	// StatusGeneration moves whenever a consumer may have left 'active'; ConsumerStatuses
	// rereads the statuses of claimed consumers when it has moved since their claim.
	StatusGeneration() uint64
	ConsumerStatuses(ctx context.Context, ids []int64) (map[int64]rewards.ConsumerStatus, error)
}

// PostOffice is what a mail server tells the post office.
type PostOffice interface {
	Report(postoffice.MailServerStatus)
	Finished(ctx context.Context, jobKey int64) error
}

// Config configures one mail server. Zero fields get the defaults New gives.
type Config struct {
	// ID is the server's own among every process's on the database (its mail_servers row);
	// it names the leases of what it claims.
	ID         int
	Relay      string // shown in its status; "" for the embedded outbox
	Store      Store
	PostOffice PostOffice
	Sender     Sender
	Tokens     *postoffice.Keyring
	Addresses  Addresses
	// DKIM signs every message; nil sends them unsigned.
	DKIM *DKIMSigner
	// Workers is how many messages are in flight at once (and relay connections open).
	Workers int
	// Batch is how many deliveries one claim takes.
	Batch int
	// Lease is how long claimed deliveries stay the server's after its last heartbeat: a
	// process that dies leaves them to another server once it has passed.
	Lease time.Duration
	// CommitSize and CommitEvery bound how many outcomes wait for one transaction, and how long.
	CommitSize  int
	CommitEvery time.Duration
	// MaxRetries is how many times a delivery is retried after a temporary failure before it
	// is given up (0: never retried); the wait doubles from RetryBase up to RetryMax.
	MaxRetries int
	RetryBase  time.Duration
	RetryMax   time.Duration
	// Poll is how often an idle server looks for work; HaltCheck how often a running one
	// rereads its job for a suspend or a stop.
	Poll      time.Duration
	HaltCheck time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// MailServer sends the jobs the post office assigns to it.
type MailServer struct {
	cfg Config

	sent, retried, rejected, failed atomic.Int64
	queue                           atomic.Int64

	// relayPause is how long to wait after the relay could not be reached; it doubles
	// while the relay stays down. Only the dispatcher goroutine touches it.
	relayPause time.Duration
	relayDown  atomic.Bool
	// leasing is set while a pass works on what it claims: only then does the heartbeat
	// extend the server's leases (Status). Leases a pass left behind (leftover) are not
	// extended, so they end by themselves and the job's deliveries are another server's
	// once the job is; the next pass releases them before it claims. leftover is touched
	// by the dispatcher goroutine alone.
	leasing  atomic.Bool
	leftover bool
	// waiting is set when no route had room for a message: the pass ends and the job waits.
	waiting atomic.Pointer[WaitError]

	mu       sync.Mutex
	state    string
	note     string // why the server waits, and until when
	jobs     []int64
	rate     float64
	compiled map[int64]*jobMessages
}

// New returns a mail server; Run starts it.
func New(cfg Config) *MailServer {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 512
	}
	if cfg.Lease <= 0 {
		cfg.Lease = postoffice.DefaultLease
	}
	// Outcomes not yet committed at a crash are sent again after the restart: small, frequent
	// commits keep that window short. A WAL commit without fsync costs little.
	if cfg.CommitSize <= 0 {
		cfg.CommitSize = 500
	}
	if cfg.CommitEvery <= 0 {
		cfg.CommitEvery = 25 * time.Millisecond
	}
	cfg.MaxRetries = max(cfg.MaxRetries, 0)
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Minute
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 2 * time.Hour
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.HaltCheck <= 0 {
		cfg.HaltCheck = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Logger = cfg.Logger.With("mail_server", cfg.ID)
	return &MailServer{cfg: cfg, state: "idle", compiled: map[int64]*jobMessages{}}
}

// Counters are a mail server's totals since it started.
type Counters struct {
	Sent, Retried, Rejected, Failed int64
}

// Counters returns the totals.
func (m *MailServer) Counters() Counters {
	return Counters{m.sent.Load(), m.retried.Load(), m.rejected.Load(), m.failed.Load()}
}

// Status is what the server reports to the post office.
func (m *MailServer) Status() postoffice.MailServerStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	st := postoffice.MailServerStatus{
		ID: m.cfg.ID, Name: fmt.Sprintf("mail-%d", m.cfg.ID), Relay: m.cfg.Relay, State: m.state, Note: m.note,
		Jobs: append([]int64(nil), m.jobs...), Queue: int(m.queue.Load()), Rate: m.rate,
		Sent: m.sent.Load(), Retried: m.retried.Load(), Rejected: m.rejected.Load() + m.failed.Load(),
		ReportedAt: now,
	}
	if m.state != postoffice.StateStopped && m.leasing.Load() {
		st.Leases = now.Add(m.cfg.Lease)
	}
	return st
}

func (m *MailServer) setState(state string, jobs []int64) {
	m.mu.Lock()
	m.state, m.jobs = state, jobs
	if state != "waiting" {
		m.note = ""
	}
	m.mu.Unlock()
}

// Run is the dispatcher: until ctx ends it runs passes over the jobs assigned to this
// server, and reports its status every second.
func (m *MailServer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.reportLoop(ctx)
	}()
	defer wg.Wait()
	// Leases this server's id held before a restart under the same name are of messages
	// whose outcome was never recorded: they are this server's to send again at once.
	if err := m.cfg.Store.ReleaseLeases(ctx, m.cfg.ID); err != nil {
		m.leftover = true // the first pass tries again; until then they are not extended
		if ctx.Err() == nil {
			m.cfg.Logger.Warn("releasing the leases of before the start", "err", err)
		}
	}
	due := map[int64]time.Time{}
	wakes := map[int64]<-chan struct{}{}
	for ctx.Err() == nil {
		ran, err := m.dispatch(ctx, due, wakes)
		if err != nil && ctx.Err() == nil {
			m.cfg.Logger.Error("dispatch", "err", err)
		}
		if !ran {
			select {
			case <-ctx.Done():
			case <-time.After(m.cfg.Poll):
			}
		}
	}
	m.setState(postoffice.StateStopped, nil)
	return nil
}

// dispatch runs one pass over each of this server's jobs that is due. A job waiting for a
// route is due again when its wait ends or the routes change, whichever comes first.
func (m *MailServer) dispatch(ctx context.Context, due map[int64]time.Time, wakes map[int64]<-chan struct{}) (ran bool, err error) {
	jobs, err := m.cfg.Store.Jobs(ctx, postoffice.JobRunning)
	if err != nil {
		return false, err
	}
	now := m.cfg.Now()
	var mine []int64
	for _, job := range jobs {
		if job.MailServerID != m.cfg.ID {
			continue
		}
		mine = append(mine, job.Key)
		if !job.Sendable(now) || due[job.Key].After(now) && !closed(wakes[job.Key]) {
			continue
		}
		m.setState("sending", mine)
		next, err := m.pass(ctx, job)
		delete(wakes, job.Key)
		if err != nil {
			due[job.Key] = now.Add(m.cfg.Poll)
			return true, fmt.Errorf("job %d: %w", job.Key, err)
		}
		due[job.Key] = next
		if w := m.waiting.Load(); w != nil {
			wakes[job.Key] = w.Changed
		}
		ran = true
	}
	if !ran {
		state := "idle"
		if len(mine) > 0 {
			state = "waiting"
		}
		m.setState(state, mine)
		if len(mine) == 0 {
			m.queue.Store(0)
		}
	}
	return ran, nil
}

// closed reports whether ch is closed; a nil ch never is.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pass sends every delivery of job that is due, in id order, until there is none left or the
// job is suspended or stopped. It returns when the job should next be looked at.
func (m *MailServer) pass(ctx context.Context, job *postoffice.Job) (time.Time, error) {
	jm, err := m.compile(ctx, job)
	if err != nil {
		return time.Time{}, err
	}
	if m.leftover {
		// What a failed pass left leased: unsent, or sent with its outcome lost, and then
		// sent again (at least once). Released before this pass claims, so the heartbeat
		// of this pass does not keep it from everyone.
		if err := m.cfg.Store.ReleaseLeases(ctx, m.cfg.ID); err != nil {
			return time.Time{}, fmt.Errorf("releasing the leases a pass left: %w", err)
		}
		m.leftover = false
	}
	if pending, err := m.cfg.Store.PendingCount(ctx, job.Key); err == nil {
		m.queue.Store(int64(pending))
	}
	m.leasing.Store(true)
	defer m.leasing.Store(false)
	passCtx, halt := context.WithCancel(ctx)
	var halted atomic.Bool
	stop := func() { halted.Store(true); halt() }
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		m.watch(passCtx, job, stop)
	}()
	defer watcher.Wait()
	defer halt() // ends the watcher; runs before the Wait above
	m.relayDown.Store(false)
	m.waiting.Store(nil)

	// claims ends when no route has room: nothing more is claimed or started, but the messages
	// already on the wire finish, so the relay's answer to each is heard and recorded.
	claims, endClaims := context.WithCancel(passCtx)
	defer endClaims()
	work := make(chan claimedDelivery, m.cfg.Batch)
	results := make(chan postoffice.Outcome, m.cfg.CommitSize)
	var workers, committer sync.WaitGroup
	for range m.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			m.worker(passCtx, claims, job, jm, work, results, stop, endClaims)
		}()
	}
	var commitErr error
	committer.Add(1)
	go func() {
		defer committer.Done()
		commitErr = m.commit(ctx, results)
	}()

	claimErr := m.claim(claims, job.Key, work)
	close(work)
	workers.Wait()
	close(results)
	committer.Wait()
	if commitErr != nil {
		// Sent messages whose outcomes are not recorded keep their leases, which end by
		// themselves (no heartbeat extends them once the pass is over): released now, they
		// would be sent again at once.
		m.leftover = true
		return time.Time{}, commitErr
	}
	// What was claimed and not sent (halted, the route full, the relay down) is free for the
	// next claim, this server's or another's, at once; also when the server is stopping.
	if err := m.cfg.Store.ReleaseLeases(context.WithoutCancel(ctx), m.cfg.ID); err != nil {
		m.leftover = true
		return time.Time{}, fmt.Errorf("releasing leases: %w", err)
	}
	now := m.cfg.Now()
	if w := m.waiting.Load(); w != nil && ctx.Err() == nil {
		// Our own limits: nothing was charged, the deliveries wait with the job.
		m.mu.Lock()
		m.state, m.note = "waiting", w.Error()
		m.mu.Unlock()
		m.cfg.Logger.Info("job waits", "job", job.Key, "reason", w.Reason, "until", w.Until)
		return w.Until, nil
	}
	if m.relayDown.Load() {
		m.relayPause = min(max(2*m.relayPause, time.Second), time.Minute)
		m.cfg.Logger.Warn("relay unreachable; pausing", "job", job.Key, "for", m.relayPause)
		return now.Add(m.relayPause), nil
	}
	m.relayPause = 0
	if halted.Load() || ctx.Err() != nil {
		return now.Add(m.cfg.Poll), nil
	}
	if claimErr != nil {
		return time.Time{}, claimErr
	}
	return m.nextLook(ctx, job, now)
}

// nextLook decides, after a pass, when the job has work again: now if deliveries are due,
// at the earliest retry, or never when nothing is pending (then the job is finished).
func (m *MailServer) nextLook(ctx context.Context, job *postoffice.Job, now time.Time) (time.Time, error) {
	pending, err := m.cfg.Store.PendingCount(ctx, job.Key)
	if err != nil {
		return time.Time{}, err
	}
	m.queue.Store(int64(pending))
	if pending == 0 {
		fresh, err := m.cfg.Store.Job(ctx, job.Key)
		if err != nil {
			return time.Time{}, err
		}
		if !fresh.SelectedAll {
			return now.Add(m.cfg.Poll / 5), nil
		}
		m.forget(job.Key)
		return now.Add(m.cfg.Poll), m.cfg.PostOffice.Finished(ctx, job.Key)
	}
	// At the earliest retry, or when the lease of a delivery another server claimed ends
	// (it died, or stopped without recording it): the job's server takes it over.
	next, ok, err := m.cfg.Store.NextClaimable(ctx, job.Key)
	if err != nil || !ok || !next.After(now) {
		return now, err
	}
	return next, nil
}

func (m *MailServer) compile(ctx context.Context, job *postoffice.Job) (*jobMessages, error) {
	m.mu.Lock()
	jm := m.compiled[job.Key]
	m.mu.Unlock()
	if jm != nil {
		jm.job = job
		return jm, nil
	}
	text, html, err := m.cfg.Store.Messages(ctx, job)
	if err != nil {
		return nil, err
	}
	jm, err = compileJob(job, text, html, m.cfg.Addresses)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.compiled[job.Key] = jm
	m.mu.Unlock()
	return jm, nil
}

func (m *MailServer) forget(jobKey int64) {
	m.mu.Lock()
	delete(m.compiled, jobKey)
	m.mu.Unlock()
}

// watch rereads the job until ctx ends and calls halt once it may no longer send: suspended,
// stopped, or past its stop date.
func (m *MailServer) watch(ctx context.Context, job *postoffice.Job, halt func()) {
	t := time.NewTicker(m.cfg.HaltCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fresh, err := m.cfg.Store.Job(ctx, job.Key)
		if err != nil {
			if ctx.Err() == nil {
				m.cfg.Logger.Warn("rereading job", "job", job.Key, "err", err)
			}
			continue
		}
		if !fresh.Sendable(m.cfg.Now()) || fresh.MailServerID != m.cfg.ID {
			m.cfg.Logger.Info("job halted", "job", job.Key, "state", fresh.State, "suspended", fresh.Suspended)
			halt()
			return
		}
	}
}

// claimed is one claimed batch of deliveries, shared by the workers that send them. A
// consumer read as active at the claim may leave 'active' before her message goes out (she
// unsubscribes, bounces, complains): gen tells whether anyone may have, and view what a
// reread found.
type claimed struct {
	recipients []postoffice.Recipient
	// gen is the store's status generation read before the claim's query: while it has not
	// moved, the statuses the claim read are current.
	gen  uint64
	mu   sync.Mutex // one reread at a time
	view atomic.Pointer[statusView]
}

// statusView is what a reread of a batch's statuses found: as of generation gen, the
// consumers of recipients[from:] no longer active, with their status.
type statusView struct {
	gen     uint64
	from    int
	stopped map[int64]rewards.ConsumerStatus
}

// claimedDelivery is recipient i of a claimed batch, on its way to a worker.
type claimedDelivery struct {
	batch *claimed
	i     int
}

// claim feeds the workers batch after batch of due deliveries, each batch leased to this
// server: what it holds, no other server claims.
func (m *MailServer) claim(ctx context.Context, jobKey int64, work chan<- claimedDelivery) error {
	for {
		// Read before the query: a status change the query misses moves it afterwards.
		gen := m.cfg.Store.StatusGeneration()
		now := m.cfg.Now()
		batch, err := m.cfg.Store.LeaseRecipients(ctx, jobKey, m.cfg.ID, now, now.Add(m.cfg.Lease), m.cfg.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		b := &claimed{recipients: batch, gen: gen}
		for i := range batch {
			select {
			case work <- claimedDelivery{b, i}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// stoppedSince returns the status of d's consumer if she has left 'active' since her claim,
// "" if she has not. While the store's status generation has not moved since the claim that
// is one atomic load. Once it has, the first worker to notice rereads, in one query, the
// statuses of the batch's consumers from d on, and the others use what it found until the
// generation moves again. Returns the store's error or the context's.
func (m *MailServer) stoppedSince(ctx context.Context, d claimedDelivery) (rewards.ConsumerStatus, error) {
	b, id := d.batch, d.batch.recipients[d.i].Consumer.ID
	gen := m.cfg.Store.StatusGeneration()
	if gen == b.gen {
		return "", nil
	}
	if v := b.view.Load(); v != nil && v.gen == gen && d.i >= v.from {
		return v.stopped[id], nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	gen = m.cfg.Store.StatusGeneration()
	if v := b.view.Load(); v != nil && v.gen == gen && d.i >= v.from {
		return v.stopped[id], nil // another worker reread while this one waited
	}
	// Earlier recipients are sent or with a worker that will look for itself.
	ids := make([]int64, 0, len(b.recipients)-d.i)
	for i := d.i; i < len(b.recipients); i++ {
		if r := &b.recipients[i]; r.Mailable() {
			ids = append(ids, r.Consumer.ID)
		}
	}
	statuses, err := m.cfg.Store.ConsumerStatuses(ctx, ids)
	if err != nil {
		return "", err
	}
	v := &statusView{gen: gen, from: d.i}
	for cid, status := range statuses {
		if status != rewards.StatusActive {
			if v.stopped == nil {
				v.stopped = map[int64]rewards.ConsumerStatus{}
			}
			v.stopped[cid] = status
		}
	}
	b.view.Store(v)
	return v.stopped[id], nil
}

// notSent closes a delivery whose consumer may no longer be mailed.
func notSent(r *postoffice.Recipient, status rewards.ConsumerStatus, now time.Time) postoffice.Outcome {
	return postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeFailed, At: now,
		Error: fmt.Sprintf("not sent: consumer is %s", status)}
}

// worker renders and sends until work is closed; once ctx ends it drains work unsent.
// A relay that cannot be reached stops the pass through halt: the delivery stays pending.
func (m *MailServer) worker(ctx, claims context.Context, job *postoffice.Job, jm *jobMessages, work <-chan claimedDelivery,
	results chan<- postoffice.Outcome, halt, endClaims func()) {
	var buf, signed, scratch []byte
	var env Envelope
	for d := range work {
		r := &d.batch.recipients[d.i] // shared with the other workers: read only
		now := m.cfg.Now()
		if claims.Err() != nil || !now.Before(job.Stop) {
			continue
		}
		if !r.Mailable() {
			results <- notSent(r, r.Consumer.Status, now)
			continue
		}
		if job.Key > postoffice.MaxJobKey || r.Consumer.ID > postoffice.MaxConsumerID {
			// A token cannot carry ids this large; better a failed delivery than a panic.
			results <- postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeFailed, At: now,
				Error: "not sent: the job key or consumer id is too large for a token"}
			continue
		}
		token, account := m.cfg.Tokens.Encode(job.Key, r.Consumer.ID), ""
		if jm.needsAccount {
			account = m.cfg.Tokens.Encode(0, r.Consumer.ID)
		}
		buf, scratch = jm.build(buf[:0], r, token, account, dateHeader(now), scratch)
		env.DeliveryID, env.To, env.Data = r.DeliveryID, r.Consumer.Email, buf
		env.From, env.Subject, env.Pin = m.returnPath(token), job.Name, job.Route
		if m.cfg.DKIM != nil {
			var err error
			if signed, err = m.cfg.DKIM.Sign(signed[:0], buf); err != nil {
				// Not the consumer's doing, and no reason to send unsigned: retried, then
				// given up, with the reason on the delivery.
				results <- m.outcome(r, err, now, "")
				continue
			}
			env.Data = signed
		}
		// She may have unsubscribed since the claim: her request wins over a message already
		// written.
		if status, err := m.stoppedSince(ctx, d); err != nil {
			if ctx.Err() == nil {
				m.cfg.Logger.Warn("rereading consumer statuses; the delivery waits for the next pass",
					"delivery", r.DeliveryID, "err", err)
			}
			continue
		} else if status != "" {
			results <- notSent(r, status, m.cfg.Now())
			continue
		}
		err := m.cfg.Sender.Send(ctx, &env)
		if err != nil && ctx.Err() != nil {
			continue // halted while sending: the delivery stays pending, no retry is counted
		}
		if wait := (*WaitError)(nil); errors.As(err, &wait) {
			m.waiting.CompareAndSwap(nil, wait)
			endClaims()
			continue
		}
		if Classify(err) == VerdictRelayDown {
			if !m.relayDown.Swap(true) {
				m.cfg.Logger.Warn("relay unreachable", "err", err)
			}
			halt()
			continue
		}
		results <- m.outcome(r, err, m.cfg.Now(), env.Route)
	}
}

// returnPath is a delivery's envelope sender, bounce+TOKEN@ReplyDomain (VERP): a bounce
// comes back to an address that names the delivery.
func (m *MailServer) returnPath(token string) string {
	domain := m.cfg.Addresses.ReplyDomain
	if domain == "" {
		from := m.cfg.Addresses.From.Address
		domain = from[strings.LastIndexByte(from, '@')+1:]
	}
	return "bounce+" + token + "@" + domain
}

// outcome turns a send's result into what is recorded for the delivery.
// route names the route that took a sent message, for its quotas.
func (m *MailServer) outcome(r *postoffice.Recipient, err error, now time.Time, route string) postoffice.Outcome {
	o := postoffice.Outcome{DeliveryID: r.DeliveryID, At: now, Refusal: RefusalOf(err)}
	switch Classify(err) {
	case VerdictSent:
		o.Kind, o.Route = postoffice.OutcomeSent, route
	case VerdictRejected:
		o.Kind, o.Error = postoffice.OutcomeRejected, RejectionText(err)
	case VerdictRetry:
		if r.RetryCount >= m.cfg.MaxRetries {
			o.Kind = postoffice.OutcomeFailed
			o.Error = fmt.Sprintf("gave up after %d retries: %v", r.RetryCount, err)
		} else {
			o.Kind, o.Error = postoffice.OutcomeRetry, err.Error()
			o.NextAttempt = now.Add(m.backoff(r.RetryCount))
		}
	}
	return o
}

// backoff is the wait before retry n+1: RetryBase doubled n times, at most RetryMax.
func (m *MailServer) backoff(n int) time.Duration {
	d := m.cfg.RetryBase
	for i := 0; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.RetryMax)
}

// commit records outcomes in batches: when CommitSize are waiting or CommitEvery has passed.
// A failing commit is retried, holding the batch, so the workers wait rather than lose
// results; after ctx ends what is left is still written, the mail having gone out.
func (m *MailServer) commit(ctx context.Context, results <-chan postoffice.Outcome) error {
	batch := make([]postoffice.Outcome, 0, m.cfg.CommitSize)
	t := time.NewTicker(m.cfg.CommitEvery)
	defer t.Stop()
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		wait := 50 * time.Millisecond
		for attempt := 0; ; attempt++ {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			err := m.cfg.Store.RecordOutcomes(wctx, batch)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil && attempt >= 3 {
				return fmt.Errorf("recording %d outcomes: %w", len(batch), err)
			}
			m.cfg.Logger.Warn("recording outcomes failed; will retry", "count", len(batch), "err", err)
			time.Sleep(wait)
			wait = min(wait*2, 5*time.Second)
		}
		for _, o := range batch {
			switch o.Kind {
			case postoffice.OutcomeSent:
				m.sent.Add(1)
				m.queue.Add(-1)
			case postoffice.OutcomeRetry:
				m.retried.Add(1)
			case postoffice.OutcomeRejected:
				m.rejected.Add(1)
				m.queue.Add(-1)
			case postoffice.OutcomeFailed:
				m.failed.Add(1)
				m.queue.Add(-1)
			}
		}
		batch = batch[:0]
		return nil
	}
	var err error
	for err == nil {
		select {
		case o, ok := <-results:
			if !ok {
				return flush()
			}
			o.Owner = m.cfg.ID // the lease it was claimed under
			batch = append(batch, o)
			if len(batch) >= m.cfg.CommitSize {
				err = flush()
			}
		case <-t.C:
			err = flush()
		}
	}
	// Unrecorded outcomes leave their deliveries pending, to be sent again after a restart;
	// the workers must still be able to hand theirs in and finish.
	for range results {
	}
	return err
}

// reportLoop measures the send rate and reports the status every second.
func (m *MailServer) reportLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, lastAt := m.sent.Load(), m.cfg.Now()
	m.cfg.PostOffice.Report(m.Status())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, sent := m.cfg.Now(), m.sent.Load()
		if secs := now.Sub(lastAt).Seconds(); secs > 0 {
			instant := float64(sent-last) / secs
			m.mu.Lock()
			if instant > 0 || m.state != "sending" {
				// An exponential average: a job's estimate follows changes within seconds.
				m.rate = 0.7*m.rate + 0.3*instant
			}
			m.mu.Unlock()
		}
		last, lastAt = sent, now
		m.cfg.PostOffice.Report(m.Status())
	}
}
