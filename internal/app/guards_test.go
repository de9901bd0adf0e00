package app_test

// Security rules that a mutation probe could once break with every test
// still green (issue 15). Each test here fails when its rule is broken.

import (
	"context"
	"encoding/json"
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
)

// A route that needs two scopes refuses a key that holds one of them.
func TestGuardAllScopesNotAny(t *testing.T) {
	echo := apptest.Echo(t, time.Second)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {echo: {url: %s}}
routes:
  - {name: both, path: /both, upstream: echo, policy: api_key, scopes: [orders:read, orders:write]}
  - {name: perkey, path: /perkey, upstream: echo, policy: api_key, rate_limit: {rate: 2/min, per: key}}
`, echo))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	mk := func(scopes ...string) string {
		raw, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "k", Owner: "service:s", Scopes: scopes}, "test")
		apptest.Must(t, err, "create")
		return raw
	}
	call := func(path, key string) *http.Response {
		return get(t, in.Client(), in.URL(path), "Authorization", "Bearer "+key)
	}
	for _, scopes := range [][]string{{"orders:read"}, {"orders:write"}, {"orders:read", "other"}} {
		wantProblem(t, call("/both/x", mk(scopes...)), 403, "urn:keyway:problem:forbidden")
	}
	res := call("/both/x", mk("orders:write", "orders:read", "more"))
	if e := apptest.DecodeEcho(t, res); res.StatusCode != 200 || e.Header.Get("X-Keyway-Scopes") != "more orders:read orders:write" {
		t.Fatalf("a key with both scopes: %d %q", res.StatusCode, e.Header.Get("X-Keyway-Scopes"))
	}

	t.Run("per-key route limit", func(t *testing.T) {
		a, b := mk(), mk()
		for i := range 2 {
			if res := call("/perkey/x", a); res.StatusCode != 200 {
				t.Fatalf("key a, request %d: %d", i, res.StatusCode)
			} else {
				_ = body(t, res)
			}
		}
		res := call("/perkey/x", a)
		if res.Header.Get("RateLimit-Policy") != `"route";q=2;w=60` {
			t.Errorf("RateLimit-Policy = %q, want the route's", res.Header.Get("RateLimit-Policy"))
		}
		wantProblem(t, res, 429, "urn:keyway:problem:rate-limited")
		// The same client with another key is another budget.
		if res := call("/perkey/x", b); res.StatusCode != 200 {
			t.Fatalf("key b after a's limit: %d", res.StatusCode)
		} else {
			_ = body(t, res)
		}
	})
}

// sessionCookie returns the one __Host-keyway_session cookie a response
// set, failing if there is none or more than one.
func sessionCookie(t *testing.T, res *http.Response, when string) *http.Cookie {
	t.Helper()
	var found *http.Cookie
	for _, line := range res.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != "__Host-keyway_session" {
			continue
		}
		if found != nil {
			t.Fatalf("%s: two session cookies set", when)
		}
		found = c
		if strings.Contains(strings.ToLower(line), "domain=") {
			t.Errorf("%s: session cookie has a Domain: %q", when, line)
		}
	}
	if found == nil {
		t.Fatalf("%s: no session cookie in %q", when, res.Header.Values("Set-Cookie"))
	}
	if !found.Secure || !found.HttpOnly || found.SameSite != http.SameSiteLaxMode || found.Path != "/" || found.Domain != "" ||
		!strings.HasPrefix(found.Value, "kws_") || found.MaxAge <= 0 {
		t.Errorf("%s: session cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain, a kws_ token, Max-Age", when, found)
	}
	return found
}

// The session cookie carries its attributes, itself, wherever it is set:
// sign-up, sign-in, step-up and recovery.
func TestGuardSessionCookieAttributes(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	p := newPerson(t, in)
	opts := p.want(200, "POST", "/.keyway/auth/passkey/register/begin", map[string]string{"username": "cora"})
	res, out := p.finishRegistration(opts)
	if res.StatusCode != 201 {
		t.Fatalf("sign-up: %d %s", res.StatusCode, out)
	}
	sessionCookie(t, res, "sign-up")
	var signup struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	apptest.Must(t, json.Unmarshal(out, &signup), "decode")
	sessionCookie(t, loginRaw(t, p), "sign-in")
	res, out = p.assertWith(0, "/.keyway/auth/stepup/begin", "/.keyway/auth/stepup/finish", map[string]string{})
	if res.StatusCode != 200 {
		t.Fatalf("step-up: %d %s", res.StatusCode, out)
	}
	sessionCookie(t, res, "step-up")
	stranger := newPerson(t, in)
	res, out = stranger.do("POST", "/.keyway/auth/recovery", map[string]string{"username": "cora", "code": signup.RecoveryCodes[0]})
	if res.StatusCode != 200 {
		t.Fatalf("recovery: %d %s", res.StatusCode, out)
	}
	sessionCookie(t, res, "recovery")
	// Logout clears it with the same attributes (a browser drops a
	// __Host- cookie only when they match).
	res, _ = p.do("POST", "/.keyway/auth/logout", nil)
	if c := sessionCookie2(res); c == nil || c.MaxAge >= 0 || !c.Secure || c.Path != "/" {
		t.Errorf("logout's clearing cookie: %+v", c)
	}
}

func sessionCookie2(res *http.Response) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == "__Host-keyway_session" {
			return c
		}
	}
	return nil
}

// Logout, "revoke this session" and "revoke all others" end sessions on the
// server: the old token, replayed, is refused.
func TestGuardRevokedSessionsStayDead(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	p := newPerson(t, in)
	p.register(map[string]string{"username": "lena"})
	replay := func(token string) int {
		t.Helper()
		codes := map[int]bool{}
		for _, path := range []string{"/.keyway/auth/session", "/v1/me"} {
			res := get(t, in.Client(), in.URL(path), "Cookie", "__Host-keyway_session="+token)
			_ = body(t, res)
			codes[res.StatusCode] = true
		}
		if len(codes) != 1 {
			t.Fatalf("a replayed token got different answers: %v", codes)
		}
		for c := range codes {
			return c
		}
		return 0
	}
	// Three sessions of one person: a, b, c.
	a := p.cookie().Value
	loginRaw(t, p)
	b := p.cookie().Value
	loginRaw(t, p)
	c := p.cookie().Value
	if a == b || b == c {
		t.Fatal("sign-ins did not make new tokens")
	}
	// A sign-in ends the older session of the same browser (no fixation),
	// so a and b are already gone; only c lives.
	for name, tok := range map[string]string{"a": a, "b": b} {
		if s := replay(tok); s != 401 {
			t.Fatalf("session %s, replaced by a newer sign-in in the same browser: %d", name, s)
		}
	}
	if s := replay(c); s != 200 {
		t.Fatalf("live session: %d", s)
	}

	// Logout.
	p.want(204, "POST", "/.keyway/auth/logout", nil)
	if s := replay(c); s != 401 {
		t.Fatalf("token replayed after logout: %d, want 401", s)
	}

	// Revoke one session by ID from another device.
	phone, laptop := newPerson(t, in), p
	phone.creds, phone.auth = laptop.creds, laptop.auth
	loginRaw(t, laptop)
	loginRaw(t, phone)
	var list struct {
		Sessions []struct {
			ID      string
			Current bool
		}
	}
	apptest.Must(t, json.Unmarshal(phone.want(200, "GET", "/.keyway/auth/sessions", nil), &list), "list")
	laptopTok := laptop.cookie().Value
	for _, s := range list.Sessions {
		if !s.Current {
			phone.want(204, "DELETE", "/.keyway/auth/sessions/"+s.ID, nil)
		}
	}
	if s := replay(laptopTok); s != 401 {
		t.Fatalf("token replayed after its session was revoked: %d, want 401", s)
	}

	// Revoke all others.
	loginRaw(t, laptop)
	laptopTok = laptop.cookie().Value
	out := phone.want(200, "POST", "/.keyway/auth/sessions/revoke-others", nil)
	if !strings.Contains(string(out), `"revoked":1`) {
		t.Fatalf("revoke-others: %s", out)
	}
	if s := replay(laptopTok); s != 401 {
		t.Fatalf("token replayed after revoke-others: %d, want 401", s)
	}
	if s := replay(phone.cookie().Value); s != 200 {
		t.Fatalf("the session that revoked the others: %d, want 200", s)
	}
}

// No presented key, valid or not, reaches any log line: on an api_key
// route, the leak endpoint and the admin API.
func TestGuardPresentedKeysNeverLogged(t *testing.T) {
	e := startKeys(t)
	ctx := context.Background()
	good, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	revoked, rk := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	apptest.Must(t, e.cli.Revoke(ctx, rk.ID, "test", "cli"), "revoke")
	expired, xk := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	past := time.Now().Add(-time.Second)
	_, err := e.cli.Update(ctx, xk.ID, apikey.UpdateParams{ExpiresAt: &past}, "cli")
	apptest.Must(t, err, "expire")
	unknown, _ := apikey.Generate(nil, apikey.EnvLive)
	wrongSecret := apikey.WithChecksum(good[:8+apikey.IDLen] + unknown.Raw[8+apikey.IDLen:len(unknown.Raw)-apikey.CheckLen])
	badChecksum := good[:len(good)-1] + "Z"
	if badChecksum == good {
		badChecksum = good[:len(good)-1] + "Y"
	}
	presented := map[string]string{
		"valid": good, "malformed": "kw_live_" + strings.Repeat("Q", 30), "bad checksum": badChecksum,
		"unknown": unknown.Raw, "wrong secret": wrongSecret, "revoked": revoked, "expired": expired,
	}
	time.Sleep(1100 * time.Millisecond) // the server's cache learns of the revocation and expiry
	admin := &http.Client{Timeout: 10 * time.Second}
	for name, key := range presented {
		_ = body(t, e.call(t, "/api/orders", key))
		res := get(t, admin, "http://"+e.in.App.Addr("admin")+"/v1/keys", "Authorization", "Bearer "+key)
		_ = body(t, res)
		if res.StatusCode == 200 {
			t.Fatalf("%s key opened the admin API", name)
		}
	}
	var report []map[string]string
	for name, key := range presented {
		if name != "valid" {
			report = append(report, map[string]string{"token": key, "type": "keyway_api_key", "url": "https://example.test/leak", "source": "content"})
		}
	}
	b, _ := json.Marshal(report)
	res, err := e.c.Post(e.in.URL("/.keyway/keys/report-leak"), "application/json", strings.NewReader(string(b)))
	apptest.Must(t, err, "leak report")
	if out := body(t, res); res.StatusCode != 200 {
		t.Fatalf("leak report: %d %s", res.StatusCode, out)
	}
	e.in.Stop(t)
	logs := e.in.Logs()
	if !strings.Contains(logs, `"path":"/api/orders"`) {
		t.Fatalf("no access log lines for the key requests:\n%.2000s", logs)
	}
	for name, key := range presented {
		// The whole key, and its secret part alone.
		for _, needle := range []string{key, key[8+apikey.IDLen:]} {
			if strings.Contains(logs, needle) {
				t.Errorf("the %s key reached the log", name)
			}
		}
	}
}
