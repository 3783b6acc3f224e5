package store

import (
	"context"
	"database/sql"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pointpost/postoffice"
)

// compileTest checks sel for the issuer with slug and compiles it for s's engine.
func compileTest(t testing.TB, s *Store, sel *postoffice.Selection, slug string) (string, []any) {
	t.Helper()
	c, err := sel.Check(slug)
	if err != nil {
		t.Fatal(err)
	}
	where, args, err := s.CompileSelection(c)
	if err != nil {
		t.Fatal(err)
	}
	return where, args
}

// openSelectionConsumers opens a store with the consumers below.
//
//	id email                 name city          country postal year  g interests        fmt  attributes
//	1  ann@example.com       Ann  Paris         FR      75001  1985  f ;golf;tennis;    html plan gold, visits "12"
//	2  bob@example.com       Bob  Boston        US      02134  1975  m ;tennis;         text plan silver, visits "3"
//	3  cat@example.com       Cat  New York      US      10001  1990  f ;golfing;        text plan bronze, visits "x", my-key "v"
//	4  exdan@example.com     Dan  Austin        US      73301  NULL  m                  html {}
//	5  e_v%e@example.com     Évé  San Francisco US      94105  1980  f ;golf;           text plan gold, visits 40 (a number)
//	6  fay@example.com       Fay  Miami         US      33101  1960  f ;golf;           text plan silver, acme:plan bronze
func openSelectionConsumers(t testing.TB) *Store {
	t.Helper()
	s := openTest(t)
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
		{"fay@example.com", "Fay", "Miami", "US", "33101", 1960, "f", ";golf;", "text", `{"plan":"silver","acme:plan":"bronze"}`},
	} {
		if _, err := s.write.Exec(`INSERT INTO consumers (email, first_name, city, country, postal_code, birth_year, gender,
			interests, format, attributes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)`,
			c.email, c.first, c.city, c.country, c.postal, c.year, c.gender, c.interests, c.format, c.attrs); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// matchingIDs runs a compiled selection the way the store runs a job's (on the selections'
// pool, under the guard) and returns the ids of the active consumers it matches.
func matchingIDs(t testing.TB, s *Store, where string, args []any, raw bool) []int64 {
	t.Helper()
	if err := s.refuseRawPG(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	expr, err := selectionExpr(where)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	err = s.runSelection(context.Background(), raw, func(run context.Context, conn *sql.Conn) (err error) {
		ids, err = scanIDs(conn.QueryContext(run, `SELECT id FROM consumers WHERE status = 'active' AND `+expr+` ORDER BY id`, args...))
		return err
	})
	if err != nil {
		t.Fatalf("%s %v: %v", where, args, err)
	}
	return ids
}

const exampleSelection = `{"all": [{"field": "country", "op": "=", "value": "US"}, {"any": [{"field": "birth_year", "op": ">=", "value": 1980}, {"field": "interests", "op": "contains", "value": "golf"}]}, {"field": "attr.plan", "op": "in", "value": ["gold", "silver"]}]}`

// Each engine's text of the example, parameters and all: what the job shows as its SQL
// selection 216i.
func TestCompileSelectionText(t *testing.T) {
	sel, err := postoffice.ParseSelection([]byte(exampleSelection))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sel.Check("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		engine engine
		where  string
	}{
		{engineSQLite, `(country = ? AND (birth_year >= ? OR instr(interests, ';' || ? || ';') > 0) AND json_extract(attributes, '$."plan"') IN (?, ?))`},
		{enginePostgres, `(country = ? AND (birth_year >= ? OR strpos(interests, ';' || CAST(? AS text) || ';') > 0) AND (CASE WHEN jsonb_typeof(attributes::jsonb -> 'plan') = 'string' THEN attributes::jsonb ->> 'plan' END) IN (?, ?))`},
	} {
		where, args, err := compileSelection(tc.engine, c)
		if err != nil || where != tc.where {
			t.Errorf("engine %d: %v\n got %s\nwant %s", tc.engine, err, where, tc.where)
		}
		if want := []any{"US", int64(1980), "golf", "gold", "silver"}; !reflect.DeepEqual(args, want) {
			t.Errorf("engine %d: args = %#v, want %#v", tc.engine, args, want)
		}
	}
	for _, e := range []engine{engineSQLite, enginePostgres} {
		for _, empty := range []*postoffice.Criteria{nil, {}, {Issuer: "acme"}} {
			if where, args, err := compileSelection(e, empty); where != e.either("1", "TRUE") || args != nil || err != nil {
				t.Errorf("engine %d, empty %+v: %q %v %v", e, empty, where, args, err)
			}
		}
		raw := &postoffice.Criteria{Raw: "country = 'US'"}
		if where, args, err := compileSelection(e, raw); where != raw.Raw || args != nil || err != nil {
			t.Errorf("engine %d, raw: %q %v %v", e, where, args, err)
		}
	}
	// Criteria that Check does not make are refused, not compiled into nonsense.
	for _, bad := range []*postoffice.Criterion{
		{Cond: &postoffice.Condition{Field: "city", Op: "~", Values: []any{"x"}}},
		{Cond: &postoffice.Condition{Field: "city", Op: "="}},
		{Any: true},
	} {
		if where, _, err := compileSelection(engineSQLite, &postoffice.Criteria{Root: bad}); err == nil {
			t.Errorf("%+v compiled to %q", bad, where)
		}
	}
}

// An issuer's selection reads its own attribute first, then the program's, never another
// issuer's, on either engine.
func TestCompileSelectionReadsTheIssuersAttributes(t *testing.T) {
	sel := &postoffice.Selection{Any: []postoffice.Selection{
		{Field: "attr.plan", Op: "=", Value: "bronze"},
		{Field: "attr.visits", Op: ">", Value: 1},
	}}
	c, err := sel.Check("acme")
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`'\$?\.?"?([a-z0-9_:-]+)"?'`)
	for _, e := range []engine{engineSQLite, enginePostgres} {
		where, _, err := compileSelection(e, c)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, m := range key.FindAllStringSubmatch(where, -1) {
			if m[1] != "string" && m[1] != "number" && m[1] != "integer" && m[1] != "real" {
				keys = append(keys, m[1])
			}
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		if want := []string{"acme:plan", "acme:visits", "plan", "visits"}; !slices.Equal(keys, want) {
			t.Errorf("engine %d reads %v, want %v: %s", e, keys, want, where)
		}
	}
	s := openSelectionConsumers(t)
	where, args, err := s.CompileSelection(c)
	if err != nil {
		t.Fatal(err)
	}
	// Fay's own plan for acme is bronze; Cat's program plan is bronze; the visits > 1 are
	// Ann ("12"), Bob ("3") and Évé (40).
	if got := matchingIDs(t, s, where, args, false); !slices.Equal(got, []int64{1, 2, 3, 5, 6}) {
		t.Errorf("acme's selection matched %v", got)
	}
}

// What each selection matches, on the engine the tests run on: the same consumers on both.
func TestSelectionMatches(t *testing.T) {
	s := openSelectionConsumers(t)
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
		{exampleSelection, []int64{5, 6}},
		// Raw.
		{`{"sql": "country = 'US' AND birth_year >= 1980"}`, []int64{3, 5}},
		{`{"sql": "city = 'Paris' -- the French one"}`, []int64{1}},
	} {
		sel, err := postoffice.ParseSelection([]byte(tc.json))
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		where, args := compileTest(t, s, sel, "")
		if got := matchingIDs(t, s, where, args, sel.IsRaw()); !slices.Equal(got, tc.want) {
			t.Errorf("%s\n  compiled %s %v\n  matched %v, want %v", tc.json, where, args, got, tc.want)
		}
	}
}

// Selections built in Go, as the toolbox may, take Go slices and integers.
func TestSelectionFromGo(t *testing.T) {
	s := openSelectionConsumers(t)
	for _, tc := range []struct {
		sel  *postoffice.Selection
		want []int64
	}{
		{nil, []int64{1, 2, 3, 4, 5, 6}},
		{&postoffice.Selection{Field: "birth_year", Op: "in", Value: []int{1975, 1990}}, []int64{2, 3}},
		{&postoffice.Selection{Field: "country", Op: "IN", Value: []string{"FR"}}, []int64{1}},
		{&postoffice.Selection{Field: "birth_year", Op: " NOT   IN ", Value: []int64{1975}}, []int64{1, 3, 4, 5, 6}},
		{&postoffice.Selection{Any: []postoffice.Selection{{Field: "city", Op: "=", Value: "Paris"}, {Field: "city", Op: "=", Value: "Miami"}}}, []int64{1, 6}},
	} {
		where, args := compileTest(t, s, tc.sel, "")
		if got := matchingIDs(t, s, where, args, false); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %s %v matched %v, want %v", tc.sel, where, args, got, tc.want)
		}
	}
}

