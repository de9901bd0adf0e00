package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyFields(t *testing.T) {
	src := staticSource{}
	for _, tc := range []struct {
		name    string
		min13   bool
		wantMin uint16
	}{
		{"default", false, tls.VersionTLS12},
		{"min13", true, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Policy(src, tc.min13)
			if cfg.MinVersion != tc.wantMin {
				t.Errorf("MinVersion = %x, want %x", cfg.MinVersion, tc.wantMin)
			}
			if cfg.CurvePreferences != nil {
				t.Errorf("CurvePreferences = %v, want nil (Go defaults, including ML-KEM)", cfg.CurvePreferences)
			}
			if diff := cmp.Diff([]string{"h2", "http/1.1"}, cfg.NextProtos); diff != "" {
				t.Errorf("NextProtos (-want +got):\n%s", diff)
			}
			if cfg.GetCertificate == nil {
				t.Error("GetCertificate is nil")
			}
			for _, id := range cfg.CipherSuites {
				s := suiteByID(id)
				if s == nil || s.Insecure {
					t.Errorf("suite %s is not in tls.CipherSuites()", tls.CipherSuiteName(id))
				}
				if !isAEADSuite(id) {
					t.Errorf("suite %s is not ECDHE+AEAD", tls.CipherSuiteName(id))
				}
			}
			if len(cfg.CipherSuites) != 6 {
				t.Errorf("got %d suites, want 6", len(cfg.CipherSuites))
			}
		})
	}
}

// alpnSource is a CertSource that asks for extra ALPN protocols.
type alpnSource struct {
	staticSource
	protos []string
}

func (a alpnSource) NextProtos() []string { return a.protos }

func TestPolicyMergesNextProtos(t *testing.T) {
	cfg := Policy(alpnSource{protos: []string{"h2", "http/1.1", "acme-tls/1"}}, false)
	if diff := cmp.Diff([]string{"h2", "http/1.1", "acme-tls/1"}, cfg.NextProtos); diff != "" {
		t.Errorf("NextProtos (-want +got):\n%s", diff)
	}
	// Each call returns a fresh Config.
	cfg.NextProtos[0] = "mutated"
	cfg.CipherSuites[0] = 0
	if again := Policy(staticSource{}, false); again.NextProtos[0] != "h2" || again.CipherSuites[0] == 0 {
		t.Error("Policy shares slices between calls")
	}
}

func TestPolicyHandshakes(t *testing.T) {
	now := time.Now()
	certs := map[string]testPair{
		"ecdsa": newPair(t, false, now.Add(-time.Hour), now.Add(time.Hour)),
		"rsa":   newPair(t, true, now.Add(-time.Hour), now.Add(time.Hour)),
	}
	cbcOnly := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256, // static RSA kex: refused too
	}
	tests := []struct {
		name    string
		min13   bool
		client  func(c *tls.Config)
		wantErr bool
		check   func(t *testing.T, cs tls.ConnectionState)
	}{
		{
			name:   "default client gets TLS 1.3",
			client: func(c *tls.Config) {},
			check: func(t *testing.T, cs tls.ConnectionState) {
				if cs.Version != tls.VersionTLS13 {
					t.Errorf("version = %s, want TLS 1.3", tls.VersionName(cs.Version))
				}
			},
		},
		{
			name: "TLS 1.1 client refused",
			client: func(c *tls.Config) {
				c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			},
			wantErr: true,
		},
		{
			name: "TLS 1.2 client offering only CBC suites refused",
			client: func(c *tls.Config) {
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = cbcOnly
			},
			wantErr: true,
		},
		{
			name:   "TLS 1.2 client gets an AEAD suite",
			client: func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			check: func(t *testing.T, cs tls.ConnectionState) {
				if cs.Version != tls.VersionTLS12 {
					t.Errorf("version = %s, want TLS 1.2", tls.VersionName(cs.Version))
				}
				if !slices.Contains(CipherSuites(), cs.CipherSuite) || !isAEADSuite(cs.CipherSuite) {
					t.Errorf("suite = %s, want one of the AEAD list", tls.CipherSuiteName(cs.CipherSuite))
				}
			},
		},
		{
			name:   "ML-KEM hybrid negotiated",
			client: func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768} },
			check: func(t *testing.T, cs tls.ConnectionState) {
				if cs.CurveID != tls.X25519MLKEM768 {
					t.Errorf("curve = %v, want X25519MLKEM768", cs.CurveID)
				}
			},
		},
		{
			name:   "ALPN h2",
			client: func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} },
			check: func(t *testing.T, cs tls.ConnectionState) {
				if cs.NegotiatedProtocol != "h2" {
					t.Errorf("ALPN = %q, want h2", cs.NegotiatedProtocol)
				}
			},
		},
		{
			name:    "min13 refuses TLS 1.2",
			min13:   true,
			client:  func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			wantErr: true,
		},
		{
			name:   "min13 accepts TLS 1.3",
			min13:  true,
			client: func(c *tls.Config) {},
			check: func(t *testing.T, cs tls.ConnectionState) {
				if cs.Version != tls.VersionTLS13 {
					t.Errorf("version = %s, want TLS 1.3", tls.VersionName(cs.Version))
				}
			},
		},
	}
	for keyType, pair := range certs {
		t.Run(keyType, func(t *testing.T) {
			pool := x509.NewCertPool()
			pool.AddCert(pair.cert)
			cert := pair.tls
			addrs := map[bool]string{
				false: serveTLS(t, Policy(staticSource{&cert}, false)),
				true:  serveTLS(t, Policy(staticSource{&cert}, true)),
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					c := &tls.Config{RootCAs: pool, ServerName: "localhost"}
					tc.client(c)
					cs, err := handshake(addrs[tc.min13], c)
					if tc.wantErr {
						if err == nil {
							t.Fatalf("handshake succeeded (%s, %s), want refusal",
								tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
						}
						// A "remote error" is the server's alert: the
						// server refused, not the client.
						if !strings.Contains(err.Error(), "remote error") {
							t.Fatalf("handshake error %q is not a server refusal", err)
						}
						return
					}
					if err != nil {
						t.Fatalf("handshake: %v", err)
					}
					if tc.check != nil {
						tc.check(t, cs)
					}
				})
			}
		})
	}
}

// TestDefaultGoServerOffersCBC shows why Policy sets CipherSuites: a
// default Go server still accepts a TLS 1.2 client that offers only CBC.
func TestDefaultGoServerOffersCBC(t *testing.T) {
	pair := validPair(t)
	pool := x509.NewCertPool()
	pool.AddCert(pair.cert)
	addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{pair.tls}})
	cs, err := handshake(addr, &tls.Config{
		RootCAs:      pool,
		ServerName:   "localhost",
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
	})
	if err != nil {
		t.Skipf("this Go version's default server no longer offers CBC: %v", err)
	}
	if cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA {
		t.Errorf("suite = %s", tls.CipherSuiteName(cs.CipherSuite))
	}
}

func suiteByID(id uint16) *tls.CipherSuite {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// isAEADSuite reports whether id is an ECDHE suite with an AEAD cipher.
func isAEADSuite(id uint16) bool {
	switch id {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}
