package postoffice

import (
	"errors"
	"html"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"pointpost/rewards"
)

func testConsumer() *rewards.Consumer {
	return &rewards.Consumer{
		ID:            42,
		Email:         "joe.bloggs@example.com",
		FirstName:     "Joe",
		LastName:      "Bloggs",
		City:          "Springfield",
		Region:        "IL",
		Country:       "US",
		PostalCode:    "62701",
		BirthYear:     1970,
		Gender:        "m",
		Interests:     []string{"golf", "wine", "travel"},
		Format:        rewards.FormatHTML,
		Attributes:    map[string]string{"plan": "gold", "shoe-size_eu": "44"},
		PointsBalance: 1250,
	}
}

func testValues() *TagValues {
	return &TagValues{
		Consumer:       testConsumer(),
		Token:          "1abcdefghijklmnopqrstuvwxyz23456",
		AckURL:         "https://example.com/ack/1abc",
		PageURL:        "https://example.com/p/1abc",
		UnsubscribeURL: "https://example.com/u/1abc",
		AccountURL:     "https://example.com/account/1xyz",
		IssuerName:     "Acme Air",
		JobName:        "January 1999",
	}
}

func mustParse(t testing.TB, src string) *Template {
	t.Helper()
	tpl, err := ParseTemplate(src)
	if err != nil {
		t.Fatalf("ParseTemplate(%q): %v", src, err)
	}
	return tpl
}

func TestTemplateEveryTag(t *testing.T) {
	v := testValues()
	tests := []struct{ tag, want string }{
		{"getUserName", "Joe"},
		{"getFirstName", "Joe"},
		{"getLastName", "Bloggs"},
		{"getFullName", "Joe Bloggs"},
		{"getEmail", "joe.bloggs@example.com"},
		{"getCity", "Springfield"},
		{"getRegion", "IL"},
		{"getCountry", "US"},
		{"getPostalCode", "62701"},
		{"getBirthYear", "1970"},
		{"getGender", "m"},
		{"getInterests", "golf, wine, travel"},
		{"getPointsBalance", "1250"},
		{"getAckURL", "https://example.com/ack/1abc"},
		{"getWebPageURL", "https://example.com/p/1abc"},
		{"getUnsubscribeURL", "https://example.com/u/1abc"},
		{"getAccountURL", "https://example.com/account/1xyz"},
		{"getToken", "1abcdefghijklmnopqrstuvwxyz23456"},
		{"getIssuerName", "Acme Air"},
		{"getJobName", "January 1999"},
		{"getAttr:plan", "gold"},
		{"getAttr:shoe-size_eu", "44"},
		{"getAttr:missing", ""},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		tpl := mustParse(t, "[<_&"+tt.tag+"_>]")
		for _, esc := range []bool{false, true} {
			if got := tpl.String(v, esc); got != "["+tt.want+"]" {
				t.Errorf("%s (escape %v) = %q, want %q", tt.tag, esc, got, "["+tt.want+"]")
			}
		}
		if !tpl.UsesTag(tt.tag) {
			t.Errorf("UsesTag(%q) = false", tt.tag)
		}
		name, _, _ := strings.Cut(tt.tag, ":")
		seen[name] = true
	}
	// Every documented tag is tested above.
	for _, info := range Tags {
		name, _, _ := strings.Cut(info.Name, ":")
		if !seen[name] {
			t.Errorf("tag %s has no test", info.Name)
		}
		if info.Description == "" {
			t.Errorf("tag %s has no description", info.Name)
		}
	}
	if len(Tags) != int(numTagKinds)-1 {
		t.Errorf("len(Tags) = %d, want %d", len(Tags), numTagKinds-1)
	}
}

