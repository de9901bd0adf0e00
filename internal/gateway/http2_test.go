package gateway

// keyway's TLS listener as an HTTP/2 client sees it, from an adversarial
// review: what an HTTP/2 client can send that an HTTP/1.1 client cannot
// (split cookie fields, :authority beside a host field, request
// trailers, extended CONNECT, :path forms, a content-length that
// disagrees with the DATA frames), and what comes back over HTTP/2 on
// shaped routes (trailers, HEAD). Each test asserts the secure behaviour.
// The client is a raw framer, so that nothing a well-behaved HTTP/2
// client library would refuse to send is left untried.

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/shape"
)

// h2Seen is one request as the upstream read it.
type h2Seen struct {
	method, uri, host string
	header, trailer   http.Header
	body              string
}

// h2Upstream records what reaches it and answers with answer (or {}).
type h2Upstream struct {
	mu     sync.Mutex
	seen   []h2Seen
	answer http.HandlerFunc
}

func (u *h2Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.seen = append(u.seen, h2Seen{method: r.Method, uri: r.RequestURI, host: r.Host, header: r.Header.Clone(),
		trailer: r.Trailer.Clone(), body: string(b)})
	answer := u.answer
	u.mu.Unlock()
	if answer != nil {
		answer(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}")
}

// take returns what reached the upstream so far and forgets it.
func (u *h2Upstream) take() []h2Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

// h2ReviewGateway serves keyway over TLS with HTTP/2 offered by ALPN, for
// the host "localhost" only, trusting no proxy:
//
//	/pub    public, GET HEAD POST PUT
//	/key    api_key (scope t), GET POST (the partner's key; not shaped)
//	/me     session, GET HEAD POST; the web profile denies billing, internal_notes
//	/plain  session, GET POST (not shaped)
//	/live   session, GET, WebSocket
//	/hist   api_key, GET HEAD; the partner allows city, days[].date
//
// std sends everything through the standard path. It returns the
// gateway's address, the partner's key and the upstream.
func h2ReviewGateway(t *testing.T, std bool) (string, string, *h2Upstream) {
	t.Helper()
	rec := &h2Upstream{}
	upSrv := httptest.NewServer(rec)
	t.Cleanup(upSrv.Close)
	keys, raw := testKeys(t)
	keys.v.Key.Client = "partner"
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	t.Cleanup(lim.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	webRoutes := map[string][]string{"me": {"GET", "HEAD", "POST"}, "plain": nil, "live": {"GET"}}
	partnerRoutes := map[string][]string{"hist": nil, "key": nil}
	core, err := decision.New(decision.Config{Keys: keys, KeyLimiter: lim, Sessions: reviewSessions{}, Users: reviewUsers{},
		Origins: []string{reviewOrigin}, Logger: logger, Clients: []decision.Client{
			{Name: "web", Credential: decision.Session, Routes: webRoutes, CORSOrigins: []string{bffAppOrigin}},
			{Name: "partner", Credential: decision.APIKey, Routes: partnerRoutes},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(core.Close)
	upstream, err := NewUpstream(UpstreamConfig{Name: "up", URL: upSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	deny, _ := shape.Deny([]string{"billing", "internal_notes"})
	allow, _ := shape.Allow([]string{"city", "days[].date"})
	r := func(name string, methods []string, p decision.Policy) Route {
		return Route{Name: name, Prefix: "/" + name, Methods: methods, Upstream: upstream, Policy: p, MaxBody: 1 << 20,
			Timeout: 5 * time.Second}
	}
	live := r("live", []string{"GET"}, decision.Session)
	live.WebSocket, live.TunnelLifetime = true, time.Minute
	key := r("key", []string{"GET", "POST"}, decision.APIKey)
	key.Scopes = []string{"t"}
	hist := r("hist", []string{"GET", "HEAD"}, decision.APIKey)
	hist.Scopes = []string{"t"}
	g, err := New(Config{
		Routes: []Route{r("pub", []string{"GET", "HEAD", "POST", "PUT"}, decision.Public), key,
			r("me", []string{"GET", "HEAD", "POST"}, decision.Session), r("plain", []string{"GET", "POST"}, decision.Session), live, hist},
		Clients: []Client{
			{Name: "web", Session: true, Routes: webRoutes, CORSOrigins: []string{bffAppOrigin}, CORSMaxAge: time.Minute,
				Fields: map[string]*shape.Rule{"me": deny}, MaxShapedBody: 1 << 16},
			{Name: "partner", Routes: partnerRoutes, Fields: map[string]*shape.Rule{"hist": allow}, MaxShapedBody: 1 << 16},
		},
		Own: http.NotFoundHandler(), Decider: core, HSTSMaxAge: 365 * 24 * time.Hour, Logger: logger,
		Hosts: NewHosts([]string{"localhost"}), ClientIP: clientip.New(nil, 64), StandardProxyOnly: std,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(g)
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); g.Close(); upstream.Close() })
	return srv.Listener.Addr().String(), raw, rec
}

// h2Request is what the raw client sends on stream 1: the header block,
// DATA frames, and an optional trailer block that ends the stream.
type h2Request struct {
	fields  [][2]string
	data    []string
	trailer [][2]string
}

// h2Answer is what came back on stream 1; status 0 means the stream was
// reset or the connection ended before an answer.
type h2Answer struct {
	status  int
	header  http.Header
	body    string
	trailer http.Header
}

// h2Fields is a request's header block: pseudo-headers for localhost,
// then the given pairs.
func h2Fields(method, path string, extra ...string) [][2]string {
	f := [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}}
	for i := 0; i+1 < len(extra); i += 2 {
		f = append(f, [2]string{extra[i], extra[i+1]})
	}
	return f
}

// h2Do sends rq on a new HTTP/2 connection and reads stream 1's answer.
func h2Do(t *testing.T, addr string, rq h2Request) h2Answer {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"},
		MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(1<<20, nil)
	fr.MaxHeaderListSize = 1 << 20
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	block := func(fields [][2]string) []byte {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for _, f := range fields {
			if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
				t.Fatal(err)
			}
		}
		return b.Bytes()
	}
	noBody := len(rq.data) == 0 && len(rq.trailer) == 0
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(rq.fields), EndHeaders: true,
		EndStream: noBody}); err != nil {
		t.Fatal(err)
	}
	for i, d := range rq.data {
		if err := fr.WriteData(1, i == len(rq.data)-1 && len(rq.trailer) == 0, []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	if len(rq.trailer) > 0 {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(rq.trailer), EndHeaders: true,
			EndStream: true}); err != nil {
			t.Fatal(err)
		}
	}
	var a h2Answer
	var body strings.Builder
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return h2Answer{} // the connection ended
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			h := make(http.Header)
			for _, hf := range f.RegularFields() {
				h.Add(hf.Name, hf.Value)
			}
			switch {
			case a.header == nil && f.PseudoValue("status") != "":
				n, _ := strconv.Atoi(f.PseudoValue("status"))
				if n < 200 {
					continue // informational
				}
				a.status, a.header = n, h
			default:
				a.trailer = h
			}
			if f.StreamEnded() {
				a.body = body.String()
				return a
			}
		case *http2.DataFrame:
			if f.StreamID != 1 {
				continue
			}
			body.Write(f.Data())
			if n := len(f.Data()); n > 0 {
				_ = fr.WriteWindowUpdate(0, uint32(n))
				_ = fr.WriteWindowUpdate(1, uint32(n))
			}
			if f.StreamEnded() {
				a.body = body.String()
				return a
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return h2Answer{}
			}
		case *http2.GoAwayFrame:
			if a.status == 0 {
				return h2Answer{}
			}
		}
	}
}

