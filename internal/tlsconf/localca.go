package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// File names inside LocalCAConfig.Dir.
const (
	CACertFileName = "ca.pem"     // the root certificate, mode 0644: install it in trust stores
	CAKeyFileName  = "ca-key.pem" // the root private key (PKCS #8), mode 0600
)

const (
	defaultLeafLifetime = 24 * time.Hour
	caLifetime          = 10 * 365 * 24 * time.Hour
	// backdate absorbs clock skew between keyway and its clients.
	backdate = 5 * time.Minute
)

// ErrInsecureKeyFile reports a private key file that group or other users
// may read or write. keyway refuses to use such a key rather than guess
// whether it has already been copied.
var ErrInsecureKeyFile = errors.New("private key file is accessible by group or other users")

// The name constraints of every LocalCA root (RFC 5280 §4.2.1.10). Leaves
// may only name localhost, its subdomains and loopback addresses.
var (
	permittedDNSDomains = []string{"localhost", ".localhost"}
	permittedIPRanges   = []*net.IPNet{
		{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)},
		{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
	}
)

// LocalCAConfig configures OpenLocalCA.
type LocalCAConfig struct {
	// Dir holds ca.pem and ca-key.pem. Required. It is created with mode
	// 0700 if missing.
	Dir string
	// Names are extra leaf names beyond the defaults localhost, 127.0.0.1
	// and ::1. Each must fit the root's name constraints: "localhost" or a
	// name under ".localhost", or an IP address in 127.0.0.0/8 or ::1.
	// Wildcards are refused. Optional.
	Names []string
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// LeafLifetime is the validity period of each leaf. Default 24h. A leaf
	// is replaced once less than a third of it remains.
	LeafLifetime time.Duration
	// Logger receives issuance events; key material is never logged.
	// Default: discard.
	Logger *slog.Logger
}

// LocalCA is a development certificate authority kept in a directory. Its
// ECDSA P-256 root is valid for 10 years and name-constrained to localhost
// and loopback addresses; it issues short-lived ECDSA P-256 leaves in memory
// on demand and renews them in GetCertificate. It is safe for concurrent use.
type LocalCA struct {
	kind     *caKind
	certFile string
	root     *x509.Certificate
	key      *ecdsa.PrivateKey
	dnsNames []string
	ips      []net.IP
	now      func() time.Time
	lifetime time.Duration
	log      *slog.Logger

	leaf atomic.Pointer[localLeaf]
	mu   sync.Mutex // serialises issuance; never held on the hot path
}

var _ CertSource = (*LocalCA)(nil)

// localLeaf is an issued leaf and the times that decide when to replace it.
type localLeaf struct {
	cert      *tls.Certificate
	notBefore time.Time
	notAfter  time.Time
	renewAt   time.Time
}

// fresh reports whether l can be served at now without renewal.
func (l *localLeaf) fresh(now time.Time) bool {
	return l != nil && !now.Before(l.notBefore) && now.Before(l.renewAt)
}

// usable reports whether l is still within its validity period at now.
func (l *localLeaf) usable(now time.Time) bool {
	return l != nil && !now.Before(l.notBefore) && now.Before(l.notAfter)
}

// OpenLocalCA loads the CA in cfg.Dir, creating it on first use, and
// issues a first leaf. It fails if the directory holds only one of the two
// files, if either file is corrupt, if the key file's mode lets group or
// other users access it (ErrInsecureKeyFile), if the root is not the
// name-constrained CA this package creates, or if the root expires within
// one leaf lifetime.
func OpenLocalCA(cfg LocalCAConfig) (*LocalCA, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeafLifetime == 0 {
		cfg.LeafLifetime = defaultLeafLifetime
	}
	var problems []error
	if cfg.Dir == "" {
		problems = append(problems, errors.New("dir is required"))
	}
	if cfg.LeafLifetime < time.Minute {
		problems = append(problems, fmt.Errorf("leaf lifetime %v is shorter than one minute", cfg.LeafLifetime))
	}
	dnsNames, ips, err := localLeafNames(cfg.Names)
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("local ca: %w", errors.Join(problems...))
	}

	return openCA(cfg, serverCA, dnsNames, ips)
}

