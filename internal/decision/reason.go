package decision

import (
	"net/http"
	"strconv"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/prometheus/client_golang/prometheus"
)

// Reason is why a request is refused, or Allowed.
type Reason uint8

// The reasons. Their HTTP meaning is in Problem; their names (String) are
// stable, for logs and metric labels.
const (
	Allowed Reason = iota
	// NoKey: the route needs an API key and none was sent (401).
	NoKey
	// BadKey: the key is malformed, unknown, wrong, revoked, expired,
	// rotated out or used from outside its networks (401, one answer).
	BadKey
	// NoSession: no live session, or its person is disabled (401).
	NoSession
	// CSRF: a cookie-authenticated state change without the CSRF
	// evidence, or a cross-site WebSocket handshake (403).
	CSRF
	// Scope: the key lacks a scope the route needs (403).
	Scope
	// NotService: the route takes only service accounts' keys (403).
	NotService
	// NotAdmin: the route needs the admin role (403).
	NotAdmin
	// StepUp: the route needs a recent user-verified assertion (401).
	StepUp
	// RateLimited: a rate limit is spent (429, Retry-After).
	RateLimited
	// QuotaSpent: the key's quota is spent (429).
	QuotaSpent
	// Unavailable: the credential could not be checked (503: fail closed).
	Unavailable
	// ClientRoute: the client profile the credential names may not call
	// this route or method (403).
	ClientRoute
	// Role: the person holds none of the roles the route needs (403).
	Role
	numReasons
)

var reasonNames = [numReasons]string{"allowed", "no_key", "bad_key", "no_session", "csrf", "scope", "not_service",
	"not_admin", "step_up", "rate_limited", "quota_spent", "unavailable", "client_route", "role"}

// String is the reason's stable name.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Error makes a refusal usable as an error: a handler that finds a reason
// to refuse returns it, and the error mapping answers it like the core.
func (r Reason) Error() string { return "refused: " + r.String() }

// Status is the HTTP status that answers the reason.
func (r Reason) Status() int {
	switch r {
	case Allowed:
		return http.StatusOK
	case NoKey, BadKey, NoSession, StepUp:
		return http.StatusUnauthorized
	case CSRF, Scope, NotService, NotAdmin, ClientRoute, Role:
		return http.StatusForbidden
	case RateLimited, QuotaSpent:
		return http.StatusTooManyRequests
	default:
		return http.StatusServiceUnavailable
	}
}

// problems are the fixed answers of a Core, built once: the hot path
// writes a refusal without building its text.
type problems [numReasons]*problem.Problem

func newProblems(keyHeader string) problems {
	where := "in the " + keyHeader + " header"
	if keyHeader == "Authorization" {
		where = "in the Authorization header: Bearer kw_…"
	}
	var p problems
	set := func(r Reason, t problem.Type, detail string) { p[r] = problem.New(t, r.Status(), detail) }
	set(NoKey, problem.Unauthenticated, "this route needs an API key "+where)
	set(BadKey, problem.Unauthenticated, "the API key is not valid")
	set(NoSession, problem.Unauthenticated, "sign in with a passkey first")
	set(CSRF, problem.CSRF, "state-changing requests must come from this site and send X-Keyway-CSRF: 1")
	set(Scope, problem.Forbidden, "the API key lacks a scope this route needs")
	set(NotService, problem.Forbidden, "this needs a service account's API key; a person's own key never opens it")
	set(NotAdmin, problem.Forbidden, "this needs an administrator")
	set(StepUp, problem.StepUpRequired, "confirm it is you: sign in again with your passkey (POST /.keyway/auth/stepup/begin)")
	set(RateLimited, problem.RateLimited, "rate limit exceeded; retry after the time in Retry-After")
	set(QuotaSpent, problem.QuotaExceeded, "the API key's quota is spent")
	set(Unavailable, problem.Unavailable, "credentials cannot be checked right now; try again shortly")
	set(ClientRoute, problem.Forbidden, "this client may not call this route or method")
	set(Role, problem.Forbidden, "your account lacks a role this route needs; ask an administrator")
	return p
}

// Problem is the refusal's problem details, or nil for an allowed request.
func (c *Core) Problem(d *Decision) *problem.Problem {
	if d.Reason == Allowed || d.Reason >= numReasons {
		return nil
	}
	p := c.problems[d.Reason]
	if d.Reason == RateLimited {
		cp := *p
		cp.RetryAfter = max(d.Limit.RetryAfter, time.Second)
		p = &cp
	}
	return p
}

