package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/problem"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/session"
)

// Accounts is what the auth endpoints need of the passkey service.
type Accounts interface {
	BeginSignUp(ctx context.Context, username, displayName, invite string) (passkey.Options, string, error)
	BeginAddPasskey(ctx context.Context, userID, name string) (passkey.Options, string, error)
	FinishRegistration(ctx context.Context, ceremonyID, userID string, body []byte) (*passkey.User, *passkey.Credential, error)
	BeginLogin(ctx context.Context, username string) (passkey.Options, string, error)
	FinishLogin(ctx context.Context, ceremonyID string, body []byte) (*passkey.LoginResult, error)
	BeginStepUp(ctx context.Context, userID string) (passkey.Options, string, error)
	FinishStepUp(ctx context.Context, ceremonyID, userID string, body []byte) (*passkey.LoginResult, error)
	User(ctx context.Context, id string) (*passkey.User, error)
	Users(ctx context.Context) ([]*passkey.User, error)
	SetRoles(ctx context.Context, id string, roles []string, actor string) (*passkey.User, error)
	Credentials(ctx context.Context, userID string) ([]*passkey.Credential, error)
	Rename(ctx context.Context, userID, ref, name string) error
	Remove(ctx context.Context, userID, ref, actor string) (int, error)
	IssueRecoveryCodes(ctx context.Context, userID string) ([]string, error)
	UseRecoveryCode(ctx context.Context, username, code string) (*passkey.User, error)
	UnusedRecoveryCodes(ctx context.Context, userID string) (int, error)
	CreateLink(ctx context.Context, kind, userID string, role passkey.Role, createdBy string, ttl time.Duration) (string, error)
	RedeemEnrolment(ctx context.Context, token string) (*passkey.User, error)
	RememberSource(ctx context.Context, userID, source string) error
	KnownSource(ctx context.Context, username, source string) (bool, error)
}

// Sessions is what the auth endpoints need of the session manager.
type Sessions interface {
	Create(ctx context.Context, userID string, credentialID []byte, restricted bool, ip, userAgent, actor string) (string, *session.Session, error)
	Authenticate(ctx context.Context, token string) (*session.Session, error)
	Fresh(s *session.Session) bool
	StepUp(ctx context.Context, s *session.Session, actor string) (string, error)
	List(ctx context.Context, userID string) ([]*session.Session, error)
	Revoke(ctx context.Context, userID, sessionID, actor string) error
	RevokeAny(ctx context.Context, sessionID, actor string) error
	RevokeOthers(ctx context.Context, userID, keepID, actor string) (int, error)
	RevokeUser(ctx context.Context, userID, actor string) (int, error)
}

// AuthConfig configures the people-facing endpoints under /.keyway/auth/.
type AuthConfig struct {
	Accounts Accounts
	Sessions Sessions
	// Decider decides who may call each endpoint (sessions, the CSRF
	// rule, step-up, the admin role). Required.
	Decider *decision.Core
	// Keys serves the signed-in user's own API keys. Optional.
	Keys KeyAdmin
	// SessionMaxAge is the cookie's Max-Age (the absolute session timeout).
	SessionMaxAge time.Duration
	// PublicURL is the base URL people reach keyway at, for links.
	PublicURL string
	// SelfServiceScopes are the scopes people may put on their own keys.
	// AdminScope is refused whatever this says.
	SelfServiceScopes []string
	// Privacy, when set, lets people export and erase their own account.
	Privacy PrivacyAdmin
	// OnLockout, when set, hears of each refusal by an abuse limit: the
	// limit's name ("login", "recover-user"…) and its key, which holds an
	// address or a username (to audit it, pseudonymously).
	OnLockout func(limit, key string)
	// OnSignInFailed, when set, hears of each sign-in whose passkey
	// response was refused, with why ("ceremony", "cloned") and from where.
	OnSignInFailed func(why string, client netip.Addr)
}

// The ceremony cookie binds a WebAuthn ceremony to the browser that began it.
const ceremonyCookie = "__Host-keyway_ceremony"

