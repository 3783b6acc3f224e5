package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"pointpost/rewards"
)

// ACME's cache, for serve's autocert.Manager: what autocert keeps (the account key, each
// certificate with its private key, the HTTP-01 challenges in flight) under its own keys, in
// the database every process opens. The root adapts these to autocert.Cache, mapping
// rewards.ErrNotFound to autocert.ErrCacheMiss: the store does not import autocert, which
// would bring net/http and the ACME client into every program that opens a database.

// The bounds of what the cache keeps. autocert's keys are a DNS name (at most 253 bytes) or a
// challenge token with a short suffix, and its entries a few kilobytes of PEM: anything
// larger is a mistake, refused with a clear error rather than stored.
const (
	acmeKeyMax  = 512
	acmeDataMax = 1 << 20
)

// ACMEGet returns the entry under key. Returns an error wrapping rewards.ErrNotFound when
// there is none, and any other error (a database out of reach) as it is: only a miss may
// make autocert order a new certificate.
func (s *Store) ACMEGet(ctx context.Context, key string) ([]byte, error) {
	if err := checkACMEKey(key); err != nil {
		return nil, err
	}
	var data []byte
	err := s.read.QueryRowContext(ctx, `SELECT data FROM acme_cache WHERE key = ?`, key).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("ACME cache %q: %w", key, rewards.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("ACME cache %q: %w", key, unavailable(err))
	}
	return data, nil
}

// ACMEPut keeps data under key, replacing what was there.
func (s *Store) ACMEPut(ctx context.Context, key string, data []byte) error {
	if err := checkACMEKey(key); err != nil {
		return err
	}
	if len(data) > acmeDataMax {
		return rewards.Errorf(rewards.EINVALID, "ACME cache %q: %d bytes, at most %d", key, len(data), acmeDataMax)
	}
	if data == nil {
		data = []byte{} // NOT NULL: an empty entry is still an entry
	}
	if _, err := s.exec(ctx, `INSERT INTO acme_cache (key, data, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
		key, data, ms(s.Now())); err != nil {
		return fmt.Errorf("ACME cache %q: %w", key, err)
	}
	return nil
}

// ACMEDelete removes the entry under key; none there is no error.
func (s *Store) ACMEDelete(ctx context.Context, key string) error {
	if err := checkACMEKey(key); err != nil {
		return err
	}
	if _, err := s.exec(ctx, `DELETE FROM acme_cache WHERE key = ?`, key); err != nil {
		return fmt.Errorf("ACME cache %q: %w", key, err)
	}
	return nil
}

func checkACMEKey(key string) error {
	switch {
	case key == "":
		return rewards.Errorf(rewards.EINVALID, "ACME cache: an empty key")
	case len(key) > acmeKeyMax:
		return rewards.Errorf(rewards.EINVALID, "ACME cache key %.40q…: %d bytes, at most %d", key, len(key), acmeKeyMax)
	case !utf8.ValidString(key) || strings.ContainsRune(key, 0):
		// PostgreSQL's text holds neither; SQLite would, and the engines would differ.
		return rewards.Errorf(rewards.EINVALID, "ACME cache key %q: not UTF-8 text", key)
	}
	return nil
}
