package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"pointpost/postoffice"
)

// Envelope is one message ready to send.
type Envelope struct {
	DeliveryID int64
	// From is the envelope sender (MAIL FROM), where bounces go: for an invitation its
	// delivery's own bounce+TOKEN@ReplyDomain, not the From field of the message.
	From    string
	To      string
	Subject string // for the outbox listing
	Data    []byte
	// Route is the route that took the message, set by a Router's Send.
	Route string
	// Pin, when set, is the only route the message may leave by (its job's).
	Pin string
}

// Sender delivers messages; it is safe for concurrent use. Send returns nil when the
// message was accepted (2xx), an *smtp.SMTPError carrying the server's reply when it was
// refused, or another error when the connection failed.
type Sender interface {
	Send(ctx context.Context, env *Envelope) error
	Close() error
}

// Verdict is how a send's error decides the delivery's fate.
type Verdict int

const (
	VerdictSent     Verdict = iota
	VerdictRetry            // 4xx, a timeout or a dropped connection
	VerdictRejected         // 5xx
	// VerdictRelayDown: no session with the relay could be had (refused connection, failed
	// greeting, EHLO, STARTTLS or AUTH). The delivery was not attempted; the mail server
	// pauses instead of charging it a retry.
	VerdictRelayDown
)

// Classify maps a Send error to what happens to the delivery.
func Classify(err error) Verdict {
	if err == nil {
		return VerdictSent
	}
	var re *relayError
	var oe *net.OpError
	if errors.As(err, &re) || errors.As(err, &oe) && oe.Op == "dial" {
		return VerdictRelayDown
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
		return VerdictRejected
	}
	return VerdictRetry
}

// RefusalOf classifies a send's error when it is a relay's reply (4xx or 5xx): its code, its
// RFC 3463 status (the class alone, "5.0.0", when the reply gave none, refined from its text
// for a 5xx: "user unknown" is 5.1.1), and what it says of the address by the table of
// Severity, a refusal of our mail rather than of her address (x.7.x, our sender's 5.1.7 and
// 5.1.8) being policy. A phrase never turns a temporary failure permanent. Anything else
// is the zero Refusal.
func RefusalOf(err error) postoffice.Refusal {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 4 && se.Code/100 != 5 {
		return postoffice.Refusal{}
	}
	class := se.Code / 100
	r := postoffice.Refusal{Reply: se.Code, Status: fmt.Sprintf("%d.0.0", class)}
	if e := se.EnhancedCode; e[0] == class {
		r.Status = fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
	}
	if class == 5 && bareStatus(r.Status) {
		if status, _ := failurePhrase(asciiLower([]byte(se.Message))); status != "" {
			r.Status = status
		}
	}
	switch _, subject, detail := splitStatus(r.Status); {
	case subject == 7, subject == 1 && (detail == 7 || detail == 8):
		r.Class = postoffice.RefusalPolicy
	case severityOf("failed", r.Status) == SeverityHard:
		r.Class = postoffice.RefusalHard
	default:
		r.Class = postoffice.RefusalSoft
	}
	return r
}

// RelayConfig says how to reach an SMTP relay.
type RelayConfig struct {
	// URL is smtp://user:pass@host:port (STARTTLS when offered) or smtps://… (implicit TLS).
	URL string
	// HelloName is the name given in EHLO.
	HelloName string
	// Timeout bounds each SMTP command; the message transfer gets four times as long.
	Timeout time.Duration
	// TLS is used for smtps and STARTTLS; nil means the system defaults for the host.
	TLS *tls.Config
	// NoPipelining sends MAIL, RCPT and DATA one round trip each even to a relay that
	// advertises PIPELINING: for comparison, and for a relay that advertises it wrongly.
	NoPipelining bool
}

// SMTPSender sends through an SMTP relay over persistent connections: each Send borrows an
// idle connection (or dials one) and returns it after a clean transaction, so N concurrent
// senders keep N connections open.
type SMTPSender struct {
	addr     string
	implicit bool
	auth     *url.Userinfo
	cfg      RelayConfig

	// maxIdle, when above 0, is the most idle connections kept: a route throttled down to
	// fewer connections closes the others as they come back.
	maxIdle atomic.Int64

	mu     sync.Mutex
	idle   []*relayConn
	closed bool
}

