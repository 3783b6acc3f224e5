package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// The toolbox's dashboard and job reports. Every query here reads one job's rows through an
// index that starts with job_key (0001 and 0008_reports.sql), so a report costs what its job
// holds, not what the database holds.

// IssuerBudget returns the points an issuer's rules may award in all (0: no cap) and the
// points they have accrued: the running totals of migration 0003. Returns rewards.ErrNotFound if
// there is no such issuer.
func (s *Store) IssuerBudget(ctx context.Context, issuerID int64) (budget, spent int64, err error) {
	err = s.read.QueryRowContext(ctx, `SELECT budget, spent FROM issuers WHERE id = ?`, issuerID).Scan(&budget, &spent)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("issuer %d: %w", issuerID, rewards.ErrNotFound)
	}
	return budget, spent, err
}

// JobPoints returns the points accrued under each of the jobs with keys; a job without
// accruals is absent from the map.
func (s *Store) JobPoints(ctx context.Context, keys []int64) (map[int64]int64, error) {
	out := make(map[int64]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := s.read.QueryContext(ctx, `SELECT job_key, sum(points) FROM accruals
		WHERE job_key IN (?`+strings.Repeat(`, ?`, len(keys)-1)+`) GROUP BY job_key`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var key, points int64
		if err := rows.Scan(&key, &points); err != nil {
			return nil, err
		}
		out[key] = points
	}
	return out, rows.Err()
}

// JobReceipts counts the sent and the received deliveries (Sent, Received) of each of the
// jobs with keys from the 0008 indexes alone, without reading the deliveries: a delivery
// counts as sent once it has a sent_at. Every key is in the map.
func (s *Store) JobReceipts(ctx context.Context, keys []int64) (map[int64]postoffice.JobCounts, error) {
	out := make(map[int64]postoffice.JobCounts, len(keys))
	for _, key := range keys {
		var c postoffice.JobCounts
		err := s.read.QueryRowContext(ctx, `SELECT
				(SELECT count(*) FROM deliveries WHERE job_key = ?1 AND sent_at IS NOT NULL),
				(SELECT count(*) FROM deliveries WHERE job_key = ?1 AND received_at IS NOT NULL)`, key).Scan(&c.Sent, &c.Received)
		if err != nil {
			return nil, err
		}
		out[key] = c
	}
	return out, nil
}

// JobRulePoints returns the points a job's acknowledgements accrued under each rule, by
// rule id; a rule that awarded nothing for the job is absent.
func (s *Store) JobRulePoints(ctx context.Context, jobKey int64) (map[int64]int64, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT rule_id, sum(points) FROM accruals WHERE job_key = ? GROUP BY rule_id`, jobKey)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var id, points int64
		if err := rows.Scan(&id, &points); err != nil {
			return nil, err
		}
		out[id] = points
	}
	return out, rows.Err()
}

// JobSettlement returns how many of the points accrued under a job settlement has posted to
// the consumers' accounts, and how many consumers earned points under it.
func (s *Store) JobSettlement(ctx context.Context, jobKey int64) (settled int64, earners int, err error) {
	err = s.read.QueryRowContext(ctx, `SELECT coalesce(sum(CASE WHEN posted_at IS NULL THEN 0 ELSE points END), 0),
			count(DISTINCT consumer_id)
		FROM accruals WHERE job_key = ?`, jobKey).Scan(&settled, &earners)
	return settled, earners, err
}

// JobChannels counts, for each channel, the consumers who acknowledged a job by it; one who
// both replied and clicked counts under both.
func (s *Store) JobChannels(ctx context.Context, jobKey int64) (map[postoffice.Channel]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT channel, count(DISTINCT consumer_id) FROM acknowledgements
		WHERE job_key = ? GROUP BY channel`, jobKey)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[postoffice.Channel]int{}
	for rows.Next() {
		var ch string
		var n int
		if err := rows.Scan(&ch, &n); err != nil {
			return nil, err
		}
		out[postoffice.Channel(ch)] = n
	}
	return out, rows.Err()
}

