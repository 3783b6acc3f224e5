package mailer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	// Replies come in every charset mail clients use; without this only UTF-8 and ASCII
	// subjects and bodies decode.
	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"pointpost/postoffice"
)

// InboundKind is what an inbound message is, as far as pointpost cares.
type InboundKind string

const (
	// KindReply is a person's answer: the only kind that can acknowledge an invitation.
	KindReply InboundKind = "reply"
	// KindAutoReply is a message a program sent on someone's behalf: a vacation notice,
	// an auto-responder, a read receipt (RFC 3834, RFC 8098).
	KindAutoReply InboundKind = "auto-reply"
	// KindBounce is a delivery status notification, standard (RFC 3464) or not.
	KindBounce InboundKind = "bounce"
	// KindDelayed is a delay warning: a report that the message is not delivered yet and
	// will be retried (RFC 3464 Action: delayed, or an MTA's free-form warning). It is
	// recorded and changes nothing: the message may still arrive.
	KindDelayed InboundKind = "delayed"
	// KindComplaint is an abuse report from a feedback loop (ARF, RFC 5965).
	KindComplaint InboundKind = "complaint"
	// KindUnsubscribe is a request sent to the List-Unsubscribe mailto address
	// (unsubscribe+TOKEN@…), or Apple Mail's unsubscribe message. It earns nothing.
	KindUnsubscribe InboundKind = "unsubscribe"
	// KindUnknown is a message whose MIME structure is broken, so what it is can't be told.
	KindUnknown InboundKind = "unknown"
)

// Inbound is one message the receiver took, parsed and classified.
type Inbound struct {
	Kind InboundKind
	// Reason names the signal that decided Kind, for the operator ("Auto-Submitted:
	// auto-replied", "multipart/report; report-type=delivery-status"); for KindUnknown, what
	// is broken.
	Reason string
	// Subject is decoded (RFC 2047) and unfolded.
	Subject string
	// MessageID is the Message-ID without angle brackets.
	MessageID string
	// From is the header From address; EnvelopeFrom the SMTP MAIL FROM ("" for the null
	// sender) and Recipients the RCPT TO addresses.
	From         string
	EnvelopeFrom string
	Recipients   []string
	// Tokens are the token candidates of the message itself, in the order they are to be
	// tried: the Subject, then In-Reply-To and References (our Message-ID is
	// <TOKEN@replydomain>), then the recipients (reply+TOKEN@…, unsubscribe+TOKEN@…). None is
	// verified; postoffice.Keyring.Decode does that.
	Tokens []string
	// OriginalTokens are candidates from the message a report returns or quotes (the
	// message/rfc822 or text/rfc822-headers part of a DSN or ARF report, or the text of a
	// non-standard bounce): they say which delivery bounced or was reported. Only bounces,
	// complaints, auto-replies and unsubscribes get them; a reply earns by its own Tokens.
	OriginalTokens []string
	// ReturnTokens are the tokens of the VERP return paths (bounce+TOKEN@…) the message was
	// sent to, where bounces and RFC 3834 responders write. They name the delivery a bounce
	// is about, and never acknowledge anything.
	ReturnTokens []string
	// Failures are, for a bounce, what it says about each failed recipient (bounce.go);
	// empty when it names none.
	Failures []Failure
	// Reported is, for a complaint, the address the report says complained (ARF
	// Original-Rcpt-To, else the To of the returned message); "" when it names none.
	Reported string
}

// Limits on what ParseInbound reads, so that a hostile message costs bounded work: past
// reading the message once, every scan (phrases, codes, addresses, tokens) runs over at most
// maxScanText bytes at a time, and over at most these many parts, blocks and candidates.
// TestParseInboundBoundsItsWork holds the parser to them.
const (
	maxInboundDepth    = 16       // nested multiparts
	maxInboundParts    = 500      // MIME parts in all
	maxScanText        = 64 << 10 // text kept for bounce phrases and original tokens
	maxEmbedHeader     = 64 << 10 // of a returned message's header
	maxTokenCandidates = 100      // in each of Tokens, OriginalTokens and ReturnTokens
	maxReportBlocks    = 1000     // recipient blocks read from a delivery-status part
)

