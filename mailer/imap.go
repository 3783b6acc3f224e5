package mailer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
)

// MailboxConfig configures a Mailbox. Zero fields get the defaults NewMailbox gives.
type MailboxConfig struct {
	// URL is imaps://user:password@host[:993]/MAILBOX, or imap://…[:143]/MAILBOX, which
	// must offer STARTTLS; MAILBOX defaults to INBOX. The user and password may be
	// percent-encoded.
	URL string
	// Processed is the folder a message is moved to once its result is committed, created
	// if missing; default "Processed".
	Processed string
	// Expunge flags a processed message \Deleted and expunges it instead of moving it.
	Expunge bool
	// PollInterval is how often a server without IDLE is asked for new mail, and how soon
	// a message whose result could not be committed is tried again; default 1 minute.
	PollInterval time.Duration
	// Workers is how many messages are taken at once; default 8. Acknowledgements commit
	// in groups, so several at once go faster than one after another.
	Workers int
	// TLSConfig, when set, verifies the server (tests give their own roots); default the
	// system's roots and the URL's host name.
	TLSConfig *tls.Config
	// Passed, when set, is called after each pass over the mailbox with the number of
	// messages it finished (moved or expunged).
	Passed func(finished int)
	Logger *slog.Logger
}

// Mailbox reads replies and bounces from an IMAP mailbox, for a team that cannot run an MX:
// each new message goes through the receiver's inbound path as if it had come by SMTP, and
// is moved to the Processed folder only after its result is committed. A crash in between
// reads it again, and the Message-ID keeps it from counting twice.
type Mailbox struct {
	cfg            MailboxConfig
	r              *Receiver
	addr           string
	implicit       bool // imaps: TLS from the start; imap: STARTTLS
	user, password string
	folder         string
}

// NewMailbox returns a mailbox reader feeding r; Run runs it. Returns an error for a URL
// that is not imap:// or imaps:// with a user, a password and a host.
func NewMailbox(cfg MailboxConfig, r *Receiver) (*Mailbox, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL itself holds the password
		}
		return nil, fmt.Errorf("mailbox URL: %w", err)
	}
	m := &Mailbox{cfg: cfg, r: r}
	switch u.Scheme {
	case "imaps":
		m.implicit = true
	case "imap":
	default:
		return nil, fmt.Errorf("mailbox URL %s: the scheme must be imaps:// or imap:// (with STARTTLS)", u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("mailbox URL %s: no host", u.Redacted())
	}
	pass, ok := u.User.Password()
	if u.User == nil || u.User.Username() == "" || !ok {
		return nil, fmt.Errorf("mailbox URL %s: needs user:password@", u.Redacted())
	}
	m.user, m.password = u.User.Username(), pass
	port := u.Port()
	if port == "" {
		port = map[bool]string{true: "993", false: "143"}[m.implicit]
	}
	m.addr = net.JoinHostPort(u.Hostname(), port)
	m.folder = strings.Trim(u.Path, "/")
	if m.folder == "" {
		m.folder = "INBOX"
	}
	if m.cfg.Processed == "" {
		m.cfg.Processed = "Processed"
	}
	if m.cfg.PollInterval <= 0 {
		m.cfg.PollInterval = time.Minute
	}
	if m.cfg.Workers <= 0 {
		m.cfg.Workers = 8
	}
	if m.cfg.Logger == nil {
		m.cfg.Logger = slog.Default()
	}
	m.cfg.Logger = m.cfg.Logger.With("component", "mailbox", "mailbox", u.Hostname()+"/"+m.folder)
	if m.cfg.TLSConfig == nil {
		m.cfg.TLSConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	}
	if r == nil {
		return nil, errors.New("mailbox: no receiver")
	}
	return m, nil
}

// Run reads the mailbox until ctx ends, reconnecting after a failure (waiting 1 s, doubling
// to PollInterval), and returns nil.
func (m *Mailbox) Run(ctx context.Context) error {
	wait := time.Second
	for {
		err := m.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		m.cfg.Logger.Warn("mailbox: connection ended; reconnecting", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, m.cfg.PollInterval)
	}
}

