package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "deltadatabase/proto"
)

// slowStore holds every read of an entity of database "slow" until
// release is closed or the read's context ends; reads tells of each
// held read (its context's deadline, if any) and ended of each read
// whose context ended first.
type slowStore struct {
	store
	release chan struct{}
	reads   chan time.Time
	ended   chan error
}

func newSlowStore() *slowStore {
	return &slowStore{store: newMemStore(), release: make(chan struct{}),
		reads: make(chan time.Time, 64), ended: make(chan error, 64)}
}

func (s *slowStore) hold(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, "files/slow/") {
		return nil
	}
	dl, _ := ctx.Deadline()
	s.reads <- dl
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		s.ended <- ctx.Err()
		return ctx.Err()
	}
}

func (s *slowStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.hold(ctx, key); err != nil {
		return nil, err
	}
	return s.store.Get(ctx, key)
}

func (s *slowStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	if err := s.hold(ctx, key); err != nil {
		return nil, "", err
	}
	return s.store.GetRev(ctx, key)
}

// streamRig is a remote worker served over real gRPC on loopback and the
// main worker's stub for it.
type streamRig struct {
	st      *slowStore
	srv     *workerServer
	gs      *grpc.Server
	rw      *remoteWorker
	client  pb.ProcessingWorkerClient
	callKey []byte
	// kill ends the worker's server and every link to it at once, as
	// the worker's death would.
	kill func()
	// fw is the frame rig's worker and identities (nil: a Calls stream).
	fw *frameWorld
	// big is the size of the large tests' documents: about 1 MiB, the
	// default largest, unless the rig's limit is smaller.
	big int
}

// newStreamRig is a stream rig whose link is the Calls stream.
func newStreamRig(t *testing.T) *streamRig {
	t.Helper()
	r := &streamRig{st: newSlowStore(), callKey: bytes.Repeat([]byte{7}, 32)}
	r.srv = &workerServer{w: newTestWorker(t, "w1", r.st), now: time.Now}
	r.gs, r.client, r.rw = remoteStub(t, r.srv, r.callKey)
	r.kill = r.gs.Stop
	return r
}

// rigMaker makes a stream rig: newStreamRig or newFrameRig.
type rigMaker func(*testing.T) *streamRig

// eachLink runs test over the Calls stream and over the frame link.
func eachLink(t *testing.T, test func(*testing.T, rigMaker)) {
	t.Run("calls stream", func(t *testing.T) { test(t, newStreamRig) })
	t.Run("frame link", func(t *testing.T) { test(t, newFrameRig) })
}

// waitPending waits until n calls wait for their answer on the stub's
// stream.
func (r *streamRig) waitPending(t *testing.T, n int) {
	t.Helper()
	r.waitStream(t, "waited on the stream", n, func(cs *callStream) int {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return len(cs.pending)
	})
}

// queued waits until n calls wait in the queue of the stub's stream.
func (r *streamRig) queued(t *testing.T, n int) {
	t.Helper()
	r.waitStream(t, "waited in the stream's queue", n, func(cs *callStream) int {
		cs.qmu.Lock()
		defer cs.qmu.Unlock()
		return len(cs.queue)
	})
}

// waitStream waits until count gives n for the stub's open stream.
func (r *streamRig) waitStream(t *testing.T, what string, n int, count func(*callStream) int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		r.rw.link.mu.Lock()
		cs := r.rw.link.cur
		r.rw.link.mu.Unlock()
		if cs != nil && count(cs) == n {
			return
		}
	}
	t.Fatalf("%d calls never %s", n, what)
}

// waitEnded waits until the stub has no open stream: the last one ended.
func (r *streamRig) waitEnded(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		r.rw.link.mu.Lock()
		cs := r.rw.link.cur
		r.rw.link.mu.Unlock()
		if cs == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the stub's stream has not ended after 5 s")
		}
	}
}

// op sends one operation through the stub; reads of database "slow" are
// not the owner's, so they read storage, and writes of it leave the cache
// alone.
func (r *streamRig) op(ctx context.Context, kind pb.Operation, db, key string, doc []byte) (*pb.WorkerResponse, error) {
	return r.rw.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: kind, Payload: doc},
		Owner: db != "slow"})
}

// TestCallStreamAnswersTheRightCaller: 64 callers share the stream, each
// writing and reading its own entity while slow calls are held open;
// every caller gets its own document back, and the held calls, answered
// last, get theirs: answers out of order reach the right caller.
func TestCallStreamAnswersTheRightCaller(t *testing.T) {
	eachLink(t, testCallStreamAnswersTheRightCaller)
}

func testCallStreamAnswersTheRightCaller(t *testing.T, newRig rigMaker) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.op(ctx, pb.Operation_PUT, "slow", "held", []byte(`{"held":true}`)); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 4)
	for range 4 {
		go func() {
			resp, err := r.rw.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "slow", EntityKey: "held", Operation: pb.Operation_GET}})
			if err == nil && string(resp.GetResult()) != `{"held":true}` {
				err = fmt.Errorf("held call answered %s", resp.GetResult())
			}
			held <- err
		}()
	}
	for range 4 {
		<-r.st.reads
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			key, doc := fmt.Sprintf("k%d", i), fmt.Appendf(nil, `{"n":%d}`, i)
			for range 5 {
				if _, err := r.op(ctx, pb.Operation_PUT, "db", key, doc); err != nil {
					errs <- fmt.Errorf("PUT %s: %w", key, err)
					return
				}
				resp, err := r.op(ctx, pb.Operation_GET, "db", key, nil)
				if err != nil || !bytes.Equal(resp.GetResult(), doc) {
					errs <- fmt.Errorf("GET %s = %s, %v; want %s", key, resp.GetResult(), err, doc)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	close(r.st.release)
	for range 4 {
		if err := <-held; err != nil {
			t.Error(err)
		}
	}
}

// TestCallStreamCachedReads: the worker answers a read its cache holds
// on the stream's receiver (worker.cached) while every other call still
// holds its own goroutine: a cached read passes 4 held calls, a hit and a
// miss are each counted once in the cache's statistics, a miss reads
// storage and fills the cache, and the calls are counted as Process calls.
func TestCallStreamCachedReads(t *testing.T) { eachLink(t, testCallStreamCachedReads) }

func testCallStreamCachedReads(t *testing.T, newRig rigMaker) {
	r := newRig(t)
	reg := newRegistry()
	r.srv.metrics = newGRPCMetrics(reg)
	bg := context.Background()
	doc := []byte(`{"n":1}`)
	for _, db := range []string{"slow", "db"} {
		if _, err := r.op(bg, pb.Operation_PUT, db, "k", doc); err != nil {
			t.Fatal(err)
		}
	}
	// A write by a worker that does not own the entity leaves the cache
	// alone: db/cold is stored but not cached.
	if _, err := r.rw.Process(bg, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "cold",
		Operation: pb.Operation_PUT, Payload: doc}}); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 4)
	for range 4 {
		go func() { _, err := r.op(bg, pb.Operation_GET, "slow", "k", nil); held <- err }()
		<-r.st.reads
	}
	get := func(key string) (*pb.WorkerResponse, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		return r.op(ctx, pb.Operation_GET, "db", key, nil)
	}
	before := r.srv.w.stats()
	if resp, err := get("k"); err != nil || !bytes.Equal(resp.GetResult(), doc) {
		t.Fatalf("cached read while calls are held = %s, %v; want %s", resp.GetResult(), err, doc)
	}
	if st := r.srv.w.stats(); st.Hits != before.Hits+1 || st.Misses != before.Misses {
		t.Errorf("a cached read counted %d hits, %d misses; want 1, 0", st.Hits-before.Hits, st.Misses-before.Misses)
	}
	before = r.srv.w.stats()
	if resp, err := get("cold"); err != nil || !bytes.Equal(resp.GetResult(), doc) {
		t.Fatalf("read of a stored entity not cached = %s, %v; want %s", resp.GetResult(), err, doc)
	}
	if _, err := get("none"); !errors.Is(err, errNotFound) {
		t.Errorf("read of an absent entity = %v, want not found", err)
	}
	if st := r.srv.w.stats(); st.Misses != before.Misses+2 || st.Hits != before.Hits {
		t.Errorf("two reads missing the cache counted %d misses, %d hits; want 2, 0", st.Misses-before.Misses, st.Hits-before.Hits)
	}
	before = r.srv.w.stats()
	if _, err := get("cold"); err != nil || r.srv.w.stats().Hits != before.Hits+1 {
		t.Errorf("the read that missed did not fill the cache (%v)", err)
	}
	close(r.st.release)
	for range 4 {
		if err := <-held; err != nil {
			t.Error(err)
		}
	}
	var ok, notFound float64
	reg.eachSample("deltadb_grpc_calls_total", func(lv func(string) string, _, _ string, v float64) {
		if lv("method") == pb.ProcessingWorker_Process_FullMethodName {
			switch lv("code") {
			case "OK":
				ok += v
			case "NotFound":
				notFound += v
			}
		}
	})
	// 3 PUTs, 4 held reads, 3 reads of db/k and db/cold; 1 not found.
	if ok != 10 || notFound != 1 {
		t.Errorf("deltadb_grpc_calls_total counts %v Process calls OK, %v NotFound; want 10, 1", ok, notFound)
	}
}

