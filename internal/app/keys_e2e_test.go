package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
)

const keysYAML = `
data_dir: {{data}}
api_keys:
  leak_report: {verify_keys_file: %q}
upstreams:
  echo: {url: %s}
routes:
  - {name: api, path: /api, upstream: echo, policy: api_key, scopes: [orders:read]}
  - {name: open, path: /open, upstream: echo, policy: public, rate_limit: {rate: 3/min, burst: 3}}
`

type keysEnv struct {
	in      *apptest.Instance
	c       *http.Client
	cfg     *config.Config
	cli     *app.Keys // a second handle on the data dir, as the CLI would open it
	signKey *ecdsa.PrivateKey
}

func startKeys(t *testing.T) *keysEnv {
	t.Helper()
	signKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	apptest.Must(t, err, "key")
	der, _ := x509.MarshalPKIXPublicKey(&signKey.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "k1", "key": string(pemKey), "is_current": true}}})
	keysFile := filepath.Join(t.TempDir(), "gh-keys.json")
	apptest.Must(t, os.WriteFile(keysFile, doc, 0o600), "write keys")

	cfg := apptest.Config(t, fmt.Sprintf(keysYAML, keysFile, apptest.Echo(t, time.Second)))
	in := apptest.Start(t, cfg)
	cli, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	t.Cleanup(func() { _ = cli.Close() })
	return &keysEnv{in: in, c: in.Client(), cfg: cfg, cli: cli, signKey: signKey}
}

func (e *keysEnv) create(t *testing.T, p apikey.CreateParams) (string, *apikey.Key) {
	t.Helper()
	if p.Name == "" {
		p.Name = "e2e"
	}
	if p.Owner == "" {
		p.Owner = "service:e2e"
	}
	raw, k, err := e.cli.Create(context.Background(), p, "cli")
	apptest.Must(t, err, "create key")
	return raw, k
}

func (e *keysEnv) call(t *testing.T, path, key string) *http.Response {
	t.Helper()
	hdr := []string{}
	if key != "" {
		hdr = []string{"Authorization", "Bearer " + key}
	}
	return get(t, e.c, e.in.URL(path), hdr...)
}

var instanceRE = regexp.MustCompile(`"instance":"[^"]*"`)

