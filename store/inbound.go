package store

import (
	"context"
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
}

// RecordInbound keeps an inbound message and sets its ID.
func (s *Store) RecordInbound(ctx context.Context, m *InboundMessage) error {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = s.Now()
	}
	return s.write.QueryRowContext(ctx, `INSERT INTO inbound_messages
			(kind, job_key, consumer_id, mail_from, rcpt_to, subject, detail, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		m.Kind, nullID(m.JobKey), nullID(m.ConsumerID), m.From, m.To, m.Subject, m.Detail, ms(m.CreatedAt)).Scan(&m.ID)
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
