package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserEditorCostReviewAndBudget drives the campaign editor as issue 14 found it: the
// cost shows its arithmetic and each cap, a selection error sits beside its row, a draft
// saves without a subject, scheduling checks it and shows a review, an operator overrides
// the issuer's budget (recorded on the report), and an issuer user can neither schedule
// over the budget nor pick a mail server.
func TestBrowserEditorCostReviewAndBudget(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 40)) // 20 in CA
	st := openStore(t, e)
	acme, err := st.EnsureIssuer(context.Background(), "acme", "Acme Outdoor")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetIssuerBudget(context.Background(), acme.ID, 60); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 3*time.Minute)
	signInOperator(t, ctx, e, base)

	// 20 recipients × 5 points = 100, capped at 80 by the rule's budget; the issuer has 60 left.
	do(t, ctx, "open the editor", chromedp.Navigate(base+"/campaigns/new"), chromedp.WaitVisible(`[data-testid=campaign-form]`),
		chromedp.SetValue(`[data-testid=issuer-select]`, "acme"),
		chromedp.SendKeys(`input[name=name]`, "Budget test"),
		chromedp.SendKeys(`textarea[name=text_body]`, "Hello <_&getUserName_>, open <_&getAckURL_> to earn."),
		chromedp.SetValue(`[name=sel_field_0]`, "country"),
		chromedp.SendKeys(`[name=sel_value_0]`, "CA"),
		chromedp.SetValue(`input[name=client_count]`, "100"),
		chromedp.SetValue(`[name=rule_type]`, "click"),
		chromedp.SetValue(`[name=rule_points]`, "5"),
		chromedp.SetValue(`[name=rule_budget]`, "80"))
	poll(t, ctx, "the arithmetic", `(document.querySelector('[data-testid=cost-arithmetic]')||{}).textContent?.includes('20 recipients × 5 points each = 100 points')`)
	if got := textOf(t, ctx, `[data-testid=cap-rule-budget]`); !strings.Contains(got, "capped at 80 by the rule's budget") {
		t.Errorf("the rule's cap says %q", got)
	}
	if got := textOf(t, ctx, `[data-testid=most-cost]`); got != "80" {
		t.Errorf("the most it can cost shows %q, want 80", got)
	}
	if got := textOf(t, ctx, `[data-testid=over-budget]`); !strings.Contains(got, "20 points more than the budget left") {
		t.Errorf("the over-budget warning says %q", got)
	}
	// The side panel fits the window and scrolls within it.
	if fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('.editor-side').getBoundingClientRect().height <= window.innerHeight &&
		getComputedStyle(document.querySelector('.editor-side')).overflowY === 'auto'`)); err != nil || !fits {
		t.Errorf("the side panel does not fit the window (%v)", err)
	}
	screenshot(t, ctx, "editor-cost")

	// A wrong field in the second row: its error sits beside that row, and no row is added.
	rows := func() int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.sel-row').length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rows()
	do(t, ctx, "type a wrong field", chromedp.SendKeys(`[name=sel_field_1]`, "shoe_size"), chromedp.SendKeys(`[name=sel_value_1]`, "9"))
	poll(t, ctx, "the error beside row 2", `document.querySelector('[name=sel_field_1]').getAttribute('aria-invalid') === 'true' &&
		!!document.querySelector('[name=sel_field_1] ~ [data-testid=live-error]')`)
	if after := rows(); after != before {
		t.Errorf("the selection error changed the rows from %d to %d", before, after)
	}
	screenshot(t, ctx, "editor-selection-error")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`['sel_field_1', 'sel_value_1'].forEach(n => { document.querySelector('[name=' + n + ']').value = ''; });
		document.getElementById('campaign-form').dispatchEvent(new Event('input')); true`)); err != nil {
		t.Fatalf("clear the wrong row: %v", err)
	}

	// Saved without a subject: a draft.
	do(t, ctx, "save the draft", chromedp.Click(`[data-testid=save-draft]`), chromedp.WaitVisible(`[data-testid=flash]`))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	key := regexp.MustCompile(`/campaigns/(\d+)/edit`).FindStringSubmatch(loc)
	if key == nil {
		t.Fatalf("the draft without a subject was not saved (at %s)", loc)
	}
	screenshot(t, ctx, "editor-draft-saved")
	// Scheduling asks for the subject, beside its field.
	do(t, ctx, "schedule without a subject", chromedp.Click(`[data-testid=schedule]`), chromedp.WaitVisible(`[data-testid=error-text_subject]`))
	screenshot(t, ctx, "editor-subject-required")
	do(t, ctx, "schedule with a subject", chromedp.SendKeys(`input[name=text_subject]`, "Points for you"),
		chromedp.Click(`[data-testid=schedule]`), chromedp.WaitVisible(`[data-testid=schedule-review]`))
	if got := textOf(t, ctx, `[data-testid=review-recipients]`); !strings.Contains(got, "at most 20") {
		t.Errorf("the review's recipients say %q", got)
	}
	if got := textOf(t, ctx, `[data-testid=review-start]`); !strings.Contains(got, "starts sending as soon as it is scheduled") {
		t.Errorf("the review's start says %q", got)
	}
	screenshot(t, ctx, "schedule-review-over-budget")
	// The operator must tick the override; then it is scheduled, and the report says who.
	do(t, ctx, "override and confirm", chromedp.Click(`[data-testid=override]`), chromedp.Click(`[data-testid=confirm-schedule]`),
		chromedp.WaitVisible(`[data-testid=budget-override]`))
	if got := textOf(t, ctx, `[data-testid=budget-override]`); !strings.Contains(got, "op@example.com") {
		t.Errorf("the report says %q of the override", got)
	}
	screenshot(t, ctx, "job-report-override")

	// An issuer user: a copy of the job over the budget cannot be scheduled, and there is no
	// mail-server picker.
	do(t, ctx, "duplicate", chromedp.Click(`[data-testid=action-duplicate]`), chromedp.WaitVisible(`[data-testid=campaign-form]`))
	loc, _ = chromedp.Run(ctx, chromedp.Location())
	dup := regexp.MustCompile(`/campaigns/(\d+)/edit`).FindStringSubmatch(loc)
	if dup == nil {
		t.Fatalf("no copy made (at %s)", loc)
	}
	link := regexp.MustCompile(`/welcome/\S+`).FindString(runOK(t, e, "user", "add", "--issuer", "acme", "ann@acme.example"))
	const password = "correct horse battery"
	do(t, ctx, "sign out", chromedp.Click(`[data-testid=logout]`), chromedp.WaitVisible(`[data-testid=login-form]`))
	do(t, ctx, "the issuer user sets her password", chromedp.Navigate(base+link), chromedp.WaitVisible(`input[name=password]`),
		chromedp.SendKeys(`input[name=password]`, password), chromedp.SendKeys(`input[name=confirm]`, password),
		chromedp.Click(`[data-testid=password-submit]`), chromedp.WaitVisible(`[data-testid=nav]`))
	do(t, ctx, "open the copy's review", chromedp.Navigate(base+"/jobs/"+dup[1]+"/schedule"), chromedp.WaitVisible(`[data-testid=over-budget-refused]`))
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=confirm-form]').length`)); n != 0 {
		t.Error("an issuer user is offered to schedule a job over the budget")
	}
	screenshot(t, ctx, "schedule-review-issuer-refused")
	do(t, ctx, "open the issuer's editor", chromedp.Navigate(base+"/campaigns/new"), chromedp.WaitVisible(`[data-testid=campaign-form]`))
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[name=mail_server]').length`)); n != 0 {
		t.Error("an issuer user is offered the mail-server picker")
	}
	screenshot(t, ctx, "editor-issuer")
}

