package app

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
)

// logStartup logs what this keyway is (what each listener serves is on
// its "listening" line): what protects each route, where state, limits
// and spans go, and every security warning keyway check would give (with
// --production, but for the demo), so that a mistake shows the first
// time anyone reads the log rather than the first time it is exploited.
func (a *App) logStartup() {
	cfg, l := a.cfg, a.logger
	redis := "none: each node keeps its own limits"
	if cfg.Redis.Addr != "" {
		redis = cfg.Redis.Addr + " without TLS"
		if cfg.Redis.TLS {
			redis = cfg.Redis.Addr + " over TLS"
		}
	}
	forward := "off"
	if cfg.ForwardAuth.Enabled {
		forward = "on: /.keyway/verify answers " + prefixes(cfg.ForwardAuth.TrustedProxies)
	}
	l.Info("protections",
		slog.String("tls", cfg.TLS.Mode+", at least TLS "+cfg.TLS.MinVersion),
		slog.String("store", cfg.Store.Driver),
		slog.String("redis", redis),
		slog.String("trusted_proxies", prefixes(cfg.TrustedProxies)),
		slog.String("forward_auth", forward),
		slog.String("sign_up", cfg.Passkeys.SignUp),
		slog.String("tracing", a.tracing.Describe()),
		slog.Duration("audit_checkpoint_every", cfg.Audit.CheckpointEvery))
	for _, r := range cfg.Routes {
		attrs := []slog.Attr{slog.String("route", r.Name), slog.String("path", r.Path),
			slog.String("methods", strings.Join(r.Methods, ",")), slog.String("policy", string(r.Policy))}
		if r.Upstream != "" {
			attrs = append(attrs, slog.String("upstream", r.Upstream))
		} else {
			attrs = append(attrs, slog.String("upstream", "(forward auth: decided for the proxy in front)"))
		}
		if len(r.Scopes) > 0 {
			attrs = append(attrs, slog.String("scopes", strings.Join(r.Scopes, ",")))
		}
		if len(r.Roles) > 0 {
			attrs = append(attrs, slog.String("roles", strings.Join(r.Roles, ",")))
		}
		if rl := r.RateLimit; rl != nil {
			attrs = append(attrs, slog.String("rate_limit", rl.Rate+" per "+rl.Per))
		}
		l.LogAttrs(context.Background(), slog.LevelInfo, "route", attrs...)
	}
	warns := cfg.Lint()
	if !cfg.Demo {
		warns = append(warns, ProductionWarnings(cfg, a.getenv)...)
	}
	for _, w := range warns {
		l.Warn("security warning", slog.String("code", w.Code), slog.String("setting", w.Path), slog.String("warning", w.Msg))
	}
}

// serves says what the listener of that name serves.
func (a *App) serves(name string) string {
	switch name {
	case "https":
		return "the gateway, keyway's own endpoints and the portal (/.keyway/)"
	case "http":
		if a.cfg.TLS.Mode == "acme" {
			return "a redirect to HTTPS, and ACME challenges"
		}
		return "a redirect to HTTPS only"
	case "admin":
		return "/metrics and the admin API (/v1/, admin keys only)"
	case "demo":
		return "the demo's weather upstream"
	}
	return ""
}

func prefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
