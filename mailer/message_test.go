package mailer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"golang.org/x/net/html"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/web/pagetest"
)

// testKeyring returns a keyring with one fixed secret.
func testKeyring(t testing.TB) *postoffice.Keyring {
	t.Helper()
	k, err := postoffice.NewKeyring(1, map[int][]byte{1: []byte("mailer-tests-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var testAddresses = Addresses{
	From:        mail.Address{Name: "Acme Rewards", Address: "rewards@acme.example"},
	ReplyDomain: "reply.acme.example",
	BaseURL:     "https://pp.example/", // the trailing slash must not double in links
	// Two lines, with characters HTML must escape.
	PostalAddress: "Acme Rewards <Ltd> & Co\r\n1 Main Street, Oslo",
}

// textFooter is what a text message must end with, before the final line break.
func textFooter(token string) string {
	return "\n-- \nYou receive this because you are a member of the Pointpost rewards program. This offer is from Acme & Sons.\n" +
		"Unsubscribe: https://pp.example/u/" + token + "\nAcme Rewards <Ltd> & Co\n1 Main Street, Oslo"
}

const (
	textSubject = "<_&getUserName_>, points for you"
	textBody    = "Dear <_&getFullName_> of <_&getCity_>,\nearn here: <_&getAckURL_>\n" +
		"see the page: <_&getWebPageURL_>\n  \nunsubscribe: <_&getUnsubscribeURL_>\n-- \n<_&getIssuerName_>"
	htmlSubject = "<_&getUserName_>, points await"
	htmlBody    = "<p>Dear <_&getFullName_> of <_&getCity_>,</p>\n<p><a href=\"<_&getAckURL_>\">earn</a> " +
		"in <_&getJobName_></p>\n<p><a href=\"<_&getUnsubscribeURL_>\">unsubscribe</a></p>"
)

func textMessage() *postoffice.Message {
	return &postoffice.Message{ID: 1, Type: rewards.FormatText, Subject: textSubject, Body: textBody}
}

func htmlMessage() *postoffice.Message {
	return &postoffice.Message{ID: 2, Type: rewards.FormatHTML, Subject: htmlSubject, Body: htmlBody}
}

func testJob() *postoffice.Job {
	return &postoffice.Job{Key: 77, IssuerSlug: "acme", IssuerName: "Acme & Sons", Name: "Spring <Sale> & more",
		State: postoffice.JobRunning}
}

func compileTest(t testing.TB, job *postoffice.Job, text, html *postoffice.Message) *jobMessages {
	t.Helper()
	jm, err := compileJob(job, text, html, testAddresses)
	if err != nil {
		t.Fatal(err)
	}
	return jm
}

// built is one message as a mail reader sees it.
type built struct {
	raw         []byte
	token       string
	header      gomail.Header
	contentType string
	params      map[string]string
	body        string // transfer-decoded
}

var testDate = time.Date(2026, 3, 14, 15, 9, 26, 0, time.FixedZone("", 3600))

// buildParsed builds c's message of jm and parses it back with go-message.
func buildParsed(t testing.TB, k *postoffice.Keyring, jm *jobMessages, c rewards.Consumer) built {
	t.Helper()
	r := postoffice.Recipient{DeliveryID: 9, Consumer: c}
	token := k.Encode(jm.job.Key, c.ID)
	msg, _ := jm.build(nil, &r, token, "", dateHeader(testDate), nil)
	return parseBuilt(t, msg, token)
}

func parseBuilt(t testing.TB, msg []byte, token string) built {
	t.Helper()
	checkWireFormat(t, msg)
	mr, err := gomail.CreateReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, msg)
	}
	b := built{raw: msg, token: token, header: mr.Header}
	b.contentType, b.params, err = mr.Header.ContentType()
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	part, err := mr.NextPart()
	if err != nil {
		t.Fatalf("message has no body: %v", err)
	}
	body, err := io.ReadAll(part.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	b.body = string(body)
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("a single-part message has a second part: %v", err)
	}
	return b
}

// checkWireFormat checks what any relay requires: CRLF line ends only, lines of at most 998
// characters, a header of 7-bit text, and a quoted-printable body of lines of at most 76.
func checkWireFormat(t testing.TB, msg []byte) {
	t.Helper()
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Errorf("message does not end with CRLF")
	}
	head, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no blank line after the header:\n%s", msg)
	}
	for i, line := range bytes.Split(head, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("header line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) > 998 {
			t.Errorf("header line %d is %d characters, more than 998", i+1, len(line))
		}
		for _, c := range line {
			if c >= 0x80 || c < ' ' && c != '\t' {
				t.Errorf("header line %d has byte %#x: %q", i+1, c, line)
				break
			}
		}
	}
	checkQuotedPrintable(t, body)
}

