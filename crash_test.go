package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"pointpost/mailer"
	"pointpost/postoffice"
)

// TestKilledMidJob is the always-on crash test: 5,000 recipients, 5 kills. The 100k one is
// TestCrash100k.
func TestKilledMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	crashTest(t, 5000, 5)
}

// TestCrash100k kills a 100,000-recipient job 20 times. It takes minutes, so it runs only
// with POINTPOST_FAULTS=1 (make faults); POINTPOST_FAULTS_SEED replays a run.
func TestCrash100k(t *testing.T) {
	if os.Getenv("POINTPOST_FAULTS") != "1" {
		t.Skip("set POINTPOST_FAULTS=1 (make faults)")
	}
	crashTest(t, 100_000, 20)
}

// recipientLog is the crash sink's durable record: one line per accepted message, fsync'd
// before the sink answers 250, in group commits so the sink keeps pace.
type recipientLog struct {
	f *os.File

	mu      sync.Mutex
	written int64
	counts  map[string]int
	waiters []logWaiter
	syncMu  sync.Mutex
	synced  int64
	syncs   int64
}

func newRecipientLog(t *testing.T) *recipientLog {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "sink.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &recipientLog{f: f, counts: map[string]int{}}
}

// killSink is the crash tests' relay: it logs every recipient it accepts (recipientLog)
// and, while kills remain, holds back the recipients past the first limit until the next
// kill, so the job cannot end before every kill lands however fast the mail servers are.
type killSink struct {
	*mailer.Sink
	mu   sync.Mutex
	hold chan struct{} // closed at the next kill; nil once no kill remains
}

func startKillSink(t *testing.T, log *recipientLog, limit int) *killSink {
	t.Helper()
	k := &killSink{hold: make(chan struct{})}
	k.Sink = &mailer.Sink{Answer: func(from, to string, data []byte) error {
		if h := k.held(); h != nil && log.distinct() >= limit {
			<-h
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "held until the kill"}
		}
		return log.record(to)
	}}
	if err := k.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.afterKill(false)
		k.Close()
	})
	return k
}

func (k *killSink) held() chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.hold
}

// afterKill lets the held recipients through, holding the next ones again while more kills
// remain.
func (k *killSink) afterKill(more bool) {
	var next chan struct{}
	if more {
		next = make(chan struct{})
	}
	k.mu.Lock()
	old := k.hold
	k.hold = next
	k.mu.Unlock()
	if old != nil {
		close(old)
	}
}

// record logs to and returns once the line is on disk; an error makes the sink refuse the
// message, so nothing is accepted that the log does not hold.
func (l *recipientLog) record(to string) error {
	l.mu.Lock()
	_, err := l.f.WriteString(to + "\n")
	if err == nil {
		l.written++
		l.counts[to]++
		l.wake()
	}
	n := l.written
	l.mu.Unlock()
	if err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink log: " + err.Error()}
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= n {
		return nil // a sync that began after our write covered it
	}
	l.mu.Lock()
	upto := l.written
	l.mu.Unlock()
	if err := l.f.Sync(); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink log: " + err.Error()}
	}
	l.synced, l.syncs = upto, l.syncs+1
	return nil
}

// distinct is how many recipients have a message.
func (l *recipientLog) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts)
}

// logWaiter is a channel to close once the log names n recipients.
type logWaiter struct {
	n    int
	done chan struct{}
}

// reached returns a channel closed once the log names n distinct recipients.
func (l *recipientLog) reached(n int) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := logWaiter{n, make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.wake()
	return w.done
}

// wake closes the channels of the waiters whose count is reached; l.mu is held.
func (l *recipientLog) wake() {
	waiting := l.waiters[:0]
	for _, w := range l.waiters {
		if len(l.counts) >= w.n {
			close(w.done)
		} else {
			waiting = append(waiting, w)
		}
	}
	l.waiters = waiting
}

// reread counts the recipients in the file itself, which is what survives.
func (l *recipientLog) reread(t *testing.T) map[string]int {
	t.Helper()
	data, err := os.ReadFile(l.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line != "" {
			out[line]++
		}
	}
	return out
}

