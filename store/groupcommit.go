package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"pointpost/postoffice"
)

// ErrClosed is returned by Acknowledge once the Store is closing.
var ErrClosed = errors.New("store: closed")

// maxAckBatch bounds one group commit, so that the writer connection is not held from the
// post office and the mail servers for more than a few milliseconds.
const maxAckBatch = 512

// Group commit. An acknowledgement answered as accepted must survive a power failure, so its
// transaction commits with synchronous=FULL: an fsync of the WAL per commit. At one commit
// per acknowledgement the fsyncs cap the rate (about 5,500/s on the reference machine); here
// the callers queue their acknowledgements and one goroutine applies everything waiting in one
// transaction and one fsync, answering each caller after the commit.
//
// FULL is asked for these commits only: the delivery bookkeeping that shares the connection
// keeps NORMAL (see dsn), where a power failure costs at most a resend, and its send rate
// needs commits without an fsync. The fsync of an acknowledgement commit makes the WAL frames
// of the NORMAL commits before it durable too, which does no harm.
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
	defer close(g.done)
	defer g.closeStmts(s)
	batch := make([]*ackRequest, 0, maxAckBatch)
	for {
		batch = batch[:0]
		select {
		case req := <-g.queue:
			batch = append(batch, req)
		case <-g.stop:
			// Apply what was queued before the stop, then go; whoever queues later hears
			// ErrClosed from submit.
			for pending := len(g.queue); pending > 0; pending -= len(batch) {
				if batch = g.take(batch[:0], pending); len(batch) == 0 {
					break
				}
				s.commitAcks(batch)
			}
			return
		}
		s.commitAcks(g.take(batch, maxAckBatch))
	}
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
// its own result or error, or, if the transaction could not commit, that error for all of
// them, since none of them was accepted. The batch begins when it has the writer connection:
// a caller whose context ended before then, while a long write held the writer, say, is
// answered ctx.Err() and left out.
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
	if len(live) == 0 {
		return
	}
	s.acks.batches.Add(1)
	err := s.applyAckBatch(ctx, conn, live)
	for _, req := range live {
		if err != nil {
			req.res, req.err = nil, err
		}
		close(req.reply)
	}
}

// applyAckBatch runs the batch's transaction at synchronous=FULL, each acknowledgement inside
// a savepoint so that one failing (ErrNoDelivery, say) leaves the others be. It sets each
// request's res and err. Returns an error if the transaction as a whole failed.
func (s *Store) applyAckBatch(ctx context.Context, conn *sql.Conn, batch []*ackRequest) error {
	// PRAGMA synchronous is set outside the transaction, on the writer pool's one connection,
	// and put back whatever happens; left at FULL it would only be slower.
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return err
	}
	defer conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`)
	// The transaction is run by hand on the connection rather than with a *sql.Tx, which
	// would start a goroutine for every query's rows to watch the transaction's context.
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			conn.ExecContext(ctx, `ROLLBACK`)
		}
	}()
	jobs, err := loadAckJobs(ctx, conn, batch)
	if err != nil {
		return err
	}
	err = conn.Raw(func(dc any) error {
		c := &s.acks.stmts
		if err := c.use(dc); err != nil {
			return err
		}
		for _, req := range batch {
			if _, err := c.exec(qSavepoint); err != nil {
				return err
			}
			req.res, req.err = s.applyAck(c, jobs, req.ack)
			if req.err != nil {
				// Fails when SQLite has rolled back the whole transaction (a full disk, an
				// I/O error): then nothing of the batch stands.
				if _, err := c.exec(qRollbackTo); err != nil {
					return fmt.Errorf("acknowledgement batch: %w (after %w)", err, req.err)
				}
			}
			if _, err := c.exec(qRelease); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("acknowledgement batch commit: %w", err)
	}
	committed = true
	return nil
}
