package mailer

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// sisimaiCorpus holds Sisimai's set of real bounces, delay warnings, complaints and
// auto-replies (testdata/set-of-emails/README.md says where from, under which licence).
const sisimaiCorpus = "testdata/set-of-emails/maildir"

// Corpus messages a person sent, so a reply is right: each forwards a bounce by hand.
var sisimaiReplies = map[string]string{
	"bsd/lhost-sendmail-14.eml": "a person forwarding a bounce (Fwd: Returned mail)",
	"err/make-test-36.eml":      "a person forwarding a bounce (Fwd: Returned mail)",
	"not/is-not-bounce-01.eml":  "a person's message",
	"not/is-not-bounce-02.eml":  "a person's message with one attached",
}

// corpusFiles are the corpus messages, "dir/name" to path.
func corpusFiles(t testing.TB) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, dir := range []string{"bsd", "dos", "mac", "err", "not"} {
		paths, err := filepath.Glob(filepath.Join(sisimaiCorpus, dir, "*.eml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			files[dir+"/"+filepath.Base(p)] = p
		}
	}
	if len(files) < 600 {
		t.Fatalf("only %d corpus files", len(files))
	}
	return files
}

// expectedKind is what a corpus file's name says it is: "arf-*" a complaint, "lhost-*",
// "rhost-*" (named after the MTA that bounced) and "rfc3464-*" bounces, "rfc3834-*"
// auto-replies; "" for the rest (err/make-test-* are bounces split out of an mbox, without a
// name saying which; not/rb-issue-368-bug.eml is in fact a mailbox-full bounce).
func expectedKind(name string) InboundKind {
	base := filepath.Base(name)
	switch {
	case sisimaiReplies[name] != "":
		return KindReply
	case base == "arf-26.eml":
		return KindUnsubscribe // Apple Mail's unsubscribe message, not an abuse report
	case strings.HasPrefix(base, "arf-"):
		return KindComplaint
	case corpusDelays[name]:
		return KindDelayed
	case strings.HasPrefix(base, "lhost-"), strings.HasPrefix(base, "rhost-"), strings.HasPrefix(base, "rfc3464-"):
		return KindBounce
	case strings.HasPrefix(base, "rfc3834-"):
		return KindAutoReply
	}
	return ""
}

// corpusDelays are the corpus's delay warnings: the message is not delivered yet and is
// still being tried. Sisimai names them after the MTA like its bounces; each was read by
// hand. (rfc3464-35 reports one recipient delayed and two failed: a bounce.)
var corpusDelays = map[string]bool{
	"bsd/lhost-exim-38.eml":            true, // "has not yet been delivered", "Delivery attempts will continue"
	"bsd/lhost-exim-41.eml":            true,
	"bsd/lhost-x1-04.eml":              true, // Exim's words under another MTA
	"bsd/lhost-gmail-06.eml":           true, // "THIS IS A WARNING MESSAGE ONLY", no DSN part
	"bsd/lhost-gmail-08.eml":           true,
	"bsd/lhost-gmail-09.eml":           true,
	"bsd/lhost-gmail-17.eml":           true,
	"bsd/lhost-zoho-04.eml":            true, // "THIS IS A WARNING MESSAGE ONLY", 421
	"bsd/lhost-opensmtpd-04.eml":       true, // "only a temporary failure report", no DSN part
	"bsd/lhost-opensmtpd-06.eml":       true, // Action: delayed from here on
	"bsd/lhost-opensmtpd-12.eml":       true,
	"bsd/lhost-opensmtpd-13.eml":       true,
	"bsd/lhost-opensmtpd-15.eml":       true,
	"bsd/lhost-opensmtpd-16.eml":       true,
	"bsd/lhost-messagingserver-07.eml": true,
	"bsd/lhost-outlook-06.eml":         true,
	"bsd/lhost-sendmail-29.eml":        true,
	"bsd/lhost-sendmail-55.eml":        true,
	"bsd/rfc3464-07.eml":               true,
	"bsd/rfc3464-09.eml":               true,
	"bsd/rfc3464-34.eml":               true,
	"bsd/rfc3464-55.eml":               true,
	"bsd/rhost-gsuite-06.eml":          true,
	"bsd/rhost-outlook-06.eml":         true,
}

