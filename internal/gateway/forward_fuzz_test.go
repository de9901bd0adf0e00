package gateway

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDirectPathMatchesStandard sends one request, parsed as net/http's
// server parses it, through a gateway on the direct path and one on the
// standard path, and requires the same answer status and the same request
// upstream (line, headers but for order and the request ID, and body), for
// any method, header names and values, Connection tokens, query, body and
// client (trusted proxy or not). It is what keeps the two paths from
// drifting apart.
func FuzzDirectPathMatchesStandard(f *testing.F) {
	f.Add("X_Keyway_Subject", "admin", "Connection", "x-drop, cookie", "q=1;a=%zz", "Cookie", "__Host-keyway_session=s; a=1", false, uint8(0), "")
	f.Add("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "X-Forwarded-For", "1.2.3.4", "", "Te", "trailers", true, uint8(2), `{"a":1}`)
	f.Add("X-Http-Method-Override", "DELETE", "Authorization", "Bearer kw_live_x", "x=%41", "X-Drop", "1", false, uint8(3), "")
	f.Add("Proxy-Authorization", "Basic eA==", "Keep-Alive", "1", "&&", "User-Agent", "", true, uint8(5), "gone")
	f.Add("X_custom", "1", "Forwarded", "for=1.2.3.4", "a+b=c d", "B3", "1-2-1", false, uint8(4), "x")
	f.Add("Idempotency-Key", "k", "Content-Type", "text/plain", "", "Connection", "content-type", false, uint8(6), "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

	up := newRawUpstream(f, answerOK)
	keys, _ := testKeys(f)
	gStd, _, _ := forwardGateway(f, up.url(), keys, true, 5*time.Second, nil)
	gDir, _, _ := forwardGateway(f, up.url(), keys, false, 5*time.Second, nil)

	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, query, n3, v3 string, trusted bool, method uint8, body string) {
		var raw strings.Builder
		raw.WriteString(methods[int(method)%len(methods)] + " /pub/f")
		if query != "" {
			raw.WriteString("?" + query)
		}
		raw.WriteString(" HTTP/1.1\r\nHost: localhost\r\n")
		for _, kv := range [][2]string{{n1, v1}, {n2, v2}, {n3, v3}} {
			name := strings.ToLower(kv[0])
			if name == "host" || name == "content-length" || name == "transfer-encoding" || name == "expect" {
				continue // framing and routing, not forwarded headers
			}
			raw.WriteString(kv[0] + ": " + kv[1] + "\r\n")
		}
		if body != "" {
			raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
		}
		raw.WriteString("\r\n" + body)
		var heads [2][]string
		var codes [2]int
		for i, g := range []*Gateway{gStd, gDir} {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw.String())))
			if err != nil || strings.ContainsAny(r.RequestURI, " \x00") {
				return // net/http's server refuses it before any handler
			}
			r.RemoteAddr = "127.0.0.1:4321"
			if trusted {
				r.RemoteAddr = "10.0.0.1:4321"
			}
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			codes[i] = w.Code
			for _, h := range up.take() {
				heads[i] = append(heads[i], strings.Join(headLines(h), "\n"))
			}
		}
		if codes[0] != codes[1] {
			t.Fatalf("%q: status %d on the standard path, %d on the direct one", raw.String(), codes[0], codes[1])
		}
		if !slices.Equal(heads[0], heads[1]) {
			t.Fatalf("%q:\nstandard path sent\n%s\ndirect path sent\n%s", raw.String(), heads[0], heads[1])
		}
	})
}
