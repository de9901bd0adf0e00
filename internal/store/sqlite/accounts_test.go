package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/passkey"
)

// Constraint violations are told apart by the driver's result code, not by
// an error's text: a taken username and a credential ID registered twice
// come back as the domain's errors, and nothing of the failed sign-up stays.
func TestConstraintViolationsAreTyped(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "keyway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	user := func(id, name string) *passkey.User {
		return &passkey.User{ID: id, Handle: []byte("handle-" + id), Username: name, DisplayName: name, Role: passkey.RoleUser, CreatedAt: now}
	}
	cred := func(id, user string) *passkey.Credential {
		return &passkey.Credential{ID: []byte(id), UserID: user, Name: "key", PublicKey: []byte{1}, CreatedAt: now}
	}
	if err := db.CreateUser(ctx, user("u1", "ada"), cred("c1", "u1"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateUser(ctx, user("u2", "ada"), cred("c2", "u2"), nil, nil); !errors.Is(err, passkey.ErrUsernameTaken) {
		t.Fatalf("a taken username: %v, want ErrUsernameTaken", err)
	}
	if err := db.CreateUser(ctx, user("u3", "bea"), cred("c1", "u3"), nil, nil); !errors.Is(err, passkey.ErrCeremony) {
		t.Fatalf("a credential ID registered twice: %v, want ErrCeremony", err)
	}
	var n int
	if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("users after two refused sign-ups: %d (%v), want 1: a refused sign-up leaves nothing", n, err)
	}
	if isUnique(errors.New("UNIQUE constraint failed: users.username")) {
		t.Fatal("an error's text alone must not count as a constraint violation")
	}
}
