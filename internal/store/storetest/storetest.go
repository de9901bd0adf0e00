// Package storetest is the conformance suite every keyway store passes:
// the promises the domain packages make of their stores (single use under
// concurrency, typed constraint errors, a state change and its audit event
// committed together or not at all, an unbroken audit chain with
// concurrent writers), checked on a real store. A store's own tests call
// Run with a function that opens a fresh, empty store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
)

// Store is what the suite checks.
type Store interface {
	passkey.Store
	passkey.SourceStore
	session.Store
	apikey.Store
	apikey.ChangeFeed
	audit.Reader
	audit.CheckpointStore
	Sealable
	// SessionWithUser reads a session and its person in one statement.
	SessionWithUser(ctx context.Context, tokenHash []byte) (*session.Session, *passkey.User, error)
}

func admin(id string) *passkey.User {
	u := user(id, id)
	u.Role = passkey.RoleAdmin
	return u
}

func setupUse(link string) *passkey.InviteUse {
	return &passkey.InviteUse{Hash: []byte(link), Kind: "setup", Role: passkey.RoleAdmin, Now: t0, CloseKind: true, UnlessRoleExists: passkey.RoleAdmin}
}

// parallel is how many callers race for one thing.
const parallel = 8

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func user(id, name string) *passkey.User {
	return &passkey.User{ID: id, Handle: []byte("handle-" + id), Username: name, DisplayName: name, Role: passkey.RoleUser, CreatedAt: t0}
}

func cred(id, userID string) *passkey.Credential {
	return &passkey.Credential{ID: []byte(id), UserID: userID, Name: "key", PublicKey: []byte{1}, CreatedAt: t0}
}

func event(typ, subject string) audit.Event {
	return audit.Event{At: t0, Type: typ, Actor: "storetest", Subject: subject, Detail: map[string]string{}}
}

