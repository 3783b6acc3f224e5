package postoffice

import (
	"mime"
	"slices"
	"strings"
	"testing"
)

// FuzzFindTokenInSubject puts a genuine token into an arbitrary subject, as the mail
// servers do, and reads it back as the receiver would, bare, behind a reply prefix and
// through RFC 2047 encoding: the token is always found and decodes to its ids, and nothing
// else in the subject verifies unless it was already there.
// Other targets: FuzzDecodeToken (token_test.go), FuzzParseTemplate (template_test.go),
// FuzzCheckSelection (selection_test.go).
func FuzzFindTokenInSubject(f *testing.F) {
	k := testKeyring(f, 2, 1, 2)
	for _, s := range [][2]string{
		{"Zoë, points for you [#", "]"},
		{"Re: AW: Fwd:", ""},
		{"=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "=?utf-8?b?w5w=?="},
		{"Undelivered Mail Returned to Sender", "(ends Friday)"},
		{"Delivery Status Notification (Failure)", "\r\n\t"},
		{"Automatic reply: ", "Out of office"},
		{"reply+", "@reply.acme.example"},
		{"1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"},
		{"", ""},
	} {
		f.Add(s[0], s[1], uint32(7), uint64(42))
	}
	f.Fuzz(func(t *testing.T, prefix, suffix string, job uint32, consumer uint64) {
		consumer &= MaxConsumerID
		tok := k.Encode(int64(job), int64(consumer))
		subject := prefix + " " + tok + " " + suffix
		forms := map[string]string{"bare": subject, "reply": "Re: " + subject}
		for name, enc := range map[string]mime.WordEncoder{"B": mime.BEncoding, "Q": mime.QEncoding} {
			e := enc.Encode("utf-8", subject)
			if e == subject {
				continue // nothing to encode: the bare form covers it
			}
			var d mime.WordDecoder
			dec, err := d.DecodeHeader(e)
			if err != nil {
				t.Fatalf("%s-encoded %q does not decode: %v", name, e, err)
			}
			forms[name] = dec
		}
		for name, s := range forms {
			found := FindToken(s)
			if !slices.Contains(found, tok) {
				t.Fatalf("%s: FindToken(%q) = %q, lacks %s", name, s, found, tok)
			}
			for _, c := range found {
				j, cons, err := k.Decode(c)
				if c == tok {
					if err != nil || j != int64(job) || cons != int64(consumer) {
						t.Fatalf("%s: %s decodes to %d, %d, %v", name, c, j, cons, err)
					}
					continue
				}
				if err == nil && !strings.Contains(prefix, c) && !strings.Contains(suffix, c) {
					t.Fatalf("%s: %q verifies but was not in the subject's text", name, c)
				}
			}
		}
	})
}
