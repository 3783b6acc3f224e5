package toolbox_test

import (
	"context"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/net/html"

	"pointpost/mailer"
	"pointpost/rewards"
	"pointpost/toolbox"
)

// adminPost posts a form and parses the page it answers with.
func adminPost(t *testing.T, c *client, path string, form url.Values, want int) (*http.Response, *html.Node) {
	t.Helper()
	resp, body := c.post(path, form)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d, want %d\n%.400s", path, resp.StatusCode, want, body)
	}
	return resp, authParse(t, body)
}

// adminInvite posts a form that makes a sign-in link and follows the redirect to the page
// that shows it, as a browser does (POST, redirect, GET); the page shows it once.
func adminInvite(t *testing.T, c *client, path string, form url.Values) *html.Node {
	t.Helper()
	resp, _ := adminPost(t, c, path, form, http.StatusSeeOther)
	loc := resp.Header.Get("Location")
	doc := c.page(loc, http.StatusOK)
	if len(byTestID(c.page(loc, http.StatusOK), "invite-link")) != 0 {
		t.Errorf("a refresh of %s shows the link again", loc)
	}
	return doc
}

// adminLink returns the one-time link a page shows, as a path on the test server.
func adminLink(t *testing.T, e *env, doc *html.Node) string {
	t.Helper()
	n := byTestID(doc, "invite-link")
	if len(n) != 1 || !strings.HasPrefix(attr(n[0], "value"), e.srv.URL+"/welcome/") {
		t.Fatalf("no sign-in link shown (%d)", len(n))
	}
	return strings.TrimPrefix(attr(n[0], "value"), e.srv.URL)
}

func TestAdminPagesAreHiddenFromIssuers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acme, u := e.signIn("ann@acme.example", "acme")
	id := strconv.FormatInt(u.IssuerID, 10)
	for _, path := range []string{"/issuers", "/issuers/" + id, "/settings"} {
		if doc := acme.page(path, http.StatusNotFound); len(byTestID(doc, "not-found")) != 1 {
			t.Fatalf("GET %s as an issuer user: no not-found page", path)
		}
	}
	for path, form := range map[string]url.Values{
		"/settings":                  {"postal_address": {"Evil Corp"}},
		"/issuers":                   {"slug": {"evil"}, "name": {"Evil"}},
		"/operators":                 {"email": {"me@evil.example"}},
		"/issuers/" + id + "/users":  {"email": {"friend@evil.example"}},
		"/issuers/" + id + "/budget": {"budget": {"0"}},
		"/users/" + strconv.FormatInt(u.ID, 10) + "/link": nil,
	} {
		if resp, _ := acme.post(path, form); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("POST %s as an issuer user: %d, want 404", path, resp.StatusCode)
		}
	}
	if v, _ := e.st.Setting(ctx, toolbox.SettingPostalAddress); v != "" {
		t.Fatalf("an issuer user changed the postal address to %q", v)
	}
	users, _ := e.st.Users(ctx, 0)
	issuers, _ := e.st.Issuers(ctx)
	if len(users) != 1 || len(issuers) != 1 {
		t.Fatalf("an issuer user added users or issuers: %d users, %d issuers", len(users), len(issuers))
	}
}

