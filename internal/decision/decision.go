package decision

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/prometheus/client_golang/prometheus"
)

// Policy names who may call a route.
type Policy string

// The policies.
const (
	// Public lets anyone in (subject to the route's rate limit, and to the
	// CSRF rule when the route asks for it).
	Public Policy = "public"
	// APIKey needs a program's API key holding the route's scopes.
	APIKey Policy = "api_key"
	// Session needs a person signed in with a passkey, through the
	// browser's session cookie.
	Session Policy = "session"
)

// KeyVerifier is what the core needs of the API key service.
type KeyVerifier interface {
	// Verify returns apikey.ErrInvalid for any key that must not pass, and
	// another error when it cannot decide (the store is down).
	Verify(ctx context.Context, raw string, client netip.Addr) (*apikey.Verified, error)
	// ConsumeQuota takes one request from the key's quota, or reports
	// false, taking nothing, when it is spent.
	ConsumeQuota(ctx context.Context, v *apikey.Verified) (bool, error)
	// Record counts one request of the key with an outcome.
	Record(v *apikey.Verified, o apikey.Outcome)
}

// SessionVerifier is what the core needs of the session manager.
type SessionVerifier interface {
	// Authenticate returns session.ErrNotFound for a token that is
	// unknown, expired or revoked, and another error when the store
	// cannot be read.
	Authenticate(ctx context.Context, token string) (*session.Session, error)
	// Fresh reports whether s had a user-verified assertion recently.
	Fresh(s *session.Session) bool
}

// SessionUserVerifier is a SessionVerifier that reads a session and its
// person together: one store read a request instead of two. When
// Config.Sessions has it, the core uses it and Users only for what it
// could not say.
type SessionUserVerifier interface {
	// AuthenticateUser is Authenticate that also returns the session's
	// person, read with it (never nil when err is nil).
	AuthenticateUser(ctx context.Context, token string) (*session.Session, *passkey.User, error)
}

// UserLookup finds the person behind a session. It returns
// passkey.ErrNotFound for a user that does not exist.
type UserLookup interface {
	User(ctx context.Context, id string) (*passkey.User, error)
}

// Config configures a Core.
type Config struct {
	// OnGuessLockout, when set, hears of each source as key guessing
	// blocks it (to audit it), once per block.
	OnGuessLockout func(src netip.Addr)
	// Keys verifies API keys. Optional: without it api_key routes deny
	// everyone.
	Keys KeyVerifier
	// KeyLimiter enforces each key's own rate. Required with Keys.
	KeyLimiter ratelimit.Limiter[string]
	// KeyHeader carries API keys: "Authorization" (as Bearer) or another
	// header holding the bare key. Default "Authorization".
	KeyHeader string
	// Sessions verifies session tokens. Optional: without it session
	// routes deny everyone.
	Sessions SessionVerifier
	// Users finds the person behind a session. Required with Sessions.
	Users UserLookup
	// Origins are keyway's own origins, for the CSRF rule. Required.
	Origins []string
	// Logger receives store failures. Required.
	Logger *slog.Logger
	// Metrics, when set, receives keyway_decisions_total{policy,reason}
	// and keyway_apikey_requests_total{outcome}: fixed, low cardinality.
	Metrics prometheus.Registerer
	// Clients are the client profiles (the Backend-for-Frontend): on the
	// routes that apply them, a request whose credential names a client
	// may call only that client's routes and methods.
	Clients []Client
	// Limiters makes the limiters of routes. Nil: in-process ones, per node.
	Limiters Limiters
}

// Limiters makes the rate limiters of routes: in-process (the default) or
// shared by many nodes (store/redis). A limiter's name is unique per route
// and kind, and is its name in the shared store.
type Limiters interface {
	ByKey(name string) CloseLimiter[string]
	ByAddr(name string) CloseLimiter[netip.Addr]
}

// CloseLimiter is a rate limiter to stop when its route goes.
type CloseLimiter[K comparable] interface {
	ratelimit.Limiter[K]
	Close()
}

// memoryLimiters are in-process limiters.
type memoryLimiters struct{}

func (memoryLimiters) ByKey(string) CloseLimiter[string] {
	return ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
}

