package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"pointpost/rewards"
)

const userColumns = `u.id, u.email, u.name, u.role, coalesce(u.issuer_id, 0), coalesce(i.slug, ''),
	u.disabled, u.password_hash != '', u.created_at, u.last_login_at`

func scanUser(row interface{ Scan(...any) error }, extra ...any) (*rewards.User, error) {
	var u rewards.User
	var role string
	var created, lastLogin int64
	dst := append([]any{&u.ID, &u.Email, &u.Name, &role, &u.IssuerID, &u.IssuerSlug, &u.Disabled,
		&u.HasPassword, &created, &lastLogin}, extra...)
	if err := row.Scan(dst...); err != nil {
		return nil, err
	}
	u.Role, u.CreatedAt, u.LastLoginAt = rewards.Role(role), fromMS(created), fromMS(lastLogin)
	return &u, nil
}

// CreateUser adds u (without a password) and sets its ID. Returns rewards.ErrExists if the e-mail
// address is taken, rewards.ErrNotFound if an issuer user names no issuer.
func (s *Store) CreateUser(ctx context.Context, u *rewards.User, now time.Time) error {
	var issuer any
	if u.Role == rewards.RoleIssuer {
		if u.IssuerID == 0 {
			return fmt.Errorf("issuer user %s: %w", u.Email, rewards.ErrNotFound)
		}
		issuer = u.IssuerID
	}
	err := s.write.QueryRowContext(ctx, `INSERT INTO users (email, name, role, issuer_id, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`, u.Email, u.Name, string(u.Role), issuer, ms(now)).Scan(&u.ID)
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("user %s: %w", u.Email, rewards.ErrExists)
		}
		if isForeignKeyViolation(err) {
			return fmt.Errorf("issuer %d: %w", u.IssuerID, rewards.ErrNotFound)
		}
		return unavailable(err)
	}
	u.CreatedAt = now
	return nil
}

// UserByEmail returns the user with that address and its bcrypt password hash (empty until
// a password is set). Returns rewards.ErrNotFound if there is none.
func (s *Store) UserByEmail(ctx context.Context, email string) (*rewards.User, string, error) {
	var hash string
	// SQLite's column compares without case (COLLATE NOCASE); PostgreSQL's index is on lower().
	u, err := scanUser(s.read.QueryRowContext(ctx, `SELECT `+userColumns+`, u.password_hash
		FROM users u LEFT JOIN issuers i ON i.id = u.issuer_id WHERE `+s.either("u.email = ?", "lower(u.email) = lower(?)"), email), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("user %s: %w", email, rewards.ErrNotFound)
	}
	return u, hash, err
}

// UserByID returns the user id. Returns rewards.ErrNotFound if there is none.
func (s *Store) UserByID(ctx context.Context, id int64) (*rewards.User, error) {
	u, err := scanUser(s.read.QueryRowContext(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN issuers i ON i.id = u.issuer_id WHERE u.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %d: %w", id, rewards.ErrNotFound)
	}
	return u, err
}

// Users lists the users of issuerID, or every user when issuerID is 0, operators first.
func (s *Store) Users(ctx context.Context, issuerID int64) ([]*rewards.User, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN issuers i ON i.id = u.issuer_id
		WHERE ?1 = 0 OR u.issuer_id = ?1 ORDER BY u.role DESC, i.slug, u.email`, issuerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*rewards.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CountOperators counts the operators who can sign in or have a link to set a password.
func (s *Store) CountOperators(ctx context.Context) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE role = 'operator' AND disabled = 0`).Scan(&n)
	return n, err
}

// SetPassword stores a user's new bcrypt hash and ends every session the user had, so a
// changed password locks out whoever knew the old one.
func (s *Store) SetPassword(ctx context.Context, userID int64, hash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %d: %w", userID, rewards.ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID)
		return err
	})
}

// SetUserDisabled disables or enables a user; disabling ends the user's sessions.
func (s *Store) SetUserDisabled(ctx context.Context, userID int64, disabled bool) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET disabled = ? WHERE id = ?`, disabled, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %d: %w", userID, rewards.ErrNotFound)
		}
		if disabled {
			_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID)
		}
		return err
	})
}

// RecordLogin notes a successful sign-in.
func (s *Store) RecordLogin(ctx context.Context, userID int64, now time.Time) error {
	_, err := s.exec(ctx, `UPDATE users SET last_login_at = ? WHERE id = ?`, ms(now), userID)
	return err
}

// CreateSession stores a new session under the hash of its cookie value.
func (s *Store) CreateSession(ctx context.Context, idHash []byte, userID int64, now time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO sessions (id_hash, user_id, created_at, seen_at)
		VALUES (?, ?, ?, ?)`, idHash, userID, ms(now), ms(now))
	return err
}

