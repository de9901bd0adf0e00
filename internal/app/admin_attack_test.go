package app_test

// Security review of API key management, the admin API, the portal's
// self-service keys, privacy erasure and the audit trail. Each test
// asserts the secure behaviour; its findings failed before their fixes.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/app/apptest"
)

// reviewAdmin calls the admin listener with key.
func reviewAdmin(t *testing.T, in *apptest.Instance, key, method, path, reqBody string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+in.App.Addr("admin")+path, strings.NewReader(reqBody))
	apptest.Must(t, err, "request")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	apptest.Must(t, err, "%s %s", method, path)
	return res.StatusCode, string(bodyOf(t, res))
}

// reportLeak posts an unsigned leak report to the public listener.
func reportLeak(t *testing.T, in *apptest.Instance, payload string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", in.URL("/.keyway/keys/report-leak"), strings.NewReader(payload))
	apptest.Must(t, err, "request")
	res, err := in.Client().Do(req)
	apptest.Must(t, err, "report")
	return res.StatusCode, body(t, res)
}

// TestAdminLeakReportCannotBreakTheAuditChain: anyone holding a
// key (a leaked one included) may report it, unauthenticated, and the
// report's "source" and "url" go into the apikey.leak_reported event,
// cut at 200 bytes. Cut in the middle of a multi-byte character, the
// detail is invalid UTF-8: the event is hashed over json.Marshal's
// "\ufffd" escape but read back (and verified) as the raw U+FFFD rune,
// so `keyway audit verify` reports the trail as tampered from that event
// on, and every later event goes unverified.
func TestAdminLeakReportCannotBreakTheAuditChain(t *testing.T) {
	e := startKeys(t)
	raw, _ := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	source := strings.Repeat("a", 199) + "é" // byte 200 is the first byte of "é"
	tokens, _ := json.Marshal([]map[string]string{{"token": raw, "type": "keyway_api_key", "url": "u", "source": source}})
	if code, b := reportLeak(t, e.in, string(tokens)); code != 200 || !strings.Contains(b, "true_positive") {
		t.Fatalf("report: %d %s", code, b)
	}
	// More events after it: the ones a broken chain leaves unverified.
	e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	e.in.Stop(t) // the stop signs the head
	rep, err := app.VerifyAudit(context.Background(), e.cfg, os.Getenv, nil)
	apptest.Must(t, err, "verify")
	if rep.Broken != nil {
		t.Fatalf("an unauthenticated leak report broke the audit trail: %v", rep.Broken)
	}
}

// TestAdminErasureLeavesNoLiveKey: erasing a person lists their
// keys, revokes and deletes them one by one, and only then deletes the
// account (and with it the sessions). A key the person creates in that
// window, with a session that is still alive, is never revoked: it
// outlives the account it belongs to.
func TestAdminErasureLeavesNoLiveKey(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	mallory := newPerson(t, in)
	var m signedUp
	apptest.Must(t, json.Unmarshal(mallory.register(map[string]string{"username": "mallory"}), &m), "sign up")
	admin := mustCreateAdminKey(t, cfg)
	// Many keys make the erasure's revoke-and-delete loop (two
	// transactions a key) long.
	for i := range 40 {
		mallory.want(201, "POST", "/.keyway/api-keys", map[string]any{"name": fmt.Sprintf("k%d", i), "scopes": []string{"weather:history"}})
	}
	var (
		mu      sync.Mutex
		minted  []string
		started = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			res, out := mallory.do("POST", "/.keyway/api-keys", map[string]any{"name": fmt.Sprintf("late%d", i), "scopes": []string{"weather:history"}})
			if res.StatusCode != 201 {
				return
			}
			var k struct{ Key string }
			_ = json.Unmarshal(out, &k)
			mu.Lock()
			minted = append(minted, k.Key)
			mu.Unlock()
			if i == 0 {
				close(started)
			}
		}
	}()
	<-started
	if code, b := reviewAdmin(t, in, admin, "DELETE", "/v1/users/"+m.User.ID, ""); code != 204 {
		t.Fatalf("erase: %d %s", code, b)
	}
	<-done
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	left, err := keys.List(context.Background(), "user:"+m.User.ID)
	apptest.Must(t, err, "list")
	mu.Lock()
	defer mu.Unlock()
	working := 0
	for _, raw := range minted {
		res := get(t, in.Client(), in.URL("/v1/history?city=Paris"), "Authorization", "Bearer "+raw)
		_ = res.Body.Close()
		if res.StatusCode == 200 {
			working++
		}
	}
	if len(left) > 0 || working > 0 {
		t.Fatalf("after erasing %s: %d of their keys are still stored, %d still work on the API", m.User.ID, len(left), working)
	}
}

