package toolbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"pointpost/postoffice"
)

// countsCache shares one job's delivery counts among everyone watching it for a second:
// counting a million-delivery job takes a quarter of a second, and every open report and
// dashboard polls it every two seconds.
type countsCache struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	jobs map[int64]*countsEntry
}

type countsEntry struct {
	ready  chan struct{} // closed when counts and err are set
	at     time.Time
	counts postoffice.JobCounts
	err    error
}

// newCountsCache keeps counts for ttl of the wall clock (not Deps.Now, which tests may stop).
func newCountsCache(ttl time.Duration) *countsCache {
	return &countsCache{ttl: ttl, now: time.Now, jobs: map[int64]*countsEntry{}}
}

// get returns the counts of job key, asking count only when no fresh answer exists or is
// on its way; callers arriving while it runs wait for the same answer. A failed count is not
// kept.
func (c *countsCache) get(ctx context.Context, key int64, count func(context.Context, int64) (postoffice.JobCounts, error)) (postoffice.JobCounts, error) {
	c.mu.Lock()
	e, ok := c.jobs[key]
	// An entry whose count is still running is fresh; a finished one while it is young and
	// succeeded (its fields are read only after ready is closed).
	fresh := ok && (!isClosed(e.ready) || e.err == nil && c.now().Sub(e.at) < c.ttl)
	if !fresh {
		// Stale entries are dropped here; the map holds at most the jobs being watched.
		for k, old := range c.jobs {
			if isClosed(old.ready) && c.now().Sub(old.at) >= c.ttl {
				delete(c.jobs, k)
			}
		}
		e = &countsEntry{ready: make(chan struct{})}
		c.jobs[key] = e
		c.mu.Unlock()
		// The count runs on its own context: one caller leaving must not fail the others.
		// Waiters are released even if count panics, with an error that is not kept.
		func() {
			defer func() { e.at = c.now(); close(e.ready) }()
			e.err = errCountUnfinished
			e.counts, e.err = count(context.WithoutCancel(ctx), key)
		}()
		return e.counts, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.counts, e.err
	case <-ctx.Done():
		return postoffice.JobCounts{}, ctx.Err()
	}
}

var errCountUnfinished = errors.New("counting the job's deliveries did not finish")

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// jobCounts returns a job's delivery counts: at most a second old while it runs, exact once
// it is done (a finished job's page is not polled, so what it shows first must be final).
func (d jobPages) jobCounts(ctx context.Context, job *postoffice.Job) (postoffice.JobCounts, error) {
	if job.State == postoffice.JobDone {
		return d.jobs.JobCounts(ctx, job.Key)
	}
	return d.counts.get(ctx, job.Key, d.jobs.JobCounts)
}
