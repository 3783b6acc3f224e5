package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"pointpost/store"
)

// TestFlagsAfterArguments: a flag after the file name is a flag, so the database it names is
// the one written and no ./pointpost.db appears.
func TestFlagsAfterArguments(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	csv := writeConsumers(t, 3)
	db := filepath.Join(dir, "other.db")
	runOK(t, env{}, "import", "consumers", csv, "--db", db)
	if _, err := os.Stat(filepath.Join(dir, "pointpost.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("./pointpost.db was made: %v", err)
	}
	st := openStore(t, env{"POINTPOST_DB": db})
	if n, err := st.CountConsumers(context.Background()); err != nil || n != 3 {
		t.Errorf("%s holds %d consumers, %v", db, n, err)
	}
}

// TestFlagWinsOverEnvironment: the flag is used where both give a value.
func TestFlagWinsOverEnvironment(t *testing.T) {
	e := newEnv(t, "")
	db := filepath.Join(t.TempDir(), "flag.db")
	runOK(t, e, "import", "consumers", writeConsumers(t, 2), "--db", db)
	if _, err := os.Stat(e["POINTPOST_DB"]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the environment's database was made too: %v", err)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("the flag's database: %v", err)
	}
}

// TestMalformedEnvironment: a value that does not parse is an error naming the variable,
// not a silent default.
func TestMalformedEnvironment(t *testing.T) {
	for _, bad := range []struct{ name, value string }{
		{"POINTPOST_CONNECTIONS", "abc"},
		{"POINTPOST_MAIL_SERVERS", "4x"},
		{"POINTPOST_RETRY_BASE", "soon"},
		{"POINTPOST_DEMO", "yes please"},
		{"POINTPOST_LOG", "loud"},
		{"POINTPOST_LOG_FORMAT", "xml"},
	} {
		e := newEnv(t, "")
		e[bad.name] = bad.value
		// A serve that takes the value runs until stopped: its first line stops it.
		ctx, cancel := context.WithCancel(context.Background())
		out := &lineWriter{lines: make(chan string, 16)}
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"serve"}, e.get, out) }()
		var err error
		select {
		case err = <-done:
		case <-out.lines:
			cancel()
			<-done
		}
		cancel()
		if err == nil {
			t.Errorf("%s=%s: serve started", bad.name, bad.value)
			continue
		}
		if flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(bad.name, "POINTPOST_"), "_", "-")); !strings.Contains(err.Error(), bad.name) && !strings.Contains(err.Error(), "--"+flag) {
			t.Errorf("%s=%s: the error does not say which: %v", bad.name, bad.value, err)
		}
		if _, err := os.Stat(e["POINTPOST_DB"]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s=%s: a database was made before the error", bad.name, bad.value)
		}
	}
}

// TestCommandHelp: each command lists its own flags, by -h and by help COMMAND.
func TestCommandHelp(t *testing.T) {
	for _, args := range [][]string{{"consumer", "-h"}, {"help", "consumer"}} {
		out := runOK(t, env{}, args...)
		for _, want := range []string{"consumer EMAIL", "--json", "--db", "POINTPOST_DB"} {
			if !strings.Contains(out, want) {
				t.Errorf("pointpost %s lacks %q:\n%s", strings.Join(args, " "), want, out)
			}
		}
		for _, not := range []string{"--dkim-key", "--relay", "--mail-servers"} {
			if strings.Contains(out, not) {
				t.Errorf("pointpost %s lists serve's %s:\n%s", strings.Join(args, " "), not, out)
			}
		}
	}
	out := runOK(t, env{}, "help", "serve")
	for _, want := range []string{"--metrics", "--log-format", "--dkim-key", "POINTPOST_RELAY"} {
		if !strings.Contains(out, want) {
			t.Errorf("help serve lacks %q", want)
		}
	}
	if out := runOK(t, env{}, "help", "job"); !strings.Contains(out, "suspend") || !strings.Contains(out, "schedule") {
		t.Errorf("help job does not list its commands:\n%s", out)
	}
}

// TestVersion: version and --version name the build, and every command that opens the
// database records it there.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if out := runOK(t, env{}, args...); !regexp.MustCompile(`^pointpost \S+`).MatchString(out) {
			t.Errorf("pointpost %s printed %q", args[0], out)
		}
	}
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 1))
	st := openStore(t, e)
	schema, binary, _, err := st.OpenedBy(context.Background())
	if err != nil || schema < 40 || binary != readBuildInfo().Short() {
		t.Errorf("the database records schema %d and binary %q, %v", schema, binary, err)
	}
}

// TestRefusesNewerDatabase: a database a newer binary migrated is refused with a message
// that says so, and the binary that did it.
func TestRefusesNewerDatabase(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 1))
	_, err := openSQL(t, e).Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_later.sql', 0);
		UPDATE opened_by SET binary_version = 'v99.0.0'`)
	if err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"job", "list"}, e.get, &bytes.Buffer{})
	if !errors.Is(err, store.ErrSchemaNewer) || !strings.Contains(err.Error(), "v99.0.0") {
		t.Fatalf("job list on a newer database: %v", err)
	}
}

// TestUserLinkFollowsServer: without --base-url or --http, user add prints a link to where
// serve last ran, not to port 8080.
func TestUserLinkFollowsServer(t *testing.T) {
	e := newEnv(t, "")
	srv := startServe(t, e)
	srv.stop(t)
	delete(e, "POINTPOST_HTTP")
	out := runOK(t, e, "user", "add", "--operator", "op@example.com")
	if !strings.Contains(out, "http://"+srv.addr+"/welcome/") {
		t.Errorf("user add printed %q; want a link to http://%s", out, srv.addr)
	}
	// A given --http wins.
	out = runOK(t, e, "user", "link", "op@example.com", "--http", "127.0.0.1:7001")
	if !strings.Contains(out, "http://127.0.0.1:7001/welcome/") {
		t.Errorf("user link --http printed %q", out)
	}
}

// TestLogFormatJSON: the JSON log has the same fields as the text one.
func TestLogFormatJSON(t *testing.T) {
	var buf bytes.Buffer
	(&Config{LogLevel: "info", LogFormat: "json"}).logger(&buf).Info("pointpost serving", "db", "x.db", "mail_servers", 4)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON object: %q: %v", buf.String(), err)
	}
	if rec["msg"] != "pointpost serving" || rec["db"] != "x.db" || rec["mail_servers"] != float64(4) || rec["level"] != "INFO" {
		t.Errorf("JSON log record %v", rec)
	}
}

// TestQueueMetricsLabel: the pending gauge is labelled job_key, not Prometheus's own job.
func TestQueueMetricsLabel(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 5))
	now := time.Now()
	runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 5, `{}`)))
	ctx := context.Background()
	a, err := open(ctx, &Config{DB: e["POINTPOST_DB"], From: "a@pp.example", HTTP: "127.0.0.1:0", MailServers: 1,
		Workers: 1, DKIMKey: "off"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if err := a.po.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	a.writeQueueMetrics(ctx, &buf)
	if !regexp.MustCompile(`(?m)^pointpost_job_pending\{job_key="1"\} 5$`).Match(buf.Bytes()) {
		t.Errorf("queue metrics:\n%s", buf.String())
	}
}
