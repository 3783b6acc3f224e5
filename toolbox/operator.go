package toolbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// mailServerStore is what the mail-servers and outbox pages read and change.
type mailServerStore interface {
	MailServers(ctx context.Context) ([]postoffice.MailServerStatus, error)
	Jobs(ctx context.Context, states ...postoffice.JobState) ([]*postoffice.Job, error)
	// OutboxSearch lists captured messages by recipient and campaign, each with the head of
	// its data (its header); total is how many match.
	OutboxSearch(ctx context.Context, to, campaign string, beforeID int64, limit int) (msgs []postoffice.OutboxMessage, total int, err error)
	OutboxMessageByID(ctx context.Context, id int64) (*postoffice.OutboxMessage, error)
	// The addresses an operator approved for test sends, beside the toolbox users' own.
	TestAddresses(ctx context.Context) ([]rewards.TestAddress, error)
	ApproveTestAddress(ctx context.Context, email, note, by string) error
	RemoveTestAddress(ctx context.Context, email string) error
}

// mailServerPages are the operators' mail servers with their routes, and the outbox.
type mailServerPages struct {
	base
	store  mailServerStore
	routes RouteDesk
	po     *postoffice.PostOffice
}

// outboxPageSize is how many captured messages one outbox page lists.
const outboxPageSize = 50

func (d mailServerPages) mailServerRoutes(r chi.Router) {
	r.Get("/mail-servers", d.mailServers)
	r.Get("/mail-servers.json", d.mailServersJSON)
	if d.routes != nil {
		r.Post("/mail-servers/routes", d.saveRoute)
		r.Post("/mail-servers/routes/remove", d.removeRoute)
	}
	r.Get("/outbox", d.outbox)
	r.Get("/outbox/{id}", d.outboxMessage)
	r.Get("/outbox/{id}/download", d.downloadOutboxMessage)
	r.Post("/outbox/test-addresses", d.approveTestAddress)
	r.Post("/outbox/test-addresses/remove", d.removeTestAddress)
}

// serverRow is one mail server as the mail-servers page shows it.
type serverRow struct {
	postoffice.MailServerStatus
	// Jobs are the running jobs assigned to the server.
	Jobs []*postoffice.Job
	// Next marks the server the post office gives the next job to (claim 8); NextWhy says
	// why, when the post office runs in this process.
	Next    bool
	NextWhy string
	// Age is how long ago the server reported.
	Age time.Duration
	// Alive is whether the server still answers by the post office's rule: its heartbeat
	// younger than the lease and not stopped. A dead one is given no job.
	Alive bool
}

// mailServerRows gathers each mail server's latest status, live from the post office when
// this process runs the mail servers, else as last saved in the store, with its running jobs.
func (d mailServerPages) mailServerRows(ctx context.Context) ([]serverRow, error) {
	var statuses []postoffice.MailServerStatus
	if d.po != nil {
		statuses = d.po.Statuses()
	}
	if len(statuses) == 0 {
		var err error
		if statuses, err = d.store.MailServers(ctx); err != nil {
			return nil, err
		}
	}
	jobs, err := d.store.Jobs(ctx, postoffice.JobRunning)
	if err != nil {
		return nil, err
	}
	now, lease := d.now(), d.lease()
	var live []postoffice.MailServerStatus
	for _, st := range statuses {
		if st.Alive(now, lease) {
			live = append(live, st)
		}
	}
	// The post office's own choice, counting the jobs it gave since the servers reported
	// and whose turn it is; by the saved statuses of the live servers alone when it runs
	// elsewhere (a web-only process).
	var next postoffice.Assignment
	if d.po != nil {
		next = d.po.NextAssignment()
	}
	if next.MailServerID == 0 {
		next.MailServerID = postoffice.SoonestIdle(live)
	}
	rows := make([]serverRow, len(statuses))
	for i, st := range statuses {
		st.Relay = hideRelayPassword(st.Relay)
		if st.Name == "" {
			st.Name = fmt.Sprintf("mail-%d", st.ID)
		}
		row := serverRow{MailServerStatus: st, Alive: st.Alive(now, lease)}
		if row.Next = row.Alive && st.ID == next.MailServerID; row.Next {
			row.NextWhy = next.Reason
		}
		if !st.ReportedAt.IsZero() {
			row.Age = now.Sub(st.ReportedAt)
		}
		for _, j := range jobs {
			if j.MailServerID == st.ID {
				row.Jobs = append(row.Jobs, j)
			}
		}
		rows[i] = row
	}
	return rows, nil
}

