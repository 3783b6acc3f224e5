package rewards

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// RowError is a record of a consumer CSV that was not imported, and why. Line is the file
// line the record starts on (1 is the header).
type RowError struct {
	Line   int
	Reason string
}

// Error says the line and the reason, as "line 7: email is empty".
// Error says the line and the reason, as "line 7: email is empty".
func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// maxRecordBytes bounds one CSV record. A consumer row is a few hundred bytes; the bound is
// there so that a quote opened and never closed costs a bounded re-read, not the rest of the
// file held in memory.
const maxRecordBytes = 64 << 10

var errRecordTooLong = errors.New("record too long")

// ConsumerCSV reads consumers from a CSV file with a header row, one record at a time, so an
// import of any size runs in constant memory. A bad record is reported and skipped; the
// reader carries on with the next one.
type ConsumerCSV struct {
	in     *rawInput
	r      *csv.Reader
	start  int64 // offset in the file where r began reading
	base   int   // file line of r's line 1, minus one
	header []string
	col    []int // record index of each of ConsumerFields, -1 when the file lacks it
	extra  []extraColumn
	// maxYear is the latest birth year accepted: this year, fixed when the reader is made.
	maxYear int
}

type extraColumn struct {
	index int
	name  string
}

// NewConsumerCSV reads the header row of r. Column names are matched without regard to case,
// surrounding space, or spaces and hyphens in place of underscores ("First Name" is
// first_name). Only email is required; columns it does not know become attributes under
// their normalised name, and unnamed columns are ignored. Returns an error if the header
// cannot be read, lacks an email column or names a column twice.
func NewConsumerCSV(r io.Reader) (*ConsumerCSV, error) {
	c := &ConsumerCSV{in: &rawInput{src: r, line: 1}, col: make([]int, len(ConsumerFields)), maxYear: time.Now().Year()}
	c.r = newCSVReader(c.in)
	rec, err := c.r.Read()
	switch {
	case err == io.EOF:
		return nil, errors.New("consumer CSV is empty: want a header row naming an email column")
	case err != nil:
		return nil, fmt.Errorf("consumer CSV header: %w", err)
	}
	c.consumed()
	for i := range c.col {
		c.col[i] = -1
	}
	seen := make(map[string]int, len(rec))
	c.header = make([]string, len(rec))
	for i, h := range rec {
		if i == 0 {
			h = strings.TrimPrefix(h, "\uFEFF") // spreadsheets write a byte-order mark
		}
		h = strings.TrimSpace(h)
		c.header[i] = h
		name := columnName(h)
		if name == "" {
			continue
		}
		if j, dup := seen[name]; dup {
			return nil, fmt.Errorf("consumer CSV header: columns %d and %d are both %q", j+1, i+1, name)
		}
		seen[name] = i
		if k := consumerFieldIndex(name); k >= 0 {
			c.col[k] = i
		} else if err := CheckAttributeName(name); err != nil {
			return nil, fmt.Errorf("consumer CSV header: column %d: %w", i+1, err)
		} else {
			c.extra = append(c.extra, extraColumn{index: i, name: name})
		}
	}
	if c.col[consumerFieldIndex("email")] < 0 {
		return nil, fmt.Errorf("consumer CSV header has no email column (columns: %s)", strings.Join(c.header, ", "))
	}
	return c, nil
}

func newCSVReader(in io.Reader) *csv.Reader {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1 // counted in Next, so that a short row is a row error like any other
	r.ReuseRecord = true
	return r
}

// columnName is the normalised form of a header name: lower case, spaces and hyphens as
// underscores.
func columnName(h string) string { return AttributeName(h) }

// MaxAttributeName is the longest attribute name, in bytes.
const MaxAttributeName = 64

// AttributeName is the normalised form of an attribute's or a CSV column's name: trimmed,
// lower case, spaces and hyphens as underscores, so "Loyalty Tier" and "loyalty-tier" are
// one attribute, loyalty_tier, which a selection names attr.loyalty_tier.
func AttributeName(h string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return '_'
		}
		return r
	}, strings.ToLower(strings.TrimSpace(h)))
}

