package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/rewards"
)

func TestRouteCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "r.db")
	env := func(string) string { return "" }
	route := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append(append([]string{"route"}, args...), "--db", db), env, &out)
		return out.String(), err
	}
	if out, err := route("add", "ses", "--url", "smtps://key:hunter2@email-smtp.example:465", "--rate", "14",
		"--quota", "50000/24h", "--quota", "3000/1h", "--max-connections", "4"); err != nil || strings.Contains(out, "hunter2") {
		t.Fatalf("route add: %q, %v", out, err)
	}
	if _, err := route("add", "spare", "--url", "smtp://relay.example:587", "--priority", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := route("set", "ses", "--rate", "20"); err != nil {
		t.Fatal(err)
	}
	out, err := route("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ses ", " 20 ", "50000/24h0m0s,3000/1h0m0s", "smtps://key:xxxxx@email-smtp.example:465", "spare "} {
		if !strings.Contains(out, want) {
			t.Errorf("route list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("route list shows the password:\n%s", out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "bad", "--url", "http://relay.example"}, "url"},
		{[]string{"add", "bad"}, "url: required"},
		{[]string{"add", "bad", "--url", "smtp://relay.example", "--rate", "0"}, "rate"},
		{[]string{"add", "bad", "--url", "smtp://relay.example", "--rate", "-3"}, "rate"},
		{[]string{"add", "bad", "--url", "smtp://relay.example", "--quota", "10/0s"}, "window"},
		{[]string{"add", "ses", "--url", "smtp://relay.example"}, "exists"},
		{[]string{"add", "bad", "--url", "smtp://relay.example", "--warmup", "500/week"}, "warm-up"},
		{[]string{"add", "bad", "--url", "smtp://relay.example", "--warmup", "500/day doubling every 2 days up to 100"}, "warmup"},
		{[]string{"set", "nope", "--rate", "3"}, "not found"},
		{[]string{"remove", "nope"}, "not found"},
	} {
		if _, err := route(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("route %q = %v, want an error about %s", tc.args, err, tc.want)
		}
	}
	if err := run(context.Background(), []string{"route", "frobnicate", "x"}, env, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("route frobnicate = %v, want an error naming it", err)
	}
	// A job is pinned by job pin; a missing job or route is an error.
	for _, args := range [][]string{{"pin", "--db", db, "42", "ses"}, {"pin", "--db", db, "42", "nope"}} {
		if err := run(context.Background(), append([]string{"job"}, args...), env, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("job %q = %v, want not found", args, err)
		}
	}
	if _, err := route("set", "spare", "--warmup", "500/day doubling every 2 days up to 50000"); err != nil {
		t.Fatal(err)
	}
	if out, _ := route("list"); !strings.Contains(out, "warm-up 500/day doubling every 2 days up to 50000 since") || !strings.Contains(out, ": 500 today") {
		t.Errorf("route list lacks the warm-up:\n%s", out)
	}
	if _, err := route("remove", "spare"); err != nil {
		t.Fatal(err)
	}
	if out, _ := route("list"); strings.Contains(out, "spare") {
		t.Errorf("removed route still listed:\n%s", out)
	}
}

func TestRelayLimitFlags(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cfg, err := parseServeConfig([]string{"--relay", "smtp://relay.example", "--relay-rate", "14",
		"--relay-quota", "50000/24h", "--relay-quota", "200/1m", "--relay-connections", "3"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RelayRate != 14 || len(cfg.RelayQuotas) != 2 || cfg.RelayQuotas[1].Limit != 200 || cfg.RelayConnections != 3 {
		t.Errorf("parsed %v %v %v", cfg.RelayRate, cfg.RelayQuotas, cfg.RelayConnections)
	}
	cfg, err = parseServeConfig(nil, env(map[string]string{"POINTPOST_RELAY_QUOTA": "10/1h, 100/24h", "POINTPOST_RELAY_RATE": "2.5"}))
	if err != nil || len(cfg.RelayQuotas) != 2 || cfg.RelayRate != 2.5 {
		t.Errorf("from the environment: %+v, %v", cfg, err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--relay-rate", "0"}, nil, "relay-rate"},
		{[]string{"--relay-rate", "x"}, nil, "relay-rate"},
		{[]string{"--relay-quota", "10/0s"}, nil, "window"},
		{[]string{"--relay-connections", "-1"}, nil, "relay-connections"},
		{nil, map[string]string{"POINTPOST_RELAY_RATE": "fast"}, "POINTPOST_RELAY_RATE"},
		{nil, map[string]string{"POINTPOST_RELAY_QUOTA": "lots"}, "POINTPOST_RELAY_QUOTA"},
		{nil, map[string]string{"POINTPOST_RELAY_CONNECTIONS": "-2"}, "POINTPOST_RELAY_CONNECTIONS"},
	} {
		if _, err := parseServeConfig(tc.args, env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseServeConfig(%q, %v) = %v, want an error naming %s", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestRouteAddedThroughTheAPIIsUsedWithoutRestart: serve sends by its saved route; a route
// of higher priority added through the JSON API takes the next job's mail, with no restart.
func TestRouteAddedThroughTheAPIIsUsedWithoutRestart(t *testing.T) {
	first, second := &mailer.Sink{Keep: true}, &mailer.Sink{Keep: true}
	for _, s := range []*mailer.Sink{first, second} {
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	e := newEnv(t, "")
	runOK(t, e, "route", "add", "first", "--url", first.URL(), "--priority", "5", "--db", e["POINTPOST_DB"])
	runOK(t, e, "import", "consumers", writeConsumers(t, 20))
	st := openStore(t, e)
	key, err := rewards.NewAPIKey(context.Background(), st, &rewards.APIKey{Name: "ops"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, e)
	api := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+srv.addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := api(http.MethodPost, "/api/v1/routes", `{"name": "second", "url": "`+second.URL()+`", "priority": 1}`); status != http.StatusCreated {
		t.Fatalf("adding a route: %d %s", status, body)
	}
	now := time.Now()
	job, err := strconv.ParseInt(strings.TrimSpace(runOK(t, e, "campaign", "create",
		writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), 10, `{}`)))), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to finish", 30*time.Second, func() bool { return jobState(t, st, job).State == postoffice.JobDone })
	if first.Count() != 0 || second.Count() != 10 {
		t.Errorf("first took %d and second %d, want the route added while serving to take all 10", first.Count(), second.Count())
	}
	status, body := api(http.MethodGet, "/api/v1/routes/second", "")
	if status != http.StatusOK || !strings.Contains(body, `"sent":10`) {
		t.Errorf("the route's state: %d %s, want 10 sent", status, body)
	}
}

// TestQuotaThenSecondRouteTakesOver is issue 9's quota target end to end: a route with 1,000
// an hour sends 1,000, the rest waits for the window and the job says so; a second route
// added while serving takes over at once, and every recipient is sent exactly once.
func TestQuotaThenSecondRouteTakesOver(t *testing.T) {
	const n, quota = 3000, 1000
	metered, spare := &mailer.Sink{Keep: true}, &mailer.Sink{Keep: true}
	for _, s := range []*mailer.Sink{metered, spare} {
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	e := newEnv(t, "")
	runOK(t, e, "route", "add", "metered", "--url", metered.URL(), "--quota", strconv.Itoa(quota)+"/1h", "--db", e["POINTPOST_DB"])
	runOK(t, e, "import", "consumers", writeConsumers(t, n))
	st := openStore(t, e)
	key, err := rewards.NewAPIKey(context.Background(), st, &rewards.APIKey{Name: "ops"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, e)
	now := time.Now()
	job := strings.TrimSpace(runOK(t, e, "campaign", "create",
		writeCampaign(t, campaignJSON(now.Add(-time.Minute), now.Add(time.Hour), n, `{}`))))

	var waiting string
	waitFor(t, "the job to wait for the quota", 60*time.Second, func() bool {
		var shown struct {
			Waiting string `json:"waiting"`
		}
		if err := json.Unmarshal([]byte(runOK(t, e, "job", "show", job)), &shown); err != nil {
			t.Fatal(err)
		}
		waiting = shown.Waiting
		return waiting != ""
	})
	if !strings.Contains(waiting, "route metered over its 1h0m0s quota of 1000") || !strings.Contains(waiting, "until") {
		t.Errorf("job show says %q, want the route, its quota and until when", waiting)
	}
	if metered.Count() != quota {
		t.Fatalf("the metered relay took %d, want its quota of %d", metered.Count(), quota)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.addr+"/api/v1/routes",
		strings.NewReader(`{"name": "spare", "url": "`+spare.URL()+`", "priority": 1}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("adding the spare route: %d", resp.StatusCode)
	}
	jobKey, _ := strconv.ParseInt(job, 10, 64)
	waitFor(t, "the job to finish by the spare route", 120*time.Second, func() bool {
		return jobState(t, st, jobKey).State == postoffice.JobDone
	})
	if metered.Count() != quota || spare.Count() != n-quota {
		t.Errorf("metered took %d and spare %d, want %d and %d", metered.Count(), spare.Count(), quota, n-quota)
	}
	seen := map[string]int{}
	for _, s := range []*mailer.Sink{metered, spare} {
		for _, m := range s.Messages() {
			seen[m.To]++
		}
	}
	for i := range n {
		if to := fmt.Sprintf("c%d@example.com", i); seen[to] != 1 {
			t.Errorf("%s was sent %d times, want once", to, seen[to])
		}
	}
}
