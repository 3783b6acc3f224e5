package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"pointpost/rewards"
)

const ruleColumns = `r.id, r.issuer_id, r.description, r.type, r.points, r.frequency, r.period_ms, r.max_times,
	r.start_at, r.stop_at, r.issuer_url, r.success_url, r.budget, r.retired`

func scanRule(row interface{ Scan(...any) error }) (rewards.AwardRule, error) {
	var r rewards.AwardRule
	var typ, freq string
	var period, start, stop int64
	err := row.Scan(&r.ID, &r.IssuerID, &r.Description, &typ, &r.Points, &freq, &period, &r.MaxTimes,
		&start, &stop, &r.IssuerURL, &r.SuccessURL, &r.Budget, &r.Retired)
	r.Type, r.Frequency = rewards.RuleType(typ), rewards.Frequency(freq)
	r.Period = time.Duration(period) * time.Millisecond
	r.Start, r.Stop = fromMS(start), fromMS(stop)
	return r, err
}

// CreateRule stores a new award rule of r.IssuerID and sets r.ID. A new rule is never
// retired. Returns the error of r.Validate for a bad field, and rewards.ErrNotFound if the issuer
// does not exist.
func (s *Store) CreateRule(ctx context.Context, r *rewards.AwardRule) error {
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	if err := r.Validate(); err != nil {
		return err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := issuerExists(ctx, tx, r.IssuerID); err != nil {
		return err
	}
	if err := s.insertRule(ctx, tx, r); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	r.Retired = false
	return nil
}

// insertRule writes a new rule in tx and sets its ID.
func (s *Store) insertRule(ctx context.Context, tx *sql.Tx, r *rewards.AwardRule) error {
	now := ms(s.Now())
	return tx.QueryRowContext(ctx, `INSERT INTO award_rules (issuer_id, description, type, points, frequency,
			period_ms, max_times, start_at, stop_at, issuer_url, success_url, budget, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.IssuerID, r.Description, string(r.Type), r.Points, string(r.Frequency), r.Period.Milliseconds(),
		r.MaxTimes, ms(r.Start), ms(r.Stop), r.IssuerURL, r.SuccessURL, r.Budget, now, now).Scan(&r.ID)
}

func issuerExists(ctx context.Context, tx *sql.Tx, id int64) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM issuers WHERE id = ?`, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("issuer %d: %w", id, rewards.ErrNotFound)
	}
	return nil
}

// UpdateRule rewrites the fields of rule r.ID of issuer r.IssuerID. It does not change
// whether the rule is retired (RetireRule does; r.Retired is set from the table), nor what it
// has awarded: a change applies to acknowledgements from now on. Returns the error of
// r.Validate for a bad field, and rewards.ErrNotFound if the issuer has no such rule.
func (s *Store) UpdateRule(ctx context.Context, r *rewards.AwardRule) error {
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	if err := r.Validate(); err != nil {
		return err
	}
	err := s.write.QueryRowContext(ctx, `UPDATE award_rules SET description = ?, type = ?, points = ?, frequency = ?,
			period_ms = ?, max_times = ?, start_at = ?, stop_at = ?, issuer_url = ?, success_url = ?, budget = ?,
			updated_at = ?
		WHERE id = ? AND issuer_id = ? RETURNING retired`,
		r.Description, string(r.Type), r.Points, string(r.Frequency), r.Period.Milliseconds(), r.MaxTimes,
		ms(r.Start), ms(r.Stop), r.IssuerURL, r.SuccessURL, r.Budget, ms(s.Now()), r.ID, r.IssuerID).Scan(&r.Retired)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("rule %d of issuer %d: %w", r.ID, r.IssuerID, rewards.ErrNotFound)
	}
	return err
}

// RetireRule retires a rule of an issuer: it stays linked to its jobs and in their history,
// and awards nothing more. Retiring a retired rule does nothing. Returns rewards.ErrNotFound if the
// issuer has no such rule.
func (s *Store) RetireRule(ctx context.Context, issuerID, ruleID int64) error {
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	res, err := s.exec(ctx, `UPDATE award_rules SET retired = 1, updated_at = ? WHERE id = ? AND issuer_id = ?`,
		ms(s.Now()), ruleID, issuerID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("rule %d of issuer %d: %w", ruleID, issuerID, rewards.ErrNotFound)
	}
	return nil
}

