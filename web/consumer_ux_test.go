package web_test

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"pointpost/web/pagetest"
)

// TestFavicon: browsers ask every page's site for /favicon.ico; it is an icon, not a 404,
// and the pages link it.
func TestFavicon(t *testing.T) {
	w := newWorld(t)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, err := http.NewRequest(method, w.srv.URL+"/favicon.ico", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := w.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") {
			t.Fatalf("%s /favicon.ico: %d %q", method, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// An ICO file begins with reserved 0, type 1 (icon).
		if method == http.MethodGet && !bytes.HasPrefix(body, []byte{0, 0, 1, 0}) {
			t.Errorf("/favicon.ico is not an icon: % x", body[:min(len(body), 8)])
		}
	}
	p := w.get("/join").want(t, http.StatusOK)
	var linked bool
	for d := range p.doc.Descendants() {
		linked = linked || d.Type == html.ElementNode && d.Data == "link" && pagetest.Attr(d, "rel") == "icon" && pagetest.Attr(d, "href") == "/favicon.ico"
	}
	if !linked {
		t.Error("the page does not link /favicon.ico")
	}
}

// TestAccountHistoryOneLinePerAward: an award is one line of her history whose state moves
// from pending to posted, and the posted lines add up to her balance; it was three lines of
// +10 (acknowledged, earned, added) beside a balance of 10.
func TestAccountHistoryOneLinePerAward(t *testing.T) {
	w := newWorld(t)
	token := w.po.AccountToken(w.ann.ID)
	w.earn(w.ann, false)
	p := w.get("/account/"+token).want(t, http.StatusOK)
	events := p.all("event")
	if len(events) != 1 {
		t.Fatalf("%d history lines after one award, want 1: %q", len(events), pagetest.Text(p.one(t, "history")))
	}
	if got := pagetest.Attr(events[0], "data-state"); got != "pending" || pagetest.Text(pagetest.ByTestID(events[0], "event-points")[0]) != "+10" {
		t.Errorf("before settlement the award is %q with %q points, want pending +10", got, pagetest.Text(pagetest.ByTestID(events[0], "event-points")[0]))
	}
	if got := pagetest.Text(pagetest.ByTestID(events[0], "event-state")[0]); got != "pending" {
		t.Errorf("the award says %q, want pending", got)
	}

	if _, err := w.st.Settle(t.Context(), 10); err != nil {
		t.Fatal(err)
	}
	p = w.get("/account/"+token).want(t, http.StatusOK)
	events = p.all("event")
	if len(events) != 1 || pagetest.Attr(events[0], "data-state") != "posted" {
		t.Fatalf("after settlement: %d lines, the first %q; want the one award, posted", len(events), pagetest.Text(events[0]))
	}
	var posted int
	for _, e := range events {
		if pagetest.Attr(e, "data-state") == "posted" {
			n, err := strconv.Atoi(strings.TrimPrefix(pagetest.Text(pagetest.ByTestID(e, "event-points")[0]), "+"))
			if err != nil {
				t.Fatal(err)
			}
			posted += n
		}
	}
	if b := pagetest.Text(p.one(t, "balance")); b != strconv.Itoa(posted) {
		t.Errorf("balance %s beside posted awards of %d", b, posted)
	}
}

// TestRedeemConfirmsThenShowsAndKeepsTheVoucher: the code page says what she is about to
// spend and what will be left; the redemption shows her voucher code, and her account page
// keeps it. One click used to redeem with nothing to show for it.
func TestRedeemConfirmsThenShowsAndKeepsTheVoucher(t *testing.T) {
	w := newWorld(t)
	mug := w.addItem("Mug", 4, 3)
	w.earn(w.ann, true)
	token := w.po.AccountToken(w.ann.ID)
	p, mail := w.askToRedeem(token, mug.ID)
	if got := pagetest.Text(p.one(t, "balance-after")); got != "6" {
		t.Errorf("the confirmation says %q points will be left, want 6 of 10", got)
	}
	p = w.enterCode(p, mail.Code).want(t, http.StatusOK)
	voucher := pagetest.Text(p.one(t, "redeemed-voucher"))
	if !regexp.MustCompile(`^PP-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$`).MatchString(voucher) {
		t.Fatalf("voucher %q, want PP-XXXX-XXXX", voucher)
	}
	if !strings.Contains(pagetest.Text(p.one(t, "redeemed")), "Mug") {
		t.Errorf("the page does not say what she got: %q", pagetest.Text(p.one(t, "redeemed")))
	}
	// Later visits keep it, without the just-redeemed box.
	p = w.get("/account/"+token).want(t, http.StatusOK)
	if p.has("redeemed") {
		t.Error("a later visit shows the redemption as just made")
	}
	if got := p.all("reward-voucher"); len(got) != 1 || pagetest.Text(got[0]) != voucher {
		t.Errorf("her rewards keep %d vouchers, want %q", len(got), voucher)
	}
	// A second redemption gets a voucher of its own.
	p, mail = w.askToRedeem(token, mug.ID)
	p = w.enterCode(p, mail.Code).want(t, http.StatusOK)
	second := pagetest.Text(p.one(t, "redeemed-voucher"))
	if got := p.all("reward-voucher"); second == voucher || len(got) != 2 || pagetest.Text(got[0]) != second {
		t.Errorf("second voucher %q beside %q: %d kept", second, voucher, len(got))
	}
}
