package toolbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
	"golang.org/x/net/html"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/toolbox"
)

// editorEnv is a toolbox with a post office and a test sender that mails a real SMTP sink.
type editorEnv struct {
	*env
	po   *postoffice.PostOffice
	sink *mailer.Sink
}

// newEditorEnv serves the editor; tune may adjust its Deps before the post office is made.
func newEditorEnv(t *testing.T, tune ...func(*toolbox.Deps)) *editorEnv {
	t.Helper()
	keys, err := postoffice.NewKeyring(1, map[int][]byte{1: []byte("toolbox-editor-tests-secret")})
	if err != nil {
		t.Fatal(err)
	}
	sink := &mailer.Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	sender, err := mailer.NewSMTPSender(mailer.RelayConfig{URL: sink.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Close() })
	ee := &editorEnv{sink: sink}
	ee.env = newEnv(t, func(d *toolbox.Deps) {
		st := d.Store.(*store.Store)
		for _, f := range tune {
			f(d)
		}
		ee.po = postoffice.New(postoffice.Config{Store: d.Store, Tokens: keys, BaseURL: "https://pp.example"})
		d.PostOffice = ee.po
		d.TestSender = &mailer.TestSends{Store: testSendStore{d.Store, st}, Sender: sender, Tokens: keys,
			Addresses: mailer.Addresses{BaseURL: "https://pp.example", ReplyDomain: "reply.pp.example"}}
	})
	return ee
}

// testSendStore reads a test's messages through the environment's campaign store (which a
// test may wrap) and the rest of a test send from the real store.
type testSendStore struct {
	campaigns toolbox.Store
	*store.Store
}

func (s testSendStore) Messages(ctx context.Context, job *postoffice.Job) (text, html *postoffice.Message, err error) {
	return s.campaigns.Messages(ctx, job)
}

