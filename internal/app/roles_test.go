package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
)

func bodyOf(t *testing.T, res *http.Response) []byte {
	t.Helper()
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	apptest.Must(t, err, "read")
	return b
}

const rolesYAML = `
data_dir: {{data}}
passkeys: {sign_up: open}
forward_auth: {enabled: true, audience: "urn:api"}
upstreams: {echo: {url: %s}}
routes:
  - {name: ops, path: /ops, upstream: echo, policy: session, roles: [ops, oncall]}
  - {name: anyone, path: /anyone, upstream: echo, policy: session}
  - {name: fa-ops, path: /fa-ops, policy: session, roles: [ops]}
`

// TestRolesOnSessionRoutes: a session route with roles lets in only people
// holding one of them, through the proxy and through forward auth; an
// administrator gives and takes roles (the change counts at the person's
// next request, and is audited); the upstream gets X-Keyway-Roles from
// keyway only, whatever a client sends in any spelling.
func TestRolesOnSessionRoutes(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(rolesYAML, apptest.Echo(t, time.Second)))
	in := apptest.Start(t, cfg)
	setup := in.App.SetupURL()
	root := newPerson(t, in)
	root.register(map[string]string{"username": "root", "invite": setup[strings.Index(setup, "#token=")+7:]})
	ann := newPerson(t, in)
	var signedUp struct{ User struct{ ID string } }
	apptest.Must(t, json.Unmarshal(ann.register(map[string]string{"username": "ann"}), &signedUp), "sign-up")
	annID := signedUp.User.ID

	forged := []string{"X-Keyway-Roles", "X_Keyway_Roles", "x-keyway-roles", "X-KEYWAY-ROLES"}
	get := func(p *person, path string) (*http.Response, apptest.Echoed) {
		t.Helper()
		req, _ := http.NewRequest("GET", in.URL(path), nil)
		for _, h := range forged {
			req.Header[h] = []string{"ops"}
		}
		res, err := p.c.Do(req)
		apptest.Must(t, err, "GET %s", path)
		if res.StatusCode != 200 {
			return res, apptest.Echoed{}
		}
		return res, apptest.DecodeEcho(t, res)
	}
	// Forward auth, as nginx asks, with ann's session cookie.
	verify := func(p *person, uri string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", in.URL("/.keyway/verify/nginx"), nil)
		req.Host = "127.0.0.1"
		req.Header.Set("X-Original-URI", uri)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Keyway-Roles", "ops")
		req.AddCookie(p.cookie())
		res, err := in.HTTP1Client().Do(req)
		apptest.Must(t, err, "verify")
		_ = res.Body.Close()
		return res
	}

	// No roles yet: the route with roles refuses (403, not 401: she is
	// signed in), the route without lets her in, with no roles header.
	res, _ := get(ann, "/ops")
	if p := wantProblem(t, res, 403, "urn:keyway:problem:forbidden"); !strings.Contains(p.Detail, "role") {
		t.Fatalf("refusal detail %q", p.Detail)
	}
	res, echoed := get(ann, "/anyone")
	if res.StatusCode != 200 || len(echoed.Header.Values("X-Keyway-Roles")) != 0 {
		t.Fatalf("a route without roles: %d, roles header %q (forged ones must not pass)", res.StatusCode, echoed.Header.Values("X-Keyway-Roles"))
	}
	if res := verify(ann, "/fa-ops"); res.StatusCode != 403 || res.Header.Get("X-Keyway-Roles") != "" {
		t.Fatalf("forward auth without the role: %d, roles %q", res.StatusCode, res.Header.Get("X-Keyway-Roles"))
	}

	// Only an administrator sets roles, and only valid ones.
	if res, _ := ann.do("PUT", "/.keyway/admin/users/"+annID+"/roles", map[string]any{"roles": []string{"ops"}}); res.StatusCode != 403 {
		t.Fatalf("a person setting her own roles: %d", res.StatusCode)
	}
	for _, bad := range []any{map[string]any{"roles": []string{"Ops"}}, map[string]any{"roles": []string{"a b"}}, map[string]any{}, "not json"} {
		if res, b := root.do("PUT", "/.keyway/admin/users/"+annID+"/roles", bad); res.StatusCode != 400 {
			t.Fatalf("roles %v: %d %s", bad, res.StatusCode, b)
		}
	}
	if res, _ := root.do("PUT", "/.keyway/admin/users/usr_nobody/roles", map[string]any{"roles": []string{"ops"}}); res.StatusCode != 404 {
		t.Fatalf("roles of nobody: %d", res.StatusCode)
	}
	out := root.want(200, "PUT", "/.keyway/admin/users/"+annID+"/roles", map[string]any{"roles": []string{"oncall", "billing", "oncall"}})
	if !strings.Contains(string(out), `"roles":["billing","oncall"]`) {
		t.Fatalf("set roles: %s", out)
	}

	// At her next request: one of the route's roles is enough.
	res, echoed = get(ann, "/ops")
	if res.StatusCode != 200 || strings.Join(echoed.Header.Values("X-Keyway-Roles"), "|") != "billing oncall" {
		t.Fatalf("with a role: %d, the upstream got roles %q", res.StatusCode, echoed.Header.Values("X-Keyway-Roles"))
	}
	if v := echoed.Header.Values("X_Keyway_Roles"); len(v) != 0 {
		t.Fatalf("a forged spelling reached the upstream: %q", v)
	}
	if res := verify(ann, "/fa-ops"); res.StatusCode != 403 {
		t.Fatalf("forward auth on a route needing ops, with oncall: %d", res.StatusCode)
	}
	root.want(200, "PUT", "/.keyway/admin/users/"+annID+"/roles", map[string]any{"roles": []string{"ops"}})
	res = verify(ann, "/fa-ops")
	if res.StatusCode != 200 || res.Header.Get("X-Keyway-Roles") != "ops" {
		t.Fatalf("forward auth with the role: %d, X-Keyway-Roles %q", res.StatusCode, res.Header.Get("X-Keyway-Roles"))
	}
	// The signed assertion carries the roles too.
	parts := strings.Split(res.Header.Get("X-Keyway-Assertion"), ".")
	if len(parts) != 3 {
		t.Fatal("no assertion")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(payload), `"kw_roles":"ops"`) {
		t.Fatalf("assertion claims %s", payload)
	}
	// A route without roles passes them on as well; the admin page lists them.
	if _, echoed = get(ann, "/anyone"); echoed.Header.Get("X-Keyway-Roles") != "ops" {
		t.Fatalf("roles on a route without roles: %q", echoed.Header.Get("X-Keyway-Roles"))
	}
	if b := root.want(200, "GET", "/.keyway/admin/users", nil); !strings.Contains(string(b), `"roles":["ops"]`) {
		t.Fatalf("admin users: %s", b)
	}

	// Taken away: refused again at once.
	root.want(200, "PUT", "/.keyway/admin/users/"+annID+"/roles", map[string]any{"roles": []string{}})
	if res, _ := get(ann, "/ops"); res.StatusCode != 403 {
		t.Fatalf("after the roles were removed: %d", res.StatusCode)
	}
	if res := verify(ann, "/fa-ops"); res.StatusCode != 403 {
		t.Fatalf("forward auth after the roles were removed: %d", res.StatusCode)
	}
	// The admin listener's API does the same for a service account's
	// admin key (automation: an identity provider's groups, say).
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	t.Cleanup(func() { _ = keys.Close() })
	adminKey, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "sync", Owner: "service:idp-sync",
		Scopes: []string{apikey.AdminScope}}, "test")
	apptest.Must(t, err, "admin key")
	adminCall := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+in.App.Addr("admin")+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		res, err := http.DefaultClient.Do(req)
		apptest.Must(t, err, "%s %s", method, path)
		return res.StatusCode, string(bodyOf(t, res))
	}
	if code, b := adminCall("PUT", "/v1/users/"+annID+"/roles", `{"roles":["ops"]}`); code != 200 || !strings.Contains(b, `"roles":["ops"]`) {
		t.Fatalf("admin API roles: %d %s", code, b)
	}
	if code, b := adminCall("GET", "/v1/users", ""); code != 200 || !strings.Contains(b, `"username":"ann"`) {
		t.Fatalf("admin API users: %d %s", code, b)
	}
	if code, _ := adminCall("PUT", "/v1/users/"+annID+"/roles", `{"roles":["NOT OK"]}`); code != 400 {
		t.Fatalf("admin API, a bad role: %d", code)
	}
	if res, _ := get(ann, "/ops"); res.StatusCode != 200 {
		t.Fatalf("after the admin API gave ops: %d", res.StatusCode)
	}
	adminCall("PUT", "/v1/users/"+annID+"/roles", `{"roles":[]}`)

	// Every change is in the audit trail.
	res, b := root.do("GET", "/.keyway/portal/admin/audit", nil)
	if res.StatusCode != 200 || strings.Count(string(b), "user.roles_changed") != 5 {
		t.Fatalf("the audit page: %d, %d role changes listed, want 5", res.StatusCode, strings.Count(string(b), "user.roles_changed"))
	}
	// The admin page shows each person's roles in a form to change them.
	root.want(200, "PUT", "/.keyway/admin/users/"+annID+"/roles", map[string]any{"roles": []string{"oncall", "ops"}})
	if _, page := root.do("GET", "/.keyway/portal/admin/users", nil); !strings.Contains(string(page), `data-url="/.keyway/admin/users/`+annID+`/roles"`) ||
		!strings.Contains(string(page), `value="oncall ops"`) {
		t.Fatalf("the admin users page does not offer ann's roles: %.2000s", page)
	}
}
