package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

func TestScheduleJobRecordsTheBudgetOverride(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme := seedAckIssuer(t, s, "acme")
	msg := func() *postoffice.Message { return &postoffice.Message{Type: "text", Subject: "s", Body: "b"} }
	plain := editorDraft(t, s, acme, msg(), nil, postoffice.JobRules{})
	over := editorDraft(t, s, acme, msg(), nil, postoffice.JobRules{})
	if err := s.ScheduleJob(ctx, plain.Key, postoffice.BudgetOverride{}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)
	if err := s.ScheduleJob(ctx, over.Key, postoffice.BudgetOverride{By: "op@pp.example", At: at}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Job(ctx, plain.Key)
	if got.State != postoffice.JobScheduled || got.BudgetOverride.By != "" || !got.BudgetOverride.At.IsZero() {
		t.Fatalf("scheduled without an override: %+v", got)
	}
	got, _ = s.Job(ctx, over.Key)
	if got.State != postoffice.JobScheduled || got.BudgetOverride.By != "op@pp.example" || !got.BudgetOverride.At.Equal(at) {
		t.Fatalf("scheduled over the budget: %+v", got.BudgetOverride)
	}
	// Only a draft is scheduled: a second time is a conflict, and the override stays.
	if err := s.ScheduleJob(ctx, over.Key, postoffice.BudgetOverride{By: "someone else", At: at}); !errors.Is(err, rewards.ErrConflict) {
		t.Fatalf("scheduling a scheduled job: %v, want ErrConflict", err)
	}
	if got, _ = s.Job(ctx, over.Key); got.BudgetOverride.By != "op@pp.example" {
		t.Fatalf("the override was rewritten: %+v", got.BudgetOverride)
	}
	if err := s.ScheduleJob(ctx, 999, postoffice.BudgetOverride{}); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("scheduling no job: %v, want ErrNotFound", err)
	}
}
