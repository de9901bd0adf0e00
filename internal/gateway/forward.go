package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/problem"
)

// The direct path: keyway's own HTTP/1.1 client for the requests that make
// most of an API's traffic, those without a body or with a small one of a
// known length (maxDirectBody), read whole first. It writes the
// request head once, straight from the client's request to a pooled
// upstream connection, and reads the answer on the request's own
// goroutine: no request clone, no header map copy, none of
// httputil.ReverseProxy's per-request work, and none of http.Transport's
// hand-offs between a connection's reader and writer goroutines (see
// docs/performance.md for the profiles).
//
// Everything else (larger bodies or of unknown length, a body awaiting
// 100-continue, CONNECT, WebSocket upgrades, answers shaped for a client,
// tracing, an opaque request target) takes the standard path,
// httputil.ReverseProxy over http.Transport. Both paths send the upstream
// the same request: the same headers removed (one predicate,
// inboundKept, mirrors ReverseProxy's hop-by-hop removal and rewrite's
// scrubbing), the same headers set (keywayHeaders, shared), the same
// target; TestDirectPathSendsWhatTheStandardPathSends holds them to it.
//
// Parsing the answer is net/http's own (http.ReadResponse: the framing
// rules, Content-Length and chunked, that http.Transport uses), under a
// bound on the answer's head. A connection goes back to the pool only when
// the answer was read to its end, was framed by its length or by chunks,
// asked for no close, and left nothing unread behind it: an upstream that
// sends more than one answer to one request loses the connection, never
// desynchronises it.

// maxAnswerHead bounds an upstream answer's status line and headers; the
// standard path's transport has the same bound.
const maxAnswerHead = 1 << 20

// errBadStatus is an upstream answer with a status code below 100, which
// both paths refuse with 502.
var errBadStatus = errors.New("the upstream sent a status code below 100")

// errAnswerHeadTooLarge is an upstream answer whose head passed maxAnswerHead.
var errAnswerHeadTooLarge = errors.New("the upstream's answer head is larger than 1 MiB")

// errUpstreamTimeout is the route's timeout reached on the direct path.
var errUpstreamTimeout = errors.New("the upstream did not answer within the route's timeout")

// aLongTimeAgo is a deadline that has passed: set on a connection, it
// ends a blocked read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1Conn is one pooled HTTP/1.1 connection to an upstream. It is the
// reader under br, so that it can bound the answer's head and count what
// the upstream sent.
type h1Conn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// left is what the answer's head may still take; -1 when unbounded
	// (while the body is read).
	left int64
	// got counts the bytes read since the request was written: nothing
	// read on a reused connection means the upstream closed it idle.
	got    int64
	idleAt time.Time
	probe  *idleProbe
	// abortFn is abort as a func value, made once: context.AfterFunc takes
	// it on every request.
	abortFn func()
	// tls is set on a TLS connection, whose own buffers may hold bytes
	// read from the socket that neither br nor the probe can see.
	tls bool
}

// idleClean reports whether an idle connection can be reused: open, and
// nothing unread in br, in TLS's buffers of whole records (a read with a
// passed deadline returns what they hold, or a timeout that TLS does not
// keep), or in the socket (the probe). Its deadline is restored. One gap
// remains, which http.Transport shares: the first bytes of a TLS record
// already taken from the socket while the rest is still on its way are
// seen by neither (crypto/tls offers no way to look), so an upstream that
// splits a second answer's record across a pause could still have it
// read as the next request's.
func (c *h1Conn) idleClean(deadline time.Time) bool {
	if c.br.Buffered() != 0 {
		return false
	}
	if c.tls {
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
		_, err := c.br.Peek(1)
		_ = c.nc.SetReadDeadline(deadline)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
	}
	return c.probe.idleClean()
}

func (c *h1Conn) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, errAnswerHeadTooLarge
	}
	if c.left > 0 && int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.nc.Read(p)
	c.got += int64(n)
	if c.left > 0 {
		c.left -= int64(n)
	}
	return n, err
}

