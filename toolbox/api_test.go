package toolbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/toolbox"
)

// withAPI gives the toolbox its API store and a post office over the same database.
func withAPI(d *toolbox.Deps) {
	st := d.Store.(*store.Store)
	d.Logger = slog.New(slog.DiscardHandler)
	d.PostOffice = postoffice.New(postoffice.Config{Store: st, Logger: d.Logger})
}

// apiKey stores an API key for issuer (an operator's key when iss is nil) and returns its
// secret, made as toolbox key creation makes it: the store keeps its SHA-256.
func (e *env) apiKey(iss *rewards.Issuer) string {
	e.t.Helper()
	k := &rewards.APIKey{Name: "test"}
	if iss != nil {
		k.IssuerID = iss.ID
	}
	secret := "pp_" + rand.Text()
	k.Prefix = secret[:8]
	h := sha256.Sum256([]byte(secret))
	if err := e.st.CreateAPIKey(context.Background(), k, h[:], time.Now()); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

type apiResp struct {
	status int
	header http.Header
	body   string
}

// call sends a JSON API request with key (none when ""), body sent as application/json.
func (e *env) call(key, method, path, body string) apiResp {
	e.t.Helper()
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	var resp *http.Response
	var text string
	if body != "" {
		h.Set("Content-Type", "application/json")
		resp, text = e.anonymous().do(method, path, strings.NewReader(body), h)
	} else {
		resp, text = e.anonymous().do(method, path, nil, h)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: Content-Type %q, want JSON\n%.300s", method, path, ct, text)
	}
	return apiResp{status: resp.StatusCode, header: resp.Header, body: text}
}

// want checks the status and decodes the body into v (if not nil).
func (r apiResp) want(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d\n%.500s", r.status, status, r.body)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.body), v); err != nil {
			t.Fatalf("body is not the JSON expected: %v\n%.500s", err, r.body)
		}
	}
}

