package store

import (
	"context"
	"fmt"
	"io"
	"strings"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// The fields the operators' consumer search looks in, and how it matches.
const (
	SearchAny   = ""      // e-mail, name or city
	SearchEmail = "email" // the address; a prefix search walks the e-mail index
	SearchName  = "name"  // first name, last name, or "first last"
	SearchCity  = "city"

	MatchPrefix   = "prefix"
	MatchContains = "contains"
)

// consumerSearchWhere builds the WHERE expression of a consumer search. Addresses are stored
// lower-cased, so an e-mail prefix is a range over the unique index on email; names and
// cities are compared with LIKE (case-insensitive for ASCII) and read the table. Returns an
// error for a field or match it does not know.
func (s *Store) consumerSearchWhere(field, match, text string, status rewards.ConsumerStatus) (string, []any, error) {
	var conds []string
	var args []any
	if status != "" {
		switch status {
		case rewards.StatusActive, rewards.StatusUnsubscribed, rewards.StatusBounced, rewards.StatusSuppressed:
		default:
			return "", nil, fmt.Errorf("status %q is not active, unsubscribed, bounced or suppressed", status)
		}
		conds, args = append(conds, "status = ?"), append(args, string(status))
	}
	if match != MatchPrefix && match != MatchContains {
		return "", nil, fmt.Errorf("match %q is not %s or %s", match, MatchPrefix, MatchContains)
	}
	text = strings.TrimSpace(text)
	if text != "" {
		email := strings.ToLower(text)
		pattern := likeEscape(text) + "%"
		if match == MatchContains {
			pattern = "%" + pattern
		}
		var emailCond string
		var emailArgs []any
		if match == MatchPrefix {
			// Every string with the prefix sorts at or after it and before prefix+U+10FFFF.
			emailCond, emailArgs = "(email >= ? AND email < ?)", []any{email, email + "\U0010FFFF"}
		} else {
			emailCond, emailArgs = s.either("instr(email, ?) > 0", "strpos(email, ?) > 0"), []any{email}
		}
		// SQLite's LIKE ignores the case of ASCII letters; PostgreSQL's ILIKE does so for all.
		like := s.either("LIKE", "ILIKE")
		nameCond := `(first_name ` + like + ` ? ESCAPE '\' OR last_name ` + like + ` ? ESCAPE '\' OR (first_name || ' ' || last_name) ` + like + ` ? ESCAPE '\')`
		nameArgs := []any{pattern, pattern, pattern}
		cityCond, cityArgs := `city `+like+` ? ESCAPE '\'`, []any{pattern}
		switch field {
		case SearchEmail:
			conds, args = append(conds, emailCond), append(args, emailArgs...)
		case SearchName:
			conds, args = append(conds, nameCond), append(args, nameArgs...)
		case SearchCity:
			conds, args = append(conds, cityCond), append(args, cityArgs...)
		case SearchAny:
			conds = append(conds, "("+emailCond+" OR "+nameCond+" OR "+cityCond+")")
			args = append(append(append(args, emailArgs...), nameArgs...), cityArgs...)
		default:
			return "", nil, fmt.Errorf("search field %q is not email, name or city", field)
		}
	}
	if len(conds) == 0 {
		return "TRUE", nil, nil
	}
	return strings.Join(conds, " AND "), args, nil
}

// likeEscape makes s match itself in a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// SearchConsumers returns up to limit consumers matching text in field (SearchAny,
// SearchEmail, SearchName, SearchCity) by match (MatchPrefix or MatchContains), and with the
// status unless it is empty; newest first, only those with an ID below beforeID unless it is
// 0 (keyset paging: pass the last ID of a page to get the next). An empty text matches
// everyone. Returns an error for an unknown field, match or status.
func (s *Store) SearchConsumers(ctx context.Context, field, match, text string, status rewards.ConsumerStatus,
	beforeID int64, limit int) ([]rewards.Consumer, error) {
	where, args, err := s.consumerSearchWhere(field, match, text, status)
	if err != nil {
		return nil, err
	}
	if beforeID > 0 {
		where += " AND id < ?"
		args = append(args, beforeID)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT `+consumerColumns+`
		FROM consumers c WHERE `+where+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.Consumer
	for rows.Next() {
		var c rewards.Consumer
		if err := scanConsumer(rows, &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CountConsumersMatching counts the consumers SearchConsumers finds for the same filter, on
// all its pages. Returns an error for an unknown field, match or status.
func (s *Store) CountConsumersMatching(ctx context.Context, field, match, text string, status rewards.ConsumerStatus) (int, error) {
	where, args, err := s.consumerSearchWhere(field, match, text, status)
	if err != nil {
		return 0, err
	}
	var n int
	err = s.read.QueryRowContext(ctx, `SELECT count(*) FROM consumers WHERE `+where, args...).Scan(&n)
	return n, err
}

// ImportConsumerFile is ImportConsumersCSV for callers outside the store: it returns how many
// consumers were inserted and updated (the bad records go to report). Returns the errors
// ImportConsumersCSV does; what was written before one stays written and counted.
func (s *Store) ImportConsumerFile(ctx context.Context, r io.Reader, report func(rewards.RowError)) (inserted, updated int, err error) {
	res, err := s.ImportConsumersCSV(ctx, r, report)
	return res.Inserted, res.Updated, err
}

// OutboxBefore lists up to limit captured messages with an ID below beforeID (all when it is
// 0), newest first, without their data.
func (s *Store) OutboxBefore(ctx context.Context, beforeID int64, limit int) ([]postoffice.OutboxMessage, error) {
	if beforeID <= 0 {
		beforeID = 1<<63 - 1
	}
	rows, err := s.read.QueryContext(ctx, `SELECT id, coalesce(delivery_id, 0), mail_from, rcpt_to, subject, created_at
		FROM outbox WHERE id < ? ORDER BY id DESC LIMIT ?`, beforeID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []postoffice.OutboxMessage
	for rows.Next() {
		var m postoffice.OutboxMessage
		var created int64
		if err := rows.Scan(&m.ID, &m.DeliveryID, &m.From, &m.To, &m.Subject, &created); err != nil {
			return nil, err
		}
		m.CreatedAt = fromMS(created)
		out = append(out, m)
	}
	return out, rows.Err()
}
