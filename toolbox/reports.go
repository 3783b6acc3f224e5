package toolbox

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// reportStore is what the dashboard and job reports read.
type reportStore interface {
	Issuers(ctx context.Context) ([]rewards.Issuer, error)
	// IssuerBudget returns an issuer's budget (0: no cap) and the points it has awarded.
	IssuerBudget(ctx context.Context, issuerID int64) (budget, spent int64, err error)
	JobPoints(ctx context.Context, keys []int64) (map[int64]int64, error)
	// JobReceipts counts each job's sent and received deliveries (Sent, Received) cheaply.
	JobReceipts(ctx context.Context, keys []int64) (map[int64]postoffice.JobCounts, error)
	JobRulePoints(ctx context.Context, jobKey int64) (map[int64]int64, error)
	// JobSettlement returns how many of a job's points settlement has posted, and to how
	// many consumers the job awarded points.
	JobSettlement(ctx context.Context, jobKey int64) (settled int64, earners int, err error)
	JobRules(ctx context.Context, jobKey int64) ([]rewards.AwardRule, error)
	RuleSpent(ctx context.Context, ruleID int64) (int64, error)
	JobChannels(ctx context.Context, jobKey int64) (map[postoffice.Channel]int, error)
	JobSpan(ctx context.Context, jobKey int64) (first, last time.Time, err error)
	JobTimeline(ctx context.Context, jobKey int64, from time.Time, bucket time.Duration, n int) (sends, acks []int, err error)
	JobCountsBy(ctx context.Context, jobKey int64, field string, limit int) (map[string]postoffice.JobCounts, error)
	ExportDeliveries(ctx context.Context, jobKey int64, fn func(d *postoffice.Delivery, c *rewards.Consumer, points int64) error) error
}

// reportPages are the dashboard, the job reports and their exports.
type reportPages struct {
	jobPages
	reports reportStore
	po      *postoffice.PostOffice
}

func (d reportPages) dashboardRoutes(r chi.Router) {
	r.Get("/", d.dashboard)
}

func (d reportPages) reportRoutes(r chi.Router) {
	r.Get("/jobs/{key}", d.jobReport)
	r.Get("/jobs/{key}/progress.json", d.jobProgress)
	r.Get("/jobs/{key}/live", d.jobReportLive)
	r.Get("/jobs/{key}/export.csv", d.exportJob)
}

// JobRow is a job with its delivery counts and the points it has awarded.
type JobRow struct {
	Job      *postoffice.Job
	Counts   postoffice.JobCounts
	Points   int64
	Progress Progress
}

// Percent is the share of the job's deliveries that have been dealt with.
func (r JobRow) Percent() int { return r.Progress.Percent }

// Progress is how far a job has come, as progress.json sends it and the bars show it.
type Progress struct {
	Key       int64  `json:"key"`
	State     string `json:"state"`
	Suspended bool   `json:"suspended"`
	// Done is set once the job will send no more: polling stops.
	Done      bool `json:"done"`
	Total     int  `json:"total"`
	Sent      int  `json:"sent"`
	Received  int  `json:"received"`
	Retrying  int  `json:"retrying"`
	Rejected  int  `json:"rejected"`
	Failed    int  `json:"failed"`
	Remaining int  `json:"remaining"` // to send, not yet tried
	// Percent is the share of the deliveries dealt with: sent, rejected or given up.
	Percent int `json:"percent"`
	// Waiting says why a running job waits and until when (no route has room), as its mail
	// server reported; empty while it sends.
	Waiting string `json:"waiting"`
	// Bar is the width in percent of each segment of the progress bar: received, sent (and
	// not received), retrying, rejected (with failed).
	Bar map[string]float64 `json:"bar"`
}

