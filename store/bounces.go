package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
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

// UnverifiedPrefix begins the stored detail of a bounce or complaint that named no delivery
// by a verified token. Anyone who can send mail can forge a DSN or an ARF report, so such a
// message changes nothing: it is kept, with the addresses it names, for an operator to review.
const UnverifiedPrefix = "unverified, no effect: "

// Bounce is a bounce or an abuse report the receiver took, with what it says.
type Bounce struct {
	// Message is kept as RecordInbound keeps it. Its JobKey and ConsumerID name the
	// delivery when a verified token did (0 otherwise); only then has the message effects.
	Message InboundMessage
	// Key identifies the message across redeliveries (its Message-ID); "" never matches.
	Key string
	// Complaint marks an abuse report: the consumer is suppressed.
	Complaint bool
	// Reported is a complaint's complainant address as the report states it: recorded for
	// the operator, never acted on (the token names the consumer).
	Reported string
	// Failures are a bounce's failed recipients. The worst one naming the token's consumer
	// decides for the delivery (the worst of all when none names her); the addresses never
	// name anyone else.
	Failures []BounceFailure

	// Set by RecordBounce: Duplicate when Key was recorded before (nothing was changed);
	// Unverified when no verified token named an existing delivery (recorded, no effect);
	// and the consumers whose status this message changed.
	Duplicate  bool
	Unverified bool
	Suppressed []int64
}

// BounceFailure is one failed recipient of a bounce.
type BounceFailure struct {
	Email    string
	Severity string // BounceHard, BounceSoft, or "" for no failure (a delay)
	Status   string // RFC 3463
	Detail   string
}

// RecordBounce keeps a bounce or a complaint and, when its Message names a delivery (a
// verified token's JobKey and ConsumerID, and that delivery exists), applies its effects to
// that delivery and that consumer only, in one transaction:
//
//   - a complaint sets the consumer's status to suppressed (from active, unsubscribed or
//     bounced);
//   - a hard bounce sets the delivery's rejected flag, with "bounced: " and the status and
//     diagnostic as its last error, and the consumer's status to bounced;
//   - a soft bounce sets the rejected flag too (the message did not arrive), and bounces the
//     consumer once her soft bounces since her last acknowledgement reach the limit
//     (SetSoftBounceLimit): an acknowledgement proves the mailbox works, a 250 from our
//     relay does not;
//   - a delivery already acknowledged is never marked rejected (it arrived; reports would
//     count it twice), though the consumer's bounce is recorded and counts.
//
// A message naming no delivery is recorded with UnverifiedPrefix and the addresses it names
// in its detail, sets Unverified, and changes nothing: the addresses in a bounce's text or a
// complaint's Reported are a stranger's word. Only active consumers are bounced. A Key
// recorded before makes it a duplicate: nothing is written and nil is returned. Returns an
// error, having written nothing, when the database refuses (full, locked past the busy
// timeout) or ctx ends.
func (s *Store) RecordBounce(ctx context.Context, b *Bounce) error {
	if b.Message.CreatedAt.IsZero() {
		b.Message.CreatedAt = s.Now()
	}
	now := ms(b.Message.CreatedAt)
	b.Duplicate, b.Unverified, b.Suppressed = false, false, nil
	var suppressed []int64
	note := func(changed bool, id int64) {
		if changed {
			suppressed = append(suppressed, id)
		}
	}
	unverified := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		m := &b.Message
		var deliveryID int64
		var received bool
		var email string
		if m.JobKey != 0 && m.ConsumerID != 0 {
			err := tx.QueryRowContext(ctx, `SELECT d.id, d.received, c.email FROM deliveries d
				JOIN consumers c ON c.id = d.consumer_id WHERE d.job_key = ? AND d.consumer_id = ?`,
				m.JobKey, m.ConsumerID).Scan(&deliveryID, &received, &email)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		unverified = deliveryID == 0
		jobKey, consumerID, detail := m.JobKey, m.ConsumerID, m.Detail
		if unverified {
			detail = clipDetail(UnverifiedPrefix + unverifiedNote(b) + "; " + m.Detail)
			jobKey, consumerID = 0, 0
		}
		var key any
		if b.Key != "" {
			key = b.Key
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO inbound_messages
				(kind, job_key, consumer_id, mail_from, rcpt_to, subject, detail, created_at, message_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (message_key) WHERE message_key IS NOT NULL DO NOTHING RETURNING id`,
			m.Kind, nullID(jobKey), nullID(consumerID), m.From, m.To, m.Subject, detail, now, key).Scan(&m.ID)
		if errors.Is(err, sql.ErrNoRows) {
			b.Duplicate = true
			return nil
		}
		if err != nil || unverified {
			return err
		}
		e := bounceEffects{tx: tx, ctx: ctx, now: now, inboundID: m.ID, engine: s.engine}

		if b.Complaint {
			changed, err := e.apply(m.ConsumerID, deliveryID, BounceComplaint, "", "abuse report", "suppressed",
				"'active', 'unsubscribed', 'bounced'")
			note(changed, m.ConsumerID)
			return err
		}

		w, ok := worst(failuresOf(b.Failures, email))
		if !ok {
			return nil
		}
		if !received {
			if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET rejected = 1, last_error = ?, updated_at = ?
				WHERE id = ? AND received = 0`, clipDetail("bounced: "+w.Detail), now, deliveryID); err != nil {
				return err
			}
		}
		changed, err := e.bounce(m.ConsumerID, deliveryID, w)
		note(changed, m.ConsumerID)
		return err
	})
	if err != nil {
		b.Duplicate = false
		return err
	}
	b.Unverified = unverified && !b.Duplicate
	b.Suppressed = suppressed
	if len(suppressed) > 0 {
		s.statusGen.Add(1)
	}
	return nil
}

