package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

func openTestCA(t *testing.T, cfg LocalCAConfig) *LocalCA {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "ca")
	}
	ca, err := OpenLocalCA(cfg)
	if err != nil {
		t.Fatalf("OpenLocalCA: %v", err)
	}
	return ca
}

func TestLocalCAFilesAndModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not meaningful on Windows")
	}
	dir := filepath.Join(t.TempDir(), "nested", "ca")
	ca := openTestCA(t, LocalCAConfig{Dir: dir})
	if got, want := ca.CertFile(), filepath.Join(dir, "ca.pem"); got != want {
		t.Errorf("CertFile() = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, "ca-key.pem"), 0o600},
		{filepath.Join(dir, "ca.pem"), 0o644},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			fi, err := os.Stat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != tc.want {
				t.Errorf("mode = %v, want %v", got, tc.want)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries, want 2 (no temp files left)", len(entries))
	}
}

func TestLocalCAReopenReusesRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	first := openTestCA(t, LocalCAConfig{Dir: dir})
	keyBefore, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	second := openTestCA(t, LocalCAConfig{Dir: dir})
	if !bytes.Equal(first.Root().Raw, second.Root().Raw) {
		t.Error("reopening created a new root")
	}
	keyAfter, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Error("reopening rewrote the key")
	}
	// A leaf from the second instance verifies against the first's pool.
	leaf, err := second.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: first.Pool(), DNSName: "localhost"}); err != nil {
		t.Errorf("verify: %v", err)
	}
}

func TestLocalCALeafServesLoopbackNames(t *testing.T) {
	ca := openTestCA(t, LocalCAConfig{Names: []string{"app.localhost", "127.0.0.2", "APP2.localhost."}})
	addr := serveTLS(t, Policy(ca, false))
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "app.localhost", "127.0.0.2", "app2.localhost"} {
		t.Run(name, func(t *testing.T) {
			cs, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: name})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			leaf := cs.PeerCertificates[0]
			if leaf.PublicKeyAlgorithm != x509.ECDSA {
				t.Errorf("leaf key = %v, want ECDSA", leaf.PublicKeyAlgorithm)
			}
			if life := leaf.NotAfter.Sub(leaf.NotBefore); life != 24*time.Hour+5*time.Minute {
				t.Errorf("leaf validity = %v, want 24h5m", life)
			}
		})
	}
	t.Run("other names rejected by client", func(t *testing.T) {
		if _, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "example.com"}); err == nil {
			t.Error("handshake for example.com succeeded")
		}
	})
}

func TestLocalCANameConstraints(t *testing.T) {
	ca := openTestCA(t, LocalCAConfig{})
	root := ca.Root()

	oidNameConstraints := asn1.ObjectIdentifier{2, 5, 29, 30}
	var found bool
	for _, ext := range root.Extensions {
		if ext.Id.Equal(oidNameConstraints) {
			found = true
			if !ext.Critical {
				t.Error("name constraints extension is not critical")
			}
		}
	}
	if !found {
		t.Fatal("root has no name constraints extension")
	}
	if !serverCA.hasConstraints(root) {
		t.Errorf("constraints = DNS %v IP %v", root.PermittedDNSDomains, root.PermittedIPRanges)
	}
	if root.PublicKeyAlgorithm != x509.ECDSA || root.NotAfter.Sub(root.NotBefore) < 10*365*24*time.Hour {
		t.Errorf("root: %v key, valid %v", root.PublicKeyAlgorithm, root.NotAfter.Sub(root.NotBefore))
	}

	// Forge leaves with the CA key, as a thief would.
	for _, tc := range []struct {
		name    string
		dns     []string
		ips     []net.IP
		wantErr bool
	}{
		{name: "localhost (control)", dns: []string{"localhost"}},
		{name: "sub.localhost (control)", dns: []string{"sub.localhost"}},
		{name: "example.com", dns: []string{"example.com"}, wantErr: true},
		{name: "localhost.example.com", dns: []string{"localhost.example.com"}, wantErr: true},
		{name: "evillocalhost", dns: []string{"evillocalhost"}, wantErr: true},
		{name: "localhost plus example.com", dns: []string{"localhost", "example.com"}, wantErr: true},
		{name: "10.0.0.1", ips: []net.IP{net.ParseIP("10.0.0.1")}, wantErr: true},
		{name: "::2", ips: []net.IP{net.ParseIP("::2")}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := forgeLeaf(t, ca, tc.dns, tc.ips)
			opts := x509.VerifyOptions{Roots: ca.Pool()}
			_, err := leaf.Verify(opts)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			var invalid x509.CertificateInvalidError
			if !errors.As(err, &invalid) || invalid.Reason != x509.CANotAuthorizedForThisName {
				t.Fatalf("verify error = %v, want CANotAuthorizedForThisName", err)
			}
		})
	}
}

