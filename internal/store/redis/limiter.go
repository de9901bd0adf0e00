package redis

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/keywayhq/keyway/internal/ratelimit"
	goredis "github.com/redis/go-redis/v9"
)

// Policy is what a shared limit does while Redis is out of reach.
type Policy int

const (
	// FailLocal decides on each node alone, with the limit divided by the
	// nodes that were alive at the last heartbeat: never unlimited, about
	// the configured total while every node gets its share of traffic.
	FailLocal Policy = iota
	// FailClosed refuses (503): for limits that guard against abuse, where
	// a wrong "yes" costs more than a wrong "no".
	FailClosed
)

// LeaseWindow is how much of a key's rate one node takes from Redis at a
// time: a key allowed 50 000/s is leased 500 tokens at once, so one node
// calls Redis for it at most about 100 times a second however hot it is.
// Unused leased tokens lapse (they are never handed back), which makes the
// shared limit slightly stricter, never looser.
const LeaseWindow = 10 * time.Millisecond

// maxEntries bounds the leases and refusals remembered per limiter; past
// it they are all forgotten at once (soft state: forgetting costs Redis
// calls, never correctness).
const maxEntries = 1 << 16

// Limiter is a ratelimit.Limiter shared by every node through Redis.
type Limiter[K comparable] struct {
	c        *Client
	prefix   string
	encode   func(K) string
	policy   Policy
	fallback *ratelimit.Memory[K]
	start    time.Time

	mu      sync.Mutex
	entries map[K]*entry
}

// entry is one key's local state: leased tokens, or a refusal that holds
// until RetryAfter (Redis would refuse until then too: tokens only come
// back with time).
type entry struct {
	mu          sync.Mutex
	limit       ratelimit.Limit
	tokens      int64 // leased, not yet used
	expires     int64 // when the lease lapses (ns since start)
	deniedUntil int64
	last        ratelimit.Decision
	lastAt      int64
}

var _ ratelimit.Limiter[string] = (*Limiter[string])(nil)

// NewLimiter returns a shared limiter named name (its Redis keys are
// "<prefix>rl:<name>:<encode(key)>").
func NewLimiter[K comparable](c *Client, name string, encode func(K) string, policy Policy) *Limiter[K] {
	return &Limiter[K]{
		c: c, prefix: c.prefix + "rl:" + name + ":", encode: encode, policy: policy,
		fallback: ratelimit.NewMemory[K](ratelimit.MemoryConfig{}),
		start:    time.Now(), entries: make(map[K]*entry),
	}
}

// Close stops the fallback limiter's sweeper.
func (l *Limiter[K]) Close() { l.fallback.Close() }

func (l *Limiter[K]) now() int64 { return int64(time.Since(l.start)) }

func (l *Limiter[K]) entry(key K) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[key]
	if e == nil {
		if len(l.entries) >= maxEntries {
			clear(l.entries)
		}
		e = &entry{}
		l.entries[key] = e
	}
	return e
}

// leaseSize is how many tokens to take at once for a limit: LeaseWindow's
// worth of its rate, at most a quarter of its burst, at least 1.
func leaseSize(interval, burst int64) int64 {
	return max(1, min(int64(LeaseWindow)/interval, burst/4))
}

// Allow implements ratelimit.Limiter.
func (l *Limiter[K]) Allow(key K, lim ratelimit.Limit) ratelimit.Decision {
	interval, burst, ok := lim.Params()
	if !ok {
		return ratelimit.Decision{} // fail closed, as Memory does
	}
	if l.c.Down() {
		return l.degraded(key, lim, burst)
	}
	e := l.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := l.now()
	if e.limit != lim {
		e.limit, e.tokens, e.expires, e.deniedUntil = lim, 0, 0, 0
	}
	if e.tokens > 0 && now < e.expires {
		e.tokens--
		d := e.last
		d.Remaining = min(burst, d.Remaining+e.tokens)
		d.ResetAfter = max(0, d.ResetAfter-time.Duration(now-e.lastAt))
		return d
	}
	if now < e.deniedUntil {
		// Refused until then (or waiting for a whole lease to come back).
		return ratelimit.Decision{Limit: burst, RetryAfter: time.Duration(e.deniedUntil - now),
			ResetAfter: max(0, e.last.ResetAfter-time.Duration(now-e.lastAt))}
	}
	n := leaseSize(interval, burst)
	granted, ahead, err := l.run(key, interval, burst, n)
	if err != nil {
		l.c.failed(err)
		return l.degraded(key, lim, burst)
	}
	l.c.ok()
	// The script works in microseconds (Redis's TIME); the interval was
	// rounded up to one, so the answers are never looser than Memory's.
	t := ceilMicros(interval)
	span := t * burst
	now = l.now()
	e.lastAt = now
	// A key at its limit gets a few tokens per call: rather than call
	// again for each, this node waits until a whole lease has come back
	// (one LeaseWindow at most), refusing meanwhile. That is stricter than
	// Redis by at most a lease, never looser, and bounds the calls for a
	// saturated key as for a hot one.
	short := (n - max(granted, 1)) * interval
	if granted == 0 {
		retry := time.Duration(ahead+t-span)*time.Microsecond + time.Duration(short)
		e.tokens, e.deniedUntil = 0, now+int64(retry)
		e.last = ratelimit.Decision{Limit: burst, RetryAfter: retry, ResetAfter: time.Duration(ahead) * time.Microsecond}
		return e.last
	}
	e.tokens, e.expires, e.deniedUntil = granted-1, now+2*granted*interval, now+short
	e.last = ratelimit.Decision{Allowed: true, Limit: burst, Remaining: (span - ahead) / t, ResetAfter: time.Duration(ahead) * time.Microsecond}
	d := e.last
	d.Remaining = min(burst, d.Remaining+e.tokens)
	return d
}

