package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/toolbox"
)

// TestProviderWebhooksFindDeliveriesByCustomArgument: every sent message carries its token as
// each provider's custom argument, and a provider event that names the delivery only by that
// argument (the Message-ID rewritten, as providers do) rejects it; SendGrid Inbound Parse
// carries a reply into the acknowledgement path with the secret saved on the Settings page;
// a secret given by environment wins over the saved one. Real HTTP, SMTP and SQLite.
func TestProviderWebhooksFindDeliveriesByCustomArgument(t *testing.T) {
	sink := &mailer.Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e := newEnv(t, sink.URL())
	e["POINTPOST_FROM"] = "Acme Points <points@pp.example>"
	sgKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&sgKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	e["POINTPOST_SENDGRID_KEY"] = base64.StdEncoding.EncodeToString(der)
	e["POINTPOST_MAILGUN_KEY"] = "key-mailgun-test"
	e["POINTPOST_POSTMARK_AUTH"] = "pm:from-env"
	const n = 4
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, rewardCampaign(time.Now(), n)))), 10, 64)
	st := openStore(t, e)
	if err := st.SetSettings(t.Context(), map[string]string{toolbox.SettingSendGridInbound: "inbound-secret-0123456789",
		toolbox.SettingPostmarkAuth: "pm:from-settings"}); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, e)
	waitFor(t, "the invitations to go out", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })

	// The token each message carries in the providers' custom-argument fields.
	tokens := map[string]string{}
	for _, m := range sink.Messages() {
		r, err := gomail.CreateReader(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		var mg map[string]string
		if err := json.Unmarshal([]byte(r.Header.Get("X-Mailgun-Variables")), &mg); err != nil {
			t.Fatalf("message to %s: X-Mailgun-Variables %q: %v", m.To, r.Header.Get("X-Mailgun-Variables"), err)
		}
		tok := mg["pointpost_token"]
		if r.Header.Get("X-PM-Metadata-pointpost_token") != tok || r.Header.Get("X-SES-MESSAGE-TAGS") != "pointpost_token="+tok ||
			!strings.Contains(r.Header.Get("X-SMTPAPI"), `"pointpost_token":"`+tok+`"`) {
			t.Errorf("message to %s: the providers' fields disagree on the token %q", m.To, tok)
		}
		tokens[m.To] = tok
	}
	if len(tokens) != n {
		t.Fatalf("%d recipients, want %d", len(tokens), n)
	}
	base := "http://" + srv.addr + "/webhooks"
	post := func(path, ctype string, body []byte, hdr map[string]string, user, pass string) int {
		t.Helper()
		req, err := http.NewRequest("POST", base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ctype)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
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
	rewritten := "<0100018f-provider-own-id@example.net>"

	// Mailgun: a permanent failure naming the delivery by user-variables only.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte("key-mailgun-test"))
	mac.Write([]byte(ts + "mg-nonce-1"))
	mg := fmt.Sprintf(`{"signature":{"timestamp":%q,"token":"mg-nonce-1","signature":%q},
"event-data":{"id":"mg-ev-1","event":"failed","severity":"permanent","recipient":"c0@example.com",
"message":{"headers":{"message-id":%q}},"user-variables":{"pointpost_token":%q},
"delivery-status":{"code":550,"message":"5.1.1 user unknown","enhanced-code":"5.1.1"}}}`,
		ts, hex.EncodeToString(mac.Sum(nil)), rewritten, tokens["c0@example.com"])
	if c := post("/mailgun", "application/json", []byte(mg), nil, "", ""); c != 200 {
		t.Fatalf("mailgun: %d", c)
	}

	// SendGrid: a bounce naming it by the unique_args only.
	sg := fmt.Appendf(nil, `[{"email":"c1@example.com","timestamp":%s,"smtp-id":%q,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 user unknown","sg_event_id":"sg-ev-1","pointpost_token":%q}]`,
		ts, rewritten, tokens["c1@example.com"])
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write(sg)
	sig, err := ecdsa.SignASN1(rand.Reader, sgKey, h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c := post("/sendgrid", "application/json", sg, map[string]string{"X-Twilio-Email-Event-Webhook-Signature": base64.StdEncoding.EncodeToString(sig),
		"X-Twilio-Email-Event-Webhook-Timestamp": ts}, "", ""); c != 200 {
		t.Fatalf("sendgrid: %d", c)
	}

	// Postmark: the environment's credentials, not the saved ones, and the metadata only.
	pm := fmt.Appendf(nil, `{"RecordType":"Bounce","Type":"HardBounce","ID":4242,"MessageID":"883953f4-6105-42a2-a16a-77a8eac79483",
"Email":"c2@example.com","Description":"unknown user","Metadata":{"pointpost_token":%q}}`, tokens["c2@example.com"])
	if c := post("/postmark", "application/json", pm, nil, "pm", "from-settings"); c != 401 {
		t.Errorf("postmark with the saved credentials, overridden by the environment: %d, want 401", c)
	}
	if c := post("/postmark", "application/json", pm, nil, "pm", "from-env"); c != 200 {
		t.Fatalf("postmark: %d", c)
	}

	for i := range 3 {
		email := fmt.Sprintf("c%d@example.com", i)
		c, err := st.ConsumerByEmail(t.Context(), email)
		if err != nil {
			t.Fatal(err)
		}
		d, err := st.Delivery(t.Context(), key, c.ID)
		if err != nil || !d.Rejected {
			t.Errorf("%s: the provider's event did not reject the delivery (%+v, %v)", email, d, err)
		}
	}

	// SendGrid Inbound Parse, with the secret saved on the Settings page.
	tok := tokens["c3@example.com"]
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("to", "reply+"+tok+"@pp.example")
	mw.WriteField("email", "From: c3@example.com\r\nTo: reply+"+tok+"@pp.example\r\nSubject: Re: points [#"+tok+"]\r\nMessage-ID: <sg-in-1@example.com>\r\n\r\nYes please!\r\n")
	mw.Close()
	if c := post("/sendgrid/inbound/wrong-secret-0123456789", mw.FormDataContentType(), buf.Bytes(), nil, "", ""); c != 401 {
		t.Errorf("inbound parse with a wrong secret: %d, want 401", c)
	}
	c3, err := st.ConsumerByEmail(t.Context(), "c3@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := st.Delivery(t.Context(), key, c3.ID); d.Received {
		t.Fatal("a refused inbound parse acknowledged")
	}
	if c := post("/sendgrid/inbound/inbound-secret-0123456789", mw.FormDataContentType(), buf.Bytes(), nil, "", ""); c != 200 {
		t.Fatalf("inbound parse: %d", c)
	}
	if d, err := st.Delivery(t.Context(), key, c3.ID); err != nil || !d.Received || d.Rejected {
		t.Errorf("the reply by inbound parse did not acknowledge: %+v, %v", d, err)
	}
}
