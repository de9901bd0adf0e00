package portal

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/gateway"
	"github.com/keywayhq/keyway/internal/outage"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
)

// Prefix is where the portal is mounted.
const Prefix = "/.keyway/portal/"

// Policy is the Content-Security-Policy of every portal response: only the
// portal's own script, stylesheet and images, fetches to its own origin,
// forms posting to its own origin, and no framing.
const Policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Accounts is what the portal reads of the passkey service. Every method
// returns passkey.ErrNotFound for an unknown user.
type Accounts interface {
	User(ctx context.Context, id string) (*passkey.User, error)
	Users(ctx context.Context) ([]*passkey.User, error)
	Credentials(ctx context.Context, userID string) ([]*passkey.Credential, error)
	UnusedRecoveryCodes(ctx context.Context, userID string) (int, error)
}

// Sessions is what the portal reads of the session manager.
type Sessions interface {
	// List returns the live sessions of a user, newest first.
	List(ctx context.Context, userID string) ([]*session.Session, error)
}

// Keys is what the portal reads of the API key service.
type Keys interface {
	// List returns the keys of owner ("user:<id>"), or every key for "".
	List(ctx context.Context, owner string) ([]*apikey.Key, error)
	// UsageSince returns a key's hourly usage buckets from since on.
	UsageSince(ctx context.Context, id string, since time.Time) ([]apikey.UsageRow, error)
}

// AuditEntry is one audit event as the audit page shows it.
type AuditEntry struct {
	At      time.Time
	Type    string
	Actor   string
	Subject string
	Detail  map[string]string
}

// AuditLog reads the audit trail.
type AuditLog interface {
	// Recent returns at most n of the newest events, newest first.
	Recent(ctx context.Context, n int) ([]AuditEntry, error)
}

