package ratelimit

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeClock is an injected clock that moves only when told to.
type fakeClock struct{ ns atomic.Int64 }

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return epoch.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newTestMemory returns a Memory on a fake clock, without a sweeper unless
// cfg.IdleAfter is set, closed when the test ends.
func newTestMemory[K comparable](t testing.TB, cfg MemoryConfig) (*Memory[K], *fakeClock) {
	t.Helper()
	clk := &fakeClock{}
	cfg.Now = clk.Now
	if cfg.IdleAfter == 0 {
		cfg.IdleAfter = -1
	}
	m := NewMemory[K](cfg)
	t.Cleanup(m.Close)
	return m, clk
}

func mustParse(t testing.TB, s string) Limit {
	t.Helper()
	l, err := ParseLimit(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// interval is Period/Count rounded up, as the limiter uses it.
func interval(l Limit) time.Duration {
	t, _, _ := l.params()
	return time.Duration(t)
}

func TestAllowBurst(t *testing.T) {
	for _, s := range []string{"10/s", "10/s burst=3", "1/min", "1/min burst=5", "7/s burst=20", "100/5m burst=1", "3/1.5s", "1000/1ms"} {
		t.Run(s, func(t *testing.T) {
			m, clk := newTestMemory[string](t, MemoryConfig{})
			l := mustParse(t, s)
			b, T := l.EffectiveBurst(), interval(l)
			for i := range b {
				d := m.Allow("k", l)
				want := Decision{Allowed: true, Limit: b, Remaining: b - 1 - i, ResetAfter: time.Duration(i+1) * T}
				if d != want {
					t.Fatalf("request %d: got %+v, want %+v", i+1, d, want)
				}
			}
			d := m.Allow("k", l)
			want := Decision{Limit: b, RetryAfter: T, ResetAfter: time.Duration(b) * T}
			if d != want {
				t.Fatalf("request past burst: got %+v, want %+v", d, want)
			}
			// Denied requests are not counted: waiting RetryAfter is enough.
			clk.Advance(T - 1)
			if d := m.Allow("k", l); d.Allowed || d.RetryAfter != 1 {
				t.Fatalf("1ns early: got %+v, want denied with RetryAfter 1ns", d)
			}
			clk.Advance(1)
			d = m.Allow("k", l)
			want = Decision{Allowed: true, Limit: b, Remaining: 0, ResetAfter: time.Duration(b) * T}
			if d != want {
				t.Fatalf("after RetryAfter: got %+v, want %+v", d, want)
			}
		})
	}
}

func TestAllowDecisions(t *testing.T) {
	// 10/s burst=5: T = 100ms, tau = 400ms.
	l := Limit{Count: 10, Period: time.Second, Burst: 5}
	ms := time.Millisecond
	steps := []struct {
		advance time.Duration
		want    Decision
	}{
		{0, Decision{Allowed: true, Limit: 5, Remaining: 4, ResetAfter: 100 * ms}},
		{0, Decision{Allowed: true, Limit: 5, Remaining: 3, ResetAfter: 200 * ms}},
		{50 * ms, Decision{Allowed: true, Limit: 5, Remaining: 2, ResetAfter: 250 * ms}},
		{0, Decision{Allowed: true, Limit: 5, Remaining: 1, ResetAfter: 350 * ms}},
		{0, Decision{Allowed: true, Limit: 5, Remaining: 0, ResetAfter: 450 * ms}},
		// The burst is spent and half an interval has passed: denied.
		{0, Decision{Limit: 5, RetryAfter: 50 * ms, ResetAfter: 450 * ms}},
		{20 * ms, Decision{Limit: 5, RetryAfter: 30 * ms, ResetAfter: 430 * ms}},
		{30 * ms, Decision{Allowed: true, Limit: 5, Remaining: 0, ResetAfter: 500 * ms}},
		{250 * ms, Decision{Allowed: true, Limit: 5, Remaining: 1, ResetAfter: 350 * ms}},
		{0, Decision{Allowed: true, Limit: 5, Remaining: 0, ResetAfter: 450 * ms}},
		// Long idle: the bucket is full again, however long past.
		{time.Hour, Decision{Allowed: true, Limit: 5, Remaining: 4, ResetAfter: 100 * ms}},
	}
	m, clk := newTestMemory[string](t, MemoryConfig{})
	for i, st := range steps {
		clk.Advance(st.advance)
		if got := m.Allow("k", l); got != st.want {
			t.Fatalf("step %d (+%v): got %+v, want %+v", i, st.advance, got, st.want)
		}
	}
}

func TestAllowSteadyRate(t *testing.T) {
	tests := []struct {
		limit     string
		every     time.Duration
		wantAllow func(i int) bool
	}{
		{"10/s burst=1", 100 * time.Millisecond, func(int) bool { return true }},
		{"10/s burst=1", 50 * time.Millisecond, func(i int) bool { return i%2 == 0 }},
		{"10/s burst=1", 99 * time.Millisecond, func(i int) bool { return i%2 == 0 }},
		// Each request comes 1ms early, so the debt grows by 1ms a request
		// until it passes tau (100ms) and one request is denied.
		{"10/s burst=2", 99 * time.Millisecond, func(i int) bool { return i <= 1 || i%100 != 1 }},
		// T is rounded up to 333333334ns, so 1ns early is too early.
		{"3/s burst=1", 333333333 * time.Nanosecond, func(i int) bool { return i%2 == 0 }},
		{"3/s burst=1", 333333334 * time.Nanosecond, func(int) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s every %v", tt.limit, tt.every), func(t *testing.T) {
			m, clk := newTestMemory[string](t, MemoryConfig{})
			l := mustParse(t, tt.limit)
			for i := range 1000 {
				if got, want := m.Allow("k", l).Allowed, tt.wantAllow(i); got != want {
					t.Fatalf("request %d: allowed %v, want %v", i, got, want)
				}
				clk.Advance(tt.every)
			}
		})
	}
	t.Run("one interval of a full burst", func(t *testing.T) {
		// Once the burst is spent, a full rate of requests is served with
		// Remaining 0, one per interval.
		m, clk := newTestMemory[string](t, MemoryConfig{})
		l := mustParse(t, "10/s burst=5")
		for range 5 {
			m.Allow("k", l)
		}
		for i := range 100 {
			clk.Advance(100 * time.Millisecond)
			d := m.Allow("k", l)
			if !d.Allowed || d.Remaining != 0 {
				t.Fatalf("request %d: %+v, want allowed with Remaining 0", i, d)
			}
			if d := m.Allow("k", l); d.Allowed {
				t.Fatalf("extra request %d allowed", i)
			}
		}
	})
}

// TestRemainingIsExact checks, after random histories, that Remaining is the
// number of further requests allowed at the same instant, and RetryAfter and
// ResetAfter are exact.
func TestRemainingIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	limits := []Limit{
		mustParse(t, "10/s burst=5"), mustParse(t, "7/s"), mustParse(t, "3/1.5s burst=10"),
		mustParse(t, "100/min burst=1"), mustParse(t, "1000/hour burst=37"),
	}
	m, clk := newTestMemory[int](t, MemoryConfig{})
	for key := range 500 {
		l := limits[key%len(limits)]
		T := interval(l)
		for range rng.IntN(50) {
			clk.Advance(time.Duration(rng.Int64N(int64(3 * T))))
			m.Allow(key, l)
		}
		clk.Advance(time.Duration(rng.Int64N(int64(2 * T))))
		d := m.Allow(key, l)
		if d.Remaining < 0 || d.RetryAfter < 0 || d.ResetAfter < 0 {
			t.Fatalf("key %d: negative field in %+v", key, d)
		}
		if !d.Allowed {
			if d.Remaining != 0 {
				t.Fatalf("key %d: denied with Remaining %d", key, d.Remaining)
			}
			clk.Advance(d.RetryAfter - 1)
			if m.Allow(key, l).Allowed {
				t.Fatalf("key %d: allowed before RetryAfter %v", key, d.RetryAfter)
			}
			clk.Advance(1)
			if d = m.Allow(key, l); !d.Allowed {
				t.Fatalf("key %d: denied after RetryAfter", key)
			}
		}
		for i := range d.Remaining {
			if !m.Allow(key, l).Allowed {
				t.Fatalf("key %d (%v): Remaining was %d but request %d denied", key, l, d.Remaining, i+1)
			}
		}
		if m.Allow(key, l).Allowed {
			t.Fatalf("key %d (%v): Remaining was %d but one more was allowed", key, l, d.Remaining)
		}
		// ResetAfter: the bucket is full then, not 1ns before.
		last := m.Allow(key, l)
		clk.Advance(last.ResetAfter - 1)
		if got := m.Allow(key, l); got.Allowed && got.Remaining == l.EffectiveBurst()-1 {
			t.Fatalf("key %d: bucket full before ResetAfter %v", key, last.ResetAfter)
		}
		clk.Advance(last.ResetAfter + 1)
		if got := m.Allow(key, l); !got.Allowed || got.Remaining != l.EffectiveBurst()-1 {
			t.Fatalf("key %d: bucket not full after ResetAfter: %+v", key, got)
		}
	}
}

