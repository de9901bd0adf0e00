package decision

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/principal"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/session"
)

const origin = "https://localhost:8443"

// fakeKeys knows keys by their raw string.
type fakeKeys struct {
	keys     map[string]*apikey.Verified
	down     bool
	quota    map[string]int
	recorded []apikey.Outcome
}

func (f *fakeKeys) Verify(_ context.Context, raw string, _ netip.Addr) (*apikey.Verified, error) {
	if f.down {
		return nil, errors.New("store down")
	}
	if v, ok := f.keys[raw]; ok {
		return v, nil
	}
	return nil, apikey.ErrInvalid
}

func (f *fakeKeys) ConsumeQuota(_ context.Context, v *apikey.Verified) (bool, error) {
	left, limited := f.quota[v.Key.ID]
	if !limited {
		return true, nil
	}
	if left == 0 {
		return false, nil
	}
	f.quota[v.Key.ID] = left - 1
	return true, nil
}

func (f *fakeKeys) Record(_ *apikey.Verified, o apikey.Outcome) { f.recorded = append(f.recorded, o) }

func key(id, owner string, scopes []string, rate apikey.Rate) *apikey.Verified {
	p, _ := principal.Parse(owner)
	return &apikey.Verified{Key: &apikey.Key{ID: id, Owner: owner, Scopes: scopes, Rate: rate}, Owner: p,
		DisplayID: "key_" + id, ScopeList: strings.Join(scopes, " ")}
}

type fakeSessions struct {
	byToken map[string]*session.Session
	fresh   map[string]bool
	down    bool
}

func (f *fakeSessions) Authenticate(_ context.Context, token string) (*session.Session, error) {
	if f.down {
		return nil, errors.New("store down")
	}
	if s, ok := f.byToken[token]; ok {
		return s, nil
	}
	return nil, session.ErrNotFound
}

func (f *fakeSessions) Fresh(s *session.Session) bool { return f.fresh[s.ID] }

type fakeUsers map[string]*passkey.User

func (f fakeUsers) User(_ context.Context, id string) (*passkey.User, error) {
	if u, ok := f[id]; ok {
		return u, nil
	}
	return nil, passkey.ErrNotFound
}

// joinedSessions reads a session and its person together, as keyway's
// store does; the core must then not look the person up again.
type joinedSessions struct {
	*fakeSessions
	users fakeUsers
}

func (j joinedSessions) AuthenticateUser(ctx context.Context, token string) (*session.Session, *passkey.User, error) {
	s, err := j.Authenticate(ctx, token)
	if err != nil {
		return nil, nil, err
	}
	u, ok := j.users[s.UserID]
	if !ok {
		return nil, nil, session.ErrNotFound // the join finds no row
	}
	return s, u, nil
}

// noUsers fails a test that looks a person up.
type noUsers struct{ t *testing.T }

func (n noUsers) User(context.Context, string) (*passkey.User, error) {
	n.t.Error("the person was looked up again after the joined read")
	return nil, errors.New("no look-ups")
}

type fixture struct {
	core  *Core
	keys  *fakeKeys
	sess  *fakeSessions
	users fakeUsers
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, false) }

