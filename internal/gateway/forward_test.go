package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/ratelimit"
)

// rawUpstream is an upstream on loopback that records each request's head
// exactly as it came over the wire and answers with what answer returns
// for it (the n-th request on its connection, from 1).
type rawUpstream struct {
	ln      net.Listener
	scheme  string
	roots   *x509.CertPool // for https
	accepts atomic.Int64
	mu      sync.Mutex
	heads   []string
	from    string // the client address of the last request
	answer  func(c net.Conn, n int, head string)
}

func newRawUpstream(t testing.TB, answer func(c net.Conn, n int, head string)) *rawUpstream {
	t.Helper()
	return newRawUpstreamTLS(t, false, answer)
}

// newRawUpstreamTLS is newRawUpstream, over TLS (HTTP/1.1 only) when
// withTLS is set, with httptest's certificate for 127.0.0.1.
func newRawUpstreamTLS(t testing.TB, withTLS bool, answer func(c net.Conn, n int, head string)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, answer: answer, scheme: "http"}
	if withTLS {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		cfg := srv.TLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		u.roots = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		srv.Close()
		u.ln = tls.NewListener(ln, cfg)
		u.scheme = "https"
	}
	ln = u.ln
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { _ = c.Close() }()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					body, err := readRawBody(br, head.String())
					if err != nil {
						return
					}
					u.mu.Lock()
					u.heads = append(u.heads, head.String()+body)
					u.from = c.RemoteAddr().String()
					u.mu.Unlock()
					u.answer(c, n, head.String())
				}
			}()
		}
	}()
	return u
}

// readRawBody reads the body a request head announces: by its
// Content-Length, or its chunks.
func readRawBody(br *bufio.Reader, head string) (string, error) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	if err != nil {
		return "", nil // a head net/http cannot read announces no body it can frame
	}
	var r io.Reader
	switch {
	case len(req.TransferEncoding) > 0:
		r = httputil.NewChunkedReader(br)
	case req.ContentLength > 0:
		r = io.LimitReader(br, req.ContentLength)
	default:
		return "", nil
	}
	b, err := io.ReadAll(r)
	if err == nil && len(req.TransferEncoding) > 0 {
		// The trailer section, up to its empty line.
		for line := ""; line != "\r\n" && err == nil; {
			line, err = br.ReadString('\n')
		}
	}
	return string(b), err
}

func (u *rawUpstream) url() string { return u.scheme + "://" + u.ln.Addr().String() }

// take returns the heads recorded so far and forgets them.
func (u *rawUpstream) take() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	h := u.heads
	u.heads = nil
	return h
}

func answerOK(c net.Conn, _ int, head string) {
	body := "{}"
	if strings.HasPrefix(head, "HEAD ") {
		body = ""
	}
	_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"+body)
}

// testKeys is a key check with one key, as in the benchmarks.
func testKeys(t testing.TB) (*oneKey, string) {
	t.Helper()
	p, _ := apikey.Generate(rand.Reader, apikey.EnvLive)
	return &oneKey{raw: p.Raw, v: &apikey.Verified{Key: &apikey.Key{ID: p.ID, Owner: "service:t", Scopes: []string{"t"},
		Rate: apikey.Rate{Count: 1_000_000, Period: time.Second}, ExpiresAt: time.Now().Add(time.Hour)}, DisplayID: "key_" + p.ID,
		ScopeList: "t", Owner: principal.Service("t")}}, p.Raw
}

// forwardGateway serves, behind a real HTTP server on loopback, a public
// route /pub, an api_key route /key (prefix stripped, upstream base path
// /base), and a public route /pass that lets X_Custom through.
func forwardGateway(t testing.TB, upURL string, keys *oneKey, std bool, timeout time.Duration, log io.Writer) (*Gateway, *Upstream, string) {
	t.Helper()
	return forwardGatewayRoots(t, upURL, nil, keys, std, timeout, log)
}

