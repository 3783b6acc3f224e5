package rewards

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldKind is how a consumer field's values are kept and compared.
type FieldKind int

const (
	FieldText  FieldKind = iota + 1 // kept and compared as written
	FieldLower                      // kept lower-cased, so compared lower-cased
	FieldYear                       // a year, or none
	FieldList                       // a list of names (interests), ';'-separated in a CSV cell
)

// ConsumerField is one of a consumer's own fields: its name is its database column, its CSV
// column and the field a selection names.
type ConsumerField struct {
	Name string
	Kind FieldKind
	// Get returns the field of c as a CSV cell holds it; "" when unset.
	Get func(c *Consumer) string
	// Set writes v, a trimmed CSV cell, into c; an empty v leaves the field unset (email
	// refuses it). latestYear is the last birth year accepted. The error is for the user.
	Set func(c *Consumer, v string, latestYear int) error
}

// EarliestBirthYear is the first birth year accepted.
const EarliestBirthYear = 1900

// ConsumerFields is the one list of the consumer's own fields, in the order the program
// names them; any other value of a consumer is one of her Attributes.
var ConsumerFields = []ConsumerField{
	{"email", FieldLower, func(c *Consumer) string { return c.Email }, func(c *Consumer, v string, _ int) error {
		e, err := ValidEmail(v)
		c.Email = e
		return err
	}},
	{"first_name", FieldText, func(c *Consumer) string { return c.FirstName }, func(c *Consumer, v string, _ int) error { c.FirstName = v; return nil }},
	{"last_name", FieldText, func(c *Consumer) string { return c.LastName }, func(c *Consumer, v string, _ int) error { c.LastName = v; return nil }},
	{"city", FieldText, func(c *Consumer) string { return c.City }, func(c *Consumer, v string, _ int) error { c.City = v; return nil }},
	{"region", FieldText, func(c *Consumer) string { return c.Region }, func(c *Consumer, v string, _ int) error { c.Region = v; return nil }},
	{"country", FieldText, func(c *Consumer) string { return c.Country }, func(c *Consumer, v string, _ int) error { c.Country = v; return nil }},
	{"postal_code", FieldText, func(c *Consumer) string { return c.PostalCode }, func(c *Consumer, v string, _ int) error { c.PostalCode = v; return nil }},
	{"birth_year", FieldYear, func(c *Consumer) string {
		if c.BirthYear == 0 {
			return ""
		}
		return strconv.Itoa(c.BirthYear)
	}, func(c *Consumer, v string, latestYear int) error {
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < EarliestBirthYear || n > latestYear {
			return fmt.Errorf("birth_year %q is not a year between %d and %d", v, EarliestBirthYear, latestYear)
		}
		c.BirthYear = n
		return nil
	}},
	{"gender", FieldLower, func(c *Consumer) string { return c.Gender }, func(c *Consumer, v string, _ int) error { c.Gender = strings.ToLower(v); return nil }},
	{"interests", FieldList, func(c *Consumer) string { return strings.Join(c.Interests, ";") }, func(c *Consumer, v string, _ int) error {
		if v != "" {
			c.Interests = NormalizeInterests(strings.Split(v, ";"))
		}
		return nil
	}},
	{"format", FieldLower, func(c *Consumer) string { return string(c.Format) }, func(c *Consumer, v string, _ int) error {
		if v == "" {
			return nil
		}
		f, err := ParseFormat(v)
		c.Format = f
		return err
	}},
}

// ConsumerFieldNamed returns the field called name.
func ConsumerFieldNamed(name string) (ConsumerField, bool) {
	if k := consumerFieldIndex(name); k >= 0 {
		return ConsumerFields[k], true
	}
	return ConsumerField{}, false
}

// consumerFieldIndex returns the index in ConsumerFields of the field called name, or -1.
func consumerFieldIndex(name string) int {
	for k, f := range ConsumerFields {
		if f.Name == name {
			return k
		}
	}
	return -1
}

// ConsumerFieldNames returns the fields' names, in order.
func ConsumerFieldNames() []string {
	names := make([]string, len(ConsumerFields))
	for i, f := range ConsumerFields {
		names[i] = f.Name
	}
	return names
}
