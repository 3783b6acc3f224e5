package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	netsmtp "net/smtp"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/net/html"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/web/pagetest"
)

// rewardCampaign is a campaign whose replies earn 10 points and whose Submit earns 5.
func rewardCampaign(now time.Time, count int) string {
	c := campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), count, `{}`)
	return strings.Replace(c, `"client_count"`, `"rules": [{"type": "reply", "points": 10, "frequency": "once"},
		{"type": "click", "points": 5, "frequency": "once", "success_url": "https://acme.example/thanks"}], "client_count"`, 1)
}

// sentInvitations runs a reward campaign to n consumers against a sink and returns the
// messages by recipient, with the server still running.
func sentInvitations(t *testing.T, n int) (env, *server, *mailer.Sink, int64) {
	t.Helper()
	sink := &mailer.Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e := newEnv(t, sink.URL())
	e["POINTPOST_FROM"] = "Acme Points <points@pp.example>"
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, rewardCampaign(time.Now(), n)))), 10, 64)
	srv := startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the invitations to go out", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })
	return e, srv, sink, key
}

func timeline(t *testing.T, e env, email string) *rewards.Timeline {
	t.Helper()
	var tl rewards.Timeline
	if err := json.Unmarshal([]byte(runOK(t, e, "consumer", email, "--json")), &tl); err != nil {
		t.Fatal(err)
	}
	return &tl
}

// reply answers an invitation over SMTP as a mail client would: Re: subject, In-Reply-To.
func reply(t *testing.T, smtpAddr string, m received, from string) error {
	t.Helper()
	msg := fmt.Sprintf("From: %s\r\nTo: points@pp.example\r\nSubject: Re: %s\r\nMessage-ID: <r%d@example.com>\r\n\r\nYes please!\r\n",
		from, m.subject, time.Now().UnixNano())
	tokens := postoffice.FindToken(m.subject)
	return netsmtp.SendMail(smtpAddr, nil, from, []string{"reply+" + tokens[0] + "@pp.example"}, []byte(msg))
}

// TestReplyEarnsPointsOnce: a reply over real SMTP sets the received flag, accrues the reply
// rule's points, and settlement posts them; five more replies and 50 parallel ones award
// nothing more.
func TestReplyEarnsPointsOnce(t *testing.T) {
	e, srv, sink, key := sentInvitations(t, 4)
	got := parseSink(t, sink.Messages())
	m := got["c0@example.com"][0]
	for i := 0; i < 5; i++ {
		if err := reply(t, srv.smtp, m, "c0@example.com"); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := reply(t, srv.smtp, m, "c0@example.com"); err != nil {
				t.Errorf("parallel reply: %v", err)
			}
		}()
	}
	wg.Wait()
	st := openStore(t, e)
	waitFor(t, "settlement", 10*time.Second, func() bool { return timeline(t, e, "c0@example.com").Balance == 10 })
	tl := timeline(t, e, "c0@example.com")
	if len(tl.Acknowledgements) != 55 || tl.Pending != 0 || tl.LedgerBalance != 10 {
		t.Errorf("timeline: %d acknowledgements, pending %d, ledger %d", len(tl.Acknowledgements), tl.Pending, tl.LedgerBalance)
	}
	awarded := 0
	for _, a := range tl.Acknowledgements {
		if a.Awarded {
			awarded++
		}
	}
	if awarded != 1 {
		t.Errorf("%d acknowledgements awarded, want 1", awarded)
	}
	c, _ := st.ConsumerByEmail(context.Background(), "c0@example.com")
	d, _ := st.Delivery(context.Background(), key, c.ID)
	if !d.Received {
		t.Error("received flag not set")
	}
	if sum, err := st.LedgerSum(context.Background()); err != nil || sum != 0 {
		t.Errorf("ledger sums to %d, %v", sum, err)
	}
	// A forged token is refused with a clear answer and changes nothing.
	forged := m
	tok := postoffice.FindToken(m.subject)[0]
	forged.subject = strings.Replace(m.subject, tok, tok[:10]+"x"+tok[11:], 1)
	err := netsmtp.SendMail(srv.smtp, nil, "c1@example.com", []string{"reply+" + tok[:10] + "x" + tok[11:] + "@pp.example"},
		[]byte("Subject: Re: "+forged.subject+"\r\n\r\nhi\r\n"))
	var refusal *textproto.Error
	if !errors.As(err, &refusal) || refusal.Code != 554 {
		t.Errorf("forged token answered %v, want 554", err)
	}
	if tl := timeline(t, e, "c1@example.com"); len(tl.Acknowledgements) != 0 {
		t.Errorf("forged reply recorded %d acknowledgements", len(tl.Acknowledgements))
	}

	// The same through go-smtp's client: c2 replies and earns, once.
	c2 := got["c2@example.com"][0]
	tok2 := postoffice.FindToken(c2.subject)[0]
	for i := 0; i < 2; i++ {
		msg := "From: c2@example.com\r\nSubject: RE: " + c2.subject + "\r\n\r\nsure\r\n"
		if err := sendWithGoSMTP(srv.smtp, "c2@example.com", "reply+"+tok2+"@pp.example", msg); err != nil {
			t.Fatalf("go-smtp reply: %v", err)
		}
	}
	waitFor(t, "c2's settlement", 10*time.Second, func() bool { return timeline(t, e, "c2@example.com").Balance == 10 })

	// Mail to the List-Unsubscribe address unsubscribes her, and earns nothing.
	c3 := got["c3@example.com"][0]
	tok3 := postoffice.FindToken(c3.subject)[0]
	if err := netsmtp.SendMail(srv.smtp, nil, "c3@example.com", []string{"unsubscribe+" + tok3 + "@pp.example"},
		[]byte("Subject: unsubscribe\r\n\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if tl := timeline(t, e, "c3@example.com"); tl.Consumer.Status != rewards.StatusUnsubscribed || len(tl.Acknowledgements) != 0 {
		t.Errorf("after mail to unsubscribe+: status %s, %d acknowledgements", tl.Consumer.Status, len(tl.Acknowledgements))
	}
}

