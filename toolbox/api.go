package toolbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/web"
)

// The JSON API under /api/v1, for issuers' and operators' systems: consumers (create or
// update, for enrollment systems; read), jobs (create from a campaign file's JSON, status,
// suspend, resume, schedule, stop) and a job's acknowledgement statistics.
//
// Every request carries an API key as "Authorization: Bearer pp_…". An operator's key
// reaches every issuer; an issuer's key reaches that issuer's jobs only, and any other job
// answers 404 as if it did not exist. Consumers are shared by all issuers (database 165):
// an issuer's key may enroll any address and write its own attributes, but never changes an
// existing consumer's profile, hears the same answer whether or not an address was enrolled
// before, and reads only consumers that one of its jobs was sent to, with its own and the
// program's attributes (see README, "Consumers across issuers"). An operator's key creates
// and updates profiles.
//
// Every error is JSON, {"error": {"message": "...", "field": "client_count"}}, field naming
// the part of the request that is wrong when there is one.

// apiStore is what the JSON API reads and changes beyond the other areas' stores. A job's
// statistics are read through the report's store (reportStore), so the API and the report
// page count alike.
type apiStore interface {
	UpsertConsumers(ctx context.Context, batch []rewards.Consumer) (inserted, updated int, err error)
	EnrollConsumers(ctx context.Context, slug string, batch []rewards.Consumer) (inserted, updated int, err error)
	ConsumerByEmail(ctx context.Context, email string) (*rewards.Consumer, error)
	ConsumerByID(ctx context.Context, id int64) (*rewards.Consumer, error)
	APIConsumerIDs(ctx context.Context, emails []string) (map[string]int64, error)
	APIConsumerVisible(ctx context.Context, consumerID, issuerID int64) (bool, error)
	APIJobs(ctx context.Context, issuerID, before int64, limit int) ([]*postoffice.Job, error)
}

// apiKeyStore finds the key a request carries and notes its use.
type apiKeyStore interface {
	APIKeyByHash(ctx context.Context, keyHash []byte) (*rewards.APIKey, error)
	TouchAPIKey(ctx context.Context, id int64, now time.Time) error
}

// apiHandler serves the JSON API.
type apiHandler struct {
	jobPages
	store    apiStore
	accounts apiKeyStore
	reports  reportStore
	routes   RouteDesk
	po       *postoffice.PostOffice
	schedule scheduler
}

const (
	// apiMaxBody bounds a request body: a campaign, or a batch of 1,000 consumers.
	apiMaxBody = 1 << 20
	// apiMaxBatch is the most consumers one request may create or update.
	apiMaxBatch = 1000
	// apiMaxJobs is the longest page of jobs.
	apiMaxJobs = 1000
)

// apiRoutes serve the JSON API, authenticated by API key.
func (d apiHandler) apiRoutes(r chi.Router) {
	if d.store == nil || d.reports == nil || d.po == nil {
		// A server wired without them answers plainly rather than failing on a nil store.
		r.HandleFunc("/*", func(w http.ResponseWriter, _ *http.Request) {
			apiError(w, http.StatusServiceUnavailable, "", "the JSON API is not set up on this server")
		})
		return
	}
	r.Use(d.apiAuth)
	r.NotFound(func(w http.ResponseWriter, req *http.Request) {
		apiError(w, http.StatusNotFound, "", "there is no API endpoint "+req.URL.Path)
	})
	routes := r
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		path := chi.RouteContext(req.Context()).RoutePath
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			if routes.Match(chi.NewRouteContext(), m, path) {
				allow = append(allow, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		apiError(w, http.StatusMethodNotAllowed, "", fmt.Sprintf("%s %s is not allowed: use %s",
			req.Method, req.URL.Path, strings.Join(allow, " or ")))
	})
	r.Post("/consumers", d.api(d.apiUpsertConsumers))
	r.Get("/consumers/{id}", d.api(d.apiConsumer))
	r.Post("/jobs", d.api(d.apiCreateJob))
	r.Get("/jobs", d.api(d.apiJobs))
	r.Get("/jobs/{key}", d.api(d.apiJob))
	r.Get("/jobs/{key}/stats", d.api(d.apiJobStats))
	r.Post("/jobs/{key}/suspend", d.api(d.apiJobAction(apiSuspend)))
	r.Post("/jobs/{key}/resume", d.api(d.apiJobAction(apiResume)))
	r.Post("/jobs/{key}/schedule", d.api(d.apiJobAction(apiSchedule)))
	r.Post("/jobs/{key}/stop", d.api(d.apiJobAction(apiStop)))
	if d.routes != nil {
		r.Get("/routes", d.api(d.apiRoutesList))
		r.Post("/routes", d.api(d.apiSaveRoute(false)))
		r.Get("/routes/{name}", d.api(d.apiRoute))
		r.Put("/routes/{name}", d.api(d.apiSaveRoute(true)))
		r.Delete("/routes/{name}", d.api(d.apiRemoveRoute))
	}
}

type apiKeyCtx struct{}

// apiKeyFrom returns the API key a request was authenticated with.
func apiKeyFrom(ctx context.Context) *rewards.APIKey {
	k, _ := ctx.Value(apiKeyCtx{}).(*rewards.APIKey)
	return k
}