// progressOf summarises a job's counts. The bar's segments never add up to more than the
// whole, even when a delivery is both sent and later rejected by a bounce.
func progressOf(job *postoffice.Job, c postoffice.JobCounts) Progress {
	p := Progress{Key: job.Key, State: string(job.State), Suspended: job.Suspended, Done: job.State == postoffice.JobDone,
		Total: c.Total, Sent: c.Sent, Received: c.Received, Retrying: c.Retrying, Rejected: c.Rejected,
		Failed: c.Failed, Remaining: max(c.Pending-c.Retrying, 0)}
	p.Bar = map[string]float64{"received": 0, "sent": 0, "retrying": 0, "rejected": 0}
	if c.Total == 0 {
		return p
	}
	p.Percent = (c.Total - c.Pending) * 100 / c.Total
	left := 100.0
	for _, seg := range []struct {
		name string
		n    int
	}{{"received", c.Received}, {"sent", c.Sent - c.Received}, {"retrying", c.Retrying}, {"rejected", c.Rejected + c.Failed}} {
		w := min(float64(max(seg.n, 0))*100/float64(c.Total), left)
		w = float64(int(w*100)) / 100 // two decimals are plenty for a bar
		p.Bar[seg.name] = w
		left -= w
	}
	return p
}

// dashboard is the home page: the running and scheduled jobs the user may see with live
// progress, the points awarded, the budget left, and the jobs finished last.
func (d reportPages) dashboard(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u := userFrom(ctx)
	jobs, err := d.jobs.Jobs(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v := dashboardView{Operator: u.Operator()}
	var keys []int64
	for _, j := range jobs {
		if !u.MaySee(j.IssuerID) {
			continue
		}
		switch {
		case j.State == postoffice.JobRunning || j.State == postoffice.JobScheduled:
			v.Live = append(v.Live, JobRow{Job: j})
			keys = append(keys, j.Key)
		case j.State == postoffice.JobDone && len(v.Done) < dashboardDoneJobs:
			v.Done = append(v.Done, JobRow{Job: j})
			keys = append(keys, j.Key)
		case j.State == postoffice.JobDraft:
			v.Drafts++
		}
		if j.State == postoffice.JobRunning {
			v.Running++
		}
	}
	v.Empty = len(keys) == 0 && v.Drafts == 0
	points, err := d.reports.JobPoints(ctx, keys)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for i := range v.Live {
		row := &v.Live[i]
		if row.Counts, err = d.jobCounts(ctx, row.Job); err != nil {
			d.fail(w, r, err)
			return
		}
		row.Points = points[row.Job.Key]
		row.Progress = progressOf(row.Job, row.Counts)
	}
	// A finished job shows only what it sent and got back: counted from indexes, so ten
	// finished jobs of a million cost the dashboard little.
	done := make([]int64, len(v.Done))
	for i, row := range v.Done {
		done[i] = row.Job.Key
	}
	receipts, err := d.reports.JobReceipts(ctx, done)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for i := range v.Done {
		row := &v.Done[i]
		row.Counts, row.Points = receipts[row.Job.Key], points[row.Job.Key]
	}
	if v.Budgets, err = d.budgets(ctx, u); err != nil {
		d.fail(w, r, err)
		return
	}
	for _, b := range v.Budgets {
		v.Awarded += b.Spent
		if b.Budget > 0 {
			v.Capped = true
			v.Left += max(b.Budget-b.Spent, 0)
		}
	}
	p := d.page(w, r, "Dashboard", "dashboard")
	p.Scripts = append(p.Scripts, "progress.js")
	d.render(w, r, dashboardPage(p, v))
}

// dashboardDoneJobs is how many finished jobs the dashboard lists.
const dashboardDoneJobs = 10

type dashboardView struct {
	Operator bool
	// Empty is set when the user's issuer (or, for an operator, everyone) has no campaign.
	Empty   bool
	Live    []JobRow
	Done    []JobRow
	Drafts  int
	Running int
	Budgets []issuerBudget
	// Awarded is the points the issuers in view have awarded; Left what their caps still
	// allow, meaningful only when Capped.
	Awarded int64
	Left    int64
	Capped  bool
}

type issuerBudget struct {
	Issuer rewards.Issuer
	Budget int64 // 0: no cap
	Spent  int64
}

// budgets returns the budget of the user's issuer, or of every issuer for an operator.
func (d reportPages) budgets(ctx context.Context, u *rewards.User) ([]issuerBudget, error) {
	issuers := []rewards.Issuer{{ID: u.IssuerID, Slug: u.IssuerSlug, Name: u.IssuerSlug}}
	if u.Operator() {
		var err error
		if issuers, err = d.reports.Issuers(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]issuerBudget, 0, len(issuers))
	for _, iss := range issuers {
		budget, spent, err := d.reports.IssuerBudget(ctx, iss.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, issuerBudget{Issuer: iss, Budget: budget, Spent: spent})
	}
	return out, nil
}

// jobProgress answers progress.json, which progress.js polls to move the bars.
func (d reportPages) jobProgress(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	counts, err := d.jobCounts(r.Context(), job)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := progressOf(job, counts)
	if p.Waiting, err = d.waitingNote(r.Context(), job); err != nil {
		d.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(p); err != nil && !errors.Is(err, context.Canceled) {
		d.logger.Warn("toolbox: progress", "job", job.Key, "err", err)
	}
}

// waitingNote is why a running job waits and until when, as its mail server last reported
// (live when this process runs the mail servers); "" when it does not wait.
func (d reportPages) waitingNote(ctx context.Context, job *postoffice.Job) (string, error) {
	if job.State != postoffice.JobRunning || job.MailServerID == 0 {
		return "", nil
	}
	var statuses []postoffice.MailServerStatus
	if d.po != nil {
		statuses = d.po.Statuses()
	}
	if len(statuses) == 0 {
		var err error
		if statuses, err = d.jobs.MailServers(ctx); err != nil {
			return "", err
		}
	}
	for _, ms := range statuses {
		if ms.ID == job.MailServerID {
			return ms.Note, nil
		}
	}
	return "", nil
}

// reportView is everything the job report shows.
type reportView struct {
	Row JobRow
	// Actions is the job's action buttons, from the campaign pages; nil shows none.
	Actions  templ.Component
	Channels map[postoffice.Channel]int
	// Settled is the points of Row.Points settlement has posted; Earners the consumers
	// they went to.
	Settled int64
	Earners int
	Chart   *chartView // nil while nothing was sent
	Bucket  time.Duration
	Formats []rateRow
	Fields  []fieldRates
	Rules   []ruleSpend
	// Every is how long, in milliseconds, report.js waits before it asks for the report
	// again: longer when the report was slow to gather.
	Every int
}

// rateRow is the sends and acknowledgements of the deliveries with one value of a field.
type rateRow struct {
	Value    string
	Sent     int
	Received int
}

// Rate is the acknowledgement rate in percent (see ackRate).
func (r rateRow) Rate() string { return ackRate(r.Received, r.Sent) }

// ackRate is received of sent in percent, with one decimal or as many more as it takes for
// a few acknowledgements not to read 0.0% (3 of 9,824: 0.03%) nor all but a few 100.0%;
// "–" when nothing was sent.
func ackRate(received, sent int) string {
	if sent == 0 {
		return "–"
	}
	pct := float64(received) * 100 / float64(sent)
	for decimals := 1; ; decimals++ {
		s := strconv.FormatFloat(pct, 'f', decimals, 64)
		v, _ := strconv.ParseFloat(s, 64)
		if decimals == 6 || (v != 0 || received == 0) && (v != 100 || received >= sent) {
			return s + "%"
		}
	}
}

type fieldRates struct {
	Field string
	Rows  []rateRow
}

type ruleSpend struct {
	Rule rewards.AwardRule
	// Job is what the rule awarded for this job; Spent what it awarded in all.
	Job   int64
	Spent int64
}

// reportFieldLimit is how many values of a criteria field the report lists; reportMaxFields
// how many fields, each a pass over the job's deliveries.
const (
	reportFieldLimit = 10
	reportMaxFields  = 4
)

// jobReport is a job's page: its progress, sends and acknowledgements over time,
// acknowledgement rates by format and by the fields its selection uses, and the points its
// rules awarded. While the job may still send, report.js fetches the same report from
// /jobs/{key}/live and puts its parts in place together, so no figure contradicts another.
func (d reportPages) jobReport(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	v, err := d.report(r.Context(), job)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.page(w, r, job.Name, "campaigns")
	p.Scripts = append(p.Scripts, "report.js")
	d.render(w, r, reportPage(p, v))
}

// jobReportLive answers report.js with the report's parts alone, gathered in one pass.
func (d reportPages) jobReportLive(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	v, err := d.report(r.Context(), job)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, reportLive(v))
}

// Polling bounds for a live report: every two seconds, or four times as long as the
// report took to gather, up to half a minute, so a large job's report does not keep the
// database busy.
const (
	reportEvery    = 2 * time.Second
	reportEveryMax = 30 * time.Second
)

// report gathers everything a job's report shows.
func (d reportPages) report(ctx context.Context, job *postoffice.Job) (reportView, error) {
	began := time.Now()
	// The job's actions (schedule, suspend, resume, stop, duplicate, test) are the campaign
	// pages' (campaigns.go); each comes back here with a flash.
	v := reportView{Row: JobRow{Job: job}, Actions: d.jobActions(job)}
	fields := selectionFields(job.Selection)
	v.Fields = make([]fieldRates, len(fields))
	var formats map[string]postoffice.JobCounts
	var rulePoints map[int64]int64
	// The reads are independent and several walk all the job's deliveries: run them side by
	// side on the store's pool of readers.
	tasks := []func() error{
		func() (err error) { v.Row.Counts, err = d.jobCounts(ctx, job); return err },
		func() (err error) { v.Channels, err = d.reports.JobChannels(ctx, job.Key); return err },
		func() (err error) { v.Chart, v.Bucket, err = d.timeline(ctx, job); return err },
		func() (err error) { formats, err = d.reports.JobCountsBy(ctx, job.Key, "format", 2); return err },
		func() (err error) { rulePoints, err = d.reports.JobRulePoints(ctx, job.Key); return err },
		func() (err error) { v.Settled, v.Earners, err = d.reports.JobSettlement(ctx, job.Key); return err },
	}
	for i, f := range fields {
		tasks = append(tasks, func() error {
			counts, err := d.reports.JobCountsBy(ctx, job.Key, f, reportFieldLimit)
			v.Fields[i] = fieldRates{Field: f, Rows: rateRows(counts)}
			return err
		})
	}
	if err := runAll(tasks...); err != nil {
		return v, err
	}
	v.Row.Progress = progressOf(job, v.Row.Counts)
	waiting, err := d.waitingNote(ctx, job)
	if err != nil {
		return v, err
	}
	v.Row.Progress.Waiting = waiting
	v.Formats = rateRows(formats)
	rules, err := d.reports.JobRules(ctx, job.Key)
	if err != nil {
		return v, err
	}
	for _, rule := range rules {
		spent, err := d.reports.RuleSpent(ctx, rule.ID)
		if err != nil {
			return v, err
		}
		v.Rules = append(v.Rules, ruleSpend{Rule: rule, Job: rulePoints[rule.ID], Spent: spent})
	}
	v.Row.Points = jobAwarded(rulePoints)
	v.Every = int(min(max(reportEvery, 4*time.Since(began)), reportEveryMax) / time.Millisecond)
	return v, nil
}

// jobAwarded is the points a job's acknowledgements accrued: what each rule awarded
// (JobRulePoints), summed.
func jobAwarded(rulePoints map[int64]int64) int64 {
	var sum int64
	for _, pts := range rulePoints {
		sum += pts
	}
	return sum
}

// runAll runs the tasks concurrently and returns their errors joined.
func runAll(tasks ...func() error) error {
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, t := range tasks {
		wg.Go(func() { errs[i] = t() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// timeline draws a job's sends and acknowledgements over time, in buckets sized to the
// span from its first send to its last send or acknowledgement (to now, while it runs); nil
// while it has sent nothing.
func (d reportPages) timeline(ctx context.Context, job *postoffice.Job) (*chartView, time.Duration, error) {
	first, last, err := d.reports.JobSpan(ctx, job.Key)
	if err != nil || first.IsZero() {
		return nil, 0, err
	}
	if now := d.now(); job.State == postoffice.JobRunning && now.After(last) {
		last = now
	}
	from, size, n := chooseBuckets(first, last)
	sends, acks, err := d.reports.JobTimeline(ctx, job.Key, from, size, n)
	if err != nil {
		return nil, 0, err
	}
	buckets := make([]timeBucket, n)
	for i := range buckets {
		buckets[i] = timeBucket{Start: from.Add(time.Duration(i) * size), Sends: sends[i], Acks: acks[i]}
	}
	v := timelineView(buckets, size)
	return &v, size, nil
}

// rateRows orders grouped counts by sends, most first, then by value.
func rateRows(counts map[string]postoffice.JobCounts) []rateRow {
	out := make([]rateRow, 0, len(counts))
	for v, c := range counts {
		out = append(out, rateRow{Value: v, Sent: c.Sent, Received: c.Received})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sent != out[j].Sent {
			return out[i].Sent > out[j].Sent
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// selectionFields lists the consumer fields a job's selection criteria name, in the order
// they appear, for the report's rates by field. Format has its own table, and e-mail
// addresses are one consumer each, so neither is listed; a selection that names no other
// field (everyone, or raw SQL) gets country and gender.
func selectionFields(selection string) []string {
	var out []string
	if sel, err := postoffice.ParseSelection([]byte(selection)); err == nil {
		var walk func(s *postoffice.Selection)
		walk = func(s *postoffice.Selection) {
			if f := s.Field; f != "" && f != "format" && f != "email" && !slices.Contains(out, f) {
				out = append(out, f)
			}
			for i := range s.All {
				walk(&s.All[i])
			}
			for i := range s.Any {
				walk(&s.Any[i])
			}
		}
		walk(sel)
	}
	if len(out) == 0 {
		return []string{"country", "gender"}
	}
	return out[:min(len(out), reportMaxFields)]
}

// exportWindow is how long a streamed export may take over one batch of rows. The server's
// WriteTimeout would cut a long download short; each batch written moves the connection's
// write deadline this far on instead, so a download lasts as long as it keeps moving.
const exportWindow = 60 * time.Second

// extendWrite moves the response's write deadline exportWindow from now. A writer that
// cannot (ErrNotSupported) keeps the server's.
func extendWrite(rc *http.ResponseController) {
	_ = rc.SetWriteDeadline(time.Now().Add(exportWindow))
}

// exportJob streams one CSV row per delivery of a job, straight from the store's cursor.
func (d reportPages) exportJob(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	rc := http.NewResponseController(w)
	extendWrite(rc)
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="job-%d.csv"`, job.Key))
	h.Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"email", "first_name", "last_name", "format", "sent", "sent_at", "received", "received_at",
		"retry_count", "rejected", "failed", "last_error", "points"})
	n := 0
	err := d.reports.ExportDeliveries(r.Context(), job.Key, func(dl *postoffice.Delivery, c *rewards.Consumer, points int64) error {
		if err := cw.Write([]string{csvCell(c.Email), csvCell(c.FirstName), csvCell(c.LastName), string(c.Format),
			csvBool(dl.Sent), csvTime(dl.SentAt), csvBool(dl.Received), csvTime(dl.ReceivedAt),
			strconv.Itoa(dl.RetryCount), csvBool(dl.Rejected), csvBool(dl.Failed), csvCell(dl.LastError),
			strconv.FormatInt(points, 10)}); err != nil {
			return err
		}
		if n++; n%1000 == 0 {
			cw.Flush()
			extendWrite(rc)
			return cw.Error()
		}
		return nil
	})
	if err == nil {
		cw.Flush()
		err = cw.Error()
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			d.logger.Error("toolbox: export", "job", job.Key, "rows", n, "err", err)
		}
		// The status has gone out; aborting the response tells the browser the file is
		// incomplete rather than handing it a silently truncated one.
		panic(http.ErrAbortHandler)
	}
}

func csvBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
