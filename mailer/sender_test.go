package mailer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"pointpost/certtest"
	"pointpost/postoffice"
	"pointpost/store"
)

// countingListener counts the connections a server accepts, and those it has closed.
type countingListener struct {
	net.Listener
	accepted, closed atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.closed.Add(1) })
	return c.Conn.Close()
}

func (l *countingListener) url() string { return "smtp://" + l.Addr().String() }

// serveSMTP runs a go-smtp server for backend on 127.0.0.1:0 until the test ends; options,
// if given, adjust it before it starts.
func serveSMTP(t testing.TB, backend smtp.Backend, options ...func(*smtp.Server)) *countingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	srv := smtp.NewServer(backend)
	srv.Domain = "sink.localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.AllowInsecureAuth = true
	for _, o := range options {
		o(srv)
	}
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(cl)
	t.Cleanup(func() {
		srv.Close()
		cl.Close() // in case Close ran before Serve registered the listener
	})
	return cl
}

// rcptGate refuses some recipients at RCPT, as a relay that knows its mailboxes does.
type rcptGate struct {
	smtp.Session
	refuse func(to string) error
}

func (g *rcptGate) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := g.refuse(to); err != nil {
		return err
	}
	return g.Session.Rcpt(to, opts)
}

func newSender(t testing.TB, url string, timeout time.Duration) *SMTPSender {
	t.Helper()
	s, err := NewSMTPSender(RelayConfig{URL: url, HelloName: "pointpost.test", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func envelope(to string, n int) *Envelope {
	data := fmt.Sprintf("From: <rewards@acme.example>\r\nTo: <%s>\r\nSubject: message %d\r\n\r\n"+
		"line one\r\n.a line starting with a dot\r\n.\r\n..two dots\r\n. \r\nGrüße \xff\r\nlast %d\r\n", to, n, n)
	return &Envelope{DeliveryID: int64(n), From: "rewards@acme.example", To: to, Subject: fmt.Sprint("message ", n), Data: []byte(data)}
}

func TestSMTPSenderDeliversAndReusesConnections(t *testing.T) {
	sink := &Sink{Keep: true}
	l := serveSMTP(t, sink)
	s := newSender(t, l.url(), 5*time.Second)
	ctx := context.Background()

	var sent []*Envelope
	for i := range 10 {
		env := envelope(fmt.Sprintf("c%d@example.com", i), i)
		if err := s.Send(ctx, env); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		sent = append(sent, env)
	}
	if n := l.accepted.Load(); n != 1 {
		t.Errorf("10 sends in a row opened %d connections, want 1", n)
	}
	kept := sink.Messages()
	if len(kept) != len(sent) {
		t.Fatalf("sink kept %d messages, want %d", len(kept), len(sent))
	}
	for i, m := range kept {
		if m.From != sent[i].From || m.To != sent[i].To || !bytes.Equal(m.Data, sent[i].Data) {
			t.Errorf("message %d arrived as from %q to %q:\n%q\nwant from %q to %q:\n%q",
				i, m.From, m.To, m.Data, sent[i].From, sent[i].To, sent[i].Data)
		}
	}

	// Concurrent senders each hold a connection, and no more.
	const goroutines, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if err := s.Send(ctx, envelope(fmt.Sprintf("g%d-%d@example.com", g, i), 100+g*each+i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent send: %v", err)
	}
	if n := sink.Count(); n != 10+goroutines*each {
		t.Errorf("sink counted %d messages, want %d", n, 10+goroutines*each)
	}
	if n := l.accepted.Load(); n < 1 || n > goroutines+1 {
		t.Errorf("%d concurrent senders opened %d connections in all, want at most %d", goroutines, n, goroutines+1)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, envelope("late@example.com", 999)); err == nil {
		t.Error("Send after Close succeeded")
	}
}

func TestSMTPSenderRefusals(t *testing.T) {
	sink := &Sink{Keep: true, Answer: func(from, to string, data []byte) error {
		switch {
		case strings.HasPrefix(to, "later"):
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		case strings.HasPrefix(to, "never"):
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused"}
		case strings.HasPrefix(to, "drop"):
			return ErrDrop
		}
		return nil
	}}
	l := serveSMTP(t, smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s, err := sink.NewSession(c)
		return &rcptGate{Session: s, refuse: func(to string) error {
			switch {
			case strings.HasPrefix(to, "unknown"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
			case strings.HasPrefix(to, "full"):
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
			}
			return nil
		}}, err
	}))
	s := newSender(t, l.url(), 5*time.Second)
	ctx := context.Background()

	steps := []struct {
		to          string
		want        Verdict
		code        int    // the SMTP reply code Send returns; 0 for none
		message     string // part of the error
		connections int64  // opened so far, after this step
	}{
		{"ok1@example.com", VerdictSent, 0, "", 1},
		{"later@example.com", VerdictRetry, 451, "try again later", 1},
		{"ok2@example.com", VerdictSent, 0, "", 1},
		{"never@example.com", VerdictRejected, 554, "message refused", 1},
		{"ok3@example.com", VerdictSent, 0, "", 1},
		{"unknown@example.com", VerdictRejected, 550, "no such mailbox", 1},
		{"ok4@example.com", VerdictSent, 0, "", 1},
		{"full@example.com", VerdictRetry, 452, "mailbox full", 1},
		{"ok5@example.com", VerdictSent, 0, "", 1},
		{"drop@example.com", VerdictRetry, 0, "", 1},
		{"ok6@example.com", VerdictSent, 0, "", 2}, // the dropped connection is dialled anew
		{"ok7@example.com", VerdictSent, 0, "", 2},
	}
	for i, st := range steps {
		err := s.Send(ctx, envelope(st.to, i))
		if got := Classify(err); got != st.want {
			t.Errorf("step %d (%s): Classify(%v) = %s, want %s", i, st.to, err, verdictName(got), verdictName(st.want))
		}
		var se *smtp.SMTPError
		switch {
		case st.code != 0 && (!errors.As(err, &se) || se.Code != st.code || !strings.Contains(err.Error(), st.message)):
			t.Errorf("step %d (%s): error %v, want SMTP %d %q", i, st.to, err, st.code, st.message)
		case st.want == VerdictRetry && st.code == 0 && err == nil:
			t.Errorf("step %d (%s): a dropped connection gave no error", i, st.to)
		}
		if n := l.accepted.Load(); n != st.connections {
			t.Errorf("step %d (%s): %d connections opened so far, want %d", i, st.to, n, st.connections)
		}
	}
	var got []string
	for _, m := range sink.Messages() {
		got = append(got, m.To)
	}
	want := []string{"ok1@example.com", "ok2@example.com", "ok3@example.com", "ok4@example.com", "ok5@example.com",
		"ok6@example.com", "ok7@example.com"}
	if !slices.Equal(got, want) {
		t.Errorf("sink accepted %q, want %q", got, want)
	}
}

// authSession is a sink session that requires PLAIN authentication.
type authSession struct {
	smtp.Session
	password string
}

func (a *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (a *authSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != "pointpost" || password != a.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication credentials invalid"}
		}
		return nil
	}), nil
}

func TestSMTPSenderAuthenticates(t *testing.T) {
	sink := &Sink{Keep: true}
	l := serveSMTP(t, smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s, err := sink.NewSession(c)
		return &authSession{Session: s, password: "s3cret/+:@"}, err
	}))
	ctx := context.Background()
	good := newSender(t, "smtp://pointpost:s3cret%2F+%3A%40@"+l.Addr().String(), 5*time.Second)
	for i := range 3 {
		if err := good.Send(ctx, envelope("a@example.com", i)); err != nil {
			t.Fatalf("send %d with the right password: %v", i, err)
		}
	}
	if n := l.accepted.Load(); n != 1 || sink.Count() != 3 {
		t.Errorf("3 authenticated sends: %d connections, %d messages; want 1 and 3", n, sink.Count())
	}

	// A wrong password is the relay's configuration, not the recipient's fault: the
	// delivery must not be given up as rejected.
	bad := newSender(t, "smtp://pointpost:wrong@"+l.Addr().String(), 5*time.Second)
	err := bad.Send(ctx, envelope("b@example.com", 9))
	if err == nil {
		t.Fatal("send with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "authentication credentials invalid") {
		t.Errorf("error %v does not carry the relay's reply", err)
	}
	if got := Classify(err); got != VerdictRelayDown {
		t.Errorf("Classify(%v) = %s: a failed login is the relay's trouble, not the recipient's; want relay down", err, verdictName(got))
	}
}

