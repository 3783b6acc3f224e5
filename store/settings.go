package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"pointpost/rewards"
)

// Setting returns a stored setting, or "" when it was never set.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.read.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// SetSetting stores a setting.
func (s *Store) SetSetting(ctx context.Context, name, value string) error {
	_, err := s.exec(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	return err
}

// TokenSecrets returns every token key version with its secret, and the newest version.
// On a database without any it creates version 1 from newSecret, so the key is made once,
// on first start, and kept.
func (s *Store) TokenSecrets(ctx context.Context, newSecret func() []byte) (current int, secrets map[int][]byte, err error) {
	if _, err := s.exec(ctx, `INSERT INTO token_keys (version, secret, created_at)
		SELECT 1, ?, ? WHERE NOT EXISTS (SELECT 1 FROM token_keys)`, newSecret(), ms(s.Now())); err != nil {
		return 0, nil, err
	}
	rows, err := s.write.QueryContext(ctx, `SELECT version, secret FROM token_keys ORDER BY version`)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	secrets = map[int][]byte{}
	for rows.Next() {
		var v int
		var secret []byte
		if err := rows.Scan(&v, &secret); err != nil {
			return 0, nil, err
		}
		secrets[v] = secret
		current = v
	}
	return current, secrets, rows.Err()
}

// SetSettings stores several settings in one transaction, so a form saves all or nothing.
func (s *Store) SetSettings(ctx context.Context, values map[string]string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for name, value := range values {
			if _, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
				ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value); err != nil {
				return err
			}
		}
		return nil
	})
}

// CreateIssuer adds iss and sets its ID. Returns rewards.ErrExists if its slug is taken.
func (s *Store) CreateIssuer(ctx context.Context, iss *rewards.Issuer, now time.Time) error {
	err := s.write.QueryRowContext(ctx, `INSERT INTO issuers (slug, name, created_at) VALUES (?, ?, ?) RETURNING id`,
		iss.Slug, iss.Name, ms(now)).Scan(&iss.ID)
	if isUniqueViolation(err) {
		return fmt.Errorf("issuer %s: %w", iss.Slug, rewards.ErrExists)
	}
	return err
}

// IssuerPoints returns an issuer's points budget (0: no cap) and the points its rules have
// awarded so far. Returns rewards.ErrNotFound if there is no such issuer.
func (s *Store) IssuerPoints(ctx context.Context, issuerID int64) (budget, spent int64, err error) {
	err = s.read.QueryRowContext(ctx, `SELECT budget, spent FROM issuers WHERE id = ?`, issuerID).Scan(&budget, &spent)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("issuer %d: %w", issuerID, rewards.ErrNotFound)
	}
	return budget, spent, err
}

// The first operator's setup link: the hash of its token and when it expires (Unix ms), kept
// as settings. A new link replaces the last one.
const (
	settingSetupHash    = "setup_token_hash"
	settingSetupExpires = "setup_token_expires"
)

// SetSetupToken stores the hash of the setup link's token, valid until expires; an earlier
// setup link stops working.
func (s *Store) SetSetupToken(ctx context.Context, tokenHash []byte, expires time.Time) error {
	return s.SetSettings(ctx, map[string]string{
		settingSetupHash:    hex.EncodeToString(tokenHash),
		settingSetupExpires: strconv.FormatInt(ms(expires), 10),
	})
}

// checkSetupToken returns rewards.ErrNotFound unless tokenHash is the setup token's, unexpired at
// now, and no operator exists yet.
func checkSetupToken(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, tokenHash []byte, now time.Time) error {
	var hash, expires string
	var operators int
	err := q.QueryRowContext(ctx, `SELECT
			coalesce((SELECT value FROM settings WHERE name = ?), ''),
			coalesce((SELECT value FROM settings WHERE name = ?), ''),
			(SELECT count(*) FROM users WHERE role = 'operator' AND disabled = 0)`,
		settingSetupHash, settingSetupExpires).Scan(&hash, &expires, &operators)
	if err != nil {
		return err
	}
	exp, _ := strconv.ParseInt(expires, 10, 64)
	want, _ := hex.DecodeString(hash)
	if operators > 0 || len(want) == 0 || subtle.ConstantTimeCompare(want, tokenHash) != 1 || ms(now) >= exp {
		return fmt.Errorf("setup link: %w", rewards.ErrNotFound)
	}
	return nil
}

// CheckSetupToken reports whether the setup link with tokenHash may still make the first
// operator. Returns rewards.ErrNotFound if the link is unknown, replaced or expired, or an operator
// exists.
func (s *Store) CheckSetupToken(ctx context.Context, tokenHash []byte, now time.Time) error {
	return checkSetupToken(ctx, s.read, tokenHash, now)
}

// CreateFirstOperator spends the setup link with tokenHash to add u as the first operator
// with the bcrypt passwordHash, in one transaction, and sets u's ID. Returns rewards.ErrNotFound as
// CheckSetupToken does, and rewards.ErrExists if u's e-mail address is taken.
func (s *Store) CreateFirstOperator(ctx context.Context, tokenHash []byte, u *rewards.User, passwordHash string, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := checkSetupToken(ctx, tx, tokenHash, now); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO users (email, name, role, password_hash, created_at)
			VALUES (?, ?, 'operator', ?, ?) RETURNING id`, u.Email, u.Name, passwordHash, ms(now)).Scan(&u.ID)
		if isUniqueViolation(err) {
			return fmt.Errorf("user %s: %w", u.Email, rewards.ErrExists)
		}
		if err != nil {
			return err
		}
		u.Role, u.IssuerID, u.IssuerSlug, u.HasPassword, u.CreatedAt = rewards.RoleOperator, 0, "", true, now
		_, err = tx.ExecContext(ctx, `DELETE FROM settings WHERE name IN (?, ?)`, settingSetupHash, settingSetupExpires)
		return err
	})
}
