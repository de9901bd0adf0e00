package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
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
func cluster(t *testing.T, n int, yaml string, tweak ...func(*config.Config)) ([]*apptest.Instance, []*config.Config) {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	nodes := make([]*apptest.Instance, n)
	cfgs := make([]*config.Config, n)
	for i := range nodes {
		cfg := apptest.Config(t, yaml)
		cfg.SetStore(dsn)
		for _, f := range tweak {
			f(cfg)
		}
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

// TestClusterSharesLimitsAndRidesOutOutages runs three nodes with Redis
// and PostgreSQL behind proxies the test can cut, as a restart or a
// partition looks to a node. A key's limit and a route's per-client limit
// hold across the nodes under load from all three; with Redis cut, every
// node keeps answering on its share of each limit (never unlimited) and
// the sharing resumes when Redis is back; with PostgreSQL cut, cached keys
// keep working until the 5 s staleness bound, readiness says not ready,
// then requests fail closed (503), and all recovers by itself.
func TestClusterSharesLimitsAndRidesOutOutages(t *testing.T) {
	redisAddr, prefix := testenv.RedisAddr(t)
	rproxy := testenv.NewProxy(t, redisAddr)
	dsn := testenv.PostgresDSN(t)
	u, err := url.Parse(dsn)
	apptest.Must(t, err, "dsn")
	pproxy := testenv.NewProxy(t, u.Host)
	u.Host = pproxy.Addr()
	yaml := fmt.Sprintf(clusterYAML, apptest.Echo(t, time.Second)) +
		"  - {name: open, path: /open, upstream: echo, policy: public, rate_limit: {rate: 30/min, burst: 30}}\n"
	nodes, cfgs := cluster(t, 3, yaml, func(c *config.Config) {
		c.SetStore(u.String())
		c.Redis.Addr, c.Redis.Prefix = rproxy.Addr(), prefix
	})
	keys, err := app.OpenKeys(context.Background(), cfgs[0], slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	t.Cleanup(func() { _ = keys.Close() })
	clients := make([]*http.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = n.Client()
	}
	// hammer sends per requests to each node at once and counts answers by status.
	hammer := func(path, key string, per int) map[int]int {
		var mu sync.Mutex
		got := map[int]int{}
		var wg sync.WaitGroup
		for i, n := range nodes {
			for range per {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, n.URL(path), nil)
					if key != "" {
						req.Header.Set("Authorization", "Bearer "+key)
					}
					res, err := clients[i].Do(req)
					if err != nil {
						t.Errorf("GET %s: %v", path, err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					_ = res.Body.Close()
					mu.Lock()
					got[res.StatusCode]++
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		return got
	}
	newKey := func() string {
		raw, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "limited", Owner: "service:load",
			Rate: apikey.Rate{Count: 60, Period: time.Minute}}, "cli")
		apptest.Must(t, err, "create")
		return raw
	}

	// Shared: 3 nodes × 40 requests on a key allowed 60 at once.
	if got := hammer("/api", newKey(), 40); got[200] != 60 || got[429] != 60 {
		t.Fatalf("a key's limit of 60 across three nodes: %v, want 60×200 and 60×429", got)
	}
	if got := hammer("/open", "", 20); got[200] != 30 || got[429] != 30 {
		t.Fatalf("a route's per-client limit of 30 across three nodes: %v", got)
	}

	// A daily quota of 50 is one count across the nodes, never overdrawn.
	rawQ, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "quota", Owner: "service:load",
		Quota: apikey.Quota{Limit: 50, Period: apikey.QuotaDay}}, "cli")
	apptest.Must(t, err, "create")
	if got := hammer("/api", rawQ, 30); got[200] != 50 || got[429] != 40 {
		t.Fatalf("a daily quota of 50 across three nodes: %v, want 50×200 and 40×429", got)
	}

	// The sign-up budget of one source (a burst of 5) is shared too.
	visitor := newPerson(t, nodes[0])
	signUps := func() map[int]int {
		got := map[int]int{}
		for i := range 12 {
			res, _ := visitor.on(nodes[i%3]).do("POST", "/.keyway/auth/passkey/register/begin", map[string]string{"username": fmt.Sprintf("v%d", i)})
			got[res.StatusCode]++
		}
		return got
	}
	if got := signUps(); got[200] != 5 || got[429] != 7 {
		t.Fatalf("one source's sign-up budget of 5 across three nodes: %v", got)
	}

	// Redis cut: each node enforces a third of the limit on its own, once
	// every node has seen the others' heartbeats.
	waitFor(t, 5*time.Second, "three nodes in every node's registry", func() bool {
		for _, n := range nodes {
			res, err := http.Get("http://" + n.App.Addr("admin") + "/metrics")
			apptest.Must(t, err, "metrics")
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if !strings.Contains(string(b), "\nkeyway_cluster_nodes 3\n") {
				return false
			}
		}
		return true
	})
	key := newKey()
	hammer("/api", key, 1) // cached on every node before the cut
	rproxy.Cut()
	got := hammer("/api", newKey(), 40)
	if got[200] > 60 || got[200] < 57 || got[200]+got[429] != 120 {
		t.Fatalf("with Redis cut, a fresh key's limit of 60: %v, want at most 60 allowed, the rest 429", got)
	}
	if got := signUps(); got[503] != 12 {
		t.Fatalf("with Redis cut, the sign-up budget (an abuse limit): %v, want 503 every time (fail closed)", got)
	}
	rproxy.Restore()
	waitFor(t, 5*time.Second, "shared limits after Redis came back", func() bool {
		got := hammer("/api", newKey(), 30)
		return got[200] == 60
	})

	// PostgreSQL cut: a cached key works until the staleness bound, then
	// fails closed; readiness says so; all recovers by itself.
	// (A load that races with the invalidation of another key is not
	// cached: let the last creations' news settle, then load it twice.)
	time.Sleep(300 * time.Millisecond)
	hammer("/api", key, 1)
	hammer("/api", key, 1)
	pproxy.Cut()
	cutAt := time.Now()
	if got := hammer("/api", key, 1); got[200] != 3 {
		t.Fatalf("with PostgreSQL just cut, a cached key: %v, want 200 on every node", got)
	}
	ready := func(n *apptest.Instance, c *http.Client) int {
		res, err := c.Get(n.URL("/.keyway/readyz"))
		apptest.Must(t, err, "readyz")
		_ = res.Body.Close()
		return res.StatusCode
	}
	if got := ready(nodes[1], clients[1]); got != 503 {
		t.Fatalf("readyz with PostgreSQL cut: %d, want 503", got)
	}
	time.Sleep(time.Until(cutAt.Add(6 * time.Second)))
	if got := hammer("/api", key, 1); got[503] != 3 {
		t.Fatalf("with PostgreSQL cut for 6s, a cached key: %v, want 503 on every node (the 5s staleness bound)", got)
	}
	pproxy.Restore()
	waitFor(t, 10*time.Second, "the nodes after PostgreSQL came back", func() bool {
		return hammer("/api", key, 1)[200] == 3 && ready(nodes[2], clients[2]) == 200
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
