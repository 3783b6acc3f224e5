package store

import "context"

// Ping reads a table through the readers' pool: it fails when the database is closed, its
// file no longer answers or its server is gone. It never waits for the writer, which a long
// commit may hold.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	return s.read.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n)
}
