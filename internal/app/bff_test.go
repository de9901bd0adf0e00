package app_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
)

// jsonKeys returns the top-level field names of a JSON object, sorted.
func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %s", b)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestBFFDemoClients: in the demo, a browser is the web client and never
// sees billing or internal notes; a partner's key sees a slimmer history;
// a key made for no client sees everything its scopes allow.
func TestBFFDemoClients(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	p.register(map[string]string{"username": "kate", "display_name": "Kate"})
	if got := jsonKeys(t, p.want(200, "GET", "/v1/me", nil)); !slices.Equal(got, []string{"cities", "name"}) {
		t.Fatalf("/v1/me for the web client has %v", got)
	}

	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	partner, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "p", Owner: "service:acme",
		Scopes: []string{"weather:history"}, Client: "partner"}, "test")
	apptest.Must(t, err, "partner key")
	plain, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "q", Owner: "service:us",
		Scopes: []string{"weather:history"}}, "test")
	apptest.Must(t, err, "plain key")
	if _, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "x", Owner: "service:x", Client: "nobody"}, "test"); err == nil {
		t.Fatal("a key for an unknown client profile was made")
	}

	res := get(t, in.Client(), in.URL("/v1/history?city=Paris"), "Authorization", "Bearer "+partner)
	b := body(t, res)
	var hist struct {
		City string                       `json:"city"`
		Days []map[string]json.RawMessage `json:"days"`
	}
	if err := json.Unmarshal([]byte(b), &hist); err != nil || res.StatusCode != 200 || hist.City != "Paris" || len(hist.Days) != 7 {
		t.Fatalf("partner history: %d %s", res.StatusCode, b)
	}
	for _, d := range hist.Days {
		if len(d) != 2 || d["date"] == nil || d["summary"] == nil {
			t.Fatalf("a partner's day has %v, want date and summary only", d)
		}
	}
	if res.Header.Get("Content-Length") != fmt.Sprint(len(b)) {
		t.Errorf("Content-Length %q for a %d-byte shaped body", res.Header.Get("Content-Length"), len(b))
	}
	res = get(t, in.Client(), in.URL("/v1/history?city=Paris"), "Authorization", "Bearer "+plain)
	if b := body(t, res); res.StatusCode != 200 || !strings.Contains(b, "high_c") {
		t.Fatalf("a key for no client: %d %s", res.StatusCode, b)
	}
}

// bffUpstream answers by path with JSON, text, a large or a gzipped body,
// and with CORS headers of its own, and reports the headers it received.
func bffUpstream(t *testing.T) string {
	return serveUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Etag", `"upstream"`)
		h.Set("X-Seen-Client", r.Header.Get("X-Keyway-Client"))
		h.Set("X-Seen-Accept-Encoding", r.Header.Get("Accept-Encoding"))
		switch {
		case strings.HasSuffix(r.URL.Path, "/text"):
			h.Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "secret=1")
		case strings.HasSuffix(r.URL.Path, "/big"):
			h.Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"pad":%q,"secret":1}`, strings.Repeat("x", 4096))
		case strings.HasSuffix(r.URL.Path, "/gzip"):
			h.Set("Content-Type", "application/json")
			h.Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = io.WriteString(zw, `{"secret":1}`)
			_ = zw.Close()
		case strings.HasSuffix(r.URL.Path, "/labelled"):
			// JSON under an encoding label: what keyway parses is not what
			// a client that decodes the label reads.
			h.Set("Content-Type", "application/json")
			h.Set("Content-Encoding", "deflate")
			_, _ = io.WriteString(w, `{"secret":1}`)
		case strings.HasSuffix(r.URL.Path, "/broken"):
			h.Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"secret":1`)
		default:
			h.Set("Content-Type", "application/problem+json; charset=utf-8")
			_, _ = io.WriteString(w, `{"id":7,"secret":1,"nested":{"secret":2,"ok":3}}`)
		}
	}))
}

