// Package verify checks keyway's API keys and sessions inside a Go service:
// a net/http middleware that lets a request through only when keyway's
// decision core says so, and hands the handler who is calling.
//
// It asks keyway one of two ways, with the same answer either way:
//
//   - New: a running keyway over HTTPS, at its forward-auth endpoint
//     (/.keyway/verify). keyway must list this service's address in
//     forward_auth.trusted_proxies. An optional cache keeps a decision for
//     at most five seconds: within that time a revocation is not yet seen,
//     and cached requests do not count against rate limits or quotas.
//   - Open: keyway embedded in this process, on the same store as the
//     running keyway (its config file: data directory, pepper, routes).
//     Every decision is made here and now; revocations made anywhere are
//     seen within a second, as by keyway itself.
//
// Routes are keyway's: the path and method of each request are matched
// against the routes of keyway's config, exactly as keyway's own proxy
// matches them. A request matching no route is refused.
package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/headername"
)

// Identity is who a request comes from, as keyway decided.
type Identity struct {
	// Subject is the principal: "user:<id>" or "service:<name>"; "" on a
	// public route.
	Subject string
	// KeyID is the API key's ID ("key_…"); "" for a session.
	KeyID string
	// Scopes are the API key's scopes.
	Scopes []string
	// Name is a person's display name.
	Name string
	// SessionID is the session's ID ("ses_…"); "" for a key.
	SessionID string
	// Client is the client profile the credential names, if any.
	Client string
	// Roles are the person's roles (session routes), for the handler's
	// own finer checks; keyway already enforced the route's roles.
	Roles []string
	// Assertion is keyway's signed assertion, when keyway is configured to
	// sign one (forward_auth.audience).
	Assertion string
}

type identityKey struct{}

// IdentityFrom returns the identity the middleware found for a request.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Config configures a Verifier that asks a running keyway.
type Config struct {
	// URL is keyway's base URL, such as https://127.0.0.1:8443. Required.
	URL string
	// RootCAs verifies keyway's certificate (its ca.pem in local TLS
	// mode). Default: the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds one question to keyway; past it the request is
	// refused (503). Default 2s.
	Timeout time.Duration
	// CacheTTL keeps each answer for this long, at most 5s. Default 0: no
	// cache, every request is decided (and counted) by keyway.
	CacheTTL time.Duration
	// KeyHeader is keyway's api_keys.header. Default "Authorization".
	KeyHeader string
}

// Verifier checks requests with keyway. It is safe for concurrent use.
type Verifier struct {
	ask   func(*http.Request) (*http.Response, error)
	asked []string // the request headers keyway decides on
	ttl   time.Duration
	close func() error

	mu    sync.Mutex
	cache map[[32]byte]cached
	now   func() time.Time
}

type cached struct {
	status int
	header http.Header
	body   []byte
	until  time.Time
}

// maxCache bounds the cached answers.
const maxCache = 10000

// New returns a Verifier that asks the keyway at cfg.URL.
func New(cfg Config) (*Verifier, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("verify: URL must be keyway's https base URL")
	}
	if cfg.CacheTTL < 0 || cfg.CacheTTL > 5*time.Second {
		return nil, errors.New("verify: CacheTTL is at most 5s, so that a revocation is seen within 5s")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	client := &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   true,
	}}
	endpoint := strings.TrimSuffix(cfg.URL, "/") + "/.keyway/verify"
	v := &Verifier{asked: askedHeaders(cfg.KeyHeader), ttl: cfg.CacheTTL, cache: map[[32]byte]cached{}, now: time.Now,
		close: func() error { client.CloseIdleConnections(); return nil }}
	v.ask = func(r *http.Request) (*http.Response, error) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, endpoint, nil)
		if err != nil {
			return nil, err
		}
		v.copyAsked(req.Header, r)
		return client.Do(req)
	}
	return v, nil
}