// forBoth runs f against a gateway on the direct path and on the standard one.
func forBoth(t *testing.T, f func(t *testing.T, addr, key string, up *h2Upstream)) {
	for _, std := range []bool{false, true} {
		name := "direct"
		if std {
			name = "standard"
		}
		t.Run(name, func(t *testing.T) {
			addr, key, up := h2ReviewGateway(t, std)
			f(t, addr, key, up)
		})
	}
}

// mentions reports the header names in h whose values hold s.
func mentions(h http.Header, s string) []string {
	var names []string
	for k, vv := range h {
		for _, v := range vv {
			if strings.Contains(v, s) {
				names = append(names, k)
			}
		}
	}
	return names
}

// TestHTTP2SplitCookieFields: HTTP/2 clients send each cookie in a
// field of its own (RFC 9113 §8.2.3). The session is read from the joined
// fields, a second session cookie in another field means no session, and
// the upstream never gets keyway's cookie, whichever field held it.
func TestHTTP2SplitCookieFields(t *testing.T) {
	forBoth(t, func(t *testing.T, addr, _ string, up *h2Upstream) {
		a := h2Do(t, addr, h2Request{fields: h2Fields("GET", "/plain/x", "cookie", "a=1", "cookie", bffCookie, "cookie", "b=2")})
		if a.status != http.StatusOK {
			t.Fatalf("session in the second of three cookie fields: %d %q", a.status, a.body)
		}
		seen := up.take()
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d requests", len(seen))
		}
		if got := seen[0].header.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
			t.Errorf("upstream Cookie %q, want [\"a=1; b=2\"]", got)
		}
		if n := mentions(seen[0].header, "tok"); len(n) > 0 {
			t.Errorf("the session token reached the upstream in %v", n)
		}
		if s := seen[0].header.Get("X-Keyway-Subject"); s != "user:usr_pia" {
			t.Errorf("X-Keyway-Subject %q", s)
		}

		// A second session cookie, each in its own field: no session.
		a = h2Do(t, addr, h2Request{fields: h2Fields("GET", "/plain/x", "cookie", bffCookie, "cookie", "__Host-keyway_session=other")})
		if a.status != http.StatusUnauthorized {
			t.Errorf("two session cookies in two fields: %d, want 401", a.status)
		}
		// The same cookie twice in two fields: still two, no session.
		a = h2Do(t, addr, h2Request{fields: h2Fields("GET", "/plain/x", "cookie", bffCookie, "cookie", bffCookie)})
		if a.status != http.StatusUnauthorized {
			t.Errorf("the session cookie twice in two fields: %d, want 401", a.status)
		}
		// Keyway's cookie on a public route, in its own field and in odd
		// spellings: never passed on.
		a = h2Do(t, addr, h2Request{fields: h2Fields("GET", "/pub/x", "cookie", "a=1", "cookie", bffCookie,
			"cookie", "__HOST-KEYWAY_SESSION=tok2", "cookie", " keyway_x=tok3 ", "cookie", "__Secure-keyway_y=tok4;c=3")})
		if a.status != http.StatusOK {
			t.Fatalf("public route with cookies: %d", a.status)
		}
		for _, s := range up.take() {
			if n := mentions(s.header, "tok"); len(n) > 0 {
				t.Errorf("a keyway cookie reached the upstream on a public route: %v %q", n, s.header.Values("Cookie"))
			}
		}
		if rest := up.take(); len(rest) != 0 {
			t.Errorf("the refused requests reached the upstream: %d", len(rest))
		}
	})
}

