package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/prometheus/client_golang/prometheus"
)

// KeyVerifier is what the API-key authorizer needs of the apikey service.
type KeyVerifier interface {
	// Verify returns apikey.ErrInvalid for any key that must not pass, and
	// another error when it cannot decide (the store is down).
	Verify(ctx context.Context, raw string, client netip.Addr) (*apikey.Verified, error)
	ConsumeQuota(v *apikey.Verified) bool
	Record(v *apikey.Verified, o apikey.Outcome)
}

// APIKeyAuthConfig configures APIKeyAuth.
type APIKeyAuthConfig struct {
	// Keys verifies keys. Required.
	Keys KeyVerifier
	// Limiter enforces each key's own rate. Required.
	Limiter ratelimit.Limiter[string]
	// Header carries the key: "Authorization" (as Bearer) or another header
	// with the bare key. Default "Authorization".
	Header string
	// Logger receives store failures. Required.
	Logger *slog.Logger
	// Metrics, when set, receives keyway_apikey_requests_total{outcome}:
	// by outcome only, never by key, so cardinality stays fixed.
	Metrics prometheus.Registerer
}

// APIKeyAuth authorizes api_key routes. Every way a key can be wrong gets the
// same 401 answer; only the usage counters and the audit log know which.
type APIKeyAuth struct {
	cfg      APIKeyAuthConfig
	bearer   bool
	outcomes map[string]prometheus.Counter
}

// The outcomes counted in keyway_apikey_requests_total.
var authOutcomes = []string{"ok", "missing", "invalid", "forbidden", "rate_limited", "quota_exceeded", "error"}

func (a *APIKeyAuth) count(outcome string) {
	if c := a.outcomes[outcome]; c != nil {
		c.Inc()
	}
}

// NewAPIKeyAuth validates cfg.
func NewAPIKeyAuth(cfg APIKeyAuthConfig) (*APIKeyAuth, error) {
	if cfg.Keys == nil || cfg.Limiter == nil || cfg.Logger == nil {
		return nil, errors.New("gateway: Keys, Limiter and Logger are required")
	}
	if cfg.Header == "" {
		cfg.Header = "Authorization"
	}
	cfg.Header = http.CanonicalHeaderKey(cfg.Header)
	a := &APIKeyAuth{cfg: cfg, bearer: cfg.Header == "Authorization"}
	if cfg.Metrics != nil {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyway_apikey_requests_total",
			Help: "Requests on api_key routes by outcome of the key check.",
		}, []string{"outcome"})
		if err := cfg.Metrics.Register(vec); err != nil {
			return nil, err
		}
		a.outcomes = make(map[string]prometheus.Counter, len(authOutcomes))
		for _, o := range authOutcomes {
			a.outcomes[o] = vec.WithLabelValues(o)
		}
	}
	return a, nil
}

// Header is the canonical name of the header that carries keys, which the
// gateway removes before forwarding.
func (a *APIKeyAuth) Header() string { return a.cfg.Header }

var (
	probNoKey = &problem.Problem{Type: problem.Unauthenticated, Title: "Unauthorized", Status: http.StatusUnauthorized,
		Detail: "this route needs an API key in the Authorization header: Bearer kw_…"}
	probBadKey = &problem.Problem{Type: problem.Unauthenticated, Title: "Unauthorized", Status: http.StatusUnauthorized,
		Detail: "the API key is not valid"}
	probScope = &problem.Problem{Type: problem.Forbidden, Title: "Forbidden", Status: http.StatusForbidden,
		Detail: "the API key lacks a scope this route needs"}
	probQuota = &problem.Problem{Type: problem.QuotaExceeded, Title: "Too Many Requests", Status: http.StatusTooManyRequests,
		Detail: "the API key's quota is spent"}
	probUnavailable = &problem.Problem{Type: problem.Unavailable, Title: "Service Unavailable", Status: http.StatusServiceUnavailable,
		Detail: "keys cannot be checked right now; try again shortly"}
)

