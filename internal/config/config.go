// Package config holds keyway's typed configuration: the YAML file format, its
// defaults, strict loading with file:line errors, validation that reports every
// problem at once, and the security lint behind `keyway check`.
//
// Only config and app read files, environment variables or flags; every other
// package receives the values it needs through its own Config struct.
package config

import (
	"net/netip"
	"strings"
	"time"
)

// Policy names who may call a route.
type Policy string

// The route policies: public (anyone, ideally rate limited), api_key (a
// program's API key with the route's scopes) and session (a person signed in
// with a passkey, through the browser's session cookie).
const (
	PolicyPublic  Policy = "public"
	PolicyAPIKey  Policy = "api_key"
	PolicySession Policy = "session"
)

// TLS modes.
const (
	TLSLocal = "local" // a local CA in the data dir issues short-lived leaf certificates (default)
	TLSFiles = "files" // certificate and key files, reloaded when they change
	TLSACME  = "acme"  // certificates from an ACME CA (Let's Encrypt) for an allowlist of hosts
)

// ListenOff is the HTTPListen value that disables the plain-HTTP redirect
// listener.
const ListenOff = "off"

// Config is the whole of keyway's configuration. The zero value is not
// usable: start from Default (or Demo) and let Load overlay a file.
type Config struct {
	// DataDir holds the SQLite database, the local CA and other state.
	// Default "./keyway-data".
	DataDir string `yaml:"data_dir"`
	// Listen is the HTTPS address. Default "127.0.0.1:8443".
	Listen string `yaml:"listen"`
	// HTTPListen is the plain-HTTP address that only redirects to HTTPS (308),
	// or "off". Default "127.0.0.1:8080".
	HTTPListen string `yaml:"http_listen"`
	// AdminListen serves /metrics and the admin API; never the public port.
	// Default "127.0.0.1:9090".
	AdminListen string `yaml:"admin_listen"`
	// Demo runs the built-in weather upstream inside the process and routes to it.
	Demo bool `yaml:"demo"`

	Log    Log    `yaml:"log"`
	TLS    TLS    `yaml:"tls"`
	Store  Store  `yaml:"store"`
	Redis  Redis  `yaml:"redis"`
	Server Server `yaml:"server"`
	// TrustedProxies are the CIDRs whose X-Forwarded-* and X-Request-Id headers
	// are believed. Default: none (every client header of that kind is replaced).
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
	// APIKeys configures API keys for programs.
	APIKeys APIKeys `yaml:"api_keys"`
	// Passkeys configures sign-up and sign-in for people.
	Passkeys Passkeys `yaml:"passkeys"`
	// Sessions configures the sessions of signed-in people.
	Sessions Sessions `yaml:"sessions"`
	// Upstreams by name.
	Upstreams map[string]Upstream `yaml:"upstreams"`
	// Routes are matched by longest path prefix, then by method.
	Routes []Route `yaml:"routes"`
	// ForwardAuth serves /.keyway/verify, so that nginx, Traefik, Caddy or
	// Envoy in front of the upstreams can ask keyway who may pass.
	ForwardAuth ForwardAuth `yaml:"forward_auth"`
	// Clients are client profiles by name: which routes each kind of
	// client may call, its CORS origins, and the fields of each answer it
	// receives (the Backend-for-Frontend).
	Clients map[string]Client `yaml:"clients"`
	// Audit configures the signed checkpoints of the audit trail.
	Audit Audit `yaml:"audit"`
	// DataProtection configures the sealing of personal data.
	DataProtection DataProtection `yaml:"data_protection"`
	// Tracing sends a span of each request to an OpenTelemetry collector.
	Tracing Tracing `yaml:"tracing"`

	// src records where Load found each setting, so that Validate and Lint
	// can point at the line to fix.
	src source
}

