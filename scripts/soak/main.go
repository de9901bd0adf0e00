// Command soak runs keyway under a steady mixed load and shows whether its
// memory, goroutines and file descriptors stay flat. It builds the binary,
// starts it on a fresh data directory (embedded SQLite) in front of an
// upstream of its own, and drives, from a few workers, a fixed mix of:
// proxied requests with a key, public requests, refused keys, keys made,
// used and revoked through the admin API, keys killed by a leak report, and
// people signing in with a passkey, using their session and signing out
// (500 of them, signed up at the start, and one new person in twenty
// visits, each from an address of their own), at a steady rate (-rate).
//
// Every -every it samples the keyway process: resident memory and open
// descriptors from /proc, goroutines and the heap goal (the size at which
// the next collection starts: about twice the heap live after the last
// one, and steadier than the heap in use, which swings between
// collections) from its /metrics. After the
// warm-up (the first fifth of the run, at least two minutes: in-process
// limiters forget a full bucket after a minute, key counters after a
// minute and a half, so until then they only fill) the median of the
// last third of the samples is compared with the median of the first
// third: a growth above -max-growth percent fails the run (for goroutines
// and descriptors, only if it is also more than three per worker: each
// request in flight holds a connection and a goroutine or two), as does
// any answer the mix did not expect.
// It prints one line per sample and a summary, and draws the samples as an
// SVG.
//
//	go run ./scripts/soak                          # 10 minutes, draws docs/soak.svg
//	go run ./scripts/soak -d 5m -warmup 2m30s -every 5s -svg /tmp/soak.svg  # what CI runs
//
// Everything binds to 127.0.0.1; the keyway process is stopped on exit.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/testenv"
)

