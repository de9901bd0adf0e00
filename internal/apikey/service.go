package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/duration"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"golang.org/x/sync/singleflight"
)

// Config configures a Service.
type Config struct {
	// Store persists keys. Required.
	Store Store
	// Changes is the change feed verifiers follow. Required.
	Changes ChangeFeed
	// Usage persists usage counters. Required.
	Usage UsageStore
	// Quotas shares quota counts between nodes (store/redis). Nil: each
	// process counts alone, which is exact on one node.
	Quotas QuotaCounter
	// Pepper keys the HMAC of stored keys; at least 32 bytes, kept outside
	// the database. Required.
	Pepper []byte
	// DefaultTTL is the lifetime of a key created without one. Default 90 days.
	DefaultTTL time.Duration
	// MaxTTL is the longest lifetime a key may have. Default 365 days.
	MaxTTL time.Duration
	// MaxOverlap is the longest a rotated-out secret may keep working. Default 7 days.
	MaxOverlap time.Duration
	// CacheSize bounds the verification cache (entries). Default 1<<20.
	CacheSize int
	// StaleAfter is the hard bound on how long a cached key (or a cached
	// "no such key") is trusted without a reload, whatever the change feed
	// says. Default 30s.
	StaleAfter time.Duration
	// MaxStaleness bounds how long cached keys are trusted after the change
	// feed was last read: past it, every verification reads the store (and
	// fails while the store is out of reach), so that a node cut off from
	// the feed cannot keep a key revoked elsewhere alive. Default 5s.
	MaxStaleness time.Duration
	// PollInterval is how often the change feed is read. Default 250ms.
	PollInterval time.Duration
	// FlushInterval is how often usage counters are written. Default 1s.
	FlushInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand is the randomness for new keys. Default crypto/rand.Reader.
	Rand io.Reader
	// Logger receives errors of the background work. Required.
	Logger *slog.Logger
	// Clients are the client profiles keys may be made for; a key naming
	// another is refused. Nil: no key may name a client.
	Clients []string
}

// Service manages API keys and verifies them.
type Service struct {
	cfg    Config
	hashes sync.Pool // of *hasher

	mu    sync.RWMutex
	cache map[string]*entry
	group singleflight.Group
	// gen increments on every invalidation, so a load that raced with an
	// invalidation is not cached.
	gen atomic.Uint64

	usageMu sync.Mutex
	usage   map[string]*keyUsage
	// retired are counters flush just dropped from usage: the next flush
	// collects what was counted into them meanwhile (see forgetIdleAfter).
	retired []*keyUsage
	flushMu sync.Mutex // held for a whole flush

	lastSeq atomic.Int64
	// feedReadAt is when the change feed was last read without error
	// (Unix nanoseconds by cfg.Now).
	feedReadAt atomic.Int64
	// wake asks Run to read the change feed now (see Wake).
	wake chan struct{}
	// decoy is checked in place of a key whose ID does not exist, so that
	// refusing it costs what refusing a wrong secret does: the time taken
	// must not tell which IDs exist.
	decoy *Verified
	// clients are the profile names keys may be made for (cfg.Clients at
	// first; SetClients after a config reload).
	clients atomic.Pointer[[]string]
}

// SetClients replaces the client profiles that new keys may name (a config
// reload). Keys made before keep theirs; one naming a profile that is gone
// calls nothing until it comes back.
func (s *Service) SetClients(names []string) {
	names = slices.Clone(names)
	s.clients.Store(&names)
}

// Verified is a key that passed verification. It is shared and read-only.
type Verified struct {
	Key *Key
	// DisplayID is "key_<id>", for headers and logs.
	DisplayID string
	// Owner is the key's owner as a principal.
	Owner principal.Principal
	// ScopeList is the scopes joined by spaces, for the upstream header.
	ScopeList string

	secrets []Secret
	usage   *keyUsage
}

// HasScopes reports whether the key holds every scope in want.
func (v *Verified) HasScopes(want []string) bool {
	for _, w := range want {
		if !slices.Contains(v.Key.Scopes, w) {
			return false
		}
	}
	return true
}

type entry struct {
	v        *Verified // nil: no such key
	loadedAt time.Time
}

