package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// PostgreSQL (issue 12). The same Store runs on either engine: Open picks it by the name it
// is given. Most statements are written once, in the SQL both engines read, and reach
// PostgreSQL through pgConnector, which renumbers SQLite's placeholders (? and ?NNN) as $N
// and passes Go bools as 0/1, the way the schema keeps flags (migrations/postgres). Where
// the engines differ (pragmas, json_each, INDEXED BY, set-wise batches over unnest, the
// acknowledgements' two round trips, SKIP LOCKED claims), the store says so at the
// statement: s.either(sqlite, postgres).
//
// The store's tests run on PostgreSQL unchanged but for what is SQLite's alone
// (conformanceTests and sqliteTests in conformance_test.go; TestConformancePostgres), and so
// do the root package's (POINTPOST_TEST_ENGINE=postgres go test .; TestCommandsOnPostgres
// runs a few of each part in make test). SetBusyTimeout, SetMaxPageCount and Backup are
// SQLite's alone. The consumer search's e-mail prefix range (email < prefix + U+10FFFF)
// assumes the C collation the tests' cluster has.
//
// Several processes share one database: work that one process at a time may do takes an
// advisory lock (the keys below); acknowledgements lock their issuers' rows; deliveries are
// claimed with leases (deliveries.go). The sessions insist on synchronous_commit, so an
// answered acknowledgement is on disk (openPostgres).
//
// Not yet: the writer pool is one connection per process, as on SQLite; a process's
// acknowledgement batches and sends take turns on it.

// engine is the database a Store runs on.
type engine int

const (
	engineSQLite engine = iota
	enginePostgres
)

// IsPostgresURL reports whether name, a --db, names a PostgreSQL database rather than a
// SQLite file.
func IsPostgresURL(name string) bool {
	return strings.HasPrefix(name, "postgres://") || strings.HasPrefix(name, "postgresql://")
}

// either is the statement for the store's engine.
func (s *Store) either(sqlite, postgres string) string { return s.engine.either(sqlite, postgres) }

// either is the statement for engine e.
func (e engine) either(sqlite, postgres string) string {
	if e == enginePostgres {
		return postgres
	}
	return sqlite
}

// Advisory lock keys, one per kind of work that one process at a time may do.
const (
	lockMigrate int64 = 0x706f696e74_01 // "point" and a number
	lockLedger  int64 = 0x706f696e74_02
	// New mail server rows are numbered one process at a time.
	lockMailServers int64 = 0x706f696e74_08
)

// lockProcessNames is the first key of the two-key advisory locks that hold process names,
// one session each for the process's life (LockProcess): the second key is the name's hash.
// Two-key locks are apart from the one-key ones above in PostgreSQL's lock space.
const lockProcessNames int32 = 0x706f696e // "poin"

// openPostgres opens a pool on the PostgreSQL database at url, through pgConnector. Its
// sessions run with synchronous_commit on, whatever the server's or the database's default,
// since an acknowledgement is answered as accepted once its COMMIT returns; a URL may ask for
// a stronger level (remote_write, remote_apply) or local, but not off.
func openPostgres(url string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	switch cfg.RuntimeParams["synchronous_commit"] {
	case "":
		cfg.RuntimeParams["synchronous_commit"] = "on"
	case "off":
		return nil, errors.New("database URL: synchronous_commit=off would answer acknowledgements before they are on disk")
	}
	return sql.OpenDB(&pgConnector{base: stdlib.GetConnector(*cfg), rebound: &sync.Map{}}), nil
}

// pgConnector makes pgx's database/sql connections read the store's SQLite placeholders.
type pgConnector struct {
	base driver.Connector
	// rebound caches each statement's PostgreSQL spelling: the store has a few hundred.
	rebound *sync.Map
}

func (c *pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{Conn: conn.(*stdlib.Conn), rebound: c.rebound}, nil
}

func (c *pgConnector) Driver() driver.Driver { return c.base.Driver() }

// pgConn is pgx's connection with the statements renumbered and bools as 0/1.
type pgConn struct {
	*stdlib.Conn
	rebound *sync.Map
}

func (c *pgConn) rebind(query string) (string, error) {
	if v, ok := c.rebound.Load(query); ok {
		return v.(string), nil
	}
	out, err := rebind(query)
	if err != nil {
		return "", err
	}
	c.rebound.Store(query, out)
	return out, nil
}

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	q, err := c.rebind(query)
	if err != nil {
		return nil, err
	}
	return c.Conn.PrepareContext(ctx, q)
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) == 0 {
		// Migrations and other scripts: several statements, dollar-quoted bodies; no
		// placeholders to renumber.
		return c.Conn.ExecContext(ctx, query, args)
	}
	q, err := c.rebind(query)
	if err != nil {
		return nil, err
	}
	return c.Conn.ExecContext(ctx, q, args)
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 0 {
		return c.Conn.QueryContext(ctx, query, args)
	}
	q, err := c.rebind(query)
	if err != nil {
		return nil, err
	}
	return c.Conn.QueryContext(ctx, q, args)
}

// CheckNamedValue passes bools as the 0/1 the schema keeps flags as.
func (c *pgConn) CheckNamedValue(nv *driver.NamedValue) error {
	if b, ok := nv.Value.(bool); ok {
		nv.Value = int64(0)
		if b {
			nv.Value = int64(1)
		}
	}
	return nil
}

// rebind spells SQLite's placeholders as PostgreSQL's: ?NNN as $NNN, and each bare ? as the
// next number after the highest so far, as SQLite numbers them. Strings, quoted names and
// comments are copied as they are. Returns an error for an unterminated one.
func rebind(query string) (string, error) {
	var b strings.Builder
	b.Grow(len(query) + 8)
	next := 0
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				return "", fmt.Errorf("rebind: unterminated %c in %q", c, query)
			}
			b.WriteString(query[i : i+end+2])
			i += end + 2
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				end = len(query) - i
			}
			b.WriteString(query[i : i+end])
			i += end
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			end := strings.Index(query[i+2:], "*/")
			if end < 0 {
				return "", fmt.Errorf("rebind: unterminated comment in %q", query)
			}
			b.WriteString(query[i : i+end+4])
			i += end + 4
		case c == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			n := next + 1
			if j > i+1 {
				var err error
				if n, err = strconv.Atoi(query[i+1 : j]); err != nil || n < 1 {
					return "", fmt.Errorf("rebind: placeholder %s in %q", query[i:j], query)
				}
			}
			next = max(next, n)
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

// isUniqueViolation reports whether err is either engine refusing a row whose unique key is
// taken.
func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// isForeignKeyViolation reports whether err is either engine refusing a row that names a
// row that does not exist.
func isForeignKeyViolation(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintForeignKey
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// pgQueryCanceled reports whether err is PostgreSQL having stopped a statement: its
// statement_timeout, or a cancel request.
func pgQueryCanceled(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "57014"
}

// pgUnavailable reports whether err is PostgreSQL saying it cannot take the work now: the
// connection failed, a lock or serialization conflict, no room (disk, memory, connections),
// the server shutting down.
func pgUnavailable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code[:2] {
	case "08", "53", "57":
		return true
	}
	return pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03"
}
