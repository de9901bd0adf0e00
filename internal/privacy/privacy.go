// Package privacy answers a person's rights over their data: an export of
// everything keyway holds about them, and erasure.
//
// Erasure deletes the account and everything hanging off it (passkeys,
// sessions, recovery codes, remembered sources, pending links), deletes the
// person's API keys (each revoked first, so every node drops it within a
// second), then deletes the person's data key: their sealed fields, in
// every copy and backup of the database, stay sealed for ever. The audit
// trail keeps its events, which name the person only by a pseudonymous ID.
package privacy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/session"
)

// ErrLastAdmin refuses to erase the only administrator: nobody could
// manage keyway in the portal after it.
var ErrLastAdmin = errors.New("this is the only administrator: make another before erasing this one")

// Store is what the service reads and erases.
type Store interface {
	passkey.AccountStore
	passkey.CredentialStore
	passkey.RecoveryStore
	session.Store
	audit.Reader
	audit.Appender
	// AuditOrigin opens the address an audit event came from.
	AuditOrigin(ctx context.Context, r audit.Record) (string, error)
}

// Keys are the API-key operations erasure and export need.
type Keys interface {
	List(ctx context.Context, owner string) ([]*apikey.Key, error)
	Revoke(ctx context.Context, id, reason, actor string) error
	Delete(ctx context.Context, id, actor string) error
}

