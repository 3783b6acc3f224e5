package postoffice

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"pointpost/rewards"
)

// The store compiles Criteria into each engine's SQL and runs them: the SQL text and what a
// selection matches are tested there (store/selection_test.go).

const exampleSelection = `{"all": [{"field": "country", "op": "=", "value": "US"}, {"any": [{"field": "birth_year", "op": ">=", "value": 1980}, {"field": "interests", "op": "contains", "value": "golf"}]}, {"field": "attr.plan", "op": "in", "value": ["gold", "silver"]}]}`

func TestCheckExample(t *testing.T) {
	sel, err := ParseSelection([]byte(exampleSelection))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sel.Check("acme")
	if err != nil {
		t.Fatal(err)
	}
	want := &Criteria{Issuer: "acme", Root: &Criterion{Members: []Criterion{
		{Cond: &Condition{Field: "country", Kind: rewards.FieldText, Op: "=", Values: []any{"US"}}},
		{Any: true, Members: []Criterion{
			{Cond: &Condition{Field: "birth_year", Kind: rewards.FieldYear, Op: ">=", Values: []any{int64(1980)}}},
			{Cond: &Condition{Field: "interests", Kind: rewards.FieldList, Op: "contains", Values: []any{"golf"}}},
		}},
		{Cond: &Condition{Attr: "plan", Op: "in", Values: []any{"gold", "silver"}}},
	}}}
	if !reflect.DeepEqual(c, want) {
		got, _ := json.Marshal(c)
		exp, _ := json.Marshal(want)
		t.Errorf("criteria\n got %s\nwant %s", got, exp)
	}
	if sel.IsRaw() {
		t.Error("IsRaw")
	}
}

// Values are checked and converted: lower-cased where the field is stored lower-case,
// numbers for birth_year, digits for a text field given a number; Go slices and integers
// are taken as the toolbox may build them.
func TestCheckConvertsValues(t *testing.T) {
	for _, tc := range []struct {
		sel  *Selection
		want []any
	}{
		{&Selection{Field: "email", Op: "=", Value: "ANN@Example.com"}, []any{"ann@example.com"}},
		{&Selection{Field: "first_name", Op: "=", Value: "Ann"}, []any{"Ann"}},
		{&Selection{Field: "postal_code", Op: "in", Value: []any{"02134", 10001.0}}, []any{"02134", "10001"}},
		{&Selection{Field: "birth_year", Op: "<=", Value: "1980"}, []any{int64(1980)}},
		{&Selection{Field: "birth_year", Op: ">", Value: 1985.0}, []any{int64(1985)}},
		{&Selection{Field: "birth_year", Op: "in", Value: []int{1975, 1990}}, []any{int64(1975), int64(1990)}},
		{&Selection{Field: "birth_year", Op: ">", Value: json.Number("1985")}, []any{int64(1985)}},
		{&Selection{Field: "interests", Op: "contains", Value: " GOLFing "}, []any{"golfing"}},
		{&Selection{Field: "attr.visits", Op: ">", Value: 2.5}, []any{2.5}},
		{&Selection{Field: "attr.visits", Op: "=", Value: 12}, []any{int64(12)}},
		{&Selection{Field: "attr.visits", Op: "=", Value: "12"}, []any{"12"}},
	} {
		c, err := tc.sel.Check("")
		if err != nil {
			t.Errorf("%+v: %v", tc.sel, err)
			continue
		}
		if c.Root == nil || c.Root.Cond == nil || !reflect.DeepEqual(c.Root.Cond.Values, tc.want) {
			t.Errorf("%+v: got %+v, want values %#v", tc.sel, c.Root, tc.want)
		}
	}
	c, err := (&Selection{Field: "country", Op: " NOT   IN ", Value: []string{"FR"}}).Check("")
	if err != nil || c.Root.Cond.Op != "not in" {
		t.Errorf("op spelled loosely: %+v %v", c, err)
	}
	if c, _ := (&Selection{Field: "birth_year", Op: "!=", Value: 1}).Check(""); !c.Root.Cond.Nullable() {
		t.Error("birth_year is not nullable")
	}
	if c, _ := (&Selection{Field: "attr.x", Op: "!=", Value: 1}).Check(""); !c.Root.Cond.Nullable() {
		t.Error("an attribute is not nullable")
	}
	if c, _ := (&Selection{Field: "city", Op: "!=", Value: "x"}).Check(""); c.Root.Cond.Nullable() {
		t.Error("city is nullable")
	}
	if _, err := (&Selection{Field: "city", Op: "=", Value: "x"}).Check("Not A Slug"); err == nil {
		t.Error("a bad issuer slug was taken")
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

func TestCheckRaw(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"  country = 'US'  ", "country = 'US'"},
		{"email = 'a;b' AND city <> ')'", "email = 'a;b' AND city <> ')'"},
		{`"weird""name" = 1 AND a$b = 2 AND x = 'it''s ?'`, `"weird""name" = 1 AND a$b = 2 AND x = 'it''s ?'`},
		{"/* ; ) */ 1 -- ; (\n AND 2", "/* ; ) */ 1 -- ; (\n AND 2"},
		{"country = 'US' -- US only", "country = 'US' -- US only\n"},
	} {
		s := &Selection{SQL: tc.sql}
		c, err := s.Check("")
		if err != nil || c.Raw != tc.want || c.Root != nil || !s.IsRaw() {
			t.Errorf("%q: got %+v %v, want %q", tc.sql, c, err, tc.want)
		}
	}
	long := &Selection{SQL: strings.Repeat("1 AND ", maxSelectionRawSQL/6+1) + "1"}
	if _, err := long.Check(""); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("long raw sql: %v", err)
	}
}

