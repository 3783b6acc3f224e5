package mailer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"math/rand/v2"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// testKeys holds one key of each kind for the whole test binary: an RSA key takes a while
// to generate.
var testKeys = sync.OnceValues(func() (map[string]crypto.Signer, error) {
	keys := map[string]crypto.Signer{}
	for _, kind := range []string{"rsa", "ed25519"} {
		k, _, err := GenerateDKIMKey(kind)
		if err != nil {
			return nil, err
		}
		keys[kind] = k
	}
	return keys, nil
})

func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	keys, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	return keys[kind]
}

// testSigner returns a signer for acme.example with a key of each kind given, selectors
// named after the kinds.
func testSigner(t testing.TB, kinds ...string) *DKIMSigner {
	t.Helper()
	var keys []DKIMKey
	for _, kind := range kinds {
		keys = append(keys, DKIMKey{Selector: "pp-" + kind, Key: testKey(t, kind)})
	}
	s, err := NewDKIMSigner("acme.example", keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dnsOf answers DKIM key lookups with s's records, as DNS would once they are published.
func dnsOf(s *DKIMSigner) *dkim.VerifyOptions {
	records := map[string]string{}
	for _, r := range s.Records() {
		records[r.Name] = r.Text
	}
	return &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, fmt.Errorf("no TXT record at %s", name)
	}}
}

// verifyDKIM verifies msg's signatures with go-msgauth and returns the outcome of each.
func verifyDKIM(t testing.TB, msg []byte, opts *dkim.VerifyOptions) []*dkim.Verification {
	t.Helper()
	v, err := dkim.VerifyWithOptions(bytes.NewReader(msg), opts)
	if err != nil {
		t.Fatalf("dkim.Verify: %v", err)
	}
	return v
}

// checkSigned checks msg carries want valid signatures by acme.example over every field
// that must be signed.
func checkSigned(t testing.TB, msg []byte, opts *dkim.VerifyOptions, want int) {
	t.Helper()
	vs := verifyDKIM(t, msg, opts)
	if len(vs) != want {
		t.Fatalf("%d signatures, want %d:\n%s", len(vs), want, msg)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature does not verify: %v\n%s", v.Err, msg)
			continue
		}
		if v.Domain != "acme.example" {
			t.Errorf("signed by %q", v.Domain)
		}
		for _, f := range []string{"from", "to", "subject", "date", "message-id", "reply-to", "mime-version",
			"content-type", "list-unsubscribe", "list-unsubscribe-post"} {
			if !slices.Contains(v.HeaderKeys, f) {
				t.Errorf("%s is not signed (h=%v)", f, v.HeaderKeys)
			}
		}
		if n := strings.Count(strings.Join(v.HeaderKeys, ":")+":", "from:"); n != 2 {
			t.Errorf("From is listed %d times in h=%v, want 2 (oversigned)", n, v.HeaderKeys)
		}
		if time.Since(v.Time) > time.Minute || time.Until(v.Time) > time.Minute {
			t.Errorf("t= is %v", v.Time)
		}
	}
}

// allFail reports whether no signature of msg verifies.
func allFail(t testing.TB, msg []byte, opts *dkim.VerifyOptions) bool {
	t.Helper()
	for _, v := range verifyDKIM(t, msg, opts) {
		if v.Err == nil {
			return false
		}
	}
	return true
}

// unicodeJob's messages have non-ASCII in subjects, bodies and names, runs of white space
// and long lines.
func unicodeJob(t testing.TB) *jobMessages {
	t.Helper()
	job := testJob()
	job.IssuerName = "Crème & Brûlée"
	text := &postoffice.Message{Type: rewards.FormatText, Subject: "Grüße <_&getUserName_> — 100 Punkte ✓",
		Body: "Liebe <_&getFullName_>,\n\ttabs  and   spaces stay\n" + strings.Repeat("Wörter ", 40) + "\n\n\n"}
	html := &postoffice.Message{Type: rewards.FormatHTML, Subject: "王小明, <_&getUserName_> points  ",
		Body: "<html><body>\n<p>Hallo <_&getFullName_> — <a href=\"<_&getAckURL_>\">hier</a></p>   \n</body></html>"}
	addr := testAddresses
	addr.From = mail.Address{Name: "Crème Rewards", Address: "rewards@acme.example"}
	jm, err := compileJob(job, text, html, addr)
	if err != nil {
		t.Fatal(err)
	}
	return jm
}

