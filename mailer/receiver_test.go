package mailer

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	stdsmtp "net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
)

const testReplyDomain = "reply.example"

// fakeAcks is the post office in the receiver's tests: it verifies the token as the real
// one does, records every call, and fails when told to.
type fakeAcks struct {
	k *postoffice.Keyring
	// fail, when set, decides call n (from 1); an error is returned as the commit's.
	fail func(n int, token string) error
	// gate, when set, holds each call until it is closed or sent to.
	gate chan struct{}
	// entered, when set, hears of each call as it begins.
	entered chan struct{}

	mu        sync.Mutex
	calls     []ackCall
	committed []ackCall
}

type ackCall struct {
	token   string
	channel postoffice.Channel
	source  string
}

var _ Acknowledger = (*fakeAcks)(nil)

func (f *fakeAcks) Acknowledge(ctx context.Context, token string, channel postoffice.Channel, source string) (*postoffice.AckResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, ackCall{token, channel, source})
	n := len(f.calls)
	f.mu.Unlock()
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	job, consumer, err := f.k.Decode(token)
	if err != nil {
		return nil, err
	}
	if f.fail != nil {
		if err := f.fail(n, token); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.committed = append(f.committed, ackCall{token, channel, source})
	f.mu.Unlock()
	return &postoffice.AckResult{JobKey: job, ConsumerID: consumer, FirstReceipt: true}, nil
}

func (f *fakeAcks) snapshot() (calls, committed []ackCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ackCall(nil), f.calls...), append([]ackCall(nil), f.committed...)
}

// fakeInbound is the store's inbound table in the receiver's tests.
type fakeInbound struct {
	fail func(n int) error

	mu      sync.Mutex
	n       int
	records []InboundRecord
}

var _ InboundRecorder = (*fakeInbound)(nil)

func (f *fakeInbound) RecordInbound(ctx context.Context, m *InboundRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.fail != nil {
		if err := f.fail(f.n); err != nil {
			return err
		}
	}
	f.records = append(f.records, *m)
	return nil
}

// fakeUnsubscriber records the consumers unsubscribed by mail; fail, when set, refuses.
type fakeUnsubscriber struct {
	fail error

	mu        sync.Mutex
	consumers []int64
}

var _ Unsubscriber = (*fakeUnsubscriber)(nil)

func (f *fakeUnsubscriber) Unsubscribe(ctx context.Context, consumerID int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.consumers = append(f.consumers, consumerID)
	return nil
}

func (f *fakeUnsubscriber) snapshot() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.consumers...)
}

func (f *fakeInbound) snapshot() []InboundRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]InboundRecord(nil), f.records...)
}

// testReceiver is a receiver serving on 127.0.0.1:0 until the test ends.
type testReceiver struct {
	*Receiver
	addr    string
	k       *postoffice.Keyring
	acks    *fakeAcks
	inbound *fakeInbound
	unsub   *fakeUnsubscriber
	stop    context.CancelFunc
	served  chan error
}

func startReceiver(t *testing.T, configure func(*ReceiverConfig, *fakeAcks, *fakeInbound)) *testReceiver {
	t.Helper()
	k := inboundKeyring(t)
	acks, inbound, unsub := &fakeAcks{k: k}, &fakeInbound{}, &fakeUnsubscriber{}
	cfg := ReceiverConfig{ReplyDomain: testReplyDomain, Mailboxes: []string{"bounces", "rewards"}, Tokens: k, Acks: acks, Inbound: inbound,
		Unsubscribe: unsub,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ShutdownGrace: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if configure != nil {
		configure(&cfg, acks, inbound)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := NewReceiver(cfg)
	tr := &testReceiver{Receiver: r, addr: l.Addr().String(), k: k, acks: acks, inbound: inbound, unsub: unsub, stop: cancel, served: make(chan error, 1)}
	go func() { tr.served <- r.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-tr.served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the receiver did not stop")
		}
	})
	return tr
}

// outcome is how a mail transaction ended: the first refused stage with its reply code, or
// "done" and 250.
type outcome struct {
	stage string
	code  int
	text  string
}

func (o outcome) String() string { return fmt.Sprintf("%s %d %s", o.stage, o.code, o.text) }

var accepted = outcome{stage: "done", code: 250}

func (o outcome) is(stage string, code int) bool { return o.stage == stage && o.code == code }

