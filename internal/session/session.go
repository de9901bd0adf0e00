package session

import (
	"context"
	"errors"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
)

// ErrNotFound is the one answer for a session that is unknown, malformed,
// expired, revoked or another user's: callers cannot tell which.
var ErrNotFound = errors.New("session not found")

// Session is a signed-in browser. Its token is never stored, only
// SHA-256(token).
type Session struct {
	// ID is "ses_" + 16 base62 characters. Public: it names the session in
	// lists, revocations and audit events, and authenticates nothing.
	ID     string
	UserID string
	// CredentialID is the passkey that signed the session in; nil for a
	// recovery sign-in.
	CredentialID []byte
	// Restricted marks a recovery session, which may only enrol a passkey and
	// is never Fresh.
	Restricted bool
	CreatedAt  time.Time
	// LastSeenAt is the last recorded activity; it is written at most every
	// Config.TouchEvery, so it may lag by that much.
	LastSeenAt time.Time
	// ExpiresAt is the absolute timeout, fixed at creation.
	ExpiresAt time.Time
	// StepUpAt is the last user-verified assertion; zero if none (restricted).
	StepUpAt time.Time
	// IP and UserAgent are what the browser signed in from, shown to the
	// user in their session list. Personal data: never audited.
	IP        string
	UserAgent string
}

// Store persists sessions. It is implemented by store/sqlite. Every method
// that takes an audit.Event writes it in the same transaction as the change,
// and writes nothing if the change fails.
type Store interface {
	// CreateSession inserts s with the hash of its token.
	CreateSession(ctx context.Context, s *Session, tokenHash []byte, ev audit.Event) error
	// SessionByToken returns the session whose token hashes to tokenHash,
	// expired or not, or ErrNotFound. It opens nothing sealed: IP and
	// UserAgent are empty (ListSessions has them), so that checking a
	// session decrypts nothing.
	SessionByToken(ctx context.Context, tokenHash []byte) (*Session, error)
	// TouchSession records activity at lastSeen; last_seen never moves back.
	// It returns ErrNotFound if the session is gone.
	TouchSession(ctx context.Context, id string, lastSeen time.Time) error
	// ReplaceSessionToken swaps the token hash of session id for newHash (the
	// old token stops working at once) and sets its step-up time. It returns
	// ErrNotFound if the session is gone.
	ReplaceSessionToken(ctx context.Context, id string, newHash []byte, stepUpAt time.Time, ev audit.Event) error
	// ListSessions returns the sessions of userID, expired or not, newest first.
	ListSessions(ctx context.Context, userID string) ([]*Session, error)
	// DeleteSession deletes session id if it belongs to userID, or to anyone
	// when userID is "". It returns ErrNotFound, and audits nothing, if no
	// session matched.
	DeleteSession(ctx context.Context, id, userID string, ev audit.Event) error
	// DeleteUserSessions deletes every session of userID except exceptID
	// ("" keeps none) and returns how many it deleted. It writes ev even if
	// there were none: the request itself is the fact.
	DeleteUserSessions(ctx context.Context, userID, exceptID string, ev audit.Event) (int, error)
	// DeleteCredentialSessions deletes every session signed in with
	// credentialID and returns how many; it writes ev even if there were none.
	DeleteCredentialSessions(ctx context.Context, credentialID []byte, ev audit.Event) (int, error)
	// DeleteExpiredSessions deletes every session past its absolute timeout
	// at now, or last seen idle or longer before now, and returns how many.
	// Not audited.
	DeleteExpiredSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error)
}
