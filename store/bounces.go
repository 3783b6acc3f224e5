package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The kinds of bounce effect, as the bounces table keeps them.
const (
	BounceHard      = "hard"
	BounceSoft      = "soft"
	BounceComplaint = "complaint"
)

// DefaultSoftBounceLimit is how many soft bounces since a consumer's last acknowledgement
// suppress her address when SetSoftBounceLimit was never called.
const DefaultSoftBounceLimit = 3

// softBounceLimitSetting names the limit in the settings table, so that the receiver's
// bounces and the mail servers' refusals at send time read one value.
const softBounceLimitSetting = "soft_bounce_limit"

// Bounce is a bounce or an abuse report the receiver took, with what it says.
type Bounce struct {
	// Message is kept as RecordInbound keeps it. Its JobKey and ConsumerID name the
	// delivery when a verified token did (0 otherwise).
	Message InboundMessage
	// Key identifies the message across redeliveries (its Message-ID); "" never matches.
	Key string
	// Complaint marks an abuse report: the consumer is suppressed.
	Complaint bool
	// Reported is a complaint's complainant address, used when no token named the consumer.
	Reported string
	// Failures are a bounce's failed recipients. With a token the worst one decides for the
	// delivery; without, each one's Email names a consumer.
	Failures []BounceFailure

	// Set by RecordBounce: Duplicate when Key was recorded before (nothing was changed),
	// and the consumers whose status this message changed.
	Duplicate  bool
	Suppressed []int64
}

// BounceFailure is one failed recipient of a bounce.
type BounceFailure struct {
	Email    string
	Severity string // BounceHard, BounceSoft, or "" for no failure (a delay)
	Status   string // RFC 3463
	Detail   string
}

