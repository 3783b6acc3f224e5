package mailer

import (
	"bytes"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink is an SMTP server that takes every message and counts it: the far end of the
// benchmark and of tests. With Keep set it also keeps each message; with Answer set it
// can refuse or drop some, as a troubled relay would.
type Sink struct {
	// Keep keeps every accepted message for Messages.
	Keep bool
	// Answer, when set, decides each message after DATA: nil accepts it, an *smtp.SMTPError
	// refuses it, ErrDrop closes the connection without a reply.
	Answer func(from, to string, data []byte) error
	// Rate, when above 0, is the most messages the sink takes in a second, as a provider
	// enforces it: MAIL beyond it is answered 454 4.7.0 Throttling failure.
	Rate int

	server    *smtp.Server
	throttled atomic.Int64
	second    atomic.Int64 // the unix second being counted, and its count
	inSecond  atomic.Int64
	listener  net.Listener
	count     atomic.Int64
	mu        sync.Mutex
	kept      []SinkMessage
}

// SinkMessage is a message the sink accepted.
type SinkMessage struct {
	From, To string
	Data     []byte
}

// ErrDrop makes the sink hang up instead of answering.
var ErrDrop = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "dropped"}

// Start listens on addr (use 127.0.0.1:0) and serves until Close.
func (s *Sink) Start(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.listener = l
	s.server = smtp.NewServer(s)
	s.server.Domain = "sink.localhost"
	s.server.AllowInsecureAuth = true
	s.server.ReadTimeout = 30 * time.Second
	s.server.WriteTimeout = 30 * time.Second
	s.server.MaxMessageBytes = 10 << 20
	// Clients that hang up mid-session are what fault tests do; no need to log each.
	s.server.ErrorLog = log.New(io.Discard, "", 0)
	go s.server.Serve(l)
	return nil
}

// Addr is where the sink listens.
func (s *Sink) Addr() string { return s.listener.Addr().String() }

// URL is the relay URL for the sink.
func (s *Sink) URL() string { return "smtp://" + s.Addr() }

// Count is how many messages the sink has accepted.
func (s *Sink) Count() int64 { return s.count.Load() }

// Throttled is how many MAIL commands the sink answered 454 for going over its Rate.
func (s *Sink) Throttled() int64 { return s.throttled.Load() }

// overRate counts a MAIL and reports whether it goes over Rate.
func (s *Sink) overRate() bool {
	if s.Rate <= 0 {
		return false
	}
	now := time.Now().Unix()
	if old := s.second.Load(); old != now && s.second.CompareAndSwap(old, now) {
		s.inSecond.Store(0)
	}
	if s.inSecond.Add(1) > int64(s.Rate) {
		s.throttled.Add(1)
		return true
	}
	return false
}

// Messages returns the kept messages.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.kept...)
}

// Close stops the server.
func (s *Sink) Close() error { return s.server.Close() }

// NewSession implements smtp.Backend.
func (s *Sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{sink: s, conn: c}, nil
}

type sinkSession struct {
	sink     *Sink
	conn     *smtp.Conn
	from, to string
	buf      bytes.Buffer
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.sink.overRate() {
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Throttling failure: Maximum sending rate exceeded"}
	}
	ss.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error { ss.to = to; return nil }
func (ss *sinkSession) Reset()                                    { ss.from, ss.to = "", "" }
func (ss *sinkSession) Logout() error                             { return nil }

func (ss *sinkSession) Data(r io.Reader) error {
	ss.buf.Reset()
	if _, err := ss.buf.ReadFrom(r); err != nil {
		return err
	}
	if ss.sink.Answer != nil {
		if err := ss.sink.Answer(ss.from, ss.to, ss.buf.Bytes()); err != nil {
			if err == ErrDrop {
				ss.conn.Conn().Close()
			}
			return err
		}
	}
	ss.sink.count.Add(1)
	if ss.sink.Keep {
		msg := SinkMessage{From: ss.from, To: ss.to, Data: bytes.Clone(ss.buf.Bytes())}
		ss.sink.mu.Lock()
		ss.sink.kept = append(ss.sink.kept, msg)
		ss.sink.mu.Unlock()
	}
	return nil
}

// DelayProxy forwards TCP connections to Target and holds the bytes going each way for
// Delay, as a relay that far away would: the benchmark's remote relay. Bytes are held, not
// slowed: a connection's throughput is its own, only its round trips grow.
type DelayProxy struct {
	Target string
	Delay  time.Duration

	listener net.Listener
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// Start listens on addr (use 127.0.0.1:0) and forwards until Close.
func (p *DelayProxy) Start(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.listener, p.conns = l, map[net.Conn]struct{}{}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
			}()
		}
	}()
	return nil
}

// Addr is where the proxy listens.
func (p *DelayProxy) Addr() string { return p.listener.Addr().String() }

// Close stops listening, closes every connection and waits for them.
func (p *DelayProxy) Close() error {
	err := p.listener.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *DelayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *DelayProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *DelayProxy) forward(client net.Conn) {
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	up, err := net.Dial("tcp", p.Target)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.hold(up, client)
	}()
	p.hold(client, up)
	<-done
}

// hold copies src to dst, each read written Delay after it arrived; at src's end it closes
// dst for writing, as the far end would see.
func (p *DelayProxy) hold(dst, src net.Conn) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(p.Delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			src.Close() // the reader above ends, and with it the queue
			for range q {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
