// Package postgres is keyway's shared store for many nodes: the same
// tables and promises as the embedded SQLite store (both pass
// store/storetest), on PostgreSQL through a pgx connection pool.
//
// Concurrency: PostgreSQL runs transactions side by side where SQLite runs
// one writer at a time, so every rule SQLite got from that is made explicit
// here. Read-modify-write steps lock the row they read (SELECT … FOR
// UPDATE); the audit chain and the key change feed are appended under one
// transaction-scoped advisory lock, the journal lock, so that their sequence
// numbers are gapless and become visible in order on every node; sign-ups
// that spend a setup link are serialised by a lock of their own.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/store/schema"
)

// Advisory lock keys, fixed for the life of the schema. They are 64-bit
// numbers in one space per database; these spell "keyway" and a purpose.
const (
	lockMigrate int64 = 0x6b65797761790001 // schema migrations, held across nodes starting at once
	lockJournal int64 = 0x6b65797761790002 // the audit chain and the key change feed
	lockSignUp  int64 = 0x6b65797761790003 // sign-ups on conditions (setup links)
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// ErrSchemaTooNew means the database was migrated by a newer keyway; an
// older binary refuses to touch it rather than misread it.
var ErrSchemaTooNew = errors.New("database schema is newer than this keyway")

// DB is an open keyway PostgreSQL database.
type DB struct {
	pool *pgxpool.Pool
	dsn  string
	// sealer seals personal fields; nil until UseSealer.
	sealer *crypt.Sealer
}

// Open connects to the database of dsn (a postgres:// URL or key=value
// string; pool_max_conns and the other pgxpool parameters apply) and
// applies every pending migration.
func Open(ctx context.Context, dsn string) (*DB, error) {
	return OpenTraced(ctx, dsn, nil)
}

// OpenTraced is Open with a tracer of every query (nil: none).
func OpenTraced(ctx context.Context, dsn string, tracer pgx.QueryTracer) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password and all.
		return nil, errors.New("postgres: the DSN does not parse (expected postgres://user@host:port/db?sslmode=…)")
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	d := &DB{pool: pool, dsn: dsn}
	if err := d.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return d, nil
}

// Pool returns the connection pool, for the rest of this package and for tests.
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// Ping checks that the database answers a query, for readiness probes.
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Close closes every connection of the pool.
func (d *DB) Close() error {
	d.pool.Close()
	return nil
}

// SchemaVersion returns the highest migration applied.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.pool.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// inTx runs fn in one transaction and commits it, or rolls it back on error.
func (d *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, d.pool, fn)
}

// isUnique reports a unique or primary-key violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// lock takes a transaction-scoped advisory lock, released at commit or rollback.
func lock(ctx context.Context, tx pgx.Tx, key int64) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
		return fmt.Errorf("take lock: %w", err)
	}
	return nil
}

func migrations() ([]schema.Migration, error) { return schema.Load(migrationFS, "migrations") }

// migrate applies each pending migration in its own transaction. Nodes
// that start together queue on an advisory lock: the first migrates, the
// others then find nothing to do.
func (d *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockMigrate); err != nil {
		return fmt.Errorf("postgres: take the migration lock: %w", err)
	}
	defer func() {
		// A session lock: released here, or when the connection closes.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockMigrate)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var cur int
	if err := conn.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&cur); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("%w: database at version %d, this binary knows %d", ErrSchemaTooNew, cur, len(ms))
	}
	for _, m := range ms[cur:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}