// auth serves /.keyway/auth/… and /.keyway/admin/….
type auth struct {
	*server
	cfg   AuthConfig
	limit BulkLimiter[string]
	now   func() time.Time
	// What each endpoint requires; every one applies the CSRF rule to
	// state changes, sign-in included (login CSRF).
	open     *decision.Route // anyone
	optional *decision.Route // anyone; a signed-in person (even in recovery) is known
	any      *decision.Route // a signed-in person, recovery sessions included
	full     *decision.Route // a signed-in person
	fresh    *decision.Route // a signed-in person with a recent step-up
	admin    *decision.Route // an administrator with a recent step-up
}

// newAuthRoutes prepares what the endpoints require.
func (a *auth) newRoutes() error {
	for _, r := range []struct {
		dst *(*decision.Route)
		cfg decision.RouteConfig
	}{
		{&a.open, decision.RouteConfig{Name: "own:open", Policy: decision.Public}},
		{&a.optional, decision.RouteConfig{Name: "own:optional", Policy: decision.Session, Optional: true, AllowRestricted: true}},
		{&a.any, decision.RouteConfig{Name: "own:any", Policy: decision.Session, AllowRestricted: true}},
		{&a.full, decision.RouteConfig{Name: "own:full", Policy: decision.Session}},
		{&a.fresh, decision.RouteConfig{Name: "own:fresh", Policy: decision.Session, Fresh: true}},
		{&a.admin, decision.RouteConfig{Name: "own:admin", Policy: decision.Session, Admin: true}},
	} {
		r.cfg.CSRF = true
		rt, err := a.cfg.Decider.NewRoute(r.cfg)
		if err != nil {
			return err
		}
		*r.dst = rt
	}
	return nil
}

// guarded is a handler that runs once the decision core let its caller
// in, as id (empty on open endpoints and for anonymous callers of
// optional ones).
type guarded func(w http.ResponseWriter, r *http.Request, id *decision.Identity) error

// Rate limits of the auth endpoints, per client IP and per account. They
// are generous for people and tight for scripts; a limit spent by an
// attacker on one account does not lock its owner out of signing in with a
// passkey, which only the owner can answer.
var (
	limitCeremony = ratelimit.Limit{Count: 30, Period: time.Minute, Burst: 20}
	limitSignUp   = ratelimit.Limit{Count: 10, Period: time.Hour, Burst: 5}
	limitRecovery = ratelimit.Limit{Count: 5, Period: 15 * time.Minute, Burst: 5}
	// An account's recovery budget across unfamiliar sources: large enough
	// that only many sources at full rate all day can spend it (about 21
	// at limitRecovery's pace), and a source the owner signed in from
	// before is not held to it at all. 80-bit codes keep even a year of
	// this budget (3.65M guesses against 10 codes) at a success chance
	// below 1e-16.
	limitRecoveryAccount = ratelimit.Limit{Count: 10000, Period: 24 * time.Hour, Burst: 1000}
)