func TestAccuracy(t *testing.T) {
	tests := []struct {
		limit    string
		window   time.Duration
		step     time.Duration
		attempts int // per step
	}{
		{"100/s", time.Minute, time.Millisecond, 3},
		{"7/s burst=1", time.Minute, time.Millisecond, 2},
		{"1000/min burst=50", 10 * time.Minute, 10 * time.Millisecond, 3},
		{"3/1.5s burst=2", time.Minute, time.Millisecond, 2},
		{"50000/s burst=10", time.Second, 7 * time.Microsecond, 2},
		{"20000/day", 3 * 24 * time.Hour, time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.limit, func(t *testing.T) {
			m, clk := newTestMemory[string](t, MemoryConfig{})
			l := mustParse(t, tt.limit)
			var accepted int64
			for elapsed := time.Duration(0); elapsed < tt.window; elapsed += tt.step {
				for range tt.attempts {
					if m.Allow("k", l).Allowed {
						accepted++
					}
				}
				clk.Advance(tt.step)
			}
			want := float64(l.Count)*float64(tt.window)/float64(l.Period) + float64(l.EffectiveBurst())
			if dev := (float64(accepted) - want) / want; dev > 0.02 || dev < -0.02 {
				t.Fatalf("accepted %d over %v, want %.0f ±2%% (off by %.2f%%)", accepted, tt.window, want, 100*dev)
			}
			if float64(accepted) > want {
				t.Fatalf("accepted %d, more than the limit allows (%.0f)", accepted, want)
			}
		})
	}
}

