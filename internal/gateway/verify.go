package gateway

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"github.com/keywayhq/keyway/internal/assertion"
	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/headername"
	"github.com/keywayhq/keyway/internal/problem"
)

// VerifyPath is forward auth's endpoint. Each proxy has a path of its own,
// so that keyway reads the one header the proxy itself sets and never one
// a client slipped through it (nginx passes a client's X-Forwarded-Uri to
// the auth request; Caddy passes a client's X-Original-URI):
//
//   - VerifyPath: Traefik ForwardAuth, Caddy forward_auth and the like,
//     which name the original request in X-Forwarded-Method and
//     X-Forwarded-Uri;
//   - VerifyPath+"/nginx": nginx auth_request, with X-Original-URI (or
//     X-Original-URL) and X-Original-Method set in the auth location;
//   - VerifyPath+"/envoy" followed by the original path, with the original
//     method: Envoy ext_authz (HTTP service) with that path_prefix.
const VerifyPath = ReservedPrefix + "/verify"

const (
	verifyNginx = VerifyPath + "/nginx"
	verifyEnvoy = VerifyPath + "/envoy"
)

// ForwardAuth configures the forward-auth endpoint.
type ForwardAuth struct {
	// Proxies resolves the proxies that may ask: only their forwarded
	// headers are believed, and only they get an answer. Required.
	Proxies *clientip.Resolver
	// Signer and Audience, when set, add an X-Keyway-Assertion to every
	// answer that lets a request pass.
	Signer   *assertion.Signer
	Audience string
}

// identityHeaders are set on every answer that lets a request pass, empty
// when they do not apply, so that a proxy copying them always overwrites
// whatever the client sent. X-Keyway-Cookie is the request's Cookie without
// keyway's own cookies: what the proxy should send upstream instead.
var identityHeaders = []string{"X-Keyway-Subject", "X-Keyway-Key-Id", "X-Keyway-Scopes", "X-Keyway-Name",
	"X-Keyway-Session-Id", "X-Keyway-Client", "X-Keyway-Roles", "X-Keyway-Cookie"}

// verifyMode is the contract of the proxy that asks.
type verifyMode uint8

const (
	// modeNginx: auth_request passes only 401 and 403 to the client (any
	// other status becomes a 500), so every refusal is one of those, with
	// the status keyway means in X-Keyway-Status for the proxy to map.
	modeNginx verifyMode = iota
	// modeForward: Traefik and Caddy copy a refusal to the client as it is.
	modeForward
	// modeEnvoy: ext_authz allows on exactly 200 and copies refusals.
	modeEnvoy
)

// original is the request a proxy asks about.
type original struct {
	method, uri string
}

// originalRequest reads what the proxy says of the original request, from
// the headers of the contract its path names, and only those.
func originalRequest(r *http.Request, path string) (verifyMode, original, bool) {
	h := r.Header
	switch {
	case path == VerifyPath:
		uri, method := h.Get("X-Forwarded-Uri"), h.Get("X-Forwarded-Method")
		if method == "" {
			method = r.Method
		}
		return modeForward, original{method: method, uri: requestURI(uri)}, uri != ""
	case path == verifyNginx:
		uri := h.Get("X-Original-Uri")
		if uri == "" {
			uri = h.Get("X-Original-Url")
		}
		method := h.Get("X-Original-Method")
		if method == "" {
			method = r.Method
		}
		return modeNginx, original{method: method, uri: requestURI(uri)}, uri != ""
	case strings.HasPrefix(path, verifyEnvoy+"/"):
		// The original path after the prefix as Envoy sent it (it is
		// decoded once, below, like any request's), and the original
		// method. Not r.URL.EscapedPath(): for a path holding a byte Go
		// escapes ("|", "^", a byte above 0x7f) it re-escapes the decoded
		// path, and "%2F" would come back as "/".
		uri := requestURI(r.RequestURI) // absolute-form too
		if !strings.HasPrefix(uri, verifyEnvoy+"/") {
			return modeEnvoy, original{}, false
		}
		return modeEnvoy, original{method: r.Method, uri: strings.TrimPrefix(uri, verifyEnvoy)}, true
	}
	return modeForward, original{}, false
}

