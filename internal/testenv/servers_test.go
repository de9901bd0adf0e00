package testenv_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/testenv"
)

func TestPrivatePostgres(t *testing.T) {
	srv, dsn := testenv.PrivatePostgres(t)
	ping := func() error {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close(context.Background()) }()
		return c.Ping(context.Background())
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if ping() == nil {
		t.Fatal("up after kill")
	}
	srv.Start()
	if err := ping(); err != nil {
		t.Fatal(err)
	}
}
