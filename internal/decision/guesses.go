package decision

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/ratelimit"
)

// GuessLimit is how many keys that are no key at all (malformed, unknown
// ID, wrong secret) one source may present: past it, every key the source
// presents is refused with 429 until the budget refills, the right one
// too, so that guessing cannot go on at the speed of the server. Keys
// that were real (revoked, expired, rotated out) do not count: a client
// left with an old key is not guessing, and must not lock out others
// behind the same address.
var GuessLimit = ratelimit.Limit{Count: 60, Period: time.Minute, Burst: 60}

// maxBlocked bounds the sources remembered as blocked; past it, expired
// ones are dropped, and if none has expired a new block is not remembered
// (the limiter still refuses that source's next failure).
const maxBlocked = 1 << 16

// guesses counts guess-like failures per source and blocks a source that
// spent its budget.
type guesses struct {
	limiter CloseLimiter[netip.Addr]
	n       atomic.Int64 // len(blocked), so the hot path skips the lock when none is
	mu      sync.RWMutex
	blocked map[netip.Addr]time.Time
	// onBlock, when set, hears of each source as it becomes blocked.
	onBlock func(netip.Addr)
}

func newGuesses(l CloseLimiter[netip.Addr], onBlock func(netip.Addr)) *guesses {
	return &guesses{limiter: l, blocked: map[netip.Addr]time.Time{}, onBlock: onBlock}
}

// wait is how long src is still blocked, 0 if it is not.
func (g *guesses) wait(src netip.Addr) time.Duration {
	if g.n.Load() == 0 {
		return 0
	}
	g.mu.RLock()
	until, ok := g.blocked[src]
	g.mu.RUnlock()
	if !ok {
		return 0
	}
	now := time.Now()
	if until.After(now) {
		return until.Sub(now)
	}
	g.mu.Lock()
	if t, ok := g.blocked[src]; ok && !t.After(now) {
		delete(g.blocked, src)
		g.n.Store(int64(len(g.blocked)))
	}
	g.mu.Unlock()
	return 0
}

// guessLike reports the failures that count: keys that never were.
func guessLike(why string) bool {
	switch why {
	case apikey.WhyMalformed, apikey.WhyUnknown, apikey.WhyWrongSecret:
		return true
	}
	return false
}

// failed spends one of src's budget and blocks src once it is spent.
func (g *guesses) failed(src netip.Addr) {
	d := g.limiter.Allow(src, GuessLimit)
	if d.Allowed {
		return
	}
	now := time.Now()
	until := now.Add(max(d.RetryAfter, time.Second))
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.blocked) >= maxBlocked {
		for a, t := range g.blocked {
			if !t.After(now) {
				delete(g.blocked, a)
			}
		}
	}
	_, was := g.blocked[src]
	if was || len(g.blocked) < maxBlocked {
		g.blocked[src] = until
	}
	g.n.Store(int64(len(g.blocked)))
	if !was && g.onBlock != nil {
		g.onBlock(src)
	}
}
