package postoffice

import (
	"bytes"
	"encoding/base32"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func testKeyring(t testing.TB, current int, versions ...int) *Keyring {
	t.Helper()
	secrets := map[int][]byte{}
	for _, v := range versions {
		secrets[v] = bytes.Repeat([]byte{byte(v)}, 32)
	}
	k, err := NewKeyring(current, secrets)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTokenRoundTrip(t *testing.T) {
	k := testKeyring(t, 1, 1)
	edges := []int64{0, 1, 2, 255, 256, 1<<31 - 1, 1 << 31, MaxJobKey}
	consumers := []int64{0, 1, 1<<32 - 1, 1 << 32, 1<<39 + 7, MaxConsumerID}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		edges = append(edges, r.Int64N(MaxJobKey+1))
		consumers = append(consumers, r.Int64N(MaxConsumerID+1))
	}
	for i, job := range edges {
		for j, consumer := range consumers {
			if i > 8 && j > 6 && i != j {
				continue // edges against everything, random values pairwise
			}
			tok := k.Encode(job, consumer)
			if len(tok) != TokenLen || len(tok) > 40 {
				t.Fatalf("token %q has length %d", tok, len(tok))
			}
			gotJob, gotConsumer, err := k.Decode(tok)
			if err != nil || gotJob != job || gotConsumer != consumer {
				t.Fatalf("Decode(Encode(%d, %d)) = %d, %d, %v", job, consumer, gotJob, gotConsumer, err)
			}
		}
	}
}

func TestTokenFormat(t *testing.T) {
	k := testKeyring(t, 1, 1)
	tok := k.Encode(MaxJobKey, MaxConsumerID)
	if tok[0] != '1' {
		t.Errorf("version character %q, want '1'", tok[0])
	}
	// The body is standard base32 (lowercased, unpadded), so other tools can read it.
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(tok[1:]))
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; !bytes.Equal(raw[:9], want) || len(raw) != 19 {
		t.Errorf("payload % x", raw)
	}
	if got := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)); got != tok[1:] {
		t.Errorf("body %q, standard encoding %q", tok[1:], got)
	}
	// Versions run '1'..'9', 'a'..'z'.
	for v, c := range map[int]byte{9: '9', 10: 'a', 35: 'z'} {
		if got := testKeyring(t, v, v).Encode(1, 1)[0]; got != c {
			t.Errorf("version %d prefix %q, want %q", v, got, c)
		}
	}
}

func TestTokenEncodeRejectsOutOfRange(t *testing.T) {
	k := testKeyring(t, 1, 1)
	for _, ids := range [][2]int64{{-1, 0}, {0, -1}, {MaxJobKey + 1, 0}, {0, MaxConsumerID + 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Encode(%d, %d) did not panic", ids[0], ids[1])
				}
			}()
			k.Encode(ids[0], ids[1])
		}()
	}
}

func TestTokenEveryAlterationFails(t *testing.T) {
	k := testKeyring(t, 1, 1, 2)
	for _, ids := range [][2]int64{{7, 12345}, {0, 0}, {MaxJobKey, MaxConsumerID}} {
		tok := k.Encode(ids[0], ids[1])
		for i := range len(tok) {
			for c := range 256 {
				if byte(c) == tok[i] {
					continue
				}
				bad := tok[:i] + string([]byte{byte(c)}) + tok[i+1:]
				if _, _, err := k.Decode(bad); !errors.Is(err, ErrBadToken) {
					t.Fatalf("Decode(%q) (position %d changed) = %v, want ErrBadToken", bad, i, err)
				}
			}
		}
	}
}

