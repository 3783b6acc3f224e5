-- Device cookies (OWASP "device cookies"): set in a browser at a successful sign-in, they
-- let that browser sign in to its account while strangers' failures hold the account
-- locked. Kept as SHA-256 hashes. failures counts wrong passwords tried with the cookie
-- since it last signed in; a cookie that reaches its budget is deleted.
CREATE TABLE device_cookies (
    token_hash BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0)
) STRICT, WITHOUT ROWID;
CREATE INDEX device_cookies_user ON device_cookies (user_id, created_at);
