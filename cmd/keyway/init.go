package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
	starter := fs.String("for", "", "write a starter config instead: "+strings.Join(starterCases, ", "))
	file := fs.String("out", "", "with --for: the file to write (default: standard output); never overwritten")
	if err := fs.Parse(args); err != nil || !validOutput(*out, stderr) || fs.NArg() > 0 {
		return exitUsage
	}
	if *starter != "" || *file != "" {
		var other []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "for" && f.Name != "out" {
				other = append(other, "--"+f.Name)
			}
		})
		if *starter == "" {
			other = append(other, "--out without --for")
		}
		if len(other) > 0 {
			fmt.Fprintf(stderr, "keyway: init --for CASE [--out FILE] writes a config and takes no other flag (got %s); run keyway init --config FILE after, to make the store\n",
				strings.Join(other, ", "))
			return exitUsage
		}
		return writeStarter(*starter, *file, stdout, stderr)
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

// starters are the commented configs of keyway init --for, one per case;
// each is accepted by keyway check --strict as written (TestInitStarters).
//
//go:embed starters/*.yaml
var starters embed.FS

var starterCases = []string{"gateway", "forward-auth", "cluster"}

func writeStarter(name, file string, stdout, stderr io.Writer) int {
	if !slices.Contains(starterCases, name) {
		fmt.Fprintf(stderr, "keyway: init --for %q: want one of %s\n", name, strings.Join(starterCases, ", "))
		return exitUsage
	}
	b, err := starters.ReadFile("starters/" + name + ".yaml")
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if file == "" {
		_, _ = stdout.Write(b)
		return exitOK
	}
	// O_EXCL: a starter never replaces a config someone wrote.
	f, err := os.OpenFile(filepath.Clean(file), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		fmt.Fprintf(stderr, "keyway: write %s: %v\n", file, err)
		return exitError
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(stderr, "keyway: write %s: %v\n", file, err)
		return exitError
	}
	fmt.Fprintf(stdout, "wrote %s: a starter config for %s; edit it, then keyway check --strict --config %s\n", file, name, file)
	return exitOK
}
