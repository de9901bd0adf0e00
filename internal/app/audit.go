package app

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/portal"
	"github.com/keywayhq/keyway/internal/secret"
	"github.com/keywayhq/keyway/internal/store"
)

// AuditKeyEnv names the environment variable that may hold the secret the
// audit signing key is derived from (base64).
const AuditKeyEnv = "KEYWAY_AUDIT_KEY"

// AuditReport is the outcome of VerifyAudit.
type AuditReport = audit.Report

// auditKeySource is where cfg keeps the audit signing secret.
func auditKeySource(cfg *config.Config) secret.Source {
	return secret.Source{Name: "audit signing key", Env: AuditKeyEnv, Command: cfg.Audit.SigningKeyCommand, File: cfg.Audit.SigningKeyFile}
}

// AuditSigner loads the key that signs audit checkpoints. Only keyway
// serve creates its file (create); every other command reads it.
func AuditSigner(cfg *config.Config, getenv func(string) string, create bool) (*audit.Signer, error) {
	s, err := auditKeySource(cfg).Load(getenv, create)
	if errors.Is(err, secret.ErrMissing) {
		return nil, fmt.Errorf("%w: no audit signing key at %s (made by keyway serve): run the command where keyway serve runs, point it at the server's config with --config, set %s, or verify with --public-key", store.ErrNoStore, cfg.Audit.SigningKeyFile, AuditKeyEnv)
	}
	if err != nil {
		return nil, err
	}
	return audit.NewSigner(s)
}

// InitAudit makes the audit signing key, as keyway serve would at its
// first start, and signs the trail's head: from then on, a trail with no
// checkpoint at all lost them. Nothing, with checkpoints off.
func InitAudit(ctx context.Context, cfg *config.Config, getenv func(string) string, db audit.CheckpointStore) error {
	if cfg.Audit.CheckpointEvery == 0 {
		return nil
	}
	signer, err := AuditSigner(cfg, getenv, true)
	if err != nil {
		return err
	}
	_, err = (&audit.Checkpointer{Store: db, Signer: signer}).Sign(ctx)
	return err
}

// ParseAuditPublicKey reads an audit public key as printed by keyway audit
// public-key (base64).
func ParseAuditPublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("an audit public key is 32 bytes in base64, as keyway audit public-key prints it")
	}
	return b, nil
}

// VerifyAudit walks the whole audit trail of cfg's store and checks its
// hash chain and its signed checkpoints. pub verifies the checkpoints;
// when nil, the public key is derived from the configured signing key. With
// checkpoints off and no key, only the chain is checked.
func VerifyAudit(ctx context.Context, cfg *config.Config, getenv func(string) string, pub ed25519.PublicKey) (*AuditReport, error) {
	db, err := store.Open(ctx, cfg.Store, false)
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	on := cfg.Audit.CheckpointEvery > 0
	if pub == nil {
		signer, err := AuditSigner(cfg, getenv, false)
		switch {
		case err == nil:
			pub = signer.PublicKey()
		case on || !errors.Is(err, store.ErrNoStore):
			return nil, err
		}
	}
	opts := audit.VerifyOptions{RequireCheckpoint: on}
	if pub != nil {
		opts.Checkpoints, opts.PublicKey = db, pub
	}
	return audit.VerifyTrail(ctx, db, opts)
}

// signCheckpoints signs the head of the audit trail now, then every
// interval while ctx lasts. The last checkpoint, at shutdown, is signed by
// Run once every writer has stopped.
func (a *App) signCheckpoints(ctx context.Context) {
	if a.checkpoints == nil {
		return
	}
	a.signCheckpoint(ctx)
	t := time.NewTicker(a.cfg.Audit.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.signCheckpoint(ctx)
		}
	}
}

// signCheckpoint signs the head if it moved, and logs the checkpoint: log
// lines shipped off the machine keep a copy its database cannot take back.
func (a *App) signCheckpoint(ctx context.Context) {
	if a.checkpoints == nil {
		return
	}
	cp, err := a.checkpoints.Sign(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.logger.Warn("audit checkpoint", slog.String("error", err.Error()))
		}
		return
	}
	if cp != nil {
		a.logger.Info("audit checkpoint", slog.Int64("seq", cp.Seq), slog.String("head", hex.EncodeToString(cp.Head)),
			slog.String("key_id", cp.KeyID), slog.String("signature", base64.StdEncoding.EncodeToString(cp.Signature)))
	}
}

// auditLog adapts the store's audit trail to the portal.
type auditLog struct{ trail audit.Reader }

func (l auditLog) Recent(ctx context.Context, n int) ([]portal.AuditEntry, error) {
	recs, err := l.trail.RecentAuditEvents(ctx, n)
	if err != nil {
		return nil, err
	}
	out := make([]portal.AuditEntry, len(recs))
	for i, r := range recs {
		e := r.Event
		out[i] = portal.AuditEntry{At: e.At, Type: e.Type, Actor: e.Actor, Subject: e.Subject, Detail: e.Detail}
	}
	return out, nil
}
