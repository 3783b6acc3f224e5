package toolbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/store"
	"pointpost/toolbox"
)

// storeDesk manages routes in the real store; what is at work is what the test says.
type storeDesk struct {
	*store.Store
	states []postoffice.RouteState
}

func (d *storeDesk) SaveRoute(ctx context.Context, r postoffice.Route) error {
	if err := postoffice.ValidateRoute(r); err != nil {
		return err
	}
	return d.Store.SaveRoute(ctx, r)
}

func (d *storeDesk) RouteStatus(context.Context) []postoffice.RouteState { return d.states }

func routesEnv(t *testing.T) (*env, *storeDesk) {
	desk := &storeDesk{}
	e := newEnv(t, func(d *toolbox.Deps) { d.Routes = desk })
	desk.Store = e.st
	return e, desk
}

func TestRoutesFormRefusesBadSettingsNamingTheField(t *testing.T) {
	e, _ := routesEnv(t)
	op, _ := e.signIn("op@example.com", "")
	good := url.Values{"name": {"ses"}, "url": {"smtps://key:hunter2@email-smtp.example:465"}, "rate": {"14"},
		"connections": {"4"}, "quotas": {"50000/24h, 3000/1h"}}
	for _, tc := range []struct {
		field, value, want string
	}{
		{"url", "http://relay.example", "url"},
		{"url", "", "url"},
		{"rate", "0", "rate"},
		{"rate", "-2", "rate"},
		{"rate", "fast", "rate"},
		{"quotas", "10/0s", "quota 1"},
		{"quotas", "50000/24h, 10", "quota 2"},
		{"connections", "-1", "connections"},
		{"name", "Big Name", "name"},
		{"warmup", "500/week", "warmup"},
		{"warmup", "500/day doubling every 2 days up to 100", "warmup"},
	} {
		form := url.Values{}
		for k, v := range good {
			form[k] = v
		}
		form.Set(tc.field, tc.value)
		resp, body := op.post("/mail-servers/routes", form)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `data-field="`+tc.want+`"`) {
			t.Errorf("%s=%q: %d, want 422 naming %s\n%.300s", tc.field, tc.value, resp.StatusCode, tc.want, body)
		}
		if strings.Contains(body, "hunter2") {
			t.Errorf("%s=%q: the refusal shows the password", tc.field, tc.value)
		}
		if tc.field != "name" && !strings.Contains(body, `value="50000/24h, 3000/1h"`) && tc.field != "quotas" {
			t.Errorf("%s=%q: the form lost the quotas typed", tc.field, tc.value)
		}
	}
	if routes, err := e.st.Routes(context.Background()); err != nil || len(routes) != 0 {
		t.Errorf("refused forms saved routes %+v, %v", routes, err)
	}
}

