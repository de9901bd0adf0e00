package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/store"
)

// cmdInit runs `keyway init`: it makes the data directory, the store, the
// pepper, the KEK and key store, and the audit signing key that keyway
// serve would make at its
// first start (and signs the empty trail), so that keys and invitations
// can be made before the server first runs. With serve, it
// is the only command that creates anything; the others refuse a store
// that is not there.
func cmdInit(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("init", stderr)
	load := dataDirConfig(fs)
	out := outputFlag(fs)
	if err := fs.Parse(args); err != nil || !validOutput(*out, stderr) || fs.NArg() > 0 {
		return exitUsage
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	ctx := context.Background()
	existed := true
	if probe, err := store.Open(ctx, cfg.Store, false); errors.Is(err, store.ErrNoStore) {
		existed = false
	} else if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	} else {
		_ = probe.Close()
	}
	if cfg.Store.Driver != "postgres" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			fmt.Fprintf(stderr, "keyway: create data dir: %v\n", err)
			return exitError
		}
	}
	db, err := store.Open(ctx, cfg.Store, true)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	defer func() { _ = db.Close() }()
	pepper, err := app.PepperFor(ctx, cfg, getenv, db)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if err := app.InitDataProtection(ctx, cfg, getenv, db, pepper); err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if err := app.InitAudit(ctx, cfg, getenv, db); err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	where := cfg.Store.Path
	if cfg.Store.Driver == "postgres" {
		where = "the PostgreSQL database of the DSN"
	}
	if *out == "json" {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"driver": cfg.Store.Driver, "created": !existed, "schema_version": v, "data_dir": cfg.DataDir})
		return exitOK
	}
	if existed {
		fmt.Fprintf(stdout, "already initialised: %s store at %s, schema version %d\n", cfg.Store.Driver, where, v)
	} else {
		fmt.Fprintf(stdout, "initialised: %s store at %s, schema version %d; data directory %s\n", cfg.Store.Driver, where, v, cfg.DataDir)
	}
	return exitOK
}
