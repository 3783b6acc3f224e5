package toolbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// campaignStore is what the campaign editor and the award-rule pages read and change. It is
// a post office store too: a draft is saved through the post office's own checks (see
// saveDraft).
type campaignStore interface {
	postoffice.Store
	Issuers(ctx context.Context) ([]rewards.Issuer, error)
	// JobReceipts counts each job's sent and received deliveries (Sent, Received) cheaply.
	JobReceipts(ctx context.Context, keys []int64) (map[int64]postoffice.JobCounts, error)
	JobRules(ctx context.Context, jobKey int64) ([]rewards.AwardRule, error)
	Rules(ctx context.Context, issuerID int64) ([]rewards.AwardRule, error)
	Rule(ctx context.Context, id int64) (*rewards.AwardRule, error)
	CreateRule(ctx context.Context, r *rewards.AwardRule) error
	UpdateRule(ctx context.Context, r *rewards.AwardRule) error
	RetireRule(ctx context.Context, issuerID, ruleID int64) error
	RulesSpent(ctx context.Context, issuerID int64) (map[int64]int64, error)
	BudgetOfIssuer(ctx context.Context, issuerID int64) (budget, spent int64, err error)
	SampleConsumer(ctx context.Context, where string, args []any, raw bool) (*rewards.Consumer, error)
	UpdateDraftJob(ctx context.Context, job *postoffice.Job, text, html *postoffice.Message, rules postoffice.JobRules) error
	CreateSegment(ctx context.Context, seg *postoffice.Segment) error
	Segments(ctx context.Context, issuerID int64) ([]postoffice.Segment, error)
	Segment(ctx context.Context, id int64) (*postoffice.Segment, error)
	DeleteSegment(ctx context.Context, issuerID, id int64) error
}

// TestSender sends a job's message, rendered for a sample consumer, to one address.
type TestSender interface {
	SendTest(ctx context.Context, job *postoffice.Job, to string, by *rewards.User) error
}

// campaignPages are the campaign editor, the job actions and the award-rule pages.
type campaignPages struct {
	jobPages
	campaigns  campaignStore
	po         *postoffice.PostOffice
	testSender TestSender
}

func (d campaignPages) campaignRoutes(r chi.Router) {
	r.Get("/campaigns", d.campaignList)
	r.Get("/campaigns/new", d.newCampaign)
	r.Post("/campaigns/new", d.createCampaign)
	r.Post("/campaigns/preview", d.campaignPreview)
	r.Post("/campaigns/count", d.campaignCount)
	r.Get("/campaigns/{key}/edit", d.editCampaign)
	r.Post("/campaigns/{key}/edit", d.saveCampaign)
	r.Get("/jobs/{key}/schedule", d.reviewSchedule)
	r.Post("/jobs/{key}/schedule", d.scheduleJob)
	r.Post("/jobs/{key}/suspend", d.jobAction(actSuspend))
	r.Post("/jobs/{key}/resume", d.jobAction(actResume))
	r.Post("/jobs/{key}/stop", d.jobAction(actStop))
	r.Post("/jobs/{key}/duplicate", d.duplicateJob)
	r.Post("/jobs/{key}/test", d.testJob)
	r.Get("/segments", d.segmentList)
	r.Post("/segments/{id}/delete", d.deleteSegment)
}

// campaignsPageSize is how many campaigns one page of the list shows.
const campaignsPageSize = 25

// campaignStates are the states the campaign list filters by: a job's state, or suspended.
var campaignStates = []string{string(postoffice.JobDraft), string(postoffice.JobScheduled), string(postoffice.JobRunning),
	"suspended", string(postoffice.JobDone)}

// campaignListQuery is the campaign list's search, state filter and page, as its links
// carry them.
type campaignListQuery struct {
	Text, State string
	Page        int
}

// link is the list's page n with the query.
func (q campaignListQuery) link(n int) string {
	v := url.Values{}
	if q.Text != "" {
		v.Set("q", q.Text)
	}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if n > 1 {
		v.Set("page", strconv.Itoa(n))
	}
	if len(v) == 0 {
		return "/campaigns"
	}
	return "/campaigns?" + v.Encode()
}

// matches reports whether j is found by the search (in its name, its issuer's slug, or its
// number) and has the state asked for.
func (q campaignListQuery) matches(j *postoffice.Job) bool {
	switch {
	case q.State == "suspended":
		if !j.Suspended || j.State == postoffice.JobDone {
			return false
		}
	case q.State != "" && string(j.State) != q.State:
		return false
	}
	t := strings.ToLower(q.Text)
	return t == "" || strings.Contains(strings.ToLower(j.Name), t) || strings.Contains(j.IssuerSlug, t) ||
		strconv.FormatInt(j.Key, 10) == t
}

// campaignRow is a campaign as the list shows it, with its sends and acknowledgements.
type campaignRow struct {
	*postoffice.Job
	Sent, Received int
}

// Rate is the acknowledgement rate of the campaign's sent messages.
func (c campaignRow) Rate() string { return ackRate(c.Received, c.Sent) }

// campaignListView is one page of the campaign list.
type campaignListView struct {
	Q        campaignListQuery
	Rows     []campaignRow
	Operator bool
	// Any says the user has campaigns at all, whatever the search finds.
	Any bool
	// Matching is how many campaigns the search finds; Pages how many pages they fill.
	Matching, Pages int
	// Error says what was wrong with the query; the list then shows its first page.
	Error string
}

