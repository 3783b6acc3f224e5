package store

import (
	"context"
	"database/sql"
	"errors"
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
	_, err := s.write.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	return err
}

// TokenSecrets returns every token key version with its secret, and the newest version.
// On a database without any it creates version 1 from newSecret, so the key is made once,
// on first start, and kept.
func (s *Store) TokenSecrets(ctx context.Context, newSecret func() []byte) (current int, secrets map[int][]byte, err error) {
	if _, err := s.write.ExecContext(ctx, `INSERT INTO token_keys (version, secret, created_at)
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