func TestTemplateEmptyValues(t *testing.T) {
	c := &rewards.Consumer{Email: "anna@example.com"}
	tests := []struct{ tag, want string }{
		{"getUserName", "anna"},
		{"getFullName", ""},
		{"getBirthYear", ""},
		{"getInterests", ""},
		{"getPointsBalance", "0"},
		{"getAttr:plan", ""},
	}
	for _, tt := range tests {
		tpl := mustParse(t, "<_&"+tt.tag+"_>")
		if got := tpl.String(&TagValues{Consumer: c}, false); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.tag, got, tt.want)
		}
	}
	// No consumer, or no values at all, renders tags empty rather than panicking.
	all := mustParse(t, allTagsSource())
	for _, v := range []*TagValues{nil, {}} {
		if got := all.String(v, true); got != strings.Repeat("|", len(Tags)) {
			t.Errorf("all tags with %+v = %q", v, got)
		}
	}
}

// allTagsSource uses every tag once, each followed by "|"; getPointsBalance is left out
// because it renders "0" rather than nothing.
func allTagsSource() string {
	var b strings.Builder
	for _, info := range Tags {
		name := info.Name
		if name == "getPointsBalance" {
			b.WriteString("|")
			continue
		}
		if strings.HasPrefix(name, attrPrefix) {
			name = "getAttr:plan"
		}
		b.WriteString("<_&" + name + "_>|")
	}
	return b.String()
}

func TestTemplateUserNameFallback(t *testing.T) {
	tests := []struct{ first, email, want string }{
		{"Joe", "x@example.com", "Joe"},
		{"  Joe ", "x@example.com", "Joe"},
		{"", "anna.k@example.com", "anna.k"},
		{" ", "anna.k@example.com", "anna.k"},
		{"", `"odd@local"@example.com`, `"odd@local"`},
		{"", "nodomain", "nodomain"},
		{"", "", ""},
	}
	tpl := mustParse(t, "<_&getUserName_>")
	for _, tt := range tests {
		v := &TagValues{Consumer: &rewards.Consumer{FirstName: tt.first, Email: tt.email}}
		if got := tpl.String(v, false); got != tt.want {
			t.Errorf("first %q email %q = %q, want %q", tt.first, tt.email, got, tt.want)
		}
	}
}

func TestTemplateFullNameMatchesConsumer(t *testing.T) {
	tpl := mustParse(t, "<_&getFullName_>")
	names := []string{"", " ", "Joe", " Joe", "Joe ", " Joe Q. ", "\tX\n"}
	for _, first := range names {
		for _, last := range names {
			c := &rewards.Consumer{FirstName: first, LastName: last}
			if got, want := tpl.String(&TagValues{Consumer: c}, false), c.FullName(); got != want {
				t.Errorf("FullName(%q, %q) = %q, want %q", first, last, got, want)
			}
		}
	}
}

func TestTemplateEscaping(t *testing.T) {
	evil := `<script>alert("x&y")</script>'`
	c := &rewards.Consumer{FirstName: evil, LastName: "O'Brien", Interests: []string{"a&b", "<c>"},
		Attributes: map[string]string{"note": `"q"`}}
	v := &TagValues{Consumer: c, AckURL: "https://x.test/a?b=1&c=2", JobName: "R&D"}
	src := `<p title="x">Hi <_&getUserName_> <_&getFullName_> & <b><_&getInterests_></b>` +
		`<a href="<_&getAckURL_>"><_&getJobName_></a> <_&getAttr:note_></p>`
	tpl := mustParse(t, src)

	got := tpl.String(v, true)
	want := `<p title="x">Hi ` + html.EscapeString(evil) + " " + html.EscapeString(evil+" O'Brien") +
		` & <b>a&amp;b, &lt;c&gt;</b><a href="https://x.test/a?b=1&amp;c=2">R&amp;D</a> &#34;q&#34;</p>`
	if got != want {
		t.Errorf("escaped:\n got %s\nwant %s", got, want)
	}
	if strings.Contains(got, "<script>") {
		t.Error("script tag survived escaping")
	}

	// Text mode leaves values alone, and neither mode touches literal text.
	raw := tpl.String(v, false)
	if !strings.Contains(raw, evil) || !strings.HasPrefix(raw, `<p title="x">Hi `) {
		t.Errorf("unescaped = %s", raw)
	}
}

