package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/store/redis"
	"github.com/keywayhq/keyway/internal/testenv"
)

// TestRedisKilledAndRestarted kills a real redis-server under a node that
// is deciding, then starts it again, empty: meanwhile the node decides on its
// own share (never unlimited), afterwards it shares again, and the fresh
// server's empty buckets cost at most one burst.
func TestRedisKilledAndRestarted(t *testing.T) {
	srv := testenv.PrivateRedis(t)
	c := node(t, srv.Addr(), "kw:")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	l := redis.NewLimiter(c, "key", str, redis.FailLocal)
	t.Cleanup(l.Close)
	lim := ratelimit.Limit{Count: 20, Period: time.Hour}
	count := func(key string, n int) int {
		ok := 0
		for range n {
			if l.Allow(key, lim).Allowed {
				ok++
			}
		}
		return ok
	}
	if got := count("a", 30); got != 20 {
		t.Fatalf("with Redis up: %d of 30 allowed, want 20", got)
	}
	srv.Kill()
	if got := count("b", 30); got != 20 || !c.Down() {
		t.Fatalf("with Redis killed: %d of 30 allowed on one node, want its whole share of 20 (down=%v)", got, c.Down())
	}
	srv.Start()
	deadline := time.Now().Add(5 * time.Second)
	for c.Down() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if c.Down() {
		t.Fatal("redis-server restarted, but the node did not notice within 5s")
	}
	if got := count("c", 30); got != 20 {
		t.Fatalf("after the restart: %d of 30 allowed, want 20", got)
	}
}
