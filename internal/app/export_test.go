package app

import (
	"context"

	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/store"
)

// AuditHead returns the newest event of cfg's audit trail and its hash.
func AuditHead(ctx context.Context, cfg *config.Config) (int64, []byte, error) {
	db, err := store.Open(ctx, cfg.Store, false)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = db.Close() }()
	return db.AuditHead(ctx)
}
