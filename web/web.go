// Package web is the consumers' side of pointpost, the web servers 190 of WO 00/42557: the
// earning invitation as a web page with its Submit button (claim 12, FIG. 9), the thank-you
// page after an acknowledgement, the account page with history and the redemption catalog,
// enrollment by double opt-in, and unsubscribing (with RFC 8058 one-click). It also owns the
// shared page layout and the static assets.
//
// Every page works without JavaScript. Links in e-mails carry a signed token
// (postoffice.Keyring) that names a delivery (job key, consumer id), the consumer alone (job
// key 0, an account link), or a pending enrollment (job key postoffice.MaxJobKey, see
// EnrollmentJobKey). GET and HEAD never change anything that matters: mail scanners fetch
// links by themselves.
package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// EnrollmentJobKey is the job key of enrollment confirmation links: a token
// Encode(EnrollmentJobKey, enrollmentID). It is reserved, no job may have it, so a delivery
// token can never confirm an enrollment and a confirmation token never names a consumer.
const EnrollmentJobKey = postoffice.MaxJobKey

// historyLimit is how many account events the account page shows.
const historyLimit = 50

// PostOffice is what the pages need of the post office: invitations, acknowledgements and
// tokens. *postoffice.PostOffice implements it.
type PostOffice interface {
	Invitation(ctx context.Context, token string) (*postoffice.Invitation, error)
	Acknowledge(ctx context.Context, token string, ch postoffice.Channel, source string) (*postoffice.AckResult, error)
	AccountToken(consumerID int64) string
	Tokens() *postoffice.Keyring
}

// Accounts is the consumers' points: balance, history, the redemption catalog (redeemer 40).
type Accounts interface {
	Account(ctx context.Context, consumerID int64, historyLimit int) (*rewards.Account, error)
	Catalog(ctx context.Context) ([]rewards.CatalogItem, error)
	// Redeem spends the item's cost from the consumer's balance. It returns an error
	// wrapping rewards.ErrOutOfStock or rewards.ErrInsufficientPoints when it cannot.
	Redeem(ctx context.Context, consumerID, itemID int64) error
	// Redemptions lists her newest limit redemptions, newest first, with their vouchers.
	Redemptions(ctx context.Context, consumerID int64, limit int) ([]rewards.Redemption, error)
}

// Consumers reads a consumer and records her unsubscribing.
type Consumers interface {
	ConsumerByID(ctx context.Context, id int64) (*rewards.Consumer, error)
	Unsubscribe(ctx context.Context, consumerID int64) error
}

// Enrollments keeps sign-ups until their double opt-in confirmation. The pending sign-up is
// a consumer as the form took it (e-mail, name, demographics, interests, format).
type Enrollments interface {
	// CreateEnrollment records a pending sign-up and returns its id.
	CreateEnrollment(ctx context.Context, c *rewards.Consumer) (id int64, err error)
	// ConfirmEnrollment makes the sign-up a consumer (an existing consumer with the address
	// is updated and keeps her status) and returns her. Confirming again returns her too.
	ConfirmEnrollment(ctx context.Context, id int64) (*rewards.Consumer, error)
}

// ConfirmationSender sends the double opt-in e-mail with the link that confirms a sign-up.
type ConfirmationSender interface {
	SendConfirmation(ctx context.Context, to, name, link string) error
}

// RedemptionCodes keeps the one-time codes that confirm a redemption, by their hashes.
type RedemptionCodes interface {
	// CreateRedemptionCode stores a code for consumerID to redeem itemID until expires,
	// replacing any code she had, and returns its id.
	CreateRedemptionCode(ctx context.Context, consumerID, itemID int64, codeHash []byte, now, expires time.Time) (int64, error)
	// UseRedemptionCode spends consumerID's code id if codeHash matches (ok) and returns
	// its item; a wrong code counts one of maxAttempts tries. A missing, used, expired or
	// exhausted code is a rewards.ENOTFOUND error.
	UseRedemptionCode(ctx context.Context, id, consumerID int64, codeHash []byte, now time.Time, maxAttempts int) (itemID int64, ok bool, err error)
}

// RedemptionCodeSender mails a consumer the code that confirms her redemption of item.
type RedemptionCodeSender interface {
	SendRedemptionCode(ctx context.Context, to, name, item, code string, valid time.Duration) error
}

