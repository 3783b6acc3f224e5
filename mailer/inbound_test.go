package mailer

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"pointpost/postoffice"
)

// inboundKeyring signs the tokens of the receiver's tests.
func inboundKeyring(t testing.TB) *postoffice.Keyring {
	t.Helper()
	k, err := postoffice.NewKeyring(1, map[int][]byte{1: []byte("receiver-tests-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wireCRLF turns a Go string into a message with CRLF line ends.
func wireCRLF(s string) []byte {
	return []byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))
}

// qWord is s as the text of a "Q" encoded word.
func qWord(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
			b.WriteByte('_')
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

func parseInboundT(t *testing.T, data []byte, from string, rcpts ...string) *Inbound {
	t.Helper()
	in, err := ParseInbound(data, from, rcpts)
	if err != nil {
		t.Fatalf("ParseInbound: %v", err)
	}
	return in
}

func TestParseInboundFindsTokenInEachPlace(t *testing.T) {
	k := inboundKeyring(t)
	tok := k.Encode(7, 42)
	other := k.Encode(8, 43)
	third := k.Encode(9, 44)
	// An encoded subject split into two encoded words across a fold, the token itself cut
	// in the middle: only decoding and joining them gives it back.
	subject := "Re: AW: Fwd: Grüße, Jörg [#" + tok + "]"
	cut := strings.Index(subject, tok) + 10
	encoded := "=?utf-8?q?" + qWord(subject[:cut]) + "?=\r\n =?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(subject[cut:])) + "?="
	latin1 := "=?iso-8859-1?q?Re=3A_Gr=FC=DFe_=5B#" + tok + "=5D?="

	tests := []struct {
		name    string
		header  string
		rcpts   []string
		want    []string
		subject string
		kind    InboundKind // reply if empty
	}{
		{name: "subject behind prefixes", header: "Subject: Re: AW: Fwd: WG: RE: Hello Joe [#" + tok + "]\n",
			rcpts: []string{"somebody@reply.example"}, want: []string{tok}, subject: "Re: AW: Fwd: WG: RE: Hello Joe [#" + tok + "]"},
		{name: "subject RFC 2047 encoded and folded", header: "Subject: " + encoded + "\n",
			rcpts: []string{"somebody@reply.example"}, want: []string{tok}, subject: subject},
		{name: "subject in Latin-1", header: "Subject: " + latin1 + "\n", want: []string{tok}, subject: "Re: Grüße [#" + tok + "]"},
		{name: "subject folded plain", header: "Subject: Re: a long subject that someone's client\n folded [#" + tok + "]\n", want: []string{tok}},
		{name: "only In-Reply-To", header: "Subject: Re: Hello\nIn-Reply-To: <" + tok + "@reply.example>\n", want: []string{tok}},
		{name: "only References", header: "Subject: Re: Hello\nReferences: <CAF=abc@mail.example.com>\n <" + tok + "@reply.example>\n", want: []string{tok}},
		{name: "only reply+ address", header: "Subject: Hello\n", rcpts: []string{"reply+" + tok + "@reply.example"}, want: []string{tok}},
		{name: "reply+ address upper-cased by an MTA", header: "Subject: Hello\n", rcpts: []string{"REPLY+" + strings.ToUpper(tok) + "@REPLY.EXAMPLE"}, want: []string{tok}},
		{name: "unsubscribe+ address", header: "Subject: unsubscribe\n", rcpts: []string{"unsubscribe+" + tok + "@reply.example"}, want: []string{tok}, kind: KindUnsubscribe},
		{name: "order: subject, In-Reply-To, address", header: "Subject: Re: Hi [#" + tok + "]\nIn-Reply-To: <" + other + "@reply.example>\n",
			rcpts: []string{"reply+" + third + "@reply.example"}, want: []string{tok, other, third}},
		{name: "repeats once", header: "Subject: Re: Hi [#" + tok + "]\nIn-Reply-To: <" + tok + "@reply.example>\n",
			rcpts: []string{"reply+" + tok + "@reply.example"}, want: []string{tok}},
		{name: "none", header: "Subject: Re: Hi\nIn-Reply-To: <CAF=abc@mail.example.com>\n", rcpts: []string{"reply@reply.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := wireCRLF("From: Joe <joe@example.com>\nTo: <reply@reply.example>\nMessage-ID: <m1@example.com>\n" +
				tt.header + "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nYes please!\n")
			in := parseInboundT(t, msg, "joe@example.com", tt.rcpts...)
			if want := cmp.Or(tt.kind, KindReply); in.Kind != want {
				t.Errorf("kind %s (%s), want %s", in.Kind, in.Reason, want)
			}
			if !slices.Equal(in.Tokens, tt.want) {
				t.Errorf("tokens %q, want %q", in.Tokens, tt.want)
			}
			if tt.subject != "" && in.Subject != tt.subject {
				t.Errorf("subject %q, want %q", in.Subject, tt.subject)
			}
			if in.MessageID != "m1@example.com" || in.From != "joe@example.com" {
				t.Errorf("message-id %q from %q", in.MessageID, in.From)
			}
			for _, c := range in.Tokens {
				if _, _, err := k.Decode(c); err != nil {
					t.Errorf("candidate %q does not verify: %v", c, err)
				}
			}
		})
	}
}

func TestParseInboundClassifies(t *testing.T) {
	k := inboundKeyring(t)
	tok := k.Encode(7, 42)
	const plain = "MIME-Version: 1.0\nContent-Type: text/plain\n\nHello\n"
	tests := []struct {
		name   string
		from   string // envelope
		rcpt   string
		msg    string
		want   InboundKind
		orig   []string // OriginalTokens
		reason string   // a part of Reason
	}{
		{name: "plain reply", from: "joe@example.com", msg: "From: joe@example.com\nSubject: Re: Hi [#" + tok + "]\n" + plain, want: KindReply},
		{name: "Auto-Submitted: no is a person", from: "joe@example.com", msg: "From: joe@example.com\nAuto-Submitted: no\nSubject: Re: Hi\n" + plain, want: KindReply},
		{name: "Auto-Submitted: auto-replied", from: "joe@example.com", msg: "From: joe@example.com\nAuto-Submitted: auto-replied\nSubject: Re: Hi [#" + tok + "]\n" + plain, want: KindAutoReply, reason: "Auto-Submitted"},
		{name: "Auto-Submitted: auto-generated", from: "joe@example.com", msg: "From: joe@example.com\nAuto-Submitted: Auto-Generated; owner-email=x@y\nSubject: Hi\n" + plain, want: KindAutoReply},
		{name: "X-Autoreply", from: "joe@example.com", msg: "From: joe@example.com\nX-Autoreply: yes\nSubject: Re: Hi\n" + plain, want: KindAutoReply},
		{name: "X-Autorespond", from: "joe@example.com", msg: "From: joe@example.com\nX-Autorespond: Hi\nSubject: Re: Hi\n" + plain, want: KindAutoReply},
		{name: "Precedence auto_reply", from: "joe@example.com", msg: "From: joe@example.com\nPrecedence: auto_reply\nSubject: Re: Hi\n" + plain, want: KindAutoReply},
		{name: "vacation subject", from: "joe@example.com", msg: "From: joe@example.com\nSubject: Out of Office: Hi [#" + tok + "]\n" + plain, want: KindAutoReply},
		{name: "Abwesenheitsnotiz", from: "joe@example.com", msg: "From: joe@example.com\nSubject: Abwesenheitsnotiz: Hallo\n" + plain, want: KindAutoReply},
		{name: "null sender, no failure text", from: "", msg: "From: joe@example.com\nSubject: Re: Hi\n" + plain, want: KindAutoReply, reason: "null envelope sender"},
		{name: "null sender written <>", from: "<>", msg: "From: joe@example.com\nSubject: Re: Hi\n" + plain, want: KindAutoReply},
		{name: "read receipt", from: "joe@example.com", msg: "From: joe@example.com\nSubject: Read: Hi\nContent-Type: multipart/report; report-type=disposition-notification; boundary=b\n\n--b\nContent-Type: text/plain\n\nRead.\n--b--\n", want: KindAutoReply},
		{name: "From MAILER-DAEMON", from: "", msg: "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\nSubject: Hi\n" + plain, want: KindBounce},
		{name: "From postmaster, not parsable", from: "x@y", msg: "From: postmaster (Mail Delivery System)\nSubject: Hi\n" + plain, want: KindBounce},
		{name: "Undelivered Mail Returned to Sender", from: "x@y", msg: "From: someone@mx.example\nSubject: Undelivered Mail Returned to Sender\n" + plain, want: KindBounce},
		{name: "Delivery Status Notification (Failure)", from: "x@y", msg: "From: someone@mx.example\nSubject: Delivery Status Notification (Failure)\n" + plain, want: KindBounce},
		{name: "Mail delivery failed", from: "x@y", msg: "From: someone@mx.example\nSubject: Mail delivery failed: returning message to sender\n" + plain, want: KindBounce},
		{name: "null sender and failure text", from: "", msg: "From: robot@mx.example\nSubject: Hi\n\nYour message could not be delivered.\n", want: KindBounce},
		{name: "DSN returns our message", from: "", msg: "From: MAILER-DAEMON@mx.example\nSubject: Returned\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n" +
			"--b\nContent-Type: text/plain\n\nSorry.\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; joe@example.com\nAction: failed\nStatus: 5.1.1\n" +
			"--b\nContent-Type: text/rfc822-headers\n\nFrom: rewards@acme.example\nSubject: Hello Joe [#" + tok + "]\nMessage-ID: <" + tok + "@reply.example>\n--b--\n",
			want: KindBounce, orig: []string{tok}, reason: "report-type=delivery-status"},
		{name: "ARF report", from: "fbl@isp.example", msg: "From: fbl@isp.example\nSubject: FW: Hello\n" +
			"Content-Type: multipart/report; report-type=\"feedback-report\"; boundary=\"b\"\n\n" +
			"--b\nContent-Type: text/plain\n\nA complaint.\n--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nVersion: 1\n" +
			"--b\nContent-Type: message/rfc822\n\nFrom: rewards@acme.example\nSubject: Hello Joe [#" + tok + "]\nMessage-ID: <" + tok + "@reply.example>\n\nBody\n--b--\n",
			want: KindComplaint, orig: []string{tok}},
		{name: "unsubscribe address", from: "joe@example.com", rcpt: "unsubscribe+" + tok + "@reply.example", msg: "From: joe@example.com\nSubject: unsubscribe\n" + plain, want: KindUnsubscribe},
		{name: "Apple Mail unsubscribe", from: "joe@example.com", msg: "From: joe@example.com\nAuto-Submitted: auto-replied\nX-Apple-Unsubscribe: true\nSubject: unsubscribe\n" + plain, want: KindUnsubscribe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rcpts []string
			if tt.rcpt != "" {
				rcpts = []string{tt.rcpt}
			}
			in := parseInboundT(t, wireCRLF(tt.msg), tt.from, rcpts...)
			if in.Kind != tt.want {
				t.Errorf("kind %s (%s), want %s", in.Kind, in.Reason, tt.want)
			}
			if tt.reason != "" && !strings.Contains(in.Reason, tt.reason) {
				t.Errorf("reason %q, want it to mention %q", in.Reason, tt.reason)
			}
			if !slices.Equal(in.OriginalTokens, tt.orig) {
				t.Errorf("original tokens %q, want %q", in.OriginalTokens, tt.orig)
			}
		})
	}
}

func TestParseInboundBrokenMIME(t *testing.T) {
	deep := "From: joe@example.com\nSubject: Re: Hi\n"
	for i := 0; i < 40; i++ {
		deep += fmt.Sprintf("Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
	}
	deep += "Content-Type: text/plain\n\nHi\n"
	many := "From: joe@example.com\nSubject: Re: Hi\nContent-Type: multipart/mixed; boundary=b\n\n" +
		strings.Repeat("--b\nContent-Type: text/plain\n\nx\n", maxInboundParts+5) + "--b--\n"
	tests := []struct {
		name    string
		msg     string
		wantErr bool
	}{
		{name: "empty", msg: "", wantErr: true},
		{name: "only a blank line", msg: "\n\nHello\n", wantErr: true},
		{name: "not a header", msg: "this is not a mail message\nat all\n", wantErr: true},
		{name: "binary", msg: "\x00\x01\x02\xff\xfe:\x00\n\n\x00", wantErr: true},
		{name: "multipart without boundary", msg: "From: joe@example.com\nSubject: Re: Hi\nContent-Type: multipart/mixed\n\n--x\n\nHi\n"},
		{name: "malformed multipart Content-Type", msg: "From: joe@example.com\nSubject: Re: Hi\nContent-Type: multipart/mixed; boundary=\"unterminated\n\n--x\n"},
		{name: "malformed part header", msg: "From: joe@example.com\nSubject: Re: Hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\nthis line is no header field\n\nHi\n--b--\n"},
		{name: "nested too deep", msg: deep},
		{name: "too many parts", msg: many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInbound(wireCRLF(tt.msg), "joe@example.com", []string{"reply@reply.example"})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error; kind %s", in.Kind)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v, want kind unknown", err)
			}
			if in.Kind != KindUnknown || !strings.HasPrefix(in.Reason, "broken MIME") {
				t.Errorf("kind %s (%s), want unknown", in.Kind, in.Reason)
			}
		})
	}

	// Tolerated: a missing closing boundary (bounces often cut the returned message short),
	// an unknown charset or transfer encoding, a header with no body.
	for name, msg := range map[string]string{
		"no closing boundary": "From: joe@example.com\nSubject: Re: Hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nHi\n",
		"unknown charset":     "From: joe@example.com\nSubject: Re: Hi\nContent-Type: text/plain; charset=x-klingon\n\nHi\n",
		"unknown encoding":    "From: joe@example.com\nSubject: Re: Hi\nContent-Transfer-Encoding: x-uuencode\n\nHi\n",
		"header only":         "From: joe@example.com\nSubject: Re: Hi\n",
		"bad base64":          "From: joe@example.com\nSubject: Re: Hi\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!\n",
		"LF line ends":        "From: joe@example.com\nSubject: Re: Hi\n\nHi\n",
	} {
		data := wireCRLF(msg)
		if name == "LF line ends" {
			data = []byte(msg)
		}
		in, err := ParseInbound(data, "joe@example.com", nil)
		if err != nil || in.Kind != KindReply {
			t.Errorf("%s: kind %v err %v, want a reply", name, in, err)
		}
	}
}

