package gateway

// A second review of config reloads: the registry of
// open tunnels (hold, take, Retire, release) under concurrent reloads,
// what admits keeps, and the limiter shelf's reference counts. Each test
// asserts the correct behaviour; three failed before their fixes (Retire
// judging under the old registry's lock, retired gateways kept in a chain,
// a tunnel judged with its old client's name).

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/shape"
)

// rvLimiters makes in-process limiters and counts how many route
// limiters ("route:" names; not the core's own guessing budget) it made
// and how many were closed.
type rvLimiters struct{ made, closed atomic.Int64 }

type rvLimiter[K comparable] struct {
	*ratelimit.Memory[K]
	l     *rvLimiters
	route bool
}

func (r *rvLimiter[K]) Close() {
	if r.route {
		r.l.closed.Add(1)
	}
	r.Memory.Close()
}

func (l *rvLimiters) ByKey(name string) decision.CloseLimiter[string] {
	route := strings.HasPrefix(name, "route:")
	if route {
		l.made.Add(1)
	}
	return &rvLimiter[string]{Memory: ratelimit.NewMemory[string](ratelimit.MemoryConfig{}), l: l, route: route}
}

func (l *rvLimiters) ByAddr(name string) decision.CloseLimiter[netip.Addr] {
	route := strings.HasPrefix(name, "route:")
	if route {
		l.made.Add(1)
	}
	return &rvLimiter[netip.Addr]{Memory: ratelimit.NewMemory[netip.Addr](ratelimit.MemoryConfig{}), l: l, route: route}
}

// rvEnv is one decision core (as keyway has one) and what gateways built
// on it for successive configs share.
type rvEnv struct {
	core   *decision.Core
	lims   *rvLimiters
	keys   *oneKey
	raw    string
	logger *slog.Logger
}

func newRVEnv(t *testing.T) *rvEnv {
	t.Helper()
	keys, raw := testKeys(t)
	kl := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	t.Cleanup(kl.Close)
	lims := &rvLimiters{}
	logger := slog.New(slog.DiscardHandler)
	core, err := decision.New(decision.Config{Keys: keys, KeyLimiter: kl, Sessions: reviewSessions{}, Users: reviewUsers{},
		Origins: []string{reviewOrigin}, Logger: logger, Limiters: lims})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(core.Close)
	return &rvEnv{core: core, lims: lims, keys: keys, raw: raw, logger: logger}
}

// gateway builds a gateway as app.Reload does: its own decision profiles
// made from the same config as its client profiles.
func (e *rvEnv) gateway(routes []Route, clients []Client, profiles []decision.Client) (*Gateway, error) {
	p, err := decision.NewProfiles(profiles)
	if err != nil {
		return nil, err
	}
	return New(Config{Routes: routes, Clients: clients, Profiles: p, Own: http.NotFoundHandler(), Decider: e.core,
		HSTSMaxAge: 365 * 24 * time.Hour, Logger: e.logger, TunnelRecheck: 50 * time.Millisecond})
}

