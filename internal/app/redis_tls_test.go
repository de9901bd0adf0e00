package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/config"
	"github.com/keywayhq/keyway/internal/testenv"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRedisTLSAndACL runs a redis-server that speaks only TLS and knows
// only an ACL user: keyway connects with redis.tls, ca_file, username and
// password_file; a wrong password, a missing TLS setting and an unknown CA
// are refused at start, and no error carries the password.
func TestRedisTLSAndACL(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	const password = "s3cret-redis-password"
	srv := testenv.PrivateRedis(t, "--port", "0", "--tls-port", "{port}", "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no",
		"--user", "default", "off", "--user", "keyway", "on", ">"+password, "~keyway:*", "&*", "+@all")
	pwFile := filepath.Join(dir, "redis.password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(tweak func(*config.Redis), env map[string]string) error {
		cfg := &config.Config{}
		cfg.Redis = config.Redis{Addr: srv.Addr(), Username: "keyway", PasswordFile: pwFile, TLS: true, CAFile: certFile, Prefix: "keyway:"}
		tweak(&cfg.Redis)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := openRedis(ctx, cfg, func(k string) string { return env[k] }, logger, nil)
		if err == nil {
			_ = c.Close()
		} else if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "wrong-password") {
			t.Fatalf("an error shows the password: %v", err)
		}
		return err
	}
	if err := open(func(*config.Redis) {}, nil); err != nil {
		t.Fatalf("TLS with the CA, ACL user and password file: %v", err)
	}
	if err := open(func(*config.Redis) {}, map[string]string{"KEYWAY_REDIS_PASSWORD": "wrong-password"}); err == nil {
		t.Fatal("KEYWAY_REDIS_PASSWORD is not used, or a wrong password was accepted")
	}
	for name, tweak := range map[string]func(*config.Redis){
		"no TLS":             func(r *config.Redis) { r.TLS = false },
		"the system CAs":     func(r *config.Redis) { r.CAFile = "" },
		"the default user":   func(r *config.Redis) { r.Username = "" },
		"no password":        func(r *config.Redis) { r.PasswordFile = "" },
		"another key prefix": func(r *config.Redis) { r.Prefix = "other:" },
	} {
		if err := open(tweak, nil); err == nil {
			t.Errorf("%s: connected, want refused", name)
		}
	}
}
