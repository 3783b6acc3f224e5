package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	netsmtp "net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"golang.org/x/net/html"

	"github.com/spf13/pflag"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
)

// env is a test's environment for run: a database in a temp dir and quick retries.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func newEnv(t *testing.T, relay string) env {
	dir := t.TempDir()
	return env{
		"POINTPOST_DB":            filepath.Join(dir, "pointpost.db"),
		"POINTPOST_DKIM_KEY":      filepath.Join(dir, "dkim.pem"),
		"POINTPOST_DKIM_KEY_TYPE": "ed25519",
		// bcrypt at its least cost: under the race detector the default takes many seconds.
		"POINTPOST_PASSWORD_COST": "4",
		"POINTPOST_HTTP":          "127.0.0.1:0",
		"POINTPOST_SMTP":          "127.0.0.1:0",
		"POINTPOST_METRICS":       "127.0.0.1:0",
		// Every test client dials from 127.0.0.1, some 50 at once.
		"POINTPOST_SMTP_MAX_PER_CLIENT": "100",
		"POINTPOST_SETTLE_INTERVAL":     "100ms",
		"POINTPOST_RELAY":               relay,
		"POINTPOST_RETRY_BASE":          "100ms",
		"POINTPOST_MAX_RETRIES":         "3",
		"POINTPOST_MAIL_SERVERS":        "2",
		"POINTPOST_CONNECTIONS":         "4",
		"POINTPOST_LOG":                 "warn",
	}
}

// runOK runs a command to completion and returns what it printed.
func runOK(t *testing.T, e env, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, e.get, &out); err != nil {
		t.Fatalf("pointpost %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// server is a running `pointpost serve`.
type server struct {
	addr    string
	smtp    string
	metrics string
	cancel  context.CancelFunc
	done    chan error
}

// lineWriter hands each printed line to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- line:
		default:
		}
	}
}