// New validates cfg, fills defaults and returns a Service. Call Run to
// follow the change feed and flush usage.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Changes == nil || cfg.Usage == nil || cfg.Logger == nil {
		return nil, errors.New("apikey: Store, Changes, Usage and Logger are required")
	}
	if len(cfg.Pepper) < 32 {
		return nil, errors.New("apikey: the pepper must be at least 32 bytes")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DefaultTTL, 90*24*time.Hour)
	def(&cfg.MaxTTL, 365*24*time.Hour)
	def(&cfg.MaxOverlap, 7*24*time.Hour)
	def(&cfg.StaleAfter, 30*time.Second)
	def(&cfg.MaxStaleness, 5*time.Second)
	def(&cfg.PollInterval, 250*time.Millisecond)
	def(&cfg.FlushInterval, time.Second)
	if cfg.DefaultTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("apikey: default TTL %v exceeds the maximum %v", cfg.DefaultTTL, cfg.MaxTTL)
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	s := &Service{cfg: cfg, cache: make(map[string]*entry), usage: make(map[string]*keyUsage), wake: make(chan struct{}, 1)}
	s.SetClients(cfg.Clients)
	s.cfg.Clients = nil // in s.clients, which a reload replaces
	decoyHash := make([]byte, sha256.Size)
	if _, err := io.ReadFull(rand.Reader, decoyHash); err != nil {
		return nil, err
	}
	s.decoy = &Verified{secrets: []Secret{{Hash: decoyHash}}}
	pepper := slices.Clone(cfg.Pepper)
	s.hashes.New = func() any { return &hasher{h: hmac.New(sha256.New, pepper)} }
	seq, err := cfg.Changes.LatestChange(ctx)
	if err != nil {
		return nil, fmt.Errorf("apikey: read change feed: %w", err)
	}
	s.lastSeq.Store(seq)
	s.feedReadAt.Store(cfg.Now().UnixNano())
	return s, nil
}

// hasher is a keyed HMAC with buffers for its input and output. Pooled, it
// lets the hot path hash a key without allocating: a string handed to
// hash.Hash.Write would be copied to the heap, and so would a result buffer.
type hasher struct {
	h   hash.Hash
	in  [MaxLen]byte
	sum [sha256.Size]byte
}

// hashKey is the stored form of a key: HMAC-SHA-256 under the pepper. The
// caller must put hs back into s.hashes.
func (s *Service) hashKey(raw string) *hasher {
	hs := s.hashes.Get().(*hasher)
	hs.h.Reset()
	n := copy(hs.in[:], raw)
	_, _ = hs.h.Write(hs.in[:n])
	hs.h.Sum(hs.sum[:0])
	return hs
}

// storedHash returns a fresh copy of raw's stored form.
func (s *Service) storedHash(raw string) []byte {
	hs := s.hashKey(raw)
	out := slices.Clone(hs.sum[:])
	s.hashes.Put(hs)
	return out
}

// Verify checks a presented key and returns it, or ErrInvalid whatever the
// reason (malformed, unknown, wrong secret, revoked, expired, rotated out,
// outside its networks). Any other error means the store could not be
// read: the caller must fail closed.
func (s *Service) Verify(ctx context.Context, raw string, client netip.Addr) (*Verified, error) {
	p, err := Parse(raw)
	if err != nil {
		return nil, errMalformed
	}
	now := s.cfg.Now()
	v, err := s.lookup(ctx, p.ID, now)
	if err != nil {
		return nil, err
	}
	if v == nil {
		s.matches(s.decoy, raw, now) // as long as a wrong secret takes
		return nil, &InvalidKey{Why: WhyUnknown, KeyID: DisplayID(p.ID)}
	}
	// Every check runs whatever the one before found: the time taken
	// must not tell them apart.
	live, dead := s.matches(v, raw, now)
	k := v.Key
	why := ""
	switch {
	case !live && dead:
		why = WhyRotatedOut
	case !live:
		why = WhyWrongSecret
	case !k.RevokedAt.IsZero():
		why = WhyRevoked
	case !now.Before(k.ExpiresAt):
		why = WhyExpired
	case !allowedFrom(k.CIDRs, client):
		why = WhyNetwork
	}
	if why != "" {
		v.usage.count(OutcomeInvalid)
		return nil, &InvalidKey{Why: why, KeyID: v.DisplayID}
	}
	return v, nil
}

