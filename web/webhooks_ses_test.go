package web

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"pointpost/certtest"
)

// snsFake answers the certificate and subscription URLs of an SNS host, counting fetches.
type snsFake struct {
	mu      sync.Mutex
	cert    []byte
	fetched map[string]int
}

func (f *snsFake) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetched[r.URL.String()]++
	body := []byte("<ConfirmSubscriptionResponse/>")
	if r.URL.Path == "/SimpleNotificationService-test.pem" {
		body = f.cert
	}
	return &http.Response{StatusCode: 200, Status: "200 OK", Body: io.NopCloser(bytes.NewReader(body)), Header: http.Header{}}, nil
}

const testTopic = "arn:aws:sns:eu-west-1:123456789012:pointpost-ses"
const testCertURL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"

func sesWorld(t *testing.T) (*webhookWorld, *rsa.PrivateKey, *snsFake) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// SNS signs with RSA: its signing certificate holds the key the deliveries are signed with.
	fake := &snsFake{cert: certtest.New(t, key, "sns.amazonaws.com").PEM(), fetched: map[string]int{}}
	w := &webhookWorld{events: &recordedEvents{}}
	wh := &Webhooks{Events: w.events, SESTopicARN: testTopic, SNSClient: &http.Client{Transport: fake}}
	w.srv = httptest.NewServer(Handler(Deps{Webhooks: wh}))
	t.Cleanup(w.srv.Close)
	return w, key, fake
}

// snsSigned is an SNS delivery signed (SignatureVersion 2) with key.
func snsSigned(t *testing.T, key *rsa.PrivateKey, m snsMessage) []byte {
	m.SignatureVersion, m.SigningCertURL = "2", testCertURL
	if m.TopicArn == "" {
		m.TopicArn = testTopic
	}
	sum := sha256.Sum256([]byte(m.signedString()))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	m.Signature = base64.StdEncoding.EncodeToString(sig)
	b, _ := json.Marshal(m)
	return b
}

// sesBounce is SES's documented bounce notification.
const sesBounce = `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
"bouncedRecipients":[{"emailAddress":"c0@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],
"timestamp":"2026-12-05T10:00:00.000Z","feedbackId":"0100-fb"},"mail":{"messageId":"0100-m","source":"points@pp.example",
"headers":[{"name":"Message-ID","value":"<tok123@reply.example>"}],"tags":{"pointpost_token":["tokcustom"]}}}`

const sesComplaint = `{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"c1@example.com"}],
"complaintFeedbackType":"abuse","feedbackId":"0100-c"},"mail":{"messageId":"0100-m2","headers":[{"name":"Message-ID","value":"<tok456@reply.example>"}]}}`

func TestSESWebhook(t *testing.T) {
	w, key, fake := sesWorld(t)
	post := func(b []byte) int {
		resp, err := http.Post(w.srv.URL+"/webhooks/ses", "text/plain", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The subscription is confirmed by fetching its SNS URL.
	sub := snsMessage{Type: "SubscriptionConfirmation", MessageId: "s1", Token: "tok", Message: "confirm",
		SubscribeURL: "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok", Timestamp: "2026-12-05T10:00:00Z"}
	if c := post(snsSigned(t, key, sub)); c != 200 || fake.fetched[sub.SubscribeURL] != 1 {
		t.Fatalf("subscription: %d, fetched %v", c, fake.fetched)
	}
	bounce := snsSigned(t, key, snsMessage{Type: "Notification", MessageId: "n1", Message: sesBounce, Timestamp: "2026-12-05T10:00:01Z"})
	for range 2 { // the second is SNS's retry: counted once
		if c := post(bounce); c != 200 {
			t.Fatalf("bounce: %d", c)
		}
	}
	if c := post(snsSigned(t, key, snsMessage{Type: "Notification", MessageId: "n2", Message: sesComplaint, Timestamp: "2026-12-05T10:00:02Z"})); c != 200 {
		t.Fatalf("complaint: %d", c)
	}
	if fake.fetched[testCertURL] != 1 {
		t.Errorf("the signing certificate was fetched %d times, want once (cached)", fake.fetched[testCertURL])
	}
	got := w.events.events
	if len(got) != 2 || got[0].Kind != "bounce" || !got[0].Permanent || got[0].Status != "5.1.1" ||
		got[0].Tokens[0] != "tokcustom" || got[0].Tokens[1] != "tok123" || got[1].Kind != "complaint" || got[1].Tokens[0] != "tok456" {
		t.Fatalf("events: %+v", got)
	}

	// Forgeries: 401, nothing passed on, no certificate fetched from elsewhere.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	tampered := snsMessage{}
	_ = json.Unmarshal(bounce, &tampered)
	tampered.Message = sesComplaint
	tb, _ := json.Marshal(tampered)
	evil := snsMessage{}
	_ = json.Unmarshal(snsSigned(t, other, snsMessage{Type: "Notification", MessageId: "n4", Message: sesBounce, Timestamp: "x"}), &evil)
	evil.SigningCertURL = "https://evil.example/SimpleNotificationService-x.pem"
	eb, _ := json.Marshal(evil)
	lookalike := evil
	lookalike.SigningCertURL = "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem"
	lb, _ := json.Marshal(lookalike)
	plain := evil
	plain.SigningCertURL = "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
	pb, _ := json.Marshal(plain)
	for name, b := range map[string][]byte{
		"signed by another key": snsSigned(t, other, snsMessage{Type: "Notification", MessageId: "n3", Message: sesBounce, Timestamp: "x"}),
		"message altered":       tb,
		"certificate elsewhere": eb,
		"look-alike host":       lb,
		"plain http":            pb,
		"another topic":         snsSigned(t, key, snsMessage{Type: "Notification", MessageId: "n5", Message: sesBounce, TopicArn: "arn:aws:sns:eu-west-1:1:other"}),
		"not JSON":              []byte("hi"),
	} {
		if c := post(b); c != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, c)
		}
	}
	if len(w.events.events) != 2 {
		t.Errorf("forgeries passed on %d events", len(w.events.events)-2)
	}
	for u := range fake.fetched {
		if u != testCertURL && u != sub.SubscribeURL {
			t.Errorf("fetched %s", u)
		}
	}
}
