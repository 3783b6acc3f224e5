package mailer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DKIM signing (RFC 6376, relaxed/relaxed, SHA-256; RSA per RFC 8301, Ed25519 per RFC 8463).
//
// The signer works on the exact bytes the mail servers produce instead of going through
// go-msgauth's generic dkim.Sign (a goroutine, a pipe, a map of tags and a reparse of the
// header per message); its output is checked against go-msgauth's dkim.Verify in the tests.
// What remains is two SHA-256 hashes and the key's own signing, which for RSA dominates:
// RSA keys sign in the system's OpenSSL libcrypto where it is installed, about four
// times as fast as crypto/rsa, with the same signatures (dkim_libcrypto.go).

// dkimHeaderKeys are the fields signed, in h= order. From is listed twice: the second,
// matching no field, makes a From added on the way break the signature (oversigning).
var dkimHeaderKeys = []string{"from", "to", "subject", "date", "message-id", "reply-to", "mime-version",
	"content-type", "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post", "from"}

// DKIMKey is one signing key and the selector under which its public key is published
// (selector._domainkey.domain).
type DKIMKey struct {
	Selector string
	// Key is an *rsa.PrivateKey of at least 1024 bits or an ed25519.PrivateKey.
	Key crypto.Signer
}

// DKIMSigner adds DKIM-Signature fields to messages. It is immutable and safe for
// concurrent use.
type DKIMSigner struct {
	domain  string
	keys    []dkimKey
	scratch sync.Pool // *dkimScratch
	now     func() time.Time
}

type dkimKey struct {
	signer crypto.Signer
	// native, when set, signs in signer's place: the same signatures, made by libcrypto.
	native *libcryptoRSA
	// engine says what makes the signatures, for the log.
	engine   string
	selector string
	hash     crypto.Hash // what Sign is told: SHA256 for RSA, none for Ed25519 (it signs the hash as is)
	// head is the signature field as written up to the value of t=.
	head []byte
}

type dkimScratch struct {
	canon  []byte
	fields []headerField
	picked []bool
	raw    []byte // a signature
	sig    []byte // raw in base64
	msg    []byte
}

// headerField is one field of a header as written, with its folds and final CRLF, and its
// name without white space.
type headerField struct {
	raw, name []byte
}

// NewDKIMSigner returns a signer for domain (the From domain, for DMARC alignment) with one
// key, or two for dual signing (RSA for every verifier, Ed25519 for the modern ones); each
// key needs a selector of its own. Returns an error for a missing or malformed domain or
// selector, a repeated selector, no key or more than two, or a key DKIM cannot use or that
// is not valid.
func NewDKIMSigner(domain string, keys ...DKIMKey) (*DKIMSigner, error) {
	return newDKIMSigner(domain, systemLibcrypto, keys...)
}

// systemLibcrypto is the system's OpenSSL 3 libcrypto, opened once.
var systemLibcrypto = sync.OnceValues(func() (*libcrypto, error) {
	return openLibcrypto("libcrypto.so.3", "libcrypto.so")
})

// newDKIMSigner is NewDKIMSigner with the library that signs *rsa.PrivateKey keys: with
// none (nil), or one that fails to load, crypto/rsa signs them.
func newDKIMSigner(domain string, rsaLib func() (*libcrypto, error), keys ...DKIMKey) (*DKIMSigner, error) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if !validDNSName(domain) || !strings.Contains(domain, ".") {
		return nil, fmt.Errorf("dkim: domain %q is not a domain name", domain)
	}
	if len(keys) == 0 || len(keys) > 2 {
		return nil, fmt.Errorf("dkim: %d keys given, want 1 or 2", len(keys))
	}
	s := &DKIMSigner{domain: domain, now: time.Now}
	seen := map[string]bool{}
	for _, k := range keys {
		sel := strings.ToLower(strings.TrimSpace(k.Selector))
		if !validDNSName(sel) {
			return nil, fmt.Errorf("dkim: selector %q is not a DNS name", k.Selector)
		}
		if seen[sel] {
			return nil, fmt.Errorf("dkim: selector %q is given to two keys; each key needs its own DNS record", sel)
		}
		seen[sel] = true
		algo, hash, err := dkimAlgorithm(k.Key)
		if err != nil {
			return nil, err
		}
		// Folded before a ':' of h=, as the large providers do, to keep lines short.
		h := strings.Join(dkimHeaderKeys[:6], ":") + "\r\n\t:" + strings.Join(dkimHeaderKeys[6:9], ":") +
			"\r\n\t:" + strings.Join(dkimHeaderKeys[9:], ":")
		head := "DKIM-Signature: v=1; a=" + algo + "-sha256; c=relaxed/relaxed; d=" + domain + "; s=" + sel +
			";\r\n\th=" + h + ";\r\n\tt="
		key := dkimKey{signer: k.Key, selector: sel, hash: hash, head: []byte(head)}
		if key.engine, key.native, err = signingEngine(k.Key, rsaLib); err != nil {
			return nil, err
		}
		s.keys = append(s.keys, key)
	}
	s.scratch.New = func() any { return &dkimScratch{} }
	return s, nil
}

