package toolbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/toolbox"
)

// cell returns the text of the element with data-testid id inside row, or fails.
func cell(t *testing.T, row *html.Node, id string) string {
	t.Helper()
	n := byTestID(row, id)
	if len(n) != 1 {
		t.Fatalf("row has %d %q cells", len(n), id)
	}
	return text(n[0])
}

// serverRows returns the mail-servers page's rows by server ID.
func serverRows(t *testing.T, doc *html.Node) map[string]*html.Node {
	t.Helper()
	rows := map[string]*html.Node{}
	for _, r := range byTestID(doc, "mail-server") {
		rows[attr(r, "data-id")] = r
	}
	return rows
}

func TestMailServersPageShowsLiveStatus(t *testing.T) {
	po := postoffice.New(postoffice.Config{})
	e := newEnv(t, func(d *toolbox.Deps) { d.PostOffice = po })
	ctx := context.Background()
	if err := e.st.RegisterMailServers(ctx, 2, ""); err != nil {
		t.Fatal(err)
	}
	job := e.job(e.issuer("acme"), "Spring golf")
	if err := e.st.SetJobState(ctx, job.Key, postoffice.JobRunning, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AssignJob(ctx, job.Key, 1); err != nil {
		t.Fatal(err)
	}
	po.Report(postoffice.MailServerStatus{ID: 1, Name: "mail-1", State: "sending", Queue: 12_000, Rate: 1000,
		Sent: 1_234_567, Retried: 3, Rejected: 2, Relay: "smtp://pp:hunter2@relay.example:587"})
	po.Report(postoffice.MailServerStatus{ID: 2, Name: "mail-2", State: "idle", Queue: 0})

	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/mail-servers", http.StatusOK)
	rows := serverRows(t, doc)
	if len(rows) != 2 {
		t.Fatalf("%d server rows, want 2", len(rows))
	}
	busy, idle := rows["1"], rows["2"]
	for id, want := range map[string]string{"state": "sending", "queue": "12,000", "rate": "1,000/s", "idle": "12s",
		"sent": "1,234,567", "retried": "3", "rejected": "2", "next": ""} {
		if got := cell(t, busy, id); got != want {
			t.Errorf("mail-1 %s = %q, want %q", id, got, want)
		}
	}
	if got := cell(t, idle, "idle"); got != "idle now" {
		t.Errorf("mail-2 idle = %q, want idle now", got)
	}
	if got := cell(t, idle, "next"); got != "next job goes here" {
		t.Errorf("mail-2, idle, is not marked as the next job's server: %q", got)
	}
	if relay := cell(t, busy, "relay"); strings.Contains(relay, "hunter2") || !strings.Contains(relay, "relay.example:587") {
		t.Errorf("relay shown as %q: want the host without the password", relay)
	}
	if got := cell(t, idle, "relay"); got != "embedded outbox" {
		t.Errorf("mail-2 relay = %q, want embedded outbox", got)
	}
	jobs := byTestID(busy, "job")
	if len(jobs) != 1 || attr(jobs[0], "href") != fmt.Sprintf("/jobs/%d", job.Key) {
		t.Fatalf("mail-1's current jobs: %v, want a link to job %d", jobs, job.Key)
	}
	if len(byTestID(idle, "job")) != 0 {
		t.Error("mail-2 lists a job it does not run")
	}

	// The JSON the page polls carries the same figures and the texts the page shows.
	resp, body := op.do(http.MethodGet, "/mail-servers.json", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("/mail-servers.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var live struct {
		Servers []struct {
			ID            int     `json:"id"`
			Queue         int     `json:"queue"`
			IdleInSeconds float64 `json:"idle_in_seconds"`
			Next          bool    `json:"next"`
			Relay         string  `json:"relay"`
			Jobs          []int64 `json:"jobs"`
		} `json:"servers"`
		Text   map[string]string `json:"text"`
		Layout string            `json:"layout"`
	}
	if err := json.Unmarshal([]byte(body), &live); err != nil {
		t.Fatal(err)
	}
	if len(live.Servers) != 2 || live.Servers[0].Queue != 12_000 || live.Servers[0].IdleInSeconds != 12 ||
		!live.Servers[1].Next || len(live.Servers[0].Jobs) != 1 || strings.Contains(body, "hunter2") {
		t.Fatalf("mail-servers.json: %s", body)
	}
	if live.Text["ms-1-queue"] != "12,000" || live.Text["ms-2-idle"] != "idle now" || live.Layout == "" {
		t.Fatalf("live texts: %v, layout %q", live.Text, live.Layout)
	}
	if l := byTestID(doc, "mail-servers")[0].Parent; attr(l, "data-live-layout") != live.Layout {
		t.Fatalf("page layout %q, JSON layout %q: the page would reload on every poll", attr(l, "data-live-layout"), live.Layout)
	}

	// A new report shows on the next poll.
	po.Report(postoffice.MailServerStatus{ID: 2, Name: "mail-2", State: "sending", Queue: 500, Rate: 10})
	_, body = op.do(http.MethodGet, "/mail-servers.json", nil, nil)
	if err := json.Unmarshal([]byte(body), &live); err != nil {
		t.Fatal(err)
	}
	if live.Text["ms-2-queue"] != "500" || live.Text["ms-2-idle"] != "50s" {
		t.Fatalf("after a new report: %v", live.Text)
	}
}

func TestMailServersPageReadsTheStoreWithoutAPostOffice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/mail-servers", http.StatusOK)
	if len(byTestID(doc, "no-servers")) != 1 {
		t.Fatal("no servers registered: the page does not say so")
	}
	if err := e.st.RegisterMailServers(ctx, 1, "smtp://relay.example:25"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.ReportMailServers(ctx, []postoffice.MailServerStatus{{ID: 1, State: "sending", Queue: 90_000, Rate: 500}}); err != nil {
		t.Fatal(err)
	}
	row := serverRows(t, op.page("/mail-servers", http.StatusOK))["1"]
	if row == nil {
		t.Fatal("the stored mail server is not shown")
	}
	if cell(t, row, "queue") != "90,000" || cell(t, row, "idle") != "3m 00s" || cell(t, row, "relay") != "smtp://relay.example:25" {
		t.Fatalf("stored status shown as queue %q idle %q relay %q", cell(t, row, "queue"), cell(t, row, "idle"), cell(t, row, "relay"))
	}
	// A server held by a route's limits says why and until when.
	const note = "waiting: route ses over its 24h0m0s quota of 50000 until 14:05:00"
	if err := e.st.ReportMailServers(ctx, []postoffice.MailServerStatus{{ID: 1, State: "waiting", Note: note}}); err != nil {
		t.Fatal(err)
	}
	row = serverRows(t, op.page("/mail-servers", http.StatusOK))["1"]
	if got := cell(t, row, "note"); got != note {
		t.Errorf("waiting server's note shown as %q, want %q", got, note)
	}
}

// TestMailServersPageShowsEachProcessAndWhoAnswers: in a web-only process (a post office
// that runs no mail servers, with a 30s lease) the page reads the saved statuses of two
// mail processes. It names each process, shows each heartbeat's age, folds the server whose
// heartbeat is older than the lease as not answering, and does not choose it as the next
// job's server, though it is the idle one.
func TestMailServersPageShowsEachProcessAndWhoAnswers(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	e := newEnv(t, func(d *toolbox.Deps) {
		d.Now = func() time.Time { return now }
		d.PostOffice = postoffice.New(postoffice.Config{Store: d.Store.(postoffice.Store), HeartbeatTimeout: 30 * time.Second,
			Now: d.Now})
	})
	ctx := context.Background()
	gone, err := e.st.RegisterProcessMailServers(ctx, "mail-b", 1, "", now)
	if err != nil {
		t.Fatal(err)
	}
	live, err := e.st.RegisterProcessMailServers(ctx, "mail-a", 2, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.ReportMailServers(ctx, []postoffice.MailServerStatus{
		{ID: gone[0], State: "idle", ReportedAt: now.Add(-40 * time.Second)},
		{ID: live[0], State: "sending", Queue: 5000, Rate: 1000, ReportedAt: now.Add(-2 * time.Second)},
		// Older than the default 15s, within this post office's lease.
		{ID: live[1], State: "sending", Queue: 9000, Rate: 1000, ReportedAt: now.Add(-20 * time.Second)},
	}); err != nil {
		t.Fatal(err)
	}

	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/mail-servers", http.StatusOK)
	var processes []string
	for _, h := range byTestID(doc, "process") {
		processes = append(processes, text(h))
	}
	if want := []string{"process mail-a", "process mail-b"}; !slices.Equal(processes, want) {
		t.Errorf("process headings %q, want %q", processes, want)
	}
	rows := serverRows(t, doc)
	for id, want := range map[int]struct{ process, reported, alive string }{
		gone[0]: {"mail-b", "reported 40s ago", "false"},
		live[0]: {"mail-a", "reported 2s ago", "true"},
		live[1]: {"mail-a", "reported 20s ago", "true"},
	} {
		row := rows[strconv.Itoa(id)]
		if row == nil {
			t.Fatalf("mail server %d is not shown", id)
		}
		if got := [3]string{attr(row, "data-process"), cell(t, row, "reported"), attr(row, "data-alive")}; got != [3]string{want.process, want.reported, want.alive} {
			t.Errorf("mail server %d: process, heartbeat, alive %q, want %v", id, got, want)
		}
		if marked := len(byTestID(row, "silent")) == 1; marked != (want.alive == "false") {
			t.Errorf("mail server %d marked not answering: %v", id, marked)
		}
	}
	folded := byTestID(doc, "not-answering")
	if len(folded) != 1 || len(byTestID(folded[0], "mail-server")) != 1 || len(serverRows(t, byTestID(doc, "mail-servers")[0])) != 2 {
		t.Fatal("the live servers are not listed apart from the folded one not answering")
	}
	if got := cell(t, folded[0], "process"); got != "process mail-b" {
		t.Errorf("the folded server's process: %q", got)
	}
	for id, row := range rows {
		marked := cell(t, row, "next") == "next job goes here"
		if want := id == strconv.Itoa(live[0]); marked != want {
			t.Errorf("mail server %s marked as the next job's server: %v, want %v", id, marked, want)
		}
	}

	var js struct {
		Servers []struct {
			ID      int    `json:"id"`
			Process string `json:"process"`
			Alive   bool   `json:"alive"`
			Next    bool   `json:"next"`
		} `json:"servers"`
		Text map[string]string `json:"text"`
	}
	_, body := op.do(http.MethodGet, "/mail-servers.json", nil, nil)
	if err := json.Unmarshal([]byte(body), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Servers) != 3 || js.Servers[0].Process != "mail-b" || js.Servers[0].Alive || js.Servers[0].Next ||
		!js.Servers[1].Alive || !js.Servers[1].Next || js.Text[fmt.Sprintf("ms-%d-reported", live[0])] != "reported 2s ago" {
		t.Fatalf("mail-servers.json: %s", body)
	}
}

// TestMailServersPageOfOneProcessNamesNone: the servers of one process are listed without
// its name.
func TestMailServersPageOfOneProcessNamesNone(t *testing.T) {
	po := postoffice.New(postoffice.Config{})
	e := newEnv(t, func(d *toolbox.Deps) { d.PostOffice = po })
	if _, err := e.st.RegisterProcessMailServers(context.Background(), "solo", 2, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	po.Report(postoffice.MailServerStatus{ID: 1, Process: "solo", State: "idle"})
	po.Report(postoffice.MailServerStatus{ID: 2, Process: "solo", State: "idle"})
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/mail-servers", http.StatusOK)
	if n := len(byTestID(doc, "process")); n != 0 {
		t.Errorf("%d process headings for one process", n)
	}
	if len(serverRows(t, doc)) != 2 || len(byTestID(doc, "not-answering")) != 0 {
		t.Error("one process's live servers are not listed as answering")
	}
}

func TestOutboxListPaginates(t *testing.T) {
	e := newEnv(t)
	var msgs []*postoffice.OutboxMessage
	for i := 1; i <= 120; i++ {
		msgs = append(msgs, &postoffice.OutboxMessage{From: "a@pp.localhost", To: fmt.Sprintf("c%d@example.com", i),
			Subject: "Spring " + strconv.Itoa(i), Data: []byte("Subject: x\r\n\r\nbody\r\n")})
	}
	if err := e.st.AppendOutbox(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	seen := map[string]bool{}
	path, pages := "/outbox", 0
	for path != "" {
		pages++
		if pages > 5 {
			t.Fatal("the outbox pages do not end")
		}
		doc := op.page(path, http.StatusOK)
		if got := text(byTestID(doc, "outbox-total")[0]); got != "120" {
			t.Fatalf("total %q, want 120", got)
		}
		rows := byTestID(doc, "outbox-message")
		for i, r := range rows {
			id := attr(r, "data-id")
			if seen[id] {
				t.Fatalf("message %s on two pages", id)
			}
			seen[id] = true
			if pages == 1 && i == 0 && id != "120" {
				t.Fatalf("first message listed is %s, want the newest, 120", id)
			}
		}
		path = ""
		if next := byTestID(doc, "next-page"); len(next) == 1 {
			path = attr(next[0], "href")
		}
	}
	if pages != 3 || len(seen) != 120 {
		t.Fatalf("%d pages, %d messages; want 3 pages with all 120", pages, len(seen))
	}
	op.page("/outbox?before=x", http.StatusNotFound)
}

func TestOutboxShowsBothPartsOfAMultipartMessage(t *testing.T) {
	e := newEnv(t)
	data := "Subject: Hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain words\r\n" +
		"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>rich <a href=\"http://127.0.0.1:8080/i/tok\">earn</a></p>\r\n--b1--\r\n"
	if err := e.st.AppendOutbox(context.Background(), []*postoffice.OutboxMessage{{From: "a@x", To: "b@y", Data: []byte(data)}}); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/outbox/1", http.StatusOK)
	frame := byTestID(doc, "html-body")
	if len(frame) != 1 || !strings.Contains(attr(frame[0], "srcdoc"), `<base target="_blank">`) ||
		!strings.Contains(attr(frame[0], "srcdoc"), `href="http://127.0.0.1:8080/i/tok"`) {
		t.Fatalf("HTML part: %v", frame)
	}
	if sb := attr(frame[0], "sandbox"); strings.Contains(sb, "allow-scripts") || !strings.Contains(sb, "allow-popups") {
		t.Fatalf("sandbox %q: want popups (links) and no scripts", sb)
	}
	if body := byTestID(doc, "text-part"); len(body) != 1 || text(body[0]) != "plain words" {
		t.Fatalf("text part: %v", body)
	}
}

// TestOperatorRoutesAnswer404ToIssuers walks every operator route as an issuer user.
func TestOperatorRoutesAnswer404ToIssuers(t *testing.T) {
	e := newEnv(t)
	withOutbox(e)
	ctx := context.Background()
	if _, _, err := e.st.UpsertConsumers(ctx, consumersNamed("zoe@example.com")); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	// An import exists, so its pages would answer an operator.
	resp, _ := op.upload("/consumers/import", "a.csv", "email\nann@example.com\n")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	waitImport(t, op, 1)

	acme, _ := e.signIn("ann@acme.example", "acme")
	gets := []string{"/mail-servers", "/mail-servers.json", "/outbox", "/outbox?before=2", "/outbox/1", "/consumers",
		"/consumers?q=zoe", "/consumers/1", "/consumers/export.csv", "/consumers/import", "/consumers/import/1",
		"/consumers/import/1.json"}
	for _, path := range gets {
		resp, body := acme.do(http.MethodGet, path, nil, nil)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "zoe@example.com") {
			t.Errorf("issuer GET %s: %d, want 404 and nothing of the operator page", path, resp.StatusCode)
		}
		// The same routes answer the operator: the walk is not of mistyped paths.
		if resp, _ := op.do(http.MethodGet, path, nil, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("operator GET %s: %d, want 200", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/consumers/1/status", "/consumers/import/1/cancel"} {
		if resp, _ := acme.post(path, map[string][]string{"status": {"suppressed"}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("issuer POST %s: %d, want 404", path, resp.StatusCode)
		}
	}
	if resp, _ := acme.upload("/consumers/import", "b.csv", "email\nmallory@example.com\n"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("issuer upload: %d, want 404", resp.StatusCode)
	}
	if c, err := e.st.ConsumerByID(ctx, 1); err != nil || c.Status != "active" {
		t.Fatalf("an issuer's POST changed the consumer: %+v, %v", c, err)
	}
	if _, err := e.st.ConsumerByEmail(ctx, "mallory@example.com"); err == nil {
		t.Fatal("an issuer's upload imported a consumer")
	}
}

func TestOperatorApprovesAndRemovesTestAddresses(t *testing.T) {
	e := newEnv(t)
	op, _ := e.signIn("op@example.com", "")
	resp, _ := op.post("/outbox/test-addresses", url.Values{"email": {" QA@Example.net "}, "note": {"QA inbox"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	doc := op.page(resp.Header.Get("Location"), http.StatusOK)
	rows := byTestID(doc, "test-address")
	if len(rows) != 1 || !strings.Contains(text(rows[0]), "qa@example.net") || !strings.Contains(text(rows[0]), "QA inbox") ||
		!strings.Contains(text(rows[0]), "op@example.com") {
		t.Fatalf("approved addresses: %d rows", len(rows))
	}
	resp, _ = op.post("/outbox/test-addresses", url.Values{"email": {"not an address"}})
	doc = op.page(resp.Header.Get("Location"), http.StatusOK)
	if f := byTestID(doc, "flash"); len(f) != 1 || !strings.Contains(text(f[0]), "not approved") {
		t.Fatal("a bad address was not refused with a message")
	}
	if len(byTestID(doc, "test-address")) != 1 {
		t.Fatal("a bad address was listed")
	}
	// An issuer user may not approve addresses for themself.
	ann, _ := e.signIn("ann@acme.example", "acme")
	if resp, _ := ann.post("/outbox/test-addresses", url.Values{"email": {"mine@example.net"}}); resp.StatusCode == http.StatusSeeOther {
		t.Fatal("an issuer user approved a test address")
	}
	resp, _ = op.post("/outbox/test-addresses/remove", url.Values{"email": {"qa@example.net"}})
	if len(byTestID(op.page(resp.Header.Get("Location"), http.StatusOK), "test-address")) != 0 {
		t.Fatal("the removed address is still listed")
	}
	if list, err := e.st.TestAddresses(context.Background()); err != nil || len(list) != 0 {
		t.Fatalf("stored test addresses %v %v", list, err)
	}
}

// TestMailServersPageMarksThePostOfficesNextChoice: with three idle servers, after the post
// office gave a job to mail-1 the page marks mail-2 as the next job's server (idle servers
// take turns; by the statuses alone it was mail-1 again), says why, and says why the running
// job went to mail-1.
func TestMailServersPageMarksThePostOfficesNextChoice(t *testing.T) {
	var po *postoffice.PostOffice
	e := newEnv(t, func(d *toolbox.Deps) {
		po = postoffice.New(postoffice.Config{Store: d.Store.(postoffice.Store)})
		d.PostOffice = po
	})
	ctx := context.Background()
	if err := e.st.RegisterMailServers(ctx, 3, ""); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 3; id++ {
		po.Report(postoffice.MailServerStatus{ID: id, Name: "mail-" + strconv.Itoa(id), State: "idle"})
	}
	job := e.job(e.issuer("acme"), "Spring golf")
	if err := po.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	given, err := e.st.Job(ctx, job.Key)
	if err != nil || given.MailServerID != 1 || given.AssignReason == "" {
		t.Fatalf("the job went to mail-%d (%q), %v; want mail-1 with a reason", given.MailServerID, given.AssignReason, err)
	}

	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/mail-servers", http.StatusOK)
	rows := serverRows(t, doc)
	next := po.NextAssignment()
	if next.MailServerID != 2 {
		t.Fatalf("the post office's next choice is mail-%d, want mail-2", next.MailServerID)
	}
	for id, row := range rows {
		marked := cell(t, row, "next") == "next job goes here"
		if want := id == "2"; marked != want {
			t.Errorf("mail-%s marked as the next job's server: %v, want %v", id, marked, want)
		}
	}
	if got := cell(t, rows["2"], "next-why"); got != next.Reason {
		t.Errorf("mail-2 says the next job goes there because %q, want %q", got, next.Reason)
	}
	reasons := byTestID(rows["1"], "assign-reason")
	if len(reasons) != 1 || text(reasons[0]) != "why here: "+given.AssignReason {
		t.Errorf("mail-1's job does not say why it went there (%q)", given.AssignReason)
	}
	var live struct {
		Servers []struct {
			ID   int  `json:"id"`
			Next bool `json:"next"`
		} `json:"servers"`
		Text map[string]string `json:"text"`
	}
	_, body := op.do(http.MethodGet, "/mail-servers.json", nil, nil)
	if err := json.Unmarshal([]byte(body), &live); err != nil {
		t.Fatal(err)
	}
	for _, s := range live.Servers {
		if s.Next != (s.ID == 2) {
			t.Errorf("mail-servers.json: mail-%d next %v", s.ID, s.Next)
		}
	}
	if live.Text["ms-2-next-why"] != next.Reason || live.Text["ms-1-next-why"] != "" {
		t.Errorf("mail-servers.json next-why texts: %q, %q", live.Text["ms-1-next-why"], live.Text["ms-2-next-why"])
	}
}
