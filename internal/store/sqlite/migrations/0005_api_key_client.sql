-- The client profile an API key was made for (config clients:), so a
-- partner's key calls only the routes, and sees only the fields, of the
-- partner profile. '' for none.
ALTER TABLE api_keys ADD COLUMN client TEXT NOT NULL DEFAULT '';
