package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
)

const verifyYAML = `
data_dir: {{data}}
passkeys: {sign_up: open}
forward_auth: {enabled: true, trusted_proxies: [%s], audience: "urn:api"}
routes:
  - {name: orders, path: /v1/orders, methods: [GET, POST], policy: api_key, scopes: [orders:read]}
  - {name: limited, path: /v1/limited, policy: api_key, rate_limit: {rate: 2/min, per: key}}
  - {name: me, path: /v1/me, methods: [GET, POST], policy: session}
  - {name: open, path: /v1/open, policy: public, rate_limit: {rate: 100/s}}
`

// verifyEnv is keyway with forward auth, and keys made on its data dir.
type verifyEnv struct {
	t    *testing.T
	in   *apptest.Instance
	cfg  *config.Config
	keys *app.Keys
}

func startVerify(t *testing.T, trusted string) *verifyEnv {
	t.Helper()
	cfg := apptest.Config(t, fmt.Sprintf(verifyYAML, trusted))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	t.Cleanup(func() { _ = keys.Close() })
	return &verifyEnv{t: t, in: in, cfg: cfg, keys: keys}
}

func (e *verifyEnv) key(scopes ...string) (string, *apikey.Key) {
	e.t.Helper()
	raw, k, err := e.keys.Create(context.Background(), apikey.CreateParams{Name: "k", Owner: "service:shop", Scopes: scopes}, "test")
	apptest.Must(e.t, err, "key")
	return raw, k
}

