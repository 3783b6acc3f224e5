package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"pointpost/postoffice"
	"pointpost/store"
)

// outboxTo returns the newest captured message to the address that contains text.
func outboxTo(t *testing.T, st *store.Store, to, text string) *postoffice.OutboxMessage {
	t.Helper()
	var found *postoffice.OutboxMessage
	waitFor(t, "a message to "+to+" with "+text, 30*time.Second, func() bool {
		msgs, _, err := st.Outbox(context.Background(), 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.To != to {
				continue
			}
			full, err := st.OutboxMessageByID(context.Background(), m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(full.Data), text) {
				found = full
				return true
			}
		}
		return false
	})
	return found
}

// signInOperator makes the first operator and signs her in through its link.
func signInOperator(t *testing.T, ctx context.Context, e env, base string) {
	t.Helper()
	link := regexp.MustCompile(`/welcome/\S+`).FindString(runOK(t, e, "user", "add", "--operator", "op@example.com"))
	const password = "correct horse battery"
	do(t, ctx, "set the password", chromedp.Navigate(base+link),
		chromedp.WaitVisible(`input[name=password]`),
		chromedp.SendKeys(`input[name=password]`, password),
		chromedp.SendKeys(`input[name=confirm]`, password),
		chromedp.Click(`[data-testid=password-submit]`),
		chromedp.WaitVisible(`[data-testid=nav]`))
}

// checkFavicon fails unless the site answers /favicon.ico with an image.
func checkFavicon(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(base+"/favicon.ico"))
	if err != nil {
		t.Fatalf("open /favicon.ico: %v", err)
	}
	if resp.Status != 200 || !strings.HasPrefix(resp.MimeType, "image/") {
		t.Errorf("/favicon.ico answers %d %s, want an image", resp.Status, resp.MimeType)
	}
}

