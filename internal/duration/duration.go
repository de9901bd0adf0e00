// Package duration reads the durations people write: Go's (90s, 15m,
// 24h, 1h30m) and days, which keys, overlaps and windows are counted in
// (8d, 90d, 1d12h). A day is 24 hours.
package duration

import (
	"errors"
	"flag"
	"math"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

// Parse reads s as time.ParseDuration does, and also a leading whole
// number of days: "8d", "1d12h". It refuses what it cannot read exactly.
func Parse(s string) (time.Duration, error) {
	neg := false
	rest := s
	if strings.HasPrefix(rest, "-") {
		neg, rest = true, rest[1:]
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(rest) || rest[i] != 'd' {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("invalid duration " + strconv.Quote(s) + ": use units s, m, h or d, like 90s, 15m, 24h or 8d")
		}
		return d, nil
	}
	days, err := strconv.ParseInt(rest[:i], 10, 64)
	if err != nil || days > math.MaxInt64/int64(day) {
		return 0, errors.New("duration " + strconv.Quote(s) + " is too long")
	}
	d := time.Duration(days) * day
	if tail := rest[i+1:]; tail != "" {
		if strings.HasPrefix(tail, "-") || strings.HasPrefix(tail, "+") {
			return 0, errors.New("invalid duration " + strconv.Quote(s))
		}
		t, err := time.ParseDuration(tail)
		if err != nil {
			return 0, errors.New("invalid duration " + strconv.Quote(s) + ": use units s, m, h or d, like 90s, 15m, 24h or 8d")
		}
		if t > math.MaxInt64-d {
			return 0, errors.New("duration " + strconv.Quote(s) + " is too long")
		}
		d += t
	}
	if neg {
		d = -d
	}
	return d, nil
}

// Format writes d in whole days when it is some ("8d", "1d12h0m0s"),
// otherwise as Go does.
func Format(d time.Duration) string {
	if d < day || d%time.Hour != 0 {
		return d.String()
	}
	days, rest := d/day, d%day
	if rest == 0 {
		return strconv.FormatInt(int64(days), 10) + "d"
	}
	return strconv.FormatInt(int64(days), 10) + "d" + strconv.FormatInt(int64(rest/time.Hour), 10) + "h"
}

// value is a flag.Value of a duration in days or Go's units.
type value struct{ d *time.Duration }

func (v value) String() string {
	if v.d == nil {
		return ""
	}
	return Format(*v.d)
}

func (v value) Set(s string) error {
	d, err := Parse(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

// Flag defines a duration flag on fs that also takes days.
func Flag(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	d := new(time.Duration)
	*d = def
	fs.Var(value{d}, name, usage)
	return d
}