func (e *rvEnv) mustGateway(t *testing.T, routes []Route, clients []Client, profiles []decision.Client) *Gateway {
	t.Helper()
	g, err := e.gateway(routes, clients, profiles)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func rvUpstream(t *testing.T, url string) *Upstream {
	t.Helper()
	up, err := NewUpstream(UpstreamConfig{Name: "ws", URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}

// rvTunnel is a tunnel as serveTunnel makes it, for path on g.
func rvTunnel(t *testing.T, g *Gateway, path string, facts decision.Facts, ident decision.Identity) *tunnel {
	t.Helper()
	pr := g.table.lookup(path)
	if pr == nil || pr.forMethod(http.MethodGet) == nil {
		t.Fatalf("no GET route for %s", path)
	}
	rt := pr.forMethod(http.MethodGet)
	ctx, cancel := context.WithCancelCause(context.Background())
	life := time.AfterFunc(rt.TunnelLifetime, func() { cancel(errTunnelLifetime) })
	t.Cleanup(func() { life.Stop(); cancel(nil) })
	st := &state{path: path, ident: ident, route: rt}
	end := time.Now().Add(rt.TunnelLifetime)
	tu := &tunnel{st: st, facts: &facts, method: http.MethodGet, ctx: ctx, cancel: cancel, upstream: rt.Upstream,
		opened: end.Add(-rt.TunnelLifetime), end: end, life: life}
	tu.decide.Store(rt.decide)
	return tu
}

func registered(g *Gateway) map[*tunnel]bool {
	g.tunnels.mu.Lock()
	defer g.tunnels.mu.Unlock()
	out := make(map[*tunnel]bool, len(g.tunnels.open))
	for t := range g.tunnels.open {
		out[t] = true
	}
	return out
}

// TestTunnelsConcurrentReloads: tunnels open (hold), end (release)
// and are handed on (Retire) while reloads follow each other as fast as
// they can, all under the same config. No tunnel may be closed (every
// config would open it), none may be lost from every registry (a later
// reload could not judge it), and none may stay in one after it ended
// (memory). The shelf makes the route's limiter once and stops it once.
func TestTunnelsConcurrentReloads(t *testing.T) {
	e := newRVEnv(t)
	const upURL = "http://127.0.0.1:9"
	var built atomic.Int64
	mk := func() *Gateway {
		// Lifetimes alternate (2h, 1h): a reload shortens some tunnels'.
		life := time.Hour * time.Duration(1+built.Add(1)%2)
		return e.mustGateway(t, []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: rvUpstream(t, upURL),
			Policy: decision.APIKey, Scopes: []string{"t"}, MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: life,
			RateLimit: &RouteLimit{Limit: ratelimit.Limit{Count: 1000, Period: time.Minute}}}}, nil, nil)
	}
	var (
		cur  atomic.Pointer[Gateway]
		mu   sync.Mutex
		all  = []*Gateway{}
		open []*tunnel // held and not released
	)
	first := mk()
	cur.Store(first)
	all = append(all, first)
	reload := func(n int) {
		for range n {
			g := mk()
			mu.Lock()
			all = append(all, g)
			mu.Unlock()
			old := cur.Swap(g)
			old.Retire(g)
		}
	}
	facts := decision.Facts{Method: http.MethodGet, Key: e.raw, Upgrade: true}
	var workers sync.WaitGroup
	for w := range 6 {
		workers.Go(func() {
			for i := range 60 {
				g := cur.Load()
				tu := rvTunnel(t, g, "/live/x", facts, decision.Identity{})
				g.hold(tu)
				if (i+w)%2 == 0 {
					tu.release() // a tunnel that ends while reloads go on
					continue
				}
				mu.Lock()
				open = append(open, tu)
				mu.Unlock()
			}
		})
	}
	reload(40)
	workers.Wait()
	reload(3)

	last := cur.Load()
	held := registered(last)
	for _, tu := range open {
		if err := context.Cause(tu.ctx); err != nil {
			t.Errorf("a tunnel every config allows was closed by a reload: %v", err)
			continue
		}
		if !held[tu] || tu.owner.Load() != last {
			t.Errorf("an open tunnel is not held by the gateway in force (held: %v, owner is last: %v): a later reload cannot judge it",
				held[tu], tu.owner.Load() == last)
		}
		if tu.decide.Load() != last.routes[0].decide {
			t.Errorf("an open tunnel is rechecked under a route of an older config")
		}
		if tu.end.After(tu.opened.Add(time.Hour)) {
			t.Errorf("a tunnel kept through a 1h config still ends %v after it opened", tu.end.Sub(tu.opened))
		}
	}
	if len(held) != len(open) {
		t.Errorf("the gateway in force holds %d tunnels, %d are open", len(held), len(open))
	}
	for i, g := range all[:len(all)-1] {
		if n := len(registered(g)); n != 0 {
			t.Errorf("retired gateway %d still holds %d tunnels", i, n)
		}
	}

	// They end while reloads go on: every registry is empty afterwards.
	var enders sync.WaitGroup
	for _, tu := range open {
		enders.Go(tu.release)
	}
	reload(20)
	enders.Wait()
	for i, g := range all {
		if n := len(registered(g)); n != 0 {
			t.Errorf("gateway %d holds %d tunnels that ended", i, n)
		}
	}
	for _, tu := range open {
		if tu.owner.Load() != nil {
			t.Errorf("an ended tunnel still names an owner")
		}
	}
	for _, g := range all {
		g.Close()
	}
	if made, closed := e.lims.made.Load(), e.lims.closed.Load(); made != 1 || closed != 1 {
		t.Errorf("the route's limiter across %d gateways: made %d times, stopped %d times (want 1 and 1)", len(all), made, closed)
	}
}

// wsEcho is an upstream that accepts every WebSocket handshake and echoes
// what follows; it counts the handshakes it saw.
type wsEcho struct{ asked atomic.Int64 }

func (u *wsEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.asked.Add(1)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	_, _ = io.Copy(conn, brw)
}

// rvHandshake opens a WebSocket through the gateway at addr and returns
// the connection and the answer's status.
func rvHandshake(t *testing.T, addr, path string, hdr ...string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
	_ = c.SetDeadline(time.Time{})
	return c, br, res.StatusCode
}

func rvEcho(c net.Conn, br *bufio.Reader, msg string) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(br, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echoed " + string(buf))
	}
	return nil
}

