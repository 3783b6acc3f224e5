package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"pointpost/mailer"
	"pointpost/toolbox"
	"pointpost/web"
)

// webhooks builds the providers' webhooks from their secrets. Returns an error for a
// SendGrid key that is not a base64 P-256 public key, or Postmark auth without a colon.
func (c *Config) webhooks(events web.WebhookEvents, log *slog.Logger) (*web.Webhooks, error) {
	wh := &web.Webhooks{Events: events, MailgunKey: c.MailgunKey, SendGridInbound: c.SendGridInbound, SESTopicARN: c.SESTopic, Logger: log}
	if c.SendGridKey != "" {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.SendGridKey))
		if err != nil {
			return nil, fmt.Errorf("--sendgrid-key: not base64: %w", err)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		key, ok := pub.(*ecdsa.PublicKey)
		if err != nil || !ok || key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("--sendgrid-key: not an ECDSA P-256 public key (%v)", err)
		}
		wh.SendGridKey = key
	}
	if c.PostmarkAuth != "" {
		u, p, ok := strings.Cut(c.PostmarkAuth, ":")
		if !ok || u == "" || p == "" {
			return nil, errors.New("--postmark-auth: give user:password")
		}
		wh.PostmarkUser, wh.PostmarkPassword = u, p
	}
	return wh, nil
}

// webhookEvents gives the webhooks the receiver's inbound path.
type webhookEvents struct{ r *mailer.Receiver }

func (e webhookEvents) ProviderEvent(ctx context.Context, ev web.WebhookEvent) error {
	return e.r.TakeProviderEvent(ctx, mailer.ProviderEvent{Provider: ev.Provider, ID: ev.ID, Kind: mailer.InboundKind(ev.Kind),
		Tokens: ev.Tokens, Recipient: ev.Recipient, Status: ev.Status, Diagnostic: ev.Diagnostic, Permanent: ev.Permanent, Subject: ev.Subject})
}

func (e webhookEvents) InboundParse(ctx context.Context, raw []byte) error {
	return e.r.TakeInboundParse(ctx, raw)
}

// setup is what the toolbox's Settings page shows of the DNS records and inbound ways, from
// the configuration in effect.
func (a *app) setup() toolbox.Setup {
	s := toolbox.Setup{FromDomain: domainOf(a.from.Address), ReplyDomain: a.cfg.ReplyDomain, SMTP: a.cfg.SMTP,
		SMTPTLS: a.cfg.SMTPTLSCert != "", Webhooks: map[string]bool{
			toolbox.SettingMailgunKey: a.cfg.MailgunKey != "", toolbox.SettingSendGridKey: a.cfg.SendGridKey != "",
			toolbox.SettingSendGridInbound: a.cfg.SendGridInbound != "", toolbox.SettingPostmarkAuth: a.cfg.PostmarkAuth != "",
			toolbox.SettingSESTopic: a.cfg.SESTopic != ""}}
	if u, err := url.Parse(a.cfg.BaseURL); err == nil {
		s.MailHost = u.Hostname()
	}
	if a.cfg.Relay != "" {
		s.Relay = mailer.RedactURL(a.cfg.Relay)
	}
	if a.cfg.IMAP != "" {
		s.IMAP = mailer.RedactURL(a.cfg.IMAP)
	}
	if a.dkim != nil {
		for _, r := range a.dkim.Records() {
			s.DKIM = append(s.DKIM, toolbox.DNSRecord{Name: r.Name, Type: "TXT", Value: r.Text})
		}
	}
	return s
}
