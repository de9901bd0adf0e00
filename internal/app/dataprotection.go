package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/secret"
	"github.com/keywayhq/keyway/internal/store"
	"github.com/keywayhq/keyway/internal/store/postgres"
	"github.com/keywayhq/keyway/internal/store/sqlite"
)

// KEKEnv names the environment variable that may hold the KEK ring: keys
// in base64, separated by white space, the current one first.
const KEKEnv = "KEYWAY_KEK"

// kekSource is where cfg keeps the KEK ring.
func kekSource(cfg *config.Config) secret.Source {
	return secret.Source{Name: "KEK", Env: KEKEnv, Command: cfg.DataProtection.KEKCommand, File: cfg.DataProtection.KEKFile}
}

// KeyStorePath is the SQLite key store of cfg, or "" when the data keys
// live in PostgreSQL.
func KeyStorePath(cfg *config.Config) string {
	ks := cfg.DataProtection.KeyStore
	switch {
	case strings.HasPrefix(ks, "sqlite:"):
		return strings.TrimPrefix(ks, "sqlite:")
	case ks == "" && cfg.Store.Driver != "postgres":
		return filepath.Join(filepath.Dir(cfg.Store.Path), "keys.db")
	}
	return ""
}

// openKeyStore opens the key store of cfg. The returned closer is nil
// when the key store is db itself.
func openKeyStore(ctx context.Context, cfg *config.Config, db store.Store, create bool) (crypt.KeyStore, io.Closer, error) {
	if path := KeyStorePath(cfg); path != "" {
		if _, err := os.Stat(path); err != nil && !create {
			return nil, nil, fmt.Errorf("%w: no key store at %s (the people's data keys, made by keyway serve): run the command where keyway serve runs, or point it at the server's config with --config", store.ErrNoStore, path)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, nil, err
		}
		k, err := sqlite.OpenKeys(ctx, path)
		if err != nil {
			return nil, nil, err
		}
		return k, k, nil
	}
	if dsn := cfg.DataProtection.KeyStore; dsn != "" {
		p, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("key store: %w", err)
		}
		return p, p, nil
	}
	ks, ok := db.(crypt.KeyStore)
	if !ok {
		return nil, nil, errors.New("this store keeps no data keys: set data_protection.key_store")
	}
	return ks, nil, nil
}

// Store is a store opened with the sealer of its personal data.
type Store struct {
	store.Store
	keys   io.Closer
	pepper []byte
}

// Close closes the store and its key store.
func (s *Store) Close() error {
	err := s.Store.Close()
	if s.keys != nil {
		err = errors.Join(err, s.keys.Close())
	}
	return err
}

// OpenStore opens cfg's store with the sealer of its personal data, for
// the CLI: it never creates a store, a pepper, a KEK or a key store.
func OpenStore(ctx context.Context, cfg *config.Config, getenv func(string) string) (*Store, error) {
	db, err := store.Open(ctx, cfg.Store, false)
	if err != nil {
		return nil, err
	}
	pepper, err := loadPepper(cfg, getenv, false)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	keys, err := sealStore(ctx, cfg, getenv, db, pepper, false)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Store{Store: db, keys: keys, pepper: pepper}, nil
}

// InitDataProtection makes the KEK and the key store of cfg, as keyway
// serve would at its first start, and checks them against db.
func InitDataProtection(ctx context.Context, cfg *config.Config, getenv func(string) string, db store.Store, pepper []byte) error {
	closer, err := sealStore(ctx, cfg, getenv, db, pepper, true)
	if err == nil && closer != nil {
		err = closer.Close()
	}
	return err
}

// sealStore gives db the sealer of its personal fields: the KEK ring, the
// key store and the look-up key, derived from the pepper. With create
// (serve, init), a missing KEK file and key store are made; a store whose
// people's keys or KEK are missing is refused, whatever create says (see
// the stores' UseSealer). It returns what to close after db.
func sealStore(ctx context.Context, cfg *config.Config, getenv func(string) string, db store.Store, pepper []byte, create bool) (io.Closer, error) {
	src := kekSource(cfg)
	if _, err := src.LoadRing(getenv, create); err != nil {
		if errors.Is(err, secret.ErrMissing) {
			return nil, fmt.Errorf("%w: no KEK file at %s (the key that wraps the people's data keys, made by keyway serve): run the command where keyway serve runs, point it at the server's config with --config, or set %s", store.ErrNoStore, cfg.DataProtection.KEKFile, KEKEnv)
		}
		return nil, err
	}
	ring, err := crypt.NewRing(func() ([][]byte, error) { return src.LoadRing(getenv, false) })
	if err != nil {
		return nil, err
	}
	keys, closer, err := openKeyStore(ctx, cfg, db, create)
	if err != nil {
		return nil, err
	}
	indexKey, err := derivedKey(pepper, "personal data index v1")
	if err == nil {
		var s *crypt.Sealer
		if s, err = crypt.NewSealer(ring, keys, indexKey); err == nil {
			err = db.UseSealer(ctx, s)
		}
	}
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return nil, err
	}
	return closer, nil
}
