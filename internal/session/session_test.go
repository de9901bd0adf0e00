package session_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/store/sqlite"
	"github.com/keywayhq/keyway/internal/store/sqlite/sqlitetest"
)

var ctx = context.Background()

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countingStore counts the store calls that matter for cost: reads by
// token and last_seen writes.
type countingStore struct {
	session.Store
	reads, touches atomic.Int64
}

func (c *countingStore) SessionByToken(ctx context.Context, h []byte) (*session.Session, error) {
	c.reads.Add(1)
	return c.Store.SessionByToken(ctx, h)
}

func (c *countingStore) TouchSession(ctx context.Context, id string, at time.Time) error {
	c.touches.Add(1)
	return c.Store.TouchSession(ctx, id, at)
}

type env struct {
	db    *sqlite.DB
	path  string
	clock *clock
	store *countingStore
	m     *session.Manager
}

func setup(t *testing.T) *env {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyway.db")
	db := sqlitetest.OpenAt(t, p)
	var err error
	for _, u := range []string{"usr_alice", "usr_bob"} {
		addUser(t, db, u)
	}
	e := &env{db: db, path: p, clock: newClock(), store: &countingStore{Store: db}}
	e.m, err = session.New(session.Config{Store: e.store, Now: e.clock.Now, Logger: quiet()})
	mustNot(t, err)
	return e
}

// addUser signs up the user a session needs, through the store's own
// method, with one passkey.
func addUser(t *testing.T, db *sqlite.DB, id string) {
	t.Helper()
	u := &passkey.User{ID: id, Handle: []byte("handle-" + id), Username: id, DisplayName: id, Role: passkey.RoleUser, CreatedAt: time.Unix(0, 0)}
	c := &passkey.Credential{ID: []byte("cred-" + id), UserID: id, Name: "key", PublicKey: []byte{1}, CreatedAt: time.Unix(0, 0)}
	mustNot(t, db.CreateUser(ctx, u, c, nil, nil))
}

func (e *env) create(t *testing.T, user string, cred []byte) (string, *session.Session) {
	t.Helper()
	tok, s, err := e.m.Create(ctx, user, cred, false, "192.0.2.1", "Firefox", "user:"+user)
	mustNot(t, err)
	return tok, s
}

// alive reports whether tok authenticates.
func (e *env) alive(t *testing.T, tok string) bool {
	t.Helper()
	_, err := e.m.Authenticate(ctx, tok)
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// rows counts the stored sessions of every user, expired or not.
func (e *env) rows(t *testing.T) int {
	t.Helper()
	n := 0
	for _, u := range []string{"usr_alice", "usr_bob"} {
		ss, err := e.db.ListSessions(ctx, u)
		mustNot(t, err)
		n += len(ss)
	}
	return n
}

func (e *env) events(t *testing.T) []audit.Event {
	t.Helper()
	recs, err := e.db.AuditEvents(ctx, 0, 1000)
	mustNot(t, err)
	out := make([]audit.Event, len(recs))
	for i, r := range recs {
		out[i] = r.Event
	}
	return out
}

func TestCreateAuthenticate(t *testing.T) {
	e := setup(t)
	cred := []byte("credential-1")
	tok, s, err := e.m.Create(ctx, "usr_alice", cred, false, "192.0.2.1", "Firefox\x00/1\n", "user:usr_alice")
	mustNot(t, err)

	if !strings.HasPrefix(tok, session.TokenPrefix) || len(tok) != 47 {
		t.Fatalf("token %q: want kws_ + 43 characters", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok[4:])
	if err != nil || len(raw) != 32 {
		t.Fatalf("token body: %d bytes, %v; want 32", len(raw), err)
	}
	if !strings.HasPrefix(s.ID, session.IDPrefix) || len(s.ID) != 20 {
		t.Fatalf("session ID %q: want ses_ + 16 characters", s.ID)
	}
	now := e.clock.Now()
	want := &session.Session{
		ID: s.ID, UserID: "usr_alice", CredentialID: cred, CreatedAt: now, LastSeenAt: now,
		ExpiresAt: now.Add(12 * time.Hour), StepUpAt: now, IP: "192.0.2.1", UserAgent: "Firefox/1",
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Fatalf("created session (-want +got):\n%s", diff)
	}
	got, err := e.m.Authenticate(ctx, tok)
	mustNot(t, err)
	// A session check opens nothing sealed: the device is in lists only.
	checked := *want
	checked.IP, checked.UserAgent = "", ""
	if diff := cmp.Diff(&checked, got); diff != "" {
		t.Fatalf("authenticated session (-want +got):\n%s", diff)
	}
	if !e.m.Fresh(got) {
		t.Fatal("a passkey sign-in should be Fresh")
	}

	// A second sign-in is a second session with its own token.
	tok2, s2 := e.create(t, "usr_alice", cred)
	if tok2 == tok || s2.ID == s.ID {
		t.Fatal("two sign-ins share a token or an ID")
	}

	evs := e.events(t)
	if len(evs) != 2 {
		t.Fatalf("audit events = %d, want 2", len(evs))
	}
	wantEv := audit.Event{At: now, Type: audit.SessionCreated, Actor: "user:usr_alice", Subject: s.ID, Detail: map[string]string{
		"user": "usr_alice", "restricted": "false", "expires_at": "2026-11-27T22:00:00Z", "credential": credTag(cred),
	}}
	// Where the session came from is stored sealed, never in clear.
	if len(evs[0].Origin) == 0 || bytes.Contains(evs[0].Origin, []byte(s.IP)) {
		t.Fatalf("the event's origin: %x", evs[0].Origin)
	}
	evs[0].Origin = nil
	if diff := cmp.Diff(wantEv, evs[0]); diff != "" {
		t.Fatalf("audit event (-want +got):\n%s", diff)
	}
}

func credTag(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:8])
}

