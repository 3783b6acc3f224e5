package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// BenchmarkSubmit measures durable Submit POSTs from 64 concurrent connections, each to a
// delivery of its own, through the real handler, post office and store (group commit).
func BenchmarkSubmit(b *testing.B) {
	ctx := context.Background()
	w := newWorld(b)
	n := b.N
	batch := make([]rewards.Consumer, n)
	for i := range batch {
		batch[i] = rewards.Consumer{Email: fmt.Sprintf("c%07d@example.com", i)}
	}
	for len(batch) > 0 {
		k := min(len(batch), 5000)
		if _, _, err := w.st.UpsertConsumers(ctx, batch[:k]); err != nil {
			b.Fatal(err)
		}
		batch = batch[k:]
	}
	now := time.Now()
	job, _, err := w.po.CreateJob(ctx, &postoffice.Campaign{Issuer: "acme", Name: "bench",
		Start: now.Add(-time.Minute).UTC().Format(time.RFC3339), Stop: now.Add(time.Hour).UTC().Format(time.RFC3339),
		ClientCount: n + 10, Text: &postoffice.MessageSpec{Subject: "s", Body: "b"},
		Rules: []postoffice.RuleSpec{{Type: "click", Points: 1, Frequency: "once"}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.po.Tick(ctx); err != nil {
		b.Fatal(err)
	}
	ids := make([]int64, 0, n)
	for i := range n {
		c, err := w.st.ConsumerByEmail(ctx, fmt.Sprintf("c%07d@example.com", i))
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	var next atomic.Int64
	b.SetParallelism((64 + 1) / 2) // GOMAXPROCS is 2 here
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			resp, err := client.Post(w.srv.URL+"/i/"+w.keys.Encode(job.Key, ids[i]), "application/x-www-form-urlencoded", nil)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks/s")
}
