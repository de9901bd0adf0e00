package sqlite

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/session"
)

var sessionT0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func openSessionDB(t *testing.T, users ...string) *DB {
	t.Helper()
	ctx := context.Background()
	db := openSealed(t)
	for _, u := range users {
		if _, err := db.SQL().ExecContext(ctx, `INSERT INTO users (id, handle, username, display_name, created_at)
			VALUES (?, randomblob(32), ?, ?, ?)`, u, u, u, sessionT0.UnixNano()); err != nil {
			t.Fatal(err)
		}
		if err := db.sealer.EnsureUserKey(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func sessionHash(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// sessionFixture returns a session of user created at sessionT0+at, signed
// in with cred, and its audit event.
func sessionFixture(id, user string, cred []byte, at time.Duration) (*session.Session, audit.Event) {
	now := sessionT0.Add(at)
	s := &session.Session{
		ID: id, UserID: user, CredentialID: cred, CreatedAt: now, LastSeenAt: now,
		ExpiresAt: now.Add(12 * time.Hour), StepUpAt: now, IP: "192.0.2.1", UserAgent: "test",
	}
	return s, audit.Event{At: now, Type: audit.SessionCreated, Actor: "user:" + user, Subject: id}
}

func mustCreateSession(t *testing.T, db *DB, id, user string, cred []byte, at time.Duration) *session.Session {
	t.Helper()
	s, ev := sessionFixture(id, user, cred, at)
	if err := db.CreateSession(context.Background(), s, sessionHash(id), ev); err != nil {
		t.Fatal(err)
	}
	return s
}

func sessionIDs(t *testing.T, db *DB) []string {
	t.Helper()
	rows, err := db.SQL().QueryContext(context.Background(), `SELECT id FROM sessions ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func auditTypes(t *testing.T, db *DB) []string {
	t.Helper()
	recs, err := db.AuditEvents(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, r := range recs {
		out = append(out, r.Event.Type+" "+r.Event.Subject)
	}
	return out
}

func TestSessionRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := openSessionDB(t, "usr_a")
	tests := []struct {
		name string
		s    *session.Session
	}{
		{"passkey", &session.Session{
			ID: "ses_1", UserID: "usr_a", CredentialID: []byte{0, 1, 2}, CreatedAt: sessionT0, LastSeenAt: sessionT0.Add(time.Second),
			ExpiresAt: sessionT0.Add(time.Hour), StepUpAt: sessionT0.Add(time.Nanosecond), IP: "2001:db8::1", UserAgent: "Firefox",
		}},
		{"recovery", &session.Session{
			ID: "ses_2", UserID: "usr_a", Restricted: true, CreatedAt: sessionT0, LastSeenAt: sessionT0,
			ExpiresAt: sessionT0.Add(time.Hour),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := audit.Event{At: sessionT0, Type: audit.SessionCreated, Actor: "test", Subject: tt.s.ID}
			if err := db.CreateSession(ctx, tt.s, sessionHash(tt.s.ID), ev); err != nil {
				t.Fatal(err)
			}
			got, err := db.SessionByToken(ctx, sessionHash(tt.s.ID))
			if err != nil {
				t.Fatal(err)
			}
			// A session check reads nothing sealed: the device is in lists only.
			want := *tt.s
			want.IP, want.UserAgent = "", ""
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := db.SessionByToken(ctx, sessionHash("nope")); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("unknown hash: %v, want ErrNotFound", err)
	}
	list, err := db.ListSessions(ctx, "usr_a")
	if err != nil || len(list) != 2 {
		t.Fatalf("ListSessions = %d, %v", len(list), err)
	}
	for _, s := range list {
		if s.ID == "ses_1" && (s.IP != "2001:db8::1" || s.UserAgent != "Firefox") {
			t.Fatalf("the listed device: %q %q", s.IP, s.UserAgent)
		}
	}
	if diff := cmp.Diff([]string{audit.SessionCreated + " ses_1", audit.SessionCreated + " ses_2"}, auditTypes(t, db)); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
}

func TestCreateSessionIsAtomic(t *testing.T) {
	ctx := context.Background()
	db := openSessionDB(t, "usr_a")
	mustCreateSession(t, db, "ses_1", "usr_a", nil, 0)
	tests := []struct {
		name string
		s    *session.Session
		hash []byte
	}{
		{"unknown user", &session.Session{ID: "ses_2", UserID: "usr_ghost"}, sessionHash("ses_2")},
		{"duplicate ID", &session.Session{ID: "ses_1", UserID: "usr_a"}, sessionHash("ses_x")},
		{"duplicate token", &session.Session{ID: "ses_3", UserID: "usr_a"}, sessionHash("ses_1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := audit.Event{At: sessionT0, Type: audit.SessionCreated, Subject: tt.s.ID}
			if err := db.CreateSession(ctx, tt.s, tt.hash, ev); err == nil {
				t.Fatal("want error")
			}
			if got := auditTypes(t, db); len(got) != 1 {
				t.Fatalf("audit %v: a failed insert left an event", got)
			}
		})
	}
}

func TestTouchSession(t *testing.T) {
	ctx := context.Background()
	db := openSessionDB(t, "usr_a")
	mustCreateSession(t, db, "ses_1", "usr_a", nil, 0)
	tests := []struct {
		name    string
		id      string
		at      time.Duration
		want    time.Duration
		wantErr error
	}{
		{"forward", "ses_1", time.Minute, time.Minute, nil},
		{"never backward", "ses_1", time.Second, time.Minute, nil},
		{"forward again", "ses_1", 2 * time.Minute, 2 * time.Minute, nil},
		{"unknown", "ses_x", 3 * time.Minute, 2 * time.Minute, session.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.TouchSession(ctx, tt.id, sessionT0.Add(tt.at)); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			s, err := db.SessionByToken(ctx, sessionHash("ses_1"))
			if err != nil {
				t.Fatal(err)
			}
			if !s.LastSeenAt.Equal(sessionT0.Add(tt.want)) {
				t.Fatalf("last seen %v, want T0+%v", s.LastSeenAt, tt.want)
			}
		})
	}
	if n := len(auditTypes(t, db)); n != 1 {
		t.Fatalf("%d audit events, want 1: touches are not audited", n)
	}
}

func TestReplaceSessionToken(t *testing.T) {
	ctx := context.Background()
	db := openSessionDB(t, "usr_a")
	mustCreateSession(t, db, "ses_1", "usr_a", nil, 0)
	at := sessionT0.Add(time.Minute)
	ev := audit.Event{At: at, Type: audit.SessionStepUp, Subject: "ses_1"}
	if err := db.ReplaceSessionToken(ctx, "ses_1", sessionHash("new"), at, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SessionByToken(ctx, sessionHash("ses_1")); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("old hash: %v, want ErrNotFound", err)
	}
	s, err := db.SessionByToken(ctx, sessionHash("new"))
	if err != nil || s.ID != "ses_1" || !s.StepUpAt.Equal(at) {
		t.Fatalf("new hash: %+v, %v", s, err)
	}
	ev.Subject = "ses_x"
	if err := db.ReplaceSessionToken(ctx, "ses_x", sessionHash("other"), at, ev); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("unknown session: %v, want ErrNotFound", err)
	}
	want := []string{audit.SessionCreated + " ses_1", audit.SessionStepUp + " ses_1"}
	if diff := cmp.Diff(want, auditTypes(t, db)); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
}

// errBadCall stands for any error in tests where the exact one does not matter.
var errBadCall = errors.New("any error")

func TestDeleteSessions(t *testing.T) {
	credA, credB := []byte("cred-a"), []byte("cred-b")
	tests := []struct {
		name      string
		del       func(ctx context.Context, db *DB, ev audit.Event) (int, error)
		wantN     int
		wantErr   error // errBadCall: any error
		wantLeft  []string
		wantAudit bool
	}{
		{"own session", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return 1, db.DeleteSession(ctx, "ses_a1", "usr_a", ev)
		}, 1, nil, []string{"ses_a2", "ses_a3", "ses_a4", "ses_b1"}, true},
		{"another user's session", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return 0, db.DeleteSession(ctx, "ses_b1", "usr_a", ev)
		}, 0, session.ErrNotFound, []string{"ses_a1", "ses_a2", "ses_a3", "ses_a4", "ses_b1"}, false},
		{"any user's session", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return 1, db.DeleteSession(ctx, "ses_b1", "", ev)
		}, 1, nil, []string{"ses_a1", "ses_a2", "ses_a3", "ses_a4"}, true},
		{"unknown session", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return 0, db.DeleteSession(ctx, "ses_x", "", ev)
		}, 0, session.ErrNotFound, []string{"ses_a1", "ses_a2", "ses_a3", "ses_a4", "ses_b1"}, false},
		{"user's others", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return db.DeleteUserSessions(ctx, "usr_a", "ses_a2", ev)
		}, 3, nil, []string{"ses_a2", "ses_b1"}, true},
		{"user's all", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return db.DeleteUserSessions(ctx, "usr_a", "", ev)
		}, 4, nil, []string{"ses_b1"}, true},
		{"user with none", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return db.DeleteUserSessions(ctx, "usr_c", "", ev)
		}, 0, nil, []string{"ses_a1", "ses_a2", "ses_a3", "ses_a4", "ses_b1"}, true},
		{"credential", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return db.DeleteCredentialSessions(ctx, credA, ev)
		}, 2, nil, []string{"ses_a3", "ses_a4", "ses_b1"}, true},
		{"empty credential is refused, not matched to recovery sessions", func(ctx context.Context, db *DB, ev audit.Event) (int, error) {
			return db.DeleteCredentialSessions(ctx, []byte{}, ev)
		}, 0, errBadCall, []string{"ses_a1", "ses_a2", "ses_a3", "ses_a4", "ses_b1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			db := openSessionDB(t, "usr_a", "usr_b", "usr_c")
			mustCreateSession(t, db, "ses_a1", "usr_a", credA, 0)
			mustCreateSession(t, db, "ses_a2", "usr_a", credA, time.Second)
			mustCreateSession(t, db, "ses_a3", "usr_a", credB, 2*time.Second)
			mustCreateSession(t, db, "ses_a4", "usr_a", nil, 3*time.Second)
			mustCreateSession(t, db, "ses_b1", "usr_b", []byte("cred-c"), 4*time.Second)
			before := len(auditTypes(t, db))

			ev := audit.Event{At: sessionT0.Add(time.Minute), Type: audit.SessionRevoked, Actor: "test", Subject: "x"}
			n, err := tt.del(ctx, db, ev)
			switch {
			case errors.Is(tt.wantErr, errBadCall):
				if err == nil {
					t.Fatal("want an error")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case err != nil || n != tt.wantN:
				t.Fatalf("deleted %d, %v; want %d", n, err, tt.wantN)
			}
			if diff := cmp.Diff(tt.wantLeft, sessionIDs(t, db)); diff != "" {
				t.Fatalf("sessions left (-want +got):\n%s", diff)
			}
			want := 0
			if tt.wantAudit {
				want = 1
			}
			if got := len(auditTypes(t, db)) - before; got != want {
				t.Fatalf("%d audit events written, want audited=%v", got, tt.wantAudit)
			}
		})
	}
}

func TestDeleteExpiredSessions(t *testing.T) {
	ctx := context.Background()
	db := openSessionDB(t, "usr_a")
	const idle = 30 * time.Minute
	// ses_old: created at T0, expires T0+12h, last seen T0+11h50m.
	mustCreateSession(t, db, "ses_old", "usr_a", nil, 0)
	if err := db.TouchSession(ctx, "ses_old", sessionT0.Add(11*time.Hour+50*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// ses_idle: last seen T0+11h.
	mustCreateSession(t, db, "ses_idle", "usr_a", nil, 11*time.Hour)
	// ses_new: last seen T0+11h45m.
	mustCreateSession(t, db, "ses_new", "usr_a", nil, 11*time.Hour+45*time.Minute)

	tests := []struct {
		at    time.Duration
		wantN int
		left  []string
	}{
		{11*time.Hour + 30*time.Minute - time.Nanosecond, 0, []string{"ses_idle", "ses_new", "ses_old"}},
		{11*time.Hour + 30*time.Minute, 1, []string{"ses_new", "ses_old"}},  // idle, exactly
		{12*time.Hour - time.Nanosecond, 0, []string{"ses_new", "ses_old"}}, // neither idle nor expired
		{12 * time.Hour, 1, []string{"ses_new"}},                            // absolute, exactly
		{12*time.Hour + 15*time.Minute, 1, []string{}},                      // idle
	}
	for _, tt := range tests {
		n, err := db.DeleteExpiredSessions(ctx, sessionT0.Add(tt.at), idle)
		if err != nil || n != tt.wantN {
			t.Fatalf("at T0+%v: deleted %d, %v; want %d", tt.at, n, err, tt.wantN)
		}
		if diff := cmp.Diff(tt.left, sessionIDs(t, db)); diff != "" {
			t.Fatalf("at T0+%v: sessions left (-want +got):\n%s", tt.at, diff)
		}
	}
}

func TestSessionsGoWithTheirUser(t *testing.T) {
	ctx := context.Background()
	db := openSessionDB(t, "usr_a", "usr_b")
	mustCreateSession(t, db, "ses_a", "usr_a", nil, 0)
	mustCreateSession(t, db, "ses_b", "usr_b", nil, 0)
	if _, err := db.SQL().ExecContext(ctx, `DELETE FROM users WHERE id = 'usr_a'`); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ses_b"}, sessionIDs(t, db)); diff != "" {
		t.Fatalf("sessions left (-want +got):\n%s", diff)
	}
}

// TestHotReadsKeepTheirConnections: the reads every session request makes
// run on connections that stay open and statements prepared once, however
// many requests run at once. Connections closed and reopened under load
// once cost a third of a session route's CPU (pragmas and a parse of the
// whole schema each time).
func TestHotReadsKeepTheirConnections(t *testing.T) {
	db := openSessionDB(t, "u1")
	ctx := context.Background()
	s, ev := sessionFixture("s1", "u1", []byte("cred"), 0)
	if err := db.CreateSession(ctx, s, sessionHash("tok"), ev); err != nil {
		t.Fatal(err)
	}
	before := db.SQL().Stats()
	done := make(chan error, 32)
	for range 32 {
		go func() {
			for range 50 {
				if _, err := db.SessionByToken(ctx, sessionHash("tok")); err != nil {
					done <- err
					return
				}
				if _, err := db.UserByID(ctx, "nobody"); !errors.Is(err, passkey.ErrNotFound) {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 32 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	st := db.SQL().Stats()
	if closed := st.MaxIdleClosed - before.MaxIdleClosed; closed != 0 {
		t.Errorf("%d connections were closed as surplus idle ones and reopened", closed)
	}
	n := 0
	db.stmts.Range(func(any, any) bool { n++; return true })
	if n != 2 {
		t.Errorf("%d prepared statements kept, want the two hot reads", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
