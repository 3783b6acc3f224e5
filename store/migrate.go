package store

// Moving a SQLite database into PostgreSQL (issue 12, `pointpost migrate --to`): every table
// copied by the COPY protocol in one PostgreSQL transaction, so that a failure leaves the
// target as empty as it was, and checked (row counts, ledger sums, each ledger account)
// before the commit.
//
// The tables are found in SQLite's schema and paired by name with PostgreSQL's, and their
// columns likewise. A table or column that one side has and the other not is an error that
// names it, except the engine-specific ones: engineOnlyColumns, and the tables each database
// keeps for itself, which are not copied — schema_migrations (each engine's migrations,
// numbered alike), opened_by (the binary that opened this database: Migrate records its own)
// and SQLite's internal tables (sqlite_sequence is read, so that an AUTOINCREMENT id is not
// given out again). Values keep their representation (migrations/postgres/0040_baseline.sql:
// times in milliseconds, flags 0/1, JSON as text), so the conversion is by type alone:
// INTEGER to the integer columns, REAL to double precision, BLOB to bytea, TEXT checked to be
// text PostgreSQL takes.
//
// While copying, the target's user triggers are off (they would count again what the copied
// rows hold: accruals_spent) and its keys and indexes set aside, built again after the copy.
// The target is empty when no table but schema_migrations has a row: no PostgreSQL migration
// inserts any.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"pointpost/postoffice"
)

// ErrTargetNotEmpty is returned, wrapped with the table that has rows, by Migrate for a
// PostgreSQL database that already holds data: migrate copies into an empty one only.
var ErrTargetNotEmpty = errors.New("the PostgreSQL database is not empty")

// migrateSkipped are the tables each database keeps for itself (see above).
var migrateSkipped = map[string]bool{"schema_migrations": true, "opened_by": true}

// engineOnlyColumns are the columns one engine has and the other not, by "table.column", with
// what fills them on PostgreSQL: an expression over the SQLite table.
var engineOnlyColumns = map[string]string{
	// PostgreSQL keeps the quotas' order in an identity; SQLite in the rowid.
	"route_quotas.id": "rowid",
}

// MigrateReport is what a migration copied and checked.
type MigrateReport struct {
	// Tables are the tables copied, in the order they were, with their rows.
	Tables []TableRows
	// Rows is the rows copied in all.
	Rows int64
	// Ledger are the sums checked equal on both sides.
	Ledger LedgerTotals
	// Accounts is how many ledger accounts were compared one by one.
	Accounts int64
	// Selections says what became of the jobs' selections that needed a person's attention:
	// raw SQL written for SQLite.
	Selections []SelectionNote
	// Recompiled counts the structured selections compiled again for PostgreSQL.
	Recompiled int
	// Took is the whole migration; Copy the tables' copies, Keys the building of the keys
	// and indexes after them, Check the comparison of the two databases.
	Took, Copy, Keys, Check time.Duration
}

// TableRows is one table's row count, and how long its copy took.
type TableRows struct {
	Name string
	Rows int64
	Took time.Duration
}

// LedgerTotals are the sums of points a migration must keep.
type LedgerTotals struct {
	Accrued  int64 // every accrual's points
	Settled  int64 // of those, the ones posted to the ledger
	Redeemed int64 // the redeemed account's balance
	Balances int64 // the consumers' kept balances
	Spent    int64 // the issuers' running totals
	Net      int64 // every ledger entry: zero in a sound ledger
}

// SelectionNote is what the migration did with one job's raw SQL selection.
type SelectionNote struct {
	JobKey int64
	// Stopped is set when the job, which still had consumers to select, was ended because its
	// selection cannot run on PostgreSQL; Note says why.
	Stopped bool
	Note    string
}

