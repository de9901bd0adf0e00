package duration_test

import (
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/duration"
)

// FuzzParse: Parse never panics, reads Go's durations as Go does, and what
// Format writes reads back as the same duration.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"8d", "1d12h", "90s", "-2d", "0", "1.5h", "106751d", "9223372036854775807d", "1d-1h", "d", "3dd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := duration.Parse(s)
		if g, gerr := time.ParseDuration(s); gerr == nil && (err != nil || d != g) {
			t.Fatalf("Parse(%q) = %v, %v; Go reads %v", s, d, err, g)
		}
		if err != nil {
			return
		}
		if back, err := duration.Parse(duration.Format(d)); err != nil || back != d {
			t.Fatalf("Parse(%q) = %v, written %q, read back %v, %v", s, d, duration.Format(d), back, err)
		}
	})
}
