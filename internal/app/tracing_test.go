package app_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/tracing/otlptest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestTracesOfAFullFlow sends the full flow (sign-up, a second passkey, a
// key made and used, the session's own route, a recovery sign-in, an
// admin key) to an OTLP/HTTP receiver: each request is a span with its
// route, policy and decision, whose children are the checks and the
// upstream call; and no span, attribute or resource holds a secret or a
// personal field, nor does any log line.
func TestTracesOfAFullFlow(t *testing.T) {
	rv := otlptest.HTTP(t)
	cfg := apptest.Demo(t)
	cfg.Tracing = config.Tracing{Exporter: "otlp", Endpoint: rv.Endpoint}
	in, secrets := secretFlow(t, cfg)
	in.Stop(t) // sends what is queued
	spans := rv.Spans()
	if len(spans) == 0 {
		t.Fatal("no span received")
	}
	byID := map[string]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
		if s.Service != "keyway" {
			t.Fatalf("span %q: service.name = %q", s.Name, s.Service)
		}
	}
	children := func(parent otlptest.Span, name string) []otlptest.Span {
		var out []otlptest.Span
		for _, s := range spans {
			if s.ParentSpanID == parent.SpanID && s.TraceID == parent.TraceID && s.Name == name {
				out = append(out, s)
			}
		}
		return out
	}
	find := func(name string, attrs map[string]string) otlptest.Span {
		t.Helper()
	next:
		for _, s := range spans {
			if s.Name != name || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
				continue
			}
			for k, v := range attrs {
				if s.Attrs[k] != v {
					continue next
				}
			}
			return s
		}
		t.Fatalf("no server span %q with %v among %d", name, attrs, len(spans))
		return otlptest.Span{}
	}

	history := find("GET /v1/history", map[string]string{"keyway.route": "history", "keyway.policy": "api_key",
		"keyway.decision": "allowed", "http.route": "/v1/history", "http.request.method": "GET"})
	if history.Attrs["http.response.status_code"] != `{"intValue":"200"}` {
		t.Errorf("history span status = %s", history.Attrs["http.response.status_code"])
	}
	if k := children(history, "key check"); len(k) != 1 || k[0].Attrs["keyway.check"] != "valid" {
		t.Errorf("the key check under the request: %+v", k)
	}
	up := children(history, "upstream")
	if len(up) != 1 || up[0].Kind != tracepb.Span_SPAN_KIND_CLIENT || up[0].Attrs["keyway.upstream"] != "weather" {
		t.Errorf("the upstream call under the request: %+v", up)
	}
	// The access log names the trace of each sampled request.
	if !strings.Contains(in.Logs(), history.TraceID) {
		t.Errorf("no access-log line names trace %s", history.TraceID)
	}

	me := find("GET /v1/me", map[string]string{"keyway.route": "me", "keyway.policy": "session", "keyway.decision": "allowed"})
	if s := children(me, "session check"); len(s) != 1 || s[0].Attrs["keyway.check"] != "valid" {
		t.Errorf("the session check under the request: %+v", s)
	}
	// The session check reads the person in the same statement: there is
	// no second look-up (nor its span).
	if u := children(me, "user look-up"); len(u) != 0 {
		t.Errorf("a user look-up under the request: %+v", u)
	}
	// keyway's own endpoints are named by their space, never their path
	// (a setup link's path is a secret).
	own := find("POST /.keyway", nil)
	if own.Attrs["http.route"] != "" {
		t.Errorf("an own endpoint's span has a route: %v", own.Attrs)
	}
	for _, s := range spans {
		if strings.Contains(s.Name, "/.keyway/") {
			t.Errorf("span named by a path of keyway's own: %q", s.Name)
		}
	}
	searchSecrets(t, secrets, map[string][]byte{"the spans": []byte(rv.Raw())}, in.Logs())
}

