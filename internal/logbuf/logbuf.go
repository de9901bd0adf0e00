// Package logbuf buffers log lines in memory and writes them out in batches,
// so that a request's access-log line costs an append, not a system call
// made under the log handler's lock (where every request in flight would
// queue behind it).
//
// A line waits at most the flush interval (100ms by default) before it is
// written; a full buffer is written at once; Flush writes everything now
// (the logger calls it after every warning and error, so those are never
// held back) and Close writes the rest and stops the flusher. A process
// that crashes may lose the lines of its last interval, as nginx's buffered
// access_log does; the audit log, which must not lose anything, is in the
// database and never goes through here.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// Defaults of New when size or interval is zero.
const (
	DefaultSize     = 64 << 10
	DefaultInterval = 100 * time.Millisecond
)

// Writer is an io.Writer that batches writes to another.
type Writer struct {
	out  io.Writer
	size int

	mu     sync.Mutex
	buf    []byte
	err    error // the first error of out, returned by Flush and Close
	closed bool

	stop chan struct{}
	done chan struct{}
}

// New returns a Writer to out that writes when size bytes are waiting or
// every interval, whichever comes first. Call Close to stop it.
func New(out io.Writer, size int, interval time.Duration) *Writer {
	if size <= 0 {
		size = DefaultSize
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	w := &Writer{out: out, size: size, buf: make([]byte, 0, size), stop: make(chan struct{}), done: make(chan struct{})}
	go w.flusher(interval)
	return w
}

func (w *Writer) flusher(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write appends p to the buffer, writing the buffer first if p would not
// fit. A p larger than the buffer is written through. After Close, Write
// writes through, so that nothing logged late is lost.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.out.Write(p)
	}
	if len(w.buf)+len(p) > w.size {
		w.flushLocked()
		if len(p) > w.size {
			if _, err := w.out.Write(p); err != nil && w.err == nil {
				w.err = err
			}
			// The line is taken either way: a logger has nowhere better
			// to send it, and an error here must not fail a request.
			return len(p), nil
		}
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Flush writes what is waiting. It returns the first error the underlying
// writer ever gave.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
	return w.err
}

func (w *Writer) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	if _, err := w.out.Write(w.buf); err != nil && w.err == nil {
		w.err = err
	}
	w.buf = w.buf[:0]
}

// Close writes what is waiting and stops the flusher; later writes go
// straight through. It returns the first error the underlying writer gave.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.err
	}
	w.closed = true
	w.flushLocked()
	err := w.err
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	return err
}
