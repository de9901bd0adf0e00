// Package secret loads the secrets keyway keeps outside its database: the
// pepper that keys stored hashes, the key-encryption key, the audit signing
// key. Each comes from, in order of precedence, an environment variable, a
// command (a secret manager's CLI, run without a shell), or a file that is
// made on first use with 32 random bytes and mode 0600.
//
// Every secret is at least 32 bytes, written in standard base64. A file
// that others may read is refused: with the database, it is what a thief
// needs. Errors never carry a secret's value, nor a command's output.
package secret

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// MinSize is the least number of bytes a secret holds.
const MinSize = 32

// ErrMissing means Load was told not to create the file and found none.
var ErrMissing = errors.New("secret file missing")

// Source says where one secret lives.
type Source struct {
	// Name names the secret in messages: "pepper", "audit signing key".
	Name string
	// Env is the environment variable that may hold it; it wins when set.
	Env string
	// Command, when set, is run (no shell, 30 s limit) and its standard
	// output is the secret. It wins over File.
	Command []string
	// File holds the secret, and is created on first use.
	File string
}

// Origin says where Load would take the secret from: "env", "command" or
// "file".
func (s Source) Origin(getenv func(string) string) string {
	switch {
	case s.Env != "" && strings.TrimSpace(getenv(s.Env)) != "":
		return "env"
	case len(s.Command) > 0:
		return "command"
	default:
		return "file"
	}
}

// Load returns the secret. With create, a missing file is made; without, it
// is an error wrapping ErrMissing that says where Load looked, so that a
// command run in the wrong folder never mints a secret no server knows.
func (s Source) Load(getenv func(string) string, create bool) ([]byte, error) {
	ring, err := s.LoadRing(getenv, create)
	if err != nil {
		return nil, err
	}
	if len(ring) != 1 {
		return nil, fmt.Errorf("%s: want one key, found %d", s.Name, len(ring))
	}
	return ring[0], nil
}

// LoadRing is Load for a secret that may hold several keys, separated by
// white space (one per line in a file): the current one first, then older
// ones that must still open what they sealed.
func (s Source) LoadRing(getenv func(string) string, create bool) ([][]byte, error) {
	switch s.Origin(getenv) {
	case "env":
		return decode(getenv(s.Env), s.Env+" must hold keys of at least 32 bytes in base64")
	case "command":
		return s.fromCommand()
	}
	p, err := s.read()
	if !errors.Is(err, fs.ErrNotExist) {
		return p, err
	}
	if !create {
		return nil, fmt.Errorf("%w: no %s file at %s", ErrMissing, s.Name, s.File)
	}
	return s.create()
}

// Prepend makes a new random key the current one of a file source, keeping
// the older ones after it, and returns the new ring. The file is replaced
// whole (a new file, synced, renamed over it), so a reader sees the old
// ring or the new one. Only a file source can be changed by keyway.
func (s Source) Prepend(getenv func(string) string) ([][]byte, error) {
	if o := s.Origin(getenv); o != "file" {
		return nil, fmt.Errorf("the %s comes from the %s: put the new key first there, then rotate", s.Name, o)
	}
	ring, err := s.read()
	if err != nil {
		return nil, err
	}
	p := make([]byte, MinSize)
	if _, err := rand.Read(p); err != nil {
		return nil, err
	}
	ring = append([][]byte{p}, ring...)
	var text strings.Builder
	for _, k := range ring {
		text.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	tmp := s.File + ".new"
	if err := writeNew(tmp, text.String()); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("write %s file: %w", s.Name, err)
	}
	if err := os.Rename(tmp, s.File); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("replace %s file: %w", s.Name, err)
	}
	return ring, nil
}

// writeNew writes a new file, mode 0600, and syncs it.
func writeNew(name, text string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: path from the operator's config
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (s Source) create() ([][]byte, error) {
	p := make([]byte, MinSize)
	if _, err := rand.Read(p); err != nil {
		return nil, err
	}
	// Written whole under a name of its own, then linked into place: a
	// link never replaces a file, and a process that starts at the same
	// moment never reads one half written.
	tmp, err := os.CreateTemp(filepath.Dir(s.File), "."+filepath.Base(s.File)+".*.tmp") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("create %s file: %w", s.Name, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(p) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), s.File)
	}
	if errors.Is(err, fs.ErrExist) {
		return s.read() // another process made it first
	}
	if err != nil {
		return nil, fmt.Errorf("create %s file: %w", s.Name, err)
	}
	return [][]byte{p}, nil
}

func (s Source) read() ([][]byte, error) {
	st, err := os.Stat(s.File)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s file %s has mode %v: others must not read it (chmod 600)", s.Name, s.File, st.Mode().Perm())
	}
	b, err := os.ReadFile(s.File)
	if err != nil {
		return nil, err
	}
	return decode(string(b), fmt.Sprintf("%s file %s must hold keys of at least 32 bytes in base64", s.Name, s.File))
}

// fromCommand runs the command and decodes its standard output. Its
// standard error is not shown: it might echo the secret.
func (s Source) fromCommand() ([][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.Command[0], s.Command[1:]...).Output() //nolint:gosec // G204: the operator's own configured command
	if err != nil {
		return nil, fmt.Errorf("%s command %q failed: %w", s.Name, s.Command[0], exitOnly(err))
	}
	return decode(string(out), fmt.Sprintf("%s command %q must print keys of at least 32 bytes in base64", s.Name, s.Command[0]))
}

// decode reads keys in base64 separated by white space.
func decode(v, msg string) ([][]byte, error) {
	var ring [][]byte
	for _, f := range strings.Fields(v) {
		p, err := base64.StdEncoding.DecodeString(f)
		if err != nil || len(p) < MinSize {
			return nil, errors.New(msg)
		}
		ring = append(ring, p)
	}
	if len(ring) == 0 {
		return nil, errors.New(msg)
	}
	return ring, nil
}

// exitOnly keeps an exec error's exit status and drops captured output.
func exitOnly(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return errors.New(ee.String())
	}
	return err
}
