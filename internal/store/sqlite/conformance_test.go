package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keywayhq/keyway/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "keyway.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}, func(ctx context.Context, s storetest.Store, stmt string) error {
		_, err := s.(*DB).SQL().ExecContext(ctx, stmt)
		return err
	})
}
