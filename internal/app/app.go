// Package app is keyway's composition root: it builds the store, the TLS
// source, the gateway and the listeners from a config.Config, runs them, and
// shuts them down in order. It holds wiring only; every rule lives in the
// packages it wires. The end-to-end tests start an App exactly as
// `keyway serve` does.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/assertion"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/clientip"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/decision"
	"github.com/keywayhq/keyway/internal/demo"
	"github.com/keywayhq/keyway/internal/gateway"
	"github.com/keywayhq/keyway/internal/httpapi"
	"github.com/keywayhq/keyway/internal/passkey"
	"github.com/keywayhq/keyway/internal/portal"
	"github.com/keywayhq/keyway/internal/privacy"
	"github.com/keywayhq/keyway/internal/ratelimit"
	"github.com/keywayhq/keyway/internal/session"
	"github.com/keywayhq/keyway/internal/shape"
	"github.com/keywayhq/keyway/internal/store"
	"github.com/keywayhq/keyway/internal/store/redis"
	"github.com/keywayhq/keyway/internal/tlsconf"
	"github.com/keywayhq/keyway/internal/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options are the parts of a run that do not come from the config file.
type Options struct {
	// Logger receives every log line. Required.
	Logger *slog.Logger
	// Version is reported by healthz and metrics.
	Version string
	// Getenv reads the environment (KEYWAY_PEPPER). Default os.Getenv.
	Getenv func(string) string
	// LogWriter is where Logger writes. The access log goes there
	// directly, in the format of cfg.Log.Format; without it there is no
	// access log (an embedding program logs its own requests).
	LogWriter io.Writer
	// Embedded builds keyway inside another program (the verify package):
	// no listener, no upstream, no setup link; Handler answers forward
	// auth in process, for the program alone. Run still follows the store.
	Embedded bool
}

// App is a running keyway.
type App struct {
	cfg    *config.Config
	logger *slog.Logger

	db       store.Store
	keyStore io.Closer // the data keys' store, when it is not db
	keys     *apikey.Service
	passkeys *passkey.Service
	sessions *session.Manager
	own      *httpapi.Own
	portal   portal.Handler
	admin    *httpapi.Admin
	keyLimit decision.CloseLimiter[string]
	redis    *redis.Client     // nil: limits are per node
	tracing  *tracing.Provider // nil: tracing is off
	getenv   func(string) string

	publicURL string
	setupURL  string
	// sourceKey keys the remembered sign-in sources (see passkey.SourceStore).
	sourceKey []byte
	signer    *assertion.Signer
	// checkpoints signs the audit trail's head; nil when they are off.
	checkpoints *audit.Checkpointer
	// lockouts audits the lockouts of abuse limits.
	lockouts *audit.Lockouts
	// clientKey keys the pseudonyms of client addresses (the access log,
	// audited lockouts).
	clientKey []byte
	clientCA  *tlsconf.LocalCA
	// gw is the gateway serving now; a reload swaps it (gwCfg is what a
	// new one is built from, but its routes).
	gw       atomic.Pointer[gateway.Gateway]
	gwCfg    gateway.Config
	core     *decision.Core
	reloadMu sync.Mutex
	caFile   string
	caPool   *x509.CertPool
	servers  []*server
}

type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
	tls  bool
}

