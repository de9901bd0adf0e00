package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/keywayhq/keyway/internal/headername"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/shape"
)

// knownMethods are the methods a route may allow. TRACE and CONNECT are left
// out on purpose: a gateway has no business proxying them.
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Validate checks the semantics of c and returns every problem found as
// Errors, or nil. Problems with settings from a loaded file carry its
// file:line; those set by environment variables name the variable.
// Validate does not touch the file system: files named by the config are
// checked by the packages that open them.
func (c *Config) Validate() error {
	v := &validator{c: c}
	if c.DataDir == "" {
		v.errorf("data_dir", "", "required")
	}
	v.listeners()
	v.oneOf("log.format", "log format", c.Log.Format, "json", "text")
	v.oneOf("log.level", "log level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.client_address", "client address form", c.Log.ClientAddress, "pseudonym", "full")
	v.tls()
	v.store()
	v.redis()
	v.server()
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			v.errorf("trusted_proxies["+strconv.Itoa(i)+"]", "", "invalid CIDR")
		}
	}
	v.upstreams()
	v.routes()
	v.clients()
	for i, p := range c.ForwardAuth.TrustedProxies {
		if !p.IsValid() {
			v.errorf("forward_auth.trusted_proxies["+strconv.Itoa(i)+"]", "", "invalid CIDR")
		}
	}
	if c.ForwardAuth.Audience != "" && !c.ForwardAuth.Enabled {
		v.errorf("forward_auth.audience", "set forward_auth.enabled: true to use it, or remove it", "only used with forward_auth")
	}
	v.apiKeys()
	v.passkeys()
	v.audit()
	v.dataProtection()
	v.tracing()
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs.sorted()
}

func (v *validator) audit() {
	a := v.c.Audit
	switch d := a.CheckpointEvery; {
	case d < 0, d > 0 && d < time.Second, d > 24*time.Hour:
		v.errorf("audit.checkpoint_every", `like "1m"; "0s" turns checkpoints off`, "must be 0s or between 1s and 24h, got %s", d)
	}
	if len(a.SigningKeyCommand) > 0 && strings.TrimSpace(a.SigningKeyCommand[0]) == "" {
		v.errorf("audit.signing_key_command", `like ["vault", "kv", "get", "-field=audit_key", "secret/keyway"]`, "the first element must name a program")
	}
}

func (v *validator) dataProtection() {
	dp := v.c.DataProtection
	if len(dp.KEKCommand) > 0 && strings.TrimSpace(dp.KEKCommand[0]) == "" {
		v.errorf("data_protection.kek_command", `like ["vault", "kv", "get", "-field=kek", "secret/keyway"]`, "the first element must name a program")
	}
	switch ks := dp.KeyStore; {
	case ks == "":
	case strings.HasPrefix(ks, "sqlite:") && len(ks) > len("sqlite:"):
	case strings.HasPrefix(ks, "postgres://"), strings.HasPrefix(ks, "postgresql://"):
	default:
		v.errorf("data_protection.key_store", `like "sqlite:/var/lib/keyway-keys/keys.db" or "postgres://keyway@db/keyway_keys"`, "want sqlite:PATH or a postgres:// DSN")
	}
}

func (v *validator) tracing() {
	t := v.c.Tracing
	if t.Exporter != "" {
		v.oneOf("tracing.exporter", "trace exporter", t.Exporter, "none", "otlp")
	}
	if t.Exporter != "otlp" {
		// Off: what the rest says is not used, and an OTEL_* variable set
		// for other programs must not stop keyway from starting.
		return
	}
	if t.Protocol != "" {
		v.oneOf("tracing.protocol", "OTLP protocol", t.Protocol, "http/protobuf", "grpc")
	}
	if r := t.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
		v.errorf("tracing.sample_ratio", "like 0.05 for one trace in twenty", "must be between 0 and 1")
	}
	if t.Endpoint != "" {
		if why := otlpEndpointProblem(t.Endpoint, t.Protocol == "grpc"); why != "" {
			v.errorf("tracing.endpoint", `like "https://otel-collector.internal:4318" or "http://127.0.0.1:4318"`, "%s", why)
		}
	}
	if u, err := url.Parse(t.Endpoint); t.CAFile != "" && (t.Endpoint == "" || err != nil || u.Scheme != "https") {
		v.errorf("tracing.ca_file", "set an https:// endpoint, or remove ca_file", "only used with an https endpoint")
	}
}

