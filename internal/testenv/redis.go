package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"
	"time"
)

// RedisAddr returns the address of the Redis named by
// KEYWAY_TEST_REDIS_ADDR and a key prefix of the test's own, so that tests
// sharing the server never see each other's keys. Without the variable, t
// skips (or fails under KEYWAY_TEST_STRICT=1).
func RedisAddr(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr = os.Getenv("KEYWAY_TEST_REDIS_ADDR")
	if addr == "" {
		Missing(t, "Redis", "set KEYWAY_TEST_REDIS_ADDR=127.0.0.1:6379")
	}
	c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		Missing(t, "Redis at KEYWAY_TEST_REDIS_ADDR", "start it (see .ci/run) or unset the variable: "+err.Error())
	}
	_ = c.Close()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return addr, "kwtest:" + hex.EncodeToString(b) + ":"
}