// New builds everything a run needs and binds the listeners, so that the
// addresses are known (and a port conflict is reported) before Run.
// On error, everything built so far is released.
func New(ctx context.Context, cfg *config.Config, opts Options) (a *App, err error) {
	if opts.Logger == nil {
		return nil, errors.New("app: a logger is required")
	}
	built := &App{cfg: cfg, logger: opts.Logger}
	a = built
	defer func() {
		if err != nil {
			// Every "return nil, err" below sets a to nil: release what
			// was built through its own pointer.
			built.closeAll()
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if a.tracing, err = tracing.New(ctx, cfg.Tracing, opts.Version); err != nil {
		return nil, err
	}
	var queries pgx.QueryTracer
	if tp := a.tracing.TracerProvider(); tp != nil {
		queries = tracing.QueryTracer(tp)
	}
	if a.db, err = store.OpenTraced(ctx, cfg.Store, true, queries); err != nil {
		return nil, err
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	a.getenv = opts.Getenv
	pepper, err := PepperFor(ctx, cfg, opts.Getenv, a.db)
	if err != nil {
		return nil, err
	}
	if a.keyStore, err = sealStore(ctx, cfg, opts.Getenv, a.db, pepper, true); err != nil {
		return nil, err
	}
	if cfg.Audit.CheckpointEvery > 0 {
		auditSigner, err := AuditSigner(cfg, opts.Getenv, true)
		if err != nil {
			return nil, err
		}
		a.checkpoints = &audit.Checkpointer{Store: a.db, Signer: auditSigner}
	}
	if a.redis, err = openRedis(ctx, cfg, opts.Getenv, a.logger, a.tracing.TracerProvider()); err != nil {
		return nil, err
	}
	var quotas apikey.QuotaCounter
	if a.redis != nil {
		quotas = redis.NewQuotas(a.redis, failurePolicy(cfg.Redis.OnFailure))
	}
	if a.keys, err = newKeyService(ctx, cfg, a.db, a.logger, pepper, quotas); err != nil {
		return nil, err
	}
	if a.sourceKey, err = derivedKey(pepper, "sign-in sources v1"); err != nil {
		return nil, err
	}
	if a.clientKey, err = derivedKey(pepper, "access log clients v1"); err != nil {
		return nil, err
	}
	a.lockouts = audit.NewLockouts(a.db, a.logger)
	assertKey, err := derivedKey(pepper, "identity assertions v1")
	if err != nil {
		return nil, err
	}

	var src tlsconf.CertSource
	var acme *tlsconf.ACME
	if !opts.Embedded {
		if src, acme, err = a.certSource(); err != nil {
			return nil, err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyway_build_info", Help: "Always 1; the version label says which keyway runs.",
	}, []string{"version"})
	buildInfo.WithLabelValues(opts.Version).Set(1)
	reg.MustRegister(buildInfo)
	if lw, ok := opts.LogWriter.(interface{ Dropped() int64 }); ok {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyway_log_lines_dropped_total",
			Help: "Log lines dropped because the log output stalled; each first waited up to a second for room, and no request waits longer."},
			func() float64 { return float64(lw.Dropped()) }))
	}

	hosts := gateway.NewHosts(cfg.HostNames())
	if opts.Embedded {
		hosts = nil // only the embedding program asks, by no name
	}
	// The public URL is known once the HTTPS listener is bound; the signer
	// is made first because the upstreams take it.
	httpsAddr := cfg.Listen
	var httpsLn net.Listener
	if !opts.Embedded {
		if httpsLn, err = a.bind("https", cfg.Listen); err != nil {
			return nil, err
		}
		httpsAddr = httpsLn.Addr().String()
	}
	_, _, a.publicURL = relyingParty(cfg, httpsAddr)
	if a.signer, err = assertion.New(assertion.Config{Secret: assertKey, Issuer: a.publicURL}); err != nil {
		return nil, err
	}
	routes, err := a.gatewayRoutes(cfg, opts.Embedded, false)
	if err != nil {
		return nil, err
	}
	leak, err := a.leakConfig()
	if err != nil {
		return nil, err
	}
	// The HTTPS listener (bound above: passkey origins carry its port)
	// serves nothing until Run.
	if !opts.Embedded {
		a.serve("https", httpsLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.gw.Load().ServeHTTP(w, r) }),
			tlsconf.Policy(src, cfg.TLS.MinVersion == "1.3"))
	}
	var origins []string
	if a.passkeys, a.sessions, origins, err = a.newPeople(httpsAddr); err != nil {
		return nil, err
	}
	// One decision core for every door: the proxy, keyway's own endpoints,
	// the portal and the admin listener.
	var limiters decision.Limiters
	if a.redis != nil {
		rc := a.redis
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyway_redis_up",
				Help: "1 while Redis answers; 0 while shared limits run on their failure policy (redis.on_failure)."},
				func() float64 {
					if rc.Down() {
						return 0
					}
					return 1
				}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyway_cluster_nodes",
				Help: "Live keyway nodes at the last heartbeat through Redis."}, func() float64 { return float64(rc.Nodes()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyway_redis_limiter_calls_total",
				Help: "Shared-limiter scripts run on Redis by this node (hot keys lease tokens: far fewer than requests)."},
				func() float64 { return float64(rc.Calls()) }),
		)
		limiters = sharedLimiters{redis.Limiters{Client: a.redis, Policy: failurePolicy(cfg.Redis.OnFailure)}}
		a.keyLimit = limiters.ByKey("key")
	} else {
		a.keyLimit = ratelimit.NewMemory[string](ratelimit.MemoryConfig{})
	}
	coreClients, gwClients, err := clientProfiles(cfg)
	if err != nil {
		return nil, err
	}
	var keys decision.KeyVerifier = a.keys
	var sessions sessionVerifier = sessionChecker{a.sessions, a.db}
	if tracer := a.tracing.Tracer(); tracer != nil {
		keys, sessions = tracedKeys{keys, tracer}, tracedSessions{sessions, tracer}
	}
	core, err := decision.New(decision.Config{
		Keys: keys, KeyLimiter: a.keyLimit, KeyHeader: cfg.APIKeys.Header,
		// Users is never asked: sessions reads the person with the session.
		Sessions: sessions, Users: a.passkeys, Origins: origins, Logger: a.logger, Metrics: reg,
		Clients: coreClients, Limiters: limiters,
		OnGuessLockout: func(src netip.Addr) {
			a.lockouts.Locked("api_key_guessing", "client:"+gateway.ClientPseudonym(a.clientKey, src))
		},
	})
	if err != nil {
		return nil, err
	}
	a.core = core
	a.portal, err = portal.New(portal.Config{Accounts: a.passkeys, Sessions: a.sessions, Decider: core, Keys: a.keys,
		Audit: auditLog{a.db}, Origin: a.publicURL, OpenSignUp: passkey.SignUpMode(cfg.Passkeys.SignUp) == passkey.SignUpOpen, Logger: a.logger})
	if err != nil {
		return nil, err
	}
	var authLimit httpapi.BulkLimiter[string]
	var leakLimit httpapi.BulkLimiter[netip.Addr]
	if a.redis != nil {
		// Abuse budgets are shared and fail closed, whatever redis.on_failure says.
		authLimit = redis.NewLimiter(a.redis, "auth", func(k string) string { return k }, redis.FailClosed)
		leakLimit = redis.NewLimiter(a.redis, "leak", netip.Addr.String, redis.FailClosed)
	}
	a.own, err = httpapi.New(httpapi.Config{Store: a.db, Logger: a.logger, Version: opts.Version, Leak: leak, JWKS: a.signer,
		AuthLimiter: authLimit, LeakLimiter: leakLimit,
		Auth: &httpapi.AuthConfig{Accounts: a.passkeys, Sessions: a.sessions, Decider: core, Keys: a.keys,
			SessionMaxAge: cfg.Sessions.AbsoluteTimeout, PublicURL: a.publicURL, SelfServiceScopes: cfg.APIKeys.SelfServiceScopes,
			Privacy: &privacy.Service{Store: a.db, Keys: a.keys}, OnLockout: a.lockedOut, OnSignInFailed: a.signInFailed},
		Portal: a.portal,
	})
	if err != nil {
		return nil, err
	}
	clientIP := clientip.New(cfg.TrustedProxies, cfg.Server.IPv6Prefix)
	var fa *gateway.ForwardAuth
	switch {
	case opts.Embedded:
		// The program that embeds keyway is the only "proxy" there is.
		fa = &gateway.ForwardAuth{Proxies: clientip.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, cfg.Server.IPv6Prefix),
			Signer: a.signer, Audience: cfg.ForwardAuth.Audience}
	case cfg.ForwardAuth.Enabled:
		fa = &gateway.ForwardAuth{Proxies: clientip.New(cfg.ForwardAuth.TrustedProxies, cfg.Server.IPv6Prefix),
			Signer: a.signer, Audience: cfg.ForwardAuth.Audience}
	}
	access := accessLog(cfg, opts, a.logger, a.clientKey)
	a.gwCfg = gateway.Config{
		ForwardAuth:          fa,
		Own:                  a.own,
		ClientIP:             clientIP,
		CaseInsensitivePaths: cfg.Server.CaseInsensitivePaths,
		Hosts:                hosts,
		HSTSMaxAge:           cfg.TLS.HSTSMaxAge,
		Decider:              core,
		Clients:              gwClients,
		Profiles:             core.Profiles(),
		Logger:               a.logger,
		AccessLog:            access,
		Metrics:              reg,
		Tracer:               a.tracing.Tracer(),
	}
	gwc := a.gwCfg
	gwc.Routes = routes
	gw, err := gateway.New(gwc)
	if err != nil {
		return nil, err
	}
	a.gw.Store(gw)

	if opts.Embedded {
		return a, nil
	}
	if err := a.setupLink(ctx); err != nil {
		return nil, err
	}
	if cfg.HTTPListen != config.ListenOff {
		_, port, _ := net.SplitHostPort(a.Addr("https"))
		h := httpapi.Redirect(port, hosts)
		if acme != nil {
			h = acme.HTTPHandler(h)
		}
		if err := a.listen("http", cfg.HTTPListen, h, nil); err != nil {
			return nil, err
		}
	}
	a.admin, err = httpapi.NewAdmin(httpapi.AdminConfig{
		Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Keys:     a.keys,
		Decider:  core,
		ClientIP: clientIP,
		JWKS:     a.signer,
		People:   a.passkeys,
		Privacy:  &privacy.Service{Store: a.db, Keys: a.keys},
		Logger:   a.logger,
	})
	if err != nil {
		return nil, err
	}
	if err := a.listen("admin", cfg.AdminListen, a.admin, nil); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload applies next's routes, upstreams and client profiles
