package gateway

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in    string
		lower bool
		want  string
		err   error
	}{
		{"/", false, "/", nil},
		{"/v1/forecast", false, "/v1/forecast", nil},
		{"/v1/forecast/", false, "/v1/forecast/", nil},
		{"//v1//forecast", false, "/v1/forecast", nil},
		{"/v1/./forecast", false, "/v1/forecast", nil},
		{"/v1/forecast/../history", false, "/v1/history", nil},
		{"/v1/forecast/%2e%2e/history", false, "/v1/history", nil},
		{"/v1/forecast/%2E%2E/history", false, "/v1/history", nil},
		{"/v1/x/..", false, "/v1/", nil},
		{"/%76%31/forecast", false, "/v1/forecast", nil},
		{"/v1/%252e%252e/x", false, "/v1/%2e%2e/x", nil},
		{"/V1/Forecast", true, "/v1/forecast", nil},
		{"/V1/Forecast", false, "/V1/Forecast", nil},
		{"/a%20b", false, "/a b", nil},
		{"/..", false, "", ErrPathEscapesRoot},
		{"/.", false, "/", nil},
		{"/v1/.", false, "/v1/", nil},
		{"/v1/..", false, "/", nil},
		{"/.keyway/verify", false, "/.keyway/verify", nil},
		{"/.well-known/x/../y", false, "/.well-known/y", nil},
		{"/..x/.y/...", false, "/..x/.y/...", nil},
		{"/a/./.b", false, "/a/.b", nil},
		{"/.a/..", false, "/", nil},
		{"/../.keyway", false, "", ErrPathEscapesRoot},
		{"/v1/../../etc", false, "", ErrPathEscapesRoot},
		{"/v1%2fhistory", false, "", ErrPathEncodedSlash},
		{"/v1%2Fhistory", false, "", ErrPathEncodedSlash},
		{"/v1%5chistory", false, "", ErrPathEncodedSlash},
		{"/v1\\history", false, "", ErrPathBackslash},
		{"/s;/x", false, "", ErrPathSemicolon},
		{"/s%3B/x", false, "", ErrPathSemicolon},
		{"/s%3b", false, "", ErrPathSemicolon},
		{"/v1%00", false, "", ErrPathControl},
		{"/v1%0a", false, "", ErrPathControl},
		{"/v1%", false, "", ErrPathBadEscape},
		{"/v1%zz", false, "", ErrPathBadEscape},
		{"v1", false, "", ErrPathNotAbsolute},
		{"", false, "", ErrPathNotAbsolute},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizePath(tt.in, tt.lower)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzNormalizePath checks the invariants every normalised path keeps: it is
// absolute, has no dot segments or empty segments, and normalising it again
// (after re-escaping) changes nothing.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x/./y/", "/%2e%2e/", "/a%2fb", "/%252e", "/.keyway/v", "/.", "/a/..", "/..b/.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if strings.HasPrefix(in, "/") && isClean(in) {
			// The fast path must agree with the full resolution.
			if slow, err := resolveDots(in); err != nil || slow != in {
				t.Fatalf("%q is taken as clean but resolves to %q (%v)", in, slow, err)
			}
		}
		got, err := NormalizePath(in, false)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "//") {
			t.Fatalf("%q -> %q: not canonical", in, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q: dot segment left", in, got)
			}
		}
		again, err := NormalizePath(escapePath(got), false)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, got, again, err)
		}
	})
}

func BenchmarkNormalizePathClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = NormalizePath("/v1/forecast", false)
	}
}
