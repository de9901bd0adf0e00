package demo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDemoAPI(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }
	h := New(now).Handler()
	tests := []struct {
		name, method, target, body, subject string
		want                                int
		wantIn                              string
	}{
		{"forecast", "GET", "/v1/forecast?city=Paris", "", "", 200, `"city":"Paris"`},
		{"forecast no city", "GET", "/v1/forecast", "", "", 400, "city must be"},
		{"forecast bad city", "GET", "/v1/forecast?city=%3Cscript%3E", "", "", 400, "city must be"},
		{"history", "GET", "/v1/history?city=Oslo", "", "", 200, `"date":"2026-11-20"`},
		{"me without subject", "GET", "/v1/me", "", "", 401, "no signed-in user"},
		{"me", "GET", "/v1/me", "", "u1", 200, `"internal_notes"`},
		{"add city", "POST", "/v1/me/cities", `{"city":"Lyon"}`, "u1", 201, `"Lyon"`},
		{"add city unknown field", "POST", "/v1/me/cities", `{"city":"Lyon","x":1}`, "u1", 400, "body must be"},
		{"wrong method", "POST", "/v1/forecast?city=Paris", "", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.subject != "" {
				req.Header.Set("X-Keyway-Subject", tt.subject)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tt.wantIn) {
				t.Fatalf("body %s does not contain %s", rec.Body, tt.wantIn)
			}
		})
	}
}

func TestForecastIsStable(t *testing.T) {
	h := New(nil).Handler()
	get := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/forecast?city=Paris", nil))
		return rec.Body.String()
	}
	if a, b := get(), get(); a != b {
		t.Fatalf("forecast changed between calls:\n%s\n%s", a, b)
	}
	var v struct{ Days []day }
	if err := json.Unmarshal([]byte(get()), &v); err != nil || len(v.Days) != 3 {
		t.Fatalf("days = %v, %v", v.Days, err)
	}
	for _, d := range v.Days {
		if d.LowC > d.HighC {
			t.Fatalf("low %v above high %v", d.LowC, d.HighC)
		}
	}
	_ = http.StatusOK
}