// newFixtureWith makes the fixture; joined gives the core sessions read
// with their person (SessionUserVerifier).
func newFixtureWith(t *testing.T, joined bool) *fixture {
	t.Helper()
	keys := &fakeKeys{keys: map[string]*apikey.Verified{
		"kw-good":    key("good", "service:billing", []string{"a", "b"}, apikey.Rate{}),
		"kw-onlya":   key("onlya", "service:billing", []string{"a"}, apikey.Rate{}),
		"kw-limited": key("limited", "service:billing", []string{"a", "b"}, apikey.Rate{Count: 2, Period: time.Minute}),
		"kw-quota":   key("quota", "service:billing", []string{"a", "b"}, apikey.Rate{}),
		"kw-person":  key("person", "user:usr_p", []string{"a", "b", "keyway:admin"}, apikey.Rate{}),
		"kw-admin":   key("admin", "service:ops", []string{"keyway:admin"}, apikey.Rate{}),
	}, quota: map[string]int{"quota": 1}}
	now := time.Now()
	sess := &fakeSessions{byToken: map[string]*session.Session{
		"tok-ann":        {ID: "ses_ann", UserID: "usr_ann", ExpiresAt: now.Add(time.Hour)},
		"tok-ann-fresh":  {ID: "ses_ann2", UserID: "usr_ann", ExpiresAt: now.Add(time.Hour)},
		"tok-root":       {ID: "ses_root", UserID: "usr_root"},
		"tok-root-fresh": {ID: "ses_root2", UserID: "usr_root"},
		"tok-recovery":   {ID: "ses_rec", UserID: "usr_ann", Restricted: true},
		"tok-disabled":   {ID: "ses_dis", UserID: "usr_dis"},
		"tok-gone":       {ID: "ses_gone", UserID: "usr_gone"},
	}, fresh: map[string]bool{"ses_ann2": true, "ses_root2": true}}
	users := fakeUsers{
		"usr_ann":  {ID: "usr_ann", DisplayName: "Ann", Role: passkey.RoleUser, Roles: []string{"billing", "support"}},
		"usr_root": {ID: "usr_root", DisplayName: "Root", Role: passkey.RoleAdmin},
		"usr_dis":  {ID: "usr_dis", Role: passkey.RoleUser, DisabledAt: now},
	}
	lim := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	t.Cleanup(lim.Close)
	var sv SessionVerifier = sess
	var ul UserLookup = users
	if joined {
		sv, ul = joinedSessions{sess, users}, noUsers{t}
	}
	c, err := New(Config{Keys: keys, KeyLimiter: lim, Sessions: sv, Users: ul, Origins: []string{origin},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{core: c, keys: keys, sess: sess, users: users}
}

func (fx *fixture) route(t *testing.T, cfg RouteConfig) *Route {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	rt, err := fx.core.NewRoute(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	return rt
}

func TestAPIKeySequence(t *testing.T) {
	fx := newFixture(t)
	rt := fx.route(t, RouteConfig{Policy: APIKey, Scopes: []string{"a", "b"}})
	for _, tt := range []struct {
		key  string
		want Reason
	}{
		{"", NoKey}, {"kw-nonsense", BadKey}, {"kw-onlya", Scope}, {"kw-good", Allowed}, {"kw-person", Allowed},
	} {
		f := Facts{Method: "GET", Key: tt.key}
		d := fx.core.Decide(context.Background(), rt, &f)
		if d.Reason != tt.want {
			t.Errorf("key %q: %v, want %v", tt.key, d.Reason, tt.want)
		}
	}
	f := Facts{Method: "GET", Key: "kw-good"}
	d := fx.core.Decide(context.Background(), rt, &f)
	if d.Identity.Subject != "service:billing" || d.Identity.KeyID != "key_good" || d.Identity.Scopes != "a b" ||
		!d.Identity.Principal.IsService() || d.Identity.LimiterKey != "good" {
		t.Fatalf("identity %+v", d.Identity)
	}

	t.Run("key rate, then route limit, then quota", func(t *testing.T) {
		for i, want := range []Reason{Allowed, Allowed, RateLimited} {
			f := Facts{Method: "GET", Key: "kw-limited"}
			if d := fx.core.Decide(context.Background(), rt, &f); d.Reason != want {
				t.Fatalf("request %d: %v, want %v", i, d.Reason, want)
			} else if want == RateLimited && (d.LimitName != "key" || d.Limit.RetryAfter <= 0) {
				t.Fatalf("429 without its limit: %+v", d)
			}
		}
		for i, want := range []Reason{Allowed, QuotaSpent} {
			f := Facts{Method: "GET", Key: "kw-quota"}
			if d := fx.core.Decide(context.Background(), rt, &f); d.Reason != want {
				t.Fatalf("quota request %d: %v, want %v", i, d.Reason, want)
			}
		}
		perKey := fx.route(t, RouteConfig{Policy: APIKey, RateLimit: &RouteLimit{Limit: ratelimit.Limit{Count: 1, Period: time.Minute}, PerKey: true}})
		for i, tt := range []struct {
			key  string
			want Reason
		}{{"kw-good", Allowed}, {"kw-good", RateLimited}, {"kw-onlya", Allowed}} {
			f := Facts{Method: "GET", Key: tt.key}
			if d := fx.core.Decide(context.Background(), perKey, &f); d.Reason != tt.want {
				t.Fatalf("per-key request %d: %v, want %v", i, d.Reason, tt.want)
			} else if tt.want == RateLimited && d.LimitName != "route" {
				t.Fatalf("route limit named %q", d.LimitName)
			}
		}
	})

	t.Run("service accounts only", func(t *testing.T) {
		adm := fx.route(t, RouteConfig{Policy: APIKey, Scopes: []string{"keyway:admin"}, ServiceOnly: true})
		for key, want := range map[string]Reason{"kw-admin": Allowed, "kw-person": NotService, "kw-good": Scope} {
			f := Facts{Method: "GET", Key: key}
			if d := fx.core.Decide(context.Background(), adm, &f); d.Reason != want {
				t.Errorf("%s on the admin route: %v, want %v", key, d.Reason, want)
			}
		}
	})

	t.Run("store down fails closed", func(t *testing.T) {
		fx.keys.down = true
		defer func() { fx.keys.down = false }()
		f := Facts{Method: "GET", Key: "kw-good"}
		if d := fx.core.Decide(context.Background(), rt, &f); d.Reason != Unavailable {
			t.Fatalf("store down: %v", d.Reason)
		}
	})

	t.Run("recheck counts nothing", func(t *testing.T) {
		before := len(fx.keys.recorded)
		for range 5 {
			f := Facts{Method: "GET", Key: "kw-quota"}
			if r := fx.core.Recheck(context.Background(), rt, &f); r != Allowed {
				t.Fatalf("recheck of a key whose quota is spent: %v", r)
			}
		}
		if len(fx.keys.recorded) != before {
			t.Fatal("a recheck was counted")
		}
	})
}

func TestSessionSequence(t *testing.T) {
	t.Run("apart", func(t *testing.T) { testSessionSequence(t, false) })
	t.Run("read together", func(t *testing.T) { testSessionSequence(t, true) })
}

func testSessionSequence(t *testing.T, joined bool) {
	fx := newFixtureWith(t, joined)
	full := fx.route(t, RouteConfig{Policy: Session})
	restricted := fx.route(t, RouteConfig{Policy: Session, AllowRestricted: true})
	fresh := fx.route(t, RouteConfig{Policy: Session, Fresh: true})
	admin := fx.route(t, RouteConfig{Policy: Session, Admin: true})
	optional := fx.route(t, RouteConfig{Policy: Session, Optional: true})
	billing := fx.route(t, RouteConfig{Policy: Session, Roles: []string{"ops", "billing"}})
	ops := fx.route(t, RouteConfig{Policy: Session, Roles: []string{"ops"}})
	csrf := func(f *Facts) { f.CSRFHeader, f.Origin, f.FetchSite = true, origin, "same-origin" }
	for _, tt := range []struct {
		name    string
		rt      *Route
		method  string
		token   string
		with    func(*Facts)
		want    Reason
		subject string
	}{
		{"no cookie", full, "GET", "", nil, NoSession, ""},
		{"unknown", full, "GET", "tok-x", nil, NoSession, ""},
		{"valid", full, "GET", "tok-ann", nil, Allowed, "user:usr_ann"},
		{"disabled user", full, "GET", "tok-disabled", nil, NoSession, ""},
		{"deleted user", full, "GET", "tok-gone", nil, NoSession, ""},
		{"recovery session", full, "GET", "tok-recovery", nil, NoSession, ""},
		{"recovery session where allowed", restricted, "GET", "tok-recovery", nil, Allowed, "user:usr_ann"},
		{"write without CSRF", full, "POST", "tok-ann", nil, CSRF, ""},
		{"write with CSRF", full, "POST", "tok-ann", csrf, Allowed, "user:usr_ann"},
		{"write, cross-site origin", full, "POST", "tok-ann", func(f *Facts) { csrf(f); f.Origin = "https://evil.example" }, CSRF, ""},
		{"write, same-site fetch", full, "DELETE", "tok-ann", func(f *Facts) { csrf(f); f.FetchSite = "same-site" }, CSRF, ""},
		{"handshake without Origin", full, "GET", "tok-ann", func(f *Facts) { f.Upgrade = true }, CSRF, ""},
		{"handshake from keyway", full, "GET", "tok-ann", func(f *Facts) { f.Upgrade, f.Origin = true, origin }, Allowed, "user:usr_ann"},
		{"stale where fresh needed", fresh, "GET", "tok-ann", nil, StepUp, "user:usr_ann"},
		{"fresh", fresh, "GET", "tok-ann-fresh", nil, Allowed, "user:usr_ann"},
		{"not an admin", admin, "GET", "tok-ann-fresh", nil, NotAdmin, "user:usr_ann"},
		{"stale admin", admin, "GET", "tok-root", nil, StepUp, "user:usr_root"},
		{"fresh admin", admin, "GET", "tok-root-fresh", nil, Allowed, "user:usr_root"},
		{"one of the route's roles", billing, "GET", "tok-ann", nil, Allowed, "user:usr_ann"},
		{"none of the route's roles", ops, "GET", "tok-ann", nil, Role, "user:usr_ann"},
		{"keyway's admin role is not a route role", ops, "GET", "tok-root-fresh", nil, Role, "user:usr_root"},
		{"optional, none", optional, "GET", "", nil, Allowed, ""},
		{"optional, unknown", optional, "GET", "tok-x", nil, Allowed, ""},
		{"optional, disabled", optional, "GET", "tok-disabled", nil, Allowed, ""},
		{"optional, valid", optional, "GET", "tok-ann", nil, Allowed, "user:usr_ann"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := Facts{Method: tt.method, Session: tt.token}
			if tt.with != nil {
				tt.with(&f)
			}
			d := fx.core.Decide(context.Background(), tt.rt, &f)
			if d.Reason != tt.want || d.Identity.Subject != tt.subject {
				t.Fatalf("%v as %q, want %v as %q", d.Reason, d.Identity.Subject, tt.want, tt.subject)
			}
		})
	}
	fx.sess.down = true
	f := Facts{Method: "GET", Session: "tok-ann"}
	if d := fx.core.Decide(context.Background(), full, &f); d.Reason != Unavailable {
		t.Fatalf("store down: %v", d.Reason)
	}
	if d := fx.core.Decide(context.Background(), optional, &f); d.Reason != Unavailable {
		t.Fatalf("store down on an optional route: %v", d.Reason)
	}
}

func TestNothingBehindAPolicyDeniesEveryone(t *testing.T) {
	c, err := New(Config{Origins: []string{origin}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Policy{APIKey, Session} {
		rt, err := c.NewRoute(RouteConfig{Name: "x", Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		f := Facts{Method: "GET", Key: "kw-good", Session: "tok-ann"}
		if d := c.Decide(context.Background(), rt, &f); d.Allowed() {
			t.Fatalf("%s with nothing behind it let a request through", p)
		}
	}
}

func TestCSRFRuleOnOpenEndpoints(t *testing.T) {
	fx := newFixture(t)
	rt := fx.route(t, RouteConfig{Policy: Public, CSRF: true})
	for _, tt := range []struct {
		method string
		hdr    map[string]string
		ok     bool
	}{
		{"GET", nil, true},
		{"HEAD", nil, true},
		{"POST", map[string]string{"Origin": origin}, false},
		{"POST", map[string]string{"X-Keyway-CSRF": "1"}, true},
		{"POST", map[string]string{"X-Keyway-CSRF": "true"}, false},
		{"POST", map[string]string{"X-Keyway-CSRF": "1", "Origin": origin, "Sec-Fetch-Site": "same-origin"}, true},
		{"DELETE", map[string]string{"X-Keyway-CSRF": "1", "Origin": "https://evil.example"}, false},
		{"PUT", map[string]string{"X-Keyway-CSRF": "1", "Origin": "https://localhost:9443"}, false},
		{"PATCH", map[string]string{"X-Keyway-CSRF": "1", "Sec-Fetch-Site": "cross-site"}, false},
		{"POST", map[string]string{"X-Keyway-CSRF": "1", "Sec-Fetch-Site": "same-site"}, false},
		{"POST", map[string]string{"X-Keyway-CSRF": "1", "Origin": "null"}, false},
	} {
		r := httptest.NewRequest(tt.method, "/x", nil)
		for k, v := range tt.hdr {
			r.Header.Set(k, v)
		}
		f := fx.core.FactsFrom(r, rt, clientip.Info{}, "")
		if d := fx.core.Decide(context.Background(), rt, &f); d.Allowed() != tt.ok {
			t.Errorf("%s %v: %v, want ok=%v", tt.method, tt.hdr, d.Reason, tt.ok)
		}
	}
}

func TestFactsReadOnlyTheRoutesCredential(t *testing.T) {
	fx := newFixture(t)
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Bearer kw-good")
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "tok-ann"})
	for _, tt := range []struct {
		p            Policy
		key, session string
	}{{APIKey, "kw-good", ""}, {Session, "", "tok-ann"}, {Public, "", ""}} {
		f := fx.core.FactsFrom(r, fx.route(t, RouteConfig{Policy: tt.p}), clientip.Info{}, "")
		if f.Key != tt.key || f.Session != tt.session {
			t.Errorf("%s: key %q session %q", tt.p, f.Key, f.Session)
		}
	}
	// Another key header carries the bare key; Authorization is then not read.
	c, err := New(Config{Keys: fx.keys, KeyLimiter: ratelimit.NewMemory[string](ratelimit.MemoryConfig{}), KeyHeader: "x-api-key",
		Origins: []string{origin}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := c.NewRoute(RouteConfig{Name: "k", Policy: APIKey})
	if f := c.FactsFrom(r, rt, clientip.Info{}, ""); f.Key != "" {
		t.Errorf("Authorization read with header X-Api-Key: %q", f.Key)
	}
	r.Header.Set("X-Api-Key", " kw-good ")
	if f := c.FactsFrom(r, rt, clientip.Info{}, ""); f.Key != "kw-good" || c.KeyHeader() != "X-Api-Key" {
		t.Errorf("X-Api-Key: %q", f.Key)
	}
}

func TestRefusalAnswers(t *testing.T) {
	fx := newFixture(t)
	rt := fx.route(t, RouteConfig{Policy: APIKey, Scopes: []string{"a", "b"}})
	for _, tt := range []struct {
		key, status, auth string
	}{
		{"", "401", `Bearer realm="keyway"`},
		{"kw-x", "401", `Bearer realm="keyway", error="invalid_token"`},
		{"kw-onlya", "403", `Bearer realm="keyway", error="insufficient_scope", scope="a b"`},
	} {
		f := Facts{Method: "GET", Key: tt.key}
		d := fx.core.Decide(context.Background(), rt, &f)
		w := httptest.NewRecorder()
		fx.core.WriteDenial(w, &d, "req-1")
		if got := w.Header().Get("WWW-Authenticate"); strings.TrimSpace(w.Result().Status[:3]) != tt.status || got != tt.auth {
			t.Errorf("key %q: %s %q", tt.key, w.Result().Status, got)
		}
		if !strings.Contains(w.Body.String(), `"instance":"urn:keyway:request:req-1"`) {
			t.Errorf("no instance: %s", w.Body)
		}
	}
	for r := Reason(1); r < numReasons; r++ {
		d := Decision{Reason: r, Limit: ratelimit.Decision{RetryAfter: 3 * time.Second}}
		p := fx.core.Problem(&d)
		if p == nil || p.Status != r.Status() || p.Status < 400 {
			t.Errorf("%v: problem %+v", r, p)
		}
		if r == RateLimited && p.RetryAfter != 3*time.Second {
			t.Errorf("429 without Retry-After")
		}
		var err error = r
		var got Reason
		if !errors.As(err, &got) || got != r {
			t.Errorf("%v is not usable as an error", r)
		}
	}
}
