package portal

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
)

var testNow = time.Date(2026, 3, 14, 15, 30, 0, 0, time.UTC)

// newCore is the decision core over the fakes.
func newCore(t *testing.T, accounts *fakeAccounts, sessions *fakeSessions) *decision.Core {
	t.Helper()
	c, err := decision.New(decision.Config{Sessions: sessions, Users: accounts, Origins: []string{"https://keyway.test"},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ---- fakes ----

type fakeAccounts struct {
	users []*passkey.User
	creds map[string][]*passkey.Credential
	codes map[string]int
	err   error
}

func (f *fakeAccounts) User(_ context.Context, id string) (*passkey.User, error) {
	for _, u := range f.users {
		if u.ID == id {
			return u, nil
		}
	}
	return nil, passkey.ErrNotFound
}

func (f *fakeAccounts) Users(context.Context) ([]*passkey.User, error) { return f.users, f.err }

func (f *fakeAccounts) Credentials(_ context.Context, userID string) ([]*passkey.Credential, error) {
	return f.creds[userID], f.err
}

func (f *fakeAccounts) UnusedRecoveryCodes(_ context.Context, userID string) (int, error) {
	return f.codes[userID], f.err
}

type fakeSessions struct {
	byToken map[string]*session.Session
	stale   map[string]bool // session IDs that are not fresh
}

func (f *fakeSessions) Authenticate(_ context.Context, token string) (*session.Session, error) {
	if s, ok := f.byToken[token]; ok {
		return s, nil
	}
	return nil, session.ErrNotFound
}

func (f *fakeSessions) Fresh(s *session.Session) bool { return !s.Restricted && !f.stale[s.ID] }

func (f *fakeSessions) List(_ context.Context, userID string) ([]*session.Session, error) {
	var out []*session.Session
	for _, s := range f.byToken {
		if s.UserID == userID {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *session.Session) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

type fakeKeys struct {
	keys  []*apikey.Key
	usage map[string][]apikey.UsageRow
}

func (f *fakeKeys) List(_ context.Context, owner string) ([]*apikey.Key, error) {
	var out []*apikey.Key
	for _, k := range f.keys {
		if owner == "" || k.Owner == owner {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f *fakeKeys) UsageSince(_ context.Context, id string, since time.Time) ([]apikey.UsageRow, error) {
	var out []apikey.UsageRow
	for _, r := range f.usage[id] {
		if !r.Hour.Before(since) {
			out = append(out, r)
		}
	}
	return out, nil
}

type fakeAudit struct{ entries []AuditEntry }

func (f *fakeAudit) Recent(_ context.Context, n int) ([]AuditEntry, error) {
	return f.entries[:min(n, len(f.entries))], nil
}

// Hostile strings everywhere a person or program can put text, to prove
// the pages escape it.
const evil = `<script>alert(1)</script>" style="color:red" onmouseover="x`

type env struct {
	h        http.Handler
	accounts *fakeAccounts
	sessions *fakeSessions
	logs     *strings.Builder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	alice := &passkey.User{ID: "usr_alice", Username: "alice", DisplayName: "Alice " + evil, Role: passkey.RoleUser, CreatedAt: testNow.Add(-48 * time.Hour)}
	root := &passkey.User{ID: "usr_root", Username: "root", DisplayName: "Root", Role: passkey.RoleAdmin, CreatedAt: testNow.Add(-72 * time.Hour)}
	gone := &passkey.User{ID: "usr_gone", Username: "gone", DisplayName: "Gone", Role: passkey.RoleUser, DisabledAt: testNow}
	credA := []byte{1, 2, 3, 4}
	accounts := &fakeAccounts{
		users: []*passkey.User{alice, root, gone},
		creds: map[string][]*passkey.Credential{
			"usr_alice": {
				{ID: credA, UserID: "usr_alice", Name: "Laptop " + evil, Flags: passkey.FlagBE | passkey.FlagBS, CreatedAt: testNow.Add(-time.Hour), LastUsedAt: testNow},
				{ID: []byte{9, 9}, UserID: "usr_alice", AAGUID: []byte{1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}, CreatedAt: testNow.Add(-time.Hour)},
			},
			"usr_root": {{ID: []byte{7}, UserID: "usr_root", CreatedAt: testNow}},
		},
		codes: map[string]int{"usr_alice": 3, "usr_root": 10},
	}
	sessions := &fakeSessions{
		byToken: map[string]*session.Session{
			"tok-alice":  {ID: "ses_alice1", UserID: "usr_alice", CredentialID: credA, CreatedAt: testNow.Add(-time.Hour), LastSeenAt: testNow, IP: "192.0.2.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36 " + evil},
			"tok-alice2": {ID: "ses_alice2", UserID: "usr_alice", CreatedAt: testNow.Add(-2 * time.Hour), LastSeenAt: testNow, IP: "198.51.100.7", UserAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1"},
			"tok-root":   {ID: "ses_root", UserID: "usr_root", CreatedAt: testNow, LastSeenAt: testNow, IP: "203.0.113.9"},
			"tok-stale":  {ID: "ses_stale", UserID: "usr_root", CreatedAt: testNow, LastSeenAt: testNow},
			"tok-rescue": {ID: "ses_rescue", UserID: "usr_alice", Restricted: true, CreatedAt: testNow, LastSeenAt: testNow},
			"tok-gone":   {ID: "ses_gone", UserID: "usr_gone", CreatedAt: testNow, LastSeenAt: testNow},
		},
		stale: map[string]bool{"ses_stale": true},
	}
	keys := &fakeKeys{
		keys: []*apikey.Key{
			{ID: "AAAA1111", Name: "report " + evil, Owner: "user:usr_alice", Env: apikey.EnvLive, Scopes: []string{"weather:history", evil},
				Rate: apikey.Rate{Count: 100, Period: time.Minute, Burst: 10}, CreatedAt: testNow.Add(-24 * time.Hour), ExpiresAt: testNow.Add(24 * time.Hour),
				OldSecretUntil: testNow.Add(3 * time.Hour)},
			{ID: "BBBB2222", Name: "old", Owner: "user:usr_alice", Env: apikey.EnvTest, CreatedAt: testNow.Add(-72 * time.Hour),
				ExpiresAt: testNow.Add(24 * time.Hour), RevokedAt: testNow.Add(-time.Hour), OldSecretUntil: testNow.Add(time.Hour)},
			{ID: "CCCC3333", Name: "billing", Owner: "service:billing", Env: apikey.EnvLive, CreatedAt: testNow, ExpiresAt: testNow.Add(time.Hour)},
		},
		usage: map[string][]apikey.UsageRow{"AAAA1111": sampleUsage()},
	}
	audit := &fakeAudit{entries: []AuditEntry{
		{At: testNow, Type: "session.created", Actor: "user:usr_alice", Subject: "ses_alice1", Detail: map[string]string{"user": "usr_alice", "note": evil}},
		{At: testNow.Add(-time.Minute), Type: "apikey.created", Actor: evil, Subject: "key_AAAA1111"},
	}}
	logs := &strings.Builder{}
	h, err := New(Config{Accounts: accounts, Sessions: sessions, Decider: newCore(t, accounts, sessions), Keys: keys, Audit: audit, OpenSignUp: true,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return &env{h: h, accounts: accounts, sessions: sessions, logs: logs}
}

func sampleUsage() []apikey.UsageRow {
	h := hourStart(testNow)
	return []apikey.UsageRow{
		{Hour: h, Outcome: apikey.OutcomeOK, Count: 40},
		{Hour: h, Outcome: apikey.OutcomeRateLimited, Count: 5},
		{Hour: h.Add(-3 * time.Hour), Outcome: apikey.OutcomeOK, Count: 12},
		{Hour: h.Add(-3 * time.Hour), Outcome: apikey.OutcomeInvalid, Count: 2},
		{Hour: h.Add(-30 * time.Hour), Outcome: apikey.OutcomeForbidden, Count: 7},
		{Hour: h.Add(-5 * 24 * time.Hour), Outcome: apikey.OutcomeQuota, Count: 3},
		{Hour: h.Add(-5 * 24 * time.Hour), Outcome: "future_outcome", Count: 1},
	}
}

// get requests path with the session cookie of token ("" for none).
func (e *env) get(t *testing.T, path, token string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://keyway.test"+path, nil)
	if token != "" {
		r.AddCookie(&http.Cookie{Name: decision.SessionCookie, Value: token})
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	return string(b)
}

var pages = []string{"", "signin", "signup", "setup", "enrol", "recover", "account", "sessions", "keys",
	"admin/users", "admin/sessions", "admin/keys", "admin/audit"}

func TestPageAccess(t *testing.T) {
	e := newEnv(t)
	signin := func(page string) string {
		return Prefix + "signin?next=%2F.keyway%2Fportal%2F" + strings.ReplaceAll(page, "/", "%2F")
	}
	type want struct {
		status   int
		location string
	}
	tests := map[string]map[string]want{ // page → visitor → want
		"":               {"out": {303, Prefix + "signin"}, "user": {303, Prefix + "account"}, "admin": {303, Prefix + "account"}},
		"signin":         {"out": {200, ""}, "user": {303, Prefix + "account"}, "admin": {303, Prefix + "account"}},
		"signup":         {"out": {200, ""}, "user": {200, ""}, "admin": {200, ""}},
		"setup":          {"out": {200, ""}, "user": {200, ""}, "admin": {200, ""}},
		"enrol":          {"out": {200, ""}, "user": {200, ""}, "admin": {200, ""}},
		"recover":        {"out": {200, ""}, "user": {200, ""}, "admin": {200, ""}},
		"account":        {"out": {303, signin("account")}, "user": {200, ""}, "admin": {200, ""}},
		"sessions":       {"out": {303, signin("sessions")}, "user": {200, ""}, "admin": {200, ""}},
		"keys":           {"out": {303, signin("keys")}, "user": {200, ""}, "admin": {200, ""}},
		"admin/users":    {"out": {303, signin("admin/users")}, "user": {403, ""}, "admin": {200, ""}},
		"admin/sessions": {"out": {303, signin("admin/sessions")}, "user": {403, ""}, "admin": {200, ""}},
		"admin/keys":     {"out": {303, signin("admin/keys")}, "user": {403, ""}, "admin": {200, ""}},
		"admin/audit":    {"out": {303, signin("admin/audit")}, "user": {403, ""}, "admin": {200, ""}},
		"nope":           {"out": {404, ""}, "user": {404, ""}, "admin": {404, ""}},
	}
	tokens := map[string]string{"out": "", "user": "tok-alice", "admin": "tok-root"}
	for page, byVisitor := range tests {
		for who, w := range byVisitor {
			t.Run(page+"/"+who, func(t *testing.T) {
				res := e.get(t, Prefix+page, tokens[who])
				b := body(t, res)
				if res.StatusCode != w.status {
					t.Fatalf("status %d, want %d: %s", res.StatusCode, w.status, b)
				}
				if got := res.Header.Get("Location"); got != w.location {
					t.Errorf("Location %q, want %q", got, w.location)
				}
				if res.StatusCode == 403 && !strings.Contains(b, "for administrators") {
					t.Errorf("403 page does not say why: %s", b)
				}
			})
		}
	}
}

// Signed-out cases that are not plain: a revoked token, a disabled user, a
// recovery session.
func TestVisitors(t *testing.T) {
	e := newEnv(t)
	for _, tok := range []string{"tok-unknown", "tok-gone", "tok-rescue"} {
		res := e.get(t, Prefix+"account", tok)
		_ = body(t, res)
		if res.StatusCode != http.StatusSeeOther {
			t.Errorf("%s: account status %d, want 303", tok, res.StatusCode)
		}
	}
	// A recovery session is offered the passkey registration at once.
	for _, page := range []string{"recover", "enrol"} {
		b := body(t, e.get(t, Prefix+page, "tok-rescue"))
		if !strings.Contains(b, `data-form="register"`) || strings.Contains(b, `name="code"`) {
			t.Errorf("%s with a recovery session: no register form:\n%s", page, b)
		}
	}
	b := body(t, e.get(t, Prefix+"recover", ""))
	if !strings.Contains(b, `name="code"`) || !strings.Contains(b, `autocomplete="one-time-code"`) {
		t.Errorf("recover page lacks the code field:\n%s", b)
	}
}

func TestAdminNeedsFreshSession(t *testing.T) {
	e := newEnv(t)
	res := e.get(t, Prefix+"admin/users", "tok-stale")
	b := body(t, res)
	if res.StatusCode != 200 || !strings.Contains(b, `data-action="stepup"`) || strings.Contains(b, "usr_alice") {
		t.Fatalf("stale admin: status %d, want a step-up page without data:\n%s", res.StatusCode, b)
	}
	// A person's own pages need no step-up.
	if res := e.get(t, Prefix+"account", "tok-stale"); res.StatusCode != 200 {
		t.Errorf("stale account: %d", res.StatusCode)
	}
}

func TestSigninNext(t *testing.T) {
	e := newEnv(t)
	for next, want := range map[string]string{
		"/.keyway/portal/keys":                Prefix + "keys",
		"//evil.example/":                     Prefix + "account",
		"https://evil.example/.keyway/portal": Prefix + "account",
		"/.keyway/portal/../../x":             Prefix + "account",
		"/elsewhere":                          Prefix + "account",
		"/.keyway/portal/\\evil":              Prefix + "account",
	} {
		res := e.get(t, Prefix+"signin?next="+strings.ReplaceAll(next, "\\", "%5C"), "tok-alice")
		if got := res.Header.Get("Location"); got != want {
			t.Errorf("next=%q: Location %q, want %q", next, got, want)
		}
	}
	b := body(t, e.get(t, Prefix+"signin?next=%2F.keyway%2Fportal%2Fkeys", ""))
	if !strings.Contains(b, `data-next="/.keyway/portal/keys"`) {
		t.Errorf("signin page does not carry next:\n%s", b)
	}
	if !strings.Contains(b, `autocomplete="username webauthn"`) {
		t.Errorf("signin page lacks the autofill username field")
	}
}

var (
	scriptTag = regexp.MustCompile(`(?i)<script\b[^>]*>`)
	scriptSrc = regexp.MustCompile(`(?i)\ssrc="/\.keyway/portal/static/app\.[0-9a-f]{16}\.js"`)
	styleTag  = regexp.MustCompile(`(?i)<style\b`)
	tagRE     = regexp.MustCompile(`<[a-zA-Z][^>]*>`)
	attrRE    = regexp.MustCompile(`\s([^\s=/>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>"']+))?`)
)

// badAttributes lists the attributes of the document's tags that the CSP
// would block or that run script: style, on*, and javascript: URLs. It reads
// quoted values as values, so escaped hostile text inside one is no match.
func badAttributes(doc string) []string {
	var bad []string
	for _, tag := range tagRE.FindAllString(doc, -1) {
		for _, m := range attrRE.FindAllStringSubmatch(tag, -1) {
			name, value := strings.ToLower(m[1]), strings.ToLower(strings.Trim(m[2], `"'`))
			switch {
			case name == "style", strings.HasPrefix(name, "on"),
				(name == "href" || name == "src" || name == "action") && strings.HasPrefix(strings.TrimSpace(value), "javascript:"):
				bad = append(bad, m[0])
			}
		}
	}
	return bad
}

// Every page, for every kind of visitor, carries the CSP and has no inline
// script, style or event handler, even with hostile data in it.
func TestPagesHaveNoInlineCode(t *testing.T) {
	e := newEnv(t)
	for _, page := range append(pages, "nope") {
		for _, tok := range []string{"", "tok-alice", "tok-root", "tok-stale", "tok-rescue"} {
			res := e.get(t, Prefix+page, tok)
			b := body(t, res)
			if res.StatusCode == http.StatusSeeOther {
				continue
			}
			name := page + "/" + tok
			if got := res.Header.Get("Content-Security-Policy"); got != Policy {
				t.Errorf("%s: CSP %q", name, got)
			}
			if got := res.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("%s: Content-Type %q", name, got)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s: Cache-Control %q", name, got)
			}
			tags := scriptTag.FindAllString(b, -1)
			if len(tags) != 1 || !scriptSrc.MatchString(tags[0]) {
				t.Errorf("%s: script tags %q, want exactly the app script", name, tags)
			}
			if strings.Count(b, "</script>") != 1 {
				t.Errorf("%s: %d </script>", name, strings.Count(b, "</script>"))
			}
			if m := styleTag.FindString(b); m != "" {
				t.Errorf("%s: style element", name)
			}
			if bad := badAttributes(b); len(bad) > 0 {
				t.Errorf("%s: inline style or script attributes: %q", name, bad)
			}
			if !strings.Contains(b, `<html lang="en">`) || !strings.Contains(b, `name="viewport"`) {
				t.Errorf("%s: no lang or viewport", name)
			}
			checkLabels(t, name, b)
		}
	}
}

var (
	inputTag = regexp.MustCompile(`<(input|select)\b[^>]*>`)
	idAttr   = regexp.MustCompile(`\sid="([^"]+)"`)
)

// checkLabels finds every input and select, and its <label for>.
func checkLabels(t *testing.T, name, b string) {
	t.Helper()
	for _, tag := range inputTag.FindAllString(b, -1) {
		m := idAttr.FindStringSubmatch(tag)
		if m == nil {
			t.Errorf("%s: input without id (so without label): %s", name, tag)
			continue
		}
		if !strings.Contains(b, `<label for="`+m[1]+`"`) {
			t.Errorf("%s: no label for %q", name, m[1])
		}
	}
}

func TestPagesShowData(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		page, token string
		want        []string
	}{
		{"account", "tok-alice", []string{"Laptop &lt;script&gt;", "Synced", "Device-bound", "This device",
			"Chromium virtual authenticator", `data-url="/.keyway/auth/passkeys/AQIDBA"`, "<strong data-codes-left>3</strong>",
			"Make new ones soon", `data-next="/.keyway/portal/signin"`}},
		{"sessions", "tok-alice", []string{"Chrome on Linux", "Safari on iPhone", "This session", "198.51.100.7",
			`data-url="/.keyway/auth/sessions/ses_alice2"`, "Sign out all other sessions (2)"}},
		{"keys", "tok-alice", []string{"key_AAAA1111", "100/min (burst 10)", "weather:history", "status-revoked",
			`<svg class="chart-svg"`, `class="bar ok"`, `class="bar limited"`, "Last 24 hours", "Last 7 days", "No requests",
			`data-url="/.keyway/api-keys/key_AAAA1111/rotate"`, "Old secret works until"}},
		{"admin/users", "tok-root", []string{"alice", "Enrolment link", `data-url="/.keyway/admin/users/usr_alice/enrol-link"`,
			`data-url="/.keyway/admin/users/usr_alice/revoke-sessions"`, `data-form="invite"`}},
		{"admin/sessions", "tok-root", []string{"ses_alice2", `data-url="/.keyway/admin/sessions/ses_alice1"`, "live sessions"}},
		{"admin/keys", "tok-root", []string{"service:billing", "key_CCCC3333", "key_AAAA1111", "old secret until"}},
		{"admin/audit", "tok-root", []string{"session.created", "key_AAAA1111", "<dt>note</dt>"}},
	}
	for _, c := range cases {
		b := body(t, e.get(t, Prefix+c.page, c.token))
		for _, w := range c.want {
			if !strings.Contains(b, w) {
				t.Errorf("%s: missing %q", c.page, w)
			}
		}
		if strings.Contains(b, "<script>alert") {
			t.Errorf("%s: unescaped hostile text", c.page)
		}
	}
	// Another person's key and its data never show on Alice's page.
	if b := body(t, e.get(t, Prefix+"keys", "tok-alice")); strings.Count(b, "Old secret works until") != 1 {
		t.Error("a revoked key's old secret is shown as working (or the live one is not)")
	}
	if b := body(t, e.get(t, Prefix+"keys", "tok-alice")); strings.Contains(b, "CCCC3333") {
		t.Error("keys page shows another owner's key")
	}
}

func TestFailurePage(t *testing.T) {
	e := newEnv(t)
	e.accounts.err = errors.New("database is on fire")
	res := e.get(t, Prefix+"account", "tok-alice")
	b := body(t, res)
	if res.StatusCode != 500 || strings.Contains(b, "on fire") {
		t.Fatalf("status %d, body leaks? %s", res.StatusCode, b)
	}
	if !strings.Contains(e.logs.String(), "on fire") {
		t.Error("the detail was not logged")
	}
	if res.Header.Get("Content-Security-Policy") != Policy {
		t.Error("error page without CSP")
	}
}

func TestNoKeys(t *testing.T) {
	e := newEnv(t)
	h, err := New(Config{Accounts: e.accounts, Sessions: e.sessions, Decider: newCore(t, e.accounts, e.sessions), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	if res := e.get(t, Prefix+"keys", "tok-alice"); res.StatusCode != 404 {
		t.Errorf("keys without Keys: %d", res.StatusCode)
	}
	b := body(t, e.get(t, Prefix+"account", "tok-alice"))
	if strings.Contains(b, Prefix+"keys") {
		t.Error("nav links the keys page that is not served")
	}
	b = body(t, e.get(t, Prefix+"admin/audit", "tok-root"))
	if !strings.Contains(b, "not available") {
		t.Error("audit page without Audit does not say so")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted an empty config")
	}
}

func TestStaticAssets(t *testing.T) {
	e := newEnv(t)
	b := body(t, e.get(t, Prefix+"signin", ""))
	for file, ctype := range map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"} {
		hashed := regexp.MustCompile(`/\.keyway/portal/static/` + strings.Replace(regexp.QuoteMeta(file), `\.`, `\.[0-9a-f]{16}\.`, 1)).FindString(b)
		if hashed == "" {
			t.Fatalf("page does not link a hashed %s", file)
		}
		res := e.get(t, hashed, "")
		content := body(t, res)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != ctype || len(content) < 100 {
			t.Errorf("%s: %d %q (%d bytes)", hashed, res.StatusCode, res.Header.Get("Content-Type"), len(content))
		}
		if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q", hashed, cc)
		}
		etag := res.Header.Get("ETag")
		plain := e.get(t, Prefix+"static/"+file, "")
		if plain.StatusCode != 200 || plain.Header.Get("Cache-Control") != "no-cache" || plain.Header.Get("ETag") != etag || body(t, plain) != content {
			t.Errorf("%s: plain name: %d %q %q", file, plain.StatusCode, plain.Header.Get("Cache-Control"), plain.Header.Get("ETag"))
		}
		r := httptest.NewRequest(http.MethodGet, Prefix+"static/"+file, nil)
		r.Header.Set("If-None-Match", `W/"nope", `+etag)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("%s: If-None-Match: %d", file, w.Code)
		}
	}
	if res := e.get(t, Prefix+"static/nope.js", ""); res.StatusCode != 404 {
		t.Errorf("unknown asset: %d", res.StatusCode)
	}
	// The script wires itself by data attributes and calls the API as the
	// CSRF check wants.
	js := body(t, e.get(t, Prefix+"static/app.js", ""))
	for _, w := range []string{"'X-Keyway-CSRF': '1'", "'Content-Type': 'application/json'", "parseCreationOptionsFromJSON",
		"parseRequestOptionsFromJSON", "toJSON()", "mediation: 'conditional'", stepUpType, "getClientCapabilities"} {
		if !strings.Contains(js, w) {
			t.Errorf("app.js lacks %q", w)
		}
	}
}

// stepUpType is the problem type the script reacts to with a step-up.
const stepUpType = "urn:keyway:problem:step-up-required"

func TestBadAttributes(t *testing.T) {
	doc := `<p title="a style=&#34;x&#34; onclick=&#34;y">ok</p><p style="x">a</p><a href=" javascript:x">b</a><b onClick='y'>c</b>`
	if got := badAttributes(doc); len(got) != 3 {
		t.Errorf("badAttributes = %q, want 3", got)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"/.keyway/portal/keys":                  "/.keyway/portal/keys",
		"/.keyway/portal/admin/users":           "/.keyway/portal/admin/users",
		"/.keyway/portal/keys?x=1":              "",
		"/.keyway/portal/./keys":                "",
		"//evil.example":                        "",
		"https://x/.keyway/portal/":             "",
		"/.keyway/auth/logout":                  "",
		"/.keyway/portal/a\\b":                  "",
		"/.keyway/portal/enrol%2523token=X":     "",
		"/.keyway/portal/signup%3Fx=1%23invite": "",
		"/.keyway/portal/%6Beys":                "",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDescribeAgent(t *testing.T) {
	for ua, want := range map[string]string{
		"": "Unknown device",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36 Edg/156.0": "Edge on Windows",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15":        "Safari on macOS",
		"Mozilla/5.0 (Linux; Android 15) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36":                  "Chrome on Android",
		"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0":                                                    "Firefox on Linux",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36":             "Headless Chrome on Linux",
		"curl/8.5.0": "curl",
		"something":  "Unknown device",
	} {
		if got := describeAgent(ua); got != want {
			t.Errorf("describeAgent(%q) = %q, want %q", ua, got, want)
		}
	}
}
