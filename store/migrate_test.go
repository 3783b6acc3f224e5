package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store/pgtest"
)

// migrateWorld is a SQLite database filled through the store's own flows, and what the
// tests check on the copy.
type migrateWorld struct {
	s         *Store
	file      string
	consumers []int64
	job       *postoffice.Job
	// structured, rawSQLite and rawDraft are jobs not yet selected: a structured selection
	// (a prefix, which each engine compiles its own way), a raw one in SQLite's dialect
	// alone, and a raw draft PostgreSQL reads too.
	structured, rawSQLite, rawDraft int64
}

// newMigrateWorld makes a SQLite database with consumers, a job selected and sent, replies
// and clicks acknowledged under two rules, settlement, a correction, a redemption, a
// redemption code replaced (its AUTOINCREMENT id), users with a session and an API key, a
// segment, a route with quotas, a bounce, settings, and the three jobs of migrateWorld.
func newMigrateWorld(t *testing.T) *migrateWorld {
	t.Helper()
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "source.db")
	s, err := Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w := &migrateWorld{s: s, file: file, consumers: seedAckConsumers(t, s, 30)}
	iss := seedAckIssuer(t, s, "acme")
	reply := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce})
	click := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 3, Frequency: rewards.FrequencyOnce})
	w.job = seedAckJob(t, s, iss, time.Time{}, reply, click)
	for i, id := range w.consumers[:20] {
		mustAcknowledge(t, s, ackAt(w.job, id, postoffice.ChannelReply, ackT0.Add(time.Duration(i)*time.Minute)))
		if i%2 == 0 {
			mustAcknowledge(t, s, ackAt(w.job, id, postoffice.ChannelClick, ackT0.Add(time.Duration(i)*time.Minute)))
		}
	}
	if _, err := s.Settle(ctx, 15); err != nil { // some accruals stay pending
		t.Fatal(err)
	}
	if err := s.Correct(ctx, w.consumers[1], iss, 7, "goodwill"); err != nil {
		t.Fatal(err)
	}
	item := &rewards.CatalogItem{Name: "mug", Cost: 5, Stock: 3}
	if err := s.AddCatalogItem(ctx, item); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(ctx, w.consumers[0], item.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // each replaces the one before: the AUTOINCREMENT counter runs ahead of max(id)
		if _, err := s.CreateRedemptionCode(ctx, w.consumers[2], item.ID, []byte{byte(i)}, ackT0, ackT0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	op := &rewards.User{Email: "Op@Example.com", Role: rewards.RoleOperator}
	if err := s.CreateUser(ctx, op, ackT0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, &rewards.User{Email: "ann@acme.example", Role: rewards.RoleIssuer, IssuerID: iss}, ackT0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, []byte("session-hash"), op.ID, ackT0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(ctx, &rewards.APIKey{Name: "ci", Prefix: "pp_1", IssuerID: iss}, []byte("key-hash"), ackT0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSegment(ctx, &postoffice.Segment{IssuerID: iss, Name: "golfers", Selection: `{"field":"interests","op":"contains","value":"golf"}`}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRoute(ctx, postoffice.Route{Name: "main", URL: "smtp://relay.example:25", Rate: 12.5,
		Quotas: []postoffice.Quota{{Limit: 100, Window: time.Hour}, {Limit: 1000, Window: 24 * time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	mustRecordBounce(t, s, &Bounce{Message: InboundMessage{Kind: "bounce", JobKey: w.job.Key, ConsumerID: w.consumers[29], From: "MAILER-DAEMON@mx"},
		Key: "<b1@mx>", Failures: []BounceFailure{{Email: "c000029@example.com", Severity: BounceHard, Status: "5.1.1", Detail: "5.1.1 user unknown"}}})
	if err := s.SetSetting(ctx, "from", "Acme <news@acme.example>"); err != nil {
		t.Fatal(err)
	}
	w.structured = migrateJob(t, s, iss, `{"field":"email","op":"prefix","value":"c00001"}`, postoffice.JobScheduled)
	w.rawSQLite = migrateJob(t, s, iss, `{"sql":"instr(email, 'c00002') > 0"}`, postoffice.JobScheduled)
	w.rawDraft = migrateJob(t, s, iss, `{"sql":"first_name = 'C' AND birth_year IS NULL"}`, postoffice.JobDraft)
	return w
}

// migrateJob creates a job with a selection as the post office does: checked, compiled by
// the store's engine, and proved by CheckSelection.
func migrateJob(t *testing.T, s *Store, issuer int64, selection string, state postoffice.JobState) int64 {
	t.Helper()
	ctx := context.Background()
	sel, err := postoffice.ParseSelection([]byte(selection))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sel.Check("acme")
	if err != nil {
		t.Fatal(err)
	}
	job := &postoffice.Job{IssuerID: issuer, Name: "later", State: state, Start: ackT0, Stop: ackT0.Add(24 * time.Hour),
		ClientCount: 1000, Selection: selection}
	if job.SelectionSQL, job.SelectionArgs, err = s.CompileSelection(c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckSelection(ctx, job.SelectionSQL, job.SelectionArgs, c.Raw != ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	return job.Key
}

// openPG opens a fresh PostgreSQL database on the tests' cluster.
func openPG(t *testing.T) (*Store, string) {
	t.Helper()
	url := pgtest.Need(t, pgServer).NewDatabase(t)
	s, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, url
}

// pgRows counts the rows of every table of a PostgreSQL store but schema_migrations.
func pgRows(t *testing.T, s *Store) int64 {
	t.Helper()
	tables, err := scanStrings(s.read.Query(`SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name != 'schema_migrations'`))
	if err != nil || len(tables) < 20 {
		t.Fatalf("tables %v: %v", tables, err)
	}
	var all int64
	for _, table := range tables {
		var n int64
		if err := s.read.QueryRow(`SELECT count(*) FROM "` + table + `"`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		all += n
	}
	return all
}

// pgSchema describes a PostgreSQL store's keys, indexes and triggers (with whether each is
// enabled), which a migration sets aside while it copies.
func pgSchema(t *testing.T, s *Store) string {
	t.Helper()
	parts, err := scanStrings(s.read.Query(`SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
			FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
		UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()
		UNION ALL SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
		ORDER BY 1`))
	if err != nil || len(parts) < 50 {
		t.Fatalf("schema %v: %v", parts, err)
	}
	return strings.Join(parts, "\n")
}

func TestMigrateCopiesEverythingAndTheCopyWorks(t *testing.T) {
	w := newMigrateWorld(t)
	ctx := context.Background()
	dst, url := openPG(t)
	dst.Close()
	report, err := Migrate(ctx, w.file, url, "test-binary")
	if err != nil {
		t.Fatal(err)
	}
	dst, err = Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	// The keys, indexes and triggers set aside for the copy are back.
	fresh, _ := openPG(t)
	if got, want := pgSchema(t, dst), pgSchema(t, fresh); got != want {
		t.Errorf("schema after the migration:\n%s\nwant:\n%s", got, want)
	}

	// Every table and row, and the ledger's sums.
	var rows int64
	for _, tr := range report.Tables {
		var want int64
		if err := w.s.read.QueryRow(`SELECT count(*) FROM "` + tr.Name + `"`).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if tr.Rows != want {
			t.Errorf("%s: copied %d rows of %d", tr.Name, tr.Rows, want)
		}
		rows += want
	}
	if report.Rows != rows || pgRows(t, dst) != rows+1 { // + opened_by, recorded by Migrate
		t.Errorf("report %d rows, source %d, target %d", report.Rows, rows, pgRows(t, dst))
	}
	if len(report.Tables) < 30 {
		t.Errorf("only %d tables copied: %+v", len(report.Tables), report.Tables)
	}
	l := report.Ledger
	var accounts int64
	if err := w.s.read.QueryRow(`SELECT count(DISTINCT account) FROM ledger_entries`).Scan(&accounts); err != nil {
		t.Fatal(err)
	}
	if l.Accrued != 20*10+10*3 || l.Settled >= l.Accrued || l.Settled == 0 || l.Redeemed != 5 || l.Net != 0 ||
		l.Balances != l.Settled+7-5 || l.Spent != l.Accrued || report.Accounts != accounts || accounts < 5 {
		t.Errorf("ledger %+v, %d accounts", l, report.Accounts)
	}

	// The copy, opened on PostgreSQL, shows what the source shows.
	for _, id := range w.consumers {
		want, err := w.s.Account(ctx, id, 100)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dst.Account(ctx, id, 100)
		if err != nil {
			t.Fatal(err)
		}
		if got.Balance != want.Balance || got.Pending != want.Pending || len(got.History) != len(want.History) {
			t.Errorf("consumer %d: PostgreSQL balance %d pending %d (%d entries), SQLite %d %d (%d)", id,
				got.Balance, got.Pending, len(got.History), want.Balance, want.Pending, len(want.History))
		}
	}
	// The deliveries by state, as JobCounts counts them (whose sum of comparisons PostgreSQL
	// does not take yet).
	for _, key := range []int64{w.job.Key, w.structured} {
		const q = `SELECT count(*), coalesce(sum(sent), 0), coalesce(sum(received), 0), coalesce(sum(rejected), 0),
			coalesce(sum(failed), 0), coalesce(sum(retry_count), 0) FROM deliveries WHERE job_key = ?`
		var want, got [6]int64
		if err := w.s.read.QueryRow(q, key).Scan(&want[0], &want[1], &want[2], &want[3], &want[4], &want[5]); err != nil {
			t.Fatal(err)
		}
		if err := dst.read.QueryRow(q, key).Scan(&got[0], &got[1], &got[2], &got[3], &got[4], &got[5]); err != nil || got != want {
			t.Errorf("job %d deliveries: PostgreSQL %v (%v), SQLite %v", key, got, err, want)
		}
	}
	if b, s, err := dst.IssuerBudget(ctx, w.job.IssuerID); err != nil || s != l.Accrued {
		t.Errorf("issuer budget %d spent %d: %v", b, s, err)
	}

	// Selections: the structured one compiled again and selecting the same consumers as on
	// SQLite; the SQLite-only raw one stopped with the reason; the portable draft kept.
	job, err := dst.Job(ctx, w.structured)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(job.SelectionSQL, "starts_with") || len(job.SelectionArgs) != 1 || report.Recompiled != 2 {
		t.Errorf("structured selection on PostgreSQL: %q %v (%d recompiled)", job.SelectionSQL, job.SelectionArgs, report.Recompiled)
	}
	srcJob, err := w.s.Job(ctx, w.structured)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{w.s, dst} {
		j := srcJob
		if st == dst {
			j = job
		}
		if added, complete, err := st.SelectBatch(ctx, j, false, 100); err != nil || added != 10 || !complete {
			t.Errorf("SelectBatch on %v: %d, %v, %v", st.engine, added, complete, err)
		}
	}
	stopped, err := dst.Job(ctx, w.rawSQLite)
	if err != nil {
		t.Fatal(err)
	}
	if stopped.State != postoffice.JobDone || !strings.Contains(stopped.DoneReason, "instr") {
		t.Errorf("SQLite-only raw job on PostgreSQL: %s %q", stopped.State, stopped.DoneReason)
	}
	draft, err := dst.Job(ctx, w.rawDraft)
	if err != nil {
		t.Fatal(err)
	}
	if draft.State != postoffice.JobDraft || draft.SelectionSQL == "" {
		t.Errorf("raw draft on PostgreSQL: %s %q", draft.State, draft.SelectionSQL)
	}
	notes := fmt.Sprint(report.Selections)
	if len(report.Selections) != 2 || !report.Selections[0].Stopped || report.Selections[1].Stopped ||
		report.Selections[0].JobKey != w.rawSQLite || report.Selections[1].JobKey != w.rawDraft {
		t.Errorf("selection notes: %s", notes)
	}

	// New rows continue past the copied ids, AUTOINCREMENT's included, and the triggers are on
	// again: a new acknowledgement's accrual counts in the issuer's spent.
	if _, _, err := dst.UpsertConsumers(ctx, []rewards.Consumer{{Email: "new@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if c, err := dst.ConsumerByEmail(ctx, "new@example.com"); err != nil || c.ID != w.consumers[len(w.consumers)-1]+1 {
		t.Errorf("new consumer: %+v, %v", c, err)
	}
	var seq int64
	if err := w.s.read.QueryRow(`SELECT seq FROM sqlite_sequence WHERE name = 'redemption_codes'`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if id, err := dst.CreateRedemptionCode(ctx, w.consumers[3], 1, []byte("x"), ackT0, ackT0.Add(time.Hour)); err != nil || id != seq+1 {
		t.Errorf("new redemption code %d (AUTOINCREMENT gave %d): %v", id, seq, err)
	}
	res := mustAcknowledge(t, dst, ackAt(w.job, w.consumers[25], postoffice.ChannelReply, ackT0))
	if _, spent, err := dst.IssuerBudget(ctx, w.job.IssuerID); err != nil || spent != l.Accrued+10 {
		t.Errorf("after a new acknowledgement (%+v): spent %d, %v", res, spent, err)
	}
	if _, err := dst.Settle(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Redeem(ctx, w.consumers[4], 1); err != nil {
		t.Fatal(err)
	}
	if schema, binary, _, err := dst.OpenedBy(ctx); err != nil || binary != "test-binary" || schema < 56 {
		t.Errorf("opened by %d %q: %v", schema, binary, err)
	}
}

func TestMigrateRefusesATargetWithData(t *testing.T) {
	w := newMigrateWorld(t)
	ctx := context.Background()
	dst, url := openPG(t)
	if _, _, err := dst.UpsertConsumers(ctx, []rewards.Consumer{{Email: "already@example.com"}}); err != nil {
		t.Fatal(err)
	}
	_, err := Migrate(ctx, w.file, url, "test")
	if !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), "table consumers has rows") {
		t.Fatalf("got %v, want a refusal naming consumers", err)
	}
	if n := pgRows(t, dst); n != 1 {
		t.Errorf("the target has %d rows after the refusal, want its 1", n)
	}
}

// TestMigrateFailureLeavesTheTargetEmpty breaks the copy midway, after the tables before it
// by name are copied: a row PostgreSQL refuses (a negative balance, which its CHECK refuses
// and SQLite's trigger, dropped here, would), a row the migration refuses itself (text that
// is not UTF-8), and, once every row is copied, a row naming a row that does not exist. Each
// time the target is left empty as it was, and takes the whole copy once the source is
// mended.
func TestMigrateFailureLeavesTheTargetEmpty(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, break_, mend, want string
	}{
		{"refused by PostgreSQL", `DROP TRIGGER consumers_balance_not_negative;
			UPDATE consumers SET points_balance = -1 WHERE id = 29`,
			`UPDATE consumers SET points_balance = 0 WHERE id = 29`, `copy consumers: ERROR: new row for relation "consumers" violates check constraint "consumers_balance_not_negative"`},
		{"refused by the migration", `UPDATE bounces SET detail = CAST(x'66ff6f' AS TEXT)`,
			`UPDATE bounces SET detail = 'mended'`, "copy bounces: row 1 (id 1), column detail"},
		// After every row is copied, when the foreign keys are built again.
		{"a row naming no row", `PRAGMA foreign_keys = OFF; INSERT INTO deliveries (job_key, consumer_id) VALUES (1, 999999);
			PRAGMA foreign_keys = ON`, `DELETE FROM deliveries WHERE consumer_id = 999999`, "deliveries_consumer_id_fkey"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newMigrateWorld(t)
			dst, url := openPG(t)
			if _, err := w.s.write.Exec(c.break_); err != nil {
				t.Fatal(err)
			}
			_, err := Migrate(ctx, w.file, url, "test")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
			if n := pgRows(t, dst); n != 0 {
				t.Fatalf("the failed migration left %d rows", n)
			}
			fresh, _ := openPG(t)
			if got, want := pgSchema(t, dst), pgSchema(t, fresh); got != want {
				t.Errorf("schema after the failed migration:\n%s\nwant:\n%s", got, want)
			}
			if _, err := w.s.write.Exec(c.mend); err != nil {
				t.Fatal(err)
			}
			if _, err := Migrate(ctx, w.file, url, "test"); err != nil {
				t.Fatalf("after mending: %v", err)
			}
		})
	}
}

func TestMigrateRefusesSchemasThatDiffer(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ change, want string }{
		{`ALTER TABLE consumers ADD COLUMN shoe_size INTEGER`, "column consumers.shoe_size is in the SQLite database but not in PostgreSQL's schema"},
		{`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)`, "table notes is in the SQLite database but not in PostgreSQL's schema"},
		{`ALTER TABLE outbox DROP COLUMN subject`, "column outbox.subject is in PostgreSQL's schema but not in the SQLite database"},
	} {
		s := openSQLite(t)
		if _, err := s.write.Exec(c.change); err != nil {
			t.Fatal(err)
		}
		dst, _ := openPG(t)
		if _, err := s.migrateTo(ctx, dst); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.change, err, c.want)
		}
	}
}

func TestMigrateRefusesWhatItCannotCopy(t *testing.T) {
	ctx := context.Background()
	pgtest.Need(t, pgServer)
	file := filepath.Join(t.TempDir(), "pointpost.db")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on: one just freed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "postgres://pointpost@" + l.Addr().String() + "/pointpost?connect_timeout=10"
	l.Close()
	for _, c := range []struct{ from, to, want string }{
		{file, down, "migrate: target: open PostgreSQL"},
		{filepath.Join(t.TempDir(), "missing.db"), down, "migrate: source: stat"},
		{down, down, "the source (--db) must be a SQLite file"},
		{file, filepath.Join(t.TempDir(), "other.db"), "the target must be a PostgreSQL URL"},
	} {
		if _, err := Migrate(ctx, c.from, c.to, "test"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Migrate(%s, %s): got %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

// TestMigrateFillLarge builds the database `pointpost migrate` is measured on (README), at
// the file POINTPOST_MIGRATE_FILL names: 1,000,000 consumers, one job selected over all of
// them by SelectBatch and sent, 300,000 replies acknowledged with their accruals, settled by
// Settle. Rows that would take the real flows minutes (sends, acknowledgements) are written
// by SQL as those flows write them. Skipped without the variable: it is a measurement's
// set-up, not a test.
func TestMigrateFillLarge(t *testing.T) {
	file := os.Getenv("POINTPOST_MIGRATE_FILL")
	if file == "" {
		t.Skip("set POINTPOST_MIGRATE_FILL=FILE to build the 1,000,000-consumer database")
	}
	const consumers, replies = 1_000_000, 300_000
	ctx := context.Background()
	s, err := Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	now := ms(ackT0)
	if _, err := s.write.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO consumers (email, first_name, last_name, city, country, postal_code, birth_year, gender,
			interests, format, attributes, created_at, updated_at)
		SELECT printf('c%07d@example.com', i), 'First' || i, 'Last' || (i % 977), 'City' || (i % 313), 'US',
			printf('%05d', i % 99999), 1940 + i % 65, CASE i % 2 WHEN 0 THEN 'f' ELSE 'm' END,
			CASE i % 3 WHEN 0 THEN ';golf;tennis;' WHEN 1 THEN ';tennis;' ELSE '' END,
			CASE i % 4 WHEN 0 THEN 'html' ELSE 'text' END, '{"plan":"gold","visits":"' || (i % 50) || '"}', ?, ?
		FROM n`, consumers, now, now); err != nil {
		t.Fatal(err)
	}
	t.Logf("consumers: %v", time.Since(start))
	iss := seedAckIssuer(t, s, "acme")
	rule := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce})
	job := &postoffice.Job{IssuerID: iss, Name: "everyone", State: postoffice.JobRunning, Start: ackT0.Add(-time.Hour),
		Stop: ackT0.Add(30 * 24 * time.Hour), ClientCount: consumers, SelectionSQL: "1"}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	if err := s.LinkJobRules(ctx, job.Key, []int64{rule.ID}); err != nil {
		t.Fatal(err)
	}
	for complete := false; !complete; {
		if _, complete, err = s.SelectBatch(ctx, job, false, 50_000); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("selected: %v", time.Since(start))
	if _, err := s.write.Exec(`UPDATE deliveries SET sent = 1, sent_at = ?1 + id, updated_at = ?1 + id WHERE job_key = ?2`, now, job.Key); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE deliveries SET received = 1, received_at = ?1 + 86400000 + id WHERE job_key = ?2 AND consumer_id <= ?3`,
		`INSERT INTO acknowledgements (job_key, consumer_id, channel, source, rule_id, awarded, points, reason, created_at)
			SELECT ?2, consumer_id, 'reply', 'smtp', ?4, 1, 10, '', ?1 + 86400000 + id FROM deliveries WHERE job_key = ?2 AND consumer_id <= ?3`,
		`INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
			SELECT ?4, ?2, consumer_id, 0, ?5, 10, ?1 + 86400000 + id FROM deliveries WHERE job_key = ?2 AND consumer_id <= ?3`,
	} {
		if _, err := s.write.Exec(q, now, job.Key, replies, rule.ID, iss); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("sent and acknowledged: %v", time.Since(start))
	for {
		n, err := s.Settle(ctx, 50_000)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	var sum, entries int64
	if err := s.read.QueryRow(`SELECT sum(points_balance), (SELECT count(*) FROM ledger_entries) FROM consumers`).Scan(&sum, &entries); err != nil {
		t.Fatal(err)
	}
	if sum != replies*10 {
		t.Fatalf("balances sum to %d, want %d", sum, replies*10)
	}
	t.Logf("settled (%d ledger entries): %v", entries, time.Since(start))
}

// TestConvertForPG: what a table not declared STRICT may hold is converted where nothing is
// lost, and refused, saying what it is, where something would be.
func TestConvertForPG(t *testing.T) {
	for _, c := range []struct {
		v    any
		kind columnKind
		want any
		err  string
	}{
		{int64(7), kindInteger, int64(7), ""},
		{float64(12), kindInteger, int64(12), ""},
		{"42", kindInteger, int64(42), ""},
		{12.5, kindInteger, nil, "float64 12.5 is not an integer"},
		{"twelve", kindInteger, nil, "string twelve is not an integer"},
		{int64(3), kindFloat, float64(3), ""},
		{"3", kindFloat, nil, "string 3 is not a number"},
		{[]byte("abc"), kindText, "abc", ""},
		{int64(5), kindText, "5", ""},
		{"a\x00b", kindText, nil, "not text PostgreSQL takes"},
		{"abc", kindBytes, []byte("abc"), ""},
		{int64(1), kindBytes, nil, "int64 is not a BLOB"},
		{nil, kindInteger, nil, ""},
	} {
		got, err := convertForPG(c.v, c.kind)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("convertForPG(%#v, %d): %v, want %q", c.v, c.kind, err, c.err)
			}
			continue
		}
		if err != nil || fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", c.want) {
			t.Errorf("convertForPG(%#v, %d) = %#v, %v; want %#v", c.v, c.kind, got, err, c.want)
		}
	}
}
