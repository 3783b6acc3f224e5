package toolbox_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store/pgtest"
	"pointpost/toolbox"
)

// The isolation walk (issue 4): every route the toolbox serves, found by walking its router
// rather than listed here, is tried by issuer A against issuer B's objects. A route with a
// URL parameter must answer A 404 for B's object and change nothing; a route without one
// must not show A anything of B's. An operator reaching B's objects on the same routes
// (GET, then POST) proves the 404s come from the isolation and not from a broken route.

// isoSide is one issuer's fixtures: a user, jobs, a rule, an API key, a consumer mailed by
// its jobs only, and the words that name them (markers) in pages.
type isoSide struct {
	iss        rewards.Issuer
	user       *rewards.User
	jobs       []*postoffice.Job
	rule       rewards.AwardRule
	keyID      int64
	segmentID  int64
	key        string // the API key's secret
	consumerID int64
	linkToken  string
	markers    []string
}

// isoWorld is the toolbox with both issuers' fixtures and an operator.
type isoWorld struct {
	t        *testing.T
	e        *env
	po       *postoffice.PostOffice
	sends    *isoSends
	db       *sql.DB
	a, b     isoSide
	op       *rewards.User
	opKey    string
	outboxID int64
	importID int64
}

// isoSends is a TestSender that counts the tests sent: A's walk must send none.
type isoSends struct {
	mu   sync.Mutex
	jobs []int64
}

func (s *isoSends) SendTest(_ context.Context, job *postoffice.Job, _ string, _ *rewards.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs = append(s.jobs, job.Key)
	return nil
}

func (s *isoSends) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

// isoParam says how to fill one URL parameter of the walk.
type isoParam struct {
	// values are B's objects of the parameter's kind (or, for a shared route, what to ask).
	values []string
	// shared marks a route that is nobody's object (static files): A may reach it.
	shared bool
	// reach are the values with which an operator must reach the route (not 404): B's
	// objects themselves, but for links the token that is B's credential. None for the
	// setup link, dead once an operator exists.
	reach []string
}

// isoParams maps each URL parameter, named by the path segment before it and its name
// ("rules/{id}"), to what fills it. A route whose parameter is not here fails the walk: a
// new route must say what it is about.
func (w *isoWorld) isoParams() map[string]isoParam {
	id := func(n int64) string { return strconv.FormatInt(n, 10) }
	var jobs []string
	for _, j := range w.b.jobs {
		jobs = append(jobs, id(j.Key))
	}
	foreign := func(vals ...string) isoParam { return isoParam{values: vals, reach: vals} }
	return map[string]isoParam{
		"jobs/{key}":      foreign(jobs...),
		"campaigns/{key}": foreign(jobs...),
		"rules/{id}":      foreign(id(w.b.rule.ID)),
		"segments/{id}":   foreign(id(w.b.segmentID)),
		"api-keys/{id}":   foreign(id(w.b.keyID)),
		"users/{id}":      foreign(id(w.b.user.ID)),
		"issuers/{id}":    foreign(id(w.b.iss.ID)),
		"consumers/{id}":  foreign(id(w.b.consumerID)),
		"outbox/{id}":     foreign(id(w.outboxID)),
		"import/{id}":     foreign(id(w.importID)),
		// A one-time link's token is a secret: whoever holds it may use it. A holds none of
		// B's, so A tries one that is no link at all.
		"welcome/{token}": {values: []string{"not-a-link-" + rand.Text()}, reach: []string{w.b.linkToken}},
		"setup/{token}":   {values: []string{"not-a-link-" + rand.Text()}},
		"assets/*":        {values: []string{"toolbox.css"}, shared: true},
	}
}

var isoParamPattern = regexp.MustCompile(`\{(\w+)(?::[^}]*)?\}|\*$`)

