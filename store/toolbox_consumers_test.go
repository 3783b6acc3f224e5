package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	p := queryPlan(t, s, `SELECT count(*) FROM consumers WHERE `+where, args...)
	if s.engine == enginePostgres {
		// The unique constraint's index, as a range: email >= … AND email < ….
		if !strings.Contains(p, "Index Only Scan using consumers_email_key") || !strings.Contains(p, "email >=") {
			t.Fatalf("plan %q does not search the e-mail index", p)
		}
		return
	}
	if !strings.Contains(p, "USING COVERING INDEX") || !strings.Contains(p, "email>?") {
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

func TestOutboxSearch(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var msgs []*postoffice.OutboxMessage
	for i := range 5 {
		campaign := "Spring sale"
		if i%2 == 1 {
			campaign = "[TEST] Autumn 100%"
		}
		msgs = append(msgs, &postoffice.OutboxMessage{From: "bounce@x", To: fmt.Sprintf("c%d@y.example", i), Subject: campaign,
			Data: []byte("Subject: Hello\r\n\r\n" + strings.Repeat("body ", OutboxHeadBytes))})
	}
	if err := s.AppendOutbox(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	got, total, err := s.OutboxSearch(ctx, "", "", 0, 2)
	if err != nil || total != 5 || len(got) != 2 || got[0].ID != 5 || got[1].ID != 4 {
		t.Fatalf("newest two: %+v, %d, %v", got, total, err)
	}
	if len(got[0].Data) != OutboxHeadBytes || !strings.HasPrefix(string(got[0].Data), "Subject: Hello\r\n") {
		t.Errorf("the listing's data is %d bytes, want the head of %d", len(got[0].Data), OutboxHeadBytes)
	}
	got, _, err = s.OutboxSearch(ctx, "", "", 4, 10)
	if err != nil || len(got) != 3 || got[0].ID != 3 || got[2].ID != 1 {
		t.Fatalf("before 4: %+v, %v", got, err)
	}
	// The recipient and the campaign match any part, whatever the case; LIKE's wildcards
	// in the search match only themselves.
	for _, c := range []struct {
		to, campaign string
		want         []int64
	}{
		{"C3@Y", "", []int64{4}},
		{"", "autumn", []int64{4, 2}},
		{"", "100%", []int64{4, 2}},
		{"", "1_0", nil},
		{"y.example", "spring", []int64{5, 3, 1}},
		{"c1@", "spring", nil},
	} {
		got, total, err := s.OutboxSearch(ctx, c.to, c.campaign, 0, 10)
		var ids []int64
		for _, m := range got {
			ids = append(ids, m.ID)
		}
		if err != nil || total != len(c.want) || !slices.Equal(ids, c.want) {
			t.Errorf("to %q campaign %q: %v (total %d, %v), want %v", c.to, c.campaign, ids, total, err, c.want)
		}
	}
}

func TestUpdateConsumerWritesEveryField(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{
		{Email: "ann@example.com", FirstName: "Ann", City: "Boston", Interests: []string{"golf"}, BirthYear: 1980,
			Attributes: map[string]string{"tier": "gold"}},
		{Email: "bob@example.com"},
	}); err != nil {
		t.Fatal(err)
	}
	ann, err := s.ConsumerByEmail(ctx, "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	edited := *ann
	edited.Email, edited.FirstName, edited.City, edited.Interests, edited.BirthYear = "Ann.Lee@Example.com", "Annie", "", nil, 0
	edited.Format = rewards.FormatHTML
	if err := s.UpdateConsumer(ctx, &edited); err != nil {
		t.Fatal(err)
	}
	got, err := s.ConsumerByID(ctx, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Email != "ann.lee@example.com" || got.FirstName != "Annie" || got.City != "" || len(got.Interests) != 0 ||
		got.BirthYear != 0 || got.Format != rewards.FormatHTML || got.Attributes["tier"] != "gold" || got.Status != rewards.StatusActive {
		t.Errorf("after the edit: %+v", got)
	}
	edited.Email = "bob@example.com"
	if err := s.UpdateConsumer(ctx, &edited); !errors.Is(err, rewards.ErrExists) {
		t.Errorf("taking bob's address: %v, want ErrExists", err)
	}
	edited.ID, edited.Email = 999, "nobody@example.com"
	if err := s.UpdateConsumer(ctx, &edited); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("an unknown consumer: %v, want ErrNotFound", err)
	}
}

func TestSetStatusOfConsumersMatching(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{
		{Email: "ann@boston.example", City: "Boston"},
		{Email: "bea@boston.example", City: "Boston", Status: rewards.StatusBounced},
		{Email: "cy@boston.example", City: "Boston", Status: rewards.StatusUnsubscribed},
		{Email: "dan@austin.example", City: "Austin"},
	}); err != nil {
		t.Fatal(err)
	}
	gen := s.StatusGeneration()
	n, err := s.SetStatusOfConsumersMatching(ctx, SearchCity, MatchPrefix, "bost", "", rewards.StatusUnsubscribed,
		[]rewards.ConsumerStatus{rewards.StatusActive})
	if err != nil || n != 1 {
		t.Fatalf("unsubscribing Boston: %d, %v; want the one active consumer", n, err)
	}
	if s.StatusGeneration() == gen {
		t.Error("the status generation did not move")
	}
	n, err = s.SetStatusOfConsumersMatching(ctx, SearchAny, MatchContains, "boston", "", rewards.StatusSuppressed,
		[]rewards.ConsumerStatus{rewards.StatusActive, rewards.StatusUnsubscribed, rewards.StatusBounced})
	if err != nil || n != 3 {
		t.Fatalf("suppressing Boston: %d, %v; want 3", n, err)
	}
	for email, want := range map[string]rewards.ConsumerStatus{"ann@boston.example": rewards.StatusSuppressed,
		"bea@boston.example": rewards.StatusSuppressed, "dan@austin.example": rewards.StatusActive} {
		if c, err := s.ConsumerByEmail(ctx, email); err != nil || c.Status != want {
			t.Errorf("%s: %+v, %v; want %s", email, c, err, want)
		}
	}
	if _, err := s.SetStatusOfConsumersMatching(ctx, SearchAny, MatchPrefix, "", "", "gone", nil); err == nil {
		t.Error("an unknown status: no error")
	}
	if _, err := s.SetStatusOfConsumersMatching(ctx, "zip", MatchPrefix, "x", "", rewards.StatusSuppressed,
		[]rewards.ConsumerStatus{rewards.StatusActive}); err == nil {
		t.Error("an unknown field: no error")
	}
}
