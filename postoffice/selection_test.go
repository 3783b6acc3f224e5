package postoffice

import (
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// openConsumers opens a SQLite file with the real schema, from the store's migrations,
// and the consumers below.
//
//	id email                 name city          country postal year  g interests        fmt  attributes
//	1  ann@example.com       Ann  Paris         FR      75001  1985  f ;golf;tennis;    html plan gold, visits "12"
//	2  bob@example.com       Bob  Boston        US      02134  1975  m ;tennis;         text plan silver, visits "3"
//	3  cat@example.com       Cat  New York      US      10001  1990  f ;golfing;        text plan bronze, visits "x", my-key "v"
//	4  exdan@example.com     Dan  Austin        US      73301  NULL  m                  html {}
//	5  e_v%e@example.com     Évé  San Francisco US      94105  1980  f ;golf;           text plan gold, visits 40 (a number)
//	6  fay@example.com       Fay  Miami         US      33101  1960  f ;golf;           text plan silver
func openConsumers(t testing.TB, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "selection.db")+"?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	files, err := filepath.Glob(filepath.Join("..", "store", "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	slices.Sort(files)
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	for _, c := range []struct {
		email, first, city, country, postal string
		year                                any
		gender, interests, format, attrs    string
	}{
		{"ann@example.com", "Ann", "Paris", "FR", "75001", 1985, "f", ";golf;tennis;", "html", `{"plan":"gold","visits":"12"}`},
		{"bob@example.com", "Bob", "Boston", "US", "02134", 1975, "m", ";tennis;", "text", `{"plan":"silver","visits":"3"}`},
		{"cat@example.com", "Cat", "New York", "US", "10001", 1990, "f", ";golfing;", "text", `{"plan":"bronze","visits":"x","my-key":"v"}`},
		{"exdan@example.com", "Dan", "Austin", "US", "73301", nil, "m", "", "html", `{}`},
		{"e_v%e@example.com", "Évé", "San Francisco", "US", "94105", 1980, "f", ";golf;", "text", `{"plan":"gold","visits":40}`},
		{"fay@example.com", "Fay", "Miami", "US", "33101", 1960, "f", ";golf;", "text", `{"plan":"silver"}`},
	} {
		if _, err := db.Exec(`INSERT INTO consumers (email, first_name, city, country, postal_code, birth_year, gender,
			interests, format, attributes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)`,
			c.email, c.first, c.city, c.country, c.postal, c.year, c.gender, c.interests, c.format, c.attrs); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// matching runs a compiled selection the way the store does and returns the ids it matches.
func matching(t testing.TB, db *sql.DB, where string, args []any) []int64 {
	t.Helper()
	rows, err := db.Query(`SELECT id FROM consumers WHERE status = 'active' AND (`+where+`) ORDER BY id`, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", where, args, err)
	}
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

const exampleSelection = `{"all": [{"field": "country", "op": "=", "value": "US"}, {"any": [{"field": "birth_year", "op": ">=", "value": 1980}, {"field": "interests", "op": "contains", "value": "golf"}]}, {"field": "attr.plan", "op": "in", "value": ["gold", "silver"]}]}`

func TestCompileExample(t *testing.T) {
	sel, err := ParseSelection([]byte(exampleSelection))
	if err != nil {
		t.Fatal(err)
	}
	where, args, err := sel.Compile()
	if err != nil {
		t.Fatal(err)
	}
	wantWhere := `(country = ? AND (birth_year >= ? OR instr(interests, ';' || ? || ';') > 0) AND json_extract(attributes, '$."plan"') IN (?, ?))`
	if where != wantWhere {
		t.Errorf("where\n got %s\nwant %s", where, wantWhere)
	}
	if want := []any{"US", int64(1980), "golf", "gold", "silver"}; !reflect.DeepEqual(args, want) {
		t.Errorf("args = %#v, want %#v", args, want)
	}
	if sel.IsRaw() {
		t.Error("IsRaw")
	}
	db := openConsumers(t, t.TempDir())
	if got := matching(t, db, where, args); !slices.Equal(got, []int64{5, 6}) {
		t.Errorf("matched %v, want [5 6]", got)
	}
}

func TestSelectionMatches(t *testing.T) {
	db := openConsumers(t, t.TempDir())
	all := []int64{1, 2, 3, 4, 5, 6}
	for _, tc := range []struct {
		json string
		want []int64
	}{
		// Everyone.
		{``, all},
		{`null`, all},
		{`{}`, all},
		{`{"all": []}`, all},
		// Text fields; email, gender and format are stored lower-case.
		{`{"field": "email", "op": "=", "value": "ANN@Example.com"}`, []int64{1}},
		{`{"field": "email", "op": "contains", "value": "EXAMPLE.COM"}`, all},
		{`{"field": "email", "op": "prefix", "value": "e_"}`, []int64{5}}, // not exdan: '_' is no wildcard
		{`{"field": "email", "op": "prefix", "value": "e_v%"}`, []int64{5}},
		{`{"field": "email", "op": "<", "value": "c"}`, []int64{1, 2}},
		{`{"field": "first_name", "op": "=", "value": "Ann"}`, []int64{1}},
		{`{"field": "first_name", "op": "=", "value": "ann"}`, []int64{}},
		{`{"field": "first_name", "op": "prefix", "value": "Év"}`, []int64{5}},
		{`{"field": "city", "op": "contains", "value": "an"}`, []int64{5}},
		{`{"field": "city", "op": ">=", "value": "N"}`, []int64{1, 3, 5}},
		{`{"field": "country", "op": "!=", "value": "US"}`, []int64{1}},
		{`{"field": "country", "op": "not in", "value": ["FR", "DE"]}`, []int64{2, 3, 4, 5, 6}},
		{`{"field": "region", "op": "=", "value": ""}`, all},
		{`{"field": "postal_code", "op": "=", "value": 75001}`, []int64{1}},
		{`{"field": "postal_code", "op": "in", "value": ["02134", 10001]}`, []int64{2, 3}},
		{`{"field": "gender", "op": "=", "value": "F"}`, []int64{1, 3, 5, 6}},
		{`{"field": "format", "op": "=", "value": "HTML"}`, []int64{1, 4}},
		// birth_year: numbers, integral floats and numeric strings; != and not in keep the unknown.
		{`{"field": "birth_year", "op": "<", "value": 1980}`, []int64{2, 6}},
		{`{"field": "birth_year", "op": "<=", "value": "1980"}`, []int64{2, 5, 6}},
		{`{"field": "birth_year", "op": ">", "value": 1985.0}`, []int64{3}},
		{`{"field": "birth_year", "op": ">=", "value": 1985}`, []int64{1, 3}},
		{`{"field": "birth_year", "op": "=", "value": 1985}`, []int64{1}},
		{`{"field": "birth_year", "op": "!=", "value": 1985}`, []int64{2, 3, 4, 5, 6}},
		{`{"field": "birth_year", "op": "in", "value": [1975, "1990", 1e3]}`, []int64{2, 3}},
		{`{"field": "birth_year", "op": "not in", "value": [1975]}`, []int64{1, 3, 4, 5, 6}},
		// Interests match whole interests, whatever the case.
		{`{"field": "interests", "op": "contains", "value": "GOLF"}`, []int64{1, 5, 6}},
		{`{"field": "interests", "op": "contains", "value": " golfing "}`, []int64{3}},
		{`{"field": "interests", "op": "in", "value": ["tennis", "golfing"]}`, []int64{1, 2, 3}},
		{`{"field": "interests", "op": "not in", "value": ["golf"]}`, []int64{2, 3, 4}},
		// Attributes: text compares as text; a number compares with the attribute's
		// numeric reading, whether it was stored as a string or as a number.
		{`{"field": "attr.plan", "op": "=", "value": "gold"}`, []int64{1, 5}},
		{`{"field": "attr.plan", "op": "!=", "value": "gold"}`, []int64{2, 3, 4, 6}},
		{`{"field": "attr.plan", "op": "in", "value": ["gold", "silver"]}`, []int64{1, 2, 5, 6}},
		{`{"field": "attr.plan", "op": "not in", "value": ["gold"]}`, []int64{2, 3, 4, 6}},
		{`{"field": "attr.plan", "op": "contains", "value": "ol"}`, []int64{1, 5}},
		{`{"field": "attr.plan", "op": "prefix", "value": "si"}`, []int64{2, 6}},
		{`{"field": "attr.visits", "op": ">=", "value": 10}`, []int64{1, 5}},
		{`{"field": "attr.visits", "op": "<", "value": 5}`, []int64{2}},
		{`{"field": "attr.visits", "op": "=", "value": 12}`, []int64{1}},
		{`{"field": "attr.visits", "op": "=", "value": "12"}`, []int64{1}},
		{`{"field": "attr.visits", "op": ">", "value": 2.5}`, []int64{1, 2, 5}},
		{`{"field": "attr.visits", "op": "in", "value": [3, 40]}`, []int64{2, 5}},
		{`{"field": "attr.visits", "op": "not in", "value": [3, 40]}`, []int64{1, 3, 4, 6}},
		{`{"field": "attr.my-key", "op": "=", "value": "v"}`, []int64{3}},
		{`{"field": "attr.nothing", "op": "=", "value": "v"}`, []int64{}},
		// Groups.
		{`{"any": [{"all": [{"field": "country", "op": "=", "value": "US"}, {"field": "gender", "op": "=", "value": "f"}, {"field": "birth_year", "op": ">", "value": 1985}]}, {"field": "city", "op": "=", "value": "Paris"}]}`, []int64{1, 3}},
		{`{"all": [{"any": [{"field": "attr.plan", "op": "=", "value": "gold"}]}, {"all": [{"field": "country", "op": "=", "value": "US"}]}]}`, []int64{5}},
		{`{"all": [{"field": "country", "op": "=", "value": "US"}, {"all": []}]}`, []int64{2, 3, 4, 5, 6}},
		// Raw.
		{`{"sql": "country = 'US' AND birth_year >= 1980"}`, []int64{3, 5}},
		{`{"sql": "city = 'Paris' -- the French one"}`, []int64{1}},
	} {
		sel, err := ParseSelection([]byte(tc.json))
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		where, args, err := sel.Compile()
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		if got := matching(t, db, where, args); !slices.Equal(got, tc.want) {
			t.Errorf("%s\n  compiled %s %v\n  matched %v, want %v", tc.json, where, args, got, tc.want)
		}
	}
}

// Selections built in Go, as the toolbox may, take Go slices and integers.
func TestSelectionFromGo(t *testing.T) {
	db := openConsumers(t, t.TempDir())
	for _, tc := range []struct {
		sel  *Selection
		want []int64
	}{
		{nil, []int64{1, 2, 3, 4, 5, 6}},
		{&Selection{Field: "birth_year", Op: "in", Value: []int{1975, 1990}}, []int64{2, 3}},
		{&Selection{Field: "country", Op: "IN", Value: []string{"FR"}}, []int64{1}},
		{&Selection{Field: "birth_year", Op: " NOT   IN ", Value: []int64{1975}}, []int64{1, 3, 4, 5, 6}},
		{&Selection{Field: "birth_year", Op: ">", Value: json.Number("1985")}, []int64{3}},
		{&Selection{Any: []Selection{{Field: "city", Op: "=", Value: "Paris"}, {Field: "city", Op: "=", Value: "Miami"}}}, []int64{1, 6}},
	} {
		where, args, err := tc.sel.Compile()
		if err != nil {
			t.Errorf("%+v: %v", tc.sel, err)
			continue
		}
		if got := matching(t, db, where, args); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %s %v matched %v, want %v", tc.sel, where, args, got, tc.want)
		}
	}
}

func TestSelectionErrors(t *testing.T) {
	deep := `{"field": "country", "op": "=", "value": "US"}`
	for range maxSelectionDepth + 1 {
		deep = `{"all": [` + deep + `]}`
	}
	for _, tc := range []struct{ json, want string }{
		{`{"all": [{"field": "country", "op": "=", "value": "US"}, {"any": [{"field": "birth_year", "op": "~", "value": 1}]}]}`,
			`selection.all[1].any[0].op: unknown operator "~"`},
		{`{"field": "colour", "op": "=", "value": "red"}`, `selection.field: unknown field "colour"`},
		{`{"op": "=", "value": "red"}`, `selection.field: missing`},
		{`{"field": "city", "value": "Paris"}`, `selection.op: missing`},
		{`{"field": "city", "op": "="}`, `selection.value: missing`},
		{`{"field": "city", "op": "=", "value": null}`, `selection.value: missing`},
		{`{"field": "attr.", "op": "=", "value": "x"}`, `selection.field: attribute name "" must be`},
		{`{"field": "attr.a b", "op": "=", "value": "x"}`, `selection.field: attribute name "a b" must be`},
		{`{"field": "attr.a'b", "op": "=", "value": "x"}`, `selection.field: attribute name "a'b" must be`},
		{`{"field": "attr.x", "op": "=", "value": true}`, `selection.value: needs a string or a number, not true`},
		{`{"field": "birth_year", "op": ">=", "value": 1980.5}`, `selection.value: birth_year needs a whole number, not 1980.5`},
		{`{"field": "birth_year", "op": ">=", "value": "nineteen"}`, `selection.value: birth_year needs a whole number, not "nineteen"`},
		{`{"field": "birth_year", "op": ">=", "value": true}`, `selection.value: birth_year needs a whole number, not true`},
		{`{"field": "birth_year", "op": "in", "value": [1980, 1.5]}`, `selection.value[1]: birth_year needs a whole number, not 1.5`},
		{`{"field": "birth_year", "op": "contains", "value": 19}`, `selection.op: operator "contains" does not apply to birth_year`},
		{`{"field": "interests", "op": "=", "value": "golf"}`, `selection.op: operator "=" does not apply to interests (use contains, in or not in)`},
		{`{"field": "interests", "op": "prefix", "value": "go"}`, `selection.op: operator "prefix" does not apply to interests`},
		{`{"field": "interests", "op": "contains", "value": "golf;tennis"}`, `selection.value: "golf;tennis" is not one interest`},
		{`{"field": "interests", "op": "contains", "value": "  "}`, `selection.value: "  " is not one interest`},
		{`{"field": "interests", "op": "in", "value": [1]}`, `selection.value[0]: interests needs a string, not 1`},
		{`{"field": "city", "op": "=", "value": true}`, `selection.value: needs a string, not true`},
		{`{"field": "city", "op": "=", "value": 1.5}`, `selection.value: needs a string, not 1.5`},
		{`{"field": "city", "op": "=", "value": ["Paris"]}`, `selection.value: needs a string, not an array`},
		{`{"field": "city", "op": "contains", "value": ""}`, `selection.value: contains needs a non-empty string`},
		{`{"field": "city", "op": "prefix", "value": ""}`, `selection.value: prefix needs a non-empty string`},
		{`{"field": "city", "op": "in", "value": "Paris"}`, `selection.value: in needs an array of values`},
		{`{"field": "city", "op": "not in", "value": []}`, `selection.value: not in needs at least one value`},
		{`{"field": "city", "op": "in", "value": [{"a": 1}]}`, `selection.value[0]: needs a string, not an object`},
		{`{"field": "attr.x", "op": "in", "value": ["a", 1]}`, `selection.value: mixes strings and numbers`},
		{`{"field": "attr.x", "op": "contains", "value": 5}`, `selection.value: contains needs a non-empty string`},
		{`{"all": [{}]}`, `selection.all[0]: empty`},
		{`{"any": []}`, `selection.any: empty`},
		{`{"all": [], "any": []}`, `selection: has all and any`},
		{`{"all": [], "field": "city", "op": "=", "value": "x"}`, `selection: has all and a condition`},
		{`{"field": "city", "op": "=", "value": "x", "sql": "1"}`, `selection: has a condition and sql`},
		{`{"all": [{"sql": "1"}]}`, `selection.all[0].sql: raw sql must be the whole selection`},
		{`{"all": [{"fild": "city"}]}`, `selection.all[0].fild: unknown key`},
		{`{"field": 5, "op": "=", "value": 1}`, `selection.field: must be a string, not a number`},
		{`{"all": {"field": "city"}}`, `selection.all: must be an array, not an object`},
		{`{"any": [5]}`, `selection.any[0]: must be an object, not a number`},
		{`[]`, `selection: must be an object, not an array`},
		{`{"sql": ""}`, `selection.sql: empty expression`},
		{`{"sql": "  "}`, `selection.sql: empty expression`},
		{`{} {}`, `selection: unexpected data after the selection`},
		{`{"all": [`, `selection: not valid JSON`},
		{deep, `nested more than 16 levels deep`},
		// Raw expressions that could not stay one expression inside the store's parentheses.
		{`{"sql": "1=1; DROP TABLE jobs"}`, `selection.sql: ';' outside a string`},
		{`{"sql": "1) OR (1"}`, `selection.sql: unbalanced parentheses: ')' without '('`},
		{`{"sql": "(1"}`, `selection.sql: unbalanced parentheses: '(' without ')'`},
		{`{"sql": "city = 'Paris"}`, `selection.sql: unterminated string literal`},
		{`{"sql": "\"city = 1"}`, `selection.sql: unterminated quoted name`},
		{`{"sql": "[city = 1"}`, `selection.sql: unterminated [name]`},
		{`{"sql": "1 /* open"}`, `selection.sql: unterminated /* comment`},
		{`{"sql": "city = ?"}`, `selection.sql: '?' outside a string`},
		{`{"sql": "city = :c"}`, `selection.sql: ':' outside a string`},
		{`{"sql": "city = @c"}`, `selection.sql: '@' outside a string`},
		{`{"sql": "city = $c"}`, `selection.sql: '$' outside a string`},
		{`{"sql": "1\u0000) OR (1"}`, `selection.sql: contains a NUL byte`},
	} {
		_, err := ParseSelection([]byte(tc.json))
		var se *SelectionError
		if !errors.As(err, &se) {
			t.Errorf("%s: error %v, want a *SelectionError", tc.json, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  got  %v\n  want %s", tc.json, err, tc.want)
		}
	}
}

func TestCompileRaw(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"  country = 'US'  ", "country = 'US'"},
		{"email = 'a;b' AND city <> ')'", "email = 'a;b' AND city <> ')'"},
		{`"weird""name" = 1 AND a$b = 2 AND x = 'it''s ?'`, `"weird""name" = 1 AND a$b = 2 AND x = 'it''s ?'`},
		{"/* ; ) */ 1 -- ; (\n AND 2", "/* ; ) */ 1 -- ; (\n AND 2"},
		{"country = 'US' -- US only", "country = 'US' -- US only\n"},
	} {
		s := &Selection{SQL: tc.sql}
		where, args, err := s.Compile()
		if err != nil || where != tc.want || args != nil || !s.IsRaw() {
			t.Errorf("%q: got %q %v %v, want %q", tc.sql, where, args, err, tc.want)
		}
	}
	long := &Selection{SQL: strings.Repeat("1 AND ", maxSelectionRawSQL/6+1) + "1"}
	if _, _, err := long.Compile(); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("long raw sql: %v", err)
	}
}

