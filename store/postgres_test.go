package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
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
// server at the time limit, and raw SQL is refused when the role it runs as cannot be used.
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
	if n, err := s.CheckSelection(ctx, "country = 'CA'", nil, true); err != nil || n != 0 {
		t.Errorf("a raw selection: %d, %v", n, err)
	}
	// Without the role, raw SQL is refused, saying why.
	if _, err := s.write.ExecContext(ctx, `REVOKE SELECT ON consumers FROM `+selectionRole); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckSelection(ctx, "country = 'CA'", nil, true); !errors.Is(err, ErrSelectionRefused) ||
		!strings.Contains(err.Error(), "may not read consumers") {
		t.Errorf("a raw selection without the role's grant: %v, want a refusal that says why", err)
	}
	if _, err := s.SampleConsumer(ctx, "country = 'CA'", nil, true); !errors.Is(err, ErrSelectionRefused) {
		t.Errorf("a raw sample without the role's grant: %v, want a refusal", err)
	}
	err = s.runSelection(ctx, false, func(run context.Context, conn *sql.Conn) error {
		_, err := conn.ExecContext(run, `INSERT INTO settings (name, value) VALUES ('x', 'y')`)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("a write inside a selection: %v, want PostgreSQL's read-only refusal", err)
	}
	s.selectionLimit = 100 * time.Millisecond
	err = s.runSelection(ctx, false, func(run context.Context, conn *sql.Conn) error {
		// Without the context's deadline only the server's statement_timeout can stop it
		// before its 30 s.
		_, err := conn.ExecContext(context.WithoutCancel(run), `SELECT pg_sleep(30)`)
		return err
	})
	if !errors.Is(err, ErrSelectionRefused) || !strings.Contains(err.Error(), "too slow") {
		t.Errorf("a selection past the limit: %v, want it stopped as too slow", err)
	}
}

// TestPostgresMigratesOnceAtOnce: processes that open one new database at the same moment
// migrate it one after the other (the advisory lock), so every one opens it and the schema
// is made once.
func TestPostgresMigratesOnceAtOnce(t *testing.T) {
	url := pgtest.Need(t, pgServer).NewDatabase(t)
	ctx := context.Background()
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(ctx, url)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("open %d: %v", i, errs[i])
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	// Each migration is applied once, however many processes opened the database at once.
	rows, err := stores[0].read.Query(`SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var versions []int
	for rows.Next() {
		var v, n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("migration %04d recorded %d times", v, n)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(versions) == 0 || versions[0] != 40 {
		t.Errorf("schema_migrations holds %v; want the baseline 0040 first", versions)
	}
}

// TestPostgresTwoProcessesAwardOnceWithinBudget: two stores on one PostgreSQL database, as
// two web processes, take the same clicks at once. Each consumer earns once, and the rule's
// budget is never overspent: the acknowledgement batches of both take one advisory lock.
func TestPostgresTwoProcessesAwardOnceWithinBudget(t *testing.T) {
	url := pgtest.Need(t, pgServer).NewDatabase(t)
	ctx := context.Background()
	first, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	cs := seedAckConsumers(t, first, 40)
	acme := seedAckIssuer(t, first, "acme")
	rule := seedAckRule(t, first, rewards.AwardRule{IssuerID: acme, Type: rewards.RuleClick, Points: 1,
		Frequency: rewards.FrequencyOnce, Budget: 25})
	job := seedAckJob(t, first, acme, time.Time{}, rule)

	var wg sync.WaitGroup
	var awarded atomic.Int64
	for _, st := range []*Store{first, second, first, second} {
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := st.Acknowledge(ctx, ackAt(job, c, postoffice.ChannelClick, ackT0))
				if err != nil {
					t.Error(err)
					return
				}
				for _, d := range res.Decisions {
					if d.Awarded {
						awarded.Add(d.Points)
					}
				}
			}()
		}
	}
	wg.Wait()
	accrued := ackCount(t, first, `SELECT coalesce(sum(points), 0) FROM accruals`)
	perConsumer := ackCount(t, first, `SELECT count(*) FROM (SELECT consumer_id FROM accruals
		GROUP BY consumer_id HAVING count(*) > 1) AS twice`)
	spent := ackCount(t, first, `SELECT spent FROM award_rules WHERE id = ?`, rule.ID)
	if accrued != 25 || spent != 25 || awarded.Load() != 25 || perConsumer != 0 {
		t.Errorf("accrued %d, spent %d, answered as awarded %d, %d consumers twice; want 25, 25, 25, 0",
			accrued, spent, awarded.Load(), perConsumer)
	}
}

// TestPostgresRawSelectionLeavesTheConnectionAsItWas: a raw expression may call set_config,
// which PostgreSQL allows in a read-only transaction; what it sets must not outlive the
// selection on the pooled connection (the transaction is rolled back, which undoes it).
func TestPostgresRawSelectionLeavesTheConnectionAsItWas(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.Need(t, pgServer).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.sel.SetMaxOpenConns(1)    // the next selection gets the same connection
	seedGuardConsumers(t, s, 2) // an expression is evaluated only on rows
	if _, err := s.CheckSelection(ctx, `set_config('search_path', 'nowhere', false) <> '' AND set_config('role', '`+selectionRole+`', false) <> ''`, nil, true); err != nil {
		t.Fatal(err)
	}
	var path, role string
	err = s.runSelection(ctx, false, func(run context.Context, conn *sql.Conn) error {
		return conn.QueryRowContext(run, `SELECT current_setting('search_path'), current_user`).Scan(&path, &role)
	})
	if err != nil || path == "nowhere" || role == selectionRole {
		t.Fatalf("after the raw selection the connection has search_path %q, user %q (%v)", path, role, err)
	}
}
