// Package tracing sends keyway's spans to an OpenTelemetry collector over
// OTLP (HTTP or gRPC), and holds the small instruments the other packages
// use: a propagator of W3C trace context, a Redis hook, a PostgreSQL query
// tracer and a span around each upstream call.
//
// Spans name routes, policies, decisions, statuses and the kind of each
// store or Redis call; they never carry a key, a cookie, a token, a query,
// an SQL argument, a Redis argument or anything about a person. Export
// never blocks a request: spans queue in a bounded batch and are dropped
// when the collector falls behind.
package tracing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/keywayhq/keyway/internal/config"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Name is the instrumentation scope of keyway's spans.
const Name = "github.com/keywayhq/keyway"

// Propagator reads and writes W3C trace context (traceparent, tracestate).
// keyway reads it only from trusted proxies (see gateway).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Provider is a running trace pipeline.
type Provider struct {
	tp       *sdktrace.TracerProvider
	endpoint string
	protocol string
	ratio    float64
}

// Settings are the resolved tracing settings: defaults filled in.
type Settings struct {
	Enabled     bool
	Protocol    string
	Endpoint    string
	CAFile      string
	SampleRatio float64
}

// Resolve fills the defaults of c.
func Resolve(c config.Tracing) Settings {
	s := Settings{Enabled: c.Exporter == "otlp", Protocol: c.Protocol, Endpoint: c.Endpoint, CAFile: c.CAFile, SampleRatio: 1}
	if s.Protocol == "" {
		s.Protocol = "http/protobuf"
	}
	if s.Endpoint == "" {
		s.Endpoint = "http://127.0.0.1:4318"
		if s.Protocol == "grpc" {
			s.Endpoint = "http://127.0.0.1:4317"
		}
	}
	if u, err := url.Parse(s.Endpoint); err == nil && s.Protocol != "grpc" && (u.Path == "" || u.Path == "/") {
		// The exporter would post to "/" (otel-go sets no path of its own
		// for a URL without one), where a collector answers 404.
		u.Path = "/v1/traces"
		s.Endpoint = u.String()
	}
	if c.SampleRatio != nil {
		s.SampleRatio = *c.SampleRatio
	}
	return s
}

// New starts the pipeline c describes, or returns nil when tracing is off.
// The exporter connects lazily: a collector that is down costs spans,
// never the start.
func New(ctx context.Context, c config.Tracing, version string) (*Provider, error) {
	s := Resolve(c)
	if !s.Enabled {
		return nil, nil
	}
	var tc *tls.Config
	if s.CAFile != "" {
		pem, err := os.ReadFile(filepath.Clean(s.CAFile))
		if err != nil {
			return nil, fmt.Errorf("tracing.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("tracing.ca_file: no PEM certificate in it")
		}
		tc = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	var exp sdktrace.SpanExporter
	var err error
	switch s.Protocol {
	case "grpc":
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(s.Endpoint), otlptracegrpc.WithTimeout(5 * time.Second),
			otlptracegrpc.WithDialOption(grpc.WithNoProxy())}
		if isHTTPS(s.Endpoint) {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tc)))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(s.Endpoint), otlptracehttp.WithTimeout(5 * time.Second),
			// Never through a proxy named by the environment: spans go
			// where the config says.
			otlptracehttp.WithProxy(func(*http.Request) (*url.URL, error) { return nil, nil })}
		if isHTTPS(s.Endpoint) {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tc))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// service.name first: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
	// merged after, win.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "keyway"), attribute.String("service.version", version)),
		resource.WithFromEnv())
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// Every value keyway sets is short; the limit holds whatever a library
	// might add, so that a span never grows with what a client sent.
	limits := sdktrace.NewSpanLimits()
	limits.AttributeValueLengthLimit = 256
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(2*time.Second), sdktrace.WithMaxQueueSize(4096)),
		sdktrace.WithRawSpanLimits(limits),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.SampleRatio))),
	)
	return &Provider{tp: tp, endpoint: s.Endpoint, protocol: s.Protocol, ratio: s.SampleRatio}, nil
}

func isHTTPS(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "https"
}

// TracerProvider is the provider the instruments take; nil when p is nil
// (tracing off), which they read as "no spans".
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return nil
	}
	return p.tp
}

// Tracer is keyway's tracer, or nil when p is nil.
func (p *Provider) Tracer() trace.Tracer {
	if p == nil {
		return nil
	}
	return p.tp.Tracer(Name)
}

// Describe says where spans go, for the start-up summary.
func (p *Provider) Describe() string {
	if p == nil {
		return "off"
	}
	return fmt.Sprintf("OTLP %s to %s, %g of new traces sampled", p.protocol, p.endpoint, p.ratio)
}

// Shutdown sends the spans still queued and stops the pipeline, giving up
// when ctx ends.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// Fail marks span as failed with a fixed description: an error's text may
// hold what a client sent, so it never goes into a span.
func Fail(span trace.Span, what string) {
	span.SetStatus(codes.Error, what)
}