func TestAPIKeyEnforcement(t *testing.T) {
	e := startKeys(t)
	ctx := context.Background()
	good, k := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})

	res := e.call(t, "/api/orders", good)
	echo := apptest.DecodeEcho(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("good key: %d", res.StatusCode)
	}
	if echo.Header.Get("X-Keyway-Key-Id") != "key_"+k.ID || echo.Header.Get("X-Keyway-Subject") != "service:e2e" ||
		echo.Header.Get("X-Keyway-Scopes") != "orders:read" {
		t.Fatalf("identity headers upstream: %v", echo.Header)
	}
	if echo.Header.Get("Authorization") != "" || strings.Contains(fmt.Sprint(echo.Header), good) {
		t.Fatal("the key reached the upstream")
	}

	t.Run("no key", func(t *testing.T) {
		res := e.call(t, "/api/orders", "")
		if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("WWW-Authenticate = %q", res.Header.Get("WWW-Authenticate"))
		}
		wantProblem(t, res, 401, "urn:keyway:problem:unauthenticated")
	})

	t.Run("no oracle", func(t *testing.T) {
		unknown, _ := apikey.Generate(nil, apikey.EnvLive)
		revoked, rk := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
		apptest.Must(t, e.cli.Revoke(ctx, rk.ID, "test", "cli"), "revoke")
		expired, xk := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
		past := time.Now().Add(-time.Second)
		_, err := e.cli.Update(ctx, xk.ID, apikey.UpdateParams{ExpiresAt: &past}, "cli")
		apptest.Must(t, err, "expire")
		typo := good[:len(good)-1] + "x"
		if typo == good { // the key ended in x already
			typo = good[:len(good)-1] + "y"
		}
		wrongSecret := apikey.WithChecksum(good[:8+apikey.IDLen] + unknown.Raw[8+apikey.IDLen:len(unknown.Raw)-apikey.CheckLen])
		time.Sleep(1100 * time.Millisecond) // let the server's change feed catch up
		var first string
		for name, key := range map[string]string{
			"malformed": "kw_live_nonsense", "typo": typo, "unknown": unknown.Raw,
			"wrong secret": wrongSecret, "revoked": revoked, "expired": expired,
		} {
			res := e.call(t, "/api/orders", key)
			wwwAuth := res.Header.Get("WWW-Authenticate")
			b := body(t, res)
			b = instanceRE.ReplaceAllString(b, "")
			if res.StatusCode != 401 {
				t.Fatalf("%s: status %d", name, res.StatusCode)
			}
			if first == "" {
				first = b + wwwAuth
			} else if b+wwwAuth != first {
				t.Fatalf("%s: answer differs:\n%s\n%s", name, b+wwwAuth, first)
			}
		}
	})

	t.Run("wrong scope is 403", func(t *testing.T) {
		other, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:write"}})
		wantProblem(t, e.call(t, "/api/orders", other), 403, "urn:keyway:problem:forbidden")
	})

	t.Run("rate limit", func(t *testing.T) {
		limited, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}, Rate: apikey.Rate{Count: 3, Period: time.Minute, Burst: 3}})
		for i := range 3 {
			res := e.call(t, "/api/x", limited)
			_ = body(t, res)
			// The fields come once half of the burst is spent.
			want := ""
			if 2-i <= 1 {
				want = fmt.Sprintf(`"key";r=%d;t=`, 2-i)
			}
			if got := res.Header.Get("RateLimit"); res.StatusCode != 200 || !strings.HasPrefix(got, want) || (want == "") != (got == "") {
				t.Fatalf("request %d: %d RateLimit %q, want prefix %q", i, res.StatusCode, got, want)
			}
		}
		res := e.call(t, "/api/x", limited)
		if ra := res.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Fatalf("Retry-After = %q", ra)
		}
		if res.Header.Get("RateLimit-Policy") != `"key";q=3;w=60` || !strings.HasPrefix(res.Header.Get("RateLimit"), `"key";r=0;t=`) {
			t.Fatalf("RateLimit headers: %v", res.Header)
		}
		wantProblem(t, res, 429, "urn:keyway:problem:rate-limited")
	})

	t.Run("quota", func(t *testing.T) {
		q, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}, Quota: apikey.Quota{Limit: 2, Period: apikey.QuotaTotal}})
		for range 2 {
			res := e.call(t, "/api/x", q)
			_ = body(t, res)
			if res.StatusCode != 200 {
				t.Fatalf("within quota: %d", res.StatusCode)
			}
		}
		wantProblem(t, e.call(t, "/api/x", q), 429, "urn:keyway:problem:quota-exceeded")
	})

	t.Run("per-IP limit on a public route", func(t *testing.T) {
		for range 3 {
			res := e.call(t, "/open", "")
			_ = body(t, res)
			if res.StatusCode != 200 {
				t.Fatalf("within limit: %d", res.StatusCode)
			}
		}
		wantProblem(t, e.call(t, "/open", ""), 429, "urn:keyway:problem:rate-limited")
	})

	t.Run("a key sent to a public route does not reach the upstream", func(t *testing.T) {
		e2 := startKeys(t)
		res := e2.call(t, "/open", good)
		if ec := apptest.DecodeEcho(t, res); ec.Header.Get("Authorization") != "" {
			t.Fatal("keyway key forwarded on a public route")
		}
	})
}

