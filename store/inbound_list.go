package store

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"pointpost/postoffice"
)

// InboundPage lists inbound messages newest first: at most limit of them, of kind only
// (any kind when ""), only the unverified ones when unverifiedOnly, and only those recorded
// before message beforeID (from the newest when 0), so that the last ID of a page is the
// cursor of the next. Returns an error if limit is not positive.
func (s *Store) InboundPage(ctx context.Context, kind string, unverifiedOnly bool, beforeID int64, limit int) ([]postoffice.InboundEntry, error) {
	if limit < 1 {
		return nil, errors.New("inbound page: limit must be positive")
	}
	var conds []string
	var args []any
	if kind != "" {
		conds, args = append(conds, "m.kind = ?"), append(args, kind)
	}
	if unverifiedOnly {
		conds = append(conds, "substr(m.detail, 1, ?) = ?")
		args = append(args, utf8.RuneCountInString(UnverifiedPrefix), UnverifiedPrefix)
	}
	if beforeID > 0 {
		// A range on the rowid: the page is read from the cursor down, not from the top.
		conds, args = append(conds, "m.id < ?"), append(args, beforeID)
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}
	rows, err := s.read.QueryContext(ctx, `SELECT m.id, m.kind, coalesce(m.job_key, 0), coalesce(j.name, ''),
			coalesce(m.consumer_id, 0), coalesce(c.email, ''), m.mail_from, m.rcpt_to, m.subject, m.detail, m.created_at
		FROM inbound_messages m
		LEFT JOIN jobs j ON j.key = m.job_key
		LEFT JOIN consumers c ON c.id = m.consumer_id
		`+where+` ORDER BY m.id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []postoffice.InboundEntry
	for rows.Next() {
		var m postoffice.InboundEntry
		var created int64
		if err := rows.Scan(&m.ID, &m.Kind, &m.JobKey, &m.JobName, &m.ConsumerID, &m.ConsumerEmail,
			&m.From, &m.To, &m.Subject, &m.Detail, &created); err != nil {
			return nil, err
		}
		m.CreatedAt = fromMS(created)
		m.Unverified = strings.HasPrefix(m.Detail, UnverifiedPrefix)
		out = append(out, m)
	}
	return out, rows.Err()
}
