package crypt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/crypt"
)

// memKeys is a KeyStore in memory.
type memKeys struct {
	mu   sync.Mutex
	keys map[string]crypt.WrappedKey
}

func newMemKeys() *memKeys { return &memKeys{keys: map[string]crypt.WrappedKey{}} }

func (m *memKeys) PutDataKey(_ context.Context, k crypt.WrappedKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[k.UserID]; ok {
		return errors.New("exists")
	}
	m.keys[k.UserID] = k
	return nil
}

func (m *memKeys) DataKey(_ context.Context, id string) (crypt.WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[id]
	if !ok {
		return k, crypt.ErrNoKey
	}
	return k, nil
}

func (m *memKeys) DeleteDataKey(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keys, id)
	return nil
}

func (m *memKeys) DataKeys(_ context.Context, after string, limit int) ([]crypt.WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id := range m.keys {
		if id > after {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []crypt.WrappedKey
	for _, id := range ids[:min(limit, len(ids))] {
		out = append(out, m.keys[id])
	}
	return out, nil
}

func (m *memKeys) SwapDataKey(_ context.Context, old, next crypt.WrappedKey) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.keys[old.UserID]
	if !ok || !bytes.Equal(cur.Wrapped, old.Wrapped) {
		return false, nil
	}
	m.keys[old.UserID] = next
	return true, nil
}

// ringOf is a KEK source the test can change.
type ringOf struct {
	mu      sync.Mutex
	secrets [][]byte
}

func (r *ringOf) load() ([][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.secrets), nil
}

func (r *ringOf) set(s ...[]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = s
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func newSealer(t *testing.T, src *ringOf, keys crypt.KeyStore) *crypt.Sealer {
	t.Helper()
	ring, err := crypt.NewRing(src.load)
	if err != nil {
		t.Fatal(err)
	}
	s, err := crypt.NewSealer(ring, keys, key(9))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealedFieldsOpenOnlyWhereTheyWereSealed(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	s := newSealer(t, &ringOf{secrets: [][]byte{key(1)}}, keys)
	for _, u := range []string{"usr_ada", "usr_bob"} {
		if err := s.NewUserKey(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	f := crypt.Field{Table: "users", Column: "display_name", Row: "usr_ada", UserID: "usr_ada"}
	ct, err := s.Seal(ctx, f, "Ada Lovelace")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("Ada")) {
		t.Fatal("the clear text is in the ciphertext")
	}
	if got, err := s.Open(ctx, f, ct); err != nil || got != "Ada Lovelace" {
		t.Fatalf("open: %q %v", got, err)
	}
	if ct2, _ := s.Seal(ctx, f, "Ada Lovelace"); bytes.Equal(ct, ct2) {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	// The cached opening holds the same line: a ciphertext opened (and
	// cached) for one field is refused in another.
	if got, err := s.OpenCached(ctx, f, ct); err != nil || got != "Ada Lovelace" {
		t.Fatalf("open, cached: %q %v", got, err)
	}
	if _, err := s.OpenCached(ctx, crypt.Field{Table: "users", Column: "display_name", Row: "usr_bob", UserID: "usr_ada"}, ct); !errors.Is(err, crypt.ErrOpen) {
		t.Fatalf("a cached ciphertext moved to another row: %v", err)
	}
	for name, other := range map[string]crypt.Field{
		"another row":    {Table: "users", Column: "display_name", Row: "usr_bob", UserID: "usr_ada"},
		"another column": {Table: "users", Column: "username", Row: "usr_ada", UserID: "usr_ada"},
		"another table":  {Table: "credentials", Column: "display_name", Row: "usr_ada", UserID: "usr_ada"},
		"another person": {Table: "users", Column: "display_name", Row: "usr_bob", UserID: "usr_bob"},
	} {
		if _, err := s.Open(ctx, other, ct); !errors.Is(err, crypt.ErrOpen) {
			t.Errorf("a ciphertext moved to %s: %v, want ErrOpen", name, err)
		}
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x40
		if _, err := s.Open(ctx, f, bad); err == nil {
			t.Fatalf("a ciphertext with byte %d changed opens", i)
		}
	}
	// A data key moved to another person does not open either.
	ada, _ := keys.DataKey(ctx, "usr_ada")
	bob, _ := keys.DataKey(ctx, "usr_bob")
	ada.UserID = "usr_bob"
	keys.keys["usr_bob"] = ada
	fresh := newSealer(t, &ringOf{secrets: [][]byte{key(1)}}, keys)
	if _, err := fresh.Seal(ctx, crypt.Field{Table: "t", Column: "c", Row: "r", UserID: "usr_bob"}, "x"); !errors.Is(err, crypt.ErrOpen) {
		t.Fatalf("a data key moved to another person: %v", err)
	}
	keys.keys["usr_bob"] = bob

	// Forgotten: nothing sealed under the key opens again, anywhere.
	if err := s.Forget(ctx, "usr_ada"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, f, ct); !errors.Is(err, crypt.ErrNoKey) {
		t.Fatalf("open after forget: %v", err)
	}
	if _, err := s.OpenCached(ctx, f, ct); !errors.Is(err, crypt.ErrNoKey) {
		t.Fatalf("open after forget, from the cache: %v", err)
	}
	if _, err := fresh.Open(ctx, f, ct); !errors.Is(err, crypt.ErrNoKey) {
		t.Fatalf("open after forget, by another sealer: %v", err)
	}
	// The index is keyed and stable.
	if !bytes.Equal(s.Index("username", "ada"), fresh.Index("username", "ada")) || bytes.Equal(s.Index("username", "ada"), s.Index("email", "ada")) {
		t.Fatal("index hashes are not stable per kind")
	}
	if _, err := crypt.NewSealer(s.Ring(), keys, []byte("short")); err == nil {
		t.Fatal("a short index key was accepted")
	}
}

// TestRotate: a new KEK put first in the source is picked up by a node that
// meets a key wrapped under it; Rotate rewraps every key, and the old KEK
// can then go.
func TestRotate(t *testing.T) {
	ctx := context.Background()
	keys := newMemKeys()
	src := &ringOf{secrets: [][]byte{key(1)}}
	node1, node2 := newSealer(t, src, keys), newSealer(t, src, keys)
	sealed := map[string][]byte{}
	field := func(u string) crypt.Field {
		return crypt.Field{Table: "users", Column: "display_name", Row: u, UserID: u}
	}
	for _, u := range []string{"a", "b", "c"} {
		if err := node1.NewUserKey(ctx, u); err != nil {
			t.Fatal(err)
		}
		ct, err := node1.Seal(ctx, field(u), "name of "+u)
		if err != nil {
			t.Fatal(err)
		}
		sealed[u] = ct
	}
	oldID := node1.Ring().Current().ID
	src.set(key(2), key(1))
	rotator := newSealer(t, src, keys)
	rep, err := rotator.Rotate(ctx)
	if err != nil || rep.Rewrapped != 3 || rep.Current != 0 || rep.KEK == oldID {
		t.Fatalf("rotate: %+v %v", rep, err)
	}
	if rep, err := rotator.Rotate(ctx); err != nil || rep.Rewrapped != 0 || rep.Current != 3 {
		t.Fatalf("a second rotate: %+v %v", rep, err)
	}
	// node2 still holds only the old KEK; it reads the source again.
	for u, ct := range sealed {
		if got, err := node2.Open(ctx, field(u), ct); err != nil || got != "name of "+u {
			t.Fatalf("node2 after the rotation: %q %v", got, err)
		}
	}
	// The old KEK removed: every key still opens.
	src.set(key(2))
	for u, ct := range sealed {
		if got, err := newSealer(t, src, keys).Open(ctx, field(u), ct); err != nil || got != "name of "+u {
			t.Fatalf("after the old KEK went: %q %v", got, err)
		}
	}
	// A key under a KEK nobody has is a clear error.
	if err := newSealer(t, &ringOf{secrets: [][]byte{key(3)}}, keys).NewUserKey(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := newSealer(t, src, keys).Open(ctx, field("d"), []byte{1}); !errors.Is(err, crypt.ErrUnknownKEK) {
		t.Fatalf("a key under an unknown KEK: %v", err)
	}
}

// TestTransient: what belongs to no one yet opens only in its field, and
// still opens while the KEK it was sealed under is in the ring.
func TestTransient(t *testing.T) {
	src := &ringOf{secrets: [][]byte{key(1)}}
	s := newSealer(t, src, newMemKeys())
	f := crypt.Field{Table: "webauthn_challenges", Column: "data", Row: "ch1"}
	ct := s.SealTransient(f, []byte(`{"username":"ada"}`))
	if bytes.Contains(ct, []byte("ada")) {
		t.Fatal("clear text in a transient ciphertext")
	}
	if p, err := s.OpenTransient(f, ct); err != nil || string(p) != `{"username":"ada"}` {
		t.Fatalf("open: %q %v", p, err)
	}
	if _, err := s.OpenTransient(crypt.Field{Table: "webauthn_challenges", Column: "data", Row: "ch2"}, ct); !errors.Is(err, crypt.ErrOpen) {
		t.Fatalf("moved to another row: %v", err)
	}
	src.set(key(2), key(1))
	rotated := newSealer(t, src, newMemKeys())
	if p, err := rotated.OpenTransient(f, ct); err != nil || len(p) == 0 {
		t.Fatalf("after a rotation, with the old KEK in the ring: %v", err)
	}
	if _, err := rotated.OpenTransient(f, ct[:5]); !errors.Is(err, crypt.ErrOpen) {
		t.Fatalf("a short ciphertext: %v", err)
	}
}

// TestCachesForgetThePeopleNoLongerActive: the caches hold the people seen
// within their lifetime, not everyone ever seen.
func TestCachesForgetThePeopleNoLongerActive(t *testing.T) {
	defer crypt.SetCacheTTL(50 * time.Millisecond)()
	ctx := context.Background()
	s := newSealer(t, &ringOf{secrets: [][]byte{key(1)}}, newMemKeys())
	field := func(u string) crypt.Field {
		return crypt.Field{Table: "users", Column: "display_name", Row: u, UserID: u}
	}
	for i := range 100 {
		u := fmt.Sprint("u", i)
		if err := s.NewUserKey(ctx, u); err != nil {
			t.Fatal(err)
		}
		ct, err := s.Seal(ctx, field(u), "name")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.OpenCached(ctx, field(u), ct); err != nil {
			t.Fatal(err)
		}
	}
	if k, v := s.CacheSizes(); k < 100 || v < 100 {
		t.Fatalf("caches after 100 people: %d keys, %d values", k, v)
	}
	time.Sleep(120 * time.Millisecond)
	if err := s.NewUserKey(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	ct, _ := s.Seal(ctx, field("late"), "x")
	if _, err := s.OpenCached(ctx, field("late"), ct); err != nil {
		t.Fatal(err)
	}
	if k, v := s.CacheSizes(); k > 1 || v > 1 {
		t.Fatalf("caches after the others went quiet: %d keys, %d values", k, v)
	}
}
