-- The delivery engine: consumers (database 165), issuers, and the post office database 184
-- with its control table (FIG. 4), message table (FIG. 5) and client mail table (FIG. 6).

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE token_keys (
    version    INTEGER PRIMARY KEY,
    secret     BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE issuers (
    id         INTEGER PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- interests is stored as ';golf;tennis;' so that "contains" is one instr() with delimiters;
-- attributes is a JSON object of the import's extra columns.
CREATE TABLE consumers (
    id             INTEGER PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    first_name     TEXT NOT NULL DEFAULT '',
    last_name      TEXT NOT NULL DEFAULT '',
    city           TEXT NOT NULL DEFAULT '',
    region         TEXT NOT NULL DEFAULT '',
    country        TEXT NOT NULL DEFAULT '',
    postal_code    TEXT NOT NULL DEFAULT '',
    birth_year     INTEGER,
    gender         TEXT NOT NULL DEFAULT '',
    interests      TEXT NOT NULL DEFAULT '',
    format         TEXT NOT NULL DEFAULT 'text' CHECK (format IN ('text', 'html')),
    attributes     TEXT NOT NULL DEFAULT '{}',
    status         TEXT NOT NULL DEFAULT 'active'
                   CHECK (status IN ('active', 'unsubscribed', 'bounced', 'suppressed')),
    points_balance INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

-- FIG. 5: message entry 218.
CREATE TABLE messages (
    id      INTEGER PRIMARY KEY,
    type    TEXT NOT NULL CHECK (type IN ('text', 'html')),
    subject TEXT NOT NULL,
    body    TEXT NOT NULL
) STRICT;

CREATE TABLE mail_servers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    relay       TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL DEFAULT 'idle',
    queue       INTEGER NOT NULL DEFAULT 0,
    rate        REAL NOT NULL DEFAULT 0,
    sent        INTEGER NOT NULL DEFAULT 0,
    retried     INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    reported_at INTEGER NOT NULL DEFAULT 0
) STRICT;

-- FIG. 4: control table entry 216. Times are Unix milliseconds.
CREATE TABLE jobs (
    key             INTEGER PRIMARY KEY,
    issuer_id       INTEGER NOT NULL REFERENCES issuers(id),
    name            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'draft'
                    CHECK (state IN ('draft', 'scheduled', 'running', 'done')),
    start_at        INTEGER NOT NULL,
    stop_at         INTEGER NOT NULL,
    client_count    INTEGER NOT NULL CHECK (client_count > 0),
    suspended       INTEGER NOT NULL DEFAULT 0,
    mail_server_id  INTEGER REFERENCES mail_servers(id),
    text_message_id INTEGER REFERENCES messages(id),
    html_message_id INTEGER REFERENCES messages(id),
    selection       TEXT NOT NULL DEFAULT '',
    selection_sql   TEXT NOT NULL DEFAULT '',
    selection_args  TEXT NOT NULL DEFAULT '[]',
    selected        INTEGER NOT NULL DEFAULT 0,
    select_cursor   INTEGER NOT NULL DEFAULT 0,
    selected_all    INTEGER NOT NULL DEFAULT 0,
    done_reason     TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK (text_message_id IS NOT NULL OR html_message_id IS NOT NULL)
) STRICT;

-- FIG. 6: client mail entry 220. failed marks a delivery given up after its retries.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    job_key         INTEGER NOT NULL REFERENCES jobs(key),
    consumer_id     INTEGER NOT NULL REFERENCES consumers(id),
    sent            INTEGER NOT NULL DEFAULT 0,
    received        INTEGER NOT NULL DEFAULT 0,
    retry_count     INTEGER NOT NULL DEFAULT 0,
    rejected        INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    sent_at         INTEGER,
    received_at     INTEGER,
    last_error      TEXT NOT NULL DEFAULT '',
    updated_at      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (job_key, consumer_id)
) STRICT;

-- The dispatchers' claim walks this: only deliveries still to send are in it.
CREATE INDEX deliveries_pending ON deliveries (job_key, id)
    WHERE sent = 0 AND rejected = 0 AND failed = 0;
CREATE INDEX deliveries_consumer ON deliveries (consumer_id);

-- The embedded outbox: what the mail servers sent when no relay is configured.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER,
    mail_from   TEXT NOT NULL,
    rcpt_to     TEXT NOT NULL,
    subject     TEXT NOT NULL DEFAULT '',
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
