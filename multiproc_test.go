package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/store"
	"pointpost/store/pgtest"
)

// TestSeveralProcesses is the always-on multi-process test: three processes, 3,000
// recipients, 3 kills, on SQLite and on PostgreSQL. The size is
// TestSeveralProcesses100k.
func TestSeveralProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	onEachEngine(t, func(t *testing.T, db string) { multiProcessTest(t, db, 3000, 3) })
}

// TestSeveralProcesses100k is issue 12's target: 100,000 recipients, 10 kills. It takes
// minutes, so it runs only with POINTPOST_FAULTS=1; POINTPOST_FAULTS_SEED replays a run, and
// -run 'TestSeveralProcesses100k/postgres' picks an engine.
func TestSeveralProcesses100k(t *testing.T) {
	if os.Getenv("POINTPOST_FAULTS") != "1" {
		t.Skip("set POINTPOST_FAULTS=1 (make faults)")
	}
	onEachEngine(t, func(t *testing.T, db string) { multiProcessTest(t, db, 100_000, 10) })
}

// onEachEngine runs test on a fresh SQLite file and on a fresh PostgreSQL database (skipped
// without one), whatever engine the package's other tests use.
func onEachEngine(t *testing.T, test func(t *testing.T, db string)) {
	t.Run("sqlite", func(t *testing.T) { test(t, filepath.Join(t.TempDir(), "pointpost.db")) })
	t.Run("postgres", func(t *testing.T) { test(t, pgtest.Need(t, pgServer).NewDatabase(t)) })
}

// peer is one of the test's `pointpost serve` processes, started again after each kill.
// Requests to it hold mu for reading; a kill and the start after it hold it for writing, so
// a request never meets a process being killed, and a failed request is the pages' failure.
type peer struct {
	role, name string
	mu         sync.RWMutex
	p          *process
	http       string
	starts     int
}

// readyLine is the first line serve prints, with the address of its web server (or of its
// health checks).
var readyLine = regexp.MustCompile(`http://([0-9.:]+)/`)

// start starts the peer's process and waits for it to say where it answers; mu is held.
// The process is named name, or name-N when fresh (its mail servers get rows of their own,
// its predecessor's leases end by themselves and other servers take them over).
func (pr *peer) start(t *testing.T, bin string, e env, stderr *os.File, fresh bool) {
	t.Helper()
	if fresh {
		pr.starts++
	}
	name := pr.name
	if pr.starts > 0 {
		name = fmt.Sprintf("%s-%d", pr.name, pr.starts)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = os.Environ()
	for k, v := range e {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "POINTPOST_ROLE="+pr.role, "POINTPOST_NAME="+name)
	out := &lineWriter{lines: make(chan string, 16)}
	cmd.Stdout, cmd.Stderr = out, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), stderr: stderr}
	go func() { p.done <- cmd.Wait() }()
	select {
	case line := <-out.lines:
		m := readyLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: unexpected first line %q", name, line)
		}
		pr.p, pr.http = p, m[1]
	case err := <-p.done:
		errs, _ := os.ReadFile(stderr.Name())
		t.Fatalf("%s ended before it served: %v\n%s", name, err, errs)
	case <-time.After(time.Minute):
		t.Fatalf("%s did not start within a minute", name)
	}
}