func rvServe(t *testing.T, g *Gateway) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(g)
	srv.Config.ErrorLog = nil
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestTunnelsHandshakeOnRetiredGateway: a handshake decided by a
// gateway after it was retired (a request that began before the swap) is
// judged by the new config before it reaches the upstream.
func TestTunnelsHandshakeOnRetiredGateway(t *testing.T) {
	e := newRVEnv(t)
	ws := &wsEcho{}
	upSrv := httptest.NewServer(ws)
	t.Cleanup(upSrv.Close)
	open := []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: rvUpstream(t, upSrv.URL), Policy: decision.Public,
		MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: time.Hour}}
	g1 := e.mustGateway(t, open, nil, nil)
	t.Cleanup(g1.Close)
	addr := rvServe(t, g1)
	c, br, code := rvHandshake(t, addr, "/live/x")
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("control: handshake on a public WebSocket route: %d", code)
	}
	if err := rvEcho(c, br, "hi"); err != nil {
		t.Fatalf("control: echo: %v", err)
	}
	g2 := e.mustGateway(t, []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: rvUpstream(t, upSrv.URL),
		Policy: decision.APIKey, Scopes: []string{"t"}, MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: time.Hour}}, nil, nil)
	t.Cleanup(g2.Close)
	g1.Retire(g2)
	before := ws.asked.Load()
	_, _, code = rvHandshake(t, addr, "/live/y")
	if code == http.StatusSwitchingProtocols {
		t.Errorf("a handshake on the retired gateway that the config in force refuses was opened")
	}
	if n := ws.asked.Load() - before; n != 0 {
		t.Errorf("the upstream saw %d handshakes the config in force refuses", n)
	}
	// The tunnel opened before the reload is closed by it (no key).
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("the tunnel opened before the reload is still open: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestTunnelsLifetimeShortenedByReload: a reload that shortens a
// route's websocket_max_lifetime (here 1h to 300ms) bounds the tunnels it
// keeps as it bounds new ones: a tunnel the new config would have closed
// already by its own lifetime should not live on to the old one.
func TestTunnelsLifetimeShortenedByReload(t *testing.T) {
	e := newRVEnv(t)
	ws := &wsEcho{}
	upSrv := httptest.NewServer(ws)
	t.Cleanup(upSrv.Close)
	route := func(life time.Duration) []Route {
		return []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: rvUpstream(t, upSrv.URL),
			Policy: decision.APIKey, Scopes: []string{"t"}, MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: life}}
	}
	g1 := e.mustGateway(t, route(time.Hour), nil, nil)
	t.Cleanup(g1.Close)
	addr := rvServe(t, g1)
	c, br, code := rvHandshake(t, addr, "/live/x", "Authorization", "Bearer "+e.raw)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %d", code)
	}
	if err := rvEcho(c, br, "before"); err != nil {
		t.Fatalf("control: echo before the reload: %v", err)
	}
	time.Sleep(400 * time.Millisecond) // older than the new lifetime
	g2 := e.mustGateway(t, route(300*time.Millisecond), nil, nil)
	t.Cleanup(g2.Close)
	g1.Retire(g2)
	time.Sleep(1500 * time.Millisecond)
	if err := rvEcho(c, br, "still"); err == nil {
		t.Errorf("a tunnel 1.9s old still carries bytes after a reload set its route's tunnel lifetime to 300ms " +
			"(the lifetime it opened with, 1h, still applies)")
	}
}

