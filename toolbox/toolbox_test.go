package toolbox_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/store"
	"pointpost/toolbox"
)

func newToolbox(t *testing.T) (*httptest.Server, *store.Store, *postoffice.Job) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "tb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	iss, err := st.EnsureIssuer(ctx, "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	job := &postoffice.Job{IssuerID: iss.ID, Name: "Spring <sale>", State: postoffice.JobScheduled, Start: now, Stop: now.Add(time.Hour), ClientCount: 10}
	if err := st.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	msgs := []*postoffice.OutboxMessage{
		{From: "a@pointpost.localhost", To: "zoe@example.com", Subject: "Spring", Data: []byte("Subject: Hi <Zoë>\r\n" +
			"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"<a href=3D\"https://pp.example/i/1abc\">earn</a> a very long line that the encoder had to=\r\n break\r\n")},
		{From: "a@pointpost.localhost", To: "ann@example.com", Subject: "Spring", Data: []byte("Subject: Hi\r\n\r\nbody\r\n")},
	}
	if err := st.AppendOutbox(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(toolbox.Handler(toolbox.Deps{Store: st,
		IsNotFound: func(err error) bool { return errors.Is(err, store.ErrNotFound) }}))
	t.Cleanup(srv.Close)
	return srv, st, job
}

// get fetches a page and parses it.
func get(t *testing.T, url string, want int) *html.Node {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d", url, resp.StatusCode, want)
	}
	doc, err := html.Parse(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not HTML: %v", url, err)
	}
	return doc
}

// byTestID returns the elements with data-testid id, in document order.
func byTestID(n *html.Node, id string) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && attr(d, "data-testid") == id {
			out = append(out, d)
		}
	}
	return out
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func TestHomeShowsJobsAndOutbox(t *testing.T) {
	srv, _, job := newToolbox(t)
	doc := get(t, srv.URL+"/", http.StatusOK)
	jobs := byTestID(doc, "job")
	if len(jobs) != 1 || attr(jobs[0], "data-key") != "1" {
		t.Fatalf("job rows: %d", len(jobs))
	}
	if row := text(jobs[0]); !strings.Contains(row, job.Name) || !strings.Contains(row, "scheduled") {
		t.Errorf("job row %q lacks the name or state", row)
	}
	outbox := byTestID(doc, "outbox-message")
	if len(outbox) != 2 || !strings.Contains(text(outbox[0]), "ann@example.com") {
		t.Fatalf("outbox rows: %d, first %q (newest first)", len(outbox), text(outbox[0]))
	}
}

func TestOutboxMessagePage(t *testing.T) {
	srv, _, _ := newToolbox(t)
	doc := get(t, srv.URL+"/outbox/1", http.StatusOK)
	raw := byTestID(doc, "raw")
	if len(raw) != 1 || !strings.Contains(text(raw[0]), "Subject: Hi <Zoë>") {
		t.Fatalf("raw message not shown (escaped and parsed back): %v", raw)
	}
	// The HTML body is shown decoded, its link whole, in a sandboxed frame.
	frame := byTestID(doc, "html-body")
	if len(frame) != 1 || !strings.Contains(attr(frame[0], "srcdoc"), `<a href="https://pp.example/i/1abc">`) ||
		!strings.Contains(attr(frame[0], "srcdoc"), "had to break") || attr(frame[0], "sandbox") == "" {
		t.Fatalf("decoded HTML body not shown: %d frames, srcdoc %q", len(frame), attr(frame[0], "srcdoc"))
	}
	doc = get(t, srv.URL+"/outbox/2", http.StatusOK)
	if body := byTestID(doc, "text-body"); len(body) != 1 || text(body[0]) != "body" {
		t.Fatalf("text body: %v", body)
	}
	get(t, srv.URL+"/outbox/99", http.StatusNotFound)
	get(t, srv.URL+"/outbox/abc", http.StatusNotFound)
}

func TestToolboxOnlyForThisMachine(t *testing.T) {
	srv, _, _ := newToolbox(t)
	h := srv.Config.Handler
	for addr, want := range map[string]int{"127.0.0.1:5000": http.StatusOK, "[::1]:5000": http.StatusOK,
		"203.0.113.7:5000": http.StatusForbidden, "10.0.0.2:5000": http.StatusForbidden} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("from %s: %d, want %d", addr, rec.Code, want)
		}
	}
}
