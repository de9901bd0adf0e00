package app_test

// One matrix of credentials through every door: the proxy, keyway's own
// endpoints, the portal, the admin listener, forward auth (each proxy's
// contract) and the verify middleware (remote and embedded). Every door
// asks the same decision core, so every door must answer the same.

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

const doorsYAML = `
listen: %s
data_dir: %s
passkeys: {sign_up: open}
sessions: {idle_timeout: 2s, absolute_timeout: 1h}
forward_auth: {enabled: true}
upstreams: {echo: {url: %s}}
routes:
  - {name: api, path: /api, methods: [GET, POST], upstream: echo, policy: api_key, scopes: ["keyway:admin"]}
  - {name: me, path: /me, methods: [GET, POST], upstream: echo, policy: session}
`

// door sends a request described by method, the credential headers and a
// kind ("key" or "session"), and returns the status the client sees.
type door struct {
	name string
	// kinds lists the credential kinds this door takes.
	kinds []string
	// methods lists the methods it can be asked about.
	methods []string
	send    func(t *testing.T, kind, method string, hdr []string) (int, http.Header)
	// status maps the meant status to what this door answers.
	status func(meant int) int
}

func same(meant int) int { return meant }

func TestEveryDoorDecidesAlike(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keyway.yaml")
	// A fixed port, so that the embedded keyway (which listens nowhere)
	// has the same origins as the running one.
	yaml := fmt.Sprintf(doorsYAML, freeAddr(t), filepath.Join(dir, "data"), apptest.Echo(t, time.Second))
	apptest.Must(t, os.WriteFile(file, []byte(yaml), 0o600), "config")
	cfg := mustLoadConfig(t, file)
	in := apptest.Start(t, cfg)
	ctx := context.Background()
	keys, err := app.OpenKeys(ctx, cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "keys")
	defer func() { _ = keys.Close() }()
	remote, err := verify.New(verify.Config{URL: strings.TrimSuffix(in.URL("/"), "/"), RootCAs: in.App.CAPool()})
	apptest.Must(t, err, "remote verifier")
	defer func() { _ = remote.Close() }()
	embedded, err := verify.Open(ctx, file, nil)
	apptest.Must(t, err, "embedded verifier")
	defer func() { _ = embedded.Close() }()

	// ---- the credentials ----
	mkKey := func(p apikey.CreateParams) (string, *apikey.Key) {
		p.Name, p.Owner = "k", "service:ops"
		if p.Scopes == nil {
			p.Scopes = []string{"keyway:admin"}
		}
		raw, k, err := keys.Create(ctx, p, "test")
		apptest.Must(t, err, "key")
		return raw, k
	}
	valid, _ := mkKey(apikey.CreateParams{})
	revoked, rk := mkKey(apikey.CreateParams{})
	apptest.Must(t, keys.Revoke(ctx, rk.ID, "test", "test"), "revoke")
	expired, xk := mkKey(apikey.CreateParams{})
	past := time.Now().Add(-time.Second)
	_, err = keys.Update(ctx, xk.ID, apikey.UpdateParams{ExpiresAt: &past}, "test")
	apptest.Must(t, err, "expire")
	wrongScope, _ := mkKey(apikey.CreateParams{Scopes: []string{"other"}})
	limited, _ := mkKey(apikey.CreateParams{Rate: apikey.Rate{Count: 1, Period: time.Hour}})
	quota, _ := mkKey(apikey.CreateParams{Quota: apikey.Quota{Limit: 1, Period: apikey.QuotaTotal}})
	unknown, _ := apikey.Generate(nil, apikey.EnvLive)
	// Spend the limited key's one request and the quota's one credit.
	for _, k := range []string{limited, quota} {
		if res := get(t, in.Client(), in.URL("/api/warm-up"), "Authorization", "Bearer "+k); res.StatusCode != 200 {
			t.Fatalf("warm-up: %d", res.StatusCode)
		} else {
			_ = body(t, res)
		}
	}
	time.Sleep(1100 * time.Millisecond) // the server's cache learns of the revocation and expiry

	// Sessions: one that expires (idle 2s), then the others.
	person := func(name string) *person {
		p := newPerson(t, in)
		p.register(map[string]string{"username": name})
		return p
	}
	stale := person("stale")
	staleTok := stale.cookie().Value
	time.Sleep(2100 * time.Millisecond)
	gone := person("gone")
	goneTok := gone.cookie().Value
	gone.want(204, "POST", "/.keyway/auth/logout", nil)
	owner := person("owner")
	rescuer := newPerson(t, in)
	live := owner.cookie().Value
	origin := owner.origin

	// A recovery (restricted) session.
	restrictedOwner := newPerson(t, in)
	var out struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	apptest.Must(t, json.Unmarshal(restrictedOwner.register(map[string]string{"username": "restricted"}), &out), "codes")
	rescuer.want(200, "POST", "/.keyway/auth/recovery", map[string]string{"username": "restricted", "code": out.RecoveryCodes[0]})
	restricted := rescuer.cookie().Value

	type cred struct {
		name, kind, method string
		hdr                []string
		meant              int
	}
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	cookie := func(tok string, more ...string) []string {
		return append([]string{"Cookie", "__Host-keyway_session=" + tok}, more...)
	}
	csrf := []string{"X-Keyway-CSRF", "1", "Origin", origin, "Sec-Fetch-Site", "same-origin"}
	creds := []cred{
		{"no key", "key", "GET", nil, 401},
		{"malformed key", "key", "GET", bearer("kw_live_garbage"), 401},
		{"unknown key", "key", "GET", bearer(unknown.Raw), 401},
		{"revoked key", "key", "GET", bearer(revoked), 401},
		{"expired key", "key", "GET", bearer(expired), 401},
		{"key without the scope", "key", "GET", bearer(wrongScope), 403},
		{"key over its rate", "key", "GET", bearer(limited), 429},
		{"key over its quota", "key", "GET", bearer(quota), 429},
		{"valid key", "key", "GET", bearer(valid), 200},
		{"no cookie", "session", "GET", nil, 401},
		{"expired session", "session", "GET", cookie(staleTok), 401},
		{"revoked session", "session", "GET", cookie(goneTok), 401},
		{"recovery session", "session", "GET", cookie(restricted), 401},
		{"write without the CSRF header", "session", "POST", cookie(live, "Origin", origin), 403},
		{"write from another origin", "session", "POST", cookie(live, "X-Keyway-CSRF", "1", "Origin", "https://evil.example"), 403},
		{"valid session", "session", "GET", cookie(live), 200},
		{"valid session writing", "session", "POST", cookie(live, csrf...), 200},
	}

	// ---- the doors ----
	do := func(c *http.Client, method, url string, hdr []string) (int, http.Header) {
		req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		res, err := c.Do(req)
		apptest.Must(t, err, "%s %s", method, url)
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode, res.Header
	}
	paths := map[string]string{"key": "/api/x", "session": "/me/x"}
	fa := func(path string, viaHeaders func(method, uri string) []string) func(*testing.T, string, string, []string) (int, http.Header) {
		return func(t *testing.T, kind, method string, hdr []string) (int, http.Header) {
			req := append(viaHeaders(method, paths[kind]), hdr...)
			askMethod := "GET"
			if path == "/.keyway/verify/envoy" {
				path, askMethod = path+paths[kind], method
				defer func() { path = "/.keyway/verify/envoy" }()
			}
			return do(in.HTTP1Client(), askMethod, in.URL(path), req)
		}
	}
	middleware := func(v *verify.Verifier) func(*testing.T, string, string, []string) (int, http.Header) {
		h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
		return func(t *testing.T, kind, method string, hdr []string) (int, http.Header) {
			r := httptest.NewRequest(method, paths[kind], nil)
			r.RemoteAddr = "192.0.2.7:1"
			for i := 0; i+1 < len(hdr); i += 2 {
				r.Header.Add(hdr[i], hdr[i+1])
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code, w.Header()
		}
	}
	admin := &http.Client{Timeout: 10 * time.Second}
	doors := []door{
		{"proxy", []string{"key", "session"}, []string{"GET", "POST"}, func(t *testing.T, kind, method string, hdr []string) (int, http.Header) {
			return do(in.Client(), method, in.URL(paths[kind]), hdr)
		}, same},
		{"admin listener", []string{"key"}, []string{"GET"}, func(t *testing.T, _, method string, hdr []string) (int, http.Header) {
			return do(admin, method, "http://"+in.App.Addr("admin")+"/v1/keys", hdr)
		}, same},
		{"own endpoints", []string{"session"}, []string{"GET", "POST"}, func(t *testing.T, _, method string, hdr []string) (int, http.Header) {
			path := "/.keyway/auth/sessions"
			if method == "POST" {
				path = "/.keyway/auth/stepup/begin"
			}
			return do(in.Client(), method, in.URL(path), hdr)
		}, same},
		{"portal", []string{"session"}, []string{"GET"}, func(t *testing.T, _, method string, hdr []string) (int, http.Header) {
			return do(in.Client(), method, in.URL("/.keyway/portal/account"), hdr)
		}, func(meant int) int {
			if meant == 401 {
				return http.StatusSeeOther // to the sign-in page
			}
			return meant
		}},
		{"verify (Traefik, Caddy)", []string{"key", "session"}, []string{"GET", "POST"}, fa("/.keyway/verify", func(m, u string) []string {
			return []string{"X-Forwarded-Method", m, "X-Forwarded-Uri", u}
		}), same},
		{"verify (nginx)", []string{"key", "session"}, []string{"GET", "POST"}, fa("/.keyway/verify/nginx", func(m, u string) []string {
			return []string{"X-Original-Method", m, "X-Original-URI", u}
		}), func(meant int) int {
			if meant == 200 || meant == 401 {
				return meant
			}
			return 403
		}},
		{"verify (Envoy)", []string{"key", "session"}, []string{"GET", "POST"}, fa("/.keyway/verify/envoy", func(string, string) []string { return nil }), same},
		{"middleware (remote)", []string{"key", "session"}, []string{"GET", "POST"}, middleware(remote), same},
		{"middleware (embedded)", []string{"key", "session"}, []string{"GET", "POST"}, middleware(embedded), same},
	}

	for _, c := range creds {
		t.Run(c.name, func(t *testing.T) {
			for _, d := range doors {
				if !contains(d.kinds, c.kind) || !contains(d.methods, c.method) {
					continue
				}
				got, h := d.send(t, c.kind, c.method, c.hdr)
				want := d.status(c.meant)
				if d.name == "middleware (embedded)" && c.name == "key over its rate" {
					// Rate limits are per process until the cluster's shared
					// limiter: an embedded keyway is a process of its own,
					// where this key has spent nothing. (Quotas are read from
					// the store, so that row agrees.)
					want = 200
				}
				if d.name == "own endpoints" && want == 200 {
					got, want = min(got, 200), 200 // any 2xx of the endpoint itself
				}
				if got != want {
					t.Errorf("%s: %d, want %d", d.name, got, want)
				}
				if d.name == "verify (nginx)" && c.meant != want && h.Get("X-Keyway-Status") != fmt.Sprint(c.meant) {
					t.Errorf("%s: X-Keyway-Status %q, want %d", d.name, h.Get("X-Keyway-Status"), c.meant)
				}
				if want == 429 && h.Get("Retry-After") == "" && c.name == "key over its rate" {
					t.Errorf("%s: 429 without Retry-After", d.name)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
