package postoffice

import (
	"bytes"
	"math/rand/v2"
	"mime"
	"slices"
	"strings"
	"testing"
)

// The hostile-token test: mutations of genuine tokens, in the subjects and encodings mail
// clients produce, must never be accepted as a token; the genuine ones must still be.

// lookAlikes are characters mistaken for a token's: ASCII confusables keep the token's
// shape (the signature must catch them), the others are Unicode homoglyphs.
var lookAlikes = map[byte][]string{
	'a': {"а", "ɑ", "α"}, 'c': {"с", "ϲ"}, 'e': {"е", "ё"}, 'o': {"о", "ο", "0", "ө"}, 'p': {"р", "ρ"},
	'x': {"х", "χ"}, 'y': {"у", "γ"}, 'i': {"і", "1", "l", "ı"}, 'l': {"1", "I", "ӏ"}, 'b': {"6", "Ь"},
	's': {"5", "ѕ"}, 'z': {"2", "ᴢ"}, '1': {"l", "I", "１"}, '2': {"z", "２"}, '3': {"з", "ʒ"},
	'5': {"s", "５"}, '6': {"b", "б"}, '7': {"t", "７"}, 'g': {"9", "ɡ"}, 'q': {"9", "ԛ"},
	'k': {"κ", "к"}, 'm': {"rn", "м"}, 'n': {"п", "ո"}, 'u': {"υ", "ս"}, 'w': {"vv", "ѡ"},
}

// replyPrefixes are what mail clients put before a subject they answer or forward.
var replyPrefixes = []string{"Re: ", "RE: ", "Fwd: ", "FW: ", "AW: ", "WG: ", "SV: ", "Antw: ", "Re: Fwd: AW: ", "Re[2]: ", "回复: "}

// hostileMutation changes a subject carrying tok at offset at; it returns the new subject,
// the token as mutated when the mutation works on the token alone ("" otherwise), and
// whether the subject is RFC 2047 encoded and must be decoded first.
type hostileMutation struct {
	name string
	fn   func(rng *rand.Rand, subject string, at int, tok string, others []string) (mutated, token string, encoded bool)
}

// replaceToken puts m where the token was.
func replaceToken(subject string, at int, m string) string {
	return subject[:at] + m + subject[at+TokenLen:]
}

