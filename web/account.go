package web

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"pointpost/rewards"
)

// accountView is what the account page shows.
type accountView struct {
	Token    string
	Consumer *rewards.Consumer
	Account  *rewards.Account
	Catalog  []rewards.CatalogItem
	// Redemptions are her rewards, newest first, each with its voucher.
	Redemptions []rewards.Redemption
	// Message reports the last redemption; MessageOK says whether it went through. Redeemed
	// is the redemption that just went through, whose voucher the page shows first.
	Message   string
	MessageOK bool
	Redeemed  *rewards.Redemption
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
	// After a redemption the page is reached by redirect with the redemption: it shows what
	// she got.
	if id, err := strconv.ParseInt(r.URL.Query().Get("redeemed"), 10, 64); err == nil {
		for i, red := range v.Redemptions {
			if red.ID == id {
				v.Redeemed = &v.Redemptions[i]
				v.Message, v.MessageOK = "You redeemed "+red.ItemName+". Enjoy!", true
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
	redemptions, err := s.Accounts.Redemptions(ctx, id, historyLimit)
	if err != nil {
		return nil, err
	}
	return &accountView{Token: token, Consumer: c, Account: acct, Catalog: catalog, Redemptions: redemptions}, nil
}

// Redemption codes: a consumer's token shows her account, but it travels in every
// invitation she may forward, so spending her points also needs a one-time code mailed to
// her address. A code has codeDigits digits, works once for codeTTL, dies after
// codeAttempts wrong tries, and a consumer gets at most codesPerHour of them.
const (
	codeDigits   = 8
	codeTTL      = 15 * time.Minute
	codeAttempts = 5
	codesPerHour = 5
)

// codeView is the page that asks for the code mailed to her.
type codeView struct {
	Token  string
	Email  string
	Item   rewards.CatalogItem
	CodeID int64
	// Minutes is how long the code works; Balance is hers before the redemption.
	Minutes int
	Balance int64
	Error   string
}

// redeem serves POST /account/{token}/redeem with the form field item. It does not spend
// anything: if the reward can be had, it mails her a one-time code and shows the page that
// asks for it (confirmRedeem spends). A reward that cannot be had shows the account page
// with the reason.
func (s *server) redeem(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	v, err := s.accountView(r, token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	id, err := strconv.ParseInt(r.PostFormValue("item"), 10, 64)
	if err != nil {
		s.showMessage(w, r, v, http.StatusBadRequest, "Please choose a reward from the catalog.")
		return
	}
	i := slices.IndexFunc(v.Catalog, func(it rewards.CatalogItem) bool { return it.ID == id })
	switch {
	case i < 0:
		s.showMessage(w, r, v, http.StatusNotFound, "That reward is no longer in the catalog.")
		return
	case v.Catalog[i].Stock <= 0:
		s.showMessage(w, r, v, http.StatusConflict, "Sorry, that reward is out of stock.")
		return
	case v.Account.Balance < v.Catalog[i].Cost:
		s.showMessage(w, r, v, http.StatusConflict, "You do not have enough points for that reward yet.")
		return
	case s.Codes == nil || s.CodeSender == nil:
		s.showMessage(w, r, v, http.StatusServiceUnavailable, "Rewards cannot be redeemed right now. Please try again later.")
		return
	}
	item, ctx, now := v.Catalog[i], r.Context(), s.Now()
	if !s.codesByConsumer.allow(strconv.FormatInt(v.Consumer.ID, 10), now) {
		w.Header().Set("Retry-After", "3600")
		s.showMessage(w, r, v, http.StatusTooManyRequests,
			"We have sent you several codes in the last hour. Use the latest one, or try again later.")
		return
	}
	code := newCode()
	codeID, err := s.Codes.CreateRedemptionCode(ctx, v.Consumer.ID, item.ID, hashCode(code), now, now.Add(codeTTL))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.CodeSender.SendRedemptionCode(ctx, v.Consumer.Email, v.Consumer.FirstName, item.Name,
		code[:codeDigits/2]+" "+code[codeDigits/2:], codeTTL); err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, redeemCodePage(&codeView{Token: token, Email: v.Consumer.Email, Item: item,
		CodeID: codeID, Minutes: int(codeTTL / time.Minute), Balance: v.Account.Balance}))
}

// confirmRedeem serves POST /account/{token}/redeem/{id} with the form field code: the
// code mailed by redeem. The right code, once, redeems; a redemption that went through
// redirects to the account page, so reloading it does not redeem again.
func (s *server) confirmRedeem(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	consumer, err := s.consumerOf(token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	codeID, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		s.invalidLink(w, r)
		return
	}
	if s.Codes == nil {
		s.accountMessage(w, r, token, http.StatusServiceUnavailable, "Rewards cannot be redeemed right now. Please try again later.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	code, wellFormed := readCode(r.PostFormValue("code"))
	var item int64
	ok := false
	if wellFormed {
		item, ok, err = s.Codes.UseRedemptionCode(r.Context(), codeID, consumer, hashCode(code), s.Now(), codeAttempts)
		switch {
		case err != nil && rewards.ErrorCode(err) == rewards.ENOTFOUND:
			s.accountMessage(w, r, token, http.StatusGone,
				"That code has expired, was used, or was typed wrong too many times. Press Redeem again for a new one.")
			return
		case err != nil:
			s.fail(w, r, err)
			return
		}
	}
	if !ok {
		s.codeAgain(w, r, token, codeID, item, wellFormed)
		return
	}
	switch err := s.Accounts.Redeem(r.Context(), consumer, item); {
	case err == nil:
		// Her newest redemption is this one: the account page shows its voucher.
		to := "/account/" + token
		if newest, err := s.Accounts.Redemptions(r.Context(), consumer, 1); err == nil && len(newest) == 1 && newest[0].ItemID == item {
			to += "?redeemed=" + strconv.FormatInt(newest[0].ID, 10)
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	case errors.Is(err, rewards.ErrOutOfStock):
		s.accountMessage(w, r, token, http.StatusConflict, "Sorry, that reward is out of stock.")
	case errors.Is(err, rewards.ErrInsufficientPoints):
		s.accountMessage(w, r, token, http.StatusConflict, "You do not have enough points for that reward yet.")
	case rewards.ErrorCode(err) == rewards.ENOTFOUND:
		// The item is gone (or so is she, and the account page says so).
		s.accountMessage(w, r, token, http.StatusNotFound, "That reward is no longer in the catalog.")
	default:
		s.fail(w, r, err)
	}
}

// codeAgain asks once more for the code of a redemption: the one typed was not a code
// (wellFormed false, nothing counted) or not hers. item is 0 when not yet known.
func (s *server) codeAgain(w http.ResponseWriter, r *http.Request, token string, codeID, item int64, wellFormed bool) {
	v, err := s.accountView(r, token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cv := &codeView{Token: token, Email: v.Consumer.Email, CodeID: codeID, Minutes: int(codeTTL / time.Minute), Balance: v.Account.Balance,
		Error: "That is not the code we sent. Check the e-mail and type it again."}
	if !wellFormed {
		cv.Error = fmt.Sprintf("Type the %d-digit code from the e-mail.", codeDigits)
	}
	for _, it := range v.Catalog {
		if it.ID == item {
			cv.Item = it
		}
	}
	s.render(w, r, http.StatusUnprocessableEntity, redeemCodePage(cv))
}

// newCode returns codeDigits random decimal digits.
func newCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(math.Pow10(codeDigits))))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return fmt.Sprintf("%0*d", codeDigits, n)
}

// readCode takes a code as typed, spaces and dashes allowed, and reports whether it is
// one: codeDigits digits.
func readCode(typed string) (string, bool) {
	code := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, typed)
	if len(code) != codeDigits || strings.Trim(code, "0123456789") != "" {
		return "", false
	}
	return code, true
}

// hashCode is how a redemption code is kept.
func hashCode(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

// showMessage shows the account page v with a message about a redemption that failed.
func (s *server) showMessage(w http.ResponseWriter, r *http.Request, v *accountView, status int, message string) {
	v.Message = message
	s.render(w, r, status, accountPage(v))
}

// accountMessage shows the account page with a message about a redemption that failed.
func (s *server) accountMessage(w http.ResponseWriter, r *http.Request, token string, status int, message string) {
	v, err := s.accountView(r, token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.showMessage(w, r, v, status, message)
}

// eventLabel names a history event for the consumer.
func eventLabel(kind string) string {
	switch kind {
	case rewards.EventAcknowledgement:
		return "Invitation acknowledged"
	case rewards.EventAccrual:
		return "Points earned"
	case rewards.EventRedemption:
		return "Reward redeemed"
	case rewards.EventCorrection:
		return "Correction"
	}
	return kind
}

// eventState is where an award is: pending until settlement posts it to her balance, then
// posted; other events have no state.
func eventState(e rewards.AccountEvent) string {
	switch {
	case e.Kind != rewards.EventAccrual:
		return ""
	case e.Pending:
		return "pending"
	}
	return "posted"
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
