package web

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// snsHost is the only host a signing certificate or a subscription URL may come from.
var snsHost = regexp.MustCompile(`^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// snsURL reports whether u is https on an SNS host: SNS messages name the certificate that
// signs them, and a forger would name his own.
func snsURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Scheme == "https" && p.User == nil && snsHost.MatchString(p.Hostname()) && p.Port() == ""
}

// snsMessage is an SNS HTTP(S) delivery.
type snsMessage struct {
	Type, MessageId, Token, TopicArn, Subject, Message, Timestamp string
	SignatureVersion, Signature, SigningCertURL, SubscribeURL     string
}

// signedString is what SNS signs, by message type.
func (m *snsMessage) signedString() string {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	add("Message", m.Message)
	add("MessageId", m.MessageId)
	if m.Type == "Notification" {
		if m.Subject != "" {
			add("Subject", m.Subject)
		}
	} else {
		add("SubscribeURL", m.SubscribeURL)
	}
	add("Timestamp", m.Timestamp)
	if m.Type != "Notification" {
		add("Token", m.Token)
	}
	add("TopicArn", m.TopicArn)
	add("Type", m.Type)
	return b.String()
}

// snsCert returns the certificate at u, fetched once and cached.
func (wh *Webhooks) snsCert(ctx context.Context, u string) (*x509.Certificate, error) {
	wh.mu.Lock()
	c := wh.snsCerts[u]
	wh.mu.Unlock()
	if c != nil {
		return c, nil
	}
	body, err := wh.snsGet(ctx, u)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(body)
	if block == nil {
		return nil, errors.New("signing certificate: no PEM")
	}
	c, err = x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	wh.mu.Lock()
	if wh.snsCerts == nil {
		wh.snsCerts = map[string]*x509.Certificate{}
	}
	wh.snsCerts[u] = c
	wh.mu.Unlock()
	return c, nil
}

// snsGet fetches an SNS URL (a certificate, a subscription confirmation).
func (wh *Webhooks) snsGet(ctx context.Context, u string) ([]byte, error) {
	if !snsURL(u) {
		return nil, fmt.Errorf("%q is not an https URL on an SNS host", u)
	}
	client := wh.SNSClient
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
}

// snsVerify checks the message's signature with the certificate it names.
func (wh *Webhooks) snsVerify(ctx context.Context, m *snsMessage) error {
	if m.TopicArn != wh.SESTopicARN {
		return errUnsigned
	}
	var h hash.Hash
	var alg crypto.Hash
	switch m.SignatureVersion {
	case "1":
		h, alg = sha1.New(), crypto.SHA1
	case "2":
		h, alg = sha256.New(), crypto.SHA256
	default:
		return errUnsigned
	}
	if !snsURL(m.SigningCertURL) || !strings.HasSuffix(m.SigningCertURL, ".pem") {
		return errUnsigned
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return errUnsigned
	}
	cert, err := wh.snsCert(ctx, m.SigningCertURL)
	if err != nil {
		wh.Logger.Warn("SNS signing certificate not fetched", "url", m.SigningCertURL, "err", err)
		return errUnsigned
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errUnsigned
	}
	h.Write([]byte(m.signedString()))
	if rsa.VerifyPKCS1v15(pub, alg, h.Sum(nil), sig) != nil {
		return errUnsigned
	}
	return nil
}

// ses serves Amazon SES notifications through SNS: bounces, complaints and delivery
// delays; it confirms the topic's subscription.
func (wh *Webhooks) ses(w http.ResponseWriter, r *http.Request) {
	if wh.SESTopicARN == "" {
		http.NotFound(w, r)
		return
	}
	body, err := readBody(r, w)
	if err != nil {
		wh.answer(w, "ses", err)
		return
	}
	var m snsMessage
	if err := json.Unmarshal(body, &m); err != nil {
		wh.answer(w, "ses", errUnsigned)
		return
	}
	if err := wh.snsVerify(r.Context(), &m); err != nil {
		wh.answer(w, "ses", err)
		return
	}
	switch m.Type {
	case "SubscriptionConfirmation":
		_, err := wh.snsGet(r.Context(), m.SubscribeURL)
		if err == nil {
			wh.Logger.Info("SNS subscription confirmed", "topic", m.TopicArn)
		}
		wh.answer(w, "ses", err)
		return
	case "Notification":
	default:
		wh.answer(w, "ses", nil)
		return
	}
	var n struct {
		NotificationType, EventType string
		Bounce                      struct {
			BounceType        string
			BouncedRecipients []struct{ EmailAddress, Status, DiagnosticCode string }
		}
		Complaint struct {
			ComplainedRecipients []struct{ EmailAddress string }
		}
		Mail struct {
			Headers []struct{ Name, Value string }
			Tags    map[string][]string
		}
	}
	if err := json.Unmarshal([]byte(m.Message), &n); err != nil {
		wh.answer(w, "ses", &badPayload{err})
		return
	}
	kind := n.NotificationType
	if kind == "" {
		kind = n.EventType
	}
	var tokens []string
	if t := n.Mail.Tags[CustomTokenField]; len(t) > 0 {
		tokens = append(tokens, t[0])
	}
	for _, h := range n.Mail.Headers {
		if strings.EqualFold(h.Name, "Message-ID") {
			tokens = append(tokens, messageIDToken(h.Value))
		}
	}
	var evs []WebhookEvent
	switch kind {
	case "Bounce":
		for i, rcpt := range n.Bounce.BouncedRecipients {
			ev := WebhookEvent{Provider: "ses", ID: fmt.Sprintf("%s-%d", m.MessageId, i), Kind: "bounce", Tokens: tokens,
				Recipient: rcpt.EmailAddress, Status: rcpt.Status, Diagnostic: rcpt.DiagnosticCode,
				// Transient: SES retried and gave up, a soft bounce.
				Permanent: n.Bounce.BounceType == "Permanent"}
			evs = append(evs, ev)
		}
	case "Complaint":
		ev := WebhookEvent{Provider: "ses", ID: m.MessageId, Kind: "complaint", Tokens: tokens}
		if len(n.Complaint.ComplainedRecipients) > 0 {
			ev.Recipient = n.Complaint.ComplainedRecipients[0].EmailAddress
		}
		evs = append(evs, ev)
	case "DeliveryDelay":
		evs = append(evs, WebhookEvent{Provider: "ses", ID: m.MessageId, Kind: "delayed", Tokens: tokens})
	}
	for _, ev := range evs {
		if err := wh.Events.ProviderEvent(r.Context(), ev); err != nil {
			wh.answer(w, "ses", err)
			return
		}
	}
	wh.answer(w, "ses", nil)
}