func TestConcurrentSameKey(t *testing.T) {
	for _, goroutines := range []int{8, 16, 32} {
		for _, burst := range []int64{1, 10, 1000} {
			t.Run(fmt.Sprintf("%d goroutines burst %d", goroutines, burst), func(t *testing.T) {
				m, _ := newTestMemory[string](t, MemoryConfig{})
				l := Limit{Count: 1, Period: time.Minute, Burst: burst}
				attempts := int(2*burst)/goroutines + 50
				var allowed atomic.Int64
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range goroutines {
					wg.Go(func() {
						<-start
						for range attempts {
							if m.Allow("hot", l).Allowed {
								allowed.Add(1)
							}
						}
					})
				}
				close(start)
				wg.Wait()
				if got := allowed.Load(); got != burst {
					t.Fatalf("allowed %d of %d concurrent requests, want exactly %d", got, goroutines*attempts, burst)
				}
			})
		}
	}
}

func TestConcurrentManyKeys(t *testing.T) {
	// Goroutines share keys; every key gets exactly its burst.
	m, _ := newTestMemory[int](t, MemoryConfig{})
	l := Limit{Count: 1, Period: time.Hour, Burst: 20}
	const keys, goroutines = 200, 16
	counts := make([]atomic.Int64, keys)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range keys * 5 {
				k := (i + g*7) % keys
				if m.Allow(k, l).Allowed {
					counts[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range counts {
		if got := counts[k].Load(); got != 20 {
			t.Errorf("key %d: allowed %d, want 20", k, got)
		}
	}
}

func TestConcurrentFloodKeepsThrottledKey(t *testing.T) {
	// While goroutines flood a small limiter with fresh keys, forcing
	// eviction, a hot key that owes more than any flood key is never
	// forgotten: it still gets exactly its burst.
	m, _ := newTestMemory[string](t, MemoryConfig{MaxKeys: 256})
	hot := Limit{Count: 10, Period: time.Minute, Burst: 100}
	flood := Limit{Count: 1, Period: time.Second}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				m.Allow("flood-"+strconv.Itoa(g)+"-"+strconv.Itoa(i), flood)
			}
		})
		wg.Go(func() {
			for range 100 {
				if m.Allow("hot", hot).Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 100 {
		t.Fatalf("hot key allowed %d times under a flood, want exactly 100", got)
	}
	if n := m.Len(); n > 256 {
		t.Fatalf("Len() = %d > MaxKeys 256", n)
	}
}

type routeAddr struct {
	route string
	ip    netip.Addr
}

func TestKeysIndependent(t *testing.T) {
	l := Limit{Count: 2, Period: time.Minute}
	t.Run("string", func(t *testing.T) {
		m, _ := newTestMemory[string](t, MemoryConfig{})
		m.Allow("a", l)
		m.Allow("a", l)
		if m.Allow("a", l).Allowed {
			t.Fatal("a: third request allowed")
		}
		if d := m.Allow("b", l); !d.Allowed || d.Remaining != 1 {
			t.Fatalf("b after a is exhausted: %+v", d)
		}
	})
	t.Run("netip.Addr", func(t *testing.T) {
		m, _ := newTestMemory[netip.Addr](t, MemoryConfig{})
		a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.1")
		m.Allow(a, l)
		m.Allow(a, l)
		if m.Allow(netip.MustParseAddr("192.0.2.1"), l).Allowed {
			t.Fatal("equal address: third request allowed")
		}
		// Keys are compared with ==: callers must Unmap addresses.
		if !m.Allow(b, l).Allowed {
			t.Fatal("4-in-6 address shares the IPv4 address's bucket")
		}
	})
	t.Run("struct", func(t *testing.T) {
		m, _ := newTestMemory[routeAddr](t, MemoryConfig{})
		ip := netip.MustParseAddr("2001:db8::1")
		m.Allow(routeAddr{"login", ip}, l)
		m.Allow(routeAddr{"login", ip}, l)
		if m.Allow(routeAddr{"log" + "in", ip}, l).Allowed {
			t.Fatal("login: third request allowed")
		}
		if !m.Allow(routeAddr{"api", ip}, l).Allowed {
			t.Fatal("another route shares the bucket")
		}
		if !m.Allow(routeAddr{"login", netip.MustParseAddr("2001:db8::2")}, l).Allowed {
			t.Fatal("another address shares the bucket")
		}
	})
}

func TestInvalidLimitDenies(t *testing.T) {
	m, _ := newTestMemory[string](t, MemoryConfig{})
	for _, l := range []Limit{{}, {Count: 1}, {Count: 1, Period: time.Second, Burst: -1}, {Count: 1 << 40, Period: time.Second}} {
		if d := m.Allow("k", l); d != (Decision{}) {
			t.Errorf("Allow with invalid %+v = %+v, want zero Decision", l, d)
		}
	}
	if m.Len() != 0 {
		t.Errorf("invalid limits stored %d keys", m.Len())
	}
}

func TestAllowNoAllocs(t *testing.T) {
	l := Limit{Count: 1000, Period: time.Second}
	t.Run("string", func(t *testing.T) {
		m, clk := newTestMemory[string](t, MemoryConfig{})
		key := "key-" + strconv.Itoa(42)
		m.Allow(key, l)
		if n := testing.AllocsPerRun(1000, func() { clk.Advance(time.Millisecond); m.Allow(key, l) }); n != 0 {
			t.Errorf("Allow on an existing string key: %v allocs, want 0", n)
		}
	})
	t.Run("netip.Addr", func(t *testing.T) {
		m, clk := newTestMemory[netip.Addr](t, MemoryConfig{})
		key := netip.MustParseAddr("2001:db8::1")
		m.Allow(key, l)
		if n := testing.AllocsPerRun(1000, func() { clk.Advance(time.Millisecond); m.Allow(key, l) }); n != 0 {
			t.Errorf("Allow on an existing netip.Addr key: %v allocs, want 0", n)
		}
	})
	t.Run("struct", func(t *testing.T) {
		m, clk := newTestMemory[routeAddr](t, MemoryConfig{})
		key := routeAddr{"login", netip.MustParseAddr("192.0.2.7")}
		m.Allow(key, l)
		if n := testing.AllocsPerRun(1000, func() { clk.Advance(time.Millisecond); m.Allow(key, l) }); n != 0 {
			t.Errorf("Allow on an existing struct key: %v allocs, want 0", n)
		}
	})
}

func TestShards(t *testing.T) {
	tests := []struct {
		maxKeys        int
		shards, perCap int
	}{
		{0, 64, DefaultMaxKeys / 64},
		{1, 1, 1},
		{100, 1, 100},
		{128, 2, 64},
		{1000, 8, 125},
		{4096, 64, 64},
		{100000, 64, 1562},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.maxKeys), func(t *testing.T) {
			m, _ := newTestMemory[int](t, MemoryConfig{MaxKeys: tt.maxKeys})
			if len(m.shards) != tt.shards || m.shards[0].capacity != tt.perCap {
				t.Fatalf("MaxKeys %d: %d shards of %d, want %d of %d",
					tt.maxKeys, len(m.shards), m.shards[0].capacity, tt.shards, tt.perCap)
			}
		})
	}
	t.Run("negative panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("NewMemory with negative MaxKeys did not panic")
			}
		}()
		NewMemory[int](MemoryConfig{MaxKeys: -1})
	})
}