// campaignList shows the jobs the user may see, newest first, found by a search and a
// state, a page at a time, with each one's sends and acknowledgements.
func (d campaignPages) campaignList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u := userFrom(ctx)
	v := campaignListView{Operator: u.Operator(), Q: campaignListQuery{Text: strings.TrimSpace(r.URL.Query().Get("q")),
		State: r.URL.Query().Get("state"), Page: 1}}
	status := http.StatusOK
	if len(v.Q.Text) > 200 {
		v.Error, v.Q.Text = "Search for at most 200 characters.", ""
	}
	if v.Q.State != "" && !slices.Contains(campaignStates, v.Q.State) {
		v.Error, v.Q.State = "Choose a state from the list: "+strings.Join(campaignStates, ", ")+".", ""
	}
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			v.Error = "Page " + strconv.Quote(p) + " is not a page number: this is the first page."
		} else {
			v.Q.Page = n
		}
	}
	jobs, err := d.jobs.Jobs(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	var found []*postoffice.Job
	for _, j := range jobs {
		if !u.MaySee(j.IssuerID) {
			continue
		}
		v.Any = true
		if v.Q.matches(j) {
			found = append(found, j)
		}
	}
	v.Matching, v.Pages = len(found), max(1, (len(found)+campaignsPageSize-1)/campaignsPageSize)
	if v.Q.Page > v.Pages {
		v.Error = fmt.Sprintf("There is no page %d: the campaigns found fill %d. This is the first.", v.Q.Page, v.Pages)
		v.Q.Page = 1
	}
	if v.Error != "" {
		status = http.StatusBadRequest
	}
	found = found[(v.Q.Page-1)*campaignsPageSize : min(len(found), v.Q.Page*campaignsPageSize)]
	keys := make([]int64, len(found))
	for i, j := range found {
		keys[i] = j.Key
	}
	receipts, err := d.campaigns.JobReceipts(ctx, keys)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for _, j := range found {
		v.Rows = append(v.Rows, campaignRow{Job: j, Sent: receipts[j.Key].Sent, Received: receipts[j.Key].Received})
	}
	d.renderStatus(w, r, status, campaignListPage(d.page(w, r, "Campaigns", "campaigns"), v))
}

// selRow is one condition row of the selection builder, as typed. N numbers its inputs
// (sel_field_N…) as the page named them, so an error finds its row however rows were added
// and removed.
type selRow struct {
	N                int
	Field, Op, Value string
}

func (s selRow) empty() bool {
	return strings.TrimSpace(s.Field) == "" && strings.TrimSpace(s.Value) == ""
}

// ruleFields is an award rule's form, as typed; the inputs are named "rule_" + the field
// names rewards.AwardRule.Validate reports.
type ruleFields struct {
	Description, Type, Points, Frequency, Period, MaxTimes, Start, Stop, IssuerURL, SuccessURL, Budget string
}

// campaignForm is the campaign editor's form, as typed, with what the page shows beside it.
type campaignForm struct {
	Key         int64
	Operator    bool
	Issuer      string // slug
	Name        string
	TextSubject string
	TextBody    string
	HTMLSubject string
	HTMLBody    string
	Join        string // all or any
	Rows        []selRow
	SelJSON     string
	ClientCount string
	Start, Stop string
	MailServer  string
	RuleIDs     []int64
	Rule        ruleFields

	Errors      map[string]string
	Issuers     []rewards.Issuer
	MailServers []postoffice.MailServerStatus
	// Rules are the rules the job may use, with the issuer's slug for operators.
	Rules   []ruleChoice
	Preview msgPreview
	Cost    costView
	// Segments are the saved selections the campaign may use; SegmentName is the name
	// typed to save one; Notice says what a segment button did.
	Segments    []segmentRow
	SegmentName string
	Notice      string
}

type ruleChoice struct {
	Rule   rewards.AwardRule
	Issuer string
}

// builderEmptyRows is how many blank rows the selection builder offers beyond the filled
// ones, so the form works without scripts.
const builderEmptyRows = 2

// editorTimeLayout is the value format of <input type=datetime-local>; the toolbox's dates
// are UTC.
const editorTimeLayout = "2006-01-02T15:04"

func (f *campaignForm) setErr(field, reason string) {
	if f.Errors == nil {
		f.Errors = map[string]string{}
	}
	if _, ok := f.Errors[field]; !ok {
		f.Errors[field] = reason
	}
}

func (f *campaignForm) ruleChecked(id int64) bool { return slices.Contains(f.RuleIDs, id) }

// displayRows are the filled rows and a few blank ones.
func (f *campaignForm) displayRows() []selRow {
	rows := slices.Clone(f.Rows)
	next := f.nextRow()
	for i := range builderEmptyRows {
		rows = append(rows, selRow{N: next + i, Op: "="})
	}
	return rows
}

// nextRow is the number of a row added after the filled ones.
func (f *campaignForm) nextRow() int {
	next := 0
	for _, row := range f.Rows {
		next = max(next, row.N+1)
	}
	return next
}

// formReadFailed answers a form that could not be read: 413 for one over maxFormBytes.
func formReadFailed(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		status = http.StatusRequestEntityTooLarge
	}
	http.Error(w, err.Error(), status)
}

// readCampaignForm reads the editor's form from a request.
func readCampaignForm(r *http.Request) (*campaignForm, error) {
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("the form is larger than %d MB: a message body may be at most %d KB: %w",
				maxFormBytes>>20, postoffice.MaxTemplateBytes>>10, err)
		}
		return nil, fmt.Errorf("the form could not be read: %w", err)
	}
	v := r.PostForm
	get := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	f := &campaignForm{Issuer: get("issuer"), Name: get("name"), TextSubject: get("text_subject"), TextBody: v.Get("text_body"),
		HTMLSubject: get("html_subject"), HTMLBody: v.Get("html_body"), Join: get("sel_join"), SelJSON: get("sel_json"),
		ClientCount: get("client_count"), Start: get("start"), Stop: get("stop"), MailServer: get("mail_server"),
		Rule: readRuleFields(v)}
	// An issuer user's campaign is always their issuer's, whatever the form says.
	if u := userFrom(r.Context()); !u.Operator() {
		f.Issuer = u.IssuerSlug
	}
	if f.Join != "any" {
		f.Join = "all"
	}
	// Rows are sel_field_N, sel_op_N, sel_value_N; scripts may leave gaps in N.
	var idx []int
	for k := range v {
		if n, ok := strings.CutPrefix(k, "sel_field_"); ok {
			if i, err := strconv.Atoi(n); err == nil && i >= 0 && i < 1000 {
				idx = append(idx, i)
			}
		}
	}
	sort.Ints(idx)
	for _, i := range idx {
		row := selRow{N: i, Field: get(fmt.Sprint("sel_field_", i)), Op: get(fmt.Sprint("sel_op_", i)), Value: get(fmt.Sprint("sel_value_", i))}
		if row.Op == "" {
			row.Op = "="
		}
		if !row.empty() {
			f.Rows = append(f.Rows, row)
		}
	}
	for _, s := range v["rule_ids"] {
		if id, err := strconv.ParseInt(s, 10, 64); err == nil && !slices.Contains(f.RuleIDs, id) {
			f.RuleIDs = append(f.RuleIDs, id)
		}
	}
	return f, nil
}

