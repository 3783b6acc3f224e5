package store

import (
	"context"
	"strings"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// The JSON API's reads: jobs page by page, whether an issuer may see a consumer, and a job's
// acknowledgement statistics.

// APIJobs lists up to limit jobs of issuerID (every issuer's when issuerID is 0), newest
// first, with keys below before (from the newest when before is 0).
func (s *Store) APIJobs(ctx context.Context, issuerID, before int64, limit int) ([]*postoffice.Job, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs j JOIN issuers i ON i.id = j.issuer_id
		WHERE (?1 = 0 OR j.issuer_id = ?1) AND (?2 = 0 OR j.key < ?2)
		ORDER BY j.key DESC LIMIT ?3`, issuerID, before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*postoffice.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// APIConsumerVisible reports whether the issuer issuerID may read the consumer consumerID:
// one of its jobs was sent to her (or she acknowledged one). Consumers are shared by every
// issuer; one that never heard from an issuer is none of its business.
func (s *Store) APIConsumerVisible(ctx context.Context, consumerID, issuerID int64) (bool, error) {
	var ok bool
	err := s.read.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries d JOIN jobs j ON j.key = d.job_key
		WHERE d.consumer_id = ? AND j.issuer_id = ? AND (d.sent = 1 OR d.received = 1))`, consumerID, issuerID).Scan(&ok)
	return ok, err
}

// APIConsumerIDs returns the IDs of the consumers with the given addresses (compared trimmed
// and lower-cased), by address; an address no consumer has is left out.
func (s *Store) APIConsumerIDs(ctx context.Context, emails []string) (map[string]int64, error) {
	out := make(map[string]int64, len(emails))
	// Chunks stay far below SQLite's 32766 parameters.
	for len(emails) > 0 {
		chunk := emails[:min(len(emails), 1000)]
		emails = emails[len(chunk):]
		args := make([]any, len(chunk))
		for i, e := range chunk {
			args[i] = strings.ToLower(strings.TrimSpace(e))
		}
		rows, err := s.read.QueryContext(ctx, `SELECT id, email FROM consumers WHERE email IN (?`+
			strings.Repeat(`, ?`, len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id int64
			var email string
			if err := rows.Scan(&id, &email); err != nil {
				rows.Close()
				return nil, err
			}
			out[email] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// APIJobCountsByFormat counts a job's deliveries by the format the consumer reads (claim 3)
// today; a format no delivery has is absent.
func (s *Store) APIJobCountsByFormat(ctx context.Context, key int64) (map[rewards.Format]postoffice.JobCounts, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT c.format, count(*),
			coalesce(sum(d.sent), 0),
			coalesce(sum(d.sent = 0 AND d.rejected = 0 AND d.failed = 0), 0),
			coalesce(sum(d.sent = 0 AND d.rejected = 0 AND d.failed = 0 AND d.retry_count > 0), 0),
			coalesce(sum(d.rejected), 0), coalesce(sum(d.failed), 0), coalesce(sum(d.received), 0)
		FROM deliveries d JOIN consumers c ON c.id = d.consumer_id
		WHERE d.job_key = ? GROUP BY c.format`, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[rewards.Format]postoffice.JobCounts{}
	for rows.Next() {
		var f string
		var c postoffice.JobCounts
		if err := rows.Scan(&f, &c.Total, &c.Sent, &c.Pending, &c.Retrying, &c.Rejected, &c.Failed, &c.Received); err != nil {
			return nil, err
		}
		out[rewards.Format(f)] = c
	}
	return out, rows.Err()
}

// APIJobAcksByChannel counts, for each channel, the consumers who acknowledged a job's
// invitation that way (one who replied and clicked counts under both).
func (s *Store) APIJobAcksByChannel(ctx context.Context, key int64) (map[postoffice.Channel]int, error) {
	// Through the received deliveries and the acknowledgements' consumer index: the
	// acknowledgements table has no index on the job.
	rows, err := s.read.QueryContext(ctx, `SELECT a.channel, count(DISTINCT a.consumer_id)
		FROM deliveries d JOIN acknowledgements a ON a.consumer_id = d.consumer_id AND a.job_key = d.job_key
		WHERE d.job_key = ? AND d.received = 1 GROUP BY a.channel`, key)
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

// APIJobPoints sums the points a job's acknowledgements were awarded (its accruals), how many
// of them settlement has posted to the consumers' accounts, and how many consumers earned.
func (s *Store) APIJobPoints(ctx context.Context, key int64) (awarded, settled int64, consumers int, err error) {
	// Through job_rules, so the accruals' (rule_id, job_key, ...) key finds them.
	err = s.read.QueryRowContext(ctx, `SELECT coalesce(sum(a.points), 0),
			coalesce(sum(iif(a.posted_at IS NULL, 0, a.points)), 0), count(DISTINCT a.consumer_id)
		FROM job_rules jr JOIN accruals a ON a.rule_id = jr.rule_id AND a.job_key = jr.job_key
		WHERE jr.job_key = ?`, key).Scan(&awarded, &settled, &consumers)
	return awarded, settled, consumers, err
}
