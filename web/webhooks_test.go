package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// recordedEvents keeps what the webhooks passed on, once per provider and ID as the store does.
type recordedEvents struct {
	mu     sync.Mutex
	events []WebhookEvent
	raw    [][]byte
	seen   map[string]bool
	fail   error
}

func (r *recordedEvents) ProviderEvent(_ context.Context, e WebhookEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if !r.seen[e.Provider+":"+e.ID] {
		r.seen[e.Provider+":"+e.ID] = true
		r.events = append(r.events, e)
	}
	return nil
}

func (r *recordedEvents) InboundParse(_ context.Context, raw []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw = append(r.raw, raw)
	return nil
}

type webhookWorld struct {
	srv    *httptest.Server
	events *recordedEvents
	mgKey  string
	sgKey  *ecdsa.PrivateKey
	now    time.Time
}

func newWebhookWorld(t testing.TB) *webhookWorld {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := &webhookWorld{events: &recordedEvents{}, mgKey: "key-test-mailgun", sgKey: key, now: time.Unix(1_780_000_000, 0)}
	wh := &Webhooks{Events: w.events, MailgunKey: w.mgKey, SendGridKey: &key.PublicKey,
		PostmarkUser: "pm", PostmarkPassword: "pm-secret", SendGridInbound: "sg-inbound-secret", Now: func() time.Time { return w.now }}
	w.srv = httptest.NewServer(Handler(Deps{Webhooks: wh}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookWorld) post(t testing.TB, path, ctype string, body []byte, hdr map[string]string) int {
	t.Helper()
	req, err := http.NewRequest("POST", w.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if path == "/webhooks/postmark" || path == "/webhooks/postmark/inbound" {
		if hdr["auth"] != "none" {
			req.SetBasicAuth("pm", hdr["password"])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// mailgunEvent is Mailgun's documented webhook payload (event-data with a signature block),
// signed with key unless key is "".
func mailgunEvent(key string, ts int64, token, id, event, severity string) []byte {
	sig := ""
	if key != "" {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(strconv.FormatInt(ts, 10) + token))
		sig = hex.EncodeToString(mac.Sum(nil))
	}
	return fmt.Appendf(nil, `{"signature":{"timestamp":"%d","token":"%s","signature":"%s"},
"event-data":{"id":"%s","event":"%s","severity":"%s","recipient":"c0@example.com",
"message":{"headers":{"message-id":"<tok123@reply.example>","subject":"Earn points"}},
"user-variables":{"pointpost_token":"tokcustom"},
"delivery-status":{"code":550,"message":"5.1.1 user unknown","description":"","enhanced-code":"5.1.1"}}}`,
		ts, token, sig, id, event, severity)
}

func TestMailgunWebhook(t *testing.T) {
	w := newWebhookWorld(t)
	ts := w.now.Unix()
	if c := w.post(t, "/webhooks/mailgun", "application/json", mailgunEvent(w.mgKey, ts, "t1", "ev1", "failed", "permanent"), nil); c != 200 {
		t.Fatalf("signed event: %d", c)
	}
	for name, body := range map[string][]byte{
		"no signature":      mailgunEvent("", ts, "t2", "ev2", "failed", "permanent"),
		"wrong key":         mailgunEvent("other", ts, "t3", "ev3", "failed", "permanent"),
		"old timestamp":     mailgunEvent(w.mgKey, ts-3600, "t4", "ev4", "failed", "permanent"),
		"replayed token":    mailgunEvent(w.mgKey, ts, "t1", "ev1", "failed", "permanent"),
		"not even JSON":     []byte("hello"),
		"future timestamp":  mailgunEvent(w.mgKey, ts+3600, "t5", "ev5", "failed", "permanent"),
		"complaint, forged": mailgunEvent("", ts, "t6", "ev6", "complained", ""),
	} {
		if c := w.post(t, "/webhooks/mailgun", "application/json", body, nil); c != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, c)
		}
	}
	// The same event sent again with a fresh signature (Mailgun's retry) counts once.
	w.post(t, "/webhooks/mailgun", "application/json", mailgunEvent(w.mgKey, ts, "t7", "ev1", "failed", "permanent"), nil)
	w.post(t, "/webhooks/mailgun", "application/json", mailgunEvent(w.mgKey, ts, "t8", "ev9", "complained", ""), nil)
	w.post(t, "/webhooks/mailgun", "application/json", mailgunEvent(w.mgKey, ts, "t9", "ev10", "failed", "temporary"), nil)
	w.post(t, "/webhooks/mailgun", "application/json", mailgunEvent(w.mgKey, ts, "t10", "ev11", "delivered", ""), nil)
	got := w.events.events
	if len(got) != 3 {
		t.Fatalf("%d events passed on, want 3: %+v", len(got), got)
	}
	b := got[0]
	if b.Kind != "bounce" || !b.Permanent || b.Status != "5.1.1" || b.Tokens[0] != "tokcustom" || b.Tokens[1] != "tok123" || b.Recipient != "c0@example.com" {
		t.Errorf("the bounce: %+v", b)
	}
	if got[1].Kind != "complaint" || got[2].Kind != "delayed" {
		t.Errorf("complaint and temporary failure: %s, %s", got[1].Kind, got[2].Kind)
	}
}

func TestMailgunInboundRoute(t *testing.T) {
	w := newWebhookWorld(t)
	form := func(key, token string) (string, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		ts := strconv.FormatInt(w.now.Unix(), 10)
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(ts + token))
		mw.WriteField("timestamp", ts)
		mw.WriteField("token", token)
		mw.WriteField("signature", hex.EncodeToString(mac.Sum(nil)))
		mw.WriteField("body-mime", "From: ann@example.com\r\nSubject: Re: points\r\n\r\nyes\r\n")
		mw.Close()
		return mw.FormDataContentType(), buf.Bytes()
	}
	ct, body := form(w.mgKey, "in1")
	if c := w.post(t, "/webhooks/mailgun/inbound", ct, body, nil); c != 200 || len(w.events.raw) != 1 {
		t.Fatalf("signed route: %d, %d messages", c, len(w.events.raw))
	}
	ct, body = form("wrong", "in2")
	if c := w.post(t, "/webhooks/mailgun/inbound", ct, body, nil); c != 401 || len(w.events.raw) != 1 {
		t.Errorf("unsigned route: %d, %d messages", c, len(w.events.raw))
	}
}

// sendgridBody is SendGrid's documented event array: a bounce, a spam report, an
// unsubscribe, a deferral and a delivery, custom argument pointpost_token included.
const sendgridBody = `[
{"email":"c0@example.com","timestamp":1780000000,"smtp-id":"<tok123@reply.example>","event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 user unknown","sg_event_id":"sg1","pointpost_token":"tokcustom"},
{"email":"c1@example.com","timestamp":1780000000,"event":"spamreport","sg_event_id":"sg2","pointpost_token":"tok2"},
{"email":"c2@example.com","timestamp":1780000000,"event":"unsubscribe","sg_event_id":"sg3"},
{"email":"c3@example.com","timestamp":1780000000,"event":"deferred","response":"421 try later","sg_event_id":"sg4"},
{"email":"c4@example.com","timestamp":1780000000,"event":"delivered","sg_event_id":"sg5"}
]`

func (w *webhookWorld) sendgridHeaders(t testing.TB, key *ecdsa.PrivateKey, ts int64, body []byte) map[string]string {
	h := sha256.New()
	h.Write([]byte(strconv.FormatInt(ts, 10)))
	h.Write(body)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"X-Twilio-Email-Event-Webhook-Signature": base64.StdEncoding.EncodeToString(sig),
		"X-Twilio-Email-Event-Webhook-Timestamp": strconv.FormatInt(ts, 10)}
}

func TestSendGridWebhook(t *testing.T) {
	w := newWebhookWorld(t)
	body := []byte(sendgridBody)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, hdr := range map[string]map[string]string{
		"no signature":  nil,
		"other key":     w.sendgridHeaders(t, other, w.now.Unix(), body),
		"old":           w.sendgridHeaders(t, w.sgKey, w.now.Unix()-3600, body),
		"altered body":  w.sendgridHeaders(t, w.sgKey, w.now.Unix(), append([]byte(" "), body...)),
		"bad signature": {"X-Twilio-Email-Event-Webhook-Signature": "AAAA", "X-Twilio-Email-Event-Webhook-Timestamp": strconv.FormatInt(w.now.Unix(), 10)},
	} {
		if c := w.post(t, "/webhooks/sendgrid", "application/json", body, hdr); c != 401 {
			t.Errorf("%s: %d, want 401", name, c)
		}
	}
	if len(w.events.events) != 0 {
		t.Fatalf("unsigned requests passed on %d events", len(w.events.events))
	}
	for range 2 { // the second delivery is SendGrid's retry: counted once
		if c := w.post(t, "/webhooks/sendgrid", "application/json", body, w.sendgridHeaders(t, w.sgKey, w.now.Unix(), body)); c != 200 {
			t.Fatalf("signed: %d", c)
		}
	}
	got := w.events.events
	if len(got) != 4 {
		t.Fatalf("%d events, want 4: %+v", len(got), got)
	}
	want := []string{"bounce", "complaint", "unsubscribe", "delayed"}
	for i, e := range got {
		if e.Kind != want[i] {
			t.Errorf("event %d: %s, want %s", i, e.Kind, want[i])
		}
	}
	if got[0].Tokens[0] != "tokcustom" || got[0].Tokens[1] != "tok123" || got[0].Status != "5.1.1" {
		t.Errorf("the bounce: %+v", got[0])
	}
}

func TestPostmarkWebhook(t *testing.T) {
	w := newWebhookWorld(t)
	// Postmark's documented bounce webhook body.
	bounce := []byte(`{"RecordType":"Bounce","ID":4323372036854775807,"Type":"HardBounce","TypeCode":1,"Name":"Hard bounce",
"MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Description":"The server was unable to deliver your message (ex: unknown user, mailbox not found).",
"Details":"smtp;550 5.1.1 The email account that you tried to reach does not exist.","Email":"c0@example.com","From":"points@pp.example",
"BouncedAt":"2026-12-05T10:00:00Z","Subject":"Earn points","Metadata":{"pointpost_token":"tokcustom"}}`)
	complaint := []byte(`{"RecordType":"SpamComplaint","ID":42,"Type":"SpamComplaint","Email":"c1@example.com","Metadata":{"pointpost_token":"tok2"}}`)
	unsub := []byte(`{"RecordType":"SubscriptionChange","MessageID":"m-1","Recipient":"c2@example.com","SuppressSending":true,"Metadata":{"pointpost_token":"tok3"}}`)
	for name, hdr := range map[string]map[string]string{"no auth": {"auth": "none"}, "wrong password": {"password": "guess"}} {
		if c := w.post(t, "/webhooks/postmark", "application/json", bounce, hdr); c != 401 {
			t.Errorf("%s: %d, want 401", name, c)
		}
	}
	ok := map[string]string{"password": "pm-secret"}
	for _, b := range [][]byte{bounce, bounce, complaint, unsub} {
		if c := w.post(t, "/webhooks/postmark", "application/json", b, ok); c != 200 {
			t.Fatalf("authorized: %d", c)
		}
	}
	if c := w.post(t, "/webhooks/postmark", "application/json", []byte("{"), ok); c != 400 {
		t.Errorf("broken JSON: %d, want 400", c)
	}
	got := w.events.events
	if len(got) != 3 || got[0].Kind != "bounce" || !got[0].Permanent || got[1].Kind != "complaint" || got[2].Kind != "unsubscribe" {
		t.Fatalf("events: %+v", got)
	}
	if c := w.post(t, "/webhooks/postmark/inbound", "application/json", []byte(`{"RawEmail":"From: a@b\r\nSubject: Re: x\r\n\r\nyes\r\n"}`), ok); c != 200 || len(w.events.raw) != 1 {
		t.Errorf("inbound: %d, %d messages", c, len(w.events.raw))
	}
	w.events.fail = fmt.Errorf("database is locked")
	if c := w.post(t, "/webhooks/postmark", "application/json", complaint, ok); c != 503 {
		t.Errorf("not committed: %d, want 503 so that Postmark retries", c)
	}
}

// BenchmarkSignedEvents times signed SendGrid event posts over loopback, each verified and
// passed on:
//
//	go test -run '^$' -bench BenchmarkSignedEvents ./web/
func BenchmarkSignedEvents(b *testing.B) {
	w := newWebhookWorld(b)
	body := []byte(`[{"email":"c0@example.com","event":"bounce","status":"5.1.1","sg_event_id":"x","pointpost_token":"t"}]`)
	hdr := w.sendgridHeaders(b, w.sgKey, w.now.Unix(), body)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if c := w.post(b, "/webhooks/sendgrid", "application/json", body, hdr); c != 200 {
			b.Fatalf("%d", c)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkMailgunEvents posts signed Mailgun failures, each with a token of its own as
// Mailgun sends them, so the replay memory grows as it does under a real burst:
//
//	go test -run '^$' -bench BenchmarkMailgunEvents -benchtime 20000x ./web/
func BenchmarkMailgunEvents(b *testing.B) {
	w := newWebhookWorld(b)
	ts := w.now.Unix()
	i := 0
	for b.Loop() {
		i++
		body := mailgunEvent(w.mgKey, ts, fmt.Sprintf("tok%d", i), fmt.Sprintf("ev%d", i), "failed", "permanent")
		if c := w.post(b, "/webhooks/mailgun", "application/json", body, nil); c != 200 {
			b.Fatalf("%d", c)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestSendGridInboundParse: SendGrid's Inbound Parse signs nothing, so a forwarded message is
// taken only with the secret in the URL path or as the basic-auth password.
func TestSendGridInboundParse(t *testing.T) {
	w := newWebhookWorld(t)
	const raw = "From: ann@example.com\r\nSubject: Re: points\r\n\r\nyes\r\n"
	form := func(field string) (string, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("to", "reply+tok@reply.example")
		mw.WriteField(field, raw)
		mw.Close()
		return mw.FormDataContentType(), buf.Bytes()
	}
	send := func(path, user, pass, field string) int {
		ct, body := form(field)
		req, err := http.NewRequest("POST", w.srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, path, user, pass string
		want                   int
	}{
		{"no secret", "/webhooks/sendgrid/inbound", "", "", 401},
		{"wrong secret in the path", "/webhooks/sendgrid/inbound/guess", "", "", 401},
		{"wrong password", "/webhooks/sendgrid/inbound", "sendgrid", "guess", 401},
		{"secret in the path", "/webhooks/sendgrid/inbound/sg-inbound-secret", "", "", 200},
		{"secret as the password", "/webhooks/sendgrid/inbound", "sendgrid", "sg-inbound-secret", 200},
	} {
		if c := send(tc.path, tc.user, tc.pass, "email"); c != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, c, tc.want)
		}
	}
	if len(w.events.raw) != 2 || string(w.events.raw[0]) != raw {
		t.Fatalf("%d messages taken, want 2 as sent: %q", len(w.events.raw), w.events.raw)
	}
	// Parsed fields instead of the raw message: refused, nothing taken.
	if c := send("/webhooks/sendgrid/inbound/sg-inbound-secret", "", "", "text"); c != 400 || len(w.events.raw) != 2 {
		t.Errorf("without the raw message: %d, %d taken", c, len(w.events.raw))
	}
	if c := w.post(t, "/webhooks/sendgrid/inbound/sg-inbound-secret", "application/json", []byte("{}"), nil); c != 400 || len(w.events.raw) != 2 {
		t.Errorf("not a form: %d, %d taken", c, len(w.events.raw))
	}
	// Not configured: not served.
	off := httptest.NewServer(Handler(Deps{Webhooks: &Webhooks{Events: w.events}}))
	defer off.Close()
	resp, err := http.Post(off.URL+"/webhooks/sendgrid/inbound/x", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unconfigured: %d, want 404", resp.StatusCode)
	}
}

// TestPostmarkMetadataAnyCase: the token set as X-PM-Metadata-pointpost_token is found in
// whatever case the field's name reached Postmark.
func TestPostmarkMetadataAnyCase(t *testing.T) {
	w := newWebhookWorld(t)
	body := []byte(`{"RecordType":"Bounce","Type":"HardBounce","ID":42,"Email":"c0@example.com","Metadata":{"Pointpost_token":"tokpm"}}`)
	if c := w.post(t, "/webhooks/postmark", "application/json", body, map[string]string{"password": "pm-secret"}); c != 200 {
		t.Fatalf("%d", c)
	}
	if len(w.events.events) != 1 || w.events.events[0].Tokens[0] != "tokpm" {
		t.Errorf("events %+v, want the token tokpm", w.events.events)
	}
}