// checkQuotedPrintable checks the shape of an encoded body: CRLF lines of at most 76
// characters of printable ASCII, none ending in white space.
func checkQuotedPrintable(t testing.TB, enc []byte) {
	t.Helper()
	lines := bytes.Split(enc, []byte("\r\n"))
	if len(lines[len(lines)-1]) != 0 {
		t.Errorf("encoded body does not end with CRLF: %q", lines[len(lines)-1])
	}
	for i, line := range lines {
		if len(line) > 76 {
			t.Errorf("encoded line %d is %d characters, more than 76: %q", i+1, len(line), line)
		}
		if n := len(line); n > 0 && (line[n-1] == ' ' || line[n-1] == '\t') {
			t.Errorf("encoded line %d ends in white space: %q", i+1, line)
		}
		for _, c := range line {
			if (c < ' ' && c != '\t') || c > '~' {
				t.Errorf("encoded line %d has byte %#x: %q", i+1, c, line)
				break
			}
		}
	}
}

// noBreaks is s with each CR and LF turned into a space, as a header value shows it.
func noBreaks(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }

// crlf turns every line end of s into CRLF, as a quoted-printable round trip does.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// wantValues are the tag values a consumer's message must be rendered with, spelled out here
// rather than taken from the code under test.
func wantValues(job *postoffice.Job, c *rewards.Consumer, token string) *postoffice.TagValues {
	return &postoffice.TagValues{Consumer: c, Token: token,
		AckURL:         "https://pp.example/a/" + token,
		PageURL:        "https://pp.example/i/" + token,
		UnsubscribeURL: "https://pp.example/u/" + token,
		IssuerName:     job.IssuerName, JobName: job.Name}
}

func render(t testing.TB, src string, v *postoffice.TagValues, html bool) string {
	t.Helper()
	tpl, err := postoffice.ParseTemplate(src)
	if err != nil {
		t.Fatal(err)
	}
	return tpl.String(v, html)
}

