package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

var (
	_ passkey.Store       = (*DB)(nil)
	_ passkey.SourceStore = (*DB)(nil)
)

const userColumns = `id, handle, username_sealed, display_name_sealed, role, created_at, disabled_at, roles`

func (d *DB) scanUser(ctx context.Context, r pgx.Row) (*passkey.User, error) {
	var row userRow
	if err := r.Scan(row.dest()...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, passkey.ErrNotFound
		}
		return nil, err
	}
	return d.openUser(ctx, &row)
}

// userRow receives the userColumns of one row.
type userRow struct {
	u                     passkey.User
	role                  string
	created               int64
	disabled              *int64
	username, displayName []byte
}

func (r *userRow) dest() []any {
	return []any{&r.u.ID, &r.u.Handle, &r.username, &r.displayName, &r.role, &r.created, &r.disabled, &r.u.Roles}
}

// openUser opens the sealed fields of a scanned row and returns its user.
func (d *DB) openUser(ctx context.Context, r *userRow) (*passkey.User, error) {
	u := &r.u
	if err := sealed.OpenUser(ctx, d.sealer, u, r.username, r.displayName); err != nil {
		return nil, err
	}
	u.Role, u.CreatedAt, u.DisabledAt = passkey.Role(r.role), time.Unix(0, r.created).UTC(), unixTime(r.disabled)
	return u, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (d *DB) insertCredential(ctx context.Context, tx pgx.Tx, c *passkey.Credential) error {
	name, err := sealed.SealCredentialName(ctx, d.sealer, c)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO credentials (id, user_id, name, name_sealed, public_key, attestation_type, attestation_format,
		aaguid, sign_count, clone_warning, flags, transports, attachment, created_at) VALUES ($1, $2, '', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		c.ID, c.UserID, name, c.PublicKey, c.AttestationType, c.AttestationFormat, nonNil(c.AAGUID), int64(c.SignCount),
		c.CloneWarning, int16(c.Flags), nonNilStrings(c.Transports), c.Attachment, c.CreatedAt.UnixNano())
	if isUnique(err) {
		// A credential ID registered twice (to anyone) is refused (WebAuthn L3 §7.1 step 26).
		return passkey.ErrCeremony
	}
	return err
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
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if inv != nil {
			if err := spendInvite(ctx, tx, inv); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, handle, username, display_name, username_sealed, display_name_sealed, role, created_at)
			VALUES ($1, $2, $3, '', $4, $5, $6, $7)`,
			u.ID, u.Handle, su.UsernameKey, su.Username, su.DisplayName, string(u.Role), u.CreatedAt.UnixNano()); err != nil {
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
// Sign-ups with conditions queue on a lock of their own, so the count they
// check stays true until they commit.
func spendInvite(ctx context.Context, tx pgx.Tx, inv *passkey.InviteUse) error {
	if inv.CloseKind || inv.UnlessRoleExists != "" {
		if err := lock(ctx, tx, lockSignUp); err != nil {
			return err
		}
	}
	if inv.UnlessRoleExists != "" {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE role = $1)`, string(inv.UnlessRoleExists)).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return passkey.ErrSignUpClosed
		}
	}
	if inv.CloseKind {
		if _, err := tx.Exec(ctx, `UPDATE invites SET used_at = $1 WHERE kind = $2 AND used_at IS NULL AND hash <> $3`,
			inv.Now.UnixNano(), inv.Kind, inv.Hash); err != nil {
			return err
		}
	}
	tag, err := tx.Exec(ctx, `UPDATE invites SET used_at = $1
		WHERE hash = $2 AND kind = $3 AND role = $4 AND used_at IS NULL AND expires_at > $1`,
		inv.Now.UnixNano(), inv.Hash, inv.Kind, string(inv.Role))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return passkey.ErrSignUpClosed
	}
	return nil
}

// SetUserRoles implements passkey.Store.
func (d *DB) SetUserRoles(ctx context.Context, userID string, roles []string, ev audit.Event) error {
	if roles == nil {
		roles = []string{}
	}
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET roles = $1 WHERE id = $2`, roles, userID)
		if err != nil {
			return fmt.Errorf("set roles: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return passkey.ErrNotFound
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// AddCredential implements passkey.Store.
func (d *DB) AddCredential(ctx context.Context, c *passkey.Credential, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if err := d.insertCredential(ctx, tx, c); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// UserByID implements passkey.Store.
func (d *DB) UserByID(ctx context.Context, id string) (*passkey.User, error) {
	return d.scanUser(ctx, d.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
}

// UserByHandle implements passkey.Store.
func (d *DB) UserByHandle(ctx context.Context, handle []byte) (*passkey.User, error) {
	return d.scanUser(ctx, d.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE handle = $1`, handle))
}

