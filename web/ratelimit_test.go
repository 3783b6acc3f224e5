package web

import (
	"testing"
	"time"
)

func TestRateLimitWindowSlides(t *testing.T) {
	l := newRateLimit(2, time.Minute)
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
	l.forget(t0.Add(time.Hour))
	if len(l.events) != 0 {
		t.Fatalf("%d keys kept after their window", len(l.events))
	}
}
