package toolbox

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pointpost/postoffice"
)

func TestCountsCacheSharesOneCount(t *testing.T) {
	synctest.Test(t, testCountsCacheSharesOneCount)
}

func testCountsCacheSharesOneCount(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var clock sync.Mutex
	c := newCountsCache(time.Second)
	c.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	var calls atomic.Int32
	release := make(chan struct{})
	count := func(ctx context.Context, key int64) (postoffice.JobCounts, error) {
		calls.Add(1)
		<-release
		return postoffice.JobCounts{Total: int(key), Sent: int(calls.Load())}, nil
	}
	var wg sync.WaitGroup
	results := make(chan postoffice.JobCounts, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.get(context.Background(), 7, count)
			if err != nil {
				t.Error(err)
			}
			results <- got
		}()
	}
	// Every caller arrives (one counting, the rest waiting for it) before the count finishes.
	synctest.Wait()
	close(release)
	wg.Wait()
	close(results)
	for got := range results {
		if got.Total != 7 || got.Sent != 1 {
			t.Fatalf("a caller got %+v, want the one count's answer", got)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("20 callers made %d counts, want 1", n)
	}
	// Fresh for a second, counted again after.
	c.get(context.Background(), 7, count)
	if n := calls.Load(); n != 1 {
		t.Fatalf("a second call within the second counted again (%d)", n)
	}
	clock.Lock()
	now = now.Add(time.Second)
	clock.Unlock()
	if got, _ := c.get(context.Background(), 7, count); got.Sent != 2 {
		t.Fatalf("after a second: %+v, want a new count", got)
	}
}

func TestCountsCacheDoesNotKeepFailures(t *testing.T) {
	c := newCountsCache(time.Hour)
	fail := true
	count := func(context.Context, int64) (postoffice.JobCounts, error) {
		if fail {
			return postoffice.JobCounts{}, errors.New("database is locked")
		}
		return postoffice.JobCounts{Total: 3}, nil
	}
	if _, err := c.get(context.Background(), 1, count); err == nil {
		t.Fatal("the failure was not returned")
	}
	fail = false
	if got, err := c.get(context.Background(), 1, count); err != nil || got.Total != 3 {
		t.Fatalf("after a failure: %+v, %v; want a new count", got, err)
	}
}
