package postoffice

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"pointpost/rewards"
)

// Tag delimiters, as in the patent's example "Dear <_&getUserName_>,".
const (
	tagOpen  = "<_&"
	tagClose = "_>"
	// attrPrefix introduces an attribute tag: <_&getAttr:plan_>.
	attrPrefix = "getAttr:"
	// maxTagLen bounds how far ParseTemplate looks for a tag's "_>", so a stray "<_&" is
	// reported as unclosed rather than swallowing the paragraph after it.
	maxTagLen = 128
)

// TagInfo describes one tag a message template may use.
type TagInfo struct {
	Name        string // as written between "<_&" and "_>", e.g. "getUserName"
	Description string
}

// tagKind identifies a compiled part of a template; tagLiteral is plain text.
type tagKind uint8

const (
	tagLiteral tagKind = iota
	tagUserName
	tagFirstName
	tagLastName
	tagFullName
	tagEmail
	tagCity
	tagRegion
	tagCountry
	tagPostalCode
	tagBirthYear
	tagGender
	tagInterests
	tagPointsBalance
	tagAckURL
	tagWebPageURL
	tagUnsubscribeURL
	tagAccountURL
	tagToken
	tagIssuerName
	tagJobName
	tagAttr
	numTagKinds
)

// tagTable is the one list of tags, indexed by tagKind; Tags is a copy of it.
var tagTable = [numTagKinds]TagInfo{
	tagUserName:       {"getUserName", "the consumer's first name; her e-mail address's local part (before the @) when she gave none"},
	tagFirstName:      {"getFirstName", "the consumer's first name"},
	tagLastName:       {"getLastName", "the consumer's last name"},
	tagFullName:       {"getFullName", "first and last name joined by a space, leaving out a missing part"},
	tagEmail:          {"getEmail", "the consumer's e-mail address"},
	tagCity:           {"getCity", "the consumer's city"},
	tagRegion:         {"getRegion", "the consumer's region, state or province"},
	tagCountry:        {"getCountry", "the consumer's country"},
	tagPostalCode:     {"getPostalCode", "the consumer's postal code"},
	tagBirthYear:      {"getBirthYear", "the consumer's year of birth; empty when unknown"},
	tagGender:         {"getGender", "the consumer's gender as enrolled"},
	tagInterests:      {"getInterests", `the consumer's interests, joined by ", "`},
	tagPointsBalance:  {"getPointsBalance", "the consumer's posted points balance"},
	tagAckURL:         {"getAckURL", "the link that acknowledges this invitation and earns its points"},
	tagWebPageURL:     {"getWebPageURL", "the link to this invitation's web page (client pull)"},
	tagUnsubscribeURL: {"getUnsubscribeURL", "the link that unsubscribes the consumer"},
	tagAccountURL:     {"getAccountURL", "the link to the consumer's points account: balance, history, rewards"},
	tagToken:          {"getToken", "this delivery's acknowledgement token (it is also put in the subject)"},
	tagIssuerName:     {"getIssuerName", "the name of the issuer running the campaign"},
	tagJobName:        {"getJobName", "the campaign's name"},
	tagAttr:           {"getAttr:name", "the consumer attribute called name (letters, digits, _ and -), e.g. <_&getAttr:plan_>; empty when she has none"},
}

// Tags lists every tag a message template may use, for the toolbox and the README. Write a
// tag as <_&Name_>; names are case-sensitive.
//
//	getUserName        first name; the e-mail's local part when there is none
//	getFirstName       first name
//	getLastName        last name
//	getFullName        first and last name, leaving out a missing part
//	getEmail           e-mail address
//	getCity            city
//	getRegion          region, state or province
//	getCountry         country
//	getPostalCode      postal code
//	getBirthYear       year of birth; empty when unknown
//	getGender          gender
//	getInterests       interests joined by ", "
//	getPointsBalance   posted points balance
//	getAckURL          link that acknowledges the invitation
//	getWebPageURL      link to the invitation's web page
//	getUnsubscribeURL  link that unsubscribes
//	getAccountURL      link to the consumer's points account
//	getToken           the delivery's acknowledgement token
//	getIssuerName      the issuer's name
//	getJobName         the campaign's name
//	getAttr:name       the consumer attribute "name"; empty when missing
//
// Tags is a copy: changing it does not change what ParseTemplate accepts.
var Tags = slices.Clone(tagTable[1:])

// TagValues is everything a template's tags draw on for one message. A nil Consumer, or a nil
// *TagValues, renders every tag empty.
type TagValues struct {
	Consumer       *rewards.Consumer
	Token          string
	AckURL         string
	PageURL        string
	UnsubscribeURL string
	AccountURL     string
	IssuerName     string
	JobName        string
}

