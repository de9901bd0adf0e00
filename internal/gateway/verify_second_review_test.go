package gateway

// A second adversarial review of forward auth, of the first one's fixes:
// each test is a hole it found (now closed) or behaviour it confirmed.

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// askRaw sends a raw HTTP/1.1 request, as a proxy would, from loopback.
func askRaw(t *testing.T, g *Gateway, raw string) *httptest.ResponseRecorder {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

// status is the status keyway means (nginx's door answers 403 with the
// real one in X-Keyway-Status).
func status(w *httptest.ResponseRecorder) int {
	if s := w.Header().Get("X-Keyway-Status"); s != "" {
		n, _ := strconv.Atoi(s)
		return n
	}
	return w.Code
}

// keyway refuses %2F (upstreams split on it or not, each their own way),
// and does at the Envoy door: /.keyway/verify/envoy/pub%2Fx is 400. The
// Envoy door read the original path from r.URL.EscapedPath(), and when the
// raw path holds a byte Go's validEncoded rejects ('|', '^', '{', '"', a raw
// byte >= 0x80), EscapedPath() is not the raw path but url.PathEscape of the
// decoded one: %2F comes back as a literal '/'. keyway then answered for
// /pub/x| (route pub, public) while the proxy forwards /pub%2Fx| as sent,
// which Express, chi, Rails and the like route as the single segment
// "pub/x|": a route keyway never decided on. The same happens at the nginx
// door with an absolute X-Original-URL (the common
// `proxy_set_header X-Original-URL $scheme://$host$request_uri`): requestURI
// used url.URL.RequestURI(), which re-escapes the same way. Both now read
// the path as it was written. nginx 1.22
// accepts and forwards "GET /pub%2Fx| HTTP/1.1" as sent (checked).
func TestVerifyReadsThePathAsSentNotReescaped(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	for _, p := range []string{"/pub%2Fx", "/pub%2Fx|", "/pub%2Fx^", "/pub%2Fx{", "/pub%2fsecret%22"} {
		w := askRaw(t, g, "GET "+verifyEnvoy+p+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if w.Code != http.StatusBadRequest {
			t.Errorf("envoy door %s: %d, want 400 (an encoded slash)", p, w.Code)
		}
	}
	for _, u := range []string{"https://api.example.com/pub%2Fx", "https://api.example.com/pub%2Fx|"} {
		r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+verifyNginx, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Original-URL", u)
		r.Header.Set("X-Original-Method", "GET")
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if got := status(w); got != http.StatusBadRequest {
			t.Errorf("nginx door X-Original-URL %s: %d, want 400 (an encoded slash)", u, got)
		}
	}
}

// A WebSocket handshake always carries Sec-WebSocket-Key and
// Sec-WebSocket-Version (RFC 6455 §4.1; every server library requires
// them), and they are end-to-end headers: nginx, Traefik and Caddy pass them
// to the auth request, while Upgrade/Connection are dropped. Counting only
// Sec-Fetch-Mode: websocket, which non-browser clients and browsers
// without Fetch Metadata (Safari < 16.4) do not send, let a client open a
// WebSocket through Traefik on a route that is not `websocket: true` (a
// tunnel without TunnelLifetime, which keyway's proxy refuses), and a
// cross-origin handshake on a session WebSocket route skip the Origin
// rule. Sec-WebSocket-Key counts too.
func TestVerifyWebSocketHandshakeWithoutFetchMode(t *testing.T) {
	g, _ := verifyReviewGateway(t, false)
	ws := []string{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version", "13"}
	if w := askForward(g, "GET", "/pub/stream", ws...); w.Code != http.StatusBadRequest {
		t.Errorf("WebSocket handshake on a non-WebSocket route: %d, want 400", w.Code)
	}
	hdr := append([]string{"Cookie", "__Host-keyway_session=tok", "Origin", "https://evil.example"}, ws...)
	if w := askForward(g, "GET", "/ws", hdr...); w.Code == http.StatusOK {
		t.Errorf("cross-origin WebSocket handshake with the session cookie passed: %d, want 403 (Origin rule)", w.Code)
	}
	// The same with Sec-Fetch-Mode alone.
	if w := askForward(g, "GET", "/ws", "Cookie", "__Host-keyway_session=tok", "Origin", "https://evil.example",
		"Sec-Fetch-Mode", "websocket"); w.Code == http.StatusOK {
		t.Fatalf("reference case passed")
	}
}

// Sound: legitimate paths still pass at every door (trailing slash, names
// starting with or made of dots, escaped ordinary bytes, dots in the
// query), and every spelling of the verify path gets keyway's own request
// ID. Also: an override name with a space before the colon (Go keeps it
// uncanonicalised, so it is not refused) cannot reach an upstream: Go's
// transport (Traefik, Caddy) refuses to send an invalid header name, and
// nginx and Envoy reject or ignore it.
func TestVerifyPlainPathsPassAndRequestIDIsOurs(t *testing.T) {
	g, _ := verifyReviewGateway(t, true)
	for _, p := range []string{"/pub/", "/pub/x/", "/pub/...", "/pub/.well-known/x", "/pub/%41b", "/pub/.%2e.", "/pub?a=/../key&b=//"} {
		if w := askNginx(g, "GET", p); w.Code != http.StatusOK {
			t.Errorf("nginx %s: %d %s", p, w.Code, w.Header().Get("X-Keyway-Status"))
		}
		if w := askForward(g, "GET", p); w.Code != http.StatusOK {
			t.Errorf("forward %s: %d", p, w.Code)
		}
		if w := askRaw(t, g, "GET "+verifyEnvoy+p+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); w.Code != http.StatusOK {
			t.Errorf("envoy %s: %d", p, w.Code)
		}
	}
	for _, p := range []string{"/.keyway/verify", "/.keyway/./verify", "/.keyway//verify", "/.keyway/verif%79", "/.keyway/x/../verify"} {
		w := askRaw(t, g, "GET "+p+" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: chosen-by-client\r\n"+
			"X-Forwarded-Uri: /pub\r\nX-Forwarded-Method: GET\r\n\r\n")
		if w.Code != http.StatusOK || w.Header().Get("X-Request-Id") == "chosen-by-client" {
			t.Errorf("%s: %d, request ID %q", p, w.Code, w.Header().Get("X-Request-Id"))
		}
	}
}
