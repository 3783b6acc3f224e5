package mailer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// groupingRelay is a go-smtp relay that records how the client's commands arrive: each
// read from a connection is one group, the verbs of the commands in it in order. A client
// waiting for each answer sends one command a group; a pipelining one sends MAIL, RCPT and
// DATA (or BDAT) as one. It can hide extensions from its EHLO reply.
type groupingRelay struct {
	net.Listener
	hide []string // EHLO keywords to leave out, e.g. "PIPELINING"

	mu     sync.Mutex
	groups [][]string
}

var commandVerbs = []string{"EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "QUIT", "NOOP", "STARTTLS", "AUTH"}

func (g *groupingRelay) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &groupingConn{Conn: c, g: g}, nil
}

type groupingConn struct {
	net.Conn
	g *groupingRelay
}

func (c *groupingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	var verbs []string
	for line := range strings.SplitSeq(string(p[:n]), "\r\n") {
		verb, _, _ := strings.Cut(line, " ")
		if slices.Contains(commandVerbs, verb) {
			verbs = append(verbs, verb)
		}
	}
	if len(verbs) > 0 {
		c.g.mu.Lock()
		c.g.groups = append(c.g.groups, verbs)
		c.g.mu.Unlock()
	}
	return n, err
}

func (c *groupingConn) Write(p []byte) (int, error) {
	out := p
	for _, kw := range c.g.hide {
		// go-smtp ends its EHLO reply with SIZE, so a hidden keyword is never the last line.
		out = bytes.ReplaceAll(out, []byte("250-"+kw+"\r\n"), nil)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// transactions returns the groups that carry a transaction's commands, as "MAIL RCPT BDAT".
func (g *groupingRelay) transactions() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, verbs := range g.groups {
		if slices.ContainsFunc(verbs, func(v string) bool { return v == "MAIL" || v == "RCPT" || v == "DATA" || v == "BDAT" }) {
			out = append(out, strings.Join(verbs, " "))
		}
	}
	return out
}

func serveGrouping(t *testing.T, backend smtp.Backend, hide ...string) *groupingRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &groupingRelay{Listener: l, hide: hide}
	srv := smtp.NewServer(backend)
	srv.Domain = "relay.localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(g)
	t.Cleanup(func() { srv.Close(); l.Close() })
	return g
}

func TestSMTPSenderPipelinesWhereAdvertised(t *testing.T) {
	cases := []struct {
		name         string
		hide         []string
		noPipelining bool
		want         []string // the groups of two transactions
	}{
		{"pipelining and chunking", nil, false, []string{"MAIL RCPT BDAT", "MAIL RCPT BDAT"}},
		{"pipelining only", []string{"CHUNKING"}, false, []string{"MAIL RCPT DATA", "MAIL RCPT DATA"}},
		{"neither", []string{"PIPELINING", "CHUNKING"}, false,
			[]string{"MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA"}},
		{"chunking without pipelining", []string{"PIPELINING"}, false,
			[]string{"MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA"}},
		{"told not to", nil, true, []string{"MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &Sink{Keep: true}
			g := serveGrouping(t, sink, tc.hide...)
			s, err := NewSMTPSender(RelayConfig{URL: "smtp://" + g.Addr().String(), HelloName: "pointpost.test",
				Timeout: 5 * time.Second, NoPipelining: tc.noPipelining})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var sent []*Envelope
			for i := range 2 {
				env := envelope(fmt.Sprintf("c%d@example.com", i), i)
				if err := s.Send(context.Background(), env); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
				sent = append(sent, env)
			}
			if got := g.transactions(); !slices.Equal(got, tc.want) {
				t.Errorf("commands arrived in groups %q, want %q", got, tc.want)
			}
			kept := sink.Messages()
			if len(kept) != len(sent) {
				t.Fatalf("relay kept %d messages, want %d", len(kept), len(sent))
			}
			for i, m := range kept {
				if m.From != sent[i].From || m.To != sent[i].To || !bytes.Equal(m.Data, sent[i].Data) {
					t.Errorf("message %d arrived as from %q to %q:\n%q\nwant from %q to %q:\n%q",
						i, m.From, m.To, m.Data, sent[i].From, sent[i].To, sent[i].Data)
				}
			}
		})
	}
}

// refusingSession refuses by address at MAIL, RCPT and DATA, and hangs up where told.
type refusingSession struct {
	smtp.Session
	conn *smtp.Conn
	to   string
}

func (s *refusingSession) Mail(from string, opts *smtp.MailOptions) error {
	switch {
	case strings.HasPrefix(from, "banned"):
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}
	case strings.HasPrefix(from, "hangup-mail"):
		s.conn.Conn().Close()
		return errors.New("gone")
	}
	return s.Session.Mail(from, opts)
}

