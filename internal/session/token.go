package session

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Token format (see doc.go): TokenPrefix, then the base64url encoding
// (RFC 4648 §5, no padding) of tokenBytes random bytes.
const (
	// TokenPrefix starts every session token, so scanners and log filters
	// can spot one.
	TokenPrefix = "kws_"
	// IDPrefix starts every session ID.
	IDPrefix = "ses_"

	tokenBytes = 32 // 256 bits
	tokenLen   = len(TokenPrefix) + (tokenBytes*8+5)/6
	idChars    = 16 // base62: ≈95 bits, enough that IDs never collide
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// newToken draws a token from rnd and returns it with its stored hash.
func newToken(rnd io.Reader) (string, []byte, error) {
	var b [tokenBytes]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", nil, fmt.Errorf("generate session token: %w", err)
	}
	tok := TokenPrefix + tokenEncoding.EncodeToString(b[:])
	return tok, hashToken(tok), nil
}

// wellFormed reports whether tok has the shape of a token: the prefix, the
// exact length and a canonical base64url body. It decides offline, so a
// garbage cookie costs no store read.
func wellFormed(tok string) bool {
	if len(tok) != tokenLen || !strings.HasPrefix(tok, TokenPrefix) {
		return false
	}
	var b [tokenBytes]byte
	n, err := tokenEncoding.Decode(b[:], []byte(tok[len(TokenPrefix):]))
	return err == nil && n == tokenBytes
}

// hashToken is the stored form of a token: SHA-256 of the whole string.
// Unkeyed and fast on purpose; see doc.go.
func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns "ses_" + idChars uniform base62 characters, drawn by
// rejection sampling (bytes ≥ 248 are discarded so that no character is
// more likely than another).
func newID(rnd io.Reader) (string, error) {
	out := make([]byte, 0, len(IDPrefix)+idChars)
	out = append(out, IDPrefix...)
	var buf [32]byte
	for len(out) < cap(out) {
		if _, err := io.ReadFull(rnd, buf[:]); err != nil {
			return "", fmt.Errorf("generate session id: %w", err)
		}
		for _, c := range buf {
			if c < 248 && len(out) < cap(out) {
				out = append(out, base62[c%62])
			}
		}
	}
	return string(out), nil
}

// credentialTag names a credential in audit events: the first 16 hex
// characters of SHA-256 of its ID. Enough to match events to a passkey,
// without copying the identifier an authenticator discloses to relying
// parties into the audit log.
func credentialTag(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:8])
}
