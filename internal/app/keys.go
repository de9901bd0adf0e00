package app

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/config"
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

// loadPepper is LoadPepper; without create, a missing pepper file is an
// error that says where it looked (a command run in the wrong place must
// not mint a pepper no server knows).
func loadPepper(cfg *config.Config, getenv func(string) string, create bool) ([]byte, error) {
	if v := strings.TrimSpace(getenv(PepperEnv)); v != "" {
		p, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(p) < 32 {
			return nil, fmt.Errorf("%s must be at least 32 bytes in base64", PepperEnv)
		}
		return p, nil
	}
	if cmd := cfg.APIKeys.PepperCommand; len(cmd) > 0 {
		return pepperFromCommand(cmd)
	}
	file := cfg.APIKeys.PepperFile
	p, err := readPepper(file)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return nil, fmt.Errorf("%w: no pepper file at %s (the API keys' hashing key, made by keyway serve): run the command where keyway serve runs, point it at the server's config with --config or its data with --data-dir, or set %s", store.ErrNoStore, file, PepperEnv)
	}
	if errors.Is(err, fs.ErrNotExist) {
		p = make([]byte, 32)
		if _, err := rand.Read(p); err != nil {
			return nil, err
		}
		enc := base64.StdEncoding.EncodeToString(p) + "\n"
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: path from the operator's config
		if errors.Is(err, fs.ErrExist) {
			return readPepper(file) // another process made it first
		}
		if err != nil {
			return nil, fmt.Errorf("create pepper file: %w", err)
		}
		if _, err := f.WriteString(enc); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write pepper file: %w", err)
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, err
		}
		return p, f.Close()
	}
	return p, err
}

func readPepper(file string) ([]byte, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pepper file %s has mode %v: others must not read it (chmod 600)", file, st.Mode().Perm())
	}
	b, err := os.ReadFile(file) //nolint:gosec // G304: path from the operator's config
	if err != nil {
		return nil, err
	}
	p, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(p) < 32 {
		return nil, fmt.Errorf("pepper file %s must hold at least 32 bytes in base64", file)
	}
	return p, nil
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

// pepperFromCommand runs the configured command (no shell) with a time
// limit and decodes its standard output. Its standard error is not shown:
// it might echo the secret.
func pepperFromCommand(argv []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output() //nolint:gosec // G204: the operator's own configured command
	if err != nil {
		return nil, fmt.Errorf("pepper command %q failed: %w", argv[0], exitOnly(err))
	}
	p, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(out)))
	if err != nil || len(p) < 32 {
		return nil, fmt.Errorf("pepper command %q must print at least 32 bytes in base64", argv[0])
	}
	return p, nil
}

// exitOnly keeps an exec error's exit status and drops captured output.
func exitOnly(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return errors.New(ee.String())
	}
	return err
}
