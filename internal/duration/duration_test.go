package duration_test

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/duration"
)

func TestParse(t *testing.T) {
	const day = 24 * time.Hour
	for in, want := range map[string]time.Duration{
		"8d": 8 * day, "90d": 90 * day, "1d12h": day + 12*time.Hour, "0d": 0, "0": 0,
		"24h": day, "90s": 90 * time.Second, "1h30m": 90 * time.Minute, "-2d": -2 * day, "1d30m": day + 30*time.Minute,
	} {
		if got, err := duration.Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "8", "8 d", "1.5d", "8D", "d8", "1d-2h", "1d+2h", "1dd", "1d2", "99999999999999d", "106751d23h59m"} {
		if got, err := duration.Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
		}
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		8 * 24 * time.Hour: "8d", 36 * time.Hour: "1d12h", 90 * time.Minute: "1h30m0s", 25*time.Hour + time.Minute: "25h1m0s",
	} {
		if got := duration.Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
		if back, err := duration.Parse(duration.Format(d)); err != nil || back != d {
			t.Errorf("Parse(Format(%v)) = %v, %v", d, back, err)
		}
	}
}

func TestFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	d := duration.Flag(fs, "overlap", 24*time.Hour, "")
	if *d != 24*time.Hour {
		t.Fatal("default not set")
	}
	if err := fs.Parse([]string{"--overlap", "8d"}); err != nil || *d != 8*24*time.Hour {
		t.Fatalf("--overlap 8d: %v %v", *d, err)
	}
	if err := fs.Parse([]string{"--overlap", "soon"}); err == nil {
		t.Fatal("--overlap soon was accepted")
	}
}
