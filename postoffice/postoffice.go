package postoffice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"pointpost/rewards"
)

// Store is what the post office keeps in its database 184.
type Store interface {
	EnsureIssuer(ctx context.Context, slug, name string) (rewards.Issuer, error)
	CreateJob(ctx context.Context, job *Job, text, html *Message, rules JobRules) error
	Job(ctx context.Context, key int64) (*Job, error)
	Jobs(ctx context.Context, states ...JobState) ([]*Job, error)
	SetJobState(ctx context.Context, key int64, state JobState, reason string) error
	SetJobSuspended(ctx context.Context, key int64, suspended bool) error
	// ScheduleJob moves a draft to scheduled, recording override when it is set. Returns
	// rewards.ErrConflict (wrapped) when the job is no longer a draft.
	ScheduleJob(ctx context.Context, key int64, override BudgetOverride) error
	// RecordAssignment writes the mail server that will send a job (216f) and why, if the
	// job still has a.Replaces; rewards.ErrConflict (wrapped) if it has another.
	RecordAssignment(ctx context.Context, key int64, a Assignment) error
	SelectBatch(ctx context.Context, job *Job, raw bool, limit int) (added int, complete bool, err error)
	// CompileSelection writes checked criteria as the engine's WHERE expression over the
	// consumers, with its parameters; a raw expression as it is.
	CompileSelection(c *Criteria) (where string, args []any, err error)
	CheckSelection(ctx context.Context, where string, args []any, raw bool) (int, error)
	PendingCount(ctx context.Context, key int64) (int, error)
	ReportMailServers(ctx context.Context, statuses []MailServerStatus) error
	// MailServers returns the last status every mail server, of every process, reported.
	MailServers(ctx context.Context) ([]MailServerStatus, error)
	AckStore
	Messages(ctx context.Context, job *Job) (text, html *Message, err error)
	ConsumerByID(ctx context.Context, id int64) (*rewards.Consumer, error)
}

// JobRules are the award rules a new job's acknowledgements earn under: rules made with
// the job, and the issuer's existing rules by ID.
type JobRules struct {
	New      []*rewards.AwardRule
	Existing []int64
}

// MailServerStatus is what a mail server reports about itself (claim 8).
type MailServerStatus struct {
	// ID is the server's own across every process on the database; Process names the
	// process it runs in (serve --name).
	ID      int
	Name    string
	Process string
	Relay   string
	State   string // idle, sending, waiting, paused
	// Note says why a waiting server waits, and until when.
	Note string
	Jobs []int64
	// Queue is the deliveries of its jobs still to send; Rate its measured messages/s.
	Queue    int
	Rate     float64
	Sent     int64
	Retried  int64
	Rejected int64
	// ReportedAt is the heartbeat: a server whose last report is older than the post
	// office's HeartbeatTimeout is dead, and its jobs go to live ones.
	ReportedAt time.Time
	// Leases is until when the deliveries the server has claimed stay its own: saving the
	// report extends their leases to it. Zero outside a pass: leases a failed pass left
	// behind are not extended, and end by themselves.
	Leases time.Time
}

// StateStopped is the state a mail server reports as it stops: dead without waiting for
// its heartbeat to age.
const StateStopped = "stopped"

// nominalRate stands in for a mail server's rate before it has measured one.
const nominalRate = 1000.0

// IdleIn estimates how long the server needs to empty its queue.
func (st MailServerStatus) IdleIn() time.Duration {
	if st.Queue <= 0 {
		return 0
	}
	rate := st.Rate
	if rate <= 0 {
		rate = nominalRate
	}
	return time.Duration(float64(st.Queue) / rate * float64(time.Second))
}

// Config configures a PostOffice.
type Config struct {
	Store  Store
	Tokens *Keyring
	// BaseURL is where consumer pages are served, for the URLs in messages.
	BaseURL string
	// SelectBatch is how many deliveries one selection transaction writes.
	SelectBatch int
	// Tick is how often the scheduler looks at the jobs.
	Tick time.Duration
	// HeartbeatTimeout is how long after its last report a mail server counts as dead.
	HeartbeatTimeout time.Duration
	Logger           *slog.Logger
	Now              func() time.Time
}