// lease is how long after its last report a mail server counts as alive: the post
// office's heartbeat timeout (serve --lease), its default without a post office.
func (d mailServerPages) lease() time.Duration {
	if d.po != nil {
		return d.po.HeartbeatTimeout()
	}
	return postoffice.DefaultLease
}

// serverGroup is the mail servers of one process as the page lists them; Heading is false
// when every server is of one process: the page then shows no process.
type serverGroup struct {
	Process string
	Heading bool
	Rows    []serverRow
}

// serversView is the mail servers as the page lists them: the live ones by process, then
// those not answering (their heartbeat older than Lease, or stopped), folded.
type serversView struct {
	Live, Silent []serverGroup
	Lease        time.Duration
	// SilentCount is how many servers do not answer.
	SilentCount int
}

// serversViewOf groups rows, by process name then ID.
func serversViewOf(rows []serverRow, lease time.Duration) serversView {
	rows = slices.Clone(rows)
	slices.SortStableFunc(rows, func(a, b serverRow) int {
		if c := strings.Compare(a.Process, b.Process); c != 0 {
			return c
		}
		return a.ID - b.ID
	})
	several := slices.ContainsFunc(rows, func(s serverRow) bool { return s.Process != rows[0].Process })
	v := serversView{Lease: lease}
	add := func(groups []serverGroup, s serverRow) []serverGroup {
		if n := len(groups); n > 0 && groups[n-1].Process == s.Process {
			groups[n-1].Rows = append(groups[n-1].Rows, s)
			return groups
		}
		return append(groups, serverGroup{Process: s.Process, Heading: several, Rows: []serverRow{s}})
	}
	for _, s := range rows {
		if s.Alive {
			v.Live = add(v.Live, s)
		} else {
			v.Silent = add(v.Silent, s)
			v.SilentCount++
		}
	}
	return v
}

// processName is how the page names a process: by serve --name.
func processName(name string) string {
	if name == "" {
		return "unnamed process"
	}
	return "process " + name
}

func (d mailServerPages) mailServers(w http.ResponseWriter, r *http.Request) {
	d.renderMailServers(w, r, routeForm{})
}

