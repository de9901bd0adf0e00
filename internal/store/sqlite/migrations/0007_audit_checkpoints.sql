-- Signed checkpoints of the audit chain's head (package audit): they catch
-- a truncated tail and a chain rewritten with fresh hashes. Append-only,
-- like the events they vouch for.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY NOT NULL,        -- the last event it covers
    at        INTEGER NOT NULL,                    -- unix nanoseconds, UTC
    head      BLOB NOT NULL,                       -- that event's hash
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL                        -- Ed25519
) STRICT;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
