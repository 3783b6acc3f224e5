package web_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/store/pgtest"
	"pointpost/web"
	"pointpost/web/pagetest"
)

// world is the consumer web server over a real store and post office, on a real listener,
// with one running campaign (HTML and text messages, a click rule of 10 points) sent to
// three consumers.
type world struct {
	t    testing.TB
	srv  *httptest.Server
	st   *store.Store
	po   *postoffice.PostOffice
	keys *postoffice.Keyring
	mail *recordingSender
	// ahead moves the pages' clock forward of the wall clock.
	ahead atomic.Int64
	job   *postoffice.Job
	ann   *rewards.Consumer // reads HTML
	bob   *rewards.Consumer // reads text
	carla *rewards.Consumer // not selected: no delivery
}

// quiet discards the logs of the post office and the pages.
var quiet = slog.New(slog.DiscardHandler)

const successURL = "https://acme.example/spring?from=pointpost"

// pgServer holds the databases of a run with pgtest.EnvEngine=postgres.
var pgServer *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.MainIfAsked(m, &pgServer)) }

// worldOption changes a world's campaign before it is created.
type worldOption func(*postoffice.Campaign)

func newWorld(t testing.TB, opts ...worldOption) *world {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.Database(t, pgServer, filepath.Join(t.TempDir(), "web.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := postoffice.NewKeyring(1, map[int][]byte{1: postoffice.NewSecret()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	w := &world{t: t, srv: srv, st: st, keys: keys, mail: &recordingSender{},
		po: postoffice.New(postoffice.Config{Store: st, Tokens: keys, BaseURL: base, Logger: quiet})}
	srv.Config.Handler = web.Handler(w.deps(w.po, base))
	srv.Start()
	t.Cleanup(srv.Close)

	if _, _, err := st.UpsertConsumers(ctx, []rewards.Consumer{
		{Email: "ann@example.com", FirstName: "Ann", LastName: "Lee", City: "Oslo", Format: rewards.FormatHTML},
		{Email: "bob@example.com", FirstName: "Bob", City: "Rome", Format: rewards.FormatText},
		{Email: "carla@example.com", FirstName: "Carla", City: "Lima"},
	}); err != nil {
		t.Fatal(err)
	}
	w.ann, w.bob, w.carla = w.consumer("ann@example.com"), w.consumer("bob@example.com"), w.consumer("carla@example.com")

	now := time.Now()
	c := &postoffice.Campaign{
		Issuer: "acme", IssuerName: "Acme <Outdoor>", Name: "Spring sale",
		Start: now.Add(-time.Minute).UTC().Format(time.RFC3339), Stop: now.Add(24 * time.Hour).UTC().Format(time.RFC3339),
		ClientCount: 10,
		Selection:   []byte(`{"field": "email", "op": "in", "value": ["ann@example.com", "bob@example.com"]}`),
		Text: &postoffice.MessageSpec{Subject: "<_&getUserName_>, points for you",
			Body: "Dear <_&getUserName_> in <_&getCity_>,\nopen <_&getAckURL_>\n"},
		HTML: &postoffice.MessageSpec{Subject: "<_&getUserName_>, points for you",
			Body: `<html><body><h1>Dear <_&getUserName_></h1><p>in <_&getCity_></p>` +
				`<p><a href="<_&getAckURL_>">Earn</a></p><script>alert(1)</script></body></html>`},
		Rules: []postoffice.RuleSpec{{Description: "visit", Type: "click", Points: 10, Frequency: "once",
			SuccessURL: successURL, IssuerURL: "https://acme.example/"}},
	}
	for _, o := range opts {
		o(c)
	}
	if w.job, _, err = w.po.CreateJob(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := w.po.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := st.JobCounts(ctx, w.job.Key); err != nil || n.Total != 2 {
		t.Fatalf("job deliveries: %+v, %v", n, err)
	}
	return w
}

func (w *world) deps(po web.PostOffice, base string) web.Deps {
	return web.Deps{PostOffice: po, Accounts: accounts{w.st}, Consumers: w.st, Enrollments: w.st,
		Confirmations: w.mail, Codes: w.st, CodeSender: w.mail, BaseURL: base, Logger: quiet,
		Now: func() time.Time { return time.Now().Add(time.Duration(w.ahead.Load())) }}
}

// accounts adapts the store's Redeem, which also returns the redemption, to web.Accounts.
type accounts struct{ *store.Store }

func (a accounts) Redeem(ctx context.Context, consumerID, itemID int64) error {
	_, err := a.Store.Redeem(ctx, consumerID, itemID)
	return err
}

// The store and the post office are what main wires in.
var (
	_ web.Accounts        = accounts{}
	_ web.PostOffice      = (*postoffice.PostOffice)(nil)
	_ web.Consumers       = (*store.Store)(nil)
	_ web.Enrollments     = (*store.Store)(nil)
	_ web.RedemptionCodes = (*store.Store)(nil)
)

// recordingSender keeps the confirmation e-mails and redemption codes instead of sending
// them.
type recordingSender struct {
	mu    sync.Mutex
	sent  []confirmation
	codes []codeMail
	err   error
}

type codeMail struct{ To, Name, Item, Code string }

func (r *recordingSender) SendRedemptionCode(_ context.Context, to, name, item, code string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.codes = append(r.codes, codeMail{to, name, item, code})
	return nil
}

func (r *recordingSender) codeMails() []codeMail {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]codeMail(nil), r.codes...)
}

