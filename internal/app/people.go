package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/privacy"
	"github.com/keywayhq/keyway/internal/session"
)

// SetupLinkTTL is how long the first-admin setup link lives.
const SetupLinkTTL = time.Hour

// relyingParty derives the WebAuthn RP ID and origins from config and the
// bound HTTPS port: localhost in local TLS mode, the first ACME host in ACME
// mode, and https://<rp id>[:port] unless origins are configured.
func relyingParty(cfg *config.Config, httpsAddr string) (string, []string, string) {
	rpID := cfg.Passkeys.RPID
	if rpID == "" {
		rpID = "localhost"
		if cfg.TLS.Mode == config.TLSACME && len(cfg.TLS.ACME.Hosts) > 0 {
			rpID = cfg.TLS.ACME.Hosts[0]
		}
	}
	_, port, _ := net.SplitHostPort(httpsAddr)
	base := "https://" + rpID
	if port != "" && port != "443" {
		base += ":" + port
	}
	origins := cfg.Passkeys.Origins
	if len(origins) == 0 {
		origins = []string{base}
	}
	return rpID, origins, strings.TrimSuffix(origins[0], "/")
}

func parseAAGUIDs(in []string) ([]uuid.UUID, error) {
	out := make([]uuid.UUID, 0, len(in))
	for _, s := range in {
		u, err := uuid.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("aaguid %q: %w", s, err)
		}
		out = append(out, u)
	}
	return out, nil
}

func (a *App) newPeople(httpsAddr string) (*passkey.Service, *session.Manager, []string, error) {
	cfg := a.cfg
	rpID, origins, public := relyingParty(cfg, httpsAddr)
	a.publicURL = public
	allow, err := parseAAGUIDs(cfg.Passkeys.AAGUIDAllow)
	if err != nil {
		return nil, nil, nil, err
	}
	deny, err := parseAAGUIDs(cfg.Passkeys.AAGUIDDeny)
	if err != nil {
		return nil, nil, nil, err
	}
	pk, err := passkey.New(passkey.Config{
		Store: a.db, RPID: rpID, RPName: cfg.Passkeys.RPName, Origins: origins,
		SignUp: passkey.SignUpMode(cfg.Passkeys.SignUp), Counter: passkey.CounterPolicy(cfg.Passkeys.CounterPolicy),
		AllowAAGUIDs: allow, DenyAAGUIDs: deny, ChallengeTTL: cfg.Passkeys.ChallengeTTL, Logger: a.logger,
		Sources: a.sources(), SourceKey: a.sourceKey,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	sm, err := session.New(session.Config{
		Store: a.db, IdleTimeout: cfg.Sessions.IdleTimeout, AbsoluteTimeout: cfg.Sessions.AbsoluteTimeout,
		StepUpMaxAge: cfg.Sessions.StepUpMaxAge, Logger: a.logger,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return pk, sm, origins, nil
}

// sessionVerifier is what the decision core is given to check sessions:
// with their person, in one store read.
type sessionVerifier interface {
	decision.SessionVerifier
	decision.SessionUserVerifier
}

// sessionChecker checks a session and reads its person in the same store
// read (store's SessionWithUser), so that a session route costs one read a
// request, and what it reads of both is of one moment.
type sessionChecker struct {
	*session.Manager
	db interface {
		SessionWithUser(ctx context.Context, tokenHash []byte) (*session.Session, *passkey.User, error)
	}
}

func (c sessionChecker) AuthenticateUser(ctx context.Context, token string) (*session.Session, *passkey.User, error) {
	var u *passkey.User
	s, err := c.AuthenticateVia(ctx, token, func(ctx context.Context, tokenHash []byte) (*session.Session, error) {
		s, user, err := c.db.SessionWithUser(ctx, tokenHash)
		u = user
		return s, err
	})
	if err != nil {
		return nil, nil, err
	}
	return s, u, nil
}

// sources is the store of sign-in sources when there is a key for them
// (the server has one; CLI commands do not need one).
func (a *App) sources() passkey.SourceStore {
	if a.sourceKey == nil {
		return nil
	}
	return a.db
}

// setupLink makes the one-time first-admin link when no admin exists. The
// token travels in the URL fragment, which browsers never send to a server,
// so it reaches no access log.
func (a *App) setupLink(ctx context.Context) error {
	need, err := a.passkeys.NeedsSetup(ctx)
	if err != nil || !need {
		return err
	}
	tok, err := a.passkeys.CreateLink(ctx, "setup", "", passkey.RoleAdmin, "system", SetupLinkTTL)
	if err != nil {
		return err
	}
	a.setupURL = a.publicURL + "/.keyway/portal/setup#token=" + tok
	return nil
}

// SetupURL is the one-time link that registers the first admin, or "" when
// an admin exists. Show it to the operator; never log it.
func (a *App) SetupURL() string { return a.setupURL }

// PublicURL is the base URL people reach keyway at.
func (a *App) PublicURL() string { return a.publicURL }

// sweepSessions deletes expired sessions every minute until ctx is done.
func (a *App) sweepSessions(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.sessions.Sweep(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("sweep sessions", "error", err.Error())
			}
			if i%60 == 0 {
				a.pruneKeyChanges(ctx)
			}
		}
	}
}

// KeyChangeRetention is how long the API-key change feed keeps an entry.
// Verifiers read it every 250ms; one that stops for longer than this (a
// paused process, a node partitioned for a day) finds the feed pruned past
// its place and drops its whole cache rather than miss a revocation.
const KeyChangeRetention = 24 * time.Hour

// pruneKeyChanges keeps the change feed from growing for ever.
func (a *App) pruneKeyChanges(ctx context.Context) {
	n, err := a.db.PruneChanges(ctx, time.Now().Add(-KeyChangeRetention))
	if err != nil {
		if ctx.Err() == nil {
			a.logger.Warn("prune the API-key change feed", "error", err.Error())
		}
		return
	}
	if n > 0 {
		a.logger.Debug("pruned the API-key change feed", "entries", n)
	}
}

// People is the account service of a data directory, for the CLI: links for
// sign-up and enrolment, the user list, and revoking a user's sessions. It
// works whether or not a server runs on the same data directory.
type People struct {
	Passkeys *passkey.Service
	Sessions *session.Manager
	// Privacy exports and erases a person's data.
	Privacy   *privacy.Service
	PublicURL string
	db        *Store
	keys      *apikey.Service
}

// OpenPeople opens the store of cfg and its account services. Links it makes
// point at the HTTPS listener's configured address.
// Like OpenKeys, it never creates a store.
func OpenPeople(ctx context.Context, cfg *config.Config, logger *slog.Logger, getenv func(string) string) (*People, error) {
	db, err := OpenStore(ctx, cfg, getenv)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, logger: logger, db: db.Store}
	addr := cfg.Listen
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		addr = "localhost:443"
	}
	pk, sm, _, err := a.newPeople(addr)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	keys, err := newKeyService(ctx, cfg, db.Store, logger, db.pepper, nil)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &People{Passkeys: pk, Sessions: sm, PublicURL: a.publicURL, db: db, keys: keys,
		Privacy: &privacy.Service{Store: db.Store, Keys: keys}}, nil
}

// Close flushes key usage and closes the store and its key store.
func (p *People) Close() error {
	p.keys.Flush(context.Background())
	return p.db.Close()
}
