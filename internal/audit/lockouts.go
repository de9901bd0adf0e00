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
	l.Record(Event{At: time.Now(), Type: Lockout, Actor: "system", Subject: subject, Detail: map[string]string{"limit": kind}})
}

// Record writes ev under the same bounds as a lockout: once a window for
// its type, subject and detail, within the cap. For events anyone can
// cause at will (a failed sign-in), which must not become a flood.
func (l *Lockouts) Record(ev Event) {
	now := ev.At
	key := ev.Type + "\x00" + ev.Subject + "\x00" + string(DetailJSON(ev.Detail))
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
	case l.ch <- ev:
	default:
		l.dropped++
	}
}

func (l *Lockouts) run() {
	defer close(l.done)
	for ev := range l.ch {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.store.AppendAudit(ctx, ev); err != nil {
			l.logger.Warn("audit event", slog.String("type", ev.Type), slog.String("error", err.Error()))
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