func main() {
	duration := flag.Duration("d", 10*time.Minute, "how long the load runs")
	every := flag.Duration("every", 10*time.Second, "how often the process is sampled")
	workers := flag.Int("workers", 6, "concurrent load workers")
	rate := flag.Float64("rate", 600, "operations a second, shared by the workers (0: as fast as they go)")
	maxGrowth := flag.Float64("max-growth", 5, "largest growth after warm-up, in percent")
	svg := flag.String("svg", "docs/soak.svg", "where the plot is written (\"\" for none)")
	warmup = flag.Duration("warmup", 0, "how long before growth counts (default: a fifth of -d, at least 2m)")
	flag.Parse()
	if err := run(*duration, *every, *workers, *rate, *maxGrowth, *svg); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// warmup is -warmup.
var warmup *time.Duration

// sample is the keyway process at one moment.
type sample struct {
	at         time.Duration
	rss, heap  float64 // MiB; heap is the heap goal
	goroutines float64
	fds        float64
	ops        int64 // operations done since the start
}

func run(duration, every time.Duration, workers int, rate, maxGrowth float64, svgPath string) error {
	if duration < 6*every {
		return fmt.Errorf("-d %s is too short for samples every %s", duration, every)
	}
	dir, err := os.MkdirTemp("", "keyway-soak-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	bin := filepath.Join(dir, "keyway")
	fmt.Println("soak: building keyway")
	if out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, "./cmd/keyway").CombinedOutput(); err != nil { //nolint:gosec // G204: our own temporary path
		return fmt.Errorf("go build: %w\n%s", err, out)
	}

	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer func() { _ = up.Close() }()

	port, err := freePort()
	if err != nil {
		return err
	}
	adminPort, err := freePort()
	if err != nil {
		return err
	}
	data := filepath.Join(dir, "data")
	cfgFile := filepath.Join(dir, "keyway.yaml")
	yaml := fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:%d
http_listen: "off"
admin_listen: 127.0.0.1:%d
trusted_proxies: [127.0.0.1/32]
log: {level: warn}
passkeys: {sign_up: open, rp_id: localhost, origins: ["%s"]}
api_keys: {leak_report: {enabled: true, rate_limit: 1000000/min}}
upstreams: {up: {url: "http://%s"}}
routes:
  - {name: api, path: /api, upstream: up, policy: api_key, rate_limit: {rate: 1000000/s}}
  - {name: pub, path: /pub, upstream: up, policy: public, rate_limit: {rate: 1000000/s}}
  - {name: app, path: /app, upstream: up, policy: session, methods: [GET, POST]}
`, data, port, adminPort, rp.Origin, up.Addr())
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return err
	}

	logFile, err := os.Create(filepath.Join(dir, "keyway.log")) //nolint:gosec // G304: in the soak's own temporary directory
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.CommandContext(context.Background(), bin, "serve", "--config", cfgFile) //nolint:gosec // G204: the binary just built
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		return cmd.Wait()
	}
	defer func() { _ = stop() }()
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)

	l := &load{
		base:  fmt.Sprintf("https://localhost:%d", port),
		admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		errs:  map[string]int{},
	}
	if err := l.connect(data, port); err != nil {
		return err
	}
	if err := l.waitReady(30 * time.Second); err != nil {
		return fmt.Errorf("%w (log: %s)", err, tail(logFile.Name()))
	}
	// As `keyway keys create` would, beside the running server.
	if l.adminKey, l.hotKey, err = makeKeys(cfg); err != nil {
		return err
	}

	fmt.Printf("soak: %s of mixed load from %d workers at up to %.0f operations a second, sampled every %s\n",
		duration, workers, rate, every)
	fmt.Printf("%8s %10s %10s %11s %6s %10s\n", "t", "rss MiB", "heap goal", "goroutines", "fds", "ops/s")
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	// A steady rate: what fills with the load (limiter buckets, usage
	// counters, cached keys, all kept for a minute or so after use) then
	// holds one level, and a machine that speeds up in the measured part
	// does not read as growth. A tick missed by busy workers is dropped.
	var pace <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		pace = t.C
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { l.work(ctx, w, pace) })
	}
	start := time.Now()
	var samples []sample
	tick := time.NewTicker(every)
	defer tick.Stop()
	prevOps := int64(0)
sampling:
	for {
		select {
		case <-ctx.Done():
			break sampling
		case <-interrupted:
			cancel()
			break sampling
		case <-tick.C:
			s, err := l.sample(cmd.Process.Pid)
			if err != nil {
				cancel()
				wg.Wait()
				return fmt.Errorf("sample: %w (log: %s)", err, tail(logFile.Name()))
			}
			s.at = time.Since(start).Round(time.Second)
			samples = append(samples, s)
			fmt.Printf("%8s %10.1f %10.1f %11.0f %6.0f %10.0f\n", s.at, s.rss, s.heap, s.goroutines, s.fds,
				float64(s.ops-prevOps)/every.Seconds())
			prevOps = s.ops
		}
	}
	wg.Wait()
	if err := stop(); err != nil {
		return fmt.Errorf("keyway did not stop cleanly: %w (log: %s)", err, tail(logFile.Name()))
	}

	warm := *warmup
	if warm == 0 {
		warm = max(duration/5, 2*time.Minute)
	}
	var after []sample
	for _, s := range samples {
		if s.at >= warm {
			after = append(after, s)
		}
	}
	if len(after) < 6 {
		return fmt.Errorf("only %d samples after the %s warm-up: run longer or sample more often", len(after), warm)
	}
	ops := l.ops.Load()
	fmt.Printf("\n%d operations in %s (%.0f/s); by kind: %s\n", ops, duration, float64(ops)/duration.Seconds(), l.kinds())
	third := len(after) / 3
	fmt.Printf("after the %s warm-up (%d samples), median of the last %d against the first %d:\n", warm, len(after), third, third)
	failed := false
	for _, m := range metrics {
		j := judge(after, m.get, maxGrowth, m.count, workers)
		if j.grew {
			failed = true
		}
		fmt.Printf("  %-13s %10.1f → %10.1f  %+6.1f%%  %s\n", m.name, j.first, j.last, j.growth, j.verdict)
	}
	if svgPath != "" {
		if err := os.WriteFile(svgPath, plot(samples, warm, duration), 0o644); err != nil { //nolint:gosec // a picture for the docs
			return err
		}
		fmt.Println("plot:", svgPath)
	}
	if n := l.errorCount(); n > 0 {
		return fmt.Errorf("%d unexpected answers: %s", n, l.errorSummary())
	}
	if failed {
		return fmt.Errorf("growth above %.0f%% after warm-up", maxGrowth)
	}
	fmt.Println("soak: flat, no unexpected answer")
	return nil
}

var metrics = []struct {
	name  string
	get   func(sample) float64
	count bool
}{
	{"rss MiB", func(s sample) float64 { return s.rss }, false},
	{"heap goal MiB", func(s sample) float64 { return s.heap }, false},
	{"goroutines", func(s sample) float64 { return s.goroutines }, true},
	{"fds", func(s sample) float64 { return s.fds }, true},
}

// judgement is what the soak says of one metric after the warm-up.
type judgement struct {
	first, last, growth float64 // medians of the first and last thirds; growth in %
	verdict             string
	grew                bool
}

// judge compares the last third of the samples with the first. Growth
// above maxGrowth counts only while it goes on: a leak grows through the
// last third too (by about half its growth from the first third, if
// steady), where something that fills after the warm-up on a slow
// machine has levelled off. A count (goroutines, descriptors) must also
// have grown by more than three per worker.
func judge(after []sample, get func(sample) float64, maxGrowth float64, count bool, workers int) judgement {
	third := len(after) / 3
	j := judgement{first: median(after[:third], get), last: median(after[len(after)-third:], get), verdict: "flat"}
	middle := median(after[third:len(after)-third], get)
	j.growth = 100 * (j.last - j.first) / j.first
	still := 100 * (j.last - middle) / middle
	switch {
	case j.growth <= maxGrowth || (count && j.last-j.first <= float64(3*workers)):
	case still <= maxGrowth/2:
		j.verdict = fmt.Sprintf("levelled (%+.1f%% since the middle third)", still)
	default:
		j.verdict, j.grew = "GREW", true
	}
	return j
}

func median(s []sample, get func(sample) float64) float64 {
	v := make([]float64, len(s))
	for i := range s {
		v[i] = get(s[i])
	}
	slices.Sort(v)
	if len(v)%2 == 0 {
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

// makeKeys creates an admin key and the hot key that most proxied requests
// carry.
func makeKeys(cfg *config.Config) (admin, hot string, err error) {
	keys, err := app.OpenKeys(context.Background(), cfg, slog.New(slog.DiscardHandler), os.Getenv)
	if err != nil {
		return "", "", err
	}
	defer func() { _ = keys.Close() }()
	admin, _, err = keys.Create(context.Background(), apikey.CreateParams{Name: "soak-admin", Owner: "service:soak",
		Scopes: []string{apikey.AdminScope}}, "soak")
	if err != nil {
		return "", "", err
	}
	hot, _, err = keys.Create(context.Background(), apikey.CreateParams{Name: "soak-hot", Owner: "service:soak"}, "soak")
	return admin, hot, err
}

func startUpstream() (net.Listener, error) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}

func freePort() (int, error) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path) //nolint:gosec // the script's own log file
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// rp is the relying party the virtual authenticators sign for.
var rp = virtualwebauthn.RelyingParty{Name: "keyway", ID: "localhost", Origin: "https://localhost:8443"}

// load is the mixed load and what it saw.
type load struct {
	base, admin      string
	adminKey, hotKey string
	tr               *http.Transport
	c, adminC        *http.Client

	ops    atomic.Int64
	people atomic.Int64
	visits atomic.Int64
	wrongs atomic.Int64
	poolMu sync.Mutex
	pool   []*person
	mu     sync.Mutex
	errs   map[string]int
	first  []string
	byKind sync.Map // kind → *atomic.Int64
}

func (l *load) connect(data string, port int) error {
	var pool *x509.CertPool
	deadline := time.Now().Add(30 * time.Second)
	for {
		pem, err := os.ReadFile(filepath.Join(data, "ca.pem")) //nolint:gosec // the soak's own data directory
		if err == nil {
			pool = x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				break
			}
		}
		if time.Now().After(deadline) {
			return errors.New("keyway wrote no local CA")
		}
		time.Sleep(100 * time.Millisecond)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	d := &net.Dialer{Timeout: 5 * time.Second}
	l.tr = &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
	}
	l.c = &http.Client{Transport: l.tr, Timeout: 30 * time.Second}
	l.adminC = &http.Client{Timeout: 30 * time.Second}
	return nil
}

func (l *load) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if res, err := l.do(context.Background(), l.c, "GET", l.base+"/.keyway/readyz", ""); err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("keyway did not become ready")
}

// schedule is the mix, slot by slot: each worker walks it in a loop, from
// its own offset.
var schedule = func() []func(*load, context.Context) {
	var s []func(*load, context.Context)
	add := func(n int, op func(*load, context.Context)) {
		for range n {
			s = append(s, op)
		}
	}
	add(34, (*load).proxied)
	add(5, (*load).public)
	add(3, (*load).refusedKey)
	add(4, (*load).keyLifecycle)
	add(2, (*load).leakReport)
	add(2, (*load).person)
	// Spread the heavy operations through the mix.
	for i := range s {
		j := (i * 7) % len(s)
		s[i], s[j] = s[j], s[i]
	}
	return s
}()

func (l *load) work(ctx context.Context, w int, pace <-chan time.Time) {
	for i := w * 11; ctx.Err() == nil; i++ {
		if pace != nil {
			select {
			case <-pace:
			case <-ctx.Done():
				return
			}
		}
		schedule[i%len(schedule)](l, ctx)
	}
}

// call sends a request and records its answer: an error unless it has the
// wanted status. It returns the body of a wanted answer, else nil.
func (l *load) call(ctx context.Context, kind string, want int, c *http.Client, method, url, body string, hdr ...string) []byte {
	res, err := l.do(ctx, c, method, url, body, hdr...)
	if err != nil {
		if ctx.Err() == nil {
			l.fail(kind, err.Error())
		}
		return nil
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		l.fail(kind, fmt.Sprintf("%d, want %d: %.200s", res.StatusCode, want, b))
		return nil
	}
	return b
}

func (l *load) fail(kind, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs[kind]++
	if len(l.first) < 5 {
		l.first = append(l.first, kind+": "+what)
	}
}

func (l *load) errorCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.errs {
		n += c
	}
	return n
}

func (l *load) errorSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%v; first: %s", l.errs, strings.Join(l.first, " | "))
}

func (l *load) done(kind string) {
	l.ops.Add(1)
	v, _ := l.byKind.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (l *load) kinds() string {
	var out []string
	l.byKind.Range(func(k, v any) bool {
		out = append(out, fmt.Sprintf("%s %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func (l *load) do(ctx context.Context, c *http.Client, method, url, body string, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return c.Do(req)
}

func (l *load) proxied(ctx context.Context) {
	l.call(ctx, "proxied", 200, l.c, "GET", l.base+"/api/orders", "", "Authorization", "Bearer "+l.hotKey)
	l.done("proxied")
}

func (l *load) public(ctx context.Context) {
	l.call(ctx, "public", 200, l.c, "GET", l.base+"/pub/status", "")
	l.done("public")
}

func (l *load) refusedKey(ctx context.Context) {
	wrong := l.hotKey[:len(l.hotKey)-4] + "AAAA"
	if wrong == l.hotKey {
		wrong = l.hotKey[:len(l.hotKey)-4] + "BBBB"
	}
	// From many addresses (through the trusted proxy): one source that
	// presents 60 wrong keys a minute is taken for a guesser and held.
	n := l.wrongs.Add(1)
	from := fmt.Sprintf("172.16.%d.%d", (n/256)%4, n%256)
	l.call(ctx, "refused", 401, l.c, "GET", l.base+"/api/orders", "", "Authorization", "Bearer "+wrong, "X-Forwarded-For", from)
	l.done("refused")
}

// newKey makes a key through the admin API.
func (l *load) newKey(ctx context.Context, kind string) (id, raw string, ok bool) {
	b := l.call(ctx, kind+" create", 201, l.adminC, "POST", l.admin+"/v1/keys", `{"name":"soak","owner":"service:soak"}`,
		"Authorization", "Bearer "+l.adminKey, "Content-Type", "application/json")
	var k struct{ ID, Key string }
	if b == nil || json.Unmarshal(b, &k) != nil || k.Key == "" {
		return "", "", false
	}
	return k.ID, k.Key, true
}

func (l *load) keyLifecycle(ctx context.Context) {
	id, raw, ok := l.newKey(ctx, "key")
	if !ok {
		return
	}
	l.call(ctx, "key use", 200, l.c, "GET", l.base+"/api/new", "", "Authorization", "Bearer "+raw)
	l.call(ctx, "key revoke", 200, l.adminC, "POST", l.admin+"/v1/keys/"+id+"/revoke", `{"reason":"soak"}`,
		"Authorization", "Bearer "+l.adminKey, "Content-Type", "application/json")
	l.call(ctx, "key after revoke", 401, l.c, "GET", l.base+"/api/new", "", "Authorization", "Bearer "+raw)
	l.done("key lifecycle")
}

func (l *load) leakReport(ctx context.Context) {
	_, raw, ok := l.newKey(ctx, "leak")
	if !ok {
		return
	}
	report, _ := json.Marshal([]map[string]string{{"token": raw, "type": "keyway_api_key",
		"url": "https://example.test/soak", "source": "content"}})
	l.call(ctx, "leak report", 200, l.c, "POST", l.base+"/.keyway/keys/report-leak", string(report), "Content-Type", "application/json")
	l.call(ctx, "leaked key", 401, l.c, "GET", l.base+"/api/leaked", "", "Authorization", "Bearer "+raw)
	l.done("leak report")
}

// person is someone who signed up: their browser's address and passkey.
type person struct {
	mu   sync.Mutex // one visit at a time: a passkey's counter only grows
	from string
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
}

// visitor returns someone from the pool who is not visiting already, or
// nil when a new person should sign up: until the pool is full, for one
// visit in signUpEvery, and when everyone is busy.
func (l *load) visitor() *person {
	n := l.visits.Add(1)
	l.poolMu.Lock()
	defer l.poolMu.Unlock()
	if len(l.pool) == poolSize && n%signUpEvery != 0 {
		for i := range l.pool {
			p := l.pool[(int(n)+i)%len(l.pool)]
			if p.mu.TryLock() {
				return p
			}
		}
	}
	return nil
}

const (
	poolSize    = 500
	signUpEvery = 20
)

func (l *load) browser(from string) (*http.Client, []string) {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: l.tr, Timeout: 30 * time.Second, Jar: jar},
		[]string{"Content-Type", "application/json", "X-Keyway-CSRF", "1", "Origin", rp.Origin,
			"Sec-Fetch-Site", "same-origin", "X-Forwarded-For", from}
}

// person is a visit: one in signUpEvery, and until the pool is full, by
// someone new who signs up with a passkey (from an address of their own);
// else by someone from the pool who signs in with theirs. Either way the
// session is used, ended, and found gone.
func (l *load) person(ctx context.Context) {
	p := l.visitor()
	if p == nil {
		if p = l.signUp(ctx); p == nil {
			return
		}
	}
	defer p.mu.Unlock()
	c, hdr := l.browser(p.from) // a fresh browser: the visit signs in
	opts := l.call(ctx, "sign-in begin", 200, c, "POST", l.base+"/.keyway/auth/passkey/login/begin", "{}", hdr...)
	if opts == nil {
		return
	}
	ao, err := virtualwebauthn.ParseAssertionOptions(string(opts))
	if err != nil {
		l.fail("sign-in options", err.Error())
		return
	}
	p.cred.Counter++
	if l.call(ctx, "sign-in finish", 200, c, "POST", l.base+"/.keyway/auth/passkey/login/finish",
		virtualwebauthn.CreateAssertionResponse(rp, p.auth, p.cred, *ao), hdr...) == nil {
		return
	}
	for range 3 {
		l.call(ctx, "session use", 200, c, "GET", l.base+"/app/me", "", hdr...)
	}
	l.call(ctx, "sign-out", 204, c, "POST", l.base+"/.keyway/auth/logout", "", hdr...)
	l.call(ctx, "after sign-out", 401, c, "GET", l.base+"/app/me", "", hdr...)
	l.done("visit")
}

// signUp makes a new person, who joins the pool if there is room; it
// returns them locked, or nil (and unlocked) if the sign-up failed.
func (l *load) signUp(ctx context.Context) *person {
	n := l.people.Add(1)
	p := &person{from: fmt.Sprintf("10.%d.%d.%d", (n>>16)&255, (n>>8)&255, n&255), auth: virtualwebauthn.NewAuthenticator()}
	p.mu.Lock()
	ok := false
	defer func() {
		if !ok {
			p.mu.Unlock()
		}
	}()
	c, hdr := l.browser(p.from)
	opts := l.call(ctx, "sign-up begin", 200, c, "POST", l.base+"/.keyway/auth/passkey/register/begin",
		fmt.Sprintf(`{"username":"soak-%d","display_name":"Soak %d"}`, n, n), hdr...)
	if opts == nil {
		return nil
	}
	ao, err := virtualwebauthn.ParseAttestationOptions(string(opts))
	if err != nil {
		l.fail("sign-up options", err.Error())
		return nil
	}
	var o struct {
		PublicKey struct{ User struct{ ID string } }
	}
	_ = json.Unmarshal(opts, &o)
	p.auth.Options.UserHandle, _ = base64.RawURLEncoding.DecodeString(strings.TrimRight(o.PublicKey.User.ID, "="))
	p.cred = testenv.NewCredential()
	att := virtualwebauthn.CreateAttestationResponse(rp, p.auth, p.cred, *ao)
	if l.call(ctx, "sign-up finish", 201, c, "POST", l.base+"/.keyway/auth/passkey/register/finish", att, hdr...) == nil {
		return nil
	}
	l.call(ctx, "session after sign-up", 200, c, "GET", l.base+"/app/me", "", hdr...)
	l.done("sign-up")
	l.poolMu.Lock()
	if len(l.pool) < poolSize {
		l.pool = append(l.pool, p)
	}
	l.poolMu.Unlock()
	ok = true
	return p
}

// sample reads the process's resident memory and descriptors from /proc
// and its goroutines and heap goal from /metrics.
func (l *load) sample(pid int) (sample, error) {
	var s sample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			s.rss = kb / 1024
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = float64(len(fds))
	res, err := l.do(context.Background(), l.adminC, "GET", l.admin+"/metrics", "")
	if err != nil {
		return s, err
	}
	defer func() { _ = res.Body.Close() }()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "go_goroutines":
			s.goroutines = v
		case "go_memstats_next_gc_bytes":
			s.heap = v / (1 << 20)
		}
	}
	s.ops = l.ops.Load()
	return s, sc.Err()
}

// plot draws the four series of samples, one panel each, with the warm-up
// shaded.
func plot(samples []sample, warm, duration time.Duration) []byte {
	const (
		w, panelH, pad, left = 720, 150, 24, 70
	)
	var b bytes.Buffer
	h := pad + len(metrics)*(panelH+pad)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	plotW := float64(w - left - pad)
	x := func(at time.Duration) float64 { return float64(left) + plotW*at.Seconds()/duration.Seconds() }
	for i, m := range metrics {
		top := float64(pad + i*(panelH+pad))
		hi := 0.0
		for _, s := range samples {
			hi = max(hi, m.get(s))
		}
		hi = max(hi*1.15, 1)
		y := func(v float64) float64 { return top + panelH - panelH*v/hi }
		fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%.0f" height="%d" fill="#f4f4f4"/>`+"\n", left, top, x(warm)-float64(left), panelH)
		fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", left, top, plotW, panelH)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", left-6, top+14, m.name)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end" fill="#666">%.0f</text>`+"\n", left-6, top+panelH, 0.0)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end" fill="#666">%.0f</text>`+"\n", left-6, y(hi/1.15)+4, hi/1.15)
		var pts []string
		for _, s := range samples {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.at), y(m.get(s))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="%s"/>`+"\n", strings.Join(pts, " "))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#666">0</text><text x="%d" y="%d" text-anchor="end" fill="#666">%s (shaded: warm-up)</text>`+"\n",
		left, h-6, w-pad, h-6, duration)
	b.WriteString("</svg>\n")
	return b.Bytes()
}