// openCA opens (or creates) the CA of kind in cfg.Dir and issues a first
// leaf.
func openCA(cfg LocalCAConfig, kind *caKind, dnsNames []string, ips []net.IP) (*LocalCA, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeafLifetime == 0 {
		cfg.LeafLifetime = defaultLeafLifetime
	}
	if cfg.Dir == "" || cfg.LeafLifetime < time.Minute {
		return nil, errors.New("ca: a directory and a leaf lifetime of at least a minute are required")
	}
	ca := &LocalCA{
		kind:     kind,
		certFile: filepath.Join(cfg.Dir, kind.certName),
		dnsNames: dnsNames,
		ips:      ips,
		now:      cfg.Now,
		lifetime: cfg.LeafLifetime,
		log:      cfg.Logger,
	}
	if err := ca.loadOrCreate(cfg.Dir); err != nil {
		return nil, fmt.Errorf("local ca %s: %w", cfg.Dir, err)
	}
	now := ca.now()
	if !now.Add(ca.lifetime).Before(ca.root.NotAfter) {
		return nil, fmt.Errorf("local ca %s: root expires at %s, within one leaf lifetime; remove the directory to create a new CA",
			cfg.Dir, ca.root.NotAfter.Format(time.RFC3339))
	}
	if now.Before(ca.root.NotBefore) {
		return nil, fmt.Errorf("local ca %s: root is not valid before %s; check the system clock",
			cfg.Dir, ca.root.NotBefore.Format(time.RFC3339))
	}
	leaf, err := ca.issue(now)
	if err != nil {
		return nil, fmt.Errorf("local ca %s: %w", cfg.Dir, err)
	}
	ca.leaf.Store(leaf)
	return ca, nil
}

// CertFile returns the path of the root certificate (ca.pem), the file to
// install in a browser or system trust store.
func (ca *LocalCA) CertFile() string { return ca.certFile }

// Root returns the parsed root certificate. Callers must not modify it.
func (ca *LocalCA) Root() *x509.Certificate { return ca.root }

// Pool returns a new CertPool holding only the root, for clients and tests.
func (ca *LocalCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// GetCertificate returns the current leaf, whatever the ServerName. When
// less than a third of the leaf's lifetime remains it issues a new one;
// while that happens, other handshakes keep getting the old leaf. It fails
// only when no valid leaf exists and issuing one fails.
func (ca *LocalCA) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := ca.now()
	cur := ca.leaf.Load()
	if cur.fresh(now) {
		return cur.cert, nil
	}
	return ca.renew(now, cur)
}

// renew issues a replacement for cur, unless another goroutine is already
// doing so and cur can still be served.
func (ca *LocalCA) renew(now time.Time, cur *localLeaf) (*tls.Certificate, error) {
	usable := cur.usable(now)
	if usable {
		if !ca.mu.TryLock() {
			return cur.cert, nil
		}
	} else {
		ca.mu.Lock()
	}
	defer ca.mu.Unlock()
	if l := ca.leaf.Load(); l.fresh(now) {
		return l.cert, nil
	}
	next, err := ca.issue(now)
	if err != nil {
		if usable {
			ca.log.Error("local ca: renew leaf; serving the current one", "err", err,
				"not_after", cur.notAfter)
			return cur.cert, nil
		}
		return nil, fmt.Errorf("local ca: issue leaf: %w", err)
	}
	ca.leaf.Store(next)
	return next.cert, nil
}

// issue creates and signs a new leaf valid from now-backdate to
// now+lifetime.
func (ca *LocalCA) issue(now time.Time) (*localLeaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: ca.kind.leafName, Organization: []string{ca.kind.org}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ca.lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{ca.kind.usage},
		BasicConstraintsValid: true,
		DNSNames:              ca.dnsNames,
		IPAddresses:           ca.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse leaf: %w", err)
	}
	ca.log.Info("local ca: issued leaf", "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter, "dns_names", leaf.DNSNames, "ip_addresses", leaf.IPAddresses)
	return &localLeaf{
		cert:      &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		notBefore: leaf.NotBefore,
		notAfter:  leaf.NotAfter,
		renewAt:   leaf.NotAfter.Add(-ca.lifetime / 3),
	}, nil
}

