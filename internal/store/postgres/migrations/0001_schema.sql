-- keyway's schema on PostgreSQL: the same tables as the embedded SQLite
-- store, in PostgreSQL's types. Times are Unix nanoseconds (UTC) in BIGINT,
-- as in SQLite, so both stores read and write the same values and
-- `keyway migrate --from sqlite:… --to postgres://…` copies them as they are.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));

-- API keys: only an HMAC-SHA-256 of each secret (under the pepper kept
-- outside the database) is stored.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    env           TEXT NOT NULL CHECK (env IN ('live', 'test')),
    scopes        TEXT[] NOT NULL DEFAULT '{}',
    rate_count    BIGINT NOT NULL DEFAULT 0,
    rate_period   BIGINT NOT NULL DEFAULT 0,
    rate_burst    BIGINT NOT NULL DEFAULT 0,
    quota_limit   BIGINT NOT NULL DEFAULT 0,
    quota_period  TEXT NOT NULL DEFAULT '' CHECK (quota_period IN ('', 'day', 'month', 'total')),
    cidrs         TEXT[] NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT NOT NULL DEFAULT '',
    last_used_at  BIGINT,
    client        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX api_keys_owner ON api_keys (owner);

CREATE TABLE api_key_secrets (
    key_id     TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    hash       BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at BIGINT NOT NULL,
    not_after  BIGINT
);
CREATE INDEX api_key_secrets_key ON api_key_secrets (key_id);

-- The change feed every node follows to drop stale cache entries. Sequence
-- numbers are given under the journal lock (see appendChange), so they
-- become visible in order and a follower never skips one.
CREATE TABLE api_key_changes (
    seq    BIGINT PRIMARY KEY,
    key_id TEXT NOT NULL,
    at     BIGINT NOT NULL
);

CREATE TABLE api_key_usage (
    key_id  TEXT NOT NULL,
    hour    TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
);

-- The audit trail: append-only and hash-chained; one total order across
-- every node, with no gaps (see appendAudit).
CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    type      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}',
    prev_hash BYTEA NOT NULL,
    hash      BYTEA NOT NULL
);
CREATE FUNCTION keyway_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION keyway_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION keyway_audit_append_only();

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    handle       BYTEA NOT NULL UNIQUE,
    username     TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at   BIGINT NOT NULL,
    disabled_at  BIGINT
);

CREATE TABLE credentials (
    id                 BYTEA PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    public_key         BYTEA NOT NULL,
    attestation_type   TEXT NOT NULL DEFAULT '',
    attestation_format TEXT NOT NULL DEFAULT '',
    aaguid             BYTEA NOT NULL,
    sign_count         BIGINT NOT NULL DEFAULT 0,
    clone_warning      BOOLEAN NOT NULL DEFAULT false,
    flags              SMALLINT NOT NULL,
    transports         TEXT[] NOT NULL DEFAULT '{}',
    attachment         TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    last_used_at       BIGINT
);
CREATE INDEX credentials_user ON credentials (user_id);

CREATE TABLE webauthn_challenges (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    user_id    TEXT NOT NULL DEFAULT '',
    data       BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_challenges_expiry ON webauthn_challenges (expires_at);

CREATE TABLE recovery_codes (
    hash    BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_at BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

CREATE TABLE invites (
    hash       BYTEA PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('invite', 'enrol', 'setup')),
    user_id    TEXT NOT NULL DEFAULT '',
    role       TEXT NOT NULL DEFAULT 'user',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    token_hash    BYTEA NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id BYTEA,
    restricted    BOOLEAN NOT NULL DEFAULT false,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    step_up_at    BIGINT NOT NULL,
    ip            TEXT NOT NULL DEFAULT '',
    user_agent    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_credential ON sessions (credential_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE user_sources (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source_hash  BYTEA NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, source_hash)
);
