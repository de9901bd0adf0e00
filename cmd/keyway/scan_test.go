package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/keywayhq/keyway/internal/apikey"
)

func scanKey(t *testing.T, env apikey.Env) apikey.Parsed {
	t.Helper()
	p, err := apikey.Generate(rand.Reader, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runScan runs keyway scan and fails the test if any of keys appears in
// its output, whole or just its secret.
func runScan(t *testing.T, stdin string, keys []apikey.Parsed, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := scan(args, strings.NewReader(stdin), &out, &errb, func(string) string { return "" })
	for _, k := range keys {
		secret := k.Raw[len(k.Raw)-apikey.CheckLen-apikey.SecretLen : len(k.Raw)-apikey.CheckLen]
		for name, s := range map[string]string{"stdout": out.String(), "stderr": errb.String()} {
			if strings.Contains(s, k.Raw) || strings.Contains(s, secret) {
				t.Fatalf("%s shows a key's secret:\n%s", name, s)
			}
		}
	}
	return code, out.String(), errb.String()
}

func scanTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestScanText(t *testing.T) {
	live, test := scanKey(t, apikey.EnvLive), scanKey(t, apikey.EnvTest)
	keys := []apikey.Parsed{live, test}
	bad := []byte(live.Raw)
	// A lookalike: the checksum is wrong.
	if bad[len(bad)-1] == '0' {
		bad[len(bad)-1] = '1'
	} else {
		bad[len(bad)-1] = '0'
	}
	root := scanTree(t, map[string]string{
		"app/config.yaml": "server:\n  api_key: " + live.Raw + "\n",
		"app/main.js":     `const k="` + test.Raw + `";f("` + live.Raw + `")`,
		"clean.txt":       "nothing to see\n",
		"lookalike.txt":   string(bad) + "\n",
		".git/config":     live.Raw,
		"image.png":       "\x89PNG\x00\x00" + live.Raw,
	})
	if err := os.Symlink(filepath.Join(root, "app", "config.yaml"), filepath.Join(root, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)

	code, out, errOut := runScan(t, "", keys)
	if code != exitError {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitError, errOut)
	}
	want := strings.Join([]string{
		filepath.Join("app", "config.yaml") + ":2:12: keyway live key " + apikey.DisplayID(live.ID) + " (" + apikey.Mask(live) + ")",
		filepath.Join("app", "main.js") + ":1:10: keyway test key " + apikey.DisplayID(test.ID) + " (" + apikey.Mask(test) + ")",
		filepath.Join("app", "main.js") + ":1:69: keyway live key " + apikey.DisplayID(live.ID) + " (" + apikey.Mask(live) + ")",
	}, "\n") + "\n"
	if out != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if errOut != "keyway scan: 3 keys found (2 live, 1 test)\n" {
		t.Fatalf("stderr: %q", errOut)
	}

	// Explicit paths give the same result as the default ".".
	if code, out2, _ := runScan(t, "", keys, "app", "clean.txt"); code != exitError || out2 != want {
		t.Fatalf("explicit paths: exit %d, stdout:\n%s", code, out2)
	}
}

func TestScanJSON(t *testing.T) {
	k := scanKey(t, apikey.EnvLive)
	root := scanTree(t, map[string]string{"a/b.env": "\nKEY=" + k.Raw + "\n"})
	missing := filepath.Join(root, "missing")
	code, out, errOut := runScan(t, "", []apikey.Parsed{k}, "-o", "json", root, missing)
	if code != exitError {
		t.Fatalf("exit %d, want %d (a key beats an error); stderr:\n%s", code, exitError, errOut)
	}
	var res struct {
		Findings []scanFinding `json:"findings"`
		Errors   []string      `json:"errors"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	wantF := []scanFinding{{
		File: filepath.Join(root, "a", "b.env"), Line: 2, Column: 5,
		ID: apikey.DisplayID(k.ID), Env: "live", Masked: apikey.Mask(k),
	}}
	if !slices.Equal(res.Findings, wantF) {
		t.Fatalf("findings %+v, want %+v", res.Findings, wantF)
	}
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0], missing) {
		t.Fatalf("errors %q, want one naming %s", res.Errors, missing)
	}
	if !strings.Contains(errOut, missing) {
		t.Fatalf("stderr does not report the error: %q", errOut)
	}
}

func TestScanClean(t *testing.T) {
	root := scanTree(t, map[string]string{"a.txt": "kw_live_notakey\n"})
	code, out, errOut := runScan(t, "", nil, root)
	if code != exitOK || out != "" || errOut != "keyway scan: no key found\n" {
		t.Fatalf("text: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runScan(t, "", nil, "-o", "json", root)
	if code != exitOK || out != `{"findings":[],"errors":[]}`+"\n" {
		t.Fatalf("json: exit %d, stdout %q", code, out)
	}
}

func TestScanStdin(t *testing.T) {
	k := scanKey(t, apikey.EnvTest)
	in := "line one\n    " + k.Raw + "\n"
	code, out, _ := runScan(t, in, []apikey.Parsed{k}, "-")
	want := "<stdin>:2:5: keyway test key " + apikey.DisplayID(k.ID) + " (" + apikey.Mask(k) + ")\n"
	if code != exitError || out != want {
		t.Fatalf("exit %d, stdout %q, want %q", code, out, want)
	}
	if code, out, _ := runScan(t, "no keys\n", nil, "-o", "json", "-"); code != exitOK || !strings.Contains(out, `"findings":[]`) {
		t.Fatalf("clean stdin: exit %d, %s", code, out)
	}
}

func TestScanCannotRead(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	code, out, errOut := runScan(t, "", nil, missing)
	if code != exitUsage || out != "" {
		t.Fatalf("exit %d, stdout %q: a path that could not be scanned must not pass", code, out)
	}
	if !strings.Contains(errOut, missing) || !strings.Contains(errOut, "no key found, but 1 path could not be scanned") {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestScanUsage(t *testing.T) {
	for _, args := range [][]string{{"-o", "yaml"}, {"--frobnicate"}, {"-h"}} {
		var out, errb bytes.Buffer
		if code := cmdScan(args, &out, &errb, func(string) string { return "" }); code != exitUsage {
			t.Fatalf("%q: exit %d, want %d", args, code, exitUsage)
		}
		if out.Len() != 0 || errb.Len() == 0 {
			t.Fatalf("%q: stdout %q, stderr %q", args, out.String(), errb.String())
		}
	}
}

func TestScanQuotesHostileNames(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no control characters in Windows file names")
	}
	k := scanKey(t, apikey.EnvLive)
	name := "x\n\x1b[2Jfake.txt:1:1: all clear"
	root := scanTree(t, map[string]string{name: k.Raw})
	code, out, _ := runScan(t, "", []apikey.Parsed{k}, root)
	if code != exitError || strings.Count(out, "\n") != 1 || strings.ContainsRune(out, '\x1b') {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}

// TestScanCheckAndRevoke: scan --check says what each key found is to the
// store, never printing a key; --revoke kills the ones still working,
// through the leak path (audited with where they were found); then the
// same file scans clean.
func TestScanCheckAndRevoke(t *testing.T) {
	dir := initDir(t)
	create := func(name string) (id, key string) {
		t.Helper()
		code, out, errOut := keysCLI(t, dir, "create", "--name", name, "-o", "json")
		var k struct{ ID, Key string }
		if code != 0 || json.Unmarshal([]byte(out), &k) != nil {
			t.Fatalf("create: %d %s", code, errOut)
		}
		return k.ID, k.Key
	}
	liveID, live := create("live")
	deadID, dead := create("dead")
	goneID, gone := create("gone")
	oldID, old := create("old")
	for _, args := range [][]string{{"revoke", deadID}, {"delete", goneID}, {"rotate", oldID, "--overlap", "0"}} {
		if code, _, errOut := keysCLI(t, dir, args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	src := filepath.Join(t.TempDir(), "leak.env")
	if err := os.WriteFile(src, []byte("A="+live+"\nB="+dead+"\nC="+gone+"\nD="+old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	scanCLI := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"scan"}, args...), "--data-dir", dir, src)...)
	}
	code, out, errOut := scanCLI("--check", "-o", "json")
	var res struct {
		Findings []struct {
			ID, State string
			Line      int
			Revoked   bool
		}
	}
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || len(res.Findings) != 4 {
		t.Fatalf("scan --check: %d %s %s", code, out, errOut)
	}
	// A secret rotated out with no overlap is gone from the store: to it,
	// that key is not one of its own any more.
	want := map[string]string{liveID: "live", deadID: "revoked", goneID: "unknown", oldID: "unknown"}
	for _, f := range res.Findings {
		if want[f.ID] != f.State || f.Revoked {
			t.Errorf("%s (line %d): %s, want %s", f.ID, f.Line, f.State, want[f.ID])
		}
	}
	for _, k := range []string{live, dead, gone, old} {
		if strings.Contains(out+errOut, k) {
			t.Fatal("scan printed a key")
		}
	}
	code, out, errOut = scanCLI("--revoke")
	if code != 1 || !strings.Contains(out, liveID) || !strings.Contains(out, "live, revoked now") || strings.Count(out, "revoked now") != 1 {
		t.Fatalf("scan --revoke: %d %q %q", code, out, errOut)
	}
	if code, out, _ := keysCLI(t, dir, "show", liveID, "-o", "json"); code != 0 || !strings.Contains(out, `"status": "revoked"`) ||
		!strings.Contains(out, "leaked: keyway scan: "+src+":1") {
		t.Fatalf("the live key after scan --revoke: %s", out)
	}
	// Nothing found works any more: the hook passes.
	if code, out, errOut := scanCLI("--check"); code != 0 {
		t.Fatalf("scan --check after the revocation: %d %q %q", code, out, errOut)
	}
	// Without a store, --check refuses and says where it looked.
	if code, _, errOut := runCLI(t, "scan", "--check", "--data-dir", filepath.Join(t.TempDir(), "nowhere"), src); code != 1 || !strings.Contains(errOut, "nowhere") {
		t.Fatalf("scan --check without a store: %d %q", code, errOut)
	}
}
