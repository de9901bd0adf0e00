package app_test

// An adversarial review of passkeys, sessions, recovery and step-up
// through keyway's endpoints. Each test asserts the secure behaviour; the
// finding (a passkey added with a step-up that had gone stale by the
// ceremony's end) failed before its fix.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/keywayhq/keyway/internal/app/apptest"
)

// withToken sends method path with only the session token tok (no jar),
// and keyway's CSRF header and Origin, and returns the status.
func withToken(t *testing.T, in *apptest.Instance, tok, method, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, in.URL(path), strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Keyway-CSRF", "1")
	req.Header.Set("Origin", strings.TrimSuffix(in.URL("/"), "/"))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Cookie", "__Host-keyway_session="+tok)
	c := in.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := c.Do(req)
	apptest.Must(t, err, "%s %s", method, path)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

func signUpCodes(t *testing.T, p *person, username string) []string {
	t.Helper()
	var signup struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	apptest.Must(t, json.Unmarshal(p.register(map[string]string{"username": username}), &signup), "decode sign-up")
	if len(signup.RecoveryCodes) != 10 {
		t.Fatalf("sign-up gave %d codes", len(signup.RecoveryCodes))
	}
	return signup.RecoveryCodes
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// A recovery session may say who is signed in and add a passkey; nothing else.
func TestPasskeyRestrictedSessionReach(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	owner := newPerson(t, in)
	codes := signUpCodes(t, owner, "rita")
	ownerTok := owner.cookie().Value

	lost := newPerson(t, in)
	lost.want(200, "POST", "/.keyway/auth/recovery", map[string]string{"username": "rita", "code": codes[0]})
	tok := lost.cookie().Value
	if got := withToken(t, in, tok, "GET", "/.keyway/auth/session"); got != 200 {
		t.Fatalf("recovery session asking who it is: %d, want 200", got)
	}
	var own struct {
		Session struct{ ID string }
	}
	_ = json.Unmarshal(owner.want(200, "GET", "/.keyway/auth/session", nil), &own)
	for _, c := range []struct{ method, path string }{
		{"POST", "/.keyway/auth/stepup/begin"},
		{"POST", "/.keyway/auth/stepup/finish"},
		{"GET", "/.keyway/auth/sessions"},
		{"DELETE", "/.keyway/auth/sessions/" + own.Session.ID},
		{"POST", "/.keyway/auth/sessions/revoke-others"},
		{"GET", "/.keyway/auth/passkeys"},
		{"PATCH", "/.keyway/auth/passkeys/AAAA"},
		{"DELETE", "/.keyway/auth/passkeys/AAAA"},
		{"POST", "/.keyway/auth/recovery/codes"},
		{"POST", "/.keyway/auth/account/export"},
		{"POST", "/.keyway/auth/account/erase"},
		{"GET", "/.keyway/api-keys"},
		{"POST", "/.keyway/api-keys"},
		{"GET", "/.keyway/admin/users"},
		{"GET", "/.keyway/admin/sessions"},
		{"POST", "/.keyway/admin/invites"},
		{"GET", "/v1/me"},
		{"POST", "/v1/me/cities"},
		{"GET", "/.keyway/portal/account"},
		{"GET", "/.keyway/portal/sessions"},
		{"GET", "/.keyway/portal/keys"},
	} {
		if got := withToken(t, in, tok, c.method, c.path); got < 300 {
			t.Errorf("recovery session: %s %s answered %d", c.method, c.path, got)
		}
	}
	if got := withToken(t, in, ownerTok, "GET", "/.keyway/auth/session"); got != 200 {
		t.Fatalf("the owner's own session was ended by the recovery session: %d", got)
	}
	// What it may do, it can.
	lost.register(map[string]string{"name": "New phone"})
	if got := withToken(t, in, tok, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("the recovery token after the passkey was added: %d, want 401", got)
	}
}

// Every privilege change gives a new token and kills the old one.
func TestPasskeyOldTokensDie(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	p := newPerson(t, in)
	signUpCodes(t, p, "sam")
	t0 := p.cookie().Value

	p.stepUp(0)
	t1 := p.cookie().Value
	if t1 == t0 {
		t.Fatal("step-up kept the token")
	}
	if got := withToken(t, in, t0, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("token from before step-up: %d, want 401", got)
	}
	// Sign-in in a browser that already holds a session: the old one ends
	// (no fixation), the new one is another token.
	p.login(0)
	t2 := p.cookie().Value
	if t2 == t1 {
		t.Fatal("sign-in kept the token")
	}
	if got := withToken(t, in, t1, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("session from before sign-in: %d, want 401", got)
	}
	p.want(204, "POST", "/.keyway/auth/logout", nil)
	if got := withToken(t, in, t2, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("token after logout: %d, want 401", got)
	}
	// A planted (attacker's own) session in the victim's browser ends when
	// the victim signs in; the attacker's token does not become the victim's.
	att := newPerson(t, in)
	signUpCodes(t, att, "mallory")
	planted := att.cookie().Value
	victim := newPerson(t, in)
	victim.auth, victim.creds = p.auth, p.creds
	req, _ := http.NewRequest("GET", in.URL("/"), nil)
	victim.c.Jar.SetCookies(req.URL, []*http.Cookie{{Name: "__Host-keyway_session", Value: planted, Path: "/", Secure: true}})
	victim.login(0)
	if victim.cookie().Value == planted {
		t.Fatal("sign-in kept the planted token")
	}
	if got := withToken(t, in, planted, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("planted session after the victim's sign-in: %d, want 401", got)
	}
}

// Adding a passkey to a full session needs a fresh step-up. The freshness
// must hold when the passkey is stored, not only when the ceremony began:
// the ceremony itself proves nothing about the existing passkeys (any new
// authenticator answers it).
func TestPasskeyAddPasskeyNeedsFreshnessAtFinish(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.Sessions.StepUpMaxAge = 2 * time.Second
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	signUpCodes(t, p, "tess")
	opts := p.want(200, "POST", "/.keyway/auth/passkey/register/begin", map[string]string{"name": "Late"})
	time.Sleep(2200 * time.Millisecond)
	// Begun now, it is refused:
	if res, body := p.do("POST", "/.keyway/auth/passkey/register/begin", map[string]string{"name": "x"}); res.StatusCode != 401 {
		t.Fatalf("stale session beginning to add a passkey: %d %s", res.StatusCode, body)
	}
	// Begun fresh, finished stale (a refused begin sets no ceremony
	// cookie, so the browser still holds the first one):
	res, body := p.finishRegistration(opts)
	if res.StatusCode == 201 {
		t.Fatalf("a passkey was added by a session %v past its step-up: %s", cfg.Sessions.StepUpMaxAge, body)
	}
}

// A ceremony is bound to the browser that began it: another browser
// cannot finish it, not even with a valid assertion for its challenge.
func TestPasskeyCeremonyBoundToBrowser(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	owner := newPerson(t, in)
	signUpCodes(t, owner, "uma")
	owner.want(204, "POST", "/.keyway/auth/logout", nil)

	// The owner's browser begins; the attacker's browser (its own
	// ceremony, or none) posts the owner's assertion.
	opts := owner.want(200, "POST", "/.keyway/auth/passkey/login/begin", map[string]string{})
	var cer *http.Cookie
	for _, c := range owner.c.Jar.Cookies(mustURL(in.URL("/"))) {
		if c.Name == "__Host-keyway_ceremony" {
			cer = &http.Cookie{Name: c.Name, Value: c.Value, Path: "/", Secure: true}
		}
	}
	if cer == nil {
		t.Fatal("no ceremony cookie")
	}
	ao, _ := virtualwebauthn.ParseAssertionOptions(string(opts))
	owner.creds[0].Counter++
	stolen := virtualwebauthn.CreateAssertionResponse(owner.rp, owner.auth, owner.creds[0], *ao)

	att := newPerson(t, in)
	if res, body := att.do("POST", "/.keyway/auth/passkey/login/finish", stolen); res.StatusCode == 200 {
		t.Fatalf("no ceremony cookie, someone else's assertion: signed in: %s", body)
	}
	att.want(200, "POST", "/.keyway/auth/passkey/login/begin", map[string]string{})
	if res, body := att.do("POST", "/.keyway/auth/passkey/login/finish", stolen); res.StatusCode == 200 {
		t.Fatalf("own ceremony, someone else's assertion: signed in: %s", body)
	}
	// The owner's ceremony still works for the owner.
	if res, body := owner.do("POST", "/.keyway/auth/passkey/login/finish", stolen); res.StatusCode != 200 {
		t.Fatalf("owner's own finish: %d %s", res.StatusCode, body)
	}
	// And once only.
	owner.want(204, "POST", "/.keyway/auth/logout", nil)
	req, _ := http.NewRequest("GET", in.URL("/"), nil)
	owner.c.Jar.SetCookies(req.URL, []*http.Cookie{cer})
	if res, _ := owner.do("POST", "/.keyway/auth/passkey/login/finish", stolen); res.StatusCode == 200 {
		t.Fatal("the same assertion signed in twice")
	}
}

// Sign-in options and recovery answers say nothing about which accounts exist.
func TestPasskeyNoEnumeration(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	in := apptest.Start(t, cfg)
	owner := newPerson(t, in)
	signUpCodes(t, owner, "vera")

	shape := func(username string) string {
		var o map[string]map[string]any
		body := newPerson(t, in).want(200, "POST", "/.keyway/auth/passkey/login/begin", map[string]string{"username": username})
		apptest.Must(t, json.Unmarshal(body, &o), "options")
		delete(o["publicKey"], "challenge")
		b, _ := json.Marshal(o)
		return string(b)
	}
	known, unknown := shape("vera"), shape("nobody-here")
	if known != unknown || strings.Contains(known, "allowCredentials") {
		t.Fatalf("sign-in options differ:\nknown   %s\nunknown %s", known, unknown)
	}

	recover := func(from, username string) (int, string) {
		req, _ := http.NewRequest("POST", in.URL("/.keyway/auth/recovery"), strings.NewReader(
			fmt.Sprintf(`{"username":%q,"code":"aaaa-bbbb-cccc-dddd"}`, username)))
		req.Header.Set("X-Keyway-CSRF", "1")
		req.Header.Set("X-Forwarded-For", from)
		res, err := in.Client().Do(req)
		apptest.Must(t, err, "recovery")
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		var p map[string]any
		_ = json.Unmarshal(b, &p)
		delete(p, "instance")
		delete(p, "request_id")
		j, _ := json.Marshal(p)
		return res.StatusCode, string(j)
	}
	ks, kb := recover("203.0.113.1", "vera")
	us, ub := recover("203.0.113.2", "nobody-here")
	if ks != us || kb != ub {
		t.Fatalf("recovery answers differ:\nknown   %d %s\nunknown %d %s", ks, kb, us, ub)
	}
}

// A person can end only their own sessions.
func TestPasskeyCannotEndAnotherPersonsSession(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	alice, bob := newPerson(t, in), newPerson(t, in)
	signUpCodes(t, alice, "wanda")
	signUpCodes(t, bob, "xena")
	var bs struct {
		Session struct{ ID string }
	}
	_ = json.Unmarshal(bob.want(200, "GET", "/.keyway/auth/session", nil), &bs)
	if res, _ := alice.do("DELETE", "/.keyway/auth/sessions/"+bs.Session.ID, nil); res.StatusCode < 400 {
		t.Fatalf("alice ended bob's session: %d", res.StatusCode)
	}
	if res, _ := bob.do("GET", "/.keyway/auth/session", nil); res.StatusCode != 200 {
		t.Fatalf("bob signed out by alice: %d", res.StatusCode)
	}
	var list struct{ Sessions []struct{ ID string } }
	_ = json.Unmarshal(alice.want(200, "GET", "/.keyway/auth/sessions", nil), &list)
	for _, s := range list.Sessions {
		if s.ID == bs.Session.ID {
			t.Fatal("alice lists bob's session")
		}
	}
}

// Idle and absolute timeouts hold on the server, whatever the cookie says.
func TestPasskeySessionTimeouts(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.Sessions.IdleTimeout = 2 * time.Second
	cfg.Sessions.AbsoluteTimeout = 3 * time.Second
	cfg.Sessions.StepUpMaxAge = time.Second
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	signUpCodes(t, p, "yves")
	tok := p.cookie().Value
	for i := range 2 {
		time.Sleep(1200 * time.Millisecond)
		if got := withToken(t, in, tok, "GET", "/.keyway/auth/session"); got != 200 {
			t.Fatalf("active session, check %d: %d", i, got)
		}
	}
	time.Sleep(800 * time.Millisecond) // 3.2 s after sign-in, active all along
	if got := withToken(t, in, tok, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("past the absolute timeout: %d, want 401", got)
	}
	// Step-up does not extend the absolute timeout.
	p.login(0)
	time.Sleep(1100 * time.Millisecond)
	p.stepUp(0)
	tok = p.cookie().Value
	time.Sleep(1100 * time.Millisecond)
	if got := withToken(t, in, tok, "GET", "/.keyway/auth/session"); got != 200 {
		t.Fatalf("within timeouts: %d", got)
	}
	time.Sleep(1000 * time.Millisecond)
	if got := withToken(t, in, tok, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("stepped-up session past the absolute timeout: %d, want 401", got)
	}
	// Idle.
	p.login(0)
	tok = p.cookie().Value
	time.Sleep(2100 * time.Millisecond)
	if got := withToken(t, in, tok, "GET", "/.keyway/auth/session"); got != 401 {
		t.Fatalf("idle session: %d, want 401", got)
	}
}

// The last passkey cannot go while no unused recovery code remains.
func TestPasskeyLastPasskeyWithoutCodes(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	codes := signUpCodes(t, p, "zoe")
	for i, code := range codes {
		req, _ := http.NewRequest("POST", in.URL("/.keyway/auth/recovery"), strings.NewReader(
			fmt.Sprintf(`{"username":"zoe","code":%q}`, code)))
		req.Header.Set("X-Keyway-CSRF", "1")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		res, err := in.Client().Do(req)
		apptest.Must(t, err, "recovery")
		_ = res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("code %d: %d", i, res.StatusCode)
		}
	}
	var list struct {
		Passkeys []struct{ ID string }
		Left     int `json:"recovery_codes_left"`
	}
	_ = json.Unmarshal(p.want(200, "GET", "/.keyway/auth/passkeys", nil), &list)
	if len(list.Passkeys) != 1 || list.Left != 0 {
		t.Fatalf("passkeys %d, codes left %d", len(list.Passkeys), list.Left)
	}
	if res, body := p.do("DELETE", "/.keyway/auth/passkeys/"+list.Passkeys[0].ID, nil); res.StatusCode != 409 {
		t.Fatalf("removing the last passkey with no codes left: %d %s", res.StatusCode, body)
	}
}
