package postoffice

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// goodCampaign is a campaign compile accepts; each case changes one thing.
func goodCampaign() *Campaign {
	return &Campaign{Issuer: "acme", Name: "Spring", Start: "2026-12-01T09:00:00Z", Stop: "2026-12-31T00:00:00Z",
		ClientCount: 10, Text: &MessageSpec{Subject: "Hello", Body: "Hello <_&getUserName_>"}}
}

func TestCampaignRefusesWhatNoWayInMayCarry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(c *Campaign)
		field string
	}{
		{"body over the template cap", func(c *Campaign) { c.Text.Body = strings.Repeat("x", MaxTemplateBytes+1) }, "text.body"},
		{"html body over the template cap", func(c *Campaign) {
			c.HTML = &MessageSpec{Subject: "s", Body: strings.Repeat("<p>", MaxTemplateBytes/3+1)}
		}, "html.body"},
		{"NUL in a body", func(c *Campaign) { c.Text.Body = "a\x00b" }, "text.body"},
		{"NUL in a subject", func(c *Campaign) { c.Text.Subject = "a\x00b" }, "text.subject"},
		{"long subject", func(c *Campaign) { c.Text.Subject = strings.Repeat("s", maxSubjectBytes+1) }, "text.subject"},
		{"line break in the name", func(c *Campaign) { c.Name = "Spring\r\nBcc: x@example.com" }, "name"},
		{"NUL in the name", func(c *Campaign) { c.Name = "Spring\x00" }, "name"},
		{"long name", func(c *Campaign) { c.Name = strings.Repeat("n", 201) }, "name"},
		{"line break in the issuer name", func(c *Campaign) { c.IssuerName = "Acme\nX-Evil: 1" }, "issuer_name"},
		{"start before 2000", func(c *Campaign) { c.Start = "1999-12-31T00:00:00Z" }, "start"},
		{"stop after 2100", func(c *Campaign) { c.Stop = "2100-01-01T00:00:00Z" }, "stop"},
		{"rule URL with a line break", func(c *Campaign) {
			c.Rules = []RuleSpec{{Type: "click", Points: 1, IssuerURL: "https://acme.example/\r\nSet-Cookie: x"}}
		}, "rules[0].issuer_url"},
		{"rule stop after 2100", func(c *Campaign) {
			c.Rules = []RuleSpec{{Type: "click", Points: 1, Stop: "9999-01-01T00:00:00Z"}}
		}, "rules[0].stop"},
		{"long rule description", func(c *Campaign) {
			c.Rules = []RuleSpec{{Type: "click", Points: 1, Description: strings.Repeat("d", 201)}}
		}, "rules[0].description"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := goodCampaign()
			tc.edit(c)
			_, err := c.compile()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("compile = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
	// The limits themselves are allowed.
	c := goodCampaign()
	c.Text.Body = strings.Repeat("x", MaxTemplateBytes)
	c.Name = strings.Repeat("é", 200)
	c.Start, c.Stop = "2000-01-01T00:00:00Z", "2099-12-31T23:59:59Z"
	if _, err := c.compile(); err != nil {
		t.Fatalf("a campaign at the limits: %v", err)
	}
}

func TestParseCampaignRefusesDuplicateKeysAndTrailingData(t *testing.T) {
	for _, tc := range []struct {
		json, field string
	}{
		{`{"name": "a", "name": "b"}`, "name"},
		{`{"text": {"subject": "s", "body": "b", "body": "c"}}`, "text.body"},
		{`{"rules": [{"type": "reply"}, {"points": 1, "points": 2}]}`, "rules[1].points"},
		{`{"selection": {"all": [{"field": "country", "field": "city"}]}}`, "selection.all[0].field"},
	} {
		_, err := ParseCampaign([]byte(tc.json))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("ParseCampaign(%s) = %v, want a FieldError on %s", tc.json, err, tc.field)
		}
	}
	for _, in := range []string{`{"name": "a"} {"name": "b"}`, `{"name": "a"}x`, `{"name": "a"}]`} {
		var te *TrailingDataError
		if _, err := ParseCampaign([]byte(in)); !errors.As(err, &te) {
			t.Errorf("ParseCampaign(%s) = %v, want trailing data refused", in, err)
		}
	}
	// The same key in sibling objects is not a duplicate.
	if err := CheckStrictJSON([]byte(`{"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]}`)); err != nil {
		t.Fatalf("siblings: %v", err)
	}
}

// endless is a campaign file that never ends.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	if e.n == 0 {
		e.n = copy(p, `{"name": "`)
		return e.n, nil
	}
	for i := range p {
		p[i] = 'x'
	}
	e.n += len(p)
	return len(p), nil
}

func TestReadCampaignStopsAtTheCap(t *testing.T) {
	r := &endless{}
	_, err := ReadCampaign(io.LimitReader(r, 100<<20))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("ReadCampaign of 100 MB = %v, want it refused as too large", err)
	}
	if r.n > MaxCampaignBytes+64<<10 {
		t.Fatalf("read %d bytes of it, want no more than the cap", r.n)
	}
}
