package verify_test

import (
	"context"
	"encoding/json"
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

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/verify"
)

const keywayYAML = `
data_dir: %s
forward_auth: {enabled: true}
routes:
  - {name: orders, path: /v1/orders, methods: [GET, POST], policy: api_key, scopes: [orders:read]}
  - {name: open, path: /v1/open, policy: public, rate_limit: {rate: 100/s}}
`

// env is a running keyway with forward auth, a config file for it, and
// the CLI's handle on its keys.
type env struct {
	in   *apptest.Instance
	file string
	keys *app.Keys
}

func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "keyway.yaml")
	apptest.Must(t, os.WriteFile(file, []byte(fmt.Sprintf(keywayYAML, filepath.Join(dir, "data"))), 0o600), "config")
	cfg := apptest.Config(t, fmt.Sprintf(keywayYAML, filepath.Join(dir, "data")))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "keys")
	t.Cleanup(func() { _ = keys.Close() })
	return &env{in: in, file: file, keys: keys}
}

// service is a Go service protected by v: it answers with who called.
func service(v *verify.Verifier) http.Handler {
	return v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := verify.IdentityFrom(r.Context())
		_ = json.NewEncoder(w).Encode(map[string]any{"subject": id.Subject, "key": id.KeyID, "scopes": id.Scopes,
			"header": r.Header.Get("X-Keyway-Subject"), "forged": r.Header.Get("X_Keyway_Subject"),
			"roles": id.Roles, "roles_header": r.Header.Get("X-Keyway-Roles") + r.Header.Get("X_Keyway_Roles")})
	}))
}

func call(t *testing.T, h http.Handler, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = "192.0.2.7:1234"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func checkVerifier(t *testing.T, e *env, v *verify.Verifier, cacheTTL time.Duration) {
	h := service(v)
	raw, k, err := e.keys.Create(context.Background(), apikey.CreateParams{Name: "k", Owner: "service:shop", Scopes: []string{"orders:read"}}, "test")
	apptest.Must(t, err, "key")
	res, b := call(t, h, "GET", "/v1/orders/7", "Authorization", "Bearer "+raw, "X-Keyway-Subject", "user:usr_admin",
		"X_Keyway_Subject", "user:usr_admin", "X-Keyway-Roles", "admin", "X_Keyway_Roles", "admin")
	if res.StatusCode != 200 || !strings.Contains(b, `"subject":"service:shop"`) || !strings.Contains(b, `"key":"key_`+k.ID) ||
		!strings.Contains(b, `"header":"service:shop"`) || !strings.Contains(b, `"forged":""`) ||
		!strings.Contains(b, `"roles":[]`) || !strings.Contains(b, `"roles_header":""`) {
		t.Fatalf("a good key: %d %s", res.StatusCode, b)
	}
	// An override the handler might act on is keyway's to refuse: it
	// decided on GET /v1/orders/7.
	for _, o := range [][2]string{{"X-HTTP-Method-Override", "DELETE"}, {"X-Original-URL", "/admin"}} {
		if res, b := call(t, h, "GET", "/v1/orders/7", "Authorization", "Bearer "+raw, o[0], o[1]); res.StatusCode != 400 {
			t.Fatalf("%s: %d %s", o[0], res.StatusCode, b)
		}
	}
	res, b = call(t, h, "GET", "/v1/orders/7")
	if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") ||
		!strings.Contains(b, "urn:keyway:problem:unauthenticated") {
		t.Fatalf("no key: %d %v %s", res.StatusCode, res.Header, b)
	}
	if res, _ := call(t, h, "GET", "/v2/elsewhere", "Authorization", "Bearer "+raw); res.StatusCode != 404 {
		t.Fatalf("no route: %d", res.StatusCode)
	}
	if res, b := call(t, h, "GET", "/v1/open"); res.StatusCode != 200 || !strings.Contains(b, `"subject":""`) {
		t.Fatalf("public route: %d %s", res.StatusCode, b)
	}
	// keyway decides on the path as it came: Go re-escapes a path holding
	// "|" from its decoded form, which would turn %2F into "/" (and
	// /v1/open%2Fx| into the public /v1/open/x|, while a router such as
	// chi serves the one segment "open/x|").
	if res, b := call(t, h, "GET", "/v1/open%2Fx|"); res.StatusCode != 400 {
		t.Fatalf("an encoded slash: %d %s", res.StatusCode, b)
	}
	apptest.Must(t, e.keys.Revoke(context.Background(), k.ID, "test", "cli"), "revoke")
	start := time.Now()
	for {
		res, _ := call(t, h, "GET", "/v1/orders/7", "Authorization", "Bearer "+raw)
		if res.StatusCode == 401 {
			t.Logf("revocation seen after %v", time.Since(start))
			break
		}
		if time.Since(start) > 1500*time.Millisecond+cacheTTL {
			t.Fatalf("a revoked key still passes after %v", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRemote(t *testing.T) {
	e := start(t)
	v, err := verify.New(verify.Config{URL: strings.TrimSuffix(e.in.URL("/"), "/"), RootCAs: e.in.App.CAPool()})
	apptest.Must(t, err, "new")
	defer func() { _ = v.Close() }()
	checkVerifier(t, e, v, 0)
}

func TestRemoteCached(t *testing.T) {
	e := start(t)
	v, err := verify.New(verify.Config{URL: strings.TrimSuffix(e.in.URL("/"), "/"), RootCAs: e.in.App.CAPool(), CacheTTL: time.Second})
	apptest.Must(t, err, "new")
	defer func() { _ = v.Close() }()
	checkVerifier(t, e, v, time.Second)
	if _, err := verify.New(verify.Config{URL: "https://x", CacheTTL: time.Minute}); err == nil {
		t.Fatal("a one-minute cache was accepted")
	}
	if _, err := verify.New(verify.Config{URL: "http://x"}); err == nil {
		t.Fatal("a plain-http keyway was accepted")
	}
}

func TestOpenOnTheSameStore(t *testing.T) {
	e := start(t)
	v, err := verify.Open(context.Background(), e.file, nil)
	apptest.Must(t, err, "open")
	defer func() {
		if err := v.Close(); err != nil {
			t.Error(err)
		}
	}()
	checkVerifier(t, e, v, 0)
}

func TestUnreachableKeywayRefuses(t *testing.T) {
	v, err := verify.New(verify.Config{URL: "https://127.0.0.1:1", Timeout: 200 * time.Millisecond})
	apptest.Must(t, err, "new")
	if res, _ := call(t, service(v), "GET", "/v1/orders", "Authorization", "Bearer x"); res.StatusCode != 503 {
		t.Fatalf("keyway unreachable: %d, want 503", res.StatusCode)
	}
}
