package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresDSN returns the DSN of a fresh, empty schema in the PostgreSQL
// database named by KEYWAY_TEST_POSTGRES_DSN (a postgres:// URL), dropped
// when t ends. Without the variable, t skips (or fails under
// KEYWAY_TEST_STRICT=1).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("KEYWAY_TEST_POSTGRES_DSN")
	if base == "" {
		Missing(t, "PostgreSQL", "set KEYWAY_TEST_POSTGRES_DSN=postgres://user@127.0.0.1:5432/db?sslmode=disable (a database the tests may create schemas in)")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("KEYWAY_TEST_POSTGRES_DSN must be a postgres:// URL")
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "kwtest_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		Missing(t, "PostgreSQL at KEYWAY_TEST_POSTGRES_DSN", "start it (see .ci/run) or unset the variable: "+err.Error())
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop test schema %s: %v", schema, err)
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop test schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
