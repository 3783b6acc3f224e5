package main

import (
	"bytes"
	"context"
	netmail "net/mail"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/mailer"
	"pointpost/postoffice"
)

// TestSuspendResumeAndRestart suspends a running job, resumes it, stops the whole program
// mid-job and starts it again: every consumer ends with exactly one message.
func TestSuspendResumeAndRestart(t *testing.T) {
	sink := &mailer.Sink{Keep: true, Answer: func(from, to string, data []byte) error {
		time.Sleep(2 * time.Millisecond) // a relay slow enough to stop mid-job
		return nil
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	runOK(t, e, "import", "consumers", writeConsumers(t, 1500))
	now := time.Now()
	key := strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 1500, `{}`))))
	k, _ := strconv.ParseInt(key, 10, 64)

	srv := startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "sending to begin", 20*time.Second, func() bool { return sink.Count() >= 100 })
	runOK(t, e, "job", "suspend", key)
	// The job's mail server reports "waiting" once its pass has halted: the sends in flight
	// are answered and committed, so what it counts sent is everything the relay took.
	var halted int64
	waitFor(t, "the mail server to halt on the suspend", 20*time.Second, func() bool {
		s := mailServerStatus(t, st, jobState(t, st, k).MailServerID)
		halted = sink.Count()
		return s.State == "waiting" && s.Sent == halted
	})
	if halted >= 1500 {
		t.Fatal("the job finished before it could be suspended")
	}
	if c, err := st.JobCounts(context.Background(), k); err != nil || c.Sent != int(halted) || c.Pending != 1500-int(halted) {
		t.Fatalf("job counts while suspended %+v (%v), want %d sent and the rest pending", c, err, halted)
	}
	if n := sink.Count(); n != halted {
		t.Fatalf("sending went on while suspended: %d, then %d", halted, n)
	}
	runOK(t, e, "job", "resume", key)
	waitFor(t, "sending to resume", 20*time.Second, func() bool { return sink.Count() >= halted+200 })
	srv.stop(t) // graceful stop mid-job
	stoppedAt := sink.Count()
	if stoppedAt >= 1500 {
		t.Fatal("the job finished before the restart")
	}
	startServe(t, e)
	waitFor(t, "the job to finish after the restart", 60*time.Second, func() bool { return jobState(t, st, k).State == postoffice.JobDone })

	perRecipient := map[string]int{}
	for _, m := range sink.Messages() {
		perRecipient[m.To]++
	}
	if len(perRecipient) != 1500 {
		t.Errorf("%d of 1500 consumers got mail", len(perRecipient))
	}
	for to, n := range perRecipient {
		if n != 1 {
			t.Errorf("%s got %d messages", to, n)
		}
	}
	counts, err := st.JobCounts(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Sent != 1500 || counts.Pending != 0 {
		t.Errorf("counts after the job: %+v", counts)
	}
}

// TestStopDate: a job whose stop date passes mid-run stops sending and is done.
func TestStopDate(t *testing.T) {
	sink := &mailer.Sink{Keep: true, Answer: func(from, to string, data []byte) error {
		time.Sleep(5 * time.Millisecond) // a relay slow enough for the stop date to cut the job
		return nil
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	runOK(t, e, "import", "consumers", writeConsumers(t, 3000))
	now := time.Now()
	// RFC 3339 in the file has whole seconds: stop 3 s from now.
	stop := now.Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), stop, 3000, `{}`)))), 10, 64)
	srv := startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the stop date", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })
	srv.stop(t) // the whole program has ended: the sink holds all it will ever get
	sent := sink.Count()
	if sent == 0 || sent >= 3000 {
		t.Errorf("sent %d of 3000: the stop date should cut the job short", sent)
	}
	// Nothing was written once the stop date had passed: every message is dated before it.
	for _, m := range sink.Messages() {
		msg, err := netmail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("message to %s: %v", m.To, err)
		}
		if date, err := msg.Header.Date(); err != nil || !date.Before(stop) {
			t.Errorf("message to %s dated %v (%v), at or after the stop date %v", m.To, date, err, stop)
		}
	}
	if j := jobState(t, st, key); j.DoneReason != "stop date passed" {
		t.Errorf("done reason %q", j.DoneReason)
	}
}

// budgetCampaign is a campaign file for issuer acme whose worst case is count × 10 points:
// every consumer matches and may earn 10 points once.
func budgetCampaign(t *testing.T, count int, draft bool) string {
	now := time.Now()
	c := strings.Replace(campaignJSON(now.Add(time.Hour), now.Add(2*time.Hour), count, `{}`),
		`"client_count"`, `"rules": [{"type": "reply", "points": 10, "frequency": "once"}], "client_count"`, 1)
	if draft {
		c = strings.Replace(c, `"client_count"`, `"draft": true, "client_count"`, 1)
	}
	return writeCampaign(t, c)
}