// abort ends whatever the connection is blocked in.
func (c *h1Conn) abort() { _ = c.nc.SetDeadline(aLongTimeAgo) }

// h1Pool keeps an upstream's idle connections, the most recent first.
type h1Pool struct {
	dial        func(ctx context.Context) (net.Conn, error)
	host        string // the Host header: the URL's host, without an IPv6 zone
	maxIdle     int
	idleFor     time.Duration
	dialTimeout time.Duration

	mu     sync.Mutex
	idle   []*h1Conn
	closed bool
	sweep  *time.Timer // armed while connections idle
}

func newH1Pool(u *url.URL, maxIdle int, idleFor, dialTimeout time.Duration, dial func(ctx context.Context) (net.Conn, error)) *h1Pool {
	host := u.Host
	if i := strings.IndexByte(host, '%'); i >= 0 && strings.HasPrefix(host, "[") {
		// A zone names an interface of this machine, not the upstream.
		if j := strings.IndexByte(host[i:], ']'); j >= 0 {
			host = host[:i] + host[i+j:]
		}
	}
	return &h1Pool{dial: dial, host: host, maxIdle: maxIdle, idleFor: idleFor, dialTimeout: dialTimeout}
}

// get returns an idle connection, its deadline set, or nil. One that idled
// too long, was closed by the upstream, or holds bytes nobody asked for is
// closed.
func (p *h1Pool) get(now, deadline time.Time) *h1Conn {
	if !now.Before(deadline) {
		return nil // every connection's check would fail: none is taken
	}
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		// The deadline first: the probe, a read, fails on a passed one.
		if now.Sub(c.idleAt) < p.idleFor && c.nc.SetDeadline(deadline) == nil && c.idleClean(deadline) {
			return c
		}
		_ = c.nc.Close()
	}
}

// put returns a connection whose exchange ended cleanly.
func (p *h1Pool) put(c *h1Conn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(sweepEvery, p.sweepIdle)
	}
	p.mu.Unlock()
}

// sweepEvery is how often idle connections are looked at (a variable for
// tests).
var sweepEvery = 15 * time.Second

