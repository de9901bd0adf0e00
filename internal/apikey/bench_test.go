package apikey

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/ratelimit"
)

// nopStore satisfies the store interfaces for benchmarks that never miss the cache.
type nopStore struct{}

func (nopStore) CreateKey(context.Context, *Key, []byte, audit.Event) error { return nil }
func (nopStore) GetKey(context.Context, string) (*Key, []Secret, error)     { return nil, nil, ErrNotFound }
func (nopStore) ListKeys(context.Context, string) ([]*Key, error)           { return nil, nil }
func (nopStore) UpdateKey(context.Context, string, func(*Key) (audit.Event, error)) error {
	return nil
}
func (nopStore) RotateKey(context.Context, string, []byte, time.Time, time.Time, audit.Event) error {
	return nil
}
func (nopStore) RevokeKey(context.Context, string, time.Time, string, audit.Event) error {
	return nil
}
func (nopStore) DeleteKey(context.Context, string, audit.Event) error { return nil }
func (nopStore) ChangesSince(context.Context, int64) ([]Change, int64, error) {
	return nil, 0, nil
}
func (nopStore) LatestChange(context.Context) (int64, error) { return 0, nil }
func (nopStore) AddUsage(context.Context, []UsageDelta, map[string]time.Time) error {
	return nil
}
func (nopStore) UsageSince(context.Context, string, time.Time) ([]UsageRow, error) { return nil, nil }
func (nopStore) CountUsage(context.Context, string, Outcome, time.Time) (int64, error) {
	return 0, nil
}

// warmService returns a service whose cache holds n keys, and one of them raw.
func warmService(b *testing.B, n int) (*Service, string) {
	b.Helper()
	s, err := New(context.Background(), Config{
		Store: nopStore{}, Changes: nopStore{}, Usage: nopStore{}, Pepper: make([]byte, 32),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StaleAfter: time.Hour, CacheSize: n + 1,
	})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	var raw string
	for i := range n {
		p, err := Generate(rand.Reader, EnvLive)
		if err != nil {
			b.Fatal(err)
		}
		sum := s.storedHash(p.Raw)
		k := &Key{ID: p.ID, Owner: "service:bench", Env: EnvLive, Scopes: []string{"weather:history"},
			Rate: Rate{Count: 1_000_000, Period: time.Second, Burst: 1_000_000_000}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		s.cache[p.ID] = &entry{v: &Verified{Key: k, DisplayID: DisplayID(k.ID), ScopeList: "weather:history",
			secrets: []Secret{{Hash: sum}}, usage: &keyUsage{id: k.ID, quotaLoaded: true}}, loadedAt: now}
		if i == n/2 {
			raw = p.Raw
		}
	}
	return s, raw
}

// BenchmarkVerifyHotPath measures what one request on an api_key route costs
// keyway beyond HTTP: parse and checksum, the cache look-up, the HMAC and
// its constant-time compare, the scope check, the per-key limiter, the
// quota check and the usage counter.
func BenchmarkVerifyHotPath(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s, raw := warmService(b, n)
			lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
			defer lim.Close()
			ctx := context.Background()
			client := netip.MustParseAddr("10.0.0.1")
			scopes := []string{"weather:history"}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				v, err := s.Verify(ctx, raw, client)
				if err != nil {
					b.Fatal(err)
				}
				if !v.HasScopes(scopes) {
					b.Fatal("scope")
				}
				r := v.Key.Rate
				if d := lim.Allow(v.Key.ID, ratelimit.Limit{Count: r.Count, Period: r.Period, Burst: r.Burst}); !d.Allowed {
					b.Fatal("limited")
				}
				if ok, _ := s.ConsumeQuota(context.Background(), v); !ok {
					b.Fatal("quota")
				}
				s.Record(v, OutcomeOK)
			}
		})
	}
}
