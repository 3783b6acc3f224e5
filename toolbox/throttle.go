package toolbox

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Sign-in limits: failed attempts allowed per account and per client address within
// loginWindow. Both are checked, and the attempt counted, before the password is, so a
// guesser who reaches a limit learns nothing more, whatever he types or however many
// requests he sends at once.
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

// attempt is a sign-in that begin let through: counted as failed until it is given back.
// An attempt from a device cookie of the account is not counted against the account: its
// budget is the cookie's own (ClaimDeviceAttempt).
type attempt struct {
	account, client string
	device          bool
	at              time.Time
}

// begin decides, under the lock, whether a sign-in to account from client may go ahead. If
// it may, the attempt is counted as failed at once, before any password is checked, so
// parallel guesses cannot all pass the check before the first is counted; a success gives
// it back (succeed). Otherwise begin returns how long to wait. A device attempt (the
// browser holds a device cookie of the account) meets only the client's limit: strangers'
// failures that lock the account do not lock out its owner's browser.
func (t *loginThrottle) begin(account, client string, device bool) (attempt, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := attempt{account: accountKey(account), client: client, device: device, at: t.now()}
	wait := t.clients.wait(a.client, a.at)
	if !device {
		wait = max(wait, t.accounts.wait(a.account, a.at))
	}
	if wait > 0 {
		return attempt{}, wait
	}
	if !device {
		t.accounts.add(a.account, a.at)
	}
	t.clients.add(a.client, a.at)
	return a, 0
}

// succeed ends a sign-in whose password was right: it forgets the account's failures, since
// its owner has shown he knows the password, and gives the client back the attempt. The
// client's other failures stay, so one good account does not launder guesses at others.
// A device sign-in leaves the account's failures: forgetting them would hand whoever
// locked it a fresh budget each time the owner signs in.
func (t *loginThrottle) succeed(a attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !a.device {
		delete(t.accounts.at, a.account)
	}
	t.clients.giveBack(a.client, a.at)
}

// giveBack uncounts an attempt that was not a wrong password (a disabled account with the
// right one) and leaves the account's earlier failures as they are.
func (t *loginThrottle) giveBack(a attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !a.device {
		t.accounts.giveBack(a.account, a.at)
	}
	t.clients.giveBack(a.client, a.at)
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

// giveBack removes one failure at time at from key, if it is still kept.
func (f *failures) giveBack(key string, at time.Time) {
	times := f.at[key]
	for i := len(times) - 1; i >= 0; i-- {
		if times[i].Equal(at) {
			times = slices.Delete(times, i, i+1)
			break
		}
	}
	if len(times) == 0 {
		delete(f.at, key)
		return
	}
	f.at[key] = times
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
