package app_test

// Real nginx and Caddy in front of an upstream, asking keyway's forward
// auth, each running the config file that docs/integrations publishes.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/headername"
	"github.com/keywayhq/keyway/internal/testenv"
	"github.com/keywayhq/keyway/internal/tlsconf"
	"gopkg.in/yaml.v3"
)

// frontEnv is keyway with forward auth, an echo upstream, and a proxy in
// front that the test calls over TLS.
type frontEnv struct {
	*verifyEnv
	echo  string // host:port
	front string // the proxy's host:port
	pool  *x509.CertPool
	dir   string
}

func newFrontEnv(t *testing.T) *frontEnv {
	t.Helper()
	e := startVerify(t, "127.0.0.0/8")
	dir := t.TempDir()
	// A certificate for the proxy from keyway's own local CA.
	ca, err := tlsconf.OpenLocalCA(tlsconf.LocalCAConfig{Dir: e.cfg.DataDir})
	apptest.Must(t, err, "local CA")
	leaf, err := ca.GetCertificate(nil)
	apptest.Must(t, err, "leaf")
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	apptest.Must(t, err, "key")
	apptest.Must(t, os.WriteFile(filepath.Join(dir, "front.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}), 0o644), "cert")
	apptest.Must(t, os.WriteFile(filepath.Join(dir, "front.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600), "key")
	return &frontEnv{verifyEnv: e, echo: strings.TrimPrefix(apptest.Echo(t, time.Second), "http://"), front: freeAddr(t),
		pool: ca.Pool(), dir: dir}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	apptest.Must(t, err, "listen")
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// doc reads a file of docs/integrations and makes its placeholders this
// test's: the published file is what runs.
func (f *frontEnv) doc(t *testing.T, name string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "integrations", name))
	apptest.Must(t, err, "read the published config")
	s := string(b)
	repl = append(repl,
		"127.0.0.1:8443", f.in.App.Addr("https"),
		"127.0.0.1:3000", f.echo,
		"/etc/keyway/ca.pem", filepath.Join(f.cfg.DataDir, tlsconf.CACertFileName),
	)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("%s no longer holds %q: update the test with the doc", name, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	return s
}

// client calls the proxy over TLS, as a client of the API would.
func (f *frontEnv) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: f.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, f.front)
		},
	}}
}

func (f *frontEnv) waitUp(t *testing.T, cmd *exec.Cmd, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", f.front, 100*time.Millisecond); err == nil {
			_ = c.Close()
			return
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("%s did not start listening on %s:\n%s", cmd.Path, f.front, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runFront starts a proxy and stops it when the test ends.
func runFront(t *testing.T, f *frontEnv, cmd *exec.Cmd, logs func() string) {
	t.Helper()
	apptest.Must(t, cmd.Start(), "start %s", cmd.Path)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	f.waitUp(t, cmd, logs)
}

func TestNginxAuthRequest(t *testing.T) {
	bin := testenv.LookPath(t, "nginx", "install Debian's nginx (apt-get install nginx)")
	f := newFrontEnv(t)
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		apptest.Must(t, os.MkdirAll(filepath.Join(f.dir, d), 0o777), "temp dir") // nginx's workers write there
	}
	site := f.doc(t, "nginx.conf",
		"listen 443 ssl http2;", "listen "+f.front+" ssl http2;",
		"/etc/nginx/tls/api.crt", filepath.Join(f.dir, "front.crt"),
		"/etc/nginx/tls/api.key", filepath.Join(f.dir, "front.key"),
	)
	apptest.Must(t, os.WriteFile(filepath.Join(f.dir, "keyway.conf"), []byte(site), 0o644), "site")
	main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/keyway.conf;
}
`, f.dir)
	conf := filepath.Join(f.dir, "nginx.conf")
	apptest.Must(t, os.WriteFile(conf, []byte(main), 0o644), "nginx.conf")
	cmd := exec.Command(bin, "-c", conf, "-p", f.dir, "-e", filepath.Join(f.dir, "error.log"))
	logs := func() string { b, _ := os.ReadFile(filepath.Join(f.dir, "error.log")); return string(b) }
	if out, err := exec.Command(bin, "-t", "-c", conf, "-p", f.dir, "-e", filepath.Join(f.dir, "error.log")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	runFront(t, f, cmd, logs)
	frontChecks(t, f)
}

func TestCaddyForwardAuth(t *testing.T) {
	bin := testenv.LookPath(t, "caddy", "install Debian's caddy (apt-get install caddy)")
	f := newFrontEnv(t)
	site := f.doc(t, "Caddyfile",
		"api.example.com:443 {", "{\n\tadmin off\n\tauto_https off\n\tstorage file_system "+f.dir+"\n}\n\nhttps://localhost:"+portOf(f.front)+" {",
		"/etc/caddy/tls/api.crt", filepath.Join(f.dir, "front.crt"),
		"/etc/caddy/tls/api.key", filepath.Join(f.dir, "front.key"),
	)
	file := filepath.Join(f.dir, "Caddyfile")
	apptest.Must(t, os.WriteFile(file, []byte(site), 0o644), "Caddyfile")
	logFile := filepath.Join(f.dir, "caddy.log")
	out, err := os.Create(logFile)
	apptest.Must(t, err, "log")
	defer func() { _ = out.Close() }()
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+f.dir, "XDG_DATA_HOME="+f.dir, "XDG_CONFIG_HOME="+f.dir)
	cmd.Stdout, cmd.Stderr = out, out
	runFront(t, f, cmd, func() string { b, _ := os.ReadFile(logFile); return string(b) })
	frontChecks(t, f)
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// frontChecks are what any proxy in front of keyway must get right.
func frontChecks(t *testing.T, f *frontEnv) {
	c := f.client()
	good, k := f.key("orders:read")
	other, _ := f.key("orders:write")
	call := func(method, path string, hdr ...string) (*http.Response, apptest.Echoed, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://localhost"+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		res, err := c.Do(req)
		apptest.Must(t, err, "%s %s", method, path)
		b := body(t, res)
		var e apptest.Echoed
		if res.StatusCode == 200 {
			e = decodeEchoString(t, b)
		}
		return res, e, b
	}

	t.Run("a key passes; the upstream gets keyway's identity only", func(t *testing.T) {
		// An override never reaches the upstream: the proxy strips it
		// before asking (Caddy), or keyway sees it on the auth request and
		// refuses (nginx passes the client's headers to it; X-Original-*
		// are its auth location's own there, and stripped on the way up).
		forged := []string{"Authorization", "Bearer " + good, "X-Keyway-Subject", "user:usr_admin",
			"X-Keyway-Client", "key_forged", "X-Keyway-Name", "usr_admin"}
		for i := 0; i+1 < len(forgedHeaders); i += 2 {
			if !headername.Override(forgedHeaders[i]) {
				forged = append(forged, forgedHeaders[i], forgedHeaders[i+1])
				continue
			}
			res, e, b := call("GET", "/v1/orders/7", "Authorization", "Bearer "+good, forgedHeaders[i], forgedHeaders[i+1])
			switch res.StatusCode {
			case 400:
			case 200:
				for hk := range e.Header {
					if headername.EqualFold(hk, forgedHeaders[i]) {
						t.Errorf("%s reached the upstream", forgedHeaders[i])
					}
				}
			default:
				t.Errorf("%s: %d %s, want 200 without it or 400", forgedHeaders[i], res.StatusCode, b)
			}
		}
		res, e, b := call("GET", "/v1/orders/7?x=1", forged...)
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		if e.Path != "/v1/orders/7" || e.Header.Get("X-Keyway-Subject") != "service:shop" || e.Header.Get("X-Keyway-Key-Id") != "key_"+k.ID ||
			e.Header.Get("X-Keyway-Scopes") != "orders:read" || e.Header.Get("X-Keyway-Assertion") == "" {
			t.Fatalf("upstream got %s %v", e.Path, e.Header)
		}
		if e.Header.Get("Authorization") != "" {
			t.Error("the key reached the upstream")
		}
		wantNoForgery(t, e, "X-Keyway-Assertion", "X-Keyway-Name", "X-Keyway-Session-Id", "X-Keyway-Client", "X-Keyway-Roles")
		for hk, vs := range e.Header {
			for _, v := range vs {
				if strings.Contains(v, "usr_admin") || strings.Contains(v, "keyway:admin") || strings.Contains(v, "key_forged") {
					t.Errorf("a forged header reached the upstream: %s: %s", hk, v)
				}
			}
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			path   string
			hdr    []string
			status int
		}{
			{"no key", "/v1/orders", nil, 401},
			{"bad key", "/v1/orders", []string{"Authorization", "Bearer kw_live_" + strings.Repeat("B", 46)}, 401},
			{"missing scope", "/v1/orders", []string{"Authorization", "Bearer " + other}, 403},
			{"no route", "/v2/x", []string{"Authorization", "Bearer " + good}, 404},
			{"a key in the query", "/v1/open?key=" + good, nil, 400},
			{"encoded slash", "/v1/orders%2Fx", []string{"Authorization", "Bearer " + good}, 400},
			{"case", "/V1/orders", []string{"Authorization", "Bearer " + good}, 404},
		} {
			res, _, b := call("GET", tt.path, tt.hdr...)
			if res.StatusCode != tt.status {
				t.Errorf("%s: %d %s, want %d", tt.name, res.StatusCode, b, tt.status)
			}
			if tt.status == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q", tt.name, res.Header.Get("WWW-Authenticate"))
			}
		}
	})
	t.Run("limits", func(t *testing.T) {
		limited, _ := f.key()
		for i := range 2 {
			if res, _, b := call("GET", "/v1/limited", "Authorization", "Bearer "+limited); res.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, res.StatusCode, b)
			}
		}
		res, _, _ := call("GET", "/v1/limited", "Authorization", "Bearer "+limited)
		if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
			t.Fatalf("over the limit: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
		}
	})
	t.Run("revocation", func(t *testing.T) {
		raw, rk := f.key("orders:read")
		if res, _, _ := call("GET", "/v1/orders", "Authorization", "Bearer "+raw); res.StatusCode != 200 {
			t.Fatalf("before: %d", res.StatusCode)
		}
		apptest.Must(t, f.keys.Revoke(context.Background(), rk.ID, "test", "cli"), "revoke")
		start := time.Now()
		for {
			if res, _, _ := call("GET", "/v1/orders", "Authorization", "Bearer "+raw); res.StatusCode == 401 {
				t.Logf("revoked key refused through the proxy after %v", time.Since(start))
				break
			}
			if time.Since(start) > 3*time.Second {
				t.Fatal("a revoked key still passes after 3s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("sessions: cookie and CSRF stay with keyway", func(t *testing.T) {
		p := newPerson(t, f.in)
		p.register(map[string]string{"username": "pia", "display_name": "Pia"})
		cookie := "theme=dark; __Host-keyway_session=" + p.cookie().Value
		res, e, b := call("GET", "/v1/me", "Cookie", cookie)
		if res.StatusCode != 200 || e.Header.Get("X-Keyway-Name") != "Pia" || !strings.HasPrefix(e.Header.Get("X-Keyway-Subject"), "user:") {
			t.Fatalf("session GET: %d %s", res.StatusCode, b)
		}
		if got := e.Header.Get("Cookie"); got != "theme=dark" {
			t.Errorf("the upstream got Cookie %q, want only its own cookie", got)
		}
		if res, _, _ := call("POST", "/v1/me", "Cookie", cookie); res.StatusCode != 403 {
			t.Fatalf("a cookie POST without the CSRF header: %d", res.StatusCode)
		}
		res, e, _ = call("POST", "/v1/me", "Cookie", cookie, "X-Keyway-CSRF", "1", "Origin", p.origin)
		if res.StatusCode != 200 || e.Method != "POST" {
			t.Fatalf("a cookie POST with it: %d %s", res.StatusCode, e.Method)
		}
		if e.Header.Get("X-Keyway-Csrf") != "" {
			t.Error("the CSRF header reached the upstream")
		}
		if res, _, _ := call("GET", "/v1/me"); res.StatusCode != 401 {
			t.Fatalf("no session: %d", res.StatusCode)
		}
	})
}

func decodeEchoString(t *testing.T, b string) apptest.Echoed {
	t.Helper()
	res := &http.Response{Body: nopBody{strings.NewReader(b)}, StatusCode: 200}
	return apptest.DecodeEcho(t, res)
}

type nopBody struct{ *strings.Reader }

func (nopBody) Close() error { return nil }

// TestIntegrationDocsMatchTheContracts: the Traefik and Envoy configs that
// docs/integrations publishes (no real Traefik or Envoy runs here) are
// valid YAML and name the paths and headers of keyway's contracts, which
// TestForwardAuthContracts drives the way those proxies do.
func TestIntegrationDocsMatchTheContracts(t *testing.T) {
	read := func(name string) (string, map[string]any) {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", "integrations", name))
		apptest.Must(t, err, "read %s", name)
		var doc map[string]any
		apptest.Must(t, yaml.Unmarshal(b, &doc), "parse %s", name)
		return string(b), doc
	}
	traefik, _ := read("traefik.yml")
	for _, want := range []string{`address: "https://127.0.0.1:8443/.keyway/verify"`, "trustForwardHeader: false",
		"- X-Keyway-Subject", "- X-Keyway-Scopes", "- Cookie", `Authorization: ""`, `X-Keyway-Csrf: ""`} {
		if !strings.Contains(traefik, want) {
			t.Errorf("traefik.yml lacks %q", want)
		}
	}
	envoy, _ := read("envoy.yaml")
	for _, want := range []string{"path_prefix: /.keyway/verify/envoy", "failure_mode_allow: false", "headers_with_underscores_action: DROP_HEADER",
		"{exact: cookie}", "{exact: x-keyway-csrf}", "{exact: x-keyway-subject}", "request_headers_to_remove: [authorization, x-keyway-csrf"} {
		if !strings.Contains(envoy, want) {
			t.Errorf("envoy.yaml lacks %q", want)
		}
	}
}
