package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
)

// Config configures a Manager.
type Config struct {
	// Store persists sessions. Required.
	Store Store
	// IdleTimeout ends a session not seen for this long. Default 30m.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after sign-in, however
	// active. Default 12h; at least IdleTimeout.
	AbsoluteTimeout time.Duration
	// StepUpMaxAge is how long a user-verified assertion keeps a session
	// Fresh for sensitive actions. Default 5m.
	StepUpMaxAge time.Duration
	// TouchEvery is how often, at most, last_seen is written per session, so
	// that reads do not become writes. Default 1m, or half of IdleTimeout if
	// that is shorter; less than IdleTimeout.
	TouchEvery time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand is the randomness of tokens and IDs. Default crypto/rand.Reader.
	Rand io.Reader
	// Logger receives the errors that do not fail a call (a missed touch).
	// Required.
	Logger *slog.Logger
}

// Manager creates, authenticates, steps up and revokes sessions. It is safe
// for concurrent use.
type Manager struct {
	cfg Config

	// touched holds, per session ID, when this process last wrote its
	// last_seen (or started to), so concurrent requests of one session
	// write it once per TouchEvery rather than once each.
	mu       sync.Mutex
	touched  map[string]time.Time
	prunedAt time.Time
}

// Limits on the descriptive fields kept with a session.
const (
	maxIP        = 64
	maxUserAgent = 256
	// maxTouched is the size of the touch table past which touch prunes it
	// itself (at most once per TouchEvery), should Sweep not be called.
	maxTouched = 1 << 16
)

// New validates cfg, fills its defaults and returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Logger == nil {
		return nil, errors.New("session: Store and Logger are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.IdleTimeout, 30*time.Minute)
	def(&cfg.AbsoluteTimeout, 12*time.Hour)
	def(&cfg.StepUpMaxAge, 5*time.Minute)
	def(&cfg.TouchEvery, min(time.Minute, cfg.IdleTimeout/2))
	var errs []error
	if cfg.IdleTimeout > cfg.AbsoluteTimeout {
		errs = append(errs, fmt.Errorf("session: idle timeout %v exceeds the absolute timeout %v", cfg.IdleTimeout, cfg.AbsoluteTimeout))
	}
	if cfg.TouchEvery >= cfg.IdleTimeout {
		errs = append(errs, fmt.Errorf("session: touch interval %v must be less than the idle timeout %v", cfg.TouchEvery, cfg.IdleTimeout))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Manager{cfg: cfg, touched: make(map[string]time.Time)}, nil
}

func (m *Manager) now() time.Time { return m.cfg.Now().UTC() }

// expired reports whether s has passed its absolute or idle timeout at now.
func (m *Manager) expired(s *Session, now time.Time) bool {
	return !now.Before(s.ExpiresAt) || now.Sub(s.LastSeenAt) >= m.cfg.IdleTimeout
}

// Create starts a session after a user-verified sign-in by userID with the
// passkey credentialID (nil for a recovery code, with restricted set). It
// returns the token, the only copy, for the cookie. Unless restricted, the
// sign-in counts as a step-up: the new session is Fresh. ip and userAgent
// are kept, shortened, for the user's session list; actor is audited.
func (m *Manager) Create(ctx context.Context, userID string, credentialID []byte, restricted bool, ip, userAgent, actor string) (string, *Session, error) {
	if userID == "" {
		return "", nil, errors.New("create session: no user")
	}
	tok, hash, err := newToken(m.cfg.Rand)
	if err != nil {
		return "", nil, err
	}
	id, err := newID(m.cfg.Rand)
	if err != nil {
		return "", nil, err
	}
	now := m.now()
	s := &Session{
		ID:         id,
		UserID:     userID,
		Restricted: restricted,
		CreatedAt:  now,
		LastSeenAt: now,
		ExpiresAt:  now.Add(m.cfg.AbsoluteTimeout),
		IP:         audit.Clip(ip, maxIP),
		UserAgent:  audit.Clip(userAgent, maxUserAgent),
	}
	if len(credentialID) > 0 {
		s.CredentialID = bytes.Clone(credentialID)
	}
	if !restricted {
		s.StepUpAt = now
	}
	detail := map[string]string{
		"user":       userID,
		"restricted": strconv.FormatBool(restricted),
		"expires_at": s.ExpiresAt.Format(time.RFC3339),
	}
	if len(credentialID) > 0 {
		detail["credential"] = credentialTag(credentialID)
	}
	ev := audit.Event{At: now, Type: audit.SessionCreated, Actor: actor, Subject: id, Detail: detail, From: s.IP}
	if err := m.cfg.Store.CreateSession(ctx, s, hash, ev); err != nil {
		return "", nil, fmt.Errorf("create session: %w", err)
	}
	return tok, s, nil
}

// Authenticate returns the live session of token, or ErrNotFound whatever
// the reason: malformed (decided without a store read), unknown, revoked,
// or past its idle or absolute timeout (then it is deleted, too). It
// records activity at most once per TouchEvery. Any other error means the
// store could not be read: the caller must fail closed.
func (m *Manager) Authenticate(ctx context.Context, token string) (*Session, error) {
	return m.AuthenticateVia(ctx, token, m.cfg.Store.SessionByToken)
}

// AuthenticateVia is Authenticate with the session read by read, which
// must keep Store.SessionByToken's contract. It lets a store read more in
// the same statement: the session route reads the session and its person
// together (store's SessionWithUser), one read a request instead of two.
func (m *Manager) AuthenticateVia(ctx context.Context, token string, read func(ctx context.Context, tokenHash []byte) (*Session, error)) (*Session, error) {
	if !wellFormed(token) {
		return nil, ErrNotFound
	}
	s, err := read(ctx, hashToken(token))
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate session: %w", err)
	}
	now := m.now()
	if m.expired(s, now) {
		m.forget(s.ID)
		// One statement deletes this session and any other that has lapsed.
		if _, err := m.cfg.Store.DeleteExpiredSessions(ctx, now, m.cfg.IdleTimeout); err != nil {
			m.cfg.Logger.Warn("sessions: delete expired", slog.String("session", s.ID), slog.String("error", err.Error()))
		}
		return nil, ErrNotFound
	}
	if err := m.touch(ctx, s, now); err != nil {
		return nil, err
	}
	return s, nil
}

