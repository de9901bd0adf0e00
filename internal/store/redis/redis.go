// Package redis shares keyway's limits between nodes through Redis: a GCRA
// limiter run by a server-side script on Redis's own clock (one round trip
// per decision, atomic, the same algorithm and answers as
// ratelimit.Memory), local leasing of tokens so that a hot key does not
// cost one Redis call per request, and a registry of live nodes that the
// fallback policy divides limits by when Redis is out of reach.
package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Config says how to reach Redis.
type Config struct {
	// Addr is host:port.
	Addr string
	// Username and Password authenticate (Redis 6 ACL; Username empty for
	// the default user).
	Username, Password string
	// TLS, when not nil, is used for every connection.
	TLS *tls.Config
	// Prefix starts every key keyway writes. Default "keyway:".
	Prefix string
	// Logger receives state changes (Redis lost, Redis back).
	Logger *slog.Logger
	// Hook, when set, sees every command (tracing).
	Hook goredis.Hook
}

// Client is a connection pool to Redis and keyway's view of its health.
type Client struct {
	rdb    *goredis.Client
	prefix string
	logger *slog.Logger
	nodeID string

	down  atomic.Bool  // the last call failed
	nodes atomic.Int64 // live nodes at the last heartbeat (≥ 1)
	calls atomic.Int64 // limiter scripts run, for the figures
}

// quietLog takes go-redis's own log lines (a dial that failed, a pool
// event): keyway reports Redis's health itself, once per change.
type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

var setLogger sync.Once

// Open connects to Redis and checks that it answers. A Redis that does
// not answer is an error: a node should not start into a failure mode.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("redis: an address is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "keyway:"
	}
	if cfg.Logger == nil {
		return nil, errors.New("redis: a logger is required")
	}
	setLogger.Do(func() { goredis.SetLogger(quietLog{}) })
	rdb := goredis.NewClient(&goredis.Options{
		Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, TLSConfig: cfg.TLS,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		// Fail fast: a decision must not wait for Redis to come back.
		MaxRetries: 1, PoolTimeout: 500 * time.Millisecond,
		DisableIdentity: true, // no CLIENT SETINFO, which older servers and proxies refuse
	})
	if cfg.Hook != nil {
		rdb.AddHook(cfg.Hook)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, prefix: cfg.Prefix, logger: cfg.Logger, nodeID: hex.EncodeToString(id)}
	c.nodes.Store(1)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", cfg.Addr, err)
	}
	if err := c.heartbeat(ctx); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", cfg.Addr, err)
	}
	return c, nil
}

// Close closes the pool.
func (c *Client) Close() error { return c.rdb.Close() }

// Down reports whether the last call to Redis failed.
func (c *Client) Down() bool { return c.down.Load() }

// Nodes is how many nodes were alive at the last heartbeat (at least 1).
func (c *Client) Nodes() int64 { return c.nodes.Load() }

// Calls is how many limiter scripts this node has run.
func (c *Client) Calls() int64 { return c.calls.Load() }

// nodeTTL is how long a node counts as alive after its last heartbeat.
const nodeTTL = 5 * time.Second

// Run keeps this node in the registry of live nodes (a heartbeat every
// second) until ctx is done, then leaves it.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = c.rdb.ZRem(lctx, c.prefix+"nodes", c.nodeID).Err()
			cancel()
			return
		case <-t.C:
			_ = c.heartbeat(ctx) // its failure is recorded by failed
		}
	}
}

// heartbeat records this node as alive and counts the live ones, by
// Redis's clock.
func (c *Client) heartbeat(ctx context.Context) error {
	key := c.prefix + "nodes"
	res, err := heartbeatScript.Run(ctx, c.rdb, []string{key}, c.nodeID, nodeTTL.Milliseconds()).Int64()
	if err != nil {
		c.failed(err)
		return err
	}
	c.ok()
	c.nodes.Store(max(1, res))
	return nil
}

var heartbeatScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
`)

func (c *Client) failed(err error) {
	if !c.down.Swap(true) {
		c.logger.Warn("redis: out of reach; shared limits fall back to their failure policy", slog.String("error", err.Error()))
	}
}

func (c *Client) ok() {
	if c.down.Swap(false) {
		c.logger.Info("redis: reachable again; shared limits are shared again", slog.Int64("nodes", c.nodes.Load()))
	}
}
