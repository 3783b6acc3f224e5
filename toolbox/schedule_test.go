package toolbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// overBudget makes acme's draft for the 3 active US consumers with a 7-point rule, against a
// budget of 10 points: a worst case of 21.
func overBudget(t *testing.T, e *editorEnv) *postoffice.Job {
	t.Helper()
	e.consumers()
	acme := e.issuer("acme")
	if err := e.st.SetIssuerBudget(context.Background(), acme.ID, 10); err != nil {
		t.Fatal(err)
	}
	return e.draft("acme", "Spring", e.rule(acme, 7).ID)
}

func TestScheduleReviewsBeforeItCommits(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	job := e.draft("acme", "Spring", e.rule(e.issuer("acme"), 7).ID)
	path := fmt.Sprintf("/jobs/%d/schedule", job.Key)
	doc := c.page(path, http.StatusOK)
	if got := oneText(t, doc, "review-recipients"); !strings.Contains(got, "at most 3") {
		t.Errorf("the review's recipients say %q", got)
	}
	if got := oneText(t, doc, "most-cost"); got != "21" {
		t.Errorf("the review's worst case is %q, want 21", got)
	}
	if len(byTestID(doc, "review-test-form")) != 1 || len(byTestID(doc, "confirm-form")) != 1 {
		t.Fatal("the review offers no test send or no confirmation")
	}
	// A post without the confirmation only shows the review again.
	resp, _ := c.post(path, url.Values{})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != path {
		t.Fatalf("unconfirmed schedule: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got, _ := e.st.Job(context.Background(), job.Key); got.State != postoffice.JobDraft {
		t.Fatalf("scheduled without confirmation: %s", got.State)
	}
	resp, _ = c.post(path, url.Values{"confirm": {"yes"}})
	if got, _ := e.st.Job(context.Background(), job.Key); resp.StatusCode != http.StatusSeeOther || got.State != postoffice.JobScheduled {
		t.Fatalf("confirmed schedule: %d, job %s", resp.StatusCode, got.State)
	}
}

func TestIssuerCannotScheduleOverBudget(t *testing.T) {
	e := newEditorEnv(t)
	c, _ := e.signIn("ann@acme.example", "acme")
	job := overBudget(t, e)
	path := fmt.Sprintf("/jobs/%d/schedule", job.Key)
	doc := c.page(path, http.StatusOK)
	if len(byTestID(doc, "over-budget-refused")) != 1 || len(byTestID(doc, "confirm-form")) != 0 {
		t.Fatal("the review offers an issuer to schedule a job over the budget")
	}
	// A forged confirmation, override and all, is refused by the server.
	resp, body := c.post(path, url.Values{"confirm": {"yes"}, "override": {"yes"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(text(byTestID(parseHTML(t, body), "schedule-refused")[0]), "more than the 10 left") {
		t.Fatalf("forged over-budget schedule: %d\n%.600s", resp.StatusCode, body)
	}
	if got, _ := e.st.Job(context.Background(), job.Key); got.State != postoffice.JobDraft || got.BudgetOverride.By != "" {
		t.Fatalf("after the refusal: %+v", got)
	}
}

func TestOperatorOverridesTheBudgetAndItIsRecorded(t *testing.T) {
	e := newEditorEnv(t)
	op, _ := e.signIn("op@pp.example", "")
	job := overBudget(t, e)
	path := fmt.Sprintf("/jobs/%d/schedule", job.Key)
	if doc := op.page(path, http.StatusOK); len(byTestID(doc, "override")) != 1 {
		t.Fatal("the review offers the operator no override")
	}
	if resp, _ := op.post(path, url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusConflict {
		t.Fatalf("over budget without the override: %d, want 409", resp.StatusCode)
	}
	if got, _ := e.st.Job(context.Background(), job.Key); got.State != postoffice.JobDraft {
		t.Fatalf("scheduled without the override: %s", got.State)
	}
	if resp, _ := op.post(path, url.Values{"confirm": {"yes"}, "override": {"yes"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the override: %d", resp.StatusCode)
	}
	got, _ := e.st.Job(context.Background(), job.Key)
	if got.State != postoffice.JobScheduled || got.BudgetOverride.By != "op@pp.example" || got.BudgetOverride.At.IsZero() {
		t.Fatalf("after the override: %+v", got)
	}
	if note := oneText(t, op.page(fmt.Sprintf("/jobs/%d", job.Key), http.StatusOK), "budget-override"); !strings.Contains(note, "op@pp.example") {
		t.Errorf("the report says %q of the override", note)
	}
}

func TestAPIRefusesAnIssuerKeyOverBudget(t *testing.T) {
	e := newEditorEnv(t, withAPI)
	job := overBudget(t, e)
	acme := e.issuer("acme")
	path := fmt.Sprintf("/api/v1/jobs/%d/schedule", job.Key)
	e.call(e.apiKey(&acme), http.MethodPost, path, "").wantError(t, http.StatusForbidden, "budget")
	// A job created to be scheduled at once is kept as a draft, refused alike.
	created := e.call(e.apiKey(&acme), http.MethodPost, "/api/v1/jobs",
		`{"name":"At once","start":"2030-01-01T00:00:00Z","stop":"2030-01-02T00:00:00Z","client_count":100,`+
			`"selection":{"field":"country","op":"=","value":"US"},"text":{"subject":"Hi","body":"Earn"},"rules":[{"type":"reply","points":50,"frequency":"once"}]}`)
	created.wantError(t, http.StatusForbidden, "budget")
	op := e.apiKey(nil)
	e.call(op, http.MethodPost, path, "").wantError(t, http.StatusConflict, "budget")
	var got struct {
		State          string `json:"state"`
		BudgetOverride *struct {
			By string `json:"by"`
		} `json:"budget_override"`
	}
	e.call(op, http.MethodPost, path+"?override_budget=yes", "").want(t, http.StatusOK, &got)
	if got.State != "scheduled" || got.BudgetOverride == nil || got.BudgetOverride.By != "API key test" {
		t.Fatalf("operator's override: %+v", got)
	}
	jobs, _ := e.st.Jobs(context.Background(), postoffice.JobDraft)
	if len(jobs) != 1 || jobs[0].Name != "At once" {
		t.Fatalf("the refused API job was not kept as a draft: %d drafts", len(jobs))
	}
}

func TestDraftSavesWithoutASubjectAndSchedulingChecksIt(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	form := campaignForm()
	form.Set("text_subject", "")
	resp, body := c.post("/campaigns/new", form)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("draft without a subject: %d\n%.800s", resp.StatusCode, body)
	}
	key := jobKeyFrom(t, resp.Header.Get("Location"), "/campaigns/", "/edit")
	// Scheduling from the editor checks the subject, beside its field, and keeps the draft.
	form.Set("action", "schedule")
	resp, body = c.post(fmt.Sprintf("/campaigns/%d/edit", key), form)
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(parseHTML(t, body), "error-text_subject")) != 1 {
		t.Fatalf("schedule without a subject: %d", resp.StatusCode)
	}
	// So does the review, and a forged confirmation.
	path := fmt.Sprintf("/jobs/%d/schedule", key)
	if doc := c.page(path, http.StatusOK); len(byTestID(doc, "not-ready")) != 1 || len(byTestID(doc, "confirm-form")) != 0 {
		t.Fatal("the review of a draft without a subject offers to schedule it")
	}
	if resp, _ := c.post(path, url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("confirmed schedule without a subject: %d, want 422", resp.StatusCode)
	}
	if got, _ := e.st.Job(context.Background(), key); got.State != postoffice.JobDraft {
		t.Fatalf("a draft without a subject was scheduled: %s", got.State)
	}
}

func TestCostShowsTheArithmeticAndEachCap(t *testing.T) {
	e := newEditorEnv(t)
	e.consumers()
	c, _ := e.signIn("ann@acme.example", "acme")
	r := rewards.AwardRule{IssuerID: e.issuer("acme").ID, Type: rewards.RuleReply, Points: 35, Frequency: rewards.FrequencyOnce, Budget: 60}
	if err := e.st.CreateRule(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	form := campaignForm()
	form.Set("rule_type", "")
	form.Set("rule_points", "")
	form.Set("client_count", "2") // 3 match
	form.Add("rule_ids", fmt.Sprint(r.ID))
	_, ans := countOf(t, c, form)
	doc := parseHTML(t, ans["cost_html"].(string))
	if got := oneText(t, doc, "cost-arithmetic"); got != "2 recipients × 35 points each = 70 points." {
		t.Errorf("arithmetic %q", got)
	}
	if got := oneText(t, doc, "cap-rule-budget"); !strings.Contains(got, "= 70, capped at 60 by the rule's budget") {
		t.Errorf("rule cap %q", got)
	}
	if got := oneText(t, doc, "cap-client-count"); !strings.Contains(got, "3 consumers match; the client count caps the recipients at 2") {
		t.Errorf("client count cap %q", got)
	}
	if got := oneText(t, doc, "most-cost"); got != "60" {
		t.Errorf("most %q", got)
	}
}

func TestIssuerHasNoMailServerPicker(t *testing.T) {
	e := newEditorEnv(t)
	c, _ := e.signIn("ann@acme.example", "acme")
	doc := c.page("/campaigns/new", http.StatusOK)
	if strings.Contains(text(doc), "Mail server") {
		t.Fatal("an issuer is offered the mail-server picker")
	}
	form := campaignForm()
	form.Set("mail_server", "1")
	resp, body := c.post("/campaigns/new", form)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "the mail server is the operators") {
		t.Fatalf("forged mail server: %d", resp.StatusCode)
	}
	if jobs, _ := e.st.Jobs(context.Background()); len(jobs) != 0 {
		t.Fatal("a campaign with a forged mail server was saved")
	}
	op, _ := e.signIn("op@pp.example", "")
	if !strings.Contains(text(op.page("/campaigns/new", http.StatusOK)), "Mail server") {
		t.Fatal("the operator lost the mail-server picker")
	}
}

func TestSelectionErrorNamesTheRowAsTyped(t *testing.T) {
	e := newEditorEnv(t)
	c, _ := e.signIn("ann@acme.example", "acme")
	// Row 0 left empty, row 1 wrong: the error is row 1's, not the empty one's.
	form := campaignForm()
	form.Set("sel_field_0", "")
	form.Set("sel_value_0", "")
	form.Set("sel_field_1", "shoe_size")
	form.Set("sel_value_1", "9")
	status, ans := countOf(t, c, form)
	raw, _ := json.Marshal(ans["error"])
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), `"field":"sel_field_1"`) {
		t.Fatalf("count: %d %s", status, raw)
	}
	resp, body := c.post("/campaigns/new", form)
	doc := parseHTML(t, body)
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(doc, "error-sel_field_1")) != 1 {
		t.Fatalf("save: %d, errors beside %v", resp.StatusCode, text(byTestID(doc, "sel-rows")[0]))
	}
}
