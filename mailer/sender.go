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

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Envelope is one message ready to send.
type Envelope struct {
	DeliveryID int64
	From       string
	To         string
	Subject    string // for the outbox listing
	Data       []byte
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
)

// Classify maps a Send error to what happens to the delivery.
func Classify(err error) Verdict {
	if err == nil {
		return VerdictSent
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
		return VerdictRejected
	}
	return VerdictRetry
}

// RelayConfig says how to reach an SMTP relay.
type RelayConfig struct {
	// URL is smtp://user:pass@host:port (STARTTLS when offered) or smtps://… (implicit TLS).
	URL string
	// HelloName is the name given in EHLO.
	HelloName string
	// Timeout bounds each SMTP command; the DATA transfer gets four times as long.
	Timeout time.Duration
	// TLS is used for smtps and STARTTLS; nil means the system defaults for the host.
	TLS *tls.Config
}

// SMTPSender sends through an SMTP relay over persistent connections: each Send borrows an
// idle connection (or dials one) and returns it after a clean transaction, so N concurrent
// senders keep N connections open.
type SMTPSender struct {
	addr     string
	implicit bool
	auth     *url.Userinfo
	cfg      RelayConfig

	startTLS atomic.Bool

	mu     sync.Mutex
	idle   []*smtp.Client
	closed bool
}

// NewSMTPSender checks the relay URL. It does not dial until the first Send.
func NewSMTPSender(cfg RelayConfig) (*SMTPSender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("relay %q: %w", cfg.URL, err)
	}
	s := &SMTPSender{auth: u.User, cfg: cfg}
	switch u.Scheme {
	case "smtp":
		s.addr = hostPort(u, "25")
	case "smtps":
		s.addr, s.implicit = hostPort(u, "465"), true
	default:
		return nil, fmt.Errorf("relay %q: scheme must be smtp or smtps", cfg.URL)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("relay %q: no host", cfg.URL)
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

func (s *SMTPSender) dial(ctx context.Context) (*smtp.Client, error) {
	d := net.Dialer{Timeout: s.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	if s.implicit {
		conn = tls.Client(conn, s.tlsConfig())
	}
	var c *smtp.Client
	if s.startTLS.Load() {
		if c, err = smtp.NewClientStartTLS(conn, s.tlsConfig()); err != nil {
			conn.Close()
			return nil, err
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = s.cfg.Timeout
	c.SubmissionTimeout = 4 * s.cfg.Timeout
	if !s.startTLS.Load() {
		if err := c.Hello(s.cfg.HelloName); err != nil {
			c.Close()
			return nil, err
		}
	}
	if ok, _ := c.Extension("STARTTLS"); ok && !s.implicit && !s.startTLS.Load() {
		// The relay offers TLS: from now on every connection starts it.
		c.Close()
		s.startTLS.Store(true)
		return s.dial(ctx)
	}
	if s.auth != nil && s.auth.Username() != "" {
		pass, _ := s.auth.Password()
		if err := c.Auth(sasl.NewPlainClient("", s.auth.Username(), pass)); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (s *SMTPSender) take(ctx context.Context) (*smtp.Client, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("sender closed")
	}
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	return s.dial(ctx)
}

func (s *SMTPSender) give(c *smtp.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	s.idle = append(s.idle, c)
}

// Send runs one SMTP transaction. A refused MAIL, RCPT or DATA leaves the connection
// reusable after RSET; any other failure closes it, and the next Send dials anew.
func (s *SMTPSender) Send(ctx context.Context, env *Envelope) error {
	c, err := s.take(ctx)
	if err != nil {
		return err
	}
	err = transact(c, env)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		s.give(c)
	case errors.As(err, &se) && c.Reset() == nil:
		s.give(c)
	default:
		c.Close()
	}
	return err
}

func transact(c *smtp.Client, env *Envelope) error {
	if err := c.Mail(env.From, nil); err != nil {
		return err
	}
	if err := c.Rcpt(env.To, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(env.Data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// Close quits every idle connection.
func (s *SMTPSender) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.mu.Unlock()
	for _, c := range idle {
		_ = c.Quit()
		c.Close()
	}
	return nil
}

// RedactURL hides the password of a relay URL for logs and pages.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return strings.Replace(u.String(), "%78%78%78%78%78", "xxxxx", 1)
}
