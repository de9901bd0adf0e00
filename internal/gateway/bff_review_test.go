package gateway

// The Backend-for-Frontend (client profiles, CORS, field trimming) as an
// attacker sees it, from an adversarial review: each test is a hole it
// found (now closed) or behaviour it checked and found sound.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/shape"
)

const bffAppOrigin = "https://app.example.com"

// bffSecretDoc is what the upstream of /me and /hist answers: the web
// profile must never see billing or internal_notes, the partner only
// city and days[].date.
const bffSecretDoc = `{"name":"Pia","city":"Paris","billing":{"card":"4242424242424242"},"internal_notes":"vip","days":[{"date":"d1","x":"y"}]}`

// bffGateway serves, on loopback:
//
//	/me      session, GET HEAD POST; the web profile denies billing, internal_notes
//	/cookie  session, GET, allow_upstream_cookies
//	/hist    api_key (scope t), GET HEAD; the partner allows city, days[].date, non_json: pass
//
// The web profile has CORS for https://app.example.com. up answers every
// route. It returns the gateway's address and the partner's key.
func bffGateway(t *testing.T, up http.Handler) (string, string) {
	t.Helper()
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	keys, raw := testKeys(t)
	keys.v.Key.Client = "partner"
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	t.Cleanup(lim.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	webRoutes := map[string][]string{"me": {"GET", "HEAD", "POST"}, "cookie": nil, "live": {"GET"}}
	core, err := decision.New(decision.Config{Keys: keys, KeyLimiter: lim, Sessions: reviewSessions{}, Users: reviewUsers{},
		Origins: []string{reviewOrigin}, Logger: logger, Clients: []decision.Client{
			{Name: "web", Credential: decision.Session, Routes: webRoutes, CORSOrigins: []string{bffAppOrigin}},
			{Name: "partner", Credential: decision.APIKey, Routes: map[string][]string{"hist": nil}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(core.Close)
	upstream, err := NewUpstream(UpstreamConfig{Name: "up", URL: upSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	deny, _ := shape.Deny([]string{"billing", "internal_notes"})
	allow, _ := shape.Allow([]string{"city", "days[].date"})
	g, err := New(Config{
		Routes: []Route{
			{Name: "me", Prefix: "/me", Methods: []string{"GET", "HEAD", "POST"}, Upstream: upstream, Policy: decision.Session,
				MaxBody: 1 << 20, Timeout: 5 * time.Second},
			{Name: "cookie", Prefix: "/cookie", Methods: []string{"GET"}, Upstream: upstream, Policy: decision.Session,
				MaxBody: 1 << 20, Timeout: 5 * time.Second, AllowUpstreamCookies: true},
			{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: upstream, Policy: decision.Session,
				MaxBody: 1 << 20, Timeout: 5 * time.Second, WebSocket: true, TunnelLifetime: time.Minute},
			{Name: "hist", Prefix: "/hist", Methods: []string{"GET", "HEAD"}, Upstream: upstream, Policy: decision.APIKey,
				Scopes: []string{"t"}, MaxBody: 1 << 20, Timeout: 5 * time.Second},
		},
		Clients: []Client{
			{Name: "web", Session: true, Routes: webRoutes, CORSOrigins: []string{bffAppOrigin}, CORSHeaders: []string{"X-Trace"},
				CORSMaxAge: time.Minute, Fields: map[string]*shape.Rule{"me": deny, "live": deny}, MaxShapedBody: 1 << 16},
			{Name: "partner", Routes: map[string][]string{"hist": nil}, Fields: map[string]*shape.Rule{"hist": allow},
				PassNonJSON: true, MaxShapedBody: 1 << 16},
		},
		Own: http.NotFoundHandler(), Decider: core, HSTSMaxAge: 365 * 24 * time.Hour, Logger: logger,
		ClientIP: clientip.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, 64),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() { srv.Close(); g.Close(); upstream.Close() })
	return srv.Listener.Addr().String(), raw
}

// bffDo sends one request (header pairs in hdr) and returns the answer and
// its body.
func bffDo(t *testing.T, addr, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

const bffCookie = "__Host-keyway_session=tok"

// serveSecret answers bffSecretDoc as a file server does: ranges,
// conditional requests, HEAD.
func serveSecret(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Etag", `"v1-secret"`)
	http.ServeContent(w, r, "", time.Unix(1700000000, 0), strings.NewReader(bffSecretDoc))
}

// TestShapedRouteSendsNoRange: a Range request on a shaped route is
// passed to the upstream, and a 206 is "shaped" as if it were the whole
// document. A range that covers exactly the denied value is itself valid
// JSON (a string, a number, an object), which no denylist path names.
func TestShapedRouteSendsNoRange(t *testing.T) {
	addr, _ := bffGateway(t, http.HandlerFunc(serveSecret))
	i := strings.Index(bffSecretDoc, `"4242`)
	j := i + len(`"4242424242424242"`) - 1
	rng := "bytes=" + itoa(i) + "-" + itoa(j)
	res, body := bffDo(t, addr, "GET", "/me", "Cookie", bffCookie, "Range", rng)
	if strings.Contains(body, "4242") {
		t.Errorf("Range %s on a shaped route: %d %q: the denied billing.card reached the web client", rng, res.StatusCode, body)
	}
	// The whole billing object, too.
	i = strings.Index(bffSecretDoc, `{"card"`)
	j = strings.Index(bffSecretDoc, `"},`) + 1
	res, body = bffDo(t, addr, "GET", "/me", "Cookie", bffCookie, "Range", "bytes="+itoa(i)+"-"+itoa(j))
	if strings.Contains(body, "4242") {
		t.Errorf("Range over billing: %d %q", res.StatusCode, body)
	}
}

// TestShapedRouteNoMultipartRanges: with non_json: pass, a
// multi-range request turns the JSON answer into multipart/byteranges,
// which is "not JSON" and passes whole, unshaped.
func TestShapedRouteNoMultipartRanges(t *testing.T) {
	addr, key := bffGateway(t, http.HandlerFunc(serveSecret))
	res, body := bffDo(t, addr, "GET", "/hist", "Authorization", "Bearer "+key, "Range", "bytes=0-0,1-")
	if strings.Contains(body, "4242") || strings.Contains(body, "vip") {
		t.Errorf("multi-range on the partner's allowlisted route: %d %s %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
}

// TestShapedRouteShapesErrorAnswers: only 2xx answers are shaped; an
// upstream's 409 (the current state), 422 (the entity echoed) or 500 (a
// debug dump) reaches the client with every field.
func TestShapedRouteShapesErrorAnswers(t *testing.T) {
	for _, code := range []int{http.StatusConflict, http.StatusInternalServerError} {
		addr, key := bffGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, bffSecretDoc)
		}))
		res, body := bffDo(t, addr, "GET", "/me", "Cookie", bffCookie)
		if strings.Contains(body, "4242") {
			t.Errorf("web client, upstream %d: %d %q", code, res.StatusCode, body)
		}
		res, body = bffDo(t, addr, "GET", "/hist", "Authorization", "Bearer "+key)
		if strings.Contains(body, "4242") || strings.Contains(body, "Pia") {
			t.Errorf("partner (allowlist), upstream %d: %d %q", code, res.StatusCode, body)
		}
	}
}

// TestShapedRouteMislabelledJSON: with non_json: pass, whether
// an answer is JSON is decided by a strict parse of its Content-Type. A
// type the browser's and most clients' parsers read as application/json
// (a parameter without a value, an unterminated quote), or none at all
// (a client's res.json() reads it all the same), passes unshaped.
func TestShapedRouteMislabelledJSON(t *testing.T) {
	for _, ct := range []string{"application/json; charset", `application/json; charset="utf-8`, ""} {
		addr, key := bffGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ct == "" {
				w.Header()["Content-Type"] = nil // no sniffing by the upstream's server
			} else {
				w.Header().Set("Content-Type", ct)
			}
			_, _ = io.WriteString(w, bffSecretDoc)
		}))
		res, body := bffDo(t, addr, "GET", "/hist", "Authorization", "Bearer "+key)
		if strings.Contains(body, "4242") {
			t.Errorf("partner, Content-Type %q: %d %q (sent on as %q)", ct, res.StatusCode, body, res.Header.Get("Content-Type"))
		}
	}
}

// TestShapedRouteHeadKeepsNoUnshapedLengthOrETag: HEAD is not shaped, so its
// Content-Length is the unshaped body's (the length of the denied fields)
// and its ETag the upstream's, which the shaped GET drops; with it,
// If-None-Match tells whether a denied field changed.
func TestShapedRouteHeadKeepsNoUnshapedLengthOrETag(t *testing.T) {
	addr, _ := bffGateway(t, http.HandlerFunc(serveSecret))
	get, body := bffDo(t, addr, "GET", "/me", "Cookie", bffCookie)
	if get.StatusCode != 200 || strings.Contains(body, "4242") {
		t.Fatalf("GET: %d %q", get.StatusCode, body)
	}
	head, _ := bffDo(t, addr, "HEAD", "/me", "Cookie", bffCookie)
	if cl := head.Header.Get("Content-Length"); cl != "" && cl != itoa(len(body)) {
		t.Errorf("HEAD Content-Length %s, the shaped GET's body is %d bytes (the unshaped one %d)", cl, len(body), len(bffSecretDoc))
	}
	if et := head.Header.Get("Etag"); et != "" {
		t.Errorf("HEAD passes the upstream's ETag %s, which the shaped GET drops", et)
	}
}

// TestSessionRouteVariesOnOrigin: whether the answer carries CORS headers
// depends on Origin on every answer of a session route with CORS, but
// Vary: Origin is only set when the origin is allowed: a cache that
// stores the answer to a request without Origin (or with another one)
// serves it, without Access-Control-Allow-Origin, to the app.
func TestSessionRouteVariesOnOrigin(t *testing.T) {
	addr, _ := bffGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = io.WriteString(w, `{"name":"Pia"}`)
	}))
	for _, o := range []string{"", "https://other.example.com"} {
		hdr := []string{"Cookie", bffCookie}
		if o != "" {
			hdr = append(hdr, "Origin", o)
		}
		res, _ := bffDo(t, addr, "GET", "/me", hdr...)
		if !varies(res.Header, "Origin") {
			t.Errorf("Origin %q: %d, Vary %q: no Vary: Origin on an answer whose CORS headers depend on it", o, res.StatusCode, res.Header.Values("Vary"))
		}
	}
}

