package postoffice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"pointpost/rewards"
)

// ErrTooManySelections is returned, wrapped, when a selection cannot start now: its issuer
// already has as many running as it may, or the selections' connections stayed busy for
// the whole time limit. Trying again later is the answer (HTTP 429).
var ErrTooManySelections = &rewards.Error{Code: rewards.ETOOMANY, Message: "too many selections running: try again when one has finished"}

type selectionOwnerKey struct{}

// WithSelectionOwner returns ctx naming the issuer (by slug) whose request runs the
// selections made with it, so that the store counts them against that issuer's limit of
// selections at once.
func WithSelectionOwner(ctx context.Context, issuer string) context.Context {
	return context.WithValue(ctx, selectionOwnerKey{}, issuer)
}

// SelectionOwner is the issuer WithSelectionOwner named in ctx, or "" (the operators).
func SelectionOwner(ctx context.Context) string {
	owner, _ := ctx.Value(selectionOwnerKey{}).(string)
	return owner
}

// Selection is a job's audience criteria, the SQL selection 216i before it is compiled: a
// tree whose every node is exactly one of an all-group (every member matches), an any-group
// (at least one matches), a condition on one consumer field, or, only as the whole
// selection, one raw SQL expression that the store runs under its guard. The zero Selection
// matches every active consumer.
//
// Conditions: email, gender and format are stored lower-case, so their values are
// lower-cased; other text fields compare as written. interests matches whole interests
// (contains; in for any of several; not in for none). On birth_year and attributes, which
// may be unknown, != and not in also match the consumers for whom the value is unknown.
//
//	{"all": [{"field": "country", "op": "=", "value": "US"},
//	         {"any": [{"field": "birth_year", "op": ">=", "value": 1980},
//	                  {"field": "interests", "op": "contains", "value": "golf"}]},
//	         {"field": "attr.plan", "op": "in", "value": ["gold", "silver"]}]}
//	{"sql": "country = 'US' AND birth_year >= 1980"}
type Selection struct {
	All   []Selection `json:"all,omitempty"`
	Any   []Selection `json:"any,omitempty"`
	Field string      `json:"field,omitempty"`
	Op    string      `json:"op,omitempty"`
	Value any         `json:"value,omitempty"`
	SQL   string      `json:"sql,omitempty"`
}

// SelectionError is selection criteria that are wrong at Path, such as
// "selection.all[1].any[0].op".
type SelectionError struct {
	Path   string
	Reason string
}

func (e *SelectionError) Error() string { return e.Path + ": " + e.Reason }

// Limits that keep a selection within what SQLite accepts (expression depth 1000, 32766
// parameters) and what a person can mean.
const (
	maxSelectionDepth  = 16
	maxSelectionArgs   = 10000
	maxSelectionList   = 1000
	maxSelectionRawSQL = 10000
	maxAttrName        = 64
)

// ParseSelection decodes selection criteria as a campaign file gives them and checks them
// by compiling. Empty input or JSON null is the empty selection: every active consumer.
// Returns a *SelectionError naming where the criteria are wrong, including unknown keys and
// values of the wrong JSON type.
func ParseSelection(data []byte) (*Selection, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return &Selection{}, nil
	}
	// A generic first pass names the place of an unknown key or a mistyped value, which
	// encoding/json's errors do not, and sees an "sql" that is present but empty.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, &SelectionError{"selection", "not valid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &SelectionError{"selection", "unexpected data after the selection"}
	}
	if tree == nil {
		return &Selection{}, nil
	}
	if err := checkSelectionJSON(tree, "selection", 0); err != nil {
		return nil, err
	}
	strict := json.NewDecoder(bytes.NewReader(data))
	strict.DisallowUnknownFields()
	var s Selection
	if err := strict.Decode(&s); err != nil {
		return nil, &SelectionError{"selection", err.Error()}
	}
	if _, err := s.Check(""); err != nil {
		return nil, err
	}
	return &s, nil
}