// NewSMTPSender checks the relay URL. It does not dial until the first Send.
func NewSMTPSender(cfg RelayConfig) (*SMTPSender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL, password and all
		}
		return nil, fmt.Errorf("relay %q: %w", RedactURL(cfg.URL), err)
	}
	s := &SMTPSender{auth: u.User, cfg: cfg}
	switch u.Scheme {
	case "smtp":
		s.addr = hostPort(u, "25")
	case "smtps":
		s.addr, s.implicit = hostPort(u, "465"), true
	default:
		return nil, fmt.Errorf("relay %q: scheme must be smtp or smtps", RedactURL(cfg.URL))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("relay %q: no host", RedactURL(cfg.URL))
	}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = 30 * time.Second
	}
	if s.cfg.HelloName == "" {
		s.cfg.HelloName = "localhost"
	}
	return s, nil
}

func hostPort(u *url.URL, port string) string {
	if u.Port() != "" {
		port = u.Port()
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func (s *SMTPSender) tlsConfig() *tls.Config {
	if s.cfg.TLS != nil {
		return s.cfg.TLS
	}
	host, _, _ := net.SplitHostPort(s.addr)
	return &tls.Config{ServerName: host}
}

// relayError is a failure to open a session with the relay (greeting, EHLO, STARTTLS, AUTH):
// it is about the relay, never about a recipient.
type relayError struct{ err error }

func (e *relayError) Error() string { return "relay session: " + e.err.Error() }
func (e *relayError) Unwrap() error { return e.err }

func (s *SMTPSender) dial(ctx context.Context) (*relayConn, error) {
	d := net.Dialer{Timeout: s.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if s.implicit {
		conn = tls.Client(conn, s.tlsConfig())
	}
	c := newRelayConn(conn, s.cfg.Timeout)
	if err := c.open(s.cfg.HelloName, s.tlsConfig(), s.auth, isLoopback(s.addr)); err != nil {
		c.Close()
		return nil, &relayError{err}
	}
	c.conn.SetDeadline(time.Time{})
	c.use(!s.cfg.NoPipelining)
	return c, nil
}

func (s *SMTPSender) take(ctx context.Context) (c *relayConn, reused bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, errors.New("sender closed")
	}
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, true, nil
	}
	s.mu.Unlock()
	c, err = s.dial(ctx)
	return c, false, err
}

func (s *SMTPSender) give(c *relayConn) {
	s.mu.Lock()
	keep := !s.closed && (s.maxIdle.Load() <= 0 || int64(len(s.idle)) < s.maxIdle.Load())
	if keep {
		s.idle = append(s.idle, c)
	}
	s.mu.Unlock()
	if !keep {
		c.quit()
	}
}

// Send runs one SMTP transaction. A refused MAIL, RCPT or DATA leaves the connection
// reusable after RSET; any other failure closes it, and the next Send dials anew.
func (s *SMTPSender) Send(ctx context.Context, env *Envelope) error {
	c, reused, err := s.take(ctx)
	if err != nil {
		return err
	}
	// Until the message is committed (the final dot), a cancelled ctx aborts the
	// transaction by closing the connection; after it, the relay's answer is awaited, so a
	// message the relay took is never reported as not sent.
	stop := s.guard(ctx, c)
	mailed, err := c.transact(env, stop)
	var se *smtp.SMTPError
	if err != nil && reused && !mailed && ctx.Err() == nil && (!errors.As(err, &se) || se.Code == 421) {
		// The pooled connection died while idle: nothing was sent on it, so try a fresh one.
		stop()
		c.Close()
		if c, err = s.dial(ctx); err != nil {
			return err
		}
		stop = s.guard(ctx, c)
		_, err = c.transact(env, stop)
	}
	if !stop() && err != nil {
		c.Close()
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	c.conn.SetDeadline(time.Time{})
	switch {
	case err == nil:
		s.give(c)
	case errors.As(err, &se) && se.Code != 421 && c.reset() == nil:
		c.conn.SetDeadline(time.Time{})
		s.give(c)
	default:
		c.Close()
	}
	return err
}

// guard closes c if ctx ends before the returned stop is called; stop reports whether it
// was in time, and answers the same if called again.
func (s *SMTPSender) guard(ctx context.Context, c *relayConn) func() bool {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	var once sync.Once
	var ok bool
	return func() bool {
		once.Do(func() { ok = stop() })
		return ok
	}
}

// Close quits every idle connection.
func (s *SMTPSender) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.mu.Unlock()
	for _, c := range idle {
		c.quit()
	}
	return nil
}

// RedactURL hides the password of a relay URL for logs and pages.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable, perhaps for an unescaped character in the password: hide all the user
		// information there may be.
		if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i {
			return raw[:i+3] + "xxxxx" + raw[j:]
		}
		return raw
	}
	return u.Redacted()
}

// isLoopback reports whether addr is on this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
