package mailer

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"pointpost/postoffice"
)

// Acknowledger records an acknowledgement; the post office implements it. Returns an error
// wrapping postoffice.ErrBadToken for a token that does not verify,
// postoffice.ErrNoDelivery for one naming no invitation sent, or another error when the
// acknowledgement could not be committed.
type Acknowledger interface {
	Acknowledge(ctx context.Context, token string, channel postoffice.Channel, source string) (*postoffice.AckResult, error)
}

// InboundRecorder keeps the mail the receiver took that earns nothing: bounces, complaints,
// auto-replies, unsubscribe requests and replies without a valid token. The store
// implements it; RecordInbound returns once the record is committed.
type InboundRecorder interface {
	RecordInbound(ctx context.Context, m *InboundRecord) error
}

// Unsubscriber stops all mail to a consumer; the store implements it, and it returns once
// the change is durable.
type Unsubscriber interface {
	Unsubscribe(ctx context.Context, consumerID int64) error
}

// BounceRecorder records a bounce or an abuse report together with its effects, in one
// transaction with the record of the message: a failed delivery's rejected flag, a consumer
// suppressed for a hard bounce, a complaint or too many soft ones. Effects reach only the
// delivery and consumer a verified token names (JobKey, ConsumerID); a record without them
// is kept for review and changes nothing, since DSNs and ARF reports are trivial to forge.
// The store implements it (main adapts the types). Recording a message whose Key was recorded before changes
// nothing and returns nil: a bounce redelivered counts once. Returns an error when nothing
// could be committed.
type BounceRecorder interface {
	RecordBounce(ctx context.Context, b *BounceRecord) error
}

// BounceRecord is a bounce or a complaint with what it says.
type BounceRecord struct {
	// InboundRecord is the message as RecordInbound keeps it; JobKey and ConsumerID name the
	// delivery when a verified token did (the VERP return path's first).
	InboundRecord
	// Key identifies the message across redeliveries: "<Message-ID>", else a hash of it.
	Key string
	// Complaint is set for an abuse report; Failures are then empty.
	Complaint bool
	// Failures are a bounce's failed recipients. Their addresses never name a consumer: at
	// most they pick, among them, the lines about the token's consumer.
	Failures []Failure
	// Reported is the complainant a complaint names; kept for the operator, never acted on.
	Reported string
}

// InboundRecord is one message the receiver kept.
type InboundRecord struct {
	// Kind is an InboundKind: reply, auto-reply, bounce, complaint, unsubscribe, unknown.
	Kind string
	// JobKey and ConsumerID name the delivery a verified token points to; 0 when none did.
	JobKey, ConsumerID int64
	// From is the header From address, To the envelope recipients joined by ", ".
	From, To, Subject string
	// Detail says why it earned nothing, the signal that classified it, and the envelope.
	Detail string
	// Key identifies the message across redeliveries: "<Message-ID>", else a hash of it. A
	// record whose Key was kept before is not kept again.
	Key string
}