// Config configures the portal.
type Config struct {
	// Accounts reads users and passkeys. Required.
	Accounts Accounts
	// Sessions lists sessions. Required.
	Sessions Sessions
	// Decider decides who may see each page. Required.
	Decider *decision.Core
	// Keys reads API keys and their usage. Optional: without it the API
	// key pages are not served.
	Keys Keys
	// Audit reads the audit trail for the admin audit page. Optional:
	// without it the page says the trail is not available.
	Audit AuditLog
	// OpenSignUp says anyone may sign up without an invitation; the
	// sign-in page then links to sign-up. Default false.
	OpenSignUp bool
	// Origin is keyway's public origin ("https://localhost:8443"). When
	// set, the policy allows exactly the portal's script and stylesheet by
	// full URL instead of 'self': the portal shares its origin with every
	// upstream the gateway proxies, and 'self' would trust their scripts too.
	Origin string
	// Logger receives the detail of failures. Required.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

// portal is the handler.
type portal struct {
	cfg    Config
	csp    string
	mux    *http.ServeMux
	pages  map[string]*template.Template
	assets *assets
	// routes are what each access level requires, by level.
	routes [admin + 1]*decision.Route
}

// New validates cfg and returns the handler of /.keyway/portal/.
func New(cfg Config) (Handler, error) {
	if cfg.Accounts == nil || cfg.Sessions == nil || cfg.Logger == nil || cfg.Decider == nil {
		return nil, errors.New("portal: Accounts, Sessions, Decider and Logger are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	as, err := loadAssets()
	if err != nil {
		return nil, err
	}
	p := &portal{cfg: cfg, mux: http.NewServeMux(), assets: as, csp: Policy}
	if cfg.Origin != "" {
		js, err := as.url("app.js")
		if err != nil {
			return nil, err
		}
		css, err := as.url("app.css")
		if err != nil {
			return nil, err
		}
		p.csp = "default-src 'none'; script-src " + cfg.Origin + js + "; style-src " + cfg.Origin + css +
			"; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	}
	if p.pages, err = parsePages(as); err != nil {
		return nil, err
	}
	for acc, rc := range map[access]decision.RouteConfig{
		anyone: {Name: "portal:anyone", Policy: decision.Session, Optional: true, AllowRestricted: true},
		member: {Name: "portal:member", Policy: decision.Session},
		admin:  {Name: "portal:admin", Policy: decision.Session, Admin: true},
	} {
		if p.routes[acc], err = cfg.Decider.NewRoute(rc); err != nil {
			return nil, err
		}
	}
	p.register()
	return p, nil
}

// Close stops the limiters of the portal's routes.
func (p *portal) Close() {
	for _, rt := range p.routes {
		if rt != nil {
			rt.Close()
		}
	}
}

// parsePages parses each page together with the shared layout.
func parsePages(as *assets) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"asset": as.url,
		"when":  formatTime,
		"iso":   isoTime,
		"path":  url.PathEscape,
		"join":  strings.Join,
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("portal: parse layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template, len(names))
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, n)
		}
		if err != nil {
			return nil, fmt.Errorf("portal: parse %s: %w", n, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// Handler is the portal: an http.Handler with routes to close.
type Handler interface {
	http.Handler
	Close()
}

// access is who may see a page.
type access int

const (
	anyone access = iota // signed in or not
	member               // a full (not restricted) session
	admin                // a member with the admin role
)

// visitor is who asks: User is nil when signed out.
type visitor struct {
	Session *session.Session
	User    *passkey.User
}

// Full reports a signed-in person with a full (not restricted) session.
func (v *visitor) Full() bool { return v.User != nil && !v.Session.Restricted }

// Admin reports a signed-in administrator.
func (v *visitor) Admin() bool { return v.Full() && v.User.Role == passkey.RoleAdmin }

// view is what a page template gets.
type view struct {
	Title string
	// Nav names the page for the navigation ("account", "admin/users"…).
	Nav     string
	Visitor *visitor
	// Keys says the API key pages exist.
	Keys bool
	Data any
	// status is the HTTP status (default 200).
	status int
	page   string
}

// redirect is a handler result that sends the browser elsewhere.
type redirect string

func (r redirect) Error() string { return "redirect to " + string(r) }

// pageFunc renders a page: it returns the template name, the title and the
// page data, or an error (a redirect, or a failure).
type pageFunc func(r *http.Request, v *visitor) (*view, error)

func (p *portal) register() {
	p.mux.HandleFunc("GET "+Prefix+"{$}", p.root)
	p.mux.HandleFunc("GET "+Prefix+"static/{file}", p.assets.serve)
	p.page("signin", anyone, p.signin)
	p.page("signup", anyone, p.signup)
	p.page("setup", anyone, p.setup)
	p.page("enrol", anyone, p.enrol)
	p.page("recover", anyone, p.recoverPage)
	p.page("account", member, p.account)
	p.page("sessions", member, p.sessions)
	p.page("admin/users", admin, p.adminUsers)
	p.page("admin/sessions", admin, p.adminSessions)
	p.page("admin/audit", admin, p.adminAudit)
	if p.cfg.Keys != nil {
		p.page("keys", member, p.keys)
		p.page("admin/keys", admin, p.adminKeys)
	}
	p.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		v, _ := p.decide(r, anyone)
		p.render(w, r, &view{page: "error", status: http.StatusNotFound, Title: "Not found", Visitor: v,
			Data: errorData{Message: "There is no such page."}})
	})
}

// ServeHTTP implements http.Handler. Every response, page or not, carries
// the portal's policy: the JSON space's deny-all policy would block the
// pages' own script and stylesheet.
func (p *portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", p.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	p.mux.ServeHTTP(w, r)
}

// root sends a visitor to their account, or to sign-in.
func (p *portal) root(w http.ResponseWriter, r *http.Request) {
	v, reason := p.decide(r, anyone)
	if reason != decision.Allowed {
		p.fail(w, r, v, reason)
		return
	}
	to := Prefix + "signin"
	if v.Full() {
		to = Prefix + "account"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// page registers a page at Prefix+name.
func (p *portal) page(name string, acc access, fn pageFunc) {
	p.mux.HandleFunc("GET "+Prefix+name, func(w http.ResponseWriter, r *http.Request) {
		v, reason := p.decide(r, acc)
		switch reason {
		case decision.Allowed:
		case decision.NoSession:
			http.Redirect(w, r, Prefix+"signin?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
			return
		case decision.NotAdmin:
			p.render(w, r, &view{page: "error", status: http.StatusForbidden, Title: "Forbidden", Visitor: v,
				Data: errorData{Message: "This page is for administrators."}})
			return
		case decision.StepUp:
			// Like the admin API: an admin's view of other people's data
			// needs a recent user-verified assertion.
			p.render(w, r, &view{page: "stepup", Title: "Confirm it is you", Nav: name, Visitor: v})
			return
		default:
			p.fail(w, r, v, reason)
			return
		}
		vw, err := fn(r, v)
		if err != nil {
			p.fail(w, r, v, err)
			return
		}
		vw.Visitor = v
		if vw.Nav == "" {
			vw.Nav = name
		}
		if vw.page == "" {
			vw.page = strings.ReplaceAll(name, "/", "_")
		}
		p.render(w, r, vw)
	})
}

// decide asks the decision core whether the visitor may see a page of
// level acc, and returns who the visitor is. The visitor is known for
// refusals about the role or freshness; a missing, unknown or expired
// session, or a disabled user, is a signed-out visitor.
func (p *portal) decide(r *http.Request, acc access) (*visitor, decision.Reason) {
	rt := p.routes[acc]
	info, _ := gateway.InfoFrom(r.Context())
	f := p.cfg.Decider.FactsFrom(r, rt, info.Client, info.ID)
	d := p.cfg.Decider.Decide(r.Context(), rt, &f)
	v := &visitor{Session: d.Identity.Session, User: d.Identity.User}
	if v.User == nil {
		v.Session = nil
	}
	return v, d.Reason
}

// errorData is the data of the error page.
type errorData struct {
	Message  string
	Instance string
}

// fail answers a redirect, or an error page that tells the visitor only
// that something went wrong, with the request ID that joins it to the log.
func (p *portal) fail(w http.ResponseWriter, r *http.Request, v *visitor, err error) {
	var to redirect
	if errors.As(err, &to) {
		http.Redirect(w, r, string(to), http.StatusSeeOther)
		return
	}
	status := http.StatusInternalServerError
	var reason decision.Reason
	if errors.As(err, &reason) {
		// The core could not decide (the store is down): the core logged it.
		status = reason.Status()
	} else if outage.Is(err) {
		status = http.StatusServiceUnavailable
	}
	id := ""
	if info, ok := gateway.InfoFrom(r.Context()); ok {
		id = info.ID
	}
	p.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "portal page failed",
		slog.String("request_id", id), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	if v == nil {
		v = &visitor{}
	}
	p.render(w, r, &view{page: "error", status: status, Title: "Something went wrong", Visitor: v,
		Data: errorData{Message: "Something went wrong. Try again, or quote this to the operator:", Instance: id}})
}

// render executes a page into a buffer first, so that a template failure
// becomes a clean 500 rather than half a page.
func (p *portal) render(w http.ResponseWriter, r *http.Request, vw *view) {
	t, ok := p.pages[vw.page]
	if !ok {
		p.cfg.Logger.Error("portal: no such template", slog.String("page", vw.page))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if vw.Visitor == nil {
		vw.Visitor = &visitor{}
	}
	vw.Keys = p.cfg.Keys != nil
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", vw); err != nil {
		p.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "portal: render", slog.String("page", vw.page),
			slog.String("error", err.Error()))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	status := vw.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// safeNext returns next if it names a portal page, else "".
func safeNext(next string) string {
	// No percent-encoding at all: a decoded "%23" or "%3F" would smuggle a
	// fragment or query past the checks below.
	if next == "" || len(next) > 200 || strings.ContainsRune(next, '%') {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return ""
	}
	if !strings.HasPrefix(u.Path, Prefix) || path.Clean(u.Path) != u.Path || strings.ContainsAny(next, "\\\x00") {
		return ""
	}
	return u.Path
}

// formatTime is a time for people: UTC, to the minute ("" for zero). The
// script rewrites it into the reader's time zone.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// isoTime is a machine-readable time for <time datetime>.
func isoTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
