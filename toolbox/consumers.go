package toolbox

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"pointpost/rewards"
)

const (
	// consumersPageSize is how many consumers one page of the search lists.
	consumersPageSize = 50
	// exportBatch is how many consumers the export reads per query: each query is short, so
	// a slow download holds no read transaction open.
	exportBatch = 1000
	// maxImportBytes bounds an uploaded consumer CSV.
	maxImportBytes = 200 << 20
	// maxRowErrorsKept is how many bad records an import lists; the rest are counted.
	maxRowErrorsKept = 1000
	// importsKept is how many imports, finished or running, the import page remembers.
	importsKept = 20
	// importUploadWindow is how long an upload may take to arrive (maxImportBytes at about
	// 1 Mbit/s).
	importUploadWindow = 30 * time.Minute
)

// consumerStore is what the operators' consumer pages read and change.
//
// A search looks for text in field ("" for any of e-mail, name and city, "email", "name",
// "city") by match ("prefix" or "contains"), among consumers of status ("" for all); pages
// run newest first, below beforeID (0: from the newest).
type consumerStore interface {
	SearchConsumers(ctx context.Context, field, match, text string, status rewards.ConsumerStatus,
		beforeID int64, limit int) ([]rewards.Consumer, error)
	CountConsumersMatching(ctx context.Context, field, match, text string, status rewards.ConsumerStatus) (int, error)
	ConsumerByID(ctx context.Context, id int64) (*rewards.Consumer, error)
	Timeline(ctx context.Context, email string) (*rewards.Timeline, error)
	SetConsumerStatus(ctx context.Context, email string, status rewards.ConsumerStatus) error
	// UpdateConsumer writes every own field of a consumer as an operator edited them.
	UpdateConsumer(ctx context.Context, c *rewards.Consumer) error
	// SetStatusOfConsumersMatching gives status to the consumers a search finds whose
	// status is one of from, and returns how many changed.
	SetStatusOfConsumersMatching(ctx context.Context, field, match, text string, filter rewards.ConsumerStatus,
		status rewards.ConsumerStatus, from []rewards.ConsumerStatus) (int, error)
	// ImportConsumerFile upserts the consumers of a CSV file, reporting each bad record.
	ImportConsumerFile(ctx context.Context, r io.Reader, report func(rewards.RowError)) (inserted, updated int, err error)
}

// consumerPages are the operators' consumer search, timeline, export and CSV import.
type consumerPages struct {
	base
	store consumerStore
}

func (d consumerPages) consumerRoutes(r chi.Router, imports *importTracker) {
	r.Get("/consumers", d.consumers)
	r.Get("/consumers/export.csv", d.exportConsumers)
	r.Get("/consumers/{id:[0-9]+}", d.consumer)
	r.Post("/consumers/{id:[0-9]+}/status", d.setConsumerStatus)
	r.Get("/consumers/{id:[0-9]+}/edit", d.editConsumer)
	r.Post("/consumers/{id:[0-9]+}/edit", d.saveConsumer)
	r.Get("/consumers/bulk", d.confirmBulk)
	r.Post("/consumers/bulk", d.bulkStatus)
	r.Get("/consumers/import", d.importForm(imports))
	r.Post("/consumers/import", d.uploadImport(imports))
	r.Get("/consumers/import/{id:[0-9]+}", d.importPage(imports))
	r.Get("/consumers/import/{id:[0-9]+}.json", d.importJSON(imports))
	r.Post("/consumers/import/{id:[0-9]+}/cancel", d.cancelImport(imports))
}

// consumerQuery is the consumer search as the form and its links carry it.
type consumerQuery struct {
	Text   string
	Field  string // "", email, name, city
	Match  string // prefix, contains
	Status rewards.ConsumerStatus
	Before int64
}

var consumerStatuses = []rewards.ConsumerStatus{rewards.StatusActive, rewards.StatusUnsubscribed,
	rewards.StatusBounced, rewards.StatusSuppressed}