// TestTunnelsSessionClientGainsFieldRule: admits refuses a tunnel
// whose client now has a field rule on its route, but looks the client up
// by the name the old config's decision gave (st.ident.Client). A session
// tunnel opened when there was no session client has none, so a reload
// that adds a session client with a field rule on the route keeps it,
// although the new config refuses the same handshake (403). (config
// validation refuses a field rule on a WebSocket route, so this is
// reached through the gateway API only.)
func TestTunnelsSessionClientGainsFieldRule(t *testing.T) {
	e := newRVEnv(t)
	up := rvUpstream(t, "http://127.0.0.1:9")
	routes := []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: up, Policy: decision.Session,
		MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: time.Hour}}
	g1 := e.mustGateway(t, routes, nil, nil)
	t.Cleanup(g1.Close)
	facts := decision.Facts{Method: http.MethodGet, Session: "tok", Origin: reviewOrigin, Upgrade: true}
	d := e.core.Decide(context.Background(), g1.routes[0].decide, &facts)
	if !d.Allowed() {
		t.Fatalf("control: the session handshake on g1: %v", d.Reason)
	}
	tu := rvTunnel(t, g1, "/live/x", facts, d.Identity)
	g1.hold(tu)
	defer tu.release()

	deny, err := shape.Deny([]string{"secret"})
	if err != nil {
		t.Fatal(err)
	}
	g2 := e.mustGateway(t, routes,
		[]Client{{Name: "web", Session: true, Routes: map[string][]string{"live": {"GET"}}, Fields: map[string]*shape.Rule{"live": deny},
			MaxShapedBody: 1 << 16}},
		[]decision.Client{{Name: "web", Credential: decision.Session, Routes: map[string][]string{"live": {"GET"}}}})
	t.Cleanup(g2.Close)
	// Control: g2 refuses the same handshake (serve: "trimmed", 403).
	f2 := facts
	d2 := e.core.Decide(context.Background(), g2.routes[0].decide, &f2)
	if _, rule := g2.shapeRule(&state{ident: d2.Identity, route: g2.routes[0]}); !d2.Allowed() || rule == nil {
		t.Fatalf("control: g2 should decide the handshake allowed, with a field rule (allowed %v, rule %v)", d2.Allowed(), rule != nil)
	}
	g1.Retire(g2)
	if context.Cause(tu.ctx) == nil {
		t.Errorf("a session tunnel was kept by a reload whose session client (new) has a field rule on its route: "+
			"admits looked up the client the old decision named (%q), not the one the new config gives", d.Identity.Client)
	}
}

// TestTunnelsShelfRefcounts: a route's limiter is shared by the
// gateways of successive configs (counts kept), is given back by a
// gateway.New that fails after taking it, and stops when the last route
// holding it closes, once however often it is closed; a route made after
// that starts afresh.
func TestTunnelsShelfRefcounts(t *testing.T) {
	e := newRVEnv(t)
	up := rvUpstream(t, "http://127.0.0.1:9")
	limit := &RouteLimit{Limit: ratelimit.Limit{Count: 2, Period: time.Minute, Burst: 2}}
	r := Route{Name: "r", Prefix: "/r", Methods: []string{"GET"}, Upstream: up, Policy: decision.Public, MaxBody: 1, Timeout: time.Second,
		RateLimit: limit}
	src := netip.MustParseAddr("192.0.2.7")
	ask := func(g *Gateway) decision.Reason {
		f := decision.Facts{Method: http.MethodGet, Client: src, Source: src}
		return e.core.Decide(context.Background(), g.routes[0].decide, &f).Reason
	}
	g1 := e.mustGateway(t, []Route{r}, nil, nil)
	for i := range 2 {
		if got := ask(g1); got != decision.Allowed {
			t.Fatalf("request %d: %v", i, got)
		}
	}
	if got := ask(g1); got != decision.RateLimited {
		t.Fatalf("third request: %v", got)
	}
	// Configs that fail after the route took its limiter.
	bad := [][]Route{
		{r, {Name: "p", Prefix: "/p", Methods: []string{"GET"}, Upstream: up, Policy: decision.Public, MaxBody: 1, Timeout: time.Second,
			PassHeaders: []string{"X-Keyway-Subject"}}},
		{r, {Name: "dup", Prefix: "/r", Methods: []string{"GET"}, Upstream: up, Policy: decision.Public, MaxBody: 1, Timeout: time.Second}},
		{r, {Name: "pk", Prefix: "/pk", Methods: []string{"GET"}, Upstream: up, Policy: decision.Public, MaxBody: 1, Timeout: time.Second,
			RateLimit: &RouteLimit{Limit: limit.Limit, PerKey: true}}},
	}
	for i, routes := range bad {
		if g, err := e.gateway(routes, nil, nil); err == nil {
			g.Close()
			t.Fatalf("bad config %d was accepted", i)
		}
	}
	g2 := e.mustGateway(t, []Route{r}, nil, nil)
	if got := ask(g2); got != decision.RateLimited {
		t.Errorf("the next config's route started afresh: %v", got)
	}
	g1.Close()
	g1.Close()
	if got := ask(g2); got != decision.RateLimited {
		t.Errorf("after the old gateway closed: %v", got)
	}
	if c := e.lims.closed.Load(); c != 0 {
		t.Errorf("the limiter stopped while a route still holds it (%d closes)", c)
	}
	g2.Close()
	if made, closed := e.lims.made.Load(), e.lims.closed.Load(); made != 1 || closed != 1 {
		t.Errorf("after every route closed: made %d, stopped %d (want 1, 1): a failed config kept a reference", made, closed)
	}
	g3 := e.mustGateway(t, []Route{r}, nil, nil)
	defer g3.Close()
	if got := ask(g3); got != decision.Allowed {
		t.Errorf("a route made after the limiter stopped shares a stopped one: %v", got)
	}
}