// JobSpan returns when a job sent its first message and when it last sent or was
// acknowledged; both are zero while it has sent nothing.
func (s *Store) JobSpan(ctx context.Context, jobKey int64) (first, last time.Time, err error) {
	// Scalar subqueries, so that each min or max is one probe of its index (0008).
	var f, ls, lr sql.NullInt64
	err = s.read.QueryRowContext(ctx, `SELECT
			(SELECT min(sent_at) FROM deliveries WHERE job_key = ?1 AND sent_at IS NOT NULL),
			(SELECT max(sent_at) FROM deliveries WHERE job_key = ?1 AND sent_at IS NOT NULL),
			(SELECT max(received_at) FROM deliveries WHERE job_key = ?1 AND received_at IS NOT NULL)`, jobKey).
		Scan(&f, &ls, &lr)
	if err != nil || !f.Valid {
		return time.Time{}, time.Time{}, err
	}
	return fromMS(f.Int64), fromMS(max(ls.Int64, lr.Int64)), nil
}

// JobTimeline counts a job's sends (by sent_at) and acknowledgements (by received_at) in n
// buckets of the given size from from: sends[i] and acks[i] fall in
// [from+i*bucket, from+(i+1)*bucket). What falls outside the n buckets is not counted.
// Returns an error for a bucket shorter than a millisecond or n outside 1..10000.
func (s *Store) JobTimeline(ctx context.Context, jobKey int64, from time.Time, bucket time.Duration, n int) (sends, acks []int, err error) {
	if bucket < time.Millisecond {
		return nil, nil, fmt.Errorf("timeline bucket %v: must be at least 1ms", bucket)
	}
	if n < 1 || n > 10000 {
		return nil, nil, fmt.Errorf("timeline: %d buckets, want 1 to 10000", n)
	}
	start, size := from.UnixMilli(), bucket.Milliseconds()
	sends, acks = make([]int, n), make([]int, n)
	// One range count per bucket on the column's index (0008): together one pass over the
	// job's index entries, without the sort a GROUP BY of a computed bucket needs.
	// PostgreSQL would type the parameters by the bucket number, an int4: they are bigints.
	rows, err := s.read.QueryContext(ctx, s.either(`WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i < ?4 - 1)
		SELECT i,
			(SELECT count(*) FROM deliveries WHERE job_key = ?1 AND sent_at >= ?2 + i * ?3 AND sent_at < ?2 + (i + 1) * ?3),
			(SELECT count(*) FROM deliveries WHERE job_key = ?1 AND received_at >= ?2 + i * ?3 AND received_at < ?2 + (i + 1) * ?3)
		FROM b`, `WITH RECURSIVE b(i) AS (SELECT 0::bigint UNION ALL SELECT i + 1 FROM b WHERE i < ?4::bigint - 1)
		SELECT i,
			(SELECT count(*) FROM deliveries WHERE job_key = ?1::bigint AND sent_at >= ?2::bigint + i * ?3::bigint AND sent_at < ?2::bigint + (i + 1) * ?3::bigint),
			(SELECT count(*) FROM deliveries WHERE job_key = ?1::bigint AND received_at >= ?2::bigint + i * ?3::bigint AND received_at < ?2::bigint + (i + 1) * ?3::bigint)
		FROM b`), jobKey, start, size, n)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var i, sent, received int
		if err := rows.Scan(&i, &sent, &received); err != nil {
			return nil, nil, err
		}
		sends[i], acks[i] = sent, received
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	return sends, acks, nil
}

// reportColumn is the SQL that reads a consumer field a report may group a job's
// deliveries by, as text; "" for a field it does not know.
func reportColumn(field string) string {
	switch field {
	case "email", "first_name", "last_name", "city", "region", "country", "postal_code", "gender":
		return "c." + field
	case "birth_year":
		return "coalesce(CAST(c.birth_year AS TEXT), '')"
	}
	return ""
}

