package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keywayhq/keyway/internal/decision"
)

// errTunnelReloaded closes a tunnel that a config reload no longer allows.
var errTunnelReloaded = errors.New("the config now in force would not open the tunnel")

// tunnel is an open (or opening) WebSocket tunnel, registered with the
// gateway that holds it, so that a config reload can judge it again:
// a tunnel lives for hours, and a reload that takes away its route, its
// WebSocket flag or its opener's access must end it, not leave it to its
// maximum lifetime.
type tunnel struct {
	st       *state
	facts    *decision.Facts
	method   string
	ctx      context.Context
	cancel   context.CancelCauseFunc
	upstream *Upstream
	// opened and end bound the tunnel's life; life ends it at end. A
	// reload may bring end closer (a shorter websocket_max_lifetime),
	// never push it further.
	opened, end time.Time
	life        *time.Timer
	// decide is the route the tunnel's credential is rechecked against:
	// the one it opened on, then the same route of each config reloaded
	// since.
	decide atomic.Pointer[decision.Route]
	// owner is the gateway whose registry holds the tunnel now; nil
	// while a reload moves it, and once it ended.
	owner atomic.Pointer[Gateway]
	// released is set when the tunnel ends.
	released atomic.Bool
}

// tunnels is a gateway's registry of open tunnels.
type tunnels struct {
	mu   sync.Mutex
	open map[*tunnel]struct{}
	// retired is set by Retire; from then on, tunnels that would register
	// here are judged by the gateway in force, line's.
	retired bool
	// line is shared by a gateway and every gateway that replaced it: it
	// holds the one in force, so that a retired gateway refers to that
	// one alone, never to a chain of those retired after it.
	line *atomic.Pointer[Gateway]
}

// Retire hands g's open tunnels to next, the gateway a config reload put
// in g's place. Each is judged by next as a new handshake's credential
// would be (route, WebSocket flag, same upstream, no field rule for its
// client, the credential rechecked under next's route) and closed unless
// next allows it; tunnels that open on g from now on are judged by the
// gateway in force the same way. Call it once, after next serves. The
// judging is done without holding g's registry: tunnels that end, or
// register, meanwhile do not wait for it.
func (g *Gateway) Retire(next *Gateway) {
	g.tunnels.mu.Lock()
	line := g.tunnels.line
	if line == nil {
		line = new(atomic.Pointer[Gateway])
		g.tunnels.line = line
	}
	next.tunnels.mu.Lock()
	next.tunnels.line = line
	next.tunnels.mu.Unlock()
	line.Store(next)
	g.tunnels.retired = true
	moving := make([]*tunnel, 0, len(g.tunnels.open))
	for t := range g.tunnels.open {
		moving = append(moving, t)
		t.owner.Store(nil) // in transit: held by none until next takes it
	}
	g.tunnels.open = nil
	g.tunnels.mu.Unlock()
	for _, t := range moving {
		next.take(t)
	}
}

// hold registers t with g, or, when g is retired, has the gateway in
// force judge it.
func (g *Gateway) hold(t *tunnel) {
	g.tunnels.mu.Lock()
	if g.tunnels.retired {
		n := g.tunnels.line.Load()
		g.tunnels.mu.Unlock()
		n.take(t)
		return
	}
	if g.tunnels.open == nil {
		g.tunnels.open = make(map[*tunnel]struct{})
	}
	g.tunnels.open[t] = struct{}{}
	t.owner.Store(g)
	if t.released.Load() {
		// It ended while in transit (release found no owner).
		delete(g.tunnels.open, t)
		t.owner.Store(nil)
	}
	g.tunnels.mu.Unlock()
}

// take judges t, a tunnel of the gateway g replaced, and holds it or
// closes it.
func (g *Gateway) take(t *tunnel) {
	rt := g.admits(t)
	if rt == nil {
		t.cancel(errTunnelReloaded)
		return
	}
	if end := t.opened.Add(rt.TunnelLifetime); end.Before(t.end) {
		left := time.Until(end)
		if left <= 0 {
			t.cancel(errTunnelLifetime)
			return
		}
		t.end = end
		t.life.Reset(left)
	}
	t.decide.Store(rt.decide)
	g.hold(t)
}

// admits is the route of g that would open t today, or nil. (The
// tunnel's lifetime is the shorter of its route's then and now: take.)
func (g *Gateway) admits(t *tunnel) *route {
	pr := g.table.lookup(t.st.path)
	if pr == nil {
		return nil
	}
	rt := pr.forMethod(t.method)
	if rt == nil || !rt.WebSocket || rt.Upstream == nil ||
		rt.Upstream.name != t.upstream.name || rt.Upstream.url.String() != t.upstream.url.String() {
		return nil
	}
	d := g.cfg.Decider.Reconsider(t.ctx, rt.decide, t.facts)
	if !d.Allowed() {
		return nil
	}
	// The client as this config names it (none on a public route).
	if c := g.clients[d.Identity.Client]; c != nil && c.Fields[rt.Name] != nil {
		return nil // a field rule now: a tunnel's messages cannot be trimmed
	}
	return rt
}

// release removes t from whichever gateway holds it when it ends. One in
// transit (owner nil) is dropped by hold, which looks at released after
// storing its owner.
func (t *tunnel) release() {
	t.released.Store(true)
	for {
		g := t.owner.Load()
		if g == nil {
			return // closed by a reload before it was held again
		}
		g.tunnels.mu.Lock()
		if t.owner.Load() == g {
			delete(g.tunnels.open, t)
			t.owner.Store(nil)
			g.tunnels.mu.Unlock()
			return
		}
		g.tunnels.mu.Unlock()
	}
}
