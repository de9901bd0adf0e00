package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/gateway"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/session"
)

// TestWriteErrorMapping pins the one place where errors become statuses:
// each sentinel gets its status and problem type, wrapped or not, and an
// unknown error is a 500 whose body says nothing about it.
func TestWriteErrorMapping(t *testing.T) {
	core, err := decision.New(decision.Config{Origins: []string{"https://localhost"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{logger: slog.New(slog.NewTextHandler(io.Discard, nil)), decider: core}
	tests := []struct {
		err    error
		status int
		typ    problem.Type
	}{
		{errNotFound, 404, problem.NotFound},
		{ErrNotReady, 503, problem.Unavailable},
		{errBadJSON, 400, problem.BadRequest},
		{apikey.ErrBadRequest, 400, problem.BadRequest},
		{apikey.ErrNotFound, 404, problem.NotFound},
		{apikey.ErrRevoked, 409, problem.Conflict},
		{passkey.ErrCeremony, 400, problem.CeremonyFailed},
		{passkey.ErrCloned, 401, problem.Unauthenticated},
		{passkey.ErrUsernameTaken, 409, problem.Conflict},
		{passkey.ErrSignUpClosed, 403, problem.Forbidden},
		{passkey.ErrLastPasskey, 409, problem.Conflict},
		{passkey.ErrInvalidInput, 400, problem.BadRequest},
		{passkey.ErrNotFound, 404, problem.NotFound},
		{session.ErrNotFound, 404, problem.NotFound},
		{decision.StepUp, 401, problem.StepUpRequired},
		{decision.NotAdmin, 403, problem.Forbidden},
		{decision.Unavailable, 503, problem.Unavailable},
		{errors.New("disk on fire at /var/lib/secret"), 500, problem.Internal},
	}
	for _, tt := range tests {
		for _, err := range []error{tt.err, fmt.Errorf("doing something: %w", tt.err)} {
			t.Run(err.Error(), func(t *testing.T) {
				w := httptest.NewRecorder()
				s.writeError(w, httptest.NewRequest(http.MethodGet, "/x", nil), err)
				var p problem.Problem
				if e := json.Unmarshal(w.Body.Bytes(), &p); e != nil {
					t.Fatalf("body %q: %v", w.Body, e)
				}
				if w.Code != tt.status || p.Type != tt.typ {
					t.Fatalf("%v → %d %s, want %d %s", err, w.Code, p.Type, tt.status, tt.typ)
				}
				if w.Header().Get("Content-Type") != "application/problem+json" {
					t.Fatalf("content type %q", w.Header().Get("Content-Type"))
				}
				if tt.status == 500 && strings.Contains(w.Body.String(), "disk") {
					t.Fatal("an internal error's text reached the client")
				}
			})
		}
	}
}

func TestRedirect(t *testing.T) {
	tests := []struct {
		host, target, port, want string
		status                   int
	}{
		{"localhost:8080", "/a?b=1", "8443", "https://localhost:8443/a?b=1", 308},
		{"example.com", "/", "443", "https://example.com/", 308},
		{"[::1]:8080", "/x", "8443", "https://[::1]:8443/x", 308},
		{"evil.example/@x", "/", "8443", "", 400},
		{"", "/", "8443", "", 400},
		{"evil.example", "/", "8443", "", 421},
		{"EXAMPLE.com:80", "/", "443", "https://EXAMPLE.com/", 308},
	}
	hosts := gateway.NewHosts([]string{"localhost", "example.com", "::1"})
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, tt.target, nil)
		r.Host = tt.host
		w := httptest.NewRecorder()
		Redirect(tt.port, hosts).ServeHTTP(w, r)
		if w.Code != tt.status || w.Header().Get("Location") != tt.want {
			t.Errorf("%q %q → %d %q, want %d %q", tt.host, tt.target, w.Code, w.Header().Get("Location"), tt.status, tt.want)
		}
	}
}

func TestDecodeIsStrict(t *testing.T) {
	var v struct {
		A string `json:"a"`
	}
	for body, ok := range map[string]bool{
		`{"a":"x"}`:         true,
		`{"a":"x","b":1}`:   false,
		`{"a":1}`:           false,
		`{"a":"x"} {"a":2}`: false,
		``:                  false,
		`{`:                 false,
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		err := decode(r, &v)
		if (err == nil) != ok || (err != nil && !errors.Is(err, errBadJSON)) {
			t.Errorf("decode(%q) = %v, want ok=%v", body, err, ok)
		}
	}
}

type pinger struct{ err error }

func (p pinger) Ping(context.Context) error { return p.err }

func TestReadyz(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
	}{{nil, 200}, {errors.New("database is locked"), 503}} {
		own, err := New(Config{Store: pinger{tt.err}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		own.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.keyway/readyz", nil))
		if w.Code != tt.status || strings.Contains(w.Body.String(), "locked") {
			t.Fatalf("store error %v: %d %s", tt.err, w.Code, w.Body)
		}
		if w.Header().Get("Content-Security-Policy") == "" || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("security headers missing: %v", w.Header())
		}
		own.Close()
	}
}
