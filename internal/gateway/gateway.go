package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keywayhq/keyway/internal/assertion"
	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/headername"
	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ReservedPrefix is keyway's own path space. It is never proxied, whatever
// the routes say.
const ReservedPrefix = "/.keyway"

// Config configures a Gateway.
type Config struct {
	// Routes to serve. Required (may be empty: everything is then 404).
	Routes []Route
	// Own serves the reserved /.keyway/ space. Required.
	Own http.Handler
	// ClientIP decides whom forwarded headers are believed from. Default: trust nobody.
	ClientIP *clientip.Resolver
	// Decider decides who may pass each route. Required. The header that
	// carries its API keys is removed before forwarding on api_key routes,
	// and on every route when it holds something shaped like a keyway key.
	Decider *decision.Core
	// CaseInsensitivePaths lower-cases ASCII letters of paths before
	// matching and forwarding, and of route prefixes.
	CaseInsensitivePaths bool
	// Hosts are the names keyway answers to; other Host headers get 421.
	// Empty: any (for tests of the gateway alone; the app always sets it).
	Hosts Hosts
	// TunnelRecheck is how often an open WebSocket tunnel checks that the
	// credential that opened it is still valid. Default 1s.
	TunnelRecheck time.Duration
	// Clients are the client profiles: CORS for the browser's, and the
	// fields each client receives.
	Clients []Client
	// Profiles, when set, are the same profiles as the decision core
	// reads them (which routes each client may call): this gateway's
	// routes are decided with them, never with a set a later reload put
	// in force, so a request is decided and shaped by one config. nil:
	// the core's in force (tests of the gateway alone).
	Profiles *decision.Profiles
	// ForwardAuth, when set, serves /.keyway/verify: proxies in front of
	// the upstreams ask it who may pass. Routes may then have no Upstream.
	ForwardAuth *ForwardAuth
	// HSTSMaxAge is sent on every response. Required, at least a year.
	HSTSMaxAge time.Duration
	// Logger receives errors. Required.
	Logger *slog.Logger
	// AccessLog, when set, receives one line per request.
	AccessLog *AccessLog
	// Metrics, when set, receives the request counters and histograms.
	Metrics prometheus.Registerer
	// Tracer, when set, makes a span of each request and of its upstream
	// call (see package tracing). A traceparent is believed only from a
	// trusted proxy (ClientIP); clients' are removed before forwarding,
	// and the upstream always gets keyway's.
	Tracer trace.Tracer
	// StandardProxyOnly sends every request through httputil.ReverseProxy
	// over http.Transport, never the direct path (see forward.go): for
	// tests that compare the two, and for measuring one against the other.
	StandardProxyOnly bool
}

// Gateway is the public HTTPS handler: it normalises the path once, serves
// /.keyway/ itself, and routes everything else by policy to an upstream.
type Gateway struct {
	cfg       Config
	keyHeader string
	clients   map[string]*Client
	browser   *Client // the session client, if any
	table     *table
	// hsts is the Strict-Transport-Security value, shared by every
	// response: a full slice expression, so that an append copies.
	hsts    []string
	idBase  string
	idSeq   atomic.Uint64
	metrics *metrics
	bufs    *bufferPool
	routes  []*route
	tunnels tunnels
}

type route struct {
	Route
	decide *decision.Route
	pass   map[string]bool // canonical names of PassHeaders
	proxy  *httputil.ReverseProxy
	obs    [6]prometheus.Observer // by status class; [0] for "other"
	count  [6]prometheus.Counter
}

