-- Acknowledgements and rewards: award rules of the toolbox database 174, the accruals they
-- make, the double-entry ledger that settles them into consumer accounts (claim 14), the
-- redemption catalog (redeemer 40), and what the receiver took in.

ALTER TABLE issuers ADD COLUMN budget INTEGER NOT NULL DEFAULT 0; -- points; 0: no cap

CREATE TABLE award_rules (
    id          INTEGER PRIMARY KEY,
    issuer_id   INTEGER NOT NULL REFERENCES issuers(id),
    description TEXT NOT NULL DEFAULT '',
    type        TEXT NOT NULL CHECK (type IN ('reply', 'click', 'banner', 'purchase', 'questionnaire')),
    points      INTEGER NOT NULL CHECK (points > 0),
    frequency   TEXT NOT NULL CHECK (frequency IN ('once', 'period', 'times')),
    period_ms   INTEGER NOT NULL DEFAULT 0,
    max_times   INTEGER NOT NULL DEFAULT 0,
    start_at    INTEGER NOT NULL DEFAULT 0, -- Unix ms; 0: unbounded
    stop_at     INTEGER NOT NULL DEFAULT 0,
    issuer_url  TEXT NOT NULL DEFAULT '',
    success_url TEXT NOT NULL DEFAULT '',
    budget      INTEGER NOT NULL DEFAULT 0, -- points; 0: no cap
    retired     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- The rules a job's acknowledgements earn under.
CREATE TABLE job_rules (
    job_key INTEGER NOT NULL REFERENCES jobs(key),
    rule_id INTEGER NOT NULL REFERENCES award_rules(id),
    PRIMARY KEY (job_key, rule_id)
) STRICT;

-- Every acknowledgement, awarded or not, with each rule's decision.
CREATE TABLE acknowledgements (
    id          INTEGER PRIMARY KEY,
    job_key     INTEGER NOT NULL REFERENCES jobs(key),
    consumer_id INTEGER NOT NULL REFERENCES consumers(id),
    channel     TEXT NOT NULL CHECK (channel IN ('reply', 'click')),
    source      TEXT NOT NULL DEFAULT '',
    rule_id     INTEGER REFERENCES award_rules(id), -- NULL: no rule of the job applies
    awarded     INTEGER NOT NULL DEFAULT 0,
    points      INTEGER NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX acknowledgements_consumer ON acknowledgements (consumer_id, created_at);

-- Points earned and held in the issuer's toolbox account until settlement posts them
-- (posted_at set, with the ledger entries of the posting). The unique key makes an
-- acknowledgement award once, however often it arrives.
CREATE TABLE accruals (
    id          INTEGER PRIMARY KEY,
    rule_id     INTEGER NOT NULL REFERENCES award_rules(id),
    job_key     INTEGER NOT NULL REFERENCES jobs(key),
    consumer_id INTEGER NOT NULL REFERENCES consumers(id),
    occurrence  INTEGER NOT NULL,
    issuer_id   INTEGER NOT NULL REFERENCES issuers(id),
    points      INTEGER NOT NULL CHECK (points > 0),
    created_at  INTEGER NOT NULL,
    posted_at   INTEGER,
    UNIQUE (rule_id, job_key, consumer_id, occurrence)
) STRICT;
CREATE INDEX accruals_unposted ON accruals (id) WHERE posted_at IS NULL;
CREATE INDEX accruals_rule_consumer ON accruals (rule_id, consumer_id, created_at);
CREATE INDEX accruals_consumer ON accruals (consumer_id);

-- The ledger: append-only, double-entry. Every posting is a set of entries with one
-- posting_id whose amounts sum to zero. Accounts: 'issuer:ID' (points the issuer has
-- given out, so it runs negative), 'consumer:ID', 'redeemed' (points spent on rewards).
CREATE TABLE ledger_entries (
    id          INTEGER PRIMARY KEY,
    posting_id  INTEGER NOT NULL,
    account     TEXT NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount != 0),
    kind        TEXT NOT NULL CHECK (kind IN ('accrual', 'redemption', 'correction')),
    accrual_id  INTEGER REFERENCES accruals(id),
    redemption_id INTEGER,
    memo        TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_account ON ledger_entries (account, id);
CREATE INDEX ledger_posting ON ledger_entries (posting_id);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;

-- The redemption catalog (redeemer 40) and what was redeemed.
CREATE TABLE catalog (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    cost        INTEGER NOT NULL CHECK (cost > 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE redemptions (
    id          INTEGER PRIMARY KEY,
    consumer_id INTEGER NOT NULL REFERENCES consumers(id),
    item_id     INTEGER NOT NULL REFERENCES catalog(id),
    cost        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX redemptions_consumer ON redemptions (consumer_id);

-- Mail the receiver took that was not an acknowledgement: bounces, auto-replies,
-- complaints, and replies without a valid token.
CREATE TABLE inbound_messages (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL, -- reply, auto-reply, bounce, complaint, unknown
    job_key     INTEGER,
    consumer_id INTEGER,
    mail_from   TEXT NOT NULL DEFAULT '',
    rcpt_to     TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;

-- Enrollment by double opt-in: a pending sign-up waits for its confirmation link.
CREATE TABLE enrollments (
    id           INTEGER PRIMARY KEY,
    email        TEXT NOT NULL,
    data         TEXT NOT NULL, -- the form, as JSON
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER
) STRICT;