// SessionUser returns the user of the session with that hash, with when the session began
// and was last seen. Returns rewards.ErrNotFound if there is no such session.
func (s *Store) SessionUser(ctx context.Context, idHash []byte) (u *rewards.User, created, seen time.Time, err error) {
	var c, sn int64
	u, err = scanUser(s.read.QueryRowContext(ctx, `SELECT `+userColumns+`, s.created_at, s.seen_at
		FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN issuers i ON i.id = u.issuer_id
		WHERE s.id_hash = ?`, idHash), &c, &sn)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, time.Time{}, fmt.Errorf("session: %w", rewards.ErrNotFound)
	}
	return u, fromMS(c), fromMS(sn), err
}

// TouchSession records that the session was used at now.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, now time.Time) error {
	_, err := s.exec(ctx, `UPDATE sessions SET seen_at = ? WHERE id_hash = ?`, ms(now), idHash)
	return err
}

// DeleteSession ends one session; ending one that does not exist is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	_, err := s.exec(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash)
	return err
}

// DeleteExpiredSessions removes sessions begun before createdBefore or idle since seenBefore.
func (s *Store) DeleteExpiredSessions(ctx context.Context, createdBefore, seenBefore time.Time) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM sessions WHERE created_at < ? OR seen_at < ?`,
		ms(createdBefore), ms(seenBefore))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// CreateUserLink stores a one-time link (by the hash of its token) that lets userID set a
// password until expires.
func (s *Store) CreateUserLink(ctx context.Context, tokenHash []byte, userID int64, now, expires time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO user_links (token_hash, user_id, created_at, expires_at)
		VALUES (?, ?, ?, ?)`, tokenHash, userID, ms(now), ms(expires))
	return err
}

// UserLink returns the user a one-time link is for, if the link is unused and unexpired at
// now. Returns rewards.ErrNotFound otherwise.
func (s *Store) UserLink(ctx context.Context, tokenHash []byte, now time.Time) (*rewards.User, error) {
	u, err := scanUser(s.read.QueryRowContext(ctx, `SELECT `+userColumns+`
		FROM user_links l JOIN users u ON u.id = l.user_id LEFT JOIN issuers i ON i.id = u.issuer_id
		WHERE l.token_hash = ? AND l.used_at IS NULL AND l.expires_at > ? AND u.disabled = 0`, tokenHash, ms(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("link: %w", rewards.ErrNotFound)
	}
	return u, err
}

// UseUserLink sets the password of the link's user and spends the link, in one transaction,
// so a link sets a password once. Returns rewards.ErrNotFound if the link is used, expired or
// unknown, or its user is disabled.
func (s *Store) UseUserLink(ctx context.Context, tokenHash []byte, passwordHash string, now time.Time) (*rewards.User, error) {
	var userID int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE user_links SET used_at = ?1
			WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1
				AND user_id IN (SELECT id FROM users WHERE disabled = 0) RETURNING user_id`,
			ms(now), tokenHash).Scan(&userID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("link: %w", rewards.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, passwordHash, userID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.UserByID(ctx, userID)
}

// CreateAPIKey stores k under the hash of its secret and sets its ID. IssuerID 0 makes an
// operator's key.
func (s *Store) CreateAPIKey(ctx context.Context, k *rewards.APIKey, keyHash []byte, now time.Time) error {
	var issuer any
	if k.IssuerID != 0 {
		issuer = k.IssuerID
	}
	err := s.write.QueryRowContext(ctx, `INSERT INTO api_keys (name, prefix, key_hash, issuer_id, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`, k.Name, k.Prefix, keyHash, issuer, ms(now)).Scan(&k.ID)
	if err != nil {
		if isForeignKeyViolation(err) {
			return fmt.Errorf("issuer %d: %w", k.IssuerID, rewards.ErrNotFound)
		}
		return unavailable(err)
	}
	k.CreatedAt = now
	return nil
}

const apiKeyColumns = `k.id, k.name, k.prefix, coalesce(k.issuer_id, 0), coalesce(i.slug, ''),
	k.created_at, k.last_used_at, k.revoked_at`

func scanAPIKey(row interface{ Scan(...any) error }) (*rewards.APIKey, error) {
	var k rewards.APIKey
	var created, used, revoked int64
	if err := row.Scan(&k.ID, &k.Name, &k.Prefix, &k.IssuerID, &k.IssuerSlug, &created, &used, &revoked); err != nil {
		return nil, err
	}
	k.CreatedAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromMS(used), fromMS(revoked)
	return &k, nil
}

// APIKeyByHash returns the unrevoked key with that hash. Returns rewards.ErrNotFound otherwise.
func (s *Store) APIKeyByHash(ctx context.Context, keyHash []byte) (*rewards.APIKey, error) {
	k, err := scanAPIKey(s.read.QueryRowContext(ctx, `SELECT `+apiKeyColumns+`
		FROM api_keys k LEFT JOIN issuers i ON i.id = k.issuer_id
		WHERE k.key_hash = ? AND k.revoked_at = 0`, keyHash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("api key: %w", rewards.ErrNotFound)
	}
	return k, err
}

// APIKeys lists the keys of issuerID, or every key when issuerID is 0, newest first.
func (s *Store) APIKeys(ctx context.Context, issuerID int64) ([]*rewards.APIKey, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+apiKeyColumns+`
		FROM api_keys k LEFT JOIN issuers i ON i.id = k.issuer_id
		WHERE ?1 = 0 OR k.issuer_id = ?1 ORDER BY k.id DESC`, issuerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*rewards.APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey revokes key id if it belongs to issuerID (any key when issuerID is 0).
// Returns rewards.ErrNotFound if there is no such key.
func (s *Store) RevokeAPIKey(ctx context.Context, id, issuerID int64, now time.Time) error {
	res, err := s.exec(ctx, `UPDATE api_keys SET revoked_at = ?
		WHERE id = ? AND (?3 = 0 OR issuer_id = ?3) AND revoked_at = 0`, ms(now), id, issuerID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("api key %d: %w", id, rewards.ErrNotFound)
	}
	return nil
}

// TouchAPIKey records that key id was used at now.
func (s *Store) TouchAPIKey(ctx context.Context, id int64, now time.Time) error {
	_, err := s.exec(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ?`, ms(now), id)
	return err
}

// devicesPerUser is how many device cookies a user keeps: one per browser they sign in from.
const devicesPerUser = 20

// CreateDevice stores a device cookie of userID by the hash of its value. It forgets the
// user's cookies made before expiredBefore and, past devicesPerUser, the oldest.
func (s *Store) CreateDevice(ctx context.Context, tokenHash []byte, userID int64, now, expiredBefore time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_cookies (token_hash, user_id, created_at)
			VALUES (?, ?, ?)`, tokenHash, userID, ms(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM device_cookies WHERE user_id = ?1 AND (created_at < ?2
			OR token_hash NOT IN (SELECT token_hash FROM device_cookies WHERE user_id = ?1
				ORDER BY created_at DESC LIMIT ?3))`, userID, ms(expiredBefore), devicesPerUser)
		return err
	})
}