// New validates cfg and builds the gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Own == nil || cfg.Logger == nil || cfg.Decider == nil {
		return nil, errors.New("gateway: Own, Decider and Logger are required")
	}
	if cfg.HSTSMaxAge < 365*24*time.Hour {
		return nil, errors.New("gateway: HSTSMaxAge must be at least one year")
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = clientip.New(nil, 0)
	}
	if cfg.TunnelRecheck <= 0 {
		cfg.TunnelRecheck = time.Second
	}
	var seed [6]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("gateway: request id seed: %w", err)
	}
	g := &Gateway{
		cfg:       cfg,
		keyHeader: cfg.Decider.KeyHeader(),
		clients:   make(map[string]*Client, len(cfg.Clients)),
		hsts:      []string{"max-age=" + strconv.FormatInt(int64(cfg.HSTSMaxAge/time.Second), 10)}[:1:1],
		idBase:    hex.EncodeToString(seed[:]) + "-",
		bufs:      newBufferPool(),
	}
	if cfg.Metrics != nil {
		m, err := newMetrics(cfg.Metrics)
		if err != nil {
			return nil, err
		}
		g.metrics = m
	}
	for i := range cfg.Clients {
		c := &cfg.Clients[i]
		if c.Name == "" || (len(c.Fields) > 0 && c.MaxShapedBody <= 0) {
			return nil, fmt.Errorf("gateway: client %q: a name, and a shaping limit with fields, are required", c.Name)
		}
		if c.Session {
			if g.browser != nil {
				return nil, fmt.Errorf("gateway: clients %q and %q: only one client may use sessions", g.browser.Name, c.Name)
			}
			g.browser = c
		}
		if cfg.Profiles != nil && !cfg.Profiles.Has(c.Name) {
			return nil, fmt.Errorf("gateway: client %q is not among the decision profiles", c.Name)
		}
		g.clients[c.Name] = c
	}
	if cfg.Profiles != nil && cfg.Profiles.Len() != len(g.clients) {
		return nil, errors.New("gateway: the client profiles and the decision profiles are not the same set")
	}
	routes := make([]*route, 0, len(cfg.Routes))
	named := make(map[string]int, len(cfg.Routes))
	for _, rc := range cfg.Routes {
		if rc.Name == "" || (rc.Upstream == nil && cfg.ForwardAuth == nil) || rc.MaxBody <= 0 || rc.Timeout <= 0 || len(rc.Methods) == 0 {
			return nil, fmt.Errorf("gateway: route %q: name, upstream, methods, max body and timeout are required", rc.Prefix)
		}
		if cfg.CaseInsensitivePaths {
			// The same rule as requests get: ASCII letters only.
			rc.Prefix = lowerASCII(rc.Prefix)
		}
		if rc.Prefix == ReservedPrefix || strings.HasPrefix(rc.Prefix, ReservedPrefix+"/") {
			return nil, fmt.Errorf("gateway: route %s: %s is reserved for keyway", rc.Name, ReservedPrefix)
		}
		if rc.WebSocket && rc.TunnelLifetime <= 0 {
			return nil, fmt.Errorf("gateway: route %s: a WebSocket route needs a tunnel lifetime", rc.Name)
		}
		var limit *decision.RouteLimit
		if rl := rc.RateLimit; rl != nil {
			limit = &decision.RouteLimit{Limit: rl.Limit, PerKey: rl.PerKey}
		}
		instance := named[rc.Name]
		named[rc.Name]++
		dr, err := cfg.Decider.NewRoute(decision.RouteConfig{Name: rc.Name, Policy: rc.Policy, Scopes: rc.Scopes, Roles: rc.Roles, RateLimit: limit,
			Clients: true, Profiles: cfg.Profiles, Instance: instance})
		if err != nil {
			closeRoutes(routes)
			return nil, fmt.Errorf("gateway: %w", err)
		}
		r := &route{Route: rc, decide: dr}
		routes = append(routes, r)
		for _, h := range rc.PassHeaders {
			h = http.CanonicalHeaderKey(h)
			if headername.Protected(h, g.keyHeader) {
				closeRoutes(routes)
				return nil, fmt.Errorf("gateway: route %s: %s can never be passed from a client", rc.Name, h)
			}
			if r.pass == nil {
				r.pass = make(map[string]bool)
			}
			r.pass[h] = true
		}
		if rc.Upstream != nil {
			r.proxy = g.newProxy(r)
		}
		if g.metrics != nil {
			g.metrics.bind(r)
		}
	}
	t, err := newTable(routes)
	if err != nil {
		closeRoutes(routes)
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.table, g.routes = t, routes
	return g, nil
}

// stateKey is the context key of the per-request state.
type stateKey struct{}

// state is what the gateway learned of one request, shared with Own and the
// proxy's Rewrite through the request context.
type state struct {
	// sw wraps the client's ResponseWriter (one allocation with the state).
	sw statusWriter
	id string
	// idv is []string{id}, shared by the response's and the upstream
	// request's X-Request-Id (neither is changed in place).
	idv    []string
	client clientip.Info
	route  *route
	path   string // normalised, decoded
	host   string // the checked host the client asked for, for X-Forwarded-Host
	ident  decision.Identity
	// outcome and why are the decision's reason and, for a bad key, why:
	// for the access log (the operator), never the client. outcome is ""
	// when no route decided.
	outcome, why string
	status       int // set by the error handler when the proxy fails
	// upgraded is set once the upstream switched protocols (a tunnel).
	upgraded atomic.Bool
	// assertion is the signed identity assertion for the upstream, if its
	// upstream wants one.
	assertion string
	// span is the request's span when tracing is on.
	span trace.Span
	// abort is set when an upstream's answer was cut short after its head
	// went out: ServeHTTP then ends the client's connection (or stream),
	// so that the client never takes a part for the whole.
	abort bool
}

// RequestInfo is the request-scoped information the gateway attaches to each
// request before any handler runs.
type RequestInfo struct {
	// ID is the request ID, also sent back in X-Request-Id.
	ID string
	// Client is who the request comes from (see clientip).
	Client clientip.Info
}

