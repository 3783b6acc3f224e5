package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrProcessNameTaken is returned by LockProcess when another live process holds the name on
// the database.
var ErrProcessNameTaken = errors.New("held by another live process on this database")

// processLockWait is how long LockProcess on PostgreSQL waits for a name's lock: the session
// of a process killed a moment ago ends as soon as its server reads the closed connection,
// which a process started again at once may come before.
const processLockWait = 3 * time.Second

// processPingTimeout bounds Watch's check of the lock's PostgreSQL session, and the unlock at
// Release: a connection that went silent (a network cut) answers nothing, and TCP alone
// would wait a quarter of an hour to say so.
const processPingTimeout = 5 * time.Second

// ProcessLock holds a process name on a database for the life of the process: a name's mail
// server rows and the leases they hold are one process's (RegisterProcessMailServers). The
// operating system or the database server lets go of it when the process dies, however it
// dies: on SQLite at once; on PostgreSQL as soon as the server sees the connection closed,
// which a killed process's kernel does at once (a restart waits for it, processLockWait),
// and within half a minute for a machine that went down (TCP keepalives).
type ProcessLock struct {
	name    string
	mu      sync.Mutex // release, and session, which Watch replaces when it takes the name again
	release func() error
	// session is the PostgreSQL session that holds the lock; nil on SQLite, whose lock only
	// the process's end lets go of.
	session *processSession
	store   *Store
}

// ErrProcessNameLost is Watch's end when the session that held a process's name ended and
// another process took the name before this one could take it back.
var ErrProcessNameLost = errors.New("lost to another process while the database connection was down")

// LockProcess takes the process name name on the store's database until Release or the end
// of the process. Returns ErrProcessNameTaken, naming the name, when another live process
// holds it.
//
// On PostgreSQL the lock is a session-level advisory lock (lockProcessNames, the name's hash)
// on a connection of its own, held until it closes: the server ends a session whose client
// closed its connection, which the kernel does for a killed process. The session asks the
// server for TCP keepalives every few seconds, so the name of a process whose machine went
// down comes free within half a minute rather than after the usual system default of two
// hours. A name held by a live process is refused after processLockWait.
//
// On SQLite the lock is an flock on a file beside the database's, FILE.process-NAME.lock,
// one per name: the kernel releases it when the process ends. A file per name keeps the
// lock exact and readable (ls shows the names in use), where byte ranges of one file would
// be hashes of names, and POSIX byte-range locks are the process's, not the open file's.
// Release removes the file. A database in memory has no other process to share it with:
// nothing is locked.
func (s *Store) LockProcess(ctx context.Context, name string) (*ProcessLock, error) {
	l := &ProcessLock{name: name, store: s}
	var err error
	switch {
	case s.engine == enginePostgres:
		if l.session, err = s.lockProcessSession(ctx, name, nil); err == nil {
			l.release = l.session.release
		}
	case inMemory(s.path):
		l.release = func() error { return nil }
	default:
		l.release, err = lockProcessFile(s.path, name)
	}
	if err != nil {
		return nil, fmt.Errorf("process name %q: %w", name, err)
	}
	return l, nil
}

// Watch checks every interval, until ctx ends, that the lock is still held. On PostgreSQL the
// lock is its session's: when the connection to the database was lost (a restart of the
// server, a failover, a network cut) the lock went with it, or goes once the server sees the
// connection dead, and Watch takes it again on a new session, ending the old one first if
// the server still has it. It returns ErrProcessNameLost when another process took the name
// meanwhile: this process must stop its mail servers, which share that name's rows and
// leases, without writing to them. While the database cannot be reached it keeps trying:
// nothing can be written then either. On SQLite it waits for ctx alone.
func (l *ProcessLock) Watch(ctx context.Context, interval time.Duration) error {
	if l == nil || l.session == nil {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		l.mu.Lock()
		lost := l.session
		l.mu.Unlock()
		if lost.alive(ctx) == nil || ctx.Err() != nil {
			continue
		}
		again, err := l.store.lockProcessSession(ctx, l.name, lost)
		if errors.Is(err, ErrProcessNameTaken) {
			return fmt.Errorf("process name %q: %w", l.name, ErrProcessNameLost)
		}
		if err != nil {
			continue // the database is still away; the next tick tries again
		}
		l.mu.Lock()
		released := l.release == nil
		if !released {
			l.session, l.release = again, again.release
		}
		l.mu.Unlock()
		if released { // released meanwhile: so is the new one
			again.release()
			return nil
		}
		lost.release() // closes what is left of the lost session
	}
}

// Release lets go of the name; another process may take it at once. A second Release does
// nothing.
func (l *ProcessLock) Release() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	release := l.release
	l.release = nil
	l.mu.Unlock()
	if release == nil {
		return nil
	}
	return release()
}

// processSession is a PostgreSQL session of its own that holds a process name's advisory lock.
type processSession struct {
	db   *sql.DB
	conn *sql.Conn
	key  int32
	// pid and started name the session on its server (pg_stat_activity), so a lost one the
	// server still keeps can be ended and no other.
	pid     int
	started time.Time
}