// token extracts the presented key, or "".
func (a *APIKeyAuth) token(r *http.Request) string {
	v := r.Header.Get(a.cfg.Header)
	if !a.bearer {
		return strings.TrimSpace(v)
	}
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// Authorize implements Authorizer.
func (a *APIKeyAuth) Authorize(w http.ResponseWriter, r *http.Request, rt *RouteInfo, client netip.Addr) (Identity, *problem.Problem) {
	raw := a.token(r)
	if raw == "" {
		a.count("missing")
		return Identity{}, probNoKey
	}
	v, err := a.cfg.Keys.Verify(r.Context(), raw, client)
	if errors.Is(err, apikey.ErrInvalid) {
		a.count("invalid")
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyway", error="invalid_token"`)
		return Identity{}, probBadKey
	}
	if err != nil {
		// Fail closed: a key we cannot check does not pass.
		a.count("error")
		a.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "api key check failed", slog.String("error", err.Error()))
		return Identity{}, probUnavailable
	}
	if !v.HasScopes(rt.Scopes) {
		a.cfg.Keys.Record(v, apikey.OutcomeForbidden)
		a.count("forbidden")
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyway", error="insufficient_scope", scope="`+rt.ScopeList+`"`)
		return Identity{}, probScope
	}
	if kr := v.Key.Rate; kr.Count > 0 {
		d := a.cfg.Limiter.Allow(v.Key.ID, ratelimit.Limit{Count: kr.Count, Period: kr.Period, Burst: kr.Burst})
		if d.Remaining*2 <= d.Limit {
			setRateHeaders(w.Header(), d, "key", kr.Count, kr.Period)
		}
		if !d.Allowed {
			a.cfg.Keys.Record(v, apikey.OutcomeRateLimited)
			a.count("rate_limited")
			return Identity{}, rateLimited(d)
		}
	}
	if !a.cfg.Keys.ConsumeQuota(v) {
		a.cfg.Keys.Record(v, apikey.OutcomeQuota)
		a.count("quota_exceeded")
		return Identity{}, probQuota
	}
	a.cfg.Keys.Record(v, apikey.OutcomeOK)
	a.count("ok")
	return Identity{Subject: v.Key.Owner, KeyID: v.DisplayID, Scopes: v.ScopeList, LimiterKey: v.Key.ID}, nil
}

// Recheck implements Rechecker: the key must still verify and hold the
// route's scopes. Nothing is counted: the tunnel was counted once, when it
// opened.
func (a *APIKeyAuth) Recheck(ctx context.Context, r *http.Request, rt *RouteInfo, client netip.Addr) error {
	v, err := a.cfg.Keys.Verify(ctx, a.token(r), client)
	if err != nil {
		return err
	}
	if !v.HasScopes(rt.Scopes) {
		return errNoCredential
	}
	return nil
}

// errNoCredential is a Recheck's answer for a credential that no longer
// passes.
var errNoCredential = errors.New("credential no longer valid")

// rateLimited is the 429 of a spent rate limit.
func rateLimited(d ratelimit.Decision) *problem.Problem {
	return &problem.Problem{Type: problem.RateLimited, Title: "Too Many Requests", Status: http.StatusTooManyRequests,
		Detail: "rate limit exceeded; retry after the time in Retry-After", RetryAfter: max(d.RetryAfter, time.Second)}
}

// setRateHeaders sets the two fields of draft-ietf-httpapi-ratelimit-headers.
// Callers send them once half of the burst is spent, and on every 429: far
// from its limit a client learns nothing it can act on, and the fields cost
// every request and every hop bytes and CPU (about 5% of keyway's
// throughput when sent on every request, measured with
// scripts/bench-proxy.sh).
//
// The fields (-08 and later) are RateLimit-Policy, the quota (q, requests)
// per window (w, seconds), and RateLimit, what is left now (r) and when it
// is whole again (t, seconds): two fields rather than the older draft's
// four, built in one buffer and stored under their canonical keys.
func setRateHeaders(h http.Header, d ratelimit.Decision, name string, count int64, period time.Duration) {
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
