package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/testenv"
)

// person is a browser-like client: a cookie jar, keyway's CSRF header and
// Origin on every request, and a virtual authenticator.
type person struct {
	t      *testing.T
	in     *apptest.Instance
	c      *http.Client
	origin string
	rp     virtualwebauthn.RelyingParty
	auth   virtualwebauthn.Authenticator
	creds  []virtualwebauthn.Credential
}

func newPerson(t *testing.T, in *apptest.Instance) *person {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := in.Client()
	c.Jar = jar
	origin := strings.TrimSuffix(in.URL("/"), "/")
	return &person{t: t, in: in, c: c, origin: origin,
		rp:   virtualwebauthn.RelyingParty{Name: "keyway", ID: "localhost", Origin: origin},
		auth: virtualwebauthn.NewAuthenticator()}
}

// do sends a JSON request like keyway's own pages do.
func (p *person) do(method, path string, body any) (*http.Response, []byte) {
	p.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, p.in.URL(path), r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Keyway-CSRF", "1")
	req.Header.Set("Origin", p.origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := p.c.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = res.Body.Close() }()
	out, _ := io.ReadAll(res.Body)
	return res, out
}

func (p *person) want(status int, method, path string, body any) []byte {
	p.t.Helper()
	res, out := p.do(method, path, body)
	if res.StatusCode != status {
		p.t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, status, out)
	}
	return out
}

func (p *person) register(beginBody any) []byte {
	p.t.Helper()
	opts := p.want(200, "POST", "/.keyway/auth/passkey/register/begin", beginBody)
	res, out := p.finishRegistration(opts)
	if res.StatusCode != 201 {
		p.t.Fatalf("register/finish: %d, want 201: %s", res.StatusCode, out)
	}
	return out
}

// finishRegistration answers registration options with a new credential.
func (p *person) finishRegistration(opts []byte) (*http.Response, []byte) {
	p.t.Helper()
	ao, err := virtualwebauthn.ParseAttestationOptions(string(opts))
	if err != nil {
		p.t.Fatal(err)
	}
	var o struct {
		PublicKey struct{ User struct{ ID string } }
	}
	_ = json.Unmarshal(opts, &o)
	cred := testenv.NewCredential()
	p.auth.Options.UserHandle, _ = base64URL(o.PublicKey.User.ID)
	resp := virtualwebauthn.CreateAttestationResponse(p.rp, p.auth, cred, *ao)
	p.creds = append(p.creds, cred)
	return p.do("POST", "/.keyway/auth/passkey/register/finish", resp)
}

// assertWith answers an assertion begun at path with credential i.
func (p *person) assertWith(i int, beginPath, finishPath string, beginBody any) (*http.Response, []byte) {
	p.t.Helper()
	opts := p.want(200, "POST", beginPath, beginBody)
	ao, err := virtualwebauthn.ParseAssertionOptions(string(opts))
	if err != nil {
		p.t.Fatal(err)
	}
	p.creds[i].Counter++
	return p.do("POST", finishPath, virtualwebauthn.CreateAssertionResponse(p.rp, p.auth, p.creds[i], *ao))
}

func (p *person) login(i int) {
	p.t.Helper()
	if res, out := p.assertWith(i, "/.keyway/auth/passkey/login/begin", "/.keyway/auth/passkey/login/finish", map[string]string{}); res.StatusCode != 200 {
		p.t.Fatalf("login: %d %s", res.StatusCode, out)
	}
}

func (p *person) stepUp(i int) {
	p.t.Helper()
	if res, out := p.assertWith(i, "/.keyway/auth/stepup/begin", "/.keyway/auth/stepup/finish", map[string]string{}); res.StatusCode != 200 {
		p.t.Fatalf("step-up: %d %s", res.StatusCode, out)
	}
}

func (p *person) cookie() *http.Cookie {
	u, _ := url.Parse(p.in.URL("/"))
	for _, c := range p.c.Jar.Cookies(u) {
		if c.Name == "__Host-keyway_session" {
			return c
		}
	}
	return nil
}

func base64URL(s string) ([]byte, error) {
	return decodeB64URL(s)
}