// (config.Reloadable) to the running keyway: a new gateway is built beside
// the serving one and swapped in at once, so every request is served by
// one or the other, whole; the old one's route limiters stop once requests
// in flight are done. A config that differs in anything else is refused,
// with the settings that need a restart, and the running one goes on
// unchanged.
func (a *App) Reload(next *config.Config) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if diff := a.cfg.NeedsRestart(next); len(diff) > 0 {
		ev := audit.Event{At: time.Now(), Type: audit.ConfigReloadRefused, Actor: "system", Subject: "config",
			Detail: map[string]string{"needs_restart": strings.Join(diff, ",")}}
		if err := a.db.AppendAudit(context.Background(), ev); err != nil {
			a.logger.Warn("audit a refused reload", slog.String("error", err.Error()))
		}
		return fmt.Errorf("these settings changed and need a restart: %s (a reload applies only %s)",
			strings.Join(diff, ", "), strings.Join(config.Reloadable, ", "))
	}
	routes, err := a.gatewayRoutes(next, false, true)
	if err != nil {
		return err
	}
	coreClients, gwClients, err := clientProfiles(next)
	if err != nil {
		return err
	}
	profiles, err := decision.NewProfiles(coreClients)
	if err != nil {
		return err
	}
	gwc := a.gwCfg
	gwc.Routes, gwc.Clients, gwc.Profiles = routes, gwClients, profiles
	gw, err := gateway.New(gwc)
	if err != nil {
		return err
	}
	// A reload that cannot be audited does not happen.
	ev := audit.Event{At: time.Now(), Type: audit.ConfigReloaded, Actor: "system", Subject: "config", Detail: map[string]string{
		"routes": strconv.Itoa(len(next.Routes)), "upstreams": strconv.Itoa(len(next.Upstreams)), "clients": strconv.Itoa(len(next.Clients))}}
	if err := a.db.AppendAudit(context.Background(), ev); err != nil {
		gw.Close()
		return fmt.Errorf("audit the reload: %w", err)
	}
	// The new gateway decides its routes with its own profiles and shapes
	// with the same config's rules, so a request is decided and shaped by
	// one config whichever gateway it started on. The core's set in force
	// is for the other doors.
	a.core.SetProfiles(profiles)
	a.keys.SetClients(slices.Sorted(maps.Keys(next.Clients)))
	a.gwCfg.Clients, a.gwCfg.Profiles = gwClients, profiles
	old := a.gw.Swap(gw)
	// Open WebSocket tunnels are judged again by the new config, and
	// those it would not open are closed.
	old.Retire(gw)
	// Requests in flight finish on the old gateway; its limiters stop after
	// the longest any of them may take.
	time.AfterFunc(a.cfg.Server.WriteTimeout+time.Second, old.Close)
	a.logger.Info("config reloaded", slog.Int("routes", len(next.Routes)), slog.Int("upstreams", len(next.Upstreams)),
		slog.Int("clients", len(next.Clients)))
	return nil
}

