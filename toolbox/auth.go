package toolbox

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"
	"golang.org/x/crypto/bcrypt"

	"pointpost/rewards"
	"pointpost/web"
)

// accountStore is what signing in, setting a password and the profile page read and change
// of users, one-time links and API keys.
type accountStore interface {
	UserByEmail(ctx context.Context, email string) (*rewards.User, string, error)
	SetPassword(ctx context.Context, userID int64, hash string) error
	UserLink(ctx context.Context, tokenHash []byte, now time.Time) (*rewards.User, error)
	UseUserLink(ctx context.Context, tokenHash []byte, passwordHash string, now time.Time) (*rewards.User, error)
	DropSpentDevice(ctx context.Context, tokenHash []byte, limit int) error
	CreateAPIKey(ctx context.Context, k *rewards.APIKey, keyHash []byte, now time.Time) error
	APIKeys(ctx context.Context, issuerID int64) ([]*rewards.APIKey, error)
	RevokeAPIKey(ctx context.Context, id, issuerID int64, now time.Time) error
}

// setupStore checks the first operator's setup link and creates that operator.
type setupStore interface {
	CheckSetupToken(ctx context.Context, tokenHash []byte, now time.Time) error
	CreateFirstOperator(ctx context.Context, tokenHash []byte, u *rewards.User, passwordHash string, now time.Time) error
	// CountOperators counts the operators: with none, the sign-in page says where the
	// setup link is.
	CountOperators(ctx context.Context) (int, error)
}

// defaultPasswordCost is the bcrypt cost of stored passwords: about a quarter of a second.
const defaultPasswordCost = 12

const (
	// minPassword is the shortest password accepted, in characters; bcrypt reads at most
	// maxPassword bytes.
	minPassword = 10
	maxPassword = 72

	wrongLogin = "Wrong e-mail or password."
)

// hashPassword is how passwords are kept.
func (d *authPages) hashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), d.passwordCost)
	return string(h), err
}

// fieldErrors name, per form field, what to fix.
type fieldErrors map[string]string

// checkNewPassword says in errs what is wrong with a new password and its confirmation.
func checkNewPassword(errs fieldErrors, password, confirm string) {
	switch {
	case utf8.RuneCountInString(password) < minPassword:
		errs["password"] = fmt.Sprintf("Use at least %d characters; a few words make a good one.", minPassword)
	case len(password) > maxPassword:
		errs["password"] = fmt.Sprintf("Use at most %d bytes: longer passwords are cut short.", maxPassword)
	case password != confirm:
		errs["confirm"] = "The two passwords differ: type the same one twice."
	}
}

// authPages are the pages reached without a session (sign-in, one-time links, setup) and
// the signed-in user's own profile.
type authPages struct {
	sessions
	accounts       accountStore
	settings       setupStore
	passwordCost   int
	trustedProxies web.TrustedProxies
	throttle       *loginThrottle
	// dummyHash is a bcrypt hash, at PasswordCost, of a random password no one knows. A
	// sign-in to an unknown address is checked against it, so it takes as long as a real
	// one. Made at the first such sign-in, not at start.
	dummyHash func() []byte
}

func (d *authPages) newDummyHash() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte(rewards.NewSecret()), d.passwordCost)
	if err != nil {
		panic(err) // only for a cost out of range or a password over 72 bytes: neither here
	}
	return h
}

func newAuthPages(s sessions, accounts accountStore, setup setupStore, passwordCost int, proxies web.TrustedProxies) *authPages {
	a := &authPages{sessions: s, accounts: accounts, settings: setup, passwordCost: passwordCost, trustedProxies: proxies,
		throttle: newLoginThrottle(s.now)}
	a.dummyHash = sync.OnceValue(a.newDummyHash)
	return a
}

// authRoutes are the pages reached without a session: login, logout, setting a password
// from a one-time link.
func (d *authPages) authRoutes(r chi.Router) {
	r.Get("/login", d.loginForm)
	r.Post("/login", d.login)
	r.Post("/logout", d.logout)
	r.Get("/welcome/{token}", d.welcomeForm)
	r.Post("/welcome/{token}", d.welcome)
	r.Get("/setup/{token}", d.setupForm)
	r.Post("/setup/{token}", d.setup)
}

