-- The roles an administrator gave a person (a JSON array of names), which
-- session routes may require (routes: roles:) and upstreams receive in
-- X-Keyway-Roles. keyway's own role (user or admin) stays in role.
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
