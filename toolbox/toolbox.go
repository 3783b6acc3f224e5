// Package toolbox is the issuers' and operators' browser admin (toolbox 170 with its web
// server 172). For now it shows the jobs with their counts, the mail servers and the
// embedded outbox, so a fresh `make run` shows the delivery loop working.
package toolbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/a-h/templ"
	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
)

// Store is what the toolbox reads.
type Store interface {
	Jobs(ctx context.Context, states ...postoffice.JobState) ([]*postoffice.Job, error)
	JobCounts(ctx context.Context, key int64) (postoffice.JobCounts, error)
	MailServers(ctx context.Context) ([]postoffice.MailServerStatus, error)
	Outbox(ctx context.Context, limit int) ([]postoffice.OutboxMessage, int, error)
	OutboxMessageByID(ctx context.Context, id int64) (*postoffice.OutboxMessage, error)
}

// Deps are the toolbox's collaborators.
type Deps struct {
	Store      Store
	PostOffice *postoffice.PostOffice
	Logger     *slog.Logger
	// IsNotFound tells a missing object from a failure.
	IsNotFound func(error) bool
}

// JobRow is a job with its delivery counts.
type JobRow struct {
	Job    *postoffice.Job
	Counts postoffice.JobCounts
}

// Percent is the share of the job's deliveries that have been dealt with.
func (r JobRow) Percent() int {
	if r.Counts.Total == 0 {
		return 0
	}
	done := r.Counts.Total - r.Counts.Pending
	return done * 100 / r.Counts.Total
}

// Handler serves the toolbox pages.
func Handler(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	r := chi.NewRouter()
	r.Use(localOnly)
	r.Get("/", d.home)
	r.Get("/outbox/{id}", d.outboxMessage)
	return r
}

// localOnly serves the toolbox to clients on this machine only. It shows every job and the
// outbox's messages, tokens included, and has no accounts yet: until it does, a web server
// opened to the world for the consumer pages must not open the toolbox with it.
func localOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "The toolbox is served only to this machine.", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (d Deps) home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	jobs, err := d.Store.Jobs(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	rows := make([]JobRow, 0, len(jobs))
	for _, j := range jobs {
		c, err := d.Store.JobCounts(ctx, j.Key)
		if err != nil {
			d.fail(w, r, err)
			return
		}
		rows = append(rows, JobRow{Job: j, Counts: c})
	}
	servers, err := d.Store.MailServers(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if d.PostOffice != nil {
		if live := d.PostOffice.Statuses(); len(live) > 0 {
			servers = live
		}
	}
	outbox, total, err := d.Store.Outbox(ctx, 50)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	render(w, r, homePage(rows, servers, outbox, total))
}

func (d Deps) outboxMessage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	m, err := d.Store.OutboxMessageByID(r.Context(), id)
	if err != nil {
		if d.IsNotFound != nil && d.IsNotFound(err) {
			http.NotFound(w, r)
			return
		}
		d.fail(w, r, err)
		return
	}
	render(w, r, outboxPage(m, readCaptured(m.Data)))
}

// captured is an outbox message decoded for reading: its header fields and its body, with
// the transfer encoding undone.
type captured struct {
	Header [][2]string
	Body   string
	IsHTML bool
	Err    string
}

// readCaptured decodes a captured message; one that does not parse is shown raw with why.
func readCaptured(data []byte) captured {
	var c captured
	r, err := gomail.CreateReader(bytes.NewReader(data))
	if err != nil {
		c.Err, c.Body = err.Error(), string(data)
		return c
	}
	for f := r.Header.Fields(); f.Next(); {
		v, err := f.Text()
		if err != nil {
			v = f.Value()
		}
		c.Header = append(c.Header, [2]string{f.Key(), v})
	}
	part, err := r.NextPart()
	if err != nil {
		c.Err = err.Error()
		return c
	}
	body, err := io.ReadAll(part.Body)
	if err != nil {
		c.Err = err.Error()
	}
	c.Body = string(body)
	if h, ok := part.Header.(*gomail.InlineHeader); ok {
		ct, _, _ := h.ContentType()
		c.IsHTML = ct == "text/html"
	}
	return c
}

func (d Deps) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	d.Logger.Error("toolbox", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func render(w http.ResponseWriter, r *http.Request, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := c.Render(r.Context(), w); err != nil {
		slog.Error("render", "path", r.URL.Path, "err", err)
	}
}