func (s *refusingSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "unknown"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	case strings.HasPrefix(to, "busy"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	case strings.HasPrefix(to, "hangup-rcpt"):
		s.conn.Conn().Close()
		return errors.New("gone")
	}
	s.to = to
	return s.Session.Rcpt(to, opts)
}

func (s *refusingSession) Data(r io.Reader) error {
	if strings.HasPrefix(s.to, "spam") {
		io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused"}
	}
	return s.Session.Data(r)
}

func TestSMTPSenderPipelinedRefusals(t *testing.T) {
	for _, mode := range []struct {
		name string
		hide []string
	}{{"chunking", nil}, {"data", []string{"CHUNKING"}}, {"in turn", []string{"PIPELINING", "CHUNKING"}}} {
		t.Run(mode.name, func(t *testing.T) {
			sink := &Sink{Keep: true}
			opened := 0
			var mu sync.Mutex
			g := serveGrouping(t, smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
				mu.Lock()
				opened++
				mu.Unlock()
				s, err := sink.NewSession(c)
				return &refusingSession{Session: s, conn: c}, err
			}), mode.hide...)
			s := newSender(t, "smtp://"+g.Addr().String(), 5*time.Second)
			steps := []struct {
				from, to    string
				want        Verdict
				code        int
				message     string
				connections int
			}{
				{"a@acme.example", "ok1@example.com", VerdictSent, 0, "", 1},
				{"banned@acme.example", "ok2@example.com", VerdictRejected, 553, "sender refused", 1},
				{"a@acme.example", "unknown@example.com", VerdictRejected, 550, "no such mailbox", 1},
				{"a@acme.example", "busy@example.com", VerdictRetry, 451, "try later", 1},
				{"a@acme.example", "spam@example.com", VerdictRejected, 554, "content refused", 1},
				{"a@acme.example", "ok3@example.com", VerdictSent, 0, "", 1},
				// A hang-up before MAIL's answer on a pooled connection may be one that died
				// idle: the sender tries once more on a fresh one, which hangs up too.
				{"hangup-mail@acme.example", "lost1@example.com", VerdictRetry, 0, "", 2},
				{"a@acme.example", "ok4@example.com", VerdictSent, 0, "", 3},
				{"a@acme.example", "hangup-rcpt@example.com", VerdictRetry, 0, "", 3},
				{"a@acme.example", "ok5@example.com", VerdictSent, 0, "", 4},
			}
			for i, st := range steps {
				env := envelope(st.to, i)
				env.From = st.from
				err := s.Send(context.Background(), env)
				if got := Classify(err); got != st.want {
					t.Errorf("step %d (%s → %s): Classify(%v) = %s, want %s", i, st.from, st.to, err, verdictName(got), verdictName(st.want))
				}
				var se *smtp.SMTPError
				if st.code != 0 && (!errors.As(err, &se) || se.Code != st.code || !strings.Contains(se.Message, st.message)) {
					t.Errorf("step %d (%s → %s): error %v, want SMTP %d %q", i, st.from, st.to, err, st.code, st.message)
				}
				if st.want == VerdictRetry && st.code == 0 && err == nil {
					t.Errorf("step %d: a hang-up gave no error", i)
				}
				mu.Lock()
				n := opened
				mu.Unlock()
				if n != st.connections {
					t.Errorf("step %d (%s → %s): %d connections so far, want %d", i, st.from, st.to, n, st.connections)
				}
			}
			var got []string
			for _, m := range sink.Messages() {
				got = append(got, m.To)
			}
			want := []string{"ok1@example.com", "ok3@example.com", "ok4@example.com", "ok5@example.com"}
			if !slices.Equal(got, want) {
				t.Errorf("relay accepted %q, want %q", got, want)
			}
		})
	}
}

func TestReplyError(t *testing.T) {
	cases := []struct {
		code     int
		msg      string
		enhanced smtp.EnhancedCode
		text     string
	}{
		{550, "5.1.1 no such mailbox", smtp.EnhancedCode{5, 1, 1}, "no such mailbox"},
		{550, "no such mailbox", smtp.EnhancedCode{}, "no such mailbox"},
		{454, "4.7.0 Throttling failure\n4.7.0 try later", smtp.EnhancedCode{4, 7, 0}, "Throttling failure\ntry later"},
		{550, "5.x.1 odd", smtp.EnhancedCode{}, "5.x.1 odd"},
		{421, "", smtp.EnhancedCode{}, ""},
	}
	for _, tc := range cases {
		se := replyError(tc.code, tc.msg)
		if se.Code != tc.code || se.EnhancedCode != tc.enhanced || se.Message != tc.text {
			t.Errorf("replyError(%d, %q) = %d %v %q, want %d %v %q", tc.code, tc.msg, se.Code, se.EnhancedCode, se.Message,
				tc.code, tc.enhanced, tc.text)
		}
	}
}