// AllowN takes n tokens at once, all or none, in one call to Redis (no
// lease): for costs counted in bulk, such as the keys in a leak report.
func (l *Limiter[K]) AllowN(key K, lim ratelimit.Limit, n int64) ratelimit.Decision {
	interval, burst, ok := lim.Params()
	if !ok {
		return ratelimit.Decision{}
	}
	n = max(n, 1)
	if n > burst {
		return ratelimit.Decision{Limit: burst, RetryAfter: time.Duration(interval * burst)}
	}
	if l.c.Down() {
		if l.policy == FailClosed {
			return ratelimit.Decision{Limit: burst, RetryAfter: time.Second, Unavailable: true}
		}
		return l.fallback.AllowN(key, l.share(lim, burst), n)
	}
	granted, ahead, err := l.script(key, interval, burst, n, "all")
	if err != nil {
		l.c.failed(err)
		return l.AllowN(key, lim, n)
	}
	l.c.ok()
	t := ceilMicros(interval)
	span := t * burst
	if granted == 0 {
		return ratelimit.Decision{Limit: burst, RetryAfter: time.Duration(ahead+n*t-span) * time.Microsecond,
			ResetAfter: time.Duration(ahead) * time.Microsecond}
	}
	return ratelimit.Decision{Allowed: true, Limit: burst, Remaining: (span - ahead) / t, ResetAfter: time.Duration(ahead) * time.Microsecond}
}

func ceilMicros(ns int64) int64 { return max(1, (ns+999)/1000) }

// degraded decides while Redis is out of reach, by the limiter's policy.
func (l *Limiter[K]) degraded(key K, lim ratelimit.Limit, burst int64) ratelimit.Decision {
	if l.policy == FailClosed {
		return ratelimit.Decision{Limit: burst, RetryAfter: time.Second, Unavailable: true}
	}
	return l.fallback.Allow(key, l.share(lim, burst))
}

// share is this node's part of lim while Redis is out of reach.
func (l *Limiter[K]) share(lim ratelimit.Limit, burst int64) ratelimit.Limit {
	nodes := l.c.Nodes()
	s := lim
	s.Count = max(1, lim.Count/nodes)
	s.Burst = max(1, burst/nodes)
	return s
}

// run takes up to n tokens (as many as fit) for key in one round
// trip, and returns how many it got and how far ahead of now the key's
// theoretical arrival time is, in microseconds.
func (l *Limiter[K]) run(key K, interval, burst, n int64) (granted, ahead int64, err error) {
	return l.script(key, interval, burst, n, "some")
}

func (l *Limiter[K]) script(key K, interval, burst, n int64, mode string) (granted, ahead int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	l.c.calls.Add(1)
	t := ceilMicros(interval)
	res, err := gcra.Run(ctx, l.c.rdb, []string{l.prefix + l.encode(key)}, t, t*burst, n, mode).Int64Slice()
	if err != nil {
		return 0, 0, err
	}
	if len(res) != 2 {
		return 0, 0, errBadReply
	}
	return res[0], res[1], nil
}

type replyError string

func (e replyError) Error() string { return string(e) }

const errBadReply = replyError("redis: the limiter script answered in an unknown shape")

// gcra is GCRA (see package ratelimit) on Redis's clock, in microseconds:
// ARGV = interval T, span T·burst, tokens wanted n, and "all" or "some".
// It grants n, or (with "some") as many as fit now, or none; a refusal
// changes nothing. The key expires when
// its bucket is full again, which loses nothing.
var gcra = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local avail = math.floor((span - (tat - now)) / T)
if avail < 1 or (ARGV[4] == 'all' and avail < want) then return {0, tat - now} end
if want > avail then want = avail end
tat = tat + want * T
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {want, tat - now}
`)

// Limiters makes shared limiters for routes (decision.Limiters).
type Limiters struct {
	Client *Client
	Policy Policy
}

// ByKey returns a shared limiter keyed by strings (API key IDs).
func (ls Limiters) ByKey(name string) *Limiter[string] {
	return NewLimiter(ls.Client, name, func(k string) string { return k }, ls.Policy)
}

// ByAddr returns a shared limiter keyed by client addresses.
func (ls Limiters) ByAddr(name string) *Limiter[netip.Addr] {
	return NewLimiter(ls.Client, name, netip.Addr.String, ls.Policy)
}
