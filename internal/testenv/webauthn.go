package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"

	"github.com/descope/virtualwebauthn"
)

// NewCredential returns a software passkey (ES256) for virtualwebauthn.
//
// virtualwebauthn's own NewCredential encodes the key's coordinates with
// big.Int.Bytes, which drops leading zero bytes: about one key in 64 then
// has a 31-byte coordinate that go-webauthn rightly refuses, and a test
// fails at random. This draws keys until both coordinates are full width.
func NewCredential() virtualwebauthn.Credential {
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		if len(k.X.Bytes()) != 32 || len(k.Y.Bytes()) != 32 { // the test authenticator encodes them this way
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}
