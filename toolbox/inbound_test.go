package toolbox_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/toolbox"
)

// The SQLite store is what main passes for every area of the toolbox.
var _ toolbox.Store = (*store.Store)(nil)

// inboundRows returns the rows of an inbound page and the IDs they show, in order.
func inboundRows(t *testing.T, doc *html.Node) ([]*html.Node, []int64) {
	t.Helper()
	rows := byTestID(doc, "inbound-row")
	ids := make([]int64, len(rows))
	for i, r := range rows {
		id, err := strconv.ParseInt(attr(r, "data-inbound-id"), 10, 64)
		if err != nil {
			t.Fatalf("row %d: no message ID", i)
		}
		ids[i] = id
	}
	return rows, ids
}

// inboundCell returns the text of a row's cell with test ID id, or "" when it has none.
func inboundCell(row *html.Node, id string) string {
	if n := byTestID(row, id); len(n) > 0 {
		return text(n[0])
	}
	return ""
}

// inboundWorld is an operator's view of a receiver that took 53 auto-replies, then a
// bounce tied to a delivery, a forged bounce, a forged complaint and a tokenless reply.
type inboundWorld struct {
	e          *env
	op         *client
	job        int64
	consumerID int64
	// ids are the messages in the order recorded: auto-replies 0-52, then bounce,
	// forged bounce, forged complaint, reply.
	ids []int64
}

func newInboundWorld(t *testing.T) *inboundWorld {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t)
	w := &inboundWorld{e: e}
	w.op, _ = e.signIn("op@pointpost.example", "")
	w.job = e.job(e.issuer("acme"), "Spring points").Key
	if _, _, err := e.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "zoe@example.com", FirstName: "Zoe"}}); err != nil {
		t.Fatal(err)
	}
	c, err := e.st.ConsumerByEmail(ctx, "zoe@example.com")
	if err != nil {
		t.Fatal(err)
	}
	w.consumerID = c.ID
	at := time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)
	record := func(m store.InboundMessage) {
		m.CreatedAt = at.Add(time.Duration(len(w.ids)) * time.Minute)
		if err := e.st.RecordInbound(ctx, &m); err != nil {
			t.Fatal(err)
		}
		w.ids = append(w.ids, m.ID)
	}
	for i := range 53 {
		record(store.InboundMessage{Kind: "auto-reply", From: fmt.Sprintf("away%d@example.org", i), To: "reply@pp.example",
			Subject: "Out of office", Detail: "Auto-Submitted: auto-replied"})
	}
	record(store.InboundMessage{Kind: "bounce", JobKey: w.job, ConsumerID: w.consumerID, From: "MAILER-DAEMON@mx.example.com",
		To: "bounce+tok@pp.example", Subject: "Undelivered Mail Returned to Sender", Detail: "hard 5.1.1 user unknown"})
	record(store.InboundMessage{Kind: "bounce", From: "postmaster@forger.example", To: "bounce@pp.example",
		Subject: "Delivery failure", Detail: store.UnverifiedPrefix + "names zoe@example.com; 5.1.1"})
	record(store.InboundMessage{Kind: "complaint", From: "fbl@forger.example", To: "abuse@pp.example",
		Subject: "Abuse report", Detail: store.UnverifiedPrefix + "reported zoe@example.com"})
	record(store.InboundMessage{Kind: "reply", From: "zoe@example.com", To: "reply@pp.example", Subject: "Re: your points",
		Detail: "no valid token"})
	return w
}