// InfoFrom returns the RequestInfo of a request served by a Gateway.
func InfoFrom(ctx context.Context) (RequestInfo, bool) {
	st, ok := ctx.Value(stateKey{}).(*state)
	if !ok {
		return RequestInfo{}, false
	}
	return RequestInfo{ID: st.id, Client: st.client}, true
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &state{client: g.cfg.ClientIP.Resolve(r)}
	// A trusted proxy's request ID is kept, but not on a forward-auth
	// question: the proxy that asks passes the client's own headers on.
	st.id = g.requestID(r, st.client.PeerTrusted && (len(r.Header["X-Request-Id"]) == 0 || !g.verifyPath(r)))
	st.idv = []string{st.id}[:1:1]
	w.Header()["X-Request-Id"] = st.idv
	if r.ProtoMajor == 1 && (r.ProtoMinor == 0 || r.TransferEncoding != nil) {
		// A chunked HTTP/1.1 body may have come with a Content-Length that
		// net/http dropped (golang/go#80942), and an HTTP/1.0 request's
		// Transfer-Encoding is ignored: a proxy in front that framed the
		// bytes the other way would read what follows as another request.
		// RFC 9112 §6.1: close the connection after answering.
		w.Header().Set("Connection", "close")
	}
	st.sw.ResponseWriter = w
	sw := &st.sw
	if g.cfg.Tracer != nil {
		r = g.startSpan(r, st)
	}

	g.serve(sw, r, st)

	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	if st.status != 0 {
		sw.status = st.status
	}
	end := time.Now()
	elapsed := end.Sub(start)
	if st.route != nil {
		class := sw.status / 100
		if class > 5 {
			class = 0
		}
		if st.route.obs[class] != nil {
			st.route.obs[class].Observe(elapsed.Seconds())
			st.route.count[class].Inc()
		}
	} else if g.metrics != nil {
		g.metrics.unrouted(sw.status)
	}
	if st.span != nil {
		g.endSpan(r, st, sw.status)
	}
	if g.cfg.AccessLog != nil {
		g.accessLog(r, st, sw, end, elapsed)
	}
	if st.abort {
		panic(http.ErrAbortHandler)
	}
}

// startSpan starts the request's span, as the child of a trusted proxy's
// trace context if it sent one. The name is the method until the route
// is known: never the path, which may hold identifiers or a setup token.
func (g *Gateway) startSpan(r *http.Request, st *state) *http.Request {
	ctx := r.Context()
	// Only from trusted_proxies, and never on a forward-auth question: the
	// proxy that asks passes the client's own headers on (nginx's
	// auth_request does), even when it is a trusted proxy as well. The
	// path is normalised as serve will, so that no spelling of the verify
	// path slips through.
	if st.client.PeerTrusted && !g.verifyPath(r) {
		ctx = tracing.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	method := spanMethod(r.Method)
	ctx, st.span = g.cfg.Tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("keyway.request_id", st.id),
			attribute.String("network.protocol.version", protoVersion(r))))
	return r.WithContext(ctx)
}

// verifyPath reports whether r asks the forward-auth endpoint.
func (g *Gateway) verifyPath(r *http.Request) bool {
	if g.cfg.ForwardAuth == nil {
		return false
	}
	p, err := NormalizePath(r.URL.EscapedPath(), g.cfg.CaseInsensitivePaths)
	return err != nil || p == VerifyPath || strings.HasPrefix(p, VerifyPath+"/")
}

// spanMethod is the method a span may name: one of HTTP's, or _OTHER (a
// method is any token, up to the header limit, from anyone).
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// endSpan records what the request came to: route, policy, decision and
// status. The decision's "why" is left out: it is meant for the operator's
// log and may name a key's display ID.
func (g *Gateway) endSpan(r *http.Request, st *state, status int) {
	span := st.span
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, attribute.Int("http.response.status_code", status))
	switch {
	case st.path == VerifyPath || strings.HasPrefix(st.path, VerifyPath+"/"):
		// A forward-auth question: its route (below) is the one decided.
		span.SetName(spanMethod(r.Method) + " " + VerifyPath)
	case st.route != nil:
		span.SetName(spanMethod(r.Method) + " " + st.route.Prefix)
		attrs = append(attrs, attribute.String("http.route", st.route.Prefix))
	case st.path == ReservedPrefix || strings.HasPrefix(st.path, ReservedPrefix+"/"):
		span.SetName(spanMethod(r.Method) + " " + ReservedPrefix)
	}
	if st.route != nil {
		attrs = append(attrs, attribute.String("keyway.route", st.route.Name), attribute.String("keyway.policy", string(st.route.Policy)))
	}
	if st.outcome != "" {
		attrs = append(attrs, attribute.String("keyway.decision", st.outcome))
	}
	span.SetAttributes(attrs...)
	if status >= 500 {
		tracing.Fail(span, http.StatusText(status))
	}
	span.End()
}

