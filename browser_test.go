package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pointpost/mailer"
)

// browser starts headless Chromium (Debian's chromium; .ci/run installs it) and returns a
// tab context bounded by limit. Without Chromium the test is skipped, unless
// POINTPOST_REQUIRE_BROWSER=1 (as in CI) makes that a failure.
func browser(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	path := os.Getenv("POINTPOST_CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		const missing = "no Chromium: install Debian's chromium (apt-get install chromium) or set POINTPOST_CHROMIUM"
		if os.Getenv("POINTPOST_REQUIRE_BROWSER") == "1" {
			t.Fatal(missing + " (POINTPOST_REQUIRE_BROWSER=1 requires the browser tests to run)")
		}
		t.Skip(missing)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, limit)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	return ctx
}

// screenshot saves the page as name.png in the test's artifact directory: kept under
// -outputdir when go test runs with -artifacts, removed with the test otherwise.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// poll waits until the JavaScript condition cond holds on the page, failing the test with
// what was awaited and where the page was.
func poll(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s (at %s): %v", what, loc, err)
	}
}

// slowRouteOperator serves 30 consumers through mailServers mail servers and one route of
// 2 messages a second into a sink, so jobs keep running while their pages are read, and
// signs an operator in with a browser that lives for life.
func slowRouteOperator(t *testing.T, mailServers int, life time.Duration) (e env, base string, ctx context.Context) {
	t.Helper()
	sink := &mailer.Sink{}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e = newEnv(t, "")
	e["POINTPOST_MAIL_SERVERS"] = strconv.Itoa(mailServers)
	runOK(t, e, "route", "add", "slow", "--url", sink.URL(), "--rate", "2", "--db", e["POINTPOST_DB"])
	runOK(t, e, "import", "consumers", writeConsumers(t, 30))
	base = "http://" + startServe(t, e).addr
	ctx = browser(t, life)
	signInOperator(t, ctx, e, base)
	return e, base, ctx
}

// do runs browser steps, failing the test with what was being done.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s (at %s): %v", what, loc, err)
	}
}

