package secret_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keywayhq/keyway/internal/secret"
)

func noEnv(string) string { return "" }

func TestFileMadeOnceAndGuarded(t *testing.T) {
	src := secret.Source{Name: "test key", Env: "KEYWAY_TEST_KEY", File: filepath.Join(t.TempDir(), "test.key")}
	if _, err := src.Load(noEnv, false); !errors.Is(err, secret.ErrMissing) || !strings.Contains(err.Error(), src.File) {
		t.Fatalf("missing file without create: %v", err)
	}
	if _, err := os.Stat(src.File); err == nil {
		t.Fatal("Load without create made a file")
	}
	// Two processes starting at once agree on one secret.
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			p, err := src.Load(noEnv, true)
			if err != nil {
				t.Error(err)
			}
			got[i] = p
		})
	}
	wg.Wait()
	for _, p := range got[1:] {
		if !bytes.Equal(p, got[0]) || len(p) != secret.MinSize {
			t.Fatalf("concurrent first loads disagree: %x vs %x", p, got[0])
		}
	}
	st, err := os.Stat(src.File)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", st, err)
	}
	// The file is linked into place whole: nothing else is left beside it.
	if ents, _ := os.ReadDir(filepath.Dir(src.File)); len(ents) != 1 {
		t.Fatalf("the directory holds %d entries, want the key file alone", len(ents))
	}
	if err := os.Chmod(src.File, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Load(noEnv, true); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a group-readable file was accepted: %v", err)
	}
	if err := os.WriteFile(src.File, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Load(noEnv, true); err == nil {
		t.Fatal("a short secret was accepted")
	}
}

func TestEnvAndCommandWin(t *testing.T) {
	want := bytes.Repeat([]byte("k"), 40)
	enc := base64.StdEncoding.EncodeToString(want)
	src := secret.Source{Name: "test key", Env: "KEYWAY_TEST_KEY", File: filepath.Join(t.TempDir(), "test.key"),
		Command: []string{"sh", "-c", "echo " + enc}}
	env := func(k string) string {
		if k == "KEYWAY_TEST_KEY" {
			return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("e"), 32))
		}
		return ""
	}
	if p, err := src.Load(env, true); err != nil || string(p) != strings.Repeat("e", 32) || src.Origin(env) != "env" {
		t.Fatalf("env: %q %v", p, err)
	}
	if p, err := src.Load(noEnv, true); err != nil || !bytes.Equal(p, want) || src.Origin(noEnv) != "command" {
		t.Fatalf("command: %q %v", p, err)
	}
	if _, err := os.Stat(src.File); err == nil {
		t.Fatal("a file was written although a command gives the secret")
	}
	src.Command = []string{"sh", "-c", "echo s3cr3t-in-stderr >&2; echo s3cr3t-out; exit 3"}
	if _, err := src.Load(noEnv, true); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("a failing command: %v", err)
	}
	src.Command = []string{"sh", "-c", "echo not-base64-s3cr3t"}
	if _, err := src.Load(noEnv, true); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("a command printing garbage: %v", err)
	}
	if _, err := src.Load(func(string) string { return "!!" }, true); err == nil || strings.Contains(err.Error(), "!!") {
		t.Fatalf("a bad variable: %v", err)
	}
}

func TestRingAndPrepend(t *testing.T) {
	src := secret.Source{Name: "KEK", Env: "KEYWAY_TEST_KEK", File: filepath.Join(t.TempDir(), "kek.key")}
	first, err := src.LoadRing(noEnv, true)
	if err != nil || len(first) != 1 {
		t.Fatalf("first ring: %d %v", len(first), err)
	}
	ring, err := src.Prepend(noEnv)
	if err != nil || len(ring) != 2 || !bytes.Equal(ring[1], first[0]) || bytes.Equal(ring[0], first[0]) {
		t.Fatalf("after prepend: %d %v", len(ring), err)
	}
	again, err := src.LoadRing(noEnv, false)
	if err != nil || len(again) != 2 || !bytes.Equal(again[0], ring[0]) || !bytes.Equal(again[1], ring[1]) {
		t.Fatalf("the file after prepend: %v", err)
	}
	if st, err := os.Stat(src.File); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after prepend: %v %v", st, err)
	}
	if _, err := src.Load(noEnv, false); err == nil || !strings.Contains(err.Error(), "want one key") {
		t.Fatalf("Load of a ring of two: %v", err)
	}
	env := func(k string) string {
		if k == src.Env {
			return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("a"), 32)) + "\n " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("b"), 32))
		}
		return ""
	}
	if r, err := src.LoadRing(env, false); err != nil || len(r) != 2 || r[1][0] != 'b' {
		t.Fatalf("a ring in the environment: %v", err)
	}
	if _, err := src.Prepend(env); err == nil || !strings.Contains(err.Error(), "env") {
		t.Fatalf("prepend to an environment variable: %v", err)
	}
}

// TestConcurrentFirstLoadsNeverSeeAHalfWrittenFile races many first loads
// of fresh files: a reader must never find the file made but not written.
func TestConcurrentFirstLoadsNeverSeeAHalfWrittenFile(t *testing.T) {
	for round := range 40 {
		src := secret.Source{Name: "test key", Env: "KEYWAY_TEST_KEY", File: filepath.Join(t.TempDir(), "test.key")}
		var wg sync.WaitGroup
		got := make([][]byte, 32)
		for i := range got {
			wg.Go(func() {
				p, err := src.Load(noEnv, true)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
				}
				got[i] = p
			})
		}
		wg.Wait()
		for _, p := range got[1:] {
			if !bytes.Equal(p, got[0]) {
				t.Fatalf("round %d: concurrent first loads disagree", round)
			}
		}
	}
}
