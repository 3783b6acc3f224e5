package mailer

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// relayConn is one SMTP session with a relay. go-smtp's client spends a round trip on each
// of MAIL, RCPT and DATA; this one writes them together where the relay advertises
// PIPELINING (RFC 2920), and the message too, as BDAT LAST, where it advertises CHUNKING
// (RFC 3030), then reads each command's answer in order. Replies that refuse come back as
// *smtp.SMTPError, as from go-smtp's client.
type relayConn struct {
	conn    net.Conn
	text    *textproto.Conn
	ext     map[string]string // EHLO keywords, upper case, with their parameters
	timeout time.Duration
	// pipeline and chunk are what this transaction path will use: the relay offers them
	// and the sender was not told to go one command at a time.
	pipeline, chunk bool
}

func newRelayConn(conn net.Conn, timeout time.Duration) *relayConn {
	c := &relayConn{timeout: timeout}
	c.setConn(conn)
	return c
}

func (c *relayConn) setConn(conn net.Conn) {
	c.conn = conn
	c.text = textproto.NewConn(conn)
}

// Close closes the connection without a word.
func (c *relayConn) Close() error { return c.conn.Close() }

// deadline bounds what follows by n command timeouts.
func (c *relayConn) deadline(n int) {
	c.conn.SetDeadline(time.Now().Add(time.Duration(n) * c.timeout))
}

// reply reads one reply. A code other than one of want is returned as an *smtp.SMTPError.
func (c *relayConn) reply(want ...int) (int, string, error) {
	code, msg, err := c.text.ReadResponse(0)
	if err != nil {
		return 0, "", err
	}
	for _, w := range want {
		if code == w {
			return code, msg, nil
		}
	}
	return code, msg, replyError(code, msg)
}

// replyError is a reply as go-smtp's client gives it: the enhanced code moved out of the text.
func replyError(code int, msg string) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: code, Message: msg}
	first, rest, ok := strings.Cut(msg, " ")
	if !ok {
		return se
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return se
	}
	var enhanced smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return se
		}
		enhanced[i] = n
	}
	se.EnhancedCode = enhanced
	// RFC 2034 repeats the enhanced code on every line of a multi-line reply.
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}

// cmd sends one command and waits for its reply.
func (c *relayConn) cmd(line string, want ...int) (int, string, error) {
	c.deadline(1)
	if err := c.text.PrintfLine("%s", line); err != nil {
		return 0, "", err
	}
	return c.reply(want...)
}

// open reads the greeting, says EHLO (HELO to a relay that knows no EHLO), starts TLS when
// the relay offers it and the connection has none, and logs in when auth is set. A password
// goes only over TLS, or to a relay on this machine: a relay whose STARTTLS was stripped on
// the way must not learn it.
func (c *relayConn) open(hello string, tlsConfig *tls.Config, auth *url.Userinfo, loopback bool) error {
	c.deadline(1)
	if _, _, err := c.reply(220); err != nil {
		return err
	}
	if err := c.hello(hello); err != nil {
		return err
	}
	_, isTLS := c.conn.(*tls.Conn)
	if _, ok := c.ext["STARTTLS"]; ok && !isTLS {
		if _, _, err := c.cmd("STARTTLS", 220); err != nil {
			return err
		}
		c.setConn(tls.Client(c.conn, tlsConfig))
		isTLS = true
		if err := c.hello(hello); err != nil { // the EHLO after TLS
			return err
		}
	}
	if auth == nil || auth.Username() == "" {
		return nil
	}
	if !isTLS && !loopback {
		return errors.New("relay offers no TLS: not sending the password in the clear (use smtps:// or a relay with STARTTLS)")
	}
	pass, _ := auth.Password()
	return c.auth(sasl.NewPlainClient("", auth.Username(), pass))
}

func (c *relayConn) hello(name string) error {
	if strings.ContainsAny(name, "\r\n") {
		return errors.New("EHLO name must not contain CR or LF")
	}
	_, msg, err := c.cmd("EHLO "+name, 250)
	var se *smtp.SMTPError
	if errors.As(err, &se) && (se.Code == 500 || se.Code == 502) {
		c.ext = map[string]string{}
		_, _, err = c.cmd("HELO "+name, 250)
		return err
	}
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, line := range lines[1:] {
		kw, param, _ := strings.Cut(line, " ")
		c.ext[strings.ToUpper(kw)] = param
	}
	return nil
}

// auth runs a SASL exchange.
func (c *relayConn) auth(a sasl.Client) error {
	enc := base64.StdEncoding
	mech, resp, err := a.Start()
	if err != nil {
		return err
	}
	line := "AUTH " + mech
	if len(resp) > 0 {
		line += " " + enc.EncodeToString(resp)
	} else if resp != nil {
		line += " ="
	}
	for {
		code, msg, err := c.cmd(line, 235, 334)
		if err != nil || code == 235 {
			return err
		}
		challenge, err := enc.DecodeString(msg)
		if err == nil {
			resp, err = a.Next(challenge)
		}
		if err != nil {
			c.cmd("*") // abort the exchange
			return err
		}
		line = enc.EncodeToString(resp)
	}
}