// ReceiverConfig configures the receiver 199. Zero fields get the defaults NewReceiver gives.
type ReceiverConfig struct {
	// Addr is where ListenAndServe listens; default 127.0.0.1:2525.
	Addr string
	// ReplyDomain is the only domain mail is accepted for (reply+TOKEN@ReplyDomain);
	// required. Also the name in the greeting.
	ReplyDomain string
	// Mailboxes are further local parts taken at ReplyDomain, such as the From address's,
	// where bounces and replies to From come back.
	Mailboxes []string
	// Tokens verifies the tokens replies carry; required.
	Tokens *postoffice.Keyring
	// Acks records acknowledgements; required.
	Acks Acknowledger
	// Inbound records what is accepted but earns nothing; required.
	Inbound InboundRecorder
	// Unsubscribe acts on mail to the List-Unsubscribe address; required.
	Unsubscribe Unsubscriber
	// Bounces records bounces and complaints with their effects on the delivery a verified
	// token names. When nil they are only recorded through Inbound, and suppress no one.
	Bounces BounceRecorder
	// MaxMessageBytes: larger messages get 552 5.3.4; default 10 MB.
	MaxMessageBytes int64
	// MaxRecipients: more per message get 452 4.5.3; default 10.
	MaxRecipients int
	// MaxConnections: more at once are greeted with 421 4.7.0 and closed; default 100.
	MaxConnections int
	// MaxConnectionsPerClient: more at once from one IP address are greeted with 421 4.7.0
	// and closed, so that one client can't take every slot; default 10.
	MaxConnectionsPerClient int
	// MaxLineLength bounds a command or message line; default 2000 (RFC 5321's 1000,
	// doubled for the clients that exceed it).
	MaxLineLength int
	// ReadTimeout is how long the client may stay silent between reads of a message;
	// default 5 minutes (RFC 5321 section 4.5.3.2).
	ReadTimeout time.Duration
	// IdleTimeout is how long the client may stay silent before its first command and
	// between commands; default 1 minute, never more than ReadTimeout. A public MX meets
	// clients that connect and say nothing.
	IdleTimeout time.Duration
	// TLSCertFile and TLSKeyFile are PEM files of the certificate and key STARTTLS offers;
	// without them STARTTLS is not offered. They are read again when either changes, so a
	// renewed certificate is served from the next connection without a restart.
	TLSCertFile, TLSKeyFile string
	// GetCertificate, when no files are given, gives STARTTLS's certificate: the web
	// server's, obtained by ACME, when the receiver answers for the same name.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// WriteTimeout bounds writing one reply; default 1 minute.
	WriteTimeout time.Duration
	// CommitTimeout bounds an acknowledgement or a record; past it the client gets 451.
	// Default 30 seconds.
	CommitTimeout time.Duration
	// ShutdownGrace is how long a stopping receiver lets the messages in progress finish
	// before it closes their connections; default 10 seconds.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
}

// Receiver is the SMTP server that takes consumers' replies (the receiver 199): it finds the
// token of the invitation a reply answers and acknowledges it, and records the rest.
type Receiver struct {
	cfg ReceiverConfig

	mu      sync.Mutex
	addr    string
	serving bool
}

// NewReceiver returns a receiver; ListenAndServe or Serve runs it.
func NewReceiver(cfg ReceiverConfig) *Receiver {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:2525"
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 10 << 20
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 10
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 100
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = 2000
	}
	if cfg.MaxConnectionsPerClient <= 0 {
		cfg.MaxConnectionsPerClient = 10
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 5 * time.Minute
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Minute
	}
	cfg.IdleTimeout = min(cfg.IdleTimeout, cfg.ReadTimeout)
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 30 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.ReplyDomain = strings.TrimSuffix(strings.TrimSpace(cfg.ReplyDomain), ".")
	cfg.Logger = cfg.Logger.With("component", "receiver")
	return &Receiver{cfg: cfg}
}

