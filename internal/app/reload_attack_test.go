package app_test

// A review of config reloads (SIGHUP) as an attacker who sends requests
// while one happens. Each test asserts the secure behaviour; those of its
// findings failed before their fixes (profiles swapped apart from the
// gateway, tunnels outliving a reload, route limits starting afresh, a
// refused reload audited as applied, the demo upstream added by a
// reload).

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
)

// reviewInstance is a running keyway whose config file can be replaced and
// reloaded as SIGHUP would (the same listeners and data dir).
type reviewInstance struct {
	*apptest.Instance
	first *config.Config
}

func startReview(t *testing.T, yaml string) *reviewInstance {
	t.Helper()
	cfg := apptest.Config(t, yaml)
	return &reviewInstance{Instance: apptest.Start(t, cfg), first: cfg}
}

// next loads yaml ("{{data}}" is the running data dir) with the running
// listeners, as `keyway serve` reads its file again at SIGHUP.
func (in *reviewInstance) next(t *testing.T, yaml string) *config.Config {
	t.Helper()
	n := apptest.Config(t, strings.ReplaceAll(yaml, "{{data}}", in.first.DataDir))
	n.Listen, n.HTTPListen, n.AdminListen = in.first.Listen, in.first.HTTPListen, in.first.AdminListen
	return n
}

func (in *reviewInstance) reload(t *testing.T, yaml string) {
	t.Helper()
	apptest.Must(t, in.App.Reload(in.next(t, yaml)), "reload")
}

func (in *reviewInstance) key(t *testing.T, p apikey.CreateParams) string {
	t.Helper()
	keys, err := app.OpenKeys(context.Background(), in.first, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	raw, _, err := keys.Create(context.Background(), p, "test")
	apptest.Must(t, err, "create key")
	return raw
}

// namedUpstream answers every request with its name, after delay when the
// path ends in /slow.
func namedUpstream(t *testing.T, name string, delay time.Duration) string {
	return serveUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, name+" auth="+r.Header.Get("X-Keyway-Subject"))
	}))
}

// TestReloadTightenedRouteAppliesToOpenConnections: a route changed
// from public to api_key (with a scope) is enforced on the very next
// request, also on keep-alive HTTP/1.1 and HTTP/2 connections opened and
// used before the reload.
func TestReloadTightenedRouteAppliesToOpenConnections(t *testing.T) {
	up := namedUpstream(t, "A", 0)
	base := "data_dir: {{data}}\nupstreams: {up: {url: " + up + "}}\nroutes:\n"
	in := startReview(t, base+"  - {name: r, path: /r, upstream: up, policy: public}\n")
	raw := in.key(t, apikey.CreateParams{Name: "k", Owner: "service:k", Scopes: []string{"r:read"}})
	weak := in.key(t, apikey.CreateParams{Name: "w", Owner: "service:w", Scopes: []string{"other"}})
	h2, h1 := in.Client(), in.HTTP1Client()
	for _, c := range []*http.Client{h2, h1} {
		res := get(t, c, in.URL("/r/x"))
		if b := body(t, res); res.StatusCode != 200 || !strings.HasPrefix(b, "A") {
			t.Fatalf("before the reload: %d %s", res.StatusCode, b)
		}
	}
	in.reload(t, base+"  - {name: r, path: /r, upstream: up, policy: api_key, scopes: [r:read]}\n")
	for i, c := range []*http.Client{h2, h1} {
		res := get(t, c, in.URL("/r/x"))
		if wantProto := 2 - i; res.ProtoMajor != wantProto {
			t.Fatalf("client %d spoke HTTP/%d", i, res.ProtoMajor)
		}
		if b := body(t, res); res.StatusCode != 401 {
			t.Fatalf("no key after the reload on a reused HTTP/%d connection: %d %s", res.ProtoMajor, res.StatusCode, b)
		}
		res = get(t, c, in.URL("/r/x"), "Authorization", "Bearer "+weak)
		if b := body(t, res); res.StatusCode != 403 {
			t.Fatalf("a key without the new scope: %d %s", res.StatusCode, b)
		}
		res = get(t, c, in.URL("/r/x"), "Authorization", "Bearer "+raw)
		if b := body(t, res); res.StatusCode != 200 || !strings.HasPrefix(b, "A auth=service:k") {
			t.Fatalf("a key with the scope: %d %s", res.StatusCode, b)
		}
	}
}

