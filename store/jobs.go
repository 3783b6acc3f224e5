package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// EnsureIssuer returns the issuer with slug, creating it with name if it does not exist.
func (s *Store) EnsureIssuer(ctx context.Context, slug, name string) (rewards.Issuer, error) {
	if name == "" {
		name = slug
	}
	iss := rewards.Issuer{Slug: slug}
	err := s.write.QueryRowContext(ctx, `INSERT INTO issuers (slug, name, created_at) VALUES (?, ?, ?)
		ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug RETURNING id, name`,
		slug, name, ms(s.Now())).Scan(&iss.ID, &iss.Name)
	return iss, err
}

// Issuers lists every issuer by slug.
func (s *Store) Issuers(ctx context.Context) ([]rewards.Issuer, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, slug, name FROM issuers ORDER BY slug`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.Issuer
	for rows.Next() {
		var iss rewards.Issuer
		if err := rows.Scan(&iss.ID, &iss.Slug, &iss.Name); err != nil {
			return nil, err
		}
		out = append(out, iss)
	}
	return out, rows.Err()
}

// CreateJob stores a job with its text and HTML messages (either may be nil) and its award
// rules in one transaction, and sets job.Key, the message IDs and the new rules' IDs.
// Returns a *postoffice.FieldError for a pinned mail server or an existing rule that is not
// there (or not the issuer's).
func (s *Store) CreateJob(ctx context.Context, job *postoffice.Job, text, html *postoffice.Message, rules postoffice.JobRules) error {
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	args, err := json.Marshal(job.SelectionArgs)
	if err != nil {
		return fmt.Errorf("selection args: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if job.MailServerID != 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM mail_servers WHERE id = ?`, job.MailServerID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return &postoffice.FieldError{Field: "mail_server", Reason: fmt.Sprintf("there is no mail server %d", job.MailServerID)}
		}
	}
	for _, m := range []*postoffice.Message{text, html} {
		if m == nil {
			continue
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO messages (type, subject, body) VALUES (?, ?, ?) RETURNING id`,
			string(m.Type), m.Subject, m.Body).Scan(&m.ID); err != nil {
			return err
		}
	}
	if text != nil {
		job.TextMessageID = text.ID
	}
	if html != nil {
		job.HTMLMessageID = html.ID
	}
	now := s.Now()
	job.CreatedAt, job.UpdatedAt = now, now
	if job.State == "" {
		job.State = postoffice.JobDraft
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO jobs (issuer_id, name, state, start_at, stop_at, client_count,
			suspended, mail_server_id, text_message_id, html_message_id, selection, selection_sql, selection_args,
			created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING key`,
		job.IssuerID, job.Name, string(job.State), ms(job.Start), ms(job.Stop), job.ClientCount,
		job.Suspended, nullID(int64(job.MailServerID)), nullID(job.TextMessageID), nullID(job.HTMLMessageID),
		job.Selection, job.SelectionSQL, string(args), ms(now), ms(now)).Scan(&job.Key)
	if err != nil {
		return err
	}
	if err := s.linkNewJobRules(ctx, tx, job, rules); err != nil {
		return err
	}
	return tx.Commit()
}