// TestTunnelsRecheckOnClosedGateway: a tunnel's route belongs to a
// gateway that was closed (its limiters given back): rechecking under it
// and handing it on still work.
func TestTunnelsRecheckOnClosedGateway(t *testing.T) {
	e := newRVEnv(t)
	up := rvUpstream(t, "http://127.0.0.1:9")
	routes := []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: up, Policy: decision.APIKey, Scopes: []string{"t"},
		MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: time.Hour,
		RateLimit: &RouteLimit{Limit: ratelimit.Limit{Count: 1, Period: time.Minute}, PerKey: true}}}
	g1 := e.mustGateway(t, routes, nil, nil)
	facts := decision.Facts{Method: http.MethodGet, Key: e.raw, Upgrade: true}
	tu := rvTunnel(t, g1, "/live/x", facts, decision.Identity{})
	g1.hold(tu)
	defer tu.release()
	g1.Close()
	if got := e.core.Recheck(context.Background(), tu.decide.Load(), tu.facts); got != decision.Allowed {
		t.Errorf("recheck under a closed gateway's route: %v", got)
	}
	g2 := e.mustGateway(t, routes, nil, nil)
	defer g2.Close()
	g1.Retire(g2)
	if err := context.Cause(tu.ctx); err != nil || tu.owner.Load() != g2 {
		t.Errorf("handed on from a closed gateway: cause %v, held by the new one %v", err, tu.owner.Load() == g2)
	}
}

// TestTunnelsRetiredGatewaysAreFreed: a tunnel opened before a run
// of reloads keeps the gateway it opened on (its handler runs there); the
// gateways retired after it, which hold no tunnel, should be freed.
// Retire's next pointer chains them: each retired gateway keeps the next
// alive, so every gateway of every reload during the oldest tunnel's
// lifetime (up to 24h) stays in memory with its routes and proxies.
func TestTunnelsRetiredGatewaysAreFreed(t *testing.T) {
	e := newRVEnv(t)
	mk := func() *Gateway {
		return e.mustGateway(t, []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: rvUpstream(t, "http://127.0.0.1:9"),
			Policy: decision.Public, MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: time.Hour}}, nil, nil)
	}
	g1 := mk() // kept: the old tunnel's handler runs on it
	tu := rvTunnel(t, g1, "/live/x", decision.Facts{Method: http.MethodGet, Upgrade: true}, decision.Identity{})
	g1.hold(tu)
	defer tu.release()
	g2 := mk()
	g1.Retire(g2)
	g2.Close()
	w2 := weak.Make(g2)
	g3 := mk()
	g2.Retire(g3)
	g2 = nil
	_ = g2
	for range 3 {
		runtime.GC()
	}
	if w2.Value() != nil {
		t.Errorf("a retired gateway that holds no tunnel is still in memory")
	}
	runtime.KeepAlive(g1)
	runtime.KeepAlive(g3)
	if !strings.HasPrefix(tu.st.path, "/live") {
		t.Fatal("tunnel path")
	}
}