// Log configures log/slog output.
type Log struct {
	// Format is "json" or "text". Default: text when keyway serve's
	// standard error is a terminal, JSON otherwise.
	Format string `yaml:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `yaml:"level"`
	// Access writes one line per request. Default true.
	Access *bool `yaml:"access"`
	// ClientAddress is how a line names the client: "pseudonym" (the
	// default: a keyed hash, one per address, so the log holds no address)
	// or "full" (the address itself).
	ClientAddress string `yaml:"client_address"`
}

// TLS configures certificates and the protocol policy.
type TLS struct {
	// Mode is "local" (default), "files" or "acme".
	Mode string `yaml:"mode"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// CertFile and KeyFile are PEM files, required for mode "files".
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ACME settings, for mode "acme".
	ACME ACME `yaml:"acme"`
	// HSTSMaxAge is the Strict-Transport-Security max-age. Default 365 days,
	// and never less than that.
	HSTSMaxAge time.Duration `yaml:"hsts_max_age"`
}

// ACME configures automatic certificates.
type ACME struct {
	// Hosts is the allowlist of names a certificate may be requested for. Required.
	Hosts []string `yaml:"hosts"`
	// Email is the contact address given to the CA. Optional.
	Email string `yaml:"email"`
	// DirectoryURL is the ACME directory. Default: Let's Encrypt production.
	DirectoryURL string `yaml:"directory_url"`
	// CacheDir keeps account and certificate keys (mode 0700).
	// Default "<data_dir>/acme".
	CacheDir string `yaml:"cache_dir"`
}

// Store selects the persistence backend.
type Store struct {
	// Driver is "sqlite" (default: one process, embedded) or "postgres"
	// (shared by many nodes).
	Driver string `yaml:"driver"`
	// Path of the SQLite file. Default "<data_dir>/keyway.db".
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection URL
	// (postgres://user@host:5432/db?sslmode=verify-full). Better given by
	// KEYWAY_STORE_DSN than written in a file, when it holds a password.
	DSN string `yaml:"dsn"`
}

