package web_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/html"
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
		linked = linked || d.Type == html.ElementNode && d.Data == "link" && attr(d, "rel") == "icon" && attr(d, "href") == "/favicon.ico"
	}
	if !linked {
		t.Error("the page does not link /favicon.ico")
	}
}