// multiProcessTest runs one job of n recipients on three processes on the database db — all
// (a), mail (b) and web (c) — sending to a loopback relay, and kills one of them with
// SIGKILL at wantKills random moments, starting it again each time, half the times under a
// new name. Meanwhile it fetches a consumer page from both web processes all along, and
// submits acknowledgements to both at once. Then it checks that every consumer got the
// message, that duplicates stay within what can be in flight at a kill, that the job's
// counts are the sink's, that no acknowledgement awarded twice, and that the web processes
// not being killed never failed a request.
//
// The duplicate bound is crashTest's: a message is sent twice only if the relay took it and
// its outcome was not committed before the kill; per mail server that is at most one batch
// being written, the results channel behind it and one message per connection. A killed
// process's leases end after --lease, and the deliveries it held and had not sent go to
// another server: not duplicates.
func multiProcessTest(t *testing.T, db string, n, wantKills int) {
	began := time.Now()
	rng := faultRand(t)
	bin := buildBinary(t)
	const servers, connections, commitSize = 2, 8, 500

	// While kills remain, the sink holds back the last recipients until the next kill, so
	// the job cannot end before every kill lands (crashTest).
	reserve := 2 * 2 * servers * connections
	log := newRecipientLog(t)
	sink := startKillSink(t, log, n-reserve)

	e := newEnv(t, sink.URL())
	e["POINTPOST_DB"] = db
	e["POINTPOST_MAIL_SERVERS"] = strconv.Itoa(servers)
	e["POINTPOST_CONNECTIONS"] = strconv.Itoa(connections)
	// Long enough that a heartbeat late under the race detector does not end a live
	// server's leases; short enough that a kill costs seconds.
	e["POINTPOST_LEASE"] = "5s"
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	key, err := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create",
		writeCampaign(t, rewardCampaign(time.Now(), n)))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, e)
	keys := keyring(t, st)

	stderr := stderrFile(t)
	peers := []*peer{{role: "all", name: "a"}, {role: "mail", name: "b"}, {role: "web", name: "c"}}
	for _, pr := range peers {
		pr.start(t, bin, e, stderr, false)
	}
	defer func() {
		for _, pr := range peers {
			pr.p.stop()
		}
	}()
	web := []*peer{peers[0], peers[2]}

	// The pages: a consumer's acknowledgement page from each web process, all along.
	client := &http.Client{Timeout: 30 * time.Second}
	page := "/a/" + keys.Encode(key, consumerID(t, st, "c0@example.com"))
	var answered, failed atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var background sync.WaitGroup
	ask := func(pr *peer, do func(base string) (int, error)) bool {
		pr.mu.RLock()
		defer pr.mu.RUnlock()
		status, err := do("http://" + pr.http)
		if err != nil || status != http.StatusOK {
			failed.Add(1)
			failures.Store(fmt.Sprintf("%s: %d %v", pr.name, status, err), true)
			return false
		}
		answered.Add(1)
		return true
	}
	get := func(path string) func(string) (int, error) {
		return func(base string) (int, error) {
			resp, err := client.Get(base + path)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			_, err = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode, err
		}
	}
	for _, pr := range web {
		background.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				ask(pr, get(page))
			}
		})
	}
	// The acknowledgements: every (n/100)th consumer, once her message is in the sink's log,
	// submits from both web processes at once.
	var acked sync.Map // consumer id: true once a Submit was answered
	background.Go(func() {
		for i := 0; i < n; i += max(n/100, 1) {
			to := fmt.Sprintf("c%d@example.com", i)
			for !log.has(to) {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			c, err := st.ConsumerByEmail(context.Background(), to)
			if err != nil {
				t.Error(err)
				return
			}
			id := c.ID
			submit := func(base string) (int, error) {
				resp, err := client.PostForm(base+"/i/"+keys.Encode(key, id), url.Values{})
				if err != nil {
					return 0, err
				}
				defer resp.Body.Close()
				_, err = io.Copy(io.Discard, resp.Body)
				return resp.StatusCode, err
			}
			var both sync.WaitGroup
			for _, pr := range web {
				both.Go(func() {
					if ask(pr, submit) {
						acked.Store(id, true)
					}
				})
			}
			both.Wait()
		}
	})

	kills, early, renamed := 0, 0, 0
	killed := map[string]int{}
	// The messages beyond the first to each recipient, before each kill: what came between
	// one kill and the next is the first one's (resends happen after it).
	var extra []int
	resent := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		return int(log.written) - len(log.counts)
	}
	for kills < wantKills {
		victim := peers[rng.IntN(len(peers))]
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
		victim.mu.Lock()
		extra = append(extra, resent())
		victim.p.kill(t)
		kills++
		killed[victim.name]++
		fresh := rng.IntN(2) == 0
		if fresh {
			renamed++
		}
		victim.start(t, bin, e, stderr, fresh)
		victim.mu.Unlock()
		sink.afterKill(kills < wantKills)
	}
	if log.distinct() >= n {
		t.Fatalf("the sink had every recipient before kill %d: the hold failed", kills)
	}
	waitFor(t, "the job to finish after the kills", time.Duration(n/100+120)*time.Second, func() bool {
		return jobState(t, st, key).State == postoffice.JobDone
	})
	close(stop)
	background.Wait()
	extra = append(extra, resent())
	perKill := make([]int, kills)
	for i := range perKill {
		perKill[i] = extra[i+1] - extra[i]
	}

	got := log.reread(t)
	lost, duplicates := 0, 0
	for i := range n {
		c := got[fmt.Sprintf("c%d@example.com", i)]
		if c == 0 {
			lost++
		}
		duplicates += max(c-1, 0)
	}
	if len(got) != n || lost != 0 {
		t.Errorf("%d of %d consumers got the message (%d lost; the log names %d recipients)", n-lost, n, lost, len(got))
	}
	bound := kills * servers * (2*commitSize + connections)
	if duplicates > bound {
		t.Errorf("%d duplicates after %d kills, more than the %d that can be in flight", duplicates, kills, bound)
	}
	counts, err := st.JobCounts(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Total != n || counts.Sent != n || counts.Pending != 0 || counts.Rejected != 0 || counts.Failed != 0 {
		t.Errorf("job counts %+v; want every one of %d sent", counts, n)
	}

	// Every Submit answered earned the click rule's 5 points once, however many web
	// processes took it; settlement, in the mail processes, posts them all.
	var ackers []int64
	acked.Range(func(id, _ any) bool { ackers = append(ackers, id.(int64)); return true })
	if len(ackers) == 0 {
		t.Error("no Submit was answered")
	}
	waitFor(t, "settlement of the acknowledgements", time.Minute, func() bool {
		for _, id := range ackers {
			acct, err := st.Account(context.Background(), id, 0)
			if err != nil {
				t.Fatal(err)
			}
			if acct.Balance+acct.Pending != 5 {
				t.Fatalf("consumer %d: balance %d, pending %d; want 5 points, awarded once", id, acct.Balance, acct.Pending)
			}
			if acct.Pending != 0 {
				return false
			}
		}
		return true
	})

	if failed.Load() > 0 {
		var some []string
		failures.Range(func(k, _ any) bool { some = append(some, k.(string)); return len(some) < 5 })
		t.Errorf("%d of %d requests to the web processes not being killed failed: %v", failed.Load(), failed.Load()+answered.Load(), some)
	}
	t.Logf("%d recipients on 3 processes: %d kills (by process %v; %d in the first 800ms of a start, %d started under a new name), %d lost, %d duplicates (bound %d, %.1f a kill; after each kill %v), %d web requests answered, %d acknowledgements, %v",
		n, kills, killed, early, renamed, lost, duplicates, bound, float64(duplicates)/float64(kills), perKill, answered.Load(), len(ackers),
		time.Since(began).Round(time.Second))
}

