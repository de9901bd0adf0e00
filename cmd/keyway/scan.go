package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/keywayhq/keyway/internal/apikey"
)

const scanUsage = `Usage: keyway scan [-o text|json] [PATH...]

Finds keyway API keys in files and directory trees (default "."); "-" reads
standard input. Only keys whose checksum validates are reported, by ID and
masked form: the full key is never printed.

Skipped: .git directories, symbolic links (never followed), binary files,
files over 50 MiB.

Exit status: 0 no key found; 1 at least one key found; 2 usage error, or a
path could not be scanned and no key was found.
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
}

// cmdScan is `keyway scan`: a pre-commit hook and CI step that fails when
// a keyway key is about to be committed or shipped.
func cmdScan(args []string, stdout, stderr io.Writer) int {
	return scan(args, os.Stdin, stdout, stderr)
}

// scan is cmdScan with standard input passed in, for tests.
//
// Exit status: a path that could not be scanned (missing, unreadable)
// fails the run with exitUsage unless a key was found, which exitError
// reports first: a hook or CI step must not pass what it could not read.
func scan(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("scan", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, scanUsage)
		fs.PrintDefaults()
	}
	out := outputFlag(fs)
	if err := fs.Parse(args); err != nil || !validOutput(*out, stderr) {
		return exitUsage
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}

	findings := []scanFinding{}
	var live, test int
	report := func(f apikey.Finding) {
		if f.Env == apikey.EnvLive {
			live++
		} else {
			test++
		}
		if *out == "json" {
			findings = append(findings, scanFinding{
				File: f.File, Line: f.Line, Column: f.Column,
				ID: f.ID, Env: string(f.Env), Masked: f.Masked,
			})
			return
		}
		fmt.Fprintf(stdout, "%s:%d:%d: keyway %s key %s (%s)\n", printable(f.File), f.Line, f.Column, f.Env, f.ID, f.Masked)
	}
	errs := []string{}
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
		case n > 0:
			fmt.Fprintf(stderr, "keyway scan: %d %s found (%d live, %d test)\n", n, plural(n, "key", "keys"), live, test)
		case len(errs) > 0:
			fmt.Fprintf(stderr, "keyway scan: no key found, but %d %s could not be scanned\n", len(errs), plural(len(errs), "path", "paths"))
		default:
			fmt.Fprintln(stderr, "keyway scan: no key found")
		}
	}
	switch {
	case live+test > 0:
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
