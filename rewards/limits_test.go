package rewards

import (
	"strings"
	"testing"
	"time"
)

// A CSV column becomes an attribute only under a name the API and selections accept.
func TestConsumerCSVRefusesAttributeNamesSelectionsCannotName(t *testing.T) {
	for _, header := range []string{
		"email,plan!",
		"email,acme:plan", // would reach into an issuer's namespace
		"email,status",    // a consumer field the API shows
		"email," + strings.Repeat("a", MaxAttributeName+1),
		"email,\"pl\"\"an\"",
		"email,tier\x00",
	} {
		if _, err := NewConsumerCSV(strings.NewReader(header + "\na@example.com,1\n")); err == nil ||
			!strings.Contains(err.Error(), "column 2") {
			t.Errorf("header %q: %v, want column 2 refused", header, err)
		}
	}
	c := mustCSV(t, "email,Loyalty Tier,"+strings.Repeat("b", MaxAttributeName)+"\na@example.com,gold,x\n")
	good, bad := readAll(t, c)
	if len(bad) != 0 || len(good) != 1 || good[0].Attributes["loyalty_tier"] != "gold" {
		t.Fatalf("good %+v, bad %+v", good, bad)
	}
}

func TestConsumerCSVRefusesNULBytes(t *testing.T) {
	c := mustCSV(t, "email,first_name,plan\na@example.com,A\x00nn,gold\nb@example.com,Bo,sil\x00ver\nc@example.com,Cy,gold\n")
	good, bad := readAll(t, c)
	if len(good) != 1 || good[0].Email != "c@example.com" || len(bad) != 2 ||
		!strings.Contains(bad[0].Reason, "NUL") || bad[1].Line != 3 {
		t.Fatalf("good %+v, bad %+v: want the two rows with NUL refused", good, bad)
	}
}

func TestAwardRuleRefusesLineBreaksLongDescriptionsAndFarDates(t *testing.T) {
	base := AwardRule{Type: RuleClick, Points: 1, Frequency: FrequencyOnce}
	for _, tc := range []struct {
		field string
		edit  func(r *AwardRule)
	}{
		{"issuer_url", func(r *AwardRule) { r.IssuerURL = "https://acme.example/a\nb" }},
		{"success_url", func(r *AwardRule) { r.SuccessURL = "https://acme.example/\x00" }},
		{"description", func(r *AwardRule) { r.Description = strings.Repeat("d", MaxNameLength+1) }},
		{"description", func(r *AwardRule) { r.Description = "two\rlines" }},
		{"start", func(r *AwardRule) { r.Start = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"stop", func(r *AwardRule) { r.Stop = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) }},
	} {
		r := base
		tc.edit(&r)
		if err := r.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("Validate = %v, want %s refused", err, tc.field)
		}
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("the base rule: %v", err)
	}
}