// RecordBounce keeps a bounce or a complaint and applies its effects in one transaction:
//
//   - a complaint sets the consumer's status to suppressed (from active, unsubscribed or
//     bounced);
//   - a hard bounce sets the delivery's rejected flag, with "bounced: " and the status and
//     diagnostic as its last error, and the consumer's status to bounced;
//   - a soft bounce sets the rejected flag too (the message did not arrive), and bounces the
//     consumer once her soft bounces since her last acknowledgement reach the limit
//     (SetSoftBounceLimit): an acknowledgement proves the mailbox works, a 250 from our
//     relay does not;
//   - without a token, a failure's address names the consumer, who must have been sent
//     something (a bounce naming an address never mailed changes nothing); no delivery.
//
// Only active consumers are bounced. A Key recorded before makes it a duplicate: nothing is
// written and nil is returned. Returns an error, having written nothing, when the database
// refuses (full, locked past the busy timeout) or ctx ends.
func (s *Store) RecordBounce(ctx context.Context, b *Bounce) error {
	if b.Message.CreatedAt.IsZero() {
		b.Message.CreatedAt = s.Now()
	}
	now := ms(b.Message.CreatedAt)
	b.Duplicate, b.Suppressed = false, nil
	var suppressed []int64
	note := func(changed bool, id int64) {
		if changed {
			suppressed = append(suppressed, id)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		m := &b.Message
		var key any
		if b.Key != "" {
			key = b.Key
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO inbound_messages
				(kind, job_key, consumer_id, mail_from, rcpt_to, subject, detail, created_at, message_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (message_key) WHERE message_key IS NOT NULL DO NOTHING RETURNING id`,
			m.Kind, nullID(m.JobKey), nullID(m.ConsumerID), m.From, m.To, m.Subject, m.Detail, now, key).Scan(&m.ID)
		if errors.Is(err, sql.ErrNoRows) {
			b.Duplicate = true
			return nil
		}
		if err != nil {
			return err
		}
		e := bounceEffects{tx: tx, ctx: ctx, now: now, inboundID: m.ID}

		if b.Complaint {
			id := m.ConsumerID
			if id == 0 && b.Reported != "" {
				if id, err = e.mailedConsumer(b.Reported); err != nil {
					return err
				}
			}
			if id == 0 {
				return nil
			}
			changed, err := e.apply(id, 0, BounceComplaint, "", "abuse report", "suppressed",
				"'active', 'unsubscribed', 'bounced'")
			note(changed, id)
			return err
		}

		if m.ConsumerID != 0 {
			w, ok := worst(b.Failures)
			if !ok {
				return nil
			}
			var deliveryID int64
			err := tx.QueryRowContext(ctx, `UPDATE deliveries SET rejected = 1, last_error = ?, updated_at = ?
				WHERE job_key = ? AND consumer_id = ? RETURNING id`,
				clipDetail("bounced: "+w.Detail), now, m.JobKey, m.ConsumerID).Scan(&deliveryID)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			changed, err := e.bounce(m.ConsumerID, deliveryID, w)
			note(changed, m.ConsumerID)
			return err
		}

		seen := map[int64]bool{}
		for _, f := range b.Failures {
			if f.Severity == "" || f.Email == "" {
				continue
			}
			id, err := e.mailedConsumer(f.Email)
			if err != nil {
				return err
			}
			if id == 0 || seen[id] {
				continue
			}
			seen[id] = true
			changed, err := e.bounce(id, 0, f)
			if err != nil {
				return err
			}
			note(changed, id)
		}
		return nil
	})
	if err != nil {
		b.Duplicate = false
		return err
	}
	b.Suppressed = suppressed
	return nil
}

// worst is the failure that decides for a delivery: hard before soft; ok is false when
// none is a failure.
func worst(fs []BounceFailure) (BounceFailure, bool) {
	var w BounceFailure
	for _, f := range fs {
		if f.Severity == BounceHard && w.Severity != BounceHard || f.Severity == BounceSoft && w.Severity == "" {
			w = f
		}
	}
	return w, w.Severity != ""
}

// bounceEffects applies bounces inside one write transaction.
type bounceEffects struct {
	tx        *sql.Tx
	ctx       context.Context
	now       int64
	inboundID int64 // 0 for a refusal at send time
	limit     int   // the soft bounce limit, read at the first soft bounce
}

// mailedConsumer is the consumer with the address who was sent at least one message, or 0.
func (e *bounceEffects) mailedConsumer(email string) (int64, error) {
	var id int64
	err := e.tx.QueryRowContext(e.ctx, `SELECT c.id FROM consumers c
		WHERE c.email = ? AND EXISTS (SELECT 1 FROM deliveries d WHERE d.consumer_id = c.id AND d.sent = 1)`,
		strings.ToLower(strings.TrimSpace(email))).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

// bounce records a hard or soft bounce of the consumer and bounces her address when it is
// hard or her soft ones reached the limit. changed reports whether her status changed.
func (e *bounceEffects) bounce(consumerID, deliveryID int64, f BounceFailure) (changed bool, err error) {
	switch f.Severity {
	case BounceHard:
		return e.apply(consumerID, deliveryID, BounceHard, f.Status, f.Detail, "bounced", "'active'")
	case BounceSoft:
		if _, err := e.apply(consumerID, deliveryID, BounceSoft, f.Status, f.Detail, "", ""); err != nil {
			return false, err
		}
		if e.limit == 0 {
			if e.limit, err = softBounceLimit(e.ctx, e.tx); err != nil {
				return false, err
			}
		}
		// A policy refusal (x.7.x: spam block, our IP or domain refused) or a complaint
		// about our sender address (5.1.7, 5.1.8) says nothing of her mailbox: recorded,
		// not counted, so a block of our relay cannot suppress a whole provider's people.
		if policyStatus(f.Status) {
			return false, nil
		}
		var n int
		if err := e.tx.QueryRowContext(e.ctx, `SELECT count(*) FROM bounces
			WHERE consumer_id = ?1 AND kind = 'soft'
			AND NOT (status GLOB '[45].7.*' OR status IN ('5.1.7', '5.1.8'))
			AND created_at >= coalesce(
				(SELECT max(created_at) FROM acknowledgements WHERE consumer_id = ?1), 0)`, consumerID).Scan(&n); err != nil {
			return false, err
		}
		if n < e.limit {
			return false, nil
		}
		changed, err := e.setStatus(consumerID, "bounced", "'active'")
		if changed && err == nil {
			_, err = e.tx.ExecContext(e.ctx, `UPDATE bounces SET suppressed = 1
				WHERE id = (SELECT max(id) FROM bounces WHERE consumer_id = ?)`, consumerID)
		}
		return changed, err
	}
	return false, nil
}

// apply sets the consumer's status to newStatus if it is one of from (an SQL list of
// literals; nothing when newStatus is "") and inserts the bounces row.
func (e *bounceEffects) apply(consumerID, deliveryID int64, kind, status, detail, newStatus, from string) (bool, error) {
	changed := false
	if newStatus != "" {
		var err error
		if changed, err = e.setStatus(consumerID, newStatus, from); err != nil {
			return false, err
		}
	}
	_, err := e.tx.ExecContext(e.ctx, `INSERT INTO bounces
			(inbound_id, delivery_id, consumer_id, kind, status, detail, suppressed, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		nullID(e.inboundID), nullID(deliveryID), consumerID, kind, status, clipDetail(detail), changed, e.now)
	return changed, err
}

func (e *bounceEffects) setStatus(consumerID int64, status, from string) (bool, error) {
	res, err := e.tx.ExecContext(e.ctx, `UPDATE consumers SET status = ?, updated_at = ?
		WHERE id = ? AND status IN (`+from+`)`, status, e.now, consumerID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// softBounceLimit reads the limit; DefaultSoftBounceLimit when it was never set.
func softBounceLimit(ctx context.Context, tx *sql.Tx) (int, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, softBounceLimitSetting).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return DefaultSoftBounceLimit, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return DefaultSoftBounceLimit, nil
	}
	return n, nil
}

// SetSoftBounceLimit sets how many soft bounces since her last acknowledgement suppress a
// consumer's address. Returns an error for a limit below 1.
func (s *Store) SetSoftBounceLimit(ctx context.Context, n int) error {
	if n < 1 {
		return fmt.Errorf("soft bounce limit %d: must be at least 1", n)
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, softBounceLimitSetting, strconv.Itoa(n))
	return err
}

// ConsumerBounce is one bounce effect on a consumer.
type ConsumerBounce struct {
	ID, InboundID, DeliveryID, ConsumerID int64
	Kind, Status, Detail                  string
	Suppressed                            bool
	CreatedAt                             time.Time
}

// ConsumerBounces lists a consumer's bounces and complaints, oldest first.
func (s *Store) ConsumerBounces(ctx context.Context, consumerID int64) ([]ConsumerBounce, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, coalesce(inbound_id, 0), coalesce(delivery_id, 0),
			consumer_id, kind, status, detail, suppressed, created_at
		FROM bounces WHERE consumer_id = ? ORDER BY id`, consumerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ConsumerBounce
	for rows.Next() {
		var b ConsumerBounce
		var at int64
		if err := rows.Scan(&b.ID, &b.InboundID, &b.DeliveryID, &b.ConsumerID, &b.Kind, &b.Status, &b.Detail,
			&b.Suppressed, &at); err != nil {
			return nil, err
		}
		b.CreatedAt = fromMS(at)
		out = append(out, b)
	}
	return out, rows.Err()
}

// clipDetail bounds a stranger's diagnostic text before it is stored.
func clipDetail(s string) string {
	const limit = 500
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// SetBusyTimeout sets how long the writer waits for a lock another process holds before a
// write fails with "database is locked" (10 s from Open). The writer is one connection, so
// the pragma reaches every write; should database/sql replace that connection, the new one
// has Open's value.
func (s *Store) SetBusyTimeout(ctx context.Context, d time.Duration) error {
	_, err := s.write.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, d.Milliseconds()))
	return err
}

// SetMaxPageCount caps the database file at n pages for the writer (SQLite never sets the
// cap below the pages in use) and returns the cap in force: a write that needs a page past
// it fails with "database or disk is full", as on a full disk. n <= 0 lifts the cap. The
// caveat of SetBusyTimeout applies.
func (s *Store) SetMaxPageCount(ctx context.Context, n int64) (int64, error) {
	if n <= 0 {
		n = 0xFFFFFFFE
	}
	var got int64
	err := s.write.QueryRowContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, n)).Scan(&got)
	return got, err
}

// policyStatus reports whether an RFC 3463 status refuses our mail rather than her address.
func policyStatus(status string) bool {
	return len(status) > 3 && status[1:3] == ".7" && status[3] == '.' || status == "5.1.7" || status == "5.1.8"
}
