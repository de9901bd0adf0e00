package main

import (
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/app/apptest"
)

// TestHealthcheck asks a running keyway over HTTPS, trusting its local CA,
// whether it is alive and ready; a stopped one fails the check.
func TestHealthcheck(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	url := "https://" + in.App.Addr("https")
	for _, args := range [][]string{{}, {"--ready"}} {
		code, out, errOut := runCLI(t, append([]string{"healthcheck", "--data-dir", cfg.DataDir, "--url", url}, args...)...)
		if code != 0 || !strings.Contains(out, "200 OK") {
			t.Fatalf("healthcheck %v: %d %q %q", args, code, out, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "healthcheck", "--data-dir", cfg.DataDir, "--url", "http://"+in.App.Addr("https")); code != 1 || !strings.Contains(errOut, "https://") {
		t.Fatalf("a plain-HTTP URL: %d %q", code, errOut)
	}
	in.Stop(t)
	if code, _, errOut := runCLI(t, "healthcheck", "--data-dir", cfg.DataDir, "--url", url, "--timeout", "2s"); code != 1 || errOut == "" {
		t.Fatalf("a stopped keyway: %d %q", code, errOut)
	}
}
