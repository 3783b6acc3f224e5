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
)

// SettingsStore keeps the operators' settings, the issuers and the first operator's setup
// link.
type SettingsStore interface {
	Setting(ctx context.Context, name string) (string, error)
	SetSettings(ctx context.Context, values map[string]string) error

	Issuers(ctx context.Context) ([]rewards.Issuer, error)
	CreateIssuer(ctx context.Context, iss *rewards.Issuer, now time.Time) error
	IssuerPoints(ctx context.Context, issuerID int64) (budget, spent int64, err error)
	SetIssuerBudget(ctx context.Context, issuerID, budget int64) error

	SetSetupToken(ctx context.Context, tokenHash []byte, expires time.Time) error
	CheckSetupToken(ctx context.Context, tokenHash []byte, now time.Time) error
	CreateFirstOperator(ctx context.Context, tokenHash []byte, u *rewards.User, passwordHash string, now time.Time) error
}

// defaultPasswordCost is the bcrypt cost of stored passwords: about a quarter of a second.
const defaultPasswordCost = 12

const (
	// minPassword is the shortest password accepted, in characters; bcrypt reads at most
	// maxPassword bytes.
	minPassword = 10
	maxPassword = 72

	// inviteTTL is how long an invitation or a new sign-in link works; setupTTL the first
	// operator's setup link.
	inviteTTL = 7 * 24 * time.Hour
	setupTTL  = 24 * time.Hour

	wrongLogin = "Wrong e-mail or password."
)

// NewUserLink makes a one-time link with which user userID sets a password, valid for ttl
// from now, and returns it as an absolute URL under baseURL.
func NewUserLink(ctx context.Context, a AccountStore, userID int64, baseURL string, now time.Time, ttl time.Duration) (string, error) {
	token := newSecret()
	if err := a.CreateUserLink(ctx, hashSecret(token), userID, now, now.Add(ttl)); err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + "/welcome/" + token, nil
}

// AddUser adds u (an operator, or a user of issuer u.IssuerID) without a password and
// returns the invitation link, valid for 7 days, with which u sets one. Returns an error
// for an invalid e-mail address, and rewards.ErrExists if the address has an account.
func AddUser(ctx context.Context, a AccountStore, u *rewards.User, baseURL string, now time.Time) (link string, err error) {
	if u.Email, err = rewards.ValidEmail(u.Email); err != nil {
		return "", err
	}
	if err := a.CreateUser(ctx, u, now); err != nil {
		return "", err
	}
	return NewUserLink(ctx, a, u.ID, baseURL, now, inviteTTL)
}

// SetupLink returns a link, valid for 24 hours, with which the first person to open it
// becomes the first operator, choosing e-mail address and password; it replaces any earlier
// setup link. It returns "" when an operator exists: they invite the others.
func SetupLink(ctx context.Context, a AccountStore, s SettingsStore, baseURL string, now time.Time) (link string, err error) {
	n, err := a.CountOperators(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	token := newSecret()
	if err := s.SetSetupToken(ctx, hashSecret(token), now.Add(setupTTL)); err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + "/setup/" + token, nil
}

// NewAPIKey stores the API key k (an operator's when k.IssuerID is 0), setting its ID and
// Prefix, and returns its secret: the only time anyone sees it, since the store keeps its
// hash. Returns rewards.ErrNotFound if k names no issuer.
func NewAPIKey(ctx context.Context, a AccountStore, k *rewards.APIKey, now time.Time) (secret string, err error) {
	secret = "pp_" + newSecret()
	k.Prefix = secret[:11]
	if err := a.CreateAPIKey(ctx, k, hashSecret(secret), now); err != nil {
		return "", err
	}
	return secret, nil
}

// hashPassword is how passwords are kept.
func (d Deps) hashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), d.PasswordCost)
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

// authPages are the pages reached without a session.
type authPages struct {
	Deps
	throttle *loginThrottle
	// dummyHash is a bcrypt hash, at PasswordCost, of a random password no one knows. A
	// sign-in to an unknown address is checked against it, so it takes as long as a real
	// one. Made at the first such sign-in, not at start.
	dummyHash func() []byte
}

