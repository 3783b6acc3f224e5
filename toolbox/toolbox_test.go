package toolbox_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"pointpost/postoffice"
)

// withOutbox stores two captured messages: an HTML one with a quoted-printable link and a
// plain one.
func withOutbox(e *env) {
	e.t.Helper()
	msgs := []*postoffice.OutboxMessage{
		{From: "a@pointpost.localhost", To: "zoe@example.com", Subject: "Spring", Data: []byte("Subject: Hi <Zoë>\r\n" +
			"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"<a href=3D\"https://pp.example/i/1abc\">earn</a> a very long line that the encoder had to=\r\n break\r\n")},
		{From: "a@pointpost.localhost", To: "ann@example.com", Subject: "Spring", Data: []byte("Subject: Hi\r\n\r\nbody\r\n")},
	}
	if err := e.st.AppendOutbox(context.Background(), msgs); err != nil {
		e.t.Fatal(err)
	}
}

func TestOutboxMessagePage(t *testing.T) {
	e := newEnv(t)
	withOutbox(e)
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/outbox/1", http.StatusOK)
	raw := byTestID(doc, "raw")
	if len(raw) != 1 || !strings.Contains(text(raw[0]), "Subject: Hi <Zoë>") {
		t.Fatalf("raw message not shown (escaped and parsed back): %v", raw)
	}
	// The HTML body is shown decoded, its link whole, in a sandboxed frame.
	frame := byTestID(doc, "html-body")
	if len(frame) != 1 || !strings.Contains(attr(frame[0], "srcdoc"), `<a href="https://pp.example/i/1abc">`) ||
		!strings.Contains(attr(frame[0], "srcdoc"), "had to break") || attr(frame[0], "sandbox") == "" {
		t.Fatalf("decoded HTML body not shown: %d frames", len(frame))
	}
	doc = op.page("/outbox/2", http.StatusOK)
	if body := byTestID(doc, "text-body"); len(body) != 1 || text(body[0]) != "body" {
		t.Fatalf("text body: %v", body)
	}
	op.page("/outbox/99", http.StatusNotFound)
	op.page("/outbox/abc", http.StatusNotFound)
}

func TestSignedOutVisitorGoesToLogin(t *testing.T) {
	e := newEnv(t)
	withOutbox(e)
	resp, _ := e.anonymous().do(http.MethodGet, "/outbox/1?x=1", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Foutbox%2F1%3Fx%3D1" {
		t.Fatalf("signed out: %d to %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestOperatorPagesAreHiddenFromIssuers(t *testing.T) {
	e := newEnv(t)
	withOutbox(e)
	acme, _ := e.signIn("ann@acme.example", "acme")
	doc := acme.page("/outbox/1", http.StatusNotFound)
	if len(byTestID(doc, "not-found")) != 1 {
		t.Fatal("an issuer user asking for the outbox does not get the not-found page")
	}
}

func TestAssetsServeFilesNotDirectoryListings(t *testing.T) {
	e := newEnv(t)
	c := e.anonymous()
	if resp, body := c.do(http.MethodGet, "/assets/toolbox.css", nil, nil); resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("toolbox.css: %d, %d bytes", resp.StatusCode, len(body))
	}
	for _, dir := range []string{"/assets/", "/assets/./"} {
		resp, body := c.do(http.MethodGet, dir, nil, nil)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, `href="toolbox.css"`) {
			t.Errorf("GET %s: %d %.200q; want 404 without a listing", dir, resp.StatusCode, body)
		}
	}
}