func (a *auth) register(mux *http.ServeMux) {
	h := func(pattern string, rt *decision.Route, fn guarded) {
		mux.Handle(pattern, a.handle(a.guard(rt, fn)))
	}
	h("POST /.keyway/auth/passkey/register/begin", a.optional, a.registerBegin)
	h("POST /.keyway/auth/passkey/register/finish", a.optional, a.registerFinish)
	h("POST /.keyway/auth/passkey/login/begin", a.open, a.loginBegin)
	h("POST /.keyway/auth/passkey/login/finish", a.optional, a.loginFinish)
	h("POST /.keyway/auth/logout", a.optional, a.logout)
	h("GET /.keyway/auth/session", a.any, a.currentSession)
	h("POST /.keyway/auth/stepup/begin", a.full, a.stepUpBegin)
	h("POST /.keyway/auth/stepup/finish", a.full, a.stepUpFinish)
	h("GET /.keyway/auth/sessions", a.full, a.listSessions)
	h("DELETE /.keyway/auth/sessions/{id}", a.full, a.revokeSession)
	h("POST /.keyway/auth/sessions/revoke-others", a.full, a.revokeOthers)
	h("GET /.keyway/auth/passkeys", a.full, a.listPasskeys)
	h("PATCH /.keyway/auth/passkeys/{id}", a.full, a.renamePasskey)
	h("DELETE /.keyway/auth/passkeys/{id}", a.fresh, a.removePasskey)
	h("POST /.keyway/auth/recovery", a.open, a.recover)
	h("POST /.keyway/auth/recovery/codes", a.fresh, a.regenerateCodes)
	h("POST /.keyway/auth/enrol", a.open, a.enrol)
	if a.cfg.Privacy != nil {
		h("POST /.keyway/auth/account/export", a.fresh, a.exportAccount)
		h("POST /.keyway/auth/account/erase", a.fresh, a.eraseAccount)
	}
	if a.cfg.Keys != nil {
		h("GET /.keyway/api-keys", a.full, a.listMyKeys)
		h("POST /.keyway/api-keys", a.fresh, a.createMyKey)
		h("POST /.keyway/api-keys/{id}/rotate", a.fresh, a.rotateMyKey)
		h("POST /.keyway/api-keys/{id}/revoke", a.full, a.revokeMyKey)
		h("GET /.keyway/api-keys/{id}/usage", a.full, a.myKeyUsage)
	}
	h("GET /.keyway/admin/users", a.admin, a.adminUsers)
	h("POST /.keyway/admin/users/{id}/enrol-link", a.admin, a.adminEnrolLink)
	h("POST /.keyway/admin/users/{id}/revoke-sessions", a.admin, a.adminRevokeSessions)
	h("PUT /.keyway/admin/users/{id}/roles", a.admin, a.adminSetRoles)
	h("POST /.keyway/admin/invites", a.admin, a.adminInvite)
	h("GET /.keyway/admin/sessions", a.admin, a.adminSessions)
	h("DELETE /.keyway/admin/sessions/{id}", a.admin, a.adminRevokeSession)
}

// guard asks the decision core whether the caller may use an endpoint
// that requires rt, and runs fn if so.
func (a *auth) guard(rt *decision.Route, fn guarded) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		info, _ := requestInfo(r)
		f := a.cfg.Decider.FactsFrom(r, rt, info.Client, info.ID)
		d := a.cfg.Decider.Decide(r.Context(), rt, &f)
		if !d.Allowed() {
			a.cfg.Decider.WriteDenial(w, &d, info.ID)
			return nil
		}
		w.Header().Set("Cache-Control", "no-store")
		return fn(w, r, &d.Identity)
	}
}

// source names where a request comes from, for rate limits: the client's
// IPv4 address, or its IPv6 network (a /64 by default: one host usually
// owns a whole /64, and could otherwise rotate through it).
func source(r *http.Request) string {
	if info, ok := requestInfo(r); ok {
		return info.Client.Source.String()
	}
	return ""
}

// rememberSource notes that userID passed a passkey ceremony from this
// request's source. It is a convenience for recovery, not a condition of
// the sign-in: a failure is logged, not returned.
func (a *auth) rememberSource(r *http.Request, userID string) {
	if err := a.cfg.Accounts.RememberSource(r.Context(), userID, source(r)); err != nil {
		a.logger.LogAttrs(r.Context(), slog.LevelWarn, "remember sign-in source",
			slog.String("request_id", requestID(r)), slog.String("error", err.Error()))
	}
}

// allow spends one request of key's budget, or answers 429.
func (a *auth) allow(key string, l ratelimit.Limit) error {
	if d := a.limit.Allow(key, l); !d.Allowed {
		if d.Unavailable {
			// The shared budget is out of reach: abuse limits fail closed.
			return problem.New(problem.Unavailable, http.StatusServiceUnavailable, "temporarily unavailable; try again shortly")
		}
		if a.cfg.OnLockout != nil {
			name, _, _ := strings.Cut(key, ":")
			a.cfg.OnLockout(name, key)
		}
		p := problem.New(problem.TooManyAttempts, http.StatusTooManyRequests, "too many attempts; wait and try again")
		p.RetryAfter = d.RetryAfter
		return p
	}
	return nil
}

func (a *auth) setSessionCookie(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{Name: decision.SessionCookie, Value: token, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(a.cfg.SessionMaxAge / time.Second)})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// readBody reads a WebAuthn response body (bounded).
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil || len(b) > 64<<10 {
		return nil, problem.New(problem.BadRequest, http.StatusBadRequest, "the credential is missing or too large")
	}
	return b, nil
}