func TestPasskeySignUpSessionsAndBFF(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.Sessions.StepUpMaxAge = 2 * time.Second // so the test can outlive it
	in := apptest.Start(t, cfg)
	alice := newPerson(t, in)

	out := alice.register(map[string]string{"username": "alice", "display_name": "Alice A."})
	var signup struct {
		User          struct{ ID, Username string }
		RecoveryCodes []string `json:"recovery_codes"`
	}
	apptest.Must(t, json.Unmarshal(out, &signup), "decode")
	if signup.User.Username != "alice" || len(signup.RecoveryCodes) != 10 {
		t.Fatalf("sign-up answer %s", out)
	}

	// The session cookie's attributes, as the browser received them.
	res, _ := alice.do("GET", "/.keyway/auth/session", nil)
	if res.StatusCode != 200 {
		t.Fatalf("session after sign-up: %d", res.StatusCode)
	}
	login := loginRaw(t, alice)
	sc := strings.Join(login.Header.Values("Set-Cookie"), "\n")
	for _, want := range []string{"__Host-keyway_session=kws_", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(sc, want) {
			t.Fatalf("Set-Cookie %q lacks %q", sc, want)
		}
	}
	if strings.Contains(strings.ToLower(sc), "domain=") || strings.Count(sc, "__Host-keyway_session=") != 1 {
		t.Fatalf("session cookie has a Domain: %q", sc)
	}

	// The BFF: /v1/me with the session; the upstream gets identity, never the cookie.
	res, body := alice.do("GET", "/v1/me", nil)
	if res.StatusCode != 200 || !strings.Contains(string(body), `"name":"Alice A."`) {
		t.Fatalf("/v1/me: %d %s", res.StatusCode, body)
	}
	res, body = alice.do("POST", "/v1/me/cities", map[string]string{"city": "Oslo"})
	if res.StatusCode != 201 || !strings.Contains(string(body), "Oslo") {
		t.Fatalf("POST /v1/me/cities: %d %s", res.StatusCode, body)
	}

	t.Run("CSRF", func(t *testing.T) {
		for name, mutate := range map[string]func(*http.Request){
			"no header":         func(r *http.Request) { r.Header.Del("X-Keyway-CSRF") },
			"foreign origin":    func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") },
			"cross-site fetch":  func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") },
			"same-site sibling": func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-site") },
		} {
			for _, path := range []string{"/v1/me/cities", "/.keyway/auth/logout", "/.keyway/auth/passkey/login/begin"} {
				req, _ := http.NewRequest("POST", in.URL(path), strings.NewReader(`{"city":"Rome"}`))
				req.Header.Set("X-Keyway-CSRF", "1")
				req.Header.Set("Origin", alice.origin)
				mutate(req)
				res, err := alice.c.Do(req)
				apptest.Must(t, err, "POST")
				b, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				if res.StatusCode != 403 || !strings.Contains(string(b), "urn:keyway:problem:csrf") {
					t.Fatalf("%s %s: %d %s", name, path, res.StatusCode, b)
				}
			}
		}
		if res, _ := alice.do("GET", "/.keyway/auth/session", nil); res.StatusCode != 200 {
			t.Fatal("a refused logout signed alice out")
		}
	})

	t.Run("step-up", func(t *testing.T) {
		// Make the session stale, then sensitive actions ask for step-up.
		bob := newPerson(t, in)
		bob.register(map[string]string{"username": "bob"})
		res, body := bob.do("POST", "/.keyway/api-keys", map[string]any{"name": "k", "scopes": []string{"weather:history"}})
		if res.StatusCode != 201 {
			t.Fatalf("fresh session creating a key: %d %s", res.StatusCode, body)
		}
		time.Sleep(2100 * time.Millisecond)
		res, body = bob.do("POST", "/.keyway/api-keys", map[string]any{"name": "k2"})
		if res.StatusCode != 401 || !strings.Contains(string(body), "step-up-required") {
			t.Fatalf("stale session creating a key: %d %s", res.StatusCode, body)
		}
		before := bob.cookie().Value
		bob.stepUp(0)
		// People cannot give their own keys the admin scope, or any scope
		// outside api_keys.self_service_scopes.
		for _, scopes := range [][]string{{"keyway:admin"}, {"weather:history", "keyway:admin"}, {"orders:write"}} {
			res, body := bob.do("POST", "/.keyway/api-keys", map[string]any{"name": "x", "scopes": scopes})
			if res.StatusCode != 403 {
				t.Fatalf("self-service key with %v: %d %s", scopes, res.StatusCode, body)
			}
		}
		if bob.cookie().Value == before {
			t.Fatal("step-up did not rotate the session token")
		}
		var created struct{ Key string }
		_ = json.Unmarshal(bob.want(201, "POST", "/.keyway/api-keys", map[string]any{"name": "k2", "scopes": []string{"weather:history"}}), &created)
		// The key made in the portal works on the demo API.
		if r := get(t, in.Client(), in.URL("/v1/history?city=Paris"), "Authorization", "Bearer "+created.Key); r.StatusCode != 200 {
			t.Fatalf("portal-made key on /v1/history: %d", r.StatusCode)
		}
		// Someone else's key is not found.
		keys := alice.want(200, "GET", "/.keyway/api-keys", nil)
		if strings.Contains(string(keys), "k2") {
			t.Fatal("alice sees bob's keys")
		}
	})
}

