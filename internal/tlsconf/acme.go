package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ErrHostNotAllowed is returned (wrapped) by ACME.GetCertificate and the
// manager's host policy for a server name outside ACMEConfig.Hosts. Without
// that check anyone could point DNS at keyway and make it request
// certificates for arbitrary names, exhausting the CA's rate limits.
var ErrHostNotAllowed = errors.New("host not in the ACME allowlist")

// ErrInsecureDir reports a directory holding private keys whose mode lets
// group or other users in.
var ErrInsecureDir = errors.New("directory is accessible by group or other users")

// ACMEConfig configures NewACME.
type ACMEConfig struct {
	// Hosts is the allowlist of names certificates may be requested for.
	// Required, non-empty. Each is an exact DNS name with at least two
	// labels, in ASCII (use the xn-- form of internationalised names);
	// wildcards, IP addresses and ports are refused.
	Hosts []string
	// Email is the contact address given to the CA for expiry notices.
	// Optional.
	Email string
	// DirectoryURL is the ACME directory, an https URL. Default: Let's
	// Encrypt production (autocert.DefaultACMEDirectory). Using ACME
	// means accepting the CA's terms of service.
	DirectoryURL string
	// CacheDir holds the ACME account key and every certificate with its
	// private key, as PEM. Required. It is created with mode 0700 if
	// missing; an existing directory with a looser mode is refused
	// (ErrInsecureDir).
	CacheDir string
	// HTTPClient talks to the ACME server. Default: a client with its own
	// transport and timeouts (never http.DefaultClient).
	HTTPClient *http.Client
}

// ACME obtains and renews certificates from an ACME CA (RFC 8555) through
// autocert, for an allowlist of hosts only. It answers tls-alpn-01
// challenges in GetCertificate (with "acme-tls/1" offered through
// NextProtos, which Policy merges) and http-01 challenges through
// HTTPHandler. It is safe for concurrent use.
type ACME struct {
	m     *autocert.Manager
	hosts []string
}

var (
	_ CertSource = (*ACME)(nil)
	_ ALPNSource = (*ACME)(nil)
)

// NewACME validates cfg, prepares the cache directory and returns an ACME
// source. It does not contact the CA: the first certificate is requested
// by the first handshake for each host.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	var problems []error
	hosts, err := acmeHosts(cfg.Hosts)
	if err != nil {
		problems = append(problems, err)
	}
	if cfg.Email != "" {
		if a, err := mail.ParseAddress(cfg.Email); err != nil || a.Address != cfg.Email {
			problems = append(problems, fmt.Errorf("email %q is not a plain address", cfg.Email))
		}
	}
	if cfg.DirectoryURL == "" {
		cfg.DirectoryURL = autocert.DefaultACMEDirectory
	} else if u, err := url.Parse(cfg.DirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
		problems = append(problems, fmt.Errorf("directory url %q is not an https URL", cfg.DirectoryURL))
	}
	if cfg.CacheDir == "" {
		problems = append(problems, errors.New("cache dir is required"))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("acme: %w", errors.Join(problems...))
	}
	if err := ensureStrictDir(cfg.CacheDir); err != nil {
		return nil, fmt.Errorf("acme: cache dir: %w", err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultACMEHTTPClient()
	}

	allowed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		allowed[h] = true
	}
	return &ACME{
		hosts: hosts,
		m: &autocert.Manager{
			Prompt: autocert.AcceptTOS,
			Cache:  autocert.DirCache(cfg.CacheDir),
			// Equivalent to autocert.HostWhitelist, but the error wraps
			// ErrHostNotAllowed so callers can test for it.
			HostPolicy: func(_ context.Context, host string) error {
				if !allowed[strings.TrimSuffix(strings.ToLower(host), ".")] {
					return fmt.Errorf("acme: %q: %w", host, ErrHostNotAllowed)
				}
				return nil
			},
			Email: cfg.Email,
			Client: &acme.Client{
				DirectoryURL: cfg.DirectoryURL,
				HTTPClient:   cfg.HTTPClient,
				UserAgent:    "keyway",
			},
		},
	}, nil
}

// GetCertificate returns the certificate for hello.ServerName, from memory,
// the cache or, the first time, the CA; it also answers tls-alpn-01
// challenges. It fails for an empty ServerName (clients that connect by IP
// address send none), for single-label names, and for names outside the
// allowlist (ErrHostNotAllowed), before any network access.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return a.m.GetCertificate(hello)
}

// NextProtos returns the ALPN protocols autocert needs offered, including
// "acme-tls/1" for tls-alpn-01 (RFC 8737 §3). Policy merges them.
func (a *ACME) NextProtos() []string {
	return slices.Clone(a.m.TLSConfig().NextProtos)
}

// HTTPHandler returns a handler for the plain-HTTP listener (port 80) that
// answers http-01 challenges under /.well-known/acme-challenge/ for
// allowlisted hosts and passes every other request to fallback. If fallback
// is nil, GET and HEAD are redirected to https on port 443 with 302 and
// other methods get 400. Calling it enables http-01; without it only
// tls-alpn-01 is used.
func (a *ACME) HTTPHandler(fallback http.Handler) http.Handler {
	return a.m.HTTPHandler(fallback)
}

// Hosts returns a copy of the normalised allowlist.
func (a *ACME) Hosts() []string { return slices.Clone(a.hosts) }

// acmeHosts normalises and validates the allowlist, reporting every bad
// entry.
func acmeHosts(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("hosts: at least one host is required")
	}
	var out []string
	var problems []error
	for _, raw := range in {
		h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(raw)), ".")
		var why string
		switch {
		case h == "":
			why = "empty"
		case strings.Contains(h, "*"):
			why = "wildcards are not supported (they need a dns-01 challenge)"
		case net.ParseIP(h) != nil:
			why = "IP addresses are not supported"
		case strings.Contains(h, ":") || strings.Contains(h, "/"):
			why = "give a bare host name, without scheme, port or path"
		case !isASCII(h):
			why = "use the ASCII (xn--) form of internationalised names"
		case !strings.Contains(h, "."):
			why = "a single-label name cannot get a public certificate"
		case len(h) > 253 || !allLabelsValid(h):
			why = "not a valid DNS name"
		}
		if why != "" {
			problems = append(problems, fmt.Errorf("hosts: %q: %s", raw, why))
			continue
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out, errors.Join(problems...)
}

func allLabelsValid(h string) bool {
	for label := range strings.SplitSeq(h, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// ensureStrictDir creates dir with mode 0700 if missing and refuses an
// existing one that group or other users may enter (ErrInsecureDir).
func ensureStrictDir(dir string) error {
	fi, err := makeDir(dir)
	if err != nil || fi == nil {
		return err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o, want 0700 (chmod 700 %s): %w",
			dir, fi.Mode().Perm(), dir, ErrInsecureDir)
	}
	return nil
}

// defaultACMEHTTPClient returns a client with its own transport, so that
// nothing else in the process can change how keyway talks to the CA.
func defaultACMEHTTPClient() *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          4,
		},
	}
}