// sendStd sends one message with the standard library's client.
func sendStd(t *testing.T, addr, from string, rcpts []string, data []byte) outcome {
	t.Helper()
	c, err := stdsmtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	fail := func(stage string, err error) outcome {
		var te *textproto.Error
		if errors.As(err, &te) {
			return outcome{stage, te.Code, te.Msg}
		}
		return outcome{stage, -1, err.Error()}
	}
	if err := c.Hello("client.example"); err != nil {
		return fail("ehlo", err)
	}
	if err := c.Mail(from); err != nil {
		return fail("mail", err)
	}
	for _, to := range rcpts {
		if err := c.Rcpt(to); err != nil {
			return fail("rcpt", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fail("data", err)
	}
	if _, err := w.Write(data); err != nil {
		return fail("write", err)
	}
	if err := w.Close(); err != nil {
		return fail("end", err)
	}
	_ = c.Quit()
	return accepted
}

// sendGo sends one message with go-smtp's client; size, if not 0, is declared in MAIL.
func sendGo(t *testing.T, addr, from string, rcpts []string, data []byte, size int64) outcome {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	fail := func(stage string, err error) outcome {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return outcome{stage, se.Code, fmt.Sprintf("%d.%d.%d %s", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)}
		}
		return outcome{stage, -1, err.Error()}
	}
	if err := c.Hello("client.example"); err != nil {
		return fail("ehlo", err)
	}
	var opts *smtp.MailOptions
	if size > 0 {
		opts = &smtp.MailOptions{Size: size}
	}
	if err := c.Mail(from, opts); err != nil {
		return fail("mail", err)
	}
	for _, to := range rcpts {
		if err := c.Rcpt(to, nil); err != nil {
			return fail("rcpt", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fail("data", err)
	}
	if _, err := w.Write(data); err != nil {
		return fail("write", err)
	}
	if err := w.Close(); err != nil {
		return fail("end", err)
	}
	_ = c.Quit()
	return accepted
}

// sendBDAT sends one message in two BDAT chunks (CHUNKING, RFC 3030), which go-smtp
// advertises and neither client above uses.
func sendBDAT(t *testing.T, addr, from string, rcpts []string, data []byte) outcome {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	tc := textproto.NewConn(conn)
	expect := func(stage string, want int) (outcome, bool) {
		code, msg, err := tc.ReadResponse(want)
		if err != nil {
			return outcome{stage, code, msg}, false
		}
		return outcome{}, true
	}
	if o, ok := expect("greeting", 220); !ok {
		return o
	}
	steps := []struct {
		stage, cmd string
	}{{"ehlo", "EHLO client.example"}, {"mail", "MAIL FROM:<" + from + ">"}}
	for _, to := range rcpts {
		steps = append(steps, struct{ stage, cmd string }{"rcpt", "RCPT TO:<" + to + ">"})
	}
	for _, st := range steps {
		if err := tc.PrintfLine("%s", st.cmd); err != nil {
			t.Fatal(err)
		}
		if o, ok := expect(st.stage, 250); !ok {
			return o
		}
	}
	half := len(data) / 2
	for i, chunk := range [][]byte{data[:half], data[half:]} {
		last := ""
		if i == 1 {
			last = " LAST"
		}
		fmt.Fprintf(conn, "BDAT %d%s\r\n", len(chunk), last)
		conn.Write(chunk)
		stage := "chunk"
		if i == 1 {
			stage = "end"
		}
		if o, ok := expect(stage, 250); !ok {
			return o
		}
	}
	return accepted
}

type sendFunc func(t *testing.T, addr, from string, rcpts []string, data []byte) outcome

var clients = map[string]sendFunc{
	"net/smtp": sendStd,
	"go-smtp": func(t *testing.T, addr, from string, rcpts []string, data []byte) outcome {
		return sendGo(t, addr, from, rcpts, data, 0)
	},
}

// replyMessage is a consumer's reply with the given header fields.
func replyMessage(header string) []byte {
	return wireCRLF("From: Joe Consumer <joe@example.com>\nTo: <rewards@acme.example>\n" +
		"Date: Mon, 2 Feb 2026 10:00:00 +0100\nMessage-ID: <reply-1@example.com>\n" + header +
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nYes, count me in!\n\n> Hello Joe\n")
}

func TestReceiverAcknowledgesReply(t *testing.T) {
	t.Parallel()
	k := inboundKeyring(t)
	tok := k.Encode(7, 42)
	encoded := "=?utf-8?q?" + qWord("Re: AW: Fwd: Grüße [#"+tok[:12]) + "?=\r\n =?utf-8?q?" + qWord(tok[12:]+"]") + "?="
	placements := []struct {
		name   string
		header string
		rcpt   string
	}{
		{"subject behind Re: AW: Fwd:", "Subject: Re: AW: Fwd: Hello Joe [#" + tok + "]\n", "reply@" + testReplyDomain},
		{"subject RFC 2047 encoded and folded", "Subject: " + encoded + "\n", "reply@" + testReplyDomain},
		{"only In-Reply-To", "Subject: Re: Hello Joe\nIn-Reply-To: <" + tok + "@" + testReplyDomain + ">\n", "reply@" + testReplyDomain},
		{"only the reply+ address", "Subject: Hello\n", "reply+" + tok + "@" + testReplyDomain},
		{"reply+ address, domain in capitals", "Subject: Hello\n", "reply+" + tok + "@REPLY.Example"},
	}
	all := map[string]sendFunc{"BDAT": sendBDAT}
	for name, send := range clients {
		all[name] = send
	}
	for clientName, send := range all {
		for _, p := range placements {
			t.Run(clientName+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				r := startReceiver(t, nil)
				if got := send(t, r.addr, "joe@example.com", []string{p.rcpt}, replyMessage(p.header)); got != accepted {
					t.Fatalf("got %v, want 250", got)
				}
				calls, committed := r.acks.snapshot()
				want := ackCall{token: tok, channel: postoffice.ChannelReply, source: "smtp <reply-1@example.com>"}
				if len(calls) != 1 || calls[0] != want || len(committed) != 1 {
					t.Errorf("acknowledgements %+v, want one %+v", calls, want)
				}
				if recs := r.inbound.snapshot(); len(recs) != 0 {
					t.Errorf("recorded %+v, want nothing", recs)
				}
			})
		}
	}
}

func TestReceiverRefusesForgedToken(t *testing.T) {
	t.Parallel()
	k := inboundKeyring(t)
	tok := k.Encode(7, 42)
	// One character changed, so the ids or the MAC no longer match.
	c := byte('a')
	if tok[20] == c {
		c = 'b'
	}
	altered := tok[:20] + string(c) + tok[21:]
	otherKey, err := postoffice.NewKeyring(1, map[int][]byte{1: []byte("someone-elses-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	forged := otherKey.Encode(7, 42)
	for name, msg := range map[string]struct {
		rcpt, header string
	}{
		"altered in the address":   {"reply+" + altered + "@" + testReplyDomain, "Subject: Hello\n"},
		"forged in the address":    {"reply+" + forged + "@" + testReplyDomain, "Subject: Re: Hello [#" + forged + "]\n"},
		"altered in the subject":   {"reply@" + testReplyDomain, "Subject: Re: Hello [#" + altered + "]\n"},
		"reply+ with no token":     {"reply+@" + testReplyDomain, "Subject: Hello\n"},
		"reply+ with a short word": {"reply+hello@" + testReplyDomain, "Subject: Hello\n"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := startReceiver(t, nil)
			for clientName, send := range clients {
				got := send(t, r.addr, "joe@example.com", []string{msg.rcpt}, replyMessage(msg.header))
				if !got.is("end", 554) || !strings.Contains(got.text, "no valid pointpost token") {
					t.Errorf("%s: got %v, want 554 no valid pointpost token", clientName, got)
				}
			}
			if calls, _ := r.acks.snapshot(); len(calls) != 0 {
				t.Errorf("acknowledged %+v", calls)
			}
			// Kept for the operator's "why no points?".
			recs := r.inbound.snapshot()
			if len(recs) != 2 || recs[0].Kind != "reply" || recs[0].JobKey != 0 || !strings.HasPrefix(recs[0].Detail, "refused 554 5.7.1") {
				t.Errorf("records %+v", recs)
			}
		})
	}
}

func TestReceiverIsNoRelay(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, nil)
	tok := r.k.Encode(7, 42)
	for _, to := range []string{"victim@other.example", "reply+" + tok + "@other.example", "x@" + testReplyDomain + ".evil.example",
		"x@sub." + testReplyDomain} {
		for clientName, send := range clients {
			got := send(t, r.addr, "spammer@example.net", []string{to}, replyMessage("Subject: hi\n"))
			if !got.is("rcpt", 550) || !strings.Contains(got.text, "relay access denied") {
				t.Errorf("%s to %s: got %v, want rcpt 550 relay access denied", clientName, to, got)
			}
		}
	}
	// The 5.7.1 enhanced code, as go-smtp's client reports it.
	if got := sendGo(t, r.addr, "a@b.example", []string{"x@other.example"}, replyMessage(""), 0); !strings.HasPrefix(got.text, "5.7.1 ") {
		t.Errorf("got %v, want 5.7.1", got)
	}
	if calls, _ := r.acks.snapshot(); len(calls) != 0 || len(r.inbound.snapshot()) != 0 {
		t.Error("a refused message reached the post office or the store")
	}
	// The domain compares case-insensitively.
	for _, to := range []string{"Rewards@REPLY.EXAMPLE", "Postmaster@" + testReplyDomain + ".", "Bounces@" + testReplyDomain} {
		if got := sendStd(t, r.addr, "a@b.example", []string{to}, replyMessage("Subject: hi\n")); got != accepted {
			t.Errorf("to %s: %v, want 250", to, got)
		}
	}
	// An address at the reply domain that pointpost never issued is nobody's.
	for _, to := range []string{"ceo@" + testReplyDomain, "sales@" + testReplyDomain} {
		if got := sendStd(t, r.addr, "a@b.example", []string{to}, replyMessage("Subject: hi\n")); !got.is("rcpt", 550) || !strings.Contains(got.text, "no such address") {
			t.Errorf("to %s: %v, want rcpt 550 no such address", to, got)
		}
	}
}

func TestReceiverLimitsRecipients(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, nil)
	rcpts := make([]string, 11)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("reply+%d@%s", i, testReplyDomain)
	}
	for clientName, send := range clients {
		got := send(t, r.addr, "joe@example.com", rcpts, replyMessage("Subject: hi\n"))
		if !got.is("rcpt", 452) {
			t.Errorf("%s: got %v, want rcpt 452", clientName, got)
		}
	}
	if got := sendGo(t, r.addr, "joe@example.com", rcpts, replyMessage(""), 0); !strings.HasPrefix(got.text, "4.5.3 ") {
		t.Errorf("got %v, want 4.5.3", got)
	}
	// Ten are fine.
	tok := r.k.Encode(1, 2)
	if got := sendStd(t, r.addr, "joe@example.com", rcpts[:10], replyMessage("Subject: Re: hi [#"+tok+"]\n")); got != accepted {
		t.Errorf("10 recipients: %v", got)
	}
}

func TestReceiverLimitsMessageSize(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, nil) // the default 10 MB
	tok := r.k.Encode(7, 42)
	line := strings.Repeat("x", 76) + "\r\n"
	big := append(replyMessage("Subject: Re: Hello [#"+tok+"]\n"), strings.Repeat(line, (11<<20)/len(line))...)
	for clientName, send := range clients {
		if got := send(t, r.addr, "joe@example.com", []string{"reply@" + testReplyDomain}, big); !got.is("end", 552) {
			t.Errorf("%s: got %v, want 552 after the data", clientName, got)
		}
	}
	// Declared in MAIL (SIZE, RFC 1870), it is refused before the data.
	got := sendGo(t, r.addr, "joe@example.com", []string{"reply@" + testReplyDomain}, big, int64(len(big)))
	if !got.is("mail", 552) || !strings.HasPrefix(got.text, "5.3.4 ") {
		t.Errorf("with SIZE: got %v, want mail 552 5.3.4", got)
	}
	if calls, _ := r.acks.snapshot(); len(calls) != 0 {
		t.Errorf("a message over the limit was acknowledged: %d calls", len(calls))
	}
	// Just under the limit it goes through.
	ok := append(replyMessage("Subject: Re: Hello [#"+tok+"]\n"), strings.Repeat(line, (9<<20)/len(line))...)
	if got := sendStd(t, r.addr, "joe@example.com", []string{"reply@" + testReplyDomain}, ok); got != accepted {
		t.Errorf("9 MB: %v", got)
	}
}

func TestReceiverLimitsLineLength(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) { c.MaxLineLength = 1000 })
	tok := r.k.Encode(7, 42)
	long := append(replyMessage("Subject: Re: Hello [#"+tok+"]\n"), strings.Repeat("y", 3000)+"\r\n"...)
	got := sendStd(t, r.addr, "joe@example.com", []string{"reply@" + testReplyDomain}, long)
	if got.code != 500 {
		t.Errorf("got %v, want 500", got)
	}
	if calls, _ := r.acks.snapshot(); len(calls) != 0 {
		t.Errorf("acknowledged %d", len(calls))
	}
}