// Redis shares the rate limits of many nodes (store.driver postgres).
type Redis struct {
	// Addr is host:port; empty: limits are per node.
	Addr string `yaml:"addr"`
	// Username is the ACL user (empty: the default user).
	Username string `yaml:"username"`
	// PasswordFile holds the password (mode 0600); KEYWAY_REDIS_PASSWORD
	// takes precedence. Never write the password in this file.
	PasswordFile string `yaml:"password_file"`
	// TLS connects over TLS, verifying the server against CAFile (or the
	// system roots when it is empty).
	TLS    bool   `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
	// OnFailure is what shared limits do while Redis is out of reach:
	// "local" (the default: each node enforces its share, the limit divided
	// by the live nodes; never unlimited) or "closed" (refuse with 503).
	// Limits that guard sign-in against abuse always fail closed.
	OnFailure string `yaml:"on_failure"`
	// Prefix starts every key keyway writes. Default "keyway:".
	Prefix string `yaml:"prefix"`
}

// SetStore selects the store from one string, as --store and
// KEYWAY_STORE_DSN give it: a postgres:// (or postgresql://) URL, or
// sqlite:PATH. Anything else is kept for Validate to refuse.
func (c *Config) SetStore(spec string) {
	switch {
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		c.Store.Driver, c.Store.DSN = "postgres", spec
	case strings.HasPrefix(spec, "sqlite:"):
		c.Store.Driver, c.Store.Path, c.Store.DSN = "sqlite", strings.TrimPrefix(spec, "sqlite:"), ""
	default:
		c.Store.Driver, c.Store.DSN = badStoreSpec, ""
	}
}

// badStoreSpec marks a store string SetStore could not read.
const badStoreSpec = "(unreadable)"

// Server holds limits that protect the listeners.
type Server struct {
	// ReadHeaderTimeout bounds the time to read request headers (slowloris).
	// Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request. Default 60s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response. Default 120s; it must exceed
	// every route timeout.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps request headers; above it the answer is 431.
	// Default 32 KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds draining in-flight requests on SIGTERM. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// CaseInsensitivePaths makes route matching ignore ASCII case: the
	// ASCII letters of request paths and route prefixes are lower-cased,
	// other characters are left as they are. Default false (paths are
	// case-sensitive, as in RFC 3986).
	CaseInsensitivePaths bool `yaml:"case_insensitive_paths"`
	// Hosts are the names (host names or IP addresses, no port) that
	// clients reach keyway at. A request for any other Host is answered 421
	// and never reaches an upstream, so an upstream that builds links from
	// X-Forwarded-Host only ever sees one of these. Default: see
	// Config.HostNames.
	Hosts []string `yaml:"hosts"`
	// IPv6Prefix is how many leading bits of an IPv6 address count as one
	// client for every per-client limit. Default 64; IPv4 addresses count
	// one by one.
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// Upstream is a backend that routes forward to.
type Upstream struct {
	// URL is the base URL (http or https). Required.
	URL string `yaml:"url"`
	// MaxIdleConns is the idle keep-alive pool to this upstream. Default 256.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// CAFile is an extra CA bundle for an https upstream. Optional.
	CAFile string `yaml:"ca_file"`
	// Assertion signs an X-Keyway-Assertion for every request to this
	// upstream: a JWT (EdDSA, at most 30s) of who called, bound to the
	// upstream, the method and the path, that the upstream checks against
	// keyway's key set (/.keyway/jwks.json). Default false.
	Assertion bool `yaml:"assertion"`
	// Audience is the assertion's aud. Default: the URL's origin
	// (scheme://host[:port]).
	Audience string `yaml:"audience"`
	// MTLS presents a client certificate to an https upstream: the
	// ClientCertFile and ClientKeyFile pair, or else keyway's own, from the
	// upstream client CA it keeps in data_dir (upstream-client-ca.pem is
	// what the upstream then trusts). Default false.
	MTLS bool `yaml:"mtls"`
	// ClientCertFile and ClientKeyFile are a PEM certificate and key for
	// mutual TLS, from your own PKI. Optional, with mtls.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// StandardProxy sends every request to this upstream through Go's
	// httputil.ReverseProxy and http.Transport (HTTP/2 to an https
	// upstream that offers it) instead of keyway's direct HTTP/1.1 path
	// for requests without a body or with one of a known length up to
	// 32 KiB. Default false.
	StandardProxy bool `yaml:"standard_proxy"`
}

// Route maps a path prefix and methods to an upstream under a policy.
type Route struct {
	// Name identifies the route in logs and metrics. Default: the path.
	Name string `yaml:"name"`
	// Path is a path prefix that matches on segment boundaries: "/v1" matches
	// "/v1" and "/v1/x", never "/v1x". Required, must start with "/".
	Path string `yaml:"path"`
	// Methods allowed; empty means GET and HEAD.
	Methods []string `yaml:"methods"`
	// Upstream names an entry of Upstreams. Required.
	Upstream string `yaml:"upstream"`
	// Policy is "public", "api_key" or "session". Required: there is no default,
	// so that nothing is public by accident.
	Policy Policy `yaml:"policy"`
	// Scopes an API key must hold (policy api_key).
	Scopes []string `yaml:"scopes"`
	// Roles a signed-in person must hold one of (policy session); empty:
	// any signed-in person passes.
	Roles []string `yaml:"roles"`
	// StripPrefix removes Path from the proxied path.
	StripPrefix bool `yaml:"strip_prefix"`
	// MaxBody caps the request body; above it the answer is 413. Default 1 MiB.
	MaxBody ByteSize `yaml:"max_body"`
	// Timeout bounds the whole upstream exchange; past it the answer is 504.
	// Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// RateLimit limits the route per client IP or per API key. Optional.
	RateLimit *RateLimit `yaml:"rate_limit"`
	// WebSocket lets clients upgrade a GET on this route to a WebSocket.
	// Every other route refuses protocol upgrades. Default false.
	WebSocket bool `yaml:"websocket"`
	// WebSocketMaxLifetime closes a WebSocket this long after it opened.
	// Default 1h, at most 24h. A tunnel also closes within a second of its
	// key or session being revoked.
	WebSocketMaxLifetime time.Duration `yaml:"websocket_max_lifetime"`
	// PassHeaders are request headers keyway removes by default that this
	// route forwards: names with an underscore, and method or path
	// overrides such as X-HTTP-Method-Override. Identity and forwarding
	// headers (X-Keyway-*, X-Forwarded-*, Forwarded, X-Real-Ip,
	// X-Request-Id, the API key header) can never be passed.
	PassHeaders []string `yaml:"pass_headers"`
	// AllowUpstreamCookies lets the upstream's Set-Cookie reach the client.
	// Default false: a cookie an upstream sets would be a second session
	// that keyway cannot revoke. keyway's own cookie names never pass.
	AllowUpstreamCookies bool `yaml:"allow_upstream_cookies"`
}

// ForwardAuth configures /.keyway/verify.
type ForwardAuth struct {
	// Enabled serves /.keyway/verify. Default false. Routes may then have
	// no upstream: they are decided for the proxy in front, never proxied.
	Enabled bool `yaml:"enabled"`
	// TrustedProxies may ask, and their X-Original-*, X-Forwarded-* headers
	// are believed. Default: loopback (127.0.0.0/8, ::1).
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
	// Audience, when set, adds a signed X-Keyway-Assertion for that
	// audience to every answer that lets a request pass.
	Audience string `yaml:"audience"`
}

// Client is a client profile: one kind of client of the API (the browser
// app, a mobile app, a partner's program) and what it may do.
type Client struct {
	// Credential is what identifies the client: "session" (browsers: the
	// session cookie; at most one profile) or "api_key" (keys created for
	// this client, with --client NAME). Required.
	Credential Policy `yaml:"credential"`
	// Routes are the routes (by name) the client may call, each with the
	// methods it may use; an empty list means every method of the route.
	// Required: a client calls nothing it is not given.
	Routes map[string][]string `yaml:"routes"`
	// CORS lets a browser app on another origin of the same site call the
	// routes with the session cookie (session clients only).
	CORS CORS `yaml:"cors"`
	// Fields trims the JSON answers of routes (by name) to what the client
	// needs: an allowlist or a denylist of field paths.
	Fields map[string]Fields `yaml:"fields"`
	// NonJSON is what a route with a fields rule does with an answer that
	// is not JSON: "refuse" (502, the default: never pass unshaped) or
	// "pass".
	NonJSON string `yaml:"non_json"`
	// MaxShapedBody bounds an answer that is shaped; a larger one is
	// refused (502), never passed unshaped. Default 1MiB, at most 16MiB.
	MaxShapedBody ByteSize `yaml:"max_shaped_body"`
}

// CORS is a client's cross-origin policy.
type CORS struct {
	// Origins are the exact origins (https://app.example.com) allowed to
	// call with credentials. No wildcards.
	Origins []string `yaml:"origins"`
	// AllowHeaders are request headers a preflight may ask for besides
	// Content-Type and X-Keyway-CSRF.
	AllowHeaders []string `yaml:"allow_headers"`
	// MaxAge is how long browsers may cache a preflight. Default 10m, at
	// most 24h.
	MaxAge time.Duration `yaml:"max_age"`
}

// Fields is a route's field rule for one client: exactly one of Allow and
// Deny. A path names a field through objects with dots ("billing.card");
// arrays are crossed ("cities[].name" or "cities.name").
type Fields struct {
	// Allow keeps only these fields.
	Allow []string `yaml:"allow"`
	// Deny removes these fields.
	Deny []string `yaml:"deny"`
}

// RateLimit is a route's rate limit.
type RateLimit struct {
	// Rate is "<count>/<period>": "100/min", "5/s", "1000/hour", "50/10s". Required.
	Rate string `yaml:"rate"`
	// Burst is how many requests may come at once. Default: the count.
	Burst int64 `yaml:"burst"`
	// Per is "ip" (each client address) or "key" (each API key; policy
	// api_key only). Default "ip" on public routes, "key" on api_key routes.
	Per string `yaml:"per"`
}

// APIKeys configures API keys.
type APIKeys struct {
	// Header carries the key. Default "Authorization", as "Bearer <key>";
	// another header name carries the bare key. Never a query parameter.
	Header string `yaml:"header"`
	// PepperFile holds the server-side secret that keys the stored hashes
	// (32+ random bytes, base64), created with mode 0600 on first start.
	// Default "<data_dir>/pepper.key". The environment variable
	// KEYWAY_PEPPER (base64) takes precedence: keep the pepper out of the
	// data directory in production, so a stolen disk image is not enough.
	PepperFile string `yaml:"pepper_file"`
	// PepperCommand, when set, is run at start (without a shell) and its
	// standard output is the pepper in base64: a secret manager's CLI, say.
	// It takes precedence over PepperFile; KEYWAY_PEPPER over both.
	PepperCommand []string `yaml:"pepper_command"`
	// SelfServiceScopes are the scopes people may put on the keys they make
	// for themselves in the portal. Default: none (their keys then carry no
	// scope). keyway:admin is never allowed here.
	SelfServiceScopes []string `yaml:"self_service_scopes"`
	// DefaultTTL is the lifetime of a key created without one. Default 2160h (90 days).
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// MaxTTL is the longest lifetime a key may have. Default 8760h (365 days).
	MaxTTL time.Duration `yaml:"max_ttl"`
	// LeakReport configures POST /.keyway/keys/report-leak.
	LeakReport LeakReport `yaml:"leak_report"`
}

// Passkeys configures WebAuthn.
type Passkeys struct {
	// RPID is the relying party ID: the registrable domain passkeys are
	// bound to. Default "localhost" in local TLS mode, else the first ACME
	// host; required with TLS files.
	RPID string `yaml:"rp_id"`
	// RPName is shown by authenticators. Default "keyway".
	RPName string `yaml:"rp_name"`
	// Origins are the exact origins (scheme://host[:port]) allowed to run
	// ceremonies. Default: https://<rp_id> with the HTTPS listener's port.
	Origins []string `yaml:"origins"`
	// SignUp is "open", "invite" (one-time invite links; the default) or
	// "closed". The demo runs open.
	SignUp string `yaml:"sign_up"`
	// CounterPolicy is what a signature counter that goes backwards does:
	// "deny" (default; only when the stored counter is above 0) or "log".
	CounterPolicy string `yaml:"counter_policy"`
	// AAGUIDAllow, when set, is the only authenticator models that may register.
	AAGUIDAllow []string `yaml:"aaguid_allow"`
	// AAGUIDDeny may not register.
	AAGUIDDeny []string `yaml:"aaguid_deny"`
	// ChallengeTTL bounds a ceremony, from begin to finish. Default 5m, at most 10m.
	ChallengeTTL time.Duration `yaml:"challenge_ttl"`
}

// Sessions configures server-side sessions.
type Sessions struct {
	// IdleTimeout ends a session unused this long. Default 30m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AbsoluteTimeout ends every session this long after sign-in. Default 12h.
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`
	// StepUpMaxAge is how recent a user-verified assertion must be for
	// sensitive actions. Default 5m.
	StepUpMaxAge time.Duration `yaml:"step_up_max_age"`
}

