package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/ratelimit"
)

// cannedTransport answers every request at once, so a benchmark measures
// keyway's own work per request and none of the network's.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}, "Content-Length": {"2"}},
		Body:   io.NopCloser(strings.NewReader("{}")), ContentLength: 2, Request: r}, nil
}

// cannedUpstream is an upstream on loopback TCP that answers every
// request at once, allocating nothing per request: a benchmark then counts
// the direct path's own work, over a real connection (net.Pipe's
// deadlines would add timers of their own).
func cannedUpstream(b *testing.B) *url.URL {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveCanned(c)
		}
	}()
	u, _ := url.Parse("http://" + ln.Addr().String())
	return u
}

func serveCanned(c net.Conn) {
	defer func() { _ = c.Close() }()
	br := bufio.NewReader(c)
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	for {
		n := 0 // the body's length, as the direct path writes it
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) == 2 {
				break
			}
			if rest, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				for _, d := range bytes.TrimSpace(rest) {
					n = n*10 + int(d-'0')
				}
			}
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// oneKey is a KeyVerifier with one key whose checks always pass.
type oneKey struct {
	raw string
	v   *apikey.Verified
}

func (o *oneKey) Verify(_ context.Context, raw string, _ netip.Addr) (*apikey.Verified, error) {
	if _, err := apikey.Parse(raw); err != nil || raw != o.raw {
		return nil, apikey.ErrInvalid
	}
	return o.v, nil
}
func (o *oneKey) ConsumeQuota(context.Context, *apikey.Verified) (bool, error) { return true, nil }
func (o *oneKey) Record(*apikey.Verified, apikey.Outcome)                      {}

// benchGateway is a gateway with a public route (/hello), an api_key route
// (/key) and forward auth for loopback, an in-memory upstream and a stubbed
// key check; it returns the one key that passes.
func benchGateway(b *testing.B, access *AccessLog) (*Gateway, string) {
	b.Helper()
	p, _ := apikey.Generate(rand.Reader, apikey.EnvLive)
	keys := &oneKey{raw: p.Raw, v: &apikey.Verified{Key: &apikey.Key{ID: p.ID, Owner: "service:bench", Scopes: []string{"bench"},
		Rate: apikey.Rate{Count: 1_000_000, Period: time.Second}, ExpiresAt: time.Now().Add(time.Hour)}, DisplayID: "key_" + p.ID,
		ScopeList: "bench", Owner: principal.Service("bench")}}
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	b.Cleanup(lim.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	core, err := decision.New(decision.Config{Keys: keys, KeyLimiter: lim, Origins: []string{"https://localhost"}, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	u := cannedUpstream(b)
	var d net.Dialer
	up := &Upstream{name: "up", url: u, transport: cannedTransport{}, h1: newH1Pool(u, 16, time.Minute, time.Second,
		func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", u.Host) })}
	b.Cleanup(up.Close)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	g, err := New(Config{
		Routes: []Route{
			{Name: "pub", Prefix: "/hello", Methods: []string{"GET"}, Upstream: up, Policy: decision.Public, MaxBody: 1 << 20, Timeout: time.Second},
			{Name: "key", Prefix: "/key", Methods: []string{"GET", "POST"}, Upstream: up, Policy: decision.APIKey, Scopes: []string{"bench"},
				StripPrefix: true, MaxBody: 1 << 20, Timeout: time.Second},
		},
		Own: http.NotFoundHandler(), Decider: core, HSTSMaxAge: 365 * 24 * time.Hour, Logger: logger, AccessLog: access,
		ClientIP: clientip.New(loopback, 64), ForwardAuth: &ForwardAuth{Proxies: clientip.New(loopback, 64)},
	})
	if err != nil {
		b.Fatal(err)
	}
	return g, p.Raw
}

// BenchmarkGatewayOverhead compares keyway's own work on a public route with
// its work on an api_key route (key check, limiter, identity headers),
// through ServeHTTP with an in-memory upstream. The key check itself is
// stubbed here; apikey.BenchmarkVerifyHotPath measures it.
func BenchmarkGatewayOverhead(b *testing.B) {
	g, key := benchGateway(b, nil)
	for _, tt := range []struct{ name, path, auth string }{
		{"public", "/hello", ""},
		{"api_key", "/key/hello", "Bearer " + key},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, "https://localhost"+tt.path, nil)
				if tt.auth != "" {
					r.Header.Set("Authorization", tt.auth)
				}
				w := httptest.NewRecorder()
				g.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("%s: %d %s", tt.path, w.Code, w.Body)
				}
			}
		})
	}
}