// TestBrowserConsumerAccount follows one consumer as she would: her invitation's footer
// says she is a member of the program and whose offer it is; Submit earns an award that her
// history shows as one line, pending and then posted; Redeem asks her to confirm, then
// shows her voucher, which her account page keeps. The site has an icon.
func TestBrowserConsumerAccount(t *testing.T) {
	e := newEnv(t, "")
	e["POINTPOST_SETTLE_INTERVAL"] = "1h" // the award stays pending until `settle`
	runOK(t, e, "import", "consumers", writeConsumers(t, 4))
	runOK(t, e, "catalog", "add", "Mug", "4", "3", "A fine mug")
	now := time.Now()
	campaign := strings.Replace(campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 4, `{}`), `"issuer": "acme",`,
		`"issuer": "acme", "issuer_name": "Acme Outdoor", "rules": [{"description": "visit", "type": "click", "points": 10, "frequency": "once"}],`, 1)
	runOK(t, e, "campaign", "create", writeCampaign(t, campaign))
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 3*time.Minute)
	st := openStore(t, e)

	// The footer, as the toolbox's outbox shows the HTML message.
	msg := outboxTo(t, st, "c0@example.com", "text/html") // c0 reads HTML
	signInOperator(t, ctx, e, base)
	do(t, ctx, "open the message", chromedp.Navigate(fmt.Sprintf("%s/outbox/%d", base, msg.ID)),
		chromedp.WaitVisible(`[data-testid=html-body]`))
	screenshot(t, ctx, "consumer-message-footer")
	frame, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=html-body]').getAttribute('srcdoc')`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(frame, "You receive this because you are a member of the Pointpost rewards program. This offer is from Acme Outdoor.") ||
		strings.Contains(frame, "you joined") {
		t.Errorf("the message's footer does not say she is a member of the program and the offer is Acme's:\n%s", frame)
	}
	checkFavicon(t, ctx, base)

	// Her invitation link, from the raw message.
	unfolded := strings.ReplaceAll(strings.ReplaceAll(string(msg.Data), "\r\n", "\n"), "=\n", "")
	ack := regexp.MustCompile(`http://[0-9.:]+/[ai]/([A-Za-z0-9_-]+)`).FindStringSubmatch(unfolded)
	if ack == nil {
		t.Fatalf("no invitation link in the message:\n%s", msg.Data)
	}
	do(t, ctx, "follow the link", chromedp.Navigate(ack[0]), chromedp.WaitVisible(`[data-testid=submit]`))
	do(t, ctx, "press Submit", chromedp.Click(`[data-testid=submit]`), chromedp.WaitVisible(`[data-testid=thanks]`))
	account := base + "/account/" + ack[1]
	do(t, ctx, "open her account", chromedp.Navigate(account), chromedp.WaitVisible(`[data-testid=history]`))
	screenshot(t, ctx, "consumer-account-pending")
	states, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-testid=event]')].map(e => e.dataset.state + ' ' + e.querySelector('[data-testid=event-points]').textContent.trim())`))
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0] != "pending +10" {
		t.Errorf("her history after one award: %q; want one line, pending +10", states)
	}
	runOK(t, e, "settle")
	do(t, ctx, "reload her account", chromedp.Navigate(account), chromedp.WaitVisible(`[data-testid=history]`))
	screenshot(t, ctx, "consumer-account-posted")
	states, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-testid=event]')].map(e => e.dataset.state + ' ' + e.querySelector('[data-testid=event-points]').textContent.trim())`))
	if err != nil {
		t.Fatal(err)
	}
	if balance := textOf(t, ctx, `[data-testid=balance]`); len(states) != 1 || states[0] != "posted +10" || balance != "10" {
		t.Errorf("after settlement: history %q beside a balance of %s; want one line, posted +10, and 10", states, balance)
	}

	// Redeem: confirm with the mailed code, then the voucher, kept on her page.
	do(t, ctx, "press Redeem", chromedp.Click(`[data-testid=redeem]`), chromedp.WaitVisible(`[data-testid=code-form]`))
	screenshot(t, ctx, "consumer-redeem-confirm")
	if after := textOf(t, ctx, `[data-testid=balance-after]`); after != "6" {
		t.Errorf("the confirmation says %q points will be left, want 6", after)
	}
	codeMail := outboxTo(t, st, "c0@example.com", "redeem")
	code := regexp.MustCompile(`\b\d{4} \d{4}\b`).FindString(string(codeMail.Data))
	if code == "" {
		t.Fatalf("no code in the mail:\n%s", codeMail.Data)
	}
	do(t, ctx, "type the code", chromedp.SendKeys(`input[name=code]`, code), chromedp.Click(`[data-testid=confirm-redeem]`),
		chromedp.WaitVisible(`[data-testid=redeemed-voucher]`))
	screenshot(t, ctx, "consumer-redeemed")
	voucher := textOf(t, ctx, `[data-testid=redeemed-voucher]`)
	if !regexp.MustCompile(`^PP-\w{4}-\w{4}$`).MatchString(voucher) {
		t.Errorf("voucher %q", voucher)
	}
	do(t, ctx, "come back later", chromedp.Navigate(account), chromedp.WaitVisible(`[data-testid=my-rewards]`))
	screenshot(t, ctx, "consumer-account-rewards")
	if kept := textOf(t, ctx, `[data-testid=reward-voucher]`); kept != voucher {
		t.Errorf("her account keeps voucher %q, want %q", kept, voucher)
	}
	checkFavicon(t, ctx, base)
}

