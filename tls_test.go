package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"golang.org/x/crypto/acme/autocert"

	"pointpost/certtest"
	"pointpost/store"
	"pointpost/store/pgtest"
)

// testDomain is the name the tests obtain certificates for; the test's DNS server says it
// is 127.0.0.1.
const testDomain = "mail.pointpost.test"

// startLoopbackDNS answers every A question with 127.0.0.1 and AAAA with nothing, over TCP
// as Pebble's validation asks. Returns its address.
func startLoopbackDNS(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: l, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA,
					Class: dns.ClassINET}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return l.Addr().String()
}

// pebble is Let's Encrypt's test CA on loopback. Its directory listens from the start; the
// CA behind it is made by start, once the ports to validate on are known.
type pebble struct {
	directory string // URL
	caFile    string // PEM of the directory's own HTTPS certificate
	handler   atomic.Pointer[http.Handler]
	ca        *ca.CAImpl
	dns       string
	// orders counts the orders the CA created (one or more per certificate obtained or
	// renewed: one per challenge type tried) and accounts the accounts.
	orders, accounts atomic.Int64
}

// statusRecorder keeps the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func newPebble(t *testing.T) *pebble {
	t.Setenv("PEBBLE_VA_NOSLEEP", "1") // no random waits before validating
	p := &pebble{dns: startLoopbackDNS(t)}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.handler.Load(); h != nil {
			rec := &statusRecorder{ResponseWriter: w}
			(*h).ServeHTTP(rec, r)
			// Created only: Pebble refuses some nonces, and the client sends those again.
			switch {
			case r.Method != http.MethodPost || rec.status != http.StatusCreated:
			case r.URL.Path == "/order-plz": // wfe's newOrderPath
				p.orders.Add(1)
			case r.URL.Path == "/sign-me-up": // wfe's newAccountPath
				p.accounts.Add(1)
			}
			return
		}
		http.Error(w, "pebble not started", http.StatusServiceUnavailable)
	}))
	t.Cleanup(ts.Close)
	p.directory = ts.URL + wfe.DirectoryPath
	p.caFile = filepath.Join(t.TempDir(), "pebble-wfe.pem")
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// start makes the CA, issuing certificates valid for validity and validating HTTP-01 on
// httpPort and TLS-ALPN-01 on tlsPort of 127.0.0.1.
func (p *pebble) start(validity time.Duration, httpPort, tlsPort int) {
	logger := log.New(io.Discard, "", 0)
	db := pebbledb.NewMemoryStore()
	p.ca = ca.New(logger, db, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: uint64(validity / time.Second)}})
	v := va.New(logger, httpPort, tlsPort, false, p.dns, db)
	front := wfe.New(logger, db, v, p.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	p.handler.Store(&h)
}

// roots trust the certificates the CA issues.
func (p *pebble) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca.GetRootCert(0).PEM())
	return pool
}

// httpsServer is a serve with --https running.
type httpsServer struct {
	baseURL, https, http, smtp string
}

