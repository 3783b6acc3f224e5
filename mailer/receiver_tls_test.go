package mailer

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	stdsmtp "net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pointpost/certtest"
	"pointpost/rewards"
)

// sendTLS sends a reply over STARTTLS trusting only cert, and returns the certificate the
// receiver presented.
func sendTLS(t *testing.T, addr string, trust *certtest.Cert, rcpt string, data []byte) *x509.Certificate {
	t.Helper()
	c, err := stdsmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if err := c.StartTLS(&tls.Config{RootCAs: trust.Pool(), ServerName: testReplyDomain}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	state, ok := c.TLSConnectionState()
	if !ok || len(state.PeerCertificates) == 0 {
		t.Fatal("no TLS after STARTTLS")
	}
	if err := c.Mail("joe@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("the reply over TLS was refused: %v", err)
	}
	_ = c.Quit()
	return state.PeerCertificates[0]
}

// TestReceiverSTARTTLS: a reply over STARTTLS is acknowledged; a certificate renewed on
// disk is served from the next connection, without a restart; a renewal that doesn't load
// keeps the previous certificate.
func TestReceiverSTARTTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := certtest.New(t, nil, testReplyDomain, "127.0.0.1")
	first.Write(t, certFile, keyFile)
	r := startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) {
		c.TLSCertFile, c.TLSKeyFile = certFile, keyFile
	})
	tok := r.k.Encode(7, 42)
	rcpt := "reply+" + tok + "@" + testReplyDomain
	reply := func(n int) []byte {
		return wireCRLF(fmt.Sprintf("From: joe@example.com\nSubject: Re: points [#%s]\nMessage-ID: <tls%d@example.com>\n\nyes\n", tok, n))
	}
	if got := sendTLS(t, r.addr, first, rcpt, reply(1)); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("served serial %v, want %v", got.SerialNumber, first.SerialNumber)
	}
	second := certtest.New(t, nil, testReplyDomain, "127.0.0.1")
	second.Write(t, certFile, keyFile)
	if got := sendTLS(t, r.addr, second, rcpt, reply(2)); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("after the renewal, served serial %v, want the renewal's %v", got.SerialNumber, second.SerialNumber)
	}
	// A key that does not match: the receiver keeps serving the second certificate.
	if err := os.WriteFile(keyFile, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := sendTLS(t, r.addr, second, rcpt, reply(3)); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("after a broken renewal, served serial %v, want %v", got.SerialNumber, second.SerialNumber)
	}
	if _, committed := r.acks.snapshot(); len(committed) != 3 {
		t.Errorf("%d replies over TLS acknowledged, want 3", len(committed))
	}
}

// TestReceiverTLSConfigErrors: a certificate without its key, or files that don't load, stop
// the receiver from starting, with the reason.
func TestReceiverTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	certtest.New(t, nil, testReplyDomain, "127.0.0.1").Write(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	for name, c := range map[string]struct{ cert, key, want string }{
		"no key":       {filepath.Join(dir, "cert.pem"), "", "needs its key"},
		"missing file": {filepath.Join(dir, "nope.pem"), filepath.Join(dir, "key.pem"), "nope.pem"},
		"swapped":      {filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), "TLS certificate"},
	} {
		k := inboundKeyring(t)
		r := NewReceiver(ReceiverConfig{ReplyDomain: testReplyDomain, Tokens: k, Acks: &fakeAcks{k: k},
			Inbound: &fakeInbound{}, Unsubscribe: &fakeUnsubscriber{}, TLSCertFile: c.cert, TLSKeyFile: c.key})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = r.Serve(t.Context(), l)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, c.want)
		}
	}
}

// TestReceiverPerClientCap: a client holding many idle connections gets 421 past its cap,
// and another client's reply is still taken; the global cap still holds.
func TestReceiverPerClientCap(t *testing.T) {
	const perClient, held = 5, 200
	r := startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) {
		c.MaxConnectionsPerClient, c.MaxConnections = perClient, perClient+1
	})
	// The greedy client dials from 127.0.0.2, the other from 127.0.0.1.
	greedy := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var open []net.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	greeted, refused := 0, 0
	for range held {
		c, err := greedy.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		line, err := readReply(t, c, bufio.NewReader(c), 5*time.Second)
		if err != nil {
			t.Fatalf("no greeting: %v", err)
		}
		switch {
		case strings.HasPrefix(line, "220 "):
			greeted++
			open = append(open, c) // held open, silent
		case strings.HasPrefix(line, "421 4.7.0 ") && strings.Contains(line, "from your address"):
			refused++
			c.Close()
		default:
			t.Fatalf("greedy client: %q", line)
		}
	}
	if greeted != perClient || refused != held-perClient {
		t.Errorf("greedy client: %d greeted, %d refused; want %d and %d", greeted, refused, perClient, held-perClient)
	}
	// Another client connects (the sixth of the global cap of 6), and a third is refused by
	// the global cap: every slot is held, by connections open now.
	ann, err := stdsmtp.Dial(r.addr)
	if err != nil {
		t.Fatalf("another client, while one holds %d connections: %v", held, err)
	}
	defer ann.Close()
	third := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
	c, err := third.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := readReply(t, c, bufio.NewReader(c), 5*time.Second)
	c.Close()
	if !strings.HasPrefix(line, "421 4.7.0 ") || strings.Contains(line, "from your address") {
		t.Errorf("past the global cap: %q, want the global 421", line)
	}
	// The other client's reply is taken.
	tok := r.k.Encode(7, 42)
	data := wireCRLF("From: ann@example.com\nSubject: Re: points [#" + tok + "]\n\nyes\n")
	if err := ann.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := ann.Mail("ann@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := ann.Rcpt("reply+" + tok + "@" + testReplyDomain); err != nil {
		t.Fatal(err)
	}
	w, err := ann.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("another client's reply while one holds %d connections: %v", held, err)
	}
	if _, committed := r.acks.snapshot(); len(committed) != 1 {
		t.Errorf("%d acknowledged, want 1", len(committed))
	}
}

