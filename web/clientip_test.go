package web_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"pointpost/web"
)

func TestClientIPBelievesOnlyTrustedProxies(t *testing.T) {
	proxies, err := web.ParseTrustedProxies(" 127.0.0.1, ::1, 10.0.0.0/8 ")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		trusted web.TrustedProxies
		remote  string
		xff     []string
		want    string
	}{
		// No proxy is trusted by default: the header is the client's to forge, loopback or not.
		{nil, "127.0.0.1:50000", []string{"203.0.113.9"}, "127.0.0.1"},
		{nil, "192.0.2.7:50000", []string{"203.0.113.9"}, "192.0.2.7"},
		// Straight from an untrusted peer, X-Forwarded-For is ignored.
		{proxies, "192.0.2.7:50000", []string{"203.0.113.9"}, "192.0.2.7"},
		{proxies, "[2001:db8::7]:50000", []string{"203.0.113.9"}, "2001:db8::7"},
		// Through a trusted proxy: the hop it added, not the ones sent to it.
		{proxies, "127.0.0.1:50000", []string{"203.0.113.9"}, "203.0.113.9"},
		{proxies, "127.0.0.1:50000", []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{proxies, "127.0.0.1:50000", []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{proxies, "[::1]:50000", []string{"2001:db8::9"}, "2001:db8::9"},
		{proxies, "127.0.0.1:50000", []string{"203.0.113.9:443"}, "203.0.113.9"},
		{proxies, "127.0.0.1:50000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		// Through two trusted proxies: the right-most hop no trusted proxy vouches for.
		{proxies, "127.0.0.1:50000", []string{"198.51.100.1, 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		// Every hop trusted: the left-most of them.
		{proxies, "127.0.0.1:50000", []string{"10.9.9.9, 10.1.2.3"}, "10.9.9.9"},
		// Without a usable header, the client is the last trusted hop.
		{proxies, "127.0.0.1:50000", nil, "127.0.0.1"},
		{proxies, "127.0.0.1:50000", []string{"unknown"}, "127.0.0.1"},
		{proxies, "127.0.0.1:50000", []string{"203.0.113.9, "}, "127.0.0.1"},
		{proxies, "127.0.0.1:50000", []string{"junk, 10.1.2.3"}, "10.1.2.3"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/login", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := tc.trusted.ClientIP(r); got != tc.want {
			t.Errorf("ClientIP(%s, X-Forwarded-For %q, trusting %v) = %q, want %q", tc.remote, tc.xff, tc.trusted, got, tc.want)
		}
	}
}

func TestParseTrustedProxiesRefusesJunk(t *testing.T) {
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "127.0.0.1, nope", "1.2.3.4:80"} {
		if _, err := web.ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted it", bad)
		}
	}
	if p, err := web.ParseTrustedProxies(""); err != nil || len(p) != 0 {
		t.Errorf("empty list: %v, %v; want none trusted", p, err)
	}
}