func protoVersion(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "2"
	case 3:
		return "3"
	}
	if r.ProtoMinor == 0 {
		return "1.0"
	}
	return "1.1"
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, st *state) {
	path, err := NormalizePath(r.URL.EscapedPath(), g.cfg.CaseInsensitivePaths)
	if err == nil && !printableTarget(r.RequestURI) {
		// HTTP/1.1 cannot carry these in a request line; HTTP/2's :path
		// can, and a request keyway accepts must read the same either way.
		err = errors.New("the request target holds a space or a control character")
	}
	verify := err == nil && g.cfg.ForwardAuth != nil && (path == VerifyPath || strings.HasPrefix(path, VerifyPath+"/"))
	if !verify {
		// A forward-auth answer goes to a proxy: HSTS for the host the
		// browser sees is that proxy's to send, with its operator's policy.
		w.Header()["Strict-Transport-Security"] = g.hsts
	}
	if err != nil {
		g.problem(w, st, problem.New(problem.BadRequest, http.StatusBadRequest, err.Error()))
		return
	}
	st.path = path
	if keyShaped(path) || queryHasKey(r.URL.RawQuery) {
		// Keys travel in headers only: a URL ends up in logs, histories and
		// Referer headers. Refuse rather than forward it anywhere; the
		// access log then shows the path as "(refused)".
		st.path = "(refused: a key in the URL)"
		g.problem(w, st, problem.New(problem.BadRequest, http.StatusBadRequest,
			"API keys must not be sent in URLs; send them in the Authorization header (and rotate this one)"))
		return
	}
	if verify {
		if !g.cfg.Hosts.Match(r.Host) {
			g.problem(w, st, problem.New(problem.MisdirectedRequest, http.StatusMisdirectedRequest,
				"this server does not answer for that host name"))
			return
		}
		g.serveVerify(w, r, st, path)
		return
	}
	// Own handlers and the proxy's hooks find the state in the context;
	// forward auth, above, needs none of it. A request copy carries it
	// only where it is needed (one copy per request: they are large).
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	if !g.hostAllowed(r, st) {
		g.problem(w, st, problem.New(problem.MisdirectedRequest, http.StatusMisdirectedRequest,
			"this server does not answer for that host name"))
		return
	}
	if path == ReservedPrefix || strings.HasPrefix(path, ReservedPrefix+"/") {
		r.URL.Path, r.URL.RawPath = path, ""
		g.cfg.Own.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	pr := g.table.lookup(path)
	if pr == nil {
		g.problem(w, st, problem.New(problem.NotFound, http.StatusNotFound, "no route matches this path"))
		return
	}
	if g.preflight(w, r, st, pr) {
		return
	}
	rt := pr.forMethod(r.Method)
	if rt == nil {
		w.Header().Set("Allow", pr.allow)
		g.problem(w, st, problem.New(problem.MethodNotAllowed, http.StatusMethodNotAllowed, "the route does not allow this method"))
		return
	}
	st.route = rt
	if rt.proxy == nil {
		// A route without an upstream is decided for the proxy in front
		// (forward auth), never proxied.
		g.problem(w, st, problem.New(problem.NotFound, http.StatusNotFound, "no route matches this path"))
		return
	}
	tunnel := decision.IsUpgrade(r.Header)
	if tunnel && (!rt.WebSocket || r.Method != http.MethodGet || !strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket")) {
		// An upgraded connection is a tunnel that keyway no longer checks:
		// only routes that ask for WebSockets get one, and only that.
		g.problem(w, st, problem.New(problem.BadRequest, http.StatusBadRequest,
			"this route does not accept this protocol upgrade"))
		return
	}

	if o := g.corsOrigin(r, rt, r.Method); o != "" {
		setCORS(w.Header(), o)
	} else if g.browser != nil && len(g.browser.CORSOrigins) > 0 && rt.Policy == decision.Session {
		// Whether the answer has CORS headers depends on Origin: a cache
		// must not give one without them to the app's origin.
		w.Header().Add("Vary", "Origin")
	}
	facts := g.cfg.Decider.FactsFrom(r, rt.decide, st.client, st.id)
	d := g.cfg.Decider.Decide(ctx, rt.decide, &facts)
	st.outcome, st.why = d.Reason.String(), d.Why
	if !d.Allowed() {
		st.ident.Subject, st.ident.KeyID = d.Identity.Subject, d.Identity.KeyID // for the log only
		g.cfg.Decider.WriteDenial(w, &d, st.id)
		return
	}
	g.cfg.Decider.SetHeaders(w.Header(), &d)
	st.ident = d.Identity
	if up := rt.Upstream; up.signer != nil {
		var sid string
		if d.Identity.Session != nil {
			sid = d.Identity.Session.ID
		}
		tok, err := up.signer.Sign(assertion.Claims{Subject: d.Identity.Subject, Audience: up.audience, Method: r.Method,
			Path: rt.forwardPath(st.path), KeyID: d.Identity.KeyID, Scopes: d.Identity.Scopes, Roles: d.Identity.Roles, Session: sid,
			Client: d.Identity.Client})
		if err != nil {
			// Fail closed: an upstream that expects an assertion gets none
			// it could mistake for one.
			g.cfg.Logger.LogAttrs(ctx, slog.LevelError, "sign the identity assertion",
				slog.String("request_id", st.id), slog.String("error", err.Error()))
			g.problem(w, st, problem.New(problem.Internal, http.StatusInternalServerError, "the request could not be forwarded"))
			return
		}
		st.assertion = tok
	}

	if r.ContentLength > rt.MaxBody {
		g.problem(w, st, problem.New(problem.BodyTooLarge, http.StatusRequestEntityTooLarge,
			"the request body is larger than this route accepts"))
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBody)
	}
	if tunnel {
		if _, rule := g.shapeRule(st); rule != nil {
			// A tunnel's messages cannot be trimmed: the client would read
			// every field its rule hides.
			g.problem(w, st, problem403("this client's answers on this route are trimmed to its fields, which a WebSocket cannot be"))
			return
		}
		g.serveTunnel(w, r.WithContext(ctx), st, &facts)
		return
	}
	// An answer without a type goes out without one: net/http would
	// otherwise guess one from the first bytes (text/html for markup an
	// upstream sent as data), which X-Content-Type-Options forbids the
	// browser, not the server. An upstream's type is added to this nil.
	w.Header()["Content-Type"] = nil
	if g.direct(r, rt, st) {
		g.forward(w, r, rt, st)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, rt.Timeout)
	defer cancel()
	rt.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// hostAllowed checks the host the client asked for (Host, or a trusted
// proxy's X-Forwarded-Host) against the configured names, and records it
// for X-Forwarded-Host. Health checks are exempt: orchestrators probe them
// by IP address.
func (g *Gateway) hostAllowed(r *http.Request, st *state) bool {
	host := r.Host
	if st.client.PeerTrusted {
		if v := r.Header.Values("X-Forwarded-Host"); len(v) > 0 {
			// The right-most value is the one our trusted peer set.
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			host = strings.TrimSpace(last)
		}
	}
	if _, ok := hostName(host); !ok {
		host = ""
	}
	st.host = host
	if g.cfg.Hosts.Match(host) && host != "" {
		return true
	}
	return st.path == ReservedPrefix+"/healthz" || st.path == ReservedPrefix+"/readyz"
}

// isUpgrade reports whether a request asks to switch protocols: an
// Upgrade header named in Connection.
func isUpgrade(h http.Header) bool {
	if len(h["Upgrade"]) == 0 {
		return false
	}
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// Tunnel end causes.
var (
	errTunnelLifetime = errors.New("tunnel reached its maximum lifetime")
	errTunnelRevoked  = errors.New("the credential that opened the tunnel is no longer valid")
)

// serveTunnel proxies a WebSocket upgrade. The handshake must finish
// within the route timeout; the tunnel then lives at most TunnelLifetime,
// and ends as soon as a recheck finds that the key or session that opened
// it was revoked, expired or disabled.
func (g *Gateway) serveTunnel(w http.ResponseWriter, r *http.Request, st *state, facts *decision.Facts) {
	rt := st.route
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	life := time.AfterFunc(rt.TunnelLifetime, func() { cancel(errTunnelLifetime) })
	defer life.Stop()
	handshake := time.AfterFunc(rt.Timeout, func() {
		if !st.upgraded.Load() {
			cancel(context.DeadlineExceeded)
		}
	})
	defer handshake.Stop()
	// The listener's read and write deadlines would otherwise end the
	// hijacked connection after server.read_timeout.
	rc := http.NewResponseController(w)
	end := time.Now().Add(rt.TunnelLifetime)
	_ = rc.SetReadDeadline(end)
	_ = rc.SetWriteDeadline(end)
	t := &tunnel{st: st, facts: facts, method: r.Method, ctx: ctx, cancel: cancel, upstream: rt.Upstream,
		opened: end.Add(-rt.TunnelLifetime), end: end, life: life}
	t.decide.Store(rt.decide)
	g.hold(t)
	defer t.release()
	if rt.Policy != decision.Public {
		// (A public tunnel has nothing to recheck; a reload that puts a
		// credential on its route closes it, since it was opened without.)
		go g.watchTunnel(t)
	}
	rt.proxy.ServeHTTP(w, r.WithContext(ctx))
	if cause := context.Cause(ctx); st.upgraded.Load() &&
		(errors.Is(cause, errTunnelRevoked) || errors.Is(cause, errTunnelLifetime) || errors.Is(cause, errTunnelReloaded)) {
		g.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "tunnel closed",
			slog.String("request_id", st.id), slog.String("route", rt.Name), slog.String("reason", cause.Error()))
	}
}

// watchTunnel rechecks the tunnel's credential until the tunnel ends,
// under the route of the config in force (a reload moves it; see
// tunnels.go).
func (g *Gateway) watchTunnel(t *tunnel) {
	tick := time.NewTicker(g.cfg.TunnelRecheck)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
			if g.cfg.Decider.Recheck(t.ctx, t.decide.Load(), t.facts) != decision.Allowed {
				t.cancel(errTunnelRevoked)
				return
			}
		}
	}
}

