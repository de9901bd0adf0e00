package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	// Each case changes a valid demo config; want lists every error, in order.
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"demo is valid", func(c *Config) {}, nil},
		{"port 0 listeners may share", func(c *Config) { c.Listen, c.AdminListen, c.HTTPListen = ":0", ":0", ":0" }, nil},
		{"http listener off", func(c *Config) { c.HTTPListen = ListenOff }, nil},
		{"listen required", func(c *Config) { c.Listen = "" },
			[]string{"listen: required (like 127.0.0.1:8443, or :8443 for every interface)"}},
		{"listen without port", func(c *Config) { c.Listen = "localhost" },
			[]string{`listen: invalid address "localhost": want host:port (like 127.0.0.1:8443, or :8443 for every interface)`}},
		{"bad port", func(c *Config) { c.AdminListen = "127.0.0.1:http" },
			[]string{`admin_listen: invalid port "http" in "127.0.0.1:http" (ports are numbers from 0 to 65535)`}},
		{"http listen bad", func(c *Config) { c.HTTPListen = "no" },
			[]string{`http_listen: invalid address "no": want host:port (like 127.0.0.1:8443, or :8443 for every interface, or "off")`}},
		{"admin on the HTTPS address", func(c *Config) { c.AdminListen = "127.0.0.1:8443" },
			[]string{`admin_listen: "127.0.0.1:8443" conflicts with listen ("127.0.0.1:8443") (each listener needs its own address)`}},
		{"admin inside a wildcard listener", func(c *Config) { c.Listen, c.AdminListen = ":9090", "127.0.0.1:9090" },
			[]string{`admin_listen: "127.0.0.1:9090" conflicts with listen (":9090") (each listener needs its own address)`}},
		{"localhost is loopback", func(c *Config) { c.HTTPListen = "localhost:8443" },
			[]string{`http_listen: "localhost:8443" conflicts with listen ("127.0.0.1:8443") (each listener needs its own address)`}},
		{"data dir required", func(c *Config) { c.DataDir = "" }, []string{"data_dir: required"}},
		{"log level", func(c *Config) { c.Log.Level = "warning" },
			[]string{`log.level: unknown log level "warning" (did you mean "warn"?)`}},
		{"TLS mode", func(c *Config) { c.TLS.Mode = "acm" },
			[]string{`tls.mode: unknown TLS mode "acm" (did you mean "acme"?)`}},
		{"TLS version", func(c *Config) { c.TLS.MinVersion = "1.0" },
			[]string{`tls.min_version: unknown TLS version "1.0" (did you mean "1.2"?)`}},
		{"TLS version far off", func(c *Config) { c.TLS.MinVersion = "TLS13" },
			[]string{`tls.min_version: unknown TLS version "TLS13" (use 1.2 or 1.3)`}},
		{"files mode needs files", func(c *Config) { c.TLS.Mode = TLSFiles; c.TLS.KeyFile = "k.pem"; c.Passkeys.RPID = "example.com" },
			[]string{"tls.cert_file: required with mode files"}},
		{"files mode needs an rp_id", func(c *Config) { c.TLS.Mode, c.TLS.CertFile, c.TLS.KeyFile = TLSFiles, "c.pem", "k.pem" },
			[]string{"passkeys.rp_id: required with tls.mode files (the domain your certificate is for)"}},
		{"files mode is valid", func(c *Config) {
			c.TLS.Mode, c.TLS.CertFile, c.TLS.KeyFile = TLSFiles, "c.pem", "k.pem"
			c.Passkeys.RPID = "example.com"
		}, nil},
		{"files outside files mode", func(c *Config) { c.TLS.CertFile = "c.pem" },
			[]string{"tls.cert_file: only used with mode files (set tls.mode: files to use it, or remove it)"}},
		{"acme needs hosts", func(c *Config) { c.TLS.Mode = TLSACME },
			[]string{"tls.acme.hosts: required with mode acme (list the names to request certificates for)"}},
		{"acme hosts", func(c *Config) {
			c.TLS.Mode = TLSACME
			c.TLS.ACME.Hosts = []string{"api.example.com", "*.example.com", "192.0.2.1", "Www.example.com", "bad_name.example.com", "api.example.com"}
			c.TLS.ACME.Email = "ops"
			c.TLS.ACME.DirectoryURL = "http://acme.test/dir"
		}, []string{
			`tls.acme.hosts[1]: wildcard host "*.example.com": ACME HTTP and TLS-ALPN challenges cannot validate wildcards (list each name instead)`,
			`tls.acme.hosts[2]: "192.0.2.1" is an IP address; ACME certificates are requested for DNS names`,
			`tls.acme.hosts[3]: host "Www.example.com" must be lowercase (write "www.example.com")`,
			`tls.acme.hosts[4]: invalid host name "bad_name.example.com"`,
			`tls.acme.hosts[5]: host "api.example.com" is listed twice`,
			`tls.acme.email: invalid email "ops" (write a plain address like ops@example.com)`,
			`tls.acme.directory_url: must be an https URL, got "http://acme.test/dir"`,
		}},
		{"acme outside acme mode", func(c *Config) { c.TLS.ACME.Hosts = []string{"example.com"} },
			[]string{"tls.acme: only used with mode acme (set tls.mode: acme to use it, or remove it)"}},
		{"acme is valid", func(c *Config) { c.TLS.Mode = TLSACME; c.TLS.ACME.Hosts = []string{"example.com"} }, nil},
		{"short HSTS", func(c *Config) { c.TLS.HSTSMaxAge = 24 * time.Hour },
			[]string{"tls.hsts_max_age: 24h0m0s is shorter than 365 days (use 8760h or more)"}},
		{"postgres without a DSN", func(c *Config) { c.Store.Driver = "postgres" },
			[]string{`store.dsn: required with driver postgres (set store.dsn or KEYWAY_STORE_DSN to postgres://user@host:5432/db)`}},
		{"postgres DSN of another scheme, never quoted", func(c *Config) { c.Store.Driver, c.Store.DSN = "postgres", "mysql://u:s3cret@db/x" },
			[]string{`store.dsn: not a postgres:// URL with a host (postgres://user@host:5432/db?sslmode=verify-full)`}},
		{"a store string that is neither", func(c *Config) { c.SetStore("mongodb://u:s3cret@db") },
			[]string{`store: the store is neither a postgres:// URL nor sqlite:PATH (give postgres://user@host:5432/db?sslmode=… or sqlite:PATH)`}},
		{"a DSN on sqlite", func(c *Config) { c.Store.DSN = "postgres://db/x" },
			[]string{`store.dsn: a DSN is for driver postgres (remove it, or set driver: postgres)`}},
		{"unknown store driver", func(c *Config) { c.Store.Driver = "sqlite3" },
			[]string{`store.driver: unknown store driver "sqlite3" (did you mean "sqlite"?)`}},
		{"store path", func(c *Config) { c.Store.Path = "" }, []string{"store.path: required"}},
		{"server limits", func(c *Config) {
			c.Server.ReadTimeout = 0
			c.Server.IdleTimeout = -time.Second
			c.Server.MaxHeaderBytes = 0
		},
			[]string{
				"server.read_timeout: must be positive, got 0s",
				"server.idle_timeout: must be positive, got -1s",
				"server.max_header_bytes: must be positive, got 0",
			}},
		{"hosts and ipv6 prefix", func(c *Config) {
			c.Server.Hosts = []string{"api.example.com", "192.0.2.1", "::1", "[::1]", "*.example.com", "api.example.com:443",
				"https://x.example", "Api.example.com", "bad_name.example", "fe80::1%eth0"}
			c.Server.IPv6Prefix = 16
		}, []string{
			`server.ipv6_prefix: must be between 32 and 128, got 16 (64 is what one connection usually gets)`,
			`server.hosts[4]: wildcard host "*.example.com" is not supported (list each name)`,
			`server.hosts[5]: host "api.example.com:443" must be a name or IP address without scheme, port or path (write the name alone: any port is accepted)`,
			`server.hosts[6]: host "https://x.example" must be a name or IP address without scheme, port or path (write the name alone: any port is accepted)`,
			`server.hosts[7]: host "Api.example.com" must be lowercase (write "api.example.com")`,
			`server.hosts[8]: invalid host name "bad_name.example"`,
			`server.hosts[9]: host "fe80::1%eth0" must be a name or IP address without scheme, port or path (write the name alone: any port is accepted)`,
		}},
		{"websocket", func(c *Config) {
			c.Routes[0].WebSocket = true
			c.Routes[0].WebSocketMaxLifetime = 48 * time.Hour
			c.Routes[2].WebSocket, c.Routes[2].Methods, c.Routes[2].WebSocketMaxLifetime = true, []string{"POST"}, time.Minute
			c.Routes[3].WebSocketMaxLifetime = time.Minute
		}, []string{
			"routes[0].websocket_max_lifetime: must be above 0 and at most 24h, got 48h0m0s",
			"routes[2].websocket: a WebSocket opens with a GET, which this route does not allow (add GET to methods)",
			"routes[3].websocket_max_lifetime: only used with websocket: true (set websocket: true to use it, or remove it)",
		}},
		{"pass headers", func(c *Config) {
			c.Routes[0].PassHeaders = []string{"X-HTTP-Method-Override", "X_Legacy_Id", "x_keyway_subject", "X-Forwarded_Host",
				"Forwarded", "X_Real_IP", "x-request-id", "authorization", "Accept", "bad header", ""}
		}, []string{
			`routes[0].pass_headers[2]: "x_keyway_subject" is an identity or forwarding header (in some spelling) and can never be passed from a client (keyway sets these itself; an upstream must never get a client's copy)`,
			`routes[0].pass_headers[3]: "X-Forwarded_Host" is an identity or forwarding header (in some spelling) and can never be passed from a client (keyway sets these itself; an upstream must never get a client's copy)`,
			`routes[0].pass_headers[4]: "Forwarded" is an identity or forwarding header (in some spelling) and can never be passed from a client (keyway sets these itself; an upstream must never get a client's copy)`,
			`routes[0].pass_headers[5]: "X_Real_IP" is an identity or forwarding header (in some spelling) and can never be passed from a client (keyway sets these itself; an upstream must never get a client's copy)`,
			`routes[0].pass_headers[6]: "x-request-id" is an identity or forwarding header (in some spelling) and can never be passed from a client (keyway sets these itself; an upstream must never get a client's copy)`,
			`routes[0].pass_headers[7]: "authorization" is an identity or forwarding header (in some spelling) and can never be passed from a client (keyway sets these itself; an upstream must never get a client's copy)`,
			`routes[0].pass_headers[8]: "Accept" is forwarded anyway (list only headers keyway would remove: names with _ and method or path overrides)`,
			`routes[0].pass_headers[9]: invalid header name "bad header" (like "X-HTTP-Method-Override" or "X_Legacy_Id")`,
			`routes[0].pass_headers[10]: invalid header name "" (like "X-HTTP-Method-Override" or "X_Legacy_Id")`,
		}},
		{"case-insensitive duplicates use ASCII case only", func(c *Config) {
			c.Server.CaseInsensitivePaths = true
			c.Routes = append(c.Routes,
				Route{Path: "/Ünïcode", Upstream: "weather", Policy: PolicyPublic, MaxBody: 1, Timeout: 1},
				Route{Path: "/ünïcode", Upstream: "weather", Policy: PolicyPublic, MaxBody: 1, Timeout: 1},
				Route{Path: "/V1/FORECAST", Upstream: "weather", Policy: PolicyPublic, MaxBody: 1, Timeout: 1, Methods: []string{"GET"}})
		}, []string{`routes[6]: GET /V1/FORECAST is already routed by routes[0] ("forecast")`}},
		{"invalid trusted proxy", func(c *Config) { c.TrustedProxies = []netip.Prefix{{}} },
			[]string{"trusted_proxies[0]: invalid CIDR"}},
		{"upstream limits", func(c *Config) { c.Upstreams["b"] = Upstream{URL: "http://localhost", CAFile: "ca.pem"} },
			[]string{
				"upstreams.b.max_idle_conns: must be positive, got 0",
				"upstreams.b.dial_timeout: must be positive, got 0s",
				"upstreams.b.ca_file: only used with an https upstream",
			}},
		{"assertion and mutual TLS", func(c *Config) {
			c.Upstreams["b"] = Upstream{URL: "http://localhost", MaxIdleConns: 1, DialTimeout: 1, Audience: "x", MTLS: true}
			c.Upstreams["c"] = Upstream{URL: "https://api.internal", MaxIdleConns: 1, DialTimeout: 1, ClientCertFile: "c.pem"}
			c.Upstreams["d"] = Upstream{URL: "https://api.internal", MaxIdleConns: 1, DialTimeout: 1, ClientCertFile: "c.pem", ClientKeyFile: "k.pem"}
			c.Upstreams["e"] = Upstream{URL: "https://api.internal", MaxIdleConns: 1, DialTimeout: 1, Assertion: true, Audience: "urn:x",
				MTLS: true, ClientCertFile: "c.pem", ClientKeyFile: "k.pem"}
		}, []string{
			"upstreams.b.audience: only used with assertion: true (set assertion: true to use it, or remove it)",
			"upstreams.b.mtls: mutual TLS needs an https upstream (use an https upstream URL)",
			"upstreams.c.client_cert_file: client_cert_file and client_key_file go together",
			"upstreams.d.client_cert_file: only used with mtls: true (set mtls: true to use it, or remove it)",
		}},
		{"empty upstream name", func(c *Config) { c.Upstreams[""] = Upstream{URL: "http://localhost", MaxIdleConns: 1, DialTimeout: 1} },
			[]string{"upstreams: an upstream has an empty name"}},
		{"route paths", func(c *Config) {
			c.Routes = nil
			for _, p := range []string{"", "//v1", "/v1/../x", "/v1%2F", "/v1?x", "/v1#x", `/v1\x`, "/v1/", "/v1/./x", "/v 1", "/v1/."} {
				c.Routes = append(c.Routes, Route{Path: p, Upstream: "weather", Policy: PolicyPublic, MaxBody: 1, Timeout: 1})
			}
		}, []string{
			`routes[0].path: required (a prefix like "/v1")`,
			`routes[1].path: "//v1" must not contain //`,
			`routes[2].path: "/v1/../x" must not contain ..`,
			`routes[3].path: "/v1%2F" must not contain %, ?, # or \ (write the decoded path prefix, without query or fragment)`,
			`routes[4].path: "/v1?x" must not contain %, ?, # or \ (write the decoded path prefix, without query or fragment)`,
			`routes[5].path: "/v1#x" must not contain %, ?, # or \ (write the decoded path prefix, without query or fragment)`,
			`routes[6].path: "/v1\\x" must not contain %, ?, # or \ (write the decoded path prefix, without query or fragment)`,
			`routes[7].path: "/v1/" must not end with / (write "/v1": a prefix matches on segment boundaries, so it covers "/v1/x" too)`,
			`routes[8].path: "/v1/./x" must not contain . segments`,
			`routes[9].path: "/v 1" must not contain spaces or control characters`,
			`routes[10].path: "/v1/." must not contain . segments`,
		}},
		{"root route", func(c *Config) { c.Routes[0].Path = "/" }, nil},
		{"methods", func(c *Config) { c.Routes[0].Methods = []string{"GET", "post", "TRACE", "FETCH", "GET"} },
			[]string{
				`routes[0].methods[1]: method "post" must be uppercase (write "POST")`,
				"routes[0].methods[2]: method TRACE cannot be routed: keyway does not proxy it",
				`routes[0].methods[3]: unknown method "FETCH" (use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS)`,
				"routes[0].methods[4]: method GET is listed twice",
			}},
		{"upstream required", func(c *Config) { c.Routes[0].Upstream = "" },
			[]string{"routes[0].upstream: required (name one of upstreams (a route without one is only for forward_auth))"}},
		{"unknown upstream", func(c *Config) { c.Routes[0].Upstream = "wheather" },
			[]string{`routes[0].upstream: unknown upstream "wheather" (did you mean "weather"?)`}},
		{"unknown upstream far off", func(c *Config) { c.Routes[0].Upstream = "billing" },
			[]string{`routes[0].upstream: unknown upstream "billing" (define it under upstreams)`}},
		{"policy required", func(c *Config) { c.Routes[0].Policy = "" },
			[]string{"routes[0].policy: required (use public, api_key or session; there is no default, so that nothing is public by accident)"}},
		{"unknown policy", func(c *Config) { c.Routes[0].Policy = "apikey" },
			[]string{`routes[0].policy: unknown policy "apikey" (did you mean "api_key"?)`}},
		{"roles need session, and valid names", func(c *Config) {
			c.Routes[1].Roles = []string{"ops"}
			c.Routes[2].Roles = []string{"ops", "Ops", "", "a b", "billing:read"}
		},
			[]string{
				"routes[1].roles: roles are only used with policy session (API keys carry scopes: use scopes on api_key routes)",
				`routes[2].roles[1]: invalid role "Ops" (1 to 64 characters: a-z, 0-9 and . _ : -, starting with a letter or digit)`,
				`routes[2].roles[2]: invalid role "" (1 to 64 characters: a-z, 0-9 and . _ : -, starting with a letter or digit)`,
				`routes[2].roles[3]: invalid role "a b" (1 to 64 characters: a-z, 0-9 and . _ : -, starting with a letter or digit)`,
			}},
		{"scopes need api_key", func(c *Config) { c.Routes[0].Scopes = []string{"x"}; c.Routes[1].Scopes = []string{"", "a b"} },
			[]string{
				"routes[0].scopes: scopes are only used with policy api_key",
				`routes[1].scopes[0]: invalid scope "" (like "weather:history")`,
				`routes[1].scopes[1]: invalid scope "a b" (like "weather:history")`,
			}},
		{"route limits", func(c *Config) {
			c.Routes[0].MaxBody = 0
			c.Routes[1].Timeout = 0
			c.Routes[2].Timeout = 2 * time.Minute
		},
			[]string{
				"routes[0].max_body: must be positive, got 0",
				"routes[1].timeout: must be positive, got 0s",
				"routes[2].timeout: 2m0s must be less than server.write_timeout (2m0s), or the client is cut off before the 504 (lower it, or raise server.write_timeout)",
			}},
		{"duplicate route", func(c *Config) {
			c.Routes = append(c.Routes, Route{Name: "again", Path: "/v1/forecast", Methods: []string{"POST", "GET"}, Upstream: "weather", Policy: PolicyPublic, MaxBody: 1, Timeout: 1})
		}, []string{`routes[4]: GET /v1/forecast is already routed by routes[0] ("forecast")`}},
		{"duplicate route by default methods", func(c *Config) {
			c.Routes = append(c.Routes, Route{Path: "/v1/forecast", Upstream: "weather", Policy: PolicyPublic, MaxBody: 1, Timeout: 1})
		}, []string{`routes[4]: GET /v1/forecast is already routed by routes[0] ("forecast")`}},
		{"case-insensitive duplicate", func(c *Config) {
			c.Server.CaseInsensitivePaths = true
			c.Routes = append(c.Routes, Route{Path: "/V1/Forecast", Methods: []string{"GET"}, Upstream: "weather", Policy: PolicyPublic, MaxBody: 1, Timeout: 1})
		}, []string{`routes[4]: GET /V1/Forecast is already routed by routes[0] ("forecast")`}},
		{"same path, other method", func(c *Config) {
			c.Routes = append(c.Routes, Route{Path: "/v1/forecast", Methods: []string{"DELETE"}, Upstream: "weather", Policy: PolicySession, MaxBody: 1, Timeout: 1})
		}, nil},
		{"session route", func(c *Config) { c.Routes[0].Policy = PolicySession; c.Routes[0].RateLimit = nil }, nil},
		{"api_key route from a user's config", func(c *Config) { c.Routes[0].Policy = PolicyAPIKey; c.Routes[0].RateLimit = nil }, nil},
		{"demo URL needs demo", func(c *Config) { c.Demo = false },
			[]string{`upstreams.weather.url: "demo:" is the demo upstream, which needs demo mode (set demo: true to run the built-in demo upstream)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			c.Clients = nil // TestValidateClients checks them
			tt.change(c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateClients(t *testing.T) {
	// Each case changes the demo's client profiles: web (session) and
	// partner (api_key); routes[0] forecast is public, [1] history api_key,
	// [2] me and [3] me-cities session.
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"demo", func(c *Config) {}, nil},
		{"bad names and credentials", func(c *Config) {
			c.Clients["Bad Name"] = Client{Credential: "cookie", Routes: map[string][]string{"me": nil}, NonJSON: "refuse", MaxShapedBody: 1, CORS: CORS{MaxAge: 1}}
			c.Clients["web2"] = Client{Credential: PolicySession, Routes: map[string][]string{"me": nil}, NonJSON: "refuse", MaxShapedBody: 1, CORS: CORS{MaxAge: 1}}
		}, []string{
			`clients.Bad Name: invalid client name "Bad Name" (lower-case letters, digits, - and _, at most 32)`,
			`clients.Bad Name.credential: required: session or api_key, got "cookie" (use session or api_key)`,
			"clients.web2.credential: only one client may use credential session (one profile describes the browser; merge them)",
		}},
		{"routes", func(c *Config) {
			w := c.Clients["web"]
			w.Routes = map[string][]string{"me": {"POST"}, "history": nil, "nope": nil, "me-citys": nil}
			w.Fields = map[string]Fields{"me": {Deny: []string{"billing"}}, "forecast": {Allow: []string{"a"}}}
			c.Clients["web"] = w
			p := c.Clients["partner"]
			p.Routes = nil
			p.Fields = nil
			c.Clients["partner"] = p
		}, []string{
			"clients.partner.routes: required: a client calls nothing it is not given (list the routes it may call, by name)",
			`clients.web.routes.history: route "history" has policy api_key, which a client with credential session cannot pass`,
			`clients.web.routes.me: route "me" does not allow POST (use methods the route allows: GET)`,
			`clients.web.routes.me-citys: unknown route "me-citys" (did you mean "me-cities"?)`,
			`clients.web.routes.nope: unknown route "nope" (name one of routes)`,
			`clients.web.fields.forecast: route "forecast" is not one of the client's routes (add the route to the client's routes, or remove the rule)`,
		}},
		{"ambiguous route name", func(c *Config) {
			c.Routes[3].Name = "me"
		}, []string{
			`clients.web.routes.me: route name "me" names 2 routes (give those routes names of their own)`,
			`clients.web.routes.me-cities: unknown route "me-cities" (name one of routes)`,
		}},
		{"field rule on a WebSocket route", func(c *Config) {
			c.Routes[2].WebSocket, c.Routes[2].WebSocketMaxLifetime = true, time.Hour
		}, []string{
			`clients.web.fields.me: route "me" accepts WebSockets, whose messages cannot be trimmed (serve the WebSocket on a route of its own, without a field rule)`,
		}},
		{"field rules", func(c *Config) {
			w := c.Clients["web"]
			w.Fields = map[string]Fields{"me": {Allow: []string{"a"}, Deny: []string{"b"}}, "me-cities": {}, "forecast": {Deny: []string{"a..b"}}}
			w.NonJSON, w.MaxShapedBody = "drop", 32<<20
			c.Clients["web"] = w
		}, []string{
			`clients.web.fields.forecast.deny: shape: invalid path "a..b": a path is field names joined by dots, each optionally followed by []`,
			"clients.web.fields.me: a field rule is an allow list or a deny list, not both (keep the one that says what the client needs)",
			"clients.web.fields.me-cities: empty field rule (write allow: [...] or deny: [...])",
			`clients.web.non_json: unknown non-JSON answer policy "drop" (use refuse or pass)`,
			"clients.web.max_shaped_body: must be above 0 and at most 16MiB, got 33554432",
		}},
		{"cors", func(c *Config) {
			w := c.Clients["web"]
			w.CORS = CORS{Origins: []string{"https://app.example.com", "*", "https://*.example.com", "null", "http://app.example.com",
				"http://localhost:3000", "https://app.example.com/path", "HTTPS://App.example.com", "ftp://x.example"},
				AllowHeaders: []string{"X-Trace", "*", "bad header"}, MaxAge: 48 * time.Hour}
			c.Clients["web"] = w
			p := c.Clients["partner"]
			p.CORS.Origins = []string{"https://partner.example.com"}
			c.Clients["partner"] = p
		}, []string{
			"clients.partner.cors: CORS is only for a session client: a key in browser JavaScript is what keyway exists to prevent (browsers hold a session cookie, never an API key: give the browser app a session client)",
			"clients.web.cors.origins[1]: a wildcard origin with credentials would let any site act as the signed-in person (list each origin)",
			"clients.web.cors.origins[2]: a wildcard origin with credentials would let any site act as the signed-in person (list each origin)",
			`clients.web.cors.origins[3]: origin "null" is what sandboxed and file pages send: any page can claim it`,
			`clients.web.cors.origins[4]: origin "http://app.example.com" is plain http: anyone on its network can act as the signed-in person (serve the app over https)`,
			`clients.web.cors.origins[6]: invalid origin "https://app.example.com/path" (like "https://app.example.com")`,
			`clients.web.cors.origins[7]: origin "HTTPS://App.example.com" is not in its serialised form (write "https://app.example.com": origins are compared byte for byte)`,
			`clients.web.cors.origins[8]: invalid origin "ftp://x.example" (like "https://app.example.com")`,
			`clients.web.cors.allow_headers[1]: invalid header name "*" (like "X-Trace")`,
			`clients.web.cors.allow_headers[2]: invalid header name "bad header" (like "X-Trace")`,
			"clients.web.cors.max_age: must be above 0 and at most 24h, got 48h0m0s",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			tt.change(c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateRateLimit(t *testing.T) {
	const rateHint = ` (like "100/min", "5/s" or "50/10s")`
	// Each case sets the rate limit of a route of the demo: routes[0] is
	// public, routes[1] api_key and routes[2] session.
	tests := []struct {
		name  string
		route int
		rl    RateLimit
		want  []string
	}{
		{"per ip", 0, RateLimit{Rate: "60/min", Burst: 20, Per: "ip"}, nil},
		{"per defaults", 0, RateLimit{Rate: "60/min"}, nil},
		{"per key on api_key", 1, RateLimit{Rate: "1000/hour", Per: "key"}, nil},
		{"per ip on api_key", 1, RateLimit{Rate: "1000/hour", Per: "ip"}, nil},
		{"per ip on session", 2, RateLimit{Rate: "5/s", Per: "ip"}, nil},
		{"period as a duration", 0, RateLimit{Rate: "50/10s"}, nil},
		{"burst 1000 times the count", 0, RateLimit{Rate: "2/min", Burst: 2000}, nil},
		{"unknown period", 0, RateLimit{Rate: "100/fortnight"}, []string{
			`routes[0].rate_limit.rate: invalid rate limit "100/fortnight": period "fortnight" is neither a unit (s, min, hour, day) nor a positive Go duration such as 5m` + rateHint,
		}},
		{"zero count", 0, RateLimit{Rate: "0/min"}, []string{
			`routes[0].rate_limit.rate: invalid rate limit "0/min": count must be at least 1` + rateHint,
		}},
		{"not a rate", 0, RateLimit{Rate: "abc"}, []string{
			`routes[0].rate_limit.rate: invalid rate limit "abc": missing '/'; want <count>/<period>, such as 100/min` + rateHint,
		}},
		{"negative count", 0, RateLimit{Rate: "-5/min"}, []string{
			`routes[0].rate_limit.rate: invalid rate limit "-5/min": count "-5" is not a positive decimal integer` + rateHint,
		}},
		{"rate required", 0, RateLimit{Per: "ip"}, []string{
			`routes[0].rate_limit.rate: invalid rate limit "": empty; want <count>/<period>, such as 100/min` + rateHint,
		}},
		{"rate too high", 0, RateLimit{Rate: "2000000/s"}, []string{
			`routes[0].rate_limit.rate: invalid rate limit 2000000/s: rate too high: at most one event per 1µs (1000000/s)` + rateHint,
		}},
		{"burst option in the rate", 0, RateLimit{Rate: "60/min burst=5"}, []string{
			`routes[0].rate_limit.rate: rate "60/min burst=5" must not carry a burst= option (write it as rate_limit.burst)`,
		}},
		{"negative burst", 0, RateLimit{Rate: "60/min", Burst: -1}, []string{
			"routes[0].rate_limit.burst: burst must be between 0 (the count) and 1000 times the count",
		}},
		{"negative burst with a bad rate", 0, RateLimit{Rate: "abc", Burst: -1}, []string{
			`routes[0].rate_limit.rate: invalid rate limit "abc": missing '/'; want <count>/<period>, such as 100/min` + rateHint,
			"routes[0].rate_limit.burst: burst must be between 0 (the count) and 1000 times the count",
		}},
		{"burst above 1000 times the count", 0, RateLimit{Rate: "2/min", Burst: 2001}, []string{
			"routes[0].rate_limit.burst: burst must be between 0 (the count) and 1000 times the count",
		}},
		{"burst too slow to refill", 0, RateLimit{Rate: "1/8760h", Burst: 100}, []string{
			"routes[0].rate_limit.burst: invalid rate limit 1/8760h burst=100: a full burst would take longer than 320256h0m0s to refill (lower the burst or shorten the period)",
		}},
		{"per key on public", 0, RateLimit{Rate: "60/min", Per: "key"}, []string{
			`routes[0].rate_limit.per: per "key" needs policy api_key (use "ip")`,
		}},
		{"per key on session", 2, RateLimit{Rate: "60/min", Per: "key"}, []string{
			`routes[2].rate_limit.per: per "key" needs policy api_key (use "ip")`,
		}},
		{"unknown per", 1, RateLimit{Rate: "60/min", Per: "bogus"}, []string{
			`routes[1].rate_limit.per: unknown rate limit dimension "bogus" (use ip or key)`,
		}},
		{"per with a typo", 1, RateLimit{Rate: "60/min", Per: "keys"}, []string{
			`routes[1].rate_limit.per: unknown rate limit dimension "keys" (did you mean "key"?)`,
		}},
		{"per user", 1, RateLimit{Rate: "60/min", Per: "user"}, []string{
			`routes[1].rate_limit.per: unknown rate limit dimension "user" (use ip or key)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			c.Routes[tt.route].RateLimit = &tt.rl
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateAPIKeys(t *testing.T) {
	tests := []struct {
		name   string
		change func(a *APIKeys)
		want   []string
	}{
		{"defaults", func(a *APIKeys) {}, nil},
		{"other header", func(a *APIKeys) { a.Header = "X-Api-Key" }, nil},
		{"lowercase header", func(a *APIKeys) { a.Header = "x-api-key" }, nil},
		{"equal TTLs", func(a *APIKeys) { a.DefaultTTL, a.MaxTTL = time.Hour, time.Hour }, nil},
		{"leak report off", func(a *APIKeys) { a.LeakReport.Enabled = ptr(false) }, nil},
		{"header with a space", func(a *APIKeys) { a.Header = "Bad Header" },
			[]string{`api_keys.header: invalid header name "Bad Header" (like "Authorization" or "X-Api-Key")`}},
		{"header with a colon", func(a *APIKeys) { a.Header = "X-Key:" },
			[]string{`api_keys.header: invalid header name "X-Key:" (like "Authorization" or "X-Api-Key")`}},
		{"header required", func(a *APIKeys) { a.Header = "" },
			[]string{`api_keys.header: invalid header name "" (like "Authorization" or "X-Api-Key")`}},
		{"header Cookie", func(a *APIKeys) { a.Header = "Cookie" },
			[]string{`api_keys.header: header "Cookie" cannot carry keys (use "Authorization")`}},
		{"header X-Forwarded-For", func(a *APIKeys) { a.Header = "x-forwarded-for" },
			[]string{`api_keys.header: header "x-forwarded-for" cannot carry keys (use "Authorization")`}},
		{"header Content-Length", func(a *APIKeys) { a.Header = "Content-Length" },
			[]string{`api_keys.header: header "Content-Length" cannot carry keys (use "Authorization")`}},
		{"default_ttl above max_ttl", func(a *APIKeys) { a.DefaultTTL, a.MaxTTL = 48*time.Hour, 24*time.Hour },
			[]string{"api_keys.default_ttl: default_ttl 48h0m0s exceeds max_ttl 24h0m0s (lower it or raise api_keys.max_ttl)"}},
		{"zero default_ttl", func(a *APIKeys) { a.DefaultTTL = 0 },
			[]string{"api_keys.default_ttl: must be positive, got 0s"}},
		{"negative default_ttl", func(a *APIKeys) { a.DefaultTTL = -time.Hour },
			[]string{"api_keys.default_ttl: must be positive, got -1h0m0s"}},
		{"zero TTLs", func(a *APIKeys) { a.DefaultTTL, a.MaxTTL = 0, 0 },
			[]string{
				"api_keys.default_ttl: must be positive, got 0s",
				"api_keys.max_ttl: must be positive, got 0s",
			}},
		{"bad leak report rate", func(a *APIKeys) { a.LeakReport.RateLimit = "30/fortnight" },
			[]string{`api_keys.leak_report.rate_limit: invalid rate limit "30/fortnight": period "fortnight" is neither a unit (s, min, hour, day) nor a positive Go duration such as 5m (like "300/min")`}},
		{"leak report rate required", func(a *APIKeys) { a.LeakReport.RateLimit = "" },
			[]string{`api_keys.leak_report.rate_limit: invalid rate limit "": empty; want <count>/<period>, such as 100/min (like "300/min")`}},
		{"admin scope is not self-service", func(a *APIKeys) { a.SelfServiceScopes = []string{"orders:read", "keyway:admin"} },
			[]string{"api_keys.self_service_scopes[1]: keyway:admin cannot be a self-service scope (make admin keys with keyway keys create, for a service account)"}},
		{"everything wrong", func(a *APIKeys) {
			*a = APIKeys{Header: "Bad Header", DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour, LeakReport: LeakReport{RateLimit: "abc"}}
		}, []string{
			`api_keys.header: invalid header name "Bad Header" (like "Authorization" or "X-Api-Key")`,
			"api_keys.default_ttl: default_ttl 2h0m0s exceeds max_ttl 1h0m0s (lower it or raise api_keys.max_ttl)",
			`api_keys.leak_report.rate_limit: invalid rate limit "abc": missing '/'; want <count>/<period>, such as 100/min (like "300/min")`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			tt.change(&c.APIKeys)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidatePasskeys(t *testing.T) {
	const rpIDHint = ` (a domain such as "example.com", without scheme or port)`
	const originHint = ` (like "https://example.com" or "https://localhost:8443")`
	const originFix = ` (write "https://example.com": an origin has no path, query or default port)`
	const aaguidHint = ` (AAGUIDs are UUIDs, like "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4")`
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"defaults", func(c *Config) {}, nil},
		{"rp_id a domain", func(c *Config) { c.Passkeys.RPID = "example.com" }, nil},
		{"rp_id localhost", func(c *Config) { c.Passkeys.RPID = "localhost" }, nil},
		{"rp_id with tls files", func(c *Config) {
			c.TLS.Mode, c.TLS.CertFile, c.TLS.KeyFile = TLSFiles, "c.pem", "k.pem"
			c.Passkeys.RPID = "login.example.com"
		}, nil},
		{"rp_id derived with acme", func(c *Config) { c.TLS.Mode = TLSACME; c.TLS.ACME.Hosts = []string{"example.com"} }, nil},
		{"rp_id with a scheme", func(c *Config) { c.Passkeys.RPID = "https://x" },
			[]string{`passkeys.rp_id: invalid relying party ID "https://x"` + rpIDHint}},
		{"rp_id with a port", func(c *Config) { c.Passkeys.RPID = "example.com:443" },
			[]string{`passkeys.rp_id: invalid relying party ID "example.com:443"` + rpIDHint}},
		{"rp_id an IPv4 address", func(c *Config) { c.Passkeys.RPID = "1.2.3.4" },
			[]string{`passkeys.rp_id: invalid relying party ID "1.2.3.4"` + rpIDHint}},
		{"rp_id an IPv6 address", func(c *Config) { c.Passkeys.RPID = "::1" },
			[]string{`passkeys.rp_id: invalid relying party ID "::1"` + rpIDHint}},
		{"rp_id with a path", func(c *Config) { c.Passkeys.RPID = "example.com/login" },
			[]string{`passkeys.rp_id: invalid relying party ID "example.com/login"` + rpIDHint}},
		{"rp_id required with tls files", func(c *Config) { c.TLS.Mode, c.TLS.CertFile, c.TLS.KeyFile = TLSFiles, "c.pem", "k.pem" },
			[]string{"passkeys.rp_id: required with tls.mode files (the domain your certificate is for)"}},
		{"rp_id invalid with tls files", func(c *Config) {
			c.TLS.Mode, c.TLS.CertFile, c.TLS.KeyFile = TLSFiles, "c.pem", "k.pem"
			c.Passkeys.RPID = "10.0.0.1"
		}, []string{`passkeys.rp_id: invalid relying party ID "10.0.0.1"` + rpIDHint}},
		{"origins", func(c *Config) {
			c.Passkeys.Origins = []string{"https://example.com", "https://localhost:8443", "https://[::1]:8443", "https://sub.example.com"}
		}, nil},
		{"origin over http", func(c *Config) { c.Passkeys.Origins = []string{"http://example.com"} },
			[]string{`passkeys.origins[0]: invalid origin "http://example.com"` + originHint}},
		{"origin over http to localhost", func(c *Config) { c.Passkeys.Origins = []string{"https://localhost:8443", "http://localhost:8080"} },
			[]string{`passkeys.origins[1]: invalid origin "http://localhost:8080" (like "https://example.com" or "https://localhost:8443")`}},
		{"origin with a path", func(c *Config) { c.Passkeys.Origins = []string{"https://example.com/app"} },
			[]string{`passkeys.origins[0]: invalid origin "https://example.com/app"` + originFix}},
		{"origin with a query", func(c *Config) { c.Passkeys.Origins = []string{"https://example.com?x=1"} },
			[]string{`passkeys.origins[0]: invalid origin "https://example.com?x=1"` + originFix}},
		{"origin with an empty query", func(c *Config) { c.Passkeys.Origins = []string{"https://example.com?"} },
			[]string{`passkeys.origins[0]: invalid origin "https://example.com?"` + originFix}},
		{"origin with a fragment", func(c *Config) { c.Passkeys.Origins = []string{"https://example.com#top"} },
			[]string{`passkeys.origins[0]: invalid origin "https://example.com#top"` + originFix}},
		// Browsers send the Origin header without a trailing slash, in
		// lowercase and without the default port; the CSRF check compares
		// it byte for byte.
		{"origin with a trailing slash", func(c *Config) { c.Passkeys.Origins = []string{"https://example.com/"} },
			[]string{`passkeys.origins[0]: invalid origin "https://example.com/"` + originFix}},
		{"origin in capitals", func(c *Config) { c.Passkeys.Origins = []string{"HTTPS://EXAMPLE.COM"} },
			[]string{`passkeys.origins[0]: invalid origin "HTTPS://EXAMPLE.COM"` + originFix}},
		{"origin with the default port", func(c *Config) { c.Passkeys.Origins = []string{"https://example.com:443"} },
			[]string{`passkeys.origins[0]: invalid origin "https://example.com:443"` + originFix}},
		{"origin with credentials", func(c *Config) { c.Passkeys.Origins = []string{"https://me@example.com"} },
			[]string{`passkeys.origins[0]: invalid origin "https://me@example.com"` + originFix}},
		{"origin without a scheme", func(c *Config) { c.Passkeys.Origins = []string{"example.com"} },
			[]string{`passkeys.origins[0]: invalid origin "example.com"` + originHint}},
		{"origin without a host", func(c *Config) { c.Passkeys.Origins = []string{"https://", "https:example.com", ""} },
			[]string{
				`passkeys.origins[0]: invalid origin "https://"` + originHint,
				`passkeys.origins[1]: invalid origin "https:example.com"` + originHint,
				`passkeys.origins[2]: invalid origin ""` + originHint,
			}},
		{"origin unparsable", func(c *Config) { c.Passkeys.Origins = []string{"https://example.com:port"} },
			[]string{`passkeys.origins[0]: invalid origin "https://example.com:port"` + originHint}},
		{"sign_up open", func(c *Config) { c.Passkeys.SignUp = "open" }, nil},
		{"sign_up invite", func(c *Config) { c.Passkeys.SignUp = "invite" }, nil},
		{"sign_up closed", func(c *Config) { c.Passkeys.SignUp = "closed" }, nil},
		{"sign_up unknown", func(c *Config) { c.Passkeys.SignUp = "public" },
			[]string{`passkeys.sign_up: unknown sign-up mode "public" (use open, invite or closed)`}},
		{"sign_up with a typo", func(c *Config) { c.Passkeys.SignUp = "invtie" },
			[]string{`passkeys.sign_up: unknown sign-up mode "invtie" (did you mean "invite"?)`}},
		{"sign_up in capitals", func(c *Config) { c.Passkeys.SignUp = "Open" },
			[]string{`passkeys.sign_up: unknown sign-up mode "Open" (did you mean "open"?)`}},
		{"sign_up required", func(c *Config) { c.Passkeys.SignUp = "" },
			[]string{`passkeys.sign_up: required (use open, invite or closed)`}},
		{"counter_policy log", func(c *Config) { c.Passkeys.CounterPolicy = "log" }, nil},
		{"counter_policy unknown", func(c *Config) { c.Passkeys.CounterPolicy = "ignore" },
			[]string{`passkeys.counter_policy: unknown counter policy "ignore" (use deny or log)`}},
		{"counter_policy with a typo", func(c *Config) { c.Passkeys.CounterPolicy = "deney" },
			[]string{`passkeys.counter_policy: unknown counter policy "deney" (did you mean "deny"?)`}},
		{"counter_policy required", func(c *Config) { c.Passkeys.CounterPolicy = "" },
			[]string{`passkeys.counter_policy: required (use deny or log)`}},
		{"AAGUIDs", func(c *Config) {
			c.Passkeys.AAGUIDAllow = []string{"ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4", "ADCE0002-35BC-C60A-648B-0B25F1F05503"}
			c.Passkeys.AAGUIDDeny = []string{"00000000-0000-0000-0000-000000000000"}
		}, nil},
		{"bad AAGUIDs", func(c *Config) {
			c.Passkeys.AAGUIDAllow = []string{"ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4", "yubikey"}
			c.Passkeys.AAGUIDDeny = []string{"", "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d", "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"}
		}, []string{
			`passkeys.aaguid_allow[1]: invalid AAGUID "yubikey"` + aaguidHint,
			`passkeys.aaguid_deny[0]: invalid AAGUID ""` + aaguidHint,
			`passkeys.aaguid_deny[1]: invalid AAGUID "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d"` + aaguidHint,
		}},
		{"session timeouts", func(c *Config) {
			c.Sessions = Sessions{IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour, StepUpMaxAge: time.Minute}
		}, nil},
		{"session timeouts zero", func(c *Config) { c.Sessions = Sessions{} }, []string{
			"sessions.idle_timeout: must be positive, got 0s",
			"sessions.absolute_timeout: must be positive, got 0s",
			"sessions.step_up_max_age: must be positive, got 0s",
		}},
		{"session timeouts negative", func(c *Config) {
			c.Sessions = Sessions{IdleTimeout: -time.Minute, AbsoluteTimeout: -time.Second, StepUpMaxAge: -time.Hour}
		}, []string{
			"sessions.idle_timeout: must be positive, got -1m0s",
			"sessions.absolute_timeout: must be positive, got -1s",
			"sessions.step_up_max_age: must be positive, got -1h0m0s",
		}},
		{"idle above absolute", func(c *Config) { c.Sessions.IdleTimeout, c.Sessions.AbsoluteTimeout = 2*time.Hour, time.Hour },
			[]string{"sessions.idle_timeout: idle_timeout 2h0m0s exceeds absolute_timeout 1h0m0s"}},
		{"zero absolute", func(c *Config) { c.Sessions.AbsoluteTimeout = 0 }, []string{
			"sessions.absolute_timeout: must be positive, got 0s",
			"sessions.idle_timeout: idle_timeout 30m0s exceeds absolute_timeout 0s",
		}},
		{"everything wrong", func(c *Config) {
			c.Passkeys = Passkeys{RPID: "https://example.com", Origins: []string{"http://example.com"}, SignUp: "opened",
				CounterPolicy: "warn", AAGUIDDeny: []string{"x"}}
			c.Sessions = Sessions{IdleTimeout: 2 * time.Hour, AbsoluteTimeout: time.Hour, StepUpMaxAge: 0}
		}, []string{
			`passkeys.rp_id: invalid relying party ID "https://example.com"` + rpIDHint,
			`passkeys.origins[0]: invalid origin "http://example.com"` + originHint,
			`passkeys.sign_up: unknown sign-up mode "opened" (did you mean "open"?)`,
			`passkeys.counter_policy: unknown counter policy "warn" (use deny or log)`,
			`passkeys.aaguid_deny[0]: invalid AAGUID "x"` + aaguidHint,
			"passkeys.challenge_ttl: must be above 0 and at most 10m, got 0s (WebAuthn L3 recommends 5m)",
			"sessions.step_up_max_age: must be positive, got 0s",
			"sessions.idle_timeout: idle_timeout 2h0m0s exceeds absolute_timeout 1h0m0s",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			tt.change(c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidateLines checks that Validate, called on a loaded config, places
// its errors at the lines of the file, including settings the file did not
// write, which get the line of the route they belong to.
func TestValidateLines(t *testing.T) {
	c := mustLoad(t, "upstreams:\n  api:\n    url: http://localhost:3000\nroutes:\n  - path: /v1\n    upstream: api\n    policy: public\n", nil)
	c.Routes[0].Upstream = "nope"
	c.Routes[0].MaxBody = 0
	want := "keyway.yaml:5: routes[0].max_body: must be positive, got 0\n" +
		`keyway.yaml:6: routes[0].upstream: unknown upstream "nope" (define it under upstreams)`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want\n%s", err, want)
	}
}

func TestValidateTracing(t *testing.T) {
	const hint = ` (like "https://otel-collector.internal:4318" or "http://127.0.0.1:4318")`
	tests := []struct {
		name   string
		change func(c *Tracing) // on Tracing{Exporter: "otlp"}
		want   []string
	}{
		{"defaults", func(c *Tracing) {}, nil},
		{"https collector", func(c *Tracing) { c.Endpoint, c.CAFile = "https://otel.internal:4318/v1/traces", "/ca.pem" }, nil},
		{"upper-case scheme", func(c *Tracing) { c.Endpoint, c.CAFile = "HTTPS://otel.internal:4318", "/ca.pem" }, nil},
		{"local plain collector", func(c *Tracing) { c.Endpoint = "http://127.0.0.1:4318/v1/traces" }, nil},
		{"loopback over gRPC", func(c *Tracing) { c.Protocol, c.Endpoint = "grpc", "http://127.0.0.1:4317" }, nil},
		{"IPv6 loopback", func(c *Tracing) { c.Endpoint = "http://[::1]:4318" }, nil},
		{"ratio bounds", func(c *Tracing) { c.SampleRatio = ptr(0.0) }, nil},
		{"off: the rest is not used", func(c *Tracing) {
			*c = Tracing{Exporter: "none", Protocol: "http/json", Endpoint: "http://otel-collector:4317", CAFile: "/ca.pem", SampleRatio: ptr(7.0)}
		}, nil},
		{"plain http to another machine", func(c *Tracing) { c.Endpoint = "http://otel.internal:4318" },
			[]string{`tracing.endpoint: plain http only to a collector on this machine, by a loopback address (127.0.0.1 or [::1]); use https` + hint}},
		{"localhost by name", func(c *Tracing) { c.Endpoint = "http://localhost:4318" },
			[]string{`tracing.endpoint: plain http only to a collector on this machine, by a loopback address (127.0.0.1 or [::1]); use https` + hint}},
		{"a name that starts like localhost", func(c *Tracing) { c.Endpoint = "http://localhost.evil.example:4318" },
			[]string{`tracing.endpoint: plain http only to a collector on this machine, by a loopback address (127.0.0.1 or [::1]); use https` + hint}},
		{"credentials in the URL", func(c *Tracing) { c.Endpoint = "https://user:pw@otel.internal" },
			[]string{`tracing.endpoint: want http(s)://host:port[/path], without credentials, query or fragment` + hint}},
		{"other scheme", func(c *Tracing) { c.Endpoint = "grpc://otel.internal:4317" },
			[]string{`tracing.endpoint: the scheme must be https, or http to a collector on this machine` + hint}},
		{"gRPC with a path", func(c *Tracing) { c.Protocol, c.Endpoint = "grpc", "https://otel.internal:4317/v1/traces" },
			[]string{`tracing.endpoint: a gRPC endpoint has no path` + hint}},
		{"CA for plain http", func(c *Tracing) { c.Endpoint, c.CAFile = "http://127.0.0.1:4318", "/ca.pem" },
			[]string{"tracing.ca_file: only used with an https endpoint (set an https:// endpoint, or remove ca_file)"}},
		{"CA for the default endpoint", func(c *Tracing) { c.CAFile = "/ca.pem" },
			[]string{"tracing.ca_file: only used with an https endpoint (set an https:// endpoint, or remove ca_file)"}},
		{"ratio above one", func(c *Tracing) { c.SampleRatio = ptr(1.5) },
			[]string{"tracing.sample_ratio: must be between 0 and 1 (like 0.05 for one trace in twenty)"}},
		{"unknown protocol", func(c *Tracing) { c.Protocol = "http/json" },
			[]string{`tracing.protocol: unknown OTLP protocol "http/json" (use http/protobuf or grpc)`}},
		{"unknown exporter", func(c *Tracing) { c.Exporter = "jaeger" },
			[]string{`tracing.exporter: unknown trace exporter "jaeger" (use none or otlp)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			c.Tracing = Tracing{Exporter: "otlp"}
			tt.change(&c.Tracing)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTracingFromTheStandardVariables: OTEL_* turn tracing on and point
// it, the traces variable winning over the generic one, and an error
// names the variable.
func TestTracingFromTheStandardVariables(t *testing.T) {
	env := map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.internal:4318/",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.25",
	}
	c := Demo()
	c.ApplyEnv(func(k string) string { return env[k] })
	if c.Tracing.Exporter != "otlp" || c.Tracing.Endpoint != "https://otel.internal:4318/v1/traces" || c.Tracing.SampleRatio == nil || *c.Tracing.SampleRatio != 0.25 {
		t.Fatalf("tracing from the environment: %+v", c.Tracing)
	}
	env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "https://traces.internal/custom"
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
	c = Demo()
	c.ApplyEnv(func(k string) string { return env[k] })
	if c.Tracing.Endpoint != "https://traces.internal/custom" || c.Tracing.Protocol != "grpc" {
		t.Fatalf("the traces variable wins: %+v", c.Tracing)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || !strings.Contains(err.Error(), "no path") {
		t.Fatalf("a gRPC endpoint with a path, from the environment: %v", err)
	}
	// The standard samplers map onto the ratio; another sampler's
	// argument is not one.
	for sampler, want := range map[string]float64{"always_on": 1, "parentbased_always_off": 0, "always_off": 0} {
		c = Demo()
		c.ApplyEnv(func(k string) string {
			return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": "x"}[k]
		})
		if c.Tracing.SampleRatio == nil || *c.Tracing.SampleRatio != want || c.Validate() != nil {
			t.Fatalf("OTEL_TRACES_SAMPLER=%s: %+v", sampler, c.Tracing)
		}
	}
	c = Demo()
	c.ApplyEnv(func(k string) string {
		return map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_TRACES_SAMPLER_ARG": "endpoint=x"}[k]
	})
	if c.Tracing.SampleRatio != nil {
		t.Fatalf("another sampler's argument became a ratio: %+v", c.Tracing)
	}
	// OTEL_SDK_DISABLED wins; a protocol in the file shapes the generic
	// endpoint; variables for other programs do not stop keyway while its
	// tracing is off.
	c = Demo()
	c.ApplyEnv(func(k string) string {
		return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}[k]
	})
	if c.Tracing.Exporter != "none" || c.Validate() != nil {
		t.Fatalf("OTEL_SDK_DISABLED=true: %+v %v", c.Tracing, c.Validate())
	}
	// A variable that sets nothing is not blamed for the file's mistake.
	c = Demo()
	c.Tracing.Exporter = "jaeger"
	c.ApplyEnv(func(k string) string { return map[string]string{"OTEL_SDK_DISABLED": "false"}[k] })
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "OTEL_SDK_DISABLED") {
		t.Fatalf("the file's exporter, with OTEL_SDK_DISABLED=false: %v", err)
	}
	c = Demo()
	c.Tracing.Protocol = "grpc"
	c.ApplyEnv(func(k string) string {
		return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.internal:4317"}[k]
	})
	if c.Tracing.Endpoint != "https://otel.internal:4317" || c.Validate() != nil {
		t.Fatalf("grpc in the file, endpoint from the variable: %+v %v", c.Tracing, c.Validate())
	}
	c = Demo()
	c.ApplyEnv(func(k string) string {
		return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}[k]
	})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER_ARG") {
		t.Fatalf("a ratio that does not parse: %v", err)
	}
}
