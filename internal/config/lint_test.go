package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLint(t *testing.T) {
	// Each case changes the demo config, which has no warnings.
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"demo", func(c *Config) {}, nil},
		{"no routes", func(c *Config) { c.Routes = nil },
			[]string{"warning: no routes are configured, so the gateway serves nothing"}},
		{"debug logs", func(c *Config) { c.Log.Level = "debug" },
			[]string{"warning: log level debug can write request details to the logs; use info in production"}},
		{"public listener with local CA", func(c *Config) { c.Listen = ":8443" },
			[]string{`warning: listen ":8443" accepts connections from the network, but the local CA only issues certificates for localhost, which other machines do not trust; use tls mode files or acme`}},
		{"public listener with ACME", func(c *Config) { c.Listen = "0.0.0.0:443"; c.TLS.Mode = TLSACME }, nil},
		{"loopback listeners", func(c *Config) { c.Listen, c.AdminListen = "localhost:8443", "[::1]:9090" }, nil},
		{"public admin listener", func(c *Config) { c.AdminListen = "10.0.0.5:9090" },
			[]string{`warning: admin listener "10.0.0.5:9090" is reachable from the network; keep /metrics and the admin API on loopback, such as 127.0.0.1:9090`}},
		{"trusted proxies", func(c *Config) {
			for _, p := range []string{"10.0.0.0/8", "10.1.2.3/32", "0.0.0.0/0", "0.0.0.0/7", "2001:db8::/32", "2001::/16", "::/0"} {
				c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(p))
			}
		}, []string{
			"warning: trusted proxy 0.0.0.0/0 is every address: any client can forge X-Forwarded-For and be believed",
			"warning: trusted proxy 0.0.0.0/7 is wider than /8 (IPv4) or /32 (IPv6): list your proxies' own addresses, since any client inside it can forge X-Forwarded-For",
			"warning: trusted proxy 2001::/16 is wider than /8 (IPv4) or /32 (IPv6): list your proxies' own addresses, since any client inside it can forge X-Forwarded-For",
			"warning: trusted proxy ::/0 is every address: any client can forge X-Forwarded-For and be believed",
		}},
		{"plain http upstreams", func(c *Config) {
			c.Upstreams["local"] = Upstream{URL: "http://127.0.0.1:3000"}
			c.Upstreams["local6"] = Upstream{URL: "http://[::1]:3000"}
			c.Upstreams["localname"] = Upstream{URL: "http://localhost:3000"}
			c.Upstreams["remote"] = Upstream{URL: "http://billing.internal:8080"}
			c.Upstreams["tls"] = Upstream{URL: "https://billing.internal"}
		}, []string{`warning: upstream "remote" uses plain http to billing.internal, a non-loopback host: requests and the identity keyway adds cross the network unencrypted; use https`}},
		{"public route without rate_limit", func(c *Config) { c.Routes[0].RateLimit = nil },
			[]string{`warning: public route "forecast" has no rate_limit: one client can use all of the upstream's capacity; add rate_limit: {rate: 60/min, per: ip}`}},
		{"public WebSocket route", func(c *Config) { c.Routes[0].WebSocket, c.Routes[0].WebSocketMaxLifetime = true, time.Hour },
			[]string{`warning: public route "forecast" accepts WebSockets: anyone can hold a tunnel to the upstream open for 1h0m0s; give it policy api_key or session`}},
		{"public route with a loose rate_limit", func(c *Config) { c.Routes[0].RateLimit = &RateLimit{Rate: "100000/s"} }, nil},
		{"new public routes", func(c *Config) {
			c.Routes = append(c.Routes,
				Route{Name: "open", Path: "/open", Methods: []string{"GET"}, Upstream: "weather", Policy: PolicyPublic},
				Route{Name: "limited", Path: "/limited", Methods: []string{"GET"}, Upstream: "weather", Policy: PolicyPublic, RateLimit: &RateLimit{Rate: "5/s"}})
		}, []string{`warning: public route "open" has no rate_limit: one client can use all of the upstream's capacity; add rate_limit: {rate: 60/min, per: ip}`}},
		{"api_key and session routes need no rate_limit", func(c *Config) {
			c.Routes[1].RateLimit, c.Routes[2].RateLimit, c.Routes[3].RateLimit = nil, nil, nil
			c.Routes[0].Policy, c.Routes[0].Scopes = PolicyAPIKey, []string{"weather:read"}
			c.Routes[0].RateLimit = nil
		}, nil},
		{"an api_key route without scopes", func(c *Config) {
			c.Routes[0].Policy, c.Routes[0].RateLimit = PolicyAPIKey, nil
		}, []string{`warning: api_key route "forecast" has no scopes: any valid key passes, even one made for something else; give it scopes and give keys only the scopes they need`}},
		{"session routes with and without roles", func(c *Config) {
			c.Routes = append(c.Routes,
				Route{Name: "admin-panel", Path: "/admin", Upstream: "weather", Policy: PolicySession, Roles: []string{"ops"}},
				Route{Name: "team", Path: "/team", Upstream: "weather", Policy: PolicySession})
		}, []string{
			`warning: session route "me" has no roles while other routes have some: any signed-in person passes; add roles: [...] if it is not for everyone`,
			`warning: session route "me-cities" has no roles while other routes have some: any signed-in person passes; add roles: [...] if it is not for everyone`,
			`warning: session route "team" has no roles while other routes have some: any signed-in person passes; add roles: [...] if it is not for everyone`,
		}},
		{"Redis with the default prefix", func(c *Config) { c.Redis.Addr = "127.0.0.1:6379" },
			[]string{`warning: redis.prefix is the default "keyway:": another keyway deployment on the same Redis would share this one's rate limits and abuse budgets (its clients could lock out yours); give this deployment a prefix of its own, such as "keyway:shop-prod:"`}},
		{"Redis with a prefix of its own", func(c *Config) { c.Redis.Addr, c.Redis.Prefix = "127.0.0.1:6379", "keyway:shop-prod:" }, nil},
		{"public writes", func(c *Config) {
			c.Routes[0].Methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
			c.Routes[2].Methods = []string{"DELETE"} // session: authenticated
		}, []string{`warning: public route "forecast" allows POST, PUT, PATCH, DELETE: anyone can write without signing in`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			tt.change(c)
			if diff := cmp.Diff(tt.want, warningStrings(c.Lint())); diff != "" {
				t.Errorf("Lint() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLintLines checks that warnings of a loaded config carry file:line,
// and those caused by the environment name no file.
func TestLintLines(t *testing.T) {
	c := mustLoad(t, "log:\n  level: info\nadmin_listen: 0.0.0.0:9090\n", map[string]string{"KEYWAY_LOG_LEVEL": "debug"})
	want := []string{
		`keyway.yaml:3: warning: admin listener "0.0.0.0:9090" is reachable from the network; keep /metrics and the admin API on loopback, such as 127.0.0.1:9090`,
		"keyway.yaml: warning: no routes are configured, so the gateway serves nothing",
		"warning: log level debug can write request details to the logs; use info in production",
	}
	if diff := cmp.Diff(want, warningStrings(c.Lint())); diff != "" {
		t.Errorf("Lint() mismatch (-want +got):\n%s", diff)
	}
}

// TestLintRateLimitLines checks that the warning about a public route
// without rate_limit points at the route, and that a route with one, or
// with another policy, gets none.
func TestLintRateLimitLines(t *testing.T) {
	c := mustLoad(t, `upstreams: {api: {url: "http://localhost:3000"}}
routes:
  - path: /open
    upstream: api
    policy: public
  - path: /limited
    upstream: api
    policy: public
    rate_limit: {rate: 60/min, per: ip}
  - name: keyed
    path: /keyed
    upstream: api
    policy: api_key
    scopes: [a]
  - {name: flow, path: /flow, upstream: api, policy: public}
`, nil)
	want := []string{
		`keyway.yaml:3: warning: public route "/open" has no rate_limit: one client can use all of the upstream's capacity; add rate_limit: {rate: 60/min, per: ip}`,
		`keyway.yaml:15: warning: public route "flow" has no rate_limit: one client can use all of the upstream's capacity; add rate_limit: {rate: 60/min, per: ip}`,
	}
	if diff := cmp.Diff(want, warningStrings(c.Lint())); diff != "" {
		t.Errorf("Lint() mismatch (-want +got):\n%s", diff)
	}
}

func TestNeedsRestart(t *testing.T) {
	a, b := Demo(), Demo()
	b.Routes = append(b.Routes, Route{Name: "new", Path: "/new", Upstream: "weather", Policy: PolicyPublic})
	b.Upstreams["other"] = Upstream{URL: "http://127.0.0.1:1"}
	if got := a.NeedsRestart(b); len(got) != 0 {
		t.Fatalf("routes and upstreams changed: %v need a restart", got)
	}
	b.Listen, b.Sessions.IdleTimeout = "127.0.0.1:9443", time.Minute
	if got := a.NeedsRestart(b); len(got) != 2 || got[0] != "listen" || got[1] != "sessions" {
		t.Fatalf("listen and sessions changed: %v", got)
	}
}