func TestSMTPSenderRelayRefusesSession(t *testing.T) {
	// A relay that will not serve us at all (EHLO refused with 554) says nothing about the
	// recipient: the delivery must stay retryable.
	l := serveSMTP(t, smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "access denied for your network"}
	}))
	s := newSender(t, l.url(), 5*time.Second)
	err := s.Send(context.Background(), envelope("a@example.com", 1))
	if err == nil {
		t.Fatal("send through a refusing relay succeeded")
	}
	if got := Classify(err); got != VerdictRelayDown {
		t.Errorf("Classify(%v) = %s: a refused session says nothing of the recipient; want relay down", err, verdictName(got))
	}
}

func TestSMTPSenderRedialsStaleConnection(t *testing.T) {
	// Relays close connections that sit idle. The next Send must not fail (and cost the
	// delivery a retry) because its pooled connection died in the meantime.
	sink := &Sink{Keep: true}
	l := serveSMTP(t, sink, func(srv *smtp.Server) { srv.ReadTimeout = 300 * time.Millisecond })
	s := newSender(t, l.url(), 5*time.Second)
	ctx := context.Background()
	if err := s.Send(ctx, envelope("a@example.com", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the relay did not close the idle connection", func() bool { return l.closed.Load() == 1 })
	if err := s.Send(ctx, envelope("b@example.com", 2)); err != nil {
		t.Errorf("send after the relay closed the idle connection: %v (%s)", err, verdictName(Classify(err)))
	}
	if got := sink.Count(); got != 2 {
		t.Errorf("sink has %d messages, want 2", got)
	}
}

// probeSession notes, for each message, whether it came over TLS and the EHLO name then.
type probeSession struct {
	smtp.Session
	conn *smtp.Conn
	mu   *sync.Mutex
	seen *[]string
}

func (p *probeSession) Data(r io.Reader) error {
	_, isTLS := p.conn.TLSConnectionState()
	p.mu.Lock()
	*p.seen = append(*p.seen, fmt.Sprintf("tls=%v helo=%s", isTLS, p.conn.Hostname()))
	p.mu.Unlock()
	return p.Session.Data(r)
}

func TestSMTPSenderStartTLS(t *testing.T) {
	cert := certtest.New(t, nil, "127.0.0.1") // the relay's
	sink := &Sink{Keep: true}
	var mu sync.Mutex
	var seen []string
	l := serveSMTP(t, smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s, err := sink.NewSession(c)
		return &probeSession{Session: s, conn: c, mu: &mu, seen: &seen}, err
	}), func(srv *smtp.Server) {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert.TLS()}}
	})
	s, err := NewSMTPSender(RelayConfig{URL: l.url(), HelloName: "pointpost.test", Timeout: 5 * time.Second,
		TLS: &tls.Config{RootCAs: cert.Pool(), ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if err := s.Send(context.Background(), envelope("a@example.com", i)); err != nil {
			t.Fatalf("send %d over STARTTLS: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"tls=true helo=pointpost.test", "tls=true helo=pointpost.test", "tls=true helo=pointpost.test"}
	if !slices.Equal(seen, want) {
		t.Errorf("the relay saw %q, want %q", seen, want)
	}
	// One plain connection finds STARTTLS offered; every later one starts TLS at once.
	if n := l.accepted.Load(); n > 2 {
		t.Errorf("3 sends opened %d connections, want at most 2", n)
	}
}

func verdictName(v Verdict) string {
	switch v {
	case VerdictSent:
		return "sent"
	case VerdictRetry:
		return "retry"
	case VerdictRejected:
		return "rejected"
	case VerdictRelayDown:
		return "relay down"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want Verdict
	}{
		{nil, VerdictSent},
		{&smtp.SMTPError{Code: 421}, VerdictRetry},
		{&smtp.SMTPError{Code: 451}, VerdictRetry},
		{&smtp.SMTPError{Code: 500}, VerdictRejected},
		{&smtp.SMTPError{Code: 550}, VerdictRejected},
		{&smtp.SMTPError{Code: 599}, VerdictRejected},
		{fmt.Errorf("data: %w", &smtp.SMTPError{Code: 552}), VerdictRejected},
		{errors.New("connection reset"), VerdictRetry},
		{context.DeadlineExceeded, VerdictRetry},
		{ErrDrop, VerdictRetry},
	}
	for _, tc := range cases {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, verdictName(got), verdictName(tc.want))
		}
	}
}

func TestRefusalOf(t *testing.T) {
	hard, soft, policy := postoffice.RefusalHard, postoffice.RefusalSoft, postoffice.RefusalPolicy
	se := func(code int, e smtp.EnhancedCode, msg string) error {
		return &smtp.SMTPError{Code: code, EnhancedCode: e, Message: msg}
	}
	none := smtp.EnhancedCode{}
	refusal := func(reply int, status string, class postoffice.RefusalClass) postoffice.Refusal {
		return postoffice.Refusal{Reply: reply, Status: status, Class: class}
	}
	cases := []struct {
		err  error
		want postoffice.Refusal
	}{
		{se(550, smtp.EnhancedCode{5, 1, 1}, "<a@b>: Recipient address rejected"), refusal(550, "5.1.1", hard)},
		{se(550, smtp.EnhancedCode{5, 2, 1}, "account disabled"), refusal(550, "5.2.1", hard)},
		{se(550, none, "no such user here"), refusal(550, "5.1.1", hard)},
		{se(550, none, "User Unknown"), refusal(550, "5.1.1", hard)},
		{se(550, none, "mailbox unavailable"), refusal(550, "5.0.0", soft)},
		{se(552, smtp.EnhancedCode{5, 2, 2}, "mailbox full"), refusal(552, "5.2.2", soft)},
		{se(554, smtp.EnhancedCode{5, 7, 1}, "user unknown to our spam filter"), refusal(554, "5.7.1", policy)},
		{se(550, smtp.EnhancedCode{5, 1, 8}, "bad sender domain"), refusal(550, "5.1.8", policy)},
		{se(554, none, "relay 10.5.1.1 said no"), refusal(554, "5.0.0", soft)},
		{se(454, smtp.EnhancedCode{4, 7, 0}, "Throttling failure"), refusal(454, "4.7.0", policy)},
		// A phrase never makes a temporary failure permanent.
		{se(450, none, "user unknown, try later"), refusal(450, "4.0.0", soft)},
		{se(451, smtp.EnhancedCode{4, 3, 0}, "try again later"), refusal(451, "4.3.0", soft)},
		// An enhanced code of another class than the reply's is not believed.
		{se(550, smtp.EnhancedCode{2, 1, 1}, "odd"), refusal(550, "5.0.0", soft)},
		{fmt.Errorf("data: %w", se(550, smtp.EnhancedCode{5, 1, 1}, "gone")), refusal(550, "5.1.1", hard)},
		{nil, postoffice.Refusal{}},
		{errors.New("connection reset"), postoffice.Refusal{}},
		{ErrDrop, refusal(421, "4.4.2", soft)},
	}
	for _, tc := range cases {
		if got := RefusalOf(tc.err); got != tc.want {
			t.Errorf("RefusalOf(%v) = %+v, want %+v", tc.err, got, tc.want)
		}
	}
}

// silentRelay accepts connections and never says a word.
func silentRelay(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return "smtp://" + l.Addr().String()
}

func TestSMTPSenderTimesOutOnSilentRelay(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := newSender(t, silentRelay(t), timeout)
	err := s.Send(context.Background(), envelope("a@example.com", 1))
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Send to a silent relay = %v, want a timeout", err)
	}
	if Classify(err) != VerdictRelayDown {
		t.Errorf("Classify(%v) = %s, want relay down (it never greeted)", err, verdictName(Classify(err)))
	}
}

func TestSMTPSenderTimesOutWaitingForDataReply(t *testing.T) {
	// The relay takes the message and then sits on its reply: DATA gets four times the
	// command timeout, and no more.
	const timeout = 200 * time.Millisecond
	release := make(chan struct{})
	sink := &Sink{Answer: func(from, to string, data []byte) error {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return nil
	}}
	l := serveSMTP(t, sink)
	t.Cleanup(func() { close(release) })
	s := newSender(t, l.url(), timeout)
	start := time.Now()
	err := s.Send(context.Background(), envelope("slow@example.com", 1))
	elapsed := time.Since(start)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Send with an unanswered DATA = %v after %v, want a timeout", err, elapsed)
	}
	if elapsed < 4*timeout {
		t.Errorf("Send gave up after %v, before the DATA timeout of %v", elapsed, 4*timeout)
	}
	if Classify(err) != VerdictRetry {
		t.Errorf("Classify(%v) = %s, want retry", err, verdictName(Classify(err)))
	}
}

