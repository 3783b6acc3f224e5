-- ACME's cache (autocert's Cache): the account key, each certificate with its private key,
-- and the HTTP-01 challenges in flight, under autocert's own keys. serve keeps them here
-- when the database is PostgreSQL, so that every web process on it serves the certificate
-- one of them obtained and answers a challenge another asked for; on SQLite the table stays
-- empty unless asked for (tls.go).
CREATE TABLE acme_cache (
    key        TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    updated_at INTEGER NOT NULL -- Unix milliseconds
);
