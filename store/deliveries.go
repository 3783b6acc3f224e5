package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// DueRecipients reads up to limit deliveries of a job that LeaseRecipients would claim at
// now (dueDeliveries), past afterID, in id order, each with its consumer row, leasing none:
// what the tests look at. Deliveries whose consumer is no
// longer active are returned too, with her status (see LeaseRecipients).
func (s *Store) DueRecipients(ctx context.Context, jobKey, afterID int64, now time.Time, limit int) ([]postoffice.Recipient, error) {
	slug, err := s.jobIssuerSlug(ctx, jobKey)
	if err != nil {
		return nil, err
	}
	return scanRecipients(s.read.QueryContext(ctx, `SELECT d.id, d.retry_count, `+consumerColumns+`
		FROM deliveries d JOIN consumers c ON c.id = d.consumer_id
		WHERE d.id IN (SELECT id FROM deliveries WHERE `+dueDeliveries+` AND id > ? ORDER BY id LIMIT ?)
		ORDER BY d.id`, jobKey, ms(now), ms(now), afterID, limit))(slug, limit)
}

// dueDeliveries picks the deliveries of a job (the first parameter) that a claim at now (the
// second and third) may take: still to send, their next attempt due, and no lease holding
// them (none, or one ended by now).
const dueDeliveries = `job_key = ? AND sent = 0 AND rejected = 0 AND failed = 0 AND next_attempt_at <= ? AND lease_until <= ?`

// LeaseRecipients claims up to limit deliveries of a job for the mail server owner: those
// still to send whose next attempt is due at now and that no lease holds (none, or one
// ended by now), in id order, each with its consumer row. Each gets the lease (owner,
// until), so no other claim, in this process or another, takes it until RecordOutcomes
// records it, ReleaseLeases lets it go or until passes; a heartbeat extends it
// (ReportMailServers). On PostgreSQL the claim skips the rows another claim is taking at the
// same moment (FOR UPDATE SKIP LOCKED); on SQLite the writer's lock runs claims one at a
// time.
//
// Deliveries whose consumer is no longer active (unsubscribed, bounced or suppressed since
// selection, which takes only active ones) are returned too, with her status, so that the
// mail server closes them unsent (postoffice.Recipient.Mailable) and the job still ends;
// left out, they would stay pending for ever. A status that changes after the claim moves
// StatusGeneration, which the mail server checks before each send.
//
// Each consumer's attributes are those the job's issuer may see (rewards.Consumer.AttributesFor),
// so a template's getAttr never shows another issuer's.
func (s *Store) LeaseRecipients(ctx context.Context, jobKey int64, owner int, now, until time.Time, limit int) ([]postoffice.Recipient, error) {
	if owner <= 0 || !until.After(now) {
		return nil, fmt.Errorf("lease of job %d: owner %d until %v: want a mail server and a time after now", jobKey, owner, until)
	}
	slug, err := s.jobIssuerSlug(ctx, jobKey)
	if err != nil {
		return nil, err
	}
	if s.engine == enginePostgres {
		return scanRecipients(s.write.QueryContext(ctx, `WITH picked AS (
				SELECT id FROM deliveries WHERE `+dueDeliveries+` ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED),
			leased AS (
				UPDATE deliveries d SET lease_owner = ?, lease_until = ? FROM picked WHERE d.id = picked.id
				RETURNING d.id, d.retry_count, d.consumer_id)
			SELECT d.id, d.retry_count, `+consumerColumns+`
			FROM leased d JOIN consumers c ON c.id = d.consumer_id ORDER BY d.id`,
			jobKey, ms(now), ms(now), limit, owner, ms(until)))(slug, limit)
	}
	var out []postoffice.Recipient
	err = s.tx(ctx, func(tx *sql.Tx) error {
		ids, err := scanIDs(tx.QueryContext(ctx, `UPDATE deliveries SET lease_owner = ?, lease_until = ?
			WHERE id IN (SELECT id FROM deliveries WHERE `+dueDeliveries+` ORDER BY id LIMIT ?) RETURNING id`,
			owner, ms(until), jobKey, ms(now), ms(now), limit))
		if err != nil || len(ids) == 0 {
			return err
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		out, err = scanRecipients(tx.QueryContext(ctx, `SELECT d.id, d.retry_count, `+consumerColumns+`
			FROM json_each(?) j JOIN deliveries d ON d.id = j.value JOIN consumers c ON c.id = d.consumer_id
			ORDER BY d.id`, string(list)))(slug, len(ids))
		return err
	})
	return out, err
}

// jobIssuerSlug is the slug of a job's issuer, whose attributes its recipients show; "" for
// no job.
func (s *Store) jobIssuerSlug(ctx context.Context, jobKey int64) (string, error) {
	var slug string
	err := s.read.QueryRowContext(ctx, `SELECT i.slug FROM jobs j JOIN issuers i ON i.id = j.issuer_id
		WHERE j.key = ?`, jobKey).Scan(&slug)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return slug, err
}

// scanRecipients reads rows of a delivery's id and retry count and its consumer's columns,
// showing the attributes of the issuer slug.
func scanRecipients(rows *sql.Rows, err error) func(slug string, capacity int) ([]postoffice.Recipient, error) {
	return func(slug string, capacity int) ([]postoffice.Recipient, error) {
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := make([]postoffice.Recipient, 0, capacity)
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
}

// ReleaseLeases lets go of the leases the mail server owner holds, at the end of its pass:
// what it claimed and did not send is at once another claim's.
func (s *Store) ReleaseLeases(ctx context.Context, owner int) error {
	_, err := s.exec(ctx, `UPDATE deliveries SET lease_owner = 0, lease_until = 0 WHERE lease_owner = ?`, owner)
	return err
}

// splitInterests turns the stored ';golf;tennis;' into its items.
func splitInterests(s string) []string {
	s = strings.Trim(s, ";")
	if s == "" {
		return nil
	}
	return strings.Split(s, ";")
}

// RecordOutcomes writes the results of many sends in one transaction and clears their
// leases. Only a delivery still to send takes an outcome: one that another mail server
// recorded first (it took the delivery over when this one's lease ended) keeps its own, so a
// delivery is recorded sent once; and an outcome that sent nothing only while its server
// (Outcome.Owner) still holds the lease, or nobody does.
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
			last_reply = 0, last_status = '', last_refusal = '', ` + unleased,
		postoffice.OutcomeRetry: `UPDATE deliveries SET retry_count = retry_count + 1, next_attempt_at = ?3,
			last_error = ?4, last_reply = ?5, last_status = ?6, last_refusal = ?7, updated_at = ?1, ` + unleased + ` AND lease_owner IN (0, ?8)`,
		postoffice.OutcomeRejected: `UPDATE deliveries SET rejected = 1, last_error = ?3,
			last_reply = ?4, last_status = ?5, last_refusal = ?6, updated_at = ?1, ` + unleased + ` AND lease_owner IN (0, ?7)`,
		postoffice.OutcomeFailed: `UPDATE deliveries SET failed = 1, last_error = ?3,
			last_reply = ?4, last_status = ?5, last_refusal = ?6, updated_at = ?1, ` + unleased + ` AND lease_owner IN (0, ?7)`,
	}
	// A refusal at send time counts as a bounce (RecordBounce): one that says the address is
	// bad bounces it in this same transaction.
	bounces := bounceEffects{tx: tx, ctx: ctx, engine: s.engine}
	statusChanged := false
	// PostgreSQL takes the batch's sends in one statement: a round trip each kept its
	// mail servers waiting on the database for half their time.
	var sentIDs, sentAts []int64
	for _, o := range outcomes {
		if s.engine == enginePostgres && o.Kind == postoffice.OutcomeSent {
			sentIDs, sentAts = append(sentIDs, o.DeliveryID), append(sentAts, ms(o.At))
			continue
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
			args = append(args, ms(o.NextAttempt), o.Error, rf.Reply, rf.Status, string(rf.Class), o.Owner)
		case postoffice.OutcomeRejected, postoffice.OutcomeFailed:
			// No next attempt: PostgreSQL cannot type a parameter a statement does not use.
			args = append(args, o.Error, rf.Reply, rf.Status, string(rf.Class), o.Owner)
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		// A refusal counts as a bounce only where it was recorded: not on a delivery another
		// server has since sent, or whose lease it lost.
		if o.Kind != postoffice.OutcomeRejected {
			continue
		}
		f := refusalFailure(o)
		if n, err := res.RowsAffected(); err != nil || n == 0 || f.Severity == "" {
			if err != nil {
				return err
			}
			continue
		}
		var consumerID int64
		if err := tx.QueryRowContext(ctx, `SELECT consumer_id FROM deliveries WHERE id = ?`, o.DeliveryID).Scan(&consumerID); err != nil {
			return err
		}
		bounces.now = ms(o.At)
		changed, err := bounces.bounce(consumerID, o.DeliveryID, f)
		if err != nil {
			return err
		}
		statusChanged = statusChanged || changed
	}
	if len(sentIDs) > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE deliveries AS d SET sent = 1, sent_at = v.at, updated_at = v.at,
				last_error = '', last_reply = 0, last_status = '', last_refusal = '', lease_owner = 0, lease_until = 0
			FROM unnest(?::bigint[], ?::bigint[]) AS v(id, at)
			WHERE d.id = v.id AND d.sent = 0 AND d.rejected = 0 AND d.failed = 0`, sentIDs, sentAts); err != nil {
			return err
		}
	}
	// Every message the relays took counts against its route's quota, a late duplicate too.
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

