package store

import (
	"context"
	"database/sql"
	"math"

	"pointpost/rewards"
)

// Timeline gathers everything pointpost did with the consumer with the address, for
// `pointpost consumer EMAIL`: her profile, every invitation, every acknowledgement with each
// rule's decision, the accruals, her ledger entries, her redemptions and the balances. All but
// the profile are read from one snapshot, so they agree with each other. Returns rewards.ErrNotFound
// if there is no such consumer.
func (s *Store) Timeline(ctx context.Context, email string) (*rewards.Timeline, error) {
	c, err := s.ConsumerByEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	t := &rewards.Timeline{Consumer: *c}
	err = tx.QueryRowContext(ctx, `SELECT points_balance,
			(SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE account = ?2),
			(SELECT coalesce(sum(points), 0) FROM accruals WHERE consumer_id = c.id AND posted_at IS NULL)
		FROM consumers c WHERE id = ?1`, c.ID, rewards.ConsumerAccount(c.ID)).Scan(&t.Balance, &t.LedgerBalance, &t.Pending)
	if err != nil {
		return nil, err
	}
	t.Consumer.PointsBalance = t.Balance
	if t.Deliveries, err = timelineDeliveries(ctx, tx, c.ID); err != nil {
		return nil, err
	}
	if t.Acknowledgements, err = timelineAcks(ctx, tx, c.ID, everyRow); err != nil {
		return nil, err
	}
	if t.Accruals, err = timelineAccruals(ctx, tx, c.ID, everyRow); err != nil {
		return nil, err
	}
	if t.Postings, err = s.timelineEntries(ctx, tx, c.ID, everyRow); err != nil {
		return nil, err
	}
	if t.Redemptions, err = timelineRedemptions(ctx, tx, c.ID); err != nil {
		return nil, err
	}
	return t, nil
}

// everyRow is the LIMIT that takes every row: PostgreSQL refuses SQLite's -1.
const everyRow = math.MaxInt64

