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

// shapeResponse trims a 2xx JSON answer to what the client may see.
func shapeResponse(res *http.Response, c *Client, rule *shape.Rule) error {
	if res.StatusCode < 200 || res.StatusCode > 299 || res.Request.Method == http.MethodHead ||
		res.StatusCode == http.StatusNoContent {
		return nil
	}
	if ce := res.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// keyway asked for no encoding; a compressed body cannot be read.
		return &errShape{why: "the upstream sent a " + ce + "-encoded body"}
	}
	if !isJSON(res.Header.Get("Content-Type")) {
		if c.PassNonJSON {
			return nil
		}
		return &errShape{why: "the answer is not JSON (" + res.Header.Get("Content-Type") + ")"}
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
	if err != nil {
		return &errShape{why: "the answer is not valid JSON"}
	}
	res.Body = io.NopCloser(bytes.NewReader(out))
	res.ContentLength = int64(len(out))
	res.TransferEncoding = nil
	h := res.Header
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	// The body changed: validators and digests of the upstream's no longer hold.
	for _, k := range []string{"Etag", "Content-Md5", "Digest", "Content-Digest", "Repr-Digest"} {
		delete(h, k)
	}
	return nil
}

// isJSON reports application/json and the +json media types.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
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
