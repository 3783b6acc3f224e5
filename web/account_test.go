package web_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"pointpost/rewards"
	"pointpost/web"
	"pointpost/web/pagetest"
)

// earn has c press Submit on her invitation and, with settle, posts the points.
func (w *world) earn(c *rewards.Consumer, settle bool) {
	w.t.Helper()
	w.post("/i/"+w.token(c), nil).want(w.t, http.StatusOK)
	if settle {
		if _, err := w.st.Settle(context.Background(), 100); err != nil {
			w.t.Fatal(err)
		}
	}
}

// addItem puts a reward in the catalog.
func (w *world) addItem(name string, cost, stock int64) rewards.CatalogItem {
	w.t.Helper()
	it := rewards.CatalogItem{Name: name, Description: "a " + name, Cost: cost, Stock: stock}
	if err := w.st.AddCatalogItem(context.Background(), &it); err != nil {
		w.t.Fatal(err)
	}
	return it
}

func TestAccountPageShowsBalancePendingHistoryAndCatalog(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 5, 3)
	w.addItem("Kayak", 5000, 1)

	p := w.get("/account/"+w.po.AccountToken(w.ann.ID)).want(t, http.StatusOK)
	if b, pe := pagetest.Text(p.one(t, "balance")), pagetest.Text(p.one(t, "pending")); b != "0" || pe != "0" {
		t.Errorf("new account: balance %s, pending %s", b, pe)
	}
	p.one(t, "history-empty")

	w.earn(w.ann, false)
	// Any of her delivery tokens opens her account as well as the account token.
	for _, tok := range []string{w.po.AccountToken(w.ann.ID), w.token(w.ann)} {
		p = w.get("/account/"+tok).want(t, http.StatusOK)
		if b, pe := pagetest.Text(p.one(t, "balance")), pagetest.Text(p.one(t, "pending")); b != "0" || pe != "10" {
			t.Errorf("after Submit: balance %s, pending %s; want 0 and 10", b, pe)
		}
		if got := pagetest.Text(p.one(t, "email")); got != "ann@example.com" {
			t.Errorf("email %q", got)
		}
	}

	w.earn(w.ann, true)
	p = w.get("/account/"+w.po.AccountToken(w.ann.ID)).want(t, http.StatusOK)
	if b, pe := pagetest.Text(p.one(t, "balance")), pagetest.Text(p.one(t, "pending")); b != "10" || pe != "0" {
		t.Errorf("after settlement: balance %s, pending %s; want 10 and 0", b, pe)
	}
	kinds := map[string]bool{}
	for _, e := range p.all("event") {
		kinds[pagetest.Attr(e, "data-kind")] = true
		if !strings.Contains(pagetest.Text(e), "Spring sale") {
			t.Errorf("history event %q does not name the campaign", pagetest.Text(e))
		}
	}
	// The award's line and the second Submit, which earned nothing; the award's posting is
	// its state, not a line of its own.
	for _, k := range []string{rewards.EventAcknowledgement, rewards.EventAccrual} {
		if !kinds[k] {
			t.Errorf("history has no %s event: %v", k, kinds)
		}
	}
	if kinds[rewards.EventPosting] {
		t.Errorf("history shows the posting as a line of its own: %v", kinds)
	}

	items := p.all("catalog-item")
	if len(items) != 2 {
		t.Fatalf("%d catalog items, want 2", len(items))
	}
	if pagetest.Attr(items[0], "data-id") != itoa(mug.ID) || pagetest.Text(pagetest.ByTestID(items[0], "item-name")[0]) != "Mug" ||
		pagetest.Text(pagetest.ByTestID(items[0], "item-cost")[0]) != "5" {
		t.Errorf("first item %q", pagetest.Text(items[0]))
	}
	forms := p.all("redeem-form")
	if len(forms) != 2 || pagetest.Attr(forms[0], "action") != "/account/"+w.po.AccountToken(w.ann.ID)+"/redeem" ||
		pagetest.InputValue(forms[0], "item") != itoa(mug.ID) {
		t.Fatalf("redeem forms: %d, first to %q for item %q", len(forms), pagetest.Attr(forms[0], "action"), pagetest.InputValue(forms[0], "item"))
	}
	if len(p.all("redeem")) != 1 {
		t.Errorf("%d enabled Redeem buttons, want 1 (the kayak costs too much)", len(p.all("redeem")))
	}
}

// askToRedeem presses Redeem on item with token and returns the code page and the code
// mailed to the consumer.
func (w *world) askToRedeem(token string, item int64) (*page, codeMail) {
	w.t.Helper()
	before := len(w.mail.codeMails())
	p := w.post("/account/"+token+"/redeem", url.Values{"item": {itoa(item)}}).want(w.t, http.StatusOK)
	p.one(w.t, "code-form")
	mails := w.mail.codeMails()
	if len(mails) != before+1 {
		w.t.Fatalf("%d codes mailed, want 1", len(mails)-before)
	}
	return p, mails[len(mails)-1]
}

