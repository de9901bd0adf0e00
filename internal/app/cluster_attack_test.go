package app_test

// An adversarial review of cluster mode (nodes sharing PostgreSQL and
// Redis): key and session changes reaching the other node, a pruned
// change feed, double spends across nodes, the audit chain written from
// two nodes, Redis cut with on_failure closed, limits spread over nodes,
// and two deployments on one Redis (the finding: a shared default
// prefix, now a keyway check warning).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/store"
	"github.com/keywayhq/keyway/internal/testenv"
)

const clusterAttackYAML = `
data_dir: {{data}}
passkeys: {sign_up: open}
upstreams: {echo: {url: %s}}
routes:
  - {name: me, path: /me, upstream: echo, policy: session}
  - {name: api, path: /api, upstream: echo, policy: api_key}
  - {name: scoped, path: /scoped, upstream: echo, policy: api_key, scopes: [read]}
`

func attackKeys(t *testing.T, cfg *config.Config) *app.Keys {
	t.Helper()
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open keys")
	t.Cleanup(func() { _ = keys.Close() })
	return keys
}

func attackCall(t *testing.T, n *apptest.Instance, c *http.Client, path, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL(path), nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

// TestClusterAttackKeyChangesReachOtherNodeWithinASecond makes each kind
// of narrowing change on a key cached by node B (through a store handle,
// as node A, the admin API or the CLI would) and wants B to refuse within
// the documented bound (about a second).
func TestClusterAttackKeyChangesReachOtherNodeWithinASecond(t *testing.T) {
	nodes, cfgs := cluster(t, 2, fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)))
	keys := attackKeys(t, cfgs[0])
	ctx := context.Background()
	b, cb := nodes[1], nodes[1].Client()
	zero := time.Duration(0)
	cases := []struct {
		name   string
		path   string
		change func(k *apikey.Key) error
	}{
		{"revoke", "/api", func(k *apikey.Key) error { return keys.Revoke(ctx, k.ID, "test", "cli") }},
		{"rotate with overlap 0", "/api", func(k *apikey.Key) error {
			_, err := keys.Rotate(ctx, k.ID, apikey.RotateParams{Overlap: &zero}, "cli")
			return err
		}},
		{"scope narrowed", "/scoped", func(k *apikey.Key) error {
			s := []string{"write"}
			_, err := keys.Update(ctx, k.ID, apikey.UpdateParams{Scopes: &s}, "cli")
			return err
		}},
		{"cidrs narrowed", "/api", func(k *apikey.Key) error {
			c := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
			_, err := keys.Update(ctx, k.ID, apikey.UpdateParams{CIDRs: &c}, "cli")
			return err
		}},
		{"expiry moved to now", "/api", func(k *apikey.Key) error {
			at := time.Now().Add(-time.Second)
			_, err := keys.Update(ctx, k.ID, apikey.UpdateParams{ExpiresAt: &at}, "cli")
			return err
		}},
		{"delete", "/api", func(k *apikey.Key) error { return keys.Delete(ctx, k.ID, "cli") }},
	}
	for _, c := range cases {
		raw, k, err := keys.Create(ctx, apikey.CreateParams{Name: "victim", Owner: "service:victim", Scopes: []string{"read", "write"}}, "cli")
		apptest.Must(t, err, "create")
		for range 2 {
			if got := attackCall(t, b, cb, c.path, raw); got != 200 {
				t.Fatalf("%s: a new key on node B: %d", c.name, got)
			}
		}
		if err := c.change(k); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		start := time.Now()
		for {
			got := attackCall(t, b, cb, c.path, raw)
			if got == 401 || got == 403 {
				break
			}
			if time.Since(start) > time.Second {
				t.Errorf("%s: node B still answers %d a second after the change", c.name, got)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestClusterAttackPrunedFeedDropsStaleCache cuts node B off the store,
// revokes a key B has cached, prunes the change feed past the revocation
// (as the daily prune does), and restores B's link: B must notice it fell
// behind the pruned feed and refuse the key, not trust its stale cache.
func TestClusterAttackPrunedFeedDropsStaleCache(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	u, err := url.Parse(dsn)
	apptest.Must(t, err, "dsn")
	pproxy := testenv.NewProxy(t, u.Host)
	u.Host = pproxy.Addr()
	n := 0
	nodes, cfgs := cluster(t, 2, fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)), func(c *config.Config) {
		if n++; n == 2 {
			c.SetStore(u.String())
		} else {
			c.SetStore(dsn)
		}
	})
	keys := attackKeys(t, cfgs[0])
	ctx := context.Background()
	b, cb := nodes[1], nodes[1].Client()
	raw, k, err := keys.Create(ctx, apikey.CreateParams{Name: "victim", Owner: "service:victim"}, "cli")
	apptest.Must(t, err, "create")
	time.Sleep(300 * time.Millisecond)
	for range 2 {
		if got := attackCall(t, b, cb, "/api", raw); got != 200 {
			t.Fatalf("a new key on B: %d", got)
		}
	}
	pproxy.Cut()
	apptest.Must(t, keys.Revoke(ctx, k.ID, "test", "cli"), "revoke")
	for range 5 {
		_, _, err := keys.Create(ctx, apikey.CreateParams{Name: "noise", Owner: "service:noise"}, "cli")
		apptest.Must(t, err, "create noise")
	}
	db, err := store.Open(ctx, cfgs[0].Store, false)
	apptest.Must(t, err, "open store")
	pruned, err := db.PruneChanges(ctx, time.Now().Add(time.Hour))
	_ = db.Close()
	apptest.Must(t, err, "prune")
	if pruned == 0 {
		t.Fatal("nothing pruned")
	}
	pproxy.Restore()
	start := time.Now()
	for {
		got := attackCall(t, b, cb, "/api", raw)
		if got == 401 {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("node B, back on the store after missing a pruned revocation, still answers %d 2s later", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterAttackRecoveryCodeDoubleSpend spends one recovery code on
// two nodes at the same moment: only one may succeed.
func TestClusterAttackRecoveryCodeDoubleSpend(t *testing.T) {
	nodes, _ := cluster(t, 2, fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)))
	owner := newPerson(t, nodes[0])
	codes := signUpCodes(t, owner, "rita")
	for round := range 3 {
		var mu sync.Mutex
		got := map[int]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 2 {
			p := newPerson(t, nodes[i])
			wg.Go(func() {
				<-start
				res, _ := p.do("POST", "/.keyway/auth/recovery", map[string]string{"username": "rita", "code": codes[round]})
				mu.Lock()
				got[res.StatusCode]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if got[200] > 1 {
			t.Fatalf("round %d: one recovery code spent %d times across two nodes: %v", round, got[200], got)
		}
		if got[200] == 0 {
			t.Logf("round %d: no attempt succeeded: %v", round, got)
		}
	}
}

// TestClusterAttackLogoutReachesOtherNode signs out on A and replays the
// cookie on B at once.
func TestClusterAttackLogoutReachesOtherNode(t *testing.T) {
	nodes, _ := cluster(t, 2, fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)))
	ada := newPerson(t, nodes[0])
	ada.register(map[string]string{"username": "ada"})
	ck := ada.cookie()
	ada.on(nodes[1]).want(200, "GET", "/me", nil)
	ada.want(204, "POST", "/.keyway/auth/logout", nil)
	req, _ := http.NewRequest(http.MethodGet, nodes[1].URL("/me"), nil)
	req.AddCookie(ck)
	res, err := nodes[1].Client().Do(req)
	apptest.Must(t, err, "GET /me")
	_ = res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("a session signed out on A, replayed on B at once: %d, want 401", res.StatusCode)
	}
}

// TestClusterAttackAuditChainUnderConcurrentNodes appends audit events
// from two store handles at once and verifies the chain.
func TestClusterAttackAuditChainUnderConcurrentNodes(t *testing.T) {
	_, cfgs := cluster(t, 2, fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)))
	ka, kb := attackKeys(t, cfgs[0]), attackKeys(t, cfgs[1])
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 40 {
		keys := ka
		if i%2 == 1 {
			keys = kb
		}
		wg.Go(func() {
			_, k, err := keys.Create(ctx, apikey.CreateParams{Name: "race", Owner: "service:race"}, "cli")
			if err != nil {
				t.Errorf("create: %v", err)
				return
			}
			if err := keys.Revoke(ctx, k.ID, "race", "cli"); err != nil {
				t.Errorf("revoke: %v", err)
			}
		})
	}
	wg.Wait()
	if _, err := app.VerifyAudit(ctx, cfgs[1], os.Getenv, nil); err != nil {
		t.Fatalf("the audit trail after concurrent appends from two nodes: %v", err)
	}
}

// TestClusterAttackRedisFailClosed cuts Redis under on_failure: closed:
// rate-limited keys must answer 503, never pass unlimited.
func TestClusterAttackRedisFailClosed(t *testing.T) {
	redisAddr, prefix := testenv.RedisAddr(t)
	rproxy := testenv.NewProxy(t, redisAddr)
	nodes, cfgs := cluster(t, 2, fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)), func(c *config.Config) {
		c.Redis.Addr, c.Redis.Prefix, c.Redis.OnFailure = rproxy.Addr(), prefix, "closed"
	})
	keys := attackKeys(t, cfgs[0])
	raw, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "limited", Owner: "service:l",
		Rate: apikey.Rate{Count: 600, Period: time.Minute}}, "cli")
	apptest.Must(t, err, "create")
	for i, n := range nodes {
		if got := attackCall(t, n, n.Client(), "/api", raw); got != 200 {
			t.Fatalf("node %d before the cut: %d", i, got)
		}
	}
	rproxy.Cut()
	t.Cleanup(rproxy.Restore)
	for i, n := range nodes {
		for range 5 {
			if got := attackCall(t, n, n.Client(), "/api", raw); got != 503 {
				t.Fatalf("node %d with Redis cut and on_failure closed: %d, want 503", i, got)
			}
		}
	}
}

