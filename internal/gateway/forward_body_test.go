package gateway

// Request bodies on both forwarding paths, the Content-Type keyway never
// guesses, the request ID it alone sets and the query under a GODEBUG
// limit: what a fourth review of the direct path checked, and the fixes of
// what it found (a slow upload emptying the pool, a cut body answered 200,
// GODEBUG read otherwise than Go reads it).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func idleConns(u *Upstream) int {
	u.h1.mu.Lock()
	defer u.h1.mu.Unlock()
	return len(u.h1.idle)
}

// A body that takes longer than the route's timeout to arrive (well within
// server.read_timeout: 60 s against a 30 s route timeout by default) is a
// 504 that touches no idle connection. It once made forward take them one
// after the other under the passed deadline, each failing its check and
// closed: one slow client emptied the pool.
func TestSlowUploadKeepsIdleConnections(t *testing.T) {
	keys, _ := testKeys(t)
	up := newRawUpstream(t, func(c net.Conn, n int, head string) {
		if strings.Contains(head, "/warm") {
			time.Sleep(100 * time.Millisecond) // so that four requests take four connections
		}
		answerOK(c, n, head)
	})
	_, u, addr := forwardGateway(t, up.url(), keys, false, time.Second, nil)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			_, _, _ = doRaw(t, addr, "GET /pub/warm HTTP/1.1\nHost: localhost\n")
		}()
	}
	for range 4 {
		<-done
	}
	if n := idleConns(u); n != 4 {
		t.Fatalf("%d idle connections after warming, want 4", n)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_, _ = io.WriteString(c, "POST /pub/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhe")
	time.Sleep(1200 * time.Millisecond) // past the route's timeout
	_, _ = io.WriteString(c, "llo")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status %d, want 504 (as the standard path)", res.StatusCode)
	}
	if n := idleConns(u); n < 3 {
		t.Errorf("one slow upload left %d of the 4 idle upstream connections; want them kept (at most the one it took closed)", n)
	}
}

// A client that sends fewer body bytes than its Content-Length and
// half-closes (it still reads) gets a 400, and nothing is forwarded. It
// once got net/http's empty 200: the short read cancelled the request's
// context, and a "client gone" wrote nothing. A client taken for gone now
// has its connection cut, on both paths, never a 200.
func TestTruncatedBodyIsNotAnsweredOK(t *testing.T) {
	keys, _ := testKeys(t)
	up := newRawUpstream(t, answerOK)
	_, _, addr := forwardGateway(t, up.url(), keys, false, 2*time.Second, nil)
	for i := range 5 {
		res, body, err := sendBody(t, addr, "POST /pub/short HTTP/1.1\nHost: localhost\nContent-Length: 10\n", "abc", true)
		if err == nil && res.StatusCode == http.StatusOK {
			t.Fatalf("attempt %d: a 3-byte body declared as 10 bytes was answered %q with body %q; want an error status or no answer",
				i, res.Status, body)
		}
	}
	if got := up.take(); len(got) != 0 {
		t.Errorf("an incomplete body reached the upstream: %q", got)
	}
}

// With GODEBUG=urlmaxqueryparams=N set by an operator, ReverseProxy encodes
// every query again (cleanQueryParams), and so does the direct path: the
// upstream gets the same target either way (reordered, and without a query
// past the limit). GODEBUG is read as Go reads it (internal/godebug, which
// ReverseProxy and net/url use): entries not trimmed, the last of a name
// winning. "panicnil=0, urlmaxqueryparams=3" sets no limit, and
// "urlmaxqueryparams=3, urlmaxqueryparams=" sets one, on both paths.
func TestQueryLimitParsedAsGoParsesIt(t *testing.T) {
	keys, _ := testKeys(t)
	for _, godebug := range []string{"urlmaxqueryparams=3", "panicnil=0, urlmaxqueryparams=3", "urlmaxqueryparams=3, urlmaxqueryparams="} {
		t.Run(godebug, func(t *testing.T) {
			t.Setenv("GODEBUG", godebug)
			up := newRawUpstream(t, answerOK)
			_, _, addrStd := forwardGateway(t, up.url(), keys, true, 2*time.Second, nil)
			_, _, addrDir := forwardGateway(t, up.url(), keys, false, 2*time.Second, nil)
			const target = "/pub/q?b=2&a=1&c&d=4&e=5"
			rawRequest(t, addrStd, "GET "+target+" HTTP/1.1\nHost: localhost\n")
			std := up.take()
			rawRequest(t, addrDir, "GET "+target+" HTTP/1.1\nHost: localhost\n")
			dir := up.take()
			if len(std) != 1 || len(dir) != 1 {
				t.Fatalf("%d and %d requests", len(std), len(dir))
			}
			a, _, _ := strings.Cut(std[0], "\r\n")
			b, _, _ := strings.Cut(dir[0], "\r\n")
			if a != b {
				t.Errorf("GODEBUG=%q: the standard path sent %q, the direct one %q", godebug, a, b)
			}
		})
	}
}

