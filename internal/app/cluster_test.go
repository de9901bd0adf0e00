package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/testenv"
)

// on returns p talking to another node: the same cookie jar, passkeys and
// public origin, as when a load balancer sends the next request elsewhere.
func (p *person) on(in *apptest.Instance) *person {
	q := *p
	q.in = in
	q.c = in.Client()
	q.c.Jar = p.c.Jar
	return &q
}

// cluster starts n nodes on one PostgreSQL schema, sharing the pepper and
// the local CA (one data directory), with the first node's origin as the
// public origin of all, as behind a load balancer.
func cluster(t *testing.T, n int, yaml string) ([]*apptest.Instance, []*config.Config) {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	nodes := make([]*apptest.Instance, n)
	cfgs := make([]*config.Config, n)
	for i := range nodes {
		cfg := apptest.Config(t, yaml)
		cfg.SetStore(dsn)
		if i > 0 {
			cfg.SetDataDir(cfgs[0].DataDir)
			cfg.Passkeys.Origins = []string{strings.TrimSuffix(nodes[0].URL("/"), "/")}
		}
		cfgs[i], nodes[i] = cfg, apptest.Start(t, cfg)
	}
	return nodes, cfgs
}

const clusterYAML = `
data_dir: {{data}}
passkeys: {sign_up: open}
upstreams: {echo: {url: %s}}
routes:
  - {name: me, path: /me, upstream: echo, policy: session}
  - {name: api, path: /api, upstream: echo, policy: api_key}
`

// TestClusterSharesCeremoniesAndSessions runs three nodes on one
// PostgreSQL store: a sign-up begun on one node finishes on another, a
// sign-in likewise, a session made anywhere works everywhere, step-up on
// one node counts on another, and a session revoked on one node is refused
// by the others at their next request.
func TestClusterSharesCeremoniesAndSessions(t *testing.T) {
	nodes, _ := cluster(t, 3, fmt.Sprintf(clusterYAML, apptest.Echo(t, time.Second)))
	a, b, c := nodes[0], nodes[1], nodes[2]

	ada := newPerson(t, a)
	opts := ada.want(200, "POST", "/.keyway/auth/passkey/register/begin", map[string]string{"username": "ada"})
	onB := ada.on(b)
	if res, out := onB.finishRegistration(opts); res.StatusCode != 201 {
		t.Fatalf("a sign-up begun on node A, finished on node B: %d %s", res.StatusCode, out)
	}
	ada.creds, ada.auth = onB.creds, onB.auth
	first := ada.cookie()
	for _, n := range nodes {
		ada.on(n).want(200, "GET", "/me", nil)
	}

	// A sign-in from a second browser, begun on C and finished on A.
	laptop := ada
	ada = newPerson(t, c)
	ada.creds, ada.auth, ada.origin, ada.rp = laptop.creds, laptop.auth, laptop.origin, laptop.rp
	lopts := ada.on(c).want(200, "POST", "/.keyway/auth/passkey/login/begin", map[string]string{})
	ao, err := virtualwebauthn.ParseAssertionOptions(string(lopts))
	apptest.Must(t, err, "assertion options")
	ada.creds[0].Counter++
	if res, out := ada.on(a).do("POST", "/.keyway/auth/passkey/login/finish",
		virtualwebauthn.CreateAssertionResponse(ada.rp, ada.auth, ada.creds[0], *ao)); res.StatusCode != 200 {
		t.Fatalf("a sign-in begun on node C, finished on node A: %d %s", res.StatusCode, out)
	}
	// A ceremony is finished once, on whichever node: a replay elsewhere fails.
	if res, _ := ada.on(b).do("POST", "/.keyway/auth/passkey/login/finish",
		virtualwebauthn.CreateAssertionResponse(ada.rp, ada.auth, ada.creds[0], *ao)); res.StatusCode == 200 {
		t.Fatal("a finished sign-in was replayed on another node")
	}

	// Step-up on B, then a change that needs it on C.
	ada.on(b).stepUp(0)
	ada.on(c).want(200, "POST", "/.keyway/auth/recovery/codes", nil)

	// The laptop's session works on A until B ends every other session.
	withCookie := func(n *apptest.Instance, ck *http.Cookie) int {
		req, _ := http.NewRequest(http.MethodGet, n.URL("/me"), nil)
		req.AddCookie(ck)
		req.Header.Set("X-Keyway-CSRF", "1")
		res, err := n.Client().Do(req)
		apptest.Must(t, err, "GET /me")
		_ = res.Body.Close()
		return res.StatusCode
	}
	if got := withCookie(a, first); got != 200 {
		t.Fatalf("the first session on node A: %d", got)
	}
	ada.on(b).want(200, "POST", "/.keyway/auth/sessions/revoke-others", nil)
	for _, n := range nodes {
		if got := withCookie(n, first); got != 401 {
			t.Fatalf("a session ended on node B, used on %s at once: %d, want 401", n.URL("/"), got)
		}
	}
	ada.on(a).want(200, "GET", "/me", nil) // the current session lives on
}

// TestClusterRevocationReachesEveryNode revokes keys through a handle on
// the shared store (as the CLI or another node would) while two nodes
// have them cached, and measures how long each node takes to refuse: the
// PostgreSQL notification makes it milliseconds; the 250ms poll and the
// 5s staleness bound are the backstops.
func TestClusterRevocationReachesEveryNode(t *testing.T) {
	nodes, cfgs := cluster(t, 3, fmt.Sprintf(clusterYAML, apptest.Echo(t, time.Second)))
	keys, err := app.OpenKeys(context.Background(), cfgs[2], slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	t.Cleanup(func() { _ = keys.Close() })
	call := func(n *apptest.Instance, c *http.Client, key string) int {
		req, _ := http.NewRequest(http.MethodGet, n.URL("/api"), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := c.Do(req)
		apptest.Must(t, err, "GET /api")
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	clients := []*http.Client{nodes[0].Client(), nodes[1].Client()}
	const rounds = 40
	var lags []time.Duration
	for range rounds {
		raw, k, err := keys.Create(context.Background(), apikey.CreateParams{Name: "lag", Owner: "service:lag"}, "cli")
		apptest.Must(t, err, "create")
		for i := range clients {
			if got := call(nodes[i], clients[i], raw); got != 200 {
				t.Fatalf("a new key on node %d: %d", i, got)
			}
		}
		start := time.Now()
		apptest.Must(t, keys.Revoke(context.Background(), k.ID, "test", "cli"), "revoke")
		var wg sync.WaitGroup
		var mu sync.Mutex
		worst := time.Duration(0)
		for i := range clients {
			wg.Go(func() {
				for call(nodes[i], clients[i], raw) != 401 {
					if time.Since(start) > 5*time.Second {
						t.Errorf("node %d still takes a revoked key after 5s", i)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
				mu.Lock()
				worst = max(worst, time.Since(start))
				mu.Unlock()
			})
		}
		wg.Wait()
		lags = append(lags, worst)
	}
	slices.Sort(lags)
	p50, p99 := lags[len(lags)/2], lags[len(lags)*99/100]
	fmt.Printf("revocation propagation to 2 other nodes over %d revocations: p50 %v, p99 %v, max %v\n",
		rounds, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), lags[len(lags)-1].Round(100*time.Microsecond))
	if p99 > time.Second {
		t.Fatalf("revocation p99 %v, want at most 1s", p99)
	}
}