func TestBuildPicksFormatAndHeaders(t *testing.T) {
	k := testKeyring(t)
	textC := rewards.Consumer{ID: 1001, Email: "ann@example.com", FirstName: "Ann", LastName: "Lee", City: "Oslo",
		Format: rewards.FormatText, Status: rewards.StatusActive}
	htmlC := rewards.Consumer{ID: 1002, Email: "bob@example.com", FirstName: "Bob", LastName: "Ng", City: "Lyon",
		Format: rewards.FormatHTML, Status: rewards.StatusActive}
	cases := []struct {
		name       string
		text, html *postoffice.Message
		consumer   rewards.Consumer
		wantHTML   bool
	}{
		{"both formats, text reader", textMessage(), htmlMessage(), textC, false},
		{"both formats, html reader", textMessage(), htmlMessage(), htmlC, true},
		{"text only, html reader", textMessage(), nil, htmlC, false},
		{"text only, text reader", textMessage(), nil, textC, false},
		{"html only, text reader", nil, htmlMessage(), textC, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := testJob()
			jm := compileTest(t, job, tc.text, tc.html)
			c := tc.consumer
			b := buildParsed(t, k, jm, c)
			h := &b.header
			v := wantValues(job, &c, b.token)

			from, err := h.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Name != "Acme Rewards" || from[0].Address != "rewards@acme.example" {
				t.Errorf("From = %v, %v", from, err)
			}
			to, err := h.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Name != c.FullName() || to[0].Address != c.Email {
				t.Errorf("To = %v, %v; want %q <%s>", to, err, c.FullName(), c.Email)
			}

			subjectSrc, bodySrc, wantType := textSubject, textBody, "text/plain"
			if tc.wantHTML {
				subjectSrc, bodySrc, wantType = htmlSubject, htmlBody, "text/html"
			}
			subject, err := h.Subject()
			wantSubject := render(t, subjectSrc, v, false) + " [#" + b.token + "]"
			if err != nil || subject != wantSubject {
				t.Errorf("Subject = %q, %v; want %q", subject, err, wantSubject)
			}
			found := postoffice.FindToken(subject)
			if len(found) != 1 || found[0] != b.token {
				t.Fatalf("FindToken(subject) = %q, want [%s]", found, b.token)
			}
			job2, consumer, err := k.Decode(found[0])
			if err != nil || job2 != job.Key || consumer != c.ID {
				t.Errorf("subject token decodes to job %d consumer %d (%v), want %d, %d", job2, consumer, err, job.Key, c.ID)
			}

			if id, err := h.MessageID(); err != nil || id != b.token+"@reply.acme.example" {
				t.Errorf("Message-ID = %q, %v", id, err)
			}
			if got := h.Get("Message-Id"); got != "<"+b.token+"@reply.acme.example>" {
				t.Errorf("raw Message-ID = %q", got)
			}
			replyTo, err := h.AddressList("Reply-To")
			if err != nil || len(replyTo) != 1 || replyTo[0].Address != "reply+"+b.token+"@reply.acme.example" {
				t.Errorf("Reply-To = %v, %v", replyTo, err)
			}
			wantUnsub := "<https://pp.example/u/" + b.token + ">, <mailto:unsubscribe+" + b.token + "@reply.acme.example>"
			if got := h.Get("List-Unsubscribe"); got != wantUnsub {
				t.Errorf("List-Unsubscribe = %q, want %q", got, wantUnsub)
			}
			if got := h.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
				t.Errorf("List-Unsubscribe-Post = %q", got)
			}
			if date, err := h.Date(); err != nil || !date.Equal(testDate) {
				t.Errorf("Date = %v, %v; want %v", date, err, testDate)
			}
			if got := h.Get("MIME-Version"); got != "1.0" {
				t.Errorf("MIME-Version = %q", got)
			}
			if got := h.Get("Content-Transfer-Encoding"); got != "quoted-printable" {
				t.Errorf("Content-Transfer-Encoding = %q", got)
			}
			if got := h.Get("X-Pointpost-Job"); got != "77" {
				t.Errorf("X-Pointpost-Job = %q", got)
			}
			if b.contentType != wantType || !strings.EqualFold(b.params["charset"], "utf-8") {
				t.Errorf("Content-Type = %s %v, want %s; charset=utf-8", b.contentType, b.params, wantType)
			}
			for _, name := range []string{"From", "To", "Subject", "Date", "Message-Id", "Reply-To", "Mime-Version",
				"Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post"} {
				if n := len(h.Values(name)); n != 1 {
					t.Errorf("%d %s fields, want 1", n, name)
				}
			}

			if tc.wantHTML {
				// The issuer's content, then the footer.
				if want := crlf(render(t, bodySrc, v, true)) + "\r\n"; !strings.HasPrefix(b.body, want) {
					t.Errorf("body =\n%q\nwant it to begin with\n%q", b.body, want)
				}
				checkHTMLFooter(t, b.body, b.token, []string{"Acme Rewards <Ltd> & Co", "1 Main Street, Oslo"})
			} else if want := crlf(render(t, bodySrc, v, false)+"\n"+textFooter(b.token)) + "\r\n"; b.body != want {
				t.Errorf("body =\n%q\nwant\n%q", b.body, want)
			}
		})
	}
}