func TestRevocationAndRotationReachTheServer(t *testing.T) {
	e := startKeys(t)
	ctx := context.Background()
	raw, k := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	if res := e.call(t, "/api/x", raw); res.StatusCode != 200 {
		t.Fatalf("before: %d %s", res.StatusCode, body(t, res))
	}

	fresh, err := e.cli.Rotate(ctx, k.ID, overlapOf(time.Hour), "cli")
	apptest.Must(t, err, "rotate")
	waitStatus(t, e, fresh, 200)
	if res := e.call(t, "/api/x", raw); res.StatusCode != 200 {
		t.Fatalf("old key during overlap: %d", res.StatusCode)
	}

	apptest.Must(t, e.cli.Revoke(ctx, k.ID, "compromised", "cli"), "revoke")
	start := time.Now()
	waitStatus(t, e, fresh, 401)
	t.Logf("revocation by another process visible after %v", time.Since(start))
}

// waitStatus polls until key gets status, failing after one second.
func waitStatus(t *testing.T, e *keysEnv, key string, status int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		res := e.call(t, "/api/x", key)
		_ = body(t, res)
		if res.StatusCode == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after 1s, want %d", res.StatusCode, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAdminAPI(t *testing.T) {
	e := startKeys(t)
	admin := "http://" + e.in.App.Addr("admin")
	adminKey, _ := e.create(t, apikey.CreateParams{Scopes: []string{"keyway:admin"}})
	plain, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	hc := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, key, reqBody string) (*http.Response, string) {
		req, _ := http.NewRequest(method, admin+path, strings.NewReader(reqBody))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := hc.Do(req)
		apptest.Must(t, err, "%s %s", method, path)
		return res, body(t, res)
	}

	if res, _ := do("GET", "/v1/keys", "", ""); res.StatusCode != 401 {
		t.Fatalf("admin API without a key: %d", res.StatusCode)
	}
	if res, _ := do("GET", "/v1/keys", plain, ""); res.StatusCode != 403 {
		t.Fatalf("admin API with a non-admin key: %d", res.StatusCode)
	}
	// A person's key may not hold keyway:admin: refused at creation (and
	// the core refuses one anyway: ServiceOnly).
	if res, b := do("POST", "/v1/keys", adminKey, `{"name":"mine","owner":"user:usr_someone","scopes":["keyway:admin"]}`); res.StatusCode != 400 ||
		!strings.Contains(b, "service account") {
		t.Fatalf("a person's keyway:admin key: %d %s", res.StatusCode, b)
	}
	if res, b := do("GET", "/openapi.json", "", ""); res.StatusCode != 200 || !strings.Contains(b, `"openapi": "3.1.0"`) {
		t.Fatalf("openapi: %d", res.StatusCode)
	}

	res, b := do("POST", "/v1/keys", adminKey, `{"name":"ci","owner":"service:ci","scopes":["orders:read"],"rate":{"rate":"10/s"},"expires_in":"720h"}`)
	if res.StatusCode != 201 {
		t.Fatalf("create: %d %s", res.StatusCode, b)
	}
	var created struct {
		ID, Key string
		Rate    struct{ Rate string }
	}
	apptest.Must(t, json.Unmarshal([]byte(b), &created), "decode")
	if _, err := apikey.Parse(created.Key); err != nil || created.Rate.Rate != "10/s" {
		t.Fatalf("created %s", b)
	}
	if r := e.call(t, "/api/x", created.Key); r.StatusCode != 200 {
		t.Fatalf("admin-created key: %d", r.StatusCode)
	}

	for _, bad := range []string{`{"name":"x"}`, `{"name":"x","owner":"service:x","scopes":["BAD SCOPE"]}`, `{"nope":1}`, `not json`,
		`{"name":"x","owner":"service:x","expires_in":"forever"}`} {
		if res, b := do("POST", "/v1/keys", adminKey, bad); res.StatusCode != 400 || !strings.Contains(b, "bad-request") {
			t.Fatalf("create %s: %d %s", bad, res.StatusCode, b)
		}
	}
	if res, b := do("PATCH", "/v1/keys/"+created.ID, adminKey, `{"scopes":["orders:read","admin"]}`); res.StatusCode != 400 {
		t.Fatalf("widening scopes: %d %s", res.StatusCode, b)
	}
	if res, b := do("GET", "/v1/keys/key_nope", adminKey, ""); res.StatusCode != 404 {
		t.Fatalf("unknown key: %d %s", res.StatusCode, b)
	}
	res, b = do("POST", "/v1/keys/"+created.ID+"/rotate", adminKey, `{"overlap":"1h"}`)
	if res.StatusCode != 200 || !strings.Contains(b, `"key":"kw_live_`) {
		t.Fatalf("rotate: %d %s", res.StatusCode, b)
	}
	// No body: the default overlap of 24h, shown as old_secret_expires_at.
	var rotated struct {
		Key                string
		ExpiresAt          time.Time `json:"expires_at"`
		OldSecretExpiresAt time.Time `json:"old_secret_expires_at"`
	}
	res, b = do("POST", "/v1/keys/"+created.ID+"/rotate", adminKey, "")
	apptest.Must(t, json.Unmarshal([]byte(b), &rotated), "decode %s", b)
	if until := time.Until(rotated.OldSecretExpiresAt); res.StatusCode != 200 || until < 23*time.Hour || until > 24*time.Hour {
		t.Fatalf("rotate with no body: %d, old secret for %v: %s", res.StatusCode, until, b)
	}
	for _, bad := range []string{`{"overlap":"8d"}`, `{"overlap":"soon"}`, `{"expires_in":"400d"}`, `{"expires_in":"0"}`} {
		if res, b := do("POST", "/v1/keys/"+created.ID+"/rotate", adminKey, bad); res.StatusCode != 400 {
			t.Fatalf("rotate %s: %d %s", bad, res.StatusCode, b)
		}
	}
	res, b = do("POST", "/v1/keys/"+created.ID+"/rotate", adminKey, `{"overlap":"0","expires_in":"60d"}`)
	rotated.OldSecretExpiresAt = time.Time{}
	apptest.Must(t, json.Unmarshal([]byte(b), &rotated), "decode %s", b)
	if left := time.Until(rotated.ExpiresAt); res.StatusCode != 200 || left < 59*24*time.Hour || !rotated.OldSecretExpiresAt.IsZero() {
		t.Fatalf("rotate with overlap 0 and a new lifetime: %d %s", res.StatusCode, b)
	}
	if r := e.call(t, "/api/x", rotated.Key); r.StatusCode != 200 {
		t.Fatalf("the newest secret: %d", r.StatusCode)
	}
	if res, b = do("GET", "/v1/keys/"+created.ID+"/usage", adminKey, ""); res.StatusCode != 200 || !strings.Contains(b, `"ok":2`) {
		t.Fatalf("usage: %d %s", res.StatusCode, b)
	}
	if res, b = do("POST", "/v1/keys/"+created.ID+"/revoke", adminKey, ""); res.StatusCode != 200 || !strings.Contains(b, `"status":"revoked"`) {
		t.Fatalf("revoke with no body (no reason given): %d %s", res.StatusCode, b)
	}
	if res, b = do("POST", "/v1/keys/"+created.ID+"/revoke", adminKey, `{"reason":`); res.StatusCode != 400 {
		t.Fatalf("revoke with a broken body: %d %s", res.StatusCode, b)
	}
	if res, b = do("GET", "/v1/keys", adminKey, ""); res.StatusCode != 200 || strings.Contains(b, "kw_live_") {
		t.Fatalf("list shows a secret or failed: %d", res.StatusCode)
	}
	if res, _ = do("DELETE", "/v1/keys/"+created.ID, adminKey, ""); res.StatusCode != 204 {
		t.Fatalf("delete: %d", res.StatusCode)
	}
	if res, b = do("GET", "/metrics", "", ""); res.StatusCode != 200 || !strings.Contains(b, `keyway_apikey_requests_total{outcome="ok"} 2`) ||
		strings.Contains(b, created.ID) {
		t.Fatalf("metrics: %d, want two ok key checks and no key IDs:\n%.3000s", res.StatusCode, b)
	}
	// The public port does not serve the admin API.
	wantProblem(t, get(t, e.c, e.in.URL("/v1/keys"), "Authorization", "Bearer "+adminKey), 404, "urn:keyway:problem:not-found")
}

