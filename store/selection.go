package store

// The selection compiler: a job's checked criteria (postoffice.Criteria) written as the
// engine's WHERE expression over the consumers table, every value a parameter. The
// expression's columns are unqualified; the store puts it in parentheses after
// "status = 'active' AND".

import (
	"fmt"
	"strings"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// CompileSelection writes c as a boolean SQL expression in the store's engine, with its
// parameters in args. The empty criteria compile to the engine's true; raw criteria to their
// text, without args (the selection guard is what runs it safely). Returns an error for
// criteria Check did not make (an unknown operator or kind, no values).
func (s *Store) CompileSelection(c *postoffice.Criteria) (where string, args []any, err error) {
	return compileSelection(s.engine, c)
}

func compileSelection(e engine, c *postoffice.Criteria) (string, []any, error) {
	switch {
	case c == nil:
		return e.either("1", "TRUE"), nil, nil
	case c.Raw != "":
		return c.Raw, nil, nil
	case c.Root == nil:
		return e.either("1", "TRUE"), nil, nil
	}
	w := selectionWriter{engine: e, issuer: c.Issuer}
	if err := w.node(c.Root); err != nil {
		return "", nil, err
	}
	return w.sql.String(), w.args, nil
}

// selectionWriter accumulates the SQL and the parameters of one compilation.
type selectionWriter struct {
	engine engine
	issuer string
	sql    strings.Builder
	args   []any
}

func (w *selectionWriter) node(n *postoffice.Criterion) error {
	if n.Cond != nil {
		return w.condition(n.Cond)
	}
	if len(n.Members) == 0 {
		if n.Any {
			return fmt.Errorf("selection: an any-group without members")
		}
		w.sql.WriteString(w.engine.either("1", "TRUE"))
		return nil
	}
	join := " AND "
	if n.Any {
		join = " OR "
	}
	w.sql.WriteByte('(')
	for i := range n.Members {
		if i > 0 {
			w.sql.WriteString(join)
		}
		if err := w.node(&n.Members[i]); err != nil {
			return err
		}
	}
	w.sql.WriteByte(')')
	return nil
}

// isPG reports whether the writer writes PostgreSQL's SQL.
func (w *selectionWriter) isPG() bool { return w.engine == enginePostgres }

func (w *selectionWriter) condition(c *postoffice.Condition) error {
	if len(c.Values) == 0 {
		return fmt.Errorf("selection: condition on %s%s without a value", c.Field, c.Attr)
	}
	column := c.Field
	if c.Attr != "" {
		column = w.attribute(c.Attr, textual(c.Values[0]))
	}
	v := c.Values[0]
	switch c.Op {
	case "in", "not in":
		return w.list(column, c)
	case "contains":
		if c.Kind == rewards.FieldList && c.Attr == "" {
			w.hasInterest(v)
			return nil
		}
		w.sql.WriteString(w.engine.either("instr("+column+", ?) > 0", "strpos("+column+", ?) > 0"))
		w.args = append(w.args, v)
	case "prefix":
		text, _ := v.(string)
		if w.isPG() {
			// starts_with compares characters as written: '%' and '_' are no wildcards.
			w.sql.WriteString("starts_with(" + column + ", ?)")
			w.args = append(w.args, text)
			return nil
		}
		// substr rather than LIKE: the value's '%' and '_' stay plain characters, and the
		// comparison stays case-sensitive like '='. substr counts characters, not bytes.
		w.sql.WriteString("substr(" + column + ", 1, ?) = ?")
		w.args = append(w.args, int64(len([]rune(text))), text)
	case "!=":
		// On a column that may be NULL, "is not X" includes those for whom X is unknown.
		if c.Nullable() {
			w.sql.WriteString(w.operand(column, c, v) + w.engine.either(" IS NOT ?", " IS DISTINCT FROM ?"))
		} else {
			w.sql.WriteString(column + " != ?")
		}
		w.args = append(w.args, v)
	case "=", "<", "<=", ">", ">=":
		w.sql.WriteString(w.operand(column, c, v) + " " + c.Op + " ?")
		w.args = append(w.args, v)
	default:
		return fmt.Errorf("selection: unknown operator %q", c.Op)
	}
	return nil
}

// hasInterest writes the test for one whole interest in ';golf;tennis;'.
func (w *selectionWriter) hasInterest(v any) {
	w.sql.WriteString(w.engine.either(`instr(interests, ';' || ? || ';') > 0`,
		`strpos(interests, ';' || CAST(? AS text) || ';') > 0`))
	w.args = append(w.args, v)
}

// list writes in / not in. On interests, in means "has any of these" and not in "has none".
func (w *selectionWriter) list(column string, c *postoffice.Condition) error {
	if c.Kind == rewards.FieldList && c.Attr == "" {
		if c.Op == "not in" {
			w.sql.WriteString("NOT ")
		}
		w.sql.WriteByte('(')
		for i, v := range c.Values {
			if i > 0 {
				w.sql.WriteString(" OR ")
			}
			w.hasInterest(v)
		}
		w.sql.WriteByte(')')
		return nil
	}
	expr := w.operand(column, c, c.Values[0])
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(c.Values)), ", ")
	switch {
	case c.Op == "in":
		w.sql.WriteString(expr + " IN (" + marks + ")")
	case c.Nullable():
		w.sql.WriteString("(" + expr + " IS NULL OR " + expr + " NOT IN (" + marks + "))")
	default:
		w.sql.WriteString(expr + " NOT IN (" + marks + ")")
	}
	w.args = append(w.args, c.Values...)
	return nil
}

