package app_test

// The attacker's suite: each test is a way past keyway's promises that a
// review found, reproduced through the real app (TLS on loopback, a real
// SQLite file, upstreams that dump what they receive). Later findings join
// this file.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/store"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// forgedHeaders are identity, forwarding and override headers in the
// spellings a CGI-style upstream reads as keyway's own.
var forgedHeaders = []string{
	"X_Keyway_Subject", "user:usr_admin",
	"X-Keyway_Scopes", "keyway:admin",
	"x_keyway_key_id", "key_forged",
	"X_Keyway_Roles", "keyway:admin",
	"X-Keyway-Roles", "keyway:admin",
	"X_Forwarded_For", "6.6.6.6",
	"X-Forwarded_Host", "evil.example",
	"X-Forwarded-Port", "1",
	"X-Forwarded-Prefix", "/evil",
	"X-Forwarded-Server", "evil.example",
	"X_Request_Id", "forged-id",
	"X-Real-IP", "6.6.6.6",
	"X_Real_Ip", "6.6.6.6",
	"X-HTTP-Method-Override", "DELETE",
	"X-Http-Method", "DELETE",
	"X-Method-Override", "DELETE",
	"X-Original-URL", "/admin",
	"X-Original-Method", "DELETE",
	"X-Rewrite-URL", "/admin",
	"X_Custom_Thing", "forged-underscore",
	"X_Api_Key", "forged-key-header",
	"Http2-Settings", "AAMAAABkAARAAAAAAAIAAAAA",
}

// wantNoForgery fails if the upstream received any forged header or value.
func wantNoForgery(t *testing.T, e apptest.Echoed, allowed ...string) {
	t.Helper()
	for k, vs := range e.Header {
		lk := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
		passed := false
		for _, a := range allowed {
			if k == a {
				passed = true
			}
		}
		if passed {
			continue
		}
		if strings.Contains(k, "_") || strings.HasPrefix(lk, "x-keyway-") && lk != "x-keyway-subject" && lk != "x-keyway-key-id" && lk != "x-keyway-scopes" {
			t.Errorf("upstream got %s: %q", k, vs)
		}
		for _, bad := range []string{"x-http-method-override", "x-http-method", "x-method-override", "x-original-url",
			"x-original-method", "x-rewrite-url", "x-forwarded-port", "x-forwarded-prefix", "x-forwarded-server", "http2-settings"} {
			if lk == bad {
				t.Errorf("upstream got %s: %q", k, vs)
			}
		}
		for _, v := range vs {
			for _, bad := range []string{"usr_admin", "keyway:admin", "key_forged", "6.6.6.6", "evil", "forged"} {
				if strings.Contains(v, bad) {
					t.Errorf("upstream got forged %s: %q", k, v)
				}
			}
		}
	}
}

// Finding 1 (high): identity headers forged with underscores reached the
// upstream, which a WSGI, Rack or PHP app reads as keyway's.
func TestAttackerUnderscoreAndOverrideHeaders(t *testing.T) {
	echo := apptest.Echo(t, time.Second)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {echo: {url: %s}}
routes:
  - {name: pub, path: /pub, upstream: echo, policy: public, rate_limit: {rate: 100/s}}
  - {name: keyed, path: /keyed, upstream: echo, policy: api_key, scopes: [orders:read]}
  - {name: legacy, path: /legacy, upstream: echo, policy: public, rate_limit: {rate: 100/s},
     pass_headers: [X-HTTP-Method-Override, X_Legacy_Id]}
`, echo))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	raw, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "k", Owner: "service:orders", Scopes: []string{"orders:read"}}, "test")
	apptest.Must(t, err, "create key")

	for name, c := range map[string]*http.Client{"HTTP/1.1": in.HTTP1Client(), "HTTP/2": in.Client()} {
		t.Run(name, func(t *testing.T) {
			res := get(t, c, in.URL("/pub/x"), forgedHeaders...)
			e := apptest.DecodeEcho(t, res)
			wantNoForgery(t, e)
			if e.Header.Get("X-Keyway-Subject") != "" {
				t.Errorf("a public route got a subject: %q", e.Header.Get("X-Keyway-Subject"))
			}
			if got := e.Header.Get("X-Real-Ip"); got != "127.0.0.1" {
				t.Errorf("X-Real-Ip = %q, want the real client", got)
			}

			res = get(t, c, in.URL("/keyed/x"), append([]string{"Authorization", "Bearer " + raw}, forgedHeaders...)...)
			e = apptest.DecodeEcho(t, res)
			wantNoForgery(t, e)
			if got := e.Header.Get("X-Keyway-Scopes"); got != "orders:read" {
				t.Errorf("scopes = %q: a caller added scopes", got)
			}
			if got := e.Header.Get("X-Keyway-Subject"); got != "service:orders" {
				t.Errorf("subject = %q", got)
			}

			// A route may pass named legacy and override headers, never identity ones.
			res = get(t, c, in.URL("/legacy/x"), append([]string{"X_Legacy_Id", "7"}, forgedHeaders...)...)
			e = apptest.DecodeEcho(t, res)
			if e.Header.Get("X_legacy_id") != "7" && e.Header.Get("X_Legacy_Id") != "7" {
				t.Errorf("the route's pass_headers did not pass X_Legacy_Id: %v", e.Header)
			}
			if e.Header.Get("X-Http-Method-Override") != "DELETE" {
				t.Errorf("the route's pass_headers did not pass X-HTTP-Method-Override")
			}
			wantNoForgery(t, e, "X_legacy_id", "X_Legacy_Id", "X-Http-Method-Override")
		})
	}
}

// Finding 5 (low): an upstream sets keyway's own cookies, or its transport
// policy, on keyway's origin.
func TestAttackerUpstreamPlantsKeywayCookies(t *testing.T) {
	up := serveUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "__Host-keyway_session=kws_planted; Path=/; Secure; HttpOnly")
		h.Add("Set-Cookie", "__host-KEYWAY_session=kws_planted2; Path=/; Secure")
		h.Add("Set-Cookie", "__Secure-keyway_ceremony=x; Secure")
		h.Add("Set-Cookie", " keyway_anything=1")
		h.Add("Set-Cookie", "theme=dark; Path=/")
		h.Set("Alt-Svc", `h3=":443"; ma=86400`)
		h.Set("Strict-Transport-Security", "max-age=0")
		_, _ = io.WriteString(w, "ok")
	}))
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {up: {url: %s}}
routes:
  - {path: /x, upstream: up, policy: public, rate_limit: {rate: 10/s}}
  - {path: /y, upstream: up, policy: public, rate_limit: {rate: 10/s}, allow_upstream_cookies: true}
`, up))
	in := apptest.Start(t, cfg)
	// By default no upstream cookie passes: it would be a second session,
	// one keyway cannot revoke.
	res := get(t, in.Client(), in.URL("/x"))
	_ = body(t, res)
	if got := res.Header.Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("Set-Cookie reaching the client: %q, want none", got)
	}
	// A route that lets upstream cookies through still never lets keyway's.
	res = get(t, in.Client(), in.URL("/y"))
	_ = body(t, res)
	if got := res.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != "theme=dark; Path=/" {
		t.Fatalf("Set-Cookie reaching the client: %q, want only the upstream's own cookie", got)
	}
	if res.Header.Get("Alt-Svc") != "" {
		t.Error("the upstream's Alt-Svc reached the client")
	}
	hstsAtLeastAYear(t, res)
}

