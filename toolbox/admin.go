package toolbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"pointpost/rewards"
)

// The operators' settings, read by main at start for what no flag or environment variable
// gives.
const (
	SettingFrom          = "from_address"
	SettingReplyDomain   = "reply_domain"
	SettingPostalAddress = "postal_address"
)

// userStore is what the issuers' and users' pages read and change of users and API keys.
type userStore interface {
	rewards.UserStore
	rewards.APIKeyStore
	UserByEmail(ctx context.Context, email string) (*rewards.User, string, error)
	UserByID(ctx context.Context, id int64) (*rewards.User, error)
	Users(ctx context.Context, issuerID int64) ([]*rewards.User, error)
	SetUserDisabled(ctx context.Context, userID int64, disabled bool) error
	APIKeys(ctx context.Context, issuerID int64) ([]*rewards.APIKey, error)
	RevokeAPIKey(ctx context.Context, id, issuerID int64, now time.Time) error
}

// issuerStore keeps the issuers and their budgets.
type issuerStore interface {
	Issuers(ctx context.Context) ([]rewards.Issuer, error)
	CreateIssuer(ctx context.Context, iss *rewards.Issuer, now time.Time) error
	IssuerPoints(ctx context.Context, issuerID int64) (budget, spent int64, err error)
	SetIssuerBudget(ctx context.Context, issuerID, budget int64) error
}

// settingsStore keeps the operators' settings.
type settingsStore interface {
	Setting(ctx context.Context, name string) (string, error)
	SetSettings(ctx context.Context, values map[string]string) error
}

// issuerAdmin are the operators' pages for issuers, their users and keys, and the operators.
type issuerAdmin struct {
	base
	accounts    userStore
	issuerStore issuerStore
	invitations Invitations
}

// settingsPages are the operators' settings, with the DNS records and webhook secrets.
type settingsPages struct {
	base
	store settingsStore
	setup Setup
}

func (d issuerAdmin) issuerRoutes(r chi.Router) {
	r.Get("/issuers", d.issuers)
	r.Post("/issuers", d.createIssuer)
	r.Post("/operators", d.inviteOperator)
	r.Get("/issuers/{id}", d.issuer)
	r.Post("/issuers/{id}/budget", d.setBudget)
	r.Post("/issuers/{id}/users", d.inviteIssuerUser)
	r.Post("/issuers/{id}/api-keys", d.createIssuerKey)
	// The key travels in the form: {id} already names the issuer.
	r.Post("/issuers/{id}/api-keys/revoke", d.revokeIssuerKey)
	r.Post("/users/{id}/disable", d.setUserDisabled(true))
	r.Post("/users/{id}/enable", d.setUserDisabled(false))
	r.Post("/users/{id}/link", d.newSignInLink)
}

func (d settingsPages) settingsRoutes(r chi.Router) {
	r.Get("/settings", d.settings)
	r.Post("/settings", d.saveSettings)
	r.Post("/settings/webhooks", d.saveWebhookSecrets)
}

// invitation is an invite form as typed, and the link it made.
type invitation struct {
	Email, Name string
	// Link was just made for Email: shown once, to copy.
	Link string
	// Mailed says the link was e-mailed to Email; MailError why it could not be.
	Mailed    bool
	MailError string
}

// typed is what the invitation form shows of v: what was typed while it has errors, and
// nothing once the invitation is made.
func (v invitation) typed() invitation {
	if v.Link != "" {
		return invitation{}
	}
	return v
}

// Invitations e-mails a new toolbox user the link with which they choose a password.
type Invitations interface {
	// SendInvitation tells a new user of their account for what and its link.
	SendInvitation(ctx context.Context, to, name, what, link string) error
	// SendPasswordLink sends an existing user a new link to set their password.
	SendPasswordLink(ctx context.Context, to, name, what, link string) error
}

type issuerRow struct {
	rewards.Issuer
	Users         []*rewards.User
	Budget, Spent int64
}

