package passkey

import (
	"context"
	"errors"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
)

// Errors callers branch on.
var (
	// ErrCeremony means a WebAuthn ceremony failed: unknown, reused or
	// expired challenge, or a response that does not verify. Callers answer
	// 400 and never say which.
	ErrCeremony = errors.New("passkey ceremony failed")
	// ErrUsernameTaken means sign-up chose a name that exists.
	ErrUsernameTaken = errors.New("username is taken")
	// ErrSignUpClosed means the sign-up mode refuses this sign-up.
	ErrSignUpClosed = errors.New("sign-up is not open")
	// ErrInvalidInput wraps every bad parameter.
	ErrInvalidInput = errors.New("invalid input")
	// ErrNotFound means no such user, credential or link for this caller.
	ErrNotFound = errors.New("not found")
	// ErrLastPasskey refuses to remove a user's last passkey while no
	// unused recovery code remains.
	ErrLastPasskey = errors.New("cannot remove the last passkey without recovery codes")
	// ErrCloned means the signature counter went backwards and policy denies.
	ErrCloned = errors.New("the authenticator may be cloned")
)

// Role is what a user may do.
type Role string

// Roles.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// User is a person's account.
type User struct {
	ID          string
	Handle      []byte // WebAuthn user handle: random, never changes
	Username    string
	DisplayName string
	Role        Role
	CreatedAt   time.Time
	DisabledAt  time.Time
	// Roles are the roles an administrator gave the person, sorted: what
	// session routes with roles: require, and what upstreams receive in
	// X-Keyway-Roles. Role (user or admin) is keyway's own and separate.
	Roles []string
}

// Credential is a stored passkey.
type Credential struct {
	ID                []byte
	UserID            string
	Name              string
	PublicKey         []byte
	AttestationType   string
	AttestationFormat string
	AAGUID            []byte
	SignCount         uint32
	CloneWarning      bool
	Flags             byte // authenticator data flags octet
	Transports        []string
	Attachment        string
	CreatedAt         time.Time
	LastUsedAt        time.Time
}

// Flag bits of the authenticator data (WebAuthn L3 §6.1).
const (
	FlagUP = 0x01
	FlagUV = 0x04
	FlagBE = 0x08
	FlagBS = 0x10
)

// Synced reports whether the passkey is backed up (a synced passkey).
func (c *Credential) Synced() bool { return c.Flags&FlagBS != 0 }

// Challenge is stored ceremony state.
type Challenge struct {
	ID        string
	Kind      string // register | login | stepup
	UserID    string
	Data      []byte
	ExpiresAt time.Time
}

