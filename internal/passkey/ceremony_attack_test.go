package passkey_test

// An adversarial review of the passkey ceremonies: responses built and
// signed by hand with the credential's real key, so that every field can
// be what an attacker chooses (origins, iframes, flags, counters, user
// handles, ceremony kinds). Each test asserts the secure behaviour; those
// of its findings failed before their fixes (a refused clone writing its
// flags and a use, closed sign-up taking invites).

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/fxamacker/cbor/v2"
	"github.com/keywayhq/keyway/internal/passkey"
)

// Authenticator data flags (WebAuthn L3 §6.1).
const (
	flagUP = 0x01
	flagUV = 0x04
	flagBE = 0x08
	flagBS = 0x10
)

// forged describes one hand-built assertion: what a browser (or an
// attacker's script) could put in clientDataJSON and authenticatorData.
type forged struct {
	typ         string
	origin      string
	crossOrigin bool
	topOrigin   string
	rpID        string
	flags       byte
	counter     uint32
	userHandle  []byte
	challenge   []byte // nil: the one in the options
}

// forgedClientData is the client data JSON f describes, with the
// options' challenge unless f names another.
func forgedClientData(t testing.TB, f forged, challenge []byte) []byte {
	t.Helper()
	if f.challenge != nil {
		challenge = f.challenge
	}
	cd := map[string]any{"type": f.typ, "challenge": base64.RawURLEncoding.EncodeToString(challenge), "origin": f.origin}
	if f.crossOrigin {
		cd["crossOrigin"] = true
	}
	if f.topOrigin != "" {
		cd["topOrigin"] = f.topOrigin
	}
	cdj, err := json.Marshal(cd)
	if err != nil {
		t.Fatal(err)
	}
	return cdj
}

// forgedAuthData is the start of the authenticator data f describes: RP
// ID hash, flags (with extra), counter.
func forgedAuthData(f forged, extra byte) []byte {
	rpHash := sha256.Sum256([]byte(f.rpID))
	authData := append([]byte{}, rpHash[:]...)
	authData = append(authData, f.flags|extra)
	return binary.BigEndian.AppendUint32(authData, f.counter)
}