// otlpEndpointProblem says what is wrong with a collector URL, or "".
// Spans name routes and decisions: they go over TLS unless the collector
// runs on this machine.
func otlpEndpointProblem(raw string, grpc bool) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "want http(s)://host:port[/path], without credentials, query or fragment"
	}
	switch u.Scheme {
	case "https":
	case "http":
		// A loopback address, not a name: "localhost" is whatever the
		// hosts file or, without an entry, DNS says it is.
		if a, err := netip.ParseAddr(u.Hostname()); err != nil || !a.IsLoopback() {
			return "plain http only to a collector on this machine, by a loopback address (127.0.0.1 or [::1]); use https"
		}
	default:
		return "the scheme must be https, or http to a collector on this machine"
	}
	if grpc && u.Path != "" && u.Path != "/" {
		return "a gRPC endpoint has no path"
	}
	return ""
}

// validator collects the problems of one Config.
type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) errorf(path, hint, format string, args ...any) {
	v.errs = append(v.errs, v.c.src.newError(path, hint, fmt.Sprintf(format, args...)))
}

// oneOf checks that val is one of allowed, suggesting the closest on a typo.
func (v *validator) oneOf(path, what, val string, allowed ...string) bool {
	if slices.Contains(allowed, val) {
		return true
	}
	hint := "use " + orList(allowed)
	if s := suggest(val, allowed); s != "" {
		hint = fmt.Sprintf("did you mean %q?", s)
	}
	if val == "" {
		v.errorf(path, hint, "required")
	} else {
		v.errorf(path, hint, "unknown %s %q", what, val)
	}
	return false
}

// positive checks that a timeout or limit is above zero.
func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.errorf(path, "", "must be positive, got %s", d)
	}
}

func (v *validator) listeners() {
	c := v.c
	type listener struct{ path, addr string }
	ls := []listener{{"listen", c.Listen}, {"admin_listen", c.AdminListen}}
	if c.HTTPListen != ListenOff {
		ls = append(ls, listener{"http_listen", c.HTTPListen})
	}
	var valid []listener
	for _, l := range ls {
		hint := "like 127.0.0.1:8443, or :8443 for every interface"
		if l.path == "http_listen" {
			hint += `, or "off"`
		}
		if l.addr == "" {
			v.errorf(l.path, hint, "required")
			continue
		}
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			v.errorf(l.path, hint, "invalid address %q: want host:port", l.addr)
			continue
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			v.errorf(l.path, "ports are numbers from 0 to 65535", "invalid port %q in %q", port, l.addr)
			continue
		}
		if strings.ContainsAny(host, " /") {
			v.errorf(l.path, hint, "invalid host %q in %q", host, l.addr)
			continue
		}
		for _, o := range valid {
			if sameListener(o.addr, l.addr) {
				v.errorf(l.path, "each listener needs its own address", "%q conflicts with %s (%q)", l.addr, o.path, o.addr)
			}
		}
		valid = append(valid, l)
	}
}

// sameListener reports whether two valid host:port addresses would collide.
// Port 0 picks a free port, so it never collides.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := strconv.ParseUint(pa, 10, 16)
	nb, _ := strconv.ParseUint(pb, 10, 16)
	if na != nb || na == 0 {
		return false
	}
	wildcard := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || err == nil && ip.IsUnspecified()
	}
	return strings.EqualFold(ha, hb) || wildcard(ha) || wildcard(hb) ||
		strings.EqualFold(ha, "localhost") && isLoopback(hb) ||
		strings.EqualFold(hb, "localhost") && isLoopback(ha)
}