// forwardGatewayRoots is forwardGateway for an https upstream whose
// certificate roots are given.
func forwardGatewayRoots(t testing.TB, upURL string, roots *x509.CertPool, keys *oneKey, std bool, timeout time.Duration,
	log io.Writer) (*Gateway, *Upstream, string) {
	t.Helper()
	up, err := NewUpstream(UpstreamConfig{Name: "up", URL: upURL, RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	up2, err := NewUpstream(UpstreamConfig{Name: "based", URL: upURL + "/base/", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	t.Cleanup(lim.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var access *AccessLog
	if log != nil {
		access = &AccessLog{W: log}
		logger = slog.New(slog.NewTextHandler(log, nil)) // error lines beside the access lines
	}
	core, err := decision.New(decision.Config{Keys: keys, KeyLimiter: lim, Origins: []string{"https://localhost"}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{
		Routes: []Route{
			{Name: "pub", Prefix: "/pub", Methods: []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, Upstream: up, Policy: decision.Public, MaxBody: 1 << 20, Timeout: timeout},
			{Name: "key", Prefix: "/key", Methods: []string{"GET", "HEAD", "PUT"}, Upstream: up2, Policy: decision.APIKey, Scopes: []string{"t"},
				StripPrefix: true, MaxBody: 1 << 20, Timeout: timeout},
			{Name: "pass", Prefix: "/pass", Methods: []string{"GET"}, Upstream: up, Policy: decision.Public, MaxBody: 1 << 20,
				Timeout: timeout, PassHeaders: []string{"X_custom"}},
		},
		Own: http.NotFoundHandler(), Decider: core, HSTSMaxAge: 365 * 24 * time.Hour, Logger: logger, AccessLog: access,
		ClientIP: clientip.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, 64), StandardProxyOnly: std,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(g)
	srv.Config.ErrorLog = nil
	srv.Start()
	t.Cleanup(func() { srv.Close(); g.Close(); up.Close(); up2.Close() })
	return g, up, srv.Listener.Addr().String()
}

// rawRequest sends head (with \n line ends) on a new connection and
// returns the answer, and as much of its body as came.
func rawRequest(t *testing.T, addr, head string) (*http.Response, []byte) {
	t.Helper()
	res, body, err := doRaw(t, addr, head)
	if res == nil {
		t.Fatalf("%s: %v", head, err)
	}
	return res, []byte(body)
}

// doRaw sends head (\n line ends) on a new connection and returns the
// answer and its body, or the error that ended the exchange (a connection
// the gateway aborted).
func doRaw(t *testing.T, addr, head string) (*http.Response, string, error) {
	t.Helper()
	return sendBody(t, addr, head, "", false)
}

// sendBody writes head (\n line ends) and body on a new connection, half-closes
// it when asked, and returns the answer, or the error that ended it.
func sendBody(t *testing.T, addr, head, body string, closeWrite bool) (*http.Response, string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	head = strings.ReplaceAll(strings.TrimLeft(head, "\n"), "\n", "\r\n")
	if _, err := io.WriteString(c, head+"\r\n"+body); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	method, _, _ := strings.Cut(head, " ")
	res, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	return res, string(b), err
}

// headLines is a request head as its request line and its sorted header
// lines, names in canonical form (the two clients write the same header
// in different but equivalent ways: order, case).
func headLines(head string) []string {
	head, body, _ := strings.Cut(head, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	hs := lines[1:]
	for i, l := range hs {
		k, v, _ := strings.Cut(l, ":")
		hs[i] = http.CanonicalHeaderKey(k) + ": " + strings.TrimSpace(v)
		if strings.HasPrefix(hs[i], "X-Request-Id: ") {
			hs[i] = "X-Request-Id: (each gateway's own)"
		}
	}
	slices.Sort(hs)
	if body != "" {
		hs = append(hs, fmt.Sprintf("(body %q)", body))
	}
	return append([]string{lines[0]}, hs...)
}

// The direct path must send the upstream exactly what the standard path
// sends, for every kind of header a client can send and every spelling.
func TestDirectPathSendsWhatTheStandardPathSends(t *testing.T) {
	up := newRawUpstream(t, answerOK)
	keys, key := testKeys(t)
	gStd, upStd, addrStd := forwardGateway(t, up.url(), keys, true, 5*time.Second, nil)
	gDir, upDir, addrDir := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
	_, _ = gStd, gDir

	cases := []string{
		"GET /pub/a HTTP/1.1\nHost: localhost\nUser-Agent: t/1\nAccept: */*\n",
		"GET /pub/a?x=1&y=%41 HTTP/1.1\nHost: localhost\n",
		"GET /pub/a?x=1;y=2&z=%zz&w=3 HTTP/1.1\nHost: localhost\n",
		"GET /pub/a? HTTP/1.1\nHost: localhost\n",
		"GET /pub/a%20b/caf%C3%A9/%2541 HTTP/1.1\nHost: localhost\n",
		"HEAD /pub/h HTTP/1.1\nHost: localhost\nAccept: text/plain\n",
		"GET /pub/hdr HTTP/1.1\nHost: localhost\nX-Forwarded-For: 1.2.3.4\nX-Forwarded-Host: evil.example\nX-Forwarded-Proto: http\n" +
			"Forwarded: for=1.2.3.4\nX-Real-IP: 1.2.3.4\nX-Request-Id: mine\nX-Keyway-Subject: admin\nx-keyway-roles: admin\n" +
			"X_Keyway_Subject: admin\nX-Forwarded_For: 9.9.9.9\nX-HTTP-Method-Override: DELETE\nX-Original-URL: /admin\nX_Custom: 1\n",
		"GET /pub/trace HTTP/1.1\nHost: localhost\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n" +
			"Tracestate: a=b\nBaggage: k=v\nB3: 1-2-1\nX-B3-TraceId: 1\nUber-Trace-Id: 1:2:0:1\nSw8: x\nGrpc-Trace-Bin: AA\n",
		"GET /pub/cookie HTTP/1.1\nHost: localhost\nCookie: __Host-keyway_session=s; theirs=1\nCookie: keyway_csrf=c; __Secure-keyway_x=2; other=2\n",
		"GET /pub/cookie2 HTTP/1.1\nHost: localhost\nCookie: __HOST-KEYWAY_session=s\n",
		"GET /pub/cookie3 HTTP/1.1\nHost: localhost\nCookie: theirs=1\nConnection: cookie\n",
		"GET /pub/hop HTTP/1.1\nHost: localhost\nConnection: keep-alive, X-Drop-Me, accept\nX-Drop-Me: 1\nAccept: */*\nKeep-Alive: 300\n" +
			"Proxy-Authorization: Basic eA==\nProxy-Connection: keep-alive\nTe: trailers, deflate\nUpgrade: h2c\nTrailer: X\nHttp2-Settings: AAA\n",
		"GET /pub/te HTTP/1.1\nHost: localhost\nTE: gzip\n",
		"GET /pub/ua HTTP/1.1\nHost: localhost\nUser-Agent: first\nUser-Agent: second\n",
		"GET /pub/auth HTTP/1.1\nHost: localhost\nAuthorization: Basic dXNlcjpwdw==\n",
		"GET /pub/auth HTTP/1.1\nHost: localhost\nAuthorization: Bearer " + key + "\n",
		"GET /key/hello?q=1 HTTP/1.1\nHost: localhost\nAuthorization: Bearer " + key + "\nAccept: application/json\n",
		"HEAD /key/ HTTP/1.1\nHost: localhost\nAuthorization: Bearer " + key + "\n",
		"GET /pass/x HTTP/1.1\nHost: localhost\nX_Custom: 1\nX_Other: 2\nX-Http-Method-Override: PUT\n",
		"GET /pub/len HTTP/1.1\nHost: localhost\nContent-Length: 0\n",
		"GET /pub/ws HTTP/1.1\nHost: localhost\nUpgrade: websocket\n",
		"GET /pub/dup HTTP/1.1\nHost: localhost\nX-Multi: 1\nX-Multi: 2\nx-multi: 3\n",
		"GET http://localhost/pub/absolute HTTP/1.1\nHost: localhost\n",
		// Bodies: a known length up to one buffer takes the direct path.
		"POST /pub/post HTTP/1.1\nHost: localhost\nContent-Type: application/json\nContent-Length: 13\n\n{\"a\":\"hello\"}",
		"PUT /key/put HTTP/1.1\nHost: localhost\nAuthorization: Bearer " + key + "\nContent-Length: 3\n\nabc",
		"PATCH /pub/patch HTTP/1.1\nHost: localhost\nContent-Length: 0\n",
		"POST /pub/nolength HTTP/1.1\nHost: localhost\n",
		"DELETE /pub/del HTTP/1.1\nHost: localhost\n",
		"DELETE /pub/del HTTP/1.1\nHost: localhost\nContent-Length: 4\n\nwhy?",
		"OPTIONS /pub/opt HTTP/1.1\nHost: localhost\nContent-Length: 0\n",
		"POST /pub/cl HTTP/1.1\nHost: localhost\nContent-Length: 2\nContent-Length: 2\n\nok",
		"POST /pub/cl-te HTTP/1.1\nHost: localhost\nContent-Length: 3\nTransfer-Encoding: chunked\n\n3\nabc\n0\n",
		"POST /pub/chunked HTTP/1.1\nHost: localhost\nTransfer-Encoding: chunked\n\n3\nabc\n0\n",
		"POST /pub/idem HTTP/1.1\nHost: localhost\nIdempotency-Key: k1\nContent-Length: 1\n\nx",
		"POST /pub/full HTTP/1.1\nHost: localhost\nContent-Length: 32768\n\n" + strings.Repeat("b", 32768),
		"POST /pub/over HTTP/1.1\nHost: localhost\nContent-Length: 32769\n\n" + strings.Repeat("o", 32769),
		"POST /pub/smuggle HTTP/1.1\nHost: localhost\nContent-Length: 44\n\nGET /admin HTTP/1.1\nHost: localhost\nX: y",
	}
	for _, c := range cases {
		resStd, _ := rawRequest(t, addrStd, c)
		std := up.take()
		resDir, _ := rawRequest(t, addrDir, c)
		dir := up.take()
		if resStd.StatusCode != resDir.StatusCode {
			t.Errorf("%q: status %d on the standard path, %d on the direct one", c, resStd.StatusCode, resDir.StatusCode)
			continue
		}
		if len(std) != len(dir) {
			t.Errorf("%q: the upstream got %d requests on the standard path, %d on the direct one", c, len(std), len(dir))
			continue
		}
		for i := range std {
			a, b := headLines(std[i]), headLines(dir[i])
			// Host: the transport writes the URL's host, as the direct path.
			if !slices.Equal(a, b) {
				t.Errorf("%q:\nstandard path sent\n  %s\ndirect path sent\n  %s", c, strings.Join(a, "\n  "), strings.Join(b, "\n  "))
			}
		}
	}
	// Absolute checks, so that both paths wrong the same way still fails.
	rawRequest(t, addrDir, cases[6])
	got := strings.Join(headLines(up.take()[0]), "\n")
	for _, bad := range []string{"1.2.3.4", "evil.example", "admin", "mine", "9.9.9.9", "DELETE", "/admin", "X_custom"} {
		if strings.Contains(got, bad) {
			t.Errorf("the direct path passed %q upstream:\n%s", bad, got)
		}
	}
	for _, want := range []string{"GET /pub/hdr HTTP/1.1", "X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: https", "X-Real-Ip: 127.0.0.1", "X-Forwarded-Host: localhost"} {
		if !strings.Contains(got, want) {
			t.Errorf("the direct path did not send %q:\n%s", want, got)
		}
	}
	rawRequest(t, addrDir, cases[16])
	got = strings.Join(headLines(up.take()[0]), "\n")
	if strings.Contains(got, key) || !strings.Contains(got, "GET /base/hello?q=1 HTTP/1.1") || !strings.Contains(got, "X-Keyway-Subject: service:t") {
		t.Errorf("api_key route on the direct path sent:\n%s", got)
	}
	// The direct gateway kept its connection; the standard one never used its pool.
	upDir.h1.mu.Lock()
	nDir := len(upDir.h1.idle)
	upDir.h1.mu.Unlock()
	if nDir == 0 || len(upStd.h1.idle) != 0 {
		t.Errorf("idle direct connections: %d on the direct gateway, %d on the standard one", nDir, len(upStd.h1.idle))
	}
}

// One connection serves request after request; an upstream that closes
// idle connections, or answers without a length, never costs a client an
// error.
func TestDirectPathReusesAndRecovers(t *testing.T) {
	keys, _ := testKeys(t)
	t.Run("reuse", func(t *testing.T) {
		up := newRawUpstream(t, answerOK)
		_, _, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
		for range 20 {
			if res, _ := rawRequest(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n"); res.StatusCode != 200 {
				t.Fatal(res.Status)
			}
		}
		if n := up.accepts.Load(); n != 1 {
			t.Errorf("20 requests opened %d upstream connections, want 1", n)
		}
	})
	t.Run("closed while idle", func(t *testing.T) {
		up := newRawUpstream(t, func(c net.Conn, n int, _ string) {
			answerOK(c, n, "GET")
			_ = c.Close() // without Connection: close
		})
		_, _, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
		for i := range 10 {
			if i%2 == 1 {
				time.Sleep(20 * time.Millisecond) // the close has arrived
			}
			if res, _ := rawRequest(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n"); res.StatusCode != 200 {
				t.Fatalf("request %d: %s", i, res.Status)
			}
		}
	})
	t.Run("closed on the next request", func(t *testing.T) {
		// The upstream reads the second request on a connection and closes
		// it unanswered: GET is sent again on a new connection.
		up := newRawUpstream(t, func(c net.Conn, n int, _ string) {
			if n == 2 {
				_ = c.Close()
				return
			}
			answerOK(c, n, "GET")
		})
		_, _, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
		for i := range 6 {
			if res, _ := rawRequest(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n"); res.StatusCode != 200 {
				t.Fatalf("request %d: %s", i, res.Status)
			}
		}
	})
	t.Run("a body is never sent twice", func(t *testing.T) {
		// The same upstream: a POST with a body, or without one, is not
		// sent again (502, as http.Transport gives ReverseProxy); one
		// with an idempotency key, and a DELETE with it, are.
		up := newRawUpstream(t, func(c net.Conn, n int, _ string) {
			if n == 2 {
				_ = c.Close()
				return
			}
			answerOK(c, n, "POST")
		})
		_, _, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
		for _, tt := range []struct {
			req  string
			want int
			sent int
		}{
			{"POST /pub/x HTTP/1.1\nHost: localhost\nContent-Length: 3\n\nabc", http.StatusBadGateway, 1},
			{"POST /pub/x HTTP/1.1\nHost: localhost\n", http.StatusBadGateway, 1},
			{"DELETE /pub/x HTTP/1.1\nHost: localhost\n", http.StatusBadGateway, 1},
			{"POST /pub/x HTTP/1.1\nHost: localhost\nIdempotency-Key: k\n", http.StatusOK, 2},
			{"DELETE /pub/x HTTP/1.1\nHost: localhost\nX-Idempotency-Key: k\n", http.StatusOK, 2},
			{"POST /pub/x HTTP/1.1\nHost: localhost\nIdempotency-Key: k\nContent-Length: 1\n\nz", http.StatusBadGateway, 1},
		} {
			// A first request leaves a connection idle; the second on it
			// is read and dropped.
			if res, _ := rawRequest(t, addr, "GET /pub/warm HTTP/1.1\nHost: localhost\n"); res.StatusCode != 200 {
				t.Fatal(res.Status)
			}
			up.take()
			res, _ := rawRequest(t, addr, tt.req)
			if got := len(up.take()); res.StatusCode != tt.want || got != tt.sent {
				t.Errorf("%q: %d, sent %d times; want %d, sent %d times", tt.req, res.StatusCode, got, tt.want, tt.sent)
			}
		}
	})
	t.Run("close-delimited answer", func(t *testing.T) {
		up := newRawUpstream(t, func(c net.Conn, n int, _ string) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
			_ = c.Close()
		})
		_, _, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
		for range 3 {
			res, body := rawRequest(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
			if res.StatusCode != 200 || string(body) != "all of it" {
				t.Fatalf("%s %q", res.Status, body)
			}
		}
		if n := up.accepts.Load(); n != 3 {
			t.Errorf("close-delimited answers: %d connections for 3 requests", n)
		}
	})
}

// An upstream that sends two answers to one request must never have the
// second taken for the answer to another client's request.
func TestDirectPathNeverTakesAnUnaskedAnswer(t *testing.T) {
	keys, _ := testKeys(t)
	for _, tc := range []struct {
		tls   bool
		delay time.Duration
	}{{false, 0}, {false, 30 * time.Millisecond}, {true, 0}, {true, 30 * time.Millisecond}} {
		delay := tc.delay
		t.Run(fmt.Sprintf("tls=%v/%v", tc.tls, delay), func(t *testing.T) {
			up := newRawUpstreamTLS(t, tc.tls, func(c net.Conn, n int, head string) {
				if strings.HasPrefix(head, "GET /pub/victim") {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nvictim")
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
				time.Sleep(delay)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nSet-Cookie: x=1\r\n\r\nsmuggled")
			})
			_, _, addr := forwardGatewayRoots(t, up.url(), up.roots, keys, false, 5*time.Second, nil)
			if _, body := rawRequest(t, addr, "GET /pub/attacker HTTP/1.1\nHost: localhost\n"); string(body) != "first" {
				t.Fatalf("attacker got %q", body)
			}
			time.Sleep(2*delay + 10*time.Millisecond)
			for range 3 {
				if _, body := rawRequest(t, addr, "GET /pub/victim HTTP/1.1\nHost: localhost\n"); string(body) != "victim" {
					t.Fatalf("the victim got %q", body)
				}
			}
		})
	}
}

// The direct path's failures: each answered as the standard path answers
// it, never as a success.
func TestDirectPathFailures(t *testing.T) {
	keys, _ := testKeys(t)
	cases := []struct {
		name    string
		answer  func(c net.Conn, n int, head string)
		status  int
		timeout time.Duration // the route's; 5 s if 0 (a megabyte under -race on a busy machine takes a while)
	}{
		{"head too large", func(c net.Conn, _ int, _ string) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", maxAnswerHead+10)+"\r\nContent-Length: 0\r\n\r\n")
		}, http.StatusBadGateway, 0},
		{"not HTTP", func(c net.Conn, _ int, _ string) { _, _ = io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n") }, http.StatusBadGateway, 0},
		{"closed unanswered", func(c net.Conn, _ int, _ string) { _ = c.Close() }, http.StatusBadGateway, 0},
		{"unasked upgrade", func(c net.Conn, _ int, _ string) {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
		}, http.StatusBadGateway, 0},
		{"informational answers past the head bound", func(c net.Conn, _ int, _ string) {
			// Each fits; together they pass the one bound they share.
			for range 11 {
				_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </"+strings.Repeat("x", maxAnswerHead/10)+">\r\n\r\n")
			}
		}, http.StatusBadGateway, 0},
		{"status below 100", func(c net.Conn, _ int, _ string) {
			_, _ = io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 4\r\n\r\nodd!")
		}, http.StatusBadGateway, 0},
		{"silent", func(c net.Conn, _ int, _ string) { time.Sleep(2 * time.Second) }, http.StatusGatewayTimeout, 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newRawUpstream(t, tc.answer)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			_, _, addr := forwardGateway(t, up.url(), keys, false, timeout, nil)
			res, body := rawRequest(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
			if res.StatusCode != tc.status || !strings.Contains(res.Header.Get("Content-Type"), "problem+json") {
				t.Fatalf("%s %s %s", res.Status, res.Header.Get("Content-Type"), body)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		_ = ln.Close()
		_, _, gw := forwardGateway(t, "http://"+addr, keys, false, time.Second, nil)
		if res, _ := rawRequest(t, gw, "GET /pub/x HTTP/1.1\nHost: localhost\n"); res.StatusCode != http.StatusBadGateway {
			t.Fatal(res.Status)
		}
	})
}

// An answer cut short after its head went out must end the client's
// connection: a client must never take a part for the whole. The access
// log still gets the request's line.
func TestDirectPathCutAnswerEndsTheConnection(t *testing.T) {
	keys, _ := testKeys(t)
	for _, framing := range []string{"Content-Length: 100\r\n\r\n0123456789", "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"} {
		t.Run(framing[:8], func(t *testing.T) {
			up := newRawUpstream(t, func(c net.Conn, _ int, _ string) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n"+framing)
				_ = c.Close()
			})
			var log syncBuffer
			_, _, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, &log)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET /pub/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
			// Either the head never went out (still in the server's
			// buffer) or the body ends early: never a whole answer.
			if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				body, err := io.ReadAll(res.Body)
				if err == nil {
					t.Fatalf("a cut answer reached the client as a whole one: %q", body)
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Logf("read error: %v", err)
				}
			}
			deadline := time.Now().Add(2 * time.Second)
			for !strings.Contains(log.String(), `"path":"/pub/x"`) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(log.String(), `"path":"/pub/x"`) {
				t.Errorf("no access-log line for the cut answer: %q", log.String())
			}
		})
	}
}

// What the upstream's answer carries that is the proxy's business alone
// never reaches the client, on either path; informational answers are
// skipped (and do not cost the answer its HSTS and request ID); chunked
// answers keep their trailers.
func TestAnswerHeadersOnBothPaths(t *testing.T) {
	keys, _ := testKeys(t)
	up := newRawUpstream(t, func(c net.Conn, _ int, _ string) {
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nSet-Cookie: __Host-keyway_session=planted\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nStrict-Transport-Security: max-age=0\r\n"+
			"Alt-Svc: h3=\":1\"\r\nSet-Cookie: theirs=1\r\nX-Kept: yes\r\nTrailer: X-Sum, Set-Cookie\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"5\r\nhello\r\n0\r\nX-Sum: 42\r\nSet-Cookie: __Host-keyway_session=planted\r\n\r\n")
	})
	for _, std := range []bool{false, true} {
		_, _, addr := forwardGateway(t, up.url(), keys, std, 5*time.Second, nil)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "GET /pub/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		raw, _ := io.ReadAll(io.LimitReader(c, 4096))
		_ = c.Close()
		if strings.Contains(string(raw), " 103 ") || strings.Contains(string(raw), "planted") {
			t.Errorf("standard only %v: an informational answer reached the client:\n%s", std, raw)
		}
		res, body := rawRequest(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\nConnection: close\n")
		if res.StatusCode != 200 || string(body) != "hello" {
			t.Fatalf("standard only %v: %s %q", std, res.Status, body)
		}
		h := res.Header
		if h.Get("X-Secret") != "" || h.Get("Keep-Alive") != "" || h.Get("Alt-Svc") != "" || len(h.Values("Set-Cookie")) != 0 ||
			h.Get("Link") != "" || h.Get("X-Kept") != "yes" || !strings.HasPrefix(h.Get("Strict-Transport-Security"), "max-age=31536000") ||
			h.Get("X-Request-Id") == "" {
			t.Errorf("standard only %v: answer headers: %v", std, h)
		}
		if res.Trailer.Get("X-Sum") != "42" {
			t.Errorf("standard only %v: trailer: %v", std, res.Trailer)
		}
	}
}

// syncBuffer is a bytes buffer safe for the access log's writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An https upstream: the direct path speaks HTTP/1.1 over TLS to it, with
// the upstream's certificate checked, one connection for many requests;
// with StandardOnly the transport negotiates HTTP/2.
func TestDirectPathOverTLS(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	keys, _ := testKeys(t)
	for _, std := range []bool{false, true} {
		conns.Store(0)
		up, err := NewUpstream(UpstreamConfig{Name: "tls", URL: srv.URL, RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
			StandardOnly: std})
		if err != nil {
			t.Fatal(err)
		}
		g, lim := onePublicRoute(t, up, keys)
		want := "HTTP/1.1"
		if std {
			want = "HTTP/2.0"
		}
		for range 5 {
			w := httptest.NewRecorder()
			g.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://localhost/pub/x", nil))
			if w.Code != 200 || w.Body.String() != want {
				t.Fatalf("standard only %v: %d %q, want %s", std, w.Code, w.Body, want)
			}
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("standard only %v: %d connections for 5 requests", std, n)
		}
		g.Close()
		lim.Close()
	}

	// An upstream certificate from a CA keyway was not given is refused.
	bad, err := NewUpstream(UpstreamConfig{Name: "tls", URL: strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.h1.connect(t.Context(), time.Now().Add(5*time.Second)); err == nil {
		t.Fatal("an upstream certificate from an unknown CA was accepted")
	}
}

// A value keyway would set that a header cannot carry fails the request,
// and nothing of it is written.
func TestWriteFieldRefusesLineBreaks(t *testing.T) {
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	for _, v := range []string{"a\r\nX-Keyway-Roles: admin", "a\nb", "a\rb", "a\x00b"} {
		err := writeField(bw, "X-Keyway-Name", v)
		var bad *badFieldError
		if !errors.As(err, &bad) {
			t.Errorf("%q: %v", v, err)
		}
	}
	_ = bw.Flush()
	if b.Len() != 0 {
		t.Errorf("wrote %q", b.String())
	}
	if err := writeField(bw, "X-Keyway-Name", " Ada Lovelace\t"); err != nil {
		t.Fatal(err)
	}
	_ = bw.Flush()
	if b.String() != "X-Keyway-Name: Ada Lovelace\r\n" {
		t.Errorf("wrote %q", b.String())
	}
}

// The direct path's address and Host header: an internationalised name in
// ASCII, an IPv6 address bracketed, its zone (this machine's interface)
// never sent.
func TestDirectPathUpstreamHost(t *testing.T) {
	for _, tc := range []struct{ url, host string }{
		{"http://bücher.example:8080", "xn--bcher-kva.example:8080"},
		{"https://bücher.example", "xn--bcher-kva.example"},
		{"http://[::1]:9000", "[::1]:9000"},
		{"http://[fe80::1%25eth0]:9000", "[fe80::1]:9000"},
		{"http://127.0.0.1", "127.0.0.1"},
	} {
		up, err := NewUpstream(UpstreamConfig{Name: "u", URL: tc.url})
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if up.h1.host != tc.host {
			t.Errorf("%s: Host %q, want %q", tc.url, up.h1.host, tc.host)
		}
		up.Close()
	}
}

// HTTP/2 clients take the direct path too (net/http's HTTP/2 server gives
// every request a Body, empty when the stream ended), and it sends what
// the standard path sends.
func TestDirectPathForHTTP2Clients(t *testing.T) {
	up := newRawUpstream(t, answerOK)
	keys, key := testKeys(t)
	var addrs [2]string
	var ups [2]*Upstream
	for i, std := range []bool{true, false} {
		g, u, _ := forwardGateway(t, up.url(), keys, std, 5*time.Second, nil)
		srv := httptest.NewUnstartedServer(g)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		t.Cleanup(srv.Close)
		addrs[i], ups[i] = srv.URL, u
		c := srv.Client()
		for _, h := range []http.Header{
			{"Accept": {"*/*"}, "X_keyway_subject": {"admin"}, "Cookie": {"__Host-keyway_session=s", "theirs=1"}, "Te": {"trailers"},
				"X-Forwarded-For": {"1.2.3.4"}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
			{"Authorization": {"Bearer " + key}},
		} {
			path := "/pub/h2?q=1"
			if h.Get("Authorization") != "" {
				path = "/key/h2"
			}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			req.Header = h
			req.Host = "localhost" // the same X-Forwarded-Host from both gateways
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.ProtoMajor != 2 || res.StatusCode != 200 {
				t.Fatalf("%s %s", res.Proto, res.Status)
			}
		}
	}
	heads := up.take()
	if len(heads) != 4 {
		t.Fatalf("%d requests upstream", len(heads))
	}
	for i := range 2 {
		a, b := headLines(heads[i]), headLines(heads[i+2])
		if !slices.Equal(a, b) {
			t.Errorf("standard path sent\n  %s\ndirect path sent\n  %s", strings.Join(a, "\n  "), strings.Join(b, "\n  "))
		}
	}
	got := strings.Join(headLines(heads[2]), "\n")
	for _, bad := range []string{"admin", "__Host-keyway", "1.2.3.4", "0af7651916cd43dd8448eb211c80319c"} {
		if strings.Contains(got, bad) {
			t.Errorf("passed %q upstream:\n%s", bad, got)
		}
	}
	ups[1].h1.mu.Lock()
	n := len(ups[1].h1.idle)
	ups[1].h1.mu.Unlock()
	if n == 0 {
		t.Error("HTTP/2 requests did not take the direct path")
	}
}

// A client that leaves in the middle of an answer is not the upstream's
// failure: no error line, status 499, the upstream connection closed.
func TestDirectPathClientLeavesMidAnswer(t *testing.T) {
	keys, _ := testKeys(t)
	upClosed := make(chan struct{})
	up := newRawUpstream(t, func(c net.Conn, _ int, _ string) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nevent\n\r\n")
		buf := make([]byte, 1)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil { // keyway closes its side
			close(upClosed)
		}
	})
	var log syncBuffer
	_, _, addr := forwardGateway(t, up.url(), keys, false, 10*time.Second, &log)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /pub/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
	br := bufio.NewReader(c)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	select {
	case <-upClosed:
	case <-time.After(3 * time.Second):
		t.Fatal("the upstream connection stayed open after the client left")
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(log.String(), `"status":499`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(log.String(), `"status":499`) || strings.Contains(log.String(), "cut short") {
		t.Errorf("log:\n%s", log.String())
	}
}

// Idle connections the upstream closed are swept, not kept half-closed.
func TestDirectPathSweepsClosedIdleConnections(t *testing.T) {
	old := sweepEvery
	sweepEvery = 50 * time.Millisecond
	t.Cleanup(func() { sweepEvery = old })
	keys, _ := testKeys(t)
	up := newRawUpstream(t, func(c net.Conn, n int, head string) {
		answerOK(c, n, head)
		time.Sleep(20 * time.Millisecond)
		_ = c.Close()
	})
	_, u, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
	if res, _ := rawRequest(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n"); res.StatusCode != 200 {
		t.Fatal(res.Status)
	}
	idle := func() int {
		u.h1.mu.Lock()
		defer u.h1.mu.Unlock()
		return len(u.h1.idle)
	}
	if idle() != 1 {
		t.Fatalf("%d idle after one request", idle())
	}
	deadline := time.Now().Add(2 * time.Second)
	for idle() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if idle() != 0 {
		t.Error("a connection the upstream closed is still idle in the pool")
	}

	// A healthy connection stays, though its last request's deadline (the
	// route's timeout, shorter than the sweep's period) has passed.
	healthy := newRawUpstream(t, answerOK)
	_, hu, haddr := forwardGateway(t, healthy.url(), keys, false, 30*time.Millisecond, nil)
	if res, _ := rawRequest(t, haddr, "GET /pub/x HTTP/1.1\nHost: localhost\n"); res.StatusCode != 200 {
		t.Fatal(res.Status)
	}
	time.Sleep(300 * time.Millisecond) // several sweeps
	hu.h1.mu.Lock()
	n := len(hu.h1.idle)
	hu.h1.mu.Unlock()
	if n != 1 || healthy.accepts.Load() != 1 {
		t.Errorf("a healthy idle connection was swept: %d idle, %d connections", n, healthy.accepts.Load())
	}
}

// Trailers of an HTTP/2 upstream's answer with a length, on the standard
// path (where an https upstream gets HTTP/2), are scrubbed like headers.
func TestStandardPathScrubsHTTP2Trailers(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Set-Cookie, Strict-Transport-Security, X-Sum")
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "{}")
		w.Header().Set("Set-Cookie", "__Host-keyway_session=planted")
		w.Header().Set("Strict-Transport-Security", "max-age=0")
		w.Header().Set("X-Sum", "42")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	keys, _ := testKeys(t)
	g, _, _ := forwardGatewayRoots(t, srv.URL, roots, keys, true, 5*time.Second, nil)
	// An HTTP/2 client: it gets trailers after a body with a length.
	front := httptest.NewUnstartedServer(g)
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	res, err := front.Client().Get(front.URL + "/pub/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != 200 || string(body) != "{}" || res.ProtoMajor != 2 {
		t.Fatalf("%s %s %q", res.Proto, res.Status, body)
	}
	// An announced name keyway dropped may come as keyway's own header's
	// value (the HTTP/2 server sends announced names from the answer's
	// headers), never as the upstream's.
	if res.Trailer.Get("X-Sum") != "42" || strings.Contains(fmt.Sprint(res.Trailer), "planted") ||
		strings.Contains(res.Trailer.Get("Strict-Transport-Security"), "max-age=0") {
		t.Errorf("trailers: %v", res.Trailer)
	}
}

// A dial that times out before the route's deadline is a 502, as on the
// standard path; the route's deadline passing is a 504.
func TestDirectPathDialFailureIsBadGateway(t *testing.T) {
	keys, _ := testKeys(t)
	for _, std := range []bool{false, true} {
		up, err := NewUpstream(UpstreamConfig{Name: "up", URL: "http://127.0.0.1:9", DialTimeout: 50 * time.Millisecond,
			StandardOnly: std})
		if err != nil {
			t.Fatal(err)
		}
		// A dial that never connects, on both paths: it ends at the dial
		// timeout, as net.Dialer's to an unreachable host would.
		hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
			}
		}
		up.transport.(*http.Transport).DialContext = hang
		if up.h1 != nil {
			up.h1.dial = func(ctx context.Context) (net.Conn, error) { return hang(ctx, "", "") }
		}
		g, lim := onePublicRoute(t, up, keys)
		w := httptest.NewRecorder()
		g.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://localhost/pub/x", nil))
		if w.Code != http.StatusBadGateway {
			t.Errorf("standard only %v: %d %s", std, w.Code, w.Body)
		}
		g.Close()
		lim.Close()
	}
}

// onePublicRoute is a gateway with one public route, /pub, to up.
func onePublicRoute(t *testing.T, up *Upstream, keys *oneKey) (*Gateway, *ratelimit.Memory[string]) {
	t.Helper()
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	core, err := decision.New(decision.Config{Keys: keys, KeyLimiter: lim, Origins: []string{"https://localhost"}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Routes: []Route{{Name: "pub", Prefix: "/pub", Methods: []string{"GET"}, Upstream: up,
		Policy: decision.Public, MaxBody: 1, Timeout: 5 * time.Second}}, Own: http.NotFoundHandler(), Decider: core,
		HSTSMaxAge: 365 * 24 * time.Hour, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return g, lim
}

// A body of a known length up to one buffer goes on the direct path, whole
// and with its own length; a larger one, one in chunks and one awaiting a
// 100-continue stream on the standard path. A request with a body is never
// sent twice.
func TestDirectPathTakesSmallBodies(t *testing.T) {
	up := newRawUpstream(t, answerOK)
	keys, _ := testKeys(t)
	_, upDir, addr := forwardGateway(t, up.url(), keys, false, 5*time.Second, nil)
	// The direct path's connection, as the upstream sees it ("" if none).
	directFrom := func() string {
		upDir.h1.mu.Lock()
		defer upDir.h1.mu.Unlock()
		if len(upDir.h1.idle) != 1 {
			return ""
		}
		return upDir.h1.idle[0].nc.LocalAddr().String()
	}
	full := strings.Repeat("f", maxDirectBody)
	for _, tt := range []struct {
		head, body string
		direct     bool
	}{
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\n", "hello", true},
		{"PUT /pub/b HTTP/1.1\nHost: localhost\nContent-Length: 32768\n", full, true},
		{"DELETE /pub/c HTTP/1.1\nHost: localhost\n", "", true},
		{"POST /pub/d HTTP/1.1\nHost: localhost\nContent-Length: 32769\n", full + "x", false},
		{"POST /pub/e HTTP/1.1\nHost: localhost\nTransfer-Encoding: chunked\n", "3\r\nabc\r\n0\r\n\r\n", false},
		{"POST /pub/f HTTP/1.1\nHost: localhost\nExpect: 100-continue\nContent-Length: 3\n", "abc", false},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, strings.ReplaceAll(tt.head, "\n", "\r\n")+"\r\n"+tt.body); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		for err == nil && res.StatusCode < 200 { // the server's 100 Continue
			res, err = http.ReadResponse(br, nil)
		}
		_ = c.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%q: %v %v", tt.head, res, err)
		}
		got := up.take()
		want := tt.body
		if strings.Contains(tt.head, "chunked") {
			want = "abc"
		}
		if len(got) != 1 || !strings.HasSuffix(got[0], "\r\n\r\n"+want) {
			t.Fatalf("%q: the upstream got %d requests, the first ending %q", tt.head, len(got), got[0][max(0, len(got[0])-40):])
		}
		if n := len(want); tt.direct && n > 0 && !strings.Contains(got[0], fmt.Sprintf("\r\nContent-Length: %d\r\n", n)) {
			t.Errorf("%q: no Content-Length of %d in %q", tt.head, n, got[0][:min(len(got[0]), 300)])
		}
		// The direct path's one connection serves every direct request;
		// the standard path's transport has its own.
		up.mu.Lock()
		from := up.from
		up.mu.Unlock()
		if tookDirect := from == directFrom(); tookDirect != tt.direct {
			t.Errorf("%q: direct path %v, want %v", tt.head, tookDirect, tt.direct)
		}
	}
}
