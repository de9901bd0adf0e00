// Package testenv decides what a test does when something it needs from
// outside the Go toolchain (a browser, nginx, PostgreSQL, Redis) is missing:
// on a laptop it skips with a message saying what to install; with
// KEYWAY_TEST_STRICT=1, as in CI, it fails, so that nothing skips unnoticed.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing dependencies fail tests instead of skipping them.
func Strict() bool { return os.Getenv("KEYWAY_TEST_STRICT") == "1" }

// Missing skips t (or fails it under KEYWAY_TEST_STRICT=1) because what is
// missing; hint says how to get it.
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s is missing (KEYWAY_TEST_STRICT=1 forbids skipping): %s", what, hint)
	}
	t.Skipf("skipping: %s is missing; %s", what, hint)
}

// LookPath returns the path of a program, or skips/fails t if it is not installed.
func LookPath(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, hint)
	}
	return p
}
