package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"pointpost/store/pgtest"
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

// TestBenchOnPostgres: bench --db postgres://… sends its job on a database of its own on that
// server, with acknowledgements, and drops the database after; a --db that is not a
// PostgreSQL URL, or a server that does not answer, is refused.
func TestBenchOnPostgres(t *testing.T) {
	srv := pgtest.Need(t, pgServer)
	ctx := context.Background()
	var out bytes.Buffer
	args := []string{"bench", "--consumers", "60", "--acks", "10", "--json", "--db", srv.URL}
	if err := run(ctx, args, env{}.get, &out); err != nil {
		t.Fatalf("bench %q: %v", args, err)
	}
	var res benchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench --json printed %q: %v", out.String(), err)
	}
	if res.Messages == 0 || res.SinkMessages != int64(res.Messages) || res.Acks == nil || res.Acks.Requests != 10 || res.Acks.Failures != 0 {
		t.Errorf("bench on PostgreSQL = %+v, acks %+v", res, res.Acks)
	}
	conn, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname LIKE 'pointpost_bench_%'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d bench databases left after the run, %v", left, err)
	}

	for _, c := range []struct{ db, want string }{
		{"bench.db", "--db must be a PostgreSQL URL"},
		{"postgres://pointpost@127.0.0.1:1/pointpost", "127.0.0.1"},
	} {
		err := run(ctx, []string{"bench", "--consumers", "10", "--db", c.db}, env{}.get, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench --db %s: %v, want an error with %q", c.db, err, c.want)
		}
	}
}
