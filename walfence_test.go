package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "deltadatabase/proto"
)

// TestWALPausedWorkerCallsFenced: a worker paused past its lease has its
// log taken over, and another worker writes its entity; resumed, the
// worker still holds calls the main worker sent it before (admitted as it
// resumed, the main worker long gone from them). A write among them that
// was checked before the takeover and reaches the log after the worker
// reopened it, or one checked after the reopen, must not write its older
// value over the newer acknowledged one (TestWALPausedWorkerFenced lost
// writes this way under load); nor may a read of them serve or cache
// anything. Calls of the new subscription (a later epoch) are served.
func TestWALPausedWorkerCallsFenced(t *testing.T) {
	ctx := t.Context()
	st, l, w, other := loggedPair(t, nil)
	if _, err := w.Process(ctx, callA(pb.Operation_PUT, `"1"`, 1)); err != nil {
		t.Fatal(err)
	}
	// Checked under the old subscription; its goroutine runs on later.
	early, err := w.check(callA(pb.Operation_PUT, `"stale-early"`, 1))
	if err != nil {
		t.Fatal(err)
	}
	// The pause: the main worker takes the log over (epoch 2) and the
	// other worker writes the entity.
	if _, err := takeOverLog(ctx, st, "w1", claimGen, l.generation(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Process(ctx, callA(pb.Operation_PUT, `"2"`, 2)); err != nil {
		t.Fatal(err)
	}
	// Resumed: it subscribes again, reopening its log.
	if _, err := w.reopenLog(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.run(ctx, early); !errors.Is(err, errWALTaken) || statusOf(err) != 503 {
		t.Errorf("write checked before the takeover, logged after the reopen = %v; want 503 taken over", err)
	}
	if _, err := w.Process(ctx, callA(pb.Operation_PUT, `"stale-late"`, 1)); statusOf(err) != 503 {
		t.Errorf("write of the old epoch after the reopen = %v; want 503", err)
	}
	if resp, err := w.Process(ctx, callA(pb.Operation_GET, "", 1)); err == nil {
		t.Errorf("read of the old epoch after the reopen answered %s", resp.GetResult())
	}
	// The new subscription's answer carries epoch 3: its calls come
	// under a later one.
	w.routedAfter(3)
	if _, err := w.Process(ctx, callA(pb.Operation_PUT, `"stale-3"`, 3)); statusOf(err) != 503 {
		t.Errorf("write of the subscription's epoch = %v; want 503", err)
	}
	if err := l.flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, who := range []*worker{other, w} {
		resp, err := who.Process(ctx, callA(pb.Operation_GET, "", 4))
		if err != nil || string(resp.GetResult()) != `"2"` {
			t.Errorf("%s reads %s, %v; want the acknowledged \"2\"", who.id, resp.GetResult(), err)
		}
	}
	if _, err := w.Process(ctx, callA(pb.Operation_PUT, `"3"`, 4)); err != nil {
		t.Fatalf("write of the new subscription: %v", err)
	}
	if err := l.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, err := other.Process(ctx, callA(pb.Operation_GET, "", 5)); err != nil || string(resp.GetResult()) != `"3"` {
		t.Errorf("after the new subscription's write the file holds %s, %v; want \"3\"", resp.GetResult(), err)
	}
}

// TestWALPausedWorkerReadFillFenced: an owner's read checked before its
// worker was paused past its lease reads the entity's file ("1") and is
// held there while the main worker takes the log over, another worker
// writes the entity ("2", acknowledged) and the resumed worker subscribes
// again and serves calls of the new subscription. Released, the read must
// not cache its "1": the resumed worker, owner again, reads the
// acknowledged "2".
func TestWALPausedWorkerReadFillFenced(t *testing.T) {
	ctx := t.Context()
	held := &pausedRead{read: make(chan struct{}), release: make(chan struct{})}
	st, l, w, other := loggedPair(t, func(st *fsStore) store { held.store = st; return held })
	call := ownerCall
	if _, err := w.Process(ctx, call(pb.Operation_PUT, "a", `"1"`, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Epoch 2 (w still owns "a") drops its cache: its read reads the file.
	held.armed.Store(true)
	type answer struct {
		resp *pb.WorkerResponse
		err  error
	}
	early := make(chan answer, 1)
	go func() {
		resp, err := w.Process(ctx, call(pb.Operation_GET, "a", "", 2))
		early <- answer{resp, err}
	}()
	select {
	case <-held.read:
	case a := <-early:
		t.Fatalf("the read was not held after its storage read: %s, %v", a.resp.GetResult(), a.err)
	}
	// The pause: the main worker takes the log over (epoch 3) and the
	// other worker writes the entity.
	if _, err := takeOverLog(ctx, st, "w1", claimGen, l.generation(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Process(ctx, call(pb.Operation_PUT, "a", `"2"`, 3)); err != nil {
		t.Fatal(err)
	}
	// Resumed: it subscribes again (answer of epoch 4) and serves a call
	// of the new subscription before the read goes on.
	if _, err := w.reopenLog(); err != nil {
		t.Fatal(err)
	}
	w.routedAfter(4)
	if _, err := w.Process(ctx, call(pb.Operation_PUT, "b", `"x"`, 5)); err != nil {
		t.Fatalf("write of the new subscription: %v", err)
	}
	close(held.release)
	if a := <-early; a.err != nil {
		t.Logf("the held read answered %v", a.err)
	}
	readsTwice(t, w, "a", 5, `"2"`)
}

// pausedRead is a store whose next read of an entity file, once armed,
// returns only when release is closed, telling of it on read: the file
// is read, its reader not yet back with it.
type pausedRead struct {
	store
	armed         atomic.Bool
	read, release chan struct{}
}

func (h *pausedRead) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	b, rev, err := h.store.GetRev(ctx, key)
	if strings.HasPrefix(key, entitiesPrefix) && h.armed.CompareAndSwap(true, false) {
		close(h.read)
		<-h.release
	}
	return b, rev, err
}

// TestWALIdleWorkerTakenOver: a worker whose log holds no segment (a
// checkpoint cut them all, and it wrote nothing since) is paused past its
// lease and its log taken over; resumed, its writes are refused as taken
// over until it subscribes again, and then it must see the takeover
// (a new generation) and take writes again. Before, only a segment showed
// a takeover: such a worker kept its generation and every later write
// failed to create a segment in the directory the takeover removed (503
// until a restart), with the log marked down.
func TestWALIdleWorkerTakenOver(t *testing.T) {
	ctx := t.Context()
	st, l, w, other := loggedPair(t, nil)
	if _, err := w.Process(ctx, callA(pb.Operation_PUT, `"1"`, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	before := l.generation()
	if _, err := takeOverLog(ctx, st, "w1", claimGen, before, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Process(ctx, callA(pb.Operation_PUT, `"2"`, 2)); err != nil {
		t.Fatal(err)
	}
	// Resumed, before it subscribes again: its writes are refused as
	// taken over (nothing written), not counted as a storage fault.
	if _, err := w.Process(ctx, callA(pb.Operation_PUT, `"stale"`, 1)); !errors.Is(err, errWALTaken) || statusOf(err) != 503 {
		t.Errorf("write before the reopen = %v; want 503 taken over", err)
	}
	if down := l.down.Load(); down != nil {
		t.Errorf("log marked down by a takeover: %v", *down)
	}
	gen, err := w.reopenLog()
	if err != nil {
		t.Fatal(err)
	}
	if gen == before {
		t.Errorf("reopen after the takeover kept generation %d; want a new one", gen)
	}
	w.routedAfter(3)
	for i, v := range []string{`"3"`, `"4"`} {
		if _, err := w.Process(ctx, callA(pb.Operation_PUT, v, 4)); err != nil {
			t.Fatalf("write %d after the reopen: %v", i, err)
		}
		resp, err := w.Process(ctx, callA(pb.Operation_GET, "", 4))
		if err != nil || string(resp.GetResult()) != v {
			t.Errorf("after write %s: read %q, %v", v, resp.GetResult(), err)
		}
	}
}

// loggedPair is worker "w1" with its own write-ahead log over st (its
// storage calls through wrap(st) when wrap is not nil, for a test that
// holds one), keys set, and worker "w2", which takes its entities over.
func loggedPair(t *testing.T, wrap func(*fsStore) store) (st *fsStore, l *walLog, w, other *worker) {
	t.Helper()
	st = newTestFSStore(t)
	l = openTestWAL(t, st, "w1")
	s, err := newKeyring(st, []byte("0123456789abcdef0123456789abcdef"), "k1")
	if err != nil {
		t.Fatal(err)
	}
	var via store = st
	if wrap != nil {
		via = wrap(st)
	}
	w = newWorker("w1", via, newSchemaRegistry(st, budgets{}), newLRU[string, cachedEntity](16, 0, time.Now), budgets{},
		slog.New(slog.NewTextHandler(io.Discard, nil)), l)
	w.setKeys(s)
	return st, l, w, newTestWorker(t, "w2", st)
}

// ownerCall is the owner's call op of entity db/key under epoch.
func ownerCall(op pb.Operation, key, payload string, epoch uint64) *pb.WorkerRequest {
	return &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: op, Payload: []byte(payload)},
		Owner: true, Epoch: epoch}
}

// callA is ownerCall of entity db/a, the one the paused-worker tests
// write.
func callA(op pb.Operation, payload string, epoch uint64) *pb.WorkerRequest {
	return ownerCall(op, "a", payload, epoch)
}

// readsTwice checks that owner w reads entity db/key as want under
// epoch, twice: the second read is served from the cache, so a stale
// value cached by the first (or before it) shows there.
func readsTwice(t *testing.T, w *worker, key string, epoch uint64, want string) {
	t.Helper()
	for range 2 {
		resp, err := w.Process(t.Context(), ownerCall(pb.Operation_GET, key, "", epoch))
		if err != nil || string(resp.GetResult()) != want {
			t.Fatalf("owner reads %s, %v; want the acknowledged %s", resp.GetResult(), err, want)
		}
	}
}