// PostOffice schedules jobs, selects their audience and assigns them to mail servers.
type PostOffice struct {
	cfg Config

	mu       sync.Mutex
	statuses map[int]MailServerStatus
	// local are the mail servers that report to this post office in its process; the
	// others' statuses are read from the store.
	local map[int]bool
	// given is what the post office gave each mail server, by ID; given counts the jobs.
	given    map[int]*givenTo
	assigned uint64
}

// givenTo is what a mail server was given: when it was last given a job, and the jobs its
// reports do not show yet.
type givenTo struct {
	last       uint64
	unreported map[int64]*unreportedJob
}

// unreportedJob is a job given to a mail server that its reports have not listed yet: its
// deliveries count in the server's queue until one does, or until two reports have not
// (the job ended between them, or the server has not taken it up: stop guessing).
type unreportedJob struct {
	deliveries, reportsSince int
}

// New returns a post office with cfg's zero fields set to defaults.
func New(cfg Config) *PostOffice {
	if cfg.SelectBatch <= 0 {
		cfg.SelectBatch = 50_000
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultLease
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &PostOffice{cfg: cfg, statuses: map[int]MailServerStatus{}, local: map[int]bool{}, given: map[int]*givenTo{}}
}

// DefaultLease is how long a mail server that stopped reporting counts as alive, keeping its
// jobs and the deliveries it claimed (serve --lease).
const DefaultLease = 15 * time.Second

// Tokens is the keyring acknowledgement tokens are made and checked with.
func (po *PostOffice) Tokens() *Keyring { return po.cfg.Tokens }

// BaseURL is where consumer pages live.
func (po *PostOffice) BaseURL() string { return po.cfg.BaseURL }

// Now is the post office's clock.
func (po *PostOffice) Now() time.Time { return po.cfg.Now() }

// Report records the status of a mail server of this process; the post office assigns jobs
// from these and from the other processes' (refresh), and saves them (Run).
func (po *PostOffice) Report(st MailServerStatus) {
	if st.ReportedAt.IsZero() {
		st.ReportedAt = po.cfg.Now()
	}
	po.mu.Lock()
	po.local[st.ID] = true
	po.record(st)
	po.mu.Unlock()
}

// refresh reads the statuses the other processes' mail servers saved, and takes each one
// newer than the post office has; one already dead when read is left out.
func (po *PostOffice) refresh(ctx context.Context) error {
	saved, err := po.cfg.Store.MailServers(ctx)
	if err != nil {
		return err
	}
	po.mu.Lock()
	defer po.mu.Unlock()
	for _, st := range saved {
		if po.local[st.ID] || !st.ReportedAt.After(po.statuses[st.ID].ReportedAt) ||
			po.statuses[st.ID].ReportedAt.IsZero() && !po.alive(st) {
			continue
		}
		po.record(st)
	}
	return nil
}

// alive reports whether st is of a mail server still running, by the post office's clock
// and heartbeat timeout.
func (po *PostOffice) alive(st MailServerStatus) bool {
	return st.Alive(po.cfg.Now(), po.cfg.HeartbeatTimeout)
}

// Alive reports whether st is of a mail server still running at now: reported within
// timeout and not stopped. A dead server is given no job, and its jobs go to live ones.
func (st MailServerStatus) Alive(now time.Time, timeout time.Duration) bool {
	return st.State != StateStopped && now.Sub(st.ReportedAt) <= timeout
}

// HeartbeatTimeout is how long after its last report a mail server counts as alive.
func (po *PostOffice) HeartbeatTimeout() time.Duration { return po.cfg.HeartbeatTimeout }

// record takes a mail server's report; po.mu is held.
func (po *PostOffice) record(st MailServerStatus) {
	po.statuses[st.ID] = st
	if g := po.given[st.ID]; g != nil {
		for key, u := range g.unreported {
			if u.reportsSince++; u.reportsSince > 2 || slices.Contains(st.Jobs, key) {
				delete(g.unreported, key)
			}
		}
	}
}

// localStatuses returns the latest status of this process's mail servers, for the store.
func (po *PostOffice) localStatuses() []MailServerStatus {
	var out []MailServerStatus
	for _, st := range po.Statuses() {
		po.mu.Lock()
		local := po.local[st.ID]
		po.mu.Unlock()
		if local {
			out = append(out, st)
		}
	}
	return out
}

// Statuses returns the latest status of every mail server, by ID.
func (po *PostOffice) Statuses() []MailServerStatus {
	po.mu.Lock()
	out := make([]MailServerStatus, 0, len(po.statuses))
	for _, st := range po.statuses {
		out = append(out, st)
	}
	po.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// assign gives a job of deliveries to the mail server that is idle, or will be idle
// soonest (claim 8), and remembers it for the next choice. Returns MailServerID 0 when no
// mail server has reported.
func (po *PostOffice) assign(key int64, deliveries int) Assignment {
	statuses := po.Statuses()
	po.mu.Lock()
	defer po.mu.Unlock()
	a := ChooseMailServer(po.candidates(statuses))
	if a.MailServerID == 0 {
		return a
	}
	g := po.given[a.MailServerID]
	if g == nil {
		g = &givenTo{unreported: map[int64]*unreportedJob{}}
		po.given[a.MailServerID] = g
	}
	po.assigned++
	g.last = po.assigned
	g.unreported[key] = &unreportedJob{deliveries: deliveries}
	return a
}

// NextAssignment is the mail server the post office would give a job to now, and why:
// the choice assign makes, without making it. Returns MailServerID 0 when no mail server
// has reported.
func (po *PostOffice) NextAssignment() Assignment {
	statuses := po.Statuses()
	po.mu.Lock()
	defer po.mu.Unlock()
	return ChooseMailServer(po.candidates(statuses))
}

// candidates weighs each live server, of any process, with what it was given since; po.mu
// is held.
func (po *PostOffice) candidates(statuses []MailServerStatus) []Candidate {
	cands := make([]Candidate, 0, len(statuses))
	for _, st := range statuses {
		if !po.alive(st) {
			continue
		}
		c := Candidate{MailServerStatus: st}
		if g := po.given[st.ID]; g != nil {
			c.LastGiven = g.last
			for _, u := range g.unreported {
				c.Unreported += u.deliveries
			}
		}
		cands = append(cands, c)
	}
	return cands
}

// Suspend sets a job's suspend flag; its mail server halts within a second.
func (po *PostOffice) Suspend(ctx context.Context, key int64) error {
	return po.cfg.Store.SetJobSuspended(ctx, key, true)
}

// Resume clears a job's suspend flag.
func (po *PostOffice) Resume(ctx context.Context, key int64) error {
	return po.cfg.Store.SetJobSuspended(ctx, key, false)
}

// Stop ends a job now: nothing more is sent for it.
func (po *PostOffice) Stop(ctx context.Context, key int64) error {
	job, err := po.cfg.Store.Job(ctx, key)
	if err != nil {
		return err
	}
	if job.State == JobDone {
		return nil
	}
	return po.cfg.Store.SetJobState(ctx, key, JobDone, "stopped by operator")
}

// Schedule moves a draft job to scheduled: it starts at its start date. Returns a
// *FieldError when the draft is not complete enough to send (see Ready).
func (po *PostOffice) Schedule(ctx context.Context, key int64) error {
	return po.schedule(ctx, key, BudgetOverride{})
}

// ScheduleOverBudget schedules a draft as Schedule does, recording that by scheduled it
// although its worst case exceeds its issuer's budget left.
func (po *PostOffice) ScheduleOverBudget(ctx context.Context, key int64, by string) error {
	return po.schedule(ctx, key, BudgetOverride{By: by, At: po.cfg.Now().UTC()})
}

func (po *PostOffice) schedule(ctx context.Context, key int64, override BudgetOverride) error {
	job, err := po.cfg.Store.Job(ctx, key)
	if err != nil {
		return err
	}
	if job.State != JobDraft {
		return fmt.Errorf("job %d is %s, not a draft: %w", key, job.State, rewards.ErrConflict)
	}
	if err := po.Ready(ctx, job); err != nil {
		return err
	}
	return po.cfg.Store.ScheduleJob(ctx, key, override)
}

// Ready reports whether a draft is complete enough to send: a draft may be saved without a
// subject, a job may not be scheduled so. Returns a *FieldError naming what is
// missing.
func (po *PostOffice) Ready(ctx context.Context, job *Job) error {
	text, html, err := po.cfg.Store.Messages(ctx, job)
	if err != nil {
		return err
	}
	if text == nil && html == nil {
		return &FieldError{"text", "a campaign needs a text or an html message (or both) before it is scheduled"}
	}
	for _, m := range []struct {
		field string
		msg   *Message
	}{{"text", text}, {"html", html}} {
		if m.msg != nil && strings.TrimSpace(m.msg.Subject) == "" {
			return &FieldError{m.field + ".subject", "is required before the campaign is scheduled"}
		}
	}
	return nil
}

// Run is the scheduler: until ctx ends it starts jobs whose start date has come, ends jobs
// past their stop date or with nothing left to send, and saves the mail servers' statuses.
func (po *PostOffice) Run(ctx context.Context) error {
	var heartbeat sync.WaitGroup
	heartbeat.Go(func() { po.heartbeat(ctx) })
	defer heartbeat.Wait()
	t := time.NewTicker(po.cfg.Tick)
	defer t.Stop()
	for {
		if err := po.Tick(ctx); err != nil && ctx.Err() == nil {
			po.cfg.Logger.Error("scheduler", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// heartbeat saves this process's mail servers' statuses every second until ctx ends, which
// extends their leases too: on its own, so that a tick that takes long (a large selection)
// does not let the other processes take them for dead.
func (po *PostOffice) heartbeat(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if err := po.cfg.Store.ReportMailServers(ctx, po.localStatuses()); err != nil && ctx.Err() == nil {
			po.cfg.Logger.Warn("saving mail server statuses", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick does one pass of the scheduler.
func (po *PostOffice) Tick(ctx context.Context) error {
	if err := po.refresh(ctx); err != nil {
		return fmt.Errorf("mail server statuses: %w", err)
	}
	jobs, err := po.cfg.Store.Jobs(ctx, JobScheduled, JobRunning)
	if err != nil {
		return err
	}
	var errs []error
	for _, job := range jobs {
		if err := po.advance(ctx, job); err != nil {
			errs = append(errs, fmt.Errorf("job %d: %w", job.Key, err))
		}
	}
	return errors.Join(errs...)
}

func (po *PostOffice) advance(ctx context.Context, job *Job) error {
	now := po.cfg.Now()
	if !now.Before(job.Stop) {
		po.cfg.Logger.Info("job stopped at its stop date", "job", job.Key)
		return po.cfg.Store.SetJobState(ctx, job.Key, JobDone, "stop date passed")
	}
	if now.Before(job.Start) || job.Suspended {
		return nil
	}
	if job.State == JobScheduled {
		if err := po.start(ctx, job); err != nil {
			return po.selectionFailed(ctx, job, err)
		}
	}
	if dead, why := po.deadServer(job.MailServerID); job.MailServerID == 0 || dead {
		gone := job.MailServerID
		if a := po.assign(job.Key, job.Selected); a.MailServerID != 0 {
			if gone != 0 {
				a.Reason = fmt.Sprintf("mail-%d %s; %s", gone, why, a.Reason)
			}
			a.Replaces = gone
			if err := po.cfg.Store.RecordAssignment(ctx, job.Key, a); errors.Is(err, rewards.ErrConflict) {
				return nil // another process's post office moved it first: the next tick reads where
			} else if err != nil {
				return err
			}
			job.MailServerID, job.AssignReason = a.MailServerID, a.Reason
			po.cfg.Logger.Info("job assigned", "job", job.Key, "mail_server", a.MailServerID, "why", a.Reason)
		}
	}
	if !job.SelectedAll {
		if err := po.selectAll(ctx, job); err != nil {
			return po.selectionFailed(ctx, job, err)
		}
	}
	return nil
}

// selectionFailed ends a job whose selection the store refused or stopped (a raw SQL
// expression that is not allowed or runs too long): trying again every tick would hold the
// database's writer for nothing. Other errors are returned, to be retried.
func (po *PostOffice) selectionFailed(ctx context.Context, job *Job, err error) error {
	if !errors.Is(err, ErrSelectionFailed) {
		return err
	}
	po.cfg.Logger.Error("job selection failed; the job is stopped", "job", job.Key, "err", err)
	return po.cfg.Store.SetJobState(ctx, job.Key, JobDone, "selection failed: "+err.Error())
}

// ErrSelectionFailed is a selection that cannot run: refused by the guard, or stopped by its
// time limit. The store wraps such errors with it.
var ErrSelectionFailed = errors.New("selection failed")

// deadServer reports whether id names no live mail server, and why: none that has reported
// within the heartbeat timeout, in this process or another (a process that died, a restart
// with fewer mail servers), or one that said it stopped; while some server has reported.
func (po *PostOffice) deadServer(id int) (dead bool, why string) {
	po.mu.Lock()
	defer po.mu.Unlock()
	st, ok := po.statuses[id]
	switch {
	case len(po.statuses) == 0:
		return false, ""
	case ok && st.State == StateStopped:
		return true, "stopped"
	}
	return !ok || !po.alive(st), "no longer reports"
}

// start selects the first batch of the audience, so the mail server can begin, and marks
// the job running.
func (po *PostOffice) start(ctx context.Context, job *Job) error {
	added, complete, err := po.cfg.Store.SelectBatch(ctx, job, po.isRaw(job), po.cfg.SelectBatch)
	if err != nil {
		return err
	}
	job.Selected += added
	job.SelectedAll = complete
	if err := po.cfg.Store.SetJobState(ctx, job.Key, JobRunning, ""); err != nil {
		return err
	}
	job.State = JobRunning
	po.cfg.Logger.Info("job started", "job", job.Key, "selected", job.Selected)
	return nil
}

// selectAll materialises the rest of the audience, batch by batch.
func (po *PostOffice) selectAll(ctx context.Context, job *Job) error {
	raw := po.isRaw(job)
	for !job.SelectedAll {
		added, complete, err := po.cfg.Store.SelectBatch(ctx, job, raw, po.cfg.SelectBatch)
		if err != nil {
			return err
		}
		job.Selected += added
		job.SelectedAll = complete
	}
	po.cfg.Logger.Info("job selection complete", "job", job.Key, "selected", job.Selected)
	return nil
}

// isRaw reports whether a job's selection is an operator's raw SQL; one that no longer
// parses is treated as raw, so it runs under the guard.
func (po *PostOffice) isRaw(job *Job) bool {
	sel, err := ParseSelection([]byte(job.Selection))
	return err != nil || sel.IsRaw()
}

// Finished is called by a mail server that found nothing left to send for a job: the job is
// done once its selection is complete and no delivery is pending.
func (po *PostOffice) Finished(ctx context.Context, key int64) error {
	job, err := po.cfg.Store.Job(ctx, key)
	if err != nil {
		return err
	}
	if job.State != JobRunning || !job.SelectedAll {
		return nil
	}
	pending, err := po.cfg.Store.PendingCount(ctx, key)
	if err != nil || pending > 0 {
		return err
	}
	po.cfg.Logger.Info("job complete", "job", key, "selected", job.Selected)
	return po.cfg.Store.SetJobState(ctx, key, JobDone, "complete")
}
