package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/keywayhq/keyway/internal/config"
)

const healthcheckUsage = `Usage: keyway healthcheck [--config FILE | --data-dir DIR] [--url URL] [--ready] [--timeout 5s]

Asks a running keyway whether it is alive (GET /.keyway/healthz) or, with
--ready, whether it can serve (GET /.keyway/readyz: its store answers), over
HTTPS. Exit 0 when it answers 200, 1 otherwise. For a container's
HEALTHCHECK and for scripts: an image without a shell cannot run curl.

The address is the config's listen address (0.0.0.0 and :: mean loopback),
or --url. The certificate is checked against the system's roots and, in
TLS mode local, the data directory's ca.pem; the name is the config's first
host name.
`

// cmdHealthcheck runs `keyway healthcheck`.
func cmdHealthcheck(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stderr, healthcheckUsage)
		return exitUsage
	}
	fs := newFlags("healthcheck", stderr)
	load := dataDirConfig(fs)
	rawURL := fs.String("url", "", "the base URL to ask (default: from the config's listen address)")
	ready := fs.Bool("ready", false, "ask /.keyway/readyz (can it serve) instead of /.keyway/healthz (is it alive)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *timeout <= 0 {
		return exitUsage
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	path := "/.keyway/healthz"
	if *ready {
		path = "/.keyway/readyz"
	}
	status, err := askHealth(cfg, *rawURL, path, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "keyway healthcheck: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "%s: %d %s\n", path, status, http.StatusText(status))
	if status != http.StatusOK {
		return exitError
	}
	return exitOK
}

func askHealth(cfg *config.Config, rawURL, path string, timeout time.Duration) (int, error) {
	name := "localhost"
	if hosts := cfg.HostNames(); len(hosts) > 0 {
		name = hosts[0]
	}
	dial := cfg.Listen
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return 0, fmt.Errorf("--url %q: want https://host:port", rawURL)
		}
		dial = u.Host
		if net.ParseIP(u.Hostname()) == nil {
			name = u.Hostname()
		}
	}
	host, port, err := net.SplitHostPort(dial)
	if err != nil {
		return 0, fmt.Errorf("address %q: %w", dial, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cfg.TLS.Mode == config.TLSLocal {
		if pem, err := os.ReadFile(filepath.Join(cfg.DataDir, "ca.pem")); err == nil {
			roots.AppendCertsFromPEM(pem)
		}
	}
	target := net.JoinHostPort(host, port)
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, target)
		},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(name, port)+path, nil)
	if err != nil {
		return 0, err
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = res.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	return res.StatusCode, nil
}
