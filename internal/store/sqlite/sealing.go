package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

// Sealer is the store's sealer; nil before UseSealer.
func (d *DB) Sealer() *crypt.Sealer { return d.sealer }

// UseSealer gives the store the data keys that seal personal fields, and
// seals what an older keyway left in clear (once; a store with nothing
// left in clear does nothing here). Nodes starting together may seal the
// same row: each update applies only to a row still in clear.
func (d *DB) UseSealer(ctx context.Context, s *crypt.Sealer) error {
	d.sealer = s
	// The keys must be the ones the data was sealed with: a store restored
	// without its key store, or started with another KEK, is refused now,
	// not at each person's next request.
	haveKeys, err := s.Check(ctx)
	if err != nil {
		return fmt.Errorf("the data keys do not open with this KEK (%w): start keyway with the KEK ring the data was sealed under", err)
	}
	var sealedUsers int
	if err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE username_sealed IS NOT NULL`).Scan(&sealedUsers); err != nil {
		return err
	}
	if sealedUsers > 0 && !haveKeys {
		return fmt.Errorf("the store holds %d people but the key store has none of their data keys: restore the key store from its backup; without it their personal data cannot be read", sealedUsers)
	}
	if err := d.sealLegacyUsers(ctx); err != nil {
		return fmt.Errorf("seal the personal data of older rows: %w", err)
	}
	return nil
}

func (d *DB) sealLegacyUsers(ctx context.Context) error {
	type legacy struct{ id, username, displayName string }
	var users []legacy
	err := queryEach(ctx, d.sql, `SELECT id, username, display_name FROM users WHERE username_sealed IS NULL`, func(r *sql.Rows) error {
		var l legacy
		if err := r.Scan(&l.id, &l.username, &l.displayName); err != nil {
			return err
		}
		users = append(users, l)
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range users {
		if err := d.sealer.EnsureUserKey(ctx, l.id); err != nil {
			return err
		}
		su, err := sealed.SealUser(ctx, d.sealer, &passkey.User{ID: l.id, Username: l.username, DisplayName: l.displayName})
		if err != nil {
			return err
		}
		if _, err := d.sql.ExecContext(ctx, `UPDATE users SET username = ?, display_name = '', username_sealed = ?, display_name_sealed = ?
			WHERE id = ? AND username_sealed IS NULL`, su.UsernameKey, su.Username, su.DisplayName, l.id); err != nil {
			return err
		}
	}
	var creds []passkey.Credential
	err = queryEach(ctx, d.sql, `SELECT id, user_id, name FROM credentials WHERE name_sealed IS NULL`, func(r *sql.Rows) error {
		var c passkey.Credential
		if err := r.Scan(&c.ID, &c.UserID, &c.Name); err != nil {
			return err
		}
		creds = append(creds, c)
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range creds {
		name, err := sealed.SealCredentialName(ctx, d.sealer, &c)
		if err != nil {
			return err
		}
		if _, err := d.sql.ExecContext(ctx, `UPDATE credentials SET name = '', name_sealed = ? WHERE id = ? AND name_sealed IS NULL`, name, c.ID); err != nil {
			return err
		}
	}
	var sessions []session.Session
	err = queryEach(ctx, d.sql, `SELECT id, user_id, ip, user_agent FROM sessions WHERE device_sealed IS NULL`, func(r *sql.Rows) error {
		var s session.Session
		if err := r.Scan(&s.ID, &s.UserID, &s.IP, &s.UserAgent); err != nil {
			return err
		}
		sessions = append(sessions, s)
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range sessions {
		device, err := sealed.SealDevice(ctx, d.sealer, &s)
		if err != nil {
			return err
		}
		if _, err := d.sql.ExecContext(ctx, `UPDATE sessions SET ip = '', user_agent = '', device_sealed = ? WHERE id = ? AND device_sealed IS NULL`,
			device, s.ID); err != nil {
			return err
		}
	}
	return nil
}

// queryEach runs q and calls each for every row.
func queryEach(ctx context.Context, db *sql.DB, q string, each func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// EraseUser implements passkey.AccountStore.
func (d *DB) EraseUser(ctx context.Context, userID string, ev audit.Event) error {
	if d.sealer == nil {
		return sealed.ErrNoSealer
	}
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM invites WHERE user_id = ? AND used_at IS NULL`,
			`DELETE FROM webauthn_challenges WHERE user_id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, userID); err != nil {
				return err
			}
		}
		// Passkeys, sessions, recovery codes and sources go with the
		// account (ON DELETE CASCADE).
		err := mustAffect(tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, userID))
		if errors.Is(err, errNoRows) {
			return passkey.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("erase user: %w", err)
		}
		return d.appendAudit(ctx, tx, ev)
	})
	if err != nil && !errors.Is(err, passkey.ErrNotFound) {
		return err
	}
	if ferr := d.sealer.Forget(ctx, userID); ferr != nil {
		return fmt.Errorf("delete the data key: %w", ferr)
	}
	return err
}

// AuditOrigin opens the address a stored audit event came from: "" when
// it has none, or the person who acted was erased.
func (d *DB) AuditOrigin(ctx context.Context, r audit.Record) (string, error) {
	return sealed.OpenOrigin(ctx, d.sealer, r)
}
