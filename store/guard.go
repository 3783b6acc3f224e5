package store

// The selection guard. An operator may write a job's selection as raw SQL: an expression
// that goes after "WHERE status = 'active' AND". SQLite asks an authorizer about every
// table, column, function and action while it prepares a statement; under the guard the
// answer is yes only for reading the consumers table and a few plain functions. SQLite checks only at prepare time, so the guard also
// caps string sizes, and every selection runs under a time limit on a pool of its own
// (runSelection).

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	sqlite3 "github.com/mattn/go-sqlite3"

	"pointpost/postoffice"
)

// ErrSelectionRefused is what errors.Is finds in the error when the guard refuses a
// selection expression: it reads something other than consumers, writes, calls a function
// not on the list, is not one expression, or runs longer than the time limit. The error's
// own text says which, as in "selection sql: not authorized: only columns of consumers may
// be read, not sqlite_master.name".
var ErrSelectionRefused = errors.New("selection sql: refused")

// refusedError is a refusal worded for the operator who wrote the expression.
type refusedError struct{ msg string }

func (e *refusedError) Error() string        { return e.msg }
func (e *refusedError) Is(target error) bool { return target == ErrSelectionRefused }

func refused(format string, a ...any) error {
	return &refusedError{"selection sql: " + fmt.Sprintf(format, a...)}
}

const (
	// sqliteRecursive is SQLITE_RECURSIVE, which the driver leaves out of its constants.
	sqliteRecursive = 33

	// selectionTimeLimit is how long any selection may take, waiting for a connection
	// included: a count, a preview, a job's creation, a batch of the scheduler.
	selectionTimeLimit = 2 * time.Second

	// selectionConns is the size of the selections' read pool; what is left of the
	// machine serves consumer pages and acknowledgements.
	selectionConns = 2

	// maxSelectionsPerIssuer is how many selections one issuer (or the operators) may run at
	// once; more are refused with postoffice.ErrTooManySelections rather than queued.
	maxSelectionsPerIssuer = 2

	// guardMaxLength caps any string or blob a guarded statement makes, so that nested
	// replace() cannot build a gigabyte before the time limit stops it.
	guardMaxLength = 1 << 20
)

// selectionAuthorizer is the authorizer of the selection guard: SELECT, reading any column
// of consumers in the main database and the functions allowedFunction lists. Everything else
// is denied.
func selectionAuthorizer() func(op int, arg1, arg2, arg3 string) int {
	return newGuard().authorize
}

// guard is one use of the authorizer; it keeps the first reason it refused, for the error.
type guard struct {
	mu     sync.Mutex
	denied string

	prevLength int // SQLITE_LIMIT_LENGTH before register
}

func newGuard() *guard { return &guard{} }

func (g *guard) authorize(op int, arg1, arg2, arg3 string) int {
	reason := g.check(op, arg1, arg2, arg3)
	if reason == "" {
		return sqlite3.SQLITE_OK
	}
	g.mu.Lock()
	if g.denied == "" {
		g.denied = reason
	}
	g.mu.Unlock()
	return sqlite3.SQLITE_DENY
}

// check returns why op is refused, or "" to allow it. For READ arg1 is the table, arg2 the
// column ("" when a statement reads no column, as count(*) does) and arg3 the database;
// for FUNCTION arg2 is the function; for INSERT arg1 is the table.
func (g *guard) check(op int, arg1, arg2, arg3 string) string {
	switch op {
	case sqlite3.SQLITE_SELECT:
		return ""
	case sqlite3.SQLITE_READ:
		if arg3 != "" && arg3 != "main" {
			return fmt.Sprintf("only columns of consumers may be read, not %s.%s.%s", arg3, arg1, arg2)
		}
		if strings.EqualFold(arg1, "consumers") {
			return ""
		}
		if arg2 == "" {
			return fmt.Sprintf("only columns of consumers may be read, not %s", arg1)
		}
		return fmt.Sprintf("only columns of consumers may be read, not %s.%s", arg1, arg2)
	case sqlite3.SQLITE_FUNCTION:
		if allowedFunction(arg2) {
			return ""
		}
		return fmt.Sprintf("function %s() is not allowed", arg2)
	case sqlite3.SQLITE_INSERT:
		return "a selection may not write (insert into " + arg1 + ")"
	case sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE:
		return "a selection may not write (" + arg1 + ")"
	case sqliteRecursive:
		return "recursive WITH is not allowed"
	case sqlite3.SQLITE_PRAGMA:
		return "PRAGMA is not allowed"
	case sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH:
		return "ATTACH and DETACH are not allowed"
	case sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT:
		return "transactions are not allowed"
	}
	return fmt.Sprintf("only a read-only expression over consumers is allowed (action %d)", op)
}