// forgeLeaf signs a leaf for any names with the CA's private key.
func forgeLeaf(t *testing.T, ca *LocalCA, dns []string, ips []net.IP) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "forged"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLocalCARenewal(t *testing.T) {
	clock := newFakeClock()
	const life = 24 * time.Hour
	ca := openTestCA(t, LocalCAConfig{Now: clock.Now, LeafLifetime: life})

	first, err := ca.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(life / 2)
	same, err := ca.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if same != first {
		t.Fatal("leaf renewed with more than a third of its lifetime left")
	}

	clock.Advance(life*2/3 - life/2 + time.Minute)
	// Many handshakes at once at renewal time: all get a valid leaf.
	var wg sync.WaitGroup
	got := make([]*tls.Certificate, 32)
	for i := range got {
		wg.Go(func() {
			c, err := ca.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	wg.Wait()
	renewed, err := ca.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || serialOf(t, renewed).Cmp(serialOf(t, first)) == 0 {
		t.Fatal("leaf not renewed past two thirds of its lifetime")
	}
	if !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Errorf("renewed NotAfter %v is not after %v", renewed.Leaf.NotAfter, first.Leaf.NotAfter)
	}
	for i, c := range got {
		if c != first && c != renewed {
			t.Errorf("handshake %d got a third leaf: renewal was not serialised", i)
		}
	}
	if _, err := renewed.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost", CurrentTime: clock.Now()}); err != nil {
		t.Errorf("renewed leaf: %v", err)
	}

	t.Run("expired leaf replaced", func(t *testing.T) {
		clock.Advance(2 * life)
		c, err := ca.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if now := clock.Now(); !now.Before(c.Leaf.NotAfter) || now.Before(c.Leaf.NotBefore) {
			t.Errorf("leaf %v..%v not valid at %v", c.Leaf.NotBefore, c.Leaf.NotAfter, now)
		}
	})
}

func TestOpenLocalCARefuses(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(dir string) LocalCAConfig
		prepare func(t *testing.T, dir string) // runs after a first successful open
		is      error
	}{
		{
			name: "key readable by group and other",
			prepare: func(t *testing.T, dir string) {
				if runtime.GOOS == "windows" {
					t.Skip("file modes are not meaningful on Windows")
				}
				chmod(t, filepath.Join(dir, "ca-key.pem"), 0o644)
			},
			is: ErrInsecureKeyFile,
		},
		{
			name: "key readable by group",
			prepare: func(t *testing.T, dir string) {
				if runtime.GOOS == "windows" {
					t.Skip("file modes are not meaningful on Windows")
				}
				chmod(t, filepath.Join(dir, "ca-key.pem"), 0o640)
			},
			is: ErrInsecureKeyFile,
		},
		{
			name: "corrupt key",
			prepare: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "ca-key.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
			},
		},
		{
			name: "not PEM",
			prepare: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "ca-key.pem"), []byte("garbage"), 0o600)
			},
		},
		{
			name: "cert missing",
			prepare: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "ca.pem")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "key missing",
			prepare: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "ca-key.pem")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "key of another CA",
			prepare: func(t *testing.T, dir string) {
				other := filepath.Join(t.TempDir(), "other")
				openTestCA(t, LocalCAConfig{Dir: other})
				b, err := os.ReadFile(filepath.Join(other, "ca-key.pem"))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "ca-key.pem"), b, 0o600)
			},
		},
		{
			name:    "unconstrained root",
			prepare: writeUnconstrainedCA,
		},
		{
			name: "name outside the constraints",
			cfg:  func(dir string) LocalCAConfig { return LocalCAConfig{Dir: dir, Names: []string{"example.com"}} },
		},
		{
			name: "non-loopback IP",
			cfg:  func(dir string) LocalCAConfig { return LocalCAConfig{Dir: dir, Names: []string{"10.1.2.3"}} },
		},
		{
			name: "wildcard",
			cfg:  func(dir string) LocalCAConfig { return LocalCAConfig{Dir: dir, Names: []string{"*.localhost"}} },
		},
		{
			name: "no dir",
			cfg:  func(string) LocalCAConfig { return LocalCAConfig{} },
		},
		{
			name: "lifetime too short",
			cfg:  func(dir string) LocalCAConfig { return LocalCAConfig{Dir: dir, LeafLifetime: time.Second} },
		},
		{
			name: "dir is a file",
			cfg: func(dir string) LocalCAConfig {
				return LocalCAConfig{Dir: filepath.Join(dir, "ca.pem")}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			openTestCA(t, LocalCAConfig{Dir: dir})
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			cfg := LocalCAConfig{Dir: dir}
			if tc.cfg != nil {
				cfg = tc.cfg(dir)
			}
			_, err := OpenLocalCA(cfg)
			if err == nil {
				t.Fatal("OpenLocalCA succeeded")
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

// writeUnconstrainedCA replaces the CA in dir with a valid one that lacks
// name constraints.
func writeUnconstrainedCA(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big1(),
		Subject:               pkix.Name{CommonName: "unconstrained"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * 365 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	writeFile(t, filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func big1() *big.Int { return big.NewInt(1) }

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode)
}
