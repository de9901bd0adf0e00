package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/app/apptest"
	"github.com/keywayhq/keyway/internal/testenv"
)

// startNode runs `keyway serve` as its own process and returns its HTTPS
// address, read from its "listening" log line.
func startNode(t *testing.T, bin string, env []string, args ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	apptest.Must(t, err, "stderr")
	apptest.Must(t, cmd.Start(), "start")
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var l struct{ Msg, Listener, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" && l.Listener == "https" {
				addrc <- l.Addr
			}
		}
	}()
	select {
	case addr := <-addrc:
		return addr, cmd
	case <-time.After(30 * time.Second):
		t.Fatal("a node did not start listening")
		return "", nil
	}
}

// TestClusterOfProcessesSurvivesSIGKILL runs two `keyway serve` processes
// on one PostgreSQL store and one Redis, and `keyway keys create`
// processes beside them, some killed with SIGKILL mid-write. Every key a
// command acknowledged is in the store, none is half-made (each key has
// its audit event, the trail verifies), and when a node is killed under
// load the other keeps serving, and the node restarts into the cluster.
func TestClusterOfProcessesSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dsn := testenv.PostgresDSN(t)
	redisAddr, _ := testenv.RedisAddr(t)
	bin := filepath.Join(t.TempDir(), "keyway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	pepper := make([]byte, 32)
	for i := range pepper {
		pepper[i] = byte(i * 7)
	}
	env := []string{"KEYWAY_PEPPER=" + base64.StdEncoding.EncodeToString(pepper), "KEYWAY_STORE_DSN=" + dsn,
		"KEYWAY_REDIS_ADDR=" + redisAddr}
	cfg := writeFile(t, "k.yaml", fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:0
http_listen: "off"
admin_listen: 127.0.0.1:0
demo: true
upstreams: {weather: {url: "demo:"}}
routes: [{path: /v1/forecast, upstream: weather, policy: api_key}]
`, filepath.Join(dir, "data")))
	addrA, nodeA := startNode(t, bin, env, "--config", cfg)
	addrB, _ := startNode(t, bin, env, "--config", cfg)

	auditEvents := func() (bool, int, string) {
		code, out, _ := runCLI(t, "audit", "verify", "--store", dsn, "--data-dir", filepath.Join(dir, "data"), "-o", "json")
		var trail struct {
			OK     bool
			Events int
		}
		if code != 0 || json.Unmarshal([]byte(out), &trail) != nil {
			return false, 0, out
		}
		return trail.OK, trail.Events, out
	}
	_, before, _ := auditEvents() // the nodes' setup links

	// Key creations in processes of their own, one in three killed.
	var acked sync.Map
	var wg sync.WaitGroup
	var killed atomic.Int64
	for i := range 24 {
		wg.Go(func() {
			cmd := exec.Command(bin, "keys", "create", "--config", cfg, "--name", fmt.Sprintf("k%d", i), "-o", "json")
			cmd.Env = append(os.Environ(), env...)
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
			var k struct{ ID, Key string }
			if json.Unmarshal([]byte(out.String()), &k) == nil && k.ID != "" {
				acked.Store(k.ID, k.Key)
			}
		})
	}
	wg.Wait()
	code, out, errOut := runCLI(t, "keys", "list", "--store", dsn, "--data-dir", filepath.Join(dir, "data"), "-o", "json")
	var list struct{ Keys []struct{ ID string } }
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("keys list: %d %s", code, errOut)
	}
	stored := map[string]bool{}
	for _, k := range list.Keys {
		stored[k.ID] = true
	}
	n := 0
	var aKey string
	acked.Range(func(id, key any) bool {
		n++
		aKey = key.(string)
		if !stored[id.(string)] {
			t.Errorf("key %s was acknowledged but is not in the store", id)
		}
		return true
	})
	ok, events, raw := auditEvents()
	if !ok || events-before != len(list.Keys) {
		t.Fatalf("after killed writers: %d keys stored, %d audit events before, audit now %s (every key must have its one event)", len(list.Keys), before, raw)
	}
	t.Logf("%d creations, %d killed, %d acknowledged, %d stored, %d key audit events", 24, killed.Load(), n, len(list.Keys), events-before)

	// A node killed under load; the other keeps serving.
	pem, err := os.ReadFile(filepath.Join(dir, "data", "ca.pem"))
	apptest.Must(t, err, "ca")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := func(addr string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}}
	}
	call := func(c *http.Client) int {
		req, _ := http.NewRequest(http.MethodGet, "https://localhost/v1/forecast?city=Paris", nil)
		req.Header.Set("Authorization", "Bearer "+aKey)
		res, err := c.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	ca, cb := client(addrA), client(addrB)
	if call(ca) != 200 || call(cb) != 200 {
		t.Fatal("an acknowledged key before the kill")
	}
	_ = nodeA.Process.Signal(syscall.SIGKILL)
	_ = nodeA.Wait()
	for range 50 {
		if got := call(cb); got != 200 {
			t.Fatalf("node B after node A was killed: %d", got)
		}
	}
	addrA2, _ := startNode(t, bin, env, "--config", cfg)
	if got := call(client(addrA2)); got != 200 {
		t.Fatalf("node A restarted: %d", got)
	}
}
