package gateway

import (
	"fmt"

	"github.com/keywayhq/keyway/internal/decision"

	"github.com/keywayhq/keyway/internal/ratelimit"
	"slices"
	"strings"
	"time"
)

// Route is one routing rule.
type Route struct {
	// Name labels the route in logs and metrics. Required.
	Name string
	// Prefix is a normalised path prefix matched on segment boundaries. Required.
	Prefix string
	// Methods the route allows. Required, upper case.
	Methods []string
	// Upstream receives the traffic. Required.
	Upstream *Upstream
	// Policy decides who may call. Required.
	Policy decision.Policy
	// Scopes an API key must hold (policy api_key).
	Scopes []string
	// Roles a person must hold one of (policy session).
	Roles []string
	// StripPrefix removes Prefix from the forwarded path.
	StripPrefix bool
	// MaxBody caps the request body (413 above it). Required, positive.
	MaxBody int64
	// Timeout bounds the whole upstream exchange (504 past it). Required, positive.
	Timeout time.Duration
	// RateLimit, when set, limits the route per client IP or per API key.
	RateLimit *RouteLimit
	// WebSocket lets clients upgrade a GET to a WebSocket tunnel. Every
	// other route refuses protocol upgrades (400), and this one refuses
	// every protocol but websocket.
	WebSocket bool
	// TunnelLifetime bounds an open tunnel (WebSocket routes). Required
	// with WebSocket. The tunnel is also closed as soon as the credential
	// that opened it stops being valid.
	TunnelLifetime time.Duration
	// PassHeaders are canonical header names the route forwards although
	// keyway would remove them: names with an underscore, and method or
	// path overrides (X-HTTP-Method-Override…). Identity and forwarding
	// headers can never be passed.
	PassHeaders []string
	// AllowUpstreamCookies passes the upstream's Set-Cookie (never one of
	// keyway's own names). Default false: a cookie an upstream sets would
	// be a second session that keyway cannot revoke.
	AllowUpstreamCookies bool
}

// RouteLimit is a route's own rate limit.
type RouteLimit struct {
	Limit ratelimit.Limit
	// PerKey limits each API key separately (policy api_key); otherwise each client IP.
	PerKey bool
}

// table finds routes by path in O(number of segments) map look-ups, with no
// allocation: every segment-boundary prefix of the path is tried, longest first.
type table struct {
	byPrefix map[string]*prefixRoutes
}

type prefixRoutes struct {
	prefix  string
	methods map[string]*route
	allow   string // the Allow header for a 405
}

func newTable(routes []*route) (*table, error) {
	t := &table{byPrefix: make(map[string]*prefixRoutes)}
	for _, r := range routes {
		p := r.Prefix
		if p == "" || p[0] != '/' || (len(p) > 1 && strings.HasSuffix(p, "/")) {
			return nil, fmt.Errorf("route %s: prefix %q must start with / and not end with /", r.Name, p)
		}
		if n, err := NormalizePath(p, false); err != nil || n != p {
			return nil, fmt.Errorf("route %s: prefix %q is not in normal form", r.Name, p)
		}
		pr := t.byPrefix[p]
		if pr == nil {
			pr = &prefixRoutes{prefix: p, methods: make(map[string]*route)}
			t.byPrefix[p] = pr
		}
		for _, m := range r.Methods {
			if _, dup := pr.methods[m]; dup {
				return nil, fmt.Errorf("route %s: %s %s is already routed", r.Name, m, p)
			}
			pr.methods[m] = r
		}
	}
	for _, pr := range t.byPrefix {
		ms := make([]string, 0, len(pr.methods))
		for m := range pr.methods {
			ms = append(ms, m)
		}
		slices.Sort(ms)
		pr.allow = strings.Join(ms, ", ")
	}
	return t, nil
}

// lookup returns the prefix entry that matches path, or nil.
func (t *table) lookup(path string) *prefixRoutes {
	p := path
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	for {
		if pr, ok := t.byPrefix[p]; ok {
			return pr
		}
		if p == "/" {
			return nil
		}
		i := strings.LastIndexByte(p, '/')
		if i == 0 {
			p = "/"
		} else {
			p = p[:i]
		}
	}
}

func (pr *prefixRoutes) forMethod(m string) *route {
	if r, ok := pr.methods[m]; ok {
		return r
	}
	return nil
}