// TestSubmitEarnsPointsOnce: GET and HEAD of every link award nothing; the Submit POST awards
// the click rule once, even 50 at a time.
func TestSubmitEarnsPointsOnce(t *testing.T) {
	e, srv, sink, _ := sentInvitations(t, 3)
	m := parseSink(t, sink.Messages())["c1@example.com"][0]
	tok := postoffice.FindToken(m.subject)[0]
	base := "http://" + srv.addr
	for _, path := range []string{"/a/", "/i/", "/u/", "/account/"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(method, base+path+tok, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s: %d", method, path, resp.StatusCode)
			}
		}
	}
	if tl := timeline(t, e, "c1@example.com"); len(tl.Acknowledgements) != 0 || tl.Consumer.Status != rewards.StatusActive {
		t.Fatalf("links fetched without a POST recorded %d acknowledgements (status %s)", len(tl.Acknowledgements), tl.Consumer.Status)
	}
	var wg sync.WaitGroup
	pages := make([]string, 50)
	for i := range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.PostForm(base+"/i/"+tok, url.Values{})
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			doc, err := html.Parse(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("POST: %d %v", resp.StatusCode, err)
				return
			}
			pages[i] = pagetest.Text(doc)
		}()
	}
	wg.Wait()
	earned := 0
	for _, p := range pages {
		if strings.Contains(p, "5 points") {
			earned++
		}
	}
	if earned != 1 {
		t.Errorf("%d of 50 thank-you pages say 5 points were earned, want 1", earned)
	}
	waitFor(t, "settlement", 10*time.Second, func() bool { return timeline(t, e, "c1@example.com").Balance == 5 })
}

// sendWithGoSMTP sends one message with go-smtp's client, without TLS.
func sendWithGoSMTP(addr, from, to, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// TestRedeemWithTheMailedCode: in the served program, a consumer's token alone redeems
// nothing; the code the relay carries to her address does, once.
func TestRedeemWithTheMailedCode(t *testing.T) {
	e, srv, sink, _ := sentInvitations(t, 3)
	tok := postoffice.FindToken(parseSink(t, sink.Messages())["c1@example.com"][0].subject)[0]
	base := "http://" + srv.addr
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) (int, string) {
		t.Helper()
		resp, err := client.PostForm(base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, _ := post("/i/"+tok, url.Values{}); status != http.StatusOK {
		t.Fatalf("Submit: %d", status)
	}
	waitFor(t, "settlement", 10*time.Second, func() bool { return timeline(t, e, "c1@example.com").Balance == 5 })
	item := strings.TrimSpace(runOK(t, e, "catalog", "add", "Mug", "5", "2"))

	status, page := post("/account/"+tok+"/redeem", url.Values{"item": {item}})
	action := regexp.MustCompile(`action="(/account/[^"]+/redeem/\d+)"`).FindStringSubmatch(page)
	if status != http.StatusOK || action == nil {
		t.Fatalf("Redeem: %d, no code form:\n%.500s", status, page)
	}
	if b := timeline(t, e, "c1@example.com").Balance; b != 5 {
		t.Fatalf("balance %d after Redeem without the code, want 5", b)
	}
	var code string
	for _, m := range parseSink(t, sink.Messages())["c1@example.com"] {
		if m.subject == "Your code to redeem your points" {
			code = regexp.MustCompile(`\b\d{4} \d{4}\b`).FindString(m.body)
		}
	}
	if code == "" {
		t.Fatal("no code reached c1@example.com")
	}
	if status, _ := post(action[1], url.Values{"code": {code}}); status != http.StatusSeeOther {
		t.Fatalf("the mailed code: %d, want 303", status)
	}
	if b := timeline(t, e, "c1@example.com").Balance; b != 0 {
		t.Fatalf("balance %d after redeeming, want 0", b)
	}
	if status, _ := post(action[1], url.Values{"code": {code}}); status != http.StatusGone {
		t.Fatalf("the code again: %d, want 410", status)
	}
}
