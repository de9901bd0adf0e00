package tlsconf

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func TestClientCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := OpenClientCA(LocalCAConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if ca.CertFile() != filepath.Join(dir, ClientCACertFileName) {
		t.Fatalf("cert file %s", ca.CertFile())
	}
	if st, err := os.Stat(filepath.Join(dir, ClientCAKeyFileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	cert, err := ca.GetClientCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if leaf.Subject.CommonName != "keyway" || len(leaf.DNSNames)+len(leaf.IPAddresses) != 0 {
		t.Fatalf("leaf %v %v %v", leaf.Subject, leaf.DNSNames, leaf.IPAddresses)
	}
	roots := ca.Pool()
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("as a client certificate: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("the client certificate verifies as a server certificate")
	}
	// Reopened, the same root; and it is not the server CA.
	again, err := OpenClientCA(LocalCAConfig{Dir: dir})
	if err != nil || !again.Root().Equal(ca.Root()) {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := OpenLocalCA(LocalCAConfig{Dir: dir}); err != nil {
		t.Fatalf("the server CA beside it: %v", err)
	}
	if _, err := OpenClientCA(LocalCAConfig{Dir: dir, Names: []string{"localhost"}}); err == nil {
		t.Fatal("a client CA with names")
	}
	// A server CA's files renamed to the client CA's are refused.
	dir2 := t.TempDir()
	if _, err := OpenLocalCA(LocalCAConfig{Dir: dir2}); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{CACertFileName: ClientCACertFileName, CAKeyFileName: ClientCAKeyFileName} {
		if err := os.Rename(filepath.Join(dir2, from), filepath.Join(dir2, to)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenClientCA(LocalCAConfig{Dir: dir2}); err == nil {
		t.Fatal("a server CA was taken for the client CA")
	}
}