// returnPathRE finds the envelope sender a saved message records.
var returnPathRE = regexp.MustCompile(`(?mi)^Return-Path:[ \t]*<?([^>\s]*)>?`)

func returnPathOf(data []byte) string {
	if m := returnPathRE.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return "sender@example.org"
}

func TestParseInboundTestdata(t *testing.T) {
	for file, want := range map[string]InboundKind{
		"lhost-postfix-01.eml": KindBounce,
		"lhost-qmail-01.eml":   KindBounce,
		"arf-01.eml":           KindComplaint,
		"rfc3834-01.eml":       KindAutoReply,
		"is-not-bounce-01.eml": KindReply,
	} {
		data, err := os.ReadFile(filepath.Join("testdata", "inbound", file))
		if err != nil {
			t.Fatal(err)
		}
		in := parseInboundT(t, data, returnPathOf(data))
		if in.Kind != want {
			t.Errorf("%s: %s (%s), want %s", file, in.Kind, in.Reason, want)
		}
	}
}

// sisimaiCorpus holds Sisimai's set of real bounces, complaints and auto-replies, shared by the
// project beside the repository (shared/ next to it); the test skips when it is not there.
const sisimaiCorpus = "../../shared/corpus/set-of-emails/maildir"

// Corpus messages a person sent, so a reply is right: each forwards a bounce by hand.
var sisimaiReplies = map[string]string{
	"bsd/lhost-sendmail-14.eml": "a person forwarding a bounce (Fwd: Returned mail)",
	"err/make-test-36.eml":      "a person forwarding a bounce (Fwd: Returned mail)",
	"not/is-not-bounce-01.eml":  "a person's message",
	"not/is-not-bounce-02.eml":  "a person's message with one attached",
}