func TestReceiverAsksForRetryUntilCommitted(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, func(_ *ReceiverConfig, a *fakeAcks, _ *fakeInbound) {
		a.fail = func(n int, _ string) error {
			if n == 1 {
				return errors.New("database is locked")
			}
			return nil
		}
	})
	tok := r.k.Encode(7, 42)
	msg := replyMessage("Subject: Re: Hello [#" + tok + "]\n")
	got := sendGo(t, r.addr, "joe@example.com", []string{"reply+" + tok + "@" + testReplyDomain}, msg, 0)
	if !got.is("end", 451) || !strings.HasPrefix(got.text, "4.3.0 ") || !strings.Contains(got.text, "try again later") {
		t.Fatalf("first try: %v, want 451 4.3.0 try again later", got)
	}
	if _, committed := r.acks.snapshot(); len(committed) != 0 {
		t.Fatalf("committed %d", len(committed))
	}
	if got := sendStd(t, r.addr, "joe@example.com", []string{"reply+" + tok + "@" + testReplyDomain}, msg); got != accepted {
		t.Fatalf("retry: %v, want 250", got)
	}
	calls, committed := r.acks.snapshot()
	if len(calls) != 2 || len(committed) != 1 || committed[0].token != tok {
		t.Errorf("calls %d committed %+v", len(calls), committed)
	}
}

func TestReceiverNoSuchInvitation(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, func(_ *ReceiverConfig, a *fakeAcks, _ *fakeInbound) {
		a.fail = func(int, string) error { return fmt.Errorf("job 7 consumer 42: %w", postoffice.ErrNoDelivery) }
	})
	tok := r.k.Encode(7, 42)
	for clientName, send := range clients {
		got := send(t, r.addr, "joe@example.com", []string{"reply+" + tok + "@" + testReplyDomain}, replyMessage("Subject: Re: Hi\n"))
		if !got.is("end", 550) {
			t.Errorf("%s: %v, want 550", clientName, got)
		}
	}
	if got := sendGo(t, r.addr, "joe@example.com", []string{"reply+" + tok + "@" + testReplyDomain}, replyMessage("Subject: Re: Hi\n"), 0); !strings.HasPrefix(got.text, "5.1.1 ") {
		t.Errorf("got %v, want 5.1.1", got)
	}
}

