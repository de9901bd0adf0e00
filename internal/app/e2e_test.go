package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/tlsconf"
)

func get(t *testing.T, c *http.Client, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type problemBody struct {
	Type     string `json:"type"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
}

func wantProblem(t *testing.T, res *http.Response, status int, typ string) problemBody {
	t.Helper()
	b := body(t, res)
	if res.StatusCode != status {
		t.Fatalf("status = %d, want %d: %s", res.StatusCode, status, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content-type = %q, want application/problem+json", ct)
	}
	var p problemBody
	if err := json.Unmarshal([]byte(b), &p); err != nil {
		t.Fatalf("problem body %q: %v", b, err)
	}
	if p.Type != typ || p.Status != status {
		t.Fatalf("problem = %+v, want type %s status %d", p, typ, status)
	}
	if !strings.HasSuffix(p.Instance, res.Header.Get("X-Request-Id")) || res.Header.Get("X-Request-Id") == "" {
		t.Fatalf("problem instance %q does not carry the request id %q", p.Instance, res.Header.Get("X-Request-Id"))
	}
	return p
}

func hstsAtLeastAYear(t *testing.T, res *http.Response) {
	t.Helper()
	v := res.Header.Get("Strict-Transport-Security")
	if len(res.Header.Values("Strict-Transport-Security")) != 1 {
		t.Fatalf("want exactly one HSTS header, got %q", res.Header.Values("Strict-Transport-Security"))
	}
	age, err := strconv.Atoi(strings.TrimPrefix(v, "max-age="))
	if err != nil || age < 365*24*3600 {
		t.Fatalf("HSTS = %q, want max-age of at least a year", v)
	}
}

func TestDemo(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	c := in.Client()

	res := get(t, c, in.URL("/v1/forecast?city=Paris"))
	b := body(t, res)
	if res.StatusCode != 200 || !strings.Contains(b, `"city":"Paris"`) {
		t.Fatalf("forecast: %d %s", res.StatusCode, b)
	}
	hstsAtLeastAYear(t, res)
	if res.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id on the response")
	}

	// Routes whose policy is not built yet deny everyone, never open.
	for _, p := range []string{"/v1/history?city=Paris", "/v1/me"} {
		res := get(t, c, in.URL(p))
		if res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", p)
		}
		wantProblem(t, res, 401, "urn:keyway:problem:unauthenticated")
	}
	req, _ := http.NewRequest(http.MethodPost, in.URL("/v1/me/cities"), strings.NewReader(`{"city":"Oslo"}`))
	res, err := c.Do(req)
	apptest.Must(t, err, "POST /v1/me/cities")
	wantProblem(t, res, 401, "urn:keyway:problem:unauthenticated")

	// Own endpoints, with their security headers.
	res = get(t, c, in.URL("/.keyway/healthz"))
	hstsAtLeastAYear(t, res)
	for h, want := range map[string]string{
		"Content-Security-Policy": "frame-ancestors 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if !strings.Contains(res.Header.Get(h), want) {
			t.Errorf("healthz %s = %q, want it to contain %q", h, res.Header.Get(h), want)
		}
	}
	if b := body(t, res); res.StatusCode != 200 || !strings.Contains(b, `"ok"`) {
		t.Fatalf("healthz: %d %s", res.StatusCode, b)
	}
	res = get(t, c, in.URL("/.keyway/readyz"))
	if b := body(t, res); res.StatusCode != 200 {
		t.Fatalf("readyz: %d %s", res.StatusCode, b)
	}
	wantProblem(t, get(t, c, in.URL("/.keyway/nothing-here")), 404, "urn:keyway:problem:not-found")
	wantProblem(t, get(t, c, in.URL("/metrics")), 404, "urn:keyway:problem:not-found")

	// Metrics live on the admin listener only.
	admin := &http.Client{Timeout: 10 * time.Second}
	res = get(t, admin, "http://"+in.App.Addr("admin")+"/metrics")
	if b := body(t, res); res.StatusCode != 200 || !strings.Contains(b, `keyway_requests_total{code="2xx",route="forecast"}`) {
		t.Fatalf("metrics: %d, no forecast counter in:\n%.2000s", res.StatusCode, b)
	}
}

func TestHTTPRedirectsToHTTPS(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	_, httpsPort, _ := net.SplitHostPort(in.App.Addr("https"))
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(m, "http://"+in.App.Addr("http")+"/v1/forecast?city=Paris", nil)
		req.Host = "localhost"
		res, err := c.Do(req)
		apptest.Must(t, err, "%s over plain HTTP", m)
		_ = body(t, res)
		if res.StatusCode != http.StatusPermanentRedirect {
			t.Fatalf("%s: status %d, want 308", m, res.StatusCode)
		}
		want := "https://localhost:" + httpsPort + "/v1/forecast?city=Paris"
		if got := res.Header.Get("Location"); got != want {
			t.Fatalf("Location = %q, want %q", got, want)
		}
	}
	// A garbage Host is refused rather than reflected into a Location.
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.App.Addr("http")+"/", nil)
	req.Host = "evil.example/@x"
	res, err := c.Do(req)
	apptest.Must(t, err, "bad host")
	_ = body(t, res)
	if res.StatusCode != 400 {
		t.Fatalf("bad Host: status %d, want 400", res.StatusCode)
	}
}

func TestTLSPolicy(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	dial := func(tweak func(*tls.Config)) (tls.ConnectionState, error) {
		tc := &tls.Config{RootCAs: in.App.CAPool(), ServerName: "localhost"}
		tweak(tc)
		conn, err := tls.Dial("tcp", in.App.Addr("https"), tc)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState(), nil
	}
	t.Run("TLS 1.3 by default", func(t *testing.T) {
		st, err := dial(func(*tls.Config) {})
		if err != nil || st.Version != tls.VersionTLS13 {
			t.Fatalf("version %x, err %v; want TLS 1.3", st.Version, err)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		_, err := dial(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 })
		if err == nil {
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
	})
	t.Run("TLS 1.2 only AEAD", func(t *testing.T) {
		st, err := dial(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
		apptest.Must(t, err, "TLS 1.2 handshake")
		name := tls.CipherSuiteName(st.CipherSuite)
		if !strings.Contains(name, "GCM") && !strings.Contains(name, "CHACHA20") {
			t.Fatalf("negotiated %s, want an AEAD suite", name)
		}
	})
	t.Run("TLS 1.2 CBC refused", func(t *testing.T) {
		_, err := dial(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			}
		})
		if err == nil {
			t.Fatal("a CBC-only TLS 1.2 client was served")
		}
	})
	t.Run("post-quantum key exchange", func(t *testing.T) {
		st, err := dial(func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768} })
		apptest.Must(t, err, "ML-KEM handshake")
		if st.CurveID != tls.X25519MLKEM768 {
			t.Fatalf("curve = %v, want X25519MLKEM768", st.CurveID)
		}
	})
	t.Run("server policy suites", func(t *testing.T) {
		for _, id := range tlsconf.CipherSuites() {
			if n := tls.CipherSuiteName(id); strings.Contains(n, "CBC") {
				t.Fatalf("policy offers %s", n)
			}
		}
	})
}

const routesYAML = `
data_dir: {{data}}
trusted_proxies: [%s]
upstreams:
  echo:
    url: %s
  down:
    url: %s
routes:
  - name: api
    path: /api
    methods: [GET, POST]
    upstream: echo
    policy: public
    max_body: 1KiB
    timeout: 300ms
  - name: stripped
    path: /s
    upstream: echo
    policy: public
    strip_prefix: true
  - name: down
    path: /down
    upstream: down
    policy: public
`

// closedPort returns a loopback address that refuses connections.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

func startRoutes(t *testing.T, trusted string) (*apptest.Instance, *http.Client) {
	echo := apptest.Echo(t, 2*time.Second)
	cfg := apptest.Config(t, fmt.Sprintf(routesYAML, trusted, echo, closedPort(t)))
	in := apptest.Start(t, cfg)
	return in, in.Client()
}

func TestRoutingAndPathTricks(t *testing.T) {
	in, c := startRoutes(t, "")
	tests := []struct {
		path     string
		status   int
		upstream string // path the upstream must see
	}{
		{"/api", 200, "/api"},
		{"/api/x", 200, "/api/x"},
		{"/api/x/", 200, "/api/x/"},
		{"//api//x", 200, "/api/x"},
		{"/api/./x", 200, "/api/x"},
		{"/api/%78", 200, "/api/x"},
		{"/api/a%20b", 200, "/api/a b"},
		{"/other/../api/x", 200, "/api/x"},
		{"/.keyway/../api/x", 200, "/api/x"},
		{"/s/inner", 200, "/inner"},
		{"/s", 200, "/"},
		{"/nope", 404, ""},
		{"/", 404, ""},
		{"/apix", 404, ""},
		{"/API/x", 404, ""},
		{"/api/../secret", 404, ""},
		{"/api/%2e%2e/secret", 404, ""},
		{"/api/%2E%2E/.keyway/healthz", 200, ""}, // served by keyway itself, never proxied
		{"/api%2fx", 400, ""},
		{"/api%5cx", 400, ""},
		{"/api/%00", 400, ""},
		{"/api;/x", 400, ""},
		{"/api%3B/x", 400, ""},
		{"/api/../../etc/passwd", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := get(t, c, in.URL(tt.path))
			if tt.upstream == "" {
				b := body(t, res)
				if res.StatusCode != tt.status {
					t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, b)
				}
				if tt.status == 200 && !strings.Contains(b, `"status":"ok"`) {
					t.Fatalf("want keyway's own healthz, got %s", b)
				}
				return
			}
			e := apptest.DecodeEcho(t, res)
			if res.StatusCode != tt.status || e.Path != tt.upstream {
				t.Fatalf("status %d, upstream saw %q; want %d and %q", res.StatusCode, e.Path, tt.status, tt.upstream)
			}
		})
	}
	t.Run("405 with Allow", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodDelete, in.URL("/api/x"), nil)
		res, err := c.Do(req)
		apptest.Must(t, err, "DELETE")
		if got := res.Header.Get("Allow"); got != "GET, POST" {
			t.Errorf("Allow = %q", got)
		}
		wantProblem(t, res, 405, "urn:keyway:problem:method-not-allowed")
	})
}

func TestLimitsAndUpstreamFailures(t *testing.T) {
	in, c := startRoutes(t, "")
	t.Run("413 with Content-Length", func(t *testing.T) {
		res, err := c.Post(in.URL("/api/x"), "text/plain", strings.NewReader(strings.Repeat("a", 2048)))
		apptest.Must(t, err, "POST")
		wantProblem(t, res, 413, "urn:keyway:problem:body-too-large")
	})
	t.Run("413 chunked", func(t *testing.T) {
		// An io.Reader of unknown length makes the client send it chunked.
		res, err := c.Post(in.URL("/api/x"), "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("a", 4096))))
		apptest.Must(t, err, "POST")
		wantProblem(t, res, 413, "urn:keyway:problem:body-too-large")
	})
	t.Run("body within the limit passes", func(t *testing.T) {
		res, err := c.Post(in.URL("/api/x"), "text/plain", strings.NewReader(strings.Repeat("a", 1000)))
		apptest.Must(t, err, "POST")
		if e := apptest.DecodeEcho(t, res); e.BodyLen != 1000 {
			t.Fatalf("upstream got %d bytes", e.BodyLen)
		}
	})
	t.Run("431", func(t *testing.T) {
		res := get(t, in.HTTP1Client(), in.URL("/api/x"), "X-Big", strings.Repeat("b", 64<<10))
		_ = body(t, res)
		if res.StatusCode != 431 {
			t.Fatalf("status %d, want 431", res.StatusCode)
		}
	})
	t.Run("502 when the upstream is down", func(t *testing.T) {
		wantProblem(t, get(t, c, in.URL("/down/x")), 502, "urn:keyway:problem:bad-gateway")
	})
	t.Run("504 when the upstream is slow", func(t *testing.T) {
		start := time.Now()
		wantProblem(t, get(t, c, in.URL("/api/slow")), 504, "urn:keyway:problem:gateway-timeout")
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Fatalf("504 took %v; the route timeout is 300ms", d)
		}
	})
}

func TestHeaderStripping(t *testing.T) {
	forged := []string{
		"X-Keyway-Subject", "admin",
		"x-keyway-key-id", "kid_forged",
		"X-KEYWAY-SCOPES", "everything",
		"X-Forwarded-For", "6.6.6.6",
		"X-Forwarded-Host", "evil.example",
		"X-Forwarded-Proto", "http",
		"Forwarded", "for=6.6.6.6",
		"X-Request-Id", "forged-id",
		"Connection", "X-Hop",
		"X-Hop", "hop-by-hop value",
	}
	t.Run("untrusted client", func(t *testing.T) {
		in, _ := startRoutes(t, "")
		res := get(t, in.HTTP1Client(), in.URL("/api/x"), forged...)
		e := apptest.DecodeEcho(t, res)
		for k, v := range e.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-keyway-") {
				t.Errorf("upstream got %s: %q", k, v)
			}
			for _, vv := range v {
				for _, bad := range []string{"6.6.6.6", "evil.example", "forged", "hop-by-hop"} {
					if strings.Contains(vv, bad) {
						t.Errorf("upstream got forged %s: %q", k, vv)
					}
				}
			}
		}
		if got := e.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want 127.0.0.1", got)
		}
		if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto = %q, want https", got)
		}
		if got := e.Header.Get("X-Forwarded-Host"); !strings.HasPrefix(got, "localhost:") {
			t.Errorf("X-Forwarded-Host = %q, want localhost:port", got)
		}
		if id := res.Header.Get("X-Request-Id"); id == "forged-id" || id == "" || e.Header.Get("X-Request-Id") != id {
			t.Errorf("request id: response %q, upstream %q", id, e.Header.Get("X-Request-Id"))
		}
		if got := res.Header.Values("Strict-Transport-Security"); len(got) != 1 || got[0] == "max-age=5" {
			t.Errorf("upstream HSTS leaked through: %q", got)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		in, _ := startRoutes(t, "127.0.0.1/32")
		// A trusted proxy's X-Forwarded-Host must still be one of keyway's names.
		wantProblem(t, get(t, in.HTTP1Client(), in.URL("/api/x"), forged...), 421, "urn:keyway:problem:misdirected-request")
		fromProxy := append([]string{}, forged...)
		for i := 0; i < len(fromProxy); i += 2 {
			if fromProxy[i] == "X-Forwarded-Host" {
				fromProxy[i+1] = "LOCALHOST"
			}
		}
		res := get(t, in.HTTP1Client(), in.URL("/api/x"), fromProxy...)
		e := apptest.DecodeEcho(t, res)
		if got := e.Header.Get("X-Forwarded-Host"); got != "LOCALHOST" {
			t.Errorf("X-Forwarded-Host = %q, want the trusted proxy's", got)
		}
		if got := e.Header.Get("X-Real-Ip"); got != "6.6.6.6" {
			t.Errorf("X-Real-Ip = %q, want the client the trusted proxy names", got)
		}
		if got := e.Header.Get("X-Forwarded-For"); got != "6.6.6.6, 127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want the trusted chain extended", got)
		}
		if got := res.Header.Get("X-Request-Id"); got != "forged-id" {
			t.Errorf("a trusted proxy's request id was not kept: %q", got)
		}
		if got := e.Header.Get("X-Keyway-Subject"); got != "" {
			t.Errorf("identity headers are stripped even from trusted proxies, got %q", got)
		}
	})
}

func TestSecretsNeverLogged(t *testing.T) {
	in, c := startRoutes(t, "")
	secrets := []string{"s3cr3t-bearer-1", "s3cr3t-cookie-2", "s3cr3t-query-3", "s3cr3t-apikey-4", "s3cr3t-basic-5"}
	for _, p := range []string{"/api/x", "/nope", "/down/x", "/api%2fx", "/.keyway/healthz"} {
		res := get(t, c, in.URL(p+"?token="+secrets[2]),
			"Authorization", "Bearer "+secrets[0],
			"Cookie", "session="+secrets[1],
			"X-Api-Key", secrets[3],
			"Proxy-Authorization", "Basic "+secrets[4])
		_ = body(t, res)
	}
	in.Stop(t)
	logs := in.Logs()
	if !strings.Contains(logs, `"msg":"request"`) {
		t.Fatalf("no access log lines were written:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("secret %q reached the log", s)
		}
	}
}

func TestInFlightRequestCompletesOnShutdown(t *testing.T) {
	echo := apptest.Echo(t, 700*time.Millisecond)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {echo: {url: %s}}
routes: [{path: /api, upstream: echo, policy: public}]
`, echo))
	in := apptest.Start(t, cfg)
	c := in.Client()
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Get(in.URL("/api/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		_ = body(t, res)
		done <- result{status: res.StatusCode}
	}()
	time.Sleep(200 * time.Millisecond) // the request is now waiting on the upstream
	in.Shutdown()
	r := <-done
	if r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request: status %d, err %v; want 200", r.status, r.err)
	}
	if err := in.Wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", in.App.Addr("https"), time.Second); err == nil {
		t.Fatal("the listener still accepts after shutdown")
	}
}

