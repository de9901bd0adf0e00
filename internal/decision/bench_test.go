package decision

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/store/sqlite"
)

// BenchmarkDecideAPIKey is the core's hot path: a key in the cache, its
// scopes, its own rate limit and its usage, allowed. Target: under 1µs and
// no allocation.
func BenchmarkDecideAPIKey(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "k.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	keys, err := apikey.New(ctx, apikey.Config{Store: db, Changes: db, Usage: db, Pepper: make([]byte, 32),
		Logger: slog.New(slog.DiscardHandler), StaleAfter: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	raw, _, err := keys.Create(ctx, apikey.CreateParams{Name: "b", Owner: "service:bench", Scopes: []string{"a"},
		Rate: apikey.Rate{Count: 1_000_000, Period: time.Second, Burst: 1_000_000_000}}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	defer lim.Close()
	c, err := New(Config{Keys: keys, KeyLimiter: lim, Origins: []string{"https://localhost"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	rt, err := c.NewRoute(RouteConfig{Name: "r", Policy: APIKey, Scopes: []string{"a"}, Clients: true})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	f := Facts{Method: "GET", Key: raw}
	if d := c.Decide(ctx, rt, &f); !d.Allowed() {
		b.Fatalf("warm-up: %v", d.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := c.Decide(ctx, rt, &f); !d.Allowed() {
			b.Fatal(d.Reason)
		}
	}
}