// wantError checks an error answer: its status, and the field it names.
func (r apiResp) wantError(t *testing.T, status int, field string) string {
	t.Helper()
	var b struct {
		Error struct {
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	r.want(t, status, &b)
	if b.Error.Message == "" || b.Error.Field != field {
		t.Fatalf("error %+v, want a message naming field %q", b.Error, field)
	}
	return b.Error.Message
}

type jobJSON struct {
	Key       int64  `json:"key"`
	Issuer    string `json:"issuer"`
	State     string `json:"state"`
	Suspended bool   `json:"suspended"`
	Matching  *int   `json:"matching"`
	Counts    *struct {
		Total, Sent, Pending, Retrying, Rejected, Failed, Received int
	} `json:"counts"`
}

func TestAPIRefusesRequestsWithoutAValidKey(t *testing.T) {
	e := newEnv(t, withAPI)
	acme := e.issuer("acme")
	good := e.apiKey(&acme)
	revoked := e.apiKey(&acme)
	keys, err := e.st.APIKeys(context.Background(), acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.RevokeAPIKey(context.Background(), keys[0].ID, acme.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]string{
		"no key":      "",
		"basic":       "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
		"bearer only": "Bearer ",
		"bad key":     "Bearer pp_not-a-key",
		"revoked key": "Bearer " + revoked,
	} {
		header := http.Header{}
		if h != "" {
			header.Set("Authorization", h)
		}
		resp, body := e.anonymous().do(http.MethodGet, "/api/v1/jobs", nil, header)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") ||
			!strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %q %s, want 401 with WWW-Authenticate: Bearer and a JSON error", name, resp.StatusCode,
				resp.Header.Get("WWW-Authenticate"), body)
		}
	}
	e.call(good, http.MethodGet, "/api/v1/jobs", "").want(t, http.StatusOK, nil)
}

func TestAPIKeyUseIsRecordedAtMostOnceAMinute(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := newEnv(t, withAPI, func(d *toolbox.Deps) {
		d.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	key := e.apiKey(nil)
	lastUsed := func() time.Time {
		keys, err := e.st.APIKeys(context.Background(), 0)
		if err != nil || len(keys) != 1 {
			t.Fatal(keys, err)
		}
		return keys[0].LastUsedAt
	}
	step := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
		e.call(key, http.MethodGet, "/api/v1/jobs", "").want(t, http.StatusOK, nil)
	}
	t0 := now
	step(0)
	if !lastUsed().Equal(t0) {
		t.Fatalf("last used %v after the first call at %v", lastUsed(), t0)
	}
	step(30 * time.Second)
	if !lastUsed().Equal(t0) {
		t.Fatalf("last used written again 30 s later: %v", lastUsed())
	}
	step(31 * time.Second)
	if want := t0.Add(61 * time.Second); !lastUsed().Equal(want) {
		t.Fatalf("last used %v, want %v a minute on", lastUsed(), want)
	}
}

func TestAPIListsOnlyTheKeysJobs(t *testing.T) {
	e := newEnv(t, withAPI)
	acme, bolt := e.issuer("acme"), e.issuer("bolt")
	a1, b1, a2 := e.job(acme, "a1"), e.job(bolt, "b1"), e.job(acme, "a2")
	var list struct {
		Jobs []jobJSON `json:"jobs"`
		Next string    `json:"next"`
	}
	e.call(e.apiKey(nil), http.MethodGet, "/api/v1/jobs", "").want(t, http.StatusOK, &list)
	if got := keysOf(list.Jobs); got != fmt.Sprint([]int64{a2.Key, b1.Key, a1.Key}) || list.Next != "" {
		t.Fatalf("operator's list %s next %q, want every job newest first", got, list.Next)
	}
	acmeKey := e.apiKey(&acme)
	e.call(acmeKey, http.MethodGet, "/api/v1/jobs", "").want(t, http.StatusOK, &list)
	if got := keysOf(list.Jobs); got != fmt.Sprint([]int64{a2.Key, a1.Key}) || list.Jobs[0].Issuer != "acme" {
		t.Fatalf("acme's list %s, want acme's jobs only", got)
	}
	// Pages: one job, then the next link to the other.
	e.call(acmeKey, http.MethodGet, "/api/v1/jobs?limit=1", "").want(t, http.StatusOK, &list)
	if keysOf(list.Jobs) != fmt.Sprint([]int64{a2.Key}) || list.Next == "" {
		t.Fatalf("first page %s next %q", keysOf(list.Jobs), list.Next)
	}
	next := list.Next
	list.Next = ""
	e.call(acmeKey, http.MethodGet, next, "").want(t, http.StatusOK, &list)
	if keysOf(list.Jobs) != fmt.Sprint([]int64{a1.Key}) {
		t.Fatalf("second page %s", keysOf(list.Jobs))
	}
	e.call(acmeKey, http.MethodGet, "/api/v1/jobs?limit=0", "").wantError(t, http.StatusUnprocessableEntity, "limit")
	e.call(acmeKey, http.MethodGet, "/api/v1/jobs?before=x", "").wantError(t, http.StatusUnprocessableEntity, "before")
}

func keysOf(jobs []jobJSON) string {
	keys := make([]int64, len(jobs))
	for i, j := range jobs {
		keys[i] = j.Key
	}
	return fmt.Sprint(keys)
}

func TestAPIIssuerKeyCannotReachAnotherIssuersJob(t *testing.T) {
	e := newEnv(t, withAPI)
	acme, bolt := e.issuer("acme"), e.issuer("bolt")
	theirs := e.job(bolt, "theirs")
	key := e.apiKey(&acme)
	base := fmt.Sprintf("/api/v1/jobs/%d", theirs.Key)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, base}, {http.MethodGet, base + "/stats"},
		{http.MethodPost, base + "/suspend"}, {http.MethodPost, base + "/resume"},
		{http.MethodPost, base + "/stop"}, {http.MethodPost, base + "/schedule"},
		{http.MethodGet, "/api/v1/jobs/999"}, {http.MethodGet, "/api/v1/jobs/abc"},
	} {
		r := e.call(key, c.method, c.path, "")
		if r.status != http.StatusNotFound || !strings.Contains(r.body, `"error"`) || strings.Contains(r.body, "theirs") {
			t.Errorf("%s %s: %d %s, want a 404 JSON error that tells nothing", c.method, c.path, r.status, r.body)
		}
	}
	after, err := e.st.Job(context.Background(), theirs.Key)
	if err != nil {
		t.Fatal(err)
	}
	if after.Suspended || after.State != theirs.State {
		t.Fatalf("bolt's job changed through acme's key: suspended %v, state %s", after.Suspended, after.State)
	}
	// bolt's own key reaches it.
	e.call(e.apiKey(&bolt), http.MethodGet, base, "").want(t, http.StatusOK, nil)
}

// campaign is a campaign file's JSON for issuer ("" leaves the field out).
func campaign(issuer, selection string) string {
	now := time.Now().UTC()
	c := map[string]any{
		"name": "Spring", "start": now.Add(time.Hour).Format(time.RFC3339), "stop": now.Add(48 * time.Hour).Format(time.RFC3339),
		"client_count": 100, "text": map[string]string{"subject": "Earn 10 points", "body": "Hello <_&getUserName_>"},
		"rules": []map[string]any{{"type": "reply", "points": 10, "frequency": "once"}},
	}
	if issuer != "" {
		c["issuer"] = issuer
	}
	if selection != "" {
		c["selection"] = json.RawMessage(selection)
	}
	b, _ := json.Marshal(c)
	return string(b)
}