// TestHTTP2AuthorityAndHostField: an HTTP/2 request names its host in
// :authority, and may carry a host field as well (which net/http keeps in
// the request's header map). keyway checks :authority, and the upstream
// gets neither the client's host field nor a name keyway did not check.
func TestHTTP2AuthorityAndHostField(t *testing.T) {
	forBoth(t, func(t *testing.T, addr, _ string, up *h2Upstream) {
		a := h2Do(t, addr, h2Request{fields: h2Fields("GET", "/pub/x", "host", "evil.example")})
		if a.status == http.StatusOK {
			seen := up.take()
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests", len(seen))
			}
			if n := mentions(seen[0].header, "evil"); len(n) > 0 || strings.Contains(seen[0].host, "evil") {
				t.Errorf("the client's host field reached the upstream: Host %q, headers %v", seen[0].host, n)
			}
			if h := seen[0].header.Get("X-Forwarded-Host"); h != "localhost" {
				t.Errorf("X-Forwarded-Host %q, want localhost", h)
			}
		} else if a.status != 0 && a.status != http.StatusBadRequest && a.status != http.StatusMisdirectedRequest {
			t.Errorf("a host field beside :authority: %d", a.status)
		}
		// A foreign :authority with keyway's name in the host field.
		fields := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "evil.example"}, {":path", "/pub/x"},
			{"host", "localhost"}}
		if a := h2Do(t, addr, h2Request{fields: fields}); a.status != http.StatusMisdirectedRequest && a.status != 0 {
			t.Errorf("foreign :authority, keyway's host field: %d, want 421", a.status)
		}
		// No :authority, a foreign host field.
		fields = [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/pub/x"}, {"host", "evil.example"}}
		if a := h2Do(t, addr, h2Request{fields: fields}); a.status != http.StatusMisdirectedRequest && a.status != 0 {
			t.Errorf("no :authority, a foreign host field: %d, want 421", a.status)
		}
		// :authority with userinfo.
		fields = [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost@evil.example"}, {":path", "/pub/x"}}
		if a := h2Do(t, addr, h2Request{fields: fields}); a.status == http.StatusOK {
			t.Errorf(":authority with userinfo: %d", a.status)
		}
		// An absolute URL in :path naming another host: the host keyway
		// checked is the one the upstream is told of.
		a = h2Do(t, addr, h2Request{fields: h2Fields("GET", "https://evil.example/pub/x")})
		if a.status == http.StatusOK {
			for _, s := range up.take() {
				if n := mentions(s.header, "evil"); len(n) > 0 || strings.Contains(s.uri, "evil") || strings.Contains(s.host, "evil") {
					t.Errorf("an absolute :path's host reached the upstream: %q %q %v", s.uri, s.host, n)
				}
			}
		}
		if rest := up.take(); len(rest) != 0 {
			t.Errorf("the refused requests reached the upstream: %d", len(rest))
		}
	})
}