func TestDKIMSignedMessagesVerify(t *testing.T) {
	k := testKeyring(t)
	jm := unicodeJob(t)
	consumers := []rewards.Consumer{
		{ID: 1, Email: "zoe@example.com", FirstName: "Zoë", LastName: "Ångström-Øster", Format: rewards.FormatText},
		{ID: 2, Email: "li@example.com", FirstName: "Li", LastName: "王小明", Format: rewards.FormatHTML},
	}
	for _, kinds := range [][]string{{"ed25519"}, {"rsa"}, {"rsa", "ed25519"}} {
		signer := testSigner(t, kinds...)
		dns := dnsOf(signer)
		for _, c := range consumers {
			t.Run(strings.Join(kinds, "+")+" "+string(c.Format), func(t *testing.T) {
				token := k.Encode(jm.job.Key, c.ID)
				msg, _ := jm.build(nil, &postoffice.Recipient{Consumer: c}, token, "", dateHeader(time.Now()), nil)
				signed, err := signer.Sign([]byte("keep"), msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(signed, []byte("keepDKIM-Signature: ")) || !bytes.HasSuffix(signed, msg) {
					t.Fatalf("Sign must append the signature fields, then the message")
				}
				signed = signed[len("keep"):]
				checkWireFormat(t, signed)
				checkSigned(t, signed, dns, len(kinds))
				b := parseBuilt(t, signed, token)
				if lu := b.header.Get("List-Unsubscribe"); !strings.Contains(lu, "<https://pp.example/u/"+token+">") ||
					!strings.Contains(lu, "<mailto:unsubscribe+"+token+"@reply.acme.example>") {
					t.Errorf("List-Unsubscribe = %q", lu)
				}
				if got := b.header.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
					t.Errorf("List-Unsubscribe-Post = %q", got)
				}

				// Relaxed canonicalization: refolding and white space changes keep it valid.
				refolded := bytes.Replace(signed, []byte("\r\nSubject: "), []byte("\r\nsubject:\r\n\t  "), 1)
				refolded = bytes.Replace(refolded, []byte("MIME-Version: 1.0"), []byte("MIME-Version:   1.0 \t"), 1)
				if bytes.Equal(refolded, signed) {
					t.Fatal("the refolding test changed nothing")
				}
				checkSigned(t, refolded, dns, len(kinds))

				tamper := map[string][]byte{
					"body":                  replaceLast(signed, "=\r\n", "=\r\nX"),
					"subject":               bytes.Replace(signed, []byte("\r\nSubject: "), []byte("\r\nSubject: Re: "), 1),
					"List-Unsubscribe":      bytes.Replace(signed, []byte("<https://pp.example/u/"), []byte("<https://evil.example/u/"), 1),
					"List-Unsubscribe-Post": bytes.Replace(signed, []byte("List-Unsubscribe=One-Click"), []byte("List-Unsubscribe=Two-Click"), 1),
					"added From":            bytes.Replace(signed, []byte("\r\n\r\n"), []byte("\r\nFrom: Evil <evil@evil.example>\r\n\r\n"), 1),
					"added line at the end": append(bytes.Clone(signed), "P.S. click here\r\n"...),
				}
				for what, msg := range tamper {
					if bytes.Equal(msg, signed) {
						t.Fatalf("tampering with the %s changed nothing", what)
					}
					if !allFail(t, msg, dns) {
						t.Errorf("a message with its %s changed still verifies", what)
					}
				}
			})
		}
	}
}