// use decides, once the session is open, whether transactions are pipelined.
func (c *relayConn) use(pipelining bool) {
	_, p := c.ext["PIPELINING"]
	_, ch := c.ext["CHUNKING"]
	c.pipeline = pipelining && p
	c.chunk = c.pipeline && ch
}

func (c *relayConn) mailCommand(from string) string {
	line := "MAIL FROM:<" + from + ">"
	if _, ok := c.ext["8BITMIME"]; ok {
		line += " BODY=8BITMIME"
	}
	return line
}

// transact runs one transaction; mailed reports whether the relay answered MAIL. commit is
// called before the message is committed (the final dot, or the write that carries BDAT
// LAST) and, returning false, abandons it unsent. The first refusal, in the order of the
// commands, is the transaction's: a refused RCPT after an accepted MAIL is the recipient's.
func (c *relayConn) transact(env *Envelope, commit func() bool) (mailed bool, err error) {
	if strings.ContainsAny(env.From, "\r\n<>") || strings.ContainsAny(env.To, "\r\n<>") {
		return false, errors.New("an envelope address must not contain CR, LF, < or >")
	}
	if !c.pipeline {
		return c.transactInTurn(env, commit)
	}
	w := c.text.W
	fmt.Fprintf(w, "%s\r\nRCPT TO:<%s>\r\n", c.mailCommand(env.From), env.To)
	if c.chunk {
		fmt.Fprintf(w, "BDAT %d LAST\r\n", len(env.Data))
		w.Write(env.Data)
		if !commit() {
			return false, errCancelled
		}
	} else {
		w.WriteString("DATA\r\n")
	}
	if c.chunk {
		c.deadline(4) // the message goes too, and its verdict is awaited
	} else {
		c.deadline(1)
	}
	if err := w.Flush(); err != nil {
		return false, err
	}
	// The answers come in the order of the commands; all are read, so the next transaction
	// starts in step with the relay.
	_, _, mailErr := c.reply(250)
	if closing(mailErr) {
		return false, mailErr // nothing was taken: a fresh connection may try again
	}
	_, _, rcptErr := c.reply(250, 251)
	if closing(rcptErr) {
		return true, rcptErr
	}
	if c.chunk {
		_, _, dataErr := c.reply(250)
		return true, first(mailErr, rcptErr, dataErr)
	}
	_, _, dataErr := c.reply(354)
	if closing(dataErr) {
		return true, dataErr
	}
	if dataErr == nil && (mailErr != nil || rcptErr != nil) {
		// The relay took DATA though it refused the sender or the recipient: an empty
		// message ends it (RFC 2920, 3.1).
		c.deadline(1)
		if _, err := c.text.W.WriteString(".\r\n"); err != nil {
			return true, err
		}
		if err := c.text.W.Flush(); err != nil {
			return true, err
		}
		if _, _, err := c.reply(250); closing(err) {
			return true, err
		}
	}
	if err := first(mailErr, rcptErr, dataErr); err != nil {
		return true, err
	}
	return true, c.data(env.Data, commit)
}

// transactInTurn sends MAIL, RCPT and DATA each after the answer to the one before.
func (c *relayConn) transactInTurn(env *Envelope, commit func() bool) (mailed bool, err error) {
	if _, _, err := c.cmd(c.mailCommand(env.From), 250); err != nil {
		return false, err
	}
	if _, _, err := c.cmd("RCPT TO:<"+env.To+">", 250, 251); err != nil {
		return true, err
	}
	if _, _, err := c.cmd("DATA", 354); err != nil {
		return true, err
	}
	return true, c.data(env.Data, commit)
}

// data sends the message after a 354, dot-stuffed, and reads the relay's verdict, for which
// it waits four command timeouts.
func (c *relayConn) data(msg []byte, commit func() bool) error {
	c.deadline(4)
	dw := c.text.DotWriter()
	if _, err := dw.Write(msg); err != nil {
		return err
	}
	if !commit() {
		return errCancelled
	}
	if err := dw.Close(); err != nil {
		return err
	}
	_, _, err := c.reply(250)
	return err
}

var errCancelled = errors.New("cancelled before the end of data")

// closing reports whether the connection is done after err: it failed, or the relay said
// 421, which it says as it closes.
func closing(err error) bool {
	var se *smtp.SMTPError
	return err != nil && (!errors.As(err, &se) || se.Code == 421)
}

func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// reset ends a refused transaction so the connection can carry the next one.
func (c *relayConn) reset() error {
	_, _, err := c.cmd("RSET", 250)
	return err
}

// quit says goodbye and closes.
func (c *relayConn) quit() {
	c.cmd("QUIT", 221)
	c.conn.Close()
}
