package app_test

import (
	"context"
	"fmt"
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

const csrfYAML = `
data_dir: {{data}}
passkeys: {sign_up: open}
forward_auth: {enabled: true}
upstreams: {echo: {url: %s}}
routes:
  - {name: pub, path: /pub, methods: [GET, POST, PUT], upstream: echo, policy: public}
  - {name: api, path: /api, methods: [GET, POST, PUT], upstream: echo, policy: api_key}
  - {name: me, path: /me, methods: [GET, POST, PUT], upstream: echo, policy: session}
clients:
  web:
    credential: session
    routes: {me: []}
    cors: {origins: ["https://app.localhost"]}
`

// TestCSRFAcrossRouteTypes drives one table of CSRF evidence, on requests
// that all carry a live session cookie, through every kind of route: a
// cookie only counts where it authenticates (session routes, keyway's own
// endpoints, forward auth for a session route), and there a state change
// needs X-Keyway-CSRF: 1 with an Origin and Sec-Fetch-Site that are keyway's
// own or its browser app's (same-site); a public route and an API-key
// request are not what a forged cross-site request can be.
func TestCSRFAcrossRouteTypes(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(csrfYAML, apptest.Echo(t, time.Second)))
	in := apptest.Start(t, cfg)
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "keys")
	defer func() { _ = keys.Close() }()
	key, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "k", Owner: "service:ops"}, "test")
	apptest.Must(t, err, "key")
	p := newPerson(t, in)
	p.register(map[string]string{"username": "csrf"})
	cookie := p.cookie()
	self := p.origin
	const appOrigin, sibling = "https://app.localhost", "https://other.localhost"

	type evidence struct {
		name   string
		method string
		hdr    []string
		// ok: the evidence a session-authenticated request needs is there.
		ok bool
	}
	evidences := []evidence{
		{"GET, nothing", "GET", nil, true},
		{"POST, nothing", "POST", nil, false},
		{"POST, header only (a non-browser client)", "POST", []string{"X-Keyway-CSRF", "1"}, true},
		{"POST, header 0", "POST", []string{"X-Keyway-CSRF", "0", "Origin", self}, false},
		{"POST, header, own origin, same-origin", "POST", []string{"X-Keyway-CSRF", "1", "Origin", self, "Sec-Fetch-Site", "same-origin"}, true},
		{"POST, own origin, no header", "POST", []string{"Origin", self, "Sec-Fetch-Site", "same-origin"}, false},
		{"POST, header, foreign origin", "POST", []string{"X-Keyway-CSRF", "1", "Origin", "https://evil.example"}, false},
		{"POST, header, null origin", "POST", []string{"X-Keyway-CSRF", "1", "Origin", "null"}, false},
		{"POST, header, cross-site fetch", "POST", []string{"X-Keyway-CSRF", "1", "Sec-Fetch-Site", "cross-site"}, false},
		{"POST, header, same-site sibling not listed", "POST", []string{"X-Keyway-CSRF", "1", "Origin", sibling, "Sec-Fetch-Site", "same-site"}, false},
		{"POST, header, the web app, same-site", "POST", []string{"X-Keyway-CSRF", "1", "Origin", appOrigin, "Sec-Fetch-Site", "same-site"}, true},
		{"POST, header, the web app, cross-site", "POST", []string{"X-Keyway-CSRF", "1", "Origin", appOrigin, "Sec-Fetch-Site", "cross-site"}, false},
		{"POST, the web app, no header", "POST", []string{"Origin", appOrigin, "Sec-Fetch-Site", "same-site"}, false},
		{"PUT, header, own origin", "PUT", []string{"X-Keyway-CSRF", "1", "Origin", self}, true},
	}

	send := func(t *testing.T, method, path string, hdr []string, client *http.Client) int {
		t.Helper()
		req, _ := http.NewRequest(method, in.URL(path), strings.NewReader("{}"))
		req.AddCookie(cookie)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := client.Do(req)
		apptest.Must(t, err, "%s %s", method, path)
		_ = body(t, res)
		return res.StatusCode
	}
	type routeKind struct {
		name string
		// do sends ev and returns the status.
		do func(t *testing.T, ev evidence) int
		// cookieAuth: the cookie is what authenticates here.
		cookieAuth bool
		// methodOK reports whether the route takes the method at all.
		methodOK func(m string) bool
	}
	getPost := func(m string) bool { return m == "GET" || m == "POST" || m == "PUT" }
	kinds := []routeKind{
		{"public route", func(t *testing.T, ev evidence) int {
			return send(t, ev.method, "/pub/x", ev.hdr, in.Client())
		}, false, getPost},
		{"api_key route with a key", func(t *testing.T, ev evidence) int {
			return send(t, ev.method, "/api/x", append([]string{"Authorization", "Bearer " + key}, ev.hdr...), in.Client())
		}, false, getPost},
		{"session route", func(t *testing.T, ev evidence) int {
			return send(t, ev.method, "/me/x", ev.hdr, in.Client())
		}, true, getPost},
		{"forward auth for a session route", func(t *testing.T, ev evidence) int {
			hdr := append([]string{"X-Forwarded-Method", ev.method, "X-Forwarded-Uri", "/me/x"}, ev.hdr...)
			req, _ := http.NewRequest("GET", in.URL("/.keyway/verify"), nil)
			req.Host = "127.0.0.1"
			req.AddCookie(cookie)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			res, err := in.HTTP1Client().Do(req)
			apptest.Must(t, err, "verify")
			_ = body(t, res)
			return res.StatusCode
		}, true, getPost},
		{"keyway's own endpoint", func(t *testing.T, ev evidence) int {
			path := "/.keyway/auth/session"
			if ev.method != "GET" {
				path = "/.keyway/auth/sessions/revoke-others"
			}
			return send(t, ev.method, path, ev.hdr, in.Client())
		}, true, func(m string) bool { return m == "GET" || m == "POST" }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for _, ev := range evidences {
				if !k.methodOK(ev.method) {
					continue
				}
				got := k.do(t, ev)
				pass := got >= 200 && got < 300
				want := ev.ok || !k.cookieAuth
				if pass != want {
					t.Errorf("%s: %d, want %s", ev.name, got, map[bool]string{true: "a pass", false: "403"}[want])
				}
				if !pass && got != http.StatusForbidden {
					t.Errorf("%s: refused with %d, want 403", ev.name, got)
				}
			}
		})
	}
}