// Addr is the address the receiver listens on, or "" before it listens.
func (r *Receiver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// ListenAndServe listens on the configured address and serves until ctx ends.
func (r *Receiver) ListenAndServe(ctx context.Context) error {
	if err := r.check(); err != nil {
		return err
	}
	l, err := net.Listen("tcp", r.cfg.Addr)
	if err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	return r.Serve(ctx, l)
}

func (r *Receiver) check() error {
	switch {
	case r.cfg.ReplyDomain == "":
		return errors.New("receiver: no reply domain")
	case r.cfg.Tokens == nil:
		return errors.New("receiver: no token keyring")
	case r.cfg.Acks == nil:
		return errors.New("receiver: no acknowledger")
	case r.cfg.Inbound == nil:
		return errors.New("receiver: no inbound recorder")
	case r.cfg.Unsubscribe == nil:
		return errors.New("receiver: no unsubscriber")
	case (r.cfg.TLSCertFile == "") != (r.cfg.TLSKeyFile == ""):
		return errors.New("receiver: a TLS certificate needs its key, and a key its certificate")
	}
	return nil
}

// Serve takes connections on l until ctx ends, then stops gracefully: it takes no new
// connection, lets messages in progress finish (up to ShutdownGrace), closes idle
// connections with 421, and returns nil. It closes l. Returns an error if the receiver is
// misconfigured or already serving, or if l fails.
func (r *Receiver) Serve(ctx context.Context, l net.Listener) error {
	if err := r.check(); err != nil {
		l.Close()
		return err
	}
	r.mu.Lock()
	if r.serving {
		r.mu.Unlock()
		l.Close()
		return errors.New("receiver: already serving")
	}
	r.serving, r.addr = true, l.Addr().String()
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.serving, r.addr = false, ""
		r.mu.Unlock()
	}()

	var tlsConfig *tls.Config
	if r.cfg.GetCertificate != nil {
		tlsConfig = &tls.Config{GetCertificate: r.cfg.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	if r.cfg.TLSCertFile != "" {
		certs, err := NewCertFiles(r.cfg.TLSCertFile, r.cfg.TLSKeyFile, r.cfg.Logger)
		if err != nil {
			l.Close()
			return fmt.Errorf("receiver: %w", err)
		}
		tlsConfig = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	cl := &connLimiter{Listener: l, slots: make(chan struct{}, r.cfg.MaxConnections),
		perClient: r.cfg.MaxConnectionsPerClient, clients: map[string]int{},
		conns: map[*limitedConn]struct{}{}, refusal: fmt.Sprintf(
			"421 4.7.0 %s too many connections, try again later\r\n", r.cfg.ReplyDomain),
		clientRefusal: fmt.Sprintf(
			"421 4.7.0 %s too many connections from your address, try again later\r\n", r.cfg.ReplyDomain),
		log: r.cfg.Logger}
	// Acknowledgements outlive a cancelled ctx: a commit under way finishes, and its client
	// hears the answer.
	base := context.WithoutCancel(ctx)
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &receiverSession{r: r, conn: c, ctx: base}, nil
	}))
	s.Domain = r.cfg.ReplyDomain
	s.MaxMessageBytes = r.cfg.MaxMessageBytes
	s.MaxRecipients = r.cfg.MaxRecipients
	s.MaxLineLength = r.cfg.MaxLineLength
	// go-smtp renews this deadline before each command; Data renews ReadTimeout instead.
	s.ReadTimeout = r.cfg.IdleTimeout
	s.WriteTimeout = r.cfg.WriteTimeout
	s.TLSConfig = tlsConfig
	s.ErrorLog = slogPrinter{r.cfg.Logger}

	served := make(chan error, 1)
	go func() { served <- s.Serve(cl) }()
	r.cfg.Logger.Info("receiver listening", "addr", l.Addr().String(), "domain", r.cfg.ReplyDomain)

	select {
	case err := <-served:
		s.Close()
		return fmt.Errorf("receiver: %w", err)
	case <-ctx.Done():
	}

	grace, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownGrace)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(grace) }()
	// go-smtp's Shutdown waits for every connection to end; idle ones are told to go. The
	// kick repeats because go-smtp renews the read deadline before each command.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		cl.kickIdle()
		select {
		case err := <-stopped:
			// A Shutdown that ran before Serve took the listener did not close it.
			cl.Close()
			<-served
			if err != nil {
				r.cfg.Logger.Warn("receiver: connections still open after the grace period", "err", err)
				s.Close()
			}
			r.cfg.Logger.Info("receiver stopped")
			return nil
		case <-tick.C:
		}
	}
}

// slogPrinter takes go-smtp's error log: connections that fail or panic.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.log.Warn("smtp: " + fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...any) { p.log.Warn("smtp: " + strings.TrimSpace(fmt.Sprintln(v...))) }

// connLimiter caps the connections open at once, in all and from one client address. One
// past a cap is answered 421 and closed at once, so that a flood of idle clients can't hold
// the receiver, and the next connection is accepted. It also knows the open connections,
// for shutdown.
type connLimiter struct {
	net.Listener
	slots         chan struct{}
	perClient     int
	refusal       string
	clientRefusal string
	log           *slog.Logger

	mu      sync.Mutex
	conns   map[*limitedConn]struct{}
	clients map[string]int // open connections by client IP
}

