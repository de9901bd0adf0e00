package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Lint returns the security smells of c, sorted by line: settings that are
// valid but risky, which `keyway check` prints as warnings. It expects a
// config that passed Validate, and skips what it cannot make sense of.
func (c *Config) Lint() []Warning {
	l := &linter{c: c}
	if len(c.Routes) == 0 {
		l.warnf("no-routes", "routes", "no routes are configured, so the gateway serves nothing")
	}
	if c.Log.Level == "debug" {
		l.warnf("debug-log", "log.level", "log level debug can write request details to the logs; use info in production")
	}
	if host, ok := listenHost(c.Listen); ok && !isLoopback(host) && c.TLS.Mode == TLSLocal {
		l.warnf("listen-local-ca", "listen", "listen %q accepts connections from the network, but the local CA only issues certificates for localhost, "+
			"which other machines do not trust; use tls mode files or acme", c.Listen)
	}
	if host, ok := listenHost(c.AdminListen); ok && !isLoopback(host) {
		l.warnf("admin-listen-public", "admin_listen", "admin listener %q is reachable from the network; keep /metrics and the admin API on loopback, such as 127.0.0.1:9090", c.AdminListen)
	}
	for i, p := range c.TrustedProxies {
		path := "trusted_proxies[" + strconv.Itoa(i) + "]"
		switch {
		case !p.IsValid():
		case p.Bits() == 0:
			l.warnf("trusted-proxy-everyone", path, "trusted proxy %s is every address: any client can forge X-Forwarded-For and be believed", p)
		case p.Addr().Is4() && p.Bits() < 8, p.Addr().Is6() && p.Bits() < 32:
			l.warnf("trusted-proxy-wide", path, "trusted proxy %s is wider than /8 (IPv4) or /32 (IPv6): list your proxies' own addresses, since any client inside it can forge X-Forwarded-For", p)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		u, err := url.Parse(c.Upstreams[name].URL)
		if err == nil && u.Scheme == "http" && u.Hostname() != "" && !isLoopback(u.Hostname()) {
			l.warnf("upstream-plain-http", "upstreams."+name+".url", "upstream %q uses plain http to %s, a non-loopback host: requests and the identity keyway adds cross the network unencrypted; use https", name, u.Hostname())
		}
	}
	if c.Store.Driver == "postgres" {
		if u, err := url.Parse(c.Store.DSN); err == nil {
			if _, ok := u.User.Password(); ok && c.src.env["store.dsn"] == "" {
				l.warnf("dsn-password", "store.dsn", "the config file holds the database password; give the DSN in KEYWAY_STORE_DSN, or use PGPASSFILE or a client certificate")
			}
			switch mode := u.Query().Get("sslmode"); {
			case isLoopback(u.Hostname()):
			case mode != "verify-full":
				l.warnf("dsn-sslmode", "store.dsn", "the database at %s is reached with sslmode=%q: keys' hashes and sessions cross the network unverified; use sslmode=verify-full", u.Hostname(), mode)
			}
		}
	}
	if c.Store.Driver == "postgres" && c.Redis.Addr == "" {
		l.warnf("redis-missing", "redis", "the store is shared by many nodes but rate limits are per node: N nodes allow N times each limit; set redis.addr (or KEYWAY_REDIS_ADDR)")
	}
	if c.Redis.Addr != "" && c.Redis.Prefix == defaultRedisPrefix {
		l.warnf("redis-default-prefix", "redis.prefix", "redis.prefix is the default %q: another keyway deployment on the same Redis would share this one's rate limits and abuse budgets "+
			"(its clients could lock out yours); give this deployment a prefix of its own, such as \"keyway:shop-prod:\"", defaultRedisPrefix)
	}
	if c.Redis.Addr != "" && !c.Redis.TLS {
		if host, _, err := net.SplitHostPort(c.Redis.Addr); err == nil && !isLoopback(host) {
			l.warnf("redis-no-tls", "redis.addr", "Redis at %s is reached without TLS: set redis.tls: true", host)
		}
	}
	rolesUsed := slices.ContainsFunc(c.Routes, func(r Route) bool { return len(r.Roles) > 0 })
	for i, r := range c.Routes {
		switch {
		case r.Policy == PolicyAPIKey && len(r.Scopes) == 0:
			l.warnf("api-key-route-no-scopes", routePath(i), "api_key route %q has no scopes: any valid key passes, even one made for something else; give it scopes and give keys only the scopes they need", r.Name)
		case r.Policy == PolicySession && rolesUsed && len(r.Roles) == 0:
			l.warnf("session-route-no-roles", routePath(i), "session route %q has no roles while other routes have some: any signed-in person passes; add roles: [...] if it is not for everyone", r.Name)
		}
		if r.Policy != PolicyPublic {
			continue
		}
		var writes []string
		for _, m := range r.Methods {
			if m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE" {
				writes = append(writes, m)
			}
		}
		if len(writes) > 0 {
			l.warnf("public-route-writes", routePath(i)+".methods", "public route %q allows %s: anyone can write without signing in", r.Name, strings.Join(writes, ", "))
		}
		if r.RateLimit == nil {
			l.warnf("public-route-no-rate-limit", routePath(i), "public route %q has no rate_limit: one client can use all of the upstream's capacity; add rate_limit: {rate: 60/min, per: ip}", r.Name)
		}
		if r.WebSocket {
			l.warnf("public-route-websocket", routePath(i)+".websocket", "public route %q accepts WebSockets: anyone can hold a tunnel to the upstream open for %s; give it policy api_key or session", r.Name, r.WebSocketMaxLifetime)
		}
	}
	sort.SliceStable(l.warns, func(i, j int) bool { return lineLess(l.warns[i].Line, l.warns[j].Line) })
	return l.warns
}

// LogFormatOn is the log format for an output that is, or is not, a
// terminal: the one the file or KEYWAY_LOG_FORMAT wrote, else text on a
// terminal (a person reads it) and JSON elsewhere (a collector does).
func (c *Config) LogFormatOn(terminal bool) string {
	if !terminal || c.src.has("log.format") || c.src.env["log.format"] != "" {
		return c.Log.Format
	}
	return "text"
}

// Warn makes a warning about the setting at path, located in the file
// (or environment variable) that set it, for checks made outside this
// package (those that look at files: keyway check --production).
func (c *Config) Warn(code, path, msg string) Warning {
	file, line, _ := c.src.locate(path)
	return Warning{File: file, Line: line, Code: code, Path: path, Msg: msg}
}

// linter collects the warnings of one Config.
type linter struct {
	c     *Config
	warns []Warning
}

// warnf records a warning, named code, about the setting at path.
func (l *linter) warnf(code, path, format string, args ...any) {
	file, line, _ := l.c.src.locate(path)
	l.warns = append(l.warns, Warning{File: file, Line: line, Code: code, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// listenHost returns the host of a listen address, "" for every interface.
func listenHost(addr string) (string, bool) {
	host, _, err := net.SplitHostPort(addr)
	return host, err == nil
}

// isLoopback reports whether host names this machine only: "localhost" or
// a loopback IP address. Other names are assumed to reach the network.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
