package app_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/keywayhq/keyway/internal/app/apptest"
)

// These tests use the portal's pages as a person would, in a real headless
// Chromium with the pages' own Content-Security-Policy in force: they fill
// in forms and press buttons, and a CDP virtual authenticator answers the
// passkey prompts. Every page is checked for CSP violations, so an inline
// script or style that crept in fails here even if the unit tests missed it.
//
// KEYWAY_SCREENSHOTS=1 saves a PNG of each page into docs/screenshots/.

// portalWatch runs in every document before the page's own script: it
// records CSP violations and uncaught errors for the test to read.
const portalWatch = `
window.__violations = [];
window.__errors = [];
document.addEventListener('securitypolicyviolation', (e) => {
	window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + (e.sample || ''));
});
window.addEventListener('error', (e) => { window.__errors.push(String(e.message)); });
window.addEventListener('unhandledrejection', (e) => { window.__errors.push(String(e.reason)); });
`

// noAutofill makes the tab a browser without conditional mediation, so that
// its sign-in page waits for the button (a virtual authenticator answers
// an autofill request at once, with no one choosing).
const noAutofill = `
if (window.PublicKeyCredential) {
	PublicKeyCredential.getClientCapabilities = async () => ({conditionalGet: false});
	PublicKeyCredential.isConditionalMediationAvailable = async () => false;
}
`

// portalTab is one isolated browser tab on keyway's portal.
type portalTab struct {
	t    *testing.T
	in   *apptest.Instance
	ctx  context.Context
	name string
	auth webauthn.AuthenticatorID
}

func newPortalTab(t *testing.T, in *apptest.Instance, browser context.Context, name string, autofill bool) *portalTab {
	t.Helper()
	ctx := apptest.Tab(t, browser)
	p := &portalTab{t: t, in: in, ctx: ctx, name: name}
	p.addScript(portalWatch)
	if !autofill {
		p.addScript(noAutofill)
	}
	p.auth = apptest.AddAuthenticator(t, ctx, nil)
	return p
}

func (p *portalTab) addScript(js string) {
	p.t.Helper()
	c, cancel := context.WithTimeout(p.ctx, apptest.BrowserTimeout)
	defer cancel()
	if _, err := chromedp.Call(c, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js}); err != nil {
		p.t.Fatalf("%s: add script: %v", p.name, err)
	}
}

// open navigates to a portal page, with the page's CSP in force.
func (p *portalTab) open(path string) {
	p.t.Helper()
	url := path
	if strings.HasPrefix(path, "/") {
		url = p.in.URL(path)
	}
	c, cancel := context.WithTimeout(p.ctx, apptest.BrowserTimeout)
	defer cancel()
	if err := chromedp.Do(c, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("%s: open %s: %v", p.name, path, err)
	}
	p.clean()
}

// eval runs js in the page.
func (p *portalTab) eval(js string) {
	p.t.Helper()
	apptest.Eval[any](p.t, p.ctx, "(() => { "+js+" ; return null })()")
}

func evalIn[T any](p *portalTab, js string) T {
	p.t.Helper()
	return apptest.Eval[T](p.t, p.ctx, js)
}