// TemplateError is a tag ParseTemplate could not compile.
type TemplateError struct {
	Tag    string // the offending text, from "<_&"
	Offset int    // byte offset of Tag in the template
	Line   int    // 1-based
	Col    int    // 1-based, in runes
	Reason string
}

func (e *TemplateError) Error() string {
	if e.Tag == "" {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Reason)
	}
	return fmt.Sprintf("line %d, column %d: %s %s", e.Line, e.Col, e.Reason, e.Tag)
}

// Template is a compiled subject or body: literal parts, copied into every message (claim 5's
// first portion), and tag parts, replaced by the consumer's data (claims 6-7). It is immutable
// and safe for concurrent use.
type Template struct {
	parts  []part
	uses   uint32 // bit per tagKind
	litLen int    // bytes of literal text, a capacity hint for String
}

// part is literal text, or a tag; text is the attribute name for tagAttr.
type part struct {
	kind tagKind
	text string
}

// ParseTemplate compiles src. Text outside tags is kept byte for byte. Returns a
// *TemplateError for an unknown or malformed tag.
func ParseTemplate(src string) (*Template, error) {
	t := &Template{}
	pos := 0 // start of the literal text not yet added
	for {
		i := strings.Index(src[pos:], tagOpen)
		if i < 0 {
			break
		}
		start := pos + i
		end, body, reason := scanTag(src, start)
		var kind tagKind
		if reason == "" {
			kind, reason = lookupTag(body)
		}
		if reason != "" {
			return nil, newTemplateError(src, start, end, reason)
		}
		t.addLiteral(src[pos:start])
		p := part{kind: kind}
		if kind == tagAttr {
			p.text = body[len(attrPrefix):]
		}
		t.parts = append(t.parts, p)
		t.uses |= 1 << kind
		pos = end
	}
	t.addLiteral(src[pos:])
	return t, nil
}

func (t *Template) addLiteral(s string) {
	if s != "" {
		t.parts = append(t.parts, part{text: s})
		t.litLen += len(s)
	}
}

// scanTag finds the end of the tag opened at start. It returns the offset just past "_>" and
// the name between the delimiters, or a reason with end marking how much text to quote.
func scanTag(src string, start int) (end int, body, reason string) {
	from := start + len(tagOpen)
	for j := from; j < len(src) && j-start < maxTagLen; j++ {
		switch src[j] {
		case '_':
			if j+1 < len(src) && src[j+1] == '>' {
				return j + 2, src[from:j], ""
			}
		case '>':
			return j + 1, "", "unclosed tag" // "<_&getUserName>": quote it with its ">"
		case '\n', '\r', '<':
			return nameEnd(src, from), "", "unclosed tag"
		}
	}
	return nameEnd(src, from), "", "unclosed tag"
}

// nameEnd returns where the run of tag-name characters starting at from ends, so an unclosed
// tag is quoted as "<_&getFoo" rather than with the rest of the line.
func nameEnd(src string, from int) int {
	j := from
	for j < len(src) && j-from < maxTagLen && (isAttrByte(src[j]) || src[j] == ':') {
		j++
	}
	return j
}

