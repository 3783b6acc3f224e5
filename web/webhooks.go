package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// WebhookEvent is a bounce, complaint or unsubscribe a sending provider reported, once its
// signature was checked.
type WebhookEvent struct {
	// Provider and ID name the event: one delivered again counts once.
	Provider, ID string
	// Kind is bounce, delayed, complaint or unsubscribe.
	Kind string
	// Tokens are where the event may carry ours, tried in order: our custom argument, the
	// Message-ID (<TOKEN@reply-domain>).
	Tokens                                 []string
	Recipient, Status, Diagnostic, Subject string
	Permanent                              bool
}

// WebhookEvents takes what the providers' webhooks carry into the inbound path the SMTP
// receiver uses; the mailer's receiver implements it (main adapts the types). Both return
// an error when nothing could be committed: the provider is answered 503 and retries.
type WebhookEvents interface {
	ProviderEvent(ctx context.Context, e WebhookEvent) error
	// InboundParse takes a whole message an inbound-parse webhook forwarded.
	InboundParse(ctx context.Context, raw []byte) error
}

// Webhooks are the sending providers' webhooks under /webhooks/. A provider whose secret is
// empty is not served (404).
type Webhooks struct {
	Events WebhookEvents
	// MailgunKey is the HTTP webhook signing key: HMAC-SHA256 of timestamp and token.
	MailgunKey string
	// SendGridKey is the signed event webhook's ECDSA P-256 public key.
	SendGridKey *ecdsa.PublicKey
	// SendGridInbound is the secret of SendGrid's Inbound Parse, which signs nothing: the
	// URL set in SendGrid's console carries it as its last path segment
	// (/webhooks/sendgrid/inbound/SECRET) or as the basic-auth password
	// (https://sendgrid:SECRET@host/webhooks/sendgrid/inbound). A request without it is refused.
	SendGridInbound string
	// PostmarkUser and PostmarkPassword are the basic-auth credentials set in the webhook URL.
	PostmarkUser, PostmarkPassword string
	// SESTopicARN is the SNS topic SES notifies; messages of other topics are refused.
	SESTopicARN string
	// SNSClient fetches SNS signing certificates and confirms subscriptions; default
	// http.DefaultClient. Only https URLs on sns.REGION.amazonaws.com are fetched.
	SNSClient *http.Client
	// MaxAge is how old a signed timestamp may be (replay protection); default 5 minutes.
	MaxAge time.Duration
	Now    func() time.Time
	Logger *slog.Logger

	mu       sync.Mutex
	seen     map[string]time.Time         // Mailgun tokens within MaxAge: a replayed signature is refused
	pruned   time.Time                    // when seen last lost its stale tokens
	snsCerts map[string]*x509.Certificate // SNS signing certificates by URL
}

// CustomTokenField is the custom argument (SendGrid custom_args, Mailgun user-variables,
// Postmark Metadata) that carries a delivery's token when sending through the provider.
const CustomTokenField = "pointpost_token"

// maxWebhookBody bounds what a webhook request may send: a forwarded message included.
const maxWebhookBody = 12 << 20

// Handler serves:
//
//	POST /mailgun            Mailgun event webhook (failed, complained, unsubscribed)
//	POST /mailgun/inbound    Mailgun route forwarding a message (body-mime)
//	POST /sendgrid           SendGrid signed event webhook
//	POST /sendgrid/inbound[/SECRET]  SendGrid Inbound Parse (raw MIME in "email")
//	POST /postmark           Postmark bounce, spam complaint, subscription change
//	POST /postmark/inbound   Postmark inbound (RawEmail)
//	POST /ses                Amazon SES bounces and complaints through SNS
func (wh *Webhooks) Handler() http.Handler {
	if wh.MaxAge <= 0 {
		wh.MaxAge = 5 * time.Minute
	}
	if wh.Now == nil {
		wh.Now = time.Now
	}
	if wh.Logger == nil {
		wh.Logger = slog.Default()
	}
	r := chi.NewRouter()
	r.Post("/mailgun", wh.mailgun)
	r.Post("/mailgun/inbound", wh.mailgunInbound)
	r.Post("/sendgrid", wh.sendgrid)
	r.Post("/sendgrid/inbound", wh.sendgridInbound)
	r.Post("/sendgrid/inbound/{secret}", wh.sendgridInbound)
	r.Post("/postmark", wh.postmark)
	r.Post("/postmark/inbound", wh.postmarkInbound)
	r.Post("/ses", wh.ses)
	return r
}

