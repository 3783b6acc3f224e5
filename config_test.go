package main

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

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
