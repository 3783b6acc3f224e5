package mailer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseInbound: no input makes ParseInbound panic, and what it returns is consistent.
// Seeded from mailer/testdata/inbound and the Sisimai corpus.
//
//	go test -run '^$' -fuzz FuzzParseInbound -fuzztime 60s ./mailer/
func FuzzParseInbound(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "inbound", "*.eml"))
	for _, dir := range []string{"bsd", "err", "not"} {
		more, _ := filepath.Glob(filepath.Join(sisimaiCorpus, dir, "*.eml"))
		files = append(files, more...)
	}
	for _, path := range files {
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data, "")
		}
	}
	f.Add(wireCRLF("From: a@b\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nSubject: x\n--b--\n"), "a@b")
	f.Add(wireCRLF("Subject: =?utf-8?b?////?=\nIn-Reply-To: <<>>@@\n\n"), "a@b")
	f.Add(wireCRLF("From: MAILER-DAEMON\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nAction: failed\nStatus: 5.\n\n--b--\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, from string) {
		in, err := ParseInbound(data, from, []string{"reply+x@reply.example", "bounce+y@reply.example"})
		if err != nil {
			if in != nil {
				t.Fatal("an error and an Inbound")
			}
			return
		}
		switch in.Kind {
		case KindReply, KindAutoReply, KindBounce, KindDelayed, KindComplaint, KindUnsubscribe, KindUnknown:
		default:
			t.Fatalf("kind %q", in.Kind)
		}
		if in.Kind != KindBounce && in.Kind != KindDelayed && len(in.Failures) > 0 {
			t.Fatalf("%s with failures", in.Kind)
		}
		for _, f := range in.Failures {
			checkFailure(t, f)
			if in.Kind == KindDelayed && (f.Action == "failed" || strings.HasPrefix(f.Status, "5.")) {
				t.Fatalf("a delay warning reporting a failure: %+v", f)
			}
		}
		if len(in.ReturnTokens) > 0 && in.Kind == KindReply {
			t.Fatal("mail to the return path alone is a reply")
		}
	})
}

// FuzzBounceStatus: the status extraction never panics, and a failure it returns is one the
// severity table gives for its own status.
//
//	go test -run '^$' -fuzz FuzzBounceStatus -fuzztime 60s ./mailer/
func FuzzBounceStatus(f *testing.F) {
	for _, s := range []string{
		"Final-Recipient: rfc822; a@b\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\n",
		"Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822;<a@b>\nAction: delayed\nStatus: 4.4.1\n",
		"Original-Recipient: rfc822; a@b\nFinal-Recipient: rfc822; c@d\nAction: failed\nStatus: 5.0.0 (x)\n",
		"<zoe@example.com>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 unknown mailbox\n",
		"host said: 552-5.2.2 Mailbox full\n552 5.2.2 (in reply to RCPT TO)",
		"10.5.1.1 4.2.1a 5.1.1.1 550000 5.999.999",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fl := range ParseDeliveryStatus(data) {
			checkFailure(t, fl)
		}
		if fl, ok := TextFailure(data); ok {
			checkFailure(t, fl)
		}
		for _, a := range textRecipients(data) {
			if a != strings.ToLower(a) || !strings.Contains(a, "@") {
				t.Fatalf("recipient %q", a)
			}
		}
	})
}

func checkFailure(t *testing.T, f Failure) {
	t.Helper()
	if f.Status != "" {
		if c, _, _ := splitStatus(f.Status); c == 0 {
			t.Fatalf("status %q is no RFC 3463 status", f.Status)
		}
	}
	if f.Severity != severityOf(f.Action, f.Status) && !(f.Status == "" && f.Severity == SeveritySoft) {
		t.Fatalf("%+v: severity disagrees with the table (%q)", f, severityOf(f.Action, f.Status))
	}
	if f.Recipient != "" && (f.Recipient != strings.ToLower(f.Recipient) || !strings.Contains(f.Recipient, "@")) {
		t.Fatalf("recipient %q", f.Recipient)
	}
	if strings.ContainsAny(f.Diagnostic, "\r\n") || len(f.Diagnostic) > 310 {
		t.Fatalf("diagnostic %q", f.Diagnostic)
	}
	if f.Reply != 0 && (f.Reply < 400 || f.Reply > 559) {
		t.Fatalf("reply %d", f.Reply)
	}
}