// TestHTTP2RequestTrailers: an HTTP/2 request can end in a trailer
// block, which net/http's server copies to Request.Trailer for the names
// its Trailer field declared. No request trailer reaches the upstream,
// neither its value nor its declared name, on either path, with a body of
// known length (direct path) or without one.
func TestHTTP2RequestTrailers(t *testing.T) {
	const forged = "user:usr_forged"
	declared := "x-keyway-subject, x-keyway-roles, x-keyway-client, x-forwarded-for, x-real-ip, x-request-id, x_keyway_subject, cookie, traceparent"
	trailer := [][2]string{{"x-keyway-subject", forged}, {"x-keyway-roles", forged}, {"x-keyway-client", forged},
		{"x-forwarded-for", forged}, {"x-real-ip", forged}, {"x-request-id", forged}, {"x_keyway_subject", forged},
		{"cookie", "__Host-keyway_session=" + forged}, {"traceparent", forged}}
	forBoth(t, func(t *testing.T, addr, key string, up *h2Upstream) {
		for _, tc := range []struct {
			name   string
			fields [][2]string
		}{
			{"public, known length", h2Fields("POST", "/pub/x", "trailer", declared, "content-length", "4")},
			{"public, unknown length", h2Fields("POST", "/pub/x", "trailer", declared)},
			{"api_key, known length", h2Fields("POST", "/key/x", "trailer", declared, "content-length", "4", "authorization", "Bearer "+key)},
			{"api_key, unknown length", h2Fields("POST", "/key/x", "trailer", declared, "authorization", "Bearer "+key)},
			{"session, known length", h2Fields("POST", "/plain/x", "trailer", declared, "content-length", "4", "cookie", bffCookie,
				"x-keyway-csrf", "1")},
			{"session, unknown length", h2Fields("POST", "/plain/x", "trailer", declared, "cookie", bffCookie, "x-keyway-csrf", "1")},
		} {
			a := h2Do(t, addr, h2Request{fields: tc.fields, data: []string{"body"}, trailer: trailer})
			seen := up.take()
			for _, s := range seen {
				t.Logf("%s: %d; upstream trailer %v, Trailer field %q", tc.name, a.status, s.trailer, s.header.Values("Trailer"))
			}
			if a.status != 0 && a.status != http.StatusOK {
				t.Errorf("%s: %d %q", tc.name, a.status, a.body)
			}
			for _, s := range seen {
				if n := mentions(s.header, "forged"); len(n) > 0 {
					t.Errorf("%s: forged values in the upstream's headers: %v", tc.name, n)
				}
				if n := mentions(s.trailer, "forged"); len(n) > 0 {
					t.Errorf("%s: forged values in the upstream's trailers: %v", tc.name, n)
				}
				// Not even the names: request trailers are never forwarded.
				if len(s.trailer) != 0 || len(s.header.Values("Trailer")) != 0 {
					t.Errorf("%s: the upstream was told of trailers %v (Trailer field %q)", tc.name, s.trailer, s.header.Values("Trailer"))
				}
				if s.body != "body" {
					t.Errorf("%s: upstream body %q", tc.name, s.body)
				}
			}
		}
	})
}

// TestHTTP2ExtendedConnect: RFC 8441 WebSockets over HTTP/2 (CONNECT
// with :protocol) and plain CONNECT never open a tunnel past keyway's
// WebSocket rules (Origin check, websocket routes only, not on shaped
// routes): they are refused and reach no upstream.
func TestHTTP2ExtendedConnect(t *testing.T) {
	addr, key, up := h2ReviewGateway(t, false)
	for _, tc := range []struct {
		name   string
		fields [][2]string
	}{
		{"websocket route, cross-site Origin", h2Fields("CONNECT", "/live/x", ":protocol", "websocket", "cookie", bffCookie,
			"origin", "https://evil.example", "sec-websocket-version", "13")},
		{"websocket route, own Origin", h2Fields("CONNECT", "/live/x", ":protocol", "websocket", "cookie", bffCookie,
			"origin", reviewOrigin, "sec-websocket-version", "13")},
		{"not a websocket route", h2Fields("CONNECT", "/pub/x", ":protocol", "websocket", "sec-websocket-version", "13")},
		{"shaped route", h2Fields("CONNECT", "/me/x", ":protocol", "websocket", "cookie", bffCookie, "origin", reviewOrigin,
			"sec-websocket-version", "13")},
		{"other protocol", h2Fields("CONNECT", "/pub/x", ":protocol", "h2c")},
		{"api key route", h2Fields("CONNECT", "/key/x", ":protocol", "websocket", "authorization", "Bearer "+key)},
		{"plain CONNECT", [][2]string{{":method", "CONNECT"}, {":authority", "localhost:443"}}},
		{"plain CONNECT to another host", [][2]string{{":method", "CONNECT"}, {":authority", "127.0.0.1:22"}}},
	} {
		a := h2Do(t, addr, h2Request{fields: tc.fields})
		t.Logf("%s: %d", tc.name, a.status)
		if a.status != 0 && (a.status < 400 || a.status > 499) {
			t.Errorf("%s: %d %q, want a 4xx or a reset", tc.name, a.status, a.body)
		}
		if seen := up.take(); len(seen) != 0 {
			t.Errorf("%s: reached the upstream as %s %s", tc.name, seen[0].method, seen[0].uri)
		}
	}
	// An Upgrade field is connection-specific in HTTP/2: refused, so no
	// HTTP/1.1 style handshake either.
	a := h2Do(t, addr, h2Request{fields: h2Fields("GET", "/live/x", "upgrade", "websocket", "cookie", bffCookie,
		"origin", "https://evil.example", "sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version", "13")})
	if a.status != 0 && (a.status < 400 || a.status > 499) {
		t.Errorf("upgrade field over HTTP/2: %d", a.status)
	}
	if seen := up.take(); len(seen) != 0 {
		t.Errorf("an HTTP/2 upgrade field reached the upstream")
	}
}