func (g *Gateway) problem(w http.ResponseWriter, st *state, p *problem.Problem) {
	problem.Write(w, p, st.id)
}

// requestID accepts a well-formed X-Request-Id from a trusted proxy, so one
// ID follows a request across hops, and otherwise makes one. IDs are not
// secrets: a random per-process prefix and a counter keep them unique cheaply.
func (g *Gateway) requestID(r *http.Request, trusted bool) string {
	if trusted {
		if v := r.Header.Get("X-Request-Id"); validRequestID(v) {
			return v
		}
	}
	var buf [32]byte
	b := append(buf[:0], g.idBase...)
	b = strconv.AppendUint(b, g.idSeq.Add(1), 36)
	return string(b)
}

func validRequestID(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// accessLog writes the request's line.
func (g *Gateway) accessLog(r *http.Request, st *state, sw *statusWriter, end time.Time, elapsed time.Duration) {
	method := r.Method
	if len(method) > maxLoggedMethod {
		// Any token is a method, up to the header limit: keep lines short.
		method = method[:maxLoggedMethod] + "…"
	}
	e := accessEntry{time: end, requestID: st.id, method: method, path: st.path, status: sw.status, bytes: sw.bytes,
		duration: elapsed, client: st.client.Client, proto: r.Proto, outcome: st.outcome, why: st.why,
		subject: st.ident.Subject, keyID: st.ident.KeyID}
	if st.route != nil {
		e.route = st.route.Name
	}
	if st.span != nil {
		if sc := st.span.SpanContext(); sc.IsSampled() {
			e.traceID = sc.TraceID()
		}
	}
	if e.path == "" {
		e.path = "(invalid)"
	}
	g.cfg.AccessLog.write(&e)
}

// maxLoggedMethod bounds the method an access-log line names.
const maxLoggedMethod = 24

// newProxy builds the reverse proxy of one route. It uses Rewrite, never
// Director: headers set in a Director can be dropped again as hop-by-hop
// (golang/go#50580), and Rewrite starts from a request with the forwarding
// headers already removed.
func (g *Gateway) newProxy(rt *route) *httputil.ReverseProxy {
	up := rt.Upstream
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(stateKey{}).(*state)
			g.rewrite(pr, rt, st)
		},
		Transport:  tracing.Transport(no1xx{up.transport}, g.cfg.Tracer, up.name),
		BufferPool: g.bufs,
		ModifyResponse: func(res *http.Response) error {
			st := res.Request.Context().Value(stateKey{}).(*state)
			g.modifyAnswer(res.Header, rt)
			if res.StatusCode == http.StatusSwitchingProtocols {
				st.upgraded.Store(true)
				st.status = http.StatusSwitchingProtocols
				return nil
			}
			c, rule := g.shapeRule(st)
			if res.Body != nil && res.Body != http.NoBody {
				// Trailers are headers too: chunked HTTP/1.1 and HTTP/2
				// answers, with a length or without, can end in them.
				// Shaping reads and closes the body, so this comes first.
				res.Body = &trailerScrubber{ReadCloser: res.Body, res: res, g: g, rt: rt, drop: rule != nil}
			}
			if rule == nil {
				return nil
			}
			// A shaped answer is a document keyway makes: the upstream's
			// trailers (digests, validators, anything else) speak of the
			// unshaped one, so none is announced or sent. HTTP/2 would
			// send them whatever the answer's length.
			res.Trailer = nil
			return shapeResponse(res, c, rule)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.proxyError(w, r, r.Context().Value(stateKey{}).(*state), rt, err)
		},
		ErrorLog: log.New(slogWriter{g.cfg.Logger}, "", 0),
	}
}