func readRuleFields(v url.Values) ruleFields {
	get := func(k string) string { return strings.TrimSpace(v.Get("rule_" + k)) }
	return ruleFields{Description: get("description"), Type: get("type"), Points: get("points"), Frequency: get("frequency"),
		Period: get("period"), MaxTimes: get("max_times"), Start: get("start"), Stop: get("stop"),
		IssuerURL: get("issuer_url"), SuccessURL: get("success_url"), Budget: get("budget")}
}

// newCampaignForm is the form for a new campaign: starting now (scheduled, it goes out at
// once), for a week.
func (d campaignPages) newCampaignForm(u *rewards.User) *campaignForm {
	start := d.now().UTC().Truncate(time.Minute)
	f := &campaignForm{Join: "all", ClientCount: "1000", Start: start.Format(editorTimeLayout),
		Stop: start.Add(7 * 24 * time.Hour).Format(editorTimeLayout), Rule: ruleFields{Frequency: "once"}}
	if !u.Operator() {
		f.Issuer = u.IssuerSlug
	}
	return f
}

// jobForm fills the editor's form from a stored job.
func (d campaignPages) jobForm(ctx context.Context, job *postoffice.Job) (*campaignForm, error) {
	f := &campaignForm{Key: job.Key, Issuer: job.IssuerSlug, Name: job.Name, Join: "all",
		ClientCount: strconv.Itoa(job.ClientCount), Start: job.Start.UTC().Format(editorTimeLayout),
		Stop: job.Stop.UTC().Format(editorTimeLayout), Rule: ruleFields{Frequency: "once"}}
	if job.MailServerID != 0 {
		f.MailServer = strconv.Itoa(job.MailServerID)
	}
	text, html, err := d.campaigns.Messages(ctx, job)
	if err != nil {
		return nil, err
	}
	if text != nil {
		f.TextSubject, f.TextBody = text.Subject, text.Body
	}
	if html != nil {
		f.HTMLSubject, f.HTMLBody = html.Subject, html.Body
	}
	f.Join, f.Rows, f.SelJSON = selectionRows(job.Selection)
	rules, err := d.campaigns.JobRules(ctx, job.Key)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		f.RuleIDs = append(f.RuleIDs, r.ID)
	}
	return f, nil
}

// selectionRows turns stored criteria into builder rows when they are one flat all- or
// any-group of conditions; otherwise they stay JSON, shown as such.
func selectionRows(raw string) (join string, rows []selRow, asJSON string) {
	join = "all"
	sel, err := postoffice.ParseSelection([]byte(raw))
	if err != nil || sel.IsRaw() {
		return join, nil, strings.TrimSpace(raw)
	}
	members := []postoffice.Selection{*sel}
	switch {
	case sel.Field != "":
	case sel.All != nil:
		members = sel.All
	case sel.Any != nil:
		join, members = "any", sel.Any
	default:
		return join, nil, ""
	}
	for _, m := range members {
		if m.Field == "" {
			return "all", nil, strings.TrimSpace(raw)
		}
		rows = append(rows, selRow{N: len(rows), Field: m.Field, Op: m.Op, Value: valueText(m.Value)})
	}
	return join, rows, ""
}

// valueText writes a condition's value as the builder's value box takes it.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = valueText(e)
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v)
}

// selection builds the criteria JSON from the rows, or takes the JSON box when there are no
// rows. Errors go into f.Errors.
func (f *campaignForm) selection(operator bool) (json.RawMessage, bool) {
	if len(f.Rows) == 0 {
		if f.SelJSON == "" {
			return nil, true
		}
		sel, err := postoffice.ParseSelection([]byte(f.SelJSON))
		if err != nil {
			f.setErr("sel_json", err.Error())
			return nil, false
		}
		if sel.IsRaw() && !operator {
			f.setErr("sel_json", "a raw SQL selection is for operators: use the rows")
			return nil, false
		}
		if !operator && selectsByAddress(sel) {
			f.setErr("sel_json", byAddressRefused)
			return nil, false
		}
		return json.RawMessage(f.SelJSON), true
	}
	if f.SelJSON != "" {
		f.setErr("sel_json", "use either the rows or the JSON: clear one of them")
		return nil, false
	}
	if !operator {
		refused := false
		for _, row := range f.Rows {
			if row.Field == addressField {
				f.setErr(fmt.Sprintf("sel_field_%d", row.N), byAddressRefused)
				refused = true
			}
		}
		if refused {
			return nil, false
		}
	}
	conds := make([]map[string]any, len(f.Rows))
	for i, row := range f.Rows {
		conds[i] = map[string]any{"field": row.Field, "op": row.Op, "value": conditionValue(row)}
	}
	data, err := json.Marshal(map[string]any{f.Join: conds})
	if err != nil {
		f.setErr("selection", err.Error())
		return nil, false
	}
	return data, true
}

// addressField is the consumers' e-mail address as a selection field. Issuer users may not
// select by it: a count (or a preview) of "email = x" would tell them whether anyone has
// the address x, and consumers' addresses are the operators' to know.
const addressField = "email"

const byAddressRefused = "issuers select by profile, not by address: use country, city, birth year, interests…"

// selectsByAddress reports whether any condition of sel is on the e-mail address.
func selectsByAddress(sel *postoffice.Selection) bool {
	if sel == nil {
		return false
	}
	if sel.Field == addressField {
		return true
	}
	for _, group := range [][]postoffice.Selection{sel.All, sel.Any} {
		for i := range group {
			if selectsByAddress(&group[i]) {
				return true
			}
		}
	}
	return false
}

