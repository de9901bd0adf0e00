package audit

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// TestValidEventReadsBackAsHashed: an event whose text holds a byte that
// is not UTF-8 (a client's text cut inside a character) must hash the
// same when read back from the store as when it was written, or the chain
// fails to verify from it on.
func TestValidEventReadsBackAsHashed(t *testing.T) {
	ev := Event{At: time.Unix(1700000000, 0), Type: KeyLeaked, Actor: "leak-report", Subject: "key_\xff",
		Detail: map[string]string{"source": "pasted in a gist é"[:len("pasted in a gist é")-1], "k\xc3": "v"}}
	ev = ev.Valid()
	stored := string(DetailJSON(ev.Detail))
	var back map[string]string
	if err := json.Unmarshal([]byte(stored), &back); err != nil {
		t.Fatal(err)
	}
	read := Event{At: ev.At, Type: ev.Type, Actor: ev.Actor, Subject: ev.Subject, Detail: back}
	if string(Chain(nil, 1, ev)) != string(Chain(nil, 1, read)) {
		t.Fatalf("an event does not hash as it reads back: %q against %q", DetailJSON(ev.Detail), DetailJSON(back))
	}
	for _, s := range []string{ev.Subject, ev.Detail["source"]} {
		if !utf8.ValidString(s) {
			t.Errorf("not valid UTF-8: %q", s)
		}
	}
}

func TestClipCutsOnACharacter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"aé", 2, "a"},
		{"a\x00b\nc", 10, "abc"},
		{"a\xffb", 10, "ab"},
		{"€€", 4, "€"},
	} {
		if got := Clip(tc.in, tc.n); got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