func (cl *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := cl.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientIP(c.RemoteAddr())
		cl.mu.Lock()
		crowded := cl.clients[ip] >= cl.perClient
		if !crowded {
			cl.clients[ip]++
		}
		cl.mu.Unlock()
		if crowded {
			cl.log.Warn("receiver: connection refused, too many open from one client", "remote", ip, "max", cl.perClient)
			cl.refuse(c, cl.clientRefusal)
			continue
		}
		select {
		case cl.slots <- struct{}{}:
			lc := &limitedConn{Conn: c, cl: cl, ip: ip}
			cl.mu.Lock()
			cl.conns[lc] = struct{}{}
			cl.mu.Unlock()
			return lc, nil
		default:
			cl.release(ip)
			cl.log.Warn("receiver: connection refused, too many open", "remote", ip, "max", cap(cl.slots))
			cl.refuse(c, cl.refusal)
		}
	}
}

// refuse tells the client why and closes the connection.
func (cl *connLimiter) refuse(c net.Conn, why string) {
	// A fresh socket's send buffer takes the line at once; the deadline is for safety.
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, why)
	c.Close()
}

func (cl *connLimiter) release(ip string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.clients[ip]--; cl.clients[ip] <= 0 {
		delete(cl.clients, ip)
	}
}

// clientIP is the address a connection comes from, without its port.
func clientIP(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// kickIdle makes every connection that is not in the middle of a message time out now;
// go-smtp then answers 421 and closes it.
func (cl *connLimiter) kickIdle() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for c := range cl.conns {
		if !c.busy.Load() {
			_ = c.SetReadDeadline(time.Now())
		}
	}
}

// limitedConn holds a connection slot until it is closed.
type limitedConn struct {
	net.Conn
	cl   *connLimiter
	ip   string
	busy atomic.Bool // taking a message: shutdown lets it finish
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.cl.mu.Lock()
		delete(c.cl.conns, c)
		c.cl.mu.Unlock()
		c.cl.release(c.ip)
		<-c.cl.slots
	})
	return err
}

// receiverSession is one SMTP session; go-smtp calls it from one goroutine.
type receiverSession struct {
	r     *Receiver
	conn  *smtp.Conn
	ctx   context.Context
	from  string
	rcpts []string
}

func (s *receiverSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.rcpts = from, nil
	return nil
}

// Rcpt takes only addresses at the reply domain: the receiver is never a relay. (go-smtp
// itself refuses a path without a domain, the bare "postmaster" included, with 501.)
func (s *receiverSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || !strings.EqualFold(strings.TrimSuffix(to[at+1:], "."), s.r.cfg.ReplyDomain) {
		return errRelayDenied
	}
	if !s.r.issued(to[:at]) {
		return errNoSuchUser
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// errNoSuchUser refuses an address at the reply domain that pointpost never issued.
var errNoSuchUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
	Message: "no such address: pointpost takes replies to the addresses it issued"}

// issued reports whether a local part is one pointpost hands out: the reply and unsubscribe
// addresses carrying a token, the configured Mailboxes (the From address, where bounces
// come back), and the role addresses RFC 5321 and RFC 2142 require.
func (r *Receiver) issued(local string) bool {
	local = strings.ToLower(local)
	for _, prefix := range []string{"reply+", "unsubscribe+", "bounce+"} {
		if strings.HasPrefix(local, prefix) {
			return true
		}
	}
	if local == "reply" || local == "postmaster" || local == "abuse" {
		return true
	}
	for _, m := range r.cfg.Mailboxes {
		if strings.EqualFold(local, m) {
			return true
		}
	}
	return false
}

func (s *receiverSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *receiverSession) Logout() error { return nil }

// Data reads the message and answers only after what it means is committed.
func (s *receiverSession) Data(r io.Reader) error {
	conn := s.conn.Conn()
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn() // after STARTTLS
	}
	if lc, ok := conn.(*limitedConn); ok {
		lc.busy.Store(true)
		defer lc.busy.Store(false)
	}
	data, err := io.ReadAll(&idleReader{r: r, conn: s.conn.Conn(), timeout: s.r.cfg.ReadTimeout})
	if err != nil {
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se):
			return se // 552 5.3.4 past MaxMessageBytes
		case errors.Is(err, smtp.ErrTooLongLine):
			return &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
				Message: fmt.Sprintf("line longer than %d characters", s.r.cfg.MaxLineLength)}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return errDataTimeout
		}
		// The connection failed; whatever is answered is temporary, the client may retry.
		return errTryLater
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.r.cfg.CommitTimeout)
	defer cancel()
	return s.r.deliver(ctx, s.from, s.rcpts, data)
}

