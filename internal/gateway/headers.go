package gateway

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/keywayhq/keyway/internal/headername"
)

// Inbound headers: keyway removes every spelling of a header it sets or
// trusts (see package headername) and, as nginx does by default, every
// other header name with an underscore, and the method and path override
// headers; a route may pass named ones of the last two kinds through.

// scrubInbound removes from an outbound request's headers every header a
// client must not send upstream. keyHeader is the API-key header, whose
// exact canonical spelling is left for the caller to judge (it is the
// credential itself); pass holds the canonical names the route lets
// through despite an underscore or an override meaning.
func scrubInbound(h http.Header, keyHeader string, pass map[string]bool) {
	for k := range h {
		if dropInbound(k, keyHeader, pass) {
			delete(h, k)
		}
	}
}

// dropInbound reports whether scrubInbound removes the header k.
func dropInbound(k, keyHeader string, pass map[string]bool) bool {
	switch {
	case k == keyHeader:
		return false
	case headername.Protected(k, keyHeader):
		return true
	case headername.EqualFold(k, "http2-settings"):
		// Only meaningful in an h2c upgrade, which keyway never forwards.
		return true
	case strings.IndexByte(k, '_') >= 0 || headername.Override(k):
		return !pass[k]
	}
	return false
}

// dropTraceContext removes every spelling of the W3C trace context
// headers and, for a client (untrusted), of every other tracing format an
// upstream's tracer may read (B3, Jaeger, OpenTracing, X-Ray, Cloud
// Trace, SkyWalking, gRPC's binary context) and of W3C baggage: otherwise
// a client could pick the trace, and the sampling, of the upstream's spans.
func dropTraceContext(h http.Header, untrusted bool) {
	for k := range h {
		if isTraceHeader(k, untrusted) {
			delete(h, k)
		}
	}
}

// isTraceHeader reports whether dropTraceContext removes the header k: the
// W3C trace context always, every other format only for a client.
func isTraceHeader(k string, untrusted bool) bool {
	switch {
	case headername.EqualFold(k, "traceparent"), headername.EqualFold(k, "tracestate"):
		return true
	case !untrusted:
		return false
	case headername.EqualFold(k, "baggage"), headername.EqualFold(k, "b3"), headername.HasPrefixFold(k, "x-b3-"),
		headername.EqualFold(k, "uber-trace-id"), headername.HasPrefixFold(k, "uberctx-"),
		headername.HasPrefixFold(k, "ot-tracer-"), headername.HasPrefixFold(k, "ot-baggage-"),
		headername.EqualFold(k, "x-amzn-trace-id"), headername.EqualFold(k, "x-cloud-trace-context"),
		headername.EqualFold(k, "sw8"), headername.HasPrefixFold(k, "sw8-"), headername.EqualFold(k, "grpc-trace-bin"):
		return true
	}
	return false
}

// scrubResponse removes what an upstream must not set on keyway's origin:
// keyway's own cookies (a planted session cookie is a fixation or a login
// CSRF), and the transport policy (HSTS, Alt-Svc), which is keyway's alone.
func scrubResponse(h http.Header) {
	// Canonical keys: delete without Del's canonicalisation on every answer.
	delete(h, "Strict-Transport-Security")
	delete(h, "Alt-Svc")
	// keyway's request ID is the answer's only one (the upstream got it).
	delete(h, "X-Request-Id")
	cookies := h["Set-Cookie"]
	if len(cookies) == 0 {
		return
	}
	keep := cookies[:0:0]
	for _, c := range cookies {
		name, rest, _ := strings.Cut(c, "=")
		if name = strings.TrimSpace(name); name == "" {
			// A nameless cookie goes back as its bare value: "=x=1" is
			// sent as "x=1", so "=__Host-keyway_session=…" would plant
			// keyway's cookie in a browser that takes it.
			name, _, _ = strings.Cut(rest, "=")
			name = strings.TrimSpace(name)
		}
		if !KeywayCookie(name) {
			keep = append(keep, c)
		}
	}
	if len(keep) == 0 {
		delete(h, "Set-Cookie")
	} else if len(keep) != len(cookies) {
		h["Set-Cookie"] = keep
	}
}

// KeywayCookie reports whether a cookie name is one of keyway's own
// (__Host-keyway_*, __Secure-keyway_*, keyway_*), in any case: browsers
// match the __Host- and __Secure- prefixes without regard to case.
func KeywayCookie(name string) bool {
	for _, p := range []string{"__host-keyway_", "__secure-keyway_", "keyway_"} {
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			return true
		}
	}
	return false
}

// Hosts is the set of names keyway answers to. A request for any other
// Host is answered 421 (Misdirected Request): an upstream that builds links
// from X-Forwarded-Host must never see a name a client made up.
type Hosts map[string]bool

// NewHosts returns the set of names, which must be host names or IP
// addresses without a port; they are compared without case.
func NewHosts(names []string) Hosts {
	h := make(Hosts, len(names))
	for _, n := range names {
		h[strings.ToLower(strings.TrimSuffix(strings.Trim(n, "[]"), "."))] = true
	}
	return h
}

// Match reports whether hostport (a Host header or an X-Forwarded-Host
// value: a name or IP address with an optional port) names one of the
// hosts. An empty set matches everything.
func (h Hosts) Match(hostport string) bool {
	if len(h) == 0 {
		return true
	}
	name, ok := hostName(hostport)
	if !ok {
		return false
	}
	if h[name] {
		return true
	}
	// Only allocate for the rare spellings: upper case, a trailing dot.
	return h[strings.ToLower(strings.TrimSuffix(name, "."))]
}

// hostName returns the host part of hostport, checking that it is made of
// the characters a host name, IPv4 or bracketed IPv6 address may hold, and
// that a port, if any, is a number.
func hostName(hostport string) (string, bool) {
	if hostport == "" || len(hostport) > 261 {
		return "", false
	}
	host, port := hostport, ""
	if hostport[0] == '[' {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", false
		}
		host, port = hostport[1:end], hostport[end+1:]
		if _, err := netip.ParseAddr(host); err != nil {
			return "", false
		}
	} else if i := strings.IndexByte(hostport, ':'); i >= 0 {
		host, port = hostport[:i], hostport[i:]
	}
	if port != "" {
		if port[0] != ':' || len(port) < 2 || len(port) > 6 {
			return "", false
		}
		for i := 1; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return "", false
			}
		}
	}
	if hostport[0] != '[' {
		if host == "" {
			return "", false
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
				return "", false
			}
		}
	}
	return host, true
}

// stripKeywayCookies removes keyway's own cookies from an outbound Cookie
// header and keeps the rest: the upstream may have cookies of its own, but
// never ours.
func stripKeywayCookies(h http.Header) {
	vals := h.Values("Cookie")
	if len(vals) == 0 {
		return
	}
	h.Del("Cookie")
	if keep := keptCookies(vals); keep != "" {
		h.Set("Cookie", keep)
	}
}

// keptCookies is the Cookie header sent upstream: the client's cookies
// without keyway's own, in one header, or "" when none is left.
func keptCookies(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	var keep []string
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ";") {
			part = strings.TrimSpace(part)
			name, _, _ := strings.Cut(part, "=")
			if name == "" || KeywayCookie(name) {
				continue
			}
			keep = append(keep, part)
		}
	}
	return strings.Join(keep, "; ")
}
