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
	// owner is the gateway whose registry holds the tunnel now.
	owner atomic.Pointer[Gateway]
}

// tunnels is a gateway's registry of open tunnels.
type tunnels struct {
	mu   sync.Mutex
	open map[*tunnel]struct{}
	// next is the gateway that replaced this one (Retire); tunnels that
	// open here afterwards are judged by it.
	next *Gateway
}

// Retire hands g's open tunnels to next, the gateway a config reload put
// in g's place. Each is judged by next as a new handshake's credential
// would be (route, WebSocket flag, same upstream, no field rule for its
// client, the credential rechecked under next's route) and closed unless
// next allows it; tunnels that open on g from now on are judged the same
// way. Call it once, after next serves.
func (g *Gateway) Retire(next *Gateway) {
	g.tunnels.mu.Lock()
	defer g.tunnels.mu.Unlock()
	g.tunnels.next = next
	for t := range g.tunnels.open {
		delete(g.tunnels.open, t)
		next.take(t)
	}
}

// hold registers t with g, or, when g is retired, with its successor.
func (g *Gateway) hold(t *tunnel) {
	g.tunnels.mu.Lock()
	if n := g.tunnels.next; n != nil {
		g.tunnels.mu.Unlock()
		n.take(t)
		return
	}
	if g.tunnels.open == nil {
		g.tunnels.open = make(map[*tunnel]struct{})
	}
	g.tunnels.open[t] = struct{}{}
	t.owner.Store(g)
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
	if c := g.clients[t.st.ident.Client]; c != nil && c.Fields[rt.Name] != nil {
		return nil // a field rule now: a tunnel's messages cannot be trimmed
	}
	if rt.Policy != decision.Public && g.cfg.Decider.Recheck(t.ctx, rt.decide, t.facts) != decision.Allowed {
		return nil
	}
	return rt
}

// release removes t from whichever gateway holds it when it ends.
func (t *tunnel) release() {
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