func (d Deps) newDummyHash() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte(newSecret()), d.PasswordCost)
	if err != nil {
		panic(err) // only for a cost out of range or a password over 72 bytes: neither here
	}
	return h
}

// authRoutes are the pages reached without a session: login, logout, setting a password
// from a one-time link.
func (d Deps) authRoutes(r chi.Router) {
	a := &authPages{Deps: d, throttle: newLoginThrottle(d.Now), dummyHash: sync.OnceValue(d.newDummyHash)}
	r.Get("/login", a.loginForm)
	r.Post("/login", a.login)
	r.Post("/logout", d.logout)
	r.Get("/welcome/{token}", d.welcomeForm)
	r.Post("/welcome/{token}", d.welcome)
	r.Get("/setup/{token}", d.setupForm)
	r.Post("/setup/{token}", d.setup)
}

type loginView struct {
	Email, Next string
	Error       string
}

func (a *authPages) loginForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if userFrom(r.Context()) != nil {
		http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
		return
	}
	a.render(w, r, loginPage(a.page(w, r, "Sign in", ""), loginView{Next: next}))
}

// login signs a user in. Every failure, whether the address has an account or not, gets
// the same words and takes as long (one bcrypt comparison); the throttle answers before
// any comparison, and counts this one as failed until the password proves right. A browser
// with a device cookie of the account signs in past the account's lock, within the
// cookie's own budget of failures.
func (a *authPages) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := loginView{Email: strings.TrimSpace(r.PostFormValue("email")), Next: r.PostFormValue("next")}
	password, client := r.PostFormValue("password"), a.TrustedProxies.ClientIP(r)
	device, err := a.claimDevice(r, v.Email)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	try, wait := a.throttle.begin(v.Email, client, device != nil)
	if wait > 0 {
		a.releaseDevice(ctx, device)
		mins := int((wait + time.Minute - 1) / time.Minute)
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		v.Error = fmt.Sprintf("Too many failed sign-ins. Try again in %d minute%s.", mins, plural(mins))
		a.renderStatus(w, r, http.StatusTooManyRequests, loginPage(a.page(w, r, "Sign in", ""), v))
		return
	}
	u, hash, err := a.Accounts.UserByEmail(ctx, v.Email)
	if err != nil && rewards.ErrorCode(err) != rewards.ENOTFOUND {
		a.throttle.giveBack(try) // our failure, not a guess
		a.releaseDevice(ctx, device)
		a.fail(w, r, err)
		return
	}
	known := err == nil && hash != ""
	stored := []byte(hash)
	if !known {
		stored = a.dummyHash()
	}
	if bcrypt.CompareHashAndPassword(stored, []byte(password)) != nil || !known {
		if device != nil {
			if err := a.Accounts.DropSpentDevice(ctx, device, deviceFailures); err != nil {
				a.fail(w, r, err)
				return
			}
		}
		v.Error = wrongLogin
		a.renderStatus(w, r, http.StatusUnauthorized, loginPage(a.page(w, r, "Sign in", ""), v))
		return
	}
	if u.Disabled {
		a.throttle.giveBack(try)
		a.releaseDevice(ctx, device)
		v.Error = "This account is disabled. Ask an operator to enable it."
		a.renderStatus(w, r, http.StatusForbidden, loginPage(a.page(w, r, "Sign in", ""), v))
		return
	}
	a.throttle.succeed(try)
	if err := a.trustDevice(w, r, u, device); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.startSession(w, r, u); err != nil {
		a.fail(w, r, err)
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
func (d Deps) renderStatus(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	d.render(w, r, c)
}

func (d Deps) logout(w http.ResponseWriter, r *http.Request) {
	if err := d.endSession(w, r); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/login", "You are signed out.")
}

// baseURL is where people reach the toolbox: BaseURL, or else the address of this request.
func (d Deps) baseURL(r *http.Request) string {
	if d.BaseURL != "" {
		return d.BaseURL
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

func (d Deps) deadLink(w http.ResponseWriter, r *http.Request, setup bool) {
	d.renderStatus(w, r, http.StatusNotFound, deadLinkPage(d.page(w, r, "Link expired", ""), setup))
}

// linkFailed answers a one-time link that failed: the dead-link page if it is unknown, used
// or expired.
func (d Deps) linkFailed(w http.ResponseWriter, r *http.Request, err error, setup bool) {
	if rewards.ErrorCode(err) == rewards.ENOTFOUND {
		d.deadLink(w, r, setup)
		return
	}
	d.fail(w, r, err)
}

func (d Deps) welcomeForm(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	u, err := d.Accounts.UserLink(r.Context(), hashSecret(token), d.Now())
	if err != nil {
		d.linkFailed(w, r, err, false)
		return
	}
	d.render(w, r, passwordPage(d.page(w, r, "Choose a password", ""),
		passwordView{Email: u.Email, Action: "/welcome/" + token}))
}

// welcome sets the password of a one-time link's user and signs the user in.
func (d Deps) welcome(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := chi.URLParam(r, "token")
	u, err := d.Accounts.UserLink(ctx, hashSecret(token), d.Now())
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
	if u, err = d.Accounts.UseUserLink(ctx, hashSecret(token), hash, d.Now()); err != nil {
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

func (d Deps) setupForm(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	if err := d.Settings.CheckSetupToken(r.Context(), hashSecret(token), d.Now()); err != nil {
		d.linkFailed(w, r, err, true)
		return
	}
	d.render(w, r, passwordPage(d.page(w, r, "Set up pointpost", ""),
		passwordView{Setup: true, Action: "/setup/" + token}))
}

// setup makes the first operator, with the address and password typed, and signs them in.
func (d Deps) setup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := chi.URLParam(r, "token")
	if err := d.Settings.CheckSetupToken(ctx, hashSecret(token), d.Now()); err != nil {
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
	if err := d.Settings.CreateFirstOperator(ctx, hashSecret(token), u, hash, d.Now()); err != nil {
		if rewards.ErrorCode(err) == rewards.ENOTFOUND {
			d.deadLink(w, r, true)
			return
		}
		if _, _, e := d.Accounts.UserByEmail(ctx, email); e == nil {
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
func (d Deps) profileRoutes(r chi.Router) {
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
func (d Deps) ownKeys(ctx context.Context, u *rewards.User) ([]*rewards.APIKey, error) {
	keys, err := d.Accounts.APIKeys(ctx, u.IssuerID)
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

func (d Deps) renderProfile(w http.ResponseWriter, r *http.Request, status int, v profileView) {
	keys, err := d.ownKeys(r.Context(), v.User)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v.Keys = keys
	d.renderStatus(w, r, status, profilePage(d.page(w, r, "Your profile", ""), v))
}

func (d Deps) profile(w http.ResponseWriter, r *http.Request) {
	d.renderProfile(w, r, http.StatusOK, profileView{User: userFrom(r.Context())})
}

// changePassword sets a new password after checking the current one. The store ends all
// the user's sessions; this one is renewed.
func (d Deps) changePassword(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u := userFrom(ctx)
	v := profileView{User: u, Errors: fieldErrors{}}
	_, hash, err := d.Accounts.UserByEmail(ctx, u.Email)
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
	if err := d.Accounts.SetPassword(ctx, u.ID, hash); err != nil {
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

func (d Deps) createAPIKey(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r.Context())
	v := profileView{User: u, KeyName: strings.TrimSpace(r.PostFormValue("name")), Errors: fieldErrors{}}
	if msg := keyNameError(v.KeyName); msg != "" {
		v.Errors["name"] = msg
		d.renderProfile(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	k := &rewards.APIKey{Name: v.KeyName, IssuerID: u.IssuerID, IssuerSlug: u.IssuerSlug}
	secret, err := NewAPIKey(r.Context(), d.Accounts, k, d.Now())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v.NewKey, v.Secret, v.KeyName = k, secret, ""
	d.renderProfile(w, r, http.StatusOK, v)
}

// revokeAPIKey revokes one of the keys the user may reach; another issuer's key answers 404.
func (d Deps) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return
	}
	if err := d.Accounts.RevokeAPIKey(r.Context(), id, issuerScope(r.Context()), d.Now()); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/profile", "Key revoked: requests with it are refused from now on.")
}