func (memoryLimiters) ByAddr(string) CloseLimiter[netip.Addr] {
	return ratelimit.NewMemory[netip.Addr](ratelimit.MemoryConfig{})
}

// Client is a client profile, as the core uses it.
type Client struct {
	// Name is the profile's name; API keys made for it carry it.
	Name string
	// Credential is Session (browsers; at most one profile) or APIKey.
	Credential Policy
	// Routes are the route names the client may call, each with the
	// methods it may use (nil or empty: every method of the route).
	Routes map[string][]string
	// CORSOrigins are the origins of the client's browser app (session
	// clients): the CSRF rule accepts them, same-site, besides keyway's own.
	CORSOrigins []string
}

// allows reports whether the client may call route name with method.
func (cl *Client) allows(name, method string) bool {
	methods, ok := cl.Routes[name]
	return ok && (len(methods) == 0 || slices.Contains(methods, method))
}

// Core decides requests. It is safe for concurrent use.
type Core struct {
	cfg      Config
	bearer   bool
	problems problems
	counts   counters
	profiles atomic.Pointer[Profiles]
	guess    *guesses
	// keyShelf and addrShelf keep route limiters across reloads.
	keyShelf  shelf[string]
	addrShelf shelf[netip.Addr]
	// sessionUsers is cfg.Sessions when it reads a session's person too.
	sessionUsers SessionUserVerifier
}

// Profiles are a set of client profiles, fixed once made. The core holds
// the set in force (SetProfiles replaces it whole); a route made with a
// set of its own (RouteConfig.Profiles) is decided with that one, so that
// a gateway built for a config reload decides and shapes by one config.
type Profiles struct {
	byName  map[string]*Client
	browser *Client // the session client, if any
}

// NewProfiles checks clients (at most one may use sessions) and makes a
// set of them.
func NewProfiles(clients []Client) (*Profiles, error) {
	clients = slices.Clone(clients)
	p := &Profiles{byName: make(map[string]*Client, len(clients))}
	for i := range clients {
		cl := &clients[i]
		if cl.Credential == Session {
			if p.browser != nil {
				return nil, errors.New("decision: only one client may use sessions")
			}
			p.browser = cl
		}
		p.byName[cl.Name] = cl
	}
	return p, nil
}

// Has reports whether the set holds a profile of that name.
func (p *Profiles) Has(name string) bool { return p.byName[name] != nil }

// Len is the number of profiles in the set.
func (p *Profiles) Len() int { return len(p.byName) }

// SetProfiles replaces the client profiles in force (a config reload).
func (c *Core) SetProfiles(p *Profiles) { c.profiles.Store(p) }

// Profiles is the set of client profiles in force.
func (c *Core) Profiles() *Profiles { return c.profiles.Load() }

// profilesFor is the set rt is decided with: its own, or the core's.
func (c *Core) profilesFor(rt *Route) *Profiles {
	if p := rt.cfg.Profiles; p != nil {
		return p
	}
	return c.profiles.Load()
}

