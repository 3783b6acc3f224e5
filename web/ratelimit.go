package web

import (
	"sync"
	"time"
)

// rateLimit allows each key at most max events in every window: a sliding count kept per
// key, forgotten once the window has passed. It keeps /join from mailing confirmation
// e-mails to one address, or from one client, without end.
type rateLimit struct {
	max    int
	window time.Duration

	mu     sync.Mutex
	events map[string][]time.Time
}

func newRateLimit(max int, window time.Duration) *rateLimit {
	return &rateLimit{max: max, window: window, events: map[string][]time.Time{}}
}

// allow records an event for key at now and reports whether it is within the limit.
func (l *rateLimit) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) > 10_000 {
		l.forget(now)
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

// forget drops keys with no event in the window, so the map stays small.
func (l *rateLimit) forget(now time.Time) {
	for key, ts := range l.events {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= l.window {
			delete(l.events, key)
		}
	}
}