func TestBuildDisplayNames(t *testing.T) {
	k := testKeyring(t)
	jm := compileTest(t, testJob(), textMessage(), nil)
	cases := []struct{ first, last string }{
		{"Ann", "Lee"},
		{"", ""}, // a bare address
		{"Zoë", "Ångström-Øster"},
		{"Jürgen", "Groß"},
		{"Li", "王小明"},
		{`Joe "The Hammer"`, "Smith"},
		{`Back\slash`, "O'Brien"},
		{"Pat", "O'Neil, Jr."},
		{"A.", "Person (dev)"},
		{"Zoë", `"Z" Müller, Jr.`}, // non-ASCII with quotes and a comma
		{"Renée", "<script>@x"},
		{"Eve\r\nBcc: victim@evil.example", "Doe"},
		{strings.Repeat("Ω", 60), strings.Repeat("long ", 20)},
	}
	for i, tc := range cases {
		c := rewards.Consumer{ID: int64(100 + i), Email: fmt.Sprintf("c%d@example.com", i), FirstName: tc.first,
			LastName: tc.last, Format: rewards.FormatText, Status: rewards.StatusActive}
		t.Run(fmt.Sprintf("%d %q", i, c.FullName()), func(t *testing.T) {
			b := buildParsed(t, k, jm, c)
			to, err := b.header.AddressList("To")
			if err != nil || len(to) != 1 {
				t.Fatalf("To %q does not parse as one address: %v, %v", b.header.Get("To"), to, err)
			}
			// Line breaks never reach a header: they become spaces.
			if want := noBreaks(c.FullName()); to[0].Name != want || to[0].Address != c.Email {
				t.Errorf("To = %q <%s>, want %q <%s> (raw %q)", to[0].Name, to[0].Address, want, c.Email, b.header.Get("To"))
			}
			// net/mail, which many readers use, must agree.
			if a, err := mail.ParseAddress(b.header.Get("To")); err != nil || a.Address != c.Email {
				t.Errorf("net/mail parses To %q as %v, %v", b.header.Get("To"), a, err)
			}
			if b.header.Has("Bcc") {
				t.Errorf("the name injected a Bcc field: %q", b.header.Get("Bcc"))
			}
		})
	}
}

func TestBuildSubjectEncoding(t *testing.T) {
	k := testKeyring(t)
	cases := []struct {
		name, subject string
		consumer      rewards.Consumer
	}{
		{"non-ASCII literal", "Grüße, <_&getUserName_> — 100 Punkte für Sie ✓", rewards.Consumer{FirstName: "Ann"}},
		{"non-ASCII value", "Hello <_&getUserName_>", rewards.Consumer{FirstName: "Zoë 王"}},
		{"CRLF in a value", "Hello <_&getUserName_>!", rewards.Consumer{FirstName: "Eve\r\nBcc: victim@evil.example\r\n\r\nbody"}},
		{"LF in a value", "Hello <_&getUserName_>!", rewards.Consumer{FirstName: "Eve\nX-Injected: yes"}},
		{"CRLF and non-ASCII", "Grüße <_&getUserName_>", rewards.Consumer{FirstName: "Eve\r\nBcc: victim@evil.example"}},
		{"encoded-word look-alike", "<_&getUserName_>", rewards.Consumer{FirstName: "=?utf-8?q?X-Evil=3A_1?= hi"}},
		{"long non-ASCII", "<_&getUserName_>", rewards.Consumer{FirstName: strings.Repeat("é", 400)}},
		{"long ASCII value", "<_&getUserName_>: <_&getAttr:blurb_>", rewards.Consumer{FirstName: "Ann",
			Attributes: map[string]string{"blurb": strings.Repeat("x", 1200)}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := &postoffice.Message{Type: rewards.FormatText, Subject: tc.subject, Body: "hi"}
			jm := compileTest(t, testJob(), msg, nil)
			c := tc.consumer
			c.ID, c.Email, c.Status = int64(500+i), fmt.Sprintf("s%d@example.com", i), rewards.StatusActive
			b := buildParsed(t, k, jm, c)
			var fields []string
			for f := b.header.Fields(); f.Next(); {
				fields = append(fields, f.Key())
			}
			slices.Sort(fields)
			want := []string{"Content-Transfer-Encoding", "Content-Type", "Date", "From", "List-Unsubscribe",
				"List-Unsubscribe-Post", "Message-Id", "Mime-Version", "Reply-To", "Subject", "To",
				"X-Mailgun-Variables", "X-Pm-Metadata-Pointpost_token", "X-Pointpost-Job", "X-Ses-Message-Tags", "X-Smtpapi"}
			if !slices.Equal(fields, want) {
				t.Errorf("header fields %q, want %q", fields, want)
			}
			subject, err := b.header.Subject()
			if err != nil {
				t.Fatal(err)
			}
			// Line breaks in a value become spaces; nothing else changes.
			wantSubject := noBreaks(render(t, tc.subject, &postoffice.TagValues{Consumer: &c}, false)) + " [#" + b.token + "]"
			if subject != wantSubject {
				t.Errorf("Subject = %q, want %q", subject, wantSubject)
			}
			if found := postoffice.FindToken(subject); !slices.Contains(found, b.token) {
				t.Errorf("the token is not found in the decoded subject %q", subject)
			}
			if want := crlf("hi\n"+textFooter(b.token)) + "\r\n"; b.body != want {
				t.Errorf("body = %q, want %q", b.body, want)
			}
		})
	}
}