const bffYAML = `
data_dir: {{data}}
passkeys: {sign_up: open}
upstreams: {up: {url: %s}}
routes:
  - {name: app, path: /app, upstream: up, policy: session, methods: [GET, POST, DELETE]}
  - {name: other, path: /other, upstream: up, policy: session}
  - {name: feed, path: /feed, upstream: up, policy: api_key}
  - {name: partner-only, path: /partner, upstream: up, policy: api_key}
clients:
  web:
    credential: session
    routes: {app: [GET, POST]}
    cors: {origins: ["https://app.localhost"], allow_headers: [X-Trace], max_age: 5m}
    fields: {app: {deny: [secret, nested.secret]}}
    max_shaped_body: 1KiB
  partner:
    credential: api_key
    routes: {feed: [], partner-only: []}
    fields: {feed: {allow: [id]}}
    non_json: pass
`

// TestBFFShapingFailsClosed: an answer a client's rule cannot be applied to
// is refused, never passed unshaped, unless the profile says to pass
// non-JSON answers.
func TestBFFShapingFailsClosed(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(bffYAML, bffUpstream(t)))
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	p.register(map[string]string{"username": "lou"})

	res, out := p.do("GET", "/app/json", nil)
	if res.StatusCode != 200 || string(out) != `{"id":7,"nested":{"ok":3}}` {
		t.Fatalf("shaped answer: %d %s", res.StatusCode, out)
	}
	if res.Header.Get("Etag") != "" || res.Header.Get("X-Seen-Client") != "web" || res.Header.Get("X-Seen-Accept-Encoding") != "" {
		t.Errorf("headers: Etag %q, client %q, Accept-Encoding upstream %q", res.Header.Get("Etag"),
			res.Header.Get("X-Seen-Client"), res.Header.Get("X-Seen-Accept-Encoding"))
	}
	for _, path := range []string{"/app/text", "/app/big", "/app/gzip", "/app/labelled", "/app/broken"} {
		res, out := p.do("GET", path, nil)
		if res.StatusCode != 502 || strings.Contains(string(out), "secret") {
			t.Errorf("%s: %d %s, want 502 and nothing of the answer", path, res.StatusCode, out)
		}
	}
	if !strings.Contains(in.Logs(), "answer refused: it cannot be shaped") {
		t.Error("no log line says why the answers were refused")
	}

	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	key, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "p", Owner: "service:p", Client: "partner"}, "test")
	apptest.Must(t, err, "key")
	res = get(t, in.Client(), in.URL("/feed/json"), "Authorization", "Bearer "+key)
	if b := body(t, res); res.StatusCode != 200 || b != `{"id":7}` {
		t.Fatalf("partner allowlist: %d %s", res.StatusCode, b)
	}
	res = get(t, in.Client(), in.URL("/feed/text"), "Authorization", "Bearer "+key)
	if b := body(t, res); res.StatusCode != 200 || b != "secret=1" {
		t.Fatalf("non_json: pass: %d %s", res.StatusCode, b)
	}
}