func TestParseSelectionEmpty(t *testing.T) {
	for _, in := range []string{"", "   \n", "null", " null "} {
		sel, err := ParseSelection([]byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		where, args, err := sel.Compile()
		if err != nil || where != "1" || args != nil || sel.IsRaw() {
			t.Errorf("%q: %q %v %v", in, where, args, err)
		}
	}
	var nilSel *Selection
	if where, _, err := nilSel.Compile(); where != "1" || err != nil || nilSel.IsRaw() {
		t.Errorf("nil selection: %q %v", where, err)
	}
}

// The limits keep a compiled selection inside SQLite's.
func TestSelectionLimits(t *testing.T) {
	vals := make([]any, maxSelectionList+1)
	for i := range vals {
		vals[i] = "x"
	}
	s := &Selection{Field: "city", Op: "in", Value: vals}
	if _, _, err := s.Compile(); err == nil || !strings.Contains(err.Error(), "more than 1000 values") {
		t.Errorf("long list: %v", err)
	}
	many := &Selection{}
	for range maxSelectionArgs/maxSelectionList + 1 {
		many.All = append(many.All, Selection{Field: "city", Op: "in", Value: vals[:maxSelectionList]})
	}
	if _, _, err := many.Compile(); err == nil || !strings.Contains(err.Error(), "more than 10000 values in all") {
		t.Errorf("many values: %v", err)
	}
}

func FuzzCompileSelection(f *testing.F) {
	for _, seed := range []string{
		exampleSelection,
		``, `null`, `{}`, `[]`,
		`{"sql": "country = 'US' AND birth_year >= 1980"}`,
		`{"sql": "1) OR (1 -- "}`,
		`{"field": "attr.my-key", "op": "not in", "value": [1, 2.5]}`,
		`{"field": "interests", "op": "in", "value": ["Golf", "tennis"]}`,
		`{"field": "email", "op": "prefix", "value": "a%_\\"}`,
		`{"field": "birth_year", "op": "!=", "value": "1980"}`,
		`{"any": [{"field": "city", "op": "contains", "value": "'); DROP TABLE consumers; --"}]}`,
		`{"all": [{"all": [{"any": [{"field": "postal_code", "op": "<", "value": 75000}]}]}]}`,
	} {
		f.Add([]byte(seed))
	}
	db := openConsumers(f, f.TempDir())
	f.Fuzz(func(t *testing.T, data []byte) {
		sel, err := ParseSelection(data)
		if err != nil {
			var se *SelectionError
			if !errors.As(err, &se) || !strings.HasPrefix(se.Path, "selection") {
				t.Fatalf("error %v (%T) is not a *SelectionError with a path", err, err)
			}
			return
		}
		where, args, err := sel.Compile()
		if err != nil {
			t.Fatalf("ParseSelection accepted what Compile refuses: %v", err)
		}
		if sel.IsRaw() {
			if args != nil || strings.TrimSpace(where) != strings.TrimSpace(sel.SQL) {
				t.Fatalf("raw %q compiled to %q %v", sel.SQL, where, args)
			}
			if _, err := scanRawSQL(where); err != nil {
				t.Fatalf("raw %q: %v", where, err)
			}
			return // raw SQL is the guard's to run
		}
		// Values are parameters: as many "?" as args, each a plain SQLite value.
		if n := strings.Count(where, "?"); n != len(args) {
			t.Fatalf("%s: %d placeholders, %d args", where, n, len(args))
		}
		for _, a := range args {
			switch a.(type) {
			case string, int64, float64:
			default:
				t.Fatalf("arg %#v of type %T", a, a)
			}
		}
		// And the expression is valid SQL over the real table.
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM consumers WHERE status = 'active' AND (`+where+`)`, args...).Scan(&n); err != nil {
			t.Fatalf("%s %v: %v", where, args, err)
		}
	})
}
