package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/testenv"
)

// smallDisk mounts a tmpfs of size bytes at a new directory, unmounted
// when t ends. Mounting needs root: elsewhere t skips (or fails under
// KEYWAY_TEST_STRICT=1).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	apptest.Must(t, os.Mkdir(dir, 0o700), "mkdir")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "a tmpfs mount", "run as root (CI does): "+strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	apptest.Must(t, err, "filler")
	defer func() { _ = f.Close() }()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	// What is left in partial blocks too.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	return p
}

// TestDiskFull runs keyway on a small disk and fills it: writes fail with
// a clean 503 and a log line, reads (a key's check, the portal of a
// signed-in person's keys) keep working, and once space returns keyway
// writes again by itself, with nothing acknowledged lost.
func TestDiskFull(t *testing.T) {
	disk := smallDisk(t, "8m")
	cfg := apptest.Config(t, fmt.Sprintf(`
data_dir: %s
upstreams: {echo: {url: %s}}
routes: [{name: api, path: /api, upstream: echo, policy: api_key}]
`, filepath.Join(disk, "data"), apptest.Echo(t, time.Second)))
	in := apptest.Start(t, cfg)
	admin := "http://" + in.App.Addr("admin")
	adminKey := mustCreateAdminKey(t, cfg)
	hc := &http.Client{Timeout: 10 * time.Second}
	createKey := func(name string) (int, string) {
		req, _ := http.NewRequest("POST", admin+"/v1/keys", strings.NewReader(`{"name":"`+name+`","owner":"service:x"}`))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		res, err := hc.Do(req)
		apptest.Must(t, err, "create")
		return res.StatusCode, string(bodyOf(t, res))
	}
	code, before := createKey("before")
	if code != 201 {
		t.Fatalf("a key before the disk filled: %d %s", code, before)
	}
	key := before[strings.Index(before, `"key":"`)+7:]
	key = key[:strings.Index(key, `"`)]
	filler := fill(t, disk)

	// Writes fail cleanly; nothing half-made.
	failed := 0
	for i := range 20 {
		code, b := createKey(fmt.Sprintf("full-%d", i))
		switch code {
		case 503:
			failed++
			if !strings.Contains(b, "urn:keyway:problem:unavailable") {
				t.Fatalf("a write on a full disk: 503 without the problem type: %s", b)
			}
		case 201: // SQLite may still find room in a page it had
		default:
			t.Fatalf("a write on a full disk: %d %s, want 503", code, b)
		}
	}
	t.Logf("on a full disk, %d of 20 key creations failed with 503", failed)
	if failed == 0 {
		t.Fatal("no write failed on a full disk: the test did not fill it")
	}
	if !strings.Contains(in.Logs(), "request failed") {
		t.Errorf("no log line for the failed writes")
	}
	// Reads keep working.
	res := get(t, in.Client(), in.URL("/api/x"), "Authorization", "Bearer "+key)
	_ = body(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("a key check on a full disk: %d", res.StatusCode)
	}

	// Space returns: writes work again, by themselves.
	apptest.Must(t, os.Remove(filler), "free")
	var after int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if after, _ = createKey("after"); after == 201 {
			break
		}
	}
	if after != 201 {
		t.Fatalf("a write after space returned: %d", after)
	}
	rep, err := app.VerifyAudit(context.Background(), cfg, os.Getenv, nil)
	if err != nil || rep.Broken != nil {
		t.Fatalf("the audit trail after the disk filled: %+v %v", rep, err)
	}
}

// mustCreateAdminKey makes a keyway:admin key on cfg's store, as the CLI
// would.
func mustCreateAdminKey(t *testing.T, cfg *config.Config) string {
	t.Helper()
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	raw, _, err := keys.Create(context.Background(), apikey.CreateParams{Name: "ops", Owner: "service:ops",
		Scopes: []string{apikey.AdminScope}}, "test")
	apptest.Must(t, err, "admin key")
	return raw
}
