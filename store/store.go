// Package store keeps pointpost's state in one SQLite file. It holds the only SQL in the
// program and implements the Store interfaces that postoffice, mailer and rewards declare.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is an open pointpost database: one writer connection, because SQLite has one writer
// at a time and a single connection turns lock waits into a Go queue, and a pool of readers.
type Store struct {
	write *sql.DB
	read  *sql.DB
	// sel is the selections' own small read pool: issuers' queries, however heavy, never take
	// the connections that consumer pages and acknowledgements read on.
	sel  *sql.DB
	path string
	// selectionLimit stops every selection that runs longer (selectionTimeLimit; tests
	// shorten it), and selections counts the ones running by issuer.
	selectionLimit time.Duration
	selections     selectionSlots
	// selectionHook, when a test sets it, runs while a selection holds its connection,
	// before its query.
	selectionHook func()
	// Now is the clock; tests replace it.
	Now func() time.Time
	// acks group-commits acknowledgements (groupcommit.go).
	acks ackCommitter
	// rulesGen changes with every write to jobs, award rules or issuer budgets, so the
	// acknowledgement committer knows when its cache of jobs' rules is stale.
	rulesGen atomic.Int64
	// statusGen changes, after the commit, with every write that may take a consumer out of
	// 'active' (StatusGeneration).
	statusGen atomic.Uint64
}

// Durability: synchronous=NORMAL in WAL mode. A commit survives a crash of the process (the
// WAL is written before COMMIT returns) and may be lost only on power failure or an OS crash
// before the next checkpoint. For delivery bookkeeping that costs at most a resend of the
// messages of the last moments, which the post office already tolerates for in-flight mail;
// in exchange commits cost no fsync, which the send rate needs. Writes that answer a person
// are made durable before the answer: acknowledgements by an fsync of the WAL after their
// group commit (groupcommit.go), redemptions and corrections at synchronous=FULL.
func dsn(file string, readOnly bool) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", "10000")
	q.Set("_txlock", "immediate")
	// Page caches are bounded so memory stays flat however large the campaign: 8 MB for
	// the writer, 2 MB for each reader.
	q.Set("_cache_size", "-8000")
	if readOnly {
		q.Set("mode", "ro")
		q.Set("_txlock", "deferred")
		q.Set("_cache_size", "-2000")
	}
	return "file:" + file + "?" + q.Encode()
}

// Open opens (creating if needed) the database at file and applies pending migrations.
func Open(ctx context.Context, file string) (*Store, error) {
	write, err := sql.Open("sqlite3", dsn(file, false))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	s := &Store{write: write, path: file, Now: time.Now, selectionLimit: selectionTimeLimit}
	if err := s.migrate(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("migrate %s: %w", file, err)
	}
	read, err := sql.Open("sqlite3", dsn(file, true))
	if err != nil {
		write.Close()
		return nil, err
	}
	read.SetMaxOpenConns(4)
	read.SetMaxIdleConns(4)
	s.read = read
	sel, err := sql.Open("sqlite3", dsn(file, true))
	if err != nil {
		read.Close()
		write.Close()
		return nil, err
	}
	sel.SetMaxOpenConns(selectionConns)
	sel.SetMaxIdleConns(selectionConns)
	s.sel = sel
	return s, nil
}

// Close closes the pools after checkpointing the WAL into the main file.
func (s *Store) Close() error {
	s.acks.close()
	_, _ = s.write.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	return errors.Join(s.sel.Close(), s.read.Close(), s.write.Close())
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := path.Base(name)
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", base)
		}
		if err := s.applyMigration(ctx, version, name); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, version int, name string) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var applied int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&applied); err != nil {
		return err
	}
	if applied > 0 {
		return nil
	}
	body, err := migrations.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		version, path.Base(name), time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// ms turns a time into the Unix milliseconds the tables keep; the zero time is 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is the inverse of ms.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// IsBusy reports whether err is SQLite saying the database is locked or full, the errors a
// caller may answer with "try again later".
func IsBusy(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrFull, sqlite3.ErrIoErr:
			return true
		}
	}
	return false
}

// tx runs fn in a write transaction, committing if it returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// SetBusyTimeout sets how long the writer waits for a lock another process holds before a
// write fails with "database is locked" (10 s from Open). The writer is one connection, so
// the pragma reaches every write; should database/sql replace that connection, the new one
// has Open's value.
func (s *Store) SetBusyTimeout(ctx context.Context, d time.Duration) error {
	_, err := s.write.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, d.Milliseconds()))
	return err
}

// SetMaxPageCount caps the database file at n pages for the writer (SQLite never sets the
// cap below the pages in use) and returns the cap in force: a write that needs a page past
// it fails with "database or disk is full", as on a full disk. n <= 0 lifts the cap. The
// caveat of SetBusyTimeout applies.
func (s *Store) SetMaxPageCount(ctx context.Context, n int64) (int64, error) {
	if n <= 0 {
		n = 0xFFFFFFFE
	}
	var got int64
	err := s.write.QueryRowContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, n)).Scan(&got)
	return got, err
}
