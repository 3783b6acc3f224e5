package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/store"
	"pointpost/store/pgtest"
)

// TestBackupDuringJobRestores takes `pointpost backup` while serve sends a job, restores the
// copy in place of the database as the README says, and serves again: the job resumes from
// the copy and finishes with every recipient once. The sink takes the first 300 messages,
// then holds the next ones until the backup is written and refuses them (4xx), so what the
// copy records as sent is exactly what the sink accepted.
func TestBackupDuringJobRestores(t *testing.T) {
	sqliteOnly(t, "the online backup API; PostgreSQL is backed up by pg_dump (TestPostgresBackupAndUnreachable)")
	const n, before = 1200, 300
	var mu sync.Mutex
	accepted := map[string]int{}
	phase := "first" // first: accept `before`, then hold; refuse: 4xx; accept: take all
	release := make(chan struct{})
	sink := &mailer.Sink{Answer: func(from, to string, data []byte) error {
		mu.Lock()
		if phase == "first" && len(accepted) >= before {
			mu.Unlock()
			<-release
			mu.Lock()
		}
		defer mu.Unlock()
		if phase == "accept" || (phase == "first" && len(accepted) < before) {
			accepted[to]++
			return nil
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "held for the test"}
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	now := time.Now()
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create",
		writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), n, `{}`)))), 10, 64)

	srv := startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the first messages to be recorded sent", 30*time.Second, func() bool {
		c, err := st.JobCounts(context.Background(), key)
		return err == nil && c.Sent == before
	})
	if j := jobState(t, st, key); j.State != postoffice.JobRunning {
		t.Fatalf("job state %q at the backup, want running", j.State)
	}
	copyFile := filepath.Join(t.TempDir(), "copy.db")
	if out := runOK(t, e, "backup", copyFile); !strings.Contains(out, copyFile) {
		t.Errorf("backup printed %q", out)
	}
	mu.Lock()
	phase = "refuse"
	mu.Unlock()
	close(release)
	srv.stop(t)
	st.Close()

	// The README's restore: with the server stopped, the copy replaces the database and its
	// WAL and shared-memory files.
	db := e["POINTPOST_DB"]
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(copyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	phase = "accept"
	mu.Unlock()
	startServe(t, e)
	restored := openStore(t, e)
	waitFor(t, "the restored job to finish", 60*time.Second, func() bool {
		return jobState(t, restored, key).State == postoffice.JobDone
	})
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) != n {
		t.Errorf("%d of %d recipients got mail", len(accepted), n)
	}
	for to, k := range accepted {
		if k != 1 {
			t.Errorf("%s got %d messages", to, k)
		}
	}
	if c, err := restored.JobCounts(context.Background(), key); err != nil || c.Sent != n || c.Pending != 0 {
		t.Errorf("counts after the restored job: %+v, %v", c, err)
	}
}

// TestBackupRefusals: a backup never overwrites a file, and serve refuses scheduled backups
// it could not keep.
func TestBackupRefusals(t *testing.T) {
	sqliteOnly(t, "backups by pointpost; on PostgreSQL they are refused (TestPostgresBackupAndUnreachable)")
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 3))
	existing := filepath.Join(t.TempDir(), "taken.db")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"backup", existing}, existing + " exists"},
		{[]string{"backup", e["POINTPOST_DB"]}, " exists"},
		{[]string{"backup"}, "usage: pointpost backup FILE"},
	} {
		err := run(context.Background(), c.args, e.get, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pointpost %v: %v, want an error with %q", c.args, err, c.want)
		}
	}
	if got, _ := os.ReadFile(existing); string(got) != "keep me" {
		t.Errorf("the refused backup changed the existing file: %q", got)
	}
	if st := openStore(t, e); st != nil {
		if n, err := st.CountConsumers(context.Background()); err != nil || n != 3 {
			t.Errorf("the database after a backup over it was refused: %d consumers, %v", n, err)
		}
	}

	for _, c := range []struct {
		args []string
		env  env
		want string
	}{
		{[]string{"--backup-every", "0"}, env{}, "--backup-every must be positive"},
		{nil, env{"POINTPOST_BACKUP_EVERY": "0s"}, "POINTPOST_BACKUP_EVERY must be positive"},
		{[]string{"--backup-every", "-1h"}, env{}, "--backup-every must be positive"},
		{[]string{"--backup-keep", "0"}, env{}, "--backup-keep must be at least 1"},
		{nil, env{"POINTPOST_BACKUP_KEEP": "-2"}, "POINTPOST_BACKUP_KEEP must be at least 1"},
		{[]string{"--backup-every", "soon"}, env{}, "invalid argument \"soon\""},
	} {
		if _, err := parseServeConfig(c.args, c.env.get); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v %v: %v, want an error with %q", c.args, c.env, err, c.want)
		}
	}

	e["POINTPOST_BACKUP_DIR"] = existing // a file, not a directory
	err := run(context.Background(), []string{"serve"}, e.get, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--backup-dir "+existing+": not a directory") {
		t.Errorf("serve with a file as --backup-dir: %v", err)
	}
}