// TestNamelessCookieCannotPlantKeywayCookie: on a route that passes the
// upstream's cookies, a nameless cookie whose value is "__Host-keyway_session=…"
// is not recognised as keyway's (its name, before the first "=", is empty).
// Browsers send a nameless cookie as its bare value, i.e. as
// "__Host-keyway_session=…": current Chrome and Firefox refuse such a cookie,
// older ones and other clients do not. keyway should drop it.
func TestNamelessCookieCannotPlantKeywayCookie(t *testing.T) {
	addr, _ := bffGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "=__Host-keyway_session=planted; Path=/; Secure; HttpOnly")
		w.Header().Add("Set-Cookie", " =keyway_session=planted; Path=/")
		w.Header().Add("Set-Cookie", "theme=dark; Path=/")
		_, _ = io.WriteString(w, "{}")
	}))
	res, _ := bffDo(t, addr, "GET", "/cookie", "Cookie", bffCookie)
	for _, c := range res.Header.Values("Set-Cookie") {
		if strings.Contains(strings.ToLower(c), "keyway_session=planted") {
			t.Errorf("the upstream planted %q", c)
		}
	}
	if !strings.Contains(strings.Join(res.Header.Values("Set-Cookie"), "\n"), "theme=dark") {
		t.Errorf("the upstream's own cookie was dropped: %q", res.Header.Values("Set-Cookie"))
	}
}