// CheckAttributeName returns an error unless name (normalised by AttributeName) is one a
// selection and a template can name: 1 to MaxAttributeName letters, digits, '_' or '-',
// and not a consumer field or one the API shows (id, status).
func CheckAttributeName(name string) error {
	if consumerFieldIndex(name) >= 0 || name == "id" || name == "status" {
		return fmt.Errorf("%q is a consumer field, not an attribute", name)
	}
	ok := name != "" && len(name) <= MaxAttributeName
	for i := 0; ok && i < len(name); i++ {
		b := name[i]
		ok = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
	}
	if !ok {
		return fmt.Errorf("attribute name %q must be 1 to %d letters, digits, '_' or '-'", name, MaxAttributeName)
	}
	return nil
}

// Header returns the column names as the file gives them, trimmed.
func (c *ConsumerCSV) Header() []string {
	return append([]string(nil), c.header...)
}

// Next returns the next consumer of the file. It returns io.EOF after the last record, a
// *RowError for a record that is malformed or fails validation (call Next again to go on),
// and any other error when the input cannot be read, after which the reader is done.
//
// Fields are trimmed. A field left empty, or a column the file lacks, leaves the value
// empty (BirthYear 0, Format ""), which UpsertConsumers takes as "keep what is stored". Email
// is normalised by ValidEmail, interests (separated by ';') by NormalizeInterests, gender is
// lower-cased. Attributes holds the non-empty values of the extra columns, or is nil.
func (c *ConsumerCSV) Next() (Consumer, error) {
	rec, err := c.r.Read()
	if err == nil {
		c.consumed()
		line, _ := c.r.FieldPos(0)
		con, reason := c.consumer(rec)
		if reason != "" {
			return Consumer{}, &RowError{Line: c.base + line, Reason: reason}
		}
		return con, nil
	}
	if err == io.EOF {
		return Consumer{}, io.EOF
	}
	var pe *csv.ParseError
	var rowErr *RowError
	switch {
	case errors.As(err, &pe):
		rowErr = &RowError{Line: c.base + pe.StartLine, Reason: pe.Err.Error()}
		if pe.Line > pe.StartLine {
			rowErr.Reason += fmt.Sprintf(" (a quoted field runs on to line %d; reading again from line %d)",
				c.base+pe.Line, rowErr.Line+1)
		}
	case errors.Is(err, errRecordTooLong):
		rowErr = &RowError{Line: c.in.recordStartLine(),
			Reason: fmt.Sprintf("record longer than %d KiB, probably a quote that is never closed", maxRecordBytes>>10)}
	default:
		return Consumer{}, err
	}
	// Start a fresh csv.Reader on the line after the one the broken record began on, so a
	// stray quote costs that one record and not those it swallowed.
	if err := c.in.restartAt(rowErr.Line + 1); err != nil {
		return Consumer{}, err
	}
	c.r = newCSVReader(c.in)
	c.start = c.in.off
	c.base = c.in.line - 1
	return Consumer{}, rowErr
}

// consumed tells the input that the csv.Reader is done with everything before its offset.
func (c *ConsumerCSV) consumed() {
	c.in.release(c.start + c.r.InputOffset())
}

// consumer validates one record; a non-empty reason says why it is refused.
func (c *ConsumerCSV) consumer(rec []string) (Consumer, string) {
	if len(rec) != len(c.header) {
		return Consumer{}, fmt.Sprintf("has %d fields, the header has %d", len(rec), len(c.header))
	}
	for i, f := range rec {
		if !utf8.ValidString(f) {
			return Consumer{}, fmt.Sprintf("column %q is not valid UTF-8 (save the file as UTF-8)", c.header[i])
		}
		if strings.ContainsRune(f, 0) {
			return Consumer{}, fmt.Sprintf("column %q holds a NUL byte", c.header[i])
		}
	}
	var con Consumer
	for k, f := range ConsumerFields {
		v := ""
		if i := c.col[k]; i >= 0 {
			v = strings.TrimSpace(rec[i])
		}
		if err := f.Set(&con, v, c.maxYear); err != nil {
			return Consumer{}, err.Error()
		}
	}
	for _, x := range c.extra {
		if v := strings.TrimSpace(rec[x.index]); v != "" {
			if con.Attributes == nil {
				con.Attributes = make(map[string]string, len(c.extra))
			}
			con.Attributes[x.name] = v
		}
	}
	return con, ""
}

