package ratelimit

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks use the real clock (time.Now), as production does: it is
// about half the cost of an Allow.

var benchLimit = Limit{Count: 1000, Period: time.Second}

func newBenchMemory[K comparable](b *testing.B, cfg MemoryConfig) *Memory[K] {
	m := NewMemory[K](cfg)
	b.Cleanup(m.Close)
	return m
}

func BenchmarkAllowSameKey(b *testing.B) {
	m := newBenchMemory[string](b, MemoryConfig{})
	key := "kw_live_0123456789abcdef"
	b.ReportAllocs()
	for b.Loop() {
		m.Allow(key, benchLimit)
	}
}

// BenchmarkAllowManyKeys cycles through n existing keys, so the time per op
// includes the cache misses of a large working set; allocations stay at 0.
func BenchmarkAllowManyKeys(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			m := newBenchMemory[string](b, MemoryConfig{})
			keys := make([]string, n)
			for i := range keys {
				keys[i] = "kw_live_" + strconv.Itoa(i)
				m.Allow(keys[i], benchLimit)
			}
			if got := m.Len(); got != n {
				b.Fatalf("Len() = %d after inserting %d keys", got, n)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Allow(keys[i], benchLimit)
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkAllowKeyTypes shows the other key shapes the gateway uses.
func BenchmarkAllowKeyTypes(b *testing.B) {
	b.Run("netip.Addr", func(b *testing.B) {
		m := newBenchMemory[netip.Addr](b, MemoryConfig{})
		key := netip.MustParseAddr("2001:db8::1")
		b.ReportAllocs()
		for b.Loop() {
			m.Allow(key, benchLimit)
		}
	})
	b.Run("route+addr", func(b *testing.B) {
		m := newBenchMemory[routeAddr](b, MemoryConfig{})
		key := routeAddr{"/auth/login", netip.MustParseAddr("192.0.2.1")}
		b.ReportAllocs()
		for b.Loop() {
			m.Allow(key, benchLimit)
		}
	})
}

// BenchmarkAllowNewKeys inserts a fresh key every time into a full limiter
// (64 shards of 1024 keys): the flood case, with its map inserts and
// amortized evictions. With 1000/s the evicted keys are already full again
// (lossless); with 1/min every key still owes time, so eviction must select
// the least-owing eighth.
func BenchmarkAllowNewKeys(b *testing.B) {
	for _, l := range []Limit{benchLimit, {Count: 1, Period: time.Minute}} {
		b.Run(l.String(), func(b *testing.B) {
			m := newBenchMemory[int](b, MemoryConfig{MaxKeys: 1 << 16})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Allow(i, l)
				i++
			}
		})
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	b.Run("distinct keys", func(b *testing.B) {
		m := newBenchMemory[string](b, MemoryConfig{})
		const n = 1024
		keys := make([]string, n)
		for i := range keys {
			keys[i] = "kw_live_" + strconv.Itoa(i)
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(97))
			for pb.Next() {
				m.Allow(keys[i%n], benchLimit)
				i++
			}
		})
	})
	b.Run("same key", func(b *testing.B) {
		m := newBenchMemory[string](b, MemoryConfig{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Allow("hot", benchLimit)
			}
		})
	})
}
