package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
)

// These tests drive keyway's JSON API from page JavaScript in a real
// headless Chromium, as a web app would, with a CDP virtual authenticator
// in place of a person and a security key. Most cases are attacks or broken
// authenticators, and each checks the exact status and problem type, and
// that no session came of it.

// Problem types, spelled out: a test that imported them would pass if one
// were renamed.
const (
	ptCeremonyFailed  = "urn:keyway:problem:ceremony-failed"
	ptCSRF            = "urn:keyway:problem:csrf"
	ptUnauthenticated = "urn:keyway:problem:unauthenticated"
)

const (
	ceremonyCookieName = "__Host-keyway_ceremony"
	sessionCookieName  = "__Host-keyway_session"
)

// pageJS defines kw(), the page's client for keyway's API: a same-origin
// fetch with the CSRF header, answering the status, the problem type (or
// JSON) and the raw text.
const pageJS = `
window.kw = async (path, body, opts = {}) => {
	const headers = {'Content-Type': 'application/json'};
	if (!opts.noCSRF) headers['X-Keyway-CSRF'] = '1';
	const init = {method: opts.method || (body === undefined ? 'GET' : 'POST'), headers};
	if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
	const r = await fetch(path, init);
	const text = await r.text();
	let json = null;
	try { json = JSON.parse(text); } catch (e) {}
	return {status: r.status, contentType: r.headers.get('Content-Type') || '',
		type: (json && json.type) || '', detail: (json && json.detail) || '', json, text};
};
window.kwCreate = async (begin) => {
	const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(begin.json.publicKey);
	const cred = await navigator.credentials.create({publicKey});
	return JSON.stringify(cred.toJSON());
};
window.kwGet = async (begin) => {
	const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(begin.json.publicKey);
	const cred = await navigator.credentials.get({publicKey});
	return JSON.stringify(cred.toJSON());
};
true
`

// answer is what kw() resolves to.
type answer struct {
	Status      int             `json:"status"`
	ContentType string          `json:"contentType"`
	Type        string          `json:"type"`
	Detail      string          `json:"detail"`
	JSON        json.RawMessage `json:"json"`
	Text        string          `json:"text"`
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.Status, strings.TrimSpace(a.Text)) }

// browserPage is one keyway instance and one isolated tab on its origin,
// holding a virtual passkey authenticator.
type browserPage struct {
	t    *testing.T
	in   *apptest.Instance
	ctx  context.Context
	auth webauthn.AuthenticatorID
}

// newBrowserPage starts the demo (open sign-up, RP ID localhost, origin
// https://localhost:<port>) and opens a fresh tab on its origin.
// authenticator nil means apptest.PasskeyAuthenticator().
func newBrowserPage(t *testing.T, browser context.Context, authenticator *webauthn.VirtualAuthenticatorOptions) *browserPage {
	t.Helper()
	return newBrowserPageWith(t, browser, authenticator, nil)
}

// newBrowserPageWith is newBrowserPage with a change to the demo config.
func newBrowserPageWith(t *testing.T, browser context.Context, authenticator *webauthn.VirtualAuthenticatorOptions, change func(*config.Config)) *browserPage {
	t.Helper()
	cfg := apptest.Demo(t)
	if change != nil {
		change(cfg)
	}
	in := apptest.Start(t, cfg)
	ctx := apptest.Tab(t, browser)
	// Any page of the origin gives a secure context for WebAuthn.
	apptest.Open(t, ctx, in.URL("/.keyway/healthz"))
	p := &browserPage{t: t, in: in, ctx: ctx}
	p.auth = apptest.AddAuthenticator(t, ctx, authenticator)
	apptest.Eval[bool](t, ctx, pageJS)
	return p
}

// js runs an async script in the page and decodes its result.
func pageEval[T any](p *browserPage, js string) T {
	p.t.Helper()
	return apptest.Eval[T](p.t, p.ctx, "(async () => {"+js+"})()")
}

