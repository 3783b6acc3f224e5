package main

import (
	"bytes"
	"context"
	netmail "net/mail"
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