// TestReloadInFlightRequestIsOneConfig: a request decided before a
// reload (public route, upstream A) finishes on A, whole; the reload
// (api_key, upstream B) neither cuts it nor mixes the two. Requests that
// arrive after the reload, on the same connection too, are decided and
// forwarded under the new config.
func TestReloadInFlightRequestIsOneConfig(t *testing.T) {
	a := namedUpstream(t, "A", 1500*time.Millisecond)
	b := namedUpstream(t, "B", 0)
	yaml := "data_dir: {{data}}\nupstreams: {a: {url: " + a + "}, b: {url: " + b + "}}\nroutes:\n"
	in := startReview(t, yaml+"  - {name: r, path: /r, upstream: a, policy: public}\n")
	raw := in.key(t, apikey.CreateParams{Name: "k", Owner: "service:k", Scopes: []string{"r"}})
	c := in.Client()
	type answer struct {
		status int
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		res, err := c.Get(in.URL("/r/slow"))
		if err != nil {
			done <- answer{0, err.Error()}
			return
		}
		defer func() { _ = res.Body.Close() }()
		bb, err := io.ReadAll(res.Body)
		if err != nil {
			done <- answer{res.StatusCode, "read: " + err.Error()}
			return
		}
		done <- answer{res.StatusCode, string(bb)}
	}()
	time.Sleep(300 * time.Millisecond) // decided, and waiting on A
	in.reload(t, yaml+"  - {name: r, path: /r, upstream: b, policy: api_key, scopes: [r]}\n")
	res := get(t, c, in.URL("/r/slow"))
	if bb := body(t, res); res.StatusCode != 401 {
		t.Fatalf("no key after the reload: %d %s", res.StatusCode, bb)
	}
	res = get(t, c, in.URL("/r/x"), "Authorization", "Bearer "+raw)
	if bb := body(t, res); res.StatusCode != 200 || bb != "B auth=service:k" {
		t.Fatalf("with a key after the reload: %d %s", res.StatusCode, bb)
	}
	got := <-done
	if got.status != 200 || got.body != "A auth=" {
		t.Fatalf("the request in flight during the reload: %d %q, want 200 from A with no identity", got.status, got.body)
	}
}

// TestReloadTunnelClosedByRevokingReload: a WebSocket tunnel opened
// under the old config must not outlive a reload that no longer lets its
// opener through (route made api_key, a scope added, WebSockets turned
// off): it should close as a revoked credential's tunnel does (about 1s).
// It is also kept past the moment the old gateway is closed
// (server.write_timeout + 1s).
func TestReloadTunnelClosedByRevokingReload(t *testing.T) {
	ws := &wsUpstream{}
	up := serveUpstream(t, ws)
	base := "data_dir: {{data}}\nserver: {write_timeout: 2s}\nupstreams: {ws: {url: " + up + "}}\nroutes:\n"
	const opts = "websocket_max_lifetime: 1h, timeout: 1s"
	cases := []struct {
		name, before, after string
		scopes              []string
	}{
		{"public route made api_key",
			"  - {name: live, path: /live, upstream: ws, policy: public, websocket: true, " + opts + "}\n",
			"  - {name: live, path: /live, upstream: ws, policy: api_key, websocket: true, scopes: [live:read], " + opts + "}\n",
			nil},
		{"scope added to the route",
			"  - {name: live, path: /live, upstream: ws, policy: api_key, websocket: true, scopes: [live:read], " + opts + "}\n",
			"  - {name: live, path: /live, upstream: ws, policy: api_key, websocket: true, scopes: [live:read, live:admin], " + opts + "}\n",
			[]string{"live:read"}},
		{"websocket turned off",
			"  - {name: live, path: /live, upstream: ws, policy: public, websocket: true, " + opts + "}\n",
			"  - {name: live, path: /live, upstream: ws, policy: public, timeout: 1s}\n",
			nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := startReview(t, base+tc.before)
			hdr := wsHeaders
			if tc.scopes != nil {
				raw := in.key(t, apikey.CreateParams{Name: "k", Owner: "service:k", Scopes: tc.scopes})
				hdr = append([]string{"Authorization", "Bearer " + raw}, wsHeaders...)
			}
			tu, res := openTunnel(t, in.Instance, "/live/x", hdr...)
			_ = res.Body.Close()
			if res.StatusCode != 101 {
				t.Fatalf("handshake: %d", res.StatusCode)
			}
			tu.echo(t, "before")
			in.reload(t, base+tc.after)
			// A new handshake is refused at once.
			_, res = openTunnel(t, in.Instance, "/live/x", hdr...)
			_ = res.Body.Close()
			if res.StatusCode == 101 {
				t.Fatalf("a new handshake after the reload: %d", res.StatusCode)
			}
			// The open tunnel: still carrying bytes 4s later (past the old
			// gateway's Close) is the finding.
			time.Sleep(4 * time.Second)
			if _, err := io.WriteString(tu.conn, "after"); err == nil {
				buf := make([]byte, 5)
				_ = tu.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				if n, err := io.ReadFull(tu.br, buf); err == nil && string(buf[:n]) == "after" {
					t.Fatalf("the tunnel opened under the old config still carries bytes 4s after a reload that refuses its opener")
				}
			}
		})
	}
}

