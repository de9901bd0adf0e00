package tracing

import (
	"testing"

	"github.com/keywayhq/keyway/internal/config"
)

func TestResolve(t *testing.T) {
	ratio := 0.25
	for _, tt := range []struct {
		in   config.Tracing
		want Settings
	}{
		{config.Tracing{}, Settings{Protocol: "http/protobuf", Endpoint: "http://127.0.0.1:4318/v1/traces", SampleRatio: 1}},
		{config.Tracing{Exporter: "otlp", Protocol: "grpc"}, Settings{Enabled: true, Protocol: "grpc", Endpoint: "http://127.0.0.1:4317", SampleRatio: 1}},
		// otel-go would post a URL without a path to "/".
		{config.Tracing{Exporter: "otlp", Endpoint: "https://otel.internal:4318", SampleRatio: &ratio},
			Settings{Enabled: true, Protocol: "http/protobuf", Endpoint: "https://otel.internal:4318/v1/traces", SampleRatio: 0.25}},
		{config.Tracing{Exporter: "otlp", Endpoint: "https://otel.internal/"},
			Settings{Enabled: true, Protocol: "http/protobuf", Endpoint: "https://otel.internal/v1/traces", SampleRatio: 1}},
		{config.Tracing{Exporter: "otlp", Endpoint: "https://otel.internal/custom/path"},
			Settings{Enabled: true, Protocol: "http/protobuf", Endpoint: "https://otel.internal/custom/path", SampleRatio: 1}},
	} {
		if got := Resolve(tt.in); got != tt.want {
			t.Errorf("Resolve(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	if !isHTTPS("HTTPS://otel.internal") || isHTTPS("http://127.0.0.1") {
		t.Error("isHTTPS reads the scheme without case")
	}
}
