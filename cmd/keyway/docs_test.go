package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A documented command is one of keyway's, written in README.md, docs/,
// the admin API's OpenAPI document or the --help texts.
type documented struct {
	where string   // file (and what) it was found in
	args  []string // after "keyway"
	// shown is a command written out to be copied (a code block line);
	// otherwise it is mentioned in prose, or a synopsis.
	shown bool
}

var (
	fenceRE   = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	spanRE    = regexp.MustCompile("`([^`\n]+)`")
	commandRE = regexp.MustCompile(`(?:^|\$\(|\$ |; |&& )(?:go run \./cmd/keyway|keyway) ([a-z][^|#)\n]*)`)
	flagRE    = regexp.MustCompile(`(?m)^\s+-([a-zA-Z0-9][a-zA-Z0-9-]*)`)
)

// commands are keyway's commands, and the ones with commands of their own.
var (
	commands    = []string{"serve", "check", "init", "keys", "scan", "users", "audit", "kek", "healthcheck", "migrate", "version", "help"}
	subCommands = map[string][]string{
		"keys":  {"create", "list", "show", "update", "rotate", "revoke", "delete", "usage", "help"},
		"users": {"list", "invite", "enrol-link", "revoke-sessions", "roles", "export", "erase", "help"},
		"audit": {"verify", "public-key", "tail", "export", "help"},
		"kek":   {"rotate", "status", "help"},
	}
)

// findCommands lists the keyway commands written in text: in code blocks
// and code spans (Markdown), or anywhere (other texts).
func findCommands(where, text string, markdown bool) []documented {
	type piece struct {
		text  string
		shown bool
	}
	var pieces []piece
	if markdown {
		for _, m := range fenceRE.FindAllStringSubmatch(text, -1) {
			for _, l := range strings.Split(m[1], "\n") {
				pieces = append(pieces, piece{l, true})
			}
		}
		text = fenceRE.ReplaceAllString(text, "")
	}
	for _, m := range spanRE.FindAllStringSubmatch(text, -1) {
		pieces = append(pieces, piece{m[1], false})
	}
	var out []documented
	for _, p := range pieces {
		// In a Markdown table, "\|" is a "|" of the command's synopsis.
		line := strings.ReplaceAll(strings.TrimSpace(p.text), `\|`, "¦")
		for _, m := range commandRE.FindAllStringSubmatch(line, -1) {
			args := strings.Fields(strings.ReplaceAll(m[1], "¦", "|"))
			if len(args) > 0 && slices.Contains(commands, args[0]) {
				out = append(out, documented{where: where, args: args, shown: p.shown})
			}
		}
	}
	return out
}

// usageCommands turns the lines of a --help text that show a command
// ("  create  --name N [...]") into documented commands of group.
func usageCommands(where, group, text string) []documented {
	var out []documented
	for _, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(line, "  ") {
			continue
		}
		if group == "" {
			if fields[0] == "keyway" && len(fields) > 1 && slices.Contains(commands, fields[1]) {
				out = append(out, documented{where: where, args: fields[1:]})
			}
		} else if slices.Contains(subCommands[group], fields[0]) {
			out = append(out, documented{where: where, args: append([]string{group}, fields...)})
		}
	}
	return out
}

// flagsOf returns the flags the command of args defines, from its -h.
func flagsOf(t *testing.T, args []string) map[string]bool {
	t.Helper()
	n := 1
	if subs := subCommands[args[0]]; len(subs) > 0 && len(args) > 1 && slices.Contains(subs, args[1]) {
		n = 2
	}
	if n == 2 && args[1] == "help" || args[0] == "help" {
		return map[string]bool{}
	}
	_, _, errOut := runCLI(t, append(slices.Clone(args[:n]), "-h")...)
	flags := map[string]bool{"h": true, "help": true}
	for _, m := range flagRE.FindAllStringSubmatch(errOut, -1) {
		flags[m[1]] = true
	}
	return flags
}

// placeholder reports whether a token stands for something to fill in.
func placeholder(tok string) bool {
	if strings.ContainsAny(tok, "[]|<>…$\"'") || strings.Contains(tok, "...") {
		return true
	}
	letters := strings.Trim(tok, "0123456789,.:")
	return letters != "" && strings.ToUpper(letters) == letters && strings.ToLower(letters) != letters
}

// TestDocumentedCommandsRun checks every keyway command that the README,
// docs/, the OpenAPI document and the --help texts show: each flag it uses
// exists on that command, and each one written out in full (no
// placeholder, nothing outside the data directory) runs and succeeds on a
// fresh data directory. A command people copy must work.
func TestDocumentedCommandsRun(t *testing.T) {
	var docs []documented
	files, _ := filepath.Glob("../../docs/*.md")
	more, _ := filepath.Glob("../../docs/integrations/*.md")
	for _, f := range append(append(files, more...), "../../README.md", "../../internal/httpapi/openapi.json") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, findCommands(filepath.Base(f), string(b), strings.HasSuffix(f, ".md"))...)
	}
	docs = append(docs, usageCommands("keyway --help", "", usage)...)
	docs = append(docs, usageCommands("keyway keys help", "keys", keysUsage)...)
	docs = append(docs, usageCommands("keyway users help", "users", usersUsage)...)
	docs = append(docs, findCommands("keyway scan -h", scanUsage, false)...)
	if len(docs) < 40 {
		t.Fatalf("found only %d documented commands: is the extraction broken?", len(docs))
	}

	dir := initDir(t)
	flagsCache := map[string]map[string]bool{}
	ran := 0
	for _, d := range docs {
		key := d.args[0]
		if len(d.args) > 1 && slices.Contains(subCommands[d.args[0]], d.args[1]) {
			key += " " + d.args[1]
		}
		flags, ok := flagsCache[key]
		if !ok {
			flags = flagsOf(t, d.args)
			flagsCache[key] = flags
		}
		concrete := true
		for _, tok := range d.args {
			for _, alt := range strings.Split(strings.Trim(tok, "[]()\\"), "|") {
				if strings.HasPrefix(alt, "-") && alt != "-" && alt != "--" && len(flags) > 2 {
					name := strings.TrimLeft(alt, "-")
					name, _, _ = strings.Cut(name, "=")
					if !flags[name] {
						t.Errorf("%s: `keyway %s`: %s has no flag -%s", d.where, strings.Join(d.args, " "), key, name)
					}
				}
			}
			if placeholder(tok) {
				concrete = false
			}
		}
		// A bare mention in prose ("keyway keys revoke") is not a command.
		bare := len(d.args) <= len(strings.Fields(key)) && !d.shown
		switch {
		case !concrete, bare, !d.shown && strings.HasPrefix(d.where, "keyway "), // --help synopses
			key == "serve", key == "scan", key == "check", key == "help",
			key == "healthcheck", // asks a running server
			slices.ContainsFunc(d.args, func(a string) bool { return a == "--config" || a == "--store" || a == "--from" }):
			continue // shown, not runnable here: its flags were checked
		}
		t.Logf("run: %s: keyway %s", d.where, strings.Join(d.args, " "))
		code, out, errOut := runCLI(t, append(slices.Clone(d.args), "--data-dir", dir)...)
		if code != 0 {
			t.Errorf("%s: `keyway %s` failed (exit %d): %s%s", d.where, strings.Join(d.args, " "), code, out, errOut)
		}
		ran++
	}
	t.Logf("%d documented commands checked, %d run", len(docs), ran)
}