// timelineDeliveries lists a consumer's invitations in the order of what last happened to
// them: sent, or else rejected, failed or retried, or else (still waiting) their job's start.
func timelineDeliveries(ctx context.Context, tx *sql.Tx, consumerID int64) ([]rewards.TimelineDelivery, error) {
	rows, err := tx.QueryContext(ctx, `SELECT d.id, d.job_key, j.name, i.name, j.start_at, j.stop_at,
			d.sent, d.received, d.rejected, d.failed, d.retry_count, d.last_error,
			coalesce(d.sent_at, 0), coalesce(d.received_at, 0), d.next_attempt_at, d.updated_at
		FROM deliveries d JOIN jobs j ON j.key = d.job_key JOIN issuers i ON i.id = j.issuer_id
		WHERE d.consumer_id = ?
		ORDER BY coalesce(d.sent_at, nullif(d.updated_at, 0), j.start_at), d.id`, consumerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.TimelineDelivery
	for rows.Next() {
		var d rewards.TimelineDelivery
		var start, stop, sent, received, next, updated int64
		if err := rows.Scan(&d.ID, &d.JobKey, &d.JobName, &d.IssuerName, &start, &stop,
			&d.Sent, &d.Received, &d.Rejected, &d.Failed, &d.RetryCount, &d.LastError,
			&sent, &received, &next, &updated); err != nil {
			return nil, err
		}
		d.JobStart, d.JobStop, d.SentAt, d.ReceivedAt = fromMS(start), fromMS(stop), fromMS(sent), fromMS(received)
		d.NextAttempt, d.UpdatedAt = fromMS(next), fromMS(updated)
		out = append(out, d)
	}
	return out, rows.Err()
}

// timelineAcks lists a consumer's newest limit acknowledgement decisions (everyRow: all), oldest
// first.
func timelineAcks(ctx context.Context, tx *sql.Tx, consumerID int64, limit int) ([]rewards.TimelineAck, error) {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM (
			SELECT a.id, a.created_at, a.job_key, j.name, a.channel, a.source, coalesce(a.rule_id, 0),
				coalesce(r.description, ''), coalesce(r.type, ''), a.awarded, a.points, a.reason
			FROM acknowledgements a JOIN jobs j ON j.key = a.job_key LEFT JOIN award_rules r ON r.id = a.rule_id
			WHERE a.consumer_id = ? ORDER BY a.created_at DESC, a.id DESC LIMIT ?) AS newest
		ORDER BY 2, 1`, consumerID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.TimelineAck
	for rows.Next() {
		var a rewards.TimelineAck
		var at int64
		if err := rows.Scan(&a.ID, &at, &a.JobKey, &a.JobName, &a.Channel, &a.Source, &a.RuleID,
			&a.RuleDescription, &a.RuleType, &a.Awarded, &a.Points, &a.Reason); err != nil {
			return nil, err
		}
		a.At = fromMS(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// timelineAccruals lists a consumer's newest limit accruals (everyRow: all), posted or pending,
// oldest first.
func timelineAccruals(ctx context.Context, tx *sql.Tx, consumerID int64, limit int) ([]rewards.TimelineAccrual, error) {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM (
			SELECT ac.id, ac.created_at, ac.job_key, j.name, ac.rule_id, r.description, ac.issuer_id, i.name,
				ac.points, coalesce(ac.posted_at, 0)
			FROM accruals ac JOIN jobs j ON j.key = ac.job_key JOIN award_rules r ON r.id = ac.rule_id
				JOIN issuers i ON i.id = ac.issuer_id
			WHERE ac.consumer_id = ? ORDER BY ac.created_at DESC, ac.id DESC LIMIT ?) AS newest
		ORDER BY 2, 1`, consumerID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.TimelineAccrual
	for rows.Next() {
		var a rewards.TimelineAccrual
		var at, posted int64
		if err := rows.Scan(&a.ID, &at, &a.JobKey, &a.JobName, &a.RuleID, &a.RuleDescription, &a.IssuerID,
			&a.IssuerName, &a.Points, &posted); err != nil {
			return nil, err
		}
		a.At, a.PostedAt, a.Posted = fromMS(at), fromMS(posted), posted != 0
		out = append(out, a)
	}
	return out, rows.Err()
}

// timelineEntries lists the newest limit entries of a consumer's ledger account (everyRow: all),
// oldest first, each with the other side of its posting and, when that is an issuer, its name.
func (s *Store) timelineEntries(ctx context.Context, tx *sql.Tx, consumerID int64, limit int) ([]rewards.TimelineEntry, error) {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM (
			SELECT l.id, l.posting_id, l.created_at, l.kind, l.amount,
				(SELECT coalesce(`+s.either("group_concat", "string_agg")+`(o.account, ' '), '') FROM ledger_entries o
					WHERE o.posting_id = l.posting_id AND o.id <> l.id),
				(SELECT coalesce(max(i.name), '') FROM ledger_entries o JOIN issuers i
					ON o.account LIKE 'issuer:%' AND i.id = CAST(substr(o.account, 8) AS BIGINT)
					WHERE o.posting_id = l.posting_id AND o.id <> l.id),
				coalesce(l.accrual_id, 0), coalesce(l.redemption_id, 0), coalesce(ac.job_key, 0),
				coalesce(j.name, ''), l.memo
			FROM ledger_entries l LEFT JOIN accruals ac ON ac.id = l.accrual_id LEFT JOIN jobs j ON j.key = ac.job_key
			WHERE l.account = ? ORDER BY l.id DESC LIMIT ?) AS newest
		ORDER BY 1`, rewards.ConsumerAccount(consumerID), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.TimelineEntry
	for rows.Next() {
		var e rewards.TimelineEntry
		var at int64
		if err := rows.Scan(&e.ID, &e.PostingID, &at, &e.Kind, &e.Amount, &e.Counter, &e.IssuerName, &e.AccrualID,
			&e.RedemptionID, &e.JobKey, &e.JobName, &e.Memo); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// timelineRedemptions lists a consumer's redemptions, oldest first.
func timelineRedemptions(ctx context.Context, tx *sql.Tx, consumerID int64) ([]rewards.Redemption, error) {
	rows, err := tx.QueryContext(ctx, `SELECT r.id, r.consumer_id, r.item_id, c.name, r.cost, r.created_at
		FROM redemptions r JOIN catalog c ON c.id = r.item_id WHERE r.consumer_id = ? ORDER BY r.id`, consumerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.Redemption
	for rows.Next() {
		var r rewards.Redemption
		var at int64
		if err := rows.Scan(&r.ID, &r.ConsumerID, &r.ItemID, &r.ItemName, &r.Cost, &at); err != nil {
			return nil, err
		}
		r.At = fromMS(at)
		out = append(out, r)
	}
	return out, rows.Err()
}
