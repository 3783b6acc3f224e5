package store

// The selection guard. An operator may write a job's selection as raw SQL: an expression
// that goes after "WHERE status = 'active' AND". SQLite asks an authorizer about every
// table, column, function and action while it prepares a statement; under the guard the
// answer is yes only for reading the consumers table, a few plain functions and, for the
// scheduler, the one INSERT it runs. SQLite checks only at prepare time, so the guard also
// caps string sizes and callers put a time limit on running.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
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

	// selectionTimeLimit is how long CheckSelection lets a raw expression run.
	selectionTimeLimit = 2 * time.Second

	// guardMaxLength caps any string or blob a guarded statement makes, so that nested
	// replace() cannot build a gigabyte before the time limit stops it.
	guardMaxLength = 1 << 20
)

// selectionAuthorizer is the authorizer of the selection guard: SELECT, reading any column
// of consumers in the main database, the functions allowedFunction lists and, when
// insertInto is not empty, an INSERT into that table (and the reads of the parent keys its
// foreign keys check). Everything else is denied.
func selectionAuthorizer(insertInto string) func(op int, arg1, arg2, arg3 string) int {
	return newGuard(insertInto).authorize
}

// guard is one use of the authorizer; it keeps the first reason it refused, for the error.
type guard struct {
	insertInto string

	mu     sync.Mutex
	denied string

	prevLength int // SQLITE_LIMIT_LENGTH before register
}

func newGuard(insertInto string) *guard { return &guard{insertInto: insertInto} }

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
// for FUNCTION arg2 is the function; for INSERT arg1 is the table and arg3 the database.
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
		if g.insertInto != "" && foreignKeyParent(g.insertInto, arg1, arg2) {
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
		if g.insertInto != "" && strings.EqualFold(arg1, g.insertInto) && arg3 == "main" {
			return ""
		}
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

// foreignKeyParent reports whether SQLite, preparing an INSERT into table, reads parent's
// column to check a foreign key. The guard must allow that read or the insert cannot be
// prepared; returning SQLITE_IGNORE instead would make every check fail. It means an
// expression run for an insert could also read those key columns; CheckSelection, which
// proves an expression before a job is stored, allows no such read.
func foreignKeyParent(table, parent, column string) bool {
	switch strings.ToLower(table) {
	case "deliveries":
		return parent == "jobs" && column == "key" || parent == "consumers" && column == "id"
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

// withGuard runs fn on one connection of db with the selection guard installed (see
// selectionAuthorizer for insertInto), and removes it before the connection goes back to
// the pool, whatever fn does. Every statement fn prepares is checked, its own included.
// Returns fn's error, a refusal wrapping ErrSelectionRefused with its reason.
func (s *Store) withGuard(ctx context.Context, db *sql.DB, insertInto string, fn func(conn *sql.Conn) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	g := newGuard(insertInto)
	if err := g.register(conn); err != nil {
		return err
	}
	defer g.unregister(conn)
	return g.explain(fn(conn))
}

// prepareGuarded prepares query on tx, a transaction of conn, under the selection guard,
// and returns the statement with the guard already removed. SQLite authorizes a statement
// when it prepares it, so the statement may then run inside the caller's transaction beside
// statements the guard would refuse (BEGIN, reading the job, updating its cursor). Returns
// an error wrapping ErrSelectionRefused when the guard refuses query.
func (s *Store) prepareGuarded(ctx context.Context, conn *sql.Conn, tx *sql.Tx, insertInto, query string) (*sql.Stmt, error) {
	g := newGuard(insertInto)
	if err := g.register(conn); err != nil {
		return nil, err
	}
	stmt, err := tx.PrepareContext(ctx, query)
	g.unregister(conn)
	if err != nil {
		return nil, g.explain(err)
	}
	return stmt, nil
}

// CheckSelection counts the active consumers that a compiled selection, where with args,
// matches now. It runs on a reader under the selection guard; a raw expression is stopped
// after two seconds. Returns an error wrapping ErrSelectionRefused that says why for an
// expression the guard refuses, that is not one expression, or that runs too long; SQLite's
// error, prefixed "selection sql:", for one that is not valid.
func (s *Store) CheckSelection(ctx context.Context, where string, args []any, raw bool) (matching int, err error) {
	return s.checkSelection(ctx, where, args, raw, selectionTimeLimit)
}

func (s *Store) checkSelection(ctx context.Context, where string, args []any, raw bool, limit time.Duration) (matching int, err error) {
	expr, err := selectionExpr(where)
	if err != nil {
		return 0, err
	}
	query := `SELECT count(*) FROM consumers WHERE status = 'active' AND ` + expr
	run := ctx
	if raw {
		var cancel context.CancelFunc
		run, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	// The compiled selections go under the guard too: it costs one authorizer call per
	// column, and a mislabelled raw expression is still checked.
	err = s.withGuard(run, s.read, "", func(conn *sql.Conn) error {
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
	case errors.Is(err, ErrSelectionRefused):
		return 0, err
	case ctx.Err() == nil && errors.Is(run.Err(), context.DeadlineExceeded):
		return 0, refused("stopped after %v: too slow to run, make the expression cheaper", limit)
	}
	return 0, fmt.Errorf("selection sql: %w", err)
}

// selectionExpr is a job's WHERE expression ready to follow "AND": in parentheses, on lines
// of its own so that a trailing "--" comment ends before the ")". The empty expression is
// "1", everyone. Returns an error wrapping ErrSelectionRefused for text that is not one
// expression: a ';', a ')' that would close the parentheses early (and so escape the
// status and cursor conditions beside it), an unterminated string or comment, or a NUL,
// at which SQLite would stop reading.
func selectionExpr(where string) (string, error) {
	if strings.TrimSpace(where) == "" {
		where = "1"
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
