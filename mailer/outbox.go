package mailer

import (
	"context"
	"errors"
	"sync"
	"time"

	"pointpost/postoffice"
)

// OutboxStore keeps what the embedded outbox captures.
type OutboxStore interface {
	AppendOutbox(ctx context.Context, msgs []*postoffice.OutboxMessage) error
}

// Outbox is the embedded Sender used when no relay is configured: it keeps every message
// in the database, where the toolbox shows it. Sends are group-committed: one transaction
// takes every message waiting, and each Send returns once its message is on disk.
type Outbox struct {
	store OutboxStore

	mu      sync.Mutex
	waiting []*outboxSend
	wake    chan struct{}
	done    chan struct{}
	closed  bool
	once    sync.Once
}

type outboxSend struct {
	msg *postoffice.OutboxMessage
	err chan error
}

// NewOutbox starts the outbox's committer; Close stops it.
func NewOutbox(s OutboxStore) *Outbox {
	o := &Outbox{store: s, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go o.commitLoop()
	return o
}

// Send keeps env in the outbox and returns after the commit.
func (o *Outbox) Send(ctx context.Context, env *Envelope) error {
	req := &outboxSend{
		msg: &postoffice.OutboxMessage{DeliveryID: env.DeliveryID, From: env.From, To: env.To, Subject: env.Subject,
			Data: append([]byte(nil), env.Data...)},
		err: make(chan error, 1),
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return errors.New("outbox closed")
	}
	o.waiting = append(o.waiting, req)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	// Not abandoned on ctx: the commit is bounded by its own timeout, and a send given up
	// while its commit goes through would be captured twice.
	return <-req.err
}

func (o *Outbox) commitLoop() {
	defer close(o.done)
	for range o.wake {
		o.mu.Lock()
		batch := o.waiting
		o.waiting = nil
		closed := o.closed
		o.mu.Unlock()
		if len(batch) > 0 {
			msgs := make([]*postoffice.OutboxMessage, len(batch))
			for i, r := range batch {
				msgs[i] = r.msg
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := o.store.AppendOutbox(ctx, msgs)
			cancel()
			for _, r := range batch {
				r.err <- err
			}
		}
		if closed {
			return
		}
	}
}

// Close commits what is waiting and stops the committer.
func (o *Outbox) Close() error {
	o.once.Do(func() {
		o.mu.Lock()
		o.closed = true
		o.mu.Unlock()
		o.wake <- struct{}{}
		<-o.done
	})
	return nil
}
