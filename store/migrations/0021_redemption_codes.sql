-- One-time codes that confirm a redemption: a consumer's token shows her account, but
-- spending her points also needs the code mailed to her address. A consumer has at most
-- one code at a time; it is kept as a SHA-256 hash, expires, works once and dies after
-- too many wrong tries (attempts).
CREATE TABLE redemption_codes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- a replaced code's id is never reused
    consumer_id INTEGER NOT NULL UNIQUE REFERENCES consumers(id) ON DELETE CASCADE,
    item_id     INTEGER NOT NULL REFERENCES catalog(id) ON DELETE CASCADE,
    code_hash   BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    used_at     INTEGER
) STRICT;