// ParseInbound parses and classifies a message that arrived by SMTP from envelopeFrom ("" or
// "<>" for the null sender) to rcpts. Returns an error when the message header cannot be
// parsed at all; a header that parses over a broken MIME body gives KindUnknown (unless
// the header alone already says it is a bounce, complaint or auto-reply).
func ParseInbound(data []byte, envelopeFrom string, rcpts []string) (*Inbound, error) {
	in, _, err := parseInbound(data, envelopeFrom, rcpts)
	return in, err
}

// parseInbound is ParseInbound, also returning what the body scan kept (nil with an error),
// so that tests can hold it to its limits.
func parseInbound(data []byte, envelopeFrom string, rcpts []string) (in *Inbound, scan *bodyScan, err error) {
	// go-message parses whatever a stranger sends; a bug in it on some input must cost that
	// message, not the receiver.
	defer func() {
		if p := recover(); p != nil {
			in, scan, err = nil, nil, fmt.Errorf("parsing the message: internal error: %v", p)
		}
	}()

	if envelopeFrom == "<>" {
		envelopeFrom = ""
	}
	in = &Inbound{EnvelopeFrom: envelopeFrom, Recipients: rcpts}

	br := bufio.NewReader(bytes.NewReader(skipMboxSeparator(data)))
	hdr, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the message header: %w", err)
	}
	if hdr.Len() == 0 {
		return nil, nil, errors.New("parsing the message header: no header fields")
	}
	h := gomail.Header{Header: message.Header{Header: hdr}}

	in.Subject = headerText(h.Header, "Subject")
	if id, err := h.MessageID(); err == nil {
		in.MessageID = id
	} else {
		in.MessageID = strings.Trim(h.Get("Message-Id"), "<> \t")
	}
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		in.From = from[0].Address
	} else {
		in.From = rawAddress(h.Get("From"))
	}
	in.Tokens = headerTokens(h, rcpts)
	for _, rcpt := range rcpts {
		if kind, tok, ok := tokenAddress(rcpt); ok && kind == "bounce" {
			in.ReturnTokens = appendTokens(in.ReturnTokens, tok)
		}
	}

	scan = &bodyScan{}
	// message.New decodes the transfer encoding and charset; an unknown one is not fatal
	// (the entity is still readable), so its error is ignored.
	e, _ := message.New(message.Header{Header: hdr}, br)
	scan.entity(e, 0)
	if scan.broken != "" {
		// Broken MIME is common in bounces; their phrases are still in the raw body, which
		// gets at least half the room.
		body := rawBody(data)
		scan.text = scan.text[:min(len(scan.text), maxScanText/2)]
		scan.text = append(scan.text, body[:min(len(body), maxScanText-len(scan.text))]...)
	}

	in.Kind, in.Reason = classify(h, in, scan)
	if in.Kind != KindReply && in.Kind != KindUnknown {
		in.OriginalTokens = without(appendTokens(scan.original, string(scan.text)), in.Tokens)
	}
	switch in.Kind {
	case KindBounce:
		in.Failures = bounceFailures(h, in, scan)
		if why := delayWarning(in.Failures, in.Subject, scan.text); why != "" {
			in.Kind, in.Reason = KindDelayed, why+"; "+in.Reason
		}
	case KindComplaint:
		in.Reported = reportedAddress(scan)
	}
	return in, scan, nil
}

