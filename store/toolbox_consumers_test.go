package store

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"pointpost/postoffice"
	"pointpost/rewards"
)

func TestSearchConsumers(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	batch := []rewards.Consumer{
		{Email: "ann@example.com", FirstName: "Ann", LastName: "Lee", City: "Boston"},
		{Email: "a_b@example.com", FirstName: "Abe", LastName: "100%", City: "Austin"},
		{Email: "axb@example.com", FirstName: "Axel", LastName: "Berg", City: "Berlin"},
		{Email: "zoe@other.example", FirstName: "Zoë", LastName: "Anders", City: "Bostonia"},
	}
	if _, _, err := s.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConsumerStatus(ctx, "axb@example.com", rewards.StatusSuppressed); err != nil {
		t.Fatal(err)
	}
	emails := func(field, match, text string, status rewards.ConsumerStatus) string {
		t.Helper()
		cs, err := s.SearchConsumers(ctx, field, match, text, status, 0, 10)
		if err != nil {
			t.Fatalf("search %s %s %q: %v", field, match, text, err)
		}
		n, err := s.CountConsumersMatching(ctx, field, match, text, status)
		if err != nil || n != len(cs) {
			t.Fatalf("count %s %s %q = %d, %v; the search found %d", field, match, text, n, err, len(cs))
		}
		var out []string
		for _, c := range cs {
			out = append(out, strings.Split(c.Email, "@")[0])
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		field, match, text string
		status             rewards.ConsumerStatus
		want               string
	}{
		{SearchAny, MatchPrefix, "", "", "zoe axb a_b ann"},
		{SearchEmail, MatchPrefix, " A_", "", "a_b"}, // _ is itself, not any character; case and space do not matter
		{SearchEmail, MatchContains, "other", "", "zoe"},
		{SearchName, MatchPrefix, "an", "", "zoe ann"}, // first or last name
		{SearchName, MatchPrefix, "ann le", "", "ann"}, // "first last"
		{SearchName, MatchContains, "0%", "", "a_b"},   // % is itself
		{SearchCity, MatchPrefix, "boston", "", "zoe ann"},
		{SearchCity, MatchContains, "erl", "", "axb"},
		{SearchAny, MatchPrefix, "b", "", "zoe axb ann"}, // city Boston, Bostonia, Berlin; last name Berg
		{SearchAny, MatchPrefix, "", rewards.StatusSuppressed, "axb"},
		{SearchCity, MatchPrefix, "b", rewards.StatusActive, "zoe ann"},
	} {
		if got := emails(tc.field, tc.match, tc.text, tc.status); got != tc.want {
			t.Errorf("%q %s %q %s: %q, want %q", tc.field, tc.match, tc.text, tc.status, got, tc.want)
		}
	}

	// Keyset pages: below the last ID of the one before.
	page, err := s.SearchConsumers(ctx, SearchAny, MatchPrefix, "", "", 0, 3)
	if err != nil || len(page) != 3 {
		t.Fatal(page, err)
	}
	rest, err := s.SearchConsumers(ctx, SearchAny, MatchPrefix, "", "", page[2].ID, 3)
	if err != nil || len(rest) != 1 || rest[0].Email != "ann@example.com" {
		t.Fatalf("second page: %v, %v", rest, err)
	}

	for _, bad := range [][3]string{{"phone", MatchPrefix, ""}, {SearchEmail, "regexp", ""}, {SearchEmail, MatchPrefix, "gone"}} {
		if _, err := s.SearchConsumers(ctx, bad[0], bad[1], "x", rewards.ConsumerStatus(bad[2]), 0, 10); err == nil {
			t.Errorf("search %v: no error", bad)
		}
		if _, err := s.CountConsumersMatching(ctx, bad[0], bad[1], "x", rewards.ConsumerStatus(bad[2])); err == nil {
			t.Errorf("count %v: no error", bad)
		}
	}
}

// TestSearchConsumersEmailPrefixUsesTheIndex: an e-mail prefix search must not read the
// whole table of a million consumers.
func TestSearchConsumersEmailPrefixUsesTheIndex(t *testing.T) {
	s := openTest(t)
	where, args, err := s.consumerSearchWhere(SearchEmail, MatchPrefix, "ann", "")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.read.Query(`EXPLAIN QUERY PLAN SELECT count(*) FROM consumers WHERE `+where, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); !strings.Contains(p, "USING COVERING INDEX") || !strings.Contains(p, "email>?") {
		t.Fatalf("plan %q does not search the e-mail index", p)
	}
}

func TestImportConsumerFile(t *testing.T) {
	s := openTest(t)
	var bad []rewards.RowError
	ins, upd, err := s.ImportConsumerFile(context.Background(), strings.NewReader("email\nann@example.com\nnope\n"),
		func(e rewards.RowError) { bad = append(bad, e) })
	if err != nil || ins != 1 || upd != 0 || len(bad) != 1 || bad[0].Line != 3 {
		t.Fatalf("ImportConsumerFile = %d, %d, %v; bad %v", ins, upd, err, bad)
	}
	if _, _, err := s.ImportConsumerFile(context.Background(), strings.NewReader("name\nAnn\n"), nil); err == nil {
		t.Fatal("a header without email: no error")
	}
}

func TestOutboxBefore(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var msgs []*postoffice.OutboxMessage
	for i := range 5 {
		msgs = append(msgs, &postoffice.OutboxMessage{From: "a@x", To: fmt.Sprintf("c%d@y", i), Data: []byte("x")})
	}
	if err := s.AppendOutbox(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	got, err := s.OutboxBefore(ctx, 0, 2)
	if err != nil || len(got) != 2 || got[0].ID != 5 || got[1].ID != 4 || got[0].Data != nil {
		t.Fatalf("newest two: %+v, %v", got, err)
	}
	got, err = s.OutboxBefore(ctx, 4, 10)
	if err != nil || len(got) != 3 || got[0].ID != 3 || got[2].ID != 1 {
		t.Fatalf("before 4: %+v, %v", got, err)
	}
}