func TestSMTPSenderHonoursContext(t *testing.T) {
	// A mail server halting (suspend, stop date, shutdown) cancels the context of the sends in
	// flight; a stuck relay must not hold the halt for the whole command timeout.
	// Ended by the cancel, the send fails on its closed connection; left to run, it would
	// end 30 s later with the command timeout's error.
	s := newSender(t, silentRelay(t), 30*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel) // the halt comes while the relay is silent
	err := s.Send(ctx, envelope("a@example.com", 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("Send with its context cancelled returned %v, want it ended by the cancel, not the timeout", err)
	}
}

func TestSMTPSenderDialRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := newSender(t, "smtp://"+addr, time.Second)
	for i := range 2 { // and again: a failed dial leaves nothing behind
		err := s.Send(context.Background(), envelope("a@example.com", i))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "dial" {
			t.Errorf("Send to a closed port = %v, want a dial error", err)
		}
		if Classify(err) != VerdictRelayDown {
			t.Errorf("Classify(%v) = %s, want relay down", err, verdictName(Classify(err)))
		}
	}
}

func TestNewSMTPSender(t *testing.T) {
	good := []struct {
		url, addr string
		implicit  bool
		user      string
	}{
		{"smtp://relay.example", "relay.example:25", false, ""},
		{"smtp://relay.example:2525", "relay.example:2525", false, ""},
		{"smtps://relay.example", "relay.example:465", true, ""},
		{"smtps://u%40x:p%2Fw@relay.example:4650", "relay.example:4650", true, "u@x"},
		{"smtp://user:pass@[::1]:26", "[::1]:26", false, "user"},
	}
	for _, tc := range good {
		s, err := NewSMTPSender(RelayConfig{URL: tc.url})
		if err != nil {
			t.Errorf("NewSMTPSender(%q): %v", tc.url, err)
			continue
		}
		if s.addr != tc.addr || s.implicit != tc.implicit || s.auth.Username() != tc.user {
			t.Errorf("NewSMTPSender(%q) = addr %q implicit %v user %q, want %q %v %q",
				tc.url, s.addr, s.implicit, s.auth.Username(), tc.addr, tc.implicit, tc.user)
		}
		if s.cfg.Timeout != 30*time.Second || s.cfg.HelloName != "localhost" {
			t.Errorf("NewSMTPSender(%q) defaults: timeout %v, hello %q", tc.url, s.cfg.Timeout, s.cfg.HelloName)
		}
	}
	bad := []struct{ url, why string }{
		{"http://relay.example", "scheme"},
		{"relay.example:25", "scheme"},
		{"", "scheme"},
		{"smtp://", "no host"},
		{"smtp:///path", "no host"},
		{"smtps://user:hunter2@", "no host"},
		{"smtp://user:hunter2@:25", "no host"},
		{"smtp://relay.example:bad", ""},
		{"smtp://user:hunter2@relay.example:bad", ""},
		{"smtp://user:hunter2@relay\x7f.example", ""},
	}
	for _, tc := range bad {
		_, err := NewSMTPSender(RelayConfig{URL: tc.url})
		if err == nil {
			t.Errorf("NewSMTPSender(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("NewSMTPSender(%q) = %v, want it to say %q", tc.url, err, tc.why)
		}
		// The error is logged: it must not carry the relay's password.
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewSMTPSender(%q) error shows the password: %v", tc.url, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"smtp://user:hunter2@relay.example:587", "smtp://user:xxxxx@relay.example:587"},
		{"smtps://u%40x.example:hunter2%2F%3A@relay.example", "smtps://u%40x.example:xxxxx@relay.example"},
		{"smtp://user@relay.example", "smtp://user@relay.example"},
		{"smtp://relay.example:25", "smtp://relay.example:25"},
		{"", ""},
	}
	for _, tc := range cases {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Whatever the URL, the password never shows, even where the URL does not parse (an
	// operator who did not escape a '/' or '#' in it).
	for _, in := range []string{
		"smtp://user:hunter2@relay.example",
		"smtp://user:hunter2/x@relay.example:25",
		"smtp://user:hun#ter2@relay.example:25",
		"smtp://user:hunter2@relay.example:bad",
		"smtp://user:hunter2@relay\x7f.example",
	} {
		if got := RedactURL(in); strings.Contains(got, "hunter2") || strings.Contains(got, "ter2@") {
			t.Errorf("RedactURL(%q) = %q shows the password", in, got)
		}
	}
}

// countingOutboxStore wraps the store to see how the outbox groups its commits; while hold
// is set, the first commit waits for it.
type countingOutboxStore struct {
	OutboxStore
	hold    chan struct{}
	mu      sync.Mutex
	batches []int
	fail    error
}

func (c *countingOutboxStore) AppendOutbox(ctx context.Context, msgs []*postoffice.OutboxMessage) error {
	c.mu.Lock()
	first := len(c.batches) == 0
	c.batches = append(c.batches, len(msgs))
	c.mu.Unlock()
	if first && c.hold != nil {
		<-c.hold
	}
	if c.fail != nil {
		return c.fail
	}
	return c.OutboxStore.AppendOutbox(ctx, msgs)
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "pointpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestOutboxConcurrentSends(t *testing.T) {
	st := openStore(t)
	cs := &countingOutboxStore{OutboxStore: st, hold: make(chan struct{})}
	o := NewOutbox(cs)
	ctx := context.Background()

	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	sent := make([]*Envelope, n)
	for i := range n {
		sent[i] = envelope(fmt.Sprintf("c%d@example.com", i), i+1)
		wg.Go(func() {
			buf := bytes.Clone(sent[i].Data)
			env := *sent[i]
			env.Data = buf
			errs[i] = o.Send(ctx, &env)
			clear(buf) // the worker reuses its buffer once Send returns
		})
	}
	// The first commit is held until every other send waits behind it: they must all go in
	// one more transaction.
	deadline := time.Now().Add(5 * time.Second)
	first := 0
	for {
		cs.mu.Lock()
		started := len(cs.batches)
		if started > 0 {
			first = cs.batches[0]
		}
		cs.mu.Unlock()
		o.mu.Lock()
		waiting := len(o.waiting)
		o.mu.Unlock()
		if started == 1 && first+waiting == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d commits started, %d sends waiting", started, waiting)
		}
		time.Sleep(time.Millisecond)
	}
	close(cs.hold)
	waitGroup(t, &wg, 10*time.Second, "the outbox sends did not all return")
	for i, err := range errs {
		if err != nil {
			t.Errorf("send %d: %v", i, err)
		}
	}
	cs.mu.Lock()
	want := []int{first}
	if first < n {
		want = append(want, n-first)
	}
	if !slices.Equal(cs.batches, want) {
		t.Errorf("commits of %v messages, want %v", cs.batches, want)
	}
	cs.mu.Unlock()

	list, total, err := st.Outbox(ctx, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	if total != n || len(list) != n {
		t.Fatalf("outbox holds %d (listed %d), want %d", total, len(list), n)
	}
	seen := map[int64]bool{}
	for _, m := range list {
		if seen[m.DeliveryID] || m.DeliveryID < 1 || m.DeliveryID > n {
			t.Errorf("outbox message %d has delivery %d twice or out of range", m.ID, m.DeliveryID)
			continue
		}
		seen[m.DeliveryID] = true
		full, err := st.OutboxMessageByID(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := sent[m.DeliveryID-1]
		if full.From != want.From || full.To != want.To || full.Subject != want.Subject || !bytes.Equal(full.Data, want.Data) {
			t.Errorf("outbox message for delivery %d = %q %q %q %q, want %q %q %q %q", m.DeliveryID,
				full.From, full.To, full.Subject, full.Data, want.From, want.To, want.Subject, want.Data)
		}
	}

	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := o.Send(ctx, envelope("late@example.com", 99)); err == nil {
		t.Error("Send after Close succeeded")
	}
	if _, total, _ := st.Outbox(ctx, 1); total != n {
		t.Errorf("outbox holds %d after a send on the closed outbox, want %d", total, n)
	}
}

// waitGroup waits for wg, failing the test if that takes longer than within.
func waitGroup(t *testing.T, wg *sync.WaitGroup, within time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("after %v: %s", within, what)
	}
}

func TestOutboxReportsStoreErrors(t *testing.T) {
	boom := errors.New("disk full")
	o := NewOutbox(&countingOutboxStore{OutboxStore: openStore(t), fail: boom})
	defer o.Close()
	if err := o.Send(context.Background(), envelope("a@example.com", 1)); !errors.Is(err, boom) {
		t.Errorf("Send with a failing store = %v, want %v", err, boom)
	}
}
