package toolbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// FuzzAPIConsumersBody feeds POST /api/v1/consumers bodies through the checks the handler
// runs (strict JSON, then apiParseConsumers). Whatever comes in, the answer is a problem with
// a 4xx status, never an error that would show as 500, and what is accepted is what the store
// may take: valid addresses, one-line bounded fields, attribute names selections can name.
// Inputs the fuzzer found are kept under testdata/fuzz/FuzzAPIConsumersBody.
func FuzzAPIConsumersBody(f *testing.F) {
	for _, seed := range []string{
		`{"email": "a@example.com", "first_name": "Ann", "attributes": {"Loyalty Tier": "gold"}}`,
		`{"consumers": [{"email": "a@example.com"}, {"email": "b@example.com", "interests": ["golf"]}]}`,
		`{"email": "a@example.com", "email": "b@example.com"}`,
		`{"email": "a@example.com"} []`,
		`{"email": "a@example.com", "attributes": {"acme:tier": "x"}}`,
		`{"email": "a@example.com", "city": "Ly\u0000on"}`,
		`{"consumers": [], "x": 1}`,
		`{"email": "a@example.com", "birth_year": 1e400}`,
		`[[[[[[[[[[]]]]]]]]]]`,
		`{"email": "a@example.com", "attributes": {"status": "active"}}`,
	} {
		f.Add([]byte(seed))
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		err := postoffice.CheckStrictJSON(body)
		var dup *postoffice.DuplicateKeyError
		var trailing *postoffice.TrailingDataError
		if errors.As(err, &dup) || errors.As(err, &trailing) {
			return // apiReadBody answers 400 naming the key or the byte
		}
		if err == nil && !json.Valid(body) {
			t.Fatalf("CheckStrictJSON passed JSON encoding/json refuses: %q", body)
		}
		cs, _, err := apiParseConsumers(body, now)
		if err != nil {
			var p *apiProblem
			if !errors.As(err, &p) || p.status < 400 || p.status > 499 {
				t.Fatalf("%q: %v is not a 4xx problem", body, err)
			}
			return
		}
		if len(cs) == 0 || len(cs) > apiMaxBatch {
			t.Fatalf("%q: accepted %d consumers", body, len(cs))
		}
		for _, c := range cs {
			if e, err := rewards.ValidEmail(c.Email); err != nil || e != c.Email {
				t.Fatalf("accepted address %q (%v)", c.Email, err)
			}
			for _, v := range []string{c.FirstName, c.LastName, c.City, c.Region, c.Country, c.PostalCode, c.Gender} {
				if len(v) > apiMaxText || strings.ContainsFunc(v, unicode.IsControl) {
					t.Fatalf("accepted field %q", v)
				}
			}
			if len(c.Attributes) > apiMaxAttributes {
				t.Fatalf("accepted %d attributes", len(c.Attributes))
			}
			for k, v := range c.Attributes {
				if rewards.CheckAttributeName(k) != nil || strings.Contains(k, ":") || len(v) > apiMaxAttrValue ||
					strings.ContainsFunc(v, unicode.IsControl) {
					t.Fatalf("accepted attribute %q = %q", k, v)
				}
			}
		}
	})
}

// otherNamespace finds, in checked criteria, an attribute name that names a namespace.
func otherNamespace(n *postoffice.Criterion) string {
	if n == nil {
		return ""
	}
	if n.Cond != nil {
		if strings.Contains(n.Cond.Attr, ":") {
			return n.Cond.Attr
		}
		return ""
	}
	for i := range n.Members {
		if name := otherNamespace(&n.Members[i]); name != "" {
			return name
		}
	}
	return ""
}

// FuzzCampaignForm submits the campaign editor's form as an issuer user of acme. Whatever
// the form says, the campaign is acme's, its selection reads no other issuer's attributes,
// and a campaign that passes the post office's checks has a one-line name of bounded length
// and templates within the cap. Inputs the fuzzer found are kept under
// testdata/fuzz/FuzzCampaignForm.
func FuzzCampaignForm(f *testing.F) {
	f.Add("Spring", "Hi <_&getFirstName_>", "Earn <_&getAckURL_>", "", "attr.plan", "=", "gold", "2026-12-01T09:00", "2026-12-03T09:00", "10", "bolt")
	f.Add("Spring\r\nBcc: x@example.com", "Hi", "b", "", "country", "=", "US", "2026-12-01T09:00", "2026-12-03T09:00", "10", "")
	f.Add("S", "Hi", "b", `{"field": "attr.bolt:plan", "op": "=", "value": "x"}`, "", "", "", "2026-12-01T09:00", "2026-12-03T09:00", "1", "")
	f.Add("S", "Hi", "b", `{"sql": "attributes LIKE '%bolt:%'"}`, "", "", "", "2026-12-01T09:00", "2026-12-03T09:00", "1", "")
	f.Add("S", "Hi", "b", "", "attr.vip", "in", `["a","b"]`, "2300-01-01T00:00", "2300-01-03T00:00", "1", "")
	f.Add("S", "Hi\x00", "b\x00", "", "", "", "", "2026-12-01T09:00", "2026-12-03T09:00", "99999999999", "acme")
	f.Fuzz(func(t *testing.T, name, subject, body, selJSON, field, op, value, start, stop, count, issuer string) {
		form := url.Values{"name": {name}, "issuer": {issuer}, "text_subject": {subject}, "text_body": {body},
			"sel_join": {"all"}, "sel_json": {selJSON}, "sel_field_0": {field}, "sel_op_0": {op}, "sel_value_0": {value},
			"client_count": {count}, "start": {start}, "stop": {stop}}
		r := httptest.NewRequest(http.MethodPost, "/campaigns/new", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		ann := &rewards.User{ID: 1, Email: "ann@acme.example", Role: rewards.RoleIssuer, IssuerID: 1, IssuerSlug: "acme"}
		r = r.WithContext(withUser(context.Background(), ann))
		cf, err := readCampaignForm(r)
		if err != nil {
			return
		}
		if cf.Issuer != "acme" {
			t.Fatalf("an acme user's form is for %q", cf.Issuer)
		}
		c := cf.campaign(false)
		if c == nil {
			return
		}
		if c.Issuer != "acme" {
			t.Fatalf("an acme user's campaign is for %q", c.Issuer)
		}
		if err := c.Validate(); err != nil {
			var fe *postoffice.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a FieldError", err)
			}
			return
		}
		if rewards.CheckName(c.Name) != nil || (c.Text != nil && len(c.Text.Body) > postoffice.MaxTemplateBytes) {
			t.Fatalf("accepted name %q / body of %d bytes", c.Name, len(c.Text.Body))
		}
		sel, err := postoffice.ParseSelection(c.Selection)
		if err != nil {
			t.Fatalf("accepted a selection that does not parse: %v", err)
		}
		if sel.IsRaw() {
			t.Fatalf("an issuer user's campaign carries raw SQL %q", sel.SQL)
		}
		crit, err := sel.Check(c.Issuer)
		if err != nil {
			t.Fatal(err)
		}
		// The store reads an attribute as the issuer's own, then the program's
		// (store.TestCompileSelectionReadsTheIssuersAttributes): acme's, and a name that
		// cannot reach into another issuer's namespace.
		if crit.Issuer != "acme" {
			t.Fatalf("acme's selection is resolved for %q", crit.Issuer)
		}
		if name := otherNamespace(crit.Root); name != "" {
			t.Fatalf("acme's selection names the attribute %q", name)
		}
	})
}