// nopWriter is the cheapest ResponseWriter: a reused header map, nothing
// kept, so a profile shows keyway's own work.
type nopWriter struct {
	h    http.Header
	code int
}

func (n *nopWriter) Header() http.Header         { return n.h }
func (n *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (n *nopWriter) WriteHeader(code int)        { n.code = code }

// BenchmarkForwardAuthAnswer is keyway's whole work for one nginx
// auth_request question on an api_key route, access log included, with
// the cheapest ResponseWriter, so that a profile shows keyway's own costs.
// The key check is stubbed; decision.BenchmarkDecideAPIKey measures it.
func BenchmarkForwardAuthAnswer(b *testing.B) {
	g, key := benchGateway(b, &AccessLog{W: io.Discard})
	r := httptest.NewRequest(http.MethodGet, "https://localhost"+verifyNginx, nil)
	r.RemoteAddr = "127.0.0.1:4321"
	r.Header.Set("Authorization", "Bearer "+key)
	r.Header.Set("X-Original-Uri", "/key/hello")
	r.Header.Set("X-Original-Method", http.MethodGet)
	b.ReportAllocs()
	for b.Loop() {
		w := &nopWriter{h: make(http.Header, 16)}
		g.ServeHTTP(w, r)
		if w.code != 200 {
			b.Fatal(w.code)
		}
	}
}

// BenchmarkHandlerPath is keyway's whole handler path for one request:
// ServeHTTP, the decision, the forwarding with its header rewriting and
// the answer's copy, access log on, on each path: "direct" (keyway's own
// HTTP/1.1 client, what a GET takes, to an upstream on loopback TCP that
// allocates nothing) and "standard" (httputil.ReverseProxy over an in-memory
// transport whose answer adds 4: response, header map, reader,
// NopCloser). Unlike BenchmarkGatewayOverhead, the request and the
// response writer are reused, as net/http's server makes them, so that
// allocs/op counts keyway's work. Issue 11's target: at most 20 on the
// api_key route.
func BenchmarkHandlerPath(b *testing.B) {
	g, key := benchGateway(b, &AccessLog{W: io.Discard})
	for _, path := range []string{"direct", "standard"} {
		for _, tt := range []struct{ name, path, auth, body string }{
			{"public", "/hello", "", ""},
			{"api_key", "/key/hello", "Bearer " + key, ""},
			// A POST of 1 KiB of JSON (on the standard path, the canned
			// transport drops the body unread: its figure is a floor).
			{"api_key_post", "/key/hello", "Bearer " + key, `{"data":"` + strings.Repeat("x", 1011) + `"}`},
		} {
			b.Run(path+"/"+tt.name, func(b *testing.B) {
				g.cfg.StandardProxyOnly = path == "standard"
				method := http.MethodGet
				if tt.body != "" {
					method = http.MethodPost
				}
				r := httptest.NewRequest(method, "https://localhost"+tt.path, nil)
				body := strings.NewReader(tt.body)
				rc := io.NopCloser(body)
				r.ContentLength = int64(len(tt.body))
				r.RemoteAddr = "198.51.100.7:4321"
				r.Header.Set("User-Agent", "bench/1")
				r.Header.Set("Accept", "application/json")
				if tt.auth != "" {
					r.Header.Set("Authorization", tt.auth)
				}
				w := &nopWriter{h: make(http.Header, 16)}
				b.ReportAllocs()
				for b.Loop() {
					clear(w.h)
					w.code = 0
					if tt.body != "" {
						body.Reset(tt.body)
						r.Body = rc
					}
					g.ServeHTTP(w, r)
					if w.code != 200 {
						b.Fatalf("%s: %d", tt.path, w.code)
					}
				}
			})
		}
	}
}