// TestInboundListsNewestFirstInPages: 50 a page, newest first, each row with its time,
// kind, addresses, subject, detail, and links to the job and consumer a token named.
func TestInboundListsNewestFirstInPages(t *testing.T) {
	w := newInboundWorld(t)
	doc := w.op.page("/inbound", http.StatusOK)
	rows, ids := inboundRows(t, doc)
	if len(rows) != 50 {
		t.Fatalf("first page: %d rows, want 50", len(rows))
	}
	for i, id := range ids {
		if want := w.ids[len(w.ids)-1-i]; id != want {
			t.Fatalf("row %d shows message %d, want %d: not newest first", i, id, want)
		}
	}
	if n := byTestID(doc, "nav"); len(n) != 1 || !strings.Contains(text(n[0]), "Inbound") {
		t.Fatal("the operator's nav has no Inbound entry")
	}
	if len(byTestID(doc, "first-page")) != 0 {
		t.Fatal("the first page links to the first page")
	}

	reply, bounce, forged := rows[0], rows[3], rows[2]
	if got := [...]string{inboundCell(reply, "kind"), inboundCell(reply, "from"), inboundCell(reply, "to"),
		inboundCell(reply, "subject"), inboundCell(reply, "detail"), inboundCell(reply, "at")}; got !=
		[...]string{"reply", "zoe@example.com", "reply@pp.example", "Re: your points", "no valid token", "2025-05-01 09:56 UTC"} {
		t.Errorf("the reply's row reads %q", got)
	}
	if len(byTestID(reply, "job")) != 0 || len(byTestID(reply, "consumer")) != 0 || len(byTestID(reply, "unverified")) != 0 {
		t.Error("a tokenless reply links a job or consumer, or is marked unverified")
	}
	job, consumer := byTestID(bounce, "job"), byTestID(bounce, "consumer")
	if len(job) != 1 || attr(job[0], "href") != "/jobs/"+strconv.FormatInt(w.job, 10) || !strings.Contains(text(job[0]), "Spring points") {
		t.Errorf("the tied bounce's job link: %d links %q", len(job), text(bounce))
	}
	if len(consumer) != 1 || attr(consumer[0], "href") != "/consumers/"+strconv.FormatInt(w.consumerID, 10) ||
		text(consumer[0]) != "zoe@example.com" {
		t.Errorf("the tied bounce's consumer link: %d links %q", len(consumer), text(bounce))
	}
	if inboundCell(bounce, "detail") != "hard 5.1.1 user unknown" || len(byTestID(bounce, "unverified")) != 0 {
		t.Errorf("the tied bounce's row reads %q", text(bounce))
	}
	if len(byTestID(forged, "unverified")) != 1 || len(byTestID(forged, "job")) != 0 ||
		!strings.HasPrefix(inboundCell(forged, "detail"), strings.TrimSpace(store.UnverifiedPrefix)) {
		t.Errorf("the forged bounce's row reads %q", text(forged))
	}

	// The next page goes on from the last row shown, and is the last.
	next := byTestID(doc, "next-page")
	if len(next) != 1 {
		t.Fatal("no link to the next page")
	}
	doc = w.op.page(attr(next[0], "href"), http.StatusOK)
	_, ids2 := inboundRows(t, doc)
	if len(ids2) != len(w.ids)-50 || ids2[0] != w.ids[len(w.ids)-51] || ids2[len(ids2)-1] != w.ids[0] {
		t.Fatalf("second page shows %v", ids2)
	}
	if len(byTestID(doc, "next-page")) != 0 || len(byTestID(doc, "first-page")) != 1 {
		t.Fatal("the last page links further, or not back to the newest")
	}
	oldest := postoffice.InboundCursor{AtMS: time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC).UnixMilli(), ID: w.ids[0]}
	doc = w.op.page("/inbound?before="+oldest.String(), http.StatusOK)
	if e := byTestID(doc, "empty"); len(e) != 1 || !strings.Contains(text(e[0]), "No older") {
		t.Fatal("past the oldest message: no empty state")
	}
}