func TestLeakReport(t *testing.T) {
	e := startKeys(t)
	raw, k := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	post := func(payload string, sign func([]byte) (string, string)) (*http.Response, string) {
		req, _ := http.NewRequest("POST", e.in.URL("/.keyway/keys/report-leak"), strings.NewReader(payload))
		if sign != nil {
			id, sig := sign([]byte(payload))
			req.Header.Set("Github-Public-Key-Identifier", id)
			req.Header.Set("Github-Public-Key-Signature", sig)
		}
		res, err := e.c.Do(req)
		apptest.Must(t, err, "report")
		return res, body(t, res)
	}
	good := func(b []byte) (string, string) {
		sum := sha256.Sum256(b)
		sig, _ := ecdsa.SignASN1(rand.Reader, e.signKey, sum[:])
		return "k1", base64.StdEncoding.EncodeToString(sig)
	}
	payload := fmt.Sprintf(`[{"token":%q,"type":"keyway_api_key","url":"https://github.com/o/r/blob/main/.env","source":"content"},
		{"token":"kw_live_notreal","type":"keyway_api_key","url":"u","source":"content"}]`, raw)

	if res, b := post(payload, func(b []byte) (string, string) { return good(append(b, 'x')) }); res.StatusCode != 401 {
		t.Fatalf("bad signature: %d %s", res.StatusCode, b)
	}
	if res, b := post(`{"token":"x"}`, nil); res.StatusCode != 400 {
		t.Fatalf("not an array: %d %s", res.StatusCode, b)
	}
	if r := e.call(t, "/api/x", raw); r.StatusCode != 200 {
		t.Fatal("a refused report revoked the key")
	}
	res, b := post(payload, good)
	if res.StatusCode != 200 || strings.Contains(b, raw) {
		t.Fatalf("report: %d %s", res.StatusCode, b)
	}
	var results []struct {
		TokenHash string `json:"token_hash"`
		Label     string `json:"label"`
	}
	apptest.Must(t, json.Unmarshal([]byte(b), &results), "decode")
	sum := sha256.Sum256([]byte(raw))
	if len(results) != 2 || results[0].Label != "true_positive" || results[1].Label != "false_positive" ||
		results[0].TokenHash != fmt.Sprintf("%x", sum) {
		t.Fatalf("results %s", b)
	}
	if r := e.call(t, "/api/x", raw); r.StatusCode != 401 {
		t.Fatalf("a reported key still works: %d", r.StatusCode)
	}
	got, _ := e.cli.Get(context.Background(), k.ID)
	if got.RevokedAt.IsZero() {
		t.Fatal("not revoked in the store")
	}
	// Unsigned reports are accepted too: holding a key is enough to kill it.
	raw2, _ := e.create(t, apikey.CreateParams{})
	if res, _ := post(fmt.Sprintf(`[{"token":%q,"type":"t","url":"u","source":"s"}]`, raw2), nil); res.StatusCode != 200 {
		t.Fatalf("unsigned report: %d", res.StatusCode)
	}
}

