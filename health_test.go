package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// getHealth asks url and decodes the answer.
func getHealth(t *testing.T, url string) (int, healthReport, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", url, ct)
	}
	var rep healthReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("%s: %v in %s", url, err, body)
	}
	return resp.StatusCode, rep, string(body)
}

// TestHealthAndReadiness: a running serve is healthy and ready, each check named, and
// answers a load balancer's probes however often it asks.
func TestHealthAndReadiness(t *testing.T) {
	srv := startServe(t, newEnv(t, ""))
	for range 60 { // more than any page's rate limit lets through a minute
		if code, rep, body := getHealth(t, "http://"+srv.addr+"/healthz"); code != http.StatusOK || rep.Status != "ok" {
			t.Fatalf("/healthz: %d %s", code, body)
		}
	}
	code, rep, body := getHealth(t, "http://"+srv.addr+"/readyz")
	if code != http.StatusOK || rep.Status != "ok" {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	for _, name := range []string{"database", "mail_servers", "relay", "receiver"} {
		if c, ok := rep.Checks[name]; !ok || !c.OK {
			t.Errorf("check %s: %+v (of %s)", name, c, body)
		}
	}
	if d := rep.Checks["mail_servers"].Detail; d != "2 running" {
		t.Errorf("mail servers: %q", d)
	}
	if resp, err := http.Post("http://"+srv.addr+"/readyz", "text/plain", nil); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d", resp.StatusCode)
	}
}

// TestReadyzRelayDown: once the mail servers fail to reach the only route's relay, /readyz
// answers 503 naming the route, and never its URL or password.
func TestReadyzRelayDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there now: connections are refused
	e := newEnv(t, "smtp://user:hunter2@"+closed)
	runOK(t, e, "import", "consumers", writeConsumers(t, 3))
	now := time.Now()
	runOK(t, e, "campaign", "create", writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 3, `{}`)))
	srv := startServe(t, e)
	var code int
	var rep healthReport
	var body string
	waitFor(t, "/readyz to answer 503", 30*time.Second, func() bool {
		code, rep, body = getHealth(t, "http://"+srv.addr+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if c := rep.Checks["relay"]; c.OK || c.Detail != "unreachable: relay" {
		t.Errorf("relay check: %+v", c)
	}
	if !rep.Checks["database"].OK || !rep.Checks["receiver"].OK {
		t.Errorf("the other checks: %s", body)
	}
	for _, secret := range []string{"hunter2", closed, "user"} {
		if strings.Contains(body, secret) {
			t.Errorf("/readyz tells %q: %s", secret, body)
		}
	}
	if code, _, _ := getHealth(t, "http://"+srv.addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the relay down: %d", code)
	}
}

// TestReadyzDatabaseClosed: serve's web server answers 503 once its database is closed.
func TestReadyzDatabaseClosed(t *testing.T) {
	cfg, err := parseServeConfig(nil, newEnv(t, "").get)
	if err != nil {
		t.Fatal(err)
	}
	var ls listeners
	if ls.http, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if ls.smtp, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	a, err := open(context.Background(), cfg, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- a.serve(ctx, ls, func() { close(ready) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	url := "http://" + ls.http.Addr().String() + "/readyz"
	if code, _, body := getHealth(t, url); code != http.StatusOK {
		t.Fatalf("before: %d %s", code, body)
	}
	a.store.Close()
	code, rep, body := getHealth(t, url)
	if code != http.StatusServiceUnavailable || rep.Status != "unavailable" || rep.Checks["database"].OK {
		t.Fatalf("with the database closed: %d %s", code, body)
	}
	if !rep.Checks["receiver"].OK {
		t.Errorf("receiver: %s", body)
	}
}