func TestReceiverRecordsWhatEarnsNothing(t *testing.T) {
	t.Parallel()
	k := inboundKeyring(t)
	tok := k.Encode(7, 42)
	dsn, err := os.ReadFile(filepath.Join("testdata", "inbound", "lhost-postfix-01.eml"))
	if err != nil {
		t.Fatal(err)
	}
	arf, err := os.ReadFile(filepath.Join("testdata", "inbound", "arf-01.eml"))
	if err != nil {
		t.Fatal(err)
	}
	ourDSN := wireCRLF("From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\nSubject: Undelivered Mail Returned to Sender\n" +
		"Auto-Submitted: auto-replied\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n" +
		"--b\nContent-Type: text/plain\n\nI'm sorry to have to inform you that your message could not be delivered.\n" +
		"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\nFinal-Recipient: rfc822; joe@example.com\nAction: failed\nStatus: 5.1.1\n" +
		"--b\nContent-Type: message/rfc822\n\nFrom: Acme Rewards <rewards@" + testReplyDomain + ">\nSubject: Hello Joe [#" + tok + "]\n" +
		"Message-ID: <" + tok + "@" + testReplyDomain + ">\n\nHello\n--b--\n")
	cases := []struct {
		name     string
		from, to string
		data     []byte
		kind     string
		job      int64
	}{
		{"auto-reply with a valid token", "joe@example.com", "reply+" + tok + "@" + testReplyDomain,
			replyMessage("Auto-Submitted: auto-replied\nSubject: Out of office: Hello Joe [#" + tok + "]\n"), "auto-reply", 7},
		{"DSN from the corpus", "", "bounces@" + testReplyDomain, dsn, "bounce", 0},
		{"DSN returning our message", "", "rewards@" + testReplyDomain, ourDSN, "bounce", 7},
		{"ARF report from the corpus", "fbl@isp.example", "abuse@" + testReplyDomain, arf, "complaint", 0},
		{"unsubscribe by mail", "joe@example.com", "unsubscribe+" + tok + "@" + testReplyDomain, replyMessage("Subject: unsubscribe\n"), "unsubscribe", 7},
		{"reply without any token", "joe@example.com", "reply@" + testReplyDomain, replyMessage("Subject: A question\n"), "reply", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := startReceiver(t, nil)
			if got := sendStd(t, r.addr, c.from, []string{c.to}, c.data); got != accepted {
				t.Fatalf("got %v, want 250", got)
			}
			if calls, _ := r.acks.snapshot(); len(calls) != 0 {
				t.Errorf("acknowledged %+v", calls)
			}
			recs := r.inbound.snapshot()
			if len(recs) != 1 {
				t.Fatalf("records %+v, want one", recs)
			}
			rec := recs[0]
			if rec.Kind != c.kind || rec.JobKey != c.job || c.job != 0 && rec.ConsumerID != 42 || rec.To != c.to {
				t.Errorf("record %+v, want kind %s job %d", rec, c.kind, c.job)
			}
			// Only the unsubscribe request unsubscribes, and only the consumer it names.
			if got, want := r.unsub.snapshot(), c.kind == "unsubscribe"; want != (len(got) == 1 && got[0] == 42) || !want && len(got) != 0 {
				t.Errorf("unsubscribed %v", got)
			}
		})
	}
}

// TestReceiverAsksForRetryWhenUnsubscribeFails: an unsubscribe that could not be committed is
// answered 451, so the sender tries again; it is not recorded as done.
func TestReceiverAsksForRetryWhenUnsubscribeFails(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) {
		c.Unsubscribe = &fakeUnsubscriber{fail: errors.New("database is locked")}
	})
	tok := r.k.Encode(7, 42)
	if got := sendStd(t, r.addr, "joe@example.com", []string{"unsubscribe+" + tok + "@" + testReplyDomain},
		replyMessage("Subject: unsubscribe\n")); !got.is("end", 451) {
		t.Fatalf("got %v, want 451 after the data", got)
	}
	if recs := r.inbound.snapshot(); len(recs) != 0 {
		t.Errorf("recorded %+v", recs)
	}
}

func TestReceiverAsksForRetryWhenRecordFails(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, func(_ *ReceiverConfig, _ *fakeAcks, in *fakeInbound) {
		in.fail = func(n int) error {
			if n == 1 {
				return errors.New("disk I/O error")
			}
			return nil
		}
	})
	msg := replyMessage("Auto-Submitted: auto-replied\nSubject: Away\n")
	if got := sendStd(t, r.addr, "joe@example.com", []string{"reply@" + testReplyDomain}, msg); !got.is("end", 451) {
		t.Fatalf("got %v, want 451", got)
	}
	if got := sendStd(t, r.addr, "joe@example.com", []string{"reply@" + testReplyDomain}, msg); got != accepted {
		t.Fatalf("retry: %v", got)
	}
	if n := len(r.inbound.snapshot()); n != 1 {
		t.Errorf("%d records", n)
	}
}

func TestReceiverRefusesBrokenMIME(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, nil)
	tok := r.k.Encode(7, 42)
	broken := []string{
		"From: joe@example.com\nSubject: Re: Hi [#" + tok + "]\nContent-Type: multipart/mixed\n\n--x\n\nHi\n--x--\n",
		"From: joe@example.com\nSubject: Re: Hi [#" + tok + "]\nContent-Type: multipart/mixed; boundary=b\n\n--b\nnot a header line\n\nHi\n--b--\n",
		"this is not a message at all\n",
		"\x00\x01\xff:\n\n",
	}
	c, err := smtp.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, msg := range broken {
		// All on one connection: the receiver answers each and keeps going.
		if err := c.Mail("joe@example.com", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("reply+"+tok+"@"+testReplyDomain, nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, strings.ReplaceAll(msg, "\n", "\r\n"))
		err = w.Close()
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 6, 0}) || !strings.Contains(se.Message, "malformed message") {
			t.Errorf("message %d: %v, want 554 5.6.0 malformed message", i, err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
	if calls, _ := r.acks.snapshot(); len(calls) != 0 {
		t.Errorf("acknowledged %+v", calls)
	}
	if recs := r.inbound.snapshot(); len(recs) != len(broken) || recs[0].Kind != "unknown" {
		t.Errorf("records %+v", recs)
	}
}

// readReply reads one SMTP reply line within d.
func readReply(t *testing.T, conn net.Conn, br *bufio.Reader, d time.Duration) (string, error) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	return br.ReadString('\n')
}

func TestReceiverDisconnectsStalledClient(t *testing.T) {
	t.Parallel()
	r := startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) { c.ReadTimeout = 300 * time.Millisecond })
	tok := r.k.Encode(7, 42)
	for _, stallAt := range []string{"after the greeting", "in the middle of DATA"} {
		conn, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		if line, err := readReply(t, conn, br, 5*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
			t.Fatalf("greeting %q %v", line, err)
		}
		if stallAt == "in the middle of DATA" {
			for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<joe@example.com>", "RCPT TO:<reply+" + tok + "@" + testReplyDomain + ">", "DATA"} {
				fmt.Fprintf(conn, "%s\r\n", cmd)
				for {
					line, err := readReply(t, conn, br, 5*time.Second)
					if err != nil {
						t.Fatalf("%s: %v", cmd, err)
					}
					if len(line) > 3 && line[3] == ' ' {
						break
					}
				}
			}
			fmt.Fprintf(conn, "Subject: Re: Hi [#%s]\r\nFrom: joe@example.com\r\n\r\nI am typing very slo", tok)
		}
		start := time.Now()
		// Whatever the server says, it ends the connection: a read left waiting 5 s means it did not.
		var got []string
		for i := 0; i < 10; i++ {
			line, err := readReply(t, conn, br, 5*time.Second)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s: still connected after %v", stallAt, time.Since(start))
				}
				break // EOF or reset: disconnected
			}
			got = append(got, strings.TrimSpace(line))
		}
		conn.Close()
		t.Logf("%s: the server said %q after %v", stallAt, got, time.Since(start))
		if stallAt == "after the greeting" && (len(got) != 1 || !strings.HasPrefix(got[0], "421 ")) {
			t.Errorf("%s: got %q, want a 421", stallAt, got)
		}
	}
	if calls, _ := r.acks.snapshot(); len(calls) != 0 {
		t.Errorf("a cut-off message was acknowledged: %+v", calls)
	}
}