// TestAdminUpdateCannotWidenNetworks: "Scopes can only be narrowed
// and expiry only brought forward after creation: widening a key means a
// new key." A key limited to one network must not be opened to the whole
// Internet by a PATCH (a compromised management client opening a leaked,
// network-bound key to wherever the thief is).
func TestAdminUpdateCannotWidenNetworks(t *testing.T) {
	e := startKeys(t)
	admin, _ := e.create(t, apikey.CreateParams{Scopes: []string{apikey.AdminScope}})
	bound, k := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("10.9.8.0/24")}})
	if r := e.call(t, "/api/x", bound); r.StatusCode != 401 {
		t.Fatalf("a key bound to 10.9.8.0/24 from loopback: %d", r.StatusCode)
	}
	code, b := reviewAdmin(t, e.in, admin, "PATCH", "/v1/keys/"+apikey.DisplayID(k.ID), `{"cidrs":[]}`)
	if code == 200 {
		waitStatus(t, e, bound, 200)
		t.Fatalf("PATCH opened a network-bound key to every network (%d %s); the key now works from anywhere", code, b)
	}
}

// TestAdminSelfServiceKeysOfOthers: a person cannot rotate, revoke
// or read the usage of someone else's key, by ID, display ID or case
// variants of either; the victim's key keeps working.
func TestAdminSelfServiceKeysOfOthers(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	alice, bob := newPerson(t, in), newPerson(t, in)
	alice.register(map[string]string{"username": "alice"})
	bob.register(map[string]string{"username": "bob"})
	var ak struct{ ID, Key string }
	apptest.Must(t, json.Unmarshal(alice.want(201, "POST", "/.keyway/api-keys", map[string]any{"name": "a", "scopes": []string{"weather:history"}}), &ak), "alice key")
	bare := strings.TrimPrefix(ak.ID, "key_")
	for _, id := range []string{ak.ID, bare, "KEY_" + bare, "key_" + strings.ToUpper(bare), "key_" + strings.ToLower(bare), " " + ak.ID, ak.ID + "%20"} {
		for _, c := range []struct{ method, path string }{
			{"POST", "/.keyway/api-keys/" + id + "/rotate"},
			{"POST", "/.keyway/api-keys/" + id + "/revoke"},
			{"GET", "/.keyway/api-keys/" + id + "/usage"},
		} {
			if res, out := bob.do(c.method, c.path, nil); res.StatusCode < 400 {
				t.Errorf("bob %s %s: %d %s", c.method, c.path, res.StatusCode, out)
			}
		}
	}
	if r := get(t, in.Client(), in.URL("/v1/history?city=Paris"), "Authorization", "Bearer "+ak.Key); r.StatusCode != 200 {
		t.Fatalf("alice's key after bob's attempts: %d", r.StatusCode)
	}
	if strings.Contains(string(bob.want(200, "GET", "/.keyway/api-keys", nil)), ak.ID) {
		t.Fatal("bob lists alice's key")
	}
}

