// Package pgtest gives tests a real PostgreSQL: a throwaway cluster of Debian's PostgreSQL 15
// (initdb and pg_ctl from /usr/lib/postgresql/15/bin, as the unprivileged postgres user when
// the tests run as root), in a temporary directory, on a free loopback port, removed at the
// end; or, when POINTPOST_TEST_POSTGRES=postgres://… is set, that server. A package's tests
// share one server through TestMain and take a fresh database each.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable that points the tests at an existing server instead of a
// throwaway cluster; the user it names must be allowed to create databases.
const EnvURL = "POINTPOST_TEST_POSTGRES"

// EnvRequire names the variable that, set to 1, turns a missing PostgreSQL from a skip into a
// failure; CI sets it, so it never skips.
const EnvRequire = "POINTPOST_REQUIRE_POSTGRES"

// BinDir is where Debian's postgresql-15 puts initdb, pg_ctl and postgres.
const BinDir = "/usr/lib/postgresql/15/bin"

// EnvEngine names the variable that puts a package's test databases on PostgreSQL: "postgres"
// there, SQLite files when empty. RunAgain sets it.
const EnvEngine = "POINTPOST_TEST_ENGINE"

// OnPostgres reports whether this test binary's databases are on PostgreSQL (EnvEngine).
func OnPostgres() bool { return os.Getenv(EnvEngine) == "postgres" }

// ErrUnavailable is returned by Start when neither EnvURL nor the binaries in BinDir are
// there.
var ErrUnavailable = errors.New("no PostgreSQL for the tests: install Debian's postgresql (15) or set " + EnvURL + "=postgres://…")

// Server is a PostgreSQL the tests create their databases on.
type Server struct {
	// URL reaches the server's maintenance database as a user that may create databases.
	URL string
	// dir holds the throwaway cluster; empty for a server of EnvURL.
	dir  string
	cred *syscall.Credential
	made atomic.Int64
}

// Start starts a throwaway cluster, or returns the server of EnvURL when it is set. Returns
// ErrUnavailable when there is neither.
func Start(ctx context.Context) (*Server, error) {
	if u := os.Getenv(EnvURL); u != "" {
		s := &Server{URL: u}
		return s, s.ping(ctx)
	}
	if _, err := os.Stat(filepath.Join(BinDir, "initdb")); err != nil {
		return nil, ErrUnavailable
	}
	s := &Server{}
	dir, err := os.MkdirTemp("", "pointpost-pg-*")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to the postgres user.
		if s.cred, err = credential("postgres"); err != nil {
			s.Stop()
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user: %w", err)
		}
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if err := s.command(ctx, "initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=C", "--no-sync"); err != nil {
		s.Stop()
		return nil, err
	}
	// A port found free may be taken before postgres binds it: try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			s.Stop()
			return nil, err
		}
		// Durability is not under test here: no fsync keeps the suite quick.
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off", port, s.dir)
		err = s.command(ctx, "pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "postgres.log"), "-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			break
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			s.Stop()
			return nil, fmt.Errorf("%w\n%s", err, log)
		}
	}
	return s, s.ping(ctx)
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// command runs one of the cluster's programs as the cluster's owner.
func (s *Server) command(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(BinDir, name), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	return nil
}

func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return fmt.Errorf("pgtest: %s: %w", redact(s.URL), err)
	}
	return conn.Close(ctx)
}

// Stop stops the throwaway cluster and removes its directory; a server of EnvURL is left
// running.
func (s *Server) Stop() error {
	if s.dir == "" {
		return nil
	}
	var err error
	if _, statErr := os.Stat(filepath.Join(s.data(), "postmaster.pid")); statErr == nil {
		err = s.command(context.Background(), "pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// NewDatabase creates an empty database for t and returns its URL; it is dropped when t ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("pointpost_test_%d_%d", os.Getpid(), s.made.Add(1))
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			t.Errorf("pgtest: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Main runs a package's tests with a server in *srv, for TestMain: m.Run, then Stop. Without
// PostgreSQL *srv stays nil and the tests that need one skip (Need), unless EnvRequire is 1,
// when Main fails at once.
func Main(m *testing.M, srv **Server) int {
	s, err := Start(context.Background())
	if err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv(EnvRequire) != "1" {
			return m.Run()
		}
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	*srv = s
	defer s.Stop()
	return m.Run()
}

// MainIfAsked is Main when EnvEngine puts the tests on PostgreSQL, and m.Run alone otherwise:
// for a package whose tests start no cluster of their own on SQLite.
func MainIfAsked(m *testing.M, srv **Server) int {
	if !OnPostgres() {
		return m.Run()
	}
	return Main(m, srv)
}

// Database names a fresh database for t on the engine the tests run on (EnvEngine): one on
// srv, dropped when t ends, or else the SQLite file sqliteFile.
func Database(t testing.TB, srv *Server, sqliteFile string) string {
	t.Helper()
	if OnPostgres() {
		return Need(t, srv).NewDatabase(t)
	}
	return sqliteFile
}

// Need returns srv, or skips t when there is no PostgreSQL (Main left it nil).
func Need(t testing.TB, srv *Server) *Server {
	t.Helper()
	if srv == nil {
		t.Skip(ErrUnavailable.Error())
	}
	return srv
}

// RunAgain runs this test binary again with its databases on s (EnvEngine), for the tests
// named, and fails t unless each of them ran and passed there: a package's tests, unchanged,
// on the other engine. It skips in that run itself, and with -short.
func (s *Server) RunAgain(t *testing.T, tests []string) {
	t.Helper()
	if OnPostgres() {
		t.Skip("the PostgreSQL run itself")
	}
	if testing.Short() {
		t.Skip("runs the package's tests again")
	}
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^("+strings.Join(tests, "|")+")$",
		"-test.v", "-test.count=1", "-test.timeout=15m")
	cmd.Env = append(os.Environ(), EnvEngine+"=postgres", EnvURL+"="+s.URL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	passed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^--- PASS: (\S+)`).FindAllStringSubmatch(out.String(), -1) {
		passed[m[1]] = true
	}
	var missing []string
	for _, name := range tests {
		if !passed[name] {
			missing = append(missing, name)
		}
	}
	if err != nil || len(missing) > 0 {
		t.Fatalf("on PostgreSQL: %v; not passed: %v\n%s", err, missing, out.String())
	}
	t.Logf("%d tests passed on PostgreSQL", len(passed))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// redact hides the password of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a malformed URL)"
	}
	return strings.Replace(u.Redacted(), "xxxxx", "…", 1)
}