// DataProtection configures how personal data is sealed (envelope
// encryption, package crypt): each person's fields under a data key of
// their own, each data key wrapped under the key-encryption key (KEK).
type DataProtection struct {
	// KEKFile holds the KEK ring: one or more keys (32+ random bytes,
	// base64), one per line, the current one first; created with mode
	// 0600 on first start. Default "<data_dir>/kek.key". KEYWAY_KEK (keys
	// separated by white space) takes precedence: in production keep the
	// KEK off the database's disk.
	KEKFile string `yaml:"kek_file"`
	// KEKCommand, when set, is run at start (without a shell) and its
	// standard output is the ring, for a KMS or secret manager. It takes
	// precedence over KEKFile; KEYWAY_KEK over both.
	KEKCommand []string `yaml:"kek_command"`
	// KeyStore is where the wrapped data keys live, apart from the data
	// they open, so that erasing a person reaches the database's backups:
	// "sqlite:PATH", or a postgres:// DSN. Default: "<data_dir>/keys.db"
	// with the SQLite store; with PostgreSQL, the store's own database
	// (keyway check --production warns: its backups hold the keys too).
	KeyStore string `yaml:"key_store"`
}

// Tracing configures OpenTelemetry traces: one span per request (route,
// policy, decision, status; never a credential or a personal field) with
// child spans for the key or session check, the store and Redis, and the
// upstream call. Off by default. The standard variables set it too:
// OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT and
// _PROTOCOL, OTEL_TRACES_SAMPLER_ARG (with a traceidratio sampler); the
// exporter reads OTEL_EXPORTER_OTLP_HEADERS itself, and the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
type Tracing struct {
	// Exporter is "none" (the default) or "otlp".
	Exporter string `yaml:"exporter"`
	// Protocol is "http/protobuf" (the default) or "grpc".
	Protocol string `yaml:"protocol"`
	// Endpoint is the collector's URL: https://host:port, or http:// to a
	// collector on this machine only (a loopback address or localhost).
	// Default http://localhost:4318 (grpc: http://localhost:4317). With
	// http/protobuf a URL without a path gets /v1/traces.
	Endpoint string `yaml:"endpoint"`
	// CAFile verifies an https collector. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// SampleRatio is the share of new traces recorded, 0 to 1. A trace
	// a trusted proxy started keeps that proxy's decision. Default 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// Audit configures the signed checkpoints of the audit trail. The trail's
// hash chain catches an edited, deleted, inserted or reordered event; a
// checkpoint, the chain's head signed with Ed25519, also catches a tail cut
// off and a chain rewritten with fresh hashes (keyway audit verify).
type Audit struct {
	// CheckpointEvery is how often each node signs the head of the trail
	// when it has moved; every node also signs when it starts and when it
	// stops. Default 1m; "0s" turns checkpoints off, which keyway check
	// --production warns about.
	CheckpointEvery time.Duration `yaml:"checkpoint_every"`
	// SigningKeyFile holds the secret the signing key is derived from (32+
	// random bytes, base64), created with mode 0600 on first start.
	// Default "<data_dir>/audit.key". KEYWAY_AUDIT_KEY (base64) takes
	// precedence: keep the key away from the database, so that who can
	// write the one cannot re-sign the other.
	SigningKeyFile string `yaml:"signing_key_file"`
	// SigningKeyCommand, when set, is run at start (without a shell) and
	// its standard output is the secret in base64. It takes precedence
	// over SigningKeyFile; KEYWAY_AUDIT_KEY over both.
	SigningKeyCommand []string `yaml:"signing_key_command"`
}

// LeakReport configures the leak-report endpoint.
type LeakReport struct {
	// Enabled turns the endpoint on. Default true.
	Enabled *bool `yaml:"enabled"`
	// RateLimit per client (IPv4 address or IPv6 network), counted in
	// tokens: each token of a report costs one. A report holds at most
	// 100 tokens, or the burst if lower. Default "300/min".
	RateLimit string `yaml:"rate_limit"`
	// VerifyKeysFile is a JSON file in GitHub's secret-scanning public key
	// format ({"public_keys":[{"key_identifier","key"}]}). When set, a
	// request that carries a signature header must carry a valid one.
	VerifyKeysFile string `yaml:"verify_keys_file"`
}

// ByteSize is a size in bytes that YAML may write as 1048576, "512KiB",
// "1MiB" or "1MB" (decimal).
type ByteSize int64
