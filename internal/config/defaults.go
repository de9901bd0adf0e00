package config

import (
	"maps"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DemoUpstreamURL is the upstream URL that stands for the built-in demo
// weather service. Validate accepts it only when Config.Demo is set; the app
// replaces it with the demo server's loopback URL when it starts.
const DemoUpstreamURL = "demo:"

// Defaults that are not plain field values of Default.
const (
	letsEncryptURL      = "https://acme-v02.api.letsencrypt.org/directory"
	minHSTSMaxAge       = 365 * 24 * time.Hour
	defaultMaxIdleConns = 256
	defaultDialTimeout  = 5 * time.Second
	defaultMaxBody      = 1 << 20
	defaultRouteTimeout = 30 * time.Second
	// defaultWebSocketLifetime closes a tunnel after an hour: long enough
	// for a working session, short enough that a forgotten one ends.
	defaultWebSocketLifetime = time.Hour
	maxWebSocketLifetime     = 24 * time.Hour
	defaultMaxShapedBody     = 1 << 20
	maxShapedBody            = 16 << 20
	defaultCORSMaxAge        = 10 * time.Minute
)

// Default returns the documented default of every setting: loopback
// listeners, JSON logs at level info, local TLS with TLS 1.2 as the minimum,
// SQLite under DataDir and bounded server timeouts. It has no upstreams and
// no routes, so a gateway running it serves nothing.
func Default() *Config {
	c := defaults()
	c.fillDerived()
	return c
}

// defaults is Default without the settings derived from others, which Load
// fills only once the file has had its say.
func defaults() *Config {
	access := true
	return &Config{
		DataDir:     "./keyway-data",
		Listen:      "127.0.0.1:8443",
		HTTPListen:  "127.0.0.1:8080",
		AdminListen: "127.0.0.1:9090",
		Log:         Log{Format: "json", Level: "info", Access: &access, ClientAddress: "pseudonym"},
		TLS: TLS{
			Mode:       TLSLocal,
			MinVersion: "1.2",
			ACME:       ACME{DirectoryURL: letsEncryptURL},
			HSTSMaxAge: minHSTSMaxAge,
		},
		Store: Store{Driver: "sqlite"},
		Redis: Redis{OnFailure: "local", Prefix: defaultRedisPrefix},
		APIKeys: APIKeys{
			Header:     "Authorization",
			DefaultTTL: 90 * 24 * time.Hour,
			MaxTTL:     365 * 24 * time.Hour,
			LeakReport: LeakReport{RateLimit: "300/min"},
		},
		Passkeys: Passkeys{RPName: "keyway", SignUp: "invite", CounterPolicy: "deny", ChallengeTTL: 5 * time.Minute},
		Sessions: Sessions{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour, StepUpMaxAge: 5 * time.Minute},
		Audit:    Audit{CheckpointEvery: time.Minute},
		Server: Server{
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      120 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    32 << 10,
			ShutdownTimeout:   30 * time.Second,
			IPv6Prefix:        64,
		},
	}
}

// Demo returns the configuration of `keyway demo`: Default plus the built-in
// weather upstream, one route for each policy, and open sign-up.
func Demo() *Config {
	c := defaults()
	c.Demo = true
	c.Passkeys.SignUp = "open"
	c.APIKeys.SelfServiceScopes = []string{"weather:history"}
	c.Upstreams = map[string]Upstream{"weather": {URL: DemoUpstreamURL}}
	c.Routes = []Route{
		{Name: "forecast", Path: "/v1/forecast", Methods: []string{"GET"}, Upstream: "weather", Policy: PolicyPublic,
			RateLimit: &RateLimit{Rate: "60/min", Burst: 20, Per: "ip"}},
		{Name: "history", Path: "/v1/history", Methods: []string{"GET"}, Upstream: "weather", Policy: PolicyAPIKey, Scopes: []string{"weather:history"}},
		// "/v1/me" is a prefix of "/v1/me/cities"; the longest prefix wins.
		{Name: "me", Path: "/v1/me", Methods: []string{"GET"}, Upstream: "weather", Policy: PolicySession},
		{Name: "me-cities", Path: "/v1/me/cities", Methods: []string{"POST"}, Upstream: "weather", Policy: PolicySession},
	}
	// The Backend-for-Frontend: a browser (the session) is the web client,
	// which never sees billing or internal notes; a partner's key (made
	// with --client partner) sees a slimmer history and nothing else.
	c.Clients = map[string]Client{
		"web": {Credential: PolicySession, Routes: map[string][]string{"forecast": nil, "me": nil, "me-cities": nil},
			Fields: map[string]Fields{"me": {Deny: []string{"billing", "internal_notes"}}}},
		"partner": {Credential: PolicyAPIKey, Routes: map[string][]string{"forecast": nil, "history": {"GET"}},
			Fields: map[string]Fields{"history": {Allow: []string{"city", "days[].date", "days[].summary"}}}},
	}
	c.fillDerived()
	return c
}

// fillDerived fills the defaults that depend on other settings: the paths
// under DataDir, and the per-upstream and per-route defaults. A number the
// file wrote explicitly, even as zero, is kept for Validate to judge, so
// that "timeout: 0s" is an error rather than a silent 30s.
func (c *Config) fillDerived() {
	if c.Store.Path == "" {
		c.Store.Path = filepath.Join(c.DataDir, "keyway.db")
	}
	if c.TLS.ACME.CacheDir == "" {
		c.TLS.ACME.CacheDir = filepath.Join(c.DataDir, "acme")
	}
	if c.APIKeys.PepperFile == "" {
		c.APIKeys.PepperFile = filepath.Join(c.DataDir, "pepper.key")
	}
	if c.Audit.SigningKeyFile == "" {
		c.Audit.SigningKeyFile = filepath.Join(c.DataDir, "audit.key")
	}
	if c.DataProtection.KEKFile == "" {
		c.DataProtection.KEKFile = filepath.Join(c.DataDir, "kek.key")
	}
	if c.APIKeys.LeakReport.Enabled == nil {
		on := true
		c.APIKeys.LeakReport.Enabled = &on
	}
	if c.Log.Access == nil {
		access := true
		c.Log.Access = &access
	}
	if c.ForwardAuth.TrustedProxies == nil && !c.src.has("forward_auth.trusted_proxies") {
		c.ForwardAuth.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	for name, u := range c.Upstreams {
		p := "upstreams." + name
		if u.MaxIdleConns == 0 && !c.src.has(p+".max_idle_conns") {
			u.MaxIdleConns = defaultMaxIdleConns
		}
		if u.DialTimeout == 0 && !c.src.has(p+".dial_timeout") {
			u.DialTimeout = defaultDialTimeout
		}
		c.Upstreams[name] = u
	}
	for i := range c.Routes {
		r, p := &c.Routes[i], routePath(i)
		if r.Name == "" {
			r.Name = r.Path
		}
		if len(r.Methods) == 0 {
			r.Methods = []string{"GET", "HEAD"}
		}
		if r.MaxBody == 0 && !c.src.has(p+".max_body") {
			r.MaxBody = defaultMaxBody
		}
		if r.Timeout == 0 && !c.src.has(p+".timeout") {
			r.Timeout = defaultRouteTimeout
		}
		if r.WebSocket && r.WebSocketMaxLifetime == 0 && !c.src.has(p+".websocket_max_lifetime") {
			r.WebSocketMaxLifetime = defaultWebSocketLifetime
		}
	}
	for name, cl := range c.Clients {
		p := "clients." + name
		if cl.NonJSON == "" {
			cl.NonJSON = "refuse"
		}
		if cl.MaxShapedBody == 0 && !c.src.has(p+".max_shaped_body") {
			cl.MaxShapedBody = defaultMaxShapedBody
		}
		if cl.CORS.MaxAge == 0 && !c.src.has(p+".cors.max_age") {
			cl.CORS.MaxAge = defaultCORSMaxAge
		}
		c.Clients[name] = cl
	}
}

// HostNames returns the names keyway answers to: Server.Hosts when set;
// otherwise the host of every passkey origin and the relying party ID,
// plus localhost and the loopback addresses in local TLS mode (the names
// the local CA issues certificates for) and the ACME hosts in ACME mode.
func (c *Config) HostNames() []string {
	if len(c.Server.Hosts) > 0 {
		return c.Server.Hosts
	}
	var out []string
	add := func(h string) {
		h = strings.ToLower(strings.Trim(h, "[]"))
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	switch c.TLS.Mode {
	case TLSLocal:
		for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
			add(h)
		}
	case TLSACME:
		for _, h := range c.TLS.ACME.Hosts {
			add(h)
		}
	}
	add(c.Passkeys.RPID)
	for _, o := range c.Passkeys.Origins {
		if u, err := url.Parse(o); err == nil {
			add(u.Hostname())
		}
	}
	return out
}

// SetDataDir sets DataDir and moves the settings derived from it
// (Store.Path, TLS.ACME.CacheDir) that still hold their defaults, so that
// state stays together: Demo followed by SetDataDir(t.TempDir()) writes
// nothing outside the temporary directory. Assigning DataDir directly
// leaves the derived paths where they were.
func (c *Config) SetDataDir(dir string) {
	if c.Store.Path == filepath.Join(c.DataDir, "keyway.db") {
		c.Store.Path = ""
	}
	if c.TLS.ACME.CacheDir == filepath.Join(c.DataDir, "acme") {
		c.TLS.ACME.CacheDir = ""
	}
	if c.APIKeys.PepperFile == filepath.Join(c.DataDir, "pepper.key") {
		c.APIKeys.PepperFile = ""
	}
	if c.Audit.SigningKeyFile == filepath.Join(c.DataDir, "audit.key") {
		c.Audit.SigningKeyFile = ""
	}
	if c.DataProtection.KEKFile == filepath.Join(c.DataDir, "kek.key") {
		c.DataProtection.KEKFile = ""
	}
	c.DataDir = dir
	c.fillDerived()
}

// envVars are the settings the environment may override, by field path.
var envVars = []struct{ name, path string }{
	{"KEYWAY_DATA_DIR", "data_dir"},
	{"KEYWAY_LISTEN", "listen"},
	{"KEYWAY_HTTP_LISTEN", "http_listen"},
	{"KEYWAY_ADMIN_LISTEN", "admin_listen"},
	{"KEYWAY_LOG_FORMAT", "log.format"},
	{"KEYWAY_LOG_LEVEL", "log.level"},
	{"KEYWAY_STORE_DSN", "store.dsn"},
	{"KEYWAY_REDIS_ADDR", "redis.addr"},
	{"OTEL_TRACES_EXPORTER", "tracing.exporter"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.endpoint"},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "tracing.endpoint"},
	{"OTEL_EXPORTER_OTLP_PROTOCOL", "tracing.protocol"},
	{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "tracing.protocol"},
	{"OTEL_TRACES_SAMPLER", "tracing.sample_ratio"},
	{"OTEL_TRACES_SAMPLER_ARG", "tracing.sample_ratio"},
	{"OTEL_SDK_DISABLED", "tracing.exporter"},
}

// ApplyEnv overrides settings with the environment variables KEYWAY_DATA_DIR,
// KEYWAY_LISTEN, KEYWAY_HTTP_LISTEN, KEYWAY_ADMIN_LISTEN, KEYWAY_LOG_FORMAT,
// KEYWAY_LOG_LEVEL, KEYWAY_STORE_DSN (see SetStore) and KEYWAY_REDIS_ADDR; an unset or empty variable changes nothing. Load
// calls it with os.Getenv. For Demo's config, call it yourself, then
// Validate: errors about these settings name the variable, not a file line.
func (c *Config) ApplyEnv(getenv func(string) string) {
	env := maps.Clone(c.src.env) // a copied Config may share the map
	for _, e := range envVars {
		val := getenv(e.name)
		if val == "" {
			continue
		}
		if env == nil {
			env = map[string]string{}
		}
		prev, had := env[e.path]
		env[e.path] = e.name
		// unclaim is for a variable that turns out not to set the path:
		// errors about it must keep naming where it was set.
		unclaim := func() {
			if had {
				env[e.path] = prev
			} else {
				delete(env, e.path)
			}
		}
		switch e.path {
		case "data_dir":
			c.SetDataDir(val)
		case "listen":
			c.Listen = val
		case "http_listen":
			c.HTTPListen = val
		case "admin_listen":
			c.AdminListen = val
		case "log.format":
			c.Log.Format = val
		case "log.level":
			c.Log.Level = val
		case "store.dsn":
			c.SetStore(val)
		case "redis.addr":
			c.Redis.Addr = val
		case "tracing.exporter":
			if e.name == "OTEL_SDK_DISABLED" {
				if strings.EqualFold(val, "true") {
					c.Tracing.Exporter = "none" // the specification: it wins
				} else {
					unclaim()
				}
				continue
			}
			c.Tracing.Exporter = val
		case "tracing.endpoint":
			if e.name == "OTEL_EXPORTER_OTLP_ENDPOINT" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
				unclaim()
				continue // the more precise variable wins, as the specification says
			}
			c.Tracing.Endpoint = otlpEndpoint(val, e.name == "OTEL_EXPORTER_OTLP_ENDPOINT", c.Tracing.Protocol, getenv)
		case "tracing.protocol":
			c.Tracing.Protocol = val
		case "tracing.sample_ratio":
			// keyway's sampler is always parent-based: the standard
			// samplers map onto its ratio.
			var r float64
			switch sampler := getenv("OTEL_TRACES_SAMPLER"); {
			case e.name == "OTEL_TRACES_SAMPLER" && (sampler == "always_on" || sampler == "parentbased_always_on"):
				r = 1
			case e.name == "OTEL_TRACES_SAMPLER" && (sampler == "always_off" || sampler == "parentbased_always_off"):
				r = 0
			case e.name == "OTEL_TRACES_SAMPLER_ARG" && (sampler == "traceidratio" || sampler == "parentbased_traceidratio"):
				var err error
				if r, err = strconv.ParseFloat(val, 64); err != nil {
					r = -1 // Validate names the variable
				}
			default:
				unclaim()
				continue // another sampler's argument, or a ratio given by its argument
			}
			c.Tracing.SampleRatio = &r
		}
	}
	c.src.env = env
}

// otlpEndpoint is the traces URL a standard variable names: the generic
// OTEL_EXPORTER_OTLP_ENDPOINT is a base to which, over HTTP, the signal's
// path is added; the traces variable is used as it is.
func otlpEndpoint(val string, generic bool, protocol string, getenv func(string) string) string {
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto == "" {
		proto = protocol // the file's
	}
	if !generic || proto == "grpc" {
		return val
	}
	return strings.TrimSuffix(val, "/") + "/v1/traces"
}

// routePath is the field path of the i-th route.
func routePath(i int) string {
	return "routes[" + strconv.Itoa(i) + "]"
}

// defaultRedisPrefix starts every Redis key unless redis.prefix says
// otherwise; two deployments on one Redis need prefixes of their own.
const defaultRedisPrefix = "keyway:"