// ValidEmail returns s as the bare address the program stores: trimmed and lower-cased.
// Returns an error if s is empty, is not an address net/mail accepts, or carries a display
// name, angle brackets or a comment.
func ValidEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("email is empty")
	}
	if len(s) > 254 { // RFC 5321's limit on a forward path
		return "", fmt.Errorf("email %.40q... is longer than 254 characters", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("email %q is not a valid address", s)
	}
	if a.Name != "" || a.Address != s {
		return "", fmt.Errorf("email %q: want the bare address, without a name or angle brackets", s)
	}
	return strings.ToLower(s), nil
}

// NormalizeInterests returns the interests trimmed, lower-cased, without empty or repeated
// entries, in first-seen order. A ';' inside an entry splits it, since the consumers table
// keeps interests as ';golf;tennis;'.
func NormalizeInterests(in []string) []string {
	out := make([]string, 0, len(in))
	add := func(s string) {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			return
		}
		for _, have := range out { // a consumer has a handful, so a scan beats a map
			if have == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, s := range in {
		if strings.IndexByte(s, ';') >= 0 {
			for part := range strings.SplitSeq(s, ";") {
				add(part)
			}
			continue
		}
		add(s)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// rawInput sits between the file and the csv.Reader and keeps the bytes of the record being
// read, so that after a parse error reading can start again from any later line of it.
// data[start:] begins at file offset off, which is on file line line; data[served:] has been
// read from src but not yet handed to the csv.Reader (it is being read again after a restart).
type rawInput struct {
	src    io.Reader
	data   []byte
	start  int
	served int
	off    int64
	line   int
	eof    bool
}

func (in *rawInput) Read(p []byte) (int, error) {
	if in.served < len(in.data) {
		n := copy(p, in.data[in.served:])
		in.served += n
		return n, nil
	}
	if in.eof {
		return 0, io.EOF
	}
	if len(in.data)-in.start >= maxRecordBytes {
		return 0, errRecordTooLong
	}
	n, err := in.fill(len(p))
	copy(p, in.data[in.served:])
	in.served = len(in.data)
	if err == io.EOF {
		in.eof = true
		if n > 0 {
			err = nil
		}
	}
	return n, err
}

// fill appends up to max bytes from src to data, first moving the kept bytes to the front
// of the buffer when there is no room after them.
func (in *rawInput) fill(max int) (int, error) {
	if len(in.data)+max > cap(in.data) {
		if in.start > 0 {
			n := copy(in.data, in.data[in.start:])
			in.data = in.data[:n]
			in.served -= in.start
			in.start = 0
		}
		if len(in.data)+max > cap(in.data) {
			in.data = append(make([]byte, 0, 2*cap(in.data)+max), in.data...)
		}
	}
	end := len(in.data)
	n, err := in.src.Read(in.data[end : end+max])
	in.data = in.data[:end+n]
	return n, err
}

// release drops the bytes before file offset to, counting the lines they hold.
func (in *rawInput) release(to int64) {
	k := int(to - in.off)
	if k <= 0 {
		return
	}
	in.line += bytes.Count(in.data[in.start:in.start+k], []byte{'\n'})
	in.start += k
	in.off = to
}

// recordStartLine is the line the next record starts on: csv skips empty lines before it.
func (in *rawInput) recordStartLine() int {
	line, b := in.line, in.data[in.start:]
	for {
		switch {
		case bytes.HasPrefix(b, []byte("\n")):
			b = b[1:]
		case bytes.HasPrefix(b, []byte("\r\n")):
			b = b[2:]
		default:
			return line
		}
		line++
	}
}

// restartAt drops the input before file line n, reading on through src if the buffer ends
// first, and arranges for what is left to be read again from there.
func (in *rawInput) restartAt(n int) error {
	for in.line < n {
		i := bytes.IndexByte(in.data[in.start:], '\n')
		if i < 0 {
			in.off += int64(len(in.data) - in.start)
			in.data, in.start, in.served = in.data[:0], 0, 0
			if in.eof {
				break
			}
			if _, err := in.fill(4096); err == io.EOF {
				in.eof = true
			} else if err != nil {
				return err
			}
			continue
		}
		in.start += i + 1
		in.off += int64(i + 1)
		in.line++
	}
	in.served = in.start
	return nil
}