// matches compares the key's HMAC with every secret in constant time and
// reports whether it matched a live one, or one a rotation retired.
func (s *Service) matches(v *Verified, raw string, now time.Time) (live, dead bool) {
	if len(raw) > MaxLen {
		return false, false
	}
	hs := s.hashKey(raw)
	okLive, okDead := 0, 0
	for _, sec := range v.secrets {
		eq := subtle.ConstantTimeCompare(hs.sum[:], sec.Hash)
		if sec.NotAfter.IsZero() || now.Before(sec.NotAfter) {
			okLive |= eq
		} else {
			okDead |= eq
		}
	}
	s.hashes.Put(hs)
	return okLive == 1, okDead == 1
}

func allowedFrom(cidrs []netip.Prefix, client netip.Addr) bool {
	if len(cidrs) == 0 {
		return true
	}
	for _, p := range cidrs {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// lookup returns the cached key, loading it (once, however many callers
// wait) when it is missing, older than StaleAfter, or the change feed has
// not been read for MaxStaleness.
func (s *Service) lookup(ctx context.Context, id string, now time.Time) (*Verified, error) {
	s.mu.RLock()
	e := s.cache[id]
	s.mu.RUnlock()
	if e != nil && now.Sub(e.loadedAt) < s.cfg.StaleAfter && now.UnixNano()-s.feedReadAt.Load() < int64(s.cfg.MaxStaleness) {
		return e.v, nil
	}
	res, err, _ := s.group.Do(id, func() (any, error) {
		gen := s.gen.Load()
		v, err := s.load(context.WithoutCancel(ctx), id)
		if err != nil {
			return nil, err
		}
		if s.gen.Load() == gen {
			s.store(id, &entry{v: v, loadedAt: s.cfg.Now()})
		}
		return v, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load api key: %w", err)
	}
	return res.(*Verified), nil
}

func (s *Service) load(ctx context.Context, id string) (*Verified, error) {
	k, secrets, err := s.cfg.Store.GetKey(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	u, err := s.usageFor(ctx, k)
	if err != nil {
		return nil, err
	}
	owner, err := principal.Parse(k.Owner)
	if err != nil {
		return nil, fmt.Errorf("key %s: owner: %w", DisplayID(k.ID), err)
	}
	return &Verified{
		Key:       k,
		Owner:     owner,
		DisplayID: DisplayID(k.ID),
		ScopeList: strings.Join(k.Scopes, " "),
		secrets:   secrets,
		usage:     u,
	}, nil
}

func (s *Service) store(id string, e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= s.cfg.CacheSize {
		// Drop about 1% of entries; map order is random, so this is a random
		// eviction: cheap, and fair enough for a cache whose misses cost one
		// indexed read.
		n := max(1, s.cfg.CacheSize/100)
		for k := range s.cache {
			delete(s.cache, k)
			if n--; n == 0 {
				break
			}
		}
	}
	s.cache[id] = e
}

// invalidate drops id from the cache.
func (s *Service) invalidate(id string) {
	s.gen.Add(1)
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	s.group.Forget(id)
}

// Run follows the change feed and flushes usage until ctx is done, then
// flushes once more.
func (s *Service) Run(ctx context.Context) {
	poll := time.NewTicker(s.cfg.PollInterval)
	flush := time.NewTicker(s.cfg.FlushInterval)
	sweep := time.NewTicker(s.cfg.StaleAfter)
	defer poll.Stop()
	defer flush.Stop()
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush(context.WithoutCancel(ctx))
			return
		case <-poll.C:
			s.pollOrWarn(ctx)
		case <-s.wake:
			s.pollOrWarn(ctx)
		case <-flush.C:
			s.flush(ctx)
		case <-sweep.C:
			s.sweepCache()
		}
	}
}

// sweepCache drops the cached keys older than StaleAfter: a look-up loads
// such a key again anyway, so keeping it would only hold memory for every
// key (and every unknown ID) seen since the start, up to CacheSize.
func (s *Service) sweepCache() {
	cutoff := s.cfg.Now().Add(-s.cfg.StaleAfter)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.cache {
		if e.loadedAt.Before(cutoff) {
			delete(s.cache, id)
		}
	}
}

func (s *Service) pollOrWarn(ctx context.Context) {
	if err := s.Poll(ctx); err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("api keys: read change feed", slog.String("error", err.Error()))
	}
}

// Wake asks Run to read the change feed at once rather than at its next
// tick: a store that pushes news of a change (PostgreSQL's LISTEN) calls
// it, so that a revocation on another node takes effect in milliseconds.
// It never blocks; wakes that come while one is pending merge.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Poll reads the change feed once and drops every changed key from the cache.
func (s *Service) Poll(ctx context.Context) error {
	// The cache is as fresh as the moment this read began, once it has
	// reached the end of the feed.
	start := s.cfg.Now().UnixNano()
	for {
		changes, last, err := s.cfg.Changes.ChangesSince(ctx, s.lastSeq.Load())
		if errors.Is(err, ErrFeedTruncated) {
			if err := s.resync(ctx); err != nil {
				return err
			}
			s.feedReadAt.Store(start)
			return nil
		}
		if err != nil {
			return err
		}
		for _, c := range changes {
			s.invalidate(c.KeyID)
		}
		s.lastSeq.Store(last)
		if len(changes) < 10000 {
			s.feedReadAt.Store(start)
			return nil
		}
	}
}

// resync starts following the feed afresh, from its newest entry, with an
// empty cache: what changed in the part of the feed this verifier missed is
// read from the store again.
func (s *Service) resync(ctx context.Context) error {
	latest, err := s.cfg.Changes.LatestChange(ctx)
	if err != nil {
		return err
	}
	s.gen.Add(1)
	s.mu.Lock()
	ids := make([]string, 0, len(s.cache))
	for id := range s.cache {
		ids = append(ids, id)
	}
	clear(s.cache)
	s.mu.Unlock()
	for _, id := range ids {
		s.group.Forget(id)
	}
	s.lastSeq.Store(latest)
	s.cfg.Logger.Warn("api keys: fell behind the pruned change feed; the key cache was dropped",
		slog.Int("keys", len(ids)), slog.Int64("seq", latest))
	return nil
}

// ---- management ----

var (
	scopeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,63}$`)
	ownerRE = regexp.MustCompile(`^(user|service):[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$`)
)

// CreateParams are the properties of a new key.
type CreateParams struct {
	Name   string
	Owner  string // "user:<id>" or "service:<name>"
	Env    Env    // default live
	Scopes []string
	Rate   Rate
	Quota  Quota
	CIDRs  []netip.Prefix
	// TTL is the key's lifetime; 0 means DefaultTTL.
	TTL time.Duration
	// Client names the client profile the key is for ("" for none).
	Client string
}

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

func checkName(n string) error {
	if n == "" {
		return badf("a name is required (--name, or \"name\" in JSON): it is how people tell keys apart")
	}
	if len(n) > 100 || strings.IndexFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return badf("name must be 1 to 100 printable characters")
	}
	return nil
}

func checkScopes(scopes []string) ([]string, error) {
	if len(scopes) > 32 {
		return nil, badf("at most 32 scopes")
	}
	out := make([]string, 0, len(scopes))
	for _, sc := range scopes {
		if !scopeRE.MatchString(sc) {
			return nil, badf("scope %q must be lower-case letters, digits and _.:- (at most 64)", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	slices.Sort(out)
	return out, nil
}

func checkRate(r Rate) error {
	if r == (Rate{}) {
		return nil
	}
	if r.Count <= 0 || r.Period < time.Millisecond || r.Burst < 0 {
		return badf("rate must be a positive count per period of at least 1ms, burst not negative")
	}
	// The whole limit, burst included, as the limiter will take it: a
	// burst it cannot hold would refuse every request of the key.
	if err := (ratelimit.Limit{Count: r.Count, Period: r.Period, Burst: r.Burst}).Validate(); err != nil {
		return badf("rate: %s", err.Error())
	}
	return nil
}

// narrowerRate reports whether next allows no more than was: no limit
// only where there was none, a rate no higher, a burst no larger.
func narrowerRate(was, next Rate) bool {
	if was == (Rate{}) {
		return true
	}
	if next == (Rate{}) {
		return false
	}
	// next.Count/next.Period <= was.Count/was.Period, without overflow:
	// both sides as big products.
	l := new(big.Int).Mul(big.NewInt(next.Count), big.NewInt(int64(was.Period)))
	r := new(big.Int).Mul(big.NewInt(was.Count), big.NewInt(int64(next.Period)))
	return l.Cmp(r) <= 0 && burstOf(next) <= burstOf(was)
}

func burstOf(r Rate) int64 {
	if r.Burst == 0 {
		return r.Count
	}
	return r.Burst
}

// narrowerQuota reports whether next allows no more than was: the same
// period and a limit no higher, or no change where there was none.
func narrowerQuota(was, next Quota) bool {
	if was.Period == QuotaNone {
		return true
	}
	return next.Period == was.Period && next.Limit <= was.Limit
}

// narrowerNetworks reports whether every network of next lies within one
// of was (an empty list is every network).
func narrowerNetworks(was, next []netip.Prefix) bool {
	if len(was) == 0 {
		return true
	}
	if len(next) == 0 {
		return false
	}
	for _, n := range next {
		if !slices.ContainsFunc(was, func(w netip.Prefix) bool {
			return w.Addr().Is4() == n.Addr().Is4() && w.Bits() <= n.Bits() && w.Contains(n.Addr())
		}) {
			return false
		}
	}
	return true
}

func checkQuota(q Quota) error {
	switch q.Period {
	case QuotaNone:
		if q.Limit != 0 {
			return badf("a quota limit needs a period: day, month or total")
		}
	case QuotaDay, QuotaMonth, QuotaTotal:
		if q.Limit <= 0 {
			return badf("quota limit must be positive")
		}
	default:
		return badf("quota period must be day, month or total")
	}
	return nil
}

func checkCIDRs(cs []netip.Prefix) ([]netip.Prefix, error) {
	if len(cs) > 64 {
		return nil, badf("at most 64 networks")
	}
	out := make([]netip.Prefix, 0, len(cs))
	for _, p := range cs {
		if !p.IsValid() {
			return nil, badf("invalid network")
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Create makes a key and returns it with the only copy of its secret.
func (s *Service) Create(ctx context.Context, p CreateParams, actor string) (string, *Key, error) {
	if p.Env == "" {
		p.Env = EnvLive
	}
	if !p.Env.Valid() {
		return "", nil, badf("env must be live or test")
	}
	if err := checkName(p.Name); err != nil {
		return "", nil, err
	}
	if !ownerRE.MatchString(p.Owner) {
		return "", nil, badf(`owner must be "user:<id>" or "service:<name>"`)
	}
	scopes, err := checkScopes(p.Scopes)
	if err != nil {
		return "", nil, err
	}
	if slices.Contains(scopes, AdminScope) && !strings.HasPrefix(p.Owner, "service:") {
		// The admin API refuses people's keys (a person's key leaks with
		// their laptop, and outlives their role): refuse to make one.
		return "", nil, badf("a %s key must be owned by a service account (owner service:NAME); the admin API refuses keys owned by people", AdminScope)
	}
	if err := checkRate(p.Rate); err != nil {
		return "", nil, err
	}
	if err := checkQuota(p.Quota); err != nil {
		return "", nil, err
	}
	cidrs, err := checkCIDRs(p.CIDRs)
	if err != nil {
		return "", nil, err
	}
	if clients := *s.clients.Load(); p.Client != "" && !slices.Contains(clients, p.Client) {
		if len(clients) == 0 {
			return "", nil, badf("client %q: no client profiles are configured", p.Client)
		}
		return "", nil, badf("client must be one of the configured client profiles: %s", strings.Join(clients, ", "))
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = s.cfg.DefaultTTL
	}
	if ttl < time.Minute || ttl > s.cfg.MaxTTL {
		return "", nil, badf("lifetime must be between 1m and %s (api_keys.max_ttl)", duration.Format(s.cfg.MaxTTL))
	}
	gen, err := Generate(s.cfg.Rand, p.Env)
	if err != nil {
		return "", nil, err
	}
	now := s.cfg.Now().UTC()
	k := &Key{
		ID: gen.ID, Name: p.Name, Owner: p.Owner, Env: p.Env, Scopes: scopes, Rate: p.Rate, Quota: p.Quota,
		CIDRs: cidrs, CreatedAt: now, ExpiresAt: now.Add(ttl), Client: p.Client,
	}
	sum := s.storedHash(gen.Raw)
	ev := audit.Event{At: now, Type: audit.KeyCreated, Actor: actor, Subject: DisplayID(k.ID), Detail: map[string]string{
		"owner": k.Owner, "env": string(k.Env), "scopes": strings.Join(scopes, " "), "expires_at": k.ExpiresAt.Format(time.RFC3339),
	}}
	if k.Client != "" {
		ev.Detail["client"] = k.Client
	}
	if err := s.cfg.Store.CreateKey(ctx, k, sum, ev); err != nil {
		return "", nil, fmt.Errorf("create api key: %w", err)
	}
	s.invalidate(k.ID)
	return gen.Raw, k, nil
}

// Get returns a key's properties (never a secret). Pending usage is written
// first, so its last-used time is current.
func (s *Service) Get(ctx context.Context, id string) (*Key, error) {
	s.flush(ctx)
	k, _, err := s.cfg.Store.GetKey(ctx, normalizeID(id))
	return k, err
}

// AdminScope is the scope of keyway's own admin API. Only service accounts'
// keys may hold it.
const AdminScope = "keyway:admin"

// DefaultOverlap is how long a rotated-out secret keeps working when the
// rotation does not say (capped by MaxOverlap): long enough to roll the new
// secret out, short enough to matter. An overlap of 0 ends it at once, for
// a secret that leaked.
const DefaultOverlap = 24 * time.Hour

// RotateParams are a rotation's choices.
type RotateParams struct {
	// Overlap is how long the old secret keeps working; nil means
	// DefaultOverlap.
	Overlap *time.Duration
	// TTL, when set, gives the key a new lifetime from now (within MaxTTL):
	// rotation is how a key's life is extended, with a fresh secret.
	TTL time.Duration
}

// List returns the keys of owner, or every key when owner is empty. Pending
// usage is written first, so last-used times are current.
func (s *Service) List(ctx context.Context, owner string) ([]*Key, error) {
	s.flush(ctx)
	return s.cfg.Store.ListKeys(ctx, owner)
}

// normalizeID accepts an ID with or without the "key_" display prefix.
func normalizeID(id string) string { return strings.TrimPrefix(id, "key_") }

// UpdateParams changes a key. Nil fields stay as they are.
type UpdateParams struct {
	Name *string
	// Scopes may only narrow: a key never gains a scope after creation
	// (create a new key instead), so a leaked key cannot be widened by a
	// compromised management client into more than it was.
	Scopes *[]string
	Rate   *Rate
	Quota  *Quota
	CIDRs  *[]netip.Prefix
	// ExpiresAt may only move earlier.
	ExpiresAt *time.Time
}

// Update changes a key's properties; running servers see it within a second.
// The read, the checks and the write happen in one store transaction, so two
// concurrent updates cannot undo each other.
func (s *Service) Update(ctx context.Context, id string, p UpdateParams, actor string) (*Key, error) {
	id = normalizeID(id)
	now := s.cfg.Now().UTC()
	var out *Key
	err := s.cfg.Store.UpdateKey(ctx, id, func(k *Key) (audit.Event, error) {
		if err := applyUpdate(k, p, now); err != nil {
			return audit.Event{}, err
		}
		out = k
		return audit.Event{At: now, Type: audit.KeyUpdated, Actor: actor, Subject: DisplayID(id),
			Detail: map[string]string{"changed": strings.Join(p.fields(), " "), "scopes": strings.Join(k.Scopes, " ")}}, nil
	})
	if err != nil {
		return nil, err
	}
	s.invalidate(id)
	return out, nil
}

func (p UpdateParams) fields() []string {
	var f []string
	for name, set := range map[string]bool{"name": p.Name != nil, "scopes": p.Scopes != nil, "rate": p.Rate != nil,
		"quota": p.Quota != nil, "cidrs": p.CIDRs != nil, "expires_at": p.ExpiresAt != nil} {
		if set {
			f = append(f, name)
		}
	}
	slices.Sort(f)
	return f
}

// applyUpdate checks p against k and applies it, or changes nothing.
func applyUpdate(k *Key, p UpdateParams, now time.Time) error {
	if !k.RevokedAt.IsZero() {
		return ErrRevoked
	}
	next := *k
	if p.Name != nil {
		if err := checkName(*p.Name); err != nil {
			return err
		}
		next.Name = *p.Name
	}
	if p.Scopes != nil {
		scopes, err := checkScopes(*p.Scopes)
		if err != nil {
			return err
		}
		for _, sc := range scopes {
			if !slices.Contains(k.Scopes, sc) {
				return badf("scopes can only be narrowed: %q is not a scope of this key (create a new key instead)", sc)
			}
		}
		next.Scopes = scopes
	}
	// Like scopes, limits and networks only narrow here: widening a key
	// means a new key, which is audited as one.
	if p.Rate != nil {
		if err := checkRate(*p.Rate); err != nil {
			return err
		}
		if !narrowerRate(k.Rate, *p.Rate) {
			return badf("the rate limit can only be lowered: it is %d per %s (burst %d) (create a new key instead)",
				k.Rate.Count, duration.Format(k.Rate.Period), burstOf(k.Rate))
		}
		next.Rate = *p.Rate
	}
	if p.Quota != nil {
		if err := checkQuota(*p.Quota); err != nil {
			return err
		}
		if !narrowerQuota(k.Quota, *p.Quota) {
			return badf("the quota can only be lowered, with the same period: it is %d per %s (create a new key instead)",
				k.Quota.Limit, k.Quota.Period)
		}
		next.Quota = *p.Quota
	}
	if p.CIDRs != nil {
		cidrs, err := checkCIDRs(*p.CIDRs)
		if err != nil {
			return err
		}
		if !narrowerNetworks(k.CIDRs, cidrs) {
			return badf("networks can only be narrowed: each must lie within one the key has (create a new key instead)")
		}
		next.CIDRs = cidrs
	}
	if p.ExpiresAt != nil {
		at := p.ExpiresAt.UTC()
		if at.After(k.ExpiresAt) {
			return badf("expiry can only be brought forward here; to extend it, rotate the key with a new lifetime (within api_keys.max_ttl)")
		}
		// A time in the past means "now": it also keeps absurd dates (the
		// year 1000) from overflowing the stored nanoseconds into the future.
		if at.Before(now) {
			at = now
		}
		next.ExpiresAt = at
	}
	*k = next
	return nil
}

// Rotate gives a key a new secret, returned once. The old secret keeps
// working for overlap (0: it dies now), so clients can be redeployed.
func (s *Service) Rotate(ctx context.Context, id string, p RotateParams, actor string) (string, error) {
	id = normalizeID(id)
	overlap := min(DefaultOverlap, s.cfg.MaxOverlap)
	if p.Overlap != nil {
		overlap = *p.Overlap
	}
	if overlap < 0 || overlap > s.cfg.MaxOverlap {
		return "", badf("overlap must be between 0 and %s", duration.Format(s.cfg.MaxOverlap))
	}
	if p.TTL != 0 && (p.TTL < time.Minute || p.TTL > s.cfg.MaxTTL) {
		return "", badf("the new lifetime must be between 1m and %s (api_keys.max_ttl)", duration.Format(s.cfg.MaxTTL))
	}
	k, _, err := s.cfg.Store.GetKey(ctx, id)
	if err != nil {
		return "", err
	}
	if !k.RevokedAt.IsZero() {
		return "", ErrRevoked
	}
	secret, err := randomBase62(s.cfg.Rand, SecretLen)
	if err != nil {
		return "", err
	}
	head := Prefix + string(k.Env) + "_" + k.ID + secret
	sum := checksum(head)
	raw := head + string(sum[:])
	h := s.storedHash(raw)
	now := s.cfg.Now().UTC()
	ev := audit.Event{At: now, Type: audit.KeyRotated, Actor: actor, Subject: DisplayID(id),
		Detail: map[string]string{"overlap": duration.Format(overlap)}}
	var expiresAt time.Time // zero: the key keeps its expiry
	if p.TTL != 0 {
		expiresAt = now.Add(p.TTL)
		ev.Detail["expires_at"] = expiresAt.Format(time.RFC3339)
	}
	if err := s.cfg.Store.RotateKey(ctx, id, h, now.Add(overlap), expiresAt, ev); err != nil {
		return "", err
	}
	s.invalidate(id)
	return raw, nil
}

// Revoke kills a key at once, everywhere.
func (s *Service) Revoke(ctx context.Context, id, reason, actor string) error {
	id = normalizeID(id)
	reason = audit.Clip(reason, 200)
	now := s.cfg.Now().UTC()
	ev := audit.Event{At: now, Type: audit.KeyRevoked, Actor: actor, Subject: DisplayID(id), Detail: map[string]string{"reason": reason}}
	if err := s.cfg.Store.RevokeKey(ctx, id, now, reason, ev); err != nil {
		return err
	}
	s.invalidate(id)
	return nil
}

// Delete removes a key and its usage; the audit trail keeps its record.
func (s *Service) Delete(ctx context.Context, id, actor string) error {
	id = normalizeID(id)
	ev := audit.Event{At: s.cfg.Now().UTC(), Type: audit.KeyDeleted, Actor: actor, Subject: DisplayID(id)}
	if err := s.cfg.Store.DeleteKey(ctx, id, ev); err != nil {
		return err
	}
	s.invalidate(id)
	return nil
}

// ReportLeak revokes the key raw if it is one of ours with a matching secret,
// whatever its state: holding a key is enough to kill it. It reports
// whether raw was a real key. source says where the leak was seen; it is
// audited, never the key.
func (s *Service) ReportLeak(ctx context.Context, raw, source string) (bool, error) {
	p, err := Parse(raw)
	if err != nil {
		return false, nil
	}
	k, secrets, err := s.cfg.Store.GetKey(ctx, p.ID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Any secret the key ever had still identifies it, even past its overlap.
	if live, dead := s.matches(&Verified{secrets: secrets}, raw, s.cfg.Now()); !live && !dead {
		return false, nil
	}
	source = audit.Clip(source, 200)
	if k.RevokedAt.IsZero() {
		now := s.cfg.Now().UTC()
		ev := audit.Event{At: now, Type: audit.KeyLeaked, Actor: "leak-report", Subject: DisplayID(k.ID),
			Detail: map[string]string{"source": source}}
		if err := s.cfg.Store.RevokeKey(ctx, k.ID, now, "leaked: "+source, ev); err != nil {
			return true, err
		}
		s.invalidate(k.ID)
	}
	return true, nil
}

// The states Inspect reports.
const (
	StateLive    = "live"    // it works now
	StateRevoked = "revoked" // revoked
	StateExpired = "expired" // past its expiry
	StateRetired = "retired" // a secret a rotation retired, no longer working
	StateUnknown = "unknown" // not one of this store's keys (no such ID, or another secret)
)

// Inspect says what raw is to this store, for someone who found it (keyway
// scan --check): live, revoked, expired, retired or unknown. Unlike Verify
// it counts no use and caches nothing.
func (s *Service) Inspect(ctx context.Context, raw string) (string, error) {
	p, err := Parse(raw)
	if err != nil {
		return StateUnknown, nil
	}
	k, secrets, err := s.cfg.Store.GetKey(ctx, p.ID)
	if errors.Is(err, ErrNotFound) {
		return StateUnknown, nil
	}
	if err != nil {
		return "", err
	}
	now := s.cfg.Now()
	live, dead := s.matches(&Verified{secrets: secrets}, raw, now)
	switch {
	case !live && !dead:
		return StateUnknown, nil
	case !k.RevokedAt.IsZero():
		return StateRevoked, nil
	case !now.Before(k.ExpiresAt):
		return StateExpired, nil
	case !live:
		return StateRetired, nil
	}
	return StateLive, nil
}
