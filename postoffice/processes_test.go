package postoffice_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// TestJobsGoToTheLiveServersOfEveryProcess: the post office weighs the mail servers other
// processes saved beside its own, gives a job to another process's idle server, and moves
// it once that server's heartbeat is older than the timeout, or at once when it says it
// stopped; a server not heard from within the timeout is never chosen.
func TestJobsGoToTheLiveServersOfEveryProcess(t *testing.T) {
	ctx := context.Background()
	po, st, clk := office(t, 20, nil, 0)
	t0 := clk.Now()
	mine, err := st.RegisterProcessMailServers(ctx, "a", 1, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := st.RegisterProcessMailServers(ctx, "b", 2, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	// This process's server has 100 s of work; of the other's, one is idle, one was last
	// heard from long ago.
	po.Report(postoffice.MailServerStatus{ID: mine[0], State: "sending", Queue: 10_000, Rate: 100})
	save := func(st2 postoffice.MailServerStatus) {
		t.Helper()
		if err := st.ReportMailServers(ctx, []postoffice.MailServerStatus{st2}); err != nil {
			t.Fatal(err)
		}
	}
	save(postoffice.MailServerStatus{ID: theirs[0], State: "idle", ReportedAt: t0})
	save(postoffice.MailServerStatus{ID: theirs[1], State: "idle", ReportedAt: t0.Add(-time.Hour)})
	job := create(t, po, campaign(t0, t0.Add(time.Hour), 5, ``))
	tick(t, po)
	if j := reload(t, st, job.Key); j.MailServerID != theirs[0] {
		t.Fatalf("the job went to mail-%d (%q); want the other process's idle mail-%d", j.MailServerID, j.AssignReason, theirs[0])
	}

	// The other process dies: its heartbeat ages past the timeout, ours goes on.
	clk.Set(t0.Add(postoffice.DefaultLease - time.Second))
	po.Report(postoffice.MailServerStatus{ID: mine[0], State: "sending", Queue: 10_000, Rate: 100})
	tick(t, po)
	if j := reload(t, st, job.Key); j.MailServerID != theirs[0] {
		t.Fatalf("within the timeout the job moved to mail-%d", j.MailServerID)
	}
	clk.Set(t0.Add(postoffice.DefaultLease + time.Second))
	po.Report(postoffice.MailServerStatus{ID: mine[0], State: "sending", Queue: 10_000, Rate: 100})
	tick(t, po)
	j := reload(t, st, job.Key)
	if j.MailServerID != mine[0] || !strings.Contains(j.AssignReason, "no longer reports") {
		t.Fatalf("after the timeout the job is mail-%d's (%q); want mail-%d's, saying why", j.MailServerID, j.AssignReason, mine[0])
	}

	// A server that says it stopped is dead at once, however fresh its report.
	now := clk.Now()
	save(postoffice.MailServerStatus{ID: theirs[0], State: "idle", ReportedAt: now})
	po.Report(postoffice.MailServerStatus{ID: mine[0], State: postoffice.StateStopped, Queue: 0})
	tick(t, po)
	if j := reload(t, st, job.Key); j.MailServerID != theirs[0] || !strings.HasPrefix(j.AssignReason, fmt.Sprintf("mail-%d stopped;", mine[0])) {
		t.Fatalf("with this process's server stopped the job is mail-%d's (%q); want mail-%d's", j.MailServerID, j.AssignReason, theirs[0])
	}
}

// TestAssignmentMovesAJobOnce: of two post offices that saw a job on one server, the first
// to record moves it; the second's record is refused as a conflict, and the job stays.
func TestAssignmentMovesAJobOnce(t *testing.T) {
	ctx := context.Background()
	po, st, clk := office(t, 5, nil, 0)
	job := create(t, po, campaign(clk.Now(), clk.Now().Add(time.Hour), 5, ``))
	if err := st.RecordAssignment(ctx, job.Key, postoffice.Assignment{MailServerID: 1, Reason: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordAssignment(ctx, job.Key, postoffice.Assignment{MailServerID: 2, Reason: "late"}); !errors.Is(err, rewards.ErrConflict) {
		t.Fatalf("an assignment of a job no longer unassigned: %v; want a conflict", err)
	}
	if err := st.RecordAssignment(ctx, job.Key, postoffice.Assignment{MailServerID: 3, Reason: "moved", Replaces: 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordAssignment(ctx, 999, postoffice.Assignment{MailServerID: 3}); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("an assignment of no job: %v", err)
	}
	if j := reload(t, st, job.Key); j.MailServerID != 3 || j.AssignReason != "moved" {
		t.Fatalf("job is mail-%d's (%q); want mail-3's", j.MailServerID, j.AssignReason)
	}
}
