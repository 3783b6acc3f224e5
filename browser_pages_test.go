package main

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// count is how many elements match sel on the page.
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBrowserSignInSaysWhereTheSetupLinkIs: before any operator exists, the sign-in page
// says the setup link is in the server's log and how to get another; once one exists, it
// no longer says so.
func TestBrowserSignInSaysWhereTheSetupLinkIs(t *testing.T) {
	e := newEnv(t, "")
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, time.Minute)
	do(t, ctx, "open the sign-in page", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(`[data-testid=no-operator]`))
	note := textOf(t, ctx, `[data-testid=no-operator]`)
	for _, want := range []string{"setup link", "log", "pointpost user add --operator"} {
		if !strings.Contains(note, want) {
			t.Errorf("the sign-in page's note lacks %q: %q", want, note)
		}
	}
	screenshot(t, ctx, "login-no-operator")
	signInOperator(t, ctx, e, base)
	do(t, ctx, "sign out", chromedp.Click(`[data-testid=logout]`), chromedp.WaitVisible(`[data-testid=login-form]`))
	if n := count(t, ctx, `[data-testid=no-operator]`); n != 0 {
		t.Error("the sign-in page still says there is no operator")
	}
}

// TestBrowserOutboxAndCampaignList: the outbox lists each message by its Subject and From
// headers (not the campaign's name and the bounce address), finds messages by recipient and
// campaign, and shows a message rendered first with tabs for its sources and a download;
// the campaign list shows sends, acknowledgements and rate, searches, filters by state and
// pages; a bad page number is said, not a blank page.
func TestBrowserOutboxAndCampaignList(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 6))
	now := time.Now()
	job := strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 6, `{}`))))
	srv := startServe(t, e)
	base := "http://" + srv.addr
	st := openStore(t, e)
	waitFor(t, "six captured messages", 60*time.Second, func() bool {
		_, n, err := st.OutboxSearch(context.Background(), "", "", 0, 1)
		return err == nil && n == 6
	})
	ctx := browser(t, 3*time.Minute)
	signInOperator(t, ctx, e, base)

	do(t, ctx, "open the outbox", chromedp.Navigate(base+"/outbox"), chromedp.WaitVisible(`[data-testid=outbox]`))
	screenshot(t, ctx, "outbox-list")
	subject := textOf(t, ctx, `[data-testid=outbox-message] [data-testid=outbox-subject]`)
	if subject == "Spring" || !strings.Contains(subject, ", points") {
		t.Errorf("the subject column shows %q, want the message's Subject header (not the campaign's name)", subject)
	}
	if from := textOf(t, ctx, `[data-testid=outbox-message] [data-testid=outbox-from]`); strings.HasPrefix(from, "bounce") || from == "" {
		t.Errorf("the From column shows %q, want the From header, not the bounce address", from)
	}
	if c := textOf(t, ctx, `[data-testid=outbox-message] [data-testid=outbox-campaign]`); c != "Spring" {
		t.Errorf("the campaign column shows %q, want Spring", c)
	}
	do(t, ctx, "search by recipient", chromedp.SendKeys(`[data-testid=outbox-search] input[name=to]`, "c3@"),
		chromedp.Click(`[data-testid=outbox-search] button`), chromedp.WaitVisible(`[data-testid=outbox-clear]`))
	if n, to := count(t, ctx, `[data-testid=outbox-message]`), textOf(t, ctx, `[data-testid=outbox-to]`); n != 1 || to != "c3@example.com" {
		t.Errorf("searching c3@ lists %d messages, the first to %q; want c3@example.com's alone", n, to)
	}
	screenshot(t, ctx, "outbox-search")
	do(t, ctx, "search by campaign", chromedp.Navigate(base+"/outbox?campaign=spr"), chromedp.WaitVisible(`[data-testid=outbox]`))
	if n := count(t, ctx, `[data-testid=outbox-message]`); n != 6 {
		t.Errorf("searching the campaign spr lists %d messages, want 6", n)
	}
	do(t, ctx, "search an unknown campaign", chromedp.Navigate(base+"/outbox?campaign=autumn"), chromedp.WaitVisible(`[data-testid=outbox-empty]`))

	// The message view: the message as read first, then its sources in tabs.
	do(t, ctx, "open a message", chromedp.Navigate(base+"/outbox?to=c0@"), chromedp.WaitVisible(`[data-testid=outbox]`),
		chromedp.Click(`[data-testid=outbox-subject]`), chromedp.WaitVisible(`[data-testid=html-body]`)) // c0 reads HTML
	screenshot(t, ctx, "outbox-message-rendered")
	if n := count(t, ctx, `[data-testid=raw]:not([hidden])`); n != 1 {
		t.Fatalf("the raw source is not on the page (%d)", n)
	}
	for _, tab := range []struct{ tab, panel, want string }{
		{"tab-html", "html-source", "<p>Dear Zoë0"},
		{"tab-headers", "headers", "Subject"},
		{"tab-raw", "raw", "Content-Type: text/html"},
	} {
		do(t, ctx, "open "+tab.tab, chromedp.Click(`[data-testid=`+tab.tab+`]`), chromedp.WaitVisible(`[data-testid=`+tab.panel+`]`))
		if got := textOf(t, ctx, `[data-testid=`+tab.panel+`]`); !strings.Contains(strings.ToLower(got), strings.ToLower(tab.want)) {
			t.Errorf("%s shows %.200q, want %q in it", tab.tab, got, tab.want)
		}
		if n := count(t, ctx, `[data-testid=html-body]`); n != 1 {
			t.Errorf("the rendered message left the page")
		}
		screenshot(t, ctx, "outbox-message-"+tab.panel)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(document.querySelector('[data-testid=download-eml]').href).then(async r =>
		r.status + '|' + r.headers.get('content-type') + '|' + r.headers.get('content-disposition') + '|' + (await r.text()).includes('\r\nSubject: '))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if parts := strings.SplitN(got, "|", 4); len(parts) != 4 || parts[0] != "200" || parts[1] != "message/rfc822" ||
		!regexp.MustCompile(`^attachment; filename="message-\d+\.eml"$`).MatchString(parts[2]) || parts[3] != "true" {
		t.Errorf("the .eml download answers %q", got)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(base+"/outbox/999999"))
	if err != nil || resp.Status != http.StatusNotFound {
		t.Errorf("an unknown message answers %v (%v), want 404", resp, err)
	}

	// The campaign list: an acknowledgement shows in its columns.
	k, err := strconv.ParseInt(job, 10, 64)
	if err != nil {
		t.Fatalf("campaign create printed %q", job)
	}
	ids, err := st.JobConsumers(context.Background(), k, 1)
	if err != nil || len(ids) != 1 {
		t.Fatalf("the job's consumers: %v, %v", ids, err)
	}
	if _, err := st.Acknowledge(context.Background(), postoffice.Ack{JobKey: k, ConsumerID: ids[0], Channel: postoffice.ChannelClick,
		At: time.Now(), Source: "test"}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "open the campaigns", chromedp.Navigate(base+"/campaigns"), chromedp.WaitVisible(`[data-testid=campaigns]`))
	for sel, want := range map[string]string{"sent": "6", "acknowledged": "1", "rate": "16.7%"} {
		if got := textOf(t, ctx, `[data-testid=campaign] [data-testid=`+sel+`]`); got != want {
			t.Errorf("the campaign list's %s column shows %q, want %q", sel, got, want)
		}
	}
	screenshot(t, ctx, "campaigns-list")
	do(t, ctx, "filter by state", chromedp.SetValue(`[data-testid=state-filter]`, "draft"),
		chromedp.Click(`[data-testid=campaign-search] button`), chromedp.WaitVisible(`[data-testid=no-match]`))
	do(t, ctx, "search by name", chromedp.Navigate(base+"/campaigns?q=SPR"), chromedp.WaitVisible(`[data-testid=campaigns]`))
	if n := count(t, ctx, `[data-testid=campaign]`); n != 1 {
		t.Errorf("searching SPR lists %d campaigns, want 1", n)
	}
	resp, err = chromedp.RunResponse(ctx, chromedp.Navigate(base+"/campaigns?page=7"))
	if err != nil || resp.Status != http.StatusBadRequest {
		t.Errorf("page 7 of one answers %v (%v), want 400", resp, err)
	}
	do(t, ctx, "see the bad page said", chromedp.WaitVisible(`[data-testid=list-error]`))
	if msg := textOf(t, ctx, `[data-testid=list-error]`); !strings.Contains(msg, "no page 7") {
		t.Errorf("a bad page says %q", msg)
	}
	screenshot(t, ctx, "campaigns-bad-page")
}

