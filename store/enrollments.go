package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"pointpost/rewards"
)

// enrollmentData is the enrollments.data column: the sign-up form, less the e-mail address
// (a column of its own). Named keys keep rows written by one version readable by the next.
type enrollmentData struct {
	FirstName  string         `json:"first_name,omitempty"`
	LastName   string         `json:"last_name,omitempty"`
	City       string         `json:"city,omitempty"`
	Region     string         `json:"region,omitempty"`
	Country    string         `json:"country,omitempty"`
	PostalCode string         `json:"postal_code,omitempty"`
	BirthYear  int            `json:"birth_year,omitempty"`
	Gender     string         `json:"gender,omitempty"`
	Interests  []string       `json:"interests,omitempty"`
	Format     rewards.Format `json:"format,omitempty"`
}

// CreateEnrollment records a pending sign-up (double opt-in) for the consumer c describes,
// and returns its id for the confirmation link. Only the form's fields are kept: c's id,
// status, balance and attributes are ignored. Returns an error if c's e-mail address is not
// valid (see rewards.ValidEmail).
func (s *Store) CreateEnrollment(ctx context.Context, c *rewards.Consumer) (int64, error) {
	email, err := rewards.ValidEmail(c.Email)
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(enrollmentData{FirstName: c.FirstName, LastName: c.LastName, City: c.City,
		Region: c.Region, Country: c.Country, PostalCode: c.PostalCode, BirthYear: c.BirthYear, Gender: c.Gender,
		Interests: rewards.NormalizeInterests(c.Interests), Format: c.Format})
	if err != nil {
		return 0, err
	}
	var id int64
	err = s.write.QueryRowContext(ctx, `INSERT INTO enrollments (email, data, created_at) VALUES (?, ?, ?) RETURNING id`,
		email, string(data), ms(s.Now())).Scan(&id)
	return id, err
}

// ConfirmEnrollment confirms a pending sign-up: the consumer it describes is written with
// UpsertConsumers, so an address that is a consumer already is updated with the values given
// and keeps its status and balance (an unsubscribed address stays unsubscribed), and the
// enrollment's confirmed_at is set. A sign-up confirmed before is not written again, so a
// second click on the link changes nothing. Returns the consumer as stored, rewards.ErrNotFound if
// there is no such enrollment.
//
// The upsert and the mark are two transactions: if the process stops between them, the next
// confirmation upserts the same values again, which changes nothing.
func (s *Store) ConfirmEnrollment(ctx context.Context, id int64) (*rewards.Consumer, error) {
	var email, data string
	var confirmed sql.NullInt64
	err := s.write.QueryRowContext(ctx, `SELECT email, data, confirmed_at FROM enrollments WHERE id = ?`, id).
		Scan(&email, &data, &confirmed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("enrollment %d: %w", id, rewards.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if confirmed.Valid {
		return s.ConsumerByEmail(ctx, email)
	}
	var d enrollmentData
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		return nil, fmt.Errorf("enrollment %d data: %w", id, err)
	}
	c := rewards.Consumer{Email: email, FirstName: d.FirstName, LastName: d.LastName, City: d.City,
		Region: d.Region, Country: d.Country, PostalCode: d.PostalCode, BirthYear: d.BirthYear, Gender: d.Gender,
		Interests: d.Interests, Format: d.Format}
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{c}); err != nil {
		return nil, fmt.Errorf("enrollment %d: %w", id, err)
	}
	if _, err := s.exec(ctx, `UPDATE enrollments SET confirmed_at = ? WHERE id = ? AND confirmed_at IS NULL`,
		ms(s.Now()), id); err != nil {
		return nil, err
	}
	return s.ConsumerByEmail(ctx, email)
}