// TestAdminSelfServiceCreateBounds: what a person may put on their
// own key: only their own owner, only self-service scopes (duplicate JSON
// keys, case variants), no expiry beyond max_ttl or below zero, no
// unknown fields, no huge bodies.
func TestAdminSelfServiceCreateBounds(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	eve := newPerson(t, in)
	var u signedUp
	apptest.Must(t, json.Unmarshal(eve.register(map[string]string{"username": "eve"}), &u), "eve")
	for _, bad := range []string{
		`{"name":"x","scopes":["weather:history"],"scopes":["keyway:admin"]}`,
		`{"name":"x","scopes":["Keyway:Admin"]}`,
		`{"name":"x","scopes":["weather:history","keyway:admin"]}`,
		`{"name":"x","scopes":["weather:History"]}`,
		`{"name":"x","expires_in":"400d"}`,
		`{"name":"x","expires_in":"-1h"}`,
		`{"name":"x","expires_in":"9223372036854775807d"}`,
		`{"name":"x","role":"admin"}`,
		`{"name":"x","owner_id":"service:ops"}`,
		`{"name":"x"} {"scopes":["keyway:admin"]}`,
		`{"name":"` + strings.Repeat("x", 70<<10) + `"}`,
	} {
		if res, out := eve.do("POST", "/.keyway/api-keys", bad); res.StatusCode < 400 {
			t.Errorf("create %.80s: %d %s", bad, res.StatusCode, out)
		}
	}
	// An owner in the body is overwritten by the session's.
	res, out := eve.do("POST", "/.keyway/api-keys", `{"name":"x","owner":"service:ops","scopes":["weather:history"]}`)
	if res.StatusCode == 201 && !strings.Contains(string(out), `"owner":"user:`+u.User.ID+`"`) {
		t.Fatalf("owner from the body: %s", out)
	}
}

// TestAdminAdminAPIRefusesTheWrongKeys: the admin API refuses a
// person's key, a narrow service key, and revoked, expired and
// rotated-out admin keys.
func TestAdminAdminAPIRefusesTheWrongKeys(t *testing.T) {
	cfg := apptest.Demo(t)
	in := apptest.Start(t, cfg)
	p := newPerson(t, in)
	p.register(map[string]string{"username": "pat"})
	var mine struct{ Key string }
	apptest.Must(t, json.Unmarshal(p.want(201, "POST", "/.keyway/api-keys", map[string]any{"name": "m", "scopes": []string{"weather:history"}}), &mine), "key")
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	apptest.Must(t, err, "open keys")
	defer func() { _ = keys.Close() }()
	ctx := context.Background()
	narrow, _, err := keys.Create(ctx, apikey.CreateParams{Name: "n", Owner: "service:n", Scopes: []string{"weather:history"}}, "test")
	apptest.Must(t, err, "narrow")
	revoked, rk, err := keys.Create(ctx, apikey.CreateParams{Name: "r", Owner: "service:r", Scopes: []string{apikey.AdminScope}}, "test")
	apptest.Must(t, err, "revoked")
	apptest.Must(t, keys.Revoke(ctx, rk.ID, "test", "test"), "revoke")
	expired, ek, err := keys.Create(ctx, apikey.CreateParams{Name: "e", Owner: "service:e", Scopes: []string{apikey.AdminScope}}, "test")
	apptest.Must(t, err, "expired")
	past := time.Now().Add(-time.Hour)
	_, err = keys.Update(ctx, ek.ID, apikey.UpdateParams{ExpiresAt: &past}, "test")
	apptest.Must(t, err, "expire")
	rotated, tk, err := keys.Create(ctx, apikey.CreateParams{Name: "t", Owner: "service:t", Scopes: []string{apikey.AdminScope}}, "test")
	apptest.Must(t, err, "rotated")
	zero := time.Duration(0)
	_, err = keys.Rotate(ctx, tk.ID, apikey.RotateParams{Overlap: &zero}, "test")
	apptest.Must(t, err, "rotate")
	time.Sleep(time.Second) // the server's cache follows the change feed
	for name, k := range map[string]string{"a person's key": mine.Key, "a narrow service key": narrow, "a revoked admin key": revoked,
		"an expired admin key": expired, "a rotated-out admin key": rotated} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/v1/keys", ""}, {"POST", "/v1/keys", `{"name":"x","owner":"service:x","scopes":["keyway:admin"]}`},
			{"GET", "/v1/users", ""},
		} {
			if code, b := reviewAdmin(t, in, k, c.method, c.path, c.body); code != 401 && code != 403 {
				t.Errorf("%s: %s %s: %d %s", name, c.method, c.path, code, b)
			}
		}
	}
	// Revoked keys stay revoked: no update or rotation brings one back.
	admin := mustCreateAdminKey(t, cfg)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/keys/" + apikey.DisplayID(rk.ID) + "/rotate", `{"expires_in":"30d"}`},
		{"PATCH", "/v1/keys/" + apikey.DisplayID(rk.ID), `{"name":"back"}`},
		{"PATCH", "/v1/keys/" + apikey.DisplayID(rk.ID), `{"revoked_at":null}`},
	} {
		if code, b := reviewAdmin(t, in, admin, c.method, c.path, c.body); code < 400 {
			t.Errorf("un-revoke by %s %s %s: %d %s", c.method, c.path, c.body, code, b)
		}
	}
	if code, b := reviewAdmin(t, in, revoked, "GET", "/v1/keys", ""); code != 401 {
		t.Errorf("the revoked key after the attempts: %d %s", code, b)
	}
}