// gatewayRoutes builds the upstreams and routes of cfg: at start, and again
// at each reload.
func (a *App) gatewayRoutes(cfg *config.Config, embedded, reload bool) ([]gateway.Route, error) {
	var err error
	upstreams := make(map[string]*gateway.Upstream, len(cfg.Upstreams))
	for name, uc := range cfg.Upstreams {
		if embedded {
			break // decided in process, never proxied
		}
		rawURL := uc.URL
		if rawURL == config.DemoUpstreamURL {
			if rawURL, err = a.startDemo(reload); err != nil {
				return nil, err
			}
		}
		var roots *x509.CertPool
		if uc.CAFile != "" {
			if roots, err = loadPool(uc.CAFile); err != nil {
				return nil, fmt.Errorf("upstream %s: %w", name, err)
			}
		}
		ucfg := gateway.UpstreamConfig{
			Name: name, URL: rawURL, MaxIdleConns: uc.MaxIdleConns, DialTimeout: uc.DialTimeout, RootCAs: roots,
			Audience: uc.Audience, StandardOnly: uc.StandardProxy,
		}
		if uc.Assertion {
			ucfg.Signer = a.signer
		}
		if uc.MTLS {
			if ucfg.ClientCertificate, err = a.clientCertificate(uc); err != nil {
				return nil, fmt.Errorf("upstream %s: %w", name, err)
			}
		}
		up, err := gateway.NewUpstream(ucfg)
		if err != nil {
			return nil, err
		}
		upstreams[name] = up
	}
	routes := make([]gateway.Route, 0, len(cfg.Routes))
	for _, rc := range cfg.Routes {
		gr := gateway.Route{
			Name: rc.Name, Prefix: rc.Path, Methods: rc.Methods, Upstream: upstreams[rc.Upstream],
			Policy: decision.Policy(rc.Policy), Scopes: rc.Scopes, Roles: rc.Roles, StripPrefix: rc.StripPrefix,
			MaxBody: int64(rc.MaxBody), Timeout: rc.Timeout,
			WebSocket: rc.WebSocket, TunnelLifetime: rc.WebSocketMaxLifetime, PassHeaders: rc.PassHeaders,
			AllowUpstreamCookies: rc.AllowUpstreamCookies,
		}
		if rl := rc.RateLimit; rl != nil {
			l, err := ratelimit.ParseLimit(rl.Rate)
			if err != nil {
				return nil, fmt.Errorf("route %s: %w", rc.Name, err)
			}
			l.Burst = rl.Burst
			perKey := rl.Per == "key" || (rl.Per == "" && rc.Policy == config.PolicyAPIKey)
			gr.RateLimit = &gateway.RouteLimit{Limit: l, PerKey: perKey}
		}
		routes = append(routes, gr)
	}
	return routes, nil
}

