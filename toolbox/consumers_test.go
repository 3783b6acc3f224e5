package toolbox_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/toolbox"
)

func consumersNamed(emails ...string) []rewards.Consumer {
	out := make([]rewards.Consumer, len(emails))
	for i, e := range emails {
		out[i] = rewards.Consumer{Email: e}
	}
	return out
}

// upload posts a CSV file as the import form does (multipart, same origin).
func (c *client) upload(path, name, content string) (*http.Response, string) {
	c.e.t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		c.e.t.Fatal(err)
	}
	io.WriteString(fw, content)
	mw.Close()
	return c.do(http.MethodPost, path, &b, http.Header{"Content-Type": {mw.FormDataContentType()},
		"Origin": {c.e.srv.URL}, "Sec-Fetch-Site": {"same-origin"}})
}

type importProgress struct {
	Running   bool   `json:"running"`
	Size      int64  `json:"size"`
	BytesRead int64  `json:"bytes_read"`
	Inserted  int    `json:"inserted"`
	Updated   int    `json:"updated"`
	Bad       int    `json:"bad"`
	Error     string `json:"error"`
	Canceled  bool   `json:"canceled"`
	Shutdown  bool   `json:"shutdown"`
	Done      bool   `json:"done"`
	Width     map[string]float64
}

