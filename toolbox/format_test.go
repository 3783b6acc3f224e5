package toolbox

import (
	"math"
	"testing"
)

func TestThousands(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0"}, {7, "7"}, {999, "999"}, {1000, "1,000"}, {12345, "12,345"}, {999999, "999,999"},
		{1000000, "1,000,000"}, {1234567, "1,234,567"}, {-1, "-1"}, {-999, "-999"}, {-1000, "-1,000"},
		{-1234567, "-1,234,567"}, {math.MaxInt64, "9,223,372,036,854,775,807"},
		{math.MinInt64, "-9,223,372,036,854,775,808"},
	} {
		if got := thousands(c.n); got != c.want {
			t.Errorf("thousands(int64 %d) = %q, want %q", c.n, got, c.want)
		}
		if c.n >= math.MinInt32 && c.n <= math.MaxInt32 {
			if got := thousands(int(c.n)); got != c.want {
				t.Errorf("thousands(int %d) = %q, want %q", c.n, got, c.want)
			}
		}
	}
	type points int64 // a named type, as the stores' counts may be
	if got := thousands(points(-12345)); got != "-12,345" {
		t.Errorf("thousands(points(-12345)) = %q", got)
	}
}

func TestCSVCell(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"},
		{"+1+1", "'+1+1"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\t=1", "'\t=1"},
		{"\r=1", "'\r=1"},
		{"ann@example.com", "ann@example.com"},
		{"a=b", "a=b"},
		{"O'Brien", "O'Brien"},
		{"", ""},
	} {
		if got := csvCell(c.in); got != c.want {
			t.Errorf("csvCell(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
