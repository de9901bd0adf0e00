package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestResolve(t *testing.T) {
	r := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}, 0)
	tests := []struct {
		name        string
		remote      string
		xff         []string
		wantClient  string
		wantTrusted bool
	}{
		{"untrusted peer ignores xff", "203.0.113.5:1234", []string{"1.2.3.4"}, "203.0.113.5", false},
		{"trusted peer no xff", "10.1.1.1:80", nil, "10.1.1.1", true},
		{"trusted peer one hop", "10.1.1.1:80", []string{"198.51.100.7"}, "198.51.100.7", true},
		{"right-most untrusted wins", "10.1.1.1:80", []string{"6.6.6.6, 198.51.100.7, 10.2.2.2"}, "198.51.100.7", true},
		{"several header lines", "10.1.1.1:80", []string{"6.6.6.6", "198.51.100.7"}, "198.51.100.7", true},
		{"garbage stops the walk", "10.1.1.1:80", []string{"6.6.6.6, nonsense"}, "10.1.1.1", true},
		{"ipv6 loopback trusted", "[::1]:5", []string{"2001:db8::1"}, "2001:db8::1", true},
		{"mapped v4", "[::ffff:203.0.113.5]:1", nil, "203.0.113.5", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			info := r.Resolve(req)
			if got := info.Client.String(); got != tt.wantClient {
				t.Errorf("client = %s, want %s", got, tt.wantClient)
			}
			if info.PeerTrusted != tt.wantTrusted {
				t.Errorf("trusted = %v, want %v", info.PeerTrusted, tt.wantTrusted)
			}
		})
	}
}

func TestZeroResolverTrustsNobody(t *testing.T) {
	var r Resolver
	req := &http.Request{RemoteAddr: "127.0.0.1:1", Header: http.Header{"X-Forwarded-For": {"1.1.1.1"}}}
	if info := r.Resolve(req); info.PeerTrusted || info.Client.String() != "127.0.0.1" {
		t.Fatalf("got %+v", info)
	}
}

func TestSource(t *testing.T) {
	tests := []struct {
		bits       int
		addr, want string
	}{
		{0, "203.0.113.5", "203.0.113.5"},
		{0, "::ffff:203.0.113.5", "203.0.113.5"},
		{0, "2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{0, "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"},
		{48, "2001:db8:1:2:aaaa::1", "2001:db8:1::"},
		{128, "2001:db8:1:2:aaaa::1", "2001:db8:1:2:aaaa::1"},
		{0, "fe80::1%eth0", "fe80::"},
	}
	for _, tt := range tests {
		r := New(nil, tt.bits)
		if got := r.Source(netip.MustParseAddr(tt.addr)).String(); got != tt.want {
			t.Errorf("/%d Source(%s) = %s, want %s", tt.bits, tt.addr, got, tt.want)
		}
	}
	// Resolve fills Source from the resolved client: two addresses of one
	// /64 are one source.
	r := New(nil, 0)
	a := r.Resolve(&http.Request{RemoteAddr: "[2001:db8::1]:1", Header: http.Header{}})
	b := r.Resolve(&http.Request{RemoteAddr: "[2001:db8::ffff:2]:1", Header: http.Header{}})
	if a.Source != b.Source || a.Client == b.Client {
		t.Fatalf("sources %v %v, clients %v %v", a.Source, b.Source, a.Client, b.Client)
	}
}
