package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/session"
)

// SessionCookie is the browser's session cookie. The __Host- prefix makes
// browsers insist on Secure, Path=/ and no Domain, so no other subdomain can
// set or read it.
const SessionCookie = "__Host-keyway_session"

// CSRFHeader must accompany every state-changing request that carries the
// session cookie. A cross-site form cannot set a custom header, and a
// cross-site fetch that sets one needs a CORS preflight keyway never grants.
const CSRFHeader = "X-Keyway-Csrf"

// ErrCSRF means a cookie-carrying state-changing request failed the CSRF check.
var ErrCSRF = errors.New("cross-site request refused")

// CheckCSRF decides whether a state-changing request may be trusted to come
// from keyway's own pages: it must send X-Keyway-CSRF: 1, its
// Sec-Fetch-Site (when the browser sends one) must be same-origin, and its
// Origin (when present) must be one of origins. Safe methods pass.
func CheckCSRF(r *http.Request, origins []string) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get(CSRFHeader) != "1" {
		return ErrCSRF
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return ErrCSRF
	}
	if o := r.Header.Get("Origin"); o != "" && !slices.Contains(origins, o) {
		return ErrCSRF
	}
	return nil
}

// SessionVerifier is what the session authorizer needs of the session manager.
type SessionVerifier interface {
	// Authenticate returns session.ErrNotFound for a token that is unknown,
	// expired or revoked.
	Authenticate(ctx context.Context, token string) (*session.Session, error)
}

// UserLookup finds the person behind a session.
type UserLookup interface {
	User(ctx context.Context, id string) (*passkey.User, error)
}

// SessionAuthConfig configures SessionAuth.
type SessionAuthConfig struct {
	// Sessions verifies session tokens. Required.
	Sessions SessionVerifier
	// Users finds users. Required.
	Users UserLookup
	// Origins are keyway's own origins, for the CSRF check. Required.
	Origins []string
	// Logger receives store failures. Required.
	Logger *slog.Logger
}

// SessionAuth authorizes session routes: a browser with a live session
// cookie, and for writes, a request that passes the CSRF check. The upstream
// gets the person's identity headers, never the cookie.
type SessionAuth struct {
	cfg SessionAuthConfig
}

// NewSessionAuth validates cfg.
func NewSessionAuth(cfg SessionAuthConfig) (*SessionAuth, error) {
	if cfg.Sessions == nil || cfg.Users == nil || cfg.Logger == nil || len(cfg.Origins) == 0 {
		return nil, errors.New("gateway: Sessions, Users, Origins and Logger are required")
	}
	return &SessionAuth{cfg: cfg}, nil
}

var (
	probNoSession = &problem.Problem{Type: problem.Unauthenticated, Title: "Unauthorized", Status: http.StatusUnauthorized,
		Detail: "sign in with a passkey first"}
	probCSRF = &problem.Problem{Type: problem.CSRF, Title: "Forbidden", Status: http.StatusForbidden,
		Detail: "state-changing requests must come from this site and send X-Keyway-CSRF: 1"}
)

// CheckUpgradeOrigin guards a WebSocket handshake that carries the session
// cookie: browsers send cookies on cross-site handshakes (a GET, so the
// CSRF header rule does not apply), so the Origin must be one of keyway's
// and Sec-Fetch-Site, when sent, same-origin.
func CheckUpgradeOrigin(r *http.Request, origins []string) error {
	if o := r.Header.Get("Origin"); o == "" || !slices.Contains(origins, o) {
		return ErrCSRF
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin":
		return nil
	}
	return ErrCSRF
}

// Authorize implements Authorizer.
func (a *SessionAuth) Authorize(w http.ResponseWriter, r *http.Request, _ *RouteInfo, _ netip.Addr) (Identity, *problem.Problem) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		w.Header().Set("WWW-Authenticate", `Cookie realm="keyway"`)
		return Identity{}, probNoSession
	}
	if err := CheckCSRF(r, a.cfg.Origins); err != nil {
		return Identity{}, probCSRF
	}
	if isUpgrade(r.Header) {
		if err := CheckUpgradeOrigin(r, a.cfg.Origins); err != nil {
			return Identity{}, probCSRF
		}
	}
	s, err := a.cfg.Sessions.Authenticate(r.Context(), c.Value)
	switch {
	case errors.Is(err, session.ErrNotFound):
		w.Header().Set("WWW-Authenticate", `Cookie realm="keyway"`)
		return Identity{}, probNoSession
	case err != nil:
		a.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "session check failed", slog.String("error", err.Error()))
		return Identity{}, probUnavailable
	case s.Restricted:
		// A recovery session may only add a passkey, in keyway's own pages.
		return Identity{}, probNoSession
	}
	u, err := a.cfg.Users.User(r.Context(), s.UserID)
	if err != nil || !u.DisabledAt.IsZero() {
		return Identity{}, probNoSession
	}
	return Identity{Subject: "user:" + u.ID, Name: u.DisplayName, Session: s.ID, LimiterKey: u.ID}, nil
}

// Recheck implements Rechecker: the session must still be live, full, and
// its user enabled.
func (a *SessionAuth) Recheck(ctx context.Context, r *http.Request, _ *RouteInfo, _ netip.Addr) error {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return errNoCredential
	}
	s, err := a.cfg.Sessions.Authenticate(ctx, c.Value)
	if err != nil {
		return err
	}
	if s.Restricted {
		return errNoCredential
	}
	u, err := a.cfg.Users.User(ctx, s.UserID)
	if err != nil {
		return err
	}
	if !u.DisabledAt.IsZero() {
		return errNoCredential
	}
	return nil
}

// stripKeywayCookies removes keyway's own cookies from an outbound Cookie
// header and keeps the rest: the upstream may have cookies of its own, but
// never ours.
func stripKeywayCookies(h http.Header) {
	vals := h.Values("Cookie")
	if len(vals) == 0 {
		return
	}
	var keep []string
	for _, v := range vals {
		for _, part := range strings.Split(v, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name == "" || KeywayCookie(name) {
				continue
			}
			keep = append(keep, strings.TrimSpace(part))
		}
	}
	h.Del("Cookie")
	if len(keep) > 0 {
		h.Set("Cookie", strings.Join(keep, "; "))
	}
}