func TestKeysNeverLeak(t *testing.T) {
	e := startKeys(t)
	raw, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	encoded := strings.Replace(raw, "_", "%5F", 1)
	for _, p := range []string{"/api/x?key=" + raw, "/api/x?key=" + encoded, "/api/" + raw, "/open/" + raw} {
		wantProblem(t, e.call(t, p, ""), 400, "urn:keyway:problem:bad-request")
	}
	// A keyway key hidden behind another Authorization value does not reach
	// a public route's upstream either.
	req, _ := http.NewRequest(http.MethodGet, e.in.URL("/open"), nil)
	req.Header.Add("Authorization", "Basic dXNlcjpwYXNz")
	req.Header.Add("Authorization", "Bearer "+raw)
	res, err := e.c.Do(req)
	apptest.Must(t, err, "two Authorization headers")
	if echo := apptest.DecodeEcho(t, res); strings.Contains(fmt.Sprint(echo.Header), raw) {
		t.Fatal("a key in a second Authorization value reached the upstream")
	}
	for _, p := range []string{"/api/x", "/api/x?key=" + raw, "/nope", "/open"} {
		res := e.call(t, p, raw)
		if b := body(t, res); strings.Contains(b, raw) || strings.Contains(fmt.Sprint(res.Header), raw) {
			t.Fatalf("%s: a response carries the key", p)
		}
	}
	e.in.Stop(t)
	_ = e.cli.Close()
	if logs := e.in.Logs(); strings.Contains(logs, raw) || strings.Contains(logs, raw[8+apikey.IDLen:]) {
		t.Fatal("the key reached the log")
	}
	for _, f := range []string{e.cfg.Store.Path, e.cfg.Store.Path + "-wal"} {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(raw[8+apikey.IDLen:])) {
			t.Fatalf("%s holds the key's secret", f)
		}
	}
}

