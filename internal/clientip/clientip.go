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
// proxy. It is safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes forwarded headers from the trusted
// prefixes only.
func New(trusted []netip.Prefix) *Resolver {
	t := make([]netip.Prefix, len(trusted))
	for i, p := range trusted {
		t[i] = p.Masked()
	}
	return &Resolver{trusted: t}
}

// Info is what a Resolver learned of one request.
type Info struct {
	// Peer is the TCP peer address.
	Peer netip.Addr
	// Client is the originating client: Peer, unless Peer is trusted and
	// X-Forwarded-For names someone further back.
	Client netip.Addr
	// PeerTrusted reports whether the TCP peer is a trusted proxy, whose
	// X-Forwarded-Proto, X-Forwarded-Host and X-Request-Id may be believed.
	PeerTrusted bool
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