// Finding 3 (medium): the client's Host became X-Forwarded-Host upstream.
func TestAttackerHostHeader(t *testing.T) {
	in, c := startRoutes(t, "")
	for name, client := range map[string]*http.Client{"HTTP/1.1": in.HTTP1Client(), "HTTP/2": c} {
		t.Run(name, func(t *testing.T) {
			for _, host := range []string{"evil.example", "evil.example:443", "localhost.evil.example", "127.0.0.2", "[::2]:8443"} {
				req, _ := http.NewRequest(http.MethodGet, in.URL("/api/x"), nil)
				req.Host = host
				res, err := client.Do(req)
				apptest.Must(t, err, "GET with Host %s", host)
				wantProblem(t, res, 421, "urn:keyway:problem:misdirected-request")
			}
			// keyway's own endpoints are no different, but for health checks,
			// which orchestrators send to an IP address.
			req, _ := http.NewRequest(http.MethodGet, in.URL("/.keyway/auth/session"), nil)
			req.Host = "evil.example"
			res, err := client.Do(req)
			apptest.Must(t, err, "own endpoint")
			wantProblem(t, res, 421, "urn:keyway:problem:misdirected-request")
			req, _ = http.NewRequest(http.MethodGet, in.URL("/.keyway/healthz"), nil)
			req.Host = "10.1.2.3:8443"
			res, err = client.Do(req)
			apptest.Must(t, err, "healthz")
			if b := body(t, res); res.StatusCode != 200 {
				t.Fatalf("healthz by IP: %d %s", res.StatusCode, b)
			}
			// Configured names in any case and port reach the upstream, which
			// sees the name as asked.
			for _, host := range []string{"localhost", "LOCALHOST:8443", "127.0.0.1:1", "[::1]:443"} {
				req, _ := http.NewRequest(http.MethodGet, in.URL("/api/x"), nil)
				req.Host = host
				res, err := client.Do(req)
				apptest.Must(t, err, "GET with Host %s", host)
				if e := apptest.DecodeEcho(t, res); e.Header.Get("X-Forwarded-Host") != host {
					t.Errorf("Host %s: X-Forwarded-Host = %q", host, e.Header.Get("X-Forwarded-Host"))
				}
			}
		})
	}
	t.Run("redirect listener", func(t *testing.T) {
		plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodGet, "http://"+in.App.Addr("http")+"/v1", nil)
		req.Host = "evil.example"
		res, err := plain.Do(req)
		apptest.Must(t, err, "plain HTTP")
		_ = body(t, res)
		if res.StatusCode != 421 || res.Header.Get("Location") != "" {
			t.Fatalf("redirect for a foreign Host: %d %q", res.StatusCode, res.Header.Get("Location"))
		}
	})
}

// Finding 4 (medium): IPv6 clients escaped per-IP limits by changing
// address within their /64; a leak report of many tokens cost one request.
func TestAttackerIPv6SourcesShareLimits(t *testing.T) {
	echo := apptest.Echo(t, time.Second)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
trusted_proxies: [127.0.0.1/32]
api_keys: {leak_report: {rate_limit: 5/min}}
upstreams: {echo: {url: %s}}
routes: [{path: /api, upstream: echo, policy: public, rate_limit: {rate: 2/min}}]
`, echo))
	in := apptest.Start(t, cfg)
	c := in.Client()
	from := func(addr string) int {
		res := get(t, c, in.URL("/api/x"), "X-Forwarded-For", addr)
		_ = body(t, res)
		return res.StatusCode
	}
	got := []int{from("2001:db8:1:2::1"), from("2001:db8:1:2::2"), from("2001:db8:1:2:ffff:ffff:ffff:fffe")}
	if got[0] != 200 || got[1] != 200 || got[2] != 429 {
		t.Fatalf("three addresses of one /64: %v, want 200 200 429", got)
	}
	if s := from("2001:db8:1:3::1"); s != 200 {
		t.Fatalf("another /64: %d, want 200", s)
	}
	if s := from("192.0.2.1"); s != 200 {
		t.Fatalf("an IPv4 client: %d", s)
	}
	if s := from("192.0.2.2"); s != 200 {
		t.Fatalf("IPv4 clients count one by one: %d", s)
	}

	leak := func(addr string, n int) int {
		tokens := make([]map[string]string, n)
		for i := range tokens {
			tokens[i] = map[string]string{"token": fmt.Sprintf("kw_live_%046d", i), "type": "keyway", "url": "https://x", "source": "test"}
		}
		b, _ := json.Marshal(tokens)
		req, _ := http.NewRequest(http.MethodPost, in.URL("/.keyway/keys/report-leak"), strings.NewReader(string(b)))
		req.Header.Set("X-Forwarded-For", addr)
		res, err := c.Do(req)
		apptest.Must(t, err, "leak report")
		_ = body(t, res)
		return res.StatusCode
	}
	if s := leak("2001:db8:9::1", 6); s != 400 {
		t.Fatalf("a report above the burst: %d, want 400", s)
	}
	if s := leak("2001:db8:9::2", 4); s != 200 {
		t.Fatalf("a report of 4 tokens: %d, want 200", s)
	}
	// The refused report spent one event, the next four: the budget of 5 is gone.
	if s := leak("2001:db8:9::3", 1); s != 429 {
		t.Fatalf("one more token from the same /64: %d, want 429", s)
	}
	if s := leak("2001:db8:a::1", 1); s != 200 {
		t.Fatalf("another /64: %d, want 200", s)
	}
}

// Finding 8 (low): case_insensitive_paths lower-cased prefixes with
// Unicode rules and requests with ASCII rules.
func TestAttackerCaseInsensitiveUnicodePrefix(t *testing.T) {
	echo := apptest.Echo(t, time.Second)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
server: {case_insensitive_paths: true}
upstreams: {echo: {url: %s}}
routes: [{path: /Ünïcode/Data, upstream: echo, policy: public, rate_limit: {rate: 10/s}}]
`, echo))
	in := apptest.Start(t, cfg)
	res := get(t, in.Client(), in.URL("/%C3%9Cn%C3%AFcode/DATA/x"))
	if e := apptest.DecodeEcho(t, res); res.StatusCode != 200 || e.Path != "/Ünïcode/data/x" {
		t.Fatalf("non-ASCII prefix: %d %q", res.StatusCode, e.Path)
	}
	// ASCII only: a non-ASCII capital is not folded, on either side.
	res = get(t, in.Client(), in.URL("/%C3%BCn%C3%AFcode/data"))
	wantProblem(t, res, 404, "urn:keyway:problem:not-found")
}