func TestEvictionBound(t *testing.T) {
	for _, maxKeys := range []int{1, 10, 100, 1000, 5000} {
		t.Run(strconv.Itoa(maxKeys), func(t *testing.T) {
			m, clk := newTestMemory[int](t, MemoryConfig{MaxKeys: maxKeys})
			rng := rand.New(rand.NewPCG(3, 4))
			l := Limit{Count: 1, Period: time.Minute}
			for i := range 20 * maxKeys {
				if !m.Allow(i, l).Allowed {
					t.Fatalf("a fresh key was denied")
				}
				clk.Advance(time.Duration(rng.IntN(100)) * time.Millisecond)
				if i%97 == 0 {
					if n := m.Len(); n > maxKeys {
						t.Fatalf("Len() = %d > MaxKeys %d", n, maxKeys)
					}
				}
			}
			if n := m.Len(); n > maxKeys || n < 1 {
				t.Fatalf("Len() = %d, want in [1, %d]", n, maxKeys)
			}
		})
	}
}

// keysOf returns the keys m holds.
func keysOf[K comparable](m *Memory[K]) map[K]bool {
	ks := make(map[K]bool)
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k := range s.m {
			ks[k] = true
		}
		s.mu.Unlock()
	}
	return ks
}

func TestEvictionExpiredFirst(t *testing.T) {
	m, clk := newTestMemory[string](t, MemoryConfig{MaxKeys: 100}) // one shard
	owe := Limit{Count: 1, Period: time.Hour}
	m.Allow("owing", owe)
	for i := range 99 {
		m.Allow("idle-"+strconv.Itoa(i), Limit{Count: 1, Period: time.Second})
	}
	clk.Advance(2 * time.Second) // every idle-* bucket is full again
	m.Allow("new", owe)
	if got, want := keysOf(m), map[string]bool{"owing": true, "new": true}; len(got) != len(want) || !got["owing"] || !got["new"] {
		t.Fatalf("after eviction held %v, want %v", got, want)
	}
	if m.Allow("owing", owe).Allowed {
		t.Fatal("the owing key was reset by eviction")
	}
}

