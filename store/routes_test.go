package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

func TestRoutes(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ses := postoffice.Route{Name: "ses", URL: "smtps://key:secret@email-smtp.example:465", Connections: 4, Rate: 14,
		Priority: 1, Quotas: []postoffice.Quota{{Limit: 50000, Window: 24 * time.Hour}, {Limit: 3000, Window: time.Hour}}}
	spare := postoffice.Route{Name: "spare", URL: "smtp://relay.example:587", Priority: 2}
	for _, r := range []postoffice.Route{spare, ses} {
		if err := s.SaveRoute(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Routes(ctx)
	if err != nil || !reflect.DeepEqual(got, []postoffice.Route{ses, spare}) {
		t.Fatalf("Routes = %+v, %v; want ses then spare, by priority, as saved", got, err)
	}
	ses.Rate, ses.Quotas = 20, []postoffice.Quota{{Limit: 10, Window: time.Minute}}
	if err := s.SaveRoute(ctx, ses); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Route(ctx, "ses"); err != nil || !reflect.DeepEqual(*r, ses) {
		t.Errorf("Route after a change = %+v, %v; want %+v", r, err, ses)
	}
	if _, err := s.Route(ctx, "nope"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("Route of a missing name = %v, want rewards.ErrNotFound", err)
	}

	// A job pinned to a route keeps it.
	job := seedAckJob(t, s, seedAckIssuer(t, s, "acme"), ackT0.Add(time.Hour))
	if err := s.PinJobRoute(ctx, job.Key, "nope"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("pinning to a missing route = %v, want rewards.ErrNotFound", err)
	}
	if err := s.PinJobRoute(ctx, job.Key, "ses"); err != nil {
		t.Fatal(err)
	}
	err = s.RemoveRoute(ctx, "ses")
	var re *postoffice.RouteError
	if !errors.Is(err, rewards.ErrConflict) || !strings.Contains(err.Error(), "job") || !errors.As(err, &re) || re.Field != "name" {
		t.Errorf("removing a route a job is pinned to = %v, want a conflict naming the job and the field", err)
	}
	if err := s.SetJobState(ctx, job.Key, postoffice.JobDone, "all sent"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: 1, Kind: postoffice.OutcomeSent, At: ackT0, Route: "ses"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveRoute(ctx, "ses"); err != nil {
		t.Errorf("removing a route whose job is done: %v", err)
	}
	if sends, err := s.RouteSends(ctx, "ses", time.Time{}); err != nil || len(sends) != 0 {
		t.Errorf("a removed route's sends: %v, %v; want none", sends, err)
	}
	if err := s.RemoveRoute(ctx, "ses"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("removing it again = %v, want rewards.ErrNotFound", err)
	}
	if got, _ := s.Routes(ctx); len(got) != 1 || got[0].Name != "spare" {
		t.Errorf("Routes after the removal = %+v, want spare alone", got)
	}
}

func TestRouteSendsCountedWithOutcomes(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	at := time.Unix(1_800_000_000, 0)
	outs := []postoffice.Outcome{
		{DeliveryID: 1, Kind: postoffice.OutcomeSent, At: at, Route: "a"},
		{DeliveryID: 2, Kind: postoffice.OutcomeSent, At: at.Add(300 * time.Millisecond), Route: "a"},
		{DeliveryID: 3, Kind: postoffice.OutcomeSent, At: at.Add(2 * time.Second), Route: "a"},
		{DeliveryID: 4, Kind: postoffice.OutcomeSent, At: at, Route: "b"},
		{DeliveryID: 5, Kind: postoffice.OutcomeRetry, At: at, Route: "a"}, // not sent: not counted
		{DeliveryID: 6, Kind: postoffice.OutcomeSent, At: at},              // no route
	}
	for range 2 { // a second batch adds to the same seconds
		if err := s.RecordOutcomes(ctx, outs); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RouteSends(ctx, "a", at)
	want := map[int64]int{at.Unix(): 4, at.Unix() + 2: 2}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("RouteSends(a) = %v, %v; want %v", got, err, want)
	}
	if got, _ := s.RouteSends(ctx, "a", at.Add(time.Second)); !reflect.DeepEqual(got, map[int64]int{at.Unix() + 2: 2}) {
		t.Errorf("RouteSends(a) since a second later = %v", got)
	}
}

func TestRouteWarmupSaved(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	w, err := postoffice.ParseWarmup("500/day doubling every 2 days up to 50000")
	if err != nil {
		t.Fatal(err)
	}
	r := postoffice.Route{Name: "new", URL: "smtp://relay.example", Warmup: w}
	if err := s.SaveRoute(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Route(ctx, "new")
	if err != nil || got.Warmup == nil || *got.Warmup != (postoffice.Warmup{First: 500, Factor: 2, EveryDays: 2, Max: 50000, Start: now}) {
		t.Fatalf("saved warm-up %+v, %v; want it starting now", got, err)
	}
	// Changing the route later keeps the warm-up's start.
	now = now.Add(72 * time.Hour)
	again, _ := postoffice.ParseWarmup("500/day doubling every 1 day up to 50000")
	r.Warmup, r.Rate = again, 5
	if err := s.SaveRoute(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Route(ctx, "new"); err != nil || got.Warmup == nil || !got.Warmup.Start.Equal(now.Add(-72*time.Hour)) || got.Warmup.EveryDays != 1 {
		t.Errorf("changed warm-up %+v, %v; want the first start kept", got.Warmup, err)
	}
	r.Warmup = nil
	if err := s.SaveRoute(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Route(ctx, "new"); err != nil || got.Warmup != nil {
		t.Errorf("warm-up removed: %+v, %v", got.Warmup, err)
	}
}
