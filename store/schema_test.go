package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenRefusesNewerSchema: a database that a newer binary migrated is refused, naming the
// migration and that binary, and left as it was.
func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "p.db")
	s, err := Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordOpen(ctx, "v9.9.9"); err != nil {
		t.Fatal(err)
	}
	schema, binary, at, err := s.OpenedBy(ctx)
	if err != nil || schema < 40 || binary != "v9.9.9" || at.IsZero() {
		t.Fatalf("OpenedBy = %d, %q, %v, %v", schema, binary, at, err)
	}
	// What a newer binary leaves behind: a migration this one does not have.
	if _, err := s.write.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(ctx, file)
	if !errors.Is(err, ErrSchemaNewer) {
		t.Fatalf("Open of a newer schema: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "9999") || !strings.Contains(msg, "v9.9.9") {
		t.Errorf("the refusal does not name the migration and the binary: %s", msg)
	}
}
