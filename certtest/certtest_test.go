package certtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"
)

// handshake dials a server presenting serve as name, trusting roots alone.
func handshake(t *testing.T, serve tls.Certificate, roots *x509.CertPool, name string) error {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serve}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
	if err == nil {
		c.Close()
	}
	return err
}

// TestServedAndTrusted: a client trusting the certificate's pool accepts it for each of its
// names and addresses, and refuses it for another name or from another certificate's pool.
func TestServedAndTrusted(t *testing.T) {
	c := New(t, nil, "mail.example", "127.0.0.1")
	for _, name := range []string{"mail.example", "127.0.0.1"} {
		if err := handshake(t, c.TLS(), c.Pool(), name); err != nil {
			t.Errorf("as %s: %v", name, err)
		}
	}
	if err := handshake(t, c.TLS(), c.Pool(), "other.example"); err == nil {
		t.Error("accepted for a name it does not hold")
	}
	other := New(t, nil, "mail.example")
	if err := handshake(t, c.TLS(), other.Pool(), "mail.example"); err == nil {
		t.Error("accepted by a client trusting another certificate")
	}
	if other.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two certificates share a serial number: a renewal could not be told apart")
	}
}

// TestWrittenFilesLoad: what Write leaves loads as a key pair, and a second Write replaces it.
func TestWrittenFilesLoad(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for range 2 {
		c := New(t, nil, "127.0.0.1")
		c.Write(t, certFile, keyFile)
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err != nil || leaf.SerialNumber.Cmp(c.SerialNumber) != 0 {
			t.Errorf("the files hold serial %v (%v), want the last written %v", leaf.SerialNumber, err, c.SerialNumber)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.new")); len(left) != 0 {
		t.Errorf("files left beside: %v", left)
	}
}

// TestGivenKey: a certificate made for a given RSA key (SNS signs with RSA) certifies that
// key, and its PEM parses back to it.
func TestGivenKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c := New(t, key, "sns.amazonaws.com")
	block, rest := pem.Decode(c.PEM())
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("PEM %q is not one certificate", c.PEM())
	}
	parsed, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := parsed.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		t.Errorf("the certificate holds %T, not the given key", parsed.PublicKey)
	}
	if parsed.Subject.CommonName != "sns.amazonaws.com" {
		t.Errorf("common name %q", parsed.Subject.CommonName)
	}
}
