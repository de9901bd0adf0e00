// Package store opens the store a config names: the embedded SQLite file
// (store/sqlite) or a PostgreSQL database shared by many nodes
// (store/postgres). Both keep the same promises, checked by store/storetest;
// everything above this package sees only the interfaces of the domain
// packages.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/store/postgres"
	"github.com/keywayhq/keyway/internal/store/sqlite"
)

// Store is everything keyway keeps.
type Store interface {
	passkey.Store
	passkey.SourceStore
	session.Store
	apikey.Store
	apikey.ChangeFeed
	apikey.UsageStore
	audit.Reader
	audit.CheckpointStore
	audit.Appender
	// SessionWithUser is SessionByToken that also returns the session's
	// person, read in the same statement (the session route's check).
	SessionWithUser(ctx context.Context, tokenHash []byte) (*session.Session, *passkey.User, error)
	// UseSealer gives the store the sealer of personal fields; until then
	// reading or writing one is an error.
	UseSealer(ctx context.Context, s *crypt.Sealer) error
	// Sealer is the store's sealer; nil before UseSealer.
	Sealer() *crypt.Sealer
	// KEKMark records the KEK the data keys are wrapped under (see
	// sealed.Legacy).
	KEKMark(ctx context.Context, id string, replace bool) (string, error)
	// AuditOrigin opens the address a stored audit event came from.
	AuditOrigin(ctx context.Context, r audit.Record) (string, error)
	// PruneChanges drops key change-feed entries older than before.
	PruneChanges(ctx context.Context, before time.Time) (int64, error)
	// SchemaVersion is the highest migration applied.
	SchemaVersion(ctx context.Context) (int, error)
	// Ping checks that the store answers, for readiness.
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ Store = (*sqlite.DB)(nil)
	_ Store = (*postgres.DB)(nil)
)

// ErrNoStore means a command that only reads or changes data found no
// store where the config points.
var ErrNoStore = errors.New("no keyway store here")

// Open opens the store of cfg and brings its schema up to date. With
// create false, a SQLite file that does not exist yet is an error naming
// where it looked (ErrNoStore), instead of a new, empty store.
func Open(ctx context.Context, cfg config.Store, create bool) (Store, error) {
	return OpenTraced(ctx, cfg, create, nil)
}

// OpenTraced is Open with a tracer of every PostgreSQL query (nil: none;
// the embedded SQLite store is traced by its callers' spans).
func OpenTraced(ctx context.Context, cfg config.Store, create bool, tracer pgx.QueryTracer) (Store, error) {
	switch cfg.Driver {
	case "postgres":
		return postgres.OpenTraced(ctx, cfg.DSN, tracer)
	case "sqlite", "":
		if !create {
			if _, err := os.Stat(cfg.Path); err != nil {
				return nil, fmt.Errorf("%w: no database at %s; only keyway serve and keyway init create one. Run the command where keyway serve runs, or point it at the server's data with --config FILE, --data-dir DIR or --store DSN", ErrNoStore, cfg.Path)
			}
		} else if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		return sqlite.Open(ctx, cfg.Path)
	default:
		return nil, fmt.Errorf("store driver %q is unknown", cfg.Driver)
	}
}
