package mailer

import (
	"bytes"
	"fmt"
	"html"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"pointpost/postoffice"
)

// A skeleton is a job's whole MIME header, encoded once with go-message, cut at the fields
// that change per consumer: the patent's "first portion duplicated, second portion
// replaced" (claims 5-7) applied to the message rather than only the body. Building a message
// is then appends, which is what lets one mail server write thousands a second.
type skeleton struct {
	literals [][]byte // literals[i] precedes slot i; the last one closes the header
	slots    []slot
}

type slot int

const (
	slotTo slot = iota
	slotSubject
	slotDate
	slotMessageID
	slotReplyTo
	slotListUnsubscribe
	slotProviderArgs
	slotCount
)

// providerArgs are the header fields that hand each sending provider the delivery's token as
// its custom argument (SendGrid unique_args, Mailgun user-variables, Postmark metadata, an SES
// message tag), so its events name the delivery even where the Message-ID is rewritten. They
// carry nothing the Message-ID does not, so every message has them, whatever the relay; a
// relay that knows none of them passes them on as any X- field. Tokens are ASCII letters and
// digits, which SES allows in a tag value.
var providerArgs = [...]struct{ name, before, after string }{
	{"X-SMTPAPI", `{"unique_args":{"pointpost_token":"`, `"}}`},
	{"X-Mailgun-Variables", `{"pointpost_token":"`, `"}`},
	{"X-PM-Metadata-pointpost_token", ``, ``},
	{"X-SES-MESSAGE-TAGS", `pointpost_token=`, ``},
}

// marker is what a slot holds while go-message writes the skeleton; it has no spaces so
// header folding never splits it.
func (s slot) marker() string { return fmt.Sprintf("@@pointpost-slot-%d@@", s) }

// Addresses are where a message's links and replies point.
type Addresses struct {
	From mail.Address
	// ReplyDomain takes replies (reply+TOKEN@domain) and carries the Message-IDs.
	ReplyDomain string
	// BaseURL is the consumer web server for acknowledgement, page and unsubscribe links.
	BaseURL string
	// PostalAddress is the operator's postal address, shown in every message's footer as
	// bulk-mail law asks (CAN-SPAM); it may span lines. Empty leaves the line out.
	PostalAddress string
}

// jobMessages is one job compiled for sending: a skeleton and templates per format.
type jobMessages struct {
	job    *postoffice.Job
	addr   Addresses
	text   *formatMessage
	html   *formatMessage
	issuer string
	// needsAccount is set when a template links to the account page, whose token costs an
	// HMAC of its own.
	needsAccount bool
}

type formatMessage struct {
	skeleton skeleton
	subject  *postoffice.Template
	body     *postoffice.Template
	html     bool
	footer   footer
}

// A footer ends every message, after the issuer's content: why the consumer gets it, the
// unsubscribe link (the List-Unsubscribe https URL) and the operator's postal address. It
// is the same for the whole job but for the token in the link, and is encoded once: every
// token is TokenLen characters that quoted-printable leaves as they are, so they land at
// the same places of the encoded footer in every message.
type footer struct {
	head, tail []byte // the footer's text before and after the token
	encoded    []byte // head, a stand-in token and tail, quoted-printable, on lines of their own
	tokenAt    []int  // where in encoded each character of the token goes
	html       bool
}

func compileJob(job *postoffice.Job, text, html *postoffice.Message, addr Addresses) (*jobMessages, error) {
	jm := &jobMessages{job: job, addr: addr, issuer: job.IssuerName}
	for _, m := range []*postoffice.Message{text, html} {
		if m == nil {
			continue
		}
		fm, err := compileFormat(job, m, addr)
		if err != nil {
			return nil, fmt.Errorf("job %d %s message: %w", job.Key, m.Type, err)
		}
		if m.Type == postoffice.MessageHTML {
			jm.html = fm
		} else {
			jm.text = fm
		}
		jm.needsAccount = jm.needsAccount || fm.subject.UsesTag("getAccountURL") || fm.body.UsesTag("getAccountURL")
	}
	if jm.text == nil && jm.html == nil {
		return nil, fmt.Errorf("job %d has no message", job.Key)
	}
	return jm, nil
}

