package rewards

import (
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readAll drains a ConsumerCSV, keeping the good consumers and the row errors apart.
func readAll(t *testing.T, c *ConsumerCSV) ([]Consumer, []RowError) {
	t.Helper()
	var good []Consumer
	var bad []RowError
	for {
		con, err := c.Next()
		if err == io.EOF {
			return good, bad
		}
		var re *RowError
		if errors.As(err, &re) {
			bad = append(bad, *re)
			continue
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		good = append(good, con)
	}
}

func mustCSV(t *testing.T, data string) *ConsumerCSV {
	t.Helper()
	c, err := NewConsumerCSV(strings.NewReader(data))
	if err != nil {
		t.Fatalf("NewConsumerCSV: %v", err)
	}
	return c
}

func TestConsumerCSVColumns(t *testing.T) {
	data := "\uFEFF Interests ,EMAIL,First Name,last_name,city,region,country,postal_code,birth_year,gender,format,Plan,segment\n" +
		"Golf; tennis;;GOLF,  Bob@Example.COM ,Bob,Smith,Seattle,WA,US,98101,1970,Male,HTML,gold,\n"
	c := mustCSV(t, data)
	if got, want := c.Header(), []string{"Interests", "EMAIL", "First Name", "last_name", "city", "region", "country",
		"postal_code", "birth_year", "gender", "format", "Plan", "segment"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Header = %q, want %q", got, want)
	}
	good, bad := readAll(t, c)
	if len(bad) != 0 || len(good) != 1 {
		t.Fatalf("good %v, bad %v", good, bad)
	}
	want := Consumer{Email: "bob@example.com", FirstName: "Bob", LastName: "Smith", City: "Seattle", Region: "WA",
		Country: "US", PostalCode: "98101", BirthYear: 1970, Gender: "male", Interests: []string{"golf", "tennis"},
		Format: FormatHTML, Attributes: map[string]string{"plan": "gold"}}
	if !reflect.DeepEqual(good[0], want) {
		t.Errorf("consumer\n got %+v\nwant %+v", good[0], want)
	}
}

func TestConsumerCSVOnlyEmail(t *testing.T) {
	good, bad := readAll(t, mustCSV(t, "email\r\na@example.com\r\n\r\nb@example.com"))
	if len(bad) != 0 || len(good) != 2 || good[1].Email != "b@example.com" || good[0].Format != "" || good[0].Attributes != nil {
		t.Fatalf("good %+v, bad %v", good, bad)
	}
}

func TestConsumerCSVHeaderErrors(t *testing.T) {
	for _, data := range []string{
		"",
		"first_name,last_name\nBob,Smith\n",
		"email,Email\n",
		"email,plan,First-Name,first name\n",
		"email,\"bro\"ken\n",
	} {
		if _, err := NewConsumerCSV(strings.NewReader(data)); err == nil {
			t.Errorf("NewConsumerCSV(%q) succeeded", data)
		}
	}
	// Unnamed columns, as a trailing comma makes, are ignored, not duplicates.
	c := mustCSV(t, "email,,\na@example.com,x,y\n")
	if good, bad := readAll(t, c); len(good) != 1 || len(bad) != 0 || good[0].Attributes != nil {
		t.Fatalf("good %+v, bad %v", good, bad)
	}
}

func TestConsumerCSVRowErrors(t *testing.T) {
	year := time.Now().Year()
	data := strings.Join([]string{
		"email,first_name,birth_year,format",                  // 1
		"ok1@example.com,A,1980,text",                         // 2
		"not-an-address,B,1980,text",                          // 3 bad email
		"Carol <carol@example.com>,C,,",                       // 4 display name
		",D,1980,html",                                        // 5 empty email
		"ok2@example.com,E,1899,html",                         // 6 year too early
		"ok3@example.com,F," + strconv.Itoa(year+1) + ",html", // 7 year in the future
		"ok4@example.com,G,nineteen,html",                     // 8 year not a number
		"ok5@example.com,H,1980,pdf",                          // 9 bad format
		"ok6@example.com,I,1980",                              // 10 too few fields
		"ok7@example.com,J,1980,text,extra",                   // 11 too many fields
		"ok8@example.com,K\xe9,1980,text",                     // 12 Latin-1, not UTF-8
		"OK9@Example.com,L," + strconv.Itoa(year) + ",",       // 13 good
	}, "\n") + "\n"
	good, bad := readAll(t, mustCSV(t, data))
	var lines []int
	for _, e := range bad {
		lines = append(lines, e.Line)
		if e.Reason == "" {
			t.Errorf("line %d: no reason", e.Line)
		}
	}
	if want := []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; !reflect.DeepEqual(lines, want) {
		t.Errorf("bad lines %v, want %v (%v)", lines, want, bad)
	}
	if len(good) != 2 || good[0].Email != "ok1@example.com" || good[1].Email != "ok9@example.com" {
		t.Errorf("good %+v", good)
	}
	if !strings.Contains(bad[7].Reason, "3 fields") {
		t.Errorf("field count reason %q", bad[7].Reason)
	}
}

func TestConsumerCSVBrokenQuotes(t *testing.T) {
	data := strings.Join([]string{
		"email,first_name,last_name",          // 1
		"a@example.com,Ann,Lee",               // 2
		`b@example.com,"Bob,Smith`,            // 3 quote never closed: runs on to line 6's quotes
		"c@example.com,Cy,Young",              // 4
		`d@example.com,"Dee ""D""",Dunn`,      // 5 good, quoted with escaped quotes
		`e@example.com,Eve,"Ev"ans`,           // 6 extraneous quote
		`f@example.com,Fay,O"Neil`,            // 7 bare quote
		"g@example.com,\"Gus\nMultiline\",Ng", // 8-9 good: a quoted field may hold a newline
		"h@example.com,Hal,Ho",                // 10
		`i@example.com,"Ivy,Ives`,             // 11 never closed, to the end of the file
		"j@example.com,Jo,Jay",                // 12
	}, "\n") + "\n"
	good, bad := readAll(t, mustCSV(t, data))
	var emails []string
	for _, c := range good {
		emails = append(emails, c.Email)
	}
	wantEmails := []string{"a@example.com", "c@example.com", "d@example.com", "g@example.com", "h@example.com", "j@example.com"}
	if !reflect.DeepEqual(emails, wantEmails) {
		t.Errorf("good %v, want %v", emails, wantEmails)
	}
	var lines []int
	for _, e := range bad {
		lines = append(lines, e.Line)
	}
	if want := []int{3, 6, 7, 11}; !reflect.DeepEqual(lines, want) {
		t.Errorf("bad lines %v, want %v: %v", lines, want, bad)
	}
	if good[2].FirstName != `Dee "D"` || good[3].FirstName != "Gus\nMultiline" {
		t.Errorf("quoted fields %q, %q", good[2].FirstName, good[3].FirstName)
	}
}

// A quote that is never closed in a large file costs a bounded re-read, and the rows after
// it still come through with their own line numbers.
func TestConsumerCSVUnclosedQuoteLongFile(t *testing.T) {
	var b strings.Builder
	b.WriteString("email,first_name\n")
	b.WriteString("x@example.com,\"never closed\n")
	const n = 5000 // about 100 KiB after the quote, past maxRecordBytes
	for i := range n {
		b.WriteString("u" + strconv.Itoa(i) + "@example.com,Name\n")
	}
	good, bad := readAll(t, mustCSV(t, b.String()))
	if len(bad) != 1 || bad[0].Line != 2 {
		t.Fatalf("bad %v", bad)
	}
	if len(good) != n || good[0].Email != "u0@example.com" || good[n-1].Email != "u4999@example.com" {
		t.Fatalf("%d good, first %+v", len(good), good[0])
	}
	// A bad row after the restart reports its own file line.
	b.WriteString("bad\n")
	c := mustCSV(t, b.String())
	_, bad = readAll(t, c)
	if len(bad) != 2 || bad[1].Line != n+3 {
		t.Fatalf("bad %v, want the last on line %d", bad, n+3)
	}
}

// A reader that hands out a byte at a time must give the same result as one that does not.
func TestConsumerCSVSmallReads(t *testing.T) {
	data := "email,first_name\na@example.com,\"A\nB\"\nbad,\"x\nc@example.com,C\n"
	want, wantBad := readAll(t, mustCSV(t, data))
	c, err := NewConsumerCSV(io.LimitReader(&oneByteReader{s: data}, int64(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	got, gotBad := readAll(t, c)
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotBad, wantBad) {
		t.Fatalf("got %v %v, want %v %v", got, gotBad, want, wantBad)
	}
}

type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestConsumerCSVReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	c := mustCSV(t, "email\n")
	c.in.src = io.MultiReader(strings.NewReader("a@example.com\n"), &errReader{boom})
	if _, err := c.Next(); err != nil {
		t.Fatalf("first row: %v", err)
	}
	if _, err := c.Next(); !errors.Is(err, boom) {
		t.Fatalf("Next = %v, want %v", err, boom)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

func TestValidEmail(t *testing.T) {
	for in, want := range map[string]string{
		" Bob.Smith@Example.COM ": "bob.smith@example.com",
		"a+tag@sub.example.co.uk": "a+tag@sub.example.co.uk",
		"o'brien@example.com":     "o'brien@example.com",
		"josé@example.com":        "josé@example.com",
		"user@localhost":          "user@localhost",
	} {
		if got, err := ValidEmail(in); err != nil || got != want {
			t.Errorf("ValidEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", "bob", "bob@", "@example.com", "Bob <bob@example.com>",
		"<bob@example.com>", "bob@example.com (Bob)", "a b@example.com", "a@b@example.com",
		strings.Repeat("a", 250) + "@example.com"} {
		if got, err := ValidEmail(in); err == nil {
			t.Errorf("ValidEmail(%q) = %q, want an error", in, got)
		}
	}
}

func TestNormalizeInterests(t *testing.T) {
	got := NormalizeInterests([]string{" Golf ", "tennis;GOLF", "", ";", "Wine"})
	if want := []string{"golf", "tennis", "wine"}; !reflect.DeepEqual(got, want) {
		t.Errorf("NormalizeInterests = %q, want %q", got, want)
	}
	if got := NormalizeInterests([]string{" ", ";"}); got != nil {
		t.Errorf("NormalizeInterests of blanks = %q, want nil", got)
	}
}

func BenchmarkConsumerCSV(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("email,first_name,last_name,city,country,birth_year,interests,format,plan\n")
	const rows = 10000
	for i := range rows {
		sb.WriteString("user" + strconv.Itoa(i) + "@example.com,José,García,Madrid,ES,1975,golf;wine,html,gold\n")
	}
	data := sb.String()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c, err := NewConsumerCSV(strings.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := c.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