// Bodies on every method, HTTP/1.0, Connection naming framing
// headers, odd Content-Length spellings, and pipelined requests after a
// body: the same status and the same head and body upstream on both paths.
func TestBodiesSameOnBothPaths(t *testing.T) {
	keys, _ := testKeys(t)
	up := newRawUpstream(t, answerOK)
	_, _, addrStd := forwardGateway(t, up.url(), keys, true, 2*time.Second, nil)
	_, _, addrDir := forwardGateway(t, up.url(), keys, false, 2*time.Second, nil)
	full := strings.Repeat("f", maxDirectBody)
	for _, c := range []struct{ head, body string }{
		{"GET /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\n", "hello"},
		{"HEAD /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\n", "hello"},
		{"DELETE /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\n", "hello"},
		{"OPTIONS /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\n", "hello"},
		{"TRACE /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\n", "hello"},
		{"POST /pub/a HTTP/1.0\nHost: localhost\nContent-Length: 5\n", "hello"},
		{"POST /pub/a HTTP/1.0\nHost: localhost\nContent-Length: 5\nTransfer-Encoding: chunked\n", "hello"},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\nConnection: Content-Length, Content-Type\nContent-Type: a/b\n", "hello"},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 0\n", ""},
		{"PUT /pub/a HTTP/1.1\nHost: localhost\n", ""},
		{"DELETE /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 0\n", ""},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 05\n", "hello"},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\nContent-Length: 5\n", "hello"},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\nContent-Length: 6\n", "hello!"},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\nExpect: \n", "hello"},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 0\nExpect: 100-continue\n", ""},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 5\nTrailer: X-T\nTE: trailers\n", "hello"},
		{"POST /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 32768\nIdempotency-Key: 1\n", full},
	} {
		resStd, _, errS := sendBody(t, addrStd, c.head, c.body, false)
		time.Sleep(20 * time.Millisecond)
		std := up.take()
		resDir, _, errD := sendBody(t, addrDir, c.head, c.body, false)
		time.Sleep(20 * time.Millisecond)
		dir := up.take()
		if resStd == nil || resDir == nil || resStd.StatusCode != resDir.StatusCode || len(std) != len(dir) {
			t.Errorf("%q: answers %v %v / %v %v, %d / %d requests upstream", c.head, resStd, errS, resDir, errD, len(std), len(dir))
			continue
		}
		for i := range std {
			if a, b := headLines(std[i]), headLines(dir[i]); !slices.Equal(a, b) {
				t.Errorf("%q:\nstandard path sent\n  %.300s\ndirect path sent\n  %.300s", c.head, strings.Join(a, "\n  "), strings.Join(b, "\n  "))
			}
		}
	}
}

// Requests pipelined after bodies are read as the client framed them.
func TestPipelinedAfterBodies(t *testing.T) {
	keys, _ := testKeys(t)
	up := newRawUpstream(t, answerOK)
	var got [2][]string
	for i, std := range []bool{true, false} {
		_, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, nil)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "POST /pub/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhelloGET /pub/b HTTP/1.1\r\nHost: localhost\r\n\r\n"+
			"PUT /pub/c HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nxyz")
		br := bufio.NewReader(c)
		for range 3 {
			res, err := http.ReadResponse(br, nil)
			if err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("standard only %v: %v %v", std, res, err)
			}
			_, _ = io.ReadAll(res.Body)
		}
		_ = c.Close()
		for _, h := range up.take() {
			got[i] = append(got[i], strings.Join(headLines(h), " | "))
		}
	}
	if !slices.Equal(got[0], got[1]) || len(got[0]) != 3 {
		t.Errorf("standard path sent\n  %s\ndirect path sent\n  %s", strings.Join(got[0], "\n  "), strings.Join(got[1], "\n  "))
	}
}

// HTTP/2 clients' bodies (with a length; GET and DELETE too) go
// upstream the same on both paths.
func TestHTTP2BodiesSameOnBothPaths(t *testing.T) {
	up := newRawUpstream(t, answerOK)
	keys, _ := testKeys(t)
	var out [2][]string
	for i, std := range []bool{true, false} {
		g, _, _ := forwardGateway(t, up.url(), keys, std, 5*time.Second, nil)
		srv := httptest.NewUnstartedServer(g)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		t.Cleanup(srv.Close)
		c := srv.Client()
		for _, tc := range []struct{ method, body string }{{"POST", "hello"}, {"GET", "hello"}, {"DELETE", "hello"}, {"POST", ""}, {"PUT", strings.Repeat("p", maxDirectBody)}} {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, srv.URL+"/pub/h2", body)
			req.Host = "localhost"
			r, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, r.Body)
			_ = r.Body.Close()
			if r.ProtoMajor != 2 {
				t.Fatal(r.Proto)
			}
			s := fmt.Sprint(r.StatusCode, r.Header["Content-Type"])
			for _, h := range up.take() {
				s += " " + strings.Join(headLines(h), " | ")
			}
			out[i] = append(out[i], s)
		}
	}
	for j := range out[0] {
		if out[0][j] != out[1][j] {
			t.Errorf("standard: %.300s\ndirect:   %.300s", out[0][j], out[1][j])
		}
	}
}