// isoRoute is one route of the router and the concrete paths the walk asks for.
type isoRoute struct {
	method, pattern string
	paths           []string
	params          []isoParam
	// reachPaths are the paths an operator must reach, if every parameter has reach values.
	reachPaths []string
}

// foreign reports whether the route names one of B's objects.
func (r isoRoute) foreign() bool {
	return slices.ContainsFunc(r.params, func(p isoParam) bool { return !p.shared })
}

func (r isoRoute) api() bool { return strings.HasPrefix(r.pattern, "/api/v1/") }

// expand fills the route's parameters from the table; it fails the test for one it does
// not know.
func (w *isoWorld) expand(method, pattern string, table map[string]isoParam, errorf func(string, ...any)) (isoRoute, bool) {
	r := isoRoute{method: method, pattern: pattern, paths: []string{pattern}, reachPaths: []string{pattern}}
	for _, m := range isoParamPattern.FindAllStringSubmatchIndex(pattern, -1) {
		name := "*"
		if m[2] >= 0 {
			name = "{" + pattern[m[2]:m[3]] + "}"
		}
		before := strings.TrimSuffix(pattern[:m[0]], "/")
		key := before[strings.LastIndex(before, "/")+1:] + "/" + name
		p, ok := table[key]
		if !ok || len(p.values) == 0 {
			errorf("%s %s: the walk does not know what fills %q: add it to isoParams", method, pattern, key)
			return r, false
		}
		r.params = append(r.params, p)
		whole := pattern[m[0]:m[1]]
		fill := func(paths, values []string) []string {
			var out []string
			for _, path := range paths {
				for _, v := range values {
					out = append(out, strings.Replace(path, whole, v, 1))
				}
			}
			return out
		}
		r.paths, r.reachPaths = fill(r.paths, p.values), fill(r.reachPaths, p.reach)
	}
	if !r.foreign() {
		r.reachPaths = nil
	}
	return r, true
}

// isoWho is who asks: with a session on the HTML routes, with an API key on /api/v1.
type isoWho struct {
	name string
	user *rewards.User
	key  string
}

// session returns a client with a new session of u, made in the store as login makes one.
func (w *isoWorld) session(u *rewards.User) *client {
	w.t.Helper()
	secret := "iso-" + rand.Text()
	h := sha256.Sum256([]byte(secret))
	if err := w.e.st.CreateSession(context.Background(), h[:], u.ID, time.Now()); err != nil {
		w.t.Fatal(err)
	}
	c := w.e.anonymous()
	base, _ := url.Parse(w.e.srv.URL)
	c.Jar.SetCookies(base, []*http.Cookie{{Name: toolbox.SessionCookie, Value: secret, Path: "/"}})
	return c
}

// send asks path as who: a new session each time (the walk posts /logout too), the form
// from the toolbox's own origin for anything but GET; /api/v1 with who's key and JSON.
func (w *isoWorld) send(who isoWho, method, path string, api bool, form url.Values) (*http.Response, string) {
	w.t.Helper()
	if api {
		h := http.Header{"Authorization": {"Bearer " + who.key}}
		if method == http.MethodGet {
			return w.e.anonymous().do(method, path, nil, h)
		}
		h.Set("Content-Type", "application/json")
		return w.e.anonymous().do(method, path, strings.NewReader("{}"), h)
	}
	c := w.session(who.user)
	if method == http.MethodGet {
		return c.do(method, path, nil, nil)
	}
	return c.do(method, path, strings.NewReader(form.Encode()), http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {w.e.srv.URL}, "Sec-Fetch-Site": {"same-origin"}})
}

// isoForm is a form every toolbox form would accept, filled in: if a route let A reach one
// of B's objects, this is what would change it.
func isoForm() url.Values {
	v := campaignForm()
	for k, vals := range ruleFormValues() {
		v[k] = vals
	}
	for k, val := range map[string]string{"name": "Mallory", "issuer": "bolt", "budget": "5", "to": "mallory@example.net",
		"status": string(rewards.StatusUnsubscribed), "email": "mallory@example.net", "slug": "mallory",
		"from": "mallory@example.net", "reply_domain": "mallory.example", "postal_address": "1 Mallory Road",
		"current": "x", "password": "correct horse battery staple", "confirm": "correct horse battery staple"} {
		v.Set(k, val)
	}
	return v
}