// Migrate copies the SQLite database in file from into the empty PostgreSQL database at
// to, both opened (and so migrated) by Open, and records binary as the one that opened the
// target. Returns an error wrapping ErrTargetNotEmpty if the target holds rows, and an error
// naming the table or column for a schema the two do not share; on any error the target is
// left without data.
func Migrate(ctx context.Context, from, to, binary string) (*MigrateReport, error) {
	if IsPostgresURL(from) {
		return nil, fmt.Errorf("migrate: the source (--db) must be a SQLite file, not a PostgreSQL URL")
	}
	if !IsPostgresURL(to) {
		return nil, fmt.Errorf("migrate: the target must be a PostgreSQL URL (postgres://user:password@host/database), not %q", to)
	}
	// Open would make an empty database of a missing file, and migrate would copy nothing.
	if fi, err := os.Stat(from); err != nil {
		return nil, fmt.Errorf("migrate: source: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("migrate: source %s is not a file", from)
	}
	// The target first: an unreachable one leaves the source as it was, not migrated.
	dst, err := Open(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("migrate: target: %w", err)
	}
	defer dst.Close()
	src, err := Open(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("migrate: source: %w", err)
	}
	defer src.Close()
	report, err := src.migrateTo(ctx, dst)
	if err != nil {
		return nil, err
	}
	if err := dst.RecordOpen(ctx, binary); err != nil {
		return nil, err
	}
	return report, nil
}

// migrateTable is one table to copy: the columns both sides have, and what to read for each
// on SQLite.
type migrateTable struct {
	name    string
	columns []string
	reads   []string
	kinds   []columnKind
	// identity names the PostgreSQL columns whose sequence follows max(column).
	identity []string
}

// columnKind is how a SQLite value is converted for a PostgreSQL column.
type columnKind int

const (
	kindOther columnKind = iota
	kindInteger
	kindFloat
	kindText
	kindBytes
)

func pgColumnKind(dataType string) columnKind {
	switch dataType {
	case "smallint", "integer", "bigint":
		return kindInteger
	case "double precision", "real":
		return kindFloat
	case "text", "character varying":
		return kindText
	case "bytea":
		return kindBytes
	}
	return kindOther
}

// migrateTo copies s (SQLite) into dst (an empty PostgreSQL database) in one transaction.
func (s *Store) migrateTo(ctx context.Context, dst *Store) (*MigrateReport, error) {
	start := time.Now()
	if s.engine != engineSQLite || dst.engine != enginePostgres {
		return nil, errors.New("migrate: copies a SQLite database into a PostgreSQL one")
	}
	// One read transaction: the copy and the sums are of one moment, also while serve writes.
	srcTx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer srcTx.Rollback()
	conn, err := dst.write.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: target: %w", err)
	}
	defer conn.Close()
	var report *MigrateReport
	err = conn.Raw(func(dc any) error {
		pc, ok := dc.(*pgConn)
		if !ok {
			return fmt.Errorf("migrate: target connection is %T", dc)
		}
		tx, err := pc.Conn.Conn().Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		m := &migration{src: srcTx, dst: tx, target: dst}
		if report, err = m.run(ctx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return nil, err
	}
	report.Took = time.Since(start)
	return report, nil
}

// migration is one run of migrateTo.
type migration struct {
	src    *sql.Tx
	dst    pgx.Tx
	target *Store
	tables []migrateTable
}

func (m *migration) run(ctx context.Context) (*MigrateReport, error) {
	if err := m.plan(ctx); err != nil {
		return nil, err
	}
	if err := m.refuseData(ctx); err != nil {
		return nil, err
	}
	// The triggers would count again what the copied rows already hold (accruals_spent adds
	// each accrual to its rule's and issuer's spent, copied as they are). Rolled back with the
	// transaction on failure; enabled again below before the commit.
	for _, t := range m.tables {
		if _, err := m.dst.Exec(ctx, `ALTER TABLE `+pgx.Identifier{t.name}.Sanitize()+` DISABLE TRIGGER USER`); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", t.name, err)
		}
	}
	rebuild, err := m.setAsideKeys(ctx)
	if err != nil {
		return nil, err
	}
	report := &MigrateReport{}
	for _, t := range m.tables {
		start := time.Now()
		n, err := m.copy(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("migrate: copy %s: %w", t.name, err)
		}
		report.Tables = append(report.Tables, TableRows{t.name, n, time.Since(start)})
		report.Rows += n
		report.Copy += time.Since(start)
	}
	start := time.Now()
	for _, stmt := range rebuild {
		if _, err := m.dst.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", stmt, err)
		}
	}
	report.Keys = time.Since(start)
	for _, t := range m.tables {
		if _, err := m.dst.Exec(ctx, `ALTER TABLE `+pgx.Identifier{t.name}.Sanitize()+` ENABLE TRIGGER USER`); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", t.name, err)
		}
	}
	if err := m.resetSequences(ctx); err != nil {
		return nil, err
	}
	if err := m.selections(ctx, report); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := m.check(ctx, report); err != nil {
		return nil, err
	}
	report.Check = time.Since(start)
	return report, nil
}

