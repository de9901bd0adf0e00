// Command mutate finds security rules that no test guards. It copies the
// tracked files of the repository to a temporary directory, then for each
// mutation of a mutants file breaks one rule (an exact text replacement),
// runs the tests named for it, and reports whether they caught it. A
// mutation that survives is a rule that can be broken with every test green.
//
// It is run by hand before a release (see docs/testing.md), not in CI:
//
//	go run ./scripts/mutate                       # every mutant in scripts/mutate/mutants.txt
//	go run ./scripts/mutate -only upgrade         # those whose rule mentions "upgrade"
//
// Mutants file: blocks separated by blank lines, each with the lines
//
//	rule: what the mutation breaks
//	file: path/in/the/repository.go
//	from: exact text (once in the file; \n and \t are escapes)
//	to:   its replacement
//	test: go test arguments (packages and flags, such as -run)
//
// It exits 1 if a mutant survives or cannot be applied.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type mutant struct {
	rule, file, from, to, test string
	line                       int
}

func main() {
	file := flag.String("mutants", "scripts/mutate/mutants.txt", "mutants file")
	only := flag.String("only", "", "run only mutants whose rule contains this text")
	timeout := flag.Duration("timeout", 10*time.Minute, "time limit of one mutant's tests")
	flag.Parse()
	ms, err := parse(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "keyway-mutate-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(2)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := copyTree(dir); err != nil {
		fmt.Fprintln(os.Stderr, "mutate: copy the tree:", err)
		os.Exit(2)
	}
	failed := 0
	for _, m := range ms {
		if *only != "" && !strings.Contains(m.rule, *only) {
			continue
		}
		start := time.Now()
		verdict, detail := run(dir, m, *timeout)
		if verdict != "caught" {
			failed++
		}
		fmt.Printf("%-9s %-6s %s (%s:%d)%s\n", verdict, time.Since(start).Round(time.Second), m.rule, *file, m.line, detail)
	}
	if failed > 0 {
		fmt.Printf("\n%d mutant(s) not caught: each is a rule that no test guards\n", failed)
		os.Exit(1)
	}
}

// run applies m in dir, runs its tests and puts the file back.
func run(dir string, m mutant, timeout time.Duration) (string, string) {
	path := filepath.Join(dir, m.file)
	orig, err := os.ReadFile(path) //nolint:gosec // a file of the copied tree
	if err != nil {
		return "invalid", ": " + err.Error()
	}
	if n := strings.Count(string(orig), m.from); n != 1 {
		return "invalid", fmt.Sprintf(": the text to replace occurs %d times in %s", n, m.file)
	}
	mutated := []byte(strings.Replace(string(orig), m.from, m.to, 1))
	if err := os.WriteFile(path, mutated, 0o600); err != nil { //nolint:gosec // G703: a file of our own temporary copy, named by the developer's mutants file
		return "invalid", ": " + err.Error()
	}
	defer func() { _ = os.WriteFile(path, orig, 0o600) }() //nolint:gosec // G703: as above
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append([]string{"test", "-count=1"}, strings.Fields(m.test)...)
	cmd := exec.CommandContext(ctx, "go", args...) //nolint:gosec // the developer's own mutants file
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "SURVIVED", ""
	case ctx.Err() != nil:
		return "TIMEOUT", ""
	case errors.As(err, &ee) && strings.Contains(string(out), "[build failed]"):
		return "invalid", ": the mutant does not build:\n" + indent(string(out))
	}
	return "caught", ""
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 10 {
		lines = lines[:10]
	}
	return "    " + strings.Join(lines, "\n    ")
}

func parse(file string) ([]mutant, error) {
	f, err := os.Open(file) //nolint:gosec // the developer names the file
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var ms []mutant
	var cur mutant
	flush := func() error {
		if cur == (mutant{line: cur.line}) {
			return nil
		}
		if cur.rule == "" || cur.file == "" || cur.from == "" || cur.test == "" {
			return fmt.Errorf("%s:%d: a mutant needs rule, file, from, to and test", file, cur.line)
		}
		if strings.ContainsAny(cur.test, `'"`) {
			return fmt.Errorf("%s:%d: test arguments are split on spaces, not by a shell: write them without quotes", file, cur.line)
		}
		ms = append(ms, cur)
		cur = mutant{}
		return nil
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if cur.line == 0 {
			cur.line = n
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key: value", file, n)
		}
		val = unescape(strings.TrimSpace(val))
		switch key {
		case "rule":
			cur.rule = val
		case "file":
			cur.file = val
		case "from":
			cur.from = val
		case "to":
			cur.to = val
		case "test":
			cur.test = val
		default:
			return nil, fmt.Errorf("%s:%d: unknown key %q", file, n, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ms, flush()
}

func unescape(s string) string {
	return strings.NewReplacer(`\n`, "\n", `\t`, "\t").Replace(s)
}

// copyTree copies the files git tracks (and untracked ones not ignored)
// into dir.
func copyTree(dir string) error {
	out, err := exec.CommandContext(context.Background(), "git", "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if err := copyFile(name, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from) //nolint:gosec // a tracked file of the repository
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // deleted in the work tree
		}
		return err
	}
	defer func() { _ = in.Close() }()
	if err := os.MkdirAll(filepath.Dir(to), 0o750); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) //nolint:gosec // inside our temporary directory
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