// TestReloadProfileSwapNeverServesUnshaped: while a reload gives a
// client profile a new route (with a field rule), a request must be served
// either under the old profile (403) or under the new one (trimmed), never
// let through by the new profile and forwarded by the old gateway, which
// has no field rule for the route (the whole answer).
func TestReloadProfileSwapNeverServesUnshaped(t *testing.T) {
	up := bffUpstream(t)
	base := "data_dir: {{data}}\nupstreams: {up: {url: " + up + "}}\nroutes:\n" +
		"  - {name: feed, path: /feed, upstream: up, policy: api_key}\n" +
		"  - {name: other, path: /other, upstream: up, policy: api_key}\n"
	older := base + "clients:\n  partner:\n    credential: api_key\n    routes: {feed: [GET]}\n    fields: {feed: {allow: [id]}}\n"
	newer := base + "clients:\n  partner:\n    credential: api_key\n    routes: {feed: [GET], other: [GET]}\n" +
		"    fields: {feed: {allow: [id]}, other: {allow: [id]}}\n"
	in := startReview(t, older)
	raw := in.key(t, apikey.CreateParams{Name: "p", Owner: "service:p", Client: "partner"})
	cfgs := []*config.Config{in.next(t, newer), in.next(t, older)}

	var stop atomic.Bool
	var leaked, shaped, refused, other atomic.Int64
	var leak atomic.Value
	var wg sync.WaitGroup
	for range 6 {
		c := in.Client()
		wg.Go(func() {
			for !stop.Load() {
				req, _ := http.NewRequest(http.MethodGet, in.URL("/other/x"), nil)
				req.Header.Set("Authorization", "Bearer "+raw)
				res, err := c.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				b, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				switch {
				case res.StatusCode == 200 && strings.Contains(string(b), "secret"):
					leaked.Add(1)
					leak.Store(string(b))
				case res.StatusCode == 200 && string(b) == `{"id":7}`:
					shaped.Add(1)
				case res.StatusCode == 403:
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	reloads := 0
	for time.Now().Before(deadline) && leaked.Load() == 0 {
		if err := in.App.Reload(cfgs[reloads%2]); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("reload %d: %v", reloads, err)
		}
		reloads++
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d reloads: %d shaped, %d refused, %d unshaped, %d other", reloads, shaped.Load(), refused.Load(), leaked.Load(), other.Load())
	if leaked.Load() > 0 {
		t.Fatalf("a request between the two swaps of a reload got the whole answer: %v", leak.Load())
	}
	if other.Load() > 0 {
		t.Errorf("%d answers were neither shaped nor refused", other.Load())
	}
}

// TestReloadRouteLimitSurvivesReload: a route's per-key limit spent
// before a reload stays spent after one that does not change the route
// (here: a route elsewhere added). The key's own rate and the key-guessing
// budget live in the core and are not touched by a reload at all.
func TestReloadRouteLimitSurvivesReload(t *testing.T) {
	up := namedUpstream(t, "A", 0)
	base := "data_dir: {{data}}\nupstreams: {up: {url: " + up + "}}\nroutes:\n" +
		"  - {name: r, path: /r, upstream: up, policy: api_key, rate_limit: {rate: 3/hour, per: key}}\n" +
		"  - {name: s, path: /s, upstream: up, policy: api_key}\n"
	in := startReview(t, base)
	raw := in.key(t, apikey.CreateParams{Name: "k", Owner: "service:k"})
	own := in.key(t, apikey.CreateParams{Name: "o", Owner: "service:o", Rate: apikey.Rate{Count: 3, Period: time.Hour, Burst: 3}})
	c := in.Client()
	call := func(path, key string) int {
		t.Helper()
		res := get(t, c, in.URL(path), "Authorization", "Bearer "+key)
		_ = body(t, res)
		return res.StatusCode
	}
	for i := range 3 {
		if s := call("/r/x", raw); s != 200 {
			t.Fatalf("route limit, call %d: %d", i, s)
		}
		if s := call("/s/x", own); s != 200 {
			t.Fatalf("key rate, call %d: %d", i, s)
		}
	}
	if s := call("/r/x", raw); s != 429 {
		t.Fatalf("past the route limit: %d", s)
	}
	if s := call("/s/x", own); s != 429 {
		t.Fatalf("past the key's own rate: %d", s)
	}
	in.reload(t, base+"  - {name: t, path: /t, upstream: up, policy: public, rate_limit: {rate: 10/s}}\n")
	if s := call("/s/x", own); s != 429 {
		t.Errorf("the key's own rate after a reload: %d, want 429", s)
	}
	if s := call("/r/x", raw); s != 429 {
		t.Errorf("the spent route limit after a reload that did not change the route: %d, want 429 (the limit starts afresh)", s)
	}
}

// TestReloadRefusedReloadAppliesNothing: a reload that also changes
// what needs a restart (listeners, TLS, trusted proxies, forward auth,
// server) or that cannot be built (an upstream's CA file missing) is
// refused, names the setting, and leaves the routes and the client
// profiles as they were: nothing half-applied.
func TestReloadRefusedReloadAppliesNothing(t *testing.T) {
	up := bffUpstream(t)
	start := "data_dir: {{data}}\nupstreams: {up: {url: " + up + "}}\nroutes:\n" +
		"  - {name: pub, path: /pub, upstream: up, policy: public}\n" +
		"  - {name: feed, path: /feed, upstream: up, policy: api_key}\n" +
		"clients:\n  partner: {credential: api_key, routes: {feed: [GET]}, fields: {feed: {allow: [id]}}}\n"
	// Everything reloadable tightened: pub needs a key, partner loses its
	// field rule and gains pub.
	tightened := "upstreams: {up: {url: " + up + "}}\nroutes:\n" +
		"  - {name: pub, path: /pub, upstream: up, policy: api_key}\n" +
		"  - {name: feed, path: /feed, upstream: up, policy: api_key}\n" +
		"clients:\n  partner: {credential: api_key, routes: {feed: [GET], pub: [GET]}}\n"
	in := startReview(t, start)
	raw := in.key(t, apikey.CreateParams{Name: "p", Owner: "service:p", Client: "partner"})
	c := in.Client()
	unchanged := func(t *testing.T) {
		t.Helper()
		res := get(t, c, in.URL("/pub/x"))
		if b := body(t, res); res.StatusCode != 200 {
			t.Fatalf("the public route after a refused reload: %d %s", res.StatusCode, b)
		}
		res = get(t, c, in.URL("/feed/x"), "Authorization", "Bearer "+raw)
		if b := body(t, res); res.StatusCode != 200 || b != `{"id":7}` {
			t.Fatalf("the partner's trimmed route after a refused reload: %d %s", res.StatusCode, b)
		}
	}
	unchanged(t)
	for _, tc := range []struct{ name, extra, want string }{
		{"listen", "listen: 127.0.0.1:1\n", "listen"},
		{"admin listen", "admin_listen: 0.0.0.0:1\n", "admin_listen"},
		{"tls hsts", "tls: {hsts_max_age: 9000h}\n", "tls"},
		{"tls min version", "tls: {min_version: \"1.3\"}\n", "tls"},
		{"trusted proxies", "trusted_proxies: [0.0.0.0/0]\n", "trusted_proxies"},
		{"forward auth", "forward_auth: {enabled: true, trusted_proxies: [0.0.0.0/0]}\n", "forward_auth"},
		{"server hosts", "server: {hosts: [evil.example, localhost]}\n", "server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var next *config.Config
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("loading the file panicked: %v", r)
					}
				}()
				next = apptest.Config(t, strings.ReplaceAll("data_dir: {{data}}\n"+tc.extra+tightened, "{{data}}", in.first.DataDir))
			}()
			// Listeners come from the file here, not from the test's.
			if tc.name != "listen" && tc.name != "admin listen" {
				next.Listen, next.HTTPListen, next.AdminListen = in.first.Listen, in.first.HTTPListen, in.first.AdminListen
			} else if tc.name == "listen" {
				next.HTTPListen, next.AdminListen = in.first.HTTPListen, in.first.AdminListen
			} else {
				next.Listen, next.HTTPListen = in.first.Listen, in.first.HTTPListen
			}
			err := in.App.Reload(next)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "restart") {
				t.Fatalf("a reload changing %s: %v", tc.name, err)
			}
			unchanged(t)
		})
	}
	t.Run("an upstream that cannot be built", func(t *testing.T) {
		next := in.next(t, "data_dir: {{data}}\n"+tightened)
		u := next.Upstreams["up"]
		u.CAFile = "/nonexistent/ca.pem"
		next.Upstreams["up"] = u
		if err := in.App.Reload(next); err == nil {
			t.Fatal("a reload with a missing CA file was applied")
		}
		unchanged(t)
	})
	t.Run("two session profiles", func(t *testing.T) {
		next := in.next(t, "data_dir: {{data}}\n"+tightened)
		next.Clients["a"] = config.Client{Credential: config.PolicySession, Routes: map[string][]string{"feed": {}}}
		next.Clients["b"] = config.Client{Credential: config.PolicySession, Routes: map[string][]string{"feed": {}}}
		if err := in.App.Reload(next); err == nil {
			t.Fatal("a reload with two session profiles was applied")
		}
		unchanged(t)
	})
	// And the same file without the refused change does apply.
	in.reload(t, "data_dir: {{data}}\n"+tightened)
	res := get(t, c, in.URL("/pub/x"))
	if b := body(t, res); res.StatusCode != 401 {
		t.Fatalf("the tightened public route after a good reload: %d %s", res.StatusCode, b)
	}
}

