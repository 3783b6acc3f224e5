package store

import (
	"context"
	"errors"
	"testing"

	"pointpost/postoffice"
	"pointpost/rewards"
)

func TestSegmentsBelongToTheirIssuer(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme, bolt := seedAckIssuer(t, s, "acme"), seedAckIssuer(t, s, "bolt")
	us := &postoffice.Segment{IssuerID: acme, Name: "US", Selection: `{"field":"country","op":"=","value":"US"}`}
	if err := s.CreateSegment(ctx, us); err != nil || us.ID == 0 {
		t.Fatalf("create: %v, id %d", err, us.ID)
	}
	// The same name is refused for the same issuer, not for another.
	if err := s.CreateSegment(ctx, &postoffice.Segment{IssuerID: acme, Name: "US", Selection: `{}`}); !errors.Is(err, rewards.ErrExists) {
		t.Fatalf("a second US of acme: %v, want ErrExists", err)
	}
	if err := s.CreateSegment(ctx, &postoffice.Segment{IssuerID: bolt, Name: "US", Selection: `{}`}); err != nil {
		t.Fatalf("bolt's US: %v", err)
	}
	list, err := s.Segments(ctx, acme)
	if err != nil || len(list) != 1 || list[0].Name != "US" || list[0].Selection != us.Selection {
		t.Fatalf("acme's segments: %v %+v", err, list)
	}
	got, err := s.Segment(ctx, us.ID)
	if err != nil || got.IssuerID != acme || got.CreatedAt.IsZero() {
		t.Fatalf("segment: %v %+v", err, got)
	}
	// Another issuer cannot delete it.
	if err := s.DeleteSegment(ctx, bolt, us.ID); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("bolt deleting acme's segment: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSegment(ctx, acme, us.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Segment(ctx, us.ID); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("deleted segment: %v, want ErrNotFound", err)
	}
}
