package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

var _ crypt.KeyStore = (*DB)(nil)

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
	if err := d.pool.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE username_sealed IS NOT NULL`).Scan(&sealedUsers); err != nil {
		return err
	}
	if sealedUsers > 0 && !haveKeys {
		return fmt.Errorf("the store holds %d people but the key store has none of their data keys: restore the key store from its backup; without it their personal data cannot be read", sealedUsers)
	}
	if err := d.sealLegacy(ctx); err != nil {
		return fmt.Errorf("seal the personal data of older rows: %w", err)
	}
	return nil
}

func (d *DB) sealLegacy(ctx context.Context) error {
	rows, err := d.pool.Query(ctx, `SELECT id, username, display_name FROM users WHERE username_sealed IS NULL`)
	if err != nil {
		return err
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (passkey.User, error) {
		var u passkey.User
		return u, r.Scan(&u.ID, &u.Username, &u.DisplayName)
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := d.sealer.EnsureUserKey(ctx, u.ID); err != nil {
			return err
		}
		su, err := sealed.SealUser(ctx, d.sealer, &u)
		if err != nil {
			return err
		}
		if _, err := d.pool.Exec(ctx, `UPDATE users SET username = $1, display_name = '', username_sealed = $2, display_name_sealed = $3
			WHERE id = $4 AND username_sealed IS NULL`, su.UsernameKey, su.Username, su.DisplayName, u.ID); err != nil {
			return err
		}
	}
	rows, err = d.pool.Query(ctx, `SELECT id, user_id, name FROM credentials WHERE name_sealed IS NULL`)
	if err != nil {
		return err
	}
	creds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (passkey.Credential, error) {
		var c passkey.Credential
		return c, r.Scan(&c.ID, &c.UserID, &c.Name)
	})
	if err != nil {
		return err
	}
	for _, c := range creds {
		name, err := sealed.SealCredentialName(ctx, d.sealer, &c)
		if err != nil {
			return err
		}
		if _, err := d.pool.Exec(ctx, `UPDATE credentials SET name = '', name_sealed = $1 WHERE id = $2 AND name_sealed IS NULL`, name, c.ID); err != nil {
			return err
		}
	}
	rows, err = d.pool.Query(ctx, `SELECT id, user_id, ip, user_agent FROM sessions WHERE device_sealed IS NULL`)
	if err != nil {
		return err
	}
	sessions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (session.Session, error) {
		var s session.Session
		return s, r.Scan(&s.ID, &s.UserID, &s.IP, &s.UserAgent)
	})
	if err != nil {
		return err
	}
	for _, s := range sessions {
		device, err := sealed.SealDevice(ctx, d.sealer, &s)
		if err != nil {
			return err
		}
		if _, err := d.pool.Exec(ctx, `UPDATE sessions SET ip = '', user_agent = '', device_sealed = $1 WHERE id = $2 AND device_sealed IS NULL`,
			device, s.ID); err != nil {
			return err
		}
	}
	return nil
}

// PutDataKey implements crypt.KeyStore.
func (d *DB) PutDataKey(ctx context.Context, w crypt.WrappedKey) error {
	_, err := d.pool.Exec(ctx, `INSERT INTO data_keys (user_id, kek_id, wrapped, created_at) VALUES ($1, $2, $3, $4)`,
		w.UserID, w.KEKID, w.Wrapped, w.CreatedAt.UnixNano())
	return err
}

// DataKey implements crypt.KeyStore.
func (d *DB) DataKey(ctx context.Context, userID string) (crypt.WrappedKey, error) {
	w := crypt.WrappedKey{UserID: userID}
	var created int64
	err := d.pool.QueryRow(ctx, `SELECT kek_id, wrapped, created_at FROM data_keys WHERE user_id = $1`, userID).
		Scan(&w.KEKID, &w.Wrapped, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, crypt.ErrNoKey
	}
	if err != nil {
		return w, fmt.Errorf("read data key: %w", err)
	}
	w.CreatedAt = time.Unix(0, created).UTC()
	return w, nil
}

// DeleteDataKey implements crypt.KeyStore.
func (d *DB) DeleteDataKey(ctx context.Context, userID string) error {
	_, err := d.pool.Exec(ctx, `DELETE FROM data_keys WHERE user_id = $1`, userID)
	return err
}

// DataKeys implements crypt.KeyStore.
func (d *DB) DataKeys(ctx context.Context, after string, limit int) ([]crypt.WrappedKey, error) {
	rows, err := d.pool.Query(ctx, `SELECT user_id, kek_id, wrapped, created_at FROM data_keys
		WHERE user_id > $1 ORDER BY user_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (crypt.WrappedKey, error) {
		var w crypt.WrappedKey
		var created int64
		err := r.Scan(&w.UserID, &w.KEKID, &w.Wrapped, &created)
		w.CreatedAt = time.Unix(0, created).UTC()
		return w, err
	})
}

// SwapDataKey implements crypt.KeyStore.
func (d *DB) SwapDataKey(ctx context.Context, old, next crypt.WrappedKey) (bool, error) {
	if old.UserID != next.UserID || bytes.Equal(old.Wrapped, next.Wrapped) {
		return false, errors.New("swap data key: not a rewrap of one person's key")
	}
	tag, err := d.pool.Exec(ctx, `UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE user_id = $3 AND kek_id = $4 AND wrapped = $5`,
		next.KEKID, next.Wrapped, old.UserID, old.KEKID, old.Wrapped)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// EraseUser implements passkey.AccountStore.
func (d *DB) EraseUser(ctx context.Context, userID string, ev audit.Event) error {
	if d.sealer == nil {
		return sealed.ErrNoSealer
	}
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		for _, q := range []string{
			`DELETE FROM invites WHERE user_id = $1 AND used_at IS NULL`,
			`DELETE FROM webauthn_challenges WHERE user_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, userID); err != nil {
				return err
			}
		}
		// Passkeys, sessions, recovery codes and sources go with the
		// account (ON DELETE CASCADE).
		tag, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, userID)
		if err != nil {
			return fmt.Errorf("erase user: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return passkey.ErrNotFound
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
