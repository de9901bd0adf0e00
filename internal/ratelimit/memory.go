package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Defaults for MemoryConfig.
const (
	DefaultMaxKeys = 1 << 20
	// DefaultIdleAfter is a minute: forgetting a full bucket loses
	// nothing, and a longer wait only holds the buckets of keys and
	// addresses that came once (a soak with keys made and revoked all the
	// time grew by their buckets for ten minutes).
	DefaultIdleAfter = time.Minute
)

const (
	// maxShards is the shard count for large limiters: enough that 2–64
	// cores rarely meet on one mutex.
	maxShards = 64
	// minShardKeys is the smallest shard capacity worth its own shard; small
	// limiters get fewer shards so that each still holds a useful number of
	// keys and MaxKeys is not rounded away.
	minShardKeys = 64
	// evictFraction: a full shard frees 1/evictFraction of its capacity at
	// once, so the O(capacity) eviction scan is paid once per
	// capacity/evictFraction inserts, not on every insert.
	evictFraction = 8
	// shrinkMinPeak and shrinkRatio: Go maps never give memory back, so the
	// sweeper rebuilds a shard's map once it holds less than 1/shrinkRatio of
	// its peak (and the peak was large enough to matter).
	shrinkMinPeak = 1024
	shrinkRatio   = 4
	// clockLimit bounds the nanosecond clock (±73 years from NewMemory) so
	// that now + MaxSpan cannot overflow, whatever an injected Now returns.
	clockLimit = 1 << 61
	// minSweepInterval keeps a tiny IdleAfter from spinning the sweeper.
	minSweepInterval = time.Millisecond
)

// MemoryConfig configures a Memory limiter. The zero value is ready to use.
type MemoryConfig struct {
	// MaxKeys bounds the number of keys held, hence memory. Optional,
	// default DefaultMaxKeys (1<<20); NewMemory panics if it is negative.
	// Keys are spread over up to 64 shards and each shard holds at most
	// MaxKeys/shards of them, so eviction starts when a key's shard is full:
	// with many keys, within a few percent of MaxKeys.
	MaxKeys int
	// IdleAfter is how long a key's bucket must have been full (so the key
	// made no request for at least that long) before the background sweeper
	// removes it. Optional, default DefaultIdleAfter (1m). A negative value
	// disables the sweeper: keys then leave only by eviction at capacity.
	// The sweeper runs every IdleAfter/2 (at least every millisecond).
	IdleAfter time.Duration
	// Now returns the current time. Optional, default time.Now; inject a
	// fake clock in tests. Times are measured as durations since the first
	// call, made in NewMemory, so with time.Now the monotonic clock is used
	// and wall-clock steps neither reset nor freeze limits.
	Now func() time.Time
}

