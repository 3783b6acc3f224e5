package web

import (
	"sync"
	"time"
)

// rateLimitKeys is how many keys a rateLimit keeps by default: with /join's limits, well
// under a megabyte.
const rateLimitKeys = 10_000

// rateLimit allows each key at most max events in every window: a sliding count kept per
// key, forgotten once the window has passed. It keeps /join from mailing confirmation
// e-mails to one address, or from one client, without end. It keeps at most maxKeys keys:
// a new key past that first drops the keys quiet for a whole window and, if none is, the
// one quiet longest, so a flood of new keys cannot grow it.
type rateLimit struct {
	max     int
	window  time.Duration
	maxKeys int

	mu     sync.Mutex
	events map[string][]time.Time
}

func newRateLimit(max int, window time.Duration, maxKeys int) *rateLimit {
	return &rateLimit{max: max, window: window, maxKeys: maxKeys, events: map[string][]time.Time{}}
}

// allow records an event for key at now and reports whether it is within the limit.
func (l *rateLimit) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, known := l.events[key]; !known && len(l.events) >= l.maxKeys {
		l.makeRoom(now)
	}
	recent := l.events[key][:0]
	for _, t := range l.events[key] {
		if now.Sub(t) < l.window {
			recent = append(recent, t)
		}
	}
	if len(recent) >= l.max {
		l.events[key] = recent
		return false
	}
	l.events[key] = append(recent, now)
	return true
}

// makeRoom makes room for one more key: it drops every key with no event in the window
// and, if that frees nothing, the key whose last event is oldest.
func (l *rateLimit) makeRoom(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for key, ts := range l.events {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= l.window {
			delete(l.events, key)
			continue
		}
		if last := ts[len(ts)-1]; oldest == "" || last.Before(oldestAt) {
			oldest, oldestAt = key, last
		}
	}
	if len(l.events) >= l.maxKeys {
		delete(l.events, oldest)
	}
}