func TestAppendValueMatchesHTMLEscape(t *testing.T) {
	for _, s := range []string{"", "plain", `<>&'"`, "a<b>c&d'e\"f", "ünïcødé & 日本", "&amp;", "\x00<\xff"} {
		if got, want := string(appendValue(nil, s, true)), html.EscapeString(s); got != want {
			t.Errorf("appendValue(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestTemplateNonASCII(t *testing.T) {
	c := &rewards.Consumer{FirstName: "Zoë", LastName: "Müller-Łukasiewicz", City: "東京"}
	tpl := mustParse(t, "Liebe <_&getUserName_> — <_&getFullName_> in <_&getCity_> ✓")
	want := "Liebe Zoë — Zoë Müller-Łukasiewicz in 東京 ✓"
	for _, esc := range []bool{false, true} {
		if got := tpl.String(&TagValues{Consumer: c}, esc); got != want {
			t.Errorf("escape %v: %q, want %q", esc, got, want)
		}
	}
}

func TestTemplateNoTags(t *testing.T) {
	for _, src := range []string{"", "Hello, world", "a <_ b _> c <& d", "<_ & _>", "<_&"[:2]} {
		tpl := mustParse(t, src)
		if got := tpl.String(testValues(), true); got != src {
			t.Errorf("%q rendered %q", src, got)
		}
		if tpl.UsesTag("getUserName") || tpl.UsesTag("getAttr") {
			t.Errorf("%q claims to use a tag", src)
		}
	}
}

func TestTemplateAdjacentTags(t *testing.T) {
	tpl := mustParse(t, "<_&getFirstName_><_&getLastName_><_&getAttr:plan_><_&getAttr:plan_>")
	if got := tpl.String(testValues(), false); got != "JoeBloggsgoldgold" {
		t.Errorf("got %q", got)
	}
	if len(tpl.parts) != 4 {
		t.Errorf("%d parts, want 4", len(tpl.parts))
	}
}

func TestTemplateAttrNameWithUnderscoreBeforeClose(t *testing.T) {
	// The first "_>" closes the tag, so an attribute may end in "_".
	tpl := mustParse(t, "<_&getAttr:plan__>")
	v := &TagValues{Consumer: &rewards.Consumer{Attributes: map[string]string{"plan_": "x"}}}
	if got := tpl.String(v, false); got != "x" {
		t.Errorf("got %q", got)
	}
}

func TestTemplatePatentExample(t *testing.T) {
	src := "POINTENTIALS--January 1999 Edition\nDear <_&getUserName_>,\nHappy New Year!\n"
	tpl := mustParse(t, src)
	want := "POINTENTIALS--January 1999 Edition\nDear Joe,\nHappy New Year!\n"
	if got := tpl.String(testValues(), false); got != want {
		t.Errorf("got %q", got)
	}
	htmlSrc := "Dear <_&getUserName_>, <BR><BR>\n<FONT SIZE=\"+1\" COLOR=\"#FF0000\">\nHappy New Year!</FONT><BR><BR>"
	if got := mustParse(t, htmlSrc).String(testValues(), true); got != strings.Replace(htmlSrc, "<_&getUserName_>", "Joe", 1) {
		t.Errorf("html got %q", got)
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		src       string
		tag       string
		line, col int
		reason    string
	}{
		{"Hello\n\nDear <_&getFoo_>,", "<_&getFoo_>", 3, 6, "unknown tag"},
		{"<_&getusername_>", "<_&getusername_>", 1, 1, "unknown tag"},
		{"ab <_&getUserName", "<_&getUserName", 1, 4, "unclosed tag"},
		{"ab <_&getUserName\n_>", "<_&getUserName", 1, 4, "unclosed tag"},
		{"ab <_&getUserName> x", "<_&getUserName>", 1, 4, "unclosed tag"},
		{"<_&getFoo<_&getUserName_>", "<_&getFoo", 1, 1, "unclosed tag"},
		{"x<_&", "<_&", 1, 2, "unclosed tag"},
		{"<_&_>", "<_&_>", 1, 1, "empty tag name"},
		{"<_&get User_>", "<_&get User_>", 1, 1, "malformed tag"},
		{"<_&getUserName__>", "<_&getUserName__>", 1, 1, "malformed tag"},
		{"<_&getAttr_>", "<_&getAttr_>", 1, 1, "missing attribute name (write <_&getAttr:name_>) in"},
		{"<_&getAttr:_>", "<_&getAttr:_>", 1, 1, "missing attribute name in"},
		{"<_&getAttr:a b_>", "<_&getAttr:a b_>", 1, 1, "malformed attribute name in"},
		{"<_&getAttr:a:b_>", "<_&getAttr:a:b_>", 1, 1, "malformed attribute name in"},
		{"<_&getCity:x_>", "<_&getCity:x_>", 1, 1, "unknown tag"},
		{"<_&:x_>", "<_&:x_>", 1, 1, "malformed tag"},
		// Columns count runes, not bytes.
		{"Grüße, 日本 <_&getNäme_>", "<_&getNäme_>", 1, 11, "malformed tag"},
		{"ok <_&getCity_>\r\nÄ <_&nope_>", "<_&nope_>", 2, 3, "unknown tag"},
		{"<_&" + strings.Repeat("a", 200) + "_>", "<_&" + strings.Repeat("a", maxTagLen), 1, 1, "unclosed tag"},
	}
	for _, tt := range tests {
		tpl, err := ParseTemplate(tt.src)
		var te *TemplateError
		if !errors.As(err, &te) {
			t.Errorf("ParseTemplate(%q) = %v, %v; want *TemplateError", tt.src, tpl, err)
			continue
		}
		if te.Tag != tt.tag || te.Line != tt.line || te.Col != tt.col || te.Reason != tt.reason {
			t.Errorf("ParseTemplate(%q) = %+v; want tag %q line %d col %d reason %q",
				tt.src, te, tt.tag, tt.line, tt.col, tt.reason)
		}
		if !strings.HasPrefix(tt.src[te.Offset:], te.Tag) {
			t.Errorf("ParseTemplate(%q): offset %d does not point at %q", tt.src, te.Offset, te.Tag)
		}
	}

	_, err := ParseTemplate("Hi\nthere\nDear <_&getFoo_>,")
	if got, want := err.Error(), "line 3, column 6: unknown tag <_&getFoo_>"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestUsesTag(t *testing.T) {
	tpl := mustParse(t, "<_&getToken_> <_&getAttr:plan_>")
	for name, want := range map[string]bool{
		"getToken":         true,
		"<_&getToken_>":    true,
		"getAttr":          true,
		"getAttr:plan":     true,
		"getAttr:other":    false,
		"getUserName":      false,
		"getPointsBalance": false,
		"nonsense":         false,
		"":                 false,
	} {
		if got := tpl.UsesTag(name); got != want {
			t.Errorf("UsesTag(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestTemplateAppendReusesBuffer(t *testing.T) {
	tpl := mustParse(t, "Dear <_&getUserName_>, you have <_&getPointsBalance_> points. <_&getInterests_> <_&getAttr:plan_> <_&getFullName_>")
	v := testValues()
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		buf = tpl.Append(buf[:0], v, true)
	})
	if allocs != 0 {
		t.Errorf("Append allocated %v times per run", allocs)
	}
	// Appending keeps what dst already holds.
	if got := string(tpl.Append([]byte("> "), v, false)); !strings.HasPrefix(got, "> Dear Joe,") {
		t.Errorf("got %q", got)
	}
}

// tagRE matches the tags a successfully parsed template may contain.
var tagRE = regexp.MustCompile(`<_&(?:[A-Za-z0-9]+|getAttr:[A-Za-z0-9_-]+?)_>`)

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"",
		"Dear <_&getUserName_>,\nHappy New Year!",
		"<_&getAttr:plan__><_&getFullName_><_&getInterests_>",
		"<_&getFoo_>",
		"a <_&getUser Name_> b",
		"<_&getCity",
		"<_&<_&getCity_>_>",
		"Grüße <_&getNäme_>",
		"<_&_>",
		"<<_&getEmail_>>",
	} {
		f.Add(s)
	}
	v := &TagValues{
		Consumer: &rewards.Consumer{FirstName: "<x>", LastName: "&", Email: `'e"@x`, Interests: []string{"<", ">"},
			Attributes: map[string]string{"plan": "<&>"}},
		Token: "<t>", AckURL: "<a>", PageURL: "<p>", UnsubscribeURL: "<u>", IssuerName: "<i>", JobName: "<j>",
	}
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := ParseTemplate(src)
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TemplateError", err)
			}
			if te.Offset < 0 || te.Offset > len(src) || !strings.HasPrefix(src[te.Offset:], tagOpen) ||
				!strings.HasPrefix(src[te.Offset:], te.Tag) {
				t.Fatalf("bad offset/tag %+v for %q", te, src)
			}
			before := src[:te.Offset]
			lineStart := strings.LastIndexByte(before, '\n') + 1
			if te.Line != strings.Count(before, "\n")+1 || te.Col != utf8.RuneCountInString(before[lineStart:])+1 {
				t.Fatalf("bad line/col %+v for %q", te, src)
			}
			if te.Reason == "" || te.Error() == "" {
				t.Fatalf("empty reason %+v", te)
			}
			return
		}
		// The parts put back together are the source: literals are kept byte for byte.
		var b strings.Builder
		for _, p := range tpl.parts {
			switch p.kind {
			case tagLiteral:
				if p.text == "" {
					t.Fatal("empty literal part")
				}
				b.WriteString(p.text)
			case tagAttr:
				b.WriteString(tagOpen + attrPrefix + p.text + tagClose)
			default:
				b.WriteString(tagOpen + tagTable[p.kind].Name + tagClose)
			}
		}
		if b.String() != src {
			t.Fatalf("parts rebuild %q, want %q", b.String(), src)
		}
		// With nothing to fill in, rendering drops the tags and nothing else (apart from
		// getPointsBalance, which shows 0).
		empty := strings.ReplaceAll(tpl.String(nil, true), "0", "")
		if want := strings.ReplaceAll(tagRE.ReplaceAllString(src, ""), "0", ""); empty != want {
			t.Fatalf("empty render %q, want %q", empty, want)
		}
		// Escaping adds no "<": every one in the output comes from the literal text.
		if got, want := strings.Count(tpl.String(v, true), "<"), strings.Count(tpl.String(nil, true), "<"); got != want {
			t.Fatalf("escaped output has %d '<', literals have %d", got, want)
		}
	})
}

func BenchmarkTemplateAppend(b *testing.B) {
	src := `<html><body><p>Dear <_&getUserName_>,</p>
<p>POINTENTIALS &mdash; January 1999 Edition. Happy New Year from <_&getIssuerName_>!</p>
<p>You have <_&getPointsBalance_> points. Reply to this message, or
<a href="<_&getAckURL_>">press here</a>, to earn 50 more.</p>
<p>Because you like <_&getInterests_> in <_&getCity_>, your <_&getAttr:plan_> plan ...</p>
<p><a href="<_&getWebPageURL_>">View on the web</a> | <a href="<_&getUnsubscribeURL_>">Unsubscribe</a></p>
<p style="color:#999">` + strings.Repeat("Terms and conditions apply. ", 20) + `</p></body></html>`
	tpl := mustParse(b, src)
	v := testValues()
	v.Consumer.FirstName = "Joe & <Jane>"
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(tpl.Append(nil, v, true))))
	for b.Loop() {
		buf = tpl.Append(buf[:0], v, true)
	}
}