// On loopback: an upstream that answers before reading a 32 KiB
// body and closes it later gives the client its answer on both paths. (An
// upstream that closes at once, with the body unread, resets the
// connection: a race on both paths, 502 now and then on either.)
func TestEarlyAnswerBeforeBody(t *testing.T) {
	keys, _ := testKeys(t)
	body := strings.Repeat("b", maxDirectBody)
	for _, linger := range []time.Duration{300 * time.Millisecond} {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			_ = rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
			return serr
		}}
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer func() { _ = c.Close() }()
					br := bufio.NewReaderSize(c, 16)
					for {
						line, err := br.ReadString('\n')
						if err != nil || line == "\r\n" {
							break
						}
					}
					_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
					time.Sleep(linger)
				}()
			}
		}()
		for _, std := range []bool{true, false} {
			_, _, addr := forwardGateway(t, "http://"+ln.Addr().String(), keys, std, 2*time.Second, nil)
			res, b, err := sendBody(t, addr, fmt.Sprintf("POST /pub/x HTTP/1.1\nHost: localhost\nContent-Length: %d\n", len(body)), body, false)
			if err != nil || res.StatusCode != http.StatusForbidden || b != "nope" {
				t.Errorf("linger %v, standard only %v: %v %q %v", linger, std, res, b, err)
			}
		}
	}
}

// With the nil Content-Type, answers without a type (HEAD, 204, 304,
// a body) get none on either path and for HTTP/1.1 and HTTP/2 clients;
// keyway's own problem answers keep theirs; an upstream's X-Request-Id in
// its header or its (declared or not) trailers never reaches the client.
func TestContentTypeAndRequestIDOnBothPaths(t *testing.T) {
	keys, _ := testKeys(t)
	up := newRawUpstream(t, func(c net.Conn, _ int, head string) {
		switch {
		case strings.Contains(head, "/204"):
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-Request-Id: forged\r\n\r\n")
		case strings.Contains(head, "/304"):
			_, _ = io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nX-Request-Id: forged\r\n\r\n")
		case strings.Contains(head, "/trailer"):
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTrailer: X-Request-Id, Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"6\r\n<html>\r\n0\r\nX-Request-Id: forged\r\nContent-Type: text/html\r\nX-Other: 1\r\n\r\n")
		case strings.Contains(head, "/err"):
			_, _ = io.WriteString(c, "HTTP/1.1 099 X\r\n\r\n")
		default:
			b := "<html><body>x</body></html>"
			if strings.HasPrefix(head, "HEAD ") {
				b = ""
			}
			_, _ = io.WriteString(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Request-Id: forged\r\nContent-Length: 27\r\n\r\n%s", b))
		}
	})
	for _, std := range []bool{true, false} {
		g, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, nil)
		srv := httptest.NewUnstartedServer(g)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		t.Cleanup(srv.Close)
		h2 := srv.Client()
		for _, p := range []string{"GET /pub/a", "HEAD /pub/a", "POST /pub/a", "GET /pub/204", "GET /pub/304", "GET /pub/trailer", "POST /pub/err"} {
			method, path, _ := strings.Cut(p, " ")
			head := method + " " + path + " HTTP/1.1\nHost: localhost\n"
			body := ""
			if method == "POST" {
				head += "Content-Length: 3\n"
				body = "abc"
			}
			res, _, err := sendBody(t, addr, head, body, false)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
			req.Host = "localhost"
			res2, err := h2.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			_, _ = io.Copy(io.Discard, res2.Body)
			_ = res2.Body.Close()
			for _, r := range []*http.Response{res, res2} {
				wantCT := ""
				if path == "/pub/err" {
					wantCT = "application/problem+json"
				}
				if got := r.Header.Get("Content-Type"); got != wantCT {
					t.Errorf("standard only %v, %s %s: Content-Type %q, want %q", std, r.Proto, p, got, wantCT)
				}
				ids := append(r.Header.Values("X-Request-Id"), r.Trailer.Values("X-Request-Id")...)
				if slices.Contains(ids, "forged") {
					t.Errorf("standard only %v, %s %s: X-Request-Id %q", std, r.Proto, p, ids)
				}
				if r.Trailer.Get("Content-Type") != "" {
					t.Errorf("standard only %v, %s %s: a Content-Type trailer %q", std, r.Proto, p, r.Trailer.Get("Content-Type"))
				}
			}
		}
	}
}
