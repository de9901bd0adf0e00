package assertion

import (
	"bytes"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// verify checks token with an independent JOSE library against the
// published key set, as an upstream would.
func verify(t *testing.T, jwks []byte, token string, want josejwt.Expected) (map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("key set: %v", err)
	}
	tok, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, err
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return nil, errNoKey
	}
	var std josejwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return nil, err
	}
	return all, std.ValidateWithLeeway(want, 0)
}

type errString string

func (e errString) Error() string { return string(e) }

const errNoKey = errString("no key of that kid in the set")

func TestSignVerify(t *testing.T) {
	clk := &clock{}
	clk.ns.Store(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).UnixNano())
	s, err := New(Config{Secret: bytes.Repeat([]byte{1}, 32), Issuer: "https://keyway.test", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(Claims{Subject: "service:billing", Audience: "https://api.internal", Method: "GET", Path: "/v1/orders",
		KeyID: "key_abc", Scopes: "orders:read", Client: "partner"})
	if err != nil {
		t.Fatal(err)
	}
	exp := josejwt.Expected{Issuer: "https://keyway.test", AnyAudience: josejwt.Audience{"https://api.internal"}, Time: clk.Now()}
	all, err := verify(t, s.JWKS(), tok, exp)
	if err != nil {
		t.Fatalf("a fresh assertion does not verify: %v", err)
	}
	if all["sub"] != "service:billing" || all["htm"] != "GET" || all["htu"] != "/v1/orders" || all["kw_key"] != "key_abc" ||
		all["scope"] != "orders:read" || all["kw_client"] != "partner" || all["jti"] == "" {
		t.Fatalf("claims %v", all)
	}
	if exp, iat := all["exp"].(float64), all["iat"].(float64); exp-iat > 60 || exp-iat <= 0 {
		t.Fatalf("lifetime %vs", exp-iat)
	}
	// Another audience refuses it; so does the time after its expiry.
	if _, err := verify(t, s.JWKS(), tok, josejwt.Expected{AnyAudience: josejwt.Audience{"https://other"}, Time: clk.Now()}); err == nil {
		t.Fatal("verified for another audience")
	}
	if _, err := verify(t, s.JWKS(), tok, josejwt.Expected{Time: clk.Now().Add(31 * time.Second)}); err == nil {
		t.Fatal("verified after its expiry")
	}
	// A tampered assertion fails.
	if _, err := verify(t, s.JWKS(), tok[:len(tok)-4]+"AAAA", exp); err == nil {
		t.Fatal("a tampered signature verified")
	}
	// Unique IDs.
	tok2, _ := s.Sign(Claims{Audience: "https://api.internal"})
	all2, _ := verify(t, s.JWKS(), tok2, exp)
	if all2["jti"] == all["jti"] || all2["sub"] != nil {
		t.Fatalf("jti %v twice, or an anonymous assertion with a subject %v", all2["jti"], all2["sub"])
	}

	t.Run("rotation without downtime", func(t *testing.T) {
		before := s.JWKS()
		clk.Add(24 * time.Hour)
		tok3, err := s.Sign(Claims{Audience: "https://api.internal"})
		if err != nil {
			t.Fatal(err)
		}
		// An upstream that fetched the key set a period ago still verifies.
		if _, err := verify(t, before, tok3, josejwt.Expected{Time: clk.Now()}); err != nil {
			t.Fatalf("the next period's key was not in the earlier key set: %v", err)
		}
		var a, b struct{ Keys []struct{ Kid string } }
		_ = json.Unmarshal(before, &a)
		_ = json.Unmarshal(s.JWKS(), &b)
		if a.Keys[1].Kid == b.Keys[1].Kid || a.Keys[2].Kid != b.Keys[1].Kid {
			t.Fatalf("key sets %v then %v", a.Keys, b.Keys)
		}
	})

	t.Run("another secret, other keys", func(t *testing.T) {
		s2, _ := New(Config{Secret: bytes.Repeat([]byte{2}, 32), Issuer: "https://keyway.test", Now: clk.Now})
		tok, _ := s2.Sign(Claims{Audience: "a"})
		if _, err := verify(t, s.JWKS(), tok, josejwt.Expected{Time: clk.Now()}); err == nil {
			t.Fatal("a key of another secret verified")
		}
		// The same secret on another node signs with the same key.
		s3, _ := New(Config{Secret: bytes.Repeat([]byte{1}, 32), Issuer: "https://keyway.test", Now: clk.Now})
		tok, _ = s3.Sign(Claims{Audience: "a"})
		if _, err := verify(t, s.JWKS(), tok, josejwt.Expected{Time: clk.Now()}); err != nil {
			t.Fatalf("another node's assertion: %v", err)
		}
	})
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{
		{Secret: make([]byte, 16), Issuer: "x"},
		{Secret: make([]byte, 32)},
		{Secret: make([]byte, 32), Issuer: "x", TTL: 2 * time.Minute},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