// linkNewJobRules makes a new job's rules and links them, with the existing ones, to it.
func (s *Store) linkNewJobRules(ctx context.Context, tx *sql.Tx, job *postoffice.Job, rules postoffice.JobRules) error {
	ids := append([]int64(nil), rules.Existing...)
	for i, id := range rules.Existing {
		var issuer int64
		err := tx.QueryRowContext(ctx, `SELECT issuer_id FROM award_rules WHERE id = ? AND retired = 0`, id).Scan(&issuer)
		if errors.Is(err, sql.ErrNoRows) || err == nil && issuer != job.IssuerID {
			return &postoffice.FieldError{Field: fmt.Sprintf("rule_ids[%d]", i),
				Reason: fmt.Sprintf("rule %d is not an active rule of this issuer", id)}
		}
		if err != nil {
			return err
		}
	}
	for i, r := range rules.New {
		r.IssuerID = job.IssuerID
		if err := r.Validate(); err != nil {
			name, reason, _ := strings.Cut(err.Error(), ": ")
			return &postoffice.FieldError{Field: fmt.Sprintf("rules[%d].%s", i, name), Reason: reason}
		}
		if err := s.insertRule(ctx, tx, r); err != nil {
			return err
		}
		ids = append(ids, r.ID)
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `INSERT INTO job_rules (job_key, rule_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, job.Key, id); err != nil {
			return err
		}
	}
	return nil
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

const jobColumns = `j.key, j.issuer_id, i.slug, i.name, j.name, j.state, j.start_at, j.stop_at, j.client_count, j.suspended,
	coalesce(j.mail_server_id, 0), coalesce(j.text_message_id, 0), coalesce(j.html_message_id, 0),
	j.selection, j.selection_sql, j.selection_args, j.selected, j.select_cursor, j.selected_all, j.done_reason,
	j.created_at, j.updated_at, j.route, j.assign_reason, j.budget_override_by, j.budget_override_at`

func scanJob(row interface{ Scan(...any) error }) (*postoffice.Job, error) {
	var j postoffice.Job
	var state, args string
	var start, stop, created, updated, overrideAt int64
	err := row.Scan(&j.Key, &j.IssuerID, &j.IssuerSlug, &j.IssuerName, &j.Name, &state, &start, &stop, &j.ClientCount, &j.Suspended,
		&j.MailServerID, &j.TextMessageID, &j.HTMLMessageID,
		&j.Selection, &j.SelectionSQL, &args, &j.Selected, &j.SelectCursor, &j.SelectedAll, &j.DoneReason,
		&created, &updated, &j.Route, &j.AssignReason, &j.BudgetOverride.By, &overrideAt)
	if err != nil {
		return nil, err
	}
	j.State = postoffice.JobState(state)
	j.Start, j.Stop, j.CreatedAt, j.UpdatedAt = fromMS(start), fromMS(stop), fromMS(created), fromMS(updated)
	if overrideAt != 0 {
		j.BudgetOverride.At = fromMS(overrideAt)
	}
	if err := json.Unmarshal([]byte(args), &j.SelectionArgs); err != nil {
		return nil, fmt.Errorf("job %d selection args: %w", j.Key, err)
	}
	return &j, nil
}

// Job returns the job with key. Returns rewards.ErrNotFound if there is none.
func (s *Store) Job(ctx context.Context, key int64) (*postoffice.Job, error) {
	j, err := scanJob(s.read.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs j JOIN issuers i ON i.id = j.issuer_id WHERE j.key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %d: %w", key, rewards.ErrNotFound)
	}
	return j, err
}

// Jobs lists jobs, newest first; with states given, only jobs in those states.
func (s *Store) Jobs(ctx context.Context, states ...postoffice.JobState) ([]*postoffice.Job, error) {
	q := `SELECT ` + jobColumns + ` FROM jobs j JOIN issuers i ON i.id = j.issuer_id`
	var args []any
	if len(states) > 0 {
		q += ` WHERE j.state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
		for _, st := range states {
			args = append(args, string(st))
		}
	}
	return scanJobs(s.read.QueryContext(ctx, q+` ORDER BY j.key DESC`, args...))
}

