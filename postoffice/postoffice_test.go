package postoffice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
)

// clock is a test's controllable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// office is a post office on a real database with n consumers; consumer i lives in the US
// when i is even, and the ones listed in inactive are not active.
func office(t *testing.T, n int, inactive map[int]rewards.ConsumerStatus, batch int) (*postoffice.PostOffice, *store.Store, *clock) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "po.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var cs []rewards.Consumer
	for i := 0; i < n; i++ {
		c := rewards.Consumer{Email: fmt.Sprintf("c%d@example.com", i), FirstName: fmt.Sprint("C", i), Country: "CA", Format: rewards.FormatText}
		if i%2 == 0 {
			c.Country = "US"
		}
		if s, ok := inactive[i]; ok {
			c.Status = s
		}
		cs = append(cs, c)
	}
	if _, _, err := st.UpsertConsumers(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := st.RegisterMailServers(ctx, 3, ""); err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	st.Now = clk.Now
	keys, err := postoffice.NewKeyring(1, map[int][]byte{1: postoffice.NewSecret()})
	if err != nil {
		t.Fatal(err)
	}
	po := postoffice.New(postoffice.Config{Store: st, Tokens: keys, SelectBatch: batch, Now: clk.Now})
	return po, st, clk
}

func campaign(start, stop time.Time, count int, selection string) *postoffice.Campaign {
	return &postoffice.Campaign{Issuer: "acme", Name: "Test", Start: start.Format(time.RFC3339), Stop: stop.Format(time.RFC3339),
		ClientCount: count, Selection: json.RawMessage(selection),
		Text: &postoffice.MessageSpec{Subject: "Hi <_&getUserName_>", Body: "Dear <_&getUserName_>"}}
}