func loginRaw(t *testing.T, p *person) *http.Response {
	t.Helper()
	opts := p.want(200, "POST", "/.keyway/auth/passkey/login/begin", map[string]string{})
	ao, _ := virtualwebauthn.ParseAssertionOptions(string(opts))
	p.creds[0].Counter++
	res, out := p.do("POST", "/.keyway/auth/passkey/login/finish", virtualwebauthn.CreateAssertionResponse(p.rp, p.auth, p.creds[0], *ao))
	if res.StatusCode != 200 {
		t.Fatalf("login: %d %s", res.StatusCode, out)
	}
	return res
}

func TestRemovingAPasskeyEndsItsSessions(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	laptop := newPerson(t, in)
	laptop.register(map[string]string{"username": "carol"})
	laptop.register(map[string]string{"name": "Phone"}) // a second passkey, added while signed in

	// A second browser signs in with the second passkey.
	phone := newPerson(t, in)
	phone.auth, phone.creds = laptop.auth, laptop.creds
	phone.login(1)
	if res, _ := phone.do("GET", "/v1/me", nil); res.StatusCode != 200 {
		t.Fatal("phone not signed in")
	}
	var list struct {
		Passkeys []struct {
			ID, Name string
			Current  bool
		}
	}
	_ = json.Unmarshal(phone.want(200, "GET", "/.keyway/auth/passkeys", nil), &list)
	var phoneRef string
	for _, pk := range list.Passkeys {
		if pk.Current {
			phoneRef = pk.ID
		}
	}
	if len(list.Passkeys) != 2 || phoneRef == "" {
		t.Fatalf("passkeys %+v", list)
	}
	var ended struct {
		SessionsEnded int `json:"sessions_ended"`
	}
	_ = json.Unmarshal(laptop.want(200, "DELETE", "/.keyway/auth/passkeys/"+phoneRef, nil), &ended)
	if ended.SessionsEnded != 1 {
		t.Fatalf("sessions ended = %d", ended.SessionsEnded)
	}
	if res, _ := phone.do("GET", "/v1/me", nil); res.StatusCode != 401 {
		t.Fatalf("phone's session survived its passkey: %d", res.StatusCode)
	}
	if res, _ := laptop.do("GET", "/v1/me", nil); res.StatusCode != 200 {
		t.Fatal("laptop's session (other passkey) ended too")
	}
	// The remaining passkey cannot go while recovery codes remain? It can —
	// the account still has unused codes from sign-up.
	laptop.want(200, "GET", "/.keyway/auth/sessions", nil)
}