type loginView struct {
	Email, Next string
	Error       string
	// NoOperator says nobody can sign in yet: the first operator comes from the setup link.
	NoOperator bool
}

func (d *authPages) loginForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if userFrom(r.Context()) != nil {
		http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
		return
	}
	n, err := d.settings.CountOperators(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, loginPage(d.page(w, r, "Sign in", ""), loginView{Next: next, NoOperator: n == 0}))
}

// login signs a user in. Every failure, whether the address has an account or not, gets
// the same words and takes as long (one bcrypt comparison); the throttle answers before
// any comparison, and counts this one as failed until the password proves right. A browser
// with a device cookie of the account signs in past the account's lock, within the
// cookie's own budget of failures.
func (d *authPages) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := loginView{Email: strings.TrimSpace(r.PostFormValue("email")), Next: r.PostFormValue("next")}
	password, client := r.PostFormValue("password"), d.trustedProxies.ClientIP(r)
	device, err := d.claimDevice(r, v.Email)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	try, wait := d.throttle.begin(v.Email, client, device != nil)
	if wait > 0 {
		d.releaseDevice(ctx, device)
		mins := int((wait + time.Minute - 1) / time.Minute)
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		v.Error = fmt.Sprintf("Too many failed sign-ins. Try again in %d minute%s.", mins, plural(mins))
		d.renderStatus(w, r, http.StatusTooManyRequests, loginPage(d.page(w, r, "Sign in", ""), v))
		return
	}
	u, hash, err := d.accounts.UserByEmail(ctx, v.Email)
	if err != nil && rewards.ErrorCode(err) != rewards.ENOTFOUND {
		d.throttle.giveBack(try) // our failure, not a guess
		d.releaseDevice(ctx, device)
		d.fail(w, r, err)
		return
	}
	known := err == nil && hash != ""
	stored := []byte(hash)
	if !known {
		stored = d.dummyHash()
	}
	if bcrypt.CompareHashAndPassword(stored, []byte(password)) != nil || !known {
		if device != nil {
			if err := d.accounts.DropSpentDevice(ctx, device, deviceFailures); err != nil {
				d.fail(w, r, err)
				return
			}
		}
		v.Error = wrongLogin
		d.renderStatus(w, r, http.StatusUnauthorized, loginPage(d.page(w, r, "Sign in", ""), v))
		return
	}
	if u.Disabled {
		d.throttle.giveBack(try)
		d.releaseDevice(ctx, device)
		v.Error = "This account is disabled. Ask an operator to enable it."
		d.renderStatus(w, r, http.StatusForbidden, loginPage(d.page(w, r, "Sign in", ""), v))
		return
	}
	d.throttle.succeed(try)
	if err := d.trustDevice(w, r, u, device); err != nil {
		d.fail(w, r, err)
		return
	}
	if err := d.startSession(w, r, u); err != nil {
		d.fail(w, r, err)
		return
	}
	http.Redirect(w, r, safeNext(v.Next), http.StatusSeeOther)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// renderStatus renders a page with a status other than 200, such as a form's 422.
func (d base) renderStatus(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	d.render(w, r, c)
}

func (d *authPages) logout(w http.ResponseWriter, r *http.Request) {
	if err := d.endSession(w, r); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/login", "You are signed out.")
}

