package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"pointpost/rewards"
)

// accountView is what the account page shows.
type accountView struct {
	Token    string
	Consumer *rewards.Consumer
	Account  *rewards.Account
	Catalog  []rewards.CatalogItem
	// Message reports the last redemption; MessageOK says whether it went through.
	Message   string
	MessageOK bool
}

// account serves GET and HEAD /account/{token}: balance, pending points, history and the
// redemption catalog. The token is an account token or any delivery token of hers.
func (s *server) account(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	v, err := s.accountView(r, token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// After a redemption the page is reached by redirect with the item redeemed.
	if id, err := strconv.ParseInt(r.URL.Query().Get("redeemed"), 10, 64); err == nil {
		for _, it := range v.Catalog {
			if it.ID == id {
				v.Message, v.MessageOK = "You redeemed "+it.Name+". Enjoy!", true
			}
		}
	}
	s.render(w, r, http.StatusOK, accountPage(v))
}

// accountView reads what the account page of the consumer token names shows. Returns an
// error wrapping postoffice.ErrBadToken for a token that names no consumer.
func (s *server) accountView(r *http.Request, token string) (*accountView, error) {
	id, err := s.consumerOf(token)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	c, err := s.Consumers.ConsumerByID(ctx, id)
	if err != nil {
		return nil, err
	}
	acct, err := s.Accounts.Account(ctx, id, historyLimit)
	if err != nil {
		return nil, err
	}
	catalog, err := s.Accounts.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	return &accountView{Token: token, Consumer: c, Account: acct, Catalog: catalog}, nil
}

// redeem serves POST /account/{token}/redeem with the form field item. A redemption that
// went through redirects to the account page, so reloading it does not redeem again; one
// that could not be had shows the account page with the reason.
func (s *server) redeem(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	id, err := s.consumerOf(token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	item, err := strconv.ParseInt(r.PostFormValue("item"), 10, 64)
	if err != nil {
		s.accountMessage(w, r, token, http.StatusBadRequest, "Please choose a reward from the catalog.")
		return
	}
	switch err := s.Accounts.Redeem(r.Context(), id, item); {
	case err == nil:
		http.Redirect(w, r, "/account/"+token+"?redeemed="+strconv.FormatInt(item, 10), http.StatusSeeOther)
	case errors.Is(err, rewards.ErrOutOfStock):
		s.accountMessage(w, r, token, http.StatusConflict, "Sorry, that reward is out of stock.")
	case errors.Is(err, rewards.ErrInsufficientPoints):
		s.accountMessage(w, r, token, http.StatusConflict, "You do not have enough points for that reward yet.")
	case s.IsNotFound(err):
		// The item is gone (or so is she, and the account page says so).
		s.accountMessage(w, r, token, http.StatusNotFound, "That reward is no longer in the catalog.")
	default:
		s.fail(w, r, err)
	}
}

// accountMessage shows the account page with a message about a redemption that failed.
func (s *server) accountMessage(w http.ResponseWriter, r *http.Request, token string, status int, message string) {
	v, err := s.accountView(r, token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v.Message = message
	s.render(w, r, status, accountPage(v))
}

// eventLabel names a history event for the consumer.
func eventLabel(kind string) string {
	switch kind {
	case rewards.EventAcknowledgement:
		return "Invitation acknowledged"
	case rewards.EventAccrual:
		return "Points earned"
	case rewards.EventPosting:
		return "Points added to your balance"
	case rewards.EventRedemption:
		return "Reward redeemed"
	case rewards.EventCorrection:
		return "Correction"
	}
	return kind
}

// signedPoints writes points with their sign, and a dash for zero.
func signedPoints(p int64) string {
	switch {
	case p > 0:
		return "+" + strconv.FormatInt(p, 10)
	case p < 0:
		return strconv.FormatInt(p, 10)
	}
	return "–"
}