// SetHeaders sets the response fields a decision carries, allowed or not:
// WWW-Authenticate on a 401 or a missing scope, and the RateLimit fields of
// a limiter that is half spent or refused.
func (c *Core) SetHeaders(h http.Header, d *Decision) {
	switch d.Reason {
	case NoKey:
		h["Www-Authenticate"] = []string{`Bearer realm="keyway"`}
	case BadKey:
		h["Www-Authenticate"] = []string{`Bearer realm="keyway", error="invalid_token"`}
	case Scope:
		scopes := ""
		if d.route != nil {
			scopes = d.route.scopeList
		}
		h["Www-Authenticate"] = []string{`Bearer realm="keyway", error="insufficient_scope", scope="` + scopes + `"`}
	case NoSession, StepUp:
		h["Www-Authenticate"] = []string{`Cookie realm="keyway"`}
	default:
	}
	if d.LimitName != "" {
		SetRateHeaders(h, d.Limit, d.LimitName, d.LimitRule.Count, d.LimitRule.Period)
	}
}

// WriteDenial answers a refused request: its fields, then its problem.
func (c *Core) WriteDenial(w http.ResponseWriter, d *Decision, requestID string) {
	c.SetHeaders(w.Header(), d)
	problem.Write(w, c.Problem(d), requestID)
}

// SetRateHeaders sets the two fields of draft-ietf-httpapi-ratelimit-headers.
// The core reports them once half of the burst is spent, and on every 429:
// far from its limit a client learns nothing it can act on, and the fields
// cost every request and every hop bytes and CPU (about 5% of keyway's
// throughput when sent on every request, measured with
// scripts/bench-proxy.sh).
//
// The fields (-08 and later) are RateLimit-Policy, the quota (q, requests)
// per window (w, seconds), and RateLimit, what is left now (r) and when it
// is whole again (t, seconds): two fields rather than the older draft's
// four, built in one buffer and stored under their canonical keys.
func SetRateHeaders(h http.Header, d ratelimit.Decision, name string, count int64, period time.Duration) {
	var buf [96]byte
	b := append(buf[:0], '"')
	b = append(b, name...)
	b = append(b, `";q=`...)
	b = strconv.AppendInt(b, count, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, ceilSeconds(period), 10)
	n := len(b)
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `";r=`...)
	b = strconv.AppendInt(b, d.Remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, ceilSeconds(d.ResetAfter), 10)
	both := string(b)
	h["Ratelimit-Policy"] = []string{both[:n]}
	h["Ratelimit"] = []string{both[n:]}
}

func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// counters are the core's metrics, bound once.
type counters struct {
	decisions map[Policy]*[numReasons]prometheus.Counter
	keys      map[string]prometheus.Counter
	whys      map[string]prometheus.Counter
}

// The outcomes counted in keyway_apikey_requests_total.
var keyOutcomes = []string{"ok", "missing", "invalid", "forbidden", "rate_limited", "quota_exceeded", "error"}

func (c *counters) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	dec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyway_decisions_total",
		Help: "Decisions of the decision core, by route policy and reason (allowed, or why not).",
	}, []string{"policy", "reason"})
	keys := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyway_apikey_requests_total",
		Help: "Requests on api_key routes by outcome of the key check.",
	}, []string{"outcome"})
	whys := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyway_apikey_invalid_total",
		Help: "Refused API keys by why they were invalid (malformed, unknown, wrong_secret, rotated_out, revoked, expired, network); clients see one answer.",
	}, []string{"why"})
	c.whys = map[string]prometheus.Counter{}
	for _, w := range apikey.Whys {
		c.whys[w] = whys.WithLabelValues(w)
	}
	for _, col := range []prometheus.Collector{dec, keys, whys} {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	c.decisions = map[Policy]*[numReasons]prometheus.Counter{}
	for _, p := range []Policy{Public, APIKey, Session} {
		var arr [numReasons]prometheus.Counter
		for r := Reason(0); r < numReasons; r++ {
			arr[r] = dec.WithLabelValues(string(p), r.String())
		}
		c.decisions[p] = &arr
	}
	c.keys = make(map[string]prometheus.Counter, len(keyOutcomes))
	for _, o := range keyOutcomes {
		c.keys[o] = keys.WithLabelValues(o)
	}
	return nil
}

func (c *counters) decision(p Policy, r Reason) {
	if arr := c.decisions[p]; arr != nil && r < numReasons {
		arr[r].Inc()
	}
}

func (c *counters) invalid(why string) {
	if k := c.whys[why]; k != nil {
		k.Inc()
	}
}

func (c *counters) key(outcome string) {
	if k := c.keys[outcome]; k != nil {
		k.Inc()
	}
}
