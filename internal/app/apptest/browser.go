package apptest

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/keywayhq/keyway/internal/testenv"
)

// chromiumHint says how to get the browser the browser tests drive.
const chromiumHint = "apt-get install chromium"

// BrowserTimeout bounds each browser helper call, so that a ceremony that
// waits for a user who is not there fails the test instead of hanging it.
const BrowserTimeout = 20 * time.Second

// findChromium returns Debian's Chromium, or a chromium on PATH.
func findChromium() (string, bool) {
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, true
		}
	}
	return "", false
}

// Browser starts a headless Chromium for t and returns the context of its
// first tab. It skips t when Chromium is not installed (and fails it under
// KEYWAY_TEST_STRICT=1). The browser has a fresh profile under t.TempDir()
// and is stopped when t ends.
//
// The browser is told to ignore certificate errors: keyway's test instances
// serve a local CA of their own, which the browser cannot be made to trust
// without touching the machine's trust store. The flags that stop Chromium
// from phoning home matter on a machine with no network, where each
// refused connection would slow the start.
func Browser(t testing.TB) context.Context {
	t.Helper()
	path, ok := findChromium()
	if !ok {
		testenv.Missing(t, "chromium", chromiumHint)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		// Root in a container has no user namespace for the sandbox.
		chromedp.NoSandbox,
		chromedp.IgnoreCertErrors,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-gpu", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	log := &testLog{t: t}
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(log.logf))
	t.Cleanup(func() {
		log.stop()
		cancelCtx()
		cancelAlloc()
	})
	// The first call starts the browser and binds its life to the context
	// it is given, so it gets ctx itself, and a timer stands in for a
	// deadline.
	timer := time.AfterFunc(BrowserTimeout, cancelCtx)
	err := chromedp.Do(ctx)
	if !timer.Stop() {
		t.Fatalf("start chromium (%s): no answer in %s", path, BrowserTimeout)
	}
	if err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// Tab opens a new tab of browser (a context from Browser) in a browser
// context of its own, as an incognito window is: it shares no cookies or
// storage with any other tab. The tab closes when t ends.
func Tab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	return openTab(t, browser, chromedp.WithNewBrowserContext())
}

// TabBeside opens a new tab in the browser context of tab (a context from
// Tab), sharing its cookies: another site open in the same browser. The
// tab closes when t ends.
func TabBeside(t testing.TB, tab context.Context) context.Context {
	t.Helper()
	return openTab(t, tab)
}

func openTab(t testing.TB, parent context.Context, opts ...chromedp.ContextOption) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	// As in Browser: the first call binds the tab's life to its context.
	timer := time.AfterFunc(BrowserTimeout, cancel)
	err := chromedp.Do(ctx)
	if !timer.Stop() {
		t.Fatalf("open tab: no answer in %s", BrowserTimeout)
	}
	if err != nil {
		t.Fatalf("open tab: %v", err)
	}
	return ctx
}

// Open navigates the tab to url and lets the page's scripts reach the
// network whatever the page's Content-Security-Policy says. keyway's own
// endpoints send "default-src 'none'", right for JSON that is never a
// document; the tests use such a URL only as a secure context on keyway's
// origin, and play the part of a web app's page, whose CSP allows
// connect-src 'self'.
func Open(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	if _, err := call(ctx, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true}); err != nil {
		t.Fatalf("bypass CSP: %v", err)
	}
	nav, cancel := context.WithTimeout(ctx, BrowserTimeout)
	defer cancel()
	if err := chromedp.Do(nav, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
}

// PasskeyAuthenticator returns the options of a platform authenticator as
// keyway requires one: CTAP 2.1 over the internal transport, with resident
// keys and user verification that succeeds, and user presence answered at
// once. Change fields of the result to make a different authenticator.
func PasskeyAuthenticator() webauthn.VirtualAuthenticatorOptions {
	return webauthn.VirtualAuthenticatorOptions{
		Protocol:            webauthn.AuthenticatorProtocolCtap2,
		Ctap2version:        webauthn.Ctap2versionCtap21,
		Transport:           webauthn.AuthenticatorTransportInternal,
		HasResidentKey:      true,
		HasUserVerification: true,
		IsUserVerified:      true,
		// The protocol says this defaults to true, but the Go field has no
		// omitempty: leaving it out sends false, and every ceremony then
		// waits forever for a touch.
		AutomaticPresenceSimulation: true,
	}
}

// AddAuthenticator enables the WebAuthn domain of the tab (without the
// browser's own UI) and adds a virtual authenticator to it. opts nil means
// PasskeyAuthenticator(). A virtual authenticator belongs to one tab.
func AddAuthenticator(t testing.TB, ctx context.Context, opts *webauthn.VirtualAuthenticatorOptions) webauthn.AuthenticatorID {
	t.Helper()
	if opts == nil {
		o := PasskeyAuthenticator()
		opts = &o
	}
	off := false
	if _, err := call(ctx, webauthn.Enable, webauthn.EnableParams{EnableUI: &off}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: opts})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return res.AuthenticatorID
}