func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// TestBrowserWholeLoop drives the toolbox in headless Chromium as people would: the first
// operator signs in from a one-time link, creates a campaign through the editor with a
// selection and a rule, schedules it, watches its report reach 100% against the embedded
// outbox, opens the captured message, follows its link, presses Submit and sees the points.
func TestBrowserWholeLoop(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 40))
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 4*time.Minute)

	// The first operator: an invitation link from the command line sets the password.
	out := runOK(t, e, "user", "add", "--operator", "op@example.com")
	link := regexp.MustCompile(`/welcome/\S+`).FindString(out)
	if link == "" {
		t.Fatalf("user add printed no link: %q", out)
	}
	const password = "correct horse battery"
	do(t, ctx, "set the password", chromedp.Navigate(base+link),
		chromedp.WaitVisible(`input[name=password]`),
		chromedp.SendKeys(`input[name=password]`, password),
		chromedp.SendKeys(`input[name=confirm]`, password),
		chromedp.Click(`[data-testid=password-submit]`),
		chromedp.WaitVisible(`[data-testid=nav]`))

	// Sign out and in again through the login form.
	do(t, ctx, "sign out", chromedp.Click(`[data-testid=logout]`), chromedp.WaitVisible(`[data-testid=login-form]`))
	screenshot(t, ctx, "login")
	do(t, ctx, "sign in",
		chromedp.SendKeys(`[data-testid=login-form] input[name=email]`, "op@example.com"),
		chromedp.SendKeys(`[data-testid=login-form] input[name=password]`, password),
		chromedp.Click(`[data-testid=login-submit]`),
		chromedp.WaitVisible(`[data-testid=nav]`))
	screenshot(t, ctx, "dashboard")

	// An issuer, then a campaign of it for the 20 Canadian consumers, text and HTML, with a
	// click rule.
	do(t, ctx, "create an issuer", chromedp.Navigate(base+"/issuers"), chromedp.WaitVisible(`[data-testid=issuer-form]`),
		chromedp.SendKeys(`[data-testid=issuer-form] input[name=slug]`, "acme"),
		chromedp.SendKeys(`[data-testid=issuer-form] input[name=name]`, "Acme Outdoor"),
		chromedp.Click(`[data-testid=issuer-form] button`),
		chromedp.WaitVisible(`[data-testid=flash]`))
	do(t, ctx, "open the editor", chromedp.Navigate(base+"/campaigns/new"), chromedp.WaitVisible(`[data-testid=campaign-form]`),
		chromedp.SetValue(`[data-testid=issuer-select]`, "acme"))
	do(t, ctx, "fill the campaign",
		chromedp.SendKeys(`input[name=name]`, "Browser spring"),
		chromedp.SendKeys(`input[name=text_subject]`, "<_&getUserName_>, 5 points for you"),
		chromedp.SendKeys(`textarea[name=text_body]`, "Hello <_&getUserName_>, open <_&getAckURL_> to earn."),
		chromedp.SendKeys(`input[name=html_subject]`, "<_&getUserName_>, 5 points for you"),
		chromedp.SendKeys(`textarea[name=html_body]`, `<p>Hello <_&getUserName_>, <a href="<_&getAckURL_>">earn</a>.</p>`),
		chromedp.SetValue(`[name=sel_field_0]`, "country"),
		chromedp.SetValue(`[name=sel_op_0]`, "="),
		chromedp.SendKeys(`[name=sel_value_0]`, "CA"),
		chromedp.SetValue(`input[name=client_count]`, "100"),
		chromedp.SetValue(`[name=rule_type]`, "click"),
		chromedp.SetValue(`[name=rule_points]`, "5"),
		chromedp.SetValue(`[name=rule_frequency]`, "once"))
	// The live count and preview answer as the form is edited.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(document.querySelector('[data-testid=count]')||{}).textContent?.trim() === '20'`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the live count did not reach 20 (it shows %q): %v", textOf(t, ctx, `[data-testid=count]`), err)
	}
	// The preview answers on its own request, after or before the count.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(document.querySelector('[data-testid=preview-html-frame]')?.getAttribute('srcdoc') || '').includes('Hello Zoë')`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		srcdoc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=preview-html-frame]')?.getAttribute('srcdoc') ?? ''`))
		t.Errorf("the HTML preview is %q (%v), want the message for a sample consumer", srcdoc, err)
	}
	screenshot(t, ctx, "campaign-editor")
	do(t, ctx, "schedule", chromedp.Click(`[data-testid=schedule]`), chromedp.WaitVisible(`[data-testid=confirm-schedule]`))
	screenshot(t, ctx, "schedule-review")
	do(t, ctx, "confirm the schedule", chromedp.Click(`[data-testid=confirm-schedule]`), chromedp.WaitVisible(`[data-testid=progress]`))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`/jobs/(\d+)`).FindStringSubmatch(loc)
	if key == nil {
		do(t, ctx, "open the campaigns", chromedp.Navigate(base+"/campaigns"), chromedp.WaitVisible(`[data-testid=campaigns]`))
		href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=report-link]').getAttribute('href')`))
		if err != nil {
			t.Fatal(err)
		}
		key = regexp.MustCompile(`/jobs/(\d+)`).FindStringSubmatch(href)
	}
	if key == nil {
		t.Fatalf("no job report reached after scheduling (at %s)", loc)
	}

	// The report's progress bar reaches 100% without the user reloading (the page reloads
	// itself once the job ends, so the poll may be cut short by that and is tried again).
	do(t, ctx, "open the report", chromedp.Navigate(base+"/jobs/"+key[1]), chromedp.WaitVisible(`[data-testid=progress]`))
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`(document.querySelector('[data-testid=percent]')||{}).textContent?.trim() === '100%'`,
			chromedp.WithPollingTimeout(5*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			st := openStore(t, e)
			k, _ := strconv.ParseInt(key[1], 10, 64)
			counts, cerr := st.JobCounts(context.Background(), k)
			t.Fatalf("progress did not reach 100%% (%v); the job is %s with %+v (%v)", err, jobState(t, st, k).State, counts, cerr)
		}
	}
	do(t, ctx, "see the final report", chromedp.WaitVisible(`[data-testid=progress]`))
	if sent := textOf(t, ctx, `[data-testid=progress] [data-testid=sent]`); sent != "20" {
		t.Errorf("report shows %q sent, want 20", sent)
	}
	screenshot(t, ctx, "job-report")

	// The outbox holds the messages; open one and follow its link.
	do(t, ctx, "open the outbox", chromedp.Navigate(base+"/outbox"), chromedp.WaitVisible(`[data-testid=outbox]`))
	screenshot(t, ctx, "outbox")
	do(t, ctx, "open a message", chromedp.Click(`[data-testid=outbox-message] a`),
		chromedp.Click(`[data-testid=tab-raw]`), chromedp.WaitVisible(`[data-testid=raw]`))
	screenshot(t, ctx, "outbox-message")
	raw, err := chromedp.Run(ctx, chromedp.TextContent(`[data-testid=raw]`))
	if err != nil {
		t.Fatal(err)
	}
	// The link as the raw message has it: quoted-printable soft line breaks joined.
	unfolded := strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "=\n", "")
	ack := regexp.MustCompile(`http://[0-9.:]+/[ai]/[A-Za-z0-9_-]+`).FindString(unfolded)
	if !strings.HasPrefix(ack, base+"/") {
		t.Fatalf("no invitation link to %s in the captured message:\n%s", base, raw)
	}
	do(t, ctx, "follow the link", chromedp.Navigate(ack), chromedp.WaitVisible(`[data-testid=submit]`))
	screenshot(t, ctx, "invitation")
	do(t, ctx, "press Submit", chromedp.Click(`[data-testid=submit]`), chromedp.WaitVisible(`[data-testid=thanks]`))
	if points := textOf(t, ctx, `[data-testid=points]`); points != "5" {
		t.Errorf("the thank-you page shows %q points, want 5", points)
	}
	screenshot(t, ctx, "thanks")

	// The acknowledgement shows in the report.
	do(t, ctx, "reopen the report", chromedp.Navigate(base+"/jobs/"+key[1]), chromedp.WaitVisible(`[data-testid=progress]`))
	if got := textOf(t, ctx, `[data-testid=progress] [data-testid=received]`); got != "1" {
		t.Errorf("report shows %q received, want 1", got)
	}
	screenshot(t, ctx, "job-report-final")

	// The other main pages, for the record.
	for _, page := range []struct{ name, path, ready string }{
		{"dashboard-after", "/", `[data-testid=nav]`},
		{"campaigns", "/campaigns", `[data-testid=campaigns]`},
		{"rules", "/rules", `[data-testid=nav]`},
		{"mail-servers", "/mail-servers", `[data-testid=mail-servers]`},
		{"consumers", "/consumers", `[data-testid=nav]`},
		{"issuers", "/issuers", `[data-testid=issuer-form]`},
		{"settings", "/settings", `[data-testid=settings-form]`},
	} {
		do(t, ctx, "open "+page.path, chromedp.Navigate(base+page.path), chromedp.WaitVisible(page.ready))
		screenshot(t, ctx, page.name)
	}
}

