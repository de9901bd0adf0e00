package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/store/storetest"
)

// BenchmarkSessionCheck is what a session route asks the store for each
// request: the session by its token's hash, then its person. "sealed" is
// keyway's path, with the person's fields sealed; "clear" reads the same
// row's fields in clear, as keyway did before sealing. The clear/sealed
// metric is what sealing costs a session check (target ≥ 0.97: a session
// check decrypts nothing; its person's fields come from the opened-value
// cache). docs/performance.md has the figures.
func BenchmarkSessionCheck(b *testing.B) {
	ctx := context.Background()
	db, token, u := benchSession(b)
	// The clear copy of the fields, in the columns that held them.
	if _, err := db.sql.ExecContext(ctx, `UPDATE users SET display_name = ? WHERE id = ?`, u.DisplayName, u.ID); err != nil {
		b.Fatal(err)
	}
	clear := func() {
		if _, err := db.SessionByToken(ctx, token); err != nil {
			b.Fatal(err)
		}
		// What scanUser did before sealing, field for field.
		var got passkey.User
		var role, roles string
		var created int64
		var disabled sql.NullInt64
		if err := db.queryRow(ctx, `SELECT id, handle, username, display_name, role, created_at, disabled_at, roles FROM users WHERE id = ?`, u.ID).
			Scan(&got.ID, &got.Handle, &got.Username, &got.DisplayName, &role, &created, &disabled, &roles); err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal([]byte(roles), &got.Roles); err != nil {
			b.Fatal(err)
		}
		got.Role, got.CreatedAt = passkey.Role(role), time.Unix(0, created).UTC()
		if got.DisplayName != u.DisplayName {
			b.Fatal("clear display name")
		}
	}
	sealed := func() {
		if _, err := db.SessionByToken(ctx, token); err != nil {
			b.Fatal(err)
		}
		if got, err := db.UserByID(ctx, u.ID); err != nil || got.DisplayName != u.DisplayName {
			b.Fatal(err)
		}
	}
	inClear, inSealed := storetest.Interleave(b, clear, sealed)
	b.ReportMetric(inClear, "clear-ns/check")
	b.ReportMetric(inSealed, "sealed-ns/check")
	b.ReportMetric(inClear/inSealed, "clear/sealed")
}

// benchSession is a sealed store holding one person and one session,
// and the hash of that session's token.
func benchSession(b *testing.B) (*DB, []byte, *passkey.User) {
	ctx := context.Background()
	db := openSealed(b)
	u := &passkey.User{ID: "usr_bench", Handle: []byte("h-bench"), Username: "bench", DisplayName: "Bench Marker", Role: passkey.RoleUser, CreatedAt: time.Now()}
	c := &passkey.Credential{ID: []byte("c-bench"), UserID: u.ID, Name: "key", PublicKey: []byte{1}, CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u, c, nil, nil); err != nil {
		b.Fatal(err)
	}
	token := sha256.Sum256([]byte("token"))
	s := &session.Session{ID: "ses_bench", UserID: u.ID, CredentialID: c.ID, CreatedAt: time.Now(), LastSeenAt: time.Now(),
		ExpiresAt: time.Now().Add(time.Hour), StepUpAt: time.Now(), IP: "192.0.2.1", UserAgent: "bench"}
	if err := db.CreateSession(ctx, s, token[:], audit.Event{At: time.Now(), Type: audit.SessionCreated, Actor: "b", Subject: s.ID}); err != nil {
		b.Fatal(err)
	}
	return db, token[:], u
}

// BenchmarkSessionRead: see storetest.BenchSessionRead.
func BenchmarkSessionRead(b *testing.B) { storetest.BenchSessionRead(b, openSealed(b)) }

// BenchmarkOpenUserCold is what sealing adds to a sign-in whose person no
// cache holds (the first after a start, or after 30 seconds idle): unwrapping
// their data key and opening two fields, against the same look-up served
// from the cache, interleaved.
func BenchmarkOpenUserCold(b *testing.B) {
	ctx := context.Background()
	db := openSealed(b)
	u := &passkey.User{ID: "usr_cold", Handle: []byte("h-cold"), Username: "cold", DisplayName: "Cold Start", Role: passkey.RoleUser, CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u, &passkey.Credential{ID: []byte("c-cold"), UserID: u.ID, Name: "k", PublicKey: []byte{1}, CreatedAt: time.Now()}, nil, nil); err != nil {
		b.Fatal(err)
	}
	var cold, warm time.Duration
	for b.Loop() {
		db.sealer.ForgetCache()
		t0 := time.Now()
		if _, err := db.UserByHandle(ctx, u.Handle); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := db.UserByHandle(ctx, u.Handle); err != nil {
			b.Fatal(err)
		}
		cold += t1.Sub(t0)
		warm += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(cold.Nanoseconds())/n, "cold-ns/lookup")
	b.ReportMetric(float64(warm.Nanoseconds())/n, "warm-ns/lookup")
	b.ReportMetric(float64(cold-warm)/n/1000, "unseal-µs")
}