// Overrides are the response override bits of a virtual authenticator
// (WebAuthn.setResponseOverrideBits): each makes every later response of
// the authenticator wrong in one way.
type Overrides struct {
	// BogusSignature zeroes the signature of assertions.
	BogusSignature bool
	// BadUV clears the user-verified flag (UV).
	BadUV bool
	// BadUP clears the user-present flag (UP).
	BadUP bool
}

// SetOverrides sets (or, with the zero Overrides, clears) the response
// override bits of an authenticator.
func SetOverrides(t testing.TB, ctx context.Context, id webauthn.AuthenticatorID, o Overrides) {
	t.Helper()
	// Every bit is sent: the command resets the bits it is not given.
	_, err := call(ctx, webauthn.SetResponseOverrideBits, webauthn.SetResponseOverrideBitsParams{
		AuthenticatorID: id, IsBogusSignature: &o.BogusSignature, IsBadUV: &o.BadUV, IsBadUP: &o.BadUP})
	if err != nil {
		t.Fatalf("WebAuthn.setResponseOverrideBits: %v", err)
	}
}

// SetUserVerified makes user verification of the authenticator succeed or fail.
func SetUserVerified(t testing.TB, ctx context.Context, id webauthn.AuthenticatorID, verified bool) {
	t.Helper()
	if _, err := call(ctx, webauthn.SetUserVerified, webauthn.SetUserVerifiedParams{AuthenticatorID: id, IsUserVerified: verified}); err != nil {
		t.Fatalf("WebAuthn.setUserVerified: %v", err)
	}
}

// SetSignCount sets the signature counter of a credential of the
// authenticator; the next assertion reports n+1.
func SetSignCount(t testing.TB, ctx context.Context, id webauthn.AuthenticatorID, credentialID []byte, n float64) {
	t.Helper()
	_, err := call(ctx, webauthn.SetCredentialProperties, webauthn.SetCredentialPropertiesParams{
		AuthenticatorID: id, CredentialID: credentialID, SignCount: &n})
	if err != nil {
		t.Fatalf("WebAuthn.setCredentialProperties: %v", err)
	}
}

// Credentials returns the credentials the authenticator holds.
func Credentials(t testing.TB, ctx context.Context, id webauthn.AuthenticatorID) []*webauthn.Credential {
	t.Helper()
	res, err := call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
	if err != nil {
		t.Fatalf("WebAuthn.getCredentials: %v", err)
	}
	return res.Credentials
}

// Cookies returns the cookies the tab's browser context would send to url,
// HttpOnly ones included.
func Cookies(t testing.TB, ctx context.Context, url string) []*network.Cookie {
	t.Helper()
	res, err := call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		t.Fatalf("Network.getCookies: %v", err)
	}
	return res.Cookies
}

// SetCookie puts a cookie into the tab's browser context, as a script with
// access to the cookie jar could (an attacker who stole a cookie, say).
func SetCookie(t testing.TB, ctx context.Context, p network.SetCookieParams) {
	t.Helper()
	if _, err := call(ctx, network.SetCookie, p); err != nil {
		t.Fatalf("Network.setCookie: %v", err)
	}
}

// Eval evaluates js in the tab, awaits it if it is a promise, and returns
// its value decoded as T. A thrown exception fails t.
func Eval[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	v, err := EvalErr[T](ctx, js)
	if err != nil {
		t.Fatalf("evaluate: %v\n%s", err, js)
	}
	return v
}

// EvalErr is Eval that returns the error (a thrown exception is a
// *chromedp.ExceptionError) instead of failing the test.
func EvalErr[T any](ctx context.Context, js string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, BrowserTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise, userGesture))
}

// userGesture runs the script as if the user had just clicked, as a page
// that starts a ceremony from a button does.
func userGesture(p *runtime.EvaluateParams) {
	on := true
	p.UserGesture = &on
}

// call runs one CDP command on the tab, bounded by BrowserTimeout. The
// deadline only abandons the call: the tab lives as long as the context of
// its first call.
func call[P, R any](ctx context.Context, cmd cdp.Command[P, R], params P) (R, error) {
	ctx, cancel := context.WithTimeout(ctx, BrowserTimeout)
	defer cancel()
	return chromedp.Call(ctx, cmd, params)
}

// testLog sends chromedp's error lines to the test log while the test
// runs, and drops them once it ends, when t.Logf would panic.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("chromium: "+format, args...)
	}
}

func (l *testLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
}