// TestReloadRefusedReloadIsNotAuditedAsApplied: a reload that
// Reload refuses after writing its "reloaded" event leaves a trail that
// says a config was applied when it was not. (Two session profiles are
// refused by config validation before Reload, so only a caller of Reload
// that skips validation reaches this.)
func TestReloadRefusedReloadIsNotAuditedAsApplied(t *testing.T) {
	up := bffUpstream(t)
	yaml := "data_dir: {{data}}\nupstreams: {up: {url: " + up + "}}\nroutes:\n" +
		"  - {name: feed, path: /feed, upstream: up, policy: session}\n"
	in := startReview(t, yaml)
	next := in.next(t, yaml)
	next.Clients = map[string]config.Client{
		"a": {Credential: config.PolicySession, Routes: map[string][]string{"feed": {}}, MaxShapedBody: config.ByteSize(1 << 20)},
		"b": {Credential: config.PolicySession, Routes: map[string][]string{"feed": {}}, MaxShapedBody: config.ByteSize(1 << 20)},
	}
	if err := in.App.Reload(next); err == nil {
		t.Fatal("a reload with two session profiles was applied")
	}
	recs := recentEvents(t, in.first, 1)
	if recs[0].Event.Type == audit.ConfigReloaded {
		t.Fatalf("the trail's newest event says the refused reload was applied: %+v", recs[0].Event)
	}
}

