package main

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// node is one `keyway serve` process.
type node struct {
	cmd   *exec.Cmd
	https string // its HTTPS listener
	admin string // its admin listener
	// logs returns what it has written to stderr so far.
	logs func() string
}

// startNode runs `keyway serve` as its own process and reads its
// listeners' addresses from its "listening" log lines.
func startNode(t *testing.T, bin string, env []string, args ...string) *node {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	apptest.Must(t, err, "stderr")
	apptest.Must(t, cmd.Start(), "start")
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan *node, 1)
	var mu sync.Mutex
	var logs []string
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		n := &node{cmd: cmd, logs: func() string {
			mu.Lock()
			defer mu.Unlock()
			return strings.Join(logs, "\n")
		}}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs = append(logs, sc.Text())
			mu.Unlock()
			var l struct{ Msg, Listener, Addr string }
			if n == nil || json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "listening" {
				continue
			}
			switch l.Listener {
			case "https":
				n.https = l.Addr
			case "admin":
				n.admin = l.Addr
			}
			if n.https != "" && n.admin != "" {
				ready <- n
				n = nil
			}
		}
	}()
	select {
	case n := <-ready:
		return n
	case <-gone:
		select {
		case n := <-ready:
			return n
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("a node exited before listening; it said:\n%s", strings.Join(logs, "\n"))
		return nil
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("a node did not start listening; it said:\n%s", strings.Join(logs, "\n"))
		return nil
	}
}

// kill ends the node with SIGKILL: no shutdown, no flush.
func (n *node) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
}

// procCluster is three keyway processes on a PostgreSQL and a Redis of the
// test's own, which it may kill and restart.
type procCluster struct {
	t       *testing.T
	bin     string
	env     []string
	cfg     string
	data    string
	dsn     string
	pg      *testenv.Server
	redis   *testenv.Server
	nodes   []*node
	clients []*http.Client
	pool    *x509.CertPool
}

const clusterConfig = `data_dir: %s
listen: 127.0.0.1:0
http_listen: "off"
admin_listen: 127.0.0.1:0
demo: true
passkeys: {sign_up: open, rp_id: localhost, origins: ["https://localhost:8443"]}
upstreams: {weather: {url: "demo:"}}
routes:
  - {path: /v1/forecast, upstream: weather, policy: api_key}
  - {path: /v1/me, upstream: weather, policy: session}
`

func newProcCluster(t *testing.T, n int) *procCluster {
	t.Helper()
	bin := keywayBinary(t)
	pg, dsn := testenv.PrivatePostgres(t)
	rd := testenv.PrivateRedis(t)
	c := &procCluster{t: t, dsn: dsn, pg: pg, redis: rd, bin: bin}
	c.data = filepath.Join(t.TempDir(), "data")
	pepper := make([]byte, 32)
	for i := range pepper {
		pepper[i] = byte(i * 7)
	}
	c.env = []string{"KEYWAY_PEPPER=" + base64.StdEncoding.EncodeToString(pepper), "KEYWAY_STORE_DSN=" + dsn,
		"KEYWAY_REDIS_ADDR=" + rd.Addr()}
	c.cfg = writeFile(t, "k.yaml", fmt.Sprintf(clusterConfig, c.data))
	for range n {
		c.nodes = append(c.nodes, startNode(t, c.bin, c.env, "--config", c.cfg))
	}
	c.pool = localCA(t, c.data)
	for _, nd := range c.nodes {
		c.clients = append(c.clients, c.client(nd.https))
	}
	return c
}

// client talks to addr as https://localhost, as through a load balancer.
func (c *procCluster) client(addr string) *http.Client { return clientTo(c.pool, addr) }

// cli runs a keyway command as its own process beside the nodes.
func (c *procCluster) cli(args ...string) (int, string, string) {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
	}
	return code, out.String(), errb.String()
}

// newKey makes a key with `keyway keys create` and returns its ID and secret.
func (c *procCluster) newKey(args ...string) (string, string) {
	c.t.Helper()
	code, out, errOut := c.cli(append([]string{"keys", "create", "--config", c.cfg, "-o", "json"}, args...)...)
	var k struct{ ID, Key string }
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil {
		c.t.Fatalf("keys create: %d %s %s", code, out, errOut)
	}
	return k.ID, k.Key
}