// idleReader renews the read deadline before each read: go-smtp sets it once, when the DATA
// command is read, which would bound the whole transfer instead of the client's silence.
type idleReader struct {
	r       io.Reader
	conn    net.Conn
	timeout time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	_ = ir.conn.SetReadDeadline(time.Now().Add(ir.timeout))
	return ir.r.Read(p)
}

// The receiver's refusals.
var (
	errRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay access denied"}
	errNoToken     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no valid pointpost token"}
	errNoDelivery  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such pointpost invitation"}
	errTryLater    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	errDataTimeout = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "timeout waiting for the message"}
)

// deliver decides what a message means and returns the SMTP answer: nil (250) only after
// the acknowledgement or the record is committed.
//
//   - A reply whose token verifies is acknowledged: 250 once Acknowledge returns nil, 550 5.1.1
//     for ErrNoDelivery, 451 4.3.0 for any other error so that the sender retries.
//   - A reply to a reply+ address, or with a token in its subject, none of which verifies:
//     554 5.7.1, so a forged or altered token is refused where the sender sees it.
//   - Auto-replies, bounces, delay warnings, complaints, unsubscribe requests and replies
//     without any token: recorded, 250 (451 if the record could not be committed). They earn nothing. Bounces
//     and complaints go to Bounces when it is set, which applies their effects in the same
//     commit, to the delivery a verified token names and no other: one without a token is
//     recorded for review and logged, and changes nothing. A delay warning is only recorded:
//     it rejects no delivery and counts toward no suppression. Mail to a VERP return path
//     never acknowledges.
//   - A message that can't be parsed, or whose MIME structure is broken: 554 5.6.0.
func (r *Receiver) deliver(ctx context.Context, from string, rcpts []string, data []byte) error {
	log := r.cfg.Logger.With("mail_from", from, "rcpt", strings.Join(rcpts, ","))
	in, err := ParseInbound(data, from, rcpts)
	if err != nil {
		log.Info("inbound message refused", "err", err)
		r.recordQuietly(ctx, log, &InboundRecord{Kind: string(KindUnknown), To: strings.Join(rcpts, ", "),
			Detail: clip("refused 554 5.6.0: " + err.Error() + envelopeDetail(from)), Key: messageKey("", data)})
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: replyText("malformed message: " + err.Error())}
	}
	log = log.With("kind", in.Kind, "message_id", in.MessageID)
	rec := &InboundRecord{Kind: string(in.Kind), From: in.From, To: strings.Join(rcpts, ", "), Subject: clip(in.Subject),
		Key: messageKey(in.MessageID, data)}

	switch in.Kind {
	case KindReply:
		token, job, consumer := r.verify(in.Tokens)
		if token == "" {
			if r.claimsToken(in) {
				log.Info("reply refused: no valid token", "candidates", len(in.Tokens))
				rec.Detail = clip(fmt.Sprintf("refused 554 5.7.1: none of %d token candidates verifies%s", len(in.Tokens), envelopeDetail(from)))
				r.recordQuietly(ctx, log, rec)
				return errNoToken
			}
			rec.Detail = clip("reply without a token" + envelopeDetail(from))
			return r.record(ctx, log, rec)
		}
		log = log.With("job", job, "consumer", consumer)
		// "smtp <Message-ID>": the store counts a reply that comes again under the same
		// Message-ID once.
		res, err := r.cfg.Acks.Acknowledge(ctx, token, postoffice.ChannelReply, messageSource(in.MessageID, data))
		switch {
		case err == nil:
			log.Info("reply acknowledged", "first_receipt", res != nil && res.FirstReceipt, "points", points(res))
			return nil
		case errors.Is(err, postoffice.ErrNoDelivery):
			log.Info("reply refused: no such invitation")
			return errNoDelivery
		default:
			// Including ErrBadToken: our keyring verified the token, so the post office
			// disagreeing is a fault to fix, not the sender's; it retries meanwhile.
			log.Error("acknowledgement not committed", "err", err)
			return errTryLater
		}

	case KindUnknown:
		log.Info("inbound message refused", "reason", in.Reason)
		rec.Detail = clip("refused 554 5.6.0: " + in.Reason + envelopeDetail(from))
		r.recordQuietly(ctx, log, rec)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: replyText("malformed message: " + in.Reason)}

	default:
		// Which delivery it concerns: its own token, else the returned message's.
		if t, job, consumer := r.verify(slices.Concat(in.Tokens, in.OriginalTokens)); t != "" {
			rec.JobKey, rec.ConsumerID = job, consumer
		}
		// A request to the List-Unsubscribe address, carrying its own verified token, takes
		// effect before the 250 (RFC 8058 asks the same of the one-click POST).
		if t, _, consumer := r.verify(in.Tokens); in.Kind == KindUnsubscribe && t != "" {
			if err := r.cfg.Unsubscribe.Unsubscribe(ctx, consumer); err != nil {
				log.Error("unsubscribe not committed", "consumer", consumer, "err", err)
				return errTryLater
			}
			log.Info("consumer unsubscribed by mail", "consumer", consumer)
		}
		rec.Detail = clip(in.Reason + envelopeDetail(from))
		if in.Kind == KindDelayed && len(in.Failures) > 0 {
			// Kept to show the operator; a delay rejects nothing and counts toward nothing.
			rec.Detail = clip(worstFailure(in.Failures).Detail() + "; " + rec.Detail)
		}
		if r.cfg.Bounces != nil && (in.Kind == KindBounce || in.Kind == KindComplaint) {
			return r.recordBounce(ctx, log, in, rec, data)
		}
		if t, job, consumer := r.verify(in.ReturnTokens); t != "" && rec.JobKey == 0 {
			rec.JobKey, rec.ConsumerID = job, consumer
		}
		return r.record(ctx, log, rec)
	}
}

