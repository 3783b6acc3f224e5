package toolbox_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/toolbox"
)

// reportPerson is a consumer of a report fixture and what happened to her delivery.
type reportPerson struct {
	rewards.Consumer
	outcome string               // "sent", "rejected", "retry" or "" (pending)
	acks    []postoffice.Channel // acknowledgements, after the send
}

// reportJob stores a running job of iss with a reply rule (10 points) and a click rule (5),
// selected by selection (JSON; "" for everyone) among people, delivers it to people (stored first) and
// records each one's outcome and acknowledgements. Sends are a minute apart from 30 minutes
// ago; acknowledgements come 5 minutes after their send.
func reportJob(t *testing.T, e *env, iss rewards.Issuer, name, selection string, people []reportPerson) *postoffice.Job {
	t.Helper()
	ctx := context.Background()
	cs := make([]rewards.Consumer, len(people))
	for i, p := range people {
		cs[i] = p.Consumer
	}
	if _, _, err := e.st.UpsertConsumers(ctx, cs); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	// Consumers are shared by all issuers: the job selects only these people, by their
	// addresses' domain (a field the report does not break down by).
	_, domain, _ := strings.Cut(people[0].Email, "@")
	own := `{"field":"email","op":"contains","value":"@` + domain + `"}`
	if selection == "" {
		selection = own
	} else {
		selection = `{"all":[` + selection + `,` + own + `]}`
	}
	job := &postoffice.Job{IssuerID: iss.ID, Name: name, State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: len(people), Selection: selection}
	sel, err := postoffice.ParseSelection([]byte(selection))
	if err != nil {
		t.Fatal(err)
	}
	crit, err := sel.Check("")
	if err != nil {
		t.Fatal(err)
	}
	if job.SelectionSQL, job.SelectionArgs, err = e.st.CompileSelection(crit); err != nil {
		t.Fatal(err)
	}
	rules := postoffice.JobRules{New: []*rewards.AwardRule{
		{Type: "reply", Points: 10, Frequency: "once", Description: "Reply bonus"},
		{Type: "click", Points: 5, Frequency: "once"}}}
	if err := e.st.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, rules); err != nil {
		t.Fatal(err)
	}
	if n, _, err := e.st.SelectBatch(ctx, job, false, 1000); err != nil || n != len(people) {
		t.Fatalf("selected %d, %v; want %d", n, err, len(people))
	}
	recips, err := e.st.DueRecipients(ctx, job.Key, 0, now.Add(time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	byEmail := map[string]reportPerson{}
	for _, p := range people {
		byEmail[strings.ToLower(p.Email)] = p
	}
	start := now.Add(-30 * time.Minute)
	var outcomes []postoffice.Outcome
	var acks []postoffice.Ack
	for i, r := range recips {
		p := byEmail[r.Consumer.Email]
		at := start.Add(time.Duration(i) * time.Minute)
		switch p.outcome {
		case "sent":
			outcomes = append(outcomes, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent, At: at})
			for _, ch := range p.acks {
				acks = append(acks, postoffice.Ack{JobKey: job.Key, ConsumerID: r.Consumer.ID, Channel: ch, At: at.Add(5 * time.Minute)})
			}
		case "rejected":
			outcomes = append(outcomes, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeRejected, At: at,
				Error: "550 5.1.1 =HYPERLINK(\"x\")"})
		case "retry":
			outcomes = append(outcomes, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeRetry, At: at,
				NextAttempt: now.Add(time.Hour), Error: "421 try later"})
		}
	}
	if err := e.st.RecordOutcomes(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		if _, err := e.st.Acknowledge(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	return job
}

// reportPeople are nine consumers: 5 sent (2 HTML), 2 of those acknowledged (one by reply
// and click, one by click), 1 rejected, 1 retrying, 2 pending.
func reportPeople(domain string) []reportPerson {
	p := func(name, country, format, outcome string, acks ...postoffice.Channel) reportPerson {
		return reportPerson{Consumer: rewards.Consumer{Email: name + "@" + domain, FirstName: name, Country: country,
			Format: rewards.Format(format)}, outcome: outcome, acks: acks}
	}
	return []reportPerson{
		p("ann", "US", "html", "sent", postoffice.ChannelReply, postoffice.ChannelClick),
		p("bob", "US", "text", "sent"),
		p("cy", "FR", "text", "sent", postoffice.ChannelClick),
		p("di", "FR", "html", "sent"),
		p("ed", "DE", "text", "sent"),
		p("fay", "DE", "text", "rejected"),
		p("gus", "US", "text", "retry"),
		p("hal", "US", "text", ""),
		p("ivy", "FR", "text", ""),
	}
}

// reportText is the text of the only element with data-testid id inside n.
func reportText(t *testing.T, n *html.Node, id string) string {
	t.Helper()
	found := byTestID(n, id)
	if len(found) != 1 {
		t.Fatalf("%d elements %q, want 1", len(found), id)
	}
	return text(found[0])
}

// reportRow returns the element with data-testid id and data-key key, or nil.
func reportRow(doc *html.Node, id string, key int64) *html.Node {
	for _, n := range byTestID(doc, id) {
		if attr(n, "data-key") == strconv.FormatInt(key, 10) {
			return n
		}
	}
	return nil
}

func TestDashboardShowsOnlyTheIssuersJobs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acmeIss, betaIss := e.issuer("acme"), e.issuer("beta")
	mine := reportJob(t, e, acmeIss, "Spring", "", reportPeople("acme.example"))
	theirs := reportJob(t, e, betaIss, "Beta secret", "", reportPeople("beta.example"))
	draft := e.job(acmeIss, "Next")
	if err := e.st.SetJobState(ctx, draft.Key, postoffice.JobDraft, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetIssuerBudget(ctx, acmeIss.ID, 1000); err != nil {
		t.Fatal(err)
	}
	acme, _ := e.signIn("ann@acme.example", "acme")
	doc := acme.page("/", http.StatusOK)
	rows := byTestID(doc, "job")
	if len(rows) != 1 || attr(rows[0], "data-key") != strconv.FormatInt(mine.Key, 10) {
		t.Fatalf("acme's dashboard lists %d jobs, want only job %d", len(rows), mine.Key)
	}
	if reportRow(doc, "job", theirs.Key) != nil || strings.Contains(text(doc), "Beta secret") {
		t.Fatal("acme's dashboard shows beta's job")
	}
	row := rows[0]
	for id, want := range map[string]string{"sent": "5", "received": "2", "retrying": "1", "rejected": "1",
		"remaining": "2", "points": "20", "state": "running"} {
		if got := reportText(t, row, id); got != want {
			t.Errorf("row %s = %q, want %q", id, got, want)
		}
	}
	if got := attr(row, "data-progress"); got != fmt.Sprintf("/jobs/%d/progress.json", mine.Key) {
		t.Errorf("row polls %q", got)
	}
	// Points awarded: ann replied (10) and clicked (5), cy clicked (5); beta's the same apart.
	for id, want := range map[string]string{"stat-points": "20", "stat-budget-left": "980", "stat-drafts": "1", "stat-running": "1"} {
		if got := reportText(t, byTestID(doc, id)[0], "value"); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}
	if len(byTestID(doc, "budgets")) != 0 || len(byTestID(doc, "issuer")) != 0 {
		t.Error("an issuer user sees the operators' issuer columns")
	}
	if len(byTestID(doc, "new-campaign")) != 1 {
		t.Error("no New campaign link")
	}

	// The operator sees both, with issuer names, and every issuer's budget.
	op, _ := e.signIn("op@example.com", "")
	doc = op.page("/", http.StatusOK)
	if reportRow(doc, "job", mine.Key) == nil || reportRow(doc, "job", theirs.Key) == nil {
		t.Fatal("the operator's dashboard misses a job")
	}
	if got := reportText(t, reportRow(doc, "job", theirs.Key), "issuer"); got != "Beta" {
		t.Errorf("issuer column %q, want Beta", got)
	}
	if got := reportText(t, byTestID(doc, "stat-points")[0], "value"); got != "40" {
		t.Errorf("operator's points %q, want 40", got)
	}
	if n := len(byTestID(doc, "budget")); n != 2 {
		t.Errorf("%d issuer budgets, want 2", n)
	}

	// A finished job moves to the recent list and stops polling.
	if err := e.st.SetJobState(ctx, mine.Key, postoffice.JobDone, "stopped"); err != nil {
		t.Fatal(err)
	}
	doc = acme.page("/", http.StatusOK)
	done := reportRow(doc, "done-job", mine.Key)
	if done == nil || reportText(t, done, "sent") != "5" || reportText(t, done, "points") != "20" {
		t.Fatal("the finished job is not among the recent ones with its figures")
	}
	if len(byTestID(doc, "job")) != 0 || len(byTestID(doc, "no-live")) != 1 {
		t.Error("with nothing running, the dashboard does not say so")
	}
}

func TestDashboardEmptyStateSaysWhatToDo(t *testing.T) {
	e := newEnv(t)
	reportJob(t, e, e.issuer("beta"), "Theirs", "", reportPeople("beta.example"))
	acme, _ := e.signIn("ann@acme.example", "acme")
	doc := acme.page("/", http.StatusOK)
	empty := byTestID(doc, "empty")
	if len(empty) != 1 || !strings.Contains(text(empty[0]), "No campaigns yet") {
		t.Fatal("no empty state for an issuer without campaigns")
	}
	var links int
	for n := range empty[0].Descendants() {
		if n.Type == html.ElementNode && n.Data == "a" && attr(n, "href") == "/campaigns/new" {
			links++
		}
	}
	if links != 1 {
		t.Error("the empty state does not link to a new campaign")
	}
	if got := reportText(t, byTestID(doc, "stat-budget-left")[0], "value"); got != "No cap" {
		t.Errorf("budget left %q without a budget", got)
	}
}

func TestJobReportMatchesTheStore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	iss := e.issuer("acme")
	job := reportJob(t, e, iss, "Spring", `{"all":[{"field":"country","op":"in","value":["US","FR","DE"]}]}`, reportPeople("acme.example"))
	acme, _ := e.signIn("ann@acme.example", "acme")
	doc := acme.page(fmt.Sprintf("/jobs/%d", job.Key), http.StatusOK)

	if got := reportText(t, doc, "job-name"); got != "Spring" {
		t.Errorf("name %q", got)
	}
	if got := reportText(t, doc, "state"); got != "running" {
		t.Errorf("state %q", got)
	}
	if got := reportText(t, doc, "issuer"); got != "Acme" {
		t.Errorf("issuer %q", got)
	}
	counts, err := e.st.JobCounts(ctx, job.Key)
	if err != nil {
		t.Fatal(err)
	}
	prog := byTestID(doc, "progress")[0]
	for id, want := range map[string]int{"sent": counts.Sent, "received": counts.Received, "retrying": counts.Retrying,
		"rejected": counts.Rejected, "failed": counts.Failed, "remaining": counts.Pending - counts.Retrying,
		"percent": (counts.Total - counts.Pending) * 100 / counts.Total} {
		w := strconv.Itoa(want)
		if id == "percent" {
			w += "%"
		}
		if got := reportText(t, prog, id); got != w {
			t.Errorf("progress %s = %q, want %d", id, got, want)
		}
	}
	if counts.Sent != 5 || counts.Received != 2 {
		t.Fatalf("fixture: %+v", counts)
	}
	for id, want := range map[string]string{"stat-sent": "5", "stat-acknowledged": "2", "stat-replies": "1",
		"stat-clicks": "2", "stat-points": "20"} {
		if got := reportText(t, byTestID(doc, id)[0], "value"); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}

	// Rates by format: HTML ann and di sent, ann acknowledged; text bob, cy, ed sent, cy
	// acknowledged. By country (the selection's field): US ann, bob sent; FR cy, di; DE ed.
	wantRates := map[string]map[string][3]string{
		"rates-format":  {"html": {"2", "1", "50.0%"}, "text": {"3", "1", "33.3%"}},
		"rates-country": {"US": {"2", "1", "50.0%"}, "FR": {"2", "1", "50.0%"}, "DE": {"1", "0", "0.0%"}},
	}
	for table, want := range wantRates {
		tables := byTestID(doc, table)
		if len(tables) != 1 {
			t.Fatalf("%d tables %s", len(tables), table)
		}
		rows := byTestID(tables[0], "rate")
		if len(rows) != len(want) {
			t.Errorf("%s: %d rows, want %d", table, len(rows), len(want))
		}
		for _, r := range rows {
			w, ok := want[attr(r, "data-value")]
			got := [3]string{reportText(t, r, "rate-sent"), reportText(t, r, "rate-received"), reportText(t, r, "rate-pct")}
			if !ok || got != w {
				t.Errorf("%s %q: %v, want %v", table, attr(r, "data-value"), got, w)
			}
		}
	}
	if len(byTestID(doc, "rates-gender")) != 0 {
		t.Error("a selection by country also shows gender, which it does not use")
	}

	// The rules and what each awarded here.
	rules := byTestID(doc, "rule")
	if len(rules) != 2 {
		t.Fatalf("%d rules, want 2", len(rules))
	}
	if got := reportText(t, rules[0], "rule-job-points"); got != "10" || !strings.Contains(text(rules[0]), "Reply bonus") {
		t.Errorf("reply rule: %q awarded (%s)", got, text(rules[0]))
	}
	if got := reportText(t, rules[1], "rule-job-points"); got != "10" {
		t.Errorf("click rule: %q awarded, want 10 (ann 5, cy 5)", got)
	}

	// The chart has a tooltip per bucket, and the sends of all buckets add up.
	charts := byTestID(doc, "timeline")
	if len(charts) != 1 {
		t.Fatalf("%d charts", len(charts))
	}
	buckets := byTestID(charts[0], "bucket")
	sent := 0
	for _, b := range buckets {
		var n, a int
		if _, err := fmt.Sscanf(text(b)[strings.Index(text(b), "UTC: ")+5:], "%d sent, %d acknowledged", &n, &a); err != nil {
			t.Fatalf("tooltip %q: %v", text(b), err)
		}
		sent += n
	}
	if len(buckets) < 2 || sent != 5 {
		t.Errorf("%d buckets with %d sends, want the 5 sends over several buckets", len(buckets), sent)
	}
	if got := attr(byTestID(doc, "report")[0], "data-live-report"); got != fmt.Sprintf("/jobs/%d/live", job.Key) {
		t.Errorf("report polls %q", got)
	}
	if href := attr(byTestID(doc, "export")[0], "href"); href != fmt.Sprintf("/jobs/%d/export.csv", job.Key) {
		t.Errorf("export link %q", href)
	}
	// The job's actions (the campaign pages' buttons) are at hand.
	var actions []string
	for n := range byTestID(doc, "actions")[0].Descendants() {
		if n.Type == html.ElementNode && n.Data == "form" {
			actions = append(actions, attr(n, "action"))
		}
	}
	if !slices.Contains(actions, fmt.Sprintf("/jobs/%d/suspend", job.Key)) {
		t.Errorf("a running job's report offers %v, not suspend", actions)
	}
}

