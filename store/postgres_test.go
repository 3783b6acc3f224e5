package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"pointpost/store/pgtest"
)

// TestRebind: SQLite's placeholders become PostgreSQL's, and nothing in a string, a quoted
// name or a comment changes.
func TestRebind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT * FROM t WHERE a = ? AND b = ?`, `SELECT * FROM t WHERE a = $1 AND b = $2`},
		{`UPDATE d SET x = ?1, y = ?1 WHERE id = ?2`, `UPDATE d SET x = $1, y = $1 WHERE id = $2`},
		{`SELECT ?3, ?`, `SELECT $3, $4`},
		{`SELECT '?' || "a?" || ? -- what?
			/* ?1 */ FROM t`, `SELECT '?' || "a?" || $1 -- what?
			/* ?1 */ FROM t`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
	} {
		got, err := rebind(c.in)
		if err != nil || got != c.want {
			t.Errorf("rebind(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`SELECT 'open ?`, `SELECT "open`, `SELECT /* open ?`, `SELECT ?0`} {
		if got, err := rebind(bad); err == nil || !strings.Contains(err.Error(), "rebind") {
			t.Errorf("rebind(%q) = %q, %v; want an error", bad, got, err)
		}
	}
}

// TestPostgresSelections: on PostgreSQL a selection runs read-only and is stopped by the
// server at the time limit, and raw SQL is refused until its guard exists.
func TestPostgresSelections(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.Need(t, pgServer).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.CheckSelection(ctx, "", nil, false); err != nil || n != 0 {
		t.Fatalf("the empty selection on an empty database: %d, %v", n, err)
	}
	if _, err := s.CheckSelection(ctx, "country = 'CA'", nil, true); !errors.Is(err, ErrSelectionRefused) ||
		!strings.Contains(err.Error(), "not yet supported on PostgreSQL") {
		t.Errorf("a raw selection: %v, want a refusal that says why", err)
	}
	err = s.runSelection(ctx, func(run context.Context, conn *sql.Conn) error {
		_, err := conn.ExecContext(run, `INSERT INTO settings (name, value) VALUES ('x', 'y')`)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("a write inside a selection: %v, want PostgreSQL's read-only refusal", err)
	}
	s.selectionLimit = 100 * time.Millisecond
	err = s.runSelection(ctx, func(run context.Context, conn *sql.Conn) error {
		// Without the context's deadline only the server's statement_timeout can stop it
		// before its 30 s.
		_, err := conn.ExecContext(context.WithoutCancel(run), `SELECT pg_sleep(30)`)
		return err
	})
	if !errors.Is(err, ErrSelectionRefused) || !strings.Contains(err.Error(), "too slow") {
		t.Errorf("a selection past the limit: %v, want it stopped as too slow", err)
	}
}