func TestTokenIsNotStored(t *testing.T) {
	e := setup(t)
	tok, _ := e.create(t, "usr_alice", []byte("cred"))
	stepped, err := e.m.StepUp(ctx, mustAuth(t, e, tok), "user:usr_alice")
	mustNot(t, err)

	check := func(stage string) {
		t.Helper()
		for _, f := range []string{e.path, e.path + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, secret := range []string{tok, tok[4:], stepped, stepped[4:]} {
				if bytes.Contains(b, []byte(secret)) {
					t.Fatalf("%s: %s contains a session token", stage, f)
				}
				raw, _ := base64.RawURLEncoding.DecodeString(secret[len(secret)-43:])
				if bytes.Contains(b, raw) {
					t.Fatalf("%s: %s contains a token's random bytes", stage, f)
				}
			}
		}
	}
	check("open")
	mustNot(t, e.db.Close())
	check("closed")
	b, err := os.ReadFile(e.path)
	mustNot(t, err)
	h := sha256.Sum256([]byte(stepped))
	if !bytes.Contains(b, h[:]) {
		t.Fatal("the file does not hold the token's hash either: is this the right file?")
	}
}

func mustAuth(t *testing.T, e *env, tok string) *session.Session {
	t.Helper()
	s, err := e.m.Authenticate(ctx, tok)
	mustNot(t, err)
	return s
}

func TestMalformedTokens(t *testing.T) {
	e := setup(t)
	tok, _ := e.create(t, "usr_alice", nil)
	body := tok[4:]
	// The last character of 43 carries 2 unused bits: 'B' sets one of them.
	nonCanonical := tok[:len(tok)-1] + "B"
	if tok[len(tok)-1] == 'B' {
		nonCanonical = tok[:len(tok)-1] + "C"
	}
	tests := []struct {
		name, token string
	}{
		{"empty", ""},
		{"prefix only", "kws_"},
		{"no prefix", body},
		{"api key prefix", "kw_" + body + "x"},
		{"upper-case prefix", "KWS_" + body},
		{"short", tok[:len(tok)-1]},
		{"long", tok + "A"},
		{"padded", tok + "="},
		{"standard alphabet", "kws_" + strings.Repeat("+", 43)},
		{"space", "kws_" + body[:42] + " "},
		{"non-canonical", nonCanonical},
		{"non-ASCII", "kws_" + body[:41] + "é"},
		{"huge", "kws_" + strings.Repeat("A", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.store.reads.Load()
			if _, err := e.m.Authenticate(ctx, tt.token); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("Authenticate = %v, want ErrNotFound", err)
			}
			if n := e.store.reads.Load() - before; n != 0 {
				t.Fatalf("a malformed token cost %d store reads, want 0", n)
			}
		})
	}
	t.Run("well-formed but unknown", func(t *testing.T) {
		before := e.store.reads.Load()
		unknown := "kws_" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
		if _, err := e.m.Authenticate(ctx, unknown); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Authenticate = %v, want ErrNotFound", err)
		}
		if n := e.store.reads.Load() - before; n != 1 {
			t.Fatalf("store reads = %d, want 1", n)
		}
	})
}

