// Package httpapi serves keyway's own endpoints under /.keyway/ and the admin
// listener. Handlers are thin: they decode, call a domain service, encode.
// Errors become HTTP answers in exactly one place, writeError, which keeps
// what the client is told (a problem type and a fixed message) apart from
// what is logged (the error's detail, with the request ID to join the two).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/gateway"
	"github.com/keywayhq/keyway/internal/outage"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/privacy"
	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/session"
)

// Pinger reports whether the store answers. It returns nil when ready.
type Pinger interface {
	Ping(ctx context.Context) error
}

// BulkLimiter is a rate limiter that can also charge n events at once.
type BulkLimiter[K comparable] interface {
	ratelimit.Limiter[K]
	AllowN(key K, l ratelimit.Limit, n int64) ratelimit.Decision
	Close()
}

// Config configures the own-endpoint handler.
type Config struct {
	// Store is checked by /.keyway/readyz. Required.
	Store Pinger
	// Logger receives the detail of errors. Required.
	Logger *slog.Logger
	// Version is reported by /.keyway/healthz.
	Version string
	// Leak configures the leak-report endpoint.
	Leak LeakConfig
	// Auth configures the people-facing endpoints. Nil: not served.
	Auth *AuthConfig
	// Decider answers refusals that handlers return as a decision.Reason.
	// Required with Auth.
	Decider *decision.Core
	// Portal serves the web pages under /.keyway/portal/. Optional.
	Portal http.Handler
	// JWKS, when set, is served at /.keyway/jwks.json: the public keys of
	// the identity assertions keyway signs for upstreams.
	JWKS http.Handler
	// AuthLimiter holds the budgets of sign-in, recovery and the other
	// people-facing endpoints; LeakLimiter those of leak reports. Nil:
	// in-process ones. A shared one (Redis) must fail closed.
	AuthLimiter BulkLimiter[string]
	LeakLimiter BulkLimiter[netip.Addr]
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// ErrNotReady means a dependency (the store) does not answer.
var ErrNotReady = errors.New("not ready")

// errNotFound is the fallback of the own mux.
var errNotFound = errors.New("no such keyway endpoint")

// New returns the handler of the /.keyway/ space.
func New(cfg Config) (*Own, error) {
	if cfg.Store == nil || cfg.Logger == nil {
		return nil, errors.New("httpapi: Store and Logger are required")
	}
	s := &server{logger: cfg.Logger, decider: cfg.Decider}
	o := &ownServer{server: s, cfg: cfg}
	own := &Own{}
	mux := http.NewServeMux()
	mux.Handle("GET /.keyway/healthz", s.handle(o.healthz))
	mux.Handle("GET /.keyway/readyz", s.handle(o.readyz))
	if cfg.Leak.Reporter != nil {
		if cfg.Leak.Limit.Count <= 0 {
			return nil, errors.New("httpapi: Leak.Limit is required")
		}
		lim := cfg.LeakLimiter
		if lim == nil {
			lim = ratelimit.NewMemory[netip.Addr](ratelimit.MemoryConfig{MaxKeys: 1 << 16})
		}
		lh := &leakHandler{cfg: cfg.Leak, limit: lim}
		own.closers = append(own.closers, lh.limit.Close)
		mux.Handle("POST /.keyway/keys/report-leak", s.handle(lh.serve))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Auth != nil {
		if cfg.Auth.Accounts == nil || cfg.Auth.Sessions == nil || cfg.Auth.Decider == nil {
			return nil, errors.New("httpapi: Auth needs Accounts, Sessions and Decider")
		}
		s.decider = cfg.Auth.Decider
		lim := cfg.AuthLimiter
		if lim == nil {
			lim = ratelimit.NewMemory[string](ratelimit.MemoryConfig{MaxKeys: 1 << 18})
		}
		a := &auth{server: s, cfg: *cfg.Auth, now: cfg.Now, limit: lim}
		own.closers = append(own.closers, a.limit.Close)
		if err := a.newRoutes(); err != nil {
			own.Close()
			return nil, err
		}
		for _, rt := range []*decision.Route{a.open, a.optional, a.any, a.full, a.fresh, a.admin} {
			own.closers = append(own.closers, rt.Close)
		}
		a.register(mux)
	}
	if cfg.Portal != nil {
		mux.Handle("/.keyway/portal/", cfg.Portal)
	}
	if cfg.JWKS != nil {
		mux.Handle("GET /.keyway/jwks.json", cfg.JWKS)
	}
	mux.Handle("/", s.handle(func(http.ResponseWriter, *http.Request) error { return errNotFound }))
	own.h = securityHeaders(mux)
	return own, nil
}

// Own is the handler of the /.keyway/ space.
type Own struct {
	h       http.Handler
	closers []func()
}

// ServeHTTP implements http.Handler.
func (o *Own) ServeHTTP(w http.ResponseWriter, r *http.Request) { o.h.ServeHTTP(w, r) }

// Close stops the background work of the handler's rate limiters.
func (o *Own) Close() {
	for _, c := range o.closers {
		c()
	}
}

// server holds what every handler of this package shares: the error mapping.
type server struct {
	logger  *slog.Logger
	decider *decision.Core
}

type ownServer struct {
	*server
	cfg Config
}

// handle adapts an error-returning handler.
func (s *server) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The events this request's changes write say where it came from.
		if c := clientOf(r); c.IsValid() {
			r = r.WithContext(audit.WithFrom(r.Context(), c.String()))
		}
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// writeError is the one place where an error becomes a status code.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var reason decision.Reason
	if errors.As(err, &reason) && s.decider != nil {
		// A refusal the handler found itself is answered like the core's.
		d := decision.Decision{Reason: reason}
		s.decider.WriteDenial(w, &d, requestID(r))
		return
	}
	var p *problem.Problem
	switch {
	case errors.As(err, &p):
	case errors.Is(err, errNotFound):
		p = problem.New(problem.NotFound, http.StatusNotFound, "no such keyway endpoint")
	case errors.Is(err, ErrNotReady):
		p = problem.New(problem.Unavailable, http.StatusServiceUnavailable, "keyway is not ready")
	case outage.Is(err):
		// The store is out of reach or overloaded: nothing was done, and
		// trying again shortly may work.
		p = problem.New(problem.Unavailable, http.StatusServiceUnavailable, "temporarily unavailable; try again shortly")
		p.RetryAfter = 2 * time.Second
	case errors.Is(err, errBadJSON), errors.Is(err, apikey.ErrBadRequest):
		// Both carry only messages this package or apikey wrote about the input.
		p = problem.New(problem.BadRequest, http.StatusBadRequest, err.Error())
	case errors.Is(err, apikey.ErrNotFound):
		p = problem.New(problem.NotFound, http.StatusNotFound, "no such API key")
	case errors.Is(err, apikey.ErrRevoked):
		p = problem.New(problem.Conflict, http.StatusConflict, "the API key is revoked")
	case errors.Is(err, passkey.ErrCeremony):
		// Never say which check failed: that would help forge the next try.
		p = problem.New(problem.CeremonyFailed, http.StatusBadRequest, "the passkey response could not be verified; start again")
	case errors.Is(err, passkey.ErrCloned):
		p = problem.New(problem.Unauthenticated, http.StatusUnauthorized,
			"this passkey may have been copied and was refused; sign in with another passkey or a recovery code")
	case errors.Is(err, passkey.ErrUsernameTaken):
		p = problem.New(problem.Conflict, http.StatusConflict, "that username is taken")
	case errors.Is(err, passkey.ErrSignUpClosed):
		p = problem.New(problem.Forbidden, http.StatusForbidden, "sign-up needs a valid invitation")
	case errors.Is(err, privacy.ErrLastAdmin):
		p = problem.New(problem.Conflict, http.StatusConflict, err.Error())
	case errors.Is(err, passkey.ErrLastPasskey):
		p = problem.New(problem.Conflict, http.StatusConflict, "this is your last passkey and you have no recovery codes left: add another passkey or new codes first")
	case errors.Is(err, passkey.ErrInvalidInput):
		p = problem.New(problem.BadRequest, http.StatusBadRequest, err.Error())
	case errors.Is(err, passkey.ErrNotFound), errors.Is(err, session.ErrNotFound):
		p = problem.New(problem.NotFound, http.StatusNotFound, "not found")
	default:
		p = problem.New(problem.Internal, http.StatusInternalServerError, "something went wrong; quote the instance to the operator")
	}
	id := requestID(r)
	if p.Status >= 500 {
		s.logger.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", id), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	}
	problem.Write(w, p, id)
}

func requestID(r *http.Request) string {
	if info, ok := gateway.InfoFrom(r.Context()); ok {
		return info.ID
	}
	return ""
}

func requestInfo(r *http.Request) (gateway.RequestInfo, bool) {
	return gateway.InfoFrom(r.Context())
}

func clientOf(r *http.Request) netip.Addr {
	if info, ok := requestInfo(r); ok {
		return info.Client.Client
	}
	return netip.Addr{}
}

func (s *ownServer) healthz(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}

func (s *ownServer) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		return errors.Join(ErrNotReady, err)
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// securityHeaders sets the headers every keyway-made response carries. The
// CSP forbids everything: these endpoints serve JSON, never a document.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// AdminConfig configures the admin listener's handler.
type AdminConfig struct {
	// Metrics serves Prometheus /metrics. Required.
	Metrics http.Handler
	// Keys manages API keys through /v1/keys. Required.
	Keys KeyAdmin
	// Decider decides who may call /v1/keys. Required.
	Decider *decision.Core
	// ClientIP applies the trusted-proxy rules. Default: trust nobody.
	ClientIP *clientip.Resolver
	// JWKS, when set, is served at /.well-known/jwks.json: the public keys
	// of the identity assertions keyway signs.
	JWKS http.Handler
	// People, when set, serves /v1/users: people and their roles.
	People PeopleAdmin
	// Privacy, when set, serves a person's export and erasure.
	Privacy PrivacyAdmin
	// Logger receives errors. Required.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// PeopleAdmin is what the admin API needs of the passkey service.
type PeopleAdmin interface {
	Users(ctx context.Context) ([]*passkey.User, error)
	SetRoles(ctx context.Context, id string, roles []string, actor string) (*passkey.User, error)
}

// PrivacyAdmin exports and erases a person's data.
type PrivacyAdmin interface {
	Export(ctx context.Context, userID, actor string) (*privacy.Export, error)
	Erase(ctx context.Context, userID, actor string) error
}

type adminServer struct {
	*server
	keys     KeyAdmin
	people   PeopleAdmin
	privacy  PrivacyAdmin
	now      func() time.Time
	route    *decision.Route
	clientIP *clientip.Resolver
}

// NewAdmin returns the handler of the admin listener: /metrics (open, on a
// listener that should stay on loopback), the OpenAPI document, and the key
// management API, which needs an API key with scope keyway:admin.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	if cfg.Metrics == nil || cfg.Keys == nil || cfg.Logger == nil || cfg.Decider == nil {
		return nil, errors.New("httpapi: Metrics, Keys, Decider and Logger are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = clientip.New(nil, 0)
	}
	route, err := cfg.Decider.NewRoute(decision.RouteConfig{Name: "admin-api", Policy: decision.APIKey,
		Scopes: []string{AdminScope}, ServiceOnly: true})
	if err != nil {
		return nil, err
	}
	s := &adminServer{server: &server{logger: cfg.Logger, decider: cfg.Decider}, keys: cfg.Keys, people: cfg.People, privacy: cfg.Privacy, now: cfg.Now,
		route: route, clientIP: cfg.ClientIP}
	api := http.NewServeMux()
	api.Handle("GET /v1/keys", s.handle(s.listKeys))
	api.Handle("POST /v1/keys", s.handle(s.createKey))
	api.Handle("GET /v1/keys/{id}", s.handle(s.getKey))
	api.Handle("PATCH /v1/keys/{id}", s.handle(s.updateKey))
	api.Handle("DELETE /v1/keys/{id}", s.handle(s.deleteKey))
	api.Handle("POST /v1/keys/{id}/rotate", s.handle(s.rotateKey))
	api.Handle("POST /v1/keys/{id}/revoke", s.handle(s.revokeKey))
	api.Handle("GET /v1/keys/{id}/usage", s.handle(s.keyUsage))
	if s.people != nil {
		api.Handle("GET /v1/users", s.handle(s.listUsers))
		api.Handle("PUT /v1/users/{id}/roles", s.handle(s.setRoles))
	}
	if s.privacy != nil {
		api.Handle("GET /v1/users/{id}/export", s.handle(func(w http.ResponseWriter, r *http.Request) error {
			exp, err := s.privacy.Export(r.Context(), r.PathValue("id"), s.actor(r))
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, exp)
		}))
		api.Handle("DELETE /v1/users/{id}", s.handle(func(w http.ResponseWriter, r *http.Request) error {
			if err := s.privacy.Erase(r.Context(), r.PathValue("id"), s.actor(r)); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}))
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", cfg.Metrics)
	mux.Handle("GET /openapi.json", http.HandlerFunc(serveOpenAPI))
	if cfg.JWKS != nil {
		mux.Handle("GET /.well-known/jwks.json", cfg.JWKS)
	}
	mux.Handle("/v1/", s.authenticate(api))
	mux.Handle("/", s.handle(func(http.ResponseWriter, *http.Request) error { return errNotFound }))
	return &Admin{h: securityHeaders(mux), route: route}, nil
}

// Admin is the handler of the admin listener.
type Admin struct {
	h     http.Handler
	route *decision.Route
}

// ServeHTTP implements http.Handler.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.h.ServeHTTP(w, r) }

// Close stops the admin route's limiters.
func (a *Admin) Close() { a.route.Close() }

// Redirect answers every plain-HTTP request with a 308 to the same path on
// HTTPS, and serves nothing else. httpsPort is the port of the HTTPS
// listener ("" or "443" for the default port). A Host that is not one of
// hosts is answered 421, never reflected into a Location.
func Redirect(httpsPort string, hosts gateway.Hosts) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if !validRedirectHost(host) {
			problem.Write(w, problem.New(problem.BadRequest, http.StatusBadRequest, "missing or invalid Host header"), "")
			return
		}
		if !hosts.Match(r.Host) {
			problem.Write(w, problem.New(problem.MisdirectedRequest, http.StatusMisdirectedRequest,
				"this server does not answer for that host name"), "")
			return
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		if httpsPort != "" && httpsPort != "443" {
			host += ":" + httpsPort
		}
		path := r.URL.EscapedPath()
		if !strings.HasPrefix(path, "/") {
			path = "/" // "*" (OPTIONS) or an absolute form without a path
		}
		target := "https://" + host + path
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", target)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

func validRedirectHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

func (s *adminServer) listUsers(w http.ResponseWriter, r *http.Request) error {
	users, err := s.people.Users(r.Context())
	if err != nil {
		return err
	}
	out := make([]UserJSON, 0, len(users))
	for _, u := range users {
		out = append(out, userJSON(u))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// setRoles replaces a person's roles: {"roles": ["billing", "ops"]}.
func (s *adminServer) setRoles(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Roles *[]string `json:"roles"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Roles == nil {
		return fmt.Errorf("%w: roles is required: {\"roles\": [\"billing\"]}, or [] for none", apikey.ErrBadRequest)
	}
	u, err := s.people.SetRoles(r.Context(), r.PathValue("id"), *req.Roles, s.actor(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, userJSON(u))
}
