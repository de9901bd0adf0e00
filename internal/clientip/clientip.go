// Package clientip decides who a request really comes from. A client can
// write any X-Forwarded-For it likes, so forwarded headers are believed only
// when the TCP peer is a configured trusted proxy, and then only as far back
// as the chain of trusted hops goes (the right-most untrusted address wins).
package clientip

import (
	"net/http"
	"net/netip"
	"strings"
)

// Resolver maps a request to its client address. The zero value trusts no
// proxy and groups IPv6 clients by /64. It is safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
	v6bits  int
}

// DefaultIPv6Prefix is how many leading bits of an IPv6 address name one
// client: a home or cloud connection is usually given a whole /64, and can
// pick any address in it.
const DefaultIPv6Prefix = 64

// New returns a Resolver that believes forwarded headers from the trusted
// prefixes only, and names an IPv6 client by its first v6bits bits (0:
// DefaultIPv6Prefix). It panics if v6bits is outside 0..128.
func New(trusted []netip.Prefix, v6bits int) *Resolver {
	if v6bits < 0 || v6bits > 128 {
		panic("clientip: IPv6 prefix length out of range")
	}
	t := make([]netip.Prefix, len(trusted))
	for i, p := range trusted {
		t[i] = p.Masked()
	}
	return &Resolver{trusted: t, v6bits: v6bits}
}

// Info is what a Resolver learned of one request.
type Info struct {
	// Peer is the TCP peer address.
	Peer netip.Addr
	// Client is the originating client: Peer, unless Peer is trusted and
	// X-Forwarded-For names someone further back.
	Client netip.Addr
	// Source is who Client counts as for every per-client limit: an IPv4
	// address itself, an IPv6 address masked to the resolver's prefix
	// (/64 by default), so that one connection cannot rotate through the
	// addresses it owns to get a fresh budget each time.
	Source netip.Addr
	// PeerTrusted reports whether the TCP peer is a trusted proxy, whose
	// X-Forwarded-Proto, X-Forwarded-Host and X-Request-Id may be believed.
	PeerTrusted bool
}

// Source returns the limit key of a: a itself for IPv4, its network of the
// resolver's prefix length for IPv6 (the zero Addr for an invalid a).
func (r *Resolver) Source(a netip.Addr) netip.Addr {
	if !a.Is6() || a.Is4In6() {
		return a.Unmap()
	}
	bits := r.v6bits
	if bits == 0 {
		bits = DefaultIPv6Prefix
	}
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return a
	}
	return p.Addr()
}

// Trusted reports whether a is inside a trusted prefix.
func (r *Resolver) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Resolve returns the Info of req.
func (r *Resolver) Resolve(req *http.Request) Info {
	info := r.resolve(req)
	info.Source = r.Source(info.Client)
	return info
}

func (r *Resolver) resolve(req *http.Request) Info {
	peer := parseRemote(req.RemoteAddr)
	info := Info{Peer: peer, Client: peer}
	if !peer.IsValid() || !r.Trusted(peer) {
		return info
	}
	info.PeerTrusted = true
	// Walk X-Forwarded-For right to left: each trusted hop vouches for the
	// address to its left; the first untrusted one is the client.
	values := req.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// A garbled hop: stop believing anything further left.
				return info
			}
			a = a.Unmap()
			info.Client = a
			if !r.Trusted(a) {
				return info
			}
		}
	}
	return info
}

func parseRemote(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}