func TestReceiverCapsConnections(t *testing.T) {
	t.Parallel()
	const max = 4
	r := startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) { c.MaxConnections = max })
	dial := func() (net.Conn, string) {
		conn, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		line, err := readReply(t, conn, bufio.NewReader(conn), 5*time.Second)
		if err != nil {
			t.Fatalf("no greeting: %v", err)
		}
		return conn, line
	}
	var open []net.Conn
	for i := 0; i < max; i++ {
		conn, line := dial()
		if !strings.HasPrefix(line, "220 ") {
			t.Fatalf("connection %d: %q", i+1, line)
		}
		open = append(open, conn)
	}
	extra, line := dial()
	if !strings.HasPrefix(line, "421 4.7.0 ") {
		t.Errorf("connection %d: %q, want 421 4.7.0", max+1, line)
	}
	if _, err := readReply(t, extra, bufio.NewReader(extra), 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the refused connection stays open: %v", err)
	}
	extra.Close()

	// One leaves; a new one gets in (the slot frees when the server sees the close).
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, line := dial()
		conn.Close()
		if strings.HasPrefix(line, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot freed: %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range open[1:] {
		c.Close()
	}
}

func TestReceiverAnswersOnlyAfterCommitAndStopsGracefully(t *testing.T) {
	t.Parallel()
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	r := startReceiver(t, func(_ *ReceiverConfig, a *fakeAcks, _ *fakeInbound) { a.gate, a.entered = gate, entered })
	tok := r.k.Encode(7, 42)

	// An idle client, which shutdown sends away.
	idle, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleR := bufio.NewReader(idle)
	if line, err := readReply(t, idle, idleR, 5*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("greeting %q %v", line, err)
	}

	done := make(chan outcome, 1)
	go func() {
		done <- sendStd(t, r.addr, "joe@example.com", []string{"reply+" + tok + "@" + testReplyDomain}, replyMessage("Subject: Re: Hi\n"))
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Acknowledge was not called")
	}
	select {
	case got := <-done:
		t.Fatalf("answered %v before the commit", got)
	case <-time.After(100 * time.Millisecond):
	}

	// Stop while the commit is in progress: the idle client is sent away, the reply's
	// client waits for its answer.
	r.stop()
	line, err := readReply(t, idle, idleR, 5*time.Second)
	if err != nil || !strings.HasPrefix(line, "421 ") {
		t.Errorf("idle client at shutdown: %q %v, want 421", line, err)
	}
	select {
	case got := <-done:
		t.Fatalf("answered %v before the commit", got)
	case err := <-r.served:
		t.Fatalf("Serve returned (%v) with a commit in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	select {
	case got := <-done:
		if got != accepted {
			t.Errorf("got %v, want 250 after the commit", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the commit")
	}
	select {
	case err := <-r.served:
		r.served <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	// No new connections.
	if conn, err := net.Dial("tcp", r.addr); err == nil {
		conn.Close()
		t.Error("still accepting after the stop")
	}
}

func TestReceiverConfig(t *testing.T) {
	t.Parallel()
	k := inboundKeyring(t)
	r := NewReceiver(ReceiverConfig{})
	if err := r.ListenAndServe(context.Background()); err == nil {
		t.Error("no error without a reply domain, keyring, acknowledger and recorder")
	}
	r = NewReceiver(ReceiverConfig{Addr: "127.0.0.1:0", ReplyDomain: testReplyDomain, Tokens: k, Acks: &fakeAcks{k: k}, Inbound: &fakeInbound{},
		Unsubscribe: &fakeUnsubscriber{},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil))})
	if r.cfg.MaxMessageBytes != 10<<20 || r.cfg.MaxRecipients != 10 || r.cfg.MaxConnections != 100 || r.cfg.MaxLineLength != 2000 ||
		r.cfg.ReadTimeout <= 0 || r.cfg.WriteTimeout <= 0 {
		t.Errorf("defaults %+v", r.cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.ListenAndServe(ctx) }()
	for i := 0; r.Addr() == ""; i++ {
		if i > 500 {
			t.Fatal("not listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := sendGo(t, r.Addr(), "joe@example.com", []string{"reply+" + k.Encode(1, 1) + "@" + testReplyDomain}, replyMessage("Subject: Re: Hi\n"), 0); got != accepted {
		t.Errorf("got %v", got)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
	if r.Addr() != "" {
		t.Errorf("Addr %q after stopping", r.Addr())
	}
}

// BenchmarkReceiverReplies: replies acknowledged per second over 64 loopback connections,
// each kept open for many messages, with an Acknowledger that commits nothing: the
// receiver's own cost (SMTP, parsing, token checks).
func BenchmarkReceiverReplies(b *testing.B) {
	k := inboundKeyring(b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := NewReceiver(ReceiverConfig{ReplyDomain: testReplyDomain, Tokens: k, Acks: &fakeAcks{k: k}, Inbound: &fakeInbound{},
		Unsubscribe: &fakeUnsubscriber{},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil))})
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, l) }()
	defer func() { cancel(); <-served }()
	addr := l.Addr().String()
	var seq sync.Mutex
	n := int64(0)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := smtp.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		for pb.Next() {
			seq.Lock()
			n++
			tok := k.Encode(1, n)
			seq.Unlock()
			msg := replyMessage("Subject: Re: Hello Joe [#" + tok + "]\nIn-Reply-To: <" + tok + "@" + testReplyDomain + ">\n")
			if err := c.SendMail("joe@example.com", []string{"reply+" + tok + "@" + testReplyDomain}, strings.NewReader(string(msg))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "replies/s")
}

// storeAdapter gives the receiver the real store, as main does.
type storeAdapter struct{ st *store.Store }

func (a storeAdapter) RecordInbound(ctx context.Context, m *InboundRecord) error {
	return a.st.RecordInbound(ctx, &store.InboundMessage{Kind: m.Kind, JobKey: m.JobKey, ConsumerID: m.ConsumerID,
		From: m.From, To: m.To, Subject: m.Subject, Detail: m.Detail, Key: m.Key})
}

func (a storeAdapter) RecordBounce(ctx context.Context, b *BounceRecord) error {
	sb := &store.Bounce{Message: store.InboundMessage{Kind: b.Kind, JobKey: b.JobKey, ConsumerID: b.ConsumerID,
		From: b.From, To: b.To, Subject: b.Subject, Detail: b.Detail}, Key: b.Key, Complaint: b.Complaint, Reported: b.Reported}
	for _, f := range b.Failures {
		sb.Failures = append(sb.Failures, store.BounceFailure{Email: f.Recipient, Severity: string(f.Severity),
			Status: f.Status, Detail: f.Detail()})
	}
	return a.st.RecordBounce(ctx, sb)
}

// storeFixture is a real store holding a job sent to n consumers (c0@example.com, …) and
// a receiver in front of it; acks stay fake, to count what would have been acknowledged.
type storeFixture struct {
	*testReceiver
	st        *store.Store
	job       int64
	consumers []int64
}

func startStoreReceiver(t *testing.T, n int) *storeFixture {
	t.Helper()
	st, job, consumers := storeWithJob(t, n, postoffice.JobRules{})
	f := &storeFixture{st: st, job: job, consumers: consumers}
	f.testReceiver = startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) {
		c.Inbound, c.Unsubscribe, c.Bounces = storeAdapter{st}, st, storeAdapter{st}
	})
	return f
}

// storeWithJob opens a real store holding a job with rules, sent to n consumers
// (c0@example.com, …), and returns it with the job's key and the consumers' IDs in order.
func storeWithJob(t testing.TB, n int, rules postoffice.JobRules) (st *store.Store, job int64, consumers []int64) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "pp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var cs []rewards.Consumer
	for i := range n {
		cs = append(cs, rewards.Consumer{Email: fmt.Sprintf("c%d@example.com", i)})
	}
	if _, _, err := st.UpsertConsumers(ctx, cs); err != nil {
		t.Fatal(err)
	}
	iss, err := st.EnsureIssuer(ctx, "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules.New {
		r.IssuerID = iss.ID
	}
	now := time.Now()
	j := &postoffice.Job{IssuerID: iss.ID, Name: "j", State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: n}
	if err := st.CreateJob(ctx, j, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, rules); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SelectBatch(ctx, j, false, n); err != nil {
		t.Fatal(err)
	}
	rs, err := st.DueRecipients(ctx, j.Key, 0, now, n)
	if err != nil || len(rs) != n {
		t.Fatalf("%d recipients, %v", len(rs), err)
	}
	var outs []postoffice.Outcome
	for _, r := range rs {
		outs = append(outs, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent, At: now})
		consumers = append(consumers, r.Consumer.ID)
	}
	if err := st.RecordOutcomes(ctx, outs); err != nil {
		t.Fatal(err)
	}
	return st, j.Key, consumers
}

