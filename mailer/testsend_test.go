package mailer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
)

// testSendRig is a real store with one job (text and HTML) that has a reply rule, and a test
// sender that sends through SMTP to a sink.
type testSendRig struct {
	st   *store.Store
	po   *postoffice.PostOffice
	sink *Sink
	ts   *TestSends
	job  *postoffice.Job
	rule rewards.AwardRule
	// ann is an issuer user of acme, at ann@example.com, who sends the tests.
	ann *rewards.User
	now time.Time
}

func newTestSendRig(t *testing.T, html bool) *testSendRig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "ts.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys := testKeyring(t)
	rig := &testSendRig{st: st, po: postoffice.New(postoffice.Config{Store: st, Tokens: keys, BaseURL: "https://pp.example"}),
		sink: &Sink{Keep: true}}
	if err := rig.sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rig.sink.Close() })
	sender, err := NewSMTPSender(RelayConfig{URL: rig.sink.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Close() })
	rig.now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	rig.ts = &TestSends{Store: st, Sender: sender, Tokens: keys, Addresses: testAddresses, Now: func() time.Time { return rig.now }}

	c := &postoffice.Campaign{Issuer: "acme", Name: "Spring", Start: "2025-01-01T00:00:00Z", Stop: "2035-01-01T00:00:00Z",
		ClientCount: 10, Text: &postoffice.MessageSpec{Subject: textSubject, Body: textBody + "\n<_&getAccountURL_>"},
		Rules: []postoffice.RuleSpec{{Type: "reply", Points: 5, Frequency: "once"}, {Type: "click", Points: 5, Frequency: "once"}}}
	if html {
		c.HTML = &postoffice.MessageSpec{Subject: htmlSubject, Body: htmlBody}
	}
	if rig.job, _, err = rig.po.CreateJob(ctx, c); err != nil {
		t.Fatal(err)
	}
	rules, err := st.JobRules(ctx, rig.job.Key)
	if err != nil || len(rules) != 2 {
		t.Fatalf("job rules: %v %v", rules, err)
	}
	rig.rule = rules[0]
	rig.ann = &rewards.User{Email: "ann@example.com", Role: rewards.RoleIssuer, IssuerID: rig.job.IssuerID}
	if err := st.CreateUser(ctx, rig.ann, rig.now); err != nil {
		t.Fatal(err)
	}
	return rig
}

