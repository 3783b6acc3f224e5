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
)

// TestBrowserReportMovesTogether opens a job's report while the job waits to start and
// watches it send without reloading: the cards, the recipients, the mail server it went to
// and why, the progress and the chart all move together (the cards used to say SENT 0 and
// "mail server: automatic" beside a moving bar). The mail servers page marks beforehand the
// server the post office then gives the job to (idle servers take turns: it marked mail-1
// again), and says why it went there.
func TestBrowserReportMovesTogether(t *testing.T) {
	e, base, ctx := slowRouteOperator(t, 3, 3*time.Minute)
	st := openStore(t, e)

	// A first job, of one message, goes to mail-1 and ends: the three servers are idle again,
	// and the next job's turn is mail-2's (by the statuses alone it was mail-1's again).
	first := runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(time.Now().Add(-time.Minute), time.Now().Add(time.Hour), 1, `{}`)))
	firstKey, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first job done", 30*time.Second, func() bool { return jobState(t, st, firstKey).State == "done" })

	// The job waits, suspended, for a start a few seconds off: the report is opened before
	// anything is selected or assigned.
	start := time.Now().Add(6 * time.Second).Truncate(time.Second)
	out := runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(start, start.Add(time.Hour), 30, `{}`)))
	key, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetJobSuspended(context.Background(), key, true); err != nil {
		t.Fatal(err)
	}

	do(t, ctx, "open the mail servers", chromedp.Navigate(base+"/mail-servers"), chromedp.WaitVisible(`[data-testid=mail-servers]`))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('[data-testid=mail-server]').length === 3`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the three mail servers are not listed: %v", err)
	}
	// The mail servers have reported since the first job ended.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`[...document.querySelectorAll('[data-testid=mail-server] [data-testid=state]')].every(s => s.textContent.trim() === 'idle')`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the mail servers are not all idle: %v", err)
	}
	next, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('[data-testid=mail-server]')].filter(r => r.querySelector('[data-testid=next]').textContent.trim() !== '').map(r => r.dataset.id).join(',')`))
	if err != nil || next != "2" {
		t.Fatalf("servers marked for the next job: %q (%v), want mail-2, whose turn it is after mail-1's", next, err)
	}
	nextWhy := textOf(t, ctx, `[data-testid=mail-server][data-id="`+next+`"] [data-testid=next-why]`)
	if nextWhy == "" {
		t.Errorf("mail-%s is marked for the next job without saying why", next)
	}
	screenshot(t, ctx, "mail-servers-before")

	report := fmt.Sprintf("%s/jobs/%d", base, key)
	do(t, ctx, "open the report", chromedp.Navigate(report), chromedp.WaitVisible(`[data-testid=progress]`))
	if got := textOf(t, ctx, `[data-testid=recipients]`); got != "0 selected of at most 30" {
		t.Errorf("before it starts the report says %q", got)
	}
	if got := textOf(t, ctx, `[data-testid=mail-server]`); !strings.HasPrefix(got, "automatic") {
		t.Errorf("before it starts the report names mail server %q", got)
	}
	screenshot(t, ctx, "report-waiting")
	// A page that reloads loses this mark.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.sameLoad = true`)); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "the start date", 10*time.Second, func() bool { return !time.Now().Before(start) })
	if err := st.SetJobSuspended(context.Background(), key, false); err != nil {
		t.Fatal(err)
	}
	// Mid-send, one reading: the state, the cards, the recipients, the mail server and the
	// progress agree with each other.
	const together = `(() => {
		const q = s => (document.querySelector(s) || {}).textContent?.trim() || '';
		const n = s => Number(q(s).replace(/\D/g, ''));
		return window.sameLoad === true && q('[data-testid=report] [data-testid=state]') === 'running' &&
			n('[data-testid=stat-sent] [data-testid=value]') >= 2 && n('[data-testid=stat-sent] [data-testid=value]') < 30 &&
			n('[data-testid=stat-sent] [data-testid=value]') === n('[data-testid=progress] [data-testid=sent]') &&
			q('[data-testid=recipients]') === '30 selected of at most 30' &&
			/^mail-\d/.test(q('[data-testid=mail-server]')) && q('[data-testid=assign-reason]') !== '' &&
			!!document.querySelector('[data-testid=timeline]');
	})()`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](together, chromedp.WithPollingTimeout(40*time.Second),
		chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		screenshot(t, ctx, "report-not-together")
		same, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.sameLoad === true`))
		t.Fatalf("the report never showed the job sending with every figure agreeing (sent card %q, progress %q, recipients %q, server %q, same page: %v): %v",
			textOf(t, ctx, `[data-testid=stat-sent] [data-testid=value]`), textOf(t, ctx, `[data-testid=progress] [data-testid=sent]`),
			textOf(t, ctx, `[data-testid=recipients]`), textOf(t, ctx, `[data-testid=mail-server]`), same, err)
	}
	screenshot(t, ctx, "report-sending")

	job := jobState(t, st, key)
	if strconv.Itoa(job.MailServerID) != next {
		t.Errorf("the job went to mail-%d (%q); the mail servers page marked mail-%s (%q)", job.MailServerID, job.AssignReason, next, nextWhy)
	}
	if got := textOf(t, ctx, `[data-testid=assign-reason]`); got != "why: "+job.AssignReason {
		t.Errorf("the report says %q, the job was assigned because %q", got, job.AssignReason)
	}
	do(t, ctx, "reopen the mail servers", chromedp.Navigate(base+"/mail-servers"),
		chromedp.WaitVisible(fmt.Sprintf(`[data-testid=mail-server][data-id="%d"] [data-testid=server-job][data-key="%d"]`, job.MailServerID, key)))
	if got := textOf(t, ctx, fmt.Sprintf(`[data-testid=server-job][data-key="%d"] [data-testid=assign-reason]`, key)); got != "why here: "+job.AssignReason {
		t.Errorf("the mail servers page says %q of the job, want why it went there (%q)", got, job.AssignReason)
	}
	screenshot(t, ctx, "mail-servers-sending")
}

// TestBrowserReportRatesAndChart: a job of 2,500 that sends within seconds and gets one
// acknowledgement. Its report gives the rate with the precision it needs (it read 0.0%),
// draws the acknowledgement on a scale of its own (on the sends' it lay flat on the floor),
// and steps its chart by seconds over many points (it was a single dot).
func TestBrowserReportRatesAndChart(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 2500))
	srv := startServe(t, e)
	base := "http://" + srv.addr
	ctx := browser(t, 3*time.Minute)
	signInOperator(t, ctx, e, base)
	st := openStore(t, e)

	now := time.Now()
	out := runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 2500, `{}`)))
	key, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all 2,500 sent", 90*time.Second, func() bool {
		c, err := st.JobCounts(context.Background(), key)
		return err == nil && c.Total == 2500 && c.Sent == 2500
	})
	// One consumer presses Submit on her invitation's page.
	newest, _, err := st.Outbox(context.Background(), 1)
	if err != nil || len(newest) != 1 {
		t.Fatalf("the outbox: %d messages, %v", len(newest), err)
	}
	msg, err := st.OutboxMessageByID(context.Background(), newest[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	unfolded := strings.ReplaceAll(strings.ReplaceAll(string(msg.Data), "\r\n", "\n"), "=\n", "")
	ack := regexp.MustCompile(`http://[0-9.:]+/[ai]/[A-Za-z0-9_-]+`).FindString(unfolded)
	if ack == "" {
		t.Fatalf("no acknowledgement link in the message to %s:\n%s", msg.To, msg.Data)
	}
	do(t, ctx, "press Submit", chromedp.Navigate(ack), chromedp.WaitVisible(`[data-testid=submit]`),
		chromedp.Click(`[data-testid=submit]`), chromedp.WaitVisible(`[data-testid=thanks]`))

	do(t, ctx, "open the report", chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", base, key)), chromedp.WaitVisible(`[data-testid=timeline]`))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(document.querySelector('[data-testid=stat-acknowledged] [data-testid=value]')||{}).textContent?.trim() === '1'`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the report never showed the acknowledgement: %v", err)
	}
	screenshot(t, ctx, "report-rates-chart")
	if got := textOf(t, ctx, `[data-testid=stat-acknowledged] [data-testid=hint]`); got != "0.04% of 2,500 sent" {
		t.Errorf("1 acknowledgement of 2,500 reads %q, want 0.04%% of 2,500 sent", got)
	}
	rates, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-testid=rate]')].filter(r => r.querySelector('[data-testid=rate-received]').textContent.trim() !== '0').map(r => r.querySelector('[data-testid=rate-pct]').textContent.trim())`))
	if err != nil || len(rates) == 0 {
		t.Fatalf("no rate rows with the acknowledgement: %v", err)
	}
	for _, r := range rates {
		if strings.Trim(r, "0.%") == "" {
			t.Errorf("a row with an acknowledgement reads %q", r)
		}
	}
	if got := textOf(t, ctx, `[data-testid=chart-step]`); !strings.Contains(got, "second") {
		t.Errorf("a job sent within seconds is charted %q, want per second(s)", got)
	}
	// The acknowledgement rises the whole height of its own panel.
	rise, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => {
		const ys = document.querySelector('polyline[data-series=acks]').getAttribute('points').trim().split(/\s+/).map(p => Number(p.split(',')[1]));
		return Math.max(...ys) - Math.min(...ys);
	})()`))
	if err != nil || rise < 40 {
		t.Errorf("the acknowledgement rises %v units above the floor of its line (%v), want it plainly visible", rise, err)
	}
	buckets, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=timeline] [data-testid=bucket]').length`))
	if err != nil || buckets < 10 {
		t.Errorf("the chart has %d points (%v), want at least 10", buckets, err)
	}
	legend, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid=legend-acks]').textContent`))
	if err != nil || !strings.HasPrefix(legend, "Acknowledged: 1 ") {
		t.Errorf("the acknowledgements' legend reads %q (%v)", legend, err)
	}
}
