package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/audit"
	_ "modernc.org/sqlite"
)

// signedDir is a data directory whose trail has five events and signed
// checkpoints of the empty trail (init), of event 3 and of event 5 (init
// again signs the head, as serve does at every start and stop).
func signedDir(t *testing.T) string {
	t.Helper()
	dir := initDir(t)
	for _, name := range []string{"a", "b", "c", "init", "d", "e", "init"} {
		args := []string{"keys", "create", "--name", name, "--data-dir", dir}
		if name == "init" {
			args = []string{"init", "--data-dir", dir}
		}
		if code, _, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	return dir
}

type verifyResult struct {
	OK          bool
	Events      int
	Checkpoints int
	Unsigned    int
	BrokenAt    int64 `json:"broken_at"`
	Reason      string
}

func verifyDir(t *testing.T, dir string, args ...string) (int, verifyResult) {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"audit", "verify", "--data-dir", dir, "-o", "json"}, args...)...)
	var res verifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify: %d %q %q", code, out, errOut)
	}
	return code, res
}

// tamper runs SQL on the database of dir, with the append-only triggers
// gone, as a thief with the file would.
func tamper(t *testing.T, dir string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "keyway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	for _, q := range append([]string{
		"DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete",
		"DROP TRIGGER audit_checkpoints_no_update", "DROP TRIGGER audit_checkpoints_no_delete",
	}, stmts...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rechain recomputes every hash from event from on, as an editor without
// the signing key would to make the chain verify again.
func rechain(t *testing.T, dir string, from int64) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "keyway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var prev []byte
	if err := db.QueryRow("SELECT hash FROM audit_events WHERE seq = ?", from-1).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	base := prev
	type row struct {
		seq  int64
		hash []byte
	}
	fix := func() []row {
		rows, err := db.Query("SELECT seq, at, type, actor, subject, detail FROM audit_events WHERE seq >= ? ORDER BY seq", from)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rows.Close() }()
		var out []row
		for rows.Next() {
			var e audit.Event
			var seq, at int64
			var detail string
			if err := rows.Scan(&seq, &at, &e.Type, &e.Actor, &e.Subject, &detail); err != nil {
				t.Fatal(err)
			}
			e.At = time.Unix(0, at).UTC()
			if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
				t.Fatal(err)
			}
			h := audit.Chain(prev, seq, e)
			out = append(out, row{seq, h})
			prev = h
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}()
	for i, f := range fix {
		p := base
		if i > 0 {
			p = fix[i-1].hash
		}
		if _, err := db.Exec("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?", p, f.hash, f.seq); err != nil {
			t.Fatal(err)
		}
	}
}

// copyDir copies a data directory, so that each tampering starts from
// the same intact one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(dst, "*.key"))
	for _, k := range keys {
		if err := os.Chmod(k, 0o600); err != nil { // CopyFS makes them 0644, which keyway refuses
			t.Fatal(err)
		}
	}
	return dst
}

