package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"pointpost/mailer"
	"pointpost/postoffice"
)

// TestRelayRefusals: a 4xx is retried and counted, a 5xx is rejected with its reply and
// never retried, a permanent 4xx is given up after the retry limit.
func TestRelayRefusals(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	sink := &mailer.Sink{Keep: true, Answer: func(from, to string, data []byte) error {
		mu.Lock()
		attempts[to]++
		n := attempts[to]
		mu.Unlock()
		switch {
		case to == "c1@example.com" && n <= 2:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		case to == "c2@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case to == "c3@example.com":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		case to == "c4@example.com" && n == 1:
			return mailer.ErrDrop
		}
		return nil
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	runOK(t, e, "import", "consumers", writeConsumers(t, 10))
	now := time.Now()
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 10, `{}`)))), 10, 64)
	startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the job to finish", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })

	delivery := func(email string) *postoffice.Delivery {
		c, err := st.ConsumerByEmail(context.Background(), email)
		if err != nil {
			t.Fatal(err)
		}
		d, err := st.Delivery(context.Background(), key, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := delivery("c1@example.com"); !d.Sent || d.RetryCount != 2 {
		t.Errorf("4xx twice: %+v", d)
	}
	if d := delivery("c2@example.com"); !d.Rejected || d.Sent || d.RetryCount != 0 || !strings.Contains(d.LastError, "no such user") {
		t.Errorf("5xx: %+v", d)
	}
	if d := delivery("c3@example.com"); !d.Failed || d.RetryCount != 3 || !strings.Contains(d.LastError, "mailbox full") {
		t.Errorf("permanent 4xx: %+v", d)
	}
	if d := delivery("c4@example.com"); !d.Sent || d.RetryCount != 1 {
		t.Errorf("dropped connection: %+v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts["c2@example.com"] != 1 || attempts["c3@example.com"] != 4 {
		t.Errorf("attempts: 5xx %d (want 1), permanent 4xx %d (want 4)", attempts["c2@example.com"], attempts["c3@example.com"])
	}
	counts, _ := st.JobCounts(context.Background(), key)
	if counts.Sent != 8 || counts.Rejected != 1 || counts.Failed != 1 || counts.Pending != 0 {
		t.Errorf("counts: %+v", counts)
	}
}
