package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"pointpost/postoffice"
)

// deadRowsKept is how long the rows of a process that stopped reporting stay, for the pages.
const deadRowsKept = 24 * time.Hour

// RegisterMailServers makes sure the unnamed process's mail server rows 1..n exist, named
// and with the relay they use, so jobs can reference them (216f): what one process alone
// on its database registers in the tests.
func (s *Store) RegisterMailServers(ctx context.Context, n int, relay string) error {
	_, err := s.RegisterProcessMailServers(ctx, "", n, relay, time.Time{})
	return err
}

// RegisterProcessMailServers makes sure process has n mail server rows, slots 1..n, with
// the relay they use and reported at now, and returns their ids in slot order. A process
// started again under its name gets its rows back; a new name gets new rows, numbered past
// every other process's, so the mail servers of several processes on one database each
// have their own id (which jobs reference, 216f, and leases name). The rows of processes
// silent for a day that no job names are deleted.
func (s *Store) RegisterProcessMailServers(ctx context.Context, process string, n int, relay string, now time.Time) ([]int, error) {
	ids := make([]int, 0, n)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if s.engine == enginePostgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, lockMailServers); err != nil {
				return err
			}
		}
		if !now.IsZero() {
			// The rows of processes gone a day, which no job names, go: a process started
			// under a new name each time (HOSTNAME-PID) leaves its rows behind.
			if _, err := tx.ExecContext(ctx, `DELETE FROM mail_servers WHERE process <> '' AND reported_at < ?
				AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.mail_server_id = mail_servers.id)`, ms(now.Add(-deadRowsKept))); err != nil {
				return err
			}
		}
		for slot := 1; slot <= n; slot++ {
			var id int
			// WHERE true: SQLite's parser needs it between INSERT ... SELECT and ON CONFLICT.
			if err := tx.QueryRowContext(ctx, `INSERT INTO mail_servers (id, name, relay, process, slot, state, reported_at)
				SELECT coalesce(max(id), 0) + 1, 'mail-' || (coalesce(max(id), 0) + 1), ?, ?, ?, 'idle', ? FROM mail_servers WHERE true
				ON CONFLICT (process, slot) DO UPDATE SET relay = excluded.relay, state = 'idle', reported_at = excluded.reported_at
				RETURNING id`, relay, process, slot, ms(now)).Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// ReportMailServers saves the latest status of the mail servers for other processes and
// pages: each one's heartbeat (reported_at). A status with Leases set extends the leases its
// server holds to then, so deliveries still on their way stay its own while it is alive.
func (s *Store) ReportMailServers(ctx context.Context, statuses []postoffice.MailServerStatus) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, st := range statuses {
			jobs, err := json.Marshal(st.Jobs)
			if err != nil {
				return err
			}
			if st.Jobs == nil {
				jobs = []byte("[]")
			}
			if _, err := tx.ExecContext(ctx, `UPDATE mail_servers SET state = ?, note = ?, queue = ?, rate = ?, sent = ?,
				retried = ?, rejected = ?, reported_at = ?, jobs = ? WHERE id = ?`,
				st.State, st.Note, st.Queue, st.Rate, st.Sent, st.Retried, st.Rejected, ms(st.ReportedAt), string(jobs), st.ID); err != nil {
				return err
			}
			if !st.Leases.IsZero() {
				if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET lease_until = ? WHERE lease_owner = ? AND lease_until < ?`,
					ms(st.Leases), st.ID, ms(st.Leases)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// MailServers returns the last reported status of every mail server, of every process.
func (s *Store) MailServers(ctx context.Context) ([]postoffice.MailServerStatus, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, name, relay, state, note, queue, rate, sent, retried, rejected,
		reported_at, process, jobs FROM mail_servers ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []postoffice.MailServerStatus
	for rows.Next() {
		var st postoffice.MailServerStatus
		var reported int64
		var jobs string
		if err := rows.Scan(&st.ID, &st.Name, &st.Relay, &st.State, &st.Note, &st.Queue, &st.Rate, &st.Sent, &st.Retried,
			&st.Rejected, &reported, &st.Process, &jobs); err != nil {
			return nil, err
		}
		st.ReportedAt = fromMS(reported)
		if err := json.Unmarshal([]byte(jobs), &st.Jobs); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}
