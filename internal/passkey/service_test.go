package passkey_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/store/sqlite"
	"github.com/keywayhq/keyway/internal/store/sqlite/sqlitetest"
	"github.com/keywayhq/keyway/internal/testenv"
)

const origin = "https://localhost:8443"

var (
	ctx = context.Background()
	rp  = virtualwebauthn.RelyingParty{Name: "keyway", ID: "localhost", Origin: origin}
)

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	t   testing.TB
	db  *sqlite.DB
	svc *passkey.Service
	clk *clock
}

func newEnv(t testing.TB, mutate ...func(*passkey.Config)) *env {
	t.Helper()
	db := sqlitetest.Open(t)
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	cfg := passkey.Config{Store: db, RPID: "localhost", Origins: []string{origin}, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	svc, err := passkey.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, db: db, svc: svc, clk: clk}
}

func optionsJSON(t testing.TB, opts any) string {
	t.Helper()
	b, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// device is a virtual authenticator holding one credential.
type device struct {
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
}

func newDevice(opts virtualwebauthn.AuthenticatorOptions) *device {
	return &device{auth: virtualwebauthn.NewAuthenticatorWithOptions(opts), cred: testenv.NewCredential()}
}

func (d *device) attest(t testing.TB, opts any) []byte {
	t.Helper()
	ao, err := virtualwebauthn.ParseAttestationOptions(optionsJSON(t, opts))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(virtualwebauthn.CreateAttestationResponse(rp, d.auth, d.cred, *ao))
}

func (d *device) assert(t testing.TB, opts any) []byte {
	t.Helper()
	ao, err := virtualwebauthn.ParseAssertionOptions(optionsJSON(t, opts))
	if err != nil {
		t.Fatal(err)
	}
	d.cred.Counter++
	return []byte(virtualwebauthn.CreateAssertionResponse(rp, d.auth, d.cred, *ao))
}

// signUp creates an account with a passkey on a new device.
func (e *env) signUp(username string, opts virtualwebauthn.AuthenticatorOptions) (*passkey.User, *device) {
	e.t.Helper()
	o, id, err := e.svc.BeginSignUp(ctx, username, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	d := newDevice(opts)
	u, _, err := e.svc.FinishRegistration(ctx, id, "", d.attest(e.t, o))
	if err != nil {
		e.t.Fatalf("finish sign-up: %v", err)
	}
	d.auth.Options.UserHandle = u.Handle
	return u, d
}

func (e *env) login(d *device, username string) (*passkey.LoginResult, error) {
	e.t.Helper()
	o, id, err := e.svc.BeginLogin(ctx, username)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.svc.FinishLogin(ctx, id, d.assert(e.t, o))
}

func TestSignUpAndSignIn(t *testing.T) {
	e := newEnv(t)
	u, d := e.signUp("Alice", virtualwebauthn.AuthenticatorOptions{})
	if u.Username != "alice" || u.Role != passkey.RoleUser || len(u.Handle) != 32 {
		t.Fatalf("user %+v", u)
	}
	for _, name := range []string{"", "alice", "ALICE"} {
		res, err := e.login(d, name)
		if err != nil || res.User.ID != u.ID {
			t.Fatalf("login(%q): %v", name, err)
		}
	}
	creds, _ := e.svc.Credentials(ctx, u.ID)
	if len(creds) != 1 || creds[0].SignCount != 3 || creds[0].LastUsedAt.IsZero() {
		t.Fatalf("credential after logins: %+v", creds[0])
	}
	if _, _, err := e.svc.BeginSignUp(ctx, "alice", "", ""); !errors.Is(err, passkey.ErrUsernameTaken) {
		t.Fatalf("second alice: %v", err)
	}
}

func TestUserVerificationRequired(t *testing.T) {
	e := newEnv(t)
	o, id, _ := e.svc.BeginSignUp(ctx, "bob", "", "")
	d := newDevice(virtualwebauthn.AuthenticatorOptions{UserNotVerified: true})
	if _, _, err := e.svc.FinishRegistration(ctx, id, "", d.attest(t, o)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("registration with UV=0: %v", err)
	}
	_, d = e.signUp("bob", virtualwebauthn.AuthenticatorOptions{})
	d.auth.Options.UserNotVerified = true
	if _, err := e.login(d, ""); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("login with UV=0: %v", err)
	}
}

func TestChallengesAreSingleUseAndExpire(t *testing.T) {
	e := newEnv(t)
	_, d := e.signUp("carol", virtualwebauthn.AuthenticatorOptions{})
	o, id, _ := e.svc.BeginLogin(ctx, "")
	body := d.assert(t, o)
	if _, err := e.svc.FinishLogin(ctx, id, body); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.FinishLogin(ctx, id, body); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("replayed assertion: %v", err)
	}
	o, id, _ = e.svc.BeginLogin(ctx, "")
	e.clk.Add(5*time.Minute + time.Second)
	if _, err := e.svc.FinishLogin(ctx, id, d.assert(t, o)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("expired challenge: %v", err)
	}
	// A registration challenge cannot finish a login, and vice versa.
	o2, rid, _ := e.svc.BeginSignUp(ctx, "dave", "", "")
	if _, err := e.svc.FinishLogin(ctx, rid, d.assert(t, o2)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("cross-ceremony: %v", err)
	}
	if _, err := e.svc.FinishLogin(ctx, "nope", d.assert(t, o)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("unknown ceremony: %v", err)
	}
}

