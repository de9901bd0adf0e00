-- API keys. Only an HMAC-SHA-256 of each key (under a pepper kept outside
-- the database) is stored; the key itself never is.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,      -- public ID, 12 base62 characters
    name         TEXT NOT NULL,
    owner        TEXT NOT NULL,                  -- "user:<id>" or "service:<name>"
    env          TEXT NOT NULL CHECK (env IN ('live', 'test')),
    scopes       TEXT NOT NULL DEFAULT '[]',     -- JSON array of strings
    rate_count   INTEGER NOT NULL DEFAULT 0,     -- 0: no per-key rate limit
    rate_period  INTEGER NOT NULL DEFAULT 0,     -- nanoseconds
    rate_burst   INTEGER NOT NULL DEFAULT 0,
    quota_limit  INTEGER NOT NULL DEFAULT 0,     -- 0: no quota
    quota_period TEXT NOT NULL DEFAULT '' CHECK (quota_period IN ('', 'day', 'month', 'total')),
    cidrs        TEXT NOT NULL DEFAULT '[]',     -- JSON array of CIDR strings
    created_at   INTEGER NOT NULL,               -- unix nanoseconds, UTC
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,                        -- NULL while valid
    revoke_reason TEXT NOT NULL DEFAULT '',
    last_used_at INTEGER
) STRICT;
CREATE INDEX api_keys_owner ON api_keys (owner);

-- A key has one current secret and, during a rotation overlap, older ones
-- that die at not_after.
CREATE TABLE api_key_secrets (
    key_id     TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    hash       BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL,
    not_after  INTEGER                           -- NULL: the current secret
) STRICT;
CREATE INDEX api_key_secrets_key ON api_key_secrets (key_id);

-- Every change to a key appends a row here in the same transaction; every
-- verifier polls it to drop stale cache entries within a second, whichever
-- process made the change (the server, the CLI, another node).
CREATE TABLE api_key_changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL,
    at     INTEGER NOT NULL
) STRICT;

-- Usage by key, hour (UTC, "2006-01-02T15") and outcome.
CREATE TABLE api_key_usage (
    key_id  TEXT NOT NULL,
    hour    TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
) STRICT, WITHOUT ROWID;

-- The security audit trail: append-only, each row chained to the previous
-- one by hash so that an edited, deleted or reordered row is detectable.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    type      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}',        -- JSON; never secrets
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
) STRICT;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