// enterCode submits code on the code page p.
func (w *world) enterCode(p *page, code string) *page {
	w.t.Helper()
	return w.post(pagetest.Attr(p.one(w.t, "code-form"), "action"), url.Values{"code": {code}})
}

func TestRedeem(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 5, 1)
	kayak := w.addItem("Kayak", 5000, 1)
	w.earn(w.ann, true)
	token := w.po.AccountToken(w.ann.ID)
	redeem := "/account/" + token + "/redeem"
	form := func(id string) url.Values { return url.Values{"item": {id}} }

	p := w.post(redeem, form(itoa(kayak.ID))).want(t, http.StatusConflict)
	msg := p.one(t, "message")
	if pagetest.Attr(msg, "data-ok") != "false" || !strings.Contains(pagetest.Text(msg), "not have enough points") {
		t.Errorf("too few points: message %q", pagetest.Text(msg))
	}
	if got := pagetest.Text(p.one(t, "balance")); got != "10" {
		t.Errorf("balance %s after a refused redemption", got)
	}

	// Redeem mails her a code; the code redeems, redirecting to the account page, which
	// says so and shows the new balance.
	p, mail := w.askToRedeem(token, mug.ID)
	if mail.To != "ann@example.com" || mail.Name != "Ann" || mail.Item != "Mug" {
		t.Errorf("code mailed %+v, want to Ann about the Mug", mail)
	}
	if got := pagetest.Text(p.one(t, "code-item")); got != "Mug" {
		t.Errorf("code page names %q", got)
	}
	p = w.enterCode(p, mail.Code).want(t, http.StatusOK)
	msg = p.one(t, "message")
	if pagetest.Attr(msg, "data-ok") != "true" || !strings.Contains(pagetest.Text(msg), "Mug") {
		t.Errorf("redeemed: message %q", pagetest.Text(msg))
	}
	if got := pagetest.Text(p.one(t, "balance")); got != "5" {
		t.Errorf("balance %s after redeeming 5 of 10", got)
	}
	if len(p.all("event")) == 0 || pagetest.Attr(p.all("event")[0], "data-kind") != rewards.EventRedemption {
		t.Error("the redemption is not the newest history event")
	}

	p = w.post(redeem, form(itoa(mug.ID))).want(t, http.StatusConflict)
	if got := pagetest.Text(p.one(t, "message")); !strings.Contains(got, "out of stock") {
		t.Errorf("out of stock: message %q", got)
	}
	p = w.post(redeem, form("424242")).want(t, http.StatusNotFound)
	p.one(t, "message")
	p = w.post(redeem, form("mug")).want(t, http.StatusBadRequest)
	p.one(t, "message")
	if got := pagetest.Text(p.one(t, "balance")); got != "5" {
		t.Errorf("balance %s after refusals, want 5", got)
	}
	if n := len(w.mail.codeMails()); n != 1 {
		t.Errorf("%d codes mailed, want 1: refusals mail nothing", n)
	}
}

func TestRedeemWithTheTokenAloneSpendsNothing(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 5, 3)
	w.earn(w.ann, true)
	token := w.token(w.ann) // a delivery token, as in a forwarded invitation
	w.post("/account/"+token+"/redeem", url.Values{"item": {itoa(mug.ID)}}).want(t, http.StatusOK).one(t, "code-form")
	if a := w.account(w.ann); a.Balance != 10 {
		t.Fatalf("balance %d after Redeem without the code, want 10", a.Balance)
	}
	// Guessing at a code number, with no code or a made-up one, spends nothing either.
	for _, form := range []url.Values{{}, {"code": {""}}, {"code": {"12"}}, {"code": {"abcdefgh"}}, {"item": {itoa(mug.ID)}}} {
		p := w.post("/account/"+token+"/redeem/1", form).want(t, http.StatusUnprocessableEntity)
		if got := pagetest.Text(p.one(t, "code-error")); !strings.Contains(got, "8-digit") {
			t.Errorf("form %v: error %q", form, got)
		}
	}
	w.post("/account/"+token+"/redeem/999", url.Values{"code": {"12345678"}}).want(t, http.StatusGone)
	w.post("/account/"+token+"/redeem/x", url.Values{"code": {"12345678"}}).want(t, http.StatusNotFound)
	if a := w.account(w.ann); a.Balance != 10 || len(a.History) != 1 {
		t.Fatalf("balance %d, %d events after codeless tries; want 10 and no redemption", a.Balance, len(a.History))
	}
}