// TestReloadDemoUpstreamAddedByReload: in demo mode, a reload that
// adds the built-in demo upstream ("demo:") is refused, and changes
// nothing; it used to bind a listener after Run had started serving, which
// nothing served (and a.servers was appended to without a lock).
func TestReloadDemoUpstreamAddedByReload(t *testing.T) {
	up := namedUpstream(t, "A", 0)
	base := "data_dir: {{data}}\ndemo: true\nserver: {write_timeout: 5s}\nupstreams:\n  a: {url: " + up + "}\n"
	in := startReview(t, base+"routes:\n  - {name: a, path: /a, upstream: a, policy: public, timeout: 2s}\n")
	err := in.App.Reload(in.next(t, base+"  weather: {url: \"demo:\"}\nroutes:\n"+
		"  - {name: a, path: /a, upstream: a, policy: public, timeout: 2s}\n"+
		"  - {name: forecast, path: /v1/forecast, upstream: weather, policy: public, timeout: 2s}\n"))
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a reload adding the demo upstream: %v, want a refusal that says to restart", err)
	}
	// Nothing of it applies: the old routes serve, the new one is not there.
	res := get(t, in.Client(), in.URL("/v1/forecast?city=Paris"))
	if b := body(t, res); res.StatusCode != 404 {
		t.Fatalf("the refused reload's route: %d %s", res.StatusCode, b)
	}
	res = get(t, in.Client(), in.URL("/a/x"))
	if b := body(t, res); res.StatusCode != 200 {
		t.Fatalf("the old route after a refused reload: %d %s", res.StatusCode, b)
	}
}