// Run runs the suite; open returns a fresh, empty store for one subtest,
// and exec runs one SQL statement on it behind its back, as someone with
// the database's credentials would (the same statements are valid on
// every store the suite knows).
func Run(t *testing.T, open func(t *testing.T) Store, exec func(ctx context.Context, s Store, stmt string) error) {
	ctx := context.Background()

	t.Run("a challenge is taken once", func(t *testing.T) {
		s := open(t)
		if err := s.PutChallenge(ctx, &passkey.Challenge{ID: "c1", Kind: "login", Data: []byte("{}"), ExpiresAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		got := race(func(int) error {
			_, err := s.TakeChallenge(ctx, "c1")
			return err
		})
		if lost, other := got.split(passkey.ErrNotFound); got.ok != 1 || lost != parallel-1 {
			t.Fatalf("%d takers got the challenge, %d saw ErrNotFound (want 1 and %d); other errors: %v", got.ok, lost, parallel-1, other)
		}
	})

	t.Run("a one-time link is taken once", func(t *testing.T) {
		s := open(t)
		inv := &passkey.Invite{Kind: "invite", Role: passkey.RoleUser, CreatedBy: "admin", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateInvite(ctx, []byte("link"), inv, event(audit.InviteCreated, "invite")); err != nil {
			t.Fatal(err)
		}
		got := race(func(int) error {
			_, err := s.TakeInvite(ctx, []byte("link"), "invite", t0)
			return err
		})
		if lost, other := got.split(passkey.ErrNotFound); got.ok != 1 || lost != parallel-1 {
			t.Fatalf("one-time link: %d took it, %d saw ErrNotFound; other errors: %v", got.ok, lost, other)
		}
	})

	t.Run("setup links make one first admin", func(t *testing.T) {
		s := open(t)
		for _, h := range []string{"setup-a", "setup-b"} {
			inv := &passkey.Invite{Kind: "setup", Role: passkey.RoleAdmin, CreatedBy: "keyway", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
			if err := s.CreateInvite(ctx, []byte(h), inv, event(audit.InviteCreated, "setup")); err != nil {
				t.Fatal(err)
			}
		}
		got := race(func(i int) error {
			id := fmt.Sprintf("u%d", i)
			link := []string{"setup-a", "setup-b"}[i%2]
			return s.CreateUser(ctx, admin(id), cred("c"+id, id), setupUse(link),
				[]audit.Event{event(audit.UserCreated, "user:"+id)})
		})
		if lost, other := got.split(passkey.ErrSignUpClosed); got.ok != 1 || lost != parallel-1 {
			t.Fatalf("sign-ups racing on setup links: %d made it, %d saw ErrSignUpClosed; other errors: %v", got.ok, lost, other)
		}
		if n, err := s.CountAdmins(ctx); err != nil || n != 1 {
			t.Fatalf("admins: %d (%v), want 1", n, err)
		}
		// A setup link made after the first admin exists makes no second.
		late := &passkey.Invite{Kind: "setup", Role: passkey.RoleAdmin, CreatedBy: "keyway", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateInvite(ctx, []byte("setup-late"), late, event(audit.InviteCreated, "setup")); err != nil {
			t.Fatal(err)
		}
		err := s.CreateUser(ctx, admin("late"), cred("clate", "late"), setupUse("setup-late"), nil)
		if !errors.Is(err, passkey.ErrSignUpClosed) {
			t.Fatalf("a setup link once an admin exists: %v, want ErrSignUpClosed", err)
		}
	})

	t.Run("constraint violations are the domain's errors and leave nothing", func(t *testing.T) {
		s := open(t)
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), nil, []audit.Event{event(audit.UserCreated, "user:u1")}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateUser(ctx, user("u2", "ada"), cred("c2", "u2"), nil, []audit.Event{event(audit.UserCreated, "user:u2")}); !errors.Is(err, passkey.ErrUsernameTaken) {
			t.Fatalf("a taken username: %v, want ErrUsernameTaken", err)
		}
		if err := s.CreateUser(ctx, user("u3", "bea"), cred("c1", "u3"), nil, []audit.Event{event(audit.UserCreated, "user:u3")}); !errors.Is(err, passkey.ErrCeremony) {
			t.Fatalf("a credential ID registered twice: %v, want ErrCeremony", err)
		}
		users, err := s.ListUsers(ctx)
		if err != nil || len(users) != 1 {
			t.Fatalf("users after two refused sign-ups: %d (%v), want 1", len(users), err)
		}
		recent, err := s.RecentAuditEvents(ctx, 10)
		if err != nil || len(recent) != 1 || recent[0].Event.Subject != "user:u1" {
			t.Fatalf("audit after two refused sign-ups: %+v (%v): a refused change writes no event", recent, err)
		}
	})

	t.Run("a link of another role is not spent", func(t *testing.T) {
		s := open(t)
		inv := &passkey.Invite{Kind: "invite", Role: passkey.RoleUser, CreatedBy: "admin", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateInvite(ctx, []byte("link"), inv, event(audit.InviteCreated, "invite")); err != nil {
			t.Fatal(err)
		}
		use := &passkey.InviteUse{Hash: []byte("link"), Kind: "invite", Role: passkey.RoleAdmin, Now: t0}
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), use, nil); !errors.Is(err, passkey.ErrSignUpClosed) {
			t.Fatalf("a user link spent as an admin's: %v, want ErrSignUpClosed", err)
		}
		if _, err := s.PeekInvite(ctx, []byte("link"), "invite", t0); err != nil {
			t.Fatalf("the refused spend used the link: %v", err)
		}
		expired := &passkey.InviteUse{Hash: []byte("link"), Kind: "invite", Role: passkey.RoleUser, Now: t0.Add(2 * time.Hour)}
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), expired, nil); !errors.Is(err, passkey.ErrSignUpClosed) {
			t.Fatalf("an expired link: %v, want ErrSignUpClosed", err)
		}
		if users, _ := s.ListUsers(ctx); len(users) != 0 {
			t.Fatalf("refused sign-ups made %d users", len(users))
		}
	})

	t.Run("a passkey is removed only if the rule allows what is left, one removal at a time", func(t *testing.T) {
		s := open(t)
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.AddCredential(ctx, cred("c2", "u1"), event(audit.PasskeyAdded, "user:u1")); err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceRecoveryCodes(ctx, "u1", [][]byte{[]byte("code-a"), []byte("code-b")}, event(audit.RecoveryCodesIssued, "user:u1")); err != nil {
			t.Fatal(err)
		}
		var seen passkey.Remaining
		refuse := errors.New("refused")
		if _, err := s.RemoveCredential(ctx, "u1", []byte("c1"), func(r passkey.Remaining) error { seen = r; return refuse }, event(audit.PasskeyRemoved, "user:u1")); !errors.Is(err, refuse) {
			t.Fatalf("a refused removal: %v, want the rule's error", err)
		}
		if seen != (passkey.Remaining{Passkeys: 1, RecoveryCodes: 2}) {
			t.Fatalf("the rule saw %+v, want 1 passkey and 2 codes left", seen)
		}
		if cs, _ := s.Credentials(ctx, "u1"); len(cs) != 2 {
			t.Fatalf("a refused removal removed a passkey: %d left", len(cs))
		}
		if _, err := s.RemoveCredential(ctx, "u1", []byte("nope"), func(passkey.Remaining) error { return nil }, event(audit.PasskeyRemoved, "user:u1")); !errors.Is(err, passkey.ErrNotFound) {
			t.Fatalf("removing an unknown passkey: %v, want ErrNotFound", err)
		}
		// Two removals race under "keep one passkey": one wins.
		keepOne := func(r passkey.Remaining) error {
			if r.Passkeys == 0 {
				return passkey.ErrLastPasskey
			}
			return nil
		}
		got := race(func(i int) error {
			_, err := s.RemoveCredential(ctx, "u1", []byte([]string{"c1", "c2"}[i%2]), keepOne, event(audit.PasskeyRemoved, "user:u1"))
			return err
		})
		if cs, _ := s.Credentials(ctx, "u1"); len(cs) != 1 || got.ok != 1 {
			t.Fatalf("racing removals under keep-one: %d succeeded, %d passkeys left (want 1 and 1); errors: %v", got.ok, len(cs), got.errs)
		}
	})

	t.Run("sessions: a replaced token stops at once, a removed passkey ends its sessions", func(t *testing.T) {
		s := open(t)
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		ses := &session.Session{ID: "ses_1", UserID: "u1", CredentialID: []byte("c1"), CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateSession(ctx, ses, []byte("token-1"), event(audit.SessionCreated, "user:u1")); err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceSessionToken(ctx, "ses_1", []byte("token-2"), t0, event(audit.SessionStepUp, "user:u1")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionByToken(ctx, []byte("token-1")); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("the replaced token: %v, want ErrNotFound", err)
		}
		if got, err := s.SessionByToken(ctx, []byte("token-2")); err != nil || got.ID != "ses_1" {
			t.Fatalf("the new token: %+v %v", got, err)
		}
		if err := s.TouchSession(ctx, "ses_1", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchSession(ctx, "ses_1", t0); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.SessionByToken(ctx, []byte("token-2")); got == nil || !got.LastSeenAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("last seen moved back: %+v", got)
		}
		if err := s.ReplaceRecoveryCodes(ctx, "u1", [][]byte{[]byte("h")}, event(audit.RecoveryCodesIssued, "user:u1")); err != nil {
			t.Fatal(err)
		}
		if n, err := s.RemoveCredential(ctx, "u1", []byte("c1"), func(passkey.Remaining) error { return nil }, event(audit.PasskeyRemoved, "user:u1")); err != nil || n != 1 {
			t.Fatalf("removing the passkey ended %d sessions (%v), want 1", n, err)
		}
		if _, err := s.SessionByToken(ctx, []byte("token-2")); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("a session of a removed passkey: %v, want ErrNotFound", err)
		}
	})

	t.Run("sessions: read with their person, exactly as the two look-ups read them", func(t *testing.T) {
		s := open(t)
		u := user("u1", "ada")
		u.DisplayName = "Ada Lovelace"
		if err := s.CreateUser(ctx, u, cred("c1", "u1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateUser(ctx, user("u2", "bob"), cred("c2", "u2"), nil, nil); err != nil {
			t.Fatal(err)
		}
		for i, id := range []string{"u1", "u2"} {
			ses := &session.Session{ID: "ses_" + id, UserID: id, CredentialID: []byte("c" + id[1:]), CreatedAt: t0,
				LastSeenAt: t0.Add(time.Duration(i) * time.Second), ExpiresAt: t0.Add(time.Hour), StepUpAt: t0, IP: "192.0.2.1", UserAgent: "test"}
			if err := s.CreateSession(ctx, ses, []byte("token-"+id), event(audit.SessionCreated, "user:"+id)); err != nil {
				t.Fatal(err)
			}
		}
		same := func(token string) {
			t.Helper()
			gotS, gotU, err := s.SessionWithUser(ctx, []byte(token))
			if err != nil {
				t.Fatalf("%s: %v", token, err)
			}
			wantS, _ := s.SessionByToken(ctx, []byte(token))
			wantU, _ := s.UserByID(ctx, wantS.UserID)
			if !reflect.DeepEqual(gotS, wantS) || !reflect.DeepEqual(gotU, wantU) {
				t.Fatalf("%s: read together\n  %+v\n  %+v\nread apart\n  %+v\n  %+v", token, gotS, gotU, wantS, wantU)
			}
		}
		same("token-u1")
		same("token-u2")
		if _, u, _ := s.SessionWithUser(ctx, []byte("token-u2")); u.ID != "u2" || u.DisplayName != "bob" {
			t.Fatalf("the second session's person: %+v", u)
		}
		if err := s.SetUserRoles(ctx, "u1", []string{"billing", "ops"}, event(audit.UserRolesChanged, "user:u1")); err != nil {
			t.Fatal(err)
		}
		if err := exec(ctx, s, `UPDATE users SET disabled_at = 1700000000000000000 WHERE id = 'u1'`); err != nil {
			t.Fatal(err)
		}
		same("token-u1")
		if _, u, _ := s.SessionWithUser(ctx, []byte("token-u1")); fmt.Sprint(u.Roles) != "[billing ops]" || u.DisabledAt.IsZero() || u.DisplayName != "Ada Lovelace" {
			t.Fatalf("roles, disablement and name, read with the session: %+v", u)
		}
		if err := s.ReplaceSessionToken(ctx, "ses_u1", []byte("token-u1b"), t0, event(audit.SessionStepUp, "user:u1")); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{"token-u1", "no-such-token"} {
			if ses, u, err := s.SessionWithUser(ctx, []byte(tok)); !errors.Is(err, session.ErrNotFound) || ses != nil || u != nil {
				t.Fatalf("%s: %+v %+v %v, want ErrNotFound", tok, ses, u, err)
			}
		}
		same("token-u1b")
		if err := s.EraseUser(ctx, "u2", event(audit.UserErased, "user:u2")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.SessionWithUser(ctx, []byte("token-u2")); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("a session of an erased person: %v, want ErrNotFound", err)
		}
	})

	t.Run("api keys: every change is in the feed, in order, with its audit event", func(t *testing.T) {
		s := open(t)
		start, err := s.LatestChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k := &apikey.Key{ID: "k1", Name: "k", Owner: "service:x", Env: apikey.EnvLive, Scopes: []string{"a"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateKey(ctx, k, bytes.Repeat([]byte{1}, 32), event(audit.KeyCreated, "key_k1")); err != nil {
			t.Fatal(err)
		}
		if err := s.RotateKey(ctx, "k1", bytes.Repeat([]byte{2}, 32), t0.Add(time.Minute), time.Time{}, event(audit.KeyRotated, "key_k1")); err != nil {
			t.Fatal(err)
		}
		refused := errors.New("refused")
		if err := s.UpdateKey(ctx, "k1", func(k *apikey.Key) (audit.Event, error) {
			k.Name = "changed"
			return audit.Event{}, refused
		}); !errors.Is(err, refused) {
			t.Fatalf("a refused update: %v", err)
		}
		if err := s.RevokeKey(ctx, "k1", t0, "test", event(audit.KeyRevoked, "key_k1")); err != nil {
			t.Fatal(err)
		}
		got, secrets, err := s.GetKey(ctx, "k1")
		if err != nil || got.Name != "k" || got.RevokedAt.IsZero() || len(secrets) != 2 {
			t.Fatalf("after rotate, refused update, revoke: %+v %d secrets %v", got, len(secrets), err)
		}
		changes, last, err := s.ChangesSince(ctx, start)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) < 2 || last != changes[len(changes)-1].Seq {
			t.Fatalf("feed: %+v last %d", changes, last)
		}
		for i, c := range changes {
			if c.KeyID != "k1" || (i > 0 && c.Seq <= changes[i-1].Seq) {
				t.Fatalf("feed out of order or foreign: %+v", changes)
			}
		}
		if _, _, err := s.GetKey(ctx, "nope"); !errors.Is(err, apikey.ErrNotFound) {
			t.Fatalf("an unknown key: %v, want ErrNotFound", err)
		}
		recent, err := s.RecentAuditEvents(ctx, 10)
		if err != nil || len(recent) != 3 {
			t.Fatalf("audit: %d events (%v), want 3: created, rotated, revoked (the refused update writes none)", len(recent), err)
		}
	})

	t.Run("api keys: a person's key needs the person, in its transaction", func(t *testing.T) {
		s := open(t)
		mk := func(id, owner string) error {
			k := &apikey.Key{ID: id, Name: "k", Owner: owner, Env: apikey.EnvLive, Scopes: []string{"a"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
			return s.CreateKey(ctx, k, bytes.Repeat([]byte{id[1]}, 32), event(audit.KeyCreated, "key_"+id))
		}
		if err := mk("k1", "user:gone"); !errors.Is(err, apikey.ErrBadRequest) {
			t.Fatalf("a key for a person who is not there: %v", err)
		}
		if _, _, err := s.GetKey(ctx, "k1"); !errors.Is(err, apikey.ErrNotFound) {
			t.Fatalf("the refused key was stored: %v", err)
		}
		if err := s.CreateUser(ctx, user("u9", "ida"), cred("c9", "u9"), nil, []audit.Event{event(audit.UserCreated, "user:u9")}); err != nil {
			t.Fatal(err)
		}
		if err := mk("k2", "user:u9"); err != nil {
			t.Fatalf("a key for a person who is there: %v", err)
		}
		if err := mk("k3", "service:x"); err != nil {
			t.Fatalf("a service's key: %v", err)
		}
	})

	t.Run("the audit chain holds with concurrent writers", func(t *testing.T) {
		s := open(t)
		got := race(func(i int) error {
			id := fmt.Sprintf("u%d", i)
			return s.CreateUser(ctx, user(id, id), cred("c"+id, id), nil,
				[]audit.Event{event(audit.UserCreated, "user:"+id), event(audit.PasskeyAdded, "user:"+id)})
		})
		if got.ok != parallel {
			t.Fatalf("concurrent sign-ups: %d of %d; errors: %v", got.ok, parallel, got.errs)
		}
		rep, err := audit.VerifyTrail(ctx, s, audit.VerifyOptions{})
		if err != nil || rep.Broken != nil || rep.Events != 2*parallel {
			t.Fatalf("trail after concurrent writes: %+v %v, want %d events and no break", rep, err, 2*parallel)
		}
	})

	t.Run("api keys: a rotation keeps or sets the expiry, and retires the old secret", func(t *testing.T) {
		s := open(t)
		k := &apikey.Key{ID: "k1", Name: "k", Owner: "service:x", Env: apikey.EnvLive, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateKey(ctx, k, bytes.Repeat([]byte{1}, 32), event(audit.KeyCreated, "key_k1")); err != nil {
			t.Fatal(err)
		}
		if err := s.RotateKey(ctx, "k1", bytes.Repeat([]byte{2}, 32), t0.Add(time.Minute), time.Time{}, event(audit.KeyRotated, "key_k1")); err != nil {
			t.Fatal(err)
		}
		got, secrets, err := s.GetKey(ctx, "k1")
		if err != nil || !got.ExpiresAt.Equal(t0.Add(time.Hour)) || len(secrets) != 2 {
			t.Fatalf("a rotation without an expiry: %v %d secrets %v", got.ExpiresAt, len(secrets), err)
		}
		retired := 0
		for _, sec := range secrets {
			if sec.NotAfter.Equal(t0.Add(time.Minute)) {
				retired++
			} else if !sec.NotAfter.IsZero() {
				t.Fatalf("a secret retired at %v", sec.NotAfter)
			}
		}
		if retired != 1 {
			t.Fatalf("%d secrets retired at the overlap's end, want 1", retired)
		}
		if !got.OldSecretUntil.Equal(t0.Add(time.Minute)) {
			t.Fatalf("GetKey's OldSecretUntil %v, want the retired secret's end", got.OldSecretUntil)
		}
		if list, err := s.ListKeys(ctx, ""); err != nil || len(list) != 1 || !list[0].OldSecretUntil.Equal(t0.Add(time.Minute)) {
			t.Fatalf("ListKeys' OldSecretUntil: %v", err)
		}
		later := t0.Add(30 * 24 * time.Hour)
		if err := s.RotateKey(ctx, "k1", bytes.Repeat([]byte{3}, 32), t0.Add(time.Minute), later, event(audit.KeyRotated, "key_k1")); err != nil {
			t.Fatal(err)
		}
		if got, _, err := s.GetKey(ctx, "k1"); err != nil || !got.ExpiresAt.Equal(later) {
			t.Fatalf("a rotation with a new expiry: %v %v", got.ExpiresAt, err)
		}
		if err := s.RotateKey(ctx, "nope", bytes.Repeat([]byte{4}, 32), t0, later, event(audit.KeyRotated, "key_nope")); !errors.Is(err, apikey.ErrNotFound) {
			t.Fatalf("rotating a key that does not exist: %v", err)
		}
	})

	t.Run("roles: set with their event, read by every look-up, none by default", func(t *testing.T) {
		s := open(t)
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if u, err := s.UserByID(ctx, "u1"); err != nil || len(u.Roles) != 0 {
			t.Fatalf("a new user's roles: %v %v", u.Roles, err)
		}
		if err := s.SetUserRoles(ctx, "u1", []string{"billing", "ops"}, event(audit.UserRolesChanged, "user:u1")); err != nil {
			t.Fatal(err)
		}
		byID, _ := s.UserByID(ctx, "u1")
		byName, _ := s.UserByUsername(ctx, "ada")
		byHandle, _ := s.UserByHandle(ctx, []byte("handle-u1"))
		all, _ := s.ListUsers(ctx)
		for name, u := range map[string]*passkey.User{"UserByID": byID, "UserByUsername": byName, "UserByHandle": byHandle, "ListUsers": all[0]} {
			if u == nil || fmt.Sprint(u.Roles) != "[billing ops]" {
				t.Errorf("%s: roles %v, want [billing ops]", name, u)
			}
		}
		if err := s.SetUserRoles(ctx, "u1", nil, event(audit.UserRolesChanged, "user:u1")); err != nil {
			t.Fatal(err)
		}
		if u, _ := s.UserByID(ctx, "u1"); len(u.Roles) != 0 {
			t.Fatalf("roles after clearing: %v", u.Roles)
		}
		if err := s.SetUserRoles(ctx, "nobody", []string{"x"}, event(audit.UserRolesChanged, "user:nobody")); !errors.Is(err, passkey.ErrNotFound) {
			t.Fatalf("roles of nobody: %v", err)
		}
		rep, err := audit.VerifyTrail(ctx, s, audit.VerifyOptions{})
		if err != nil || rep.Events != 2 {
			t.Fatalf("audit after two role changes and a refused one: %+v %v", rep, err)
		}
	})

	t.Run("the audit trail is append-only", func(t *testing.T) {
		s := open(t)
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), nil, []audit.Event{event(audit.UserCreated, "user:u1")}); err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{
			"DELETE FROM audit_events",
			"UPDATE audit_events SET actor = 'someone-else'",
			"UPDATE audit_events SET seq = seq + 1",
		} {
			if err := exec(ctx, s, stmt); err == nil {
				t.Errorf("%q succeeded on the audit trail", stmt)
			}
		}
		rep, err := audit.VerifyTrail(ctx, s, audit.VerifyOptions{})
		if err != nil || rep.Broken != nil || rep.Events != 1 {
			t.Fatalf("trail after edits were refused: %+v %v", rep, err)
		}
	})

	t.Run("audit checkpoints: signed heads are kept once, append-only, and verify the trail", func(t *testing.T) {
		s := open(t)
		signer, err := audit.NewSigner(bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		if seq, head, err := s.AuditHead(ctx); err != nil || seq != 0 || head != nil {
			t.Fatalf("head of an empty trail: %d %x %v", seq, head, err)
		}
		cp := &audit.Checkpointer{Store: s, Signer: signer}
		for i := range 3 {
			id := fmt.Sprintf("u%d", i)
			if err := s.CreateUser(ctx, user(id, id), cred("c"+id, id), nil, []audit.Event{event(audit.UserCreated, "user:"+id)}); err != nil {
				t.Fatal(err)
			}
			if c, err := cp.Sign(ctx); err != nil || c == nil || c.Seq != int64(i+1) {
				t.Fatalf("checkpoint %d: %+v %v", i, c, err)
			}
		}
		// A second node signing the same head is not an error and adds nothing.
		other := &audit.Checkpointer{Store: s, Signer: signer}
		if _, err := other.Sign(ctx); err != nil {
			t.Fatalf("a second signer of the same head: %v", err)
		}
		if c, err := cp.Sign(ctx); err != nil || c != nil {
			t.Fatalf("an unmoved head was signed again: %+v %v", c, err)
		}
		got, err := s.AuditCheckpoints(ctx, 1, 10)
		if err != nil || len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 || !got[1].Verify(signer.PublicKey()) {
			t.Fatalf("checkpoints after 1: %+v %v", got, err)
		}
		for _, stmt := range []string{"DELETE FROM audit_checkpoints", "UPDATE audit_checkpoints SET seq = seq + 10"} {
			if err := exec(ctx, s, stmt); err == nil {
				t.Errorf("%q succeeded on the checkpoints", stmt)
			}
		}
		rep, err := audit.VerifyTrail(ctx, s, audit.VerifyOptions{Checkpoints: s, PublicKey: signer.PublicKey(), RequireCheckpoint: true})
		if err != nil || rep.Broken != nil || rep.Events != 3 || rep.Checkpoints != 3 || rep.Unsigned != 0 {
			t.Fatalf("trail with checkpoints: %+v %v", rep, err)
		}
	})

	t.Run("personal fields are sealed, bound to their row, and found by keyed hash", func(t *testing.T) {
		s := open(t)
		ada := user("u1", "ada.lovelace")
		ada.DisplayName = "Ada Lovelace"
		if err := s.CreateUser(ctx, ada, cred("c1", "u1"), nil, []audit.Event{event(audit.UserCreated, "user:u1")}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateUser(ctx, user("u2", "bob"), cred("c2", "u2"), nil, []audit.Event{event(audit.UserCreated, "user:u2")}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateUser(ctx, user("u3", "ada.lovelace"), cred("c3", "u3"), nil, nil); !errors.Is(err, passkey.ErrUsernameTaken) {
			t.Fatalf("a taken username, sealed: %v", err)
		}
		got, err := s.UserByUsername(ctx, "ada.lovelace")
		if err != nil || got.ID != "u1" || got.DisplayName != "Ada Lovelace" || got.Username != "ada.lovelace" {
			t.Fatalf("by username: %+v %v", got, err)
		}
		creds, err := s.Credentials(ctx, "u1")
		if err != nil || len(creds) != 1 || creds[0].Name != "key" {
			t.Fatalf("credentials: %+v %v", creds, err)
		}
		// A ciphertext moved to another row does not open.
		if err := exec(ctx, s, "UPDATE users SET display_name_sealed = (SELECT display_name_sealed FROM users WHERE id = 'u1') WHERE id = 'u2'"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UserByID(ctx, "u2"); !errors.Is(err, crypt.ErrOpen) {
			t.Fatalf("a display name moved to another person: %v, want crypt.ErrOpen", err)
		}
		// Rows written in clear by an older keyway are sealed when a
		// store is given its sealer.
		if err := s.CreateUser(ctx, user("u9", "x"), cred("c9", "u9"), nil, nil); err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{
			"UPDATE users SET username = 'grace', display_name = 'Grace Hopper', username_sealed = NULL, display_name_sealed = NULL WHERE id = 'u9'",
			"UPDATE credentials SET name = 'Grace''s key', name_sealed = NULL WHERE user_id = 'u9'",
		} {
			if err := exec(ctx, s, stmt); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.UseSealer(ctx, s.Sealer()); err != nil {
			t.Fatal(err)
		}
		g, err := s.UserByUsername(ctx, "grace")
		if err != nil || g.DisplayName != "Grace Hopper" {
			t.Fatalf("an older row after sealing: %+v %v", g, err)
		}
		if gc, err := s.Credentials(ctx, "u9"); err != nil || len(gc) != 1 || gc[0].Name != "Grace's key" {
			t.Fatalf("an older passkey name after sealing: %+v %v", gc, err)
		}
	})

	t.Run("sources: the most recent are kept, and only while they are recent", func(t *testing.T) {
		s := open(t)
		if err := s.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		h := func(i int) []byte { return []byte(fmt.Sprintf("source-hash-%02d", i)) }
		for i := range 5 {
			if err := s.RememberSource(ctx, "u1", h(i), t0.Add(time.Duration(i)*time.Minute), 3); err != nil {
				t.Fatal(err)
			}
		}
		// Seen again, an old source is recent again, and last_seen never
		// moves back.
		if err := s.RememberSource(ctx, "u1", h(3), t0.Add(time.Hour), 3); err != nil {
			t.Fatal(err)
		}
		if err := s.RememberSource(ctx, "u1", h(3), t0, 3); err != nil {
			t.Fatal(err)
		}
		known := func(i int, since time.Time) bool {
			t.Helper()
			ok, err := s.KnownSource(ctx, "u1", h(i), since)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		for i, want := range []bool{false, false, true, true, true} {
			if got := known(i, t0); got != want {
				t.Errorf("source %d known = %v, want %v (keep the 3 most recent)", i, got, want)
			}
		}
		if known(4, t0.Add(30*time.Minute)) || !known(3, t0.Add(30*time.Minute)) {
			t.Error("since is not applied to last_seen")
		}
		if ok, err := s.KnownSource(ctx, "u2", h(3), t0); ok || err != nil {
			t.Errorf("another user's source: %v %v", ok, err)
		}
	})
}

// outcome counts how a race ended.
type outcome struct {
	ok   int
	errs []error
}

// split counts the errors that are want and returns the others.
func (o outcome) split(want error) (n int, other []error) {
	for _, err := range o.errs {
		if errors.Is(err, want) {
			n++
		} else {
			other = append(other, err)
		}
	}
	return n, other
}

// race runs f parallel times at once and counts the outcomes.
func race(f func(i int) error) outcome {
	var (
		mu    sync.Mutex
		o     outcome
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range parallel {
		wg.Go(func() {
			<-start
			err := f(i)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				o.ok++
			} else {
				o.errs = append(o.errs, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return o
}
