package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/app"
)

const scanUsage = `Usage: keyway scan [--check | --revoke] [--config FILE | --data-dir DIR | --store DSN] [-o text|json] [PATH...]

Finds keyway API keys in files and directory trees (default "."); "-" reads
standard input. Only keys whose checksum validates are reported, by ID and
masked form: the full key is never printed.

--check asks the store (as keys commands do: --config, --data-dir, --store)
what each key is: live, revoked, expired, retired (rotated out) or unknown
(not this store's, or another secret). --revoke also revokes each key that
is still one of the store's, through the leak path: at once, on every
server, audited as apikey.leaked with where it was found.

Skipped: .git directories, symbolic links (never followed), binary files,
files over 50 MiB.

Exit status: 0 no key found; 1 at least one key found (with --check or
--revoke: at least one that was live when found); 2 usage error, or a path
could not be scanned and no key was found.
`

// stdinName names standard input in findings.
const stdinName = "<stdin>"

// scanFinding is the JSON form of a finding.
type scanFinding struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	ID     string `json:"id"`
	Env    string `json:"env"`
	Masked string `json:"masked"`
	// State is what the store says of the key (--check, --revoke).
	State string `json:"state,omitempty"`
	// Revoked is set when --revoke revoked it in this run.
	Revoked bool `json:"revoked,omitempty"`
}

// cmdScan is `keyway scan`: a pre-commit hook and CI step that fails when
// a keyway key is about to be committed or shipped.
func cmdScan(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return scan(args, os.Stdin, stdout, stderr, getenv)
}

// scan is cmdScan with standard input passed in, for tests.
//
// Exit status: a path that could not be scanned (missing, unreadable)
// fails the run with exitUsage unless a key was found, which exitError
// reports first: a hook or CI step must not pass what it could not read.
func scan(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("scan", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, scanUsage)
		fs.PrintDefaults()
	}
	out := outputFlag(fs)
	check := fs.Bool("check", false, "ask the store whether each key found is live")
	revoke := fs.Bool("revoke", false, "revoke each key found that is one of the store's (implies --check)")
	load := dataDirConfig(fs)
	if err := fs.Parse(args); err != nil || !validOutput(*out, stderr) {
		return exitUsage
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}
	ctx := context.Background()
	var keys *app.Keys
	if *check || *revoke {
		cfg, err := load(getenv)
		if err != nil {
			fmt.Fprintf(stderr, "keyway: %v\n", err)
			return exitError
		}
		logger := app.NewLogger(stderr, "text", "warn")
		if keys, err = app.OpenKeys(ctx, cfg, logger, getenv); err != nil {
			fmt.Fprintf(stderr, "keyway: %v\n", err)
			return exitError
		}
		defer func() { _ = keys.Close() }()
	}

	findings := []scanFinding{}
	var live, test, wasLive, revoked int
	errs := []string{}
	report := func(f apikey.Finding) {
		if f.Env == apikey.EnvLive {
			live++
		} else {
			test++
		}
		sf := scanFinding{File: f.File, Line: f.Line, Column: f.Column, ID: f.ID, Env: string(f.Env), Masked: f.Masked}
		if keys != nil {
			state, err := keys.Inspect(ctx, f.Raw.Reveal())
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", f.ID, err))
				fmt.Fprintf(stderr, "keyway scan: %s: %v\n", f.ID, err)
				state = "unchecked"
			}
			sf.State = state
			if state == apikey.StateLive {
				wasLive++
			}
			if *revoke && state != apikey.StateUnknown && state != apikey.StateRevoked && err == nil {
				where := fmt.Sprintf("keyway scan: %s:%d", printable(f.File), f.Line)
				if ok, err := keys.ReportLeak(ctx, f.Raw.Reveal(), where); err != nil {
					errs = append(errs, fmt.Sprintf("%s: revoke: %v", f.ID, err))
					fmt.Fprintf(stderr, "keyway scan: %s: revoke: %v\n", f.ID, err)
				} else if ok {
					sf.Revoked = true
					revoked++
				}
			}
		}
		if *out == "json" {
			findings = append(findings, sf)
			return
		}
		note := ""
		if sf.State != "" {
			note = ": " + sf.State
			if sf.Revoked {
				note += ", revoked now"
			}
		}
		fmt.Fprintf(stdout, "%s:%d:%d: keyway %s key %s (%s)%s\n", printable(f.File), f.Line, f.Column, f.Env, f.ID, f.Masked, note)
	}
	for _, p := range paths {
		var err error
		if p == "-" {
			err = apikey.ScanReader(stdinName, stdin, report)
		} else {
			err = apikey.ScanPath(p, report)
		}
		for _, e := range flatten(err) {
			errs = append(errs, e.Error())
			fmt.Fprintf(stderr, "keyway scan: %s\n", printable(e.Error()))
		}
	}

	if *out == "json" {
		_ = json.NewEncoder(stdout).Encode(struct {
			Findings []scanFinding `json:"findings"`
			Errors   []string      `json:"errors"`
		}{findings, errs})
	} else {
		switch n := live + test; {
		case n > 0 && keys != nil:
			fmt.Fprintf(stderr, "keyway scan: %d %s found (%d live, %d test); %d working when found, %d revoked now\n",
				n, plural(n, "key", "keys"), live, test, wasLive, revoked)
		case n > 0:
			fmt.Fprintf(stderr, "keyway scan: %d %s found (%d live, %d test)\n", n, plural(n, "key", "keys"), live, test)
		case len(errs) > 0:
			fmt.Fprintf(stderr, "keyway scan: no key found, but %d %s could not be scanned\n", len(errs), plural(len(errs), "path", "paths"))
		default:
			fmt.Fprintln(stderr, "keyway scan: no key found")
		}
	}
	switch {
	case keys != nil && wasLive > 0:
		return exitError
	case keys == nil && live+test > 0:
		return exitError
	case len(errs) > 0:
		return exitUsage
	default:
		return exitOK
	}
}

// flatten lists the errors joined in err (by errors.Join), or err itself.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// printable quotes a file name that holds control characters, so that a
// hostile name cannot forge output lines or drive the terminal of whoever
// reads a CI log.
func printable(name string) string {
	if strings.ContainsFunc(name, unicode.IsControl) {
		return strconv.Quote(name)
	}
	return name
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