// Deps are the web pages' collaborators.
type Deps struct {
	PostOffice    PostOffice
	Accounts      Accounts
	Consumers     Consumers
	Enrollments   Enrollments
	Confirmations ConfirmationSender
	// Codes and CodeSender make and mail the one-time codes that confirm a redemption;
	// without both, nothing can be redeemed.
	Codes      RedemptionCodes
	CodeSender RedemptionCodeSender
	// BaseURL is the public URL of these pages, for the links in confirmation e-mails.
	BaseURL string
	Logger  *slog.Logger
	// Now is the clock, for the birth year range; nil means time.Now.
	Now func() time.Time
	// TrustedProxies are the proxies whose X-Forwarded-For names the client.
	TrustedProxies TrustedProxies
	// Webhooks, when set, serves the sending providers' webhooks under /webhooks/.
	Webhooks *Webhooks
}

// server is the handlers with their dependencies.
type server struct {
	Deps
	// buffers holds page buffers for render.
	buffers sync.Pool
	// joinsByClient and joinsByEmail bound the confirmation e-mails /join sends;
	// codesByConsumer the redemption codes.
	joinsByClient, joinsByEmail, codesByConsumer *rateLimit
}

// Handler serves the consumer pages:
//
//	GET, HEAD /i/{token}, /a/{token}   the earning invitation with its Submit button
//	POST      /i/{token}, /a/{token}   acknowledge: the thank-you page
//	GET, HEAD /account/{token}         balance, pending points, history, catalog
//	POST      /account/{token}/redeem  ask to redeem a catalog item (form field item): mails
//	                                   her a one-time code and asks for it
//	POST      /account/{token}/redeem/{id}  redeem with code id (form field code)
//	GET, HEAD /u/{token}               the unsubscribe page
//	POST      /u/{token}               unsubscribe; also RFC 8058 one-click
//	GET, POST /join                    the enrollment form
//	GET       /join/confirm/{token}    the double opt-in link: a Confirm button
//	POST      /join/confirm/{token}    confirms
//	GET, HEAD /static/*                embedded CSS and the icon
//	GET, HEAD /favicon.ico             the icon
func Handler(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &server{Deps: d, joinsByClient: newRateLimit(10, time.Hour, rateLimitKeys), joinsByEmail: newRateLimit(3, time.Hour, rateLimitKeys),
		codesByConsumer: newRateLimit(codesPerHour, time.Hour, rateLimitKeys)}
	s.buffers.New = func() any { return new(bytes.Buffer) }
	r := chi.NewRouter()
	r.Use(securityHeaders)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "Page not found", "There is no page at this address.")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Not allowed", "This page cannot be used that way.")
	})

	for _, prefix := range []string{"/i/", "/a/"} {
		r.Get(prefix+"{token}", s.invitation)
		r.Head(prefix+"{token}", s.invitation)
		r.Post(prefix+"{token}", s.acknowledge)
	}
	r.Get("/account/{token}", s.account)
	r.Head("/account/{token}", s.account)
	r.Post("/account/{token}/redeem", s.redeem)
	r.Post("/account/{token}/redeem/{id}", s.confirmRedeem)
	r.Get("/u/{token}", s.unsubscribePage)
	r.Head("/u/{token}", s.unsubscribePage)
	r.Post("/u/{token}", s.unsubscribe)
	r.Get("/join", s.joinForm)
	r.Post("/join", s.join)
	r.Get("/join/confirm/{token}", s.confirmForm)
	r.Post("/join/confirm/{token}", s.confirm)
	static := staticHandler()
	r.Get("/static/*", static)
	// Browsers ask for /favicon.ico on every page, toolbox pages included.
	r.Get("/favicon.ico", favicon)
	r.Head("/favicon.ico", favicon)
	if d.Webhooks != nil {
		r.Mount("/webhooks", d.Webhooks.Handler())
	}
	r.Head("/static/*", static)
	return r
}

// securityHeaders keeps tokens in URLs from leaking by Referer, keeps the pages out of other
// sites' frames, and forbids scripts everywhere, in the sandboxed invitation too (a srcdoc
// frame inherits this policy). Inline styles and remote images stay allowed because the
// invitation's HTML e-mail uses them.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "script-src 'none'; object-src 'none'; style-src 'self' 'unsafe-inline'; "+
			"img-src * data:; form-action 'self'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// render writes a page with status. The page is rendered into a buffer first, so that a