// cancelledAndServing checks that the worker's held call ended, its
// caller having given up (the cancel message), and that the stream goes
// on serving.
func (r *streamRig) cancelledAndServing(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.st.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the worker's call ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker's call still runs 5 s after its caller gave up")
	}
	if resp, err := r.op(context.Background(), pb.Operation_GET, "db", "none", nil); !errors.Is(err, errNotFound) {
		t.Errorf("next call on the stream = %v, %v; want not found", resp, err)
	}
}

// TestCallStreamCancel: a caller that gives up returns at once, the
// worker's context for its call ends (the signed cancel message), and the
// stream goes on serving; a deadline reaches the worker as one.
func TestCallStreamCancel(t *testing.T) { eachLink(t, testCallStreamCancel) }

func testCallStreamCancel(t *testing.T, newRig rigMaker) {
	r := newRig(t)
	bg := context.Background()
	if _, err := r.op(bg, pb.Operation_PUT, "slow", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		_, err := r.op(ctx, pb.Operation_GET, "slow", "k", nil)
		done <- err
	}()
	if dl := <-r.st.reads; !dl.IsZero() {
		t.Errorf("a call without deadline reached the worker with deadline %v", dl)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("cancelled call = %v, want context canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancelled caller is still waiting after 5 s")
	}
	r.cancelledAndServing(t)

	ctx, cancel = context.WithTimeout(bg, 300*time.Millisecond)
	defer cancel()
	want, _ := ctx.Deadline()
	_, err := r.op(ctx, pb.Operation_GET, "slow", "k", nil)
	if dl := <-r.st.reads; dl.IsZero() || dl.After(want.Add(time.Second)) {
		t.Errorf("the worker saw deadline %v, want about %v", dl, want)
	}
	if err == nil || status.Code(err) != codes.DeadlineExceeded && !errors.Is(err, errUnavailable) {
		t.Errorf("call past its deadline = %v, want deadline exceeded", err)
	}
}

// TestCallStreamWait: a call with no deadline of its own whose worker
// does not answer (its storage read held) gives up after the link's wait
// (callWait; shortened here) with errWorkerSlow, a 503 that says a write
// may have been applied; the worker's call ends (the cancel message) and
// the stream goes on serving.
func TestCallStreamWait(t *testing.T) { eachLink(t, testCallStreamWait) }

func testCallStreamWait(t *testing.T, newRig rigMaker) {
	r := newRig(t)
	r.rw.link.wait = 300 * time.Millisecond
	bg := context.Background()
	if _, err := r.op(bg, pb.Operation_PUT, "slow", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := r.op(bg, pb.Operation_GET, "slow", "k", nil)
	if took := time.Since(start); took < 300*time.Millisecond || took > scaled(5*time.Second) {
		t.Errorf("the call gave up after %v, want 300 ms", took)
	}
	if !errors.Is(err, errWorkerSlow) || statusOf(err) != 503 || !strings.Contains(publicMessage(err, "r1"), "did not answer in time") {
		t.Errorf("call past the wait = %v (status %d, %q), want errWorkerSlow, 503", err, statusOf(err), publicMessage(err, "r1"))
	}
	<-r.st.reads
	r.cancelledAndServing(t)
}

// twoWorkerRig is a router (on the clock now) over w1, the stream rig's
// remote worker, and w2, an in-process worker of the same storage; keys
// are two entities of database "slow" that w1 owns, stored as
// {"n":[1]}.
func twoWorkerRig(t *testing.T, newRig rigMaker, now func() time.Time) (*streamRig, *router, []string) {
	t.Helper()
	r := newRig(t)
	var keys []string
	for i := 0; len(keys) < 2; i++ {
		if k := fmt.Sprint("k", i); rendezvousOrder("slow", k, []string{"w1", "w2"})[0] == 0 {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if _, err := r.op(context.Background(), pb.Operation_PUT, "slow", k, []byte(`{"n":[1]}`)); err != nil {
			t.Fatal(err)
		}
	}
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), now, 0, nil, nil)
	rt.add(&workerConn{id: "w1", proc: r.rw, close: func() {}})
	rt.seen("w1", cacheStats{})
	rt.add(&workerConn{id: "w2", proc: newTestWorker(t, "w2", r.st)})
	return r, rt, keys
}

// TestLostWriteNotRetried: a write whose worker's link breaks while the
// call is under way (the worker may have made it) is not run again on
// the next worker, where a patch would apply twice and a precondition
// fail on the write's own result: it answers 503 saying it may have been
// applied, and the worker leaves the rotation. A read lost so is retried
// on the next worker.
func TestLostWriteNotRetried(t *testing.T) { eachLink(t, testLostWriteNotRetried) }

