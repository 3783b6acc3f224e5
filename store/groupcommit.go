package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"pointpost/postoffice"
)

// ErrClosed is returned by Acknowledge once the Store is closing.
var ErrClosed = errors.New("store: closed")

// maxAckBatch bounds one group commit, so that the writer connection is not held from the
// post office and the mail servers for more than a few milliseconds.
const maxAckBatch = 512

// Group commit. An acknowledgement answered as accepted must survive a power failure. At one
// synchronous=FULL commit per acknowledgement the fsyncs cap the rate (about 5,500/s on the
// reference machine); here the callers queue their acknowledgements and one goroutine applies
// everything waiting in one transaction.
//
// Durability equal to FULL, pipelined: the batch commits at the connection's NORMAL, then a
// second goroutine fsyncs the WAL file and only then answers the batch's callers, while the
// next batch is already being applied. In WAL mode FULL means exactly "fsync the WAL before
// the commit returns"; fsyncing it ourselves after COMMIT and before answering gives the
// answered caller the same guarantee: her frames are on disk, or, if a checkpoint came first,
// already in the database file, which a checkpoint syncs. One fsync also covers every batch
// committed before it, so under load several batches share it.
type ackCommitter struct {
	mu      sync.Mutex
	started atomic.Bool
	closed  bool
	queue   chan *ackRequest
	stop    chan struct{} // closed by close: finish what is queued and exit
	done    chan struct{} // closed when the committer has exited
	// batches counts the transactions run, for tests and for the rate of acks per commit.
	batches atomic.Int64
	// stmts belong to the committer goroutine.
	stmts ackStmts
	// synced takes committed batches to the syncer, which fsyncs the WAL and answers them.
	synced chan []*ackRequest
	wal    *os.File
	// syncHook, when set by a test, runs in place of the WAL fsync.
	syncHook func() error
	// beforeWrite, when set by a test, runs between a PostgreSQL batch's read and its write.
	beforeWrite func()
	// jobs caches the jobs' rules between batches, while rulesGen stands still and for at
	// most jobCacheAge, which bounds how stale a change made by another process can be.
	jobs     map[int64]*ackJob
	jobsGen  int64
	jobsTime time.Time
}

const jobCacheAge = 2 * time.Second

// jobsFor returns the jobs a batch acknowledges, from the cache where it is fresh.
func (g *ackCommitter) jobsFor(ctx context.Context, s *Store, conn *sql.Conn, batch []*ackRequest) (map[int64]*ackJob, error) {
	gen := s.rulesGen.Load()
	if g.jobs == nil || gen != g.jobsGen || time.Since(g.jobsTime) > jobCacheAge {
		g.jobs, g.jobsGen, g.jobsTime = map[int64]*ackJob{}, gen, time.Now()
	}
	var missing []*ackRequest
	for _, req := range batch {
		if _, ok := g.jobs[req.ack.JobKey]; !ok {
			missing = append(missing, req)
		}
	}
	if len(missing) == 0 {
		return g.jobs, nil
	}
	loaded, err := loadAckJobs(ctx, conn, missing)
	if err != nil {
		return nil, err
	}
	for k, j := range loaded {
		g.jobs[k] = j
	}
	return g.jobs, nil
}

// ackRequest is one caller's acknowledgement on its way through a batch.
type ackRequest struct {
	ctx   context.Context
	ack   postoffice.Ack
	state atomic.Int32 // reqWaiting, then reqTaken by a batch or reqAbandoned by the caller
	res   *postoffice.AckResult
	err   error
	reply chan struct{} // closed when res and err are set
}

const (
	reqWaiting int32 = iota
	reqTaken
	reqAbandoned
)