// waitImport polls the import's progress JSON until it says done, for at most 10 seconds.
func waitImport(t *testing.T, c *client, id int) importProgress {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := c.do(http.MethodGet, fmt.Sprintf("/consumers/import/%d.json", id), nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("progress: %d %s", resp.StatusCode, body)
		}
		var p importProgress
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		if p.Done {
			if p.Running {
				t.Fatalf("progress says done and running: %s", body)
			}
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("import %d not done after 10s: %s", id, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConsumerSearchFindsByPrefixAndPaginates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	batch := make([]rewards.Consumer, 120)
	for i := range batch {
		city := "Boston"
		if i%2 == 1 {
			city = "Berlin"
		}
		batch[i] = rewards.Consumer{Email: fmt.Sprintf("user%03d@example.com", i), FirstName: "Ann", LastName: fmt.Sprintf("Smith%03d", i), City: city}
	}
	if _, _, err := e.st.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetConsumerStatus(ctx, "user007@example.com", rewards.StatusSuppressed); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")

	// Everyone, newest first, 50 a page, through the "next" links.
	seen := map[string]bool{}
	path, pages := "/consumers", 0
	for path != "" {
		if pages++; pages > 5 {
			t.Fatal("the pages do not end")
		}
		doc := op.page(path, http.StatusOK)
		if got := text(byTestID(doc, "total")[0]); !strings.HasPrefix(got, "120 ") {
			t.Fatalf("total %q, want 120", got)
		}
		rows := byTestID(doc, "email")
		if want := []int{50, 50, 20}[pages-1]; len(rows) != want {
			t.Fatalf("page %d has %d consumers, want %d", pages, len(rows), want)
		}
		for _, r := range rows {
			if seen[text(r)] {
				t.Fatalf("%s on two pages", text(r))
			}
			seen[text(r)] = true
		}
		if pages == 1 && text(rows[0]) != "user119@example.com" {
			t.Fatalf("first listed %s, want the newest", text(rows[0]))
		}
		path = ""
		if next := byTestID(doc, "next-page"); len(next) == 1 {
			path = attr(next[0], "href")
		}
	}
	if len(seen) != 120 {
		t.Fatalf("%d consumers over the pages, want 120", len(seen))
	}

	search := func(q url.Values) []string {
		t.Helper()
		doc := op.page("/consumers?"+q.Encode(), http.StatusOK)
		var got []string
		for _, r := range byTestID(doc, "email") {
			got = append(got, text(r))
		}
		return got
	}
	if got := search(url.Values{"q": {"USER10"}, "field": {"email"}}); len(got) != 10 || got[0] != "user109@example.com" {
		t.Fatalf("e-mail prefix USER10: %v, want user100..user109", got)
	}
	if got := search(url.Values{"q": {"smith11"}, "field": {"name"}}); len(got) != 10 {
		t.Fatalf("name prefix smith11: %v", got)
	}
	if got := search(url.Values{"q": {"ann smith005"}}); len(got) != 1 || got[0] != "user005@example.com" {
		t.Fatalf("full name prefix: %v", got)
	}
	if got := search(url.Values{"q": {"erli"}, "field": {"city"}, "match": {"contains"}}); len(got) != 50 {
		t.Fatalf("city contains erli: %d on the first page, want 50 (of 60)", len(got))
	}
	if got := search(url.Values{"q": {"erli"}, "field": {"city"}}); len(got) != 0 {
		t.Fatalf("city prefix erli found %v", got)
	}
	if got := search(url.Values{"status": {"suppressed"}}); len(got) != 1 || got[0] != "user007@example.com" {
		t.Fatalf("suppressed: %v", got)
	}
	doc := op.page("/consumers?status=gone&field=phone", http.StatusBadRequest)
	if len(byTestID(doc, "error-status")) != 1 || len(byTestID(doc, "error-field")) != 1 {
		t.Fatal("an unknown status or field is not named beside its field")
	}
	if len(byTestID(op.page("/consumers?q=nobody", http.StatusOK), "empty")) != 1 {
		t.Fatal("no match: no empty state")
	}
}

func TestConsumerPageShowsTimelineWithReasons(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, _, err := e.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "ann@example.com", FirstName: "Ann", City: "Boston",
		Attributes: map[string]string{"member_tier": "gold"}}}); err != nil {
		t.Fatal(err)
	}
	ann, err := e.st.ConsumerByEmail(ctx, "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	iss := e.issuer("acme")
	now := time.Now()
	job := &postoffice.Job{IssuerID: iss.ID, Name: "Spring golf", State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: 10}
	rule := &rewards.AwardRule{IssuerID: iss.ID, Description: "reply bonus", Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce}
	if err := e.st.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil,
		postoffice.JobRules{New: []*rewards.AwardRule{rule}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.SelectBatch(ctx, job, false, 10); err != nil {
		t.Fatal(err)
	}
	recips, err := e.st.DueRecipients(ctx, job.Key, 0, now, 10)
	if err != nil || len(recips) != 1 {
		t.Fatalf("DueRecipients: %v, %v", recips, err)
	}
	if err := e.st.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: recips[0].DeliveryID, Kind: postoffice.OutcomeSent, At: now}}); err != nil {
		t.Fatal(err)
	}
	for i, src := range []string{"smtp <a@x>", "smtp <b@x>"} {
		if _, err := e.st.Acknowledge(ctx, postoffice.Ack{JobKey: job.Key, ConsumerID: ann.ID, Channel: postoffice.ChannelReply,
			At: now.Add(time.Duration(i+1) * time.Minute), Source: src}); err != nil {
			t.Fatal(err)
		}
	}

	op, _ := e.signIn("op@example.com", "")
	doc := op.page(fmt.Sprintf("/consumers/%d", ann.ID), http.StatusOK)
	if got := text(byTestID(doc, "profile-email")[0]); got != "ann@example.com" {
		t.Fatalf("profile e-mail %q", got)
	}
	if !strings.Contains(text(byTestID(doc, "profile")[0]), "gold") {
		t.Error("the profile does not show the import's extra column")
	}
	inv := byTestID(doc, "event-invitation")
	if len(inv) != 1 || !strings.Contains(text(inv[0]), "sent (from Acme)") {
		t.Fatalf("invitation rows: %d", len(inv))
	}
	acks := byTestID(doc, "event-acknowledgement")
	if len(acks) != 2 {
		t.Fatalf("%d acknowledgement rows, want 2", len(acks))
	}
	if p := cell(t, acks[0], "points"); p != "+10 awarded" || !strings.Contains(cell(t, acks[0], "why"), "reply bonus") {
		t.Errorf("first reply: points %q why %q", p, cell(t, acks[0], "why"))
	}
	if p, why := cell(t, acks[1], "points"), cell(t, acks[1], "why"); p != "none" || !strings.Contains(why, "reply bonus") || len(why) < len(`rule 1 "reply bonus": `)+5 {
		t.Errorf("second reply: points %q, why %q: want none and the rule's reason", p, why)
	}
	if len(byTestID(doc, "event-accrual")) != 1 || text(byTestID(doc, "pending")[0]) != "10" {
		t.Error("the accrual, pending settlement, is not shown")
	}
	if !strings.Contains(text(byTestID(doc, "timeline-text")[0]), "Why (or why not) points") {
		t.Error("the text report is missing")
	}
	op.page("/consumers/999", http.StatusNotFound)
}

func TestConsumerStatusActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, _, err := e.st.UpsertConsumers(ctx, consumersNamed("ann@example.com")); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	for _, st := range []rewards.ConsumerStatus{rewards.StatusSuppressed, rewards.StatusUnsubscribed, rewards.StatusActive} {
		resp, _ := op.post("/consumers/1/status", url.Values{"status": {string(st)}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/consumers/1" {
			t.Fatalf("set %s: %d to %q", st, resp.StatusCode, resp.Header.Get("Location"))
		}
		c, err := e.st.ConsumerByID(ctx, 1)
		if err != nil || c.Status != st {
			t.Fatalf("after set %s: %v, %v", st, c.Status, err)
		}
		doc := op.page("/consumers/1", http.StatusOK)
		if got := text(byTestID(doc, "status")[0]); got != string(st) {
			t.Fatalf("page shows %q, want %s", got, st)
		}
		if len(byTestID(doc, "set-"+string(st))) != 0 {
			t.Errorf("the page offers to set %s, which she already is", st)
		}
	}
	if resp, _ := op.post("/consumers/1/status", url.Values{"status": {"bounced"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("set bounced by hand: %d, want 400", resp.StatusCode)
	}
	if resp, _ := op.post("/consumers/9/status", url.Values{"status": {"suppressed"}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown consumer: %d, want 404", resp.StatusCode)
	}
	// A form from another site is refused.
	resp, _ := op.do(http.MethodPost, "/consumers/1/status", strings.NewReader("status=suppressed"), http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", resp.StatusCode)
	}
}

func TestConsumerImportShowsProgressAndRowErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	op, _ := e.signIn("op@example.com", "")
	csvText := "email,first_name,birth_year\n" +
		"ann@example.com,Ann,1980\n" +
		"not-an-address,Bob,1970\n" +
		"cy@example.com,Cy,\n" +
		"dee@example.com,Dee,1800\n" +
		"eve@example.com,Eve,1990\n"
	resp, body := op.upload("/consumers/import", "people.csv", csvText)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/consumers/import/1" {
		t.Fatalf("upload: %d to %q\n%.300s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	p := waitImport(t, op, 1)
	if p.Inserted != 3 || p.Updated != 0 || p.Bad != 2 || p.Error != "" || p.BytesRead != int64(len(csvText)) ||
		p.Size != int64(len(csvText)) || p.Width["import-bar"] != 100 {
		t.Fatalf("progress at the end: %+v", p)
	}
	doc := op.page("/consumers/import/1", http.StatusOK)
	if cell(t, doc, "inserted") != "3" || cell(t, doc, "bad") != "2" || len(byTestID(doc, "import-done")) != 1 {
		t.Fatalf("result: inserted %q bad %q", cell(t, doc, "inserted"), cell(t, doc, "bad"))
	}
	var lines []string
	for _, r := range byTestID(doc, "row-error") {
		lines = append(lines, cell(t, r, "line"))
	}
	if strings.Join(lines, ",") != "3,5" {
		t.Fatalf("row errors on lines %v, want 3 and 5", lines)
	}
	if n, err := e.st.CountConsumers(ctx); err != nil || n != 3 {
		t.Fatalf("%d consumers stored, want 3 (%v)", n, err)
	}
	// The import page lists it; the same file again updates instead of inserting.
	if len(byTestID(op.page("/consumers/import", http.StatusOK), "imports")) != 1 {
		t.Error("the import is not listed")
	}
	if resp, _ := op.upload("/consumers/import", "people.csv", csvText); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second upload: %d", resp.StatusCode)
	}
	if p := waitImport(t, op, 2); p.Inserted != 0 || p.Updated != 3 || p.Bad != 2 {
		t.Fatalf("second import: %+v", p)
	}
	op.page("/consumers/import/3", http.StatusNotFound)
}

func TestConsumerImportRefusesABadFileAtOnce(t *testing.T) {
	e := newEnv(t)
	op, _ := e.signIn("op@example.com", "")
	for _, tc := range []struct{ name, content, want string }{
		{"no email column", "name,city\nAnn,Boston\n", "no email column"},
		{"empty file", "", "choose a CSV file"},
		{"twice the same column", "email,Email\na@b.c,a@b.c\n", "both"},
	} {
		resp, body := op.upload("/consumers/import", "bad.csv", tc.content)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: %d, want 400", tc.name, resp.StatusCode)
		}
		if !strings.Contains(strings.ToLower(body), strings.ToLower(tc.want)) || !strings.Contains(body, `data-testid="import-error"`) {
			t.Fatalf("%s: the page does not say %q", tc.name, tc.want)
		}
	}
	// A form post without a file at all.
	if resp, _ := op.post("/consumers/import", url.Values{"x": {"1"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no multipart: %d, want 400", resp.StatusCode)
	}
	op.page("/consumers/import/1", http.StatusNotFound) // nothing was started
	if n, _ := e.st.CountConsumers(context.Background()); n != 0 {
		t.Fatalf("%d consumers imported from refused files", n)
	}
}

func TestConsumerExportRoundTripsAndNeutralizesFormulas(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	batch := []rewards.Consumer{
		{Email: "evil@example.com", FirstName: `=HYPERLINK("http://evil.example","click")`, LastName: "+1", City: "@home",
			Interests: []string{"golf", "tennis"}, BirthYear: 1980},
		{Email: "ann@example.com", FirstName: "Ann, \"the\" first", LastName: "Smith\nJr", City: "-"},
	}
	for i := range 2100 {
		batch = append(batch, rewards.Consumer{Email: fmt.Sprintf("bulk%04d@example.com", i)})
	}
	if _, _, err := e.st.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetConsumerStatus(ctx, "bulk0001@example.com", rewards.StatusBounced); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	export := func(q string) [][]string {
		t.Helper()
		resp, body := op.do(http.MethodGet, "/consumers/export.csv"+q, nil, nil)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
			!strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export%s: %d %v", q, resp.StatusCode, resp.Header)
		}
		recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("export%s does not parse as CSV: %v", q, err)
		}
		return recs
	}
	all := export("")
	if len(all) != 1+2102 || all[0][0] != "email" {
		t.Fatalf("export has %d records, want a header and 2,102 consumers", len(all))
	}
	byEmail := map[string][]string{}
	for _, r := range all[1:] {
		if byEmail[r[0]] != nil {
			t.Fatalf("%s exported twice", r[0])
		}
		byEmail[r[0]] = r
	}
	col := map[string]int{}
	for i, h := range all[0] {
		col[h] = i
	}
	evil := byEmail["evil@example.com"]
	if evil[col["first_name"]] != `'=HYPERLINK("http://evil.example","click")` || evil[col["last_name"]] != "'+1" ||
		evil[col["city"]] != "'@home" || evil[col["interests"]] != "golf;tennis" || evil[col["birth_year"]] != "1980" {
		t.Fatalf("evil row: %q", evil)
	}
	ann := byEmail["ann@example.com"]
	if ann[col["first_name"]] != `Ann, "the" first` || ann[col["last_name"]] != "Smith\nJr" || ann[col["city"]] != "'-" ||
		ann[col["status"]] != "active" || ann[col["format"]] != "text" {
		t.Fatalf("ann's row does not round-trip: %q", ann)
	}
	// The search's filters apply.
	if got := export("?status=bounced"); len(got) != 2 || got[1][0] != "bulk0001@example.com" {
		t.Fatalf("bounced export: %q", got)
	}
	if got := export("?q=bulk00&field=email"); len(got) != 1+100 {
		t.Fatalf("prefix export: %d records, want 101", len(got))
	}
	if resp, _ := op.do(http.MethodGet, "/consumers/export.csv?status=gone", nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad filter: %d, want 400", resp.StatusCode)
	}
}

// TestConsumerImportStopsAtShutdown ends the toolbox's context while a large file imports:
// the import stops promptly, says it was stopped by shutdown, and keeps the rows it wrote.
func TestConsumerImportStopsAtShutdown(t *testing.T) {
	ctx, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	e := newEnv(t, func(d *toolbox.Deps) { d.Context = ctx })
	op, _ := e.signIn("op@example.com", "")
	const rows = 100_000
	var b strings.Builder
	b.WriteString("email,first_name,city\n")
	for i := range rows {
		fmt.Fprintf(&b, "p%06d@example.com,Pat %d,Springfield\n", i, i)
	}
	resp, body := op.upload("/consumers/import", "big.csv", b.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %d\n%.300s", resp.StatusCode, body)
	}
	// Shut down once the first rows are written.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := e.st.CountConsumers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no row written after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	shutdown()
	stopped := time.Now()
	p := waitImport(t, op, 1)
	if took := time.Since(stopped); took > 3*time.Second {
		t.Errorf("the import took %v to stop", took)
	}
	if !p.Shutdown || !p.Canceled || p.Error != "" {
		t.Fatalf("after shutdown the import says %+v, want stopped by shutdown", p)
	}
	n, err := e.st.CountConsumers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 || n >= rows || p.Inserted != n {
		t.Errorf("%d rows stored, the import counted %d inserted: want the rows written before the shutdown, not all %d", n, p.Inserted, rows)
	}
	doc := op.page("/consumers/import/1", http.StatusOK)
	if len(byTestID(doc, "import-shutdown")) != 1 || len(byTestID(doc, "import-done")) != 0 {
		t.Error("the import's page does not say it was stopped by shutdown")
	}
	if !strings.Contains(text(byTestID(op.page("/consumers/import", http.StatusOK), "imports")[0]), "stopped by shutdown") {
		t.Error("the list of imports does not say it was stopped by shutdown")
	}
}

// serveWithTimeouts serves e's toolbox again from a server with main's read and write
// timeouts, shortened, and points e's clients at it: call it before signing in.
func (e *env) serveWithTimeouts(read, write time.Duration) {
	e.t.Helper()
	srv := httptest.NewUnstartedServer(toolbox.Handler(e.deps))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = read, write
	srv.Start()
	e.t.Cleanup(srv.Close)
	e.srv = srv
}

// slowConsumerStore is a store whose every consumer page after the first takes pause: a
// busy database under a long export.
type slowConsumerStore struct {
	*store.Store
	pause time.Duration
}

func (s slowConsumerStore) SearchConsumers(ctx context.Context, field, match, text string, status rewards.ConsumerStatus,
	beforeID int64, limit int) ([]rewards.Consumer, error) {
	if beforeID != 0 {
		time.Sleep(s.pause)
	}
	return s.Store.SearchConsumers(ctx, field, match, text, status, beforeID, limit)
}

// TestConsumerExportOutlastsWriteTimeout downloads an export that takes longer than the
// server's WriteTimeout: it arrives whole, because every batch moves the deadline on.
func TestConsumerExportOutlastsWriteTimeout(t *testing.T) {
	e := newEnv(t, func(d *toolbox.Deps) { d.Store = slowConsumerStore{d.Store.(*store.Store), 100 * time.Millisecond} })
	e.serveWithTimeouts(150*time.Millisecond, 150*time.Millisecond)
	const n = 3000 // three pages, each after a pause: 300 ms in all
	batch := make([]rewards.Consumer, n)
	for i := range batch {
		batch[i] = rewards.Consumer{Email: fmt.Sprintf("c%04d@example.com", i), FirstName: "Pat", City: "Springfield"}
	}
	if _, _, err := e.st.UpsertConsumers(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	start := time.Now()
	resp, body := op.do(http.MethodGet, "/consumers/export.csv", nil, nil) // fails the test on a cut body
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("the export took %v, within the write timeout: the test proves nothing", took)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 1+n {
		t.Fatalf("%d records (%v), want a header and %d consumers", len(recs), err, n)
	}
}

// TestConsumerUploadOutlastsReadTimeout sends an upload slower than the server's
// ReadTimeout allows a request, and waits for its answer past the WriteTimeout: the file
// arrives whole and is imported.
func TestConsumerUploadOutlastsReadTimeout(t *testing.T) {
	e := newEnv(t)
	e.serveWithTimeouts(150*time.Millisecond, 150*time.Millisecond)
	op, _ := e.signIn("op@example.com", "")
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("file", "slow.csv")
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		io.WriteString(fw, "email,first_name\n")
		// A slow line: three parts of the file 100 ms apart.
		for i := range 3 {
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintf(fw, "slow%d@example.com,Pat\n", i)
		}
		pw.CloseWithError(mw.Close())
	}()
	resp, body := op.do(http.MethodPost, "/consumers/import", pr, http.Header{"Content-Type": {mw.FormDataContentType()},
		"Origin": {e.srv.URL}, "Sec-Fetch-Site": {"same-origin"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("slow upload: %d, want 303\n%.300s", resp.StatusCode, body)
	}
	if p := waitImport(t, op, 1); p.Inserted != 3 || p.Bad != 0 || p.Error != "" {
		t.Fatalf("slow upload imported %+v, want its 3 consumers", p)
	}
}
