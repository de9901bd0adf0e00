package session

import (
	"crypto/rand"
	"strings"
	"testing"
)

// FuzzWellFormed: what wellFormed accepts is exactly the canonical shape
// of a token (so one secret has one spelling and one hash), and every
// token newToken makes is accepted.
func FuzzWellFormed(f *testing.F) {
	for range 3 {
		tok, _, err := newToken(rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	for _, s := range []string{"", TokenPrefix, "kws_" + strings.Repeat("A", 43), "kws_" + strings.Repeat("_", 43), "kws_" + strings.Repeat("=", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if !wellFormed(tok) {
			return
		}
		if len(tok) != tokenLen || !strings.HasPrefix(tok, TokenPrefix) {
			t.Fatalf("accepted %q of the wrong shape", tok)
		}
		raw, err := tokenEncoding.DecodeString(tok[len(TokenPrefix):])
		if err != nil || len(raw) != tokenBytes {
			t.Fatalf("accepted %q that does not decode to %d bytes", tok, tokenBytes)
		}
		again := TokenPrefix + tokenEncoding.EncodeToString(raw)
		if again != tok {
			t.Fatalf("accepted %q, a second spelling of %q", tok, again)
		}
	})
}