// TestCORSOriginsExact pins the CORS checks found sound: only
// the exact serialised origin gets CORS, with Vary, never with a wildcard;
// the upstream's own Access-Control-* are dropped on session routes (on
// preflights keyway answers itself, and on answers); an upstream's
// Set-Cookie of keyway's name, in any case, is dropped.
func TestCORSOriginsExact(t *testing.T) {
	var upCalls atomic.Int32
	addr, _ := bffGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upCalls.Add(1)
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "https://evil.example")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Allow-Methods", "DELETE")
		h.Add("Set-Cookie", "__HOST-Keyway_Session=planted; Path=/; Secure")
		h.Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"name":"Pia"}`)
	}))
	for _, o := range []string{"HTTPS://APP.EXAMPLE.COM", "https://app.example.com/", "null", "https://app.example.com:443",
		"https://app.example.com:8443", "https://app.example.com.evil.com", "https://evil-app.example.com", "http://app.example.com"} {
		pre, _ := bffDo(t, addr, "OPTIONS", "/me", "Origin", o, "Access-Control-Request-Method", "GET")
		res, _ := bffDo(t, addr, "GET", "/me", "Cookie", bffCookie, "Origin", o)
		for _, r := range []*http.Response{pre, res} {
			if r.Header.Get("Access-Control-Allow-Origin") != "" || r.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("Origin %q: %d got CORS %q", o, r.StatusCode, r.Header)
			}
		}
	}
	pre, _ := bffDo(t, addr, "OPTIONS", "/me", "Origin", bffAppOrigin, "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "x-keyway-csrf")
	if pre.StatusCode != 204 || pre.Header.Get("Access-Control-Allow-Origin") != bffAppOrigin ||
		pre.Header.Get("Access-Control-Allow-Methods") != "GET, HEAD, POST" || !varies(pre.Header, "Origin") {
		t.Errorf("preflight: %d %q", pre.StatusCode, pre.Header)
	}
	// Two Origin headers: the first decides, for CORS and CSRF alike.
	res, _ := bffDo(t, addr, "GET", "/me", "Cookie", bffCookie, "Origin", "https://evil.example", "Origin", bffAppOrigin)
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("second Origin header honoured: %q", res.Header)
	}
	res, body := bffDo(t, addr, "GET", "/me", "Cookie", bffCookie, "Origin", bffAppOrigin)
	if res.StatusCode != 200 || res.Header.Values("Access-Control-Allow-Origin")[0] != bffAppOrigin ||
		len(res.Header.Values("Access-Control-Allow-Origin")) != 1 || res.Header.Get("Access-Control-Allow-Methods") != "" ||
		!varies(res.Header, "Origin") || len(res.Header.Values("Set-Cookie")) != 0 || body != `{"name":"Pia"}` {
		t.Errorf("allowed origin: %d %q %q", res.StatusCode, res.Header, body)
	}
	// A cross-origin POST from the app needs X-Keyway-CSRF; with it, the
	// allowed origin passes as same-site.
	res, _ = bffDo(t, addr, "POST", "/me", "Cookie", bffCookie, "Origin", bffAppOrigin, "Sec-Fetch-Site", "same-site")
	if res.StatusCode != 403 {
		t.Errorf("POST without X-Keyway-CSRF: %d", res.StatusCode)
	}
	res, _ = bffDo(t, addr, "POST", "/me", "Cookie", bffCookie, "Origin", "https://app.example.com.evil.com",
		"Sec-Fetch-Site", "cross-site", "X-Keyway-CSRF", "1")
	if res.StatusCode != 403 {
		t.Errorf("POST from a suffix origin: %d", res.StatusCode)
	}
}

// TestShapingOddAnswers pins how trimming handles answers that
// are not what they say: each is shaped, or refused (502), never passed.
func TestShapingOddAnswers(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, bffSecretDoc)
	_ = zw.Close()
	cases := []struct {
		name, ct, ce string
		body         []byte
		chunked      bool
		wantStatus   int
	}{
		{"BOM", "application/json", "", append([]byte("\xef\xbb\xbf"), bffSecretDoc...), false, 502},
		{"duplicate keys", "application/json", "", []byte(`{"billing":1,"name":"a","billing":{"card":"4242"},"internal_notes":"x","\u0062illing":"4242"}`), false, 200},
		{"upper case type", "APPLICATION/JSON; Charset=UTF-8", "", []byte(bffSecretDoc), false, 200},
		{"problem+json", "application/problem+json", "", []byte(bffSecretDoc), false, 200},
		{"gzip", "application/json", "gzip", gz.Bytes(), false, 502},
		{"gzip after identity", "application/json", "identity\x00gzip", gz.Bytes(), false, 502},
		{"top-level array", "application/json", "", []byte("[" + bffSecretDoc + "," + bffSecretDoc + "]"), false, 200},
		{"html", "text/html", "", []byte(bffSecretDoc), false, 502},
		{"chunked", "application/json", "", []byte(bffSecretDoc), true, 200},
		{"too large", "application/json", "", []byte(`{"a":"` + strings.Repeat("x", 1<<16) + `","billing":"4242"}`), false, 502},
		{"deep", "application/json", "", []byte(strings.Repeat("[", 5000) + `{"billing":"4242"}` + strings.Repeat("]", 5000)), false, 502},
		{"nested within the limit", "application/json", "", []byte(strings.Repeat("[", shape.MaxNesting-1) + `{"billing":"4242"}` +
			strings.Repeat("]", shape.MaxNesting-1)), false, 200},
	}
	for _, c := range cases {
		addr, _ := bffGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", c.ct)
			if c.ce != "" {
				for _, v := range strings.Split(c.ce, "\x00") {
					w.Header().Add("Content-Encoding", v)
				}
			}
			w.Header().Set("Etag", `"x"`)
			if c.chunked {
				w.(http.Flusher).Flush()
				_, _ = w.Write(c.body[:10])
				w.(http.Flusher).Flush()
				_, _ = w.Write(c.body[10:])
				return
			}
			_, _ = w.Write(c.body)
		}))
		res, body := bffDo(t, addr, "GET", "/me", "Cookie", bffCookie)
		if res.StatusCode != c.wantStatus || strings.Contains(body, "4242") || strings.Contains(body, "vip") ||
			(res.StatusCode == 200 && res.Header.Get("Etag") != "") {
			t.Errorf("%s: %d %q %q", c.name, res.StatusCode, res.Header, body)
		}
	}
}

func varies(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), name) {
				return true
			}
		}
	}
	return false
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestShapingRefusesDeepNesting: arrays are crossed transparently and
// each level decodes its whole value again, so shaping costs depth × size.
// json.Valid allows 10,000 levels: a 64 KiB answer of nested arrays pinned
// a core for seconds in review (1 MiB at depth 1,000: 15 s). Shaping now
// refuses a document deeper than shape.MaxNesting, which keeps the cost
// linear in the size.
func TestShapingRefusesDeepNesting(t *testing.T) {
	rule, _ := shape.Deny([]string{"billing"})
	const depth, size = 2000, 1 << 16
	doc := []byte(strings.Repeat("[", depth) + strings.Repeat("0,", (size-2*depth)/2) + "0" + strings.Repeat("]", depth))
	if _, err := rule.Apply(doc); !errors.Is(err, shape.ErrTooDeep) {
		t.Errorf("a document nested %d deep: %v, want ErrTooDeep", depth, err)
	}
	ok := []byte(strings.Repeat("[", shape.MaxNesting-1) + `{"billing":1,"a":"[[[[\\\"{{{"}` + strings.Repeat("]", shape.MaxNesting-1))
	out, err := rule.Apply(ok)
	if err != nil || strings.Contains(string(out), "billing") || !strings.Contains(string(out), `"a":"[[[[`) {
		t.Errorf("a document nested %d deep, brackets in a string: %s %v", shape.MaxNesting, out, err)
	}
}

// TestShapedRouteOpensNoTunnel: a WebSocket's messages cannot be trimmed,
// so a client whose answers on a route are trimmed gets no tunnel there
// (config refuses a field rule on a WebSocket route; this holds anyway).
func TestShapedRouteOpensNoTunnel(t *testing.T) {
	var asked atomic.Bool
	addr, _ := bffGateway(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(true)
		_, _ = io.WriteString(w, bffSecretDoc)
	}))
	res, body := bffDo(t, addr, "GET", "/live", "Cookie", bffCookie, "Origin", reviewOrigin, "Connection", "Upgrade",
		"Upgrade", "websocket", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version", "13")
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "trimmed") || asked.Load() {
		t.Errorf("a WebSocket on a trimmed route: %d %q (upstream asked: %v)", res.StatusCode, body, asked.Load())
	}
}
