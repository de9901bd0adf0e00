-- Where an audit event came from (the client's address), sealed (package
-- store/sealed): under the acting person's data key, so that erasing them
-- shreds it, or else under a key derived from the KEK. NULL when unknown.
-- Chained with the event (audit.Chain, version 2).
ALTER TABLE audit_events ADD COLUMN origin BLOB;