func TestTokenStrict(t *testing.T) {
	k := testKeyring(t, 1, 1)
	tok := k.Encode(99, 123456)
	for _, bad := range []string{
		"",
		tok[:TokenLen-1],
		tok + "a",
		tok + "=",
		tok[:TokenLen-1] + "=",
		strings.ToUpper(tok),
		tok[:1] + strings.ToUpper(tok[1:]),
		"0" + tok[1:],
		"2" + tok[1:], // a version the keyring does not hold
		" " + tok[1:],
		tok[:TokenLen-1] + "\x00",
		strings.Repeat("a", TokenLen),
		strings.Repeat("\xff", TokenLen),
	} {
		if _, _, err := k.Decode(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("Decode(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}

func TestTokenUnusedBitsMustBeZero(t *testing.T) {
	// The last character carries 2 bits of MAC and 3 unused bits; a character that differs
	// only in the unused bits must not decode.
	k := testKeyring(t, 1, 1)
	tok := k.Encode(5, 6)
	last := strings.IndexByte(base32Alphabet, tok[TokenLen-1])
	for d := 1; d < 8; d++ {
		bad := tok[:TokenLen-1] + string(base32Alphabet[last|d])
		if bad == tok {
			continue
		}
		if _, _, err := k.Decode(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("Decode(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}

func TestTokenOtherKeyFails(t *testing.T) {
	a := testKeyring(t, 1, 1)
	b, err := NewKeyring(1, map[int][]byte{1: NewSecret()})
	if err != nil {
		t.Fatal(err)
	}
	tok := a.Encode(1, 2)
	if _, _, err := b.Decode(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("token from another key: %v", err)
	}
}

func TestTokenRotation(t *testing.T) {
	secret1, secret2 := NewSecret(), NewSecret()
	old, err := NewKeyring(1, map[int][]byte{1: secret1})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewKeyring(2, map[int][]byte{1: secret1, 2: secret2})
	if err != nil {
		t.Fatal(err)
	}
	oldTok := old.Encode(10, 20)
	newTok := rotated.Encode(10, 20)
	if newTok[0] != '2' || rotated.Current() != 2 {
		t.Errorf("rotated keyring signs with %q", newTok[0])
	}
	if job, consumer, err := rotated.Decode(oldTok); err != nil || job != 10 || consumer != 20 {
		t.Errorf("old token after rotation: %d, %d, %v", job, consumer, err)
	}
	if _, _, err := old.Decode(newTok); !errors.Is(err, ErrBadToken) {
		t.Errorf("new token on old keyring: %v", err)
	}
	// Once version 1 is retired its tokens stop verifying.
	retired, err := NewKeyring(2, map[int][]byte{2: secret2})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := retired.Decode(oldTok); !errors.Is(err, ErrBadToken) {
		t.Errorf("retired version: %v", err)
	}
	// The same version number with a different secret is a different key.
	forged := strings.Replace(oldTok, "1", "2", 1)
	if _, _, err := rotated.Decode(forged); !errors.Is(err, ErrBadToken) {
		t.Errorf("relabelled version: %v", err)
	}
}

func TestNewKeyringErrors(t *testing.T) {
	good := bytes.Repeat([]byte{1}, 16)
	for name, tt := range map[string]struct {
		current int
		secrets map[int][]byte
	}{
		"no secrets":        {1, nil},
		"current missing":   {2, map[int][]byte{1: good}},
		"version 0":         {0, map[int][]byte{0: good}},
		"version 36":        {36, map[int][]byte{36: good}},
		"negative":          {1, map[int][]byte{1: good, -1: good}},
		"short secret":      {1, map[int][]byte{1: good[:15]}},
		"short other":       {1, map[int][]byte{1: good, 2: {1, 2, 3}}},
		"empty current key": {1, map[int][]byte{1: nil}},
	} {
		if _, err := NewKeyring(tt.current, tt.secrets); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// The keyring keeps its own copy of the secrets.
	secret := bytes.Repeat([]byte{9}, 16)
	k, err := NewKeyring(1, map[int][]byte{1: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok := k.Encode(1, 1)
	secret[0] = 0
	if _, _, err := k.Decode(tok); err != nil {
		t.Errorf("changing the caller's secret broke the keyring: %v", err)
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Errorf("NewSecret: %x, %x", a, b)
	}
}

func TestTokenConcurrent(t *testing.T) {
	k := testKeyring(t, 2, 1, 2)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				job, consumer := int64(g), int64(i)
				tok := k.Encode(job, consumer)
				if j, c, err := k.Decode(tok); err != nil || j != job || c != consumer {
					t.Errorf("concurrent round trip %d, %d: %d, %d, %v", job, consumer, j, c, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestFindToken(t *testing.T) {
	k := testKeyring(t, 1, 1)
	tok := k.Encode(3, 4)
	tok2 := k.Encode(3, 5)
	tests := []struct {
		s    string
		want []string
	}{
		{"Hello Joe [#" + tok + "]", []string{tok}},
		{"Re: AW: Hello Joe [#" + tok + "]", []string{tok}},
		{"Fwd: RE: Re:" + tok, []string{tok}},
		{"Re: [#" + tok + "] Re: [#" + tok + "]", []string{tok}},
		{tok, []string{tok}},
		{"reply+" + tok + "@example.com", []string{tok}},
		{"<" + tok + "@pointpost>", []string{tok}},
		{"Re: " + tok + " and " + tok2, []string{tok, tok2}},
		{"Hello Joe", nil},
		{"", nil},
		// Glued to a longer word, cut short, or case-folded: not a token.
		{"Re: x" + tok, nil},
		{"Re: " + tok + "9", nil},
		{"Re: " + tok[:TokenLen-1], nil},
		{"Re: " + strings.ToUpper(tok), nil},
		// A word of the right length but the wrong alphabet.
		{"Re: " + strings.Repeat("0", TokenLen), nil},
		{"Re: 1" + strings.Repeat("8", TokenLen-1), nil},
		{"Grüße " + tok + "ü", []string{tok}},
	}
	for _, tt := range tests {
		got := FindToken(tt.s)
		if !slices.Equal(got, tt.want) {
			t.Errorf("FindToken(%q) = %q, want %q", tt.s, got, tt.want)
		}
		for _, c := range got {
			if _, _, err := k.Decode(c); err != nil {
				t.Errorf("candidate %q does not decode: %v", c, err)
			}
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	k := testKeyring(f, 1, 1, 35)
	tok := k.Encode(7, 1<<39)
	for _, s := range []string{
		tok,
		testKeyring(f, 35, 1, 35).Encode(MaxJobKey, MaxConsumerID),
		strings.ToUpper(tok),
		tok[:TokenLen-1] + "b",
		tok + "=",
		"",
		strings.Repeat("z", TokenLen),
		"Re: [#" + tok + "]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		job, consumer, err := k.Decode(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("Decode(%q) error %v is not ErrBadToken", s, err)
			}
		} else {
			// Only the canonical encoding verifies.
			if job < 0 || job > MaxJobKey || consumer < 0 || consumer > MaxConsumerID {
				t.Fatalf("Decode(%q) = %d, %d out of range", s, job, consumer)
			}
			if s[0] == '1' && k.Encode(job, consumer) != s {
				t.Fatalf("Decode(%q) = %d, %d, which encodes differently", s, job, consumer)
			}
		}
		// FindToken only returns token-shaped substrings of s.
		for _, c := range FindToken(s) {
			if len(c) != TokenLen || !strings.Contains(s, c) || !tokenShaped(c) {
				t.Fatalf("FindToken(%q) returned %q", s, c)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	k := testKeyring(b, 1, 1)
	b.ReportAllocs()
	var i int64
	for b.Loop() {
		i++
		_ = k.Encode(i&MaxJobKey, i)
	}
}

func BenchmarkEncodeParallel(b *testing.B) {
	k := testKeyring(b, 1, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var i int64
		for pb.Next() {
			i++
			_ = k.Encode(7, i)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	k := testKeyring(b, 1, 1)
	tok := k.Encode(7, 123456)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := k.Decode(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFindToken(b *testing.B) {
	k := testKeyring(b, 1, 1)
	s := "Re: AW: Fwd: POINTENTIALS January 1999 Edition, Happy New Year Joe [#" + k.Encode(7, 123456) + "]"
	b.ReportAllocs()
	for b.Loop() {
		_ = FindToken(s)
	}
}

// TestRotateKeyring: a given secret signs as the next version, or as its own version when
// it is already stored, and every stored version keeps verifying.
func TestRotateKeyring(t *testing.T) {
	s1, s2, given := NewSecret(), NewSecret(), NewSecret()
	stored := map[int][]byte{1: s1, 2: s2}
	old, err := RotateKeyring(2, stored, nil)
	if err != nil || old.Current() != 2 {
		t.Fatalf("no given secret: current %v, %v", old, err)
	}
	rotated, err := RotateKeyring(2, stored, given)
	if err != nil || rotated.Current() != 3 {
		t.Fatalf("a new secret signs as version 3: %v, %v", rotated, err)
	}
	if len(stored) != 2 {
		t.Errorf("the stored secrets grew to %d", len(stored))
	}
	if job, consumer, err := rotated.Decode(old.Encode(4, 5)); err != nil || job != 4 || consumer != 5 {
		t.Errorf("a stored version's token: %d, %d, %v", job, consumer, err)
	}
	again, err := RotateKeyring(2, stored, slices.Clone(s1))
	if err != nil || again.Current() != 1 {
		t.Errorf("a stored secret signs as its own version: %v, %v", again, err)
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{"", "zz", strings.Repeat("ab", 15), "not hex at all, not hex at all!!"} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) took it", bad)
		}
	}
	if b, err := ParseSecret(strings.Repeat("0f", 16)); err != nil || len(b) != 16 || b[0] != 0x0f {
		t.Errorf("ParseSecret of 32 hex characters: %x, %v", b, err)
	}
}
