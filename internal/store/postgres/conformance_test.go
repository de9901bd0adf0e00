package postgres_test

import (
	"context"
	"testing"

	"github.com/keywayhq/keyway/internal/store/postgres"
	"github.com/keywayhq/keyway/internal/store/storetest"
	"github.com/keywayhq/keyway/internal/testenv"
)

func open(t testing.TB) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	storetest.Seal(t, db, db)
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t) },
		func(ctx context.Context, s storetest.Store, stmt string) error {
			_, err := s.(*postgres.DB).Pool().Exec(ctx, stmt)
			return err
		})
}

// BenchmarkSessionRead: see storetest.BenchSessionRead.
func BenchmarkSessionRead(b *testing.B) { storetest.BenchSessionRead(b, open(b)) }