// runFails runs a command that must fail and returns its error and what it printed.
func runFails(t *testing.T, e env, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, e.get, &out)
	if err == nil {
		t.Fatalf("pointpost %s succeeded:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

// TestScheduleAgainstTheIssuersBudget: `job schedule` refuses a draft whose worst case
// exceeds what is left of its issuer's budget, saying by how much and how to go ahead, and
// keeps it a draft; --over-budget schedules it and the job records the user and when; a
// draft within the budget is scheduled with no override recorded.
func TestScheduleAgainstTheIssuersBudget(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 10))
	over := strings.TrimSpace(runOK(t, e, "campaign", "create", budgetCampaign(t, 10, true)))
	runOK(t, e, "issuer", "budget", "acme", "60")
	st := openStore(t, e)
	key, _ := strconv.ParseInt(over, 10, 64)

	_, err := runFails(t, e, "job", "schedule", over)
	for _, want := range []string{"up to 100 points", "40 more than the 60 left", "issuer acme", "kept as a draft", "job schedule " + over + " --over-budget"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if j := jobState(t, st, key); j.State != postoffice.JobDraft || j.BudgetOverride.By != "" {
		t.Fatalf("refused job is %s, override %+v: want a draft with none", j.State, j.BudgetOverride)
	}

	before := time.Now()
	out := runOK(t, e, "job", "schedule", over, "--over-budget")
	me, uerr := user.Current()
	if uerr != nil {
		t.Fatal(uerr)
	}
	j := jobState(t, st, key)
	if j.State != postoffice.JobScheduled {
		t.Errorf("overridden job is %s, want scheduled", j.State)
	}
	if want := "command line user " + me.Username; j.BudgetOverride.By != want {
		t.Errorf("override recorded by %q, want %q", j.BudgetOverride.By, want)
	}
	if at := j.BudgetOverride.At; at.Before(before.Truncate(time.Millisecond)) || at.After(time.Now()) {
		t.Errorf("override recorded at %v, not while the command ran (from %v)", at, before)
	}
	if !strings.Contains(out, "scheduled over issuer acme's budget") || !strings.Contains(out, me.Username) {
		t.Errorf("override printed %q", out)
	}

	within := strings.TrimSpace(runOK(t, e, "campaign", "create", budgetCampaign(t, 6, true)))
	if out := runOK(t, e, "job", "schedule", within); out != "" {
		t.Errorf("a schedule within the budget printed %q", out)
	}
	k2, _ := strconv.ParseInt(within, 10, 64)
	if j := jobState(t, st, k2); j.State != postoffice.JobScheduled || j.BudgetOverride.By != "" {
		t.Errorf("job within the budget is %s, override %+v: want scheduled with none", j.State, j.BudgetOverride)
	}

	// A job that is not a draft, or no job at all, is refused for what it is.
	if _, err := runFails(t, e, "job", "schedule", within, "--over-budget"); !strings.Contains(err.Error(), "not a draft") {
		t.Errorf("scheduling a scheduled job: %v", err)
	}
	if _, err := runFails(t, e, "job", "schedule", "9999"); !strings.Contains(err.Error(), "9999") {
		t.Errorf("scheduling no job: %v", err)
	}
}

// TestCampaignCreateAgainstTheIssuersBudget: `campaign create` of a campaign that is not a
// draft schedules it as `job schedule` does: over the budget it prints the key, keeps the
// job a draft and says how to go ahead; with --over-budget the override is recorded.
func TestCampaignCreateAgainstTheIssuersBudget(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 10))
	runOK(t, e, "campaign", "create", budgetCampaign(t, 1, true)) // makes issuer acme
	runOK(t, e, "issuer", "budget", "acme", "50")
	st := openStore(t, e)

	out, err := runFails(t, e, "campaign", "create", budgetCampaign(t, 10, false))
	key, perr := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if perr != nil {
		t.Fatalf("a refused campaign printed %q, not its key", out)
	}
	if !strings.Contains(err.Error(), "50 more than the 50 left") || !strings.Contains(err.Error(), "--over-budget") {
		t.Errorf("refusal %q lacks the figures or the way to go ahead", err)
	}
	if j := jobState(t, st, key); j.State != postoffice.JobDraft {
		t.Errorf("refused campaign's job is %s, want a draft", j.State)
	}

	// Run by alice through sudo, she is who overrode; SUDO_USER set by anyone else who is
	// not root names nobody.
	e["SUDO_USER"] = "alice"
	out = runOK(t, e, "campaign", "create", budgetCampaign(t, 10, false), "--over-budget")
	first, _, _ := strings.Cut(out, "\n")
	key2, _ := strconv.ParseInt(first, 10, 64)
	j := jobState(t, st, key2)
	if j.State != postoffice.JobScheduled || j.BudgetOverride.At.IsZero() ||
		strings.HasPrefix(j.BudgetOverride.By, "command line user alice") != (os.Geteuid() == 0) {
		t.Errorf("campaign created over the budget (SUDO_USER alice, uid %d) is %s, override %+v", os.Geteuid(), j.State, j.BudgetOverride)
	}

	// Within the budget a campaign is scheduled at once, as before.
	key3, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", budgetCampaign(t, 5, false))), 10, 64)
	if j := jobState(t, st, key3); j.State != postoffice.JobScheduled || j.BudgetOverride.By != "" {
		t.Errorf("campaign within the budget is %s, override %+v", j.State, j.BudgetOverride)
	}
}
