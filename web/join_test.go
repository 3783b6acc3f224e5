package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"pointpost/rewards"
	"pointpost/web"
	"pointpost/web/pagetest"
)

// joinForm is a valid enrollment.
func joinForm() url.Values {
	return url.Values{
		"email": {"Dana@Example.org"}, "first_name": {"Dana"}, "last_name": {"Diaz"}, "city": {"Quito"},
		"region": {"Pichincha"}, "country": {"Ecuador"}, "postal_code": {"170150"}, "birth_year": {"1988"},
		"gender": {"female"}, "interests": {"golf", "travel"}, "other_interests": {"Birding, tango"},
		"format": {"text"},
	}
}

func TestJoinFormHasItsFields(t *testing.T) {
	w := newWorld(t)
	p := w.get("/join").want(t, http.StatusOK)
	form := p.one(t, "join-form")
	if pagetest.Attr(form, "method") != "post" || pagetest.Attr(form, "action") != "/join" {
		t.Errorf("form %s %s", pagetest.Attr(form, "method"), pagetest.Attr(form, "action"))
	}
	for _, f := range []string{"email", "first_name", "last_name", "city", "region", "country", "postal_code",
		"birth_year", "gender", "other_interests"} {
		if n := p.one(t, "field-"+f); pagetest.Attr(n, "name") != f {
			t.Errorf("field %s is named %q", f, pagetest.Attr(n, "name"))
		}
	}
	if len(p.all("interest")) < 10 {
		t.Errorf("%d interest boxes", len(p.all("interest")))
	}
	var formats []string
	for d := range form.Descendants() {
		if d.Type == html.ElementNode && d.Data == "input" && pagetest.Attr(d, "name") == "format" {
			formats = append(formats, pagetest.Attr(d, "value"))
		}
	}
	if strings.Join(formats, ",") != "html,text" {
		t.Errorf("format choices %v", formats)
	}
	if p.has("form-errors") || len(p.all("error-email")) > 0 {
		t.Error("a fresh form shows errors")
	}
}

func TestJoinShowsErrorsBesideTheirFields(t *testing.T) {
	w := newWorld(t)
	f := joinForm()
	f.Set("email", "dana at example")
	f.Set("birth_year", "1850")
	f.Set("gender", "robot")
	f.Set("format", "pdf")
	f.Set("city", strings.Repeat("x", 101))
	p := w.post("/join", f).want(t, http.StatusUnprocessableEntity)
	p.one(t, "form-errors")
	for _, field := range []string{"email", "birth_year", "gender", "format", "city"} {
		msg := p.one(t, "error-"+field)
		// The message sits in the field's own block, after its input.
		input := pagetest.ByTestID(msg.Parent, "field-"+field)
		if field == "format" {
			input = []*html.Node{msg.Parent}
		}
		if len(input) == 0 {
			t.Errorf("the %s error is not beside its field", field)
		}
		if pagetest.Text(msg) == "" {
			t.Errorf("empty %s error", field)
		}
	}
	if got := pagetest.Text(p.one(t, "error-birth_year")); !strings.Contains(got, "1900") {
		t.Errorf("birth year error %q does not give the range", got)
	}
	for _, ok := range []string{"first_name", "last_name", "country", "interests"} {
		if p.has("error-" + ok) {
			t.Errorf("%s has an error: %q", ok, pagetest.Text(p.one(t, "error-"+ok)))
		}
	}
	// What she typed is kept.
	if got := pagetest.Attr(p.one(t, "field-first_name"), "value"); got != "Dana" {
		t.Errorf("first name %q not kept", got)
	}
	if got := pagetest.Attr(p.one(t, "field-email"), "aria-invalid"); got != "true" {
		t.Errorf("email aria-invalid %q", got)
	}

	p = w.post("/join", url.Values{}).want(t, http.StatusUnprocessableEntity)
	if got := pagetest.Text(p.one(t, "error-email")); !strings.Contains(got, "enter your e-mail") {
		t.Errorf("missing e-mail: %q", got)
	}
	this := time.Now().Year()
	f = joinForm()
	f.Set("birth_year", itoa(int64(this)))
	w.post("/join", f).want(t, http.StatusUnprocessableEntity).one(t, "error-birth_year")

	if n := len(w.mail.messages()); n != 0 {
		t.Fatalf("%d confirmation e-mails for invalid forms", n)
	}
}