// parseConsumerQuery reads the search from v, a URL's query or a form. Returns the errors
// by form field for values the form does not offer; the query then holds the defaults for them.
func parseConsumerQuery(v url.Values) (consumerQuery, map[string]string) {
	q := consumerQuery{Text: strings.TrimSpace(v.Get("q")), Field: v.Get("field"), Match: v.Get("match"),
		Status: rewards.ConsumerStatus(v.Get("status"))}
	errs := map[string]string{}
	switch q.Field {
	case "", "email", "name", "city":
	default:
		errs["field"] = "Search in e-mail, name or city."
		q.Field = ""
	}
	switch q.Match {
	case "":
		q.Match = "prefix"
	case "prefix", "contains":
	default:
		errs["match"] = "Match the start of a value or any part of it."
		q.Match = "prefix"
	}
	if q.Status != "" && !containsStatus(consumerStatuses, q.Status) {
		errs["status"] = "Status is active, unsubscribed, bounced or suppressed."
		q.Status = ""
	}
	if b := v.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			errs["before"] = "That page link is broken: start from the first page."
		} else {
			q.Before = n
		}
	}
	if len(q.Text) > 200 {
		errs["q"] = "Search for at most 200 characters."
		q.Text = q.Text[:200]
	}
	return q, errs
}

func containsStatus(list []rewards.ConsumerStatus, s rewards.ConsumerStatus) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// values is the query as URL parameters, without the page cursor.
func (q consumerQuery) values() url.Values {
	v := url.Values{}
	if q.Text != "" {
		v.Set("q", q.Text)
	}
	if q.Field != "" {
		v.Set("field", q.Field)
	}
	if q.Match != "" && q.Match != "prefix" {
		v.Set("match", q.Match)
	}
	if q.Status != "" {
		v.Set("status", string(q.Status))
	}
	return v
}

// link is path with the query and, when before is not 0, the page cursor.
func (q consumerQuery) link(path string, before int64) string {
	v := q.values()
	if before != 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// consumersView is one page of the consumer search.
type consumersView struct {
	Q      consumerQuery
	Errors map[string]string
	Rows   []rewards.Consumer
	Total  int
	// Next is the link to the next page, empty on the last.
	Next string
}

func (d consumerPages) consumers(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q, errs := parseConsumerQuery(r.URL.Query())
	v := consumersView{Q: q, Errors: errs}
	rows, err := d.store.SearchConsumers(ctx, q.Field, q.Match, q.Text, q.Status, q.Before, consumersPageSize)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if v.Total, err = d.store.CountConsumersMatching(ctx, q.Field, q.Match, q.Text, q.Status); err != nil {
		d.fail(w, r, err)
		return
	}
	v.Rows = rows
	if len(rows) == consumersPageSize {
		v.Next = q.link("/consumers", rows[len(rows)-1].ID)
	}
	if len(errs) > 0 {
		w.WriteHeader(http.StatusBadRequest)
	}
	p := d.page(w, r, "Consumers", "consumers")
	p.Styles = append(p.Styles, "consumers.css")
	d.render(w, r, consumersPage(p, v))
}

// consumerFor loads the consumer of the URL's {id}, or answers 404 and returns nil.
func (d consumerPages) consumerFor(w http.ResponseWriter, r *http.Request) *rewards.Consumer {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return nil
	}
	c, err := d.store.ConsumerByID(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return nil
	}
	return c
}

func (d consumerPages) consumer(w http.ResponseWriter, r *http.Request) {
	c := d.consumerFor(w, r)
	if c == nil {
		return
	}
	tl, err := d.store.Timeline(r.Context(), c.Email)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	var report bytes.Buffer
	if err := tl.WriteText(&report); err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.page(w, r, tl.Consumer.Email, "consumers")
	p.Styles = append(p.Styles, "consumers.css")
	d.render(w, r, consumerPage(p, tl, timelineRows(tl), report.String()))
}

// consumerActions are the statuses an operator may set, with what the button says.
var consumerActions = []struct {
	Status rewards.ConsumerStatus
	Label  string
	Done   string
}{
	{rewards.StatusUnsubscribed, "Unsubscribe", "unsubscribed"},
	{rewards.StatusSuppressed, "Suppress", "suppressed"},
	{rewards.StatusActive, "Reactivate", "active again"},
}

func (d consumerPages) setConsumerStatus(w http.ResponseWriter, r *http.Request) {
	c := d.consumerFor(w, r)
	if c == nil {
		return
	}
	status := rewards.ConsumerStatus(r.PostFormValue("status"))
	done := ""
	for _, a := range consumerActions {
		if a.Status == status {
			done = a.Done
		}
	}
	if done == "" {
		http.Error(w, "Choose unsubscribed, suppressed or active.", http.StatusBadRequest)
		return
	}
	if err := d.store.SetConsumerStatus(r.Context(), c.Email, status); err != nil {
		d.fail(w, r, err)
		return
	}
	d.logger.Info("consumer status set by operator", "consumer", c.ID, "status", status, "by", userFrom(r.Context()).Email)
	d.redirect(w, r, fmt.Sprintf("/consumers/%d", c.ID), c.Email+" is "+done+".")
}