// TestInboundFilters: by kind, unverified only, both, across pages; a filter the form does
// not offer is named beside its field and the list shows unfiltered.
func TestInboundFilters(t *testing.T) {
	w := newInboundWorld(t)
	n := len(w.ids)
	for _, c := range []struct {
		query string
		want  []int64
	}{
		{"kind=bounce", []int64{w.ids[n-3], w.ids[n-4]}},
		{"unverified=1", []int64{w.ids[n-2], w.ids[n-3]}},
		{"kind=bounce&unverified=1", []int64{w.ids[n-3]}},
		{"kind=complaint&unverified=on", []int64{w.ids[n-2]}},
		{"kind=reply", []int64{w.ids[n-1]}},
		{"kind=unsubscribe", nil},
	} {
		doc := w.op.page("/inbound?"+c.query, http.StatusOK)
		rows, ids := inboundRows(t, doc)
		if fmt.Sprint(ids) != fmt.Sprint(c.want) {
			t.Errorf("?%s shows %v, want %v", c.query, ids, c.want)
		}
		if strings.Contains(c.query, "unverified") {
			for _, r := range rows {
				if len(byTestID(r, "unverified")) != 1 {
					t.Errorf("?%s: row %q is not marked unverified", c.query, text(r))
				}
			}
			if box := byTestID(doc, "unverified-box"); len(box) != 1 || !hasAttr(box[0], "checked") {
				t.Errorf("?%s: the box is not ticked", c.query)
			}
		}
		if len(c.want) == 0 {
			if e := byTestID(doc, "empty"); len(e) != 1 || !strings.Contains(text(e[0]), "No message matches") {
				t.Errorf("?%s: no empty state for a filter matching nothing", c.query)
			}
		}
	}

	// A kind's pages keep the kind.
	doc := w.op.page("/inbound?kind=auto-reply", http.StatusOK)
	if _, ids := inboundRows(t, doc); len(ids) != 50 || ids[0] != w.ids[52] {
		t.Fatalf("auto-replies, first page: %d rows: %v", len(ids), ids)
	}
	next := byTestID(doc, "next-page")
	if len(next) != 1 || !strings.Contains(attr(next[0], "href"), "kind=auto-reply") {
		t.Fatal("the next page of auto-replies forgets the kind")
	}
	rows, ids := inboundRows(t, w.op.page(attr(next[0], "href"), http.StatusOK))
	if len(ids) != 3 || ids[0] != w.ids[2] || ids[2] != w.ids[0] {
		t.Fatalf("auto-replies, second page: %v", ids)
	}
	for _, r := range rows {
		if inboundCell(r, "kind") != "auto-reply" {
			t.Fatalf("auto-replies, second page, shows a %s", inboundCell(r, "kind"))
		}
	}

	for query, field := range map[string]string{"kind=spam": "kind", "unverified=maybe": "unverified",
		"before=x": "before", "before=-4": "before"} {
		doc := w.op.page("/inbound?"+query, http.StatusBadRequest)
		if len(byTestID(doc, "error-"+field)) != 1 {
			t.Errorf("?%s: no error beside %s", query, field)
		}
		if _, ids := inboundRows(t, doc); len(ids) != 50 || ids[0] != w.ids[n-1] {
			t.Errorf("?%s: the list is not shown unfiltered from the newest (%d rows)", query, len(ids))
		}
	}

	// A delay warning is offered as its own kind and listed there, never among the bounces.
	delayed := store.InboundMessage{Kind: "delayed", JobKey: w.job, ConsumerID: w.consumerID, From: "MAILER-DAEMON@mx.example.com",
		To: "bounce+tok@pp.example", Subject: "Delivery Status Notification (Delay)", Detail: "4.4.7 Action: delayed"}
	if err := w.e.st.RecordInbound(context.Background(), &delayed); err != nil {
		t.Fatal(err)
	}
	doc = w.op.page("/inbound?kind=delayed", http.StatusOK)
	if rows, ids := inboundRows(t, doc); fmt.Sprint(ids) != fmt.Sprint([]int64{delayed.ID}) || inboundCell(rows[0], "kind") != "delayed" {
		t.Errorf("?kind=delayed shows %v", ids)
	}
	if sel := byTestID(doc, "kind-select"); len(sel) != 1 || !strings.Contains(text(sel[0]), "delayed") {
		t.Error("the kind filter does not offer delayed")
	}
	if _, ids := inboundRows(t, w.op.page("/inbound?kind=bounce", http.StatusOK)); fmt.Sprint(ids) != fmt.Sprint([]int64{w.ids[n-3], w.ids[n-4]}) {
		t.Errorf("a delay warning changed the bounces listed: %v", ids)
	}
}

func hasAttr(n *html.Node, name string) bool {
	for _, a := range n.Attr {
		if a.Key == name {
			return true
		}
	}
	return false
}

// TestInboundIsOperatorsOnly: an issuer's user gets 404 and no nav entry; a fresh
// receiver's page says what will show there.
func TestInboundIsOperatorsOnly(t *testing.T) {
	e := newEnv(t)
	ann, _ := e.signIn("ann@acme.example", "acme")
	for _, path := range []string{"/inbound", "/inbound?kind=bounce", "/inbound?before=1"} {
		if doc := ann.page(path, http.StatusNotFound); len(byTestID(doc, "not-found")) != 1 {
			t.Fatalf("GET %s as an issuer user: no not-found page", path)
		}
	}
	if n := byTestID(ann.page("/", http.StatusOK), "nav"); len(n) != 1 || strings.Contains(text(n[0]), "Inbound") {
		t.Fatal("an issuer user's nav offers Inbound (or there is no nav)")
	}
	op, _ := e.signIn("op@pointpost.example", "")
	doc := op.page("/inbound", http.StatusOK)
	if em := byTestID(doc, "empty"); len(em) != 1 || !strings.Contains(text(em[0]), "Nothing has come in yet") {
		t.Fatal("no empty state before any mail came in")
	}
	if len(byTestID(doc, "inbound")) != 0 || len(byTestID(doc, "next-page")) != 0 {
		t.Fatal("an empty list shows a table or a next page")
	}
}