// waitFor polls the JS condition until it is true. Errors while the page
// navigates count as false.
func (p *portalTab) waitFor(cond, what string) {
	p.t.Helper()
	deadline := time.Now().Add(apptest.BrowserTimeout)
	for {
		ok, err := apptest.EvalErr[bool](p.ctx, "(() => { try { return !!("+cond+") } catch (e) { return false } })()")
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: waiting for %s: timed out at %s; status %q", p.name, what, p.path(), p.status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPage waits until the tab shows the portal page name, loaded.
func (p *portalTab) waitPage(name string) {
	p.t.Helper()
	p.waitFor("location.pathname === "+jsq("/.keyway/portal/"+name)+" && document.readyState === 'complete'", "page "+name)
	p.clean()
}

func (p *portalTab) path() string {
	v, _ := apptest.EvalErr[string](p.ctx, "location.pathname + location.search + location.hash")
	return v
}

func (p *portalTab) status() string {
	v, _ := apptest.EvalErr[string](p.ctx, "(document.getElementById('status') || {}).textContent || ''")
	return v
}

// clean fails the test on CSP violations or script errors in the page.
func (p *portalTab) clean() {
	p.t.Helper()
	got := evalIn[[]string](p, "[...(window.__violations || []), ...(window.__errors || [])]")
	if len(got) > 0 {
		p.t.Errorf("%s at %s: CSP violations or script errors: %q", p.name, p.path(), got)
	}
}

func (p *portalTab) fill(selector, value string) {
	p.t.Helper()
	p.eval("const el = document.querySelector(" + jsq(selector) + "); el.value = " + jsq(value) +
		"; el.dispatchEvent(new Event('input', {bubbles: true}))")
}

// click presses a button as a person would (a user gesture); a button in a
// closed <details> is revealed first.
func (p *portalTab) click(selector string) {
	p.t.Helper()
	p.eval("const el = document.querySelector(" + jsq(selector) + "); if (!el) throw new Error('no ' + " +
		jsq(selector) + "); const d = el.closest('details'); if (d) d.open = true; el.click()")
}

func (p *portalTab) text(selector string) string {
	p.t.Helper()
	return evalIn[string](p, "(document.querySelector("+jsq(selector)+") || {}).innerText || ''")
}

func (p *portalTab) count(selector string) int {
	p.t.Helper()
	return evalIn[int](p, "document.querySelectorAll("+jsq(selector)+").length")
}

// fetchStatus asks keyway for this tab's session, as the page would.
func (p *portalTab) sessionStatus() int {
	p.t.Helper()
	return evalIn[int](p, "fetch('/.keyway/auth/session', {headers: {'X-Keyway-CSRF': '1'}}).then(r => r.status)")
}

// currentPasskey returns the passkey reference of the tab's session.
func (p *portalTab) currentPasskey() string {
	p.t.Helper()
	return evalIn[string](p, "fetch('/.keyway/auth/session').then(r => r.json()).then(j => j.session.passkey || '')")
}

// shot saves a screenshot of the page when KEYWAY_SCREENSHOTS=1.
func (p *portalTab) shot(name string, width, height int64) {
	p.t.Helper()
	if os.Getenv("KEYWAY_SCREENSHOTS") != "1" {
		return
	}
	c, cancel := context.WithTimeout(p.ctx, apptest.BrowserTimeout)
	defer cancel()
	var opts []chromedp.EmulateViewportOption
	if width < 600 {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateScale(2))
	}
	if err := chromedp.Do(c, chromedp.EmulateViewport(width, height, opts...)); err != nil {
		p.t.Fatalf("viewport: %v", err)
	}
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	apptest.Must(p.t, os.MkdirAll(dir, 0o755), "mkdir")
	apptest.Must(p.t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644), "write screenshot")
	if err := chromedp.Do(c, chromedp.ResetViewport()); err != nil {
		p.t.Fatalf("reset viewport: %v", err)
	}
}

// signUp fills in and sends the sign-up (or setup) form on the current
// page and returns the recovery codes it shows.
func (p *portalTab) signUp(username, displayName string) []string {
	p.t.Helper()
	p.fill("#username", username)
	p.fill("#display-name", displayName)
	p.click("form[data-form=signup] button[type=submit]")
	p.waitFor("!document.querySelector('[data-codes]').hidden", "recovery codes")
	codes := evalIn[[]string](p, "[...document.querySelectorAll('[data-codes-list] li')].map(li => li.textContent)")
	if len(codes) != 10 {
		p.t.Fatalf("%s: %d recovery codes shown, want 10", p.name, len(codes))
	}
	return codes
}

func (p *portalTab) signOut() {
	p.t.Helper()
	p.click("button[data-action=signout]")
	p.waitPage("signin")
}