func (v *validator) tls() {
	t := v.c.TLS
	v.oneOf("tls.mode", "TLS mode", t.Mode, TLSLocal, TLSFiles, TLSACME)
	v.oneOf("tls.min_version", "TLS version", t.MinVersion, "1.2", "1.3")
	for _, f := range []struct{ path, val string }{{"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile}} {
		switch {
		case t.Mode == TLSFiles && f.val == "":
			v.errorf(f.path, "", "required with mode files")
		case t.Mode != TLSFiles && f.val != "":
			v.errorf(f.path, "set tls.mode: files to use it, or remove it", "only used with mode files")
		}
	}
	if t.Mode == TLSACME {
		v.acme()
	} else if len(t.ACME.Hosts) > 0 || t.ACME.Email != "" {
		v.errorf("tls.acme", "set tls.mode: acme to use it, or remove it", "only used with mode acme")
	}
	if t.HSTSMaxAge < minHSTSMaxAge {
		v.errorf("tls.hsts_max_age", "use 8760h or more", "%s is shorter than 365 days", t.HSTSMaxAge)
	}
}

func (v *validator) acme() {
	a := v.c.TLS.ACME
	if len(a.Hosts) == 0 {
		v.errorf("tls.acme.hosts", "list the names to request certificates for", "required with mode acme")
	}
	seen := map[string]bool{}
	for i, h := range a.Hosts {
		p := "tls.acme.hosts[" + strconv.Itoa(i) + "]"
		_, ipErr := netip.ParseAddr(h)
		switch {
		case strings.Contains(h, "*"):
			v.errorf(p, "list each name instead", "wildcard host %q: ACME HTTP and TLS-ALPN challenges cannot validate wildcards", h)
		case ipErr == nil:
			v.errorf(p, "", "%q is an IP address; ACME certificates are requested for DNS names", h)
		case h != strings.ToLower(h):
			v.errorf(p, fmt.Sprintf("write %q", strings.ToLower(h)), "host %q must be lowercase", h)
		case !isHostname(h):
			v.errorf(p, "", "invalid host name %q", h)
		case seen[h]:
			v.errorf(p, "", "host %q is listed twice", h)
		}
		seen[h] = true
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t\r\n<>,")) {
		v.errorf("tls.acme.email", "write a plain address like ops@example.com", "invalid email %q", a.Email)
	}
	if u, err := url.Parse(a.DirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
		v.errorf("tls.acme.directory_url", "", "must be an https URL, got %q", a.DirectoryURL)
	}
	if a.CacheDir == "" {
		v.errorf("tls.acme.cache_dir", "", "required with mode acme")
	}
}

// isHostname reports whether h is a fully qualified DNS name in lowercase
// letters, digits and hyphens (RFC 1123 §2.1), without a trailing dot.
func isHostname(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func (v *validator) store() {
	s := v.c.Store
	switch s.Driver {
	case badStoreSpec:
		v.errorf("store", "give postgres://user@host:5432/db?sslmode=… or sqlite:PATH", "the store is neither a postgres:// URL nor sqlite:PATH")
	case "postgres":
		// Never quote the DSN: it may hold a password.
		u, err := url.Parse(s.DSN)
		switch {
		case s.DSN == "":
			v.errorf("store.dsn", "set store.dsn or KEYWAY_STORE_DSN to postgres://user@host:5432/db", "required with driver postgres")
		case err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "":
			v.errorf("store.dsn", "postgres://user@host:5432/db?sslmode=verify-full", "not a postgres:// URL with a host")
		}
	default:
		v.oneOf("store.driver", "store driver", s.Driver, "sqlite", "postgres")
		if s.Path == "" {
			v.errorf("store.path", "", "required")
		}
		if s.DSN != "" {
			v.errorf("store.dsn", `remove it, or set driver: postgres`, "a DSN is for driver postgres")
		}
	}
}

func (v *validator) redis() {
	r := v.c.Redis
	v.oneOf("redis.on_failure", "failure policy", r.OnFailure, "local", "closed")
	if r.Addr == "" {
		return
	}
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		v.errorf("redis.addr", "host:port, such as 127.0.0.1:6379", "not a host:port address")
	}
	if r.CAFile != "" && !r.TLS {
		v.errorf("redis.ca_file", "set redis.tls: true", "a CA file is for TLS")
	}
	if r.Prefix == "" {
		v.errorf("redis.prefix", `such as "keyway:"`, "required")
	}
}

func (v *validator) server() {
	s := v.c.Server
	v.positive("server.read_header_timeout", s.ReadHeaderTimeout)
	v.positive("server.read_timeout", s.ReadTimeout)
	v.positive("server.write_timeout", s.WriteTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.positive("server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxHeaderBytes <= 0 {
		v.errorf("server.max_header_bytes", "", "must be positive, got %d", s.MaxHeaderBytes)
	}
	if s.IPv6Prefix < 32 || s.IPv6Prefix > 128 {
		v.errorf("server.ipv6_prefix", "64 is what one connection usually gets", "must be between 32 and 128, got %d", s.IPv6Prefix)
	}
	for i, h := range s.Hosts {
		p := "server.hosts[" + strconv.Itoa(i) + "]"
		ip, ipErr := netip.ParseAddr(strings.Trim(h, "[]"))
		switch {
		case ipErr == nil && ip.Zone() == "":
		case strings.Contains(h, "*"):
			v.errorf(p, "list each name", "wildcard host %q is not supported", h)
		case strings.Contains(h, ":") || strings.Contains(h, "/"):
			v.errorf(p, "write the name alone: any port is accepted", "host %q must be a name or IP address without scheme, port or path", h)
		case h != strings.ToLower(h):
			v.errorf(p, fmt.Sprintf("write %q", strings.ToLower(h)), "host %q must be lowercase", h)
		case !isHostname(h):
			v.errorf(p, "", "invalid host name %q", h)
		}
	}
}

func (v *validator) upstreams() {
	for _, name := range slices.Sorted(maps.Keys(v.c.Upstreams)) {
		u, p := v.c.Upstreams[name], "upstreams."+name
		if name == "" {
			v.errorf("upstreams", "", "an upstream has an empty name")
		}
		v.upstreamURL(p+".url", u.URL)
		if u.MaxIdleConns <= 0 {
			v.errorf(p+".max_idle_conns", "", "must be positive, got %d", u.MaxIdleConns)
		}
		v.positive(p+".dial_timeout", u.DialTimeout)
		https := strings.HasPrefix(strings.ToLower(u.URL), "https:")
		if u.CAFile != "" && !https {
			v.errorf(p+".ca_file", "", "only used with an https upstream")
		}
		if u.Audience != "" && !u.Assertion {
			v.errorf(p+".audience", "set assertion: true to use it, or remove it", "only used with assertion: true")
		}
		switch {
		case u.MTLS && !https:
			v.errorf(p+".mtls", "use an https upstream URL", "mutual TLS needs an https upstream")
		case (u.ClientCertFile != "") != (u.ClientKeyFile != ""):
			v.errorf(p+".client_cert_file", "", "client_cert_file and client_key_file go together")
		case u.ClientCertFile != "" && !u.MTLS:
			v.errorf(p+".client_cert_file", "set mtls: true to use it, or remove it", "only used with mtls: true")
		}
	}
}

// upstreamURL checks an upstream's base URL. Messages show it redacted:
// a password in it must not reach logs.
func (v *validator) upstreamURL(path, raw string) {
	const hint = "like http://127.0.0.1:3000 or https://api.internal/base"
	if raw == DemoUpstreamURL {
		if !v.c.Demo {
			v.errorf(path, "set demo: true to run the built-in demo upstream", "%q is the demo upstream, which needs demo mode", raw)
		}
		return
	}
	if raw == "" {
		v.errorf(path, hint, "required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL, which may hold a password
		}
		v.errorf(path, hint, "invalid URL: %v", err)
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		v.errorf(path, hint, "URL %q must use http or https", u.Redacted())
	case u.Host == "" || u.Hostname() == "":
		v.errorf(path, hint, "URL %q has no host", u.Redacted())
	case u.User != nil:
		v.errorf(path, "URLs are logged; keep secrets out of them", "URL %q must not contain credentials", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		v.errorf(path, "the request's own path and query are appended to it", "URL %q must not have a query or fragment", u.Redacted())
	}
}

func (v *validator) routes() {
	c := v.c
	type routeKey struct{ path, method string }
	seen := map[routeKey]int{}
	for i, r := range c.Routes {
		p := routePath(i)
		pathOK := true
		if msg, hint := checkRoutePath(r.Path); msg != "" {
			v.errorf(p+".path", hint, "%s", msg)
			pathOK = false
		}
		methods := r.Methods
		if len(methods) == 0 {
			methods = []string{"GET", "HEAD"}
		}
		for j, m := range r.Methods {
			mp := p + ".methods[" + strconv.Itoa(j) + "]"
			up := strings.ToUpper(m)
			switch {
			case slices.Contains(knownMethods, m):
				if slices.Index(r.Methods, m) < j {
					v.errorf(mp, "", "method %s is listed twice", m)
				}
			case slices.Contains(knownMethods, up):
				v.errorf(mp, fmt.Sprintf("write %q", up), "method %q must be uppercase", m)
			case up == "TRACE" || up == "CONNECT":
				v.errorf(mp, "", "method %s cannot be routed: keyway does not proxy it", up)
			default:
				v.errorf(mp, "use "+orList(knownMethods), "unknown method %q", m)
			}
		}
		if r.Upstream == "" {
			if !c.ForwardAuth.Enabled {
				v.errorf(p+".upstream", "name one of upstreams (a route without one is only for forward_auth)", "required")
			}
		} else if _, ok := c.Upstreams[r.Upstream]; !ok {
			hint := "define it under upstreams"
			if s := suggest(r.Upstream, slices.Sorted(maps.Keys(c.Upstreams))); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			v.errorf(p+".upstream", hint, "unknown upstream %q", r.Upstream)
		}
		switch r.Policy {
		case PolicyPublic:
		case PolicyAPIKey, PolicySession:
		case "":
			v.errorf(p+".policy", "use public, api_key or session; there is no default, so that nothing is public by accident", "required")
		default:
			v.oneOf(p+".policy", "policy", string(r.Policy), string(PolicyPublic), string(PolicyAPIKey), string(PolicySession))
		}
		if len(r.Scopes) > 0 && r.Policy != PolicyAPIKey {
			v.errorf(p+".scopes", "", "scopes are only used with policy api_key")
		}
		for j, s := range r.Scopes {
			if s == "" || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
				v.errorf(p+".scopes["+strconv.Itoa(j)+"]", `like "weather:history"`, "invalid scope %q", s)
			}
		}
		if len(r.Roles) > 0 && r.Policy != PolicySession {
			v.errorf(p+".roles", "API keys carry scopes: use scopes on api_key routes", "roles are only used with policy session")
		}
		for j, s := range r.Roles {
			if !principal.ValidRole(s) {
				v.errorf(p+".roles["+strconv.Itoa(j)+"]", "1 to 64 characters: a-z, 0-9 and . _ : -, starting with a letter or digit", "invalid role %q", s)
			}
		}
		if r.RateLimit != nil {
			v.rateLimit(p+".rate_limit", r)
		}
		v.webSocket(p, r, methods)
		for j, h := range r.PassHeaders {
			v.passHeader(p+".pass_headers["+strconv.Itoa(j)+"]", h)
		}
		if r.MaxBody <= 0 {
			v.errorf(p+".max_body", "", "must be positive, got %d", r.MaxBody)
		}
		switch wt := c.Server.WriteTimeout; {
		case r.Timeout <= 0:
			v.positive(p+".timeout", r.Timeout)
		case wt > 0 && r.Timeout >= wt:
			v.errorf(p+".timeout", "lower it, or raise server.write_timeout",
				"%s must be less than server.write_timeout (%s), or the client is cut off before the 504", r.Timeout, wt)
		}
		if !pathOK {
			continue
		}
		key := r.Path
		if c.Server.CaseInsensitivePaths {
			key = lowerASCII(key)
		}
		for _, m := range methods {
			k := routeKey{key, m}
			if first, dup := seen[k]; dup {
				if first != i { // a method listed twice is reported above
					v.errorf(p, "", "%s %s is already routed by %s (%q)", m, r.Path, routePath(first), c.Routes[first].Name)
				}
				continue
			}
			seen[k] = i
		}
	}
}

// checkRoutePath returns what is wrong with a route path prefix, if
// anything. Paths are compared with the decoded request path, so escapes,
// dot segments and empty segments could never match, or would match
// something other than what they seem to say.
func checkRoutePath(p string) (msg, hint string) {
	switch {
	case p == "":
		return "required", `a prefix like "/v1"`
	case p[0] != '/':
		return fmt.Sprintf("%q must start with /", p), fmt.Sprintf("write %q", "/"+p)
	case !utf8.ValidString(p) || strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return fmt.Sprintf("%q must not contain spaces or control characters", p), ""
	case strings.ContainsAny(p, "%?#\\"):
		return fmt.Sprintf("%q must not contain %%, ?, # or \\", p), "write the decoded path prefix, without query or fragment"
	case strings.Contains(p, ".."):
		return fmt.Sprintf("%q must not contain ..", p), ""
	case strings.Contains(p, "//"):
		return fmt.Sprintf("%q must not contain //", p), ""
	case len(p) > 1 && p[len(p)-1] == '/':
		return fmt.Sprintf("%q must not end with /", p),
			fmt.Sprintf("write %q: a prefix matches on segment boundaries, so it covers %q too", strings.TrimRight(p, "/"), p+"x")
	case slices.Contains(strings.Split(p, "/"), "."):
		return fmt.Sprintf("%q must not contain . segments", p), ""
	}
	return "", ""
}

// clientNameRE is the form of a client profile's name, which API keys
// carry.
var clientNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// clients checks the client profiles, refusing the combinations that would
// open what a profile means to close: a wildcard or plain-HTTP CORS
// origin, CORS for key-holding clients, a route the credential cannot call.
func (v *validator) clients() {
	routes, named := map[string]Route{}, map[string]int{}
	for _, r := range v.c.Routes {
		routes[r.Name] = r
		named[r.Name]++
	}
	sessionClients := 0
	for _, name := range slices.Sorted(maps.Keys(v.c.Clients)) {
		cl, p := v.c.Clients[name], "clients."+name
		if !clientNameRE.MatchString(name) {
			v.errorf(p, "lower-case letters, digits, - and _, at most 32", "invalid client name %q", name)
		}
		switch cl.Credential {
		case PolicySession:
			sessionClients++
			if sessionClients == 2 {
				v.errorf(p+".credential", "one profile describes the browser; merge them", "only one client may use credential session")
			}
		case PolicyAPIKey:
			if len(cl.CORS.Origins) > 0 {
				v.errorf(p+".cors", "browsers hold a session cookie, never an API key: give the browser app a session client",
					"CORS is only for a session client: a key in browser JavaScript is what keyway exists to prevent")
			}
		default:
			v.errorf(p+".credential", "use session or api_key", "required: session or api_key, got %q", cl.Credential)
		}
		if len(cl.Routes) == 0 {
			v.errorf(p+".routes", "list the routes it may call, by name", "required: a client calls nothing it is not given")
		}
		for _, rn := range slices.Sorted(maps.Keys(cl.Routes)) {
			rp := p + ".routes." + rn
			r, ok := routes[rn]
			if !ok {
				hint := "name one of routes"
				if s := suggest(rn, slices.Sorted(maps.Keys(routes))); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
				}
				v.errorf(rp, hint, "unknown route %q", rn)
				continue
			}
			if named[rn] > 1 {
				v.errorf(rp, "give those routes names of their own", "route name %q names %d routes", rn, named[rn])
			}
			if r.Policy != PolicyPublic && r.Policy != cl.Credential && (cl.Credential == PolicySession || cl.Credential == PolicyAPIKey) {
				v.errorf(rp, "", "route %q has policy %s, which a client with credential %s cannot pass", rn, r.Policy, cl.Credential)
			}
			methods := r.Methods
			if len(methods) == 0 {
				methods = []string{"GET", "HEAD"}
			}
			for _, m := range cl.Routes[rn] {
				if !slices.Contains(methods, m) {
					v.errorf(rp, "use methods the route allows: "+strings.Join(methods, ", "), "route %q does not allow %s", rn, m)
				}
			}
		}
		for _, rn := range slices.Sorted(maps.Keys(cl.Fields)) {
			fp, f := p+".fields."+rn, cl.Fields[rn]
			if _, ok := cl.Routes[rn]; !ok {
				v.errorf(fp, "add the route to the client's routes, or remove the rule", "route %q is not one of the client's routes", rn)
			}
			if r, ok := routes[rn]; ok && r.WebSocket {
				v.errorf(fp, "serve the WebSocket on a route of its own, without a field rule",
					"route %q accepts WebSockets, whose messages cannot be trimmed", rn)
			}
			switch {
			case len(f.Allow) > 0 && len(f.Deny) > 0:
				v.errorf(fp, "keep the one that says what the client needs", "a field rule is an allow list or a deny list, not both")
			case len(f.Allow) > 0:
				if _, err := shape.Allow(f.Allow); err != nil {
					v.errorf(fp+".allow", "", "%v", err)
				}
			case len(f.Deny) > 0:
				if _, err := shape.Deny(f.Deny); err != nil {
					v.errorf(fp+".deny", "", "%v", err)
				}
			default:
				v.errorf(fp, "write allow: [...] or deny: [...]", "empty field rule")
			}
		}
		v.oneOf(p+".non_json", "non-JSON answer policy", cl.NonJSON, "refuse", "pass")
		if cl.MaxShapedBody <= 0 || cl.MaxShapedBody > maxShapedBody {
			v.errorf(p+".max_shaped_body", "", "must be above 0 and at most 16MiB, got %d", cl.MaxShapedBody)
		}
		v.cors(p+".cors", cl.CORS)
	}
}

// cors checks a client's CORS policy.
func (v *validator) cors(p string, c CORS) {
	for i, o := range c.Origins {
		op := p + ".origins[" + strconv.Itoa(i) + "]"
		u, err := url.Parse(o)
		switch {
		case o == "*" || strings.Contains(o, "*"):
			v.errorf(op, "list each origin", "a wildcard origin with credentials would let any site act as the signed-in person")
		case o == "null":
			v.errorf(op, "", `origin "null" is what sandboxed and file pages send: any page can claim it`)
		case err != nil || u.Host == "" || u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			v.errorf(op, `like "https://app.example.com"`, "invalid origin %q", o)
		case u.Scheme == "http" && !isLoopback(u.Hostname()):
			v.errorf(op, "serve the app over https", "origin %q is plain http: anyone on its network can act as the signed-in person", o)
		case u.Scheme != "https" && u.Scheme != "http":
			v.errorf(op, `like "https://app.example.com"`, "invalid origin %q", o)
		case o != u.Scheme+"://"+strings.ToLower(u.Host):
			v.errorf(op, fmt.Sprintf("write %q: origins are compared byte for byte", u.Scheme+"://"+strings.ToLower(u.Host)), "origin %q is not in its serialised form", o)
		}
	}
	for i, h := range c.AllowHeaders {
		if h == "" || strings.IndexFunc(h, func(r rune) bool {
			return !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) >= 0 || h == "*" {
			v.errorf(p+".allow_headers["+strconv.Itoa(i)+"]", `like "X-Trace"`, "invalid header name %q", h)
		}
	}
	if c.MaxAge <= 0 || c.MaxAge > 24*time.Hour {
		v.errorf(p+".max_age", "", "must be above 0 and at most 24h, got %s", c.MaxAge)
	}
}

// webSocket checks a route's WebSocket settings.
func (v *validator) webSocket(p string, r Route, methods []string) {
	if !r.WebSocket {
		if r.WebSocketMaxLifetime != 0 {
			v.errorf(p+".websocket_max_lifetime", "set websocket: true to use it, or remove it", "only used with websocket: true")
		}
		return
	}
	if !slices.Contains(methods, "GET") {
		v.errorf(p+".websocket", "add GET to methods", "a WebSocket opens with a GET, which this route does not allow")
	}
	if r.WebSocketMaxLifetime <= 0 || r.WebSocketMaxLifetime > maxWebSocketLifetime {
		v.errorf(p+".websocket_max_lifetime", "", "must be above 0 and at most 24h, got %s", r.WebSocketMaxLifetime)
	}
}

// passHeader checks one name of a route's pass_headers.
func (v *validator) passHeader(p, h string) {
	switch {
	case h == "" || strings.IndexFunc(h, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0:
		v.errorf(p, `like "X-HTTP-Method-Override" or "X_Legacy_Id"`, "invalid header name %q", h)
	case headername.Protected(h, v.c.APIKeys.Header):
		v.errorf(p, "keyway sets these itself; an upstream must never get a client's copy",
			"%q is an identity or forwarding header (in some spelling) and can never be passed from a client", h)
	case !strings.Contains(h, "_") && !headername.Override(h):
		v.errorf(p, "list only headers keyway would remove: names with _ and method or path overrides",
			"%q is forwarded anyway", h)
	}
}

// lowerASCII lower-cases ASCII letters only: the gateway's rule for paths.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func (v *validator) rateLimit(p string, r Route) {
	rl := r.RateLimit
	l, err := ratelimit.ParseLimit(rl.Rate)
	switch {
	case err != nil:
		v.errorf(p+".rate", `like "100/min", "5/s" or "50/10s"`, "%v", err)
	case l.Burst != 0: // the app takes the burst from rl.Burst only
		v.errorf(p+".rate", "write it as rate_limit.burst", "rate %q must not carry a burst= option", rl.Rate)
	}
	if rl.Burst < 0 || (err == nil && rl.Burst > 1000*l.Count) {
		v.errorf(p+".burst", "", "burst must be between 0 (the count) and 1000 times the count")
	} else if err == nil {
		// ParseLimit checked the rate with the default burst; an invalid
		// pair would make the limiter refuse every request.
		l.Burst = rl.Burst
		if err := l.Validate(); err != nil {
			v.errorf(p+".burst", "lower the burst or shorten the period", "%v", err)
		}
	}
	switch rl.Per {
	case "", "ip":
	case "key":
		if r.Policy != PolicyAPIKey {
			v.errorf(p+".per", `use "ip"`, `per "key" needs policy api_key`)
		}
	default:
		v.oneOf(p+".per", "rate limit dimension", rl.Per, "ip", "key")
	}
}

func (v *validator) apiKeys() {
	a := v.c.APIKeys
	if a.Header == "" || strings.IndexFunc(a.Header, func(r rune) bool {
		return !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		v.errorf("api_keys.header", `like "Authorization" or "X-Api-Key"`, "invalid header name %q", a.Header)
	}
	switch strings.ToLower(a.Header) {
	case "cookie", "host", "x-forwarded-for", "content-type", "content-length":
		v.errorf("api_keys.header", `use "Authorization"`, "header %q cannot carry keys", a.Header)
	}
	for i, sc := range a.SelfServiceScopes {
		if sc == "keyway:admin" {
			v.errorf("api_keys.self_service_scopes["+strconv.Itoa(i)+"]", "make admin keys with keyway keys create, for a service account",
				"keyway:admin cannot be a self-service scope")
		}
	}
	if len(a.PepperCommand) > 0 && strings.TrimSpace(a.PepperCommand[0]) == "" {
		v.errorf("api_keys.pepper_command", `like ["vault", "kv", "get", "-field=pepper", "secret/keyway"]`, "the first element must name a program")
	}
	v.positive("api_keys.default_ttl", a.DefaultTTL)
	v.positive("api_keys.max_ttl", a.MaxTTL)
	if a.DefaultTTL > a.MaxTTL {
		v.errorf("api_keys.default_ttl", "lower it or raise api_keys.max_ttl", "default_ttl %s exceeds max_ttl %s", a.DefaultTTL, a.MaxTTL)
	}
	if _, err := ratelimit.ParseLimit(a.LeakReport.RateLimit); err != nil {
		v.errorf("api_keys.leak_report.rate_limit", `like "300/min"`, "%v", err)
	}
}

func (v *validator) passkeys() {
	pk, c := v.c.Passkeys, v.c
	if pk.RPID != "" && (strings.Contains(pk.RPID, ":") || strings.Contains(pk.RPID, "/") || net.ParseIP(pk.RPID) != nil) {
		v.errorf("passkeys.rp_id", `a domain such as "example.com", without scheme or port`, "invalid relying party ID %q", pk.RPID)
	}
	if pk.RPID == "" && c.TLS.Mode == TLSFiles {
		v.errorf("passkeys.rp_id", "the domain your certificate is for", "required with tls.mode files")
	}
	// Origins must be written as browsers serialize them: the CSRF check
	// compares the Origin header with them byte for byte.
	for i, o := range pk.Origins {
		hint := `like "https://example.com" or "https://localhost:8443"`
		u, err := url.Parse(o)
		if err == nil && u.Scheme == "https" && u.Hostname() != "" && u.Opaque == "" {
			canon := "https://" + strings.TrimSuffix(strings.ToLower(u.Host), ":443")
			if o == canon {
				continue
			}
			hint = fmt.Sprintf("write %q: an origin has no path, query or default port", canon)
		}
		v.errorf("passkeys.origins["+strconv.Itoa(i)+"]", hint, "invalid origin %q", o)
	}
	v.oneOf("passkeys.sign_up", "sign-up mode", pk.SignUp, "open", "invite", "closed")
	v.oneOf("passkeys.counter_policy", "counter policy", pk.CounterPolicy, "deny", "log")
	for _, l := range []struct {
		path string
		ids  []string
	}{{"passkeys.aaguid_allow", pk.AAGUIDAllow}, {"passkeys.aaguid_deny", pk.AAGUIDDeny}} {
		for i, a := range l.ids {
			if _, err := uuid.Parse(a); err != nil {
				v.errorf(l.path+"["+strconv.Itoa(i)+"]", `AAGUIDs are UUIDs, like "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"`, "invalid AAGUID %q", a)
			}
		}
	}
	if pk.ChallengeTTL <= 0 || pk.ChallengeTTL > 10*time.Minute {
		v.errorf("passkeys.challenge_ttl", "WebAuthn L3 recommends 5m", "must be above 0 and at most 10m, got %s", pk.ChallengeTTL)
	}
	s := c.Sessions
	v.positive("sessions.idle_timeout", s.IdleTimeout)
	v.positive("sessions.absolute_timeout", s.AbsoluteTimeout)
	v.positive("sessions.step_up_max_age", s.StepUpMaxAge)
	if s.IdleTimeout > s.AbsoluteTimeout {
		v.errorf("sessions.idle_timeout", "", "idle_timeout %s exceeds absolute_timeout %s", s.IdleTimeout, s.AbsoluteTimeout)
	}
}