// TestReloadKeepsAnAllowedTunnel: a tunnel the reloaded config would open
// too stays open past the old gateway's end, and its credential is still
// rechecked, now under the new config's route: revoking the key closes it.
func TestReloadKeepsAnAllowedTunnel(t *testing.T) {
	ws := &wsUpstream{}
	up := serveUpstream(t, ws)
	base := "data_dir: {{data}}\nserver: {write_timeout: 2s}\nupstreams: {ws: {url: " + up + "}}\nroutes:\n" +
		"  - {name: live, path: /live, upstream: ws, policy: api_key, websocket: true, scopes: [live:read], websocket_max_lifetime: 1h, timeout: 1s}\n"
	in := startReview(t, base)
	keys, err := app.OpenKeys(context.Background(), in.first, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	raw, k, err := keys.Create(context.Background(), apikey.CreateParams{Name: "k", Owner: "service:k", Scopes: []string{"live:read"}}, "test")
	apptest.Must(t, err, "create key")
	tu, res := openTunnel(t, in.Instance, "/live/x", append([]string{"Authorization", "Bearer " + raw}, wsHeaders...)...)
	_ = res.Body.Close()
	if res.StatusCode != 101 {
		t.Fatalf("handshake: %d", res.StatusCode)
	}
	tu.echo(t, "before")
	in.reload(t, base+"  - {name: other, path: /other, upstream: ws, policy: public, timeout: 1s}\n")
	time.Sleep(3500 * time.Millisecond) // past the old gateway's Close (write_timeout + 1s)
	tu.echo(t, "after")
	apptest.Must(t, keys.Revoke(context.Background(), k.ID, "test", "test"), "revoke")
	d := tu.waitClosed(t, 5*time.Second)
	t.Logf("tunnel closed %v after the revocation", d)
}

// TestReloadShortensATunnelsLifetime: a reload that lowers a route's
// websocket_max_lifetime ends its open tunnels by the new bound, counted
// from when they opened (a longer one never extends them).
func TestReloadShortensATunnelsLifetime(t *testing.T) {
	ws := &wsUpstream{}
	up := serveUpstream(t, ws)
	base := "data_dir: {{data}}\nserver: {write_timeout: 2s}\nupstreams: {ws: {url: " + up + "}}\nroutes:\n"
	route := "  - {name: live, path: /live, upstream: ws, policy: public, websocket: true, timeout: 1s, websocket_max_lifetime: %s}\n"
	in := startReview(t, base+strings.Replace(route, "%s", "1h", 1))
	tu, res := openTunnel(t, in.Instance, "/live/x", wsHeaders...)
	_ = res.Body.Close()
	if res.StatusCode != 101 {
		t.Fatalf("handshake: %d", res.StatusCode)
	}
	opened := time.Now()
	tu.echo(t, "before")
	in.reload(t, base+strings.Replace(route, "%s", "3s", 1))
	tu.echo(t, "after")
	tu.waitClosed(t, 6*time.Second)
	if d := time.Since(opened); d < 2500*time.Millisecond || d > 5*time.Second {
		t.Fatalf("the tunnel ended %v after it opened, want about 3s (the reloaded lifetime)", d)
	}
}