// replaceLast replaces the last instance of old in b.
func replaceLast(b []byte, old, new string) []byte {
	i := bytes.LastIndex(b, []byte(old))
	if i < 0 {
		return b
	}
	return slices.Concat(b[:i], []byte(new), b[i+len(old):])
}

// TestDKIMMatchesLibrary signs random messages, built to hit the canonicalization's edges,
// with the signer and with go-msgauth's dkim.Sign: the body hashes must agree, and both
// signatures verify.
func TestDKIMMatchesLibrary(t *testing.T) {
	key := testKey(t, "ed25519")
	signer := testSigner(t, "ed25519")
	dns := dnsOf(signer)
	r := rand.New(rand.NewPCG(6376, 8463))
	pieces := []string{" ", "\t", "  ", "\r\n", "\r\n\r\n", "\n", "\r", "x", "word", "é", ".", "=20"}
	bh := regexp.MustCompile(`bh=([^;]+);`)
	// First bodies the canonical form leaves as they are but for empty lines at the end,
	// then bodies it changes.
	fixed := []string{"", "\r\n", "\r\n\r\n", "a", "a\r\n", "a\r\n\r\n\r\n", " lead\r\nx y\r\n", "=20 x=\r\nend\r\n\r\n",
		"a \r\n", "a ", "a\r\n \r\n", "a\rb\r\n", "a\r", "a\r\r\n", "\tx\r\n", "x  y\r\n", " \r\n\r\n"}
	for i := range 500 + len(fixed) {
		var body []byte
		if i < len(fixed) {
			body = []byte(fixed[i])
		}
		for range r.IntN(30) * min(1, i/len(fixed)) {
			body = append(body, pieces[r.IntN(len(pieces))]...)
		}
		subject := "Subj" + strings.Repeat(pieces[r.IntN(3)], r.IntN(3)) + "ect" + pieces[r.IntN(3)]
		msg := []byte("From: A <a@acme.example>\r\nTo:  b@example.com\r\nSubject: " + subject + "\r\n" +
			"Date: Sat, 14 Mar 2026 15:09:26 +0100\r\nX-Other: not signed\r\n\r\n" + string(body))
		ours, err := signer.Sign(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		var theirs bytes.Buffer
		err = dkim.Sign(&theirs, bytes.NewReader(msg), &dkim.SignOptions{Domain: "acme.example", Selector: "pp-ed25519",
			Signer: key, HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
			HeaderKeys: dkimHeaderKeys})
		if err != nil {
			t.Fatal(err)
		}
		a, b := bh.FindSubmatch(ours), bh.FindSubmatch(theirs.Bytes())
		if a == nil || b == nil || !bytes.Equal(a[1], b[1]) {
			t.Fatalf("case %d: body %q: our bh=%s, go-msgauth's %s", i, body, a, b)
		}
		for who, signed := range map[string][]byte{"ours": ours, "go-msgauth's": theirs.Bytes()} {
			for _, v := range verifyDKIM(t, signed, dns) {
				if v.Err != nil {
					t.Fatalf("case %d: %s signature does not verify: %v\n%q", i, who, v.Err, signed)
				}
			}
		}
	}
}

func TestDKIMSignRefusesHeaderOnly(t *testing.T) {
	signer := testSigner(t, "ed25519")
	out, err := signer.Sign([]byte("keep"), []byte("From: a@acme.example\r\nSubject: no body\r\n"))
	if err == nil || string(out) != "keep" {
		t.Errorf("a message without a blank line after its header: %q, %v", out, err)
	}
}

// failingKey is a key whose signing fails, as a hardware key might.
type failingKey struct{ crypto.Signer }

func (failingKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("token removed")
}

// instantKey returns a fixed signature at no cost, to measure what is around the key.
type instantKey struct{ crypto.Signer }

func (instantKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return make([]byte, ed25519.SignatureSize), nil
}

func TestDKIMSignReportsKeyFailure(t *testing.T) {
	// The second key fails: the first one's signature must not stay behind either.
	signer, err := NewDKIMSigner("acme.example", DKIMKey{Selector: "a", Key: testKey(t, "ed25519")},
		DKIMKey{Selector: "b", Key: failingKey{testKey(t, "ed25519")}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := signer.Sign([]byte("keep"), []byte("From: a@acme.example\r\n\r\nhi\r\n"))
	if err == nil || !strings.Contains(err.Error(), "token removed") {
		t.Errorf("Sign with a failing key: %v", err)
	}
	if string(out) != "keep" {
		t.Errorf("a failed Sign left %q in dst", out)
	}
}

func TestNewDKIMSignerRefuses(t *testing.T) {
	ed, rs := testKey(t, "ed25519"), testKey(t, "rsa")
	ec, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A damaged key file: its private exponent does not match the rest.
	corrupt := *rs.(*rsa.PrivateKey)
	corrupt.D = new(big.Int).Add(corrupt.D, big.NewInt(2))
	cases := []struct {
		name, domain string
		keys         []DKIMKey
		want         string
	}{
		{"no domain", "", []DKIMKey{{"s", ed}}, "not a domain"},
		{"an address for a domain", "rewards@acme.example", []DKIMKey{{"s", ed}}, "not a domain"},
		{"a single label", "localhost", []DKIMKey{{"s", ed}}, "not a domain"},
		{"no key", "acme.example", nil, "0 keys"},
		{"three keys", "acme.example", []DKIMKey{{"a", ed}, {"b", rs}, {"c", ed}}, "3 keys"},
		{"a nil key", "acme.example", []DKIMKey{{"s", nil}}, "no key"},
		{"an ECDSA key", "acme.example", []DKIMKey{{"s", ec}}, "RSA or Ed25519"},
		{"a corrupt RSA key", "acme.example", []DKIMKey{{"s", &corrupt}}, "the RSA key is not valid"},
		{"an empty selector", "acme.example", []DKIMKey{{"", ed}}, "selector"},
		{"a selector with a space", "acme.example", []DKIMKey{{"a b", ed}}, "selector"},
		{"one selector for two keys", "acme.example", []DKIMKey{{"pp", rs}, {"PP", ed}}, "two keys"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDKIMSigner(tc.domain, tc.keys...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewDKIMSigner: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	s, err := NewDKIMSigner(" Acme.Example. ", DKIMKey{"2026a", rs}, DKIMKey{"2026b", ed})
	if err != nil {
		t.Fatal(err)
	}
	if s.Domain() != "acme.example" {
		t.Errorf("Domain() = %q", s.Domain())
	}
	recs := s.Records()
	if len(recs) != 2 || recs[0].Name != "2026a._domainkey.acme.example" || recs[1].Name != "2026b._domainkey.acme.example" ||
		!strings.HasPrefix(recs[0].Text, "v=DKIM1; k=rsa; p=") || !strings.HasPrefix(recs[1].Text, "v=DKIM1; k=ed25519; p=") {
		t.Errorf("Records() = %+v", recs)
	}
}

func TestDKIMKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }

	for _, kind := range []string{"rsa", "ed25519"} {
		key, record, err := GenerateDKIMKey(kind)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(record, "v=DKIM1; k="+kind+"; p=") {
			t.Errorf("%s record %q", kind, record)
		}
		if rk, ok := key.(*rsa.PrivateKey); ok && rk.N.BitLen() != 2048 {
			t.Errorf("RSA key of %d bits, want 2048", rk.N.BitLen())
		}
		data, err := EncodeDKIMKey(key)
		if err != nil {
			t.Fatal(err)
		}
		loaded, err := LoadDKIMKey(write(kind+".pem", data))
		if err != nil {
			t.Fatalf("loading the %s key written by EncodeDKIMKey: %v", kind, err)
		}
		if r, _ := DKIMPublicRecord(loaded); r != record {
			t.Errorf("the loaded %s key publishes %q, want %q", kind, r, record)
		}
	}

	rsaKey := testKey(t, "rsa").(*rsa.PrivateKey)
	pkcs1 := write("pkcs1.pem", append([]byte("a comment before the key\n"), pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))...))
	if k, err := LoadDKIMKey(pkcs1); err != nil || !rsaKey.Equal(k) {
		t.Errorf("PKCS#1 key: %v, %v", k, err)
	}
	edDER, _ := x509.MarshalPKCS8PrivateKey(testKey(t, "ed25519"))
	pubDER, _ := x509.MarshalPKIXPublicKey(testKey(t, "ed25519").Public())
	withPublic := write("with-public.pem", append(pemOf("PUBLIC KEY", pubDER), pemOf("PRIVATE KEY", edDER)...))
	if k, err := LoadDKIMKey(withPublic); err != nil || !testKey(t, "ed25519").(ed25519.PrivateKey).Equal(k) {
		t.Errorf("a key beside its public key: %v, %v", k, err)
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecSEC1, _ := x509.MarshalECPrivateKey(ec)
	encryptedPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED",
		"DEK-Info": "AES-256-CBC,00000000000000000000000000000000"}, Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no PEM private key"},
		{"not PEM", []byte("p=MIIBIjANBgkqh"), "no PEM private key"},
		{"a public key only", pemOf("PUBLIC KEY", pubDER), "no PEM private key"},
		{"an ECDSA key", pemOf("PRIVATE KEY", ecDER), "RSA or Ed25519"},
		{"a SEC 1 EC key", pemOf("EC PRIVATE KEY", ecSEC1), "RSA or Ed25519"},
		{"corrupt DER", pemOf("PRIVATE KEY", edDER[:20]), "PRIVATE KEY"},
		{"encrypted PKCS#8", pemOf("ENCRYPTED PRIVATE KEY", edDER), "encrypted"},
		{"encrypted PKCS#1", encryptedPKCS1, "encrypted"},
		{"two keys", append(pemOf("PRIVATE KEY", edDER), pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))...), "more than one"},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := write(fmt.Sprintf("bad%d.pem", i), tc.data)
			_, err := LoadDKIMKey(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("LoadDKIMKey: %v, want an error naming the file and saying %q", err, tc.want)
			}
		})
	}
	if _, err := LoadDKIMKey(filepath.Join(dir, "missing.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, _, err := GenerateDKIMKey("dsa"); err == nil {
		t.Error("GenerateDKIMKey(dsa) made a key")
	}
}

func TestLoadOrCreateDKIMKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dkim.pem")
	key, created, err := LoadOrCreateDKIMKey(p, "ed25519")
	if err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the key file: %v, %v; want mode 0600", fi, err)
	}
	again, created, err := LoadOrCreateDKIMKey(p, "rsa")
	if err != nil || created || !key.(ed25519.PrivateKey).Equal(again) {
		t.Errorf("second start: created %v, %v; want the same key loaded", created, err)
	}

	// A file that is there but bad is an error, never replaced.
	badPath := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(badPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateDKIMKey(badPath, "rsa"); err == nil {
		t.Error("a bad key file was accepted")
	}
	if data, _ := os.ReadFile(badPath); string(data) != "garbage" {
		t.Errorf("the bad key file was overwritten with %q", data)
	}
	if _, _, err := LoadOrCreateDKIMKey(filepath.Join(dir, "none", "dkim.pem"), "ed25519"); err == nil {
		t.Error("a key was made in a directory that does not exist")
	}
	kindPath := filepath.Join(dir, "kind.pem")
	if _, _, err := LoadOrCreateDKIMKey(kindPath, "dsa"); err == nil {
		t.Error("an unknown kind made a key")
	}
	if _, err := os.Stat(kindPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an unknown kind left a file: %v", err)
	}
}

