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
	err := l.d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE username_sealed IS NOT NULL`).Scan(&n)
	return n, err
}

// KEKMark implements sealed.Legacy.
func (l legacy) KEKMark(ctx context.Context, id string, replace bool) (string, error) {
	return l.d.KEKMark(ctx, id, replace)
}

// KEKMark records id as the KEK the data keys are wrapped under (see
// sealed.Legacy) and returns the one recorded.
func (d *DB) KEKMark(ctx context.Context, id string, replace bool) (string, error) {
	q := `INSERT INTO meta (key, value) VALUES ('kek', ?) ON CONFLICT (key) DO NOTHING`
	if replace {
		q = `INSERT INTO meta (key, value) VALUES ('kek', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	}
	if _, err := d.sql.ExecContext(ctx, q, id); err != nil {
		return "", fmt.Errorf("record the KEK: %w", err)
	}
	var v string
	err := d.sql.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'kek'`).Scan(&v)
	return v, err
}

func (l legacy) ClearUsers(ctx context.Context) ([]passkey.User, error) {
	var out []passkey.User
	return out, queryEach(ctx, l.d.sql, `SELECT id, username, display_name FROM users WHERE username_sealed IS NULL`, func(r *sql.Rows) error {
		var u passkey.User
		err := r.Scan(&u.ID, &u.Username, &u.DisplayName)
		out = append(out, u)
		return err
	})
}

func (l legacy) ClearCredentials(ctx context.Context) ([]passkey.Credential, error) {
	var out []passkey.Credential
	return out, queryEach(ctx, l.d.sql, `SELECT id, user_id, name FROM credentials WHERE name_sealed IS NULL`, func(r *sql.Rows) error {
		var c passkey.Credential
		err := r.Scan(&c.ID, &c.UserID, &c.Name)
		out = append(out, c)
		return err
	})
}

func (l legacy) ClearSessions(ctx context.Context) ([]session.Session, error) {
	var out []session.Session
	return out, queryEach(ctx, l.d.sql, `SELECT id, user_id, ip, user_agent FROM sessions WHERE device_sealed IS NULL`, func(r *sql.Rows) error {
		var s session.Session
		err := r.Scan(&s.ID, &s.UserID, &s.IP, &s.UserAgent)
		out = append(out, s)
		return err
	})
}

func (l legacy) SealUserRow(ctx context.Context, id string, u sealed.User) error {
	_, err := l.d.sql.ExecContext(ctx, `UPDATE users SET username = ?, display_name = '', username_sealed = ?, display_name_sealed = ?
		WHERE id = ? AND username_sealed IS NULL`, u.UsernameKey, u.Username, u.DisplayName, id)
	return err
}

func (l legacy) SealCredentialRow(ctx context.Context, id, name []byte) error {
	_, err := l.d.sql.ExecContext(ctx, `UPDATE credentials SET name = '', name_sealed = ? WHERE id = ? AND name_sealed IS NULL`, name, id)
	return err
}

func (l legacy) SealSessionRow(ctx context.Context, id string, device []byte) error {
	_, err := l.d.sql.ExecContext(ctx, `UPDATE sessions SET ip = '', user_agent = '', device_sealed = ? WHERE id = ? AND device_sealed IS NULL`, device, id)
	return err
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
