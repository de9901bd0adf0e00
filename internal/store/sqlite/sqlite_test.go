package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenMigratesAndReopens(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "keyway.db")
	db, err := Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := db.schema()
	if v != len(ms) || v == 0 {
		t.Fatalf("schema version = %d, want %d", v, len(ms))
	}
	var mode string
	if err := db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var sync int
	if err := db.SQL().QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Fatalf("synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("db file mode = %v, want 0600", st.Mode().Perm())
	}

	// Reopening applies nothing twice.
	db, err = Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.SQL().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("migrations recorded = %d, %v", n, err)
	}
	_ = db.Close()
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "keyway.db")
	db, err := Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	_, err = Open(ctx, p)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("err = %v, want ErrSchemaTooNew", err)
	}
}

func TestOpenBadPath(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "missing-dir", "x.db"))
	if err == nil {
		t.Fatal("want error for a directory that does not exist")
	}
}

// TestConcurrentOpen opens one new database from several goroutines at once,
// as `keyway serve` and `keyway keys …` may: every open must wait for the
// others' locks rather than fail with SQLITE_BUSY.
func TestConcurrentOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keyway.db")
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			db, err := Open(context.Background(), p)
			if err == nil {
				err = db.Close()
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
}