// Domain is the signing domain, d=.
func (s *DKIMSigner) Domain() string { return s.domain }

// Engine says, for the log at start, what makes each key's signatures: for an RSA key
// libcrypto and its version, or crypto/rsa and why not libcrypto.
func (s *DKIMSigner) Engine() string {
	var parts []string
	for _, k := range s.keys {
		parts = append(parts, "s="+k.selector+": "+k.engine)
	}
	return strings.Join(parts, "; ")
}

// signingEngine picks what signs with key: rsaLib's libcrypto for an RSA key where it
// loads and signs correctly, else Go. Returns an error for an RSA key that is not valid.
func signingEngine(key crypto.Signer, rsaLib func() (*libcrypto, error)) (engine string, native *libcryptoRSA, err error) {
	switch key := key.(type) {
	case *rsa.PrivateKey:
		if err := key.Validate(); err != nil {
			return "", nil, fmt.Errorf("dkim: the RSA key is not valid: %w", err)
		}
		if rsaLib == nil {
			return "Go crypto/rsa", nil, nil
		}
		lib, err := rsaLib()
		if err == nil {
			if native, err = lib.rsaKey(key); err == nil {
				return lib.String(), native, nil
			}
		}
		return "Go crypto/rsa (" + err.Error() + ")", nil, nil
	case ed25519.PrivateKey:
		return "Go crypto/ed25519", nil, nil
	default:
		return fmt.Sprintf("the key's own signer (%T)", key), nil, nil
	}
}

// dkimAlgorithm names the key's algorithm for a= and says how it signs a hash.
func dkimAlgorithm(key crypto.Signer) (algo string, hash crypto.Hash, err error) {
	if key == nil {
		return "", 0, errors.New("dkim: no key")
	}
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < 1024 {
			return "", 0, fmt.Errorf("dkim: RSA key of %d bits; verifiers refuse keys under 1024 (RFC 8301), use 2048", bits)
		}
		return "rsa", crypto.SHA256, nil
	case ed25519.PublicKey:
		return "ed25519", 0, nil
	default:
		return "", 0, fmt.Errorf("dkim: %T keys cannot sign DKIM; use RSA or Ed25519", pub)
	}
}