// JobCountsBy counts a job's deliveries (Total, Sent, Received) grouped by their consumer's
// value of field: a field a selection may name (country, gender, format, birth_year,
// interests, attr.NAME, …). It keeps the limit values with the most deliveries. On
// interests, a consumer counts under each of her interests; an unknown value is "". Returns
// an error for a field that is not a consumer field or a limit below 1.
func (s *Store) JobCountsBy(ctx context.Context, jobKey int64, field string, limit int) (map[string]postoffice.JobCounts, error) {
	if limit < 1 {
		return nil, fmt.Errorf("counts by %s: limit %d, want at least 1", field, limit)
	}
	expr, args := reportColumn(field), []any{jobKey}
	switch {
	case field == "format":
		return s.jobCountsByFormat(ctx, jobKey, limit)
	case expr != "":
	case field == "interests":
		return s.jobCountsByInterest(ctx, jobKey, limit)
	case strings.HasPrefix(field, "attr."):
		name := strings.TrimPrefix(field, "attr.")
		if name == "" || strings.ContainsAny(name, `"\:`) {
			return nil, fmt.Errorf("counts by %q: not an attribute name", field)
		}
		// The job's issuer's own attribute, or else the program's: never another issuer's.
		var slug string
		if err := s.read.QueryRowContext(ctx, `SELECT i.slug FROM jobs j JOIN issuers i ON i.id = j.issuer_id
			WHERE j.key = ?`, jobKey).Scan(&slug); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		if s.engine == enginePostgres {
			expr = `coalesce(c.attributes::jsonb ->> ?3::text, c.attributes::jsonb ->> ?2::text, '')`
			args = append(args, name, rewards.IssuerAttribute(slug, name))
			break
		}
		expr = `coalesce(CAST(coalesce(json_extract(c.attributes, ?3), json_extract(c.attributes, ?2)) AS TEXT), '')`
		args = append(args, `$."`+name+`"`, `$."`+rewards.IssuerAttribute(slug, name)+`"`)
	default:
		return nil, fmt.Errorf("counts by %q: not a consumer field", field)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT `+expr+` AS v, count(*), sum(d.sent), sum(d.received)
		FROM deliveries d JOIN consumers c ON c.id = d.consumer_id
		WHERE d.job_key = ?1 GROUP BY v ORDER BY count(*) DESC, v LIMIT `+fmt.Sprint(limit), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]postoffice.JobCounts{}
	for rows.Next() {
		var v string
		var c postoffice.JobCounts
		if err := rows.Scan(&v, &c.Total, &c.Sent, &c.Received); err != nil {
			return nil, err
		}
		out[v] = c
	}
	return out, rows.Err()
}

// jobCountsByFormat counts by the two formats in one pass: a GROUP BY would sort every
// delivery of the job to find the two groups.
func (s *Store) jobCountsByFormat(ctx context.Context, jobKey int64, limit int) (map[string]postoffice.JobCounts, error) {
	var all, html postoffice.JobCounts
	err := s.read.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(d.sent), 0), coalesce(sum(d.received), 0),
			count(*) FILTER (WHERE c.format = 'html'), count(*) FILTER (WHERE c.format = 'html' AND d.sent = 1),
			count(*) FILTER (WHERE c.format = 'html' AND d.received = 1)
		FROM deliveries d JOIN consumers c ON c.id = d.consumer_id WHERE d.job_key = ?`, jobKey).
		Scan(&all.Total, &all.Sent, &all.Received, &html.Total, &html.Sent, &html.Received)
	if err != nil {
		return nil, err
	}
	text := postoffice.JobCounts{Total: all.Total - html.Total, Sent: all.Sent - html.Sent, Received: all.Received - html.Received}
	return topCounts(map[string]postoffice.JobCounts{string(rewards.FormatText): text, string(rewards.FormatHTML): html}, limit), nil
}

