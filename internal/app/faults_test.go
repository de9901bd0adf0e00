package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app/apptest"
)

// resettingUpstream answers /before by resetting the connection before any
// response, and /mid by sending headers and part of the body, then
// resetting.
func resettingUpstream(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	apptest.Must(t, err, "listen")
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				if strings.HasSuffix(req.URL.Path, "/mid") {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
					_, _ = io.WriteString(c, strings.Repeat("x", 1000))
					time.Sleep(50 * time.Millisecond)
				}
				_ = c.(*net.TCPConn).SetLinger(0) // close with RST
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestUpstreamResets: an upstream that resets before answering gives the
// client a 502 and the operator a log line; one that resets mid-body cuts
// the client's response short (never a silently truncated "success") and is
// logged; and no goroutine is left behind either way.
func TestUpstreamResets(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {flaky: {url: %s}}
routes: [{path: /flaky, upstream: flaky, policy: public, rate_limit: {rate: 1000/s}}]
`, resettingUpstream(t)))
	in := apptest.Start(t, cfg)
	c := in.Client()
	call := func(path string) (int, error) {
		res, err := c.Get(in.URL(path))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode, err
	}
	if code, err := call("/flaky/mid"); err == nil {
		t.Fatalf("a response cut by the upstream reached the client whole: %d", code)
	}
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()
	for range 20 {
		if code, err := call("/flaky/before"); err != nil || code != 502 {
			t.Fatalf("an upstream reset before answering: %d %v, want 502", code, err)
		}
		if code, err := call("/flaky/mid"); err == nil {
			t.Fatalf("a response cut by the upstream reached the client whole: %d", code)
		}
	}
	logs := in.Logs()
	if !strings.Contains(logs, "upstream error") {
		t.Errorf("no log line for the reset before an answer:\n%.2000s", logs)
	}
	if !strings.Contains(logs, "upstream answer cut short") { // the direct path's line (ReverseProxy's says "during body copy")
		t.Errorf("no log line for the reset mid-body:\n%.2000s", logs)
	}
	c.CloseIdleConnections()
	var now int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= base+2 {
			return
		}
	}
	t.Fatalf("%d goroutines after 40 resets, %d before: some are left behind", now, base)
}