func TestRecoveryCodeFlow(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	dave := newPerson(t, in)
	var signup struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	_ = json.Unmarshal(dave.register(map[string]string{"username": "dave"}), &signup)
	dave.want(204, "POST", "/.keyway/auth/logout", nil)
	if res, _ := dave.do("GET", "/.keyway/auth/session", nil); res.StatusCode != 401 {
		t.Fatal("still signed in after logout")
	}

	// Lost device: a new browser with nothing but a recovery code.
	lost := newPerson(t, in)
	res, body := lost.do("POST", "/.keyway/auth/recovery", map[string]string{"username": "dave", "code": "aaaa-bbbb-cccc-dddd"})
	if res.StatusCode != 401 {
		t.Fatalf("wrong code: %d %s", res.StatusCode, body)
	}
	lost.want(200, "POST", "/.keyway/auth/recovery", map[string]string{"username": "dave", "code": signup.RecoveryCodes[0]})
	// The restricted session can do one thing: add a passkey.
	if res, _ := lost.do("GET", "/v1/me", nil); res.StatusCode != 401 {
		t.Fatalf("restricted session reached the API: %d", res.StatusCode)
	}
	if res, _ := lost.do("GET", "/.keyway/auth/passkeys", nil); res.StatusCode != 401 {
		t.Fatalf("restricted session listed passkeys: %d", res.StatusCode)
	}
	lost.register(map[string]string{"name": "New phone"})
	if res, _ := lost.do("GET", "/v1/me", nil); res.StatusCode != 200 {
		t.Fatal("not fully signed in after registering a passkey in recovery")
	}
	// The code was single use.
	again := newPerson(t, in)
	if res, _ := again.do("POST", "/.keyway/auth/recovery", map[string]string{"username": "dave", "code": signup.RecoveryCodes[0]}); res.StatusCode != 401 {
		t.Fatalf("a used code worked again: %d", res.StatusCode)
	}
}