func TestBogusSignatureAndWrongOrigin(t *testing.T) {
	e := newEnv(t)
	_, d := e.signUp("erin", virtualwebauthn.AuthenticatorOptions{})
	o, id, _ := e.svc.BeginLogin(ctx, "")
	body := d.assert(t, o)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	resp := m["response"].(map[string]any)
	sig := []byte(resp["signature"].(string))
	sig[10] ^= 1
	resp["signature"] = string(sig)
	bad, _ := json.Marshal(m)
	if _, err := e.svc.FinishLogin(ctx, id, bad); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("bogus signature: %v", err)
	}
	evil := virtualwebauthn.RelyingParty{Name: "x", ID: "localhost", Origin: "https://evil.example"}
	o, id, _ = e.svc.BeginLogin(ctx, "")
	ao, _ := virtualwebauthn.ParseAssertionOptions(optionsJSON(t, o))
	d.cred.Counter++
	phished := virtualwebauthn.CreateAssertionResponse(evil, d.auth, d.cred, *ao)
	if _, err := e.svc.FinishLogin(ctx, id, []byte(phished)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("foreign origin: %v", err)
	}
	for _, junk := range []string{"", "{}", "null", `{"id":"x"}`, strings.Repeat("[", 1000)} {
		o, id, _ = e.svc.BeginLogin(ctx, "")
		_ = o
		if _, err := e.svc.FinishLogin(ctx, id, []byte(junk)); !errors.Is(err, passkey.ErrCeremony) {
			t.Fatalf("junk %q: %v", junk, err)
		}
	}
}

func TestCounterRegression(t *testing.T) {
	for _, tt := range []struct {
		policy passkey.CounterPolicy
		want   error
	}{{passkey.CounterDeny, passkey.ErrCloned}, {passkey.CounterLog, nil}} {
		t.Run(string(tt.policy), func(t *testing.T) {
			e := newEnv(t, func(c *passkey.Config) { c.Counter = tt.policy })
			_, d := e.signUp("frank", virtualwebauthn.AuthenticatorOptions{})
			for range 3 {
				if _, err := e.login(d, ""); err != nil {
					t.Fatal(err)
				}
			}
			d.cred.Counter = 1 // a clone that lags behind
			res, err := e.login(d, "")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && !res.CloneWarning {
				t.Fatal("no clone warning")
			}
			recs, _ := e.db.AuditEvents(ctx, 0, 100)
			found := false
			for _, r := range recs {
				found = found || r.Event.Type == "passkey.clone_warning"
			}
			if !found {
				t.Fatal("clone warning not audited")
			}
		})
	}
}