func TestJobReportWithoutSelectionOrSends(t *testing.T) {
	e := newEnv(t)
	iss := e.issuer("acme")
	job := e.job(iss, "Quiet")
	acme, _ := e.signIn("ann@acme.example", "acme")
	doc := acme.page(fmt.Sprintf("/jobs/%d", job.Key), http.StatusOK)
	if len(byTestID(doc, "no-chart")) != 1 || len(byTestID(doc, "timeline")) != 0 {
		t.Error("a job that sent nothing does not say the chart is empty")
	}
	if len(byTestID(doc, "no-rules")) != 1 {
		t.Error("a job without rules does not say so")
	}
	if got := attr(byTestID(doc, "report")[0], "data-live-report"); got == "" {
		t.Error("a scheduled job's report does not poll its progress")
	}
	if err := e.st.SetJobState(context.Background(), job.Key, postoffice.JobDraft, ""); err != nil {
		t.Fatal(err)
	}
	doc = acme.page(fmt.Sprintf("/jobs/%d", job.Key), http.StatusOK)
	if got := attr(byTestID(doc, "report")[0], "data-live-report"); got != "" {
		t.Errorf("a draft's report polls %q, though nothing will move until it is scheduled", got)
	}
	// Everyone selected: the report falls back to country and gender.
	job2 := reportJob(t, e, iss, "All", "", reportPeople("acme.example"))
	doc = acme.page(fmt.Sprintf("/jobs/%d", job2.Key), http.StatusOK)
	if len(byTestID(doc, "rates-country")) != 1 || len(byTestID(doc, "rates-gender")) != 1 {
		t.Error("no rates by country and gender for a job without criteria")
	}
}

