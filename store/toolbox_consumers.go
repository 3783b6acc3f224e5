package store

import (
	"context"
	"fmt"
	"io"
	"strings"

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

// UpdateConsumer writes every one of c's own fields (rewards.ConsumerFields) over those of the
// consumer with c.ID, as an operator edited them: an empty field is cleared, not kept.
// Status, balance and attributes stay. Returns rewards.ErrNotFound if there is no such
// consumer and rewards.ErrExists if c.Email is another consumer's.
func (s *Store) UpdateConsumer(ctx context.Context, c *rewards.Consumer) error {
	var birthYear any
	if c.BirthYear != 0 {
		birthYear = c.BirthYear
	}
	format := c.Format
	if format == "" {
		format = rewards.FormatText
	}
	res, err := s.exec(ctx, `UPDATE consumers SET email = ?, first_name = ?, last_name = ?, city = ?, region = ?,
			country = ?, postal_code = ?, birth_year = ?, gender = ?, interests = ?, format = ?, updated_at = ?
		WHERE id = ?`, strings.ToLower(strings.TrimSpace(c.Email)), c.FirstName, c.LastName, c.City, c.Region,
		c.Country, c.PostalCode, birthYear, c.Gender, interestsColumn(c.Interests), string(format), ms(s.Now()), c.ID)
	if isUniqueViolation(err) {
		return fmt.Errorf("consumer %s: %w", c.Email, rewards.ErrExists)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("consumer %d: %w", c.ID, rewards.ErrNotFound)
	}
	return nil
}

// SetStatusOfConsumersMatching gives status to every consumer the search (as
// SearchConsumers, all pages) finds and whose status is one of from, and returns how many
// changed. Returns an error for an unknown field, match or status.
func (s *Store) SetStatusOfConsumersMatching(ctx context.Context, field, match, text string, filter rewards.ConsumerStatus,
	status rewards.ConsumerStatus, from []rewards.ConsumerStatus) (int, error) {
	switch status {
	case rewards.StatusActive, rewards.StatusUnsubscribed, rewards.StatusBounced, rewards.StatusSuppressed:
	default:
		return 0, fmt.Errorf("consumer status %q is not active, unsubscribed, bounced or suppressed", status)
	}
	where, args, err := s.consumerSearchWhere(field, match, text, filter)
	if err != nil {
		return 0, err
	}
	if len(from) == 0 {
		return 0, nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(from)), ", ")
	for _, f := range from {
		args = append(args, string(f))
	}
	res, err := s.exec(ctx, `UPDATE consumers SET status = ?, updated_at = ? WHERE `+where+` AND status IN (`+marks+`)`,
		append([]any{string(status), ms(s.Now())}, args...)...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if n > 0 {
		s.statusGen.Add(1)
	}
	return int(n), err
}
