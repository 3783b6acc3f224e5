package store

import "context"

// Ping reads the schema through the readers' pool: it fails when the database is closed or
// its file no longer answers. It never waits for the writer, which a long commit may hold.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	return s.read.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n)
}
