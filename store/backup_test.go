package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// openSQLite opens a fresh SQLite database whatever engine the run is on: backups are
// SQLite's.
func openSQLite(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "pointpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestBackupWhileWriting backs up while another goroutine imports consumers: the copy opens
// as a pointpost database holding a whole number of the writer's transactions, the source
// goes on, and a second backup to the same file is refused and leaves the first intact.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	importCSV(t, s, "email\nfirst@example.com\n")

	const batches, perBatch = 40, 50
	started := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := 0; b < batches; b++ {
			var csv strings.Builder
			csv.WriteString("email\n")
			for i := 0; i < perBatch; i++ {
				fmt.Fprintf(&csv, "b%d-%d@example.com\n", b, i)
			}
			if _, err := s.ImportConsumersCSV(ctx, strings.NewReader(csv.String()), nil); err != nil {
				writeErr = err
				return
			}
			if b == 0 {
				close(started)
			}
		}
	}()
	<-started
	file := filepath.Join(t.TempDir(), "copy.db")
	pages, err := s.Backup(ctx, file)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if pages < 1 {
		t.Errorf("Backup copied %d pages", pages)
	}
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}

	copied, err := Open(ctx, file)
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer copied.Close()
	var n int
	if err := copied.read.QueryRow(`SELECT count(*) FROM consumers`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Each import is one transaction: the copy has the first row and whole batches.
	if n < 1+perBatch || (n-1)%perBatch != 0 {
		t.Errorf("the backup has %d consumers, want 1 + a multiple of %d, at least one batch", n, perBatch)
	}
	var check string
	if err := copied.read.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check of the backup = %q, %v", check, err)
	}

	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(ctx, file); !errors.Is(err, ErrBackupExists) || !strings.Contains(err.Error(), file) {
		t.Errorf("a backup over an existing file: %v, want ErrBackupExists naming it", err)
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Error("the refused backup changed the existing file")
	}
	if _, err := s.Backup(ctx, s.Path()); !errors.Is(err, ErrBackupExists) {
		t.Errorf("a backup over the database itself: %v, want ErrBackupExists", err)
	}
	if _, err := s.Backup(ctx, filepath.Join(t.TempDir(), "no-such-dir", "copy.db")); err == nil {
		t.Error("a backup into a missing directory succeeded")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*partial*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// BenchmarkBackup100k backs up a database of 100,000 demo consumers.
func BenchmarkBackup100k(b *testing.B) {
	ctx := context.Background()
	s := openSQLite(b)
	var data strings.Builder
	if err := writeDemoCSV(&data, 100_000, 1); err != nil {
		b.Fatal(err)
	}
	if _, err := s.ImportConsumersCSV(ctx, strings.NewReader(data.String()), nil); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var size int64
	for i := 0; b.Loop(); i++ {
		file := filepath.Join(dir, fmt.Sprintf("copy%d.db", i))
		if _, err := s.Backup(ctx, file); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if fi, err := os.Stat(file); err == nil {
			size = fi.Size()
		}
		os.Remove(file)
		b.StartTimer()
	}
	b.ReportMetric(float64(size)/1e6, "MB")
}