// TestHTTP2PathForms: :path spellings HTTP/1.1 clients rarely send
// (an absolute URL, dot segments, empty segments, a fragment) are
// decided and forwarded as one path: an api_key route's path reached
// through them asks for the key, and the path the upstream gets is the
// normalised one.
func TestHTTP2PathForms(t *testing.T) {
	forBoth(t, func(t *testing.T, addr, _ string, up *h2Upstream) {
		for _, tc := range []struct {
			path string
			want int    // status; 0: refused (400 or reset)
			uri  string // what the upstream gets on a 200
		}{
			{"//pub//a/./b/", 200, "/pub/a/b/"},
			{"/pub/a/../../key/x", 401, ""},
			{"/pub/%2e%2e/key/x", 401, ""},
			{"/pub/a#/../../key/x", 401, ""},
			{"/pub/a%23/../../key/x", 401, ""},
			{"https://localhost/pub/../key/x", 401, ""},
			{"https://localhost//pub/a", 200, "/pub/a"},
			{"/pub/a?x=1#frag", 200, ""},
			{"/pub/%2fkey", 0, ""},
			{"/pub/a\\..\\..\\key", 0, ""},
			{"/pub/a;/../../key/x", 0, ""},
			{"pub/a", 0, ""},
			{"*", 0, ""},
			{"/.keyway/../pub/a", 200, "/pub/a"},
			{"/pub/a/%2e%2e/%2e%2e/.keyway/x", 404, ""},
		} {
			a := h2Do(t, addr, h2Request{fields: h2Fields("GET", tc.path)})
			seen := up.take()
			t.Logf(":path %q: %d, upstream %d", tc.path, a.status, len(seen))
			switch {
			case tc.want == 0 && a.status != 0 && a.status != http.StatusBadRequest:
				t.Errorf(":path %q: %d, want 400 or a reset", tc.path, a.status)
			case tc.want != 0 && a.status != tc.want:
				t.Errorf(":path %q: %d, want %d", tc.path, a.status, tc.want)
			}
			if a.status != http.StatusOK && len(seen) != 0 {
				t.Errorf(":path %q: answered %d but reached the upstream as %q", tc.path, a.status, seen[0].uri)
			}
			if a.status == http.StatusOK && tc.uri != "" && (len(seen) != 1 || seen[0].uri != tc.uri) {
				t.Errorf(":path %q: the upstream got %v, want %q", tc.path, seen, tc.uri)
			}
		}
	})
}

// TestHTTP2ContentLengthAndData: on the direct path the body is read
// whole under the request's content-length; HTTP/2 lets DATA frames
// disagree with it. A body shorter than declared is never forwarded, a
// longer one never past the declared length, and a content-length field
// that does not parse never lets a body through under some other length.
func TestHTTP2ContentLengthAndData(t *testing.T) {
	forBoth(t, func(t *testing.T, addr, _ string, up *h2Upstream) {
		for _, tc := range []struct {
			name string
			cl   []string
			data []string
		}{
			{"shorter", []string{"10"}, []string{"abc"}},
			{"longer, one frame", []string{"3"}, []string{"abcdef"}},
			{"longer, second frame", []string{"3"}, []string{"abc", "GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n"}},
			{"two lengths", []string{"3", "40"}, []string{"abc", "GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n"}},
			{"signed", []string{"+3"}, []string{"abc"}},
			{"not a number", []string{"3x"}, []string{"abc"}},
			{"list", []string{"3, 3"}, []string{"abc"}},
		} {
			fields := h2Fields("POST", "/pub/x")
			for _, v := range tc.cl {
				fields = append(fields, [2]string{"content-length", v})
			}
			a := h2Do(t, addr, h2Request{fields: fields, data: tc.data})
			seen := up.take()
			t.Logf("%s: %d, upstream read %d request(s)", tc.name, a.status, len(seen))
			for _, s := range seen {
				if s.body != "abc" && s.body != "" {
					t.Errorf("%s: answered %d, the upstream read body %q", tc.name, a.status, s.body)
				}
				if cl := s.header.Values("Content-Length"); len(cl) > 1 {
					t.Errorf("%s: upstream Content-Length %q", tc.name, cl)
				}
			}
			if tc.name == "shorter" && a.status == http.StatusOK {
				t.Errorf("%s: a body shorter than its content-length answered 200", tc.name)
			}
		}
	})
}