func testLostWriteNotRetried(t *testing.T, newRig rigMaker) {
	r, rt, keys := twoWorkerRig(t, newRig, time.Now)
	bg := context.Background()
	key := keys[0]
	patch := &pb.EntityOp{DatabaseName: "slow", EntityKey: key, Operation: pb.Operation_PATCH,
		ContentType: jsonPatchType, Payload: []byte(`[{"op":"add","path":"/n/-","value":2}]`), MayRead: true}
	patched, read := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := rt.Process(bg, patch)
		patched <- err
	}()
	<-r.st.reads // at w1, under way
	r.waitPending(t, 1)
	go func() {
		_, err := rt.Process(bg, &pb.EntityOp{DatabaseName: "slow", EntityKey: keys[1], Operation: pb.Operation_GET})
		read <- err
	}()
	<-r.st.reads
	r.waitPending(t, 2)
	r.kill()
	close(r.st.release) // the next worker's reads go through
	select {
	case err := <-patched:
		if !errors.Is(err, errCallLost) || statusOf(err) != 503 || !strings.Contains(publicMessage(err, "r1"), "may or may not have been applied") {
			t.Errorf("patch lost under way = %v (status %d), want errCallLost, 503", err, statusOf(err))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the patch still waits 5 s after its worker died")
	}
	select {
	case err := <-read:
		if err != nil {
			t.Errorf("read lost under way = %v, want it answered by w2", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read still waits 5 s after its worker died")
	}
	resp, err := rt.Process(bg, &pb.EntityOp{DatabaseName: "slow", EntityKey: key, Operation: pb.Operation_GET})
	if err != nil || string(resp.GetResult()) != `{"n":[1]}` {
		t.Errorf("entity after the lost patch = %s, %v; want {\"n\":[1]}: the patch ran again elsewhere", resp.GetResult(), err)
	}
	if c, state := rt.stateOf("w1"); c == nil || state != stateOut {
		t.Errorf("w1 after the lost calls: in rotation, want out")
	}
}

// TestSilentWorkerCallsEnd: when a worker that stopped heartbeating
// leaves the rotation, the calls under way on its link, which its
// connection would hold until the keepalive closed it, end at once: a
// read is answered by the next worker, a write answers 503 (it may have
// been applied), and the worker's own call is cancelled.
func TestSilentWorkerCallsEnd(t *testing.T) { eachLink(t, testSilentWorkerCallsEnd) }

func testSilentWorkerCallsEnd(t *testing.T, newRig rigMaker) {
	var skew atomic.Int64
	r, rt, keys := twoWorkerRig(t, newRig, func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	bg := context.Background()
	read, wrote := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := rt.Process(bg, &pb.EntityOp{DatabaseName: "slow", EntityKey: keys[0], Operation: pb.Operation_GET})
		read <- err
	}()
	<-r.st.reads
	go func() {
		_, err := rt.Process(bg, &pb.EntityOp{DatabaseName: "slow", EntityKey: keys[1], Operation: pb.Operation_PATCH,
			ContentType: mergePatchType, Payload: []byte(`2`), MayRead: true})
		wrote <- err
	}()
	<-r.st.reads
	r.waitPending(t, 2)
	skew.Store(int64(time.Minute)) // w1's heartbeats stop
	rt.expire(heartbeatMisses * heartbeatEvery)
	for range 2 {
		select {
		case err := <-r.st.ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("w1's call ended with %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("w1's calls still run 5 s after it left the rotation")
		}
	}
	close(r.st.release) // w2's reads go through
	select {
	case err := <-read:
		if err != nil {
			t.Errorf("read under way when w1 left the rotation = %v, want w2's answer", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read under way at w1 still waits 5 s after w1 left the rotation")
	}
	select {
	case err := <-wrote:
		if !errors.Is(err, errCallLost) || statusOf(err) != 503 {
			t.Errorf("write under way when w1 left the rotation = %v (status %d), want errCallLost, 503", err, statusOf(err))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write under way at w1 still waits 5 s after w1 left the rotation")
	}
}

// TestCallStreamWorkerDies: calls in flight when the worker's server dies
// fail as transport failures, promptly; the router marks the worker
// unavailable as it did for a failed unary call; closing the link with
// calls in flight fails them too and waits for its goroutines.
func TestCallStreamWorkerDies(t *testing.T) { eachLink(t, testCallStreamWorkerDies) }

func testCallStreamWorkerDies(t *testing.T, newRig rigMaker) {
	r := newRig(t)
	bg := context.Background()
	if _, err := r.op(bg, pb.Operation_PUT, "slow", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, 0, nil, nil)
	rt.add(&workerConn{id: "w1", proc: r.rw, close: func() {}})
	rt.seen("w1", cacheStats{})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := rt.Process(bg, &pb.EntityOp{DatabaseName: "slow", EntityKey: "k", Operation: pb.Operation_GET})
			errs <- err
		}()
	}
	<-r.st.reads // the worker reads storage once for all eight
	r.waitPending(t, 8)
	r.kill()
	for range 8 {
		select {
		case err := <-errs:
			if !errors.Is(err, errTransport) && !errors.Is(err, errNoWorker) || errors.Is(err, errCallLost) {
				t.Errorf("call in flight when the worker died = %v, want a transport failure (a read: never lost with a write's outcome unknown)", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call in flight still waits 5 s after its worker died")
		}
	}
	if l := rt.list(); len(l) != 1 || l[0].Status != statusUnavailable {
		t.Errorf("workers after the failure = %+v, want w1 Unavailable", l)
	}

	// Closing the link with a call in flight.
	r2 := newRig(t)
	if _, err := r2.op(bg, pb.Operation_PUT, "slow", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r2.op(bg, pb.Operation_GET, "slow", "k", nil)
		done <- err
	}()
	<-r2.st.reads
	closed := make(chan struct{})
	go func() { r2.rw.close(); close(closed) }()
	select {
	case err := <-done:
		if !errors.Is(err, errTransport) {
			t.Errorf("call in flight when the link closed = %v, want a transport failure", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a call in flight still waits 5 s after its link closed")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("closing the link has not returned after 5 s")
	}
	if _, err := r2.op(bg, pb.Operation_GET, "db", "k", nil); !errors.Is(err, errTransport) {
		t.Errorf("call on a closed link = %v, want a transport failure", err)
	}
}

// TestCallStreamWorkerStops: a worker that stops answers the calls it
// has read, then ends the stream; later calls fail as transport failures.
func TestCallStreamWorkerStops(t *testing.T) { eachLink(t, testCallStreamWorkerStops) }

func testCallStreamWorkerStops(t *testing.T, newRig rigMaker) {
	r := newRig(t)
	bg := context.Background()
	if _, err := r.op(bg, pb.Operation_PUT, "slow", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.op(bg, pb.Operation_GET, "slow", "k", nil)
		done <- err
	}()
	<-r.st.reads
	r.srv.stop()
	close(r.st.release)
	if err := <-done; err != nil {
		t.Errorf("call in flight when the worker began to stop = %v, want answered", err)
	}
	// A call sent before the main worker saw the stream end may still
	// be read, and answered, by the stopping worker.
	r.waitEnded(t)
	if _, err := r.op(bg, pb.Operation_GET, "db", "k", nil); !errors.Is(err, errTransport) {
		t.Errorf("call after the worker stopped = %v, want a transport failure", err)
	}
}

// TestCallStreamRefusesForgedMessages plays an attacker on the stream
// itself: unsigned, tampered, stale, reordered and replayed messages and
// forged cancels are each refused, with the worker serving only the
// signed message in order.
func TestCallStreamRefusesForgedMessages(t *testing.T) {
	r := newStreamRig(t)
	bg := context.Background()
	if _, err := r.op(bg, pb.Operation_PUT, "slow", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	base := r.rw.seq.Load()
	get := func(seq uint64, db string) *pb.WorkerRequest {
		return &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: db, EntityKey: "k", Operation: pb.Operation_GET}, Owner: db != "slow",
			IssuedAtUnixNano: time.Now().UnixNano(), Seq: base + seq}
	}
	sign := func(req *pb.WorkerRequest) *pb.WorkerRequest {
		sig, err := signCall(r.callKey, "w1", req)
		if err != nil {
			t.Fatal(err)
		}
		req.Signature = sig
		return req
	}
	stream, err := r.client.Calls(bg)
	if err != nil {
		t.Fatal(err)
	}
	// ask sends req and returns the answer to it.
	ask := func(req *pb.WorkerRequest) *pb.WorkerResponse {
		t.Helper()
		resp := exchange(t, stream, req)
		if resp.GetSeq() != req.GetSeq() {
			t.Fatalf("answer to seq %d names seq %d", req.GetSeq(), resp.GetSeq())
		}
		return resp
	}
	refused := func(name string, req *pb.WorkerRequest, why string) {
		t.Helper()
		resp := ask(req)
		err := answerError(resp)
		if len(resp.GetStatus()) == 0 || status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: answered %v (%v), want Unauthenticated (%s)", name, resp, err, why)
		}
	}
	refused("unsigned", get(10, "db"), "not signed")
	tampered := sign(get(11, "db"))
	tampered.Op.EntityKey = "other"
	refused("tampered", tampered, "not signed")
	stale := get(12, "db")
	stale.IssuedAtUnixNano = time.Now().Add(-time.Hour).UnixNano()
	refused("stale", sign(stale), "not signed")
	// A read of an entity the cache holds is answered without a goroutine
	// of its own (worker.cached), but only once admitted.
	if _, err := r.op(bg, pb.Operation_PUT, "db", "k", []byte(`2`)); err != nil {
		t.Fatal(err)
	}
	base = r.rw.seq.Load()
	cachedRead := sign(get(13, "db"))
	cachedRead.RequestId = "forged"
	refused("tampered read of a cached entity", cachedRead, "not signed")
	ok := sign(get(20, "db"))
	if resp := ask(ok); len(resp.GetStatus()) > 0 || string(resp.GetResult()) != "2" {
		t.Errorf("signed call = %v, want answered (2)", resp)
	}
	refused("the same message again", ok, "out of order")
	refused("an earlier number", sign(get(15, "db")), "out of order")
	// Another stream of the same subscription: a number seen on the
	// first is a replay.
	other, err := r.client.Calls(bg)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Send(ok); err != nil {
		t.Fatal(err)
	}
	if resp, err := other.Recv(); err != nil || !strings.Contains(answerError(resp).Error(), "replayed") {
		t.Errorf("replay on another stream = %v, %v; want refused (replayed)", resp, err)
	}

	// A held call: a forged cancel does not end it, a signed one does.
	if err := stream.Send(sign(get(30, "slow"))); err != nil {
		t.Fatal(err)
	}
	<-r.st.reads
	refused("forged cancel", &pb.WorkerRequest{CancelSeq: base + 30, Seq: base + 31, IssuedAtUnixNano: time.Now().UnixNano()}, "not signed")
	select {
	case err := <-r.st.ended:
		t.Fatalf("a forged cancel ended the call: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := stream.Send(sign(&pb.WorkerRequest{CancelSeq: base + 30, Seq: base + 32, IssuedAtUnixNano: time.Now().UnixNano()})); err != nil {
		t.Fatal(err)
	}
	if err := <-r.st.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("held call after a signed cancel ended with %v, want context.Canceled", err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetSeq() != base+30 || len(resp.GetStatus()) == 0 {
		t.Errorf("held call after a signed cancel = %v, %v; want its (failed) answer", resp, err)
	}
}

// TestCallStreamNewSubscription: a stream keeps the signature state of the
// subscription it last checked against; once the worker subscribes again
// with another call key, a message on the same stream signed with the old
// key is refused and one signed with the new key served.
func TestCallStreamNewSubscription(t *testing.T) {
	r := newStreamRig(t)
	bg := context.Background()
	if _, err := r.op(bg, pb.Operation_PUT, "db", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	stream, err := r.client.Calls(bg)
	if err != nil {
		t.Fatal(err)
	}
	seq := r.rw.seq.Load()
	read := func(key []byte) *pb.WorkerResponse {
		t.Helper()
		seq++
		req := &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, Owner: true,
			IssuedAtUnixNano: time.Now().UnixNano(), Seq: seq}
		sig, err := signCall(key, "w1", req)
		if err != nil {
			t.Fatal(err)
		}
		req.Signature = sig
		return exchange(t, stream, req)
	}
	if resp := read(r.callKey); len(resp.GetStatus()) > 0 || string(resp.GetResult()) != "1" {
		t.Fatalf("signed read = %v, want 1", resp)
	}
	newKey := bytes.Repeat([]byte{9}, 32)
	r.srv.sub.Store(&subscription{callKey: newKey, expires: time.Now().Add(time.Hour)})
	if resp := read(r.callKey); status.Code(answerError(resp)) != codes.Unauthenticated {
		t.Errorf("read signed with the old call key after a new subscription = %v, want Unauthenticated", resp)
	}
	if resp := read(newKey); len(resp.GetStatus()) > 0 || string(resp.GetResult()) != "1" {
		t.Errorf("read signed with the new call key = %v, want 1", resp)
	}
}

// exchange sends req on a bidirectional stream and returns the next
// message it receives.
func exchange[Req, Resp any](t testing.TB, stream grpc.BidiStreamingClient[Req, Resp], req *Req) *Resp {
	t.Helper()
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestSealedCall: a sealed call (callMAC.seal) is a valid encoding of the
// signed request, so a worker checking signatures over the deterministic
// encoding accepts it as well; and every change to its bytes, each bit of
// each byte flipped or a field appended, is refused, whichever check the
// changed bytes lead to.
func TestSealedCall(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	now := time.Unix(1_700_000_000, 0)
	put := &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT,
		Payload: []byte(`{"a":1}`)}, Epoch: 7, Owner: true, RequestId: "rid", IssuedAtUnixNano: now.UnixNano(), Seq: 42}
	// A batch (pb.WorkerRequest.batch) is sealed whole, its calls unsigned.
	batch := &pb.WorkerRequest{IssuedAtUnixNano: now.UnixNano(), Batch: []*pb.WorkerRequest{
		{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, Epoch: 7, Owner: true, RequestId: "r1", Seq: 43},
		{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`2`)}, Epoch: 7, Owner: true, RequestId: "r2", Seq: 44},
		{CancelSeq: 42, Seq: 45}}}
	t.Run("call", func(t *testing.T) { sealedCallRefusesChanges(t, key, now, put) })
	t.Run("batch", func(t *testing.T) { sealedCallRefusesChanges(t, key, now, batch) })
}

// sealedCallRefusesChanges is TestSealedCall for one request.
func sealedCallRefusesChanges(t *testing.T, key []byte, now time.Time, req *pb.WorkerRequest) {
	t.Helper()
	mac := newCallMAC(key, "w1")
	wire, err := mac.seal(req)
	if err != nil {
		t.Fatal(err)
	}
	admitted := func(wire []byte) bool {
		got := &pb.WorkerRequest{}
		if proto.Unmarshal(wire, got) != nil {
			return false
		}
		var sealed []byte
		if isSealed(wire) {
			sealed = wire
		}
		return mac.check(got, sealed, now)
	}
	got := &pb.WorkerRequest{}
	if err := proto.Unmarshal(wire, got); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(req).(*pb.WorkerRequest)
	if want.Signature, err = signCall(key, "w1", req); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("sealed call decodes to %v, want the signed request %v", got, want)
	}
	if !isSealed(wire) || !admitted(wire) || !verifyCall(key, "w1", got, now) {
		t.Fatal("the sealed call is refused, by its bytes or by its deterministic encoding")
	}
	if other, _ := newCallMAC(bytes.Repeat([]byte{8}, 32), "w1").seal(req); admitted(other) {
		t.Error("a call sealed under another key is accepted")
	}
	if other, _ := newCallMAC(key, "w2").seal(req); admitted(other) {
		t.Error("a call sealed for another worker is accepted")
	}
	for i := range wire {
		for bit := range 8 {
			changed := bytes.Clone(wire)
			changed[i] ^= 1 << bit
			if admitted(changed) {
				t.Errorf("sealed call with bit %d of byte %d flipped is accepted", bit, i)
			}
		}
	}
	extra, _ := proto.Marshal(&pb.WorkerRequest{RequestId: "forged"})
	if admitted(append(bytes.Clone(wire), extra...)) {
		t.Error("sealed call with a field appended is accepted")
	}
}

// TestCallStreamRefusesForgedSealedCalls plays a rogue client on the
// Calls stream in the sealed form: a call sealed under another key, one
// whose bytes changed after sealing and one sent again are refused; the
// genuine one is answered.
func TestCallStreamRefusesForgedSealedCalls(t *testing.T) {
	r := newStreamRig(t)
	bg := context.Background()
	if _, err := r.op(bg, pb.Operation_PUT, "db", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	stream, err := r.client.Calls(bg, grpc.ForceCodecV2(callCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	seq := r.rw.seq.Load()
	sealed := func(key []byte, n uint64) []byte {
		req := &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, Owner: true,
			IssuedAtUnixNano: time.Now().UnixNano(), Seq: seq + n}
		wire, err := newCallMAC(key, "w1").seal(req)
		if err != nil {
			t.Fatal(err)
		}
		return wire
	}
	ask := func(wire []byte) *pb.WorkerResponse {
		t.Helper()
		if err := stream.SendMsg(&sealedCall{b: wire}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	refused := func(name string, wire []byte, why string) {
		t.Helper()
		resp := ask(wire)
		err := answerError(resp)
		if len(resp.GetStatus()) == 0 || status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: answered %v (%v), want Unauthenticated (%s)", name, resp, err, why)
		}
	}
	refused("sealed under another key", sealed(bytes.Repeat([]byte{8}, 32), 1), "not signed")
	tampered := sealed(r.callKey, 2)
	tampered[len(tampered)-1] ^= 1 // its number's last byte
	refused("changed after sealing", tampered, "not signed")
	ok := sealed(r.callKey, 3)
	if resp := ask(ok); len(resp.GetStatus()) > 0 || string(resp.GetResult()) != "1" {
		t.Errorf("genuine sealed call = %v, want answered (1)", resp)
	}
	refused("the same sealed call again", ok, "out of order")
}

// TestCallLinkSendsNoBandwidthPings: with the Calls link's fixed
// flow-control windows (callLinkDialOptions, callServerOptions) a busy
// stream carries calls and answers without gRPC's bandwidth-estimate
// PINGs, which cost each side a frame and a wake-up per round trip.
func TestCallLinkSendsNoBandwidthPings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	frames := &h2Listener{Listener: ln}
	key := bytes.Repeat([]byte{7}, 32)
	srv := &workerServer{w: newTestWorker(t, "w1", newMemStore()), now: time.Now}
	srv.sub.Store(&subscription{callKey: key, expires: time.Now().Add(time.Hour)})
	gs := grpc.NewServer(callServerOptions()...)
	pb.RegisterProcessingWorkerServer(gs, srv)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(frames) }()
	t.Cleanup(func() { gs.Stop(); <-served; srv.wait() })
	rw := newRemoteWorker("w1", pb.NewProcessingWorkerClient(dial(t, ln.Addr().String(), callLinkDialOptions()...)), key, time.Now, true)
	t.Cleanup(rw.close)

	bg := context.Background()
	doc := []byte(`{"content":"` + strings.Repeat("x", 1000) + `"}`)
	if _, err := rw.Process(bg, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: doc}, Owner: true}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := rw.Process(bg, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, Owner: true}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Each caller's 50 calls go out one after another, so in 50 messages
	// at least, batches or not, and come back in as many.
	if n := frames.frames.Load(); n < 100 {
		t.Fatalf("saw %d HTTP/2 frames for 401 calls and their answers: the count is broken", n)
	}
	if n := frames.pings.Load(); n != 0 {
		t.Errorf("the link carried %d PING frames during 401 calls, want none", n)
	}
}

// h2Listener counts the HTTP/2 frames, and the PING frames among them
// (acknowledgements not counted), on the plaintext connections it accepts,
// both ways.
type h2Listener struct {
	net.Listener
	frames, pings atomic.Int64
}

func (l *h2Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// The client's side begins with the connection preface.
	return &h2Conn{Conn: c, in: h2Frames{l: l, skip: len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}, out: h2Frames{l: l}}, nil
}

// h2Conn feeds what a connection reads and writes to its frame counters;
// each way is read or written by one goroutine at a time.
type h2Conn struct {
	net.Conn
	in, out h2Frames
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.feed(p[:n])
	return n, err
}

func (c *h2Conn) Write(p []byte) (int, error) {
	c.out.feed(p)
	return c.Conn.Write(p)
}

// h2Frames parses one direction's frame headers, skipping payloads.
type h2Frames struct {
	l    *h2Listener
	skip int
	hdr  []byte
}

func (f *h2Frames) feed(b []byte) {
	for len(b) > 0 {
		if f.skip > 0 {
			n := min(f.skip, len(b))
			f.skip, b = f.skip-n, b[n:]
			continue
		}
		n := min(9-len(f.hdr), len(b))
		f.hdr, b = append(f.hdr, b[:n]...), b[n:]
		if len(f.hdr) < 9 {
			continue
		}
		f.l.frames.Add(1)
		if f.hdr[3] == 0x6 && f.hdr[4]&0x1 == 0 { // PING, not an ACK
			f.l.pings.Add(1)
		}
		f.skip, f.hdr = int(f.hdr[0])<<16|int(f.hdr[1])<<8|int(f.hdr[2]), f.hdr[:0]
	}
}

// gatedSigner is the stub's signer with its first seal held until gate
// closes, so that calls queue behind it; sent receives each message as
// sealed.
type gatedSigner struct {
	*remoteWorker
	gate chan struct{}
	once sync.Once
	sent chan *pb.WorkerRequest
}

func newGatedSigner(rw *remoteWorker) *gatedSigner {
	return &gatedSigner{remoteWorker: rw, gate: make(chan struct{}), sent: make(chan *pb.WorkerRequest, 64)}
}

func (g *gatedSigner) seal(req *pb.WorkerRequest) ([]byte, error) {
	g.once.Do(func() { <-g.gate })
	wire, err := g.remoteWorker.seal(req)
	g.sent <- proto.Clone(req).(*pb.WorkerRequest)
	return wire, err
}

// TestCallStreamSendsWaitingCallsAsOne: calls that queue while another
// caller sends go out together, as one signed batch in the order of
// their numbers, and each caller gets its own answer; a caller that gives
// up while queued leaves the queue and its call is never sent; a lone
// call goes out alone, at once.
func TestCallStreamSendsWaitingCallsAsOne(t *testing.T) {
	r := newStreamRig(t)
	bg := context.Background()
	for i := range 6 {
		if _, err := r.op(bg, pb.Operation_PUT, "db", fmt.Sprintf("k%d", i), fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	g := newGatedSigner(r.rw)
	get := func(ctx context.Context, i int, errs chan<- error) {
		resp, err := r.rw.link.call(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprintf("k%d", i),
			Operation: pb.Operation_GET}, Owner: true}, g)
		if want := fmt.Sprintf(`{"n":%d}`, i); err == nil && string(resp.GetResult()) != want {
			err = fmt.Errorf("call %d answered %s, want %s", i, resp.GetResult(), want)
		}
		errs <- err
	}
	errs := make(chan error, 8)
	go get(bg, 0, errs) // sends, and its seal waits for the gate
	r.sealingFirst(t)
	gone, leave := context.WithCancel(bg)
	left := make(chan error, 1)
	go get(gone, 1, left)
	r.queued(t, 1)
	for i := 2; i < 6; i++ {
		go get(bg, i, errs)
		r.queued(t, i)
	}
	leave()
	if err := <-left; status.Code(err) != codes.Canceled {
		t.Errorf("a caller that gave up while queued = %v, want Canceled", err)
	}
	r.queued(t, 4)
	close(g.gate)
	for range 5 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	first, second := <-g.sent, <-g.sent
	if len(first.GetBatch()) != 0 || first.GetOp().GetEntityKey() != "k0" {
		t.Errorf("first message = %v, want call 0 alone", first)
	}
	var keys []string
	last := first.GetSeq()
	for _, c := range second.GetBatch() {
		keys = append(keys, c.GetOp().GetEntityKey())
		if c.GetSeq() <= last {
			t.Errorf("call %s of the batch is numbered %d, after %d", c.GetOp().GetEntityKey(), c.GetSeq(), last)
		}
		last = c.GetSeq()
	}
	if fmt.Sprint(keys) != "[k2 k3 k4 k5]" || second.GetSeq() != 0 || second.GetIssuedAtUnixNano() == 0 {
		t.Errorf("second message = %v, want one batch of the 4 calls still queued, k2-k5", second)
	}
	go get(bg, 3, errs)
	if err := <-errs; err != nil {
		t.Error(err)
	}
	if lone := <-g.sent; len(lone.GetBatch()) != 0 || lone.GetOp().GetEntityKey() != "k3" {
		t.Errorf("a lone call went out as %v, want alone", lone)
	}
	if len(g.sent) != 0 {
		t.Errorf("%d more messages were sent, want none", len(g.sent))
	}
}

// TestCallStreamLargeCachedAnswers: a batch of reads whose documents the
// worker's cache holds, together over the main worker's message limit
// (five of about 1 MiB, the default largest document, against 4 MiB), is
// answered in several messages: every caller gets its document and the
// link stays up.
//
// With both ends' limit at 64 KiB, five documents of 40 KiB, each well
// within it, are answered so too.
func TestCallStreamLargeCachedAnswers(t *testing.T) {
	eachLink(t, testCallStreamLargeCachedAnswers)
	t.Run("frame link at 64 KiB", func(t *testing.T) { testCallStreamLargeCachedAnswers(t, newSmallFrameRig) })
}

func testCallStreamLargeCachedAnswers(t *testing.T, rig rigMaker) {
	r := rig(t)
	bg := context.Background()
	doc := func(i int) []byte {
		return fmt.Appendf(nil, `{"n":%d,"s":"%s"}`, i, strings.Repeat("x", cmp.Or(r.big, 1000<<10)))
	}
	for i := range 6 {
		if _, err := r.op(bg, pb.Operation_PUT, "db", fmt.Sprintf("k%d", i), doc(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.op(bg, pb.Operation_GET, "db", fmt.Sprintf("k%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	g := newGatedSigner(r.rw)
	errs := make(chan error, 6)
	get := func(i int) {
		resp, err := r.rw.link.call(bg, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprintf("k%d", i),
			Operation: pb.Operation_GET}, Owner: true}, g)
		if err == nil && !bytes.Equal(resp.GetResult(), doc(i)) {
			err = fmt.Errorf("call %d answered %d bytes, not its document", i, len(resp.GetResult()))
		}
		errs <- err
	}
	r.rw.link.mu.Lock()
	first := r.rw.link.cur
	r.rw.link.mu.Unlock()
	go get(0) // sends, and its seal waits for the gate
	r.sealingFirst(t)
	for i := 1; i < 6; i++ {
		go get(i)
		r.queued(t, i)
	}
	close(g.gate)
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	<-g.sent
	if batch := <-g.sent; len(batch.GetBatch()) != 5 {
		t.Fatalf("the queued reads went out as %d calls in one message, want 5", len(batch.GetBatch()))
	}
	r.rw.link.mu.Lock()
	defer r.rw.link.mu.Unlock()
	if r.rw.link.cur != first {
		t.Error("the link's stream was replaced: the answers broke it")
	}
}

// TestCallStreamLargeBatchedWrites: writes that queue while another call
// is sent, together over the worker's message limit (five of about 1
// MiB, the default largest document, against 4 MiB), go out in several
// messages: every one is written, and the link stays up.
//
// With both ends' limit at 64 KiB, five writes of 40 KiB, each well
// within it, go out so too.
func TestCallStreamLargeBatchedWrites(t *testing.T) {
	eachLink(t, testCallStreamLargeBatchedWrites)
	t.Run("frame link at 64 KiB", func(t *testing.T) { testCallStreamLargeBatchedWrites(t, newSmallFrameRig) })
}

// newSmallFrameRig is a frame rig whose two ends take messages of at most
// 64 KiB (-grpc-max-recv-msg-size=65536), its large documents 40 KiB.
func newSmallFrameRig(t *testing.T) *streamRig {
	const limit = 64 << 10
	r := newFrameRig(t)
	r.srv.maxMsg = limit
	cfg := r.fw.main.tlsConfig(pinned(r.fw.worker.fp), false)
	r.rw.link.frames = func(ctx context.Context) (*frameConn, error) { return dialFrames(ctx, r.fw.addr, cfg, limit) }
	r.rw.link.batchMax = batchBytes(limit) // as the main worker sets it
	r.big = 40 << 10
	return r
}

func testCallStreamLargeBatchedWrites(t *testing.T, rig rigMaker) {
	r := rig(t)
	bg := context.Background()
	doc := func(i int) []byte {
		return fmt.Appendf(nil, `{"n":%d,"s":"%s"}`, i, strings.Repeat("x", cmp.Or(r.big, 1000<<10)))
	}
	g := newGatedSigner(r.rw)
	errs := make(chan error, 6)
	put := func(i int) {
		_, err := r.rw.link.call(bg, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprintf("k%d", i),
			Operation: pb.Operation_PUT, Payload: doc(i)}, Owner: true}, g)
		errs <- err
	}
	go put(0) // sends, and its seal waits for the gate
	r.sealingFirst(t)
	for i := 1; i < 6; i++ {
		go put(i)
		r.queued(t, i)
	}
	r.rw.link.mu.Lock()
	first := r.rw.link.cur
	r.rw.link.mu.Unlock()
	close(g.gate)
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for i := range 6 {
		resp, err := r.op(bg, pb.Operation_GET, "db", fmt.Sprintf("k%d", i), nil)
		if err != nil || !bytes.Equal(resp.GetResult(), doc(i)) {
			t.Errorf("k%d reads back %d bytes (%v), not its document", i, len(resp.GetResult()), err)
		}
	}
	if len(g.sent) < 3 {
		t.Errorf("the writes went out in %d messages, want 3 or more", len(g.sent))
	}
	r.rw.link.mu.Lock()
	defer r.rw.link.mu.Unlock()
	if r.rw.link.cur != first {
		t.Error("the link's stream was replaced: the batch broke it")
	}
}

// sealingFirst waits until the stub's stream has taken the first call
// from its queue and seals it (held by a gatedSigner's gate): the calls
// after it queue. Until then a second call could join the first's
// message.
func (r *streamRig) sealingFirst(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !sealing(r); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first call is never sealed")
		}
	}
}

// sealing reports whether the stub's stream has a sender with a call
// taken from the queue: the gated first seal has begun.
func sealing(r *streamRig) bool {
	r.rw.link.mu.Lock()
	cs := r.rw.link.cur
	r.rw.link.mu.Unlock()
	if cs == nil {
		return false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.pending) == 1
}

// TestCallStreamRefusesForgedBatches plays a rogue client on the Calls
// stream with batches of calls (pb.WorkerRequest.batch): a batch answers
// only whole, signed over its exact bytes, fresh, in order, never seen;
// forged, tampered, truncated, reordered, replayed, stale, oversized and
// malformed batches are refused, each of their calls answered so.
func TestCallStreamRefusesForgedBatches(t *testing.T) {
	r := newStreamRig(t)
	bg := context.Background()
	for _, db := range []string{"db", "slow"} {
		if _, err := r.op(bg, pb.Operation_PUT, db, "k", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := r.client.Calls(bg, grpc.ForceCodecV2(callCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	base := r.rw.seq.Load()
	call := func(n uint64) *pb.WorkerRequest {
		return &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, Owner: true, Seq: base + n}
	}
	batch := func(calls ...*pb.WorkerRequest) *pb.WorkerRequest {
		return &pb.WorkerRequest{Batch: calls, IssuedAtUnixNano: time.Now().UnixNano()}
	}
	seal := func(key []byte, req *pb.WorkerRequest) []byte {
		wire, err := newCallMAC(key, "w1").seal(req)
		if err != nil {
			t.Fatal(err)
		}
		return wire
	}
	// answers sends wire on st and returns the next n answers, by seq,
	// and how many messages carried them.
	answers := func(st grpc.BidiStreamingClient[pb.WorkerRequest, pb.WorkerResponse], wire []byte, n int) (map[uint64]*pb.WorkerResponse, int) {
		t.Helper()
		if err := st.SendMsg(&sealedCall{b: wire}); err != nil {
			t.Fatal(err)
		}
		got, msgs := map[uint64]*pb.WorkerResponse{}, 0
		for len(got) < n {
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			msgs++
			for _, a := range append([]*pb.WorkerResponse{resp}, resp.GetBatch()...) {
				if a.GetSeq() != 0 {
					got[a.GetSeq()] = a
				}
			}
		}
		return got, msgs
	}
	refused := func(name string, wire []byte, why string, seqs ...uint64) {
		t.Helper()
		got, _ := answers(stream, wire, len(seqs))
		for _, n := range seqs {
			a := got[base+n]
			if err := answerError(a); a == nil || len(a.GetStatus()) == 0 || status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), why) {
				t.Errorf("%s: call %d answered %v (%v), want Unauthenticated (%s)", name, n, a, err, why)
			}
		}
	}
	served := func(name string, wire []byte, seqs ...uint64) {
		t.Helper()
		got, msgs := answers(stream, wire, len(seqs))
		for _, n := range seqs {
			if a := got[base+n]; a == nil || len(a.GetStatus()) > 0 || string(a.GetResult()) != "1" {
				t.Errorf("%s: call %d answered %v, want 1", name, n, a)
			}
		}
		if msgs != 1 {
			t.Errorf("%s: %d cached reads answered in %d messages, want one", name, len(seqs), msgs)
		}
	}

	genuine := seal(r.callKey, batch(call(1), call(2), call(3)))
	served("a genuine batch", genuine, 1, 2, 3)
	refused("the same batch again", genuine, "out of order", 1, 2, 3)
	refused("sealed under another key", seal(bytes.Repeat([]byte{8}, 32), batch(call(4), call(5))), "not signed", 4, 5)
	tampered := seal(r.callKey, batch(call(4), call(5)))
	tampered[len(tampered)-1] ^= 1 // the last call's number: now 4 as well
	refused("changed after sealing", tampered, "not signed", 4)
	stale := batch(call(4), call(5))
	stale.IssuedAtUnixNano = time.Now().Add(-time.Hour).UnixNano()
	refused("stale", seal(r.callKey, stale), "not signed", 4, 5)

	// Truncated: the last call's field cut off, which leaves a valid
	// message of two calls.
	c6 := call(6)
	full := seal(r.callKey, batch(call(4), call(5), c6))
	cut := full[:len(full)-len(protowire.AppendBytes(protowire.AppendTag(nil, 10, protowire.BytesType), mustMarshal(t, c6)))]
	refused("truncated", cut, "not signed", 4, 5)
	// Reordered after sealing: the two calls' fields swapped.
	c4, c5 := call(4), call(5)
	f4 := protowire.AppendBytes(protowire.AppendTag(nil, 10, protowire.BytesType), mustMarshal(t, c4))
	f5 := protowire.AppendBytes(protowire.AppendTag(nil, 10, protowire.BytesType), mustMarshal(t, c5))
	pair := seal(r.callKey, batch(c4, c5))
	if !bytes.HasSuffix(pair, append(bytes.Clone(f4), f5...)) {
		t.Fatal("the batch's calls are not its last fields")
	}
	swapped := append(bytes.Clone(pair[:len(pair)-len(f4)-len(f5)]), append(f5, f4...)...)
	refused("reordered after sealing", swapped, "not signed", 4, 5)
	// Signed, but not in order: numbers must rise within a batch and
	// above the stream's last.
	refused("calls numbered down", seal(r.callKey, batch(call(5), call(4))), "out of order", 4, 5)
	refused("a call numbered below the stream's last", seal(r.callKey, batch(call(2), call(7))), "out of order", 2, 7)
	refused("a call numbered twice", seal(r.callKey, batch(call(4), call(4))), "out of order", 4)

	nested := call(5)
	nested.Batch = []*pb.WorkerRequest{call(6)}
	refused("a batch in a batch", seal(r.callKey, batch(call(4), nested)), "of its own", 4, 5)
	signedCall := call(5)
	signedCall.IssuedAtUnixNano = time.Now().UnixNano()
	refused("a call with a time of its own", seal(r.callKey, batch(call(4), signedCall)), "of its own", 4, 5)
	withOp := batch(call(4), call(5))
	withOp.Op = &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_DELETE}
	refused("a batch with an operation of its own", seal(r.callKey, withOp), "a call's fields", 4, 5)
	var many []*pb.WorkerRequest
	var manySeqs []uint64
	for n := range uint64(maxCallBatch + 1) {
		many = append(many, call(100+n))
		if n < maxCallBatch {
			manySeqs = append(manySeqs, 100+n)
		}
	}
	refused("a batch too large", seal(r.callKey, batch(many...)), "too large", manySeqs...)

	// None of the refused batches took its numbers.
	served("a genuine batch after the refused ones", seal(r.callKey, batch(call(4), call(5), call(6))), 4, 5, 6)

	// Another stream of the same subscription: a batch seen on the first
	// is a replay.
	other, err := r.client.Calls(bg, grpc.ForceCodecV2(callCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := answers(other, genuine, 3)
	if a := got[base+1]; a == nil || !strings.Contains(answerError(a).Error(), "replayed") {
		t.Errorf("a batch replayed on another stream: call 1 answered %v, want refused (replayed)", a)
	}
	// A batch is a message of the stream only.
	if _, err := r.client.Process(bg, batch(call(300))); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an unsigned batch as a unary call = %v, want Unauthenticated", err)
	}
	signed := batch(call(301))
	if signed.Signature, err = signCall(r.callKey, "w1", signed); err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.Process(bg, signed); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "Calls stream") {
		t.Errorf("a signed batch as a unary call = %v, want Unauthenticated (only on the Calls stream)", err)
	}

	// A signed cancel travels in a batch as well: the held call ends.
	held := call(10)
	held.Op.DatabaseName, held.Owner = "slow", false
	if err := stream.SendMsg(&sealedCall{b: seal(r.callKey, batch(held, call(11)))}); err != nil {
		t.Fatal(err)
	}
	<-r.st.reads
	if resp, err := stream.Recv(); err != nil || resp.GetSeq() != base+11 || string(resp.GetResult()) != "1" {
		t.Fatalf("the cached read beside a held call = %v, %v; want answered (1) at once", resp, err)
	}
	got, _ = answers(stream, seal(r.callKey, batch(&pb.WorkerRequest{CancelSeq: base + 10, Seq: base + 12}, call(13))), 2)
	if a := got[base+13]; a == nil || string(a.GetResult()) != "1" {
		t.Errorf("the read beside a cancel = %v, want 1", a)
	}
	if err := <-r.st.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("held call after a signed cancel in a batch ended with %v, want context.Canceled", err)
	}
	if a := got[base+10]; a == nil || len(a.GetStatus()) == 0 {
		t.Errorf("held call after a signed cancel = %v, want its (failed) answer", a)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// batchCounter is a worker's stream interceptor that records how many
// calls each message of a Calls stream carries: a batch's calls, or 1.
type batchCounter struct {
	mu    sync.Mutex
	sizes []int
}

func (b *batchCounter) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &countedStream{ServerStream: ss, b: b})
}

// counted returns the sizes recorded so far.
func (b *batchCounter) counted() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sizes)
}

