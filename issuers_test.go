package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

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
