package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writePair writes p to cert.pem and key.pem in dir and returns the paths.
func writePair(t *testing.T, dir string, p testPair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, p.certPEM, 0o644)
	writeFile(t, keyFile, p.keyPEM, 0o600)
	return certFile, keyFile
}

func TestFileSourceHotReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	a, b := validPair(t), validPair(t)
	certFile, keyFile := writePair(t, dir, a)
	log, _ := newTestLogger()
	src, err := NewFileSource(FileSourceConfig{CertFile: certFile, KeyFile: keyFile, CheckInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, Policy(src, false))
	pool := x509.NewCertPool()
	pool.AddCert(a.cert)
	pool.AddCert(b.cert)
	client := &tls.Config{RootCAs: pool, ServerName: "localhost"}

	var (
		stop       atomic.Bool
		handshakes atomic.Int64
		failures   atomic.Int64
		sawA, sawB atomic.Bool
		wg         sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				cs, err := handshake(addr, client)
				handshakes.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("handshake failed during rotation: %v", err)
					continue
				}
				switch serial := cs.PeerCertificates[0].SerialNumber; {
				case serial.Cmp(a.cert.SerialNumber) == 0:
					sawA.Store(true)
				case serial.Cmp(b.cert.SerialNumber) == 0:
					sawB.Store(true)
				default:
					t.Errorf("unexpected serial %v", serial)
				}
			}
		})
	}

	time.Sleep(100 * time.Millisecond)
	// Rotate in place, non-atomically, as a naive deploy script would: the
	// key is briefly mismatched with the certificate.
	writePair(t, dir, b)

	deadline := time.Now().Add(5 * time.Second)
	for !sawB.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a few more handshakes on the new pair
	stop.Store(true)
	wg.Wait()

	if !sawA.Load() || !sawB.Load() {
		t.Errorf("served old pair: %v, new pair: %v; want both", sawA.Load(), sawB.Load())
	}
	if failures.Load() != 0 {
		t.Errorf("%d of %d handshakes failed", failures.Load(), handshakes.Load())
	}
	t.Logf("%d handshakes", handshakes.Load())
	c, _ := src.GetCertificate(&tls.ClientHelloInfo{})
	if serialOf(t, c).Cmp(b.cert.SerialNumber) != 0 {
		t.Error("not serving the new pair at the end")
	}
}