// baseURL is where people reach the toolbox: BaseURL, or else the address of this request.
func (d base) baseURL(r *http.Request) string {
	if d.publicURL != "" {
		return d.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// passwordView is the form that sets a password from a one-time link: an invitation, a new
// sign-in link or the first operator's setup (which also asks for the e-mail address).
type passwordView struct {
	Setup  bool
	Email  string
	Action string
	Errors fieldErrors
}

func (d *authPages) deadLink(w http.ResponseWriter, r *http.Request, setup bool) {
	d.renderStatus(w, r, http.StatusNotFound, deadLinkPage(d.page(w, r, "Link expired", ""), setup))
}

// linkFailed answers a one-time link that failed: the dead-link page if it is unknown, used
// or expired.
func (d *authPages) linkFailed(w http.ResponseWriter, r *http.Request, err error, setup bool) {
	if rewards.ErrorCode(err) == rewards.ENOTFOUND {
		d.deadLink(w, r, setup)
		return
	}
	d.fail(w, r, err)
}

func (d *authPages) welcomeForm(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	u, err := d.accounts.UserLink(r.Context(), rewards.HashSecret(token), d.now())
	if err != nil {
		d.linkFailed(w, r, err, false)
		return
	}
	d.render(w, r, passwordPage(d.page(w, r, "Choose a password", ""),
		passwordView{Email: u.Email, Action: "/welcome/" + token}))
}

// welcome sets the password of a one-time link's user and signs the user in.
func (d *authPages) welcome(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := chi.URLParam(r, "token")
	u, err := d.accounts.UserLink(ctx, rewards.HashSecret(token), d.now())
	if err != nil {
		d.linkFailed(w, r, err, false)
		return
	}
	v := passwordView{Email: u.Email, Action: "/welcome/" + token, Errors: fieldErrors{}}
	password := r.PostFormValue("password")
	if checkNewPassword(v.Errors, password, r.PostFormValue("confirm")); len(v.Errors) > 0 {
		d.renderStatus(w, r, http.StatusUnprocessableEntity, passwordPage(d.page(w, r, "Choose a password", ""), v))
		return
	}
	hash, err := d.hashPassword(password)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if u, err = d.accounts.UseUserLink(ctx, rewards.HashSecret(token), hash, d.now()); err != nil {
		d.linkFailed(w, r, err, false)
		return
	}
	// Setting the password proves it as a sign-in does: this browser is the owner's.
	if err := d.trustDevice(w, r, u, nil); err != nil {
		d.fail(w, r, err)
		return
	}
	if err := d.startSession(w, r, u); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/", "Your password is set. Welcome to pointpost.")
}

func (d *authPages) setupForm(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	if err := d.settings.CheckSetupToken(r.Context(), rewards.HashSecret(token), d.now()); err != nil {
		d.linkFailed(w, r, err, true)
		return
	}
	d.render(w, r, passwordPage(d.page(w, r, "Set up pointpost", ""),
		passwordView{Setup: true, Action: "/setup/" + token}))
}

// setup makes the first operator, with the address and password typed, and signs them in.
func (d *authPages) setup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := chi.URLParam(r, "token")
	if err := d.settings.CheckSetupToken(ctx, rewards.HashSecret(token), d.now()); err != nil {
		d.linkFailed(w, r, err, true)
		return
	}
	v := passwordView{Setup: true, Action: "/setup/" + token, Email: strings.TrimSpace(r.PostFormValue("email")), Errors: fieldErrors{}}
	email, err := rewards.ValidEmail(v.Email)
	if err != nil {
		v.Errors["email"] = "Type your e-mail address, like ann@example.com."
	}
	password := r.PostFormValue("password")
	if checkNewPassword(v.Errors, password, r.PostFormValue("confirm")); len(v.Errors) > 0 {
		d.renderStatus(w, r, http.StatusUnprocessableEntity, passwordPage(d.page(w, r, "Set up pointpost", ""), v))
		return
	}
	hash, err := d.hashPassword(password)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	u := &rewards.User{Email: email, Role: rewards.RoleOperator}
	if err := d.settings.CreateFirstOperator(ctx, rewards.HashSecret(token), u, hash, d.now()); err != nil {
		if rewards.ErrorCode(err) == rewards.ENOTFOUND {
			d.deadLink(w, r, true)
			return
		}
		if _, _, e := d.accounts.UserByEmail(ctx, email); e == nil {
			v.Errors["email"] = "This address already has an account: choose another."
			d.renderStatus(w, r, http.StatusUnprocessableEntity, passwordPage(d.page(w, r, "Set up pointpost", ""), v))
			return
		}
		d.fail(w, r, err)
		return
	}
	if err := d.trustDevice(w, r, u, nil); err != nil {
		d.fail(w, r, err)
		return
	}
	if err := d.startSession(w, r, u); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/", "pointpost is yours. Invite the others from Issuers & users.")
}

// profileRoutes are the signed-in user's own pages: profile, password, API keys.
func (d *authPages) profileRoutes(r chi.Router) {
	r.Get("/profile", d.profile)
	r.Post("/profile/password", d.changePassword)
	r.Post("/profile/api-keys", d.createAPIKey)
	r.Post("/profile/api-keys/{id}/revoke", d.revokeAPIKey)
}

type profileView struct {
	User *rewards.User
	Keys []*rewards.APIKey
	// NewKey and Secret show a key just made, the one time its secret is shown.
	NewKey  *rewards.APIKey
	Secret  string
	KeyName string
	Errors  fieldErrors
}

// ownKeys lists the keys the user manages: the issuer's, or the operators' own.
func (d *authPages) ownKeys(ctx context.Context, u *rewards.User) ([]*rewards.APIKey, error) {
	keys, err := d.accounts.APIKeys(ctx, u.IssuerID)
	if err != nil || !u.Operator() {
		return keys, err
	}
	var own []*rewards.APIKey
	for _, k := range keys {
		if k.Operator() {
			own = append(own, k)
		}
	}
	return own, nil
}

func (d *authPages) renderProfile(w http.ResponseWriter, r *http.Request, status int, v profileView) {
	keys, err := d.ownKeys(r.Context(), v.User)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v.Keys = keys
	d.renderStatus(w, r, status, profilePage(d.page(w, r, "Your profile", ""), v))
}

func (d *authPages) profile(w http.ResponseWriter, r *http.Request) {
	d.renderProfile(w, r, http.StatusOK, profileView{User: userFrom(r.Context())})
}

// changePassword sets a new password after checking the current one. The store ends all
// the user's sessions; this one is renewed.
func (d *authPages) changePassword(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u := userFrom(ctx)
	v := profileView{User: u, Errors: fieldErrors{}}
	_, hash, err := d.accounts.UserByEmail(ctx, u.Email)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if hash == "" || bcrypt.CompareHashAndPassword([]byte(hash), []byte(r.PostFormValue("current"))) != nil {
		v.Errors["current"] = "That is not your current password."
	}
	password := r.PostFormValue("password")
	if checkNewPassword(v.Errors, password, r.PostFormValue("confirm")); len(v.Errors) > 0 {
		d.renderProfile(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	if hash, err = d.hashPassword(password); err != nil {
		d.fail(w, r, err)
		return
	}
	if err := d.accounts.SetPassword(ctx, u.ID, hash); err != nil {
		d.fail(w, r, err)
		return
	}
	if err := d.startSession(w, r, u); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/profile", "Password changed. Your other sessions are signed out.")
}

// keyNameError says what is wrong with an API key's name, or "".
func keyNameError(name string) string {
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "Name the key after what will use it, like “CRM sync”."
	case n > 100:
		return "Keep the name under 100 characters."
	}
	return ""
}

func (d *authPages) createAPIKey(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r.Context())
	v := profileView{User: u, KeyName: strings.TrimSpace(r.PostFormValue("name")), Errors: fieldErrors{}}
	if msg := keyNameError(v.KeyName); msg != "" {
		v.Errors["name"] = msg
		d.renderProfile(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	k := &rewards.APIKey{Name: v.KeyName, IssuerID: u.IssuerID, IssuerSlug: u.IssuerSlug}
	secret, err := rewards.NewAPIKey(r.Context(), d.accounts, k, d.now())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v.NewKey, v.Secret, v.KeyName = k, secret, ""
	d.renderProfile(w, r, http.StatusOK, v)
}

// revokeAPIKey revokes one of the keys the user may reach; another issuer's key answers 404.
func (d *authPages) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return
	}
	if err := d.accounts.RevokeAPIKey(r.Context(), id, issuerScope(r.Context()), d.now()); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/profile", "Key revoked: requests with it are refused from now on.")
}
