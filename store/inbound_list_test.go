package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
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

	all, err := s.InboundPage(ctx, "", false, postoffice.InboundCursor{}, 100)
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

	bounces, err := s.InboundPage(ctx, "bounce", false, postoffice.InboundCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(bounces) != 3 || bounces[0].ID != recorded[7] || bounces[2].ID != recorded[1] {
		t.Errorf("bounces: %+v", bounces)
	}
	unverified, err := s.InboundPage(ctx, "", true, postoffice.InboundCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(unverified) != 2 || unverified[0].ID != recorded[4] || unverified[1].ID != recorded[3] ||
		!unverified[0].Unverified || !unverified[1].Unverified {
		t.Errorf("unverified: %+v", unverified)
	}
	both, err := s.InboundPage(ctx, "bounce", true, postoffice.InboundCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(both) != 1 || both[0].ID != recorded[4] {
		t.Errorf("unverified bounces: %+v", both)
	}

	// Pages of three from the newest: each page's last ID is the next one's cursor.
	var paged []int64
	for before, n := (postoffice.InboundCursor{}), 0; ; n++ {
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
		before = page[len(page)-1].Cursor()
	}
	if fmt.Sprint(paged) != fmt.Sprint(inboundIDs(all)) {
		t.Errorf("paged %v, want %v", paged, inboundIDs(all))
	}
	if _, err := s.InboundPage(ctx, "", false, postoffice.InboundCursor{}, 0); err == nil {
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

// TestInboundPageListsAcknowledgedReplies: replies that acknowledged through their token are
// listed with the other inbound mail, in time order, with what they earned; clicks are not
// mail and are left out; pages cross the two kinds of entry without a gap or a repeat, even
// when an acknowledgement and a message share a millisecond and an ID.
func TestInboundPageListsAcknowledgedReplies(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cs := seedAckConsumers(t, s, 3)
	iss := seedAckIssuer(t, s, "acme")
	reply := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleReply, Points: 10, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, reply)

	at := func(m int) time.Time { return ackT0.Add(time.Duration(m) * time.Minute) }
	mustAcknowledge(t, s, postoffice.Ack{JobKey: job.Key, ConsumerID: cs[0], Channel: postoffice.ChannelReply, At: at(1), Source: "smtp <r1@x>"})
	bounce := &InboundMessage{Kind: "bounce", From: "mailer-daemon@x", Detail: "5.1.1", CreatedAt: at(2)}
	if err := s.RecordInbound(ctx, bounce); err != nil {
		t.Fatal(err)
	}
	mustAcknowledge(t, s, postoffice.Ack{JobKey: job.Key, ConsumerID: cs[0], Channel: postoffice.ChannelReply, At: at(3), Source: "smtp <r2@x>"})
	mustAcknowledge(t, s, postoffice.Ack{JobKey: job.Key, ConsumerID: cs[1], Channel: postoffice.ChannelClick, At: at(4), Source: "http"})
	// Same millisecond as the first acknowledgement, and likely the same ID.
	tied := &InboundMessage{Kind: "auto-reply", From: "away@x", CreatedAt: at(1)}
	if err := s.RecordInbound(ctx, tied); err != nil {
		t.Fatal(err)
	}

	all, err := s.InboundPage(ctx, "", false, postoffice.InboundCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, m := range all {
		kinds = append(kinds, m.Kind)
	}
	if want := "[acknowledged bounce acknowledged auto-reply]"; fmt.Sprint(kinds) != want {
		t.Fatalf("kinds %v, want %s", kinds, want)
	}
	first, second := all[2], all[0]
	if first.JobKey != job.Key || first.JobName != "spring" || first.ConsumerID != cs[0] || first.From != "c000000@example.com" ||
		first.Detail != "earned 10 points · smtp <r1@x>" || first.Unverified || !first.CreatedAt.Equal(at(1)) {
		t.Errorf("the rewarded reply reads %+v", first)
	}
	if !strings.HasPrefix(second.Detail, "earned nothing: ") || !strings.HasSuffix(second.Detail, " · smtp <r2@x>") {
		t.Errorf("the second reply, which a once rule does not reward, reads %q", second.Detail)
	}

	acked, err := s.InboundPage(ctx, postoffice.KindAcknowledged, false, postoffice.InboundCursor{}, 100)
	if err != nil || len(acked) != 2 || acked[0].Kind != postoffice.KindAcknowledged || acked[1].Kind != postoffice.KindAcknowledged {
		t.Errorf("acknowledged only: %+v, %v", acked, err)
	}
	bounces, err := s.InboundPage(ctx, "bounce", false, postoffice.InboundCursor{}, 100)
	if err != nil || len(bounces) != 1 || bounces[0].ID != bounce.ID {
		t.Errorf("bounces only: %+v, %v", bounces, err)
	}
	if unverified, err := s.InboundPage(ctx, "", true, postoffice.InboundCursor{}, 100); err != nil || len(unverified) != 0 {
		t.Errorf("unverified only lists %+v, %v", unverified, err)
	}

	var paged []string
	for before, n := (postoffice.InboundCursor{}), 0; n <= len(all); n++ {
		page, err := s.InboundPage(ctx, "", false, before, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page[0].Cursor().String())
		before, err = postoffice.ParseInboundCursor(page[0].Cursor().String())
		if err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, m := range all {
		want = append(want, m.Cursor().String())
	}
	if fmt.Sprint(paged) != fmt.Sprint(want) {
		t.Errorf("paged %v, want %v", paged, want)
	}
}
