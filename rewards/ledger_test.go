package rewards

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSettleStore has pending accruals to post and records the limits it was asked for.
type fakeSettleStore struct {
	mu      sync.Mutex
	pending int
	limits  []int
	err     error // returned once, by the next call
}

func (f *fakeSettleStore) Settle(ctx context.Context, limit int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = append(f.limits, limit)
	if err := f.err; err != nil {
		f.err = nil
		return 0, err
	}
	n := min(limit, f.pending)
	f.pending -= n
	return n, nil
}

func (f *fakeSettleStore) add(n int) {
	f.mu.Lock()
	f.pending += n
	f.mu.Unlock()
}

func (f *fakeSettleStore) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending
}

var _ SettleStore = (*fakeSettleStore)(nil)

func TestSettleNowSettlesEverythingInBatches(t *testing.T) {
	f := &fakeSettleStore{pending: 25}
	s := &Settler{Store: f, Batch: 10}
	n, err := s.SettleNow(context.Background())
	if err != nil || n != 25 {
		t.Fatalf("SettleNow = %d, %v; want 25", n, err)
	}
	if !reflect.DeepEqual(f.limits, []int{10, 10, 10}) {
		t.Errorf("limits %v, want three batches of 10", f.limits)
	}

	f = &fakeSettleStore{pending: 3}
	if n, err := (&Settler{Store: f}).SettleNow(context.Background()); err != nil || n != 3 || f.limits[0] != DefaultSettleBatch {
		t.Errorf("SettleNow = %d, %v with limits %v; want 3 in one default batch", n, err, f.limits)
	}

	boom := errors.New("disk full")
	f = &fakeSettleStore{pending: 25}
	f.limits = nil
	s = &Settler{Store: f, Batch: 10}
	if _, err := s.SettleNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.add(5)
	f.err = boom
	if n, err := s.SettleNow(context.Background()); !errors.Is(err, boom) || n != 0 {
		t.Errorf("SettleNow = %d, %v; want the store's error", n, err)
	}
}

func TestSettlerRunKeepsGoingAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSettleStore{pending: 7, err: errors.New("database is locked")}
		s := &Settler{Store: f, Interval: time.Minute, Batch: 3}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		synctest.Wait() // the first pass has failed and Run waits for its ticker
		if got := f.left(); got != 7 {
			t.Fatalf("%d left after a failed pass, want all 7", got)
		}
		time.Sleep(s.Interval) // the bubble's clock: the next tick, at once
		synctest.Wait()
		if got := f.left(); got != 0 {
			t.Fatalf("%d left after the pass that follows a failed one", got)
		}
		f.add(4)
		time.Sleep(s.Interval)
		synctest.Wait()
		if got := f.left(); got != 0 {
			t.Fatalf("%d of what accrued later left after a tick", got)
		}
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil once ctx ends", err)
			}
		default:
			t.Fatal("Run did not stop when ctx ended")
		}
	})
}

func TestAccounts(t *testing.T) {
	if got := IssuerAccount(7); got != "issuer:7" {
		t.Errorf("IssuerAccount = %q", got)
	}
	if got := ConsumerAccount(42); got != "consumer:42" {
		t.Errorf("ConsumerAccount = %q", got)
	}
}

func TestCatalogItemValidate(t *testing.T) {
	for _, c := range []struct {
		item  CatalogItem
		field string // "" when valid
	}{
		{CatalogItem{Name: "Mug", Cost: 10, Stock: 0}, ""},
		{CatalogItem{Name: " ", Cost: 10}, "name"},
		{CatalogItem{Name: "Mug", Cost: 0}, "cost"},
		{CatalogItem{Name: "Mug", Cost: 1, Stock: -1}, "stock"},
	} {
		err := c.item.Validate()
		if (err == nil) != (c.field == "") || (err != nil && !strings.HasPrefix(err.Error(), c.field+":")) {
			t.Errorf("Validate(%+v) = %v, want field %q", c.item, err, c.field)
		}
	}
}

func TestTimelineWriteTextExplainsWhyNot(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tl := &Timeline{
		Consumer: Consumer{ID: 9, Email: "dee@example.com", Status: StatusActive, Format: FormatHTML},
		Balance:  3, LedgerBalance: 5,
		Deliveries: []TimelineDelivery{
			{JobKey: 1, JobName: "Quiet", Sent: true, SentAt: at, JobStop: at.Add(48 * time.Hour)},
			{JobKey: 2, JobName: "Bounced", Failed: true, RetryCount: 5, LastError: "421 try later", UpdatedAt: at},
			{JobKey: 3, JobName: "Waiting", JobStart: at.Add(time.Hour)},
			{JobKey: 4, JobName: "No rule", Sent: true, SentAt: at},
		},
		Acknowledgements: []TimelineAck{{JobKey: 4, JobName: "No rule", Channel: "click", At: at.Add(time.Minute)}},
	}
	var b bytes.Buffer
	if err := tl.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	report := b.String()
	for _, want := range []string{
		"(no name) <dee@example.com>",
		"WARNING: the ledger says 5 points",
		`job 1 "Quiet": sent; she has not replied or pressed Submit`,
		`job 2 "Bounced": never delivered: given up after retries (421 try later)`,
		`job 3 "Waiting": not sent yet`,
		"no rule of the campaign awards a click",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}

	b.Reset()
	if err := (&Timeline{Consumer: Consumer{ID: 1, Email: "new@example.com"}}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "has not been invited to any campaign") {
		t.Errorf("report for a new consumer:\n%s", b.String())
	}
}

func TestTimelineJSONIsSnakeCaseAndRoundTrips(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tl := Timeline{
		Consumer: Consumer{ID: 9, Email: "dee@example.com", FirstName: "Dee", Interests: []string{"golf"},
			Status: StatusActive, Format: FormatText, PointsBalance: 4, Attributes: map[string]string{"plan": "gold"}},
		Balance: 4, LedgerBalance: 4, Pending: 2,
		Deliveries:  []TimelineDelivery{{ID: 1, JobKey: 2, JobName: "J", Sent: true, SentAt: at}},
		Postings:    []TimelineEntry{{ID: 1, PostingID: 1, At: at, Kind: "accrual", Amount: 4, Counter: "issuer:1"}},
		Redemptions: []Redemption{},
	}
	b, err := json.Marshal(tl)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"first_name":"Dee"`, `"points_balance":4`, `"ledger_balance":4`, `"job_key":2`,
		`"sent_at":"2026-05-01T12:00:00Z"`, `"posting_id":1`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	if bytes.Contains(b, []byte(`"FirstName"`)) || bytes.Contains(b, []byte(`"received_at"`)) {
		t.Errorf("JSON has Go names or zero times: %s", b)
	}
	var back Timeline
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, tl) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, tl)
	}
}
