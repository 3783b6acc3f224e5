package web_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"pointpost/rewards"
	"pointpost/web"
	"pointpost/web/pagetest"
)

func TestUnsubscribeByPage(t *testing.T) {
	w := newWorld(t)
	tok := w.token(w.ann)
	p := w.get("/u/"+tok).want(t, http.StatusOK)
	if got := pagetest.Text(p.one(t, "email")); got != "ann@example.com" {
		t.Errorf("email %q", got)
	}
	form := p.one(t, "unsubscribe-form")
	if pagetest.Attr(form, "method") != "post" || pagetest.Attr(form, "action") != "/u/"+tok {
		t.Errorf("form %s %s", pagetest.Attr(form, "method"), pagetest.Attr(form, "action"))
	}
	w.do(http.MethodHead, "/u/"+tok, "", nil).want(t, http.StatusOK)
	if c := w.consumer("ann@example.com"); c.Status != rewards.StatusActive {
		t.Fatalf("GET and HEAD unsubscribed her: %s", c.Status)
	}

	p = w.post("/u/"+tok, nil).want(t, http.StatusOK)
	p.one(t, "unsubscribed")
	if c := w.consumer("ann@example.com"); c.Status != rewards.StatusUnsubscribed {
		t.Fatalf("status %s, want unsubscribed", c.Status)
	}
	// Again, and the page now says she is unsubscribed, with no button.
	w.post("/u/"+tok, nil).want(t, http.StatusOK).one(t, "unsubscribed")
	p = w.get("/u/"+tok).want(t, http.StatusOK)
	p.one(t, "unsubscribed")
	if p.has("unsubscribe-form") {
		t.Error("an unsubscribed consumer is offered the button again")
	}
	if c := w.consumer("bob@example.com"); c.Status != rewards.StatusActive {
		t.Errorf("bob is %s", c.Status)
	}
}

// TestOneClickUnsubscribe is RFC 8058: the mail client POSTs List-Unsubscribe=One-Click to
// the List-Unsubscribe URL, with no cookie and nothing but the URL's token.
func TestOneClickUnsubscribe(t *testing.T) {
	w := newWorld(t)
	resp, err := http.Post(w.srv.URL+"/u/"+w.token(w.ann), "application/x-www-form-urlencoded",
		strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click: status %d", resp.StatusCode)
	}
	if c := w.consumer("ann@example.com"); c.Status != rewards.StatusUnsubscribed {
		t.Fatalf("status %s, want unsubscribed", c.Status)
	}

	// RFC 8058 allows multipart/form-data too; the account token of a later e-mail works.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.WriteField("List-Unsubscribe", "One-Click"); err != nil {
		t.Fatal(err)
	}
	mw.Close()
	resp, err = http.Post(w.srv.URL+"/u/"+w.po.AccountToken(w.bob.ID), mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("multipart one-click: status %d", resp.StatusCode)
	}
	if c := w.consumer("bob@example.com"); c.Status != rewards.StatusUnsubscribed {
		t.Fatalf("bob: status %s, want unsubscribed", c.Status)
	}
}

func TestUnsubscribeRefusesBadTokens(t *testing.T) {
	w := newWorld(t)
	for _, tok := range []string{tamper(w.token(w.ann)), w.keys.Encode(web.EnrollmentJobKey, w.ann.ID), "x"} {
		w.post("/u/"+tok, nil).want(t, http.StatusNotFound).one(t, "error")
		w.get("/u/"+tok).want(t, http.StatusNotFound).one(t, "error")
	}
	if c := w.consumer("ann@example.com"); c.Status != rewards.StatusActive {
		t.Fatalf("a bad token unsubscribed her: %s", c.Status)
	}
}