// clientProfiles turns the config's client profiles into what the decision
// core checks (routes and methods) and what the proxy applies (CORS and
// fields).
func clientProfiles(cfg *config.Config) ([]decision.Client, []gateway.Client, error) {
	var core []decision.Client
	var gw []gateway.Client
	for _, name := range slices.Sorted(maps.Keys(cfg.Clients)) {
		c := cfg.Clients[name]
		core = append(core, decision.Client{Name: name, Credential: decision.Policy(c.Credential), Routes: c.Routes,
			CORSOrigins: c.CORS.Origins})
		g := gateway.Client{Name: name, Session: c.Credential == config.PolicySession, Routes: c.Routes,
			CORSOrigins: c.CORS.Origins, CORSHeaders: c.CORS.AllowHeaders, CORSMaxAge: c.CORS.MaxAge,
			PassNonJSON: c.NonJSON == "pass", MaxShapedBody: int64(c.MaxShapedBody), Fields: map[string]*shape.Rule{}}
		for route, f := range c.Fields {
			var rule *shape.Rule
			var err error
			if len(f.Allow) > 0 {
				rule, err = shape.Allow(f.Allow)
			} else {
				rule, err = shape.Deny(f.Deny)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("client %s: fields of %s: %w", name, route, err)
			}
			g.Fields[route] = rule
		}
		gw = append(gw, g)
	}
	return core, gw, nil
}

