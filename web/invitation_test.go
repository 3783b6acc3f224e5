package web_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/web"
	"pointpost/web/pagetest"
)

func TestInvitationPageShowsTheMessageAndNeverAwards(t *testing.T) {
	w := newWorld(t)
	tok := w.token(w.ann)
	for _, prefix := range []string{"/i/", "/a/"} {
		p := w.get(prefix+tok).want(t, http.StatusOK)
		if got := pagetest.Text(p.one(t, "subject")); got != "Ann, points for you" {
			t.Errorf("%s subject %q", prefix, got)
		}
		if got := pagetest.Text(p.one(t, "issuer")); got != "Acme <Outdoor>" {
			t.Errorf("%s issuer %q", prefix, got)
		}
		frame := p.one(t, "message-html")
		if frame.Data != "iframe" {
			t.Fatalf("%s: the HTML message is in a <%s>, want an iframe", prefix, frame.Data)
		}
		if sb := pagetest.Attr(frame, "sandbox"); strings.Contains(sb, "allow-scripts") || strings.Contains(sb, "allow-same-origin") {
			t.Errorf("%s: sandbox %q lets the message run scripts or reach the page", prefix, sb)
		}
		// The frame's document is the HTML e-mail, filled in for her (claim 12).
		doc, err := html.Parse(strings.NewReader(pagetest.Attr(frame, "srcdoc")))
		if err != nil {
			t.Fatal(err)
		}
		if got := pagetest.Text(doc); !strings.Contains(got, "Dear Ann") || !strings.Contains(got, "in Oslo") {
			t.Errorf("%s: message document %q is not the rendered HTML message", prefix, got)
		}
		if p.has("message-text") {
			t.Errorf("%s: an HTML invitation also shows a text body", prefix)
		}
		forms := p.all("submit-form")
		if len(forms) == 0 {
			t.Fatalf("%s: no Submit form", prefix)
		}
		for _, f := range forms {
			if pagetest.Attr(f, "method") != "post" || pagetest.Attr(f, "action") != "/i/"+tok {
				t.Errorf("%s: Submit form %s %s, want post /i/%s", prefix, pagetest.Attr(f, "method"), pagetest.Attr(f, "action"), tok)
			}
		}
		if got := pagetest.Attr(p.one(t, "account-link"), "href"); got != "/account/"+w.po.AccountToken(w.ann.ID) {
			t.Errorf("%s: account link %q", prefix, got)
		}
		if got := pagetest.Attr(p.one(t, "unsubscribe-link"), "href"); got != "/u/"+tok {
			t.Errorf("%s: unsubscribe link %q", prefix, got)
		}
		if cc := p.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q", prefix, cc)
		}
		// HEAD, as a mail scanner or link preview sends, answers without a body.
		if h := w.do(http.MethodHead, prefix+tok, "", nil); h.status != http.StatusOK {
			t.Errorf("HEAD %s: %d", prefix, h.status)
		}
	}
	w.assertNothingRecorded(w.ann)
}

func TestTextInvitationIsShownAsText(t *testing.T) {
	w := newWorld(t, func(c *postoffice.Campaign) { c.HTML = nil })
	p := w.get("/i/"+w.token(w.bob)).want(t, http.StatusOK)
	pre := p.one(t, "message-text")
	if pre.Data != "pre" {
		t.Fatalf("text message in <%s>, want <pre>", pre.Data)
	}
	if got := pagetest.Text(pre); !strings.Contains(got, "Dear Bob in Rome") {
		t.Errorf("text message %q", got)
	}
	if p.has("message-html") {
		t.Error("a text-only job shows an HTML frame")
	}
}

func TestSubmitAwardsOnceAndThanks(t *testing.T) {
	w := newWorld(t)
	tok := w.token(w.ann)
	p := w.post("/i/"+tok, nil).want(t, http.StatusOK)
	thanks := p.one(t, "thanks")
	if got := pagetest.Attr(thanks, "data-points"); got != "10" {
		t.Fatalf("thank-you page shows %s points, want 10", got)
	}
	if got := pagetest.Text(p.one(t, "points")); got != "10" {
		t.Errorf("points shown %q", got)
	}
	if p.has("reason") {
		t.Errorf("an award shows reasons: %q", pagetest.Text(p.one(t, "reason")))
	}
	if got := pagetest.Attr(p.one(t, "next-link"), "href"); got != successURL {
		t.Errorf("next link %q, want the rule's success URL", got)
	}
	if got := pagetest.Attr(p.one(t, "account-link"), "href"); got != "/account/"+w.po.AccountToken(w.ann.ID) {
		t.Errorf("account link %q", got)
	}
	if !w.delivery(w.ann).Received {
		t.Error("the delivery is not marked received")
	}
	if a := w.account(w.ann); a.Pending != 10 {
		t.Errorf("pending %d, want 10", a.Pending)
	}

	// Again, by the /a/ link: recorded, no more points, and the page says why.
	p = w.post("/a/"+tok, nil).want(t, http.StatusOK)
	if got := pagetest.Attr(p.one(t, "thanks"), "data-points"); got != "0" {
		t.Errorf("second Submit shows %s points", got)
	}
	if got := pagetest.Text(p.one(t, "reason")); !strings.Contains(got, "already awarded") {
		t.Errorf("reason %q", got)
	}
	if a := w.account(w.ann); a.Pending != 10 {
		t.Errorf("pending %d after a second Submit, want 10", a.Pending)
	}
	w.assertNothingRecorded(w.bob)
}

