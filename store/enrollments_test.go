package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"pointpost/rewards"
)

func TestEnrollmentConfirmCreatesConsumerOnce(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	clock := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return clock }

	id, err := s.CreateEnrollment(ctx, &rewards.Consumer{Email: " Ann@Example.COM ", FirstName: "Ann",
		LastName: "Lee", City: "Oslo", Country: "Norway", PostalCode: "0150", BirthYear: 1990, Gender: "female",
		Interests: []string{"Golf", "golf", " hiking"}, Format: rewards.FormatHTML,
		Status: rewards.StatusSuppressed, PointsBalance: 999})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumerByEmail(ctx, "ann@example.com"); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("a pending enrollment is not a consumer yet: %v", err)
	}

	c, err := s.ConfirmEnrollment(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := rewards.Consumer{ID: c.ID, Email: "ann@example.com", FirstName: "Ann", LastName: "Lee", City: "Oslo",
		Country: "Norway", PostalCode: "0150", BirthYear: 1990, Gender: "female", Interests: []string{"golf", "hiking"},
		Format: rewards.FormatHTML, Status: rewards.StatusActive}
	if !reflect.DeepEqual(*c, want) {
		t.Fatalf("confirmed consumer\n got %+v\nwant %+v", *c, want)
	}
	var confirmedAt int64
	if err := s.read.QueryRow(`SELECT confirmed_at FROM enrollments WHERE id = ?`, id).Scan(&confirmedAt); err != nil {
		t.Fatal(err)
	}
	if confirmedAt != clock.UnixMilli() {
		t.Fatalf("confirmed_at = %d, want %d", confirmedAt, clock.UnixMilli())
	}

	// A second click, later, after she changed her name elsewhere: nothing is written again.
	clock = clock.Add(time.Hour)
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "ann@example.com", FirstName: "Annie"}}); err != nil {
		t.Fatal(err)
	}
	again, err := s.ConfirmEnrollment(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != c.ID || again.FirstName != "Annie" {
		t.Fatalf("second confirmation: %+v", again)
	}
	var at2 int64
	if err := s.read.QueryRow(`SELECT confirmed_at FROM enrollments WHERE id = ?`, id).Scan(&at2); err != nil || at2 != confirmedAt {
		t.Fatalf("confirmed_at moved to %d (%v)", at2, err)
	}
	if n, _ := s.CountConsumers(ctx); n != 1 {
		t.Fatalf("%d consumers, want 1", n)
	}
}

func TestEnrollmentOfExistingConsumerKeepsStatus(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "bo@example.com", FirstName: "Bo", City: "Rome",
		Format: rewards.FormatText}}); err != nil {
		t.Fatal(err)
	}
	old, err := s.ConsumerByEmail(ctx, "bo@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Unsubscribe(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	id, err := s.CreateEnrollment(ctx, &rewards.Consumer{Email: "BO@example.com", LastName: "Berg",
		Format: rewards.FormatHTML})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.ConfirmEnrollment(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != old.ID || c.Status != rewards.StatusUnsubscribed {
		t.Fatalf("re-enrolled consumer %d is %s, want %d unsubscribed", c.ID, c.Status, old.ID)
	}
	if c.FirstName != "Bo" || c.LastName != "Berg" || c.City != "Rome" || c.Format != rewards.FormatHTML {
		t.Fatalf("empty form fields keep stored values, given ones replace them: %+v", c)
	}
}

func TestEnrollmentErrors(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, err := s.ConfirmEnrollment(ctx, 42); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("unknown enrollment: %v, want rewards.ErrNotFound", err)
	}
	for _, email := range []string{"", "not an address", "Ann <ann@example.com>"} {
		if _, err := s.CreateEnrollment(ctx, &rewards.Consumer{Email: email}); err == nil {
			t.Errorf("CreateEnrollment(%q) accepted it", email)
		}
	}
}
