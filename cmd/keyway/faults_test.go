package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/testenv"
)

// rssKiB reads a process's resident memory from /proc.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// TestIdleConnectionsAndSlowloris holds 10 000 idle keep-alive TLS
// connections and 300 slowloris clients (headers dribbled a byte at a
// time) against one keyway process: other clients are still served
// promptly, memory stays bounded (reported), and the slowloris clients
// are cut off at server.read_header_timeout.
func TestIdleConnectionsAndSlowloris(t *testing.T) {
	bin := keywayBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	cfg := writeFile(t, "k.yaml", fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:0
http_listen: "off"
admin_listen: 127.0.0.1:0
demo: true
log: {access: false}
server: {read_header_timeout: 2s, idle_timeout: 5m}
upstreams: {weather: {url: "demo:"}}
routes: [{path: /v1/forecast, upstream: weather, policy: public, rate_limit: {rate: 100000/s}}]
`, data))
	n := startNode(t, bin, nil, "--config", cfg)
	pool := localCA(t, data)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	dial := func() (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 10 * time.Second}
		return tls.DialWithDialer(d, "tcp", n.https, tlsCfg)
	}
	rssBefore := rssKiB(n.cmd.Process.Pid)

	// 10 000 keep-alive connections, each after one request, then idle.
	const idle = 10000
	conns := make([]net.Conn, idle)
	var failed atomic.Int64
	// 32 dialers (the race detector allows some 8 000 goroutines at once).
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= idle {
					return
				}
				c, err := dial()
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.WriteString(c, "GET /v1/forecast?city=Paris HTTP/1.1\r\nHost: localhost\r\n\r\n")
				res, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil || res.StatusCode != 200 {
					failed.Add(1)
					_ = c.Close()
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				conns[i] = c
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d keep-alive connections failed", f, idle)
	}
	rssIdle := rssKiB(n.cmd.Process.Pid)

	// 300 slowloris clients: a request line and a header, a byte a second.
	const loris = 300
	slow := make([]net.Conn, 0, loris)
	for range loris {
		c, err := dial()
		if err != nil {
			t.Fatalf("slowloris dial: %v", err)
		}
		_, _ = io.WriteString(c, "GET /v1/forecast HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
		slow = append(slow, c)
	}
	t.Cleanup(func() {
		for _, c := range slow {
			_ = c.Close()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			for _, c := range slow {
				_, _ = c.Write([]byte("a"))
			}
			time.Sleep(time.Second)
		}
	}()

	// Meanwhile a new client is served, and promptly.
	client := clientTo(pool, n.https)
	var slowest time.Duration
	for range 20 {
		start := time.Now()
		res, err := client.Get("https://localhost/v1/forecast?city=Oslo")
		if err != nil {
			t.Fatalf("a client among 10 000 idle and 300 slowloris connections: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("a client among them: %d", res.StatusCode)
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > time.Second {
		t.Fatalf("the slowest of 20 requests took %v beside the idle and slowloris connections", slowest)
	}

	// The slowloris clients are cut off by read_header_timeout (2 s),
	// however faithfully they dribble.
	deadline := time.Now().Add(10 * time.Second)
	cut := 0
	for _, c := range slow {
		_ = c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 512)); err != nil && !isTimeout(err) {
			cut++
		} else if err == nil {
			cut++ // the server answered (408 or 400) and will close
		}
	}
	cancel()
	t.Logf("keyway RSS: %d MiB at start, %d MiB with %d idle keep-alive connections; slowest request beside them and %d slowloris: %v; %d of %d slowloris cut off",
		rssBefore/1024, rssIdle/1024, idle, loris, slowest.Round(time.Millisecond), cut, loris)
	if cut != loris {
		t.Fatalf("%d of %d slowloris connections were still open 10 s after a 2 s read_header_timeout", loris-cut, loris)
	}
	if rssIdle > 1<<20 { // 1 GiB
		t.Fatalf("%d MiB resident for %d idle connections", rssIdle/1024, idle)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestSIGHUPReloadsRoutes: SIGHUP applies a changed file's routes and
// upstreams without failing one request of a steady load; a broken file,
// or one that changes what needs a restart, is refused with the reason
// (as keyway check refuses it) and the running config goes on.
func TestSIGHUPReloadsRoutes(t *testing.T) {
	bin := keywayBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	base := fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:0
http_listen: "off"
admin_listen: 127.0.0.1:0
demo: true
upstreams: {weather: {url: "demo:"}}
routes:
  - {path: /v1/forecast, upstream: weather, policy: public, rate_limit: {rate: 100000/s}}
`, data)
	cfgFile := writeFile(t, "k.yaml", base)
	write := func(body string) {
		t.Helper()
		apptest.Must(t, os.WriteFile(cfgFile, []byte(body), 0o600), "write config")
	}
	n := startNode(t, bin, nil, "--config", cfgFile)
	client := clientTo(localCA(t, data), n.https)
	get := func(path string) int {
		res, err := client.Get("https://localhost" + path)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	// A steady load on the route every version keeps.
	var served, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if get("/v1/forecast?city=Paris") == 200 {
					served.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	hup := func() { apptest.Must(t, n.cmd.Process.Signal(syscall.SIGHUP), "SIGHUP") }

	if got := get("/v1/history?city=Paris"); got != 404 {
		t.Fatalf("a route not configured yet: %d", got)
	}
	// A new route and a new rate limit.
	write(base + "  - {path: /v1/history, upstream: weather, policy: public, rate_limit: {rate: 2/min, burst: 2}}\n")
	hup()
	waitUntil(t, 5*time.Second, "the new route after SIGHUP", func() bool { return get("/v1/history?city=Paris") == 200 })
	if got := get("/v1/history?city=Oslo"); got != 200 { // the burst of 2
		t.Fatalf("the new route's second request: %d", got)
	}
	if got := get("/v1/history?city=Rome"); got != 429 {
		t.Fatalf("the new route's limit of 2: %d, want 429", got)
	}
	// A broken file: refused, with the reason; the running config goes on.
	write(base + "rotes: []\n")
	if code, out, _ := runCLI(t, "check", "--config", cfgFile); code != exitError || !strings.Contains(out, "rotes") {
		t.Fatalf("keyway check on the broken file: %d %s", code, out)
	}
	hup()
	waitUntil(t, 5*time.Second, "the refusal in the log", func() bool {
		return strings.Contains(n.logs(), "config reload refused") && strings.Contains(n.logs(), "rotes")
	})
	if got := get("/v1/history?city=Paris"); got != 429 {
		t.Fatalf("after a refused reload the route is gone or reset: %d", got)
	}
	// What needs a restart is refused too, and named.
	write(strings.Replace(base, "http_listen: \"off\"", "http_listen: 127.0.0.1:0", 1))
	hup()
	waitUntil(t, 5*time.Second, "the restart refusal in the log", func() bool { return strings.Contains(n.logs(), "need a restart: http_listen") })
	close(stop)
	wg.Wait()
	t.Logf("%d requests served during three reloads, %d failed", served.Load(), failed.Load())
	if failed.Load() != 0 || served.Load() < 20 {
		t.Fatalf("%d requests failed (of %d) across reloads", failed.Load(), served.Load()+failed.Load())
	}
}

// try is want without the verdict: the status, the body, or the error of
// a request that found no server.
func (b *browser) try(node int, method, path, body string) (int, []byte, error) {
	cl := *b.c.clients[node]
	cl.Jar = b.jar
	req, _ := http.NewRequest(method, "https://localhost"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Keyway-CSRF", "1")
	req.Header.Set("Origin", rp.Origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if b.from != "" {
		req.Header.Set("X-Forwarded-For", b.from)
	}
	res, err := cl.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = res.Body.Close() }()
	out, err := io.ReadAll(res.Body)
	return res.StatusCode, out, err
}

// TestSIGKILLDuringSignUpsAndRevocations kills a keyway process with
// SIGKILL while people sign up and keys are revoked through the admin
// API: after a restart every acknowledged sign-up is an account with its
// passkey, no account is without one, every acknowledged revocation holds,
// and the audit trail verifies.
func TestSIGKILLDuringSignUpsAndRevocations(t *testing.T) {
	bin := keywayBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	cfgFile := writeFile(t, "k.yaml", fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:0
http_listen: "off"
admin_listen: 127.0.0.1:0
demo: true
passkeys: {sign_up: open, rp_id: localhost, origins: ["https://localhost:8443"]}
trusted_proxies: [127.0.0.1/32]
upstreams: {weather: {url: "demo:"}}
routes: [{path: /v1/forecast, upstream: weather, policy: api_key}]
`, data))
	n := startNode(t, bin, nil, "--config", cfgFile)
	pc := &procCluster{pool: localCA(t, data)}
	pc.clients = []*http.Client{pc.client(n.https)}

	// Keys to revoke, and an admin key to revoke them with.
	cli := func(args ...string) (int, string, string) {
		return runCLI(t, append(args, "--config", cfgFile)...)
	}
	code, out, errOut := cli("keys", "create", "--name", "ops", "--owner", "service:ops", "--scope", "keyway:admin", "-o", "json")
	if code != 0 {
		t.Fatalf("admin key: %s", errOut)
	}
	adminKey := out[strings.Index(out, `"key": "`)+8:]
	adminKey = adminKey[:strings.Index(adminKey, `"`)]
	var ids []string
	for i := range 150 {
		code, out, errOut := cli("keys", "create", "--name", fmt.Sprintf("k%d", i), "-o", "json")
		if code != 0 {
			t.Fatalf("key: %s", errOut)
		}
		id := out[strings.Index(out, `"id": "`)+7:]
		ids = append(ids, id[:strings.Index(id, `"`)])
	}

	var mu sync.Mutex
	var signedUp, revoked []string
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := range 4 { // sign-ups
		wg.Go(func() {
			for i := 0; ; i++ {
				jar, _ := cookiejar.New(nil)
				// Each person from an address of their own: the sign-up
				// budget is per source.
				b := &browser{t: t, c: pc, jar: jar, auth: virtualwebauthn.NewAuthenticator(), from: fmt.Sprintf("198.51.%d.%d", w, i%250+1)}
				name := fmt.Sprintf("p%d-%d", w, i)
				code, opts, err := b.try(0, "POST", "/.keyway/auth/passkey/register/begin", `{"username":"`+name+`"}`)
				if err != nil || code != 200 {
					return
				}
				ao, err := virtualwebauthn.ParseAttestationOptions(string(opts))
				if err != nil {
					return
				}
				var o struct {
					PublicKey struct{ User struct{ ID string } }
				}
				_ = json.Unmarshal(opts, &o)
				b.auth.Options.UserHandle, _ = base64.RawURLEncoding.DecodeString(strings.TrimRight(o.PublicKey.User.ID, "="))
				resp := virtualwebauthn.CreateAttestationResponse(rp, b.auth, testenv.NewCredential(), *ao)
				if code, _, err := b.try(0, "POST", "/.keyway/auth/passkey/register/finish", resp); err != nil || code != 201 {
					return
				}
				mu.Lock()
				signedUp = append(signedUp, name)
				mu.Unlock()
			}
		})
	}
	ac := &http.Client{Timeout: 5 * time.Second}
	for range 2 { // revocations
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				req, _ := http.NewRequest("POST", "http://"+n.admin+"/v1/keys/"+ids[i]+"/revoke", nil)
				req.Header.Set("Authorization", "Bearer "+adminKey)
				res, err := ac.Do(req)
				if err != nil {
					return
				}
				_ = res.Body.Close()
				if res.StatusCode == 200 {
					mu.Lock()
					revoked = append(revoked, ids[i])
					mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	// Kill once both kinds of write are under way, however slow the machine.
	waitUntil(t, 20*time.Second, "sign-ups and revocations under way", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(signedUp) >= 3 && len(revoked) >= 3
	})
	n.kill()
	wg.Wait()
	if len(signedUp) == 0 || len(revoked) == 0 || len(revoked) == len(ids) {
		t.Fatalf("the kill came at the wrong time: %d sign-ups and %d of %d revocations acknowledged", len(signedUp), len(revoked), len(ids))
	}
	startNode(t, bin, nil, "--config", cfgFile) // recovers the store on start

	code, out, errOut = cli("users", "list", "-o", "json")
	var users struct {
		Users []struct {
			Username string
			Passkeys int
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &users) != nil {
		t.Fatalf("users list: %d %s", code, errOut)
	}
	stored := map[string]bool{}
	for _, u := range users.Users {
		if u.Passkeys < 1 {
			t.Errorf("account %s has no passkey: half-made", u.Username)
		}
		stored[u.Username] = true
	}
	for _, name := range signedUp {
		if !stored[name] {
			t.Errorf("sign-up %s was acknowledged but is not in the store", name)
		}
	}
	code, out, errOut = cli("keys", "list", "-o", "json")
	var keys struct{ Keys []struct{ ID, Status string } }
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil {
		t.Fatalf("keys list: %d %s", code, errOut)
	}
	status := map[string]string{}
	for _, k := range keys.Keys {
		status[k.ID] = k.Status
	}
	for _, id := range revoked {
		if status[id] != "revoked" {
			t.Errorf("revocation of %s was acknowledged but the key is %q", id, status[id])
		}
	}
	if code, out, _ := cli("audit", "verify", "-o", "json"); code != 0 || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("audit after the kill: %d %s", code, out)
	}
	t.Logf("killed with %d sign-ups and %d of %d revocations acknowledged; %d accounts stored, all with a passkey", len(signedUp), len(revoked), len(ids), len(users.Users))
}