func TestTimeouts(t *testing.T) {
	tests := []struct {
		name string
		// steps are the waits between requests; the session must be alive
		// for all but the last, whose outcome is want.
		steps []time.Duration
		want  bool
	}{
		{"idle just under", []time.Duration{30*time.Minute - time.Nanosecond}, true},
		{"idle", []time.Duration{30 * time.Minute}, false},
		{"activity resets idle", []time.Duration{29 * time.Minute, 29 * time.Minute, 29 * time.Minute}, true},
		{"absolute just under", append(repeat(24, 29*time.Minute), 24*time.Minute-time.Nanosecond), true},
		{"absolute despite activity", append(repeat(24, 29*time.Minute), 24*time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			tok, _ := e.create(t, "usr_alice", nil)
			other, _ := e.create(t, "usr_bob", nil) // never presented again
			for i, d := range tt.steps {
				e.clock.Add(d)
				got := e.alive(t, tok)
				if i < len(tt.steps)-1 && !got {
					t.Fatalf("request %d: session died early", i)
				}
				if i == len(tt.steps)-1 && got != tt.want {
					t.Fatalf("alive = %v, want %v", got, tt.want)
				}
			}
			if tt.want {
				return
			}
			// Presenting an expired token deleted it, and any other lapsed one.
			if n := e.rows(t); n != 0 {
				t.Fatalf("%d session rows left, want 0", n)
			}
			if e.alive(t, other) {
				t.Fatal("another idle session is alive")
			}
		})
	}
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestTouchThrottle(t *testing.T) {
	e := setup(t)
	tok, s := e.create(t, "usr_alice", nil)
	created := s.CreatedAt
	steps := []struct {
		wait       time.Duration
		writes     int64         // cumulative last_seen writes
		storedSeen time.Duration // stored last_seen, after creation
	}{
		{0, 0, 0},
		{30 * time.Second, 0, 0},
		{29*time.Second + 999*time.Millisecond, 0, 0},
		{time.Millisecond, 1, time.Minute},
		{30 * time.Second, 1, time.Minute},
		{30 * time.Second, 2, 2 * time.Minute},
		{10 * time.Minute, 3, 12 * time.Minute},
	}
	for i, st := range steps {
		e.clock.Add(st.wait)
		got := mustAuth(t, e, tok)
		if n := e.store.touches.Load(); n != st.writes {
			t.Fatalf("step %d: %d last_seen writes, want %d", i, n, st.writes)
		}
		list, err := e.m.List(ctx, "usr_alice")
		mustNot(t, err)
		if want := created.Add(st.storedSeen); !list[0].LastSeenAt.Equal(want) || !got.LastSeenAt.Equal(want) {
			t.Fatalf("step %d: last_seen stored %v, returned %v; want %v", i, list[0].LastSeenAt, got.LastSeenAt, want)
		}
	}
}

func TestConcurrentAuthenticate(t *testing.T) {
	e := setup(t)
	toks := make([]string, 4)
	for i := range toks {
		toks[i], _ = e.create(t, "usr_alice", nil)
	}
	e.clock.Add(2 * time.Minute) // every session is due a touch
	var wg sync.WaitGroup
	var failures atomic.Int64
	for g := range 32 {
		wg.Go(func() {
			for i := range 25 {
				tok := toks[(g+i)%len(toks)]
				if s, err := e.m.Authenticate(ctx, tok); err != nil || s.UserID != "usr_alice" || !e.m.Fresh(s) {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d concurrent authentications failed", n)
	}
	if n := e.store.touches.Load(); n != int64(len(toks)) {
		t.Fatalf("%d last_seen writes for %d sessions, want one each", n, len(toks))
	}
}

func TestStepUp(t *testing.T) {
	e := setup(t)
	tok, _ := e.create(t, "usr_alice", []byte("cred"))
	e.clock.Add(5 * time.Minute)
	s := mustAuth(t, e, tok)
	if e.m.Fresh(s) {
		t.Fatal("a 5-minute-old sign-in is still Fresh")
	}

	newTok, err := e.m.StepUp(ctx, s, "user:usr_alice")
	mustNot(t, err)
	if newTok == tok || !strings.HasPrefix(newTok, session.TokenPrefix) {
		t.Fatalf("step-up token %q", newTok)
	}
	if !s.StepUpAt.Equal(e.clock.Now()) || !e.m.Fresh(s) {
		t.Fatal("StepUp did not make s Fresh")
	}
	if e.alive(t, tok) {
		t.Fatal("the old token still works after step-up")
	}
	got := mustAuth(t, e, newTok)
	if got.ID != s.ID || !e.m.Fresh(got) {
		t.Fatalf("after step-up: %+v, fresh %v", got, e.m.Fresh(got))
	}
	e.clock.Add(5*time.Minute - time.Nanosecond)
	if !e.m.Fresh(got) {
		t.Fatal("not Fresh just under StepUpMaxAge")
	}
	e.clock.Add(time.Nanosecond)
	if e.m.Fresh(got) {
		t.Fatal("Fresh at StepUpMaxAge")
	}
	evs := e.events(t)
	last := evs[len(evs)-1]
	if last.Type != audit.SessionStepUp || last.Subject != s.ID || last.Actor != "user:usr_alice" {
		t.Fatalf("audit event %+v", last)
	}

	// A session revoked or expired meanwhile cannot be stepped up.
	mustNot(t, e.m.Revoke(ctx, "usr_alice", s.ID, "user:usr_alice"))
	if _, err := e.m.StepUp(ctx, got, "user:usr_alice"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("StepUp of a revoked session = %v, want ErrNotFound", err)
	}
	tok3, _ := e.create(t, "usr_alice", nil)
	s3 := mustAuth(t, e, tok3)
	e.clock.Add(31 * time.Minute)
	if _, err := e.m.StepUp(ctx, s3, "user:usr_alice"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("StepUp of an idle session = %v, want ErrNotFound", err)
	}
}

func TestRestrictedNeverFresh(t *testing.T) {
	e := setup(t)
	tok, s, err := e.m.Create(ctx, "usr_alice", nil, true, "", "", "user:usr_alice")
	mustNot(t, err)
	if !s.Restricted || !s.StepUpAt.IsZero() || s.CredentialID != nil || e.m.Fresh(s) {
		t.Fatalf("recovery session %+v, fresh %v", s, e.m.Fresh(s))
	}
	got := mustAuth(t, e, tok)
	if !got.Restricted || got.CredentialID != nil || !got.StepUpAt.IsZero() || e.m.Fresh(got) {
		t.Fatalf("stored recovery session %+v", got)
	}
	newTok, err := e.m.StepUp(ctx, got, "user:usr_alice")
	mustNot(t, err)
	if e.m.Fresh(got) || e.m.Fresh(mustAuth(t, e, newTok)) {
		t.Fatal("a restricted session is Fresh after step-up")
	}
	if evs := e.events(t); evs[0].Detail["restricted"] != "true" || evs[0].Detail["credential"] != "" {
		t.Fatalf("audit detail %v", evs[0].Detail)
	}
}

func TestList(t *testing.T) {
	e := setup(t)
	e.create(t, "usr_alice", nil)
	e.clock.Add(20 * time.Minute)
	_, a2 := e.create(t, "usr_alice", nil)
	e.clock.Add(time.Second)
	_, a3 := e.create(t, "usr_alice", nil)
	_, b1 := e.create(t, "usr_bob", nil)
	e.clock.Add(15 * time.Minute) // the first has been idle for 35 minutes

	got, err := e.m.List(ctx, "usr_alice")
	mustNot(t, err)
	if diff := cmp.Diff([]*session.Session{a3, a2}, got); diff != "" {
		t.Fatalf("List(alice) (-want +got):\n%s", diff)
	}
	got, err = e.m.List(ctx, "usr_bob")
	mustNot(t, err)
	if len(got) != 1 || got[0].ID != b1.ID {
		t.Fatalf("List(bob) = %v", got)
	}
	got, err = e.m.List(ctx, "usr_nobody")
	mustNot(t, err)
	if len(got) != 0 {
		t.Fatalf("List(nobody) = %v", got)
	}
}

func TestRevoke(t *testing.T) {
	tests := []struct {
		name    string
		revoke  func(m *session.Manager, alice, bob string) error
		wantErr error
		// which of alice's and bob's sessions survive
		aliceLives, bobLives bool
	}{
		{"own", func(m *session.Manager, alice, _ string) error {
			return m.Revoke(ctx, "usr_alice", alice, "user:usr_alice")
		}, nil, false, true},
		{"someone else's", func(m *session.Manager, _, bob string) error {
			return m.Revoke(ctx, "usr_alice", bob, "user:usr_alice")
		}, session.ErrNotFound, true, true},
		{"unknown", func(m *session.Manager, _, _ string) error {
			return m.Revoke(ctx, "usr_alice", "ses_0000000000000000", "user:usr_alice")
		}, session.ErrNotFound, true, true},
		{"no user is nobody, not any user", func(m *session.Manager, alice, _ string) error {
			return m.Revoke(ctx, "", alice, "user:")
		}, session.ErrNotFound, true, true},
		{"empty ID", func(m *session.Manager, _, _ string) error {
			return m.Revoke(ctx, "usr_alice", "", "user:usr_alice")
		}, session.ErrNotFound, true, true},
		{"admin, any user", func(m *session.Manager, _, bob string) error {
			return m.RevokeAny(ctx, bob, "admin:usr_alice")
		}, nil, true, false},
		{"admin, unknown", func(m *session.Manager, _, _ string) error {
			return m.RevokeAny(ctx, "ses_0000000000000000", "admin:usr_alice")
		}, session.ErrNotFound, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			aliceTok, alice := e.create(t, "usr_alice", nil)
			bobTok, bob := e.create(t, "usr_bob", nil)
			before := len(e.events(t))
			err := tt.revoke(e.m, alice.ID, bob.ID)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := e.alive(t, aliceTok); got != tt.aliceLives {
				t.Errorf("alice's session alive = %v, want %v", got, tt.aliceLives)
			}
			if got := e.alive(t, bobTok); got != tt.bobLives {
				t.Errorf("bob's session alive = %v, want %v", got, tt.bobLives)
			}
			evs := e.events(t)[before:]
			if tt.wantErr != nil {
				if len(evs) != 0 {
					t.Fatalf("a failed revocation was audited: %+v", evs)
				}
				return
			}
			if len(evs) != 1 || evs[0].Type != audit.SessionRevoked {
				t.Fatalf("audit events %+v, want one session.revoked", evs)
			}
		})
	}
}

func TestRevokeOthersAndUser(t *testing.T) {
	e := setup(t)
	keepTok, keep := e.create(t, "usr_alice", nil)
	a2, _ := e.create(t, "usr_alice", nil)
	a3, _ := e.create(t, "usr_alice", nil)
	bobTok, _ := e.create(t, "usr_bob", nil)

	n, err := e.m.RevokeOthers(ctx, "usr_alice", keep.ID, "user:usr_alice")
	mustNot(t, err)
	if n != 2 {
		t.Fatalf("RevokeOthers = %d, want 2", n)
	}
	for tok, want := range map[string]bool{keepTok: true, a2: false, a3: false, bobTok: true} {
		if e.alive(t, tok) != want {
			t.Fatalf("after RevokeOthers, alive(%s…) != %v", tok[:8], want)
		}
	}
	if _, err := e.m.RevokeOthers(ctx, "usr_alice", "", "user:usr_alice"); err == nil {
		t.Fatal("RevokeOthers without a session to keep should fail")
	}

	n, err = e.m.RevokeUser(ctx, "usr_alice", "admin:usr_bob")
	mustNot(t, err)
	if n != 1 || e.alive(t, keepTok) || !e.alive(t, bobTok) {
		t.Fatalf("RevokeUser = %d; alice alive %v, bob alive %v", n, e.alive(t, keepTok), e.alive(t, bobTok))
	}
	n, err = e.m.RevokeUser(ctx, "usr_alice", "admin:usr_bob")
	mustNot(t, err)
	if n != 0 {
		t.Fatalf("second RevokeUser = %d, want 0", n)
	}
	if _, err := e.m.RevokeUser(ctx, "", "admin:usr_bob"); err == nil {
		t.Fatal("RevokeUser of no user should fail")
	}

	var types, scopes []string
	for _, ev := range e.events(t)[4:] {
		types = append(types, ev.Type)
		scopes = append(scopes, ev.Subject+" "+ev.Detail["scope"]+" "+ev.Detail["kept"])
	}
	wantScopes := []string{"usr_alice others " + keep.ID, "usr_alice all ", "usr_alice all "}
	if diff := cmp.Diff(wantScopes, scopes); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
	for _, ty := range types {
		if ty != audit.SessionRevoked {
			t.Fatalf("audit types %v", types)
		}
	}
}

func TestRevokeCredential(t *testing.T) {
	e := setup(t)
	credA, credB := []byte("passkey-a"), []byte("passkey-b")
	a1, _ := e.create(t, "usr_alice", credA)
	a2, _ := e.create(t, "usr_alice", credA)
	b1, _ := e.create(t, "usr_alice", credB)
	rec, _, err := e.m.Create(ctx, "usr_alice", nil, true, "", "", "user:usr_alice")
	mustNot(t, err)
	bob, _ := e.create(t, "usr_bob", []byte("passkey-c"))

	n, err := e.m.RevokeCredential(ctx, credA, "user:usr_alice")
	mustNot(t, err)
	if n != 2 {
		t.Fatalf("RevokeCredential = %d, want 2", n)
	}
	for tok, want := range map[string]bool{a1: false, a2: false, b1: true, rec: true, bob: true} {
		if e.alive(t, tok) != want {
			t.Fatalf("after RevokeCredential, alive(%s…) != %v", tok[:8], want)
		}
	}
	if _, err := e.m.RevokeCredential(ctx, nil, "user:usr_alice"); err == nil {
		t.Fatal("RevokeCredential(nil) should fail")
	}
	evs := e.events(t)
	last := evs[len(evs)-1]
	if last.Type != audit.SessionRevoked || last.Detail["credential"] != credTag(credA) || len(credTag(credA)) != 16 {
		t.Fatalf("audit event %+v", last)
	}
	for _, ev := range evs {
		for _, v := range append([]string{ev.Subject}, values(ev.Detail)...) {
			if strings.Contains(v, "passkey-") {
				t.Fatalf("audit event %+v holds a raw credential ID", ev)
			}
		}
	}
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestAuditHoldsNoSecrets runs every audited operation and checks that no
// event holds a token, its hash, an IP address or a user agent.
func TestAuditHoldsNoSecrets(t *testing.T) {
	e := setup(t)
	tok, s, err := e.m.Create(ctx, "usr_alice", []byte("cred"), false, "198.51.100.7", "SecretAgent/1.0", "user:usr_alice")
	mustNot(t, err)
	newTok, err := e.m.StepUp(ctx, s, "user:usr_alice")
	mustNot(t, err)
	tok2, s2 := e.create(t, "usr_alice", []byte("cred"))
	mustNot(t, e.m.Revoke(ctx, "usr_alice", s2.ID, "user:usr_alice"))
	_, err = e.m.RevokeOthers(ctx, "usr_alice", s.ID, "user:usr_alice")
	mustNot(t, err)
	_, err = e.m.RevokeCredential(ctx, []byte("cred"), "user:usr_alice")
	mustNot(t, err)
	_, err = e.m.RevokeUser(ctx, "usr_alice", "admin:usr_bob")
	mustNot(t, err)

	recs, err := e.db.AuditEvents(ctx, 0, 1000)
	mustNot(t, err)
	var types []string
	forbidden := []string{tok, tok[4:], newTok, newTok[4:], tok2, tok2[4:], "198.51.100.7", "SecretAgent"}
	for _, r := range recs {
		types = append(types, r.Event.Type)
		all := strings.Join(append([]string{r.Event.Actor, r.Event.Subject}, values(r.Event.Detail)...), " ")
		for _, f := range forbidden {
			if strings.Contains(all, f) {
				t.Fatalf("audit event %d holds %q", r.Seq, f)
			}
		}
	}
	want := []string{audit.SessionCreated, audit.SessionStepUp, audit.SessionCreated, audit.SessionRevoked,
		audit.SessionRevoked, audit.SessionRevoked, audit.SessionRevoked}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Fatalf("audit types (-want +got):\n%s", diff)
	}
}

func TestSweep(t *testing.T) {
	e := setup(t)
	e.create(t, "usr_alice", nil)
	e.clock.Add(20 * time.Minute)
	live, _ := e.create(t, "usr_bob", nil)
	e.clock.Add(10 * time.Minute)
	mustNot(t, e.m.Sweep(ctx))
	if n := e.rows(t); n != 1 {
		t.Fatalf("%d rows after Sweep, want 1", n)
	}
	if !e.alive(t, live) {
		t.Fatal("Sweep deleted a live session")
	}
	if n := len(e.events(t)); n != 2 {
		t.Fatalf("%d audit events, want 2 (expiry is not audited)", n)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestCreateFailsClosed(t *testing.T) {
	e := setup(t)
	m, err := session.New(session.Config{Store: e.db, Rand: errReader{}, Logger: quiet()})
	mustNot(t, err)
	if _, _, err := m.Create(ctx, "usr_alice", nil, false, "", "", "test"); err == nil {
		t.Fatal("Create without randomness should fail")
	}
	if _, _, err := e.m.Create(ctx, "usr_nobody", nil, false, "", "", "test"); err == nil {
		t.Fatal("Create for a user that does not exist should fail")
	}
	if _, _, err := e.m.Create(ctx, "", nil, false, "", "", "test"); err == nil {
		t.Fatal("Create for no user should fail")
	}
	if n := e.rows(t); n != 0 {
		t.Fatalf("%d session rows, want 0", n)
	}
	if n := len(e.events(t)); n != 0 {
		t.Fatalf("%d audit events for failed creations, want 0", n)
	}
}

func TestCreateClipsDescriptions(t *testing.T) {
	e := setup(t)
	ua := strings.Repeat("é", 200) // 400 bytes
	_, s, err := e.m.Create(ctx, "usr_alice", nil, false, strings.Repeat("1", 100), ua+"\xff", "test")
	mustNot(t, err)
	if len(s.IP) != 64 || len(s.UserAgent) != 256 || !strings.HasPrefix(ua, s.UserAgent) {
		t.Fatalf("IP %d bytes, user agent %d bytes (%q)", len(s.IP), len(s.UserAgent), s.UserAgent)
	}
}

func TestNewConfig(t *testing.T) {
	db := &countingStore{}
	tests := []struct {
		name string
		cfg  session.Config
		ok   bool
	}{
		{"defaults", session.Config{Store: db, Logger: quiet()}, true},
		{"no store", session.Config{Logger: quiet()}, false},
		{"no logger", session.Config{Store: db}, false},
		{"idle over absolute", session.Config{Store: db, Logger: quiet(), IdleTimeout: 2 * time.Hour, AbsoluteTimeout: time.Hour}, false},
		{"touch not under idle", session.Config{Store: db, Logger: quiet(), IdleTimeout: time.Minute, TouchEvery: time.Minute}, false},
		{"short idle shortens the default touch", session.Config{Store: db, Logger: quiet(), IdleTimeout: time.Minute}, true},
		{"short but valid", session.Config{Store: db, Logger: quiet(), IdleTimeout: 2 * time.Minute, AbsoluteTimeout: time.Hour}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := session.New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