// apiAuth lets through requests with a valid, unrevoked API key, and answers 401 to the
// rest. A key's last use is written at most once a minute, so a busy client does not make
// every read a write.
func (d apiHandler) apiAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		secret = strings.TrimSpace(secret)
		if !strings.EqualFold(scheme, "Bearer") || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pointpost"`)
			apiError(w, http.StatusUnauthorized, "", "this API needs a key: send the header \"Authorization: Bearer <key>\"")
			return
		}
		ctx := r.Context()
		k, err := d.accounts.APIKeyByHash(ctx, rewards.HashSecret(secret))
		if err != nil {
			if rewards.ErrorCode(err) == rewards.ENOTFOUND {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pointpost", error="invalid_token"`)
				apiError(w, http.StatusUnauthorized, "", "the API key is not valid: it is mistyped or was revoked")
				return
			}
			d.apiFail(w, r, err)
			return
		}
		if now := d.now(); now.Sub(k.LastUsedAt) >= time.Minute {
			if err := d.accounts.TouchAPIKey(ctx, k.ID, now); err != nil {
				d.logger.Warn("api: touch key", "key", k.ID, "err", err)
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, apiKeyCtx{}, k)))
	})
}

// apiProblem is a request the API refuses, with the status and the field to name.
type apiProblem struct {
	status  int
	field   string
	message string
}

func (p *apiProblem) Error() string { return p.message }

func apiProblemf(status int, field, format string, a ...any) *apiProblem {
	return &apiProblem{status: status, field: field, message: fmt.Sprintf(format, a...)}
}

// api adapts a handler that returns its failure, answered by apiFail.
func (d apiHandler) api(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			d.apiFail(w, r, err)
		}
	}
}

// apiFail answers a failed request: the problem's own status, 422 for a campaign that is
// wrong in a field, the status of the error's code (web.Status) with its message, and
// "internal error" (logged) for an error without one.
func (d apiHandler) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	var p *apiProblem
	var fe *postoffice.FieldError
	switch {
	case errors.As(err, &p):
		apiError(w, p.status, p.field, p.message)
	case errors.As(err, &fe):
		apiError(w, http.StatusUnprocessableEntity, fe.Field, fe.Error())
	case web.Status(err) != http.StatusInternalServerError:
		status, field := web.Status(err), ""
		if status == http.StatusTooManyRequests {
			field = "selection"
		}
		if status == http.StatusServiceUnavailable {
			d.logger.Warn("api", "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "5")
		}
		apiError(w, status, field, rewards.ErrorMessage(err))
	default:
		var key int64
		if k := apiKeyFrom(r.Context()); k != nil {
			key = k.ID
		}
		d.logger.Error("api", "method", r.Method, "path", r.URL.Path, "key", key, "err", err)
		apiError(w, http.StatusInternalServerError, "", "internal error")
	}
}

type apiErrorBody struct {
	Error struct {
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
}

func apiError(w http.ResponseWriter, status int, field, message string) {
	var b apiErrorBody
	b.Error.Message, b.Error.Field = message, field
	apiWriteJSON(w, status, b)
}

func apiWriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client has gone if this fails
}

// apiReadBody returns a request's body: JSON (when it says what it is) of at most
// apiMaxBody bytes, not empty.
func apiReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, apiProblemf(http.StatusUnsupportedMediaType, "", "the request body must be JSON, sent with Content-Type: application/json (not %q)", ct)
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, apiMaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, apiProblemf(http.StatusRequestEntityTooLarge, "",
				"the request body is larger than 1 MB (%d bytes): send at most %d consumers a request", apiMaxBody, apiMaxBatch)
		}
		return nil, apiProblemf(http.StatusBadRequest, "", "the request body could not be read: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, apiProblemf(http.StatusBadRequest, "", "the request body is empty: want a JSON object")
	}
	// JSON that does not parse is left to apiDecode, which says where it breaks.
	var dup *postoffice.DuplicateKeyError
	var trailing *postoffice.TrailingDataError
	switch err := postoffice.CheckStrictJSON(b); {
	case errors.As(err, &dup):
		return nil, apiProblemf(http.StatusBadRequest, dup.Path, "%s", dup.Error())
	case errors.As(err, &trailing):
		return nil, apiProblemf(http.StatusBadRequest, "", "%s", trailing.Error())
	}
	return b, nil
}

// apiDecode decodes one JSON value into v, refusing unknown fields and anything after
// it. Errors are problems: 400 for JSON that does not parse (saying at which byte), 422
// naming the field (prefixed by prefix) for an unknown field or a value of the wrong type.
func apiDecode(data []byte, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err := dec.Token(); err != io.EOF {
			return apiProblemf(http.StatusBadRequest, "", "unexpected data after the JSON value at byte %d", dec.InputOffset())
		}
		return nil
	}
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntaxErr):
		return apiProblemf(http.StatusBadRequest, "", "the request body is not valid JSON at byte %d: %s",
			syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiProblemf(http.StatusBadRequest, "", "the request body is not valid JSON: it ends too early")
	case errors.As(err, &typeErr):
		field := strings.TrimSuffix(prefix, ".")
		if typeErr.Field != "" {
			field = prefix + typeErr.Field
		}
		return apiProblemf(http.StatusUnprocessableEntity, field, "%s must be %s, not %s",
			apiOrWhole(field), apiJSONKind(typeErr.Type), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return apiProblemf(http.StatusUnprocessableEntity, prefix+name, "unknown field %q", prefix+name)
	}
	return apiProblemf(http.StatusBadRequest, "", "the request body is not valid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func apiOrWhole(field string) string {
	if field == "" {
		return "the request body"
	}
	return field
}

// apiJSONKind names a Go type the way a JSON client thinks of it.
func apiJSONKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(apiJSONKind(t.Elem()), "a "), "an ") + "s"
	}
	return "an object"
}