func create(t *testing.T, po *postoffice.PostOffice, c *postoffice.Campaign) *postoffice.Job {
	t.Helper()
	job, _, err := po.CreateJob(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func reload(t *testing.T, st *store.Store, key int64) *postoffice.Job {
	t.Helper()
	j, err := st.Job(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func tick(t *testing.T, po *postoffice.PostOffice) {
	t.Helper()
	if err := po.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestJobWaitsForItsStartAndEndsAtItsStop(t *testing.T) {
	po, st, clk := office(t, 10, nil, 0)
	start := clk.Now().Add(time.Hour)
	job := create(t, po, campaign(start, start.Add(time.Hour), 10, ``))
	tick(t, po)
	if j := reload(t, st, job.Key); j.State != postoffice.JobScheduled || j.Selected != 0 {
		t.Fatalf("before its start: %s with %d selected", j.State, j.Selected)
	}
	clk.Set(start)
	tick(t, po)
	if j := reload(t, st, job.Key); j.State != postoffice.JobRunning || j.Selected != 10 || !j.SelectedAll {
		t.Fatalf("at its start: %s with %d selected (all %v)", j.State, j.Selected, j.SelectedAll)
	}
	clk.Set(start.Add(time.Hour))
	tick(t, po)
	if j := reload(t, st, job.Key); j.State != postoffice.JobDone || j.DoneReason != "stop date passed" {
		t.Fatalf("at its stop: %s (%q)", j.State, j.DoneReason)
	}
}

func TestSelectionCapsAndExcludes(t *testing.T) {
	inactive := map[int]rewards.ConsumerStatus{0: rewards.StatusUnsubscribed, 2: rewards.StatusBounced, 4: rewards.StatusSuppressed}
	po, st, clk := office(t, 40, inactive, 3) // small batches: many transactions
	now := clk.Now()
	job := create(t, po, campaign(now, now.Add(time.Hour), 12, `{"field": "country", "op": "=", "value": "US"}`))
	tick(t, po)
	j := reload(t, st, job.Key)
	if j.Selected != 12 || !j.SelectedAll {
		t.Fatalf("selected %d (all %v), want the client count 12", j.Selected, j.SelectedAll)
	}
	counts, _ := st.JobCounts(context.Background(), job.Key)
	if counts.Total != 12 {
		t.Fatalf("%d deliveries, want 12", counts.Total)
	}
	for i := 0; i < 40; i++ {
		c, err := st.ConsumerByEmail(context.Background(), fmt.Sprintf("c%d@example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Delivery(context.Background(), job.Key, c.ID)
		selected := err == nil
		_, excluded := inactive[i]
		switch {
		case selected && (excluded || i%2 == 1):
			t.Errorf("consumer %d (%s, %s) was selected", i, c.Country, c.Status)
		case !selected && !excluded && i%2 == 0 && i <= 28:
			// US and active, among the first twelve such by id: 6, 8, ..., 28.
			t.Errorf("consumer %d should have been selected", i)
		}
	}
}

func TestAssignsTheServerIdleSoonest(t *testing.T) {
	po, st, clk := office(t, 5, nil, 0)
	now := clk.Now()
	// Server 1 needs 10 s, server 2 needs 50 s, server 3 needs 4 s at its nominal rate.
	po.Report(postoffice.MailServerStatus{ID: 1, Queue: 10_000, Rate: 1000})
	po.Report(postoffice.MailServerStatus{ID: 2, Queue: 500, Rate: 10})
	po.Report(postoffice.MailServerStatus{ID: 3, Queue: 4000})
	a := create(t, po, campaign(now, now.Add(time.Hour), 5, ``))
	tick(t, po)
	if got := reload(t, st, a.Key).MailServerID; got != 3 {
		t.Fatalf("assigned to %d, want 3 (idle in 4 s)", got)
	}
	po.Report(postoffice.MailServerStatus{ID: 2, Queue: 0})
	b := create(t, po, campaign(now, now.Add(time.Hour), 5, ``))
	tick(t, po)
	if got := reload(t, st, b.Key).MailServerID; got != 2 {
		t.Fatalf("assigned to %d, want the idle server 2", got)
	}
	if st := po.Statuses(); len(st) != 3 || st[0].ID != 1 || st[1].IdleIn() != 0 {
		t.Fatalf("statuses as the post office sees them: %+v", st)
	}
}

func TestDraftWaitsForSchedule(t *testing.T) {
	po, st, clk := office(t, 5, nil, 0)
	now := clk.Now()
	c := campaign(now, now.Add(time.Hour), 5, ``)
	c.Draft = true
	job := create(t, po, c)
	tick(t, po)
	if j := reload(t, st, job.Key); j.State != postoffice.JobDraft || j.Selected != 0 {
		t.Fatalf("draft after a tick: %s, %d selected", j.State, j.Selected)
	}
	if err := po.Schedule(context.Background(), job.Key); err != nil {
		t.Fatal(err)
	}
	tick(t, po)
	if j := reload(t, st, job.Key); j.State != postoffice.JobRunning || j.Selected != 5 {
		t.Fatalf("after schedule: %s, %d selected", j.State, j.Selected)
	}
	if err := po.Schedule(context.Background(), job.Key); err == nil {
		t.Fatal("scheduling a running job again should fail")
	}
}

func TestSuspendedJobIsNotStarted(t *testing.T) {
	po, st, clk := office(t, 5, nil, 0)
	now := clk.Now()
	job := create(t, po, campaign(now, now.Add(time.Hour), 5, ``))
	if err := po.Suspend(context.Background(), job.Key); err != nil {
		t.Fatal(err)
	}
	tick(t, po)
	if j := reload(t, st, job.Key); j.State != postoffice.JobScheduled || !j.Suspended {
		t.Fatalf("suspended job: %s, suspended %v", j.State, j.Suspended)
	}
	if err := po.Resume(context.Background(), job.Key); err != nil {
		t.Fatal(err)
	}
	tick(t, po)
	if j := reload(t, st, job.Key); j.State != postoffice.JobRunning {
		t.Fatalf("resumed job: %s", j.State)
	}
	if err := po.Stop(context.Background(), job.Key); err != nil {
		t.Fatal(err)
	}
	if j := reload(t, st, job.Key); j.State != postoffice.JobDone || j.DoneReason != "stopped by operator" {
		t.Fatalf("stopped job: %s %q", j.State, j.DoneReason)
	}
}

// TestSelectionResumesWhereItStopped: a post office that dies between batches leaves a
// cursor; a new one goes on from it without selecting anyone twice.
func TestSelectionResumesWhereItStopped(t *testing.T) {
	po, st, clk := office(t, 30, nil, 4)
	now := clk.Now()
	job := create(t, po, campaign(now, now.Add(time.Hour), 25, ``))
	ctx := context.Background()
	j := reload(t, st, job.Key)
	for i := 0; i < 2; i++ { // two batches, then "crash"
		if _, _, err := st.SelectBatch(ctx, j, false, 4); err != nil {
			t.Fatal(err)
		}
	}
	if j = reload(t, st, job.Key); j.Selected != 8 || j.SelectedAll {
		t.Fatalf("after two batches: %d selected, all %v", j.Selected, j.SelectedAll)
	}
	keys, _ := postoffice.NewKeyring(1, map[int][]byte{1: postoffice.NewSecret()})
	again := postoffice.New(postoffice.Config{Store: st, Tokens: keys, SelectBatch: 4, Now: clk.Now})
	tick(t, again)
	if j = reload(t, st, job.Key); j.Selected != 25 || !j.SelectedAll {
		t.Fatalf("after the restart: %d selected, all %v", j.Selected, j.SelectedAll)
	}
	if counts, _ := st.JobCounts(ctx, job.Key); counts.Total != 25 {
		t.Fatalf("%d deliveries, want 25", counts.Total)
	}
}

func TestFinishedOnlyWhenNothingIsPending(t *testing.T) {
	po, st, clk := office(t, 3, nil, 0)
	now := clk.Now()
	job := create(t, po, campaign(now, now.Add(time.Hour), 3, ``))
	tick(t, po)
	ctx := context.Background()
	if err := po.Finished(ctx, job.Key); err != nil {
		t.Fatal(err)
	}
	if j := reload(t, st, job.Key); j.State != postoffice.JobRunning {
		t.Fatalf("finished with deliveries pending: %s", j.State)
	}
	rs, err := st.DueRecipients(ctx, job.Key, 0, clk.Now(), 10)
	if err != nil || len(rs) != 3 {
		t.Fatalf("claimed %d, %v", len(rs), err)
	}
	var outcomes []postoffice.Outcome
	for _, r := range rs {
		outcomes = append(outcomes, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent, At: clk.Now()})
	}
	if err := st.RecordOutcomes(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	if err := po.Finished(ctx, job.Key); err != nil {
		t.Fatal(err)
	}
	if j := reload(t, st, job.Key); j.State != postoffice.JobDone || j.DoneReason != "complete" {
		t.Fatalf("after every delivery was sent: %s %q", j.State, j.DoneReason)
	}
}

// TestRefusedSelectionEndsTheJob: a raw selection the guard refuses at run time (here one
// written past the campaign checks) ends its job with the reason, instead of being retried
// every tick while it holds the writer.
func TestRefusedSelectionEndsTheJob(t *testing.T) {
	po, st, clk := office(t, 5, nil, 0)
	ctx := context.Background()
	iss, err := st.EnsureIssuer(ctx, "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	job := &postoffice.Job{IssuerID: iss.ID, Name: "Hostile", State: postoffice.JobScheduled, Start: now, Stop: now.Add(time.Hour),
		ClientCount: 5, Selection: `{"sql": "(SELECT count(*) FROM sqlite_master) > 0"}`, SelectionSQL: "(SELECT count(*) FROM sqlite_master) > 0"}
	if err := st.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	tick(t, po)
	j := reload(t, st, job.Key)
	if j.State != postoffice.JobDone || j.Selected != 0 || !strings.Contains(j.DoneReason, "selection failed") {
		t.Fatalf("job after a refused selection: %s, %d selected, %q", j.State, j.Selected, j.DoneReason)
	}
}