// session connects, logs in and processes the mailbox until ctx ends or the connection fails.
func (m *Mailbox) session(ctx context.Context) error {
	news := make(chan struct{}, 1)
	opts := &imapclient.Options{TLSConfig: m.cfg.TLSConfig, UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case news <- struct{}{}:
				default:
				}
			}
		},
	}}
	var c *imapclient.Client
	var err error
	if m.implicit {
		c, err = imapclient.DialTLS(m.addr, opts)
	} else {
		c, err = imapclient.DialStartTLS(m.addr, opts)
	}
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", m.addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if err := c.Login(m.user, m.password).Wait(); err != nil {
		return fmt.Errorf("logging in as %s: %w", m.user, err)
	}
	if !m.cfg.Expunge {
		if err := m.ensureFolder(c); err != nil {
			return err
		}
	}
	if _, err := c.Select(m.folder, nil).Wait(); err != nil {
		return fmt.Errorf("selecting %s: %w", m.folder, err)
	}
	m.cfg.Logger.Info("mailbox reading", "idle", c.Caps().Has(imap.CapIdle))
	for {
		finished, retry, err := m.pass(ctx, c)
		if m.cfg.Passed != nil && ctx.Err() == nil {
			m.cfg.Passed(finished)
		}
		if err != nil {
			return err
		}
		if err := m.wait(ctx, c, news, retry); err != nil {
			return err
		}
	}
}

// ensureFolder creates the Processed folder unless it exists.
func (m *Mailbox) ensureFolder(c *imapclient.Client) error {
	list, err := c.List("", m.cfg.Processed, nil).Collect()
	if err != nil {
		return fmt.Errorf("listing %s: %w", m.cfg.Processed, err)
	}
	if len(list) > 0 {
		return nil
	}
	if err := c.Create(m.cfg.Processed, nil).Wait(); err != nil {
		return fmt.Errorf("creating %s: %w", m.cfg.Processed, err)
	}
	m.cfg.Logger.Info("mailbox: folder created", "folder", m.cfg.Processed)
	return nil
}

// wait returns when new mail may be there: the server says so (IDLE), or PollInterval
// passed without IDLE or with a message to try again.
func (m *Mailbox) wait(ctx context.Context, c *imapclient.Client, news <-chan struct{}, retry bool) error {
	select {
	case <-news: // arrived while the pass ran
		return nil
	default:
	}
	t := time.NewTimer(m.cfg.PollInterval)
	defer t.Stop()
	if !c.Caps().Has(imap.CapIdle) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	idle, err := c.Idle()
	if err != nil {
		return fmt.Errorf("IDLE: %w", err)
	}
	var timeout <-chan time.Time
	if retry {
		timeout = t.C
	}
	select {
	case <-ctx.Done():
	case <-news:
	case <-timeout:
	case <-c.Closed():
	}
	if err := idle.Close(); err != nil {
		return fmt.Errorf("ending IDLE: %w", err)
	}
	if err := idle.Wait(); err != nil {
		return fmt.Errorf("IDLE: %w", err)
	}
	return ctx.Err()
}

// passBatch is how many messages one FETCH reads: their bodies are held in memory at once.
const passBatch = 100

// pass takes every message in the mailbox not yet finished, in batches, and moves (or
// expunges) those whose result is committed. retry reports a message whose result could
// not be committed, left to be tried again.
func (m *Mailbox) pass(ctx context.Context, c *imapclient.Client) (finished int, retry bool, err error) {
	found, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return 0, false, fmt.Errorf("searching: %w", err)
	}
	uids := found.AllUIDs()
	section := &imap.FetchItemBodySection{Peek: true}
	for start := 0; start < len(uids); start += passBatch {
		batch := uids[start:min(start+passBatch, len(uids))]
		msgs, err := c.Fetch(imap.UIDSetNum(batch...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return finished, retry, fmt.Errorf("fetching: %w", err)
		}
		done, again := m.take(ctx, msgs, section)
		retry = retry || again
		if ctx.Err() != nil {
			// Stopping: what was committed is not moved, and is read again next time.
			return finished, retry, ctx.Err()
		}
		if len(done) == 0 {
			continue
		}
		if err := m.finish(c, done); err != nil {
			return finished, retry, err
		}
		finished += len(done)
	}
	return finished, retry, nil
}

