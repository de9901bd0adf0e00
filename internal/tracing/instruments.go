package tracing

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Transport wraps an upstream's transport: each call is a client span,
// and the upstream receives that span's traceparent (even when the trace
// is not sampled, so that the upstream's own spans join keyway's trace or
// stay out of it as keyway decided). The caller has already removed every
// traceparent and tracestate a client sent.
func Transport(base http.RoundTripper, tracer trace.Tracer, upstream string) http.RoundTripper {
	if tracer == nil {
		return base
	}
	return &transport{base: base, tracer: tracer, attrs: []attribute.KeyValue{attribute.String("keyway.upstream", upstream)}}
}

type transport struct {
	base   http.RoundTripper
	tracer trace.Tracer
	attrs  []attribute.KeyValue
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(req.Context(), "upstream", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(t.attrs...),
		trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Hostname())))
	defer span.End()
	Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	res, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		Fail(span, "the upstream could not be reached")
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", res.StatusCode))
	if res.StatusCode >= 500 {
		Fail(span, "the upstream answered with a server error")
	}
	return res, nil
}

// RedisHook makes a span of each Redis command or pipeline, named by the
// command alone: its arguments hold keys derived from credentials.
func RedisHook(tp trace.TracerProvider) goredis.Hook {
	return redisHook{tracer: tp.Tracer(Name)}
}

type redisHook struct{ tracer trace.Tracer }

var redisSystem = attribute.String("db.system.name", "redis")

func (h redisHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, span := h.tracer.Start(ctx, "redis dial", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(redisSystem))
		defer span.End()
		c, err := next(ctx, network, addr)
		if err != nil {
			Fail(span, "Redis could not be reached")
		}
		return c, err
	}
}

func (h redisHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		name := cmd.Name()
		ctx, span := h.tracer.Start(ctx, "redis "+name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(redisSystem, attribute.String("db.operation.name", name)))
		defer span.End()
		err := next(ctx, cmd)
		if err != nil && !errors.Is(err, goredis.Nil) {
			Fail(span, "the Redis command failed")
		}
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		ctx, span := h.tracer.Start(ctx, "redis pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(redisSystem, attribute.Int("db.operation.batch.size", len(cmds))))
		defer span.End()
		err := next(ctx, cmds)
		if err != nil && !errors.Is(err, goredis.Nil) {
			Fail(span, "the Redis pipeline failed")
		}
		return err
	}
}

// QueryTracer makes a span of each PostgreSQL query, named by its first
// word (SELECT, INSERT, …): the statement's arguments are never recorded.
func QueryTracer(tp trace.TracerProvider) pgx.QueryTracer {
	return queryTracer{tracer: tp.Tracer(Name)}
}

type queryTracer struct{ tracer trace.Tracer }

type querySpanKey struct{}

var pgSystem = attribute.String("db.system.name", "postgresql")

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	op := operation(data.SQL)
	ctx, span := q.tracer.Start(ctx, "postgresql "+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(pgSystem, attribute.String("db.operation.name", op)))
	return context.WithValue(ctx, querySpanKey{}, span)
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span, ok := ctx.Value(querySpanKey{}).(trace.Span)
	if !ok {
		return
	}
	if data.Err != nil && !errors.Is(data.Err, pgx.ErrNoRows) {
		Fail(span, "the query failed")
	}
	span.End()
}

// operation is the first word of a statement, upper-cased, or "QUERY"
// when it is not a plain word (a statement keyway did not write).
func operation(sql string) string {
	sql = strings.TrimSpace(sql)
	end := strings.IndexFunc(sql, func(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') })
	if end < 0 {
		end = len(sql)
	}
	if end == 0 || end > 12 {
		return "QUERY"
	}
	return strings.ToUpper(sql[:end])
}
