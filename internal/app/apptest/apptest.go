// Package apptest starts a real keyway (internal/app) for end-to-end tests:
// real TLS on loopback, a real SQLite file in t.TempDir(), the real
// listeners on port 0, and a log buffer the test can search.
package apptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/config"
)

// Instance is a running keyway.
type Instance struct {
	App  *app.App
	logs *syncBuffer
	stop context.CancelFunc
	done chan struct{} // closed when Run returns
	err  error         // what Run returned
}

// Start runs cfg with every listener on 127.0.0.1:0 and DataDir in a
// temporary directory, and stops it when the test ends.
func Start(t testing.TB, cfg *config.Config) *Instance {
	t.Helper()
	if cfg.Listen == "" || cfg.Listen == config.Default().Listen {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.HTTPListen != config.ListenOff {
		cfg.HTTPListen = "127.0.0.1:0"
	}
	cfg.AdminListen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	logger := app.NewLogger(logs, "json", "debug")
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.Options{Logger: logger, LogWriter: logs, Version: "test"})
	if err != nil {
		cancel()
		t.Fatalf("app.New: %v", err)
	}
	in := &Instance{App: a, logs: logs, stop: cancel, done: make(chan struct{})}
	go func() {
		in.err = a.Run(ctx)
		close(in.done)
	}()
	t.Cleanup(func() { in.Stop(t) })
	return in
}

// Stop shuts the instance down and waits for Run to return.
func (in *Instance) Stop(t testing.TB) {
	t.Helper()
	in.stop()
	select {
	case <-in.done:
		if in.err != nil {
			t.Errorf("Run: %v", in.err)
		}
	case <-time.After(time.Minute):
		t.Error("keyway did not stop within a minute")
	}
}

// Wait waits for Run to return and returns its error.
func (in *Instance) Wait() error {
	<-in.done
	return in.err
}

// Shutdown begins a graceful shutdown, as SIGTERM does, without waiting.
func (in *Instance) Shutdown() { in.stop() }

// Logs returns every log line written so far.
func (in *Instance) Logs() string { return in.logs.String() }

// URL returns the https URL of path on the gateway, named as localhost.
func (in *Instance) URL(path string) string {
	_, port, _ := net.SplitHostPort(in.App.Addr("https"))
	return "https://localhost:" + port + path
}

// Client returns an HTTP client that trusts the instance's local CA and
// resolves localhost to the listener.
func (in *Instance) Client() *http.Client {
	return &http.Client{
		Transport: in.Transport(nil),
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// HTTP1Client is Client without HTTP/2, for tests of HTTP/1.1 framing
// (hop-by-hop headers, header size limits).
func (in *Instance) HTTP1Client() *http.Client {
	c := in.Client()
	tr := in.Transport(func(tc *tls.Config) { tc.NextProtos = []string{"http/1.1"} })
	tr.ForceAttemptHTTP2 = false
	c.Transport = tr
	return c
}

// Transport returns a transport trusting the local CA; tweak, when not nil,
// adjusts its TLS config.
func (in *Instance) Transport(tweak func(*tls.Config)) *http.Transport {
	tc := &tls.Config{RootCAs: in.App.CAPool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if tweak != nil {
		tweak(tc)
	}
	addr := in.App.Addr("https")
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		TLSClientConfig: tc,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: true,
	}
}

// Config writes yaml (with "{{data}}" replaced by a temporary data dir) to a
// file and loads it as `keyway serve --config` would.
func Config(t testing.TB, yaml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	yaml = strings.ReplaceAll(yaml, "{{data}}", filepath.Join(dir, "data"))
	file := filepath.Join(dir, "keyway.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return cfg
}

// Demo returns the demo config with its data dir in a temporary directory.
func Demo(t testing.TB) *config.Config {
	cfg := config.Demo()
	cfg.SetDataDir(filepath.Join(t.TempDir(), "data"))
	return cfg
}

// Echoed is what the Echo upstream saw of a request.
type Echoed struct {
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	RawPath string      `json:"raw_path"`
	Query   string      `json:"query"`
	Host    string      `json:"host"`
	Header  http.Header `json:"header"`
	BodyLen int         `json:"body_len"`
}

// Echo starts an upstream on 127.0.0.1 that answers every request with the
// JSON of what it received. A path ending in /slow sleeps for delay first.
// It returns the base URL.
func Echo(t testing.TB, delay time.Duration) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		n, _ := io.Copy(io.Discard, r.Body)
		e := Echoed{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery,
			Host: r.Host, Header: r.Header, BodyLen: int(n)}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "upstream=1; Path=/")
		w.Header().Set("Strict-Transport-Security", "max-age=5")
		_ = json.NewEncoder(w).Encode(e)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// DecodeEcho reads an Echo answer.
func DecodeEcho(t testing.TB, res *http.Response) Echoed {
	t.Helper()
	defer func() { _ = res.Body.Close() }()
	var e Echoed
	body, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not an echo (status %d): %s", res.StatusCode, body)
	}
	return e
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Must fails t on err.
func Must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
