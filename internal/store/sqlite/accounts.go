package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

var (
	_ passkey.Store = (*DB)(nil)
	_ audit.Reader  = (*DB)(nil)
)

const userColumns = `id, handle, username_sealed, display_name_sealed, role, created_at, disabled_at, roles`

func (d *DB) scanUser(ctx context.Context, r rowScanner) (*passkey.User, error) {
	var row userRow
	if err := r.Scan(row.dest()...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, passkey.ErrNotFound
		}
		return nil, err
	}
	return d.openUser(ctx, &row)
}

// userRow receives the userColumns of one row.
type userRow struct {
	u                     passkey.User
	role, roles           string
	created               int64
	disabled              sql.NullInt64
	username, displayName []byte
}

func (r *userRow) dest() []any {
	return []any{&r.u.ID, &r.u.Handle, &r.username, &r.displayName, &r.role, &r.created, &r.disabled, &r.roles}
}

// openUser opens the sealed fields of a scanned row and returns its user.
func (d *DB) openUser(ctx context.Context, r *userRow) (*passkey.User, error) {
	u := &r.u
	if err := sealed.OpenUser(ctx, d.sealer, u, r.username, r.displayName); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(r.roles), &u.Roles); err != nil {
		return nil, fmt.Errorf("user %s roles: %w", u.ID, err)
	}
	u.Role, u.CreatedAt = passkey.Role(r.role), time.Unix(0, r.created).UTC()
	if r.disabled.Valid {
		u.DisabledAt = time.Unix(0, r.disabled.Int64).UTC()
	}
	return u, nil
}

func (d *DB) insertCredential(ctx context.Context, tx *sql.Tx, c *passkey.Credential) error {
	tr, err := json.Marshal(c.Transports)
	if err != nil {
		return err
	}
	if c.Transports == nil {
		tr = []byte("[]")
	}
	name, err := sealed.SealCredentialName(ctx, d.sealer, c)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO credentials (id, user_id, name, name_sealed, public_key, attestation_type, attestation_format,
		aaguid, sign_count, clone_warning, flags, transports, attachment, created_at) VALUES (?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.UserID, name, c.PublicKey, c.AttestationType, c.AttestationFormat, nonNil(c.AAGUID), int64(c.SignCount),
		boolInt(c.CloneWarning), int64(c.Flags), string(tr), c.Attachment, c.CreatedAt.UnixNano())
	if isUnique(err) {
		// A credential ID registered twice (to anyone) is refused (WebAuthn L3 §7.1 step 26).
		return passkey.ErrCeremony
	}
	return err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CreateUser implements passkey.Store. The person's data key is made
// first, in the key store; if the account is not made, it is deleted again.
func (d *DB) CreateUser(ctx context.Context, u *passkey.User, c *passkey.Credential, inv *passkey.InviteUse, evs []audit.Event) error {
	if d.sealer == nil {
		return sealed.ErrNoSealer
	}
	if err := d.sealer.NewUserKey(ctx, u.ID); err != nil {
		return err
	}
	err := d.createUser(ctx, u, c, inv, evs)
	if err != nil {
		_ = d.sealer.Forget(context.WithoutCancel(ctx), u.ID)
	}
	return err
}

func (d *DB) createUser(ctx context.Context, u *passkey.User, c *passkey.Credential, inv *passkey.InviteUse, evs []audit.Event) error {
	su, err := sealed.SealUser(ctx, d.sealer, u)
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if inv != nil {
			if err := spendInvite(ctx, tx, inv); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, handle, username, display_name, username_sealed, display_name_sealed, role, created_at)
			VALUES (?, ?, ?, '', ?, ?, ?, ?)`,
			u.ID, u.Handle, su.UsernameKey, su.Username, su.DisplayName, string(u.Role), u.CreatedAt.UnixNano())
		if err != nil {
			if isUnique(err) {
				return passkey.ErrUsernameTaken
			}
			return fmt.Errorf("insert user: %w", err)
		}
		if err := d.insertCredential(ctx, tx, c); err != nil {
			return err
		}
		for _, ev := range evs {
			if err := d.appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// spendInvite spends the link of a sign-up on the service's conditions.
func spendInvite(ctx context.Context, tx *sql.Tx, inv *passkey.InviteUse) error {
	if inv.UnlessRoleExists != "" {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE role = ?`, string(inv.UnlessRoleExists)).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return passkey.ErrSignUpClosed
		}
	}
	if inv.CloseKind {
		// Every unspent link of the kind, this one included, in one
		// statement; the transaction rolls it back if this link is not
		// among them.
		if _, err := tx.ExecContext(ctx, `UPDATE invites SET used_at = ? WHERE kind = ? AND used_at IS NULL AND hash <> ?`,
			inv.Now.UnixNano(), inv.Kind, inv.Hash); err != nil {
			return err
		}
	}
	err := mustAffect(tx.ExecContext(ctx, `UPDATE invites SET used_at = ?
		WHERE hash = ? AND kind = ? AND role = ? AND used_at IS NULL AND expires_at > ?`,
		inv.Now.UnixNano(), inv.Hash, inv.Kind, string(inv.Role), inv.Now.UnixNano()))
	if errors.Is(err, errNoRows) {
		return passkey.ErrSignUpClosed
	}
	return err
}

