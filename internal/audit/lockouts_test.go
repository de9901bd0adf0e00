package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
)

type memAppender struct {
	mu  sync.Mutex
	evs []Event
}

func (m *memAppender) AppendAudit(_ context.Context, ev Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evs = append(m.evs, ev)
	return nil
}

// TestLockoutsAreBounded: one event per subject a minute, at most
// maxLockouts a minute in all, however many lockouts an attacker causes.
func TestLockoutsAreBounded(t *testing.T) {
	m := &memAppender{}
	l := NewLockouts(m, slog.New(slog.DiscardHandler))
	for range 10 {
		l.Locked("login", "limit:c_one")
	}
	for i := range 1000 {
		l.Locked("login", fmt.Sprintf("limit:c_%d", i))
	}
	l.Close()
	l.Locked("login", "limit:c_after") // after Close: ignored, no panic
	if len(m.evs) != maxLockouts {
		t.Fatalf("%d events written, want %d", len(m.evs), maxLockouts)
	}
	if m.evs[0].Subject != "limit:c_one" || m.evs[0].Type != Lockout || m.evs[0].Detail["limit"] != "login" {
		t.Fatalf("first event: %+v", m.evs[0])
	}
	seen := map[string]bool{}
	for _, e := range m.evs {
		if seen[e.Subject] {
			t.Fatalf("%s written twice", e.Subject)
		}
		seen[e.Subject] = true
	}
}