// Consumers.

// apiConsumerIn is a consumer as an enrollment system sends it: the columns of the consumer
// CSV import, with interests as a list and the extra columns as attributes. An empty field
// keeps what is stored.
type apiConsumerIn struct {
	Email      string            `json:"email"`
	FirstName  string            `json:"first_name"`
	LastName   string            `json:"last_name"`
	City       string            `json:"city"`
	Region     string            `json:"region"`
	Country    string            `json:"country"`
	PostalCode string            `json:"postal_code"`
	BirthYear  int               `json:"birth_year"`
	Gender     string            `json:"gender"`
	Interests  []string          `json:"interests"`
	Format     string            `json:"format"`
	Attributes map[string]string `json:"attributes"`
}

// Bounds on what one consumer may carry; the CSV import bounds a record at 64 KiB.
const (
	apiMaxText       = 256
	apiMaxAttributes = 50
	apiMaxAttrValue  = 1000
)

// consumer checks in as the CSV import checks a row and returns the consumer to upsert.
// Errors are 422 problems naming the field, prefixed by prefix.
func (in *apiConsumerIn) consumer(prefix string, now time.Time) (rewards.Consumer, error) {
	email, err := rewards.ValidEmail(in.Email)
	if err != nil {
		return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, prefix+"email", "%s", err.Error())
	}
	c := rewards.Consumer{Email: email}
	for _, f := range []struct {
		name string
		in   string
		dst  *string
	}{{"first_name", in.FirstName, &c.FirstName}, {"last_name", in.LastName, &c.LastName}, {"city", in.City, &c.City},
		{"region", in.Region, &c.Region}, {"country", in.Country, &c.Country},
		{"postal_code", in.PostalCode, &c.PostalCode}, {"gender", in.Gender, &c.Gender}} {
		v, err := apiOneLine(f.in, apiMaxText)
		if err != nil {
			return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, prefix+f.name, "%s %s", f.name, err)
		}
		*f.dst = v
	}
	c.Gender = strings.ToLower(c.Gender)
	if y := in.BirthYear; y != 0 && (y < 1900 || y > now.Year()) {
		return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, prefix+"birth_year",
			"birth_year %d is not a year between 1900 and %d", y, now.Year())
	}
	c.BirthYear = in.BirthYear
	if in.Format != "" {
		f, err := rewards.ParseFormat(in.Format)
		if err != nil {
			return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, prefix+"format", "%s", err.Error())
		}
		c.Format = f
	}
	for i, s := range in.Interests {
		if _, err := apiOneLine(s, apiMaxText); err != nil {
			return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, fmt.Sprintf("%sinterests[%d]", prefix, i),
				"interest %d %s", i+1, err)
		}
	}
	c.Interests = rewards.NormalizeInterests(in.Interests)
	if len(in.Attributes) > apiMaxAttributes {
		return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, prefix+"attributes",
			"at most %d attributes, not %d", apiMaxAttributes, len(in.Attributes))
	}
	for name, v := range in.Attributes {
		// Named as the CSV import names extra columns, so both reach the same attribute and
		// a selection's attr.NAME can find it.
		norm := rewards.AttributeName(name)
		field := prefix + "attributes." + name
		if err := rewards.CheckAttributeName(norm); err != nil {
			return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, field, "%s", err.Error())
		}
		v, err := apiOneLine(v, apiMaxAttrValue)
		if err != nil {
			return rewards.Consumer{}, apiProblemf(http.StatusUnprocessableEntity, field, "attribute %s %s", name, err)
		}
		if v == "" {
			continue
		}
		if c.Attributes == nil {
			c.Attributes = make(map[string]string, len(in.Attributes))
		}
		c.Attributes[norm] = v
	}
	return c, nil
}

// apiOneLine trims s and checks it is one line of at most max bytes.
func apiOneLine(s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > max {
		return "", fmt.Errorf("is longer than %d bytes", max)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", errors.New("must be one line, without control characters")
	}
	return s, nil
}

// apiConsumer is a consumer as the API shows it.
type apiConsumer struct {
	ID            int64             `json:"id"`
	Email         string            `json:"email"`
	FirstName     string            `json:"first_name"`
	LastName      string            `json:"last_name"`
	City          string            `json:"city"`
	Region        string            `json:"region"`
	Country       string            `json:"country"`
	PostalCode    string            `json:"postal_code"`
	BirthYear     int               `json:"birth_year,omitempty"`
	Gender        string            `json:"gender"`
	Interests     []string          `json:"interests"`
	Format        string            `json:"format"`
	Attributes    map[string]string `json:"attributes"`
	Status        string            `json:"status"`
	PointsBalance int64             `json:"points_balance"`
}

