-- Saved segments: a selection an issuer named, reused by later campaigns.
CREATE TABLE segments (
    id         INTEGER PRIMARY KEY,
    issuer_id  INTEGER NOT NULL REFERENCES issuers(id),
    name       TEXT NOT NULL,
    selection  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (issuer_id, name)
) STRICT;