// FuzzCompileSelection: every selection ParseSelection takes compiles, with as many
// placeholders as parameters, into an expression the engine runs over the real table.
func FuzzCompileSelection(f *testing.F) {
	for _, seed := range []string{
		exampleSelection,
		``, `null`, `{}`,
		`{"field": "attr.my-key", "op": "not in", "value": [1, 2.5]}`,
		`{"field": "interests", "op": "in", "value": ["Golf", "tennis"]}`,
		`{"field": "email", "op": "prefix", "value": "a%_\\"}`,
		`{"field": "birth_year", "op": "!=", "value": "1980"}`,
		`{"any": [{"field": "city", "op": "contains", "value": "'); DROP TABLE consumers; --"}]}`,
		`{"all": [{"all": [{"any": [{"field": "postal_code", "op": "<", "value": 75000}]}]}]}`,
		`{"field": "attr.visits", "op": "<", "value": 1e300}`,
	} {
		f.Add([]byte(seed))
	}
	s := openSelectionConsumers(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		sel, err := postoffice.ParseSelection(data)
		if err != nil || sel.IsRaw() {
			return // postoffice's FuzzCheckSelection; raw SQL is the guard's
		}
		c, err := sel.Check("acme")
		if err != nil {
			t.Fatalf("ParseSelection accepted what Check refuses: %v", err)
		}
		where, args, err := s.CompileSelection(c)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(where, "?"); n != len(args) && s.engine == engineSQLite {
			t.Fatalf("%s: %d placeholders, %d args", where, n, len(args))
		}
		matchingIDs(t, s, where, args, false)
	})
}