// TestInboundListsAcknowledgedReplies: a reply that earned points through its token is
// listed beside the mail that earned nothing, with the points, the job and the consumer;
// the kind filter offers "acknowledged" and shows those alone, and the other kinds leave
// them out.
func TestInboundListsAcknowledgedReplies(t *testing.T) {
	w := newInboundWorld(t)
	ctx := context.Background()
	e := w.e
	iss := e.issuer("acme")
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC) // after every recorded message
	job := &postoffice.Job{IssuerID: iss.ID, Name: "Reply golf", State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: 10}
	rule := &rewards.AwardRule{IssuerID: iss.ID, Description: "reply bonus", Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce}
	if err := e.st.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil,
		postoffice.JobRules{New: []*rewards.AwardRule{rule}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.SelectBatch(ctx, job, false, 10); err != nil {
		t.Fatal(err)
	}
	recips, err := e.st.DueRecipients(ctx, job.Key, 0, now, 10)
	if err != nil || len(recips) != 1 {
		t.Fatalf("DueRecipients: %v, %v", recips, err)
	}
	if err := e.st.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: recips[0].DeliveryID, Kind: postoffice.OutcomeSent, At: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Acknowledge(ctx, postoffice.Ack{JobKey: job.Key, ConsumerID: w.consumerID, Channel: postoffice.ChannelReply,
		At: now, Source: "smtp <r1@example.com>"}); err != nil {
		t.Fatal(err)
	}

	doc := w.op.page("/inbound", http.StatusOK)
	rows, _ := inboundRows(t, doc)
	if len(rows) != 50 {
		t.Fatalf("%d rows, want 50", len(rows))
	}
	ack := rows[0]
	if inboundCell(ack, "kind") != "acknowledged" || inboundCell(ack, "detail") != "earned 10 points · smtp <r1@example.com>" {
		t.Errorf("the newest row reads %q, want the rewarded reply", text(ack))
	}
	if c := byTestID(ack, "consumer"); len(c) != 1 || text(c[0]) != "zoe@example.com" {
		t.Errorf("the rewarded reply names no consumer: %q", text(ack))
	}
	if j := byTestID(ack, "job"); len(j) != 1 || !strings.Contains(text(j[0]), "Reply golf") {
		t.Errorf("the rewarded reply names no job: %q", text(ack))
	}
	if inboundCell(rows[1], "kind") != "reply" {
		t.Errorf("the second row is a %s, want the tokenless reply", inboundCell(rows[1], "kind"))
	}
	sel := byTestID(doc, "kind-select")
	if len(sel) != 1 || !strings.Contains(text(sel[0]), "acknowledged") {
		t.Fatal("the kind filter does not offer acknowledged")
	}

	doc = w.op.page("/inbound?kind=acknowledged", http.StatusOK)
	if rows, _ := inboundRows(t, doc); len(rows) != 1 || inboundCell(rows[0], "kind") != "acknowledged" {
		t.Errorf("?kind=acknowledged shows %d rows", len(rows))
	}
	for _, kind := range []string{"reply", "bounce"} {
		for _, r := range byTestID(w.op.page("/inbound?kind="+kind, http.StatusOK), "inbound-row") {
			if inboundCell(r, "kind") != kind {
				t.Errorf("?kind=%s shows a %s", kind, inboundCell(r, "kind"))
			}
		}
	}
	// The next page of the mixed list goes on from the last row without a gap or repeat.
	next := byTestID(w.op.page("/inbound", http.StatusOK), "next-page")
	if len(next) != 1 {
		t.Fatal("no next page")
	}
	if rows, _ := inboundRows(t, w.op.page(attr(next[0], "href"), http.StatusOK)); len(rows) != len(w.ids)+1-50 {
		t.Errorf("second page: %d rows, want %d", len(rows), len(w.ids)+1-50)
	}
}
