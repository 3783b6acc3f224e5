package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// What the campaign editor needs beyond the post office's own calls: rewriting a draft,
// a sample consumer for the preview, and the budget figures of the cost preview.

// UpdateDraftJob rewrites the draft job job.Key with job's fields, its text and HTML messages
// (either may be nil: a message the job had and job no longer has is deleted) and its award
// rules, which replace the ones linked before, in one transaction. job.State may be draft or
// scheduled ("save and schedule"). It sets the message IDs and the new rules' IDs.
//
// Returns rewards.ErrNotFound if there is no job job.Key, rewards.ErrConflict (wrapped) if it is no longer a
// draft, and a *postoffice.FieldError for a pinned mail server or an existing rule that is
// not there (or not the issuer's), as CreateJob does.
func (s *Store) UpdateDraftJob(ctx context.Context, job *postoffice.Job, text, html *postoffice.Message, rules postoffice.JobRules) error {
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	if job.State != postoffice.JobDraft && job.State != postoffice.JobScheduled {
		return fmt.Errorf("job %d: a draft can become scheduled, not %s", job.Key, job.State)
	}
	args, err := json.Marshal(job.SelectionArgs)
	if err != nil {
		return fmt.Errorf("selection args: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var state string
	var oldText, oldHTML sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT state, text_message_id, html_message_id FROM jobs WHERE key = ?`, job.Key).
		Scan(&state, &oldText, &oldHTML)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("job %d: %w", job.Key, rewards.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if state != string(postoffice.JobDraft) {
		return fmt.Errorf("job %d is %s: only a draft can be changed: %w", job.Key, state, rewards.ErrConflict)
	}
	if job.MailServerID != 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM mail_servers WHERE id = ?`, job.MailServerID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return &postoffice.FieldError{Field: "mail_server", Reason: fmt.Sprintf("there is no mail server %d", job.MailServerID)}
		}
	}
	var orphans []int64
	for _, m := range []struct {
		msg *postoffice.Message
		old sql.NullInt64
		dst *int64
	}{{text, oldText, &job.TextMessageID}, {html, oldHTML, &job.HTMLMessageID}} {
		switch {
		case m.msg != nil && m.old.Valid:
			m.msg.ID = m.old.Int64
			if _, err := tx.ExecContext(ctx, `UPDATE messages SET type = ?, subject = ?, body = ? WHERE id = ?`,
				string(m.msg.Type), m.msg.Subject, m.msg.Body, m.msg.ID); err != nil {
				return err
			}
		case m.msg != nil:
			if err := tx.QueryRowContext(ctx, `INSERT INTO messages (type, subject, body) VALUES (?, ?, ?) RETURNING id`,
				string(m.msg.Type), m.msg.Subject, m.msg.Body).Scan(&m.msg.ID); err != nil {
				return err
			}
		case m.old.Valid:
			orphans = append(orphans, m.old.Int64)
		}
		*m.dst = 0
		if m.msg != nil {
			*m.dst = m.msg.ID
		}
	}
	now := s.Now()
	job.UpdatedAt = now
	_, err = tx.ExecContext(ctx, `UPDATE jobs SET issuer_id = ?, name = ?, state = ?, start_at = ?, stop_at = ?,
			client_count = ?, mail_server_id = ?, text_message_id = ?, html_message_id = ?, selection = ?,
			selection_sql = ?, selection_args = ?, updated_at = ?
		WHERE key = ?`,
		job.IssuerID, job.Name, string(job.State), ms(job.Start), ms(job.Stop), job.ClientCount,
		nullID(int64(job.MailServerID)), nullID(job.TextMessageID), nullID(job.HTMLMessageID),
		job.Selection, job.SelectionSQL, string(args), ms(now), job.Key)
	if err != nil {
		return err
	}
	for _, id := range orphans {
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ?`, id); err != nil {
			return err
		}
	}
	// A draft has earned nothing, so its links can be replaced outright.
	if _, err := tx.ExecContext(ctx, `DELETE FROM job_rules WHERE job_key = ?`, job.Key); err != nil {
		return err
	}
	if err := s.linkNewJobRules(ctx, tx, job, rules); err != nil {
		return err
	}
	return tx.Commit()
}

// SampleConsumer returns the first active consumer, by id, that a compiled selection matches:
// the one the campaign editor previews messages for. It runs as CheckSelection does, and
// returns the same errors, or rewards.ErrNotFound if the selection matches no one.
func (s *Store) SampleConsumer(ctx context.Context, where string, args []any, raw bool) (*rewards.Consumer, error) {
	if err := s.refuseRawPG(ctx, raw); err != nil {
		return nil, err
	}
	expr, err := selectionExpr(where)
	if err != nil {
		return nil, err
	}
	release, err := s.selections.take(postoffice.SelectionOwner(ctx))
	if err != nil {
		return nil, err
	}
	defer release()
	var id int64
	err = s.runSelection(ctx, raw, func(run context.Context, conn *sql.Conn) error {
		stmt, err := conn.PrepareContext(run, `SELECT id FROM consumers WHERE status = 'active' AND `+expr+` ORDER BY id LIMIT 1`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		return stmt.QueryRowContext(run, args...).Scan(&id)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sample consumer: %w", rewards.ErrNotFound)
	case err == nil:
		return s.ConsumerByID(ctx, id)
	case errors.Is(err, ErrSelectionRefused), errors.Is(err, postoffice.ErrTooManySelections):
		return nil, err
	}
	return nil, fmt.Errorf("selection sql: %w", err)
}

// BudgetOfIssuer returns an issuer's points budget (0: no cap) and the points its rules have
// awarded so far. Returns rewards.ErrNotFound if there is no such issuer.
func (s *Store) BudgetOfIssuer(ctx context.Context, issuerID int64) (budget, spent int64, err error) {
	err = s.read.QueryRowContext(ctx, `SELECT budget, spent FROM issuers WHERE id = ?`, issuerID).Scan(&budget, &spent)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("issuer %d: %w", issuerID, rewards.ErrNotFound)
	}
	return budget, spent, err
}

// RulesSpent returns the points awarded so far under each award rule of an issuer, by rule
// ID; 0 means every issuer's rules.
func (s *Store) RulesSpent(ctx context.Context, issuerID int64) (map[int64]int64, error) {
	q, args := `SELECT id, spent FROM award_rules`, []any{}
	if issuerID != 0 {
		q, args = q+` WHERE issuer_id = ?`, append(args, issuerID)
	}
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var id, spent int64
		if err := rows.Scan(&id, &spent); err != nil {
			return nil, err
		}
		out[id] = spent
	}
	return out, rows.Err()
}