// conditionValue reads a row's value: a list for in and not in (comma-separated), a number
// for birth_year, and for an attribute compared by order when it reads as one.
func conditionValue(row selRow) any {
	op := strings.ToLower(row.Op)
	if op == "in" || op == "not in" {
		list := []any{}
		for _, p := range strings.Split(row.Value, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		return list
	}
	number := row.Field == "birth_year" ||
		strings.HasPrefix(row.Field, "attr.") && (op == "<" || op == "<=" || op == ">" || op == ">=")
	if number {
		if _, err := strconv.ParseFloat(row.Value, 64); err == nil {
			return json.Number(row.Value)
		}
	}
	return row.Value
}

// formField names the form input a campaign's FieldError is about.
func (f *campaignForm) formField(field string) string {
	switch field {
	case "text":
		return "messages"
	case "text.subject", "text.body", "html.subject", "html.body":
		return strings.Replace(field, ".", "_", 1)
	case "name", "issuer", "start", "stop", "client_count", "mail_server":
		return field
	}
	if strings.HasPrefix(field, "rule_ids") {
		return "rule_ids"
	}
	if rest, ok := strings.CutPrefix(field, "rules[0]."); ok {
		return "rule_" + rest
	}
	if strings.HasPrefix(field, "selection") {
		if len(f.Rows) == 0 {
			return "sel_json"
		}
		for _, g := range []string{"selection.all[", "selection.any["} {
			rest, ok := strings.CutPrefix(field, g)
			if !ok {
				continue
			}
			n, rest, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(n)
			if err != nil || i >= len(f.Rows) {
				break
			}
			part := strings.TrimPrefix(rest, ".")
			part, _, _ = strings.Cut(part, "[")
			n = strconv.Itoa(f.Rows[i].N)
			switch part {
			case "field", "op", "value":
				return "sel_" + part + "_" + n
			}
			return "sel_field_" + n
		}
		return "selection"
	}
	return "form"
}

// editorParseTime reads a datetime-local value as UTC.
func editorParseTime(s string) (time.Time, error) {
	for _, layout := range []string{editorTimeLayout, "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("enter a date and time, like 2026-12-01 09:00 (UTC)")
}

// editorParseWhole reads a whole number typed with or without thousands separators.
func editorParseWhole(s string) (int64, error) {
	s = strings.NewReplacer(",", "", " ", "", "_", "", "\u00a0", "").Replace(s)
	return strconv.ParseInt(s, 10, 64)
}

// spec turns the inline rule's fields into a rule spec; ok is false (with the errors set)
// when a field cannot be read, and spec is nil when no new rule is asked for.
func (rf ruleFields) spec(setErr func(field, reason string)) (spec *postoffice.RuleSpec, ok bool) {
	if rf.Type == "" {
		if rf.Points != "" {
			setErr("rule_type", "choose what the consumer does to earn, or clear the points")
			return nil, false
		}
		return nil, true
	}
	s := &postoffice.RuleSpec{Description: rf.Description, Type: rf.Type, Frequency: rf.Frequency,
		IssuerURL: rf.IssuerURL, SuccessURL: rf.SuccessURL}
	ok = true
	number := func(field, text string, dst *int64, required bool) {
		if text == "" {
			if required {
				setErr(field, "is required")
				ok = false
			}
			return
		}
		n, err := editorParseWhole(text)
		if err != nil {
			setErr(field, "must be a whole number")
			ok = false
			return
		}
		*dst = n
	}
	var maxTimes, hours int64
	number("rule_points", rf.Points, &s.Points, true)
	number("rule_max_times", rf.MaxTimes, &maxTimes, false)
	number("rule_budget", rf.Budget, &s.Budget, false)
	number("rule_period", rf.Period, &hours, false)
	s.MaxTimes = int(maxTimes)
	if hours != 0 {
		s.Period = fmt.Sprintf("%dh", hours)
	}
	for _, t := range []struct {
		field, text string
		dst         *string
	}{{"rule_start", rf.Start, &s.Start}, {"rule_stop", rf.Stop, &s.Stop}} {
		if t.text == "" {
			continue
		}
		when, err := editorParseTime(t.text)
		if err != nil {
			setErr(t.field, err.Error())
			ok = false
			continue
		}
		*t.dst = when.Format(time.RFC3339)
	}
	return s, ok
}

// campaign turns the form into the campaign the post office checks; nil when a field could
// not even be read (f.Errors says which).
func (f *campaignForm) campaign(operator bool) *postoffice.Campaign {
	c := &postoffice.Campaign{Issuer: f.Issuer, Name: f.Name, RuleIDs: f.RuleIDs}
	if operator && f.Issuer == "" {
		f.setErr("issuer", "choose the issuer the campaign is for")
	}
	if f.TextSubject != "" || strings.TrimSpace(f.TextBody) != "" {
		c.Text = &postoffice.MessageSpec{Subject: f.TextSubject, Body: f.TextBody}
	}
	if f.HTMLSubject != "" || strings.TrimSpace(f.HTMLBody) != "" {
		c.HTML = &postoffice.MessageSpec{Subject: f.HTMLSubject, Body: f.HTMLBody}
	}
	if start, err := editorParseTime(f.Start); err != nil {
		f.setErr("start", err.Error())
	} else {
		c.Start = start.Format(time.RFC3339)
	}
	if stop, err := editorParseTime(f.Stop); err != nil {
		f.setErr("stop", err.Error())
	} else {
		c.Stop = stop.Format(time.RFC3339)
	}
	if n, err := editorParseWhole(f.ClientCount); err != nil || n <= 0 || n > 1<<31-1 {
		f.setErr("client_count", "must be a positive whole number: the most consumers the campaign may reach")
	} else {
		c.ClientCount = int(n)
	}
	if f.MailServer != "" && f.MailServer != "0" && !operator {
		// The page offers issuers no picker: a value is forged.
		f.setErr("form", "the mail server is the operators' to choose: issuers leave it to them")
	} else if f.MailServer != "" && f.MailServer != "0" {
		if n, err := strconv.Atoi(f.MailServer); err != nil || n < 0 {
			f.setErr("mail_server", "choose a mail server, or automatic")
		} else {
			c.MailServer = n
		}
	}
	if sel, ok := f.selection(operator); ok {
		c.Selection = sel
	}
	if spec, ok := f.Rule.spec(f.setErr); ok && spec != nil {
		c.Rules = []postoffice.RuleSpec{*spec}
	}
	if len(f.Errors) > 0 {
		return nil
	}
	return c
}

// fill loads what the form shows beside the fields: issuers, mail servers, rules, the
// preview and the cost.
func (d campaignPages) fill(ctx context.Context, f *campaignForm) error {
	u := userFrom(ctx)
	f.Operator = u.Operator()
	if !f.Operator {
		f.Issuer = u.IssuerSlug
	}
	issuers, err := d.campaigns.Issuers(ctx)
	if err != nil {
		return err
	}
	slugs := map[int64]string{}
	for _, iss := range issuers {
		slugs[iss.ID] = iss.Slug
		if u.MaySee(iss.ID) {
			f.Issuers = append(f.Issuers, iss)
		}
	}
	if f.MailServers, err = d.jobs.MailServers(ctx); err != nil {
		return err
	}
	for _, iss := range f.Issuers {
		rules, err := d.campaigns.Rules(ctx, iss.ID)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if !r.Retired || f.ruleChecked(r.ID) {
				f.Rules = append(f.Rules, ruleChoice{Rule: r, Issuer: slugs[r.IssuerID]})
			}
		}
	}
	if f.Segments, err = d.segmentsOf(ctx, false); err != nil {
		return err
	}
	ev := d.evaluate(ctx, f)
	f.Preview, f.Cost = ev.preview, ev.cost
	return nil
}

// issuerOf returns the issuer the form is for, if it is one the user may use.
func (d campaignPages) issuerOf(ctx context.Context, f *campaignForm) (rewards.Issuer, bool) {
	u := userFrom(ctx)
	issuers, err := d.campaigns.Issuers(ctx)
	if err != nil {
		return rewards.Issuer{}, false
	}
	for _, iss := range issuers {
		if iss.Slug == f.Issuer && u.MaySee(iss.ID) {
			return iss, true
		}
	}
	return rewards.Issuer{}, false
}

func (d campaignPages) newCampaign(w http.ResponseWriter, r *http.Request) {
	f := d.newCampaignForm(userFrom(r.Context()))
	if err := d.fill(r.Context(), f); err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, campaignEditPage(d.editorPage(w, r, "New campaign"), f))
}