// TestBrowserConsumerEditAndBulk: an operator edits a consumer's profile (a bad value is
// said beside its field), then unsubscribes the consumers a search finds after a
// confirmation that says how many; the export link says how many too.
func TestBrowserConsumerEditAndBulk(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 6))
	srv := startServe(t, e)
	base := "http://" + srv.addr
	st := openStore(t, e)
	ctx := browser(t, 2*time.Minute)
	signInOperator(t, ctx, e, base)

	c1, err := st.ConsumerByEmail(context.Background(), "c1@example.com")
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "open the consumer", chromedp.Navigate(fmt.Sprintf("%s/consumers/%d", base, c1.ID)),
		chromedp.Click(`[data-testid=edit-consumer]`), chromedp.WaitVisible(`[data-testid=consumer-edit]`))
	if n := count(t, ctx, `[data-testid=consumer-edit] input`); n != len(rewards.ConsumerFields) {
		t.Errorf("the edit form has %d fields, want rewards.ConsumerFields' %d", n, len(rewards.ConsumerFields))
	}
	do(t, ctx, "type a bad year", chromedp.SetValue(`[data-testid=edit-birth_year]`, "1492"),
		chromedp.Click(`[data-testid=edit-save]`), chromedp.WaitVisible(`[data-testid=error-birth_year]`))
	screenshot(t, ctx, "consumer-edit-error")
	do(t, ctx, "save the edit", chromedp.SetValue(`[data-testid=edit-birth_year]`, "1990"),
		chromedp.SetValue(`[data-testid=edit-city]`, "Halifax"),
		chromedp.Click(`[data-testid=edit-save]`), chromedp.WaitVisible(`[data-testid=flash]`))
	screenshot(t, ctx, "consumer-edited")
	if got, err := st.ConsumerByID(context.Background(), c1.ID); err != nil || got.City != "Halifax" || got.BirthYear != 1990 {
		t.Errorf("after the edit: %+v, %v", got, err)
	}

	do(t, ctx, "search", chromedp.Navigate(base+"/consumers?q=c&field=email"), chromedp.WaitVisible(`[data-testid=bulk-form]`))
	if got := textOf(t, ctx, `[data-testid=export-link]`); got != "Export 6 as CSV" {
		t.Errorf("the export link says %q", got)
	}
	screenshot(t, ctx, "consumers-bulk-actions")
	do(t, ctx, "ask to unsubscribe", chromedp.Click(`[data-testid=bulk-unsubscribe]`), chromedp.WaitVisible(`[data-testid=bulk-confirm]`))
	if got := textOf(t, ctx, `[data-testid=bulk-count]`); !strings.Contains(got, "Unsubscribe 6 consumers") {
		t.Errorf("the confirmation says %q, want how many", got)
	}
	screenshot(t, ctx, "consumers-bulk-confirm")
	do(t, ctx, "confirm", chromedp.Click(`[data-testid=bulk-do]`), chromedp.WaitVisible(`[data-testid=flash]`))
	if got := textOf(t, ctx, `[data-testid=flash]`); !strings.HasPrefix(got, "6 of the 6 consumers found are now unsubscribed") {
		t.Errorf("after the bulk action the page says %q", got)
	}
	for i := range 6 {
		if c, err := st.ConsumerByEmail(context.Background(), fmt.Sprintf("c%d@example.com", i)); err != nil || c.Status != rewards.StatusUnsubscribed {
			t.Errorf("c%d: %+v, %v; want unsubscribed", i, c, err)
		}
	}
	screenshot(t, ctx, "consumers-after-bulk")
}

