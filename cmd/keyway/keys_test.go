package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/passkey"
	_ "modernc.org/sqlite"
)

func keysCLI(t *testing.T, dataDir string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, append(append([]string{"keys"}, args...), "--data-dir", dataDir)...)
}

// TestKeysCLIAgainstRunningServer drives `keyway keys` on the data directory
// of a running demo server: a key created by the CLI works at once, and a
// revocation by the CLI reaches the server within a second.
func TestKeysCLIAgainstRunningServer(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	c := in.Client()
	dir := cfg.DataDir

	code, out, errOut := keysCLI(t, dir, "create", "--name", "ci", "--scope", "weather:history", "--rate", "5/s", "--expires", "720h", "-o", "json")
	if code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	var created struct{ ID, Key string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || !strings.HasPrefix(created.ID, "key_") {
		t.Fatalf("create output %q: %v", out, err)
	}
	if _, err := apikey.Parse(created.Key); err != nil {
		t.Fatalf("created key does not parse: %v", err)
	}
	call := func() int {
		req, _ := http.NewRequest(http.MethodGet, in.URL("/v1/history?city=Paris"), nil)
		req.Header.Set("Authorization", "Bearer "+created.Key)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res.StatusCode
	}
	if got := call(); got != 200 {
		t.Fatalf("new key on /v1/history: %d", got)
	}

	// list and show never print a secret.
	for _, args := range [][]string{{"list"}, {"list", "-o", "json"}, {"show", created.ID}, {"show", created.ID, "-o", "json"}} {
		code, out, _ := keysCLI(t, dir, args...)
		if code != 0 || strings.Contains(out, created.Key) || !strings.Contains(out, created.ID) {
			t.Fatalf("%v: code %d, output %q", args, code, out)
		}
	}

	code, _, errOut = keysCLI(t, dir, "revoke", created.ID, "--reason", "test")
	if code != 0 {
		t.Fatalf("revoke: %s", errOut)
	}
	start := time.Now()
	for call() != 401 {
		if time.Since(start) > time.Second {
			t.Fatal("revocation by the CLI not enforced within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("CLI revocation enforced after %v", time.Since(start))
}

// initDir runs `keyway init` on a new data directory.
func initDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if code, out, errOut := runCLI(t, "init", "--data-dir", dir); code != 0 || !strings.Contains(out, "initialised") {
		t.Fatalf("init: %d %s %s", code, out, errOut)
	}
	return dir
}

func TestKeysCLIOffline(t *testing.T) {
	dir := initDir(t)
	code, out, _ := keysCLI(t, dir, "create", "--name", "a", "--scope", "s1", "--scope", "s2", "--quota", "100/day", "-o", "json")
	if code != 0 {
		t.Fatalf("create: %d", code)
	}
	var k struct{ ID, Key string }
	_ = json.Unmarshal([]byte(out), &k)

	st, err := os.Stat(filepath.Join(dir, "pepper.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("pepper file: %v %v", err, st)
	}

	code, out, _ = keysCLI(t, dir, "rotate", k.ID, "--overlap", "1h", "-o", "json")
	var r struct{ ID, Key string }
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.ID != k.ID || r.Key == k.Key {
		t.Fatalf("rotate: %d %q", code, out)
	}
	code, out, _ = keysCLI(t, dir, "update", k.ID, "--scope", "s1", "-o", "json")
	if code != 0 || !strings.Contains(out, `"s1"`) || strings.Contains(out, `"s2"`) {
		t.Fatalf("narrow: %d %s", code, out)
	}
	for name, args := range map[string][]string{
		"widen scopes":    {"update", k.ID, "--scope", "s1", "--scope", "s9"},
		"bad rate":        {"create", "--name", "x", "--rate", "fast"},
		"bad quota":       {"create", "--name", "x", "--quota", "lots"},
		"too long":        {"create", "--name", "x", "--expires", "87600h"},
		"unknown key":     {"show", "key_000000000000"},
		"missing arg":     {"show"},
		"unknown command": {"frob"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, _ := keysCLI(t, dir, args...); code == 0 {
				t.Fatalf("%v succeeded", args)
			}
		})
	}
	code, out, _ = keysCLI(t, dir, "list", "-o", "json")
	var list struct{ Keys []struct{ ID string } }
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Keys) != 1 {
		t.Fatalf("refused commands changed the key set: %s", out)
	}
	if code, _, _ := keysCLI(t, dir, "delete", k.ID); code != 0 {
		t.Fatal("delete failed")
	}
	if code, _, _ := keysCLI(t, dir, "show", k.ID); code == 0 {
		t.Fatal("deleted key still shown")
	}
}

// TestAuditVerify checks that `keyway audit verify` passes an intact trail
// and catches an edited row (written around the append-only triggers, as an
// attacker with the database file could).
// TestUsersCLI makes an invitation with `keyway users invite` beside a
// running server whose sign-up is invite-only, and checks that the server
// takes it; links for unknown users are refused.
func TestUsersCLI(t *testing.T) {
	cfg := apptest.Config(t, `
data_dir: {{data}}
`)
	in := apptest.Start(t, cfg)
	dir := cfg.DataDir
	code, out, errOut := runCLI(t, "users", "invite", "--role", "user", "--data-dir", dir, "-o", "json")
	var inv struct{ URL, Role string }
	if code != 0 || json.Unmarshal([]byte(out), &inv) != nil || !strings.Contains(inv.URL, "/.keyway/portal/signup#invite=") {
		t.Fatalf("invite: %d %q %s", code, out, errOut)
	}
	token := inv.URL[strings.Index(inv.URL, "#invite=")+len("#invite="):]
	begin := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, in.URL("/.keyway/auth/passkey/register/begin"), strings.NewReader(body))
		req.Header.Set("X-Keyway-CSRF", "1")
		res, err := in.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res.StatusCode
	}
	if got := begin(`{"username":"zed"}`); got != http.StatusForbidden {
		t.Fatalf("sign-up without the invitation: %d", got)
	}
	if got := begin(`{"username":"zed","invite":"` + token + `"}`); got != http.StatusOK {
		t.Fatalf("sign-up with the CLI's invitation: %d", got)
	}
	for _, args := range [][]string{{"enrol-link", "nobody"}, {"revoke-sessions", "nobody"}, {"invite", "--role", "root"}, {"frob"}} {
		if code, _, _ := runCLI(t, append(append([]string{"users"}, args...), "--data-dir", dir)...); code == 0 {
			t.Errorf("users %v succeeded", args)
		}
	}
	if code, out, _ := runCLI(t, "users", "list", "--data-dir", dir, "-o", "json"); code != 0 || !strings.Contains(out, `"users"`) {
		t.Fatalf("list: %d %s", code, out)
	}
}

