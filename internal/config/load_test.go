package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// mustLoad loads data as the file "keyway.yaml" with env as the environment.
func mustLoad(t *testing.T, data string, env map[string]string) *Config {
	t.Helper()
	c, err := load("keyway.yaml", []byte(data), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("load() error:\n%v", err)
	}
	return c
}

func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load() error:\n%v", err)
	}
	want := &Config{
		DataDir:     "/var/lib/keyway",
		Listen:      "0.0.0.0:443",
		HTTPListen:  ListenOff,
		AdminListen: "127.0.0.1:9100",
		Log:         Log{Format: "text", Level: "warn", Access: ptr(false), ClientAddress: "full"},
		TLS: TLS{
			Mode:       TLSFiles,
			MinVersion: "1.3",
			CertFile:   "/etc/keyway/cert.pem",
			KeyFile:    "/etc/keyway/key.pem",
			ACME:       ACME{DirectoryURL: "https://acme-v02.api.letsencrypt.org/directory", CacheDir: "/var/lib/keyway/acme"},
			HSTSMaxAge: 2 * 365 * 24 * time.Hour,
		},
		Store: Store{Driver: "sqlite", Path: "/var/lib/keyway/state.db"},
		Redis: Redis{OnFailure: "local", Prefix: "keyway:"},
		Server: Server{
			ReadHeaderTimeout:    5 * time.Second,
			ReadTimeout:          30 * time.Second,
			WriteTimeout:         90 * time.Second,
			IdleTimeout:          2 * time.Minute,
			MaxHeaderBytes:       16 << 10,
			ShutdownTimeout:      15 * time.Second,
			CaseInsensitivePaths: true,
			Hosts:                []string{"example.com", "admin.example.com"},
			IPv6Prefix:           56,
		},
		ForwardAuth: ForwardAuth{Enabled: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")}, Audience: "urn:orders"},
		TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.168.1.7/32"),
			netip.MustParsePrefix("fd00::/64"),
		},
		APIKeys: APIKeys{
			Header:     "X-Api-Key",
			PepperFile: "/etc/keyway/pepper.key",
			DefaultTTL: 30 * 24 * time.Hour,
			MaxTTL:     90 * 24 * time.Hour,
			LeakReport: LeakReport{Enabled: ptr(false), RateLimit: "10/min", VerifyKeysFile: "/etc/keyway/github-keys.json"},
		},
		Passkeys: Passkeys{
			RPID:          "example.com",
			RPName:        "Example Inc.",
			Origins:       []string{"https://example.com", "https://admin.example.com:8443"},
			SignUp:        "closed",
			CounterPolicy: "log",
			AAGUIDAllow:   []string{"ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"},
			AAGUIDDeny:    []string{"00000000-0000-0000-0000-000000000000"},
			ChallengeTTL:  2 * time.Minute,
		},
		Sessions: Sessions{IdleTimeout: 15 * time.Minute, AbsoluteTimeout: 8 * time.Hour, StepUpMaxAge: 2 * time.Minute},
		Audit: Audit{CheckpointEvery: 30 * time.Second, SigningKeyFile: "/var/lib/keyway/audit.key",
			SigningKeyCommand: []string{"vault", "kv", "get", "-field=audit_key", "secret/keyway"}},
		DataProtection: DataProtection{KEKFile: "/etc/keyway/kek.key", KeyStore: "sqlite:/var/lib/keyway-keys/keys.db"},
		Upstreams: map[string]Upstream{
			"api": {URL: "https://api.internal:8443/base", MaxIdleConns: 64, DialTimeout: 2 * time.Second, CAFile: "/etc/keyway/internal-ca.pem",
				StandardProxy: true},
			"local": {URL: "http://127.0.0.1:3000", MaxIdleConns: 256, DialTimeout: 5 * time.Second},
		},
		Routes: []Route{
			{Name: "status", Path: "/status", Methods: []string{"GET", "HEAD"}, Upstream: "local", Policy: PolicyPublic, MaxBody: 1 << 20, Timeout: 30 * time.Second},
			{Name: "/v1", Path: "/v1", Methods: []string{"GET", "POST", "DELETE"}, Upstream: "api", Policy: PolicyPublic, StripPrefix: true, MaxBody: 10_000_000, Timeout: time.Minute,
				RateLimit: &RateLimit{Rate: "100/min", Burst: 20, Per: "ip"}},
			{Name: "keys", Path: "/v1/keys", Methods: []string{"GET", "HEAD"}, Upstream: "api", Policy: PolicyAPIKey, Scopes: []string{"keys:read", "keys:write"},
				MaxBody: 1 << 20, Timeout: 30 * time.Second, RateLimit: &RateLimit{Rate: "1000/hour", Per: "key"}},
			{Name: "live", Path: "/v1/live", Methods: []string{"GET", "HEAD"}, Upstream: "api", Policy: PolicyAPIKey,
				MaxBody: 1 << 20, Timeout: 30 * time.Second, WebSocket: true, WebSocketMaxLifetime: 10 * time.Minute,
				PassHeaders: []string{"X-HTTP-Method-Override", "X_Legacy_Id"}},
		},
	}
	if diff := cmp.Diff(want, c, cmpConfig...); diff != "" {
		t.Errorf("Load() mismatch (-want +got):\n%s", diff)
	}
	// Listening on 0.0.0.0 is fine here: TLS mode is files, not local.
	// Only "status" lacks a rate limit; "keys" is not public.
	wantWarnings := []string{
		`testdata/full.yaml:82: warning: public route "status" has no rate_limit: one client can use all of the upstream's capacity; add rate_limit: {rate: 60/min, per: ip}`,
		`testdata/full.yaml:87: warning: public route "/v1" allows POST, DELETE: anyone can write without signing in`,
		`testdata/full.yaml:103: warning: api_key route "live" has no scopes: any valid key passes, even one made for something else; give it scopes and give keys only the scopes they need`,
	}
	if diff := cmp.Diff(wantWarnings, warningStrings(c.Lint())); diff != "" {
		t.Errorf("Lint() mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadEmpty(t *testing.T) {
	for name, data := range map[string]string{
		"empty":         "",
		"comments only": "# nothing yet\n",
		"null document": "~\n",
		"document mark": "---\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := mustLoad(t, data, nil)
			if diff := cmp.Diff(Default(), c, cmpConfig...); diff != "" {
				t.Errorf("load() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadAnchors(t *testing.T) {
	c, err := Load("testdata/anchors.yaml")
	if err != nil {
		t.Fatalf("Load() error:\n%v", err)
	}
	got := make([]string, len(c.Routes))
	for i, r := range c.Routes {
		got[i] = r.Path + " " + r.Upstream + " " + string(r.Policy) + " " + r.MaxBody.String()
	}
	want := []string{"/a api public 64KiB", "/b api public 1MiB"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routes mismatch (-want +got):\n%s", diff)
	}
}

// TestLoadErrors checks each kind of problem, with its exact file:line.
func TestLoadErrors(t *testing.T) {
	const up = "upstreams: {api: {url: \"http://localhost:3000\"}}\n"
	tests := []struct {
		name string
		data string
		want string
	}{
		{"unknown key", "lisen: 127.0.0.1:8443\n",
			`keyway.yaml:1: unknown key "lisen" (did you mean "listen"?)`},
		{"unknown key nested", "log:\n  formt: text\n",
			`keyway.yaml:2: unknown key "formt" in log (did you mean "format"?)`},
		{"unknown key without suggestion", "tls:\n  colour: blue\n",
			`keyway.yaml:2: unknown key "colour" in tls (valid keys are mode, min_version, cert_file, key_file, acme, hsts_max_age)`},
		{"unknown key differs in case", "Listen: :8443\n",
			`keyway.yaml:1: unknown key "Listen" (did you mean "listen"?)`},
		{"duplicate key", "listen: :8443\nlog: {level: info}\nlisten: :9443\n",
			`keyway.yaml:3: duplicate key "listen": first set at line 1 (remove one of them)`},
		{"duplicate upstream", "upstreams:\n  a: {url: \"http://localhost\"}\n  a: {url: \"http://localhost\"}\n",
			`keyway.yaml:3: duplicate key "a": first set at line 2 (remove one of them)`},
		{"string for list", up + "routes:\n  - path: /v1\n    upstream: api\n    policy: public\n    methods: GET, POST\n",
			`keyway.yaml:6: routes[0].methods: expected a list, got the string "GET, POST" (write [GET, POST], or one "- item" line per item)`},
		{"list for string", "listen: [a, b]\n",
			`keyway.yaml:1: listen: expected a string, got a list`},
		{"scalar for mapping", "tls: files\n",
			`keyway.yaml:1: tls: expected a mapping of settings, got the string "files"`},
		{"list for map", "upstreams: [a]\n",
			`keyway.yaml:1: upstreams: expected a mapping of names to settings, got a list`},
		{"bad bool", "log:\n  access: yes\n",
			`keyway.yaml:2: log.access: expected true or false, got "yes" (write true or false)`},
		{"bad int", "upstreams:\n  a:\n    url: \"http://localhost\"\n    max_idle_conns: lots\n",
			`keyway.yaml:4: upstreams.a.max_idle_conns: expected an integer, got "lots"`},
		{"bad duration", "server:\n  read_timeout: 10x\n",
			`keyway.yaml:2: server.read_timeout: invalid duration "10x" (use durations like 30s, 5m, 12h or 90d)`},
		{"duration without unit", "server:\n  idle_timeout: 90\n",
			`keyway.yaml:2: server.idle_timeout: invalid duration "90" (add a unit, like 90s)`},
		{"fractional days", "tls:\n  hsts_max_age: 1.5d\n",
			`keyway.yaml:2: tls.hsts_max_age: invalid duration "1.5d" (use durations like 30s, 5m, 12h or 90d)`},
		{"bad byte size", "server:\n  max_header_bytes: 1.5MiB\n",
			`keyway.yaml:2: server.max_header_bytes: byte size "1.5MiB" is not a whole number (use sizes like 512KiB, 1MiB or 1048576; units are B, KB, MB, GB, KiB, MiB, GiB)`},
		{"negative byte size", "server:\n  max_header_bytes: -1\n",
			`keyway.yaml:2: server.max_header_bytes: byte size "-1" is negative (use sizes like 512KiB, 1MiB or 1048576; units are B, KB, MB, GB, KiB, MiB, GiB)`},
		{"bad CIDR", "trusted_proxies:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n",
			`keyway.yaml:3: trusted_proxies[1]: invalid CIDR "10.0.0.0/33" (use CIDR notation like 10.0.0.0/8, or a single IP address)`},
		{"bad IP", "trusted_proxies: [proxy.internal]\n",
			`keyway.yaml:1: trusted_proxies[0]: invalid IP address or CIDR "proxy.internal" (use CIDR notation like 10.0.0.0/8, or a single IP address)`},
		{"CIDR with host bits", "trusted_proxies: [192.168.1.1/24]\n",
			`keyway.yaml:1: trusted_proxies[0]: CIDR "192.168.1.1/24" has bits set past its /24 prefix (did you mean "192.168.1.0/24"?)`},
		{"empty list item", "trusted_proxies:\n  - 10.0.0.1\n  -\n",
			`keyway.yaml:3: trusted_proxies[1]: empty list item`},
		{"bad URL scheme", "upstreams:\n  api:\n    url: ftp://files.internal\n",
			`keyway.yaml:3: upstreams.api.url: URL "ftp://files.internal" must use http or https (like http://127.0.0.1:3000 or https://api.internal/base)`},
		{"relative URL", "upstreams:\n  api:\n    url: localhost:3000\n",
			`keyway.yaml:3: upstreams.api.url: URL "localhost:3000" must use http or https (like http://127.0.0.1:3000 or https://api.internal/base)`},
		{"URL without host", "upstreams:\n  api:\n    url: \"http:///x\"\n",
			`keyway.yaml:3: upstreams.api.url: URL "http:///x" has no host (like http://127.0.0.1:3000 or https://api.internal/base)`},
		{"URL with password", "upstreams:\n  api:\n    url: https://me:secret@api.internal\n",
			`keyway.yaml:3: upstreams.api.url: URL "https://me:xxxxx@api.internal" must not contain credentials (URLs are logged; keep secrets out of them)`},
		{"URL with query", "upstreams:\n  api:\n    url: https://api.internal/?a=1\n",
			`keyway.yaml:3: upstreams.api.url: URL "https://api.internal/?a=1" must not have a query or fragment (the request's own path and query are appended to it)`},
		{"URL unparsable", "upstreams:\n  api:\n    url: \"http://api.internal:port\"\n",
			`keyway.yaml:3: upstreams.api.url: invalid URL: invalid port ":port" after host (like http://127.0.0.1:3000 or https://api.internal/base)`},
		{"demo URL outside demo", "upstreams:\n  api:\n    url: \"demo:\"\n",
			`keyway.yaml:3: upstreams.api.url: "demo:" is the demo upstream, which needs demo mode (set demo: true to run the built-in demo upstream)`},
		{"missing URL", "upstreams:\n  api:\n    dial_timeout: 1s\n",
			`keyway.yaml:2: upstreams.api.url: required (like http://127.0.0.1:3000 or https://api.internal/base)`},
		{"explicit zero is not defaulted", up + "routes:\n  - path: /v1\n    upstream: api\n    policy: public\n    timeout: 0s\n",
			`keyway.yaml:6: routes[0].timeout: must be positive, got 0s`},
		{"not a mapping", "- listen: :8443\n",
			`keyway.yaml:1: expected a mapping of settings at the top level, got a list (start with a setting such as "listen: 127.0.0.1:8443")`},
		{"syntax error", "listen: :8443\n  log: x\n",
			`keyway.yaml:2: invalid YAML: mapping values are not allowed in this context`},
		{"tab indentation", "log:\n\tlevel: info\n",
			`keyway.yaml:2: invalid YAML: found character that cannot start any token (indent with spaces: YAML does not allow tabs)`},
		{"two documents", "listen: :8443\n---\nlisten: :9443\n",
			`keyway.yaml:2: the file holds more than one YAML document (remove the "---" and what follows)`},
		{"unknown anchor", "log:\n  level: *nope\n",
			`keyway.yaml:2: invalid YAML: unknown anchor 'nope' referenced`},
		{"octal-looking integer", "upstreams:\n  a:\n    url: \"http://localhost\"\n    max_idle_conns: 0x10\n",
			`keyway.yaml:4: upstreams.a.max_idle_conns: expected an integer, got "0x10"`},
		{"bad merge", "log:\n  <<: [1]\n",
			`keyway.yaml:2: log.<<: a merge key needs a mapping or a list of them, got the number 1`},
		{"non-string key", "? [a]\n: b\n",
			`keyway.yaml:1: keys must be strings, got a list`},
		{"alias cycle", "log: &a\n  <<: *a\n",
			`keyway.yaml:1: log: an alias refers to a value that contains it`},
		{"alias cycle at top level", "&a {<<: *a}\n",
			`keyway.yaml:1: top level: an alias refers to a value that contains it`},
		{"unknown key in rate_limit", up + "routes:\n  - path: /v1\n    upstream: api\n    policy: public\n    rate_limit:\n      rate: 60/min\n      bursts: 5\n",
			`keyway.yaml:8: unknown key "bursts" in routes[0].rate_limit (did you mean "burst"?)`},
		{"unknown key in rate_limit without suggestion", up + "routes:\n  - path: /v1\n    upstream: api\n    policy: public\n    rate_limit: {rate: 60/min, window: 1m}\n",
			`keyway.yaml:6: unknown key "window" in routes[0].rate_limit (valid keys are rate, burst, per)`},
		{"rate_limit not a mapping", up + "routes:\n  - path: /v1\n    upstream: api\n    policy: public\n    rate_limit: 60/min\n",
			`keyway.yaml:6: routes[0].rate_limit: expected a mapping of settings, got the string "60/min"`},
		{"burst not an integer", up + "routes:\n  - path: /v1\n    upstream: api\n    policy: public\n    rate_limit:\n      rate: 60/min\n      burst: lots\n",
			`keyway.yaml:8: routes[0].rate_limit.burst: expected an integer, got "lots"`},
		{"unknown key in api_keys", "api_keys:\n  pepper: /p.key\n",
			`keyway.yaml:2: unknown key "pepper" in api_keys (did you mean "pepper_file"?)`},
		{"unknown key in leak_report", "api_keys:\n  leak_report:\n    enable: false\n",
			`keyway.yaml:3: unknown key "enable" in api_keys.leak_report (did you mean "enabled"?)`},
		{"api_keys ttl in days, read and checked", "api_keys:\n  max_ttl: 30d\n",
			`keyway.yaml:1: api_keys.default_ttl: default_ttl 2160h0m0s exceeds max_ttl 720h0m0s (lower it or raise api_keys.max_ttl)`},
		{"leak_report enabled not a bool", "api_keys:\n  leak_report:\n    enabled: yes\n",
			`keyway.yaml:3: api_keys.leak_report.enabled: expected true or false, got "yes" (write true or false)`},
		{"alias bomb", "x-m: &m [" + strings.Repeat("GET, ", 999) + "GET]\n" +
			"x-r: &r {path: /a, upstream: u, policy: public, methods: *m}\n" +
			"routes: [" + strings.Repeat("*r, ", 999) + "*r]\n",
			`keyway.yaml:1: the document expands too far through aliases`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load("keyway.yaml", []byte(tt.data), noEnv)
			if err == nil {
				t.Fatalf("load() = %+v, want error %s", c, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("load() error\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

// TestLoadAllErrors checks that one Load reports every problem in a file,
// in line order, and leaves out what follows from a value it rejected.
func TestLoadAllErrors(t *testing.T) {
	_, err := Load("testdata/errors.yaml")
	want := []string{
		`testdata/errors.yaml:2: unknown key "lisen" (did you mean "listen"?)`,
		`testdata/errors.yaml:3: admin_listen: "127.0.0.1:8443" conflicts with listen ("127.0.0.1:8443") (each listener needs its own address)`,
		`testdata/errors.yaml:5: log.format: unknown log format "yaml" (use json or text)`,
		`testdata/errors.yaml:9: tls.acme.hosts[0]: wildcard host "*.example.com": ACME HTTP and TLS-ALPN challenges cannot validate wildcards (list each name instead)`,
		`testdata/errors.yaml:10: tls.hsts_max_age: invalid duration "365.5d" (use durations like 30s, 5m, 12h or 90d)`,
		`testdata/errors.yaml:12: server.read_timeout: invalid duration "10x" (use durations like 30s, 5m, 12h or 90d)`,
		`testdata/errors.yaml:13: server.max_header_bytes: byte size "-1" is negative (use sizes like 512KiB, 1MiB or 1048576; units are B, KB, MB, GB, KiB, MiB, GiB)`,
		`testdata/errors.yaml:14: trusted_proxies[0]: invalid CIDR "10.0.0.0/33" (use CIDR notation like 10.0.0.0/8, or a single IP address)`,
		`testdata/errors.yaml:17: upstreams.api.url: URL "ftp://files.internal" must use http or https (like http://127.0.0.1:3000 or https://api.internal/base)`,
		`testdata/errors.yaml:19: routes[0].path: "v1" must start with / (write "/v1")`,
		`testdata/errors.yaml:20: routes[0].methods: expected a list, got the string "GET" (write [GET], or one "- item" line per item)`,
		`testdata/errors.yaml:21: routes[0].upstream: unknown upstream "apx" (did you mean "api"?)`,
		`testdata/errors.yaml:24: routes[1].methods[0]: method "get" must be uppercase (write "GET")`,
		// routes[1] is a session route and routes[2] an api_key route with
		// scopes: a file may name either.
		`testdata/errors.yaml:31: routes[2].timeout: 5m0s must be less than server.write_timeout (2m0s), or the client is cut off before the 504 (lower it, or raise server.write_timeout)`,
		`testdata/errors.yaml:33: routes[2].rate_limit.rate: invalid rate limit "100/fortnight": period "fortnight" is neither a unit (s, min, hour, day) nor a positive Go duration such as 5m (like "100/min", "5/s" or "50/10s")`,
		`testdata/errors.yaml:34: routes[2].rate_limit.burst: burst must be between 0 (the count) and 1000 times the count`,
		`testdata/errors.yaml:35: routes[2].rate_limit.per: unknown rate limit dimension "bogus" (use ip or key)`,
		`testdata/errors.yaml:39: routes[3].rate_limit.rate: invalid rate limit "0/min": count must be at least 1 (like "100/min", "5/s" or "50/10s")`,
		`testdata/errors.yaml:39: routes[3].rate_limit.per: per "key" needs policy api_key (use "ip")`,
		`testdata/errors.yaml:41: api_keys.header: invalid header name "Bad Header" (like "Authorization" or "X-Api-Key")`,
		`testdata/errors.yaml:42: api_keys.default_ttl: default_ttl 9000h0m0s exceeds max_ttl 8760h0m0s (lower it or raise api_keys.max_ttl)`,
		`testdata/errors.yaml:44: api_keys.leak_report.rate_limit: invalid rate limit "abc": missing '/'; want <count>/<period>, such as 100/min (like "300/min")`,
		`testdata/errors.yaml:46: passkeys.rp_id: invalid relying party ID "https://example.com" (a domain such as "example.com", without scheme or port)`,
		`testdata/errors.yaml:47: passkeys.origins[0]: invalid origin "http://example.com" (like "https://example.com" or "https://localhost:8443")`,
		`testdata/errors.yaml:47: passkeys.origins[1]: invalid origin "https://example.com/app" (write "https://example.com": an origin has no path, query or default port)`,
		`testdata/errors.yaml:48: passkeys.sign_up: unknown sign-up mode "invites" (did you mean "invite"?)`,
		`testdata/errors.yaml:49: passkeys.counter_policy: unknown counter policy "warn" (use deny or log)`,
		`testdata/errors.yaml:50: passkeys.aaguid_deny[0]: invalid AAGUID "not-a-uuid" (AAGUIDs are UUIDs, like "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4")`,
		`testdata/errors.yaml:52: sessions.idle_timeout: idle_timeout 24h0m0s exceeds absolute_timeout 12h0m0s`,
		`testdata/errors.yaml:54: sessions.step_up_max_age: must be positive, got 0s`,
	}
	if err == nil {
		t.Fatal("Load() succeeded, want errors")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("Load() errors mismatch (-want +got):\n%s", diff)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != len(want) {
		t.Fatalf("errors.As(Errors) = %v with %d errors, want %d", errors.As(err, &es), len(es), len(want))
	}
	var e *Error
	if !errors.As(err, &e) || e.File != "testdata/errors.yaml" || e.Line != 2 || e.Hint != `did you mean "listen"?` {
		t.Errorf("errors.As(*Error) = %+v", e)
	}
}

// TestLoadRateLimitAndAPIKeyErrors checks the rules on rate_limit and
// api_keys, with the file:line each error is reported at.
func TestLoadRateLimitAndAPIKeyErrors(t *testing.T) {
	const up = "upstreams: {api: {url: \"http://localhost:3000\"}}\n"
	// route is a one-route file; rl is the rate_limit mapping, at line 6.
	route := func(policy, rl string) string {
		return up + "routes:\n  - path: /v1\n    upstream: api\n    policy: " + policy + "\n    rate_limit:\n" + rl
	}
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"rate with an unknown period", route("public", "      rate: 100/fortnight\n"), []string{
			`keyway.yaml:7: routes[0].rate_limit.rate: invalid rate limit "100/fortnight": period "fortnight" is neither a unit (s, min, hour, day) nor a positive Go duration such as 5m (like "100/min", "5/s" or "50/10s")`,
		}},
		{"rate of zero", route("public", "      rate: 0/min\n"), []string{
			`keyway.yaml:7: routes[0].rate_limit.rate: invalid rate limit "0/min": count must be at least 1 (like "100/min", "5/s" or "50/10s")`,
		}},
		{"rate without a slash", route("public", "      rate: abc\n"), []string{
			`keyway.yaml:7: routes[0].rate_limit.rate: invalid rate limit "abc": missing '/'; want <count>/<period>, such as 100/min (like "100/min", "5/s" or "50/10s")`,
		}},
		{"rate missing", route("public", "      per: ip\n"), []string{
			`keyway.yaml:6: routes[0].rate_limit.rate: invalid rate limit "": empty; want <count>/<period>, such as 100/min (like "100/min", "5/s" or "50/10s")`,
		}},
		{"rate with a burst option", route("public", "      rate: 60/min burst=5\n"), []string{
			`keyway.yaml:7: routes[0].rate_limit.rate: rate "60/min burst=5" must not carry a burst= option (write it as rate_limit.burst)`,
		}},
		{"negative burst", route("public", "      rate: 60/min\n      burst: -1\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.burst: burst must be between 0 (the count) and 1000 times the count`,
		}},
		{"burst above 1000 times the count", route("public", "      rate: 2/min\n      burst: 2001\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.burst: burst must be between 0 (the count) and 1000 times the count`,
		}},
		{"burst too slow to refill", route("public", "      rate: 1/8760h\n      burst: 100\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.burst: invalid rate limit 1/8760h burst=100: a full burst would take longer than 320256h0m0s to refill (lower the burst or shorten the period)`,
		}},
		{"per key on a public route", route("public", "      rate: 60/min\n      per: key\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.per: per "key" needs policy api_key (use "ip")`,
		}},
		{"per key on a session route", route("session", "      rate: 60/min\n      per: key\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.per: per "key" needs policy api_key (use "ip")`,
		}},
		{"unknown per", route("public", "      rate: 60/min\n      per: bogus\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.per: unknown rate limit dimension "bogus" (use ip or key)`,
		}},
		{"per with a typo", route("api_key", "      rate: 60/min\n      per: keys\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.per: unknown rate limit dimension "keys" (did you mean "key"?)`,
		}},
		{"per in capitals", route("public", "      rate: 60/min\n      per: IP\n"), []string{
			`keyway.yaml:8: routes[0].rate_limit.per: unknown rate limit dimension "IP" (did you mean "ip"?)`,
		}},
		{"every rate_limit error at once", route("public", "      rate: 100/fortnight\n      burst: -5\n      per: key\n"), []string{
			`keyway.yaml:7: routes[0].rate_limit.rate: invalid rate limit "100/fortnight": period "fortnight" is neither a unit (s, min, hour, day) nor a positive Go duration such as 5m (like "100/min", "5/s" or "50/10s")`,
			`keyway.yaml:8: routes[0].rate_limit.burst: burst must be between 0 (the count) and 1000 times the count`,
			`keyway.yaml:9: routes[0].rate_limit.per: per "key" needs policy api_key (use "ip")`,
		}},
		{"flow style", route("public", "      {rate: abc, per: key}\n"), []string{
			`keyway.yaml:7: routes[0].rate_limit.rate: invalid rate limit "abc": missing '/'; want <count>/<period>, such as 100/min (like "100/min", "5/s" or "50/10s")`,
			`keyway.yaml:7: routes[0].rate_limit.per: per "key" needs policy api_key (use "ip")`,
		}},
		{"header with a space", "log: {level: info}\napi_keys:\n  header: Bad Header\n", []string{
			`keyway.yaml:3: api_keys.header: invalid header name "Bad Header" (like "Authorization" or "X-Api-Key")`,
		}},
		{"header Cookie", "api_keys:\n  header: Cookie\n", []string{
			`keyway.yaml:2: api_keys.header: header "Cookie" cannot carry keys (use "Authorization")`,
		}},
		{"header Host in lowercase", "api_keys:\n  header: host\n", []string{
			`keyway.yaml:2: api_keys.header: header "host" cannot carry keys (use "Authorization")`,
		}},
		{"header empty", "api_keys:\n  header: \"\"\n", []string{
			`keyway.yaml:2: api_keys.header: invalid header name "" (like "Authorization" or "X-Api-Key")`,
		}},
		{"default_ttl above max_ttl", "api_keys:\n  max_ttl: 720h\n  default_ttl: 721h\n", []string{
			`keyway.yaml:3: api_keys.default_ttl: default_ttl 721h0m0s exceeds max_ttl 720h0m0s (lower it or raise api_keys.max_ttl)`,
		}},
		{"default_ttl above the default max_ttl", "api_keys:\n  default_ttl: 8761h\n", []string{
			`keyway.yaml:2: api_keys.default_ttl: default_ttl 8761h0m0s exceeds max_ttl 8760h0m0s (lower it or raise api_keys.max_ttl)`,
		}},
		{"zero default_ttl", "api_keys:\n  default_ttl: 0s\n", []string{
			`keyway.yaml:2: api_keys.default_ttl: must be positive, got 0s`,
		}},
		// The default default_ttl is at the line of api_keys, since the file
		// does not write it.
		{"zero max_ttl", "api_keys:\n  max_ttl: 0s\n", []string{
			`keyway.yaml:1: api_keys.default_ttl: default_ttl 2160h0m0s exceeds max_ttl 0s (lower it or raise api_keys.max_ttl)`,
			`keyway.yaml:2: api_keys.max_ttl: must be positive, got 0s`,
		}},
		{"negative default_ttl", "api_keys:\n  default_ttl: -1h\n", []string{
			`keyway.yaml:2: api_keys.default_ttl: must be positive, got -1h0m0s`,
		}},
		{"audit checkpoints too often", "audit:\n  checkpoint_every: 10ms\n", []string{
			`keyway.yaml:2: audit.checkpoint_every: must be 0s or between 1s and 24h, got 10ms (like "1m"; "0s" turns checkpoints off)`,
		}},
		{"bad key store", "data_protection:\n  key_store: /var/keys.db\n", []string{
			`keyway.yaml:2: data_protection.key_store: want sqlite:PATH or a postgres:// DSN (like "sqlite:/var/lib/keyway-keys/keys.db" or "postgres://keyway@db/keyway_keys")`,
		}},
		{"negative audit checkpoints", "audit:\n  checkpoint_every: -1m\n", []string{
			`keyway.yaml:2: audit.checkpoint_every: must be 0s or between 1s and 24h, got -1m0s (like "1m"; "0s" turns checkpoints off)`,
		}},
		{"empty audit signing key command", "audit:\n  signing_key_command: [\"\"]\n", []string{
			`keyway.yaml:2: audit.signing_key_command: the first element must name a program (like ["vault", "kv", "get", "-field=audit_key", "secret/keyway"])`,
		}},
		{"bad leak_report rate_limit", "api_keys:\n  leak_report:\n    rate_limit: 30/fortnight\n", []string{
			`keyway.yaml:3: api_keys.leak_report.rate_limit: invalid rate limit "30/fortnight": period "fortnight" is neither a unit (s, min, hour, day) nor a positive Go duration such as 5m (like "300/min")`,
		}},
		{"empty leak_report rate_limit", "api_keys:\n  leak_report:\n    rate_limit: \"\"\n", []string{
			`keyway.yaml:3: api_keys.leak_report.rate_limit: invalid rate limit "": empty; want <count>/<period>, such as 100/min (like "300/min")`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load("keyway.yaml", []byte(tt.data), noEnv)
			if err == nil {
				t.Fatalf("load() = %+v, want errors %q", c, tt.want)
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("load() errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadPasskeyAndSessionErrors checks the rules on passkeys and sessions,
// with the file:line each error is reported at.
func TestLoadPasskeyAndSessionErrors(t *testing.T) {
	const originHint = ` (like "https://example.com" or "https://localhost:8443")`
	const rpIDHint = ` (a domain such as "example.com", without scheme or port)`
	const aaguidHint = ` (AAGUIDs are UUIDs, like "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4")`
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"rp_id with a scheme", "passkeys:\n  rp_id: https://x\n", []string{
			`keyway.yaml:2: passkeys.rp_id: invalid relying party ID "https://x"` + rpIDHint,
		}},
		{"rp_id with a port", "log: {level: info}\npasskeys:\n  rp_id: example.com:443\n", []string{
			`keyway.yaml:3: passkeys.rp_id: invalid relying party ID "example.com:443"` + rpIDHint,
		}},
		{"rp_id an IP address", "passkeys: {rp_id: 1.2.3.4}\n", []string{
			`keyway.yaml:1: passkeys.rp_id: invalid relying party ID "1.2.3.4"` + rpIDHint,
		}},
		// A file without passkeys has no line to place rp_id at; with
		// passkeys written, the error is at its line.
		{"rp_id required with tls files", "tls:\n  mode: files\n  cert_file: c.pem\n  key_file: k.pem\n", []string{
			`keyway.yaml: passkeys.rp_id: required with tls.mode files (the domain your certificate is for)`,
		}},
		{"rp_id required with tls files, passkeys written", "tls: {mode: files, cert_file: c.pem, key_file: k.pem}\npasskeys:\n  sign_up: open\n", []string{
			`keyway.yaml:2: passkeys.rp_id: required with tls.mode files (the domain your certificate is for)`,
		}},
		{"origins", "passkeys:\n  origins:\n    - https://example.com\n    - http://example.com\n    - https://example.com/login\n    - https://example.com/?a=1\n    - https://example.com/\n    - https://Example.com\n    - https://example.com:443\n    - example.com\n", []string{
			`keyway.yaml:4: passkeys.origins[1]: invalid origin "http://example.com"` + originHint,
			`keyway.yaml:5: passkeys.origins[2]: invalid origin "https://example.com/login" (write "https://example.com": an origin has no path, query or default port)`,
			`keyway.yaml:6: passkeys.origins[3]: invalid origin "https://example.com/?a=1" (write "https://example.com": an origin has no path, query or default port)`,
			`keyway.yaml:7: passkeys.origins[4]: invalid origin "https://example.com/" (write "https://example.com": an origin has no path, query or default port)`,
			`keyway.yaml:8: passkeys.origins[5]: invalid origin "https://Example.com" (write "https://example.com": an origin has no path, query or default port)`,
			`keyway.yaml:9: passkeys.origins[6]: invalid origin "https://example.com:443" (write "https://example.com": an origin has no path, query or default port)`,
			`keyway.yaml:10: passkeys.origins[7]: invalid origin "example.com"` + originHint,
		}},
		{"origins not a list", "passkeys:\n  origins: https://example.com\n", []string{
			`keyway.yaml:2: passkeys.origins: expected a list, got the string "https://example.com" (write [https://example.com], or one "- item" line per item)`,
		}},
		{"sign_up with a typo", "passkeys:\n  sign_up: opne\n", []string{
			`keyway.yaml:2: passkeys.sign_up: unknown sign-up mode "opne" (use open, invite or closed)`,
		}},
		{"sign_up close to one", "passkeys:\n  sign_up: close\n", []string{
			`keyway.yaml:2: passkeys.sign_up: unknown sign-up mode "close" (did you mean "closed"?)`,
		}},
		{"sign_up empty", "passkeys:\n  sign_up: \"\"\n", []string{
			`keyway.yaml:2: passkeys.sign_up: required (use open, invite or closed)`,
		}},
		{"counter_policy unknown", "passkeys:\n  counter_policy: allow\n", []string{
			`keyway.yaml:2: passkeys.counter_policy: unknown counter policy "allow" (use deny or log)`,
		}},
		{"counter_policy with a typo", "passkeys:\n  counter_policy: logs\n", []string{
			`keyway.yaml:2: passkeys.counter_policy: unknown counter policy "logs" (did you mean "log"?)`,
		}},
		{"bad AAGUIDs", "passkeys:\n  aaguid_allow:\n    - ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4\n    - ea9b8d66\n  aaguid_deny: [yubikey]\n", []string{
			`keyway.yaml:4: passkeys.aaguid_allow[1]: invalid AAGUID "ea9b8d66"` + aaguidHint,
			`keyway.yaml:5: passkeys.aaguid_deny[0]: invalid AAGUID "yubikey"` + aaguidHint,
		}},
		{"unknown key in passkeys", "passkeys:\n  rpid: example.com\n", []string{
			`keyway.yaml:2: unknown key "rpid" in passkeys (did you mean "rp_id"?)`,
		}},
		{"unknown key in sessions", "sessions:\n  idle: 5m\n", []string{
			`keyway.yaml:2: unknown key "idle" in sessions (did you mean "idle_timeout"?)`,
		}},
		{"session timeouts zero", "sessions:\n  idle_timeout: 0s\n  absolute_timeout: 0s\n  step_up_max_age: 0s\n", []string{
			`keyway.yaml:2: sessions.idle_timeout: must be positive, got 0s`,
			`keyway.yaml:3: sessions.absolute_timeout: must be positive, got 0s`,
			`keyway.yaml:4: sessions.step_up_max_age: must be positive, got 0s`,
		}},
		{"session timeouts negative", "sessions:\n  idle_timeout: -1m\n  step_up_max_age: -5m\n", []string{
			`keyway.yaml:2: sessions.idle_timeout: must be positive, got -1m0s`,
			`keyway.yaml:3: sessions.step_up_max_age: must be positive, got -5m0s`,
		}},
		{"idle above absolute", "sessions:\n  absolute_timeout: 1h\n  idle_timeout: 2h\n", []string{
			`keyway.yaml:3: sessions.idle_timeout: idle_timeout 2h0m0s exceeds absolute_timeout 1h0m0s`,
		}},
		// The default idle_timeout is at the line of sessions, since the file
		// does not write it.
		{"absolute below the default idle", "sessions:\n  absolute_timeout: 10m\n", []string{
			`keyway.yaml:1: sessions.idle_timeout: idle_timeout 30m0s exceeds absolute_timeout 10m0s`,
		}},
		{"session timeouts in days, read and checked", "sessions:\n  idle_timeout: 2d\n  absolute_timeout: 1d\n", []string{
			`keyway.yaml:2: sessions.idle_timeout: idle_timeout 48h0m0s exceeds absolute_timeout 24h0m0s`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load("keyway.yaml", []byte(tt.data), noEnv)
			if err == nil {
				t.Fatalf("load() = %+v, want errors %q", c, tt.want)
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("load() errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadPasskeysAndSessions checks valid passkeys and sessions settings,
// and that those a file leaves out keep their defaults.
func TestLoadPasskeysAndSessions(t *testing.T) {
	c := mustLoad(t, `tls: {mode: files, cert_file: c.pem, key_file: k.pem}
passkeys:
  rp_id: example.com
  origins: ["https://example.com", "https://login.example.com:8443"]
  aaguid_allow: [EA9B8D66-4D01-1D21-3CE4-B6B48CB575D4]
sessions:
  idle_timeout: 12h
`, nil)
	wantPasskeys := Passkeys{RPID: "example.com", RPName: "keyway", SignUp: "invite", CounterPolicy: "deny", ChallengeTTL: 5 * time.Minute,
		Origins: []string{"https://example.com", "https://login.example.com:8443"}, AAGUIDAllow: []string{"EA9B8D66-4D01-1D21-3CE4-B6B48CB575D4"}}
	if diff := cmp.Diff(wantPasskeys, c.Passkeys); diff != "" {
		t.Errorf("Passkeys mismatch (-want +got):\n%s", diff)
	}
	// idle_timeout may equal absolute_timeout.
	wantSessions := Sessions{IdleTimeout: 12 * time.Hour, AbsoluteTimeout: 12 * time.Hour, StepUpMaxAge: 5 * time.Minute}
	if diff := cmp.Diff(wantSessions, c.Sessions); diff != "" {
		t.Errorf("Sessions mismatch (-want +got):\n%s", diff)
	}
}

// TestLoadRateLimitAndAPIKeys checks valid rate_limit and api_keys settings.
func TestLoadRateLimitAndAPIKeys(t *testing.T) {
	c := mustLoad(t, `data_dir: /srv/k
api_keys:
  header: x-api-key
  default_ttl: 1h
  max_ttl: 1h
  leak_report: {rate_limit: 5/s}
upstreams: {api: {url: "http://localhost:3000"}}
routes:
  - {path: /a, upstream: api, policy: public, rate_limit: {rate: 50/10s}}
  - {path: /b, upstream: api, policy: api_key, rate_limit: {rate: 1000/hour, burst: 0, per: key}}
  - {path: /c, upstream: api, policy: api_key, rate_limit: {rate: 10/s, burst: 10000, per: ip}}
  - {path: /d, upstream: api, policy: public}
`, nil)
	wantKeys := APIKeys{Header: "x-api-key", PepperFile: "/srv/k/pepper.key", DefaultTTL: time.Hour, MaxTTL: time.Hour,
		LeakReport: LeakReport{Enabled: ptr(true), RateLimit: "5/s"}}
	if diff := cmp.Diff(wantKeys, c.APIKeys); diff != "" {
		t.Errorf("APIKeys mismatch (-want +got):\n%s", diff)
	}
	wantLimits := []*RateLimit{{Rate: "50/10s"}, {Rate: "1000/hour", Per: "key"}, {Rate: "10/s", Burst: 10000, Per: "ip"}, nil}
	var gotLimits []*RateLimit
	for _, r := range c.Routes {
		gotLimits = append(gotLimits, r.RateLimit)
	}
	if diff := cmp.Diff(wantLimits, gotLimits); diff != "" {
		t.Errorf("rate limits mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load() error = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "big.yaml")
		if err := os.WriteFile(path, make([]byte, maxFileSize+1), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than 4 MiB") {
			t.Errorf("Load() error = %v, want too large", err)
		}
	})
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "k.yaml", Line: 3, Msg: "bad", Hint: "fix it"}, "k.yaml:3: bad (fix it)"},
		{"no line", Error{File: "k.yaml", Msg: "bad"}, "k.yaml: bad"},
		{"no file", Error{Msg: "bad"}, "bad"},
		{"line only", Error{Line: 7, Msg: "bad"}, "line 7: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("log: &a {<<: *a}\n"))
	f.Add([]byte("routes: [{<<: [{path: /}], methods: [GET]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := load("fuzz.yaml", data, noEnv)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || len(es) > maxErrors+1 {
				t.Fatalf("load() error is not a non-empty, bounded Errors: %#v", err)
			}
			for _, e := range es {
				if e.Msg == "" || e.Line < 0 {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded config does not validate again: %v", err)
		}
		c.Lint()
	})
}

func warningStrings(ws []Warning) []string {
	var s []string
	for _, w := range ws {
		s = append(s, w.String())
	}
	return s
}