// apiConsumerView is c as the key k may see her: an issuer's key sees its own attributes and
// the program's, never another issuer's.
func apiConsumerView(c *rewards.Consumer, k *rewards.APIKey) apiConsumer {
	v := apiConsumer{ID: c.ID, Email: c.Email, FirstName: c.FirstName, LastName: c.LastName, City: c.City,
		Region: c.Region, Country: c.Country, PostalCode: c.PostalCode, BirthYear: c.BirthYear, Gender: c.Gender,
		Interests: c.Interests, Format: string(c.Format), Attributes: c.AttributesFor(k.IssuerSlug),
		Status: string(c.Status), PointsBalance: c.PointsBalance}
	if v.Interests == nil {
		v.Interests = []string{}
	}
	if v.Attributes == nil {
		v.Attributes = map[string]string{}
	}
	return v
}

// apiConsumerRef names a consumer an operator's key wrote.
type apiConsumerRef struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
}

// apiEnrolled is the answer to an issuer's key that enrolled consumers: the same whether
// each address was new or not.
type apiEnrolled struct {
	Accepted int      `json:"accepted"`
	Emails   []string `json:"emails"`
}

// apiUpsertConsumers creates or updates one consumer, or a batch {"consumers": [...]} of at
// most apiMaxBatch, matched by e-mail address. A batch with one bad consumer is refused
// whole, naming it ("consumers[3].email").
//
// An operator's key writes profiles: one consumer answers 201 when created, 200 when
// updated, with the consumer as stored; a batch answers 201 if it created any, with the
// counts and the ids. An issuer's key enrolls (EnrollConsumers): an address that is a
// consumer already keeps her profile and gains only the issuer's attributes, and the answer
// is 202 with the addresses accepted, whether they were consumers before or not.
func (d apiHandler) apiUpsertConsumers(w http.ResponseWriter, r *http.Request) error {
	body, err := apiReadBody(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	now := d.now()
	k := apiKeyFrom(ctx)
	cs, batch, err := apiParseConsumers(body, now)
	if err != nil {
		return err
	}
	emails := make([]string, len(cs))
	for i := range cs {
		emails[i] = cs[i].Email
	}
	if !k.Operator() {
		if _, _, err := d.store.EnrollConsumers(ctx, k.IssuerSlug, cs); err != nil {
			return err
		}
		apiWriteJSON(w, http.StatusAccepted, apiEnrolled{Accepted: len(cs), Emails: emails})
		return nil
	}
	inserted, updated, err := d.store.UpsertConsumers(ctx, cs)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if inserted > 0 {
		status = http.StatusCreated
	}
	if !batch {
		stored, err := d.store.ConsumerByEmail(ctx, cs[0].Email)
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/api/v1/consumers/"+strconv.FormatInt(stored.ID, 10))
		apiWriteJSON(w, status, apiConsumerView(stored, k))
		return nil
	}
	ids, err := d.store.APIConsumerIDs(ctx, emails)
	if err != nil {
		return err
	}
	out := struct {
		Inserted  int              `json:"inserted"`
		Updated   int              `json:"updated"`
		Consumers []apiConsumerRef `json:"consumers"`
	}{Inserted: inserted, Updated: updated, Consumers: make([]apiConsumerRef, len(emails))}
	for i, e := range emails {
		out.Consumers[i] = apiConsumerRef{ID: ids[e], Email: e}
	}
	apiWriteJSON(w, status, out)
	return nil
}

// apiParseConsumers reads the body of POST /consumers: one consumer, or {"consumers": [...]}
// (batch) of 1 to apiMaxBatch, each checked by apiConsumerIn.consumer. Errors are problems
// naming the field.
func apiParseConsumers(body []byte, now time.Time) (cs []rewards.Consumer, batch bool, err error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, false, apiProblemf(http.StatusUnprocessableEntity, "", "want a JSON object: a consumer, or {\"consumers\": [...]}")
		}
		return nil, false, apiDecode(body, &probe, "") // says where the JSON breaks
	}
	raw, batch := probe["consumers"]
	if !batch {
		var in apiConsumerIn
		if err := apiDecode(body, &in, ""); err != nil {
			return nil, false, err
		}
		c, err := in.consumer("", now)
		if err != nil {
			return nil, false, err
		}
		cs = []rewards.Consumer{c}
	} else {
		for name := range probe {
			if name != "consumers" {
				return nil, false, apiProblemf(http.StatusUnprocessableEntity, name, "unknown field %q: a batch is {\"consumers\": [...]} alone", name)
			}
		}
		var items []json.RawMessage
		if err := apiDecode(raw, &items, "consumers."); err != nil {
			return nil, false, err
		}
		switch {
		case len(items) == 0:
			return nil, false, apiProblemf(http.StatusUnprocessableEntity, "consumers", "consumers is empty: give 1 to %d consumers", apiMaxBatch)
		case len(items) > apiMaxBatch:
			return nil, false, apiProblemf(http.StatusUnprocessableEntity, "consumers", "at most %d consumers a request, not %d", apiMaxBatch, len(items))
		}
		cs = make([]rewards.Consumer, len(items))
		for i, item := range items {
			prefix := fmt.Sprintf("consumers[%d].", i)
			var in apiConsumerIn
			if err := apiDecode(item, &in, prefix); err != nil {
				return nil, false, err
			}
			if cs[i], err = in.consumer(prefix, now); err != nil {
				return nil, false, err
			}
		}
	}
	return cs, batch, nil
}

