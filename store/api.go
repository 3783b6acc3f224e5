package store

import (
	"context"
	"strings"

	"pointpost/postoffice"
)

// The JSON API's reads: jobs page by page and whether an issuer may see a consumer. A job's
// statistics are the report's reads (reports.go), so the API and the report page agree.

// APIJobs lists up to limit jobs of issuerID (every issuer's when issuerID is 0), newest
// first, with keys below before (from the newest when before is 0).
func (s *Store) APIJobs(ctx context.Context, issuerID, before int64, limit int) ([]*postoffice.Job, error) {
	return scanJobs(s.read.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs j JOIN issuers i ON i.id = j.issuer_id
		WHERE (?1 = 0 OR j.issuer_id = ?1) AND (?2 = 0 OR j.key < ?2)
		ORDER BY j.key DESC LIMIT ?3`, issuerID, before, limit))
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
