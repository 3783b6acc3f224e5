package store

import (
	"context"
	"fmt"

	"pointpost/postoffice"
)

// RegisterMailServers makes sure the mail server rows 1..n exist, named and with the relay
// they use, so jobs can reference them (216f).
func (s *Store) RegisterMailServers(ctx context.Context, n int, relay string) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for id := 1; id <= n; id++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO mail_servers (id, name, relay) VALUES (?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET relay = excluded.relay, state = 'idle'`,
			id, fmt.Sprintf("mail-%d", id), relay); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// ReportMailServers saves the latest status of the mail servers for other processes and pages.
func (s *Store) ReportMailServers(ctx context.Context, statuses []postoffice.MailServerStatus) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, st := range statuses {
		if _, err := tx.ExecContext(ctx, `UPDATE mail_servers SET state = ?, note = ?, queue = ?, rate = ?, sent = ?,
			retried = ?, rejected = ?, reported_at = ? WHERE id = ?`,
			st.State, st.Note, st.Queue, st.Rate, st.Sent, st.Retried, st.Rejected, ms(st.ReportedAt), st.ID); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// MailServers returns the last reported status of every mail server.
func (s *Store) MailServers(ctx context.Context) ([]postoffice.MailServerStatus, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, name, relay, state, note, queue, rate, sent, retried, rejected,
		reported_at FROM mail_servers ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []postoffice.MailServerStatus
	for rows.Next() {
		var st postoffice.MailServerStatus
		var reported int64
		if err := rows.Scan(&st.ID, &st.Name, &st.Relay, &st.State, &st.Note, &st.Queue, &st.Rate, &st.Sent, &st.Retried,
			&st.Rejected, &reported); err != nil {
			return nil, err
		}
		st.ReportedAt = fromMS(reported)
		out = append(out, st)
	}
	return out, rows.Err()
}
