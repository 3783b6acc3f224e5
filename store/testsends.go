package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"pointpost/rewards"
)

// ApproveTestAddress adds email (validated by rewards.ValidEmail) to the addresses test sends
// may go to, or updates its note. Returns an error for an address that is not one.
func (s *Store) ApproveTestAddress(ctx context.Context, email, note, by string) error {
	email, err := rewards.ValidEmail(email)
	if err != nil {
		return err
	}
	if err := rewards.CheckName(note); err != nil {
		return fmt.Errorf("note %w", err)
	}
	_, err = s.exec(ctx, `INSERT INTO test_addresses (email, note, approved_by, created_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET note = excluded.note`,
		email, strings.TrimSpace(note), by, ms(s.Now()))
	return err
}

// RemoveTestAddress takes email off the approved test addresses. Returns rewards.ErrNotFound if it
// was not on them.
func (s *Store) RemoveTestAddress(ctx context.Context, email string) error {
	res, err := s.exec(ctx, `DELETE FROM test_addresses WHERE email = ?`, strings.TrimSpace(email))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("test address %s: %w", email, rewards.ErrNotFound)
	}
	return nil
}

// TestAddresses returns the approved test addresses in address order.
func (s *Store) TestAddresses(ctx context.Context) ([]rewards.TestAddress, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT email, note, approved_by, created_at FROM test_addresses ORDER BY email`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.TestAddress
	for rows.Next() {
		var a rewards.TestAddress
		var created int64
		if err := rows.Scan(&a.Email, &a.Note, &a.ApprovedBy, &created); err != nil {
			return nil, err
		}
		a.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// TestRecipient says what a test send to email needs to know: whether it may go there (an
// approved test address, or the address of an enabled toolbox user of the issuer issuerID,
// of any issuer when issuerID is 0), and the status of the consumer with that address, ""
// when there is none.
func (s *Store) TestRecipient(ctx context.Context, email string, issuerID int64) (allowed bool, status rewards.ConsumerStatus, err error) {
	email = strings.ToLower(strings.TrimSpace(email))
	var st sql.NullString
	err = s.read.QueryRowContext(ctx, `SELECT
			EXISTS (SELECT 1 FROM test_addresses WHERE email = ?1)
			OR EXISTS (SELECT 1 FROM users WHERE email = ?1 AND disabled = 0 AND (?2 = 0 OR issuer_id = ?2)),
			(SELECT status FROM consumers WHERE email = ?1)`, email, issuerID).Scan(&allowed, &st)
	if err != nil {
		return false, "", err
	}
	return allowed, rewards.ConsumerStatus(st.String), nil
}

// RecordTestSend records a test of job jobKey sent by user userID to email at at, unless the
// user has sent limit tests in the window before at: then it records nothing and returns
// false with the time the oldest of them leaves the window.
func (s *Store) RecordTestSend(ctx context.Context, userID, jobKey int64, email string, at time.Time, limit int, window time.Duration) (ok bool, retryAt time.Time, err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return false, time.Time{}, err
	}
	defer tx.Rollback()
	var n int
	var oldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT count(*), min(created_at) FROM test_sends WHERE user_id = ? AND created_at > ?`,
		userID, ms(at.Add(-window))).Scan(&n, &oldest); err != nil {
		return false, time.Time{}, err
	}
	if n >= limit {
		return false, time.UnixMilli(oldest.Int64).Add(window).UTC(), nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO test_sends (user_id, job_key, email, created_at) VALUES (?, ?, ?, ?)`,
		userID, jobKey, strings.ToLower(strings.TrimSpace(email)), ms(at)); err != nil {
		return false, time.Time{}, err
	}
	if err := tx.Commit(); err != nil {
		return false, time.Time{}, err
	}
	return true, time.Time{}, nil
}
