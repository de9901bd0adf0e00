package apikey

import (
	"crypto/rand"
	"errors"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
)

func TestGenerateParseRoundTrip(t *testing.T) {
	for _, env := range []Env{EnvLive, EnvTest} {
		p, err := Generate(rand.Reader, env)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.Raw, "kw_"+string(env)+"_") || len(p.Raw) != len("kw_"+string(env)+"_")+bodyLen {
			t.Fatalf("bad shape %q", p.Raw)
		}
		q, err := Parse(p.Raw)
		if err != nil || q != p {
			t.Fatalf("Parse(%q) = %+v, %v", p.Raw, q, err)
		}
		if !regexp.MustCompile(ScanPattern).MatchString("token=" + p.Raw + ";") {
			t.Fatalf("ScanPattern misses %q", p.Raw)
		}
		if m := Mask(p); strings.Contains(m, p.Raw[len(p.Raw)-CheckLen-SecretLen:len(p.Raw)-CheckLen]) {
			t.Fatalf("mask %q shows the secret", m)
		}
	}
	if _, err := Generate(rand.Reader, "prod"); err == nil {
		t.Fatal("unknown env accepted")
	}
}

func TestCRCMatchesStdlib(t *testing.T) {
	for _, s := range []string{"", "a", "kw_live_abc", strings.Repeat("xyz", 40)} {
		if got, want := crcIEEE(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Fatalf("crc(%q) = %x, want %x", s, got, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := Generate(rand.Reader, EnvLive)
	tests := map[string]string{
		"empty":         "",
		"no prefix":     good.Raw[3:],
		"other prefix":  "kx_" + good.Raw[3:],
		"bad env":       "kw_prod_" + good.Raw[8:],
		"short":         good.Raw[:len(good.Raw)-1],
		"long":          good.Raw + "0",
		"bad alphabet":  good.Raw[:20] + "-" + good.Raw[21:],
		"bad checksum":  good.Raw[:len(good.Raw)-1] + string(alphabet[(strings.IndexByte(alphabet, good.Raw[len(good.Raw)-1])+1)%62]),
		"env swapped":   "kw_test_" + good.Raw[8:],
		"bearer prefix": "Bearer " + good.Raw,
		"whitespace":    good.Raw + " ",
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) err = %v, want ErrMalformed", s, err)
			}
		})
	}
}

// TestMillionMutationsRejected changes one character of valid keys, a
// million times over, and checks that every mutant is rejected offline:
// CRC32 detects every single-character substitution.
func TestMillionMutationsRejected(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 50_000
	}
	var keys []Parsed
	for range 64 {
		k, err := Generate(rand.Reader, EnvLive)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	buf := make([]byte, MaxLen)
	var rnd [3]byte
	for i := range n {
		k := keys[i%len(keys)].Raw
		copy(buf, k)
		b := buf[:len(k)]
		_, _ = rand.Read(rnd[:])
		pos := int(rnd[0]) % len(b)
		c := alphabet[int(rnd[1])%62]
		if rnd[2]%4 == 0 {
			c = rnd[2] // sometimes any byte at all
		}
		if c == b[pos] {
			continue
		}
		b[pos] = c
		if _, err := Parse(string(b)); err == nil {
			t.Fatalf("mutant %q of a valid key was accepted", b)
		}
	}
}

func FuzzParse(f *testing.F) {
	k, _ := Generate(rand.Reader, EnvTest)
	f.Add(k.Raw)
	f.Add("kw_live_")
	f.Add("kw_live_" + strings.Repeat("A", bodyLen))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		if p.Raw != s || !p.Env.Valid() || len(p.ID) != IDLen || !strings.Contains(s, p.ID) {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		if !regexp.MustCompile(ScanPattern).MatchString(s) {
			t.Fatalf("accepted %q but ScanPattern misses it", s)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	k, _ := Generate(rand.Reader, EnvLive)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(k.Raw); err != nil {
			b.Fatal(err)
		}
	}
}
