package gateway

import (
	"net/http"
	"slices"
	"testing"
)

func TestScrubInbound(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{
		"X-Keyway-Subject", "X_keyway_subject", "X-keyway_scopes", "X_Forwarded_For", "X-Forwarded-Port",
		"X-Forwarded-Prefix", "Forwarded", "X_Real_Ip", "X-Real-Ip", "X-Request-Id", "X_request_id",
		"X-Api-Key", "X_Api_Key", "X-Http-Method-Override", "X-Original-Url", "X-Rewrite-Url", "X-Original-Method",
		"Http2-Settings", "X_Custom", "X_Legacy", "Accept", "Authorization", "Content-Type",
	} {
		h[k] = []string{"v"}
	}
	scrubInbound(h, "X-Api-Key", map[string]bool{"X_Legacy": true, "X-Original-Method": true})
	var kept []string
	for k := range h {
		kept = append(kept, k)
	}
	slices.Sort(kept)
	want := []string{"Accept", "Authorization", "Content-Type", "X-Api-Key", "X-Original-Method", "X_Legacy"}
	if !slices.Equal(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
}

func TestScrubResponse(t *testing.T) {
	h := http.Header{
		"Set-Cookie": {
			"__Host-keyway_session=x; Path=/", "__HOST-Keyway_Session=y", "__Secure-keyway_a=1", "keyway_b=2",
			" keyway_c=3", "app=1", "keywayish=2",
		},
		"Strict-Transport-Security": {"max-age=0"},
		"Alt-Svc":                   {"h3=\":443\""},
		"X-Other":                   {"kept"},
	}
	scrubResponse(h)
	if got := h["Set-Cookie"]; !slices.Equal(got, []string{"app=1", "keywayish=2"}) {
		t.Fatalf("Set-Cookie = %q", got)
	}
	if h.Get("Strict-Transport-Security") != "" || h.Get("Alt-Svc") != "" || h.Get("X-Other") != "kept" {
		t.Fatalf("headers = %v", h)
	}
	h = http.Header{"Set-Cookie": {"__Host-keyway_session=x"}}
	scrubResponse(h)
	if _, ok := h["Set-Cookie"]; ok {
		t.Fatal("an emptied Set-Cookie is still there")
	}
}

func TestHostsMatch(t *testing.T) {
	hs := NewHosts([]string{"localhost", "127.0.0.1", "::1", "API.example.com."})
	for host, want := range map[string]bool{
		"localhost": true, "localhost:8443": true, "LOCALHOST": true, "localhost.": true, "127.0.0.1:1": true,
		"[::1]": true, "[::1]:8443": true, "api.example.com": true, "Api.Example.Com:443": true,
		"": false, "evil.example": false, "localhost.evil": false, "::1": false, "[::2]": false, "[::1": false,
		"localhost:x": false, "localhost:": false, "local host": false, "localhost/x": false, "127.0.0.1:8443:1": false,
		"localhost:1234567": false, "evil.example@localhost": false,
	} {
		if got := hs.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
	if !Hosts(nil).Match("anything") {
		t.Error("an empty set must match anything")
	}
}

func TestIsUpgrade(t *testing.T) {
	for _, tt := range []struct {
		conn, up string
		want     bool
	}{
		{"Upgrade", "websocket", true},
		{"keep-alive, UPGRADE", "websocket", true},
		{"keep-alive", "websocket", false},
		{"Upgrade", "", false},
		{"upgradex", "websocket", false},
	} {
		h := http.Header{}
		if tt.conn != "" {
			h.Set("Connection", tt.conn)
		}
		if tt.up != "" {
			h.Set("Upgrade", tt.up)
		}
		if got := isUpgrade(h); got != tt.want {
			t.Errorf("isUpgrade(%q, %q) = %v", tt.conn, tt.up, got)
		}
	}
}

func TestLowerASCII(t *testing.T) {
	for in, want := range map[string]string{"/ABC": "/abc", "/Ünïcode/X": "/Ünïcode/x", "/x": "/x", "": ""} {
		if got := lowerASCII(in); got != want {
			t.Errorf("lowerASCII(%q) = %q, want %q", in, got, want)
		}
	}
}