// recordBounce commits a bounce or complaint with its effects; 250 only if that worked. The
// VERP return path names the delivery before any token of the message or the returned one.
func (r *Receiver) recordBounce(ctx context.Context, log *slog.Logger, in *Inbound, rec *InboundRecord, data []byte) error {
	if t, job, consumer := r.verify(in.ReturnTokens); t != "" {
		rec.JobKey, rec.ConsumerID = job, consumer
	}
	b := &BounceRecord{InboundRecord: *rec, Key: messageKey(in.MessageID, data),
		Complaint: in.Kind == KindComplaint, Failures: in.Failures, Reported: in.Reported}
	if len(in.Failures) > 0 {
		b.Detail = clip(worstFailure(in.Failures).Detail() + "; " + rec.Detail)
	}
	if err := r.cfg.Bounces.RecordBounce(ctx, b); err != nil {
		log.Error("bounce not recorded", "err", err)
		return errTryLater
	}
	if b.ConsumerID == 0 {
		// Anyone can send a DSN or an ARF report naming any address; only a token we
		// issued ties one to a delivery. The operator reviews these.
		log.Warn("bounce without a verified token recorded for review; no effect",
			"named", namedAddresses(b), "detail", b.Detail)
		return nil
	}
	log.Info("bounce recorded", "job", b.JobKey, "consumer", b.ConsumerID, "failures", len(b.Failures), "detail", b.Detail)
	return nil
}