// sweepIdle closes the idle connections that idled too long or that the
// upstream closed (or wrote to), as http.Transport's reader would, so
// that no socket sits half-closed for ever; it runs while any idle.
func (p *h1Pool) sweepIdle() {
	now := time.Now()
	var drop []*h1Conn
	p.mu.Lock()
	keep := p.idle[:0]
	for _, c := range p.idle {
		// An idle connection keeps its last request's deadline, and the
		// probe, a read, fails on a passed one: clear it first (get sets
		// the next request's).
		_ = c.nc.SetReadDeadline(time.Time{})
		if now.Sub(c.idleAt) >= p.idleFor || !c.probe.idleClean() {
			drop = append(drop, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	if len(p.idle) > 0 && !p.closed {
		p.sweep.Reset(sweepEvery)
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, c := range drop {
		_ = c.nc.Close()
	}
}

// close drops the idle connections; later ones are closed as they return.
func (p *h1Pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// connect opens a connection, within the route's deadline and the dial
// timeout, whichever ends first (TCP and TLS handshake together).
func (p *h1Pool) connect(ctx context.Context, deadline time.Time) (*h1Conn, error) {
	if d := time.Now().Add(p.dialTimeout); d.Before(deadline) {
		deadline = d
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	nc, err := p.dial(dctx)
	cancel()
	if err != nil {
		return nil, err
	}
	_, isTLS := nc.(*tls.Conn)
	c := &h1Conn{nc: nc, bw: bufio.NewWriterSize(nc, 4096), probe: newIdleProbe(nc), tls: isTLS}
	c.br = bufio.NewReaderSize(c, 4096)
	c.abortFn = c.abort
	return c, nil
}

// tlsDialer returns a dial function that opens TCP then TLS, offering
// HTTP/1.1 only: the direct path speaks nothing else.
func tlsDialer(d *net.Dialer, addr string, cfg *tls.Config) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		return tc, nil
	}
}

// maxDirectBody is the largest request body the direct path takes: one
// copy buffer (bufferPool), read whole before the request is sent. Larger
// ones, and those of unknown length, stream on the standard path.
const maxDirectBody = copyBufSize

// direct reports whether a request takes the direct path.
func (g *Gateway) direct(r *http.Request, rt *route, st *state) bool {
	if g.cfg.StandardProxyOnly || g.cfg.Tracer != nil || rt.Upstream.h1 == nil {
		return false
	}
	if r.Method == http.MethodConnect || r.URL.Opaque != "" {
		return false
	}
	// A body of a known length up to one buffer, not in chunks (HTTP/2's
	// server gives every request a Body, which reads nothing when the
	// stream ended, and a length of -1 when it is not known), and no
	// 100-continue to wait for: http.Transport waits for the upstream's
	// 100 before it sends the body.
	if r.ContentLength < 0 || r.ContentLength > maxDirectBody || len(r.TransferEncoding) != 0 {
		return false
	}
	if _, ok := r.Header["Expect"]; ok && r.ContentLength > 0 {
		return false
	}
	_, rule := g.shapeRule(st)
	return rule == nil
}

// replayable reports whether a request may be sent again on a new
// connection after a reused one took it and answered nothing, as
// http.Transport decides: no body, and a method that changes nothing or an
// idempotency key.
func replayable(r *http.Request) bool {
	if r.ContentLength != 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// forward serves a request on the direct path.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, rt *route, st *state) {
	pool := rt.Upstream.h1
	start := time.Now()
	deadline := start.Add(rt.Timeout)
	ctx := r.Context()

	// keyway's own headers are computed, and checked, before a connection
	// is taken: a value no header can carry (a line break in a display
	// name) fails the request without costing a connection. The client's
	// were checked by net/http's server, and are checked again as written.
	var set keywayHeaderSet
	g.keywayHeaders(r, st, &set)
	for _, kv := range set.p[:set.n] {
		if !httpguts.ValidHeaderFieldValue(kv.v) {
			g.proxyError(w, r, st, rt, &badFieldError{name: kv.k, what: "value"})
			return
		}
	}

	// The body is read whole before a connection is taken: an upstream
	// connection is never held while a client dawdles (the server's
	// read_timeout bounds it), and it goes out with the head at once.
	var (
		body []byte
		bp   *[]byte // body's buffer, back in the pool once the request is sent
	)
	defer func() {
		if bp != nil {
			g.bufs.p.Put(bp)
		}
	}()
	now := start
	if r.ContentLength > 0 {
		bp = g.bufs.p.Get().(*[]byte)
		body = (*bp)[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, body); err != nil {
			// The client's error, whatever it did to the context (a read
			// that fails cancels it): answered, so that a client still
			// reading is not left to take net/http's empty 200 for one.
			g.problem(w, st, problem.New(problem.BadRequest, http.StatusBadRequest,
				"the request body did not arrive whole"))
			return
		}
		// An upload slower than the route's timeout is answered here,
		// without touching the pool: every idle connection would fail its
		// check under a passed deadline, and be closed for nothing.
		if now = time.Now(); !now.Before(deadline) {
			g.directError(w, r, rt, st, errUpstreamTimeout, deadline)
			return
		}
	}

	var (
		c    *h1Conn
		res  *http.Response
		err  error
		stop func() bool
	)
	for attempt := 0; ; attempt++ {
		// The route's timeout and the client going away bound the whole
		// exchange, the body's copy included. A second attempt always
		// takes a new connection.
		c = nil
		if attempt == 0 {
			c = pool.get(now, deadline)
		}
		fresh := c == nil
		if fresh {
			c, err = pool.connect(ctx, deadline)
			if err != nil {
				g.directError(w, r, rt, st, err, deadline)
				return
			}
			_ = c.nc.SetDeadline(deadline)
		}
		stop = context.AfterFunc(ctx, c.abortFn)
		res, err = g.exchange(c, r, rt, st, &set, body)
		if err == nil {
			break
		}
		stop()
		_ = c.nc.Close()
		// A reused connection that took the request and sent nothing back
		// was closed by the upstream while idle: a request that changes
		// nothing may be sent again, once, on a new connection (as
		// http.Transport does).
		var bad *badFieldError
		if fresh || c.got != 0 || !replayable(r) || ctx.Err() != nil || !time.Now().Before(deadline) || errors.As(err, &bad) {
			g.directError(w, r, rt, st, err, deadline)
			return
		}
	}

	if bp != nil {
		// Sent: the answer, however long it streams, holds one buffer.
		g.bufs.p.Put(bp)
		bp = nil
	}
	reusable := g.relay(w, r, rt, st, c, res)
	if !stop() {
		reusable = false // the client went away meanwhile
	}
	if !reusable {
		_ = c.nc.Close()
		return
	}
	pool.put(c, time.Now()) // its deadline is set again before any use
}

// exchange writes the request and its body, and reads the answer's head.
func (g *Gateway) exchange(c *h1Conn, r *http.Request, rt *route, st *state, set *keywayHeaderSet, body []byte) (*http.Response, error) {
	c.got = 0
	if err := g.writeHead(c.bw, r, rt, st, set, len(body)); err != nil {
		return nil, err
	}
	if _, err := c.bw.Write(body); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	c.left = maxAnswerHead
	for {
		res, err := http.ReadResponse(c.br, r)
		if err != nil {
			return nil, err
		}
		switch {
		case res.StatusCode < 100:
			// Not informational: a final answer net/http cannot give
			// (http.ReadResponse takes "000" to "099"). Skipping it
			// would read its body as the next answer's head.
			return nil, errBadStatus
		case res.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("the upstream switched protocols on a request that asked for no upgrade")
		case res.StatusCode < 200:
			// 100 Continue and 103 Early Hints are not passed on: the
			// body, if any, went with the head, and hints would bypass
			// the answer's scrubbing. As many as the head bound holds
			// (c.left spans them all), as http.Transport does for the
			// standard path.
			continue
		}
		c.left = -1
		return res, nil
	}
}

// relay sends the upstream's answer to the client and reports whether the
// connection may serve another request.
func (g *Gateway) relay(w http.ResponseWriter, r *http.Request, rt *route, st *state, c *h1Conn, res *http.Response) bool {
	removeHopByHop(res.Header)
	g.modifyAnswer(res.Header, rt)
	h := w.Header()
	for k, vv := range res.Header {
		if prior := h[k]; len(prior) > 0 {
			h[k] = append(prior[:len(prior):len(prior)], vv...)
		} else {
			h[k] = vv
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)

	// Unknown length (chunked, a stream) and server-sent events go out as
	// they come, as with the standard path.
	flush := res.ContentLength == -1 || isEventStream(res.Header.Get("Content-Type"))
	bp := g.bufs.p.Get().(*[]byte) // the pointer itself, so that returning it allocates nothing
	defer g.bufs.p.Put(bp)
	buf := *bp
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				// The client went away: nobody reads the rest.
				st.status = 499
				return false
			}
			if flush {
				http.NewResponseController(w).Flush() //nolint:errcheck // a failed flush shows in the next write
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil && r.Context().Err() != nil {
			// The client went away (its abort ended the read): not the
			// upstream's fault, and nobody reads the rest.
			st.status = 499
			return false
		}
		if rerr != nil {
			// The answer was cut short: the client must not take what it
			// got for the whole of it. ServeHTTP ends the connection (or
			// stream) after logging.
			g.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "upstream answer cut short",
				slog.String("request_id", st.id), slog.String("upstream", rt.Upstream.name), slog.String("error", rerr.Error()))
			st.abort = true
			return false
		}
	}
	_ = res.Body.Close() // at EOF: returns at once, trailers read
	if len(res.Trailer) > 0 {
		// Trailers are headers too: the same scrubbing as the answer's.
		g.modifyAnswer(res.Trailer, rt)
		http.NewResponseController(w).Flush() //nolint:errcheck // as above
		if len(res.Trailer) == announced {
			for k, vv := range res.Trailer {
				h[k] = append(h[k], vv...)
			}
		} else {
			for k, vv := range res.Trailer {
				h[http.TrailerPrefix+k] = append(h[http.TrailerPrefix+k], vv...)
			}
		}
	}
	// Framed by its length or by chunks, no close asked, nothing more sent.
	return !res.Close && (res.ContentLength >= 0 || len(res.TransferEncoding) > 0 || r.Method == http.MethodHead ||
		res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified) && c.br.Buffered() == 0
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	const es = "text/event-stream"
	if len(ct) < len(es) || !strings.EqualFold(ct[:len(es)], es) {
		return false
	}
	rest := strings.TrimLeft(ct[len(es):], " \t")
	return rest == "" || rest[0] == ';'
}

// directError answers a failed exchange as the standard path's error
// handler does.
func (g *Gateway) directError(w http.ResponseWriter, r *http.Request, rt *route, st *state, err error, deadline time.Time) {
	switch {
	case r.Context().Err() != nil:
		err = context.Canceled
	case !time.Now().Before(deadline):
		// The route's deadline passed; a dial timeout before it is a 502,
		// as on the standard path.
		err = errUpstreamTimeout
	}
	g.proxyError(w, r, st, rt, err)
}

// writeHead writes the request line and headers sent upstream, for a body
// of n bytes.
func (g *Gateway) writeHead(bw *bufio.Writer, r *http.Request, rt *route, st *state, set *keywayHeaderSet, n int) error {
	_, _ = bw.WriteString(r.Method)
	_ = bw.WriteByte(' ')
	p := url.URL{Path: rt.forwardPath(st.path)}
	_, _ = bw.WriteString(p.EscapedPath())
	// As url.URL.RequestURI: "?" only before a query, or a bare "?" the
	// client sent (a query cleaned to nothing leaves none).
	if q := cleanQuery(r.URL.RawQuery); q != "" || r.URL.ForceQuery {
		_ = bw.WriteByte('?')
		_, _ = bw.WriteString(q)
	}
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(rt.Upstream.h1.host)
	_, _ = bw.WriteString("\r\n")
	// The length is the body's own, never the client's header; as
	// http.Transport, a length of 0 is sent only for the methods that
	// servers expect a body with.
	switch {
	case n > 0:
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.WriteString(strconv.Itoa(n))
		_, _ = bw.WriteString("\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		_, _ = bw.WriteString("Content-Length: 0\r\n")
	}

	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if !g.inboundKept(k, r.Header, rt, st) || listedIn(conn, k) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			// net/http's server refuses such a name (400); should one come
			// through all the same, it is refused as http.Transport does.
			return &badFieldError{name: k, what: "name"}
		}
		if k == "User-Agent" {
			// As http.Request.Write: the first value alone, none if empty.
			if len(vv) == 0 || vv[0] == "" {
				continue
			}
			vv = vv[:1]
		}
		for _, v := range vv {
			if err := writeField(bw, k, v); err != nil {
				return err
			}
		}
	}
	if cookie := keptCookies(r.Header["Cookie"]); cookie != "" && !listedIn(conn, "Cookie") {
		if err := writeField(bw, "Cookie", cookie); err != nil {
			return err
		}
	}
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		_, _ = bw.WriteString("Te: trailers\r\n")
	}
	for _, kv := range set.p[:set.n] {
		if err := writeField(bw, kv.k, kv.v); err != nil {
			return err
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeField writes one header field, refusing a value a header cannot
// carry (as http.Transport does): a display name with a line break must
// not become a second header.
func writeField(bw *bufio.Writer, k, v string) error {
	if !httpguts.ValidHeaderFieldValue(v) {
		return &badFieldError{name: k, what: "value"}
	}
	v = textproto.TrimString(v)
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	_, _ = bw.WriteString(v)
	_, err := bw.WriteString("\r\n")
	return err
}

// badFieldError is a header value a request cannot carry; the request
// fails (502) without being sent again.
type badFieldError struct{ name, what string }

func (e *badFieldError) Error() string {
	return fmt.Sprintf("invalid header field %s for %q", e.what, e.name)
}

// hopByHop are the headers a proxy never passes on (RFC 9110 §7.6.1, and
// the older ones ReverseProxy removes too), in net/http's canonical form.
var hopByHop = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// listedIn reports whether the Connection header values name k (canonical),
// as ReverseProxy reads them: tokens trimmed of ASCII white space, and
// matched as http.Header.Del matches, by their canonical form (ASCII case
// folding, never Unicode's: a Kelvin sign is not a k).
func listedIn(conn []string, k string) bool {
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); len(tok) == len(k) && httpguts.ValidHeaderFieldName(tok) && asciiEqualFold(tok, k) {
				return true
			}
		}
	}
	return false
}

// asciiEqualFold reports whether a and b are equal under ASCII case folding.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// removeHopByHop removes from an answer's headers the hop-by-hop ones and
// those its Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				h.Del(tok) // by its canonical form, as ReverseProxy
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// inboundKept reports whether the client's header k (canonical, as
// net/http's server stores it) goes upstream as it came. It is the
// standard path's removals as one predicate: ReverseProxy's hop-by-hop
// and forwarding headers, then rewrite's (scrubInbound, the trace
// context of a client, the key). Cookie is rewritten (keptCookies);
// Host and Content-Length are written from the request itself.
func (g *Gateway) inboundKept(k string, h http.Header, rt *route, st *state) bool {
	for _, hop := range hopByHop {
		if k == hop {
			return false
		}
	}
	switch k {
	case "Host", "Content-Length", "Cookie", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return false
	case g.keyHeader:
		if rt.Policy == decision.APIKey {
			return false
		}
		for _, v := range h[k] {
			if keyShaped(v) {
				return false
			}
		}
		return true
	}
	if dropInbound(k, g.keyHeader, rt.pass) {
		return false
	}
	return st.client.PeerTrusted || !isTraceHeader(k, true)
}

// cleanQuery is the query sent upstream: as the client sent it, or, when
// it holds a semicolon or a malformed escape, parsed and encoded again
// without the parts that do not parse (what ReverseProxy does, so that
// keyway and the upstream cannot read one query two ways).
func cleanQuery(q string) string {
	if q != "" && queryLimitSet() {
		return reencodeQuery(q) // as ReverseProxy, under a non-default limit
	}
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return reencodeQuery(q)
		case '%':
			if i+2 >= len(q) || !ishex(q[i+1]) || !ishex(q[i+2]) {
				return reencodeQuery(q)
			}
			i += 3
		default:
			i++
		}
	}
	if strings.Count(q, "&")+1 > maxQueryParams {
		return reencodeQuery(q)
	}
	return q
}

// maxQueryParams is net/url's default bound on a query's parameters.
const maxQueryParams = 10000

// queryLimitSet reports whether the operator set net/url's limit on query
// parameters (GODEBUG=urlmaxqueryparams=N), under which ReverseProxy
// encodes every query again.
func queryLimitSet() bool {
	// Read as Go reads GODEBUG: entries split at commas, never trimmed,
	// the last one of a name winning.
	set := false
	for kv := range strings.SplitSeq(os.Getenv("GODEBUG"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "urlmaxqueryparams" {
			set = v != ""
		}
	}
	return set
}

func reencodeQuery(q string) string {
	v, _ := url.ParseQuery(q)
	return v.Encode()
}
