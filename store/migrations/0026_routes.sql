-- Outbound routes: each a relay and its provider's limits. The URL carries the relay's
-- password: it is read back only to send, never shown.
CREATE TABLE routes (
    name        TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    connections INTEGER NOT NULL DEFAULT 0,
    rate        REAL NOT NULL DEFAULT 0,
    priority    INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);

-- A route's quotas: at most lim messages in any window of window_ms.
CREATE TABLE route_quotas (
    route     TEXT NOT NULL REFERENCES routes(name) ON DELETE CASCADE,
    lim       INTEGER NOT NULL,
    window_ms INTEGER NOT NULL
);
CREATE INDEX route_quotas_route ON route_quotas (route);

-- What each route sent, by the second (unix time), written with the deliveries' outcomes:
-- a quota's rolling window survives a restart.
CREATE TABLE route_sends (
    route TEXT NOT NULL,
    at    INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (route, at)
) WITHOUT ROWID;

-- A job pinned to a route leaves only by it ('' for any).
ALTER TABLE jobs ADD COLUMN route TEXT NOT NULL DEFAULT '';

-- Why a waiting mail server waits, and until when.
ALTER TABLE mail_servers ADD COLUMN note TEXT NOT NULL DEFAULT '';