// touch writes s's last_seen if the stored one is TouchEvery old and no
// other request of this process has just done so. A failed write is logged,
// not returned: the read succeeded, and a missed touch can only make the
// session time out earlier. A session deleted meanwhile is ErrNotFound.
func (m *Manager) touch(ctx context.Context, s *Session, now time.Time) error {
	if now.Sub(s.LastSeenAt) < m.cfg.TouchEvery {
		return nil
	}
	m.mu.Lock()
	if at, ok := m.touched[s.ID]; ok && now.Sub(at) < m.cfg.TouchEvery {
		m.mu.Unlock()
		return nil
	}
	if len(m.touched) >= maxTouched && now.Sub(m.prunedAt) >= m.cfg.TouchEvery {
		m.pruneLocked(now)
	}
	m.touched[s.ID] = now
	m.mu.Unlock()
	err := m.cfg.Store.TouchSession(ctx, s.ID, now)
	switch {
	case errors.Is(err, ErrNotFound):
		m.forget(s.ID)
		return ErrNotFound
	case err != nil:
		m.forget(s.ID) // let the next request try again
		m.cfg.Logger.Warn("sessions: record activity", slog.String("session", s.ID), slog.String("error", err.Error()))
		return nil
	}
	s.LastSeenAt = now
	return nil
}

func (m *Manager) forget(id string) {
	m.mu.Lock()
	delete(m.touched, id)
	m.mu.Unlock()
}

// Fresh reports whether s may perform a sensitive action without a new
// step-up: its last user-verified assertion is younger than StepUpMaxAge,
// and it is not a restricted (recovery) session.
func (m *Manager) Fresh(s *Session) bool {
	if s == nil || s.Restricted || s.StepUpAt.IsZero() {
		return false
	}
	age := m.now().Sub(s.StepUpAt)
	return age >= 0 && age < m.cfg.StepUpMaxAge
}

// StepUp records a new user-verified assertion for s, which the caller has
// just checked: it rotates the token (the old one stops working at once)
// and sets StepUpAt to now. It returns the new token, the only copy, and
// updates s. A restricted session is rotated but stays not Fresh. It
// returns ErrNotFound if s has expired or been revoked meanwhile.
func (m *Manager) StepUp(ctx context.Context, s *Session, actor string) (string, error) {
	if s == nil {
		return "", ErrNotFound
	}
	now := m.now()
	if m.expired(s, now) {
		return "", ErrNotFound
	}
	tok, hash, err := newToken(m.cfg.Rand)
	if err != nil {
		return "", err
	}
	ev := audit.Event{At: now, Type: audit.SessionStepUp, Actor: actor, Subject: s.ID,
		Detail: map[string]string{"user": s.UserID}}
	if err := m.cfg.Store.ReplaceSessionToken(ctx, s.ID, hash, now, ev); err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", ErrNotFound
		}
		return "", fmt.Errorf("step up session: %w", err)
	}
	s.StepUpAt = now
	return tok, nil
}