// bounceFailures reads a bounce's failed recipients: the DSN's recipient blocks when it has
// them, else one failure from the text for each address X-Failed-Recipients or the text
// names (or one naming no one). A message that is a bounce only because it came to the
// return path, and says nothing of a failure, names none.
func bounceFailures(h gomail.Header, in *Inbound, s *bodyScan) []Failure {
	if len(s.status) > 0 {
		fs := ParseDeliveryStatus(s.status)
		if len(fs) == 1 && bareStatus(fs[0].Status) && fs[0].Severity != SeverityNone {
			// A report giving only a class: its human-readable part may say more.
			refine(&fs[0], s.text)
			fs[0].Severity = severityOf(fs[0].Action, fs[0].Status)
		}
		if len(fs) > 0 {
			return fs
		}
	}
	f, ok := TextFailure(s.text)
	if !ok {
		if in.Reason == returnPathReason && !dsnLike(s.text) {
			return nil
		}
		// A bounce that gives no reason: counted as soft, its reason unknown.
		f = Failure{Severity: SeveritySoft}
	}
	var rcpts []string
	for _, v := range strings.Split(h.Get("X-Failed-Recipients"), ",") {
		if a := address(v); a != "" && !contains(rcpts, a) && len(rcpts) < 20 {
			rcpts = append(rcpts, a)
		}
	}
	if len(rcpts) == 0 {
		rcpts = textRecipients(s.text)
	}
	if len(rcpts) == 0 {
		return []Failure{f}
	}
	out := make([]Failure, 0, len(rcpts))
	for _, r := range rcpts {
		f.Recipient = r
		out = append(out, f)
	}
	return out
}

// delayWarning says why a bounce is only a delay warning, or "" when it reports a failure.
// A DSN's Action fields decide when it has them: every recipient delayed (or delivered),
// none failed. Otherwise the text decides: a warning phrase, and neither a permanent status
// nor a phrase of permanent failure, in the subject or the text.
func delayWarning(fs []Failure, subject string, text []byte) string {
	delayed, failed, acted := 0, 0, false
	for _, f := range fs {
		switch f.Action {
		case "":
			continue
		case "delayed":
			delayed++
		case "failed":
			failed++
		}
		acted = true
	}
	if acted {
		if delayed > 0 && failed == 0 {
			return "Action: delayed"
		}
		return ""
	}
	for _, f := range fs {
		if c, _, _ := splitStatus(f.Status); c == 5 {
			return ""
		}
	}
	lower := asciiLower(append([]byte(subject+"\n"), text...))
	for _, p := range permanentPhrases {
		if bytes.Contains(lower, []byte(p)) {
			return ""
		}
	}
	for _, p := range delayPhrases {
		if bytes.Contains(lower, []byte(p)) {
			return fmt.Sprintf("delay warning %q", p)
		}
	}
	return ""
}

// delayPhrases are what MTAs write in a warning that delivery is still being tried (Exim,
// Sendmail, Postfix, Gmail, Exchange, OpenSMTPD, Zoho, Sun Messaging Server), lower case.
var delayPhrases = []string{
	"this is a warning message only",
	"this is a warning only",
	"has not yet been delivered",
	"hasn't been delivered yet",
	"has not been delivered yet",
	"delivery attempts will continue",
	"delivery will continue to be attempted",
	"will continue to try to deliver",
	"will keep trying to deliver",
	"has been delayed",
	"delivery is delayed",
	"message is delayed",
	"delivery has been delayed",
	"still being retried",
	"only a temporary failure report",
	"you do not need to resend",
	"could not send message for past",
	"could not send mail for past",
}

// permanentPhrases say the MTA gave up, whatever else the text says, lower case.
var permanentPhrases = []string{
	"failed permanently",
	"permanent failure",
	"permanent error",
	"permanent fatal error",
	"gave up",
	"giving up",
	"will not be retried",
	"message will be deleted from queue",
}

// reportedAddress is the complainant of an abuse report.
func reportedAddress(s *bodyScan) string {
	for _, b := range fieldBlocks(s.feedback) {
		for _, key := range []string{"original-rcpt-to", "removal-recipient"} {
			if a := address(typedValue(b[key])); a != "" {
				return a
			}
		}
	}
	return s.originalTo
}

// rawAddress is the address in a From that does not parse, as bounces write it
// ("MAILER-DAEMON", "postmaster (Mail Delivery System)"): what is inside angle brackets,
// else the first word outside comments.
func rawAddress(v string) string {
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		a, _, _ := strings.Cut(v[i+1:], ">")
		return strings.TrimSpace(a)
	}
	var b strings.Builder
	depth := 0
	for _, c := range v {
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(c)
		}
	}
	if f := strings.Fields(b.String()); len(f) > 0 {
		return f[0]
	}
	return ""
}