// consumerID is the id of the consumer with e-mail address to.
func consumerID(t *testing.T, st *store.Store, to string) int64 {
	t.Helper()
	c, err := st.ConsumerByEmail(context.Background(), to)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// has reports whether the log names recipient to.
func (l *recipientLog) has(to string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[to] > 0
}

// TestRoleAndNameFlags: --role takes all, web, mail or receiver, by flag or environment,
// and refuses anything else naming where it came from; --name defaults to one of its own per
// process; --lease below a second is refused.
func TestRoleAndNameFlags(t *testing.T) {
	c, err := parseServeConfig(nil, env{}.get)
	if err != nil || c.Role != roleAll || c.Name != fmt.Sprintf("%s-%d", hostname(t), os.Getpid()) {
		t.Fatalf("by default: role %q name %q, %v; want all and HOSTNAME-PID", c.Role, c.Name, err)
	}
	for _, role := range []string{"web", "mail", "receiver"} {
		if c, err := parseServeConfig([]string{"--role", role, "--name", "n1"}, env{}.get); err != nil || c.Role != role || c.Name != "n1" {
			t.Errorf("--role %s: %+v, %v", role, c, err)
		}
	}
	for _, bad := range []struct {
		args []string
		env  env
		want string
	}{
		{[]string{"--role", "smtp"}, env{}, `--role must be all, web, mail or receiver, not "smtp"`},
		{[]string{"--role", ""}, env{}, `--role must be all, web, mail or receiver, not ""`},
		{nil, env{"POINTPOST_ROLE": "Web"}, `POINTPOST_ROLE must be all, web, mail or receiver, not "Web"`},
		{[]string{"--lease", "500ms"}, env{}, "--lease must be at least 1s"},
	} {
		if _, err := parseServeConfig(bad.args, bad.env.get); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v %v: %v; want %q", bad.args, bad.env, err, bad.want)
		}
	}
	if err := run(context.Background(), []string{"serve", "--role", "nonsense"}, newEnv(t, "").get, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--role must be") {
		t.Errorf("serve --role nonsense: %v", err)
	}
}

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRolesServeTheirParts: a process of each role serves its parts and no other: the web
// role the toolbox and consumer pages, without an SMTP receiver; the mail role its mail
// servers, answering only the health checks on its HTTP address; the receiver role the SMTP
// receiver. Each one's /readyz answers for its own parts.
func TestRolesServeTheirParts(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 2))
	for _, tc := range []struct {
		role        string
		toolbox     int
		smtp        bool
		checks      []string
		mailServers int
	}{
		{"web", http.StatusSeeOther, false, []string{"database", "relay"}, 0},
		{"mail", http.StatusNotFound, false, []string{"database", "mail_servers", "relay"}, 2},
		{"receiver", http.StatusNotFound, true, []string{"database", "receiver"}, 0},
	} {
		t.Run(tc.role, func(t *testing.T) {
			re := env{}
			for k, v := range e {
				re[k] = v
			}
			re["POINTPOST_ROLE"], re["POINTPOST_NAME"] = tc.role, "p-"+tc.role
			ctx, cancel := context.WithCancel(context.Background())
			out := &lineWriter{lines: make(chan string, 16)}
			done := make(chan error, 1)
			go func() { done <- run(ctx, []string{"serve"}, re.get, out) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve --role %s: %v", tc.role, err)
				}
			}()
			var line string
			select {
			case line = <-out.lines:
			case err := <-done:
				t.Fatalf("serve --role %s ended: %v", tc.role, err)
			case <-time.After(time.Minute):
				t.Fatal("serve did not start")
			}
			m := readyLine.FindStringSubmatch(line)
			if m == nil || strings.Contains(line, "smtp://") != tc.smtp {
				t.Fatalf("first line %q: want the HTTP address, and the SMTP one only with the receiver", line)
			}
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Get("http://" + m[1] + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.toolbox {
				t.Errorf("GET /: %d, want %d", resp.StatusCode, tc.toolbox)
			}
			var rep healthReport
			waitFor(t, "readiness", 30*time.Second, func() bool {
				resp, err := http.Get("http://" + m[1] + "/readyz")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				rep = healthReport{}
				if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
					t.Fatal(err)
				}
				return resp.StatusCode == http.StatusOK
			})
			var got []string
			for name := range rep.Checks {
				got = append(got, name)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.checks) {
				t.Errorf("/readyz checks %v, want %v", got, tc.checks)
			}
			st := openStore(t, e)
			servers, err := st.MailServers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			mine := 0
			for _, s := range servers {
				if s.Process == "p-"+tc.role {
					mine++
				}
			}
			if mine != tc.mailServers {
				t.Errorf("%d mail servers registered as p-%s, want %d", mine, tc.role, tc.mailServers)
			}
		})
	}
}
