package redis

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	goredis "github.com/redis/go-redis/v9"
)

// ErrUnavailable is a shared count that fails closed while Redis is out
// of reach.
var ErrUnavailable = errors.New("redis: out of reach; the shared count fails closed")

// Quotas shares API-key quota counts between nodes: one counter per key
// and period, taken from by one atomic script per request (a quota is a
// promise of so many requests, so it is never leased: a lapsed lease would
// spend what a customer paid for). Counters never pass their limit.
type Quotas struct {
	c      *Client
	policy Policy

	mu    sync.Mutex
	seen  map[string]int64 // the count Redis gave last, per counter
	local map[string]int64 // taken on this node alone since Redis went away
}

var _ apikey.QuotaCounter = (*Quotas)(nil)

// NewQuotas returns shared quota counters with a failure policy: FailLocal
// lets each node take its share (limit ÷ live nodes) of what was left when
// Redis was last seen; FailClosed refuses (503).
func NewQuotas(c *Client, policy Policy) *Quotas {
	return &Quotas{c: c, policy: policy, seen: map[string]int64{}, local: map[string]int64{}}
}

// Take implements apikey.QuotaCounter.
func (q *Quotas) Take(ctx context.Context, keyID string, start time.Time, ttl time.Duration, limit, seed int64) (bool, error) {
	k := q.c.prefix + "quota:" + keyID + ":" + strconv.FormatInt(start.Unix(), 10)
	if !q.c.Down() {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		res, err := quotaScript.Run(cctx, q.c.rdb, []string{k}, limit, seed, ttl.Milliseconds()).Int64Slice()
		cancel()
		if err == nil && len(res) == 2 {
			q.c.ok()
			q.mu.Lock()
			if len(q.seen) >= maxEntries {
				clear(q.seen)
				clear(q.local)
			}
			q.seen[k] = res[1]
			delete(q.local, k)
			q.mu.Unlock()
			return res[0] == 1, nil
		}
		if err == nil {
			err = errBadReply
		}
		q.c.failed(err)
	}
	if q.policy == FailClosed {
		return false, ErrUnavailable
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	known := max(q.seen[k], seed)
	share := (limit - known) / q.c.Nodes()
	if q.local[k] >= share {
		return false, nil
	}
	q.local[k]++
	return true, nil
}

// quotaScript: KEYS[1] the counter; ARGV limit, seed (for a counter that
// does not exist), ttl in ms (0: none). It answers {taken, count}.
var quotaScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
  v = ARGV[2]
end
v = tonumber(v)
if v >= tonumber(ARGV[1]) then return {0, v} end
return {1, redis.call('INCR', KEYS[1])}
`)