// TestAuditVerify edits, deletes, reorders, truncates and rewrites a real
// SQLite trail as a thief with the file would, and checks that keyway
// audit verify exits 1 naming the first bad event, each time.
func TestAuditVerify(t *testing.T) {
	dir := signedDir(t)
	code, res := verifyDir(t, dir)
	if code != 0 || !res.OK || res.Events != 5 || res.Checkpoints != 3 || res.Unsigned != 0 {
		t.Fatalf("intact trail: %d %+v", code, res)
	}
	// An auditor verifies with the public key alone.
	code, pub, _ := runCLI(t, "audit", "public-key", "--data-dir", dir)
	if code != 0 || len(strings.TrimSpace(pub)) != 44 {
		t.Fatalf("public-key: %d %q", code, pub)
	}
	blind := copyDir(t, dir)
	if err := os.Remove(filepath.Join(blind, "audit.key")); err != nil {
		t.Fatal(err)
	}
	if code, res := verifyDir(t, blind, "--public-key", strings.TrimSpace(pub)); code != 0 || res.Checkpoints != 3 {
		t.Fatalf("verify with the public key only: %d %+v", code, res)
	}
	for _, bad := range []string{"not-base64!", "c2hvcnQ="} {
		if code, _, errOut := runCLI(t, "audit", "verify", "--data-dir", blind, "--public-key", bad); code != exitUsage || !strings.Contains(errOut, "32 bytes") {
			t.Fatalf("verify with a bad public key %q: %d %q", bad, code, errOut)
		}
	}
	if code, out, errOut := runCLI(t, "audit", "verify", "--data-dir", blind); code != 1 || !strings.Contains(errOut, "--public-key") {
		t.Fatalf("verify with no key at all: %d %q %q", code, out, errOut)
	}

	swap := func(a, b int) []string {
		cols := "at, type, actor, subject, detail, prev_hash, hash"
		return []string{
			"CREATE TABLE swap AS SELECT seq, " + cols + " FROM audit_events WHERE seq IN (" + itoa(a) + ", " + itoa(b) + ")",
			"UPDATE audit_events SET (" + cols + ") = (SELECT " + cols + " FROM swap WHERE swap.seq = " + itoa(a+b) + " - audit_events.seq) WHERE seq IN (" + itoa(a) + ", " + itoa(b) + ")",
		}
	}
	for _, tc := range []struct {
		name   string
		do     func(dir string)
		seq    int64
		reason string
	}{
		{"an edited event", func(d string) { tamper(t, d, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2") }, 2, "edited"},
		{"a deleted event", func(d string) { tamper(t, d, "DELETE FROM audit_events WHERE seq = 4") }, 5, "deleted"},
		{"reordered events", func(d string) { tamper(t, d, swap(2, 3)...) }, 2, "reordered"},
		{"an inserted event", func(d string) {
			tamper(t, d, "UPDATE audit_events SET seq = seq + 100 WHERE seq >= 4", "UPDATE audit_events SET seq = seq - 99 WHERE seq >= 100",
				"INSERT INTO audit_events (seq, at, type, actor, subject, detail, prev_hash, hash) SELECT 4, at, type, 'forged', subject, detail, prev_hash, hash FROM audit_events WHERE seq = 3")
		}, 4, "inserted"},
		{"a truncated tail", func(d string) { tamper(t, d, "DELETE FROM audit_events WHERE seq >= 4") }, 4, "deleted"},
		{"a chain rewritten without the key", func(d string) {
			tamper(t, d, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 4")
			rechain(t, d, 4)
		}, 4, "rewritten"},
		{"a chain rewritten, its checkpoints deleted", func(d string) {
			tamper(t, d, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2", "DELETE FROM audit_checkpoints")
			rechain(t, d, 2)
		}, 1, "no signed checkpoint"},
		{"a checkpoint edited", func(d string) { tamper(t, d, "UPDATE audit_checkpoints SET seq = 4 WHERE seq = 5") }, 4, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, dir)
			tc.do(d)
			code, res := verifyDir(t, d)
			if code != 1 || res.OK || res.BrokenAt != tc.seq || !strings.Contains(res.Reason, tc.reason) {
				t.Fatalf("exit %d, %+v; want exit 1 naming event %d (%q)", code, res, tc.seq, tc.reason)
			}
			code, out, _ := runCLI(t, "audit", "verify", "--data-dir", d)
			if code != 1 || !strings.Contains(out, "broken at event "+itoa(int(tc.seq))) {
				t.Fatalf("text report: %d %q", code, out)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestAuditTailAndExport reads the trail as JSON lines, and follows it.
func TestAuditTailAndExport(t *testing.T) {
	dir := signedDir(t)
	lines := func(out string) []map[string]any {
		var got []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
			got = append(got, m)
		}
		return got
	}
	code, out, _ := runCLI(t, "audit", "tail", "-n", "2", "--data-dir", dir)
	got := lines(out)
	if code != 0 || len(got) != 2 || got[0]["seq"] != 4.0 || got[1]["seq"] != 5.0 || got[1]["type"] != audit.KeyCreated {
		t.Fatalf("tail -n 2: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "audit", "export", "--since", "1h", "--data-dir", dir); code != 0 || len(lines(out)) != 5 {
		t.Fatalf("export --since 1h: %d %q", code, out)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if code, out, _ := runCLI(t, "audit", "export", "--since", future, "--data-dir", dir); code != 0 || out != "" {
		t.Fatalf("export --since the future: %d %q", code, out)
	}
	if code, _, errOut := runCLI(t, "audit", "export", "--since", "yesterday", "--data-dir", dir); code != 1 || !strings.Contains(errOut, "RFC 3339") {
		t.Fatalf("a bad --since: %d %q", code, errOut)
	}

	// tail -f prints the newest event, then what is written after it started.
	cmd := exec.Command(keywayBinary(t), "audit", "tail", "-n", "1", "-f", "--data-dir", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	seen := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			seen <- sc.Text()
		}
		close(seen)
	}()
	next := func() string {
		select {
		case l := <-seen:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("tail -f printed nothing")
			return ""
		}
	}
	if l := next(); !strings.Contains(l, `"seq":5`) {
		t.Fatalf("tail -n 1 -f began with %q, want event 5", l)
	}
	if code, _, errOut := runCLI(t, "keys", "create", "--name", "followed", "--data-dir", dir); code != 0 {
		t.Fatal(errOut)
	}
	select {
	case l := <-seen:
		if m := lines(l); len(m) != 1 || m[0]["seq"] != 6.0 {
			t.Fatalf("tail -f printed %q, want event 6", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tail -f did not print the new event")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail -f on SIGINT: %v", err)
	}
}