// setAsideKeys drops the target's keys and indexes, to be built once over the copied rows
// rather than grown row by row (as pg_restore does), and returns the statements that build
// them again, in order: primary and unique keys, the other indexes, the foreign keys, which
// check every row then in one query each. CHECK constraints stay: they cost little a row. All
// of it is undone with the transaction if the migration fails.
func (m *migration) setAsideKeys(ctx context.Context) (rebuild []string, err error) {
	// Index builds sort in memory up to this, per build; for this transaction only.
	if _, err := m.dst.Exec(ctx, `SET LOCAL maintenance_work_mem = '256MB'`); err != nil {
		return nil, err
	}
	var drop, keys, indexes, foreign []string
	rows, err := m.dst.Query(ctx, `SELECT t.relname::text, k.conname::text, k.contype::text, pg_get_constraintdef(k.oid)
		FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
		WHERE k.connamespace = current_schema()::regnamespace AND k.contype IN ('p', 'u', 'f')
		ORDER BY k.contype = 'f' DESC, t.relname, k.conname`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var table, name, kind, def string
		if err := rows.Scan(&table, &name, &kind, &def); err != nil {
			rows.Close()
			return nil, err
		}
		if migrateSkipped[table] {
			continue
		}
		t, n := pgx.Identifier{table}.Sanitize(), pgx.Identifier{name}.Sanitize()
		drop = append(drop, `ALTER TABLE `+t+` DROP CONSTRAINT `+n)
		add := `ALTER TABLE ` + t + ` ADD CONSTRAINT ` + n + ` ` + def
		if kind == "f" {
			foreign = append(foreign, add)
		} else {
			keys = append(keys, add)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = m.dst.Query(ctx, `SELECT t.relname::text, i.relname::text, pg_get_indexdef(i.oid)
		FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
		WHERE t.relnamespace = current_schema()::regnamespace
			AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x'))
		ORDER BY t.relname, i.relname`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var table, name, def string
		if err := rows.Scan(&table, &name, &def); err != nil {
			rows.Close()
			return nil, err
		}
		if migrateSkipped[table] {
			continue
		}
		drop = append(drop, `DROP INDEX `+pgx.Identifier{name}.Sanitize())
		indexes = append(indexes, def)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, stmt := range drop {
		if _, err := m.dst.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", stmt, err)
		}
	}
	return append(append(keys, indexes...), foreign...), nil
}

// plan reads both schemas and pairs their tables and columns. Returns an error naming a table
// or column only one side has.
func (m *migration) plan(ctx context.Context) error {
	type pgColumn struct {
		name     string
		kind     columnKind
		identity bool
	}
	rows, err := m.dst.Query(ctx, `SELECT c.table_name::text, c.column_name::text, c.data_type::text,
			c.is_identity = 'YES' OR coalesce(c.column_default, '') LIKE 'nextval(%'
		FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
		ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		return fmt.Errorf("migrate: target schema: %w", err)
	}
	target := map[string][]pgColumn{}
	for rows.Next() {
		var table, dataType string
		var c pgColumn
		if err := rows.Scan(&table, &c.name, &dataType, &c.identity); err != nil {
			rows.Close()
			return err
		}
		c.kind = pgColumnKind(dataType)
		target[table] = append(target[table], c)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	names, err := scanStrings(m.src.QueryContext(ctx, `SELECT name FROM sqlite_schema
		WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`))
	if err != nil {
		return fmt.Errorf("migrate: source schema: %w", err)
	}
	source := map[string]bool{}
	tables := map[string]migrateTable{}
	for _, name := range names {
		source[name] = true
		if migrateSkipped[name] {
			continue
		}
		pgCols, ok := target[name]
		if !ok {
			return fmt.Errorf("migrate: table %s is in the SQLite database but not in PostgreSQL's schema: its rows would be lost", name)
		}
		cols, err := scanStrings(m.src.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, name))
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, c := range cols {
			have[c] = true
		}
		t := migrateTable{name: name}
		for _, c := range pgCols {
			read, ok := engineOnlyColumns[name+"."+c.name]
			switch {
			case have[c.name]:
				read = `"` + c.name + `"`
				delete(have, c.name)
			case !ok:
				return fmt.Errorf("migrate: column %s.%s is in PostgreSQL's schema but not in the SQLite database", name, c.name)
			}
			t.columns = append(t.columns, c.name)
			t.reads = append(t.reads, read)
			t.kinds = append(t.kinds, c.kind)
			if c.identity {
				t.identity = append(t.identity, c.name)
			}
		}
		for _, c := range cols {
			if have[c] {
				return fmt.Errorf("migrate: column %s.%s is in the SQLite database but not in PostgreSQL's schema: its values would be lost", name, c)
			}
		}
		tables[name] = t
	}
	for name := range target {
		if !source[name] && !migrateSkipped[name] {
			return fmt.Errorf("migrate: table %s is in PostgreSQL's schema but not in the SQLite database", name)
		}
	}
	// By name: the foreign keys, which would want an order, are set aside while copying.
	for _, name := range names {
		if t, ok := tables[name]; ok {
			m.tables = append(m.tables, t)
		}
	}
	return nil
}

// refuseData locks the target's tables against writers and returns an error wrapping
// ErrTargetNotEmpty naming the first that has a row. No PostgreSQL migration inserts rows
// (0040-0056), so an empty database is one with none at all besides schema_migrations.
func (m *migration) refuseData(ctx context.Context) error {
	var all []string
	for _, t := range m.tables {
		all = append(all, pgx.Identifier{t.name}.Sanitize())
	}
	all = append(all, `opened_by`)
	if _, err := m.dst.Exec(ctx, `LOCK TABLE `+strings.Join(all, ", ")+` IN EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("migrate: lock the target's tables: %w", err)
	}
	for _, t := range append(m.tables, migrateTable{name: "opened_by"}) {
		var has bool
		if err := m.dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{t.name}.Sanitize()+`)`).Scan(&has); err != nil {
			return err
		}
		if has {
			return fmt.Errorf("%w: table %s has rows; migrate copies into an empty database only (create a new one, or drop this one's data)",
				ErrTargetNotEmpty, t.name)
		}
	}
	return nil
}

// copy copies one table by the COPY protocol and returns its rows.
func (m *migration) copy(ctx context.Context, t migrateTable) (int64, error) {
	rows, err := m.src.QueryContext(ctx, `SELECT `+strings.Join(t.reads, ", ")+` FROM "`+t.name+`"`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	src := &copySource{table: t, rows: rows, values: make([]any, len(t.columns)), ptrs: make([]any, len(t.columns))}
	for i := range src.values {
		src.ptrs[i] = &src.values[i]
	}
	n, err := m.dst.CopyFrom(ctx, pgx.Identifier{t.name}, t.columns, src)
	if src.err != nil {
		return 0, src.err // rather than PostgreSQL's wrapping of it, "COPY from stdin failed"
	}
	if err != nil {
		return 0, err
	}
	if n != src.read {
		return 0, fmt.Errorf("read %d rows, PostgreSQL took %d", src.read, n)
	}
	return n, nil
}

// copySource streams a SQLite table's rows to CopyFrom, converted for PostgreSQL's columns.
type copySource struct {
	table  migrateTable
	rows   *sql.Rows
	values []any
	ptrs   []any
	read   int64
	err    error
}

func (c *copySource) Next() bool {
	if c.err != nil || !c.rows.Next() {
		return false
	}
	c.read++
	if c.err = c.rows.Scan(c.ptrs...); c.err != nil {
		return false
	}
	for i, v := range c.values {
		if c.values[i], c.err = convertForPG(v, c.table.kinds[i]); c.err != nil {
			c.err = fmt.Errorf("row %d (%s %v), column %s: %w", c.read, c.table.columns[0], c.values[0],
				c.table.columns[i], c.err)
			return false
		}
	}
	return true
}

func (c *copySource) Values() ([]any, error) { return c.values, nil }

func (c *copySource) Err() error {
	if c.err != nil {
		return c.err
	}
	return c.rows.Err()
}

// convertForPG turns a value as SQLite gave it into one PostgreSQL's column of kind takes.
// SQLite keeps any type in a column its table does not declare STRICT (routes' are not):
// an integral REAL goes into an integer column, an integer into a float one; anything else
// that does not fit is an error that says what it is.
func convertForPG(v any, kind columnKind) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch kind {
	case kindInteger:
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
				return int64(x), nil
			}
		case string:
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n, nil
			}
		}
		return nil, fmt.Errorf("%T %v is not an integer", v, v)
	case kindFloat:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		}
		return nil, fmt.Errorf("%T %v is not a number", v, v)
	case kindText:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case []byte:
			s = string(x)
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		default:
			return nil, fmt.Errorf("%T is not text", v)
		}
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("%q is not text PostgreSQL takes (invalid UTF-8 or a NUL byte)", s)
		}
		return s, nil
	case kindBytes:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
		return nil, fmt.Errorf("%T is not a BLOB", v)
	}
	return v, nil
}