func TestAPICreatesAJob(t *testing.T) {
	e := newEnv(t, withAPI)
	acme := e.issuer("acme")
	e.issuer("bolt")
	ctx := context.Background()
	if _, _, err := e.st.UpsertConsumers(ctx, []rewards.Consumer{
		{Email: "a@example.com", Country: "US"}, {Email: "b@example.com", Country: "US"}, {Email: "c@example.com", Country: "FR"},
	}); err != nil {
		t.Fatal(err)
	}
	key := e.apiKey(&acme)
	sel := `{"all": [{"field": "country", "op": "=", "value": "US"}]}`
	r := e.call(key, http.MethodPost, "/api/v1/jobs", campaign("", sel))
	var created jobJSON
	r.want(t, http.StatusCreated, &created)
	if created.Issuer != "acme" || created.State != "scheduled" || created.Matching == nil || *created.Matching != 2 ||
		created.Counts == nil || r.header.Get("Location") != fmt.Sprintf("/api/v1/jobs/%d", created.Key) {
		t.Fatalf("created %+v at %q, want acme's scheduled job matching 2", created, r.header.Get("Location"))
	}
	job, err := e.st.Job(ctx, created.Key)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	json.Compact(&compact, []byte(sel)) // as json.Marshal sent it
	if job.IssuerID != acme.ID || job.Selection != compact.String() || !strings.Contains(job.SelectionSQL, "country") || job.ClientCount != 100 {
		t.Fatalf("stored job %+v", job)
	}
	if rules, err := e.st.JobRules(ctx, job.Key); err != nil || len(rules) != 1 || rules[0].Points != 10 {
		t.Fatalf("job rules %+v %v, want the reply rule of 10", rules, err)
	}
	// GET shows the same job.
	var got jobJSON
	e.call(key, http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d", job.Key), "").want(t, http.StatusOK, &got)
	if got.Key != job.Key || got.Counts == nil {
		t.Fatalf("status %+v", got)
	}
	// An operator's key may write raw SQL and create for any issuer.
	e.call(e.apiKey(nil), http.MethodPost, "/api/v1/jobs", campaign("bolt", `{"sql": "country = 'FR'"}`)).
		want(t, http.StatusCreated, nil)
}

func TestAPIRefusesBadJobs(t *testing.T) {
	e := newEnv(t, withAPI)
	acme := e.issuer("acme")
	e.issuer("bolt")
	key := e.apiKey(&acme)
	post := func(body string) apiResp { return e.call(key, http.MethodPost, "/api/v1/jobs", body) }
	valid := campaign("", "")

	post(campaign("bolt", "")).wantError(t, http.StatusForbidden, "issuer")
	post(campaign("", `{"sql": "1"}`)).wantError(t, http.StatusForbidden, "selection.sql")
	// The matching count of a job selecting one address would tell whether she is enrolled.
	post(campaign("", `{"any": [{"field": "country", "op": "=", "value": "US"}, {"field": "email", "op": "=", "value": "bo@example.com"}]}`)).
		wantError(t, http.StatusForbidden, "selection")
	post(strings.Replace(valid, `"client_count":100`, `"client_count":0`, 1)).wantError(t, http.StatusUnprocessableEntity, "client_count")
	post(strings.Replace(valid, `"client_count":100`, `"client_count":"many"`, 1)).wantError(t, http.StatusUnprocessableEntity, "client_count")
	post(campaign("", `{"all": [{"field": "country", "op": "~", "value": "US"}]}`)).
		wantError(t, http.StatusUnprocessableEntity, "selection.all[0].op")
	post(strings.Replace(valid, `"name"`, `"nmae"`, 1)).wantError(t, http.StatusUnprocessableEntity, "nmae")
	if msg := post(`{"name": "x",`).wantError(t, http.StatusBadRequest, ""); !strings.Contains(msg, "JSON") {
		t.Errorf("malformed JSON: %q does not say it is not JSON", msg)
	}
	if msg := post(`{"name": "x" "stop": 1}`).wantError(t, http.StatusBadRequest, ""); !strings.Contains(msg, "byte 14") {
		t.Errorf("malformed JSON: %q does not say where", msg)
	}
	post(" ").wantError(t, http.StatusBadRequest, "")
	big := strings.Replace(valid, `"Hello `, `"`+strings.Repeat("x", 1<<20)+` `, 1)
	post(big).wantError(t, http.StatusRequestEntityTooLarge, "")

	resp, body := e.anonymous().do(http.MethodPost, "/api/v1/jobs", strings.NewReader(valid), http.Header{
		"Authorization": {"Bearer " + key}, "Content-Type": {"application/x-www-form-urlencoded"}})
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form-encoded body: %d %s, want 415", resp.StatusCode, body)
	}
	if jobs, err := e.st.Jobs(context.Background()); err != nil || len(jobs) != 0 {
		t.Fatalf("refused requests stored jobs: %d %v", len(jobs), err)
	}
}