func TestParallelSubmitsAwardOnce(t *testing.T) {
	w := newWorld(t)
	tok := w.token(w.ann)
	const n = 50
	points := make([]string, n)
	statuses := make([]int, n)
	parallel(n, func(i int) {
		resp, err := w.srv.Client().Post(w.srv.URL+"/i/"+tok, "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		statuses[i] = resp.StatusCode
		doc, err := html.Parse(resp.Body)
		if err != nil {
			t.Error(err)
			return
		}
		if th := pagetest.ByTestID(doc, "thanks"); len(th) == 1 {
			points[i] = pagetest.Attr(th[0], "data-points")
		}
	})
	awarded := 0
	for i := range n {
		if statuses[i] != http.StatusOK {
			t.Fatalf("POST %d: status %d", i, statuses[i])
		}
		switch points[i] {
		case "10":
			awarded++
		case "0":
		default:
			t.Fatalf("POST %d: thank-you page with points %q", i, points[i])
		}
	}
	if awarded != 1 {
		t.Errorf("%d thank-you pages show the award, want 1", awarded)
	}
	if a := w.account(w.ann); a.Pending != 10 {
		t.Errorf("pending %d after %d parallel Submits, want 10", a.Pending, n)
	}
}

func TestForgedAndForeignTokensAreNotValid(t *testing.T) {
	w := newWorld(t)
	other, err := postoffice.NewKeyring(1, map[int][]byte{1: postoffice.NewSecret()})
	if err != nil {
		t.Fatal(err)
	}
	tok := w.token(w.ann)
	for name, bad := range map[string]string{
		"tampered":        tamper(tok),
		"other key":       other.Encode(w.job.Key, w.ann.ID),
		"garbage":         "not-a-token",
		"account token":   w.po.AccountToken(w.ann.ID),
		"enrollment":      w.keys.Encode(web.EnrollmentJobKey, w.ann.ID),
		"no such job":     w.keys.Encode(w.job.Key+1, w.ann.ID),
		"no such person":  w.keys.Encode(w.job.Key, 999999),
		"upper-cased":     strings.ToUpper(tok),
		"with extra char": tok + "a",
	} {
		for _, prefix := range []string{"/i/", "/a/"} {
			p := w.get(prefix+bad).want(t, http.StatusNotFound)
			if got := pagetest.Text(p.one(t, "error-title")); got != "This link is not valid" {
				t.Errorf("%s GET %s: %q", name, prefix, got)
			}
			p = w.post(prefix+bad, nil).want(t, http.StatusNotFound)
			if p.has("thanks") {
				t.Errorf("%s POST %s thanks", name, prefix)
			}
			p.one(t, "error")
		}
	}
	// A token we signed for someone the campaign did not select (only a keyring holder can
	// make one) acknowledges nothing.
	p := w.post("/i/"+w.token(w.carla), nil).want(t, http.StatusNotFound)
	p.one(t, "error")
	w.assertNothingRecorded(w.ann)
	w.assertNothingRecorded(w.carla)
}

func TestThankYouSaysWhyNoPoints(t *testing.T) {
	t.Run("rule not started", func(t *testing.T) {
		w := newWorld(t, func(c *postoffice.Campaign) {
			c.Rules[0].Start = "2099-01-01T00:00:00Z"
		})
		p := w.post("/i/"+w.token(w.ann), nil).want(t, http.StatusOK)
		if got := pagetest.Attr(p.one(t, "thanks"), "data-points"); got != "0" {
			t.Errorf("points %s", got)
		}
		if got := pagetest.Text(p.one(t, "reason")); !strings.Contains(got, "has not started yet") {
			t.Errorf("reason %q", got)
		}
		if !w.delivery(w.ann).Received {
			t.Error("an acknowledgement without points is still recorded")
		}
	})
	t.Run("no click rule", func(t *testing.T) {
		w := newWorld(t, func(c *postoffice.Campaign) {
			c.Rules = []postoffice.RuleSpec{{Type: "reply", Points: 5, Frequency: "once"}}
		})
		p := w.post("/i/"+w.token(w.ann), nil).want(t, http.StatusOK)
		p.one(t, "no-rules")
		if p.has("next-link") {
			t.Error("a next link without a rule that names one")
		}
		if !w.delivery(w.ann).Received {
			t.Error("the delivery is not marked received")
		}
	})
}

// failingPostOffice is the real post office whose store cannot commit acknowledgements.
type failingPostOffice struct{ *postoffice.PostOffice }

func (failingPostOffice) Acknowledge(context.Context, string, postoffice.Channel, string) (*postoffice.AckResult, error) {
	return nil, errors.New("disk I/O error")
}

func TestSubmitThatCannotCommitSaysTryAgain(t *testing.T) {
	w := newWorld(t)
	srv := httptest.NewServer(web.Handler(w.deps(failingPostOffice{w.po}, w.srv.URL)))
	defer srv.Close()
	p := fetch(t, http.MethodPost, srv.URL+"/i/"+w.token(w.ann), "", nil).want(t, http.StatusServiceUnavailable)
	if p.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if p.has("thanks") {
		t.Fatal("a thank-you page for an acknowledgement that was not recorded")
	}
	if got := pagetest.Text(p.one(t, "error-title")); got != "Please try again" {
		t.Errorf("error title %q", got)
	}
	w.assertNothingRecorded(w.ann)
}
