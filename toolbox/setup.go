package toolbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
)

// Setup is what the Settings page shows of how the world reaches pointpost: main fills it
// from the configuration in effect (flags and environment over saved settings).
type Setup struct {
	// FromDomain signs and sends; ReplyDomain takes replies, bounces and DMARC reports.
	FromDomain, ReplyDomain string
	// MailHost is the host name the reply domain's MX names: where the SMTP receiver listens
	// to the world (the host of the base URL unless said otherwise).
	MailHost string
	// DKIM are the TXT records of the keys that sign.
	DKIM []DNSRecord
	// Relay is the host mail leaves through, "" for the embedded outbox.
	Relay string
	// SMTP is the receiver's address, "" when this process runs none; SMTPTLS is set when it
	// offers STARTTLS.
	SMTP    string
	SMTPTLS bool
	// IMAP is the mailbox read, its password left out; "" when none.
	IMAP string
	// Webhooks names, by setting (SettingMailgunKey...), the webhooks whose secret is in
	// effect.
	Webhooks map[string]bool
}

// DNSRecord is one record to publish.
type DNSRecord struct{ Name, Type, Value string }

// The webhook secrets the Settings page saves, by provider; flags and environment win.
const (
	SettingMailgunKey      = "webhook_mailgun_key"
	SettingSendGridKey     = "webhook_sendgrid_key"
	SettingSendGridInbound = "webhook_sendgrid_inbound"
	SettingPostmarkAuth    = "webhook_postmark_auth"
	SettingSESTopic        = "webhook_ses_topic"
)

// webhookSecret is one provider's secret on the Settings page.
type webhookSecret struct {
	Setting, Field, Label, Hint string
	// Paths are the webhook URLs under the base URL; SECRET stands for the secret.
	Paths []string
	// InURL marks a secret the URL itself carries (SendGrid Inbound Parse).
	InURL bool
}

var webhookSecrets = []webhookSecret{
	{SettingSESTopic, "ses_topic", "Amazon SES (through SNS): topic ARN", "The ARN of the SNS topic SES notifies of bounces and complaints; subscribe the URL to it (pointpost confirms).", []string{"/webhooks/ses"}, false},
	{SettingSendGridKey, "sendgrid_key", "SendGrid event webhook: verification key", "The signed event webhook's public key, base64, as SendGrid's console shows it.", []string{"/webhooks/sendgrid"}, false},
	{SettingSendGridInbound, "sendgrid_inbound", "SendGrid Inbound Parse: secret", "Inbound Parse signs nothing: pick a long random secret; the URL carries it. Tick “POST the raw, full MIME message”.", []string{"/webhooks/sendgrid/inbound/SECRET"}, true},
	{SettingPostmarkAuth, "postmark_auth", "Postmark: user:password", "The basic-auth credentials you put in the webhook URL, https://user:password@host/….", []string{"/webhooks/postmark", "/webhooks/postmark/inbound"}, false},
	{SettingMailgunKey, "mailgun_key", "Mailgun: HTTP webhook signing key", "From Mailgun's Webhooks page; for replies, a route that forwards to the inbound URL.", []string{"/webhooks/mailgun", "/webhooks/mailgun/inbound"}, false},
}

// checkWebhookSecret says what is wrong with a secret as typed, "" when nothing.
func checkWebhookSecret(field, v string) string {
	switch field {
	case "sendgrid_key":
		der, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return "Paste the key as SendGrid shows it: base64."
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if k, ok := pub.(*ecdsa.PublicKey); err != nil || !ok || k.Curve != elliptic.P256() {
			return "That is not SendGrid's verification key (an ECDSA P-256 public key)."
		}
	case "postmark_auth":
		if u, p, ok := strings.Cut(v, ":"); !ok || u == "" || p == "" {
			return "Type user:password."
		}
	case "ses_topic":
		if !strings.HasPrefix(v, "arn:aws:sns:") {
			return "An SNS topic ARN begins arn:aws:sns:."
		}
	case "sendgrid_inbound":
		if len(v) < 16 || url.PathEscape(v) != v {
			return "Use at least 16 letters and digits: the URL carries it."
		}
	}
	if len(v) > 1000 {
		return "That is too long for a secret."
	}
	return ""
}

// setupView is the Settings page's setup help.
type setupView struct {
	Setup
	BaseURL string
	// Saved names the secrets stored in settings (never shown back).
	Saved  map[string]bool
	Errors fieldErrors
}

// records are the DNS records to publish, in the order the page lists them.
func (v setupView) records() []DNSRecord {
	var out []DNSRecord
	host := v.MailHost
	if host == "" {
		host = "YOUR-MAIL-HOST"
	}
	if v.ReplyDomain != "" {
		out = append(out, DNSRecord{v.ReplyDomain, "MX", "10 " + host + "."})
	}
	if v.FromDomain != "" {
		spf := "v=spf1 a:" + host + " -all"
		if v.Relay != "" {
			spf = "v=spf1 a:" + host + " include:YOUR-RELAY'S-SPF -all"
		}
		out = append(out, DNSRecord{v.FromDomain, "TXT", spf})
	}
	out = append(out, v.DKIM...)
	if v.FromDomain != "" && v.ReplyDomain != "" {
		out = append(out, DNSRecord{"_dmarc." + v.FromDomain, "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@" + v.ReplyDomain})
	}
	return out
}

// webhookURL is path under the base URL.
func (v setupView) webhookURL(path string) string { return strings.TrimRight(v.BaseURL, "/") + path }

// setupView reads which secrets the settings hold.
func (d settingsPages) setupView(r *http.Request) (setupView, error) {
	v := setupView{Setup: d.setup, BaseURL: d.publicURL, Saved: map[string]bool{}}
	for _, s := range webhookSecrets {
		val, err := d.store.Setting(r.Context(), s.Setting)
		if err != nil {
			return v, err
		}
		v.Saved[s.Setting] = val != ""
	}
	return v, nil
}

// saveWebhookSecrets stores the secrets typed; an empty field keeps the saved one, a ticked
// "clear" removes it. Nothing is saved when one is wrong.
func (d settingsPages) saveWebhookSecrets(w http.ResponseWriter, r *http.Request) {
	values := map[string]string{}
	errs := fieldErrors{}
	for _, s := range webhookSecrets {
		v := strings.TrimSpace(r.PostFormValue(s.Field))
		switch {
		case r.PostFormValue(s.Field+"_clear") != "":
			values[s.Setting] = ""
		case v != "":
			if msg := checkWebhookSecret(s.Field, v); msg != "" {
				errs[s.Field] = msg
			}
			values[s.Setting] = v
		}
	}
	if len(errs) > 0 {
		d.renderSettings(w, r, http.StatusUnprocessableEntity, settingsView{}, errs)
		return
	}
	if len(values) > 0 {
		if err := d.store.SetSettings(r.Context(), values); err != nil {
			d.fail(w, r, err)
			return
		}
	}
	d.redirect(w, r, "/settings", "Webhook secrets saved. They take effect at the next start of pointpost.")
}
