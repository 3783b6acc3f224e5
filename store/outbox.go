package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// AppendOutbox stores captured messages in one transaction and sets their IDs.
func (s *Store) AppendOutbox(ctx context.Context, msgs []*postoffice.OutboxMessage) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO outbox (delivery_id, mail_from, rcpt_to, subject, data, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, m := range msgs {
		if m.CreatedAt.IsZero() {
			m.CreatedAt = s.Now()
		}
		if err := st.QueryRowContext(ctx, nullID(m.DeliveryID), m.From, m.To, m.Subject, m.Data, ms(m.CreatedAt)).Scan(&m.ID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Outbox lists the newest captured messages, without their data.
func (s *Store) Outbox(ctx context.Context, limit int) ([]postoffice.OutboxMessage, int, error) {
	var total int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := s.read.QueryContext(ctx, `SELECT id, coalesce(delivery_id, 0), mail_from, rcpt_to, subject, created_at
		FROM outbox ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []postoffice.OutboxMessage
	for rows.Next() {
		var m postoffice.OutboxMessage
		var created int64
		if err := rows.Scan(&m.ID, &m.DeliveryID, &m.From, &m.To, &m.Subject, &created); err != nil {
			return nil, 0, err
		}
		m.CreatedAt = fromMS(created)
		out = append(out, m)
	}
	return out, total, rows.Err()
}

// OutboxMessageByID returns one captured message with its data. Returns rewards.ErrNotFound if
// there is none.
func (s *Store) OutboxMessageByID(ctx context.Context, id int64) (*postoffice.OutboxMessage, error) {
	m := postoffice.OutboxMessage{ID: id}
	var created int64
	err := s.read.QueryRowContext(ctx, `SELECT coalesce(delivery_id, 0), mail_from, rcpt_to, subject, data, created_at
		FROM outbox WHERE id = ?`, id).Scan(&m.DeliveryID, &m.From, &m.To, &m.Subject, &m.Data, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("outbox message %d: %w", id, rewards.ErrNotFound)
	}
	m.CreatedAt = fromMS(created)
	return &m, err
}

// OutboxHeadBytes is how much of each message OutboxSearch returns: enough for its header.
const OutboxHeadBytes = 16 << 10

// OutboxSearch lists up to limit captured messages, newest first, with an ID below beforeID
// (0: from the newest), whose recipient contains to and whose campaign (the label the mail
// server gave it: the campaign's name, "[TEST] " and the name for a test) contains campaign,
// case-insensitively; an empty to or campaign matches every message. total is how many
// match on all pages. Each message's Data holds only its first OutboxHeadBytes: its header,
// for the listing.
func (s *Store) OutboxSearch(ctx context.Context, to, campaign string, beforeID int64, limit int) (msgs []postoffice.OutboxMessage, total int, err error) {
	where, args := "TRUE", []any{}
	like := s.either("LIKE", "ILIKE")
	if to != "" {
		where += ` AND rcpt_to ` + like + ` ? ESCAPE '\'`
		args = append(args, "%"+likeEscape(to)+"%")
	}
	if campaign != "" {
		where += ` AND subject ` + like + ` ? ESCAPE '\'`
		args = append(args, "%"+likeEscape(campaign)+"%")
	}
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	if beforeID > 0 {
		where += ` AND id < ?`
		args = append(args, beforeID)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT id, coalesce(delivery_id, 0), mail_from, rcpt_to, subject, substr(data, 1, ?), created_at
		FROM outbox WHERE `+where+` ORDER BY id DESC LIMIT ?`, append(append([]any{OutboxHeadBytes}, args...), limit)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var m postoffice.OutboxMessage
		var created int64
		if err := rows.Scan(&m.ID, &m.DeliveryID, &m.From, &m.To, &m.Subject, &m.Data, &created); err != nil {
			return nil, 0, err
		}
		m.CreatedAt = fromMS(created)
		msgs = append(msgs, m)
	}
	return msgs, total, rows.Err()
}