// kw calls keyway's API from the page; body is JSON text, or "" for a GET.
func (p *browserPage) kw(path, body string) answer {
	p.t.Helper()
	arg := "undefined"
	if body != "" {
		arg = jsString(body)
	}
	return pageEval[answer](p, "return await kw("+jsString(path)+", "+arg+");")
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// wantStatus checks an answer's status and, for an error, that it is a
// problem of type typ.
func (p *browserPage) wantStatus(a answer, status int, typ, what string) {
	p.t.Helper()
	if a.Status != status {
		p.t.Fatalf("%s: got %s, want %d %s", what, a, status, typ)
	}
	if typ == "" {
		return
	}
	if a.ContentType != "application/problem+json" || a.Type != typ {
		p.t.Fatalf("%s: got %s (%s), want a problem of type %s", what, a, a.ContentType, typ)
	}
}

// signUp registers username with a passkey from the authenticator and
// returns finish's answer.
func (p *browserPage) signUp(username string) answer {
	p.t.Helper()
	return pageEval[answer](p, `
		const b = await kw('/.keyway/auth/passkey/register/begin', {username: `+jsString(username)+`, display_name: 'Test Person'});
		if (b.status !== 200) return b;
		return await kw('/.keyway/auth/passkey/register/finish', await kwCreate(b));`)
}

// mustSignUp is signUp that must give 201.
func (p *browserPage) mustSignUp(username string) {
	p.t.Helper()
	p.wantStatus(p.signUp(username), http.StatusCreated, "", "sign-up")
}

// beginLogin starts a usernameless sign-in and returns begin's answer.
func (p *browserPage) beginLogin() answer {
	p.t.Helper()
	a := p.kw("/.keyway/auth/passkey/login/begin", `{}`)
	p.wantStatus(a, http.StatusOK, "", "login begin")
	return a
}

// assert asks the authenticator for an assertion over begin's options and
// returns the credential's toJSON() as JSON text.
func (p *browserPage) assert(begin answer) string {
	p.t.Helper()
	return pageEval[string](p, "return await kwGet("+string(mustJSON(p.t, begin))+");")
}

func (p *browserPage) finishLogin(assertion string) answer {
	p.t.Helper()
	return p.kw("/.keyway/auth/passkey/login/finish", assertion)
}

// login runs a whole usernameless sign-in and returns finish's answer.
func (p *browserPage) login() answer {
	p.t.Helper()
	return p.finishLogin(p.assert(p.beginLogin()))
}

func (p *browserPage) logout() {
	p.t.Helper()
	p.wantStatus(p.kw("/.keyway/auth/logout", `{}`), http.StatusNoContent, "", "sign-out")
	p.wantSignedOut("after sign-out")
}

// wantSignedOut checks that keyway sees no session from this browser, and
// that the browser holds no session cookie.
func (p *browserPage) wantSignedOut(when string) {
	p.t.Helper()
	p.wantStatus(p.kw("/.keyway/auth/session", ""), http.StatusUnauthorized, ptUnauthenticated, "GET session "+when)
	if c := p.cookie(sessionCookieName); c != nil {
		p.t.Fatalf("%s: the browser holds a session cookie %s", when, c.Name)
	}
}

// wantSignedIn checks that keyway sees a session of username.
func (p *browserPage) wantSignedIn(username, when string) {
	p.t.Helper()
	a := p.kw("/.keyway/auth/session", "")
	p.wantStatus(a, http.StatusOK, "", "GET session "+when)
	var s struct {
		User struct {
			Username string `json:"username"`
		} `json:"user"`
	}
	if err := json.Unmarshal(a.JSON, &s); err != nil || s.User.Username != username {
		p.t.Fatalf("GET session %s: %s, want user %s", when, a, username)
	}
}

// cookie returns the browser's cookie name for keyway's origin, or nil.
func (p *browserPage) cookie(name string) *network.Cookie {
	p.t.Helper()
	for _, c := range apptest.Cookies(p.t, p.ctx, p.in.URL("/")) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// restoreCookie puts a copy of c back in the browser, as an attacker who
// had read it could.
func (p *browserPage) restoreCookie(c *network.Cookie) {
	p.t.Helper()
	on := true
	apptest.SetCookie(p.t, p.ctx, network.SetCookieParams{Name: c.Name, Value: c.Value, URL: p.in.URL("/"), Path: "/",
		Secure: &on, HTTPOnly: &on, SameSite: network.CookieSameSiteStrict})
}

// credential returns the authenticator's only credential.
func (p *browserPage) credential() *webauthn.Credential {
	p.t.Helper()
	creds := apptest.Credentials(p.t, p.ctx, p.auth)
	if len(creds) != 1 {
		p.t.Fatalf("the authenticator holds %d credentials, want 1", len(creds))
	}
	return creds[0]
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBrowserPasskeyNegative(t *testing.T) {
	browser := apptest.Browser(t)

	t.Run("sign-up, sign-out, usernameless sign-in", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.wantSignedOut("before sign-up")
		a := p.signUp("alice")
		p.wantStatus(a, http.StatusCreated, "", "sign-up")
		var reg struct {
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			Passkey struct {
				ID string `json:"id"`
			} `json:"passkey"`
			RecoveryCodes []string `json:"recovery_codes"`
		}
		if err := json.Unmarshal(a.JSON, &reg); err != nil || reg.User.Username != "alice" || reg.Passkey.ID == "" || len(reg.RecoveryCodes) == 0 {
			t.Fatalf("sign-up answer %s lacks the user, passkey or recovery codes", a)
		}
		c := p.cookie(sessionCookieName)
		if c == nil || !c.HTTPOnly || !c.Secure || c.Path != "/" {
			t.Fatalf("session cookie after sign-up = %+v, want an HttpOnly, Secure cookie for /", c)
		}
		if cred := p.credential(); !cred.IsResidentCredential {
			t.Fatal("keyway registered a passkey that is not discoverable")
		}
		p.wantSignedIn("alice", "after sign-up")
		p.logout()
		p.wantStatus(p.login(), http.StatusOK, "", "usernameless sign-in")
		p.wantSignedIn("alice", "after sign-in")
	})

	t.Run("registration without user verification", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		apptest.SetOverrides(t, p.ctx, p.auth, apptest.Overrides{BadUV: true})
		p.wantStatus(p.signUp("bob"), http.StatusBadRequest, ptCeremonyFailed, "sign-up with UV=0")
		p.wantSignedOut("after a refused sign-up")
		// No account was made: the name is still free.
		apptest.SetOverrides(t, p.ctx, p.auth, apptest.Overrides{})
		p.mustSignUp("bob")
	})

	t.Run("sign-in without user verification", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.mustSignUp("carol")
		p.logout()
		apptest.SetOverrides(t, p.ctx, p.auth, apptest.Overrides{BadUV: true})
		p.wantStatus(p.login(), http.StatusBadRequest, ptCeremonyFailed, "sign-in with UV=0")
		p.wantSignedOut("after a sign-in with UV=0")
	})

	t.Run("bogus signature", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.mustSignUp("dave")
		p.logout()
		apptest.SetOverrides(t, p.ctx, p.auth, apptest.Overrides{BogusSignature: true})
		p.wantStatus(p.login(), http.StatusBadRequest, ptCeremonyFailed, "sign-in with a zeroed signature")
		p.wantSignedOut("after a bogus signature")
	})

	t.Run("replayed assertion", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.mustSignUp("erin")
		p.logout()
		begin := p.beginLogin()
		ceremony := p.cookie(ceremonyCookieName)
		if ceremony == nil {
			t.Fatal("login begin set no ceremony cookie")
		}
		assertion := p.assert(begin)
		p.wantStatus(p.finishLogin(assertion), http.StatusOK, "", "first use of the assertion")
		p.logout()

		// Under a new challenge: the signature covers the old one.
		p.beginLogin()
		p.wantStatus(p.finishLogin(assertion), http.StatusBadRequest, ptCeremonyFailed, "assertion replayed after a new begin")
		p.wantSignedOut("after a replay under a new challenge")

		// Under its own challenge, with the ceremony cookie put back: the
		// challenge was consumed by the first use.
		p.restoreCookie(ceremony)
		p.wantStatus(p.finishLogin(assertion), http.StatusBadRequest, ptCeremonyFailed, "assertion replayed with its own ceremony")
		p.wantSignedOut("after a replay under its own challenge")
	})

	t.Run("expired challenge", func(t *testing.T) {
		p := newBrowserPageWith(t, browser, nil, func(c *config.Config) { c.Passkeys.ChallengeTTL = time.Second })
		p.mustSignUp("ivan")
		p.logout()
		assertion := p.assert(p.beginLogin())
		time.Sleep(1200 * time.Millisecond) // past the challenge's life
		p.wantStatus(p.finishLogin(assertion), http.StatusBadRequest, ptCeremonyFailed, "assertion for an expired challenge")
		p.wantSignedOut("after an expired challenge")
		// A fresh ceremony still works.
		p.wantStatus(p.finishLogin(p.assert(p.beginLogin())), http.StatusOK, "", "sign-in with a fresh challenge")
	})

	t.Run("challenge used twice", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.mustSignUp("frank")
		p.logout()
		begin := p.beginLogin()
		ceremony := p.cookie(ceremonyCookieName)
		if ceremony == nil {
			t.Fatal("login begin set no ceremony cookie")
		}
		p.wantStatus(p.finishLogin(p.assert(begin)), http.StatusOK, "", "first finish")
		p.logout()
		if c := p.cookie(ceremonyCookieName); c != nil {
			t.Fatal("the ceremony cookie outlived the ceremony")
		}

		// A second, freshly signed assertion over the same challenge, sent
		// with the same ceremony: only the consumed challenge stops it.
		second := p.assert(begin)
		p.wantStatus(p.finishLogin(second), http.StatusBadRequest, ptCeremonyFailed, "second finish without the ceremony cookie")
		p.wantSignedOut("after a second finish without the ceremony")
		p.restoreCookie(ceremony)
		p.wantStatus(p.finishLogin(second), http.StatusBadRequest, ptCeremonyFailed, "second finish of one challenge")
		p.wantSignedOut("after a second finish of one challenge")
	})

	t.Run("signature counter goes backwards", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.mustSignUp("grace")
		for i := range 3 {
			p.logout()
			p.wantStatus(p.login(), http.StatusOK, "", fmt.Sprintf("sign-in %d", i+1))
		}
		p.logout()
		cred := p.credential()
		if cred.SignCount < 4 {
			t.Fatalf("sign count after four ceremonies = %v, want at least 4", cred.SignCount)
		}
		// A clone of the credential, copied before the last sign-ins.
		apptest.SetSignCount(t, p.ctx, p.auth, cred.CredentialID, 1)
		a := p.login()
		p.wantStatus(a, http.StatusUnauthorized, ptUnauthenticated, "sign-in with a lower counter")
		if !strings.Contains(a.Detail, "copied") {
			t.Fatalf("counter regression answered %q, want the cloned-passkey message", a.Detail)
		}
		p.wantSignedOut("after a counter regression")
		// The stored counter was kept: the clone cannot catch up by trying again.
		p.wantStatus(p.login(), http.StatusUnauthorized, ptUnauthenticated, "second sign-in with a lower counter")
		p.wantSignedOut("after a second counter regression")
	})

	t.Run("CSRF header missing", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		a := pageEval[answer](p, `return await kw('/.keyway/auth/passkey/login/begin', {}, {noCSRF: true});`)
		p.wantStatus(a, http.StatusForbidden, ptCSRF, "login begin without X-Keyway-CSRF")
		if c := p.cookie(ceremonyCookieName); c != nil {
			t.Fatal("a refused login begin set a ceremony cookie")
		}
		a = pageEval[answer](p, `return await kw('/.keyway/auth/passkey/register/begin', {username: 'heidi'}, {noCSRF: true});`)
		p.wantStatus(a, http.StatusForbidden, ptCSRF, "register begin without X-Keyway-CSRF")
		p.wantSignedOut("after requests without the CSRF header")
		// The same requests with the header work: the header is what was missing.
		p.beginLogin()
		p.mustSignUp("heidi")
	})

	t.Run("the Backend-for-Frontend", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.wantStatus(p.kw("/v1/me", ""), http.StatusUnauthorized, ptUnauthenticated, "/v1/me without a session")
		p.mustSignUp("judy")
		me := p.kw("/v1/me", "")
		p.wantStatus(me, http.StatusOK, "", "/v1/me signed in")
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(me.JSON, &fields); err != nil || fields["name"] == nil || fields["cities"] == nil {
			t.Fatalf("/v1/me for the web client: %s", me)
		}
		for _, hidden := range []string{"billing", "internal_notes"} {
			if _, ok := fields[hidden]; ok || strings.Contains(me.Text, "4242") {
				t.Fatalf("/v1/me gave the browser %q: %s", hidden, me)
			}
		}
		a := pageEval[answer](p, `return await kw('/v1/me/cities', {city: 'Oslo'}, {noCSRF: true});`)
		p.wantStatus(a, http.StatusForbidden, ptCSRF, "a cookie POST without X-Keyway-CSRF")
		a = p.kw("/v1/me/cities", `{"city":"Oslo"}`)
		p.wantStatus(a, http.StatusCreated, "", "a cookie POST with X-Keyway-CSRF")
		if !strings.Contains(a.Text, "Oslo") {
			t.Fatalf("POST /v1/me/cities: %s", a)
		}
		// The page's JavaScript never holds a token: the session cookie is HttpOnly.
		if js := pageEval[string](p, `return document.cookie;`); strings.Contains(js, "kws_") {
			t.Fatalf("document.cookie = %q", js)
		}
	})

	t.Run("cross-origin page", func(t *testing.T) {
		p := newBrowserPage(t, browser, nil)
		p.mustSignUp("ivan")
		// Another site, open in the same browser as the signed-in person.
		evil := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<!doctype html><title>elsewhere</title>"))
		}))
		defer evil.Close()
		tab := apptest.TabBeside(t, p.ctx) // same browser context: same cookies
		apptest.Open(t, tab, evil.URL+"/")
		mark := len(p.in.Logs())

		// With the CSRF header the request needs a CORS preflight, which
		// keyway never grants: the browser does not send it at all.
		res := apptest.Eval[string](t, tab, `(async () => {
			try {
				await fetch(`+jsString(p.in.URL("/.keyway/auth/logout"))+`, {method: 'POST', credentials: 'include',
					headers: {'Content-Type': 'application/json', 'X-Keyway-CSRF': '1'}, body: '{}'});
				return 'sent';
			} catch (e) { return e.name; }
		})()`)
		if res != "TypeError" {
			t.Fatalf("cross-origin fetch with the CSRF header: %s, want a TypeError (blocked by CORS)", res)
		}
		// Without it, a "simple" request is sent. The page cannot read the
		// answer (keyway's Cross-Origin-Resource-Policy even makes the fetch
		// fail), but the request has reached keyway, which must refuse it.
		for _, path := range []string{"/.keyway/auth/logout", "/.keyway/auth/passkey/login/begin", "/.keyway/auth/passkey/register/begin"} {
			apptest.Eval[string](t, tab, `(async () => {
				try {
					await fetch(`+jsString(p.in.URL(path))+`, {method: 'POST', mode: 'no-cors', credentials: 'include',
						headers: {'Content-Type': 'text/plain'}, body: '{"username":"mallory"}'});
					return 'opaque';
				} catch (e) { return e.name; }
			})()`)
		}
		// The access log line is written as the answer goes out; give the
		// last one a moment.
		var lines []accessLine
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			lines = accessLines(t, p.in.Logs()[mark:])
			if countPosts(lines) >= 3 || time.Now().After(deadline) {
				break
			}
		}
		posts := 0
		for _, l := range lines {
			if !strings.HasPrefix(l.Path, "/.keyway/auth/") {
				continue
			}
			switch l.Method {
			case http.MethodPost:
				posts++
				if l.Status != http.StatusForbidden {
					t.Errorf("cross-origin POST %s answered %d, want 403", l.Path, l.Status)
				}
			case http.MethodOptions:
				if l.Status < 300 {
					t.Errorf("CORS preflight for %s answered %d, want a refusal", l.Path, l.Status)
				}
			}
		}
		if posts != 3 {
			t.Errorf("keyway saw %d cross-origin POSTs, want the 3 simple ones (the preflighted one must not be sent)", posts)
		}
		// Nothing changed for the person: still signed in as before.
		p.wantSignedIn("ivan", "after the cross-origin requests")
	})
}

