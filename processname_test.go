package main

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/store"
)

// TestProcessNameHeldByOneProcess: a second `pointpost serve` under the name of a live one
// on the same database exits at its start, saying which name and how to fix it, and leaves
// the first one's mail servers alone; a web process under the name, which registers no mail
// servers, runs beside it; once the first is killed with SIGKILL, a process started at once
// under its name serves and takes its mail servers back. On SQLite and on PostgreSQL.
func TestProcessNameHeldByOneProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	onEachEngine(t, func(t *testing.T, db string) {
		e := newEnv(t, "")
		e["POINTPOST_DB"] = db
		stderr := stderrFile(t)
		first := &peer{role: roleAll, name: "twin"}
		first.start(t, bin, e, stderr, false)
		killed := false
		defer func() {
			if !killed {
				first.p.stop()
			}
		}()
		st := openStore(t, e)
		ids := processMailServers(t, st, "twin")
		if len(ids) != 2 {
			t.Fatalf("twin's mail servers %v, want 2", ids)
		}

		for _, source := range []struct{ args, env []string }{
			{nil, []string{"POINTPOST_NAME=twin"}},
			{[]string{"--name", "twin"}, nil},
		} {
			out := serveRefused(t, bin, e, source.args, source.env)
			flag := "--name"
			if source.args == nil {
				flag = "POINTPOST_NAME"
			}
			want := `process name "twin": held by another live process on this database: start this process under another ` +
				flag + ", or stop the other one"
			if !strings.Contains(out, want) {
				t.Errorf("the second twin said %q, want %q", out, want)
			}
		}
		if got := processMailServers(t, st, "twin"); !slices.Equal(got, ids) {
			t.Errorf("twin's mail servers after the refusals %v, want %v", got, ids)
		}

		web := &peer{role: roleWeb, name: "twin"}
		web.start(t, bin, e, stderr, false)
		web.p.stop()

		first.p.kill(t)
		killed = true
		again := &peer{role: roleAll, name: "twin"}
		again.start(t, bin, e, stderr, false)
		defer again.p.stop()
		if got := processMailServers(t, st, "twin"); !slices.Equal(got, ids) {
			t.Errorf("twin's mail servers after the restart %v, want its own again %v", got, ids)
		}
	})
}

// serveRefused runs `pointpost serve` with e and extra, and returns what it wrote to
// stderr once it exits with an error; the test fails if it serves or exits cleanly.
func serveRefused(t *testing.T, bin string, e env, args, extra []string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = os.Environ()
	for k, v := range e {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extra...)
	out := &lineWriter{lines: make(chan string, 16)}
	var errs strings.Builder
	cmd.Stdout, cmd.Stderr = out, &errs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case line := <-out.lines:
		cmd.Process.Kill()
		<-done
		t.Fatalf("serve %v %v served beside the live process of its name: %q\n%s", args, extra, line, errs.String())
	case err := <-done:
		if err == nil {
			t.Fatalf("serve %v %v exited cleanly: %s", args, extra, errs.String())
		}
	}
	return errs.String()
}

// processMailServers are the ids of the mail server rows registered under process.
func processMailServers(t *testing.T, st *store.Store, process string) []int {
	t.Helper()
	all, err := st.MailServers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, s := range all {
		if s.Process == process {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// TestLostNameWritesNothingOnItsRows: once the process name is lost to another process, the
// heartbeats and lease releases of this one's mail servers, which name that process's rows
// now, are left out (nameKeeper); before, they go through.
func TestLostNameWritesNothingOnItsRows(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 3))
	key, err := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", budgetCampaign(t, 3, false))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, e)
	ctx := context.Background()
	ids, err := st.RegisterProcessMailServers(ctx, "twin", 1, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	job, err := st.Job(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for complete := false; !complete; {
		if _, complete, err = st.SelectBatch(ctx, job, false, 100); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if rs, err := st.LeaseRecipients(ctx, key, ids[0], now, now.Add(time.Hour), 10); err != nil || len(rs) != 3 {
		t.Fatalf("leased %d, %v; want 3", len(rs), err)
	}
	var lost atomic.Bool
	keeper := nameKeeper{st, &lost}
	stopped := []postoffice.MailServerStatus{{ID: ids[0], State: postoffice.StateStopped, ReportedAt: now}}
	state := func() string {
		t.Helper()
		all, err := st.MailServers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if s.ID == ids[0] {
				return s.State
			}
		}
		t.Fatalf("no mail server %d", ids[0])
		return ""
	}
	claimable := func() int {
		t.Helper()
		rs, err := st.DueRecipients(ctx, key, 0, now, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}

	lost.Store(true)
	if err := keeper.ReportMailServers(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	if err := keeper.ReleaseLeases(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if got := state(); got == postoffice.StateStopped {
		t.Errorf("a lost name's heartbeat was written: the row says %s", got)
	}
	if n := claimable(); n != 0 {
		t.Errorf("a lost name's release freed %d deliveries of the new holder's leases", n)
	}

	lost.Store(false)
	if err := keeper.ReportMailServers(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	if err := keeper.ReleaseLeases(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != postoffice.StateStopped {
		t.Errorf("the heartbeat of a name held: the row says %s, want stopped", got)
	}
	if n := claimable(); n != 3 {
		t.Errorf("the release of a name held freed %d deliveries, want 3", n)
	}
}
