-- Personal fields are sealed under their owner's data key (package crypt;
-- what and how: package store/sealed). The columns that held them in clear
-- stay, holding nothing personal: users.username holds the username's
-- keyed hash ("h1:" + hex), which keeps it unique and findable;
-- users.display_name, credentials.name, sessions.ip and sessions.user_agent
-- are empty. Rows an older keyway wrote are sealed when a keyway with the
-- KEK first opens the store (its sealed columns are NULL until then).
ALTER TABLE users ADD COLUMN username_sealed BLOB;
ALTER TABLE users ADD COLUMN display_name_sealed BLOB;
ALTER TABLE credentials ADD COLUMN name_sealed BLOB;
ALTER TABLE sessions ADD COLUMN device_sealed BLOB;