// renderMailServers shows the mail servers and their routes, with form in the new-route
// form (or, when it names one, that route's).
func (d mailServerPages) renderMailServers(w http.ResponseWriter, r *http.Request, form routeForm) {
	rows, err := d.mailServerRows(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	routes, err := d.routeRows(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.page(w, r, "Mail servers", "mail-servers")
	p.Scripts = append(p.Scripts, "live.js")
	d.render(w, r, mailServersPage(p, serversViewOf(rows, d.lease()), serversLayout(rows)+"|"+routesLayout(routes), routes, form, d.routes != nil))
}

// mailServerJSON is one mail server in /mail-servers.json.
type mailServerJSON struct {
	ID            int       `json:"id"`
	Name          string    `json:"name"`
	Process       string    `json:"process"`
	Alive         bool      `json:"alive"`
	State         string    `json:"state"`
	Relay         string    `json:"relay"`
	Jobs          []int64   `json:"jobs"`
	Queue         int       `json:"queue"`
	Rate          float64   `json:"rate"`
	IdleInSeconds float64   `json:"idle_in_seconds"`
	Next          bool      `json:"next"`
	Sent          int64     `json:"sent"`
	Retried       int64     `json:"retried"`
	Rejected      int64     `json:"rejected"`
	ReportedAt    time.Time `json:"reported_at,omitzero"`
}

// liveJSON is what live.js polls: Text sets the text of each element whose data-live names
// the key, Width the width in percent of each whose data-live-width does. A Layout other
// than the page's data-live-layout, or Done, makes the page reload.
type liveJSON struct {
	Text   map[string]string  `json:"text"`
	Width  map[string]float64 `json:"width,omitempty"`
	Layout string             `json:"layout,omitempty"`
	Done   bool               `json:"done,omitempty"`
}

func (d mailServerPages) mailServersJSON(w http.ResponseWriter, r *http.Request) {
	rows, err := d.mailServerRows(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	routes, err := d.routeRows(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	out := struct {
		Servers []mailServerJSON `json:"servers"`
		Routes  []routeJSON      `json:"routes"`
		liveJSON
	}{Servers: []mailServerJSON{}, Routes: []routeJSON{},
		liveJSON: liveJSON{Text: map[string]string{}, Layout: serversLayout(rows) + "|" + routesLayout(routes)}}
	for _, rt := range routes {
		out.Routes = append(out.Routes, routeJSONOf(rt.Route, rt.State))
		for k, v := range rt.liveText() {
			out.Text[k] = v
		}
	}
	for _, s := range rows {
		m := mailServerJSON{ID: s.ID, Name: s.Name, Process: s.Process, Alive: s.Alive, State: s.State, Relay: s.Relay, Jobs: []int64{}, Queue: s.Queue,
			Rate: s.Rate, IdleInSeconds: s.IdleIn().Seconds(), Next: s.Next, Sent: s.Sent, Retried: s.Retried,
			Rejected: s.Rejected, ReportedAt: s.ReportedAt}
		for _, j := range s.Jobs {
			m.Jobs = append(m.Jobs, j.Key)
		}
		out.Servers = append(out.Servers, m)
		for k, v := range s.liveText() {
			out.Text[k] = v
		}
	}
	writeJSON(w, out)
}

// liveText is the server's figures as the page shows them, keyed by their data-live names.
func (s serverRow) liveText() map[string]string {
	k := fmt.Sprintf("ms-%d-", s.ID)
	next := ""
	if s.Next {
		next = "next job goes here"
	}
	return map[string]string{k + "next-why": s.NextWhy,
		k + "state": s.State, k + "queue": thousands(s.Queue), k + "rate": rateText(s.Rate),
		k + "idle": idleText(s.IdleIn()), k + "sent": thousands(s.Sent), k + "retried": thousands(s.Retried),
		k + "rejected": thousands(s.Rejected), k + "reported": reportedText(s.Age, s.ReportedAt.IsZero()), k + "next": next,
		k + "note": s.Note,
	}
}

// serversLayout names the servers, whether each answers and their jobs: when it changes,
// the page reloads to show the new rows and links, and to move a server that stops (or
// starts again) answering.
func serversLayout(rows []serverRow) string {
	var b strings.Builder
	for _, s := range rows {
		fmt.Fprintf(&b, "%d", s.ID)
		if !s.Alive {
			b.WriteString(" silent")
		}
		b.WriteByte(':')
		for _, j := range s.Jobs {
			fmt.Fprintf(&b, "%d,", j.Key)
		}
		b.WriteByte(';')
	}
	return b.String()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// hideRelayPassword hides the password of a relay URL. The mail servers report their relay
// already redacted; this keeps a password off the page whatever reported it.
func hideRelayPassword(relay string) string {
	u, err := url.Parse(relay)
	if err != nil {
		if i, j := strings.Index(relay, "://"), strings.LastIndex(relay, "@"); i >= 0 && j > i {
			return relay[:i+3] + "xxxxx" + relay[j:]
		}
		return relay
	}
	return u.Redacted()
}

func rateText(rate float64) string {
	if rate <= 0 {
		return "—"
	}
	if rate < 10 {
		return fmt.Sprintf("%.1f/s", rate)
	}
	return thousands(int64(rate+0.5)) + "/s"
}

// idleText is an estimated time to idle: "idle now", "42s", "3m 20s", "2h 05m".
func idleText(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		return "idle now"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// reportedText is the age of a server's heartbeat: "reported just now", "reported 2s ago".
func reportedText(age time.Duration, never bool) string {
	switch {
	case never:
		return "never reported"
	case age < 2*time.Second:
		return "reported just now"
	case age < time.Minute:
		return fmt.Sprintf("reported %ds ago", int(age.Seconds()))
	case age < time.Hour:
		return fmt.Sprintf("reported %dm ago", int(age.Minutes()))
	default:
		return fmt.Sprintf("reported %dh ago", int(age.Hours()))
	}
}

// outboxQuery is the outbox search as its form and links carry it.
type outboxQuery struct {
	To, Campaign string
	Before       int64
}

// maxOutboxSearch bounds what the outbox search looks for, in bytes.
const maxOutboxSearch = 200

// link is the outbox page of the query, below before when it is not 0.
func (q outboxQuery) link(before int64) string {
	v := url.Values{}
	if q.To != "" {
		v.Set("to", q.To)
	}
	if q.Campaign != "" {
		v.Set("campaign", q.Campaign)
	}
	if before != 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	if len(v) == 0 {
		return "/outbox"
	}
	return "/outbox?" + v.Encode()
}

// outboxRow is a captured message as the outbox lists it: its campaign, and the From and
// Subject its reader sees (not the envelope's bounce address).
type outboxRow struct {
	ID                          int64
	To, Campaign, From, Subject string
	CreatedAt                   time.Time
}

// outboxView is one page of the outbox.
type outboxView struct {
	Q     outboxQuery
	Rows  []outboxRow
	Total int
	// Next is the link to the older messages, empty on the last page.
	Next string
	// Campaigns are the names of the campaigns, offered to the campaign search.
	Campaigns []string
	Approved  []rewards.TestAddress
}

func (d mailServerPages) outbox(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	before, ok := pageCursor(r, "before")
	if !ok {
		d.notFound(w, r)
		return
	}
	q := outboxQuery{To: strings.TrimSpace(r.URL.Query().Get("to")), Campaign: strings.TrimSpace(r.URL.Query().Get("campaign")), Before: before}
	if len(q.To) > maxOutboxSearch || len(q.Campaign) > maxOutboxSearch {
		http.Error(w, fmt.Sprintf("Search for at most %d characters.", maxOutboxSearch), http.StatusBadRequest)
		return
	}
	msgs, total, err := d.store.OutboxSearch(ctx, q.To, q.Campaign, before, outboxPageSize)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v := outboxView{Q: q, Total: total}
	for _, m := range msgs {
		v.Rows = append(v.Rows, outboxRowOf(m))
	}
	if len(msgs) == outboxPageSize {
		v.Next = q.link(msgs[len(msgs)-1].ID)
	}
	jobs, err := d.store.Jobs(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for _, j := range jobs {
		if !slices.Contains(v.Campaigns, j.Name) {
			v.Campaigns = append(v.Campaigns, j.Name)
		}
	}
	if v.Approved, err = d.store.TestAddresses(ctx); err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.page(w, r, "Outbox", "outbox")
	p.Styles = append(p.Styles, "outbox.css")
	d.render(w, r, outboxListPage(p, v))
}

// outboxRowOf reads the From and Subject fields of m's header (m.Data holds at least the
// header); a header that does not parse leaves the envelope's sender and no subject.
func outboxRowOf(m postoffice.OutboxMessage) outboxRow {
	row := outboxRow{ID: m.ID, To: m.To, Campaign: m.Subject, From: m.From, CreatedAt: m.CreatedAt}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.Data)))
	if err != nil {
		return row
	}
	mh := gomail.Header{Header: message.Header{Header: h}}
	if s, err := mh.Subject(); err == nil {
		row.Subject = s
	} else {
		row.Subject = mh.Get("Subject")
	}
	if from, err := mh.Text("From"); err == nil && from != "" {
		row.From = from
	}
	return row
}

// approveTestAddress adds an address to those "send a test" may mail, on the outbox page
// where the tests show.
func (d mailServerPages) approveTestAddress(w http.ResponseWriter, r *http.Request) {
	email, note := strings.TrimSpace(r.PostFormValue("email")), r.PostFormValue("note")
	if err := d.store.ApproveTestAddress(r.Context(), email, note, userFrom(r.Context()).Email); err != nil {
		d.redirect(w, r, "/outbox", "The address was not approved: "+err.Error())
		return
	}
	d.redirect(w, r, "/outbox", "Tests may now be sent to "+strings.ToLower(email)+".")
}

// removeTestAddress takes an address off the approved test addresses.
func (d mailServerPages) removeTestAddress(w http.ResponseWriter, r *http.Request) {
	email := strings.TrimSpace(r.PostFormValue("email"))
	if err := d.store.RemoveTestAddress(r.Context(), email); err != nil {
		if rewards.ErrorCode(err) == rewards.ENOTFOUND {
			d.redirect(w, r, "/outbox", email+" was not an approved test address.")
			return
		}
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/outbox", "Tests may no longer be sent to "+email+".")
}

// pageCursor reads a keyset cursor from the query: 0 when absent; ok is false when it is
// not a positive number.
func pageCursor(r *http.Request, name string) (int64, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}

// outboxMessageFor loads the captured message of the URL's {id}, or answers 404 and
// returns nil.
func (d mailServerPages) outboxMessageFor(w http.ResponseWriter, r *http.Request) *postoffice.OutboxMessage {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		d.notFound(w, r)
		return nil
	}
	m, err := d.store.OutboxMessageByID(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return nil
	}
	return m
}

func (d mailServerPages) outboxMessage(w http.ResponseWriter, r *http.Request) {
	m := d.outboxMessageFor(w, r)
	if m == nil {
		return
	}
	p := d.page(w, r, "Message "+strconv.FormatInt(m.ID, 10), "outbox")
	p.Styles = append(p.Styles, "outbox.css")
	d.render(w, r, outboxPage(p, m, outboxRowOf(*m), readCaptured(m.Data)))
}

// downloadOutboxMessage hands over a captured message as it would have been sent, as an
// .eml file a mail client opens.
func (d mailServerPages) downloadOutboxMessage(w http.ResponseWriter, r *http.Request) {
	m := d.outboxMessageFor(w, r)
	if m == nil {
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="message-%d.eml"`, m.ID))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(m.Data)
}

// captured is an outbox message decoded for reading: its header fields and its text and
// HTML bodies, with the transfer encoding and charset undone.
type captured struct {
	Header [][2]string
	Text   string
	HTML   string
	Err    string
}

// maxCapturedParts bounds the parts readCaptured walks in one message.
const maxCapturedParts = 32

// readCaptured decodes a captured message, single part or multipart, keeping the first text
// and the first HTML body; one that does not parse is shown raw with why.
func readCaptured(data []byte) captured {
	var c captured
	r, err := gomail.CreateReader(bytes.NewReader(data))
	if err != nil {
		c.Err, c.Text = err.Error(), string(data)
		return c
	}
	for f := r.Header.Fields(); f.Next(); {
		v, err := f.Text()
		if err != nil {
			v = f.Value()
		}
		c.Header = append(c.Header, [2]string{f.Key(), v})
	}
	for range maxCapturedParts {
		part, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			c.Err = err.Error()
			break
		}
		h, ok := part.Header.(*gomail.InlineHeader)
		if !ok {
			continue // an attachment
		}
		ct, _, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil || h.Get("Content-Type") == "" {
			ct = "text/plain"
		}
		if (ct == "text/html" && c.HTML != "") || (ct != "text/html" && c.Text != "") || !strings.HasPrefix(ct, "text/") {
			continue
		}
		body, err := io.ReadAll(io.LimitReader(part.Body, 8<<20))
		if err != nil {
			c.Err = err.Error()
		}
		if ct == "text/html" {
			c.HTML = string(body)
		} else {
			c.Text = string(body)
		}
	}
	return c
}

// RouteDesk is how the toolbox manages the mail servers' routes: their saved settings, and
// the state of each at work in the mail process.
type RouteDesk interface {
	// Routes returns the saved routes; their URLs carry passwords, which no page shows.
	Routes(ctx context.Context) ([]postoffice.Route, error)
	// SaveRoute checks a route (a *postoffice.RouteError naming the field), saves it, and
	// puts it to work without a restart.
	SaveRoute(ctx context.Context, r postoffice.Route) error
	// RemoveRoute removes a route and stops sending by it: a *postoffice.RouteError while a
	// job is pinned to it.
	RemoveRoute(ctx context.Context, name string) error
	// RouteStatus is each route at work now, by priority; nil when this process sends none.
	RouteStatus(ctx context.Context) []postoffice.RouteState
}

// routeRow is a route as the mail-servers page shows it: its settings, and its state at
// work when it is.
type routeRow struct {
	postoffice.Route
	State   *postoffice.RouteState
	working bool
}

func (d mailServerPages) routeRows(ctx context.Context) ([]routeRow, error) {
	if d.routes == nil {
		return nil, nil
	}
	saved, err := d.routes.Routes(ctx)
	if err != nil {
		return nil, err
	}
	states := d.routes.RouteStatus(ctx)
	rows := make([]routeRow, len(saved))
	for i, rt := range saved {
		rt.URL = hideRelayPassword(rt.URL)
		rows[i] = routeRow{Route: rt}
		for j := range states {
			if states[j].Name == rt.Name {
				rows[i].State, rows[i].working = &states[j], true
			}
		}
	}
	return rows, nil
}

// stateText is the route's state in a word: down, throttled, cooling, up, or idle when no
// mail server sends by it in this process.
func (r routeRow) stateText() string {
	switch s := r.State; {
	case s == nil:
		return "not at work"
	case s.Down:
		return "down"
	case s.Cooling:
		return "throttled, cooling"
	default:
		return "up"
	}
}

// liveText is the route's figures as the page shows them, keyed by their data-live names.
func (r routeRow) liveText() map[string]string {
	k := "route-" + r.Name + "-"
	out := map[string]string{k + "state": r.stateText(), k + "rate": "—", k + "connections": "—"}
	s := r.State
	if s == nil {
		return out
	}
	out[k+"rate"] = rateText(s.Rate)
	conns := "no cap"
	if s.Connections > 0 {
		conns = strconv.Itoa(s.Connections)
	}
	out[k+"connections"] = fmt.Sprintf("%d in use of %s", s.InUse, conns)
	out[k+"sent"] = thousands(s.Sent)
	out[k+"throttled"] = thousands(s.Throttled)
	for i, q := range s.Quotas {
		out[fmt.Sprintf("%squota-%d", k, i)] = fmt.Sprintf("%s of %s in %s", thousands(q.Used), thousands(q.Limit), q.Window)
	}
	if w := s.Warmup; w != nil {
		out[k+"warmup"] = fmt.Sprintf("%s of today's %s", thousands(w.Used), thousands(w.Limit))
	}
	return out
}

func routesLayout(rows []routeRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s:%d:%t;", r.Name, len(r.Quotas), r.working)
	}
	return b.String()
}

// routeForm is a route's settings as the form holds them, kept as typed when refused.
type routeForm struct {
	Name, URL, Rate, Connections, Priority, Quotas, Warmup string
	// Editing names the route changed; its URL left empty keeps the saved one.
	Editing bool
	Error   string
	Field   string
}

func formOf(rt postoffice.Route) routeForm {
	var quotas []string
	for _, q := range rt.Quotas {
		quotas = append(quotas, fmt.Sprintf("%d/%s", q.Limit, q.Window))
	}
	f := routeForm{Name: rt.Name, Connections: strconv.Itoa(rt.Connections), Priority: strconv.Itoa(rt.Priority),
		Quotas: strings.Join(quotas, ", "), Editing: true}
	if rt.Rate > 0 {
		f.Rate = strconv.FormatFloat(rt.Rate, 'f', -1, 64)
	}
	if rt.Warmup != nil {
		f.Warmup = rt.Warmup.String()
	}
	return f
}

// route reads the form into a route. It keeps the saved URL when editing with the URL left
// empty. A field that does not parse comes back as a *postoffice.RouteError naming it.
func (f routeForm) route(saved []postoffice.Route) (postoffice.Route, error) {
	rt := postoffice.Route{Name: strings.TrimSpace(f.Name), URL: strings.TrimSpace(f.URL)}
	bad := func(field, problem string) error {
		return &postoffice.RouteError{Route: rt.Name, Field: field, Problem: problem}
	}
	if rt.URL == "" && f.Editing {
		for _, s := range saved {
			if s.Name == rt.Name {
				rt.URL = s.URL
			}
		}
	}
	var err error
	if v := strings.TrimSpace(f.Rate); v != "" {
		if rt.Rate, err = strconv.ParseFloat(v, 64); err != nil {
			return rt, bad("rate", "must be a number of messages a second, more than 0")
		}
		if rt.Rate <= 0 {
			return rt, bad("rate", "must be more than 0 (leave it empty for no rate of ours)")
		}
	}
	if v := strings.TrimSpace(f.Connections); v != "" {
		if rt.Connections, err = strconv.Atoi(v); err != nil {
			return rt, bad("connections", "must be a whole number, 0 for no limit")
		}
	}
	if v := strings.TrimSpace(f.Priority); v != "" {
		if rt.Priority, err = strconv.Atoi(v); err != nil {
			return rt, bad("priority", "must be a whole number, 0 or more")
		}
	}
	for i, q := range strings.FieldsFunc(f.Quotas, func(r rune) bool { return r == ',' || r == '\n' }) {
		if strings.TrimSpace(q) == "" {
			continue
		}
		quota, err := postoffice.ParseQuota(q)
		if err != nil {
			return rt, bad(fmt.Sprintf("quota %d", i+1), strings.TrimPrefix(err.Error(), fmt.Sprintf("quota %q: ", q)))
		}
		rt.Quotas = append(rt.Quotas, quota)
	}
	if rt.Warmup, err = postoffice.ParseWarmup(f.Warmup); err != nil {
		return rt, bad("warmup", strings.TrimPrefix(err.Error(), fmt.Sprintf("warm-up %q: ", strings.Join(strings.Fields(f.Warmup), " "))))
	}
	return rt, postoffice.ValidateRoute(rt)
}

// saveRoute adds or changes a route from the form. A refused setting shows the page again
// with the form as typed (its URL, which may hold a password, left out) and the field named.
func (d mailServerPages) saveRoute(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f := routeForm{Name: r.PostFormValue("name"), URL: r.PostFormValue("url"), Rate: r.PostFormValue("rate"),
		Connections: r.PostFormValue("connections"), Priority: r.PostFormValue("priority"),
		Quotas: r.PostFormValue("quotas"), Warmup: r.PostFormValue("warmup"), Editing: r.PostFormValue("editing") != ""}
	saved, err := d.routes.Routes(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	rt, err := f.route(saved)
	if err == nil {
		err = d.routes.SaveRoute(ctx, rt)
	}
	var re *postoffice.RouteError
	if errors.As(err, &re) {
		f.Error, f.Field, f.URL = re.Error(), re.Field, ""
		w.WriteHeader(http.StatusUnprocessableEntity)
		d.renderMailServers(w, r, f)
		return
	}
	if err != nil {
		d.fail(w, r, err)
		return
	}
	flash := "Route " + rt.Name + " saved; the mail servers use it now."
	if !slices.ContainsFunc(d.routes.RouteStatus(ctx), func(s postoffice.RouteState) bool { return s.Name == rt.Name }) {
		// This process sends by the embedded outbox or runs no mail servers.
		flash = "Route " + rt.Name + " saved; the mail servers use it from their next start."
	}
	d.redirect(w, r, "/mail-servers", flash)
}

func (d mailServerPages) removeRoute(w http.ResponseWriter, r *http.Request) {
	name := r.PostFormValue("name")
	err := d.routes.RemoveRoute(r.Context(), name)
	var re *postoffice.RouteError
	switch {
	case errors.As(err, &re):
		d.redirect(w, r, "/mail-servers", "Route "+name+" was not removed: "+re.Error())
	case err != nil && rewards.ErrorCode(err) == rewards.ENOTFOUND:
		d.redirect(w, r, "/mail-servers", "There is no route "+name+".")
	case err != nil:
		d.fail(w, r, err)
	default:
		d.redirect(w, r, "/mail-servers", "Route "+name+" removed; the mail servers no longer use it.")
	}
}

// routeJSON is a route in /mail-servers.json and the JSON API. Its URL has no password.
type routeJSON struct {
	Name        string      `json:"name"`
	URL         string      `json:"url"`
	Rate        float64     `json:"rate"`
	Connections int         `json:"connections"`
	Priority    int         `json:"priority"`
	Quotas      []quotaJSON `json:"quotas"`
	// Warmup is the warm-up's schedule, with today's cap (as Limit) and, at work, its use.
	Warmup *warmupJSON `json:"warmup,omitempty"`
	// State is the route at work: absent when no mail server of this process sends by it.
	State *routeStateJSON `json:"state,omitempty"`
}

type warmupJSON struct {
	Schedule string    `json:"schedule"`
	Start    time.Time `json:"start"`
	Today    int       `json:"today"`
	Used     *int      `json:"used,omitempty"`
}

type quotaJSON struct {
	Limit  int    `json:"limit"`
	Window string `json:"window"`
	Used   *int   `json:"used,omitempty"`
}

type routeStateJSON struct {
	Rate        float64 `json:"rate"`
	Connections int     `json:"connections"`
	InUse       int     `json:"in_use"`
	Sent        int64   `json:"sent"`
	Throttled   int64   `json:"throttled"`
	Down        bool    `json:"down"`
	Cooling     bool    `json:"cooling"`
}

func routeJSONOf(rt postoffice.Route, st *postoffice.RouteState) routeJSON {
	out := routeJSON{Name: rt.Name, URL: hideRelayPassword(rt.URL), Rate: rt.Rate, Connections: rt.Connections,
		Priority: rt.Priority, Quotas: []quotaJSON{}}
	for _, q := range rt.Quotas {
		qj := quotaJSON{Limit: q.Limit, Window: q.Window.String()}
		if st != nil {
			for _, sq := range st.Quotas {
				if sq.Window == q.Window {
					used := sq.Used
					qj.Used = &used
				}
			}
		}
		out.Quotas = append(out.Quotas, qj)
	}
	if w := rt.Warmup; w != nil {
		out.Warmup = &warmupJSON{Schedule: w.String(), Start: w.Start, Today: w.Cap(time.Now())}
		if st != nil && st.Warmup != nil {
			used := st.Warmup.Used
			out.Warmup.Today, out.Warmup.Used = st.Warmup.Limit, &used
		}
	}
	if st != nil {
		out.State = &routeStateJSON{Rate: st.Rate, Connections: st.Connections, InUse: st.InUse, Sent: st.Sent,
			Throttled: st.Throttled, Down: st.Down, Cooling: st.Cooling}
	}
	return out
}