// lookupTag maps the text between the delimiters to its kind, or says why it cannot.
func lookupTag(body string) (tagKind, string) {
	if body == "" {
		return 0, "empty tag name"
	}
	if name, attr, ok := strings.Cut(body, ":"); ok {
		if name != "getAttr" {
			if validName(name) {
				return 0, "unknown tag"
			}
			return 0, "malformed tag"
		}
		if attr == "" {
			return 0, "missing attribute name in"
		}
		for i := 0; i < len(attr); i++ {
			if !isAttrByte(attr[i]) {
				return 0, "malformed attribute name in"
			}
		}
		return tagAttr, ""
	}
	if !validName(body) {
		return 0, "malformed tag"
	}
	if body == "getAttr" {
		return 0, "missing attribute name (write <_&getAttr:name_>) in"
	}
	for k := tagLiteral + 1; k < tagAttr; k++ {
		if tagTable[k].Name == body {
			return k, ""
		}
	}
	return 0, "unknown tag"
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func isAttrByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func newTemplateError(src string, start, end int, reason string) *TemplateError {
	lineStart := strings.LastIndexByte(src[:start], '\n') + 1
	return &TemplateError{
		Tag:    src[start:end],
		Offset: start,
		Line:   strings.Count(src[:start], "\n") + 1,
		Col:    utf8.RuneCountInString(src[lineStart:start]) + 1,
		Reason: reason,
	}
}

// UsesTag reports whether the template contains the tag name ("getToken"). "getAttr:plan"
// asks for one attribute, "getAttr" for any.
func (t *Template) UsesTag(name string) bool {
	name = strings.TrimSuffix(strings.TrimPrefix(name, tagOpen), tagClose)
	if attr, ok := strings.CutPrefix(name, attrPrefix); ok {
		for _, p := range t.parts {
			if p.kind == tagAttr && p.text == attr {
				return true
			}
		}
		return false
	}
	if name == "getAttr" {
		return t.uses&(1<<tagAttr) != 0
	}
	for k := tagLiteral + 1; k < tagAttr; k++ {
		if tagTable[k].Name == name {
			return t.uses&(1<<k) != 0
		}
	}
	return false
}

// String renders the template; see Append.
func (t *Template) String(v *TagValues, escapeHTML bool) string {
	return string(t.Append(make([]byte, 0, t.litLen+32*(len(t.parts)+1)/2), v, escapeHTML))
}

// Append renders the template for v onto dst and returns the extended slice. Literal text is
// copied unchanged; with escapeHTML each tag's value is escaped as html.EscapeString would.
// It allocates only when dst must grow, so a mail server can reuse one buffer per message.
func (t *Template) Append(dst []byte, v *TagValues, escapeHTML bool) []byte {
	var none TagValues
	if v == nil {
		v = &none
	}
	c := v.Consumer
	if c == nil {
		c = &rewards.Consumer{}
	}
	for i := range t.parts {
		p := &t.parts[i]
		switch p.kind {
		case tagLiteral:
			dst = append(dst, p.text...)
		case tagUserName:
			dst = appendValue(dst, userName(c), escapeHTML)
		case tagFirstName:
			dst = appendValue(dst, c.FirstName, escapeHTML)
		case tagLastName:
			dst = appendValue(dst, c.LastName, escapeHTML)
		case tagFullName:
			first, last := fullName(c)
			dst = appendValue(dst, first, escapeHTML)
			if first != "" && last != "" {
				dst = append(dst, ' ')
			}
			dst = appendValue(dst, last, escapeHTML)
		case tagEmail:
			dst = appendValue(dst, c.Email, escapeHTML)
		case tagCity:
			dst = appendValue(dst, c.City, escapeHTML)
		case tagRegion:
			dst = appendValue(dst, c.Region, escapeHTML)
		case tagCountry:
			dst = appendValue(dst, c.Country, escapeHTML)
		case tagPostalCode:
			dst = appendValue(dst, c.PostalCode, escapeHTML)
		case tagBirthYear:
			if c.BirthYear != 0 {
				dst = strconv.AppendInt(dst, int64(c.BirthYear), 10)
			}
		case tagGender:
			dst = appendValue(dst, c.Gender, escapeHTML)
		case tagInterests:
			for j, s := range c.Interests {
				if j > 0 {
					dst = append(dst, ", "...)
				}
				dst = appendValue(dst, s, escapeHTML)
			}
		case tagPointsBalance:
			dst = strconv.AppendInt(dst, c.PointsBalance, 10)
		case tagAckURL:
			dst = appendValue(dst, v.AckURL, escapeHTML)
		case tagWebPageURL:
			dst = appendValue(dst, v.PageURL, escapeHTML)
		case tagUnsubscribeURL:
			dst = appendValue(dst, v.UnsubscribeURL, escapeHTML)
		case tagAccountURL:
			dst = appendValue(dst, v.AccountURL, escapeHTML)
		case tagToken:
			dst = appendValue(dst, v.Token, escapeHTML)
		case tagIssuerName:
			dst = appendValue(dst, v.IssuerName, escapeHTML)
		case tagJobName:
			dst = appendValue(dst, v.JobName, escapeHTML)
		case tagAttr:
			dst = appendValue(dst, c.Attributes[p.text], escapeHTML)
		}
	}
	return dst
}

// userName is the patent's getUserName: the first name, or for a consumer enrolled with only
// an address, the address's local part, which is what she would recognise herself by.
func userName(c *rewards.Consumer) string {
	if s := strings.TrimSpace(c.FirstName); s != "" {
		return s
	}
	if i := strings.LastIndexByte(c.Email, '@'); i >= 0 {
		return c.Email[:i]
	}
	return c.Email
}

// fullName returns the two halves of c.FullName() without building the joined string.
func fullName(c *rewards.Consumer) (first, last string) {
	first = strings.TrimLeftFunc(c.FirstName, unicode.IsSpace)
	last = strings.TrimRightFunc(c.LastName, unicode.IsSpace)
	switch {
	case first == "":
		return "", strings.TrimSpace(last)
	case last == "":
		return strings.TrimRightFunc(first, unicode.IsSpace), ""
	}
	return first, last
}

// appendValue appends s, escaped with html.EscapeString's rules when escapeHTML.
func appendValue(dst []byte, s string, escapeHTML bool) []byte {
	if !escapeHTML {
		return append(dst, s...)
	}
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '\'':
			esc = "&#39;"
		case '"':
			esc = "&#34;"
		default:
			continue
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, esc...)
		last = i + 1
	}
	return append(dst, s[last:]...)
}
