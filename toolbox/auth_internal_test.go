package toolbox

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestUnknownAddressIsCheckedLikeAPassword(t *testing.T) {
	d := authPages{passwordCost: bcrypt.MinCost + 1}
	h := d.newDummyHash()
	if cost, err := bcrypt.Cost(h); err != nil || cost != d.passwordCost {
		t.Fatalf("dummy hash cost %d, %v; want PasswordCost %d, as stored passwords have", cost, err, d.passwordCost)
	}
}

func TestLoginThrottleStaysBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := newLoginThrottle(func() time.Time { return now })
	for i := range loginThrottleKeys + 500 {
		client := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		if _, wait := th.begin("user"+strconv.Itoa(i)+"@example.com", client, false); wait != 0 {
			t.Fatalf("attempt %d refused for %v", i, wait)
		}
		now = now.Add(time.Millisecond)
	}
	if n, m := len(th.accounts.at), len(th.clients.at); n > loginThrottleKeys || m > loginThrottleKeys {
		t.Fatalf("%d accounts and %d clients kept, more than %d", n, m, loginThrottleKeys)
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
	th.begin("late@example.com", "10.255.0.2", false)
	if n, m := len(th.accounts.at), len(th.clients.at); n != 1 || m != 1 {
		t.Fatalf("%d accounts and %d clients kept after the window, want 1 each", n, m)
	}
}

func TestLoginThrottleCountsAnAttemptBeforeItIsChecked(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := newLoginThrottle(func() time.Time { return now })
	// Attempts in flight count: the sixth is refused before any of the five is answered.
	for i := range loginFailsPerAcct {
		if _, wait := th.begin("Ann@acme.example", "10.0.0."+strconv.Itoa(i), false); wait != 0 {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if _, wait := th.begin("ann@acme.example ", "10.0.0.9", false); wait != loginWindow {
		t.Fatalf("sixth attempt in flight: wait %v, want %v", wait, loginWindow)
	}
	// A success gives the client its attempt back; a failure stays counted.
	for i := range loginFailsPerClient + 5 {
		a, wait := th.begin("user"+strconv.Itoa(i)+"@acme.example", "10.0.1.1", false)
		if wait != 0 {
			t.Fatalf("good sign-in %d refused: successes were counted against the client", i+1)
		}
		th.succeed(a)
	}
	if n := len(th.clients.at["10.0.1.1"]); n != 0 {
		t.Fatalf("client keeps %d failures after successes only", n)
	}
	for i := range loginFailsPerClient {
		th.begin("guess"+strconv.Itoa(i)+"@acme.example", "10.0.1.1", false)
	}
	if _, wait := th.begin("fresh@acme.example", "10.0.1.1", false); wait == 0 {
		t.Fatal("a client past its failures may go on")
	}
	// Given back (a disabled account, the right password), the attempt is uncounted but the
	// account's earlier failures stay.
	a, _ := th.begin("bob@acme.example", "10.0.2.1", false)
	b, _ := th.begin("bob@acme.example", "10.0.2.1", false)
	th.giveBack(b)
	if n, m := len(th.accounts.at["bob@acme.example"]), len(th.clients.at["10.0.2.1"]); n != 1 || m != 1 {
		t.Fatalf("after giving back one of two: %d account and %d client failures, want 1 and 1", n, m)
	}
	th.giveBack(a)
	if _, ok := th.accounts.at["bob@acme.example"]; ok {
		t.Fatal("an account with no failures left is still kept")
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
