package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/store"
	"github.com/keywayhq/keyway/internal/store/postgres"
	"github.com/keywayhq/keyway/internal/store/sqlite"
)

const migrateUsage = `Usage:
  keyway migrate [--config FILE | --data-dir DIR] [--store DSN] [-o text|json]
      bring the store's schema up to date (keyway serve does it on start;
      nodes that start together take turns)
  keyway migrate --from sqlite:PATH --to postgres://… [-o text|json]
      copy a SQLite store into a new, empty PostgreSQL database, in one
      transaction, and verify the copied audit trail. Stop the server that
      uses the SQLite file first. The pepper is not in either store: keep
      the same pepper file (or KEYWAY_PEPPER) for the nodes.
`

// cmdMigrate runs `keyway migrate`.
func cmdMigrate(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stderr, migrateUsage)
		return exitUsage
	}
	fs := newFlags("migrate", stderr)
	load := dataDirConfig(fs)
	from := fs.String("from", "", "SQLite store to copy from: sqlite:PATH")
	to := fs.String("to", "", "empty PostgreSQL store to copy to: postgres://…")
	out := outputFlag(fs)
	if err := fs.Parse(args); err != nil || !validOutput(*out, stderr) || fs.NArg() > 0 {
		return exitUsage
	}
	ctx := context.Background()
	if *from != "" || *to != "" {
		return migrateCopy(ctx, *from, *to, *out, stdout, stderr)
	}
	cfg, err := load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	db, err := store.Open(ctx, cfg.Store, false) // a SQLite store is made by keyway serve, not here
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	defer func() { _ = db.Close() }()
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if *out == "json" {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"driver": cfg.Store.Driver, "schema_version": v})
	} else {
		fmt.Fprintf(stdout, "%s store at schema version %d: up to date\n", cfg.Store.Driver, v)
	}
	return exitOK
}

func migrateCopy(ctx context.Context, from, to, out string, stdout, stderr io.Writer) int {
	var src, dst config.Config
	src.SetStore(from)
	dst.SetStore(to)
	if src.Store.Driver != "sqlite" || src.Store.Path == "" || dst.Store.Driver != "postgres" {
		fmt.Fprintf(stderr, "keyway migrate: want --from sqlite:PATH and --to postgres://…\n\n%s", migrateUsage)
		return exitUsage
	}
	if _, err := os.Stat(src.Store.Path); err != nil { // sqlite.Open would make an empty one
		fmt.Fprintf(stderr, "keyway: no SQLite store at %s\n", src.Store.Path)
		return exitError
	}
	s, err := sqlite.Open(ctx, src.Store.Path)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	defer func() { _ = s.Close() }()
	p, err := postgres.Open(ctx, dst.Store.DSN)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	defer func() { _ = p.Close() }()
	var keys *sqlite.Keys
	if kp := filepath.Join(filepath.Dir(src.Store.Path), "keys.db"); fileExists(kp) {
		if keys, err = sqlite.OpenKeys(ctx, kp); err != nil {
			fmt.Fprintf(stderr, "keyway: %v\n", err)
			return exitError
		}
		defer func() { _ = keys.Close() }()
	}
	rep, err := store.Copy(ctx, s, keys, p)
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v (nothing was copied)\n", err)
		return exitError
	}
	if out == "json" {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"rows": rep.Rows, "audit_events_verified": rep.AuditEvents})
		return exitOK
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(rep.Rows)) {
		parts = append(parts, fmt.Sprintf("%s %d", t, rep.Rows[t]))
	}
	fmt.Fprintf(stdout, "copied: %s\naudit trail verified on PostgreSQL: %d events\n", strings.Join(parts, ", "), rep.AuditEvents)
	return exitOK
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