// SetUserRoles implements passkey.Store.
func (d *DB) SetUserRoles(ctx context.Context, userID string, roles []string, ev audit.Event) error {
	if roles == nil {
		roles = []string{}
	}
	b, err := json.Marshal(roles)
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		err := mustAffect(tx.ExecContext(ctx, `UPDATE users SET roles = ? WHERE id = ?`, string(b), userID))
		if errors.Is(err, errNoRows) {
			return passkey.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("set roles: %w", err)
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// AddCredential implements passkey.Store.
func (d *DB) AddCredential(ctx context.Context, c *passkey.Credential, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if err := d.insertCredential(ctx, tx, c); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// UserByID implements passkey.Store.
func (d *DB) UserByID(ctx context.Context, id string) (*passkey.User, error) {
	return d.scanUser(ctx, d.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
}

// UserByHandle implements passkey.Store.
func (d *DB) UserByHandle(ctx context.Context, handle []byte) (*passkey.User, error) {
	return d.scanUser(ctx, d.sql.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE handle = ?`, handle))
}

// UserByUsername implements passkey.Store.
func (d *DB) UserByUsername(ctx context.Context, username string) (*passkey.User, error) {
	key, err := sealed.UsernameKey(d.sealer, username)
	if err != nil {
		return nil, err
	}
	return d.scanUser(ctx, d.sql.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, key))
}

// ListUsers implements passkey.Store.
func (d *DB) ListUsers(ctx context.Context) ([]*passkey.User, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []*passkey.User
	for rows.Next() {
		u, err := d.scanUser(ctx, rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CountAdmins implements passkey.Store.
func (d *DB) CountAdmins(ctx context.Context) (int, error) {
	var n int
	err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL`).Scan(&n)
	return n, err
}

// Credentials implements passkey.Store.
func (d *DB) Credentials(ctx context.Context, userID string) ([]*passkey.Credential, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT id, user_id, name_sealed, public_key, attestation_type, attestation_format, aaguid,
		sign_count, clone_warning, flags, transports, attachment, created_at, last_used_at FROM credentials WHERE user_id = ? ORDER BY created_at`, userID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []*passkey.Credential
	for rows.Next() {
		var c passkey.Credential
		var count, flags, created int64
		var clone int
		var tr string
		var lastUsed sql.NullInt64
		var name []byte
		if err := rows.Scan(&c.ID, &c.UserID, &name, &c.PublicKey, &c.AttestationType, &c.AttestationFormat, &c.AAGUID,
			&count, &clone, &flags, &tr, &c.Attachment, &created, &lastUsed); err != nil {
			return nil, err
		}
		c.SignCount, c.CloneWarning, c.Flags = uint32(count), clone == 1, byte(flags) //nolint:gosec // G115: stored from uint32 and byte
		c.CreatedAt = time.Unix(0, created).UTC()
		if lastUsed.Valid {
			c.LastUsedAt = time.Unix(0, lastUsed.Int64).UTC()
		}
		if err := json.Unmarshal([]byte(tr), &c.Transports); err != nil {
			return nil, err
		}
		if err := sealed.OpenCredentialName(ctx, d.sealer, &c, name); err != nil {
			return nil, err
		}
		out = append(out, &c)
	}
	return out, rows.Err()
}

// CredentialUsed implements passkey.Store.
func (d *DB) CredentialUsed(ctx context.Context, c *passkey.Credential, evs []audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		var lastUsed any
		if !c.LastUsedAt.IsZero() {
			lastUsed = c.LastUsedAt.UnixNano()
		}
		err := mustAffect(tx.ExecContext(ctx, `UPDATE credentials SET sign_count = ?, flags = ?, clone_warning = ?,
			last_used_at = COALESCE(?, last_used_at) WHERE id = ?`, int64(c.SignCount), int64(c.Flags), boolInt(c.CloneWarning), lastUsed, c.ID))
		if errors.Is(err, errNoRows) {
			return passkey.ErrNotFound
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := d.appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// RenameCredential implements passkey.Store.
func (d *DB) RenameCredential(ctx context.Context, userID string, id []byte, name string, ev audit.Event) error {
	sealedName, err := sealed.SealCredentialName(ctx, d.sealer, &passkey.Credential{ID: id, UserID: userID, Name: name})
	if errors.Is(err, crypt.ErrNoKey) {
		return passkey.ErrNotFound // no such person
	}
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		err := mustAffect(tx.ExecContext(ctx, `UPDATE credentials SET name_sealed = ? WHERE id = ? AND user_id = ?`, sealedName, id, userID))
		if errors.Is(err, errNoRows) {
			return passkey.ErrNotFound
		}
		if err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// RemoveCredential implements passkey.Store.
func (d *DB) RemoveCredential(ctx context.Context, userID string, id []byte, allow func(passkey.Remaining) error, ev audit.Event) (int, error) {
	var ended int
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		// The transaction took the write lock at BEGIN: the counts hold
		// until it commits.
		var owned int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM credentials WHERE id = ? AND user_id = ?`, id, userID).Scan(&owned); err != nil {
			return err
		}
		if owned == 0 {
			return passkey.ErrNotFound
		}
		var left passkey.Remaining
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) - 1 FROM credentials WHERE user_id = ?`, userID).Scan(&left.Passkeys); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL`, userID).Scan(&left.RecoveryCodes); err != nil {
			return err
		}
		if err := allow(left); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE credential_id = ?`, id)
		if err != nil {
			return fmt.Errorf("end the passkey's sessions: %w", err)
		}
		n, _ := res.RowsAffected()
		ended = int(n)
		if _, err := tx.ExecContext(ctx, `DELETE FROM credentials WHERE id = ? AND user_id = ?`, id, userID); err != nil {
			return err
		}
		if ev.Detail == nil {
			ev.Detail = map[string]string{}
		}
		ev.Detail["sessions_ended"] = fmt.Sprint(ended)
		return d.appendAudit(ctx, tx, ev)
	})
	return ended, err
}

// PutChallenge implements passkey.Store. Expired challenges are swept on the way.
func (d *DB) PutChallenge(ctx context.Context, c *passkey.Challenge) error {
	data, err := sealed.SealChallenge(d.sealer, c)
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM webauthn_challenges WHERE expires_at < ?`, time.Now().UnixNano()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO webauthn_challenges (id, kind, user_id, data, expires_at) VALUES (?, ?, ?, ?, ?)`,
			c.ID, c.Kind, c.UserID, data, c.ExpiresAt.UnixNano())
		return err
	})
}

// TakeChallenge implements passkey.Store: one DELETE … RETURNING, so two
// concurrent finishes cannot both get the row.
func (d *DB) TakeChallenge(ctx context.Context, id string) (*passkey.Challenge, error) {
	var c passkey.Challenge
	var exp int64
	var data []byte
	err := d.sql.QueryRowContext(ctx, `DELETE FROM webauthn_challenges WHERE id = ? RETURNING id, kind, user_id, data, expires_at`, id).
		Scan(&c.ID, &c.Kind, &c.UserID, &data, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, passkey.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	c.ExpiresAt = time.Unix(0, exp).UTC()
	if err := sealed.OpenChallenge(d.sealer, &c, data); err != nil {
		return nil, err
	}
	return &c, nil
}

// ReplaceRecoveryCodes implements passkey.Store.
func (d *DB) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = ?`, userID); err != nil {
			return err
		}
		for _, h := range hashes {
			if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_codes (hash, user_id) VALUES (?, ?)`, h, userID); err != nil {
				return err
			}
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// UseRecoveryCode implements passkey.Store.
func (d *DB) UseRecoveryCode(ctx context.Context, userID string, hash []byte, at time.Time, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		err := mustAffect(tx.ExecContext(ctx, `UPDATE recovery_codes SET used_at = ? WHERE hash = ? AND user_id = ? AND used_at IS NULL`,
			at.UnixNano(), hash, userID))
		if errors.Is(err, errNoRows) {
			return passkey.ErrNotFound
		}
		if err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// UnusedRecoveryCodes implements passkey.Store.
func (d *DB) UnusedRecoveryCodes(ctx context.Context, userID string) (int, error) {
	var n int
	err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL`, userID).Scan(&n)
	return n, err
}

