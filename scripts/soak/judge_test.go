package main

import (
	"strings"
	"testing"
)

func series(vals ...float64) []sample {
	s := make([]sample, len(vals))
	for i, v := range vals {
		s[i] = sample{heap: v}
	}
	return s
}

func heap(s sample) float64 { return s.heap }

// A leak that goes on fails the soak; something that filled after the
// warm-up and levelled off, as on a slow machine, does not.
func TestJudgeTellsALeakFromALevel(t *testing.T) {
	var steady, levelled, flat []float64
	for i := range 30 {
		steady = append(steady, 18+0.05*float64(i))               // +0.05 MiB a sample: +7 % from the first third to the last
		levelled = append(levelled, min(17+0.2*float64(i), 18.9)) // fills for a third of the window, then stays
		flat = append(flat, 18+0.1*float64(i%3))
	}
	for _, tt := range []struct {
		name    string
		vals    []float64
		grew    bool
		verdict string
	}{
		{"steady leak", steady, true, "GREW"},
		{"levelled", levelled, false, "levelled"},
		{"flat", flat, false, "flat"},
	} {
		j := judge(series(tt.vals...), heap, 5, false, 6)
		if j.grew != tt.grew || !strings.HasPrefix(j.verdict, tt.verdict) {
			t.Errorf("%s: %+v, want grew %v, %q", tt.name, j, tt.grew, tt.verdict)
		}
	}
	// A count that grew by no more than three per worker is not a leak, whatever the percentage.
	if j := judge(series(10, 10, 10, 18, 18, 18, 25, 25, 25), heap, 5, true, 6); j.grew {
		t.Errorf("a count that grew by 15 with 6 workers: %+v", j)
	}
}