// leak returns the first of markers in the response, or "".
func leak(resp *http.Response, body string, markers []string) string {
	all := strings.ToLower(body + "\n" + resp.Header.Get("Location"))
	for _, m := range markers {
		if strings.Contains(all, strings.ToLower(m)) {
			return m
		}
	}
	return ""
}

// snapshot is every row of the database but sessions (each request of the walk makes
// one) and API keys' last use (the walk's own key is used): what a request must not change.
func (w *isoWorld) snapshot() map[string][]string {
	w.t.Helper()
	ctx := context.Background()
	tablesSQL := `SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sessions'`
	if pgtest.OnPostgres() {
		tablesSQL = `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'sessions'`
	}
	rows, err := w.db.QueryContext(ctx, tablesSQL)
	if err != nil {
		w.t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			w.t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Close(); err != nil {
		w.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := w.db.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			w.t.Fatalf("snapshot %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				w.t.Fatal(err)
			}
			var b strings.Builder
			for i, c := range cols {
				if table == "api_keys" && c == "last_used_at" {
					continue
				}
				if v, ok := vals[i].([]byte); ok {
					fmt.Fprintf(&b, "%s=%x ", c, v)
				} else {
					fmt.Fprintf(&b, "%s=%v ", c, vals[i])
				}
			}
			out[table] = append(out[table], b.String())
		}
		if err := rows.Close(); err != nil {
			w.t.Fatal(err)
		}
		sort.Strings(out[table])
	}
	return out
}

// isoDiff says what changed between two snapshots, or "".
func isoDiff(before, after map[string][]string) string {
	var b strings.Builder
	tables := map[string]bool{}
	for t := range before {
		tables[t] = true
	}
	for t := range after {
		tables[t] = true
	}
	for _, t := range slices.Sorted(maps.Keys(tables)) {
		for _, row := range before[t] {
			if !slices.Contains(after[t], row) {
				fmt.Fprintf(&b, "\n  %s: - %s", t, row)
			}
		}
		for _, row := range after[t] {
			if !slices.Contains(before[t], row) {
				fmt.Fprintf(&b, "\n  %s: + %s", t, row)
			}
		}
	}
	return b.String()
}