// signIn presses "Sign in with a passkey" with the username field empty.
func (p *portalTab) signIn() {
	p.t.Helper()
	p.waitPage("signin")
	p.click("form[data-form=signin] button[type=submit]")
	p.waitPage("account")
}

// swapAuthenticator replaces the tab's authenticator with a new, empty
// one and returns the credentials the old one held.
func (p *portalTab) swapAuthenticator() []*webauthn.Credential {
	p.t.Helper()
	creds := apptest.Credentials(p.t, p.ctx, p.auth)
	c, cancel := context.WithTimeout(p.ctx, apptest.BrowserTimeout)
	defer cancel()
	if _, err := chromedp.Call(c, webauthn.RemoveVirtualAuthenticator, webauthn.RemoveVirtualAuthenticatorParams{AuthenticatorID: p.auth}); err != nil {
		p.t.Fatalf("remove authenticator: %v", err)
	}
	p.auth = apptest.AddAuthenticator(p.t, p.ctx, nil)
	return creds
}

// addCredential is WebAuthn.addCredential with the credential as a plain
// object: the generated params always send generateCmtgKeyOnNextOperation,
// which Chromium refuses for an authenticator without CMTG support.
var addCredential = cdp.Command[map[string]any, cdp.Empty]{Method: webauthn.CommandAddCredential}

// give puts a credential into the tab's authenticator: the same passkey,
// synced to another device.
func (p *portalTab) give(cred *webauthn.Credential) {
	p.t.Helper()
	c, cancel := context.WithTimeout(p.ctx, apptest.BrowserTimeout)
	defer cancel()
	_, err := chromedp.Call(c, addCredential, map[string]any{"authenticatorId": p.auth, "credential": map[string]any{
		"credentialId": cred.CredentialID, "isResidentCredential": cred.IsResidentCredential, "rpId": cred.RpID,
		"privateKey": cred.PrivateKey, "userHandle": cred.UserHandle, "signCount": cred.SignCount,
		"backupEligibility": cred.BackupEligibility, "backupState": cred.BackupState,
		"userName": cred.UserName, "userDisplayName": cred.UserDisplayName,
	}})
	if err != nil {
		p.t.Fatalf("add credential: %v", err)
	}
}