// accessLine is one access log line of keyway.
type accessLine struct {
	Msg    string `json:"msg"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
}

func countPosts(lines []accessLine) int {
	n := 0
	for _, l := range lines {
		if l.Method == http.MethodPost && strings.HasPrefix(l.Path, "/.keyway/auth/") {
			n++
		}
	}
	return n
}

func accessLines(t *testing.T, logs string) []accessLine {
	t.Helper()
	var out []accessLine
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l accessLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" && l.Method != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestNegativeCrossOriginRequests sends, from Go, what a browser on another
// site would send: keyway refuses any state-changing request whose Origin
// is not its own or that the browser marks cross-site, CSRF header or not.
func TestNegativeCrossOriginRequests(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	c := in.Client()
	own := strings.TrimSuffix(in.URL("/"), "/")
	post := func(path string, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, in.URL(path), strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return res
	}
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"own origin", []string{"X-Keyway-CSRF", "1", "Origin", own, "Sec-Fetch-Site", "same-origin"}, http.StatusOK},
		{"no origin (not a browser)", []string{"X-Keyway-CSRF", "1"}, http.StatusOK},
		{"other origin", []string{"X-Keyway-CSRF", "1", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"same host, other port", []string{"X-Keyway-CSRF", "1", "Origin", "https://localhost:1"}, http.StatusForbidden},
		{"http scheme", []string{"X-Keyway-CSRF", "1", "Origin", strings.Replace(own, "https:", "http:", 1)}, http.StatusForbidden},
		{"null origin", []string{"X-Keyway-CSRF", "1", "Origin", "null"}, http.StatusForbidden},
		{"cross-site fetch", []string{"X-Keyway-CSRF", "1", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"same-site fetch", []string{"X-Keyway-CSRF", "1", "Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"own origin, no header", []string{"Origin", own}, http.StatusForbidden},
		{"header not 1", []string{"X-Keyway-CSRF", "true", "Origin", own}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := post("/.keyway/auth/passkey/login/begin", tc.hdr...)
			defer func() { _ = res.Body.Close() }()
			var p struct {
				Type string `json:"type"`
			}
			_ = json.NewDecoder(res.Body).Decode(&p)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d (%s), want %d", res.StatusCode, p.Type, tc.status)
			}
			if tc.status == http.StatusForbidden {
				if p.Type != ptCSRF {
					t.Fatalf("problem type = %q, want %s", p.Type, ptCSRF)
				}
				for _, sc := range res.Cookies() {
					if sc.Name == ceremonyCookieName && sc.MaxAge >= 0 {
						t.Fatal("a refused request started a ceremony")
					}
				}
			}
		})
	}
}