// newIsoWorld makes issuers acme (A) and bolt (B), each with a user, a running job with
// deliveries and acknowledgements, a rule and an API key; bolt also has a draft and a
// suspended job. An outbox message and a finished consumer import are the operator's.
func newIsoWorld(t *testing.T, tune ...func(*toolbox.Deps)) *isoWorld {
	t.Helper()
	ctx := context.Background()
	w := &isoWorld{t: t, sends: &isoSends{}}
	keys, err := postoffice.NewKeyring(1, map[int][]byte{1: []byte("toolbox-isolation-tests-secret")})
	if err != nil {
		t.Fatal(err)
	}
	w.e = newEnv(t, func(d *toolbox.Deps) {
		withAPI(d)
		w.po = postoffice.New(postoffice.Config{Store: d.Store, Tokens: keys, BaseURL: "https://pp.example", Logger: d.Logger})
		d.PostOffice = w.po
		d.TestSender = w.sends
		for _, f := range tune {
			f(d)
		}
	})
	e := w.e
	driver, dsn := "sqlite3", "file:"+e.st.Path()+"?mode=ro&_busy_timeout=10000"
	if pgtest.OnPostgres() {
		driver, dsn = "pgx", e.st.Path()
	}
	w.db, err = sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.db.Close() })

	side := func(email, slug, word string) isoSide {
		var s isoSide
		_, s.user = e.signIn(email, slug)
		s.iss = e.issuer(slug)
		domain := strings.ToLower(word) + "-people.example"
		s.jobs = append(s.jobs, reportJob(t, e, s.iss, word+" launch", "", reportPeople(domain)))
		s.rule = rewards.AwardRule{IssuerID: s.iss.ID, Type: rewards.RuleClick, Points: 7, Frequency: rewards.FrequencyOnce,
			Description: word + " loyalty"}
		if err := e.st.CreateRule(ctx, &s.rule); err != nil {
			t.Fatal(err)
		}
		s.key = "pp_" + rand.Text()
		k := &rewards.APIKey{Name: word + " CRM", Prefix: s.key[:8], IssuerID: s.iss.ID}
		h := sha256.Sum256([]byte(s.key))
		if err := e.st.CreateAPIKey(ctx, k, h[:], time.Now()); err != nil {
			t.Fatal(err)
		}
		s.keyID = k.ID
		c, err := e.st.ConsumerByEmail(ctx, "ann@"+domain)
		if err != nil {
			t.Fatal(err)
		}
		s.consumerID = c.ID
		s.linkToken = "link-" + rand.Text()
		lh := sha256.Sum256([]byte(s.linkToken))
		if err := e.st.CreateUserLink(ctx, lh[:], s.user.ID, time.Now(), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		seg := &postoffice.Segment{IssuerID: s.iss.ID, Name: word + " regulars", Selection: `{"field":"country","op":"=","value":"US"}`}
		if err := e.st.CreateSegment(ctx, seg); err != nil {
			t.Fatal(err)
		}
		s.segmentID = seg.ID
		s.markers = []string{word + " launch", word + " loyalty", word + " CRM", email, domain, word + " regulars"}
		return s
	}
	w.a = side("ann@acme.example", "acme", "Aster")
	w.b = side("bea@bolt.example", "bolt", "Zephyr")

	now := time.Now().UTC()
	draft, _, err := w.po.CreateJob(ctx, &postoffice.Campaign{Issuer: "bolt", Name: "Zephyr draft",
		Start: now.Add(time.Hour).Format(time.RFC3339), Stop: now.Add(48 * time.Hour).Format(time.RFC3339), ClientCount: 10,
		Draft: true, Selection: json.RawMessage(`{"field":"email","op":"contains","value":"@zephyr-people.example"}`),
		Text: &postoffice.MessageSpec{Subject: "Zephyr news", Body: "Earn: <_&getAckURL_>"}, RuleIDs: []int64{w.b.rule.ID}})
	if err != nil {
		t.Fatal(err)
	}
	paused := e.job(w.b.iss, "Zephyr paused")
	if err := e.st.SetJobSuspended(ctx, paused.Key, true); err != nil {
		t.Fatal(err)
	}
	w.b.jobs = append(w.b.jobs, draft, paused)
	w.b.markers = append(w.b.markers, "Zephyr draft", "Zephyr paused", "Zephyr outbox note")

	w.opKey = "pp_" + rand.Text()
	_, w.op = e.signIn("op@pointpost.example", "")
	h := sha256.Sum256([]byte(w.opKey))
	if err := e.st.CreateAPIKey(ctx, &rewards.APIKey{Name: "ops", Prefix: w.opKey[:8]}, h[:], time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AppendOutbox(ctx, []*postoffice.OutboxMessage{{From: "rewards@pp.example", To: "ann@zephyr-people.example",
		Subject: "Zephyr outbox note", Data: []byte("Subject: Zephyr outbox note\r\n\r\nhello\r\n")}}); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := e.st.Outbox(ctx, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox: %v, %v", msgs, err)
	}
	w.outboxID = msgs[0].ID
	resp, body := w.session(w.op).upload("/consumers/import", "zephyr.csv", "email,first_name\nimp@zephyr-people.example,Imp\n")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("import: %d\n%.300s", resp.StatusCode, body)
	}
	w.importID = jobKeyFrom(t, resp.Header.Get("Location"), "/consumers/import/", "")
	// Waited for, so no import changes the database while the walk compares snapshots.
	waitImport(t, w.session(w.op), int(w.importID))
	return w
}