// submit queues ack for the next batch and waits for its outcome. A caller whose ctx ends
// before its batch begins gets ctx.Err() and its acknowledgement is not applied; once its
// batch has begun it waits for the commit, so that the answer it gets is the truth. Returns
// ErrClosed when the Store is closing.
func (g *ackCommitter) submit(ctx context.Context, s *Store, ack postoffice.Ack) (*postoffice.AckResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := g.start(s); err != nil {
		return nil, err
	}
	req := &ackRequest{ctx: ctx, ack: ack, reply: make(chan struct{})}
	select {
	case g.queue <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-g.done:
		return nil, ErrClosed
	}
	select {
	case <-req.reply:
		return req.res, req.err
	case <-ctx.Done():
		if req.state.CompareAndSwap(reqWaiting, reqAbandoned) {
			return nil, ctx.Err()
		}
	case <-g.done:
		// The committer exited; if it never took the request, nobody will.
		if req.state.CompareAndSwap(reqWaiting, reqAbandoned) {
			return nil, ErrClosed
		}
	}
	<-req.reply
	return req.res, req.err
}

// start starts the committer goroutine on first use. Returns ErrClosed after close.
func (g *ackCommitter) start(s *Store) error {
	if g.started.Load() {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if !g.started.Load() {
		g.queue = make(chan *ackRequest, 4*maxAckBatch)
		g.stop = make(chan struct{})
		g.done = make(chan struct{})
		// A little room lets the next batch be applied while this one is synced; no more, so
		// a slow disk slows the callers rather than piling them up.
		g.synced = make(chan []*ackRequest, 2)
		go g.run(s)
		g.started.Store(true)
	}
	return nil
}

// close makes the committer apply what is queued and exit, and waits for it. Callers after
// it get ErrClosed.
func (g *ackCommitter) close() {
	g.mu.Lock()
	started := g.started.Load() && !g.closed
	g.closed = true
	g.mu.Unlock()
	if started {
		close(g.stop)
		<-g.done
	}
}

func (g *ackCommitter) run(s *Store) {
	syncerDone := make(chan struct{})
	go func() {
		defer close(syncerDone)
		g.syncLoop(s)
	}()
	defer close(g.done)
	defer func() {
		close(g.synced)
		<-syncerDone
		if g.wal != nil {
			g.wal.Close()
		}
	}()
	defer g.closeStmts(s)
	for {
		batch := make([]*ackRequest, 0, 64)
		select {
		case req := <-g.queue:
			batch = append(batch, req)
		case <-g.stop:
			// Apply what was queued before the stop, then go; whoever queues later hears
			// ErrClosed from submit.
			for pending := len(g.queue); pending > 0; pending -= len(batch) {
				if batch = g.take(make([]*ackRequest, 0, 64), pending); len(batch) == 0 {
					break
				}
				s.commitAcks(batch)
			}
			return
		}
		s.commitAcks(g.take(batch, maxAckBatch))
	}
}

// syncLoop makes committed batches durable with one fsync of the WAL for all that are
// waiting, then answers their callers.
func (g *ackCommitter) syncLoop(s *Store) {
	for first := range g.synced {
		batches := [][]*ackRequest{first}
	more:
		for {
			select {
			case b, ok := <-g.synced:
				if !ok {
					break more
				}
				batches = append(batches, b)
			default:
				break more
			}
		}
		g.answerDurable(s, batches...)
	}
}

// answerDurable fsyncs the WAL and then answers the callers of the committed batches.
func (g *ackCommitter) answerDurable(s *Store, batches ...[]*ackRequest) {
	err := g.syncWAL(s)
	for _, b := range batches {
		for _, req := range b {
			if err != nil {
				req.res, req.err = nil, fmt.Errorf("acknowledgement committed but not made durable: %w", err)
			}
			close(req.reply)
		}
	}
}

// syncWAL fsyncs the database's write-ahead log.
func (g *ackCommitter) syncWAL(s *Store) error {
	if g.syncHook != nil {
		return g.syncHook()
	}
	if s.engine == enginePostgres {
		return nil // PostgreSQL's COMMIT returned once its WAL was flushed (synchronous_commit on)
	}
	if g.wal == nil {
		f, err := os.Open(s.path + "-wal")
		if err != nil {
			return err
		}
		g.wal = f
	}
	return g.wal.Sync()
}

// closeStmts finalizes the committer's statements on the writer connection, so that the
// pool's Close finds nothing left open on it.
func (g *ackCommitter) closeStmts(s *Store) {
	if g.stmts.conn == nil {
		return
	}
	conn, err := s.write.Conn(context.Background())
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Raw(func(any) error {
		g.stmts.close()
		return nil
	})
}

// take appends to batch what is waiting in the queue, up to n in all and maxAckBatch,
// without waiting.
func (g *ackCommitter) take(batch []*ackRequest, n int) []*ackRequest {
	for len(batch) < min(n, maxAckBatch) {
		select {
		case req := <-g.queue:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// commitAcks applies a batch of acknowledgements in one transaction and answers each caller:
// its own result or error. An acknowledgement that the database refuses (a running total
// that would overflow, say) fails alone: the transaction is rolled back and applied again
// without it, so its batch neighbours, other issuers' among them, are not refused with it.
// When the transaction as a whole cannot commit (the disk is full, the database is
// locked), every caller hears that error, since none of them was accepted. The batch begins
// when it has the writer connection: a caller whose context ended before then, while a long
// write held the writer, say, is answered ctx.Err() and left out.
func (s *Store) commitAcks(batch []*ackRequest) {
	// The batch runs to its end whatever happens to its callers' contexts; Background also
	// spares mattn/go-sqlite3 a goroutine per statement watching for cancellation.
	ctx := context.Background()
	conn, connErr := s.write.Conn(ctx)
	live := batch[:0]
	for _, req := range batch {
		if !req.state.CompareAndSwap(reqWaiting, reqTaken) {
			continue // the caller left
		}
		err := req.ctx.Err()
		if err == nil {
			err = connErr
		}
		if err != nil {
			req.res, req.err = nil, err
			close(req.reply)
			continue
		}
		live = append(live, req)
	}
	if connErr != nil {
		return
	}
	defer conn.Close()
	if live = s.runAckBatch(ctx, conn, live); len(live) == 0 {
		return
	}
	if s.acks.synced == nil {
		s.acks.answerDurable(s, live) // no committer running: a direct call, as in tests
		return
	}
	s.acks.synced <- live
}

// maxAckAttempts bounds how often a PostgreSQL batch is run again after a conflict with
// another transaction (a deadlock, or an accrual's key taken under it).
const maxAckAttempts = 4

// runAckBatch applies live until it commits and returns the requests it committed, having
// answered the others with their errors. On SQLite a failed statement names its
// acknowledgement; on PostgreSQL, whose batch goes in a few statements for all, a statement
// the database refuses is found out by applying each acknowledgement alone.
func (s *Store) runAckBatch(ctx context.Context, conn *sql.Conn, live []*ackRequest) []*ackRequest {
	fail := func(reqs []*ackRequest, err error) {
		for _, req := range reqs {
			req.res, req.err = nil, err
			close(req.reply)
		}
	}
	// Each pass either commits, takes one acknowledgement out, or counts an attempt, so it
	// ends.
	for attempt := 1; len(live) > 0; attempt++ {
		s.acks.batches.Add(1)
		var culprit *ackRequest
		var err error
		if s.engine == enginePostgres {
			err = s.applyAckBatchPG(ctx, conn, live)
		} else {
			culprit, err = s.applyAckBatch(ctx, conn, live)
		}
		switch {
		case err == nil:
			return live
		case culprit != nil && !IsBusy(err):
			fail([]*ackRequest{culprit}, err)
			live = slices.DeleteFunc(live, func(req *ackRequest) bool { return req == culprit })
		case pgAckConflict(err) && attempt < maxAckAttempts:
			// Read and decide again: the other transaction has committed or given up.
		case pgRefused(err) && len(live) > 1:
			var committed []*ackRequest
			for _, req := range live {
				committed = append(committed, s.runAckBatch(ctx, conn, []*ackRequest{req})...)
			}
			return committed
		default:
			fail(live, err)
			return nil
		}
	}
	return nil
}

// pgAckConflict reports whether err is PostgreSQL giving up a batch for another
// transaction's sake: a deadlock, a serialization failure, or a unique key taken (an
// accrual inserted by a writer that did not hold the issuer's lock).
func pgAckConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001" || pe.Code == "23505")
}

// pgRefused reports whether err is PostgreSQL refusing a statement for what it holds (a
// constraint, a trigger's exception, a number out of range) rather than being unable to
// work: one acknowledgement of the batch may be to blame.
func pgRefused(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && !pgUnavailable(err) && !pgQueryCanceled(err)
}

// applyAckBatch runs the batch's transaction on SQLite; an acknowledgement naming no
// invitation fails alone and leaves the others be. It sets each request's res and err.
// Returns an error if the transaction failed, rolled back, and with it the acknowledgement
// whose statement failed, if one did (nil when the transaction as a whole failed). The
// commit is made durable by the syncer, before any caller hears of it.
func (s *Store) applyAckBatch(ctx context.Context, conn *sql.Conn, batch []*ackRequest) (culprit *ackRequest, err error) {
	// The transaction is run by hand on the connection rather than with a *sql.Tx, which
	// would start a goroutine for every query's rows to watch the transaction's context.
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			conn.ExecContext(ctx, `ROLLBACK`)
		}
	}()
	jobs, err := s.acks.jobsFor(ctx, s, conn, batch)
	if err != nil {
		return nil, err
	}
	err = conn.Raw(func(dc any) error {
		c := &s.acks.stmts
		if err := c.use(dc); err != nil {
			return err
		}
		culprit, err = s.applyAcks(c, jobs, batch)
		return err
	})
	if err != nil {
		return culprit, err
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return nil, fmt.Errorf("acknowledgement batch commit: %w", err)
	}
	committed = true
	return nil, nil
}

// applyAcks applies the batch's acknowledgements in turn through c and sets each request's
// res and err. An acknowledgement naming no invitation is found out before it writes
// anything, so it needs no savepoint; any other error is the database's, and then nothing of
// the batch stands: applyAcks returns it and the acknowledgement it came from.
func (s *Store) applyAcks(c ackRunner, jobs map[int64]*ackJob, batch []*ackRequest) (culprit *ackRequest, err error) {
	now := ms(s.Now())
	for _, req := range batch {
		req.res, req.err = s.applyAck(c, jobs, req.ack, now)
		if req.err != nil && !errors.Is(req.err, postoffice.ErrNoDelivery) {
			return req, fmt.Errorf("acknowledgement of job %d by consumer %d: %w", req.ack.JobKey, req.ack.ConsumerID, req.err)
		}
	}
	return nil, nil
}

// applyAckBatchPG runs the batch's transaction on PostgreSQL, in two round trips
// (pgAckBatch): its answer is as SQLite's, but an error fails the whole batch. The COMMIT
// returns once the server has flushed its WAL (openPostgres insists on synchronous_commit),
// so the batch is durable when this returns nil.
func (s *Store) applyAckBatchPG(ctx context.Context, conn *sql.Conn, batch []*ackRequest) error {
	// The jobs' rules are read outside the transaction: the cache serves them across batches
	// anyway, and a job's issuer never changes.
	jobs, err := s.acks.jobsFor(ctx, s, conn, batch)
	if err != nil {
		return err
	}
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(*pgConn)
		if !ok {
			return fmt.Errorf("acknowledgements on PostgreSQL need the store's connection, not %T", dc)
		}
		db := pc.Conn.Conn()
		err := func() error {
			b := newPGAckBatch()
			began, err := b.read(ctx, db, jobs, batch, ms(s.Now()))
			if err != nil {
				return err
			}
			if _, err := s.applyAcks(b, jobs, batch); err != nil {
				return err
			}
			if !began {
				return nil // no job of the batch exists: nothing to write
			}
			if s.acks.beforeWrite != nil {
				s.acks.beforeWrite()
			}
			if err := b.write(ctx, db); err != nil {
				return fmt.Errorf("acknowledgement batch: %w", err)
			}
			return nil
		}()
		if err != nil && db.PgConn().TxStatus() != 'I' {
			// The pool drops a connection left in a transaction, should this fail too.
			db.Exec(ctx, `ROLLBACK`)
		}
		return err
	})
}