// trailerScrubber applies modifyAnswer to an answer's trailers once its
// body is closed (ReverseProxy copies them to the client after that), or
// with drop, removes them all.
type trailerScrubber struct {
	io.ReadCloser
	res  *http.Response
	g    *Gateway
	rt   *route
	drop bool
}

func (t *trailerScrubber) Close() error {
	err := t.ReadCloser.Close()
	if t.drop {
		clear(t.res.Trailer)
		return err
	}
	t.g.modifyAnswer(t.res.Trailer, t.rt)
	return err
}

// no1xx keeps ReverseProxy's hook for informational answers from the
// transport, which then skips them (bounded by the head limit), as the
// direct path does. ReverseProxy would pass an upstream's 103 to the
// client unscrubbed, a Set-Cookie of keyway's name included, and then
// clear the answer's headers, HSTS and the request ID among them.
type no1xx struct{ rt http.RoundTripper }

func (n no1xx) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := n.rt.RoundTrip(r.WithContext(noClientTrace{r.Context()}))
	if err == nil && res.StatusCode < 100 {
		// A final answer below 100 (http.ReadResponse takes "000" to
		// "099") would make ReverseProxy's WriteHeader panic.
		_ = res.Body.Close()
		return nil, errBadStatus
	}
	return res, err
}

