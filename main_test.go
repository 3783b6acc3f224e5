package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/store"
	"pointpost/store/pgtest"
)

// env is a test's environment for run: a database in a temp dir and quick retries.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// pgServer is the PostgreSQL the tests create databases on; nil without one.
var pgServer *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pgServer)) }

// postgresTests are the tests TestCommandsOnPostgres runs again on PostgreSQL: the whole loop
// and the commands and pages of every part (campaigns, consumers, jobs, points, webhooks,
// health, routes), a few each, for a cost of some seconds. Each of the others passes there
// too, bar the SQLite backup's (sqliteOnly): POINTPOST_TEST_ENGINE=postgres go test .
var postgresTests = []string{
	"TestWholeLoop",
	"TestRawSQLSelection",
	"TestCampaignErrorsNameTheField",
	"TestImportReportsBadRows",
	"TestRefusesNewerDatabase",
	"TestSuspendResumeAndRestart",
	"TestReplyEarnsPointsOnce",
	"TestSubmitEarnsPointsOnce",
	"TestRedeemWithTheMailedCode",
	"TestIssuerBudgetAndCatalogCommands",
	"TestScheduleAgainstTheIssuersBudget",
	"TestAccountCommands",
	"TestProviderWebhooksFindDeliveriesByCustomArgument",
	"TestHealthAndReadiness",
	"TestRouteAddedThroughTheAPIIsUsedWithoutRestart",
	"TestBrowserConsumerAccount",
}

// TestCommandsOnPostgres runs postgresTests again on PostgreSQL, in this test binary run
// again with its databases there, and checks that each of them ran and passed.
func TestCommandsOnPostgres(t *testing.T) {
	pgtest.Need(t, pgServer).RunAgain(t, postgresTests)
}

// testDatabase names a fresh database for t on the engine the tests run on.
func testDatabase(t testing.TB, dir string) string {
	t.Helper()
	return pgtest.Database(t, pgServer, filepath.Join(dir, "pointpost.db"))
}

// sqliteOnly skips t when the tests run on PostgreSQL: what it tests is SQLite's alone.
func sqliteOnly(t *testing.T, what string) {
	t.Helper()
	if pgtest.OnPostgres() {
		t.Skip("SQLite's alone: " + what)
	}
}

