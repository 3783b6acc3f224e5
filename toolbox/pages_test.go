package toolbox_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// capturedMessage is a captured invitation as a mail server writes one: its header's From
// and Subject are not the envelope's bounce address and campaign name.
func capturedMessage(to, subject string) []byte {
	return []byte("From: \"Acme Rewards\" <rewards@acme.example>\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n")
}

func TestOutboxListsHeadersAndSearches(t *testing.T) {
	e := newEnv(t)
	var msgs []*postoffice.OutboxMessage
	for i := range 3 {
		campaign := "Spring"
		if i == 2 {
			campaign = "[TEST] Autumn"
		}
		to := fmt.Sprintf("c%d@example.com", i)
		msgs = append(msgs, &postoffice.OutboxMessage{From: "bounce+tok@pp.example", To: to, Subject: campaign,
			Data: capturedMessage(to, "=?utf-8?q?Zo=C3=AB=2C_points_for_you?=")})
	}
	if err := e.st.AppendOutbox(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/outbox", http.StatusOK)
	rows := byTestID(doc, "outbox-message")
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	if got := text(byTestID(rows[0], "outbox-subject")[0]); got != "Zoë, points for you" {
		t.Errorf("subject column %q, want the decoded Subject header", got)
	}
	if got := text(byTestID(rows[0], "outbox-from")[0]); got != `"Acme Rewards" <rewards@acme.example>` {
		t.Errorf("From column %q, want the From header", got)
	}
	if got := text(byTestID(rows[0], "outbox-campaign")[0]); got != "[TEST] Autumn" {
		t.Errorf("campaign column %q", got)
	}
	for query, want := range map[string]int{"to=C1%40": 1, "campaign=spring": 2, "campaign=autumn&to=c0": 0, "to=example": 3} {
		doc := op.page("/outbox?"+query, http.StatusOK)
		if n := len(byTestID(doc, "outbox-message")); n != want {
			t.Errorf("%s lists %d, want %d", query, n, want)
		}
		if got := text(byTestID(doc, "outbox-total")[0]); got != strconv.Itoa(want) {
			t.Errorf("%s says %s match, want %d", query, got, want)
		}
	}
	op.page("/outbox?to="+strings.Repeat("x", 201), http.StatusBadRequest)
	op.page("/outbox?before=-3", http.StatusNotFound)
}

func TestOutboxSearchPagesKeepTheSearch(t *testing.T) {
	e := newEnv(t)
	var msgs []*postoffice.OutboxMessage
	for i := range 130 {
		campaign := "Spring"
		if i%2 == 1 {
			campaign = "Autumn"
		}
		msgs = append(msgs, &postoffice.OutboxMessage{From: "b@x", To: fmt.Sprintf("c%d@example.com", i), Subject: campaign,
			Data: capturedMessage("c@example.com", "Hi")})
	}
	if err := e.st.AppendOutbox(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	seen, path := 0, "/outbox?campaign=autumn"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("the pages do not end")
		}
		doc := op.page(path, http.StatusOK)
		for _, r := range byTestID(doc, "outbox-campaign") {
			if text(r) != "Autumn" {
				t.Fatalf("page %d lists a message of %q", pages+1, text(r))
			}
			seen++
		}
		path = ""
		if next := byTestID(doc, "next-page"); len(next) == 1 {
			path = attr(next[0], "href")
			if !strings.Contains(path, "campaign=autumn") {
				t.Fatalf("the next page link %q drops the search", path)
			}
		}
	}
	if seen != 65 {
		t.Errorf("the pages list %d Autumn messages, want 65", seen)
	}
}