// Open embeds keyway, as configured by the file at configFile, in this
// process: the same store, pepper and routes as the keyway that runs on
// it. Close the Verifier to release the store.
func Open(ctx context.Context, configFile string, logger *slog.Logger) (*Verifier, error) {
	cfg, err := config.Load(configFile)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a, err := app.New(runCtx, cfg, app.Options{Logger: logger, Embedded: true})
	if err != nil {
		stop()
		return nil, fmt.Errorf("verify: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }() // follows the store's change feed
	h := a.Handler()
	v := &Verifier{asked: askedHeaders(cfg.APIKeys.Header), cache: map[[32]byte]cached{}, now: time.Now, close: func() error {
		stop()
		return <-done
	}}
	v.ask = func(r *http.Request) (*http.Response, error) {
		req := httptest.NewRequestWithContext(r.Context(), http.MethodGet, "https://127.0.0.1/.keyway/verify", nil)
		req.RemoteAddr = "127.0.0.1:1"
		v.copyAsked(req.Header, r)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result(), nil
	}
	return v, nil
}

// Close releases what the Verifier holds.
func (v *Verifier) Close() error { return v.close() }

// askedHeaders are the request headers keyway decides on: the
// credentials, the CSRF and WebSocket evidence, and the method and path
// overrides, which keyway refuses unless the route passes them (the
// handler behind the middleware gets the request as it came).
func askedHeaders(keyHeader string) []string {
	h := append([]string{"Authorization", "Cookie", "Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Websocket-Key", "X-Keyway-Csrf"},
		headername.OverrideNames()...)
	if k := http.CanonicalHeaderKey(keyHeader); k != "" && k != "Authorization" {
		h = append(h, k)
	}
	return h
}

// copyAsked describes the original request r on the question to keyway.
func (v *Verifier) copyAsked(h http.Header, r *http.Request) {
	for _, k := range v.asked {
		if vs := r.Header.Values(k); len(vs) > 0 {
			h[k] = vs
		}
	}
	h.Set("X-Forwarded-Method", r.Method)
	h.Set("X-Forwarded-Uri", originalURI(r))
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		h.Set("X-Forwarded-For", host)
	}
}

// originalURI is r's request target as it came, which routers such as
// chi read the path of. Not r.URL.RequestURI(): for a path holding a byte
// Go escapes ("|", "^", a byte above 0x7f) it re-escapes the decoded path,
// and "%2F" would reach keyway as "/".
func originalURI(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// Check asks whether r may pass. It returns the identity, or the answer to
// send back (status, headers, problem body) for a refusal.
func (v *Verifier) Check(r *http.Request) (Identity, *Refusal, error) {
	status, header, body, err := v.decide(r)
	if err != nil {
		return Identity{}, nil, err
	}
	if status != http.StatusOK {
		return Identity{}, &Refusal{Status: status, Header: header, Body: body}, nil
	}
	id := Identity{Subject: header.Get("X-Keyway-Subject"), KeyID: header.Get("X-Keyway-Key-Id"),
		Scopes: strings.Fields(header.Get("X-Keyway-Scopes")), Name: header.Get("X-Keyway-Name"),
		SessionID: header.Get("X-Keyway-Session-Id"), Client: header.Get("X-Keyway-Client"),
		Roles:     strings.Fields(header.Get("X-Keyway-Roles")),
		Assertion: header.Get("X-Keyway-Assertion")}
	return id, nil, nil
}

// Refusal is keyway's answer to a request that may not pass.
type Refusal struct {
	Status int
	Header http.Header
	Body   []byte
}

// refusalHeaders are the answer headers a refused client may see.
var refusalHeaders = []string{"Content-Type", "Www-Authenticate", "Retry-After", "Ratelimit", "Ratelimit-Policy", "X-Request-Id"}

// Write sends the refusal to the client.
func (f *Refusal) Write(w http.ResponseWriter) {
	for _, k := range refusalHeaders {
		if vs := f.Header.Values(k); len(vs) > 0 {
			w.Header()[k] = vs
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(f.Status)
	_, _ = w.Write(f.Body) //nolint:gosec // G705: keyway's own problem+json answer, sent as such with nosniff

}

// decide asks keyway, or the cache.
func (v *Verifier) decide(r *http.Request) (int, http.Header, []byte, error) {
	var key [32]byte
	if v.ttl > 0 {
		key = v.cacheKey(r)
		v.mu.Lock()
		c, ok := v.cache[key]
		v.mu.Unlock()
		if ok && v.now().Before(c.until) {
			return c.status, c.header, c.body, nil
		}
	}
	res, err := v.ask(r)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("verify: ask keyway: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("verify: read keyway's answer: %w", err)
	}
	if v.ttl > 0 && res.StatusCode == http.StatusOK {
		v.mu.Lock()
		if len(v.cache) >= maxCache {
			clear(v.cache)
		}
		v.cache[key] = cached{status: res.StatusCode, header: res.Header, body: body, until: v.now().Add(v.ttl)}
		v.mu.Unlock()
	}
	return res.StatusCode, res.Header, body, nil
}

// cacheKey is a hash of everything keyway decides on: method, path and
// query, the credentials, the CSRF evidence and the client's address.
func (v *Verifier) cacheKey(r *http.Request) [32]byte {
	var b bytes.Buffer
	b.WriteString(r.Method)
	b.WriteByte(0)
	b.WriteString(originalURI(r))
	for _, k := range v.asked {
		b.WriteByte(0)
		b.WriteString(strings.Join(r.Header.Values(k), "\x01"))
	}
	b.WriteByte(0)
	b.WriteString(r.RemoteAddr)
	return sha256.Sum256(b.Bytes())
}

// identityHeaders are keyway's: a client's copy never reaches the handler.
var identityHeaders = []string{"X-Keyway-Subject", "X-Keyway-Key-Id", "X-Keyway-Scopes", "X-Keyway-Name",
	"X-Keyway-Session-Id", "X-Keyway-Client", "X-Keyway-Roles", "X-Keyway-Assertion"}

// Middleware lets through only the requests keyway allows. The handler
// finds the caller with IdentityFrom, and in the X-Keyway-* headers
// (a client's copies removed first). A refusal is keyway's own answer;
// keyway unreachable is 503.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, refusal, err := v.Check(r)
		if err != nil {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"type":"urn:keyway:problem:unavailable","title":"Service Unavailable","status":503}`+"\n")
			return
		}
		if refusal != nil {
			refusal.Write(w)
			return
		}
		r = r.Clone(context.WithValue(r.Context(), identityKey{}, id))
		for k := range r.Header {
			if len(k) > 9 && strings.EqualFold(strings.ReplaceAll(k[:9], "_", "-"), "x-keyway-") {
				delete(r.Header, k)
			}
		}
		// In the order of identityHeaders.
		for i, val := range []string{id.Subject, id.KeyID, strings.Join(id.Scopes, " "), id.Name, id.SessionID, id.Client,
			strings.Join(id.Roles, " "), id.Assertion} {
			if val != "" {
				r.Header[identityHeaders[i]] = []string{val}
			}
		}
		next.ServeHTTP(w, r)
	})
}
