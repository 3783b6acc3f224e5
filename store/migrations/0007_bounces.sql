-- Bounces and abuse reports (issue 5). A bounce or complaint is kept once, however often its
-- sender redelivers it: message_key is its Message-ID (or a hash of it without one). Each
-- effect on a consumer is a row of bounces; the soft bounces since her last acknowledgement
-- decide when a soft-bouncing address is suppressed.

ALTER TABLE inbound_messages ADD COLUMN message_key TEXT;
CREATE UNIQUE INDEX inbound_messages_key ON inbound_messages (message_key)
    WHERE message_key IS NOT NULL;

CREATE TABLE bounces (
    id          INTEGER PRIMARY KEY,
    inbound_id  INTEGER REFERENCES inbound_messages(id), -- NULL: refused at send time (5xx)
    -- deliveries.id, NULL when named only by its address. No REFERENCES: a foreign key to
    -- deliveries would make every insert of the selection read this table, which the
    -- selection guard (guard.go) refuses.
    delivery_id INTEGER,
    consumer_id INTEGER NOT NULL REFERENCES consumers(id),
    kind        TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
    status      TEXT NOT NULL DEFAULT '', -- RFC 3463, '' when the bounce gave none
    detail      TEXT NOT NULL DEFAULT '',
    suppressed  INTEGER NOT NULL DEFAULT 0, -- this one changed the consumer's status
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX bounces_consumer ON bounces (consumer_id, created_at);