// crashTest builds the real binary and runs a job of n recipients, killing the process with
// SIGKILL at wantKills random moments and starting it again each time; then it checks that
// every consumer got the message, that duplicates stay within what can be in flight at a
// kill, and that the job's counts match the sink's log.
//
// The duplicate bound. A message is sent twice only if the relay took it and its outcome was
// not committed before the kill. The mail servers commit outcomes every 25 ms or every 500
// (mailer.Config CommitSize/CommitEvery defaults); per mail server what can be uncommitted at
// a kill is one batch being written (<= 500), the results channel behind it (capacity
// CommitSize, <= 500) and one message per connection being sent. So each kill may cost at
// most servers*(2*500 + connections) duplicates.
func crashTest(t *testing.T, n, wantKills int) {
	began := time.Now()
	rng := faultRand(t)

	bin := buildBinary(t)
	const servers, connections, commitSize = 2, 8, 500
	// While kills remain, the sink holds back the last recipients until the next kill, so
	// the job cannot end before every kill lands however fast the mail servers are. The
	// reserve covers the answers that pass the check together.
	reserve := 2 * servers * connections
	log := newRecipientLog(t)
	sink := startKillSink(t, log, n-reserve)
	e := newEnv(t, sink.URL())
	e["POINTPOST_MAIL_SERVERS"] = strconv.Itoa(servers)
	e["POINTPOST_CONNECTIONS"] = strconv.Itoa(connections)
	// Started again under its name, the process takes its mail servers and their leases
	// back at once, as a supervisor restarting it would (multiproc_test.go kills processes
	// whose successors have other names).
	e["POINTPOST_NAME"] = "crash"
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	now := time.Now()
	key, err := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create",
		writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(24*time.Hour), n, `{}`)))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	stderr := stderrFile(t)
	start := func() *process { return startProcess(t, bin, e, stderr) }

	// A kill moment is either a random time after the start (startup, selection, the first
	// sends), or once the sink has a random share of what is left: spread so that wantKills
	// land before the job ends.
	kills, early := 0, 0
	for kills < wantKills {
		p := start()
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond) // a random kill moment
			early++
		} else {
			before := log.distinct()
			spread := max(2*(n-before)/(wantKills-kills+1), 20)
			target := min(before+1+rng.IntN(spread), n-reserve)
			select {
			case <-log.reached(target):
			case <-time.After(2 * time.Minute):
				t.Fatalf("kill %d: the sink stayed at %d recipients for 2 minutes (target %d)", kills+1, log.distinct(), target)
			}
		}
		p.kill(t)
		kills++
		sink.afterKill(kills < wantKills)
	}
	if log.distinct() >= n {
		t.Fatalf("the sink had every recipient before kill %d: the hold failed", kills)
	}
	p := start()
	defer p.stop()
	st := openStore(t, e)
	waitFor(t, "the job to finish after the kills", time.Duration(n/100+60)*time.Second, func() bool {
		return jobState(t, st, key).State == postoffice.JobDone
	})

	got := log.reread(t)
	lost, duplicates := 0, 0
	for i := range n {
		to := fmt.Sprintf("c%d@example.com", i)
		c := got[to]
		if c == 0 {
			lost++
			continue
		}
		duplicates += c - 1
		cons, err := st.ConsumerByEmail(context.Background(), to)
		if err != nil {
			t.Fatal(err)
		}
		d, err := st.Delivery(context.Background(), key, cons.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Sent || d.Rejected || d.Failed {
			t.Errorf("%s is in the sink's log but her delivery is %+v", to, d)
		}
	}
	if len(got) != n || lost != 0 {
		t.Errorf("%d of %d consumers got the message (%d lost; the log names %d recipients)", n-lost, n, lost, len(got))
	}
	bound := kills * servers * (2*commitSize + connections)
	if duplicates > bound {
		t.Errorf("%d duplicates after %d kills, more than the %d that can be in flight", duplicates, kills, bound)
	}
	var shown struct {
		Job    postoffice.Job
		Counts postoffice.JobCounts
	}
	if err := json.Unmarshal([]byte(runOK(t, e, "job", "show", strconv.FormatInt(key, 10))), &shown); err != nil {
		t.Fatal(err)
	}
	if c := shown.Counts; c.Sent != len(got) || c.Total != n || c.Pending != 0 || c.Rejected != 0 || c.Failed != 0 || shown.Job.Selected != n {
		t.Errorf("job show: selected %d, counts %+v; the sink has %d distinct recipients", shown.Job.Selected, c, len(got))
	}
	t.Logf("%d recipients: %d kills survived (%d of them in the first 800ms of a start), %d lost, %d duplicates (bound %d), %d messages, %d sink fsyncs, %v",
		n, kills, early, lost, duplicates, bound, duplicates+len(got), log.syncs, time.Since(began).Round(time.Second))
}

// buildBinary builds pointpost for a test that runs it as a process of its own, to kill it.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pointpost")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// stderrFile is where the processes of a test write their errors, shown when one ends by
// itself.
func stderrFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// process is `pointpost serve` in a process of its own, so a test can kill it.
type process struct {
	cmd    *exec.Cmd
	done   chan error
	stderr *os.File
}

// startProcess starts `pointpost serve` with e's variables over the test's environment.
func startProcess(t *testing.T, bin string, e env, stderr *os.File) *process {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = os.Environ()
	for k, v := range e {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), stderr: stderr}
	go func() { p.done <- cmd.Wait() }()
	return p
}

// kill sends SIGKILL and waits for the end; the test fails if the process had ended by
// itself.
func (p *process) kill(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		out, _ := os.ReadFile(p.stderr.Name())
		t.Fatalf("pointpost exited by itself before the kill: %v\n%s", err, out)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// stop asks the process to end (SIGTERM) and waits for it.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}

// faultRand picks the random moments of a fault test: seeded from the clock, or from
// POINTPOST_FAULTS_SEED to replay a run, the seed logged either way.
func faultRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("POINTPOST_FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("POINTPOST_FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with POINTPOST_FAULTS_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}