// clientCertificate is what an upstream with mtls: true is shown: the
// configured certificate and key, or keyway's own from its upstream client
// CA, opened once.
func (a *App) clientCertificate(uc config.Upstream) (func(*tls.CertificateRequestInfo) (*tls.Certificate, error), error) {
	if uc.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(uc.ClientCertFile, uc.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }, nil
	}
	if a.clientCA == nil {
		ca, err := tlsconf.OpenClientCA(tlsconf.LocalCAConfig{Dir: a.cfg.DataDir, Logger: a.logger})
		if err != nil {
			return nil, err
		}
		a.clientCA = ca
	}
	return a.clientCA.GetClientCertificate, nil
}

func (a *App) leakConfig() (httpapi.LeakConfig, error) {
	lr := a.cfg.APIKeys.LeakReport
	if lr.Enabled != nil && !*lr.Enabled {
		return httpapi.LeakConfig{}, nil
	}
	l, err := ratelimit.ParseLimit(lr.RateLimit)
	if err != nil {
		return httpapi.LeakConfig{}, fmt.Errorf("leak report rate limit: %w", err)
	}
	lc := httpapi.LeakConfig{Reporter: a.keys, Limit: l}
	if lr.VerifyKeysFile != "" {
		data, err := os.ReadFile(filepath.Clean(lr.VerifyKeysFile))
		if err != nil {
			return lc, fmt.Errorf("leak report verify keys: %w", err)
		}
		if lc.VerifyKeys, err = httpapi.ParseVerifyKeys(data); err != nil {
			return lc, err
		}
	}
	return lc, nil
}

func (a *App) certSource() (tlsconf.CertSource, *tlsconf.ACME, error) {
	cfg := a.cfg
	switch cfg.TLS.Mode {
	case config.TLSFiles:
		fs, err := tlsconf.NewFileSource(tlsconf.FileSourceConfig{
			CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, Logger: a.logger,
		})
		return fs, nil, err
	case config.TLSACME:
		m, err := tlsconf.NewACME(tlsconf.ACMEConfig{
			Hosts: cfg.TLS.ACME.Hosts, Email: cfg.TLS.ACME.Email,
			DirectoryURL: cfg.TLS.ACME.DirectoryURL, CacheDir: cfg.TLS.ACME.CacheDir,
		})
		return m, m, err
	default:
		ca, err := tlsconf.OpenLocalCA(tlsconf.LocalCAConfig{Dir: cfg.DataDir, Logger: a.logger})
		if err != nil {
			return nil, nil, err
		}
		a.caFile, a.caPool = ca.CertFile(), ca.Pool()
		return ca, nil, nil
	}
}

// startDemo runs the built-in weather API on a loopback port and returns its URL.
func (a *App) startDemo(reload bool) (string, error) {
	for _, s := range a.servers {
		if s.name == "demo" {
			return "http://" + s.ln.Addr().String(), nil
		}
	}
	if reload {
		// Servers start with keyway only (Run serves them); one started
		// now would never answer.
		return "", errors.New("the demo upstream (" + config.DemoUpstreamURL + ") starts only with keyway: restart to add it")
	}
	if err := a.listen("demo", "127.0.0.1:0", demo.New(nil).Handler(), nil); err != nil {
		return "", err
	}
	return "http://" + a.servers[len(a.servers)-1].ln.Addr().String(), nil
}

func (a *App) bind(name, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return ln, nil
}