// noClientTrace is a context without an httptrace.ClientTrace.
type noClientTrace struct{ context.Context }

func (c noClientTrace) Value(k any) any {
	v := c.Context.Value(k)
	if _, ok := v.(*httptrace.ClientTrace); ok {
		return nil
	}
	return v
}

// forwardPath is the path sent upstream for the normalised path p: without
// the prefix when the route strips it, under the upstream's base path.
func (rt *route) forwardPath(p string) string {
	if rt.StripPrefix {
		p = strings.TrimPrefix(p, rt.Prefix)
		if p == "" || p[0] != '/' {
			p = "/" + p
		}
	}
	if up := rt.Upstream.url; up.Path != "" && up.Path != "/" {
		p = strings.TrimSuffix(up.Path, "/") + p
	}
	return p
}

func (g *Gateway) rewrite(pr *httputil.ProxyRequest, rt *route, st *state) {
	out := pr.Out
	up := rt.Upstream.url
	out.URL.Scheme = up.Scheme
	out.URL.Host = up.Host
	out.URL.Path = rt.forwardPath(st.path)
	out.URL.RawPath = ""
	out.Host = ""

	// A request's trailers are never forwarded: they would arrive after
	// keyway's checks of the head, and even their declared names (a
	// Trailer field of X-Keyway-Subject, Cookie) are the client's word.
	out.Trailer = nil
	// Identity and forwarding headers belong to keyway alone: strip every
	// spelling a client sent before setting ours (see headers.go).
	scrubInbound(out.Header, g.keyHeader, rt.pass)
	// Trace context: a client's is dropped in every spelling (it would
	// pick the trace, and the sampling, of the upstream's spans); with
	// tracing on, keyway's replaces even a trusted proxy's, in the
	// transport (see tracing.Transport).
	if !st.client.PeerTrusted || g.cfg.Tracer != nil {
		dropTraceContext(out.Header, !st.client.PeerTrusted)
	}
	// Browser credentials stay with keyway.
	stripKeywayCookies(out.Header)
	// The key is the caller's credential for keyway, never for the upstream.
	if ch := g.keyHeader; rt.Policy == decision.APIKey {
		out.Header.Del(ch)
	} else {
		for _, v := range out.Header.Values(ch) {
			if keyShaped(v) {
				out.Header.Del(ch)
				break
			}
		}
	}
	if _, rule := g.shapeRule(st); rule != nil {
		// The answer is read to be shaped: ask for all of it, unencoded.
		shapedRequest(out.Method, out.Header)
	}
	// The keys are written in canonical form, so no canonicalisation runs,
	// and every value keyway sets comes from one array: one allocation,
	// each value a full slice expression of its own, so that an append
	// to one copies rather than overwrites the next.
	var set keywayHeaderSet
	g.keywayHeaders(pr.In, st, &set)
	vals := make([]string, set.n)
	for i, kv := range set.p[:set.n] {
		vals[i] = kv.v
		out.Header[kv.k] = vals[i : i+1 : i+1]
	}
}

// keywayHeaderSet holds the headers keyway sets on a request it forwards,
// in canonical form; it lives on the caller's stack.
type keywayHeaderSet struct {
	n int
	p [14]struct{ k, v string }
}

func (s *keywayHeaderSet) add(k, v string) {
	s.p[s.n].k, s.p[s.n].v = k, v
	s.n++
}

// keywayHeaders computes the headers keyway sets on a forwarded request,
// for both paths: the identity, the request ID, the signed assertion, and
// X-Forwarded-* (a trusted proxy's chain extended, otherwise afresh; the
// client's are removed on both paths before these are set).
func (g *Gateway) keywayHeaders(in *http.Request, st *state, set *keywayHeaderSet) {
	if id := &st.ident; id.Subject != "" {
		set.add("X-Keyway-Subject", id.Subject)
		if id.KeyID != "" {
			set.add("X-Keyway-Key-Id", id.KeyID)
		}
		if id.Scopes != "" {
			set.add("X-Keyway-Scopes", id.Scopes)
		}
		if id.Name != "" {
			set.add("X-Keyway-Name", id.Name)
		}
		if id.Roles != "" {
			set.add("X-Keyway-Roles", id.Roles)
		}
		if id.Session != nil {
			set.add("X-Keyway-Session-Id", id.Session.ID)
		}
		if id.Client != "" {
			set.add("X-Keyway-Client", id.Client)
		}
	}
	set.add("X-Request-Id", st.id)
	if st.assertion != "" {
		set.add(assertion.Header, st.assertion)
	}
	peer := st.client.Peer.String()
	client := peer
	proto := "https"
	if st.client.PeerTrusted {
		if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			peer = strings.Join(prior, ", ") + ", " + peer
		}
		if p := in.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			proto = p
		}
		client = st.client.Client.String()
	}
	set.add("X-Forwarded-For", peer)
	set.add("X-Forwarded-Proto", proto)
	set.add("X-Real-Ip", client)
	if st.host != "" {
		set.add("X-Forwarded-Host", st.host)
	}
}