func TestDKIMSenderSignsNotices(t *testing.T) {
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sender := newSender(t, sink.URL(), 5*time.Second)
	signer := testSigner(t, "rsa", "ed25519")
	n := &Notices{Sender: &DKIMSender{Sender: sender, DKIM: signer},
		From: mail.Address{Name: "Acme Rewards", Address: "rewards@acme.example"}, Domain: "reply.acme.example"}
	if err := n.SendConfirmation(context.Background(), "zoe@example.com", "Zoë Ångström", "https://pp.example/join/confirm/1abc"); err != nil {
		t.Fatal(err)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages", len(msgs))
	}
	// What the relay received, after SMTP's dot-stuffing and line ends, verifies.
	vs := verifyDKIM(t, msgs[0].Data, dnsOf(signer))
	if len(vs) != 2 {
		t.Fatalf("%d signatures, want 2", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("notice signature: %v\n%s", v.Err, msgs[0].Data)
		}
	}

	// Unsigned without a signer.
	plain := &DKIMSender{Sender: sender}
	if err := plain.Send(context.Background(), &Envelope{From: "a@acme.example", To: "b@example.com",
		Data: []byte("From: a@acme.example\r\n\r\nhi\r\n")}); err != nil {
		t.Fatal(err)
	}
	if msgs := sink.Messages(); len(msgs) != 2 || bytes.Contains(msgs[1].Data, []byte("DKIM-Signature")) {
		t.Errorf("a DKIMSender without a signer signed, or did not send")
	}
	// A message that cannot be signed is not sent.
	if err := n.Sender.Send(context.Background(), &Envelope{From: "a@acme.example", To: "b@example.com",
		Data: []byte("no header end")}); err == nil {
		t.Error("an unsignable message was sent")
	}
	if got := len(sink.Messages()); got != 2 {
		t.Errorf("sink has %d messages, want 2", got)
	}
}