func (a *App) listen(name, addr string, h http.Handler, tlsCfg *tls.Config) error {
	ln, err := a.bind(name, addr)
	if err != nil {
		return err
	}
	a.serve(name, ln, h, tlsCfg)
	return nil
}

func (a *App) serve(name string, ln net.Listener, h http.Handler, tlsCfg *tls.Config) {
	sc := a.cfg.Server
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		ReadTimeout:       sc.ReadTimeout,
		WriteTimeout:      sc.WriteTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    int(sc.MaxHeaderBytes),
		// net/http reports TLS handshake failures and the like here; they are
		// the client's problem, so they go out at debug level.
		ErrorLog: log.New(debugWriter{a.logger.With(slog.String("listener", name))}, "", 0),
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	a.servers = append(a.servers, &server{name: name, srv: srv, ln: ln, tls: tlsCfg != nil})
}

// Addr returns the bound address of the "https", "http", "admin" or "demo"
// listener, or "" if there is none.
func (a *App) Addr(name string) string {
	for _, s := range a.servers {
		if s.name == name {
			return s.ln.Addr().String()
		}
	}
	return ""
}

// Handler is keyway's HTTPS handler: what the HTTPS listener serves, and
// what an embedded keyway answers forward auth with.
func (a *App) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.gw.Load().ServeHTTP(w, r) })
}

// CAFile is the local CA's certificate file ("" unless TLS mode is local).
func (a *App) CAFile() string { return a.caFile }

// CAPool holds the local CA (nil unless TLS mode is local).
func (a *App) CAPool() *x509.CertPool { return a.caPool }

// changeListener is a store that pushes news of key changes made on
// other nodes (store/postgres).
type changeListener interface {
	Listen(ctx context.Context, wake func(), logger *slog.Logger)
}

// Run serves until ctx is done, then shuts down gracefully: listeners stop
// accepting, in-flight requests get up to Server.ShutdownTimeout to finish,
// and the store is closed last. It returns the first serving error, if any.
func (a *App) Run(ctx context.Context) error {
	a.logStartup()
	// The key service outlives the listeners' drain, so that the usage of
	// the last requests is flushed before the store closes.
	svcCtx, stopSvc := context.WithCancel(context.WithoutCancel(ctx))
	svcDone := make(chan struct{})
	go func() {
		defer close(svcDone)
		var listening sync.WaitGroup
		if l, ok := a.db.(changeListener); ok {
			listening.Go(func() { l.Listen(svcCtx, a.keys.Wake, a.logger) })
		}
		if a.redis != nil {
			listening.Go(func() { a.redis.Run(svcCtx) })
		}
		go a.sweepSessions(svcCtx)
		listening.Go(func() { a.signCheckpoints(svcCtx) })
		listening.Go(func() { a.reloadKEKRing(svcCtx) })
		a.keys.Run(svcCtx)
		listening.Wait()
	}()
	errc := make(chan error, len(a.servers))
	var wg sync.WaitGroup
	for _, s := range a.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.logger.Info("listening", slog.String("listener", s.name), slog.String("addr", s.ln.Addr().String()),
				slog.String("serves", a.serves(s.name)))
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.logger.Info("shutting down", slog.Duration("drain_timeout", a.cfg.Server.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Server.ShutdownTimeout)
	defer cancel()
	// The public listeners drain first; the demo upstream goes last so that
	// requests in flight to it can still complete.
	var shutWG sync.WaitGroup
	for _, s := range a.servers {
		if s.name == "demo" {
			continue
		}
		shutWG.Add(1)
		go func() {
			defer shutWG.Done()
			if err := s.srv.Shutdown(sctx); err != nil {
				a.logger.Warn("drain incomplete", slog.String("listener", s.name), slog.String("error", err.Error()))
				_ = s.srv.Close()
			}
		}()
	}
	shutWG.Wait()
	for _, s := range a.servers {
		if s.name == "demo" {
			_ = s.srv.Shutdown(sctx)
		}
	}
	wg.Wait()
	stopSvc()
	<-svcDone
	// Every writer has stopped: sign the head the trail ends on, so that a
	// tail cut off while keyway is down is caught.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	a.signCheckpoint(cctx)
	ccancel()
	a.closeAll()
	a.logger.Info("stopped")
	return runErr
}

// closeAll releases what New built. It is safe to call more than once.
func (a *App) closeAll() {
	for _, s := range a.servers {
		_ = s.ln.Close()
	}
	if gw := a.gw.Load(); gw != nil {
		gw.Close()
	}
	if a.own != nil {
		a.own.Close()
	}
	if a.portal != nil {
		a.portal.Close()
	}
	if a.admin != nil {
		a.admin.Close()
	}
	if a.keyLimit != nil {
		a.keyLimit.Close()
	}
	if a.core != nil {
		a.core.Close()
	}
	if a.lockouts != nil {
		a.lockouts.Close() // before the store: what is queued is written
		a.lockouts = nil
	}
	if a.redis != nil {
		_ = a.redis.Close()
		a.redis = nil
	}
	if a.db != nil {
		if err := a.db.Close(); err != nil {
			a.logger.Error("close store", slog.String("error", err.Error()))
		}
		a.db = nil
	}
	if a.keyStore != nil {
		if err := a.keyStore.Close(); err != nil {
			a.logger.Error("close key store", slog.String("error", err.Error()))
		}
		a.keyStore = nil
	}
	if a.tracing != nil {
		// Last: the spans of the final requests and of the store's last
		// writes are sent.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.tracing.Shutdown(ctx); err != nil {
			a.logger.Warn("send the last spans", slog.String("error", err.Error()))
		}
		cancel()
		a.tracing = nil
	}
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(filepath.Clean(file))
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return p, nil
}

