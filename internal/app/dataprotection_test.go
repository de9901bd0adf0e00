package app_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/testenv"
)

// headerTransport adds headers to every request, as a browser on another
// machine behind a trusted proxy would arrive.
type headerTransport struct {
	next    http.RoundTripper
	headers map[string]string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.headers {
		r.Header.Set(k, v)
	}
	return h.next.RoundTrip(r)
}

// TestStolenDatabaseIsUseless runs a full flow (sign-up, a second passkey
// renamed, sessions from a named device and address, recovery, API keys and
// their use, an invitation), copies the database files while the server
// runs (WAL included) and again after it stops, and searches them for
// every secret and personal string the flow used: none is there. Neither
// is any of them in a log line.
func TestStolenDatabaseIsUseless(t *testing.T) {
	cfg := apptest.Demo(t)
	in, secrets := secretFlow(t, cfg)
	// The files as a thief copies them from a running server, WAL and all.
	copies := map[string][]byte{}
	for _, f := range []string{"keyway.db", "keyway.db-wal", "keys.db", "keys.db-wal"} {
		if b, err := os.ReadFile(filepath.Join(cfg.DataDir, f)); err == nil {
			copies[f+" (running)"] = b
		}
	}
	in.Stop(t)
	for _, f := range []string{"keyway.db", "keys.db"} {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, f))
		apptest.Must(t, err, "read %s", f)
		copies[f] = b
	}
	if len(copies) < 4 {
		t.Fatalf("only %d database files to search", len(copies))
	}
	searchSecrets(t, secrets, copies, in.Logs())
}

// TestStolenPostgresDumpIsUseless is the same flow on PostgreSQL, searched
// in a pg_dump of the store's data (its data keys included, as they are by
// default).
func TestStolenPostgresDumpIsUseless(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	if _, err := exec.LookPath("pg_dump"); err != nil {
		testenv.Missing(t, "pg_dump", "install Debian's postgresql-client")
	}
	cfg := apptest.Demo(t)
	cfg.SetStore(dsn)
	in, secrets := secretFlow(t, cfg)
	in.Stop(t)
	u, err := url.Parse(dsn)
	apptest.Must(t, err, "parse the DSN")
	q := u.Query()
	schema := q.Get("search_path")
	q.Del("search_path")
	u.RawQuery = q.Encode()
	dump, err := exec.Command("pg_dump", "--data-only", "--schema="+schema, u.String()).Output()
	apptest.Must(t, err, "pg_dump")
	if !bytes.Contains(dump, []byte("COPY "+schema+".users")) {
		t.Fatalf("the dump holds no users table:\n%.500s", dump)
	}
	searchSecrets(t, secrets, map[string][]byte{"pg_dump": dump}, in.Logs())
}

// secretFlow runs the full flow on cfg and returns the instance (still
// running) and every secret and personal string it used, by name.
func secretFlow(t *testing.T, cfg *config.Config) (*apptest.Instance, map[string]string) {
	t.Helper()
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	in := apptest.Start(t, cfg)

	const (
		username    = "ada.scanwell"
		displayName = "Ada Scanwell-Byron"
		passkeyName = "Ada's ScanPhone 7"
		userAgent   = "ScanAgent/9.9 (unique-ua-Zq7Kp)"
		address     = "203.0.113.77"
	)
	ada := newPerson(t, in)
	ada.c.Transport = headerTransport{next: ada.c.Transport, headers: map[string]string{"User-Agent": userAgent, "X-Forwarded-For": address}}
	var signup struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	apptest.Must(t, json.Unmarshal(ada.register(map[string]string{"username": username, "display_name": displayName}), &signup), "sign-up")
	ada.register(map[string]string{"name": passkeyName})
	var created struct{ Key string }
	apptest.Must(t, json.Unmarshal(ada.want(201, "POST", "/.keyway/api-keys", map[string]any{"name": "scan", "scopes": []string{"weather:history"}}), &created), "key")
	for range 3 {
		res := get(t, in.Client(), in.URL("/v1/history?city=Paris"), "Authorization", "Bearer "+created.Key)
		if _ = body(t, res); res.StatusCode != 200 {
			t.Fatalf("the key on its route: %d", res.StatusCode)
		}
	}
	if res, b := ada.do("GET", "/v1/me", nil); res.StatusCode != 200 || !strings.Contains(string(b), displayName) {
		t.Fatalf("the display name did not reach the upstream: %d %s", res.StatusCode, b)
	}
	var sessions struct {
		Sessions []struct{ IP, UserAgent string } `json:"sessions"`
	}
	apptest.Must(t, json.Unmarshal(ada.want(200, "GET", "/.keyway/auth/sessions", nil), &sessions), "sessions")
	if len(sessions.Sessions) == 0 || !strings.Contains(sessions.Sessions[0].UserAgent+sessions.Sessions[0].IP, address) {
		t.Fatalf("the session list lost its device: %+v", sessions)
	}
	cookie := ada.cookie().Value
	// A recovery sign-in from a second browser.
	lost := newPerson(t, in)
	lost.want(200, "POST", "/.keyway/auth/recovery", map[string]string{"username": username, "code": signup.RecoveryCodes[0]})
	adminKey := mustCreateAdminKey(t, cfg)

	secrets := map[string]string{
		"username": username, "display name": displayName, "passkey name": passkeyName, "user agent": userAgent,
		"address": address, "API key": created.Key, "API key secret": created.Key[len(created.Key)-20:], "session token": cookie,
		"admin key": adminKey, "recovery code": signup.RecoveryCodes[1],
	}
	for _, f := range []string{"pepper.key", "kek.key", "audit.key"} {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, f))
		apptest.Must(t, err, "read %s", f)
		secrets[f] = strings.TrimSpace(string(b))
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		apptest.Must(t, err, "decode %s", f)
		secrets[f+" (raw)"] = string(raw)
	}
	return in, secrets
}

// searchSecrets fails for every secret found in a copy or the log.
func searchSecrets(t *testing.T, secrets map[string]string, copies map[string][]byte, logs string) {
	t.Helper()
	for what, s := range secrets {
		for f, b := range copies {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds the %s", f, what)
			}
			// Text a database may keep in another case or encoding (a
			// dump writes bytea in hex).
			if len(s) > 6 && !strings.Contains(what, "raw") && bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
				t.Errorf("%s holds the %s (in another case)", f, what)
			}
			if bytes.Contains(bytes.ToLower(b), []byte(hex.EncodeToString([]byte(s)))) {
				t.Errorf("%s holds the %s (in hex)", f, what)
			}
		}
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s", what)
		}
	}
}