func TestEvictionSmallestTATFirst(t *testing.T) {
	// With every key owing time, eviction forgets the least-owing eighth.
	m, _ := newTestMemory[int](t, MemoryConfig{MaxKeys: 100}) // one shard
	l := Limit{Count: 1, Period: time.Second, Burst: 1000}
	for k := range 100 {
		for range k + 1 { // key k owes (k+1)s
			m.Allow(k, l)
		}
	}
	m.Allow(-1, l)
	got := keysOf(m)
	if len(got) != 89 {
		t.Fatalf("held %d keys after eviction, want 89 (100 - 100/8 + 1)", len(got))
	}
	for k := range 100 {
		if want := k >= 12; got[k] != want {
			t.Errorf("key %d (owing %ds) held = %v, want %v", k, k+1, got[k], want)
		}
	}
	// An evicted key starts afresh; a kept key keeps its debt.
	if d := m.Allow(0, l); d.Remaining != 999 {
		t.Errorf("evicted key: Remaining %d, want 999 (fresh)", d.Remaining)
	}
	if d := m.Allow(99, l); d.Remaining != 899 {
		t.Errorf("kept key: Remaining %d, want 899", d.Remaining)
	}
}

func TestEvictionTies(t *testing.T) {
	// A frozen clock gives every key the same TAT; eviction still frees
	// exactly an eighth.
	m, _ := newTestMemory[int](t, MemoryConfig{MaxKeys: 64})
	l := Limit{Count: 1, Period: time.Minute}
	for k := range 64 {
		m.Allow(k, l)
	}
	m.Allow(64, l)
	if n := m.Len(); n != 57 {
		t.Fatalf("Len() = %d, want 57", n)
	}
}