// Finding 7 (low): strangers spending an account's recovery budget locked
// its owner out. The account-wide budget is now large, and a source the
// owner signed in from before is not held to it.
func TestAttackerRecoveryBudgetSparesFamiliarSources(t *testing.T) {
	if testing.Short() {
		t.Skip("spends a thousand recovery attempts")
	}
	cfg := apptest.Demo(t)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	in := apptest.Start(t, cfg)
	owner := newPerson(t, in) // signs up from 127.0.0.1: a familiar source from now on
	var signup struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	_ = json.Unmarshal(owner.register(map[string]string{"username": "ines"}), &signup)

	c := in.Client()
	try := func(from, code string) int {
		req, _ := http.NewRequest(http.MethodPost, in.URL("/.keyway/auth/recovery"), strings.NewReader(
			fmt.Sprintf(`{"username":"ines","code":%q}`, code)))
		req.Header.Set("X-Keyway-CSRF", "1")
		if from != "" {
			req.Header.Set("X-Forwarded-For", from)
		}
		res, err := c.Do(req)
		apptest.Must(t, err, "recovery")
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	// 200 sources, 5 tries each (each source's own budget): the account's
	// burst of 1000 for unfamiliar sources.
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	start := time.Now()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := w; s < 200; s += 4 {
				for range 5 {
					st := try(fmt.Sprintf("10.9.%d.%d", s/250, s%250), "aaaa-bbbb-cccc-dddd")
					mu.Lock()
					counts[st]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if counts[401] != 1000 {
		t.Fatalf("attacker's tries: %v, want 1000 refusals", counts)
	}
	// The budget refills one try every 8.64 s (10 000 a day): on a slow
	// machine a few more get through, never more than the time allows.
	extra := 0
	for n := 1; try(fmt.Sprintf("10.99.0.%d", n), "aaaa-bbbb-cccc-dddd") != 429; n++ {
		if extra++; float64(extra) > time.Since(start).Seconds()/8.64+1 {
			t.Fatalf("%d tries past the account's burst in %s", extra, time.Since(start))
		}
	}
	if got := try("10.99.1.1", signup.RecoveryCodes[0]); got != 429 {
		t.Fatalf("an unfamiliar source after the account budget is spent: %d, want 429", got)
	}
	if got := try("", signup.RecoveryCodes[0]); got != 200 {
		t.Fatalf("the owner, from where they signed in before: %d, want 200", got)
	}
}

// serveUpstream runs h on 127.0.0.1 and returns its base URL.
func serveUpstream(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	apptest.Must(t, err, "listen")
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// wsUpstream answers a WebSocket handshake with 101 and then echoes every
// byte; it counts the handshakes it saw.
type wsUpstream struct {
	mu       sync.Mutex
	upgrades int
	plain    int
}

func (u *wsUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		u.mu.Lock()
		u.plain++
		u.mu.Unlock()
		_, _ = io.WriteString(w, "plain")
		return
	}
	u.mu.Lock()
	u.upgrades++
	u.mu.Unlock()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Set-Cookie: __Host-keyway_session=kws_planted; Path=/; Secure\r\n\r\n")
	_ = brw.Flush()
	_, _ = io.Copy(conn, brw)
}

func (u *wsUpstream) seen() (upgrades, plain int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.upgrades, u.plain
}

// tunnel is a raw HTTP/1.1 connection to keyway.
type tunnel struct {
	conn net.Conn
	br   *bufio.Reader
}

// openTunnel sends a GET with the given headers on a new TLS connection
// and reads the response head.
func openTunnel(t *testing.T, in *apptest.Instance, path string, hdr ...string) (*tunnel, *http.Response) {
	t.Helper()
	conn, err := tls.Dial("tcp", in.App.Addr("https"), &tls.Config{RootCAs: in.App.CAPool(), ServerName: "localhost",
		NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
	apptest.Must(t, err, "dial")
	t.Cleanup(func() { _ = conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: localhost\r\n", path)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("\r\n")
	_, err = io.WriteString(conn, b.String())
	apptest.Must(t, err, "write request")
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(br, nil)
	apptest.Must(t, err, "read response")
	return &tunnel{conn: conn, br: br}, res
}

// echo sends a message through the tunnel and reads it back.
func (tu *tunnel) echo(t *testing.T, msg string) {
	t.Helper()
	_, err := io.WriteString(tu.conn, msg)
	apptest.Must(t, err, "write through the tunnel")
	buf := make([]byte, len(msg))
	_ = tu.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(tu.br, buf)
	if err != nil || string(buf) != msg {
		t.Fatalf("through the tunnel: %q, %v", buf, err)
	}
}

// waitClosed waits up to limit for keyway to close the tunnel and returns
// how long it took.
func (tu *tunnel) waitClosed(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = tu.conn.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, tu.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the tunnel was still open after %v", limit)
	}
	return time.Since(start)
}

var wsHeaders = []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
	"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}

// Finding 2 (medium): Upgrade opened a tunnel on every route, past the
// policy, and a session's tunnel outlived its logout.
func TestAttackerUpgradeTunnels(t *testing.T) {
	ws := &wsUpstream{}
	up := serveUpstream(t, ws)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
passkeys: {sign_up: open}
upstreams: {ws: {url: %s}}
routes:
  - {name: pub, path: /pub, upstream: ws, policy: public, rate_limit: {rate: 100/s}}
  - {name: live, path: /live, upstream: ws, policy: api_key, websocket: true, scopes: [live:read]}
  - {name: mine, path: /mine, upstream: ws, policy: session, websocket: true}
  - {name: short, path: /short, upstream: ws, policy: public, websocket: true, websocket_max_lifetime: 1s,
     rate_limit: {rate: 100/s}}
`, up))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	raw, k, err := keys.Create(context.Background(), apikey.CreateParams{Name: "ws", Owner: "service:ws", Scopes: []string{"live:read"}}, "test")
	apptest.Must(t, err, "create key")

	t.Run("refused where not opted in", func(t *testing.T) {
		for _, hdr := range [][]string{
			wsHeaders,
			{"Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"},
			{"Connection", "keep-alive, upgrade", "Upgrade", "WebSocket"},
		} {
			_, res := openTunnel(t, in, "/pub/x", hdr...)
			_ = res.Body.Close()
			if res.StatusCode != 400 {
				t.Fatalf("upgrade %v on a public route: %d, want 400", hdr, res.StatusCode)
			}
		}
		_, res := openTunnel(t, in, "/live/x", "Authorization", "Bearer "+raw, "Connection", "Upgrade", "Upgrade", "h2c")
		_ = res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("h2c on a WebSocket route: %d, want 400", res.StatusCode)
		}
		if n, _ := ws.seen(); n != 0 {
			t.Fatalf("the upstream saw %d upgrade requests", n)
		}
	})

	t.Run("a key's tunnel closes when the key is revoked", func(t *testing.T) {
		_, res := openTunnel(t, in, "/live/x", wsHeaders...)
		_ = res.Body.Close()
		if res.StatusCode != 401 {
			t.Fatalf("no key: %d", res.StatusCode)
		}
		tu, res := openTunnel(t, in, "/live/x", append([]string{"Authorization", "Bearer " + raw}, wsHeaders...)...)
		if res.StatusCode != 101 {
			t.Fatalf("handshake: %d", res.StatusCode)
		}
		if len(res.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("the upstream's 101 planted a cookie: %q", res.Header.Values("Set-Cookie"))
		}
		tu.echo(t, "hello")
		apptest.Must(t, keys.Revoke(context.Background(), k.ID, "test", "test"), "revoke")
		d := tu.waitClosed(t, 5*time.Second)
		t.Logf("tunnel closed %v after the revocation", d)
	})

	t.Run("a session's tunnel closes at logout", func(t *testing.T) {
		p := newPerson(t, in)
		p.register(map[string]string{"username": "wanda"})
		cookie := "__Host-keyway_session=" + p.cookie().Value
		for _, origin := range []string{"", "https://evil.example", "null"} {
			hdr := append([]string{"Cookie", cookie}, wsHeaders...)
			if origin != "" {
				hdr = append(hdr, "Origin", origin)
			}
			_, res := openTunnel(t, in, "/mine/x", hdr...)
			_ = res.Body.Close()
			if res.StatusCode != 403 {
				t.Fatalf("cross-site WebSocket with Origin %q: %d, want 403", origin, res.StatusCode)
			}
		}
		tu, res := openTunnel(t, in, "/mine/x", append([]string{"Cookie", cookie, "Origin", p.origin}, wsHeaders...)...)
		if res.StatusCode != 101 {
			t.Fatalf("handshake: %d", res.StatusCode)
		}
		tu.echo(t, "hi")
		p.want(204, "POST", "/.keyway/auth/logout", nil)
		d := tu.waitClosed(t, 5*time.Second)
		t.Logf("tunnel closed %v after the logout", d)
	})

	t.Run("a tunnel has a maximum lifetime", func(t *testing.T) {
		tu, res := openTunnel(t, in, "/short/x", wsHeaders...)
		if res.StatusCode != 101 {
			t.Fatalf("handshake: %d", res.StatusCode)
		}
		tu.echo(t, "x")
		if d := tu.waitClosed(t, 5*time.Second); d > 2*time.Second {
			t.Fatalf("a 1s tunnel lived %v more", d)
		}
	})
}

// TestAttackerKeyInQueryStringNeverLogged: a key in the URL (a mistake
// clients make; URLs end up in logs, histories and Referer headers) is
// refused outright, even beside a valid key header and percent-encoded,
// is never forwarded, and neither the key nor the query reaches keyway's
// logs.
func TestAttackerKeyInQueryStringNeverLogged(t *testing.T) {
	e := startKeys(t)
	raw, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	encoded := strings.Replace(raw, "kw_live_", "kw%5Flive%5F", 1)
	for _, q := range []string{"?api_key=" + raw, "?key=" + raw + "&x=1", "?access_token=" + encoded, "?" + raw} {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer " + raw}} {
			res := get(t, e.c, e.in.URL("/api/orders"+q), hdr...)
			_ = body(t, res)
			if res.StatusCode != 400 {
				t.Fatalf("a key in the query string %q (header: %v): %d, want 400", strings.Replace(q, raw, "KEY", 1), hdr != nil, res.StatusCode)
			}
		}
	}
	if logs := e.in.Logs(); strings.Contains(logs, raw) || strings.Contains(logs, raw[8:20]) {
		t.Fatal("a key from a query string reached the logs")
	}
}

// recordingUpstream remembers every request it is sent: its path and body,
// and the raw bytes of every connection, so a test can tell what a
// smuggling attempt delivered past keyway.
type recordingUpstream struct {
	mu     sync.Mutex
	paths  []string
	bodies []string
	raw    strings.Builder
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.paths = append(u.paths, r.Method+" "+r.URL.Path)
	u.bodies = append(u.bodies, string(b))
	u.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// start serves u on loopback, teeing each connection's bytes into u.raw.
func (u *recordingUpstream) start(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	apptest.Must(t, err, "listen")
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(teeListener{ln, u}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

type teeListener struct {
	net.Listener
	u *recordingUpstream
}

func (l teeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return teeConn{c, l.u}, nil
}

type teeConn struct {
	net.Conn
	u *recordingUpstream
}

func (c teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.u.mu.Lock()
	c.u.raw.Write(p[:n])
	c.u.mu.Unlock()
	return n, err
}

// wantNothingSmuggled fails if the upstream was sent a request for the
// protected prefix, a header block with both framings, or a forged
// identity or host header.
func (u *recordingUpstream) wantNothingSmuggled(t *testing.T) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.paths {
		if strings.Contains(p, "/secret") {
			t.Errorf("the upstream was sent %s", p)
		}
	}
	for _, block := range strings.Split(u.raw.String(), "\r\n\r\n") {
		lb := strings.ToLower(block)
		if strings.Contains(lb, "\ncontent-length:") && strings.Contains(lb, "\ntransfer-encoding:") {
			t.Errorf("the upstream got both framings: %q", block)
		}
		for _, line := range strings.Split(lb, "\r\n") {
			if (strings.HasPrefix(line, "x-keyway-") || strings.HasPrefix(line, "host:") || strings.HasPrefix(line, "x-forwarded-host:")) &&
				(strings.Contains(line, "usr_admin") || strings.Contains(line, "evil")) {
				t.Errorf("the upstream got a forged header: %q", line)
			}
		}
	}
}

// startSmuggling serves a public prefix and an API-key prefix that no
// request of the smuggling tests has a key for.
func startSmuggling(t *testing.T) (*apptest.Instance, *recordingUpstream) {
	t.Helper()
	up := &recordingUpstream{}
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {rec: {url: %s}}
routes:
  - {name: pub, path: /pub, upstream: rec, policy: public, methods: [GET, POST], rate_limit: {rate: 1000/s}}
  - {name: secret, path: /secret, upstream: rec, policy: api_key}
`, up.start(t)))
	return apptest.Start(t, cfg), up
}

// rawExchange writes raw bytes on one TLS connection (HTTP/1.1) and reads
// every response keyway sends before it closes the connection or goes
// quiet.
func rawExchange(t *testing.T, in *apptest.Instance, raw string) []int {
	t.Helper()
	conn, err := tls.Dial("tcp", in.App.Addr("https"), &tls.Config{RootCAs: in.App.CAPool(), ServerName: "localhost",
		NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
	apptest.Must(t, err, "dial")
	defer func() { _ = conn.Close() }()
	_, err = io.WriteString(conn, raw)
	apptest.Must(t, err, "write")
	br := bufio.NewReader(conn)
	var statuses []int
	for {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		statuses = append(statuses, res.StatusCode)
		if res.Close {
			return statuses
		}
	}
}

// Request smuggling over HTTP/1.1: conflicting or disguised framing, folded
// and malformed headers. Each is refused, or answered once with the
// connection closed after it (a chunked body, HTTP/1.0), so bytes that a
// proxy in front framed differently are never read as a second request;
// the request keyway forwards has one framing, and a folded line is one
// header. Pipelined requests are each decided (the API key route answers
// 401).
func TestAttackerRequestSmugglingHTTP1(t *testing.T) {
	in, up := startSmuggling(t)
	const hidden = "GET /secret/x HTTP/1.1\r\nHost: localhost\r\n\r\n"
	chunkedHidden := "0\r\n\r\n" + hidden
	for _, tc := range []struct {
		name, raw string
		want      []int // the statuses, in order; nil: only "no 2xx beyond the first"
	}{
		{"CL.TE", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + fmt.Sprint(len(chunkedHidden)) +
			"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedHidden, []int{200}},
		{"TE.CL", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(hidden), hidden) + hidden, []int{200}},
		{"two Transfer-Encodings", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + chunkedHidden, []int{501}},
		{"a disguised Transfer-Encoding", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n" + chunkedHidden, []int{501}},
		{"a list of codings", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n" + chunkedHidden, []int{501}},
		{"space before the colon", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n" + chunkedHidden, []int{400}},
		{"vertical tab", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: \x0bchunked\r\n\r\n" + chunkedHidden, nil},
		{"underscore spelling", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + chunkedHidden, []int{200, 401}},
		{"two Content-Lengths", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n" + hidden, []int{400}},
		{"signed Content-Length", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: +44\r\n\r\n" + hidden, []int{400}},
		{"hex Content-Length", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0x2c\r\n\r\n" + hidden, []int{400}},
		{"folded Transfer-Encoding", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + chunkedHidden, []int{200}},
		{"folded header", "GET /pub/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n X-Keyway-Subject: user:usr_admin\r\n\r\n", []int{200}},
		{"header starting with a space", "GET /pub/a HTTP/1.1\r\n Host: evil.example\r\nHost: localhost\r\n\r\n", []int{400}},
		{"NUL in a value", "GET /pub/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n", []int{400}},
		{"CR in a value", "GET /pub/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\rX-Keyway-Subject: user:usr_admin\r\n\r\n", []int{400}},
		{"chunk size overflow", "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n", nil},
		{"bare LF line ends", "GET /pub/a HTTP/1.1\nHost: localhost\n\n" + hidden, []int{200, 401}},
		{"pipelined", "GET /pub/a HTTP/1.1\r\nHost: localhost\r\n\r\n" + hidden, []int{200, 401}},
		{"absolute form naming another host", "GET http://evil.example/pub/a HTTP/1.1\r\nHost: localhost\r\n\r\n", []int{421}},
		{"HTTP/1.0 with chunked", "POST /pub/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + chunkedHidden, []int{200}},
		{"HTTP/1.0 keep-alive", "GET /pub/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n" + hidden, []int{200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, in, tc.raw)
			if tc.want != nil && !slices.Equal(got, tc.want) {
				t.Errorf("statuses %v, want %v", got, tc.want)
			}
			for i, s := range got {
				if i > 0 && s < 300 {
					t.Errorf("response %d of one request's bytes was %d", i+1, s)
				}
			}
		})
	}
	up.wantNothingSmuggled(t)
}

// h2Exchange sends one request on a new HTTP/2 connection, frame by frame,
// so that it can hold what a conforming client never sends, and returns
// the status keyway answered, or 0 if it reset the stream or the
// connection.
func h2Exchange(t *testing.T, in *apptest.Instance, fields [][2]string, data string) int {
	t.Helper()
	conn, err := tls.Dial("tcp", in.App.Addr("https"), &tls.Config{RootCAs: in.App.CAPool(), ServerName: "localhost",
		NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	apptest.Must(t, err, "dial")
	defer func() { _ = conn.Close() }()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	_, err = io.WriteString(conn, http2.ClientPreface)
	apptest.Must(t, err, "preface")
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	apptest.Must(t, fr.WriteSettings(), "settings")
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		apptest.Must(t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}), "encode")
	}
	apptest.Must(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(),
		EndHeaders: true, EndStream: data == ""}), "headers")
	if data != "" {
		apptest.Must(t, fr.WriteData(1, true, []byte(data)), "data")
	}
	for {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := fr.ReadFrame()
		if err != nil {
			return 0 // the connection ended
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				n, _ := strconv.Atoi(f.PseudoValue("status"))
				return n
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return 0
			}
		case *http2.GoAwayFrame:
			return 0
		}
	}
}

// HTTP/2 to HTTP/1.1 downgrade: what HTTP/2 may carry but HTTP/1.1 framing
// would read differently (a body longer than its content-length, a
// transfer-encoding, CR or LF in a field, connection-specific headers, a
// request line in a pseudo-header). Each is refused or reset, and nothing
// of it reaches the upstream.
func TestAttackerHTTP2Downgrade(t *testing.T) {
	in, up := startSmuggling(t)
	const hidden = "GET /secret/x HTTP/1.1\r\nHost: localhost\r\n\r\n"
	req := func(method, path string, extra ...string) [][2]string {
		f := [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}}
		for i := 0; i+1 < len(extra); i += 2 {
			f = append(f, [2]string{extra[i], extra[i+1]})
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		fields [][2]string
		data   string
	}{
		{"body beyond content-length", req("POST", "/pub/a", "content-length", "0"), hidden},
		{"transfer-encoding", req("POST", "/pub/a", "transfer-encoding", "chunked"), "0\r\n\r\n" + hidden},
		{"CRLF in a value", req("GET", "/pub/a", "x-a", "a\r\nX-Keyway-Subject: user:usr_admin"), ""},
		{"LF in a value", req("GET", "/pub/a", "x-a", "a\nHost: evil.example"), ""},
		{"CRLF in a name", req("GET", "/pub/a", "x-a\r\nx-keyway-subject", "user:usr_admin"), ""},
		{"upper-case name", req("GET", "/pub/a", "X-Keyway-Subject", "user:usr_admin"), ""},
		{"connection", req("GET", "/pub/a", "connection", "keep-alive"), ""},
		{"upgrade", req("GET", "/pub/a", "upgrade", "h2c"), ""},
		{"keep-alive", req("GET", "/pub/a", "keep-alive", "timeout=5"), ""},
		{"proxy-connection", req("GET", "/pub/a", "proxy-connection", "keep-alive"), ""},
		{"te other than trailers", req("GET", "/pub/a", "te", "chunked"), ""},
		{"request line in :path", req("GET", "/pub/a HTTP/1.1\r\nHost: localhost\r\n\r\n"+strings.TrimSuffix(hidden, "\r\n\r\n")), ""},
		{"space in :path", req("GET", "/pub/a /secret/x"), ""},
		{"request line in :method", req("GET /secret/x HTTP/1.1\r\n", "/pub/a"), ""},
		{"pseudo-header after a field", append(req("GET", "/pub/a", "x-a", "1"), [2]string{":path", "/secret/x"}), ""},
		{"two :path", append(req("GET", "/pub/a"), [2]string{":path", "/secret/x"}), ""},
		{"foreign :authority", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "evil.example"}, {":path", "/pub/a"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h2Exchange(t, in, tc.fields, tc.data)
			// A content-length of 0 lets the request run, with an empty
			// body, before the excess DATA frame arrives and resets the
			// stream: its 200 races the reset. What matters is below: the
			// hidden request never reaches the upstream.
			if tc.name == "body beyond content-length" && s == 200 {
				return
			}
			if s != 0 && (s < 400 || s > 499) {
				t.Fatalf("status %d, want a 4xx or a reset", s)
			}
		})
	}
	// The same connection code answers a well-formed request, so the cases
	// above were refused for what they held.
	if s := h2Exchange(t, in, req("POST", "/pub/a", "content-length", "2"), "ok"); s != 200 {
		t.Fatalf("a well-formed HTTP/2 request: %d", s)
	}
	// A host field beside :authority may be answered, but the name the
	// upstream is told is the one keyway checked.
	_ = h2Exchange(t, in, req("GET", "/pub/a", "host", "evil.example"), "")
	up.wantNothingSmuggled(t)
}

// plainExchange writes raw bytes to the plain-HTTP redirect listener and
// returns its first answer.
func plainExchange(t *testing.T, in *apptest.Instance, raw string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", in.App.Addr("http"), 5*time.Second)
	apptest.Must(t, err, "dial")
	defer func() { _ = conn.Close() }()
	_, err = io.WriteString(conn, raw)
	apptest.Must(t, err, "write")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	apptest.Must(t, err, "read")
	_ = res.Body.Close()
	return res.StatusCode, res.Header.Get("Location")
}

// Open redirects: the plain-HTTP listener's 308 and the portal's next=
// only ever send a browser to keyway's own HTTPS origin, whatever the
// path, Host or request form says.
func TestAttackerOpenRedirects(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	origin := strings.TrimSuffix(in.URL("/"), "/")
	// A Location that starts with the origin and a slash has keyway's
	// authority, however a browser reads the rest.
	own := func(t *testing.T, loc string) {
		t.Helper()
		u, err := url.Parse(loc)
		if err != nil || !strings.HasPrefix(loc, origin+"/") || u.Host != strings.TrimPrefix(origin, "https://") {
			t.Errorf("Location %q leaves %s", loc, origin)
		}
	}
	t.Run("redirect listener", func(t *testing.T) {
		for _, tc := range []struct {
			name, raw string
			status    int
		}{
			{"double slash", "GET //evil.example/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 308},
			{"backslash", "GET /\\evil.example/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 308},
			{"encoded slashes", "GET /%2F%2Fevil.example HTTP/1.1\r\nHost: localhost\r\n\r\n", 308},
			{"encoded backslash", "GET /%5Cevil.example HTTP/1.1\r\nHost: localhost\r\n\r\n", 308},
			{"asterisk form", "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", 200},
			{"absolute form, no path", "GET http://localhost HTTP/1.1\r\nHost: localhost\r\n\r\n", 308},
			{"absolute form, other host", "GET http://evil.example/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 421},
			{"absolute form, userinfo", "GET http://localhost@evil.example/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 421},
			{"Host with userinfo", "GET /x HTTP/1.1\r\nHost: localhost:80@evil.example\r\n\r\n", 400},
			{"Host with a path", "GET /x HTTP/1.1\r\nHost: localhost/evil.example\r\n\r\n", 400},
			{"Host with a backslash", "GET /x HTTP/1.1\r\nHost: localhost\\evil.example\r\n\r\n", 400},
			{"foreign Host", "GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n", 421},
			{"two Hosts", "GET /x HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n", 400},
			{"X-Forwarded-Host", "GET /x HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: evil.example\r\n\r\n", 308},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, loc := plainExchange(t, in, tc.raw)
				if status != tc.status {
					t.Fatalf("status %d, want %d (Location %q)", status, tc.status, loc)
				}
				if status == 308 {
					own(t, loc)
				} else if loc != "" {
					t.Fatalf("a %d with Location %q", status, loc)
				}
			})
		}
	})
	t.Run("portal next", func(t *testing.T) {
		nexts := []string{"//evil.example", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example",
			"%2F%2Fevil.example", "/.keyway/portal/..%2F..%2F%2Fevil.example", "javascript:alert(1)",
			"\t//evil.example", "/.keyway/portal/keys#@evil.example"}
		// Signed out, next= is rendered into the sign-in page only when it
		// names a portal page.
		anon := in.Client()
		for _, n := range nexts {
			res := get(t, anon, in.URL("/.keyway/portal/signin?next="+url.QueryEscape(n)))
			if b := body(t, res); res.StatusCode != 200 || strings.Contains(b, "evil.example") || strings.Contains(b, "javascript:") {
				t.Errorf("sign-in page with next=%q: %d, reflected: %v", n, res.StatusCode, strings.Contains(b, "evil"))
			}
		}
		// Signed in, the page redirects at once: to the account page for any
		// next= that is not a portal page.
		p := newPerson(t, in)
		p.register(map[string]string{"username": "redirected"})
		for _, n := range nexts {
			res := get(t, p.c, in.URL("/.keyway/portal/signin?next="+url.QueryEscape(n)))
			_ = body(t, res)
			loc := res.Header.Get("Location")
			if res.StatusCode != 303 || loc != "/.keyway/portal/account" {
				t.Errorf("signed in, next=%q: %d to %q", n, res.StatusCode, loc)
			}
		}
		res := get(t, p.c, in.URL("/.keyway/portal/signin?next="+url.QueryEscape("/.keyway/portal/keys")))
		if _ = body(t, res); res.Header.Get("Location") != "/.keyway/portal/keys" {
			t.Fatalf("a portal page as next: %q", res.Header.Get("Location"))
		}
	})
}

// Session fixation: a session token planted in a browser (someone else's,
// made up, under another spelling of the cookie's name, or beside the
// browser's own) never becomes the person's session; a sign-in and a
// step-up each issue a new token and end the one before.
func TestAttackerSessionFixation(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	alice, mallory := newPerson(t, in), newPerson(t, in)
	alice.register(map[string]string{"username": "alice"})
	mallory.register(map[string]string{"username": "mallory"})
	u, _ := url.Parse(in.URL("/"))
	plant := func(tok string) {
		alice.c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-keyway_session", Value: tok, Path: "/", Secure: true}})
	}
	whoIs := func(cookie string) (int, string) {
		t.Helper()
		res := get(t, in.Client(), in.URL("/.keyway/auth/session"), "Cookie", cookie)
		var s struct{ User struct{ Username string } }
		_ = json.Unmarshal([]byte(body(t, res)), &s)
		return res.StatusCode, s.User.Username
	}
	const name = "__Host-keyway_session="

	t.Run("someone else's session", func(t *testing.T) {
		mallory.login(0)
		planted := mallory.cookie().Value
		plant(planted)
		alice.login(0)
		if got := alice.cookie().Value; got == planted {
			t.Fatal("the sign-in kept the planted token")
		}
		if status, user := whoIs(name + alice.cookie().Value); status != 200 || user != "alice" {
			t.Fatalf("alice's new token: %d %q", status, user)
		}
		if status, user := whoIs(name + planted); status != 401 {
			t.Fatalf("the planted token after alice's sign-in: %d %q", status, user)
		}
	})
	t.Run("a made-up token", func(t *testing.T) {
		madeUp := "kws_" + strings.Repeat("A", 43)
		plant(madeUp)
		alice.login(0)
		if alice.cookie().Value == madeUp {
			t.Fatal("the sign-in adopted a made-up token")
		}
		if status, _ := whoIs(name + madeUp); status != 401 {
			t.Fatalf("the made-up token: %d", status)
		}
	})
	t.Run("a step-up", func(t *testing.T) {
		before := alice.cookie().Value
		alice.stepUp(0)
		after := alice.cookie().Value
		if after == before {
			t.Fatal("a step-up kept the token")
		}
		if status, _ := whoIs(name + before); status != 401 {
			t.Fatalf("the token before the step-up: %d", status)
		}
	})
	t.Run("other spellings and a second cookie", func(t *testing.T) {
		mallory.login(0)
		m, a := mallory.cookie().Value, alice.cookie().Value
		for _, cookie := range []string{
			"__host-keyway_session=" + a,
			"__HOST-keyway_session=" + a,
			"keyway_session=" + a,
			"__Secure-keyway_session=" + a,
			name + m + "; " + name + a,
			name + a + "; " + name + m,
			name + "; " + name + a,
		} {
			if status, user := whoIs(cookie); status != 401 {
				t.Errorf("Cookie %q: %d as %q", strings.NewReplacer(a, "ALICE", m, "MALLORY").Replace(cookie), status, user)
			}
		}
		if status, user := whoIs(name + a); status != 200 || user != "alice" {
			t.Fatalf("alice's own cookie alone: %d %q", status, user)
		}
	})
}

// Key guessing: every key that is no key (malformed, unknown ID, wrong
// secret) gets one answer, and a source that presents GuessLimit of them
// has every key refused with 429 (the right one too) until its budget
// refills; other sources, and a client stuck with a revoked key, are not
// held back.
func TestAttackerKeyGuessing(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
trusted_proxies: [127.0.0.1/32]
upstreams: {echo: {url: %s}}
routes:
  - {name: api, path: /api, upstream: echo, policy: api_key}
`, apptest.Echo(t, time.Second)))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	good, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "good", Owner: "service:good"}, "test")
	apptest.Must(t, err, "create")
	revoked, rk, err := keys.Create(context.Background(), apikey.CreateParams{Name: "old", Owner: "service:old"}, "test")
	apptest.Must(t, err, "create")
	apptest.Must(t, keys.Revoke(context.Background(), rk.ID, "test", "test"), "revoke")
	c := in.Client()
	call := func(from, key string) (int, string, http.Header) {
		t.Helper()
		res := get(t, c, in.URL("/api/x"), "X-Forwarded-For", from, "Authorization", "Bearer "+key)
		b := body(t, res)
		var p problemBody
		_ = json.Unmarshal([]byte(b), &p)
		return res.StatusCode, p.Type + " " + p.Detail, res.Header
	}
	unknown, _ := apikey.Generate(nil, apikey.EnvLive)
	wrongSecret := good[:len(good)-6] + strings.Repeat("A", 6)
	guesses := []string{unknown.Raw, wrongSecret, "kw_live_nope", good + "x"}

	// One answer for every kind of failure, a revoked key's included.
	_, want, _ := call("192.0.2.1", revoked)
	for _, g := range guesses {
		if status, got, hdr := call("192.0.2.1", g); status != 401 || got != want || hdr.Get("Www-Authenticate") == "" {
			t.Fatalf("a guess was answered %d %q, a revoked key %q", status, got, want)
		}
	}

	// A guesser spends the budget; then its right key is refused too.
	for i := len(guesses); i <= int(decision.GuessLimit.Burst); i++ {
		g, _ := apikey.Generate(nil, apikey.EnvLive)
		if status, _, _ := call("192.0.2.1", g.Raw); status != 401 {
			t.Fatalf("guess %d: %d", i+1, status)
		}
	}
	status, _, hdr := call("192.0.2.1", good)
	if status != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("the right key after %d guesses: %d (Retry-After %q)", decision.GuessLimit.Burst+1, status, hdr.Get("Retry-After"))
	}
	// The lockout is in the audit trail once, under a pseudonym of the
	// source, however long the guessing goes on.
	waitFor(t, 5*time.Second, "the lockout in the trail", func() bool { return len(lockoutEvents(t, cfg)) > 0 })
	for range 3 {
		_, _, _ = call("192.0.2.1", good)
	}
	time.Sleep(200 * time.Millisecond)
	if lo := lockoutEvents(t, cfg); len(lo) != 1 || lo[0].Detail["limit"] != "api_key_guessing" ||
		!strings.HasPrefix(lo[0].Subject, "client:c_") || strings.Contains(fmt.Sprint(lo[0]), "192.0.2") {
		t.Fatalf("lockouts audited: %+v", lo)
	}
	// Others are served; a client stuck with a revoked key is never held.
	if status, _, _ := call("198.51.100.7", good); status != 200 {
		t.Fatalf("another source: %d", status)
	}
	for range 2 * decision.GuessLimit.Burst {
		if status, _, _ := call("198.51.100.8", revoked); status != 401 {
			t.Fatalf("a revoked key: %d", status)
		}
	}
	if status, _, _ := call("198.51.100.8", good); status != 200 {
		t.Fatalf("after many revoked-key refusals: %d", status)
	}
	// The block ends when the budget refills.
	wait, _ := strconv.Atoi(hdr.Get("Retry-After"))
	time.Sleep(time.Duration(wait)*time.Second + 100*time.Millisecond)
	if status, _, _ := call("192.0.2.1", good); status != 200 {
		t.Fatalf("the right key after Retry-After: %d", status)
	}
}

// lockoutEvents are the rate-limit lockouts in cfg's audit trail.
func lockoutEvents(t *testing.T, cfg *config.Config) []audit.Event {
	t.Helper()
	db, err := store.Open(context.Background(), cfg.Store, false)
	apptest.Must(t, err, "open store")
	defer func() { _ = db.Close() }()
	recs, err := db.RecentAuditEvents(context.Background(), 200)
	apptest.Must(t, err, "read the trail")
	var out []audit.Event
	for _, r := range recs {
		if r.Event.Type == audit.Lockout {
			out = append(out, r.Event)
		}
	}
	return out
}
