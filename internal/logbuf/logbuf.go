// Package logbuf buffers log lines in memory and writes them out in batches,
// from a goroutine of its own, so that a request's access-log line costs an
// append: no request ever makes the system call, nor waits behind one.
//
// A line waits at most the flush interval (100ms by default) before it is
// written; a buffer half full is written at once. Flush writes everything
// now (the logger calls it after every warning and error, so those are
// never held back) and Close writes the rest and stops the writer.
//
// The output may stall (a full pipe, a log collector that stopped reading).
// A line that finds no room waits for the writer to catch up, up to
// MaxWait; if it still finds none, it is dropped and counted (Dropped),
// and so is every line after it, at once, until the output moves again:
// a stuck log delays requests once by at most MaxWait and never stops
// them. Flush and Close give up after their own bound and report
// ErrStalled. Nothing is dropped
// while the output keeps up, and Close writes every line taken before it:
// a clean stop loses no line. A process that crashes may lose the lines of
// its last interval, as nginx's buffered access_log does; the audit log,
// which must not lose anything, is in the database and never goes through
// here.
package logbuf

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of New when size or interval is zero.
const (
	DefaultSize     = 64 << 10
	DefaultInterval = 100 * time.Millisecond
)

// Bounds on waiting for a stalled output.
var (
	// MaxWait is how long a line waits for room before it is dropped:
	// long enough for a busy writer to catch up, so that nothing is
	// dropped while the output keeps up.
	MaxWait = time.Second
	// FlushWait is how long Flush and Close wait for the output.
	FlushWait = 5 * time.Second
)

// ErrStalled means the output did not take the lines in time.
var ErrStalled = errors.New("logbuf: the log output is stalled")

// Writer is an io.Writer that batches writes to another.
type Writer struct {
	out  io.Writer
	size int

	mu    sync.Mutex
	buf   []byte // lines taken, waiting for the writer
	spare []byte // the writer's other buffer; nil while it writes it
	// swapped is closed when the writer takes buf, so that a line waiting
	// for room can try again.
	swapped chan struct{}
	err     error // the first error of out, returned by Flush and Close
	closed  bool
	// stalled is set when a line waited MaxWait in vain, and cleared when
	// the writer next writes: meanwhile lines without room drop at once.
	stalled bool

	dropped atomic.Int64
	kick    chan struct{}
	flushes chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// New returns a Writer to out that writes when half of size bytes are
// waiting or every interval, whichever comes first. Call Close to stop it.
func New(out io.Writer, size int, interval time.Duration) *Writer {
	if size <= 0 {
		size = DefaultSize
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	w := &Writer{out: out, size: size, buf: make([]byte, 0, size), spare: make([]byte, 0, size),
		swapped: make(chan struct{}), kick: make(chan struct{}, 1), flushes: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.writer(interval)
	return w
}

// writer is the one goroutine that writes to out.
func (w *Writer) writer(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var reply chan struct{}
		select {
		case <-t.C:
		case <-w.kick:
		case reply = <-w.flushes:
		case <-w.stop:
			w.writeOut()
			return
		}
		w.writeOut()
		if reply != nil {
			close(reply)
		}
	}
}

// writeOut takes the waiting lines and writes them, outside the lock.
func (w *Writer) writeOut() {
	w.mu.Lock()
	b := w.buf
	w.buf, w.spare = w.spare[:0], nil
	close(w.swapped)
	w.swapped = make(chan struct{})
	w.mu.Unlock()
	var err error
	if len(b) > 0 {
		_, err = w.out.Write(b)
	}
	w.mu.Lock()
	w.spare = b[:0]
	w.stalled = false
	if err != nil && w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// Write takes p (one whole line) for the writer. It never fails a caller:
// a logger has nowhere better to send a line. If the buffer has no room
// for p, Write waits up to MaxWait for the writer to take it, then drops p
// and counts it. After Close, Write writes through, so that nothing logged
// late is lost.
func (w *Writer) Write(p []byte) (int, error) {
	var deadline time.Time
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return w.out.Write(p)
		}
		// An empty buffer takes any line, however long: lines are never split.
		if len(w.buf) == 0 || len(w.buf)+len(p) <= w.size {
			w.buf = append(w.buf, p...)
			half := len(w.buf) >= w.size/2
			w.mu.Unlock()
			if half {
				w.nudge()
			}
			return len(p), nil
		}
		swapped, stalled := w.swapped, w.stalled
		w.mu.Unlock()
		w.nudge()
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(MaxWait)
		}
		if stalled || !now.Before(deadline) {
			w.mu.Lock()
			w.stalled = true
			w.mu.Unlock()
			w.dropped.Add(1)
			return len(p), nil
		}
		t := time.NewTimer(deadline.Sub(now))
		select {
		case <-swapped:
		case <-t.C:
		}
		t.Stop()
	}
}

// nudge asks the writer to write now.
func (w *Writer) nudge() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Dropped is how many lines found no room in time: the output stalled.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// Flush writes what is waiting and returns the first error the output
// ever gave, or ErrStalled if it did not take the lines within FlushWait.
func (w *Writer) Flush() error {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if !closed {
		reply := make(chan struct{})
		t := time.NewTimer(FlushWait)
		defer t.Stop()
		select {
		case w.flushes <- reply:
		case <-t.C:
			return ErrStalled
		}
		select {
		case <-reply:
		case <-t.C:
			return ErrStalled
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close writes every line taken before it and stops the writer; later
// writes go straight through. It returns the first error the output gave,
// or ErrStalled if the output did not take the lines within FlushWait.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	t := time.NewTimer(FlushWait)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		return ErrStalled
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