// checkSelectionJSON checks the keys and JSON types of one decoded node and its members.
func checkSelectionJSON(v any, path string, depth int) error {
	if depth > maxSelectionDepth {
		return &SelectionError{path, fmt.Sprintf("nested more than %d levels deep", maxSelectionDepth)}
	}
	node, ok := v.(map[string]any)
	if !ok {
		return &SelectionError{path, fmt.Sprintf("must be an object, not %s", jsonKind(v))}
	}
	keys := make([]string, 0, len(node))
	for k := range node {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same input always names the same problem
	for _, k := range keys {
		v := node[k]
		p := path + "." + k
		switch k {
		case "all", "any":
			if v == nil {
				continue
			}
			list, ok := v.([]any)
			if !ok {
				return &SelectionError{p, fmt.Sprintf("must be an array, not %s", jsonKind(v))}
			}
			for i, m := range list {
				if err := checkSelectionJSON(m, fmt.Sprintf("%s[%d]", p, i), depth+1); err != nil {
					return err
				}
			}
		case "field", "op", "sql":
			if v == nil {
				continue
			}
			s, ok := v.(string)
			if !ok {
				return &SelectionError{p, fmt.Sprintf("must be a string, not %s", jsonKind(v))}
			}
			if k == "sql" && strings.TrimSpace(s) == "" {
				return &SelectionError{p, "empty expression"}
			}
		case "value":
		default:
			return &SelectionError{p, "unknown key (want all, any, field, op, value or sql)"}
		}
	}
	return nil
}

// jsonKind names the JSON type of a decoded value for an error message.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// IsRaw reports whether the selection is one raw SQL expression, which the store must run
// under its guard.
func (s *Selection) IsRaw() bool { return s != nil && s.SQL != "" }

// isEmpty reports whether the node sets nothing at all.
func (s *Selection) isEmpty() bool {
	return s.All == nil && s.Any == nil && s.Field == "" && s.Op == "" && s.Value == nil && s.SQL == ""
}

// Criteria is a selection checked by Check, resolved for one issuer: what the store compiles
// into its engine's SQL, a parameterised WHERE expression over the consumers. Exactly one of
// Raw and Root is set, or neither: the empty selection, every active consumer.
type Criteria struct {
	// Raw is the whole selection when it is one raw SQL expression, trimmed, plus a newline
	// when it ends in a "--" comment; checked only cheaply (one expression, no parameters):
	// the store's guard is what makes it safe.
	Raw string
	// Issuer is the slug of the issuer whose own attributes attr.NAME reads first, before the
	// program's (see rewards.IssuerAttribute); "" for the program's alone.
	Issuer string
	Root   *Criterion
}

// Criterion is one node of Criteria: a condition when Cond is set, else a group of Members
// that all match (or, with Any, at least one). An all-group without members matches
// everyone; an any-group always has members.
type Criterion struct {
	Cond    *Condition
	Any     bool
	Members []Criterion
}

// Condition compares one consumer field with checked values.
type Condition struct {
	// Field is the consumers' column, of Kind; empty for an attribute, named by Attr.
	Field string
	Kind  rewards.FieldKind
	Attr  string
	// Op is one of =, !=, <, <=, >, >=, in, not in, contains, prefix.
	Op string
	// Values holds the one value (the list for in and not in), each a string, int64 or
	// float64: lower-cased for FieldLower and FieldList, an int64 for FieldYear, strings or
	// numbers (never both in one list) for an attribute. On FieldYear and attributes, which
	// may be unknown, != and not in also match the consumers for whom the value is unknown;
	// a number compares with an attribute's numeric reading.
	Values []any
}

// Nullable reports whether the field the condition reads may be unknown.
func (c *Condition) Nullable() bool { return c.Attr != "" || c.Kind == rewards.FieldYear }

// Check checks the selection and resolves it for a job of the issuer with slug: attr.NAME
// reads the issuer's own attribute NAME, or else the program's, never another issuer's. An
// empty slug reads the program's attributes alone. The empty (or nil) selection is Criteria
// with nothing set. Returns a *SelectionError naming the node, key or value that is wrong.
func (s *Selection) Check(slug string) (*Criteria, error) {
	if s == nil || s.isEmpty() {
		return &Criteria{Issuer: slug}, nil
	}
	if s.SQL != "" && s.All == nil && s.Any == nil && s.Field == "" && s.Op == "" && s.Value == nil {
		raw, err := checkRaw(s.SQL)
		if err != nil {
			return nil, err
		}
		return &Criteria{Raw: raw, Issuer: slug}, nil
	}
	if slug != "" && !slugPattern.MatchString(slug) {
		return nil, &SelectionError{"selection", fmt.Sprintf("issuer %q is not an issuer's short name", slug)}
	}
	var c selectionChecker
	root, err := c.node(s, "selection", 0)
	if err != nil {
		return nil, err
	}
	if c.values > maxSelectionArgs {
		return nil, &SelectionError{"selection", fmt.Sprintf("more than %d values in all", maxSelectionArgs)}
	}
	return &Criteria{Issuer: slug, Root: &root}, nil
}

// selectionChecker counts the values of one Check.
type selectionChecker struct{ values int }

func (c *selectionChecker) node(s *Selection, path string, depth int) (Criterion, error) {
	if depth > maxSelectionDepth {
		return Criterion{}, &SelectionError{path, fmt.Sprintf("nested more than %d levels deep", maxSelectionDepth)}
	}
	var kinds []string
	if s.All != nil {
		kinds = append(kinds, "all")
	}
	if s.Any != nil {
		kinds = append(kinds, "any")
	}
	if s.Field != "" || s.Op != "" || s.Value != nil {
		kinds = append(kinds, "a condition")
	}
	if s.SQL != "" {
		kinds = append(kinds, "sql")
	}
	switch {
	case len(kinds) == 0:
		return Criterion{}, &SelectionError{path, "empty: want all, any, a condition (field, op, value) or sql"}
	case len(kinds) > 1:
		return Criterion{}, &SelectionError{path, "has " + strings.Join(kinds, " and ") + "; a node is exactly one of all, any, a condition or sql"}
	}
	switch {
	case s.All != nil:
		return c.group(s.All, path+".all", false, depth)
	case s.Any != nil:
		if len(s.Any) == 0 {
			return Criterion{}, &SelectionError{path + ".any", "empty: an any-group with no members matches no one"}
		}
		return c.group(s.Any, path+".any", true, depth)
	case s.SQL != "":
		return Criterion{}, &SelectionError{path + ".sql", "raw sql must be the whole selection, not part of a group"}
	}
	cond, err := c.condition(s, path)
	return Criterion{Cond: cond}, err
}

// group checks the members of an all- or any-group. An empty all-group is true: what an
// editor leaves when every condition was removed.
func (c *selectionChecker) group(members []Selection, path string, any bool, depth int) (Criterion, error) {
	g := Criterion{Any: any, Members: make([]Criterion, 0, len(members))}
	for i := range members {
		m, err := c.node(&members[i], fmt.Sprintf("%s[%d]", path, i), depth+1)
		if err != nil {
			return Criterion{}, err
		}
		g.Members = append(g.Members, m)
	}
	return g, nil
}

// lookupField resolves a condition's field: a consumer column and its kind, or an attribute
// name. A non-empty reason says why the name is wrong.
func lookupField(name string) (column string, kind rewards.FieldKind, attr, reason string) {
	if name == "" {
		return "", 0, "", "missing"
	}
	if f, ok := rewards.ConsumerFieldNamed(name); ok {
		return name, f.Kind, "", ""
	}
	if attr, ok := strings.CutPrefix(name, "attr."); ok {
		if !validAttrName(attr) {
			return "", 0, "", fmt.Sprintf("attribute name %q must be 1 to %d letters, digits, '_' or '-'", attr, maxAttrName)
		}
		return "", 0, attr, ""
	}
	return "", 0, "", fmt.Sprintf("unknown field %q (want %s or attr.NAME)", name, strings.Join(rewards.ConsumerFieldNames(), ", "))
}

func validAttrName(name string) bool {
	if name == "" || len(name) > maxAttrName {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

func (c *selectionChecker) condition(s *Selection, path string) (*Condition, error) {
	column, kind, attr, reason := lookupField(s.Field)
	if reason != "" {
		return nil, &SelectionError{path + ".field", reason}
	}
	cond := &Condition{Field: column, Kind: kind, Attr: attr}
	op := strings.Join(strings.Fields(strings.ToLower(s.Op)), " ")
	switch op {
	case "=", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "prefix":
	case "":
		return nil, &SelectionError{path + ".op", "missing"}
	default:
		return nil, &SelectionError{path + ".op", fmt.Sprintf("unknown operator %q (want =, !=, <, <=, >, >=, in, not in, contains or prefix)", s.Op)}
	}
	cond.Op = op
	if !opApplies(op, cond) {
		return nil, &SelectionError{path + ".op", fmt.Sprintf("operator %q does not apply to %s", op, s.Field) + opHint(cond)}
	}
	vpath := path + ".value"
	if s.Value == nil {
		return nil, &SelectionError{vpath, "missing"}
	}
	if op == "in" || op == "not in" {
		vals, err := listValues(cond, op, s.Value, vpath)
		if err != nil {
			return nil, err
		}
		cond.Values = vals
		c.values += len(vals)
		return cond, nil
	}
	v, reason := fieldValue(cond, s.Value, s.Field)
	if reason != "" {
		return nil, &SelectionError{vpath, reason}
	}
	if op == "contains" || op == "prefix" {
		if text, ok := v.(string); !ok || text == "" {
			return nil, &SelectionError{vpath, op + " needs a non-empty string"}
		}
	}
	cond.Values = []any{v}
	c.values++
	return cond, nil
}

// listValues checks the values of in / not in.
func listValues(cond *Condition, op string, value any, path string) ([]any, error) {
	rv := reflect.ValueOf(value)
	if rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() == reflect.Uint8 {
		return nil, &SelectionError{path, op + " needs an array of values"}
	}
	n := rv.Len()
	if n == 0 {
		return nil, &SelectionError{path, op + " needs at least one value"}
	}
	if n > maxSelectionList {
		return nil, &SelectionError{path, fmt.Sprintf("more than %d values", maxSelectionList)}
	}
	vals := make([]any, n)
	numbers := 0
	for i := range n {
		v, reason := fieldValue(cond, rv.Index(i).Interface(), "")
		if reason != "" {
			return nil, &SelectionError{fmt.Sprintf("%s[%d]", path, i), reason}
		}
		if _, isText := v.(string); !isText {
			numbers++
		}
		vals[i] = v
	}
	if cond.Attr != "" && numbers != 0 && numbers != n {
		// Text and numbers compare differently; one list is one kind.
		return nil, &SelectionError{path, "mixes strings and numbers; use an any-group for both"}
	}
	return vals, nil
}

func opApplies(op string, cond *Condition) bool {
	switch {
	case cond.Attr != "":
		return true
	case cond.Kind == rewards.FieldYear:
		return op != "contains" && op != "prefix"
	case cond.Kind == rewards.FieldList:
		return op == "contains" || op == "in" || op == "not in"
	}
	return true
}

func opHint(cond *Condition) string {
	switch {
	case cond.Attr != "":
	case cond.Kind == rewards.FieldYear:
		return " (a number: use =, !=, <, <=, >, >=, in or not in)"
	case cond.Kind == rewards.FieldList:
		return " (use contains, in or not in)"
	}
	return ""
}

// fieldValue converts one JSON value for the field cond reads: a string or int64 for text fields
// (an integral number becomes its digits, for postal codes), an int64 for birth_year, a
// lower-cased interest, a string, int64 or float64 for attributes. A non-empty reason says
// why v does not fit.
func fieldValue(cond *Condition, v any, field string) (any, string) {
	kind := cond.Kind
	if cond.Attr != "" {
		kind = 0
	}
	switch kind {
	case rewards.FieldText, rewards.FieldLower:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		default:
			n, ok := wholeNumber(v)
			if !ok {
				return nil, fmt.Sprintf("needs a string, not %s", describe(v))
			}
			s = strconv.FormatInt(n, 10)
		}
		if kind == rewards.FieldLower {
			s = strings.ToLower(s)
		}
		return s, ""
	case rewards.FieldYear:
		if s, ok := v.(string); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return nil, fmt.Sprintf("birth_year needs a whole number, not %q", s)
			}
			return n, ""
		}
		n, ok := wholeNumber(v)
		if !ok {
			return nil, fmt.Sprintf("birth_year needs a whole number, not %s", describe(v))
		}
		return n, ""
	case rewards.FieldList:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Sprintf("interests needs a string, not %s", describe(v))
		}
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" || strings.Contains(s, ";") {
			return nil, fmt.Sprintf("%q is not one interest (non-empty, without ';')", v)
		}
		return s, ""
	case 0: // an attribute
		if s, ok := v.(string); ok {
			return s, ""
		}
		if n, ok := wholeNumber(v); ok {
			return n, ""
		}
		if f, ok := number(v); ok {
			return f, ""
		}
		return nil, fmt.Sprintf("needs a string or a number, not %s", describe(v))
	}
	return nil, "no such field " + field
}