// skipMboxSeparator drops a leading mbox "From " line, which local mail tools leave on
// messages saved from a mailbox; it is not a header field.
func skipMboxSeparator(data []byte) []byte {
	if !bytes.HasPrefix(data, []byte("From ")) {
		return data
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[i+1:]
	}
	return data
}

// rawBody is what follows the first empty line.
func rawBody(data []byte) []byte {
	for i := 0; i < len(data); i++ {
		if data[i] != '\n' {
			continue
		}
		rest := data[i+1:]
		if bytes.HasPrefix(rest, []byte("\n")) {
			return rest[1:]
		}
		if bytes.HasPrefix(rest, []byte("\r\n")) {
			return rest[2:]
		}
	}
	return nil
}

// headerText is a header field decoded (RFC 2047); with an unknown charset, the raw value.
func headerText(h message.Header, key string) string {
	s, err := h.Text(key)
	if err != nil {
		return h.Get(key)
	}
	return s
}

// headerTokens returns the candidates of the message itself in the order they are tried.
func headerTokens(h gomail.Header, rcpts []string) []string {
	var found []string
	// The subject decoded, then raw: a subject in a charset we can't decode may still carry
	// the ASCII token inside its encoded word.
	found = appendTokens(found, headerText(h.Header, "Subject"))
	found = appendTokens(found, h.Get("Subject"))
	for _, key := range []string{"In-Reply-To", "References"} {
		ids, err := h.MsgIDList(key)
		if err != nil {
			// A malformed list still separates its ids with <, > and @.
			found = appendTokens(found, h.Get(key))
			continue
		}
		for _, id := range ids {
			left, _, _ := strings.Cut(id, "@")
			found = appendTokens(found, left)
		}
	}
	for _, rcpt := range rcpts {
		// The return path's token is not the message's own: see Inbound.ReturnTokens.
		if kind, tok, ok := tokenAddress(rcpt); ok && kind != "bounce" {
			found = appendTokens(found, tok)
		}
	}
	return found
}

// tokenAddress splits an address we issued, reply+TOKEN@domain, unsubscribe+TOKEN@domain or
// bounce+TOKEN@domain (the VERP return path), into its kind ("reply", "unsubscribe" or
// "bounce") and the text after the plus. The local part is
// matched in lower case: tokens are lowercase, and some MTAs change the case of addresses.
func tokenAddress(addr string) (kind, rest string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "", false
	}
	local := strings.ToLower(strings.Trim(addr[:at], `"`))
	for _, k := range []string{"reply", "unsubscribe", "bounce"} {
		if r, found := strings.CutPrefix(local, k+"+"); found {
			return k, r, true
		}
	}
	return "", "", false
}

// appendTokens appends the candidates in s that dst lacks, up to maxTokenCandidates in dst,
// looking at the first maxScanText bytes of s: FindToken's work grows with the square of the
// candidates it finds, and a stranger's 10 MB subject could hold 400,000 of them.
func appendTokens(dst []string, s string) []string {
	if len(dst) >= maxTokenCandidates {
		return dst
	}
	for _, t := range postoffice.FindToken(s[:min(len(s), maxScanText)]) {
		if len(dst) >= maxTokenCandidates {
			break
		}
		if !contains(dst, t) {
			dst = append(dst, t)
		}
	}
	return dst
}