func compileFormat(job *postoffice.Job, m *postoffice.Message, addr Addresses) (*formatMessage, error) {
	fm := &formatMessage{html: m.Type == postoffice.MessageHTML}
	fm.footer = compileFooter(job.IssuerName, addr, fm.html)
	var err error
	if fm.subject, err = postoffice.ParseTemplate(m.Subject); err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	if fm.body, err = postoffice.ParseTemplate(m.Body); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	var h gomail.Header
	// WriteHeader writes fields last-added first, so they are added in reverse.
	h.Set("X-Pointpost-Job", fmt.Sprint(job.Key))
	h.Set(providerArgs[0].name, slotProviderArgs.marker())
	h.Set("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	h.Set("List-Unsubscribe", slotListUnsubscribe.marker())
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	ctype := "text/plain"
	if fm.html {
		ctype = "text/html"
	}
	h.SetContentType(ctype, map[string]string{"charset": "utf-8"})
	h.Set("MIME-Version", "1.0")
	h.Set("Message-ID", slotMessageID.marker())
	h.Set("Date", slotDate.marker())
	h.Set("Subject", slotSubject.marker())
	h.Set("Reply-To", slotReplyTo.marker())
	h.Set("To", slotTo.marker())
	h.SetAddressList("From", []*gomail.Address{{Name: addr.From.Name, Address: addr.From.Address}})
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h.Header.Header); err != nil {
		return nil, err
	}
	fm.skeleton = cutSkeleton(buf.Bytes())
	return fm, nil
}

// cutSkeleton splits an encoded header at the slot markers.
func cutSkeleton(header []byte) skeleton {
	var sk skeleton
	rest := header
	for {
		at, which := -1, slot(0)
		for s := slot(0); s < slotCount; s++ {
			if i := bytes.Index(rest, []byte(s.marker())); i >= 0 && (at < 0 || i < at) {
				at, which = i, s
			}
		}
		if at < 0 {
			sk.literals = append(sk.literals, rest)
			return sk
		}
		sk.literals = append(sk.literals, rest[:at])
		sk.slots = append(sk.slots, which)
		rest = rest[at+len(which.marker()):]
	}
}

// links returns the consumer's URLs for a token.
func (a *Addresses) links(token string) (ack, page, unsubscribe string) {
	return postoffice.LinksFor(a.BaseURL, token)
}

// build writes one consumer's message into dst and returns it. The format follows the
// consumer's mail client (claim 3); a job with one format sends that one to everyone.
func (jm *jobMessages) build(dst []byte, r *postoffice.Recipient, token, accountToken, date string, scratch []byte) (msg, scratchOut []byte) {
	fm := jm.text
	if (r.WantsHTML() && jm.html != nil) || fm == nil {
		fm = jm.html
	}
	ack, page, unsub := jm.addr.links(token)
	v := postoffice.TagValues{Consumer: &r.Consumer, Token: token, AckURL: ack, PageURL: page,
		UnsubscribeURL: unsub, IssuerName: jm.issuer, JobName: jm.job.Name}
	if accountToken != "" {
		v.AccountURL = postoffice.AccountURL(jm.addr.BaseURL, accountToken)
	}
	for i, s := range fm.skeleton.slots {
		dst = append(dst, fm.skeleton.literals[i]...)
		switch s {
		case slotTo:
			dst = appendAddress(dst, r.Consumer.FullName(), r.Consumer.Email)
		case slotSubject:
			scratch = fm.subject.Append(scratch[:0], &v, false)
			scratch = append(scratch, " [#"...)
			scratch = append(scratch, token...)
			scratch = append(scratch, ']')
			dst = appendHeaderText(dst, scratch)
		case slotDate:
			dst = append(dst, date...)
		case slotMessageID:
			dst = append(dst, '<')
			dst = append(dst, token...)
			dst = append(dst, '@')
			dst = append(dst, jm.addr.ReplyDomain...)
			dst = append(dst, '>')
		case slotReplyTo:
			dst = append(dst, "<reply+"...)
			dst = append(dst, token...)
			dst = append(dst, '@')
			dst = append(dst, jm.addr.ReplyDomain...)
			dst = append(dst, '>')
		case slotListUnsubscribe:
			dst = append(dst, '<')
			dst = append(dst, unsub...)
			dst = append(dst, ">, <mailto:unsubscribe+"...)
			dst = append(dst, token...)
			dst = append(dst, '@')
			dst = append(dst, jm.addr.ReplyDomain...)
			dst = append(dst, '>')
		case slotProviderArgs:
			dst = appendProviderArgs(dst, token)
		}
	}
	dst = append(dst, fm.skeleton.literals[len(fm.skeleton.slots)]...)
	scratch = fm.body.Append(scratch[:0], &v, fm.html)
	dst = fm.appendBody(dst, scratch, token)
	return dst, scratch
}

// appendProviderArgs writes the providerArgs fields' values, the first one's name being the
// skeleton's.
func appendProviderArgs(dst []byte, token string) []byte {
	for i, a := range providerArgs {
		if i > 0 {
			dst = append(dst, "\r\n"...)
			dst = append(dst, a.name...)
			dst = append(dst, ": "...)
		}
		dst = append(dst, a.before...)
		dst = append(dst, token...)
		dst = append(dst, a.after...)
	}
	return dst
}