// Invite is a one-time link.
type Invite struct {
	Kind      string // invite | enrol | setup
	UserID    string
	Role      Role
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// InviteUse is a link a sign-up spends, with the conditions the service
// puts on spending it. The store checks every condition in the one
// transaction that creates the account, so that two sign-ups cannot both
// pass a check the other would fail.
type InviteUse struct {
	Hash []byte
	Kind string // invite | setup
	// Role is the link's role, read when the ceremony began. A link's role
	// never changes; the spend is refused if it does not match.
	Role Role
	Now  time.Time
	// CloseKind spends every other unspent link of Kind with this one.
	CloseKind bool
	// UnlessRoleExists refuses the spend while any account holds this role.
	UnlessRoleExists Role
}

// Remaining is what a user would keep after losing one passkey.
type Remaining struct {
	Passkeys      int
	RecoveryCodes int // unused
}

// Store is everything the passkey service keeps: accounts, their passkeys,
// ceremony challenges, recovery codes and invitation links. Each part is
// an interface of its own, so that a store is written, and a caller names
// what it uses, one job at a time. Mutations write their audit events in
// the same transaction as the change; look-ups return ErrNotFound.
type Store interface {
	AccountStore
	CredentialStore
	ChallengeStore
	RecoveryStore
	InviteStore
}

// AccountStore keeps accounts.
type AccountStore interface {
	// CreateUser stores a new account with its first passkey. With inv set,
	// it spends that link in the same transaction, on inv's conditions
	// (ErrSignUpClosed when the link is used, expired, unknown, of another
	// role, or a condition fails). A taken username is ErrUsernameTaken, a
	// credential ID already registered ErrCeremony.
	CreateUser(ctx context.Context, u *User, c *Credential, inv *InviteUse, evs []audit.Event) error
	UserByID(ctx context.Context, id string) (*User, error)
	UserByHandle(ctx context.Context, handle []byte) (*User, error)
	UserByUsername(ctx context.Context, username string) (*User, error)
	ListUsers(ctx context.Context) ([]*User, error)
	CountAdmins(ctx context.Context) (int, error)
	// SetUserRoles replaces the roles of userID, with ev, or returns
	// ErrNotFound.
	SetUserRoles(ctx context.Context, userID string, roles []string, ev audit.Event) error
	// EraseUser deletes the account of userID, its passkeys, sessions,
	// recovery codes, remembered sources, enrolment links and ceremonies,
	// with ev, in one transaction; then it deletes the person's data key,
	// so that every copy of their sealed fields stays sealed for ever. An
	// account already gone is ErrNotFound, after its data key is deleted
	// too (an erasure stopped between the two steps finishes).
	EraseUser(ctx context.Context, userID string, ev audit.Event) error
}

// CredentialStore keeps the passkeys of accounts.
type CredentialStore interface {
	AddCredential(ctx context.Context, c *Credential, ev audit.Event) error
	Credentials(ctx context.Context, userID string) ([]*Credential, error)
	// CredentialUsed records a successful assertion.
	CredentialUsed(ctx context.Context, c *Credential, evs []audit.Event) error
	RenameCredential(ctx context.Context, userID string, id []byte, name string, ev audit.Event) error
	// RemoveCredential deletes the credential and every session it signed
	// in, in one transaction, once allow accepts what the user would have
	// left (allow's error is returned and nothing changes). The transaction
	// holds the user's account while it counts, so two removals cannot both
	// pass a check that only one of them should.
	RemoveCredential(ctx context.Context, userID string, id []byte, allow func(Remaining) error, ev audit.Event) (sessions int, err error)
}

// ChallengeStore keeps the challenges of ceremonies in progress.
type ChallengeStore interface {
	PutChallenge(ctx context.Context, c *Challenge) error
	// TakeChallenge reads and deletes a challenge atomically: of two
	// concurrent takers, one gets it.
	TakeChallenge(ctx context.Context, id string) (*Challenge, error)
}

// RecoveryStore keeps recovery codes, as hashes.
type RecoveryStore interface {
	ReplaceRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, ev audit.Event) error
	// UseRecoveryCode marks an unused code of the user used; ErrNotFound if none matches.
	UseRecoveryCode(ctx context.Context, userID string, hash []byte, at time.Time, ev audit.Event) error
	UnusedRecoveryCodes(ctx context.Context, userID string) (int, error)
}

// InviteStore keeps one-time sign-up, setup and enrolment links, as hashes.
type InviteStore interface {
	CreateInvite(ctx context.Context, hash []byte, inv *Invite, ev audit.Event) error
	// TakeInvite marks an unused, unexpired link of kind used and returns it.
	TakeInvite(ctx context.Context, hash []byte, kind string, now time.Time) (*Invite, error)
	// PeekInvite returns an unused, unexpired link of kind without using it.
	PeekInvite(ctx context.Context, hash []byte, kind string, now time.Time) (*Invite, error)
}

// SourceStore keeps where people signed in from, as keyed hashes.
type SourceStore interface {
	// RememberSource records that userID signed in from the source whose
	// hash is given, at at, keeping only the keep most recent sources.
	RememberSource(ctx context.Context, userID string, hash []byte, at time.Time, keep int) error
	// KnownSource reports whether userID signed in from that source at
	// since or later.
	KnownSource(ctx context.Context, userID string, hash []byte, since time.Time) (bool, error)
}