// TestIsolationWalksEveryRoute walks the toolbox's router: every route, as issuer A against
// issuer B's objects.
func TestIsolationWalksEveryRoute(t *testing.T) {
	w := newIsoWorld(t)
	t.Log(w.walk(t.Errorf))
}

// walk tries every route of the router, reporting each breach of the isolation to errorf,
// and sums up what it walked.
func (w *isoWorld) walk(errorf func(string, ...any)) string {
	t := w.t
	t.Helper()
	routes, ok := w.e.srv.Config.Handler.(chi.Routes)
	if !ok {
		t.Fatalf("toolbox.Handler returns %T, not a chi router: the walk cannot list its routes", w.e.srv.Config.Handler)
	}
	table := w.isoParams()
	var walk []isoRoute
	err := chi.Walk(routes, func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if r, ok := w.expand(method, pattern, table, errorf); ok {
			walk = append(walk, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(walk, func(i, j int) bool {
		if walk[i].pattern != walk[j].pattern {
			return walk[i].pattern < walk[j].pattern
		}
		return walk[i].method < walk[j].method
	})
	if len(walk) == 0 {
		t.Fatal("the router lists no routes")
	}

	a := isoWho{name: "issuer A", user: w.a.user, key: w.a.key}
	b := isoWho{name: "issuer B", user: w.b.user, key: w.b.key}
	op := isoWho{name: "operator", user: w.op, key: w.opKey}
	form := isoForm()
	// seen records which markers each side was shown on the routes without parameters, so
	// that not finding B's in A's pages is shown to mean something.
	seen := map[string]string{}
	var foreignRoutes, plainRoutes, requests int
	for _, r := range walk {
		if r.foreign() {
			foreignRoutes++
		} else {
			plainRoutes++
		}
		for _, path := range r.paths {
			body := form
			if !r.foreign() {
				// Without a parameter a full form would make A's own objects: A only knocks.
				body = url.Values{}
			}
			before := w.snapshot()
			sent := w.sends.count()
			resp, text := w.send(a, r.method, path, r.api(), body)
			requests++
			where := fmt.Sprintf("%s %s as issuer A", r.method, path)
			switch {
			case r.foreign() && resp.StatusCode != http.StatusNotFound:
				errorf("%s: %d, want 404 (the object is issuer B's)\n%.300s", where, resp.StatusCode, text)
			case resp.StatusCode >= 500:
				errorf("%s: %d\n%.300s", where, resp.StatusCode, text)
			}
			if m := leak(resp, text, append(slices.Clone(w.b.markers), "zephyr", "bolt")); m != "" {
				errorf("%s: the answer shows issuer B's %q\n%.500s", where, m, text)
			}
			if d := isoDiff(before, w.snapshot()); d != "" {
				errorf("%s (%d) changed the database:%s", where, resp.StatusCode, d)
			}
			if n := w.sends.count(); n != sent {
				errorf("%s sent a test message", where)
			}
			if r.foreign() || r.method != http.MethodGet {
				continue
			}
			for _, who := range []isoWho{a, b, op} {
				resp, text := resp, text
				if who.name != a.name {
					resp, text = w.send(who, r.method, path, r.api(), nil)
				}
				for _, m := range append(slices.Clone(w.a.markers), w.b.markers...) {
					if _, ok := seen[who.name+"|"+m]; !ok && leak(resp, text, []string{m}) != "" {
						seen[who.name+"|"+m] = path
					}
				}
			}
		}
	}
	for _, m := range w.a.markers[:3] { // A's job, rule and key
		if seen[a.name+"|"+m] == "" {
			errorf("issuer A is never shown its own %q: is A signed in at all?", m)
		}
	}
	for _, m := range w.b.markers {
		if seen[b.name+"|"+m] == "" && seen[op.name+"|"+m] == "" {
			errorf("neither issuer B nor an operator is ever shown B's %q: its absence from A's pages proves nothing", m)
		}
	}

	// The same routes reach B's objects for an operator: the 404s above are the isolation's.
	// GET first; then the changes, which may leave B's objects changed.
	for _, get := range []bool{true, false} {
		for _, r := range walk {
			if (r.method == http.MethodGet) != get {
				continue
			}
			for _, path := range r.reachPaths {
				resp, text := w.send(op, r.method, path, r.api(), form)
				requests++
				if resp.StatusCode == http.StatusNotFound || resp.StatusCode >= 500 {
					errorf("%s %s as an operator: %d, want B's object reached\n%.300s", r.method, path, resp.StatusCode, text)
				}
			}
		}
	}
	return fmt.Sprintf("walked %d routes (%d naming B's objects, %d without; %d requests in all)", len(walk), foreignRoutes, plainRoutes, requests)
}

// isoLeakyJobs is a broken toolbox store that hands every job to one issuer, as a handler
// forgetting to check the owner would.
type isoLeakyJobs struct {
	toolbox.Store
	owner *int64
}

func (s isoLeakyJobs) Job(ctx context.Context, key int64) (*postoffice.Job, error) {
	j, err := s.Store.Job(ctx, key)
	if err == nil && *s.owner != 0 {
		j.IssuerID = *s.owner
	}
	return j, err
}

// TestIsolationWalkFindsAHole runs the walk over a toolbox whose jobs all claim to be issuer
// A's, and over a route nobody told the walk about: it must report both.
func TestIsolationWalkFindsAHole(t *testing.T) {
	var owner int64
	w := newIsoWorld(t, func(d *toolbox.Deps) { d.Store = isoLeakyJobs{Store: d.Store, owner: &owner} })
	owner = w.a.iss.ID
	var got []string
	w.walk(func(format string, a ...any) { got = append(got, fmt.Sprintf(format, a...)) })
	running, paused := w.b.jobs[0].Key, w.b.jobs[2].Key
	// The API is walked first (its paths sort first): it resumes the paused job.
	for _, want := range []struct{ prefix, has string }{
		{fmt.Sprintf("GET /jobs/%d as issuer A: ", running), "200, want 404"},
		{fmt.Sprintf("GET /jobs/%d as issuer A: ", running), "shows issuer B's"},
		{fmt.Sprintf("GET /api/v1/jobs/%d as issuer A: ", running), "200, want 404"},
		{fmt.Sprintf("POST /api/v1/jobs/%d/resume as issuer A ", paused), "changed the database"},
		{fmt.Sprintf("POST /jobs/%d/duplicate as issuer A ", running), "changed the database"},
		{fmt.Sprintf("POST /jobs/%d/test as issuer A ", running), "sent a test message"},
	} {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, want.prefix) && strings.Contains(g, want.has) }) {
			t.Errorf("the walk missed %q…%q; it reported:\n%s", want.prefix, want.has, strings.Join(got, "\n"))
		}
	}
	if _, ok := w.expand(http.MethodGet, "/widgets/{id}", w.isoParams(), func(format string, a ...any) {
		got = append(got, fmt.Sprintf(format, a...))
	}); ok || !strings.Contains(got[len(got)-1], `what fills "widgets/{id}"`) {
		t.Errorf("a route with an unknown parameter is walked: %q", got[len(got)-1])
	}
}

