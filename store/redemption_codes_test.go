package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"pointpost/rewards"
)

func TestRedemptionCodeWorksOnceForItsConsumerUntilItExpires(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com", "bob@example.com")
	ann, bob := w.consumers[0].ID, w.consumers[1].ID
	item := &rewards.CatalogItem{Name: "Mug", Cost: 5, Stock: 3}
	if err := w.s.AddCatalogItem(ctx, item); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	use := func(id, consumer int64, code string, at time.Time) (int64, bool, error) {
		return w.s.UseRedemptionCode(ctx, id, consumer, userHash(code), at, 3)
	}
	id, err := w.s.CreateRedemptionCode(ctx, ann, item.ID, userHash("12345678"), now, now.Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := use(id, bob, "12345678", now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("bob used ann's code: %v", err)
	}
	if _, _, err := use(id, ann, "12345678", now.Add(15*time.Minute)); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("expired code: %v", err)
	}
	if got, ok, err := use(id, ann, "00000000", now); err != nil || ok || got != item.ID {
		t.Fatalf("wrong code: item %d, ok %v, %v; want the item, not ok", got, ok, err)
	}
	if got, ok, err := use(id, ann, "12345678", now); err != nil || !ok || got != item.ID {
		t.Fatalf("right code: item %d, ok %v, %v", got, ok, err)
	}
	if _, _, err := use(id, ann, "12345678", now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("code used twice: %v", err)
	}

	// Too many wrong tries kill a code, the right one too.
	id, err = w.s.CreateRedemptionCode(ctx, ann, item.ID, userHash("87654321"), now, now.Add(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, ok, err := use(id, ann, "11111111", now); err != nil || ok {
			t.Fatalf("wrong code: %v, %v", ok, err)
		}
	}
	if _, _, err := use(id, ann, "87654321", now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("right code after 3 wrong tries: %v, want rewards.ErrNotFound", err)
	}

	// A new code replaces the old one.
	old, _ := w.s.CreateRedemptionCode(ctx, ann, item.ID, userHash("22222222"), now, now.Add(15*time.Minute))
	if _, err := w.s.CreateRedemptionCode(ctx, ann, item.ID, userHash("33333333"), now, now.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := use(old, ann, "22222222", now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("a replaced code still works: %v", err)
	}
	if _, err := w.s.CreateRedemptionCode(ctx, ann, 4242, userHash("1"), now, now.Add(time.Minute)); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("code for an unknown item: %v", err)
	}
}
