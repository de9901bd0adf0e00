// Package otlptest is an OTLP trace receiver for tests: the collector's
// side of both protocols (HTTP with protobuf bodies, and gRPC), built on
// the OpenTelemetry protocol's own generated types, listening on loopback.
package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Receiver keeps every export request it was sent.
type Receiver struct {
	// Endpoint is the URL to configure as tracing.endpoint.
	Endpoint string

	mu   sync.Mutex
	reqs []*collector.ExportTraceServiceRequest
}

// Span is one received span, flattened for assertions.
type Span struct {
	Name         string
	Kind         tracepb.Span_SpanKind
	TraceID      string
	SpanID       string
	ParentSpanID string
	Attrs        map[string]string
	Error        bool
	Service      string
}

// HTTP starts a receiver of OTLP over HTTP (POST /v1/traces), stopped at
// the end of the test.
func HTTP(t testing.TB) *Receiver {
	t.Helper()
	rv := &Receiver{}
	ln := listen(t)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = http.MaxBytesReader(w, r.Body, 16<<20)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := &collector.ExportTraceServiceRequest{}
		if r.Header.Get("Content-Type") == "application/json" {
			err = protojson.Unmarshal(b, req)
		} else {
			err = proto.Unmarshal(b, req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rv.add(req)
		out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	rv.Endpoint = "http://" + ln.Addr().String() + "/v1/traces"
	return rv
}

// GRPC starts a receiver of OTLP over gRPC, stopped at the end of the test.
func GRPC(t testing.TB) *Receiver {
	t.Helper()
	rv := &Receiver{}
	ln := listen(t)
	srv := grpc.NewServer()
	collector.RegisterTraceServiceServer(srv, grpcService{rv: rv})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	rv.Endpoint = "http://" + ln.Addr().String()
	return rv
}

type grpcService struct {
	collector.UnimplementedTraceServiceServer
	rv *Receiver
}

func (g grpcService) Export(_ context.Context, req *collector.ExportTraceServiceRequest) (*collector.ExportTraceServiceResponse, error) {
	g.rv.add(req)
	return &collector.ExportTraceServiceResponse{}, nil
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (rv *Receiver) add(req *collector.ExportTraceServiceRequest) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.reqs = append(rv.reqs, req)
}

// Raw is every request received, as protobuf JSON: what a search for a
// secret must look through (names, attributes, events, resource).
func (rv *Receiver) Raw() string {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var b []byte
	for _, r := range rv.reqs {
		j, _ := protojson.Marshal(r)
		b = append(append(b, j...), '\n')
		// The binary form too: an attribute value is there verbatim.
		p, _ := proto.Marshal(r)
		b = append(append(b, p...), '\n')
	}
	return string(b)
}

// Spans is every span received so far.
func (rv *Receiver) Spans() []Span {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var out []Span
	for _, r := range rv.reqs {
		for _, rs := range r.GetResourceSpans() {
			service := attrs(rs.GetResource().GetAttributes())["service.name"]
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, Span{Name: s.GetName(), Kind: s.GetKind(), TraceID: hex.EncodeToString(s.GetTraceId()),
						SpanID: hex.EncodeToString(s.GetSpanId()), ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
						Attrs: attrs(s.GetAttributes()), Error: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
						Service: service})
				}
			}
		}
	}
	return out
}

// WaitFor polls until some span satisfies ok, or fails t after timeout.
func (rv *Receiver) WaitFor(t testing.TB, timeout time.Duration, what string, ok func(Span) bool) Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, s := range rv.Spans() {
			if ok(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no span %s after %s; received %d spans", what, timeout, len(rv.Spans()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		default:
			j, _ := protojson.Marshal(v)
			m[kv.GetKey()] = string(j)
		}
	}
	return m
}
