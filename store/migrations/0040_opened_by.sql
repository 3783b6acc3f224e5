-- Which binary last opened the database, at which schema version: a binary older than the
-- schema refuses to start and names the one that moved it on.
CREATE TABLE opened_by (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	schema_version INTEGER NOT NULL,
	binary_version TEXT NOT NULL,
	opened_at INTEGER NOT NULL
) STRICT;
