package app

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/secret"
	"github.com/keywayhq/keyway/internal/store"
)

// PepperEnv names the environment variable that may hold the pepper (base64).
const PepperEnv = "KEYWAY_PEPPER"

// LoadPepper returns the secret that keys the stored hashes of API keys:
// from KEYWAY_PEPPER when set, else from the pepper file, which is created
// (32 random bytes, base64, mode 0600) on first use. A pepper file that
// others may read is refused: with the database, it is what a thief needs.
func LoadPepper(cfg *config.Config, getenv func(string) string) ([]byte, error) {
	return loadPepper(cfg, getenv, true)
}

// PepperFor is LoadPepper for the store db: it makes a pepper only for a
// store that holds no key yet. A store with keys whose pepper file is
// missing (restored from a backup without it, or started beside the wrong
// folder) is refused: a new pepper would turn every key away, silently.
func PepperFor(ctx context.Context, cfg *config.Config, getenv func(string) string, db apikey.Store) ([]byte, error) {
	p, err := loadPepper(cfg, getenv, false)
	if !errors.Is(err, store.ErrNoStore) {
		return p, err
	}
	keys, lerr := db.ListKeys(ctx, "")
	if lerr != nil {
		return nil, lerr
	}
	if len(keys) > 0 {
		return nil, fmt.Errorf("the store holds %d API keys but their pepper file %s is missing: restore it from your backup (or set %s); a new pepper would turn every key away", len(keys), cfg.APIKeys.PepperFile, PepperEnv)
	}
	return LoadPepper(cfg, getenv)
}

// pepperSource is where cfg keeps the pepper.
func pepperSource(cfg *config.Config) secret.Source {
	return secret.Source{Name: "pepper", Env: PepperEnv, Command: cfg.APIKeys.PepperCommand, File: cfg.APIKeys.PepperFile}
}

// loadPepper is LoadPepper; without create, a missing pepper file is an
// error that says where it looked (a command run in the wrong place must
// not mint a pepper no server knows).
func loadPepper(cfg *config.Config, getenv func(string) string, create bool) ([]byte, error) {
	p, err := pepperSource(cfg).Load(getenv, create)
	if errors.Is(err, secret.ErrMissing) {
		return nil, fmt.Errorf("%w: no pepper file at %s (the API keys' hashing key, made by keyway serve): run the command where keyway serve runs, point it at the server's config with --config or its data with --data-dir, or set %s", store.ErrNoStore, cfg.APIKeys.PepperFile, PepperEnv)
	}
	return p, err
}

// derivedKey derives a key for one purpose from the pepper (HKDF-SHA-256),
// so that each use of the one secret kept outside the database has a key
// of its own.
func derivedKey(pepper []byte, purpose string) ([]byte, error) {
	return hkdf.Key(sha256.New, pepper, nil, "keyway "+purpose, 32)
}

func newKeyService(ctx context.Context, cfg *config.Config, db store.Store, logger *slog.Logger, pepper []byte, quotas apikey.QuotaCounter) (*apikey.Service, error) {
	return apikey.New(ctx, apikey.Config{
		Store: db, Changes: db, Usage: db, Pepper: pepper, Logger: logger, Quotas: quotas,
		DefaultTTL: cfg.APIKeys.DefaultTTL, MaxTTL: cfg.APIKeys.MaxTTL,
		Clients: slices.Sorted(maps.Keys(cfg.Clients)),
	})
}

// Keys is the key service of a data directory, for the CLI: it works
// whether or not a server runs on the same data directory, whose caches
// learn of every change within a second through the store's change feed.
type Keys struct {
	*apikey.Service
	db store.Store
}

// OpenKeys opens the store of cfg and its key service.
//
// It never creates a store or a pepper: only keyway serve does. A command
// run in the wrong folder gets store.ErrNoStore, saying where it looked.
func OpenKeys(ctx context.Context, cfg *config.Config, logger *slog.Logger, getenv func(string) string) (*Keys, error) {
	db, err := store.Open(ctx, cfg.Store, false)
	if err != nil {
		return nil, err
	}
	pepper, err := loadPepper(cfg, getenv, false)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	svc, err := newKeyService(ctx, cfg, db, logger, pepper, nil) // the CLI takes no requests
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Keys{Service: svc, db: db}, nil
}

// Close flushes usage and closes the store.
func (k *Keys) Close() error {
	k.Flush(context.Background())
	return k.db.Close()
}
