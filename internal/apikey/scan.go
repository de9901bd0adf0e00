package apikey

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// Finding is one key found in a file. It carries the key's public parts
// only: a scanner's output ends up in CI logs and terminals, so the secret
// must never leave ScanReader.
type Finding struct {
	// File is the name the reader was scanned under (a path for ScanPath).
	File string
	// Line is the 1-based line number of the key.
	Line int
	// Column is the 1-based byte offset of the key within its line.
	Column int
	// ID is the key's public ID in display form ("key_" + ID), the handle
	// by which it is revoked.
	ID string
	// Env is the key's environment.
	Env Env
	// Masked is Mask of the key: prefix, environment, ID and an ellipsis.
	Masked string
	// Raw is the key itself, for asking whether it is live or revoking
	// it (Inspect, ReportLeak). It prints as [redacted].
	Raw RawKey `json:"-"`
}

// RawKey is a key a scan found. Printed (%v, %+v, %#v) it is [redacted],
// so that a finding logged whole never leaks it; Reveal gives the key.
type RawKey struct{ key string }

func (RawKey) String() string   { return "[redacted]" }
func (RawKey) GoString() string { return "[redacted]" }

// Reveal returns the key.
func (r RawKey) Reveal() string { return r.key }

// Scanner limits.
const (
	// ScanMaxFileSize is the size above which ScanPath skips a file: keys
	// live in source and config, not in disk images and database dumps.
	ScanMaxFileSize = 50 << 20
	// scanSniffLen is how much of a file is checked for a NUL byte to tell
	// binary files apart (the heuristic of git and grep).
	scanSniffLen = 8 << 10
	// scanChunk is how much ScanReader reads at once. Lines are not split
	// on: memory stays bounded however long a line is (minified JS, a
	// one-line JSON dump).
	scanChunk = 64 << 10
)

// scanRE is ScanPattern compiled; pure table set-up.
var scanRE = regexp.MustCompile(ScanPattern)

var keyStart = []byte(Prefix)

// ScanReader scans r, named name in the findings, and calls fn for each
// key that matches ScanPattern and passes Parse (so a random lookalike
// with a wrong checksum is not reported). It returns the first read error,
// after reporting the keys found before it.
//
// r is read in chunks of fixed size that overlap by MaxLen+1 bytes, so a
// key that straddles two chunks is still found, its word boundaries are
// judged on the real neighbouring bytes, and memory does not grow with the
// length of a line.
func ScanReader(name string, r io.Reader, fn func(Finding)) error {
	return scanReader(name, r, scanChunk, fn)
}

// scanReader is ScanReader with the chunk size as a parameter, so that
// tests can put chunk boundaries anywhere.
func scanReader(name string, r io.Reader, chunk int, fn func(Finding)) error {
	s := lineScanner{name: name, fn: fn, line: 1}
	buf := make([]byte, 0, chunk+MaxLen+1)
	// done is how many leading bytes of buf were already searched: they are
	// kept only as the left neighbour of the next match.
	done := 0
	for {
		var err error
		buf, err = fill(r, buf)
		// A match starting before end is complete and so is the byte after
		// it (the right word boundary), unless the input has ended.
		end := len(buf) - MaxLen
		if err != nil {
			end = len(buf)
		}
		if end > done {
			s.search(buf, done, end)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// Keep the byte before end (left boundary of the next match) and
		// everything from end on.
		keep := end - 1
		s.advance(buf, keep)
		buf = buf[:copy(buf, buf[keep:])]
		done = 1
	}
}

// fill reads into buf until it is full or r fails (io.EOF included): the
// caller relies on a buffer that is not full meaning the input has ended.
// Unlike io.ReadFull, it keeps a reader's own io.ErrUnexpectedEOF (a
// truncated stream) apart from a clean end.
func fill(r io.Reader, buf []byte) ([]byte, error) {
	for len(buf) < cap(buf) {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// lineScanner tracks line numbers across chunks. Offsets are absolute
// positions in the input; base is the absolute offset of buf[0].
type lineScanner struct {
	name      string
	fn        func(Finding)
	base      int64
	counted   int64 // newlines are counted in [0, counted)
	line      int
	lineStart int64
}

// search reports the keys starting in buf[from:to].
func (s *lineScanner) search(buf []byte, from, to int) {
	if !bytes.Contains(buf[from:], keyStart) {
		return
	}
	for _, m := range scanRE.FindAllIndex(buf, -1) {
		if m[0] < from || m[0] >= to {
			continue
		}
		p, err := Parse(string(buf[m[0]:m[1]]))
		if err != nil {
			continue
		}
		s.countTo(buf, m[0])
		s.fn(Finding{
			File:   s.name,
			Line:   s.line,
			Column: int(s.base+int64(m[0])-s.lineStart) + 1,
			ID:     DisplayID(p.ID),
			Env:    p.Env,
			Masked: Mask(p),
			Raw:    RawKey{p.Raw},
		})
	}
}

// countTo counts the newlines before buf[i].
func (s *lineScanner) countTo(buf []byte, i int) {
	from := int(s.counted - s.base)
	for j := from; j < i; j++ {
		if buf[j] == '\n' {
			s.line++
			s.lineStart = s.base + int64(j) + 1
		}
	}
	s.counted = s.base + int64(i)
}

// advance counts the newlines before buf[i] and makes buf[i] the new start
// of the buffer.
func (s *lineScanner) advance(buf []byte, i int) {
	s.countTo(buf, i)
	s.base += int64(i)
}

// ScanPath scans root, a file or a directory tree, and calls fn for each
// key found (see ScanReader). It skips:
//
//   - directories named .git below root (the object store is compressed,
//     and what matters is the working tree that is about to be committed);
//     nothing else (node_modules, vendor) is skipped: a key in a vendored
//     file leaks just the same;
//   - symbolic links, root included: they are never followed, so a scan
//     stays inside the tree it was given and cannot loop;
//   - anything that is not a regular file (devices, FIFOs, sockets);
//   - binary files (a NUL byte in the first 8 KiB);
//   - files larger than ScanMaxFileSize.
//
// An unreadable file or directory does not stop the scan: its error is
// collected and all of them are returned together (errors.Join).
func ScanPath(root string, fn func(Finding)) error {
	var errs []error
	walk := func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// The root cannot be read, or a directory cannot be listed
			// (WalkDir then skips it).
			errs = append(errs, err)
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" && path != root {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := scanFile(path, fn); err != nil {
			errs = append(errs, err)
		}
		return nil
	}
	// WalkDir follows root when it is a symbolic link; we do not.
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil
	}
	if err := filepath.WalkDir(root, walk); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// scanFile scans one regular file, unless it is binary or too large.
func scanFile(path string, fn func(Finding)) error {
	before, err := os.Lstat(path)
	if err != nil {
		return err
	}
	f, err := os.Open(path) //nolint:gosec // G304: reading the files the user named is the point
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	// The path may have been swapped for a symbolic link (or a FIFO) since
	// the walk saw it; only the file that was seen is read.
	if !fi.Mode().IsRegular() || !os.SameFile(before, fi) {
		return nil
	}
	if fi.Size() > ScanMaxFileSize {
		return nil
	}
	br := bufio.NewReaderSize(io.LimitReader(f, ScanMaxFileSize), scanSniffLen)
	head, err := br.Peek(scanSniffLen)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return nil
	}
	// A read error from *os.File already names the path.
	return ScanReader(path, br, fn)
}
