package gateway

import (
	"errors"
	"net/url"
	"strings"
)

// Errors from NormalizePath. Each is answered with 400: a request whose path
// could mean different things to keyway and to the upstream is refused rather
// than guessed at.
var (
	ErrPathEncodedSlash = errors.New("path contains an encoded slash or backslash")
	ErrPathControl      = errors.New("path contains a control character or NUL")
	ErrPathEscapesRoot  = errors.New("path climbs above the root")
	ErrPathBackslash    = errors.New("path contains a backslash")
	ErrPathNotAbsolute  = errors.New("path must start with /")
	ErrPathBadEscape    = errors.New("path contains an invalid percent-encoding")
	ErrPathSemicolon    = errors.New("path contains a semicolon")
)

// NormalizePath turns the raw (escaped) request path into the one canonical
// form that routing matches and the proxy forwards, so that matching and
// forwarding can never disagree:
//
//   - percent-encoding is decoded once (so %2e%2e is "..", %41 is "A");
//   - an encoded "/" or "\" (%2F, %5C) is refused, as are NUL and control
//     characters, a literal backslash and a semicolon (literal or %3B):
//     upstreams disagree on what they mean (Tomcat, Jetty and Spring strip
//     ";params" from segments, so "/admin;/x" would be "/admin/x" there);
//   - runs of "/" collapse to one;
//   - "." and ".." segments are resolved (RFC 3986 §5.2.4); climbing above the
//     root is refused;
//   - with lower set, ASCII letters are lower-cased.
//
// The result is decoded (as url.URL.Path). Decoding happens exactly once:
// "%252e" becomes the literal "%2e", never ".".
func NormalizePath(escaped string, lower bool) (string, error) {
	if escaped == "" || escaped[0] != '/' {
		return "", ErrPathNotAbsolute
	}
	if !lower && isClean(escaped) {
		return escaped, nil // the common case: nothing to decode or resolve, no allocation
	}
	var b strings.Builder
	b.Grow(len(escaped))
	for i := 0; i < len(escaped); i++ {
		c := escaped[i]
		if c == '%' {
			if i+2 >= len(escaped) || !ishex(escaped[i+1]) || !ishex(escaped[i+2]) {
				return "", ErrPathBadEscape
			}
			c = unhex(escaped[i+1])<<4 | unhex(escaped[i+2])
			i += 2
			if c == '/' || c == '\\' {
				return "", ErrPathEncodedSlash
			}
		} else if c == '\\' {
			return "", ErrPathBackslash
		}
		if c == ';' {
			return "", ErrPathSemicolon
		}
		if c < 0x20 || c == 0x7f {
			return "", ErrPathControl
		}
		if lower && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return resolveDots(b.String())
}

// isClean reports whether p needs no decoding, collapsing or dot resolution.
func isClean(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '\\', ';':
			return false
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.' && dotSegment(p[i+1:])) {
				return false
			}
		default:
			if c < 0x20 || c == 0x7f {
				return false
			}
		}
	}
	return true
}

// dotSegment reports whether the segment starting s is "." or "..", not
// merely a name starting with a dot (as in "/.keyway/").
func dotSegment(s string) bool {
	n := strings.IndexByte(s, '/')
	if n < 0 {
		n = len(s)
	}
	return s[:n] == "." || s[:n] == ".."
}

func resolveDots(p string) (string, error) {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "":
			trailing = last
		case ".":
			trailing = last
		case "..":
			if len(out) == 0 {
				return "", ErrPathEscapesRoot
			}
			out = out[:len(out)-1]
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		res += "/"
	}
	return res, nil
}

// lowerASCII lower-cases the ASCII letters of s and leaves every other
// byte alone: the one case rule for request paths and route prefixes.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// escapePath re-encodes a normalised path for the wire.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