func TestJobProgressJSON(t *testing.T) {
	e := newEnv(t)
	job := reportJob(t, e, e.issuer("acme"), "Spring", "", reportPeople("acme.example"))
	acme, _ := e.signIn("ann@acme.example", "acme")
	resp, body := acme.do(http.MethodGet, fmt.Sprintf("/jobs/%d/progress.json", job.Key), nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var p toolbox.Progress
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	want := toolbox.Progress{Key: job.Key, State: "running", Total: 9, Sent: 5, Received: 2, Retrying: 1, Rejected: 1,
		Remaining: 2, Percent: 66}
	got := p
	got.Bar = nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("progress %+v\nwant     %+v", got, want)
	}
	// received 2/9, sent-not-received 3/9, retrying 1/9, rejected 1/9.
	for seg, w := range map[string]float64{"received": 22.22, "sent": 33.33, "retrying": 11.11, "rejected": 11.11} {
		if p.Bar[seg] != w {
			t.Errorf("bar %s = %v, want %v", seg, p.Bar[seg], w)
		}
	}
	// The rest goes out and the job ends within the second its counts are shared for: the
	// finished job's figures are exact all the same (its page will not poll again).
	ctx := context.Background()
	recips, err := e.st.DueRecipients(ctx, job.Key, 0, time.Now().Add(2*time.Hour), 100)
	if err != nil || len(recips) != 3 {
		t.Fatalf("%d pending, %v", len(recips), err)
	}
	var outs []postoffice.Outcome
	for _, r := range recips {
		outs = append(outs, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent, At: time.Now()})
	}
	if err := e.st.RecordOutcomes(ctx, outs); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetJobState(ctx, job.Key, postoffice.JobDone, ""); err != nil {
		t.Fatal(err)
	}
	_, body = acme.do(http.MethodGet, fmt.Sprintf("/jobs/%d/progress.json", job.Key), nil, nil)
	if err := json.Unmarshal([]byte(body), &p); err != nil || !p.Done || p.State != "done" || p.Percent != 100 || p.Sent != 8 {
		t.Errorf("a finished job: %+v, %v; want done with its final counts, so polling stops", p, err)
	}
}