func TestOutboxMessageViewAndDownload(t *testing.T) {
	e := newEnv(t)
	data := capturedMessage("ann@example.com", "Points for you")
	if err := e.st.AppendOutbox(context.Background(), []*postoffice.OutboxMessage{{From: "bounce+t@pp.example", To: "ann@example.com",
		Subject: "Spring", Data: data}}); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/outbox/1", http.StatusOK)
	if got := text(byTestID(doc, "message-subject")[0]); got != "Points for you" {
		t.Errorf("the view's title is %q", got)
	}
	// A text-only message: the text is the rendered view; no HTML tab is offered.
	if n := byTestID(doc, "text-body"); len(n) != 1 || text(n[0]) != "Hello" {
		t.Errorf("the message's text is not shown first")
	}
	if len(byTestID(doc, "tab-html")) != 0 || len(byTestID(doc, "tab-headers")) != 1 || len(byTestID(doc, "tab-raw")) != 1 {
		t.Error("the tabs are not the text message's")
	}
	resp, body := op.do(http.MethodGet, "/outbox/1/download", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "message/rfc822" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="message-1.eml"` || body != string(data) {
		t.Errorf("download: %d %q %q, body %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"), body)
	}
	for _, path := range []string{"/outbox/2", "/outbox/2/download", "/outbox/x", "/outbox/x/download", "/outbox/0"} {
		op.page(path, http.StatusNotFound)
	}
	ann, _ := e.signIn("ann@acme.example", "acme")
	ann.page("/outbox/1/download", http.StatusNotFound)
}

func TestCampaignListColumnsSearchStatesAndPages(t *testing.T) {
	e := newEnv(t)
	acme, bolt := e.issuer("acme"), e.issuer("bolt")
	for i := range 30 {
		iss := acme
		if i%3 == 0 {
			iss = bolt
		}
		e.job(iss, fmt.Sprintf("Camp %02d", i))
	}
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/campaigns", http.StatusOK)
	if n := len(byTestID(doc, "campaign")); n != 25 {
		t.Errorf("first page lists %d, want 25", n)
	}
	if got := text(byTestID(byTestID(doc, "campaign")[0], "rate")[0]); got != "–" {
		t.Errorf("the rate of a job that sent nothing is %q", got)
	}
	next := byTestID(doc, "next-page")
	if len(next) != 1 || attr(next[0], "href") != "/campaigns?page=2" {
		t.Fatalf("no link to page 2")
	}
	if n := len(byTestID(op.page("/campaigns?page=2", http.StatusOK), "campaign")); n != 5 {
		t.Errorf("page 2 lists %d, want 5", n)
	}
	doc = op.page("/campaigns?q=bolt", http.StatusOK)
	if n := len(byTestID(doc, "campaign")); n != 10 {
		t.Errorf("searching bolt lists %d, want its 10", n)
	}
	if n := len(byTestID(op.page("/campaigns?q=camp+07", http.StatusOK), "campaign")); n != 1 {
		t.Errorf("searching camp 07 lists %d", n)
	}
	if n := len(byTestID(op.page("/campaigns?state=draft", http.StatusOK), "no-match")); n != 1 {
		t.Error("no draft: the list does not say nothing matches")
	}
	if n := len(byTestID(op.page("/campaigns?state=scheduled&q=bolt", http.StatusOK), "campaign")); n != 10 {
		t.Errorf("scheduled bolt campaigns: %d", n)
	}
	for _, bad := range []string{"page=0", "page=x", "page=3", "state=lost", "page=-1"} {
		doc := op.page("/campaigns?"+bad, http.StatusBadRequest)
		if len(byTestID(doc, "list-error")) != 1 || len(byTestID(doc, "campaign")) != 25 {
			t.Errorf("%s: no error said, or not the first page shown", bad)
		}
	}
	// An issuer's user sees and searches her own campaigns only.
	ann, _ := e.signIn("ann@bolt.example", "bolt")
	if n := len(byTestID(ann.page("/campaigns?q=camp", http.StatusOK), "campaign")); n != 10 {
		t.Errorf("bolt's user lists %d campaigns, want bolt's 10", n)
	}
}

func TestOperatorEditsAConsumer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, _, err := e.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "ann@example.com", FirstName: "Ann", City: "Boston"},
		{Email: "bob@example.com"}}); err != nil {
		t.Fatal(err)
	}
	ann, _ := e.st.ConsumerByEmail(ctx, "ann@example.com")
	path := fmt.Sprintf("/consumers/%d/edit", ann.ID)
	op, _ := e.signIn("op@example.com", "")
	doc := op.page(path, http.StatusOK)
	for _, f := range rewards.ConsumerFields {
		if n := byTestID(doc, "edit-"+f.Name); len(n) != 1 || attr(n[0], "value") != f.Get(ann) {
			t.Errorf("the form's %s field is missing or does not hold %q", f.Name, f.Get(ann))
		}
	}
	form := url.Values{}
	for _, f := range rewards.ConsumerFields {
		form.Set(f.Name, f.Get(ann))
	}
	form.Set("birth_year", "1492")
	form.Set("format", "fax")
	resp, body := op.post(path, form)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `data-testid="error-birth_year"`) ||
		!strings.Contains(body, `data-testid="error-format"`) {
		t.Fatalf("bad year and format: %d\n%.600s", resp.StatusCode, body)
	}
	form.Set("birth_year", "1990")
	form.Set("format", "html")
	form.Set("email", "bob@example.com")
	if resp, body := op.post(path, form); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "another consumer") {
		t.Fatalf("bob's address: %d\n%.600s", resp.StatusCode, body)
	}
	form.Set("email", "ann@example.com")
	form.Set("city", "")
	if resp, _ := op.post(path, form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a good edit: %d", resp.StatusCode)
	}
	got, _ := e.st.ConsumerByID(ctx, ann.ID)
	if got.BirthYear != 1990 || got.Format != rewards.FormatHTML || got.City != "" || got.FirstName != "Ann" {
		t.Errorf("after the edit: %+v", got)
	}
	op.page("/consumers/999/edit", http.StatusNotFound)
	if resp, _ := op.post("/consumers/999/edit", form); resp.StatusCode != http.StatusNotFound {
		t.Errorf("editing an unknown consumer: %d", resp.StatusCode)
	}
	// An issuer's user cannot reach the form, nor change a consumer by a forged POST.
	issuer, _ := e.signIn("ann@acme.example", "acme")
	issuer.page(path, http.StatusNotFound)
	form.Set("city", "Forged")
	if resp, _ := issuer.post(path, form); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an issuer's forged edit: %d, want 404", resp.StatusCode)
	}
	if got, _ := e.st.ConsumerByID(ctx, ann.ID); got.City == "Forged" {
		t.Error("an issuer's forged edit changed the consumer")
	}
}

func TestBulkStatusConfirmsHowMany(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, _, err := e.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "a1@boston.example"}, {Email: "a2@boston.example"},
		{Email: "a3@boston.example", Status: rewards.StatusBounced}, {Email: "z@austin.example"}}); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	search := url.Values{"q": {"a"}, "field": {"email"}}
	doc := op.page("/consumers?"+search.Encode(), http.StatusOK)
	if n := byTestID(doc, "export-link"); len(n) != 1 || text(n[0]) != "Export 3 as CSV" {
		t.Errorf("the export link does not say how many")
	}
	confirm := url.Values{"q": {"a"}, "field": {"email"}, "action": {"unsubscribe"}}
	doc = op.page("/consumers/bulk?"+confirm.Encode(), http.StatusOK)
	if got := text(byTestID(doc, "bulk-count")[0]); !strings.Contains(got, "Unsubscribe 3 consumers found by this search?") {
		t.Errorf("the confirmation says %q", got)
	}
	// The search found more since the confirmation: nothing changes, and it asks again.
	stale := url.Values{"q": {"a"}, "field": {"email"}, "action": {"unsubscribe"}, "count": {"2"}}
	if resp, body := op.post("/consumers/bulk", stale); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "nothing was changed") {
		t.Fatalf("a stale count: %d\n%.400s", resp.StatusCode, body)
	}
	if c, _ := e.st.ConsumerByEmail(ctx, "a1@boston.example"); c.Status != rewards.StatusActive {
		t.Fatal("a stale confirmation changed a consumer")
	}
	for _, bad := range []url.Values{
		{"q": {"a"}, "action": {"delete"}, "count": {"3"}},
		{"q": {"a"}, "action": {"unsubscribe"}, "count": {"x"}},
		{"q": {"a"}, "field": {"zip"}, "action": {"unsubscribe"}, "count": {"3"}},
		{"q": {"a"}, "status": {"gone"}, "action": {"suppress"}, "count": {"3"}},
	} {
		if resp, _ := op.post("/consumers/bulk", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %d, want 400", bad, resp.StatusCode)
		}
	}
	op.page("/consumers/bulk?q=a&action=delete", http.StatusBadRequest)
	// An issuer's forged bulk POST is refused and changes nothing.
	issuer, _ := e.signIn("ann@acme.example", "acme")
	good := url.Values{"q": {"a"}, "field": {"email"}, "action": {"unsubscribe"}, "count": {"3"}}
	if resp, _ := issuer.post("/consumers/bulk", good); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an issuer's forged bulk action: %d, want 404", resp.StatusCode)
	}
	issuer.page("/consumers/bulk?"+confirm.Encode(), http.StatusNotFound)
	if c, _ := e.st.ConsumerByEmail(ctx, "a1@boston.example"); c.Status != rewards.StatusActive {
		t.Fatal("an issuer's forged bulk action changed a consumer")
	}
	resp, _ := op.post("/consumers/bulk", good)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/consumers?field=email&q=a" {
		t.Fatalf("the confirmed action: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for email, want := range map[string]rewards.ConsumerStatus{"a1@boston.example": rewards.StatusUnsubscribed,
		"a2@boston.example": rewards.StatusUnsubscribed, "a3@boston.example": rewards.StatusBounced, "z@austin.example": rewards.StatusActive} {
		if c, _ := e.st.ConsumerByEmail(ctx, email); c.Status != want {
			t.Errorf("%s is %s, want %s", email, c.Status, want)
		}
	}
	if flash := text(byTestID(op.page("/consumers?field=email&q=a", http.StatusOK), "flash")[0]); !strings.HasPrefix(flash, "2 of the 3 consumers found are now unsubscribed") {
		t.Errorf("the flash says %q", flash)
	}
}

func TestLoginSaysWhereTheSetupLinkIsUntilAnOperatorExists(t *testing.T) {
	e := newEnv(t)
	doc := e.anonymous().page("/login", http.StatusOK)
	if n := byTestID(doc, "no-operator"); len(n) != 1 || !strings.Contains(text(n[0]), "pointpost user add --operator") {
		t.Fatal("the sign-in page does not say where the setup link is")
	}
	e.signIn("op@example.com", "")
	if n := byTestID(e.anonymous().page("/login", http.StatusOK), "no-operator"); len(n) != 0 {
		t.Error("the sign-in page says there is no operator while there is one")
	}
}

func TestSendATestSaysOneMessagePerFormat(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	now := time.Now().UTC()
	both, _, err := e.po.CreateJob(context.Background(), &postoffice.Campaign{Issuer: "acme", Name: "Both", Draft: true,
		Start: now.Format(time.RFC3339), Stop: now.Add(48 * time.Hour).Format(time.RFC3339), ClientCount: 10,
		Text: &postoffice.MessageSpec{Subject: "Hi <_&getUserName_>", Body: "Earn: <_&getAckURL_>"},
		HTML: &postoffice.MessageSpec{Subject: "Hi <_&getUserName_>", Body: `<a href="<_&getAckURL_>">Earn</a>`}})
	if err != nil {
		t.Fatal(err)
	}
	textOnly := e.draft("acme", "Text")
	for _, job := range []struct {
		job  *postoffice.Job
		says string
		sent int
	}{{textOnly, "one message, in text", 1}, {both, "two messages, one per format (text and HTML)", 2}} {
		before := len(e.sink.Messages())
		doc := c.page(fmt.Sprintf("/jobs/%d", job.job.Key), http.StatusOK)
		if n := byTestID(doc, "test-formats"); len(n) != 1 || !strings.Contains(text(n[0]), job.says) {
			t.Errorf("job %s: the test form does not say it sends %q", job.job.Name, job.says)
		}
		resp, _ := c.post(fmt.Sprintf("/jobs/%d/test", job.job.Key), url.Values{"to": {"ann@acme.example"}})
		flash := text(byTestID(c.page(resp.Header.Get("Location"), http.StatusOK), "flash")[0])
		if !strings.Contains(flash, job.says) {
			t.Errorf("job %s: after the test the page says %q, want %q", job.job.Name, flash, job.says)
		}
		if got := len(e.sink.Messages()) - before; got != job.sent {
			t.Errorf("job %s: the test sent %d messages, want %d", job.job.Name, got, job.sent)
		}
	}
}