// Memory is an in-process GCRA (generic cell rate algorithm) limiter keyed by
// any comparable K: string key IDs, netip.Addr client addresses, or structs
// such as struct{ route string; ip netip.Addr }. It is safe for concurrent
// use. See the package documentation for its guarantees. Call Close to stop
// its sweeper.
type Memory[K comparable] struct {
	shards   []shard[K]
	mask     uint64
	seed     maphash.Seed
	now      func() time.Time
	base     time.Time
	idle     int64 // IdleAfter in ns; < 0: no sweeper
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

var _ Limiter[string] = (*Memory[string])(nil)

// shard is one lock domain. The map value is the key's theoretical arrival
// time (TAT) in nanoseconds since Memory.base. Storing it by value means an
// existing key is found and updated without allocating, and a key is either
// in the map with its exact state or absent (equivalent to a full bucket):
// there is no pointer that a concurrent eviction could orphan.
type shard[K comparable] struct {
	mu sync.Mutex
	m  map[K]int64
	// capacity is the most keys this shard holds.
	capacity int
	// peak is the largest len(m) since m was last rebuilt.
	peak int
	// scratch holds TATs during eviction; kept to avoid reallocating under a
	// flood of new keys.
	scratch []int64
	// Pad so that the hot fields (mu, m) of neighbouring shards never share
	// a cache line.
	_ [64]byte
}

// NewMemory returns a Memory limiter configured by cfg, and starts its
// sweeper unless cfg.IdleAfter is negative. It panics if cfg.MaxKeys is
// negative.
func NewMemory[K comparable](cfg MemoryConfig) *Memory[K] {
	if cfg.MaxKeys < 0 {
		panic("ratelimit: negative MemoryConfig.MaxKeys")
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.IdleAfter == 0 {
		cfg.IdleAfter = DefaultIdleAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := maxShards
	for n > 1 && cfg.MaxKeys/n < minShardKeys {
		n /= 2
	}
	m := &Memory[K]{
		shards: make([]shard[K], n),
		mask:   uint64(n - 1), //nolint:gosec // n is a power of two in [1, maxShards]
		seed:   maphash.MakeSeed(),
		now:    cfg.Now,
		base:   cfg.Now(),
		idle:   min(int64(cfg.IdleAfter), clockLimit),
	}
	for i := range m.shards {
		m.shards[i].m = make(map[K]int64)
		m.shards[i].capacity = cfg.MaxKeys / n
	}
	if cfg.IdleAfter > 0 {
		m.stop = make(chan struct{})
		m.done = make(chan struct{})
		go m.sweepLoop(max(cfg.IdleAfter/2, minSweepInterval))
	}
	return m
}

// clock returns the current time in nanoseconds since m.base, clamped to
// ±clockLimit.
func (m *Memory[K]) clock() int64 {
	return min(max(int64(m.now().Sub(m.base)), -clockLimit), clockLimit)
}

// Allow implements Limiter: it records one event for key under l and
// reports whether it is allowed. It allocates only when key is new to the
// limiter (a map insert), and may then evict other keys (see the package
// documentation).
func (m *Memory[K]) Allow(key K, l Limit) Decision {
	return m.AllowN(key, l, 1)
}

// AllowN is Allow for n events at once: all of them are allowed and
// recorded, or none is. n above the limit's burst is never allowed; n
// below 1 counts as 1.
func (m *Memory[K]) AllowN(key K, l Limit, n int64) Decision {
	t, b, ok := l.params()
	if !ok {
		return Decision{}
	}
	if n < 1 {
		n = 1
	}
	if n > b {
		return Decision{Limit: b, RetryAfter: time.Duration(t * b)}
	}
	span := t * b // tau + t: a full bucket's refill time; ≤ MaxSpan
	now := m.clock()
	s := &m.shards[maphash.Comparable(m.seed, key)&m.mask]

	s.mu.Lock()
	tat, found := s.m[key]
	tat = max(tat, now) // a TAT in the past is a full bucket
	newTAT := tat + t*n // n ≤ b, so t·n ≤ MaxSpan
	// GCRA: allow iff tat - now <= tau, i.e. newTAT - now <= tau + t.
	if newTAT-now > span {
		s.mu.Unlock()
		return Decision{
			Limit:      b,
			RetryAfter: time.Duration(newTAT - span - now),
			ResetAfter: time.Duration(tat - now),
		}
	}
	if found {
		s.m[key] = newTAT
	} else {
		s.insert(key, newTAT, now)
	}
	s.mu.Unlock()

	ahead := newTAT - now // in (0, span]
	return Decision{
		Allowed: true,
		Limit:   b,
		// k more events fit iff newTAT + (k-1)·t - now <= tau,
		// i.e. k·t <= span - ahead.
		Remaining:  (span - ahead) / t,
		ResetAfter: time.Duration(ahead),
	}
}

// insert adds key, which is not in s.m, evicting others first if s is full.
// s.mu must be held.
func (s *shard[K]) insert(key K, tat, now int64) {
	if len(s.m) >= s.capacity {
		s.evict(now)
	}
	s.m[key] = tat
	s.peak = max(s.peak, len(s.m))
}

// evict frees 1/evictFraction of s's capacity (at least one slot). It first
// drops every entry whose TAT is not in the future: such a bucket is full,
// so dropping it loses nothing. If that is not enough it drops the entries
// with the smallest TATs: the keys closest to full, which forgive the least.
// s.mu must be held.
func (s *shard[K]) evict(now int64) {
	target := s.capacity - max(s.capacity/evictFraction, 1)
	tats := s.scratch[:0]
	for k, tat := range s.m {
		if tat <= now {
			delete(s.m, k)
		} else {
			tats = append(tats, tat)
		}
	}
	s.scratch = tats
	excess := len(s.m) - target
	if excess <= 0 {
		return
	}
	cut := nthSmallest(tats, excess-1)
	// Drop every TAT below cut, then TATs equal to cut until excess are
	// gone.
	equal := excess
	for _, tat := range tats {
		if tat < cut {
			equal--
		}
	}
	for k, tat := range s.m {
		if tat < cut {
			delete(s.m, k)
		} else if tat == cut && equal > 0 {
			delete(s.m, k)
			equal--
		}
	}
}

// nthSmallest partially sorts a so that a[n] holds the value it would have
// if a were sorted, and returns it (quickselect with median-of-three
// pivots). If partitioning goes badly it falls back to sorting, so the worst
// case is O(len(a)·log len(a)).
func nthSmallest(a []int64, n int) int64 {
	lo, hi := 0, len(a)-1
	budget := 2*bits.Len(uint(len(a))) + 4
	for lo < hi {
		if budget == 0 {
			slices.Sort(a[lo : hi+1])
			return a[n]
		}
		budget--
		mid := lo + (hi-lo)/2
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		pivot := a[mid]
		i, j := lo, hi
		for i <= j {
			for a[i] < pivot {
				i++
			}
			for a[j] > pivot {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		// Now a[lo..j] <= pivot, a[i..hi] >= pivot, and any a[j+1..i-1]
		// equals pivot.
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return a[n]
		}
	}
	return a[n]
}

// Len returns the number of keys held.
func (m *Memory[K]) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Close stops the background sweeper and waits for it to exit. It is
// idempotent. The limiter stays usable after Close; only sweeping stops.
func (m *Memory[K]) Close() {
	m.stopOnce.Do(func() {
		if m.stop != nil {
			close(m.stop)
			<-m.done
		}
	})
}

func (m *Memory[K]) sweepLoop(every time.Duration) {
	defer close(m.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
			m.sweep()
		}
	}
}

// sweep removes every key whose bucket has been full for at least
// IdleAfter. Such a key carries no state, so removing it never changes a
// decision. It takes one shard lock at a time.
func (m *Memory[K]) sweep() {
	cutoff := m.clock() - m.idle
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, tat := range s.m {
			if tat <= cutoff {
				delete(s.m, k)
			}
		}
		if s.peak >= shrinkMinPeak && len(s.m) <= s.peak/shrinkRatio {
			// A fresh map, not maps.Clone, which keeps the old capacity.
			nm := make(map[K]int64, len(s.m))
			for k, tat := range s.m {
				nm[k] = tat
			}
			s.m = nm
			s.peak = len(s.m)
			s.scratch = nil
		}
		s.mu.Unlock()
	}
}