// UserByUsername implements passkey.Store.
func (d *DB) UserByUsername(ctx context.Context, username string) (*passkey.User, error) {
	key, err := sealed.UsernameKey(d.sealer, username)
	if err != nil {
		return nil, err
	}
	return d.scanUser(ctx, d.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1`, key))
}

// ListUsers implements passkey.Store.
func (d *DB) ListUsers(ctx context.Context) ([]*passkey.User, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+userColumns+` FROM users ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
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
	err := d.pool.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL`).Scan(&n)
	return n, err
}

// Credentials implements passkey.Store.
func (d *DB) Credentials(ctx context.Context, userID string) ([]*passkey.Credential, error) {
	rows, err := d.pool.Query(ctx, `SELECT id, user_id, name_sealed, public_key, attestation_type, attestation_format, aaguid,
		sign_count, clone_warning, flags, transports, attachment, created_at, last_used_at FROM credentials WHERE user_id = $1 ORDER BY created_at`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*passkey.Credential
	for rows.Next() {
		var c passkey.Credential
		var count, created int64
		var flags int16
		var lastUsed *int64
		var name []byte
		if err := rows.Scan(&c.ID, &c.UserID, &name, &c.PublicKey, &c.AttestationType, &c.AttestationFormat, &c.AAGUID,
			&count, &c.CloneWarning, &flags, &c.Transports, &c.Attachment, &created, &lastUsed); err != nil {
			return nil, err
		}
		c.SignCount, c.Flags = uint32(count), byte(flags) //nolint:gosec // G115: stored from uint32 and byte
		c.CreatedAt, c.LastUsedAt = time.Unix(0, created).UTC(), unixTime(lastUsed)
		if err := sealed.OpenCredentialName(ctx, d.sealer, &c, name); err != nil {
			return nil, err
		}
		out = append(out, &c)
	}
	return out, rows.Err()
}

// CredentialUsed implements passkey.Store.
func (d *DB) CredentialUsed(ctx context.Context, c *passkey.Credential, evs []audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		var lastUsed *int64
		if !c.LastUsedAt.IsZero() {
			ns := c.LastUsedAt.UnixNano()
			lastUsed = &ns
		}
		tag, err := tx.Exec(ctx, `UPDATE credentials SET sign_count = $1, flags = $2, clone_warning = $3,
			last_used_at = COALESCE($4, last_used_at) WHERE id = $5`, int64(c.SignCount), int16(c.Flags), c.CloneWarning, lastUsed, c.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return passkey.ErrNotFound
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
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE credentials SET name_sealed = $1 WHERE id = $2 AND user_id = $3`, sealedName, id, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return passkey.ErrNotFound
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// lockUser holds the user's row until the transaction ends: the changes
// that count what a user has left (removing a passkey, spending a recovery
// code) queue on it.
func lockUser(ctx context.Context, tx pgx.Tx, userID string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return passkey.ErrNotFound
	}
	return err
}

// RemoveCredential implements passkey.Store.
func (d *DB) RemoveCredential(ctx context.Context, userID string, id []byte, allow func(passkey.Remaining) error, ev audit.Event) (int, error) {
	var ended int
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, userID); err != nil {
			return err
		}
		var owned bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM credentials WHERE id = $1 AND user_id = $2)`, id, userID).Scan(&owned); err != nil {
			return err
		}
		if !owned {
			return passkey.ErrNotFound
		}
		var left passkey.Remaining
		if err := tx.QueryRow(ctx, `SELECT (SELECT COUNT(*) - 1 FROM credentials WHERE user_id = $1),
			(SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL)`, userID).Scan(&left.Passkeys, &left.RecoveryCodes); err != nil {
			return err
		}
		if err := allow(left); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM sessions WHERE credential_id = $1`, id)
		if err != nil {
			return fmt.Errorf("end the passkey's sessions: %w", err)
		}
		ended = int(tag.RowsAffected())
		if _, err := tx.Exec(ctx, `DELETE FROM credentials WHERE id = $1 AND user_id = $2`, id, userID); err != nil {
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
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM webauthn_challenges WHERE expires_at < $1`, time.Now().UnixNano()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO webauthn_challenges (id, kind, user_id, data, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			c.ID, c.Kind, c.UserID, data, c.ExpiresAt.UnixNano())
		return err
	})
}

// TakeChallenge implements passkey.Store: one DELETE … RETURNING, so two
// finishes on any nodes cannot both get the row.
func (d *DB) TakeChallenge(ctx context.Context, id string) (*passkey.Challenge, error) {
	var c passkey.Challenge
	var exp int64
	var data []byte
	err := d.pool.QueryRow(ctx, `DELETE FROM webauthn_challenges WHERE id = $1 RETURNING id, kind, user_id, data, expires_at`, id).
		Scan(&c.ID, &c.Kind, &c.UserID, &data, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
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
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
			return err
		}
		for _, h := range hashes {
			if _, err := tx.Exec(ctx, `INSERT INTO recovery_codes (hash, user_id) VALUES ($1, $2)`, h, userID); err != nil {
				return err
			}
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// UseRecoveryCode implements passkey.Store.
func (d *DB) UseRecoveryCode(ctx context.Context, userID string, hash []byte, at time.Time, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, userID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE recovery_codes SET used_at = $1 WHERE hash = $2 AND user_id = $3 AND used_at IS NULL`,
			at.UnixNano(), hash, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return passkey.ErrNotFound
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// UnusedRecoveryCodes implements passkey.Store.
func (d *DB) UnusedRecoveryCodes(ctx context.Context, userID string) (int, error) {
	var n int
	err := d.pool.QueryRow(ctx, `SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&n)
	return n, err
}

// CreateInvite implements passkey.Store.
func (d *DB) CreateInvite(ctx context.Context, hash []byte, inv *passkey.Invite, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO invites (hash, kind, user_id, role, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			hash, inv.Kind, inv.UserID, string(inv.Role), inv.CreatedBy, inv.CreatedAt.UnixNano(), inv.ExpiresAt.UnixNano()); err != nil {
			return err
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

func scanInvite(r pgx.Row) (*passkey.Invite, error) {
	var inv passkey.Invite
	var role string
	var created, exp int64
	if err := r.Scan(&inv.Kind, &inv.UserID, &role, &inv.CreatedBy, &created, &exp); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, passkey.ErrNotFound
		}
		return nil, err
	}
	inv.Role, inv.CreatedAt, inv.ExpiresAt = passkey.Role(role), time.Unix(0, created).UTC(), time.Unix(0, exp).UTC()
	return &inv, nil
}

// TakeInvite implements passkey.Store.
func (d *DB) TakeInvite(ctx context.Context, hash []byte, kind string, now time.Time) (*passkey.Invite, error) {
	return scanInvite(d.pool.QueryRow(ctx, `UPDATE invites SET used_at = $1 WHERE hash = $2 AND kind = $3 AND used_at IS NULL AND expires_at > $1
		RETURNING kind, user_id, role, created_by, created_at, expires_at`, now.UnixNano(), hash, kind))
}

// PeekInvite implements passkey.Store.
func (d *DB) PeekInvite(ctx context.Context, hash []byte, kind string, now time.Time) (*passkey.Invite, error) {
	return scanInvite(d.pool.QueryRow(ctx, `SELECT kind, user_id, role, created_by, created_at, expires_at FROM invites
		WHERE hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3`, hash, kind, now.UnixNano()))
}

// RememberSource implements passkey.SourceStore.
func (d *DB) RememberSource(ctx context.Context, userID string, hash []byte, at time.Time, keep int) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO user_sources (user_id, source_hash, last_seen_at) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, source_hash) DO UPDATE SET last_seen_at = GREATEST(user_sources.last_seen_at, excluded.last_seen_at)`,
			userID, hash, at.UnixNano()); err != nil {
			return fmt.Errorf("remember source: %w", err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM user_sources WHERE user_id = $1 AND source_hash NOT IN (
			SELECT source_hash FROM user_sources WHERE user_id = $1 ORDER BY last_seen_at DESC LIMIT $2)`, userID, keep)
		if err != nil {
			return fmt.Errorf("prune sources: %w", err)
		}
		return nil
	})
}

// KnownSource implements passkey.SourceStore.
func (d *DB) KnownSource(ctx context.Context, userID string, hash []byte, since time.Time) (bool, error) {
	var known bool
	err := d.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM user_sources WHERE user_id = $1 AND source_hash = $2 AND last_seen_at >= $3)`,
		userID, hash, since.UnixNano()).Scan(&known)
	if err != nil {
		return false, fmt.Errorf("known source: %w", err)
	}
	return known, nil
}
