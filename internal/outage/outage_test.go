package outage_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/keywayhq/keyway/internal/outage"
	_ "modernc.org/sqlite"
)

func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	// A PostgreSQL that is not there: a port nobody listens on.
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, refused := pgx.Connect(ctx, "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2")
	if refused == nil {
		t.Fatal("connected to a closed port")
	}

	// A SQLite database locked by another writer, with no busy timeout.
	p := filepath.Join(t.TempDir(), "x.db")
	a, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	if _, err := a.ExecContext(ctx, "CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	b, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	tx, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	_, busy := b.ExecContext(ctx, "INSERT INTO t VALUES (2)")
	if busy == nil {
		t.Fatal("a second writer was not refused")
	}
	_, syntax := a.ExecContext(ctx, "INSERT INTO nowhere VALUES (1)")

	deadline, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-deadline.Done()

	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused by PostgreSQL's address", refused, true},
		{"the same, wrapped", fmt.Errorf("open session: %w", refused), true},
		{"SQLite busy", busy, true},
		{"PostgreSQL shutting down", &pgconn.PgError{Code: "57P01"}, true},
		{"PostgreSQL too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"PostgreSQL disk full", &pgconn.PgError{Code: "53100"}, true},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"a deadline", deadline.Err(), true},
		{"a unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"a syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"SQLite: no such table", syntax, false},
		{"no rows", sql.ErrNoRows, false},
		{"a plain error", errors.New("broken invariant"), false},
		{"nil", nil, false},
	} {
		if got := outage.Is(tt.err); got != tt.want {
			t.Errorf("%s (%v): Is = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