// consumers enrolls three active consumers in the US (Bo first) and one in France, and one
// unsubscribed US consumer.
func (e *editorEnv) consumers() {
	e.t.Helper()
	_, _, err := e.st.UpsertConsumers(context.Background(), []rewards.Consumer{
		{Email: "bo@example.com", FirstName: "Bo <b>", Country: "US", BirthYear: 1980},
		{Email: "cy@example.com", Country: "US", BirthYear: 1990},
		{Email: "di@example.com", Country: "US", BirthYear: 2000},
		{Email: "ed@example.com", Country: "FR", BirthYear: 1980},
		{Email: "fy@example.com", Country: "US", Status: rewards.StatusUnsubscribed},
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// draft stores a draft job of the issuer through the post office.
func (e *editorEnv) draft(issuer, name string, ruleIDs ...int64) *postoffice.Job {
	e.t.Helper()
	now := time.Now().UTC()
	j, _, err := e.po.CreateJob(context.Background(), &postoffice.Campaign{Issuer: issuer, Name: name,
		Start: now.Format(time.RFC3339), Stop: now.Add(48 * time.Hour).Format(time.RFC3339), ClientCount: 10, Draft: true,
		Selection: json.RawMessage(`{"all":[{"field":"country","op":"=","value":"US"}]}`),
		Text:      &postoffice.MessageSpec{Subject: "Hi <_&getUserName_>", Body: "Earn: <_&getAckURL_>"}, RuleIDs: ruleIDs})
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func (e *editorEnv) rule(issuer rewards.Issuer, points int64) rewards.AwardRule {
	e.t.Helper()
	r := rewards.AwardRule{IssuerID: issuer.ID, Type: rewards.RuleReply, Points: points, Frequency: rewards.FrequencyOnce}
	if err := e.st.CreateRule(context.Background(), &r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// campaignForm is a valid new campaign: US consumers, a text message, one new reply rule.
func campaignForm() url.Values {
	start := time.Now().UTC().Add(time.Hour)
	return url.Values{"name": {"Spring"}, "text_subject": {"Hi <_&getFirstName_>"}, "text_body": {"Earn <_&getAckURL_>"},
		"sel_join": {"all"}, "sel_field_0": {"country"}, "sel_op_0": {"="}, "sel_value_0": {"US"},
		"sel_field_1": {""}, "sel_op_1": {"="}, "sel_value_1": {""},
		"client_count": {"10"}, "start": {start.Format("2006-01-02T15:04")}, "stop": {start.Add(72 * time.Hour).Format("2006-01-02T15:04")},
		"rule_type": {"reply"}, "rule_points": {"5"}, "rule_frequency": {"once"}, "action": {"draft"}}
}

func parseHTML(t *testing.T, body string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func oneText(t *testing.T, doc *html.Node, id string) string {
	t.Helper()
	n := byTestID(doc, id)
	if len(n) != 1 {
		t.Fatalf("%d elements %q, want 1", len(n), id)
	}
	return text(n[0])
}

func jobKeyFrom(t *testing.T, loc, prefix, suffix string) int64 {
	t.Helper()
	var key int64
	if _, err := fmt.Sscanf(strings.TrimSuffix(strings.TrimPrefix(loc, prefix), suffix), "%d", &key); err != nil || key == 0 {
		t.Fatalf("redirect to %q, want %s{key}%s", loc, prefix, suffix)
	}
	return key
}

func TestCampaignCreatedThroughTheForm(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, u := e.signIn("ann@acme.example", "acme")
	existing := e.rule(e.issuer("acme"), 2)
	doc := c.page("/campaigns/new", http.StatusOK)
	if len(byTestID(doc, "tag")) != len(postoffice.Tags) || len(byTestID(doc, "issuer-select")) != 0 {
		t.Fatal("the form lacks the tag list, or offers an issuer user the issuer select")
	}
	form := campaignForm()
	form.Set("issuer", "bolt") // ignored: an issuer user's campaigns are its own
	form.Add("rule_ids", fmt.Sprint(existing.ID))
	resp, body := c.post("/campaigns/new", form)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d\n%.2000s", resp.StatusCode, body)
	}
	key := jobKeyFrom(t, resp.Header.Get("Location"), "/campaigns/", "/edit")
	ctx := context.Background()
	job, err := e.st.Job(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if job.IssuerID != u.IssuerID || job.State != postoffice.JobDraft || job.ClientCount != 10 ||
		!strings.Contains(job.SelectionSQL, "country = ?") || len(job.SelectionArgs) != 1 || job.SelectionArgs[0] != "US" {
		t.Fatalf("job: %+v", job)
	}
	rules, err := e.st.JobRules(ctx, key)
	if err != nil || len(rules) != 2 || rules[0].ID != existing.ID || rules[1].Points != 5 || rules[1].Type != rewards.RuleReply {
		t.Fatalf("job rules: %+v %v", rules, err)
	}
	// The draft opens in the editor with what was saved, and its cost: 3 US consumers × 7.
	doc = c.page(resp.Header.Get("Location"), http.StatusOK)
	if got := oneText(t, doc, "most-cost"); got != "21" {
		t.Fatalf("draft cost %q, want 21", got)
	}
	if got := oneText(t, doc, "count"); got != "3" {
		t.Fatalf("draft count %q, want 3", got)
	}

	// Saved again with another selection, it stays the same job, now scheduled.
	form = campaignForm()
	form.Set("sel_field_0", "birth_year")
	form.Set("sel_op_0", ">=")
	form.Set("sel_value_0", "1990")
	form.Set("rule_type", "")
	form.Set("rule_points", "")
	form.Set("action", "schedule")
	resp, body = c.post(fmt.Sprintf("/campaigns/%d/edit", key), form)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != fmt.Sprintf("/jobs/%d/schedule", key) {
		t.Fatalf("save and schedule: %d to %q, want the review\n%.1500s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if job, _ = e.st.Job(ctx, key); job.State != postoffice.JobDraft {
		t.Fatalf("scheduled before the review was confirmed: %+v", job)
	}
	c.page(resp.Header.Get("Location"), http.StatusOK)
	if resp, _ := c.post(fmt.Sprintf("/jobs/%d/schedule", key), url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}
	job, _ = e.st.Job(ctx, key)
	if job.State != postoffice.JobScheduled || !strings.Contains(job.SelectionSQL, "birth_year >= ?") {
		t.Fatalf("after save: %+v", job)
	}
	if rules, _ := e.st.JobRules(ctx, key); len(rules) != 0 {
		t.Fatalf("unchecked rules still linked: %+v", rules)
	}
	// A scheduled job is no longer editable, and says why.
	doc = c.page(fmt.Sprintf("/campaigns/%d/edit", key), http.StatusOK)
	if len(byTestID(doc, "not-editable")) != 1 {
		t.Fatal("a scheduled job's editor does not say it cannot be edited")
	}
	if resp, _ := c.post(fmt.Sprintf("/campaigns/%d/edit", key), campaignForm()); resp.StatusCode != http.StatusConflict {
		t.Fatalf("saving a scheduled job: %d, want 409", resp.StatusCode)
	}
	if doc := c.page("/campaigns", http.StatusOK); len(byTestID(doc, "campaign")) != 1 {
		t.Fatal("the list does not show the campaign")
	}
}

func TestCampaignFormShowsErrorsBesideFieldsAndKeepsValues(t *testing.T) {
	e := newEditorEnv(t)
	c, _ := e.signIn("ann@acme.example", "acme")
	for _, tc := range []struct {
		name, field string
		change      func(url.Values)
	}{
		{"bad start", "start", func(f url.Values) { f.Set("start", "tomorrow") }},
		{"stop before start", "stop", func(f url.Values) { f.Set("stop", "2001-01-01T00:00") }},
		{"bad tag", "text_subject", func(f url.Values) { f.Set("text_subject", "Hi <_&getNope_>") }},
		{"no message", "messages", func(f url.Values) { f.Del("text_subject"); f.Del("text_body") }},
		{"bad year", "sel_value_0", func(f url.Values) { f.Set("sel_field_0", "birth_year"); f.Set("sel_value_0", "abc") }},
		{"bad field", "sel_field_0", func(f url.Values) { f.Set("sel_field_0", "shoe_size") }},
		{"bad points", "rule_points", func(f url.Values) { f.Set("rule_points", "0") }},
		{"bad url", "rule_issuer_url", func(f url.Values) { f.Set("rule_issuer_url", "javascript:alert(1)") }},
		{"zero client count", "client_count", func(f url.Values) { f.Set("client_count", "0") }},
	} {
		form := campaignForm()
		form.Set("name", "Kept <name>")
		tc.change(form)
		resp, body := c.post("/campaigns/new", form)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%s: %d, want 422", tc.name, resp.StatusCode)
		}
		doc := parseHTML(t, body)
		if len(byTestID(doc, "error-"+tc.field)) != 1 {
			t.Errorf("%s: no error beside %s\n%s", tc.name, tc.field, text(byTestID(doc, "campaign-form")[0]))
		}
		kept := false
		for n := range doc.Descendants() {
			if n.Type == html.ElementNode && attr(n, "name") == "name" && attr(n, "value") == "Kept <name>" {
				kept = true
			}
		}
		if !kept {
			t.Errorf("%s: the name typed was not kept", tc.name)
		}
	}
	if jobs, _ := e.st.Jobs(context.Background()); len(jobs) != 0 {
		t.Fatalf("%d jobs stored from bad forms", len(jobs))
	}
	// Without scripts, rows are added and removed by submitting.
	form := campaignForm()
	form.Set("action", "add_row")
	_, body := c.post("/campaigns/new", form)
	if n := len(byTestID(parseHTML(t, body), "sel-row")); n != 4 {
		t.Fatalf("after add row: %d rows, want 1 filled + 1 added + 2 blank", n)
	}
}

func countOf(t *testing.T, c *client, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, body := c.post("/campaigns/count", form)
	var ans map[string]any
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatalf("count: %d %q: %v", resp.StatusCode, body, err)
	}
	return resp.StatusCode, ans
}

func TestCampaignCountAndCost(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, u := e.signIn("ann@acme.example", "acme")
	acme := e.issuer("acme")
	r := e.rule(acme, 4)
	form := campaignForm()
	status, ans := countOf(t, c, form)
	if status != http.StatusOK || ans["count"] != 3.0 {
		t.Fatalf("US consumers: %d %v, want 3 (the unsubscribed one is not counted)", status, ans)
	}
	form.Set("sel_join", "any")
	form.Set("sel_field_1", "country")
	form.Set("sel_value_1", "FR")
	if _, ans := countOf(t, c, form); ans["count"] != 4.0 {
		t.Fatalf("US or FR: %v", ans["count"])
	}
	form.Set("sel_field_1", "birth_year")
	form.Set("sel_op_1", "in")
	form.Set("sel_value_1", "1980, 2000")
	form.Set("sel_join", "all")
	if _, ans := countOf(t, c, form); ans["count"] != 2.0 {
		t.Fatalf("US and born 1980 or 2000: %v", ans["count"])
	}

	// Cost: min(3 matching, client count 2) recipients × (4 + 5) points, against a budget.
	if err := e.st.SetIssuerBudget(context.Background(), u.IssuerID, 10); err != nil {
		t.Fatal(err)
	}
	form = campaignForm()
	form.Set("client_count", "2")
	form.Add("rule_ids", fmt.Sprint(r.ID))
	_, ans = countOf(t, c, form)
	if ans["recipients"] != 2.0 || ans["most_cost"] != 18.0 || ans["budget_left"] != 10.0 || ans["over_budget"] != true {
		t.Fatalf("cost: %v", ans)
	}
	doc := parseHTML(t, ans["cost_html"].(string))
	if oneText(t, doc, "most-cost") != "18" || len(byTestID(doc, "over-budget")) != 1 {
		t.Fatal("the cost box does not show the cost over budget")
	}
	// A period rule awards once per period of the job's three days.
	form.Del("rule_ids")
	form.Set("rule_frequency", "period")
	form.Set("rule_period", "24")
	if _, ans := countOf(t, c, form); ans["most_cost"] != 2.0*5*4 && ans["most_cost"] != 2.0*5*3 {
		t.Fatalf("period rule cost %v, want 2 × 5 × 3 or 4 periods", ans["most_cost"])
	}

	// A bad value is a field error, counted nothing.
	form = campaignForm()
	form.Set("sel_field_0", "birth_year")
	form.Set("sel_value_0", "old")
	status, ans = countOf(t, c, form)
	problem, _ := ans["error"].(map[string]any)
	if status != http.StatusUnprocessableEntity || problem["field"] != "sel_value_0" || problem["reason"] == "" {
		t.Fatalf("bad value: %d %v", status, ans)
	}
	// An issuer may not count with raw SQL.
	form = campaignForm()
	for _, k := range []string{"sel_field_0", "sel_value_0"} {
		form.Del(k)
	}
	form.Set("sel_json", `{"sql": "country = 'US'"}`)
	status, ans = countOf(t, c, form)
	if problem, _ := ans["error"].(map[string]any); status != http.StatusUnprocessableEntity || problem["field"] != "sel_json" {
		t.Fatalf("raw SQL from an issuer: %d %v", status, ans)
	}
}

func TestCampaignPreviewRendersTagsForASampleConsumer(t *testing.T) {
	e := newEditorEnv(t)
	c, _ := e.signIn("op@pointpost.example", "")
	form := campaignForm()
	form.Set("issuer", "acme")
	form.Set("text_body", "Dear <_&getFirstName_>, <i>earn</i>")
	form.Set("html_subject", "Hello <_&getFirstName_>")
	form.Set("html_body", "<p>Dear <_&getFirstName_></p>")
	// No consumer yet: a made-up one.
	_, body := c.post("/campaigns/preview", form)
	if got := oneText(t, parseHTML(t, body), "preview-text-subject"); got != "Hi Alex" {
		t.Fatalf("made-up consumer's subject %q", got)
	}
	// An operator sees the first consumer the selection matches.
	e.consumers()
	resp, body := c.post("/campaigns/preview", form)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preview: %d", resp.StatusCode)
	}
	doc := parseHTML(t, body)
	if got := oneText(t, doc, "preview-consumer"); !strings.Contains(got, "bo@example.com") {
		t.Fatalf("operator's preview for %q, want the first matching consumer", got)
	}
	pre := byTestID(doc, "preview-text-body")
	if len(pre) != 1 || text(pre[0]) != "Dear Bo <b>, <i>earn</i>" {
		t.Fatalf("text body: %v", pre)
	}
	for n := range pre[0].Descendants() {
		if n.Type == html.ElementNode {
			t.Fatalf("the text preview holds a <%s> element: HTML in it is not escaped", n.Data)
		}
	}
	frame := byTestID(doc, "preview-html-frame")
	if len(frame) != 1 || attr(frame[0], "srcdoc") != "<p>Dear Bo &lt;b&gt;</p>" || attr(frame[0], "sandbox") != "" {
		t.Fatalf("HTML preview: srcdoc %q sandbox %q", attr(frame[0], "srcdoc"), attr(frame[0], "sandbox"))
	}
	if got := oneText(t, doc, "preview-html-subject"); got != "Hello Bo <b>" {
		t.Fatalf("HTML subject %q", got)
	}
	// So does an operator selecting by address.
	form.Set("sel_field_0", "email")
	form.Set("sel_value_0", "di@example.com")
	if _, body := c.post("/campaigns/preview", form); !strings.Contains(oneText(t, parseHTML(t, body), "preview-consumer"), "di@example.com") {
		t.Fatal("an operator's preview by address does not show the consumer with it")
	}
	form.Set("text_body", "Dear <_&getFirstName")
	if _, body := c.post("/campaigns/preview", form); len(byTestID(parseHTML(t, body), "preview-text-error")) != 1 {
		t.Fatal("a bad tag is not reported in the preview")
	}
}

func TestIssuerPreviewNeverShowsARealConsumer(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	form := campaignForm() // country = US: Bo matches first
	form.Set("text_body", "Dear <_&getFirstName_> at <_&getEmail_>")
	form.Set("sel_field_1", "first_name")
	form.Set("sel_value_1", "Bo <b>")
	check := func(where, body string) {
		t.Helper()
		doc := parseHTML(t, body)
		who := oneText(t, doc, "preview-consumer")
		if strings.Contains(body, "bo@example.com") || who != "Alex Sample <alex.sample@example.com>" {
			t.Fatalf("%s: the issuer's preview is for %q or shows Bo's data, want the made-up Alex Sample", where, who)
		}
		if note := oneText(t, doc, "preview-note"); !strings.Contains(note, "a sample consumer") {
			t.Fatalf("%s: the preview says %q, not that it is a sample consumer", where, note)
		}
		if got := oneText(t, doc, "preview-text-body"); got != "Dear Alex at alex.sample@example.com" {
			t.Fatalf("%s: text body %q", where, got)
		}
	}
	resp, body := c.post("/campaigns/preview", form)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preview: %d", resp.StatusCode)
	}
	check("preview pane", body)
	// The editor's own pages too: a form sent back with an error, and a saved draft.
	bad := campaignForm()
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("client_count", "0")
	resp, body = c.post("/campaigns/new", bad)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("bad form: %d, want 422", resp.StatusCode)
	}
	check("form with an error", body)
	resp, _ = c.post("/campaigns/new", form)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	_, body = c.do(http.MethodGet, resp.Header.Get("Location"), nil, nil)
	check("saved draft", body)
}

func TestIssuerCannotSelectByAddress(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	// The count is refused alike for an address that is there and one that is not: no oracle.
	for _, addr := range []string{"bo@example.com", "nobody@example.com"} {
		form := campaignForm()
		form.Set("sel_field_1", "email")
		form.Set("sel_value_1", addr)
		status, ans := countOf(t, c, form)
		problem, _ := ans["error"].(map[string]any)
		if status != http.StatusUnprocessableEntity || problem["field"] != "sel_field_1" ||
			!strings.Contains(fmt.Sprint(problem["reason"]), "issuers select by profile, not by address") || ans["count"] != 0.0 {
			t.Fatalf("issuer counting by address %s: %d %v, want 422 naming sel_field_1", addr, status, ans)
		}
	}
	// Nor in the JSON box, however deep.
	form := campaignForm()
	form.Del("sel_field_0")
	form.Del("sel_value_0")
	form.Set("sel_json", `{"all":[{"field":"country","op":"=","value":"US"},{"any":[{"field":"email","op":"prefix","value":"b"}]}]}`)
	if status, ans := countOf(t, c, form); status != http.StatusUnprocessableEntity || ans["error"].(map[string]any)["field"] != "sel_json" {
		t.Fatalf("issuer counting by address in JSON: %d %v", status, ans)
	}
	// Saving such a campaign shows the error beside the row and stores nothing.
	form = campaignForm()
	form.Set("sel_field_1", "email")
	form.Set("sel_value_1", "bo@example.com")
	resp, body := c.post("/campaigns/new", form)
	doc := parseHTML(t, body)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(oneText(t, doc, "error-sel_field_1"), "not by address") {
		t.Fatalf("saving a selection by address: %d, want 422 with the error beside row 1", resp.StatusCode)
	}
	if jobs, _ := e.st.Jobs(context.Background()); len(jobs) != 0 {
		t.Fatalf("%d jobs stored", len(jobs))
	}
	// The field list offers issuers no address, and operators keep it.
	offers := func(doc *html.Node) bool {
		for n := range doc.Descendants() {
			if n.Type == html.ElementNode && n.Data == "option" && n.Parent != nil && attr(n.Parent, "id") == "selection-fields" &&
				attr(n, "value") == "email" {
				return true
			}
		}
		return false
	}
	if offers(c.page("/campaigns/new", http.StatusOK)) {
		t.Fatal("the issuer's field list offers the e-mail address")
	}
	op, _ := e.signIn("op@pointpost.example", "")
	if !offers(op.page("/campaigns/new", http.StatusOK)) {
		t.Fatal("the operator's field list lacks the e-mail address")
	}
	form = campaignForm()
	form.Set("issuer", "acme")
	form.Set("sel_field_1", "email")
	form.Set("sel_value_1", "bo@example.com")
	if status, ans := countOf(t, op, form); status != http.StatusOK || ans["count"] != 1.0 {
		t.Fatalf("operator counting by address: %d %v, want 200 and 1", status, ans)
	}
}

// schedulingDrafts schedules a draft just before the editor rewrites it, as a click on
// Schedule in another tab would.
type schedulingDrafts struct{ toolbox.Store }

func (s schedulingDrafts) UpdateDraftJob(ctx context.Context, job *postoffice.Job, text, html *postoffice.Message, rules postoffice.JobRules) error {
	if err := s.SetJobState(ctx, job.Key, postoffice.JobScheduled, ""); err != nil {
		return err
	}
	return s.Store.UpdateDraftJob(ctx, job, text, html, rules)
}

func TestSavingADraftScheduledMeanwhileIsAConflict(t *testing.T) {
	e := newEditorEnv(t, func(d *toolbox.Deps) { d.Store = schedulingDrafts{d.Store} })
	c, _ := e.signIn("ann@acme.example", "acme")
	job := e.draft("acme", "Spring")
	form := campaignForm()
	form.Set("name", "Renamed")
	resp, body := c.post(fmt.Sprintf("/campaigns/%d/edit", job.Key), form)
	if resp.StatusCode != http.StatusConflict || len(byTestID(parseHTML(t, body), "not-editable")) != 1 {
		t.Fatalf("saving a draft scheduled meanwhile: %d, want 409 and the not-editable page\n%.300s", resp.StatusCode, body)
	}
	got, err := e.st.Job(context.Background(), job.Key)
	if err != nil || got.Name != "Spring" || got.State != postoffice.JobScheduled {
		t.Fatalf("after the refused save: %+v %v", got, err)
	}
}

func TestJobActionsChangeState(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	acme := e.issuer("acme")
	r := e.rule(acme, 3)
	job := e.draft("acme", "Spring", r.ID)
	ctx := context.Background()
	step := func(action string, check func(*postoffice.Job) bool) {
		t.Helper()
		resp, _ := c.post(fmt.Sprintf("/jobs/%d/%s", job.Key, action), url.Values{"confirm": {"yes"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d", action, resp.StatusCode)
		}
		got, err := e.st.Job(ctx, job.Key)
		if err != nil || !check(got) {
			t.Fatalf("after %s: %+v %v", action, got, err)
		}
	}
	step("schedule", func(j *postoffice.Job) bool { return j.State == postoffice.JobScheduled })
	step("suspend", func(j *postoffice.Job) bool { return j.Suspended })
	step("resume", func(j *postoffice.Job) bool { return !j.Suspended })
	step("stop", func(j *postoffice.Job) bool { return j.State == postoffice.JobDone })
	// Refused actions change nothing and say why.
	step("resume", func(j *postoffice.Job) bool { return j.State == postoffice.JobDone && !j.Suspended })

	resp, _ := c.post(fmt.Sprintf("/jobs/%d/duplicate", job.Key), url.Values{})
	key := jobKeyFrom(t, resp.Header.Get("Location"), "/campaigns/", "/edit")
	dup, err := e.st.Job(ctx, key)
	if err != nil || dup.State != postoffice.JobDraft || dup.SelectionSQL != job.SelectionSQL || dup.ClientCount != job.ClientCount ||
		dup.Stop.Sub(dup.Start) != 7*24*time.Hour {
		t.Fatalf("duplicate: %+v %v", dup, err)
	}
	text, _, _ := e.st.Messages(ctx, dup)
	rules, _ := e.st.JobRules(ctx, key)
	if text == nil || text.Subject != "Hi <_&getUserName_>" || len(rules) != 1 || rules[0].ID != r.ID {
		t.Fatalf("duplicate's message %+v and rules %+v", text, rules)
	}
	doc := c.page(resp.Header.Get("Location"), http.StatusOK)
	if len(byTestID(doc, "flash")) != 1 {
		t.Fatal("the duplicate opens without a flash")
	}
}

func TestSendATestDeliversOneMessageThatEarnsNothing(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	job := e.draft("acme", "Spring", e.rule(e.issuer("acme"), 3).ID)
	resp, _ := c.post(fmt.Sprintf("/jobs/%d/test", job.Key), url.Values{"to": {"ann@acme.example"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("test: %d", resp.StatusCode)
	}
	msgs := e.sink.Messages()
	if len(msgs) != 1 || msgs[0].To != "ann@acme.example" {
		t.Fatalf("sink got %d messages", len(msgs))
	}
	r, err := gomail.CreateReader(bytes.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := r.Header.Subject()
	tokens := postoffice.FindToken(subject)
	if !strings.HasPrefix(subject, "[TEST] Hi Alex") || len(tokens) != 1 {
		t.Fatalf("subject %q", subject)
	}
	if _, err := e.po.Acknowledge(context.Background(), tokens[0], postoffice.ChannelReply, "test"); !errors.Is(err, postoffice.ErrNoDelivery) {
		t.Fatalf("the test's token: %v, want ErrNoDelivery", err)
	}
	resp, _ = c.post(fmt.Sprintf("/jobs/%d/test", job.Key), url.Values{"to": {"not an address"}})
	if resp.StatusCode != http.StatusSeeOther || len(e.sink.Messages()) != 1 {
		t.Fatal("a bad address was mailed")
	}
}

func TestIssuerCannotActOnAnotherIssuersJob(t *testing.T) {
	e := newEditorEnv(t)
	acme, _ := e.signIn("ann@acme.example", "acme")
	job := e.draft("bolt", "Bolt's")
	theirs := e.rule(e.issuer("bolt"), 3)
	ctx := context.Background()
	for _, path := range []string{"schedule", "suspend", "resume", "stop", "duplicate", "test"} {
		if resp, _ := acme.post(fmt.Sprintf("/jobs/%d/%s", job.Key, path), url.Values{"to": {"ann@acme.example"}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s of another issuer's job: %d, want 404", path, resp.StatusCode)
		}
	}
	acme.page(fmt.Sprintf("/campaigns/%d/edit", job.Key), http.StatusNotFound)
	if resp, _ := acme.post(fmt.Sprintf("/campaigns/%d/edit", job.Key), campaignForm()); resp.StatusCode != http.StatusNotFound {
		t.Errorf("edit of another issuer's job: %d", resp.StatusCode)
	}
	// Another issuer's rule cannot be linked to one's own campaign either.
	form := campaignForm()
	form.Add("rule_ids", fmt.Sprint(theirs.ID))
	resp, body := acme.post("/campaigns/new", form)
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(parseHTML(t, body), "error-rule_ids")) != 1 {
		t.Errorf("linking another issuer's rule: %d", resp.StatusCode)
	}
	got, _ := e.st.Job(ctx, job.Key)
	jobs, _ := e.st.Jobs(ctx)
	if got.State != postoffice.JobDraft || got.Name != "Bolt's" || len(jobs) != 1 || len(e.sink.Messages()) != 0 {
		t.Fatalf("another issuer's actions changed something: %+v, %d jobs", got, len(jobs))
	}
	if doc := acme.page("/campaigns", http.StatusOK); len(byTestID(doc, "campaign")) != 0 {
		t.Fatal("another issuer's job is listed")
	}
}