// Sign appends to dst msg's DKIM-Signature field (one per key) and then msg itself, its
// bare LFs made CRLF as SMTP will send them, and returns the result. msg must be a whole
// message: a header, a blank line, a body. Returns an error, and dst as it was, for a
// message without a blank line after its header or when a key fails to sign.
func (s *DKIMSigner) Sign(dst, msg []byte) ([]byte, error) {
	sc := s.scratch.Get().(*dkimScratch)
	defer s.scratch.Put(sc)
	if hasBareLF(msg) {
		sc.msg = appendCRLF(sc.msg[:0], msg)
		msg = sc.msg
	}
	headerEnd := bytes.Index(msg, []byte("\r\n\r\n"))
	if headerEnd < 0 {
		return dst, errors.New("dkim: the message has no blank line after its header")
	}
	header, body := msg[:headerEnd+2], msg[headerEnd+4:]

	var bodyHash [sha256.Size]byte
	if n, ok := relaxedAsIs(body); ok {
		bodyHash = sha256.Sum256(body[:n]) // hashed where it lies
	} else {
		sc.canon = appendRelaxedBody(sc.canon[:0], body)
		bodyHash = sha256.Sum256(sc.canon)
	}
	var bh [44]byte
	base64.StdEncoding.Encode(bh[:], bodyHash[:])

	// The signed fields, canonicalized once for every key.
	sc.fields = splitFields(sc.fields[:0], header)
	sc.picked = slices.Grow(sc.picked[:0], len(sc.fields))[:len(sc.fields)]
	clear(sc.picked)
	sc.canon = sc.canon[:0]
	for _, key := range dkimHeaderKeys {
		if i := pickField(sc.fields, sc.picked, key); i >= 0 {
			sc.canon = appendRelaxedHeader(sc.canon, sc.fields[i].raw)
		}
	}
	signedLen := len(sc.canon)

	var tbuf [20]byte
	t := strconv.AppendInt(tbuf[:0], s.now().Unix(), 10)
	start := len(dst)
	for _, k := range s.keys {
		field := len(dst)
		dst = append(dst, k.head...)
		dst = append(dst, t...)
		dst = append(dst, "; bh="...)
		dst = append(dst, bh[:]...)
		dst = append(dst, ";\r\n\tb="...)
		// What is signed: the fields, then this field with b= empty and no final CRLF.
		sc.canon = appendRelaxedHeader(sc.canon[:signedLen], dst[field:])
		sc.canon = sc.canon[:len(sc.canon)-2]
		digest := sha256.Sum256(sc.canon)
		var sig []byte
		var err error
		if k.native != nil {
			sc.raw, err = k.native.sign(sc.raw[:0], digest[:])
			sig = sc.raw
		} else {
			sig, err = k.signer.Sign(rand.Reader, digest[:], k.hash)
		}
		if err != nil {
			return dst[:start], fmt.Errorf("dkim: signing: %w", err)
		}
		sc.sig = base64.StdEncoding.AppendEncode(sc.sig[:0], sig)
		for i := 0; i < len(sc.sig); i += 72 {
			if i > 0 {
				dst = append(dst, "\r\n\t "...)
			}
			dst = append(dst, sc.sig[i:min(i+72, len(sc.sig))]...)
		}
		dst = append(dst, "\r\n"...)
	}
	return append(dst, msg...), nil
}

// splitFields appends header's fields to fields.
func splitFields(fields []headerField, header []byte) []headerField {
	for len(header) > 0 {
		end := 0
		for {
			nl := bytes.IndexByte(header[end:], '\n')
			if nl < 0 {
				end = len(header)
				break
			}
			end += nl + 1
			if end == len(header) || header[end] != ' ' && header[end] != '\t' {
				break // not a fold
			}
		}
		raw := header[:end]
		name := raw
		if colon := bytes.IndexByte(raw, ':'); colon >= 0 {
			name = raw[:colon]
		}
		fields = append(fields, headerField{raw: raw, name: trimWSP(name)})
		header = header[end:]
	}
	return fields
}

// pickField returns the last not yet picked field named name (lowercase), or -1: a
// verifier picks repeated fields from the bottom up (RFC 6376 section 5.4.2).
func pickField(fields []headerField, picked []bool, name string) int {
	for i := len(fields) - 1; i >= 0; i-- {
		if picked[i] || !equalFoldName(fields[i].name, name) {
			continue
		}
		picked[i] = true
		return i
	}
	return -1
}