// loadOrCreate sets ca.root and ca.key from dir, creating both files when
// neither exists.
func (ca *LocalCA) loadOrCreate(dir string) error {
	if err := ensurePrivateDir(dir, ca.log); err != nil {
		return err
	}
	keyFile := filepath.Join(dir, ca.kind.keyName)
	certExists, err := fileExists(ca.certFile)
	if err != nil {
		return err
	}
	keyExists, err := fileExists(keyFile)
	if err != nil {
		return err
	}
	switch {
	case certExists && keyExists:
		return ca.load(keyFile)
	case !certExists && !keyExists:
		return ca.create(keyFile)
	case certExists:
		return fmt.Errorf("%s exists but %s does not; restore it, or remove %s to create a new CA", ca.kind.certName, ca.kind.keyName, ca.kind.certName)
	default:
		return fmt.Errorf("%s exists but %s does not; restore it, or remove %s to create a new CA", ca.kind.keyName, ca.kind.certName, ca.kind.keyName)
	}
}

// create generates a new root and writes it to disk.
func (ca *LocalCA) create(keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := ca.now()
	// The serial's low bits tell one developer's CA from another's in a
	// trust store listing.
	id := hex.EncodeToString(serial.Bytes())
	id = id[max(0, len(id)-8):]
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   ca.kind.rootName + " " + id,
			Organization: []string{ca.kind.rootName},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{ca.kind.usage},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		// Critical, so that a verifier that does not understand name
		// constraints must reject the chain rather than ignore them.
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         ca.kind.dnsDomains,
		PermittedIPRanges:           ca.kind.ipRanges,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("sign root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parse root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal root key: %w", err)
	}
	// The key goes first: a crash between the two writes leaves a key
	// without a certificate, which OpenLocalCA reports instead of reusing.
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(ca.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	ca.root, ca.key = root, key
	ca.log.Info("local ca: created root", "cert_file", ca.certFile,
		"sha256", fingerprint(root), "not_after", root.NotAfter)
	return nil
}

// load reads an existing root and checks that it is one this package made.
func (ca *LocalCA) load(keyFile string) error {
	if err := checkKeyFileMode(keyFile); err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(keyFile) //nolint:gosec // G304: the path is operator configuration
	if err != nil {
		return err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return fmt.Errorf("%s: no PEM \"PRIVATE KEY\" block", keyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: parse key: %w", keyFile, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return fmt.Errorf("%s: not an ECDSA P-256 key", keyFile)
	}

	certPEM, err := os.ReadFile(ca.certFile)
	if err != nil {
		return err
	}
	block, _ = pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s: no PEM \"CERTIFICATE\" block", ca.certFile)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: parse certificate: %w", ca.certFile, err)
	}
	if !root.IsCA || !root.BasicConstraintsValid {
		return fmt.Errorf("%s: not a CA certificate", ca.certFile)
	}
	if pub, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("%s does not match %s", ca.certFile, keyFile)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("%s: not self-signed: %w", ca.certFile, err)
	}
	if !ca.kind.hasConstraints(root) {
		return fmt.Errorf("%s: missing keyway's critical name constraints (%s); refusing an unconstrained CA", ca.certFile, ca.kind.constraints)
	}
	ca.root, ca.key = root, key
	ca.log.Debug("local ca: loaded root", "cert_file", ca.certFile, "sha256", fingerprint(root))
	return nil
}

// caKind is what sets one kind of keyway CA apart: its files, names, the
// one extended key usage of its root and leaves, and its name constraints.
type caKind struct {
	certName, keyName  string
	rootName, leafName string
	org                string
	usage              x509.ExtKeyUsage
	dnsDomains         []string
	ipRanges           []*net.IPNet
	constraints        string // for messages
}

