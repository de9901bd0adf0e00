package ratelimit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in   string
		want Limit
		str  string // canonical String of want
	}{
		{"100/min", Limit{Count: 100, Period: time.Minute}, "100/min"},
		{"5/s", Limit{Count: 5, Period: time.Second}, "5/s"},
		{"10/sec", Limit{Count: 10, Period: time.Second}, "10/s"},
		{"10/second", Limit{Count: 10, Period: time.Second}, "10/s"},
		{"7/m", Limit{Count: 7, Period: time.Minute}, "7/min"},
		{"7/minute", Limit{Count: 7, Period: time.Minute}, "7/min"},
		{"1000/hour", Limit{Count: 1000, Period: time.Hour}, "1000/hour"},
		{"1000/h", Limit{Count: 1000, Period: time.Hour}, "1000/hour"},
		{"1000/1h", Limit{Count: 1000, Period: time.Hour}, "1000/hour"},
		{"20000/day", Limit{Count: 20000, Period: 24 * time.Hour}, "20000/day"},
		{"20000/d", Limit{Count: 20000, Period: 24 * time.Hour}, "20000/day"},
		{"100/5m", Limit{Count: 100, Period: 5 * time.Minute}, "100/5m"},
		{"100/7d", Limit{Count: 100, Period: 7 * 24 * time.Hour}, "100/168h"},
		{"100/2h", Limit{Count: 100, Period: 2 * time.Hour}, "100/2h"},
		{"100/1h30m", Limit{Count: 100, Period: 90 * time.Minute}, "100/1h30m"},
		{"3/1.5s", Limit{Count: 3, Period: 1500 * time.Millisecond}, "3/1.5s"},
		{"1/1ms", Limit{Count: 1, Period: time.Millisecond}, "1/1ms"},
		{"1000/1ms", Limit{Count: 1000, Period: time.Millisecond}, "1000/1ms"},
		{"1000000/s", Limit{Count: 1000000, Period: time.Second}, "1000000/s"},
		{"100/min burst=20", Limit{Count: 100, Period: time.Minute, Burst: 20}, "100/min burst=20"},
		{"  100/min   burst=1 ", Limit{Count: 100, Period: time.Minute, Burst: 1}, "100/min burst=1"},
		{"1/day burst=500", Limit{Count: 1, Period: 24 * time.Hour, Burst: 500}, "1/day burst=500"},
		{"007/s", Limit{Count: 7, Period: time.Second}, "7/s"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if err != nil {
				t.Fatalf("ParseLimit(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseLimit(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			back, err := ParseLimit(got.String())
			if err != nil || back != got {
				t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", got.String(), back, err, got)
			}
		})
	}
}

func TestParseLimitErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantMsg string // a substring of the error
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"100", "missing '/'"},
		{"100 min", "missing '/'"},
		{"/min", "count is missing"},
		{"100/", "period \"\""},
		{"0/min", "count must be at least 1"},
		{"-5/min", "not a positive decimal integer"},
		{"+5/min", "not a positive decimal integer"},
		{"1_000/min", "not a positive decimal integer"},
		{"1e3/min", "not a positive decimal integer"},
		{"5.5/min", "not a positive decimal integer"},
		{"9223372036854775808/day", "out of range"},
		{"99999999999999999999/s", "out of range"},
		{"100/fortnight", "neither a unit"},
		{"100/Min", "neither a unit"},
		{"100/min/s", "neither a unit"},
		{"100/-5m", "neither a unit"},
		{"100/0s", "neither a unit"},
		{"100/5", "neither a unit"},
		{"1/999us", "period must be at least 1ms"},
		{"1/1ns", "period must be at least 1ms"},
		{"1001/1ms", "rate too high"},
		{"2000000/s", "rate too high"},
		{"9223372036854775807/day", "rate too high"},
		{"1/2000000h", "refill"},
		{"1/day burst=9223372036854775807", "refill"},
		{"100/min burst=0", "burst must be at least 1"},
		{"100/min burst=-1", "not a positive decimal integer"},
		{"100/min burst=", "burst is missing"},
		{"100/min burst", "unknown option"},
		{"100/min Burst=5", "unknown option"},
		{"100/min burst=5 extra", "too many fields"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if err == nil {
				t.Fatalf("ParseLimit(%q) = %+v, want error", tt.in, got)
			}
			if !errors.Is(err, ErrInvalidLimit) {
				t.Errorf("error %v does not wrap ErrInvalidLimit", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if got != (Limit{}) {
				t.Errorf("ParseLimit returned %+v with an error, want zero", got)
			}
		})
	}
}

func TestLimitValidate(t *testing.T) {
	tests := []struct {
		name string
		l    Limit
		ok   bool
	}{
		{"zero", Limit{}, false},
		{"minimal", Limit{Count: 1, Period: time.Millisecond}, true},
		{"negative count", Limit{Count: -1, Period: time.Second}, false},
		{"negative period", Limit{Count: 1, Period: -time.Second}, false},
		{"negative burst", Limit{Count: 1, Period: time.Second, Burst: -1}, false},
		{"burst above count", Limit{Count: 1, Period: time.Second, Burst: 1000}, true},
		{"fastest", Limit{Count: 1000000, Period: time.Second}, true},
		{"too fast", Limit{Count: 1000001, Period: time.Second}, false},
		{"span overflow", Limit{Count: 1, Period: time.Second, Burst: 1 << 40}, false},
		{"longest period", Limit{Count: 1, Period: MaxSpan}, true},
		{"period beyond span", Limit{Count: 1, Period: MaxSpan + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tt.l, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidLimit) {
				t.Errorf("error %v does not wrap ErrInvalidLimit", err)
			}
			if _, _, ok := tt.l.params(); ok != tt.ok {
				t.Errorf("params ok = %v, Validate ok = %v", ok, tt.ok)
			}
		})
	}
}

func TestLimitStringRoundTrip(t *testing.T) {
	periods := []time.Duration{
		time.Millisecond, 1500 * time.Microsecond, time.Second, 90 * time.Second,
		time.Minute, 10 * time.Minute, time.Hour, 25 * time.Hour, 24 * time.Hour,
		7 * 24 * time.Hour, time.Hour + time.Nanosecond,
	}
	for _, p := range periods {
		for _, c := range []int64{1, 3, 100} {
			for _, b := range []int64{0, 1, 7, 1000} {
				l := Limit{Count: c, Period: p, Burst: b}
				if l.Validate() != nil {
					continue
				}
				got, err := ParseLimit(l.String())
				if err != nil || got != l {
					t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", l.String(), got, err, l)
				}
			}
		}
	}
}

func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"100/min", "5/s", "100/5m burst=3", "1/1ms", "3/1.5s", "0/s", "1/1h0m0.5s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLimit(s)
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("ParseLimit(%q) = %+v, which does not validate: %v", s, l, err)
		}
		back, err := ParseLimit(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseLimit(%q) = %+v, %v; want %+v", l.String(), back, err, l)
		}
	})
}
