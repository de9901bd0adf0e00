// Package sqlitetest opens the SQLite store for the tests of other
// packages, sealed as keyway serve seals it (with a fixed test KEK).
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keywayhq/keyway/internal/store/sqlite"
	"github.com/keywayhq/keyway/internal/store/storetest"
)

// Open opens a new store, with its key store, in a temporary directory,
// closed when the test ends.
func Open(t testing.TB) *sqlite.DB {
	t.Helper()
	return OpenAt(t, filepath.Join(t.TempDir(), "keyway.db"))
}

// OpenAt opens the store at path (made if missing), with its key store
// beside it.
func OpenAt(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	keys, err := sqlite.OpenKeys(ctx, filepath.Join(filepath.Dir(path), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	storetest.Seal(t, db, keys)
	return db
}
