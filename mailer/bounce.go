package mailer

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Severity is what a failed delivery says about the consumer's address.
//
// The RFC 3463 status decides it (the first digit is the class, the second the subject):
//
//	status            meaning                                   severity  suppress the address
//	2.x.x             delivered, relayed, expanded              none      no
//	Action: delayed   still trying (a warning, not a failure)   none      no
//	4.x.x             temporary: the remote end gave up         soft      after the soft limit
//	5.1.x             bad destination address: no such user,    hard      at once
//	                  no such domain, bad syntax, moved
//	5.1.7, 5.1.8      bad *sender* address: ours, not hers      soft      never (not counted)
//	5.2.1             mailbox disabled                          hard      at once
//	5.2.2             mailbox full                              soft      after the limit
//	5.2.x other       message too large for the mailbox,        soft      after the limit
//	                  list expansion
//	5.3.x, 5.4.x      the receiving system or the route         soft      after the limit
//	5.5.x, 5.6.x      protocol, content                         soft      after the limit
//	x.7.x             policy, security, spam block: a block of  soft      never (not counted)
//	                  our mail, not a bad address
//	5.0.0, none       reason unknown (refined by the text       soft      after the limit
//	                  first: "user unknown" makes it 5.1.1)
//
// A bounce without an enhanced status is read from its SMTP reply code and its text:
// a phrase such as "user unknown" or "no such user" stands for 5.1.1, "domain not found" for
// 5.1.2, "account disabled" for 5.2.1, "mailbox full" or "over quota" for 5.2.2; a bare 4xx
// reply is 4.0.0, a bare 5xx 5.0.0 (550 alone says "mailbox unavailable", which RFC 5321
// uses for policy refusals too, so it is not taken as a bad address). A phrase never turns a
// temporary failure permanent.
type Severity string

const (
	SeverityNone Severity = ""     // not a failure
	SeveritySoft Severity = "soft" // counted; the address is suppressed after a number of them
	SeverityHard Severity = "hard" // the address is bad: suppressed at once
)

// Failure is what a bounce says about one recipient.
type Failure struct {
	// Recipient is the failed address, lower case: a DSN's Original-Recipient, else its
	// Final-Recipient, else X-Failed-Recipients or an address the text names; "" when none.
	Recipient string
	// Action is a DSN's Action field in lower case (failed, delayed, delivered, relayed,
	// expanded); "" in a bounce that follows no standard.
	Action string
	// Status is the RFC 3463 status, refined from the text when the report gives only a
	// class ("5.0.0"); "" when nothing says.
	Status string
	// Reply is the SMTP reply code found, or 0.
	Reply int
	// Diagnostic is the remote server's words (Diagnostic-Code, or the line of the text
	// that gave the status), on one line and clipped.
	Diagnostic string
	Severity   Severity
}

// Detail is the failure as the delivery's last error shows it: "5.1.1 smtp; 550 ...".
func (f Failure) Detail() string {
	s := f.Status
	if s == "" {
		s = "bounce without a status"
	}
	if f.Diagnostic != "" {
		s += " " + f.Diagnostic
	}
	return clip(s)
}

// severityOf is the table in Severity's comment. status is "c.s.d" or "".
func severityOf(action, status string) Severity {
	switch action {
	case "delayed", "delivered", "relayed", "expanded":
		return SeverityNone
	}
	class, subject, detail := splitStatus(status)
	switch {
	case class == 2:
		return SeverityNone
	case class == 5 && subject == 1 && detail != 7 && detail != 8:
		return SeverityHard
	case class == 5 && subject == 2 && detail == 1:
		return SeverityHard
	}
	return SeveritySoft
}

// splitStatus returns the three numbers of an RFC 3463 status; class 0 when s is not one.
func splitStatus(s string) (class, subject, detail int) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return 0, 0, 0
	}
	var n [3]int
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return 0, 0, 0
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p[0] == '+' {
			return 0, 0, 0
		}
		n[i] = v
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return 0, 0, 0
	}
	return n[0], n[1], n[2]
}