// allowedFunction reports whether a selection may call the named SQL function: those that
// compute from their arguments, and the aggregates a subquery over consumers may use. Not
// randomblob, zeroblob, printf, group_concat (they make big values), load_extension,
// sqlite_* and the like.
func allowedFunction(name string) bool {
	switch strings.ToLower(name) {
	case "lower", "upper", "length", "octet_length", "substr", "substring", "instr",
		"trim", "ltrim", "rtrim", "replace", "unicode", "typeof",
		"abs", "round", "sign", "min", "max", "count", "sum", "total", "avg",
		"coalesce", "ifnull", "nullif", "iif", "if", "like", "glob",
		"json_extract", "json_type", "json_valid", "json_array_length", "->", "->>",
		"date", "time", "datetime", "julianday", "unixepoch", "strftime":
		return true
	}
	return false
}

// register installs the guard on conn's SQLite connection.
func (g *guard) register(conn *sql.Conn) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("selection guard: not a SQLite connection (%T)", dc)
		}
		c.RegisterAuthorizer(g.authorize)
		g.prevLength = c.SetLimit(sqlite3.SQLITE_LIMIT_LENGTH, guardMaxLength)
		return nil
	})
}

// unregister removes the guard from conn. Should that fail, the connection is discarded
// rather than returned to the pool still guarded.
func (g *guard) unregister(conn *sql.Conn) {
	_ = conn.Raw(func(dc any) error {
		c, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return driver.ErrBadConn
		}
		c.RegisterAuthorizer(nil)
		if g.prevLength > 0 {
			c.SetLimit(sqlite3.SQLITE_LIMIT_LENGTH, g.prevLength)
		}
		return nil
	})
}

// explain turns SQLite's bare "not authorized" into an error wrapping ErrSelectionRefused
// that says what was refused. A function SQLite does not know is refused the same way.
func (g *guard) explain(err error) error {
	var se sqlite3.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	if se.Code == sqlite3.ErrAuth {
		g.mu.Lock()
		reason := g.denied
		g.mu.Unlock()
		if reason == "" {
			reason = "refused by the guard"
		}
		return refused("not authorized: %s", reason)
	}
	// A denied function, and one SQLite does not know, come back as plain errors.
	for _, prefix := range []string{"not authorized to use function: ", "no such function: "} {
		if fn, ok := strings.CutPrefix(se.Error(), prefix); ok {
			return refused("not authorized: function %s() is not allowed", fn)
		}
	}
	return err
}

// guarded runs fn on conn with the selection guard installed, and removes it before the
// connection goes back to the pool, whatever fn does. Every statement fn prepares is
// checked, its own included. Returns fn's error, a refusal wrapping ErrSelectionRefused with
// its reason.
func guarded(conn *sql.Conn, fn func(conn *sql.Conn) error) error {
	g := newGuard()
	if err := g.register(conn); err != nil {
		return err
	}
	defer g.unregister(conn)
	return g.explain(fn(conn))
}

// CheckSelection counts the active consumers that a compiled selection, where with args,
// matches now. It runs on the selections' own pool, under the selection guard and the
// selection time limit, counted against the issuer postoffice.SelectionOwner names in ctx.
// Returns an error wrapping ErrSelectionRefused that says why for an expression the guard
// refuses, that is not one expression, or that runs too long; one wrapping
// postoffice.ErrTooManySelections when the issuer has maxSelectionsPerIssuer running; SQLite's
// error, prefixed "selection sql:", for one that is not valid.
func (s *Store) CheckSelection(ctx context.Context, where string, args []any, raw bool) (matching int, err error) {
	if err := s.refuseRawPG(ctx, raw); err != nil {
		return 0, err
	}
	expr, err := selectionExpr(where)
	if err != nil {
		return 0, err
	}
	release, err := s.selections.take(postoffice.SelectionOwner(ctx))
	if err != nil {
		return 0, err
	}
	defer release()
	query := `SELECT count(*) FROM consumers WHERE status = 'active' AND ` + expr
	err = s.runSelection(ctx, raw, func(run context.Context, conn *sql.Conn) error {
		// A prepared statement runs only the first statement of its text.
		stmt, err := conn.PrepareContext(run, query)
		if err != nil {
			return err
		}
		defer stmt.Close()
		return stmt.QueryRowContext(run, args...).Scan(&matching)
	})
	switch {
	case err == nil:
		return matching, nil
	case errors.Is(err, ErrSelectionRefused), errors.Is(err, postoffice.ErrTooManySelections):
		return 0, err
	}
	return 0, fmt.Errorf("selection sql: %w", err)
}