// TestHTTP2ForwardingHeaders: an untrusted HTTP/2 client's forwarding
// and identity headers, in lower case as HTTP/2 carries them and with
// underscores, never reach the upstream; keyway's own are set.
func TestHTTP2ForwardingHeaders(t *testing.T) {
	const forged = "203.0.113.66"
	forBoth(t, func(t *testing.T, addr, _ string, up *h2Upstream) {
		a := h2Do(t, addr, h2Request{fields: h2Fields("GET", "/pub/x", "x-forwarded-for", forged, "x-real-ip", forged,
			"forwarded", "for="+forged, "x-forwarded-host", forged, "x-forwarded-proto", forged, "x_forwarded_for", forged,
			"x-keyway-subject", forged, "x-keyway-assertion", forged, "x-request-id", forged, "http2-settings", forged,
			"x-http-method-override", "DELETE", "x-original-url", "/key/x", "te", "trailers", "traceparent", forged,
			"proxy-authorization", forged, "trailer", "x-a")})
		if a.status != http.StatusOK {
			t.Fatalf("%d %q", a.status, a.body)
		}
		seen := up.take()
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d", len(seen))
		}
		if n := mentions(seen[0].header, forged); len(n) > 0 {
			t.Errorf("forged values reached the upstream: %v", n)
		}
		for _, k := range []string{"X-Http-Method-Override", "X-Original-Url", "Proxy-Authorization"} {
			if v := seen[0].header.Get(k); v != "" {
				t.Errorf("%s reached the upstream: %q", k, v)
			}
		}
		if xff := seen[0].header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q", xff)
		}
		if rid := seen[0].header.Get("X-Request-Id"); rid == "" || rid != a.header.Get("X-Request-Id") {
			t.Errorf("X-Request-Id upstream %q, answer %q", rid, a.header.Get("X-Request-Id"))
		}
	})
}

// h2SecretWithTrailers answers the secret document and, after it,
// trailers an upstream may send: validators and digests of the document
// (RFC 9530 puts digests in trailers), keyway's cookie, CORS and HSTS.
func h2SecretWithTrailers(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Trailer", "Etag, Last-Modified, Content-Digest, Repr-Digest, Digest, Set-Cookie, Access-Control-Allow-Origin, Strict-Transport-Security")
	_, _ = io.WriteString(w, bffSecretDoc)
	w.(http.Flusher).Flush() // chunked: the trailers follow the body
	h.Set("Etag", `"v1-secret"`)
	h.Set("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")
	h.Set("Content-Digest", "sha-256=:secretdigest=:")
	h.Set("Repr-Digest", "sha-256=:secretdigest=:")
	h.Set("Digest", "SHA-256=secretdigest=")
	h.Set("Set-Cookie", "__Host-keyway_session=planted; Path=/; Secure")
	h.Set("Access-Control-Allow-Origin", "https://evil.example")
	h.Set("Strict-Transport-Security", "max-age=0")
}

// TestHTTP2AnswerTrailersOnSessionRoutes: an upstream's trailers go
// through the same scrubbing as its headers, on both paths: no planted
// keyway cookie, no CORS on a session route, no HSTS of the upstream's.
func TestHTTP2AnswerTrailersOnSessionRoutes(t *testing.T) {
	forBoth(t, func(t *testing.T, addr, _ string, up *h2Upstream) {
		up.answer = h2SecretWithTrailers
		a := h2Do(t, addr, h2Request{fields: h2Fields("GET", "/plain/x", "cookie", bffCookie)})
		if a.status != http.StatusOK {
			t.Fatalf("%d %q", a.status, a.body)
		}
		for _, h := range []http.Header{a.header, a.trailer} {
			if n := mentions(h, "planted"); len(n) > 0 {
				t.Errorf("a planted keyway cookie reached the client: %v", n)
			}
			if v := h.Get("Access-Control-Allow-Origin"); v == "https://evil.example" {
				t.Errorf("the upstream's CORS reached the client on a session route")
			}
			if v := h.Get("Strict-Transport-Security"); v == "max-age=0" {
				t.Errorf("the upstream's HSTS reached the client")
			}
		}
	})
}

// TestHTTP2ShapedAnswerCarriesNoTrailers: on a shaped route keyway removes the
// upstream's validators and digests from the answer's headers, since the
// body changes and they would tell a client whether a field it may not
// see changed (threat model: "validators telling whether a hidden field
// changed"). The same fields sent as trailers must go as well: found by
// an adversarial review, HTTP/2 sent them.
func TestHTTP2ShapedAnswerCarriesNoTrailers(t *testing.T) {
	addr, key, up := h2ReviewGateway(t, false)
	up.answer = h2SecretWithTrailers
	for _, tc := range []struct {
		name   string
		fields [][2]string
	}{
		{"session client, deny rule", h2Fields("GET", "/me/x", "cookie", bffCookie)},
		{"partner key, allow rule", h2Fields("GET", "/hist/x", "authorization", "Bearer "+key)},
	} {
		a := h2Do(t, addr, h2Request{fields: tc.fields})
		if a.status != http.StatusOK || strings.Contains(a.body, "4242") || strings.Contains(a.body, "vip") {
			t.Fatalf("%s: %d %q", tc.name, a.status, a.body)
		}
		for _, k := range []string{"Etag", "Last-Modified", "Content-Digest", "Repr-Digest", "Digest"} {
			if v := a.header.Get(k); v != "" {
				t.Errorf("%s: the unshaped document's %s in the answer's headers: %q", tc.name, k, v)
			}
			if v := a.trailer.Get(k); v != "" {
				t.Errorf("%s: the unshaped document's %s reached the client as a trailer: %q", tc.name, k, v)
			}
		}
		if n := mentions(a.trailer, "planted"); len(n) > 0 {
			t.Errorf("%s: planted cookie in trailers", tc.name)
		}
		// Fail closed: a shaped answer is keyway's document, and no
		// trailer of the upstream's is announced or sent with it.
		if len(a.trailer) != 0 || a.header.Get("Trailer") != "" {
			t.Errorf("%s: trailers %v announced %q on a shaped answer", tc.name, a.trailer, a.header.Get("Trailer"))
		}
	}
}