// bareStatus reports whether s says no more than a class ("5.0.0"), or nothing.
func bareStatus(s string) bool {
	c, sub, d := splitStatus(s)
	return c == 0 || sub == 0 && d == 0
}

// ParseDeliveryStatus reads the per-recipient fields of a message/delivery-status part
// (RFC 3464 section 2.3): one Failure per recipient block, in order. A block whose status
// is only a class is refined from its Diagnostic-Code. Malformed lines are skipped: a report
// that names no recipient gives none.
func ParseDeliveryStatus(b []byte) []Failure {
	var out []Failure
	for _, block := range fieldBlocks(b) {
		final, orig := block["final-recipient"], block["original-recipient"]
		action := strings.ToLower(strings.TrimSpace(block["action"]))
		status, _, _ := strings.Cut(strings.TrimSpace(block["status"]), " ")
		if final == "" && orig == "" && action == "" && status == "" {
			continue // the per-message block, or noise
		}
		f := Failure{Action: action, Diagnostic: oneLine(typedValue(block["diagnostic-code"]))}
		if c, _, _ := splitStatus(status); c != 0 {
			f.Status = status
		}
		for _, v := range []string{orig, final} {
			if a := address(typedValue(v)); a != "" {
				f.Recipient = a
				break
			}
		}
		if f.Diagnostic != "" {
			refine(&f, []byte(f.Diagnostic))
		}
		if f.Status == "" && f.Action == "failed" {
			f.Status = "5.0.0"
		}
		f.Severity = severityOf(f.Action, f.Status)
		out = append(out, f)
	}
	return out
}

// fieldBlocks splits RFC 822-style field groups separated by empty lines into maps of
// lower-case field name to value, unfolding continuation lines. At most maxReportBlocks.
func fieldBlocks(b []byte) []map[string]string {
	var blocks []map[string]string
	cur := map[string]string{}
	last := ""
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, cur)
		}
		cur, last = map[string]string{}, ""
	}
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" && len(cur[last]) < maxScanText {
				cur[last] += " " + strings.TrimSpace(line)
			}
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				last = ""
				continue
			}
			last = strings.ToLower(strings.TrimSpace(name))
			if _, seen := cur[last]; !seen {
				cur[last] = strings.TrimSpace(value)
			} else {
				last = "" // a repeated field's continuation belongs to the ignored repeat
			}
		}
		if len(blocks) >= maxReportBlocks {
			return blocks // a hostile report; what was read is plenty
		}
	}
	flush()
	return blocks
}

// typedValue drops the address or diagnostic type: "rfc822; a@b" is "a@b".
func typedValue(v string) string {
	if t, rest, ok := strings.Cut(v, ";"); ok && !strings.ContainsAny(t, " <@") {
		return strings.TrimSpace(rest)
	}
	return strings.TrimSpace(v)
}

// address is the e-mail address in s, lower case, or "" when s holds none.
func address(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			s = s[i+1 : i+j]
		}
	}
	s = strings.Trim(strings.TrimSpace(s), `"'<>`)
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 254 || strings.ContainsAny(s, " \t<>(),;:\"[]\\") {
		return ""
	}
	return strings.ToLower(s)
}

func oneLine(s string) string { return replyText(s) }

// textRecipients returns the addresses a bounce that follows no standard names as failed,
// as MTAs write them: "<a@b>:" (qmail, Postfix), "a@b:" or an address alone on its line
// (Exim, Sendmail). At most 20.
func textRecipients(text []byte) []string {
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(string(text), "\r", ""), "\n") {
		line = strings.TrimSpace(line)
		cand := ""
		switch {
		case strings.HasPrefix(line, "<"):
			if a, rest, ok := strings.Cut(line[1:], ">"); ok && (rest == "" || rest[0] == ':' || rest[0] == ' ') {
				cand = a
			}
		case strings.HasSuffix(line, ":") && !strings.Contains(line, " "):
			cand = strings.TrimSuffix(line, ":")
		case !strings.ContainsAny(line, " \t"):
			cand = line
		}
		if a := address(cand); a != "" && !contains(out, a) {
			out = append(out, a)
			if len(out) == 20 {
				break
			}
		}
	}
	return out
}