// TestBrowserInvitationLinkAfterRedirect: inviting a user lands on a page (after a
// redirect) that shows the link with a copy button that copies it; a reload neither sends
// the form again nor shows the link again.
func TestBrowserInvitationLinkAfterRedirect(t *testing.T) {
	e := newEnv(t, "")
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 2*time.Minute)
	signInOperator(t, ctx, e, base)
	do(t, ctx, "create an issuer", chromedp.Navigate(base+"/issuers"), chromedp.WaitVisible(`[data-testid=issuer-form]`),
		chromedp.SendKeys(`[data-testid=issuer-form] input[name=slug]`, "acme"),
		chromedp.SendKeys(`[data-testid=issuer-form] input[name=name]`, "Acme Outdoor"),
		chromedp.Click(`[data-testid=issuer-form] button`), chromedp.WaitVisible(`[data-testid=invite-form]`))
	do(t, ctx, "invite a user", chromedp.SendKeys(`[data-testid=invite-form] input[name=email]`, "ann@acme.example"),
		chromedp.Click(`[data-testid=invite-form] button`), chromedp.WaitVisible(`[data-testid=invite-link]`))
	link, err := chromedp.Run(ctx, chromedp.Value(`[data-testid=invite-link]`))
	if err != nil || !strings.HasPrefix(link, base+"/welcome/") {
		t.Fatalf("the invitation shows %q (%v)", link, err)
	}
	if typed, err := chromedp.Run(ctx, chromedp.Value(`[data-testid=invite-form] input[name=email]`)); err != nil || typed != "" {
		t.Errorf("the invitation form still holds %q (%v) once the invitation is made", typed, err)
	}
	// The page came from a GET: its entry in the history is the issuer's page, not the form's POST.
	nav, err := chromedp.Run(ctx, chromedp.Evaluate[string](`performance.getEntriesByType('navigation')[0].type + ' ' + location.pathname`))
	if err != nil || !regexp.MustCompile(`^navigate /issuers/\d+$`).MatchString(nav) {
		t.Errorf("the link is shown by %q (%v), want a page reached by a redirect to the issuer's page", nav, err)
	}
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name}, Setting: cdpbrowser.PermissionSettingGranted, Origin: base}); err != nil {
			t.Fatal(err)
		}
	}
	do(t, ctx, "copy the link", chromedp.Click(`[data-testid=copy-link]`))
	poll(t, ctx, "the copy button says it copied", `document.querySelector('[data-testid=copy-link]').textContent === 'Copied'`)
	copied, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil || copied != link {
		t.Errorf("the clipboard holds %q (%v), want the link", copied, err)
	}
	screenshot(t, ctx, "invitation-link")
	do(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(`[data-testid=invite-form]`))
	if n := count(t, ctx, `[data-testid=invite-link]`); n != 0 {
		t.Error("a reload shows the link again")
	}
	st := openStore(t, e)
	users, err := st.Users(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	invited := 0
	for _, u := range users {
		if u.Email == "ann@acme.example" {
			invited++
		}
	}
	if invited != 1 {
		t.Errorf("ann has %d accounts after a reload, want 1", invited)
	}
}
