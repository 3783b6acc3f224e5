package toolbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"pointpost/rewards"
)

// AccountStore keeps the toolbox's users, sessions, device cookies, one-time links and API
// keys. Secrets (session and device cookies, link tokens, API keys) are stored only as
// their SHA-256 hashes.
type AccountStore interface {
	CreateUser(ctx context.Context, u *rewards.User, now time.Time) error
	UserByEmail(ctx context.Context, email string) (*rewards.User, string, error)
	UserByID(ctx context.Context, id int64) (*rewards.User, error)
	Users(ctx context.Context, issuerID int64) ([]*rewards.User, error)
	CountOperators(ctx context.Context) (int, error)
	SetPassword(ctx context.Context, userID int64, hash string) error
	SetUserDisabled(ctx context.Context, userID int64, disabled bool) error
	RecordLogin(ctx context.Context, userID int64, now time.Time) error

	CreateSession(ctx context.Context, idHash []byte, userID int64, now time.Time) error
	SessionUser(ctx context.Context, idHash []byte) (u *rewards.User, created, seen time.Time, err error)
	TouchSession(ctx context.Context, idHash []byte, now time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error

	CreateUserLink(ctx context.Context, tokenHash []byte, userID int64, now, expires time.Time) error
	UserLink(ctx context.Context, tokenHash []byte, now time.Time) (*rewards.User, error)
	UseUserLink(ctx context.Context, tokenHash []byte, passwordHash string, now time.Time) (*rewards.User, error)

	CreateDevice(ctx context.Context, tokenHash []byte, userID int64, now, expiredBefore time.Time) error
	ClaimDeviceAttempt(ctx context.Context, tokenHash []byte, email string, limit int, expiredBefore time.Time) (bool, error)
	DeviceSignedIn(ctx context.Context, tokenHash []byte) error
	ReleaseDeviceAttempt(ctx context.Context, tokenHash []byte) error
	DropSpentDevice(ctx context.Context, tokenHash []byte, limit int) error

	CreateAPIKey(ctx context.Context, k *rewards.APIKey, keyHash []byte, now time.Time) error
	APIKeyByHash(ctx context.Context, keyHash []byte) (*rewards.APIKey, error)
	APIKeys(ctx context.Context, issuerID int64) ([]*rewards.APIKey, error)
	RevokeAPIKey(ctx context.Context, id, issuerID int64, now time.Time) error
	TouchAPIKey(ctx context.Context, id int64, now time.Time) error
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
func (d Deps) claimDevice(r *http.Request, email string) ([]byte, error) {
	c, err := r.Cookie(DeviceCookie)
	if err != nil || c.Value == "" || email == "" {
		return nil, nil
	}
	h := hashSecret(c.Value)
	ok, err := d.Accounts.ClaimDeviceAttempt(r.Context(), h, email, deviceFailures, d.Now().Add(-deviceTTL))
	if err != nil || !ok {
		return nil, err
	}
	return h, nil
}

// releaseDevice uncounts a claimed device attempt whose password was not checked.
func (d Deps) releaseDevice(ctx context.Context, device []byte) {
	if device == nil {
		return
	}
	if err := d.Accounts.ReleaseDeviceAttempt(ctx, device); err != nil {
		d.Logger.Warn("toolbox: release device attempt", "err", err)
	}
}

// trustDevice, at a successful sign-in, clears the failures of the device cookie it came
// with (device) or, from a browser without one of u's, sets a new one.
func (d Deps) trustDevice(w http.ResponseWriter, r *http.Request, u *rewards.User, device []byte) error {
	if device != nil {
		return d.Accounts.DeviceSignedIn(r.Context(), device)
	}
	secret, now := newSecret(), d.Now()
	if err := d.Accounts.CreateDevice(r.Context(), hashSecret(secret), u.ID, now, now.Add(-deviceTTL)); err != nil {
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

// hashSecret is how every toolbox secret is kept in the store.
func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// newSecret returns 32 random bytes, base64url without padding.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// secure reports whether cookies must be Secure: the request came over TLS, or the
// toolbox is published at an https address (behind a proxy that ends TLS).
func (d Deps) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(d.BaseURL, "https://")
}

// loadSession puts the user of a valid session cookie into the request's context. A session
// idle longer than SessionIdle or older than SessionMax is ended; one seen more than a
// minute ago is marked seen now.
func (d Deps) loadSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(SessionCookie)
		if err != nil || c.Value == "" {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		id := hashSecret(c.Value)
		u, created, seen, err := d.Accounts.SessionUser(ctx, id)
		now := d.Now()
		switch {
		case err != nil && rewards.ErrorCode(err) == rewards.ENOTFOUND:
			d.clearSessionCookie(w, r)
		case err != nil:
			d.fail(w, r, err)
			return
		case u.Disabled || now.Sub(seen) > d.SessionIdle || now.Sub(created) > d.SessionMax:
			if err := d.Accounts.DeleteSession(ctx, id); err != nil {
				d.fail(w, r, err)
				return
			}
			d.clearSessionCookie(w, r)
		default:
			if now.Sub(seen) > time.Minute {
				if err := d.Accounts.TouchSession(ctx, id, now); err != nil {
					d.Logger.Warn("toolbox: touch session", "err", err)
				}
			}
			r = r.WithContext(withUser(ctx, u))
		}
		next.ServeHTTP(w, r)
	})
}

// startSession signs u in: it ends the session the request came with (so a session ID
// planted before login is worthless) and sets a new one.
func (d Deps) startSession(w http.ResponseWriter, r *http.Request, u *rewards.User) error {
	ctx := r.Context()
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if err := d.Accounts.DeleteSession(ctx, hashSecret(c.Value)); err != nil {
			return err
		}
	}
	secret := newSecret()
	now := d.Now()
	if err := d.Accounts.CreateSession(ctx, hashSecret(secret), u.ID, now); err != nil {
		return err
	}
	if err := d.Accounts.RecordLogin(ctx, u.ID, now); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", HttpOnly: true,
		Secure: d.secure(r), SameSite: http.SameSiteLaxMode, MaxAge: int(d.SessionMax / time.Second)})
	return nil
}

// endSession signs the request's user out.
func (d Deps) endSession(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if err := d.Accounts.DeleteSession(r.Context(), hashSecret(c.Value)); err != nil {
			return err
		}
	}
	d.clearSessionCookie(w, r)
	return nil
}

func (d Deps) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: d.secure(r), SameSite: http.SameSiteLaxMode})
}

// requireUser sends a visitor without a session to the login page, returning afterwards
// to the page asked for.
func (d Deps) requireUser(next http.Handler) http.Handler {
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
func (d Deps) requireOperator(next http.Handler) http.Handler {
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
