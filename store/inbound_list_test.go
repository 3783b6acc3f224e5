package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pointpost/postoffice"
)

// TestInboundPageFiltersAndPages records a mix of kinds, verified and not, and reads them
// back newest first, by kind, unverified only, and a page at a time from a cursor.
func TestInboundPageFiltersAndPages(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ids := seedAckConsumers(t, s, 1)
	job := seedAckJob(t, s, seedAckIssuer(t, s, "acme"), time.Time{})
	kinds := []string{"reply", "bounce", "auto-reply", "complaint", "bounce", "unsubscribe", "unknown", "bounce"}
	var recorded []int64
	for i, kind := range kinds {
		m := &InboundMessage{Kind: kind, From: fmt.Sprintf("from%d@example.net", i), To: "reply@pp.example",
			Subject: fmt.Sprintf("subject %d", i), Detail: "detail", CreatedAt: ackT0.Add(time.Duration(i) * time.Minute)}
		switch i {
		case 1: // a bounce a verified token tied to a delivery
			m.JobKey, m.ConsumerID, m.Detail = job.Key, ids[0], "5.1.1 user unknown"
		case 3, 4: // forged: no token named a delivery
			m.Detail = UnverifiedPrefix + "names x@example.com; 5.1.1"
		}
		if err := s.RecordInbound(ctx, m); err != nil {
			t.Fatal(err)
		}
		recorded = append(recorded, m.ID)
	}

	all, err := s.InboundPage(ctx, "", false, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(kinds) {
		t.Fatalf("%d messages, want %d", len(all), len(kinds))
	}
	for i, m := range all {
		if want := recorded[len(recorded)-1-i]; m.ID != want {
			t.Fatalf("message %d is %d, want %d: not newest first", i, m.ID, want)
		}
	}
	tied := all[len(all)-2]
	if tied.JobKey != job.Key || tied.JobName != "spring" || tied.ConsumerID != ids[0] ||
		tied.ConsumerEmail != "c000000@example.com" || tied.Unverified || !tied.CreatedAt.Equal(ackT0.Add(time.Minute)) {
		t.Errorf("the verified bounce reads %+v", tied)
	}
	if m := all[0]; m.JobKey != 0 || m.JobName != "" || m.ConsumerID != 0 || m.ConsumerEmail != "" ||
		m.Kind != "bounce" || m.From != "from7@example.net" || m.Subject != "subject 7" {
		t.Errorf("the newest message reads %+v", m)
	}

	bounces, err := s.InboundPage(ctx, "bounce", false, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(bounces) != 3 || bounces[0].ID != recorded[7] || bounces[2].ID != recorded[1] {
		t.Errorf("bounces: %+v", bounces)
	}
	unverified, err := s.InboundPage(ctx, "", true, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(unverified) != 2 || unverified[0].ID != recorded[4] || unverified[1].ID != recorded[3] ||
		!unverified[0].Unverified || !unverified[1].Unverified {
		t.Errorf("unverified: %+v", unverified)
	}
	both, err := s.InboundPage(ctx, "bounce", true, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(both) != 1 || both[0].ID != recorded[4] {
		t.Errorf("unverified bounces: %+v", both)
	}

	// Pages of three from the newest: each page's last ID is the next one's cursor.
	var paged []int64
	for before, n := int64(0), 0; ; n++ {
		page, err := s.InboundPage(ctx, "", false, before, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 3 || n > len(kinds) {
			t.Fatalf("page %d holds %d messages", n, len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			paged = append(paged, m.ID)
		}
		before = page[len(page)-1].ID
	}
	if fmt.Sprint(paged) != fmt.Sprint(inboundIDs(all)) {
		t.Errorf("paged %v, want %v", paged, inboundIDs(all))
	}
	if _, err := s.InboundPage(ctx, "", false, 0, 0); err == nil {
		t.Error("a page of 0 messages is not refused")
	}
}

func inboundIDs(ms []postoffice.InboundEntry) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}