func TestBuildEscapesHTMLValues(t *testing.T) {
	k := testKeyring(t)
	job := testJob()
	jm := compileTest(t, job, textMessage(), htmlMessage())
	evil := rewards.Consumer{ID: 7, Email: "evil@example.com", FirstName: "<script>", LastName: `alert("x")</script>`,
		City: "A&B's", Status: rewards.StatusActive}

	evil.Format = rewards.FormatHTML
	b := buildParsed(t, k, jm, evil)
	if strings.Contains(b.body, "<script>") || strings.Contains(b.body, `"x"`) {
		t.Errorf("HTML body carries the value unescaped:\n%s", b.body)
	}
	for _, want := range []string{"&lt;script&gt; alert(&#34;x&#34;)&lt;/script&gt;", "A&amp;B&#39;s", "Spring &lt;Sale&gt; &amp; more"} {
		if !strings.Contains(b.body, want) {
			t.Errorf("HTML body lacks %q:\n%s", want, b.body)
		}
	}
	if !strings.Contains(b.body, `<a href="https://pp.example/a/`+b.token+`">earn</a>`) {
		t.Errorf("HTML body lost its literal markup:\n%s", b.body)
	}
	// The subject is header text, never HTML.
	if s, _ := b.header.Subject(); !strings.HasPrefix(s, "<script>, points await") {
		t.Errorf("Subject = %q", s)
	}

	evil.Format = rewards.FormatText
	b = buildParsed(t, k, jm, evil)
	if !strings.Contains(b.body, `Dear <script> alert("x")</script> of A&B's,`) {
		t.Errorf("text body should carry the value as is:\n%s", b.body)
	}
}

func TestBuildReusesBuffers(t *testing.T) {
	// A worker builds into the same buffers over and over: a short message after a long one
	// must not keep any of the long one.
	k := testKeyring(t)
	jm := compileTest(t, testJob(), textMessage(), htmlMessage())
	long := rewards.Consumer{ID: 1, Email: "long@example.com", FirstName: strings.Repeat("Long", 100), City: strings.Repeat("é", 300),
		Format: rewards.FormatHTML, Status: rewards.StatusActive}
	short := rewards.Consumer{ID: 2, Email: "s@example.com", FirstName: "S", Format: rewards.FormatText, Status: rewards.StatusActive}
	var buf, scratch []byte
	date := dateHeader(testDate)
	for _, c := range []rewards.Consumer{long, short, long, short} {
		token := k.Encode(77, c.ID)
		buf, scratch = jm.build(buf[:0], &postoffice.Recipient{Consumer: c}, token, "", date, scratch)
		fresh, _ := jm.build(nil, &postoffice.Recipient{Consumer: c}, token, "", date, nil)
		if !bytes.Equal(buf, fresh) {
			t.Fatalf("message for %s built into used buffers differs from a fresh one", c.Email)
		}
	}
}

// texts returns the text nodes under n, trimmed, empty ones left out.
func texts(n *html.Node) []string {
	var out []string
	for d := range n.Descendants() {
		if d.Type == html.TextNode && strings.TrimSpace(d.Data) != "" {
			out = append(out, strings.TrimSpace(d.Data))
		}
	}
	return out
}