func TestRoutesPageShowsLiveStateWithoutPassword(t *testing.T) {
	e, desk := routesEnv(t)
	op, _ := e.signIn("op@example.com", "")
	resp, _ := op.post("/mail-servers/routes", url.Values{"name": {"ses"}, "url": {"smtps://key:hunter2@email-smtp.example:465"},
		"rate": {"14"}, "quotas": {"50000/24h, 3000/1h"}, "warmup": {"500/day doubling every 2 days up to 50000"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("saving a good route: %d", resp.StatusCode)
	}
	saved, err := e.st.Route(context.Background(), "ses")
	if err != nil || saved.Rate != 14 || len(saved.Quotas) != 2 || saved.URL != "smtps://key:hunter2@email-smtp.example:465" ||
		saved.Warmup == nil || saved.Warmup.Max != 50000 {
		t.Fatalf("saved %+v, %v", saved, err)
	}
	desk.states = []postoffice.RouteState{{Name: "ses", Rate: 8.5, Connections: 4, InUse: 3, Sent: 1234, Cooling: true,
		Quotas: []postoffice.QuotaState{{Quota: saved.Quotas[0], Used: 1234}, {Quota: saved.Quotas[1], Used: 234}},
		Warmup: &postoffice.QuotaState{Quota: postoffice.Quota{Limit: 500, Window: 24 * time.Hour}, Used: 432}}}

	_, body := op.do(http.MethodGet, "/mail-servers", nil, nil)
	for _, want := range []string{"smtps://key:xxxxx@email-smtp.example:465", "8.5/s", "3 in use of 4",
		"1,234 of 50,000 in 24h0m0s", "234 of 3,000 in 1h0m0s", "throttled, cooling",
		"500/day doubling every 2 days up to 50000", "432 of today&#39;s 500"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "hunter2") {
		t.Error("the page shows the password")
	}

	// The live figures move with the Router's state.
	desk.states[0].Quotas[1].Used, desk.states[0].Cooling = 240, false
	_, js := op.do(http.MethodGet, "/mail-servers.json", nil, nil)
	var live struct {
		Text   map[string]string `json:"text"`
		Routes []struct {
			URL    string `json:"url"`
			Quotas []struct {
				Used *int `json:"used"`
			} `json:"quotas"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(js), &live); err != nil {
		t.Fatal(err)
	}
	if live.Text["route-ses-quota-1"] != "240 of 3,000 in 1h0m0s" || live.Text["route-ses-state"] != "up" {
		t.Errorf("live text %v", live.Text)
	}
	if len(live.Routes) != 1 || live.Routes[0].Quotas[1].Used == nil || *live.Routes[0].Quotas[1].Used != 240 {
		t.Errorf("routes JSON %s", js)
	}
	if strings.Contains(js, "hunter2") {
		t.Error("mail-servers.json shows the password")
	}

	// Changing the rate with the URL left empty keeps the saved URL.
	if resp, _ := op.post("/mail-servers/routes", url.Values{"editing": {"1"}, "name": {"ses"}, "rate": {"20"},
		"quotas": {"50000/24h"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("changing the route: %d", resp.StatusCode)
	}
	if r, err := e.st.Route(context.Background(), "ses"); err != nil || r.Rate != 20 || len(r.Quotas) != 1 || r.URL != saved.URL {
		t.Errorf("changed route %+v, %v", r, err)
	}
}

func TestRoutePinnedIsNotRemoved(t *testing.T) {
	e, _ := routesEnv(t)
	ctx := context.Background()
	if err := e.st.SaveRoute(ctx, postoffice.Route{Name: "ses", URL: "smtp://relay.example"}); err != nil {
		t.Fatal(err)
	}
	job := e.job(e.issuer("acme"), "Spring")
	if err := e.st.PinJobRoute(ctx, job.Key, "ses"); err != nil {
		t.Fatal(err)
	}
	op, _ := e.signIn("op@example.com", "")
	op.post("/mail-servers/routes/remove", url.Values{"name": {"ses"}})
	_, body := op.do(http.MethodGet, "/mail-servers", nil, nil) // with the flash
	if !strings.Contains(body, "job "+strconv.FormatInt(job.Key, 10)+" is pinned to it") || !strings.Contains(body, "name:") {
		t.Errorf("removing a pinned route said\n%.500s", body)
	}
	if _, err := e.st.Route(ctx, "ses"); err != nil {
		t.Errorf("the pinned route went: %v", err)
	}
	if err := e.st.SetJobState(ctx, job.Key, postoffice.JobDone, "done"); err != nil {
		t.Fatal(err)
	}
	op.post("/mail-servers/routes/remove", url.Values{"name": {"ses"}})
	if _, err := e.st.Route(ctx, "ses"); err == nil {
		t.Error("the route stayed once no job was pinned to it")
	}
}

func TestJobReportSaysWhyItWaits(t *testing.T) {
	po := postoffice.New(postoffice.Config{})
	e := newEnv(t, func(d *toolbox.Deps) { d.PostOffice = po })
	ctx := context.Background()
	if err := e.st.RegisterMailServers(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	job := e.job(e.issuer("acme"), "Spring")
	if err := e.st.SetJobState(ctx, job.Key, postoffice.JobRunning, ""); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AssignJob(ctx, job.Key, 1); err != nil {
		t.Fatal(err)
	}
	note := "waiting: route ses over its 24h0m0s quota of 500 until 14:05:00"
	po.Report(postoffice.MailServerStatus{ID: 1, Name: "mail-1", State: "waiting", Note: note})
	op, _ := e.signIn("op@example.com", "")
	doc := op.page("/jobs/"+strconv.FormatInt(job.Key, 10), http.StatusOK)
	if got := byTestID(doc, "waiting"); len(got) != 1 || strings.TrimSpace(text(got[0])) != note {
		t.Errorf("the report's waiting note: %d elements, want %q", len(got), note)
	}
	var p struct {
		Waiting string `json:"waiting"`
	}
	_, js := op.do(http.MethodGet, "/jobs/"+strconv.FormatInt(job.Key, 10)+"/progress.json", nil, nil)
	if err := json.NewDecoder(bytes.NewReader([]byte(js))).Decode(&p); err != nil || p.Waiting != note {
		t.Errorf("progress.json waiting %q (%v), want %q", p.Waiting, err, note)
	}
	// Once it sends again the note goes.
	po.Report(postoffice.MailServerStatus{ID: 1, Name: "mail-1", State: "sending"})
	_, js = op.do(http.MethodGet, "/jobs/"+strconv.FormatInt(job.Key, 10)+"/progress.json", nil, nil)
	if strings.Contains(js, "quota of 500") {
		t.Errorf("progress.json still waits: %s", js)
	}
}

func TestRoutesAPI(t *testing.T) {
	desk := &storeDesk{}
	var logs bytes.Buffer
	e := newEnv(t, func(d *toolbox.Deps) {
		d.Routes, d.PostOffice = desk, postoffice.New(postoffice.Config{})
		d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	desk.Store = e.st
	op := e.apiKey(nil)
	acme := e.issuer("acme")
	issuer := e.apiKey(&acme)
	const good = `{"name": "ses", "url": "smtps://key:hunter2@email-smtp.example:465", "rate": 14, "connections": 4,
		"quotas": ["50000/24h", "3000/1h"]}`

	e.call(issuer, http.MethodGet, "/api/v1/routes", "").wantError(t, http.StatusForbidden, "")
	e.call(issuer, http.MethodPost, "/api/v1/routes", good).wantError(t, http.StatusForbidden, "")
	for body, field := range map[string]string{
		`{"name": "bad", "url": "http://relay.example"}`:                             "url",
		`{"name": "bad", "url": "smtp://relay.example", "rate": 0}`:                  "rate",
		`{"name": "bad", "url": "smtp://relay.example", "rate": -1}`:                 "rate",
		`{"name": "bad", "url": "smtp://relay.example", "quotas": ["10/0s"]}`:        "quotas[0]",
		`{"name": "bad", "url": "smtp://relay.example", "connections": -3}`:          "connections",
		`{"name": "Bad Name", "url": "smtps://key:hunter2@relay.example"}`:           "name",
		`{"name": "bad", "url": "smtp://relay.example", "quotas": ["1/1h", "0/1h"]}`: "quotas[1]",
		`{"name": "bad", "url": "smtp://relay.example", "warmup": "lots"}`:           "warmup",
	} {
		msg := e.call(op, http.MethodPost, "/api/v1/routes", body).wantError(t, http.StatusUnprocessableEntity, field)
		if strings.Contains(msg, "hunter2") {
			t.Errorf("%s: the refusal shows the password: %s", body, msg)
		}
	}
	if routes, _ := e.st.Routes(context.Background()); len(routes) != 0 {
		t.Fatalf("refused routes were saved: %+v", routes)
	}

	created := e.call(op, http.MethodPost, "/api/v1/routes", good)
	var rt struct {
		Name   string `json:"name"`
		URL    string `json:"url"`
		Rate   float64
		Quotas []struct {
			Limit  int    `json:"limit"`
			Window string `json:"window"`
		} `json:"quotas"`
	}
	created.want(t, http.StatusCreated, &rt)
	if rt.Name != "ses" || rt.URL != "smtps://key:xxxxx@email-smtp.example:465" || rt.Rate != 14 || len(rt.Quotas) != 2 {
		t.Errorf("created %s", created.body)
	}
	e.call(op, http.MethodPost, "/api/v1/routes", good).wantError(t, http.StatusConflict, "name")
	// An update without a URL keeps the saved one.
	e.call(op, http.MethodPut, "/api/v1/routes/ses", `{"rate": 20, "quotas": ["50000/24h"]}`).want(t, http.StatusOK, nil)
	if r, err := e.st.Route(context.Background(), "ses"); err != nil || r.Rate != 20 || len(r.Quotas) != 1 ||
		r.URL != "smtps://key:hunter2@email-smtp.example:465" {
		t.Errorf("updated %+v, %v", r, err)
	}
	e.call(op, http.MethodPut, "/api/v1/routes/ses", `{"rate": 0}`).wantError(t, http.StatusUnprocessableEntity, "rate")
	e.call(op, http.MethodPut, "/api/v1/routes/nope", `{"rate": 3}`).wantError(t, http.StatusNotFound, "")
	list := e.call(op, http.MethodGet, "/api/v1/routes", "")
	list.want(t, http.StatusOK, nil)
	one := e.call(op, http.MethodGet, "/api/v1/routes/ses", "")
	one.want(t, http.StatusOK, nil)
	for _, body := range []string{created.body, list.body, one.body, logs.String()} {
		if strings.Contains(body, "hunter2") {
			t.Errorf("the password shows in %.300s", body)
		}
	}
	if !strings.Contains(list.body, `"name":"ses"`) {
		t.Errorf("the list lacks ses: %s", list.body)
	}

	// Removing: refused while a job is pinned to the route, naming the field; then done.
	ctx := context.Background()
	job := e.job(acme, "Spring")
	if err := e.st.PinJobRoute(ctx, job.Key, "ses"); err != nil {
		t.Fatal(err)
	}
	msg := e.call(op, http.MethodDelete, "/api/v1/routes/ses", "").wantError(t, http.StatusConflict, "name")
	if !strings.Contains(msg, "pinned") {
		t.Errorf("removing a pinned route: %s", msg)
	}
	if err := e.st.SetJobState(ctx, job.Key, postoffice.JobDone, "done"); err != nil {
		t.Fatal(err)
	}
	resp, _ := e.anonymous().do(http.MethodDelete, "/api/v1/routes/ses", nil, http.Header{"Authorization": {"Bearer " + op}})
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("removing ses: %d", resp.StatusCode)
	}
	e.call(op, http.MethodGet, "/api/v1/routes/ses", "").wantError(t, http.StatusNotFound, "")
}
