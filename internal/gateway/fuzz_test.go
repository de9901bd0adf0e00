package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/headername"
)

// FuzzOriginalRequest: whatever a proxy (or a client posing as one) puts
// in the forward-auth headers, keyway reads only the headers of the
// contract the path names, never panics, and what it goes on to decide
// is a path: either one that starts with "/" or one NormalizePath refuses.
func FuzzOriginalRequest(f *testing.F) {
	for _, s := range [][3]string{
		{"/v1/orders/7?x=1", "GET", "/v1/x"},
		{"https://shop.example/v1/orders", "POST", "/a%2fb"},
		{"//evil.example/x", "get", "/../x"},
		{"", "", ""},
		{"http://[::1]:80/%zz", "DELETE", "/%00"},
		{"/v1/me\r\nX-Injected: 1", "G ET", "/v1/open?q=%2e%2e"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, uri, method, envoyPath string) {
		for _, path := range []string{VerifyPath, verifyNginx, verifyEnvoy + "/"} {
			target := path
			if path == verifyEnvoy+"/" {
				if strings.ContainsAny(envoyPath, " \r\n\x00#") || !strings.HasPrefix(envoyPath, "/") {
					continue
				}
				target = verifyEnvoy + envoyPath
			}
			r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+safeTarget(target), nil)
			r.Header["X-Forwarded-Uri"] = []string{uri}
			r.Header["X-Forwarded-Method"] = []string{method}
			r.Header["X-Original-Uri"] = []string{uri + "?nginx"}
			r.Header["X-Original-Method"] = []string{method}
			mode, orig, ok := originalRequest(r, path)
			if !ok {
				continue
			}
			if mode == modeNginx && uri != "" && !strings.HasSuffix(orig.uri, "?nginx") && strings.HasPrefix(uri, "/") {
				t.Fatalf("nginx contract read another header: %q from %q", orig.uri, uri)
			}
			if mode == modeForward && strings.HasSuffix(orig.uri, "?nginx") && !strings.HasSuffix(uri, "?nginx") {
				t.Fatalf("forward contract read nginx's header: %q", orig.uri)
			}
			p, _, _ := strings.Cut(orig.uri, "?")
			if norm, err := NormalizePath(p, false); err == nil && !strings.HasPrefix(norm, "/") {
				t.Fatalf("%q became the path %q", orig.uri, norm)
			}
		}
	})
}

// safeTarget keeps a fuzzed request target parseable by httptest (which
// panics on what a server would refuse before keyway ever sees it).
func safeTarget(s string) string {
	if strings.ContainsAny(s, " \r\n\x00#") {
		return "/"
	}
	if _, err := url.ParseRequestURI(s); err != nil {
		return "/"
	}
	return s
}

// FuzzStripKeywayCookies: after the strip, no keyway cookie is left in
// any spelling keyway itself would read, and every other cookie is kept,
// in order.
func FuzzStripKeywayCookies(f *testing.F) {
	for _, s := range []string{
		"__Host-keyway_session=abc; theme=dark",
		"a=1;__Host-keyway_ceremony=x;b=2",
		"__Host-keyway_session=a; __Host-keyway_session=b",
		";;=;keyway=1; __host-keyway_session=x",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		h := http.Header{"Cookie": {cookie}}
		stripKeywayCookies(h)
		var want []string
		for _, part := range strings.Split(cookie, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name != "" && !KeywayCookie(name) {
				want = append(want, strings.TrimSpace(part))
			}
		}
		got := h.Get("Cookie")
		if got != strings.Join(want, "; ") {
			t.Fatalf("%q stripped to %q, want %q", cookie, got, strings.Join(want, "; "))
		}
		r := &http.Request{Header: http.Header{"Cookie": {got}}}
		for _, c := range r.Cookies() {
			if KeywayCookie(c.Name) {
				t.Fatalf("%q kept keyway's cookie %q", cookie, c.Name)
			}
		}
	})
}

// FuzzProtectedHeaderSpellings: a header name is protected (stripped
// inbound, never passable) whatever its case and whether it is written
// with - or _, because upstreams read every spelling as one.
func FuzzProtectedHeaderSpellings(f *testing.F) {
	for _, s := range []string{"X-Keyway-Subject", "x_keyway_roles", "X-Forwarded-For", "Forwarded", "X-Real-Ip", "X-Request-Id",
		"Authorization", "X-Api-Key", "Content-Type", "X-Keyway", "x-keywayy-z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, key := range []string{"Authorization", "X-Api-Key"} {
			p := headername.Protected(name, key)
			for _, v := range []string{strings.ToUpper(name), strings.ToLower(name), strings.ReplaceAll(name, "-", "_"), strings.ReplaceAll(name, "_", "-")} {
				if headername.Protected(v, key) != p {
					t.Fatalf("Protected(%q) = %v but Protected(%q) = %v (key header %s)", name, p, v, !p, key)
				}
			}
			lower := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			if strings.HasPrefix(lower, "x-keyway-") && !p {
				t.Fatalf("%q is keyway's but not protected", name)
			}
		}
	})
}