// consumerEdit is the operator's edit form of a consumer: each of rewards.ConsumerFields as
// typed, and what is wrong with them.
type consumerEdit struct {
	Consumer *rewards.Consumer
	Values   map[string]string
	Errors   fieldErrors
}

func (d consumerPages) editConsumer(w http.ResponseWriter, r *http.Request) {
	c := d.consumerFor(w, r)
	if c == nil {
		return
	}
	v := consumerEdit{Consumer: c, Values: map[string]string{}, Errors: fieldErrors{}}
	for _, f := range rewards.ConsumerFields {
		v.Values[f.Name] = f.Get(c)
	}
	d.renderStatus(w, r, http.StatusOK, consumerEditPage(d.page(w, r, "Edit "+c.Email, "consumers"), v))
}

// saveConsumer writes the edit form over the consumer's own fields: an emptied field is
// cleared. Each refused value is said beside its field, and nothing is written.
func (d consumerPages) saveConsumer(w http.ResponseWriter, r *http.Request) {
	c := d.consumerFor(w, r)
	if c == nil {
		return
	}
	v := consumerEdit{Consumer: c, Values: map[string]string{}, Errors: fieldErrors{}}
	edited := rewards.Consumer{ID: c.ID}
	for _, f := range rewards.ConsumerFields {
		val := strings.TrimSpace(r.PostFormValue(f.Name))
		v.Values[f.Name] = val
		if len(val) > 200 {
			v.Errors[f.Name] = "Keep it under 200 characters."
			continue
		}
		if err := f.Set(&edited, val, d.now().Year()); err != nil {
			v.Errors[f.Name] = err.Error()
		}
	}
	if len(v.Errors) == 0 {
		err := d.store.UpdateConsumer(r.Context(), &edited)
		if err == nil {
			d.logger.Info("consumer edited by operator", "consumer", c.ID, "by", userFrom(r.Context()).Email)
			d.redirect(w, r, fmt.Sprintf("/consumers/%d", c.ID), edited.Email+" saved.")
			return
		}
		if !errors.Is(err, rewards.ErrExists) {
			d.fail(w, r, err)
			return
		}
		v.Errors["email"] = edited.Email + " is another consumer's address."
	}
	d.renderStatus(w, r, http.StatusUnprocessableEntity, consumerEditPage(d.page(w, r, "Edit "+c.Email, "consumers"), v))
}

// bulkAction is a status change an operator may make to every consumer a search finds.
type bulkAction struct {
	Name, Label string
	Status      rewards.ConsumerStatus
	// From are the statuses it changes; the others stay (a bounced address stays bounced
	// when unsubscribed).
	From []rewards.ConsumerStatus
}

var bulkActions = []bulkAction{
	{"unsubscribe", "Unsubscribe", rewards.StatusUnsubscribed, []rewards.ConsumerStatus{rewards.StatusActive}},
	{"suppress", "Suppress", rewards.StatusSuppressed, []rewards.ConsumerStatus{rewards.StatusActive,
		rewards.StatusUnsubscribed, rewards.StatusBounced}},
}

// bulkView is the confirmation of a bulk action: what it does to how many.
type bulkView struct {
	Q      consumerQuery
	Action bulkAction
	// Matching is how many consumers the search finds now.
	Matching int
	// Error says why the action was not done.
	Error string
}

// bulkRequest reads the search and the action of a bulk request; it answers 400 and returns
// false for a search or action the pages do not offer.
func (d consumerPages) bulkRequest(w http.ResponseWriter, r *http.Request, values url.Values) (bulkView, bool) {
	q, errs := parseConsumerQuery(values)
	delete(errs, "before") // an action takes every page
	if len(errs) > 0 {
		http.Error(w, "That search is not one the consumers page makes: search again, then choose the action.", http.StatusBadRequest)
		return bulkView{}, false
	}
	q.Before = 0
	v := bulkView{Q: q}
	for _, a := range bulkActions {
		if a.Name == values.Get("action") {
			v.Action = a
		}
	}
	if v.Action.Name == "" {
		http.Error(w, "Choose unsubscribe or suppress.", http.StatusBadRequest)
		return bulkView{}, false
	}
	return v, true
}