// without returns the tokens of list that are not in drop.
func without(list, drop []string) []string {
	var out []string
	for _, t := range list {
		if !contains(drop, t) {
			out = append(out, t)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// bodyScan is what walking the MIME tree found.
type bodyScan struct {
	parts          int
	deliveryStatus bool   // a message/delivery-status part (RFC 3464)
	feedbackReport bool   // a message/feedback-report part (RFC 5965)
	jmrp           bool   // a returned message carrying Microsoft's complaint header
	text           []byte // the first maxScanText bytes of text and status parts
	status         []byte // the message/delivery-status parts, up to maxScanText
	feedback       []byte // the message/feedback-report part, up to maxScanText
	original       []string
	originalTo     string // the To of the first returned message
	broken         string // the first structural fault, or ""
}

// entity walks e and its parts depth first.
func (s *bodyScan) entity(e *message.Entity, depth int) {
	if s.parts >= maxInboundParts {
		s.fail(fmt.Sprintf("more than %d MIME parts", maxInboundParts))
		return
	}
	s.parts++
	mt, params, err := mime.ParseMediaType(e.Header.Get("Content-Type"))
	if err != nil {
		raw := strings.ToLower(strings.TrimSpace(e.Header.Get("Content-Type")))
		if strings.HasPrefix(raw, "multipart/") {
			s.fail("malformed Content-Type: " + err.Error())
			return
		}
		// A bad non-multipart type is read as text/plain (RFC 2045 section 5.2).
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if depth >= maxInboundDepth {
			s.fail(fmt.Sprintf("multiparts nested deeper than %d", maxInboundDepth))
			return
		}
		if params["boundary"] == "" {
			s.fail(mt + " without a boundary")
			return
		}
		mr := e.MultipartReader()
		for n := 0; ; n++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				return
			}
			if err != nil && n > 0 && strings.HasSuffix(err.Error(), ": EOF") {
				// No closing boundary: bounces often cut the returned message short. What
				// was read stands.
				return
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				s.fail(err.Error())
				return
			}
			s.entity(p, depth+1)
			if s.broken != "" {
				return
			}
		}
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		s.deliveryStatus = true
		s.status = s.readText(e.Body, s.status)
	case mt == "message/feedback-report":
		s.feedbackReport = true
		s.feedback = s.readText(e.Body, s.feedback)
	case mt == "message/rfc822" || mt == "message/global" || mt == "text/rfc822-headers" || mt == "message/global-headers":
		s.embedded(e.Body)
	case strings.HasPrefix(mt, "text/"):
		s.readText(e.Body, nil)
	}
}

func (s *bodyScan) fail(reason string) {
	if s.broken == "" {
		s.broken = strings.Join(strings.Fields(reason), " ")
	}
}

// readText keeps text up to maxScanText in all (a newline after each part included), and
// appends it to also (returned) within the same bound. Read errors (a bad base64 line) are
// not structural: what was read is kept.
func (s *bodyScan) readText(r io.Reader, also []byte) []byte {
	room := maxScanText - len(s.text) - 1
	if room <= 0 {
		return also
	}
	b, _ := io.ReadAll(io.LimitReader(r, int64(room)))
	s.text = append(s.text, b...)
	s.text = append(s.text, '\n')
	if n := min(len(b), maxScanText-len(also)-1); n > 0 {
		also = append(also, b[:n]...)
		also = append(also, '\n')
	}
	return also
}

// embedded reads the header of a returned message for the tokens it carries. It is often
// truncated, so a parse error keeps what was read.
func (s *bodyScan) embedded(r io.Reader) {
	hdr, _ := textproto.ReadHeader(bufio.NewReader(io.LimitReader(r, maxEmbedHeader)))
	if hdr.Has("X-Hmxmroriginalrecipient") {
		s.jmrp = true
	}
	h := gomail.Header{Header: message.Header{Header: hdr}}
	s.original = appendTokens(s.original, headerText(h.Header, "Subject"))
	if id, err := h.MessageID(); err == nil {
		left, _, _ := strings.Cut(id, "@")
		s.original = appendTokens(s.original, left)
	}
	for _, key := range []string{"In-Reply-To", "References", "To", "Reply-To"} {
		s.original = appendTokens(s.original, h.Get(key))
	}
	if s.originalTo == "" {
		s.originalTo = address(h.Get("To"))
	}
}

// classify decides the kind. The order matters: reports first (an ARF report or a DSN may
// also say Auto-Submitted), then the signs of a bounce that follows no standard, then the
// unsubscribe address (Apple Mail marks its unsubscribe message auto-replied), then
// auto-replies, then a broken body; the rest are replies.
func classify(h gomail.Header, in *Inbound, s *bodyScan) (InboundKind, string) {
	mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	reportType := strings.ToLower(params["report-type"])
	subject := strings.ToLower(strings.TrimSpace(in.Subject))

	switch {
	case mt == "multipart/report" && reportType == "feedback-report":
		return KindComplaint, "multipart/report; report-type=feedback-report"
	case s.feedbackReport:
		return KindComplaint, "message/feedback-report part"
	case s.jmrp:
		return KindComplaint, "returned message with X-HmXmrOriginalRecipient (Microsoft JMRP)"
	case mt == "multipart/report" && (reportType == "delivery-status" || reportType == "global-delivery-status"):
		return KindBounce, "multipart/report; report-type=" + reportType
	case s.deliveryStatus:
		return KindBounce, "message/delivery-status part"
	case h.Has("X-Failed-Recipients"):
		return KindBounce, "X-Failed-Recipients"
	}
	if p := matchPrefix(subject, bounceSubjects); p != "" {
		return KindBounce, fmt.Sprintf("bounce subject %q", p)
	}
	if who := daemonAddress(in.From); who != "" {
		return KindBounce, "From " + who
	}
	if who := daemonAddress(in.EnvelopeFrom); who != "" {
		return KindBounce, "envelope sender " + who
	}
	// No person sends from the null return path (RFC 3834 section 3.3 has responders use it)
	// or from a no-reply address: what such a sender says is a bounce or an auto-reply.
	automated := ""
	switch {
	case in.EnvelopeFrom == "":
		automated = "null envelope sender"
	case noReplyAddress(in.From):
		automated = "From " + in.From
	}
	if automated != "" && bytes.Contains(bytes.ToLower(s.text), []byte(`"notificationtype":"complaint"`)) {
		return KindComplaint, automated + " and an Amazon SES complaint notification"
	}
	if automated != "" && dsnLike(s.text) {
		return KindBounce, automated + " and delivery-failure text"
	}

	for _, rcpt := range in.Recipients {
		if kind, _, ok := tokenAddress(rcpt); ok && kind == "unsubscribe" {
			return KindUnsubscribe, "sent to " + rcpt
		}
	}
	if strings.EqualFold(strings.TrimSpace(h.Get("X-Apple-Unsubscribe")), "true") {
		return KindUnsubscribe, "X-Apple-Unsubscribe: true"
	}

	if v := strings.TrimSpace(h.Get("Auto-Submitted")); v != "" {
		kw, _, _ := strings.Cut(v, ";")
		if !strings.EqualFold(strings.TrimSpace(kw), "no") {
			return KindAutoReply, "Auto-Submitted: " + v
		}
	}
	if mt == "multipart/report" && reportType == "disposition-notification" {
		return KindAutoReply, "read receipt (report-type=disposition-notification)"
	}
	for _, key := range []string{"X-Autoreply", "X-Autorespond", "X-Autoresponder"} {
		if h.Has(key) {
			return KindAutoReply, key
		}
	}
	switch p := strings.ToLower(strings.TrimSpace(h.Get("Precedence"))); p {
	case "auto_reply", "bulk", "junk", "list":
		return KindAutoReply, "Precedence: " + p
	}
	if strings.EqualFold(strings.TrimSpace(h.Get("X-Apple-Action")), "vacation") {
		return KindAutoReply, "X-Apple-Action: VACATION"
	}
	// A person's reply comes straight from her; list software adds these to what it sends.
	for _, key := range []string{"List-Id", "Mailing-List", "X-Mlserver", "X-Ml-Name"} {
		if h.Has(key) {
			return KindAutoReply, "mailing list (" + key + ")"
		}
	}
	if p := matchPrefix(subject, autoReplySubjects); p != "" {
		return KindAutoReply, fmt.Sprintf("auto-reply subject %q", p)
	}
	if automated != "" {
		return KindAutoReply, automated
	}
	// Only notifications are sent to a return path (RFC 5321 section 4.5.5); a person's
	// reply goes to From or Reply-To. What comes there and is no auto-reply is a bounce.
	if toReturnPathOnly(in.Recipients) {
		return KindBounce, returnPathReason
	}

	if s.broken != "" {
		return KindUnknown, "broken MIME: " + s.broken
	}
	return KindReply, ""
}

const returnPathReason = "sent to the VERP return path"

// toReturnPathOnly reports whether every recipient is a bounce+ address.
func toReturnPathOnly(rcpts []string) bool {
	for _, r := range rcpts {
		if kind, _, ok := tokenAddress(r); !ok || kind != "bounce" {
			return false
		}
	}
	return len(rcpts) > 0
}

// Subject beginnings of non-standard bounces, lower case.
var bounceSubjects = []string{
	"undelivered mail returned to sender",
	"mail delivery failed",
	"mail delivery failure",
	"mail delivery system",
	"mail system error",
	"delivery status notification",
	"message delivery failure",
	"delivery failure",
	"delivery failed",
	"delivery notification: delivery has failed",
	"failure notice",
	"returned mail:",
	"undeliverable:",
	"undeliverable mail",
	"undeliverable message",
	"undelivered mail",
	"nondeliverable mail",
	"non-delivery report",
	"non delivery report",
	"could not send message",
	"warning: could not send message",
	"permanent delivery failure",
	"email bounce notification",
}

// Subject beginnings of auto-replies (vacation notices), lower case.
var autoReplySubjects = []string{
	"auto:",
	"auto reply",
	"auto-reply",
	"autoreply",
	"auto response",
	"auto-response",
	"autoresponse",
	"autorespons",
	"automatic reply",
	"automatic response",
	"automated reply",
	"automated response",
	"out of office",
	"out of the office",
	"ooo:",
	"away from the office",
	"away from my",
	"on vacation",
	"vacation",
	"abwesenheit",
	"automatische antwort",
	"réponse automatique",
	"respuesta automática",
	"risposta automatica",
	"automatisch antwoord",
	"afwezig",
	"frånvaro",
	"fravær",
	"自動応答",
	"自动回复",
}

// matchPrefix returns the entry of prefixes that s begins with, or "".
func matchPrefix(s string, prefixes []string) string {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return p
		}
	}
	return ""
}

