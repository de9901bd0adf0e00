package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const defaultCheckInterval = time.Second

// FileSourceConfig configures NewFileSource.
type FileSourceConfig struct {
	// CertFile is a PEM file with the leaf certificate first, followed by
	// any intermediates. Required.
	CertFile string
	// KeyFile is the PEM private key of the leaf. Required. A key readable
	// by group or other users is used, with a warning, since secret
	// mounts (Kubernetes, Docker) often have such modes.
	KeyFile string
	// CheckInterval is how often, at most, GetCertificate looks at the
	// files' size and modification time. Default 1s.
	CheckInterval time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Logger receives reload events; key material is never logged.
	// Default: discard.
	Logger *slog.Logger
}

// FileSource serves a certificate and key from PEM files and picks up
// replacements without a restart. A replacement that cannot be used
// (unreadable, mismatched, unparsable, expired) is logged once and the
// previous pair keeps being served, so no handshake fails because of a
// half-finished or broken rotation. It is safe for concurrent use.
//
// Writing the two files is not atomic: if a check falls between the two
// writes, the mismatch is logged once and the new pair is picked up at
// the next check after the second write. Renaming complete files into
// place (or a symlink swap, as certbot and Kubernetes do) avoids that log
// line.
type FileSource struct {
	certFile string
	keyFile  string
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	cur       atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // Unix nanoseconds; the hot path only reads it

	mu   sync.Mutex // serialises checks and reloads; guards seen
	seen pairStamp  // the files as they were at the last load attempt
}

var _ CertSource = (*FileSource)(nil)

// fileStamp identifies a version of a file cheaply. err is set when the
// file could not be examined, so that a missing file is a version too.
type fileStamp struct {
	size  int64
	mtime int64
	err   string
}

type pairStamp struct{ cert, key fileStamp }

func stampFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

// NewFileSource loads the pair named by cfg and fails if it cannot be
// used: missing or unreadable files, a key that does not match the
// certificate, or an expired certificate.
func NewFileSource(cfg FileSourceConfig) (*FileSource, error) {
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = defaultCheckInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var problems []error
	if cfg.CertFile == "" {
		problems = append(problems, errors.New("cert file is required"))
	}
	if cfg.KeyFile == "" {
		problems = append(problems, errors.New("key file is required"))
	}
	if cfg.CheckInterval < 0 {
		problems = append(problems, fmt.Errorf("check interval %v is negative", cfg.CheckInterval))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("tls files: %w", errors.Join(problems...))
	}
	f := &FileSource{
		certFile: cfg.CertFile,
		keyFile:  cfg.KeyFile,
		interval: cfg.CheckInterval,
		now:      cfg.Now,
		log:      cfg.Logger,
	}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// GetCertificate returns the current pair, whatever the ServerName. At
// most once per CheckInterval, one handshake also checks whether the
// files changed and, if so, loads them. It never returns an error.
func (f *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := f.now()
	if now.UnixNano() >= f.nextCheck.Load() && f.mu.TryLock() {
		f.checkLocked(now)
		f.mu.Unlock()
	}
	return f.cur.Load(), nil
}

// checkLocked loads the pair if the files changed since the last attempt.
// f.mu must be held.
func (f *FileSource) checkLocked(now time.Time) {
	if now.UnixNano() < f.nextCheck.Load() {
		return // another goroutine checked while we waited
	}
	f.nextCheck.Store(now.Add(f.interval).UnixNano())
	st := pairStamp{cert: stampFile(f.certFile), key: stampFile(f.keyFile)}
	if st == f.seen {
		return
	}
	f.seen = st
	cert, err := f.load(now)
	if err != nil {
		// Logged once per change: f.seen now holds this broken version.
		f.log.Error("tls files: keeping the current certificate; the changed files cannot be used",
			"cert_file", f.certFile, "key_file", f.keyFile, "err", err)
		return
	}
	f.cur.Store(cert)
}

// Reload loads the files now, whether or not they changed. On error the
// current pair stays in use and the error is returned, not logged.
func (f *FileSource) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	f.seen = pairStamp{cert: stampFile(f.certFile), key: stampFile(f.keyFile)}
	f.nextCheck.Store(now.Add(f.interval).UnixNano())
	cert, err := f.load(now)
	if err != nil {
		return err
	}
	f.cur.Store(cert)
	return nil
}

// load reads and checks the pair.
func (f *FileSource) load(now time.Time) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls files: load %s and %s: %w", f.certFile, f.keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls files: parse %s: %w", f.certFile, err)
		}
		cert.Leaf = leaf
	}
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("tls files: %s expired at %s", f.certFile, leaf.NotAfter.Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		f.log.Warn("tls files: certificate is not valid yet; clients will reject it until then",
			"cert_file", f.certFile, "not_before", leaf.NotBefore)
	}
	if fi, err := os.Stat(f.keyFile); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		f.log.Warn("tls files: key file is accessible by group or other users",
			"key_file", f.keyFile, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	f.log.Info("tls files: loaded certificate", "cert_file", f.certFile,
		"subject", leaf.Subject.String(), "dns_names", leaf.DNSNames, "ip_addresses", leaf.IPAddresses,
		"not_after", leaf.NotAfter, "sha256", fingerprint(leaf))
	return &cert, nil
}
