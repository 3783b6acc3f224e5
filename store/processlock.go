package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
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

// ProcessLock holds a process name on a database for the life of the process: a name's mail
// server rows and the leases they hold are one process's (RegisterProcessMailServers). The
// operating system or the database server lets go of it when the process dies, however it
// dies, so a process started again under the name after a kill takes it at once.
type ProcessLock struct {
	mu      sync.Mutex // release, which Watch replaces when it takes the name again
	release func() error
	// retake is how a lost PostgreSQL session takes the name again; nil on SQLite, whose
	// lock only the process's end lets go of.
	retake func(context.Context) (func() error, error)
	// alive checks the session that holds the lock.
	alive func(context.Context) error
	name  string
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
	var release func() error
	var err error
	lock := &ProcessLock{}
	switch {
	case s.engine == enginePostgres:
		var session *sql.Conn
		release, session, err = s.lockProcessSession(ctx, name)
		lock.alive = func(ctx context.Context) error { return session.PingContext(ctx) }
		lock.retake = func(ctx context.Context) (func() error, error) {
			release, again, err := s.lockProcessSession(ctx, name)
			if err == nil {
				session = again
			}
			return release, err
		}
	case inMemory(s.path):
		release = func() error { return nil }
	default:
		release, err = lockProcessFile(processLockFile(s.path, name))
		if err == nil {
			removeDeadProcessLocks(s.path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("process name %q: %w", name, err)
	}
	lock.release = release
	lock.name = name
	return lock, nil
}

// Watch checks every interval, until ctx ends, that the lock is still held. On PostgreSQL the
// lock is its session's: when the connection to the database was lost (a restart of the
// server, a failover, a network cut long enough for the keepalives) the lock went with it,
// and Watch takes it again on a new session. It returns ErrProcessNameLost when another
// process took the name meanwhile: this process must stop its mail servers, which share that
// name's rows and leases. While the database cannot be reached it keeps trying: nothing can
// be written then either. On SQLite it waits for ctx alone.
func (l *ProcessLock) Watch(ctx context.Context, interval time.Duration) error {
	if l == nil || l.alive == nil {
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
		if l.alive(ctx) == nil || ctx.Err() != nil {
			continue
		}
		release, err := l.retake(ctx)
		if errors.Is(err, ErrProcessNameTaken) {
			return fmt.Errorf("process name %q: %w", l.name, ErrProcessNameLost)
		}
		if err != nil {
			continue // the database is still away; the next tick tries again
		}
		l.mu.Lock()
		dead := l.release
		if dead != nil {
			l.release = release
		}
		l.mu.Unlock()
		if dead == nil { // released meanwhile: so is the new one
			release()
			return nil
		}
		dead() // closes what is left of the lost session
	}
}

// Release lets go of the name; another process may take it at once. A second Release does
// nothing.
func (l *ProcessLock) Release() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.release == nil {
		return nil
	}
	release := l.release
	l.release = nil
	return release()
}

// lockProcessSession takes name's advisory lock on a PostgreSQL session of its own, kept
// open until the release.
func (s *Store) lockProcessSession(ctx context.Context, name string) (func() error, *sql.Conn, error) {
	db, err := openPostgres(s.path)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	closeAll := func() error { return errors.Join(conn.Close(), db.Close()) }
	// application_name shows the holder in pg_stat_activity; the keepalives end the session
	// of a process whose machine went down.
	if _, err := conn.ExecContext(ctx, `SELECT set_config('application_name', ?, false),
		set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false),
		set_config('tcp_keepalives_count', '3', false), set_config('lock_timeout', ?, false)`,
		"pointpost "+name, fmt.Sprintf("%dms", processLockWait.Milliseconds())); err != nil {
		closeAll()
		return nil, nil, err
	}
	key := processNameKey(name)
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?, ?)`, lockProcessNames, key); err != nil {
		closeAll()
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available: lock_timeout ran out
			return nil, nil, ErrProcessNameTaken
		}
		return nil, nil, err
	}
	return func() error {
		// Unlocked before the session ends, so the name is free when Release returns.
		_, err := conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(?, ?)`, lockProcessNames, key)
		return errors.Join(err, closeAll())
	}, conn, nil
}

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

// lockProcessFile takes an exclusive flock on path, made if missing. The holder removes the
// file as it lets go, so a lock won on a file no longer at path is given back and taken
// again on the new one; a few tries bound the race with holders coming and going.
func lockProcessFile(path string) (func() error, error) {
	for try := 0; ; try++ {
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
		held, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		current, err := os.Stat(path)
		if err == nil && os.SameFile(held, current) {
			return func() error { return errors.Join(os.Remove(path), f.Close()) }, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if try == 10 {
			return nil, fmt.Errorf("lock %s: removed under us %d times", path, try+1)
		}
	}
}

// removeDeadProcessLocks removes the lock files beside the SQLite database file that no live
// process holds: a killed process leaves its file, and with the default names (HOSTNAME-PID)
// no process takes that name again. A process about to lock a file removed here finds it gone
// and makes it again (lockProcessFile).
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