// confirmBulk asks the operator to confirm a bulk action, saying how many it will change.
func (d consumerPages) confirmBulk(w http.ResponseWriter, r *http.Request) {
	v, ok := d.bulkRequest(w, r, r.URL.Query())
	if !ok {
		return
	}
	var err error
	if v.Matching, err = d.store.CountConsumersMatching(r.Context(), v.Q.Field, v.Q.Match, v.Q.Text, v.Q.Status); err != nil {
		d.fail(w, r, err)
		return
	}
	d.renderStatus(w, r, http.StatusOK, bulkConfirmPage(d.page(w, r, v.Action.Label+" consumers", "consumers"), v))
}

// bulkStatus does a confirmed bulk action, if the search still finds as many consumers as
// the confirmation said; otherwise it asks again.
func (d consumerPages) bulkStatus(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "The form did not arrive whole.", http.StatusBadRequest)
		return
	}
	v, ok := d.bulkRequest(w, r, r.PostForm)
	if !ok {
		return
	}
	ctx := r.Context()
	confirmed, err := strconv.Atoi(r.PostFormValue("count"))
	if err != nil || confirmed < 0 {
		http.Error(w, "The confirmation did not say how many consumers: confirm on the consumers page.", http.StatusBadRequest)
		return
	}
	if v.Matching, err = d.store.CountConsumersMatching(ctx, v.Q.Field, v.Q.Match, v.Q.Text, v.Q.Status); err != nil {
		d.fail(w, r, err)
		return
	}
	if v.Matching != confirmed {
		v.Error = fmt.Sprintf("The search finds %s consumers now, not the %s you confirmed: nothing was changed. Confirm again.",
			thousands(v.Matching), thousands(confirmed))
		d.renderStatus(w, r, http.StatusConflict, bulkConfirmPage(d.page(w, r, v.Action.Label+" consumers", "consumers"), v))
		return
	}
	n, err := d.store.SetStatusOfConsumersMatching(ctx, v.Q.Field, v.Q.Match, v.Q.Text, v.Q.Status, v.Action.Status, v.Action.From)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	d.logger.Info("consumers' status set in bulk by operator", "status", v.Action.Status, "changed", n, "matching", v.Matching,
		"search", v.Q.values().Encode(), "by", userFrom(ctx).Email)
	d.redirect(w, r, v.Q.link("/consumers", 0), fmt.Sprintf("%s of the %s consumers found are now %s; the others were already %s or %s.",
		thousands(n), thousands(v.Matching), v.Action.Status, v.Action.Status, bulkKept(v.Action)))
}

// bulkKept names the statuses a bulk action leaves as they are.
func bulkKept(a bulkAction) string {
	var kept []string
	for _, s := range consumerStatuses {
		if s != a.Status && !containsStatus(a.From, s) {
			kept = append(kept, string(s))
		}
	}
	if len(kept) == 0 {
		return "gone"
	}
	return strings.Join(kept, " or ")
}

// exportColumns are the export's columns: the import's (rewards.ConsumerFields), then what
// only the export has.
var exportColumns = append(rewards.ConsumerFieldNames(), "status", "points_balance", "id")

