package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/mailer"
	"pointpost/mailer/imaptest"
	"pointpost/postoffice"
)

// TestMailboxKilledMidRead: `serve --imap` reads 3,000 replies, bounces and auto-replies
// waiting in a real Dovecot mailbox and is killed with SIGKILL at 5 random moments, some
// while results are committed and their messages not yet moved. Restarted, it finishes:
// every message is in Processed, each reply acknowledged and awarded once, each bounce and
// auto-reply recorded once.
func TestMailboxKilledMidRead(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const n, wantKills = 2000, 5
	d := imaptest.Start(t, "")
	rng := faultRand(t)
	bin := buildBinary(t)

	// The invitations go out first, from a serve in this process.
	sink := &mailer.Sink{}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	e["POINTPOST_FROM"] = "Acme Points <points@pp.example>"
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	key, err := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, rewardCampaign(time.Now(), n)))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, e)
	st := openStore(t, e)
	ctx := context.Background()
	waitFor(t, "the invitations to go out", time.Minute, func() bool { return jobState(t, st, key).State == postoffice.JobDone })
	srv.stop(t)

	// For consumer i: a reply carrying her token; for every fourth, also a hard bounce to
	// her return path and a vacation notice.
	k := keyring(t, st)
	var all [][]byte
	others := 0
	crlf := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }
	for i := range n {
		c, err := st.ConsumerByEmail(ctx, fmt.Sprintf("c%d@example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		tok := k.Encode(key, c.ID)
		all = append(all, crlf(fmt.Sprintf("From: c%d@example.com\nTo: reply+%s@pp.example\nSubject: Re: points [#%s]\n"+
			"Message-ID: <reply-%d@example.com>\n\nYes please.\n", i, tok, tok, i)))
		if i%4 == 0 {
			all = append(all, crlf(fmt.Sprintf("Return-Path: <>\nDelivered-To: bounce+%s@pp.example\n"+
				"From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn-%d@mx.example.org>\n"+
				"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n"+
				"--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n--B\nContent-Type: message/delivery-status\n\n"+
				"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; c%d@example.com\nAction: failed\nStatus: 5.1.1\n"+
				"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n--B--\n", tok, i, i)))
			all = append(all, crlf(fmt.Sprintf("From: c%d@example.com\nTo: reply+%s@pp.example\nSubject: Out of office\n"+
				"Auto-Submitted: auto-replied\nMessage-ID: <away-%d@example.com>\n\nAway.\n", i, tok, i)))
			others += 2
		}
	}
	d.WriteMaildir(t, all)

	e["POINTPOST_IMAP"] = d.URL(false)
	e["SSL_CERT_FILE"] = d.CertFile // the process trusts Dovecot's certificate
	replied := func() int {
		c, err := st.JobCounts(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return c.Received
	}
	stderr := stderrFile(t)
	kills, early := 0, 0
	for kills < wantKills {
		p := startProcess(t, bin, e, stderr)
		// Early in the read, a random moment (connecting, the first fetch); later, once a
		// random share of what is left is committed, so the last kill too lands mid-read.
		if replied() < n/2 && rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
			early++
		} else {
			before := replied()
			spread := max(2*(n-before)/(wantKills-kills+1), 20)
			target := min(before+1+rng.IntN(spread), n-n/10)
			waitFor(t, fmt.Sprintf("kill %d: %d replies committed", kills+1, target), 2*time.Minute,
				func() bool { return replied() >= target })
		}
		p.kill(t)
		kills++
		t.Logf("kill %d: %d replies committed, %d of %d messages moved", kills, replied(), d.Count(t, "Processed"), len(all))
	}
	if got := replied(); got >= n {
		t.Fatalf("every reply was committed before the last kill (%d): the kills came too late", got)
	}
	p := startProcess(t, bin, e, stderr)
	defer p.stop()
	waitFor(t, "every reply to be committed", 2*time.Minute, func() bool { return replied() == n })
	waitFor(t, "every message to be moved", time.Minute, func() bool {
		return d.Count(t, "INBOX") == 0 && d.Count(t, "Processed") == len(all)
	})

	pts, err := st.JobPoints(ctx, []int64{key})
	if err != nil {
		t.Fatal(err)
	}
	if pts[key] != 10*n {
		t.Errorf("the job's points: %d, want %d (each reply's 10 once)", pts[key], 10*n)
	}
	for i := range n {
		email := fmt.Sprintf("c%d@example.com", i)
		tl, err := st.Timeline(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		if len(tl.Acknowledgements) != 1 {
			t.Errorf("%s: %d acknowledgements, want her reply's one", email, len(tl.Acknowledgements))
		}
		if i%4 == 0 {
			if bs, err := st.ConsumerBounces(ctx, tl.Consumer.ID); err != nil || len(bs) != 1 {
				t.Errorf("%s: %d bounces, want 1 (%v)", email, len(bs), err)
			}
		}
	}
	ms, err := st.InboundMessages(ctx, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != others {
		t.Errorf("%d inbound messages recorded, want %d (each bounce and auto-reply once)", len(ms), others)
	}
	t.Logf("%d messages: %d kills survived (%d of them in the first 800ms of a start)", len(all), kills, early)
}
