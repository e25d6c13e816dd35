package main

import (
	"io"
	"sync"
	"time"
)

// logBuffer is the log output of the server roles: log lines are appended
// to memory and written to the real output (stderr) in batches, so that a
// busy server does not pay one write system call per access line
// (BENCHMARKS.md, "The read path"). A line reaches the output
//
//   - at once when nothing was waiting (an idle server's line is not
//     delayed, so an operator or a test watching the log sees it),
//   - within flushEvery when lines keep coming,
//   - at once after a warning or an error (logHandler flushes), and
//   - at Close, which run calls before the process exits (also on SIGTERM).
//
// A crash that kills the process without running Close (SIGKILL, a fatal
// runtime error) loses at most the last flushEvery of lines. Writes block
// when maxPending bytes wait for a slow output, as a direct write would.
// It is safe for concurrent use; each Write must be whole lines, which
// slog's handlers and the access line are.
type logBuffer struct {
	out        io.Writer
	flushEvery time.Duration
	maxPending int

	mu sync.Mutex
	// pending holds the lines not yet handed to out; spare is the buffer
	// the flusher wrote last, reused for the next batch.
	pending, spare []byte
	// writing is true while a batch is being written to out; drained is
	// signalled when it ends, for writers waiting on a full buffer and for
	// Flush.
	writing bool
	drained *sync.Cond
	// closed is set by Close: from then on every Write is written at once.
	closed bool

	// kick wakes the flusher when a line arrives in an empty buffer, full
	// when pending reaches flushAt; stop ends it, done says it has.
	kick, full, stop, done chan struct{}
	closeOnce              sync.Once
}

// Batching limits of logBuffer: the most lines wait between two writes is
// logFlushEvery; a batch of logFlushAt bytes is written without waiting for
// it, and writers wait while logMaxPending bytes are queued.
const (
	logFlushEvery = 200 * time.Millisecond
	logFlushAt    = 256 << 10
	logMaxPending = 4 << 20
)

// newLogBuffer returns a logBuffer writing to out, and starts its flusher;
// Close stops it.
func newLogBuffer(out io.Writer, flushEvery time.Duration) *logBuffer {
	b := &logBuffer{out: out, flushEvery: flushEvery, maxPending: logMaxPending,
		kick: make(chan struct{}, 1), full: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	b.drained = sync.NewCond(&b.mu)
	go b.flusher()
	return b
}

// Write queues p, whole lines, for the output. It never fails: an error of
// the output is the flusher's and is dropped there, as slog drops it.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.pending) >= b.maxPending && b.writing {
		b.drained.Wait()
	}
	wasEmpty := len(b.pending) == 0
	b.pending = append(b.pending, p...)
	isFull := len(b.pending) >= logFlushAt
	closed := b.closed
	b.mu.Unlock()
	if closed {
		b.Flush()
		return len(p), nil
	}
	if wasEmpty {
		wake(b.kick)
	}
	if isFull {
		wake(b.full)
	}
	return len(p), nil
}

// wake sends on c unless a signal is already waiting there.
func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flusher writes the pending lines when the first of a batch arrives,
// then waits flushEvery (or until the buffer is full) before the next
// write, so that lines arriving meanwhile share it.
func (b *logBuffer) flusher() {
	defer close(b.done)
	pause := time.NewTimer(b.flushEvery)
	defer pause.Stop()
	for {
		select {
		case <-b.kick:
		case <-b.stop:
			return
		}
		b.Flush()
		pause.Reset(b.flushEvery)
		select {
		case <-pause.C:
		case <-b.full:
		case <-b.stop:
			return
		}
	}
}

// Flush writes every line queued before it was called, and returns the
// output's error.
func (b *logBuffer) Flush() error {
	b.mu.Lock()
	for b.writing {
		b.drained.Wait()
	}
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return nil
	}
	batch := b.pending
	b.pending, b.spare = b.spare[:0], nil
	b.writing = true
	b.mu.Unlock()

	_, err := b.out.Write(batch)

	b.mu.Lock()
	b.writing = false
	if cap(batch) <= logMaxPending {
		b.spare = batch[:0]
	}
	b.drained.Broadcast()
	b.mu.Unlock()
	return err
}

// Close stops the flusher and writes what is left; lines written after
// it are written at once.
func (b *logBuffer) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop)
	})
	<-b.done
	return b.Flush()
}
