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

// UseSealer gives the store the data keys that seal personal fields (see
// sealed.Use).
func (d *DB) UseSealer(ctx context.Context, s *crypt.Sealer) error {
	d.sealer = s
	return sealed.Use(ctx, s, legacy{d})
}

// legacy is the SQL of sealed.Use.
type legacy struct{ d *DB }

func (l legacy) SealedUsers(ctx context.Context) (int, error) {
	var n int
	err := l.d.pool.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE username_sealed IS NOT NULL`).Scan(&n)
	return n, err
}

// KEKMark implements sealed.Legacy.
func (l legacy) KEKMark(ctx context.Context, id string, replace bool) (string, error) {
	return l.d.KEKMark(ctx, id, replace)
}

// KEKMark records id as the KEK the data keys are wrapped under (see
// sealed.Legacy) and returns the one recorded.
func (d *DB) KEKMark(ctx context.Context, id string, replace bool) (string, error) {
	q := `INSERT INTO meta (key, value) VALUES ('kek', $1) ON CONFLICT (key) DO NOTHING`
	if replace {
		q = `INSERT INTO meta (key, value) VALUES ('kek', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	}
	if _, err := d.pool.Exec(ctx, q, id); err != nil {
		return "", fmt.Errorf("record the KEK: %w", err)
	}
	var v string
	err := d.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'kek'`).Scan(&v)
	return v, err
}

func (l legacy) ClearUsers(ctx context.Context) ([]passkey.User, error) {
	rows, err := l.d.pool.Query(ctx, `SELECT id, username, display_name FROM users WHERE username_sealed IS NULL`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (passkey.User, error) {
		var u passkey.User
		return u, r.Scan(&u.ID, &u.Username, &u.DisplayName)
	})
}

func (l legacy) ClearCredentials(ctx context.Context) ([]passkey.Credential, error) {
	rows, err := l.d.pool.Query(ctx, `SELECT id, user_id, name FROM credentials WHERE name_sealed IS NULL`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (passkey.Credential, error) {
		var c passkey.Credential
		return c, r.Scan(&c.ID, &c.UserID, &c.Name)
	})
}

func (l legacy) ClearSessions(ctx context.Context) ([]session.Session, error) {
	rows, err := l.d.pool.Query(ctx, `SELECT id, user_id, ip, user_agent FROM sessions WHERE device_sealed IS NULL`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (session.Session, error) {
		var s session.Session
		return s, r.Scan(&s.ID, &s.UserID, &s.IP, &s.UserAgent)
	})
}

func (l legacy) SealUserRow(ctx context.Context, id string, u sealed.User) error {
	_, err := l.d.pool.Exec(ctx, `UPDATE users SET username = $1, display_name = '', username_sealed = $2, display_name_sealed = $3
		WHERE id = $4 AND username_sealed IS NULL`, u.UsernameKey, u.Username, u.DisplayName, id)
	return err
}

func (l legacy) SealCredentialRow(ctx context.Context, id, name []byte) error {
	_, err := l.d.pool.Exec(ctx, `UPDATE credentials SET name = '', name_sealed = $1 WHERE id = $2 AND name_sealed IS NULL`, name, id)
	return err
}

func (l legacy) SealSessionRow(ctx context.Context, id string, device []byte) error {
	_, err := l.d.pool.Exec(ctx, `UPDATE sessions SET ip = '', user_agent = '', device_sealed = $1 WHERE id = $2 AND device_sealed IS NULL`, device, id)
	return err
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