func (f *storeFixture) token(i int) string { return f.k.Encode(f.job, f.consumers[i]) }

func (f *storeFixture) status(t *testing.T, i int) rewards.ConsumerStatus {
	t.Helper()
	c, err := f.st.ConsumerByID(context.Background(), f.consumers[i])
	if err != nil {
		t.Fatal(err)
	}
	return c.Status
}

func (f *storeFixture) delivery(t *testing.T, i int) *postoffice.Delivery {
	t.Helper()
	d, err := f.st.Delivery(context.Background(), f.job, f.consumers[i])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *storeFixture) inboundCount(t *testing.T) int {
	t.Helper()
	ms, err := f.st.InboundMessages(context.Background(), 100000)
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

// dsnMessage is a Postfix-style DSN about one recipient.
func dsnMessage(id, rcpt, status, diag string) []byte {
	return wireCRLF("From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\nTo: bounces@" + testReplyDomain +
		"\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <" + id + "@mx.example.org>\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n" +
		"I'm sorry to have to inform you that your message could not be delivered.\n\n--B\n" +
		"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; " + rcpt +
		"\nAction: failed\nStatus: " + status + "\nDiagnostic-Code: smtp; " + diag + "\n\n--B--\n")
}

// arfMessage is an ARF abuse report whose Original-Rcpt-To is rcpt; the returned header
// carries our Message-ID with token when token is not "".
func arfMessage(id, rcpt, token string) []byte {
	returned := "From: rewards@reply.example\nSubject: hi\n"
	if token != "" {
		returned += "Message-ID: <" + token + "@" + testReplyDomain + ">\n"
	}
	return wireCRLF("From: fbl@isp.example\nTo: abuse@" + testReplyDomain + "\nSubject: abuse report\n" +
		"Message-ID: <" + id + "@isp.example>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"B\"\n\n" +
		"--B\nContent-Type: text/plain\n\nThis is an abuse report.\n--B\nContent-Type: message/feedback-report\n\n" +
		"Feedback-Type: abuse\nUser-Agent: fbl/1.0\nVersion: 1\nOriginal-Rcpt-To: <" + rcpt + ">\n\n" +
		"--B\nContent-Type: text/rfc822-headers\n\n" + returned + "\n--B--\n")
}

// lastInbound is the newest inbound message the store kept.
func (f *storeFixture) lastInbound(t *testing.T) store.InboundMessage {
	t.Helper()
	ms, err := f.st.InboundMessages(context.Background(), 1)
	if err != nil || len(ms) != 1 {
		t.Fatalf("%d inbound messages, %v", len(ms), err)
	}
	return ms[0]
}

// TestReceiverIgnoresForgedBounces: anyone may send the receiver a DSN or an ARF report. One
// without a token, naming a real consumer's address, is recorded for review and changes
// nothing; one with a genuine token whose text names another consumer's address affects the
// token's consumer only.
func TestReceiverIgnoresForgedBounces(t *testing.T) {
	f := startStoreReceiver(t, 3)
	postmaster := []string{"postmaster@" + testReplyDomain}
	forged := dsnMessage("f1", "c0@example.com", "5.1.1", "550 5.1.1 <c0@example.com>: User unknown")
	if o := sendStd(t, f.addr, "", postmaster, forged); o != accepted {
		t.Fatalf("forged DSN: %v", o)
	}
	if o := sendStd(t, f.addr, "fbl@isp.example", postmaster, arfMessage("f2", "c1@example.com", "")); o != accepted {
		t.Fatalf("forged ARF: %v", o)
	}
	for i := range 2 {
		if d := f.delivery(t, i); d.Rejected || f.status(t, i) != rewards.StatusActive {
			t.Errorf("consumer %d after a forged report: rejected %v, %s", i, d.Rejected, f.status(t, i))
		}
		if bs, _ := f.st.ConsumerBounces(context.Background(), f.consumers[i]); len(bs) != 0 {
			t.Errorf("consumer %d has %d bounces from forged reports", i, len(bs))
		}
	}
	ms, err := f.st.InboundMessages(context.Background(), 10)
	if err != nil || len(ms) != 2 {
		t.Fatalf("%d recorded, %v", len(ms), err)
	}
	for _, m := range ms {
		if !strings.HasPrefix(m.Detail, store.UnverifiedPrefix) || m.ConsumerID != 0 {
			t.Errorf("forged %s recorded as %q, consumer %d", m.Kind, m.Detail, m.ConsumerID)
		}
	}

	// A genuine bounce of consumer 2's invitation, whose report names consumer 0.
	other := dsnMessage("g1", "c0@example.com", "5.1.1", "550 5.1.1 <c0@example.com>: User unknown")
	if o := sendStd(t, f.addr, "", []string{"bounce+" + f.token(2) + "@" + testReplyDomain}, other); o != accepted {
		t.Fatalf("bounce: %v", o)
	}
	if d := f.delivery(t, 2); !d.Rejected || f.status(t, 2) != rewards.StatusBounced {
		t.Errorf("the token's consumer: rejected %v, %s", d.Rejected, f.status(t, 2))
	}
	if d := f.delivery(t, 0); d.Rejected || f.status(t, 0) != rewards.StatusActive {
		t.Errorf("the consumer named in the text: rejected %v, %s", d.Rejected, f.status(t, 0))
	}
}

func TestReceiverBounceEffects(t *testing.T) {
	f := startStoreReceiver(t, 4)
	// A hard DSN to the VERP return path: the delivery is rejected, the address bounced; the
	// same bounce again counts once.
	hard := dsnMessage("h1", "c0@example.com", "5.1.1", "550 5.1.1 <c0@example.com>: Recipient address rejected: User unknown")
	for range 2 {
		if o := sendStd(t, f.addr, "", []string{"bounce+" + f.token(0) + "@" + testReplyDomain}, hard); o != accepted {
			t.Fatalf("hard bounce: %v", o)
		}
	}
	if d := f.delivery(t, 0); !d.Rejected || !strings.Contains(d.LastError, "5.1.1") {
		t.Errorf("hard-bounced delivery: rejected %v, %q", d.Rejected, d.LastError)
	}
	if st := f.status(t, 0); st != rewards.StatusBounced {
		t.Errorf("hard-bounced consumer: %s", st)
	}
	if bs, _ := f.st.ConsumerBounces(context.Background(), f.consumers[0]); len(bs) != 1 {
		t.Errorf("a redelivered bounce counted %d times", len(bs))
	}

	// A soft bounce that follows no standard, naming the delivery only by the token in the
	// returned message's subject: rejected, the address kept.
	soft := wireCRLF("From: MAILER-DAEMON@mx.example.org\nTo: bounces@" + testReplyDomain + "\nSubject: failure notice\n" +
		"Message-ID: <s1@mx.example.org>\n\nHi. This is the qmail-send program.\n\n<c1@example.com>:\n" +
		"192.0.2.1 said: 552 5.2.2 mailbox full\n\n--- Below this line is a copy of the message.\n\n" +
		"Subject: Earn points [" + f.token(1) + "]\n\nhello\n")
	if o := sendStd(t, f.addr, "", []string{"bounces@" + testReplyDomain}, soft); o != accepted {
		t.Fatalf("soft bounce: %v", o)
	}
	if d := f.delivery(t, 1); !d.Rejected || f.status(t, 1) != rewards.StatusActive {
		t.Errorf("soft bounce: rejected %v, consumer %s", d.Rejected, f.status(t, 1))
	}

	// An abuse report naming no token: its Original-Rcpt-To is anyone's word, so it is
	// recorded for review and changes nothing.
	if o := sendStd(t, f.addr, "fbl@isp.example", []string{"abuse@" + testReplyDomain}, arfMessage("a1", "C2@example.com", "")); o != accepted {
		t.Fatalf("complaint: %v", o)
	}
	if st := f.status(t, 2); st != rewards.StatusActive {
		t.Errorf("a tokenless complaint made the consumer it names %s", st)
	}
	if d := f.lastInbound(t); d.Kind != string(KindComplaint) || !strings.HasPrefix(d.Detail, store.UnverifiedPrefix) ||
		!strings.Contains(d.Detail, "c2@example.com") {
		t.Errorf("tokenless complaint recorded as %+v", d)
	}
	// The same report carrying the token of her invitation in the returned header suppresses her.
	if o := sendStd(t, f.addr, "fbl@isp.example", []string{"abuse@" + testReplyDomain}, arfMessage("a2", "C2@example.com", f.token(2))); o != accepted {
		t.Fatalf("complaint: %v", o)
	}
	if st := f.status(t, 2); st != rewards.StatusSuppressed {
		t.Errorf("complainant: %s", st)
	}

	// A vacation notice to the return path is no bounce: nothing changes.
	vacation := wireCRLF("From: c3@example.com\nTo: bounce+" + f.token(3) + "@" + testReplyDomain +
		"\nSubject: Out of office\nAuto-Submitted: auto-replied\nMessage-ID: <v1@example.com>\n\nAway until Monday.\n")
	if o := sendStd(t, f.addr, "", []string{"bounce+" + f.token(3) + "@" + testReplyDomain}, vacation); o != accepted {
		t.Fatalf("vacation: %v", o)
	}
	if d := f.delivery(t, 3); d.Rejected || f.status(t, 3) != rewards.StatusActive {
		t.Errorf("auto-reply: rejected %v, consumer %s", d.Rejected, f.status(t, 3))
	}
	if calls, _ := f.acks.snapshot(); len(calls) != 0 {
		t.Errorf("%d acknowledgements from bounces", len(calls))
	}
}

// TestReceiverDelayWarningsChangeNothing sends every delay warning (the corpus's and those
// written after RFC 3464) to the VERP return path of a delivery: each is recorded as
// delayed, and no delivery is rejected, no bounce counted, no consumer suppressed. A hard
// bounce after them still rejects.
func TestReceiverDelayWarningsChangeNothing(t *testing.T) {
	files := corpusFiles(t)
	var warnings [][]byte
	ids := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(corpusDelays)) {
		data, err := os.ReadFile(files[name])
		if err != nil {
			t.Fatal(err)
		}
		// rhost-gsuite-06 is rfc3464-55 again: one Message-ID is recorded once.
		if in := parseInboundT(t, data, ""); ids[in.MessageID] {
			continue
		} else {
			ids[in.MessageID] = true
		}
		warnings = append(warnings, data)
	}
	written := delayWarnings("rx", "c0@example.com")
	for _, name := range slices.Sorted(maps.Keys(written)) {
		warnings = append(warnings, written[name])
	}
	f := startStoreReceiver(t, len(warnings)+1)
	for i, data := range warnings {
		rcpt := []string{"bounce+" + f.token(i) + "@" + testReplyDomain}
		if o := sendStd(t, f.addr, "", rcpt, data); o != accepted {
			t.Fatalf("warning %d: %v", i, o)
		}
		if m := f.lastInbound(t); m.Kind != string(KindDelayed) || m.ConsumerID != f.consumers[i] {
			t.Errorf("warning %d recorded as %s for consumer %d: %s", i, m.Kind, m.ConsumerID, m.Detail)
		}
	}
	for i := range warnings {
		if d := f.delivery(t, i); d.Rejected || f.status(t, i) != rewards.StatusActive {
			t.Errorf("consumer %d after a delay warning: rejected %v, %s", i, d.Rejected, f.status(t, i))
		}
		if bs, _ := f.st.ConsumerBounces(context.Background(), f.consumers[i]); len(bs) != 0 {
			t.Errorf("consumer %d: a delay warning counted as %d bounces", i, len(bs))
		}
	}
	last := len(warnings)
	hard := dsnMessage("after-delays", fmt.Sprintf("c%d@example.com", last), "5.1.1", "550 5.1.1 user unknown")
	if o := sendStd(t, f.addr, "", []string{"bounce+" + f.token(last) + "@" + testReplyDomain}, hard); o != accepted {
		t.Fatalf("hard bounce: %v", o)
	}
	if d := f.delivery(t, last); !d.Rejected || f.status(t, last) != rewards.StatusBounced {
		t.Errorf("a hard bounce after the warnings: rejected %v, %s", d.Rejected, f.status(t, last))
	}
}