func TestSendTestDeliversOneMessagePerFormat(t *testing.T) {
	rig := newTestSendRig(t, true)
	ctx := context.Background()
	if err := rig.ts.SendTest(ctx, rig.job, " ann@example.com ", rig.ann); err != nil {
		t.Fatal(err)
	}
	msgs := rig.sink.Messages()
	if len(msgs) != 2 {
		t.Fatalf("the sink got %d messages, want one per format (2)", len(msgs))
	}
	for i, want := range []string{"text/plain", "text/html"} {
		m := msgs[i]
		if m.To != "ann@example.com" || m.From != testAddresses.From.Address {
			t.Errorf("envelope %s -> %s", m.From, m.To)
		}
		r, err := gomail.CreateReader(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := r.Header.Subject()
		if !strings.HasPrefix(subject, TestSubjectPrefix+"Alex, points") {
			t.Errorf("subject %q: want the [TEST] prefix and the sample consumer's name", subject)
		}
		if ct, _, _ := r.Header.ContentType(); ct != want {
			t.Errorf("message %d is %s, want %s", i, ct, want)
		}
		part, err := r.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(part.Body)
		if !strings.Contains(string(body), "Springfield") {
			t.Errorf("body not rendered for the sample consumer:\n%s", body)
		}
		// The token names no delivery, so it earns nothing however it comes back.
		tokens := postoffice.FindToken(subject)
		if len(tokens) != 1 {
			t.Fatalf("subject %q carries %d tokens", subject, len(tokens))
		}
		job, consumer, err := rig.po.Tokens().Decode(tokens[0])
		if err != nil || job != 0 || consumer != 0 {
			t.Fatalf("test token names job %d consumer %d (%v), want 0 and 0", job, consumer, err)
		}
		for _, ch := range []postoffice.Channel{postoffice.ChannelReply, postoffice.ChannelClick} {
			if _, err := rig.po.Acknowledge(ctx, tokens[0], ch, "test"); !errors.Is(err, postoffice.ErrNoDelivery) {
				t.Fatalf("acknowledging the test token by %s: %v, want ErrNoDelivery", ch, err)
			}
		}
	}
	if spent, err := rig.st.RuleSpent(ctx, rig.rule.ID); err != nil || spent != 0 {
		t.Fatalf("the rule spent %d points on a test (%v)", spent, err)
	}
}

func TestSendTestRefusesABadAddress(t *testing.T) {
	rig := newTestSendRig(t, false)
	for _, to := range []string{"", "not an address", "Ann <ann@example.com>", "a@b.example, c@d.example"} {
		if err := rig.ts.SendTest(context.Background(), rig.job, to, rig.ann); err == nil {
			t.Errorf("SendTest(%q) sent", to)
		}
	}
	if n := rig.sink.Count(); n != 0 {
		t.Fatalf("%d messages sent to bad addresses", n)
	}
	if err := rig.ts.SendTest(context.Background(), rig.job, "ann@example.com", rig.ann); err != nil {
		t.Fatal(err)
	}
	if n := rig.sink.Count(); n != 1 {
		t.Fatalf("a text-only job's test sent %d messages, want 1", n)
	}
}

// A test goes to toolbox users' own addresses and approved ones, never to a consumer who
// asked for no mail, and at most TestSendsPerHour an hour for each user.
func TestSendTestGoesOnlyWhereItMayAndNotTooOften(t *testing.T) {
	rig := newTestSendRig(t, false)
	ctx := context.Background()
	refused := func(to, want string) {
		t.Helper()
		var re *TestRefusedError
		if err := rig.ts.SendTest(ctx, rig.job, to, rig.ann); !errors.As(err, &re) || !strings.Contains(err.Error(), want) {
			t.Fatalf("SendTest(%s) = %v, want refused saying %q", to, err, want)
		}
	}
	// A stranger's address, or a consumer's, is refused until an operator approves it.
	refused("stranger@example.net", "operator approved")
	if _, _, err := rig.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "gone@example.net"}, {Email: "bob@example.net"}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"gone@example.net", "bob@example.net", "qa@example.net"} {
		if err := rig.st.ApproveTestAddress(ctx, a, "QA", "op@example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if err := rig.st.SetConsumerStatus(ctx, "gone@example.net", rewards.StatusUnsubscribed); err != nil {
		t.Fatal(err)
	}
	refused("gone@example.net", "unsubscribed")
	if err := rig.st.SetConsumerStatus(ctx, "bob@example.net", rewards.StatusBounced); err != nil {
		t.Fatal(err)
	}
	refused("bob@example.net", "bounced")
	// Another issuer's user is not ann's to mail.
	other, err := rig.st.EnsureIssuer(ctx, "bolt", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := rig.st.CreateUser(ctx, &rewards.User{Email: "cy@bolt.example", Role: rewards.RoleIssuer, IssuerID: other.ID}, rig.now); err != nil {
		t.Fatal(err)
	}
	refused("cy@bolt.example", "operator approved")
	if n := rig.sink.Count(); n != 0 {
		t.Fatalf("%d tests sent to refused addresses", n)
	}

	// Her own address and the approved one share one hourly allowance.
	for i := range TestSendsPerHour {
		to := "ann@example.com"
		if i%2 == 1 {
			to = "QA@example.net"
		}
		if err := rig.ts.SendTest(ctx, rig.job, to, rig.ann); err != nil {
			t.Fatalf("test %d: %v", i+1, err)
		}
		rig.now = rig.now.Add(time.Minute)
	}
	refused("ann@example.com", "the next may go at 13:00 UTC")
	if n := rig.sink.Count(); n != TestSendsPerHour {
		t.Fatalf("%d tests sent, want %d", n, TestSendsPerHour)
	}
	rig.now = time.Date(2026, 6, 1, 13, 0, 1, 0, time.UTC)
	if err := rig.ts.SendTest(ctx, rig.job, "ann@example.com", rig.ann); err != nil {
		t.Fatalf("an hour after the first test: %v", err)
	}
	// Taken off the list, the address gets no more.
	if err := rig.st.RemoveTestAddress(ctx, "qa@example.net"); err != nil {
		t.Fatal(err)
	}
	refused("qa@example.net", "operator approved")
}