var hostileMutations = []hostileMutation{
	{"bit flip in the token", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		b := []byte(tok)
		for string(b) == tok { // two flips of one bit cancel
			for n := 1 + rng.IntN(3); n > 0; n-- {
				b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
			}
		}
		return replaceToken(s, at, string(b)), string(b), false
	}},
	{"bit flip anywhere", func(rng *rand.Rand, s string, _ int, _ string, _ []string) (string, string, bool) {
		b := []byte(s)
		b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
		return string(b), "", false
	}},
	{"substitution", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		b := []byte(tok)
		i := rng.IntN(len(b))
		for c := b[i]; c == b[i]; {
			b[i] = base32Alphabet[rng.IntN(len(base32Alphabet))]
		}
		return replaceToken(s, at, string(b)), string(b), false
	}},
	{"transposition", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		b := []byte(tok)
		i := rng.IntN(len(b) - 1)
		for b[i] == b[i+1] { // swapping equal characters changes nothing
			i = rng.IntN(len(b) - 1)
		}
		b[i], b[i+1] = b[i+1], b[i]
		return replaceToken(s, at, string(b)), string(b), false
	}},
	{"truncation", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		m := tok[:rng.IntN(TokenLen)]
		if rng.IntN(2) == 0 {
			m = tok[1+rng.IntN(TokenLen-1):]
		}
		return replaceToken(s, at, m), m, false
	}},
	{"extension", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		var extra []byte
		for n := 1 + rng.IntN(3); n > 0; n-- {
			extra = append(extra, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.IntN(62)])
		}
		m := tok + string(extra)
		if rng.IntN(2) == 0 {
			m = string(extra) + tok
		}
		return replaceToken(s, at, m), m, false
	}},
	{"case change", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		b := []byte(tok)
		changed := false
		for !changed {
			for i, c := range b {
				if 'a' <= c && c <= 'z' && rng.IntN(4) == 0 {
					b[i], changed = c-'a'+'A', true
				}
			}
		}
		if rng.IntN(8) == 0 {
			b = bytes.ToUpper([]byte(tok))
		}
		return replaceToken(s, at, string(b)), string(b), false
	}},
	{"look-alike character", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		var idx []int
		for i := 0; i < len(tok); i++ {
			if lookAlikes[tok[i]] != nil {
				idx = append(idx, i)
			}
		}
		m := tok
		for n := 1 + rng.IntN(2); n > 0 && len(idx) > 0; n-- {
			i := idx[rng.IntN(len(idx))]
			if i >= len(m) || lookAlikes[m[i]] == nil {
				continue
			}
			alts := lookAlikes[m[i]]
			m = m[:i] + alts[rng.IntN(len(alts))] + m[i+1:]
		}
		if m == tok { // no confusable character: swap the version for a look-alike
			m = "l" + tok[1:]
		}
		return replaceToken(s, at, m), m, false
	}},
	{"reply prefixes and a flip", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		b := []byte(tok)
		b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
		p := replyPrefixes[rng.IntN(len(replyPrefixes))]
		return p + replaceToken(s, at, string(b)), string(b), false
	}},
	{"reply prefixes alone", func(rng *rand.Rand, s string, _ int, _ string, _ []string) (string, string, bool) {
		var b strings.Builder
		for n := 1 + rng.IntN(4); n > 0; n-- {
			b.WriteString(replyPrefixes[rng.IntN(len(replyPrefixes))])
		}
		return b.String() + s, "", false
	}},
	{"RFC 2047 of a mutated token", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		b := []byte(tok)
		i := rng.IntN(len(b))
		for c := b[i]; c == b[i]; {
			b[i] = base32Alphabet[rng.IntN(len(base32Alphabet))]
		}
		m := replaceToken(s, at, string(b))
		enc := mime.BEncoding
		if rng.IntN(2) == 0 {
			enc = mime.QEncoding
		}
		return replyPrefixes[rng.IntN(len(replyPrefixes))] + enc.Encode("utf-8", m), string(b), true
	}},
	{"RFC 2047 text damaged", func(rng *rand.Rand, s string, _ int, _ string, _ []string) (string, string, bool) {
		enc := mime.BEncoding
		if rng.IntN(2) == 0 {
			enc = mime.QEncoding
		}
		e := []byte(enc.Encode("utf-8", s))
		// Damage the encoded text, not its =?utf-8?X? frame.
		i := len("=?utf-8?b?") + rng.IntN(len(e)-len("=?utf-8?b?")-2)
		e[i] ^= 1 << rng.IntN(7)
		return string(e), "", true
	}},
	{"folded inside the token", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		i := 1 + rng.IntN(TokenLen-1)
		fold := "\r\n "
		if rng.IntN(2) == 0 {
			fold = "\r\n\t"
		}
		return replaceToken(s, at, tok[:i]+fold+tok[i:]), "", false
	}},
	{"folded at a space", func(rng *rand.Rand, s string, _ int, _ string, _ []string) (string, string, bool) {
		var spaces []int
		for i := 0; i < len(s); i++ {
			if s[i] == ' ' {
				spaces = append(spaces, i)
			}
		}
		i := spaces[rng.IntN(len(spaces))]
		return s[:i] + "\r\n" + s[i:], "", false
	}},
	{"token of another secret", func(rng *rand.Rand, s string, at int, _ string, others []string) (string, string, bool) {
		m := others[rng.IntN(len(others))]
		return replaceToken(s, at, m), m, false
	}},
	{"version character swapped", func(rng *rand.Rand, s string, at int, tok string, _ []string) (string, string, bool) {
		m := tok
		for m == tok {
			m = string(versionAlphabet[rng.IntN(len(versionAlphabet))]) + tok[1:]
		}
		return replaceToken(s, at, m), m, false
	}},
}

