package gateway

// Forward auth (/.keyway/verify…) as an attacker sees it, from an
// adversarial review: the proxy in front forwards the client's request
// (its raw request target, its headers) to the upstream, and keyway
// decides on what the proxy tells it. Each test is a hole the review found
// (now closed) or behaviour it found sound.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/session"
)

const reviewOrigin = "https://api.example.com"

// reviewSessions is one live session, "tok", of person usr_pia.
type reviewSessions struct{}

func (reviewSessions) Authenticate(_ context.Context, token string) (*session.Session, error) {
	if token != "tok" {
		return nil, session.ErrNotFound
	}
	return &session.Session{ID: "ses_pia", UserID: "usr_pia", CreatedAt: time.Now(), LastSeenAt: time.Now(),
		ExpiresAt: time.Now().Add(time.Hour)}, nil
}
func (reviewSessions) Fresh(*session.Session) bool { return false }

type reviewUsers struct{}

func (reviewUsers) User(_ context.Context, id string) (*passkey.User, error) {
	if id != "usr_pia" {
		return nil, passkey.ErrNotFound
	}
	return &passkey.User{ID: id, DisplayName: "Pia", Role: passkey.RoleUser}, nil
}

// verifyReviewGateway is forward auth for loopback (no upstreams: routes
// decided for the proxy in front), with:
//
//	/pub      public, GET
//	/key      api_key (scope t), GET
//	/ws       session, GET, WebSocket
//	/limited  public, GET, 2 per minute per source
//
// serverTrusted is server.trusted_proxies (loopback when set).
func verifyReviewGateway(t *testing.T, serverTrusted bool) (*Gateway, string) {
	t.Helper()
	keys, raw := testKeys(t)
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	t.Cleanup(lim.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	core, err := decision.New(decision.Config{Keys: keys, KeyLimiter: lim, Sessions: reviewSessions{}, Users: reviewUsers{},
		Origins: []string{reviewOrigin}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(core.Close)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	var server []netip.Prefix
	if serverTrusted {
		server = loopback
	}
	g, err := New(Config{
		Routes: []Route{
			{Name: "pub", Prefix: "/pub", Methods: []string{"GET"}, Policy: decision.Public, MaxBody: 1 << 20, Timeout: time.Second},
			{Name: "key", Prefix: "/key", Methods: []string{"GET"}, Policy: decision.APIKey, Scopes: []string{"t"},
				MaxBody: 1 << 20, Timeout: time.Second},
			{Name: "ws", Prefix: "/ws", Methods: []string{"GET"}, Policy: decision.Session, MaxBody: 1 << 20, Timeout: time.Second,
				WebSocket: true, TunnelLifetime: time.Minute},
			{Name: "limited", Prefix: "/limited", Methods: []string{"GET"}, Policy: decision.Public, MaxBody: 1 << 20,
				Timeout: time.Second, RateLimit: &RouteLimit{Limit: ratelimit.Limit{Count: 2, Period: time.Minute, Burst: 2}}},
		},
		Own: http.NotFoundHandler(), Decider: core, HSTSMaxAge: 365 * 24 * time.Hour, Logger: logger,
		ClientIP:    clientip.New(server, 64),
		ForwardAuth: &ForwardAuth{Proxies: clientip.New(loopback, 64)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, raw
}

// askNginx asks as nginx's auth location does (docs/integrations/nginx.conf):
// X-Original-URI is $request_uri, the client's request target as sent, and
// every other header of the client's request comes along.
func askNginx(g *Gateway, method, uri string, hdr ...string) *httptest.ResponseRecorder {
	return askAt(g, verifyNginx, "X-Original-URI", "X-Original-Method", method, uri, hdr)
}

// askForward asks as Traefik and Caddy do, at /.keyway/verify.
func askForward(g *Gateway, method, uri string, hdr ...string) *httptest.ResponseRecorder {
	return askAt(g, VerifyPath, "X-Forwarded-Uri", "X-Forwarded-Method", method, uri, hdr)
}

// askAt asks the verify endpoint at path from a trusted proxy's address,
// with the request's target and method in the endpoint's contract headers
// and hdr as further name/value pairs.
func askAt(g *Gateway, path, uriHeader, methodHeader, method, uri string, hdr []string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+path, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set(uriHeader, uri)
	r.Header.Set(methodHeader, method)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

// nginx passes the client's raw request target to the upstream
// (proxy_pass without a URI part: "in the same form as sent by a client"),
// and ends $uri at a literal '#'. Checked with nginx 1.22 and the
// published nginx.conf's auth location:
//
//	GET /key/secret#/../../pub/x  → nginx $uri /key/secret; X-Original-URI and upstream: /key/secret#/../../pub/x
//
// An upstream that splits the fragment off (Python's urlsplit: werkzeug,
// gunicorn; httptools/uvicorn; Node's url.parse) serves /key/secret, while
// keyway reads '#' as a path byte, resolves "..", and answers for /pub/x:
// a public route, so the request passes with no key.
func TestVerifyRefusesAFragmentInTheOriginalURI(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	for _, uri := range []string{"/key/secret#/../../pub/x", "/key/secret#x"} {
		w := askNginx(g, "GET", uri)
		if w.Code == http.StatusOK {
			t.Errorf("X-Original-URI %q, no key: keyway lets it pass (decided for %q); the proxy's upstream reads /key/secret. "+
				"Want a refusal (400, as 403 + X-Keyway-Status: 400 at the nginx door)", uri, "/pub/x")
		}
		w = askForward(g, "GET", uri)
		if w.Code == http.StatusOK {
			t.Errorf("X-Forwarded-Uri %q, no key: keyway lets it pass", uri)
		}
	}
}

// nginx (proxy_pass without a URI) and Caddy (reverse_proxy keeps the
// escaped path) forward the client's request target as sent; Traefik v2
// does too. keyway resolves dot segments and decoded %2e before deciding,
// so it answers for one route while the upstream routes the raw path: an
// upstream that does not resolve "..", or not after decoding (Express's
// app.use('/key'), Flask/Starlette/Django path converters and mounts,
// anything on PATH_INFO), or that keeps the empty segment of "//" when it
// does (WHATWG URL: /key//../pub is /key/pub), serves /key/… to a request
// keyway decided as /pub/…. Verified with nginx 1.22: the upstream got
// exactly the X-Original-URI below. At forward auth keyway does not choose
// the path the upstream gets, so a URI that is not already in normal form
// must be refused, not normalised.
func TestVerifyRefusesDotAndEmptySegmentsInTheOriginalURI(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	for _, uri := range []string{
		"/key/x/../../pub/y",
		"/key/x/%2e%2e/%2e%2e/pub/y",
		"/key/x/%2E./%2e%2E/pub/y",
		"/key//../pub/y",
		"/key/x%3F/../../pub",
		"/key/./../pub/y",
	} {
		if w := askNginx(g, "GET", uri); w.Code == http.StatusOK {
			t.Errorf("nginx door, X-Original-URI %q, no key: 200 (decided for a /pub route); the upstream receives %q", uri, uri)
		}
		if w := askForward(g, "GET", uri); w.Code == http.StatusOK {
			t.Errorf("forward door, X-Forwarded-Uri %q, no key: 200", uri)
		}
	}
}

// Headers keyway's own proxy drops, which the proxy in front passes on:
//
//   - other spellings of keyway's headers: Traefik passes header names with
//     underscores upstream, where a CGI-style server reads X_Keyway_Subject
//     as X-Keyway-Subject (traefik.yml called it a known gap);
//   - method and path overrides: traefik.yml removed only
//     X-Http-Method-Override, envoy.yaml only x-http-method-override. keyway
//     decides for GET; the upstream may run DELETE.
//
// Traefik, Caddy and nginx pass the client's headers to the auth request,
// so keyway sees them there and refuses (400).
func TestVerifyRefusesHeadersTheProxyWouldPassOn(t *testing.T) {
	g, raw := verifyReviewGateway(t, false)
	for _, h := range [][2]string{
		{"X_Keyway_Subject", "user:usr_admin"}, {"X-Keyway_Roles", "admin"}, {"X_Forwarded_For", "6.6.6.6"}, {"X_Real_Ip", "6.6.6.6"},
		{"X-HTTP-Method", "DELETE"}, {"X-Method-Override", "DELETE"}, {"X-HTTP-Method-Override", "DELETE"},
		{"X-Original-Method", "DELETE"}, {"X_Original_URL", "/admin"},
	} {
		if w := askForward(g, "GET", "/key/orders/7", "Authorization", "Bearer "+raw, h[0], h[1]); w.Code != http.StatusBadRequest {
			t.Errorf("a client's %s: %d, want 400 (keyway's proxy would drop it; through forward auth it reaches the upstream)", h[0], w.Code)
		}
	}
}

// A browser's WebSocket handshake carries Upgrade/Connection, which are
// hop-by-hop: nginx's auth subrequest never has them (proxy_set_header
// Upgrade "" is nginx's default; nginx.conf also sets Connection ""), nor
// has Traefik's (it drops hop-by-hop headers). So the core's WebSocket
// Origin rule for session routes must not depend on them, or a page on a
// sibling host (same-site: the Lax cookie is sent) opens a socket as the
// signed-in person. The browser also sends Sec-Fetch-Mode: websocket,
// which is end-to-end and reaches keyway: it counts as an upgrade.
func TestVerifyWebSocketOriginRuleWithoutUpgradeHeaders(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	cross := []string{"Cookie", "__Host-keyway_session=tok", "Origin", "https://blog.example.com",
		"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "websocket", "Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-Websocket-Version", "13"}
	// Sound when keyway sees the upgrade: refused.
	if w := askNginx(g, "GET", "/ws", append(cross, "Upgrade", "websocket", "Connection", "Upgrade")...); w.Code == http.StatusOK {
		t.Fatalf("with Upgrade headers: 200")
	}
	// What nginx and Traefik actually send.
	if w := askNginx(g, "GET", "/ws", cross...); w.Code == http.StatusOK {
		t.Errorf("a cross-origin WebSocket handshake with the session cookie, as nginx describes it (no Upgrade): 200 as %q; "+
			"want 403 (Sec-Fetch-Mode: websocket, Origin not keyway's)", w.Header().Get("X-Keyway-Subject"))
	}
}

// keyway's proxy refuses a protocol upgrade on a route that is not a
// WebSocket route (400); forward auth, which gives "the same decision the
// proxy itself would make", must too (Caddy's forward_auth keeps Upgrade
// on the auth request of an upgrade).
func TestVerifyRefusesAnUpgradeOnANonWebSocketRoute(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	w := askForward(g, "GET", "/pub/x", "Upgrade", "websocket", "Connection", "Upgrade")
	if w.Code == http.StatusOK {
		t.Errorf("an upgrade to a non-WebSocket route passes forward auth (keyway's own proxy answers 400)")
	}
}

// An X-Request-Id is kept only from a trusted proxy; at forward auth the
// trusted proxy passes on the client's own headers (the tracing code skips
// verify for this reason), so with server.trusted_proxies covering the
// proxy, the client would name the decision's request ID in keyway's log
// and answer, and could make it collide with another request's.
func TestVerifyDoesNotAdoptTheClientsRequestID(t *testing.T) {
	g, _ := verifyReviewGateway(t, true)
	w := askNginx(g, "GET", "/pub/x", "X-Request-Id", "chosen-by-client")
	if got := w.Header().Get("X-Request-Id"); got == "chosen-by-client" {
		t.Errorf("the forward-auth decision took the client's X-Request-Id %q", got)
	}
}

// A pass sets every identity header, empty when it does not apply, so a
// proxy that copies only headers present (older Caddy) always overwrites a
// client's copy; X-Keyway-Assertion too, empty when no audience is set,
// since every published config copies it.
func TestVerifyAlwaysSetsTheAssertionHeader(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	w := askForward(g, "GET", "/pub/x")
	if w.Code != http.StatusOK {
		t.Fatal(w.Code)
	}
	if _, ok := w.Header()["X-Keyway-Assertion"]; !ok {
		t.Errorf("no X-Keyway-Assertion on a pass: a client's copy survives a proxy that copies only headers present")
	}
}

// docs/integrations/envoy.yaml forwards X-Forwarded-For to keyway
// (allowed_headers); without use_remote_address: true, Envoy would not
// append the real peer and would pass the client's header as sent. keyway
// believes it (Envoy is a trusted proxy): every per-source limit, the
// key-guessing lockout, and an API key's allowed networks would then be
// the client's to choose.
func TestEnvoyDocAppendsTheRealClientAddress(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	// keyway's side: the right-most X-Forwarded-For address from a trusted
	// proxy is the client, so a fresh one each time is a fresh budget.
	for i := range 3 {
		r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+verifyEnvoy+"/limited", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Forwarded-For", netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}).String())
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	b, err := os.ReadFile("../../docs/integrations/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "use_remote_address: true") {
		t.Errorf("envoy.yaml passes x-forwarded-for to keyway without use_remote_address: true: " +
			"the client's own X-Forwarded-For reaches keyway as sent (3 requests over a limit of 2 passed above)")
	}
}

// Sound: IPv6 clients named by X-Forwarded-For from a trusted proxy count
// per /64 at forward auth, and an IPv4-mapped spelling counts as the IPv4
// address.
func TestVerifyLimitsCountIPv6PerSlash64(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	ask := func(xff string) int {
		w := askNginx(g, "GET", "/limited", "X-Forwarded-For", xff)
		return w.Code
	}
	if ask("2001:db8:1:2::1") != 200 || ask("2001:db8:1:2:ffff::9") != 200 {
		t.Fatal("first two")
	}
	if c := ask("2001:db8:1:2:dead:beef:0:1"); c == 200 {
		t.Errorf("a third address of the same /64 got a fresh budget")
	}
	if ask("198.51.100.7") != 200 || ask("::ffff:198.51.100.7") != 200 {
		t.Fatal("v4 first two")
	}
	if c := ask("198.51.100.7"); c == 200 {
		t.Errorf("the IPv4-mapped spelling got its own budget")
	}
}

// Sound: only trusted proxies get an answer; the other proxy's headers are
// not read at each door; every answer is no-store; a pass overwrites the
// identity headers and strips keyway's cookie from the Cookie it hands
// back; the session cookie is not read on an api_key route (a key and a
// cookie together: the key decides, the cookie never reaches the upstream).
func TestVerifyAttackerBasics(t *testing.T) {
	g, raw := verifyReviewGateway(t, false)
	r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+verifyNginx, nil)
	r.RemoteAddr = "198.51.100.9:1234"
	r.Header.Set("X-Original-URI", "/pub")
	r.Header.Set("X-Original-Method", "GET")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("untrusted peer: %d %q", w.Code, w.Header().Get("Cache-Control"))
	}
	// nginx door ignores X-Forwarded-Uri; forward door ignores X-Original-URI.
	if w := askNginx(g, "GET", "/key/x", "X-Forwarded-Uri", "/pub"); w.Code == 200 {
		t.Errorf("nginx door read X-Forwarded-Uri")
	}
	if w := askForward(g, "GET", "/key/x", "X-Original-Uri", "/pub"); w.Code == 200 {
		t.Errorf("forward door read X-Original-URI")
	}
	// Methods: lower case, lists, and unrouted methods are refused.
	for _, m := range []string{"get", "GET, DELETE", "HEAD", "G_ET"} {
		if w := askForward(g, m, "/pub/x"); w.Code == 200 {
			t.Errorf("method %q passes", m)
		}
	}
	// Key and session cookie together on an api_key route.
	w = askNginx(g, "GET", "/key/x", "Authorization", "Bearer "+raw, "Cookie", "a=1; __Host-keyway_session=tok; __HOST-KEYWAY_SESSION=x; b=2")
	h := w.Header()
	if w.Code != 200 || h.Get("X-Keyway-Subject") != "service:t" || h.Get("X-Keyway-Session-Id") != "" || h.Get("X-Keyway-Name") != "" {
		t.Fatalf("key + cookie: %d %v", w.Code, h)
	}
	if got := h.Get("X-Keyway-Cookie"); got != "a=1; b=2" {
		t.Errorf("X-Keyway-Cookie %q", got)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("Strict-Transport-Security") != "" || h.Get("Location") != "" {
		t.Errorf("pass headers: %v", h)
	}
	for _, name := range identityHeaders {
		if v, ok := h[name]; !ok || len(v) != 1 {
			t.Errorf("%s not set once: %q", name, v)
		}
	}
	// A refusal carries no identity, no redirect, and is not cacheable.
	w = askForward(g, "GET", "/key/x", "X-Forwarded-Host", "evil.example")
	if w.Code != 401 || w.Header().Get("Location") != "" || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Keyway-Subject") != "" {
		t.Errorf("refusal: %d %v", w.Code, w.Header())
	}
	// Absolute-form X-Original-URL keeps path and query only; its fragment is dropped.
	rr := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+verifyNginx, nil)
	rr.RemoteAddr = "127.0.0.1:1"
	rr.Header.Set("X-Original-Url", "https://evil.example/key/x#/../../pub")
	rr.Header.Set("X-Original-Method", "GET")
	w = httptest.NewRecorder()
	g.ServeHTTP(w, rr)
	if w.Code == 200 {
		t.Errorf("absolute X-Original-URL with a fragment passed")
	}
}

func TestPlainPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a": true, "/a/": true, "/a/b.c": true, "/.well-known/x": true, "/a/...": true, "/a/%2e%2e%2e": true,
		"/a/.b": true, "/a/%2": true, "/a%2e": true,
		"//": false, "//a": false, "/a//b": false, "/a/./b": false, "/a/../b": false, "/a/.": false, "/a/..": false,
		"/a/%2e/b": false, "/a/%2E%2e": false, "/a/.%2e/": false, "/a/%2e.": false,
	} {
		if got := plainPath(p); got != want {
			t.Errorf("plainPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// A proxy sets its contract's headers once, replacing a client's. nginx's
// door reads X-Original-URI before X-Original-URL: under a configuration
// that sets X-Original-URL, a client's X-Original-URI would have chosen
// the path decided on. Both spellings, or a contract header twice, are
// refused.
func TestVerifyRefusesAmbiguousContractHeaders(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	ask := func(path string, hdr ...string) int {
		r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+path, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != http.StatusOK && path == verifyNginx && w.Header().Get("X-Keyway-Status") != "" {
			n, _ := strconv.Atoi(w.Header().Get("X-Keyway-Status"))
			return n
		}
		return w.Code
	}
	for _, tt := range []struct {
		path string
		hdr  []string
	}{
		{verifyNginx, []string{"X-Original-URL", "/key/x", "X-Original-URI", "/pub/x", "X-Original-Method", "GET"}},
		{verifyNginx, []string{"X-Original-URI", "/pub/x", "X-Original-URI", "/key/x", "X-Original-Method", "GET"}},
		{verifyNginx, []string{"X-Original-URI", "/pub/x", "X-Original-Method", "GET", "X-Original-Method", "DELETE"}},
		{VerifyPath, []string{"X-Forwarded-Uri", "/pub/x", "X-Forwarded-Uri", "/key/x", "X-Forwarded-Method", "GET"}},
		{VerifyPath, []string{"X-Forwarded-Uri", "/pub/x", "X-Forwarded-Method", "GET", "X-Forwarded-Method", "DELETE"}},
	} {
		if got := ask(tt.path, tt.hdr...); got != http.StatusBadRequest {
			t.Errorf("%s %q: %d, want 400", tt.path, tt.hdr, got)
		}
	}
	if got := ask(verifyNginx, "X-Original-URL", "/pub/x", "X-Original-Method", "GET"); got != http.StatusOK {
		t.Errorf("X-Original-URL alone: %d, want 200", got)
	}
}
