package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
)

// TestIdentityAssertion: an upstream with assertion: true gets a signed
// JWT per request that an independent JOSE library verifies against the
// key set keyway publishes, bound to that upstream, the method and the
// forwarded path; a forged or replayed-elsewhere one does not pass.
func TestIdentityAssertion(t *testing.T) {
	echo := apptest.Echo(t, time.Second)
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams:
  signed: {url: %[1]s, assertion: true}
  named: {url: %[1]s/base, assertion: true, audience: "urn:orders"}
  plain: {url: %[1]s}
routes:
  - {name: keyed, path: /keyed, upstream: signed, policy: api_key, scopes: [a]}
  - {name: open, path: /open, upstream: signed, policy: public, rate_limit: {rate: 10/s}, strip_prefix: true}
  - {name: orders, path: /orders, upstream: named, policy: public, rate_limit: {rate: 10/s}}
  - {name: plain, path: /plain, upstream: plain, policy: public, rate_limit: {rate: 10/s}}
`, echo))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	raw, k, err := keys.Create(context.Background(), apikey.CreateParams{Name: "k", Owner: "service:billing", Scopes: []string{"a"}}, "test")
	apptest.Must(t, err, "key")

	// The key set, from the admin listener and from the public one.
	var set jose.JSONWebKeySet
	res := get(t, &http.Client{Timeout: 10 * time.Second}, "http://"+in.App.Addr("admin")+"/.well-known/jwks.json")
	if b := body(t, res); res.StatusCode != 200 || json.Unmarshal([]byte(b), &set) != nil || len(set.Keys) != 3 {
		t.Fatalf("admin JWKS: %d %s", res.StatusCode, b)
	}
	res = get(t, in.Client(), in.URL("/.keyway/jwks.json"))
	if b := body(t, res); res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("public JWKS: %d %s", res.StatusCode, b)
	}
	check := func(e apptest.Echoed, aud string) (map[string]any, error) {
		t.Helper()
		tok := e.Header.Get("X-Keyway-Assertion")
		if tok == "" {
			t.Fatal("no assertion upstream")
		}
		parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			return nil, err
		}
		keys := set.Key(parsed.Headers[0].KeyID)
		if len(keys) != 1 {
			t.Fatalf("kid %q not in the published set", parsed.Headers[0].KeyID)
		}
		var std josejwt.Claims
		var all map[string]any
		if err := parsed.Claims(keys[0].Key, &std, &all); err != nil {
			return nil, err
		}
		origin := strings.TrimSuffix(in.URL("/"), "/")
		return all, std.ValidateWithLeeway(josejwt.Expected{Issuer: origin, AnyAudience: josejwt.Audience{aud}, Time: time.Now()}, time.Second)
	}

	e := apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/keyed/orders?x=1"), "Authorization", "Bearer "+raw, "X-Keyway-Assertion", "forged"))
	all, err := check(e, echo)
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	if all["sub"] != "service:billing" || all["kw_key"] != "key_"+k.ID || all["scope"] != "a" || all["htm"] != "GET" ||
		all["htu"] != e.Path || e.Path != "/keyed/orders" {
		t.Fatalf("claims %v for a request to %s", all, e.Path)
	}
	// Anonymous on a public route, with the forwarded (stripped) path.
	e = apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/open/x")))
	if all, err := check(e, echo); err != nil || all["sub"] != nil || all["htu"] != "/x" {
		t.Fatalf("public route: %v %v", all, err)
	}
	// The configured audience, and a path under the upstream's base path.
	e = apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/orders/7")))
	if all, err := check(e, "urn:orders"); err != nil || all["htu"] != "/base/orders/7" || e.Path != "/base/orders/7" {
		t.Fatalf("named audience: %v %v (path %s)", all, err, e.Path)
	}
	// An assertion for one upstream is refused by another.
	if _, err := check(e, echo); err == nil {
		t.Fatal("an assertion for urn:orders verified for another audience")
	}
	// An upstream without assertion: true gets none, and never a client's.
	if e := apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/plain"), "X-Keyway-Assertion", "forged")); e.Header.Get("X-Keyway-Assertion") != "" {
		t.Fatalf("plain upstream got %q", e.Header.Get("X-Keyway-Assertion"))
	}
}

// TestUpstreamMutualTLS: with mtls: true keyway shows an https upstream a
// client certificate from its upstream client CA; without it, an upstream
// that requires one refuses keyway (502).
func TestUpstreamMutualTLS(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	caFile := filepath.Join(dataDir, "upstream-client-ca.pem")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	up.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequireAnyClientCert,
		// The CA exists once keyway has started: read it at each handshake.
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			pemBytes, err := os.ReadFile(caFile)
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pemBytes)
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			return err
		}}
	up.StartTLS()
	defer up.Close()
	serverCA := filepath.Join(dir, "upstream.pem")
	apptest.Must(t, os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600), "write")
	cfgFile := filepath.Join(dir, "keyway.yaml")
	apptest.Must(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
data_dir: %s
upstreams:
  mutual: {url: %[2]s, ca_file: %[3]s, mtls: true}
  oneway: {url: %[2]s, ca_file: %[3]s}
routes:
  - {name: m, path: /m, upstream: mutual, policy: public, rate_limit: {rate: 10/s}}
  - {name: o, path: /o, upstream: oneway, policy: public, rate_limit: {rate: 10/s}}
`, dataDir, up.URL, serverCA)), 0o600), "write config")
	cfg := mustLoadConfig(t, cfgFile)
	in := apptest.Start(t, cfg)
	res := get(t, in.Client(), in.URL("/m"))
	if b := body(t, res); res.StatusCode != 200 || b != "hello keyway" {
		t.Fatalf("mutual TLS: %d %s", res.StatusCode, b)
	}
	wantProblem(t, get(t, in.Client(), in.URL("/o")), 502, "urn:keyway:problem:bad-gateway")
}

func mustLoadConfig(t *testing.T, file string) *config.Config {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return cfg
}