// readSubject is what a reader of the reply does before looking for tokens: decode
// encoded-words and unfold (RFC 5322 removes the CRLF, keeps the white space). A subject
// that does not decode is taken as it is.
func readSubject(s string, encoded bool) string {
	if encoded {
		var d mime.WordDecoder
		if dec, err := d.DecodeHeader(s); err == nil {
			s = dec
		}
	}
	return strings.ReplaceAll(s, "\r\n", "")
}

// accepted is the tokens in s that verify.
func accepted(k *Keyring, s string) []string {
	var out []string
	for _, c := range FindToken(s) {
		if _, _, err := k.Decode(c); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// TestHostileTokens: 100,000 mutated genuine tokens are never accepted: Decode refuses the
// mutated token, and in the subject FindToken plus Decode finds nothing, or, where the
// mutation left the genuine token whole (a flip outside it, a reply prefix, a fold at a
// space), finds exactly the genuine token and nothing else. Every genuine token decodes,
// bare and in the subject forms a mail client makes of it.
func TestHostileTokens(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	secrets := map[int][]byte{1: bytes.Repeat([]byte{0x11}, 32), 2: bytes.Repeat([]byte{0x22}, 32)}
	signers := make([]*Keyring, 0, 2)
	for _, v := range []int{1, 2} {
		k, err := NewKeyring(v, secrets)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, k)
	}
	verifier := signers[1]
	// Other keyrings: the same versions with other secrets, and versions this one lacks.
	var foreign []*Keyring
	for _, v := range []int{1, 2, 3, 35} {
		k, err := NewKeyring(v, map[int][]byte{v: bytes.Repeat([]byte{byte(0x40 + v)}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		foreign = append(foreign, k)
	}
	rng := rand.New(rand.NewPCG(5, 100_000))
	stats := map[string][2]int{} // by mutation: refused, intact
	genuineForms := 0
	for i := range n {
		job, consumer := rng.Int64N(MaxJobKey+1), rng.Int64N(MaxConsumerID+1)
		if i%4 == 0 {
			job, consumer = rng.Int64N(100), rng.Int64N(10_000) // small ids, as real ones are
		}
		tok := signers[rng.IntN(2)].Encode(job, consumer)
		prefix := []string{"Zoë, points for you [#", "Points for you ", "Grüße, Zoë Smith: earn 5 points now — ", "["}[i%4]
		subject := prefix + tok + []string{"]", "", " (ends Friday)", "] ✓"}[i%4]
		at := len(prefix)

		// The genuine token decodes bare and in the forms a mail client makes.
		if j, c, err := verifier.Decode(tok); err != nil || j != job || c != consumer {
			t.Fatalf("genuine %s decodes to %d, %d, %v; want %d, %d", tok, j, c, err, job, consumer)
		}
		forms := genuineSubjectForms(rng, subject)
		// Three forms each keeps the test quick; every form is still tried ~30,000 times.
		for _, f := range []int{rng.IntN(len(forms)), rng.IntN(len(forms)), rng.IntN(len(forms))} {
			form := forms[f]()
			if got := accepted(verifier, readSubject(form.s, form.encoded)); !slices.Equal(got, []string{tok}) {
				t.Fatalf("genuine token %s in %q (%s) gives %q", tok, form.s, form.name, got)
			}
			genuineForms++
		}

		others := []string{foreign[rng.IntN(len(foreign))].Encode(job, consumer),
			foreign[rng.IntN(len(foreign))].Encode(rng.Int64N(MaxJobKey+1), rng.Int64N(MaxConsumerID+1))}
		mut := hostileMutations[i%len(hostileMutations)]
		mutated, mtok, encoded := mut.fn(rng, subject, at, tok, others)
		if mtok != "" && mtok != tok {
			if j, c, err := verifier.Decode(mtok); err == nil {
				t.Fatalf("%s: forged token %q accepted as job %d consumer %d (genuine %s)", mut.name, mtok, j, c, tok)
			}
		}
		read := readSubject(mutated, encoded)
		got := accepted(verifier, read)
		intact := slices.Contains(FindToken(read), tok)
		s := stats[mut.name]
		switch {
		case len(got) == 0 && !intact:
			s[0]++
		case intact && slices.Equal(got, []string{tok}):
			s[1]++
		default:
			t.Fatalf("%s: %q (read as %q) gives %q; the genuine %s is intact: %v", mut.name, mutated, read, got, tok, intact)
		}
		stats[mut.name] = s
	}
	refused, intact := 0, 0
	for _, m := range hostileMutations {
		s := stats[m.name]
		refused, intact = refused+s[0], intact+s[1]
		t.Logf("%-30s %6d refused, %5d left the genuine token intact", m.name, s[0], s[1])
	}
	t.Logf("%d mutations: %d refused, %d intact (accepted only as the genuine token), 0 forgeries; %d genuine subject forms all decode",
		refused+intact, refused, intact, genuineForms)
	// Mutations aimed at the token itself must all be refused.
	for _, name := range []string{"bit flip in the token", "substitution", "transposition", "RFC 2047 of a mutated token",
		"truncation", "extension", "case change", "look-alike character", "reply prefixes and a flip",
		"folded inside the token", "token of another secret", "version character swapped"} {
		if s := stats[name]; s[1] != 0 || s[0] == 0 {
			t.Errorf("%s: %d refused, %d intact", name, s[0], s[1])
		}
	}
	if s := stats["reply prefixes alone"]; s[0] != 0 {
		t.Errorf("a reply prefix alone lost the token %d times", s[0])
	}
}

type subjectForm struct {
	name    string
	s       string
	encoded bool
}

// genuineSubjectForms are what mail clients make of a subject when replying or forwarding;
// each is built only when called.
func genuineSubjectForms(rng *rand.Rand, subject string) []func() subjectForm {
	p := replyPrefixes[rng.IntN(len(replyPrefixes))]
	return []func() subjectForm{
		func() subjectForm { return subjectForm{"bare", subject, false} },
		func() subjectForm { return subjectForm{"reply", p + subject, false} },
		func() subjectForm { return subjectForm{"reply of a reply", "Re: " + p + "Re: " + subject, false} },
		func() subjectForm { return subjectForm{"B-encoded", mime.BEncoding.Encode("utf-8", subject), true} },
		func() subjectForm { return subjectForm{"Q-encoded", mime.QEncoding.Encode("utf-8", subject), true} },
		func() subjectForm {
			return subjectForm{"reply to B-encoded", p + mime.BEncoding.Encode("utf-8", subject), true}
		},
		// A long subject makes the encoder split it into several encoded-words, perhaps
		// inside the token; the decoder joins them.
		func() subjectForm {
			return subjectForm{"long Q-encoded", mime.QEncoding.Encode("utf-8",
				strings.Repeat("ü", rng.IntN(40))+subject+" "+strings.Repeat("ß", 30)), true}
		},
		func() subjectForm {
			return subjectForm{"long B-encoded", mime.BEncoding.Encode("utf-8", strings.Repeat("é", rng.IntN(40))+subject), true}
		},
		func() subjectForm {
			return subjectForm{"Latin-1 prefix", "=?iso-8859-1?q?AW:_Gr=FC=DFe?= " + subject, true}
		},
		func() subjectForm {
			i := strings.LastIndexByte(subject, ' ')
			return subjectForm{"folded", p + subject[:i] + "\r\n" + subject[i:], false}
		},
	}
}
