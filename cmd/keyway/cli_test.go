package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version", "-o", "json")
	var v map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" {
		t.Fatalf("version -o json: code %d, %q", code, out)
	}
	if code, _, _ := runCLI(t, "version", "-o", "yaml"); code != exitUsage {
		t.Fatalf("bad -o accepted: %d", code)
	}
	if code, _, _ := runCLI(t, "frobnicate"); code != exitUsage {
		t.Fatalf("unknown command: %d", code)
	}
}

func TestCheckReportsEveryErrorWithLines(t *testing.T) {
	f := writeFile(t, "bad.yaml", `listen: 127.0.0.1:8443
lisen: x
upstreams:
  api:
    url: "ftp://example.com"
routes:
  - path: /v1
    upstream: api
    policy: public
    timeout: 10x
  - path: v2
    upstream: missing
    policy: open
`)
	code, out, _ := runCLI(t, "check", "--config", f)
	if code != exitError {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`bad\.yaml:2: .*lisen.*did you mean "listen"`),
		regexp.MustCompile(`bad\.yaml:5: .*url`),
		regexp.MustCompile(`bad\.yaml:10: .*10x`),
		regexp.MustCompile(`bad\.yaml:11: .*path`),
		regexp.MustCompile(`bad\.yaml:12: .*missing`),
		regexp.MustCompile(`bad\.yaml:13: .*open`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}

	// The public route without a rate limit is a warning, printed although
	// the file has errors.
	if !regexp.MustCompile(`bad\.yaml:7: warning: public route "/v1" has no rate_limit`).MatchString(out) {
		t.Errorf("the warnings are hidden by the errors:\n%s", out)
	}

	code, out, _ = runCLI(t, "check", "--config", f, "-o", "json")
	type finding struct {
		File, Severity, Code, Path, Message, Hint string
		Line                                      int
	}
	var res struct {
		OK               bool
		Errors, Warnings int
		Findings         []finding
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.OK || code != exitError || res.Errors < 5 || res.Warnings < 1 {
		t.Fatalf("json check: code %d, %+v, %v", code, res, err)
	}
	var sawTypo, sawWarning bool
	for _, f := range res.Findings {
		if f.Severity == "error" && f.Line == 2 && strings.Contains(f.Message, "lisen") && strings.Contains(f.Hint, `"listen"`) {
			sawTypo = true
		}
		if f.Severity == "warning" && f.Code == "public-route-no-rate-limit" && f.Path == "routes[0]" && f.Line == 7 {
			sawWarning = true
		}
	}
	if !sawTypo || !sawWarning {
		t.Fatalf("structured findings lack the typo (%v) or the warning (%v): %s", sawTypo, sawWarning, out)
	}
}

func TestCheckWarningsAndStrict(t *testing.T) {
	f := writeFile(t, "warn.yaml", `upstreams:
  api: {url: "http://api.internal.example:8080"}
routes:
  - {path: /v1, upstream: api, policy: public}
`)
	code, out, _ := runCLI(t, "check", "--config", f)
	if code != 0 || !strings.Contains(out, "warning:") || !strings.Contains(out, "ok") {
		t.Fatalf("check: code %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, "check", "--config", f, "--strict"); code != exitError {
		t.Fatalf("--strict with warnings exited %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "check"); code != exitUsage {
		t.Fatalf("check without --config: %d", code)
	}
}

// TestCheckProduction: --production warns about what makes a stolen disk
// worse, and says nothing once the secrets are elsewhere.
func TestCheckProduction(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	codes := func(env map[string]string, yaml string) map[string]bool {
		t.Helper()
		f := writeFile(t, "prod.yaml", "data_dir: "+data+"\n"+yaml)
		var out, errb bytes.Buffer
		run([]string{"check", "--config", f, "--production", "-o", "json"}, &out, &errb, func(k string) string { return env[k] })
		var res struct {
			Findings []struct{ Code, Severity string }
		}
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("check: %q %q", out.String(), errb.String())
		}
		got := map[string]bool{}
		for _, f := range res.Findings {
			got[f.Code] = true
		}
		return got
	}
	got := codes(nil, "passkeys: {sign_up: open}\naudit: {checkpoint_every: 0s}\n")
	for _, want := range []string{"secret-beside-database", "key-store-beside-database", "data-dir-readable", "open-sign-up", "audit-checkpoints-off"} {
		if !got[want] {
			t.Errorf("--production did not warn %s: %v", want, got)
		}
	}
	if err := os.Chmod(data, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	env := map[string]string{"KEYWAY_PEPPER": secret, "KEYWAY_KEK": secret, "KEYWAY_AUDIT_KEY": secret}
	got = codes(env, "data_protection: {key_store: \"sqlite:"+filepath.Join(t.TempDir(), "keys.db")+"\"}\n")
	for _, quiet := range []string{"secret-beside-database", "key-store-beside-database", "data-dir-readable", "open-sign-up", "audit-checkpoints-off", "key-store-in-database"} {
		if got[quiet] {
			t.Errorf("--production warned %s with the secrets elsewhere: %v", quiet, got)
		}
	}
}

func TestCheckAcceptsSessionPolicy(t *testing.T) {
	f := writeFile(t, "p.yaml", `upstreams:
  api: {url: "http://127.0.0.1:9999"}
routes:
  - {path: /v1/me, upstream: api, policy: session}
`)
	code, out, errOut := runCLI(t, "check", "--config", f)
	if code != exitOK || !strings.Contains(out, "ok (0 warnings)") || strings.Contains(out, "error:") || strings.Contains(out, "not available") {
		t.Fatalf("check: code %d\n%s%s", code, out, errOut)
	}
	// --strict too: a session route needs no rate_limit.
	if code, out, _ := runCLI(t, "check", "--config", f, "--strict"); code != exitOK {
		t.Fatalf("check --strict: code %d\n%s", code, out)
	}
}

func TestCheckAcceptsAPIKeyPolicy(t *testing.T) {
	f := writeFile(t, "k.yaml", `upstreams:
  api: {url: "http://127.0.0.1:9999"}
routes:
  - {path: /v1, upstream: api, policy: api_key, scopes: [a]}
`)
	code, out, errOut := runCLI(t, "check", "--config", f)
	if code != exitOK || !strings.Contains(out, "ok (0 warnings)") || strings.Contains(out, "error:") {
		t.Fatalf("check: code %d\n%s%s", code, out, errOut)
	}
	// --strict too: an api_key route needs no rate_limit.
	if code, out, _ := runCLI(t, "check", "--config", f, "--strict"); code != exitOK {
		t.Fatalf("check --strict: code %d\n%s", code, out)
	}
}

// TestServeBinarySIGTERM builds the real binary, runs `keyway serve` on a
// config, and sends SIGTERM while a request waits on a slow upstream: the
// request must complete and the process exit 0.
func TestServeBinarySIGTERM(t *testing.T) {
	bin := keywayBinary(t)

	slow := make(chan struct{})
	up := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(slow)
		time.Sleep(800 * time.Millisecond)
		_, _ = io.WriteString(w, "slow answer")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = up.Serve(ln) }()
	defer func() { _ = up.Close() }()

	dir := t.TempDir()
	cfg := writeFile(t, "k.yaml", fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:0
http_listen: "off"
admin_listen: 127.0.0.1:0
upstreams: {up: {url: "http://%s"}}
routes: [{path: /slow, upstream: up, policy: public}]
`, filepath.Join(dir, "data"), ln.Addr()))
	cmd := exec.Command(bin, "serve", "--config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	// Find the HTTPS address in the "listening" log line.
	addrc := make(chan string, 1)
	logs := &bytes.Buffer{}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			var l struct{ Msg, Listener, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" && l.Listener == "https" {
				addrc <- l.Addr
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatal("keyway did not start listening")
	}

	pool := localCA(t, filepath.Join(dir, "data"))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
	}}
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+addr+"/slow", nil)
		res, err := client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer func() { _ = res.Body.Close() }()
		b, err := io.ReadAll(res.Body)
		done <- result{string(b), err}
	}()
	<-slow // the request is at the upstream now
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.body != "slow answer" {
		t.Fatalf("in-flight request during SIGTERM: %q, %v", r.body, r.err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("keyway exited with %v\n%s", err, logs)
	}
}

// TestServeFailsCleanly: a server that cannot start (its port taken) says
// why and exits 1, having released what it built (it once panicked).
func TestServeFailsCleanly(t *testing.T) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	dir := filepath.Join(t.TempDir(), "data")
	code, _, errOut := runCLI(t, "serve", "--data-dir", dir, "--listen", ln.Addr().String(), "--http-listen", "off", "--admin-listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, ln.Addr().String()) {
		t.Fatalf("serve on a taken port: exit %d, %q", code, errOut)
	}
}