func TestReportsAnswer404ForAnotherIssuersJob(t *testing.T) {
	e := newEnv(t)
	theirs := reportJob(t, e, e.issuer("beta"), "Beta secret", "", reportPeople("beta.example"))
	acme, _ := e.signIn("ann@acme.example", "acme")
	for _, path := range []string{"/jobs/%d", "/jobs/%d/progress.json", "/jobs/%d/live", "/jobs/%d/export.csv"} {
		for _, key := range []string{strconv.FormatInt(theirs.Key, 10), "999", "abc"} {
			p := strings.Replace(path, "%d", key, 1)
			resp, body := acme.do(http.MethodGet, p, nil, nil)
			if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "Beta secret") || strings.Contains(body, "beta.example") {
				t.Errorf("GET %s as acme: %d (%.80q)", p, resp.StatusCode, body)
			}
		}
	}
	// The operator reaches it.
	op, _ := e.signIn("op@example.com", "")
	op.page(fmt.Sprintf("/jobs/%d", theirs.Key), http.StatusOK)
}

func TestExportCSVHasOneSafeRowPerDelivery(t *testing.T) {
	e := newEnv(t)
	people := reportPeople("acme.example")
	people[1].LastName = "Smith, \"Jr\"\nthe Third"
	people[2].FirstName = "=cmd()"
	people[3].LastName = "@SUM(A1)"
	job := reportJob(t, e, e.issuer("acme"), "Spring", "", people)
	acme, _ := e.signIn("ann@acme.example", "acme")
	resp, body := acme.do(http.MethodGet, fmt.Sprintf("/jobs/%d/export.csv", job.Key), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Content-Disposition"), fmt.Sprintf(`attachment; filename="job-%d.csv"`, job.Key); got != want {
		t.Errorf("Content-Disposition %q, want %q", got, want)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := strings.Join(records[0], ",")
	if header != "email,first_name,last_name,format,sent,sent_at,received,received_at,retry_count,rejected,failed,last_error,points" {
		t.Fatalf("header %q", header)
	}
	if len(records) != 1+len(people) {
		t.Fatalf("%d rows, want one per delivery (%d)", len(records)-1, len(people))
	}
	byEmail := map[string][]string{}
	for _, r := range records[1:] {
		byEmail[r[0]] = r
	}
	ann := byEmail["ann@acme.example"]
	if ann[3] != "html" || ann[4] != "1" || ann[6] != "1" || ann[12] != "15" {
		t.Errorf("ann: %q", ann)
	}
	if _, err := time.Parse(time.RFC3339, ann[5]); err != nil {
		t.Errorf("sent_at %q: %v", ann[5], err)
	}
	if got := byEmail["bob@acme.example"][2]; got != "Smith, \"Jr\"\nthe Third" {
		t.Errorf("a name with a comma, quotes and a newline came back as %q", got)
	}
	if got := byEmail["cy@acme.example"][1]; got != "'=cmd()" {
		t.Errorf("formula first name exported as %q, want it neutralised", got)
	}
	if got := byEmail["di@acme.example"][2]; got != "'@SUM(A1)" {
		t.Errorf("formula last name exported as %q", got)
	}
	fay := byEmail["fay@acme.example"]
	if fay[9] != "1" || fay[4] != "0" || !strings.HasPrefix(fay[11], "550") {
		t.Errorf("rejected delivery: %q", fay)
	}
	if hal := byEmail["hal@acme.example"]; hal[4] != "0" || hal[5] != "" || hal[12] != "0" {
		t.Errorf("pending delivery: %q", hal)
	}
}

// TestProgressMovesWithoutReload opens a job's report in headless Chromium, records more
// sends in the store, and waits for report.js to show them; then finishes the job and
// waits for the page to say so (and stop polling).
func TestProgressMovesWithoutReload(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium to run report.js in")
	}
	e := newEnv(t)
	ctx := context.Background()
	job := reportJob(t, e, e.issuer("acme"), "Spring", "", reportPeople("acme.example"))
	_, u := e.signIn("ann@acme.example", "acme")
	secret := fmt.Sprintf("test-session-%d-%s", u.ID, u.Email) // as signIn makes it
	actx, cancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox)...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	base, _ := url.Parse(e.srv.URL)
	if err := chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: toolbox.SessionCookie, Value: secret,
			Domain: base.Hostname(), Path: "/"})
		return err
	}), chromedp.Navigate(fmt.Sprintf("%s/jobs/%d", e.srv.URL, job.Key))); err != nil {
		t.Fatal(err)
	}
	// waitFor polls the page until js evaluates to true, for at most 15 seconds.
	waitFor := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			// An error is the page reloading itself: it is asked again.
			if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js)); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page never showed %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Every figure of the report comes from one reading: the progress, the cards and the
	// recipients move together.
	sentJS := `document.querySelector('[data-testid=progress] [data-testid=sent]').textContent`
	cardJS := `document.querySelector('[data-testid=stat-sent] [data-testid=value]').textContent`
	waitFor("5 sent", sentJS+` === "5" && `+cardJS+` === "5"`)

	recips, err := e.st.DueRecipients(ctx, job.Key, 0, time.Now().Add(2*time.Hour), 100)
	if err != nil || len(recips) != 3 {
		t.Fatalf("%d pending, %v", len(recips), err)
	}
	var outs []postoffice.Outcome
	for _, r := range recips {
		outs = append(outs, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent, At: time.Now()})
	}
	if err := e.st.RecordOutcomes(ctx, outs); err != nil {
		t.Fatal(err)
	}
	waitFor("8 sent after the new sends, in the progress and on the card", sentJS+` === "8" && `+cardJS+` === "8"`)
	waitFor("nothing remaining", `document.querySelector('[data-testid=progress] [data-testid=remaining]').textContent === "0"`)
	waitFor("a wider sent segment", `parseFloat(document.querySelector('[data-testid=progress] [data-seg=sent]').style.width) > 60`)

	if err := e.st.SetJobState(ctx, job.Key, postoffice.JobDone, ""); err != nil {
		t.Fatal(err)
	}
	// Once the job is done the report shows it, without the actions of a running job, and
	// stops polling.
	waitFor("the final report of the done job", `!document.querySelector('[data-testid=report]').getAttribute('data-live-report') && `+
		`document.querySelector('[data-testid=report] [data-testid=state]').textContent === "done" && `+
		`!document.querySelector('[data-testid=action-suspend]')`)
}