// ClaimDeviceAttempt counts a sign-in attempt to the account of email, made with the device
// cookie tokenHash, as failed before its password is checked, so that parallel guesses
// cannot pass the budget. It reports false, and counts nothing, when the cookie is unknown,
// made before expiredBefore, another account's, or has spent its budget of limit failures.
func (s *Store) ClaimDeviceAttempt(ctx context.Context, tokenHash []byte, email string, limit int, expiredBefore time.Time) (bool, error) {
	res, err := s.exec(ctx, `UPDATE device_cookies SET failures = failures + 1
		WHERE token_hash = ? AND failures < ? AND created_at >= ?
			AND user_id = (SELECT id FROM users WHERE `+s.either("email = ?", "lower(email) = lower(?)")+`)`, tokenHash, limit, ms(expiredBefore), email)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DeviceSignedIn clears the failures of a device cookie whose password proved right.
func (s *Store) DeviceSignedIn(ctx context.Context, tokenHash []byte) error {
	_, err := s.exec(ctx, `UPDATE device_cookies SET failures = 0 WHERE token_hash = ?`, tokenHash)
	return err
}

// ReleaseDeviceAttempt uncounts a claimed attempt whose password was never checked.
func (s *Store) ReleaseDeviceAttempt(ctx context.Context, tokenHash []byte) error {
	_, err := s.exec(ctx, `UPDATE device_cookies SET failures = `+s.either("max", "greatest")+`(failures - 1, 0)
		WHERE token_hash = ?`, tokenHash)
	return err
}

// DropSpentDevice deletes the device cookie if it has spent its budget of limit failures:
// from then on its browser is a stranger to the account's lock.
func (s *Store) DropSpentDevice(ctx context.Context, tokenHash []byte, limit int) error {
	_, err := s.exec(ctx, `DELETE FROM device_cookies WHERE token_hash = ? AND failures >= ?`,
		tokenHash, limit)
	return err
}
