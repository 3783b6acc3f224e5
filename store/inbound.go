package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// InboundMessage is mail the receiver took that earned nothing: a bounce, a complaint, an
// auto-reply or a reply without a valid token.
type InboundMessage struct {
	ID                 int64
	Kind               string
	JobKey, ConsumerID int64 // 0 when no verified token named a delivery
	From, To, Subject  string
	Detail             string
	CreatedAt          time.Time
	// Key identifies the message across redeliveries (its Message-ID, or a hash of it);
	// "" never matches another.
	Key string
}

// RecordInbound keeps an inbound message and sets its ID. A message whose Key was recorded
// before (redelivered, or read again from a mailbox after a crash) is not kept twice: ID is
// then 0 and nil is returned.
func (s *Store) RecordInbound(ctx context.Context, m *InboundMessage) error {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = s.Now()
	}
	var key any
	if m.Key != "" {
		key = m.Key
	}
	err := s.write.QueryRowContext(ctx, `INSERT INTO inbound_messages
			(kind, job_key, consumer_id, mail_from, rcpt_to, subject, detail, created_at, message_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (message_key) WHERE message_key IS NOT NULL DO NOTHING RETURNING id`,
		m.Kind, nullID(m.JobKey), nullID(m.ConsumerID), m.From, m.To, m.Subject, m.Detail, ms(m.CreatedAt), key).Scan(&m.ID)
	if errors.Is(err, sql.ErrNoRows) {
		m.ID = 0
		return nil
	}
	return err
}

// InboundMessages lists the newest inbound messages.
func (s *Store) InboundMessages(ctx context.Context, limit int) ([]InboundMessage, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, kind, coalesce(job_key, 0), coalesce(consumer_id, 0),
			mail_from, rcpt_to, subject, detail, created_at
		FROM inbound_messages ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []InboundMessage
	for rows.Next() {
		var m InboundMessage
		var created int64
		if err := rows.Scan(&m.ID, &m.Kind, &m.JobKey, &m.ConsumerID, &m.From, &m.To, &m.Subject, &m.Detail, &created); err != nil {
			return nil, err
		}
		m.CreatedAt = fromMS(created)
		out = append(out, m)
	}
	return out, rows.Err()
}
