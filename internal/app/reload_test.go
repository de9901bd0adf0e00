package app_test

import (
	"context"
	"database/sql"
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
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/store"
)

// TestReloadClientProfiles: a reload replaces the client profiles as a
// whole (the routes and methods a client may call, the fields it is sent,
// the profiles new keys may name); a profile that is gone lets its keys
// call nothing. (A file that does not load is refused before Reload: see
// TestSIGHUPReloadsRoutes.)
func TestReloadClientProfiles(t *testing.T) {
	up := bffUpstream(t)
	base := `
data_dir: %s
upstreams: {up: {url: ` + up + `}}
routes:
  - {name: feed, path: /feed, upstream: up, policy: api_key, methods: [GET, POST]}
`
	first := apptest.Config(t, fmt.Sprintf(base, "{{data}}")+`
clients:
  partner:
    credential: api_key
    routes: {feed: [GET]}
    fields: {feed: {allow: [id]}}
`)
	in := apptest.Start(t, first)
	keys, err := app.OpenKeys(context.Background(), first, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	raw, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "p", Owner: "service:p", Client: "partner"}, "test")
	apptest.Must(t, err, "create key")
	c := in.Client()
	call := func(method string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, in.URL("/feed/x"), nil)
		req.Header.Set("Authorization", "Bearer "+raw)
		res, err := c.Do(req)
		apptest.Must(t, err, "%s /feed/x", method)
		return res.StatusCode, body(t, res)
	}
	reload := func(clients string) error {
		next := apptest.Config(t, fmt.Sprintf(base, first.DataDir)+clients)
		// apptest.Start moved the first file's listeners to free ports.
		next.Listen, next.HTTPListen, next.AdminListen = first.Listen, first.HTTPListen, first.AdminListen
		return in.App.Reload(next)
	}

	if status, b := call("GET"); status != 200 || b != `{"id":7}` {
		t.Fatalf("before the reload: %d %s", status, b)
	}
	if status, _ := call("POST"); status != 403 {
		t.Fatalf("a method the profile does not give: %d", status)
	}

	apptest.Must(t, reload(`
clients:
  partner:
    credential: api_key
    routes: {feed: [GET, POST]}
    fields: {feed: {deny: [secret, nested.secret]}}
  mobile:
    credential: api_key
    routes: {feed: [GET]}
`), "reload with changed profiles")
	if status, b := call("GET"); status != 200 || b != `{"id":7,"nested":{"ok":3}}` {
		t.Fatalf("the new fields rule: %d %s", status, b)
	}
	if status, _ := call("POST"); status != 200 {
		t.Fatalf("the method the new profile gives: %d", status)
	}
	adminKey := mustCreateAdminKey(t, first)
	createFor := func(client string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+in.App.Addr("admin")+"/v1/keys",
			strings.NewReader(`{"name":"k","owner":"service:k","client":"`+client+`"}`))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		apptest.Must(t, err, "create a key")
		return res.StatusCode, string(bodyOf(t, res))
	}
	if status, b := createFor("mobile"); status != 201 {
		t.Fatalf("a key for a profile the reload added: %d %s", status, b)
	}

	// The profile removed: its key calls nothing, and no new key names it.
	apptest.Must(t, reload(`
clients:
  mobile: {credential: api_key, routes: {feed: [GET]}}
`), "reload without partner")
	if status, _ := call("GET"); status != 403 {
		t.Fatalf("a key whose profile is gone: %d", status)
	}
	if status, b := createFor("partner"); status != 400 || !strings.Contains(b, "mobile") {
		t.Fatalf("a key for a removed profile: %d %s", status, b)
	}
}

// TestReloadIsAudited: an applied reload and a refused one are both in the
// trail; a reload whose event cannot be written is not applied.
func TestReloadIsAudited(t *testing.T) {
	yaml := "data_dir: {{data}}\nupstreams: {up: {url: %s}}\nroutes:\n%s"
	up := bffUpstream(t)
	cfg := apptest.Config(t, fmt.Sprintf(yaml, up, "  - {name: a, path: /a, upstream: up, policy: public}\n"))
	in := apptest.Start(t, cfg)
	next := func(routes string) *config.Config {
		n := apptest.Config(t, strings.ReplaceAll(fmt.Sprintf(yaml, up, routes), "{{data}}", cfg.DataDir))
		n.Listen, n.HTTPListen, n.AdminListen = cfg.Listen, cfg.HTTPListen, cfg.AdminListen
		return n
	}
	two := "  - {name: a, path: /a, upstream: up, policy: public}\n  - {name: b, path: /b, upstream: up, policy: public}\n"
	apptest.Must(t, in.App.Reload(next(two)), "reload")
	refused := next(two)
	refused.Sessions.IdleTimeout = time.Hour
	if err := in.App.Reload(refused); err == nil {
		t.Fatal("a reload of sessions was applied")
	}
	recs := recentEvents(t, cfg, 2)
	if recs[1].Event.Type != audit.ConfigReloaded || recs[1].Event.Detail["routes"] != "2" ||
		recs[0].Event.Type != audit.ConfigReloadRefused || !strings.Contains(recs[0].Event.Detail["needs_restart"], "sessions") {
		t.Fatalf("the trail after two reloads: %+v", recs)
	}

	// While the store takes no write, a reload fails and its route never answers.
	three := two + "  - {name: c, path: /c, upstream: up, policy: public}\n"
	lockStore(t, cfg, func() {
		if err := in.App.Reload(next(three)); err == nil || !strings.Contains(err.Error(), "audit") {
			t.Fatalf("a reload that could not be audited: %v", err)
		}
	})
	res := get(t, in.Client(), in.URL("/c"))
	if _ = body(t, res); res.StatusCode != 404 {
		t.Fatalf("the unaudited reload's route answers %d", res.StatusCode)
	}
}

// recentEvents returns the newest n events of cfg's trail, newest first.
func recentEvents(t *testing.T, cfg *config.Config, n int) []audit.Record {
	t.Helper()
	db, err := store.Open(context.Background(), cfg.Store, false)
	apptest.Must(t, err, "open store")
	defer func() { _ = db.Close() }()
	recs, err := db.RecentAuditEvents(context.Background(), n)
	apptest.Must(t, err, "read the trail")
	if len(recs) != n {
		t.Fatalf("%d events, want %d", len(recs), n)
	}
	return recs
}

// lockStore holds SQLite's write lock on cfg's store while fn runs: every
// write elsewhere waits out its busy timeout and fails.
func lockStore(t *testing.T, cfg *config.Config, fn func()) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+cfg.Store.Path)
	apptest.Must(t, err, "open")
	defer func() { _ = db.Close() }()
	conn, err := db.Conn(context.Background())
	apptest.Must(t, err, "conn")
	defer func() { _ = conn.Close() }()
	_, err = conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE")
	apptest.Must(t, err, "lock")
	defer func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK") }()
	fn()
}