func TestParseSelectionEmpty(t *testing.T) {
	for _, in := range []string{"", "   \n", "null", " null ", "{}"} {
		sel, err := ParseSelection([]byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		c, err := sel.Check("")
		if err != nil || c.Root != nil || c.Raw != "" || sel.IsRaw() {
			t.Errorf("%q: %+v %v", in, c, err)
		}
	}
	var nilSel *Selection
	if c, err := nilSel.Check(""); err != nil || c.Root != nil || c.Raw != "" || nilSel.IsRaw() {
		t.Errorf("nil selection: %+v %v", c, err)
	}
	// An empty all-group is a group without members: everyone.
	sel, err := ParseSelection([]byte(`{"all": []}`))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := sel.Check(""); err != nil || c.Root == nil || c.Root.Any || c.Root.Cond != nil || len(c.Root.Members) != 0 {
		t.Errorf("empty all-group: %+v %v", c, err)
	}
}

// The limits keep a compiled selection inside what the engines accept.
func TestSelectionLimits(t *testing.T) {
	vals := make([]any, maxSelectionList+1)
	for i := range vals {
		vals[i] = "x"
	}
	s := &Selection{Field: "city", Op: "in", Value: vals}
	if _, err := s.Check(""); err == nil || !strings.Contains(err.Error(), "more than 1000 values") {
		t.Errorf("long list: %v", err)
	}
	many := &Selection{}
	for range maxSelectionArgs/maxSelectionList + 1 {
		many.All = append(many.All, Selection{Field: "city", Op: "in", Value: vals[:maxSelectionList]})
	}
	if _, err := many.Check(""); err == nil || !strings.Contains(err.Error(), "more than 10000 values in all") {
		t.Errorf("many values: %v", err)
	}
}

// FuzzCheckSelection: whatever ParseSelection takes, Check takes too and makes criteria of
// the shape the store compiles; whatever it refuses is a *SelectionError with a path. The
// store's FuzzCompileSelection runs what comes out.
func FuzzCheckSelection(f *testing.F) {
	for _, seed := range fuzzSelectionSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sel, err := ParseSelection(data)
		if err != nil {
			var se *SelectionError
			if !errors.As(err, &se) || !strings.HasPrefix(se.Path, "selection") {
				t.Fatalf("error %v (%T) is not a *SelectionError with a path", err, err)
			}
			return
		}
		c, err := sel.Check("acme")
		if err != nil {
			t.Fatalf("ParseSelection accepted what Check refuses: %v", err)
		}
		if sel.IsRaw() {
			if c.Root != nil || strings.TrimSpace(c.Raw) != strings.TrimSpace(sel.SQL) {
				t.Fatalf("raw %q checked to %+v", sel.SQL, c)
			}
			if _, err := scanRawSQL(c.Raw); err != nil {
				t.Fatalf("raw %q: %v", c.Raw, err)
			}
			return
		}
		if c.Raw != "" || c.Issuer != "acme" {
			t.Fatalf("criteria %+v", c)
		}
		if c.Root != nil {
			checkCriterion(t, c.Root)
		}
	})
}

// fuzzSelectionSeeds start the fuzzers of selections, here and in the store.
var fuzzSelectionSeeds = []string{
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
}

func checkCriterion(t *testing.T, n *Criterion) {
	t.Helper()
	if n.Cond == nil {
		if n.Any && len(n.Members) == 0 {
			t.Fatal("an any-group without members")
		}
		for i := range n.Members {
			checkCriterion(t, &n.Members[i])
		}
		return
	}
	c := n.Cond
	if (c.Field == "") == (c.Attr == "") || len(c.Values) == 0 || (len(c.Values) > 1 && c.Op != "in" && c.Op != "not in") {
		t.Fatalf("condition %+v", c)
	}
	for _, v := range c.Values {
		switch v.(type) {
		case string, int64, float64:
		default:
			t.Fatalf("value %#v of type %T", v, v)
		}
	}
}