// TestHTTP2ShapedHeadRangeValidators: HEAD, Range and conditional
// requests over HTTP/2 on a shaped route: no length, validator or piece of
// the unshaped document reaches the client.
func TestHTTP2ShapedHeadRangeValidators(t *testing.T) {
	addr, key, up := h2ReviewGateway(t, false)
	up.answer = serveSecret
	full := strconv.Itoa(len(bffSecretDoc))
	i := strings.Index(bffSecretDoc, `"4242`)
	rng := "bytes=" + itoa(i) + "-" + itoa(i+len(`"4242424242424242"`)-1)
	for _, tc := range []struct {
		name   string
		fields [][2]string
	}{
		{"HEAD", h2Fields("HEAD", "/me/x", "cookie", bffCookie)},
		{"Range", h2Fields("GET", "/me/x", "cookie", bffCookie, "range", rng)},
		{"Range, partner", h2Fields("GET", "/hist/x", "authorization", "Bearer "+key, "range", rng)},
		{"If-None-Match", h2Fields("GET", "/me/x", "cookie", bffCookie, "if-none-match", `"v1-secret"`)},
		{"If-Range and Range", h2Fields("GET", "/me/x", "cookie", bffCookie, "range", rng, "if-range", `"v1-secret"`)},
	} {
		a := h2Do(t, addr, h2Request{fields: tc.fields})
		if a.status == http.StatusPartialContent || a.status == http.StatusNotModified {
			t.Errorf("%s: %d", tc.name, a.status)
		}
		if strings.Contains(a.body, "4242") || strings.Contains(a.body, "vip") {
			t.Errorf("%s: hidden field in %q", tc.name, a.body)
		}
		if cl := a.header.Get("Content-Length"); cl == full {
			t.Errorf("%s: the unshaped document's length %s", tc.name, cl)
		}
		if n := mentions(a.header, "v1-secret"); len(n) > 0 {
			t.Errorf("%s: the unshaped document's validator in %v", tc.name, n)
		}
		if n := mentions(a.trailer, "v1-secret"); len(n) > 0 {
			t.Errorf("%s: the unshaped document's validator in trailers %v", tc.name, n)
		}
	}
}

// TestHTTP2OddFields: fields HTTP/2 forbids or HTTP/1.1 cannot carry
// (upper case names, pseudo-headers in a trailer or out of place, an
// unknown pseudo-header, whitespace around values of keyway's checks)
// are refused or read strictly, and reach the upstream in no form keyway
// did not decide on.
func TestHTTP2OddFields(t *testing.T) {
	addr, _, up := h2ReviewGateway(t, false)
	for _, tc := range []struct {
		name string
		rq   h2Request
		ok   bool // a 200 is acceptable (what reaches the upstream is checked)
	}{
		{"upper-case cookie name", h2Request{fields: h2Fields("GET", "/plain/x", "Cookie", bffCookie)}, false},
		{"unknown pseudo-header", h2Request{fields: h2Fields("GET", "/plain/x", ":keyway-subject", "user:usr_forged", "cookie", bffCookie)}, false},
		{"pseudo-header in trailers", h2Request{fields: h2Fields("POST", "/pub/x", "content-length", "1"), data: []string{"a"},
			trailer: [][2]string{{":path", "/key/x"}}}, true}, // the body may be complete, and answered, before the trailer is read
		{"CSRF header with a trailing space", h2Request{fields: h2Fields("POST", "/plain/x", "cookie", bffCookie,
			"x-keyway-csrf", "1 ", "origin", "https://evil.example", "content-length", "0")}, false},
		{"Origin with a leading space", h2Request{fields: h2Fields("POST", "/plain/x", "cookie", bffCookie,
			"x-keyway-csrf", "1", "origin", " https://evil.example", "content-length", "0")}, false},
		{"sec-fetch-site padded", h2Request{fields: h2Fields("POST", "/plain/x", "cookie", bffCookie,
			"x-keyway-csrf", "1", "sec-fetch-site", " cross-site", "content-length", "0")}, false},
		{"header name with a space", h2Request{fields: h2Fields("GET", "/pub/x", "x-keyway-subject ", "user:usr_forged")}, false},
		{"header name with a colon", h2Request{fields: h2Fields("GET", "/pub/x", "x:keyway-subject", "user:usr_forged")}, false},
		{"empty header name", h2Request{fields: h2Fields("GET", "/pub/x", "", "user:usr_forged")}, false},
		{"NUL in a value", h2Request{fields: h2Fields("GET", "/pub/x", "x-a", "a\x00X-Keyway-Subject: user:usr_forged")}, false},
	} {
		a := h2Do(t, addr, h2Request{fields: tc.rq.fields, data: tc.rq.data, trailer: tc.rq.trailer})
		t.Logf("%s: %d", tc.name, a.status)
		if a.status == http.StatusOK && !tc.ok {
			t.Errorf("%s: 200", tc.name)
		}
		for _, s := range up.take() {
			if n := mentions(s.header, "forged"); len(n) > 0 {
				t.Errorf("%s: forged value reached the upstream in %v", tc.name, n)
			}
			if s.header.Get("X-Keyway-Subject") != "" {
				t.Errorf("%s: reached the upstream as %s (%d)", tc.name, s.header.Get("X-Keyway-Subject"), a.status)
			}
			if !strings.HasPrefix(s.uri, "/pub/") && !strings.HasPrefix(s.uri, "/plain/") {
				t.Errorf("%s: the upstream was asked for %s", tc.name, s.uri)
			}
		}
	}
}