// unleased ends each outcome's update: the lease cleared, on a delivery still to send.
const unleased = `lease_owner = 0, lease_until = 0 WHERE id = ?2 AND sent = 0 AND rejected = 0 AND failed = 0`

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

// NextClaimable returns when the first of a job's deliveries still to send can next be
// claimed: the later of its next attempt and the end of its lease (a time not after now: at
// once). ok is false when none is left to send.
//
// It reads two minimums off indexes (0067), not every delivery of the job: the first next
// attempt of those no lease holds, and the first end of a lease among those leased, few. A
// claim takes only deliveries due, and the heartbeat only moves a lease's end later, so a
// leased delivery's lease ends after its next attempt.
func (s *Store) NextClaimable(ctx context.Context, jobKey int64) (at time.Time, ok bool, err error) {
	var unleased, leased sql.NullInt64
	err = s.read.QueryRowContext(ctx, nextClaimable, jobKey, jobKey).Scan(&unleased, &leased)
	if err != nil || !unleased.Valid && !leased.Valid {
		return time.Time{}, false, err
	}
	next := unleased.Int64
	if !unleased.Valid || leased.Valid && leased.Int64 < next {
		next = leased.Int64
	}
	return time.UnixMilli(next).UTC(), true, nil
}

// nextClaimable is NextClaimable's query: one minimum read off deliveries_unleased, one over
// the rows of deliveries_job_leased.
const nextClaimable = `SELECT
	(SELECT min(next_attempt_at) FROM deliveries
		WHERE job_key = ? AND sent = 0 AND rejected = 0 AND failed = 0 AND lease_owner = 0),
	(SELECT min(lease_until) FROM deliveries
		WHERE job_key = ? AND sent = 0 AND rejected = 0 AND failed = 0 AND lease_owner <> 0)`

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
