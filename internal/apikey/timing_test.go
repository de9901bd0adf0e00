package apikey_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
)

// TestNoTimingOracleForKeyIDs: a key whose ID exists but whose secret is
// wrong, and a key whose ID does not exist, take the same time to refuse
// (both hash the presented key and compare in constant time), so timing
// does not tell an attacker which IDs exist. Measured over thousands of
// interleaved samples, compared by their medians and quartiles; the
// bound is loose enough for a busy machine and far tighter than the
// difference a skipped hash makes (the unknown ID path once returned
// before hashing: about half the time).
func TestNoTimingOracleForKeyIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("timing samples")
	}
	db, _ := openDB(t)
	s := newService(t, db, newClock())
	raw, _ := create(t, s, apikey.CreateParams{})
	other, k := create(t, s, apikey.CreateParams{})
	mustNot(t, s.Delete(ctx, k.ID, "test")) // its ID no longer exists
	wrong := apikey.WithChecksum(raw[:8+apikey.IDLen] + other[8+apikey.IDLen:len(other)-apikey.CheckLen])
	unknown := other
	probe := func(key string) time.Duration {
		start := time.Now()
		_, err := s.Verify(ctx, key, client("10.0.0.1"))
		d := time.Since(start)
		if err == nil {
			t.Fatal("a probe passed")
		}
		return d
	}
	for range 200 { // warm both paths and the caches
		probe(wrong)
		probe(unknown)
	}
	// Three rounds: a busy machine may spoil one, never a real difference.
	var last string
	for range 3 {
		const n = 4000
		a, b := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
		for i := range n {
			if i%2 == 0 {
				a, b = append(a, probe(wrong)), append(b, probe(unknown))
			} else {
				b, a = append(b, probe(unknown)), append(a, probe(wrong))
			}
		}
		slices.Sort(a)
		slices.Sort(b)
		q := func(x []time.Duration, p float64) time.Duration { return x[int(p*float64(len(x)-1))] }
		ma, mb := q(a, 0.5), q(b, 0.5)
		last = fmt.Sprintf("valid ID, wrong secret: p25 %v p50 %v p75 %v; unknown ID: p25 %v p50 %v p75 %v",
			q(a, 0.25), ma, q(a, 0.75), q(b, 0.25), mb, q(b, 0.75))
		t.Log(last)
		lo, hi := min(ma, mb), max(ma, mb)
		if float64(hi-lo) <= 0.25*float64(lo) {
			return
		}
	}
	t.Fatalf("the medians differ by more than 25%% in every round (%s): the time to refuse tells existing IDs apart", last)
}
