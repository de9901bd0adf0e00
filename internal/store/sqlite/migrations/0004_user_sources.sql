-- Where people signed in from, so that a recovery attempt from a familiar
-- place keeps its own budget when strangers spend the account's. A source
-- is an IPv4 address or an IPv6 network; only a keyed hash of it, bound to
-- the user, is kept (see passkey.Service.RememberSource).
CREATE TABLE user_sources (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source_hash  BLOB NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, source_hash)
) STRICT, WITHOUT ROWID;
