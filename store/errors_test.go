package store

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// lockWriter holds the database's write lock from another connection until the test ends,
// and makes the store's writer give up waiting for it at once.
func lockWriter(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.SetBusyTimeout(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.ExecContext(ctx, "ROLLBACK") })
}

// TestDatabaseLockedIsUnavailable: a write that cannot take the lock, by a single statement
// or in a transaction, is a rewards.EUNAVAILABLE error that still reads as SQLite's busy
// error; a missing row stays ENOTFOUND.
func TestDatabaseLockedIsUnavailable(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.EnsureIssuer(ctx, "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTestAddress(ctx, "nobody@example.com"); rewards.ErrorCode(err) != rewards.ENOTFOUND || !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("removing a missing test address: %v (code %q), want ENOTFOUND", err, rewards.ErrorCode(err))
	}
	lockWriter(t, s)
	for name, write := range map[string]func() error{
		"statement":   func() error { return s.RemoveTestAddress(ctx, "nobody@example.com") },
		"transaction": func() error { return s.SaveRoute(ctx, postoffice.Route{Name: "r1", URL: "smtp://127.0.0.1:25"}) },
	} {
		err := write()
		if rewards.ErrorCode(err) != rewards.EUNAVAILABLE || !IsBusy(err) {
			t.Errorf("%s while locked: %v (code %q), want EUNAVAILABLE wrapping SQLite's busy error", name, err, rewards.ErrorCode(err))
		}
	}
}
