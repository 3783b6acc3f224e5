package pgtest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

var server *Server

func TestMain(m *testing.M) { os.Exit(Main(m, &server)) }

// TestDatabasesAreSeparate: each NewDatabase is empty and its own, on PostgreSQL 15 (when the
// rig started the cluster).
func TestDatabasesAreSeparate(t *testing.T) {
	s := Need(t, server)
	ctx := context.Background()
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share the URL %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, `CREATE TABLE t (v int); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 't'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the second database sees the first's table: %d, %v", n, err)
	}
	if s.dir != "" {
		var version string
		if err := ca.QueryRow(ctx, `SHOW server_version`).Scan(&version); err != nil || version[:3] != "15." {
			t.Errorf("server_version %q, %v; want 15.x from %s", version, err, BinDir)
		}
	}
}

// TestStopRemovesTheCluster: a throwaway cluster leaves nothing behind and stops serving.
func TestStopRemovesTheCluster(t *testing.T) {
	Need(t, server)
	if os.Getenv(EnvURL) != "" {
		t.Skip("the tests use the server of " + EnvURL)
	}
	ctx := context.Background()
	s, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.URL == server.URL {
		t.Fatalf("the second cluster has the first's URL %s", s.URL)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cluster's directory is still there: %v", err)
	}
	if conn, err := pgx.Connect(ctx, s.URL); err == nil {
		conn.Close(ctx)
		t.Error("the stopped cluster still answers")
	}
}