// slowExportStore is a store whose job export pauses before every thousandth delivery: a
// busy database under a long export.
type slowExportStore struct {
	*store.Store
	pause time.Duration
}

func (s slowExportStore) ExportDeliveries(ctx context.Context, jobKey int64, fn func(d *postoffice.Delivery, c *rewards.Consumer, points int64) error) error {
	n := 0
	return s.Store.ExportDeliveries(ctx, jobKey, func(d *postoffice.Delivery, c *rewards.Consumer, points int64) error {
		if n++; n%1000 == 0 {
			time.Sleep(s.pause)
		}
		return fn(d, c, points)
	})
}

// TestExportCSVOutlastsWriteTimeout downloads a job's export that takes longer than the
// server's WriteTimeout: it arrives whole, because every batch moves the deadline on.
func TestExportCSVOutlastsWriteTimeout(t *testing.T) {
	e := newEnv(t, func(d *toolbox.Deps) { d.Store = slowExportStore{d.Store.(*store.Store), 100 * time.Millisecond} })
	e.serveWithTimeouts(150*time.Millisecond, 150*time.Millisecond)
	ctx := context.Background()
	const n = 3000 // three pauses: 300 ms in all
	batch := make([]rewards.Consumer, n)
	for i := range batch {
		batch[i] = rewards.Consumer{Email: fmt.Sprintf("c%04d@slow.example", i), FirstName: "Pat"}
	}
	if _, _, err := e.st.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	iss := e.issuer("acme")
	now := time.Now()
	job := &postoffice.Job{IssuerID: iss.ID, Name: "big", State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: n}
	if err := e.st.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := e.st.SelectBatch(ctx, job, false, 2*n); err != nil || got != n {
		t.Fatalf("selected %d, %v; want %d", got, err, n)
	}
	acme, _ := e.signIn("ann@acme.example", "acme")
	start := time.Now()
	resp, body := acme.do(http.MethodGet, fmt.Sprintf("/jobs/%d/export.csv", job.Key), nil, nil) // fails the test on a cut body
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("the export took %v, within the write timeout: the test proves nothing", took)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 1+n {
		t.Fatalf("%d records (%v), want a header and %d deliveries", len(recs), err, n)
	}
}

