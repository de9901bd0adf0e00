package redis_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/store/redis"
	"github.com/keywayhq/keyway/internal/testenv"
)

// privateRedis starts a redis-server of the test's own on a free loopback
// port, so that the test may stop and restart it without disturbing other
// tests. It returns the address and a function that (re)starts it.
func privateRedis(t *testing.T) (string, func(), func()) {
	t.Helper()
	bin := testenv.LookPath(t, "redis-server", "install Debian's redis-server")
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var cmd *exec.Cmd
	start := func() {
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr); err == nil {
				_ = c.Close()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("the private redis-server did not start")
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	start()
	t.Cleanup(stop)
	return addr, start, stop
}

// TestRedisKilledAndRestarted kills a real redis-server under a node that
// is deciding, then starts it again, empty: meanwhile the node decides on its
// own share (never unlimited), afterwards it shares again, and the fresh
// server's empty buckets cost at most one burst.
func TestRedisKilledAndRestarted(t *testing.T) {
	addr, start, stop := privateRedis(t)
	c := node(t, addr, "kw:")
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
	stop()
	if got := count("b", 30); got != 20 || !c.Down() {
		t.Fatalf("with Redis killed: %d of 30 allowed on one node, want its whole share of 20 (down=%v)", got, c.Down())
	}
	start()
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