// unverifiedNote says, for the operator, what an unverified message claimed.
func unverifiedNote(b *Bounce) string {
	var named []string
	if b.Reported != "" {
		named = append(named, b.Reported)
	}
	for _, f := range b.Failures {
		if f.Email != "" && f.Severity != "" && !slices.Contains(named, f.Email) {
			named = append(named, f.Email)
		}
	}
	what := "no verified token names a delivery"
	if b.Message.JobKey != 0 {
		what = fmt.Sprintf("its token names job %d consumer %d, who has no such delivery", b.Message.JobKey, b.Message.ConsumerID)
	}
	if len(named) > 0 {
		what += "; names " + strings.Join(named, ", ")
	}
	return what
}

// failuresOf are the failures naming email (her address, as a bounce may list others);
// all of them when none does, as a forwarded address bounces under another name.
func failuresOf(fs []BounceFailure, email string) []BounceFailure {
	var hers []BounceFailure
	for _, f := range fs {
		if email != "" && strings.EqualFold(strings.TrimSpace(f.Email), email) {
			hers = append(hers, f)
		}
	}
	if len(hers) == 0 {
		return fs
	}
	return hers
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
	engine    engine
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
			AND NOT (`+e.engine.either(`status GLOB '[45].7.*'`, `status ~ '^[45]\.7\.'`)+` OR status IN ('5.1.7', '5.1.8'))
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
	_, err := s.exec(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
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

// clipDetail bounds a stranger's diagnostic text before it is stored, to 500 bytes and
// "...". It cuts at a rune's start, so that it never splits a UTF-8 sequence; bytes that are
// no UTF-8 to begin with are kept as they came.
func clipDetail(s string) string {
	const limit = 500
	if len(s) <= limit {
		return s
	}
	cut := limit
	for back := 0; back < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); back++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = limit // no rune begins near the limit: the bytes are not UTF-8 anyway
	}
	return s[:cut] + "..."
}

// policyStatus reports whether an RFC 3463 status refuses our mail rather than her address.
func policyStatus(status string) bool {
	return len(status) > 3 && status[1:3] == ".7" && status[3] == '.' || status == "5.1.7" || status == "5.1.8"
}