// TestJobReportLiveIsTheWholeReport: what report.js fetches is every part of the report,
// from one reading (the cards, the recipients, the mail server and why, the progress), and
// once the job is done it names no URL, so polling stops.
func TestJobReportLiveIsTheWholeReport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	job := reportJob(t, e, e.issuer("acme"), "Spring", "", reportPeople("acme.example"))
	const why = "idle; of 3 idle servers, the one given a job least recently"
	if err := e.st.RegisterMailServers(ctx, 3, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.st.RecordAssignment(ctx, job.Key, postoffice.Assignment{MailServerID: 2, Reason: why}); err != nil {
		t.Fatal(err)
	}
	acme, _ := e.signIn("ann@acme.example", "acme")
	live := acme.page(fmt.Sprintf("/jobs/%d/live", job.Key), http.StatusOK)
	roots := byTestID(live, "report-live")
	if len(roots) != 1 || attr(roots[0], "data-live-report") != fmt.Sprintf("/jobs/%d/live", job.Key) {
		t.Fatalf("the live report's root: %d, polling %q", len(roots), attr(roots[0], "data-live-report"))
	}
	if every, err := strconv.Atoi(attr(roots[0], "data-every")); err != nil || every < 2000 || every > 30000 {
		t.Errorf("polls every %q ms", attr(roots[0], "data-every"))
	}
	var parts []string
	for n := range roots[0].Descendants() {
		if p := attr(n, "data-part"); p != "" {
			parts = append(parts, p)
		}
	}
	if got := strings.Join(parts, ","); got != "head,facts,actions,progress,cards,chart,rates,rules" {
		t.Errorf("live parts %s", got)
	}
	for id, want := range map[string]string{
		"recipients":    "9 selected of at most 9",
		"assign-reason": "why: " + why,
	} {
		if got := text(byTestID(live, id)[0]); got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
	if got := text(byTestID(byTestID(live, "stat-sent")[0], "value")[0]); got != "5" {
		t.Errorf("sent card %q, want 5", got)
	}
	if got := text(byTestID(byTestID(live, "progress")[0], "sent")[0]); got != "5" {
		t.Errorf("progress sent %q, want 5", got)
	}
	if got := text(byTestID(byTestID(live, "stat-acknowledged")[0], "hint")[0]); got != "40.0% of 5 sent" {
		t.Errorf("acknowledged hint %q", got)
	}
	if got := text(byTestID(live, "mail-server")[0]); !strings.HasPrefix(got, "mail-2") {
		t.Errorf("mail server %q", got)
	}
	// The page itself holds the same parts.
	page := acme.page(fmt.Sprintf("/jobs/%d", job.Key), http.StatusOK)
	if got := text(byTestID(page, "assign-reason")[0]); got != "why: "+why {
		t.Errorf("the page's mail server reason %q", got)
	}
	if err := e.st.SetJobState(ctx, job.Key, postoffice.JobDone, "complete"); err != nil {
		t.Fatal(err)
	}
	live = acme.page(fmt.Sprintf("/jobs/%d/live", job.Key), http.StatusOK)
	if got := attr(byTestID(live, "report-live")[0], "data-live-report"); got != "" {
		t.Errorf("a done job's live report still polls %q", got)
	}
	if got := text(byTestID(live, "state")[0]); got != "done" {
		t.Errorf("a done job's state reads %q", got)
	}
}