// number reads a finite JSON number however it was decoded (or built in Go).
func number(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case int32:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// wholeNumber reads a JSON number that is an integer (1980 or 1980.0, not 1980.5).
func wholeNumber(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
	}
	f, ok := number(v)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// describe shows a value in an error message as the issuer wrote it.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool, json.Number, int, int64:
		return fmt.Sprint(x)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// checkRaw checks a raw expression cheaply: one expression, that cannot close the
// parentheses the store puts around it, nor carry parameters that would shift the store's.
// The store's guard, not this, keeps it read-only.
func checkRaw(expr string) (string, error) {
	const path = "selection.sql"
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return "", &SelectionError{path, "empty expression"}
	}
	if len(expr) > maxSelectionRawSQL {
		return "", &SelectionError{path, fmt.Sprintf("longer than %d bytes", maxSelectionRawSQL)}
	}
	if strings.IndexByte(expr, 0) >= 0 {
		// SQLite stops reading at a NUL, which would drop what the store writes after it.
		return "", &SelectionError{path, "contains a NUL byte"}
	}
	lineComment, err := scanRawSQL(expr)
	if err != nil {
		return "", &SelectionError{path, err.Error()}
	}
	if lineComment {
		expr += "\n" // so that "(" + expr + ")" still closes
	}
	return expr, nil
}