// apiMayReadConsumer reports whether the request's key may read consumer id: an operator's
// key always, an issuer's if one of the issuer's jobs was sent to her.
func (d apiHandler) apiMayReadConsumer(ctx context.Context, id int64) (bool, error) {
	k := apiKeyFrom(ctx)
	if k.Operator() {
		return true, nil
	}
	return d.store.APIConsumerVisible(ctx, id, k.IssuerID)
}

// apiConsumer shows the consumer named by id or e-mail address; 404 if there is none or the
// key may not read her.
func (d apiHandler) apiConsumer(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ref, err := url.PathUnescape(chi.URLParam(r, "id"))
	if err != nil {
		ref = chi.URLParam(r, "id")
	}
	missing := apiProblemf(http.StatusNotFound, "", "there is no consumer %q", ref)
	var c *rewards.Consumer
	if strings.Contains(ref, "@") {
		c, err = d.store.ConsumerByEmail(ctx, ref)
	} else if id, perr := strconv.ParseInt(ref, 10, 64); perr == nil && id > 0 {
		c, err = d.store.ConsumerByID(ctx, id)
	} else {
		return missing
	}
	if err != nil {
		if rewards.ErrorCode(err) == rewards.ENOTFOUND {
			return missing
		}
		return err
	}
	ok, err := d.apiMayReadConsumer(ctx, c.ID)
	if err != nil {
		return err
	}
	if !ok {
		return missing
	}
	apiWriteJSON(w, http.StatusOK, apiConsumerView(c, apiKeyFrom(ctx)))
	return nil
}

// Jobs.

// apiJob is a job's status as the API shows it.
type apiJob struct {
	Key               int64           `json:"key"`
	URL               string          `json:"url"`
	Issuer            string          `json:"issuer"`
	Name              string          `json:"name"`
	State             string          `json:"state"`
	Suspended         bool            `json:"suspended"`
	Start             time.Time       `json:"start"`
	Stop              time.Time       `json:"stop"`
	ClientCount       int             `json:"client_count"`
	MailServer        int             `json:"mail_server"`
	Selection         json.RawMessage `json:"selection,omitempty"`
	Selected          int             `json:"selected"`
	SelectionComplete bool            `json:"selection_complete"`
	DoneReason        string          `json:"done_reason,omitempty"`
	CreatedAt         time.Time       `json:"created_at"`
	UpdatedAt         time.Time       `json:"updated_at"`
	// BudgetOverride says who scheduled the job over its issuer's budget, and when.
	BudgetOverride *apiBudgetOverride `json:"budget_override,omitempty"`
	// Matching is how many consumers the selection matched when the job was created.
	Matching *int       `json:"matching,omitempty"`
	Counts   *apiCounts `json:"counts,omitempty"`
}

type apiBudgetOverride struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

type apiCounts struct {
	Total    int `json:"total"`
	Sent     int `json:"sent"`
	Pending  int `json:"pending"`
	Retrying int `json:"retrying"`
	Rejected int `json:"rejected"`
	Failed   int `json:"failed"`
	Received int `json:"received"`
}

func apiJobView(j *postoffice.Job) apiJob {
	v := apiJob{Key: j.Key, URL: "/api/v1/jobs/" + strconv.FormatInt(j.Key, 10), Issuer: j.IssuerSlug, Name: j.Name,
		State: string(j.State), Suspended: j.Suspended, Start: j.Start.UTC(), Stop: j.Stop.UTC(),
		ClientCount: j.ClientCount, MailServer: j.MailServerID, Selected: j.Selected,
		SelectionComplete: j.SelectedAll, DoneReason: j.DoneReason, CreatedAt: j.CreatedAt.UTC(), UpdatedAt: j.UpdatedAt.UTC()}
	if j.Selection != "" && json.Valid([]byte(j.Selection)) {
		v.Selection = json.RawMessage(j.Selection)
	}
	if o := j.BudgetOverride; o.By != "" {
		v.BudgetOverride = &apiBudgetOverride{By: o.By, At: o.At.UTC()}
	}
	return v
}

// apiJobStatus is a job's view with its delivery counts.
func (d apiHandler) apiJobStatus(ctx context.Context, j *postoffice.Job) (apiJob, error) {
	v := apiJobView(j)
	c, err := d.jobCounts(ctx, j)
	if err != nil {
		return v, err
	}
	v.Counts = &apiCounts{Total: c.Total, Sent: c.Sent, Pending: c.Pending, Retrying: c.Retrying,
		Rejected: c.Rejected, Failed: c.Failed, Received: c.Received}
	return v, nil
}

// apiJobFor returns the job named by the URL's {key} if the request's key reaches it, and
// a 404 problem otherwise, whether the job is another issuer's or does not exist.
func (d apiHandler) apiJobFor(r *http.Request) (*postoffice.Job, error) {
	param := chi.URLParam(r, "key")
	missing := apiProblemf(http.StatusNotFound, "", "there is no job %q", param)
	key, err := strconv.ParseInt(param, 10, 64)
	if err != nil {
		return nil, missing
	}
	job, err := d.jobs.Job(r.Context(), key)
	if err != nil {
		if rewards.ErrorCode(err) == rewards.ENOTFOUND {
			return nil, missing
		}
		return nil, err
	}
	if k := apiKeyFrom(r.Context()); !k.Operator() && k.IssuerID != job.IssuerID {
		return nil, missing
	}
	return job, nil
}