type countedStream struct {
	grpc.ServerStream
	b *batchCounter
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if in, ok := m.(*sealedCall); ok && err == nil {
		var req pb.WorkerRequest
		if proto.Unmarshal(in.b, &req) == nil {
			s.b.mu.Lock()
			s.b.sizes = append(s.b.sizes, max(1, len(req.GetBatch())))
			s.b.mu.Unlock()
		}
	}
	return err
}

// TestCallStreamOldWorkerGetsLoneCalls: during a rolling upgrade a new
// main worker runs beside workers from before batched calls, which refuse
// a batch. The main worker sends batches only to a worker whose Subscribe
// said it reads them (batched_calls). A worker subscribing as an older
// one does (no such field) gets every call alone: the calls queued behind
// a held one, and those of 32 callers reading warm entities at once, each
// answered with its own document. A current worker, subscribed by the
// subscriber, gets the queued calls as one batch.
func TestCallStreamOldWorkerGetsLoneCalls(t *testing.T) {
	token := []byte(testJoinToken)
	for _, old := range []bool{true, false} {
		t.Run(map[bool]string{true: "old worker", false: "current worker"}[old], func(t *testing.T) {
			m := startTestMain(t, 4<<20)
			sub := newTestSubscriber(t, m.clusterAddr, token)
			var counter batchCounter
			_, addr := serveWorkerGS(t, sub.srv, grpc.Creds(grpccreds.NewTLS(sub.ident.tlsConfig(sub.pin.check, true))),
				grpc.StreamInterceptor(counter.intercept))
			sub.advertise = addr
			if old {
				// An older worker's Subscribe: the same fields, proven, but
				// no batched_calls.
				j := &joiner{id: sub.id, ident: sub.ident, priv: sub.priv}
				resp, _, mainFP, err := j.subscribe(t, m.clusterAddr, nil, func(exporter []byte, req *pb.SubscribeRequest) {
					req.Tags["grpc_addr"] = addr
					req.Proof, _ = workerProof(token, exporter, req)
				})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sub.install(resp, mainFP); err != nil {
					t.Fatal(err)
				}
			} else {
				conn, err := sub.dial(anyPeer)
				if err != nil {
					t.Fatal(err)
				}
				_, err = sub.subscribe(t.Context(), pb.NewMainWorkerClient(conn))
				conn.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			c := m.svc.router.registered(sub.id)
			if c == nil {
				t.Fatal("the worker is not registered")
			}
			rw := c.proc.(*remoteWorker)
			bg := context.Background()
			get := func(ctx context.Context, sg callSigner, i int) error {
				resp, err := rw.link.call(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprintf("k%d", i),
					Operation: pb.Operation_GET}, Owner: true}, sg)
				if err == nil && len(resp.GetStatus()) > 0 {
					err = answerError(resp)
				}
				if want := fmt.Sprintf(`{"n":%d}`, i); err == nil && string(resp.GetResult()) != want {
					err = fmt.Errorf("call %d answered %s, want %s", i, resp.GetResult(), want)
				}
				return err
			}
			for i := range 8 {
				if _, err := rw.Process(bg, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprintf("k%d", i),
					Operation: pb.Operation_PUT, Payload: fmt.Appendf(nil, `{"n":%d}`, i)}, Owner: true}); err != nil {
					t.Fatal(err)
				}
			}

			// Calls queue behind a call whose seal is held.
			g := newGatedSigner(rw)
			errs := make(chan error, 8)
			go func() { errs <- get(bg, g, 0) }()
			for deadline := time.Now().Add(10 * time.Second); pendingOn(rw) != 1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the first call is never sealed")
				}
			}
			for i := 1; i < 5; i++ {
				go func() { errs <- get(bg, g, i) }()
			}
			for deadline := time.Now().Add(10 * time.Second); queuedOn(rw) != 4; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the calls never queued")
				}
			}
			close(g.gate)
			for range 5 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			var gated []int
			for len(g.sent) > 0 {
				gated = append(gated, max(1, len((<-g.sent).GetBatch())))
			}
			want := "[1 4]"
			if old {
				want = "[1 1 1 1 1]"
			}
			if fmt.Sprint(gated) != want {
				t.Errorf("calls per message sent = %v, want %s", gated, want)
			}

			// Warm reads under load: 32 callers, 50 reads each.
			var wg sync.WaitGroup
			loadErrs := make(chan error, 32)
			for c := range 32 {
				wg.Go(func() {
					for r := range 50 {
						if err := get(bg, rw, (c+r)%8); err != nil {
							loadErrs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(loadErrs)
			for err := range loadErrs {
				t.Error(err)
			}
			sizes := counter.counted()
			calls, biggest := 0, 0
			for _, n := range sizes {
				calls += n
				biggest = max(biggest, n)
			}
			if calls != 8+5+32*50 {
				t.Errorf("the worker read %d calls, want %d", calls, 8+5+32*50)
			}
			t.Logf("%d calls in %d messages, at most %d to a message", calls, len(sizes), biggest)
			if old && biggest != 1 {
				t.Errorf("a worker from before batches was sent a message of %d calls", biggest)
			}
			if !old && biggest < 4 {
				t.Errorf("a current worker got at most %d calls to a message, want the batch of 4", biggest)
			}
		})
	}
}

// pendingOn is how many calls wait for their answer on rw's open stream.
func pendingOn(rw *remoteWorker) int {
	return onStream(rw, func(cs *callStream) int {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return len(cs.pending)
	})
}

// queuedOn is how many calls wait in the queue of rw's open stream.
func queuedOn(rw *remoteWorker) int {
	return onStream(rw, func(cs *callStream) int {
		cs.qmu.Lock()
		defer cs.qmu.Unlock()
		return len(cs.queue)
	})
}

func onStream(rw *remoteWorker, count func(*callStream) int) int {
	rw.link.mu.Lock()
	cs := rw.link.cur
	rw.link.mu.Unlock()
	if cs == nil {
		return -1
	}
	return count(cs)
}

// TestCallStreamOpenBounded: while the link's connection is being made
// and the worker never answers its handshake (a listener that accepts
// TCP and says nothing, as a worker stopped mid-restart would), a call
// with no deadline of its own, and every call that comes meanwhile,
// gives up after the link's wait (callWait; shortened here) with
// errWorkerSlow's 503, not after gRPC's connect timeout (20 s); a call
// with a deadline of its own ends at it.
func TestCallStreamOpenBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	creds := grpccreds.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient(ln.Addr().String(), append(grpcDialOptions(4<<20, creds), callLinkDialOptions()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rw := newRemoteWorker("w1", pb.NewProcessingWorkerClient(conn), bytes.Repeat([]byte{7}, 32), time.Now, true)
	t.Cleanup(rw.close)
	wait := 300 * time.Millisecond
	rw.link.wait = wait
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
	rt.add(&workerConn{id: "w1", proc: rw, close: func() {}})
	rt.seen("w1", cacheStats{})

	start := time.Now()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := rt.Process(context.Background(), &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprint("k", i), Operation: pb.Operation_GET})
			errs <- err
		}()
	}
	for range 4 {
		err := <-errs
		if !errors.Is(err, errWorkerSlow) || statusOf(err) != 503 || !strings.Contains(publicMessage(err, "r1"), "did not answer in time") {
			t.Errorf("a call while the link's handshake goes unanswered = %v (status %d, %q), want errWorkerSlow, 503", err, statusOf(err), publicMessage(err, "r1"))
		}
	}
	if took := time.Since(start); took > scaled(5*time.Second) {
		t.Errorf("the calls gave up after %v, want %v", took, wait)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start = time.Now()
	_, err = rt.Process(ctx, &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET})
	if took := time.Since(start); err == nil || took > scaled(5*time.Second) {
		t.Errorf("a call with a deadline of %v = %v after %v, want its deadline's error at once", wait, err, took)
	}
}
