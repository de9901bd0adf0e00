package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the flusher and the test at once;
// it counts the writes it gets.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
	fail   error
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return 0, l.fail
	}
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Writes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

func TestLinesWaitUntilFlushAndComeOutInOrder(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 1<<10, time.Hour)
	defer func() { _ = w.Close() }()
	for i := range 5 {
		if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if got := out.String(); got != "" {
		t.Fatalf("written before any flush: %q", got)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "line 0\nline 1\nline 2\nline 3\nline 4\n"; got != want {
		t.Fatalf("after Flush: %q, want %q", got, want)
	}
	if out.Writes() != 1 {
		t.Fatalf("%d writes for one flush, want 1 batch", out.Writes())
	}
}

func TestFullBufferIsWrittenAndLongLinesPassThroughInOrder(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 16, time.Hour)
	defer func() { _ = w.Close() }()
	_, _ = w.Write([]byte("aaaaaaaaaa\n")) // 11 bytes wait
	if out.String() != "" {
		t.Fatal("a line that fits was written at once")
	}
	_, _ = w.Write([]byte("bbbbbbbbbb\n")) // would overflow: the first goes out
	if got := out.String(); got != "aaaaaaaaaa\n" {
		t.Fatalf("after overflow: %q", got)
	}
	long := strings.Repeat("c", 40) + "\n"
	if n, err := w.Write([]byte(long)); n != len(long) || err != nil {
		t.Fatalf("long line: %d, %v", n, err)
	}
	if got, want := out.String(), "aaaaaaaaaa\nbbbbbbbbbb\n"+long; got != want {
		t.Fatalf("long line out of order: %q, want %q", got, want)
	}
}

func TestTheFlusherWritesWithoutBeingAsked(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 1<<10, time.Millisecond)
	defer func() { _ = w.Close() }()
	_, _ = w.Write([]byte("tick\n"))
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != "tick\n" {
		if time.Now().After(deadline) {
			t.Fatal("the flusher never wrote the waiting line")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloseWritesTheRestAndLaterLinesPassThrough(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 1<<10, time.Hour)
	_, _ = w.Write([]byte("before\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "before\n" {
		t.Fatalf("after Close: %q", got)
	}
	_, _ = w.Write([]byte("after\n"))
	if got := out.String(); got != "before\nafter\n" {
		t.Fatalf("a line after Close was held: %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTheFirstErrorIsKeptAndReported(t *testing.T) {
	boom := errors.New("disk full")
	out := &lockedBuffer{fail: boom}
	w := New(out, 1<<10, time.Hour)
	if _, err := w.Write([]byte("x\n")); err != nil {
		t.Fatalf("Write itself must not fail a caller: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush: %v, want %v", err, boom)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close: %v, want %v", err, boom)
	}
}

func TestConcurrentWritersLoseNoLineAndSplitNone(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 256, time.Millisecond)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(w, "writer %d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	next := make([]int, writers)
	for _, l := range got {
		var g, i int
		if _, err := fmt.Sscanf(l, "writer %d line %d", &g, &i); err != nil {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
}