// jsq quotes s as a JavaScript string literal.
func jsq(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func ref(cred *webauthn.Credential) string {
	return base64.RawURLEncoding.EncodeToString(cred.CredentialID)
}

// stepUps counts the step-up ceremonies keyway completed, from its access log.
func stepUps(t *testing.T, in *apptest.Instance) int {
	t.Helper()
	n := 0
	sc := bufio.NewScanner(strings.NewReader(in.Logs()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			Msg, Method, Path string
			Status            int
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" && l.Path == "/.keyway/auth/stepup/finish" && l.Status == 200 {
			n++
		}
	}
	return n
}

var keyRE = regexp.MustCompile(`^kw_live_[0-9A-Za-z]{46}$`)

// TestBrowserPortal walks a person through the portal: sign-up with
// recovery codes, sign-out, usernameless sign-in, a second passkey, autofill
// sign-in on a second device, removing a passkey (which ends the sessions it
// signed in), recovery with a code, sessions, and an API key that then
// calls the demo API.
func TestBrowserPortal(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	browser := apptest.Browser(t)
	a := newPortalTab(t, in, browser, "laptop", false)

	// Through the whole stack, a page carries the portal's policy, not the
	// deny-all one of the JSON endpoints.
	res, err := in.Client().Get(in.URL("/.keyway/portal/signin"))
	apptest.Must(t, err, "get signin")
	_ = res.Body.Close()
	// The policy names the portal's own script by its full URL, not 'self',
	// which would also trust any script an upstream serves on this origin.
	origin := strings.TrimSuffix(in.URL("/"), "/")
	got := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != http.StatusOK || !strings.Contains(got, "script-src "+origin+"/.keyway/portal/static/app.") ||
		strings.Contains(got, "script-src 'self'") || !strings.Contains(got, "frame-ancestors 'none'") {
		t.Errorf("signin: %d, CSP %q", res.StatusCode, got)
	}

	// The portal's root sends a stranger to sign-in.
	a.open("/.keyway/portal/")
	a.waitPage("signin")
	if got := evalIn[string](a, "document.querySelector('#username').autocomplete"); got != "username webauthn" {
		t.Errorf("username autocomplete %q", got)
	}
	a.shot("signin", 1000, 700)

	// Sign up: the ten recovery codes are shown once.
	a.click("a[href='/.keyway/portal/signup']")
	a.waitPage("signup")
	codes := a.signUp("casey", "Casey Jones")
	a.shot("signup-recovery-codes", 1000, 800)
	a.click("button[data-action=continue]")
	a.waitPage("account")
	if got := a.text("main"); !strings.Contains(got, "Casey Jones") || !strings.Contains(got, "This device") || !strings.Contains(got, "10") {
		t.Errorf("account after sign-up:\n%s", got)
	}
	if n := a.count("[data-passkey]"); n != 1 {
		t.Errorf("%d passkeys after sign-up, want 1", n)
	}

	// Sign out, then in again, usernameless, with the button.
	a.signOut()
	if s := a.sessionStatus(); s != http.StatusUnauthorized {
		t.Errorf("session after sign-out: %d", s)
	}
	a.signIn()
	first := apptest.Credentials(t, a.ctx, a.auth)
	if len(first) != 1 {
		t.Fatalf("authenticator holds %d credentials", len(first))
	}

	// A second passkey, on a second authenticator (say, a security key).
	a.swapAuthenticator()
	a.fill("#pk-name", "Security key")
	a.click("form[data-form=register] button[type=submit]")
	a.waitFor("document.querySelectorAll('[data-passkey]').length === 2", "two passkeys")
	second := apptest.Credentials(t, a.ctx, a.auth)
	if len(second) != 1 || !strings.Contains(a.text("main"), "Security key") {
		t.Fatalf("second passkey: %d credentials; page:\n%s", len(second), a.text("main"))
	}

	// Rename it.
	a.click("[data-passkey='" + ref(second[0]) + "'] details summary")
	a.fill("#rename-"+ref(second[0]), "YubiKey")
	a.click("[data-passkey='" + ref(second[0]) + "'] form[data-form=rename] button")
	a.waitFor("document.querySelector(\"[data-passkey='"+ref(second[0])+"'] h3\").textContent === 'YubiKey'", "the new name")

	// A phone holds the first passkey (synced) and signs in with autofill.
	phone := newPortalTab(t, in, browser, "phone", true)
	phone.give(first[0])
	phone.open("/.keyway/portal/signin")
	phone.waitPage("account")
	if got := phone.currentPasskey(); got != ref(first[0]) {
		t.Errorf("phone signed in with %q, want the first passkey %q", got, ref(first[0]))
	}

	// The laptop signs in again with the second passkey, and removes the
	// first: the phone's session, which that passkey signed in, ends.
	a.signOut()
	a.signIn()
	if got := a.currentPasskey(); got != ref(second[0]) {
		t.Fatalf("laptop signed in with %q, want the second passkey", got)
	}
	a.shot("account", 1000, 900)
	a.click("[data-passkey='" + ref(first[0]) + "'] button[data-action=call]")
	a.waitFor("document.querySelectorAll('[data-passkey]').length === 1", "one passkey left")
	if s := phone.sessionStatus(); s != http.StatusUnauthorized {
		t.Errorf("phone session after its passkey was removed: %d, want 401", s)
	}
	if s := a.sessionStatus(); s != http.StatusOK {
		t.Errorf("laptop session after removing another passkey: %d, want 200", s)
	}

	// The phone's passkey is gone: a recovery code gets it back in, to
	// register a new passkey.
	phone.open("/.keyway/portal/account")
	phone.waitPage("signin")
	if got := phone.path(); got != "/.keyway/portal/signin?next=%2F.keyway%2Fportal%2Faccount" {
		t.Errorf("signed-out account went to %s", got)
	}
	phone.open("/.keyway/portal/recover")
	phone.shot("recover", 1000, 700)
	phone.fill("#username", "casey")
	phone.fill("#code", strings.ToUpper(codes[0]))
	phone.fill("#pk-name", "Phone")
	phone.click("form[data-form=recover] button[type=submit]")
	phone.waitPage("account")
	if got := phone.text("main"); !strings.Contains(got, "Phone") || !strings.Contains(got, "9") {
		t.Errorf("account after recovery:\n%s", got)
	}
	if n := phone.count("[data-passkey]"); n != 2 {
		t.Errorf("%d passkeys after recovery, want 2", n)
	}
	// The code is spent.
	kiosk := newPortalTab(t, in, browser, "kiosk", false)
	kiosk.open("/.keyway/portal/recover")
	kiosk.fill("#username", "casey")
	kiosk.fill("#code", codes[0])
	kiosk.click("form[data-form=recover] button[type=submit]")
	kiosk.waitFor("document.getElementById('status').classList.contains('error')", "refusal of a spent code")
	if got := kiosk.status(); !strings.Contains(got, "do not match") {
		t.Errorf("spent code: status %q", got)
	}
	if s := kiosk.sessionStatus(); s != http.StatusUnauthorized {
		t.Errorf("a spent code made a session: %d", s)
	}

	// An API key, made in the portal, shown once, calls the demo API.
	a.open("/.keyway/portal/keys")
	a.waitPage("keys")
	a.fill("#key-name", "weather bot")
	a.fill("#key-scopes", "weather:history")
	a.eval("document.querySelector('#key-expires').value = '7d'")
	a.fill("#key-rate", "60/min")
	a.click("form[data-form=create-key] button[type=submit]")
	a.waitFor("!document.querySelector('[data-secret]').hidden", "the new key")
	key := a.text("[data-secret-value]")
	if !keyRE.MatchString(key) {
		t.Fatalf("shown key %q", key)
	}
	if strings.Contains(a.path(), key) {
		t.Error("the key is in the URL")
	}
	a.shot("keys-new-key", 1000, 800)
	history := func(key, city string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, in.URL("/v1/history?city="+city), nil)
		apptest.Must(t, err, "request")
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := in.Client().Do(req)
		apptest.Must(t, err, "call the demo API")
		_ = res.Body.Close()
		return res.StatusCode
	}
	for _, city := range []string{"Paris", "Paris", "Lyon"} {
		if s := history(key, city); s != http.StatusOK {
			t.Fatalf("GET /v1/history with the portal's key: %d", s)
		}
	}
	a.click("[data-secret] button[data-action=reload]")
	a.waitFor("document.querySelector('[data-secret]') && document.querySelector('[data-secret]').hidden && document.querySelector('[data-key]')", "the key list")
	if strings.Contains(evalIn[string](a, "document.documentElement.outerHTML"), key) {
		t.Error("the key is still in the page after Done")
	}
	if n := a.count("[data-key] rect.bar.ok"); n != 2 {
		t.Errorf("%d OK bars in the usage charts, want 2 (one per chart)", n)
	}
	if got := a.text("[data-key] figcaption"); !strings.Contains(got, "3 requests") {
		t.Errorf("chart caption %q", got)
	}
	// The key's last use agrees with its usage (it once read "never" beside 3 requests).
	if got := evalIn[string](a, `[...document.querySelectorAll('[data-key] dt')].find(d => d.textContent === 'Last used').nextElementSibling.textContent`); got == "never" || got == "" {
		t.Errorf("last used %q beside 3 requests", got)
	}
	a.shot("keys", 1000, 1000)
	a.shot("keys-phone", 390, 844)

	// Rotate it with no overlap: the new secret works, the old one no more.
	a.click("form[data-form=rotate] select")
	a.eval("document.querySelector('form[data-form=rotate] select').value = '0'")
	a.click("form[data-form=rotate] button")
	a.waitFor("!document.querySelector('[data-secret]').hidden", "the rotated key")
	rotated := a.text("[data-secret-value]")
	if !keyRE.MatchString(rotated) || rotated == key {
		t.Fatalf("rotated key %q", rotated)
	}
	if s := history(key, "Paris"); s != http.StatusUnauthorized {
		t.Errorf("old secret after rotation: %d", s)
	}
	if s := history(rotated, "Paris"); s != http.StatusOK {
		t.Errorf("new secret after rotation: %d", s)
	}
	// Revoke it: it dies at once.
	a.click("[data-secret] button[data-action=reload]")
	a.waitFor("document.readyState === 'complete' && document.querySelector('[data-secret]').hidden", "reload")
	a.click("[data-key] button[data-url$='/revoke']")
	a.waitFor("document.readyState === 'complete' && document.querySelector('.badge.status-revoked')", "revoked key")
	if s := history(rotated, "Paris"); s != http.StatusUnauthorized {
		t.Errorf("revoked key: %d", s)
	}

	// Sessions: the laptop sees the phone's and ends it.
	a.open("/.keyway/portal/sessions")
	a.waitPage("sessions")
	if n := a.count("tbody tr"); n != 2 {
		t.Errorf("%d sessions listed, want 2", n)
	}
	a.shot("sessions", 1000, 700)
	a.click("button[data-url='/.keyway/auth/sessions/revoke-others']")
	a.waitFor("document.querySelectorAll('tbody tr').length === 1", "one session left")
	if s := phone.sessionStatus(); s != http.StatusUnauthorized {
		t.Errorf("phone session after revoke-others: %d", s)
	}
	a.shot("sessions-phone", 390, 844)
}

