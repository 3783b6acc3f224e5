package postoffice

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"
)

// An acknowledgement token names one delivery, a (job key, consumer id) pair, so a reply's
// subject, a reply+token@ address or a link can be traced back to it (the patent's
// "encrypted string"). It is authenticated, not secret: the ids are readable, but nobody can
// make a token for someone else's delivery without the key.
//
// Layout, TokenLen characters:
//
//	v                  key version 1..35 as one base36 character: '1'..'9', 'a'..'z'
//	base32(payload|mac) lowercase RFC 4648 base32, no padding, 31 characters, of
//	  payload  job key, 4 bytes big-endian, then consumer id, 5 bytes big-endian
//	  mac      HMAC-SHA256(secret[v], v || payload), first 10 bytes
//
// Only lowercase letters and digits, so it stays one word in a subject or an address's local
// part, where FindToken can pick it out.
const (
	// TokenLen is the length of every token.
	TokenLen = 1 + (tokenRawLen*8+4)/5
	// MaxJobKey and MaxConsumerID are the largest ids a token can carry.
	MaxJobKey     = 1<<32 - 1
	MaxConsumerID = 1<<40 - 1
	// MaxKeyVersion is the largest key version a one-character prefix can name.
	MaxKeyVersion = 35

	tokenPayloadLen = 4 + 5
	tokenMACLen     = 10
	tokenRawLen     = tokenPayloadLen + tokenMACLen
	// minSecretLen: shorter HMAC keys are guessable.
	minSecretLen = 16

	versionAlphabet = "123456789abcdefghijklmnopqrstuvwxyz"
	base32Alphabet  = "abcdefghijklmnopqrstuvwxyz234567"
)

// ErrBadToken is returned, wrapped with a detail, by Decode for any token that does not verify.
var ErrBadToken = errors.New("bad token")

// Keyring holds the token secrets by key version: the current one signs, and every one kept
// verifies, so keys can be rotated without breaking tokens already sent. Make one with
// NewKeyring; it is immutable and safe for concurrent use.
type Keyring struct {
	current int
	keys    [MaxKeyVersion + 1]*tokenKey // by version; index 0 unused
}

// tokenKey is one version's secret with a pool of HMACs keyed with it; a reset HMAC restores
// its precomputed pad state instead of rehashing the key.
type tokenKey struct {
	version byte // the prefix character
	pool    sync.Pool
}

type macState struct {
	h   hash.Hash
	in  [1 + tokenPayloadLen]byte
	sum [sha256.Size]byte
}

// NewKeyring returns a keyring that signs with secrets[current] and verifies with any of
// secrets. Versions run 1..MaxKeyVersion and each secret must be at least 16 bytes; the
// secrets are copied.
func NewKeyring(current int, secrets map[int][]byte) (*Keyring, error) {
	k := &Keyring{current: current}
	for v, secret := range secrets {
		if v < 1 || v > MaxKeyVersion {
			return nil, fmt.Errorf("token key version %d is not between 1 and %d", v, MaxKeyVersion)
		}
		if len(secret) < minSecretLen {
			return nil, fmt.Errorf("token key version %d: secret is %d bytes, want at least %d", v, len(secret), minSecretLen)
		}
		secret := slices.Clone(secret)
		key := &tokenKey{version: versionAlphabet[v-1]}
		key.pool.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
		k.keys[v] = key
	}
	if current < 1 || current > MaxKeyVersion || k.keys[current] == nil {
		return nil, fmt.Errorf("token key version %d has no secret", current)
	}
	return k, nil
}

// ParseSecret reads a token secret written in hexadecimal, as an operator gives one.
// Returns an error if it is not hexadecimal or holds fewer than 16 bytes.
func ParseSecret(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < minSecretLen {
		return nil, fmt.Errorf("must be at least %d hexadecimal characters", 2*minSecretLen)
	}
	return b, nil
}

// RotateKeyring returns the keyring of the stored secrets in which given signs new tokens,
// while every stored version still verifies the tokens already sent. given signs as the
// version it already has among the stored secrets, or else as the version after the newest;
// it is not added to secrets. A nil given leaves current signing.
func RotateKeyring(current int, secrets map[int][]byte, given []byte) (*Keyring, error) {
	if given == nil {
		return NewKeyring(current, secrets)
	}
	all := make(map[int][]byte, len(secrets)+1)
	newest := 0
	for v, s := range secrets {
		all[v] = s
		newest = max(newest, v)
		if bytes.Equal(s, given) {
			return NewKeyring(v, secrets)
		}
	}
	all[newest+1] = given
	return NewKeyring(newest+1, all)
}

// NewSecret returns 32 random bytes for a new key version.
func NewSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // since Go 1.24 rand.Read never returns an error: it crashes instead
	return b
}

// Current is the key version Encode signs with.
func (k *Keyring) Current() int { return k.current }