// BenchmarkBuildSigned measures what a worker does for one signed message: token, date,
// build and DKIM signature. The "go-msgauth" case signs the same message with dkim.Sign,
// for comparison.
func BenchmarkBuildSigned(b *testing.B) {
	k := testKeyring(b)
	jm := compileTest(b, testJob(), textMessage(), htmlMessage())
	r := postoffice.Recipient{DeliveryID: 1, Consumer: rewards.Consumer{ID: 123456, Email: "ann.lee@example.com",
		FirstName: "Ann", LastName: "Lee", City: "Oslo", Format: rewards.FormatHTML, Status: rewards.StatusActive}}
	now := time.Now()
	for _, kinds := range [][]string{{"ed25519"}, {"rsa"}, {"rsa", "ed25519"}} {
		b.Run(strings.Join(kinds, "+"), func(b *testing.B) {
			signer := testSigner(b, kinds...)
			var buf, signed, scratch []byte
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				token := k.Encode(jm.job.Key, r.Consumer.ID)
				buf, scratch = jm.build(buf[:0], &r, token, "", dateHeader(now), scratch)
				var err error
				if signed, err = signer.Sign(signed[:0], buf); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(signed)))
		})
	}
	// Everything but the key's own work: what signing costs over the cryptography.
	b.Run("no key cost", func(b *testing.B) {
		signer, err := NewDKIMSigner("acme.example", DKIMKey{Selector: "s", Key: instantKey{testKey(b, "ed25519")}})
		if err != nil {
			b.Fatal(err)
		}
		var buf, signed, scratch []byte
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			token := k.Encode(jm.job.Key, r.Consumer.ID)
			buf, scratch = jm.build(buf[:0], &r, token, "", dateHeader(now), scratch)
			if signed, err = signer.Sign(signed[:0], buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ed25519 go-msgauth", func(b *testing.B) {
		key := testKey(b, "ed25519")
		var buf, scratch []byte
		var out bytes.Buffer
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			token := k.Encode(jm.job.Key, r.Consumer.ID)
			buf, scratch = jm.build(buf[:0], &r, token, "", dateHeader(now), scratch)
			out.Reset()
			err := dkim.Sign(&out, bytes.NewReader(buf), &dkim.SignOptions{Domain: "acme.example", Selector: "s",
				Signer: key, HeaderCanonicalization: dkim.CanonicalizationRelaxed,
				BodyCanonicalization: dkim.CanonicalizationRelaxed, HeaderKeys: dkimHeaderKeys})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU, deferred with its result, reports the process's CPU time per operation: on a
// shared machine wall time per operation says more about the neighbours than the code.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
