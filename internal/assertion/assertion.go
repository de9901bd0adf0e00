// Package assertion signs the identity keyway asserts to an upstream: a
// short-lived JWT (EdDSA) per request, bound to the upstream (aud), the
// method (htm) and the path (htu), with a unique ID (jti). An upstream that
// verifies it never has to trust a header a client could have forged, and
// can refuse any request that did not come through keyway.
//
// Signing keys are Ed25519 keys derived from a secret kept outside the
// database (HKDF, one key per rotation period), so no private key is ever
// stored, every node of a cluster signs with the same key without sharing
// state, and keys rotate without downtime: the published key set holds the
// previous, the current and the next period's key, so an upstream that
// refreshes it at least once per period always knows the key in use.
package assertion

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Header is the request header that carries the assertion upstream.
const Header = "X-Keyway-Assertion"

// Config configures a Signer.
type Config struct {
	// Secret derives the signing keys: at least 32 bytes, never stored with
	// the data. Required.
	Secret []byte
	// Issuer is keyway's public URL (iss). Required.
	Issuer string
	// Period is how long one signing key is used. Default 24h.
	Period time.Duration
	// TTL is an assertion's lifetime: short, since it travels with one
	// request. Default 30s, at most 60s.
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand draws the assertion IDs. Default crypto/rand.Reader.
	Rand io.Reader
}

// Signer signs assertions and publishes its public keys. It is safe for
// concurrent use.
type Signer struct {
	cfg Config

	mu   sync.Mutex
	keys map[int64]ed25519.PrivateKey // by period number
}

// New validates cfg and returns a Signer.
func New(cfg Config) (*Signer, error) {
	if len(cfg.Secret) < 32 || cfg.Issuer == "" {
		return nil, errors.New("assertion: a secret of at least 32 bytes and an issuer are required")
	}
	if cfg.Period <= 0 {
		cfg.Period = 24 * time.Hour
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.TTL > time.Minute || cfg.Period < time.Minute {
		return nil, errors.New("assertion: TTL is at most 60s and the key period at least 1m")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Signer{cfg: cfg, keys: map[int64]ed25519.PrivateKey{}}, nil
}

// Claims are what an assertion says of one request.
type Claims struct {
	// Subject is the principal ("user:…", "service:…"), "" for an
	// anonymous request on a public route.
	Subject string
	// Audience is the upstream the assertion is for.
	Audience string
	// Method and Path are the request as forwarded.
	Method, Path string
	// KeyID, Scopes, Session and Client are the API key's display ID, its
	// scopes, the session ID and the client profile, when there are.
	KeyID, Scopes, Session, Client string
	// Roles are the person's roles, space-separated (session routes).
	Roles string
}

// claims is the JWT form.
type claims struct {
	jwt.RegisteredClaims
	Method  string `json:"htm"`
	Path    string `json:"htu"`
	KeyID   string `json:"kw_key,omitempty"`
	Scope   string `json:"scope,omitempty"`
	Session string `json:"sid,omitempty"`
	Client  string `json:"kw_client,omitempty"`
	Roles   string `json:"kw_roles,omitempty"`
}

// Sign returns the signed assertion of c.
func (s *Signer) Sign(c Claims) (string, error) {
	now := s.cfg.Now()
	period := s.period(now)
	key := s.key(period)
	var id [12]byte
	if _, err := io.ReadFull(s.cfg.Rand, id[:]); err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{c.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.TTL)),
			ID:        base64.RawURLEncoding.EncodeToString(id[:]),
		},
		Method: c.Method, Path: c.Path, KeyID: c.KeyID, Scope: c.Scopes, Session: c.Session, Client: c.Client, Roles: c.Roles,
	})
	t.Header["kid"] = kid(period)
	return t.SignedString(key)
}

func (s *Signer) period(t time.Time) int64 { return t.UnixNano() / int64(s.cfg.Period) }

func kid(period int64) string { return "kw" + strconv.FormatInt(period, 10) }

// key returns the private key of a period, deriving it once.
func (s *Signer) key(period int64) ed25519.PrivateKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[period]; ok {
		return k
	}
	seed, err := hkdf.Key(sha256.New, s.cfg.Secret, nil, "keyway assertion key v1 "+strconv.FormatInt(period, 10), ed25519.SeedSize)
	if err != nil {
		panic("assertion: hkdf: " + err.Error()) // cannot happen for a 32-byte output of SHA-256
	}
	k := ed25519.NewKeyFromSeed(seed)
	for p := range s.keys {
		if p < period-2 || p > period+2 {
			delete(s.keys, p) // keep the few periods the key set names
		}
	}
	s.keys[period] = k
	return k
}

// jwk is one public key of the set (RFC 8037 §2).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS returns the key set to publish: the previous, current and next
// period's public keys.
func (s *Signer) JWKS() []byte {
	cur := s.period(s.cfg.Now())
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for p := cur - 1; p <= cur+1; p++ {
		pub := s.key(p).Public().(ed25519.PublicKey)
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
			Kid: kid(p), Use: "sig", Alg: "EdDSA"})
	}
	b, _ := json.Marshal(set) // cannot fail for this struct
	return b
}

// ServeHTTP serves the key set (application/jwk-set+json). It may be cached
// for an hour: the next period's key is in it a whole period ahead.
func (s *Signer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=3600")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(s.JWKS())
}