// checkHTMLFooter checks an HTML body ends with the footer: its reason, the unsubscribe
// link of token, and the postal address lines (none: no address element).
func checkHTMLFooter(t *testing.T, body, token string, address []string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	footers := pagetest.ByTestID(doc, "footer")
	if len(footers) != 1 {
		t.Fatalf("%d footers in\n%s", len(footers), body)
	}
	f := footers[0]
	if f.Parent.Data != "body" {
		t.Errorf("the footer is inside <%s>, not <body>", f.Parent.Data)
	}
	for next := f.NextSibling; next != nil; next = next.NextSibling {
		if next.Type == html.ElementNode || next.Type == html.TextNode && strings.TrimSpace(next.Data) != "" {
			t.Errorf("the footer is followed by %q: it must come after the issuer's content", next.Data)
		}
	}
	if got := texts(f); len(got) == 0 || !strings.HasPrefix(got[0], "You receive this because you are a member of the Pointpost rewards program.") {
		t.Errorf("footer text %q lacks the reason", got)
	}
	links := pagetest.ByTestID(f, "footer-unsubscribe")
	if len(links) != 1 || pagetest.Attr(links[0], "href") != "https://pp.example/u/"+token {
		t.Errorf("footer unsubscribe links %v, want one to https://pp.example/u/%s", links, token)
	}
	addr := pagetest.ByTestID(f, "footer-address")
	switch {
	case len(address) == 0 && len(addr) != 0:
		t.Errorf("footer has an address %q, want none", texts(addr[0]))
	case len(address) > 0 && (len(addr) != 1 || !slices.Equal(texts(addr[0]), address)):
		t.Errorf("footer address %v, want %q", addr, address)
	}
}

func TestBuildFooter(t *testing.T) {
	k := testKeyring(t)
	c := rewards.Consumer{ID: 31, Email: "zoe@example.com", FirstName: "Zoë", Status: rewards.StatusActive}
	cases := []struct {
		name         string
		issuer, body string
		html         bool
		postal       string
		wantReason   string
		wantAddress  []string
		wantBefore   string // the footer must come before this in the raw body
	}{
		{name: "text with an address", issuer: "Acme", body: "Hi <_&getUserName_>\n", postal: "Acme Ltd\n1 Main St",
			wantReason: "You receive this because you are a member of the Pointpost rewards program. This offer is from Acme.", wantAddress: []string{"Acme Ltd", "1 Main St"}},
		{name: "text without a line end or an address", issuer: "", body: "Hi",
			wantReason: "You receive this because you are a member of the Pointpost rewards program."},
		{name: "html fragment", issuer: "Bits & <Bobs>", body: "<p>Hi <_&getUserName_></p>", html: true,
			postal: "  <script>alert(1)</script> & Co  \r\n\r\n  Oslo ", wantAddress: []string{"<script>alert(1)</script> & Co", "Oslo"}},
		{name: "html document", issuer: "Acme", body: "<html><head><title>x</title></head><BODY><p>Hi</p></Body >\n</HTML>",
			html: true, postal: "Acme Ltd", wantAddress: []string{"Acme Ltd"}, wantBefore: "</Body >"},
		{name: "html document with a body tag in a comment", issuer: "Acme", html: true,
			body: "<html><body><!-- ends at </body> --><p>Hi</p></body></html>", wantBefore: "</body></html>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := testJob()
			job.IssuerName = tc.issuer
			addr := testAddresses
			addr.PostalAddress = tc.postal
			text, htm := &postoffice.Message{Type: rewards.FormatText, Subject: "s", Body: tc.body}, (*postoffice.Message)(nil)
			if tc.html {
				text, htm = nil, &postoffice.Message{Type: rewards.FormatHTML, Subject: "s", Body: tc.body}
			}
			jm, err := compileJob(job, text, htm, addr)
			if err != nil {
				t.Fatal(err)
			}
			token := k.Encode(job.Key, c.ID)
			msg, _ := jm.build(nil, &postoffice.Recipient{Consumer: c}, token, "", dateHeader(testDate), nil)
			b := parseBuilt(t, msg, token)
			wantLink := "https://pp.example/u/" + token
			if lu := b.header.Get("List-Unsubscribe"); !strings.HasPrefix(lu, "<"+wantLink+">") {
				t.Fatalf("List-Unsubscribe %q does not start with the footer's link %s", lu, wantLink)
			}
			rendered := render(t, tc.body, &postoffice.TagValues{Consumer: &c}, tc.html)
			if tc.html {
				checkHTMLFooter(t, b.body, token, tc.wantAddress)
				if tc.wantBefore != "" && strings.Index(b.body, `data-testid="footer"`) > strings.LastIndex(b.body, tc.wantBefore) {
					t.Errorf("the footer is not before %q:\n%s", tc.wantBefore, b.body)
				}
				if tc.issuer != "" {
					doc, _ := html.Parse(strings.NewReader(b.body))
					if got := texts(pagetest.ByTestID(doc, "footer")[0])[0]; got != "You receive this because you are a member of the Pointpost rewards program. This offer is from "+tc.issuer+"." {
						t.Errorf("reason %q names the wrong program", got)
					}
				}
				return
			}
			// The issuer's content, a line break, then a signature block.
			head, footer, ok := strings.Cut(b.body, "\r\n-- \r\n")
			if !ok || !strings.HasPrefix(head+"\r\n", crlf(rendered)) {
				t.Fatalf("body %q does not have the issuer's content, then a \"-- \" line", b.body)
			}
			want := []string{tc.wantReason, "Unsubscribe: " + wantLink}
			want = append(want, tc.wantAddress...)
			if got := strings.Split(strings.TrimSuffix(footer, "\r\n"), "\r\n"); !slices.Equal(got, want) {
				t.Errorf("footer lines %q, want %q", got, want)
			}
		})
	}
}

