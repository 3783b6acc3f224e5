package toolbox_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/html"

	"pointpost/rewards"
	"pointpost/toolbox"
	"pointpost/web"
)

// authClock is a clock the test moves.
type authClock struct {
	mu sync.Mutex
	t  time.Time
}

func newAuthClock() *authClock { return &authClock{t: time.Now()} }

func (c *authClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *authClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// authUser stores a user (an operator when issuerSlug is "") whose password is pw, hashed
// at bcrypt's least cost to keep the tests quick: the cost travels in the hash.
func authUser(e *env, email, issuerSlug, pw string) *rewards.User {
	e.t.Helper()
	ctx := context.Background()
	u := &rewards.User{Email: email, Role: rewards.RoleOperator}
	if issuerSlug != "" {
		iss := e.issuer(issuerSlug)
		u.Role, u.IssuerID, u.IssuerSlug = rewards.RoleIssuer, iss.ID, iss.Slug
	}
	if err := e.st.CreateUser(ctx, u, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.SetPassword(ctx, u.ID, string(h)); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// authLogin posts the login form.
func (c *client) authLogin(email, pw, next string) (*http.Response, string) {
	c.e.t.Helper()
	return c.post("/login", url.Values{"email": {email}, "password": {pw}, "next": {next}})
}

// authSession returns the session cookie the client holds, or "".
func (c *client) authSession() string {
	base, _ := url.Parse(c.e.srv.URL)
	for _, ck := range c.Jar.Cookies(base) {
		if ck.Name == toolbox.SessionCookie {
			return ck.Value
		}
	}
	return ""
}

// authClient returns a fresh client holding only the session cookie value.
func (e *env) authClient(value string) *client {
	c := e.anonymous()
	base, _ := url.Parse(e.srv.URL)
	c.Jar.SetCookies(base, []*http.Cookie{{Name: toolbox.SessionCookie, Value: value, Path: "/"}})
	return c
}

// authSignedIn reports whether the client's session reaches a signed-in page.
func (c *client) authSignedIn() bool {
	c.e.t.Helper()
	resp, _ := c.do(http.MethodGet, "/profile", nil, nil)
	switch resp.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusSeeOther:
		if !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			c.e.t.Fatalf("signed out visitor sent to %q", resp.Header.Get("Location"))
		}
		return false
	}
	c.e.t.Fatalf("GET /profile: %d", resp.StatusCode)
	return false
}

func authLoginError(t *testing.T, body string) string {
	t.Helper()
	n := byTestID(authParse(t, body), "login-error")
	if len(n) != 1 {
		return ""
	}
	return text(n[0])
}

func authParse(t *testing.T, body string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func authCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == toolbox.SessionCookie {
			return c
		}
	}
	return nil
}

func authHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func TestLoginRenewsTheSession(t *testing.T) {
	e := newEnv(t)
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	c := e.anonymous()
	resp, body := c.authLogin("ann@acme.example", "correct horse battery", "/campaigns?x=1")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/campaigns?x=1" {
		t.Fatalf("login: %d to %q, want 303 to the next page\n%.300s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	first := c.authSession()
	if first == "" || !c.authSignedIn() {
		t.Fatal("no working session after login")
	}
	// Signing in again over a session (or one planted before login) replaces it.
	if resp, _ := c.authLogin("ANN@acme.example", "correct horse battery", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second login (address in other case): %d", resp.StatusCode)
	}
	second := c.authSession()
	if second == "" || second == first {
		t.Fatalf("session not renewed at login: %q then %q", first, second)
	}
	if e.authClient(first).authSignedIn() {
		t.Fatal("the session from before login still works")
	}
	if !e.authClient(second).authSignedIn() {
		t.Fatal("the new session does not work")
	}
}

func TestLoginFailuresAreGeneric(t *testing.T) {
	e := newEnv(t)
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	c := e.anonymous()
	resp, body := c.authLogin("ann@acme.example", "wrong password!", "")
	if resp.StatusCode != http.StatusUnauthorized || authCookie(resp) != nil {
		t.Fatalf("wrong password: %d, cookie %v; want 401 and no session", resp.StatusCode, authCookie(resp))
	}
	known := authLoginError(t, body)
	if known != "Wrong e-mail or password." {
		t.Fatalf("wrong password says %q", known)
	}
	// (That an unknown address costs a password check too: TestUnknownAddressIsCheckedLikeAPassword.)
	resp, body = c.authLogin("nobody@acme.example", "wrong password!", "")
	if resp.StatusCode != http.StatusUnauthorized || authLoginError(t, body) != known || authCookie(resp) != nil {
		t.Fatalf("unknown address: %d %q, want 401 %q", resp.StatusCode, authLoginError(t, body), known)
	}
	// A user who has not set a password yet cannot be signed in with the dummy's.
	u := &rewards.User{Email: "new@acme.example", Role: rewards.RoleOperator}
	if err := e.st.CreateUser(context.Background(), u, time.Now()); err != nil {
		t.Fatal(err)
	}
	if resp, body := c.authLogin("new@acme.example", "", ""); resp.StatusCode != http.StatusUnauthorized || authLoginError(t, body) != known {
		t.Fatalf("user without password: %d %q", resp.StatusCode, authLoginError(t, body))
	}
	if c.authSignedIn() {
		t.Fatal("signed in after failures")
	}
}

func TestDisabledUserCannotLogIn(t *testing.T) {
	e := newEnv(t)
	u := authUser(e, "ann@acme.example", "acme", "correct horse battery")
	if err := e.st.SetUserDisabled(context.Background(), u.ID, true); err != nil {
		t.Fatal(err)
	}
	resp, body := e.anonymous().authLogin("ann@acme.example", "correct horse battery", "")
	if resp.StatusCode != http.StatusForbidden || authCookie(resp) != nil || !strings.Contains(authLoginError(t, body), "disabled") {
		t.Fatalf("disabled user: %d %q, want 403 saying disabled and no session", resp.StatusCode, authLoginError(t, body))
	}
}

func TestLoginThrottlePerAccount(t *testing.T) {
	clock := newAuthClock()
	e := newEnv(t, func(d *toolbox.Deps) { d.Now = clock.Now })
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	c := e.anonymous()
	// A success forgets the account's failures.
	for range 4 {
		c.authLogin("ann@acme.example", "guess", "")
	}
	if resp, _ := c.authLogin("ann@acme.example", "correct horse battery", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login after 4 failures: %d", resp.StatusCode)
	}
	// The lock is for browsers without ann's device cookie, which c now holds.
	c = e.anonymous()
	for i := range 5 {
		if resp, _ := c.authLogin("ann@acme.example", "guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
		clock.add(time.Minute)
	}
	// The sixth attempt is refused before the password is looked at, even the right one.
	resp, body := c.authLogin("ann@acme.example", "correct horse battery", "")
	msg := authLoginError(t, body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(msg, "Try again in 10 minutes") {
		t.Fatalf("sixth attempt: %d %q, want 429 saying to try again in 10 minutes", resp.StatusCode, msg)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra != 600 {
		t.Fatalf("Retry-After %q, want 600", resp.Header.Get("Retry-After"))
	}
	// Another account from the same client is not held up by ann's.
	authUser(e, "bob@acme.example", "acme", "correct horse battery")
	if resp, _ := c.authLogin("bob@acme.example", "correct horse battery", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("another account: %d", resp.StatusCode)
	}
	// Once the first failure leaves the 15-minute window, one more attempt is allowed.
	clock.add(10 * time.Minute)
	if resp, _ := c.authLogin("ann@acme.example", "correct horse battery", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %d, want 303", resp.StatusCode)
	}
}

func TestLoginThrottlePerClient(t *testing.T) {
	clock := newAuthClock()
	e := newEnv(t, func(d *toolbox.Deps) { d.Now = clock.Now })
	c := e.anonymous()
	for i := range 5 {
		email := "user" + strconv.Itoa(i) + "@acme.example"
		authUser(e, email, "acme", "correct horse battery")
		for range 4 {
			if resp, _ := c.authLogin(email, "guess", ""); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: %d, want 401", email, resp.StatusCode)
			}
		}
	}
	authUser(e, "fresh@acme.example", "acme", "correct horse battery")
	if resp, _ := c.authLogin("fresh@acme.example", "correct horse battery", ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("21st attempt from one client: %d, want 429", resp.StatusCode)
	}
	clock.add(15 * time.Minute)
	if resp, _ := c.authLogin("fresh@acme.example", "correct horse battery", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %d, want 303", resp.StatusCode)
	}
}

// gatedAccounts holds every password lookup at a gate until the test opens it, so that
// sign-ins are all in flight at once; entered counts the lookups, each the prelude of a
// password check. Each lookup also sends on arrived as it reaches the gate.
type gatedAccounts struct {
	toolbox.Store
	gate    chan struct{}
	entered atomic.Int32
	arrived chan struct{}
}

func (g *gatedAccounts) UserByEmail(ctx context.Context, email string) (*rewards.User, string, error) {
	g.entered.Add(1)
	g.arrived <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
	}
	return g.Store.UserByEmail(ctx, email)
}

func TestLoginThrottleHoldsAgainstParallelGuesses(t *testing.T) {
	const n = 30 // under the per-client limit, so only the account's can bite
	// arrived hears each guess once before the gate opens (at the gate, or answered without
	// reaching it) and the gated ones once more as they finish.
	gated := &gatedAccounts{gate: make(chan struct{}), arrived: make(chan struct{}, 2*n)}
	e := newEnv(t, func(d *toolbox.Deps) { gated.Store = d.Store; d.Store = gated })
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() { gated.arrived <- struct{}{} }()
			form := url.Values{"email": {"ann@acme.example"}, "password": {"guess " + strconv.Itoa(i)}}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp, err := e.anonymous().Do(req)
			if err != nil {
				t.Errorf("guess %d: %v", i, err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	// Every guess is either answered or waiting at its password check: open the gate.
	for range n {
		<-gated.arrived
	}
	close(gated.gate)
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if checked := gated.entered.Load(); checked > 5 || count[http.StatusUnauthorized] > 5 ||
		count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != n {
		t.Fatalf("%d parallel guesses: %d passwords checked, answers %v; want at most 5 checked (401), the rest 429",
			n, checked, count)
	}
	// The account stays locked, even to its right password.
	if resp, _ := e.anonymous().authLogin("ann@acme.example", "correct horse battery", ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password after the guesses: %d, want 429", resp.StatusCode)
	}
}

// loginVia posts a sign-in with X-Forwarded-For via and returns the status.
func (c *client) loginVia(via, email, pw string) int {
	c.e.t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"same-origin"}}
	if via != "" {
		h.Set("X-Forwarded-For", via)
	}
	resp, _ := c.do(http.MethodPost, "/login", strings.NewReader(url.Values{"email": {email}, "password": {pw}}.Encode()), h)
	return resp.StatusCode
}

// spendClientBudget makes 20 failed sign-ins via X-Forwarded-For via, 4 at each of 5
// accounts, so that no account locks but the client's limit is reached.
func spendClientBudget(t *testing.T, e *env, via string) {
	t.Helper()
	for i := range 5 {
		email := "user" + strconv.Itoa(i) + "@acme.example"
		for range 4 {
			if got := e.anonymous().loginVia(via, email, "guess"); got != http.StatusUnauthorized {
				t.Fatalf("%s via %q: %d, want 401", email, via, got)
			}
		}
	}
}

func TestLoginThrottleIgnoresForwardedForFromUntrustedPeer(t *testing.T) {
	e := newEnv(t) // trusts no proxy; the test server sees 127.0.0.1
	spendClientBudget(t, e, "203.0.113.1")
	authUser(e, "fresh@acme.example", "acme", "correct horse battery")
	// Each header names another client; none is believed, so all are one client: 127.0.0.1.
	for _, via := range []string{"203.0.113.2", "198.51.100.7", ""} {
		if got := e.anonymous().loginVia(via, "fresh@acme.example", "correct horse battery"); got != http.StatusTooManyRequests {
			t.Fatalf("21st attempt from 127.0.0.1 claiming X-Forwarded-For %q: %d, want 429", via, got)
		}
	}
}

func TestLoginThrottleKeysClientsBehindATrustedProxy(t *testing.T) {
	proxies, err := web.ParseTrustedProxies("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(d *toolbox.Deps) { d.TrustedProxies = proxies })
	spendClientBudget(t, e, "203.0.113.1")
	authUser(e, "fresh@acme.example", "acme", "correct horse battery")
	if got := e.anonymous().loginVia("203.0.113.1", "fresh@acme.example", "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("21st attempt from 203.0.113.1: %d, want 429", got)
	}
	// Hops the client wrote before the proxy's do not make it someone else.
	if got := e.anonymous().loginVia("198.51.100.7, 203.0.113.1", "fresh@acme.example", "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("203.0.113.1 claiming an earlier hop: %d, want 429", got)
	}
	// Another client behind the same proxy has its own budget.
	if got := e.anonymous().loginVia("203.0.113.2", "fresh@acme.example", "correct horse battery"); got != http.StatusSeeOther {
		t.Fatalf("another client behind the proxy: %d, want 303", got)
	}
}

// lockAccount has strangers, each from its own address behind a trusted proxy, fail until
// the account of email is locked.
func lockAccount(t *testing.T, e *env, email string) {
	t.Helper()
	for i := range 5 {
		if got := e.anonymous().loginVia("198.51.100."+strconv.Itoa(i+1), email, "guess"); got != http.StatusUnauthorized {
			t.Fatalf("stranger's guess %d: %d, want 401", i, got)
		}
	}
	if got := e.anonymous().loginVia("198.51.100.99", email, "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("right password from a new browser after 5 failures: %d, want 429", got)
	}
}

func trustLoopback(t *testing.T) func(*toolbox.Deps) {
	proxies, err := web.ParseTrustedProxies("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	return func(d *toolbox.Deps) { d.TrustedProxies = proxies }
}

// deviceCookie returns the device cookie the client holds for /login, or "".
func (c *client) deviceCookie() string {
	u, _ := url.Parse(c.e.srv.URL + "/login")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == toolbox.DeviceCookie {
			return ck.Value
		}
	}
	return ""
}

func TestDeviceCookieSignsOwnerInWhileAccountIsLocked(t *testing.T) {
	e := newEnv(t, trustLoopback(t))
	authUser(e, "ann@acme.example", "", "correct horse battery")
	owner := e.anonymous()
	if got := owner.loginVia("203.0.113.5", "ann@acme.example", "correct horse battery"); got != http.StatusSeeOther {
		t.Fatalf("first sign-in: %d, want 303", got)
	}
	value := owner.deviceCookie()
	if value == "" {
		t.Fatal("no device cookie set at a successful sign-in")
	}
	if !owner.authSignedIn() {
		t.Fatal("not signed in")
	}
	owner.post("/logout", nil)

	lockAccount(t, e, "ann@acme.example")
	if got := owner.loginVia("203.0.113.5", "ann@acme.example", "correct horse battery"); got != http.StatusSeeOther {
		t.Fatalf("owner's browser with its device cookie on a locked account: %d, want 303", got)
	}
	if !owner.authSignedIn() {
		t.Fatal("the owner's device sign-in made no session")
	}
	// The owner's sign-in does not hand the strangers a fresh budget.
	if got := e.anonymous().loginVia("198.51.100.100", "ann@acme.example", "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("a new browser after the owner's device sign-in: %d, want 429", got)
	}
	// The cookie is bound to its account: it opens no other account's lock.
	authUser(e, "bob@acme.example", "", "correct horse battery")
	lockAccount(t, e, "bob@acme.example")
	if got := owner.loginVia("203.0.113.5", "bob@acme.example", "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("ann's device cookie on bob's locked account: %d, want 429", got)
	}
	// Its value is kept only hashed.
	ctx, old := context.Background(), time.Now().Add(-time.Hour)
	if ok, err := e.st.ClaimDeviceAttempt(ctx, []byte(value), "ann@acme.example", 3, old); err != nil || ok {
		t.Fatalf("device cookie found by its value in clear: %v, %v", ok, err)
	}
	if ok, err := e.st.ClaimDeviceAttempt(ctx, authHash(value), "ann@acme.example", 3, old); err != nil || !ok {
		t.Fatalf("device cookie not found by its hash: %v, %v", ok, err)
	}
}

func TestStolenDeviceCookieHasItsOwnSmallBudget(t *testing.T) {
	e := newEnv(t, trustLoopback(t))
	authUser(e, "ann@acme.example", "", "correct horse battery")
	owner := e.anonymous()
	owner.loginVia("203.0.113.5", "ann@acme.example", "correct horse battery")
	stolen := owner.deviceCookie()
	if stolen == "" {
		t.Fatal("no device cookie")
	}
	lockAccount(t, e, "ann@acme.example")

	// A thief with the cookie guesses past the account's lock, but only 3 times.
	thief := e.anonymous()
	base, _ := url.Parse(e.srv.URL + "/login")
	thief.Jar.SetCookies(base, []*http.Cookie{{Name: toolbox.DeviceCookie, Value: stolen, Path: "/login"}})
	for i := range 3 {
		if got := thief.loginVia("192.0.2."+strconv.Itoa(i+1), "ann@acme.example", "guess"); got != http.StatusUnauthorized {
			t.Fatalf("guess %d with the device cookie: %d, want 401", i, got)
		}
	}
	// The cookie is spent: revoked for everyone, the owner too, and the account's lock
	// holds again, even for the right password.
	for name, c := range map[string]*client{"thief": thief, "owner": owner} {
		if got := c.loginVia("192.0.2.50", "ann@acme.example", "correct horse battery"); got != http.StatusTooManyRequests {
			t.Fatalf("%s with the spent device cookie: %d, want 429", name, got)
		}
	}
	if ok, err := e.st.ClaimDeviceAttempt(context.Background(), authHash(stolen), "ann@acme.example", 100,
		time.Now().Add(-time.Hour)); err != nil || ok {
		t.Fatalf("the spent device cookie is still kept (%v, %v)", ok, err)
	}
}

func TestDeviceCookieFailuresResetAtSignIn(t *testing.T) {
	e := newEnv(t, trustLoopback(t))
	authUser(e, "ann@acme.example", "", "correct horse battery")
	owner := e.anonymous()
	owner.loginVia("203.0.113.5", "ann@acme.example", "correct horse battery")
	lockAccount(t, e, "ann@acme.example")
	// Typos by the owner, each time fewer than the budget, never spend the cookie.
	for round := range 3 {
		for range 2 {
			if got := owner.loginVia("203.0.113.5", "ann@acme.example", "typo"); got != http.StatusUnauthorized {
				t.Fatalf("round %d: typo: %d, want 401", round, got)
			}
		}
		if got := owner.loginVia("203.0.113.5", "ann@acme.example", "correct horse battery"); got != http.StatusSeeOther {
			t.Fatalf("round %d: owner after two typos: %d, want 303", round, got)
		}
	}
}

func TestSessionIdleAndAbsoluteTimeouts(t *testing.T) {
	clock := newAuthClock()
	e := newEnv(t, func(d *toolbox.Deps) {
		d.Now, d.SessionIdle, d.SessionMax = clock.Now, 20*time.Minute, time.Hour
	})
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	c := e.anonymous()
	c.authLogin("ann@acme.example", "correct horse battery", "")
	clock.add(19 * time.Minute)
	if !c.authSignedIn() {
		t.Fatal("session ended before its idle timeout")
	}
	clock.add(21 * time.Minute)
	if c.authSignedIn() {
		t.Fatal("session idle for 21 minutes still works")
	}
	if c.authSession() != "" {
		t.Fatal("the ended session's cookie was not cleared")
	}

	c.authLogin("ann@acme.example", "correct horse battery", "")
	value := c.authSession()
	for range 3 {
		clock.add(19 * time.Minute)
		if !c.authSignedIn() {
			t.Fatal("a session in use ended early")
		}
	}
	clock.add(4 * time.Minute) // 61 minutes since login, never idle for long
	if e.authClient(value).authSignedIn() {
		t.Fatal("session older than SessionMax still works")
	}
}

func TestSessionCookieFlags(t *testing.T) {
	for _, tc := range []struct {
		base   string
		secure bool
	}{{"", false}, {"https://pp.example", true}} {
		e := newEnv(t, func(d *toolbox.Deps) { d.BaseURL = tc.base })
		authUser(e, "ann@acme.example", "acme", "correct horse battery")
		resp, _ := e.anonymous().authLogin("ann@acme.example", "correct horse battery", "")
		ck := authCookie(resp)
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure != tc.secure || ck.Path != "/" {
			t.Fatalf("BaseURL %q: session cookie %+v; want HttpOnly, SameSite=Lax, Secure=%v", tc.base, ck, tc.secure)
		}
	}
}

func TestCrossSiteFormsAreRefused(t *testing.T) {
	e := newEnv(t)
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	c := e.anonymous()
	c.authLogin("ann@acme.example", "correct horse battery", "")
	for _, h := range []http.Header{
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Origin": {"https://evil.example"}},
	} {
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, _ := c.do(http.MethodPost, "/logout", strings.NewReader(""), h); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site logout (%v): %d, want 403", h, resp.StatusCode)
		}
		form := url.Values{"email": {"ann@acme.example"}, "password": {"correct horse battery"}}
		resp, _ := e.anonymous().do(http.MethodPost, "/login", strings.NewReader(form.Encode()), h)
		if resp.StatusCode != http.StatusForbidden || authCookie(resp) != nil {
			t.Fatalf("cross-site login (%v): %d, want 403", h, resp.StatusCode)
		}
	}
	if !c.authSignedIn() {
		t.Fatal("a refused cross-site logout signed the user out")
	}
}

func TestLogoutEndsTheSessionOnTheServer(t *testing.T) {
	e := newEnv(t)
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	c := e.anonymous()
	c.authLogin("ann@acme.example", "correct horse battery", "")
	value := c.authSession()
	resp, _ := c.post("/logout", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c.authSession() != "" {
		t.Fatal("logout left the cookie")
	}
	// The cookie, kept by someone, is worthless: the session is gone from the store.
	if _, _, _, err := e.st.SessionUser(context.Background(), authHash(value)); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("session still stored: %v", err)
	}
	if e.authClient(value).authSignedIn() {
		t.Fatal("the session still works after logout")
	}
}

func TestLoginNextStaysOnThisSite(t *testing.T) {
	e := newEnv(t)
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	for next, want := range map[string]string{
		"//evil.example":        "/",
		"https://evil":          "/",
		"/\\evil.example":       "/",
		"/\t/evil.example":      "/",
		"javascript:alert(1)":   "/",
		"":                      "/",
		"/campaigns?state=done": "/campaigns?state=done",
	} {
		resp, _ := e.anonymous().authLogin("ann@acme.example", "correct horse battery", next)
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || got != want {
			t.Errorf("next %q: %d to %q, want %q", next, resp.StatusCode, got, want)
		}
	}
}

func TestWelcomeLinkSetsThePasswordOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	iss := e.issuer("acme")
	u := &rewards.User{Email: " Ann@Acme.example ", Role: rewards.RoleIssuer, IssuerID: iss.ID}
	link, err := rewards.AddUser(ctx, e.st, u, e.srv.URL+"/", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "ann@acme.example" || !strings.HasPrefix(link, e.srv.URL+"/welcome/") {
		t.Fatalf("AddUser: e-mail %q, link %q", u.Email, link)
	}
	if _, err := rewards.AddUser(ctx, e.st, &rewards.User{Email: "ANN@acme.example", Role: rewards.RoleOperator}, e.srv.URL, time.Now()); !errors.Is(err, rewards.ErrExists) {
		t.Fatalf("AddUser of a taken address: %v", err)
	}
	if _, err := rewards.AddUser(ctx, e.st, &rewards.User{Email: "Ann <ann@x.example>", Role: rewards.RoleOperator}, e.srv.URL, time.Now()); err == nil {
		t.Fatal("AddUser took an address with a display name")
	}
	path := strings.TrimPrefix(link, e.srv.URL)
	c := e.anonymous()
	doc := c.page(path, http.StatusOK)
	if n := byTestID(doc, "link-email"); len(n) != 1 || text(n[0]) != "ann@acme.example" {
		t.Fatal("the link's page does not say whose password it sets")
	}
	for _, tc := range []struct{ pw, confirm, field string }{
		{"short", "short", "error-password"},
		{"long enough now", "long enough new", "error-confirm"},
	} {
		resp, body := c.post(path, url.Values{"password": {tc.pw}, "confirm": {tc.confirm}})
		if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(authParse(t, body), tc.field)) != 1 {
			t.Fatalf("password %q/%q: %d, want 422 with %s", tc.pw, tc.confirm, resp.StatusCode, tc.field)
		}
	}
	resp, _ := c.post(path, url.Values{"password": {"a fine new password"}, "confirm": {"a fine new password"}})
	if resp.StatusCode != http.StatusSeeOther || !c.authSignedIn() {
		t.Fatalf("setting the password: %d", resp.StatusCode)
	}
	if c.deviceCookie() == "" {
		t.Fatal("no device cookie after setting the password: strangers could lock the new user out")
	}
	// Used: the link is dead, for reading and for setting.
	if doc := e.anonymous().page(path, http.StatusNotFound); len(byTestID(doc, "dead-link")) != 1 {
		t.Fatal("a used link does not say it no longer works")
	}
	if resp, _ := e.anonymous().post(path, url.Values{"password": {"another password"}, "confirm": {"another password"}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second use: %d, want 404", resp.StatusCode)
	}
	if resp, _ := e.anonymous().authLogin("ann@acme.example", "a fine new password", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with the password set by the link: %d", resp.StatusCode)
	}

	// An expired link and an unknown one.
	old, err := rewards.NewUserLink(ctx, e.st, u.ID, e.srv.URL, time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.anonymous().page(strings.TrimPrefix(old, e.srv.URL), http.StatusNotFound)
	e.anonymous().page("/welcome/nonsense", http.StatusNotFound)
}

func TestSetupMakesTheFirstOperator(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	link, err := rewards.SetupLink(ctx, e.st, e.srv.URL, time.Now())
	if err != nil || !strings.HasPrefix(link, e.srv.URL+"/setup/") {
		t.Fatalf("SetupLink: %q, %v", link, err)
	}
	path := strings.TrimPrefix(link, e.srv.URL)
	c := e.anonymous()
	c.page(path, http.StatusOK)
	resp, body := c.post(path, url.Values{"email": {"not an address"}, "password": {"a fine password"}, "confirm": {"a fine password"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(authParse(t, body), "error-email")) != 1 {
		t.Fatalf("bad address: %d", resp.StatusCode)
	}
	resp, _ = c.post(path, url.Values{"email": {"Op@Example.com"}, "password": {"a fine password"}, "confirm": {"a fine password"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("setup: %d", resp.StatusCode)
	}
	if c.deviceCookie() == "" {
		t.Fatal("no device cookie after setup: strangers could lock the first operator out")
	}
	doc := c.page("/profile", http.StatusOK)
	if n := byTestID(doc, "profile-role"); len(n) != 1 || !strings.HasPrefix(text(n[0]), "Operator") {
		t.Fatal("the first user is not an operator")
	}
	if n := byTestID(doc, "profile-email"); len(n) != 1 || text(n[0]) != "op@example.com" {
		t.Fatal("the operator's address is not the one typed")
	}
	e.anonymous().page(path, http.StatusNotFound)
	if link, err := rewards.SetupLink(ctx, e.st, e.srv.URL, time.Now()); link != "" || err != nil {
		t.Fatalf("SetupLink with an operator: %q, %v; want none", link, err)
	}
}

func TestSetupRefusedOnceAnOperatorExists(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	link, err := rewards.SetupLink(ctx, e.st, e.srv.URL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(link, e.srv.URL)
	e.signIn("op@example.com", "") // an operator made another way (pointpost user add)
	e.anonymous().page(path, http.StatusNotFound)
	resp, _ := e.anonymous().post(path, url.Values{"email": {"intruder@example.com"}, "password": {"a fine password"}, "confirm": {"a fine password"}})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("setup with an operator: %d, want 404", resp.StatusCode)
	}
	if _, _, err := e.st.UserByEmail(ctx, "intruder@example.com"); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("setup made a user: %v", err)
	}
}

func TestSetupLinkExpires(t *testing.T) {
	e := newEnv(t)
	link, err := rewards.SetupLink(context.Background(), e.st, e.srv.URL, time.Now().Add(-25*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.anonymous().page(strings.TrimPrefix(link, e.srv.URL), http.StatusNotFound)
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t)
	authUser(e, "ann@acme.example", "acme", "correct horse battery")
	c, other := e.anonymous(), e.anonymous()
	c.authLogin("ann@acme.example", "correct horse battery", "")
	other.authLogin("ann@acme.example", "correct horse battery", "")
	resp, body := c.post("/profile/password", url.Values{"current": {"wrong"}, "password": {"a new password"}, "confirm": {"a new password"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(authParse(t, body), "error-current")) != 1 {
		t.Fatalf("wrong current password: %d", resp.StatusCode)
	}
	resp, _ = c.post("/profile/password", url.Values{"current": {"correct horse battery"}, "password": {"a new password"}, "confirm": {"a new password"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("change: %d", resp.StatusCode)
	}
	if !c.authSignedIn() {
		t.Fatal("the user who changed the password was signed out")
	}
	if other.authSignedIn() {
		t.Fatal("another session survived the password change")
	}
	if resp, _ := e.anonymous().authLogin("ann@acme.example", "a new password", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with the new password: %d", resp.StatusCode)
	}
}

func TestAPIKeySecretIsShownOnceAndStoredHashed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, u := e.signIn("ann@acme.example", "acme")
	resp, body := c.post("/profile/api-keys", url.Values{"name": {""}})
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(authParse(t, body), "error-name")) != 1 {
		t.Fatalf("unnamed key: %d", resp.StatusCode)
	}
	resp, body = c.post("/profile/api-keys", url.Values{"name": {"CRM sync"}})
	shown := byTestID(authParse(t, body), "new-secret")
	if resp.StatusCode != http.StatusOK || len(shown) != 1 {
		t.Fatalf("create key: %d, %d secrets shown", resp.StatusCode, len(shown))
	}
	secret := attr(shown[0], "value")
	if !strings.HasPrefix(secret, "pp_") || len(secret) < 40 {
		t.Fatalf("secret %q", secret)
	}
	k, err := e.st.APIKeyByHash(ctx, authHash(secret))
	if err != nil {
		t.Fatalf("the key is not found by the hash of its secret: %v", err)
	}
	if k.IssuerID != u.IssuerID || k.Prefix != secret[:11] || k.Name != "CRM sync" {
		t.Fatalf("stored key %+v", k)
	}
	_, body = c.do(http.MethodGet, "/profile", nil, nil)
	if strings.Contains(body, secret) || len(byTestID(authParse(t, body), "key")) != 1 {
		t.Fatal("the profile shows the secret again, or not the key")
	}
	// Nowhere in the database files is the secret itself.
	e.st.Close()
	for _, f := range []string{e.st.Path(), e.st.Path() + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(secret[11:])) {
			t.Fatalf("%s holds the secret", f)
		}
	}
}

func TestAPIKeysOfAnotherIssuerCannotBeRevoked(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, _ := e.signIn("ann@acme.example", "acme")
	globex, gu := e.signIn("gil@globex.example", "globex")
	op, _ := e.signIn("op@example.com", "")
	k := &rewards.APIKey{Name: "globex shop", IssuerID: gu.IssuerID}
	secret, err := rewards.NewAPIKey(ctx, e.st, k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(byTestID(acme.page("/profile", http.StatusOK), "key")) != 0 {
		t.Fatal("acme's profile lists globex's key")
	}
	if len(byTestID(op.page("/profile", http.StatusOK), "key")) != 0 {
		t.Fatal("the operator's profile lists an issuer's key as the operator's")
	}
	revoke := "/profile/api-keys/" + strconv.FormatInt(k.ID, 10) + "/revoke"
	if resp, _ := acme.post(revoke, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("acme revoking globex's key: %d, want 404", resp.StatusCode)
	}
	if _, err := e.st.APIKeyByHash(ctx, authHash(secret)); err != nil {
		t.Fatalf("the key stopped working: %v", err)
	}
	if resp, _ := acme.post("/profile/api-keys/x/revoke", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("revoking key x: %d", resp.StatusCode)
	}
	if resp, _ := globex.post(revoke, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("globex revoking its key: %d", resp.StatusCode)
	}
	if _, err := e.st.APIKeyByHash(ctx, authHash(secret)); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("a revoked key still works: %v", err)
	}
	if doc := globex.page("/profile", http.StatusOK); len(byTestID(doc, "revoked")) != 1 {
		t.Fatal("the revoked key is not shown as revoked")
	}
}

func TestParallelGuessesWithADeviceCookieKeepItsBudget(t *testing.T) {
	e := newEnv(t, trustLoopback(t))
	authUser(e, "ann@acme.example", "", "correct horse battery")
	owner := e.anonymous()
	owner.loginVia("203.0.113.5", "ann@acme.example", "correct horse battery")
	stolen := owner.deviceCookie()
	lockAccount(t, e, "ann@acme.example")
	const n = 20
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := e.anonymous()
			base, _ := url.Parse(e.srv.URL + "/login")
			c.Jar.SetCookies(base, []*http.Cookie{{Name: toolbox.DeviceCookie, Value: stolen, Path: "/login"}})
			statuses <- c.loginVia("192.0.2."+strconv.Itoa(i+1), "ann@acme.example", "guess "+strconv.Itoa(i))
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusUnauthorized] > 3 || count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != n {
		t.Fatalf("%d parallel guesses with one device cookie: %v; want at most 3 checked (401), the rest 429", n, count)
	}
}
