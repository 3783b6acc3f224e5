package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"pointpost/store/pgtest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMigrateToPostgres sends a reward campaign through serve, replies to one invitation
// (settled into her account), adds a toolbox user, and migrates the database to PostgreSQL:
// the summary names the tables and sums, the copy shows her balance and the job's
// deliveries, and a second migrate into the same database is refused.
func TestMigrateToPostgres(t *testing.T) {
	pgtest.Need(t, pgServer)
	e, srv, sink, key := sentInvitations(t, 4)
	if strings.HasPrefix(e["POINTPOST_DB"], "postgres") {
		t.Skip("migrate copies a SQLite database")
	}
	m := parseSink(t, sink.Messages())["c0@example.com"][0]
	if err := reply(t, srv.smtp, m, "c0@example.com"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "settlement", 10*time.Second, func() bool { return timeline(t, e, "c0@example.com").Balance == 10 })
	runOK(t, e, "user", "add", "--operator", "op@example.com")
	srv.stop(t)

	target := pgServer.NewDatabase(t)
	out := runOK(t, e, "migrate", "--to", target)
	for _, want := range []string{
		"migrated " + e["POINTPOST_DB"] + " to postgres://",
		"accrued 10 (settled 10, pending 0), redeemed 0, consumers' balances 10, issuers' spent 10, net 0; 2 accounts compared",
		"selections: 1 compiled again for PostgreSQL, 0 raw SQL to look at",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate printed\n%s\nwant %q", out, want)
		}
	}
	if !regexp.MustCompile(`(?m)^  deliveries +4  \S+$`).MatchString(out) || !regexp.MustCompile(`(?m)^  users +1  \S+$`).MatchString(out) {
		t.Errorf("migrate printed\n%s\nwant deliveries 4 and users 1", out)
	}

	pg := env{"POINTPOST_DB": target}
	st := openStore(t, pg)
	ctx := context.Background()
	c, err := st.ConsumerByEmail(ctx, "c0@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := st.Account(ctx, c.ID, 10); err != nil || a.Balance != 10 || len(a.History) != 1 {
		t.Errorf("on PostgreSQL: account %+v, %v", a, err)
	}
	if j := jobState(t, st, key); j.State != "done" || j.Selected != 4 {
		t.Errorf("on PostgreSQL: job %s, %d selected", j.State, j.Selected)
	}
	if n, err := st.PendingCount(ctx, key); err != nil || n != 0 {
		t.Errorf("on PostgreSQL: %d pending, %v", n, err)
	}

	err = run(ctx, []string{"migrate", "--to", target}, e.get, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not empty: table") {
		t.Errorf("second migrate into the same database: %v", err)
	}
}

func TestMigrateRefusals(t *testing.T) {
	e := newEnv(t, "")
	if strings.HasPrefix(e["POINTPOST_DB"], "postgres") {
		t.Skip("migrate copies a SQLite database")
	}
	runOK(t, e, "import", "consumers", writeConsumers(t, 2))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "postgres://pointpost@" + l.Addr().String() + "/pointpost"
	l.Close()
	dir := t.TempDir()
	other, missing := filepath.Join(dir, "other.db"), filepath.Join(dir, "missing.db")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate"}, "--to is required"},
		{[]string{"migrate", "--to", down}, "migrate: target: open PostgreSQL"},
		{[]string{"migrate", "--to", other}, "the target must be a PostgreSQL URL"},
		{[]string{"migrate", "--to", down, "--db", missing}, "migrate: source: stat " + missing},
		{[]string{"migrate", "extra", "--to", down}, "usage: pointpost migrate"},
	} {
		err := run(context.Background(), c.args, e.get, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	// No database was made of the names given.
	for _, name := range []string{other, missing} {
		if _, err := os.Stat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