func startHTTPSServe(t *testing.T, e env) *httpsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{lines: make(chan string, 16)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, e.get, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case line := <-out.lines:
		m := regexp.MustCompile(`open (https://\S+)/ \(HTTPS on ([0-9.:]+), http://([0-9.:]+)/ redirects; replies: smtp://([0-9.:]+)\)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected first line %q", line)
		}
		return &httpsServer{baseURL: m[1], https: m[2], http: m[3], smtp: m[4]}
	case err := <-done:
		t.Fatalf("serve ended early: %v", err)
	}
	return nil
}

// servedCert is the certificate the HTTPS server offers for name.
func servedCert(t *testing.T, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	d := &net.Dialer{Timeout: time.Minute}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS to %s as %s: %v", addr, name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func port(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return port(t, l.Addr().String())
}

func httpsEnv(t *testing.T, p *pebble) env {
	e := newEnv(t, "")
	e["POINTPOST_HTTPS"] = testDomain
	e["POINTPOST_HTTPS_ADDR"] = "127.0.0.1:0"
	e["POINTPOST_ACME_DIRECTORY"] = p.directory
	e["POINTPOST_ACME_CA"] = p.caFile
	return e
}

// keptCert is the certificate ACME keeps for testDomain, read where serve keeps it: in the
// database of e (PostgreSQL) or the directory (SQLite, --tls-dir).
func keptCert(t *testing.T, e env) ([]byte, error) {
	t.Helper()
	if dir := (&Config{DB: e["POINTPOST_DB"], TLSDir: e["POINTPOST_TLS_DIR"]}).certCacheDir(); dir != "" {
		return os.ReadFile(filepath.Join(dir, testDomain))
	}
	s, err := store.Open(context.Background(), e["POINTPOST_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.ACMEGet(context.Background(), testDomain)
}

// TestCertificatesDirectory: ACME's files are kept in --tls-dir, or else beside a SQLite
// database, or else ("") in the PostgreSQL database.
func TestCertificatesDirectory(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{DB: "/var/lib/pointpost/pointpost.db"}, "/var/lib/pointpost/certificates"},
		{Config{DB: "pointpost.db"}, "certificates"},
		{Config{DB: "sqlite:///var/lib/pointpost/pointpost.db"}, "/var/lib/pointpost/certificates"},
		{Config{DB: "postgres://pointpost@db.internal/pointpost"}, ""},
		{Config{DB: "postgresql://db.internal/pointpost", TLSDir: "/srv/shared/acme"}, "/srv/shared/acme"},
		{Config{DB: "/var/lib/pointpost/pointpost.db", TLSDir: "/etc/pointpost/acme"}, "/etc/pointpost/acme"},
	} {
		if got := c.cfg.certCacheDir(); got != c.want {
			t.Errorf("--db %s --tls-dir %q: %s, want %s", c.cfg.DB, c.cfg.TLSDir, got, c.want)
		}
	}
	cfg, err := parseServeConfig(nil, env{"POINTPOST_TLS_DIR": "/srv/acme"}.get)
	if err != nil || cfg.certCacheDir() != "/srv/acme" {
		t.Errorf("POINTPOST_TLS_DIR: %q, %v", cfg.certCacheDir(), err)
	}
}

// TestHTTPSByACMETLSALPN: serve --https obtains a certificate from Pebble by TLS-ALPN-01 (the
// only challenge Pebble can reach), serves it with HSTS, keeps it beside the database,
// redirects plain HTTP, and renews it before it expires without a restart.
func TestHTTPSByACMETLSALPN(t *testing.T) {
	p := newPebble(t)
	e := httpsEnv(t, p)
	srv := startHTTPSServe(t, e)
	// Certificates live 12 seconds: renewed a third before the end, some 8 seconds on.
	p.start(12*time.Second, closedPort(t), port(t, srv.https))
	if want := "https://" + testDomain + ":" + strconv.Itoa(port(t, srv.https)); srv.baseURL != want {
		t.Errorf("base URL %s, want %s", srv.baseURL, want)
	}

	first := servedCert(t, srv.https, testDomain, p.roots())
	if len(first.DNSNames) != 1 || first.DNSNames[0] != testDomain {
		t.Fatalf("certificate for %v", first.DNSNames)
	}
	if _, err := keptCert(t, e); err != nil {
		t.Errorf("the certificate is not kept beside the SQLite database, in the PostgreSQL one, or in --tls-dir: %v", err)
	}

	// The receiver's STARTTLS offers the same certificate, to a mail server that names the
	// MX and to one that names another host.
	for _, name := range []string{testDomain, "other.pointpost.test"} {
		c, err := smtp.Dial(srv.smtp)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.StartTLS(&tls.Config{ServerName: name, InsecureSkipVerify: true}); err != nil {
			t.Fatalf("STARTTLS naming %s: %v", name, err)
		}
		state, _ := c.TLSConnectionState()
		if got := state.PeerCertificates[0]; got.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Errorf("STARTTLS naming %s: certificate for %v, serial %v, want the web server's", name, got.DNSNames, got.SerialNumber)
		}
		c.Close()
	}

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.roots()},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); host == testDomain {
				addr = srv.https // the test's name is ours
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(srv.baseURL + "/join")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") != hstsMaxAge {
		t.Errorf("GET /join over HTTPS: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}

	resp, err = client.Post("http://"+srv.http+"/join?x=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "https://" + srv.https + "/join?x=1"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("POST over plain HTTP: %d to %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS over plain HTTP")
	}
	resp, err = client.Get("http://" + srv.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz over plain HTTP: %d (load balancers probe it there)", resp.StatusCode)
	}

	var renewed *x509.Certificate
	waitFor(t, "the certificate's renewal", time.Minute, func() bool {
		renewed = servedCert(t, srv.https, testDomain, p.roots())
		return renewed.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate ends %v, the first %v", renewed.NotAfter, first.NotAfter)
	}
}

// TestHTTPSByACMEHTTP01: with TLS-ALPN-01 out of Pebble's reach, the certificate comes by
// HTTP-01 on the plain listener.
func TestHTTPSByACMEHTTP01(t *testing.T) {
	p := newPebble(t)
	srv := startHTTPSServe(t, httpsEnv(t, p))
	p.start(24*time.Hour, port(t, srv.http), closedPort(t))
	if c := servedCert(t, srv.https, testDomain, p.roots()); len(c.DNSNames) != 1 || c.DNSNames[0] != testDomain {
		t.Fatalf("certificate for %v", c.DNSNames)
	}
	// A name it was not told to serve gets no certificate.
	if c, err := tls.Dial("tcp", srv.https, &tls.Config{ServerName: "other.pointpost.test", RootCAs: p.roots()}); err == nil {
		c.Close()
		t.Error("a certificate for a name not in --https")
	}
}

// TestHTTPSByACMESharedOnPostgres: two web processes on one PostgreSQL database, behind one
// load balancer, keep ACME's cache in it. The CA validates the HTTP-01 challenge the first
// asked for at the second (where a load balancer may send it), which answers it from the
// database; the second then serves the certificate the first obtained, with no order and no
// account of its own.
func TestHTTPSByACMESharedOnPostgres(t *testing.T) {
	db := pgtest.Need(t, pgServer).NewDatabase(t)
	p := newPebble(t)
	var srvs [2]*httpsServer
	for i := range srvs {
		e := httpsEnv(t, p)
		e["POINTPOST_DB"] = db
		e["POINTPOST_NAME"] = "web" + strconv.Itoa(i+1)
		srvs[i] = startHTTPSServe(t, e)
	}
	first, second := srvs[0], srvs[1]
	// TLS-ALPN-01 out of reach; HTTP-01 reaches the second process only.
	p.start(24*time.Hour, port(t, second.http), closedPort(t))

	cert := servedCert(t, first.https, testDomain, p.roots())
	orders := p.orders.Load()
	if orders == 0 || p.accounts.Load() != 1 {
		t.Fatalf("the first certificate: %d orders, %d accounts", orders, p.accounts.Load())
	}
	if got := servedCert(t, second.https, testDomain, p.roots()); got.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Errorf("the second process serves serial %v, the first %v", got.SerialNumber, cert.SerialNumber)
	}
	if n, a := p.orders.Load(), p.accounts.Load(); n != orders || a != 1 {
		t.Errorf("the second process asked the CA: %d orders (%d before), %d accounts", n, orders, a)
	}
	if kept, err := keptCert(t, env{"POINTPOST_DB": db}); err != nil || len(kept) == 0 {
		t.Errorf("the certificate in the database: %d bytes, %v", len(kept), err)
	}
}

// TestACMECacheMissOnlyWhenMissing: the database's ACME cache tells autocert of a miss only
// for an entry not there; a database not open yet, or closed (out of reach), is an error
// that is not autocert.ErrCacheMiss, so autocert orders no certificate.
func TestACMECacheMissOnlyWhenMissing(t *testing.T) {
	ctx := context.Background()
	var cache autocert.Cache = &dbCertCache{}
	if _, err := cache.Get(ctx, testDomain); err == nil || errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("Get before the database is open: %v, want an error that is not a miss", err)
	}
	if err := cache.Put(ctx, testDomain, []byte("x")); err == nil {
		t.Error("Put before the database is open: no error")
	}
	s, err := store.Open(ctx, testDatabase(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	(&tlsServing{acme: &autocert.Manager{Cache: cache}}).keepIn(s)
	if _, err := cache.Get(ctx, testDomain); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("Get of an entry not there: %v, want autocert.ErrCacheMiss", err)
	}
	if err := cache.Put(ctx, testDomain, []byte("cert")); err != nil {
		t.Fatal(err)
	}
	if got, err := cache.Get(ctx, testDomain); err != nil || string(got) != "cert" {
		t.Errorf("Get after Put: %q, %v", got, err)
	}
	if err := cache.Delete(ctx, testDomain); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, testDomain); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("Get after Delete: %v, want autocert.ErrCacheMiss", err)
	}
	s.Close()
	if _, err := cache.Get(ctx, testDomain); err == nil || errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("Get with the database closed: %v, want an error that is not a miss", err)
	}
}

// TestHTTPSFromFiles: --tls-cert and --tls-key serve the team's certificate, links use its
// name, and a renewal written over the files is served from the next connection.
func TestHTTPSFromFiles(t *testing.T) {
	const name = "files.pointpost.test"
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := certtest.New(t, nil, name)
	first.Write(t, certFile, keyFile)
	e := newEnv(t, "")
	e["POINTPOST_TLS_CERT"], e["POINTPOST_TLS_KEY"] = certFile, keyFile
	e["POINTPOST_HTTPS_ADDR"] = "127.0.0.1:0"
	srv := startHTTPSServe(t, e)
	if want := "https://" + name + ":" + strconv.Itoa(port(t, srv.https)); srv.baseURL != want {
		t.Errorf("base URL %s, want %s", srv.baseURL, want)
	}
	roots := first.Pool()
	if got := servedCert(t, srv.https, name, roots); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("served serial %v, want %v", got.SerialNumber, first.SerialNumber)
	}
	second := certtest.New(t, nil, name)
	second.Write(t, certFile, keyFile)
	roots.AddCert(second.Certificate)
	if got := servedCert(t, srv.https, name, roots); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatalf("after the renewal, served serial %v, want %v", got.SerialNumber, second.SerialNumber)
	}
}

// TestHTTPSFlagErrors: HTTPS settings that cannot work are refused before anything listens,
// naming the flag.
func TestHTTPSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-key", "k.pem"}, "--tls-key must be given with --tls-cert"},
		{[]string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--https", "a.example.org"}, "--tls-cert must be left out with --https"},
		{[]string{"--https", "a.example.org,not a name"}, `--https "not a name"`},
		{[]string{"--https", "a.example.org", "--acme-ca", filepath.Join(dir, "missing.pem")}, "--acme-ca"},
		{[]string{"--https", "a.example.org", "--acme-ca", notPEM}, "no PEM certificate"},
		{[]string{"--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", notPEM}, "--tls-cert: TLS certificate"},
	} {
		e := newEnv(t, "")
		e["POINTPOST_HTTP"] = "127.0.0.1:0"
		err := run(context.Background(), append([]string{"serve"}, c.args...), e.get, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