func TestBackupEligibilityFlipIsAcceptedAndAudited(t *testing.T) {
	e := newEnv(t)
	_, d := e.signUp("gina", virtualwebauthn.AuthenticatorOptions{})
	d.auth.Options.BackupEligible, d.auth.Options.BackupState = true, true
	res, err := e.login(d, "")
	if err != nil {
		t.Fatalf("login after BE flip: %v", err)
	}
	if !res.Credential.Synced() {
		t.Fatal("BS not recorded")
	}
	recs, _ := e.db.AuditEvents(ctx, 0, 100)
	if recs[len(recs)-1].Event.Type != "passkey.backup_eligibility_changed" {
		t.Fatalf("last audit event %q", recs[len(recs)-1].Event.Type)
	}
	if _, err := e.login(d, ""); err != nil {
		t.Fatalf("login after the flip was stored: %v", err)
	}
}

func TestSignUpModes(t *testing.T) {
	e := newEnv(t, func(c *passkey.Config) { c.SignUp = passkey.SignUpInvite })
	if _, _, err := e.svc.BeginSignUp(ctx, "hank", "", ""); !errors.Is(err, passkey.ErrSignUpClosed) {
		t.Fatalf("no invite: %v", err)
	}
	tok, err := e.svc.CreateLink(ctx, "invite", "", passkey.RoleUser, "admin:x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	o, id, err := e.svc.BeginSignUp(ctx, "hank", "Hank", tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.FinishRegistration(ctx, id, "", newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.BeginSignUp(ctx, "ivan", "", tok); !errors.Is(err, passkey.ErrSignUpClosed) {
		t.Fatalf("reused invite: %v", err)
	}
	setup, _ := e.svc.CreateLink(ctx, "setup", "", passkey.RoleAdmin, "system", time.Hour)
	need, _ := e.svc.NeedsSetup(ctx)
	if !need {
		t.Fatal("setup needed with no admin")
	}
	o, id, _ = e.svc.BeginSignUp(ctx, "root", "", setup)
	u, _, err := e.svc.FinishRegistration(ctx, id, "", newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o))
	if err != nil || u.Role != passkey.RoleAdmin {
		t.Fatalf("setup link: %v %+v", err, u)
	}
	// A setup link minted by an earlier start is dead once an admin exists,
	// even for a ceremony begun before.
	e2 := newEnv(t)
	link1, _ := e2.svc.CreateLink(ctx, "setup", "", passkey.RoleAdmin, "system", time.Hour)
	link2, _ := e2.svc.CreateLink(ctx, "setup", "", passkey.RoleAdmin, "system", time.Hour)
	o1, id1, err := e2.svc.BeginSignUp(ctx, "mallory", "", link1)
	if err != nil {
		t.Fatal(err)
	}
	o2, id2, _ := e2.svc.BeginSignUp(ctx, "owner", "", link2)
	if u, _, err := e2.svc.FinishRegistration(ctx, id2, "", newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o2)); err != nil || u.Role != passkey.RoleAdmin {
		t.Fatalf("first admin: %v", err)
	}
	if _, _, err := e2.svc.FinishRegistration(ctx, id1, "", newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o1)); !errors.Is(err, passkey.ErrSignUpClosed) {
		t.Fatalf("an older setup link made a second admin: %v", err)
	}
	if _, _, err := e2.svc.BeginSignUp(ctx, "mallory", "", link1); !errors.Is(err, passkey.ErrSignUpClosed) {
		t.Fatalf("older setup link at begin: %v", err)
	}

	expired, _ := e.svc.CreateLink(ctx, "invite", "", passkey.RoleUser, "admin:x", time.Minute)
	e.clk.Add(2 * time.Minute)
	if _, _, err := e.svc.BeginSignUp(ctx, "judy", "", expired); !errors.Is(err, passkey.ErrSignUpClosed) {
		t.Fatalf("expired invite: %v", err)
	}

	closed := newEnv(t, func(c *passkey.Config) { c.SignUp = passkey.SignUpClosed })
	if _, _, err := closed.svc.BeginSignUp(ctx, "kim", "", ""); !errors.Is(err, passkey.ErrSignUpClosed) {
		t.Fatalf("closed: %v", err)
	}
	for _, bad := range []string{"", "a", "has space", "Ｆｕｌｌ", strings.Repeat("x", 65), "-lead"} {
		if _, _, err := e.svc.BeginSignUp(ctx, bad, "", ""); err == nil {
			t.Errorf("username %q accepted", bad)
		}
	}
}