// TestTunnelsClientLosesRoute: the client-profile check is part of
// the recheck a reload makes: a key of client "partner" whose profile no
// longer lists the route has its tunnel closed; one whose profile still
// does keeps it.
func TestTunnelsClientLosesRoute(t *testing.T) {
	e := newRVEnv(t)
	e.keys.v.Key.Client = "partner"
	up := rvUpstream(t, "http://127.0.0.1:9")
	routes := []Route{
		{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: up, Policy: decision.APIKey, Scopes: []string{"t"},
			MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: time.Hour},
		{Name: "hist", Prefix: "/hist", Methods: []string{"GET"}, Upstream: up, Policy: decision.APIKey, Scopes: []string{"t"},
			MaxBody: 1, Timeout: time.Second},
	}
	profile := func(rs ...string) ([]Client, []decision.Client) {
		m := map[string][]string{}
		for _, r := range rs {
			m[r] = nil
		}
		return []Client{{Name: "partner", Routes: m}}, []decision.Client{{Name: "partner", Credential: decision.APIKey, Routes: m}}
	}
	gc, dc := profile("live", "hist")
	g1 := e.mustGateway(t, routes, gc, dc)
	t.Cleanup(g1.Close)
	facts := decision.Facts{Method: http.MethodGet, Key: e.raw, Upgrade: true}
	d := e.core.Decide(context.Background(), g1.routes[0].decide, &facts)
	if !d.Allowed() || d.Identity.Client != "partner" {
		t.Fatalf("control: %v %q", d.Reason, d.Identity.Client)
	}
	tu := rvTunnel(t, g1, "/live/x", facts, d.Identity)
	g1.hold(tu)
	defer tu.release()
	g2 := e.mustGateway(t, routes, gc, dc) // same profile: kept
	t.Cleanup(g2.Close)
	g1.Retire(g2)
	if err := context.Cause(tu.ctx); err != nil {
		t.Fatalf("kept profile: closed: %v", err)
	}
	gc, dc = profile("hist")
	g3 := e.mustGateway(t, routes, gc, dc)
	t.Cleanup(g3.Close)
	g2.Retire(g3)
	if err := context.Cause(tu.ctx); !errors.Is(err, errTunnelReloaded) {
		t.Errorf("a tunnel whose client profile no longer lists the route: %v", err)
	}
}

// slowKeys is a key check that takes delay (a store across the network).
type slowKeys struct {
	*oneKey
	delay time.Duration
}

func (s slowKeys) Verify(ctx context.Context, raw string, a netip.Addr) (*apikey.Verified, error) {
	time.Sleep(s.delay)
	return s.oneKey.Verify(ctx, raw, a)
}

// TestTunnelsRetireHoldsNoLockWhileRechecking: Retire judges every
// tunnel (a store read each) while it holds the old gateway's registry
// lock, so for the whole hand-over a tunnel that ends on the old gateway
// cannot release, and a handshake decided there before the swap cannot
// register (and may pass its route timeout waiting). With 20 tunnels and
// a 50ms key check, that is a second; with thousands of tunnels, or a
// store that hangs, minutes (and the reload, under reloadMu, with it).
func TestTunnelsRetireHoldsNoLockWhileRechecking(t *testing.T) {
	keys, raw := testKeys(t)
	kl := ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	t.Cleanup(kl.Close)
	logger := slog.New(slog.DiscardHandler)
	core, err := decision.New(decision.Config{Keys: slowKeys{keys, 50 * time.Millisecond}, KeyLimiter: kl,
		Origins: []string{reviewOrigin}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(core.Close)
	e := &rvEnv{core: core, keys: keys, raw: raw, logger: logger, lims: &rvLimiters{}}
	mk := func() *Gateway {
		g := e.mustGateway(t, []Route{{Name: "live", Prefix: "/live", Methods: []string{"GET"}, Upstream: rvUpstream(t, "http://127.0.0.1:9"),
			Policy: decision.APIKey, Scopes: []string{"t"}, MaxBody: 1, Timeout: time.Second, WebSocket: true, TunnelLifetime: time.Hour}}, nil, nil)
		t.Cleanup(g.Close)
		return g
	}
	g1 := mk()
	facts := decision.Facts{Method: http.MethodGet, Key: raw, Upgrade: true}
	var tus []*tunnel
	for range 20 {
		tu := rvTunnel(t, g1, "/live/x", facts, decision.Identity{})
		g1.hold(tu)
		tus = append(tus, tu)
	}
	g2 := mk()
	retired := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		g1.Retire(g2)
		retired <- time.Since(start)
	}()
	time.Sleep(100 * time.Millisecond)
	// A tunnel that ends now, on the old gateway.
	ended := time.Now()
	tus[0].release()
	waited := time.Since(ended)
	took := <-retired
	for _, tu := range tus {
		tu.release()
	}
	t.Logf("Retire took %v for %d tunnels; a release during it waited %v", took, len(tus), waited)
	if waited > 250*time.Millisecond {
		t.Errorf("a tunnel ending during a reload's hand-over waited %v for the old gateway's lock (Retire rechecks under it)", waited)
	}
}