// TestBuildFooterEncoding moves the token in the footer across the places quoted-printable
// breaks lines, by the length of the base URL, and builds with tokens no keyring makes: the
// encoded footer must always decode to the right link.
func TestBuildFooterEncoding(t *testing.T) {
	k := testKeyring(t)
	c := rewards.Consumer{ID: 5, Email: "e@example.com", FirstName: "E", Status: rewards.StatusActive}
	for n := range 90 {
		addr := testAddresses
		addr.BaseURL = "https://" + strings.Repeat("p", n) + ".example"
		for _, isHTML := range []bool{false, true} {
			typ := rewards.FormatText
			if isHTML {
				typ = rewards.FormatHTML
			}
			jm, err := compileJob(testJob(), &postoffice.Message{Type: typ, Subject: "s", Body: "hi"}, nil, addr)
			if err != nil {
				t.Fatal(err)
			}
			for _, token := range []string{k.Encode(77, c.ID), "short", `odd"=<token>`} {
				msg, _ := jm.build(nil, &postoffice.Recipient{Consumer: c}, token, "", dateHeader(testDate), nil)
				b := parseBuilt(t, msg, token)
				link := addr.BaseURL + "/u/" + token
				if isHTML {
					doc, err := html.Parse(strings.NewReader(b.body))
					if err != nil {
						t.Fatal(err)
					}
					links := pagetest.ByTestID(doc, "footer-unsubscribe")
					if len(links) != 1 || pagetest.Attr(links[0], "href") != link {
						t.Fatalf("base URL of %d characters, token %q: footer links %v, want %s\n%q", len(addr.BaseURL), token, links, link, msg)
					}
				} else if !strings.Contains(b.body, "\r\nUnsubscribe: "+link+"\r\n") {
					t.Fatalf("base URL of %d characters, token %q: body lacks the link %s\n%q", len(addr.BaseURL), token, link, b.body)
				}
			}
		}
	}
}

func TestQuotedPrintableCases(t *testing.T) {
	cases := []string{
		"",
		"hello",
		"hello\n",
		"a=b\r\nc=d",
		"trailing space \nand tab\t\n",
		"trailing at end ",
		"only spaces   ",
		strings.Repeat("a", 75),
		strings.Repeat("a", 76),
		strings.Repeat("a", 74) + " \nx",  // a space in column 75 before a hard break
		strings.Repeat("a", 74) + "\t",    // a tab in column 75 at the end
		strings.Repeat("a", 74) + "é\nok", // an escape that does not fit
		strings.Repeat("a b ", 100),
		".leading dot\n.\n..\n",
		"From the start\nFrom here",
		"lone \r carriage \r\r\n returns\r",
		"\x00\x01\xff\xfe binary",
		"Grüße aus Köln — ✓",
		strings.Repeat("é", 100),
		"\n\n\n",
		"\r\n\r\n",
	}
	for _, in := range cases {
		enc := appendQuotedPrintable(nil, []byte(in))
		checkQuotedPrintable(t, enc)
		dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
		if err != nil {
			t.Errorf("decoding %q: %v", enc, err)
			continue
		}
		if want := crlf(in) + "\r\n"; string(dec) != want {
			t.Errorf("round trip of %q:\nencoded %q\ndecoded %q\nwant    %q", in, enc, dec, want)
		}
	}
	// The encoding appends: what dst held stays.
	if got := appendQuotedPrintable([]byte("keep"), []byte("x")); string(got) != "keepx\r\n" {
		t.Errorf("appendQuotedPrintable(keep, x) = %q", got)
	}
}

