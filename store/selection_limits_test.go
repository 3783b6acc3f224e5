package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// heavySelection is the structured selection: 900 conditions none of which matches,
// so every consumer is read and tested against all of them.
func heavySelection(t *testing.T, s *Store) (string, []any) {
	t.Helper()
	var any []postoffice.Selection
	for i := range 900 {
		any = append(any, postoffice.Selection{Field: "city", Op: "contains", Value: fmt.Sprintf("nowhere-%d", i)})
	}
	return compileTest(t, s, &postoffice.Selection{Any: any}, "")
}

// A structured selection is stopped at the time limit too, whichever way it runs: count,
// preview, and the scheduler's batch.
func TestStructuredSelectionStoppedAtTheLimit(t *testing.T) {
	s := openTest(t)
	seedGuardConsumers(t, s, 5000)
	key := seedGuardJob(t, s)
	ctx := context.Background()
	where, args := heavySelection(t, s)
	s.selectionLimit = time.Millisecond
	if _, err := s.CheckSelection(ctx, where, args, false); !errors.Is(err, ErrSelectionRefused) || !strings.Contains(err.Error(), "stopped after 1ms") {
		t.Fatalf("count: %v, want stopped after 1ms", err)
	}
	if _, err := s.SampleConsumer(ctx, where, args, false); !errors.Is(err, ErrSelectionRefused) || !strings.Contains(err.Error(), "stopped after 1ms") {
		t.Fatalf("preview: %v, want stopped after 1ms", err)
	}
	job, err := s.Job(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	job.SelectionSQL, job.SelectionArgs = where, args
	if _, _, err := s.SelectBatch(ctx, job, false, 1000); !errors.Is(err, postoffice.ErrSelectionFailed) || !strings.Contains(err.Error(), "stopped after 1ms") {
		t.Fatalf("schedule: %v, want ErrSelectionFailed, stopped after 1ms", err)
	}
	// Stopped, nothing was selected; with time enough the same selection runs.
	s.selectionLimit = time.Hour
	if n, err := s.CheckSelection(ctx, where, args, false); err != nil || n != 0 {
		t.Fatalf("count with time enough: %d, %v", n, err)
	}
	if n, complete, err := s.SelectBatch(ctx, job, false, 1000); err != nil || n != 0 || !complete {
		t.Fatalf("schedule with time enough: %d, %v, %v", n, complete, err)
	}
}

// While issuers' selections hold every connection they may have, a consumer's account page
// and an acknowledgement still go through; an issuer's selection past its limit is refused.
func TestSelectionsNeverHoldConsumerReads(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cs := seedAckConsumers(t, s, 2)
	iss := seedAckIssuer(t, s, "shop")
	r := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, r)
	seedGuardConsumers(t, s, 30) // 9 active in the US
	// The deadline is another test's: here the held selections must outlast a busy machine.
	s.selectionLimit = time.Hour

	started, release := make(chan struct{}), make(chan struct{})
	s.selectionHook = func() {
		select {
		case started <- struct{}{}:
		case <-release: // the ones that waited for a connection run once released
		}
		<-release
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 4)
	// Two issuers, each at its limit: four selections, as many as the consumers' read pool
	// has connections. Two run (the selections' pool is full), two wait for a connection.
	for _, owner := range []string{"acme", "acme", "bolt", "bolt"} {
		go func() {
			n, err := s.CheckSelection(postoffice.WithSelectionOwner(ctx, owner), `country = ?`, []any{"US"}, false)
			done <- result{n, err}
		}()
	}
	for range selectionConns {
		<-started
	}
	// The two waiting for a connection have taken their issuer's slots before they wait; make
	// sure they have, so that the third of each issuer meets the limit, not a full pool.
	slotsTaken := func() bool {
		s.selections.mu.Lock()
		defer s.selections.mu.Unlock()
		return s.selections.running["acme"] == 2 && s.selections.running["bolt"] == 2
	}
	for i := 0; i < 1_000_000 && !slotsTaken(); i++ {
		runtime.Gosched()
	}
	if !slotsTaken() {
		t.Fatalf("the four selections did not all take their slots: %v", s.selections.running)
	}
	if _, err := s.CheckSelection(postoffice.WithSelectionOwner(ctx, "acme"), `country = ?`, []any{"US"}, false); !errors.Is(err, postoffice.ErrTooManySelections) {
		t.Fatalf("acme's third selection: %v, want ErrTooManySelections", err)
	}
	if _, err := s.SampleConsumer(postoffice.WithSelectionOwner(ctx, "bolt"), `country = ?`, []any{"US"}, false); !errors.Is(err, postoffice.ErrTooManySelections) {
		t.Fatalf("bolt's third selection: %v, want ErrTooManySelections", err)
	}
	acct, err := s.Account(ctx, cs[0], 10)
	if err != nil || acct.ConsumerID != cs[0] {
		t.Fatalf("account page while selections run: %+v, %v", acct, err)
	}
	if _, err := s.ConsumerByID(ctx, cs[1]); err != nil {
		t.Fatalf("consumer read while selections run: %v", err)
	}
	wantAckDecision(t, mustAcknowledge(t, s, ackAt(job, cs[0], postoffice.ChannelClick, ackT0)), 5, "")
	select {
	case res := <-done:
		t.Fatalf("a selection finished before it was released: %+v", res)
	default:
	}
	close(release)
	for range 4 {
		if res := <-done; res.err != nil || res.n != 9 {
			t.Fatalf("held selection: %d, %v; want 9", res.n, res.err)
		}
	}
	// Their slots are given back.
	s.selectionHook = nil
	if _, err := s.CheckSelection(postoffice.WithSelectionOwner(ctx, "acme"), `country = ?`, []any{"US"}, false); err != nil {
		t.Fatalf("acme after its selections ended: %v", err)
	}
}