func TestOperatorCreatesIssuers(t *testing.T) {
	e := newEnv(t)
	op, _ := e.signIn("op@example.com", "")
	if doc := op.page("/issuers", http.StatusOK); len(byTestID(doc, "no-issuers")) != 1 {
		t.Fatal("no empty state without issuers")
	}
	_, doc := adminPost(t, op, "/issuers", url.Values{"slug": {"Acme Inc!"}, "name": {""}}, http.StatusUnprocessableEntity)
	if len(byTestID(doc, "error-slug")) != 1 || len(byTestID(doc, "error-name")) != 1 {
		t.Fatal("bad slug and empty name not both named")
	}
	resp, _ := adminPost(t, op, "/issuers", url.Values{"slug": {"acme"}, "name": {"Acme Inc."}}, http.StatusSeeOther)
	issuers, err := e.st.Issuers(context.Background())
	if err != nil || len(issuers) != 1 || issuers[0].Name != "Acme Inc." {
		t.Fatalf("issuers %v, %v", issuers, err)
	}
	if want := "/issuers/" + strconv.FormatInt(issuers[0].ID, 10); resp.Header.Get("Location") != want {
		t.Fatalf("after create: to %q, want %q", resp.Header.Get("Location"), want)
	}
	_, doc = adminPost(t, op, "/issuers", url.Values{"slug": {"acme"}, "name": {"Other"}}, http.StatusUnprocessableEntity)
	if n := byTestID(doc, "error-slug"); len(n) != 1 || !strings.Contains(text(n[0]), "already") {
		t.Fatal("a taken slug is not named")
	}
	if rows := byTestID(op.page("/issuers", http.StatusOK), "issuer"); len(rows) != 1 || !strings.Contains(text(rows[0]), "acme") {
		t.Fatal("the new issuer is not listed")
	}
	op.page("/issuers/999", http.StatusNotFound)
	op.page("/issuers/x", http.StatusNotFound)
}

func TestOperatorInvitesIssuerUsers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	op, _ := e.signIn("op@example.com", "")
	acme := e.issuer("acme")
	path := "/issuers/" + strconv.FormatInt(acme.ID, 10) + "/users"
	_, doc := adminPost(t, op, path, url.Values{"email": {"not an address"}}, http.StatusUnprocessableEntity)
	if len(byTestID(doc, "error-email")) != 1 {
		t.Fatal("a bad address is not named")
	}
	doc = adminInvite(t, op, path, url.Values{"email": {"Ann@Acme.example"}, "name": {"Ann"}})
	link := adminLink(t, e, doc)
	u, hash, err := e.st.UserByEmail(ctx, "ann@acme.example")
	if err != nil || u.Role != rewards.RoleIssuer || u.IssuerID != acme.ID || hash != "" || u.Name != "Ann" {
		t.Fatalf("invited user %+v, hash %q, %v", u, hash, err)
	}
	if rows := byTestID(doc, "user"); len(rows) != 1 || !strings.Contains(text(rows[0]), "invited") {
		t.Fatal("the invited user is not listed as invited")
	}
	_, doc = adminPost(t, op, path, url.Values{"email": {"ANN@acme.example"}}, http.StatusUnprocessableEntity)
	if n := byTestID(doc, "error-email"); len(n) != 1 || !strings.Contains(text(n[0]), "already") {
		t.Fatal("a taken address (in other case) is not named")
	}
	// The invitation works: Ann chooses a password and lands in acme's toolbox.
	ann := e.anonymous()
	ann.page(link, http.StatusOK)
	if resp, _ := ann.post(link, url.Values{"password": {"ann's password"}, "confirm": {"ann's password"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("accepting the invitation: %d", resp.StatusCode)
	}
	if n := byTestID(ann.page("/profile", http.StatusOK), "profile-role"); len(n) != 1 || !strings.Contains(text(n[0]), "acme") {
		t.Fatal("the invited user is not acme's")
	}
	// A lost link: the operator makes a new one, which works once more.
	doc = adminInvite(t, op, "/users/"+strconv.FormatInt(u.ID, 10)+"/link", nil)
	again := adminLink(t, e, doc)
	if again == link {
		t.Fatal("the new link is the old one")
	}
	e.anonymous().page(again, http.StatusOK)
	adminPost(t, op, "/users/999/link", nil, http.StatusNotFound)
}

func TestOperatorInvitesOperators(t *testing.T) {
	e := newEnv(t)
	op, _ := e.signIn("op@example.com", "")
	doc := adminInvite(t, op, "/operators", url.Values{"email": {"bea@example.com"}})
	adminLink(t, e, doc)
	u, _, err := e.st.UserByEmail(context.Background(), "bea@example.com")
	if err != nil || !u.Operator() {
		t.Fatalf("invited operator %+v, %v", u, err)
	}
	_, doc = adminPost(t, op, "/operators", url.Values{"email": {"op@example.com"}}, http.StatusUnprocessableEntity)
	if len(byTestID(doc, "error-email")) != 1 {
		t.Fatal("inviting an existing address is not refused")
	}
}

func TestOperatorDisablesAndEnablesUsers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	op, self := e.signIn("op@example.com", "")
	ann, u := e.signIn("ann@acme.example", "acme")
	id := strconv.FormatInt(u.ID, 10)
	resp, _ := adminPost(t, op, "/users/"+id+"/disable", nil, http.StatusSeeOther)
	if resp.Header.Get("Location") != "/issuers/"+strconv.FormatInt(u.IssuerID, 10) {
		t.Fatalf("after disabling: to %q", resp.Header.Get("Location"))
	}
	if ann.authSignedIn() {
		t.Fatal("a disabled user's session still works")
	}
	if got, _ := e.st.UserByID(ctx, u.ID); !got.Disabled {
		t.Fatal("user not disabled")
	}
	adminPost(t, op, "/users/"+id+"/enable", nil, http.StatusSeeOther)
	if got, _ := e.st.UserByID(ctx, u.ID); got.Disabled {
		t.Fatal("user not enabled")
	}
	// An operator cannot lock himself out.
	adminPost(t, op, "/users/"+strconv.FormatInt(self.ID, 10)+"/disable", nil, http.StatusSeeOther)
	if !op.authSignedIn() {
		t.Fatal("the operator disabled himself")
	}
	adminPost(t, op, "/users/999/disable", nil, http.StatusNotFound)
}

