package passkey

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/principal"
	"golang.org/x/text/unicode/norm"
)

// SignUpMode says who may create an account.
type SignUpMode string

// Sign-up modes.
const (
	SignUpOpen   SignUpMode = "open"
	SignUpInvite SignUpMode = "invite"
	SignUpClosed SignUpMode = "closed"
)

// CounterPolicy says what a signature counter that went backwards does.
type CounterPolicy string

// Counter policies. CounterDeny refuses the sign-in when the stored counter
// is above 0 (synced passkeys keep 0 forever and are never refused).
const (
	CounterDeny CounterPolicy = "deny"
	CounterLog  CounterPolicy = "log"
)

// Config configures a Service.
type Config struct {
	// Store persists accounts. Required.
	Store Store
	// RPID is the relying party ID: the site's domain ("localhost" in the demo). Required.
	RPID string
	// RPName is shown by authenticators. Default "keyway".
	RPName string
	// Origins are the exact origins allowed to run ceremonies
	// ("https://localhost:8443"). Required.
	Origins []string
	// SignUp is the sign-up mode. Default open.
	SignUp SignUpMode
	// Counter is the clone policy. Default deny.
	Counter CounterPolicy
	// AllowAAGUIDs, when not empty, is the only authenticator models that may register.
	AllowAAGUIDs []uuid.UUID
	// DenyAAGUIDs may not register.
	DenyAAGUIDs []uuid.UUID
	// ChallengeTTL bounds a ceremony. Default 5 minutes.
	ChallengeTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand is the randomness. Default crypto/rand.Reader.
	Rand io.Reader
	// Logger receives audit-worthy warnings. Required.
	Logger *slog.Logger
	// Sources remembers where people signed in from, so that recovery from
	// a familiar source is not blocked by strangers' attempts. Optional:
	// without it no source is familiar.
	Sources SourceStore
	// SourceKey keys the hashes of sources (at least 32 bytes, kept outside
	// the database). Required with Sources.
	SourceKey []byte
}

// Service runs ceremonies and manages accounts.
type Service struct {
	cfg Config
	wa  *webauthn.WebAuthn
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Logger == nil || cfg.RPID == "" || len(cfg.Origins) == 0 {
		return nil, errors.New("passkey: Store, Logger, RPID and Origins are required")
	}
	if cfg.Sources != nil && len(cfg.SourceKey) < 32 {
		return nil, errors.New("passkey: SourceKey must be at least 32 bytes")
	}
	if cfg.RPName == "" {
		cfg.RPName = "keyway"
	}
	if cfg.SignUp == "" {
		cfg.SignUp = SignUpOpen
	}
	if cfg.Counter == "" {
		cfg.Counter = CounterDeny
	}
	if cfg.ChallengeTTL <= 0 {
		cfg.ChallengeTTL = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	var filtering *webauthn.FilteringConfig
	if len(cfg.AllowAAGUIDs) > 0 || len(cfg.DenyAAGUIDs) > 0 {
		filtering = &webauthn.FilteringConfig{PermittedAAGUIDs: cfg.AllowAAGUIDs, ProhibitedAAGUIDs: cfg.DenyAAGUIDs}
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  cfg.RPID,
		RPDisplayName:         cfg.RPName,
		RPOrigins:             cfg.Origins,
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.ChallengeTTL, TimeoutUVD: cfg.ChallengeTTL},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.ChallengeTTL, TimeoutUVD: cfg.ChallengeTTL},
		},
		Filtering: filtering,
	})
	if err != nil {
		return nil, fmt.Errorf("passkey: %w", err)
	}
	return &Service{cfg: cfg, wa: wa}, nil
}

