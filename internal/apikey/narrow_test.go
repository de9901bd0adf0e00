package apikey

import (
	"net/netip"
	"testing"
	"time"
)

// TestUpdatesOnlyNarrow: an update may lower a key's rate, burst and
// quota and narrow its networks, never the other way, and never drop a
// limit or a network list the key has.
func TestUpdatesOnlyNarrow(t *testing.T) {
	rate := Rate{Count: 10, Period: time.Second}
	for _, tc := range []struct {
		name string
		next Rate
		ok   bool
	}{
		{"same", rate, true},
		{"lower", Rate{Count: 5, Period: time.Second}, true},
		{"same rate in other units", Rate{Count: 600, Period: time.Minute, Burst: 10}, true},
		{"higher in other units", Rate{Count: 601, Period: time.Minute, Burst: 10}, false},
		{"a larger burst", Rate{Count: 10, Period: time.Second, Burst: 11}, false},
		{"the default burst of a higher count", Rate{Count: 600, Period: time.Minute}, false},
		{"none", Rate{}, false},
	} {
		if got := narrowerRate(rate, tc.next); got != tc.ok {
			t.Errorf("rate %s: %v, want %v", tc.name, got, tc.ok)
		}
	}
	if !narrowerRate(Rate{}, Rate{Count: 1, Period: time.Hour}) {
		t.Error("a rate on a key without one was refused")
	}

	q := Quota{Limit: 100, Period: QuotaDay}
	for _, tc := range []struct {
		next Quota
		ok   bool
	}{
		{Quota{Limit: 50, Period: QuotaDay}, true},
		{Quota{Limit: 101, Period: QuotaDay}, false},
		{Quota{Limit: 50, Period: QuotaMonth}, false},
		{Quota{}, false},
	} {
		if got := narrowerQuota(q, tc.next); got != tc.ok {
			t.Errorf("quota %+v: %v, want %v", tc.next, got, tc.ok)
		}
	}

	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	was := []netip.Prefix{p("10.9.8.0/24"), p("2001:db8::/48")}
	for _, tc := range []struct {
		next []netip.Prefix
		ok   bool
	}{
		{[]netip.Prefix{p("10.9.8.0/25")}, true},
		{[]netip.Prefix{p("10.9.8.7/32"), p("2001:db8:0:1::/64")}, true},
		{[]netip.Prefix{p("10.9.0.0/16")}, false},
		{[]netip.Prefix{p("10.9.9.0/24")}, false},
		{[]netip.Prefix{p("::ffff:10.9.8.0/120")}, false},
		{nil, false},
	} {
		if got := narrowerNetworks(was, tc.next); got != tc.ok {
			t.Errorf("networks %v: %v, want %v", tc.next, got, tc.ok)
		}
	}
	if !narrowerNetworks(nil, []netip.Prefix{p("10.0.0.0/8")}) {
		t.Error("networks on a key open to all were refused")
	}
}
