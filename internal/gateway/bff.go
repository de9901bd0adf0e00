package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/shape"
)

// Client is a client profile as the proxy applies it: the CORS policy of
// the browser's profile, and the fields each client receives. Which routes
// a client may call is the decision core's to check.
type Client struct {
	// Name is the profile's name. Required.
	Name string
	// Session marks the browser's profile (credential session).
	Session bool
	// Routes are the route names the client may call, each with the
	// methods it may use (empty: every method): CORS preflights answer
	// with them.
	Routes map[string][]string
	// CORSOrigins are the exact origins of the browser app (session
	// profile only); CORSHeaders the request headers a preflight may ask
	// for besides Content-Type and X-Keyway-CSRF; CORSMaxAge how long a
	// preflight may be cached.
	CORSOrigins []string
	CORSHeaders []string
	CORSMaxAge  time.Duration
	// Fields trims the JSON answers of routes, by route name.
	Fields map[string]*shape.Rule
	// PassNonJSON passes an answer that is not JSON on a route with a
	// field rule; otherwise it is refused (502), never passed unshaped.
	PassNonJSON bool
	// MaxShapedBody bounds a shaped answer (502 above it). Required when
	// Fields is set.
	MaxShapedBody int64
}

func (c *Client) allows(route, method string) bool {
	methods, ok := c.Routes[route]
	return ok && (len(methods) == 0 || slices.Contains(methods, method))
}

// corsOrigin returns the request's Origin when the browser's profile lets
// that origin call rt with its method (a preflight asks for the method in
// Access-Control-Request-Method), or "".
func (g *Gateway) corsOrigin(r *http.Request, rt *route, method string) string {
	b := g.browser
	if b == nil || len(b.CORSOrigins) == 0 || rt.Policy != decision.Session {
		return ""
	}
	o := r.Header.Get("Origin")
	if o == "" || !slices.Contains(b.CORSOrigins, o) || !b.allows(rt.Name, method) {
		return ""
	}
	return o
}

// exposed are the response headers a browser app may read across origins.
const exposed = "X-Request-Id, Retry-After, Ratelimit, Ratelimit-Policy"

// setCORS marks a response for a browser app on origin o.
func setCORS(h http.Header, o string) {
	h["Access-Control-Allow-Origin"] = []string{o}
	h["Access-Control-Allow-Credentials"] = []string{"true"}
	h["Access-Control-Expose-Headers"] = []string{exposed}
	h.Add("Vary", "Origin")
}

// preflight answers a CORS preflight for a path whose routes are pr, and
// reports whether it did. keyway answers it itself: the preflight carries no
// credentials, and an upstream must never widen who may call with them.
func (g *Gateway) preflight(w http.ResponseWriter, r *http.Request, st *state, pr *prefixRoutes) bool {
	if r.Method != http.MethodOptions || r.Header.Get("Origin") == "" || g.browser == nil || len(g.browser.CORSOrigins) == 0 {
		return false
	}
	want := r.Header.Get("Access-Control-Request-Method")
	if want == "" {
		return false
	}
	rt := pr.forMethod(want)
	if rt == nil || rt.Policy != decision.Session {
		return false
	}
	st.route = rt
	h := w.Header()
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	o := g.corsOrigin(r, rt, want)
	if o == "" {
		g.problem(w, st, problem403("this origin may not call this route or method"))
		return true
	}
	var methods []string
	for m, mr := range pr.methods {
		if g.browser.allows(mr.Name, m) && mr.Policy == decision.Session {
			methods = append(methods, m)
		}
	}
	slices.Sort(methods)
	h["Access-Control-Allow-Origin"] = []string{o}
	h["Access-Control-Allow-Credentials"] = []string{"true"}
	h["Access-Control-Allow-Methods"] = []string{strings.Join(methods, ", ")}
	h["Access-Control-Allow-Headers"] = []string{strings.Join(append([]string{"Content-Type", decision.CSRFHeader}, g.browser.CORSHeaders...), ", ")}
	h["Access-Control-Max-Age"] = []string{strconv.FormatInt(int64(g.browser.CORSMaxAge/time.Second), 10)}
	w.WriteHeader(http.StatusNoContent)
	return true
}