type debugWriter struct{ l *slog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.l.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

// accessLog is the gateway's access log: on when log.access says so (the
// default), the logger writes info lines and there is a LogWriter.
func accessLog(cfg *config.Config, opts Options, logger *slog.Logger, clientKey []byte) *gateway.AccessLog {
	if cfg.Log.Access != nil && !*cfg.Log.Access || opts.LogWriter == nil || !logger.Enabled(context.Background(), slog.LevelInfo) {
		return nil
	}
	l := &gateway.AccessLog{W: opts.LogWriter, Text: cfg.Log.Format == "text"}
	if cfg.Log.ClientAddress != "full" {
		l.ClientKey = clientKey
	}
	return l
}

// signInFailed audits a refused sign-in, under a pseudonym of the client,
// within the bounds of lockouts (anyone can fail a sign-in at will).
func (a *App) signInFailed(why string, client netip.Addr) {
	a.lockouts.Record(audit.Event{At: time.Now(), Type: audit.SignInFailed, Actor: "anonymous",
		Subject: "client:" + gateway.ClientPseudonym(a.clientKey, client), Detail: map[string]string{"why": why}})
}

// lockedOut audits an abuse limit's refusal under a pseudonym of its key:
// the key holds an address or a username.
func (a *App) lockedOut(limit, key string) {
	a.lockouts.Locked(limit, "limit:"+gateway.ClientPseudonymOf(a.clientKey, key))
}

// NewLogger builds the process logger. ReplaceAttr is a second line of
// defence: an attribute whose key names a credential is redacted even if a
// future log call forgets the rule. When w buffers (it has a Flush method,
// as a logbuf.Writer does), every warning and error is flushed at once, so
// that only info and debug lines ever wait.
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: redact}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	if f, ok := w.(flusher); ok {
		h = flushOnWarn{Handler: h, f: f}
	}
	return slog.New(h)
}

type flusher interface{ Flush() error }

// flushOnWarn flushes a buffered log after each record of level warn and up.
type flushOnWarn struct {
	slog.Handler
	f flusher
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.f.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushOnWarn) WithAttrs(as []slog.Attr) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithAttrs(as), f: h.f}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithGroup(name), f: h.f}
}

func redact(_ []string, a slog.Attr) slog.Attr {
	switch strings.ToLower(a.Key) {
	case "authorization", "cookie", "set-cookie", "token", "secret", "password", "key", "api_key", "session":
		return slog.String(a.Key, "[redacted]")
	}
	if a.Value.Kind() == slog.KindDuration {
		// "30s", as durations are written in the config, not the JSON
		// handler's nanoseconds.
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
