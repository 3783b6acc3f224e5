package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// ClaimRecipients returns up to limit deliveries of a job still to send whose next attempt
// is due at now and whose id is past afterID, in id order, each with its consumer row. The
// caller keeps afterID as its cursor, so a delivery in flight is not claimed twice.
// Deliveries whose consumer is no longer active (unsubscribed, bounced or suppressed since
// selection, which takes only active ones) are returned too, with her status, so that the
// mail server closes them unsent (postoffice.Recipient.Mailable) and the job still ends;
// left out, they would stay pending for ever. A status that changes after the claim moves
// StatusGeneration, which the mail server checks before each send.
//
// Each consumer's attributes are those the job's issuer may see (rewards.Consumer.AttributesFor),
// so a template's getAttr never shows another issuer's.
func (s *Store) ClaimRecipients(ctx context.Context, jobKey, afterID int64, now time.Time, limit int) ([]postoffice.Recipient, error) {
	var slug string
	if err := s.read.QueryRowContext(ctx, `SELECT i.slug FROM jobs j JOIN issuers i ON i.id = j.issuer_id
		WHERE j.key = ?`, jobKey).Scan(&slug); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, `SELECT d.id, d.retry_count, `+consumerColumns+`
		FROM deliveries d JOIN consumers c ON c.id = d.consumer_id
		WHERE d.job_key = ? AND d.sent = 0 AND d.rejected = 0 AND d.failed = 0
			AND d.id > ? AND d.next_attempt_at <= ?
		ORDER BY d.id LIMIT ?`, jobKey, afterID, ms(now), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]postoffice.Recipient, 0, limit)
	for rows.Next() {
		var r postoffice.Recipient
		if err := scanConsumer(rows, &r.Consumer, &r.DeliveryID, &r.RetryCount); err != nil {
			return nil, err
		}
		r.Consumer.Attributes = r.Consumer.AttributesFor(slug)
		out = append(out, r)
	}
	return out, rows.Err()
}

// splitInterests turns the stored ';golf;tennis;' into its items.
func splitInterests(s string) []string {
	s = strings.Trim(s, ";")
	if s == "" {
		return nil
	}
	return strings.Split(s, ";")
}