func startServe(t *testing.T, e env) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{lines: make(chan string, 16)}
	s := &server{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, []string{"serve"}, e.get, out) }()
	select {
	case line := <-out.lines:
		m := regexp.MustCompile(`http://([0-9.:]+)/ \(replies: smtp://([0-9.:]+)\)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected first line %q", line)
		}
		s.addr, s.smtp = m[1], m[2]
	case err := <-s.done:
		t.Fatalf("serve ended early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	if e["POINTPOST_METRICS"] != "" {
		// The next line says where the metrics are.
		select {
		case line := <-out.lines:
			m := regexp.MustCompile(`^metrics: http://([0-9.:]+)/metrics$`).FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				t.Fatalf("unexpected second line %q", line)
			}
			s.metrics = m[1]
		case <-time.After(20 * time.Second):
			t.Fatal("serve did not say where the metrics are")
		}
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *server) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("serve did not stop within 20s")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openStore(t *testing.T, e env) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), e["POINTPOST_DB"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func jobState(t *testing.T, st *store.Store, key int64) *postoffice.Job {
	t.Helper()
	j, err := st.Job(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// writeConsumers writes a CSV of n consumers: even ones in the US, odd ones in CA; every
// third reads HTML; every fifth likes golf; a plan attribute.
func writeConsumers(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("email,first_name,last_name,city,country,birth_year,interests,format,plan\n")
	for i := 0; i < n; i++ {
		country, format, interests := "US", "text", "travel"
		if i%2 == 1 {
			country = "CA"
		}
		if i%3 == 0 {
			format = "html"
		}
		if i%5 == 0 {
			interests = "golf;travel"
		}
		plan := []string{"gold", "silver", "bronze"}[i%3]
		fmt.Fprintf(&b, "c%d@example.com,Zoë%d,Smith,Town %d,%s,%d,%s,%s,%s\n", i, i, i, country, 1950+i%50, interests, format, plan)
	}
	path := filepath.Join(t.TempDir(), "consumers.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeCampaign(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "campaign.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func campaignJSON(start, stop time.Time, count int, selection string) string {
	return fmt.Sprintf(`{"issuer": "acme", "name": "Spring", "start": %q, "stop": %q, "client_count": %d,
		"selection": %s,
		"text": {"subject": "<_&getUserName_>, points for you", "body": "Dear <_&getUserName_> of <_&getCity_>,\nplan <_&getAttr:plan_>\n<_&getAckURL_>\nyour points: <_&getAccountURL_>\n"},
		"html": {"subject": "<_&getUserName_>, points await", "body": "<p>Dear <_&getUserName_> of <_&getCity_></p><a href=\"<_&getAckURL_>\">earn</a>"}}`,
		start.UTC().Format(time.RFC3339), stop.UTC().Format(time.RFC3339), count, selection)
}

// received parses what the sink kept, by recipient.
type received struct {
	to, subject, contentType, body string
}

func parseSink(t *testing.T, msgs []mailer.SinkMessage) map[string][]received {
	t.Helper()
	out := map[string][]received{}
	for _, m := range msgs {
		r, err := gomail.CreateReader(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("message to %s does not parse: %v", m.To, err)
		}
		subject, _ := r.Header.Subject()
		part, err := r.NextPart()
		if err != nil {
			t.Fatalf("message to %s has no body: %v", m.To, err)
		}
		ct, _, _ := part.Header.(*gomail.InlineHeader).ContentType()
		body, _ := io.ReadAll(part.Body)
		out[m.To] = append(out[m.To], received{to: m.To, subject: subject, contentType: ct, body: string(body)})
	}
	return out
}

func keyring(t *testing.T, st *store.Store) *postoffice.Keyring {
	t.Helper()
	current, secrets, err := st.TokenSecrets(context.Background(), postoffice.NewSecret)
	if err != nil {
		t.Fatal(err)
	}
	k, err := postoffice.NewKeyring(current, secrets)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

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

// TestSuspendResumeAndRestart suspends a running job, resumes it, stops the whole program
// mid-job and starts it again: every consumer ends with exactly one message.
func TestSuspendResumeAndRestart(t *testing.T) {
	sink := &mailer.Sink{Keep: true, Answer: func(from, to string, data []byte) error {
		time.Sleep(2 * time.Millisecond) // a relay slow enough to stop mid-job
		return nil
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	runOK(t, e, "import", "consumers", writeConsumers(t, 1500))
	now := time.Now()
	key := strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 1500, `{}`))))
	k, _ := strconv.ParseInt(key, 10, 64)

	srv := startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "sending to begin", 20*time.Second, func() bool { return sink.Count() >= 100 })
	runOK(t, e, "job", "suspend", key)
	time.Sleep(time.Second) // the mail server rereads its job within 200ms
	halted := sink.Count()
	time.Sleep(500 * time.Millisecond)
	if n := sink.Count(); n != halted {
		t.Fatalf("still sending 1s after suspend: %d then %d", halted, n)
	}
	if halted >= 1500 {
		t.Fatal("the job finished before it could be suspended")
	}
	runOK(t, e, "job", "resume", key)
	waitFor(t, "sending to resume", 20*time.Second, func() bool { return sink.Count() >= halted+200 })
	srv.stop(t) // graceful stop mid-job
	stoppedAt := sink.Count()
	if stoppedAt >= 1500 {
		t.Fatal("the job finished before the restart")
	}
	startServe(t, e)
	waitFor(t, "the job to finish after the restart", 60*time.Second, func() bool { return jobState(t, st, k).State == postoffice.JobDone })

	perRecipient := map[string]int{}
	for _, m := range sink.Messages() {
		perRecipient[m.To]++
	}
	if len(perRecipient) != 1500 {
		t.Errorf("%d of 1500 consumers got mail", len(perRecipient))
	}
	for to, n := range perRecipient {
		if n != 1 {
			t.Errorf("%s got %d messages", to, n)
		}
	}
	counts, err := st.JobCounts(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Sent != 1500 || counts.Pending != 0 {
		t.Errorf("counts after the job: %+v", counts)
	}
}

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

// TestStopDate: a job whose stop date passes mid-run stops sending and is done.
func TestStopDate(t *testing.T) {
	sink := &mailer.Sink{Answer: func(from, to string, data []byte) error {
		time.Sleep(5 * time.Millisecond)
		return nil
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	runOK(t, e, "import", "consumers", writeConsumers(t, 3000))
	now := time.Now()
	// RFC 3339 in the file has whole seconds: stop 3 s from now.
	stop := now.Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	key, _ := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), stop, 3000, `{}`)))), 10, 64)
	startServe(t, e)
	st := openStore(t, e)
	waitFor(t, "the stop date", 30*time.Second, func() bool { return jobState(t, st, key).State == postoffice.JobDone })
	atStop := sink.Count()
	time.Sleep(time.Second)
	if n := sink.Count(); n != atStop {
		t.Errorf("sent %d more after the stop date", n-atStop)
	}
	if atStop == 0 || atStop >= 3000 {
		t.Errorf("sent %d of 3000: the stop date should cut the job short", atStop)
	}
	if j := jobState(t, st, key); j.DoneReason != "stop date passed" {
		t.Errorf("done reason %q", j.DoneReason)
	}
}