// TestBrowserSavedSegments: a selection built in the editor is saved under a name, listed on
// the segments page with its live count, and picked by a later campaign, whose live count
// follows it.
func TestBrowserSavedSegments(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 40)) // 20 in CA
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 2*time.Minute)
	signInOperator(t, ctx, e, base)
	if _, err := openStore(t, e).EnsureIssuer(context.Background(), "acme", "Acme Outdoor"); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "build a selection", chromedp.Navigate(base+"/campaigns/new"), chromedp.WaitVisible(`[data-testid=campaign-form]`),
		chromedp.SetValue(`[data-testid=issuer-select]`, "acme"),
		chromedp.SetValue(`[name=sel_field_0]`, "country"),
		chromedp.SendKeys(`[name=sel_value_0]`, "CA"),
		chromedp.SendKeys(`[data-testid=segment-name]`, "Canadians"),
		chromedp.Click(`[data-testid=save-segment]`), chromedp.WaitVisible(`[data-testid=segment-notice]`))
	screenshot(t, ctx, "editor-segment-saved")
	do(t, ctx, "open the segments", chromedp.Navigate(base+"/segments"), chromedp.WaitVisible(`[data-testid=segments]`))
	if got := textOf(t, ctx, `[data-testid=segment-count]`); got != "20" {
		t.Errorf("the segment's live count shows %q, want 20", got)
	}
	screenshot(t, ctx, "segments")

	do(t, ctx, "start a campaign from it", chromedp.Navigate(base+"/campaigns/new"), chromedp.WaitVisible(`[data-testid=campaign-form]`),
		chromedp.SetValue(`[data-testid=issuer-select]`, "acme"))
	id, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('[data-testid=segment-select] option')].find(o => o.textContent.includes('Canadians')).value`))
	if err != nil {
		t.Fatalf("the editor offers no Canadians segment: %v", err)
	}
	do(t, ctx, "use the segment", chromedp.SetValue(`[data-testid=segment-select]`, id), chromedp.Click(`[data-testid=use-segment]`),
		chromedp.WaitVisible(`[data-testid=segment-notice]`))
	if got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[name=sel_value_0]').value`)); got != "CA" {
		t.Errorf("the segment's rows were not loaded: value %q", got)
	}
	poll(t, ctx, "the count of the segment", `(document.querySelector('[data-testid=count]')||{}).textContent?.trim() === '20'`)
	screenshot(t, ctx, "editor-segment-used")
}

// TestBrowserEnterSavesTheDraft: Enter in a field saves the draft (the form's default
// button), rather than pressing the first button of the selection rows.
func TestBrowserEnterSavesTheDraft(t *testing.T) {
	e := newEnv(t, "")
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, time.Minute)
	signInOperator(t, ctx, e, base)
	if _, err := openStore(t, e).EnsureIssuer(context.Background(), "acme", "Acme Outdoor"); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "type a name and press Enter", chromedp.Navigate(base+"/campaigns/new"), chromedp.WaitVisible(`[data-testid=campaign-form]`),
		chromedp.SetValue(`[data-testid=issuer-select]`, "acme"),
		chromedp.SendKeys(`textarea[name=text_body]`, "Hello"),
		chromedp.SendKeys(`input[name=name]`, "By Enter\r"),
		chromedp.WaitVisible(`[data-testid=flash]`))
	if got := textOf(t, ctx, `[data-testid=flash]`); !strings.Contains(got, "saved as a draft") {
		t.Errorf("Enter did %q, want the draft saved", got)
	}
}