func TestAPISuspendsAndResumesAJob(t *testing.T) {
	e := newEnv(t, withAPI)
	acme := e.issuer("acme")
	job := e.job(acme, "spring")
	key := e.apiKey(&acme)
	path := fmt.Sprintf("/api/v1/jobs/%d", job.Key)
	ctx := context.Background()
	var got jobJSON
	e.call(key, http.MethodPost, path+"/suspend", "").want(t, http.StatusOK, &got)
	if j, _ := e.st.Job(ctx, job.Key); !got.Suspended || !j.Suspended {
		t.Fatalf("after suspend: answer %v, stored %v", got.Suspended, j.Suspended)
	}
	e.call(key, http.MethodPost, path+"/resume", "").want(t, http.StatusOK, &got)
	if j, _ := e.st.Job(ctx, job.Key); got.Suspended || j.Suspended {
		t.Fatalf("after resume: answer %v, stored %v", got.Suspended, j.Suspended)
	}
	e.call(key, http.MethodPost, path+"/schedule", "").wantError(t, http.StatusConflict, "state")
	e.call(key, http.MethodPost, path+"/stop", "").want(t, http.StatusOK, &got)
	if j, _ := e.st.Job(ctx, job.Key); got.State != "done" || j.State != postoffice.JobDone {
		t.Fatalf("after stop: answer %s, stored %s", got.State, j.State)
	}
	e.call(key, http.MethodPost, path+"/suspend", "").wantError(t, http.StatusConflict, "state")

	// A draft made through the API is scheduled through it.
	var draft jobJSON
	e.call(key, http.MethodPost, "/api/v1/jobs", strings.Replace(campaign("", ""), `"name"`, `"draft":true,"name"`, 1)).
		want(t, http.StatusCreated, &draft)
	if draft.State != "draft" {
		t.Fatalf("draft created as %s", draft.State)
	}
	e.call(key, http.MethodPost, fmt.Sprintf("/api/v1/jobs/%d/schedule", draft.Key), "").want(t, http.StatusOK, &got)
	if got.State != "scheduled" {
		t.Fatalf("scheduled draft is %s", got.State)
	}
}

type consumerJSON struct {
	ID         int64             `json:"id"`
	Email      string            `json:"email"`
	FirstName  *string           `json:"first_name"`
	City       string            `json:"city"`
	BirthYear  int               `json:"birth_year"`
	Interests  []string          `json:"interests"`
	Format     string            `json:"format"`
	Attributes map[string]string `json:"attributes"`
	Status     string            `json:"status"`
}

func TestAPICreatesUpdatesAndReadsConsumers(t *testing.T) {
	e := newEnv(t, withAPI)
	key := e.apiKey(nil)
	var c consumerJSON
	r := e.call(key, http.MethodPost, "/api/v1/consumers", `{"email": " Zoe@Example.com ", "first_name": "Zoë",
		"city": "Lyon", "birth_year": 1990, "interests": ["Golf", "golf", "tennis"], "format": "HTML",
		"attributes": {"Loyalty Tier": "gold"}}`)
	r.want(t, http.StatusCreated, &c)
	if c.ID == 0 || c.Email != "zoe@example.com" || *c.FirstName != "Zoë" || c.Format != "html" ||
		fmt.Sprint(c.Interests) != "[golf tennis]" || c.Attributes["loyalty_tier"] != "gold" || c.Status != "active" {
		t.Fatalf("created %+v", c)
	}
	if r.header.Get("Location") != fmt.Sprintf("/api/v1/consumers/%d", c.ID) {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	// An update by address: given fields change, the others stay.
	var u consumerJSON
	e.call(key, http.MethodPost, "/api/v1/consumers", `{"email": "zoe@example.com", "city": "Paris"}`).want(t, http.StatusOK, &u)
	if u.ID != c.ID || u.City != "Paris" || *u.FirstName != "Zoë" || u.BirthYear != 1990 {
		t.Fatalf("updated %+v", u)
	}
	for _, ref := range []string{"zoe@example.com", "ZOE%40example.com", fmt.Sprint(c.ID)} {
		var g consumerJSON
		e.call(key, http.MethodGet, "/api/v1/consumers/"+ref, "").want(t, http.StatusOK, &g)
		if g.ID != c.ID || g.City != "Paris" {
			t.Fatalf("GET %s: %+v", ref, g)
		}
	}
	e.call(key, http.MethodGet, "/api/v1/consumers/nobody@example.com", "").wantError(t, http.StatusNotFound, "")
	e.call(key, http.MethodGet, "/api/v1/consumers/0", "").wantError(t, http.StatusNotFound, "")
}

func TestAPIRefusesBadConsumers(t *testing.T) {
	e := newEnv(t, withAPI)
	key := e.apiKey(nil)
	post := func(body string) apiResp { return e.call(key, http.MethodPost, "/api/v1/consumers", body) }
	post(`{"email": "not an address"}`).wantError(t, http.StatusUnprocessableEntity, "email")
	post(`{"email": "Zoe <zoe@example.com>"}`).wantError(t, http.StatusUnprocessableEntity, "email")
	post(`{"first_name": "Zoë"}`).wantError(t, http.StatusUnprocessableEntity, "email")
	post(`{"email": "zoe@example.com", "birth_year": 1850}`).wantError(t, http.StatusUnprocessableEntity, "birth_year")
	post(`{"email": "zoe@example.com", "birth_year": "1990"}`).wantError(t, http.StatusUnprocessableEntity, "birth_year")
	post(`{"email": "zoe@example.com", "format": "rtf"}`).wantError(t, http.StatusUnprocessableEntity, "format")
	post(`{"email": "zoe@example.com", "city": "Lyon\nParis"}`).wantError(t, http.StatusUnprocessableEntity, "city")
	post(`{"email": "zoe@example.com", "status": "active"}`).wantError(t, http.StatusUnprocessableEntity, "status")
	post(`{"email": "zoe@example.com", "attributes": {"email": "x"}}`).wantError(t, http.StatusUnprocessableEntity, "attributes.email")
	post(`{"email": "zoe@example.com", "attributes": {"a.b": "x"}}`).wantError(t, http.StatusUnprocessableEntity, "attributes.a.b")
	post(`["zoe@example.com"]`).wantError(t, http.StatusUnprocessableEntity, "")
	post(`{"email": "zoe@example.com"`).wantError(t, http.StatusBadRequest, "")
	post(`{"email": "zoe@example.com"} {}`).wantError(t, http.StatusBadRequest, "")

	// A batch with one bad consumer is refused whole, naming it.
	post(`{"consumers": [{"email": "a@example.com"}, {"email": "b@"}]}`).wantError(t, http.StatusUnprocessableEntity, "consumers[1].email")
	post(`{"consumers": [{"email": "a@example.com", "colour": "red"}]}`).wantError(t, http.StatusUnprocessableEntity, "consumers[0].colour")
	post(`{"consumers": []}`).wantError(t, http.StatusUnprocessableEntity, "consumers")
	post(`{"consumers": {"email": "a@example.com"}}`).wantError(t, http.StatusUnprocessableEntity, "consumers")
	post(`{"consumers": [], "email": "a@example.com"}`).wantError(t, http.StatusUnprocessableEntity, "email")
	var many bytes.Buffer
	many.WriteString(`{"consumers": [`)
	for i := range 1001 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `{"email": "c%d@example.com"}`, i)
	}
	many.WriteString(`]}`)
	post(many.String()).wantError(t, http.StatusUnprocessableEntity, "consumers")
	if n, err := e.st.CountConsumers(context.Background()); err != nil || n != 0 {
		t.Fatalf("refused requests stored %d consumers (%v)", n, err)
	}
}

