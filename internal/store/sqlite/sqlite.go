// Package sqlite is keyway's embedded store: one SQLite file in the data
// directory, opened through the pure-Go modernc.org/sqlite driver (no cgo).
//
// Durability: the database runs in WAL mode with synchronous=FULL, so a
// transaction that returned is on disk even if the machine loses power right
// after; keyway never acknowledges a change before its commit returns.
// The file is created with mode 0600: it will hold key hashes and personal data.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/store/schema"
	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// isUnique reports a UNIQUE or PRIMARY KEY constraint violation, by the
// driver's extended result code: an error's text is for people and may
// change with any release.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// isBusy reports SQLITE_BUSY in any of its forms.
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

//go:embed migrations/*.sql keys/*.sql
var migrationFS embed.FS

// ErrSchemaTooNew means the database was migrated by a newer keyway; an older
// binary refuses to touch it rather than misread it.
var ErrSchemaTooNew = errors.New("database schema is newer than this keyway")

// DB is an open keyway SQLite database.
type DB struct {
	sql  *sql.DB
	path string
	// migrations is the folder of migrationFS with this database's schema.
	migrations string
	// sealer seals personal fields; nil until UseSealer.
	sealer *crypt.Sealer
	// stmts holds the statements read on every request (query → *sql.Stmt),
	// prepared once per connection instead of parsed at every call.
	stmts sync.Map
}

// Open opens (creating if needed) the database at path and applies every
// pending migration.
func Open(ctx context.Context, path string) (*DB, error) {
	return open(ctx, path, "migrations")
}

func open(ctx context.Context, path, migrations string) (*DB, error) {
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{
		// First, so that the pragmas after it, and migrations, wait for a
		// lock another process (the CLI beside a server) holds instead of
		// failing with SQLITE_BUSY.
		"busy_timeout(5000)",
		"journal_mode(WAL)",
		"synchronous(FULL)", // WAL + NORMAL may lose the last commits on power loss
		"foreign_keys(1)",
		"trusted_schema(0)",
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate") // writers take the lock up front: no upgrade deadlocks
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// SQLite allows one writer; a small pool keeps readers concurrent in WAL.
	// Every connection stays open (database/sql keeps 2 idle by default):
	// under load the others were closed and reopened all the time, each
	// reopening paying the pragmas and a parse of the whole schema.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	d := &DB{sql: db, path: path, migrations: migrations}
	if err := d.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return d, nil
}

func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // G304: the path is the operator's own config
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return f.Close()
}

// SQL returns the underlying handle, for the store implementations in this
// package and for tests.
func (d *DB) SQL() *sql.DB { return d.sql }

// Path is the database file.
func (d *DB) Path() string { return d.path }

// Ping checks that the database answers a query, for readiness probes.
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.sql.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

// queryRow runs a statement read on every request through a prepared
// statement kept for the life of d; if it cannot be prepared, it runs as a
// plain query and the error, if any, comes from there.
func (d *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st, ok := d.stmts.Load(query); ok {
		return st.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	st, err := d.sql.PrepareContext(ctx, query)
	if err != nil {
		return d.sql.QueryRowContext(ctx, query, args...)
	}
	if prev, loaded := d.stmts.LoadOrStore(query, st); loaded {
		defer func() { _ = st.Close() }() // another call's is kept
		return prev.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// Close checkpoints the WAL and closes the database.
func (d *DB) Close() error {
	d.stmts.Range(func(k, v any) bool {
		_ = v.(*sql.Stmt).Close()
		d.stmts.Delete(k)
		return true
	})
	_, _ = d.sql.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
	return d.sql.Close()
}

// SchemaVersion returns the highest migration applied.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.sql.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

func (d *DB) schema() ([]schema.Migration, error) { return schema.Load(migrationFS, d.migrations) }

// migrate applies each pending migration in its own transaction, recording
// its version in the same transaction, so a crash leaves the schema at a
// whole version.
func (d *DB) migrate(ctx context.Context) error {
	// Processes opening a new file at once may meet SQLITE_BUSY that the
	// busy timeout does not cover (the switch to WAL, a read lock that
	// must become a write lock): such a failure is retried, for a while.
	var err error
	for wait := time.Millisecond; ; wait *= 2 {
		_, err = d.sql.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
	) STRICT`)
		if !isBusy(err) || wait > time.Second {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	ms, err := d.schema()
	if err != nil {
		return err
	}
	cur, err := d.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("%w: database at version %d, this binary knows %d", ErrSchemaTooNew, cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if err := d.apply(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (d *DB) apply(ctx context.Context, m schema.Migration) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	defer func() { _ = tx.Rollback() }()
	// Another process may have applied it since we looked: the transaction
	// holds the write lock (BEGIN IMMEDIATE), so this check is race-free.
	var done int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&done); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if done > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", m.Version, m.Name); err != nil {
		return fmt.Errorf("migration %s: record version: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: commit: %w", m.Name, err)
	}
	return nil
}