func TestPasskeysAndRecovery(t *testing.T) {
	e := newEnv(t)
	u, d1 := e.signUp("lena", virtualwebauthn.AuthenticatorOptions{})
	creds, _ := e.svc.Credentials(ctx, u.ID)
	ref1 := passkey.CredentialRef(creds[0].ID)
	if _, err := e.svc.Remove(ctx, u.ID, ref1, "user:"+u.ID); !errors.Is(err, passkey.ErrLastPasskey) {
		t.Fatalf("removing the only passkey without codes: %v", err)
	}

	// A second passkey, with the first excluded from re-registration.
	o, id, err := e.svc.BeginAddPasskey(ctx, u.ID, "Laptop")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(optionsJSON(t, o), ref1) {
		t.Fatal("existing passkey not excluded")
	}
	d2 := newDevice(virtualwebauthn.AuthenticatorOptions{UserHandle: u.Handle})
	if _, _, err := e.svc.FinishRegistration(ctx, id, "someone-else", d2.attest(t, o)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("finishing another user's ceremony: %v", err)
	}
	o, id, _ = e.svc.BeginAddPasskey(ctx, u.ID, "Laptop")
	if _, c, err := e.svc.FinishRegistration(ctx, id, u.ID, d2.attest(t, o)); err != nil || c.Name != "Laptop" {
		t.Fatalf("add passkey: %v", err)
	}
	if err := e.svc.Rename(ctx, u.ID, ref1, "Phone"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{strings.Repeat("n", 65), "evil\u202Etxt.exe", "bell\a", "line\nbreak"} {
		if err := e.svc.Rename(ctx, u.ID, ref1, bad); !errors.Is(err, passkey.ErrInvalidInput) {
			t.Errorf("rename to %q: %v", bad, err)
		}
		if _, _, err := e.svc.BeginAddPasskey(ctx, u.ID, bad); !errors.Is(err, passkey.ErrInvalidInput) {
			t.Errorf("add passkey named %q: %v", bad, err)
		}
	}
	if err := e.svc.Rename(ctx, "usr_other", ref1, "Mine"); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("renaming someone else's passkey: %v", err)
	}
	if _, err := e.svc.Remove(ctx, u.ID, ref1, "user:"+u.ID); err != nil {
		t.Fatalf("remove one of two: %v", err)
	}
	if _, err := e.login(d1, ""); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("removed passkey still signs in: %v", err)
	}

	codes, err := e.svc.IssueRecoveryCodes(ctx, u.ID)
	if err != nil || len(codes) != 10 || len(codes[0]) != 19 {
		t.Fatalf("codes %v %v", codes, err)
	}
	if n, _ := e.svc.UnusedRecoveryCodes(ctx, u.ID); n != 10 {
		t.Fatalf("unused = %d", n)
	}
	if got, err := e.svc.UseRecoveryCode(ctx, "lena", strings.ToUpper(strings.ReplaceAll(codes[3], "-", " "))); err != nil || got.ID != u.ID {
		t.Fatalf("use code: %v", err)
	}
	if _, err := e.svc.UseRecoveryCode(ctx, "lena", codes[3]); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("reused code: %v", err)
	}
	if _, err := e.svc.UseRecoveryCode(ctx, "nobody", codes[4]); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("code of another user: %v", err)
	}
	// With unused codes left, the last passkey may go.
	creds, _ = e.svc.Credentials(ctx, u.ID)
	if _, err := e.svc.Remove(ctx, u.ID, passkey.CredentialRef(creds[0].ID), "user:"+u.ID); err != nil {
		t.Fatalf("remove last with codes: %v", err)
	}
}

func TestUnknownUsernameLooksLikeAKnownOne(t *testing.T) {
	e := newEnv(t)
	_, d := e.signUp("mona", virtualwebauthn.AuthenticatorOptions{})
	e.signUp("otto", virtualwebauthn.AuthenticatorOptions{})
	shape := func(username string) string {
		o, _, err := e.svc.BeginLogin(ctx, username)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]map[string]any
		_ = json.Unmarshal([]byte(optionsJSON(t, o)), &v)
		delete(v["publicKey"], "challenge")
		return optionsJSON(t, v)
	}
	known, unknown, none := shape("mona"), shape("nobody"), shape("")
	if known != unknown || known != none || strings.Contains(known, "allowCredentials") {
		t.Fatalf("options differ:\nknown   %s\nunknown %s\nnone    %s", known, unknown, none)
	}
	// A username narrows who may answer: mona's passkey cannot finish a
	// sign-in begun as otto.
	o, id, _ := e.svc.BeginLogin(ctx, "otto")
	if _, err := e.svc.FinishLogin(ctx, id, d.assert(t, o)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("mona signed in as otto: %v", err)
	}
	if res, err := e.login(d, "Mona"); err != nil || res.User.Username != "mona" {
		t.Fatalf("mona by username: %v", err)
	}
}

