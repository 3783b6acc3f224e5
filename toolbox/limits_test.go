package toolbox_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"pointpost/postoffice"
)

// The toolbox form refuses what the API and campaign files refuse: one cap on a template,
// names of one line and a sane length, dates in range; and a body larger than any form is
// refused before it is read.
func TestCampaignFormLimits(t *testing.T) {
	e := newEditorEnv(t)
	c, _ := e.signIn("ann@acme.example", "acme")
	for _, tc := range []struct {
		name, field, key, value string
	}{
		{"template over the cap", "text_body", "text_body", strings.Repeat("x", postoffice.MaxTemplateBytes+1)},
		{"line break in the name", "name", "name", "Spring\r\nBcc: x@example.com"},
		{"long name", "name", "name", strings.Repeat("n", 201)},
		{"start in 2300", "start", "start", "2300-01-01T00:00"},
	} {
		form := campaignForm()
		form.Set(tc.key, tc.value)
		resp, body := c.post("/campaigns/new", form)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%s: %d, want 422", tc.name, resp.StatusCode)
		}
		if len(byTestID(parseHTML(t, body), "error-"+tc.field)) != 1 {
			t.Errorf("%s: no error beside %s", tc.name, tc.field)
		}
	}
	form := campaignForm()
	form.Set("html_subject", "Hi")
	form.Set("html_body", strings.Repeat("<p>", 3<<20))
	resp, body := c.post("/campaigns/new", form)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "KB") {
		t.Fatalf("a 9 MB form: %d %.200s, want 413 saying the limit", resp.StatusCode, body)
	}
	if jobs, _ := e.st.Jobs(context.Background()); len(jobs) != 0 {
		t.Fatalf("%d jobs stored from refused forms", len(jobs))
	}
}

func TestAPIRefusesDuplicateKeysTrailingDataAndLargeTemplates(t *testing.T) {
	e := newEnv(t, withAPI)
	acme := e.issuer("acme")
	key := e.apiKey(&acme)
	e.call(key, http.MethodPost, "/api/v1/consumers", `{"email": "a@example.com", "email": "b@example.com"}`).
		wantError(t, http.StatusBadRequest, "email")
	e.call(key, http.MethodPost, "/api/v1/consumers", `{"consumers": [{"email": "a@example.com", "attributes": {"x": "1", "x": "2"}}]}`).
		wantError(t, http.StatusBadRequest, "consumers[0].attributes.x")
	e.call(key, http.MethodPost, "/api/v1/consumers", `{"email": "a@example.com"} {"email": "b@example.com"}`).
		wantError(t, http.StatusBadRequest, "")
	e.call(key, http.MethodPost, "/api/v1/jobs", strings.Replace(campaign("", ""), `"name"`, `"name": "x", "name"`, 1)).
		wantError(t, http.StatusBadRequest, "name")
	big := strings.Replace(campaign("", ""), `"body":"Hello`, `"body":"`+strings.Repeat("x", postoffice.MaxTemplateBytes)+`Hello`, 1)
	e.call(key, http.MethodPost, "/api/v1/jobs", big).wantError(t, http.StatusUnprocessableEntity, "text.body")
	e.call(key, http.MethodPost, "/api/v1/consumers", `{"email": "a@example.com", "attributes": {"acme:x": "1"}}`).
		wantError(t, http.StatusUnprocessableEntity, "attributes.acme:x")
}
