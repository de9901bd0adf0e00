package shape

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const me = `{
  "id": "usr_1", "name": "Ann \"A\" <ann>", "email": "ann@example.com",
  "billing": {"card": "4111", "plan": "pro"},
  "internal_notes": "VIP",
  "big": 12345678901234567890123,
  "cities": [
    {"name": "Oslo", "lat": 59.9, "secret": 1},
    {"name": "Rome", "lat": 41.9, "secret": 2},
    "not an object"
  ],
  "tags": ["a", "b"],
  "address": "unstructured",
  "nested": {"deep": {"keep": true, "drop": false}}
}`

func TestGolden(t *testing.T) {
	for _, tt := range []struct {
		name  string
		allow bool
		paths []string
		doc   string
	}{
		{"deny-billing", false, []string{"billing", "internal_notes"}, me},
		{"deny-nested", false, []string{"cities[].secret", "nested.deep.drop", "billing.card"}, me},
		{"allow-some", true, []string{"name", "cities.name", "big"}, me},
		{"allow-nested", true, []string{"nested.deep.keep", "billing.plan", "address.street", "tags.x"}, me},
		{"allow-array-root", true, []string{"[].id"}, `[{"id":1,"x":2},{"id":3},7,{"y":4}]`},
		{"deny-array-root", false, []string{"x"}, `[{"id":1,"x":2},{"id":3},7]`},
		{"allow-scalar-root", true, []string{"a"}, `"just a string"`},
		{"deny-scalar-root", false, []string{"a"}, `42`},
		{"shorter-path-wins", true, []string{"billing", "billing.card"}, me},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rule, err := compile(tt.paths, tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			out, err := rule.Apply([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(out) {
				t.Fatalf("not JSON: %s", out)
			}
			file := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(file, append(out, '\n'), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(want) != string(out)+"\n" {
				t.Fatalf("got  %s\nwant %s", out, want)
			}
		})
	}
}

func TestCompileRejects(t *testing.T) {
	for _, paths := range [][]string{nil, {""}, {"a..b"}, {"a.[]"}, {"a[0]"}, {"a[]]"}, {"[]"}, {strings.Repeat("a.", 40) + "a"},
		{"\xff"}} {
		if _, err := Allow(paths); err == nil {
			t.Errorf("Allow(%q) accepted", paths)
		}
	}
	if _, err := Deny(make([]string, 300)); err == nil {
		t.Error("300 paths accepted")
	}
}

func TestNotJSON(t *testing.T) {
	r, _ := Deny([]string{"a"})
	for _, doc := range []string{"", "{", `{"a":1}x`, "<html>"} {
		if _, err := r.Apply([]byte(doc)); !errors.Is(err, ErrNotJSON) {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

func TestReadBounded(t *testing.T) {
	if b, err := ReadBounded(strings.NewReader("12345"), 5); err != nil || string(b) != "12345" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := ReadBounded(strings.NewReader("123456"), 5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
}

// FuzzApply: any rule on any document never panics; valid input gives
// valid JSON; a denylisted top-level field and an unlisted one under an
// allowlist are never in the output.
func FuzzApply(f *testing.F) {
	f.Add([]byte(me), "billing,cities.secret", false)
	f.Add([]byte(me), "name,cities[].name", true)
	f.Add([]byte(`[{"a":[{"b":1}]}]`), "a.b", true)
	f.Add([]byte(`{"a":"\u2028\"\\x"}`), "a", false)
	f.Add([]byte(`{"secret":1,"secret":2}`), "secret", false)
	f.Fuzz(func(t *testing.T, doc []byte, paths string, allow bool) {
		rule, err := compile(strings.Split(paths, ","), allow)
		if err != nil {
			return
		}
		out, err := rule.Apply(doc)
		if err != nil {
			if json.Valid(doc) && (!errors.Is(err, ErrTooDeep) || nesting(doc) <= MaxNesting) {
				t.Fatalf("valid JSON refused: %v", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %q from %q", out, doc)
		}
		var top map[string]json.RawMessage
		if json.Unmarshal(out, &top) != nil {
			return
		}
		for _, p := range strings.Split(paths, ",") {
			if strings.ContainsAny(p, ".[") {
				continue
			}
			_, present := top[p]
			if !allow && present {
				t.Fatalf("denied field %q in %s", p, out)
			}
		}
		if allow {
			for k := range top {
				listed := false
				for _, p := range strings.Split(paths, ",") {
					if p == k || strings.HasPrefix(p, k+".") || strings.HasPrefix(p, k+"[]") {
						listed = true
					}
				}
				if !listed && !bytes.Contains([]byte(paths), []byte(k)) {
					t.Fatalf("unlisted field %q in %s", k, out)
				}
			}
		}
	})
}
