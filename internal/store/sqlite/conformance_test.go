package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keywayhq/keyway/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openSealed(t)
	}, func(ctx context.Context, s storetest.Store, stmt string) error {
		_, err := s.(*DB).SQL().ExecContext(ctx, stmt)
		return err
	})
}

// openSealed opens a new store with its key store beside it.
func openSealed(t testing.TB) *DB {
	t.Helper()
	dir := t.TempDir()
	db, err := Open(context.Background(), filepath.Join(dir, "keyway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	keys, err := OpenKeys(context.Background(), filepath.Join(dir, "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	storetest.Seal(t, db, keys)
	return db
}