func (d campaignPages) editorPage(w http.ResponseWriter, r *http.Request, title string) Page {
	p := d.page(w, r, title, "campaigns")
	p.Scripts = append(p.Scripts, "editor.js")
	p.Styles = append(p.Styles, "editor.css")
	return p
}

func (d campaignPages) createCampaign(w http.ResponseWriter, r *http.Request) {
	d.submitCampaign(w, r, nil)
}

func (d campaignPages) editCampaign(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	if job.State != postoffice.JobDraft {
		d.render(w, r, notEditablePage(d.page(w, r, "Campaign "+strconv.FormatInt(job.Key, 10), "campaigns"), job, d.jobActions(job)))
		return
	}
	f, err := d.jobForm(r.Context(), job)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if err := d.fill(r.Context(), f); err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, campaignEditPage(d.editorPage(w, r, "Edit "+job.Name), f))
}

func (d campaignPages) saveCampaign(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	if job.State != postoffice.JobDraft {
		d.notEditable(w, r, job)
		return
	}
	d.submitCampaign(w, r, job)
}

// notEditable answers a save of a job that is no longer a draft: 409 and the page saying so.
func (d campaignPages) notEditable(w http.ResponseWriter, r *http.Request, job *postoffice.Job) {
	p := d.page(w, r, "Campaign "+strconv.FormatInt(job.Key, 10), "campaigns")
	w.WriteHeader(http.StatusConflict)
	d.render(w, r, notEditablePage(p, job, d.jobActions(job)))
}

// submitCampaign handles the editor's buttons: add or remove a selection row (the page
// again), or save the campaign as a draft or scheduled, creating it or rewriting draft.
func (d campaignPages) submitCampaign(w http.ResponseWriter, r *http.Request, draft *postoffice.Job) {
	ctx := r.Context()
	f, err := readCampaignForm(r)
	if err != nil {
		formReadFailed(w, err)
		return
	}
	title := "New campaign"
	if draft != nil {
		f.Key, title = draft.Key, "Edit "+draft.Name
	}
	action := r.PostForm.Get("action")
	status := http.StatusOK
	switch {
	case action == "add_row":
		f.Rows = append(f.Rows, selRow{N: f.nextRow(), Op: "="})
	case action == "use_segment":
		d.useSegment(ctx, f, r.PostForm.Get("segment"))
		if len(f.Errors) > 0 {
			status = http.StatusUnprocessableEntity
		}
	case action == "save_segment":
		d.saveSegment(ctx, f, strings.TrimSpace(r.PostForm.Get("segment_name")))
		if len(f.Errors) > 0 {
			status = http.StatusUnprocessableEntity
		}
	case strings.HasPrefix(action, "remove_row:"):
		if i, err := strconv.Atoi(strings.TrimPrefix(action, "remove_row:")); err == nil && i >= 0 && i < len(f.Rows) {
			f.Rows = slices.Delete(f.Rows, i, i+1)
		}
	default:
		u := userFrom(ctx)
		if u.Operator() && f.Issuer != "" {
			if _, ok := d.issuerOf(ctx, f); !ok {
				f.setErr("issuer", "choose one of the issuers")
			}
		}
		if c := f.campaign(u.Operator()); c != nil {
			if !u.Operator() && draft != nil {
				c.MailServer = draft.MailServerID // an operator's pin stays
			}
			// Scheduling checks what a draft may lack; the draft is saved, then reviewed.
			var err error
			if action == "schedule" {
				err = c.Validate()
			}
			c.Draft = true
			var job *postoffice.Job
			var matching int
			if err == nil {
				job, matching, err = d.saveDraft(ctx, c, draft)
			}
			var fe *postoffice.FieldError
			switch {
			case errors.As(err, &fe):
				f.setErr(f.formField(fe.Field), fe.Reason)
			case err != nil:
				// A draft scheduled or stopped while the editor saved it is a conflict: the
				// page shows the job as it is now.
				if draft != nil && rewards.ErrorCode(err) == rewards.ECONFLICT {
					if now, jerr := d.jobs.Job(ctx, draft.Key); jerr == nil && now.State != postoffice.JobDraft {
						d.notEditable(w, r, now)
						return
					}
				}
				d.fail(w, r, err)
				return
			case action == "schedule":
				d.redirect(w, r, fmt.Sprintf("/jobs/%d/schedule", job.Key), fmt.Sprintf(
					"Campaign %d saved as a draft; its selection matches %s consumers now. Review it, then confirm to schedule it.",
					job.Key, thousands(int64(matching))))
				return
			default:
				d.redirect(w, r, fmt.Sprintf("/campaigns/%d/edit", job.Key), fmt.Sprintf("Campaign %d saved as a draft; its selection matches %s consumers now.",
					job.Key, thousands(int64(matching))))
				return
			}
		}
		status = http.StatusUnprocessableEntity
	}
	if err := d.fill(ctx, f); err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.editorPage(w, r, title)
	w.WriteHeader(status)
	d.render(w, r, campaignEditPage(p, f))
}

