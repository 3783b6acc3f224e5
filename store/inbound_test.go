package store

import (
	"context"
	"testing"
)

func TestRecordInbound(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	in := []*InboundMessage{
		{Kind: "bounce", From: "MAILER-DAEMON@example.org", To: "reply+x@pp.example", Subject: "Undelivered", Detail: "5.1.1"},
		{Kind: "auto-reply", From: "zoe@example.com", To: "reply+y@pp.example", Subject: "Out of office"},
	}
	for _, m := range in {
		if err := s.RecordInbound(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.InboundMessages(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Kind != "auto-reply" || got[1].Detail != "5.1.1" || got[1].JobKey != 0 {
		t.Fatalf("inbound messages: %+v", got)
	}
}

// TestRecordInboundOnceByKey: a message recorded again under the same Key (redelivered, or
// read again from a mailbox) is kept once; messages without a Key are all kept.
func TestRecordInboundOnceByKey(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for range 2 {
		for _, key := range []string{"<a@example.org>", "<b@example.org>", "", ""} {
			m := &InboundMessage{Kind: "auto-reply", From: "zoe@example.com", Subject: "Out of office", Key: key}
			if err := s.RecordInbound(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.InboundMessages(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Errorf("%d kept, want 6: two keyed once, four without a key", len(got))
	}
}