// TestStreaming checks that the proxy streams: the client reads the first
// chunk of a slow response while the upstream is still writing the rest.
func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	up := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	apptest.Must(t, err, "listen")
	go func() { _ = up.Serve(ln) }()
	defer func() { _ = up.Close() }()
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {up: {url: "http://%s"}}
routes: [{path: /events, upstream: up, policy: public, rate_limit: {rate: 10/s}}]
`, ln.Addr()))
	in := apptest.Start(t, cfg)
	res := get(t, in.Client(), in.URL("/events"))
	defer func() { _ = res.Body.Close() }()
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(res.Body, buf, len("data: first\n\n"))
	if err != nil || !strings.HasPrefix(string(buf[:n]), "data: first") {
		t.Fatalf("first chunk: %q, %v", buf[:n], err)
	}
	close(release) // only now may the upstream finish
	rest, err := io.ReadAll(res.Body)
	if err != nil || !strings.Contains(string(rest), "data: second") {
		t.Fatalf("rest: %q, %v", rest, err)
	}
}

// TestTLSFilesMode serves a certificate from files named in the config.
func TestTLSFilesMode(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	apptest.Must(t, err, "key")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	apptest.Must(t, err, "cert")
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	apptest.Must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600), "write cert")
	apptest.Must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600), "write key")
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
tls: {mode: files, cert_file: %q, key_file: %q}
passkeys: {rp_id: localhost}
`, certFile, keyFile))
	in := apptest.Start(t, cfg)
	if in.App.CAFile() != "" {
		t.Fatal("files mode made a local CA")
	}
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, in.App.Addr("https"))
		},
	}}
	res := get(t, c, in.URL("/.keyway/healthz"))
	if b := body(t, res); res.StatusCode != 200 || res.TLS == nil || !res.TLS.PeerCertificates[0].Equal(cert) {
		t.Fatalf("healthz over the configured certificate: %d %s", res.StatusCode, b)
	}
}
