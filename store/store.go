// Package store keeps pointpost's state in one SQLite file (or, in progress, a PostgreSQL
// database: see postgres.go). It holds the only SQL in the program and implements the Store
// interfaces that postoffice, mailer and rewards declare.
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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"pointpost/rewards"
)

//go:embed migrations/*.sql migrations/postgres/*.sql
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
	// engine is SQLite or PostgreSQL, by the name Open was given.
	engine engine
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

// SQLiteFile is the file a SQLite --db names: a path, or the same as a sqlite: URL
// (sqlite:pointpost.db, sqlite:///var/lib/pointpost/pointpost.db).
func SQLiteFile(name string) string {
	if rest, ok := strings.CutPrefix(name, "sqlite:"); ok {
		return strings.TrimPrefix(rest, "//")
	}
	return name
}

// Open opens (creating if needed) the database at file, a path or a sqlite: URL, and applies
// pending migrations. A postgres:// URL opens that PostgreSQL database instead (postgres.go).
func Open(ctx context.Context, file string) (*Store, error) {
	if IsPostgresURL(file) {
		return openPostgresStore(ctx, file)
	}
	file = SQLiteFile(file)
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

// openPostgresStore opens the PostgreSQL database at url: one writer connection, as on
// SQLite, for now (see postgres.go), and pools for reads and selections.
func openPostgresStore(ctx context.Context, url string) (*Store, error) {
	var pools [3]*sql.DB
	for i, conns := range []int{1, 4, selectionConns} {
		db, err := openPostgres(url)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		pools[i] = db
	}
	s := &Store{write: pools[0], read: pools[1], sel: pools[2], path: url, engine: enginePostgres,
		Now: time.Now, selectionLimit: selectionTimeLimit}
	closeAll := func() { pools[0].Close(); pools[1].Close(); pools[2].Close() }
	if err := s.write.PingContext(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("open PostgreSQL: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return s, nil
}

// Close closes the pools after checkpointing SQLite's WAL into the main file.
func (s *Store) Close() error {
	s.acks.close()
	if s.engine == engineSQLite {
		_, _ = s.write.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	}
	return errors.Join(s.sel.Close(), s.read.Close(), s.write.Close())
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

func (s *Store) migrate(ctx context.Context) error {
	if s.engine == enginePostgres {
		// Processes starting at once migrate one after the other. The writer pool is one
		// connection, which holds the session's lock until the unlock.
		if _, err := s.exec(ctx, `SELECT pg_advisory_lock(?)`, lockMigrate); err != nil {
			return err
		}
		defer s.exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, lockMigrate)
	}
	if _, err := s.exec(ctx, s.either(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`,
		`CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, s.either("migrations/*.sql", "migrations/postgres/*.sql"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	versions := make([]int, len(names))
	for i, name := range names {
		base := path.Base(name)
		if versions[i], err = strconv.Atoi(strings.SplitN(base, "_", 2)[0]); err != nil {
			return fmt.Errorf("migration %s: name must start with a number", base)
		}
	}
	if err := s.refuseNewerSchema(ctx, versions); err != nil {
		return err
	}
	for i, name := range names {
		if err := s.applyMigration(ctx, versions[i], name); err != nil {
			return fmt.Errorf("migration %s: %w", path.Base(name), err)
		}
	}
	return nil
}

// ErrSchemaNewer is returned, wrapped with the migrations and the binary concerned, by Open
// for a database a newer binary has migrated: this one would misread what it does not know.
var ErrSchemaNewer = errors.New("the database's schema is newer than this binary")

// refuseNewerSchema returns ErrSchemaNewer if the database has applied a migration that is
// not among known, before anything is changed.
func (s *Store) refuseNewerSchema(ctx context.Context, known []int) error {
	rows, err := s.write.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return err
	}
	var unknown []string
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		if !slices.Contains(known, v) {
			unknown = append(unknown, fmt.Sprintf("%04d", v))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(unknown) == 0 {
		return err
	}
	by := ""
	if _, binary, _, err := s.OpenedBy(ctx); err == nil && binary != "" {
		by = ", last opened by pointpost " + binary
	}
	return fmt.Errorf("%w: it has migration %s, which this binary does not know%s; run that binary or a newer one",
		ErrSchemaNewer, strings.Join(unknown, ", "), by)
}

// RecordOpen notes that binary opened the database at its current schema version.
func (s *Store) RecordOpen(ctx context.Context, binary string) error {
	_, err := s.exec(ctx, `INSERT INTO opened_by (id, schema_version, binary_version, opened_at)
		VALUES (1, (SELECT coalesce(max(version), 0) FROM schema_migrations), ?, ?)
		ON CONFLICT (id) DO UPDATE SET schema_version = excluded.schema_version,
			binary_version = excluded.binary_version, opened_at = excluded.opened_at`, binary, ms(s.Now()))
	return err
}

// OpenedBy returns the schema version and binary that RecordOpen last noted; zero values if
// none did.
func (s *Store) OpenedBy(ctx context.Context) (schema int, binary string, at time.Time, err error) {
	var atMS int64
	err = s.write.QueryRowContext(ctx, `SELECT schema_version, binary_version, opened_at FROM opened_by WHERE id = 1`).
		Scan(&schema, &binary, &atMS)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", time.Time{}, nil
	}
	return schema, binary, fromMS(atMS), err
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

// IsBusy reports whether err is SQLite saying the database is locked or full, or PostgreSQL
// saying the like (pgUnavailable), the errors a caller may answer with "try again later".
func IsBusy(err error) bool {
	if pgUnavailable(err) {
		return true
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrFull, sqlite3.ErrIoErr:
			return true
		}
	}
	return false
}

// unavailable returns err as a rewards.EUNAVAILABLE error if it is SQLite saying the
// database is busy, locked or full (IsBusy still sees it), and err otherwise.
func unavailable(err error) error {
	if !IsBusy(err) || rewards.ErrorCode(err) == rewards.EUNAVAILABLE {
		return err
	}
	return &rewards.Error{Code: rewards.EUNAVAILABLE, Message: "the database is busy: try again in a moment", Err: err}
}

// exec runs a statement on the writer; a busy database is a rewards.EUNAVAILABLE error.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := s.write.ExecContext(ctx, query, args...)
	return res, unavailable(err)
}

// tx runs fn in a write transaction, committing if it returns nil; a busy database is a
// rewards.EUNAVAILABLE error.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return unavailable(err)
	}
	return unavailable(tx.Commit())
}

// SetBusyTimeout sets how long the writer waits for a lock another process holds before a
// write fails with "database is locked" (10 s from Open). The writer is one connection, so
// the pragma reaches every write; should database/sql replace that connection, the new one
// has Open's value.
func (s *Store) SetBusyTimeout(ctx context.Context, d time.Duration) error {
	_, err := s.exec(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, d.Milliseconds()))
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