func TestOperatorSetsIssuerBudget(t *testing.T) {
	e := newEnv(t)
	op, _ := e.signIn("op@example.com", "")
	acme := e.issuer("acme")
	path := "/issuers/" + strconv.FormatInt(acme.ID, 10) + "/budget"
	for _, bad := range []string{"-5", "lots", ""} {
		_, doc := adminPost(t, op, path, url.Values{"budget": {bad}}, http.StatusUnprocessableEntity)
		if len(byTestID(doc, "error-budget")) != 1 {
			t.Fatalf("budget %q not refused beside the field", bad)
		}
	}
	adminPost(t, op, path, url.Values{"budget": {"12,500"}}, http.StatusSeeOther)
	budget, spent, err := e.st.IssuerPoints(context.Background(), acme.ID)
	if err != nil || budget != 12500 || spent != 0 {
		t.Fatalf("budget %d spent %d, %v", budget, spent, err)
	}
	doc := op.page("/issuers/"+strconv.FormatInt(acme.ID, 10), http.StatusOK)
	if n := byTestID(doc, "left"); len(n) != 1 || text(n[0]) != "12,500" {
		t.Fatal("budget left not shown with thousands separators")
	}
	if n := byTestID(op.page("/issuers", http.StatusOK), "budget"); len(n) != 1 || text(n[0]) != "12,500" {
		t.Fatal("budget not in the issuers list")
	}
}