func TestJoinConfirmByDoubleOptIn(t *testing.T) {
	w := newWorld(t)
	p := w.post("/join", joinForm()).want(t, http.StatusOK)
	if got := pagetest.Text(p.one(t, "check-inbox")); !strings.Contains(got, "dana@example.org") {
		t.Errorf("check-inbox page %q", got)
	}
	if _, err := w.st.ConsumerByEmail(t.Context(), "dana@example.org"); err == nil {
		t.Fatal("a consumer before the confirmation")
	}
	sent := w.mail.messages()
	if len(sent) != 1 || sent[0].To != "dana@example.org" || sent[0].Name != "Dana Diaz" {
		t.Fatalf("confirmation e-mails: %+v", sent)
	}
	link, err := url.Parse(sent[0].Link)
	if err != nil || !strings.HasPrefix(sent[0].Link, w.srv.URL+"/join/confirm/") {
		t.Fatalf("confirmation link %q", sent[0].Link)
	}

	// HEAD, as a link scanner might send, confirms nothing.
	if h := w.do(http.MethodHead, link.Path, "", nil); h.status == http.StatusOK {
		t.Errorf("HEAD %s: %d", link.Path, h.status)
	}
	if _, err := w.st.ConsumerByEmail(t.Context(), "dana@example.org"); err == nil {
		t.Fatal("HEAD confirmed the enrollment")
	}

	// Following the link, as a mail scanner would, only shows the Confirm button.
	w.get(link.Path).want(t, http.StatusOK).one(t, "confirm-button")
	if _, err := w.st.ConsumerByEmail(t.Context(), "dana@example.org"); err == nil {
		t.Fatal("following the link confirmed the enrollment")
	}
	p = w.post(link.Path, url.Values{}).want(t, http.StatusOK)
	p.one(t, "welcome")
	c := w.consumer("dana@example.org")
	if c.FirstName != "Dana" || c.LastName != "Diaz" || c.City != "Quito" || c.Region != "Pichincha" ||
		c.Country != "Ecuador" || c.PostalCode != "170150" || c.BirthYear != 1988 || c.Gender != "female" ||
		c.Format != rewards.FormatText || c.Status != rewards.StatusActive ||
		strings.Join(c.Interests, ",") != "golf,travel,birding,tango" {
		t.Errorf("consumer %+v", c)
	}
	account := pagetest.Attr(p.one(t, "account-link"), "href")
	if account != "/account/"+w.po.AccountToken(c.ID) {
		t.Errorf("account link %q", account)
	}
	w.get(account).want(t, http.StatusOK).one(t, "balance")

	// Confirming twice is harmless.
	p = w.post(link.Path, url.Values{}).want(t, http.StatusOK)
	p.one(t, "welcome")
	if again := w.consumer("dana@example.org"); again.ID != c.ID {
		t.Errorf("second confirmation: consumer %d, want %d", again.ID, c.ID)
	}
	if n, _ := w.st.CountConsumers(t.Context()); n != 4 {
		t.Errorf("%d consumers, want 4", n)
	}
}

func TestJoinOfAnUnsubscribedAddressKeepsItUnsubscribed(t *testing.T) {
	w := newWorld(t)
	w.post("/u/"+w.token(w.ann), nil).want(t, http.StatusOK)
	f := joinForm()
	f.Set("email", "ann@example.com")
	w.post("/join", f).want(t, http.StatusOK).one(t, "check-inbox")
	sent := w.mail.messages()
	if len(sent) != 1 {
		t.Fatalf("%d e-mails", len(sent))
	}
	link, _ := url.Parse(sent[0].Link)
	p := w.post(link.Path, url.Values{}).want(t, http.StatusOK)
	p.one(t, "status-note")
	if c := w.consumer("ann@example.com"); c.ID != w.ann.ID || c.Status != rewards.StatusUnsubscribed {
		t.Errorf("consumer %d is %s", c.ID, c.Status)
	}
}

func TestForgedConfirmLinksAreRefused(t *testing.T) {
	w := newWorld(t)
	w.post("/join", joinForm()).want(t, http.StatusOK)
	link, _ := url.Parse(w.mail.messages()[0].Link)
	tok := strings.TrimPrefix(link.Path, "/join/confirm/")
	_, id, err := w.keys.Decode(tok)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"tampered":        tamper(tok),
		"account token":   w.po.AccountToken(id),
		"delivery token":  w.keys.Encode(w.job.Key, id),
		"no such sign-up": w.keys.Encode(web.EnrollmentJobKey, id+1),
		"garbage":         "abc",
	} {
		p := w.post("/join/confirm/"+bad, url.Values{})
		if p.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", name, p.status)
			continue
		}
		p.one(t, "error")
	}
	if _, err := w.st.ConsumerByEmail(t.Context(), "dana@example.org"); err == nil {
		t.Fatal("a forged link confirmed the enrollment")
	}
	// The enrollment link opens no account or invitation either.
	w.get("/account/"+tok).want(t, http.StatusNotFound)
	w.get("/i/"+tok).want(t, http.StatusNotFound)
}

func TestJoinWhenTheConfirmationCannotBeSent(t *testing.T) {
	w := newWorld(t)
	w.mail.err = errFake
	p := w.post("/join", joinForm()).want(t, http.StatusServiceUnavailable)
	p.one(t, "error")
	if p.has("check-inbox") {
		t.Error("check your inbox, though no e-mail went out")
	}
}

// TestJoinIsRateLimited: /join sends at most three confirmations an hour to one address,
// and answers 429 after that, sending nothing more.
func TestJoinIsRateLimited(t *testing.T) {
	w := newWorld(t)
	for i := 0; i < 3; i++ {
		w.post("/join", joinForm()).want(t, http.StatusOK).one(t, "check-inbox")
	}
	p := w.post("/join", joinForm())
	if p.status != http.StatusTooManyRequests {
		t.Fatalf("fourth sign-up for one address: %d, want 429", p.status)
	}
	if n := len(w.mail.messages()); n != 3 {
		t.Fatalf("%d confirmation e-mails, want 3", n)
	}
	other := joinForm()
	other.Set("email", "someone.else@example.org")
	w.post("/join", other).want(t, http.StatusOK)
}