// TestBrowserIdleServersTakeTurns: three jobs scheduled in a row while four mail servers are
// idle show on the mail servers page on three servers, not all on mail-1, and `job show`
// says why each went where it did.
func TestBrowserIdleServersTakeTurns(t *testing.T) {
	e, base, ctx := slowRouteOperator(t, 4, 2*time.Minute)
	st := openStore(t, e)

	now := time.Now()
	var keys []int64
	for range 3 {
		out := runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 30, `{}`)))
		key, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	waitFor(t, "the three jobs assigned", 30*time.Second, func() bool {
		for _, k := range keys {
			if jobState(t, st, k).MailServerID == 0 {
				return false
			}
		}
		return true
	})
	do(t, ctx, "open the mail servers", chromedp.Navigate(base+"/mail-servers"), chromedp.WaitVisible(`[data-testid=mail-servers]`))
	var servers map[string]string
	waitForPage := time.Now().Add(30 * time.Second)
	for {
		var err error
		servers, err = chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll('[data-testid=mail-server]')].map(r => [r.dataset.id, [...r.querySelectorAll('[data-testid=job]')].map(a => a.textContent.trim().split(' ')[0]).join(',')]))`))
		busy := 0
		for _, jobs := range servers {
			if jobs != "" {
				busy++
			}
		}
		if err == nil && busy >= 3 || time.Now().After(waitForPage) {
			break
		}
		do(t, ctx, "reload the mail servers", chromedp.Reload(), chromedp.WaitVisible(`[data-testid=mail-servers]`))
	}
	screenshot(t, ctx, "mail-servers-turns")
	used := map[int]bool{}
	for _, k := range keys {
		j := jobState(t, st, k)
		used[j.MailServerID] = true
		if !strings.Contains(runOK(t, e, "job", "show", strconv.FormatInt(k, 10)), `"AssignReason": "`+j.AssignReason+`"`) || j.AssignReason == "" {
			t.Errorf("job show %d does not say why it went to mail-%d (%q)", k, j.MailServerID, j.AssignReason)
		}
	}
	if len(used) != 3 {
		t.Errorf("three jobs went to mail servers %v while four were idle (the page shows %v); want three", used, servers)
	}
	checkFavicon(t, ctx, base)
}

// TestBrowserDemoCanBeWatched: `serve --demo` sends its job by a route of its own at a
// modest rate into the outbox, so a newcomer who signs in finds it still sending, its
// progress moving; it used to be done before she had signed in.
func TestBrowserDemoCanBeWatched(t *testing.T) {
	e := newEnv(t, "")
	e["POINTPOST_DEMO"] = "true"
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 2*time.Minute)
	st := openStore(t, e)
	jobs, err := st.Jobs(context.Background())
	if err != nil || len(jobs) != 1 {
		t.Fatalf("demo jobs: %d, %v", len(jobs), err)
	}
	job := jobs[0]
	route, err := st.Route(context.Background(), job.Route)
	if err != nil || route.URL != postoffice.OutboxURL || route.Rate <= 0 || route.Rate > 100 {
		t.Fatalf("the demo job goes by route %q (%+v, %v), want its own into the outbox at a modest rate", job.Route, route, err)
	}
	signInOperator(t, ctx, e, base)
	do(t, ctx, "open the demo job's report", chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", base, job.Key)),
		chromedp.WaitVisible(`[data-testid=progress]`))
	// Sending has begun and, minutes from its end, goes on while she watches.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const s = document.querySelector('[data-testid=progress] [data-testid=sent]'); return s && Number(s.textContent.replace(/\D/g, '')) > 0 })()`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the report shows nothing sent: %v", err)
	}
	screenshot(t, ctx, "demo-job-report")
	if pct := textOf(t, ctx, `[data-testid=percent]`); pct == "100%" {
		t.Errorf("the demo job is done (%s) by the time she has signed in", pct)
	}
	counts, err := st.JobCounts(context.Background(), job.Key)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Sent >= counts.Total {
		t.Errorf("the demo job sent %d of %d already", counts.Sent, counts.Total)
	}
	do(t, ctx, "open the mail servers", chromedp.Navigate(base+"/mail-servers"), chromedp.WaitVisible(`[data-testid=route][data-name=demo]`))
	screenshot(t, ctx, "demo-mail-servers")
	if got := textOf(t, ctx, `[data-testid=route][data-name=demo] [data-testid=route-rate]`); got != "50/s" {
		t.Errorf("the demo route's rate shows %q, want 50/s", got)
	}
}
