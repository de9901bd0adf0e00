package app

import (
	"context"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/portal"
	"github.com/keywayhq/keyway/internal/store"
)

// AuditReport is the outcome of VerifyAudit.
type AuditReport = audit.Report

// VerifyAudit walks the whole audit trail of cfg's store and checks its hash chain.
func VerifyAudit(ctx context.Context, cfg *config.Config) (*AuditReport, error) {
	db, err := store.Open(ctx, cfg.Store, false)
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	return audit.VerifyTrail(ctx, db)
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
