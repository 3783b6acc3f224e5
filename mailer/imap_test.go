package mailer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/mailer/imaptest"
	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
)

// storeAcks acknowledges in the real store, as the post office does.
type storeAcks struct {
	st *store.Store
	k  *postoffice.Keyring
	// after, when set, is called after each committed acknowledgement.
	after func()
}

func (a storeAcks) Acknowledge(ctx context.Context, token string, channel postoffice.Channel, source string) (*postoffice.AckResult, error) {
	job, consumer, err := a.k.Decode(token)
	if err != nil {
		return nil, err
	}
	res, err := a.st.Acknowledge(ctx, postoffice.Ack{JobKey: job, ConsumerID: consumer, Channel: channel, Source: source})
	if err == nil && a.after != nil {
		a.after()
	}
	return res, err
}

// mailboxWorld is a store with a job sent to n consumers whose reply rule awards 10 points
// up to 5 times per invitation, so a reply counted twice would earn twice; a receiver in
// front of it; and Dovecot.
type mailboxWorld struct {
	d         *imaptest.Dovecot
	st        *store.Store
	k         *postoffice.Keyring
	job       int64
	consumers []int64
	acks      *storeAcks
	r         *Receiver
}

func newMailboxWorld(t testing.TB, n int, dovecotExtra string) *mailboxWorld {
	t.Helper()
	d := imaptest.Start(t, dovecotExtra)
	rule := &rewards.AwardRule{Description: "each reply", Type: rewards.RuleReply, Points: 10,
		Frequency: rewards.FrequencyTimes, MaxTimes: 5}
	st, job, consumers := storeWithJob(t, n, postoffice.JobRules{New: []*rewards.AwardRule{rule}})
	k := inboundKeyring(t)
	w := &mailboxWorld{d: d, st: st, k: k, job: job, consumers: consumers, acks: &storeAcks{st: st, k: k}}
	w.r = NewReceiver(ReceiverConfig{ReplyDomain: testReplyDomain, Tokens: k, Acks: w.acks,
		Inbound: storeAdapter{st}, Bounces: storeAdapter{st}, Unsubscribe: st,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return w
}

// messages are, for consumer i: a reply carrying her token; for every fourth, also a hard
// bounce to her VERP return path and a vacation notice.
func (w *mailboxWorld) messages(n int) (all [][]byte, replies, others int) {
	for i := range n {
		tok := w.k.Encode(w.job, w.consumers[i])
		all = append(all, wireCRLF(fmt.Sprintf("From: c%d@example.com\nTo: reply+%s@%s\nSubject: Re: points [#%s]\n"+
			"Message-ID: <reply-%d@example.com>\nDate: Fri, 4 Dec 2026 10:00:00 +0000\n\nYes please.\n", i, tok, testReplyDomain, tok, i)))
		replies++
		if i%4 == 0 {
			b := dsnMessage(fmt.Sprintf("dsn-%d", i), fmt.Sprintf("c%d@example.com", i), "5.1.1", "550 5.1.1 user unknown")
			all = append(all, append([]byte("Return-Path: <>\r\nDelivered-To: bounce+"+tok+"@"+testReplyDomain+"\r\n"), b...))
			all = append(all, wireCRLF(fmt.Sprintf("From: c%d@example.com\nTo: reply+%s@%s\nSubject: Out of office\n"+
				"Auto-Submitted: auto-replied\nMessage-ID: <away-%d@example.com>\n\nAway.\n", i, tok, testReplyDomain, i)))
			others += 2
		}
	}
	return all, replies, others
}

// run runs a mailbox reader until stop is called or the test ends, and returns a channel
// receiving each pass's count of finished messages.
func (w *mailboxWorld) run(t testing.TB, cfg MailboxConfig) (passes <-chan int, stop func()) {
	t.Helper()
	ch := make(chan int, 1000)
	cfg.TLSConfig = w.d.TLS
	cfg.Passed = func(n int) { ch <- n }
	if cfg.URL == "" {
		cfg.URL = w.d.URL(false)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := NewMailbox(cfg, w.r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return ch, stop
}

// waitFinished reads passes until total messages were finished; a pass finishing none
// while some remain is a fault (each pass takes everything there).
func waitFinished(t testing.TB, passes <-chan int, total int) {
	t.Helper()
	got := 0
	for got < total {
		select {
		case n := <-passes:
			got += n
		case <-time.After(2 * time.Minute):
			t.Fatalf("finished %d of %d", got, total)
		}
	}
}

// check holds the store to exactly once: each reply earned 10 points once, each bounce
// rejected its delivery once, each other message was recorded once.
func (w *mailboxWorld) check(t testing.TB, replies, others int) {
	t.Helper()
	ctx := context.Background()
	pts, err := w.st.JobPoints(ctx, []int64{w.job})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(10 * replies); pts[w.job] != want {
		t.Errorf("the job's points: %d, want %d (each reply once)", pts[w.job], want)
	}
	ms, err := w.st.InboundMessages(ctx, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != others {
		t.Errorf("%d inbound messages recorded, want %d", len(ms), others)
		for _, m := range ms[:min(len(ms), 5)] {
			t.Logf("recorded: %s %q %s", m.Kind, m.Subject, m.Detail)
		}
	}
	for i := 0; i < len(w.consumers); i += 4 {
		bs, err := w.st.ConsumerBounces(ctx, w.consumers[i])
		if err != nil || len(bs) != 1 {
			t.Errorf("consumer %d: %d bounces, want 1 (%v)", i, len(bs), err)
		}
	}
}

// TestMailboxReadsOverIMAPS: replies, bounces and auto-replies waiting in the mailbox and
// arriving while the reader waits (IDLE) go through the inbound path once each, and are
// moved to the Processed folder, which the reader creates.
func TestMailboxReadsOverIMAPS(t *testing.T) {
	w := newMailboxWorld(t, 8, "")
	all, replies, others := w.messages(8)
	w.d.Append(t, all[:5]...)
	passes, stop := w.run(t, MailboxConfig{})
	waitFinished(t, passes, 5)
	w.d.Append(t, all[5:]...) // while the reader IDLEs
	waitFinished(t, passes, len(all)-5)
	stop()
	if in, done := w.d.Count(t, "INBOX"), w.d.Count(t, "Processed"); in != 0 || done != len(all) {
		t.Errorf("INBOX %d, Processed %d; want 0 and %d", in, done, len(all))
	}
	w.check(t, replies, others)
}

// TestMailboxSTARTTLSAndExpunge: imap:// on the plain port upgrades with STARTTLS, and with
// Expunge the processed messages are flagged and expunged, no folder made.
func TestMailboxSTARTTLSAndExpunge(t *testing.T) {
	w := newMailboxWorld(t, 4, "")
	all, replies, others := w.messages(4)
	w.d.Append(t, all...)
	passes, stop := w.run(t, MailboxConfig{URL: w.d.URL(true), Expunge: true})
	waitFinished(t, passes, len(all))
	stop()
	if in := w.d.Count(t, "INBOX"); in != 0 {
		t.Errorf("INBOX holds %d after expunging", in)
	}
	c := w.d.Client(t)
	if list, err := c.List("", "Processed", nil).Collect(); err != nil || len(list) != 0 {
		t.Errorf("a Processed folder was made with Expunge: %v %v", list, err)
	}
	w.check(t, replies, others)
}

// TestMailboxCrashBetweenCommitAndMove: the reader stops dead after some results are
// committed and before their messages are moved (as a kill -9 would leave it); a new reader
// takes every message again, and none counts twice.
func TestMailboxCrashBetweenCommitAndMove(t *testing.T) {
	const n = 40
	w := newMailboxWorld(t, n, "")
	all, replies, others := w.messages(n)
	w.d.WriteMaildir(t, all)
	var committed atomic.Int32
	var stopFirst func()
	crashed := make(chan struct{})
	w.acks.after = func() {
		if committed.Add(1) == 15 {
			close(crashed)
		}
	}
	_, stopFirst = w.run(t, MailboxConfig{Workers: 2})
	<-crashed
	stopFirst() // cancels mid-batch: committed results are not moved
	w.acks.after = nil
	if left := w.d.Count(t, "INBOX"); left != len(all) {
		t.Fatalf("the first reader moved messages before the crash (INBOX %d of %d): the test crashes too late", left, len(all))
	}
	passes, stop := w.run(t, MailboxConfig{})
	waitFinished(t, passes, len(all))
	stop()
	if in, done := w.d.Count(t, "INBOX"), w.d.Count(t, "Processed"); in != 0 || done != len(all) {
		t.Errorf("INBOX %d, Processed %d; want 0 and %d", in, done, len(all))
	}
	w.check(t, replies, others)
}

// TestMailboxPollsWithoutIDLE: a server that does not offer IDLE is polled.
func TestMailboxPollsWithoutIDLE(t *testing.T) {
	w := newMailboxWorld(t, 2, "protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ UIDPLUS MOVE\n}\n")
	all, _, _ := w.messages(2)
	passes, stop := w.run(t, MailboxConfig{PollInterval: 10 * time.Millisecond})
	w.d.Append(t, all...)
	waitFinished(t, passes, len(all))
	stop()
	if done := w.d.Count(t, "Processed"); done != len(all) {
		t.Errorf("Processed %d, want %d", done, len(all))
	}
}

// TestNewMailboxRefusesBadURLs: each fault is named.
func TestNewMailboxRefusesBadURLs(t *testing.T) {
	r := NewReceiver(ReceiverConfig{ReplyDomain: testReplyDomain})
	for url, want := range map[string]string{
		"pop3://u:p@host/INBOX": "scheme",
		"imaps://host/INBOX":    "user:password",
		"imaps://u@host/INBOX":  "user:password",
		"imaps://u:p@/INBOX":    "no host",
		"imaps://u:p@h/%zz":     "mailbox URL",
	} {
		if _, err := NewMailbox(MailboxConfig{URL: url}, r); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", url, err, want)
		} else if strings.Contains(err.Error(), ":p@") {
			t.Errorf("%s: the error shows the password: %v", url, err)
		}
	}
}

// BenchmarkMailbox10000 processes 10,000 messages waiting in the mailbox (7,500 replies,
// 1,250 bounces, 1,250 vacation notices), from connecting to the last one moved:
//
//	go test -run '^$' -bench BenchmarkMailbox10000 -benchtime 1x ./mailer/
func BenchmarkMailbox10000(b *testing.B) {
	for range b.N {
		b.StopTimer()
		w := newMailboxWorld(b, 7500, "")
		all, _, _ := w.messages(7500)
		all = all[:10000]
		w.d.WriteMaildir(b, all)
		b.StartTimer()
		passes, stop := w.run(b, MailboxConfig{})
		waitFinished(b, passes, len(all))
		b.StopTimer()
		stop()
		b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "messages/s")
	}
}
