package toolbox

import (
	"strings"
	"sync"
	"time"
)

// Sign-in limits: failed attempts allowed per account and per client address within
// loginWindow. Both are checked before the password is, so a guesser who reaches a limit
// learns nothing more, whatever he types.
const (
	loginWindow         = 15 * time.Minute
	loginFailsPerAcct   = 5
	loginFailsPerClient = 20
	// loginThrottleKeys bounds each table; past it, stale entries go first, then the
	// longest quiet.
	loginThrottleKeys = 10000
)

// loginThrottle counts failed sign-ins in memory, per account and per client address.
type loginThrottle struct {
	now      func() time.Time
	mu       sync.Mutex
	accounts failures
	clients  failures
}

func newLoginThrottle(now func() time.Time) *loginThrottle {
	return &loginThrottle{now: now,
		accounts: failures{limit: loginFailsPerAcct, at: map[string][]time.Time{}},
		clients:  failures{limit: loginFailsPerClient, at: map[string][]time.Time{}}}
}

// wait returns how long a sign-in to account from client must wait: 0 if it may go ahead.
func (t *loginThrottle) wait(account, client string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	return max(t.accounts.wait(accountKey(account), now), t.clients.wait(client, now))
}

// fail records a failed sign-in to account from client.
func (t *loginThrottle) fail(account, client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.accounts.add(accountKey(account), now)
	t.clients.add(client, now)
}

// succeed forgets the account's failures: its owner has shown he knows the password. The
// client's stay, so one good account does not launder guesses at others.
func (t *loginThrottle) succeed(account string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.accounts.at, accountKey(account))
}

func accountKey(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// failures keeps, per key, the times of the last limit failures, oldest first.
type failures struct {
	limit int
	at    map[string][]time.Time
}

func (f *failures) wait(key string, now time.Time) time.Duration {
	times := f.at[key]
	if len(times) < f.limit {
		return 0
	}
	// The limit-th failure back leaves the window at this time.
	return max(times[len(times)-f.limit].Add(loginWindow).Sub(now), 0)
}

func (f *failures) add(key string, now time.Time) {
	times, ok := f.at[key]
	if !ok && len(f.at) >= loginThrottleKeys {
		f.evict(now)
	}
	times = append(times, now)
	if len(times) > f.limit {
		times = times[len(times)-f.limit:]
	}
	f.at[key] = times
}

// evict makes room for one more key: it drops every key whose last failure has left the
// window and, if none has, the one quiet longest.
func (f *failures) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, times := range f.at {
		last := times[len(times)-1]
		if now.Sub(last) >= loginWindow {
			delete(f.at, k)
			continue
		}
		if oldest == "" || last.Before(oldestAt) {
			oldest, oldestAt = k, last
		}
	}
	if len(f.at) >= loginThrottleKeys {
		delete(f.at, oldest)
	}
}