func overlapOf(d time.Duration) apikey.RotateParams { return apikey.RotateParams{Overlap: &d} }

// TestRefusedKeysSayWhyToTheOperatorOnly: unknown, wrong, rotated-out,
// revoked, expired and malformed keys get one answer, byte for byte, while
// the access log and the metrics tell the operator which it was, with the
// key's ID, and never the key.
func TestRefusedKeysSayWhyToTheOperatorOnly(t *testing.T) {
	e := startKeys(t)
	ctx := context.Background()
	good, k := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	// Retired a moment ago (a retired secret is kept until the next
	// rotation, so it is told from a wrong one).
	if _, err := e.cli.Rotate(ctx, k.ID, overlapOf(time.Millisecond), "cli"); err != nil {
		t.Fatal(err)
	}
	revoked, rk := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	apptest.Must(t, e.cli.Revoke(ctx, rk.ID, "test", "cli"), "revoke")
	unknown, uk := e.create(t, apikey.CreateParams{})
	apptest.Must(t, e.cli.Delete(ctx, uk.ID, "cli"), "delete")
	// A right ID with a wrong secret: a secret rotated out with no overlap
	// is forgotten at once.
	wrong, wk := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	if _, err := e.cli.Rotate(ctx, wk.ID, overlapOf(0), "cli"); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{"rotated_out": good, "revoked": revoked, "unknown": unknown, "malformed": "kw_live_nope", "wrong_secret": wrong}
	var first string
	for why, key := range cases {
		var res *http.Response
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			res = e.call(t, "/api/x", key)
			if res.StatusCode == 401 || time.Now().After(deadline) {
				break
			}
			_ = res.Body.Close()
		}
		b := instanceRE.ReplaceAllString(body(t, res), "")
		if res.StatusCode != 401 || (first != "" && b != first) {
			t.Fatalf("%s: %d %s, want the one 401 answer %s", why, res.StatusCode, b, first)
		}
		first = b
	}
	logs := e.in.Logs()
	for why, key := range cases {
		if !strings.Contains(logs, `"why":"`+why+`"`) {
			t.Errorf("the access log does not say %q", why)
		}
		if strings.Contains(logs, key) {
			t.Errorf("the %s key is in the logs", why)
		}
	}
	for _, id := range []string{apikey.DisplayID(k.ID), apikey.DisplayID(rk.ID)} {
		if !strings.Contains(logs, `"key_id":"`+id+`"`) {
			t.Errorf("the access log does not name %s", id)
		}
	}
	res := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+e.in.App.Addr("admin")+"/metrics")
	m := body(t, res)
	for _, why := range []string{"rotated_out", "revoked", "unknown", "malformed", "wrong_secret"} {
		if !strings.Contains(m, `keyway_apikey_invalid_total{why="`+why+`"} `) || strings.Contains(m, `keyway_apikey_invalid_total{why="`+why+`"} 0`) {
			t.Errorf("metrics do not count why=%s", why)
		}
	}
}
