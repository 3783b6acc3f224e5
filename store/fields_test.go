package store

import (
	"testing"

	"pointpost/rewards"
)

// TestConsumerFieldsAreColumns: each of the consumer's own fields is a column of the
// consumers table by its name, as a selection and a report name it.
func TestConsumerFieldsAreColumns(t *testing.T) {
	s := openTest(t)
	rows, err := s.read.Query(s.either(`SELECT name FROM pragma_table_info('consumers')`,
		`SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'consumers'`))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	columns := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		columns[name] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, f := range rewards.ConsumerFields {
		if !columns[f.Name] {
			t.Errorf("field %s is not a column of consumers (columns: %v)", f.Name, columns)
		}
	}
}
