package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitStarters: each starter config is written, commented, and
// accepted by keyway check --strict as it is; a file is never replaced.
func TestInitStarters(t *testing.T) {
	for _, name := range starterCases {
		t.Run(name, func(t *testing.T) {
			code, printed, errOut := runCLI(t, "init", "--for", name)
			if code != exitOK || !strings.HasPrefix(printed, "# ") || !strings.Contains(printed, "keyway init --for "+name) {
				t.Fatalf("init --for %s: %d %q %s", name, code, printed[:min(len(printed), 80)], errOut)
			}
			file := filepath.Join(t.TempDir(), "keyway.yaml")
			if code, _, errOut := runCLI(t, "init", "--for", name, "--out", file); code != exitOK {
				t.Fatalf("init --out: %d %s", code, errOut)
			}
			b, err := os.ReadFile(file)
			if err != nil || string(b) != printed {
				t.Fatalf("the file differs from the printed starter: %v", err)
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", fi.Mode().Perm())
			}
			code, out, errOut := runCLI(t, "check", "--strict", "--config", file)
			if code != exitOK || !strings.Contains(out, "ok (0 warnings)") {
				t.Fatalf("check --strict refuses the %s starter: %d\n%s%s", name, code, out, errOut)
			}
			// Never over a config that exists.
			if code, _, errOut := runCLI(t, "init", "--for", "gateway", "--out", file); code == exitOK || !strings.Contains(errOut, "exists") {
				t.Fatalf("init overwrote %s: %d %s", file, code, errOut)
			}
			if b2, _ := os.ReadFile(file); string(b2) != string(b) {
				t.Fatal("the existing file changed")
			}
		})
	}
	for _, args := range [][]string{{"init", "--for", "k8s"}, {"init", "--out", "x.yaml"}, {"init", "--for", "gateway", "--data-dir", "d"}} {
		if code, _, errOut := runCLI(t, args...); code != exitUsage || errOut == "" {
			t.Errorf("%v: %d %q", args, code, errOut)
		}
	}
}
