package toolbox_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"pointpost/toolbox"
)

// TestSettingsShowsSetup: the Settings page lists the DNS records to publish (MX of the reply
// domain, SPF, DKIM, DMARC with reports to the reply domain), each inbound way as configured,
// and the URL of each webhook in effect, with no secret in the page.
func TestSettingsShowsSetup(t *testing.T) {
	setup := toolbox.Setup{FromDomain: "acme.example", ReplyDomain: "reply.acme.example", MailHost: "mx.acme.example",
		DKIM: []toolbox.DNSRecord{{Name: "pp1._domainkey.acme.example", Type: "TXT", Value: "v=DKIM1; k=ed25519; p=AAAA"}},
		SMTP: "0.0.0.0:25", SMTPTLS: true, IMAP: "imaps://reply%40acme.example:xxxxx@imap.acme.example/INBOX",
		Webhooks: map[string]bool{toolbox.SettingPostmarkAuth: true, toolbox.SettingSendGridInbound: true}}
	e := newEnv(t, func(d *toolbox.Deps) { d.Setup, d.BaseURL = setup, "https://pp.acme.example" })
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/settings", http.StatusOK)

	var recs []string
	for _, r := range byTestID(doc, "dns-record") {
		var cells []string
		for c := r.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode {
				cells = append(cells, strings.TrimSpace(text(c)))
			}
		}
		recs = append(recs, strings.Join(cells, " "))
	}
	for _, want := range []string{
		"reply.acme.example MX 10 mx.acme.example.",
		"acme.example TXT v=spf1 a:mx.acme.example -all",
		"pp1._domainkey.acme.example TXT v=DKIM1; k=ed25519; p=AAAA",
		"_dmarc.acme.example TXT v=DMARC1; p=none; rua=mailto:dmarc@reply.acme.example",
	} {
		if !slices.Contains(recs, want) {
			t.Errorf("no record %q among %q", want, recs)
		}
	}
	if s := text(byTestID(doc, "way-smtp")[0]); !strings.Contains(s, "0.0.0.0:25") || !strings.Contains(s, "with STARTTLS") {
		t.Errorf("the SMTP way reads %q", s)
	}
	if s := text(byTestID(doc, "way-imap")[0]); !strings.Contains(s, "imap.acme.example") || strings.Contains(s, "secret") {
		t.Errorf("the IMAP way reads %q", s)
	}
	var urls []string
	for _, u := range byTestID(doc, "webhook-url") {
		urls = append(urls, text(u))
	}
	want := []string{"https://pp.acme.example/webhooks/sendgrid/inbound/SECRET",
		"https://pp.acme.example/webhooks/postmark", "https://pp.acme.example/webhooks/postmark/inbound"}
	if !slices.Equal(urls, want) {
		t.Errorf("webhook URLs %q, want %q", urls, want)
	}
	for _, w := range byTestID(doc, "way-webhook") {
		if attr(w, "data-provider") == "mailgun_key" && !strings.Contains(text(w), "off") {
			t.Errorf("Mailgun, not configured, reads %q", text(w))
		}
	}

	// Without TLS the page says so.
	setup.SMTPTLS = false
	e2 := newEnv(t, func(d *toolbox.Deps) { d.Setup = setup })
	op2, _ := e2.signIn("op@example.com", "")
	if s := text(byTestID(op2.page("/settings", http.StatusOK), "smtp-tls")[0]); s != "without TLS" {
		t.Errorf("a receiver without TLS reads %q", s)
	}
}

// TestWebhookSecretsSaved: secrets typed on the Settings page are checked, stored all or
// nothing, never shown back, kept when the field is left empty, and removed on request.
func TestWebhookSecretsSaved(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	op, _ := e.signIn("op@example.com", "")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sgKey := base64.StdEncoding.EncodeToString(der)

	bad := url.Values{"sendgrid_key": {"not-a-key"}, "postmark_auth": {"nocolon"}, "ses_topic": {"topic"},
		"sendgrid_inbound": {"short"}, "mailgun_key": {"key-mailgun-1"}}
	_, doc := adminPost(t, op, "/settings/webhooks", bad, http.StatusUnprocessableEntity)
	for _, f := range []string{"sendgrid_key", "postmark_auth", "ses_topic", "sendgrid_inbound"} {
		if len(byTestID(doc, "error-"+f)) != 1 {
			t.Errorf("no error beside %s", f)
		}
	}
	if v, _ := e.st.Setting(ctx, toolbox.SettingMailgunKey); v != "" {
		t.Fatalf("a refused form saved the Mailgun key %q", v)
	}

	good := url.Values{"sendgrid_key": {sgKey}, "postmark_auth": {"pm:pm-secret-pass"},
		"ses_topic": {"arn:aws:sns:us-east-1:123456789012:bounces"}, "sendgrid_inbound": {"inbound0123456789abcdef"},
		"mailgun_key": {"key-mailgun-1"}}
	adminPost(t, op, "/settings/webhooks", good, http.StatusSeeOther)
	for name, want := range map[string]string{toolbox.SettingSendGridKey: sgKey, toolbox.SettingPostmarkAuth: "pm:pm-secret-pass",
		toolbox.SettingSESTopic: "arn:aws:sns:us-east-1:123456789012:bounces", toolbox.SettingSendGridInbound: "inbound0123456789abcdef",
		toolbox.SettingMailgunKey: "key-mailgun-1"} {
		if got, err := e.st.Setting(ctx, name); got != want || err != nil {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	page := adminHTML(op.page("/settings", http.StatusOK))
	for _, secret := range []string{sgKey, "pm-secret-pass", "inbound0123456789abcdef", "key-mailgun-1"} {
		if strings.Contains(page, secret) {
			t.Errorf("the page shows a saved secret %q", secret)
		}
	}
	if !strings.Contains(page, "saved: type to replace") {
		t.Error("the page does not say a secret is saved")
	}

	// An empty field keeps the secret; a ticked box removes it.
	adminPost(t, op, "/settings/webhooks", url.Values{"mailgun_key_clear": {"1"}}, http.StatusSeeOther)
	if v, _ := e.st.Setting(ctx, toolbox.SettingMailgunKey); v != "" {
		t.Errorf("the removed Mailgun key is still %q", v)
	}
	if v, _ := e.st.Setting(ctx, toolbox.SettingPostmarkAuth); v != "pm:pm-secret-pass" {
		t.Errorf("an empty field changed the Postmark auth to %q", v)
	}
}
