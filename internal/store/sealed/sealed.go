// Package sealed is how both stores keep personal fields: sealed under
// their owner's data key (package crypt), each bound to its table, column
// and row, with keyed hashes where a look-up needs one. The two stores
// differ only in their SQL; what is sealed, and how, is written once, here.
//
// Sealed: a person's username and display name, the names they give their
// passkeys, and the device a session signed in from (IP address and user
// agent). The columns that held them in clear before hold nothing personal
// now: users.username holds the username's keyed hash (UsernameKey), which
// keeps it unique and findable; the others are empty.
package sealed

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
)

// ErrNoSealer means a store was asked for personal data before it was
// given the data keys (the KEK): a program that opens a store only for keys
// or the audit trail never holds them.
var ErrNoSealer = errors.New("personal data needs the data keys: open the store with the KEK")

// usernamePrefix marks a keyed hash in users.username, as opposed to a
// username an older keyway stored in clear (which Use seals).
const usernamePrefix = "h1:"

// UsernameKey is what users.username holds for a (normalised) username.
func UsernameKey(s *crypt.Sealer, username string) (string, error) {
	if s == nil {
		return "", ErrNoSealer
	}
	return usernamePrefix + hex.EncodeToString(s.Index("username", username)), nil
}

// User is a user's personal fields as stored.
type User struct {
	UsernameKey string
	Username    []byte
	DisplayName []byte
}

func userField(u *passkey.User, column string) crypt.Field {
	return crypt.Field{Table: "users", Column: column, Row: u.ID, UserID: u.ID}
}

// SealUser seals u's personal fields. Its data key must exist.
func SealUser(ctx context.Context, s *crypt.Sealer, u *passkey.User) (User, error) {
	var out User
	var err error
	if out.UsernameKey, err = UsernameKey(s, u.Username); err != nil {
		return out, err
	}
	if out.Username, err = s.Seal(ctx, userField(u, "username"), u.Username); err != nil {
		return out, err
	}
	out.DisplayName, err = s.Seal(ctx, userField(u, "display_name"), u.DisplayName)
	return out, err
}

// OpenUser fills u's personal fields from what SealUser sealed.
func OpenUser(ctx context.Context, s *crypt.Sealer, u *passkey.User, username, displayName []byte) error {
	if s == nil {
		return ErrNoSealer
	}
	// Read on every session request: cached.
	var err error
	if u.Username, err = s.OpenCached(ctx, userField(u, "username"), username); err != nil {
		return err
	}
	u.DisplayName, err = s.OpenCached(ctx, userField(u, "display_name"), displayName)
	return err
}

func credentialField(c *passkey.Credential) crypt.Field {
	return crypt.Field{Table: "credentials", Column: "name", Row: base64.RawURLEncoding.EncodeToString(c.ID), UserID: c.UserID}
}

// SealCredentialName seals the name a person gave a passkey.
func SealCredentialName(ctx context.Context, s *crypt.Sealer, c *passkey.Credential) ([]byte, error) {
	if s == nil {
		return nil, ErrNoSealer
	}
	return s.Seal(ctx, credentialField(c), c.Name)
}

// OpenCredentialName fills c.Name.
func OpenCredentialName(ctx context.Context, s *crypt.Sealer, c *passkey.Credential, sealed []byte) error {
	if s == nil {
		return ErrNoSealer
	}
	var err error
	c.Name, err = s.Open(ctx, credentialField(c), sealed)
	return err
}

func challengeField(id string) crypt.Field {
	return crypt.Field{Table: "webauthn_challenges", Column: "data", Row: id}
}

// SealChallenge seals the state of a ceremony in progress: a sign-up's
// username and display name, a new passkey's name.
func SealChallenge(s *crypt.Sealer, c *passkey.Challenge) ([]byte, error) {
	if s == nil {
		return nil, ErrNoSealer
	}
	return s.SealTransient(challengeField(c.ID), c.Data), nil
}

// OpenChallenge fills c.Data.
func OpenChallenge(s *crypt.Sealer, c *passkey.Challenge, sealed []byte) error {
	if s == nil {
		return ErrNoSealer
	}
	var err error
	c.Data, err = s.OpenTransient(challengeField(c.ID), sealed)
	return err
}

// originField is where an audit event's origin lives; the person is the
// actor when a person acted ("user:<id>"), else none.
func originField(seq int64, ev *audit.Event) crypt.Field {
	user, _ := strings.CutPrefix(ev.Actor, "user:")
	if user == ev.Actor {
		user = ""
	}
	return crypt.Field{Table: "audit_events", Column: "origin", Row: strconv.FormatInt(seq, 10), UserID: user}
}

// SealOrigin seals the address an audit event came from (ev.From) for the
// event stored at seq, into ev.Origin, and clears ev.From. An event done by
// a person is sealed under their data key, so that erasing them shreds it;
// one done by anyone else (an admin key, the CLI, the system) under a key
// derived from the KEK. A person whose data key is gone leaves no origin.
func SealOrigin(ctx context.Context, s *crypt.Sealer, seq int64, ev *audit.Event) error {
	from := ev.From
	ev.From = ""
	if from == "" || s == nil {
		return nil
	}
	f := originField(seq, ev)
	if f.UserID == "" {
		ev.Origin = s.SealTransient(f, []byte(from))
		return nil
	}
	o, err := s.Seal(ctx, f, from)
	if errors.Is(err, crypt.ErrNoKey) {
		return nil
	}
	ev.Origin = o
	return err
}

// OpenOrigin is the address sealed in a stored event's Origin ("" when it
// has none, or its person was erased).
func OpenOrigin(ctx context.Context, s *crypt.Sealer, r audit.Record) (string, error) {
	if len(r.Event.Origin) == 0 {
		return "", nil
	}
	if s == nil {
		return "", ErrNoSealer
	}
	f := originField(r.Seq, &r.Event)
	if f.UserID == "" {
		p, err := s.OpenTransient(f, r.Event.Origin)
		return string(p), err
	}
	p, err := s.Open(ctx, f, r.Event.Origin)
	if errors.Is(err, crypt.ErrNoKey) {
		return "", nil
	}
	return p, err
}

// device is what a session signed in from.
type device struct {
	IP        string `json:"ip"`
	UserAgent string `json:"ua"`
}

func deviceField(sess *session.Session) crypt.Field {
	return crypt.Field{Table: "sessions", Column: "device", Row: sess.ID, UserID: sess.UserID}
}

// SealDevice seals the IP address and user agent of a session.
func SealDevice(ctx context.Context, s *crypt.Sealer, sess *session.Session) ([]byte, error) {
	if s == nil {
		return nil, ErrNoSealer
	}
	b, err := json.Marshal(device{IP: sess.IP, UserAgent: sess.UserAgent})
	if err != nil {
		return nil, err
	}
	return s.Seal(ctx, deviceField(sess), string(b))
}

// OpenDevice fills sess.IP and sess.UserAgent.
func OpenDevice(ctx context.Context, s *crypt.Sealer, sess *session.Session, sealed []byte) error {
	if s == nil {
		return ErrNoSealer
	}
	p, err := s.Open(ctx, deviceField(sess), sealed)
	if err != nil {
		return err
	}
	var d device
	if err := json.Unmarshal([]byte(p), &d); err != nil {
		return fmt.Errorf("session %s device: %w", sess.ID, err)
	}
	sess.IP, sess.UserAgent = d.IP, d.UserAgent
	return nil
}