func TestFirstAdminSetupAndAdminActions(t *testing.T) {
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {echo: {url: %s}}
routes: [{path: /api, upstream: echo, policy: session, methods: [GET, POST]}]
`, apptest.Echo(t, time.Second)))
	in := apptest.Start(t, cfg)
	setup := in.App.SetupURL()
	if !strings.Contains(setup, "/.keyway/portal/setup#token=") {
		t.Fatalf("setup URL %q", setup)
	}
	if strings.Contains(in.Logs(), setup[strings.Index(setup, "#token=")+7:]) {
		t.Fatal("the setup token reached the log")
	}
	// Sign-up is invite-only by default.
	eve := newPerson(t, in)
	if res, body := eve.do("POST", "/.keyway/auth/passkey/register/begin", map[string]string{"username": "eve"}); res.StatusCode != 403 {
		t.Fatalf("uninvited sign-up: %d %s", res.StatusCode, body)
	}
	root := newPerson(t, in)
	token := setup[strings.Index(setup, "#token=")+7:]
	out := root.register(map[string]string{"username": "root", "invite": token})
	if !strings.Contains(string(out), `"role":"admin"`) {
		t.Fatalf("setup did not make an admin: %s", out)
	}
	if res, body := newPerson(t, in).do("POST", "/.keyway/auth/passkey/register/begin", map[string]string{"username": "xavier", "invite": token}); res.StatusCode != 403 {
		t.Fatalf("the setup link worked twice: %d %s", res.StatusCode, body)
	}

	var inv struct{ URL string }
	_ = json.Unmarshal(root.want(201, "POST", "/.keyway/admin/invites", map[string]string{"role": "user"}), &inv)
	frank := newPerson(t, in)
	frank.register(map[string]string{"username": "frank", "invite": inv.URL[strings.Index(inv.URL, "#invite=")+8:]})

	// The upstream of a session route sees identity, not the cookie.
	res, body := frank.do("GET", "/api/x", nil)
	if res.StatusCode != 200 {
		t.Fatalf("session route: %d %s", res.StatusCode, body)
	}
	var echo apptest.Echoed
	_ = json.Unmarshal(body, &echo)
	if echo.Header.Get("Cookie") != "" || !strings.HasPrefix(echo.Header.Get("X-Keyway-Subject"), "user:usr_") {
		t.Fatalf("upstream headers: %v", echo.Header)
	}

	// Non-admins cannot use admin endpoints.
	if res, _ := frank.do("GET", "/.keyway/admin/users", nil); res.StatusCode != 403 {
		t.Fatalf("non-admin listed users: %d", res.StatusCode)
	}
	var users struct {
		Users []struct{ ID, Username string }
	}
	_ = json.Unmarshal(root.want(200, "GET", "/.keyway/admin/users", nil), &users)
	var frankID string
	for _, u := range users.Users {
		if u.Username == "frank" {
			frankID = u.ID
		}
	}
	root.want(200, "POST", "/.keyway/admin/users/"+frankID+"/revoke-sessions", nil)
	if res, _ := frank.do("GET", "/api/x", nil); res.StatusCode != 401 {
		t.Fatalf("admin revocation not effective on the next request: %d", res.StatusCode)
	}
	var link struct{ URL string }
	_ = json.Unmarshal(root.want(201, "POST", "/.keyway/admin/users/"+frankID+"/enrol-link", nil), &link)
	frank2 := newPerson(t, in)
	frank2.want(200, "POST", "/.keyway/auth/enrol", map[string]string{"token": link.URL[strings.Index(link.URL, "#token=")+7:]})
	frank2.register(map[string]string{"name": "Enrolled"})
	if res, _ := frank2.do("GET", "/api/x", nil); res.StatusCode != 200 {
		t.Fatal("enrolment did not end in a full session")
	}
}

func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// TestRecoveryCannotBeLockedOutFromOneSource spends one source's recovery
// budget on an account; its owner, elsewhere, still gets in with a code.
func TestRecoveryCannotBeLockedOutFromOneSource(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} // so X-Forwarded-For names the source
	in := apptest.Start(t, cfg)
	owner := newPerson(t, in)
	var signup struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	_ = json.Unmarshal(owner.register(map[string]string{"username": "gwen"}), &signup)

	try := func(from, code string) int {
		req, _ := http.NewRequest(http.MethodPost, in.URL("/.keyway/auth/recovery"), strings.NewReader(
			fmt.Sprintf(`{"username":"gwen","code":%q}`, code)))
		req.Header.Set("X-Keyway-CSRF", "1")
		req.Header.Set("X-Forwarded-For", from)
		res, err := in.Client().Do(req)
		apptest.Must(t, err, "recovery")
		_ = res.Body.Close()
		return res.StatusCode
	}
	statuses := []int{}
	for range 7 {
		statuses = append(statuses, try("203.0.113.9", "aaaa-bbbb-cccc-dddd"))
	}
	if statuses[0] != 401 || statuses[6] != 429 {
		t.Fatalf("attacker's tries: %v, want 401s then 429", statuses)
	}
	if got := try("198.51.100.7", signup.RecoveryCodes[0]); got != 200 {
		t.Fatalf("the owner's correct code from elsewhere: %d, want 200", got)
	}
	// The attacker's own /64 counts as one source for IPv6.
	for range 5 {
		try("2001:db8:1:2::1", "aaaa-bbbb-cccc-dddd")
	}
	if got := try("2001:db8:1:2::ffff", "aaaa-bbbb-cccc-dddd"); got != 429 {
		t.Fatalf("another address of the same /64: %d, want 429", got)
	}
}

// TestOperatorRecoversAnAdmin is the way back in for an admin who lost every
// passkey and code: the operator, on the data directory, ends the lost
// sessions and makes an enrolment link, as `keyway users` does.
func TestOperatorRecoversAnAdmin(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	hana := newPerson(t, in)
	hana.register(map[string]string{"username": "hana"})

	people, err := app.OpenPeople(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open people")
	defer func() { _ = people.Close() }()
	users, err := people.Passkeys.Users(context.Background())
	apptest.Must(t, err, "users")
	var id string
	for _, u := range users {
		if u.Username == "hana" {
			id = u.ID
		}
	}
	n, err := people.Sessions.RevokeUser(context.Background(), id, "cli")
	if err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if res, _ := hana.do("GET", "/.keyway/auth/session", nil); res.StatusCode != 401 {
		t.Fatalf("session survived the operator: %d", res.StatusCode)
	}
	tok, err := people.Passkeys.CreateLink(context.Background(), "enrol", id, "user", "cli", time.Hour)
	apptest.Must(t, err, "link")
	back := newPerson(t, in)
	back.want(200, "POST", "/.keyway/auth/enrol", map[string]string{"token": tok})
	back.register(map[string]string{"name": "New laptop"})
	if res, _ := back.do("GET", "/v1/me", nil); res.StatusCode != 200 {
		t.Fatalf("not back in: %d", res.StatusCode)
	}
}