// equalFoldName compares a field name with lowercase name.
func equalFoldName(field []byte, name string) bool {
	if len(field) != len(name) {
		return false
	}
	for i := range len(field) {
		c := field[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// isWSP reports whether c is white space or part of a line break; most bytes are above
// the space, which is tested first.
func isWSP(c byte) bool { return c <= ' ' && (c == ' ' || c == '\t' || c == '\r' || c == '\n') }

// trimWSP is b without white space and line breaks at either end.
func trimWSP(b []byte) []byte {
	for len(b) > 0 && isWSP(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isWSP(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// appendRelaxedHeader appends the relaxed canonical form of field (RFC 6376 section 3.4.2):
// the name in lowercase, then ':' and the value unfolded, every run of white space one
// space, none at either end, then CRLF.
func appendRelaxedHeader(dst, field []byte) []byte {
	colon := bytes.IndexByte(field, ':')
	if colon < 0 {
		colon = len(field)
	}
	for _, c := range trimWSP(field[:colon]) {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	if colon < len(field) {
		value := field[colon+1:]
		first := true
		for i := 0; i < len(value); {
			for i < len(value) && isWSP(value[i]) {
				i++
			}
			j := i
			for j < len(value) && !isWSP(value[j]) {
				j++
			}
			if j > i {
				if !first {
					dst = append(dst, ' ')
				}
				dst = append(dst, value[i:j]...)
				first = false
			}
			i = j
		}
	}
	return append(dst, '\r', '\n')
}

// appendRelaxedBody appends the relaxed canonical form of a CRLF body (RFC 6376 section
// 3.4.4): white space runs become one space and go at line ends, empty lines at the end
// go, and a non-empty result ends with CRLF. A lone CR is kept as a line break byte, as
// go-msgauth does.
func appendRelaxedBody(dst, body []byte) []byte {
	start := len(dst)
	// Line breaks are held back until more text follows, so empty lines at the end go; the
	// white space between them goes anyway.
	var held [64]byte
	breaks := held[:0]
	wsp := false
	for i := 0; i < len(body); {
		switch c := body[i]; c {
		case ' ', '\t':
			wsp = true
			i++
		case '\r', '\n':
			wsp = false
			j := i
			for j < len(body) && (body[j] == '\r' || body[j] == '\n') {
				j++
			}
			breaks = append(breaks, body[i:j]...)
			i = j
		default:
			if len(breaks) > 0 {
				dst = append(dst, breaks...)
				breaks = breaks[:0]
			}
			if wsp {
				dst = append(dst, ' ')
				wsp = false
			}
			j := i + 1
			for j < len(body) && !isWSP(body[j]) {
				j++
			}
			dst = append(dst, body[i:j]...)
			i = j
		}
	}
	if len(dst) > start {
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// relaxedAsIs reports whether a CRLF body's relaxed canonical form is its first n bytes:
// when it has no tab, no run of spaces, no space at a line end, no lone CR (the white
// space relaxed canonicalization changes), and ends with a line break, empty lines after
// which are all that goes. Mail the servers write mostly is, and then needs no copy.
func relaxedAsIs(body []byte) (n int, ok bool) {
	if !bytes.HasSuffix(body, []byte("\r\n")) || bytes.IndexByte(body, '\t') >= 0 ||
		bytes.Contains(body, []byte("  ")) || bytes.Contains(body, []byte(" \r")) {
		return 0, false
	}
	// Every LF follows a CR (Sign made sure): more CRs than LFs is a lone CR.
	if bytes.Count(body, []byte("\r")) != bytes.Count(body, []byte("\n")) {
		return 0, false
	}
	n = len(body)
	for n >= 4 && string(body[n-4:n]) == "\r\n\r\n" {
		n -= 2
	}
	if n == 2 {
		return 0, true // nothing but line breaks: the canonical body is empty
	}
	return n, true
}

// hasBareLF reports whether msg has an LF without a CR before it.
func hasBareLF(msg []byte) bool {
	for i := bytes.IndexByte(msg, '\n'); i >= 0; {
		if i == 0 || msg[i-1] != '\r' {
			return true
		}
		next := bytes.IndexByte(msg[i+1:], '\n')
		if next < 0 {
			return false
		}
		i += 1 + next
	}
	return false
}

// appendCRLF appends msg with every bare LF made CRLF.
func appendCRLF(dst, msg []byte) []byte {
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			dst = append(dst, '\r')
		}
		dst = append(dst, c)
	}
	return dst
}

// validDNSName reports whether s is dot-separated labels of letters, digits, hyphens and
// underscores.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// DKIMRecord is a DNS TXT record to publish for a key.
type DKIMRecord struct {
	// Name is selector._domainkey.domain.
	Name string
	// Text is the record's value, "v=DKIM1; k=…; p=…". An RSA one is longer than the 255
	// characters of one DNS string: most DNS consoles split it themselves; in a zone file
	// it is written as several quoted strings one after the other.
	Text string
}

// Records returns the TXT records that verifiers look up for the signer's keys.
func (s *DKIMSigner) Records() []DKIMRecord {
	var out []DKIMRecord
	for _, k := range s.keys {
		text, _ := DKIMPublicRecord(k.signer) // the key was checked by NewDKIMSigner
		out = append(out, DKIMRecord{Name: k.selector + "._domainkey." + s.domain, Text: text})
	}
	return out
}

// DKIMPublicRecord returns the TXT record text that publishes key's public half:
// "v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo, base64>" or "v=DKIM1; k=ed25519; p=<the 32
// bytes, base64>". Returns an error for a key DKIM cannot use.
func DKIMPublicRecord(key crypto.Signer) (string, error) {
	algo, _, err := dkimAlgorithm(key)
	if err != nil {
		return "", err
	}
	var p []byte
	if pub, ok := key.Public().(ed25519.PublicKey); ok {
		p = pub
	} else if p, err = x509.MarshalPKIXPublicKey(key.Public()); err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	return "v=DKIM1; k=" + algo + "; p=" + base64.StdEncoding.EncodeToString(p), nil
}

// GenerateDKIMKey makes a new key, kind "rsa" (2048 bits) or "ed25519", and returns it with
// the TXT record text that publishes it. Returns an error for another kind.
func GenerateDKIMKey(kind string) (crypto.Signer, string, error) {
	var key crypto.Signer
	switch strings.ToLower(kind) {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, "", fmt.Errorf("dkim: generating an RSA key: %w", err)
		}
		key = k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", fmt.Errorf("dkim: generating an Ed25519 key: %w", err)
		}
		key = k
	default:
		return nil, "", fmt.Errorf("dkim: key kind %q: want rsa or ed25519", kind)
	}
	record, err := DKIMPublicRecord(key)
	return key, record, err
}

// EncodeDKIMKey returns key as a PKCS#8 PEM block ("PRIVATE KEY"), what LoadDKIMKey reads.
// Returns an error for a key DKIM cannot use.
func EncodeDKIMKey(key crypto.Signer) ([]byte, error) {
	if _, _, err := dkimAlgorithm(key); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadDKIMKey reads a private key from a PEM file: PKCS#8 ("PRIVATE KEY", RSA or Ed25519)
// or PKCS#1 ("RSA PRIVATE KEY"). Returns the file's error (wrapping fs.ErrNotExist when it
// is missing), or an error naming the file and saying what is wrong with its content.
func LoadDKIMKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	key, err := ParseDKIMKey(data)
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %w", path, err)
	}
	return key, nil
}

// ParseDKIMKey reads the one private key of PEM data, as LoadDKIMKey does; other blocks,
// such as its public key, are skipped.
func ParseDKIMKey(data []byte) (crypto.Signer, error) {
	var key crypto.Signer
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if key != nil {
			return nil, errors.New("more than one private key; give each key its own file")
		}
		if block.Headers["Proc-Type"] != "" || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the private key is encrypted; store it unencrypted, readable only by pointpost")
		}
		var parsed any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("a %q block: DKIM signs with RSA or Ed25519 keys (PKCS#8, or PKCS#1 for RSA)", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", block.Type, err)
		}
		signer, ok := parsed.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign", parsed)
		}
		if _, _, err := dkimAlgorithm(signer); err != nil {
			return nil, err
		}
		key = signer
	}
	if key == nil {
		return nil, errors.New("no PEM private key found")
	}
	return key, nil
}

// LoadOrCreateDKIMKey loads the key at path or, when there is no file there, generates one
// of kind ("rsa" or "ed25519") and writes it there, readable by its owner only; created
// says which happened. Returns LoadDKIMKey's errors for a file that is there (never
// replacing it), or the error of generating or writing the new one.
func LoadOrCreateDKIMKey(path, kind string) (key crypto.Signer, created bool, err error) {
	key, err = LoadDKIMKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	key, _, err = GenerateDKIMKey(kind)
	if err != nil {
		return nil, false, err
	}
	data, err := EncodeDKIMKey(key)
	if err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("dkim key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, fmt.Errorf("dkim key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("dkim key: %w", err)
	}
	return key, true, nil
}

// DKIMSender signs each message before handing it to Sender: for mail written outside the
// mail servers, such as Notices and test sends. A nil DKIM sends unsigned.
type DKIMSender struct {
	Sender Sender
	DKIM   *DKIMSigner
}

var _ Sender = (*DKIMSender)(nil)

// Send signs env's message and sends it. Returns the signing error (nothing is sent), or
// Sender's.
func (d *DKIMSender) Send(ctx context.Context, env *Envelope) error {
	if d.DKIM == nil {
		return d.Sender.Send(ctx, env)
	}
	data, err := d.DKIM.Sign(nil, env.Data)
	if err != nil {
		return err
	}
	signed := *env
	signed.Data = data
	return d.Sender.Send(ctx, &signed)
}

// Close closes Sender.
func (d *DKIMSender) Close() error { return d.Sender.Close() }