func (d consumerPages) exportConsumers(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q, errs := parseConsumerQuery(r.URL.Query())
	delete(errs, "before") // the export is every page
	if len(errs) > 0 {
		msgs := make([]string, 0, len(errs))
		for _, m := range errs {
			msgs = append(msgs, m)
		}
		sort.Strings(msgs)
		http.Error(w, strings.Join(msgs, " "), http.StatusBadRequest)
		return
	}
	// The first page is read before the headers go out, so a failing query still gets an
	// error page.
	batch, err := d.store.SearchConsumers(ctx, q.Field, q.Match, q.Text, q.Status, 0, exportBatch)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	extendWrite(rc)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="consumers-%s.csv"`, d.now().Format("20060102-1504")))
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write(exportColumns)
	rec := make([]string, len(exportColumns))
	for len(batch) > 0 {
		for _, c := range batch {
			for i, f := range rewards.ConsumerFields {
				rec[i] = csvCell(f.Get(&c))
			}
			n := len(rewards.ConsumerFields)
			rec[n], rec[n+1], rec[n+2] = csvCell(string(c.Status)), csvCell(strconv.FormatInt(c.PointsBalance, 10)),
				csvCell(strconv.FormatInt(c.ID, 10))
			if err := cw.Write(rec); err != nil {
				return // the client went away
			}
		}
		cw.Flush()
		if cw.Error() != nil || len(batch) < exportBatch {
			return
		}
		extendWrite(rc)
		if batch, err = d.store.SearchConsumers(ctx, q.Field, q.Match, q.Text, q.Status, batch[len(batch)-1].ID, exportBatch); err != nil {
			if ctx.Err() == nil {
				d.logger.Error("consumer export cut short", "err", err)
			}
			// Aborting the response tells the browser the file is incomplete, rather than
			// handing it a silently truncated one.
			panic(http.ErrAbortHandler)
		}
	}
}

// timelineRow is one event of a consumer's timeline as the page lists it.
type timelineRow struct {
	At      time.Time
	order   int
	Kind    string
	JobKey  int64
	JobName string
	What    string
	Points  string
	Why     string
	// Tone is good (points given), bad (mail refused, points refused) or empty.
	Tone string
}

// timelineRows merges the timeline's lists into one table, oldest first; an invitation
// comes before its acknowledgement, that before its accrual and posting.
func timelineRows(t *rewards.Timeline) []timelineRow {
	var rows []timelineRow
	for _, d := range t.Deliveries {
		row := timelineRow{order: 0, Kind: "invitation", JobKey: d.JobKey, JobName: d.JobName}
		switch {
		case d.Sent:
			row.At, row.What = d.SentAt, "sent (from "+d.IssuerName+")"
			if d.Received {
				row.Why = "acknowledged"
			}
		case d.Rejected:
			row.At, row.What, row.Why, row.Tone = d.UpdatedAt, "rejected by her mail server", d.LastError, "bad"
		case d.Failed:
			row.At, row.What, row.Why, row.Tone = d.UpdatedAt, fmt.Sprintf("given up after %d retries", d.RetryCount), d.LastError, "bad"
		case d.RetryCount > 0:
			row.At, row.What = d.UpdatedAt, fmt.Sprintf("not sent yet: %d retries, next attempt %s", d.RetryCount, d.NextAttempt.Format("2006-01-02 15:04"))
			row.Why = d.LastError
		default:
			row.At, row.What = d.JobStart, "selected, not sent yet"
		}
		rows = append(rows, row)
	}
	for _, a := range t.Acknowledgements {
		row := timelineRow{At: a.At, order: 1, Kind: "acknowledgement", JobKey: a.JobKey, JobName: a.JobName, What: a.Channel}
		if a.Source != "" {
			row.What += " (" + a.Source + ")"
		}
		rule := ruleName(a.RuleID, a.RuleDescription)
		switch {
		case a.Awarded:
			row.Points, row.Why, row.Tone = "+"+thousands(a.Points)+" awarded", "earned under "+rule, "good"
		case a.RuleID == 0:
			row.Points, row.Why, row.Tone = "none", orDefault(a.Reason, "no rule of the campaign awards a "+a.Channel), "bad"
		default:
			row.Points, row.Why, row.Tone = "none", rule+": "+orDefault(a.Reason, "no reason recorded"), "bad"
		}
		rows = append(rows, row)
	}
	for _, a := range t.Accruals {
		row := timelineRow{At: a.At, order: 2, Kind: "accrual", JobKey: a.JobKey, JobName: a.JobName,
			What:   "held in " + a.IssuerName + "'s account under " + ruleName(a.RuleID, a.RuleDescription),
			Points: thousands(a.Points) + " accrued"}
		if a.Posted {
			row.Why = "posted " + a.PostedAt.Format("2006-01-02 15:04:05")
		} else {
			row.Why = "pending settlement"
		}
		rows = append(rows, row)
	}
	redeemed := map[int64]bool{}
	for _, r := range t.Redemptions {
		redeemed[r.ID] = true
	}
	for _, e := range t.Postings {
		from := e.Counter
		if e.IssuerName != "" {
			from = e.IssuerName
		}
		row := timelineRow{At: e.At, order: 3, Kind: "ledger", JobKey: e.JobKey, JobName: e.JobName,
			Points: signedDigits(e.Amount) + " posted", Why: e.Memo}
		switch {
		case e.Kind == "accrual":
			row.What = fmt.Sprintf("settled from %s (accrual %d)", from, e.AccrualID)
			row.Why = ""
		case e.Kind == "redemption" && redeemed[e.RedemptionID]:
			continue // the redemption's own row says it
		case e.Kind == "redemption":
			row.What = fmt.Sprintf("paid to %s for redemption %d", from, e.RedemptionID)
		default:
			row.What = "correction against " + from
		}
		rows = append(rows, row)
	}
	for _, r := range t.Redemptions {
		rows = append(rows, timelineRow{At: r.At, order: 4, Kind: "redemption",
			What: fmt.Sprintf("redeemed %q (item %d)", r.ItemName, r.ItemID), Points: signedDigits(-r.Cost) + " spent"})
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].At.Equal(rows[j].At) {
			return rows[i].At.Before(rows[j].At)
		}
		return rows[i].order < rows[j].order
	})
	return rows
}

func ruleName(id int64, description string) string {
	if description == "" {
		return fmt.Sprintf("rule %d", id)
	}
	return fmt.Sprintf("rule %d %q", id, description)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func signedDigits(n int64) string {
	if n > 0 {
		return "+" + thousands(n)
	}
	return thousands(n)
}

// importTracker runs uploaded consumer CSVs into the store in the background, one at a time,
// and remembers the last importsKept of them for their pages. Each import's goroutine ends
// with its import, or when base ends (the server shuts down); nothing else runs.
type importTracker struct {
	store  consumerStore
	logger *slog.Logger
	now    func() time.Time
	base   context.Context

	mu      sync.Mutex
	lastID  int
	running *consumerImport
	imports []*consumerImport // oldest first
}

func newImportTracker(d consumerPages) *importTracker {
	return &importTracker{store: d.store, logger: d.logger, now: d.now, base: d.baseContext()}
}

// consumerImport is one upload being imported, or imported.
type consumerImport struct {
	ID       int
	FileName string
	Size     int64
	By       string
	Started  time.Time
	// read and lines count the bytes and line ends the importer has read of the file.
	read, lines atomic.Int64
	cancel      context.CancelFunc

	mu        sync.Mutex
	ended     time.Time
	inserted  int
	updated   int
	bad       int
	rowErrors []rewards.RowError
	err       string
	canceled  bool
	shutdown  bool
}

// importStatus is a consistent copy of an import's state, for a page or its JSON.
type importStatus struct {
	ID                     int
	FileName, By           string
	Size, Read, Lines      int64
	Started, Ended         time.Time
	Running                bool
	Inserted, Updated, Bad int
	RowErrors              []rewards.RowError
	Err                    string
	// Canceled is set when someone stopped the import, Shutdown (with Canceled) when the
	// server's shutdown did.
	Canceled bool
	Shutdown bool
}

// Percent is the share of the file read.
func (s importStatus) Percent() float64 {
	if s.Size <= 0 {
		return 100
	}
	return min(100, float64(s.Read)*100/float64(s.Size))
}

// More is how many bad records are counted but not listed.
func (s importStatus) More() int { return s.Bad - len(s.RowErrors) }

func (ci *consumerImport) status() importStatus {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return importStatus{ID: ci.ID, FileName: ci.FileName, By: ci.By, Size: ci.Size, Read: ci.read.Load(),
		Lines: ci.lines.Load(), Started: ci.Started, Ended: ci.ended, Running: ci.ended.IsZero(),
		Inserted: ci.inserted, Updated: ci.updated, Bad: ci.bad,
		RowErrors: append([]rewards.RowError(nil), ci.rowErrors...), Err: ci.err, Canceled: ci.canceled,
		Shutdown: ci.shutdown}
}

func (ci *consumerImport) reportRow(e rewards.RowError) {
	ci.mu.Lock()
	ci.bad++
	if len(ci.rowErrors) < maxRowErrorsKept {
		ci.rowErrors = append(ci.rowErrors, e)
	}
	ci.mu.Unlock()
}

var errImportRunning = errors.New("an import is already running: wait for it to finish, or stop it")

// current returns the running import, or nil.
func (t *importTracker) current() *consumerImport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running
}

// start imports f (name, size bytes, uploaded by) in the background and removes the file when
// done. Returns errImportRunning, leaving f to the caller, while another import runs.
func (t *importTracker) start(f *os.File, name string, size int64, by string) (*consumerImport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running != nil {
		return nil, errImportRunning
	}
	t.lastID++
	// The import outlives the request that uploaded it; the cancel button, the server's
	// shutdown or its end stops it.
	ctx, cancel := context.WithCancel(t.base)
	ci := &consumerImport{ID: t.lastID, FileName: name, Size: size, By: by, Started: t.now(), cancel: cancel}
	t.running = ci
	t.imports = append(t.imports, ci)
	if len(t.imports) > importsKept {
		t.imports = append(t.imports[:0:0], t.imports[len(t.imports)-importsKept:]...)
	}
	go func() {
		defer cancel()
		defer os.Remove(f.Name())
		defer f.Close()
		inserted, updated, err := t.store.ImportConsumerFile(ctx, &countingReader{r: f, n: &ci.read, lines: &ci.lines}, ci.reportRow)
		// Ended and no longer running in one step: a page that sees it done may upload the next.
		t.mu.Lock()
		ci.mu.Lock()
		ci.inserted, ci.updated, ci.ended = inserted, updated, t.now()
		switch {
		case err != nil && ctx.Err() != nil:
			ci.canceled, ci.shutdown = true, t.base.Err() != nil
		case err != nil:
			ci.err = err.Error()
		}
		bad := ci.bad
		ci.mu.Unlock()
		t.running = nil
		t.mu.Unlock()
		t.logger.Info("consumer import ended", "import", ci.ID, "file", name, "inserted", inserted, "updated", updated,
			"bad", bad, "shutdown", t.base.Err() != nil, "err", err)
	}()
	return ci, nil
}

// get returns the import with id, or nil.
func (t *importTracker) get(id int) *consumerImport {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ci := range t.imports {
		if ci.ID == id {
			return ci
		}
	}
	return nil
}

// recent returns the imports remembered, newest first.
func (t *importTracker) recent() []importStatus {
	t.mu.Lock()
	list := append([]*consumerImport(nil), t.imports...)
	t.mu.Unlock()
	out := make([]importStatus, 0, len(list))
	for i := len(list) - 1; i >= 0; i-- {
		out = append(out, list[i].status())
	}
	return out
}

// countingReader counts the bytes and line ends read through it.
type countingReader struct {
	r        io.Reader
	n, lines *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	c.lines.Add(int64(bytes.Count(p[:n], []byte{'\n'})))
	return n, err
}

// importForm is what the import page shows above the list of imports.
type importForm struct {
	Error   string
	Running *importStatus
}

func (d consumerPages) importForm(t *importTracker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d.renderImportForm(w, r, t, http.StatusOK, "")
	}
}

func (d consumerPages) renderImportForm(w http.ResponseWriter, r *http.Request, t *importTracker, status int, msg string) {
	f := importForm{Error: msg}
	if ci := t.current(); ci != nil {
		s := ci.status()
		f.Running = &s
	}
	p := d.page(w, r, "Import consumers", "consumers")
	p.Styles = append(p.Styles, "consumers.css")
	p.Scripts = append(p.Scripts, "import.js")
	if status != http.StatusOK {
		w.WriteHeader(status)
	}
	d.render(w, r, importFormPage(p, f, t.recent()))
}

// uploadImport takes a CSV upload into a temporary file (not memory), checks its header at
// once, and starts importing it in the background.
func (d consumerPages) uploadImport(t *importTracker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t.current() != nil {
			d.renderImportForm(w, r, t, http.StatusConflict, "An import is already running: wait for it to finish, or stop it, before uploading another file.")
			return
		}
		// A large file on a slow line takes longer than the server's ReadTimeout allows a
		// request, and then its WriteTimeout would cut the answer: the upload gets
		// importUploadWindow to arrive, and its answer a minute after.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(importUploadWindow))
		f, name, size, err := receiveUpload(w, r)
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		if err != nil {
			d.renderImportForm(w, r, t, http.StatusBadRequest, err.Error())
			return
		}
		handed := false
		defer func() {
			if !handed {
				f.Close()
				os.Remove(f.Name())
			}
		}()
		if _, err := rewards.NewConsumerCSV(f); err != nil {
			d.renderImportForm(w, r, t, http.StatusBadRequest, "Nothing was imported: "+err.Error()+".")
			return
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			d.fail(w, r, err)
			return
		}
		ci, err := t.start(f, name, size, userFrom(r.Context()).Email)
		if err != nil {
			d.renderImportForm(w, r, t, http.StatusConflict, "An import is already running: wait for it to finish, or stop it, before uploading another file.")
			return
		}
		handed = true
		d.redirect(w, r, fmt.Sprintf("/consumers/import/%d", ci.ID), "")
	}
}

// receiveUpload copies the multipart field "file" into a temporary file, rewound. Returns
// an error saying what to fix for a request without a file, an empty file or one larger
// than maxImportBytes.
func receiveUpload(w http.ResponseWriter, r *http.Request) (f *os.File, name string, size int64, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxImportBytes+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, "", 0, errors.New("choose a CSV file to upload")
	}
	tooLarge := fmt.Errorf("the file is larger than %d MB: split it, and import the parts one after the other", maxImportBytes>>20)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = tooLarge
		}
		if err != nil {
			if f != nil {
				f.Close()
				os.Remove(f.Name())
			}
			return nil, "", 0, fmt.Errorf("the upload broke off: %w", err)
		}
		if part.FormName() != "file" || f != nil {
			continue
		}
		if f, err = os.CreateTemp("", "pointpost-import-*.csv"); err != nil {
			return nil, "", 0, err
		}
		name = part.FileName()
		size, err = io.Copy(f, io.LimitReader(part, maxImportBytes+1))
		if errors.As(err, &mbe) || size > maxImportBytes {
			err = tooLarge
		}
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, "", 0, err
		}
	}
	if f == nil || size == 0 {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
		return nil, "", 0, errors.New("choose a CSV file to upload: the file was empty or missing")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, "", 0, err
	}
	return f, name, size, nil
}

// importFor returns the import of the URL's {id}, or answers 404 and returns nil.
func (d consumerPages) importFor(w http.ResponseWriter, r *http.Request, t *importTracker) *consumerImport {
	id, err := strconv.Atoi(chi.URLParam(r, "id"))
	ci := t.get(id)
	if err != nil || ci == nil {
		d.notFound(w, r)
		return nil
	}
	return ci
}

func (d consumerPages) importPage(t *importTracker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ci := d.importFor(w, r, t)
		if ci == nil {
			return
		}
		s := ci.status()
		p := d.page(w, r, "Import "+strconv.Itoa(s.ID), "consumers")
		p.Styles = append(p.Styles, "consumers.css")
		if s.Running {
			p.Scripts = append(p.Scripts, "live.js")
		}
		d.render(w, r, importPage(p, s))
	}
}

// importProgressJSON is /consumers/import/{id}.json: the import's figures, and the texts and
// bar widths live.js puts on its page.
type importProgressJSON struct {
	ID        int    `json:"id"`
	Running   bool   `json:"running"`
	Size      int64  `json:"size"`
	BytesRead int64  `json:"bytes_read"`
	LinesRead int64  `json:"lines_read"`
	Inserted  int    `json:"inserted"`
	Updated   int    `json:"updated"`
	Bad       int    `json:"bad"`
	Error     string `json:"error,omitempty"`
	Canceled  bool   `json:"canceled,omitempty"`
	// Shutdown is set, with Canceled, when the server's shutdown stopped the import.
	Shutdown bool `json:"shutdown,omitempty"`
	liveJSON
}

func (d consumerPages) importJSON(t *importTracker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ci := d.importFor(w, r, t)
		if ci == nil {
			return
		}
		s := ci.status()
		writeJSON(w, importProgressJSON{ID: s.ID, Running: s.Running, Size: s.Size, BytesRead: s.Read, LinesRead: s.Lines,
			Inserted: s.Inserted, Updated: s.Updated, Bad: s.Bad, Error: s.Err, Canceled: s.Canceled, Shutdown: s.Shutdown,
			liveJSON: liveJSON{Text: s.liveText(), Width: map[string]float64{"import-bar": s.Percent()}, Done: !s.Running}})
	}
}

// liveText is the import's progress as its page words it, by data-live name.
func (s importStatus) liveText() map[string]string {
	return map[string]string{
		"import-read":    byteSize(s.Read) + " of " + byteSize(s.Size),
		"import-percent": fmt.Sprintf("%.0f%%", s.Percent()),
		"import-lines":   thousands(s.Lines),
		"import-bad":     thousands(s.Bad),
		"import-phase":   s.phase(),
	}
}

func (s importStatus) phase() string {
	switch {
	case !s.Running:
		return "done"
	case s.Read >= s.Size:
		return "writing the last rows…"
	default:
		return "reading and writing…"
	}
}

// byteSize writes n bytes as "812 B", "14.2 KB", "180.0 MB".
func byteSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f KB", float64(n)/1000)
	default:
		return fmt.Sprintf("%.1f MB", float64(n)/1000/1000)
	}
}

func (d consumerPages) cancelImport(t *importTracker) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ci := d.importFor(w, r, t)
		if ci == nil {
			return
		}
		ci.cancel()
		d.redirect(w, r, fmt.Sprintf("/consumers/import/%d", ci.ID), "Stopping the import: the rows written so far stay.")
	}
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// stateText says in a word or two where the import is.
func (s importStatus) stateText() string {
	switch {
	case s.Running:
		return fmt.Sprintf("running, %.0f%%", s.Percent())
	case s.Err != "":
		return "failed"
	case s.Shutdown:
		return "stopped by shutdown"
	case s.Canceled:
		return "stopped"
	default:
		return "done"
	}
}