// daemonAddress returns the local part when addr is a mail system's own address, which
// sends bounces and never a person's reply.
func daemonAddress(addr string) string {
	switch l := localPart(addr); l {
	case "mailer-daemon", "mailer_daemon", "mail-daemon", "maildaemon", "postmaster", "post_master",
		"mail.delivery.system", "mail-delivery-system":
		return l
	}
	return ""
}

// noReplyAddress reports whether addr is a no-reply address, which only programs send from.
func noReplyAddress(addr string) bool {
	switch localPart(addr) {
	case "no-reply", "noreply", "no_reply", "do-not-reply", "donotreply", "do_not_reply":
		return true
	}
	return false
}

// localPart is the lowercase local part of an address ("MAILER-DAEMON" alone is one too).
func localPart(addr string) string {
	local, _, _ := strings.Cut(addr, "@")
	return strings.ToLower(strings.TrimSpace(local))
}

// Phrases of delivery-failure text, lower case: enough of them tells a bounce that follows
// no standard from a vacation notice sent with the null sender.
var dsnPhrases = []string{
	"final-recipient:",
	"diagnostic-code:",
	"could not be delivered",
	"couldn't be delivered",
	"was not delivered",
	"undeliverable",
	"delivery has failed",
	"delivery to the following recipient",
	"permanent error",
	"permanent fatal error",
	"failed permanently",
	"user unknown",
	"unknown user",
	"no such user",
	"mailbox unavailable",
	"mailbox is full",
	"recipient address rejected",
	"returned to sender",
	"unable to deliver",
	"this is the mail system at host",
	"mail delivery software",
	"delivery status notification",
	"attempting to deliver",
	"envelope expired",
	"requested action not taken",
	"\"notificationtype\":\"bounce\"",
}

func dsnLike(text []byte) bool {
	lower := bytes.ToLower(text)
	for _, p := range dsnPhrases {
		if bytes.Contains(lower, []byte(p)) {
			return true
		}
	}
	return false
}