// namedAddresses are the addresses a bounce or complaint names, as its text says.
func namedAddresses(b *BounceRecord) []string {
	var out []string
	if b.Reported != "" {
		out = append(out, b.Reported)
	}
	for _, f := range b.Failures {
		if f.Recipient != "" && !contains(out, f.Recipient) {
			out = append(out, f.Recipient)
		}
	}
	return out
}

// messageKey identifies a message across redeliveries: its Message-ID, else its bytes' hash.
func messageKey(messageID string, data []byte) string {
	if id := strings.TrimSpace(messageID); id != "" {
		return clip("<" + id + ">")
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// messageSource is an acknowledgement's source for a message: "smtp <Message-ID>", or
// its hash when it has none.
func messageSource(messageID string, data []byte) string {
	return clip("smtp " + messageKey(messageID, data))
}

// worstFailure is the failure that decides a delivery's fate: hard before soft before none.
func worstFailure(fs []Failure) Failure {
	rank := map[Severity]int{SeverityNone: 0, SeveritySoft: 1, SeverityHard: 2}
	w := fs[0]
	for _, f := range fs[1:] {
		if rank[f.Severity] > rank[w.Severity] {
			w = f
		}
	}
	return w
}

// verify returns the first candidate that verifies, with the delivery it names.
func (r *Receiver) verify(candidates []string) (token string, job, consumer int64) {
	for _, c := range candidates {
		if j, cons, err := r.cfg.Tokens.Decode(c); err == nil {
			return c, j, cons
		}
	}
	return "", 0, 0
}

// claimsToken reports whether a reply says it answers an invitation: it was sent to a
// reply+ address, or its subject carries a token. In-Reply-To and References alone don't
// count: they hold other mailers' ids too.
func (r *Receiver) claimsToken(in *Inbound) bool {
	for _, rcpt := range in.Recipients {
		if kind, _, ok := tokenAddress(rcpt); ok && kind == "reply" {
			return true
		}
	}
	return len(postoffice.FindToken(in.Subject)) > 0
}

// record commits rec; the message is answered 250 only if that worked.
func (r *Receiver) record(ctx context.Context, log *slog.Logger, rec *InboundRecord) error {
	if err := r.cfg.Inbound.RecordInbound(ctx, rec); err != nil {
		log.Error("inbound message not recorded", "err", err)
		return errTryLater
	}
	log.Info("inbound message recorded", "job", rec.JobKey, "consumer", rec.ConsumerID, "detail", rec.Detail)
	return nil
}

// recordQuietly keeps a refused message for the operator; the refusal stands either way.
func (r *Receiver) recordQuietly(ctx context.Context, log *slog.Logger, rec *InboundRecord) {
	if err := r.cfg.Inbound.RecordInbound(ctx, rec); err != nil {
		log.Warn("refused message not recorded", "err", err)
	}
}

func points(res *postoffice.AckResult) int64 {
	if res == nil {
		return 0
	}
	return res.Points()
}

func envelopeDetail(from string) string {
	if from == "" {
		from = "<>"
	}
	return "; envelope from " + from
}

// replyText makes text from a message safe for one SMTP reply line.
func replyText(s string) string {
	s = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f || c >= utf8.RuneSelf {
			return ' '
		}
		return c
	}, s)
	return clip(strings.Join(strings.Fields(s), " "))
}

// clip bounds text taken from a stranger's message before it is stored or echoed, to 300
// bytes and "...". It cuts at a rune's start, so that it never splits a UTF-8 sequence;
// bytes that are no UTF-8 to begin with are kept as they came. (store.clipDetail does the
// same at the store's own bound.)
func clip(s string) string {
	const limit = 300
	if len(s) <= limit {
		return s
	}
	cut := limit
	for back := 0; back < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); back++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = limit // no rune begins near the limit: the bytes are not UTF-8 anyway
	}
	return s[:cut] + "..."
}

