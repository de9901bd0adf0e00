package gateway

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCheckCSRF(t *testing.T) {
	origins := []string{"https://localhost:8443"}
	tests := []struct {
		name, method string
		hdr          map[string]string
		ok           bool
	}{
		{"get passes", "GET", nil, true},
		{"head passes", "HEAD", nil, true},
		{"post without header", "POST", map[string]string{"Origin": "https://localhost:8443"}, false},
		{"post with header", "POST", map[string]string{"X-Keyway-CSRF": "1"}, true},
		{"header must be 1", "POST", map[string]string{"X-Keyway-CSRF": "true"}, false},
		{"same origin", "POST", map[string]string{"X-Keyway-CSRF": "1", "Origin": "https://localhost:8443", "Sec-Fetch-Site": "same-origin"}, true},
		{"foreign origin", "DELETE", map[string]string{"X-Keyway-CSRF": "1", "Origin": "https://evil.example"}, false},
		{"origin differs by port", "PUT", map[string]string{"X-Keyway-CSRF": "1", "Origin": "https://localhost:9443"}, false},
		{"cross-site", "PATCH", map[string]string{"X-Keyway-CSRF": "1", "Sec-Fetch-Site": "cross-site"}, false},
		{"same-site sibling", "POST", map[string]string{"X-Keyway-CSRF": "1", "Sec-Fetch-Site": "same-site"}, false},
		{"null origin", "POST", map[string]string{"X-Keyway-CSRF": "1", "Origin": "null"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/x", nil)
			for k, v := range tt.hdr {
				r.Header.Set(k, v)
			}
			err := CheckCSRF(r, origins)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrCSRF)) {
				t.Fatalf("CheckCSRF = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestStripKeywayCookies(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"__Host-keyway_session=kws_secret"}, ""},
		{[]string{"a=1; __Host-keyway_session=kws_secret; b=2"}, "a=1; b=2"},
		{[]string{"__Host-keyway_ceremony=x", "theme=dark"}, "theme=dark"},
		{[]string{"keyway_other=1;c=3"}, "c=3"},
		{nil, ""},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.in {
			h.Add("Cookie", v)
		}
		stripKeywayCookies(h)
		if got := h.Get("Cookie"); got != tt.want || len(h.Values("Cookie")) > 1 {
			t.Errorf("%q → %q, want %q", tt.in, h.Values("Cookie"), tt.want)
		}
	}
}

func TestQueryHasKey(t *testing.T) {
	for q, want := range map[string]bool{
		"":                           false,
		"city=Paris":                 false,
		"k=kw_live_abc":              true,
		"k=kw%5Flive_abc":            true,
		"k=kw%5flive%5Fabc&x=%zz":    true,
		"k=%6Bw_test_abc":            true,
		"x=%zz&y=kw_":                false,
		"note=kw_live":               false,
		"a=1&b=2%20kw_test_%41%42%4": true,
	} {
		if got := queryHasKey(q); got != want {
			t.Errorf("queryHasKey(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestCheckUpgradeOrigin(t *testing.T) {
	origins := []string{"https://localhost:8443"}
	for _, tt := range []struct {
		origin, site string
		ok           bool
	}{
		{"https://localhost:8443", "", true},
		{"https://localhost:8443", "same-origin", true},
		{"https://localhost:8443", "same-site", false},
		{"https://evil.example", "", false},
		{"", "", false},
		{"null", "", false},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if tt.site != "" {
			r.Header.Set("Sec-Fetch-Site", tt.site)
		}
		if err := CheckUpgradeOrigin(r, origins); (err == nil) != tt.ok {
			t.Errorf("origin %q site %q: %v, want ok=%v", tt.origin, tt.site, err, tt.ok)
		}
	}
}