// saveDraft stores c through the post office, so that the editor's campaigns are checked
// exactly as `pointpost campaign create` checks them: a new job when draft is nil, else a
// rewrite of the draft. The post office stores a job with CreateJob; for a rewrite it is
// given a store whose CreateJob rewrites the draft instead.
func (d campaignPages) saveDraft(ctx context.Context, c *postoffice.Campaign, draft *postoffice.Job) (*postoffice.Job, int, error) {
	if draft == nil {
		return d.po.CreateJob(ctx, c)
	}
	po := postoffice.New(postoffice.Config{Store: draftRewrite{campaignStore: d.campaigns, key: draft.Key},
		Tokens: d.po.Tokens(), BaseURL: d.po.BaseURL(), Logger: d.logger, Now: d.po.Now})
	return po.CreateJob(ctx, c)
}

// draftRewrite is the campaign store with CreateJob rewriting the draft key.
type draftRewrite struct {
	campaignStore
	key int64
}

func (s draftRewrite) CreateJob(ctx context.Context, job *postoffice.Job, text, html *postoffice.Message, rules postoffice.JobRules) error {
	job.Key = s.key
	return s.UpdateDraftJob(ctx, job, text, html, rules)
}

// madeUpConsumer is who a preview is written for when the selection matches no one.
func madeUpConsumer() *rewards.Consumer {
	return &rewards.Consumer{Email: "alex.sample@example.com", FirstName: "Alex", LastName: "Sample", City: "Springfield",
		Region: "IL", Country: "US", PostalCode: "62701", BirthYear: 1985, Gender: "f", Interests: []string{"golf", "travel"},
		Format: rewards.FormatHTML, Status: rewards.StatusActive, PointsBalance: 1250}
}

// msgPreview is the campaign's message rendered for one consumer, in both formats.
type msgPreview struct {
	Consumer string // who it is written for
	MadeUp   bool
	Note     string
	Text     renderedMessage
	HTML     renderedMessage
}

type renderedMessage struct {
	Has           bool
	Subject, Body string
	Error         string
}

// costView is the most a job can cost: recipients × the points each rule may award them,
// with each cap that applies (the client count on the recipients, a rule's budget on its
// points) shown rather than applied silently.
type costView struct {
	// Counted is false when the selection could not be counted (Problem says why).
	Counted     bool
	Problem     string
	Matching    int
	ClientCount int
	Recipients  int
	Rules       []ruleCost
	PerConsumer int64
	// Uncapped is Recipients × PerConsumer; Most is less when a rule's budget caps it.
	Uncapped int64
	Most     int64
	// HasBudget is set when the issuer has a budget; Left is what remains of it.
	HasBudget bool
	Budget    int64
	Spent     int64
	Left      int64
	Over      bool
}

type ruleCost struct {
	Label string
	rewards.RuleCost
}

type evaluation struct {
	preview msgPreview
	cost    costView
	// field and reason name the first problem of the selection, for the count endpoint.
	field, reason string
	// busy: the selection was not counted for too many running (answered 429).
	busy bool
}

// evaluate counts the form's selection, prices the job and renders the preview.
func (d campaignPages) evaluate(ctx context.Context, f *campaignForm) evaluation {
	var ev evaluation
	operator := userFrom(ctx).Operator()
	probe := *f
	probe.Errors = nil
	c := probe.campaign(operator)
	// The selection and rules are what matter here; other fields may still be half typed.
	keys := make([]string, 0, len(probe.Errors))
	for k := range probe.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	selOK := true
	for _, k := range keys {
		if selOK && (strings.HasPrefix(k, "sel_") || k == "selection") {
			ev.field, ev.reason, selOK = k, probe.Errors[k], false
		}
	}
	var where string
	var args []any
	raw := false
	if selOK {
		data, _ := probe.selection(operator)
		sel, err := postoffice.ParseSelection(data)
		var c *postoffice.Criteria
		if err == nil {
			c, err = sel.Check(probe.Issuer)
		}
		if err == nil {
			where, args, err = d.campaigns.CompileSelection(c)
			raw = sel.IsRaw()
		}
		if err != nil {
			field, reason := "selection", err.Error()
			var se *postoffice.SelectionError
			if errors.As(err, &se) {
				field, reason = probe.formField(se.Path), se.Reason
			}
			ev.field, ev.reason, selOK = field, reason, false
		}
	}
	iss, issOK := d.issuerOf(ctx, f)
	ctx = postoffice.WithSelectionOwner(ctx, iss.Slug)
	ev.preview = d.renderPreview(ctx, f, iss, operator, selOK, where, args, raw)
	if n, err := editorParseWhole(f.ClientCount); err == nil && n > 0 {
		ev.cost.ClientCount = int(n)
	}
	if !selOK {
		ev.cost.Problem = "The selection has a problem: " + ev.reason
	} else if n, err := d.campaigns.CheckSelection(ctx, where, args, raw); err != nil {
		ev.field, ev.reason, ev.busy = "selection", err.Error(), errors.Is(err, postoffice.ErrTooManySelections)
		ev.cost.Problem = "The selection could not be counted: " + err.Error()
	} else {
		ev.cost.Counted, ev.cost.Matching = true, n
		ev.cost.Recipients = min(n, ev.cost.ClientCount)
	}
	var jobStart, jobStop time.Time
	if c != nil {
		jobStart, _ = time.Parse(time.RFC3339, c.Start)
		jobStop, _ = time.Parse(time.RFC3339, c.Stop)
	} else {
		jobStart, _ = editorParseTime(f.Start)
		jobStop, _ = editorParseTime(f.Stop)
	}
	if issOK {
		have, err := d.campaigns.Rules(ctx, iss.ID)
		if err != nil {
			have = nil
		}
		spent, _ := d.campaigns.RulesSpent(ctx, iss.ID)
		for _, r := range have {
			if f.ruleChecked(r.ID) && !r.Retired {
				ev.cost.Rules = append(ev.cost.Rules, priceRule(r, spent[r.ID], ev.cost.Recipients, jobStart, jobStop))
			}
		}
		if budget, used, err := d.campaigns.BudgetOfIssuer(ctx, iss.ID); err == nil && budget > 0 {
			ev.cost.HasBudget, ev.cost.Budget, ev.cost.Spent = true, budget, used
		}
	}
	if spec, ok := f.Rule.spec(func(string, string) {}); ok && spec != nil && spec.Points > 0 {
		r := rewards.AwardRule{Description: "new rule", Type: rewards.RuleType(spec.Type), Points: spec.Points,
			Frequency: rewards.Frequency(spec.Frequency), Budget: spec.Budget}
		if p, err := time.ParseDuration(spec.Period); err == nil {
			r.Period = p
		}
		r.Start, _ = time.Parse(time.RFC3339, spec.Start)
		r.Stop, _ = time.Parse(time.RFC3339, spec.Stop)
		ev.cost.Rules = append(ev.cost.Rules, priceRule(r, 0, ev.cost.Recipients, jobStart, jobStop))
	}
	ev.cost.total()
	return ev
}

