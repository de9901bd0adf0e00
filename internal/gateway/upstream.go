package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/keywayhq/keyway/internal/assertion"
)

// UpstreamConfig describes one backend.
type UpstreamConfig struct {
	// Name labels the upstream in logs. Required.
	Name string
	// URL is the base URL, http or https, with an optional base path. Required.
	URL string
	// MaxIdleConns is the keep-alive pool to this upstream. Default 256.
	// (Go's default of 2 idle connections per host throttles a proxy badly.)
	MaxIdleConns int
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration
	// RootCAs verifies an https upstream. Default: the system pool.
	RootCAs *x509.CertPool
	// ClientCertificate, when set, is presented to an https upstream that
	// asks for one (mutual TLS).
	ClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Signer, when set, signs an X-Keyway-Assertion for every request,
	// with Audience as its aud (default: the URL's scheme://host).
	Signer   *assertion.Signer
	Audience string
	// StandardOnly sends every request through httputil.ReverseProxy and
	// http.Transport, never the direct path (see forward.go).
	StandardOnly bool
}

// Upstream is a backend with its own connection pool.
type Upstream struct {
	name      string
	url       *url.URL
	transport http.RoundTripper
	// h1 is the direct path's connection pool (see forward.go); nil sends
	// every request through transport.
	h1       *h1Pool
	signer   *assertion.Signer
	audience string
}

// NewUpstream validates cfg and builds the upstream's transport.
func NewUpstream(cfg UpstreamConfig) (*Upstream, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("upstream %s: url must be http(s)://host[:port][/path] without credentials, query or fragment", cfg.Name)
	}
	if cfg.MaxIdleConns <= 0 {
		cfg.MaxIdleConns = 256
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		// Never take a proxy from the environment: an HTTP_PROXY variable
		// must not silently route authenticated traffic elsewhere.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		MaxIdleConns:           cfg.MaxIdleConns,
		MaxIdleConnsPerHost:    cfg.MaxIdleConns,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.DialTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxAnswerHead,
		// Compression is the client's and the upstream's business; a proxy
		// that asks for gzip itself would have to decode and re-encode.
		DisableCompression: true,
		ForceAttemptHTTP2:  u.Scheme == "https",
		TLSClientConfig: &tls.Config{
			MinVersion:           tls.VersionTLS12,
			RootCAs:              cfg.RootCAs,
			GetClientCertificate: cfg.ClientCertificate,
		},
	}
	if cfg.Audience == "" {
		cfg.Audience = u.Scheme + "://" + u.Host
	}
	// The direct path's address, Host header and TLS name: an
	// internationalised name in its ASCII form, as http.Transport sends it.
	hostname := u.Hostname()
	for i := 0; i < len(hostname); i++ {
		if hostname[i] >= 0x80 {
			if hostname, err = idna.Lookup.ToASCII(hostname); err != nil {
				return nil, fmt.Errorf("upstream %s: host name: %w", cfg.Name, err)
			}
			break
		}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	addr := net.JoinHostPort(hostname, port)
	h1u := *u
	h1u.Host = hostname
	if strings.Contains(hostname, ":") {
		h1u.Host = "[" + hostname + "]"
	}
	if u.Port() != "" {
		h1u.Host = net.JoinHostPort(hostname, port)
	}
	dial := func(ctx context.Context) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }
	if u.Scheme == "https" {
		// The direct path offers HTTP/1.1 alone; sessions are resumed.
		tc := t.TLSClientConfig.Clone()
		tc.ServerName = hostname
		tc.NextProtos = []string{"http/1.1"}
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(64)
		dial = tlsDialer(dialer, addr, tc)
	}
	up := &Upstream{name: cfg.Name, url: u, transport: t, signer: cfg.Signer, audience: cfg.Audience}
	if !cfg.StandardOnly {
		up.h1 = newH1Pool(&h1u, cfg.MaxIdleConns, t.IdleConnTimeout, cfg.DialTimeout, dial)
	}
	return up, nil
}

// Name is the upstream's name.
func (u *Upstream) Name() string { return u.name }

// Close drops idle connections.
func (u *Upstream) Close() {
	if u.h1 != nil {
		u.h1.close()
	}
	if t, ok := u.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}
