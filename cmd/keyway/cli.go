package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/keywayhq/keyway/internal/app"
	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/logbuf"
)

const usage = `keyway — passwordless, secure-by-design authentication in front of APIs.

Usage:
  keyway serve   [--config FILE] [--data-dir DIR] [--store DSN] [--redis ADDR] [--listen ADDR] [--http-listen ADDR|off] [--admin-listen ADDR]
  keyway init    [--config FILE] [--data-dir DIR] [--store DSN]   make the data directory, store and secrets
  keyway init    --for gateway|forward-auth|cluster [--out FILE]  write a commented starter config
  keyway check   --config FILE [--strict] [--production] [-o text|json]
  keyway keys    create|list|show|update|rotate|revoke|delete|usage …  (keyway keys help)
  keyway scan    [--check|--revoke] [-o text|json] [PATH…]
  keyway users   list|invite|enrol-link|revoke-sessions|roles|export|erase …  (keyway users help)
  keyway audit   verify|public-key|tail|export …  (keyway audit help)
  keyway kek     rotate|status …  (keyway kek help)
  keyway migrate [--config FILE] [--store DSN]            bring a store's schema up to date
  keyway migrate --from sqlite:PATH --to postgres://…     copy a SQLite store into an empty PostgreSQL one
  keyway healthcheck [--config FILE] [--url URL] [--ready]   is a running keyway alive (ready)? exit 0 or 1
  keyway version [-o text|json]

With no --config, serve runs the demo: a built-in weather API behind the
gateway, on the embedded SQLite store in ./keyway-data.

Only serve and init create a data directory or a store; every other command
refuses one that is not there and says where it looked.
`

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr, getenv)
	case "check":
		return cmdCheck(args[1:], stdout, stderr, getenv)
	case "init":
		return cmdInit(args[1:], stdout, stderr, getenv)
	case "version":
		return cmdVersion(args[1:], stdout, stderr)
	case "keys":
		return cmdKeys(args[1:], stdout, stderr, getenv)
	case "scan":
		return cmdScan(args[1:], stdout, stderr, getenv)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr, getenv)
	case "users":
		return cmdUsers(args[1:], stdout, stderr, getenv)
	case "kek":
		return cmdKEK(args[1:], stdout, stderr, getenv)
	case "healthcheck":
		return cmdHealthcheck(args[1:], stdout, stderr, getenv)
	case "migrate":
		return cmdMigrate(args[1:], stdout, stderr, getenv)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "keyway: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// wantsHelp reports whether a command group was called with no command or for help.
func wantsHelp(args []string) bool {
	return len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help"
}

const storeFlagHelp = "store: postgres://user@host:5432/db?sslmode=verify-full, or sqlite:PATH (default: the config's, else KEYWAY_STORE_DSN, else <data-dir>/keyway.db)"