// forgeAssertion signs an assertion with d's key over exactly the client
// data and authenticator data f describes, for the options o.
func forgeAssertion(t testing.TB, d *device, o any, f forged) []byte {
	t.Helper()
	ao, err := virtualwebauthn.ParseAssertionOptions(optionsJSON(t, o))
	if err != nil {
		t.Fatal(err)
	}
	cdj := forgedClientData(t, f, ao.Challenge)
	authData := forgedAuthData(f, 0)
	cdHash := sha256.Sum256(cdj)
	signed := append(append([]byte{}, authData...), cdHash[:]...)
	digest := sha256.Sum256(signed)
	sig, err := d.cred.Key.Sign(digest[:])
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	body, err := json.Marshal(map[string]any{
		"type": "public-key", "id": b64(d.cred.ID), "rawId": b64(d.cred.ID),
		"response": map[string]string{
			"authenticatorData": b64(authData), "clientDataJSON": b64(cdj),
			"signature": b64(sig), "userHandle": b64(f.userHandle),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// good is an assertion every check should accept.
func good(u *passkey.User, counter uint32) forged {
	return forged{typ: "webauthn.get", origin: origin, rpID: "localhost", flags: flagUP | flagUV, counter: counter, userHandle: u.Handle}
}

func TestPasskeyAssertionChecks(t *testing.T) {
	e := newEnv(t)
	u, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	counter := uint32(10)
	try := func(mut func(*forged)) error {
		o, id, err := e.svc.BeginLogin(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		counter++
		f := good(u, counter)
		mut(&f)
		_, err = e.svc.FinishLogin(ctx, id, forgeAssertion(t, d, o, f))
		return err
	}
	// The forger itself is sound: an honest assertion signs in.
	if err := try(func(*forged) {}); err != nil {
		t.Fatalf("honest hand-built assertion refused: %v", err)
	}
	for name, mut := range map[string]func(*forged){
		"http origin":                 func(f *forged) { f.origin = "http://localhost:8443" },
		"subdomain origin":            func(f *forged) { f.origin = "https://evil.localhost:8443" },
		"default port":                func(f *forged) { f.origin = "https://localhost" },
		"explicit 443":                func(f *forged) { f.origin = "https://localhost:443" },
		"other port":                  func(f *forged) { f.origin = "https://localhost:8444" },
		"origin with path":            func(f *forged) { f.origin = "https://localhost:8443.evil.example" },
		"cross-origin iframe":         func(f *forged) { f.crossOrigin = true },
		"cross-origin, evil top":      func(f *forged) { f.crossOrigin, f.topOrigin = true, "https://evil.example" },
		"cross-origin, own top":       func(f *forged) { f.crossOrigin, f.topOrigin = true, origin },
		"topOrigin without cross":     func(f *forged) { f.topOrigin = "https://evil.example" },
		"create type":                 func(f *forged) { f.typ = "webauthn.create" },
		"other rp id":                 func(f *forged) { f.rpID = "evil.localhost" },
		"parent rp id":                func(f *forged) { f.rpID = "" },
		"no user verification":        func(f *forged) { f.flags = flagUP },
		"no user presence":            func(f *forged) { f.flags = flagUV },
		"BS without BE":               func(f *forged) { f.flags |= flagBS },
		"another challenge":           func(f *forged) { f.challenge = []byte("0123456789abcdef0123456789abcdef") },
		"counter replayed (equal)":    func(f *forged) { f.counter = 11 }, // the stored one (the honest sign-in)
		"counter went back":           func(f *forged) { f.counter = 3 },
		"empty user handle (no user)": func(f *forged) { f.userHandle = nil },
	} {
		t.Run(name, func(t *testing.T) {
			if err := try(mut); err == nil {
				t.Fatalf("%s: sign-in accepted", name)
			}
		})
	}
}

// A credential of alice presented with bob's user handle must not sign
// anyone in: not bob, and not alice.
func TestPasskeyUserHandleOfAnotherUser(t *testing.T) {
	e := newEnv(t)
	_, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	bob, _ := e.signUp("bob", virtualwebauthn.AuthenticatorOptions{})
	d.auth.Options.UserHandle = bob.Handle
	for _, name := range []string{"", "bob", "alice"} {
		if res, err := e.login(d, name); err == nil {
			t.Fatalf("login(%q) with alice's passkey and bob's handle signed in %s", name, res.User.Username)
		}
	}
}

// A credential ID belongs to one account only (WebAuthn L3 §7.1 step 26),
// and to that account once.
func TestPasskeyCredentialIDOnTwoAccounts(t *testing.T) {
	e := newEnv(t)
	alice, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	// bob signs up with the same credential (ID and key) as alice's.
	o, id, err := e.svc.BeginSignUp(ctx, "bob", "", "")
	if err != nil {
		t.Fatal(err)
	}
	twin := &device{auth: virtualwebauthn.NewAuthenticator(), cred: d.cred}
	if _, _, err := e.svc.FinishRegistration(ctx, id, "", twin.attest(t, o)); err == nil {
		t.Fatal("a credential ID already registered to alice was registered to bob")
	}
	if _, err := e.svc.User(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	// alice adds the same credential again (a client ignoring excludeCredentials).
	o, id, err = e.svc.BeginAddPasskey(ctx, alice.ID, "again")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.FinishRegistration(ctx, id, alice.ID, twin.attest(t, o)); err == nil {
		t.Fatal("the same credential was registered twice to alice")
	}
	creds, _ := e.svc.Credentials(ctx, alice.ID)
	if len(creds) != 1 {
		t.Fatalf("alice has %d passkeys", len(creds))
	}
}

// A ceremony is of one kind and one user, and is spent by the first try.
func TestPasskeyCeremonyKindAndOwner(t *testing.T) {
	e := newEnv(t)
	alice, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	bob, bd := e.signUp("bob", virtualwebauthn.AuthenticatorOptions{})

	// A login ceremony finished as a step-up, and then as the login it was.
	o, id, _ := e.svc.BeginLogin(ctx, "")
	body := d.assert(t, o)
	if _, err := e.svc.FinishStepUp(ctx, id, alice.ID, body); err == nil {
		t.Fatal("a login ceremony finished a step-up")
	}
	if _, err := e.svc.FinishLogin(ctx, id, body); err == nil {
		t.Fatal("a ceremony refused once (wrong kind) was usable again")
	}
	// A step-up ceremony finished as a login.
	o, id, _ = e.svc.BeginStepUp(ctx, alice.ID)
	if _, err := e.svc.FinishLogin(ctx, id, d.assert(t, o)); err == nil {
		t.Fatal("a step-up ceremony finished a login")
	}
	// alice's step-up ceremony finished by bob, with bob's passkey.
	o, id, _ = e.svc.BeginStepUp(ctx, alice.ID)
	if _, err := e.svc.FinishStepUp(ctx, id, bob.ID, bd.assert(t, o)); err == nil {
		t.Fatal("bob finished alice's step-up")
	}
	// bob's step-up answered with alice's passkey.
	o, id, _ = e.svc.BeginStepUp(ctx, bob.ID)
	if _, err := e.svc.FinishStepUp(ctx, id, bob.ID, d.assert(t, o)); err == nil {
		t.Fatal("alice's passkey stepped bob up")
	}
	// A registration ceremony finished as a login, and a login one as a registration.
	o, id, _ = e.svc.BeginAddPasskey(ctx, alice.ID, "")
	if _, err := e.svc.FinishLogin(ctx, id, newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o)); err == nil {
		t.Fatal("a registration ceremony finished a login")
	}
	lo, lid, _ := e.svc.BeginLogin(ctx, "")
	if _, _, err := e.svc.FinishRegistration(ctx, lid, alice.ID, d.assert(t, lo)); err == nil {
		t.Fatal("a login ceremony finished a registration")
	}
	// alice's add-passkey ceremony finished by bob, or by nobody.
	o, id, _ = e.svc.BeginAddPasskey(ctx, alice.ID, "")
	nd := newDevice(virtualwebauthn.AuthenticatorOptions{})
	if _, _, err := e.svc.FinishRegistration(ctx, id, bob.ID, nd.attest(t, o)); err == nil {
		t.Fatal("bob finished alice's add-passkey ceremony")
	}
	o, id, _ = e.svc.BeginAddPasskey(ctx, alice.ID, "")
	if _, _, err := e.svc.FinishRegistration(ctx, id, "", nd.attest(t, o)); err == nil {
		t.Fatal("an add-passkey ceremony finished with no one signed in")
	}
	// A sign-up ceremony finished by someone signed in.
	o, id, _ = e.svc.BeginSignUp(ctx, "carol", "", "")
	if _, _, err := e.svc.FinishRegistration(ctx, id, alice.ID, nd.attest(t, o)); err == nil {
		t.Fatal("a sign-up ceremony finished by a signed-in user")
	}
}

// The same assertion twice, on the same ceremony or a new one; a ceremony
// after its TTL.
func TestPasskeyReplayAndExpiry(t *testing.T) {
	e := newEnv(t)
	_, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	o, id, _ := e.svc.BeginLogin(ctx, "")
	body := d.assert(t, o)
	if _, err := e.svc.FinishLogin(ctx, id, body); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.FinishLogin(ctx, id, body); err == nil {
		t.Fatal("the same ceremony finished twice")
	}
	_, id2, _ := e.svc.BeginLogin(ctx, "")
	if _, err := e.svc.FinishLogin(ctx, id2, body); err == nil {
		t.Fatal("an old assertion finished a new ceremony")
	}
	// Expiry, for each kind, by the service's clock.
	o, id, _ = e.svc.BeginLogin(ctx, "")
	body = d.assert(t, o)
	e.clk.Add(5*time.Minute + time.Second)
	if _, err := e.svc.FinishLogin(ctx, id, body); err == nil {
		t.Fatal("an expired login ceremony finished")
	}
	o, id, _ = e.svc.BeginSignUp(ctx, "dan", "", "")
	body = newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o)
	e.clk.Add(5*time.Minute + time.Second)
	if _, _, err := e.svc.FinishRegistration(ctx, id, "", body); err == nil {
		t.Fatal("an expired sign-up ceremony finished")
	}
}

// A clone (counter at or below the stored one) is refused, and cannot
// reset the stored counter for the next try.
func TestPasskeyClonedAuthenticator(t *testing.T) {
	e := newEnv(t)
	u, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	for range 3 {
		if _, err := e.login(d, ""); err != nil {
			t.Fatal(err)
		}
	}
	stored := d.cred.Counter // 4 after sign-up and three sign-ins
	clone := &device{auth: d.auth, cred: d.cred}
	clone.cred.Counter = 1
	if _, err := e.login(clone, ""); !errors.Is(err, passkey.ErrCloned) {
		t.Fatalf("clone with counter 2 < %d: %v", stored, err)
	}
	clone.cred.Counter = stored - 1 // presents exactly the stored value
	if _, err := e.login(clone, ""); !errors.Is(err, passkey.ErrCloned) {
		t.Fatalf("clone replaying the stored counter: %v", err)
	}
	creds, _ := e.svc.Credentials(ctx, u.ID)
	if creds[0].SignCount != stored || !creds[0].CloneWarning {
		t.Fatalf("after clone attempts: count %d (want %d), warning %v", creds[0].SignCount, stored, creds[0].CloneWarning)
	}
	// Step-up is held to the same policy.
	o, id, _ := e.svc.BeginStepUp(ctx, u.ID)
	clone.cred.Counter = 1
	if _, err := e.svc.FinishStepUp(ctx, id, u.ID, clone.assert(t, o)); !errors.Is(err, passkey.ErrCloned) {
		t.Fatalf("clone stepping up: %v", err)
	}
}

// A setup or invite link makes one account, even when two sign-ups were
// begun with it.
func TestPasskeyOneTimeLinksAcrossParallelSignUps(t *testing.T) {
	for _, kind := range []string{"setup", "invite"} {
		t.Run(kind, func(t *testing.T) {
			mode := passkey.SignUpClosed
			if kind == "invite" {
				mode = passkey.SignUpInvite // closed takes no invites
			}
			e := newEnv(t, func(c *passkey.Config) { c.SignUp = mode })
			role := passkey.RoleAdmin
			tok, err := e.svc.CreateLink(ctx, kind, "", role, "system", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			o1, id1, err := e.svc.BeginSignUp(ctx, "root1", "", tok)
			if err != nil {
				t.Fatal(err)
			}
			o2, id2, err := e.svc.BeginSignUp(ctx, "root2", "", tok)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.svc.FinishRegistration(ctx, id1, "", newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o1)); err != nil {
				t.Fatal(err)
			}
			if u, _, err := e.svc.FinishRegistration(ctx, id2, "", newDevice(virtualwebauthn.AuthenticatorOptions{}).attest(t, o2)); err == nil {
				t.Fatalf("one %s link made two accounts (second: %s, role %s)", kind, u.Username, u.Role)
			}
		})
	}
}

// A recovery code works once, for its own account only; unknown user and
// wrong code are the same error.
func TestPasskeyRecoveryCodes(t *testing.T) {
	e := newEnv(t)
	alice, _ := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	bob, _ := e.signUp("bob", virtualwebauthn.AuthenticatorOptions{})
	ac, err := e.svc.IssueRecoveryCodes(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.IssueRecoveryCodes(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UseRecoveryCode(ctx, "bob", ac[0]); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("alice's code for bob: %v", err)
	}
	if _, err := e.svc.UseRecoveryCode(ctx, "nobody", ac[0]); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := e.svc.UseRecoveryCode(ctx, "alice", ""); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("empty code: %v", err)
	}
	if u, err := e.svc.UseRecoveryCode(ctx, "ALICE", " "+ac[0]+" "); err != nil || u.ID != alice.ID {
		t.Fatalf("alice's code: %v", err)
	}
	if _, err := e.svc.UseRecoveryCode(ctx, "alice", ac[0]); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("a used code again: %v", err)
	}
	// Regenerating codes voids the old ones.
	if _, err := e.svc.IssueRecoveryCodes(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UseRecoveryCode(ctx, "alice", ac[1]); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("a replaced code: %v", err)
	}
}

// forgeAttestation builds a packed self-attestation with d's key over
// exactly the client data and authenticator data f describes.
func forgeAttestation(t testing.TB, d *device, o any, f forged) []byte {
	t.Helper()
	ao, err := virtualwebauthn.ParseAttestationOptions(optionsJSON(t, o))
	if err != nil {
		t.Fatal(err)
	}
	cdj := forgedClientData(t, f, ao.Challenge)
	authData := forgedAuthData(f, 0x40)              // AT: attested credential data
	authData = append(authData, make([]byte, 16)...) // AAGUID
	authData = binary.BigEndian.AppendUint16(authData, uint16(len(d.cred.ID)))
	authData = append(authData, d.cred.ID...)
	authData = append(authData, d.cred.Key.AttestationData()...)
	cdHash := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, authData...), cdHash[:]...))
	sig, err := d.cred.Key.Sign(digest[:])
	if err != nil {
		t.Fatal(err)
	}
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	att, err := em.Marshal(map[string]any{"fmt": "packed", "attStmt": map[string]any{"alg": -7, "sig": sig}, "authData": authData})
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	body, err := json.Marshal(map[string]any{
		"type": "public-key", "id": b64(d.cred.ID), "rawId": b64(d.cred.ID),
		"response": map[string]string{"attestationObject": b64(att), "clientDataJSON": b64(cdj)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestPasskeyRegistrationChecks(t *testing.T) {
	e := newEnv(t)
	alice, _ := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	try := func(signUp bool, mut func(*forged)) error {
		var (
			o   any
			id  string
			err error
		)
		user := ""
		if signUp {
			o, id, err = e.svc.BeginSignUp(ctx, "newbie", "", "")
		} else {
			o, id, err = e.svc.BeginAddPasskey(ctx, alice.ID, "")
			user = alice.ID
		}
		if err != nil {
			t.Fatal(err)
		}
		f := forged{typ: "webauthn.create", origin: origin, rpID: "localhost", flags: flagUP | flagUV}
		mut(&f)
		_, _, err = e.svc.FinishRegistration(ctx, id, user, forgeAttestation(t, newDevice(virtualwebauthn.AuthenticatorOptions{}), o, f))
		return err
	}
	// The forger itself is sound.
	if err := try(false, func(*forged) {}); err != nil {
		t.Fatalf("honest hand-built attestation refused: %v", err)
	}
	for name, mut := range map[string]func(*forged){
		"http origin":             func(f *forged) { f.origin = "http://localhost:8443" },
		"subdomain origin":        func(f *forged) { f.origin = "https://evil.localhost:8443" },
		"other port":              func(f *forged) { f.origin = "https://localhost:8444" },
		"default port":            func(f *forged) { f.origin = "https://localhost" },
		"cross-origin iframe":     func(f *forged) { f.crossOrigin = true },
		"cross-origin, evil top":  func(f *forged) { f.crossOrigin, f.topOrigin = true, "https://evil.example" },
		"topOrigin without cross": func(f *forged) { f.topOrigin = "https://evil.example" },
		"get type":                func(f *forged) { f.typ = "webauthn.get" },
		"other rp id":             func(f *forged) { f.rpID = "evil.localhost" },
		"no user verification":    func(f *forged) { f.flags = flagUP },
		"no user presence":        func(f *forged) { f.flags = flagUV },
		"BS without BE":           func(f *forged) { f.flags |= flagBS },
		"another challenge":       func(f *forged) { f.challenge = []byte("0123456789abcdef0123456789abcdef") },
	} {
		for _, signUp := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/signup=%v", name, signUp), func(t *testing.T) {
				if err := try(signUp, mut); err == nil {
					t.Fatalf("%s: registration accepted", name)
				}
			})
		}
	}
}

// A person can rename or remove only their own passkeys.
func TestPasskeyOthersPasskeys(t *testing.T) {
	e := newEnv(t)
	alice, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	bob, _ := e.signUp("bob", virtualwebauthn.AuthenticatorOptions{})
	ref := passkey.CredentialRef(d.cred.ID)
	if err := e.svc.Rename(ctx, bob.ID, ref, "mine now"); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("bob renamed alice's passkey: %v", err)
	}
	if _, err := e.svc.Remove(ctx, bob.ID, ref, "user:"+bob.ID); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("bob removed alice's passkey: %v", err)
	}
	if creds, _ := e.svc.Credentials(ctx, alice.ID); len(creds) != 1 || creds[0].Name == "mine now" {
		t.Fatalf("alice's passkeys: %+v", creds)
	}
}