// apiCreateJob creates a job from a campaign file's JSON, checked exactly as `pointpost
// campaign create` checks it. An issuer's key creates for its own issuer only: "issuer" may
// be left out and is filled in; another issuer's name, or a raw SQL selection (which only
// operators write), answers 403 naming the field.
func (d apiHandler) apiCreateJob(w http.ResponseWriter, r *http.Request) error {
	body, err := apiReadBody(w, r)
	if err != nil {
		return err
	}
	c, err := postoffice.ParseCampaign(body)
	if err != nil {
		var fe *postoffice.FieldError
		if errors.As(err, &fe) {
			return err
		}
		return apiProblemf(http.StatusBadRequest, "", "%s", err.Error())
	}
	if k := apiKeyFrom(r.Context()); !k.Operator() {
		if c.Issuer == "" {
			c.Issuer = k.IssuerSlug
		}
		if c.Issuer != k.IssuerSlug {
			return apiProblemf(http.StatusForbidden, "issuer", "this API key is issuer %q's: it creates jobs for %q only, not %q",
				k.IssuerSlug, k.IssuerSlug, c.Issuer)
		}
		if sel, err := postoffice.ParseSelection(c.Selection); err == nil && sel.IsRaw() {
			return apiProblemf(http.StatusForbidden, "selection.sql",
				"a raw SQL selection needs an operator's key: select with field conditions instead")
		} else if err == nil && selectsByAddress(sel) {
			// The answer's matching count would tell whether an address is enrolled.
			return apiProblemf(http.StatusForbidden, "selection", "%s", byAddressRefused)
		}
		if c.MailServer != 0 {
			return apiProblemf(http.StatusForbidden, "mail_server", "the mail server is the operators' to choose: leave mail_server out")
		}
	}
	// A job to be scheduled is checked as a draft first, then scheduled as the schedule
	// endpoint schedules it: over its issuer's budget, an issuer's key is refused.
	schedule := !c.Draft
	if schedule {
		if err := c.Validate(); err != nil {
			return err
		}
		c.Draft = true
	}
	job, matching, err := d.po.CreateJob(r.Context(), c)
	if err != nil {
		return err
	}
	if schedule {
		if err := d.apiSchedule(r.Context(), job, r.URL.Query().Get("override_budget") == "yes"); err != nil {
			return err
		}
	}
	// Read back, for the issuer's slug and the stored times.
	if stored, err := d.jobs.Job(r.Context(), job.Key); err == nil {
		job = stored
	} else {
		return err
	}
	v, err := d.apiJobStatus(r.Context(), job)
	if err != nil {
		return err
	}
	v.Matching = &matching
	w.Header().Set("Location", v.URL)
	apiWriteJSON(w, http.StatusCreated, v)
	return nil
}

// apiJobs lists the jobs the key reaches, newest first, a page of ?limit= (100 unless
// given, at most apiMaxJobs) below ?before= (a job key); "next" links the following page.
func (d apiHandler) apiJobs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > apiMaxJobs {
			return apiProblemf(http.StatusUnprocessableEntity, "limit", "limit must be a number from 1 to %d", apiMaxJobs)
		}
		limit = n
	}
	var before int64
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return apiProblemf(http.StatusUnprocessableEntity, "before", "before must be a job key")
		}
		before = n
	}
	jobs, err := d.store.APIJobs(r.Context(), apiKeyFrom(r.Context()).IssuerID, before, limit)
	if err != nil {
		return err
	}
	out := struct {
		Jobs []apiJob `json:"jobs"`
		Next string   `json:"next,omitempty"`
	}{Jobs: make([]apiJob, len(jobs))}
	for i, j := range jobs {
		out.Jobs[i] = apiJobView(j)
	}
	if len(jobs) == limit {
		out.Next = fmt.Sprintf("/api/v1/jobs?before=%d&limit=%d", jobs[len(jobs)-1].Key, limit)
	}
	apiWriteJSON(w, http.StatusOK, out)
	return nil
}

// apiJob shows a job's status with its delivery counts.
func (d apiHandler) apiJob(w http.ResponseWriter, r *http.Request) error {
	job, err := d.apiJobFor(r)
	if err != nil {
		return err
	}
	v, err := d.apiJobStatus(r.Context(), job)
	if err != nil {
		return err
	}
	apiWriteJSON(w, http.StatusOK, v)
	return nil
}

type apiAction int

const (
	apiSuspend apiAction = iota
	apiResume
	apiSchedule
	apiStop
)

// apiJobAction suspends, resumes, schedules or stops a job and answers with its status.
// A done job cannot be suspended or resumed, and only a draft can be scheduled: 409.
func (d apiHandler) apiJobAction(act apiAction) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		job, err := d.apiJobFor(r)
		if err != nil {
			return err
		}
		ctx := r.Context()
		switch act {
		case apiSuspend, apiResume:
			if job.State == postoffice.JobDone {
				return apiProblemf(http.StatusConflict, "state", "job %d is done: there is nothing left to suspend or resume", job.Key)
			}
			if act == apiSuspend {
				err = d.po.Suspend(ctx, job.Key)
			} else {
				err = d.po.Resume(ctx, job.Key)
			}
		case apiSchedule:
			if job.State != postoffice.JobDraft {
				return apiProblemf(http.StatusConflict, "state", "job %d is %s: only a draft can be scheduled", job.Key, job.State)
			}
			err = d.apiSchedule(ctx, job, r.URL.Query().Get("override_budget") == "yes")
		case apiStop:
			err = d.po.Stop(ctx, job.Key)
		}
		if err != nil {
			return err
		}
		if job, err = d.jobs.Job(ctx, job.Key); err != nil {
			return err
		}
		v, err := d.apiJobStatus(ctx, job)
		if err != nil {
			return err
		}
		apiWriteJSON(w, http.StatusOK, v)
		return nil
	}
}