func TestAPIUpsertsABatchOfConsumers(t *testing.T) {
	e := newEnv(t, withAPI)
	key := e.apiKey(nil)
	if _, _, err := e.st.UpsertConsumers(context.Background(), []rewards.Consumer{{Email: "b@example.com", City: "Rome"}}); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Inserted, Updated int
		Consumers         []consumerJSON
	}
	e.call(key, http.MethodPost, "/api/v1/consumers", `{"consumers": [{"email": "a@example.com"},
		{"email": "B@example.com", "first_name": "Bea"}, {"email": "c@example.com", "format": "html"}]}`).
		want(t, http.StatusCreated, &out)
	if out.Inserted != 2 || out.Updated != 1 || len(out.Consumers) != 3 || out.Consumers[1].Email != "b@example.com" {
		t.Fatalf("batch answer %+v", out)
	}
	for _, c := range out.Consumers {
		stored, err := e.st.ConsumerByID(context.Background(), c.ID)
		if err != nil || stored.Email != c.Email {
			t.Fatalf("answer %+v, stored %+v (%v)", c, stored, err)
		}
	}
	if b, _ := e.st.ConsumerByEmail(context.Background(), "b@example.com"); b.FirstName != "Bea" || b.City != "Rome" {
		t.Fatalf("b after the batch: %+v", b)
	}
}

func TestAPIIssuerKeyReadsOnlyConsumersItMailed(t *testing.T) {
	e := newEnv(t, withAPI)
	acme, bolt := e.issuer("acme"), e.issuer("bolt")
	ctx := context.Background()
	acmeKey, boltKey := e.apiKey(&acme), e.apiKey(&bolt)
	if _, _, err := e.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "zoe@example.com", FirstName: "Zoë", City: "Lyon"}}); err != nil {
		t.Fatal(err)
	}
	e.call(acmeKey, http.MethodPost, "/api/v1/consumers", `{"email": "zoe@example.com"}`).want(t, http.StatusAccepted, nil)
	path := "/api/v1/consumers/zoe@example.com"
	e.call(acmeKey, http.MethodGet, path, "").wantError(t, http.StatusNotFound, "")
	zoe, err := e.st.ConsumerByEmail(ctx, "zoe@example.com")
	if err != nil {
		t.Fatal(err)
	}
	e.call(acmeKey, http.MethodGet, fmt.Sprint("/api/v1/consumers/", zoe.ID), "").wantError(t, http.StatusNotFound, "")

	// Once acme's job is sent to her, acme reads her; bolt still does not.
	sendJob(t, e, e.job(acme, "spring"))
	var c consumerJSON
	e.call(acmeKey, http.MethodGet, path, "").want(t, http.StatusOK, &c)
	if c.FirstName == nil || *c.FirstName != "Zoë" || c.City != "Lyon" {
		t.Fatalf("acme reads %+v", c)
	}
	e.call(boltKey, http.MethodGet, path, "").wantError(t, http.StatusNotFound, "")
}

