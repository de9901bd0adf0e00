package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/testenv"
)

// TestMigrateSQLiteToPostgres moves a demo's SQLite store to PostgreSQL
// with `keyway migrate --from … --to …`, then serves from PostgreSQL: the
// keys made before still work (or stay revoked), the audit trail verifies
// there with every event, and a second copy into the now full database is
// refused without touching it.
func TestMigrateSQLiteToPostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	cfg := apptest.Demo(t)
	dir := cfg.DataDir
	if code, _, errOut := runCLI(t, "init", "--data-dir", dir); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	var live, dead struct{ ID, Key string }
	for _, k := range []*struct{ ID, Key string }{&live, &dead} {
		code, out, errOut := keysCLI(t, dir, "create", "--name", "k", "--scope", "weather:history", "-o", "json")
		if code != 0 || json.Unmarshal([]byte(out), k) != nil {
			t.Fatalf("create: %d %s", code, errOut)
		}
	}
	if code, _, errOut := keysCLI(t, dir, "revoke", dead.ID, "--reason", "leaked"); code != 0 {
		t.Fatalf("revoke: %s", errOut)
	}
	if code, _, errOut := runCLI(t, "users", "invite", "--data-dir", dir); code != 0 {
		t.Fatalf("invite: %s", errOut)
	}
	seedUser(t, dir, "usr_mig", "mig", "Mig Rated", "key") // sealed, its data key in keys.db
	_, before, _ := runCLI(t, "audit", "verify", "--data-dir", dir, "-o", "json")

	for _, bad := range [][]string{
		{"migrate", "--from", dsn, "--to", "sqlite:" + filepath.Join(dir, "keyway.db")},
		{"migrate", "--from", "sqlite:" + filepath.Join(dir, "nope.db"), "--to", dsn},
		{"migrate", "--to", dsn},
	} {
		if code, _, _ := runCLI(t, bad...); code == 0 {
			t.Fatalf("%v succeeded", bad)
		}
	}
	code, out, errOut := runCLI(t, "migrate", "--from", "sqlite:"+filepath.Join(dir, "keyway.db"), "--to", dsn)
	if code != 0 || !strings.Contains(out, "api_keys 2") || !strings.Contains(out, "audit trail verified on PostgreSQL: 4 events") {
		t.Fatalf("migrate: %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "postgres://") {
		t.Fatalf("the DSN was printed: %s%s", out, errOut)
	}
	if code, _, errOut := runCLI(t, "migrate", "--from", "sqlite:"+filepath.Join(dir, "keyway.db"), "--to", dsn); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("a second copy into a full database: %d %s", code, errOut)
	}
	_, after, _ := runCLI(t, "audit", "verify", "--data-dir", dir, "--store", dsn, "-o", "json")
	if before != after || !strings.Contains(after, `"ok":true`) {
		t.Fatalf("audit trail: %s on SQLite, %s on PostgreSQL", before, after)
	}
	code, out, _ = runCLI(t, "keys", "show", dead.ID, "--data-dir", dir, "--store", dsn, "-o", "json")
	if code != 0 || !strings.Contains(out, `"leaked"`) {
		t.Fatalf("the revoked key on PostgreSQL: %d %s", code, out)
	}

	// The sealed account moved with its data key: it opens on PostgreSQL.
	if code, out, errOut := runCLI(t, "users", "list", "--data-dir", dir, "--store", dsn); code != 0 || !strings.Contains(out, "Mig Rated") {
		t.Fatalf("the sealed account on PostgreSQL: %d %q %s", code, out, errOut)
	}

	cfg.SetStore(dsn)
	in := apptest.Start(t, cfg)
	for key, want := range map[string]int{live.Key: 200, dead.Key: 401} {
		req, _ := http.NewRequest(http.MethodGet, in.URL("/v1/history?city=Paris"), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := in.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("a migrated key served from PostgreSQL: %d, want %d", res.StatusCode, want)
		}
	}
}
