package mailer

import (
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestSeverityTable(t *testing.T) {
	for _, c := range []struct {
		action, status string
		want           Severity
	}{
		{"failed", "5.1.1", SeverityHard},
		{"failed", "5.1.2", SeverityHard},
		{"failed", "5.1.10", SeverityHard},
		{"failed", "5.1.7", SeveritySoft}, // our sender address
		{"failed", "5.1.8", SeveritySoft},
		{"failed", "5.2.1", SeverityHard},
		{"failed", "5.2.2", SeveritySoft},
		{"failed", "5.2.3", SeveritySoft},
		{"failed", "5.7.1", SeveritySoft}, // a block is not a bad address
		{"failed", "5.4.4", SeveritySoft},
		{"failed", "5.0.0", SeveritySoft},
		{"failed", "4.4.7", SeveritySoft},
		{"failed", "", SeveritySoft},
		{"failed", "9.1.1", SeveritySoft},
		{"delayed", "4.4.1", SeverityNone},
		{"delayed", "5.1.1", SeverityNone},
		{"relayed", "2.0.0", SeverityNone},
		{"delivered", "2.0.0", SeverityNone},
		{"", "2.1.5", SeverityNone},
	} {
		if got := severityOf(c.action, c.status); got != c.want {
			t.Errorf("severityOf(%q, %q) = %q, want %q", c.action, c.status, got, c.want)
		}
	}
}

func TestParseDeliveryStatus(t *testing.T) {
	report := "Reporting-MTA: dns; mx.example.org\r\nArrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n" +
		"Final-Recipient: rfc822; Zoe@Example.COM\r\nOriginal-Recipient: rfc822;<zoe@example.com>\r\nAction: failed\r\n" +
		"Status: 5.0.0\r\nDiagnostic-Code: smtp; 550 5.1.1 <zoe@example.com>: Recipient address\r\n rejected: User unknown\r\n\r\n" +
		"Final-Recipient: rfc822; max@example.net\r\nAction: failed\r\nStatus: 5.2.2 (mailbox full)\r\n\r\n" +
		"Final-Recipient: rfc822; ann@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n" +
		"Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: smtp; 550 sorry, no such user here\r\n\r\n" +
		"Final-Recipient: x400; not-an-address\r\nAction: failed\r\n\r\ngarbage without a colon\r\n"
	got := ParseDeliveryStatus([]byte(report))
	want := []struct {
		rcpt, status string
		sev          Severity
	}{
		{"zoe@example.com", "5.1.1", SeverityHard}, // the diagnostic sharpens 5.0.0
		{"max@example.net", "5.2.2", SeveritySoft},
		{"ann@example.net", "4.4.1", SeverityNone},
		{"bob@example.net", "5.1.1", SeverityHard}, // by its phrase
		{"", "5.0.0", SeveritySoft},
	}
	if len(got) != len(want) {
		t.Fatalf("%d failures, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Recipient != w.rcpt || got[i].Status != w.status || got[i].Severity != w.sev {
			t.Errorf("failure %d: %+v, want %+v", i, got[i], w)
		}
	}
	if got[0].Diagnostic == "" || got[0].Reply != 550 {
		t.Errorf("failure 0 lost its diagnostic: %+v", got[0])
	}
}

func TestTextFailure(t *testing.T) {
	for _, c := range []struct {
		text   string
		status string
		sev    Severity
		ok     bool
	}{
		{"<zoe@example.com>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 unknown mailbox\n", "5.1.1", SeverityHard, true},
		{"host mx.example[192.0.2.5] said: 552 5.2.2 Mailbox full (in reply to RCPT TO)", "5.2.2", SeveritySoft, true},
		{"550-5.7.1 [192.0.2.9] Our system has detected that this message is likely spam", "5.7.1", SeveritySoft, true},
		{"Sorry, no mailbox here by that name. (#5.1.1)", "5.1.1", SeverityHard, true},
		{"The user's mailbox is over quota", "5.2.2", SeveritySoft, true},
		{"SMTP error from remote mail server after RCPT TO:<x@y>:\n550 User unknown", "5.1.1", SeverityHard, true},
		{"451 4.3.0 temporary failure, user unknown lookup failed", "4.3.0", SeveritySoft, true},
		{"450 temporarily unable, user unknown", "4.0.0", SeveritySoft, true}, // a phrase never makes a 4xx permanent
		{"554 Transaction failed", "5.0.0", SeveritySoft, true},
		// Dotted numbers that are not codes: an IP address, a version, a size.
		{"from 10.5.1.1 running Postfix 2.5.1.3 sent 500 000 bytes, 4.2.1a 5.1.10000", "", SeverityNone, false},
		{"Hello, I am out of the office.", "", SeverityNone, false},
	} {
		f, ok := TextFailure([]byte(c.text))
		if ok != c.ok || f.Status != c.status || f.Severity != c.sev {
			t.Errorf("TextFailure(%q) = %+v, %v; want %s %q %v", c.text, f, ok, c.status, c.sev, c.ok)
		}
	}
}

func TestTextRecipients(t *testing.T) {
	text := "This is the qmail-send program.\n\n<zoe@example.com>:\nSorry.\n\n  max@example.net\n    SMTP error\n" +
		"<not an address>:\nplain words here\n"
	if got := textRecipients([]byte(text)); fmt.Sprint(got) != "[zoe@example.com max@example.net]" {
		t.Errorf("textRecipients = %v", got)
	}
}

func TestRejectionText(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, "SMTP error 550: 5.1.1 no such user"},
		{&smtp.SMTPError{Code: 550, Message: "no such user"}, "SMTP error 550: no such user"},
		{fmt.Errorf("sending: %w", &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "full"}), "SMTP error 552: 5.2.2 full"},
		{errors.New("connection reset"), "connection reset"},
		{nil, ""},
	} {
		if got := RejectionText(c.err); got != c.want {
			t.Errorf("RejectionText(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