// shapeRule is the field rule of the client the request came as, on rt.
func (g *Gateway) shapeRule(st *state) (*Client, *shape.Rule) {
	if st.ident.Client == "" {
		return nil, nil
	}
	c := g.clients[st.ident.Client]
	if c == nil {
		return nil, nil
	}
	return c, c.Fields[st.route.Name]
}

// errShape is an answer that could not be shaped for its client; the
// proxy answers 502, never the unshaped body.
type errShape struct{ why string }

func (e *errShape) Error() string { return "cannot shape the answer: " + e.why }

// shapeResponse trims an answer to what the client may see: every answer
// with a body, errors included (a 409 may hold the whole resource). The
// request went without Range and validators (shapedRequest), so a 206 or
// a 304 is refused; a HEAD keeps no length or validator of the unshaped
// body.
func shapeResponse(res *http.Response, c *Client, rule *shape.Rule) error {
	h := res.Header
	if res.StatusCode < 200 || res.StatusCode == http.StatusNoContent {
		return nil
	}
	if res.StatusCode == http.StatusPartialContent || res.StatusCode == http.StatusNotModified {
		// A piece of the document, or a verdict on the unshaped one; the
		// request asked for neither (shapedRequest).
		return &errShape{why: fmt.Sprintf("the upstream answered %d to a request without Range or validators", res.StatusCode)}
	}
	// The body changes: validators and digests of the upstream's no longer
	// hold (and would tell whether a hidden field changed).
	for _, k := range []string{"Etag", "Last-Modified", "Content-Md5", "Digest", "Content-Digest", "Repr-Digest", "Accept-Ranges"} {
		delete(h, k)
	}
	if res.Request.Method == http.MethodHead {
		delete(h, "Content-Length") // the unshaped body's
		return nil
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// keyway asked for no encoding; a compressed body cannot be read.
		return &errShape{why: "the upstream sent a " + ce + "-encoded body"}
	}
	if !maybeJSON(h.Get("Content-Type")) {
		switch {
		case res.StatusCode > 299:
			// An error page: its status goes on, its body does not.
			_ = res.Body.Close()
			res.Body, res.ContentLength, res.TransferEncoding = http.NoBody, 0, nil
			h["Content-Length"] = []string{"0"}
			delete(h, "Content-Type")
			return nil
		case c.PassNonJSON:
			return nil
		}
		return &errShape{why: "the answer is not JSON (" + h.Get("Content-Type") + ")"}
	}
	body, err := shape.ReadBounded(res.Body, c.MaxShapedBody)
	_ = res.Body.Close()
	if errors.Is(err, shape.ErrTooLarge) {
		return &errShape{why: fmt.Sprintf("the answer is larger than %d bytes", c.MaxShapedBody)}
	}
	if err != nil {
		return err
	}
	out, err := rule.Apply(body)
	if errors.Is(err, shape.ErrTooDeep) {
		return &errShape{why: err.Error()}
	}
	if err != nil {
		return &errShape{why: "the answer is not valid JSON"}
	}
	res.Body = io.NopCloser(bytes.NewReader(out))
	res.ContentLength = int64(len(out))
	res.TransferEncoding = nil
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	return nil
}

// maybeJSON reports whether an answer of type ct may be read as JSON:
// application/json and the +json types, and also a type that does not
// parse or is missing (browsers and most clients read
// "application/json; charset" as JSON, and res.json() reads anything),
// which must then be JSON to be shaped, never pass unshaped.
func maybeJSON(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// shapedRequest removes from a request on a shaped route what would let
// the upstream answer with less or other than the whole document to shape:
// Range (a piece of it, or multipart/byteranges, is not shapeable JSON),
// Accept-Encoding (the answer is read), and on a read the validators (a
// 304 or a 412 would tell whether a hidden field changed). A write keeps
// its preconditions: dropping them would turn a guarded update into a
// blind one.
func shapedRequest(method string, h http.Header) {
	for _, k := range []string{"Range", "If-Range", "Accept-Encoding"} {
		delete(h, k)
	}
	if method == http.MethodGet || method == http.MethodHead {
		for _, k := range []string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
			delete(h, k)
		}
	}
}

// dropCORS removes an upstream's CORS headers: on cookie routes keyway
// alone decides who may call with credentials.
func dropCORS(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
}
