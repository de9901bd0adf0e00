package apikey

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
)

// Errors callers branch on.
var (
	// ErrInvalid is the one answer for a presented key that is malformed,
	// unknown, revoked, expired, past its rotation overlap or used from
	// outside its allowed networks: callers cannot tell which (no oracle).
	ErrInvalid = errors.New("invalid api key")
	// ErrNotFound means no key has that ID (management operations only).
	ErrNotFound = errors.New("api key not found")
	// ErrRevoked means a management operation needs a key that is not revoked.
	ErrRevoked = errors.New("api key is revoked")
	// ErrBadRequest wraps every invalid parameter of a management operation.
	ErrBadRequest = errors.New("invalid api key parameters")
)

// Rate is a per-key rate limit: Count requests per Period, bursts up to Burst.
// The zero Rate means no per-key limit.
type Rate struct {
	Count  int64
	Period time.Duration
	Burst  int64
}

// QuotaPeriod is the window a quota counts over.
type QuotaPeriod string

// Quota periods. QuotaTotal is a credit: it never resets and never goes negative.
const (
	QuotaNone  QuotaPeriod = ""
	QuotaDay   QuotaPeriod = "day"
	QuotaMonth QuotaPeriod = "month"
	QuotaTotal QuotaPeriod = "total"
)

// Quota caps the requests of a key per period. The zero Quota means none.
type Quota struct {
	Limit  int64
	Period QuotaPeriod
}

// Key is an API key's stored properties. It never holds the key's secret.
type Key struct {
	ID           string
	Name         string
	Owner        string
	Env          Env
	Scopes       []string
	Rate         Rate
	Quota        Quota
	CIDRs        []netip.Prefix
	CreatedAt    time.Time
	ExpiresAt    time.Time
	RevokedAt    time.Time // zero while not revoked
	RevokeReason string
	LastUsedAt   time.Time // zero if never used
	// Client is the client profile the key was made for ("" for none): it
	// may call only that profile's routes and sees only its fields.
	Client string
	// OldSecretUntil is when the last secret a rotation retired stops (or
	// stopped) working; zero if no rotation retired one. Readers compare
	// it with now.
	OldSecretUntil time.Time
}

// Secret is one stored hash of a key. NotAfter is zero for the current
// secret and set for one that a rotation retired.
type Secret struct {
	Hash      []byte
	CreatedAt time.Time
	NotAfter  time.Time
}

// InvalidKey is ErrInvalid with the reason, for the operator's logs and
// metrics only: every client gets the same answer whatever Why says.
type InvalidKey struct {
	// Why is one of the Why constants.
	Why string
	// KeyID is the display ID the key claims ("" when malformed).
	KeyID string
}

func (e *InvalidKey) Error() string { return "invalid api key: " + e.Why }

// Unwrap makes an InvalidKey ErrInvalid.
func (e *InvalidKey) Unwrap() error { return ErrInvalid }

// Why an API key is invalid.
const (
	WhyMalformed   = "malformed"
	WhyUnknown     = "unknown"
	WhyWrongSecret = "wrong_secret"
	WhyRotatedOut  = "rotated_out"
	WhyRevoked     = "revoked"
	WhyExpired     = "expired"
	WhyNetwork     = "network"
)

// Whys are every Why, for metric labels.
var Whys = []string{WhyMalformed, WhyUnknown, WhyWrongSecret, WhyRotatedOut, WhyRevoked, WhyExpired, WhyNetwork}

var errMalformed = &InvalidKey{Why: WhyMalformed}

// Change is one entry of the store's change feed.
type Change struct {
	Seq   int64
	KeyID string
}

// Outcome classifies a verified request for the usage counters.
type Outcome string

// Outcomes.
const (
	OutcomeOK          Outcome = "ok"
	OutcomeInvalid     Outcome = "invalid" // revoked, expired, wrong secret, CIDR
	OutcomeForbidden   Outcome = "forbidden"
	OutcomeRateLimited Outcome = "rate_limited"
	OutcomeQuota       Outcome = "quota_exceeded"
)

// UsageDelta adds Count requests with Outcome to a key's hour bucket.
type UsageDelta struct {
	KeyID   string
	Hour    time.Time // truncated to the hour, UTC
	Outcome Outcome
	Count   int64
}

// UsageRow is a stored usage bucket.
type UsageRow struct {
	Hour    time.Time
	Outcome Outcome
	Count   int64
}

// Store is what the service needs of persistence. Every mutating method
// writes its audit event and a change-feed entry in the same transaction.
// Methods that take an ID return ErrNotFound when there is no such key.
type Store interface {
	CreateKey(ctx context.Context, k *Key, hash []byte, ev audit.Event) error
	GetKey(ctx context.Context, id string) (*Key, []Secret, error)
	ListKeys(ctx context.Context, owner string) ([]*Key, error)
	// UpdateKey reads key id, lets mutate change it (or refuse, changing
	// nothing) and writes it back with mutate's audit event, all in one
	// transaction.
	UpdateKey(ctx context.Context, id string, mutate func(*Key) (audit.Event, error)) error
	// RotateKey retires every current secret of id at notAfter and adds
	// hash as the current one; a non-zero expiresAt becomes the key's
	// expiry.
	RotateKey(ctx context.Context, id string, hash []byte, notAfter, expiresAt time.Time, ev audit.Event) error
	// RevokeKey marks id revoked; revoking a revoked key is not an error.
	RevokeKey(ctx context.Context, id string, at time.Time, reason string, ev audit.Event) error
	DeleteKey(ctx context.Context, id string, ev audit.Event) error
}

// ErrFeedTruncated means that changes after the sequence number asked for
// may have been pruned from the feed: a verifier that far behind cannot
// know which keys changed, and must drop its whole cache.
var ErrFeedTruncated = errors.New("api keys: the change feed was pruned past this point")

// ChangeFeed lets verifiers learn of changes made by any process.
type ChangeFeed interface {
	// ChangesSince returns the changes after seq, oldest first, and the
	// newest sequence number (seq itself when there are none), or
	// ErrFeedTruncated when changes after seq may have been pruned.
	ChangesSince(ctx context.Context, seq int64) ([]Change, int64, error)
	// LatestChange returns the newest sequence number, where a new verifier
	// (whose cache is empty) starts following.
	LatestChange(ctx context.Context) (int64, error)
}

// UsageStore persists usage counters.
type UsageStore interface {
	AddUsage(ctx context.Context, deltas []UsageDelta, lastUsed map[string]time.Time) error
	// UsageSince returns id's buckets from since on.
	UsageSince(ctx context.Context, id string, since time.Time) ([]UsageRow, error)
	// CountUsage sums id's requests with outcome from since on.
	CountUsage(ctx context.Context, id string, outcome Outcome, since time.Time) (int64, error)
}
