package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Lockout is the event type of a rate limit locking a source or an
// account out: a key guesser, a sign-in or recovery flood.
const Lockout = "ratelimit.lockout"

// Lockout bounds: each locked subject is written at most once per window,
// and all of them together at most maxLockouts per window, so that an
// attacker spreading over many addresses cannot turn the trail into the
// target of a flood. What is dropped is counted.
const (
	lockoutWindow = time.Minute
	maxLockouts   = 60
)

// Lockouts writes the lockouts of rate limits to the trail, off the
// request path: a refusal never waits on the store.
type Lockouts struct {
	store  Appender
	logger *slog.Logger
	ch     chan Event

	mu      sync.Mutex
	seen    map[string]time.Time
	window  time.Time
	written int
	dropped int
	closed  bool
	done    chan struct{}
}

// NewLockouts starts the writer; Close stops it once the queued events
// are written.
func NewLockouts(store Appender, logger *slog.Logger) *Lockouts {
	l := &Lockouts{store: store, logger: logger, ch: make(chan Event, maxLockouts), seen: map[string]time.Time{}, done: make(chan struct{})}
	go l.run()
	return l
}

// Locked records that the limit kind locked subject out. subject must be
// pseudonymous (a keyed hash of an address or account, never the address
// or the username itself).
func (l *Lockouts) Locked(kind, subject string) {
	now := time.Now()
	key := kind + "\x00" + subject
	l.mu.Lock()
	if now.Sub(l.window) >= lockoutWindow {
		if l.dropped > 0 {
			l.logger.Warn("audit lockouts dropped", slog.Int("dropped", l.dropped), slog.Duration("window", lockoutWindow))
		}
		l.window, l.written, l.dropped = now, 0, 0
		for k, t := range l.seen {
			if now.Sub(t) >= lockoutWindow {
				delete(l.seen, k)
			}
		}
	}
	if t, ok := l.seen[key]; l.closed || ok && now.Sub(t) < lockoutWindow {
		l.mu.Unlock()
		return
	}
	if l.written >= maxLockouts {
		l.dropped++
		l.mu.Unlock()
		return
	}
	l.seen[key] = now
	l.written++
	defer l.mu.Unlock() // held while sending, so that Close cannot close the channel under it
	select {
	case l.ch <- Event{At: now, Type: Lockout, Actor: "system", Subject: subject, Detail: map[string]string{"limit": kind}}:
	default:
		l.dropped++
	}
}

func (l *Lockouts) run() {
	defer close(l.done)
	for ev := range l.ch {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.store.AppendAudit(ctx, ev); err != nil {
			l.logger.Warn("audit a lockout", slog.String("limit", ev.Detail["limit"]), slog.String("error", err.Error()))
		}
		cancel()
	}
}

// Close writes what is queued and stops; later lockouts are not written.
func (l *Lockouts) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.ch)
	}
	l.mu.Unlock()
	<-l.done
}