func TestParseInboundCorpus(t *testing.T) {
	if _, err := os.Stat(sisimaiCorpus); err != nil {
		t.Skipf("corpus not here: %v", err)
	}
	type tally map[InboundKind]int
	counts := map[string]tally{}
	var notBounce []string
	total := 0
	for _, dir := range []string{"bsd", "not", "err"} {
		files, err := filepath.Glob(filepath.Join(sisimaiCorpus, dir, "*.eml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %d files, %v", dir, len(files), err)
		}
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			total++
			name := dir + "/" + filepath.Base(path)
			group := dir + "/" + strings.SplitN(filepath.Base(path), "-", 2)[0]
			if counts[group] == nil {
				counts[group] = tally{}
			}
			in, err := ParseInbound(data, returnPathOf(data), nil)
			if err != nil {
				counts[group]["error"]++
				t.Errorf("%s: %v", name, err)
				continue
			}
			counts[group][in.Kind]++
			base := filepath.Base(path)
			switch {
			case in.Kind == KindReply && sisimaiReplies[name] != "":
			case in.Kind == KindReply:
				t.Errorf("%s: classified a reply; it is not (%s)", name, in.Subject)
			case in.Kind != KindReply && sisimaiReplies[name] != "":
				t.Errorf("%s: %s (%s), want reply: %s", name, in.Kind, in.Reason, sisimaiReplies[name])
			case strings.HasPrefix(base, "rfc3834-") && in.Kind != KindAutoReply:
				t.Errorf("%s: %s (%s), want auto-reply", name, in.Kind, in.Reason)
			case base == "arf-26.eml" && in.Kind != KindUnsubscribe:
				// Apple Mail's unsubscribe message, not an abuse report.
				t.Errorf("%s: %s (%s), want unsubscribe", name, in.Kind, in.Reason)
			case strings.HasPrefix(base, "arf-") && base != "arf-26.eml" && in.Kind != KindComplaint:
				t.Errorf("%s: %s (%s), want complaint", name, in.Kind, in.Reason)
			case (strings.HasPrefix(base, "lhost-") || strings.HasPrefix(base, "rhost-") || strings.HasPrefix(base, "rfc3464-")) && in.Kind != KindBounce:
				notBounce = append(notBounce, fmt.Sprintf("%s: %s (%s)", name, in.Kind, in.Reason))
			}
		}
	}
	groups := make([]string, 0, len(counts))
	for g := range counts {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	all := tally{}
	for _, g := range groups {
		var parts []string
		for _, k := range []InboundKind{KindBounce, KindComplaint, KindAutoReply, KindUnsubscribe, KindReply, KindUnknown, "error"} {
			if n := counts[g][k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, n))
				all[k] += n
			}
		}
		t.Logf("%-12s %s", g, strings.Join(parts, ", "))
	}
	t.Logf("all %d: %v", total, all)
	for _, s := range notBounce {
		t.Logf("not a bounce: %s", s)
	}
	// A few lhost- messages are an MTA's other notices (a delivery receipt, a mailing list's
	// refusal); they must still never pass for a reply, which the loop checks.
	if len(notBounce) > 10 {
		t.Errorf("%d lhost-/rhost-/rfc3464- messages not classified as bounces", len(notBounce))
	}
}

// FuzzParseInbound: no input makes ParseInbound panic, and what it returns is consistent.
func FuzzParseInbound(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "inbound", "*.eml"))
	for _, path := range files {
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data, "")
		}
	}
	f.Add(wireCRLF("From: a@b\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nSubject: x\n--b--\n"), "a@b")
	f.Add(wireCRLF("Subject: =?utf-8?b?////?=\nIn-Reply-To: <<>>@@\n\n"), "a@b")
	f.Fuzz(func(t *testing.T, data []byte, from string) {
		in, err := ParseInbound(data, from, []string{"reply+x@reply.example"})
		if err != nil {
			if in != nil {
				t.Fatal("an error and an Inbound")
			}
			return
		}
		switch in.Kind {
		case KindReply, KindAutoReply, KindBounce, KindComplaint, KindUnsubscribe, KindUnknown:
		default:
			t.Fatalf("kind %q", in.Kind)
		}
	})
}
