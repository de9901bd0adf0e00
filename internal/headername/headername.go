// Package headername holds the rules about request header names that
// keyway owns, shared by the gateway (which enforces them) and config
// (which refuses settings that would break them).
//
// A header name is compared the way the most lenient server behind keyway
// would read it: ASCII case folded, and "_" read as "-". CGI-style servers
// (WSGI, Rack, PHP, many frameworks) map both X-Keyway-Subject and
// X_Keyway_Subject to HTTP_X_KEYWAY_SUBJECT, and which one wins is theirs to
// decide; so every spelling of a name keyway sets or trusts is keyway's.
package headername

import "net/textproto"

// overrideHeaders make some frameworks act on a method or path other than
// the one keyway's policy decided on. They never pass unless a route names
// them in its pass list.
var overrideHeaders = []string{
	"x-http-method-override",
	"x-http-method",
	"x-method-override",
	"x-original-url",
	"x-original-uri",
	"x-original-method",
	"x-rewrite-url",
}

// OverrideNames returns the override headers in their canonical
// spelling, a new slice on each call.
func OverrideNames() []string {
	out := make([]string, len(overrideHeaders))
	for i, o := range overrideHeaders {
		out[i] = textproto.CanonicalMIMEHeaderKey(o)
	}
	return out
}

// Protected reports whether name, in any spelling, is a header that
// keyway sets or trusts and that no client may send upstream: X-Keyway-*,
// X-Forwarded-*, Forwarded, X-Real-Ip, X-Request-Id, or keyHeader (the
// header that carries API keys). Config validation uses it to refuse
// passing such a header through.
func Protected(name, keyHeader string) bool {
	return HasPrefixFold(name, "x-keyway-") || HasPrefixFold(name, "x-forwarded-") ||
		EqualFold(name, "forwarded") || EqualFold(name, "x-real-ip") || EqualFold(name, "x-request-id") ||
		(keyHeader != "" && EqualFold(name, keyHeader))
}

// Override reports whether name, in any spelling, is a method or
// path override header (X-HTTP-Method-Override, X-Original-URL, …).
func Override(name string) bool {
	for _, o := range overrideHeaders {
		if EqualFold(name, o) {
			return true
		}
	}
	return false
}

// HasPrefixFold reports whether s starts with the lower-case prefix, with
// ASCII case folded and "_" read as "-".
func HasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && EqualFold(s[:len(prefix)], prefix)
}

// EqualFold reports whether a and b are the same header name with ASCII
// case folded and "_" read as "-".
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldByte(a[i]) != foldByte(b[i]) {
			return false
		}
	}
	return true
}

func foldByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}