type issuersView struct {
	Issuers   []issuerRow
	Operators []*rewards.User
	Self      int64
	// NewIssuer is the create form as typed.
	NewIssuer rewards.Issuer
	Invite    invitation
	// MailsInvites says invitations are e-mailed (a relay is configured).
	MailsInvites bool
	// Errors are the issuer form's, InviteErrors the operator invitation's.
	Errors       fieldErrors
	InviteErrors fieldErrors
}

func (d issuerAdmin) renderIssuers(w http.ResponseWriter, r *http.Request, status int, v issuersView) {
	ctx := r.Context()
	v.MailsInvites = d.invitations != nil
	issuers, err := d.issuerStore.Issuers(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	users, err := d.accounts.Users(ctx, 0)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	byIssuer := map[int64][]*rewards.User{}
	for _, u := range users {
		if u.Operator() {
			v.Operators = append(v.Operators, u)
		} else {
			byIssuer[u.IssuerID] = append(byIssuer[u.IssuerID], u)
		}
	}
	for _, iss := range issuers {
		row := issuerRow{Issuer: iss, Users: byIssuer[iss.ID]}
		if row.Budget, row.Spent, err = d.issuerStore.IssuerPoints(ctx, iss.ID); err != nil {
			d.fail(w, r, err)
			return
		}
		v.Issuers = append(v.Issuers, row)
	}
	v.Self = userFrom(ctx).ID
	p := d.page(w, r, "Issuers & users", "issuers")
	p.Scripts = append(p.Scripts, "copy.js")
	d.renderStatus(w, r, status, issuersPage(p, v))
}

func (d issuerAdmin) issuers(w http.ResponseWriter, r *http.Request) {
	d.renderIssuers(w, r, http.StatusOK, issuersView{Invite: d.takeInvitation(w, r)})
}

var slugPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$`)

func (d issuerAdmin) createIssuer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	iss := rewards.Issuer{Slug: strings.TrimSpace(r.PostFormValue("slug")), Name: strings.TrimSpace(r.PostFormValue("name"))}
	v := issuersView{NewIssuer: iss, Errors: fieldErrors{}}
	if !slugPattern.MatchString(iss.Slug) {
		v.Errors["slug"] = "Use 1 to 40 lower-case letters, digits and dashes, like “acme” or “north-wind”."
	}
	if n := utf8.RuneCountInString(iss.Name); n == 0 || n > 100 {
		v.Errors["name"] = "Give the issuer's name as people know it, up to 100 characters."
	}
	if len(v.Errors) == 0 {
		err := d.issuerStore.CreateIssuer(ctx, &iss, d.now())
		if err == nil {
			d.redirect(w, r, "/issuers/"+strconv.FormatInt(iss.ID, 10), "Issuer "+iss.Slug+" created. Invite its users here.")
			return
		}
		if !d.issuerSlugTaken(ctx, iss.Slug) {
			d.fail(w, r, err)
			return
		}
		v.Errors["slug"] = "There is already an issuer " + iss.Slug + ": choose another."
	}
	d.renderIssuers(w, r, http.StatusUnprocessableEntity, v)
}

// issuerSlugTaken tells a create refused for a taken slug from a failure, by looking.
func (d issuerAdmin) issuerSlugTaken(ctx context.Context, slug string) bool {
	issuers, err := d.issuerStore.Issuers(ctx)
	if err != nil {
		return false
	}
	for _, iss := range issuers {
		if iss.Slug == slug {
			return true
		}
	}
	return false
}

// invite adds a user without a password and makes the link with which they set one. It
// fills v.Link, or errs with what to fix; a failure of the store is returned.
func (d issuerAdmin) invite(r *http.Request, v *invitation, u *rewards.User, what string, errs fieldErrors) error {
	ctx := r.Context()
	v.Email, v.Name = strings.TrimSpace(r.PostFormValue("email")), strings.TrimSpace(r.PostFormValue("name"))
	email, err := rewards.ValidEmail(v.Email)
	if err != nil {
		errs["email"] = "Type an e-mail address, like ann@example.com."
	}
	if utf8.RuneCountInString(v.Name) > 100 {
		errs["name"] = "Keep the name under 100 characters."
	}
	if len(errs) > 0 {
		return nil
	}
	u.Email, u.Name = email, v.Name
	link, err := rewards.AddUser(ctx, d.accounts, u, d.baseURL(r), d.now())
	if err != nil {
		if _, _, e := d.accounts.UserByEmail(ctx, email); e == nil {
			errs["email"] = email + " already has an account."
			return nil
		}
		return err
	}
	v.Link = link
	d.mailInvitation(ctx, v, what, false)
	return nil
}

// mailInvitation e-mails v's link, for an account for what (a new one, or one whose
// password is being set again when renewal), when the toolbox can send mail. A failure is
// shown, not fatal: the link on the page still works.
func (d issuerAdmin) mailInvitation(ctx context.Context, v *invitation, what string, renewal bool) {
	if d.invitations == nil {
		return
	}
	send := d.invitations.SendInvitation
	if renewal {
		send = d.invitations.SendPasswordLink
	}
	if err := send(ctx, v.Email, v.Name, what, v.Link); err != nil {
		d.logger.Warn("toolbox: sign-in link not e-mailed", "to", v.Email, "err", err)
		v.MailError = "The e-mail could not be sent (" + err.Error() + "): send the link yourself."
		return
	}
	v.Mailed = true
}

// operatorsAccount and issuerAccount say in an invitation what the account is for.
const operatorsAccount = "the operators' toolbox"

func issuerAccount(iss rewards.Issuer) string { return "the campaigns of " + iss.Name }

func (d issuerAdmin) inviteOperator(w http.ResponseWriter, r *http.Request) {
	v := issuersView{InviteErrors: fieldErrors{}}
	if err := d.invite(r, &v.Invite, &rewards.User{Role: rewards.RoleOperator}, operatorsAccount, v.InviteErrors); err != nil {
		d.fail(w, r, err)
		return
	}
	if len(v.InviteErrors) > 0 {
		d.renderIssuers(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	d.showInvitation(w, r, "/issuers", v.Invite)
}

type issuerView struct {
	Issuer        rewards.Issuer
	Budget, Spent int64
	Users         []*rewards.User
	Self          int64
	// BudgetInput is the budget form as typed.
	BudgetInput string
	Invite      invitation
	// MailsInvites says invitations are e-mailed (a relay is configured).
	MailsInvites bool
	Errors       fieldErrors
	// Keys is the API keys card; its Keys are filled by renderIssuer.
	Keys apiKeysView
}

// issuerFor returns the issuer named by the URL's {id}, or answers 404 and returns nil.
func (d issuerAdmin) issuerFor(w http.ResponseWriter, r *http.Request) *rewards.Issuer {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return nil
	}
	iss, err := d.issuerByID(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return nil
	}
	if iss == nil {
		d.notFound(w, r)
	}
	return iss
}

// issuerByID returns issuer id, or nil if there is none.
func (d issuerAdmin) issuerByID(ctx context.Context, id int64) (*rewards.Issuer, error) {
	issuers, err := d.issuerStore.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	for _, iss := range issuers {
		if iss.ID == id {
			return &iss, nil
		}
	}
	return nil, nil
}

func (d issuerAdmin) renderIssuer(w http.ResponseWriter, r *http.Request, status int, v issuerView) {
	ctx := r.Context()
	v.MailsInvites = d.invitations != nil
	var err error
	if v.Budget, v.Spent, err = d.issuerStore.IssuerPoints(ctx, v.Issuer.ID); err != nil {
		d.fail(w, r, err)
		return
	}
	if v.Users, err = d.accounts.Users(ctx, v.Issuer.ID); err != nil {
		d.fail(w, r, err)
		return
	}
	if v.Keys.Keys, err = d.accounts.APIKeys(ctx, v.Issuer.ID); err != nil {
		d.fail(w, r, err)
		return
	}
	base := "/issuers/" + strconv.FormatInt(v.Issuer.ID, 10) + "/api-keys"
	// The fragment brings the browser back to the card, where the new secret shows.
	v.Keys.Create = base + "#api-keys"
	v.Keys.Revoke = func(*rewards.APIKey) string { return base + "/revoke#api-keys" }
	v.Keys.Reach = "Keys let " + v.Issuer.Name + "'s systems use the JSON API under /api/v1; they reach " + v.Issuer.Slug + "'s campaigns only."
	v.Keys.Empty = "No keys yet. Create one when a system of " + v.Issuer.Name + "'s needs to reach pointpost; its users can make their own on their profile page."
	if v.BudgetInput == "" && v.Errors["budget"] == "" {
		v.BudgetInput = strconv.FormatInt(v.Budget, 10)
	}
	v.Self = userFrom(ctx).ID
	p := d.page(w, r, v.Issuer.Name, "issuers")
	p.Scripts = append(p.Scripts, "copy.js")
	d.renderStatus(w, r, status, issuerPage(p, v))
}

func (d issuerAdmin) issuer(w http.ResponseWriter, r *http.Request) {
	if iss := d.issuerFor(w, r); iss != nil {
		d.renderIssuer(w, r, http.StatusOK, issuerView{Issuer: *iss, Invite: d.takeInvitation(w, r)})
	}
}

func (d issuerAdmin) setBudget(w http.ResponseWriter, r *http.Request) {
	iss := d.issuerFor(w, r)
	if iss == nil {
		return
	}
	v := issuerView{Issuer: *iss, BudgetInput: strings.TrimSpace(r.PostFormValue("budget")), Errors: fieldErrors{}}
	budget, err := strconv.ParseInt(strings.ReplaceAll(v.BudgetInput, ",", ""), 10, 64)
	if err != nil || budget < 0 {
		v.Errors["budget"] = "Type a whole number of points, 0 or more (0: no cap)."
		d.renderIssuer(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	if err := d.issuerStore.SetIssuerBudget(r.Context(), iss.ID, budget); err != nil {
		d.fail(w, r, err)
		return
	}
	flash := iss.Slug + " may award " + thousands(budget) + " points in all."
	if budget == 0 {
		flash = iss.Slug + " has no points cap."
	}
	d.redirect(w, r, "/issuers/"+strconv.FormatInt(iss.ID, 10), flash)
}

func (d issuerAdmin) inviteIssuerUser(w http.ResponseWriter, r *http.Request) {
	iss := d.issuerFor(w, r)
	if iss == nil {
		return
	}
	v := issuerView{Issuer: *iss, Errors: fieldErrors{}}
	u := &rewards.User{Role: rewards.RoleIssuer, IssuerID: iss.ID, IssuerSlug: iss.Slug}
	if err := d.invite(r, &v.Invite, u, issuerAccount(*iss), v.Errors); err != nil {
		d.fail(w, r, err)
		return
	}
	if len(v.Errors) > 0 {
		d.renderIssuer(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	d.showInvitation(w, r, "/issuers/"+strconv.FormatInt(iss.ID, 10), v.Invite)
}

// createIssuerKey makes an API key for the issuer and shows its secret, this once.
func (d issuerAdmin) createIssuerKey(w http.ResponseWriter, r *http.Request) {
	iss := d.issuerFor(w, r)
	if iss == nil {
		return
	}
	v := issuerView{Issuer: *iss, Keys: apiKeysView{Name: strings.TrimSpace(r.PostFormValue("name")), Errors: fieldErrors{}}}
	if msg := keyNameError(v.Keys.Name); msg != "" {
		v.Keys.Errors["name"] = msg
		d.renderIssuer(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	k := &rewards.APIKey{Name: v.Keys.Name, IssuerID: iss.ID, IssuerSlug: iss.Slug}
	secret, err := rewards.NewAPIKey(r.Context(), d.accounts, k, d.now())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v.Keys.NewKey, v.Keys.Secret, v.Keys.Name = k, secret, ""
	d.renderIssuer(w, r, http.StatusOK, v)
}

// revokeIssuerKey revokes the issuer's key named by the form's key_id. A key that is not
// the issuer's answers 404; one revoked already says so.
func (d issuerAdmin) revokeIssuerKey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	iss := d.issuerFor(w, r)
	if iss == nil {
		return
	}
	id, err := strconv.ParseInt(r.PostFormValue("key_id"), 10, 64)
	if err != nil || id <= 0 {
		d.renderIssuer(w, r, http.StatusBadRequest, issuerView{Issuer: *iss,
			Keys: apiKeysView{Errors: fieldErrors{"key_id": "No key was named: press Revoke beside the key to revoke."}}})
		return
	}
	keys, err := d.accounts.APIKeys(ctx, iss.ID)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	var key *rewards.APIKey
	for _, k := range keys {
		if k.ID == id {
			key = k
		}
	}
	page := "/issuers/" + strconv.FormatInt(iss.ID, 10) + "#api-keys"
	switch {
	case key == nil:
		d.notFound(w, r)
		return
	case !key.RevokedAt.IsZero():
		d.redirect(w, r, page, "Key “"+key.Name+"” was revoked already.")
		return
	}
	if err := d.accounts.RevokeAPIKey(ctx, key.ID, iss.ID, d.now()); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, page, "Key “"+key.Name+"” revoked: requests with it are refused from now on.")
}

// userFor returns the user named by the URL's {id}, or answers 404 and returns nil.
func (d issuerAdmin) userFor(w http.ResponseWriter, r *http.Request) *rewards.User {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return nil
	}
	u, err := d.accounts.UserByID(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return nil
	}
	return u
}

// usersPage is where a user is listed: the issuer's page, or the operators' list.
func usersPage(u *rewards.User) string {
	if u.Operator() {
		return "/issuers"
	}
	return "/issuers/" + strconv.FormatInt(u.IssuerID, 10)
}

// setUserDisabled disables or enables a user. An operator cannot disable himself, so there
// is always one left to undo it.
func (d issuerAdmin) setUserDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := d.userFor(w, r)
		if u == nil {
			return
		}
		if disabled && u.ID == userFrom(r.Context()).ID {
			d.redirect(w, r, usersPage(u), "You cannot disable your own account: ask another operator.")
			return
		}
		if err := d.accounts.SetUserDisabled(r.Context(), u.ID, disabled); err != nil {
			d.fail(w, r, err)
			return
		}
		flash := u.Email + " is enabled and may sign in."
		if disabled {
			flash = u.Email + " is disabled and signed out."
		}
		d.redirect(w, r, usersPage(u), flash)
	}
}

// newSignInLink makes a new one-time link for a user: to finish an invitation whose link
// was lost, or to set a forgotten password.
func (d issuerAdmin) newSignInLink(w http.ResponseWriter, r *http.Request) {
	u := d.userFor(w, r)
	if u == nil {
		return
	}
	link, err := rewards.NewUserLink(r.Context(), d.accounts, u.ID, d.baseURL(r), d.now(), rewards.InviteTTL)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	inv := invitation{Email: u.Email, Name: u.Name, Link: link}
	if u.Operator() {
		d.mailInvitation(r.Context(), &inv, operatorsAccount, true)
		d.showInvitation(w, r, usersPage(u), inv)
		return
	}
	iss, err := d.issuerByID(r.Context(), u.IssuerID)
	if err != nil || iss == nil {
		iss = &rewards.Issuer{ID: u.IssuerID, Slug: u.IssuerSlug, Name: u.IssuerSlug}
	}
	d.mailInvitation(r.Context(), &inv, issuerAccount(*iss), true)
	d.showInvitation(w, r, usersPage(u), inv)
}

// invitationCookie carries a link just made from the form that made it to the page that
// shows it (POST, redirect, GET): a refresh then shows the page again instead of asking to
// send the form twice. The link is a secret, so it travels in an HttpOnly cookie read once,
// never in the URL.
const invitationCookie = "pointpost_invitation"

// shownInvitation is what the cookie holds: the invitation, for the page at Page alone.
type shownInvitation struct {
	Page string
	invitation
}

// showInvitation redirects to page, which shows inv once.
func (d issuerAdmin) showInvitation(w http.ResponseWriter, r *http.Request, page string, inv invitation) {
	b, err := json.Marshal(shownInvitation{Page: page, invitation: inv})
	if err != nil {
		d.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: invitationCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: "/issuers",
		MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: d.secure(r)})
	http.Redirect(w, r, page, http.StatusSeeOther)
}

// takeInvitation returns the invitation a redirect left for this page, and forgets it.
func (d issuerAdmin) takeInvitation(w http.ResponseWriter, r *http.Request) invitation {
	c, err := r.Cookie(invitationCookie)
	if err != nil {
		return invitation{}
	}
	http.SetCookie(w, &http.Cookie{Name: invitationCookie, Path: "/issuers", MaxAge: -1})
	var shown shownInvitation
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || json.Unmarshal(b, &shown) != nil || shown.Page != r.URL.Path {
		return invitation{}
	}
	return shown.invitation
}

type settingsView struct {
	From, ReplyDomain, PostalAddress string
	Errors                           fieldErrors
	Setup                            setupView
}

func (d settingsPages) settings(w http.ResponseWriter, r *http.Request) {
	d.renderSettings(w, r, http.StatusOK, settingsView{}, nil)
}

// renderSettings shows the settings page: v's form as typed when it has errors, else the
// saved settings; secretErrs beside the webhook secrets' fields.
func (d settingsPages) renderSettings(w http.ResponseWriter, r *http.Request, status int, v settingsView, secretErrs fieldErrors) {
	ctx := r.Context()
	var err error
	if v.Setup, err = d.setupView(r); err != nil {
		d.fail(w, r, err)
		return
	}
	v.Setup.Errors = secretErrs
	if len(v.Errors) > 0 {
		d.renderStatus(w, r, status, settingsPage(d.page(w, r, "Settings", "settings"), v))
		return
	}
	for _, s := range []struct {
		name string
		dst  *string
	}{{SettingFrom, &v.From}, {SettingReplyDomain, &v.ReplyDomain}, {SettingPostalAddress, &v.PostalAddress}} {
		val, err := d.store.Setting(ctx, s.name)
		if err != nil {
			d.fail(w, r, err)
			return
		}
		*s.dst = val
	}
	d.renderStatus(w, r, status, settingsPage(d.page(w, r, "Settings", "settings"), v))
}

var domainPattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// checkSettings says what is wrong with the settings as typed. An empty From or reply
// domain leaves main's default; the postal address is required in commercial e-mail.
func checkSettings(v settingsView) fieldErrors {
	errs := fieldErrors{}
	if v.From != "" {
		if a, err := mail.ParseAddress(v.From); err != nil || !strings.Contains(a.Address, "@") {
			errs["from"] = "Type an address, like “Acme Rewards <rewards@acme.example>” or rewards@acme.example."
		}
	}
	if v.ReplyDomain != "" && (len(v.ReplyDomain) > 253 || !domainPattern.MatchString(v.ReplyDomain)) {
		errs["reply_domain"] = "Type a domain name, like reply.acme.example: letters, digits, dashes and dots."
	}
	switch n := utf8.RuneCountInString(v.PostalAddress); {
	case n == 0:
		errs["postal_address"] = "Every message's footer must show your postal address: type it."
	case n > 300:
		errs["postal_address"] = "Keep it under 300 characters (now " + strconv.Itoa(n) + ")."
	}
	return errs
}

func (d settingsPages) saveSettings(w http.ResponseWriter, r *http.Request) {
	v := settingsView{
		From:          strings.TrimSpace(r.PostFormValue("from")),
		ReplyDomain:   strings.ToLower(strings.TrimSpace(r.PostFormValue("reply_domain"))),
		PostalAddress: strings.TrimSpace(r.PostFormValue("postal_address")),
	}
	if v.Errors = checkSettings(v); len(v.Errors) > 0 {
		d.renderSettings(w, r, http.StatusUnprocessableEntity, v, nil)
		return
	}
	if err := d.store.SetSettings(r.Context(), map[string]string{SettingFrom: v.From,
		SettingReplyDomain: v.ReplyDomain, SettingPostalAddress: v.PostalAddress}); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/settings", "Settings saved. They take effect at the next start of pointpost.")
}
