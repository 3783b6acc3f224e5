package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

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