// RecordOutcomes writes the results of many sends in one transaction.
func (s *Store) RecordOutcomes(ctx context.Context, outcomes []postoffice.Outcome) error {
	if len(outcomes) == 0 {
		return nil
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var stmts [4]*sql.Stmt
	queries := [4]string{
		postoffice.OutcomeSent: `UPDATE deliveries SET sent = 1, sent_at = ?1, updated_at = ?1, last_error = '',
			last_reply = 0, last_status = '', last_refusal = '' WHERE id = ?2`,
		postoffice.OutcomeRetry: `UPDATE deliveries SET retry_count = retry_count + 1, next_attempt_at = ?3,
			last_error = ?4, last_reply = ?5, last_status = ?6, last_refusal = ?7, updated_at = ?1 WHERE id = ?2`,
		postoffice.OutcomeRejected: `UPDATE deliveries SET rejected = 1, last_error = ?3,
			last_reply = ?4, last_status = ?5, last_refusal = ?6, updated_at = ?1 WHERE id = ?2`,
		postoffice.OutcomeFailed: `UPDATE deliveries SET failed = 1, last_error = ?3,
			last_reply = ?4, last_status = ?5, last_refusal = ?6, updated_at = ?1 WHERE id = ?2`,
	}
	// A refusal at send time counts as a bounce (RecordBounce): one that says the address is
	// bad bounces it in this same transaction.
	bounces := bounceEffects{tx: tx, ctx: ctx, engine: s.engine}
	statusChanged := false
	for _, o := range outcomes {
		if o.Kind == postoffice.OutcomeRejected {
			if f := refusalFailure(o); f.Severity != "" {
				var consumerID int64
				err := tx.QueryRowContext(ctx, `SELECT consumer_id FROM deliveries WHERE id = ?`, o.DeliveryID).Scan(&consumerID)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				if consumerID != 0 {
					bounces.now = ms(o.At)
					changed, err := bounces.bounce(consumerID, o.DeliveryID, f)
					if err != nil {
						return err
					}
					statusChanged = statusChanged || changed
				}
			}
		}
		st := stmts[o.Kind]
		if st == nil {
			if st, err = tx.PrepareContext(ctx, queries[o.Kind]); err != nil {
				return err
			}
			defer st.Close()
			stmts[o.Kind] = st
		}
		args := []any{ms(o.At), o.DeliveryID}
		rf := o.Refusal
		switch o.Kind {
		case postoffice.OutcomeRetry:
			args = append(args, ms(o.NextAttempt), o.Error, rf.Reply, rf.Status, string(rf.Class))
		case postoffice.OutcomeRejected, postoffice.OutcomeFailed:
			// No next attempt: PostgreSQL cannot type a parameter a statement does not use.
			args = append(args, o.Error, rf.Reply, rf.Status, string(rf.Class))
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return err
		}
	}
	if err := countRouteSends(ctx, tx, outcomes); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if statusChanged {
		s.statusGen.Add(1) // a bounced address's deliveries claimed elsewhere are not sent
	}
	return nil
}

// refusalFailure is a refusal at send time as a bounce: the mail server's class decides
// (a policy refusal is a soft bounce whose x.7.x or 5.1.7/8 status RecordBounce never counts
// against her); an outcome with no class is none.
func refusalFailure(o postoffice.Outcome) BounceFailure {
	f := BounceFailure{Status: o.Refusal.Status, Detail: o.Error}
	switch o.Refusal.Class {
	case postoffice.RefusalHard:
		f.Severity = BounceHard
	case postoffice.RefusalSoft, postoffice.RefusalPolicy:
		f.Severity = BounceSoft
	}
	return f
}

// NextAttemptAfter returns the earliest due time of a job's deliveries waiting for a retry
// after now, or the zero time when none waits.
func (s *Store) NextAttemptAfter(ctx context.Context, jobKey int64, now time.Time) (time.Time, error) {
	var at sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT min(next_attempt_at) FROM deliveries
		WHERE job_key = ? AND sent = 0 AND rejected = 0 AND failed = 0 AND next_attempt_at > ?`, jobKey, ms(now)).Scan(&at)
	if err != nil || !at.Valid {
		return time.Time{}, err
	}
	return fromMS(at.Int64), nil
}

// Delivery returns the delivery of a job to a consumer. Returns rewards.ErrNotFound if there is none.
func (s *Store) Delivery(ctx context.Context, jobKey, consumerID int64) (*postoffice.Delivery, error) {
	var d postoffice.Delivery
	var next int64
	var sentAt, receivedAt sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT id, job_key, consumer_id, sent, received, retry_count, rejected, failed,
			next_attempt_at, sent_at, received_at, last_error, last_reply, last_status, last_refusal
		FROM deliveries WHERE job_key = ? AND consumer_id = ?`, jobKey, consumerID).
		Scan(&d.ID, &d.JobKey, &d.ConsumerID, &d.Sent, &d.Received, &d.RetryCount, &d.Rejected, &d.Failed,
			&next, &sentAt, &receivedAt, &d.LastError, &d.LastRefusal.Reply, &d.LastRefusal.Status, &d.LastRefusal.Class)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("delivery of job %d to consumer %d: %w", jobKey, consumerID, rewards.ErrNotFound)
	}
	d.NextAttempt, d.SentAt, d.ReceivedAt = fromMS(next), fromMS(sentAt.Int64), fromMS(receivedAt.Int64)
	return &d, err
}

// JobConsumers returns the ids of up to limit consumers a job has a delivery for, in id order.
func (s *Store) JobConsumers(ctx context.Context, jobKey int64, limit int) ([]int64, error) {
	return scanIDs(s.read.QueryContext(ctx, `SELECT consumer_id FROM deliveries WHERE job_key = ?
		ORDER BY consumer_id LIMIT ?`, jobKey, limit))
}
