package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/audit"
	"github.com/keywayhq/keyway/internal/crypt"
	"github.com/keywayhq/keyway/internal/passkey"
)

type signedUp struct {
	User struct{ ID string } `json:"user"`
}

// TestExportAndCryptoShredding: an export holds everything about one
// person and nothing of anyone else; erasing the person makes a copy of
// the database taken before the erasure useless for them, while everyone
// else in that copy still opens.
func TestExportAndCryptoShredding(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	ada, bob := newPerson(t, in), newPerson(t, in)
	var a, b signedUp
	apptest.Must(t, json.Unmarshal(ada.register(map[string]string{"username": "ada.shred", "display_name": "Ada Shredworth"}), &a), "ada")
	apptest.Must(t, json.Unmarshal(bob.register(map[string]string{"username": "bob.keeps", "display_name": "Bob Keepsake"}), &b), "bob")
	var adaKey, bobKey struct{ Key, ID string }
	apptest.Must(t, json.Unmarshal(ada.want(201, "POST", "/.keyway/api-keys", map[string]any{"name": "ada-key", "scopes": []string{"weather:history"}}), &adaKey), "ada key")
	apptest.Must(t, json.Unmarshal(bob.want(201, "POST", "/.keyway/api-keys", map[string]any{"name": "bob-key", "scopes": []string{"weather:history"}}), &bobKey), "bob key")
	ctx := context.Background()
	people, err := app.OpenPeople(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), os.Getenv)
	apptest.Must(t, err, "open people")
	defer func() { _ = people.Close() }()

	exp, err := people.Privacy.Export(ctx, a.User.ID, "cli")
	apptest.Must(t, err, "export")
	raw, _ := json.Marshal(exp)
	for _, want := range []string{"ada.shred", "Ada Shredworth", "ada-key", a.User.ID, audit.UserCreated, audit.SessionCreated, audit.KeyCreated} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the export lacks %q", want)
		}
	}
	for _, other := range []string{"bob.keeps", "Bob Keepsake", "bob-key", b.User.ID, bobKey.ID} {
		if other != "" && strings.Contains(string(raw), other) {
			t.Errorf("ada's export holds %q of bob's", other)
		}
	}
	if len(exp.Passkeys) != 1 || len(exp.Sessions) == 0 || len(exp.APIKeys) != 1 || exp.RecoveryCodesLeft == 0 {
		t.Fatalf("export: %+v", exp)
	}
	// Where the person signed in from is in the trail, sealed, and in
	// their export, opened.
	var from string
	for _, e := range exp.Audit {
		if e.Type == audit.SessionCreated && e.Actor == "user:"+a.User.ID {
			from = e.From
		}
	}
	if from != "127.0.0.1" && from != "::1" {
		t.Errorf("the sign-in's origin in the export: %q", from)
	}

	// A backup, taken before the erasure.
	in.Stop(t)
	backup := filepath.Join(t.TempDir(), "backup")
	apptest.Must(t, os.MkdirAll(backup, 0o700), "mkdir")
	copyFile(t, cfg.Store.Path, filepath.Join(backup, "keyway.db"))

	apptest.Must(t, people.Privacy.Erase(ctx, a.User.ID, "cli"), "erase")
	if _, err := people.Passkeys.User(ctx, a.User.ID); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("ada after erasure: %v", err)
	}
	if err := people.Privacy.Erase(ctx, a.User.ID, "cli"); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("a second erasure: %v", err)
	}
	_ = people.Close()

	// The backup, opened with today's keys: ada is noise, bob is whole.
	for _, f := range []string{"keys.db", "kek.key", "pepper.key", "audit.key"} {
		copyFile(t, filepath.Join(cfg.DataDir, f), filepath.Join(backup, f))
	}
	old := apptest.Demo(t)
	old.SetDataDir(backup)
	db, err := app.OpenStore(ctx, old, func(string) string { return "" })
	apptest.Must(t, err, "open the backup")
	defer func() { _ = db.Close() }()
	if _, err := db.UserByID(ctx, a.User.ID); !errors.Is(err, crypt.ErrNoKey) {
		t.Fatalf("ada in the backup: %v, want crypt.ErrNoKey", err)
	}
	if u, err := db.UserByID(ctx, b.User.ID); err != nil || u.DisplayName != "Bob Keepsake" {
		t.Fatalf("bob in the backup: %+v %v", u, err)
	}
	// The live trail keeps the erasure, pseudonymously, and verifies.
	live, err := app.OpenStore(ctx, cfg, func(string) string { return "" })
	apptest.Must(t, err, "open the live store")
	defer func() { _ = live.Close() }()
	recs, err := live.RecentAuditEvents(ctx, 20)
	apptest.Must(t, err, "audit")
	var erased bool
	for _, r := range recs {
		if r.Event.Type == audit.UserErased && r.Event.Subject == "user:"+a.User.ID {
			erased = true
		}
		if j, _ := json.Marshal(r.Event); strings.Contains(string(j), "shred") {
			t.Errorf("an audit event names ada: %s", j)
		}
	}
	if !erased {
		t.Fatal("no user.erased event")
	}
	// Where ada signed in from was sealed under her data key: shredded too.
	all, err := live.AuditEvents(ctx, 0, 1000)
	apptest.Must(t, err, "audit")
	var sealedOrigins int
	for _, r := range all {
		if r.Event.Actor == "user:"+a.User.ID && len(r.Event.Origin) > 0 {
			sealedOrigins++
			if from, err := live.AuditOrigin(ctx, r); err != nil || from != "" {
				t.Errorf("an erased person's origin still opens: %q %v", from, err)
			}
		}
	}
	if sealedOrigins == 0 {
		t.Error("ada's events carried no sealed origin")
	}
	if keys, err := live.ListKeys(ctx, "user:"+a.User.ID); err != nil || len(keys) != 0 {
		t.Fatalf("ada's keys after erasure: %d %v", len(keys), err)
	}
	rep, err := app.VerifyAudit(ctx, cfg, os.Getenv, nil)
	if err != nil || rep.Broken != nil {
		t.Fatalf("the trail after erasure: %+v %v", rep, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	apptest.Must(t, err, "read %s", from)
	apptest.Must(t, os.WriteFile(to, b, 0o600), "write %s", to)
}

// TestAdminAPIExportAndErase: an admin key exports a person and erases
// them; their session ends at once and a second erasure is a 404.
func TestAdminAPIExportAndErase(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	eve := newPerson(t, in)
	var e signedUp
	apptest.Must(t, json.Unmarshal(eve.register(map[string]string{"username": "eve.api", "display_name": "Eve Api"}), &e), "eve")
	admin := mustCreateAdminKey(t, cfg)
	call := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+in.App.Addr("admin")+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		apptest.Must(t, err, "%s %s", method, path)
		return res.StatusCode, string(bodyOf(t, res))
	}
	if code, b := call("GET", "/v1/users/"+e.User.ID+"/export"); code != 200 || !strings.Contains(b, "Eve Api") || !strings.Contains(b, `"sessions"`) {
		t.Fatalf("export: %d %s", code, b)
	}
	if code, b := call("DELETE", "/v1/users/"+e.User.ID); code != 204 {
		t.Fatalf("erase: %d %s", code, b)
	}
	if res, _ := eve.do("GET", "/v1/me", nil); res.StatusCode != 401 {
		t.Fatalf("the erased person's session: %d", res.StatusCode)
	}
	if code, _ := call("DELETE", "/v1/users/"+e.User.ID); code != 404 {
		t.Fatalf("a second erasure: %d", code)
	}
	if code, _ := call("GET", "/v1/users/"+e.User.ID+"/export"); code != 404 {
		t.Fatalf("export after erasure: %d", code)
	}
	// The erasure says where the admin's call came from, sealed.
	db, err := app.OpenStore(context.Background(), cfg, os.Getenv)
	apptest.Must(t, err, "open")
	defer func() { _ = db.Close() }()
	recs, err := db.RecentAuditEvents(context.Background(), 10)
	apptest.Must(t, err, "audit")
	for _, r := range recs {
		if r.Event.Type != audit.UserErased {
			continue
		}
		if from, err := db.AuditOrigin(context.Background(), r); err != nil || from != "127.0.0.1" || bytes.Contains(r.Event.Origin, []byte("127.0.0.1")) {
			t.Fatalf("the erasure's origin: %q %v", from, err)
		}
		return
	}
	t.Fatal("no user.erased event")
}