// keyShaped reports whether s holds what looks like a keyway key.
func keyShaped(s string) bool {
	return strings.Contains(s, "kw_live_") || strings.Contains(s, "kw_test_")
}

// queryHasKey looks for a key in a raw query, percent-decoded too
// (kw%5Flive_…), so an encoding cannot smuggle one past the check.
func queryHasKey(q string) bool {
	if keyShaped(q) {
		return true
	}
	if strings.IndexByte(q, '%') < 0 {
		return false
	}
	// Decode leniently: a stray "%zz" elsewhere must not hide a key.
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] == '%' && i+2 < len(q) && ishex(q[i+1]) && ishex(q[i+2]) {
			b.WriteByte(unhex(q[i+1])<<4 | unhex(q[i+2]))
			i += 2
			continue
		}
		b.WriteByte(q[i])
	}
	return keyShaped(b.String())
}

// modifyAnswer removes from an upstream's answer what must not reach the
// client, on both paths.
func (g *Gateway) modifyAnswer(h http.Header, rt *route) {
	scrubResponse(h)
	if !rt.AllowUpstreamCookies {
		// A cookie an upstream sets would be a second session, one keyway
		// cannot revoke.
		delete(h, "Set-Cookie")
	}
	if rt.Policy == decision.Session {
		dropCORS(h)
	}
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, st *state, rt *route, err error) {
	var tooBig *http.MaxBytesError
	var shapeErr *errShape
	switch {
	case errors.As(err, &shapeErr):
		g.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "answer refused: it cannot be shaped for its client",
			slog.String("request_id", st.id), slog.String("route", rt.Name), slog.String("client", st.ident.Client),
			slog.String("reason", shapeErr.why))
		g.problem(w, st, problem.New(problem.BadGateway, http.StatusBadGateway,
			"the upstream's answer cannot be given to this client: it could not be trimmed to the client's fields"))
	case errors.As(err, &tooBig):
		g.problem(w, st, problem.New(problem.BodyTooLarge, http.StatusRequestEntityTooLarge,
			"the request body is larger than this route accepts"))
	case errors.Is(err, errUpstreamTimeout) || errors.Is(context.Cause(r.Context()), context.DeadlineExceeded):
		g.cfg.Logger.LogAttrs(r.Context(), slog.LevelWarn, "upstream timeout",
			slog.String("request_id", st.id), slog.String("upstream", rt.Upstream.name), slog.Duration("timeout", rt.Timeout))
		g.problem(w, st, problem.New(problem.GatewayTimeout, http.StatusGatewayTimeout, "the upstream did not answer in time"))
	case errors.Is(err, context.Canceled):
		// The client went away, or its connection failed a read: the
		// access log says 499, and the connection (or stream) is cut
		// rather than left to net/http's empty 200, which a client still
		// reading would take for a success.
		st.status = 499
		st.abort = true
	default:
		g.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "upstream error",
			slog.String("request_id", st.id), slog.String("upstream", rt.Upstream.name), slog.String("error", err.Error()))
		g.problem(w, st, problem.New(problem.BadGateway, http.StatusBadGateway, "the upstream could not be reached"))
	}
}

func problem403(detail string) *problem.Problem {
	return problem.New(problem.Forbidden, http.StatusForbidden, detail)
}

// Close releases the upstreams' idle connections and the limiters.
func (g *Gateway) Close() {
	closeRoutes(g.routes)
}

func closeRoutes(routes []*route) {
	for _, r := range routes {
		if r.Upstream != nil {
			r.Upstream.Close()
		}
		r.decide.Close()
	}
}

// statusWriter records the status and size of a response for the access log
// and metrics. Unwrap lets http.ResponseController reach Flush and deadlines.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferPool recycles the proxy's copy buffers: without it every proxied
// request allocates 32 KiB.
type bufferPool struct{ p sync.Pool }

// copyBufSize is the size of the buffers that copy bodies.
const copyBufSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// slogWriter carries the reverse proxy's own log lines into slog.
type slogWriter struct{ l *slog.Logger }

func (s slogWriter) Write(p []byte) (int, error) {
	s.l.Error("proxy", slog.String("error", strings.TrimSpace(string(p))))
	return len(p), nil
}

// printableTarget reports whether a request target holds no space, control
// character or DEL.
func printableTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}