func TestFileSourceKeepsOldPairOnBadReplacement(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		replace func(t *testing.T, dir string, a testPair)
	}{
		{"garbage cert", func(t *testing.T, dir string, _ testPair) {
			writeFile(t, filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o644)
		}},
		{"truncated cert", func(t *testing.T, dir string, a testPair) {
			writeFile(t, filepath.Join(dir, "cert.pem"), a.certPEM[:len(a.certPEM)/2], 0o644)
		}},
		{"mismatched key", func(t *testing.T, dir string, _ testPair) {
			writeFile(t, filepath.Join(dir, "key.pem"), validPair(t).keyPEM, 0o600)
		}},
		{"expired pair", func(t *testing.T, dir string, _ testPair) {
			writePair(t, dir, newPair(t, false, now.Add(-48*time.Hour), now.Add(-time.Hour)))
		}},
		{"key removed", func(t *testing.T, dir string, _ testPair) {
			if err := os.Remove(filepath.Join(dir, "key.pem")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := validPair(t)
			certFile, keyFile := writePair(t, dir, a)
			clock := newFakeClock()
			log, logs := newTestLogger()
			src, err := NewFileSource(FileSourceConfig{CertFile: certFile, KeyFile: keyFile, Now: clock.Now, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			serving := func() *tls.Certificate {
				t.Helper()
				c, err := src.GetCertificate(&tls.ClientHelloInfo{})
				if err != nil || c == nil {
					t.Fatalf("GetCertificate = %v, %v", c, err)
				}
				return c
			}
			first := serving()

			// Keep the mtime distinct from the original's even on file
			// systems with coarse timestamps.
			time.Sleep(10 * time.Millisecond)
			tc.replace(t, dir, a)
			for range 3 {
				clock.Advance(2 * time.Second)
				if c := serving(); c != first {
					t.Fatal("a broken replacement was served")
				}
			}
			if n := logs.count("level=ERROR"); n != 1 {
				t.Errorf("logged %d errors for one broken change, want 1:\n%s", n, logs)
			}
			if err := src.Reload(); err == nil {
				t.Error("Reload of the broken pair succeeded")
			}
			if serving() != first {
				t.Fatal("Reload replaced the pair with a broken one")
			}

			// A good pair after the broken one is picked up.
			time.Sleep(10 * time.Millisecond)
			b := validPair(t)
			writePair(t, dir, b)
			clock.Advance(2 * time.Second)
			if serialOf(t, serving()).Cmp(b.cert.SerialNumber) != 0 {
				t.Error("good replacement not served after the interval")
			}
		})
	}
}

func TestFileSourceInterval(t *testing.T) {
	dir := t.TempDir()
	a, b := validPair(t), validPair(t)
	certFile, keyFile := writePair(t, dir, a)
	clock := newFakeClock()
	src, err := NewFileSource(FileSourceConfig{CertFile: certFile, KeyFile: keyFile, Now: clock.Now, CheckInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	writePair(t, dir, b)
	clock.Advance(30 * time.Second)
	c, _ := src.GetCertificate(&tls.ClientHelloInfo{})
	if serialOf(t, c).Cmp(a.cert.SerialNumber) != 0 {
		t.Error("files checked before the interval elapsed")
	}
	clock.Advance(31 * time.Second)
	c, _ = src.GetCertificate(&tls.ClientHelloInfo{})
	if serialOf(t, c).Cmp(b.cert.SerialNumber) != 0 {
		t.Error("files not checked after the interval")
	}
}

func TestFileSourceReload(t *testing.T) {
	dir := t.TempDir()
	a, b := validPair(t), validPair(t)
	certFile, keyFile := writePair(t, dir, a)
	clock := newFakeClock()
	src, err := NewFileSource(FileSourceConfig{CertFile: certFile, KeyFile: keyFile, Now: clock.Now, CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, dir, b)
	if err := src.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	c, _ := src.GetCertificate(&tls.ClientHelloInfo{})
	if serialOf(t, c).Cmp(b.cert.SerialNumber) != 0 {
		t.Error("Reload did not switch to the new pair")
	}
}

func TestNewFileSourceRefuses(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) FileSourceConfig
	}{
		{"no files configured", func(*testing.T, string) FileSourceConfig { return FileSourceConfig{} }},
		{"missing files", func(t *testing.T, dir string) FileSourceConfig {
			return FileSourceConfig{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: filepath.Join(dir, "nope-key.pem")}
		}},
		{"mismatched key", func(t *testing.T, dir string) FileSourceConfig {
			certFile, keyFile := writePair(t, dir, validPair(t))
			writeFile(t, keyFile, validPair(t).keyPEM, 0o600)
			return FileSourceConfig{CertFile: certFile, KeyFile: keyFile}
		}},
		{"expired", func(t *testing.T, dir string) FileSourceConfig {
			certFile, keyFile := writePair(t, dir, newPair(t, false, now.Add(-48*time.Hour), now.Add(-time.Hour)))
			return FileSourceConfig{CertFile: certFile, KeyFile: keyFile}
		}},
		{"key in cert file", func(t *testing.T, dir string) FileSourceConfig {
			p := validPair(t)
			certFile, keyFile := writePair(t, dir, p)
			writeFile(t, certFile, p.keyPEM, 0o644)
			return FileSourceConfig{CertFile: certFile, KeyFile: keyFile}
		}},
		{"negative interval", func(t *testing.T, dir string) FileSourceConfig {
			certFile, keyFile := writePair(t, dir, validPair(t))
			return FileSourceConfig{CertFile: certFile, KeyFile: keyFile, CheckInterval: -time.Second}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFileSource(tc.setup(t, t.TempDir()))
			if err == nil {
				t.Fatal("NewFileSource succeeded")
			}
			t.Logf("error: %v", err)
		})
	}
}
