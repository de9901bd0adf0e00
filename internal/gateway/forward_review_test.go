package gateway

// Hostile upstream answers and unusual requests, through both forwarding
// paths (forward.go and the standard one): what a third review of the
// direct path checked, and the fixes of what it found.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixedAnswerUpstream answers every request with answer, written as is, and
// keeps the connection open (the next request on it is read and answered
// the same way).
func fixedAnswerUpstream(t *testing.T, answer string) *rawUpstream {
	return newRawUpstream(t, func(c net.Conn, _ int, _ string) { _, _ = io.WriteString(c, answer) })
}

// A status code below 100 ("HTTP/1.1 099", "000", "+99": three characters
// http.ReadResponse accepts) is not an informational answer: skipping it
// as one would read its body as the next answer's head (the direct path
// once did), and giving it to ReverseProxy made WriteHeader panic (no
// answer, no access-log line). Both paths answer 502 and log it.
func TestStatusBelow100IsBadGatewayOnBothPaths(t *testing.T) {
	keys, _ := testKeys(t)
	inner := "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Inner: 1\r\n\r\nsmuggled"
	answer := fmt.Sprintf("HTTP/1.1 099 Weird\r\nContent-Length: %d\r\n\r\n%s", len(inner), inner)
	for _, std := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "standard"}[std], func(t *testing.T) {
			up := fixedAnswerUpstream(t, answer)
			var log syncBuffer
			_, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, &log)
			res, body, err := doRaw(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
			switch {
			case err != nil:
				t.Errorf("the client's connection was dropped (%v); want a 502", err)
			case res.StatusCode != http.StatusBadGateway:
				t.Errorf("the client got %d %q (X-Inner: %q), the body of a %q answer; want a 502",
					res.StatusCode, body, res.Header.Get("X-Inner"), "099")
			}
			deadline := time.Now().Add(time.Second)
			for !strings.Contains(log.String(), `"path":"/pub/x"`) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(log.String(), `"path":"/pub/x"`) {
				t.Errorf("no access-log line")
			}
		})
	}
}

// An upstream answer without a Content-Type goes out without one. net/http's
// server would sniff the first bytes written and send an HTML-looking body
// as "text/html; charset=utf-8", though the upstream said
// X-Content-Type-Options: nosniff: on the direct path for every answer, on
// the standard path for answers with a length.
func TestNoContentTypeIsGuessedForAnAnswer(t *testing.T) {
	keys, _ := testKeys(t)
	const page = "<html><script>alert(document.domain)</script></html>"
	framings := map[string]string{
		"chunked": fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(page), page),
		"length":  fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(page), page),
	}
	for _, name := range []string{"chunked", "length"} {
		for _, std := range []bool{false, true} {
			if std && name == "chunked" {
				continue // no type added (ReverseProxy flushes the head first; a race, so not asserted)
			}
			t.Run(fmt.Sprintf("%s/standard=%v", name, std), func(t *testing.T) {
				up := fixedAnswerUpstream(t, "HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\n"+framings[name])
				_, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, nil)
				res, body, err := doRaw(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
				if err != nil || body != page {
					t.Fatalf("%v %q", err, body)
				}
				if ct, ok := res.Header["Content-Type"]; ok {
					t.Errorf("the upstream sent no Content-Type; the client got %q (nosniff: %q)", ct, res.Header.Get("X-Content-Type-Options"))
				}
			})
		}
	}
}