// TestBrowserRouteQuotaMoves: an operator watches the mail servers page while a job sends
// through a route with a rate and an hourly quota; the route's quota used climbs to its
// limit and its sent count with it, without reloading, and the job report says it waits.
func TestBrowserRouteQuotaMoves(t *testing.T) {
	sink := &mailer.Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e := newEnv(t, "")
	runOK(t, e, "route", "add", "metered", "--url", sink.URL(), "--rate", "4", "--quota", "6/1h", "--db", e["POINTPOST_DB"])
	runOK(t, e, "import", "consumers", writeConsumers(t, 10))
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 2*time.Minute)

	link := regexp.MustCompile(`/welcome/\S+`).FindString(runOK(t, e, "user", "add", "--operator", "op@example.com"))
	const password = "correct horse battery"
	do(t, ctx, "set the password", chromedp.Navigate(base+link),
		chromedp.WaitVisible(`input[name=password]`),
		chromedp.SendKeys(`input[name=password]`, password),
		chromedp.SendKeys(`input[name=confirm]`, password),
		chromedp.Click(`[data-testid=password-submit]`),
		chromedp.WaitVisible(`[data-testid=nav]`))
	do(t, ctx, "open the mail servers", chromedp.Navigate(base+"/mail-servers"),
		chromedp.WaitVisible(`[data-testid=route][data-name=metered]`))
	if got := textOf(t, ctx, `[data-testid=route-quota]`); got != "0 of 6 in 1h0m0s" {
		t.Errorf("the quota before sending shows %q", got)
	}
	if got := textOf(t, ctx, `[data-testid=route-rate]`); got != "4.0/s" {
		t.Errorf("the route's rate shows %q, want 4.0/s", got)
	}

	now := time.Now()
	job := strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 10, `{}`))))
	// The quota climbs live; the page reloads itself once when the job appears on a server.
	// A message counts against the quota when it leaves and as sent once the relay took it,
	// so the two are awaited together.
	var err error
	for range 5 { // a reload (the job's new row) ends a poll: poll again
		if _, err = chromedp.Run(ctx, chromedp.Poll[bool](`(document.querySelector('[data-testid=route-quota]')||{}).textContent?.trim() === '6 of 6 in 1h0m0s' &&
			(document.querySelector('[data-testid=route-sent]')||{}).textContent?.trim() === '6'`,
			chromedp.WithPollingTimeout(60*time.Second))); err == nil || !strings.Contains(err.Error(), "-32000") { // the page went or its context did
			break
		}
	}
	if err != nil {
		t.Fatalf("the quota did not reach 6 of 6 with 6 sent (it shows %q, sent %q): %v", textOf(t, ctx, `[data-testid=route-quota]`),
			textOf(t, ctx, `[data-testid=route-sent]`), err)
	}
	screenshot(t, ctx, "routes")
	if sink.Count() != 6 {
		t.Errorf("the relay took %d messages, want the quota's 6", sink.Count())
	}
	do(t, ctx, "open the job report", chromedp.Navigate(base+"/jobs/"+job), chromedp.WaitVisible(`[data-testid=progress]`))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(document.querySelector('[data-testid=waiting]')||{}).textContent?.includes('quota of 6')`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Errorf("the report does not say the job waits for the quota (it says %q): %v", textOf(t, ctx, `[data-testid=waiting]`), err)
	}
}
