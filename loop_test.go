package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/store/pgtest"
)

// TestWholeLoop runs the program as an operator would: import, create a campaign, serve
// against an SMTP sink, and checks every selected consumer got exactly one right message.
func TestWholeLoop(t *testing.T) {
	sink := &mailer.Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	out := runOK(t, e, "import", "consumers", writeConsumers(t, 300))
	if !strings.Contains(out, "300 new") {
		t.Fatalf("import said %q", out)
	}
	now := time.Now()
	// US consumers who like golf or were born from 1980: a cap of 20 of them.
	sel := `{"all": [{"field": "country", "op": "=", "value": "US"},
		{"any": [{"field": "interests", "op": "contains", "value": "golf"}, {"field": "birth_year", "op": ">=", "value": 1980}]}]}`
	key, err := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 20, sel)))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// A second job that starts tomorrow must send nothing.
	later := strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(24*time.Hour), now.Add(48*time.Hour), 5, `{}`))))

	srv := startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the job to finish", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })

	got := parseSink(t, sink.Messages())
	if len(got) != 20 {
		t.Fatalf("%d recipients got mail, want the client count 20", len(got))
	}
	keys := keyring(t, st)

	// Every message is DKIM-signed with the key made on first start, and goes out from its
	// own VERP return path.
	dkimKey, err := mailer.LoadDKIMKey(e["POINTPOST_DKIM_KEY"])
	if err != nil {
		t.Fatalf("no DKIM key made on first start: %v", err)
	}
	record, err := mailer.DKIMPublicRecord(dkimKey)
	if err != nil {
		t.Fatal(err)
	}
	lookup := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != "pointpost._domainkey.pointpost.localhost" {
			return nil, fmt.Errorf("no TXT record %s", name)
		}
		return []string{record}, nil
	}}
	for _, m := range sink.Messages() {
		v, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), lookup)
		if err != nil || len(v) != 1 || v[0].Err != nil || v[0].Domain != "pointpost.localhost" {
			t.Fatalf("message to %s: DKIM verifications %+v, %v", m.To, v, err)
		}
		tokens := postoffice.FindToken(m.From)
		if !strings.HasPrefix(m.From, "bounce+") || len(tokens) != 1 {
			t.Fatalf("message to %s: return path %q is not bounce+TOKEN", m.To, m.From)
		}
		if _, consumer, err := keys.Decode(tokens[0]); err != nil || consumer == 0 {
			t.Errorf("return path %q does not name a delivery: %v", m.From, err)
		}
	}
	for to, msgs := range got {
		if len(msgs) != 1 {
			t.Errorf("%s got %d messages", to, len(msgs))
			continue
		}
		m := msgs[0]
		c, err := st.ConsumerByEmail(context.Background(), to)
		if err != nil {
			t.Fatalf("%s: %v", to, err)
		}
		if c.Country != "US" || !(c.BirthYear >= 1980 || strings.Contains(strings.Join(c.Interests, ","), "golf")) {
			t.Errorf("%s does not match the selection: %+v", to, c)
		}
		wantType := "text/plain"
		if c.Format == "html" {
			wantType = "text/html"
		}
		if m.contentType != wantType {
			t.Errorf("%s (%s) got %s", to, c.Format, m.contentType)
		}
		if !strings.Contains(m.body, "Dear "+c.FirstName+" of "+c.City) || !strings.HasPrefix(m.subject, c.FirstName+", points") {
			t.Errorf("%s: not personalised: %q / %q", to, m.subject, m.body)
		}
		tokens := postoffice.FindToken(m.subject)
		if len(tokens) != 1 {
			t.Fatalf("%s: subject %q has %d tokens", to, m.subject, len(tokens))
		}
		job, consumer, err := keys.Decode(tokens[0])
		if err != nil || job != key || consumer != c.ID {
			t.Errorf("%s: token decodes to job %d consumer %d (%v), want %d, %d", to, job, consumer, err, key, c.ID)
		}
		if !strings.Contains(m.body, "/a/"+tokens[0]) {
			t.Errorf("%s: body lacks the acknowledgement link", to)
		}
		if c.Format == "text" && !strings.Contains(m.body, "/account/"+keys.Encode(0, c.ID)) {
			t.Errorf("%s: body lacks the account link", to)
		}
	}
	j := jobState(t, st, key)
	if j.Selected != 20 || j.SelectionSQL == "" || j.MailServerID == 0 {
		t.Errorf("job after run: selected %d, sql %q, server %d", j.Selected, j.SelectionSQL, j.MailServerID)
	}
	laterKey, _ := strconv.ParseInt(later, 10, 64)
	if lj := jobState(t, st, laterKey); lj.State != postoffice.JobScheduled || lj.Selected != 0 {
		t.Errorf("future job is %s with %d selected", lj.State, lj.Selected)
	}

	// The metrics answer on their own address, and not on the public one.
	resp, err := http.Get("http://" + srv.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`pointpost_messages_sent_total\{mail_server="\d"\} 20`).Match(metrics) {
		t.Errorf("metrics do not count the 20 sent:\n%s", metrics)
	}
	resp, err = http.Get("http://" + srv.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	public, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(public), "pointpost_messages_sent_total") {
		t.Errorf("the public address serves the metrics (HTTP %d)", resp.StatusCode)
	}
}

// TestRawSQLSelection: an operator's raw WHERE expression selects through the guard.
func TestRawSQLSelection(t *testing.T) {
	sink := &mailer.Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	runOK(t, e, "import", "consumers", writeConsumers(t, 200))
	now := time.Now()
	sel := `{"sql": "country = 'CA' AND birth_year < 1960 AND json_extract(attributes, '$.plan') = 'gold'"}`
	if pgtest.OnPostgres() {
		// The expression is in the engine's own dialect.
		sel = `{"sql": "country = 'CA' AND birth_year < 1960 AND CAST(attributes AS jsonb) ->> 'plan' = 'gold'"}`
	}
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 1000, sel)))), 10, 64)
	startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the job to finish", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })
	want := 0
	for i := 0; i < 200; i++ {
		if i%2 == 1 && 1950+i%50 < 1960 && i%3 == 0 {
			want++
		}
	}
	got := parseSink(t, sink.Messages())
	if want == 0 || len(got) != want {
		t.Fatalf("%d consumers got mail, want %d", len(got), want)
	}
	for to := range got {
		c, _ := st.ConsumerByEmail(context.Background(), to)
		if c.Country != "CA" || c.BirthYear >= 1960 || c.Attributes["plan"] != "gold" {
			t.Errorf("%s does not match: %+v", to, c)
		}
	}
}