// TestBrowserPortalAdmin sets up the first administrator from the setup
// link, invites a person, gives them an enrolment link, signs them out
// everywhere, and checks that admin pages ask for a fresh passkey check.
func TestBrowserPortalAdmin(t *testing.T) {
	cfg := apptest.Demo(t)
	cfg.Passkeys.SignUp = "invite"
	cfg.Sessions.StepUpMaxAge = 3 * time.Second
	in := apptest.Start(t, cfg)
	setup := in.App.SetupURL()
	if setup == "" {
		t.Fatal("no setup link")
	}
	browser := apptest.Browser(t)
	root := newPortalTab(t, in, browser, "root", false)

	root.open(setup)
	root.waitFor("location.pathname === '/.keyway/portal/setup'", "setup page")
	if strings.Contains(root.path(), "#") {
		t.Errorf("the setup token stays in the address bar: %s", root.path())
	}
	root.shot("setup", 1000, 700)
	root.signUp("root", "Rita Root")
	root.click("button[data-action=continue]")
	root.waitPage("account")
	if !strings.Contains(root.text("main"), "Administrator") || root.count("nav.admin a") != 4 {
		t.Fatalf("the setup account is no admin:\n%s", root.text("body"))
	}

	// adminPage opens an admin page, confirming with the passkey when the
	// session is no longer fresh.
	adminPage := func(p *portalTab, name string) {
		t.Helper()
		p.open("/.keyway/portal/" + name)
		p.waitPage(name)
		if p.count("button[data-action=stepup]") > 0 {
			p.click("button[data-action=stepup]")
			p.waitFor("document.readyState === 'complete' && !document.querySelector('button[data-action=stepup]')", "admin page after step-up")
			p.clean()
		}
	}

	// An invitation link, opened in another browser, makes an account.
	adminPage(root, "admin/users")
	root.click("form[data-form=invite] button[type=submit]")
	root.waitFor("!document.querySelector('[data-secret]').hidden", "invitation link")
	invite := root.text("[data-secret-value]")
	if !strings.HasPrefix(invite, in.App.PublicURL()+"/.keyway/portal/signup#invite=") {
		t.Fatalf("invitation link %q", invite)
	}
	dana := newPortalTab(t, in, browser, "dana", false)
	dana.open(invite)
	dana.waitPage("signup")
	if dana.count("[data-invited]:not([hidden])") != 1 {
		t.Error("the sign-up page does not say the visitor is invited")
	}
	dana.signUp("dana", "Dana")
	dana.click("button[data-action=continue]")
	dana.waitPage("account")
	dana.open("/.keyway/portal/admin/users")
	if got := dana.text("main"); !strings.Contains(got, "for administrators") {
		t.Errorf("a user sees admin/users:\n%s", got)
	}
	dana.shot("forbidden", 1000, 500)

	// An enrolment link registers a passkey on a new device.
	adminPage(root, "admin/users")
	root.click("button[data-title='Enrolment link for dana']")
	root.waitFor("!document.querySelector('[data-secret]').hidden", "enrolment link")
	enrol := root.text("[data-secret-value]")
	if !strings.Contains(enrol, "/.keyway/portal/enrol#token=") {
		t.Fatalf("enrolment link %q", enrol)
	}
	root.shot("admin-users-link", 1000, 800)
	tablet := newPortalTab(t, in, browser, "tablet", false)
	tablet.open(enrol)
	tablet.waitPage("enrol")
	tablet.shot("enrol", 1000, 600)
	tablet.fill("#pk-name", "Tablet")
	tablet.click("form[data-form=enrol] button[type=submit]")
	tablet.waitPage("account")
	if n := tablet.count("[data-passkey]"); n != 2 {
		t.Errorf("dana has %d passkeys after enrolment, want 2", n)
	}

	// The admin pages show everyone's sessions and the keys.
	adminPage(root, "admin/sessions")
	if got := root.text("main"); !strings.Contains(got, "dana") || !strings.Contains(got, "root") {
		t.Errorf("admin/sessions:\n%s", got)
	}
	root.shot("admin-sessions", 1000, 800)
	adminPage(root, "admin/keys")
	root.shot("admin-keys", 1000, 500)
	adminPage(root, "admin/audit")
	if got := root.text("main"); !strings.Contains(got, "user.created") || !strings.Contains(got, "passkey.added") {
		t.Errorf("admin/audit shows no trail:\n%s", got)
	}
	root.shot("admin-audit", 1000, 900)

	// Signing dana out everywhere ends both of her sessions.
	adminPage(root, "admin/users")
	root.click("button[data-url$='/revoke-sessions']:not([data-next])")
	root.waitFor("document.readyState === 'complete' && document.getElementById('status').textContent === 'Done.'", "sessions revoked")
	root.clean()
	for _, p := range []*portalTab{dana, tablet} {
		if s := p.sessionStatus(); s != http.StatusUnauthorized {
			t.Errorf("%s after sign-out everywhere: %d", p.name, s)
		}
	}
	root.shot("admin-users", 1000, 700)

	// A stale session: the admin page asks first, and a sensitive action
	// runs the step-up ceremony by itself.
	time.Sleep(cfg.Sessions.StepUpMaxAge)
	before := stepUps(t, in)
	root.open("/.keyway/portal/admin/users")
	root.waitPage("admin/users")
	if root.count("button[data-action=stepup]") != 1 || root.count("table") != 0 {
		t.Fatalf("stale admin session sees the page:\n%s", root.text("main"))
	}
	root.shot("admin-step-up", 1000, 500)
	root.click("button[data-action=stepup]")
	root.waitFor("document.readyState === 'complete' && document.querySelector('table')", "users after step-up")
	time.Sleep(cfg.Sessions.StepUpMaxAge)
	root.open("/.keyway/portal/account")
	root.waitPage("account")
	root.click("button[data-action=codes]")
	root.waitFor("!document.querySelector('[data-codes]').hidden", "new recovery codes")
	if n := stepUps(t, in) - before; n != 2 {
		t.Errorf("%d step-ups, want 2", n)
	}
}
