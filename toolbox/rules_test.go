package toolbox_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"pointpost/rewards"
)

func ruleFormValues() url.Values {
	return url.Values{"rule_description": {"daily click"}, "rule_type": {"click"}, "rule_points": {"1,500"},
		"rule_frequency": {"period"}, "rule_period": {"24"}, "rule_start": {"2030-01-01T00:00"}, "rule_stop": {"2030-02-01T00:00"},
		"rule_issuer_url": {"https://acme.example"}, "rule_success_url": {"https://acme.example/thanks"}, "rule_budget": {"9000"}}
}

func TestRulesCreateEditRetire(t *testing.T) {
	e := newEditorEnv(t)
	c, u := e.signIn("ann@acme.example", "acme")
	if doc := c.page("/rules", http.StatusOK); len(byTestID(doc, "no-rules")) != 1 {
		t.Fatal("no empty state")
	}
	resp, body := c.post("/rules/new", ruleFormValues())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d\n%.1500s", resp.StatusCode, body)
	}
	ctx := context.Background()
	rules, err := e.st.Rules(ctx, u.IssuerID)
	if err != nil || len(rules) != 1 {
		t.Fatalf("rules: %v %v", rules, err)
	}
	r := rules[0]
	want := rewards.AwardRule{ID: r.ID, IssuerID: u.IssuerID, Description: "daily click", Type: rewards.RuleClick, Points: 1500,
		Frequency: rewards.FrequencyPeriod, Period: 24 * time.Hour, Start: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		Stop: time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC), IssuerURL: "https://acme.example", SuccessURL: "https://acme.example/thanks", Budget: 9000}
	if r != want {
		t.Fatalf("rule %+v\nwant %+v", r, want)
	}
	doc := c.page("/rules", http.StatusOK)
	if oneText(t, doc, "rule-points") != "1,500" || oneText(t, doc, "rule-spent") != "0" || oneText(t, doc, "rule-type") != "click" {
		t.Fatal("the list does not show the rule's points, spent and type")
	}
	// The edit form holds what was stored; a bad field is shown beside it, nothing changes.
	doc = c.page(fmt.Sprintf("/rules/%d/edit", r.ID), http.StatusOK)
	if len(byTestID(doc, "rule-form")) != 1 {
		t.Fatal("no edit form")
	}
	bad := ruleFormValues()
	bad.Set("rule_points", "-3")
	bad.Set("rule_description", "kept")
	resp, body = c.post(fmt.Sprintf("/rules/%d/edit", r.ID), bad)
	doc = parseHTML(t, body)
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(doc, "error-rule_points")) != 1 {
		t.Fatalf("bad points: %d", resp.StatusCode)
	}
	bad = ruleFormValues()
	bad.Set("rule_frequency", "times")
	if _, body := c.post(fmt.Sprintf("/rules/%d/edit", r.ID), bad); len(byTestID(parseHTML(t, body), "error-rule_max_times")) != 1 {
		t.Fatal("a times rule without max times is not refused beside the field")
	}
	good := ruleFormValues()
	good.Set("rule_points", "7")
	if resp, _ := c.post(fmt.Sprintf("/rules/%d/edit", r.ID), good); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %d", resp.StatusCode)
	}
	if got, _ := e.st.Rule(ctx, r.ID); got.Points != 7 || got.Retired {
		t.Fatalf("after edit: %+v", got)
	}
	if resp, _ := c.post(fmt.Sprintf("/rules/%d/retire", r.ID), url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("retire: %d", resp.StatusCode)
	}
	if got, _ := e.st.Rule(ctx, r.ID); !got.Retired {
		t.Fatal("not retired")
	}
	if doc := c.page("/rules", http.StatusOK); len(byTestID(doc, "retired")) != 1 {
		t.Fatal("the list does not mark the rule retired")
	}
}

func TestRulesOfAnotherIssuerAre404(t *testing.T) {
	e := newEditorEnv(t)
	acme, _ := e.signIn("ann@acme.example", "acme")
	theirs := e.rule(e.issuer("bolt"), 3)
	acme.page(fmt.Sprintf("/rules/%d/edit", theirs.ID), http.StatusNotFound)
	acme.page("/rules/999/edit", http.StatusNotFound)
	for _, path := range []string{"edit", "retire"} {
		if resp, _ := acme.post(fmt.Sprintf("/rules/%d/%s", theirs.ID, path), ruleFormValues()); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s of another issuer's rule: %d", path, resp.StatusCode)
		}
	}
	got, _ := e.st.Rule(context.Background(), theirs.ID)
	if got.Points != 3 || got.Retired || got.Type != rewards.RuleReply {
		t.Fatalf("another issuer changed the rule: %+v", got)
	}
	if doc := acme.page("/rules", http.StatusOK); len(byTestID(doc, "rule")) != 0 {
		t.Fatal("another issuer's rule is listed")
	}
	// Operators see every issuer's rules, with the issuer.
	op, _ := e.signIn("op@example.com", "")
	if doc := op.page("/rules", http.StatusOK); len(byTestID(doc, "rule")) != 1 || oneText(t, doc, "rule-issuer") != "bolt" {
		t.Fatal("the operator does not see bolt's rule")
	}
	// An operator must say whose rule a new one is.
	resp, body := op.post("/rules/new", ruleFormValues())
	if resp.StatusCode != http.StatusUnprocessableEntity || len(byTestID(parseHTML(t, body), "error-issuer")) != 1 {
		t.Fatalf("operator rule without issuer: %d", resp.StatusCode)
	}
}