// CreateInvite implements passkey.Store.
func (d *DB) CreateInvite(ctx context.Context, hash []byte, inv *passkey.Invite, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO invites (hash, kind, user_id, role, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			hash, inv.Kind, inv.UserID, string(inv.Role), inv.CreatedBy, inv.CreatedAt.UnixNano(), inv.ExpiresAt.UnixNano()); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

func scanInvite(r rowScanner) (*passkey.Invite, error) {
	var inv passkey.Invite
	var role string
	var created, exp int64
	if err := r.Scan(&inv.Kind, &inv.UserID, &role, &inv.CreatedBy, &created, &exp); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, passkey.ErrNotFound
		}
		return nil, err
	}
	inv.Role, inv.CreatedAt, inv.ExpiresAt = passkey.Role(role), time.Unix(0, created).UTC(), time.Unix(0, exp).UTC()
	return &inv, nil
}

// TakeInvite implements passkey.Store.
func (d *DB) TakeInvite(ctx context.Context, hash []byte, kind string, now time.Time) (*passkey.Invite, error) {
	return scanInvite(d.sql.QueryRowContext(ctx, `UPDATE invites SET used_at = ? WHERE hash = ? AND kind = ? AND used_at IS NULL AND expires_at > ?
		RETURNING kind, user_id, role, created_by, created_at, expires_at`, now.UnixNano(), hash, kind, now.UnixNano()))
}