// take runs the messages through the inbound path, Workers at a time, and returns the UIDs
// whose result is final: committed, or refused for good (recorded as refused). again
// reports one to try later.
func (m *Mailbox) take(ctx context.Context, msgs []*imapclient.FetchMessageBuffer, section *imap.FetchItemBodySection) (done []imap.UID, again bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan *imapclient.FetchMessageBuffer)
	for range m.cfg.Workers {
		wg.Go(func() {
			for msg := range next {
				err := m.r.takeStored(ctx, msg.FindBodySection(section))
				final := err == nil || refusedForGood(err)
				mu.Lock()
				if final {
					done = append(done, msg.UID)
				} else {
					again = true
					m.cfg.Logger.Warn("mailbox: message left to try again", "uid", msg.UID, "err", err)
				}
				mu.Unlock()
			}
		})
	}
	for _, msg := range msgs {
		if ctx.Err() != nil {
			break
		}
		next <- msg
	}
	close(next)
	wg.Wait()
	return done, again
}

// refusedForGood reports whether the inbound path's answer is a permanent refusal (5xx):
// the message was recorded as refused, and trying again would refuse it again.
func refusedForGood(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

// finish moves the messages to the Processed folder, or flags and expunges them.
func (m *Mailbox) finish(c *imapclient.Client, uids []imap.UID) error {
	set := imap.UIDSetNum(uids...)
	if !m.cfg.Expunge {
		if _, err := c.Move(set, m.cfg.Processed).Wait(); err != nil {
			return fmt.Errorf("moving to %s: %w", m.cfg.Processed, err)
		}
		return nil
	}
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true,
		Flags: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}}, nil).Close(); err != nil {
		return fmt.Errorf("flagging: %w", err)
	}
	var err error
	if c.Caps().Has(imap.CapUIDPlus) {
		err = c.UIDExpunge(set).Close()
	} else {
		err = c.Expunge().Close()
	}
	if err != nil {
		return fmt.Errorf("expunging: %w", err)
	}
	return nil
}

// takeStored takes a message read from a mailbox through the same path as one that came
// by SMTP, and returns what the SMTP client would have heard (nil for 250). Its envelope is
// what the delivering MTA wrote down: Return-Path for the sender (else From), Delivered-To
// or X-Original-To for the recipients (else To and Cc).
func (r *Receiver) takeStored(ctx context.Context, data []byte) error {
	if int64(len(data)) > r.cfg.MaxMessageBytes {
		r.recordQuietly(ctx, r.cfg.Logger, &InboundRecord{Kind: string(KindUnknown), Key: messageKey("", data),
			Detail: clip(fmt.Sprintf("refused 552 5.3.4: %d bytes, more than %d, read from a mailbox", len(data), r.cfg.MaxMessageBytes))})
		return errTooBig
	}
	from, rcpts := storedEnvelope(data)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.CommitTimeout)
	defer cancel()
	return r.deliver(ctx, from, rcpts, data)
}

var errTooBig = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "message too large"}

// storedEnvelope reads the envelope a delivering MTA left in the header.
func storedEnvelope(data []byte) (from string, rcpts []string) {
	hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(skipMboxSeparator(data))))
	if err != nil {
		return "", nil
	}
	h := gomail.Header{Header: message.Header{Header: hdr}}
	if rp := h.Get("Return-Path"); rp != "" {
		from = address(rp) // "<>" gives "", the null sender
	} else if list, _ := h.AddressList("From"); len(list) > 0 {
		// No delivering MTA wrote it down: the header's sender, not the null one.
		from = list[0].Address
	}
	for _, key := range []string{"Delivered-To", "X-Original-To"} {
		for _, v := range hdr.Values(key) {
			if a := address(v); a != "" && !contains(rcpts, a) {
				rcpts = append(rcpts, a)
			}
		}
		if len(rcpts) > 0 {
			return from, rcpts
		}
	}
	for _, key := range []string{"To", "Cc"} {
		list, _ := h.AddressList(key)
		for _, a := range list {
			if a := strings.ToLower(a.Address); a != "" && !contains(rcpts, a) && len(rcpts) < 20 {
				rcpts = append(rcpts, a)
			}
		}
	}
	return from, rcpts
}