// compileFooter writes and encodes a job's footer.
func compileFooter(issuer string, addr Addresses, isHTML bool) footer {
	f := footer{html: isHTML}
	f.head, f.tail = footerText(issuer, addr, isHTML)
	standIn := func(c byte) []byte {
		return appendQuotedPrintable(nil, slices.Concat(f.head, bytes.Repeat([]byte{c}, postoffice.TokenLen), f.tail))
	}
	a, b := standIn('a'), standIn('b')
	for i := range a {
		if a[i] != b[i] {
			f.tokenAt = append(f.tokenAt, i)
		}
	}
	f.encoded = a
	return f
}

// footerText writes the footer, cut where the token goes. Consumers join the program, not
// an issuer: the footer says she is a member and whose offer this is.
func footerText(issuer string, addr Addresses, isHTML bool) (head, tail []byte) {
	reason := "You receive this because you are a member of the Pointpost rewards program."
	if issuer = strings.Join(strings.Fields(issuer), " "); issuer != "" {
		reason += " This offer is from " + issuer + "."
	}
	_, _, unsubPrefix := postoffice.LinksFor(addr.BaseURL, "")
	var postal []string
	for line := range strings.Lines(strings.ReplaceAll(addr.PostalAddress, "\r", "")) {
		if line = strings.TrimSpace(line); line != "" {
			postal = append(postal, line)
		}
	}
	if !isHTML {
		head = []byte("\n-- \n" + reason + "\nUnsubscribe: " + unsubPrefix)
		if len(postal) > 0 {
			tail = []byte("\n" + strings.Join(postal, "\n"))
		}
		return head, tail
	}
	const grey = "color:#6b6b6b"
	head = []byte(`<div data-testid="footer" style="margin-top:24px;font-size:12px;line-height:1.5;` + grey + `">` +
		`<p style="margin:0">` + html.EscapeString(reason) + `</p>` +
		`<p style="margin:0"><a data-testid="footer-unsubscribe" style="` + grey + `" href="` + html.EscapeString(unsubPrefix))
	tailText := `">Unsubscribe</a></p>`
	if len(postal) > 0 {
		for i, line := range postal {
			postal[i] = html.EscapeString(line)
		}
		tailText += `<p data-testid="footer-address" style="margin:0">` + strings.Join(postal, "<br>") + `</p>`
	}
	return head, []byte(tailText + "</div>")
}

// appendBody encodes a rendered body with the footer: at the end of a text one, before
// the closing body tag of an HTML one (at the end when it has none), on lines of its own.
func (fm *formatMessage) appendBody(dst, body []byte, token string) []byte {
	var after []byte
	if fm.html {
		if at := lastIndexFold(body, "</body"); at >= 0 {
			body, after = body[:at], trimLineEnd(body[at:])
		}
	}
	if body = trimLineEnd(body); len(body) > 0 {
		dst = appendQuotedPrintable(dst, body)
	}
	dst = fm.footer.appendEncoded(dst, token)
	if len(after) > 0 {
		dst = appendQuotedPrintable(dst, after)
	}
	return dst
}

// appendEncoded appends the encoded footer with token in its link.
func (f *footer) appendEncoded(dst []byte, token string) []byte {
	plain := len(token) == len(f.tokenAt)
	for i := 0; plain && i < len(token); i++ {
		plain = token[i] > ' ' && token[i] < 127 && token[i] != '='
	}
	if !plain { // no token a Keyring makes, but written rightly all the same
		if f.html {
			token = html.EscapeString(token)
		}
		return appendQuotedPrintable(dst, slices.Concat(f.head, []byte(token), f.tail))
	}
	n := len(dst)
	dst = append(dst, f.encoded...)
	for i, at := range f.tokenAt {
		dst[n+at] = token[i]
	}
	return dst
}

// trimLineEnd is b without one final line break.
func trimLineEnd(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// lastIndexFold returns the index of the last ASCII-case-insensitive instance of lower (in
// lowercase, its first character not a letter) in s, or -1.
func lastIndexFold(s []byte, lower string) int {
	for i := len(s) - len(lower); i >= 0; i-- {
		// Only where the first character is: most bytes are skipped at once.
		if i = bytes.LastIndexByte(s[:i+1], lower[0]); i < 0 {
			return -1
		}
		j := 0
		for ; j < len(lower); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
		}
		if j == len(lower) {
			return i
		}
	}
	return -1
}

// appendAddress writes a mailbox, encoding a non-ASCII display name (RFC 2047).
func appendAddress(dst []byte, name, email string) []byte {
	if name == "" {
		return append(dst, email...)
	}
	switch {
	case len(name) <= maxPlainHeader && isPlainPhrase(name):
		dst = append(dst, name...)
	case len(name) <= maxPlainHeader && isASCII(name) && !strings.Contains(name, "=?"):
		dst = append(dst, '"')
		for i := 0; i < len(name); i++ {
			if name[i] == '"' || name[i] == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, name[i])
		}
		dst = append(dst, '"')
	default:
		dst = appendEncodedWords(dst, []byte(name), true)
	}
	dst = append(dst, " <"...)
	dst = append(dst, email...)
	return append(dst, '>')
}