func TestSweep(t *testing.T) {
	m, clk := newTestMemory[string](t, MemoryConfig{IdleAfter: 10 * time.Minute})
	fast := Limit{Count: 10, Period: time.Second}
	daily := Limit{Count: 1, Period: 24 * time.Hour}
	m.Allow("fast", fast)   // full again at +100ms
	m.Allow("daily", daily) // full again at +24h
	clk.Advance(9 * time.Minute)
	m.Allow("later", fast) // full again at +9m100ms

	steps := []struct {
		at   time.Duration // since the start
		want []string
	}{
		{10 * time.Minute, []string{"daily", "fast", "later"}},
		{10*time.Minute + 100*time.Millisecond, []string{"daily", "later"}},
		{12 * time.Hour, []string{"daily"}},
		{24*time.Hour + 10*time.Minute - 1, []string{"daily"}},
		{24*time.Hour + 10*time.Minute, nil},
	}
	for _, st := range steps {
		clk.Advance(st.at - time.Duration(clk.ns.Load()))
		m.sweep()
		got := slices.Sorted(maps.Keys(keysOf(m)))
		if !slices.Equal(got, st.want) {
			t.Fatalf("at +%v: held %v, want %v", st.at, got, st.want)
		}
		if st.at == 12*time.Hour && m.Allow("daily", daily).Allowed {
			t.Fatal("the sweeper reset a key that still owes time")
		}
	}
}

func TestSweepShrinks(t *testing.T) {
	m, clk := newTestMemory[int](t, MemoryConfig{MaxKeys: 100000, IdleAfter: time.Minute})
	l := Limit{Count: 1, Period: time.Second}
	for k := range 100000 {
		m.Allow(k, l)
	}
	peak := 0
	for i := range m.shards {
		peak = max(peak, m.shards[i].peak)
	}
	if peak < shrinkMinPeak {
		t.Fatalf("largest shard peak %d, want ≥ %d for this test", peak, shrinkMinPeak)
	}
	clk.Advance(2 * time.Minute)
	m.Allow(-1, l)
	m.sweep()
	for i := range m.shards {
		if p := m.shards[i].peak; p > 1 {
			t.Fatalf("shard %d: peak %d after sweeping, want the map rebuilt", i, p)
		}
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("Len() = %d after sweep, want 1", n)
	}
	if m.Allow(-1, l).Allowed {
		t.Fatal("rebuilding the map lost a key's state")
	}
}

