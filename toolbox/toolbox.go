// Package toolbox is the issuers' and operators' browser admin (toolbox 170 with its web
// server 172): accounts and sessions, the campaign editor, award rules, live job reports,
// the operator pages (mail servers, consumers, outbox, issuers, users, settings) and the
// JSON API under /api/v1.
//
// Every page knows who is asking (userFrom). An issuer user reaches only its own issuer's
// objects: any other ID in a URL answers 404, as if it did not exist. The operator pages
// answer 404 to issuer users too.
package toolbox

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/web"
)

//go:embed assets
var assets embed.FS

// Store is all the toolbox keeps and reads: what each area's handlers declare beside them.
// main passes the one SQLite store.
type Store interface {
	jobStore
	campaignStore
	reportStore
	consumerStore
	mailServerStore
	sessionStore
	accountStore
	setupStore
	userStore
	issuerStore
	settingsStore
	inboundStore
	apiStore
	apiKeyStore
}

// Deps are the toolbox's collaborators, as main wires them. Handler hands each area only the
// part it uses.
type Deps struct {
	Store Store
	// Setup is what the Settings page shows of DNS records and inbound ways.
	Setup Setup
	// TestSender sends one job's message to a single address ("send a test"); nil hides
	// the action.
	TestSender TestSender
	// Invitations e-mails new users their one-time link; nil leaves that to whoever invites.
	Invitations Invitations
	// Routes manages the mail servers' routes; nil hides them.
	Routes RouteDesk

	PostOffice *postoffice.PostOffice
	// Context ends when the server shuts down; background work the toolbox starts (a
	// consumer import) stops with it. Nil means it never ends.
	Context context.Context
	Logger  *slog.Logger
	Now     func() time.Time
	// BaseURL is where people reach this server, for the links the toolbox hands out
	// (setup, invitations); an https BaseURL also makes the session cookie Secure.
	BaseURL string
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client the
	// sign-in throttle counts; from anyone else the header is ignored.
	TrustedProxies web.TrustedProxies
	// SessionIdle and SessionMax end a session unused for SessionIdle or begun SessionMax
	// ago; zero means 2 hours and 12 hours.
	SessionIdle time.Duration
	SessionMax  time.Duration

	// PasswordCost is the bcrypt cost of new password hashes; zero means 12. Tests lower
	// it: under the race detector one cost-12 hash takes many seconds.
	PasswordCost int
	// Version names the running binary in every page's footer.
	Version string
}

// base is what every page shares: framing, rendering, failing and redirecting.
type base struct {
	logger  *slog.Logger
	now     func() time.Time
	version string
	// publicURL is Deps.BaseURL; serverCtx is Deps.Context.
	publicURL string
	serverCtx context.Context
}

// Handler serves the toolbox.
func Handler(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.SessionIdle == 0 {
		d.SessionIdle = 2 * time.Hour
	}
	if d.SessionMax == 0 {
		d.SessionMax = 12 * time.Hour
	}
	if d.PasswordCost == 0 {
		d.PasswordCost = defaultPasswordCost
	}
	b := base{logger: d.Logger, now: d.Now, version: d.Version, publicURL: d.BaseURL, serverCtx: d.Context}
	jobs := jobPages{base: b, jobs: d.Store, counts: newCountsCache(time.Second), canTest: d.TestSender != nil}
	sess := sessions{base: b, accounts: d.Store, sessionIdle: d.SessionIdle, sessionMax: d.SessionMax}
	auth := newAuthPages(sess, d.Store, d.Store, d.PasswordCost, d.TrustedProxies)
	campaigns := campaignPages{jobPages: jobs, campaigns: d.Store, po: d.PostOffice, testSender: d.TestSender}
	reports := reportPages{jobPages: jobs, reports: d.Store, po: d.PostOffice}
	consumers := consumerPages{base: b, store: d.Store}
	mail := mailServerPages{base: b, store: d.Store, routes: d.Routes, po: d.PostOffice}
	issuers := issuerAdmin{base: b, accounts: d.Store, issuerStore: d.Store, invitations: d.Invitations}
	settings := settingsPages{base: b, store: d.Store, setup: d.Setup}
	inbound := inboundPages{base: b, store: d.Store}
	api := apiHandler{jobPages: jobs, store: d.Store, accounts: d.Store, reports: d.Store, routes: d.Routes, po: d.PostOffice,
		schedule: scheduler{store: d.Store, po: d.PostOffice}}

	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err)
	}
	r := chi.NewRouter()
	r.Use(secureHeaders)
	files := http.StripPrefix("/assets/", http.FileServerFS(web.FilesOnly(static)))
	r.Get("/assets/*", files.ServeHTTP)
	r.Head("/assets/*", files.ServeHTTP)
	// The API authenticates each request by key and sets no cookies, so cross-origin
	// forgery has nothing to ride on.
	r.Route("/api/v1", api.apiRoutes)
	r.Group(func(r chi.Router) {
		// Forms are accepted only from the toolbox's own pages (Sec-Fetch-Site / Origin).
		r.Use(limitBody, http.NewCrossOriginProtection().Handler, sess.loadSession)
		auth.authRoutes(r)
		r.Group(func(r chi.Router) {
			r.Use(sess.requireUser)
			reports.dashboardRoutes(r)
			campaigns.campaignRoutes(r)
			campaigns.ruleRoutes(r)
			reports.reportRoutes(r)
			auth.profileRoutes(r)
			r.Group(func(r chi.Router) {
				r.Use(sess.requireOperator)
				mail.mailServerRoutes(r)
				consumers.consumerRoutes(r, newImportTracker(consumers))
				issuers.issuerRoutes(r)
				settings.settingsRoutes(r)
				inbound.inboundRoutes(r)
			})
		})
	})
	r.NotFound(b.notFound)
	return r
}