func TestStepUp(t *testing.T) {
	e := newEnv(t)
	u, d := e.signUp("nina", virtualwebauthn.AuthenticatorOptions{})
	other, od := e.signUp("omar", virtualwebauthn.AuthenticatorOptions{})
	o, id, err := e.svc.BeginStepUp(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.FinishStepUp(ctx, id, other.ID, d.assert(t, o)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("step-up finished by another user: %v", err)
	}
	o, id, _ = e.svc.BeginStepUp(ctx, u.ID)
	if _, err := e.svc.FinishStepUp(ctx, id, u.ID, od.assert(t, o)); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("step-up with another user's passkey: %v", err)
	}
	o, id, _ = e.svc.BeginStepUp(ctx, u.ID)
	if _, err := e.svc.FinishStepUp(ctx, id, u.ID, d.assert(t, o)); err != nil {
		t.Fatalf("step-up: %v", err)
	}
}

// seenSources records what the service hands its SourceStore.
type seenSources struct {
	passkey.SourceStore
	mu     sync.Mutex
	hashes [][]byte
	keep   int
}

func (s *seenSources) RememberSource(ctx context.Context, userID string, hash []byte, at time.Time, keep int) error {
	s.mu.Lock()
	s.hashes, s.keep = append(s.hashes, hash), keep
	s.mu.Unlock()
	return s.SourceStore.RememberSource(ctx, userID, hash, at, keep)
}