func TestSweeperRuns(t *testing.T) {
	// synctest gives the sweeper a fake clock and ticker, and fails the test
	// if any goroutine is left behind (as it would be without Close).
	synctest.Test(t, func(t *testing.T) {
		m := NewMemory[string](MemoryConfig{IdleAfter: time.Minute}) // sweeps every 30s
		defer m.Close()
		m.Allow("a", Limit{Count: 1, Period: time.Second})
		time.Sleep(80 * time.Second) // sweeps at 30s (not yet idle for 1m) and 60s (idle for 59s)
		synctest.Wait()
		if n := m.Len(); n != 1 {
			t.Fatalf("Len() = %d at 80s, want 1", n)
		}
		time.Sleep(20 * time.Second) // sweep at 90s: idle for 89s
		synctest.Wait()
		if n := m.Len(); n != 0 {
			t.Fatalf("Len() = %d at 100s, want 0", n)
		}
	})
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemory[string](MemoryConfig{})
		m.Close()
		m.Close() // idempotent
		if !m.Allow("a", Limit{Count: 1, Period: time.Second}).Allowed {
			t.Fatal("Allow after Close denied")
		}
		// No sweeper, nothing to close.
		NewMemory[string](MemoryConfig{IdleAfter: -1}).Close()
	})
}

func TestNthSmallest(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 3, 10, 100, 1000} {
		for _, spread := range []int64{1, 3, 1 << 40} {
			for range 20 {
				a := make([]int64, n)
				for i := range a {
					a[i] = rng.Int64N(spread)
				}
				sorted := slices.Sorted(slices.Values(a))
				k := rng.IntN(n)
				b := slices.Clone(a)
				if got := nthSmallest(b, k); got != sorted[k] {
					t.Fatalf("nthSmallest(%v, %d) = %d, want %d", a, k, got, sorted[k])
				}
				if b[k] != sorted[k] {
					t.Fatalf("a[%d] = %d after nthSmallest, want %d", k, b[k], sorted[k])
				}
			}
		}
	}
	// Sorted and reversed inputs, the classic quickselect traps.
	for _, n := range []int{1000, 4096} {
		a := make([]int64, n)
		for i := range a {
			a[i] = int64(i)
		}
		if got := nthSmallest(slices.Clone(a), n/3); got != int64(n/3) {
			t.Fatalf("sorted: got %d", got)
		}
		slices.Reverse(a)
		if got := nthSmallest(a, n/3); got != int64(n/3) {
			t.Fatalf("reversed: got %d", got)
		}
	}
}

func TestAllowN(t *testing.T) {
	// 10/s burst=5: T = 100ms.
	l := Limit{Count: 10, Period: time.Second, Burst: 5}
	m, clk := newTestMemory[string](t, MemoryConfig{})
	if d := m.AllowN("k", l, 3); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("3 of 5: %+v", d)
	}
	// All or nothing: 3 more do not fit, and nothing is taken.
	if d := m.AllowN("k", l, 3); d.Allowed || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("3 more: %+v, want denied, retry after one interval", d)
	}
	if d := m.AllowN("k", l, 2); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("the last 2: %+v", d)
	}
	clk.Advance(300 * time.Millisecond)
	if d := m.AllowN("k", l, 3); !d.Allowed {
		t.Fatalf("3 after 300ms: %+v", d)
	}
	// More than the burst never fits, and n < 1 counts as one.
	if d := m.AllowN("other", l, 6); d.Allowed {
		t.Fatalf("6 of a burst of 5: %+v", d)
	}
	if d := m.AllowN("other", l, 0); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("n=0: %+v", d)
	}
}