// maxFormBytes bounds a toolbox request body: a campaign form with both templates at
// postoffice.MaxTemplateBytes, URL-encoded, fits; the consumer CSV upload has its own limit.
const maxFormBytes = 4 << 20

// limitBody caps every toolbox request body at maxFormBytes but the consumer CSV upload's.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/consumers/import" {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// secureHeaders keeps the toolbox out of other sites' frames and its pages to their own
// scripts. Inline styles are allowed: progress bars and charts set widths in style
// attributes.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "+
			"img-src 'self' data:; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (d base) notFound(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNotFound)
	d.render(w, r, notFoundPage(d.page(w, r, "Not found", "")))
}

// fail answers a request whose handling failed with the status of its code (web.Status): the
// not-found page, the code's message, or "internal error" (logged) for an error without one.
func (d base) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	switch status := web.Status(err); status {
	case http.StatusNotFound:
		d.notFound(w, r)
	case http.StatusInternalServerError:
		d.logger.Error("toolbox", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", status)
	default:
		if status == http.StatusServiceUnavailable {
			d.logger.Warn("toolbox", "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "5")
		}
		http.Error(w, rewards.ErrorMessage(err), status)
	}
}

func (d base) render(w http.ResponseWriter, r *http.Request, c templ.Component) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "no-store")
	if err := c.Render(r.Context(), w); err != nil && !errors.Is(err, context.Canceled) {
		d.logger.Error("render", "path", r.URL.Path, "err", err)
	}
}

// Page is what the layout needs to frame a page.
type Page struct {
	Title string
	// Section is the navigation entry to highlight.
	Section string
	User    *userView
	// Flash is a one-line message shown at the top, such as "Job 12 scheduled".
	Flash string
	// Scripts and Styles name extra files under /assets/ this page loads.
	Scripts []string
	Styles  []string
	// Version names the running binary in the footer.
	Version string
}

type userView struct {
	Email    string
	Operator bool
	Issuer   string
}

// page frames a page for the user making the request, showing (once) the flash message a
// redirect left.
func (d base) page(w http.ResponseWriter, r *http.Request, title, section string) Page {
	p := Page{Title: title, Section: section, Version: d.version}
	if c, err := r.Cookie(flashCookie); err == nil {
		if v, err := url.QueryUnescape(c.Value); err == nil {
			p.Flash = v
		}
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1})
	}
	if u := userFrom(r.Context()); u != nil {
		p.User = &userView{Email: u.Email, Operator: u.Operator(), Issuer: u.IssuerSlug}
	}
	return p
}

const flashCookie = "pointpost_flash"

// redirect sends the browser to target after a form, with a flash message for the next page.
func (d base) redirect(w http.ResponseWriter, r *http.Request, target, flash string) {
	if flash != "" {
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(flash), Path: "/",
			MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: d.secure(r)})
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// baseContext is the context background work runs under: Context, or one that never ends.
func (d base) baseContext() context.Context {
	if d.serverCtx == nil {
		return context.Background()
	}
	return d.serverCtx
}

// jobStore is what pages about jobs read of them.
type jobStore interface {
	Job(ctx context.Context, key int64) (*postoffice.Job, error)
	Jobs(ctx context.Context, states ...postoffice.JobState) ([]*postoffice.Job, error)
	JobCounts(ctx context.Context, key int64) (postoffice.JobCounts, error)
	MailServers(ctx context.Context) ([]postoffice.MailServerStatus, error)
}

// jobPages is what the pages and API about one job share: finding the job the URL names,
// its counts and its action buttons.
type jobPages struct {
	base
	jobs   jobStore
	counts *countsCache
	// canTest shows "send a test" where a job's actions are.
	canTest bool
}

// jobFor returns the job named by the URL's {key} if the user may see it. Otherwise it
// answers 404 (whether the job is another issuer's or does not exist) and returns nil.
func (d jobPages) jobFor(w http.ResponseWriter, r *http.Request) *postoffice.Job {
	key, err := strconv.ParseInt(chi.URLParam(r, "key"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return nil
	}
	job, err := d.jobs.Job(r.Context(), key)
	if err != nil {
		d.fail(w, r, err)
		return nil
	}
	if !userFrom(r.Context()).MaySee(job.IssuerID) {
		d.notFound(w, r)
		return nil
	}
	return job
}