// ProviderEvent is a bounce, delay, complaint or unsubscribe a sending provider (SES,
// SendGrid, Postmark, Mailgun) reported by webhook, once its signature was checked.
type ProviderEvent struct {
	// Provider and ID name the event: an event delivered again is counted once.
	Provider, ID string
	// Kind is KindBounce, KindDelayed, KindComplaint or KindUnsubscribe.
	Kind InboundKind
	// Tokens are where the event may carry ours: the custom argument we set, the
	// Message-ID's left part (<TOKEN@reply-domain>), the return path. Tried in order.
	Tokens []string
	// Recipient, Status (RFC 3463, "" when the provider gives none), Diagnostic (its words)
	// and Permanent describe a bounce.
	Recipient, Status, Diagnostic string
	Permanent                     bool
	Subject                       string
}

// TakeProviderEvent applies a provider's event exactly as the DSN or ARF report saying the
// same would: through a verified token only, recorded once per Provider and ID. Returns an
// error when nothing could be committed; the provider then retries.
func (r *Receiver) TakeProviderEvent(ctx context.Context, ev ProviderEvent) error {
	log := r.cfg.Logger.With("provider", ev.Provider, "event", ev.ID, "kind", ev.Kind)
	var cands []string
	for _, t := range ev.Tokens {
		cands = appendTokens(cands, t)
	}
	rec := InboundRecord{Kind: string(ev.Kind), From: ev.Provider, To: ev.Recipient, Subject: clip(ev.Subject),
		Detail: clip(ev.Provider + " webhook event " + ev.ID), Key: clip(ev.Provider + ":" + ev.ID)}
	token, job, consumer := r.verify(cands)
	if token != "" {
		rec.JobKey, rec.ConsumerID = job, consumer
	}
	switch ev.Kind {
	case KindBounce, KindComplaint:
		if r.cfg.Bounces == nil {
			return r.record(ctx, log, &rec)
		}
		b := &BounceRecord{InboundRecord: rec, Key: rec.Key, Complaint: ev.Kind == KindComplaint}
		if ev.Kind == KindComplaint {
			b.Reported = address(ev.Recipient)
		} else {
			f := Failure{Recipient: address(ev.Recipient), Action: "failed", Diagnostic: oneLine(ev.Diagnostic)}
			if c, _, _ := splitStatus(ev.Status); c != 0 {
				f.Status = ev.Status
			}
			refine(&f, []byte(f.Diagnostic))
			if c, _, _ := splitStatus(f.Status); f.Status == "" || (c == 4) == ev.Permanent || c == 2 {
				// The provider's word on permanence wins over a code in its text.
				f.Status = map[bool]string{true: "5.0.0", false: "4.0.0"}[ev.Permanent]
			}
			f.Severity = severityOf(f.Action, f.Status)
			b.Failures = []Failure{f}
			b.Detail = clip(f.Detail() + "; " + rec.Detail)
		}
		if err := r.cfg.Bounces.RecordBounce(ctx, b); err != nil {
			log.Error("provider event not recorded", "err", err)
			return err
		}
		return nil
	case KindUnsubscribe:
		if token != "" {
			if err := r.cfg.Unsubscribe.Unsubscribe(ctx, consumer); err != nil {
				log.Error("unsubscribe not committed", "consumer", consumer, "err", err)
				return err
			}
		}
		return r.record(ctx, log, &rec)
	case KindDelayed:
		rec.Detail = clip(ev.Status + " " + ev.Diagnostic + "; " + rec.Detail)
		return r.record(ctx, log, &rec)
	}
	return fmt.Errorf("provider event kind %q: not bounce, delayed, complaint or unsubscribe", ev.Kind)
}

// TakeInboundParse takes a whole message a provider's inbound-parse webhook forwarded
// (Mailgun routes, SendGrid Inbound Parse, Postmark inbound) through the same path as one
// that came by SMTP. Returns nil once its result is committed or it was refused for good
// (recorded); an error asks the provider to retry.
func (r *Receiver) TakeInboundParse(ctx context.Context, data []byte) error {
	if err := r.takeStored(ctx, data); err != nil && !refusedForGood(err) {
		return err
	}
	return nil
}
