package apikey

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Key format (see doc.go):
//
//	kw_<env>_<id><secret><check>
//
// env is "live" or "test"; id is IDLen base62 characters (public: it names
// the key in lists, logs and leak reports); secret is SecretLen base62
// characters; check is the CRC32 (IEEE) of everything before it, in
// CheckLen base62 characters. Base62 keeps the key one "word" for a double
// click and for a secret scanner's regular expression.
const (
	// Prefix starts every keyway key.
	Prefix = "kw_"
	// IDLen is the number of base62 characters of the public key ID (≈71 bits).
	IDLen = 12
	// SecretLen is the number of base62 characters of the secret (≈166 bits).
	SecretLen = 28
	// CheckLen is the width of the base62 CRC32 checksum (62^6 > 2^32).
	CheckLen = 6
	bodyLen  = IDLen + SecretLen + CheckLen
	// MaxLen is the length of the longest key ("kw_live_" + body).
	MaxLen = len(Prefix) + 4 + 1 + bodyLen
)

// Env is a key's environment. Test keys let integrations be built without
// touching live data; a scanner can tell them apart at a glance.
type Env string

// The environments.
const (
	EnvLive Env = "live"
	EnvTest Env = "test"
)

// Valid reports whether e is a known environment.
func (e Env) Valid() bool { return e == EnvLive || e == EnvTest }

// ErrMalformed means a string is not a well-formed keyway key: wrong prefix,
// length, alphabet or checksum. It is decided offline, before any store look-up.
var ErrMalformed = errors.New("malformed api key")

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Parsed is a syntactically valid key. It holds the full key so that it can
// be hashed; never log it.
type Parsed struct {
	Env Env
	// ID is the public key ID (without the "key_" display prefix).
	ID string
	// Raw is the whole key. Secret: hash it, never store or print it.
	Raw string
}

// Parse checks a presented key offline: prefix, environment, length,
// alphabet and checksum. It does not allocate.
func Parse(s string) (Parsed, error) {
	if len(s) > MaxLen || !strings.HasPrefix(s, Prefix) {
		return Parsed{}, ErrMalformed
	}
	rest := s[len(Prefix):]
	var env Env
	switch {
	case strings.HasPrefix(rest, "live_"):
		env = EnvLive
	case strings.HasPrefix(rest, "test_"):
		env = EnvTest
	default:
		return Parsed{}, ErrMalformed
	}
	body := rest[5:]
	if len(body) != bodyLen {
		return Parsed{}, ErrMalformed
	}
	for i := 0; i < len(body); i++ {
		if !isBase62(body[i]) {
			return Parsed{}, ErrMalformed
		}
	}
	if sum := checksum(s[:len(s)-CheckLen]); string(sum[:]) != s[len(s)-CheckLen:] {
		return Parsed{}, ErrMalformed
	}
	return Parsed{Env: env, ID: body[:IDLen], Raw: s}, nil
}

// Generate makes a new key for env from rnd (crypto/rand.Reader in
// production). It returns the parsed form.
func Generate(rnd io.Reader, env Env) (Parsed, error) {
	if !env.Valid() {
		return Parsed{}, fmt.Errorf("generate api key: unknown env %q", env)
	}
	chars, err := randomBase62(rnd, IDLen+SecretLen)
	if err != nil {
		return Parsed{}, fmt.Errorf("generate api key: %w", err)
	}
	head := Prefix + string(env) + "_" + chars
	sum := checksum(head)
	raw := head + string(sum[:])
	return Parse(raw)
}

// NewID returns a random key ID, for keys whose ID must exist before the
// secret (none yet) and for tests.
func NewID(rnd io.Reader) (string, error) {
	return randomBase62(rnd, IDLen)
}

// randomBase62 draws n uniform base62 characters by rejection sampling
// (bytes ≥ 248 are discarded so that no character is more likely than another).
func randomBase62(rnd io.Reader, n int) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := io.ReadFull(rnd, buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < 248 && len(out) < n {
				out = append(out, alphabet[b%62])
			}
		}
	}
	return string(out), nil
}

// checksum is the fixed-width base62 CRC32 of s. It runs the table-driven
// CRC over the string itself: handing a []byte to crc32.ChecksumIEEE would
// make it escape and cost an allocation per verified request.
func checksum(s string) [CheckLen]byte {
	v := crcIEEE(s)
	var out [CheckLen]byte
	for i := CheckLen - 1; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return out
}

// WithChecksum appends the checksum to head ("kw_<env>_<id><secret>"). It is
// for tests and tools that build keys; Generate is the way to make one.
func WithChecksum(head string) string {
	sum := checksum(head)
	return head + string(sum[:])
}

// crcIEEE is CRC-32 (IEEE) of s, eight bytes at a time ("slicing by 8"):
// the byte-at-a-time loop was a sixth of a key check's time.
func crcIEEE(s string) uint32 {
	crc := ^uint32(0)
	for len(s) >= 8 {
		crc ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		crc = crcTables[7][crc&0xff] ^ crcTables[6][crc>>8&0xff] ^ crcTables[5][crc>>16&0xff] ^ crcTables[4][crc>>24] ^
			crcTables[3][s[4]] ^ crcTables[2][s[5]] ^ crcTables[1][s[6]] ^ crcTables[0][s[7]]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		crc = crcTables[0][byte(crc)^s[i]] ^ (crc >> 8) //nolint:gosec // G115: taking the low byte is the algorithm
	}
	return ^crc
}

// crcTables are the slicing-by-8 tables of CRC-32 (IEEE): table 0 is the
// standard byte table, table k advances a byte by k more zero bytes.
var crcTables = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := range 256 {
		for k := 1; k < 8; k++ {
			prev := t[k-1][i]
			t[k][i] = t[0][prev&0xff] ^ prev>>8
		}
	}
	return t
}()

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// DisplayID is how a key ID is shown to people and sent upstream.
func DisplayID(id string) string { return "key_" + id }

// Mask shows enough of a key to recognise it and none of its secret:
// the prefix, environment and public ID, then an ellipsis.
func Mask(p Parsed) string {
	return Prefix + string(p.Env) + "_" + p.ID + "…"
}

// ScanPattern is a regular expression that matches a keyway key in text;
// a match must still pass Parse (checksum) to count.
const ScanPattern = `\bkw_(?:live|test)_[0-9A-Za-z]{46}\b`