func TestCampaignErrorsNameTheField(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 3))
	now := time.Now()
	good := campaignJSON(now, now.Add(time.Hour), 5, `{}`)
	cases := map[string]struct{ body, want string }{
		"bad tag":        {strings.Replace(good, "<_&getCity_>", "<_&getCty_>", 1), "text.body: line 1"},
		"bad operator":   {campaignJSON(now, now.Add(time.Hour), 5, `{"all": [{"field": "country", "op": "~", "value": "US"}]}`), "selection"},
		"bad field":      {campaignJSON(now, now.Add(time.Hour), 5, `{"field": "password", "op": "=", "value": "x"}`), "selection"},
		"stop first":     {campaignJSON(now, now.Add(-time.Hour), 5, `{}`), "stop: must be after start"},
		"zero count":     {campaignJSON(now, now.Add(time.Hour), 0, `{}`), "client_count"},
		"unknown field":  {strings.Replace(good, `"name"`, `"nmae"`, 1), "nmae"},
		"wrong type":     {strings.Replace(good, `"client_count": 5`, `"client_count": "five"`, 1), "client_count"},
		"hostile sql":    {campaignJSON(now, now.Add(time.Hour), 5, `{"sql": "id IN (SELECT key FROM jobs)"}`), "selection"},
		"not json":       {`{"issuer": `, "JSON"},
		"bad rule":       {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rules": [{"type": "reply", "points": 10}, {"type": "click", "points": 0}]`, 1), "rules[1].points"},
		"bad rule type":  {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rules": [{"type": "fax", "points": 10}]`, 1), "rules[0].type"},
		"bad period":     {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rules": [{"type": "reply", "points": 1, "frequency": "period", "period": "daily"}]`, 1), "rules[0].period"},
		"foreign rule":   {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "rule_ids": [42]`, 1), "rule_ids[0]"},
		"no such server": {strings.Replace(good, `"client_count": 5`, `"client_count": 5, "mail_server": 9`, 1), "mail_server: there is no mail server 9"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"campaign", "create", writeCampaign(t, c.body)}, e.get, &out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

func TestImportReportsBadRows(t *testing.T) {
	e := newEnv(t, "")
	path := filepath.Join(t.TempDir(), "c.csv")
	os.WriteFile(path, []byte("email,first_name,birth_year,format,shoe\nok@example.com,Ann,1980,html,42\nnot-an-address,Bob,1970,text,1\nlate@example.com,Cy,3000,text,2\nfine@example.com,Di,,text,3\n"), 0o600)
	out := runOK(t, e, "import", "consumers", path)
	for _, want := range []string{"line 3", "line 4", "2 new", "2 bad"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	st := openStore(t, e)
	c, err := st.ConsumerByEmail(context.Background(), "ok@example.com")
	if err != nil || c.Attributes["shoe"] != "42" || c.Format != "html" {
		t.Errorf("imported consumer %+v, %v", c, err)
	}
	if _, err := st.ConsumerByEmail(context.Background(), "not-an-address"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("bad row was stored: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nonsense"}, {"import", "people"}, {"job", "suspend"}, {"serve", "--mail-servers", "0"}} {
		if err := run(context.Background(), args, env{}.get, io.Discard); err == nil {
			t.Errorf("pointpost %v: no error", args)
		}
	}
}

func TestTrustedProxiesFlag(t *testing.T) {
	if _, err := parseServeConfig([]string{"--trusted-proxies", "10.0.0.1, proxy.example"}, env{}.get); err == nil ||
		!strings.Contains(err.Error(), "--trusted-proxies") || !strings.Contains(err.Error(), `"proxy.example"`) {
		t.Fatalf("a host name as a trusted proxy: %v; want an error naming the flag and the entry", err)
	}
	c, err := parseServeConfig(nil, env{"POINTPOST_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"}.get)
	if err != nil || len(c.TrustedProxies) != 2 {
		t.Fatalf("from the environment: %v, %v; want 2 proxies", c, err)
	}
	if c, err = parseServeConfig(nil, env{}.get); err != nil || len(c.TrustedProxies) != 0 {
		t.Fatalf("by default: %v, %v; want no proxy trusted", c, err)
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

// TestTokenKeyFlagKeepsOldTokens: a key given by flag signs new tokens while the tokens made
// with the stored key still verify.
func TestTokenKeyFlagKeepsOldTokens(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	a, err := open(ctx, &Config{DB: e["POINTPOST_DB"], From: "a@pp.example", HTTP: "127.0.0.1:0"}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	old := a.po.Tokens().Encode(1, 2)
	a.close()
	b, err := open(ctx, &Config{DB: e["POINTPOST_DB"], From: "a@pp.example", HTTP: "127.0.0.1:0",
		TokenKey: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if job, consumer, err := b.po.Tokens().Decode(old); err != nil || job != 1 || consumer != 2 {
		t.Fatalf("a token of the stored key: %d, %d, %v", job, consumer, err)
	}
	fresh := b.po.Tokens().Encode(1, 2)
	if fresh == old || fresh[0] == old[0] {
		t.Fatalf("the flag key did not sign as a new version: %s vs %s", fresh, old)
	}
	if _, _, err := a.po.Tokens().Decode(fresh); err == nil {
		t.Fatal("the stored key alone verified a token of the flag key")
	}
}

func TestIssuerBudgetAndCatalogCommands(t *testing.T) {
	e := newEnv(t, "")
	runOK(t, e, "import", "consumers", writeConsumers(t, 2))
	now := time.Now()
	runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now, now.Add(time.Hour), 2, `{}`)))
	if out := runOK(t, e, "issuer", "budget", "acme", "500"); !strings.Contains(out, "acme may award 500") {
		t.Errorf("issuer budget said %q", out)
	}
	if err := run(context.Background(), []string{"issuer", "budget", "nobody", "5"}, e.get, io.Discard); err == nil {
		t.Error("a budget for an unknown issuer was accepted")
	}
	if err := run(context.Background(), []string{"issuer", "budget", "acme", "-5"}, e.get, io.Discard); err == nil {
		t.Error("a negative budget was accepted")
	}
	runOK(t, e, "catalog", "add", "Mug", "25", "10", "A fine mug")
	if err := run(context.Background(), []string{"catalog", "add", "Free", "0", "1"}, e.get, io.Discard); err == nil {
		t.Error("an item that costs nothing was accepted")
	}
	if out := runOK(t, e, "catalog", "list"); !strings.Contains(out, "Mug") || !strings.Contains(out, "25") {
		t.Errorf("catalog list: %q", out)
	}
}

// TestKilledMidJob is the always-on crash test: 5,000 recipients, 5 kills. The 100k one is
// TestCrash100k.
func TestKilledMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	crashTest(t, 5000, 5)
}

// TestCrash100k kills a 100,000-recipient job 20 times. It takes minutes, so it runs only
// with POINTPOST_FAULTS=1 (make faults); POINTPOST_FAULTS_SEED replays a run.
func TestCrash100k(t *testing.T) {
	if os.Getenv("POINTPOST_FAULTS") != "1" {
		t.Skip("set POINTPOST_FAULTS=1 (make faults)")
	}
	crashTest(t, 100_000, 20)
}

// recipientLog is the crash sink's durable record: one line per accepted message, fsync'd
// before the sink answers 250, in group commits so the sink keeps pace.
type recipientLog struct {
	f *os.File

	mu      sync.Mutex
	written int64
	counts  map[string]int
	syncMu  sync.Mutex
	synced  int64
	syncs   int64
}

func newRecipientLog(t *testing.T) *recipientLog {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "sink.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &recipientLog{f: f, counts: map[string]int{}}
}

// record logs to and returns once the line is on disk; an error makes the sink refuse the
// message, so nothing is accepted that the log does not hold.
func (l *recipientLog) record(to string) error {
	l.mu.Lock()
	_, err := l.f.WriteString(to + "\n")
	if err == nil {
		l.written++
		l.counts[to]++
	}
	n := l.written
	l.mu.Unlock()
	if err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink log: " + err.Error()}
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= n {
		return nil // a sync that began after our write covered it
	}
	l.mu.Lock()
	upto := l.written
	l.mu.Unlock()
	if err := l.f.Sync(); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink log: " + err.Error()}
	}
	l.synced, l.syncs = upto, l.syncs+1
	return nil
}

// distinct is how many recipients have a message.
func (l *recipientLog) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts)
}

// reread counts the recipients in the file itself, which is what survives.
func (l *recipientLog) reread(t *testing.T) map[string]int {
	t.Helper()
	data, err := os.ReadFile(l.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line != "" {
			out[line]++
		}
	}
	return out
}

// crashTest builds the real binary and runs a job of n recipients, killing the process with
// SIGKILL at wantKills random moments and starting it again each time; then it checks that
// every consumer got the message, that duplicates stay within what can be in flight at a
// kill, and that the job's counts match the sink's log.
//
// The duplicate bound. A message is sent twice only if the relay took it and its outcome was
// not committed before the kill. The mail servers commit outcomes every 25 ms or every 500
// (mailer.Config CommitSize/CommitEvery defaults); per mail server what can be uncommitted at
// a kill is one batch being written (<= 500), the results channel behind it (capacity
// CommitSize, <= 500) and one message per connection being sent. So each kill may cost at
// most servers*(2*500 + connections) duplicates.
func crashTest(t *testing.T, n, wantKills int) {
	began := time.Now()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("POINTPOST_FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("POINTPOST_FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with POINTPOST_FAULTS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))

	bin := filepath.Join(t.TempDir(), "pointpost")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const servers, connections, commitSize = 2, 8, 500
	// While kills remain, the sink holds back the last recipients until the next kill, so
	// the job cannot end before every kill lands however fast the mail servers are. The
	// reserve covers the answers that pass the check together.
	reserve := 2 * servers * connections
	var holdMu sync.Mutex
	hold := make(chan struct{})
	held := func() chan struct{} {
		holdMu.Lock()
		defer holdMu.Unlock()
		return hold
	}
	release := func(next chan struct{}) {
		holdMu.Lock()
		old := hold
		hold = next
		holdMu.Unlock()
		if old != nil {
			close(old)
		}
	}
	defer release(nil)
	log := newRecipientLog(t)
	sink := &mailer.Sink{Answer: func(from, to string, data []byte) error {
		if h := held(); h != nil && log.distinct() >= n-reserve {
			<-h
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "held until the kill"}
		}
		return log.record(to)
	}}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := newEnv(t, sink.URL())
	e["POINTPOST_MAIL_SERVERS"] = strconv.Itoa(servers)
	e["POINTPOST_CONNECTIONS"] = strconv.Itoa(connections)
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	now := time.Now()
	key, err := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create",
		writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(24*time.Hour), n, `{}`)))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	var environ []string
	for k, v := range e {
		environ = append(environ, k+"="+v)
	}
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	type proc struct {
		cmd  *exec.Cmd
		done chan error
	}
	start := func() proc {
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(os.Environ(), environ...)
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := proc{cmd, make(chan error, 1)}
		go func() { p.done <- cmd.Wait() }()
		return p
	}
	kill := func(p proc) {
		select {
		case err := <-p.done:
			out, _ := os.ReadFile(stderr.Name())
			t.Fatalf("pointpost exited by itself before the kill: %v\n%s", err, out)
		default:
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
	}

	// A kill moment is either a random time after the start (startup, selection, the first
	// sends), or once the sink has a random share of what is left: spread so that wantKills
	// land before the job ends.
	kills, early := 0, 0
	for kills < wantKills {
		p := start()
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
			early++
		} else {
			before := log.distinct()
			spread := max(2*(n-before)/(wantKills-kills+1), 20)
			target := min(before+1+rng.IntN(spread), n-reserve)
			deadline := time.Now().Add(2 * time.Minute)
			for log.distinct() < target && log.distinct() < n {
				if time.Now().After(deadline) {
					t.Fatalf("kill %d: the sink stayed at %d recipients for 2 minutes (target %d)", kills+1, log.distinct(), target)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		kill(p)
		kills++
		if kills < wantKills {
			release(make(chan struct{}))
		} else {
			release(nil)
		}
	}
	if log.distinct() >= n {
		t.Fatalf("the sink had every recipient before kill %d: the hold failed", kills)
	}
	p := start()
	defer func() { p.cmd.Process.Signal(syscall.SIGTERM); <-p.done }()
	st := openStore(t, e)
	waitFor(t, "the job to finish after the kills", time.Duration(n/100+60)*time.Second, func() bool {
		return jobState(t, st, key).State == postoffice.JobDone
	})

	got := log.reread(t)
	lost, duplicates := 0, 0
	for i := range n {
		to := fmt.Sprintf("c%d@example.com", i)
		c := got[to]
		if c == 0 {
			lost++
			continue
		}
		duplicates += c - 1
		cons, err := st.ConsumerByEmail(context.Background(), to)
		if err != nil {
			t.Fatal(err)
		}
		d, err := st.Delivery(context.Background(), key, cons.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Sent || d.Rejected || d.Failed {
			t.Errorf("%s is in the sink's log but her delivery is %+v", to, d)
		}
	}
	if len(got) != n || lost != 0 {
		t.Errorf("%d of %d consumers got the message (%d lost; the log names %d recipients)", n-lost, n, lost, len(got))
	}
	bound := kills * servers * (2*commitSize + connections)
	if duplicates > bound {
		t.Errorf("%d duplicates after %d kills, more than the %d that can be in flight", duplicates, kills, bound)
	}
	var shown struct {
		Job    postoffice.Job
		Counts postoffice.JobCounts
	}
	if err := json.Unmarshal([]byte(runOK(t, e, "job", "show", strconv.FormatInt(key, 10))), &shown); err != nil {
		t.Fatal(err)
	}
	if c := shown.Counts; c.Sent != len(got) || c.Total != n || c.Pending != 0 || c.Rejected != 0 || c.Failed != 0 || shown.Job.Selected != n {
		t.Errorf("job show: selected %d, counts %+v; the sink has %d distinct recipients", shown.Job.Selected, c, len(got))
	}
	t.Logf("%d recipients: %d kills survived (%d of them in the first 800ms of a start), %d lost, %d duplicates (bound %d), %d messages, %d sink fsyncs, %v",
		n, kills, early, lost, duplicates, bound, duplicates+len(got), log.syncs, time.Since(began).Round(time.Second))
}

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
			var b strings.Builder
			for n := range doc.Descendants() {
				if n.Type == html.TextNode {
					b.WriteString(n.Data)
				}
			}
			pages[i] = b.String()
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

// TestAccountCommands makes toolbox accounts and an API key from the command line, and
// checks the first start prints a setup link only while there is no operator.
func TestAccountCommands(t *testing.T) {
	e := newEnv(t, "")
	e["POINTPOST_BASE_URL"] = "https://points.example"
	runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(time.Now().Add(time.Hour), time.Now().Add(2*time.Hour), 1, `{}`)))

	// No operator yet: serve prints a setup link after the line that says it is running.
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{lines: make(chan string, 16)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, e.get, out) }()
	var setup string
	for setup == "" {
		select {
		case line := <-out.lines:
			setup = regexp.MustCompile(`https://points\.example/setup/\S+`).FindString(line)
		case err := <-done:
			t.Fatalf("serve ended: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("serve printed no setup link")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	link := runOK(t, e, "user", "add", "--operator", "Op@Example.com")
	if !regexp.MustCompile(`^op@example\.com added as operator.*\nhttps://points\.example/welcome/\S+\n$`).MatchString(link) {
		t.Errorf("user add printed %q", link)
	}
	for _, bad := range [][]string{
		{"user", "add", "--operator", "op@example.com"},                    // taken
		{"user", "add", "not-an-address", "--operator"},                    // invalid
		{"user", "add", "--issuer", "nobody", "a@example.com"},             // no such issuer
		{"user", "add", "a@example.com"},                                   // neither role
		{"user", "add", "--operator", "--issuer", "acme", "b@example.com"}, // both
		{"apikey", "create"},
		{"apikey", "create", "nobody"},
	} {
		var buf bytes.Buffer
		if err := run(context.Background(), bad, e.get, &buf); err == nil {
			t.Errorf("pointpost %s: no error (printed %q)", strings.Join(bad, " "), buf.String())
		}
	}
	if out := runOK(t, e, "user", "add", "--issuer", "acme", "ann@acme.example"); !strings.Contains(out, "as issuer") {
		t.Errorf("issuer user add printed %q", out)
	}
	if out := runOK(t, e, "user", "link", "ann@acme.example"); !strings.Contains(out, "https://points.example/welcome/") {
		t.Errorf("user link printed %q", out)
	}

	key := strings.TrimSpace(runOK(t, e, "apikey", "create", "acme", "--name", "enrollment"))
	if !regexp.MustCompile(`^pp_[A-Za-z0-9_-]{40,}$`).MatchString(key) {
		t.Fatalf("apikey create printed %q", key)
	}
	st := openStore(t, e)
	keys, err := st.APIKeys(context.Background(), 0)
	if err != nil || len(keys) != 1 || keys[0].IssuerSlug != "acme" || keys[0].Name != "enrollment" || !strings.HasPrefix(key, keys[0].Prefix) {
		t.Fatalf("stored keys %+v, %v", keys, err)
	}
	st.Close()

	// The key reaches the JSON API of the running server; no key does not.
	srv := startServe(t, e)
	resp, err := http.Get("http://" + srv.addr + "/api/v1/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without a key: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.addr+"/api/v1/jobs", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"issuer":"acme"`) {
		t.Errorf("API with the key: %d %s", resp.StatusCode, body)
	}
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

// parseServeConfig reads serve's flags from args and getenv as serve does.
func parseServeConfig(args []string, getenv func(string) string) (*Config, error) {
	var c Config
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.serveFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &c, c.load(fs, getenv)
}