// TestIsolationFormsNamingBsObjects names issuer B and B's rule inside the bodies of A's
// forms and API requests rather than in their URLs: A's objects may be made, B's may not be
// touched, and a preview never shows a consumer A has not mailed.
func TestIsolationFormsNamingBsObjects(t *testing.T) {
	w := newIsoWorld(t)
	ctx := context.Background()
	bRule := strconv.FormatInt(w.b.rule.ID, 10)

	// B's rule in A's campaign: refused beside the field, and nothing is stored.
	before := w.snapshot()
	f := campaignForm()
	f.Set("rule_ids", bRule)
	resp, body := w.session(w.a.user).post("/campaigns/new", f)
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(parseHTML(t, body), "error-rule_ids")) != 1 {
		t.Errorf("A's campaign with B's rule %s: %d, want 422 with the error beside rule_ids", bRule, resp.StatusCode)
	}
	if d := isoDiff(before, w.snapshot()); d != "" {
		t.Errorf("A's campaign with B's rule changed the database:%s", d)
	}
	r := w.e.call(w.a.key, http.MethodPost, "/api/v1/jobs",
		strings.Replace(campaign("", ""), `"client_count"`, `"rule_ids":[`+bRule+`],"client_count"`, 1))
	if r.status < 400 || r.status >= 500 {
		t.Errorf("A's API job with B's rule %s: %d, want it refused\n%.300s", bRule, r.status, r.body)
	}
	if d := isoDiff(before, w.snapshot()); d != "" {
		t.Errorf("A's API job with B's rule changed the database:%s", d)
	}
	if r := w.e.call(w.a.key, http.MethodPost, "/api/v1/jobs", campaign("bolt", "")); r.status < 400 || r.status >= 500 {
		t.Errorf("A's key making a job for bolt: %d, want it refused\n%.300s", r.status, r.body)
	}
	if d := isoDiff(before, w.snapshot()); d != "" {
		t.Errorf("A's key making a job for bolt changed the database:%s", d)
	}

	// A form that says it is for bolt makes A's campaign and A's rule.
	bJobs, bRules := len(w.b.jobs), 1
	f = campaignForm()
	f.Set("issuer", "bolt")
	if resp, body := w.session(w.a.user).post("/campaigns/new", f); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("A's campaign saying issuer=bolt: %d\n%.500s", resp.StatusCode, body)
	}
	rf := ruleFormValues()
	rf.Set("issuer", "bolt")
	if resp, body := w.session(w.a.user).post("/rules/new", rf); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("A's rule saying issuer=bolt: %d\n%.500s", resp.StatusCode, body)
	}
	jobs, err := w.e.st.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, j := range jobs {
		if j.IssuerID == w.b.iss.ID {
			n++
		}
	}
	rules, err := w.e.st.Rules(ctx, w.b.iss.ID)
	if err != nil {
		t.Fatal(err)
	}
	// reportJob made two rules for B's running job besides B's own.
	if n != bJobs || len(rules) != bRules+2 {
		t.Errorf("after A's forms saying issuer=bolt, bolt has %d jobs and %d rules, want %d and %d", n, len(rules), bJobs, bRules+2)
	}

	// The only consumer in New Zealand was never mailed by A: the preview makes one up.
	if _, _, err := w.e.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "kiri@zephyr-people.example", FirstName: "Kiri", Country: "NZ"}}); err != nil {
		t.Fatal(err)
	}
	pf := url.Values{"text_subject": {"Hi <_&getFirstName_>"}, "text_body": {"<_&getUserName_>"}, "sel_join": {"all"},
		"sel_field_0": {"country"}, "sel_op_0": {"="}, "sel_value_0": {"NZ"}}
	resp, body = w.session(w.a.user).post("/campaigns/preview", pf)
	if resp.StatusCode != http.StatusOK || strings.Contains(strings.ToLower(body), "kiri") {
		t.Errorf("A's preview of a selection matching only kiri: %d, shows her: %v\n%.500s", resp.StatusCode,
			strings.Contains(strings.ToLower(body), "kiri"), body)
	}
}
