package app

import (
	"context"
	"fmt"
	"os"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/portal"
	"github.com/keywayhq/keyway/internal/store/sqlite"
)

// AuditReport is the outcome of VerifyAudit.
type AuditReport struct {
	// Events is how many events verified.
	Events int64
	// Head is the hash of the last event: keep it elsewhere to detect a
	// rewritten or truncated tail later.
	Head []byte
	// Broken, when not nil, is where the chain stops verifying.
	Broken *audit.ChainError
}

// VerifyAudit walks the whole audit trail of cfg's store and checks its hash chain.
func VerifyAudit(ctx context.Context, cfg *config.Config) (*AuditReport, error) {
	if _, err := os.Stat(cfg.Store.Path); err != nil {
		return nil, fmt.Errorf("no database at %s: %w", cfg.Store.Path, err)
	}
	db, err := sqlite.Open(ctx, cfg.Store.Path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	var v audit.Verifier
	rep := &AuditReport{}
	for after := int64(0); ; {
		recs, err := db.AuditEvents(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if err := v.Add(r); err != nil {
				rep.Broken = err.(*audit.ChainError) //nolint:errorlint // Add returns only *ChainError
				rep.Events, rep.Head = v.Count(), v.Head()
				return rep, nil
			}
			after = r.Seq
		}
		if len(recs) < 1000 {
			break
		}
	}
	rep.Events, rep.Head = v.Count(), v.Head()
	return rep, nil
}

// auditLog adapts the store's audit trail to the portal.
type auditLog struct{ db *sqlite.DB }

func (l auditLog) Recent(ctx context.Context, n int) ([]portal.AuditEntry, error) {
	recs, err := l.db.RecentAuditEvents(ctx, n)
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