// TestTraceContextOnlyFromTrustedProxies checks, over OTLP/gRPC, that a
// traceparent is believed from a trusted proxy only, that a client's
// trace context and baggage never reach the upstream in any spelling,
// and that the upstream always receives keyway's own traceparent, even
// for a trace that is not sampled.
func TestTraceContextOnlyFromTrustedProxies(t *testing.T) {
	const (
		tid       = "4bf92f3577b34da6a3ce929d0e0e4736"
		sid       = "00f067aa0ba902b7"
		sampled   = "00-" + tid + "-" + sid + "-01"
		unsampled = "00-" + tid + "-" + sid + "-00"
	)
	echo := apptest.Echo(t, time.Second)
	start := func(t *testing.T, trusted, tracing bool, rv *otlptest.Receiver) *apptest.Instance {
		cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
upstreams: {echo: {url: %s}}
routes:
  - {name: pub, path: /pub, upstream: echo, policy: public, rate_limit: {rate: 100/s}}
`, echo))
		if trusted {
			cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
		}
		if tracing {
			cfg.Tracing = config.Tracing{Exporter: "otlp", Protocol: "grpc", Endpoint: rv.Endpoint}
		}
		return apptest.Start(t, cfg)
	}
	client := []string{"Traceparent", sampled, "Tracestate", "evil=1", "Baggage", "user=mallory"}
	// Every other tracing format an upstream's tracer might read.
	otherFormats := []string{"B3", tid + "-" + sid + "-1", "X-B3-Traceid", tid, "X-B3-Sampled", "1",
		"Uber-Trace-Id", tid + ":" + sid + ":0:1", "Uberctx-User", "mallory", "Ot-Tracer-Traceid", tid,
		"X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", "X-Cloud-Trace-Context", tid + "/1;o=1",
		"Sw8", "1-abc", "Grpc-Trace-Bin", "AAAA"}
	leaked := func(t *testing.T, h http.Header, keep ...string) {
		t.Helper()
		for k := range h {
			l := strings.ToLower(k)
			if slices.Contains(keep, l) {
				continue
			}
			for _, f := range []string{"trace", "baggage", "b3", "uber", "ot-", "sw8"} {
				if strings.Contains(l, f) {
					t.Errorf("the client's %s reached the upstream: %q", k, h[k])
				}
			}
		}
	}

	t.Run("trusted proxy, tracing on", func(t *testing.T) {
		rv := otlptest.GRPC(t)
		in := start(t, true, true, rv)
		e := apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/pub/a"), client...))
		tp := e.Header.Get("Traceparent")
		if !strings.HasPrefix(tp, "00-"+tid+"-") || strings.Contains(tp, sid) || !strings.HasSuffix(tp, "-01") {
			t.Fatalf("upstream traceparent %q: want the proxy's trace, keyway's span, sampled", tp)
		}
		if e.Header.Get("Tracestate") != "evil=1" || e.Header.Get("Baggage") != "user=mallory" {
			t.Errorf("a trusted proxy's tracestate and baggage travel on: %v", e.Header)
		}
		// Not sampled by the proxy: no span, but the upstream still gets
		// the context, marked not sampled.
		e = apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/pub/b"), "Traceparent", unsampled))
		if tp := e.Header.Get("Traceparent"); !strings.HasPrefix(tp, "00-"+tid+"-") || !strings.HasSuffix(tp, "-00") {
			t.Errorf("upstream traceparent of an unsampled trace: %q", tp)
		}
		in.Stop(t)
		server := rv.WaitFor(t, 5*time.Second, "for the request", func(s otlptest.Span) bool { return s.Kind == tracepb.Span_SPAN_KIND_SERVER })
		if server.TraceID != tid || server.ParentSpanID != sid || server.Name != "GET /pub" {
			t.Errorf("server span %+v: want a child of the proxy's span", server)
		}
		upstream := strings.Split(tp, "-")[2]
		if s := rv.WaitFor(t, time.Second, "upstream", func(s otlptest.Span) bool { return s.Name == "upstream" }); s.SpanID != upstream || s.ParentSpanID != server.SpanID {
			t.Errorf("the upstream got span %s; the upstream span is %+v", upstream, s)
		}
		if n := len(rv.Spans()); n != 2 {
			t.Errorf("%d spans exported; the unsampled request must add none", n)
		}
	})

	t.Run("client, tracing on", func(t *testing.T) {
		rv := otlptest.GRPC(t)
		in := start(t, false, true, rv)
		h := append(append(append([]string{}, client...), otherFormats...), "Trace_parent", sampled, "TRACESTATE", "evil=2")
		e := apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/pub/a"), h...))
		tp := e.Header.Get("Traceparent")
		if tp == "" || strings.Contains(tp, tid) || strings.Contains(tp, sid) {
			t.Errorf("upstream traceparent %q: want keyway's own trace", tp)
		}
		leaked(t, e.Header, "traceparent")
		in.Stop(t)
		server := rv.WaitFor(t, 5*time.Second, "for the request", func(s otlptest.Span) bool { return s.Kind == tracepb.Span_SPAN_KIND_SERVER })
		if server.TraceID == tid || server.ParentSpanID != "" || !strings.Contains(tp, server.TraceID) {
			t.Errorf("server span %+v: want a new trace, the one sent upstream (%s)", server, tp)
		}
	})

	t.Run("forward-auth proxy, tracing on", func(t *testing.T) {
		// A forward-auth proxy passes the client's headers on in its
		// question: its traceparent is not believed, even when it is a
		// trusted proxy too (it relays the portal), whatever the path's
		// spelling.
		rv := otlptest.GRPC(t)
		cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: {{data}}
trusted_proxies: [127.0.0.1/32, "::1/128"]
forward_auth: {enabled: true}
upstreams: {echo: {url: %s}}
routes:
  - {name: pub, path: /pub, upstream: echo, policy: public, rate_limit: {rate: 100/s}}
`, echo))
		cfg.Tracing = config.Tracing{Exporter: "otlp", Protocol: "grpc", Endpoint: rv.Endpoint}
		in := apptest.Start(t, cfg)
		for _, path := range []string{"/.keyway/verify/nginx", "/.keyway/./verify/nginx", "/.keyway//verify/nginx"} {
			res := get(t, in.Client(), in.URL(path), append([]string{"X-Original-Uri", "/pub/a", "X-Original-Method", "GET"}, client...)...)
			if b := body(t, res); res.StatusCode != 200 && path == "/.keyway/verify/nginx" {
				t.Fatalf("verify: %d %s", res.StatusCode, b)
			}
		}
		in.Stop(t)
		spans := rv.Spans()
		if len(spans) < 1 {
			t.Fatal("no span")
		}
		for _, s := range spans {
			if s.TraceID == tid || s.ParentSpanID == sid {
				t.Errorf("span %+v joined the client's trace", s)
			}
		}
		if rv.WaitFor(t, time.Second, "verify", func(s otlptest.Span) bool { return s.Name == "GET /.keyway/verify" }).Attrs["keyway.route"] != "pub" {
			t.Error("the verify span does not name the route it decided")
		}
	})

	t.Run("client, tracing off", func(t *testing.T) {
		in := start(t, false, false, nil)
		e := apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/pub/a"), append(append([]string{}, client...), otherFormats...)...))
		leaked(t, e.Header)
	})

	t.Run("odd method", func(t *testing.T) {
		// Any token is a method: a span and a log line stay small.
		rv := otlptest.GRPC(t)
		in := start(t, false, true, rv)
		req, _ := http.NewRequest(strings.Repeat("X", 5000), in.URL("/pub/a"), nil)
		res, err := in.Client().Do(req)
		apptest.Must(t, err, "odd method")
		_ = body(t, res)
		in.Stop(t)
		if strings.Contains(in.Logs(), strings.Repeat("X", 100)) {
			t.Error("the access log holds the whole method")
		}
		s := rv.WaitFor(t, 5*time.Second, "for the request", func(s otlptest.Span) bool { return s.Kind == tracepb.Span_SPAN_KIND_SERVER })
		if s.Name != "_OTHER" || s.Attrs["http.request.method"] != "_OTHER" { // 405: no route decided
			t.Errorf("span %q, method %q", s.Name, s.Attrs["http.request.method"])
		}
	})

	t.Run("trusted proxy, tracing off", func(t *testing.T) {
		in := start(t, true, false, nil)
		e := apptest.DecodeEcho(t, get(t, in.Client(), in.URL("/pub/a"), client...))
		if e.Header.Get("Traceparent") != sampled || e.Header.Get("Tracestate") != "evil=1" {
			t.Errorf("keyway off the trace passes a trusted proxy's context as it is: %v", e.Header)
		}
	})
}
