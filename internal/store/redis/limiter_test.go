package redis_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/store/redis"
	"github.com/keywayhq/keyway/internal/testenv"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// node opens a client as one keyway node would; prefix shares state.
func node(t testing.TB, addr, prefix string) *redis.Client {
	t.Helper()
	c, err := redis.Open(context.Background(), redis.Config{Addr: addr, Prefix: prefix, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func str(s string) string { return s }

// TestSharedLimitAcrossNodes: three nodes share one key's budget exactly,
// as one Memory limiter would give it, and a refusal says when to retry.
func TestSharedLimitAcrossNodes(t *testing.T) {
	addr, prefix := testenv.RedisAddr(t)
	var ls []*redis.Limiter[string]
	for range 3 {
		l := redis.NewLimiter(node(t, addr, prefix), "key", str, redis.FailLocal)
		t.Cleanup(l.Close)
		ls = append(ls, l)
	}
	lim := ratelimit.Limit{Count: 10, Period: time.Minute} // burst 10, one token every 6s
	allowed := 0
	var last ratelimit.Decision
	for i := range 30 {
		d := ls[i%3].Allow("k1", lim)
		if d.Allowed {
			allowed++
		} else {
			last = d
		}
	}
	if allowed != 10 {
		t.Fatalf("three nodes allowed %d of 30 calls on a burst of 10", allowed)
	}
	if last.RetryAfter <= 5*time.Second || last.RetryAfter > 6*time.Second || last.Limit != 10 {
		t.Fatalf("a refusal: %+v, want retry in about 6s", last)
	}
	// Another key has its own budget.
	if d := ls[0].Allow("k2", lim); !d.Allowed || d.Remaining != 9 {
		t.Fatalf("a fresh key: %+v", d)
	}
}

// TestSharedLimitIsExactUnderConcurrency: 3 nodes × 16 goroutines race for
// a burst of 100; exactly 100 pass.
func TestSharedLimitIsExactUnderConcurrency(t *testing.T) {
	addr, prefix := testenv.RedisAddr(t)
	lim := ratelimit.Limit{Count: 100, Period: time.Hour}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		l := redis.NewLimiter(node(t, addr, prefix), "key", str, redis.FailLocal)
		t.Cleanup(l.Close)
		for range 16 {
			wg.Go(func() {
				for range 20 {
					if l.Allow("hot", lim).Allowed {
						allowed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	if allowed.Load() != 100 {
		t.Fatalf("%d of 960 racing calls allowed on a burst of 100", allowed.Load())
	}
}

// TestHotKeyIsLeased hammers one key allowed 50 000/s from three nodes for
// half a second: the nodes together never pass more than the limit × 1.02
// + burst, and Redis sees about one call per node per lease window rather
// than one per request. It prints the figures.
func TestHotKeyIsLeased(t *testing.T) {
	addr, prefix := testenv.RedisAddr(t)
	lim := ratelimit.Limit{Count: 50000, Period: time.Second, Burst: 5000}
	var clients []*redis.Client
	var allowed, total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(500 * time.Millisecond)
	for range 3 {
		c := node(t, addr, prefix)
		clients = append(clients, c)
		l := redis.NewLimiter(c, "key", str, redis.FailLocal)
		t.Cleanup(l.Close)
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					total.Add(1)
					if l.Allow("hot", lim).Allowed {
						allowed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	var calls int64
	for _, c := range clients {
		calls += c.Calls()
	}
	bound := float64(lim.Count)*elapsed.Seconds()*1.02 + float64(lim.Burst)
	fmt.Printf("hot key, 3 nodes, %v: %d requests, %d allowed (bound %.0f), %d Redis calls (%.4f per request, %.0f/s per node)\n",
		elapsed.Round(time.Millisecond), total.Load(), allowed.Load(), bound, calls,
		float64(calls)/float64(total.Load()), float64(calls)/3/elapsed.Seconds())
	if float64(allowed.Load()) > bound {
		t.Fatalf("%d allowed in %v, over the bound %.0f", allowed.Load(), elapsed, bound)
	}
	// Leases of 10ms (500 tokens) and refusals remembered until they end:
	// at most a few hundred calls per node per second.
	if perNode := float64(calls) / 3 / elapsed.Seconds(); perNode > 1000 {
		t.Fatalf("%.0f Redis calls per node per second for one hot key, want a bounded few hundred", perNode)
	}
}

// TestRedisOutOfReach cuts Redis away from a node: a FailLocal limit keeps
// deciding on the node alone (never unlimited), a FailClosed one refuses
// with Unavailable, and both share again once Redis is back.
func TestRedisOutOfReach(t *testing.T) {
	addr, prefix := testenv.RedisAddr(t)
	proxy := testenv.NewProxy(t, addr)
	c := node(t, proxy.Addr(), prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	local := redis.NewLimiter(c, "key", str, redis.FailLocal)
	closed := redis.NewLimiter(c, "abuse", str, redis.FailClosed)
	t.Cleanup(local.Close)
	t.Cleanup(closed.Close)
	lim := ratelimit.Limit{Count: 5, Period: time.Hour}
	if d := closed.Allow("a", lim); !d.Allowed {
		t.Fatalf("with Redis up: %+v", d)
	}
	proxy.Cut()
	allowed := 0
	for range 20 {
		if local.Allow("k", lim).Allowed {
			allowed++
		}
	}
	if allowed != 5 || !c.Down() {
		t.Fatalf("with Redis cut, a local-fallback limit of 5 allowed %d of 20 (down=%v)", allowed, c.Down())
	}
	if d := closed.Allow("a", lim); d.Allowed || !d.Unavailable {
		t.Fatalf("with Redis cut, a fail-closed limit: %+v, want Unavailable", d)
	}
	proxy.Restore()
	deadline := time.Now().Add(5 * time.Second)
	for c.Down() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if c.Down() {
		t.Fatal("Redis back, but the client still thinks it down after 5s")
	}
	if d := closed.Allow("a", lim); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("with Redis back, the shared budget resumes: %+v, want 3 left", d)
	}
}

func TestOpenRefusesAnUnreachableRedis(t *testing.T) {
	if _, err := redis.Open(context.Background(), redis.Config{Addr: "127.0.0.1:1", Logger: quiet()}); err == nil {
		t.Fatal("Open succeeded without a Redis")
	}
}

// TestSharedQuota: three nodes race for a quota of 10 (seeded with 2 the
// store already counted): exactly 8 pass, never more; with Redis cut, a
// fail-closed counter refuses with ErrUnavailable and a local one lets
// this node take its share of what was left.
func TestSharedQuota(t *testing.T) {
	addr, prefix := testenv.RedisAddr(t)
	proxy := testenv.NewProxy(t, addr)
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	var ok atomic.Int64
	var wg sync.WaitGroup
	var local *redis.Quotas
	var cut *redis.Client
	for i := range 3 {
		a := addr
		if i == 0 {
			a = proxy.Addr()
		}
		c := node(t, a, prefix)
		q := redis.NewQuotas(c, redis.FailLocal)
		if i == 0 {
			local, cut = q, c
		}
		for range 8 {
			wg.Go(func() {
				for range 5 {
					taken, err := q.Take(context.Background(), "key1", start, 25*time.Hour, 10, 2)
					if err != nil {
						t.Error(err)
					}
					if taken {
						ok.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	if ok.Load() != 8 {
		t.Fatalf("a quota of 10 with 2 used: %d of 120 racing takes passed, want 8", ok.Load())
	}
	proxy.Cut()
	closed := redis.NewQuotas(cut, redis.FailClosed)
	if _, err := closed.Take(context.Background(), "key2", start, time.Hour, 100, 0); err == nil {
		t.Fatal("a fail-closed quota with Redis cut answered")
	}
	// key3 is seen at 40 of 100 before the next cut; this node then takes
	// its share (÷ the live nodes of its last heartbeat) of the 60 left.
	proxy.Restore()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cut.Run(ctx) // the heartbeat brings the client back
	deadline := time.Now().Add(5 * time.Second)
	for cut.Down() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if taken, err := local.Take(context.Background(), "key3", start, time.Hour, 100, 39); !taken || err != nil || cut.Down() {
		t.Fatalf("with Redis back: %v %v (down=%v)", taken, err, cut.Down())
	}
	proxy.Cut()
	want := 60 / int(cut.Nodes())
	n := 0
	for range 100 {
		if taken, _ := local.Take(context.Background(), "key3", start, time.Hour, 100, 0); taken {
			n++
		}
	}
	if n != want || !cut.Down() {
		t.Fatalf("with Redis cut, one node of %d took %d of the 60 left, want %d (down=%v)", cut.Nodes(), n, want, cut.Down())
	}
}
