package toolbox

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
)

// inboundStore lists the mail that came in: the replies that acknowledged through their
// token, and what the receiver recorded that earned nothing (replies without a valid token,
// auto-replies, bounces, complaints, unsubscribe messages, and what could not be told apart).
type inboundStore interface {
	// InboundPage lists entries newest first: at most limit, of kind only (any when ""),
	// only the unverified ones when unverifiedOnly, after before (from the newest when zero).
	InboundPage(ctx context.Context, kind string, unverifiedOnly bool, before postoffice.InboundCursor, limit int) ([]postoffice.InboundEntry, error)
}

// inboundKinds are the kinds the inbound list holds, in the order the filter offers them.
var inboundKinds = []string{postoffice.KindAcknowledged, "reply", "auto-reply", "bounce", "delayed", "complaint", "unsubscribe", "unknown"}

// inboundPageSize is how many messages one page of /inbound lists.
const inboundPageSize = 50

// inboundPages list the mail that came in.
type inboundPages struct {
	base
	store inboundStore
}

func (d inboundPages) inboundRoutes(r chi.Router) {
	r.Get("/inbound", d.inbound)
}

// inboundQuery is the inbound page's filter and page cursor.
type inboundQuery struct {
	Kind       string
	Unverified bool
	Before     postoffice.InboundCursor
}

// parseInboundQuery reads the filter from the URL. Returns the errors by form field for
// values the form does not offer; the query then holds the defaults for them.
func parseInboundQuery(r *http.Request) (inboundQuery, fieldErrors) {
	v := r.URL.Query()
	q := inboundQuery{Kind: v.Get("kind")}
	errs := fieldErrors{}
	if q.Kind != "" && !slices.Contains(inboundKinds, q.Kind) {
		errs["kind"] = "Kind is acknowledged, reply, auto-reply, bounce, delayed, complaint, unsubscribe or unknown."
		q.Kind = ""
	}
	switch v.Get("unverified") {
	case "":
	case "1", "on", "true":
		q.Unverified = true
	default:
		errs["unverified"] = "Tick the box for unverified messages only, or leave it empty for all."
	}
	if b := v.Get("before"); b != "" {
		c, err := postoffice.ParseInboundCursor(b)
		if err != nil {
			errs["before"] = "That page link is broken: start from the newest messages."
		} else {
			q.Before = c
		}
	}
	return q, errs
}

// link is /inbound with the filter and, when before is not zero, the page cursor.
func (q inboundQuery) link(before postoffice.InboundCursor) string {
	v := url.Values{}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.Unverified {
		v.Set("unverified", "1")
	}
	if !before.IsZero() {
		v.Set("before", before.String())
	}
	if len(v) == 0 {
		return "/inbound"
	}
	return "/inbound?" + v.Encode()
}

// filtered reports whether the query narrows the list.
func (q inboundQuery) filtered() bool { return q.Kind != "" || q.Unverified }

// inboundView is one page of the inbound list.
type inboundView struct {
	Q      inboundQuery
	Errors fieldErrors
	Rows   []postoffice.InboundEntry
	// Next links the following page, empty on the last.
	Next string
}

// inbound lists what the receiver recorded, newest first, a page at a time.
func (d inboundPages) inbound(w http.ResponseWriter, r *http.Request) {
	st := d.store
	if st == nil {
		http.Error(w, "the inbound list is not set up on this server", http.StatusServiceUnavailable)
		return
	}
	q, errs := parseInboundQuery(r)
	v := inboundView{Q: q, Errors: errs}
	// One more than a page tells whether another follows.
	rows, err := st.InboundPage(r.Context(), q.Kind, q.Unverified, q.Before, inboundPageSize+1)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if len(rows) > inboundPageSize {
		rows = rows[:inboundPageSize]
		v.Next = q.link(rows[len(rows)-1].Cursor())
	}
	v.Rows = rows
	status := http.StatusOK
	if len(errs) > 0 {
		status = http.StatusBadRequest
	}
	d.renderStatus(w, r, status, inboundPage(d.page(w, r, "Inbound mail", "inbound"), v))
}