// total sums the rules' costs and sets them against the issuer's budget left.
func (c *costView) total() {
	costs := make([]rewards.RuleCost, len(c.Rules))
	for i, rc := range c.Rules {
		costs[i] = rc.RuleCost
	}
	c.Most, c.PerConsumer = rewards.JobCost(costs)
	c.Uncapped = rewards.UncappedCost(costs)
	c.Over, c.Left = rewards.OverBudget(c.Budget, c.Spent, c.Most)
}

// capsRecipients reports whether the client count holds the recipients below the matching
// consumers.
func (c costView) capsRecipients() bool { return c.Counted && c.Matching > c.Recipients }

// priceRule is rule r's cost in the job (rewards.AwardRule.Price), labelled for the page.
func priceRule(r rewards.AwardRule, spent int64, recipients int, jobStart, jobStop time.Time) ruleCost {
	label := string(r.Type)
	if r.Description != "" {
		label = r.Description + " (" + label + ")"
	}
	if r.ID != 0 {
		label = fmt.Sprintf("#%d %s", r.ID, label)
	}
	return ruleCost{Label: label, RuleCost: r.Price(spent, recipients, jobStart, jobStop)}
}

// renderPreview renders the form's messages for a consumer: for an operator, the first one
// the selection matches; for an issuer user always a made-up one, since a real consumer's
// name and address are not the issuer's to see (nor is whether a selection matches anyone
// in particular).
func (d campaignPages) renderPreview(ctx context.Context, f *campaignForm, iss rewards.Issuer, operator, selOK bool, where string, args []any, raw bool) msgPreview {
	var pv msgPreview
	var c *rewards.Consumer
	switch {
	case !operator:
		pv.Note = "This is a sample consumer, made up: previews never show issuers a real one."
	case !selOK:
		pv.Note = "The selection has a problem, so this is a made-up consumer."
	default:
		var err error
		c, err = d.campaigns.SampleConsumer(ctx, where, args, raw)
		switch {
		case err == nil:
		case rewards.ErrorCode(err) == rewards.ENOTFOUND:
			pv.Note = "No consumer matches the selection yet: this is a made-up one."
		default:
			pv.Note = "The selection could not be run, so this is a made-up consumer."
		}
	}
	if c == nil {
		c, pv.MadeUp = madeUpConsumer(), true
	}
	pv.Consumer = c.Email
	if name := c.FullName(); name != "" {
		pv.Consumer = name + " <" + c.Email + ">"
	}
	// Job 0, consumer 0: links in the preview name no invitation and earn nothing.
	token := d.po.Tokens().Encode(0, 0)
	ack, page, unsub := d.po.Links(token)
	name := iss.Name
	if name == "" {
		name = f.Issuer
	}
	v := &postoffice.TagValues{Consumer: c, Token: token, AckURL: ack, PageURL: page, UnsubscribeURL: unsub,
		AccountURL: postoffice.AccountURL(d.po.BaseURL(), token), IssuerName: name, JobName: f.Name}
	pv.Text = renderFormat(f.TextSubject, f.TextBody, v, false)
	pv.HTML = renderFormat(f.HTMLSubject, f.HTMLBody, v, true)
	return pv
}

func renderFormat(subject, body string, v *postoffice.TagValues, html bool) renderedMessage {
	m := renderedMessage{Has: subject != "" || strings.TrimSpace(body) != ""}
	if !m.Has {
		return m
	}
	st, err := postoffice.ParseTemplate(subject)
	if err != nil {
		m.Error = "Subject: " + err.Error()
		return m
	}
	bt, err := postoffice.ParseTemplate(body)
	if err != nil {
		m.Error = "Body: " + err.Error()
		return m
	}
	m.Subject, m.Body = st.String(v, false), bt.String(v, html)
	return m
}

// campaignPreview answers the editor's script with the preview pane for the form as typed.
func (d campaignPages) campaignPreview(w http.ResponseWriter, r *http.Request) {
	f, err := readCampaignForm(r)
	if err != nil {
		formReadFailed(w, err)
		return
	}
	ev := d.evaluate(r.Context(), f)
	d.render(w, r, previewPane(ev.preview))
}

// countProblem names the field of the selection that is wrong.
type countProblem struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// countAnswer is the count endpoint's JSON.
type countAnswer struct {
	Count      int    `json:"count"`
	Recipients int    `json:"recipients"`
	MostCost   int64  `json:"most_cost"`
	BudgetLeft *int64 `json:"budget_left,omitempty"`
	OverBudget bool   `json:"over_budget"`
	// CostHTML is the cost preview box, rendered as the page renders it.
	CostHTML string        `json:"cost_html"`
	Error    *countProblem `json:"error,omitempty"`
}