// call sends one keyed request to node i and returns its status (0 when
// the request failed).
func (c *procCluster) call(i int, key string) int {
	req, _ := http.NewRequest(http.MethodGet, "https://localhost/v1/forecast?city=Paris", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := c.clients[i].Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

// load sends requests with key to the nodes (default: every one) from
// workers per node until stop is closed, and counts the answers by status.
func (c *procCluster) load(key string, workers int, stop <-chan struct{}, nodes ...int) func() map[int]int {
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	if nodes == nil {
		for i := range c.nodes {
			nodes = append(nodes, i)
		}
	}
	for _, i := range nodes {
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := c.call(i, key)
					mu.Lock()
					got[s]++
					mu.Unlock()
				}
			})
		}
	}
	return func() map[int]int { wg.Wait(); return got }
}

func (c *procCluster) ready(i int) int {
	res, err := c.clients[i].Get("https://localhost/.keyway/readyz")
	if err != nil {
		return 0
	}
	_ = res.Body.Close()
	return res.StatusCode
}

func (c *procCluster) audit() (ok bool, events int, raw string) {
	code, out, _ := c.cli("audit", "verify", "--config", c.cfg, "-o", "json")
	var trail struct {
		OK     bool
		Events int
	}
	if code != 0 || json.Unmarshal([]byte(out), &trail) != nil {
		return false, 0, out
	}
	return trail.OK, trail.Events, out
}

func (c *procCluster) keyIDs() map[string]bool {
	c.t.Helper()
	code, out, errOut := c.cli("keys", "list", "--config", c.cfg, "-o", "json")
	var list struct{ Keys []struct{ ID string } }
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		c.t.Fatalf("keys list: %d %s", code, errOut)
	}
	ids := map[string]bool{}
	for _, k := range list.Keys {
		ids[k.ID] = true
	}
	return ids
}

func waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// TestClusterOfProcesses runs three `keyway serve` processes on a
// PostgreSQL and a Redis of the test's own, as a load balancer would use
// them: a ceremony and a session cross the nodes, a revocation made with
// the CLI reaches every node (timed), one key's limit holds under load
// from all three, Redis and PostgreSQL are killed and restarted under load,
// and writers (CLI processes and a node) are killed with SIGKILL mid-write
// without losing or half-making anything they acknowledged.
func TestClusterOfProcesses(t *testing.T) {
	c := newProcCluster(t, 3)

	t.Run("a ceremony and a session cross the nodes", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		b := &browser{t: t, c: c, jar: jar, auth: virtualwebauthn.NewAuthenticator()}
		opts := b.want(0, 200, "POST", "/.keyway/auth/passkey/register/begin", `{"username":"ada"}`)
		b.finishRegistration(1, opts)
		b.want(2, 200, "GET", "/.keyway/auth/session", "")
		b.want(0, 204, "POST", "/.keyway/auth/logout", "")
		b.want(1, 401, "GET", "/.keyway/auth/session", "")
		opts = b.want(1, 200, "POST", "/.keyway/auth/passkey/login/begin", `{}`)
		b.finishLogin(2, opts)
		for i := range c.nodes {
			b.want(i, 200, "GET", "/v1/me", "")
		}
		b.want(2, 200, "POST", "/.keyway/auth/sessions/revoke-others", "")
		b.want(0, 204, "POST", "/.keyway/auth/logout", "")
		for i := range c.nodes {
			b.want(i, 401, "GET", "/.keyway/auth/session", "")
		}
	})

	t.Run("a key revoked with the CLI is refused by every node within 1 s", func(t *testing.T) {
		var took []time.Duration
		for range 10 {
			id, key := c.newKey("--name", "doomed")
			waitUntil(t, 5*time.Second, "a new key on every node", func() bool {
				return c.call(0, key) == 200 && c.call(1, key) == 200 && c.call(2, key) == 200
			})
			code, _, errOut := c.cli("keys", "revoke", "--config", c.cfg, id)
			if code != 0 {
				t.Fatalf("keys revoke: %d %s", code, errOut)
			}
			done := time.Now() // the command acknowledged the revocation
			var wg sync.WaitGroup
			var mu sync.Mutex
			slowest := time.Duration(0)
			for i := range c.nodes {
				wg.Go(func() {
					for c.call(i, key) != 401 {
						if time.Since(done) > 5*time.Second {
							t.Errorf("node %d still takes a key revoked 5 s ago", i)
							return
						}
						time.Sleep(2 * time.Millisecond)
					}
					mu.Lock()
					slowest = max(slowest, time.Since(done))
					mu.Unlock()
				})
			}
			wg.Wait()
			took = append(took, slowest)
		}
		slices.Sort(took)
		p50, p99 := took[len(took)/2], took[len(took)-1]
		t.Logf("revocation by a CLI process to the last of 3 nodes, %d revocations: p50 %v, max %v", len(took), p50, p99)
		if p99 > time.Second {
			t.Fatalf("a revocation took %v to reach every node, want under 1 s", p99)
		}
	})

	// A key allowed 40/s with a burst of 10, loaded from every node.
	const rate, burst = 40.0, 10.0
	bound := func(d time.Duration) float64 { return rate*d.Seconds()*1.02 + burst + 3 }
	limited := func() string {
		_, key := c.newKey("--name", "limited", "--rate", "40/s", "--burst", "10")
		waitUntil(t, 5*time.Second, "a new key on every node", func() bool { return c.call(0, key) == 200 })
		return key
	}

	t.Run("one key's limit holds under load from three nodes", func(t *testing.T) {
		key := limited()
		stop := make(chan struct{})
		start := time.Now()
		wait := c.load(key, 4, stop)
		time.Sleep(3 * time.Second)
		close(stop)
		got := wait()
		elapsed := time.Since(start)
		t.Logf("3 nodes × 4 workers for %v on a key allowed 40/s (burst 10): %v", elapsed.Round(time.Millisecond), got)
		if float64(got[200]) > bound(elapsed) || float64(got[200]) < rate*elapsed.Seconds()*0.8 || got[0]+got[503] != 0 {
			t.Fatalf("allowed %d in %v, want at most %.0f (limit × 1.02 + burst), most of it used, and no failures: %v", got[200], elapsed, bound(elapsed), got)
		}
	})

	t.Run("Redis killed and restarted under load", func(t *testing.T) {
		key := limited()
		stop := make(chan struct{})
		start := time.Now()
		wait := c.load(key, 2, stop)
		time.Sleep(500 * time.Millisecond)
		c.redis.Kill()
		time.Sleep(2 * time.Second)
		c.redis.Start()
		time.Sleep(2 * time.Second)
		close(stop)
		got := wait()
		elapsed := time.Since(start)
		t.Logf("Redis killed for 2 s in a %v load from 3 nodes: %v", elapsed.Round(time.Millisecond), got)
		// Never unlimited: each node takes a third of the limit while
		// Redis is away, and a restarted Redis starts from full buckets
		// (one more burst).
		if got[0]+got[503] != 0 || float64(got[200]) > bound(elapsed)+burst {
			t.Fatalf("with Redis killed and restarted: %v, want no failures and at most %.0f allowed", got, bound(elapsed)+burst)
		}
		waitUntil(t, 5*time.Second, "every node sharing limits again", func() bool {
			for _, nd := range c.nodes {
				res, err := http.Get("http://" + nd.admin + "/metrics")
				if err != nil {
					return false
				}
				b, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				if !bytes.Contains(b, []byte("\nkeyway_redis_up 1\n")) {
					return false
				}
			}
			return true
		})
	})

	t.Run("PostgreSQL killed and restarted under load", func(t *testing.T) {
		id, key := c.newKey("--name", "cached")
		time.Sleep(300 * time.Millisecond) // the news of the creation settles
		for i := range c.nodes {
			c.call(i, key)
			if got := c.call(i, key); got != 200 {
				t.Fatalf("node %d before the outage: %d", i, got)
			}
		}
		stop := make(chan struct{})
		wait := c.load(key, 2, stop)
		c.pg.Kill()
		killed := time.Now()
		// Writes fail at once, with a clear error; reads of cached keys go on.
		if code, _, errOut := c.cli("keys", "create", "--config", c.cfg, "--name", "while-down"); code == 0 || errOut == "" {
			t.Fatalf("keys create with PostgreSQL down: %d %q, want a failure that says why", code, errOut)
		}
		waitUntil(t, 3*time.Second, "readyz saying not ready", func() bool { return c.ready(1) == 503 })
		// A sign-in fails fast, with 503.
		jar, _ := cookiejar.New(nil)
		b := &browser{t: t, c: c, jar: jar, auth: virtualwebauthn.NewAuthenticator()}
		began := time.Now()
		b.want(2, 503, "POST", "/.keyway/auth/passkey/login/begin", `{}`)
		if took := time.Since(began); took > 2*time.Second {
			t.Fatalf("a sign-in with PostgreSQL down took %v to fail, want fast", took)
		}
		time.Sleep(time.Until(killed.Add(2 * time.Second)))
		close(stop)
		got := wait()
		t.Logf("PostgreSQL killed, a cached key's load for 2 s: %v", got)
		if got[200] == 0 || got[0]+got[401]+got[429]+got[503] != 0 {
			t.Fatalf("a cached key within its staleness bound with PostgreSQL down: %v, want only 200", got)
		}
		c.pg.Start()
		waitUntil(t, 15*time.Second, "every node ready again", func() bool {
			return c.ready(0) == 200 && c.ready(1) == 200 && c.ready(2) == 200
		})
		newID, newKey := c.newKey("--name", "after")
		waitUntil(t, 5*time.Second, "a key made after the outage on every node", func() bool {
			return c.call(0, newKey) == 200 && c.call(1, newKey) == 200 && c.call(2, newKey) == 200
		})
		if ids := c.keyIDs(); !ids[id] || !ids[newID] {
			t.Fatal("a key acknowledged before or after the outage is missing")
		}
		if ok, _, raw := c.audit(); !ok {
			t.Fatalf("audit trail after the outage: %s", raw)
		}
	})

	t.Run("writers killed with SIGKILL lose nothing they acknowledged", func(t *testing.T) {
		_, before, _ := c.audit()
		keysBefore := len(c.keyIDs())
		var acked sync.Map
		var wg sync.WaitGroup
		var killed atomic.Int64
		// Key creations in CLI processes of their own, one in three killed.
		for i := range 24 {
			wg.Go(func() {
				cmd := exec.Command(c.bin, "keys", "create", "--config", c.cfg, "--name", fmt.Sprintf("k%d", i), "-o", "json")
				cmd.Env = append(os.Environ(), c.env...)
				var out strings.Builder
				cmd.Stdout = &out
				if err := cmd.Start(); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					time.Sleep(time.Duration(i) * 3 * time.Millisecond)
					_ = cmd.Process.Signal(syscall.SIGKILL)
					killed.Add(1)
				}
				if cmd.Wait() != nil {
					return
				}
				var k struct{ ID string }
				if json.Unmarshal([]byte(out.String()), &k) == nil && k.ID != "" {
					acked.Store(k.ID, true)
				}
			})
		}
		// And through the admin API of node 0, killed mid-stream.
		_, admin := c.newKey("--name", "ops", "--owner", "service:ops", "--scope", "keyway:admin", "--expires", "1h")
		ac := &http.Client{Timeout: 5 * time.Second}
		var apiAcked atomic.Int64
		for w := range 4 {
			wg.Go(func() {
				for j := 0; ; j++ {
					body := fmt.Sprintf(`{"name":"api-%d-%d","owner":"service:load"}`, w, j)
					req, _ := http.NewRequest(http.MethodPost, "http://"+c.nodes[0].admin+"/v1/keys", strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+admin)
					req.Header.Set("Content-Type", "application/json")
					res, err := ac.Do(req)
					if err != nil {
						return // the node is gone
					}
					var k struct{ ID string }
					err = json.NewDecoder(res.Body).Decode(&k)
					_ = res.Body.Close()
					if res.StatusCode == 201 && err == nil && k.ID != "" {
						acked.Store(k.ID, true)
						apiAcked.Add(1)
					}
				}
			})
		}
		// Kill once the admin API is writing, however slow the machine.
		waitUntil(t, 20*time.Second, "admin API writes under way", func() bool { return apiAcked.Load() >= 5 })
		c.nodes[0].kill()
		wg.Wait()

		ids := c.keyIDs()
		n := 0
		acked.Range(func(id, _ any) bool {
			n++
			if !ids[id.(string)] {
				t.Errorf("key %s was acknowledged but is not in the store", id)
			}
			return true
		})
		ok, events, raw := c.audit()
		made := len(ids) - keysBefore
		// Every key made has exactly its one creation event (the admin
		// key included), and the trail verifies.
		if !ok || events-before != made {
			t.Fatalf("after killed writers: %d keys made, %d audit events added, trail %s", made, events-before, raw)
		}
		t.Logf("24 CLI creations (%d killed) and %d through node 0's admin API until it was killed: %d acknowledged, %d stored, %d audit events",
			killed.Load(), apiAcked.Load(), n, made, events-before)
		if apiAcked.Load() == 0 {
			t.Fatal("the admin API acknowledged nothing before the kill: the kill proved nothing")
		}
	})

	t.Run("a node killed under load; the others serve; it rejoins", func(t *testing.T) {
		_, key := c.newKey("--name", "steady")
		waitUntil(t, 5*time.Second, "a new key on the live nodes", func() bool { return c.call(1, key) == 200 && c.call(2, key) == 200 })
		stop := make(chan struct{})
		wait := c.load(key, 1, stop, 1, 2)
		time.Sleep(200 * time.Millisecond)
		c.nodes[1].kill()
		time.Sleep(300 * time.Millisecond)
		close(stop)
		got := wait()
		if got[200] == 0 {
			t.Fatalf("nothing served while a node was killed: %v", got)
		}
		for range 20 {
			if s := c.call(2, key); s != 200 {
				t.Fatalf("node 2 after node 1 was killed: %d", s)
			}
		}
		back := startNode(t, c.bin, c.env, "--config", c.cfg)
		if s := (&procCluster{clients: []*http.Client{c.client(back.https)}}).call(0, key); s != 200 {
			t.Fatalf("a killed node restarted: %d", s)
		}
	})
}