// TestHTTP2ManyHeaders: a large HPACK header list (which HTTP/2
// carries compressed, so a small frame can expand to a lot) is bounded
// by the server's header limit, and what passes carries no forged value.
func TestHTTP2ManyHeaders(t *testing.T) {
	addr, _, up := h2ReviewGateway(t, false)
	var extra []string
	for i := range 2000 {
		extra = append(extra, "x-h"+strconv.Itoa(i), strings.Repeat("v", 600))
	}
	a := h2Do(t, addr, h2Request{fields: h2Fields("GET", "/pub/x", extra...)})
	if a.status == http.StatusOK {
		t.Errorf("a 1.2 MB header list was answered 200")
	}
	if seen := up.take(); len(seen) != 0 {
		t.Errorf("a 1.2 MB header list reached the upstream")
	}
	// The same value many times, which HPACK's table makes cheap to send.
	extra = extra[:0]
	for range 5000 {
		extra = append(extra, "x-keyway-subject", "user:usr_forged")
	}
	a = h2Do(t, addr, h2Request{fields: h2Fields("GET", "/pub/x", extra...)})
	for _, s := range up.take() {
		if n := mentions(s.header, "forged"); len(n) > 0 {
			t.Errorf("many copies of a forged header: %d, reached the upstream in %v", a.status, n)
		}
	}
}

// TestHTTP1ShapedAnswerCarriesNoTrailers: the same shaped answer to an
// HTTP/1.1 client carries no trailers at all (a shaped answer has a
// Content-Length, so net/http's HTTP/1.1 server does not chunk it and has
// nowhere to put them); HTTP/2 sends trailers whatever the length. So
// the leak TestHTTP2ShapedAnswerCarriesNoTrailers shows is HTTP/2's alone.
func TestHTTP1ShapedAnswerCarriesNoTrailers(t *testing.T) {
	addr, _, up := h2ReviewGateway(t, false)
	up.answer = h2SecretWithTrailers
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
		DisableCompression: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", "https://"+addr+"/me/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost"
	req.Header.Set("Cookie", bffCookie)
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.ProtoMajor != 1 || res.StatusCode != http.StatusOK || strings.Contains(string(b), "4242") {
		t.Fatalf("HTTP/1.1: %s %d %q", res.Proto, res.StatusCode, b)
	}
	for _, k := range []string{"Etag", "Last-Modified", "Content-Digest", "Repr-Digest", "Digest"} {
		if v := res.Trailer.Get(k); v != "" {
			t.Errorf("HTTP/1.1: trailer %s %q", k, v)
		}
		if v := res.Header.Get(k); v != "" {
			t.Errorf("HTTP/1.1: header %s %q", k, v)
		}
	}
}

// TestHTTP2NoTunnelWithoutUpgrade: HTTP/2 has no Upgrade, so a
// WebSocket handshake's other fields (Sec-WebSocket-Key…) arrive on a
// plain GET, cross-site Origin and all, without the Origin rule for
// handshakes. An upstream that switches protocols on it anyway must not
// give the client a tunnel or a 101.
func TestHTTP2NoTunnelWithoutUpgrade(t *testing.T) {
	forBoth(t, func(t *testing.T, addr, _ string, up *h2Upstream) {
		up.answer = func(w http.ResponseWriter, _ *http.Request) {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer func() { _ = c.Close() }()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nsecret-frames")
			_ = brw.Flush()
		}
		a := h2Do(t, addr, h2Request{fields: h2Fields("GET", "/live/x", "cookie", bffCookie, "origin", "https://evil.example",
			"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version", "13", "sec-fetch-mode", "websocket")})
		if a.status == http.StatusSwitchingProtocols || a.status == http.StatusOK || strings.Contains(a.body, "secret-frames") {
			t.Errorf("an upstream's 101 to an HTTP/2 GET: %d %q", a.status, a.body)
		}
		_ = up.take()
	})
}
