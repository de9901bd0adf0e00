package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestTuneRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	dir := t.TempDir()
	limit := filepath.Join(dir, "memory.max")
	if err := os.WriteFile(limit, []byte("1073741824\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	s := tuneRuntime(func(k string) string { return env[k] }, limit)
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want keyway's %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != 1073741824/10*9 {
		t.Errorf("memory limit %d, want 90%% of the cgroup's", got)
	}
	if !strings.HasPrefix(s.GOGC, "200") || !strings.HasPrefix(s.MemLimit, "921 MiB") {
		t.Errorf("settings %+v", s)
	}

	// The environment wins; "max" and a missing file are no limit.
	debug.SetMemoryLimit(1 << 62)
	env["GOGC"] = "50"
	if err := os.WriteFile(limit, []byte("max\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = tuneRuntime(func(k string) string { return env[k] }, limit)
	if got := debug.SetGCPercent(100); got != 100 || s.GOGC != "50" || s.MemLimit != "none" {
		t.Errorf("with GOGC set: percent %d, settings %+v", got, s)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<62 {
		t.Errorf("with no cgroup limit the memory limit changed: %d", got)
	}
	if _, ok := cgroupLimit(filepath.Join(dir, "none")); ok {
		t.Error("a missing file is a limit")
	}
}