// TestAdminLeakReportNeedsTheWholeKey: a report with a key's ID
// but another secret (checksum valid) revokes nothing, and is answered
// exactly like a report of an ID that does not exist.
func TestAdminLeakReportNeedsTheWholeKey(t *testing.T) {
	e := startKeys(t)
	raw, k := e.create(t, apikey.CreateParams{Scopes: []string{"orders:read"}})
	p, err := apikey.Parse(raw)
	apptest.Must(t, err, "parse")
	secret := strings.Repeat("A", apikey.SecretLen)
	forged := apikey.WithChecksum(apikey.Prefix + string(p.Env) + "_" + p.ID + secret)
	unknown := apikey.WithChecksum(apikey.Prefix + string(p.Env) + "_" + strings.Repeat("Z", len(p.ID)) + secret)
	for _, tok := range []string{forged, unknown} {
		if _, err := apikey.Parse(tok); err != nil {
			t.Fatalf("forged token %v", err)
		}
	}
	label := func(tok string) string {
		payload, _ := json.Marshal([]map[string]string{{"token": tok, "type": "t", "url": "u", "source": "s"}})
		code, b := reportLeak(t, e.in, string(payload))
		if code != 200 {
			t.Fatalf("report: %d %s", code, b)
		}
		var out []struct{ Label string }
		_ = json.Unmarshal([]byte(b), &out)
		return out[0].Label
	}
	if a, b := label(forged), label(unknown); a != "false_positive" || b != "false_positive" {
		t.Fatalf("a wrong secret is %s, an unknown ID %s", a, b)
	}
	got, err := e.cli.Get(context.Background(), k.ID)
	apptest.Must(t, err, "get")
	if !got.RevokedAt.IsZero() {
		t.Fatal("a report without the secret revoked the key")
	}
}

// TestAdminKeyRateIsValidated: a rate given through the API is
// checked like one in the config. A burst no limiter can run is taken
// (201) and makes a key that answers 429 to every request; "burst=" in
// the rate string is silently dropped.
func TestAdminKeyRateIsValidated(t *testing.T) {
	in := apptest.Start(t, apptest.Demo(t))
	p := newPerson(t, in)
	p.register(map[string]string{"username": "rita"})
	res, out := p.do("POST", "/.keyway/api-keys", `{"name":"r","scopes":["weather:history"],"rate":{"rate":"1/s","burst":1000000000000}}`)
	if res.StatusCode == 201 {
		var k struct{ Key string }
		_ = json.Unmarshal(out, &k)
		r := get(t, in.Client(), in.URL("/v1/history?city=Paris"), "Authorization", "Bearer "+k.Key)
		_ = r.Body.Close()
		t.Errorf("a burst no limiter can run was accepted; the key's first request: %d", r.StatusCode)
	}
	res, out = p.do("POST", "/.keyway/api-keys", `{"name":"r","scopes":["weather:history"],"rate":{"rate":"10/s burst=1"}}`)
	if res.StatusCode == 201 && !strings.Contains(string(out), `"burst":1`) {
		t.Errorf("burst=1 in the rate was dropped: %s", out)
	}
}