// lockProcessSession takes name's advisory lock on a PostgreSQL session of its own, kept
// open until the release. lost, when not nil, is this process's earlier session, which the
// server may still keep, with the lock, after the connection died on the way: it is ended
// first.
func (s *Store) lockProcessSession(ctx context.Context, name string, lost *processSession) (*processSession, error) {
	db, err := openPostgres(s.path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	ps := &processSession{db: db, conn: conn, key: processNameKey(name)}
	fail := func(err error) (*processSession, error) {
		ps.close()
		return nil, err
	}
	// application_name shows the holder in pg_stat_activity; the keepalives and the user
	// timeout end the session of a process whose machine went down or was cut off.
	if _, err := conn.ExecContext(ctx, `SELECT set_config('application_name', ?, false),
		set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false),
		set_config('tcp_keepalives_count', '3', false), set_config('tcp_user_timeout', '25000', false),
		set_config('lock_timeout', ?, false)`,
		"pointpost "+name, fmt.Sprintf("%dms", processLockWait.Milliseconds())); err != nil {
		return fail(err)
	}
	if err := conn.QueryRowContext(ctx, `SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).
		Scan(&ps.pid, &ps.started); err != nil {
		return fail(err)
	}
	if lost != nil {
		// The server cannot tell a lost connection from a quiet one until its keepalives run
		// out; the lock it still holds there is this process's own.
		if _, err := conn.ExecContext(ctx, `SELECT pg_terminate_backend(pid, ?) FROM pg_stat_activity
			WHERE pid = ? AND backend_start = ?`, processLockWait.Milliseconds(), lost.pid, lost.started); err != nil {
			return fail(err)
		}
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?, ?)`, lockProcessNames, ps.key); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available: lock_timeout ran out
			err = ErrProcessNameTaken
		}
		return fail(err)
	}
	return ps, nil
}

// alive checks that the session still answers, within processPingTimeout. The end of ctx
// does not cut the check short: a query cancelled halfway closes its connection, and the
// lock with it, while the process still runs.
func (ps *processSession) alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), processPingTimeout)
	defer cancel()
	return ps.conn.PingContext(ctx)
}

// release unlocks the name before the session ends, so the name is free when Release
// returns, and closes the session either way: its end frees the lock too.
func (ps *processSession) release() error {
	ctx, cancel := context.WithTimeout(context.Background(), processPingTimeout)
	defer cancel()
	_, err := ps.conn.ExecContext(ctx, `SELECT pg_advisory_unlock(?, ?)`, lockProcessNames, ps.key)
	return errors.Join(err, ps.close())
}

func (ps *processSession) close() error { return errors.Join(ps.conn.Close(), ps.db.Close()) }

// processNameKey is the second key of name's advisory lock: two names sharing a hash would
// exclude each other, which a one-in-four-billion chance among the names alive at once
// makes a theory.
func processNameKey(name string) int32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int32(h.Sum32())
}

// inMemory reports whether the SQLite database file names an in-memory database.
func inMemory(file string) bool {
	return file == ":memory:" || strings.HasPrefix(file, "file::memory:") || strings.Contains(file, "mode=memory")
}

// processLockFile is the lock file of name beside the SQLite database file: the name's bytes
// as they are where a file name can have them, %XX otherwise, so two names never share a
// file; a name too long for a file name goes by its SHA-256 (after a ~, which an escaped
// name never starts with).
func processLockFile(file, name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	part := b.String()
	if len(part) > 100 {
		sum := sha256.Sum256([]byte(name))
		part = "~" + hex.EncodeToString(sum[:16])
	}
	return file + ".process-" + part + ".lock"
}

// lockProcessFile takes an exclusive flock on name's lock file beside the SQLite database
// file, made if missing, and removes the lock files no live process holds. Taking, sweeping
// and the release's removal each run under a short flock of a guard file that is never
// removed (FILE.processes.lock): otherwise a sweep holding a dead file's flock for a moment
// would refuse a process starting under that name, and a sweep could remove a file another
// process had just made and locked, letting a third take the name beside it. The files are
// named after the database's real path, so a symbolic link or a relative path to the same
// file finds the same locks.
func lockProcessFile(file, name string) (func() error, error) {
	file, err := realPath(file)
	if err != nil {
		return nil, err
	}
	path := processLockFile(file, name)
	unguard, err := guardProcessLocks(file)
	if err != nil {
		return nil, err
	}
	defer unguard()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrProcessNameTaken
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	removeDeadProcessLocks(file)
	return func() error {
		unguard, err := guardProcessLocks(file)
		if err != nil {
			return errors.Join(err, f.Close())
		}
		defer unguard()
		return errors.Join(os.Remove(path), f.Close())
	}, nil
}

// realPath is the SQLite database file's absolute path with its symbolic links resolved.
func realPath(file string) (string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil // not made yet: nothing to resolve
}

// guardProcessLocks holds the guard of the lock files beside file until the returned
// function is called.
func guardProcessLocks(file string) (func(), error) {
	path := file + ".processes.lock"
	g, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(g.Fd()), syscall.LOCK_EX); err != nil {
		g.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { g.Close() }, nil
}

// removeDeadProcessLocks removes the lock files beside the SQLite database file that no live
// process holds: a killed process leaves its file, and with the default names (HOSTNAME-PID)
// no process takes that name again. The caller holds the guard (guardProcessLocks).
func removeDeadProcessLocks(file string) {
	paths, _ := filepath.Glob(escapeGlob(file) + ".process-*.lock")
	for _, path := range paths {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.Remove(path)
		}
		f.Close()
	}
}

// escapeGlob makes path match itself alone in filepath.Glob.
func escapeGlob(path string) string {
	var b strings.Builder
	for _, r := range path {
		if strings.ContainsRune(`*?[\\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
