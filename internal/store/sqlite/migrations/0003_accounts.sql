-- People and their passkeys. keyway has no passwords: a user is a username,
-- a WebAuthn user handle and one or more public-key credentials.
CREATE TABLE users (
    id           TEXT PRIMARY KEY NOT NULL,            -- "usr_" + random, public
    handle       BLOB NOT NULL UNIQUE,                 -- WebAuthn user handle: 32 random bytes, never changes
    username     TEXT NOT NULL UNIQUE,                 -- normalised (NFKC, lower case)
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at   INTEGER NOT NULL,
    disabled_at  INTEGER
) STRICT;

CREATE TABLE credentials (
    id                 BLOB PRIMARY KEY NOT NULL,       -- the credential ID (≤ 1023 bytes)
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    public_key         BLOB NOT NULL,                   -- COSE key
    attestation_type   TEXT NOT NULL DEFAULT '',
    attestation_format TEXT NOT NULL DEFAULT '',
    aaguid             BLOB NOT NULL,
    sign_count         INTEGER NOT NULL DEFAULT 0,
    clone_warning      INTEGER NOT NULL DEFAULT 0,
    flags              INTEGER NOT NULL,                -- the authenticator data flags octet
    transports         TEXT NOT NULL DEFAULT '[]',      -- JSON array
    attachment         TEXT NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    last_used_at       INTEGER
) STRICT;
CREATE INDEX credentials_user ON credentials (user_id);

-- WebAuthn ceremony state, single use: a finish takes (deletes) its row in
-- the same statement that reads it, so a replay or a concurrent second
-- finish finds nothing.
CREATE TABLE webauthn_challenges (
    id         TEXT PRIMARY KEY NOT NULL,               -- random, sent to the client
    kind       TEXT NOT NULL,                           -- register | login | stepup
    user_id    TEXT NOT NULL DEFAULT '',
    data       BLOB NOT NULL,                           -- the library's session data, as returned
    expires_at INTEGER NOT NULL
) STRICT;

-- One-time recovery codes, stored as SHA-256 only.
CREATE TABLE recovery_codes (
    hash    BLOB PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_at INTEGER
) STRICT;
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- One-time links: sign-up invites, admin enrolment links for an existing
-- user, and the first-admin setup link. Stored as SHA-256 only.
CREATE TABLE invites (
    hash       BLOB PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('invite', 'enrol', 'setup')),
    user_id    TEXT NOT NULL DEFAULT '',                -- enrol: the user who gets a new passkey
    role       TEXT NOT NULL DEFAULT 'user',
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

-- Server-side sessions. Only the SHA-256 of the 256-bit token is stored.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,            -- "ses_" + random: public, for listing and revoking
    token_hash    BLOB NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id BLOB,                                 -- the passkey that signed it in; NULL for recovery
    restricted    INTEGER NOT NULL DEFAULT 0,           -- 1: recovery session, may only add a passkey
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,                     -- absolute timeout
    step_up_at    INTEGER NOT NULL,                     -- last user-verified assertion
    ip            TEXT NOT NULL DEFAULT '',
    user_agent    TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_credential ON sessions (credential_id);