// corpusOtherNotices are lhost- files that are an MTA's other notices, not bounces, each
// with why; they must still never pass for a reply.
var corpusOtherNotices = map[string]string{
	"bsd/lhost-amazonses-11.eml": "an Amazon SES complaint notification",
	"bsd/lhost-amazonses-12.eml": "an Amazon SES delivery notification (delivered)",
	"bsd/lhost-amazonses-13.eml": "an Amazon SES subscription confirmation",
	"bsd/lhost-fml-02.eml":       "a mailing list's refusal, sent as list mail",
	"bsd/lhost-fml-03.eml":       "a mailing list's refusal, sent as list mail",
}

// TestParseInboundCorpus classifies every corpus message, each within the parser's limits
// (checkParseBounds; BenchmarkParseInboundCorpus times it), and reports the rate against the file names and the hard/soft split of the bounces' failures;
// it fails below the floors. The table:
//
//	go test -run TestParseInboundCorpus -v ./mailer/
func TestParseInboundCorpus(t *testing.T) {
	files := corpusFiles(t)
	names := slices.Sorted(maps.Keys(files))
	type row struct{ total, right int }
	rates := map[string]*row{}
	kinds := map[string]map[InboundKind]int{}
	severities := map[Severity]int{}
	statuses := map[string]int{}
	noFailure := 0
	var wrong []string
	for _, name := range names {
		data, err := os.ReadFile(files[name])
		if err != nil {
			t.Fatal(err)
		}
		group := strings.SplitN(name, "-", 2)[0]
		if kinds[group] == nil {
			kinds[group] = map[InboundKind]int{}
		}
		in, scan, err := parseInbound(data, returnPathOf(data), nil)
		if err != nil {
			kinds[group]["error"]++
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkParseBounds(t, name, in, scan)
		kinds[group][in.Kind]++
		if in.Kind == KindReply && sisimaiReplies[name] == "" {
			t.Errorf("%s: classified a reply; it is not (%s)", name, in.Subject)
		}
		if in.Kind == KindBounce {
			for _, f := range in.Failures {
				severities[f.Severity]++
				if f.Status != "" {
					statuses[f.Status[:3]]++
				}
			}
			if len(in.Failures) == 0 {
				noFailure++
			}
			// Every failure report rejects its delivery; only a success report (2.x.x, such
			// as rfc3464-28's "deliverable") may not.
			if len(in.Failures) == 0 || worstFailure(in.Failures).Severity == SeverityNone && !strings.HasPrefix(worstFailure(in.Failures).Status, "2.") {
				t.Errorf("%s: a bounce that would reject nothing: %+v", name, in.Failures)
			}
		}
		want := expectedKind(name)
		if want == "" {
			continue
		}
		r := rates[string(want)]
		if r == nil {
			r = &row{}
			rates[string(want)] = r
		}
		r.total++
		if in.Kind == want {
			r.right++
		} else if corpusOtherNotices[name] == "" {
			wrong = append(wrong, fmt.Sprintf("%s: %s (%s), want %s", name, in.Kind, in.Reason, want))
		}
	}
	for _, g := range slices.Sorted(maps.Keys(kinds)) {
		var parts []string
		for _, k := range []InboundKind{KindBounce, KindDelayed, KindComplaint, KindAutoReply, KindUnsubscribe, KindReply, KindUnknown, "error"} {
			if n := kinds[g][k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, n))
			}
		}
		t.Logf("%-12s %s", g, strings.Join(parts, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(rates)) {
		r := rates[k]
		t.Logf("named %-11s recognised %3d of %3d (%.1f%%)", k, r.right, r.total, 100*float64(r.right)/float64(r.total))
	}
	t.Logf("bounce failures: hard %d, soft %d, not a failure (delayed, delivered) %d; bounces naming no failure %d",
		severities[SeverityHard], severities[SeveritySoft], severities[SeverityNone], noFailure)
	t.Logf("failure statuses by class.subject: %v", statuses)
	for _, w := range wrong {
		t.Logf("misclassified: %s", w)
	}
	for k, floor := range map[string]float64{"bounce": 0.98, "delayed": 1, "complaint": 1, "auto-reply": 1, "reply": 1, "unsubscribe": 1} {
		if r := rates[k]; r == nil || float64(r.right) < floor*float64(r.total) {
			t.Errorf("%s: recognised below the floor of %.0f%%: %+v", k, 100*floor, r)
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d misclassified beyond the listed other notices", len(wrong))
	}
	// Hard failures are a third of the corpus's; a change that made most soft (or hard)
	// would break suppression.
	if h, s := severities[SeverityHard], severities[SeveritySoft]; h < 180 || s < 300 {
		t.Errorf("hard %d, soft %d: the split moved far from 225/430", h, s)
	}
}

// checkParseBounds holds one parse to ParseInbound's limits. Every scan of the parser runs
// over what these bound, so within them its work is bounded by the message's size, whatever
// the message holds; a change that lets one grow with the input fails here, not as a slow
// test on a loaded machine.
func checkParseBounds(t *testing.T, name string, in *Inbound, scan *bodyScan) {
	t.Helper()
	if scan.parts > maxInboundParts {
		t.Errorf("%s: visited %d MIME parts, limit %d", name, scan.parts, maxInboundParts)
	}
	for what, n := range map[string]int{"text": len(scan.text), "delivery-status": len(scan.status),
		"feedback-report": len(scan.feedback)} {
		if n > maxScanText {
			t.Errorf("%s: kept %d bytes of %s, limit %d", name, n, what, maxScanText)
		}
	}
	for what, n := range map[string]int{"Tokens": len(in.Tokens), "OriginalTokens": len(in.OriginalTokens),
		"ReturnTokens": len(in.ReturnTokens), "returned-message candidates": len(scan.original)} {
		if n > maxTokenCandidates {
			t.Errorf("%s: %d %s, limit %d", name, n, what, maxTokenCandidates)
		}
	}
	if len(in.Failures) > maxReportBlocks {
		t.Errorf("%s: %d failures, limit %d", name, len(in.Failures), maxReportBlocks)
	}
}

// hostileMessages are messages built to make the parser work: each pushes one limit.
func hostileMessages(t testing.TB) map[string][]byte {
	k := inboundKeyring(t)
	tokens := func(n int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(k.Encode(9, int64(i+1)))
			b.WriteByte(' ')
		}
		return b.String()
	}
	many := tokens(20000) // 20,000 genuine tokens, 540 kB
	head := "From: MAILER-DAEMON@mx.example\nTo: bounces@reply.example\nMessage-ID: <h@mx.example>\nMIME-Version: 1.0\n"
	var parts, nested, blocks, embedded strings.Builder
	for range 5000 {
		parts.WriteString("--B\nContent-Type: text/plain\n\nuser unknown\n")
	}
	for i := range 100 {
		fmt.Fprintf(&nested, "--N%d\nContent-Type: multipart/mixed; boundary=\"N%d\"\n\n", i, i+1)
	}
	for i := range 5000 {
		fmt.Fprintf(&blocks, "Final-Recipient: rfc822; u%d@example.com\nAction: failed\nStatus: 5.1.1\n\n", i)
	}
	for range 400 {
		embedded.WriteString("--B\nContent-Type: message/rfc822\n\nSubject: " + tokens(50) + "\nReferences: " + tokens(50) + "\n\nbody\n")
	}
	big := strings.Repeat("550 5.1.1 <someone@example.com>: user unknown, mailbox full, over quota 4.2.2\n", 40000) // 3 MB
	return map[string][]byte{
		"5000 parts":            wireCRLF(head + "Subject: x\nContent-Type: multipart/mixed; boundary=\"B\"\n\n" + parts.String() + "--B--\n"),
		"100 nested multiparts": wireCRLF(head + "Subject: x\nContent-Type: multipart/mixed; boundary=\"N0\"\n\n" + nested.String()),
		"3 MB of text and status": wireCRLF(head + "Subject: x\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n" +
			"--B\nContent-Type: text/plain\n\n" + big + "--B\nContent-Type: message/delivery-status\n\n" + big + "--B--\n"),
		"5000 recipient blocks": wireCRLF(head + "Subject: x\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n" +
			"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n" + blocks.String() + "--B--\n"),
		"20000 tokens in the header": wireCRLF(head + "Subject: Re: " + many + "\nIn-Reply-To: " + many + "\nReferences: " + many + "\n\nhello\n"),
		"20000 tokens in the text":   wireCRLF(head + "Subject: failure notice\n\n" + many + "\n"),
		"400 returned messages": wireCRLF(head + "Subject: x\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"B\"\n\n" +
			embedded.String() + "--B--\n"),
		"broken MIME after 3 MB of text": wireCRLF(head + "Subject: x\nX-Failed-Recipients: a@example.com\n" +
			"Content-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n" + big +
			"--B\nContent-Type: multipart/alternative\n\n" + big),
	}
}

// TestParseInboundBoundsItsWork feeds the parser messages built to make it work (thousands
// of parts, deep nesting, megabytes of text, tens of thousands of token candidates) and holds
// each parse to the limits, which bound its work: no timing, so nothing to flake.
func TestParseInboundBoundsItsWork(t *testing.T) {
	rcpts := []string{"bounce+" + strings.Repeat(inboundKeyring(t).Encode(1, 1)+"+", 3) + "@reply.example"}
	for name, data := range hostileMessages(t) {
		in, scan, err := parseInbound(data, "", rcpts)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkParseBounds(t, name, in, scan)
	}
	// The limits are reached, not merely respected by small input.
	msgs := hostileMessages(t)
	in, scan, _ := parseInbound(msgs["5000 parts"], "", nil)
	if in.Kind != KindBounce || scan.parts != maxInboundParts || !strings.Contains(scan.broken, "MIME parts") {
		t.Errorf("5000 parts: %s, %d parts, broken %q", in.Kind, scan.parts, scan.broken)
	}
	if in, _, _ := parseInbound(msgs["5000 recipient blocks"], "", nil); len(in.Failures) == 0 {
		t.Error("5000 recipient blocks: no failure read")
	}
	if in, _, _ := parseInbound(msgs["20000 tokens in the header"], "", nil); len(in.Tokens) != maxTokenCandidates {
		t.Errorf("20000 tokens in the header: %d candidates", len(in.Tokens))
	}
}

// BenchmarkParseInboundCorpus times parsing the whole corpus and the hostile messages; run it
// by hand (go test -run '^$' -bench ParseInbound ./mailer/) after changing the parser.
func BenchmarkParseInboundCorpus(b *testing.B) {
	files := corpusFiles(b)
	var msgs [][]byte
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, data)
	}
	for _, data := range hostileMessages(b) {
		msgs = append(msgs, data)
	}
	b.ResetTimer()
	for b.Loop() {
		for _, data := range msgs {
			if _, err := ParseInbound(data, "", nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// delayWarnings are delay warnings written after RFC 3464's examples and the words MTAs use
// that the corpus lacks, each about rcpt; the name says whose. Each must be KindDelayed.
func delayWarnings(id, rcpt string) map[string][]byte {
	head := func(from, subject, n string) string {
		return "From: " + from + "\nTo: bounces@" + testReplyDomain + "\nSubject: " + subject +
			"\nMessage-ID: <" + id + "-" + n + "@mx.example.org>\nMIME-Version: 1.0\n"
	}
	report := func(text, fields string) string {
		return "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n" +
			text + "\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n" +
			"Arrival-Date: Thu, 7 Jul 1994 17:15:49 -0400\n\n" + fields + "\n--B--\n"
	}
	return map[string][]byte{
		// RFC 3464 section 2.3.3: Action: delayed, with Will-Retry-Until (2.3.9).
		"RFC 3464 delayed": wireCRLF(head("Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>", "Warning: message delayed", "1") +
			report("The original message was received at Thu, 7 Jul 1994 17:15:49 -0400.\nIt has not been delivered yet.",
				"Original-Recipient: rfc822;"+rcpt+"\nFinal-Recipient: rfc822;"+rcpt+"\nAction: delayed\nStatus: 4.4.1\n"+
					"Diagnostic-Code: smtp; 421 4.4.1 connection timed out\nWill-Retry-Until: Sat, 9 Jul 1994 17:15:49 -0400\n")),
		// RFC 3464 section 10.2's report with every recipient delayed, none failed.
		"RFC 3464 two recipients delayed": wireCRLF(head("Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>", "Returned mail: warning", "2") +
			report("   ----- The following addresses had transient problems -----",
				"Original-Recipient: rfc822;"+rcpt+"\nFinal-Recipient: rfc822;"+rcpt+"\nAction: delayed\n"+
					"Status: 4.0.0 (hpnjld.njd.jp.com: host name lookup failure)\n\n"+
					"Final-Recipient: rfc822;other@example.net\nAction: delayed\nStatus: 4.4.7\n")),
		// Postfix's delay_warning_time notice.
		"Postfix": wireCRLF(head("MAILER-DAEMON@mx.example.org (Mail Delivery System)", "Delayed Mail (still being retried)", "3") +
			report("This is the mail system at host mx.example.org.\n\n####################################################################\n"+
				"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"+
				"####################################################################\n\nYour message could not be delivered for more than 4 hour(s).\n"+
				"It will be retried until it is 5 day(s) old.\n\n<"+rcpt+">: connect to mx.example.com[192.0.2.1]:25: Connection timed out",
				"Final-Recipient: rfc822; "+rcpt+"\nAction: delayed\nStatus: 4.4.1\nDiagnostic-Code: X-Postfix; connect to mx.example.com: Connection timed out\n")),
		// Exchange Online's delay notice, free-form.
		"Exchange": wireCRLF(head("postmaster@outlook.example", "Delivery delayed:Your points", "4") +
			"Content-Type: text/plain\n\nDelivery is delayed to these recipients or groups:\n\n" + rcpt +
			"\n\nSubject: Your points\n\nThis message hasn't been delivered yet. Delivery will continue to be attempted.\n\n" +
			"The server will keep trying to deliver this message for the next 1 days, 19 hours and 57 minutes.\n\n" +
			"Diagnostic information for administrators:\nRemote Server returned '400 4.4.7 Message delayed'\n"),
		// GroupWise's status message, free-form.
		"GroupWise": wireCRLF(head("postmaster@gw.example.org", "Message status - delayed", "5") +
			"Content-Type: text/plain\n\nThe message has not yet been delivered.\n  " + rcpt +
			"\nThe delivery attempts will continue. 450 4.2.1 mailbox temporarily unavailable\n"),
		// Exim's warning, as its delay_warning sends it.
		"Exim": wireCRLF(head("Mail Delivery System <Mailer-Daemon@mx.example.org>", "Warning: message 1q2w3e-000AbC-4R delayed 24 hours", "6") +
			"X-Failed-Recipients: " + rcpt + "\nAuto-Submitted: auto-replied\nContent-Type: text/plain\n\n" +
			"This message was created automatically by mail delivery software.\nA message that you sent has not yet been delivered to one or more of its\n" +
			"recipients after more than 24 hours on the queue on mx.example.org.\n\n  " + rcpt +
			"\n    Delay reason: SMTP error from remote mail server after RCPT TO:<" + rcpt + ">:\n    451 4.3.0 try again later\n\n" +
			"No action is required on your part. Delivery attempts will continue for\nsome time.\n"),
	}
}

// TestParseInboundDelayWarnings: warnings are KindDelayed; the failures that end the retries
// (the same words with a permanent status, or RFC 3464's report of a recipient failed
// after days of delay) stay bounces.
func TestParseInboundDelayWarnings(t *testing.T) {
	for name, data := range delayWarnings("w", "kim@example.com") {
		if in := parseInboundT(t, data, ""); in.Kind != KindDelayed {
			t.Errorf("%s: %s (%s), want delayed", name, in.Kind, in.Reason)
		}
	}
	for name, data := range map[string][]byte{
		// RFC 3464 section 10.1: delayed for five days, then failed; status 4.0.0.
		"RFC 3464 failed after 5 days": wireCRLF("From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>\nTo: owner@reply.example\n" +
			"Subject: Returned mail: Cannot send message for 5 days\nMessage-ID: <f1@cs.utk.edu>\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\n\n" +
			"   ----- The following addresses had delivery problems -----\n<louisl@larry.slip.umd.edu>  (unrecoverable error)\n" +
			"<louisl@larry.slip.umd.edu>... Deferred: Connection timed out\nMessage could not be delivered for 5 days\nMessage will be deleted from queue\n" +
			"--B\ncontent-type: message/delivery-status\n\nReporting-MTA: dns; cs.utk.edu\n\n" +
			"Original-Recipient: rfc822;louisl@larry.slip.umd.edu\nFinal-Recipient: rfc822;louisl@larry.slip.umd.edu\n" +
			"Action: failed\nStatus: 4.0.0\nDiagnostic-Code: smtp; 426 connection timed out\n\n--B--\n"),
		"a warning's words with a permanent status": wireCRLF("From: MAILER-DAEMON@mx.example.org\nTo: bounces@reply.example\n" +
			"Subject: Mail delivery failed\nMessage-ID: <f2@mx.example.org>\n\nThe message has not yet been delivered.\n" +
			"kim@example.com\n550 5.1.1 user unknown\n"),
		"Gmail's final failure": wireCRLF("From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: bounces@reply.example\n" +
			"Subject: Delivery Status Notification (Failure)\nMessage-ID: <f3@mx.google.com>\n\n" +
			"Delivery to the following recipient failed permanently:\n\n     kim@example.com\n\n" +
			"Technical details of permanent failure:\nThe recipient server did not accept our requests (delayed 48 hours): 450 4.2.1 try later\n"),
	} {
		in := parseInboundT(t, data, "")
		if in.Kind != KindBounce || len(in.Failures) == 0 || worstFailure(in.Failures).Severity == SeverityNone {
			t.Errorf("%s: %s (%s) %+v, want a bounce that fails the delivery", name, in.Kind, in.Reason, in.Failures)
		}
	}
}