// Rule returns the award rule with id. Returns rewards.ErrNotFound if there is none.
func (s *Store) Rule(ctx context.Context, id int64) (*rewards.AwardRule, error) {
	r, err := scanRule(s.read.QueryRowContext(ctx, `SELECT `+ruleColumns+` FROM award_rules r WHERE r.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("rule %d: %w", id, rewards.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Rules lists an issuer's award rules, retired ones too, oldest first.
func (s *Store) Rules(ctx context.Context, issuerID int64) ([]rewards.AwardRule, error) {
	return s.queryRules(ctx, `SELECT `+ruleColumns+` FROM award_rules r WHERE r.issuer_id = ? ORDER BY r.id`, issuerID)
}

// JobRules lists the award rules linked to a job, oldest first; acknowledgements of the job
// earn under these.
func (s *Store) JobRules(ctx context.Context, jobKey int64) ([]rewards.AwardRule, error) {
	return s.queryRules(ctx, `SELECT `+ruleColumns+` FROM award_rules r JOIN job_rules jr ON jr.rule_id = r.id
		WHERE jr.job_key = ? ORDER BY r.id`, jobKey)
}

func (s *Store) queryRules(ctx context.Context, query string, args ...any) ([]rewards.AwardRule, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.AwardRule
	for rows.Next() {
		r, err := scanRule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// LinkJobRules adds rules to those a job's acknowledgements earn under; a rule already linked
// stays linked once. All or none are linked. Returns rewards.ErrNotFound if the job or a rule does not
// exist, and an error naming the rule if it belongs to another issuer than the job's or is
// retired.
func (s *Store) LinkJobRules(ctx context.Context, jobKey int64, ruleIDs []int64) error {
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var issuerID int64
	err = tx.QueryRowContext(ctx, `SELECT issuer_id FROM jobs WHERE key = ?`, jobKey).Scan(&issuerID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("job %d: %w", jobKey, rewards.ErrNotFound)
	}
	if err != nil {
		return err
	}
	for _, id := range ruleIDs {
		var owner int64
		var retired bool
		err := tx.QueryRowContext(ctx, `SELECT issuer_id, retired FROM award_rules WHERE id = ?`, id).Scan(&owner, &retired)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("rule %d: %w", id, rewards.ErrNotFound)
		case err != nil:
			return err
		case owner != issuerID:
			return fmt.Errorf("rule %d belongs to another issuer than job %d's", id, jobKey)
		case retired:
			return fmt.Errorf("rule %d is retired", id)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO job_rules (job_key, rule_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, jobKey, id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// SetIssuerBudget caps the points an issuer's rules may award in all; 0 removes the cap.
// Points already awarded stay. Returns rewards.ErrNotFound if there is no such issuer, and an error
// naming the field for a budget outside 0 to rewards.MaxBudget.
func (s *Store) SetIssuerBudget(ctx context.Context, issuerID, budget int64) error {
	if err := rewards.CheckBudget("budget", budget); err != nil {
		return err
	}
	s.rulesGen.Add(1) // before: a batch starting now reloads; after: one that started during the write
	defer s.rulesGen.Add(1)
	res, err := s.exec(ctx, `UPDATE issuers SET budget = ? WHERE id = ?`, budget, issuerID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("issuer %d: %w", issuerID, rewards.ErrNotFound)
	}
	return nil
}

// RuleSpent returns the points accrued under a rule, posted or not: the running total the
// accruals' triggers keep (migration 0003). Returns rewards.ErrNotFound if there is no such rule.
func (s *Store) RuleSpent(ctx context.Context, ruleID int64) (int64, error) {
	var spent int64
	err := s.read.QueryRowContext(ctx, `SELECT spent FROM award_rules WHERE id = ?`, ruleID).Scan(&spent)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("rule %d: %w", ruleID, rewards.ErrNotFound)
	}
	return spent, err
}