// List returns the live sessions of userID, newest first.
func (m *Manager) List(ctx context.Context, userID string) ([]*Session, error) {
	all, err := m.cfg.Store.ListSessions(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	now := m.now()
	live := all[:0]
	for _, s := range all {
		if !m.expired(s, now) {
			live = append(live, s)
		}
	}
	return live, nil
}

// Revoke ends sessionID if it belongs to userID. Another user's session,
// or none, is ErrNotFound, and nothing is deleted.
func (m *Manager) Revoke(ctx context.Context, userID, sessionID, actor string) error {
	if userID == "" {
		// "" means any user to the store; here it must mean nobody.
		return ErrNotFound
	}
	return m.revoke(ctx, userID, sessionID, actor, "user")
}

// RevokeAny ends sessionID, whoever it belongs to; for admins. An unknown
// session is ErrNotFound.
func (m *Manager) RevokeAny(ctx context.Context, sessionID, actor string) error {
	return m.revoke(ctx, "", sessionID, actor, "admin")
}

func (m *Manager) revoke(ctx context.Context, userID, sessionID, actor, by string) error {
	if sessionID == "" {
		return ErrNotFound
	}
	ev := audit.Event{At: m.now(), Type: audit.SessionRevoked, Actor: actor, Subject: sessionID,
		Detail: map[string]string{"reason": by}}
	if userID != "" {
		ev.Detail["user"] = userID
	}
	err := m.cfg.Store.DeleteSession(ctx, sessionID, userID, ev)
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	m.forget(sessionID)
	return nil
}

// RevokeOthers ends every session of userID but keepID (the one making the
// request) and returns how many it ended: "sign out everywhere else".
func (m *Manager) RevokeOthers(ctx context.Context, userID, keepID, actor string) (int, error) {
	if userID == "" || keepID == "" {
		return 0, errors.New("revoke other sessions: no user or no session to keep")
	}
	return m.revokeUser(ctx, userID, keepID, actor, "others")
}

// RevokeUser ends every session of userID and returns how many it ended;
// for admins, and for disabling a user.
func (m *Manager) RevokeUser(ctx context.Context, userID, actor string) (int, error) {
	if userID == "" {
		return 0, errors.New("revoke user sessions: no user")
	}
	return m.revokeUser(ctx, userID, "", actor, "all")
}

func (m *Manager) revokeUser(ctx context.Context, userID, keepID, actor, scope string) (int, error) {
	ev := audit.Event{At: m.now(), Type: audit.SessionRevoked, Actor: actor, Subject: userID,
		Detail: map[string]string{"scope": scope}}
	if keepID != "" {
		ev.Detail["kept"] = keepID
	}
	n, err := m.cfg.Store.DeleteUserSessions(ctx, userID, keepID, ev)
	if err != nil {
		return 0, fmt.Errorf("revoke user sessions: %w", err)
	}
	return n, nil
}

// RevokeCredential ends every session signed in with the passkey
// credentialID, when it is removed, and returns how many it ended.
func (m *Manager) RevokeCredential(ctx context.Context, credentialID []byte, actor string) (int, error) {
	if len(credentialID) == 0 {
		return 0, errors.New("revoke credential sessions: no credential")
	}
	tag := credentialTag(credentialID)
	ev := audit.Event{At: m.now(), Type: audit.SessionRevoked, Actor: actor, Subject: "credential:" + tag,
		Detail: map[string]string{"scope": "credential", "credential": tag}}
	n, err := m.cfg.Store.DeleteCredentialSessions(ctx, credentialID, ev)
	if err != nil {
		return 0, fmt.Errorf("revoke credential sessions: %w", err)
	}
	return n, nil
}

// Sweep deletes every expired session. The app calls it periodically, so
// that sessions never presented again do not linger.
func (m *Manager) Sweep(ctx context.Context) error {
	now := m.now()
	if _, err := m.cfg.Store.DeleteExpiredSessions(ctx, now, m.cfg.IdleTimeout); err != nil {
		return fmt.Errorf("sweep sessions: %w", err)
	}
	m.mu.Lock()
	m.pruneLocked(now)
	m.mu.Unlock()
	return nil
}

// pruneLocked drops the touches older than TouchEvery, which no longer
// suppress anything. m.mu must be held.
func (m *Manager) pruneLocked(now time.Time) {
	for id, at := range m.touched {
		if now.Sub(at) >= m.cfg.TouchEvery {
			delete(m.touched, id)
		}
	}
	m.prunedAt = now
}