func TestRedemptionCodeWorksOnce(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 2, 5)
	w.earn(w.ann, true)
	token := w.po.AccountToken(w.ann.ID)
	p, mail := w.askToRedeem(token, mug.ID)
	// Typed as people type it: with its space, or without.
	w.enterCode(p, strings.ReplaceAll(mail.Code, " ", "")).want(t, http.StatusOK)
	again := w.enterCode(p, mail.Code).want(t, http.StatusGone)
	if got := pagetest.Text(again.one(t, "message")); !strings.Contains(got, "Press Redeem again") {
		t.Errorf("reused code: message %q", got)
	}
	if a := w.account(w.ann); a.Balance != 8 {
		t.Fatalf("balance %d, want 8: one redemption of 2", a.Balance)
	}
	// Another consumer's token does not take her code.
	p, mail = w.askToRedeem(token, mug.ID)
	bobs := strings.Replace(pagetest.Attr(p.one(t, "code-form"), "action"), token, w.po.AccountToken(w.bob.ID), 1)
	w.post(bobs, url.Values{"code": {mail.Code}}).want(t, http.StatusGone)
	w.enterCode(p, mail.Code).want(t, http.StatusOK)
	if a := w.account(w.ann); a.Balance != 6 {
		t.Fatalf("balance %d, want 6", a.Balance)
	}
}

func TestRedemptionCodeExpires(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 2, 5)
	w.earn(w.ann, true)
	p, mail := w.askToRedeem(w.po.AccountToken(w.ann.ID), mug.ID)
	w.ahead.Store(int64(15*time.Minute + time.Second))
	w.enterCode(p, mail.Code).want(t, http.StatusGone)
	if a := w.account(w.ann); a.Balance != 10 {
		t.Fatalf("balance %d after an expired code, want 10", a.Balance)
	}
}

func TestWrongRedemptionCodesLockIt(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 2, 5)
	w.earn(w.ann, true)
	p, mail := w.askToRedeem(w.po.AccountToken(w.ann.ID), mug.ID)
	wrong := "00000000"
	if strings.ReplaceAll(mail.Code, " ", "") == wrong {
		wrong = "11111111"
	}
	// A wrong code asks again; the right one still works after it.
	q := w.enterCode(p, wrong).want(t, http.StatusUnprocessableEntity)
	if got := pagetest.Text(q.one(t, "code-error")); !strings.Contains(got, "not the code we sent") {
		t.Errorf("wrong code: error %q", got)
	}
	if got := pagetest.Text(q.one(t, "code-item")); got != "Mug" {
		t.Errorf("the page asking again names %q", got)
	}
	w.enterCode(q, mail.Code).want(t, http.StatusOK)

	// Five wrong guesses kill the code: the right one is refused after them.
	p, mail = w.askToRedeem(w.po.AccountToken(w.ann.ID), mug.ID)
	for i := range 5 {
		if got := w.enterCode(p, wrong).status; got != http.StatusUnprocessableEntity {
			t.Fatalf("wrong guess %d: %d, want 422", i+1, got)
		}
	}
	w.enterCode(p, mail.Code).want(t, http.StatusGone)
	if a := w.account(w.ann); a.Balance != 8 {
		t.Fatalf("balance %d, want 8: only the first code redeemed", a.Balance)
	}
}

func TestRedemptionCodesAreRateLimited(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 2, 5)
	w.earn(w.ann, true)
	token := w.po.AccountToken(w.ann.ID)
	for range 5 {
		w.askToRedeem(token, mug.ID)
	}
	p := w.post("/account/"+token+"/redeem", url.Values{"item": {itoa(mug.ID)}}).want(t, http.StatusTooManyRequests)
	if got := pagetest.Text(p.one(t, "message")); !strings.Contains(got, "several codes") {
		t.Errorf("sixth code in an hour: message %q", got)
	}
	if n := len(w.mail.codeMails()); n != 5 {
		t.Fatalf("%d codes mailed, want 5", n)
	}
}

func TestRedeemWhenTheCodeCannotBeMailed(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 2, 5)
	w.earn(w.ann, true)
	w.mail.mu.Lock()
	w.mail.err = errors.New("relay down")
	w.mail.mu.Unlock()
	w.post("/account/"+w.po.AccountToken(w.ann.ID)+"/redeem", url.Values{"item": {itoa(mug.ID)}}).
		want(t, http.StatusServiceUnavailable)
	if a := w.account(w.ann); a.Balance != 10 {
		t.Fatalf("balance %d, want 10", a.Balance)
	}
}

func TestAccountRefusesBadTokens(t *testing.T) {
	w := newWorld(t)
	item := w.addItem("Mug", 1, 5)
	w.earn(w.ann, true)
	for name, tok := range map[string]string{
		"tampered":   tamper(w.po.AccountToken(w.ann.ID)),
		"enrollment": w.keys.Encode(web.EnrollmentJobKey, w.ann.ID),
		"nobody":     w.po.AccountToken(999999),
	} {
		t.Run(name, func(t *testing.T) {
			w.get("/account/"+tok).want(t, http.StatusNotFound).one(t, "error")
			w.post("/account/"+tok+"/redeem", url.Values{"item": {itoa(item.ID)}}).want(t, http.StatusNotFound).one(t, "error")
			w.post("/account/"+tok+"/redeem/1", url.Values{"code": {"12345678"}}).want(t, http.StatusNotFound).one(t, "error")
		})
	}
	if a := w.account(w.ann); a.Balance != 10 {
		t.Errorf("balance %d, want 10: a bad token redeemed", a.Balance)
	}
}
