package ratelimit

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/duration"
)

// ErrInvalidLimit is wrapped by every error from ParseLimit and
// Limit.Validate, so callers can branch with errors.Is; the message after it
// says what is wrong.
var ErrInvalidLimit = errors.New("invalid rate limit")

const (
	// MinPeriod is the shortest Period a Limit may have. Shorter windows
	// are below the resolution anyone configures on purpose and make typos
	// ("100/1ns") look valid.
	MinPeriod = time.Millisecond

	// MinInterval is the shortest emission interval (Period/Count) a Limit
	// may have, i.e. the highest rate is one million events per second per
	// key. Intervals are kept in whole nanoseconds and rounded up, so this
	// bound keeps the rounding error below 0.1%.
	MinInterval = time.Microsecond

	// MaxSpan bounds the time a full burst takes to refill (Burst ×
	// Period/Count), about 36 years. It keeps every theoretical arrival
	// time far from int64 overflow.
	MaxSpan = time.Duration(1 << 60)
)

// Limit is a rate: Count events per Period, with bursts of up to Burst events
// at once. The zero value is invalid.
//
// Burst 0 means Burst = Count: "100/min" lets a fresh client make 100
// requests at once and then one every 600ms. Set Burst lower to smooth
// traffic (Burst 1 forbids any burst) or higher to allow spikes above the
// average rate.
type Limit struct {
	// Count is the number of events allowed per Period. It must be ≥ 1.
	Count int64
	// Period is the window Count applies to. It must be ≥ MinPeriod and
	// Period/Count must be ≥ MinInterval.
	Period time.Duration
	// Burst is the number of events allowed at once from a full bucket.
	// 0 means Count; it must not be negative.
	Burst int64
}

// params returns the emission interval t (in nanoseconds, rounded up so a
// Limit is never more permissive than configured) and the effective burst b,
// or ok=false if l is invalid. It is the hot-path twin of Validate: no
// allocation, one division.
func (l Limit) params() (t, b int64, ok bool) {
	if l.Count <= 0 || l.Period < MinPeriod || l.Burst < 0 {
		return 0, 0, false
	}
	// The exact interval Period/Count must be ≥ MinInterval; t, rounded
	// up, then errs by less than 1ns in MinInterval.
	t = int64(l.Period) / l.Count
	if t < int64(MinInterval) {
		return 0, 0, false
	}
	if int64(l.Period)%l.Count != 0 {
		t++
	}
	b = l.Burst
	if b == 0 {
		b = l.Count
	}
	hi, lo := bits.Mul64(uint64(t), uint64(b))
	if hi != 0 || lo > uint64(MaxSpan) {
		return 0, 0, false
	}
	return t, b, true
}

// Params returns the emission interval (nanoseconds, rounded up) and the
// effective burst of l, or ok=false if l is invalid: what a shared
// limiter needs to run the same GCRA elsewhere.
func (l Limit) Params() (interval, burst int64, ok bool) { return l.params() }

// EffectiveBurst returns Burst, or Count when Burst is 0.
func (l Limit) EffectiveBurst() int64 {
	if l.Burst == 0 {
		return l.Count
	}
	return l.Burst
}

// Validate reports whether l can be used with a Limiter. The error wraps
// ErrInvalidLimit.
func (l Limit) Validate() error {
	if _, _, ok := l.params(); ok {
		return nil
	}
	var why string
	switch {
	case l.Count <= 0:
		why = "count must be at least 1"
	case l.Period < MinPeriod:
		why = fmt.Sprintf("period must be at least %v", MinPeriod)
	case l.Burst < 0:
		why = "burst must not be negative"
	case int64(l.Period)/l.Count < int64(MinInterval):
		why = fmt.Sprintf("rate too high: at most one event per %v (%d/s)", MinInterval, time.Second/MinInterval)
	default:
		why = fmt.Sprintf("a full burst would take longer than %v to refill", MaxSpan.Round(time.Hour))
	}
	return fmt.Errorf("%w %s: %s", ErrInvalidLimit, l, why)
}

// unitNames maps the period names ParseLimit accepts to their durations.
var unitNames = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour,
}