// requestURI keeps the path and query of an absolute URL (X-Original-URL
// may be one) as they were written, or returns uri as it is. Not
// url.URL.RequestURI(): for a path holding a byte Go escapes it
// re-escapes the decoded path, and "%2F" would come back as "/".
func requestURI(uri string) string {
	if strings.HasPrefix(uri, "/") || strings.IndexByte(uri, '#') >= 0 {
		return uri // a fragment is refused, not dropped: see plainPath
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || !strings.HasPrefix(uri[len(u.Scheme):], "://") {
		return uri // NormalizePath refuses it
	}
	rest := uri[len(u.Scheme)+len("://"):] // the authority holds no "/" or "?"
	switch i := strings.IndexAny(rest, "/?"); {
	case i < 0:
		return "/"
	case rest[i] == '?':
		return "/" + rest[i:]
	default:
		return rest[i:]
	}
}

// validMethod reports an HTTP method token of a sane length.
func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// serveVerify answers a proxy that asks whether the original request it
// describes may pass, with the same decision the proxy itself would make:
// the same normalisation, routes, policies, limits and revocations.
func (g *Gateway) serveVerify(w http.ResponseWriter, r *http.Request, st *state, path string) {
	fa := g.cfg.ForwardAuth
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	client := fa.Proxies.Resolve(r)
	if !client.PeerTrusted {
		// Anyone else could describe any request and learn its answer.
		g.problem(w, st, problem403("forward auth answers its trusted proxies only"))
		return
	}
	st.client = client
	mode, orig, ok := originalRequest(r, path)
	deny := func(status int, p *problem.Problem, d *decision.Decision) {
		if d != nil {
			g.cfg.Decider.SetHeaders(h, d)
		}
		if mode == modeNginx && status != http.StatusUnauthorized && status != http.StatusForbidden {
			h.Set("X-Keyway-Status", strconv.Itoa(status))
			cp := *p
			cp.Status, cp.Title = http.StatusForbidden, http.StatusText(http.StatusForbidden)
			p = &cp
		}
		g.problem(w, st, p)
	}
	if k := ambiguousContract(r.Header, mode); k != "" {
		// The proxy sets its contract's headers once, replacing a client's;
		// a second value, or both spellings of nginx's URI, means one came
		// from the client (a configuration that sets X-Original-URL would
		// otherwise let a client's X-Original-URI win).
		deny(http.StatusBadRequest, problem.New(problem.BadRequest, http.StatusBadRequest,
			"forward auth got "+k+" more than once (or both X-Original-URI and X-Original-URL): one of them is the client's"), nil)
		return
	}
	if !ok || !validMethod(orig.method) {
		deny(http.StatusBadRequest, problem.New(problem.BadRequest, http.StatusBadRequest,
			"forward auth needs the original request: X-Forwarded-Uri and X-Forwarded-Method at /.keyway/verify, "+
				"X-Original-URI and X-Original-Method at /.keyway/verify/nginx, or the path after /.keyway/verify/envoy"), nil)
		return
	}
	escPath, rawQuery, _ := strings.Cut(orig.uri, "?")
	if strings.IndexByte(orig.uri, '#') >= 0 || (mode == modeEnvoy && strings.IndexByte(r.RequestURI, '#') >= 0) || !plainPath(escPath) {
		deny(http.StatusBadRequest, problem.New(problem.BadRequest, http.StatusBadRequest,
			"forward auth answers for a path only as the upstream will get it: the proxy passes the path on as sent, "+
				"so a fragment (#), a dot segment (literal or %2e) or an empty segment (//) is refused, not resolved"), nil)
		return
	}
	opath, err := NormalizePath(escPath, g.cfg.CaseInsensitivePaths)
	if err != nil {
		deny(http.StatusBadRequest, problem.New(problem.BadRequest, http.StatusBadRequest, err.Error()), nil)
		return
	}
	if keyShaped(opath) || queryHasKey(rawQuery) {
		deny(http.StatusBadRequest, problem.New(problem.BadRequest, http.StatusBadRequest,
			"API keys must not be sent in URLs; send them in the Authorization header (and rotate this one)"), nil)
		return
	}
	pr := g.table.lookup(opath)
	var rt *route
	if pr != nil {
		rt = pr.forMethod(orig.method)
	}
	if rt == nil || opath == ReservedPrefix || strings.HasPrefix(opath, ReservedPrefix+"/") {
		// No route, no pass: the proxy in front must not serve what keyway
		// does not know.
		deny(http.StatusNotFound, problem.New(problem.NotFound, http.StatusNotFound, "no route matches the original request"), nil)
		return
	}
	st.route = rt
	if k := passedOnUnchecked(r.Header, mode, g.keyHeader, rt.pass); k != "" {
		deny(http.StatusBadRequest, problem.New(problem.BadRequest, http.StatusBadRequest,
			"the request carries "+k+", which an upstream may act on (another method or path, or one of keyway's headers "+
				"under another spelling); keyway's proxy would drop it, and at forward auth it cannot, so it refuses it"), nil)
		return
	}
	facts := g.cfg.Decider.FactsFrom(r, rt.decide, client, st.id)
	facts.Method = orig.method
	// Upgrade and Connection are hop-by-hop: nginx and Traefik leave them
	// off the auth request. A browser's WebSocket handshake also says
	// Sec-Fetch-Mode: websocket, which does come through: the Origin rule
	// for upgrades must not depend on what the proxy keeps.
	// Sec-WebSocket-Key is end-to-end too, and every WebSocket client
	// sends it (browsers without Sec-Fetch-Mode, programs).
	if !facts.Upgrade && (len(r.Header["Sec-Websocket-Key"]) > 0 ||
		asciiEqualFold(textproto.TrimString(r.Header.Get("Sec-Fetch-Mode")), "websocket")) {
		facts.Upgrade = true
	}
	if facts.Upgrade && (!rt.WebSocket || orig.method != http.MethodGet ||
		(len(r.Header["Upgrade"]) > 0 && !asciiEqualFold(textproto.TrimString(r.Header.Get("Upgrade")), "websocket"))) {
		// As keyway's proxy answers: an upgraded connection is a tunnel
		// nobody checks any more, for WebSocket routes only.
		deny(http.StatusBadRequest, problem.New(problem.BadRequest, http.StatusBadRequest,
			"this route does not accept this protocol upgrade"), nil)
		return
	}
	d := g.cfg.Decider.Decide(r.Context(), rt.decide, &facts)
	st.outcome, st.why = d.Reason.String(), d.Why
	st.ident.Subject, st.ident.KeyID = d.Identity.Subject, d.Identity.KeyID // for the log only
	if !d.Allowed() {
		deny(d.Reason.Status(), g.cfg.Decider.Problem(&d), &d)
		return
	}
	g.cfg.Decider.SetHeaders(h, &d)
	id := &d.Identity
	sid := ""
	if id.Session != nil {
		sid = id.Session.ID
	}
	cookie := ""
	if vs := r.Header["Cookie"]; len(vs) > 0 {
		cookies := http.Header{"Cookie": vs}
		stripKeywayCookies(cookies)
		cookie = cookies.Get("Cookie")
	}
	// One backing array for the values: an answer is on every request's path.
	vals := [...]string{id.Subject, id.KeyID, id.Scopes, id.Name, sid, id.Client, id.Roles, cookie, cookie, ""}
	for i, name := range identityHeaders {
		h[name] = vals[i : i+1 : i+1]
	}
	if mode != modeNginx {
		// Traefik and Envoy copy answer headers by name, without renaming:
		// the cookies without keyway's, under their own name.
		h["Cookie"] = vals[8:9:9]
	}
	// Set, empty, when nothing is signed: every published configuration
	// copies it, and a proxy that copies only the headers an answer has
	// would let a client's own through.
	h[assertion.Header] = vals[9:10:10]
	if fa.Signer != nil && fa.Audience != "" {
		tok, err := fa.Signer.Sign(assertion.Claims{Subject: id.Subject, Audience: fa.Audience, Method: orig.method, Path: opath,
			KeyID: id.KeyID, Scopes: id.Scopes, Roles: id.Roles, Session: sid, Client: id.Client})
		if err != nil {
			deny(http.StatusInternalServerError, problem.New(problem.Internal, http.StatusInternalServerError, "the decision could not be signed"), nil)
			return
		}
		h[assertion.Header] = []string{tok}
	}
	w.WriteHeader(http.StatusOK)
}

// plainPath reports whether an escaped path is one keyway's own proxy
// would forward unchanged but for its escapes: no dot segment, literal or
// escaped ("%2e"), and no empty segment but a trailing one. At forward
// auth the proxy in front passes the path on as the client sent it (nginx
// without a URI on proxy_pass, Caddy, Traefik, the Go middleware), and
// upstreams read "/a/x/../../b" or "/a//../b" each their own way: keyway
// must not answer for a path other than the one the upstream serves.
func plainPath(esc string) bool {
	for i := 0; i < len(esc); i++ {
		if esc[i] != '/' {
			continue
		}
		seg := esc[i+1:]
		if j := strings.IndexByte(seg, '/'); j >= 0 {
			seg = seg[:j]
		}
		if seg == "" && i+1 < len(esc) {
			return false // "//"
		}
		if len(seg) <= len("%2e%2e") && seg != "" && dots(seg) {
			return false
		}
	}
	return true
}

// dots reports whether a segment is "." or "..", with any dot escaped.
func dots(seg string) bool {
	n := 0
	for i := 0; i < len(seg); n++ {
		switch {
		case seg[i] == '.':
			i++
		case i+2 < len(seg) && seg[i] == '%' && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 3
		default:
			return false
		}
	}
	return n <= 2
}

// passedOnUnchecked returns the name of a header of the original request
// that keyway's own proxy would drop and that the proxy in front passes
// on: a method or path override in any spelling (X-HTTP-Method-Override,
// X_Original_URL, …) that the route does not pass, or another spelling of
// a header keyway sets or trusts (X_Keyway_Subject, X-Forwarded_For), which
// CGI-style servers read as keyway's own. It returns "" when there is none.
// nginx's X-Original-URI, -URL and -Method at its door are its own, set by
// its auth location (nginx itself drops names with "_").
func passedOnUnchecked(h http.Header, mode verifyMode, keyHeader string, pass map[string]bool) string {
	for k := range h {
		switch {
		case mode == modeNginx && (k == "X-Original-Uri" || k == "X-Original-Url" || k == "X-Original-Method"):
		case headername.Override(k):
			if !pass[k] {
				return k
			}
		case strings.IndexByte(k, '_') >= 0 && headername.Protected(k, keyHeader):
			return k
		}
	}
	return ""
}

// ambiguousContract returns the name of a contract header of mode that
// the request carries more than once, "X-Original-Uri" when nginx's
// request carries both spellings of the URI, or "".
func ambiguousContract(h http.Header, mode verifyMode) string {
	var names []string
	switch mode {
	case modeNginx:
		if len(h["X-Original-Uri"]) > 0 && len(h["X-Original-Url"]) > 0 {
			return "X-Original-Uri"
		}
		names = []string{"X-Original-Uri", "X-Original-Url", "X-Original-Method"}
	case modeForward:
		names = []string{"X-Forwarded-Uri", "X-Forwarded-Method"}
	default:
		return ""
	}
	for _, k := range names {
		if len(h[k]) > 1 {
			return k
		}
	}
	return ""
}
