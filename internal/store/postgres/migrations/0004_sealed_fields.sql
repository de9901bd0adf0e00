-- Personal fields are sealed under their owner's data key (package crypt;
-- what and how: package store/sealed). The columns that held them in clear
-- stay, holding nothing personal: users.username holds the username's
-- keyed hash ("h1:" + hex), which keeps it unique and findable;
-- users.display_name, credentials.name, sessions.ip and sessions.user_agent
-- are empty. Rows an older keyway wrote are sealed when a keyway with the
-- KEK first opens the store (its sealed columns are NULL until then).
ALTER TABLE users ADD COLUMN username_sealed BYTEA;
ALTER TABLE users ADD COLUMN display_name_sealed BYTEA;
ALTER TABLE credentials ADD COLUMN name_sealed BYTEA;
ALTER TABLE sessions ADD COLUMN device_sealed BYTEA;

-- The data keys of a store on PostgreSQL (package crypt), unless
-- data_protection.key_store names another database: keep them in another
-- database, backed up apart, for erasure to reach this one's backups.
CREATE TABLE data_keys (
    user_id    TEXT PRIMARY KEY,
    kek_id     TEXT NOT NULL,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
