package store

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pointpost/store/pgtest"
)

// TestLockProcessHoldsTheNameUntilRelease: a name held by one store is refused to another on
// the same database, naming the name; another name is free; after the release the name is
// taken again, and the SQLite lock file is gone.
func TestLockProcessHoldsTheNameUntilRelease(t *testing.T) {
	ctx := context.Background()
	first, second, held := holdingHost1(t)
	_, err := second.LockProcess(ctx, "host-1")
	if !errors.Is(err, ErrProcessNameTaken) || !strings.Contains(err.Error(), `process name "host-1"`) {
		t.Fatalf("second lock of host-1: %v; want ErrProcessNameTaken naming host-1", err)
	}
	other, err := second.LockProcess(ctx, "host-2")
	if err != nil {
		t.Fatalf("another name: %v", err)
	}
	defer other.Release()

	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	if err := held.Release(); err != nil {
		t.Errorf("a second release: %v", err)
	}
	if pgtest.OnPostgres() {
		// The holder's session names it to the database's operators.
		var sessions int
		if err := first.read.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = ?`,
			"pointpost host-2").Scan(&sessions); err != nil || sessions != 1 {
			t.Errorf("sessions named pointpost host-2: %d, %v; want 1", sessions, err)
		}
	}
	if !pgtest.OnPostgres() {
		if _, err := os.Stat(processLockFile(first.Path(), "host-1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the released name's lock file: %v; want it removed", err)
		}
		// A killed process's file, which nobody holds, goes at the next lock; a live one's stays.
		dead := processLockFile(first.Path(), "host-9")
		if err := os.WriteFile(dead, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		third, err := first.LockProcess(ctx, "host-3")
		if err != nil {
			t.Fatal(err)
		}
		defer third.Release()
		if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a dead process's lock file after another lock: %v; want it removed", err)
		}
		if _, err := os.Stat(processLockFile(first.Path(), "host-2")); err != nil {
			t.Errorf("the live holder's lock file: %v; want it kept", err)
		}
	}
	again, err := second.LockProcess(ctx, "host-1")
	if err != nil {
		t.Fatalf("host-1 after its release: %v", err)
	}
	if err := again.Release(); err != nil {
		t.Fatal(err)
	}
}

// holderEnv names the database TestLockProcessFreedWhenTheHolderIsKilled's child process
// holds the name "held" on.
const holderEnv = "POINTPOST_TEST_NAME_HOLDER"

// TestLockProcessFreedWhenTheHolderIsKilled: a name held by another process (this test
// binary run again) is refused; once that process is killed with SIGKILL, which releases
// nothing by itself, the name is taken at once.
func TestLockProcessFreedWhenTheHolderIsKilled(t *testing.T) {
	ctx := context.Background()
	if db := os.Getenv(holderEnv); db != "" {
		holdNameUntilKilled(t, db)
		return
	}
	s := openTest(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockProcessFreedWhenTheHolderIsKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), holderEnv+"="+s.Path())
	if pgServer != nil {
		cmd.Env = append(cmd.Env, pgtest.EnvURL+"="+pgServer.URL) // no cluster of its own
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	lines := bufio.NewScanner(stdout)
	var said strings.Builder
	for lines.Scan() && lines.Text() != "holding" {
		said.WriteString(lines.Text() + "\n")
	}
	if lines.Text() != "holding" {
		t.Fatalf("the holder ended before it held the name: %v\n%s%s", lines.Err(), said.String(), stderr.String())
	}
	go io.Copy(io.Discard, stdout) // the rest, so the child never blocks writing

	if _, err := s.LockProcess(ctx, "held"); !errors.Is(err, ErrProcessNameTaken) {
		t.Fatalf("the name another process holds: %v; want ErrProcessNameTaken", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the holder ended with %v, want killed", err)
	}
	done <- nil // for the cleanup
	killed := time.Now()
	l, err := s.LockProcess(ctx, "held")
	if err != nil {
		t.Fatalf("the name of the killed process: %v", err)
	}
	t.Logf("the killed process's name taken %v after its end", time.Since(killed))
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

// holdNameUntilKilled is the child of TestLockProcessFreedWhenTheHolderIsKilled: it holds
// "held" on db, says so, and waits for the end of its standard input, which comes only
// with the kill.
func holdNameUntilKilled(t *testing.T, db string) {
	s, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.LockProcess(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	os.Stdout.WriteString("holding\n")
	io.Copy(io.Discard, os.Stdin)
	t.Error("the holder's standard input ended: the parent test went away without the kill")
}

// TestProcessLockFileNames: each name has a file of its own beside the database, whatever
// bytes it holds; a name too long for a file name goes by its hash; a database in memory
// locks nothing.
func TestProcessLockFileNames(t *testing.T) {
	db := filepath.Join(t.TempDir(), "pointpost.db")
	long := strings.Repeat("n", 300)
	files := map[string]string{}
	for _, name := range []string{"", "host-1", "host_1", "a/b", "a%2Fb", "../up", "名前", long, long + "x"} {
		f := processLockFile(db, name)
		if filepath.Dir(f) != filepath.Dir(db) || !strings.HasPrefix(filepath.Base(f), "pointpost.db.process-") ||
			!strings.HasSuffix(f, ".lock") || len(filepath.Base(f)) > 255 {
			t.Errorf("name %q: lock file %s, want pointpost.db.process-….lock beside the database", name, f)
		}
		if other, ok := files[f]; ok {
			t.Errorf("names %q and %q share the lock file %s", other, name, f)
		}
		files[f] = name
	}
	if got := processLockFile(db, "host-1"); got != db+".process-host-1.lock" {
		t.Errorf("host-1's lock file %s", got)
	}

	// A lock file that cannot be made is the error, not a refusal.
	if _, err := lockProcessFile(filepath.Join(t.TempDir(), "missing", "x.db"), "x"); err == nil ||
		errors.Is(err, ErrProcessNameTaken) {
		t.Errorf("a lock file in a missing directory: %v", err)
	}

	// The same database by a symbolic link, or by a relative path, has the same locks.
	dir := t.TempDir()
	real := filepath.Join(dir, "real.db")
	if err := os.WriteFile(real, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	release, err := lockProcessFile(real, "n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockProcessFile(link, "n"); !errors.Is(err, ErrProcessNameTaken) {
		t.Errorf("the name by a link to the database: %v; want ErrProcessNameTaken", err)
	}
	t.Chdir(dir)
	if _, err := lockProcessFile("real.db", "n"); !errors.Is(err, ErrProcessNameTaken) {
		t.Errorf("the name by a relative path to the database: %v; want ErrProcessNameTaken", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(processLockFile(real, "n")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the released lock file: %v; want it removed", err)
	}

	s := &Store{path: ":memory:", engine: engineSQLite}
	l, err := s.LockProcess(context.Background(), "any")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.LockProcess(context.Background(), "any"); err != nil {
		t.Errorf("in memory, a second lock: %v", err)
	} else {
		again.Release()
	}
	l.Release()
}

// TestWatchTakesALostNameBack: on PostgreSQL a name's lock is its session's. When the server
// ends that session (a restart, a failover, a cut), Watch takes the name again on a new
// session; when another process took the name first, Watch ends with ErrProcessNameLost. On
// SQLite nothing but the process's end takes the lock away: Watch ends with its context.
func TestWatchTakesALostNameBack(t *testing.T) {
	ctx := context.Background()
	first, second, held := holdingHost1(t)
	watch := func() (stop func() error) {
		watchCtx, cancel := context.WithCancel(ctx)
		ended := make(chan error, 1)
		go func() { ended <- held.Watch(watchCtx, 5*time.Millisecond) }()
		return func() error {
			cancel()
			return <-ended
		}
	}
	if !pgtest.OnPostgres() {
		if err := watch()(); err != nil {
			t.Fatalf("Watch on SQLite: %v; want nil at its context's end", err)
		}
		if _, err := second.LockProcess(ctx, "host-1"); !errors.Is(err, ErrProcessNameTaken) {
			t.Fatalf("the name after Watch: %v; want it still held", err)
		}
		return
	}
	// session is the backend that holds host-1's lock; 0 when none does.
	session := func() int {
		var pid int
		err := first.read.QueryRowContext(ctx, `SELECT coalesce(max(l.pid), 0) FROM pg_locks l
			JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'pointpost host-1'`).Scan(&pid)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	terminate := func(pid int) {
		var ended bool
		if err := first.read.QueryRowContext(ctx, `SELECT pg_terminate_backend(?, 10000)`, pid).Scan(&ended); err != nil || !ended {
			t.Fatalf("terminating the lock's session %d: %v, %v", pid, ended, err)
		}
	}

	lost := session()
	if lost == 0 {
		t.Fatal("no session holds host-1's lock")
	}
	terminate(lost)
	stop := watch()
	again := 0
	for range 2000 {
		if again = session(); again != 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if again == 0 || again == lost {
		t.Fatalf("the lock's session after the old one %d ended: %d; want a new one", lost, again)
	}
	if _, err := second.LockProcess(ctx, "host-1"); !errors.Is(err, ErrProcessNameTaken) {
		t.Fatalf("the name Watch took back: %v; want ErrProcessNameTaken", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Watch at its context's end: %v", err)
	}

	// Another process takes the name while this one is cut off: Watch says it is lost.
	terminate(again)
	other, err := second.LockProcess(ctx, "host-1")
	if err != nil {
		t.Fatalf("the name of the ended session: %v", err)
	}
	defer other.Release()
	ended := make(chan error, 1)
	go func() { ended <- held.Watch(ctx, 5*time.Millisecond) }()
	if err := <-ended; !errors.Is(err, ErrProcessNameLost) || !strings.Contains(err.Error(), `"host-1"`) {
		t.Fatalf("Watch with the name taken: %v; want ErrProcessNameLost naming host-1", err)
	}
	if err := held.Release(); err != nil {
		t.Logf("releasing the lost lock: %v", err) // its session is gone: nothing to let go of
	}
}

// holdingHost1 opens a test database twice, as two processes would, the first holding the
// name host-1 until the test ends.
func holdingHost1(t *testing.T) (first, second *Store, held *ProcessLock) {
	t.Helper()
	first = openTest(t)
	second = openAgain(t, first)
	var err error
	if held, err = first.LockProcess(context.Background(), "host-1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Release() })
	return first, second, held
}

// TestWatchEndsItsOwnLostSession: a connection that dies on the client's side alone leaves
// its session, and the name's lock, on the server until the server's keepalives run out. Watch
// ends that session of its own and takes the name again, rather than taking it for another
// process's and stopping.
func TestWatchEndsItsOwnLostSession(t *testing.T) {
	pgtest.Need(t, pgServer)
	ctx := context.Background()
	direct, err := url.Parse(pgServer.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cut := cuttableProxy(t, direct.Host)
	proxied := *direct
	proxied.Host = cut.addr
	s, err := Open(ctx, proxied.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	held, err := s.LockProcess(ctx, "host-1")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	lost := held.session.pid

	cut.dropClients() // the server still has every session, and the lock
	watchCtx, stop := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() { ended <- held.Watch(watchCtx, 5*time.Millisecond) }()
	for range 2000 {
		held.mu.Lock()
		pid := held.session.pid
		held.mu.Unlock()
		if pid != lost {
			break
		}
		select {
		case err := <-ended:
			t.Fatalf("Watch ended with %v; want it to take the name back", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	if err := <-ended; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	var holders int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ?`, lost).Scan(&holders); err != nil || holders != 0 {
		t.Errorf("the lost session %d: %d sessions, %v; want it ended", lost, holders, err)
	}
	other, err := Open(ctx, direct.String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.LockProcess(ctx, "host-1"); !errors.Is(err, ErrProcessNameTaken) {
		t.Errorf("the name Watch took back: %v; want ErrProcessNameTaken", err)
	}
}

// cutProxy forwards TCP connections to a server; dropClients closes the client sides alone,
// as a network cut the server has not noticed yet.
type cutProxy struct {
	addr    string
	mu      sync.Mutex
	clients []net.Conn
}

func cuttableProxy(t *testing.T, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: l.Addr().String()}
	var servers []net.Conn
	t.Cleanup(func() {
		l.Close()
		p.dropClients()
		p.mu.Lock()
		for _, c := range servers {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.clients, servers = append(p.clients, c), append(servers, up)
			p.mu.Unlock()
			go io.Copy(up, c) // on the cut it stops, leaving the server's side open
			go io.Copy(c, up)
		}
	}()
	return p
}

func (p *cutProxy) dropClients() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		c.Close()
	}
	p.clients = nil
}