// PeekInvite implements passkey.Store.
func (d *DB) PeekInvite(ctx context.Context, hash []byte, kind string, now time.Time) (*passkey.Invite, error) {
	return scanInvite(d.sql.QueryRowContext(ctx, `SELECT kind, user_id, role, created_by, created_at, expires_at FROM invites
		WHERE hash = ? AND kind = ? AND used_at IS NULL AND expires_at > ?`, hash, kind, now.UnixNano()))
}

var _ passkey.SourceStore = (*DB)(nil)

// RememberSource implements passkey.SourceStore.
func (d *DB) RememberSource(ctx context.Context, userID string, hash []byte, at time.Time, keep int) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_sources (user_id, source_hash, last_seen_at) VALUES (?, ?, ?)
			ON CONFLICT (user_id, source_hash) DO UPDATE SET last_seen_at = MAX(last_seen_at, excluded.last_seen_at)`,
			userID, hash, at.UnixNano()); err != nil {
			return fmt.Errorf("remember source: %w", err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM user_sources WHERE user_id = ? AND source_hash NOT IN (
			SELECT source_hash FROM user_sources WHERE user_id = ? ORDER BY last_seen_at DESC LIMIT ?)`, userID, userID, keep)
		if err != nil {
			return fmt.Errorf("prune sources: %w", err)
		}
		return nil
	})
}

// KnownSource implements passkey.SourceStore.
func (d *DB) KnownSource(ctx context.Context, userID string, hash []byte, since time.Time) (bool, error) {
	var n int
	err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_sources WHERE user_id = ? AND source_hash = ? AND last_seen_at >= ?`,
		userID, hash, since.UnixNano()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("known source: %w", err)
	}
	return n > 0, nil
}