// dataDirConfig registers --config and --data-dir, the flags of every
// command that works on a data directory, and returns the loader to call
// once fs is parsed.
func dataDirConfig(fs *flag.FlagSet) func(getenv func(string) string) (*config.Config, error) {
	cfgPath := fs.String("config", "", "config file (YAML)")
	over := map[string]*string{
		"data-dir": fs.String("data-dir", "./keyway-data", "data directory"),
		"store":    fs.String("store", "", storeFlagHelp),
	}
	return func(getenv func(string) string) (*config.Config, error) {
		return loadConfig(*cfgPath, fs, getenv, over)
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("keyway "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// outputFlag registers -o text|json.
func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("o", "text", "output format: text or json")
}

func validOutput(o string, stderr io.Writer) bool {
	if o != "text" && o != "json" {
		fmt.Fprintf(stderr, "keyway: -o must be text or json, not %q\n", o)
		return false
	}
	return true
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	out := outputFlag(fs)
	if err := fs.Parse(args); err != nil || !validOutput(*out, stderr) {
		return exitUsage
	}
	if *out == "json" {
		_ = json.NewEncoder(stdout).Encode(map[string]string{"version": version(), "go": runtime.Version()})
		return exitOK
	}
	fmt.Fprintf(stdout, "keyway %s (%s)\n", version(), runtime.Version())
	return exitOK
}

// loadConfig reads --config, or the demo config when it is empty, then
// applies the environment and the flags that were set (flags win).
func loadConfig(path string, fs *flag.FlagSet, getenv func(string) string, over map[string]*string) (*config.Config, error) {
	var cfg *config.Config
	if path == "" {
		cfg = config.Demo()
		cfg.ApplyEnv(getenv)
	} else {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["data-dir"] {
		cfg.SetDataDir(*over["data-dir"])
	}
	if set["listen"] {
		cfg.Listen = *over["listen"]
	}
	if set["http-listen"] {
		cfg.HTTPListen = *over["http-listen"]
	}
	if set["admin-listen"] {
		cfg.AdminListen = *over["admin-listen"]
	}
	if set["store"] {
		cfg.SetStore(*over["store"])
	}
	if set["redis"] {
		cfg.Redis.Addr = *over["redis"]
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func cmdServe(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("serve", stderr)
	cfgPath := fs.String("config", "", "config file (YAML); none runs the demo")
	over := map[string]*string{
		"data-dir":     fs.String("data-dir", "./keyway-data", "data directory (database, local CA)"),
		"listen":       fs.String("listen", "127.0.0.1:8443", "HTTPS listen address"),
		"http-listen":  fs.String("http-listen", "127.0.0.1:8080", `plain-HTTP redirect listen address, or "off"`),
		"admin-listen": fs.String("admin-listen", "127.0.0.1:9090", "admin listen address (/metrics)"),
		"store":        fs.String("store", "", storeFlagHelp),
		"redis":        fs.String("redis", "", "Redis host:port that shares rate limits between nodes (default: the config's, else KEYWAY_REDIS_ADDR)"),
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "keyway serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	// Logs a person reads on a terminal are text; a collector gets JSON.
	// What the file or KEYWAY_LOG_FORMAT says wins.
	terminal := isTerminal(stderr)
	load := func() (*config.Config, error) {
		c, err := loadConfig(*cfgPath, fs, getenv, over)
		if err == nil {
			c.Log.Format = c.LogFormatOn(terminal)
		}
		return c, err
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	// The log is written in batches (at most 100ms late, warnings at once):
	// a write per request, under the handler's lock, would queue requests.
	logs := logbuf.New(stderr, 0, 0)
	defer func() { _ = logs.Close() }()
	logger := app.NewLogger(logs, cfg.Log.Format, cfg.Log.Level)
	rt := tuneRuntime(getenv, "/sys/fs/cgroup/memory.max")
	logger.Info("runtime", slog.String("gogc", rt.GOGC), slog.String("gomemlimit", rt.MemLimit), slog.Int("gomaxprocs", rt.GOMAXPROCS))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here on: one sent while keyway starts (config
	// management that just wrote the file) is applied once it serves,
	// rather than ending the process as an uncaught SIGHUP would.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	a, err := app.New(ctx, cfg, app.Options{Logger: logger, LogWriter: logs, Version: version()})
	if err != nil {
		_ = logs.Flush() // the log's lines before the error's
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	if cfg.Demo {
		printDemoBanner(stdout, a)
	}
	if u := a.SetupURL(); u != "" {
		// On stdout, never in the log: the link signs up the first admin.
		fmt.Fprintf(stdout, "\n  No administrator yet. Open this one-time link within %v to register one with a passkey:\n\n    %s\n\n", app.SetupLinkTTL, u)
	}
	go reloadOnHangUp(ctx, hup, a, logger, func() (*config.Config, error) {
		if *cfgPath == "" {
			return nil, errors.New("the demo has no config file to read again (run with --config)")
		}
		return load()
	})
	if err := a.Run(ctx); err != nil {
		_ = logs.Flush()
		fmt.Fprintf(stderr, "keyway: %v\n", err)
		return exitError
	}
	return exitOK
}

// reloadOnHangUp reads the config again at each SIGHUP on hup (as the
// command line gave it: the same file and flags) and applies its routes
// and upstreams. A file that does not load, or that changes what needs a
// restart, is refused with the reason, and the running config goes on.
func reloadOnHangUp(ctx context.Context, hup <-chan os.Signal, a *app.App, logger *slog.Logger, load func() (*config.Config, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			next, err := load()
			if err == nil {
				err = a.Reload(next)
			}
			if err != nil {
				// One line per problem, as keyway check prints them.
				logger.Error("config reload refused; the running config goes on", slog.String("error", err.Error()))
			}
		}
	}
}

func printDemoBanner(w io.Writer, a *app.App) {
	ca := a.CAFile()
	if rel, err := filepath.Rel(".", ca); err == nil {
		ca = rel
	}
	_, port, _ := splitPort(a.Addr("https"))
	fmt.Fprintf(w, `keyway demo is running.

  The local CA that signs this machine's certificate: %s
  Try the public weather API through the gateway:

    curl --cacert %s 'https://localhost:%s/v1/forecast?city=Paris'

  /v1/history needs an API key with scope weather:history. Make one with
    keyway keys create --name demo --scope weather:history --data-dir %s
  and send it as: curl -H "Authorization: Bearer kw_live_…" …
  People sign up and in with passkeys at %s/.keyway/portal/
  (the demo's /v1/me and /v1/me/cities need that session).
  Metrics: http://%s/metrics    Stop: Ctrl-C
`, ca, ca, port, filepath.Dir(ca), a.PublicURL(), a.Addr("admin"))
}

func splitPort(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", errors.New("no port")
}

func cmdCheck(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("check", stderr)
	cfgPath := fs.String("config", "", "config file to check (required)")
	strict := fs.Bool("strict", false, "treat warnings as errors")
	production := fs.Bool("production", false, "also warn about what makes a stolen disk worse: secrets beside the database, an open data directory, open sign-up, audit checkpoints off")
	out := outputFlag(fs)
	if err := fs.Parse(args); err != nil || !validOutput(*out, stderr) {
		return exitUsage
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "keyway check: --config is required")
		return exitUsage
	}
	// finding is one problem or warning, for tools (-o json).
	type finding struct {
		File     string `json:"file"`
		Line     int    `json:"line,omitempty"`
		Severity string `json:"severity"` // error or warning
		Code     string `json:"code"`
		Path     string `json:"path,omitempty"`
		Message  string `json:"message"`
		Hint     string `json:"hint,omitempty"`
		text     string
	}
	warns, err := config.Check(*cfgPath, getenv)
	if err == nil && *production {
		cfg, lerr := config.LoadEnv(*cfgPath, getenv)
		if lerr != nil {
			err = lerr
		} else {
			warns = append(warns, app.ProductionWarnings(cfg, getenv)...)
		}
	}
	var findings []finding
	errorsN := 0
	if err != nil {
		var errs config.Errors
		if !errors.As(err, &errs) {
			errs = config.Errors{{File: *cfgPath, Msg: err.Error()}}
		}
		for _, e := range errs {
			code := "invalid-setting"
			if e.Path() == "" {
				code = "invalid-file"
			}
			findings = append(findings, finding{File: e.File, Line: e.Line, Severity: "error", Code: code, Path: e.Path(),
				Message: e.Msg, Hint: e.Hint, text: "error: " + e.Error()})
			errorsN++
		}
	}
	// Warnings always, errors or not: a security smell is worth knowing
	// while the errors are being fixed.
	for _, w := range warns {
		findings = append(findings, finding{File: w.File, Line: w.Line, Severity: "warning", Code: w.Code, Path: w.Path,
			Message: w.Msg, text: w.String()})
	}
	ok := errorsN == 0 && (!*strict || len(warns) == 0)
	if *out == "json" {
		if findings == nil {
			findings = []finding{}
		}
		_ = json.NewEncoder(stdout).Encode(map[string]any{"ok": ok, "errors": errorsN, "warnings": len(warns), "findings": findings})
	} else {
		for _, f := range findings {
			fmt.Fprintln(stdout, f.text)
		}
		switch {
		case ok:
			fmt.Fprintf(stdout, "%s: ok (%d warnings)\n", *cfgPath, len(warns))
		case errorsN > 0:
			fmt.Fprintf(stdout, "%s: %d errors, %d warnings\n", *cfgPath, errorsN, len(warns))
		default:
			fmt.Fprintf(stdout, "%s: %d warnings, refused by --strict\n", *cfgPath, len(warns))
		}
	}
	if !ok {
		return exitError
	}
	return exitOK
}