// TestCommandsNeverCreateAStore: run in the wrong folder, every command
// but serve and init refuses, names where it looked and how to point it at
// the right place, and leaves nothing behind; init makes the store once
// and says so the second time.
func TestCommandsNeverCreateAStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "elsewhere")
	for _, args := range [][]string{
		{"keys", "list"}, {"keys", "create", "--name", "x"}, {"keys", "show", "key_x"}, {"keys", "revoke", "key_x"},
		{"users", "list"}, {"users", "invite"}, {"audit", "verify"}, {"migrate"},
	} {
		code, out, errOut := runCLI(t, append(args, "--data-dir", dir)...)
		if code != 1 || out != "" || !strings.Contains(errOut, filepath.Join(dir, "keyway.db")) ||
			!strings.Contains(errOut, "--data-dir") || !strings.Contains(errOut, "keyway serve") {
			t.Errorf("%v in the wrong folder: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%v created %s", args, dir)
		}
	}
	// A store without its pepper (copied without it, or the wrong
	// --data-dir beside a --store) is refused too, never given a new one.
	data := initDir(t)
	if code, out, _ := runCLI(t, "init", "--data-dir", data); code != 0 || !strings.Contains(out, "already initialised") {
		t.Fatalf("init on an existing store: %d %q", code, out)
	}
	if code, _, _ := keysCLI(t, data, "create", "--name", "x"); code != 0 {
		t.Fatal("create")
	}
	if err := os.Remove(filepath.Join(data, "pepper.key")); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "keys", "create", "--name", "x", "--data-dir", data)
	if code != 1 || !strings.Contains(errOut, "pepper") || !strings.Contains(errOut, "KEYWAY_PEPPER") {
		t.Fatalf("keys create without the pepper: %d %q", code, errOut)
	}
	// Neither init nor serve mint a new pepper for a store that has keys.
	code, _, errOut = runCLI(t, "init", "--data-dir", data)
	if code != 1 || !strings.Contains(errOut, "restore it from your backup") {
		t.Fatalf("init on a store with keys but no pepper: %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--http-listen", "off", "--admin-listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "restore it from your backup") {
		t.Fatalf("serve on a store with keys but no pepper: %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "pepper.key")); !os.IsNotExist(err) {
		t.Fatal("a command made a new pepper for a store with keys")
	}
}

// TestKeysRotateCLI: rotate keeps the old secret a day unless told, says
// until when (and show does too), takes day units, and may give the key a
// new lifetime within max_ttl; a person's admin key is refused with why.
func TestKeysRotateCLI(t *testing.T) {
	dir := initDir(t)
	code, out, _ := keysCLI(t, dir, "create", "--name", "r", "--expires", "2d", "-o", "json")
	var k struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil {
		t.Fatalf("create --expires 2d: %d %s", code, out)
	}
	code, _, errOut := keysCLI(t, dir, "rotate", k.ID)
	if code != 0 || !strings.Contains(errOut, "The old secret keeps working until") {
		t.Fatalf("rotate: %d %q", code, errOut)
	}
	code, out, _ = keysCLI(t, dir, "show", k.ID)
	if code != 0 || !strings.Contains(out, "old secret until") {
		t.Fatalf("show after rotate: %d %q", code, out)
	}
	code, out, _ = keysCLI(t, dir, "show", k.ID, "-o", "json")
	var shown struct {
		ExpiresAt time.Time  `json:"expires_at"`
		Old       *time.Time `json:"old_secret_expires_at"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.Old == nil || time.Until(*shown.Old) < 23*time.Hour {
		t.Fatalf("show -o json after rotate: %s", out)
	}
	if code, _, errOut = keysCLI(t, dir, "rotate", k.ID, "--overlap", "8d"); code != 1 || !strings.Contains(errOut, "7d") {
		t.Fatalf("rotate --overlap 8d (above the 7d maximum): %d %q", code, errOut)
	}
	if code, _, errOut = keysCLI(t, dir, "rotate", k.ID, "--overlap", "0", "--expires", "30d"); code != 0 || !strings.Contains(errOut, "stopped working now") {
		t.Fatalf("rotate --overlap 0 --expires 30d: %d %q", code, errOut)
	}
	_, out, _ = keysCLI(t, dir, "show", k.ID, "-o", "json")
	shown.Old = nil
	if json.Unmarshal([]byte(out), &shown) != nil || time.Until(shown.ExpiresAt) < 29*24*time.Hour || shown.Old != nil {
		t.Fatalf("after rotate --overlap 0 --expires 30d: %s", out)
	}
	code, _, errOut = keysCLI(t, dir, "update", k.ID, "--expires-at", time.Now().Add(90*24*time.Hour).Format(time.RFC3339))
	if code != 1 || !strings.Contains(errOut, "rotate the key with a new lifetime") {
		t.Fatalf("update --expires-at later: %d %q", code, errOut)
	}
	code, _, errOut = keysCLI(t, dir, "create", "--name", "mine", "--owner", "user:usr_ann", "--scope", "keyway:admin")
	if code != 1 || !strings.Contains(errOut, "service account") {
		t.Fatalf("a person's keyway:admin key: %d %q", code, errOut)
	}
}

// TestUsersRolesCLI gives, shows and takes a person's roles from the
// command line, refusing invalid names.
func TestUsersRolesCLI(t *testing.T) {
	dir := initDir(t)
	seedUser(t, dir, "usr_ada", "ada", "Ada", "key")
	users := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"users"}, args...), "--data-dir", dir)...)
	}
	if code, out, errOut := users("roles", "ada", "--set", "ops, billing,ops"); code != 0 || strings.TrimSpace(out) != "billing,ops" {
		t.Fatalf("roles --set: %d %q %s", code, out, errOut)
	}
	if code, out, _ := users("roles", "ADA", "-o", "json"); code != 0 || !strings.Contains(out, `"roles": [`) || !strings.Contains(out, `"billing"`) {
		t.Fatalf("roles (show): %d %q", code, out)
	}
	if code, out, _ := users("list"); code != 0 || !strings.Contains(out, "billing,ops") {
		t.Fatalf("list: %d %q", code, out)
	}
	if code, _, errOut := users("roles", "ada", "--set", "Ops"); code != 1 || !strings.Contains(errOut, "a-z") {
		t.Fatalf("an invalid role: %d %q", code, errOut)
	}
	if code, out, _ := users("roles", "ada", "--set", ""); code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("roles --set '': %d %q", code, out)
	}
	if code, _, _ := users("roles", "nobody"); code != 1 {
		t.Fatal("roles of nobody succeeded")
	}
}

// TestUsersExportAndEraseCLI: export prints the person's data as JSON;
// erase wants --yes, then erases, and a second erase says there is no one.
func TestUsersExportAndEraseCLI(t *testing.T) {
	dir := initDir(t)
	seedUser(t, dir, "usr_grace", "grace", "Grace H.", "Grace's key")
	users := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"users"}, args...), "--data-dir", dir)...)
	}
	code, out, errOut := users("export", "grace")
	var exp struct {
		User     struct{ ID, Username, DisplayName string }
		Passkeys []struct{ Name string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &exp) != nil || exp.User.ID != "usr_grace" || len(exp.Passkeys) != 1 || exp.Passkeys[0].Name != "Grace's key" {
		t.Fatalf("export: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := users("erase", "grace"); code != exitUsage || !strings.Contains(errOut, "--yes") {
		t.Fatalf("erase without --yes: %d %s", code, errOut)
	}
	if code, out, errOut := users("erase", "grace", "--yes"); code != 0 || !strings.Contains(out, "erased usr_grace") {
		t.Fatalf("erase: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := users("erase", "usr_grace", "--yes"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("a second erase: %d %s", code, errOut)
	}
	if code, out, _ := users("list"); code != 0 || strings.Contains(out, "grace") {
		t.Fatalf("list after erase: %d %q", code, out)
	}
}

// TestKEKCLI: status shows the ring; rotate puts a new KEK first and
// rewraps every data key under it.
func TestKEKCLI(t *testing.T) {
	dir := initDir(t)
	seedUser(t, dir, "usr_kek", "kek", "K", "k")
	type status struct {
		Ring      []string
		DataKeys  map[string]int `json:"data_keys"`
		Rewrapped int
	}
	kek := func(args ...string) status {
		t.Helper()
		code, out, errOut := runCLI(t, append(append([]string{"kek"}, args...), "--data-dir", dir, "-o", "json")...)
		var st status
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("kek %v: %d %q %s", args, code, out, errOut)
		}
		return st
	}
	before := kek("status")
	if len(before.Ring) != 1 || before.DataKeys[before.Ring[0]] != 1 {
		t.Fatalf("status: %+v", before)
	}
	after := kek("rotate")
	if len(after.Ring) != 2 || after.Ring[1] != before.Ring[0] || after.Rewrapped != 1 || after.DataKeys[after.Ring[0]] != 1 {
		t.Fatalf("rotate: %+v", after)
	}
	if code, out, _ := runCLI(t, "kek", "status", "--data-dir", dir); code != 0 || !strings.Contains(out, "current") {
		t.Fatalf("status (text): %d %q", code, out)
	}
}

// seedUser makes an account with one passkey in the store of dir, as a
// sign-up would, sealed.
func seedUser(t *testing.T, dir, id, username, displayName, passkeyName string) {
	t.Helper()
	ctx := context.Background()
	cfg := config.Demo()
	cfg.SetDataDir(dir)
	db, err := app.OpenStore(ctx, cfg, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	u := &passkey.User{ID: id, Handle: []byte("h-" + id), Username: username, DisplayName: displayName, Role: passkey.RoleUser, CreatedAt: time.Now()}
	c := &passkey.Credential{ID: []byte("c-" + id), UserID: id, Name: passkeyName, PublicKey: []byte{1}, CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u, c, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// TestAnotherKEKIsRefused: a node whose KEK ring lacks the store's KEK
// (its own kek.key made by mistake) refuses to start, even before anyone
// signed up, instead of wrapping people's keys under a KEK the others lack.
func TestAnotherKEKIsRefused(t *testing.T) {
	dir := initDir(t)
	if err := os.Remove(filepath.Join(dir, "kek.key")); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "init", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "does not hold") || !strings.Contains(errOut, "KEYWAY_KEK") {
		t.Fatalf("init with another KEK: %d %q", code, errOut)
	}
	// After a rotation, the new KEK is the one every node needs.
	dir2 := initDir(t)
	if code, _, errOut := runCLI(t, "kek", "rotate", "--data-dir", dir2); code != 0 {
		t.Fatalf("rotate: %s", errOut)
	}
	ring, err := os.ReadFile(filepath.Join(dir2, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	old := strings.Fields(string(ring))[1]
	if err := os.WriteFile(filepath.Join(dir2, "kek.key"), []byte(old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "users", "list", "--data-dir", dir2); code != 1 || !strings.Contains(errOut, "does not hold") {
		t.Fatalf("a node left with the old KEK only: %d %q", code, errOut)
	}
}