// TestClusterAttackRedisPrefixIsolatesDeployments runs two separate
// deployments (their own databases) on one Redis, each with a prefix of
// its own: one deployment's clients do not spend the other's budgets. Two
// left at the default prefix would share them, which keyway check warns
// about (TestLint, "redis-default-prefix"): the review found that sharing.
func TestClusterAttackRedisPrefixIsolatesDeployments(t *testing.T) {
	redisAddr, prefix := testenv.RedisAddr(t)
	yaml := fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)) +
		"  - {name: open, path: /open, upstream: echo, policy: public, rate_limit: {rate: 5/min, burst: 5}}\n"
	start := func(own string) *apptest.Instance {
		cfg := apptest.Config(t, yaml)
		cfg.SetStore(testenv.PostgresDSN(t))
		cfg.Redis.Addr, cfg.Redis.Prefix = redisAddr, prefix+own+":"
		if w := cfg.Lint(); slices.ContainsFunc(w, func(w config.Warning) bool { return w.Code == "redis-default-prefix" }) {
			t.Fatalf("a prefix of its own drew the default-prefix warning")
		}
		return apptest.Start(t, cfg)
	}
	x, y := start("x"), start("y")
	for range 5 {
		if got := attackCall(t, x, x.Client(), "/open", ""); got != 200 {
			t.Fatalf("deployment X within its budget: %d", got)
		}
	}
	if got := attackCall(t, y, y.Client(), "/open", ""); got != 200 {
		t.Fatalf("deployment Y's first request, after a client spent deployment X's budget: %d, want 200", got)
	}
}