// serverCA is the local development CA that serves HTTPS on localhost.
var serverCA = &caKind{
	certName: CACertFileName, keyName: CAKeyFileName,
	rootName: "keyway local development CA", leafName: "localhost", org: "keyway local development",
	usage: x509.ExtKeyUsageServerAuth, dnsDomains: permittedDNSDomains, ipRanges: permittedIPRanges,
	constraints: "localhost, loopback",
}

// hasConstraints reports whether c carries exactly the critical name
// constraints that create writes for this kind.
func (k *caKind) hasConstraints(c *x509.Certificate) bool {
	if !c.PermittedDNSDomainsCritical ||
		!slices.Equal(c.PermittedDNSDomains, k.dnsDomains) ||
		len(c.PermittedIPRanges) != len(k.ipRanges) {
		return false
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != k.usage {
		return false
	}
	for i, r := range c.PermittedIPRanges {
		want := k.ipRanges[i]
		if !r.IP.Equal(want.IP) || r.Mask.String() != want.Mask.String() {
			return false
		}
	}
	return len(c.ExcludedDNSDomains) == 0 && len(c.ExcludedIPRanges) == 0
}

// localLeafNames returns the leaf SANs: the defaults plus extra, each of
// which must fit the root's name constraints.
func localLeafNames(extra []string) ([]string, []net.IP, error) {
	dnsNames := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	var problems []error
	for _, n := range extra {
		if ip := net.ParseIP(n); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(permittedIPRanges, func(r *net.IPNet) bool { return r.Contains(ip) }) {
				problems = append(problems, fmt.Errorf("name %q: only loopback addresses (127.0.0.0/8, ::1) are allowed", n))
				continue
			}
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		d := strings.TrimSuffix(strings.ToLower(n), ".")
		if !validLocalDNSName(d) {
			problems = append(problems, fmt.Errorf("name %q: must be localhost or a name under .localhost (letters, digits, hyphens; no wildcards)", n))
			continue
		}
		if !slices.Contains(dnsNames, d) {
			dnsNames = append(dnsNames, d)
		}
	}
	return dnsNames, ips, errors.Join(problems...)
}

// validLocalDNSName reports whether d is "localhost" or a name of LDH
// labels ending in ".localhost".
func validLocalDNSName(d string) bool {
	if d != "localhost" && !strings.HasSuffix(d, ".localhost") {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

// validLabel reports whether s is a DNS label of letters, digits and
// inner hyphens (RFC 1123 §2.1), lower case.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// checkKeyFileMode returns ErrInsecureKeyFile if group or other users may
// access path. File modes mean little on Windows, so it only checks that
// path is a regular file there.
func checkKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o, want 0600 (chmod 600 %s): %w",
			path, fi.Mode().Perm(), path, ErrInsecureKeyFile)
	}
	return nil
}

// ensurePrivateDir creates dir with mode 0700 if missing. An existing
// directory is left as it is, with a warning if others may write to it.
func ensurePrivateDir(dir string, log *slog.Logger) error {
	fi, err := makeDir(dir)
	if err != nil || fi == nil {
		return err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o022 != 0 {
		log.Warn("local ca: directory is writable by group or other users; anyone who can write it can replace the CA",
			"dir", dir, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	return nil
}

// makeDir creates dir with mode 0700 when it is missing (returning a nil
// FileInfo), or returns the FileInfo of the directory that exists.
func makeDir(dir string) (fs.FileInfo, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		// MkdirAll is subject to the umask; make the mode exact.
		return nil, os.Chmod(dir, 0o700) //nolint:gosec // G302: a directory needs its x bit; 0700 is owner-only
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	return fi, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so that readers never see a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// fileExists reports whether path exists, and any error other than
// "does not exist".
func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// randomSerial returns a random positive 128-bit serial number
// (CA/Browser Forum BR §7.1 asks for at least 64 random bits).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// fingerprint returns the hex SHA-256 of c's DER encoding.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
