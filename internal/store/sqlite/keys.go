package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keywayhq/keyway/internal/crypt"
)

// Keys is a key store (crypt.KeyStore) in a SQLite file of its own.
type Keys struct{ d *DB }

var _ crypt.KeyStore = (*Keys)(nil)

// OpenKeys opens (creating if needed) the key store at path.
func OpenKeys(ctx context.Context, path string) (*Keys, error) {
	d, err := open(ctx, path, "keys")
	if err != nil {
		return nil, err
	}
	return &Keys{d: d}, nil
}

// SQL returns the underlying handle, for Copy and tests.
func (k *Keys) SQL() *sql.DB { return k.d.sql }

// Close closes the key store.
func (k *Keys) Close() error { return k.d.Close() }

// PutDataKey implements crypt.KeyStore.
func (k *Keys) PutDataKey(ctx context.Context, w crypt.WrappedKey) error {
	_, err := k.d.sql.ExecContext(ctx, `INSERT INTO data_keys (user_id, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?)`,
		w.UserID, w.KEKID, w.Wrapped, w.CreatedAt.UnixNano())
	return err
}

// DataKey implements crypt.KeyStore.
func (k *Keys) DataKey(ctx context.Context, userID string) (crypt.WrappedKey, error) {
	w := crypt.WrappedKey{UserID: userID}
	var created int64
	err := k.d.sql.QueryRowContext(ctx, `SELECT kek_id, wrapped, created_at FROM data_keys WHERE user_id = ?`, userID).
		Scan(&w.KEKID, &w.Wrapped, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return w, crypt.ErrNoKey
	}
	if err != nil {
		return w, fmt.Errorf("read data key: %w", err)
	}
	w.CreatedAt = time.Unix(0, created).UTC()
	return w, nil
}

// DeleteDataKey implements crypt.KeyStore.
func (k *Keys) DeleteDataKey(ctx context.Context, userID string) error {
	_, err := k.d.sql.ExecContext(ctx, `DELETE FROM data_keys WHERE user_id = ?`, userID)
	return err
}

// DataKeys implements crypt.KeyStore.
func (k *Keys) DataKeys(ctx context.Context, after string, limit int) ([]crypt.WrappedKey, error) {
	rows, err := k.d.sql.QueryContext(ctx, `SELECT user_id, kek_id, wrapped, created_at FROM data_keys
		WHERE user_id > ? ORDER BY user_id LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []crypt.WrappedKey
	for rows.Next() {
		var w crypt.WrappedKey
		var created int64
		if err := rows.Scan(&w.UserID, &w.KEKID, &w.Wrapped, &created); err != nil {
			return nil, err
		}
		w.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, w)
	}
	return out, rows.Err()
}

// SwapDataKey implements crypt.KeyStore.
func (k *Keys) SwapDataKey(ctx context.Context, old, next crypt.WrappedKey) (bool, error) {
	if old.UserID != next.UserID || bytes.Equal(old.Wrapped, next.Wrapped) {
		return false, errors.New("swap data key: not a rewrap of one person's key")
	}
	res, err := k.d.sql.ExecContext(ctx, `UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE user_id = ? AND kek_id = ? AND wrapped = ?`,
		next.KEKID, next.Wrapped, old.UserID, old.KEKID, old.Wrapped)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