// campaignCount counts the consumers the form's selection matches (in the store, with the
// compiled, parameterized selection) and prices the job. A selection that is wrong answers
// 422 with the field and reason.
func (d campaignPages) campaignCount(w http.ResponseWriter, r *http.Request) {
	f, err := readCampaignForm(r)
	if err != nil {
		formReadFailed(w, err)
		return
	}
	ev := d.evaluate(r.Context(), f)
	var b strings.Builder
	if err := costBox(ev.cost).Render(r.Context(), &b); err != nil {
		d.fail(w, r, err)
		return
	}
	ans := countAnswer{Count: ev.cost.Matching, Recipients: ev.cost.Recipients, MostCost: ev.cost.Most,
		OverBudget: ev.cost.Over, CostHTML: b.String()}
	if ev.cost.HasBudget {
		ans.BudgetLeft = &ev.cost.Left
	}
	status := http.StatusOK
	if !ev.cost.Counted {
		ans.Error = &countProblem{ev.field, ev.reason}
		status = http.StatusUnprocessableEntity
		if ev.busy {
			status = http.StatusTooManyRequests
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ans)
}

// jobActionKind is one of the actions that change a job's state.
type jobActionKind int

const (
	actSchedule jobActionKind = iota
	actSuspend
	actResume
	actStop
)

// refusal says why the action cannot be done to the job now, or "".
func (a jobActionKind) refusal(job *postoffice.Job, now time.Time) string {
	switch a {
	case actSchedule:
		if job.State != postoffice.JobDraft {
			return fmt.Sprintf("Campaign %d is %s already: only a draft can be scheduled.", job.Key, job.State)
		}
		if !now.Before(job.Stop) {
			return fmt.Sprintf("Campaign %d's stop date has passed: edit its dates before scheduling it.", job.Key)
		}
	case actSuspend:
		if job.State != postoffice.JobScheduled && job.State != postoffice.JobRunning {
			return fmt.Sprintf("Campaign %d is %s: only a scheduled or running campaign can be suspended.", job.Key, job.State)
		}
		if job.Suspended {
			return fmt.Sprintf("Campaign %d is suspended already.", job.Key)
		}
	case actResume:
		if !job.Suspended || job.State == postoffice.JobDone {
			return fmt.Sprintf("Campaign %d is not suspended: there is nothing to resume.", job.Key)
		}
	case actStop:
		if job.State == postoffice.JobDone {
			return fmt.Sprintf("Campaign %d has ended already.", job.Key)
		}
	}
	return ""
}

func (d campaignPages) jobAction(a jobActionKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		job := d.jobFor(w, r)
		if job == nil {
			return
		}
		back := d.backTo(r, job)
		if why := a.refusal(job, d.now()); why != "" {
			d.redirect(w, r, back, why)
			return
		}
		ctx := r.Context()
		var err error
		var done string
		switch a {
		case actSuspend:
			err, done = d.po.Suspend(ctx, job.Key), "suspended: nothing more is sent until you resume it"
		case actResume:
			err, done = d.po.Resume(ctx, job.Key), "resumed"
		case actStop:
			err, done = d.po.Stop(ctx, job.Key), "stopped: nothing more is sent for it"
		}
		if err != nil {
			d.fail(w, r, err)
			return
		}
		d.redirect(w, r, back, fmt.Sprintf("Campaign %d %s.", job.Key, done))
	}
}

// backTo is where an action returns: the toolbox page it was posted from, or the job's report.
func (d campaignPages) backTo(r *http.Request, job *postoffice.Job) string {
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host && strings.HasPrefix(ref.Path, "/") {
		if p := safeNext(ref.Path); p != "/" {
			return p
		}
	}
	return fmt.Sprintf("/jobs/%d", job.Key)
}

// duplicateJob makes a new draft with the job's messages, selection, client count and active
// rules, running from now for a week, and opens it in the editor.
func (d campaignPages) duplicateJob(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	ctx := r.Context()
	text, html, err := d.campaigns.Messages(ctx, job)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	rules, err := d.campaigns.JobRules(ctx, job.Key)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	now := d.now().UTC().Truncate(time.Minute)
	c := &postoffice.Campaign{Issuer: job.IssuerSlug, Name: "Copy of " + job.Name, Start: now.Format(time.RFC3339),
		Stop: now.Add(7 * 24 * time.Hour).Format(time.RFC3339), ClientCount: job.ClientCount, Draft: true}
	if job.Selection != "" {
		c.Selection = json.RawMessage(job.Selection)
	}
	if text != nil {
		c.Text = &postoffice.MessageSpec{Subject: text.Subject, Body: text.Body}
	}
	if html != nil {
		c.HTML = &postoffice.MessageSpec{Subject: html.Subject, Body: html.Body}
	}
	retired := 0
	for _, rule := range rules {
		if rule.Retired {
			retired++
			continue
		}
		c.RuleIDs = append(c.RuleIDs, rule.ID)
	}
	dup, _, err := d.po.CreateJob(ctx, c)
	var fe *postoffice.FieldError
	if errors.As(err, &fe) {
		d.redirect(w, r, d.backTo(r, job), fmt.Sprintf("Campaign %d could not be duplicated: %s", job.Key, fe.Error()))
		return
	}
	if err != nil {
		d.fail(w, r, err)
		return
	}
	flash := fmt.Sprintf("Campaign %d copied to draft %d, running from now for a week: check it and schedule it.", job.Key, dup.Key)
	if retired > 0 {
		flash += fmt.Sprintf(" %d retired rule(s) were left out.", retired)
	}
	d.redirect(w, r, fmt.Sprintf("/campaigns/%d/edit", dup.Key), flash)
}

// testFormats says how many messages a test of job sends: one per format it has.
func testFormats(job *postoffice.Job) string {
	switch {
	case job.TextMessageID != 0 && job.HTMLMessageID != 0:
		return "two messages, one per format (text and HTML)"
	case job.HTMLMessageID != 0:
		return "one message, in HTML"
	default:
		return "one message, in text"
	}
}

// testJob sends the job's message to one address.
func (d campaignPages) testJob(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	back := d.backTo(r, job)
	if d.testSender == nil {
		d.redirect(w, r, back, "Test sends are not set up on this server.")
		return
	}
	to := strings.TrimSpace(r.PostFormValue("to"))
	if to == "" {
		d.redirect(w, r, back, "Enter the address to send the test to.")
		return
	}
	if err := d.testSender.SendTest(r.Context(), job, to, userFrom(r.Context())); err != nil {
		d.logger.Warn("toolbox: test send", "job", job.Key, "err", err)
		d.redirect(w, r, back, "The test was not sent: "+err.Error())
		return
	}
	d.redirect(w, r, back, fmt.Sprintf("A test of campaign %d was sent to %s: %s, marked [TEST]; its links earn nothing.", job.Key, to, testFormats(job)))
}

// jobActions is the row of action buttons for a job that fit its state: edit (a draft),
// schedule, suspend, resume, stop, duplicate, and send a test when the server can. Each
// posts to /jobs/{key}/ACTION and comes back to the page it was on with a flash.
func (d jobPages) jobActions(job *postoffice.Job) templ.Component {
	return jobActionsView(job, d.canTest)
}