func TestOperatorSettings(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	op, _ := e.signIn("op@example.com", "")
	if doc := op.page("/settings", http.StatusOK); len(byTestID(doc, "next-start")) != 1 {
		t.Fatal("the settings page does not say when settings take effect")
	}
	bad := url.Values{"from": {"not an address"}, "reply_domain": {"bad domain!"}, "postal_address": {"  "}}
	_, doc := adminPost(t, op, "/settings", bad, http.StatusUnprocessableEntity)
	for _, f := range []string{"error-from", "error-reply_domain", "error-postal_address"} {
		if len(byTestID(doc, f)) != 1 {
			t.Fatalf("%s missing", f)
		}
	}
	if !strings.Contains(adminHTML(doc), "not an address") {
		t.Fatal("what was typed is lost")
	}
	_, doc = adminPost(t, op, "/settings", url.Values{"postal_address": {strings.Repeat("x", 301)}}, http.StatusUnprocessableEntity)
	if len(byTestID(doc, "error-postal_address")) != 1 {
		t.Fatal("a 301-character postal address is accepted")
	}
	if v, _ := e.st.Setting(ctx, toolbox.SettingPostalAddress); v != "" {
		t.Fatalf("a refused form saved %q", v)
	}
	good := url.Values{"from": {"Acme Rewards <rewards@acme.example>"}, "reply_domain": {"Reply.Acme.example"},
		"postal_address": {"Acme, 1 Main Street, Springfield"}}
	adminPost(t, op, "/settings", good, http.StatusSeeOther)
	for name, want := range map[string]string{toolbox.SettingFrom: "Acme Rewards <rewards@acme.example>",
		toolbox.SettingReplyDomain: "reply.acme.example", toolbox.SettingPostalAddress: "Acme, 1 Main Street, Springfield"} {
		if got, err := e.st.Setting(ctx, name); got != want || err != nil {
			t.Fatalf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if !strings.Contains(adminHTML(op.page("/settings", http.StatusOK)), "reply.acme.example") {
		t.Fatal("saved settings not shown")
	}
}

func adminHTML(n *html.Node) string {
	var b strings.Builder
	html.Render(&b, n)
	return b.String()
}

// TestInvitationsAreEMailed sends invitations and new sign-in links through real mail (the
// Notices sender to an SMTP sink on loopback); a relay that refuses leaves the link on the
// page with why.
func TestInvitationsAreEMailed(t *testing.T) {
	sink := &mailer.Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	sender, err := mailer.NewSMTPSender(mailer.RelayConfig{URL: sink.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Close() })
	e := newEnv(t, func(d *toolbox.Deps) {
		d.Invitations = &mailer.Notices{Sender: sender, From: mail.Address{Name: "Pointpost", Address: "toolbox@pp.example"}, Domain: "pp.example"}
	})
	op, _ := e.signIn("op@example.com", "")
	acme := e.issuer("acme")

	doc := adminInvite(t, op, "/issuers/"+strconv.FormatInt(acme.ID, 10)+"/users", url.Values{"email": {"ann@acme.example"}, "name": {"Ann"}})
	link := adminLink(t, e, doc)
	if len(byTestID(doc, "invite-mailed")) != 1 {
		t.Fatal("the page does not say the link was e-mailed")
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || msgs[0].To != "ann@acme.example" {
		t.Fatalf("%d messages sent, want one to ann", len(msgs))
	}
	body := strings.ReplaceAll(strings.ReplaceAll(string(msgs[0].Data), "=\r\n", ""), "=3D", "=")
	if !strings.Contains(body, e.srv.URL+link) || !strings.Contains(body, "Acme") {
		t.Fatalf("the e-mail lacks the link or the issuer:\n%s", msgs[0].Data)
	}

	// The relay refuses: the link is still shown, with why it was not mailed.
	sink.Answer = func(from, to string, data []byte) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	doc = adminInvite(t, op, "/operators", url.Values{"email": {"bo@example.com"}})
	adminLink(t, e, doc)
	if n := byTestID(doc, "invite-mail-error"); len(n) != 1 || !strings.Contains(text(n[0]), "could not be sent") {
		t.Fatal("a refused invitation e-mail is not reported on the page")
	}
}

// issuerKeys returns the API keys card of an issuer's page.
func issuerKeys(t *testing.T, doc *html.Node) *html.Node {
	t.Helper()
	card := byTestID(doc, "api-keys")
	if len(card) != 1 {
		t.Fatalf("%d API keys cards on the issuer's page", len(card))
	}
	return card[0]
}

// apiJobKeys lists the keys of the jobs GET /api/v1/jobs shows to secret, or returns its
// status when it is not 200.
func apiJobKeys(t *testing.T, e *env, secret string) ([]int64, int) {
	t.Helper()
	r := e.call(secret, http.MethodGet, "/api/v1/jobs", "")
	if r.status != http.StatusOK {
		return nil, r.status
	}
	var body struct {
		Jobs []struct {
			Key int64 `json:"key"`
		} `json:"jobs"`
	}
	r.want(t, http.StatusOK, &body)
	var keys []int64
	for _, j := range body.Jobs {
		keys = append(keys, j.Key)
	}
	return keys, r.status
}

// TestOperatorMakesIssuerAPIKeys: an operator makes an issuer's key on the issuer's page;
// its secret is shown once and reaches that issuer's jobs only.
func TestOperatorMakesIssuerAPIKeys(t *testing.T) {
	e := newEnv(t, withAPI)
	ctx := context.Background()
	op, _ := e.signIn("op@example.com", "")
	acme, bolt := e.issuer("acme"), e.issuer("bolt")
	acmeJob, boltJob := e.job(acme, "Acme spring"), e.job(bolt, "Bolt spring")
	page := "/issuers/" + strconv.FormatInt(acme.ID, 10)
	if card := issuerKeys(t, op.page(page, http.StatusOK)); len(byTestID(card, "no-keys")) != 1 {
		t.Fatal("no empty state on an issuer without keys")
	}

	for _, name := range []string{"  ", strings.Repeat("k", 101)} {
		_, doc := adminPost(t, op, page+"/api-keys", url.Values{"name": {name}}, http.StatusUnprocessableEntity)
		card := issuerKeys(t, doc)
		if len(byTestID(card, "error-name")) != 1 || len(byTestID(card, "new-secret")) != 0 {
			t.Fatalf("key name %q: not refused beside the field", name)
		}
		if n := byTestID(card, "key-form"); len(n) != 1 || !strings.Contains(adminHTML(n[0]), `aria-invalid="true"`) {
			t.Fatalf("key name %q: the field is not marked invalid", name)
		}
	}
	if keys, _ := e.st.APIKeys(ctx, acme.ID); len(keys) != 0 {
		t.Fatalf("refused names stored %d keys", len(keys))
	}

	_, doc := adminPost(t, op, page+"/api-keys", url.Values{"name": {"CRM sync"}}, http.StatusOK)
	shown := byTestID(issuerKeys(t, doc), "new-secret")
	if len(shown) != 1 {
		t.Fatalf("%d secrets shown after create", len(shown))
	}
	secret := attr(shown[0], "value")
	k, err := e.st.APIKeyByHash(ctx, authHash(secret))
	if err != nil {
		t.Fatalf("the secret shown is no key: %v", err)
	}
	if k.IssuerID != acme.ID || k.Name != "CRM sync" || k.Prefix != secret[:11] {
		t.Fatalf("stored key %+v", k)
	}

	// Shown once: the page lists the key, never the secret again.
	_, body := op.do(http.MethodGet, page, nil, nil)
	rows := byTestID(issuerKeys(t, authParse(t, body)), "key")
	if strings.Contains(body, secret) || len(rows) != 1 {
		t.Fatalf("the issuer's page shows the secret again (%v) or %d keys", strings.Contains(body, secret), len(rows))
	}
	if name, prefix := byTestID(rows[0], "key-name"), byTestID(rows[0], "key-prefix"); text(name[0]) != "CRM sync" ||
		!strings.HasPrefix(text(prefix[0]), secret[:11]) || len(byTestID(rows[0], "revoke")) != 1 {
		t.Fatalf("key row %q", text(rows[0]))
	}
	if len(byTestID(issuerKeys(t, op.page("/issuers/"+strconv.FormatInt(bolt.ID, 10), http.StatusOK)), "key")) != 0 {
		t.Fatal("bolt's page lists acme's key")
	}
	if len(byTestID(op.page("/profile", http.StatusOK), "key")) != 0 {
		t.Fatal("the operator's profile lists acme's key as the operator's own")
	}

	// The key reaches acme's jobs, and only them.
	if keys, status := apiJobKeys(t, e, secret); status != http.StatusOK || len(keys) != 1 || keys[0] != acmeJob.Key {
		t.Fatalf("GET /api/v1/jobs with acme's new key: %d, jobs %v, want [%d]", status, keys, acmeJob.Key)
	}
	e.call(secret, http.MethodGet, "/api/v1/jobs/"+strconv.FormatInt(acmeJob.Key, 10), "").want(t, http.StatusOK, nil)
	e.call(secret, http.MethodGet, "/api/v1/jobs/"+strconv.FormatInt(boltJob.Key, 10), "").wantError(t, http.StatusNotFound, "")
	if used := byTestID(issuerKeys(t, op.page(page, http.StatusOK)), "key-used"); len(used) != 1 || text(used[0]) == "never" {
		t.Fatal("the key's last use is not shown after it was used")
	}
}

// TestOperatorRevokesIssuerAPIKeys: Revoke on the issuer's page ends the key at once; only
// the issuer's own keys can be revoked there, and a form naming none says so.
func TestOperatorRevokesIssuerAPIKeys(t *testing.T) {
	e := newEnv(t, withAPI)
	ctx := context.Background()
	op, _ := e.signIn("op@example.com", "")
	acme, bolt := e.issuer("acme"), e.issuer("bolt")
	e.job(acme, "Acme spring")
	k := &rewards.APIKey{Name: "shop", IssuerID: acme.ID}
	secret, err := rewards.NewAPIKey(ctx, e.st, k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, status := apiJobKeys(t, e, secret); status != http.StatusOK {
		t.Fatalf("the key before revoking: %d", status)
	}
	acmePage, boltPage := "/issuers/"+strconv.FormatInt(acme.ID, 10), "/issuers/"+strconv.FormatInt(bolt.ID, 10)
	keyID := url.Values{"key_id": {strconv.FormatInt(k.ID, 10)}}

	// Through another issuer's page, or naming no key, nothing is revoked.
	if resp, _ := op.post(boltPage+"/api-keys/revoke", keyID); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("revoking acme's key through bolt's page: %d, want 404", resp.StatusCode)
	}
	for _, form := range []url.Values{nil, {"key_id": {"x"}}, {"key_id": {"-3"}}} {
		_, doc := adminPost(t, op, acmePage+"/api-keys/revoke", form, http.StatusBadRequest)
		if len(byTestID(issuerKeys(t, doc), "error-key_id")) != 1 {
			t.Fatalf("revoke with %v: no error shown", form)
		}
	}
	if resp, _ := op.post(acmePage+"/api-keys/revoke", url.Values{"key_id": {"99999"}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("revoking a key that does not exist: %d, want 404", resp.StatusCode)
	}
	if _, status := apiJobKeys(t, e, secret); status != http.StatusOK {
		t.Fatalf("the key after refused revokes: %d", status)
	}

	// An issuer's user cannot use the operator's forms, even for its own issuer.
	ann, _ := e.signIn("ann@acme.example", "acme")
	for path, form := range map[string]url.Values{acmePage + "/api-keys/revoke": keyID, acmePage + "/api-keys": {"name": {"mine"}}} {
		if resp, _ := ann.post(path, form); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("POST %s as acme's user: %d, want 404", path, resp.StatusCode)
		}
	}
	if keys, _ := e.st.APIKeys(ctx, acme.ID); len(keys) != 1 || !keys[0].RevokedAt.IsZero() {
		t.Fatalf("acme's user changed its keys: %+v", keys)
	}

	resp, _ := adminPost(t, op, acmePage+"/api-keys/revoke", keyID, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != acmePage+"#api-keys" {
		t.Fatalf("after revoke: to %q", loc)
	}
	r := e.call(secret, http.MethodGet, "/api/v1/jobs", "")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("GET /api/v1/jobs with the revoked key: %d, want 401", r.status)
	}
	doc := op.page(acmePage, http.StatusOK)
	if f := byTestID(doc, "flash"); len(f) != 1 || !strings.Contains(text(f[0]), "revoked") {
		t.Fatal("no flash after revoke")
	}
	card := issuerKeys(t, doc)
	if len(byTestID(card, "revoked")) != 1 || len(byTestID(card, "revoke")) != 0 {
		t.Fatal("the key is not shown revoked, or still offers Revoke")
	}
	// Twice (a double click) is no error.
	adminPost(t, op, acmePage+"/api-keys/revoke", keyID, http.StatusSeeOther)
	if f := byTestID(op.page(acmePage, http.StatusOK), "flash"); len(f) != 1 || !strings.Contains(text(f[0]), "already") {
		t.Fatal("a second revoke does not say the key was revoked already")
	}
}