// TestReceiverCorpusAwardsNothing sends every corpus message to a reply address carrying a
// valid token, so that a message taken for a reply would be acknowledged: only the human
// forwards listed in sisimaiReplies may be.
func TestReceiverCorpusAwardsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("sends the whole corpus over SMTP")
	}
	files := corpusFiles(t)
	tr := startReceiver(t, nil)
	token := tr.k.Encode(7, 42)
	answers := map[int]int{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		data, err := os.ReadFile(files[name])
		if err != nil {
			t.Fatal(err)
		}
		before, _ := tr.acks.snapshot()
		rcpt := []string{"reply+" + token + "@" + testReplyDomain}
		o := sendStd(t, tr.addr, returnPathOf(data), rcpt, data)
		if o.stage == "mail" {
			// A Return-Path go-smtp refuses ("MAILER-DAEMON" alone): the null sender instead.
			o = sendStd(t, tr.addr, "", rcpt, data)
		}
		answers[o.code]++
		after, _ := tr.acks.snapshot()
		if len(after) > len(before) && sisimaiReplies[name] == "" {
			t.Errorf("%s was acknowledged (%v)", name, o)
		}
	}
	t.Logf("answers by code: %v", answers)
}

// TestReceiverDatabaseFull: with the database at its size cap, bounces are answered 451 and
// never 250; every 250 before was committed; once there is room, the retries are taken.
func TestReceiverDatabaseFull(t *testing.T) {
	f := startStoreReceiver(t, 1)
	ctx := context.Background()
	if _, err := f.st.SetMaxPageCount(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rcpt := []string{"postmaster@" + testReplyDomain}
	accepted250, full := 0, -1
	var refused [][]byte
	for i := 0; i < 2000 && len(refused) < 5; i++ {
		msg := dsnMessage(fmt.Sprintf("full%d-%s", i, strings.Repeat("x", 200)), "nobody@example.net", "5.1.1", "550 5.1.1 user unknown")
		o := sendStd(t, f.addr, "", rcpt, msg)
		switch {
		case o == accepted && full >= 0:
			t.Fatalf("message %d answered 250 after the database filled", i)
		case o == accepted:
			accepted250++
		case o.is("end", 451):
			if full < 0 {
				full = i
			}
			refused = append(refused, msg)
		default:
			t.Fatalf("message %d: %v", i, o)
		}
	}
	if full < 0 {
		t.Fatal("the database never filled")
	}
	if n := f.inboundCount(t); n != accepted250 {
		t.Errorf("%d answered 250, %d recorded", accepted250, n)
	}
	if _, err := f.st.SetMaxPageCount(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, msg := range refused {
		if o := sendStd(t, f.addr, "", rcpt, msg); o != accepted {
			t.Fatalf("retry with room: %v", o)
		}
	}
	if n := f.inboundCount(t); n != accepted250+len(refused) {
		t.Errorf("after the retries %d recorded, want %d", n, accepted250+len(refused))
	}
	t.Logf("filled after %d messages; 451 for the next %d; all taken once there was room", full, len(refused))
}

// TestReceiverDatabaseLocked: while another process holds the write lock longer than the
// busy timeout, a bounce is answered 451; once it lets go, the retry is taken, once.
func TestReceiverDatabaseLocked(t *testing.T) {
	f := startStoreReceiver(t, 1)
	ctx := context.Background()
	if err := f.st.SetBusyTimeout(ctx, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite3", "file:"+f.st.Path()+"?_txlock=immediate&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ('lock-test', 'x')`); err != nil {
		t.Fatal(err)
	}
	msg := dsnMessage("locked1", "c0@example.com", "5.1.1", "550 5.1.1 user unknown")
	rcpt := []string{"bounce+" + f.token(0) + "@" + testReplyDomain}
	for range 2 {
		if o := sendStd(t, f.addr, "", rcpt, msg); !o.is("end", 451) {
			t.Fatalf("with the database locked: %v, want 451", o)
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if o := sendStd(t, f.addr, "", rcpt, msg); o != accepted {
		t.Fatalf("after the lock: %v", o)
	}
	if n := f.inboundCount(t); n != 1 {
		t.Errorf("%d recorded, want 1", n)
	}
	if st := f.status(t, 0); st != rewards.StatusBounced {
		t.Errorf("consumer %s after the retried hard bounce", st)
	}
}

func TestClipKeepsRunesWhole(t *testing.T) {
	for _, r := range []string{"a", "é", "€", "😀"} {
		for pad := range 4 {
			s := strings.Repeat("x", pad) + strings.Repeat(r, 400)
			got := clip(s)
			body := strings.TrimSuffix(got, "...")
			if !utf8.ValidString(got) || len(body) > 300 || len(body) < 300-utf8.UTFMax+1 || !strings.HasPrefix(s, body) {
				t.Errorf("%q×400 after %d bytes: %d bytes, valid %v", r, pad, len(got), utf8.ValidString(got))
			}
		}
	}
	// A stray byte early on is kept with the rest, not a reason to drop the text.
	if got := clip("\xff" + strings.Repeat("y", 1000)); len(got) != 303 || !strings.HasPrefix(got, "\xffyyy") {
		t.Errorf("text after an invalid byte clipped to %d bytes", len(got))
	}
	if got := clip("short é"); got != "short é" {
		t.Errorf("short text changed: %q", got)
	}
}

// TestReceiverStopsWhenStoppedAtOnce: a receiver whose context has ended before its SMTP
// server takes the listener still returns (its Shutdown could run first and leave the
// listener open, accepting for ever).
func TestReceiverStopsWhenStoppedAtOnce(t *testing.T) {
	t.Parallel()
	k := inboundKeyring(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r := NewReceiver(ReceiverConfig{ReplyDomain: testReplyDomain, Tokens: k, Acks: &fakeAcks{k: k}, Inbound: &fakeInbound{},
			Unsubscribe: &fakeUnsubscriber{}, ShutdownGrace: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		served := make(chan error, 1)
		go func() { served <- r.Serve(ctx, l) }()
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("start %d: Serve = %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("start %d: Serve did not return though its context had ended", i)
		}
	}
}
