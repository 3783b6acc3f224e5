package main

import (
	"context"
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
	time.Sleep(time.Second) // the mail server rereads its job within 200ms
	halted := sink.Count()
	time.Sleep(500 * time.Millisecond)
	if n := sink.Count(); n != halted {
		t.Fatalf("still sending 1s after suspend: %d then %d", halted, n)
	}
	if halted >= 1500 {
		t.Fatal("the job finished before it could be suspended")
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
	sink := &mailer.Sink{Answer: func(from, to string, data []byte) error {
		time.Sleep(5 * time.Millisecond)
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
	startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the stop date", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })
	atStop := sink.Count()
	time.Sleep(time.Second)
	if n := sink.Count(); n != atStop {
		t.Errorf("sent %d more after the stop date", n-atStop)
	}
	if atStop == 0 || atStop >= 3000 {
		t.Errorf("sent %d of 3000: the stop date should cut the job short", atStop)
	}
	if j := jobState(t, st, key); j.DoneReason != "stop date passed" {
		t.Errorf("done reason %q", j.DoneReason)
	}
}