func (a *auth) startCeremony(w http.ResponseWriter, opts passkey.Options, id string) error {
	http.SetCookie(w, &http.Cookie{Name: ceremonyCookie, Value: id, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 300})
	return writeJSON(w, http.StatusOK, opts)
}

func ceremonyOf(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(ceremonyCookie)
	clearCookie(w, ceremonyCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// UserJSON is the API form of a person.
type UserJSON struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
	// Roles are the roles an administrator gave the person (what session
	// routes with roles: require); Role is keyway's own.
	Roles []string `json:"roles"`
}

func userJSON(u *passkey.User) UserJSON {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return UserJSON{ID: u.ID, Username: u.Username, DisplayName: u.DisplayName, Role: string(u.Role), Roles: roles}
}

func (a *auth) registerBegin(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	var req struct {
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
		Invite      string `json:"invite"`
		Name        string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if s := id.Session; s != nil {
		// Adding a passkey: a recovery session may; a full one must be fresh.
		if !s.Restricted && !a.cfg.Sessions.Fresh(s) {
			return decision.StepUp
		}
		opts, cid, err := a.cfg.Accounts.BeginAddPasskey(r.Context(), s.UserID, req.Name)
		if err != nil {
			return err
		}
		return a.startCeremony(w, opts, cid)
	}
	if err := a.allow("signup:"+source(r), limitSignUp); err != nil {
		return err
	}
	opts, cid, err := a.cfg.Accounts.BeginSignUp(r.Context(), req.Username, req.DisplayName, req.Invite)
	if err != nil {
		return err
	}
	return a.startCeremony(w, opts, cid)
}

func (a *auth) registerFinish(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	ceremony := ceremonyOf(w, r)
	body, err := readBody(r)
	if err != nil {
		return err
	}
	s := id.Session
	userID := ""
	if s != nil {
		userID = s.UserID
		// Fresh at the finish too, not only at the begin: a ceremony
		// lives for minutes, and the new passkey is what is granted.
		if !s.Restricted && !a.cfg.Sessions.Fresh(s) {
			return decision.StepUp
		}
	}
	u, cred, err := a.cfg.Accounts.FinishRegistration(r.Context(), ceremony, userID, body)
	if err != nil {
		return err
	}
	actor := principal.User(u.ID).String()
	resp := map[string]any{"user": userJSON(u), "passkey": passkeyJSON(cred, "")}
	switch {
	case s == nil:
		// A new account: sign it in, and hand out its recovery codes once.
		codes, err := a.cfg.Accounts.IssueRecoveryCodes(r.Context(), u.ID)
		if err != nil {
			return err
		}
		tok, _, err := a.cfg.Sessions.Create(r.Context(), u.ID, cred.ID, false, clientOf(r).String(), r.UserAgent(), actor)
		if err != nil {
			return err
		}
		a.setSessionCookie(w, tok)
		a.rememberSource(r, u.ID)
		resp["recovery_codes"] = codes
	case s.Restricted:
		// Recovery done: the restricted session gives way to a full one
		// bound to the new passkey.
		if err := a.cfg.Sessions.Revoke(r.Context(), s.UserID, s.ID, actor); err != nil && !errors.Is(err, session.ErrNotFound) {
			return err
		}
		tok, _, err := a.cfg.Sessions.Create(r.Context(), u.ID, cred.ID, false, clientOf(r).String(), r.UserAgent(), actor)
		if err != nil {
			return err
		}
		a.setSessionCookie(w, tok)
	}
	return writeJSON(w, http.StatusCreated, resp)
}

func (a *auth) loginBegin(w http.ResponseWriter, r *http.Request, _ *decision.Identity) error {
	var req struct {
		Username string `json:"username"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := a.allow("login:"+source(r), limitCeremony); err != nil {
		return err
	}
	if req.Username != "" {
		if name, err := passkey.NormalizeUsername(req.Username); err == nil {
			// Per account and source, so a stranger spending his own budget
			// on someone's name does not make it answer 429 to its owner.
			if err := a.allow("login-user:"+name+"|"+source(r), limitCeremony); err != nil {
				return err
			}
		}
	}
	opts, cid, err := a.cfg.Accounts.BeginLogin(r.Context(), req.Username)
	if err != nil {
		return err
	}
	return a.startCeremony(w, opts, cid)
}

func (a *auth) loginFinish(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	ceremony := ceremonyOf(w, r)
	if err := a.allow("login:"+source(r), limitCeremony); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	res, err := a.cfg.Accounts.FinishLogin(r.Context(), ceremony, body)
	if err != nil {
		if a.cfg.OnSignInFailed != nil {
			switch {
			case errors.Is(err, passkey.ErrCloned):
				a.cfg.OnSignInFailed("cloned", clientOf(r))
			case errors.Is(err, passkey.ErrCeremony):
				a.cfg.OnSignInFailed("ceremony", clientOf(r))
			}
		}
		return err
	}
	// A sign-in always gets a new token; an old session in this browser ends
	// (no session fixation).
	if old := id.Session; old != nil {
		_ = a.cfg.Sessions.Revoke(r.Context(), old.UserID, old.ID, principal.User(old.UserID).String())
	}
	tok, s, err := a.cfg.Sessions.Create(r.Context(), res.User.ID, res.Credential.ID, false, clientOf(r).String(), r.UserAgent(),
		principal.User(res.User.ID).String())
	if err != nil {
		return err
	}
	a.setSessionCookie(w, tok)
	a.rememberSource(r, res.User.ID)
	return writeJSON(w, http.StatusOK, map[string]any{"user": userJSON(res.User), "session": sessionJSON(s, s.ID, a.cfg.Sessions.Fresh(s))})
}

func (a *auth) logout(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	if s := id.Session; s != nil {
		if err := a.cfg.Sessions.Revoke(r.Context(), s.UserID, s.ID, id.Subject); err != nil && !errors.Is(err, session.ErrNotFound) {
			return err
		}
	}
	clearCookie(w, decision.SessionCookie)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// SessionJSON is the API form of a session.
type SessionJSON struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	Current    bool      `json:"current"`
	Fresh      bool      `json:"fresh,omitempty"`
	Restricted bool      `json:"restricted,omitempty"`
	Passkey    string    `json:"passkey,omitempty"`
}

func sessionJSON(s *session.Session, current string, fresh bool) SessionJSON {
	j := SessionJSON{ID: s.ID, CreatedAt: s.CreatedAt, LastSeenAt: s.LastSeenAt, ExpiresAt: s.ExpiresAt, IP: s.IP,
		UserAgent: s.UserAgent, Current: s.ID == current, Restricted: s.Restricted}
	if j.Current {
		j.Fresh = fresh
	}
	if s.CredentialID != nil {
		j.Passkey = passkey.CredentialRef(s.CredentialID)
	}
	return j
}

func (a *auth) currentSession(w http.ResponseWriter, _ *http.Request, id *decision.Identity) error {
	s := id.Session
	return writeJSON(w, http.StatusOK, map[string]any{"user": userJSON(id.User), "session": sessionJSON(s, s.ID, a.cfg.Sessions.Fresh(s))})
}

func (a *auth) stepUpBegin(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	if err := a.allow("stepup:"+id.User.ID, limitCeremony); err != nil {
		return err
	}
	opts, cid, err := a.cfg.Accounts.BeginStepUp(r.Context(), id.User.ID)
	if err != nil {
		return err
	}
	return a.startCeremony(w, opts, cid)
}

func (a *auth) stepUpFinish(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	ceremony := ceremonyOf(w, r)
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if _, err := a.cfg.Accounts.FinishStepUp(r.Context(), ceremony, id.User.ID, body); err != nil {
		return err
	}
	tok, err := a.cfg.Sessions.StepUp(r.Context(), id.Session, id.Subject)
	if err != nil {
		return err
	}
	a.setSessionCookie(w, tok)
	a.rememberSource(r, id.User.ID)
	return writeJSON(w, http.StatusOK, map[string]any{"fresh": true})
}

func (a *auth) listSessions(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	list, err := a.cfg.Sessions.List(r.Context(), id.User.ID)
	if err != nil {
		return err
	}
	out := make([]SessionJSON, 0, len(list))
	for _, x := range list {
		out = append(out, sessionJSON(x, id.Session.ID, a.cfg.Sessions.Fresh(id.Session)))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (a *auth) revokeSession(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	sid := r.PathValue("id")
	if err := a.cfg.Sessions.Revoke(r.Context(), id.User.ID, sid, id.Subject); err != nil {
		return err
	}
	if sid == id.Session.ID {
		clearCookie(w, decision.SessionCookie)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *auth) revokeOthers(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	n, err := a.cfg.Sessions.RevokeOthers(r.Context(), id.User.ID, id.Session.ID, id.Subject)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// PasskeyJSON is the API form of a passkey.
type PasskeyJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Provider   string     `json:"provider"`
	Synced     bool       `json:"synced"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Current    bool       `json:"current,omitempty"`
}

func passkeyJSON(c *passkey.Credential, currentRef string) PasskeyJSON {
	ref := passkey.CredentialRef(c.ID)
	j := PasskeyJSON{ID: ref, Name: c.Name, Provider: passkey.ProviderName(c.AAGUID), Synced: c.Synced(), CreatedAt: c.CreatedAt,
		Current: ref == currentRef}
	if !c.LastUsedAt.IsZero() {
		t := c.LastUsedAt
		j.LastUsedAt = &t
	}
	return j
}

func (a *auth) listPasskeys(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	creds, err := a.cfg.Accounts.Credentials(r.Context(), id.User.ID)
	if err != nil {
		return err
	}
	cur := ""
	if id.Session.CredentialID != nil {
		cur = passkey.CredentialRef(id.Session.CredentialID)
	}
	out := make([]PasskeyJSON, 0, len(creds))
	for _, c := range creds {
		out = append(out, passkeyJSON(c, cur))
	}
	codes, err := a.cfg.Accounts.UnusedRecoveryCodes(r.Context(), id.User.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"passkeys": out, "recovery_codes_left": codes})
}

func (a *auth) renamePasskey(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := a.cfg.Accounts.Rename(r.Context(), id.User.ID, r.PathValue("id"), req.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *auth) removePasskey(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	ref := r.PathValue("id")
	n, err := a.cfg.Accounts.Remove(r.Context(), id.User.ID, ref, id.Subject)
	if err != nil {
		return err
	}
	// Every session this passkey signed in has ended, this one included
	// if it was one of them.
	if s := id.Session; s.CredentialID != nil && passkey.CredentialRef(s.CredentialID) == ref {
		clearCookie(w, decision.SessionCookie)
	}
	return writeJSON(w, http.StatusOK, map[string]int{"sessions_ended": n})
}

func (a *auth) recover(w http.ResponseWriter, r *http.Request, _ *decision.Identity) error {
	var req struct {
		Username string `json:"username"`
		Code     string `json:"code"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := a.allow("recover:"+source(r), limitRecovery); err != nil {
		return err
	}
	if name, err := passkey.NormalizeUsername(req.Username); err == nil {
		src := source(r)
		if err := a.allow("recover-user:"+name+"|"+src, limitRecovery); err != nil {
			return err
		}
		known, err := a.cfg.Accounts.KnownSource(r.Context(), name, src)
		if err != nil {
			return err
		}
		if !known {
			if err := a.allow("recover-user:"+name, limitRecoveryAccount); err != nil {
				return err
			}
		}
	}
	u, err := a.cfg.Accounts.UseRecoveryCode(r.Context(), req.Username, req.Code)
	if err != nil {
		return problem.New(problem.Unauthenticated, http.StatusUnauthorized, "that username and recovery code do not match")
	}
	return a.restrictedSession(w, r, u)
}

// restrictedSession signs u in for one thing only: adding a passkey.
func (a *auth) restrictedSession(w http.ResponseWriter, r *http.Request, u *passkey.User) error {
	tok, s, err := a.cfg.Sessions.Create(r.Context(), u.ID, nil, true, clientOf(r).String(), r.UserAgent(), principal.User(u.ID).String())
	if err != nil {
		return err
	}
	a.setSessionCookie(w, tok)
	return writeJSON(w, http.StatusOK, map[string]any{"user": userJSON(u), "session": sessionJSON(s, s.ID, false),
		"next": "register a new passkey: POST /.keyway/auth/passkey/register/begin"})
}

func (a *auth) enrol(w http.ResponseWriter, r *http.Request, _ *decision.Identity) error {
	var req struct {
		Token string `json:"token"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := a.allow("recover:"+source(r), limitRecovery); err != nil {
		return err
	}
	u, err := a.cfg.Accounts.RedeemEnrolment(r.Context(), req.Token)
	if err != nil {
		return problem.New(problem.Unauthenticated, http.StatusUnauthorized, "the enrolment link is invalid, used or expired")
	}
	return a.restrictedSession(w, r, u)
}

// exportAccount gives the signed-in person everything keyway holds about
// them, as a JSON file.
func (a *auth) exportAccount(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	exp, err := a.cfg.Privacy.Export(r.Context(), id.User.ID, id.Subject)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", `attachment; filename="keyway-account.json"`)
	return writeJSON(w, http.StatusOK, exp)
}

// eraseAccount erases the signed-in person, who must type their username
// to confirm, and signs the browser out.
func (a *auth) eraseAccount(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	var req struct {
		Confirm string `json:"confirm"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if norm, err := passkey.NormalizeUsername(req.Confirm); err != nil || norm != id.User.Username {
		return problem.New(problem.BadRequest, http.StatusBadRequest, "type your username to confirm that your account is to be erased")
	}
	if err := a.cfg.Privacy.Erase(r.Context(), id.User.ID, id.Subject); err != nil {
		return err
	}
	clearCookie(w, decision.SessionCookie)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *auth) regenerateCodes(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	codes, err := a.cfg.Accounts.IssueRecoveryCodes(r.Context(), id.User.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

// ---- admin ----

func (a *auth) adminUsers(w http.ResponseWriter, r *http.Request, _ *decision.Identity) error {
	users, err := a.cfg.Accounts.Users(r.Context())
	if err != nil {
		return err
	}
	out := make([]UserJSON, 0, len(users))
	for _, u := range users {
		out = append(out, userJSON(u))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (a *auth) adminEnrolLink(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	u, err := a.cfg.Accounts.User(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	tok, err := a.cfg.Accounts.CreateLink(r.Context(), "enrol", u.ID, u.Role, id.Subject, 24*time.Hour)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, map[string]string{"url": a.cfg.PublicURL + "/.keyway/portal/enrol#token=" + tok,
		"expires_in": "24h"})
}

func (a *auth) adminInvite(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	var req struct {
		Role string `json:"role"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	role := passkey.RoleUser
	if req.Role == string(passkey.RoleAdmin) {
		role = passkey.RoleAdmin
	}
	tok, err := a.cfg.Accounts.CreateLink(r.Context(), "invite", "", role, id.Subject, 7*24*time.Hour)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, map[string]string{"url": a.cfg.PublicURL + "/.keyway/portal/signup#invite=" + tok,
		"expires_in": "168h"})
}

// adminSetRoles replaces a person's roles: {"roles": ["billing", "ops"]}.
func (a *auth) adminSetRoles(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	var req struct {
		Roles *[]string `json:"roles"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Roles == nil {
		return badRequest(`roles is required: {"roles": ["billing"]}, or [] for none`)
	}
	u, err := a.cfg.Accounts.SetRoles(r.Context(), r.PathValue("id"), *req.Roles, id.Subject)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, userJSON(u))
}

func (a *auth) adminRevokeSessions(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	n, err := a.cfg.Sessions.RevokeUser(r.Context(), r.PathValue("id"), id.Subject)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (a *auth) adminSessions(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	users, err := a.cfg.Accounts.Users(r.Context())
	if err != nil {
		return err
	}
	type userSessions struct {
		User     UserJSON      `json:"user"`
		Sessions []SessionJSON `json:"sessions"`
	}
	out := []userSessions{}
	for _, u := range users {
		list, err := a.cfg.Sessions.List(r.Context(), u.ID)
		if err != nil {
			return err
		}
		us := userSessions{User: userJSON(u), Sessions: []SessionJSON{}}
		for _, x := range list {
			us.Sessions = append(us.Sessions, sessionJSON(x, id.Session.ID, false))
		}
		out = append(out, us)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (a *auth) adminRevokeSession(w http.ResponseWriter, r *http.Request, id *decision.Identity) error {
	if err := a.cfg.Sessions.RevokeAny(r.Context(), r.PathValue("id"), id.Subject); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
