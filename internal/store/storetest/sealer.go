package storetest

import (
	"bytes"
	"context"
	"testing"

	"github.com/keywayhq/keyway/internal/crypt"
)

// Sealable is a store that seals personal fields.
type Sealable interface {
	UseSealer(ctx context.Context, s *crypt.Sealer) error
	Sealer() *crypt.Sealer
}

// Seal gives db a sealer with a fixed test KEK and index key, whose data
// keys live in keys.
func Seal(t testing.TB, db Sealable, keys crypt.KeyStore) *crypt.Sealer {
	t.Helper()
	ring, err := crypt.NewRing(func() ([][]byte, error) { return [][]byte{bytes.Repeat([]byte{0x4b}, 32)}, nil })
	if err != nil {
		t.Fatal(err)
	}
	s, err := crypt.NewSealer(ring, keys, bytes.Repeat([]byte{0x49}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.UseSealer(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}
