package toolbox_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/store/pgtest"
	"pointpost/toolbox"
	"pointpost/web/pagetest"
)

// env is a toolbox served over real HTTP on a fresh SQLite file.
type env struct {
	t   *testing.T
	st  *store.Store
	srv *httptest.Server
	// deps may be changed before the first request by passing a tune func to newEnv.
	deps toolbox.Deps
}

// pgServer holds the databases of a run with pgtest.EnvEngine=postgres.
var pgServer *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.MainIfAsked(m, &pgServer)) }

// newEnv serves a toolbox over a fresh database; tune may adjust its Deps.
func newEnv(t *testing.T, tune ...func(*toolbox.Deps)) *env {
	t.Helper()
	st, err := store.Open(context.Background(), pgtest.Database(t, pgServer, filepath.Join(t.TempDir(), "tb.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Passwords hash at bcrypt's least cost: under the race detector the real one takes
	// seconds. The cost travels in each hash, so what is checked does not change.
	d := toolbox.Deps{Store: st, PasswordCost: bcrypt.MinCost}
	for _, f := range tune {
		f(&d)
	}
	e := &env{t: t, st: st, deps: d}
	e.srv = httptest.NewServer(toolbox.Handler(d))
	t.Cleanup(e.srv.Close)
	return e
}

// issuer returns the issuer with slug, creating it.
func (e *env) issuer(slug string) rewards.Issuer {
	e.t.Helper()
	iss, err := e.st.EnsureIssuer(context.Background(), slug, strings.ToUpper(slug[:1])+slug[1:])
	if err != nil {
		e.t.Fatal(err)
	}
	return iss
}

// signIn makes a user (an operator when issuerSlug is "") and returns a browser-like client
// holding a session for it, made directly in the store the way startSession makes one.
func (e *env) signIn(email, issuerSlug string) (*client, *rewards.User) {
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
	secret := fmt.Sprintf("test-session-%d-%s", u.ID, email)
	h := sha256.Sum256([]byte(secret))
	if err := e.st.CreateSession(ctx, h[:], u.ID, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	c := e.anonymous()
	base, _ := url.Parse(e.srv.URL)
	c.Jar.SetCookies(base, []*http.Cookie{{Name: toolbox.SessionCookie, Value: secret, Path: "/"}})
	return c, u
}

// anonymous returns a client with an empty cookie jar that does not follow redirects.
func (e *env) anonymous() *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, Client: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// job stores a scheduled job of issuer with a text message.
func (e *env) job(iss rewards.Issuer, name string) *postoffice.Job {
	e.t.Helper()
	now := time.Now()
	j := &postoffice.Job{IssuerID: iss.ID, Name: name, State: postoffice.JobScheduled, Start: now, Stop: now.Add(time.Hour), ClientCount: 10}
	if err := e.st.CreateJob(context.Background(), j, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		e.t.Fatal(err)
	}
	return j
}

type client struct {
	*http.Client
	e *env
}

// do sends a request to path and returns the response with its body read.
func (c *client) do(method, path string, body io.Reader, header http.Header) (*http.Response, string) {
	c.e.t.Helper()
	req, err := http.NewRequest(method, c.e.srv.URL+path, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return resp, string(b)
}

// page GETs path, wants status want and returns the parsed page.
func (c *client) page(path string, want int) *html.Node {
	c.e.t.Helper()
	resp, body := c.do(http.MethodGet, path, nil, nil)
	if resp.StatusCode != want {
		c.e.t.Fatalf("GET %s: %d, want %d\n%.400s", path, resp.StatusCode, want, body)
	}
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		c.e.t.Fatalf("GET %s: not HTML: %v", path, err)
	}
	return doc
}

// post submits a form to path the way the toolbox's own pages do (same origin).
func (c *client) post(path string, form url.Values) (*http.Response, string) {
	c.e.t.Helper()
	return c.do(http.MethodPost, path, strings.NewReader(form.Encode()), http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {c.e.srv.URL}, "Sec-Fetch-Site": {"same-origin"}})
}

// The HTML helpers every toolbox test uses.
var (
	byTestID = pagetest.ByTestID
	attr     = pagetest.Attr
	text     = pagetest.Text
)
