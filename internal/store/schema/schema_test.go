package schema

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	ok := fstest.MapFS{
		"m/0002_b.sql": {Data: []byte("B")},
		"m/0001_a.sql": {Data: []byte("A")},
	}
	ms, err := Load(ok, "m")
	if err != nil || len(ms) != 2 || ms[0].SQL != "A" || ms[1].Version != 2 || ms[1].Name != "0002_b.sql" {
		t.Fatalf("Load: %+v %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"a gap":           {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"no version":      {"m/a.sql": {}},
		"version zero":    {"m/0000_a.sql": {}},
		"not a number":    {"m/x1_a.sql": {}},
		"a repeated one":  {"m/0001_a.sql": {}, "m/1_b.sql": {}},
		"no migrations/ ": {},
	} {
		if _, err := Load(fsys, "m"); err == nil {
			t.Errorf("%s: loaded", strings.TrimSpace(name))
		}
	}
}
