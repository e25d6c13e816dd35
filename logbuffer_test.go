package main

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records what reaches a log's output and in how many
// writes; block, when set, holds every write until it is closed.
type countingWriter struct {
	mu     sync.Mutex
	b      strings.Builder
	writes int
	block  chan struct{}
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.block != nil {
		<-c.block
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.b.Write(p)
}

func (c *countingWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

func (c *countingWriter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// TestLogBufferBatches: a line written to an idle log reaches the output
// at once; lines written while the flusher pauses wait and reach it
// together in one write at the next flush, or at Close; after Close a line
// is written at once.
func TestLogBufferBatches(t *testing.T) {
	out := &countingWriter{}
	b := newLogBuffer(out, time.Hour) // no timed flush during the test
	fmt.Fprintln(b, "first")
	waitFor(t, func() bool { return out.String() == "first\n" }) // the first line of an idle log is out at once
	for i := range 1000 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	time.Sleep(50 * time.Millisecond)
	if got := out.String(); got != "first\n" {
		t.Fatalf("lines written during the pause reached the output before a flush: %d bytes", len(got))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1001 || lines[1] != "line 0" || lines[1000] != "line 999" {
		t.Fatalf("after Close the output holds %d lines (%q ... %q), want 1001 in order", len(lines), lines[1], lines[len(lines)-1])
	}
	if out.count() != 2 {
		t.Errorf("1001 lines took %d writes, want 2 (the idle line, then the batch at Close)", out.count())
	}
	fmt.Fprintln(b, "late")
	if !strings.HasSuffix(out.String(), "line 999\nlate\n") {
		t.Errorf("a line after Close is not out at once: %q", out.String()[len(out.String())-20:])
	}
}

// TestLogBufferFlushesEverySoOften: lines that keep coming reach the
// output within the flush interval, without Close.
func TestLogBufferFlushesEverySoOften(t *testing.T) {
	out := &countingWriter{}
	b := newLogBuffer(out, 50*time.Millisecond)
	defer b.Close()
	for i := range 20 {
		fmt.Fprintf(b, "line %d\n", i)
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, func() bool { return strings.HasSuffix(out.String(), "line 19\n") }) // without Close
	if n := out.count(); n >= 20 {
		t.Errorf("20 lines took %d writes, want them batched", n)
	}
}

// TestLogBufferWarningFlushes: a warning reaches the output at once, with
// every info line logged before it, through a logger of newLogger.
func TestLogBufferWarningFlushes(t *testing.T) {
	out := &countingWriter{}
	b := newLogBuffer(out, time.Hour)
	defer b.Close()
	log, err := newLogger(b, logFormatText, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("one")
	waitFor(t, func() bool { return strings.Contains(out.String(), "msg=one") })
	log.Info("two")
	log.Info("three")
	time.Sleep(20 * time.Millisecond)
	if strings.Contains(out.String(), "msg=two") {
		t.Fatalf("info lines during the pause are out before a flush: %q", out.String())
	}
	log.With("k", "v").Warn("four")
	got := out.String()
	for _, msg := range []string{"msg=one", "msg=two", "msg=three", "msg=four"} {
		if !strings.Contains(got, msg) {
			t.Errorf("after the warning the output lacks %s: %q", msg, got)
		}
	}
}

// TestLogBufferBoundsMemory: while the output is stuck, writers wait once
// maxPending bytes are queued instead of growing the buffer, and every
// line comes out once it moves again.
func TestLogBufferBoundsMemory(t *testing.T) {
	out := &countingWriter{block: make(chan struct{})}
	b := newLogBuffer(out, time.Millisecond)
	b.maxPending = 1 << 10
	line := strings.Repeat("x", 99) + "\n"
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 100 {
			b.Write([]byte(line))
		}
	})
	time.Sleep(100 * time.Millisecond)
	b.mu.Lock()
	pending := len(b.pending)
	b.mu.Unlock()
	if pending > b.maxPending+len(line) {
		t.Errorf("%d bytes queued while the output is stuck, want at most %d", pending, b.maxPending+len(line))
	}
	close(out.block)
	wg.Wait()
	b.Close()
	if got := strings.Count(out.String(), line); got != 100 {
		t.Errorf("%d lines out, want 100", got)
	}
}
