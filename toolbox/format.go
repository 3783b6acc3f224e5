package toolbox

import (
	"strconv"
	"strings"
)

// thousands writes n with thousands separators: 1,234,567 and -1,234.
func thousands[T ~int | ~int64](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	var b strings.Builder
	if s[0] == '-' {
		b.WriteByte('-')
		s = s[1:]
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// csvCell keeps an exported value from being run as a formula by a spreadsheet: one that
// starts with = + - @, or with the tab or carriage return some spreadsheets skip before
// reading one, gets a leading apostrophe.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