// The Connection header's tokens are matched by ASCII rules on both paths,
// as ReverseProxy does (textproto.TrimString, Header.Del): a Kelvin sign
// (U+212A) is not a "k", and U+00A0 is not white space. The direct path
// once matched by Unicode rules and removed headers the standard path kept.
func TestConnectionTokensMatchAsReverseProxyMatchesThem(t *testing.T) {
	keys, _ := testKeys(t)
	t.Run("request", func(t *testing.T) {
		up := newRawUpstream(t, answerOK)
		_, _, addrStd := forwardGateway(t, up.url(), keys, true, 2*time.Second, nil)
		_, _, addrDir := forwardGateway(t, up.url(), keys, false, 2*time.Second, nil)
		for _, c := range []string{
			"GET /pub/a HTTP/1.1\nHost: localhost\nX-Kept: 1\nConnection: X-\u212aept\n",
			"GET /pub/a HTTP/1.1\nHost: localhost\nX-Kept: 1\nConnection: \u00a0X-Kept\n",
			"GET /pub/a HTTP/1.1\nHost: localhost\nCookie: a=1\nConnection: Coo\u212aie\n",
		} {
			rawRequest(t, addrStd, c)
			std := up.take()
			rawRequest(t, addrDir, c)
			dir := up.take()
			if len(std) != 1 || len(dir) != 1 {
				t.Fatalf("%d and %d requests", len(std), len(dir))
			}
			if a, b := headLines(std[0]), headLines(dir[0]); !slices.Equal(a, b) {
				t.Errorf("%q:\nstandard path sent\n  %s\ndirect path sent\n  %s", c, strings.Join(a, "\n  "), strings.Join(b, "\n  "))
			}
		}
	})
	t.Run("answer", func(t *testing.T) {
		up := fixedAnswerUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: \u00a0X-A, x-\u212a\r\nX-A: 1\r\nX-K: 1\r\n\r\nhi")
		var got [2]string
		for i, std := range []bool{true, false} {
			_, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, nil)
			res, _, err := doRaw(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
			if err != nil {
				t.Fatal(err)
			}
			got[i] = fmt.Sprintf("X-A=%q X-K=%q", res.Header.Get("X-A"), res.Header.Get("X-K"))
		}
		if got[0] != got[1] {
			t.Errorf("the client got %s on the standard path, %s on the direct one", got[0], got[1])
		}
	})
}

// The answer's X-Request-Id is keyway's alone: an upstream's own, in the
// head or as a trailer, is dropped, not appended to it (a log or client
// that reads the last value would record the upstream's).
func TestUpstreamCannotAddARequestID(t *testing.T) {
	keys, _ := testKeys(t)
	up := fixedAnswerUpstream(t, "HTTP/1.1 200 OK\r\nX-Request-Id: forged\r\nContent-Length: 2\r\n\r\nhi")
	for _, std := range []bool{false, true} {
		_, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, nil)
		res, _, err := doRaw(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
		if err != nil {
			t.Fatal(err)
		}
		if ids := res.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] == "forged" {
			t.Errorf("standard only %v: X-Request-Id %q, want keyway's alone", std, ids)
		}
	}
}