// jobCountsByInterest groups by each interest: SQL groups by the stored ';golf;tennis;'
// (consumers share few combinations), and the combinations are split here.
func (s *Store) jobCountsByInterest(ctx context.Context, jobKey int64, limit int) (map[string]postoffice.JobCounts, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT c.interests, count(*), sum(d.sent), sum(d.received)
		FROM deliveries d JOIN consumers c ON c.id = d.consumer_id
		WHERE d.job_key = ? GROUP BY c.interests`, jobKey)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	all := map[string]postoffice.JobCounts{}
	for rows.Next() {
		var interests string
		var c postoffice.JobCounts
		if err := rows.Scan(&interests, &c.Total, &c.Sent, &c.Received); err != nil {
			return nil, err
		}
		items := splitInterests(interests)
		if len(items) == 0 {
			items = []string{""}
		}
		for _, it := range items {
			a := all[it]
			a.Total, a.Sent, a.Received = a.Total+c.Total, a.Sent+c.Sent, a.Received+c.Received
			all[it] = a
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return topCounts(all, limit), nil
}

// topCounts keeps the limit values with the most deliveries (ties by value), dropping those
// with none.
func topCounts(all map[string]postoffice.JobCounts, limit int) map[string]postoffice.JobCounts {
	names := make([]string, 0, len(all))
	for k, c := range all {
		if c.Total > 0 {
			names = append(names, k)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if all[names[i]].Total != all[names[j]].Total {
			return all[names[i]].Total > all[names[j]].Total
		}
		return names[i] < names[j]
	})
	out := make(map[string]postoffice.JobCounts, min(limit, len(names)))
	for _, k := range names[:min(limit, len(names))] {
		out[k] = all[k]
	}
	return out
}

// ExportDeliveries calls fn for each delivery of a job, in consumer order, with its
// consumer (address, names and format) and the points the job accrued to her. It reads
// from one cursor, so memory stays flat however many deliveries the job has; fn must not
// keep the pointers it is given. Returns fn's error, which stops the walk, or the
// database's.
func (s *Store) ExportDeliveries(ctx context.Context, jobKey int64, fn func(d *postoffice.Delivery, c *rewards.Consumer, points int64) error) error {
	// Ordered by consumer_id, the order of the (job_key, consumer_id) index: no sort. The
	// points come by the accruals' consumer index; a consumer has few accruals.
	rows, err := s.read.QueryContext(ctx, `SELECT d.id, d.consumer_id, d.sent, d.received, d.retry_count, d.rejected,
			d.failed, coalesce(d.sent_at, 0), coalesce(d.received_at, 0), d.last_error,
			c.email, c.first_name, c.last_name, c.format,
			(SELECT coalesce(sum(a.points), 0) FROM accruals a WHERE a.consumer_id = d.consumer_id AND a.job_key = d.job_key)
		FROM deliveries d JOIN consumers c ON c.id = d.consumer_id
		WHERE d.job_key = ? ORDER BY d.consumer_id`, jobKey)
	if err != nil {
		return err
	}
	defer rows.Close()
	d := postoffice.Delivery{JobKey: jobKey}
	var c rewards.Consumer
	for rows.Next() {
		var sentAt, receivedAt, points int64
		var format string
		if err := rows.Scan(&d.ID, &d.ConsumerID, &d.Sent, &d.Received, &d.RetryCount, &d.Rejected, &d.Failed,
			&sentAt, &receivedAt, &d.LastError, &c.Email, &c.FirstName, &c.LastName, &format, &points); err != nil {
			return err
		}
		d.SentAt, d.ReceivedAt = fromMS(sentAt), fromMS(receivedAt)
		c.ID, c.Format = d.ConsumerID, rewards.Format(format)
		if err := fn(&d, &c, points); err != nil {
			return err
		}
	}
	return rows.Err()
}