// TestScheduledBackups: serve writes backups into --backup-dir and, after each, keeps only
// the newest --backup-keep; each opens as a database. Files of other names are left alone.
func TestScheduledBackups(t *testing.T) {
	sqliteOnly(t, "scheduled backups; PostgreSQL is backed up by pg_dump")
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 5))
	dir := filepath.Join(t.TempDir(), "backups")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "pointpost-notes.db")
	if err := os.WriteFile(other, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	e["POINTPOST_BACKUP_DIR"], e["POINTPOST_BACKUP_EVERY"], e["POINTPOST_BACKUP_KEEP"] = dir, "20ms", "2"
	srv := startServe(t, e)
	backups := func() []string {
		names, _ := filepath.Glob(filepath.Join(dir, "pointpost-2*.db"))
		return names
	}
	waitFor(t, "two scheduled backups", 30*time.Second, func() bool { return len(backups()) >= 2 })
	srv.stop(t)
	got := backups()
	if len(got) != 2 {
		t.Fatalf("after the stop %d backups are kept, want 2: %v", len(got), got)
	}
	for _, f := range got {
		st, err := store.Open(context.Background(), f)
		if err != nil {
			t.Fatalf("open %s: %v", f, err)
		}
		n, err := st.CountConsumers(context.Background())
		st.Close()
		if err != nil || n != 5 {
			t.Errorf("%s holds %d consumers, %v", f, n, err)
		}
	}
	if data, err := os.ReadFile(other); err != nil || string(data) != "mine" {
		t.Errorf("pruning touched another file: %q, %v", data, err)
	}
}

// TestBackupPruneKeepsNewest: with a controlled clock, five backups leave the three newest.
func TestBackupPruneKeepsNewest(t *testing.T) {
	sqliteOnly(t, "scheduled backups; PostgreSQL is backed up by pg_dump")
	e := newEnv(t, "")
	st := openStore(t, e)
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := &backupSchedule{store: st, dir: t.TempDir(), keep: 3, log: slog.New(slog.DiscardHandler),
		now: func() time.Time { return clock }}
	var made []string
	for i := 0; i < 5; i++ {
		file, err := b.once(context.Background())
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		made = append(made, filepath.Base(file))
		clock = clock.Add(time.Hour)
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := made[2:]; !slices.Equal(left, want) {
		t.Errorf("left %v, want the newest %v", left, want)
	}
	// Two in the same millisecond: the second is refused, the first kept.
	clock = clock.Add(-time.Hour)
	if _, err := b.once(context.Background()); !errors.Is(err, store.ErrBackupExists) {
		t.Errorf("a backup of the same time: %v, want ErrBackupExists", err)
	}
}

// TestPostgresBackupAndUnreachable: backup and serve's scheduled backups refuse a PostgreSQL
// database, naming the server's own means, and a postgres:// --db that cannot be reached is
// an error that names it.
func TestPostgresBackupAndUnreachable(t *testing.T) {
	e := env{"POINTPOST_DB": pgtest.Need(t, pgServer).NewDatabase(t)}
	err := run(context.Background(), []string{"backup", filepath.Join(t.TempDir(), "b.db")}, e.get, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "pg_dump") {
		t.Errorf("backup of a PostgreSQL database: %v", err)
	}
	_, err = parseServeConfig([]string{"--backup-dir", t.TempDir()}, e.get)
	if err == nil || !strings.Contains(err.Error(), "--backup-dir must be left out with a PostgreSQL --db") ||
		!strings.Contains(err.Error(), "pg_dump") {
		t.Errorf("serve --backup-dir on PostgreSQL: %v", err)
	}
	err = run(context.Background(), []string{"settle"}, env{"POINTPOST_DB": "postgres://pointpost@127.0.0.1:1/pointpost"}.get, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("settle on an unreachable PostgreSQL: %v", err)
	}
}