func TestKnownSources(t *testing.T) {
	var db *sqlite.DB
	e := newEnv(t)
	db = e.db
	key := make([]byte, 32)
	seen := &seenSources{SourceStore: db}
	e2 := newEnv(t, func(c *passkey.Config) { c.Store, c.Sources, c.SourceKey, c.Now = db, seen, key, e.clk.Now })
	u, _ := e2.signUp("dora", virtualwebauthn.AuthenticatorOptions{})
	known := func(name, src string) bool {
		t.Helper()
		ok, err := e2.svc.KnownSource(ctx, name, src)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if known("dora", "192.0.2.1") {
		t.Fatal("a source never seen is familiar")
	}
	if err := e2.svc.RememberSource(ctx, u.ID, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if !known("DORA", "192.0.2.1") || known("dora", "192.0.2.2") || known("nobody", "192.0.2.1") {
		t.Fatal("familiar sources are wrong")
	}
	// The store is never given a source in the clear, only a 32-byte
	// keyed hash.
	for _, h := range seen.hashes {
		if len(h) != 32 || bytes.Contains(h, []byte("192.0.2.1")) {
			t.Fatalf("the store was given %q for a source", h)
		}
	}
	// Only the 20 most recent are kept (the store's conformance suite
	// proves it keeps what it is told), and they fade after 180 days.
	for i := range 25 {
		e.clk.Add(time.Minute)
		if err := e2.svc.RememberSource(ctx, u.ID, "198.51.100."+string(rune('0'+i%10))+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if seen.keep != 20 {
		t.Fatalf("the store was told to keep %d sources, want 20", seen.keep)
	}
	if known("dora", "192.0.2.1") {
		t.Fatal("the oldest source was not dropped")
	}
	if !known("dora", "198.51.100.4y") {
		t.Fatal("a recent source was dropped")
	}
	e.clk.Add(181 * 24 * time.Hour)
	if known("dora", "198.51.100.4y") {
		t.Fatal("a source is familiar for ever")
	}
	// Without a store, nothing is familiar and nothing fails.
	if ok, err := e.svc.KnownSource(ctx, "dora", "198.51.100.4y"); ok || err != nil {
		t.Fatalf("no store: %v %v", ok, err)
	}
	if err := e.svc.RememberSource(ctx, u.ID, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := passkey.New(passkey.Config{Store: db, Sources: db, SourceKey: key[:8], RPID: "localhost", Origins: []string{origin},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil {
		t.Fatal("a short source key was accepted")
	}
}

// TestRefusedCeremoniesAreLoggedWithTheirReason: the client hears only
// that a ceremony failed; the operator's log says why (at info), for
// sign-up and sign-in alike, without the challenge or the credential ID.
func TestRefusedCeremoniesAreLoggedWithTheirReason(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	e := newEnv(t, func(c *passkey.Config) {
		c.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return buf.Write(p)
		}), nil))
	})
	logs := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	// A sign-up answered for another origin (a phishing page).
	o, id, err := e.svc.BeginSignUp(ctx, "fay", "", "")
	if err != nil {
		t.Fatal(err)
	}
	ao, _ := virtualwebauthn.ParseAttestationOptions(optionsJSON(t, o))
	d := newDevice(virtualwebauthn.AuthenticatorOptions{})
	evil := virtualwebauthn.RelyingParty{Name: "x", ID: "localhost", Origin: "https://evil.example"}
	_, _, err = e.svc.FinishRegistration(ctx, id, "", []byte(virtualwebauthn.CreateAttestationResponse(evil, d.auth, d.cred, *ao)))
	if !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("a sign-up from another origin: %v", err)
	}
	l := logs()
	if !strings.Contains(l, "passkey ceremony refused") || !strings.Contains(l, "ceremony=registration") || !strings.Contains(l, "evil.example") {
		t.Fatalf("the refused sign-up's log line: %q", l)
	}
	// The same ceremony again: it was spent.
	if _, _, err := e.svc.FinishRegistration(ctx, id, "", []byte("{}")); !errors.Is(err, passkey.ErrCeremony) || !strings.Contains(logs(), "no such ceremony") {
		t.Fatalf("a spent ceremony: %v; log %q", err, logs())
	}
	// A sign-in with a broken signature.
	_, dev := e.signUp("gus", virtualwebauthn.AuthenticatorOptions{})
	o2, id2, _ := e.svc.BeginLogin(ctx, "")
	var m map[string]any
	_ = json.Unmarshal(dev.assert(t, o2), &m)
	resp := m["response"].(map[string]any)
	sig := []byte(resp["signature"].(string))
	sig[10] ^= 1
	resp["signature"] = string(sig)
	bad, _ := json.Marshal(m)
	if _, err := e.svc.FinishLogin(ctx, id2, bad); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("bogus signature: %v", err)
	}
	if l := logs(); !strings.Contains(l, "ceremony=sign-in") {
		t.Fatalf("the refused sign-in's log line: %q", l)
	}
	for _, secret := range []string{id, id2, base64.RawURLEncoding.EncodeToString(dev.cred.ID)} {
		if strings.Contains(logs(), secret) {
			t.Fatalf("the log holds a ceremony ID or credential ID: %q", logs())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// FuzzFinishCeremonies: whatever a browser (or anyone) sends to finish a
// sign-up or a sign-in, keyway never panics, never lets it through, and
// answers with ErrCeremony (a 400), never an error that would be a 500.
func FuzzFinishCeremonies(f *testing.F) {
	e := newEnv(f)
	_, d := e.signUp("fuzz", virtualwebauthn.AuthenticatorOptions{})
	o, _, _ := e.svc.BeginLogin(ctx, "")
	f.Add(string(d.assert(f, o)))
	o2, _, _ := e.svc.BeginSignUp(ctx, "fuzz2", "", "")
	f.Add(string(newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(f, o2)))
	for _, s := range []string{"", "{}", "null", `{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}`,
		`{"type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}`, strings.Repeat("[", 500)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		_, id, err := e.svc.BeginSignUp(ctx, "fuzzer", "", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.FinishRegistration(ctx, id, "", []byte(body)); !errors.Is(err, passkey.ErrCeremony) {
			t.Fatalf("a sign-up finished with %q: %v", body, err)
		}
		_, id, err = e.svc.BeginLogin(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.FinishLogin(ctx, id, []byte(body)); !errors.Is(err, passkey.ErrCeremony) {
			t.Fatalf("a sign-in finished with %q: %v", body, err)
		}
	})
}
