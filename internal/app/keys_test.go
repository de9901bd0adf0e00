package app_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/config"
)

func TestLoadPepper(t *testing.T) {
	noEnv := func(string) string { return "" }
	good := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("p", 32)))
	newCfg := func(t *testing.T) *config.Config {
		c := config.Demo()
		c.SetDataDir(t.TempDir())
		return c
	}

	t.Run("file is created 0600 and reused", func(t *testing.T) {
		c := newCfg(t)
		p1, err := app.LoadPepper(c, noEnv)
		if err != nil || len(p1) != 32 {
			t.Fatalf("first load: %v", err)
		}
		st, _ := os.Stat(c.APIKeys.PepperFile)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode().Perm())
		}
		p2, _ := app.LoadPepper(c, noEnv)
		if string(p1) != string(p2) {
			t.Fatal("pepper changed between loads")
		}
		if err := os.Chmod(c.APIKeys.PepperFile, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := app.LoadPepper(c, noEnv); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("a world-readable pepper file was accepted: %v", err)
		}
	})
	t.Run("environment wins", func(t *testing.T) {
		c := newCfg(t)
		p, err := app.LoadPepper(c, func(k string) string {
			if k == app.PepperEnv {
				return good
			}
			return ""
		})
		if err != nil || string(p) != strings.Repeat("p", 32) {
			t.Fatalf("env pepper: %v", err)
		}
		if _, err := os.Stat(c.APIKeys.PepperFile); err == nil {
			t.Fatal("a pepper file was written although the environment had one")
		}
		if _, err := app.LoadPepper(c, func(string) string { return "c2hvcnQ=" }); err == nil {
			t.Fatal("a short pepper was accepted")
		}
	})
	t.Run("command", func(t *testing.T) {
		c := newCfg(t)
		c.APIKeys.PepperCommand = []string{"sh", "-c", "echo " + good}
		p, err := app.LoadPepper(c, noEnv)
		if err != nil || string(p) != strings.Repeat("p", 32) {
			t.Fatalf("command pepper: %v", err)
		}
		c.APIKeys.PepperCommand = []string{"sh", "-c", "echo s3cr3t-in-stderr >&2; exit 3"}
		_, err = app.LoadPepper(c, noEnv)
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("failing command: %v", err)
		}
		c.APIKeys.PepperCommand = []string{filepath.Join(t.TempDir(), "missing")}
		if _, err := app.LoadPepper(c, noEnv); err == nil {
			t.Fatal("a missing command was accepted")
		}
	})
}