// TestReceiverCutsOffSilentClient: a client that says nothing after the greeting, or after
// a command, is told 421 and disconnected after IdleTimeout, well before ReadTimeout.
func TestReceiverCutsOffSilentClient(t *testing.T) {
	r := startReceiver(t, func(c *ReceiverConfig, _ *fakeAcks, _ *fakeInbound) {
		c.IdleTimeout, c.ReadTimeout = 50*time.Millisecond, time.Hour
	})
	for _, first := range []string{"", "EHLO client.example"} {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		if line, err := readReply(t, c, br, 5*time.Second); err != nil || !strings.HasPrefix(line, "220 ") {
			t.Fatalf("greeting %q %v", line, err)
		}
		if first != "" {
			fmt.Fprintf(c, "%s\r\n", first)
			for {
				line, err := readReply(t, c, br, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if line[3] == ' ' {
					break
				}
			}
		}
		// The server's deadline ends the wait; 5 s is only the test's bound if it never does.
		line, err := readReply(t, c, br, 5*time.Second)
		if err != nil || !strings.HasPrefix(line, "421 4.4.2 ") {
			t.Errorf("silent after %q: %q %v, want 421 4.4.2", first, line, err)
		}
		c.Close()
	}
}

// TestReceiverTakesProviderEvents: a provider's webhook events act exactly as the DSN or ARF
// report would, through a verified token only, and an event delivered again counts once.
func TestReceiverTakesProviderEvents(t *testing.T) {
	f := startStoreReceiver(t, 5)
	ctx := t.Context()
	msgID := func(i int) string { return "<" + f.token(i) + "@" + testReplyDomain + ">" }
	events := []ProviderEvent{
		{Provider: "sendgrid", ID: "e1", Kind: KindBounce, Tokens: []string{f.token(0)}, Recipient: "c0@example.com",
			Status: "5.1.1", Diagnostic: "550 5.1.1 user unknown", Permanent: true},
		{Provider: "sendgrid", ID: "e1", Kind: KindBounce, Tokens: []string{f.token(0)}, Recipient: "c0@example.com",
			Status: "5.1.1", Permanent: true}, // redelivered
		{Provider: "mailgun", ID: "e2", Kind: KindComplaint, Tokens: []string{"", "<x@y>", msgID(1)}, Recipient: "c1@example.com"},
		{Provider: "postmark", ID: "e3", Kind: KindUnsubscribe, Tokens: []string{f.token(2)}, Recipient: "c2@example.com"},
		{Provider: "mailgun", ID: "e4", Kind: KindDelayed, Tokens: []string{f.token(3)}, Status: "4.2.2", Diagnostic: "mailbox full"},
		{Provider: "mailgun", ID: "e5", Kind: KindBounce, Tokens: []string{"forged"}, Recipient: "c4@example.com", Permanent: true},
	}
	for _, ev := range events {
		if err := f.Receiver.TakeProviderEvent(ctx, ev); err != nil {
			t.Fatalf("%s %s: %v", ev.Provider, ev.ID, err)
		}
	}
	if d := f.delivery(t, 0); !d.Rejected || f.status(t, 0) != rewards.StatusBounced {
		t.Errorf("hard bounce by webhook: rejected %v, %s", d.Rejected, f.status(t, 0))
	}
	if bs, _ := f.st.ConsumerBounces(ctx, f.consumers[0]); len(bs) != 1 {
		t.Errorf("a redelivered event counted %d times", len(bs))
	}
	if st := f.status(t, 1); st != rewards.StatusSuppressed {
		t.Errorf("complaint by webhook: %s", st)
	}
	if st := f.status(t, 2); st != rewards.StatusUnsubscribed {
		t.Errorf("unsubscribe by webhook: %s", st)
	}
	if d := f.delivery(t, 3); d.Rejected || f.status(t, 3) != rewards.StatusActive {
		t.Errorf("a delay by webhook: rejected %v, %s", d.Rejected, f.status(t, 3))
	}
	if d := f.delivery(t, 4); d.Rejected || f.status(t, 4) != rewards.StatusActive {
		t.Errorf("a forged token: rejected %v, %s", d.Rejected, f.status(t, 4))
	}
	if n := f.inboundCount(t); n != 5 {
		t.Errorf("%d events recorded, want 5", n)
	}
}
