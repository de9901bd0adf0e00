package apikey

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func newKey(t testing.TB, env Env) Parsed {
	t.Helper()
	p, err := Generate(rand.Reader, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pos is a finding's place and key, for comparisons.
type pos struct {
	Line, Column int
	ID           string
}

func positions(fs []Finding) []pos {
	out := make([]pos, 0, len(fs))
	for _, f := range fs {
		out = append(out, pos{f.Line, f.Column, f.ID})
	}
	return out
}

func scanString(t *testing.T, s string, chunk int) []Finding {
	t.Helper()
	var got []Finding
	if err := scanReader("f", strings.NewReader(s), chunk, func(f Finding) { got = append(got, f) }); err != nil {
		t.Fatal(err)
	}
	return got
}

// reference finds keys the obvious way, on the whole input at once.
func reference(s string) []pos {
	var out []pos
	for _, m := range regexp.MustCompile(ScanPattern).FindAllStringIndex(s, -1) {
		p, err := Parse(s[m[0]:m[1]])
		if err != nil {
			continue
		}
		line := strings.Count(s[:m[0]], "\n") + 1
		col := m[0] - (strings.LastIndexByte(s[:m[0]], '\n') + 1) + 1
		out = append(out, pos{line, col, DisplayID(p.ID)})
	}
	return out
}

func TestScanReaderPlaces(t *testing.T) {
	k, k2 := newKey(t, EnvLive), newKey(t, EnvTest)
	a, b := k.Raw, k2.Raw
	id, id2 := DisplayID(k.ID), DisplayID(k2.ID)
	tests := []struct {
		name string
		in   string
		want []pos
	}{
		{"start of file", a + "\nrest\n", []pos{{1, 1, id}}},
		{"end of file, no newline", "one\ntwo\nx = " + a, []pos{{3, 5, id}}},
		{"whole file", a, []pos{{1, 1, id}}},
		{"middle of a line", "foo bar " + a + " baz\n", []pos{{1, 9, id}}},
		{"double quoted", `API_KEY="` + a + `"`, []pos{{1, 10, id}}},
		{"single quoted", "key = '" + a + "'\n", []pos{{1, 8, id}}},
		{"json", `{"key":"` + a + `","n":1}`, []pos{{1, 9, id}}},
		{"yaml", "auth:\n  key: " + a + "\n", []pos{{2, 8, id}}},
		{"url query", "https://api.example/?k=" + a + "&x=1", []pos{{1, 24, id}}},
		{"several per line", a + "," + b + " " + a, []pos{{1, 1, id}, {1, 56, id2}, {1, 111, id}}},
		{"crlf", "a\r\n\r\n" + a + "\r\n", []pos{{3, 1, id}}},
		{"column counts bytes", "é = " + a, []pos{{1, 6, id}}},
		{"after a tab", "\t" + a, []pos{{1, 2, id}}},
		{"glued to a word before", "x" + a, nil},
		{"glued to an underscore", "TOKEN_" + a, nil},
		{"glued to a word after", a + "x", nil},
		{"truncated", a[:len(a)-1], nil},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := positions(scanString(t, tt.in, scanChunk))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestScanReaderFinding(t *testing.T) {
	k := newKey(t, EnvTest)
	got := scanString(t, "x\n  "+k.Raw+"\n", scanChunk)
	want := []Finding{{File: "f", Line: 2, Column: 3, ID: DisplayID(k.ID), Env: EnvTest, Masked: Mask(k), Raw: RawKey{k.Raw}}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got[0].Raw.Reveal() != k.Raw {
		t.Fatal("the finding does not give the key to Inspect and ReportLeak")
	}
	if s := fmt.Sprintf("%+v %#v %v", got, got, got[0].Raw); strings.Contains(s, k.Raw[len(k.Raw)-CheckLen-SecretLen:]) {
		t.Fatalf("a finding holds the secret: %s", s)
	}
}

func TestScanReaderIgnoresLookalikes(t *testing.T) {
	k := newKey(t, EnvLive)
	flip := func(i int) string {
		b := []byte(k.Raw)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for name, s := range map[string]string{
		"secret changed":   flip(len(k.Raw) - CheckLen - 1),
		"id changed":       flip(len("kw_live_")),
		"checksum changed": flip(len(k.Raw) - 1),
		"env changed":      "kw_test_" + k.Raw[len("kw_live_"):],
		"random":           "kw_live_" + strings.Repeat("A1b2", 11) + "xy",
	} {
		t.Run(name, func(t *testing.T) {
			if !regexp.MustCompile(ScanPattern).MatchString(s) {
				t.Fatalf("%s does not even match the pattern", name)
			}
			if got := scanString(t, "key: "+s+"\n", scanChunk); len(got) != 0 {
				t.Fatalf("lookalike reported: %+v", got)
			}
		})
	}
}

// TestScanReaderChunkBoundaries puts a key at every offset around the
// first chunk boundaries, with small chunks so that every case is cheap,
// and checks the word boundaries are judged on the real neighbours.
func TestScanReaderChunkBoundaries(t *testing.T) {
	k := newKey(t, EnvLive)
	id := DisplayID(k.ID)
	for _, chunk := range []int{1, 2, 7, MaxLen - 1, MaxLen, MaxLen + 1, 100} {
		for off := 0; off < 3*(chunk+MaxLen)+2; off++ {
			pad := strings.Repeat(".", off)
			tail := strings.Repeat(".", 2*chunk+MaxLen)
			if got, want := positions(scanString(t, pad+k.Raw+tail, chunk)), []pos{{1, off + 1, id}}; !slices.Equal(got, want) {
				t.Fatalf("chunk %d, offset %d: got %+v, want %+v", chunk, off, got, want)
			}
			if off == 0 {
				continue
			}
			glued := strings.Repeat(".", off-1) + "x" + k.Raw + tail
			if got := scanString(t, glued, chunk); len(got) != 0 {
				t.Fatalf("chunk %d, offset %d: key glued to a word before reported: %+v", chunk, off, got)
			}
			glued = pad + k.Raw + "x" + tail
			if got := scanString(t, glued, chunk); len(got) != 0 {
				t.Fatalf("chunk %d, offset %d: key glued to a word after reported: %+v", chunk, off, got)
			}
		}
	}
}

// TestScanReaderMatchesReference compares chunked scanning with scanning
// the whole input at once, on random text seeded with keys, lookalikes,
// newlines and word characters, for many chunk sizes and read sizes.
func TestScanReaderMatchesReference(t *testing.T) {
	keys := []string{newKey(t, EnvLive).Raw, newKey(t, EnvTest).Raw, newKey(t, EnvLive).Raw}
	bad := []byte(keys[0])
	// A lookalike: base62 throughout, wrong checksum.
	if bad[len(bad)-1] == '0' {
		bad[len(bad)-1] = '1'
	} else {
		bad[len(bad)-1] = '0'
	}
	pieces := append(keys, string(bad), "kw_", "kw_live_", "\n", "\r\n", " ", "x", "_", "\"", "é", "ab12")
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range 300 {
		var sb strings.Builder
		for range rng.IntN(60) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		in := sb.String()
		want := reference(in)
		chunk := 1 + rng.IntN(3*MaxLen)
		var got []Finding
		var r io.Reader = strings.NewReader(in)
		if i%2 == 0 {
			r = iotest.OneByteReader(r)
		}
		if err := scanReader("f", r, chunk, func(f Finding) { got = append(got, f) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(positions(got), want) {
			t.Fatalf("chunk %d, input %q:\ngot  %+v\nwant %+v", chunk, in, positions(got), want)
		}
	}
}

// TestScanReaderHugeLine scans a single line several times the real chunk
// size, with keys straddling the real chunk boundaries.
func TestScanReaderHugeLine(t *testing.T) {
	line := bytes.Repeat([]byte("a=1;"), (5*scanChunk)/4)
	var want []pos
	for i, off := range []int{0, scanChunk - 10, 2*scanChunk - MaxLen/2, 3*scanChunk + 1, len(line) - MaxLen} {
		k := newKey(t, []Env{EnvLive, EnvTest}[i%2])
		if off > 0 {
			line[off-1] = ' '
		}
		if off+MaxLen < len(line) {
			line[off+MaxLen] = ' '
		}
		copy(line[off:], k.Raw)
		want = append(want, pos{3, off + 1, DisplayID(k.ID)})
	}
	in := "first\n\n" + string(line) + "\nlast\n"
	if got := positions(scanString(t, in, scanChunk)); !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// repeatReader yields an endless run of one byte, without holding it.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestScanReaderBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 64 MiB")
	}
	k := newKey(t, EnvLive)
	const size = 64 << 20
	r := io.MultiReader(io.LimitReader(repeatReader('.'), size), strings.NewReader(" "+k.Raw))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var got []Finding
	if err := ScanReader("big", r, func(f Finding) { got = append(got, f) }); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if want := []pos{{1, size + 2, DisplayID(k.ID)}}; !slices.Equal(positions(got), want) {
		t.Fatalf("got %+v, want %+v", positions(got), want)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("a 64 MiB line allocated %d bytes", alloc)
	}
}

func TestScanReaderReadError(t *testing.T) {
	k := newKey(t, EnvLive)
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("x "+k.Raw), iotest.ErrReader(boom))
	var got []Finding
	err := ScanReader("f", r, func(f Finding) { got = append(got, f) })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if want := []pos{{1, 3, DisplayID(k.ID)}}; !slices.Equal(positions(got), want) {
		t.Fatalf("keys read before the error: got %+v, want %+v", positions(got), want)
	}
	// A reader's own io.ErrUnexpectedEOF is a failure, not a clean end.
	r = io.MultiReader(strings.NewReader("x"), iotest.ErrReader(io.ErrUnexpectedEOF))
	if err := ScanReader("f", r, func(Finding) {}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated stream: err = %v", err)
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// fileLine is a finding without its ID, for tree comparisons.
type fileLine struct {
	File         string
	Line, Column int
}

func scanPath(t *testing.T, root string) ([]fileLine, error) {
	t.Helper()
	var got []fileLine
	err := ScanPath(root, func(f Finding) { got = append(got, fileLine{f.File, f.Line, f.Column}) })
	slices.SortFunc(got, func(a, b fileLine) int { return strings.Compare(a.File, b.File) })
	return got, err
}

func TestScanPath(t *testing.T) {
	k := newKey(t, EnvLive).Raw
	root := t.TempDir()
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret.env": "KEY=" + k + "\n"})
	writeTree(t, root, map[string]string{
		"a.txt":                 "hello\n  " + k + "\n",
		"sub/b.json":            `{"k":"` + k + `"}`,
		"node_modules/m/i.js":   "var k='" + k + "'",
		"vendor/v/v.go":         "const k = `" + k + "`",
		"clean.txt":             "nothing here kw_live_nope\n",
		".git/config":           k,
		"sub/.git/objects/x":    k,
		"binary.dat":            "\x7fELF\x00\x01" + k,
		"nul-after-8KiB.txt":    strings.Repeat("a", scanSniffLen) + "\x00\n" + k,
		"dir.git/not-skipped.c": "// " + k,
	})
	if err := os.Symlink(filepath.Join(outside, "secret.env"), filepath.Join(root, "link.env")); err != nil {
		t.Skipf("symlinks: %v", err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".", filepath.Join(root, "sub", "loop")); err != nil {
		t.Fatal(err)
	}
	// Too large: text first (so it is not skipped as binary), then a
	// sparse tail past the limit.
	big := filepath.Join(root, "big.log")
	if err := os.WriteFile(big, []byte(k+"\n"+strings.Repeat("x\n", scanSniffLen)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, ScanMaxFileSize+1); err != nil {
		t.Fatal(err)
	}

	got, err := scanPath(t, root)
	if err != nil {
		t.Fatal(err)
	}
	j := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	want := []fileLine{
		{j("a.txt"), 2, 3},
		{j("dir.git/not-skipped.c"), 1, 4},
		{j("node_modules/m/i.js"), 1, 8},
		{j("nul-after-8KiB.txt"), 2, 1},
		{j("sub/b.json"), 1, 7},
		{j("vendor/v/v.go"), 1, 12},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}

	t.Run("single file", func(t *testing.T) {
		got, err := scanPath(t, j("sub/b.json"))
		if err != nil || !slices.Equal(got, []fileLine{{j("sub/b.json"), 1, 7}}) {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("relative root", func(t *testing.T) {
		t.Chdir(root)
		got, err := scanPath(t, "sub")
		if err != nil || !slices.Equal(got, []fileLine{{filepath.Join("sub", "b.json"), 1, 7}}) {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("root symlink not followed", func(t *testing.T) {
		for _, p := range []string{j("link.env"), j("linkdir")} {
			if got, err := scanPath(t, p); err != nil || len(got) != 0 {
				t.Fatalf("%s: got %+v, %v", p, got, err)
			}
		}
	})
	t.Run("root .git is scanned when named", func(t *testing.T) {
		got, err := scanPath(t, j(".git"))
		if err != nil || !slices.Equal(got, []fileLine{{j(".git/config"), 1, 1}}) {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("missing root", func(t *testing.T) {
		_, err := scanPath(t, j("nope"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestScanPathUnreadableContinues(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything")
	}
	if runtime.GOOS == "windows" {
		t.Skip("no permission bits")
	}
	k := newKey(t, EnvLive).Raw
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"a/locked.txt": k,
		"b/locked/x":   k,
		"c/open.txt":   k,
	})
	if err := os.Chmod(filepath.Join(root, "a", "locked.txt"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "b", "locked"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "b", "locked"), 0o700) })
	got, err := scanPath(t, root)
	if !slices.Equal(got, []fileLine{{filepath.Join(root, "c", "open.txt"), 1, 1}}) {
		t.Fatalf("got %+v", got)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("err = %v, want both permission errors", err)
	}
}

func BenchmarkScanReader(b *testing.B) {
	k := newKey(b, EnvLive)
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString("const x = require('module'); // some ordinary source text\n")
	}
	sb.WriteString(k.Raw)
	in := sb.String()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		n := 0
		if err := ScanReader("f", strings.NewReader(in), func(Finding) { n++ }); err != nil || n != 1 {
			b.Fatal(n, err)
		}
	}
}