// TestBFFClientRoutes: a client calls only its routes and methods.
func TestBFFClientRoutes(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(bffYAML, bffUpstream(t)))
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	p.register(map[string]string{"username": "max"})
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/app/json", 200}, {"POST", "/app/json", 200}, {"DELETE", "/app/json", 403}, {"GET", "/other/json", 403},
	} {
		res, out := p.do(tt.method, tt.path, nil)
		if res.StatusCode != tt.status {
			t.Errorf("browser %s %s: %d %s, want %d", tt.method, tt.path, res.StatusCode, out, tt.status)
		}
	}
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	partner, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "p", Owner: "service:p", Client: "partner"}, "test")
	apptest.Must(t, err, "key")
	plain, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "q", Owner: "service:q"}, "test")
	apptest.Must(t, err, "key")
	for _, tt := range []struct {
		key, path string
		status    int
	}{{partner, "/feed/json", 200}, {partner, "/partner/json", 200}, {plain, "/feed/json", 200}} {
		res := get(t, in.Client(), in.URL(tt.path), "Authorization", "Bearer "+tt.key)
		_ = body(t, res)
		if res.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d", tt.path, res.StatusCode, tt.status)
		}
	}
	// A profile limits its keys: another config where the partner may not
	// call /partner.
	cfg2 := apptest.Config(t, strings.Replace(fmt.Sprintf(bffYAML, bffUpstream(t)), "routes: {feed: [], partner-only: []}", "routes: {feed: [GET]}", 1))
	in2 := apptest.Start(t, cfg2)
	keys2, err := app.OpenKeys(context.Background(), cfg2, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys2.Close() }()
	partner2, _, err := keys2.Create(context.Background(), apikey.CreateParams{Name: "p", Owner: "service:p", Client: "partner"}, "test")
	apptest.Must(t, err, "key")
	wantProblem(t, get(t, in2.Client(), in2.URL("/partner/json"), "Authorization", "Bearer "+partner2), 403, "urn:keyway:problem:forbidden")
}

// TestBFFCORS: the browser app's origin, and only it, may call its routes
// with the session cookie; keyway answers preflights itself, and an
// upstream's CORS headers never widen that.
func TestBFFCORS(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(bffYAML, bffUpstream(t)))
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	p.register(map[string]string{"username": "nia"})
	const app = "https://app.localhost"
	preflight := func(origin, method string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, in.URL("/app/json"), nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "content-type, x-keyway-csrf")
		res, err := in.Client().Do(req)
		apptest.Must(t, err, "preflight")
		return res
	}
	res := preflight(app, "POST")
	_ = body(t, res)
	h := res.Header
	if res.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != app || h.Get("Access-Control-Allow-Credentials") != "true" ||
		h.Get("Access-Control-Allow-Methods") != "GET, POST" || h.Get("Access-Control-Max-Age") != "300" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-Keyway-Csrf") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-Trace") {
		t.Fatalf("preflight: %d %v", res.StatusCode, h)
	}
	for _, tt := range []struct{ origin, method string }{{"https://evil.example", "POST"}, {app, "DELETE"}, {"null", "GET"}} {
		res := preflight(tt.origin, tt.method)
		_ = body(t, res)
		if res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight %s %s: %d %q", tt.origin, tt.method, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	call := func(origin, site string, csrf bool) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, in.URL("/app/json"), strings.NewReader(`{}`))
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", site)
		if csrf {
			req.Header.Set("X-Keyway-CSRF", "1")
		}
		req.AddCookie(p.cookie())
		res, err := in.Client().Do(req)
		apptest.Must(t, err, "POST")
		return res
	}
	res = call(app, "same-site", true)
	if b := body(t, res); res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != app ||
		len(res.Header.Values("Access-Control-Allow-Origin")) != 1 || strings.Contains(b, "secret") {
		t.Fatalf("the app's POST: %d %v %s", res.StatusCode, res.Header, b)
	}
	if res := call(app, "same-site", false); res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("the app's POST without the CSRF header: %d (the refusal must be readable by the app)", res.StatusCode)
	} else {
		_ = body(t, res)
	}
	for _, tt := range []struct{ origin, site string }{{"https://evil.example", "same-site"}, {app, "cross-site"}} {
		res := call(tt.origin, tt.site, true)
		_ = body(t, res)
		if res.StatusCode != 403 {
			t.Errorf("POST from %s (%s): %d", tt.origin, tt.site, res.StatusCode)
		}
		if tt.origin != app && res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("a foreign origin got CORS headers (the upstream's * must never pass)")
		}
	}
	// Same-origin requests need no CORS and get none of the upstream's.
	res, _ = p.do("GET", "/app/json", nil)
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("the upstream's CORS headers reached a same-origin answer: %v", res.Header)
	}
}