type confirmation struct{ To, Name, Link string }

func (r *recordingSender) SendConfirmation(_ context.Context, to, name, link string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.sent = append(r.sent, confirmation{to, name, link})
	return nil
}

func (r *recordingSender) messages() []confirmation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]confirmation(nil), r.sent...)
}

var (
	_ web.ConfirmationSender   = (*recordingSender)(nil)
	_ web.RedemptionCodeSender = (*recordingSender)(nil)
)

func (w *world) consumer(email string) *rewards.Consumer {
	w.t.Helper()
	c, err := w.st.ConsumerByEmail(context.Background(), email)
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

// token is the delivery token of the campaign to c.
func (w *world) token(c *rewards.Consumer) string { return w.keys.Encode(w.job.Key, c.ID) }

// delivery is the campaign's delivery to c.
func (w *world) delivery(c *rewards.Consumer) *postoffice.Delivery {
	w.t.Helper()
	d, err := w.st.Delivery(context.Background(), w.job.Key, c.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

// account is c's account with its whole history.
func (w *world) account(c *rewards.Consumer) *rewards.Account {
	w.t.Helper()
	a, err := w.st.Account(context.Background(), c.ID, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

// assertNothingRecorded checks that c's invitation is not received and she has no history.
func (w *world) assertNothingRecorded(c *rewards.Consumer) {
	w.t.Helper()
	if d, err := w.st.Delivery(context.Background(), w.job.Key, c.ID); err == nil && d.Received {
		w.t.Errorf("%s's delivery is marked received", c.Email)
	}
	if a := w.account(c); len(a.History) != 0 || a.Pending != 0 || a.Balance != 0 {
		w.t.Errorf("%s's account has %d events, %d pending, %d balance; want nothing", c.Email, len(a.History), a.Pending, a.Balance)
	}
}

// page is a parsed response.
type page struct {
	status int
	header http.Header
	doc    *html.Node
}

// do sends a request to the world's server and parses the answer.
func (w *world) do(method, path, contentType string, body io.Reader) *page {
	w.t.Helper()
	return fetch(w.t, method, w.srv.URL+path, contentType, body)
}

// fetch sends a request and parses the answer as HTML (an empty document for HEAD).
func fetch(t testing.TB, method, url, contentType string, body io.Reader) *page {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := html.Parse(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: not HTML: %v", method, url, err)
	}
	return &page{status: resp.StatusCode, header: resp.Header, doc: doc}
}

func (w *world) get(path string) *page { return w.do(http.MethodGet, path, "", nil) }

func (w *world) post(path string, form url.Values) *page {
	return w.do(http.MethodPost, path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
}

// want fails the test unless the page has the status.
func (p *page) want(t testing.TB, status int) *page {
	t.Helper()
	if p.status != status {
		t.Fatalf("status %d, want %d; page: %.300s", p.status, status, pagetest.Text(p.doc))
	}
	return p
}

// one returns the only element with data-testid id.
func (p *page) one(t testing.TB, id string) *html.Node {
	t.Helper()
	got := pagetest.ByTestID(p.doc, id)
	if len(got) != 1 {
		t.Fatalf("%d elements with data-testid=%q, want 1; page: %.300s", len(got), id, pagetest.Text(p.doc))
	}
	return got[0]
}

// all returns the elements with data-testid id, in document order.
func (p *page) all(id string) []*html.Node { return pagetest.ByTestID(p.doc, id) }

// has reports whether the page has an element with data-testid id.
func (p *page) has(id string) bool { return len(pagetest.ByTestID(p.doc, id)) > 0 }

func TestStaticAndUnknownPages(t *testing.T) {
	w := newWorld(t)
	resp, err := w.srv.Client().Get(w.srv.URL + "/static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || len(body) < 100 {
		t.Fatalf("style.css: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	// Directories are not listed.
	for _, dir := range []string{"/static/", "/static", "/static/./", "/static//"} {
		resp, err := w.srv.Client().Get(w.srv.URL + dir)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), `href="style.css"`) {
			t.Errorf("GET %s: %d %.200q; want 404 without a listing", dir, resp.StatusCode, body)
		}
	}
	p := w.get("/no/such/page").want(t, http.StatusNotFound)
	p.one(t, "error")
	// Every page links the shared stylesheet.
	var css bool
	for d := range p.doc.Descendants() {
		css = css || d.Type == html.ElementNode && d.Data == "link" && pagetest.Attr(d, "href") == "/static/style.css"
	}
	if !css {
		t.Error("the page does not link /static/style.css")
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'none'") {
		t.Errorf("Content-Security-Policy %q allows scripts", csp)
	}
	if rp := p.header.Get("Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("Referrer-Policy %q: tokens in URLs would leak", rp)
	}
}

// parallel runs f n times at once and waits.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// tamper changes one character of a token so that its signature no longer matches.
func tamper(token string) string {
	b := []byte(token)
	i := len(b) - 3
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

func itoa(n int64) string { return fmt.Sprint(n) }

var errFake = errors.New("fake failure")
