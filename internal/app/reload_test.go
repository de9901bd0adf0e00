package app_test

import (
	"context"
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
