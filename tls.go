package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"pointpost/mailer"
	"pointpost/rewards"
	"pointpost/store"
)

// hstsMaxAge is a year: browsers that once reached the site over HTTPS never try plain HTTP
// again for so long. Subdomains are left out; they may be other servers.
const hstsMaxAge = "max-age=31536000"

// httpsOn says whether serve serves HTTPS: by ACME or from the team's files.
func (c *Config) httpsOn() bool { return len(c.HTTPS) > 0 || c.TLSCert != "" }

// certCacheDir is the directory ACME's account key, certificates and HTTP-01 challenges are
// kept in: --tls-dir, or else beside a SQLite database, so a backup of its directory keeps
// them. "" with a PostgreSQL database: they are kept in it (dbCertCache), where every web
// process on it, behind one load balancer, finds the certificate one of them obtained and the
// challenge another asked the CA for.
func (c *Config) certCacheDir() string {
	switch {
	case c.TLSDir != "":
		return c.TLSDir
	case store.IsPostgresURL(c.DB):
		return ""
	}
	return filepath.Join(filepath.Dir(store.SQLiteFile(c.DB)), "certificates")
}

// dbCertCache is autocert's Cache in the database, once serve has opened it (keepIn). Only a
// missing entry is a miss: a database out of reach is an error, or autocert would order a new
// certificate, and a new account, at every handshake and soon meet the CA's rate limits.
type dbCertCache struct{ store *store.Store }

func (c *dbCertCache) Get(ctx context.Context, key string) ([]byte, error) {
	if c.store == nil {
		return nil, errDatabaseNotOpen
	}
	data, err := c.store.ACMEGet(ctx, key)
	if errors.Is(err, rewards.ErrNotFound) {
		return nil, autocert.ErrCacheMiss
	}
	return data, err
}

func (c *dbCertCache) Put(ctx context.Context, key string, data []byte) error {
	if c.store == nil {
		return errDatabaseNotOpen
	}
	return c.store.ACMEPut(ctx, key, data)
}

func (c *dbCertCache) Delete(ctx context.Context, key string) error {
	if c.store == nil {
		return errDatabaseNotOpen
	}
	return c.store.ACMEDelete(ctx, key)
}

var errDatabaseNotOpen = errors.New("ACME cache: the database is not open yet")

// checkHTTPS refuses a domain ACME could not be asked for.
func (c *Config) checkHTTPS() error {
	for i, d := range c.HTTPS {
		d = strings.ToLower(strings.TrimSpace(d))
		if !dnsName.MatchString(d) {
			return fmt.Errorf("%s %q: each must be a DNS name, as mail.example.org", c.source("https"), d)
		}
		c.HTTPS[i] = d
	}
	return nil
}

// tlsServing is how the HTTPS server gets its certificate: acme is nil with the team's files.
type tlsServing struct {
	config *tls.Config
	acme   *autocert.Manager
	// name is the name the certificate is for: the first --https domain, or the first DNS
	// name of --tls-cert's certificate; "" when it names none.
	name string
}

// newTLS prepares HTTPS: an ACME manager that obtains certificates at the first handshake
// for each domain and renews them before they expire, or the team's PEM files, read again
// when they change. Returns an error naming the flag whose file does not load.
func (c *Config) newTLS(log *slog.Logger) (*tlsServing, error) {
	if c.TLSCert != "" {
		certs, err := mailer.NewCertFiles(c.TLSCert, c.TLSKey, log.With("component", "https"))
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		s := &tlsServing{config: &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"}}}
		if cert, _ := certs.GetCertificate(nil); cert.Leaf != nil && len(cert.Leaf.DNSNames) > 0 {
			s.name = cert.Leaf.DNSNames[0]
		}
		return s, nil
	}
	client := &acme.Client{DirectoryURL: c.ACMEDirectory}
	if c.ACMECA != "" {
		pem, err := os.ReadFile(c.ACMECA)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--acme-ca %s: no PEM certificate in it", c.ACMECA)
		}
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: transport}
	}
	allowed := autocert.HostWhitelist(c.HTTPS...)
	m := &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		// HTTP-01 asks with the Host header, which names the port when it is not 80 (a CA
		// reaching the server through a forwarded port).
		HostPolicy: func(ctx context.Context, host string) error {
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			return allowed(ctx, host)
		},
		Cache:  &dbCertCache{},
		Client: client,
	}
	if dir := c.certCacheDir(); dir != "" {
		m.Cache = autocert.DirCache(dir)
	}
	config := m.TLSConfig() // answers TLS-ALPN-01 challenges too
	config.MinVersion = tls.VersionTLS12
	getCert := config.GetCertificate
	config.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "" {
			// A client that names no server (an IP address typed in) gets the first domain's.
			h := *hello
			h.ServerName = c.HTTPS[0]
			hello = &h
		}
		cert, err := getCert(hello)
		if err != nil && !errors.Is(err, autocert.ErrCacheMiss) {
			log.Warn("https: no certificate", "server_name", hello.ServerName, "err", err)
		}
		return cert, err
	}
	return &tlsServing{config: config, acme: m, name: c.HTTPS[0]}, nil
}

// keepIn gives an ACME cache kept in the database (certCacheDir "") the store serve opened;
// it must come before the first handshake.
func (s *tlsServing) keepIn(st *store.Store) {
	if s == nil || s.acme == nil {
		return
	}
	if c, ok := s.acme.Cache.(*dbCertCache); ok {
		c.store = st
	}
}

// forSMTP gives the receiver's STARTTLS the web server's certificate: mail servers name the
// MX host they looked up, or nothing, and get the certificate of that name when it is one
// of ours, of the first name otherwise. Nil without HTTPS.
func (s *tlsServing) forSMTP() func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s == nil || s.name == "" {
		return nil
	}
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if s.acme != nil && s.acme.HostPolicy(context.Background(), hello.ServerName) != nil {
			h := *hello
			h.ServerName = s.name
			hello = &h
		}
		return s.config.GetCertificate(hello)
	}
}

// hsts tells browsers that reached the site over HTTPS to keep to it.
func hsts(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", hstsMaxAge)
		}
		h.ServeHTTP(w, r)
	})
}

// plainHandler is the plain HTTP server beside HTTPS: it answers ACME's HTTP-01 challenges
// and the health probes, and sends everything else to the same URL over HTTPS.
func (a *app) plainHandler(ls listeners) http.Handler {
	_, port, _ := net.SplitHostPort(ls.https.Addr().String())
	mux := http.NewServeMux()
	health := a.healthHandler()
	mux.Handle("/healthz", health)
	mux.Handle("/readyz", health)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if host == "" {
			host = ls.tls.name
		}
		if port != "443" {
			host = net.JoinHostPort(host, port)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		// 308 keeps a form's POST a POST.
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
	if ls.tls.acme != nil {
		return ls.tls.acme.HTTPHandler(mux)
	}
	return mux
}