// Service exports and erases people's data.
type Service struct {
	Store Store
	Keys  Keys
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Export is everything keyway holds about one person.
type Export struct {
	ExportedAt        time.Time       `json:"exported_at"`
	User              ExportUser      `json:"user"`
	Passkeys          []ExportPasskey `json:"passkeys"`
	Sessions          []ExportSession `json:"sessions"`
	APIKeys           []ExportKey     `json:"api_keys"`
	RecoveryCodesLeft int             `json:"recovery_codes_left"`
	// Audit are the events about the person, their passkeys, sessions and
	// keys, or done by them, oldest first.
	Audit []ExportEvent `json:"audit"`
}

// ExportUser is the account.
type ExportUser struct {
	ID          string     `json:"id"`
	Username    string     `json:"username"`
	DisplayName string     `json:"display_name"`
	Role        string     `json:"role"`
	Roles       []string   `json:"roles"`
	CreatedAt   time.Time  `json:"created_at"`
	DisabledAt  *time.Time `json:"disabled_at,omitempty"`
}

// ExportPasskey is one passkey: what the person named it and how it was used.
type ExportPasskey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Synced     bool       `json:"synced"`
	Transports []string   `json:"transports"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// ExportSession is one session, with where it signed in from.
type ExportSession struct {
	ID         string    `json:"id"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	Recovery   bool      `json:"recovery"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// ExportKey is one API key the person owns (never its secret, which keyway
// does not have).
type ExportKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// ExportEvent is one audit event.
type ExportEvent struct {
	Seq     int64             `json:"seq"`
	At      time.Time         `json:"at"`
	Type    string            `json:"type"`
	Actor   string            `json:"actor"`
	Subject string            `json:"subject"`
	Detail  map[string]string `json:"detail,omitempty"`
	// From is the address the event came from, when it was recorded.
	From string `json:"from,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Export gathers everything held about userID. The export itself is
// audited (actor says who asked).
func (s *Service) Export(ctx context.Context, userID, actor string) (*Export, error) {
	u, err := s.Store.UserByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := &Export{ExportedAt: s.now(), User: ExportUser{ID: u.ID, Username: u.Username, DisplayName: u.DisplayName,
		Role: string(u.Role), Roles: append([]string{}, u.Roles...), CreatedAt: u.CreatedAt, DisabledAt: optTime(u.DisabledAt)},
		Passkeys: []ExportPasskey{}, Sessions: []ExportSession{}, APIKeys: []ExportKey{}, Audit: []ExportEvent{}}
	who := principal.User(u.ID).String()
	mine := map[string]bool{who: true}
	creds, err := s.Store.Credentials(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range creds {
		ref := passkey.CredentialRef(c.ID)
		mine[ref] = true
		out.Passkeys = append(out.Passkeys, ExportPasskey{ID: ref, Name: c.Name, Synced: c.Synced(),
			Transports: append([]string{}, c.Transports...), CreatedAt: c.CreatedAt, LastUsedAt: optTime(c.LastUsedAt)})
	}
	sessions, err := s.Store.ListSessions(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	for _, ss := range sessions {
		mine[ss.ID] = true
		out.Sessions = append(out.Sessions, ExportSession{ID: ss.ID, IP: ss.IP, UserAgent: ss.UserAgent, Recovery: ss.Restricted,
			CreatedAt: ss.CreatedAt, LastSeenAt: ss.LastSeenAt, ExpiresAt: ss.ExpiresAt})
	}
	keys, err := s.Keys.List(ctx, who)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		mine[apikey.DisplayID(k.ID)] = true
		out.APIKeys = append(out.APIKeys, ExportKey{ID: apikey.DisplayID(k.ID), Name: k.Name, Scopes: append([]string{}, k.Scopes...),
			CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: optTime(k.RevokedAt), LastUsedAt: optTime(k.LastUsedAt)})
	}
	if out.RecoveryCodesLeft, err = s.Store.UnusedRecoveryCodes(ctx, u.ID); err != nil {
		return nil, err
	}
	if err := s.Store.AppendAudit(ctx, audit.Event{At: s.now(), Type: audit.UserExported, Actor: actor, Subject: who}); err != nil {
		return nil, err
	}
	for after := int64(0); ; {
		recs, err := s.Store.AuditEvents(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			e := r.Event
			if mine[e.Actor] || mine[e.Subject] || e.Detail["user"] == u.ID || mine[e.Detail["credential"]] {
				from := ""
				if e.Actor == who { // an address of someone else's (an admin's) is theirs
					if from, err = s.Store.AuditOrigin(ctx, r); err != nil {
						return nil, err
					}
				}
				out.Audit = append(out.Audit, ExportEvent{Seq: r.Seq, At: e.At, Type: e.Type, Actor: e.Actor, Subject: e.Subject, Detail: e.Detail, From: from})
			}
			after = r.Seq
		}
		if len(recs) < 1000 {
			return out, nil
		}
	}
}

// Erase erases userID's account, keys and data key. An erasure that
// stopped half-way (the account gone, a key or the data key left) finishes
// when run again; an account that never existed is passkey.ErrNotFound.
func (s *Service) Erase(ctx context.Context, userID, actor string) error {
	u, err := s.Store.UserByID(ctx, userID)
	switch {
	case errors.Is(err, passkey.ErrNotFound):
		// Gone already: finish what an interrupted erasure left.
	case err != nil:
		return err
	case u.Role == passkey.RoleAdmin:
		n, err := s.Store.CountAdmins(ctx)
		if err != nil {
			return err
		}
		if n <= 1 && u.DisabledAt.IsZero() {
			return ErrLastAdmin
		}
	}
	who := principal.User(userID).String()
	keys, err := s.eraseKeys(ctx, who, actor)
	if err != nil {
		return err
	}
	ev := audit.Event{At: s.now(), Type: audit.UserErased, Actor: actor, Subject: who,
		Detail: map[string]string{"api_keys": fmt.Sprint(keys)}}
	err = s.Store.EraseUser(ctx, userID, ev)
	if errors.Is(err, passkey.ErrNotFound) && (u != nil || keys > 0) {
		err = nil // erased meanwhile
	}
	if err != nil {
		return err
	}
	// The person's sessions lived until the account went: a key made
	// with one meanwhile is in the store now (a new key for a person who
	// is gone is refused in its transaction), and goes the same way.
	_, err = s.eraseKeys(ctx, who, actor)
	return err
}

// eraseKeys revokes and deletes every key of owner, and counts them.
func (s *Service) eraseKeys(ctx context.Context, owner, actor string) (int, error) {
	keys, err := s.Keys.List(ctx, owner)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if k.RevokedAt.IsZero() {
			if err := s.Keys.Revoke(ctx, k.ID, "account erased", actor); err != nil {
				return 0, fmt.Errorf("revoke %s: %w", apikey.DisplayID(k.ID), err)
			}
		}
		if err := s.Keys.Delete(ctx, k.ID, actor); err != nil {
			return 0, fmt.Errorf("delete %s: %w", apikey.DisplayID(k.ID), err)
		}
	}
	return len(keys), nil
}