// resetSequences moves every identity past the ids copied, and past those SQLite's
// AUTOINCREMENT has given out (sqlite_sequence): such an id is never reused.
func (m *migration) resetSequences(ctx context.Context) error {
	given := map[string]int64{}
	var hasSeq bool
	if err := m.src.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence')`).Scan(&hasSeq); err != nil {
		return err
	}
	if hasSeq {
		rows, err := m.src.QueryContext(ctx, `SELECT name, seq FROM sqlite_sequence`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var name string
			var seq int64
			if err := rows.Scan(&name, &seq); err != nil {
				rows.Close()
				return err
			}
			given[name] = seq
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	for _, t := range m.tables {
		for _, col := range t.identity {
			var top int64
			if err := m.dst.QueryRow(ctx, `SELECT coalesce(max(`+pgx.Identifier{col}.Sanitize()+`), 0) FROM `+
				pgx.Identifier{t.name}.Sanitize()).Scan(&top); err != nil {
				return err
			}
			top = max(top, given[t.name])
			// setval(seq, 1, false): the next id is 1.
			if _, err := m.dst.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), $3, $4)`,
				pgx.Identifier{t.name}.Sanitize(), col, max(top, 1), top > 0); err != nil {
				return fmt.Errorf("migrate: sequence of %s.%s: %w", t.name, col, err)
			}
		}
	}
	return nil
}

// selections writes each job's selection_sql for PostgreSQL: a structured selection compiled
// again from jobs.selection and the issuer, as CreateJob would have; a raw SQL one (or one
// that no longer checks, which the post office runs as raw) kept as written and tried by
// EXPLAIN. A job that still has consumers to select and whose SQL PostgreSQL refuses is
// ended with the reason, as the post office ends a job whose selection fails.
func (m *migration) selections(ctx context.Context, report *MigrateReport) error {
	rows, err := m.src.QueryContext(ctx, `SELECT j.key, i.slug, j.selection, j.selection_sql, j.selection_args,
			j.state, j.selected_all FROM jobs j JOIN issuers i ON i.id = j.issuer_id ORDER BY j.key`)
	if err != nil {
		return err
	}
	type job struct {
		key                     int64
		issuer, sel, where, arg string
		state                   postoffice.JobState
		selectedAll             bool
	}
	var jobs []job
	for rows.Next() {
		var j job
		if err := rows.Scan(&j.key, &j.issuer, &j.sel, &j.where, &j.arg, &j.state, &j.selectedAll); err != nil {
			rows.Close()
			return err
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, j := range jobs {
		where, args, raw, err := recompileSelection(j.sel, j.issuer)
		if err != nil {
			return fmt.Errorf("migrate: job %d: selection: %w", j.key, err)
		}
		if raw {
			where = j.where
			if err := json.Unmarshal([]byte(j.arg), &args); err != nil {
				return fmt.Errorf("migrate: job %d: selection args: %w", j.key, err)
			}
		} else {
			report.Recompiled++
		}
		list, err := json.Marshal(args)
		if err != nil {
			return err
		}
		if args == nil {
			list = []byte("[]")
		}
		if _, err := m.dst.Exec(ctx, `UPDATE jobs SET selection_sql = $1, selection_args = $2 WHERE key = $3`,
			where, string(list), j.key); err != nil {
			return fmt.Errorf("migrate: job %d: %w", j.key, err)
		}
		selecting := !j.selectedAll && j.state != postoffice.JobDone
		if !raw || !selecting {
			continue
		}
		note := SelectionNote{JobKey: j.key}
		switch problem := m.tryRaw(ctx, where, args); {
		case problem == "":
			note.Note = "raw SQL kept as written; PostgreSQL parses it, but its functions and comparisons may differ from SQLite's (LIKE is case-sensitive there): check it"
		case j.state == postoffice.JobDraft:
			note.Note = "a draft whose raw SQL does not run on PostgreSQL (" + problem + "): rewrite it before scheduling it"
		default:
			note.Stopped = true
			note.Note = "stopped: its raw SQL selection does not run on PostgreSQL: " + problem
			if _, err := m.dst.Exec(ctx, `UPDATE jobs SET state = 'done', done_reason = $1 WHERE key = $2`,
				"selection failed: migrated to PostgreSQL, where its raw SQL does not run: "+problem, j.key); err != nil {
				return fmt.Errorf("migrate: job %d: %w", j.key, err)
			}
		}
		report.Selections = append(report.Selections, note)
	}
	return nil
}

// recompileSelection compiles a job's selection for PostgreSQL. raw is set for a raw SQL
// selection and for one that no longer parses or checks, which the post office runs as raw
// (postoffice isRaw); the caller keeps the stored text for those.
func recompileSelection(selection, issuer string) (where string, args []any, raw bool, err error) {
	sel, err := postoffice.ParseSelection([]byte(selection))
	if err != nil {
		return "", nil, true, nil
	}
	c, err := sel.Check(issuer)
	if err != nil || sel.IsRaw() {
		return "", nil, true, nil
	}
	where, args, err = compileSelection(enginePostgres, c)
	return where, args, false, err
}

// tryRaw asks PostgreSQL to plan a raw selection as SelectBatch runs it, in a savepoint, and
// returns what it refused, or "" when nothing. EXPLAIN checks the names, the functions and
// the role's privileges without running the query.
func (m *migration) tryRaw(ctx context.Context, where string, args []any) string {
	expr, err := selectionExpr(where)
	if err != nil {
		return err.Error()
	}
	query, err := rebind(`EXPLAIN SELECT id FROM consumers WHERE status = 'active' AND id > 0 AND ` + expr + ` ORDER BY id`)
	if err != nil {
		return err.Error()
	}
	if err := m.target.refuseRawPG(ctx, true); err != nil {
		return err.Error()
	}
	// As the role it will run as, which may read only consumers; the savepoint's rollback
	// ends the role with it.
	sp, err := m.dst.Begin(ctx)
	if err != nil {
		return err.Error()
	}
	defer sp.Rollback(ctx)
	if _, err := sp.Exec(ctx, `SET LOCAL ROLE `+selectionRole); err != nil {
		return err.Error()
	}
	rows, err := sp.Query(ctx, query, args...)
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// check compares the copy with the source: every table's rows, the ledger's totals and each
// ledger account's balance. Returns an error naming the first difference.
func (m *migration) check(ctx context.Context, report *MigrateReport) error {
	for _, t := range report.Tables {
		var want, got int64
		q := `SELECT count(*) FROM "` + t.Name + `"`
		if err := m.src.QueryRowContext(ctx, q).Scan(&want); err != nil {
			return err
		}
		if err := m.dst.QueryRow(ctx, q).Scan(&got); err != nil {
			return err
		}
		if want != got || got != t.Rows {
			return fmt.Errorf("migrate: table %s: %d rows in SQLite, %d in PostgreSQL", t.Name, want, got)
		}
	}
	const totals = `SELECT
		(SELECT CAST(coalesce(sum(points), 0) AS BIGINT) FROM accruals),
		(SELECT CAST(coalesce(sum(points), 0) AS BIGINT) FROM accruals WHERE posted_at IS NOT NULL),
		(SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM ledger_entries WHERE account = 'redeemed'),
		(SELECT CAST(coalesce(sum(points_balance), 0) AS BIGINT) FROM consumers),
		(SELECT CAST(coalesce(sum(spent), 0) AS BIGINT) FROM issuers),
		(SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM ledger_entries)`
	var want, got LedgerTotals
	if err := m.src.QueryRowContext(ctx, totals).Scan(&want.Accrued, &want.Settled, &want.Redeemed, &want.Balances,
		&want.Spent, &want.Net); err != nil {
		return err
	}
	if err := m.dst.QueryRow(ctx, totals).Scan(&got.Accrued, &got.Settled, &got.Redeemed, &got.Balances,
		&got.Spent, &got.Net); err != nil {
		return err
	}
	if want != got {
		return fmt.Errorf("migrate: the ledger's sums differ: SQLite %+v, PostgreSQL %+v", want, got)
	}
	report.Ledger = got
	n, err := m.compareAccounts(ctx)
	if err != nil {
		return err
	}
	report.Accounts = n
	return nil
}

// compareAccounts walks both ledgers' balances by account, in byte order on both engines,
// and returns how many accounts there are, or an error naming the first that differs.
func (m *migration) compareAccounts(ctx context.Context) (int64, error) {
	const q = `SELECT account, CAST(sum(amount) AS BIGINT) FROM ledger_entries GROUP BY account ORDER BY account`
	want, err := m.src.QueryContext(ctx, q)
	if err != nil {
		return 0, err
	}
	defer want.Close()
	got, err := m.dst.Query(ctx, strings.Replace(q, "ORDER BY account", `ORDER BY account COLLATE "C"`, 1))
	if err != nil {
		return 0, err
	}
	defer got.Close()
	var n int64
	for {
		moreWant, moreGot := want.Next(), got.Next()
		if !moreWant || !moreGot {
			if moreWant || moreGot {
				return 0, fmt.Errorf("migrate: the ledgers have different accounts (after %d alike)", n)
			}
			break
		}
		var wa, ga string
		var wb, gb int64
		if err := want.Scan(&wa, &wb); err != nil {
			return 0, err
		}
		if err := got.Scan(&ga, &gb); err != nil {
			return 0, err
		}
		if wa != ga || wb != gb {
			return 0, fmt.Errorf("migrate: ledger account %s has %d points in SQLite, PostgreSQL's %s has %d", wa, wb, ga, gb)
		}
		n++
	}
	if err := want.Err(); err != nil {
		return 0, err
	}
	return n, got.Err()
}

// scanStrings reads a column of text.
func scanStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