// waUser adapts a User and its credentials to the library.
type waUser struct {
	u     *User
	creds []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte                         { return w.u.Handle }
func (w *waUser) WebAuthnName() string                       { return w.u.Username }
func (w *waUser) WebAuthnDisplayName() string                { return w.u.DisplayName }
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

func toWA(c *Credential) webauthn.Credential {
	tr := make([]protocol.AuthenticatorTransport, len(c.Transports))
	for i, t := range c.Transports {
		tr[i] = protocol.AuthenticatorTransport(t)
	}
	return webauthn.Credential{
		ID: c.ID, PublicKey: c.PublicKey, AttestationType: c.AttestationType, AttestationFormat: c.AttestationFormat,
		Transport: tr, Flags: webauthn.NewCredentialFlags(protocol.AuthenticatorFlags(c.Flags)),
		Authenticator: webauthn.Authenticator{AAGUID: c.AAGUID, SignCount: c.SignCount, CloneWarning: c.CloneWarning,
			Attachment: protocol.AuthenticatorAttachment(c.Attachment)},
	}
}

func (s *Service) loadWAUser(ctx context.Context, u *User) (*waUser, []*Credential, error) {
	creds, err := s.cfg.Store.Credentials(ctx, u.ID)
	if err != nil {
		return nil, nil, err
	}
	w := &waUser{u: u}
	for _, c := range creds {
		w.creds = append(w.creds, toWA(c))
	}
	return w, creds, nil
}

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@+-]{1,63}$`)

// NormalizeUsername folds compatibility forms (NFKC) and case, so that
// look-alike spellings of one name cannot become two accounts.
func NormalizeUsername(s string) (string, error) {
	n := strings.ToLower(norm.NFKC.String(strings.TrimSpace(s)))
	if !usernameRE.MatchString(n) {
		return "", fmt.Errorf("%w: a username is 2 to 64 characters: letters a-z, digits and . _ @ + -, starting with a letter or digit", ErrInvalidInput)
	}
	return n, nil
}

// unprintable finds characters that have no business in a name people read:
// control characters, and the bidirectional overrides that make a label
// read differently from what it says.
func unprintable(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }

// checkPasskeyName trims a passkey's name and checks it: at most 64
// printable characters ("" lets the provider's name stand in).
func checkPasskeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > 64 || strings.IndexFunc(name, unprintable) >= 0 {
		return "", fmt.Errorf("%w: a passkey name is at most 64 printable characters", ErrInvalidInput)
	}
	return name, nil
}

func checkDisplayName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 64 || strings.IndexFunc(s, unprintable) >= 0 {
		return "", fmt.Errorf("%w: a display name is at most 64 printable characters", ErrInvalidInput)
	}
	return s, nil
}

func (s *Service) randomID(prefix string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Options are WebAuthn options in the standard JSON form ({"publicKey": …}).
type Options = any

// pending is the account a sign-up creates when it finishes.
type pending struct {
	User       *User  `json:"user"`
	InviteHash []byte `json:"invite_hash,omitempty"`
	InviteKind string `json:"invite_kind,omitempty"`
}

// ceremonyData is what a challenge row holds.
type ceremonyData struct {
	Session webauthn.SessionData `json:"session"`
	Pending *pending             `json:"pending,omitempty"`
	Name    string               `json:"name,omitempty"`
	// Username, for a sign-in by username: the account must match.
	Username string `json:"username,omitempty"`
}

func (s *Service) putCeremony(ctx context.Context, kind, userID string, d *ceremonyData) (string, error) {
	id, err := s.randomID("", 24)
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	err = s.cfg.Store.PutChallenge(ctx, &Challenge{ID: id, Kind: kind, UserID: userID, Data: data, ExpiresAt: s.cfg.Now().Add(s.cfg.ChallengeTTL)})
	return id, err
}

// takeCeremony consumes a challenge of kind: whatever happens next, it can
// never be used again.
func (s *Service) takeCeremony(ctx context.Context, id, kind string) (*Challenge, *ceremonyData, error) {
	if id == "" || len(id) > 64 {
		return nil, nil, fmt.Errorf("%w: no ceremony ID, or one too long", ErrCeremony)
	}
	c, err := s.cfg.Store.TakeChallenge(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: no such ceremony: unknown or already finished", ErrCeremony)
	}
	if err != nil {
		return nil, nil, err
	}
	if c.Kind != kind || !s.cfg.Now().Before(c.ExpiresAt) {
		return nil, nil, fmt.Errorf("%w: the ceremony is of another kind, or expired", ErrCeremony)
	}
	var d ceremonyData
	if err := json.Unmarshal(c.Data, &d); err != nil {
		return nil, nil, fmt.Errorf("decode ceremony: %w", err)
	}
	return c, &d, nil
}

// hashToken is the stored form of recovery codes and link tokens.
func hashToken(t string) []byte {
	sum := sha256.Sum256([]byte(t))
	return sum[:]
}

// BeginSignUp starts creating an account with its first passkey. invite is
// the token of a sign-up or setup link ("" when sign-up is open).
func (s *Service) BeginSignUp(ctx context.Context, username, displayName, invite string) (Options, string, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, "", err
	}
	display, err := checkDisplayName(displayName)
	if err != nil {
		return nil, "", err
	}
	if display == "" {
		display = name
	}
	p := &pending{}
	role := RoleUser
	if invite != "" {
		h := hashToken(invite)
		inv, err := s.cfg.Store.PeekInvite(ctx, h, "invite", s.cfg.Now())
		if errors.Is(err, ErrNotFound) {
			inv, err = s.cfg.Store.PeekInvite(ctx, h, "setup", s.cfg.Now())
		}
		if errors.Is(err, ErrNotFound) {
			return nil, "", ErrSignUpClosed
		}
		if err != nil {
			return nil, "", err
		}
		if inv.Kind == "invite" && s.cfg.SignUp == SignUpClosed {
			// Closed takes no one new but the first admin (a setup
			// link): an invite made before the mode changed is refused.
			return nil, "", ErrSignUpClosed
		}
		p.InviteHash, p.InviteKind, role = h, inv.Kind, inv.Role
	} else if s.cfg.SignUp != SignUpOpen {
		return nil, "", ErrSignUpClosed
	}
	if _, err := s.cfg.Store.UserByUsername(ctx, name); err == nil {
		return nil, "", ErrUsernameTaken
	} else if !errors.Is(err, ErrNotFound) {
		return nil, "", err
	}
	id, err := s.randomID("usr_", 12)
	if err != nil {
		return nil, "", err
	}
	handle := make([]byte, 32)
	if _, err := io.ReadFull(s.cfg.Rand, handle); err != nil {
		return nil, "", err
	}
	u := &User{ID: id, Handle: handle, Username: name, DisplayName: display, Role: role}
	p.User = u
	return s.beginRegistration(ctx, &waUser{u: u}, p, "")
}

// BeginAddPasskey starts adding a passkey to a signed-in user.
func (s *Service) BeginAddPasskey(ctx context.Context, userID, name string) (Options, string, error) {
	name, err := checkPasskeyName(name)
	if err != nil {
		return nil, "", err
	}
	u, err := s.cfg.Store.UserByID(ctx, userID)
	if err != nil {
		return nil, "", err
	}
	w, _, err := s.loadWAUser(ctx, u)
	if err != nil {
		return nil, "", err
	}
	return s.beginRegistration(ctx, w, nil, name)
}

func (s *Service) beginRegistration(ctx context.Context, w *waUser, p *pending, name string) (Options, string, error) {
	opts := []webauthn.RegistrationOption{
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithCredentialParameters(webauthn.CredentialParametersRecommendedL3()),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
	}
	if len(w.creds) > 0 {
		opts = append(opts, webauthn.WithExclusions(webauthn.Credentials(w.creds).CredentialDescriptors()))
	}
	creation, sess, err := s.wa.BeginRegistration(w, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("begin registration: %w", err)
	}
	userID := w.u.ID
	if p != nil {
		userID = ""
	}
	id, err := s.putCeremony(ctx, "register", userID, &ceremonyData{Session: *sess, Pending: p, Name: name})
	if err != nil {
		return nil, "", err
	}
	return creation, id, nil
}

// FinishRegistration verifies the browser's PublicKeyCredential.toJSON()
// and stores the passkey (and, for a sign-up, the account). userID must be
// the signed-in user for an added passkey, and "" for a sign-up.
func (s *Service) FinishRegistration(ctx context.Context, ceremonyID, userID string, body []byte) (*User, *Credential, error) {
	u, c, err := s.finishRegistration(ctx, ceremonyID, userID, body)
	s.logRefusal(ctx, "registration", err)
	return u, c, err
}

func (s *Service) finishRegistration(ctx context.Context, ceremonyID, userID string, body []byte) (*User, *Credential, error) {
	ch, d, err := s.takeCeremony(ctx, ceremonyID, "register")
	if err != nil {
		return nil, nil, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrCeremony, describe(err))
	}
	var w *waUser
	if d.Pending != nil {
		if userID != "" {
			return nil, nil, fmt.Errorf("%w: a sign-up ceremony finished by someone signed in", ErrCeremony)
		}
		w = &waUser{u: d.Pending.User}
	} else {
		if ch.UserID == "" || ch.UserID != userID {
			return nil, nil, fmt.Errorf("%w: the ceremony was begun by another user", ErrCeremony)
		}
		u, err := s.cfg.Store.UserByID(ctx, userID)
		if err != nil {
			return nil, nil, err
		}
		if w, _, err = s.loadWAUser(ctx, u); err != nil {
			return nil, nil, err
		}
	}
	cred, err := s.wa.CreateCredential(w, d.Session, parsed)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrCeremony, describe(err))
	}
	if !cred.Flags.UserVerified {
		return nil, nil, fmt.Errorf("%w: user verification missing", ErrCeremony)
	}
	now := s.cfg.Now().UTC()
	c := fromWA(cred, w.u.ID, now)
	c.Name = d.Name
	if c.Name == "" {
		c.Name = ProviderName(c.AAGUID)
	}
	credHash := credRef(c.ID)
	detail := map[string]string{"credential": credHash, "aaguid": uuidString(c.AAGUID), "synced": fmt.Sprint(c.Synced())}
	if d.Pending != nil {
		u := d.Pending.User
		u.CreatedAt = now
		var inv *InviteUse
		if d.Pending.InviteHash != nil {
			inv = &InviteUse{Hash: d.Pending.InviteHash, Kind: d.Pending.InviteKind, Role: u.Role, Now: now}
			if inv.Kind == "setup" {
				// A setup link makes the first admin only: it works while no
				// admin exists, and the first admin closes every other one.
				inv.CloseKind, inv.UnlessRoleExists = true, RoleAdmin
			}
		}
		evs := []audit.Event{
			{At: now, Type: audit.UserCreated, Actor: principal.User(u.ID).String(), Subject: principal.User(u.ID).String(), Detail: map[string]string{"role": string(u.Role)}},
			{At: now, Type: audit.PasskeyAdded, Actor: principal.User(u.ID).String(), Subject: principal.User(u.ID).String(), Detail: detail},
		}
		if err := s.cfg.Store.CreateUser(ctx, u, c, inv, evs); err != nil {
			return nil, nil, err
		}
		return u, c, nil
	}
	ev := audit.Event{At: now, Type: audit.PasskeyAdded, Actor: principal.User(w.u.ID).String(), Subject: principal.User(w.u.ID).String(), Detail: detail}
	if err := s.cfg.Store.AddCredential(ctx, c, ev); err != nil {
		return nil, nil, err
	}
	return w.u, c, nil
}

func fromWA(cred *webauthn.Credential, userID string, now time.Time) *Credential {
	tr := make([]string, len(cred.Transport))
	for i, t := range cred.Transport {
		tr[i] = string(t)
	}
	return &Credential{
		ID: cred.ID, UserID: userID, PublicKey: cred.PublicKey, AttestationType: cred.AttestationType,
		AttestationFormat: cred.AttestationFormat, AAGUID: cred.Authenticator.AAGUID, SignCount: cred.Authenticator.SignCount,
		Flags: byte(cred.Flags.ProtocolValue()), Transports: tr, Attachment: string(cred.Authenticator.Attachment),
		CreatedAt: now,
	}
}

// BeginLogin starts a sign-in. The options are the same whether or not a
// username is given, and whether or not it exists: always a discoverable
// request with no allow list, so the answer cannot tell which accounts
// exist, nor how many passkeys they have. A given username is remembered
// and must match the account that signs in.
func (s *Service) BeginLogin(ctx context.Context, username string) (Options, string, error) {
	want := ""
	if username != "" {
		name, err := NormalizeUsername(username)
		if err != nil {
			return nil, "", err
		}
		want = name
	}
	assertion, sess, err := s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, "", fmt.Errorf("begin login: %w", err)
	}
	id, err := s.putCeremony(ctx, "login", "", &ceremonyData{Session: *sess, Username: want})
	return assertion, id, err
}

// LoginResult is a verified sign-in.
type LoginResult struct {
	User       *User
	Credential *Credential
	// CloneWarning: the counter went backwards and policy let it through.
	CloneWarning bool
}

// FinishLogin verifies an assertion and returns who signed in.
func (s *Service) FinishLogin(ctx context.Context, ceremonyID string, body []byte) (*LoginResult, error) {
	res, err := s.finishLogin(ctx, ceremonyID, body)
	s.logRefusal(ctx, "sign-in", err)
	return res, err
}

func (s *Service) finishLogin(ctx context.Context, ceremonyID string, body []byte) (*LoginResult, error) {
	_, d, err := s.takeCeremony(ctx, ceremonyID, "login")
	if err != nil {
		return nil, err
	}
	return s.finishAssertion(ctx, d, body, "")
}

// BeginStepUp starts a fresh user-verified assertion by a signed-in user.
func (s *Service) BeginStepUp(ctx context.Context, userID string) (Options, string, error) {
	u, err := s.cfg.Store.UserByID(ctx, userID)
	if err != nil {
		return nil, "", err
	}
	w, _, err := s.loadWAUser(ctx, u)
	if err != nil {
		return nil, "", err
	}
	if len(w.creds) == 0 {
		return nil, "", ErrNotFound
	}
	assertion, sess, err := s.wa.BeginLogin(w, webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, "", fmt.Errorf("begin step-up: %w", err)
	}
	id, err := s.putCeremony(ctx, "stepup", userID, &ceremonyData{Session: *sess})
	return assertion, id, err
}

// FinishStepUp verifies a step-up assertion by userID.
func (s *Service) FinishStepUp(ctx context.Context, ceremonyID, userID string, body []byte) (*LoginResult, error) {
	res, err := s.finishStepUp(ctx, ceremonyID, userID, body)
	s.logRefusal(ctx, "step-up", err)
	return res, err
}

func (s *Service) finishStepUp(ctx context.Context, ceremonyID, userID string, body []byte) (*LoginResult, error) {
	ch, d, err := s.takeCeremony(ctx, ceremonyID, "stepup")
	if err != nil {
		return nil, err
	}
	if ch.UserID != userID {
		return nil, fmt.Errorf("%w: the step-up was begun by another user", ErrCeremony)
	}
	return s.finishAssertion(ctx, d, body, userID)
}

func (s *Service) finishAssertion(ctx context.Context, d *ceremonyData, body []byte, wantUser string) (*LoginResult, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrCeremony, describe(err))
	}
	var (
		user   *User
		stored []*Credential
		w      *waUser
	)
	load := func(u *User) error {
		if !u.DisabledAt.IsZero() {
			return fmt.Errorf("%w: the account is disabled", ErrCeremony)
		}
		var err error
		w, stored, err = s.loadWAUser(ctx, u)
		if err != nil {
			return err
		}
		user = u
		// A synced passkey may flip its backup-eligible flag. The library
		// refuses any change; we accept it once the signature verifies, and
		// audit it, rather than lock the user out.
		be := parsed.Response.AuthenticatorData.Flags.HasBackupEligible()
		for i := range w.creds {
			if bytes.Equal(w.creds[i].ID, parsed.RawID) && w.creds[i].Flags.BackupEligible != be {
				w.creds[i].Flags.BackupEligible = be
			}
		}
		return nil
	}
	var cred *webauthn.Credential
	if len(d.Session.UserID) == 0 {
		handler := func(_, userHandle []byte) (webauthn.User, error) {
			u, err := s.cfg.Store.UserByHandle(ctx, userHandle)
			if err != nil {
				return nil, err
			}
			if err := load(u); err != nil {
				return nil, err
			}
			return w, nil
		}
		_, cred, err = s.wa.ValidatePasskeyLogin(handler, d.Session, parsed)
	} else {
		u, uerr := s.cfg.Store.UserByHandle(ctx, d.Session.UserID)
		if uerr != nil {
			return nil, fmt.Errorf("%w: the ceremony's user is gone", ErrCeremony)
		}
		if err := load(u); err != nil {
			return nil, err
		}
		cred, err = s.wa.ValidateLogin(w, d.Session, parsed)
	}
	if err != nil || user == nil {
		who := "an unknown user"
		if user != nil {
			who = "user " + user.ID
		}
		return nil, fmt.Errorf("%w: %s (credential %s, %s)", ErrCeremony, describe(err), credRef(parsed.RawID), who)
	}
	if (wantUser != "" && user.ID != wantUser) || (d.Username != "" && user.Username != d.Username) {
		return nil, fmt.Errorf("%w: the passkey belongs to another user than the one asked for", ErrCeremony)
	}
	if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return nil, fmt.Errorf("%w: user verification missing", ErrCeremony)
	}
	var before *Credential
	for _, c := range stored {
		if bytes.Equal(c.ID, cred.ID) {
			before = c
		}
	}
	if before == nil {
		return nil, fmt.Errorf("%w: the passkey is not registered", ErrCeremony)
	}
	now := s.cfg.Now().UTC()
	after := *before
	after.SignCount = cred.Authenticator.SignCount
	after.Flags = byte(cred.Flags.ProtocolValue())
	after.LastUsedAt = now
	ref := credRef(cred.ID)
	var evs []audit.Event
	res := &LoginResult{User: user, Credential: &after}
	if before.Flags&FlagBE != after.Flags&FlagBE {
		evs = append(evs, audit.Event{At: now, Type: audit.BackupFlagChanged, Actor: principal.User(user.ID).String(), Subject: principal.User(user.ID).String(),
			Detail: map[string]string{"credential": ref, "backup_eligible": fmt.Sprint(after.Flags&FlagBE != 0)}})
	}
	if cred.Authenticator.CloneWarning {
		after.CloneWarning = true
		evs = append(evs, audit.Event{At: now, Type: audit.CloneWarning, Actor: principal.User(user.ID).String(), Subject: principal.User(user.ID).String(),
			Detail: map[string]string{"credential": ref, "stored_count": fmt.Sprint(before.SignCount), "presented_count": fmt.Sprint(parsed.Response.AuthenticatorData.Counter), "policy": string(s.cfg.Counter)}})
		if s.cfg.Counter == CounterDeny && before.SignCount > 0 {
			// Record the warning and nothing else of a refused assertion:
			// a clone must not reset the counter, turn the flags (a
			// device-bound passkey shown as synced), or count as a use.
			refused := *before
			refused.CloneWarning = true
			if err := s.cfg.Store.CredentialUsed(ctx, &refused, evs); err != nil {
				return nil, err
			}
			s.cfg.Logger.Warn("passkey sign-in refused: signature counter went backwards", slog.String("user", user.ID), slog.String("credential", ref))
			return nil, ErrCloned
		}
		res.CloneWarning = true
	}
	if err := s.cfg.Store.CredentialUsed(ctx, &after, evs); err != nil {
		return nil, err
	}
	return res, nil
}

// logRefusal tells the operator, at info, why a ceremony was refused (the
// library's own account of it, never a secret: no challenge, signature or
// key); the client only ever hears that it failed.
func (s *Service) logRefusal(ctx context.Context, ceremony string, err error) {
	if errors.Is(err, ErrCeremony) || errors.Is(err, ErrCloned) {
		s.cfg.Logger.InfoContext(ctx, "passkey ceremony refused", slog.String("ceremony", ceremony), slog.String("reason", err.Error()))
	}
}

// describe keeps the library's client-facing explanation of a failure.
func describe(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		msg := pe.Type
		if pe.Details != "" {
			msg = pe.Details
		}
		if pe.DevInfo != "" {
			msg += ": " + pe.DevInfo
		}
		return msg
	}
	if err == nil {
		return "unknown user"
	}
	return "verification failed"
}

// credRef names a credential in logs and audit events without its ID.
func credRef(id []byte) string {
	sum := sha256.Sum256(id)
	return hex.EncodeToString(sum[:8])
}

func uuidString(b []byte) string {
	u, err := uuid.FromBytes(b)
	if err != nil {
		return ""
	}
	return u.String()
}

// ---- account management ----

// User returns a user.
func (s *Service) User(ctx context.Context, id string) (*User, error) {
	return s.cfg.Store.UserByID(ctx, id)
}

// Users lists every user (admin).
func (s *Service) Users(ctx context.Context) ([]*User, error) { return s.cfg.Store.ListUsers(ctx) }

// MaxRoles bounds the roles of one person.
const MaxRoles = 32

// CheckRoles validates role names (1 to 64 characters: a-z, 0-9 and . _ : -,
// starting with a letter or digit; at most MaxRoles) and returns them
// sorted, without duplicates. Config and stores use the same rule.
func CheckRoles(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if !principal.ValidRole(r) {
			return nil, fmt.Errorf("%w: role %q: a role is 1 to 64 characters, a-z, 0-9 and . _ : -, starting with a letter or digit", ErrInvalidInput, r)
		}
		out = append(out, r)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxRoles {
		return nil, fmt.Errorf("%w: at most %d roles", ErrInvalidInput, MaxRoles)
	}
	return out, nil
}

// SetRoles replaces the roles of user id (an administrator's act, audited
// with the old and new sets) and returns the user as stored.
func (s *Service) SetRoles(ctx context.Context, id string, roles []string, actor string) (*User, error) {
	roles, err := CheckRoles(roles)
	if err != nil {
		return nil, err
	}
	u, err := s.cfg.Store.UserByID(ctx, id)
	if err != nil {
		return nil, err
	}
	ev := audit.Event{At: s.cfg.Now().UTC(), Type: audit.UserRolesChanged, Actor: actor, Subject: "user:" + u.ID,
		Detail: map[string]string{"from": strings.Join(u.Roles, " "), "to": strings.Join(roles, " ")}}
	if err := s.cfg.Store.SetUserRoles(ctx, u.ID, roles, ev); err != nil {
		return nil, err
	}
	return s.cfg.Store.UserByID(ctx, u.ID)
}

// Credentials lists a user's passkeys.
func (s *Service) Credentials(ctx context.Context, userID string) ([]*Credential, error) {
	return s.cfg.Store.Credentials(ctx, userID)
}

// CredentialRef is the public handle of a credential: base64url of its ID.
func CredentialRef(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

func parseRef(ref string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(ref)
	if err != nil || len(b) == 0 || len(b) > 1023 {
		return nil, ErrNotFound
	}
	return b, nil
}

// Rename names a passkey of the user.
func (s *Service) Rename(ctx context.Context, userID, ref, name string) error {
	id, err := parseRef(ref)
	if err != nil {
		return err
	}
	name, err = checkPasskeyName(name)
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("%w: a passkey name is 1 to 64 printable characters", ErrInvalidInput)
	}
	ev := audit.Event{At: s.cfg.Now().UTC(), Type: audit.PasskeyRenamed, Actor: principal.User(userID).String(), Subject: principal.User(userID).String(),
		Detail: map[string]string{"credential": credRef(id)}}
	return s.cfg.Store.RenameCredential(ctx, userID, id, name, ev)
}

// Remove deletes a passkey of the user and ends every session it signed
// in. It returns how many sessions ended.
func (s *Service) Remove(ctx context.Context, userID, ref, actor string) (int, error) {
	id, err := parseRef(ref)
	if err != nil {
		return 0, err
	}
	ev := audit.Event{At: s.cfg.Now().UTC(), Type: audit.PasskeyRemoved, Actor: actor, Subject: principal.User(userID).String(),
		Detail: map[string]string{"credential": credRef(id)}}
	return s.cfg.Store.RemoveCredential(ctx, userID, id, keepOneWayIn, ev)
}

// keepOneWayIn refuses to remove a user's last passkey unless an unused
// recovery code remains: an account must keep a way to sign in.
func keepOneWayIn(left Remaining) error {
	if left.Passkeys == 0 && left.RecoveryCodes == 0 {
		return ErrLastPasskey
	}
	return nil
}

// ---- recovery codes ----

var codeEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

// IssueRecoveryCodes replaces the user's codes with ten new ones (80 bits
// each, shown once, stored as SHA-256).
func (s *Service) IssueRecoveryCodes(ctx context.Context, userID string) ([]string, error) {
	codes := make([]string, 10)
	hashes := make([][]byte, 10)
	for i := range codes {
		b := make([]byte, 10)
		if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
			return nil, err
		}
		raw := strings.ToLower(codeEnc.EncodeToString(b)) // 16 characters
		codes[i] = raw[0:4] + "-" + raw[4:8] + "-" + raw[8:12] + "-" + raw[12:16]
		hashes[i] = hashToken(raw)
	}
	ev := audit.Event{At: s.cfg.Now().UTC(), Type: audit.RecoveryCodesIssued, Actor: principal.User(userID).String(), Subject: principal.User(userID).String()}
	if err := s.cfg.Store.ReplaceRecoveryCodes(ctx, userID, hashes, ev); err != nil {
		return nil, err
	}
	return codes, nil
}

// normalizeCode accepts a code with or without dashes, spaces or case.
func normalizeCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(code) {
		if r != '-' && r != ' ' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// UseRecoveryCode spends one code of username and returns the user, who may
// then (through a restricted session) add a passkey. Unknown user and wrong
// code are the same ErrNotFound.
func (s *Service) UseRecoveryCode(ctx context.Context, username, code string) (*User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, ErrNotFound
	}
	u, err := s.cfg.Store.UserByUsername(ctx, name)
	if err != nil {
		return nil, ErrNotFound
	}
	now := s.cfg.Now().UTC()
	ev := audit.Event{At: now, Type: audit.RecoveryUsed, Actor: principal.User(u.ID).String(), Subject: principal.User(u.ID).String()}
	if err := s.cfg.Store.UseRecoveryCode(ctx, u.ID, hashToken(normalizeCode(code)), now, ev); err != nil {
		return nil, ErrNotFound
	}
	return u, nil
}

// UnusedRecoveryCodes counts the user's unused codes.
func (s *Service) UnusedRecoveryCodes(ctx context.Context, userID string) (int, error) {
	return s.cfg.Store.UnusedRecoveryCodes(ctx, userID)
}

// ---- one-time links ----

// CreateLink makes a one-time link token of kind ("invite": sign-up,
// "enrol": a new passkey for userID, "setup": the first admin), valid for ttl.
func (s *Service) CreateLink(ctx context.Context, kind, userID string, role Role, createdBy string, ttl time.Duration) (string, error) {
	if !slices.Contains([]string{"invite", "enrol", "setup"}, kind) {
		return "", fmt.Errorf("%w: unknown link kind", ErrInvalidInput)
	}
	if kind == "invite" && s.cfg.SignUp == SignUpClosed {
		return "", fmt.Errorf("%w: sign-up is closed (passkeys.sign_up: closed), so no one can be invited; set it to invite first", ErrInvalidInput)
	}
	tok, err := s.randomID("", 32)
	if err != nil {
		return "", err
	}
	now := s.cfg.Now().UTC()
	inv := &Invite{Kind: kind, UserID: userID, Role: role, CreatedBy: createdBy, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	ev := audit.Event{At: now, Type: audit.InviteCreated, Actor: createdBy, Subject: principal.User(userID).String(),
		Detail: map[string]string{"kind": kind, "role": string(role), "expires_at": inv.ExpiresAt.Format(time.RFC3339)}}
	if err := s.cfg.Store.CreateInvite(ctx, hashToken(tok), inv, ev); err != nil {
		return "", err
	}
	return tok, nil
}

// RedeemEnrolment uses an enrolment link and returns its user, who may then
// (through a restricted session) add a passkey.
func (s *Service) RedeemEnrolment(ctx context.Context, token string) (*User, error) {
	inv, err := s.cfg.Store.TakeInvite(ctx, hashToken(token), "enrol", s.cfg.Now())
	if err != nil {
		return nil, ErrNotFound
	}
	return s.cfg.Store.UserByID(ctx, inv.UserID)
}

// NeedsSetup reports whether no admin exists yet.
func (s *Service) NeedsSetup(ctx context.Context) (bool, error) {
	n, err := s.cfg.Store.CountAdmins(ctx)
	return n == 0, err
}

// ---- familiar sources ----

const (
	// keptSources is how many recent sources are remembered per user.
	keptSources = 20
	// sourceMemory is how long a source stays familiar after a sign-in.
	sourceMemory = 180 * 24 * time.Hour
)

// sourceHash binds a source to a user under the source key: the database
// alone cannot tell where anyone signed in from, nor link two users who
// share a network.
func (s *Service) sourceHash(userID, source string) []byte {
	m := hmac.New(sha256.New, s.cfg.SourceKey)
	_, _ = io.WriteString(m, userID)
	_, _ = m.Write([]byte{0})
	_, _ = io.WriteString(m, source)
	return m.Sum(nil)
}

// RememberSource records that userID just signed in from source (an IPv4
// address or an IPv6 network, as the rate limits name it).
func (s *Service) RememberSource(ctx context.Context, userID, source string) error {
	if s.cfg.Sources == nil || source == "" {
		return nil
	}
	return s.cfg.Sources.RememberSource(ctx, userID, s.sourceHash(userID, source), s.cfg.Now().UTC(), keptSources)
}

// KnownSource reports whether the owner of username signed in from source
// in the last 180 days. An unknown username is not an error: no source is
// familiar to it.
func (s *Service) KnownSource(ctx context.Context, username, source string) (bool, error) {
	if s.cfg.Sources == nil || source == "" {
		return false, nil
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return false, nil
	}
	u, err := s.cfg.Store.UserByUsername(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return s.cfg.Sources.KnownSource(ctx, u.ID, s.sourceHash(u.ID, source), s.cfg.Now().Add(-sourceMemory))
}
