package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"pointpost/rewards"
	"pointpost/web"
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
	if b, pe := text(p.one(t, "balance")), text(p.one(t, "pending")); b != "0" || pe != "0" {
		t.Errorf("new account: balance %s, pending %s", b, pe)
	}
	p.one(t, "history-empty")

	w.earn(w.ann, false)
	// Any of her delivery tokens opens her account as well as the account token.
	for _, tok := range []string{w.po.AccountToken(w.ann.ID), w.token(w.ann)} {
		p = w.get("/account/"+tok).want(t, http.StatusOK)
		if b, pe := text(p.one(t, "balance")), text(p.one(t, "pending")); b != "0" || pe != "10" {
			t.Errorf("after Submit: balance %s, pending %s; want 0 and 10", b, pe)
		}
		if got := text(p.one(t, "email")); got != "ann@example.com" {
			t.Errorf("email %q", got)
		}
	}

	w.earn(w.ann, true)
	p = w.get("/account/"+w.po.AccountToken(w.ann.ID)).want(t, http.StatusOK)
	if b, pe := text(p.one(t, "balance")), text(p.one(t, "pending")); b != "10" || pe != "0" {
		t.Errorf("after settlement: balance %s, pending %s; want 10 and 0", b, pe)
	}
	kinds := map[string]bool{}
	for _, e := range p.all("event") {
		kinds[attr(e, "data-kind")] = true
		if !strings.Contains(text(e), "Spring sale") {
			t.Errorf("history event %q does not name the campaign", text(e))
		}
	}
	for _, k := range []string{rewards.EventAcknowledgement, rewards.EventAccrual, rewards.EventPosting} {
		if !kinds[k] {
			t.Errorf("history has no %s event: %v", k, kinds)
		}
	}

	items := p.all("catalog-item")
	if len(items) != 2 {
		t.Fatalf("%d catalog items, want 2", len(items))
	}
	if attr(items[0], "data-id") != itoa(mug.ID) || text(byTestID(items[0], "item-name")[0]) != "Mug" ||
		text(byTestID(items[0], "item-cost")[0]) != "5" {
		t.Errorf("first item %q", text(items[0]))
	}
	forms := p.all("redeem-form")
	if len(forms) != 2 || attr(forms[0], "action") != "/account/"+w.po.AccountToken(w.ann.ID)+"/redeem" ||
		inputValue(forms[0], "item") != itoa(mug.ID) {
		t.Fatalf("redeem forms: %d, first to %q for item %q", len(forms), attr(forms[0], "action"), inputValue(forms[0], "item"))
	}
	if len(p.all("redeem")) != 1 {
		t.Errorf("%d enabled Redeem buttons, want 1 (the kayak costs too much)", len(p.all("redeem")))
	}
}

func TestRedeem(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 5, 1)
	kayak := w.addItem("Kayak", 5000, 1)
	w.earn(w.ann, true)
	redeem := "/account/" + w.po.AccountToken(w.ann.ID) + "/redeem"
	form := func(id string) url.Values { return url.Values{"item": {id}} }

	p := w.post(redeem, form(itoa(kayak.ID))).want(t, http.StatusConflict)
	msg := p.one(t, "message")
	if attr(msg, "data-ok") != "false" || !strings.Contains(text(msg), "not have enough points") {
		t.Errorf("too few points: message %q", text(msg))
	}
	if got := text(p.one(t, "balance")); got != "10" {
		t.Errorf("balance %s after a refused redemption", got)
	}

	// A success redirects to the account page, which says so and shows the new balance.
	p = w.post(redeem, form(itoa(mug.ID))).want(t, http.StatusOK)
	msg = p.one(t, "message")
	if attr(msg, "data-ok") != "true" || !strings.Contains(text(msg), "Mug") {
		t.Errorf("redeemed: message %q", text(msg))
	}
	if got := text(p.one(t, "balance")); got != "5" {
		t.Errorf("balance %s after redeeming 5 of 10", got)
	}
	if len(p.all("event")) == 0 || attr(p.all("event")[0], "data-kind") != rewards.EventRedemption {
		t.Error("the redemption is not the newest history event")
	}

	p = w.post(redeem, form(itoa(mug.ID))).want(t, http.StatusConflict)
	if got := text(p.one(t, "message")); !strings.Contains(got, "out of stock") {
		t.Errorf("out of stock: message %q", got)
	}
	p = w.post(redeem, form("424242")).want(t, http.StatusNotFound)
	p.one(t, "message")
	p = w.post(redeem, form("mug")).want(t, http.StatusBadRequest)
	p.one(t, "message")
	if got := text(p.one(t, "balance")); got != "5" {
		t.Errorf("balance %s after refusals, want 5", got)
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
		})
	}
	if a := w.account(w.ann); a.Balance != 10 {
		t.Errorf("balance %d, want 10: a bad token redeemed", a.Balance)
	}
}
