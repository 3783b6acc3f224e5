package toolbox

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"pointpost/rewards"
)

// sessionStore keeps the toolbox's sessions and device cookies, by the hashes of their
// secrets (rewards.HashSecret).
type sessionStore interface {
	RecordLogin(ctx context.Context, userID int64, now time.Time) error

	CreateSession(ctx context.Context, idHash []byte, userID int64, now time.Time) error
	SessionUser(ctx context.Context, idHash []byte) (u *rewards.User, created, seen time.Time, err error)
	TouchSession(ctx context.Context, idHash []byte, now time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error

	CreateDevice(ctx context.Context, tokenHash []byte, userID int64, now, expiredBefore time.Time) error
	ClaimDeviceAttempt(ctx context.Context, tokenHash []byte, email string, limit int, expiredBefore time.Time) (bool, error)
	DeviceSignedIn(ctx context.Context, tokenHash []byte) error
	ReleaseDeviceAttempt(ctx context.Context, tokenHash []byte) error
}

// sessions signs users in and out and lets each request know who is asking.
type sessions struct {
	base
	accounts    sessionStore
	sessionIdle time.Duration
	sessionMax  time.Duration
}

// SessionCookie names the cookie that carries a toolbox session. Its value is 32 random
// bytes, base64url; the store keeps their SHA-256 hash.
const SessionCookie = "pointpost_session"

// DeviceCookie names the cookie a browser gets at a successful sign-in (OWASP's "device
// cookie"): 32 random bytes, base64url, kept hashed and bound to the account. Sent back
// with the account's address, it lets the browser sign in while strangers' failures hold
// the account locked, until deviceFailures wrong passwords are tried with it.
const DeviceCookie = "pointpost_device"

const (
	deviceTTL      = 90 * 24 * time.Hour
	deviceFailures = 3
)

// claimDevice returns the hash of the request's device cookie if it belongs to the account
// of email and has failures to spare, counting this attempt as one of them; otherwise nil.
func (d sessions) claimDevice(r *http.Request, email string) ([]byte, error) {
	c, err := r.Cookie(DeviceCookie)
	if err != nil || c.Value == "" || email == "" {
		return nil, nil
	}
	h := rewards.HashSecret(c.Value)
	ok, err := d.accounts.ClaimDeviceAttempt(r.Context(), h, email, deviceFailures, d.now().Add(-deviceTTL))
	if err != nil || !ok {
		return nil, err
	}
	return h, nil
}

// releaseDevice uncounts a claimed device attempt whose password was not checked.
func (d sessions) releaseDevice(ctx context.Context, device []byte) {
	if device == nil {
		return
	}
	if err := d.accounts.ReleaseDeviceAttempt(ctx, device); err != nil {
		d.logger.Warn("toolbox: release device attempt", "err", err)
	}
}

// trustDevice, at a successful sign-in, clears the failures of the device cookie it came
// with (device) or, from a browser without one of u's, sets a new one.
func (d sessions) trustDevice(w http.ResponseWriter, r *http.Request, u *rewards.User, device []byte) error {
	if device != nil {
		return d.accounts.DeviceSignedIn(r.Context(), device)
	}
	secret, now := rewards.NewSecret(), d.now()
	if err := d.accounts.CreateDevice(r.Context(), rewards.HashSecret(secret), u.ID, now, now.Add(-deviceTTL)); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: DeviceCookie, Value: secret, Path: "/login", HttpOnly: true,
		Secure: d.secure(r), SameSite: http.SameSiteStrictMode, MaxAge: int(deviceTTL / time.Second)})
	return nil
}

type userKey struct{}

// userFrom returns the signed-in user of a request, or nil.
func userFrom(ctx context.Context) *rewards.User {
	u, _ := ctx.Value(userKey{}).(*rewards.User)
	return u
}

func withUser(ctx context.Context, u *rewards.User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// secure reports whether cookies must be Secure: the request came over TLS, or the
// toolbox is published at an https address (behind a proxy that ends TLS).
func (d base) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(d.publicURL, "https://")
}

// loadSession puts the user of a valid session cookie into the request's context. A session
// idle longer than SessionIdle or older than SessionMax is ended; one seen more than a
// minute ago is marked seen now.
func (d sessions) loadSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(SessionCookie)
		if err != nil || c.Value == "" {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		id := rewards.HashSecret(c.Value)
		u, created, seen, err := d.accounts.SessionUser(ctx, id)
		now := d.now()
		switch {
		case err != nil && rewards.ErrorCode(err) == rewards.ENOTFOUND:
			d.clearSessionCookie(w, r)
		case err != nil:
			d.fail(w, r, err)
			return
		case u.Disabled || now.Sub(seen) > d.sessionIdle || now.Sub(created) > d.sessionMax:
			if err := d.accounts.DeleteSession(ctx, id); err != nil {
				d.fail(w, r, err)
				return
			}
			d.clearSessionCookie(w, r)
		default:
			if now.Sub(seen) > time.Minute {
				if err := d.accounts.TouchSession(ctx, id, now); err != nil {
					d.logger.Warn("toolbox: touch session", "err", err)
				}
			}
			r = r.WithContext(withUser(ctx, u))
		}
		next.ServeHTTP(w, r)
	})
}

// startSession signs u in: it ends the session the request came with (so a session ID
// planted before login is worthless) and sets a new one.
func (d sessions) startSession(w http.ResponseWriter, r *http.Request, u *rewards.User) error {
	ctx := r.Context()
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if err := d.accounts.DeleteSession(ctx, rewards.HashSecret(c.Value)); err != nil {
			return err
		}
	}
	secret := rewards.NewSecret()
	now := d.now()
	if err := d.accounts.CreateSession(ctx, rewards.HashSecret(secret), u.ID, now); err != nil {
		return err
	}
	if err := d.accounts.RecordLogin(ctx, u.ID, now); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", HttpOnly: true,
		Secure: d.secure(r), SameSite: http.SameSiteLaxMode, MaxAge: int(d.sessionMax / time.Second)})
	return nil
}

// endSession signs the request's user out.
func (d sessions) endSession(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if err := d.accounts.DeleteSession(r.Context(), rewards.HashSecret(c.Value)); err != nil {
			return err
		}
	}
	d.clearSessionCookie(w, r)
	return nil
}

func (d sessions) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: d.secure(r), SameSite: http.SameSiteLaxMode})
}

// requireUser sends a visitor without a session to the login page, returning afterwards
// to the page asked for.
func (d sessions) requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if userFrom(r.Context()) != nil {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		http.Error(w, "Your session has ended: sign in again.", http.StatusUnauthorized)
	})
}

// requireOperator hides the operator pages from issuer users: they answer 404, as for a
// page that does not exist.
func (d sessions) requireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !userFrom(r.Context()).Operator() {
			d.notFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// issuerScope is the issuer whose objects the user may list: the user's own, or 0 (all)
// for an operator.
func issuerScope(ctx context.Context) int64 {
	u := userFrom(ctx)
	if u.Operator() {
		return 0
	}
	return u.IssuerID
}

// safeNext keeps a post-login redirect on this site: only a local path is followed. Control
// characters (which url.Parse refuses) and backslashes are refused anywhere: browsers drop
// the one ("/\t/evil") and read the other as a slash, either way making a path a host.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	return next
}
