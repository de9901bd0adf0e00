package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
)

// TestBrowserPortalExportAndErase: in Chromium, a person downloads
// everything keyway holds about them, then erases their account, which
// takes typing their username; they are signed out and gone.
func TestBrowserPortalExportAndErase(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	b := apptest.Browser(t)
	a := newPortalTab(t, in, b, "laptop", false)
	downloads := t.TempDir()
	dctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	// A command of the browser, for the tab's own browser context.
	_, err := chromedp.CallBrowser(dctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
		BrowserContextID: chromedp.FromContext(a.ctx).BrowserContextID})
	cancel()
	apptest.Must(t, err, "allow downloads")

	a.open("/.keyway/portal/signup")
	a.waitPage("signup")
	a.signUp("dana", "Dana Dataright")
	a.click("button[data-action=continue]")
	a.waitPage("account")

	a.click("button[data-action=export]")
	a.waitFor("(document.getElementById('status') || {}).textContent.includes('keyway-account.json')", "the export")
	if got := a.status(); !strings.Contains(got, "1 passkey(s)") || !strings.Contains(got, "1 session(s)") {
		t.Errorf("export status: %q", got)
	}
	file := filepath.Join(downloads, "keyway-account.json")
	var data []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(file); err == nil && len(b) > 0 && strings.HasSuffix(strings.TrimSpace(string(b)), "}") {
			data = b
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(downloads)
			t.Fatalf("no downloaded export in %s: %v", downloads, entries)
		}
	}
	for _, want := range []string{`"username": "dana"`, "Dana Dataright", `"passkeys"`, `"audit"`, "user.created"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the downloaded export lacks %s", want)
		}
	}

	a.click("section[aria-labelledby=data-title] details summary")
	a.fill("#erase-confirm", "someone-else")
	a.click("form[data-form=erase] button[type=submit]")
	a.waitFor("(document.getElementById('status') || {}).className.includes('error')", "a refusal")
	if s := a.sessionStatus(); s != 200 {
		t.Fatalf("a wrong confirmation erased the account: session %d", s)
	}
	a.fill("#erase-confirm", "Dana")
	a.click("form[data-form=erase] button[type=submit]")
	a.waitPage("signin")
	if got := a.status(); !strings.Contains(got, "erased") {
		t.Errorf("after erasure: %q", got)
	}
	if s := a.sessionStatus(); s != 401 {
		t.Errorf("session after erasure: %d", s)
	}
	a.clean()
	db, err := app.OpenStore(context.Background(), cfg, os.Getenv)
	apptest.Must(t, err, "open")
	defer func() { _ = db.Close() }()
	if users, err := db.ListUsers(context.Background()); err != nil || len(users) != 0 {
		t.Fatalf("people after the erasure: %d %v", len(users), err)
	}
}
