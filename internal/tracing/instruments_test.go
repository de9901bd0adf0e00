package tracing_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/keywayhq/keyway/internal/testenv"
	"github.com/keywayhq/keyway/internal/tracing"
	goredis "github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func recorder() (*tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	exp := tracetest.NewInMemoryExporter()
	return exp, sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
}

// spanText is everything a span says: name, attributes, status, events.
func spanText(s tracetest.SpanStub) string {
	var b strings.Builder
	b.WriteString(s.Name + " " + s.Status.Description)
	for _, a := range s.Attributes {
		b.WriteString(" " + string(a.Key) + "=" + a.Value.String())
	}
	for _, e := range s.Events {
		b.WriteString(" " + e.Name)
		for _, a := range e.Attributes {
			b.WriteString(" " + string(a.Key) + "=" + a.Value.String())
		}
	}
	return b.String()
}

// TestQueryTracer runs real statements on PostgreSQL: each is a child
// span of the caller's, named by its first word, and neither the
// statement's arguments nor an error's text (which quotes them) appear.
func TestQueryTracer(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	exp, tp := recorder()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = tracing.QueryTracer(tp)
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	ctx, parent := tp.Tracer("test").Start(ctx, "request")
	const secret = "kw_live_secretargument"
	var s string
	if err := conn.QueryRow(ctx, "SELECT $1::text", secret).Scan(&s); err != nil || s != secret {
		t.Fatalf("select: %v", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO no_such_table VALUES ($1)", secret); err == nil {
		t.Fatal("an insert into a missing table succeeded")
	}
	parent.End()
	spans := exp.GetSpans()
	var names []string
	for _, sp := range spans {
		names = append(names, sp.Name)
		if strings.Contains(spanText(sp), "secretargument") {
			t.Errorf("span %q holds the argument: %s", sp.Name, spanText(sp))
		}
		if sp.Name != "request" && sp.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q is not the caller's child", sp.Name)
		}
	}
	if !strings.Contains(strings.Join(names, ","), "postgresql SELECT,postgresql INSERT") {
		t.Fatalf("spans %v", names)
	}
	for _, sp := range spans {
		if sp.Name == "postgresql INSERT" && sp.Status.Code.String() != "Error" {
			t.Errorf("the failed insert's span: %v", sp.Status)
		}
	}
}

// TestRedisHook runs real commands: spans named by the command, never
// its keys or values.
func TestRedisHook(t *testing.T) {
	addr, prefix := testenv.RedisAddr(t)
	exp, tp := recorder()
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	defer func() { _ = rdb.Close() }()
	rdb.AddHook(tracing.RedisHook(tp))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	key := prefix + "kw_live_secretkey"
	if err := rdb.Set(ctx, key, "secretvalue", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, prefix+"missing").Err(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("get of a missing key: %v", err)
	}
	pipe := rdb.Pipeline()
	pipe.Del(ctx, key)
	pipe.Incr(ctx, key)
	pipe.Del(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var names []string
	for _, sp := range exp.GetSpans() {
		names = append(names, sp.Name)
		if txt := spanText(sp); strings.Contains(txt, "secret") || strings.Contains(txt, prefix) {
			t.Errorf("span %q holds a key or value: %s", sp.Name, txt)
		}
		if sp.Name == "redis get" && sp.Status.Code.String() == "Error" {
			t.Error("a missing key is not a failure")
		}
	}
	got := strings.Join(names, ",")
	for _, want := range []string{"redis set", "redis get", "redis pipeline"} {
		if !strings.Contains(got, want) {
			t.Errorf("no span %q in %s", want, got)
		}
	}
}

// TestTransport: the upstream call is a client span whose context the
// upstream receives, even when the trace is not sampled; nothing is
// recorded then.
func TestTransport(t *testing.T) {
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("Traceparent"))
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer up.Close()
	for _, sampled := range []bool{true, false} {
		exp, tp := recorder()
		if !sampled {
			tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.NeverSample()))
		}
		rt := tracing.Transport(http.DefaultTransport, tp.Tracer("test"), "api")
		req, _ := http.NewRequestWithContext(context.Background(), "GET", up.URL+"/x?token=secret", nil)
		res, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		tpHeader := seen[len(seen)-1]
		spans := exp.GetSpans()
		if !sampled {
			if len(spans) != 0 || !strings.HasSuffix(tpHeader, "-00") {
				t.Errorf("not sampled: %d spans, traceparent %q", len(spans), tpHeader)
			}
			continue
		}
		if len(spans) != 1 || spans[0].SpanKind != trace.SpanKindClient || !strings.Contains(tpHeader, spans[0].SpanContext.SpanID().String()) {
			t.Fatalf("sampled: spans %v, traceparent %q", spans, tpHeader)
		}
		if spans[0].Status.Code.String() != "Error" || strings.Contains(spanText(spans[0]), "secret") {
			t.Errorf("span %s", spanText(spans[0]))
		}
	}
	if tracing.Transport(http.DefaultTransport, nil, "api") != http.DefaultTransport {
		t.Error("without a tracer the transport is not wrapped")
	}
}
