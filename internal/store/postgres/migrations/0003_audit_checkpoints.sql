-- Signed checkpoints of the audit chain's head (package audit): they catch
-- a truncated tail and a chain rewritten with fresh hashes. Append-only,
-- like the events they vouch for.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    head      BYTEA NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTEA NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION keyway_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION keyway_audit_append_only();