// TestQuotedPrintableProperty encodes random bodies built to hit the edges (long lines, white
// space next to line ends, escapes near column 76, CR and LF alone and together, any byte)
// and checks each stays within the rules and decodes to what went in.
func TestQuotedPrintableProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(76, 2045))
	pieces := []string{" ", "\t", "\n", "\r\n", "\r", "=", ".", "é", "\x00", "\xff", "a", "word "}
	for i := range 3000 {
		var in []byte
		for n := r.IntN(8); n >= 0; n-- {
			switch r.IntN(4) {
			case 0: // a run of plain text of a length near the line limit
				in = append(in, strings.Repeat(string(rune('a'+r.IntN(26))), 60+r.IntN(30))...)
			case 1: // random bytes
				for range r.IntN(40) {
					in = append(in, byte(r.IntN(256)))
				}
			default: // edge pieces
				for range r.IntN(12) {
					in = append(in, pieces[r.IntN(len(pieces))]...)
				}
			}
		}
		enc := appendQuotedPrintable(nil, in)
		checkQuotedPrintable(t, enc)
		dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
		if want := crlf(string(in)) + "\r\n"; err != nil || string(dec) != want {
			t.Errorf("case %d: round trip of %q:\nencoded %q\ndecoded %q, %v", i, in, enc, dec, err)
		}
		if t.Failed() {
			t.Fatalf("case %d fails: input %q", i, in)
		}
	}
}

// BenchmarkBuild measures what a worker does for one message: token, date and build.
func BenchmarkBuild(b *testing.B) {
	k := testKeyring(b)
	jm := compileTest(b, testJob(), textMessage(), htmlMessage())
	r := postoffice.Recipient{DeliveryID: 1, Consumer: rewards.Consumer{ID: 123456, Email: "ann.lee@example.com",
		FirstName: "Ann", LastName: "Lee", City: "Oslo", Format: rewards.FormatHTML, Status: rewards.StatusActive}}
	var buf, scratch []byte
	now := time.Now()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		token := k.Encode(jm.job.Key, r.Consumer.ID)
		buf, scratch = jm.build(buf[:0], &r, token, "", dateHeader(now), scratch)
	}
	b.SetBytes(int64(len(buf)))
}

// TestBuildProviderArgs: every message hands each sending provider the delivery's token as
// its custom argument, in the form that provider documents.
func TestBuildProviderArgs(t *testing.T) {
	k := testKeyring(t)
	c := rewards.Consumer{ID: 1001, Email: "ann@example.com", FirstName: "Ann", Format: rewards.FormatText, Status: rewards.StatusActive}
	for _, html := range []bool{false, true} {
		job := testJob()
		jm := compileTest(t, job, textMessage(), htmlMessage())
		if html {
			c.Format = rewards.FormatHTML
		}
		b := buildParsed(t, k, jm, c)
		var sg struct {
			UniqueArgs map[string]string `json:"unique_args"`
		}
		if err := json.Unmarshal([]byte(b.header.Get("X-SMTPAPI")), &sg); err != nil || sg.UniqueArgs["pointpost_token"] != b.token {
			t.Errorf("X-SMTPAPI %q (%v): want unique_args.pointpost_token %s", b.header.Get("X-SMTPAPI"), err, b.token)
		}
		var mg map[string]string
		if err := json.Unmarshal([]byte(b.header.Get("X-Mailgun-Variables")), &mg); err != nil || mg["pointpost_token"] != b.token {
			t.Errorf("X-Mailgun-Variables %q (%v)", b.header.Get("X-Mailgun-Variables"), err)
		}
		if got := b.header.Get("X-PM-Metadata-pointpost_token"); got != b.token {
			t.Errorf("X-PM-Metadata-pointpost_token %q", got)
		}
		if !bytes.Contains(b.raw, []byte("\r\nX-PM-Metadata-pointpost_token: "+b.token+"\r\n")) {
			t.Errorf("the Postmark field's name is not written as Postmark reads it:\n%s", b.raw)
		}
		if got := b.header.Get("X-SES-MESSAGE-TAGS"); got != "pointpost_token="+b.token {
			t.Errorf("X-SES-MESSAGE-TAGS %q", got)
		}
	}
}