var errUnsigned = errors.New("missing or bad signature")

// answer writes the outcome: 401 for a bad signature, 400 for a payload that doesn't
// parse, 503 when nothing could be committed (the provider retries), 200 otherwise.
func (wh *Webhooks) answer(w http.ResponseWriter, provider string, err error) {
	switch {
	case err == nil:
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, errUnsigned):
		wh.Logger.Warn("webhook refused", "provider", provider, "err", err)
		http.Error(w, "missing or bad signature", http.StatusUnauthorized)
	case errors.As(err, new(*badPayload)):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		wh.Logger.Error("webhook event not committed", "provider", provider, "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
	}
}

type badPayload struct{ err error }

func (e *badPayload) Error() string { return "bad payload: " + e.err.Error() }

func readBody(r *http.Request, w http.ResponseWriter) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		return nil, &badPayload{err}
	}
	return b, nil
}

// fresh checks a signed Unix timestamp against MaxAge, both ways.
func (wh *Webhooks) fresh(ts string) bool {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	d := wh.Now().Sub(time.Unix(sec, 0))
	return d < wh.MaxAge && d > -wh.MaxAge
}

// mailgunSigned checks Mailgun's signature: hex HMAC-SHA256 of timestamp+token under the
// signing key, a fresh timestamp, and a token not seen within MaxAge.
func (wh *Webhooks) mailgunSigned(ts, token, sig string) bool {
	if wh.MailgunKey == "" || ts == "" || token == "" || !wh.fresh(ts) {
		return false
	}
	mac := hmac.New(sha256.New, []byte(wh.MailgunKey))
	mac.Write([]byte(ts + token))
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return false
	}
	wh.mu.Lock()
	defer wh.mu.Unlock()
	now := wh.Now()
	if wh.seen == nil {
		wh.seen = map[string]time.Time{}
	}
	// Stale tokens go once per MaxAge, not on every event: at thousands of events a second
	// a sweep per event is quadratic. A token older than MaxAge fails the timestamp anyway.
	if now.Sub(wh.pruned) > wh.MaxAge {
		for k, at := range wh.seen {
			if now.Sub(at) > wh.MaxAge {
				delete(wh.seen, k)
			}
		}
		wh.pruned = now
	}
	if _, replayed := wh.seen[token]; replayed {
		return false
	}
	wh.seen[token] = now
	return true
}

// messageIDToken is the left part of a Message-ID: ours is <TOKEN@reply-domain>.
func messageIDToken(id string) string {
	left, _, _ := strings.Cut(strings.Trim(strings.TrimSpace(id), "<>"), "@")
	return left
}