// New validates cfg and returns a Core.
func New(cfg Config) (*Core, error) {
	if cfg.Logger == nil || len(cfg.Origins) == 0 {
		return nil, errors.New("decision: Logger and Origins are required")
	}
	if cfg.Keys != nil && cfg.KeyLimiter == nil {
		return nil, errors.New("decision: KeyLimiter is required with Keys")
	}
	if cfg.Sessions != nil && cfg.Users == nil {
		return nil, errors.New("decision: Users is required with Sessions")
	}
	if cfg.KeyHeader == "" {
		cfg.KeyHeader = "Authorization"
	}
	if cfg.Limiters == nil {
		cfg.Limiters = memoryLimiters{}
	}
	cfg.KeyHeader = canonicalHeader(cfg.KeyHeader)
	c := &Core{cfg: cfg, bearer: cfg.KeyHeader == "Authorization"}
	c.sessionUsers, _ = cfg.Sessions.(SessionUserVerifier)
	p, err := NewProfiles(cfg.Clients)
	if err != nil {
		return nil, err
	}
	c.profiles.Store(p)
	c.cfg.Clients = nil // in c.profiles, which a reload replaces
	c.guess = newGuesses(cfg.Limiters.ByAddr("guesses"), cfg.OnGuessLockout)
	c.problems = newProblems(cfg.KeyHeader)
	if err := c.counts.register(cfg.Metrics); err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops the core's own limiter (the guessing budget). Routes are
// closed by whoever made them.
func (c *Core) Close() { c.guess.limiter.Close() }

// KeyHeader is the canonical name of the header that carries API keys.
func (c *Core) KeyHeader() string { return c.cfg.KeyHeader }

// Origins are keyway's own origins.
func (c *Core) Origins() []string { return c.cfg.Origins }

// Identity is who a request was found to come from.
type Identity struct {
	// Principal is the user or service account acting; Subject is its
	// string form ("user:usr_…", "service:billing") for headers and logs.
	Principal principal.Principal
	Subject   string
	// KeyID is the API key's display ID ("key_…"); "" for a session.
	KeyID string
	// Scopes are the API key's scopes, joined by spaces.
	Scopes string
	// Key is the verified key, for its owner's properties.
	Key *apikey.Verified
	// Name is a person's display name.
	Name string
	// Roles are the person's roles, joined by spaces (session routes).
	Roles string
	// Session and User are the session and its person (session routes).
	Session *session.Session
	User    *passkey.User
	// LimiterKey keys per-key route limits: the key's ID, or the user's.
	LimiterKey string
	// Client is the client profile the credential names, "" for none.
	Client string
}

// Decision is the answer for one request.
type Decision struct {
	// Reason is Allowed, or why the request is refused.
	Reason Reason
	// Identity is who the request comes from (for an allowed request on a
	// route that needs a credential, and for some refusals).
	Identity Identity
	// Limit, when LimitName is set, is a rate limiter's decision to report
	// in the RateLimit fields, with the limit it applied.
	Limit     ratelimit.Decision
	LimitName string
	LimitRule ratelimit.Limit
	// Why is, for a BadKey refusal, why the key is invalid (one of
	// apikey's Why values): for the operator's logs and metrics, never
	// the client.
	Why string
	// route is the route decided for, for the refusal's details.
	route *Route
}

// Allowed reports whether the request may pass.
func (d *Decision) Allowed() bool { return d.Reason == Allowed }

// RouteLimit is a route's own rate limit.
type RouteLimit struct {
	Limit ratelimit.Limit
	// PerKey limits each API key (or each person, on a session route)
	// separately; otherwise each client source.
	PerKey bool
}

// RouteConfig is what a route, or one of keyway's own endpoints, requires.
type RouteConfig struct {
	// Name labels the route in logs and metrics. Required.
	Name string
	// Policy is who may call. Required.
	Policy Policy
	// Scopes an API key must hold, every one (policy api_key).
	Scopes []string
	// Roles a person must hold one of (policy session); empty: anyone
	// signed in.
	Roles []string
	// ServiceOnly refuses keys owned by people (policy api_key): the admin
	// API takes only service accounts' keys.
	ServiceOnly bool
	// Optional lets a request without a live session through, with no
	// identity (policy session): for endpoints that act differently for a
	// signed-in person, such as sign-up that adds a passkey instead.
	Optional bool
	// AllowRestricted lets recovery sessions through (policy session):
	// only for the endpoints that add a passkey and say who is signed in.
	AllowRestricted bool
	// Fresh needs a recent user-verified assertion (policy session).
	Fresh bool
	// Admin needs the admin role, and Fresh (policy session).
	Admin bool
	// CSRF applies the CSRF rule to state-changing requests even without
	// a session cookie (keyway's own endpoints: against login CSRF).
	CSRF bool
	// RateLimit limits the route per source or per key. Optional.
	RateLimit *RouteLimit
	// Clients applies the client profiles (proxied routes; keyway's own
	// endpoints do not).
	Clients bool
	// Profiles, when set, are the client profiles this route is decided
	// with (a gateway's own, made with its routes from one config); nil:
	// the core's in force.
	Profiles *Profiles
	// Instance tells apart routes of one gateway that share a name (a
	// name defaults to the path, which two routes of different methods
	// share): each keeps an in-process limiter of its own.
	Instance int
}

// Route is a RouteConfig prepared by a Core, with its own limiter.
type Route struct {
	cfg       RouteConfig
	scopeList string
	ipLimit   CloseLimiter[netip.Addr]
	keyLimit  CloseLimiter[string]
}

// NewRoute prepares a route. Call Close when it is no longer used.
func (c *Core) NewRoute(cfg RouteConfig) (*Route, error) {
	if cfg.Name == "" {
		return nil, errors.New("decision: a route needs a name")
	}
	switch cfg.Policy {
	case Public, APIKey, Session:
	default:
		return nil, errors.New("decision: route " + cfg.Name + ": unknown policy " + string(cfg.Policy))
	}
	if len(cfg.Scopes) > 0 && cfg.Policy != APIKey {
		return nil, errors.New("decision: route " + cfg.Name + ": scopes need policy api_key")
	}
	if len(cfg.Roles) > 0 && cfg.Policy != Session {
		return nil, errors.New("decision: route " + cfg.Name + ": roles need policy session")
	}
	r := &Route{cfg: cfg, scopeList: strings.Join(cfg.Scopes, " ")}
	if rl := cfg.RateLimit; rl != nil {
		if err := rl.Limit.Validate(); err != nil {
			return nil, errors.New("decision: route " + cfg.Name + ": " + err.Error())
		}
		if rl.PerKey {
			if cfg.Policy == Public {
				return nil, errors.New("decision: route " + cfg.Name + ": a per-key rate limit needs a credential")
			}
			r.keyLimit = c.keyShelf.take(shelfID(cfg.Name, cfg.Instance, rl.Limit), func() CloseLimiter[string] {
				return c.cfg.Limiters.ByKey("route:" + cfg.Name)
			})
		} else {
			r.ipLimit = c.addrShelf.take(shelfID(cfg.Name, cfg.Instance, rl.Limit), func() CloseLimiter[netip.Addr] {
				return c.cfg.Limiters.ByAddr("route:" + cfg.Name)
			})
		}
	}
	return r, nil
}

// Name is the route's name.
func (r *Route) Name() string { return r.cfg.Name }

// Policy is the route's policy.
func (r *Route) Policy() Policy { return r.cfg.Policy }

// Scopes are the scopes the route needs, joined by spaces.
func (r *Route) Scopes() string { return r.scopeList }

// Close stops the route's limiters.
func (r *Route) Close() {
	if r.ipLimit != nil {
		r.ipLimit.Close()
	}
	if r.keyLimit != nil {
		r.keyLimit.Close()
	}
}

// Decide answers whether the request of f may pass rt, and as whom. Every
// limit it passes is counted.
func (c *Core) Decide(ctx context.Context, rt *Route, f *Facts) Decision {
	d := c.decide(ctx, rt, f, false)
	c.counts.decision(rt.cfg.Policy, d.Reason)
	return d
}

// Recheck answers whether the credential that opened a long-lived request
// (a WebSocket tunnel) still passes rt. It counts nothing and spends no
// limit: the request was counted once, when it began.
func (c *Core) Recheck(ctx context.Context, rt *Route, f *Facts) Reason {
	return c.Reconsider(ctx, rt, f).Reason
}

// Reconsider is Recheck with the whole decision: who, and as which
// client under rt's profiles (a tunnel judged again by a reloaded config).
func (c *Core) Reconsider(ctx context.Context, rt *Route, f *Facts) Decision {
	return c.decide(ctx, rt, f, true)
}

func (c *Core) decide(ctx context.Context, rt *Route, f *Facts, recheck bool) Decision {
	d := Decision{route: rt}
	cfg := &rt.cfg
	if !recheck && rt.ipLimit != nil && !c.limit(&d, rt.ipLimit.Allow(f.Source, cfg.RateLimit.Limit), "ip", cfg.RateLimit.Limit) {
		return d
	}
	if cfg.CSRF && !c.csrfOK(rt, f) {
		d.Reason = CSRF
		return d
	}
	switch cfg.Policy {
	case Public:
		return d
	case APIKey:
		c.apiKey(ctx, &d, rt, f, recheck)
	case Session:
		c.session(ctx, &d, rt, f)
	}
	if d.Reason == Allowed && cfg.Clients {
		c.client(&d, rt, f)
	}
	if d.Reason != Allowed || recheck {
		return d
	}
	if rt.keyLimit != nil && !c.limit(&d, rt.keyLimit.Allow(d.Identity.LimiterKey, cfg.RateLimit.Limit), "route", cfg.RateLimit.Limit) {
		if v := d.Identity.Key; v != nil {
			c.cfg.Keys.Record(v, apikey.OutcomeRateLimited)
			c.counts.key("rate_limited")
		}
		return d
	}
	if v := d.Identity.Key; v != nil {
		ok, err := c.cfg.Keys.ConsumeQuota(ctx, v)
		if err != nil {
			c.cfg.Logger.LogAttrs(ctx, slog.LevelError, "quota check failed",
				slog.String("request_id", f.RequestID), slog.String("error", err.Error()))
			d.Reason = Unavailable
			return d
		}
		if !ok {
			c.cfg.Keys.Record(v, apikey.OutcomeQuota)
			c.counts.key("quota_exceeded")
			d.Reason = QuotaSpent
			return d
		}
		c.cfg.Keys.Record(v, apikey.OutcomeOK)
		c.counts.key("ok")
	}
	return d
}

// client applies the client profile that the credential names: a browser
// session is the session client, a key names its own. A key naming a
// profile that does not exist calls nothing.
func (c *Core) client(d *Decision, rt *Route, f *Facts) {
	var cl *Client
	p := c.profilesFor(rt)
	switch {
	case d.Identity.Session != nil:
		cl = p.browser
	case d.Identity.Key != nil && d.Identity.Key.Key.Client != "":
		if cl = p.byName[d.Identity.Key.Key.Client]; cl == nil || cl.Credential != APIKey {
			d.Reason = ClientRoute
			return
		}
	}
	if cl == nil {
		return
	}
	d.Identity.Client = cl.Name
	if !cl.allows(rt.cfg.Name, f.Method) {
		d.Reason = ClientRoute
	}
}

// limit records a limiter's decision: it is reported once half of the
// burst is spent, and on every refusal. It reports whether the request may
// go on.
func (c *Core) limit(d *Decision, ld ratelimit.Decision, name string, l ratelimit.Limit) bool {
	if ld.Remaining*2 <= ld.Limit {
		d.Limit, d.LimitName, d.LimitRule = ld, name, l
	}
	if !ld.Allowed {
		d.Reason = RateLimited
		if ld.Unavailable {
			d.Reason = Unavailable // a shared limiter out of reach fails closed
		}
		d.Limit, d.LimitName, d.LimitRule = ld, name, l
	}
	return ld.Allowed
}

// apiKey is the whole API key sequence but the route limit and the quota:
// the key, its networks, the route's scopes, the owner rule, the key's own
// rate.
func (c *Core) apiKey(ctx context.Context, d *Decision, rt *Route, f *Facts, recheck bool) {
	if c.cfg.Keys == nil {
		d.Reason = NoKey // fail closed: a policy with nothing behind it
		return
	}
	if f.Key == "" {
		c.counts.key("missing")
		d.Reason = NoKey
		return
	}
	if w := c.guess.wait(f.Source); w > 0 && !recheck {
		// The source presented too many keys that never were: no key of
		// its is checked, the right one neither, until the budget refills.
		c.counts.key("guessing")
		d.Reason, d.Why = RateLimited, "guessing"
		d.Limit = ratelimit.Decision{Limit: GuessLimit.Burst, RetryAfter: w}
		d.LimitName, d.LimitRule = "guesses", GuessLimit
		return
	}
	v, err := c.cfg.Keys.Verify(ctx, f.Key, f.Client)
	if errors.Is(err, apikey.ErrInvalid) {
		c.counts.key("invalid")
		d.Reason = BadKey
		// For the operator only (the access log, metrics): every client
		// gets the same answer.
		var ik *apikey.InvalidKey
		if errors.As(err, &ik) {
			d.Why, d.Identity.KeyID = ik.Why, ik.KeyID
			c.counts.invalid(ik.Why)
			if guessLike(ik.Why) && f.Source.IsValid() && !recheck {
				c.guess.failed(f.Source)
			}
		}
		return
	}
	if err != nil {
		c.counts.key("error")
		c.cfg.Logger.LogAttrs(ctx, slog.LevelError, "api key check failed",
			slog.String("request_id", f.RequestID), slog.String("error", err.Error()))
		d.Reason = Unavailable
		return
	}
	d.Identity = Identity{Principal: v.Owner, Subject: v.Key.Owner, KeyID: v.DisplayID, Scopes: v.ScopeList, Key: v,
		LimiterKey: v.Key.ID}
	if !v.HasScopes(rt.cfg.Scopes) || (rt.cfg.ServiceOnly && !v.Owner.IsService()) {
		if !recheck {
			c.cfg.Keys.Record(v, apikey.OutcomeForbidden)
			c.counts.key("forbidden")
		}
		d.Reason = Scope
		if !v.HasScopes(rt.cfg.Scopes) {
			return
		}
		d.Reason = NotService
		return
	}
	if recheck {
		return
	}
	if kr := v.Key.Rate; kr.Count > 0 {
		l := ratelimit.Limit{Count: kr.Count, Period: kr.Period, Burst: kr.Burst}
		if !c.limit(d, c.cfg.KeyLimiter.Allow(v.Key.ID, l), "key", l) {
			c.cfg.Keys.Record(v, apikey.OutcomeRateLimited)
			c.counts.key("rate_limited")
		}
	}
}

// session is the whole session sequence: the cookie, the CSRF rule, the
// session itself, recovery restrictions, the person, freshness and role.
func (c *Core) session(ctx context.Context, d *Decision, rt *Route, f *Facts) {
	cfg := &rt.cfg
	if c.cfg.Sessions == nil {
		d.Reason = NoSession
		return
	}
	if f.Session == "" {
		if !cfg.Optional {
			d.Reason = NoSession
		}
		return
	}
	if !c.csrfOK(rt, f) || (f.Upgrade && !f.upgradeOriginOK(c.cfg.Origins)) {
		d.Reason = CSRF
		return
	}
	c.sessionSequence(ctx, d, rt, f)
	if d.Reason == NoSession && cfg.Optional {
		// Whatever is wrong with the session, the request goes on as
		// anonymous, without an identity.
		d.Reason, d.Identity = Allowed, Identity{}
	}
}

func (c *Core) sessionSequence(ctx context.Context, d *Decision, rt *Route, f *Facts) {
	cfg := &rt.cfg
	var s *session.Session
	var u *passkey.User
	var err error
	if c.sessionUsers != nil {
		s, u, err = c.sessionUsers.AuthenticateUser(ctx, f.Session)
	} else {
		s, err = c.cfg.Sessions.Authenticate(ctx, f.Session)
	}
	switch {
	case errors.Is(err, session.ErrNotFound):
		d.Reason = NoSession
		return
	case err != nil:
		c.cfg.Logger.LogAttrs(ctx, slog.LevelError, "session check failed",
			slog.String("request_id", f.RequestID), slog.String("error", err.Error()))
		d.Reason = Unavailable
		return
	case s.Restricted && !cfg.AllowRestricted:
		// A recovery session may only add a passkey, in keyway's own pages.
		d.Reason = NoSession
		return
	}
	if u == nil {
		u, err = c.cfg.Users.User(ctx, s.UserID)
	}
	switch {
	case errors.Is(err, passkey.ErrNotFound):
		d.Reason = NoSession
		return
	case err != nil:
		c.cfg.Logger.LogAttrs(ctx, slog.LevelError, "session user lookup failed",
			slog.String("request_id", f.RequestID), slog.String("error", err.Error()))
		d.Reason = Unavailable
		return
	case !u.DisabledAt.IsZero():
		d.Reason = NoSession
		return
	}
	p := principal.User(u.ID)
	d.Identity = Identity{Principal: p, Subject: p.String(), Name: u.DisplayName, Roles: strings.Join(u.Roles, " "), Session: s, User: u, LimiterKey: u.ID}
	switch {
	case cfg.Admin && u.Role != passkey.RoleAdmin:
		d.Reason = NotAdmin
	case len(cfg.Roles) > 0 && !slices.ContainsFunc(cfg.Roles, func(r string) bool { return slices.Contains(u.Roles, r) }):
		d.Reason = Role
	case (cfg.Fresh || cfg.Admin) && !c.cfg.Sessions.Fresh(s):
		d.Reason = StepUp
	}
}
