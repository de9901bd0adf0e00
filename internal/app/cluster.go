package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/store/redis"
	"github.com/keywayhq/keyway/internal/tracing"
	"go.opentelemetry.io/otel/trace"
)

// openRedis connects to the Redis of cfg, or returns nil when none is set.
func openRedis(ctx context.Context, cfg *config.Config, getenv func(string) string, logger *slog.Logger, tp trace.TracerProvider) (*redis.Client, error) {
	rc := cfg.Redis
	if rc.Addr == "" {
		return nil, nil
	}
	password := getenv("KEYWAY_REDIS_PASSWORD")
	if password == "" && rc.PasswordFile != "" {
		b, err := os.ReadFile(filepath.Clean(rc.PasswordFile))
		if err != nil {
			return nil, fmt.Errorf("redis.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	var tc *tls.Config
	if rc.TLS {
		host, _, _ := net.SplitHostPort(rc.Addr)
		tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if rc.CAFile != "" {
			pool, err := loadPool(rc.CAFile)
			if err != nil {
				return nil, fmt.Errorf("redis.ca_file: %w", err)
			}
			tc.RootCAs = pool
		}
	}
	rcfg := redis.Config{Addr: rc.Addr, Username: rc.Username, Password: password, TLS: tc, Prefix: rc.Prefix, Logger: logger}
	if tp != nil {
		rcfg.Hook = tracing.RedisHook(tp)
	}
	c, err := redis.Open(ctx, rcfg)
	if err != nil {
		// go-redis's errors name the address, never the password.
		return nil, errors.New("keyway: " + err.Error() + " (redis.addr / KEYWAY_REDIS_ADDR)")
	}
	return c, nil
}

// failurePolicy maps redis.on_failure.
func failurePolicy(s string) redis.Policy {
	if s == "closed" {
		return redis.FailClosed
	}
	return redis.FailLocal
}

// sharedLimiters gives the decision core limiters shared through Redis.
type sharedLimiters struct{ redis.Limiters }

func (s sharedLimiters) ByKey(name string) decision.CloseLimiter[string] {
	return s.Limiters.ByKey(name)
}

func (s sharedLimiters) ByAddr(name string) decision.CloseLimiter[netip.Addr] {
	return s.Limiters.ByAddr(name)
}