func (wh *Webhooks) mailgun(w http.ResponseWriter, r *http.Request) {
	if wh.MailgunKey == "" {
		http.NotFound(w, r)
		return
	}
	body, err := readBody(r, w)
	if err != nil {
		wh.answer(w, "mailgun", err)
		return
	}
	var p struct {
		Signature struct{ Timestamp, Token, Signature string } `json:"signature"`
		Event     struct {
			ID, Event, Severity, Recipient, Reason string
			Message                                struct {
				Headers map[string]string `json:"headers"`
			} `json:"message"`
			UserVariables  map[string]any `json:"user-variables"`
			DeliveryStatus struct {
				Code                 int
				Message, Description string
				EnhancedCode         string `json:"enhanced-code"`
			} `json:"delivery-status"`
		} `json:"event-data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		// Unsigned garbage is refused as unsigned: nothing says it came from Mailgun.
		wh.answer(w, "mailgun", errUnsigned)
		return
	}
	if !wh.mailgunSigned(p.Signature.Timestamp, p.Signature.Token, p.Signature.Signature) {
		wh.answer(w, "mailgun", errUnsigned)
		return
	}
	e := p.Event
	ev := WebhookEvent{Provider: "mailgun", ID: e.ID, Recipient: e.Recipient, Subject: e.Message.Headers["subject"],
		Status: e.DeliveryStatus.EnhancedCode, Permanent: e.Severity == "permanent",
		Diagnostic: strings.TrimSpace(fmt.Sprintf("%d %s %s", e.DeliveryStatus.Code, e.DeliveryStatus.Message, e.DeliveryStatus.Description))}
	if t, ok := e.UserVariables[CustomTokenField].(string); ok {
		ev.Tokens = append(ev.Tokens, t)
	}
	ev.Tokens = append(ev.Tokens, messageIDToken(e.Message.Headers["message-id"]))
	switch e.Event {
	case "failed":
		ev.Kind = "bounce"
		if !ev.Permanent {
			ev.Kind = "delayed" // Mailgun retries a temporary failure itself
		}
	case "complained":
		ev.Kind = "complaint"
	case "unsubscribed":
		ev.Kind = "unsubscribe"
	default:
		wh.answer(w, "mailgun", nil) // delivered, opened...: nothing for us
		return
	}
	wh.answer(w, "mailgun", wh.Events.ProviderEvent(r.Context(), ev))
}

func (wh *Webhooks) mailgunInbound(w http.ResponseWriter, r *http.Request) {
	if wh.MailgunKey == "" {
		http.NotFound(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxWebhookBody)
	if err := r.ParseMultipartForm(maxWebhookBody); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		wh.answer(w, "mailgun", &badPayload{err})
		return
	}
	if !wh.mailgunSigned(r.FormValue("timestamp"), r.FormValue("token"), r.FormValue("signature")) {
		wh.answer(w, "mailgun", errUnsigned)
		return
	}
	raw := r.FormValue("body-mime")
	if raw == "" {
		wh.answer(w, "mailgun", &badPayload{errors.New("no body-mime: forward to a URL ending in mime")})
		return
	}
	wh.answer(w, "mailgun", wh.Events.InboundParse(r.Context(), []byte(raw)))
}

// sendgridSigned checks SendGrid's signature: base64 ASN.1 ECDSA over SHA-256 of the
// timestamp header followed by the raw body.
func (wh *Webhooks) sendgridSigned(r *http.Request, body []byte) bool {
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Twilio-Email-Event-Webhook-Signature"))
	ts := r.Header.Get("X-Twilio-Email-Event-Webhook-Timestamp")
	if err != nil || len(sig) == 0 || !wh.fresh(ts) {
		return false
	}
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write(body)
	return ecdsa.VerifyASN1(wh.SendGridKey, h.Sum(nil), sig)
}

func (wh *Webhooks) sendgrid(w http.ResponseWriter, r *http.Request) {
	if wh.SendGridKey == nil {
		http.NotFound(w, r)
		return
	}
	body, err := readBody(r, w)
	if err != nil {
		wh.answer(w, "sendgrid", err)
		return
	}
	if !wh.sendgridSigned(r, body) {
		wh.answer(w, "sendgrid", errUnsigned)
		return
	}
	var events []map[string]any
	if err := json.Unmarshal(body, &events); err != nil {
		wh.answer(w, "sendgrid", &badPayload{err})
		return
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	for _, e := range events {
		ev := WebhookEvent{Provider: "sendgrid", ID: str(e, "sg_event_id"), Recipient: str(e, "email"),
			Status: str(e, "status"), Diagnostic: str(e, "reason")}
		ev.Tokens = []string{str(e, CustomTokenField), messageIDToken(str(e, "smtp-id"))}
		switch str(e, "event") {
		case "bounce":
			// type "blocked" is a refusal of our mail; severity follows its status.
			ev.Kind, ev.Permanent = "bounce", true
		case "dropped":
			ev.Kind, ev.Permanent = "bounce", true
		case "deferred":
			ev.Kind = "delayed"
		case "spamreport":
			ev.Kind = "complaint"
		case "unsubscribe", "group_unsubscribe":
			ev.Kind = "unsubscribe"
		default:
			continue
		}
		if ev.ID == "" {
			wh.answer(w, "sendgrid", &badPayload{errors.New("an event without sg_event_id")})
			return
		}
		if err := wh.Events.ProviderEvent(r.Context(), ev); err != nil {
			// Those before are recorded; the retry counts them once, by their ids.
			wh.answer(w, "sendgrid", err)
			return
		}
	}
	wh.answer(w, "sendgrid", nil)
}

// sendgridInboundAuthorized checks the Inbound Parse secret in the URL path or as the
// basic-auth password.
func (wh *Webhooks) sendgridInboundAuthorized(r *http.Request) bool {
	got := chi.URLParam(r, "secret")
	if _, p, ok := r.BasicAuth(); ok && got == "" {
		got = p
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(wh.SendGridInbound)) == 1
}

// sendgridInbound takes a reply SendGrid's Inbound Parse forwarded with "POST the raw, full
// MIME message" on: the message is the form field email.
func (wh *Webhooks) sendgridInbound(w http.ResponseWriter, r *http.Request) {
	if wh.SendGridInbound == "" {
		http.NotFound(w, r)
		return
	}
	if !wh.sendgridInboundAuthorized(r) {
		wh.answer(w, "sendgrid", errUnsigned)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxWebhookBody)
	if err := r.ParseMultipartForm(maxWebhookBody); err != nil {
		wh.answer(w, "sendgrid", &badPayload{err})
		return
	}
	raw := r.FormValue("email")
	if raw == "" {
		wh.answer(w, "sendgrid", &badPayload{errors.New("no email field: tick \"POST the raw, full MIME message\"")})
		return
	}
	wh.answer(w, "sendgrid", wh.Events.InboundParse(r.Context(), []byte(raw)))
}

func (wh *Webhooks) postmarkAuthorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	return ok && wh.PostmarkUser != "" &&
		subtle.ConstantTimeCompare([]byte(u), []byte(wh.PostmarkUser)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(wh.PostmarkPassword)) == 1
}

func (wh *Webhooks) postmark(w http.ResponseWriter, r *http.Request) {
	if wh.PostmarkUser == "" {
		http.NotFound(w, r)
		return
	}
	if !wh.postmarkAuthorized(r) {
		wh.answer(w, "postmark", errUnsigned)
		return
	}
	body, err := readBody(r, w)
	if err != nil {
		wh.answer(w, "postmark", err)
		return
	}
	var e struct {
		RecordType, Type, MessageID, Email, Recipient, Description, Details, Subject string
		ID                                                                           json.Number
		SuppressSending                                                              bool
		Metadata                                                                     map[string]string
	}
	if err := json.Unmarshal(body, &e); err != nil {
		wh.answer(w, "postmark", &badPayload{err})
		return
	}
	ev := WebhookEvent{Provider: "postmark", ID: e.RecordType + "-" + e.ID.String(), Recipient: e.Email,
		Diagnostic: strings.TrimSpace(e.Description + " " + e.Details), Subject: e.Subject,
		Tokens: []string{metadataToken(e.Metadata)}}
	if ev.Recipient == "" {
		ev.Recipient = e.Recipient
	}
	switch e.RecordType {
	case "Bounce":
		switch e.Type {
		case "HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange":
			ev.Kind, ev.Permanent = "bounce", true
		case "Transient", "DnsError", "SoftBounce", "AutoResponder":
			ev.Kind = "delayed"
			if e.Type == "SoftBounce" {
				ev.Kind = "bounce"
			}
		case "SpamComplaint":
			ev.Kind = "complaint"
		default:
			ev.Kind = "bounce"
		}
	case "SpamComplaint":
		ev.Kind = "complaint"
	case "SubscriptionChange":
		if !e.SuppressSending {
			wh.answer(w, "postmark", nil)
			return
		}
		ev.Kind = "unsubscribe"
		ev.ID = "SubscriptionChange-" + e.MessageID + "-" + e.Recipient
	default:
		wh.answer(w, "postmark", nil)
		return
	}
	if e.ID.String() == "" && e.RecordType != "SubscriptionChange" {
		wh.answer(w, "postmark", &badPayload{errors.New("an event without ID")})
		return
	}
	wh.answer(w, "postmark", wh.Events.ProviderEvent(r.Context(), ev))
}

// metadataToken is our custom argument among Postmark's metadata, whose key may arrive in
// the case a relay wrote the X-PM-Metadata- field in.
func metadataToken(m map[string]string) string {
	for k, v := range m {
		if strings.EqualFold(k, CustomTokenField) {
			return v
		}
	}
	return ""
}

func (wh *Webhooks) postmarkInbound(w http.ResponseWriter, r *http.Request) {
	if wh.PostmarkUser == "" {
		http.NotFound(w, r)
		return
	}
	if !wh.postmarkAuthorized(r) {
		wh.answer(w, "postmark", errUnsigned)
		return
	}
	body, err := readBody(r, w)
	if err != nil {
		wh.answer(w, "postmark", err)
		return
	}
	var m struct{ RawEmail string }
	if err := json.Unmarshal(body, &m); err != nil || m.RawEmail == "" {
		wh.answer(w, "postmark", &badPayload{errors.New("no RawEmail: turn on \"Include raw email content\"")})
		return
	}
	wh.answer(w, "postmark", wh.Events.InboundParse(r.Context(), []byte(m.RawEmail)))
}
