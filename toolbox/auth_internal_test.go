package toolbox

import (
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestUnknownAddressIsCheckedLikeAPassword(t *testing.T) {
	d := Deps{PasswordCost: bcrypt.MinCost + 1}
	h := d.newDummyHash()
	if cost, err := bcrypt.Cost(h); err != nil || cost != d.PasswordCost {
		t.Fatalf("dummy hash cost %d, %v; want PasswordCost %d, as stored passwords have", cost, err, d.PasswordCost)
	}
}

func TestLoginThrottleStaysBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := newLoginThrottle(func() time.Time { return now })
	for i := range loginThrottleKeys + 500 {
		th.fail("user"+strconv.Itoa(i)+"@example.com", "10.0.0.1")
		now = now.Add(time.Millisecond)
	}
	if n := len(th.accounts.at); n > loginThrottleKeys {
		t.Fatalf("%d accounts kept, more than %d", n, loginThrottleKeys)
	}
	// The newest are kept, the longest quiet went first.
	if _, ok := th.accounts.at["user0@example.com"]; ok {
		t.Fatal("the oldest entry was kept over newer ones")
	}
	if len(th.accounts.at["user10499@example.com"]) != 1 {
		t.Fatal("the newest entry was dropped")
	}
	// Past the window, stale entries make room all at once.
	now = now.Add(loginWindow)
	th.fail("late@example.com", "10.0.0.2")
	if n := len(th.accounts.at); n != 1 {
		t.Fatalf("%d accounts kept after the window, want 1", n)
	}
	if n := len(th.clients.at["10.0.0.1"]); n != loginFailsPerClient {
		t.Fatalf("client keeps %d failure times, want %d", n, loginFailsPerClient)
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"//evil.example": "/", "https://evil": "/", "/\\evil": "/", "/a\\b": "/", "/\t/evil": "/",
		"/\n/evil": "/", "evil": "/", "": "/", "javascript:alert(1)": "/",
		"/": "/", "/jobs/3?x=1#top": "/jobs/3?x=1#top",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}
