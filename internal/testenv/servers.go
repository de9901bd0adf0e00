package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a database server of one test's own, on a free loopback port,
// which the test may kill and start again without disturbing other tests.
type Server struct {
	t     testing.TB
	addr  string
	start func() error
	stop  func()
	mu    sync.Mutex
	up    bool
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Start starts the server (again) and waits until it takes connections.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		return
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("start %s: %v", s.addr, err)
	}
	if !waitDial(s.addr, 30*time.Second) {
		s.t.Fatalf("the server on %s did not start", s.addr)
	}
	s.up = true
}

// Kill stops the server abruptly, as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		s.stop()
		s.up = false
	}
}

func waitDial(addr string, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := (&net.Dialer{Timeout: time.Second}).DialContext(context.Background(), "tcp", addr); err == nil {
			_ = c.Close()
			return true
		}
	}
	return false
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// PrivateRedis starts a redis-server of t's own (Debian's redis-server,
// keeping nothing on disk), stopped when t ends. Extra arguments are
// passed to it, "{port}" replaced by its port (e.g. "--port", "0",
// "--tls-port", "{port}" for TLS only, or an ACL user). Without
// redis-server, t skips (or fails under KEYWAY_TEST_STRICT=1).
func PrivateRedis(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := LookPath(t, "redis-server", "install Debian's redis-server")
	port := strconv.Itoa(freePort(t))
	dir := t.TempDir()
	args = slices.Clone(args)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{port}", port)
	}
	var cmd *exec.Cmd
	s := &Server{t: t, addr: "127.0.0.1:" + port}
	s.start = func() error {
		cmd = exec.CommandContext(context.Background(), bin, append( //nolint:gosec // G204: the test's own redis-server and arguments
			[]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, args...)...)
		return cmd.Start()
	}
	s.stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// PrivatePostgres initialises and starts a PostgreSQL cluster of t's own
// (Debian's PostgreSQL binaries; as root they run as the postgres user),
// with trust authentication on loopback, stopped and removed when t ends.
// DSN names its postgres database. Kill stops it in immediate mode (no
// checkpoint, crash recovery at the next start). Without the binaries, t
// skips (or fails under KEYWAY_TEST_STRICT=1).
func PrivatePostgres(t testing.TB) (*Server, string) {
	t.Helper()
	bindir := postgresBinDir(t)
	// A directory the postgres user can reach: t.TempDir's parents are
	// private to the test's user.
	dir, err := os.MkdirTemp("", "keyway-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	run := func(name string, args ...string) *exec.Cmd {
		return exec.CommandContext(context.Background(), filepath.Join(bindir, name), args...) //nolint:gosec // G204: PostgreSQL's own programs, the test's arguments
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Missing(t, "the postgres user", "PostgreSQL refuses to run as root; install Debian's postgresql package, which makes the user")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			Missing(t, "runuser", "install util-linux")
		}
		run = func(name string, args ...string) *exec.Cmd {
			return exec.CommandContext(context.Background(), runuser, append( //nolint:gosec // G204: PostgreSQL's own programs, the test's arguments
				[]string{"-u", "postgres", "--", filepath.Join(bindir, name)}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := strconv.Itoa(freePort(t))
	s := &Server{t: t, addr: "127.0.0.1:" + port}
	opts := fmt.Sprintf("-p %s -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c max_connections=200", port, dir)
	s.start = func() error {
		if out, err := run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
			return fmt.Errorf("pg_ctl start: %w: %s", err, out)
		}
		return nil
	}
	s.stop = func() {
		if out, err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
			t.Logf("pg_ctl stop: %v: %s", err, out)
		}
	}
	s.Start()
	t.Cleanup(s.Kill)
	return s, "postgres://postgres@" + s.addr + "/postgres?sslmode=disable"
}

func postgresBinDir(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.CommandContext(context.Background(), p, "--bindir").Output(); err == nil { //nolint:gosec // G204: pg_config found on PATH
			dir := strings.TrimSpace(string(out))
			if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
				return dir
			}
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	Missing(t, "PostgreSQL's server binaries (initdb, pg_ctl)", "install Debian's postgresql package")
	return ""
}
