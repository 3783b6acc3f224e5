package main

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"pointpost/mailer"
	"pointpost/postoffice"
)

// TestKilledMidJob builds the real binary, kills it with SIGKILL at random moments of a
// job and starts it again: every consumer gets the message, and the only duplicates are
// messages whose outcome was not yet committed at a kill.
func TestKilledMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "pointpost")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sink := &mailer.Sink{Keep: true, Answer: func(from, to string, data []byte) error {
		time.Sleep(time.Millisecond)
		return nil
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	const consumers = 4000
	runOK(t, e, "import", "consumers", writeConsumers(t, consumers))
	now := time.Now()
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create",
		writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), consumers, `{}`)))), 10, 64)

	var environ []string
	for k, v := range e {
		environ = append(environ, k+"="+v)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(os.Environ(), environ...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for kills < 4 {
		cmd := start()
		before := sink.Count()
		// Kill once it has sent a random share of what is left.
		target := before + int64(50+rng.IntN(600))
		deadline := time.Now().Add(30 * time.Second)
		for sink.Count() < target && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if sink.Count() >= consumers {
			break
		}
		kills++
	}
	if kills < 2 {
		t.Fatalf("only %d kills landed mid-job", kills)
	}
	cmd := start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	st := openStore(t, e)
	waitFor(t, "the job to finish after the kills", 60*time.Second, func() bool {
		return jobState(t, st, key).State == postoffice.JobDone
	})

	perRecipient := map[string]int{}
	for _, m := range sink.Messages() {
		perRecipient[m.To]++
	}
	duplicates := 0
	for _, n := range perRecipient {
		duplicates += n - 1
	}
	if len(perRecipient) != consumers {
		t.Errorf("%d of %d consumers got the message", len(perRecipient), consumers)
	}
	// In flight at a kill: at most one commit batch of outcomes plus the messages being sent.
	if limit := kills * (500 + 2*4); duplicates > limit {
		t.Errorf("%d duplicates after %d kills, more than the %d that can be in flight", duplicates, kills, limit)
	}
	counts, _ := st.JobCounts(context.Background(), key)
	if counts.Sent != consumers || counts.Pending != 0 {
		t.Errorf("counts: %+v", counts)
	}
	t.Logf("%d kills, %d messages for %d consumers, %d duplicates", kills, len(sink.Messages()), consumers, duplicates)
}