// Hostile framing gives the same result on both paths (status and
// body, or both dropping the client's connection), and whatever the
// upstream sends after the answer (a second answer 20 ms later) never
// reaches the next client.
func TestAnswerFramingOnBothPaths(t *testing.T) {
	keys, _ := testKeys(t)
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
	cases := []struct{ name, method, answer string }{
		{"CL and TE", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"TE and CL short", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"two CL", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi"},
		{"same CL twice", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length:  2\r\nContent-Type: text/plain\r\n\r\nhi"},
		{"CL list", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi"},
		{"CL sign", "GET", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi"},
		{"TE gzip, chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"TE identity", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nhi"},
		{"TE twice", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"TE Chunked case", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\nContent-Type: text/plain\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"chunk ext", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n2;a=\"b\"\r\nhi\r\n0;x\r\n\r\n"},
		{"chunk size bad", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n-2\r\nhi\r\n0\r\n\r\n"},
		{"chunk size huge", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\nfffffffffffffffff\r\nhi\r\n0\r\n\r\n"},
		{"1.0 no length keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Type: text/plain\r\n\r\nhi"},
		{"1.0 TE ignored, CL", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi"},
		{"Connection: CLOSE", "GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: X, CLOSE\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi"},
		{"HEAD with body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
		{"HEAD chunked with body", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"204 with body", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"},
		{"304 chunked", "GET", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"100 with CL", "GET", "HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi"},
		{"HTTP/0.9 line", "GET", "HTTP/0.9 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi"},
		{"space before colon", "GET", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi"},
		{"obs-fold", "GET", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi"},
		{"bare LF", "GET", "HTTP/1.1 200 OK\nContent-Length: 2\nContent-Type: text/plain\n\nhi"},
		{"NUL in value", "GET", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi"},
	}
	describe := func(res *http.Response, body string, err error) string {
		if res == nil || err != nil {
			// The client's connection ended before a whole answer: before
			// its head went out, or after (ReverseProxy's flush of an
			// unknown-length answer's head races with its first read).
			return "failed"
		}
		s := fmt.Sprintf("%d %q", res.StatusCode, body)
		if res.StatusCode == http.StatusBadGateway {
			s = "502"
		}
		return s
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newRawUpstream(t, func(c net.Conn, _ int, head string) {
				if strings.Contains(head, "/victim") {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nvictim")
					return
				}
				_, _ = io.WriteString(c, tc.answer)
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, smuggled)
			})
			var got [2]string
			for i, std := range []bool{true, false} {
				_, _, addr := forwardGateway(t, up.url(), keys, std, time.Second, nil)
				got[i] = describe(doRaw(t, addr, tc.method+" /pub/attacker HTTP/1.1\nHost: localhost\n"))
				time.Sleep(60 * time.Millisecond)
				for range 2 {
					if _, body, err := doRaw(t, addr, "GET /pub/victim HTTP/1.1\nHost: localhost\n"); body != "victim" {
						t.Errorf("standard only %v: the next client got %q (%v)", std, body, err)
					}
				}
			}
			if got[0] != got[1] {
				t.Errorf("standard path: %s; direct path: %s", got[0], got[1])
			}
		})
	}
}

// Hop-by-hop answer headers, keyway's HSTS and cookies, in any
// spelling net/http canonicalises, never reach the client, on either path.
func TestAnswerHopByHopHeadersOnBothPaths(t *testing.T) {
	keys, _ := testKeys(t)
	up := fixedAnswerUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nkeep-alive: 1\r\nUPGRADE: x\r\n"+
		"Proxy-Authenticate: y\r\nProxy-Connection: z\r\nTE: trailers\r\nTrailer: X-T\r\nconnection: X-A\r\nConnection: x-b , X-c\r\n"+
		"X-A: 1\r\nX-B: 2\r\nX-C: 3\r\nstrict-transport-security: max-age=0\r\nSTRICT-TRANSPORT-SECURITY: max-age=0; includeSubDomains\r\n"+
		"alt-svc: h3=\":1\"\r\nset-cookie: __HOST-KEYWAY_SESSION=planted\r\nSet-Cookie: keyway_csrf=planted\r\nX-Kept: yes\r\n\r\nhi")
	for _, std := range []bool{false, true} {
		_, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, nil)
		res, body, err := doRaw(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
		if err != nil || body != "hi" {
			t.Fatal(err, body)
		}
		for _, k := range []string{"Keep-Alive", "Upgrade", "Proxy-Authenticate", "Proxy-Connection", "Te", "Trailer", "Connection",
			"X-A", "X-B", "X-C", "Alt-Svc", "Set-Cookie"} {
			if v, ok := res.Header[k]; ok {
				t.Errorf("standard only %v: %s: %q reached the client", std, k, v)
			}
		}
		if hsts := res.Header.Values("Strict-Transport-Security"); len(hsts) != 1 || hsts[0] != "max-age=31536000" || res.Header.Get("X-Kept") != "yes" {
			t.Errorf("standard only %v: %v", std, res.Header)
		}
	}
}

// Both paths skip any number of 1xx answers within the one 1 MiB bound on
// the answer's head (the standard path's transport does, with no1xx hiding
// the trace; the direct path once refused the sixth).
func TestInformationalAnswersOnBothPaths(t *testing.T) {
	keys, _ := testKeys(t)
	up := fixedAnswerUpstream(t, strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 6)+
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
	var codes [2]int
	for i, std := range []bool{true, false} {
		_, _, addr := forwardGateway(t, up.url(), keys, std, 2*time.Second, nil)
		res, _, err := doRaw(t, addr, "GET /pub/x HTTP/1.1\nHost: localhost\n")
		if err != nil {
			t.Fatal(err)
		}
		codes[i] = res.StatusCode
	}
	if codes[0] != codes[1] {
		t.Errorf("six 103 answers then a 200: %d on the standard path, %d on the direct one", codes[0], codes[1])
	}
}

// Clients that leave mid-answer, answers cut by the route's
// timeout and answers cut by the upstream leave no upstream connection in
// the pool and no goroutine behind, and the next client is served on a
// clean connection.
func TestDirectPathNoLeakAfterAbnormalEnds(t *testing.T) {
	keys, _ := testKeys(t)
	var closed sync.WaitGroup
	up := newRawUpstream(t, func(c net.Conn, _ int, head string) {
		switch {
		case strings.Contains(head, "/leave"), strings.Contains(head, "/slow"):
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
			closed.Add(1)
			defer closed.Done()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Read(make([]byte, 1)) // until keyway closes its side
		case strings.Contains(head, "/cut"):
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc")
			_ = c.Close()
		default:
			answerOK(c, 0, head)
		}
	})
	_, u, addr := forwardGateway(t, up.url(), keys, false, time.Second, nil)
	base := runtime.NumGoroutine()
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET /pub/leave HTTP/1.1\r\nHost: localhost\r\n\r\n")
		_, _ = http.ReadResponse(bufio.NewReader(c), nil)
		_ = c.Close()
		_, _, _ = doRaw(t, addr, "GET /pub/slow HTTP/1.1\nHost: localhost\n")
		_, _, _ = doRaw(t, addr, "GET /pub/cut HTTP/1.1\nHost: localhost\n")
		if _, body, err := doRaw(t, addr, "GET /pub/ok HTTP/1.1\nHost: localhost\n"); body != "{}" {
			t.Fatalf("next client got %q %v", body, err)
		}
	}
	done := make(chan struct{})
	go func() { closed.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("an upstream connection stayed open after its exchange ended abnormally")
	}
	u.h1.mu.Lock()
	idle := len(u.h1.idle)
	u.h1.mu.Unlock()
	if idle > 1 {
		t.Errorf("%d idle connections, want at most the one clean one", idle)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+2 {
		t.Errorf("%d goroutines, %d before", n, base)
	}
}

// Unusual client requests (Expect, HTTP/1.0, Cookie and User-Agent
// edge cases, Connection naming framing and keyway's own headers, raw
// non-ASCII and encoded CR/LF in the target, absolute form) get the same
// status and send the upstream the same head on both paths; encoded line
// breaks stay encoded, and refused targets reach no upstream.
func TestMoreRequestHeadsOnBothPaths(t *testing.T) {
	keys, key := testKeys(t)
	up := newRawUpstream(t, answerOK)
	_, _, addrStd := forwardGateway(t, up.url(), keys, true, 2*time.Second, nil)
	_, _, addrDir := forwardGateway(t, up.url(), keys, false, 2*time.Second, nil)
	for _, c := range []string{
		"GET /pub/a HTTP/1.1\nHost: localhost\nExpect: 100-continue\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nConnection: close\n",
		"GET /pub/a HTTP/1.0\nHost: localhost\n",
		"GET /pub/a HTTP/1.0\nHost: localhost\nTransfer-Encoding: chunked\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nCookie: \nCookie: a=1;;b=2; =x; ;c\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nUser-Agent: \nUser-Agent: x\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nX-E: \n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nTE: Trailers\nConnection: TE\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nAuthorization: Basic x\nAuthorization: Bearer " + key + "\n",
		"GET /pub/a?%zz&a=%41;b HTTP/1.1\nHost: localhost\n",
		"GET /pub/a?\xc3\xa9=\xff HTTP/1.1\nHost: localhost\n",
		"GET /pub/%2e/a HTTP/1.1\nHost: localhost\n",
		"GET /pub/a%00b HTTP/1.1\nHost: localhost\n",
		"GET /pub/a%0d%0aX:%20y HTTP/1.1\nHost: localhost\n",
		"GET /pub/a?x=%0d%0a HTTP/1.1\nHost: localhost\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nX-Obs: a\xffb\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 0\nTransfer-Encoding: identity\n",
		"HEAD /pub/a HTTP/1.1\nHost: localhost\nContent-Length: 0\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nHost: other\n",
		"GET http://localhost/pub/a?q HTTP/1.1\nHost: localhost\n",
		"GET /pub/a HTTP/1.1\nHost: localhost\nConnection: Host, Content-Length, X-Forwarded-For, X-Request-Id, X-Keyway-Subject\n",
	} {
		resStd, _, _ := doRaw(t, addrStd, c)
		std := up.take()
		resDir, _, _ := doRaw(t, addrDir, c)
		dir := up.take()
		if resStd == nil || resDir == nil || resStd.StatusCode != resDir.StatusCode || len(std) != len(dir) {
			t.Errorf("%q: answers %v / %v, %d / %d requests upstream", c, resStd, resDir, len(std), len(dir))
			continue
		}
		for i := range std {
			if a, b := headLines(std[i]), headLines(dir[i]); !slices.Equal(a, b) {
				t.Errorf("%q:\nstandard path sent\n  %s\ndirect path sent\n  %s", c, strings.Join(a, "\n  "), strings.Join(b, "\n  "))
			}
			if strings.Contains(dir[i], "\r\nX: y") || strings.Count(dir[i], "\r\n\r\n") != 1 {
				t.Errorf("%q: injected a line upstream: %q", c, dir[i])
			}
		}
	}
}