// openSQL opens the database of e without the store, with its engine's driver, for a test
// to write what the store would not.
func openSQL(t *testing.T, e env) *sql.DB {
	t.Helper()
	driver := "sqlite3"
	if pgtest.OnPostgres() {
		driver = "pgx"
	}
	db, err := sql.Open(driver, e["POINTPOST_DB"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newEnv(t *testing.T, relay string) env {
	dir := t.TempDir()
	return env{
		"POINTPOST_DB":            testDatabase(t, dir),
		"POINTPOST_DKIM_KEY":      filepath.Join(dir, "dkim.pem"),
		"POINTPOST_DKIM_KEY_TYPE": "ed25519",
		// bcrypt at its least cost: under the race detector the default takes many seconds.
		"POINTPOST_PASSWORD_COST": "4",
		"POINTPOST_HTTP":          "127.0.0.1:0",
		"POINTPOST_SMTP":          "127.0.0.1:0",
		"POINTPOST_METRICS":       "127.0.0.1:0",
		// Every test client dials from 127.0.0.1, some 50 at once.
		"POINTPOST_SMTP_MAX_PER_CLIENT": "100",
		"POINTPOST_SETTLE_INTERVAL":     "100ms",
		"POINTPOST_RELAY":               relay,
		"POINTPOST_RETRY_BASE":          "100ms",
		"POINTPOST_MAX_RETRIES":         "3",
		"POINTPOST_MAIL_SERVERS":        "2",
		"POINTPOST_CONNECTIONS":         "4",
		"POINTPOST_LOG":                 "warn",
	}
}

// runOK runs a command to completion and returns what it printed.
func runOK(t *testing.T, e env, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, e.get, &out); err != nil {
		t.Fatalf("pointpost %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// server is a running `pointpost serve`.
type server struct {
	addr    string
	smtp    string
	metrics string
	cancel  context.CancelFunc
	done    chan error
}

// lineWriter hands each printed line to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- line:
		default:
		}
	}
}

func startServe(t *testing.T, e env) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{lines: make(chan string, 16)}
	s := &server{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, []string{"serve"}, e.get, out) }()
	select {
	case line := <-out.lines:
		m := regexp.MustCompile(`http://([0-9.:]+)/ \(replies: smtp://([0-9.:]+)\)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected first line %q", line)
		}
		s.addr, s.smtp = m[1], m[2]
	case err := <-s.done:
		t.Fatalf("serve ended early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	if e["POINTPOST_METRICS"] != "" {
		// The next line says where the metrics are.
		select {
		case line := <-out.lines:
			m := regexp.MustCompile(`^metrics: http://([0-9.:]+)/metrics$`).FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				t.Fatalf("unexpected second line %q", line)
			}
			s.metrics = m[1]
		case <-time.After(20 * time.Second):
			t.Fatal("serve did not say where the metrics are")
		}
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *server) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("serve did not stop within 20s")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openStore(t *testing.T, e env) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), e["POINTPOST_DB"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func jobState(t *testing.T, st *store.Store, key int64) *postoffice.Job {
	t.Helper()
	j, err := st.Job(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// mailServerStatus is what mail server id last reported, as the store saved it.
func mailServerStatus(t *testing.T, st *store.Store, id int) postoffice.MailServerStatus {
	t.Helper()
	statuses, err := st.MailServers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range statuses {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no mail server %d among %+v", id, statuses)
	return postoffice.MailServerStatus{}
}

// writeConsumers writes a CSV of n consumers: even ones in the US, odd ones in CA; every
// third reads HTML; every fifth likes golf; a plan attribute.
func writeConsumers(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("email,first_name,last_name,city,country,birth_year,interests,format,plan\n")
	for i := 0; i < n; i++ {
		country, format, interests := "US", "text", "travel"
		if i%2 == 1 {
			country = "CA"
		}
		if i%3 == 0 {
			format = "html"
		}
		if i%5 == 0 {
			interests = "golf;travel"
		}
		plan := []string{"gold", "silver", "bronze"}[i%3]
		fmt.Fprintf(&b, "c%d@example.com,Zoë%d,Smith,Town %d,%s,%d,%s,%s,%s\n", i, i, i, country, 1950+i%50, interests, format, plan)
	}
	path := filepath.Join(t.TempDir(), "consumers.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeCampaign(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "campaign.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func campaignJSON(start, stop time.Time, count int, selection string) string {
	return fmt.Sprintf(`{"issuer": "acme", "name": "Spring", "start": %q, "stop": %q, "client_count": %d,
		"selection": %s,
		"text": {"subject": "<_&getUserName_>, points for you", "body": "Dear <_&getUserName_> of <_&getCity_>,\nplan <_&getAttr:plan_>\n<_&getAckURL_>\nyour points: <_&getAccountURL_>\n"},
		"html": {"subject": "<_&getUserName_>, points await", "body": "<p>Dear <_&getUserName_> of <_&getCity_></p><a href=\"<_&getAckURL_>\">earn</a>"}}`,
		start.UTC().Format(time.RFC3339), stop.UTC().Format(time.RFC3339), count, selection)
}

// received parses what the sink kept, by recipient.
type received struct {
	to, subject, contentType, body string
}

func parseSink(t *testing.T, msgs []mailer.SinkMessage) map[string][]received {
	t.Helper()
	out := map[string][]received{}
	for _, m := range msgs {
		r, err := gomail.CreateReader(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("message to %s does not parse: %v", m.To, err)
		}
		subject, _ := r.Header.Subject()
		part, err := r.NextPart()
		if err != nil {
			t.Fatalf("message to %s has no body: %v", m.To, err)
		}
		ct, _, _ := part.Header.(*gomail.InlineHeader).ContentType()
		body, _ := io.ReadAll(part.Body)
		out[m.To] = append(out[m.To], received{to: m.To, subject: subject, contentType: ct, body: string(body)})
	}
	return out
}

func keyring(t *testing.T, st *store.Store) *postoffice.Keyring {
	t.Helper()
	current, secrets, err := st.TokenSecrets(context.Background(), postoffice.NewSecret)
	if err != nil {
		t.Fatal(err)
	}
	k, err := postoffice.NewKeyring(current, secrets)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nonsense"}, {"import", "people"}, {"job", "suspend"}, {"serve", "--mail-servers", "0"}} {
		if err := run(context.Background(), args, env{}.get, io.Discard); err == nil {
			t.Errorf("pointpost %v: no error", args)
		}
	}
}
