-- The key store: each person's data key, wrapped under a KEK (package
-- crypt), in a file apart from the database whose personal fields it
-- opens. Deleting a row shreds that person's data in every copy of the
-- database; back this file up on its own, and keep its copies short-lived.
CREATE TABLE data_keys (
    user_id    TEXT PRIMARY KEY NOT NULL,
    kek_id     TEXT NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL                  -- unix nanoseconds, UTC
) STRICT, WITHOUT ROWID;
