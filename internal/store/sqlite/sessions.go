package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/store/sealed"
)

var _ session.Store = (*DB)(nil)

// sessionColumns are what a session check reads: nothing sealed, so that
// checking a session decrypts nothing. Lists add device_sealed.
const sessionColumns = `id, user_id, credential_id, restricted, created_at, last_seen_at, expires_at, step_up_at`

// sessionNanos stores t as Unix nanoseconds, the zero time as 0 (its
// UnixNano is out of range).
func sessionNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// sessionTime reads a time stored by sessionNanos.
func sessionTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func scanSession(r rowScanner, more ...any) (*session.Session, error) {
	var (
		s                                  session.Session
		restricted                         int64
		created, lastSeen, expires, stepUp int64
	)
	if err := r.Scan(append([]any{&s.ID, &s.UserID, &s.CredentialID, &restricted, &created, &lastSeen, &expires, &stepUp}, more...)...); err != nil {
		return nil, err
	}
	s.Restricted = restricted != 0
	s.CreatedAt, s.LastSeenAt = sessionTime(created), sessionTime(lastSeen)
	s.ExpiresAt, s.StepUpAt = sessionTime(expires), sessionTime(stepUp)
	return &s, nil
}

// sessionsAffected returns how many rows res changed.
func sessionsAffected(res sql.Result, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// CreateSession implements session.Store.
func (d *DB) CreateSession(ctx context.Context, s *session.Session, tokenHash []byte, ev audit.Event) error {
	var cred any // NULL for a recovery session
	if len(s.CredentialID) > 0 {
		cred = s.CredentialID
	}
	restricted := 0
	if s.Restricted {
		restricted = 1
	}
	device, err := sealed.SealDevice(ctx, d.sealer, s)
	if err != nil {
		return err
	}
	return d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, token_hash, user_id, credential_id, restricted,
			created_at, last_seen_at, expires_at, step_up_at, device_sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			s.ID, tokenHash, s.UserID, cred, restricted, sessionNanos(s.CreatedAt), sessionNanos(s.LastSeenAt),
			sessionNanos(s.ExpiresAt), sessionNanos(s.StepUpAt), device); err != nil {
			return fmt.Errorf("insert session: %w", err)
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// SessionByToken implements session.Store.
func (d *DB) SessionByToken(ctx context.Context, tokenHash []byte) (*session.Session, error) {
	s, err := scanSession(d.queryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE token_hash = ?`, tokenHash))
	if errors.Is(err, sql.ErrNoRows) {
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
	FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?`

// SessionWithUser returns what SessionByToken returns, with the session's
// person, in one read: what a session route checks on every request.
func (d *DB) SessionWithUser(ctx context.Context, tokenHash []byte) (*session.Session, *passkey.User, error) {
	var row userRow
	s, err := scanSession(d.queryRow(ctx, sessionWithUser, tokenHash), row.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
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
	n, err := sessionsAffected(d.sql.ExecContext(ctx, `UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?) WHERE id = ?`,
		sessionNanos(lastSeen), id))
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n == 0 {
		return session.ErrNotFound
	}
	return nil
}

// ReplaceSessionToken implements session.Store.
func (d *DB) ReplaceSessionToken(ctx context.Context, id string, newHash []byte, stepUpAt time.Time, ev audit.Event) error {
	return d.inTx(ctx, func(tx *sql.Tx) error {
		n, err := sessionsAffected(tx.ExecContext(ctx, `UPDATE sessions SET token_hash = ?, step_up_at = ? WHERE id = ?`,
			newHash, sessionNanos(stepUpAt), id))
		if err != nil {
			return fmt.Errorf("replace session token: %w", err)
		}
		if n == 0 {
			return session.ErrNotFound
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// ListSessions implements session.Store.
func (d *DB) ListSessions(ctx context.Context, userID string) ([]*session.Session, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT `+sessionColumns+`, device_sealed FROM sessions WHERE user_id = ?
		ORDER BY created_at DESC, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer func() { _ = rows.Close() }()
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
	return d.inTx(ctx, func(tx *sql.Tx) error {
		q, args := `DELETE FROM sessions WHERE id = ?`, []any{id}
		if userID != "" {
			q += ` AND user_id = ?`
			args = append(args, userID)
		}
		n, err := sessionsAffected(tx.ExecContext(ctx, q, args...))
		if err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
		if n == 0 {
			return session.ErrNotFound
		}
		return d.appendAudit(ctx, tx, ev)
	})
}

// DeleteUserSessions implements session.Store.
func (d *DB) DeleteUserSessions(ctx context.Context, userID, exceptID string, ev audit.Event) (int, error) {
	var n int
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = sessionsAffected(tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND id <> ?`, userID, exceptID))
		if err != nil {
			return fmt.Errorf("delete user sessions: %w", err)
		}
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
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = sessionsAffected(tx.ExecContext(ctx, `DELETE FROM sessions WHERE credential_id = ?`, credentialID))
		if err != nil {
			return fmt.Errorf("delete credential sessions: %w", err)
		}
		return d.appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteExpiredSessions implements session.Store. The bounds match
// session.Manager's: expired at expires_at, idle at last_seen_at + idle.
func (d *DB) DeleteExpiredSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error) {
	n, err := sessionsAffected(d.sql.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?`,
		now.UnixNano(), now.Add(-idle).UnixNano()))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return n, nil
}
