package web

import (
	"strconv"
	"testing"
	"time"
)

func TestRateLimitWindowSlides(t *testing.T) {
	l := newRateLimit(2, time.Minute, 100)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !l.allow("a", t0) || !l.allow("a", t0.Add(time.Second)) {
		t.Fatal("the first two events were refused")
	}
	if l.allow("a", t0.Add(2*time.Second)) {
		t.Fatal("a third event within the window was allowed")
	}
	if !l.allow("b", t0.Add(2*time.Second)) {
		t.Fatal("another key was refused")
	}
	if !l.allow("a", t0.Add(time.Minute+time.Millisecond)) {
		t.Fatal("an event after the first left the window was refused")
	}
}

func TestRateLimitKeepsAtMostMaxKeys(t *testing.T) {
	const maxKeys = 50
	l := newRateLimit(3, time.Hour, maxKeys)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// A flood of new keys, every one still within its window: the map never passes the cap
	// and each newcomer is let in by dropping the key quiet longest.
	for i := range 10 * maxKeys {
		now := t0.Add(time.Duration(i) * time.Second)
		key := "client" + strconv.Itoa(i)
		if !l.allow(key, now) {
			t.Fatalf("new key %d refused", i)
		}
		if n := len(l.events); n > maxKeys {
			t.Fatalf("after %d keys the map holds %d, over its cap of %d", i+1, n, maxKeys)
		}
		if _, ok := l.events[key]; !ok {
			t.Fatalf("key %d not kept", i)
		}
	}
	last := 10*maxKeys - 1
	for i := last - maxKeys + 1; i <= last; i++ {
		if _, ok := l.events["client"+strconv.Itoa(i)]; !ok {
			t.Fatalf("client%d, one of the %d most recent, was dropped", i, maxKeys)
		}
	}
	// Once the window has passed, a new key drops every idle one at once.
	l.allow("late", t0.Add(2*time.Hour+time.Duration(10*maxKeys)*time.Second))
	if n := len(l.events); n != 1 {
		t.Fatalf("after the window %d keys kept, want 1", n)
	}
}
