package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

var _ session.Store = (*DB)(nil)

// sessionColumns are what a session check reads: nothing sealed, so that
// checking a session decrypts nothing. Lists add device_sealed.
const sessionColumns = `id, user_id, credential_id, restricted, created_at, last_seen_at, expires_at, step_up_at`

// sessionNanos stores t as Unix nanoseconds, the zero time as 0.
func sessionNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func sessionTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func scanSession(r pgx.Row, more ...any) (*session.Session, error) {
	var s session.Session
	var created, lastSeen, expires, stepUp int64
	if err := r.Scan(append([]any{&s.ID, &s.UserID, &s.CredentialID, &s.Restricted, &created, &lastSeen, &expires, &stepUp}, more...)...); err != nil {
		return nil, err
	}
	s.CreatedAt, s.LastSeenAt = sessionTime(created), sessionTime(lastSeen)
	s.ExpiresAt, s.StepUpAt = sessionTime(expires), sessionTime(stepUp)
	return &s, nil
}

// CreateSession implements session.Store.
func (d *DB) CreateSession(ctx context.Context, s *session.Session, tokenHash []byte, ev audit.Event) error {
	var cred []byte // NULL for a recovery session
	if len(s.CredentialID) > 0 {
		cred = s.CredentialID
	}
	device, err := sealed.SealDevice(ctx, d.sealer, s)
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, token_hash, user_id, credential_id, restricted,
			created_at, last_seen_at, expires_at, step_up_at, device_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			s.ID, tokenHash, s.UserID, cred, s.Restricted, sessionNanos(s.CreatedAt), sessionNanos(s.LastSeenAt),
			sessionNanos(s.ExpiresAt), sessionNanos(s.StepUpAt), device); err != nil {
			return fmt.Errorf("insert session: %w", err)
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// SessionByToken implements session.Store.
func (d *DB) SessionByToken(ctx context.Context, tokenHash []byte) (*session.Session, error) {
	s, err := scanSession(d.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE token_hash = $1`, tokenHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, session.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	return s, nil
}

// sessionWithUser reads a session (sessionColumns) and its person
// (userColumns) in one statement.
const sessionWithUser = `SELECT s.id, s.user_id, s.credential_id, s.restricted, s.created_at, s.last_seen_at, s.expires_at, s.step_up_at,
	u.id, u.handle, u.username_sealed, u.display_name_sealed, u.role, u.created_at, u.disabled_at, u.roles
	FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1`

// SessionWithUser returns what SessionByToken returns, with the session's
// person, in one read: what a session route checks on every request.
func (d *DB) SessionWithUser(ctx context.Context, tokenHash []byte) (*session.Session, *passkey.User, error) {
	var row userRow
	s, err := scanSession(d.pool.QueryRow(ctx, sessionWithUser, tokenHash), row.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, session.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get session: %w", err)
	}
	u, err := d.openUser(ctx, &row)
	if err != nil {
		return nil, nil, fmt.Errorf("get session: user: %w", err)
	}
	return s, u, nil
}

// TouchSession implements session.Store.
func (d *DB) TouchSession(ctx context.Context, id string, lastSeen time.Time) error {
	tag, err := d.pool.Exec(ctx, `UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $1) WHERE id = $2`,
		sessionNanos(lastSeen), id)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return session.ErrNotFound
	}
	return nil
}

// ReplaceSessionToken implements session.Store.
func (d *DB) ReplaceSessionToken(ctx context.Context, id string, newHash []byte, stepUpAt time.Time, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sessions SET token_hash = $1, step_up_at = $2 WHERE id = $3`,
			newHash, sessionNanos(stepUpAt), id)
		if err != nil {
			return fmt.Errorf("replace session token: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return session.ErrNotFound
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// ListSessions implements session.Store.
func (d *DB) ListSessions(ctx context.Context, userID string) ([]*session.Session, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+sessionColumns+`, device_sealed FROM sessions WHERE user_id = $1
		ORDER BY created_at DESC, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []*session.Session
	for rows.Next() {
		var device []byte
		s, err := scanSession(rows, &device)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		if err := sealed.OpenDevice(ctx, d.sealer, s, device); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteSession implements session.Store.
func (d *DB) DeleteSession(ctx context.Context, id, userID string, ev audit.Event) error {
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM sessions WHERE id = $1 AND ($2 = '' OR user_id = $2)`, id, userID)
		if err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return session.ErrNotFound
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// DeleteUserSessions implements session.Store.
func (d *DB) DeleteUserSessions(ctx context.Context, userID, exceptID string, ev audit.Event) (int, error) {
	var n int
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND id <> $2`, userID, exceptID)
		if err != nil {
			return fmt.Errorf("delete user sessions: %w", err)
		}
		n = int(tag.RowsAffected())
		return d.appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteCredentialSessions implements session.Store.
func (d *DB) DeleteCredentialSessions(ctx context.Context, credentialID []byte, ev audit.Event) (int, error) {
	if len(credentialID) == 0 {
		return 0, errors.New("delete credential sessions: empty credential id")
	}
	var n int
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM sessions WHERE credential_id = $1`, credentialID)
		if err != nil {
			return fmt.Errorf("delete credential sessions: %w", err)
		}
		n = int(tag.RowsAffected())
		return d.appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteExpiredSessions implements session.Store.
func (d *DB) DeleteExpiredSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error) {
	tag, err := d.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2`,
		now.UnixNano(), now.Add(-idle).UnixNano())
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