// An issuer's key that enrolls an address hears the same whether she was a consumer before
// or not, and leaves an existing consumer's profile as it was.
func TestAPIIssuerEnrollmentNeitherChangesNorRevealsAConsumer(t *testing.T) {
	e := newEnv(t, withAPI)
	acme := e.issuer("acme")
	ctx := context.Background()
	key := e.apiKey(&acme)
	if _, _, err := e.st.UpsertConsumers(ctx, []rewards.Consumer{{Email: "zoe@example.com", FirstName: "Zoë",
		City: "Lyon", Format: rewards.FormatHTML}}); err != nil {
		t.Fatal(err)
	}
	answer := func(email string) (int, string) {
		r := e.call(key, http.MethodPost, "/api/v1/consumers",
			`{"email": "`+email+`", "first_name": "Mallory", "city": "Nowhere", "format": "text"}`)
		return r.status, strings.ReplaceAll(r.body, email, "ADDRESS") + r.header.Get("Location")
	}
	oldStatus, oldBody := answer("zoe@example.com")
	newStatus, newBody := answer("new@example.com")
	if oldStatus != newStatus || oldBody != newBody {
		t.Fatalf("enrolled address: %d %s; new address: %d %s: the answers tell them apart", oldStatus, oldBody, newStatus, newBody)
	}
	zoe, err := e.st.ConsumerByEmail(ctx, "zoe@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if zoe.FirstName != "Zoë" || zoe.City != "Lyon" || zoe.Format != rewards.FormatHTML {
		t.Fatalf("acme's enrollment changed her profile: %+v", zoe)
	}
	fresh, err := e.st.ConsumerByEmail(ctx, "new@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.FirstName != "Mallory" || fresh.City != "Nowhere" {
		t.Fatalf("a new address enrolled as %+v, want the profile given", fresh)
	}
	// A batch answers alike too.
	batch := func(email string) (int, string) {
		r := e.call(key, http.MethodPost, "/api/v1/consumers", `{"consumers": [{"email": "`+email+`", "city": "X"}]}`)
		return r.status, strings.ReplaceAll(r.body, email, "ADDRESS")
	}
	oldStatus, oldBody = batch("zoe@example.com")
	newStatus, newBody = batch("newer@example.com")
	if oldStatus != newStatus || oldBody != newBody {
		t.Fatalf("batch: enrolled address %d %s; new address %d %s", oldStatus, oldBody, newStatus, newBody)
	}
	if zoe, err := e.st.ConsumerByEmail(ctx, "zoe@example.com"); err != nil || zoe.City != "Lyon" {
		t.Fatalf("acme's batch changed her city: %+v %v", zoe, err)
	}
}

// An issuer writes, targets and reads its own attributes and the program's, never another
// issuer's: enrolling a marker attribute and targeting it reveals nothing of bolt's.
func TestAPIIssuerSeesOnlyItsOwnAttributes(t *testing.T) {
	e := newEnv(t, withAPI)
	acme, bolt := e.issuer("acme"), e.issuer("bolt")
	ctx := context.Background()
	acmeKey, boltKey, opKey := e.apiKey(&acme), e.apiKey(&bolt), e.apiKey(nil)
	e.call(opKey, http.MethodPost, "/api/v1/consumers", `{"email": "zoe@example.com", "attributes": {"plan": "gold"}}`).
		want(t, http.StatusCreated, nil)
	e.call(boltKey, http.MethodPost, "/api/v1/consumers", `{"email": "zoe@example.com", "attributes": {"vip": "yes", "plan": "bolt-plan"}}`).
		want(t, http.StatusAccepted, nil)
	e.call(acmeKey, http.MethodPost, "/api/v1/consumers", `{"email": "zoe@example.com", "attributes": {"marker": "1"}}`).
		want(t, http.StatusAccepted, nil)

	var created jobJSON
	e.call(acmeKey, http.MethodPost, "/api/v1/jobs", campaign("", `{"field": "attr.vip", "op": "=", "value": "yes"}`)).
		want(t, http.StatusCreated, &created)
	if created.Matching == nil || *created.Matching != 0 {
		t.Fatalf("acme's selection on bolt's attribute vip matches %v, want 0", created.Matching)
	}
	e.call(acmeKey, http.MethodPost, "/api/v1/jobs", campaign("", `{"field": "attr.marker", "op": "=", "value": "1"}`)).
		want(t, http.StatusCreated, &created)
	if created.Matching == nil || *created.Matching != 1 {
		t.Fatalf("acme's selection on its own marker matches %v, want 1", created.Matching)
	}
	job, err := e.st.Job(ctx, created.Key)
	if err != nil {
		t.Fatal(err)
	}
	sendJob(t, e, job)
	var c consumerJSON
	e.call(acmeKey, http.MethodGet, "/api/v1/consumers/zoe@example.com", "").want(t, http.StatusOK, &c)
	if len(c.Attributes) != 2 || c.Attributes["marker"] != "1" || c.Attributes["plan"] != "gold" {
		t.Fatalf("acme reads attributes %v, want its marker and the program's plan alone", c.Attributes)
	}
	// bolt's own plan shadows the program's, for bolt's selections alone.
	e.call(boltKey, http.MethodPost, "/api/v1/jobs", campaign("", `{"field": "attr.plan", "op": "=", "value": "bolt-plan"}`)).
		want(t, http.StatusCreated, &created)
	if created.Matching == nil || *created.Matching != 1 {
		t.Fatalf("bolt's selection on its own plan matches %v, want 1", created.Matching)
	}
	e.call(opKey, http.MethodGet, "/api/v1/consumers/zoe@example.com", "").want(t, http.StatusOK, &c)
	if c.Attributes["acme:marker"] != "1" || c.Attributes["bolt:vip"] != "yes" || c.Attributes["plan"] != "gold" {
		t.Fatalf("the operator reads %v, want every attribute as stored", c.Attributes)
	}
}

