package storetest

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
)

// BenchSessionRead is a session route's store work a request, two ways,
// interleaved in one loop so that whatever else the machine does falls on
// both alike: "apart", the session by its token's hash and then its person
// (what keyway did), and "together", both in one statement
// (SessionWithUser, what keyway does). apart/together is the gain. s must
// be empty and sealed.
func BenchSessionRead(b *testing.B, s Store) {
	ctx := context.Background()
	u := &passkey.User{ID: "usr_bench", Handle: []byte("h-bench"), Username: "bench", DisplayName: "Bench Marker", Role: passkey.RoleUser, CreatedAt: time.Now()}
	c := &passkey.Credential{ID: []byte("c-bench"), UserID: u.ID, Name: "key", PublicKey: []byte{1}, CreatedAt: time.Now()}
	if err := s.CreateUser(ctx, u, c, nil, nil); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte("token"))
	token := sum[:]
	ses := &session.Session{ID: "ses_bench", UserID: u.ID, CredentialID: c.ID, CreatedAt: time.Now(), LastSeenAt: time.Now(),
		ExpiresAt: time.Now().Add(time.Hour), StepUpAt: time.Now(), IP: "192.0.2.1", UserAgent: "bench"}
	if err := s.CreateSession(ctx, ses, token, audit.Event{At: time.Now(), Type: audit.SessionCreated, Actor: "b", Subject: ses.ID}); err != nil {
		b.Fatal(err)
	}
	apart := func() {
		got, err := s.SessionByToken(ctx, token)
		if err != nil {
			b.Fatal(err)
		}
		if p, err := s.UserByID(ctx, got.UserID); err != nil || p.DisplayName != u.DisplayName {
			b.Fatal(err)
		}
	}
	together := func() {
		if _, p, err := s.SessionWithUser(ctx, token); err != nil || p.DisplayName != u.DisplayName {
			b.Fatal(err)
		}
	}
	inApart, inTogether := Interleave(b, apart, together)
	b.ReportMetric(inApart, "apart-ns/check")
	b.ReportMetric(inTogether, "together-ns/check")
	b.ReportMetric(inApart/inTogether, "apart/together")
}

// Interleave runs x and y once each per b.Loop iteration, x first every
// other time, so that whatever else the machine does falls on both alike,
// and returns the nanoseconds each took per iteration.
func Interleave(b *testing.B, x, y func()) (perX, perY float64) {
	var inX, inY time.Duration
	for i := 0; b.Loop(); i++ {
		first, second, d1, d2 := x, y, &inX, &inY
		if i%2 == 1 {
			first, second, d1, d2 = y, x, &inY, &inX
		}
		t0 := time.Now()
		first()
		t1 := time.Now()
		second()
		*d1 += t1.Sub(t0)
		*d2 += time.Since(t1)
	}
	n := float64(b.N)
	return float64(inX.Nanoseconds()) / n, float64(inY.Nanoseconds()) / n
}
