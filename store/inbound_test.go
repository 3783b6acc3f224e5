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