// scanJobs reads every job of a query of jobColumns.
func scanJobs(rows *sql.Rows, err error) ([]*postoffice.Job, error) {
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

// scanIDs reads a query's one column of ids.
func scanIDs(rows *sql.Rows, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Messages returns the message entries of a job: text and HTML, nil where it has none.
func (s *Store) Messages(ctx context.Context, job *postoffice.Job) (text, html *postoffice.Message, err error) {
	load := func(id int64) (*postoffice.Message, error) {
		if id == 0 {
			return nil, nil
		}
		m := &postoffice.Message{ID: id}
		var typ string
		err := s.read.QueryRowContext(ctx, `SELECT type, subject, body FROM messages WHERE id = ?`, id).Scan(&typ, &m.Subject, &m.Body)
		m.Type = postoffice.MessageType(typ)
		return m, err
	}
	if text, err = load(job.TextMessageID); err != nil {
		return nil, nil, err
	}
	html, err = load(job.HTMLMessageID)
	return text, html, err
}

// SetJobState moves a job to state, keeping reason when it is done.
func (s *Store) SetJobState(ctx context.Context, key int64, state postoffice.JobState, reason string) error {
	return s.updateJob(ctx, key, `state = ?, done_reason = ?`, string(state), reason)
}

// ScheduleJob moves the draft job key to scheduled in one statement, with the budget
// override when it has one. Returns rewards.ErrNotFound if there is no job key and
// rewards.ErrConflict (wrapped) if it is no longer a draft.
func (s *Store) ScheduleJob(ctx context.Context, key int64, override postoffice.BudgetOverride) error {
	var at int64
	if override.By != "" {
		at = ms(override.At)
	}
	s.rulesGen.Add(1)
	defer s.rulesGen.Add(1)
	res, err := s.exec(ctx, `UPDATE jobs SET state = ?, done_reason = '', budget_override_by = ?, budget_override_at = ?, updated_at = ?
		WHERE key = ? AND state = ?`, string(postoffice.JobScheduled), override.By, at, ms(s.Now()), key, string(postoffice.JobDraft))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	job, err := s.Job(ctx, key)
	if err != nil {
		return err
	}
	return fmt.Errorf("job %d is %s: only a draft can be scheduled: %w", key, job.State, rewards.ErrConflict)
}

// SetJobSuspended sets or clears a job's suspend flag (216e).
func (s *Store) SetJobSuspended(ctx context.Context, key int64, suspended bool) error {
	return s.updateJob(ctx, key, `suspended = ?`, suspended)
}

// AssignJob writes the mail server that will send a job (216f), with no reason.
func (s *Store) AssignJob(ctx context.Context, key int64, mailServerID int) error {
	return s.RecordAssignment(ctx, key, postoffice.Assignment{MailServerID: mailServerID})
}

// RecordAssignment writes the mail server that will send a job (216f) and why.
func (s *Store) RecordAssignment(ctx context.Context, key int64, a postoffice.Assignment) error {
	return s.updateJob(ctx, key, `mail_server_id = ?, assign_reason = ?`, a.MailServerID, a.Reason)
}

func (s *Store) updateJob(ctx context.Context, key int64, set string, args ...any) error {
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	args = append(args, ms(s.Now()), key)
	res, err := s.exec(ctx, `UPDATE jobs SET `+set+`, updated_at = ? WHERE key = ?`, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("job %d: %w", key, rewards.ErrNotFound)
	}
	return nil
}

// SelectBatch materialises up to limit more deliveries of a job from the consumers past its
// selection cursor. It never selects past the client count nor any consumer who is not
// active. The selection runs as CheckSelection's does, on the selections' own pool under
// the guard and the time limit, so the writer, which acknowledgements wait for, is held
// only to insert what it found: in one transaction with the cursor's advance, so a crash
// never selects a consumer twice nor skips one, and with the consumers' status checked
// again. Returns how many it added and whether the selection is complete; an error wrapping
// postoffice.ErrSelectionFailed for a selection refused or stopped by the time limit, one
// wrapping postoffice.ErrTooManySelections when no connection came free in time.
func (s *Store) SelectBatch(ctx context.Context, job *postoffice.Job, raw bool, limit int) (added int, complete bool, err error) {
	if err := s.refuseRawPG(ctx, raw); err != nil {
		return 0, false, fmt.Errorf("%w: %w", postoffice.ErrSelectionFailed, err)
	}
	expr, err := selectionExpr(job.SelectionSQL)
	if err != nil {
		return 0, false, err
	}
	var selected int
	var cursor int64
	var all bool
	if err := s.read.QueryRowContext(ctx, `SELECT selected, select_cursor, selected_all FROM jobs WHERE key = ?`, job.Key).
		Scan(&selected, &cursor, &all); err != nil {
		return 0, false, err
	}
	if all {
		return 0, true, nil
	}
	want := min(limit, job.ClientCount-selected)
	var ids []int64
	if want > 0 {
		query := `SELECT id FROM consumers WHERE status = 'active' AND id > ? AND ` + expr + ` ORDER BY id LIMIT ?`
		args := append(append([]any{cursor}, job.SelectionArgs...), want)
		err := s.runSelection(ctx, raw, func(run context.Context, conn *sql.Conn) (err error) {
			ids, err = scanIDs(conn.QueryContext(run, query, args...))
			return err
		})
		switch {
		case errors.Is(err, ErrSelectionRefused):
			return 0, false, fmt.Errorf("%w: %w", postoffice.ErrSelectionFailed, err)
		case err != nil:
			return 0, false, fmt.Errorf("selection: %w", err)
		}
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback()
	var nowSelected int
	var nowCursor int64
	if err := tx.QueryRowContext(ctx, `SELECT selected, select_cursor, selected_all FROM jobs WHERE key = ?`, job.Key).
		Scan(&nowSelected, &nowCursor, &all); err != nil {
		return 0, false, err
	}
	if all || nowSelected != selected || nowCursor != cursor {
		return 0, all, nil // another run moved the cursor meanwhile: the next batch goes on from it
	}
	now := ms(s.Now())
	if len(ids) > 0 {
		list, err := json.Marshal(ids)
		if err != nil {
			return 0, false, err
		}
		res, err := tx.ExecContext(ctx, s.either(`INSERT OR IGNORE INTO deliveries (job_key, consumer_id, updated_at)
			SELECT ?, c.id, ? FROM json_each(?) j JOIN consumers c ON c.id = j.value
			WHERE c.status = 'active' ORDER BY c.id`, `INSERT INTO deliveries (job_key, consumer_id, updated_at)
			SELECT ?::bigint, c.id, ?::bigint FROM json_array_elements_text(?::json) j JOIN consumers c ON c.id = j.value::bigint
			WHERE c.status = 'active' ORDER BY c.id
			ON CONFLICT (job_key, consumer_id) DO NOTHING`), job.Key, now, string(list))
		if err != nil {
			return 0, false, fmt.Errorf("selection: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, false, err
		}
		added, cursor = int(n), ids[len(ids)-1]
	}
	complete = want <= 0 || len(ids) < want || selected+added >= job.ClientCount
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET selected = selected + ?, select_cursor = ?, selected_all = ?, updated_at = ? WHERE key = ?`,
		added, cursor, complete, now, job.Key); err != nil {
		return 0, false, err
	}
	return added, complete, tx.Commit()
}

// JobCounts counts a job's deliveries by state.
func (s *Store) JobCounts(ctx context.Context, key int64) (postoffice.JobCounts, error) {
	var c postoffice.JobCounts
	// CASE, not a sum of the comparison: PostgreSQL does not add booleans.
	err := s.read.QueryRowContext(ctx, `SELECT count(*),
			coalesce(sum(sent), 0),
			coalesce(sum(CASE WHEN sent = 0 AND rejected = 0 AND failed = 0 THEN 1 ELSE 0 END), 0),
			coalesce(sum(CASE WHEN sent = 0 AND rejected = 0 AND failed = 0 AND retry_count > 0 THEN 1 ELSE 0 END), 0),
			coalesce(sum(rejected), 0), coalesce(sum(failed), 0), coalesce(sum(received), 0)
		FROM deliveries WHERE job_key = ?`, key).
		Scan(&c.Total, &c.Sent, &c.Pending, &c.Retrying, &c.Rejected, &c.Failed, &c.Received)
	return c, err
}

// PendingCount counts a job's deliveries still to send, from the pending index alone.
func (s *Store) PendingCount(ctx context.Context, key int64) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM deliveries
		WHERE job_key = ? AND sent = 0 AND rejected = 0 AND failed = 0`, key).Scan(&n)
	return n, err
}