// maxPlainHeader is the longest value written as is; longer ones become encoded words on
// folded lines, so no header line nears the 998-character limit.
const maxPlainHeader = 200

// appendHeaderText writes an unstructured header value: as is when it is short printable
// ASCII that no reader could take for an encoded word, else as RFC 2047 encoded words.
// Line breaks in the value never reach the header.
func appendHeaderText(dst, text []byte) []byte {
	if len(text) <= maxPlainHeader && isASCII(string(text)) && !bytes.Contains(text, []byte("=?")) {
		return append(dst, text...)
	}
	return appendEncodedWords(dst, text, false)
}

// appendEncodedWords writes text as "Q" encoded words (RFC 2047) of at most 75 characters,
// one per folded line, cutting only between runes. CR and LF become spaces; in a phrase
// (a display name) only the characters RFC 2047 section 5(3) allows stay unencoded.
func appendEncodedWords(dst, text []byte, phrase bool) []byte {
	const prefix, suffix, limit = "=?utf-8?q?", "?=", 75
	text = bytes.ToValidUTF8(text, []byte("\uFFFD"))
	width := len(prefix) + len(suffix)
	dst = append(dst, prefix...)
	for len(text) > 0 {
		_, size := utf8.DecodeRune(text)
		need := 0
		for _, c := range text[:size] {
			need += qWidth(c, phrase)
		}
		if width+need > limit {
			dst = append(dst, suffix...)
			dst = append(dst, "\r\n "...)
			dst = append(dst, prefix...)
			width = len(prefix) + len(suffix)
		}
		for _, c := range text[:size] {
			switch {
			case c == ' ' || c == '\r' || c == '\n' || c == '\t':
				dst = append(dst, '_')
			case qWidth(c, phrase) == 1:
				dst = append(dst, c)
			default:
				dst = append(dst, '=', hexUpper[c>>4], hexUpper[c&15])
			}
		}
		width += need
		text = text[size:]
	}
	return append(dst, suffix...)
}

// qWidth is how many characters c takes in a Q encoded word.
func qWidth(c byte, phrase bool) int {
	switch {
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '\r' || c == '\n' || c == '\t':
		return 1
	case c == '!' || c == '*' || c == '+' || c == '-' || c == '/':
		return 1
	case !phrase && c > ' ' && c < 127 && c != '=' && c != '?' && c != '_' && c != '(' && c != ')' && c != '"':
		return 1
	}
	return 3
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf || s[i] < ' ' && s[i] != '\t' {
			return false
		}
	}
	return true
}

// isPlainPhrase reports whether a display name needs no quoting (RFC 5322 atoms and spaces).
func isPlainPhrase(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

const hexUpper = "0123456789ABCDEF"

// appendQuotedPrintable encodes body as quoted-printable (RFC 2045) with CRLF line ends and
// lines of at most 76 characters. Line breaks in body (LF or CRLF) stay hard breaks.
func appendQuotedPrintable(dst, body []byte) []byte {
	col := 0
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\n' || c == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			if c == '\r' {
				i++
			}
			dst = encodeTrailingSpace(dst, col)
			dst = append(dst, '\r', '\n')
			col = 0
			continue
		}
		plain := c >= 33 && c <= 126 && c != '=' || c == ' ' || c == '\t'
		width := 1
		if !plain {
			width = 3
		}
		if col+width > 75 {
			dst = append(dst, '=', '\r', '\n')
			col = 0
		}
		if plain {
			dst = append(dst, c)
		} else {
			dst = append(dst, '=', hexUpper[c>>4], hexUpper[c&15])
		}
		col += width
	}
	dst = encodeTrailingSpace(dst, col)
	return append(dst, '\r', '\n')
}

// encodeTrailingSpace encodes a space or tab that ends a line, which transport may strip,
// breaking the line softly first when the encoding would make it longer than 76.
func encodeTrailingSpace(dst []byte, col int) []byte {
	n := len(dst)
	if col == 0 || dst[n-1] != ' ' && dst[n-1] != '\t' {
		return dst
	}
	ws := dst[n-1]
	dst = dst[:n-1]
	if col-1+3 > 76 {
		dst = append(dst, '=', '\r', '\n')
	}
	return append(dst, '=', hexUpper[ws>>4], hexUpper[ws&15])
}

// dateHeader formats t as an RFC 5322 date.
func dateHeader(t time.Time) string { return t.Format(time.RFC1123Z) }