// Encode returns the token for a delivery of job to consumer, signed with the current key.
// It panics if job is outside 0..MaxJobKey or consumer outside 0..MaxConsumerID: such a
// token could not name the delivery, and sending it would lose the acknowledgement.
func (k *Keyring) Encode(job, consumer int64) string {
	if job < 0 || job > MaxJobKey || consumer < 0 || consumer > MaxConsumerID {
		panic(fmt.Sprintf("postoffice: token ids out of range: job %d, consumer %d", job, consumer))
	}
	key := k.keys[k.current]
	var raw [tokenRawLen]byte
	raw[0], raw[1], raw[2], raw[3] = byte(job>>24), byte(job>>16), byte(job>>8), byte(job)
	raw[4], raw[5], raw[6], raw[7], raw[8] = byte(consumer>>32), byte(consumer>>24), byte(consumer>>16), byte(consumer>>8), byte(consumer)
	key.mac((*[tokenPayloadLen]byte)(raw[:tokenPayloadLen]), (*[tokenMACLen]byte)(raw[tokenPayloadLen:]))

	var out [TokenLen]byte
	out[0] = key.version
	encodeBase32(out[1:], raw[:])
	return string(out[:])
}

// Decode returns the job key and consumer id a token names. Returns an error wrapping
// ErrBadToken unless token is exactly as Encode made it with a key the keyring holds.
func (k *Keyring) Decode(token string) (job, consumer int64, err error) {
	if len(token) != TokenLen {
		return 0, 0, fmt.Errorf("%w: length %d, want %d", ErrBadToken, len(token), TokenLen)
	}
	v := versionValue(token[0])
	if v == 0 {
		return 0, 0, fmt.Errorf("%w: bad key version character", ErrBadToken)
	}
	key := k.keys[v]
	if key == nil {
		return 0, 0, fmt.Errorf("%w: unknown key version %d", ErrBadToken, v)
	}
	var raw [tokenRawLen]byte
	if !decodeBase32(raw[:], token[1:]) {
		return 0, 0, fmt.Errorf("%w: not lowercase base32", ErrBadToken)
	}
	var mac [tokenMACLen]byte
	key.mac((*[tokenPayloadLen]byte)(raw[:tokenPayloadLen]), &mac)
	if !hmac.Equal(mac[:], raw[tokenPayloadLen:]) {
		return 0, 0, fmt.Errorf("%w: signature does not match", ErrBadToken)
	}
	job = int64(raw[0])<<24 | int64(raw[1])<<16 | int64(raw[2])<<8 | int64(raw[3])
	consumer = int64(raw[4])<<32 | int64(raw[5])<<24 | int64(raw[6])<<16 | int64(raw[7])<<8 | int64(raw[8])
	return job, consumer, nil
}

// mac writes the truncated HMAC of version || payload into out.
func (key *tokenKey) mac(payload *[tokenPayloadLen]byte, out *[tokenMACLen]byte) {
	st := key.pool.Get().(*macState)
	st.h.Reset()
	st.in[0] = key.version
	copy(st.in[1:], payload[:])
	st.h.Write(st.in[:])
	st.h.Sum(st.sum[:0])
	copy(out[:], st.sum[:])
	key.pool.Put(st)
}

// versionValue returns the key version a prefix character names, or 0.
func versionValue(c byte) int {
	switch {
	case '1' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 10
	}
	return 0
}

// encodeBase32 writes src as unpadded lowercase base32 into dst, which must be long enough.
func encodeBase32(dst []byte, src []byte) {
	var acc uint32
	bits, j := 0, 0
	for _, b := range src {
		acc = acc<<8 | uint32(b)
		bits += 8
		for bits >= 5 {
			bits -= 5
			dst[j] = base32Alphabet[acc>>bits&31]
			j++
		}
	}
	if bits > 0 {
		dst[j] = base32Alphabet[acc<<(5-bits)&31]
	}
}

// decodeBase32 is encodeBase32's inverse for len(dst) bytes. It accepts only the one
// encoding Encode produces: lowercase, no padding, and zero in the unused low bits of the last
// character, so no two strings decode to the same token.
func decodeBase32(dst []byte, src string) bool {
	if len(src) != (len(dst)*8+4)/5 {
		return false
	}
	var acc uint32
	bits, j := 0, 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		var d byte
		switch {
		case 'a' <= c && c <= 'z':
			d = c - 'a'
		case '2' <= c && c <= '7':
			d = c - '2' + 26
		default:
			return false
		}
		acc = acc<<5 | uint32(d)
		bits += 5
		if bits >= 8 {
			bits -= 8
			dst[j] = byte(acc >> bits)
			j++
		}
	}
	return acc&(1<<bits-1) == 0
}

// FindToken returns the candidate tokens in s, such as a reply's subject ("Re: AW: Hello Joe
// [#1abc…]") or address ("reply+1abc…@example.com"), in order and without repeats. A
// candidate is a whole run of ASCII letters and digits of exactly TokenLen that has a token's
// shape; the caller verifies it with Decode. MIME encoded-words must be decoded first.
func FindToken(s string) []string {
	var found []string
	for i := 0; i < len(s); {
		if !isAlnum(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && isAlnum(s[j]) {
			j++
		}
		if cand := s[i:j]; len(cand) == TokenLen && tokenShaped(cand) && !slices.Contains(found, cand) {
			found = append(found, cand)
		}
		i = j
	}
	return found
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// tokenShaped reports whether s is a version character followed by base32 characters.
func tokenShaped(s string) bool {
	if versionValue(s[0]) == 0 {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}