// apiSchedule schedules a draft for the key's holder. A job whose worst case exceeds its
// issuer's budget left is refused to an issuer's key (403); an operator's key schedules it
// with ?override_budget=yes (recorded with the key's name), and is answered 409 without.
func (d apiHandler) apiSchedule(ctx context.Context, job *postoffice.Job, override bool) error {
	k := apiKeyFrom(ctx)
	_, err := d.schedule.schedule(ctx, job, k.Operator(), override, "API key "+k.Name)
	var over *OverBudgetError
	switch {
	case errors.As(err, &over) && k.Operator():
		return apiProblemf(http.StatusConflict, "budget", "job %d may cost up to %s points, more than the %s left of its issuer's budget: "+
			"add ?override_budget=yes to schedule it anyway (the override is recorded); it is kept as a draft",
			job.Key, thousands(over.Most), thousands(over.Left))
	case errors.As(err, &over):
		return apiProblemf(http.StatusForbidden, "budget", "%s (job %d is kept as a draft)", over.Error(), job.Key)
	}
	return err
}

// apiRate is a share of sent deliveries that were acknowledged.
type apiRate struct {
	Selected int     `json:"selected"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	Rate     float64 `json:"rate"`
}

func apiRateOf(c postoffice.JobCounts) apiRate {
	r := apiRate{Selected: c.Total, Sent: c.Sent, Received: c.Received}
	if c.Sent > 0 {
		// An acknowledgement can arrive before its send is recorded: never above 1.
		r.Rate = math.Round(min(1, float64(c.Received)/float64(c.Sent))*10000) / 10000
	}
	return r
}

// apiJobStats shows a job's acknowledgement statistics: sent, received and their rate, in
// all and by the consumers' format; the consumers who acknowledged by reply and by click;
// and the points awarded, of which settled.
func (d apiHandler) apiJobStats(w http.ResponseWriter, r *http.Request) error {
	job, err := d.apiJobFor(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	// The report page's reads (jobReport), so the two never disagree.
	var counts postoffice.JobCounts
	var byFormat map[string]postoffice.JobCounts
	var byChannel map[postoffice.Channel]int
	var rulePoints map[int64]int64
	var settled int64
	var earners int
	if err := runAll(
		func() (err error) { counts, err = d.jobCounts(ctx, job); return err },
		func() (err error) { byFormat, err = d.reports.JobCountsBy(ctx, job.Key, "format", 2); return err },
		func() (err error) { byChannel, err = d.reports.JobChannels(ctx, job.Key); return err },
		func() (err error) { rulePoints, err = d.reports.JobRulePoints(ctx, job.Key); return err },
		func() (err error) { settled, earners, err = d.reports.JobSettlement(ctx, job.Key); return err },
	); err != nil {
		return err
	}
	type points struct {
		Awarded   int64 `json:"awarded"`
		Settled   int64 `json:"settled"`
		Consumers int   `json:"consumers"`
	}
	out := struct {
		Job int64 `json:"job"`
		apiRate
		ByChannel map[postoffice.Channel]int `json:"by_channel"`
		ByFormat  map[rewards.Format]apiRate `json:"by_format"`
		Points    points                     `json:"points"`
	}{Job: job.Key, apiRate: apiRateOf(counts),
		ByChannel: map[postoffice.Channel]int{postoffice.ChannelReply: byChannel[postoffice.ChannelReply],
			postoffice.ChannelClick: byChannel[postoffice.ChannelClick]},
		ByFormat: map[rewards.Format]apiRate{rewards.FormatText: apiRateOf(byFormat[string(rewards.FormatText)]),
			rewards.FormatHTML: apiRateOf(byFormat[string(rewards.FormatHTML)])},
		Points: points{Awarded: jobAwarded(rulePoints), Settled: settled, Consumers: earners}}
	apiWriteJSON(w, http.StatusOK, out)
	return nil
}

// apiRouteBody is a route as the API takes it. A rate left out sets none of ours (a rate
// given is more than 0); connections and priority left out are 0; quotas are written
// N/DURATION. Updating, a URL left out keeps the saved one.
type apiRouteBody struct {
	Name        string   `json:"name"`
	URL         string   `json:"url"`
	Rate        *float64 `json:"rate"`
	Connections int      `json:"connections"`
	Priority    int      `json:"priority"`
	Quotas      []string `json:"quotas"`
	// Warmup is a schedule, as "500/day doubling every 2 days up to 50000"; updating, left
	// out keeps the saved one and "" removes it.
	Warmup *string `json:"warmup"`
}

// apiOperatorOnly refuses an issuer's key: routes are the operators' alone.
func apiOperatorOnly(r *http.Request) error {
	if !apiKeyFrom(r.Context()).Operator() {
		return apiProblemf(http.StatusForbidden, "", "routes are managed with an operator's key")
	}
	return nil
}

// apiRouteProblem answers a refused route setting with status, naming the field.
func apiRouteProblem(err error, status int) error {
	var re *postoffice.RouteError
	if errors.As(err, &re) {
		return apiProblemf(status, re.Field, "%s", re.Error())
	}
	return err
}

func (d apiHandler) apiRouteStates(ctx context.Context) map[string]*postoffice.RouteState {
	out := map[string]*postoffice.RouteState{}
	states := d.routes.RouteStatus(ctx)
	for i := range states {
		out[states[i].Name] = &states[i]
	}
	return out
}

// apiRoutesList lists the routes, each with its state at work; URLs without passwords.
func (d apiHandler) apiRoutesList(w http.ResponseWriter, r *http.Request) error {
	if err := apiOperatorOnly(r); err != nil {
		return err
	}
	routes, err := d.routes.Routes(r.Context())
	if err != nil {
		return err
	}
	states := d.apiRouteStates(r.Context())
	out := struct {
		Routes []routeJSON `json:"routes"`
	}{Routes: []routeJSON{}}
	for _, rt := range routes {
		out.Routes = append(out.Routes, routeJSONOf(rt, states[rt.Name]))
	}
	apiWriteJSON(w, http.StatusOK, out)
	return nil
}

func (d apiHandler) apiRoute(w http.ResponseWriter, r *http.Request) error {
	if err := apiOperatorOnly(r); err != nil {
		return err
	}
	rt, err := d.apiSavedRoute(r, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	apiWriteJSON(w, http.StatusOK, routeJSONOf(*rt, d.apiRouteStates(r.Context())[rt.Name]))
	return nil
}

func (d apiHandler) apiSavedRoute(r *http.Request, name string) (*postoffice.Route, error) {
	routes, err := d.routes.Routes(r.Context())
	if err != nil {
		return nil, err
	}
	for i := range routes {
		if routes[i].Name == name {
			return &routes[i], nil
		}
	}
	return nil, apiProblemf(http.StatusNotFound, "", "there is no route %q", name)
}

// apiSaveRoute creates a route (POST /routes: 409 if the name is taken) or replaces one's
// settings (PUT /routes/{name}: 404 if there is none), checked as the command and the page
// check them, and puts it to work at once.
func (d apiHandler) apiSaveRoute(update bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := apiOperatorOnly(r); err != nil {
			return err
		}
		body, err := apiReadBody(w, r)
		if err != nil {
			return err
		}
		var in apiRouteBody
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return apiProblemf(http.StatusBadRequest, "", "the body is not a route's JSON: %s", err.Error())
		}
		saved, err := d.apiSavedRoute(r, chi.URLParam(r, "name"))
		switch {
		case update && err != nil:
			return err
		case update:
			if in.Name != "" && in.Name != saved.Name {
				return apiProblemf(http.StatusUnprocessableEntity, "name", "a route cannot be renamed: add the new one and remove the old")
			}
			in.Name = saved.Name
			if in.URL == "" {
				in.URL = saved.URL
			}
		default:
			if _, err := d.apiSavedRoute(r, in.Name); err == nil {
				return apiProblemf(http.StatusConflict, "name", "route %q exists: PUT /api/v1/routes/%s changes it", in.Name, in.Name)
			}
		}
		rt := postoffice.Route{Name: in.Name, URL: in.URL, Connections: in.Connections, Priority: in.Priority}
		switch {
		case in.Warmup != nil:
			if rt.Warmup, err = postoffice.ParseWarmup(*in.Warmup); err != nil {
				return apiProblemf(http.StatusUnprocessableEntity, "warmup", "%s", err.Error())
			}
		case update:
			rt.Warmup = saved.Warmup
		}
		if in.Rate != nil {
			if *in.Rate <= 0 {
				return apiProblemf(http.StatusUnprocessableEntity, "rate", "route %q: rate: must be more than 0 (leave it out for no rate of ours)", in.Name)
			}
			rt.Rate = *in.Rate
		}
		for i, q := range in.Quotas {
			quota, err := postoffice.ParseQuota(q)
			if err != nil {
				return apiProblemf(http.StatusUnprocessableEntity, fmt.Sprintf("quotas[%d]", i), "%s", err.Error())
			}
			rt.Quotas = append(rt.Quotas, quota)
		}
		if err := d.routes.SaveRoute(r.Context(), rt); err != nil {
			return apiRouteProblem(err, http.StatusUnprocessableEntity)
		}
		status := http.StatusCreated
		if update {
			status = http.StatusOK
		}
		apiWriteJSON(w, status, routeJSONOf(rt, d.apiRouteStates(r.Context())[rt.Name]))
		return nil
	}
}

// apiRemoveRoute removes a route: 409 naming the job while one is pinned to it.
func (d apiHandler) apiRemoveRoute(w http.ResponseWriter, r *http.Request) error {
	if err := apiOperatorOnly(r); err != nil {
		return err
	}
	name := chi.URLParam(r, "name")
	if _, err := d.apiSavedRoute(r, name); err != nil {
		return err
	}
	if err := d.routes.RemoveRoute(r.Context(), name); err != nil {
		return apiRouteProblem(err, http.StatusConflict)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
