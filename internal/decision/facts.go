package decision

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"

	"github.com/keywayhq/keyway/internal/clientip"
)

// SessionCookie is the browser's session cookie. The __Host- prefix makes
// browsers insist on Secure, Path=/ and no Domain, so no other subdomain can
// set or read it.
const SessionCookie = "__Host-keyway_session"

// CSRFHeader must accompany every state-changing request that carries the
// session cookie. A cross-site form cannot set a custom header, and a
// cross-site fetch that sets one needs a CORS preflight keyway never grants.
const CSRFHeader = "X-Keyway-Csrf"

// Facts are what the core decides on: the parts of a request that say who
// sends it and from where. Build them with FactsFrom, so that every door
// reads credentials the same way.
type Facts struct {
	// RequestID joins log lines about the decision to the request.
	RequestID string
	// Method is the request method.
	Method string
	// Client is the client's address after the trusted-proxy rules, and
	// Source the one that counts for per-client limits (see clientip).
	Client, Source netip.Addr
	// Key is the API key presented in the configured header, "" if none.
	// Secret: never log it.
	Key string
	// Session is the session cookie's value, "" if none. Secret.
	Session string
	// Origin and FetchSite are the Origin and Sec-Fetch-Site headers.
	Origin, FetchSite string
	// CSRFHeader reports X-Keyway-CSRF: 1.
	CSRFHeader bool
	// Upgrade reports a request to switch protocols (a WebSocket).
	Upgrade bool
}

// FactsFrom reads the facts of r for rt: r's client info comes from the
// trusted-proxy rules, and its ID is requestID. Only the credential rt's
// policy takes is read: a session cookie is never an API key route's
// credential, nor a key a session route's.
func (c *Core) FactsFrom(r *http.Request, rt *Route, client clientip.Info, requestID string) Facts {
	f := Facts{
		RequestID: requestID,
		Method:    r.Method,
		Client:    client.Client,
		Source:    client.Source,
		Upgrade:   IsUpgrade(r.Header),
	}
	switch rt.cfg.Policy {
	case APIKey:
		f.Key = c.presentedKey(r.Header)
	case Session:
		f.Session = sessionToken(r)
	case Public:
	}
	if rt.cfg.Policy == Session || rt.cfg.CSRF {
		f.Origin = r.Header.Get("Origin")
		f.FetchSite = r.Header.Get("Sec-Fetch-Site")
		f.CSRFHeader = r.Header.Get(CSRFHeader) == "1"
	}
	return f
}

// sessionToken is the session cookie's value, "" if none, or if there are
// two: a browser holds one __Host- cookie of a name, so a second was
// planted (by a client that ignores the prefix, or through a sibling
// host), and taking either could sign the person in as someone else.
func sessionToken(r *http.Request) string {
	if len(r.Header["Cookie"]) == 0 {
		return ""
	}
	cks := r.CookiesNamed(SessionCookie)
	if len(cks) != 1 {
		return ""
	}
	return cks[0].Value
}

// presentedKey extracts the key from the configured header: the bearer
// token of Authorization, or another header's whole value.
func (c *Core) presentedKey(h http.Header) string {
	v := h.Get(c.cfg.KeyHeader)
	if !c.bearer {
		return strings.TrimSpace(v)
	}
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// IsUpgrade reports whether a request asks to switch protocols: an Upgrade
// header named in Connection.
func IsUpgrade(h http.Header) bool {
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

// safeMethod reports methods that change nothing, which the CSRF rule lets
// through.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// csrfOK is the CSRF rule: a state-changing request must send
// X-Keyway-CSRF: 1, its Sec-Fetch-Site (when the browser sends one) must be
// same-origin, and its Origin (when present) one of keyway's origins; or,
// for the session client's browser app, Origin one of its CORS origins
// with Sec-Fetch-Site same-site or same-origin (the cookie is SameSite=Lax,
// so a cross-site app never has it anyway).
func (c *Core) csrfOK(rt *Route, f *Facts) bool {
	if safeMethod(f.Method) {
		return true
	}
	if !f.CSRFHeader {
		return false
	}
	if b := c.profilesFor(rt).browser; b != nil && f.Origin != "" && slices.Contains(b.CORSOrigins, f.Origin) {
		return f.FetchSite == "" || f.FetchSite == "same-origin" || f.FetchSite == "same-site"
	}
	switch f.FetchSite {
	case "", "same-origin", "none":
	default:
		return false
	}
	return f.Origin == "" || slices.Contains(c.cfg.Origins, f.Origin)
}

// upgradeOriginOK guards a WebSocket handshake that carries the session
// cookie: browsers send cookies on cross-site handshakes (a GET, so the
// CSRF header rule does not apply), so the Origin must be one of keyway's
// and Sec-Fetch-Site, when sent, same-origin.
func (f *Facts) upgradeOriginOK(origins []string) bool {
	if f.Origin == "" || !slices.Contains(origins, f.Origin) {
		return false
	}
	return f.FetchSite == "" || f.FetchSite == "same-origin"
}

func canonicalHeader(h string) string { return textproto.CanonicalMIMEHeaderKey(h) }