// selectionSlots counts the selections running, by the issuer they run for.
type selectionSlots struct {
	mu      sync.Mutex
	running map[string]int
}

// take counts one more selection of owner, and release counts it done. Returns an error
// wrapping postoffice.ErrTooManySelections when owner has maxSelectionsPerIssuer running.
func (sl *selectionSlots) take(owner string) (release func(), err error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.running[owner] >= maxSelectionsPerIssuer {
		return nil, fmt.Errorf("selection: %d already running for this issuer: %w", sl.running[owner], postoffice.ErrTooManySelections)
	}
	if sl.running == nil {
		sl.running = map[string]int{}
	}
	sl.running[owner]++
	var once sync.Once
	return func() {
		once.Do(func() {
			sl.mu.Lock()
			defer sl.mu.Unlock()
			if sl.running[owner]--; sl.running[owner] == 0 {
				delete(sl.running, owner)
			}
		})
	}, nil
}

// runSelection runs fn on a connection of the selections' pool with the selection guard
// installed, and stops it at the selection time limit, the wait for a connection included.
// fn gets the context to run its statements with. Returns an error wrapping
// postoffice.ErrTooManySelections when no connection came free in time, a refusal wrapping
// ErrSelectionRefused when the guard refused a statement or the time limit stopped it, or
// fn's error.
func (s *Store) runSelection(ctx context.Context, raw bool, fn func(run context.Context, conn *sql.Conn) error) error {
	run, cancel := context.WithTimeout(ctx, s.selectionLimit)
	defer cancel()
	stopped := func() bool { return ctx.Err() == nil && errors.Is(run.Err(), context.DeadlineExceeded) }
	conn, err := s.sel.Conn(run)
	if err != nil {
		if stopped() {
			return fmt.Errorf("selection: no connection came free within %v: %w", s.selectionLimit, postoffice.ErrTooManySelections)
		}
		return err
	}
	defer conn.Close()
	body := func(conn *sql.Conn) error {
		if s.selectionHook != nil {
			s.selectionHook()
		}
		return fn(run, conn)
	}
	if s.engine == enginePostgres {
		role := ""
		if raw {
			role = selectionRole
		}
		err = refusedPG(readOnlyPG(run, conn, s.selectionLimit, role, body), raw)
	} else {
		err = guarded(conn, body)
	}
	// PostgreSQL's statement_timeout may stop the statement a moment before run's deadline.
	if err != nil && !errors.Is(err, ErrSelectionRefused) && (stopped() || ctx.Err() == nil && pgQueryCanceled(err)) {
		return refused("stopped after %v: too slow to run, make the selection cheaper", s.selectionLimit)
	}
	return err
}

// selectionExpr is a job's WHERE expression ready to follow "AND": in parentheses, on lines
// of its own so that a trailing "--" comment ends before the ")". The empty expression is
// TRUE, everyone. Returns an error wrapping ErrSelectionRefused for text that is not one
// expression: a ';', a ')' that would close the parentheses early (and so escape the
// status and cursor conditions beside it), an unterminated string or comment, or a NUL,
// at which SQLite would stop reading.
func selectionExpr(where string) (string, error) {
	if strings.TrimSpace(where) == "" {
		where = "TRUE" // PostgreSQL wants a boolean where SQLite takes 1
	}
	if reason := exprProblem(where); reason != "" {
		return "", refused("not one expression: %s", reason)
	}
	return "(\n" + where + "\n)", nil
}

