package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchRemoteRelay: bench sends through its delaying proxy, pipelined or not, and says
// which; a negative latency is refused.
func TestBenchRemoteRelay(t *testing.T) {
	for _, pipelined := range []bool{true, false} {
		args := []string{"--consumers", "40", "--relay-latency", "2ms", "--json"}
		if !pipelined {
			args = append(args, "--no-pipelining")
		}
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"bench"}, args...), func(string) string { return "" }, &out); err != nil {
			t.Fatalf("bench %q: %v", args, err)
		}
		var res benchResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("bench --json printed %q: %v", out.String(), err)
		}
		if res.Messages == 0 || res.SinkMessages != int64(res.Messages) || res.RelayLatencyMS != 2 || res.Pipelining != pipelined {
			t.Errorf("bench %q = %+v, want every message at the sink, 2 ms, pipelining %v", args, res, pipelined)
		}
	}
	err := run(context.Background(), []string{"bench", "--relay-latency", "-1ms"}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--relay-latency") {
		t.Errorf("bench --relay-latency -1ms = %v, want an error naming the flag", err)
	}
}