// scanRawSQL walks an expression the way SQLite's tokenizer splits strings, quoted names
// and comments, and reports what may not appear outside them. It says whether the
// expression ends inside a "--" comment.
func scanRawSQL(s string) (endsInComment bool, err error) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '\'', '"', '`':
			end := closingQuote(s, i+1, ch)
			if end < 0 {
				if ch == '\'' {
					return false, errors.New("unterminated string literal")
				}
				return false, errors.New("unterminated quoted name")
			}
			i = end
		case '[':
			end := strings.IndexByte(s[i+1:], ']')
			if end < 0 {
				return false, errors.New("unterminated [name]")
			}
			i += end + 1
		case '-':
			if i+1 < len(s) && s[i+1] == '-' {
				end := strings.IndexByte(s[i:], '\n')
				if end < 0 {
					return true, checkDepth(depth)
				}
				i += end
			}
		case '/':
			if i+1 < len(s) && s[i+1] == '*' {
				end := strings.Index(s[i+2:], "*/")
				if end < 0 {
					return false, errors.New("unterminated /* comment")
				}
				i += end + 3
			}
		case ';':
			return false, errors.New("';' outside a string: one expression only, not statements")
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false, errors.New("unbalanced parentheses: ')' without '('")
			}
		case '?', ':', '@', '#':
			return false, fmt.Errorf("%q outside a string: a raw expression takes no parameters", ch)
		case '$':
			if i == 0 || !isIdentByte(s[i-1]) {
				return false, errors.New(`'$' outside a string: a raw expression takes no parameters`)
			}
		}
	}
	return false, checkDepth(depth)
}

func checkDepth(depth int) error {
	if depth != 0 {
		return errors.New("unbalanced parentheses: '(' without ')'")
	}
	return nil
}

// closingQuote is the index of the quote that ends a quoted token begun before from, where
// a doubled quote stands for itself; -1 if there is none.
func closingQuote(s string, from int, q byte) int {
	for i := from; i < len(s); i++ {
		if s[i] == q {
			if i+1 < len(s) && s[i+1] == q {
				i++
				continue
			}
			return i
		}
	}
	return -1
}

func isIdentByte(b byte) bool {
	return b == '_' || b == '$' || b >= 0x80 || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}
