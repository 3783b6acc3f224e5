package postoffice_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
)

// TestIdleServersTakeTurns: three jobs scheduled together while every mail server is idle
// go to three servers, not all to mail-1, and each job keeps why it went where it did.
func TestIdleServersTakeTurns(t *testing.T) {
	po, st, clk := office(t, 5, nil, 0)
	now := clk.Now()
	for id := 1; id <= 3; id++ {
		po.Report(postoffice.MailServerStatus{ID: id, Name: "mail-" + strconv.Itoa(id), State: "idle"})
	}
	var keys []int64
	for range 3 {
		keys = append(keys, create(t, po, campaign(now, now.Add(time.Hour), 5, ``)).Key)
	}
	tick(t, po)
	seen := map[int]bool{}
	for _, key := range keys {
		j := reload(t, st, key)
		seen[j.MailServerID] = true
		if !strings.Contains(j.AssignReason, "idle") {
			t.Errorf("job %d went to mail-%d because %q; want why", key, j.MailServerID, j.AssignReason)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("three jobs went to servers %v while three were idle; want one each", seen)
	}
}

// TestJobsInARowGoRoundTheIdleServers: jobs scheduled one after another, each started
// before any server reports again, go round the servers; the fourth to the one given a job
// least recently, as busy as the others.
func TestJobsInARowGoRoundTheIdleServers(t *testing.T) {
	po, st, clk := office(t, 5, nil, 0)
	now := clk.Now()
	for id := 1; id <= 3; id++ {
		po.Report(postoffice.MailServerStatus{ID: id, State: "idle"})
	}
	for i, want := range []int{1, 2, 3, 1} {
		job := create(t, po, campaign(now, now.Add(time.Hour), 5, ``))
		tick(t, po)
		j := reload(t, st, job.Key)
		if j.MailServerID != want {
			t.Fatalf("job %d of the row went to mail-%d (%q), want mail-%d", i+1, j.MailServerID, j.AssignReason, want)
		}
		if i == 3 && j.AssignReason != "idle soonest, in 5ms, with 2 others; the one given a job least recently" {
			t.Errorf("the fourth job's reason: %q", j.AssignReason)
		}
	}
}

// TestJobsGivenSinceTheReportCount: a server given a job since its last report is not idle,
// though its report says so, until a report lists the job.
func TestJobsGivenSinceTheReportCount(t *testing.T) {
	po, st, clk := office(t, 40, nil, 0)
	now := clk.Now()
	po.Report(postoffice.MailServerStatus{ID: 1})
	a := create(t, po, campaign(now, now.Add(time.Hour), 40, ``))
	tick(t, po)
	if got := reload(t, st, a.Key).MailServerID; got != 1 {
		t.Fatalf("the only server's job went to %d", got)
	}
	// Server 2 has 10 messages to send (10 ms); server 1 reported idle before it was given
	// job a's 40 (40 ms).
	po.Report(postoffice.MailServerStatus{ID: 2, Queue: 10, Rate: 1000})
	b := create(t, po, campaign(now, now.Add(time.Hour), 5, ``))
	tick(t, po)
	jb := reload(t, st, b.Key)
	if jb.MailServerID != 2 || !strings.Contains(jb.AssignReason, "idle soonest") {
		t.Fatalf("job b went to mail-%d (%q), want mail-2: mail-1 has job a's 40 messages", jb.MailServerID, jb.AssignReason)
	}
	// Once server 1's report lists job a, its queue is what it says: not counted twice.
	po.Report(postoffice.MailServerStatus{ID: 1, Queue: 4, Rate: 1000, Jobs: []int64{a.Key}})
	po.Report(postoffice.MailServerStatus{ID: 2, Queue: 10 + 5, Rate: 1000, Jobs: []int64{b.Key}})
	c := create(t, po, campaign(now, now.Add(time.Hour), 5, ``))
	tick(t, po)
	if got := reload(t, st, c.Key).MailServerID; got != 1 {
		t.Errorf("job c went to mail-%d, want mail-1 (4 ms against 15)", got)
	}
}

func TestChooseMailServerSaysWhy(t *testing.T) {
	idle := func(id int, last uint64) postoffice.Candidate {
		return postoffice.Candidate{MailServerStatus: postoffice.MailServerStatus{ID: id}, LastGiven: last}
	}
	busy := func(id, queue int) postoffice.Candidate {
		return postoffice.Candidate{MailServerStatus: postoffice.MailServerStatus{ID: id, Queue: queue, Rate: 100}}
	}
	for _, tc := range []struct {
		name   string
		cands  []postoffice.Candidate
		want   int
		reason string
	}{
		{"none", nil, 0, ""},
		{"one", []postoffice.Candidate{busy(4, 100)}, 4, "the only mail server"},
		{"idle ones take turns", []postoffice.Candidate{idle(1, 3), idle(2, 1), idle(3, 2)}, 2,
			"idle; of 3 idle servers, the one given a job least recently"},
		{"never given first", []postoffice.Candidate{idle(1, 3), idle(2, 0)}, 2, "idle; of 2 idle servers"},
		{"the only idle one", []postoffice.Candidate{busy(1, 300), idle(2, 9), busy(3, 200)}, 2,
			"the only idle server (next: mail-3, idle in 2s)"},
		{"soonest", []postoffice.Candidate{busy(1, 300), busy(2, 50), busy(3, 200)}, 2,
			"idle soonest, in 500ms (next: mail-3, in 2s)"},
		{"unreported counts", []postoffice.Candidate{{MailServerStatus: postoffice.MailServerStatus{ID: 1}, Unreported: 500}, busy(2, 10)}, 2,
			"idle soonest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := postoffice.ChooseMailServer(tc.cands)
			if a.MailServerID != tc.want || !strings.HasPrefix(a.Reason, tc.reason) {
				t.Errorf("chose %d because %q; want %d because %q", a.MailServerID, a.Reason, tc.want, tc.reason)
			}
		})
	}
}

// TestNextAssignmentForetellsTheNextJob: what NextAssignment says before each job of a row
// is where that job goes, and asking does not take a turn.
func TestNextAssignmentForetellsTheNextJob(t *testing.T) {
	po, st, clk := office(t, 5, nil, 0)
	now := clk.Now()
	if a := po.NextAssignment(); a.MailServerID != 0 {
		t.Fatalf("with no mail server reported, the next job goes to %d", a.MailServerID)
	}
	for id := 1; id <= 3; id++ {
		po.Report(postoffice.MailServerStatus{ID: id, State: "idle"})
	}
	for i := range 4 {
		next := po.NextAssignment()
		if again := po.NextAssignment(); again != next {
			t.Fatalf("asking twice gave %+v, then %+v", next, again)
		}
		job := create(t, po, campaign(now, now.Add(time.Hour), 5, ``))
		tick(t, po)
		j := reload(t, st, job.Key)
		if j.MailServerID != next.MailServerID || j.AssignReason != next.Reason {
			t.Errorf("job %d of the row went to mail-%d (%q); NextAssignment said mail-%d (%q)",
				i+1, j.MailServerID, j.AssignReason, next.MailServerID, next.Reason)
		}
	}
}