// TextFailure reads a bounce that follows no standard: the first enhanced status code of
// class 4 or 5 (a specific one before a bare class), else a well-known phrase, else an SMTP
// reply code. ok is false when the text holds none of them.
func TextFailure(text []byte) (f Failure, ok bool) {
	refine(&f, text)
	if f.Status == "" {
		return f, false
	}
	f.Severity = severityOf("", f.Status)
	return f, true
}

// refine fills or sharpens f.Status from text: an enhanced code found there replaces none
// or a bare class; a phrase replaces a bare class of the same class, or none; a reply code
// gives a bare class when nothing else does.
func refine(f *Failure, text []byte) {
	if len(text) > maxScanText {
		text = text[:maxScanText]
	}
	lower := asciiLower(text) // offsets into lower are offsets into text
	code, codeAt := enhancedCode(lower)
	reply, replyAt := replyCode(lower)
	phrase, phraseAt := failurePhrase(lower)

	at := -1
	if code != "" && bareStatus(f.Status) && (!bareStatus(code) || f.Status == "") {
		f.Status, at = code, codeAt
	}
	if phrase != "" && bareStatus(f.Status) {
		c, _, _ := splitStatus(f.Status)
		pc, _, _ := splitStatus(phrase)
		rc := reply / 100
		if (c == 0 || c == pc) && (rc == 0 || rc == pc) {
			f.Status, at = phrase, phraseAt
		}
	}
	if f.Status == "" && reply != 0 {
		f.Status, at = fmt.Sprintf("%d.0.0", reply/100), replyAt
	}
	if f.Reply == 0 {
		f.Reply = reply
	}
	if f.Diagnostic == "" && at >= 0 {
		f.Diagnostic = oneLine(string(lineAt(text, at)))
	}
}

// asciiLower lowers ASCII letters only, keeping every byte where it was: bytes.ToLower
// rewrites invalid UTF-8, which moves what follows (a fuzzer found it).
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// lineAt is the line of text holding offset i.
func lineAt(text []byte, i int) []byte {
	start := bytes.LastIndexByte(text[:i], '\n') + 1
	end := bytes.IndexByte(text[i:], '\n')
	if end < 0 {
		end = len(text) - i
	}
	return text[start : i+end]
}

// enhancedCode finds an RFC 3463 code of class 4 or 5 in lower-case text: the first specific
// one (not x.0.0) of the first class found, else the first bare one. Dotted numbers inside
// longer ones (an IP address, a version) are not codes.
func enhancedCode(text []byte) (code string, at int) {
	first, firstAt := "", -1
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c != '4' && c != '5' || i+1 >= len(text) || text[i+1] != '.' {
			continue
		}
		if i > 0 && (isDigit(text[i-1]) || text[i-1] == '.' || isLetter(text[i-1])) {
			continue
		}
		j := i + 2
		n1 := digits(text, j)
		if n1 == 0 || n1 > 3 || j+n1 >= len(text) || text[j+n1] != '.' {
			continue
		}
		k := j + n1 + 1
		n2 := digits(text, k)
		if n2 == 0 || n2 > 3 {
			continue
		}
		end := k + n2
		if end < len(text) && (isLetter(text[end]) || isDigit(text[end]) || text[end] == '.' && end+1 < len(text) && isDigit(text[end+1])) {
			continue
		}
		s := string(text[i:end])
		if first == "" {
			first, firstAt = s, i
		}
		if !bareStatus(s) && s[0] == first[0] {
			return s, i
		}
	}
	return first, firstAt
}