// ask sends a forward-auth request to path with headers, as a proxy would.
func (e *verifyEnv) ask(method, path string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.in.URL(path), nil)
	req.Host = "127.0.0.1" // proxies reach keyway by address
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := e.in.HTTP1Client().Do(req)
	apptest.Must(e.t, err, "verify")
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestForwardAuthContracts drives /.keyway/verify as nginx, Traefik/Caddy
// and Envoy do, with the same keys, paths and refusals.
func TestForwardAuthContracts(t *testing.T) {
	e := startVerify(t, "127.0.0.0/8")
	good, k := e.key("orders:read")
	other, _ := e.key("orders:write")
	bearer := "Bearer " + good
	type proxy struct {
		name string
		// ask describes method+uri the proxy's way; extra are more headers.
		ask func(method, uri string, extra ...string) (*http.Response, string)
		// refusal is the status the proxy gets for a refusal meaning want.
		refusal func(want int) int
	}
	nginx := proxy{"nginx", func(method, uri string, extra ...string) (*http.Response, string) {
		return e.ask("GET", "/.keyway/verify/nginx", append([]string{"X-Original-URI", uri, "X-Original-Method", method}, extra...)...)
	}, func(want int) int {
		if want == 401 {
			return 401
		}
		return 403
	}}
	traefik := proxy{"traefik/caddy", func(method, uri string, extra ...string) (*http.Response, string) {
		return e.ask("GET", "/.keyway/verify", append([]string{"X-Forwarded-Uri", uri, "X-Forwarded-Method", method,
			"X-Forwarded-Host", "shop.example", "X-Forwarded-Proto", "https"}, extra...)...)
	}, func(want int) int { return want }}
	envoy := proxy{"envoy", func(method, uri string, extra ...string) (*http.Response, string) {
		return e.ask(method, "/.keyway/verify/envoy"+uri, extra...)
	}, func(want int) int { return want }}

	for _, p := range []proxy{nginx, traefik, envoy} {
		t.Run(p.name, func(t *testing.T) {
			res, b := p.ask("GET", "/v1/orders/7?x=1", "Authorization", bearer)
			if res.StatusCode != 200 || b != "" {
				t.Fatalf("a good key: %d %s", res.StatusCode, b)
			}
			h := res.Header
			if h.Get("X-Keyway-Subject") != "service:shop" || h.Get("X-Keyway-Key-Id") != "key_"+k.ID || h.Get("X-Keyway-Scopes") != "orders:read" {
				t.Fatalf("identity: %v", h)
			}
			for _, name := range []string{"X-Keyway-Name", "X-Keyway-Session-Id", "X-Keyway-Client", "X-Keyway-Cookie"} {
				if v, ok := h[http.CanonicalHeaderKey(name)]; !ok || len(v) != 1 || v[0] != "" {
					t.Errorf("%s must be set, empty, so a client's copy is always overwritten: %q", name, v)
				}
			}
			if h.Get("X-Keyway-Assertion") == "" {
				t.Error("no assertion with forward_auth.audience set")
			}
			if v := h.Get("Strict-Transport-Security"); v != "" {
				t.Errorf("a forward-auth answer sets HSTS (%q): the proxy's host's policy is its own", v)
			}
			if h.Get("Cache-Control") != "no-store" || h.Get("X-Request-Id") == "" {
				t.Errorf("a forward-auth answer must not be cached and must carry its request ID: %v", h)
			}
			for _, tt := range []struct {
				name         string
				method, uri  string
				hdr          []string
				want         int
				keywayStatus string
			}{
				{"no key", "GET", "/v1/orders", nil, 401, ""},
				{"wrong key", "GET", "/v1/orders", []string{"Authorization", "Bearer kw_live_" + strings.Repeat("A", 46)}, 401, ""},
				{"missing scope", "GET", "/v1/orders", []string{"Authorization", "Bearer " + other}, 403, ""},
				{"no route", "GET", "/v2/x", []string{"Authorization", bearer}, 404, "404"},
				{"method not routed", "DELETE", "/v1/orders", []string{"Authorization", bearer}, 404, "404"},
				{"dot-dot out of the route", "GET", "/v1/orders/../../v2/x", []string{"Authorization", bearer}, 400, "400"},
				// The proxy passes the path on as sent: keyway answers only for a
				// path already in normal form, never for one it resolved.
				{"encoded dot-dot", "GET", "/v1/orders/%2e%2e/%2e%2e/v1/open", []string{"Authorization", bearer}, 400, "400"},
				{"fragment", "GET", "/v1/orders#/../../v1/open", nil, 400, "400"},
				{"encoded slash", "GET", "/v1/orders%2fx", []string{"Authorization", bearer}, 400, "400"},
				{"key in the query", "GET", "/v1/open?k=" + good, nil, 400, "400"},
				{"keyway's own space", "GET", "/.keyway/healthz", nil, 404, "404"},
				{"case", "GET", "/V1/orders", []string{"Authorization", bearer}, 404, "404"},
				{"double slash", "GET", "//v1//orders", []string{"Authorization", bearer}, 400, "400"},
				{"%68 is h", "GET", "/v1/orders/%68", []string{"Authorization", bearer}, 200, ""},
			} {
				if p.name == "envoy" && (tt.name == "dot-dot out of the route" || tt.name == "encoded slash" || tt.name == "fragment") {
					// Envoy normalises its own path (and an HTTP client
					// sends no fragment); keyway would see the same tricks
					// on its own path, refused above.
					continue
				}
				res, b := p.ask(tt.method, tt.uri, tt.hdr...)
				want := tt.want
				if want != 200 {
					want = p.refusal(tt.want)
				}
				if res.StatusCode != want {
					t.Errorf("%s: %d %s, want %d", tt.name, res.StatusCode, b, want)
				}
				if p.name == "nginx" && tt.keywayStatus != "" && res.Header.Get("X-Keyway-Status") != tt.keywayStatus {
					t.Errorf("%s: X-Keyway-Status %q, want %q", tt.name, res.Header.Get("X-Keyway-Status"), tt.keywayStatus)
				}
				if want == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
				}
			}
		})
	}

	t.Run("limits: 429 as each proxy can pass it on", func(t *testing.T) {
		limited, _ := e.key()
		for i := range 2 {
			if res, _ := traefik.ask("GET", "/v1/limited", "Authorization", "Bearer "+limited); res.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, res.StatusCode)
			}
		}
		res, _ := traefik.ask("GET", "/v1/limited", "Authorization", "Bearer "+limited)
		if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
			t.Fatalf("traefik: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
		}
		res, _ = nginx.ask("GET", "/v1/limited", "Authorization", "Bearer "+limited)
		if res.StatusCode != 403 || res.Header.Get("X-Keyway-Status") != "429" || res.Header.Get("Retry-After") == "" {
			t.Fatalf("nginx: %d, X-Keyway-Status %q, Retry-After %q", res.StatusCode, res.Header.Get("X-Keyway-Status"), res.Header.Get("Retry-After"))
		}
	})

	t.Run("revocation reaches verify", func(t *testing.T) {
		raw, rk := e.key("orders:read")
		if res, _ := nginx.ask("GET", "/v1/orders", "Authorization", "Bearer "+raw); res.StatusCode != 200 {
			t.Fatalf("before: %d", res.StatusCode)
		}
		apptest.Must(t, e.keys.Revoke(context.Background(), rk.ID, "test", "cli"), "revoke")
		deadline := time.Now().Add(3 * time.Second)
		for {
			res, _ := nginx.ask("GET", "/v1/orders", "Authorization", "Bearer "+raw)
			if res.StatusCode == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a revoked key still passes /verify after 3s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("sessions and CSRF", func(t *testing.T) {
		p := newPerson(t, e.in)
		p.register(map[string]string{"username": "olga", "display_name": "Olga"})
		cookie := "__Host-keyway_session=" + p.cookie().Value
		for _, px := range []proxy{nginx, traefik, envoy} {
			res, _ := px.ask("GET", "/v1/me", "Cookie", "theme=dark; "+cookie+"; lang=fr")
			if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("X-Keyway-Subject"), "user:usr_") ||
				res.Header.Get("X-Keyway-Name") != "Olga" || res.Header.Get("X-Keyway-Session-Id") == "" ||
				res.Header.Get("X-Keyway-Cookie") != "theme=dark; lang=fr" {
				t.Fatalf("%s: session GET: %d %v", px.name, res.StatusCode, res.Header)
			}
			if c, ok := res.Header["Cookie"]; (px.name == "nginx") == ok || (ok && c[0] != "theme=dark; lang=fr") {
				t.Fatalf("%s: Cookie in the answer: %q", px.name, c)
			}
			if res, _ := px.ask("POST", "/v1/me", "Cookie", cookie); res.StatusCode != px.refusal(403) {
				t.Fatalf("%s: a cookie POST without the CSRF evidence: %d", px.name, res.StatusCode)
			}
			if res, _ := px.ask("POST", "/v1/me", "Cookie", cookie, "X-Keyway-CSRF", "1", "Origin", p.origin); res.StatusCode != 200 {
				t.Fatalf("%s: a cookie POST with it: %d", px.name, res.StatusCode)
			}
			if res, _ := px.ask("GET", "/v1/me"); res.StatusCode != 401 {
				t.Fatalf("%s: no session: %d", px.name, res.StatusCode)
			}
		}
		p.want(204, "POST", "/.keyway/auth/logout", nil)
		if res, _ := nginx.ask("GET", "/v1/me", "Cookie", cookie); res.StatusCode != 401 {
			t.Fatalf("after logout: %d", res.StatusCode)
		}
	})

	t.Run("forwarded headers are believed from trusted proxies only", func(t *testing.T) {
		res, _ := nginx.ask("GET", "/v1/orders", "Authorization", bearer, "X-Forwarded-For", "203.0.113.9")
		if res.StatusCode != 200 {
			t.Fatalf("trusted: %d", res.StatusCode)
		}
		untrusted := startVerify(t, "10.0.0.0/8")
		res, b := untrusted.ask("GET", "/.keyway/verify/nginx", "X-Original-URI", "/v1/open", "X-Original-Method", "GET")
		if res.StatusCode != 403 || res.Header.Get("X-Keyway-Subject") != "" {
			t.Fatalf("an untrusted peer: %d %s", res.StatusCode, b)
		}
	})

	t.Run("each contract reads its own proxy's headers only", func(t *testing.T) {
		// nginx passes a client's X-Forwarded-Uri to the auth request, and
		// Caddy a client's X-Original-URI: neither may steer the decision.
		res, _ := nginx.ask("GET", "/v1/orders", "X-Forwarded-Uri", "/v1/open", "X-Forwarded-Method", "GET")
		if res.StatusCode != 401 {
			t.Fatalf("nginx contract with a client's X-Forwarded-Uri: %d", res.StatusCode)
		}
		// At the forward contract a client's X-Original-URI is a path
		// override the upstream might act on: refused outright.
		res, _ = traefik.ask("GET", "/v1/orders", "X-Original-URI", "/v1/open", "X-Original-Method", "GET")
		if res.StatusCode != 400 {
			t.Fatalf("forward contract with a client's X-Original-URI: %d", res.StatusCode)
		}
		for _, path := range []string{"/.keyway/verify/other", "/.keyway/verify/nginxx"} {
			res, _ := e.ask("GET", path, "X-Original-URI", "/v1/open", "X-Forwarded-Uri", "/v1/open")
			if res.StatusCode == 200 {
				t.Fatalf("%s answered 200", path)
			}
		}
	})

	t.Run("routes without an upstream are never proxied", func(t *testing.T) {
		wantProblem(t, get(t, e.in.Client(), e.in.URL("/v1/open")), 404, "urn:keyway:problem:not-found")
	})
}
