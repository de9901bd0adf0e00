package app

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/logbuf"
)

// Behind a buffered writer, info lines wait for the batch but a warning is
// written at once, with everything logged before it.
func TestBufferedLoggerFlushesWarningsAtOnce(t *testing.T) {
	// The flusher ticks hourly: only this goroutine touches out.
	var out bytes.Buffer
	w := logbuf.New(&out, 1<<16, time.Hour)
	defer func() { _ = w.Close() }()
	l := NewLogger(w, "json", "info").With("component", "test")
	l.Info("request", "path", "/a")
	if out.String() != "" {
		t.Fatalf("an info line was written at once: %q", out.String())
	}
	l.Warn("store slow")
	got := out.String()
	if !strings.Contains(got, `"path":"/a"`) || !strings.Contains(got, `"msg":"store slow"`) ||
		strings.Index(got, `"/a"`) > strings.Index(got, "store slow") {
		t.Fatalf("after a warning: %q", got)
	}
}

// A credential-named attribute is redacted whatever the caller passes.
func TestLoggerRedactsCredentialAttributes(t *testing.T) {
	var out bytes.Buffer
	NewLogger(&out, "text", "info").Info("x", "Authorization", "Bearer kw_live_secret", "api_key", "kw_test_x")
	if s := out.String(); strings.Contains(s, "secret") || strings.Contains(s, "kw_test_x") || strings.Count(s, "[redacted]") != 2 {
		t.Fatalf("not redacted: %q", s)
	}
}

// Durations read as they are written in the config, in both formats.
func TestLoggerWritesDurationsAsPeopleDo(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var out bytes.Buffer
		NewLogger(&out, format, "info").Info("shutting down", "drain_timeout", 30*time.Second)
		if s := out.String(); !strings.Contains(s, "30s") || strings.Contains(s, "30000000000") {
			t.Fatalf("%s: %q", format, s)
		}
	}
}