// ParseLimit parses a rate written as
//
//	<count>/<period>[ burst=<n>]
//
// where count is a positive decimal integer and period is a unit name (s,
// sec, second; m, min, minute; h, hour; d, day) or a duration
// (duration.Parse) such as 5m, 1h30m or 7d. Examples: "100/min", "5/s",
// "10/sec", "1000/hour", "20000/day", "100/5m", "100/min burst=20".
//
// Without burst=, Burst is 0 (meaning Count). The result is validated as by
// Limit.Validate; every error wraps ErrInvalidLimit.
func ParseLimit(s string) (Limit, error) {
	fail := func(why string) (Limit, error) {
		return Limit{}, fmt.Errorf("%w %q: %s", ErrInvalidLimit, s, why)
	}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return fail("empty; want <count>/<period>, such as 100/min")
	}
	if len(fields) > 2 {
		return fail("too many fields; want <count>/<period>[ burst=<n>]")
	}
	countStr, periodStr, ok := strings.Cut(fields[0], "/")
	if !ok {
		return fail("missing '/'; want <count>/<period>, such as 100/min")
	}
	var l Limit
	var err error
	if l.Count, err = parsePositive(countStr); err != nil {
		return fail("count " + err.Error())
	}
	if d, ok := unitNames[periodStr]; ok {
		l.Period = d
	} else {
		d, err := duration.Parse(periodStr)
		if err != nil || d <= 0 {
			return fail(fmt.Sprintf("period %q is neither a unit (s, min, hour, day) nor a positive Go duration such as 5m", periodStr))
		}
		l.Period = d
	}
	if len(fields) == 2 {
		burstStr, ok := strings.CutPrefix(fields[1], "burst=")
		if !ok {
			return fail(fmt.Sprintf("unknown option %q; the only option is burst=<n>", fields[1]))
		}
		if l.Burst, err = parsePositive(burstStr); err != nil {
			return fail("burst " + err.Error() + " (omit burst= to default it to the count)")
		}
	}
	if err := l.Validate(); err != nil {
		return Limit{}, err
	}
	return l, nil
}

// parsePositive parses a decimal integer ≥ 1 made only of ASCII digits (no
// sign, no underscores, no spaces).
func parsePositive(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("is missing")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a positive decimal integer", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	if n == 0 {
		return 0, errors.New("must be at least 1")
	}
	return n, nil
}

// String returns l in the canonical form ParseLimit reads back:
// ParseLimit(l.String()) == l for every valid l. Whole seconds, minutes,
// hours and days are written s, min, hour and day; other periods as Go
// durations ("100/5m", "3/1.5s"). A burst is written only when Burst is
// not 0.
func (l Limit) String() string {
	var p string
	switch l.Period {
	case time.Second:
		p = "s"
	case time.Minute:
		p = "min"
	case time.Hour:
		p = "hour"
	case 24 * time.Hour:
		p = "day"
	default:
		p = shortDuration(l.Period)
	}
	s := strconv.FormatInt(l.Count, 10) + "/" + p
	if l.Burst != 0 {
		s += " burst=" + strconv.FormatInt(l.Burst, 10)
	}
	return s
}

// shortDuration is d.String() without zero trailing units: 5m rather than
// 5m0s, 2h rather than 2h0m0s. time.ParseDuration reads both forms.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Decision is the outcome of one Allow. Its fields map onto the IETF
// RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) and
// Retry-After (RFC 9110 §10.2.3); turning them into headers is the HTTP
// layer's job.
type Decision struct {
	// Allowed reports whether the event may proceed.
	Allowed bool
	// Limit is the effective burst: the most events a full bucket allows at
	// once (RateLimit-Limit / the "q" of RateLimit-Policy).
	Limit int64
	// Remaining is the number of further events that would be allowed right
	// now, after this one (RateLimit-Remaining). It is never negative and 0
	// when !Allowed.
	Remaining int64
	// RetryAfter is, when !Allowed, how long to wait until one event would be
	// allowed (Retry-After; round it up to whole seconds, or clients retry
	// too early); 0 when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again, that is until
	// Limit events would be allowed at once (RateLimit-Reset; round up).
	ResetAfter time.Duration
	// Unavailable reports a denial because a shared limiter could not
	// reach its store and fails closed: the answer is 503, not 429.
	Unavailable bool
}

// Limiter decides whether one more event for a key fits its Limit. The
// in-process Memory implements it; a shared (e.g. Redis GCRA) implementation
// for clusters must give the same answers for the same sequence of events.
type Limiter[K comparable] interface {
	// Allow records one event for key under l and reports whether it is
	// allowed. A denied event is not counted against the key. Allow is safe
	// for concurrent use and exact: concurrent calls for one key get the
	// decisions they would get one after another, so a key with r events
	// left never has more than r of n concurrent calls allowed.
	//
	// Allow returns no error. An invalid l (see Limit.Validate) is denied
	// with a zero Decision (fail closed), so validate limits when loading
	// configuration. A shared implementation that cannot reach its store
	// must choose to fail open or closed and document it. A key should be
	// used with one Limit; if its Limit changes, the key's state carries over
	// and is read under the new Limit.
	Allow(key K, l Limit) Decision
}
