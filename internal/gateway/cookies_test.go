package gateway

import (
	"net/http"
	"testing"
)

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
