package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// openTest opens a fresh database: a file in the test's temp dir, or a PostgreSQL database
// in the conformance run (testDatabase).
func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openAgain opens s's database once more, as another process on it would, until t ends.
func openAgain(t testing.TB, s *Store) *Store {
	t.Helper()
	again, err := Open(context.Background(), s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	return again
}

// TestOpenSQLiteURL: a sqlite: URL opens the file it names, relative or absolute.
func TestOpenSQLiteURL(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for name, file := range map[string]string{
		"sqlite:relative.db":                               "relative.db",
		"sqlite://" + filepath.Join(dir, "absolute.db"):    filepath.Join(dir, "absolute.db"),
		filepath.Join(dir, "plain.db"):                     filepath.Join(dir, "plain.db"),
		"sqlite:" + filepath.Join(dir, "one-slash-abs.db"): filepath.Join(dir, "one-slash-abs.db"),
	} {
		s, err := Open(context.Background(), name)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		path := s.Path()
		s.Close()
		if path != file {
			t.Errorf("open %s: path %s, want %s", name, path, file)
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("open %s: %v", name, err)
		}
	}
}

func TestOpenAppliesMigrationsOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.db")
	for i := 0; i < 2; i++ {
		s, err := Open(context.Background(), file)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		var n int
		if err := s.read.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 1 {
			t.Fatalf("open %d: %d migrations recorded", i, n)
		}
		var mode string
		if err := s.write.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal_mode = %q, %v", mode, err)
		}
		var fk int
		if err := s.read.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
			t.Fatalf("reader foreign_keys = %d, %v", fk, err)
		}
		s.Close()
	}
}
