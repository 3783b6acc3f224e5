package rewards

import (
	"reflect"
	"testing"
)

// TestConsumerFieldsRoundTrip: what Get writes, Set reads back, field by field, so an
// export imports as the consumer it came from; an unset field is an empty cell, which Set
// leaves unset.
func TestConsumerFieldsRoundTrip(t *testing.T) {
	full := Consumer{Email: "ann@example.com", FirstName: "Ann", LastName: "Lee", City: "Lyon", Region: "Rhône",
		Country: "FR", PostalCode: "69001", BirthYear: 1980, Gender: "f", Interests: []string{"golf", "tennis"},
		Format: FormatHTML}
	var back Consumer
	seen := map[string]bool{}
	for _, f := range ConsumerFields {
		if seen[f.Name] {
			t.Errorf("field %s listed twice", f.Name)
		}
		seen[f.Name] = true
		if err := f.Set(&back, f.Get(&full), 2026); err != nil {
			t.Errorf("%s: Set(Get) = %v", f.Name, err)
		}
		if v := f.Get(&Consumer{}); v != "" {
			t.Errorf("%s of an empty consumer is %q, want an empty cell", f.Name, v)
		}
		if g, ok := ConsumerFieldNamed(f.Name); !ok || g.Name != f.Name {
			t.Errorf("ConsumerFieldNamed(%q) = %v, %v", f.Name, g.Name, ok)
		}
	}
	if !reflect.DeepEqual(back, full) {
		t.Errorf("read back %+v, want %+v", back, full)
	}
	if _, ok := ConsumerFieldNamed("attributes"); ok {
		t.Error("attributes is not one of the consumer's own fields")
	}
	for _, f := range ConsumerFields[1:] {
		var c Consumer
		if err := f.Set(&c, "", 2026); err != nil || !reflect.DeepEqual(c, Consumer{}) {
			t.Errorf("%s: an empty cell set %+v, %v; want nothing", f.Name, c, err)
		}
	}
}