// "closed" sign-up: no new accounts, not even by an invitation; only the
// first-admin setup link (which works while no admin exists) still does.
func TestPasskeyClosedSignUpRefusesInvites(t *testing.T) {
	// An invite made while the mode was invite...
	e := newEnv(t, func(c *passkey.Config) { c.SignUp = passkey.SignUpInvite })
	tok, err := e.svc.CreateLink(ctx, "invite", "", passkey.RoleUser, "user:usr_admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// ...is refused once it is closed, and no new one can be made.
	closed, err := passkey.New(passkey.Config{Store: e.db, RPID: "localhost", Origins: []string{origin}, Now: e.clk.Now,
		Logger: slog.New(slog.DiscardHandler), SignUp: passkey.SignUpClosed})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := closed.BeginSignUp(ctx, "guest", "", tok); !errors.Is(err, passkey.ErrSignUpClosed) {
		t.Fatalf("sign-up mode closed, invite link: %v, want ErrSignUpClosed", err)
	}
	if _, err := closed.CreateLink(ctx, "invite", "", passkey.RoleUser, "user:usr_admin", time.Hour); !errors.Is(err, passkey.ErrInvalidInput) {
		t.Fatalf("an invite made while sign-up is closed: %v", err)
	}
	// The first admin's setup link still works.
	setup, err := closed.CreateLink(ctx, "setup", "", passkey.RoleAdmin, "system", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := closed.BeginSignUp(ctx, "root", "", setup); err != nil {
		t.Fatalf("the setup link while closed: %v", err)
	}
}

// A sign-in refused as a clone changes nothing of the stored passkey but
// its clone warning: not its flags (backup eligibility/state, shown as
// "synced"), not its last use.
func TestPasskeyRefusedCloneWritesNothingElse(t *testing.T) {
	e := newEnv(t)
	u, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	if _, err := e.login(d, ""); err != nil {
		t.Fatal(err)
	}
	before, _ := e.svc.Credentials(ctx, u.ID)
	e.clk.Add(time.Hour)
	// A clone that reports an old counter, and claims to be a synced passkey.
	clone := &device{auth: virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{
		UserHandle: u.Handle, BackupEligible: true, BackupState: true}), cred: d.cred}
	clone.cred.Counter = 0
	if _, err := e.login(clone, ""); !errors.Is(err, passkey.ErrCloned) {
		t.Fatalf("clone: %v", err)
	}
	after, _ := e.svc.Credentials(ctx, u.ID)
	if after[0].Flags != before[0].Flags || after[0].Synced() != before[0].Synced() {
		t.Errorf("a refused clone changed the stored flags: %08b -> %08b (synced %v -> %v)",
			before[0].Flags, after[0].Flags, before[0].Synced(), after[0].Synced())
	}
	if !after[0].LastUsedAt.Equal(before[0].LastUsedAt) {
		t.Errorf("a refused clone counts as a use: last used %v -> %v", before[0].LastUsedAt, after[0].LastUsedAt)
	}
	if !after[0].CloneWarning || after[0].SignCount != before[0].SignCount {
		t.Errorf("clone warning %v, count %d (was %d)", after[0].CloneWarning, after[0].SignCount, before[0].SignCount)
	}
}

// Step-up needs user verification too, and the user's own passkey at the
// right origin.
func TestPasskeyStepUpChecks(t *testing.T) {
	e := newEnv(t)
	u, d := e.signUp("alice", virtualwebauthn.AuthenticatorOptions{})
	counter := uint32(10)
	try := func(mut func(*forged)) error {
		o, id, err := e.svc.BeginStepUp(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		counter++
		f := good(u, counter)
		mut(&f)
		_, err = e.svc.FinishStepUp(ctx, id, u.ID, forgeAssertion(t, d, o, f))
		return err
	}
	if err := try(func(*forged) {}); err != nil {
		t.Fatalf("honest step-up refused: %v", err)
	}
	for name, mut := range map[string]func(*forged){
		"no user verification": func(f *forged) { f.flags = flagUP },
		"cross-origin iframe":  func(f *forged) { f.crossOrigin = true },
		"subdomain origin":     func(f *forged) { f.origin = "https://evil.localhost:8443" },
		"create type":          func(f *forged) { f.typ = "webauthn.create" },
	} {
		if err := try(mut); err == nil {
			t.Errorf("step-up with %s accepted", name)
		}
	}
}