// replyCode finds an SMTP reply code of class 4 or 5 in lower-case text: three digits
// standing alone and followed by a space or a hyphen (the multi-line form), then a word or
// an enhanced code, as servers write them ("said: 550 5.1.1 ...", "550-5.1.1 ..."). The
// first permanent one wins, else the first temporary one.
func replyCode(text []byte) (code, at int) {
	at = -1
	for i := 0; i+4 < len(text); i++ {
		c := text[i]
		if c != '4' && c != '5' || digits(text, i) != 3 {
			continue
		}
		if i > 0 && (isDigit(text[i-1]) || isLetter(text[i-1]) || strings.IndexByte(".:/-#=+$", text[i-1]) >= 0) {
			continue
		}
		if next := text[i+3]; next != ' ' && next != '-' {
			continue
		}
		rest := text[i+4:]
		if !(isLetter(rest[0]) || rest[0] == '<' || (rest[0] == '4' || rest[0] == '5') && len(rest) > 1 && rest[1] == '.') {
			continue // "450 kb", "500 000"
		}
		v, _ := strconv.Atoi(string(text[i : i+3]))
		if v%100 > 59 {
			continue // no reply code has a second digit above 5
		}
		if code == 0 {
			code, at = v, i
		}
		if v/100 == 5 {
			return v, i
		}
	}
	return code, at
}

func digits(b []byte, i int) int {
	n := 0
	for i+n < len(b) && isDigit(b[i+n]) {
		n++
	}
	return n
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

// failurePhrases are phrases of bounce text, lower case, with the status they stand for.
var failurePhrases = []struct{ phrase, status string }{
	{"user unknown", "5.1.1"},
	{"unknown user", "5.1.1"},
	{"no such user", "5.1.1"},
	{"no such recipient", "5.1.1"},
	{"no such mailbox", "5.1.1"},
	{"no such address", "5.1.1"},
	{"no such account", "5.1.1"},
	{"unknown recipient", "5.1.1"},
	{"recipient unknown", "5.1.1"},
	{"recipient not found", "5.1.1"},
	{"invalid recipient", "5.1.1"},
	{"invalid mailbox", "5.1.1"},
	{"mailbox not found", "5.1.1"},
	{"mailbox does not exist", "5.1.1"},
	{"user does not exist", "5.1.1"},
	{"user not found", "5.1.1"},
	{"address does not exist", "5.1.1"},
	{"account does not exist", "5.1.1"},
	{"is not a valid mailbox", "5.1.1"},
	{"no mailbox here by that name", "5.1.1"},
	{"unrouteable address", "5.1.1"},
	{"bad destination mailbox address", "5.1.1"},
	{"address unknown", "5.1.1"},
	{"host or domain name not found", "5.1.2"},
	{"domain not found", "5.1.2"},
	{"no such domain", "5.1.2"},
	{"domain does not exist", "5.1.2"},
	{"account has been disabled", "5.2.1"},
	{"account is disabled", "5.2.1"},
	{"account disabled", "5.2.1"},
	{"mailbox disabled", "5.2.1"},
	{"mailbox is disabled", "5.2.1"},
	{"mailbox is inactive", "5.2.1"},
	{"mailbox full", "5.2.2"},
	{"mailbox is full", "5.2.2"},
	{"over quota", "5.2.2"},
	{"overquota", "5.2.2"},
	{"quota exceeded", "5.2.2"},
	{"exceeded storage", "5.2.2"},
	{"exceeds quota", "5.2.2"},
	{"mailbox size limit exceeded", "5.2.2"},
	{"insufficient storage", "5.2.2"},
}

// failurePhrase returns the status of the phrase that comes first in lower-case text.
func failurePhrase(text []byte) (status string, at int) {
	at = -1
	for _, p := range failurePhrases {
		if i := bytes.Index(text, []byte(p.phrase)); i >= 0 && (at < 0 || i < at) {
			status, at = p.status, i
		}
	}
	return status, at
}

// RejectionText is a send error as a delivery's last error should record it: for an SMTP
// reply, "SMTP error 550: 5.1.1 text", the enhanced code kept (go-smtp's client moves it out
// of the message, and its Error() drops it); otherwise err's text. store.RecordOutcomes
// reads it to tell a bad address from another refusal.
func RejectionText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.EnhancedCode[0] > 0 {
		e := se.EnhancedCode
		return fmt.Sprintf("SMTP error %03d: %d.%d.%d %s", se.Code, e[0], e[1], e[2], se.Message)
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
