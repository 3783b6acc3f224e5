package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"pointpost/postoffice"
)

// seedGuardConsumers inserts n consumers: every third in the US born from 1980, the rest in
// France, with a plan attribute alternating gold and silver; the last one unsubscribed.
func seedGuardConsumers(t testing.TB, s *Store, n int) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for i := 1; i <= n; i++ {
		country, city, year := "FR", "Paris", 1970
		if i%3 == 0 {
			country, city, year = "US", "Boston", 1985
		}
		plan := "silver"
		if i%2 == 0 {
			plan = "gold"
		}
		status := "active"
		if i == n {
			status = "unsubscribed"
		}
		if _, err := tx.Exec(`INSERT INTO consumers (email, city, country, birth_year, interests, attributes, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ';golf;', ?, ?, 0, 0)`,
			fmt.Sprintf("c%d@example.com", i), city, country, year, `{"plan":"`+plan+`"}`, status); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// seedGuardJob inserts an issuer, a message and a job, and returns the job's key.
func seedGuardJob(t testing.TB, s *Store) int64 {
	t.Helper()
	if _, err := s.write.Exec(`INSERT INTO issuers (slug, name, created_at) VALUES ('acme', 'Acme', 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(`INSERT INTO messages (type, subject, body) VALUES ('text', 's', 'b')`); err != nil {
		t.Fatal(err)
	}
	var key int64
	if err := s.write.QueryRow(`INSERT INTO jobs (issuer_id, name, start_at, stop_at, client_count, text_message_id, created_at, updated_at)
		VALUES ((SELECT max(id) FROM issuers), 'j', 0, 1, 100, (SELECT max(id) FROM messages), 0, 0) RETURNING key`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	return key
}

// schemaAndCounts fingerprints what a hostile expression might change.
func schemaAndCounts(t testing.TB, s *Store) string {
	t.Helper()
	var schema string
	var consumers, jobs, deliveries int
	if err := s.write.QueryRow(s.either(`SELECT group_concat(type || ':' || name, ',') FROM (SELECT type, name FROM sqlite_master ORDER BY name)`,
		`SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'`)).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if err := s.write.QueryRow(`SELECT (SELECT count(*) FROM consumers), (SELECT count(*) FROM jobs), (SELECT count(*) FROM deliveries)`).
		Scan(&consumers, &jobs, &deliveries); err != nil {
		t.Fatal(err)
	}
	var dbs int
	if err := s.write.QueryRow(s.either(`SELECT count(*) FROM pragma_database_list`, `SELECT 1`)).Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s consumers=%d jobs=%d deliveries=%d databases=%d", schema, consumers, jobs, deliveries, dbs)
}

func TestCheckSelectionRefusesHostileExpressions(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 30)
	seedGuardJob(t, s)
	before := schemaAndCounts(t, s)
	ctx := context.Background()

	for _, tc := range []struct{ expr, want string }{
		{`1=1; DROP TABLE jobs`, "';' outside a string"},
		{`1) OR (1`, "')' without its '('"},
		{`1 OR (1`, "'(' without its ')'"},
		{`country = 'US`, "unterminated string"},
		{`1 /* open`, "unterminated /* comment"},
		{"1\x00) OR (1", "NUL byte"},
		{`(SELECT count(*) FROM sqlite_master) > 0`, "only columns of consumers may be read, not sqlite_master"},
		{`(SELECT count(*) FROM sqlite_schema) > 0`, "only columns of consumers may be read, not sqlite_schema"},
		{`id IN (SELECT consumer_id FROM deliveries)`, "not deliveries.consumer_id"},
		{`(SELECT count(*) FROM jobs) >= 0`, "not jobs"},
		{`id IN (SELECT key FROM jobs)`, "not jobs.key"},
		{`(SELECT count(*) FROM pragma_table_info('jobs')) > 0`, "not pragma_table_info"},
		{`(SELECT * FROM pragma_table_info('jobs'))`, "not pragma_table_info"},
		{`(SELECT count(*) FROM pragma_database_list) > 0`, "not pragma_database_list"},
		{`id IN (SELECT value FROM json_each('[1,2]'))`, "not json_each"},
		{`load_extension('x') IS NULL`, "function load_extension() is not allowed"},
		{`length(randomblob(1e9)) > 0`, "function randomblob() is not allowed"},
		{`length(zeroblob(1e9)) > 0`, "function zeroblob() is not allowed"},
		{`length(printf('%.*c', 1000000000, 'x')) > 0`, "function printf() is not allowed"},
		{`readfile('/etc/passwd') IS NOT NULL`, "function readfile() is not allowed"},
		{`sqlite_attach('x.db', 'x', NULL) IS NULL`, "function sqlite_attach() is not allowed"},
		{`sqlite_version() <> ''`, "function sqlite_version() is not allowed"},
		{`id IN (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c)`, "recursive WITH is not allowed"},
		{`id IN (WITH c(x) AS (SELECT key FROM jobs) SELECT x FROM c)`, "not jobs.key"},
		// PostgreSQL's own ways out: its catalog's secrets, its files, our other tables, sequences.
		{`(SELECT count(*) FROM pg_catalog.pg_authid) > 0`, "permission denied"},
		{`pg_read_file('/etc/passwd') IS NOT NULL`, "permission denied"},
		{`(SELECT count(*) FROM redemptions) >= 0`, "permission denied"},
		{`nextval('consumers_id_seq') > 0`, "permission denied"},
		{`(SELECT count(*) FROM dblink('x', 'y')) > 0`, "does not exist"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			if s.engine == engineSQLite && (strings.HasPrefix(tc.want, "permission denied") || tc.want == "does not exist") {
				t.Skip("PostgreSQL's")
			}
			if s.engine == enginePostgres && strings.HasPrefix(tc.expr, "id IN (WITH RECURSIVE") {
				t.Skip("PostgreSQL may run a recursive WITH: statement_timeout stops it (TestPostgresSelections)")
			}
			n, err := s.CheckSelection(ctx, tc.expr, nil, true)
			if err == nil {
				t.Fatalf("matched %d, want refused", n)
			}
			if !errors.Is(err, ErrSelectionRefused) {
				t.Fatalf("error %q does not wrap ErrSelectionRefused", err)
			}
			if s.engine == enginePostgres && !lexical(tc.expr) {
				// The role's refusal, in PostgreSQL's words ("permission denied for table
				// jobs", "function randomblob(integer) does not exist").
				tc.want = ""
			}
			if !strings.HasPrefix(err.Error(), "selection sql: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
	if after := schemaAndCounts(t, s); after != before {
		t.Fatalf("database changed:\n%s\n%s", before, after)
	}
}

// lexical reports whether the store's own scan refuses expr before either engine reads it.
func lexical(expr string) bool { return exprProblem(expr) != "" }

// The guard itself, under the lexical check: statements that check would stop earlier.
func TestWithGuardRefusesStatements(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 10)
	key := seedGuardJob(t, s)
	before := schemaAndCounts(t, s)
	ctx := context.Background()
	for _, tc := range []struct{ stmt, want string }{
		{`DROP TABLE jobs`, "not authorized"},
		{`DELETE FROM consumers`, "may not write"},
		{`UPDATE consumers SET status = 'active'`, "may not write"},
		{`INSERT INTO deliveries (job_key, consumer_id) VALUES (1, 1)`, "may not write (insert into deliveries)"},
		{`INSERT INTO jobs (issuer_id, name, start_at, stop_at, client_count, text_message_id, created_at, updated_at) SELECT issuer_id, name, 0, 1, 1, text_message_id, 0, 0 FROM jobs`, "may not write (insert into jobs)"},
		{`INSERT INTO deliveries (job_key, consumer_id) SELECT ?, id FROM consumers`, "may not write (insert into deliveries)"},
		{`CREATE TABLE x (a)`, "not authorized"},
		{`CREATE TEMP TABLE x (a)`, "not authorized"},
		{`PRAGMA writable_schema = 1`, "PRAGMA is not allowed"},
		{`PRAGMA table_info(jobs)`, "PRAGMA is not allowed"},
		{`ATTACH DATABASE ':memory:' AS x`, "ATTACH and DETACH are not allowed"},
		{`BEGIN`, "transactions are not allowed"},
		{`SAVEPOINT a`, "transactions are not allowed"},
		{`VACUUM`, "not authorized"},
		{`ANALYZE`, "not authorized"},
	} {
		t.Run(tc.stmt, func(t *testing.T) {
			err := withGuardOn(t, s.write, func(conn *sql.Conn) error {
				args := []any{}
				if strings.Contains(tc.stmt, "?") {
					args = append(args, key)
				}
				_, err := conn.ExecContext(ctx, tc.stmt, args...)
				return err
			})
			if !errors.Is(err, ErrSelectionRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
	if after := schemaAndCounts(t, s); after != before {
		t.Fatalf("database changed:\n%s\n%s", before, after)
	}
}

func TestCheckSelectionGoodExpressions(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 30) // consumer 30 (US, gold) is unsubscribed
	ctx := context.Background()
	// pg is the expression in PostgreSQL's dialect where SQLite's is its own.
	for _, tc := range []struct {
		expr, pg string
		args     []any
		raw      bool
		want     int
	}{
		{`country = 'US' AND birth_year >= 1980`, "", nil, true, 9},
		{`lower(city) LIKE 'par%'`, "", nil, true, 20},
		{`json_extract(attributes,'$.plan') = 'gold'`, `CAST(attributes AS jsonb) ->> 'plan' = 'gold'`, nil, true, 14},
		{`attributes ->> '$.plan' = 'silver' AND instr(interests, ';golf;') > 0`,
			`CAST(attributes AS jsonb) ->> 'plan' = 'silver' AND strpos(interests, ';golf;') > 0`, nil, true, 15},
		{`country = 'US' -- a comment at the end`, "", nil, true, 9},
		{`coalesce(birth_year, 0) < 1980 /* French */`, "", nil, true, 20},
		{`id IN (SELECT id FROM consumers WHERE city = 'Boston')`, "", nil, true, 9},
		{`substr(email, 1, 2) = 'c1' AND length(email) = 14`, "", nil, true, 1},
		{`email = 'a;b' OR country = ')'`, "", nil, true, 0}, // ';' and ')' inside strings
		{`"country" = 'FR' AND [city] = 'Paris'`, `"country" = 'FR' AND "city" = 'Paris'`, nil, true, 20},
		{``, "", nil, false, 29},
		{`1`, `TRUE`, nil, false, 29},
		{`country = ? AND instr(interests, ';' || ? || ';') > 0`, `country = ? AND strpos(interests, ';' || ? || ';') > 0`,
			[]any{"US", "golf"}, false, 9},
		{`json_extract(attributes, '$."plan"') IN (?, ?)`, `CAST(attributes AS jsonb) ->> 'plan' IN (?, ?)`,
			[]any{"gold", "silver"}, false, 29},
	} {
		if s.engine == enginePostgres && tc.pg != "" {
			tc.expr = tc.pg
		}
		got, err := s.CheckSelection(ctx, tc.expr, tc.args, tc.raw)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: matched %d, want %d", tc.expr, got, tc.want)
		}
	}
	// Not valid SQL: an error, but not a refusal.
	_, err := s.CheckSelection(ctx, `country = = 'US'`, nil, true)
	if err == nil || errors.Is(err, ErrSelectionRefused) || !strings.HasPrefix(err.Error(), "selection sql: ") {
		t.Fatalf("syntax error: got %v", err)
	}
}

func TestCheckSelectionTimeLimit(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 2000)
	ctx := context.Background()
	// 2000³ rows: hours of work without the limit, and not recursive.
	s.selectionLimit = 200 * time.Millisecond
	_, err := s.CheckSelection(ctx, `(SELECT count(*) FROM consumers a, consumers b, consumers c WHERE a.city <> c.email) > 0`, nil, true)
	if !errors.Is(err, ErrSelectionRefused) || !strings.Contains(err.Error(), "stopped after 200ms") {
		t.Fatalf("error %v, want stopped after 200ms", err)
	}
	// The reader it ran on works afterwards.
	s.selectionLimit = selectionTimeLimit
	if n, err := s.CheckSelection(ctx, `country = 'US'`, nil, true); err != nil || n != 666 {
		t.Fatalf("after the timeout: %d, %v", n, err)
	}
	// A caller's own cancellation is reported as such, not as slowness.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.CheckSelection(cctx, `country = 'US'`, nil, true); err == nil || errors.Is(err, ErrSelectionRefused) {
		t.Fatalf("cancelled: %v", err)
	}
}

// A big value built from allowed functions stops at the guard's length cap.
func TestCheckSelectionLengthCap(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 3)
	expr := `length(` + strings.Repeat(`replace(`, 6) + `'xxxxxxxxxx'` + strings.Repeat(`, 'x', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')`, 6) + `) > 0`
	_, err := s.CheckSelection(context.Background(), expr, nil, true)
	if err == nil || !strings.Contains(err.Error(), "too big") {
		t.Fatalf("error %v, want string or blob too big", err)
	}
}

func TestWithGuardRemovesAuthorizer(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 3)
	ctx := context.Background()
	// The writer pool has one connection, so every call below gets the guarded one back.
	normal := func(when string) {
		t.Helper()
		var n int
		if err := s.write.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'jobs'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s: reading sqlite_master: %d, %v", when, n, err)
		}
		var size int
		if err := s.write.QueryRowContext(ctx, `SELECT length(zeroblob(2000000))`).Scan(&size); err != nil || size != 2000000 {
			t.Fatalf("%s: length cap still set: %d, %v", when, size, err)
		}
		if _, err := s.write.ExecContext(ctx, `UPDATE consumers SET updated_at = updated_at + 1`); err != nil {
			t.Fatalf("%s: writing: %v", when, err)
		}
		tx, err := s.write.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("%s: begin: %v", when, err)
		}
		tx.Rollback()
	}
	normal("before")

	err := withGuardOn(t, s.write, func(conn *sql.Conn) error {
		var n int
		return conn.QueryRowContext(ctx, `SELECT count(*) FROM consumers`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	normal("after a guarded query")

	err = withGuardOn(t, s.write, func(conn *sql.Conn) error {
		_, err := conn.ExecContext(ctx, `DELETE FROM jobs`)
		return err
	})
	if !errors.Is(err, ErrSelectionRefused) {
		t.Fatalf("delete under the guard: %v", err)
	}
	normal("after a refusal")

	func() {
		defer func() { _ = recover() }()
		_ = withGuardOn(t, s.write, func(conn *sql.Conn) error { panic("boom") })
	}()
	normal("after a panic")

	if _, err := s.CheckSelection(ctx, `country = 'US'`, nil, true); err != nil {
		t.Fatal(err)
	}
	// Every reader connection is free of the guard too.
	conns := make([]*sql.Conn, 4)
	for i := range conns {
		c, err := s.read.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		var n int
		if err := c.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
	}
}

func TestSelectionAuthorizer(t *testing.T) {
	const (
		ok   = sqlite3.SQLITE_OK
		deny = sqlite3.SQLITE_DENY
	)
	for _, tc := range []struct {
		op               int
		arg1, arg2, arg3 string
		want             int
	}{
		{sqlite3.SQLITE_SELECT, "", "", "", ok},
		{sqlite3.SQLITE_READ, "consumers", "email", "main", ok},
		{sqlite3.SQLITE_READ, "consumers", "", "", ok},
		{sqlite3.SQLITE_READ, "consumers", "email", "temp", deny},
		{sqlite3.SQLITE_READ, "jobs", "key", "main", deny},
		{sqlite3.SQLITE_FUNCTION, "", "lower", "", ok},
		{sqlite3.SQLITE_FUNCTION, "", "LOWER", "", ok},
		{sqlite3.SQLITE_FUNCTION, "", "randomblob", "", deny},
		{sqlite3.SQLITE_INSERT, "deliveries", "", "main", deny},
		{sqliteRecursive, "", "", "", deny},
		{sqlite3.SQLITE_PRAGMA, "table_info", "", "", deny},
		{sqlite3.SQLITE_TRANSACTION, "BEGIN", "", "", deny},
		{sqlite3.SQLITE_CREATE_TEMP_TABLE, "x", "", "temp", deny},
		{9999, "", "", "", deny},
	} {
		got := selectionAuthorizer()(tc.op, tc.arg1, tc.arg2, tc.arg3)
		if got != tc.want {
			t.Errorf("op %d (%q, %q, %q) = %d, want %d", tc.op, tc.arg1, tc.arg2, tc.arg3, got, tc.want)
		}
	}
}

// Everything postoffice's compiler writes passes the guard.
func TestCheckSelectionCompiled(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 30)
	ctx := context.Background()
	for _, tc := range []struct {
		json string
		want int
	}{
		{`{"all": [{"field": "country", "op": "=", "value": "US"}, {"any": [{"field": "birth_year", "op": ">=", "value": 1980}, {"field": "interests", "op": "contains", "value": "golf"}]}, {"field": "attr.plan", "op": "in", "value": ["gold", "silver"]}]}`, 9},
		{`{"field": "email", "op": "prefix", "value": "C1"}`, 11},
		{`{"field": "city", "op": "contains", "value": "osto"}`, 9},
		{`{"field": "birth_year", "op": "!=", "value": 1985}`, 20},
		{`{"field": "interests", "op": "not in", "value": ["golf"]}`, 0},
		{`{"field": "attr.plan", "op": "not in", "value": ["gold"]}`, 15},
		{`{"field": "attr.plan", "op": "prefix", "value": "go"}`, 14},
		{`{"field": "attr.n", "op": ">=", "value": 1}`, 0},
		{`{"field": "attr.n", "op": "!=", "value": 1.5}`, 29},
		{`{"field": "attr.n", "op": "not in", "value": [1, 2]}`, 29},
	} {
		sel, err := postoffice.ParseSelection([]byte(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		where, args := compileTest(t, s, sel, "")
		n, err := s.CheckSelection(ctx, where, args, sel.IsRaw())
		if err != nil || n != tc.want {
			t.Errorf("%s: %s: matched %d, %v; want %d", tc.json, where, n, err, tc.want)
		}
	}
}

// withGuardOn runs fn under the selection guard on a connection of db.
func withGuardOn(t *testing.T, db *sql.DB, fn func(conn *sql.Conn) error) error {
	t.Helper()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return guarded(conn, fn)
}