// failure to render is a clean 500 rather than half a page, and the answer goes out in one
// write with its Content-Length (templ would otherwise flush the connection mid-answer).
// Pages behind a token are private to their consumer, so nothing caches them.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	buf := s.buffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledPage {
			buf.Reset()
			s.buffers.Put(buf)
		}
	}()
	if err := c.Render(r.Context(), buf); err != nil {
		if r.Context().Err() == nil {
			s.Logger.Error("web: render", "path", redactPath(r.URL.Path), "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// maxPooledPage is the largest page buffer kept for reuse; an invitation with a big HTML
// body should not pin its memory.
const maxPooledPage = 256 << 10

// errorPage answers with a page that says what went wrong in words for the consumer.
func (s *server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	s.render(w, r, status, errorPage(status, title, message))
}

// invalidLink is the answer to a token that does not verify or names nothing we have.
func (s *server) invalidLink(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusNotFound, "This link is not valid",
		"This link is not valid. It may have been copied incompletely from the e-mail.")
}

// Status is the HTTP status that answers err, by its rewards code; 500 for an error without
// one. The consumer pages, the toolbox and its API all answer by it.
func Status(err error) int {
	switch rewards.ErrorCode(err) {
	case "":
		return http.StatusOK
	case rewards.EINVALID:
		return http.StatusBadRequest
	case rewards.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case rewards.EFORBIDDEN:
		return http.StatusForbidden
	case rewards.ENOTFOUND:
		return http.StatusNotFound
	case rewards.ECONFLICT:
		return http.StatusConflict
	case rewards.ETOOMANY:
		return http.StatusTooManyRequests
	case rewards.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail maps an error to its page: a bad token or a missing row is 404, anything else is
// 503 "please try again" (the database could not answer or commit; the request changed
// nothing the consumer was told about) and is logged.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, postoffice.ErrBadToken), errors.Is(err, postoffice.ErrNoDelivery), Status(err) == http.StatusNotFound:
		s.invalidLink(w, r)
	case r.Context().Err() != nil:
		// The consumer went away; nobody reads the answer.
	default:
		s.Logger.Error("web", "method", r.Method, "path", redactPath(r.URL.Path), "err", err)
		w.Header().Set("Retry-After", "5")
		s.errorPage(w, r, http.StatusServiceUnavailable, "Please try again",
			"Something went wrong on our side and nothing was changed. Please try again in a moment.")
	}
}

// consumerOf returns the consumer a delivery or account token names. Returns an error
// wrapping postoffice.ErrBadToken for a token that does not verify or is an enrollment
// token, whose second number is an enrollment and not a consumer.
func (s *server) consumerOf(token string) (int64, error) {
	job, consumer, err := s.PostOffice.Tokens().Decode(token)
	if err != nil {
		return 0, err
	}
	if job == EnrollmentJobKey {
		return 0, fmt.Errorf("%w: an enrollment token names no consumer", postoffice.ErrBadToken)
	}
	return consumer, nil
}

// TrustedProxies are the reverse proxies whose X-Forwarded-For is believed: what a proxy
// adds names the client it heard from. Anyone else can write the header, so from any other
// peer it is ignored. The zero value trusts no one.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies reads a comma-separated list of IP addresses and CIDR prefixes, such
// as "127.0.0.1, 10.0.0.0/8". An empty list trusts no one. Returns an error naming the first
// entry that is neither.
func ParseTrustedProxies(list string) (TrustedProxies, error) {
	var t TrustedProxies
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if p, err := netip.ParsePrefix(entry); err == nil {
			t = append(t, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(entry)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an IP address nor a CIDR prefix", entry)
		}
		ip = ip.Unmap()
		t = append(t, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return t, nil
}

func (t TrustedProxies) trusts(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIP is the address a request came from, without its port. From a trusted proxy it
// walks X-Forwarded-For from the right, past the hops trusted proxies added, and takes the
// first one no trusted proxy vouches for: hops to its left are whatever the client sent.
// A hop that is not an address ends the walk at the last proxy that is trusted.
func (t TrustedProxies) ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !t.trusts(peer) {
		return host
	}
	client := peer.Unmap()
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			ip, ok := hopAddr(parts[j])
			if !ok {
				return client.String()
			}
			client = ip
			if !t.trusts(ip) {
				return client.String()
			}
		}
	}
	return client.String()
}

// hopAddr reads one X-Forwarded-For hop: an address, or an address with a port (some
// proxies add it).
func hopAddr(hop string) (netip.Addr, bool) {
	hop = strings.TrimSpace(hop)
	ip, err := netip.ParseAddr(hop)
	if err != nil {
		ap, err := netip.ParseAddrPort(hop)
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	return ip.Unmap(), true
}

// redactPath drops the token from a logged path: a token is a credential for its account.
func redactPath(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if len(part) == postoffice.TokenLen {
			parts[i] = part[:4] + "…"
		}
	}
	return strings.Join(parts, "/")
}