// exprProblem scans where as SQLite's tokenizer splits strings, quoted names and comments
// and says what is wrong outside them, or "" when nothing is.
func exprProblem(where string) string {
	if strings.IndexByte(where, 0) >= 0 {
		return "a NUL byte"
	}
	depth := 0
	for i := 0; i < len(where); i++ {
		switch ch := where[i]; ch {
		case '\'', '"', '`':
			end := i + 1
			for ; end < len(where); end++ {
				if where[end] == ch {
					if end+1 < len(where) && where[end+1] == ch {
						end++
						continue
					}
					break
				}
			}
			if end >= len(where) {
				return "an unterminated string or quoted name"
			}
			i = end
		case '[':
			end := strings.IndexByte(where[i+1:], ']')
			if end < 0 {
				return "an unterminated [name]"
			}
			i += end + 1
		case '-':
			if i+1 < len(where) && where[i+1] == '-' {
				end := strings.IndexByte(where[i:], '\n')
				if end < 0 {
					i = len(where)
					break
				}
				i += end
			}
		case '/':
			if i+1 < len(where) && where[i+1] == '*' {
				end := strings.Index(where[i+2:], "*/")
				if end < 0 {
					return "an unterminated /* comment"
				}
				i += end + 3
			}
		case ';':
			return "';' outside a string"
		case '(':
			depth++
		case ')':
			if depth--; depth < 0 {
				return "a ')' without its '('"
			}
		}
	}
	if depth != 0 {
		return "a '(' without its ')'"
	}
	return ""
}

// selectionRole is the PostgreSQL role raw SQL selections run as: it reads the consumers'
// columns and nothing else (migrations/postgres/0056_selection_role.sql).
const selectionRole = "pointpost_selection"

// refuseRawPG refuses a raw-SQL selection on PostgreSQL when the database user cannot run it
// as selectionRole: the role is missing (the user that migrated could not create it), the
// user is not a member, or the role may not read consumers. Returns an error wrapping
// ErrSelectionRefused that says which.
func (s *Store) refuseRawPG(ctx context.Context, raw bool) error {
	if !raw || s.engine != enginePostgres {
		return nil
	}
	var exists, member, reads bool
	err := s.read.QueryRowContext(ctx, `SELECT r.rolname IS NOT NULL,
			coalesce(pg_has_role(current_user, r.oid, 'USAGE'), false),
			coalesce(has_any_column_privilege(r.oid, 'consumers', 'SELECT'), false)
		FROM (SELECT 1) AS one LEFT JOIN pg_roles r ON r.rolname = ?`, selectionRole).Scan(&exists, &member, &reads)
	switch {
	case err != nil:
		return err
	case !exists:
		return refused("raw SQL selections on PostgreSQL run as the role %s, which does not exist: the database user that migrated could not create it; create it as the README shows, or use a structured selection", selectionRole)
	case !member:
		return refused("raw SQL selections on PostgreSQL run as the role %s, and this database user is not a member: GRANT %s TO the user, or use a structured selection", selectionRole, selectionRole)
	case !reads:
		return refused("raw SQL selections on PostgreSQL run as the role %s, which may not read consumers: grant it as the README shows, or use a structured selection", selectionRole)
	}
	return nil
}

// refusedPG words what PostgreSQL refused in a raw selection as a refusal wrapping
// ErrSelectionRefused: reading what the role may not read, writing in the read-only
// transaction, a function or table that does not exist.
func refusedPG(err error, raw bool) error {
	var pe *pgconn.PgError
	if !raw || !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case "42501": // insufficient_privilege
		return refused("not authorized: only columns of consumers may be read: %s", pe.Message)
	case "25006": // read_only_sql_transaction
		return refused("a selection may not write: %s", pe.Message)
	case "42883", "42P01": // undefined_function, undefined_table
		return refused("not allowed: %s", pe.Message)
	}
	return err
}

// readOnlyPG runs fn on a PostgreSQL connection inside a READ ONLY transaction that the
// server stops after limit, so that a selection can neither write nor run on.
func readOnlyPG(ctx context.Context, conn *sql.Conn, limit time.Duration, role string, fn func(conn *sql.Conn) error) error {
	if _, err := conn.ExecContext(ctx, `BEGIN READ ONLY`); err != nil {
		return err
	}
	// Always rolled back, also after success: there is nothing to commit, and the rollback
	// undoes the settings an expression may change with set_config(..., false), which a
	// commit would leave on the pooled connection.
	rolledBack := false
	rollback := func() error {
		rolledBack = true
		_, err := conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		return err
	}
	defer func() {
		if !rolledBack {
			if rollback() != nil {
				conn.Raw(func(any) error { return driver.ErrBadConn }) // not back to the pool
			}
		}
	}()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`SET LOCAL statement_timeout = %d`, max(limit.Milliseconds(), 1))); err != nil {
		return err
	}
	if role != "" {
		// Until the transaction ends; role is one of ours, never the user's text.
		if _, err := conn.ExecContext(ctx, `SET LOCAL ROLE `+role); err != nil {
			return err
		}
	}
	if err := fn(conn); err != nil {
		return err
	}
	return rollback()
}