func textual(v any) bool {
	_, ok := v.(string)
	return ok
}

// attribute is the SQL that reads the attribute name: the issuer's own, else the program's.
// The names are checked by postoffice (letters, digits, '_', '-'; slugs the same), so they
// may stand inside the literal: the compiled SQL stays readable where the job shows it.
// On PostgreSQL, compared with text, only a string attribute is read (SQLite's json_extract
// keeps a number a number, which never equals text); compared with a number, the raw JSON
// value, which operand reads as a number.
func (w *selectionWriter) attribute(name string, asText bool) string {
	read := func(key string) string {
		if !w.isPG() {
			return `json_extract(attributes, '$."` + key + `"')`
		}
		if asText {
			return `(CASE WHEN jsonb_typeof(attributes::jsonb -> '` + key + `') = 'string' THEN attributes::jsonb ->> '` + key + `' END)`
		}
		return `(attributes::jsonb -> '` + key + `')`
	}
	program := read(name)
	if w.issuer == "" {
		return program
	}
	return `coalesce(` + read(rewards.IssuerAttribute(w.issuer, name)) + `, ` + program + `)`
}

// pgNumeric is the regular expression a string attribute must match to be read as a number
// on PostgreSQL: what a CAST to numeric takes (an exponent of at most three digits, so
// that the cast cannot overflow).
const pgNumeric = `^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$`

// operand is the SQL a comparison with v reads. The importer stores attributes as strings,
// so a number is compared with the attribute's numeric reading, NULL when the attribute
// does not look like a number (SQLite would otherwise order every string after every
// number).
func (w *selectionWriter) operand(column string, c *postoffice.Condition, v any) string {
	if c.Attr == "" || textual(v) {
		return column
	}
	if w.isPG() {
		// column is the JSON value (attribute, asText false).
		return "(CASE WHEN jsonb_typeof(" + column + ") = 'number' THEN (" + column + " #>> '{}')::float8" +
			" WHEN jsonb_typeof(" + column + ") = 'string' AND btrim(" + column + " #>> '{}') ~ '" + pgNumeric + "'" +
			" THEN btrim(" + column + " #>> '{}')::numeric::float8 END)"
	}
	return "(CASE WHEN typeof(" + column + ") IN ('integer', 'real') THEN " + column +
		" WHEN trim(" + column + ") GLOB '*[0-9]*' AND trim(" + column + ") NOT GLOB '*[^0-9.eE+-]*'" +
		" THEN CAST(trim(" + column + ") AS NUMERIC) END)"
}
