package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpConfig compares Configs by their settings, not by where they came from.
var cmpConfig = []cmp.Option{
	cmpopts.IgnoreUnexported(Config{}),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func ptr[T any](v T) *T { return &v }

// noEnv is a getenv with nothing set.
func noEnv(string) string { return "" }

func TestDefault(t *testing.T) {
	want := &Config{
		DataDir:     "./keyway-data",
		Listen:      "127.0.0.1:8443",
		HTTPListen:  "127.0.0.1:8080",
		AdminListen: "127.0.0.1:9090",
		Log:         Log{Format: "json", Level: "info", Access: ptr(true), ClientAddress: "pseudonym"},
		TLS: TLS{
			Mode:       TLSLocal,
			MinVersion: "1.2",
			ACME:       ACME{DirectoryURL: "https://acme-v02.api.letsencrypt.org/directory", CacheDir: "keyway-data/acme"},
			HSTSMaxAge: 365 * 24 * time.Hour,
		},
		Store: Store{Driver: "sqlite", Path: "keyway-data/keyway.db"},
		Redis: Redis{OnFailure: "local", Prefix: "keyway:"},
		APIKeys: APIKeys{
			Header:     "Authorization",
			PepperFile: "keyway-data/pepper.key",
			DefaultTTL: 90 * 24 * time.Hour,
			MaxTTL:     365 * 24 * time.Hour,
			LeakReport: LeakReport{Enabled: ptr(true), RateLimit: "300/min"},
		},
		// Sign-up is by invitation unless the operator opens it.
		Passkeys: Passkeys{RPName: "keyway", SignUp: "invite", CounterPolicy: "deny", ChallengeTTL: 5 * time.Minute},
		Sessions: Sessions{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour, StepUpMaxAge: 5 * time.Minute},
		// The audit trail's head is signed every minute.
		Audit: Audit{CheckpointEvery: time.Minute, SigningKeyFile: "keyway-data/audit.key"},
		// Personal data is sealed under a KEK made beside the database.
		DataProtection: DataProtection{KEKFile: "keyway-data/kek.key"},
		Server: Server{
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      120 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    32 << 10,
			IPv6Prefix:        64,
			ShutdownTimeout:   30 * time.Second,
		},
		// Forward auth answers loopback proxies only, once enabled.
		ForwardAuth: ForwardAuth{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
	}
	got := Default()
	if diff := cmp.Diff(want, got, cmpConfig...); diff != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestDemo(t *testing.T) {
	c := Demo()
	if err := c.Validate(); err != nil {
		t.Fatalf("Demo().Validate() = %v", err)
	}
	if w := c.Lint(); len(w) != 0 {
		t.Errorf("Demo().Lint() = %v, want none", w)
	}
	if !c.Demo {
		t.Error("Demo().Demo = false")
	}
	if diff := cmp.Diff(map[string]Upstream{"weather": {URL: DemoUpstreamURL, MaxIdleConns: 256, DialTimeout: 5 * time.Second}}, c.Upstreams); diff != "" {
		t.Errorf("Demo().Upstreams mismatch (-want +got):\n%s", diff)
	}
	route := func(name, path, method string, p Policy, scopes ...string) Route {
		return Route{Name: name, Path: path, Methods: []string{method}, Upstream: "weather", Policy: p,
			Scopes: scopes, MaxBody: 1 << 20, Timeout: 30 * time.Second}
	}
	forecast := route("forecast", "/v1/forecast", "GET", PolicyPublic)
	forecast.RateLimit = &RateLimit{Rate: "60/min", Burst: 20, Per: "ip"}
	want := []Route{
		forecast,
		route("history", "/v1/history", "GET", PolicyAPIKey, "weather:history"),
		route("me", "/v1/me", "GET", PolicySession),
		route("me-cities", "/v1/me/cities", "POST", PolicySession),
	}
	if diff := cmp.Diff(want, c.Routes); diff != "" {
		t.Errorf("Demo().Routes mismatch (-want +got):\n%s", diff)
	}
	// The demo lets anyone sign up.
	if c.Passkeys.SignUp != "open" {
		t.Errorf("Demo().Passkeys.SignUp = %q, want open", c.Passkeys.SignUp)
	}
	// People may give their own keys the demo's one scope.
	if diff := cmp.Diff([]string{"weather:history"}, c.APIKeys.SelfServiceScopes); diff != "" {
		t.Errorf("Demo().APIKeys.SelfServiceScopes (-want +got):\n%s", diff)
	}
	// The BFF: the browser (web) never sees billing or internal notes; a
	// partner's key sees a slimmer history.
	wantClients := map[string]Client{
		"web": {Credential: PolicySession, Routes: map[string][]string{"forecast": nil, "me": nil, "me-cities": nil},
			Fields: map[string]Fields{"me": {Deny: []string{"billing", "internal_notes"}}}, NonJSON: "refuse", MaxShapedBody: 1 << 20,
			CORS: CORS{MaxAge: 10 * time.Minute}},
		"partner": {Credential: PolicyAPIKey, Routes: map[string][]string{"forecast": nil, "history": {"GET"}},
			Fields: map[string]Fields{"history": {Allow: []string{"city", "days[].date", "days[].summary"}}}, NonJSON: "refuse",
			MaxShapedBody: 1 << 20, CORS: CORS{MaxAge: 10 * time.Minute}},
	}
	if diff := cmp.Diff(wantClients, c.Clients); diff != "" {
		t.Errorf("Demo().Clients (-want +got):\n%s", diff)
	}
	// Everything else is the default.
	c.Demo, c.Upstreams, c.Routes, c.Passkeys.SignUp, c.APIKeys.SelfServiceScopes, c.Clients = false, nil, nil, "invite", nil, nil
	if diff := cmp.Diff(Default(), c, cmpConfig...); diff != "" {
		t.Errorf("Demo() differs from Default() beyond demo settings (-want +got):\n%s", diff)
	}
}

// TestPoliciesFromFiles checks that a user's file may name every policy:
// public, api_key and session routes all load.
func TestPoliciesFromFiles(t *testing.T) {
	const up = "upstreams: {api: {url: \"http://localhost:3000\"}}\n"
	t.Run("session", func(t *testing.T) {
		c := mustLoad(t, up+"routes:\n  - {path: /v1/me, upstream: api, policy: session}\n", nil)
		r := c.Routes[0]
		if r.Policy != PolicySession || r.Path != "/v1/me" || len(r.Scopes) != 0 {
			t.Errorf("route = %+v, want policy session on /v1/me without scopes", r)
		}
		if w := c.Lint(); len(w) != 0 {
			t.Errorf("Lint() = %v, want none: a session route needs no rate_limit", w)
		}
	})
	t.Run("session with scopes", func(t *testing.T) {
		_, err := load("keyway.yaml", []byte(up+"routes:\n  - {path: /v1, upstream: api, policy: session, scopes: [a]}\n"), noEnv)
		want := "keyway.yaml:3: routes[0].scopes: scopes are only used with policy api_key"
		if err == nil || err.Error() != want {
			t.Errorf("load() error = %v, want %s", err, want)
		}
	})
	t.Run("every policy at once", func(t *testing.T) {
		c := mustLoad(t, up+`routes:
  - {path: /pub, upstream: api, policy: public, rate_limit: {rate: 60/min}}
  - {path: /key, upstream: api, policy: api_key, scopes: [a]}
  - {path: /me, upstream: api, policy: session, methods: [GET, POST]}
`, nil)
		var got []Policy
		for _, r := range c.Routes {
			got = append(got, r.Policy)
		}
		if diff := cmp.Diff([]Policy{PolicyPublic, PolicyAPIKey, PolicySession}, got); diff != "" {
			t.Errorf("policies mismatch (-want +got):\n%s", diff)
		}
		if w := c.Lint(); len(w) != 0 {
			t.Errorf("Lint() = %v, want none: only public routes that write are risky", w)
		}
	})
	t.Run("api_key with scopes", func(t *testing.T) {
		c := mustLoad(t, up+"routes:\n  - path: /v1\n    upstream: api\n    policy: api_key\n    scopes: [weather:history, \"keys:read\"]\n", nil)
		r := c.Routes[0]
		if r.Policy != PolicyAPIKey || !cmp.Equal(r.Scopes, []string{"weather:history", "keys:read"}) {
			t.Errorf("route = %+v, want policy api_key with scopes [weather:history keys:read]", r)
		}
		if w := c.Lint(); len(w) != 0 {
			t.Errorf("Lint() = %v, want none: an api_key route needs no rate_limit", w)
		}
	})
	t.Run("api_key without scopes", func(t *testing.T) {
		c := mustLoad(t, up+"routes:\n  - {path: /v1, upstream: api, policy: api_key}\n", nil)
		if c.Routes[0].Policy != PolicyAPIKey || len(c.Routes[0].Scopes) != 0 {
			t.Errorf("route = %+v, want policy api_key without scopes", c.Routes[0])
		}
	})
	t.Run("copy of demo", func(t *testing.T) {
		c := *Demo()
		if err := c.Validate(); err != nil {
			t.Errorf("a copy of Demo() does not validate: %v", err)
		}
	})
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"KEYWAY_DATA_DIR":     "/srv/keyway",
		"KEYWAY_LISTEN":       ":8443",
		"KEYWAY_HTTP_LISTEN":  "off",
		"KEYWAY_ADMIN_LISTEN": "127.0.0.1:0",
		"KEYWAY_LOG_FORMAT":   "text",
		"KEYWAY_LOG_LEVEL":    "debug",
		"KEYWAY_DEMO":         "true", // not a variable ApplyEnv reads
	}
	t.Run("overrides", func(t *testing.T) {
		c := Demo()
		c.ApplyEnv(func(k string) string { return env[k] })
		want := Demo()
		want.DataDir, want.Store.Path, want.TLS.ACME.CacheDir = "/srv/keyway", "/srv/keyway/keyway.db", "/srv/keyway/acme"
		want.APIKeys.PepperFile = "/srv/keyway/pepper.key"
		want.Audit.SigningKeyFile = "/srv/keyway/audit.key"
		want.DataProtection.KEKFile = "/srv/keyway/kek.key"
		want.Listen, want.HTTPListen, want.AdminListen = ":8443", "off", "127.0.0.1:0"
		want.Log.Format, want.Log.Level = "text", "debug"
		if diff := cmp.Diff(want, c, cmpConfig...); diff != "" {
			t.Errorf("ApplyEnv mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("empty changes nothing", func(t *testing.T) {
		c := Default()
		c.ApplyEnv(noEnv)
		if diff := cmp.Diff(Default(), c, cmpConfig...); diff != "" {
			t.Errorf("ApplyEnv with no variables changed the config (-want +got):\n%s", diff)
		}
	})
	t.Run("explicit store path stays", func(t *testing.T) {
		c := mustLoad(t, "store: {path: /db/k.db}\n", map[string]string{"KEYWAY_DATA_DIR": "/srv"})
		if c.Store.Path != "/db/k.db" || c.TLS.ACME.CacheDir != "/srv/acme" || c.APIKeys.PepperFile != "/srv/pepper.key" {
			t.Errorf("Store.Path, ACME.CacheDir, APIKeys.PepperFile = %q, %q, %q; want /db/k.db, /srv/acme, /srv/pepper.key",
				c.Store.Path, c.TLS.ACME.CacheDir, c.APIKeys.PepperFile)
		}
	})
	t.Run("explicit pepper file stays", func(t *testing.T) {
		c := mustLoad(t, "api_keys: {pepper_file: /secrets/pepper.key}\n", map[string]string{"KEYWAY_DATA_DIR": "/srv"})
		if c.APIKeys.PepperFile != "/secrets/pepper.key" || c.Store.Path != "/srv/keyway.db" {
			t.Errorf("APIKeys.PepperFile, Store.Path = %q, %q; want /secrets/pepper.key, /srv/keyway.db", c.APIKeys.PepperFile, c.Store.Path)
		}
	})
	t.Run("errors name the variable", func(t *testing.T) {
		_, err := load("keyway.yaml", []byte("listen: 127.0.0.1:8443\n"), func(k string) string {
			return map[string]string{"KEYWAY_LISTEN": "8443", "KEYWAY_LOG_LEVEL": "verbose"}[k]
		})
		want := "KEYWAY_LISTEN: invalid address \"8443\": want host:port (like 127.0.0.1:8443, or :8443 for every interface)\n" +
			`KEYWAY_LOG_LEVEL: unknown log level "verbose" (use debug, info, warn or error)`
		if err == nil || err.Error() != want {
			t.Errorf("load() error = %v, want\n%s", err, want)
		}
	})
	t.Run("Load reads the environment", func(t *testing.T) {
		t.Setenv("KEYWAY_LOG_LEVEL", "error")
		c, err := Load("testdata/full.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if c.Log.Level != "error" {
			t.Errorf("Log.Level = %q, want error", c.Log.Level)
		}
	})
}

func TestSetDataDir(t *testing.T) {
	c := Demo()
	if c.APIKeys.PepperFile != "keyway-data/pepper.key" {
		t.Errorf("Demo().APIKeys.PepperFile = %q, want keyway-data/pepper.key", c.APIKeys.PepperFile)
	}
	c.SetDataDir("/tmp/x")
	if c.DataDir != "/tmp/x" || c.Store.Path != "/tmp/x/keyway.db" || c.TLS.ACME.CacheDir != "/tmp/x/acme" || c.APIKeys.PepperFile != "/tmp/x/pepper.key" {
		t.Errorf("after SetDataDir: %q %q %q %q", c.DataDir, c.Store.Path, c.TLS.ACME.CacheDir, c.APIKeys.PepperFile)
	}
	// Twice: the derived paths follow again.
	c.SetDataDir("/tmp/y")
	if c.APIKeys.PepperFile != "/tmp/y/pepper.key" || c.Store.Path != "/tmp/y/keyway.db" {
		t.Errorf("after a second SetDataDir: %q %q", c.APIKeys.PepperFile, c.Store.Path)
	}
	// A pepper file set elsewhere stays where it is.
	c.APIKeys.PepperFile = "/secrets/pepper.key"
	c.SetDataDir("/tmp/z")
	if c.APIKeys.PepperFile != "/secrets/pepper.key" || c.Store.Path != "/tmp/z/keyway.db" {
		t.Errorf("after SetDataDir with an explicit pepper file: %q %q", c.APIKeys.PepperFile, c.Store.Path)
	}
	// Other API key settings are not derived from the data directory.
	if c.APIKeys.Header != "Authorization" || c.APIKeys.LeakReport.Enabled == nil || !*c.APIKeys.LeakReport.Enabled {
		t.Errorf("SetDataDir changed APIKeys: %+v", c.APIKeys)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "12B", want: 12},
		{in: "512KiB", want: 512 << 10},
		{in: "1MiB", want: 1 << 20},
		{in: "2GiB", want: 2 << 30},
		{in: "1KB", want: 1000},
		{in: "10MB", want: 10_000_000},
		{in: "3GB", want: 3_000_000_000},
		{in: " 4 KiB ", want: 4096},
		{in: "9223372036854775807", want: 1<<63 - 1},
		{in: "", wantErr: `invalid byte size ""`},
		{in: "MiB", wantErr: `invalid byte size "MiB"`},
		{in: "-1", wantErr: `byte size "-1" is negative`},
		{in: "-1KiB", wantErr: `byte size "-1KiB" is negative`},
		{in: "1.5MiB", wantErr: `byte size "1.5MiB" is not a whole number`},
		{in: "1mb", wantErr: `byte size "1mb" has unknown unit "mb"`},
		{in: "1TiB", wantErr: `byte size "1TiB" has unknown unit "TiB"`},
		{in: "0x10", wantErr: `byte size "0x10" has unknown unit "x10"`},
		{in: "9223372036854775808", wantErr: `byte size "9223372036854775808" is too large`},
		{in: "8589934592GiB", wantErr: `byte size "8589934592GiB" is too large`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("ParseByteSize(%q) = %d, %v; want error %s", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{1500, "1500B"},
		{32 << 10, "32KiB"},
		{1 << 20, "1MiB"},
		{10_000_000, "10MB"},
		{3 << 30, "3GiB"},
		{1<<63 - 1, "9223372036854775807B"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
			}
			var back ByteSize
			if err := back.UnmarshalText([]byte(tt.in.String())); err != nil || back != tt.in {
				t.Errorf("round trip of %d = %d, %v", int64(tt.in), int64(back), err)
			}
		})
	}
}

// TestLogFormatOnATerminal: text for a person at a terminal, JSON for a
// collector, and what the file or the environment says, whatever the output.
func TestLogFormatOnATerminal(t *testing.T) {
	c := Default()
	if got := c.LogFormatOn(true); got != "text" {
		t.Errorf("default on a terminal: %q", got)
	}
	if got := c.LogFormatOn(false); got != "json" {
		t.Errorf("default elsewhere: %q", got)
	}
	if got := mustLoad(t, "log: {format: json}\n", nil).LogFormatOn(true); got != "json" {
		t.Errorf("the file's json on a terminal: %q", got)
	}
	if got := mustLoad(t, "log: {level: info}\n", map[string]string{"KEYWAY_LOG_FORMAT": "json"}).LogFormatOn(true); got != "json" {
		t.Errorf("the environment's json on a terminal: %q", got)
	}
	if got := mustLoad(t, "log: {format: text}\n", nil).LogFormatOn(false); got != "text" {
		t.Errorf("the file's text elsewhere: %q", got)
	}
}
