package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

func TestHalfFullBufferIsWrittenAndLongLinesStayWholeInOrder(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 32, time.Hour)
	defer func() { _ = w.Close() }()
	_, _ = w.Write([]byte("aaaaaaaaaa\n")) // 11 bytes: below half, they wait
	time.Sleep(20 * time.Millisecond)
	if out.String() != "" {
		t.Fatal("a line below half the buffer was written without a flush")
	}
	_, _ = w.Write([]byte("bbbbbbbbbb\n")) // half full: written without being asked
	waitFor(t, func() bool { return out.String() == "aaaaaaaaaa\nbbbbbbbbbb\n" }, "the half-full buffer")
	long := strings.Repeat("c", 100) + "\n"
	if n, err := w.Write([]byte(long)); n != len(long) || err != nil {
		t.Fatalf("long line: %d, %v", n, err)
	}
	_, _ = w.Write([]byte("d\n"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "aaaaaaaaaa\nbbbbbbbbbb\n"+long+"d\n"; got != want {
		t.Fatalf("long line out of order or split: %q, want %q", got, want)
	}
	if w.Dropped() != 0 {
		t.Fatalf("%d lines dropped with an output that keeps up", w.Dropped())
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// stuckWriter blocks every Write until released.
type stuckWriter struct {
	release chan struct{}
	lockedBuffer
}

func (s *stuckWriter) Write(p []byte) (int, error) {
	<-s.release
	return s.lockedBuffer.Write(p)
}

// TestAStalledOutputNeverStopsWriters: with the output stuck, writers are
// held at most MaxWait per line and the lines that found no room are
// counted; once it moves again, Close writes every line that was taken.
func TestAStalledOutputNeverStopsWriters(t *testing.T) {
	out := &stuckWriter{release: make(chan struct{})}
	w := New(out, 256, time.Millisecond)
	const writers, lines = 4, 50
	start := time.Now()
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(w, "writer %d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	// The first line without room waits MaxWait; once the output is
	// known to be stuck, the others drop at once.
	if limit := 3 * MaxWait; took > limit {
		t.Fatalf("writers took %v with the output stuck, want under %v", took, limit)
	}
	if w.Dropped() == 0 {
		t.Fatal("no line was counted as dropped although the output was stuck")
	}
	close(out.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := strings.Count(out.String(), "\n")
	if int64(got)+w.Dropped() != writers*lines {
		t.Fatalf("%d lines written + %d dropped, want %d", got, w.Dropped(), writers*lines)
	}
	t.Logf("output stuck: writers done in %v; %d lines written after it moved, %d dropped and counted", took, got, w.Dropped())
}

// TestFlushAndCloseGiveUpOnAStalledOutput: a warning's Flush does not hang
// the logger for ever, nor does Close hang the shutdown.
func TestFlushAndCloseGiveUpOnAStalledOutput(t *testing.T) {
	defer func(d time.Duration) { FlushWait = d }(FlushWait)
	FlushWait = 50 * time.Millisecond
	out := &stuckWriter{release: make(chan struct{})}
	defer close(out.release)
	w := New(out, 256, time.Hour)
	_, _ = w.Write([]byte("x\n"))
	if err := w.Flush(); !errors.Is(err, ErrStalled) {
		t.Fatalf("Flush on a stuck output: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrStalled) {
		t.Fatalf("Close on a stuck output: %v", err)
	}
}

// TestACleanStopKeepsEveryLine: lines written as fast as writers can go,
// to a real file, all reach it by the end of Close.
func TestACleanStopKeepsEveryLine(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	w := New(f, 0, 0)
	const writers, lines = 8, 5000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(w, `{"msg":"request","writer":%d,"line":%d}`+"\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != writers*lines || w.Dropped() != 0 {
		t.Fatalf("%d lines in the file, %d dropped; want %d and none", n, w.Dropped(), writers*lines)
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

// BenchmarkWrite is what an access-log line costs the request that writes
// it, with every core writing: an append under a lock, no allocation.
func BenchmarkWrite(b *testing.B) {
	w := New(io.Discard, 0, 0)
	defer func() { _ = w.Close() }()
	line := []byte(`{"time":"2026-12-01T06:00:00.000000000Z","level":"INFO","msg":"request","request_id":"a1e6f8ad8d2a-1f","method":"GET","path":"/v1/history","status":200,"bytes":512,"duration":"180µs","client":"c_0123456789abcdef","route":"history","proto":"HTTP/2.0","outcome":"allowed"}` + "\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = w.Write(line)
		}
	})
	if d := w.Dropped(); d > 0 {
		b.Logf("%d lines dropped", d)
	}
}