// TestClusterAttackPerKeyRouteLimitNotDoubledAcrossNodes spreads one
// key's requests over two nodes on a route limited per key: together they
// may not pass more than the route allows.
func TestClusterAttackPerKeyRouteLimitNotDoubledAcrossNodes(t *testing.T) {
	redisAddr, prefix := testenv.RedisAddr(t)
	yaml := fmt.Sprintf(clusterAttackYAML, apptest.Echo(t, time.Second)) +
		"  - {name: \"lim:it\", path: /limited, upstream: echo, policy: api_key, rate_limit: {rate: 10/min, burst: 10, per: key}}\n"
	nodes, cfgs := cluster(t, 2, yaml, func(c *config.Config) {
		c.Redis.Addr, c.Redis.Prefix = redisAddr, prefix
	})
	keys := attackKeys(t, cfgs[0])
	raw, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "spread", Owner: "service:spread"}, "cli")
	apptest.Must(t, err, "create")
	got := map[int]int{}
	for i := range 20 {
		n := nodes[i%2]
		got[attackCall(t, n, n.Client(), "/limited", raw)]++
	}
	if got[200] != 10 || got[429] != 10 {
		t.Fatalf("a per-key route limit of 10 spread over two nodes: %v, want 10×200 and 10×429", got)
	}
}
