package mailer

import (
	"bytes"
	"crypto"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// testLibcrypto returns the system's libcrypto, skipping the test where it is not
// installed.
func testLibcrypto(t testing.TB) *libcrypto {
	t.Helper()
	lib, err := systemLibcrypto()
	if err != nil {
		t.Skipf("no OpenSSL 3 libcrypto here: %v", err)
	}
	return lib
}

// rsaSignerPair returns two signers for acme.example with the same RSA key and clock: one
// signing in libcrypto, one in crypto/rsa.
func rsaSignerPair(t testing.TB, key crypto.Signer) (native, goRSA *DKIMSigner) {
	t.Helper()
	testLibcrypto(t)
	now := time.Now()
	for _, lib := range []func() (*libcrypto, error){systemLibcrypto, nil} {
		s, err := newDKIMSigner("acme.example", lib, DKIMKey{Selector: "pp-rsa", Key: key})
		if err != nil {
			t.Fatal(err)
		}
		s.now = func() time.Time { return now }
		if lib != nil {
			native = s
		} else {
			goRSA = s
		}
	}
	if native.keys[0].native == nil || !strings.Contains(native.Engine(), "OpenSSL 3") {
		t.Fatalf("the libcrypto signer signs with %s", native.Engine())
	}
	if goRSA.keys[0].native != nil || goRSA.Engine() != "s=pp-rsa: Go crypto/rsa" {
		t.Fatalf("the crypto/rsa signer signs with %s", goRSA.Engine())
	}
	return native, goRSA
}

// randomMessage is a message with random header values and body, white space included.
func randomMessage(r *rand.Rand) []byte {
	pieces := []string{" ", "\t", "  ", "\r\n", "\n", "x", "word", "é", "王", ".", "=20", "\r\n\r\n"}
	text := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	oneLine := func(n int) string { return strings.NewReplacer("\r", "", "\n", "").Replace(text(n)) }
	return []byte(fmt.Sprintf("From: A <a@acme.example>\r\nTo: u%d@example.com\r\nSubject: %s\r\n"+
		"Date: Sat, 14 Mar 2026 15:09:26 +0100\r\nMessage-ID: <%d@acme.example>\r\n\r\n%s",
		r.IntN(1e6), oneLine(r.IntN(20)), r.Uint64(), text(r.IntN(200))))
}

// TestLibcryptoSignsAsCryptoRSA signs random messages, from several goroutines at once,
// with keys of three sizes in libcrypto and in crypto/rsa: PKCS#1 v1.5 signatures are
// deterministic, so the signed messages must be equal byte for byte, and go-msgauth must
// verify them.
func TestLibcryptoSignsAsCryptoRSA(t *testing.T) {
	keys := []crypto.Signer{testKey(t, "rsa")}
	for _, bits := range []int{1024, 3072} {
		k, err := rsa.GenerateKey(crand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	for _, key := range keys {
		bits := key.Public().(*rsa.PublicKey).N.BitLen()
		t.Run(fmt.Sprint(bits), func(t *testing.T) {
			native, goRSA := rsaSignerPair(t, key)
			dns := dnsOf(native)
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(bits), uint64(g)))
					var a, b []byte
					for range 25 {
						msg := randomMessage(r)
						var err error
						if a, err = native.Sign(a[:0], msg); err != nil {
							t.Error(err)
							return
						}
						if b, err = goRSA.Sign(b[:0], msg); err != nil {
							t.Error(err)
							return
						}
						if !bytes.Equal(a, b) {
							t.Errorf("libcrypto signed\n%q\ncrypto/rsa signed\n%q", a, b)
							return
						}
						vs := verifyDKIM(t, a, dns)
						if len(vs) != 1 || vs[0].Err != nil {
							t.Errorf("the libcrypto signature does not verify: %+v\n%q", vs, a)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestDKIMSignerFallsBackToCryptoRSA(t *testing.T) {
	// A library that is not there, and one that is there but is not OpenSSL 3.
	for name, want := range map[string]string{
		"libpointpost-absent.so.3": "libpointpost-absent.so.3",
		"libc.so.6":                "libc.so.6 has no d2i_PrivateKey (OpenSSL 3 is needed)",
	} {
		t.Run(name, func(t *testing.T) {
			lib := func() (*libcrypto, error) { return openLibcrypto("libpointpost-absent.so.9", name) }
			s, err := newDKIMSigner("acme.example", lib, DKIMKey{Selector: "pp-rsa", Key: testKey(t, "rsa")},
				DKIMKey{Selector: "pp-ed25519", Key: testKey(t, "ed25519")})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Engine(); !strings.HasPrefix(got, "s=pp-rsa: Go crypto/rsa (libcrypto: ") ||
				!strings.Contains(got, want) || !strings.HasSuffix(got, "; s=pp-ed25519: Go crypto/ed25519") {
				t.Errorf("Engine() = %q, want crypto/rsa, saying %q", got, want)
			}
			if got := s.Engine(); !strings.Contains(got, "libpointpost-absent.so.9: cannot open") || strings.Contains(got, "\n") {
				t.Errorf("Engine() = %q, want every name tried, on one line", got)
			}
			if s.keys[0].native != nil {
				t.Fatal("a key is held by a library that did not load")
			}
			signed, err := s.Sign(nil, []byte("From: a@acme.example\r\nSubject: hi\r\n\r\nhello\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			checkSigned(t, signed, dnsOf(s), 2)
		})
	}
}

func TestLibcryptoRefusesBadKeys(t *testing.T) {
	lib := testLibcrypto(t)
	key := testKey(t, "rsa").(*rsa.PrivateKey)
	der := x509.MarshalPKCS1PrivateKey(key)
	other, err := rsa.GenerateKey(crand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		der  []byte
		pub  *rsa.PublicKey
		want string
	}{
		{"empty", nil, &key.PublicKey, "libcrypto: no RSA key"},
		{"not DER", []byte("-----BEGIN RSA PRIVATE KEY-----"), &key.PublicKey, "libcrypto: reading the RSA key: error:"},
		{"cut short", der[:len(der)/2], &key.PublicKey, "libcrypto: reading the RSA key: error:"},
		{"an Ed25519 key", mustPKCS8(t, testKey(t, "ed25519")), &key.PublicKey, "libcrypto: reading the RSA key: error:"},
		// libcrypto holds a key other than the one the signer was given: its signatures
		// would not verify, so it is not used.
		{"another key", der, &other.PublicKey, "libcrypto: its signature does not verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := lib.loadRSA(tc.der, tc.pub)
			if k != nil || err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("loadRSA: %v, %v; want an error starting %q", k, err, tc.want)
			}
		})
	}
}

func mustPKCS8(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// BenchmarkDKIMSignRSA measures Sign with an RSA-2048 key in libcrypto and in crypto/rsa,
// on one message.
func BenchmarkDKIMSignRSA(b *testing.B) {
	native, goRSA := rsaSignerPair(b, testKey(b, "rsa"))
	msg := randomMessage(rand.New(rand.NewPCG(1, 1)))
	for _, s := range []*DKIMSigner{native, goRSA} {
		name := "libcrypto"
		if s == goRSA {
			name = "crypto-rsa"
		}
		b.Run(name, func(b *testing.B) {
			var out []byte
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				var err error
				if out, err = s.Sign(out[:0], msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