// sendJob selects a job's audience and records every delivery sent.
func sendJob(t *testing.T, e *env, job *postoffice.Job) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := e.st.SelectBatch(ctx, job, false, 1000); err != nil {
		t.Fatal(err)
	}
	rs, err := e.st.DueRecipients(ctx, job.Key, 0, time.Now(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []postoffice.Outcome
	for _, r := range rs {
		out = append(out, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent, At: time.Now()})
	}
	if err := e.st.RecordOutcomes(ctx, out); err != nil {
		t.Fatal(err)
	}
}

func TestAPIJobStats(t *testing.T) {
	e := newEnv(t, withAPI)
	acme := e.issuer("acme")
	ctx := context.Background()
	consumers := []rewards.Consumer{
		{Email: "t1@example.com", Format: "text"}, {Email: "t2@example.com", Format: "text"},
		{Email: "h1@example.com", Format: "html"}, {Email: "h2@example.com", Format: "html"}, {Email: "h3@example.com", Format: "html"},
	}
	if _, _, err := e.st.UpsertConsumers(ctx, consumers); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	job := &postoffice.Job{IssuerID: acme.ID, Name: "stats", State: postoffice.JobRunning, Start: now.Add(-time.Hour),
		Stop: now.Add(time.Hour), ClientCount: 10}
	rules := postoffice.JobRules{New: []*rewards.AwardRule{
		{Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce},
		{Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce}}}
	if err := e.st.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, rules); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.SelectBatch(ctx, job, false, 100); err != nil {
		t.Fatal(err)
	}
	rs, err := e.st.DueRecipients(ctx, job.Key, 0, now, 100)
	if err != nil || len(rs) != 5 {
		t.Fatalf("%d recipients, %v", len(rs), err)
	}
	id := map[string]int64{}
	var outcomes []postoffice.Outcome
	for _, r := range rs {
		id[r.Consumer.Email] = r.Consumer.ID
		kind := postoffice.OutcomeSent
		if r.Consumer.Email == "h3@example.com" {
			kind = postoffice.OutcomeRejected
		}
		outcomes = append(outcomes, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: kind, At: now, Error: "550 no"})
	}
	if err := e.st.RecordOutcomes(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	// t1 replies and clicks (15 points), h1 clicks (5): two of the four sent are received.
	for _, a := range []struct {
		email string
		ch    postoffice.Channel
	}{{"t1@example.com", postoffice.ChannelReply}, {"t1@example.com", postoffice.ChannelClick}, {"h1@example.com", postoffice.ChannelClick}} {
		if _, err := e.st.Acknowledge(ctx, postoffice.Ack{JobKey: job.Key, ConsumerID: id[a.email], Channel: a.ch, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	type rate struct {
		Selected, Sent, Received int
		Rate                     float64
	}
	var stats struct {
		Job int64
		rate
		ByChannel map[string]int  `json:"by_channel"`
		ByFormat  map[string]rate `json:"by_format"`
		Points    struct{ Awarded, Settled, Consumers int64 }
	}
	key := e.apiKey(&acme)
	path := fmt.Sprintf("/api/v1/jobs/%d/stats", job.Key)
	e.call(key, http.MethodGet, path, "").want(t, http.StatusOK, &stats)
	want := rate{Selected: 5, Sent: 4, Received: 2, Rate: 0.5}
	if stats.Job != job.Key || stats.rate != want {
		t.Errorf("totals %+v, want %+v", stats.rate, want)
	}
	if stats.ByChannel["reply"] != 1 || stats.ByChannel["click"] != 2 {
		t.Errorf("by channel %v, want reply 1, click 2", stats.ByChannel)
	}
	if text, html := stats.ByFormat["text"], stats.ByFormat["html"]; text != (rate{2, 2, 1, 0.5}) || html != (rate{3, 2, 1, 0.5}) {
		t.Errorf("by format text %+v html %+v", text, html)
	}
	if p := stats.Points; p.Awarded != 20 || p.Settled != 0 || p.Consumers != 2 {
		t.Errorf("points %+v, want 20 awarded to 2 consumers, none settled", p)
	}
	if _, err := e.st.Settle(ctx, 100); err != nil {
		t.Fatal(err)
	}
	e.call(key, http.MethodGet, path, "").want(t, http.StatusOK, &stats)
	if stats.Points.Settled != 20 {
		t.Errorf("after settlement %+v, want 20 settled", stats.Points)
	}
	// The status shows the same counts.
	var st jobJSON
	e.call(key, http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d", job.Key), "").want(t, http.StatusOK, &st)
	if c := st.Counts; c == nil || c.Total != 5 || c.Sent != 4 || c.Rejected != 1 || c.Received != 2 || c.Pending != 0 {
		t.Errorf("status counts %+v", st.Counts)
	}
}

func TestAPIErrorsAreJSON(t *testing.T) {
	e := newEnv(t, withAPI)
	key := e.apiKey(nil)
	e.call(key, http.MethodGet, "/api/v1/nothing", "").wantError(t, http.StatusNotFound, "")
	e.call(key, http.MethodGet, "/api/v1", "").wantError(t, http.StatusNotFound, "")
	r := e.call(key, http.MethodDelete, "/api/v1/jobs/1", "")
	r.wantError(t, http.StatusMethodNotAllowed, "")
	if r.header.Get("Allow") != "GET" {
		t.Errorf("Allow %q, want GET", r.header.Get("Allow"))
	}
	r = e.call(key, http.MethodGet, "/api/v1/consumers", "")
	r.wantError(t, http.StatusMethodNotAllowed, "")
	if r.header.Get("Allow") != "POST" {
		t.Errorf("Allow %q, want POST", r.header.Get("Allow"))
	}
}

func TestAPIFailureIsInternalErrorAndLogged(t *testing.T) {
	var logged bytes.Buffer
	var mu sync.Mutex
	e := newEnv(t, withAPI, func(d *toolbox.Deps) {
		d.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))
	})
	key := e.apiKey(nil)
	e.st.Close() // every query now fails
	msg := e.call(key, http.MethodGet, "/api/v1/jobs", "").wantError(t, http.StatusInternalServerError, "")
	mu.Lock()
	defer mu.Unlock()
	if msg != "internal error" || !strings.Contains(logged.String(), "closed") {
		t.Fatalf("answered %q; logged %q", msg, logged.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestAPIUnwiredAnswersUnavailable(t *testing.T) {
	e := newEnv(t) // no API store, no post office
	e.call("", http.MethodGet, "/api/v1/jobs", "").wantError(t, http.StatusServiceUnavailable, "")
}

// TestAPIStatsAgreeWithReportPage reads one job through the report page and through the
// API's stats: every figure both show is the same.
func TestAPIStatsAgreeWithReportPage(t *testing.T) {
	e := newEnv(t, withAPI)
	ctx := context.Background()
	acme := e.issuer("acme")
	job := reportJob(t, e, acme, "Spring", "", reportPeople("acme.example"))
	// Settle what is there, then let bob click: some points settled, some not.
	if _, err := e.st.Settle(ctx, 100); err != nil {
		t.Fatal(err)
	}
	bob, err := e.st.ConsumerByEmail(ctx, "bob@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Acknowledge(ctx, postoffice.Ack{JobKey: job.Key, ConsumerID: bob.ID, Channel: postoffice.ChannelClick, At: time.Now()}); err != nil {
		t.Fatal(err)
	}

	var stats struct {
		Sent, Received int
		ByChannel      map[string]int                          `json:"by_channel"`
		ByFormat       map[string]struct{ Sent, Received int } `json:"by_format"`
		Points         struct{ Awarded, Settled, Consumers int64 }
	}
	e.call(e.apiKey(&acme), http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/stats", job.Key), "").want(t, http.StatusOK, &stats)
	// The fixture: 5 sent; ann replied and clicked, cy and bob clicked: 25 points to three,
	// 20 of them settled.
	if stats.Sent != 5 || stats.Received != 3 || stats.Points.Awarded != 25 || stats.Points.Settled != 20 || stats.Points.Consumers != 3 {
		t.Fatalf("fixture: API stats %+v", stats)
	}

	c, _ := e.signIn("ann@acme.example", "acme")
	doc := c.page(fmt.Sprintf("/jobs/%d", job.Key), http.StatusOK)
	stat := func(id string) *html.Node {
		t.Helper()
		cards := byTestID(doc, "stat-"+id)
		if len(cards) != 1 {
			t.Fatalf("%d cards stat-%s", len(cards), id)
		}
		return cards[0]
	}
	for id, api := range map[string]int64{"sent": int64(stats.Sent), "acknowledged": int64(stats.Received),
		"replies": int64(stats.ByChannel["reply"]), "clicks": int64(stats.ByChannel["click"]), "points": stats.Points.Awarded} {
		if got := reportText(t, stat(id), "value"); got != strconv.FormatInt(api, 10) {
			t.Errorf("report %s %q, API %d", id, got, api)
		}
	}
	want := fmt.Sprintf("to %d consumers; %d settled", stats.Points.Consumers, stats.Points.Settled)
	if got := reportText(t, stat("points"), "hint"); got != want {
		t.Errorf("report's points hint %q, API says %q", got, want)
	}
	rates := byTestID(doc, "rates-format")
	if len(rates) != 1 {
		t.Fatalf("%d format tables", len(rates))
	}
	seen := 0
	for _, row := range byTestID(rates[0], "rate") {
		api, ok := stats.ByFormat[attr(row, "data-value")]
		got := [2]string{reportText(t, row, "rate-sent"), reportText(t, row, "rate-received")}
		if !ok || got != [2]string{strconv.Itoa(api.Sent), strconv.Itoa(api.Received)} {
			t.Errorf("format %q: report %v, API %+v", attr(row, "data-value"), got, api)
		}
		seen++
	}
	if seen != 2 {
		t.Errorf("report lists %d formats, want text and html", seen)
	}
}
