-- Test sends ("send a test", issue 11): the addresses an operator approved as test
-- recipients besides the toolbox users' own, and every test sent, for the per-user limit.

CREATE TABLE test_addresses (
    email       TEXT PRIMARY KEY COLLATE NOCASE,
    note        TEXT NOT NULL DEFAULT '',
    approved_by TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE test_sends (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    job_key    INTEGER NOT NULL,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX test_sends_user ON test_sends (user_id, created_at);
