package main

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Timing of TestMainRestartWritesResume.
const (
	// mainDownFor is how long the main worker stays down: long enough for
	// a worker's subscription attempts to back off to their longest delay
	// (subscribeBackoff) and gRPC's reconnections to theirs.
	mainDownFor = 12 * time.Second
	// writesBackWithin bounds, on an idle machine, the time from the
	// restarted main worker's first healthy answer to a write of each
	// worker's keys succeeding: a heartbeat or connection attempt of the
	// worker (subscribeReconnect.MaxDelay), its Subscribe and the main
	// worker's handover of its log, with room for CI. Before the worker
	// watched its connection, it was up to subscribeBackoff.max (10 s)
	// past that.
	writesBackWithin = 4 * time.Second
)

// trickleResult is one write of the trickle: when it ended and its
// status (0: no answer, the main worker being down).
type trickleResult struct {
	at   time.Time
	code int
}

// TestMainRestartWritesResume: under a steady trickle of writes to the
// keys of two workers, the main worker stops, stays down for mainDownFor
// and starts again on its addresses. The workers come back promptly by
// themselves: a write of each worker's keys succeeds within
// writesBackWithin of the restarted main worker answering, and the writes
// that meanwhile answer 503 are counted.
func TestMainRestartWritesResume(t *testing.T) {
	ids := []string{"w1", "w2"}
	c := startCluster(t, ids...)
	keys := map[string]string{}
	for _, id := range ids {
		keys[id] = keysOwnedBy(id, ids, 1)[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	results := map[string][]trickleResult{}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				code, _, err := tryCall("PUT", c.main.base+"/entity/db", testAdminKey, map[string]int{keys[id]: i})
				if err != nil {
					code = 0
				}
				mu.Lock()
				results[id] = append(results[id], trickleResult{time.Now(), code})
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	c.main.stop()
	time.Sleep(mainDownFor)
	c.startMain()
	back := time.Now()
	w := newWait(t, "a write of each worker's keys to succeed after the restart", 30*time.Second)
	for !w.over() && !allSucceededSince(&mu, results, ids, back) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	bound := scaled(writesBackWithin)
	for _, id := range ids {
		first, unavailable, other := trickleAfter(results[id], back)
		t.Logf("%s: first write succeeded %v after the restarted main answered; %d answered 503, %d other failures",
			id, first.Round(10*time.Millisecond), unavailable, other)
		if first < 0 || first > bound {
			t.Errorf("%s: first successful write %v after the restart, want within %v (%v, scaled); its log:\n%s",
				id, first, bound, writesBackWithin, c.workers[id].stderr)
		}
	}
}

// TestAwaitRetryReconnected: a worker that failed to subscribe waits its
// backoff's delay, unless its connection to the main worker becomes ready
// meanwhile, or did while the attempt failed: a main worker back from a
// restart, down for a while, is subscribed to at once (awaitRetry reports
// it, and the worker's backoff starts over). A connection ready all along
// does not cut the delay short: a main worker that answers and refuses is
// not hammered.
func TestAwaitRetryReconnected(t *testing.T) {
	fd, addr := boundSocket(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithConnectParams(subscribeReconnect))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	full := func(n int64) int64 { return n - 1 } // no jitter: the whole delay
	s := &subscriber{retry: backoff{base: time.Minute, max: time.Minute, jitter: full}}
	conn.Connect()
	const downFor = 2 * time.Second
	go func() {
		time.Sleep(downFor)
		if err := syscall.Listen(fd, 16); err != nil {
			t.Error(err)
			return
		}
		dup, err := syscall.Dup(fd)
		if err != nil {
			t.Error(err)
			return
		}
		f := os.NewFile(uintptr(dup), "main")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Error(err)
			return
		}
		gs := grpc.NewServer()
		t.Cleanup(gs.Stop)
		gs.Serve(l)
	}()
	start := time.Now()
	if !s.awaitRetry(context.Background(), conn, true, 1) {
		t.Fatalf("awaitRetry = false after %v, want true once the server listens", time.Since(start))
	}
	if d, limit := time.Since(start), downFor+scaled(3*time.Second); d > limit {
		t.Errorf("awaitRetry returned %v after it began, the server listening after %v; want within %v", d, downFor, limit)
	}
	s.retry = backoff{base: 300 * time.Millisecond, max: 300 * time.Millisecond, jitter: full}
	start = time.Now()
	if s.awaitRetry(context.Background(), conn, false, 1) {
		t.Error("awaitRetry = true on a connection ready all along, want false")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("awaitRetry on a connection ready all along returned after %v, want the backoff's 300ms", d)
	}
	// An attempt that failed on the connection, ready by now: at once.
	start = time.Now()
	if !s.awaitRetry(context.Background(), conn, true, 1) {
		t.Errorf("awaitRetry = false on a connection that became ready during the attempt, after %v; want true", time.Since(start))
	}
}

// allSucceededSince reports whether each of ids has a successful write
// that ended after since.
func allSucceededSince(mu *sync.Mutex, results map[string][]trickleResult, ids []string, since time.Time) bool {
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if first, _, _ := trickleAfter(results[id], since); first < 0 {
			return false
		}
	}
	return true
}

// trickleAfter returns, of the writes that ended after since, how long
// after since the first successful one ended (-1 if none did), and how
// many before it answered 503 and how many failed otherwise.
func trickleAfter(rs []trickleResult, since time.Time) (first time.Duration, unavailable, other int) {
	for _, r := range rs {
		switch {
		case r.at.Before(since):
		case r.code == 200:
			return r.at.Sub(since), unavailable, other
		case r.code == 503:
			unavailable++
		default:
			other++
		}
	}
	return -1, unavailable, other
}