// browser is a person's browser for the cross-node test: one cookie jar
// and one virtual authenticator, whatever node the next request reaches.
type browser struct {
	t     *testing.T
	c     *procCluster
	jar   *cookiejar.Jar
	auth  virtualwebauthn.Authenticator
	creds []virtualwebauthn.Credential
	// from, when set, is the client address a trusted proxy vouches for
	// (X-Forwarded-For), so that many people can come from one test.
	from string
}

var rp = virtualwebauthn.RelyingParty{Name: "keyway", ID: "localhost", Origin: "https://localhost:8443"}

func (b *browser) want(node, status int, method, path, body string) []byte {
	b.t.Helper()
	cl := *b.c.clients[node]
	cl.Jar = b.jar
	req, _ := http.NewRequest(method, "https://localhost"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Keyway-CSRF", "1")
	req.Header.Set("Origin", rp.Origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := cl.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s on node %d: %v", method, path, node, err)
	}
	defer func() { _ = res.Body.Close() }()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		b.t.Fatalf("%s %s on node %d: %d, want %d: %s", method, path, node, res.StatusCode, status, out)
	}
	return out
}

func (b *browser) finishRegistration(node int, opts []byte) {
	b.t.Helper()
	ao, err := virtualwebauthn.ParseAttestationOptions(string(opts))
	apptest.Must(b.t, err, "attestation options")
	var o struct {
		PublicKey struct{ User struct{ ID string } }
	}
	_ = json.Unmarshal(opts, &o)
	b.auth.Options.UserHandle, _ = base64.RawURLEncoding.DecodeString(strings.TrimRight(o.PublicKey.User.ID, "="))
	cred := testenv.NewCredential()
	b.creds = append(b.creds, cred)
	resp := virtualwebauthn.CreateAttestationResponse(rp, b.auth, cred, *ao)
	b.want(node, 201, "POST", "/.keyway/auth/passkey/register/finish", resp)
}

func (b *browser) finishLogin(node int, opts []byte) {
	b.t.Helper()
	ao, err := virtualwebauthn.ParseAssertionOptions(string(opts))
	apptest.Must(b.t, err, "assertion options")
	b.creds[0].Counter++
	resp := virtualwebauthn.CreateAssertionResponse(rp, b.auth, b.creds[0], *ao)
	b.want(node, 200, "POST", "/.keyway/auth/passkey/login/finish", resp)
}
