package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "deltadatabase/proto"
)

// TestRendezvousBalance: 10k keys over 4 workers land within 10% of an
// even share each.
func TestRendezvousBalance(t *testing.T) {
	ids := []string{"w1", "w2", "w3", "w4"}
	counts := map[string]int{}
	const n = 10000
	for i := range n {
		counts[ids[rendezvousOrder("db", fmt.Sprintf("key-%d", i), ids)[0]]]++
	}
	for _, id := range ids {
		if share := float64(counts[id]) / (n / 4); share < 0.9 || share > 1.1 {
			t.Errorf("worker %s owns %d keys (%.2f of an even share), want within 10%%", id, counts[id], share)
		}
	}
}

// TestRendezvousJoinMovesOneNth: when a fifth worker joins, only keys that
// move to it move, about 1/5 of them.
func TestRendezvousJoinMovesOneNth(t *testing.T) {
	before := []string{"w1", "w2", "w3", "w4"}
	after := append(before[:4:4], "w5")
	moved := 0
	const n = 10000
	for i := range n {
		k := fmt.Sprintf("key-%d", i)
		a, b := before[rendezvousOrder("db", k, before)[0]], after[rendezvousOrder("db", k, after)[0]]
		if a != b {
			moved++
			if b != "w5" {
				t.Fatalf("key %s moved from %s to %s, want moves only to the new worker", k, a, b)
			}
		}
	}
	if frac := float64(moved) / n; frac < 0.17 || frac > 0.23 {
		t.Errorf("%.3f of keys moved on join, want about 1/5", frac)
	}
}

// newTestWorker is an in-process worker over a memStore.
func newTestWorker(t testing.TB, id string, st store) *worker {
	t.Helper()
	s, err := newKeyring(st, []byte("0123456789abcdef0123456789abcdef"), "k1")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(id, st, newSchemaRegistry(st, budgets{}), newLRU[string, cachedEntity](16, 0, time.Now), budgets{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	w.setKeys(s)
	return w
}

// TestEpochRuleDropsStaleCache: two in-process workers behind a router; the
// owner caches v1, loses the key to the other worker which writes v2, and
// gets it back: the new epoch makes it drop the cache and read v2.
func TestEpochRuleDropsStaleCache(t *testing.T) {
	st := newMemStore()
	a, b := newTestWorker(t, "a", st), newTestWorker(t, "b", st)
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, 0, nil, nil)
	rt.add(&workerConn{id: "a", proc: a, stats: a.stats, close: func() {}})
	rt.add(&workerConn{id: "b", proc: b, stats: b.stats, close: func() {}})
	// Remote workers get traffic from their first heartbeat on.
	if len(rt.candidates("db", "k")) != 0 {
		t.Fatal("workers are available before their first heartbeat")
	}
	rt.seen("a", cacheStats{})
	rt.seen("b", cacheStats{})
	ctx := context.Background()
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("k", i); []string{"a", "b"}[rendezvousOrder("db", k, []string{"a", "b"})[0]] == "a" {
			key = k
		}
	}
	do := func(op pb.Operation, payload string) string {
		resp, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: op, Payload: []byte(payload)})
		if err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		return string(resp.GetResult())
	}
	do(pb.Operation_PUT, `"v1"`)
	do(pb.Operation_GET, "")
	if _, ok := a.cache.Peek(cacheKey("db", key)); !ok {
		t.Fatal("owner a did not cache the entity")
	}
	rt.markUnavailable("a", "test")
	do(pb.Operation_PUT, `"v2"`) // now through b
	rt.seen("a", cacheStats{})   // a is back: a new epoch
	if got := do(pb.Operation_GET, ""); got != `"v2"` {
		t.Errorf("GET after the owner came back = %s, want \"v2\"", got)
	}
	// Without an epoch change the cache is kept (the rule is not a purge
	// on every call).
	do(pb.Operation_GET, "")
	if h := a.stats().Hits; h == 0 {
		t.Errorf("a's cache hits = %d after a repeated read in one epoch, want > 0", h)
	}
}

// TestEpochRulePausedWriteFill: on S3 (no cross-process lock, no log), an
// owner's write stores its entity ("x") and is held before it caches it
// (storing its version) while the key moves to another worker, which
// writes "y" (acknowledged), and back under a newer epoch, whose call the
// owner serves. Released, the write must not cache its "x" after that
// epoch's purge: the owner, reading again, gets "y".
func TestEpochRulePausedWriteFill(t *testing.T) {
	ctx := t.Context()
	st := newMemStore()
	held := &pausedVersionWrite{store: st, put: make(chan struct{}), release: make(chan struct{})}
	w, other := newTestWorker(t, "w1", held), newTestWorker(t, "w2", st)
	call := ownerCall
	held.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		c := call(pb.Operation_PUT, "a", `"x"`, 1)
		c.Op.MaxVersions = 1
		_, err := w.Process(ctx, c)
		done <- err
	}()
	select {
	case <-held.put:
	case err := <-done:
		t.Fatalf("the write was not held storing its version: %v", err)
	}
	if _, err := other.Process(ctx, call(pb.Operation_PUT, "a", `"y"`, 2)); err != nil {
		t.Fatal(err)
	}
	// Back to w (epoch 3), which serves a call of it first.
	if _, err := w.Process(ctx, call(pb.Operation_PUT, "b", `"z"`, 3)); err != nil {
		t.Fatal(err)
	}
	close(held.release)
	if err := <-done; err != nil {
		t.Fatalf("the held write: %v", err)
	}
	readsTwice(t, w, "a", 3, `"y"`)
}

// pausedVersionWrite is a store without cross-process locks (as S3)
// whose next write of a version object, once armed, returns only when
// release is closed, telling of it on put.
type pausedVersionWrite struct {
	store
	armed        atomic.Bool
	put, release chan struct{}
}

func (p *pausedVersionWrite) Lock(ctx context.Context, key string) (func(), error) {
	return func() {}, nil
}

func (p *pausedVersionWrite) Put(ctx context.Context, key string, data []byte) error {
	if strings.HasPrefix(key, versionsPrefix) && p.armed.CompareAndSwap(true, false) {
		close(p.put)
		<-p.release
	}
	return p.store.Put(ctx, key, data)
}

// TestReadFallbackBypassesCache: a read served by a non-owner (the owner is
// saturated) neither uses nor fills the non-owner's cache.
func TestReadFallbackBypassesCache(t *testing.T) {
	st := newMemStore()
	w := newTestWorker(t, "x", st)
	ctx := context.Background()
	w.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`)}, Owner: true, Epoch: 1})
	st.Put(ctx, entityObjectKey("db", "k"), mustSeal(t, w, "db", "k", `2`))
	resp, err := w.Process(ctx, &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, Owner: false, Epoch: 1})
	if err != nil || string(resp.GetResult()) != "2" {
		t.Errorf("non-owner GET = %s, %v, want 2 from storage", resp.GetResult(), err)
	}
}

// mustSeal seals doc as worker w would store it.
func mustSeal(t *testing.T, w *worker, db, key, doc string) []byte {
	t.Helper()
	b, _, err := w.keys.Load().seal(context.Background(), db, key, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRouterNoWorkers: with no available worker a call is 503.
func TestRouterNoWorkers(t *testing.T) {
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, 0, nil, nil)
	_, err := rt.Process(context.Background(), &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET})
	if statusOf(err) != 503 {
		t.Errorf("Process with no workers: status %d (%v), want 503", statusOf(err), err)
	}
}

// gatedProc is a processing worker that counts its calls and holds a GET
// of the key hold until release is closed, signalling entered when it
// starts to.
type gatedProc struct {
	processingWorker
	hold    string
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int64
}

func (g *gatedProc) Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	g.calls.Add(1)
	if req.GetOp().GetEntityKey() == g.hold && req.GetOp().GetOperation() == pb.Operation_GET {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.processingWorker.Process(ctx, req)
}

// TestSaturatedOwnerReadFallback: while the owner of an entity has as many
// calls in flight as the router's saturation limit, a read of the entity
// goes to the other worker, which answers the stored value without using
// or filling its cache; writes still go to the owner; once the owner is
// free again it takes the reads back.
func TestSaturatedOwnerReadFallback(t *testing.T) {
	st := newMemStore()
	a, b := newTestWorker(t, "a", st), newTestWorker(t, "b", st)
	ga := &gatedProc{processingWorker: a, entered: make(chan struct{}), release: make(chan struct{})}
	gb := &gatedProc{processingWorker: b}
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 1, nil, nil)
	rt.add(&workerConn{id: "a", proc: ga, stats: a.stats, close: func() {}})
	rt.add(&workerConn{id: "b", proc: gb, stats: b.stats, close: func() {}})
	rt.seen("a", cacheStats{})
	rt.seen("b", cacheStats{})
	// Two keys owned by a: one to hold a busy, one to read.
	owned := keysOwnedBy("a", []string{"a", "b"}, 2)
	ga.hold = owned[0]
	key := owned[1]
	ctx := t.Context()
	do := routeDo(t, rt)
	do(pb.Operation_PUT, ga.hold, `0`)
	do(pb.Operation_PUT, key, `"v1"`)
	if n := gb.calls.Load(); n != 0 {
		t.Fatalf("b got %d calls for entities a owns, want 0", n)
	}
	// b holds a stale copy of key in its cache, as if it had owned it once.
	b.cache.Add(cacheKey("db", key), cachedEntity{doc: []byte(`"stale"`), version: "old"})
	bBefore := b.stats()

	held := make(chan error, 1)
	go func() {
		_, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: "db", EntityKey: ga.hold, Operation: pb.Operation_GET})
		held <- err
	}()
	select {
	case <-ga.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the held GET did not reach a")
	}
	if got := do(pb.Operation_GET, key, ""); got != `"v1"` {
		t.Errorf("GET while a is saturated = %s, want \"v1\" from storage (not b's stale cache entry)", got)
	}
	if n := gb.calls.Load(); n != 1 {
		t.Errorf("b got %d calls while a was saturated, want 1 (the read)", n)
	}
	b.cache.Remove(cacheKey("db", key))
	if got := do(pb.Operation_GET, key, ""); got != `"v1"` {
		t.Errorf("second GET while a is saturated = %s, want \"v1\"", got)
	}
	if _, ok := b.cache.Peek(cacheKey("db", key)); ok {
		t.Error("b cached an entity it read for a saturated owner")
	}
	if s := b.stats(); s.Hits != bBefore.Hits || s.Misses != bBefore.Misses {
		t.Errorf("b's cache counters went from %+v to %+v, want unchanged (cache neither used nor filled)", bBefore, s)
	}
	aCalls := ga.calls.Load()
	do(pb.Operation_PUT, key, `"v2"`)
	if n := ga.calls.Load(); n != aCalls+1 || gb.calls.Load() != 2 {
		t.Errorf("a PUT while a is saturated went to b (a calls %d -> %d, b calls %d), want the owner a", aCalls, n, gb.calls.Load())
	}
	close(ga.release)
	if err := <-held; err != nil {
		t.Errorf("held GET = %v", err)
	}
	if got := do(pb.Operation_GET, key, ""); got != `"v2"` || gb.calls.Load() != 2 {
		t.Errorf("GET after a is free = %s (b calls %d), want \"v2\" from a", got, gb.calls.Load())
	}
}

// failingProc answers every call with err.
type failingProc struct{ err error }

func (f failingProc) Process(context.Context, *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	return nil, f.err
}

// failingOwnerRouter is a router (with handovers ho, nil for none) over
// worker a, which answers every call with err, and worker b over a
// memStore, both available; key is an entity a owns.
func failingOwnerRouter(t *testing.T, err error, ho *handovers) (rt *router, gb *gatedProc, key string) {
	b := newTestWorker(t, "b", newMemStore())
	gb = &gatedProc{processingWorker: b}
	rt = newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, ho)
	rt.add(&workerConn{id: "a", proc: failingProc{err}, stats: b.stats, close: func() {}})
	rt.add(&workerConn{id: "b", proc: gb, stats: b.stats, close: func() {}})
	rt.seen("a", cacheStats{})
	rt.seen("b", cacheStats{})
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("k", i); []string{"a", "b"}[rendezvousOrder("db", k, []string{"a", "b"})[0]] == "a" {
			key = k
		}
	}
	return rt, gb, key
}

// TestRouterTransportFailover: a call whose worker fails at the transport
// level is retried once on the next worker, and the failed worker leaves
// the rotation; any other error is the answer, with no retry.
func TestRouterTransportFailover(t *testing.T) {
	for _, c := range []struct {
		name      string
		err       error
		wantOK    bool
		wantAvail []string
	}{
		{"transport", fmt.Errorf("worker a: connection refused: %w", errTransport), true, []string{"b"}},
		{"storage", fmt.Errorf("put entity: disk full: %w", errUnavailable), false, []string{"a", "b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt, gb, key := failingOwnerRouter(t, c.err, nil)
			_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_PUT, Payload: []byte(`1`)})
			if c.wantOK && (err != nil || gb.calls.Load() != 1) {
				t.Errorf("PUT owned by a failing worker = %v (b calls %d), want OK through b", err, gb.calls.Load())
			}
			if !c.wantOK && (!errors.Is(err, errUnavailable) || gb.calls.Load() != 0) {
				t.Errorf("PUT = %v (b calls %d), want the worker's error with no retry", err, gb.calls.Load())
			}
			var avail []string
			for _, w := range rt.candidates("db", key) {
				avail = append(avail, w.id)
			}
			slices.Sort(avail)
			if !slices.Equal(avail, c.wantAvail) {
				t.Errorf("available workers after the call = %v, want %v", avail, c.wantAvail)
			}
		})
	}
}

// TestRenewalClosesOldConnWhenIdle: a worker renewing its subscription
// (the same certificate, the same log generation) is the same process, so
// a call already sent on its old connection is still answered there: the
// old connection is closed only once no call is in flight on it (closing
// it at once cancelled such a call, and a write then answered 503 with
// its outcome unknown). A worker replaced by another process has its old
// connection closed at once.
func TestRenewalClosesOldConnWhenIdle(t *testing.T) {
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
	var closed atomic.Int32
	old := &workerConn{id: "w", identity: [32]byte{1}, close: func() { closed.Add(1) }}
	rt.add(old)
	old.inFlight.Add(1) // a call sent before the renewal
	rt.add(&workerConn{id: "w", identity: [32]byte{1}, close: func() {}})
	time.Sleep(300 * time.Millisecond)
	if n := closed.Load(); n != 0 {
		t.Fatalf("old connection closed %d times while a call was in flight on it", n)
	}
	old.inFlight.Add(-1)
	for deadline := time.Now().Add(5 * time.Second); closed.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("old connection still open 5 s after its last call")
		}
	}

	var replacedClosed atomic.Int32
	other := &workerConn{id: "v", identity: [32]byte{2}, close: func() { replacedClosed.Add(1) }}
	rt.add(other)
	other.inFlight.Add(1)
	rt.add(&workerConn{id: "v", identity: [32]byte{3}, close: func() {}})
	if n := replacedClosed.Load(); n != 1 {
		t.Errorf("connection of a worker replaced by another process closed %d times, want once at once", n)
	}
}

// TestRouterHandoverAfterLostWorker: the owner of an entity fails at the
// transport level and its log's takeover does not finish (no runner
// here): the write retried for the next worker waits for the takeover,
// then answers 503 with the handover's sentence, and its outcome stays
// unknown (the lost call may have written); a read of the entity waits
// and answers the same sentence, and no other worker is called meanwhile.
func TestRouterHandoverAfterLostWorker(t *testing.T) {
	ho := newHandovers(newTestFSStore(t), slog.New(slog.DiscardHandler), time.Now)
	lost := fmt.Errorf("worker a: connection reset: %w", errTransport)
	rt, gb, key := failingOwnerRouter(t, lost, ho)
	putErr, readErr := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_PUT, Payload: []byte(`1`)})
		putErr <- err
	}()
	// The read starts once the write's call has failed and a is out of
	// rotation, so that both wait for the handover at once.
	for len(rt.candidates("db", key)) != 1 {
		time.Sleep(time.Millisecond)
	}
	go func() {
		_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_GET})
		readErr <- err
	}()
	err := <-putErr
	want := fmt.Sprintf(handingOver, "rid")
	if got := publicMessage(err, "rid"); statusOf(err) != 503 || got != want {
		t.Errorf("PUT while the lost owner's log is taken over: %d %q (%v), want 503 %q", statusOf(err), got, err, want)
	}
	if nothingWritten(err) || changedNothing(err) {
		t.Errorf("PUT whose first call was lost counts as having written nothing: %v", err)
	}
	err = <-readErr
	if got := publicMessage(err, "rid"); statusOf(err) != 503 || got != want {
		t.Errorf("GET while the lost owner's log is taken over: %d %q (%v), want 503 %q", statusOf(err), got, err, want)
	}
	if n := gb.calls.Load(); n != 0 {
		t.Errorf("worker b was called %d times before the handover was done", n)
	}
}

// TestRouterDamagedHandover: while the log of a worker that left cannot
// be taken over because a record in it is damaged, its entities answer
// 503 at once with the sentence that names the operator's part (not
// after the handover wait, not "try again shortly"), a write counting as
// having written nothing, and no worker is called.
func TestRouterDamagedHandover(t *testing.T) {
	ho := newHandovers(newTestFSStore(t), slog.New(slog.DiscardHandler), time.Now)
	h := &handover{worker: "a", kind: hoTakeover, claim: claimDead}
	ho.add(h)
	ho.mu.Lock()
	h.err = fmt.Errorf("apply segment 0000.log at offset 64: %w", errWALDamaged)
	ho.mu.Unlock()
	rt, gb, key := failingOwnerRouter(t, fmt.Errorf("worker a: connection reset: %w", errTransport), ho)
	want := fmt.Sprintf(handoverDamaged, "rid")
	for _, op := range []pb.Operation{pb.Operation_PUT, pb.Operation_GET} {
		start := time.Now()
		_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: op, Payload: []byte(`1`)})
		if got := publicMessage(err, "rid"); statusOf(err) != 503 || got != want {
			t.Errorf("%v behind a damaged log: %d %q (%v), want 503 %q", op, statusOf(err), got, err, want)
		}
		if d := time.Since(start); d > handoverWait/2 {
			t.Errorf("%v behind a damaged log answered after %v, want at once", op, d)
		}
		if op == pb.Operation_PUT && (!nothingWritten(err) || !changedNothing(err)) {
			t.Errorf("PUT refused before any call counts as possibly written: %v", err)
		}
	}
	if n := gb.calls.Load(); n != 0 {
		t.Errorf("worker b was called %d times behind a damaged log", n)
	}
}

// TestRouterDamagedAfterLostWorker: the owner of an entity fails at the
// transport level and its log, taken over by the runner, turns out to be
// damaged: the write retried for the next worker answers 503 with the
// damaged log's sentence as soon as the damage is found (not after the
// handover wait, not "try again shortly"), and counts as possibly written
// (the lost call's outcome is unknown); no other worker is called.
func TestRouterDamagedAfterLostWorker(t *testing.T) {
	st := newTestFSStore(t)
	damagedTestLog(t, st, "a")
	ho := newHandovers(st, slog.New(slog.DiscardHandler), time.Now)
	rt, gb, key := failingOwnerRouter(t, fmt.Errorf("worker a: connection reset: %w", errTransport), ho)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { ho.run(ctx, rt, func(string) {}) })
	defer func() { cancel(); wg.Wait() }()
	start := time.Now()
	_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_PUT, Payload: []byte(`1`)})
	want := fmt.Sprintf(handoverDamaged, "rid")
	if got := publicMessage(err, "rid"); statusOf(err) != 503 || got != want {
		t.Errorf("PUT whose owner was lost, behind its damaged log: %d %q (%v), want 503 %q", statusOf(err), got, err, want)
	}
	if d := time.Since(start); d > handoverWait/2 {
		t.Errorf("PUT behind a damaged log answered after %v, want as soon as the damage is found", d)
	}
	if nothingWritten(err) || changedNothing(err) {
		t.Errorf("PUT whose first call was lost counts as having written nothing: %v", err)
	}
	if n := gb.calls.Load(); n != 0 {
		t.Errorf("worker b was called %d times behind a damaged log", n)
	}
}

// TestSignatureCoversEveryField flips each field of a signed WorkerRequest,
// its EntityOp's included, found by reflection so that a field added later
// is covered too: every flip is refused, the unflipped request accepted.
func TestSignatureCoversEveryField(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	now := time.Unix(1_700_000_000, 0)
	signed := func() *pb.WorkerRequest {
		req := &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PATCH,
			Payload: []byte(`{"a":1}`), ContentType: mergePatchType, IfMatch: "v1", IfNoneMatch: "v2",
			SchemaIds: []string{"s.v1"}}, Epoch: 7, Owner: true, RequestId: "rid", IssuedAtUnixNano: now.UnixNano()}
		sig, err := signCall(key, "w1", req)
		if err != nil {
			t.Fatal(err)
		}
		req.Signature = sig
		return req
	}
	if !verifyCall(key, "w1", signed(), now) {
		t.Fatal("verifyCall refuses the request as signed")
	}
	flipped := 0
	var walk func(path string, get func(*pb.WorkerRequest) protoreflect.Message)
	walk = func(path string, get func(*pb.WorkerRequest) protoreflect.Message) {
		fields := get(signed()).Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			name := path + string(fd.Name())
			if name == "signature" {
				continue
			}
			if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
				walk(name+".", func(r *pb.WorkerRequest) protoreflect.Message { return get(r).Mutable(fd).Message() })
				continue
			}
			req := signed()
			flipField(t, get(req), fd)
			flipped++
			if verifyCall(key, "w1", req, now) {
				t.Errorf("request with %s changed after signing is accepted", name)
			}
		}
	}
	walk("", func(r *pb.WorkerRequest) protoreflect.Message { return r.ProtoReflect() })
	if flipped < 12 {
		t.Errorf("flipped %d fields, want every field of WorkerRequest and EntityOp (12)", flipped)
	}
}

// flipField changes field fd of m to another value of its kind.
func flipField(t *testing.T, m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	t.Helper()
	if fd.IsList() {
		l := m.Mutable(fd).List()
		l.Append(l.NewElement())
		if fd.Kind() == protoreflect.StringKind {
			l.Set(l.Len()-1, protoreflect.ValueOfString("x"))
		}
		return
	}
	v := m.Get(fd)
	switch fd.Kind() {
	case protoreflect.BoolKind:
		m.Set(fd, protoreflect.ValueOfBool(!v.Bool()))
	case protoreflect.StringKind:
		m.Set(fd, protoreflect.ValueOfString(v.String()+"x"))
	case protoreflect.BytesKind:
		m.Set(fd, protoreflect.ValueOfBytes(append(bytes.Clone(v.Bytes()), 'x')))
	case protoreflect.EnumKind:
		m.Set(fd, protoreflect.ValueOfEnum(v.Enum()+1))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		m.Set(fd, protoreflect.ValueOfInt32(int32(v.Int())+1))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		m.Set(fd, protoreflect.ValueOfInt64(v.Int()+1))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		m.Set(fd, protoreflect.ValueOfUint64(v.Uint()+1))
	default:
		t.Fatalf("field %s: no flip for kind %v", fd.FullName(), fd.Kind())
	}
}

// opCounter is a processing worker that counts the CHECKPOINT calls it
// gets.
type opCounter struct {
	processingWorker
	checkpoints atomic.Int64
}

func (o *opCounter) Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	if req.GetOp().GetOperation() == pb.Operation_CHECKPOINT {
		o.checkpoints.Add(1)
	}
	return o.processingWorker.Process(ctx, req)
}

// renewalCluster is a router with handovers, their runner running, over
// in-process workers a (its calls through pa) and b registered as remote
// ones, both available.
type renewalCluster struct {
	rt        *router
	ho        *handovers
	a, b      *worker
	pa        *opCounter
	forgotten atomic.Int32
}

// newRenewalCluster starts a renewalCluster on clock.
func newRenewalCluster(t *testing.T, clock func() time.Time) *renewalCluster {
	st := newMemStore()
	c := &renewalCluster{a: newTestWorker(t, "a", st), b: newTestWorker(t, "b", st)}
	c.pa = &opCounter{processingWorker: c.a}
	fsst := newTestFSStore(t)
	if err := os.MkdirAll(filepath.Join(fsst.root, walDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	c.ho = newHandovers(fsst, slog.New(slog.DiscardHandler), clock)
	c.rt = newRouter(slog.New(slog.DiscardHandler), clock, 0, nil, c.ho)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { c.ho.run(ctx, c.rt, func(string) { c.forgotten.Add(1) }) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	c.renew()
	c.rt.add(&workerConn{id: "b", identity: [32]byte{2}, proc: c.b, stats: c.b.stats, close: func() {}})
	c.rt.seen("a", cacheStats{})
	c.rt.seen("b", cacheStats{})
	if err := c.ho.waitSettled(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// renew registers a subscription of worker a: the same key and log
// generation each time.
func (c *renewalCluster) renew() {
	c.rt.add(&workerConn{id: "a", identity: [32]byte{1}, tags: map[string]string{"grpc_addr": "a:1", walGenTag: "7"},
		proc: c.pa, stats: c.a.stats, close: func() {}})
}

// TestRenewalKeepsOwnershipAndCaches: a worker renewing its subscription
// (the same certificate, the same log generation) is the same process with
// the same log, so who owns what does not change: the routing epoch does
// not move (it moved twice per renewal, and every worker dropped its
// cache), a warm entity of the other worker and one of the renewing
// worker stay cache hits, the renewing worker is not asked to checkpoint
// its log, and a write of its entity sent between the renewal's Subscribe
// and its first heartbeat waits for that heartbeat and is written.
func TestRenewalKeepsOwnershipAndCaches(t *testing.T) {
	c := newRenewalCluster(t, time.Now)
	rt, ho, a, b, pa, ctx := c.rt, c.ho, c.a, c.b, c.pa, t.Context()
	ka, kb := keysOwnedBy("a", []string{"a", "b"}, 1)[0], keysOwnedBy("b", []string{"a", "b"}, 1)[0]
	do := routeDo(t, rt)
	do(pb.Operation_PUT, ka, `"a1"`)
	do(pb.Operation_PUT, kb, `"b1"`)
	do(pb.Operation_GET, ka, "")
	do(pb.Operation_GET, kb, "")
	hitsA, hitsB, checkpoints := a.stats().Hits, b.stats().Hits, pa.checkpoints.Load()
	epoch := rt.epoch.Load()

	// a renews: a new registration of the same process, then a write of
	// its entity before its first heartbeat.
	c.renew()
	written := make(chan error, 1)
	go func() {
		_, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: "db", EntityKey: ka, Operation: pb.Operation_PUT, Payload: []byte(`"a2"`)})
		written <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-written:
		t.Fatalf("a write of the renewing worker's entity answered %v before its first heartbeat, want it to wait", err)
	default:
	}
	rt.seen("a", cacheStats{})
	select {
	case err := <-written:
		if err != nil {
			t.Fatalf("write sent during the renewal = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write sent during the renewal still waits 5 s after the worker's first heartbeat")
	}

	if got := do(pb.Operation_GET, kb, ""); got != `"b1"` {
		t.Errorf("GET of b's entity = %s", got)
	}
	if h := b.stats().Hits; h != hitsB+1 {
		t.Errorf("b's cache hits went from %d to %d across a's renewal: its warm entity was not a hit", hitsB, h)
	}
	if got := do(pb.Operation_GET, ka, ""); got != `"a2"` {
		t.Errorf("GET of a's entity = %s, want \"a2\"", got)
	}
	if h := a.stats().Hits; h != hitsA+1 {
		t.Errorf("a's cache hits went from %d to %d across its renewal: its warm entity was not a hit", hitsA, h)
	}
	if e := rt.epoch.Load(); e != epoch {
		t.Errorf("the routing epoch moved across a renewal (%d -> %d), want unchanged: who owns what did not change", epoch, e)
	}
	if err := ho.waitSettled(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pa.checkpoints.Load() - checkpoints; n != 0 {
		t.Errorf("the renewing worker was asked to checkpoint %d times, want none: it keeps its entities", n)
	}
}

// routeDo returns a function that runs op on entity k of database db
// through rt with payload and returns the result, failing t on an error.
func routeDo(t *testing.T, rt *router) func(op pb.Operation, k, payload string) string {
	return func(op pb.Operation, k, payload string) string {
		t.Helper()
		resp, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: k, Operation: op, Payload: []byte(payload)})
		if err != nil {
			t.Fatalf("%v %s: %v", op, k, err)
		}
		return string(resp.GetResult())
	}
}

// keysOwnedBy returns the first n keys of database db named k0, k1, ...
// that worker owner owns among ids.
func keysOwnedBy(owner string, ids []string, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		if k := fmt.Sprint("k", i); ids[rendezvousOrder("db", k, ids)[0]] == owner {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestRenewalLapses: a renewal whose registration sends no heartbeat
// within renewalAwait leaves the rotation: /admin/workers shows it
// Unavailable, the epoch moves, its entities go to the other worker, and
// its log is taken over (the worker is told to subscribe again); until
// then it shows Available and keeps its entities.
func TestRenewalLapses(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newRenewalCluster(t, clock)
	rt, ho, ctx := c.rt, c.ho, t.Context()
	ka := keysOwnedBy("a", []string{"a", "b"}, 1)[0]
	status := func() string {
		for _, w := range rt.list() {
			if w.WorkerID == "a" {
				return w.Status
			}
		}
		return "gone"
	}
	epoch := rt.epoch.Load()
	c.renew()
	mu.Lock()
	now = now.Add(renewalAwait - time.Millisecond)
	mu.Unlock()
	rt.expire(time.Hour)
	if s, owner := status(), rt.candidates("db", ka)[0].id; s != statusAvailable || owner != "a" || rt.epoch.Load() != epoch {
		t.Fatalf("a renewing for less than %v: %s, owner of its entity %s, epoch moved %v; want Available, a, no",
			renewalAwait, s, owner, rt.epoch.Load() != epoch)
	}
	mu.Lock()
	now = now.Add(time.Millisecond)
	mu.Unlock()
	rt.expire(time.Hour)
	if s, owner := status(), rt.candidates("db", ka)[0].id; s != statusUnavailable || owner != "b" || rt.epoch.Load() == epoch {
		t.Fatalf("a renewed %v ago with no heartbeat: %s, owner of its entity %s, epoch moved %v; want Unavailable, b, yes",
			renewalAwait, s, owner, rt.epoch.Load() != epoch)
	}
	if err := ho.waitSettled(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.forgotten.Load(); n != 1 {
		t.Errorf("the lapsed worker was told to subscribe again %d times, want once (its log taken over)", n)
	}
	if _, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: "db", EntityKey: ka, Operation: pb.Operation_PUT, Payload: []byte(`1`)}); err != nil {
		t.Errorf("write of the lapsed worker's entity after the takeover = %v", err)
	}
}

// TestExpireHeartbeatMeanwhile: expire looks for silent workers under
// the read lock and takes them out under the write lock; a worker whose
// heartbeat comes between the two stays in the rotation (it was taken
// out, its log taken over and its entities handed to the other worker
// for nothing), while one still silent is taken out. The test calls
// expire's two steps (overdue, retire) with the heartbeat between them.
func TestExpireHeartbeatMeanwhile(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newRenewalCluster(t, clock)
	rt, ho, ctx := c.rt, c.ho, t.Context()
	kb := keysOwnedBy("b", []string{"a", "b"}, 1)[0]
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	stale, lapsed := rt.overdue(time.Second)
	if len(stale) != 2 || len(lapsed) != 0 {
		t.Fatalf("overdue after 2s of silence = %d stale, %d lapsed; want 2, 0", len(stale), len(lapsed))
	}
	rt.seen("b", cacheStats{})
	for _, w := range stale {
		rt.retire(w, time.Second)
	}
	got := map[string]string{}
	for _, w := range rt.list() {
		got[w.WorkerID] = w.Status
	}
	if got["a"] != statusUnavailable || got["b"] != statusAvailable {
		t.Fatalf("after a heartbeat of b between the look and the take-out: a %s, b %s; want a %s, b %s",
			got["a"], got["b"], statusUnavailable, statusAvailable)
	}
	if owner := rt.candidates("db", kb)[0].id; owner != "b" {
		t.Errorf("owner of b's entity = %s, want b", owner)
	}
	if err := ho.waitSettled(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.forgotten.Load(); n != 1 {
		t.Errorf("workers told to subscribe again = %d, want 1 (a's log taken over, not b's)", n)
	}
}

// TestReadPlacementStale: a read placed by readShare (the owner it ranked
// once) goes where Process would send it when that placement no longer
// holds by its call: the owner left the rotation, renewed its
// subscription (a new registration under the same epoch), or is
// saturated (without logs its reads go to the least loaded worker).
func TestReadPlacementStale(t *testing.T) {
	st := newMemStore()
	ids := []string{"a", "b", "c"}
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 1, nil, nil)
	procs := map[string]*gatedProc{}
	register := func(id string) *gatedProc {
		w := newTestWorker(t, id, st)
		g := &gatedProc{processingWorker: w, entered: make(chan struct{}), release: make(chan struct{})}
		procs[id] = g
		rt.add(&workerConn{id: id, identity: [32]byte{id[0]}, proc: g, stats: w.stats, close: func() {}})
		rt.seen(id, cacheStats{})
		return g
	}
	for _, id := range ids {
		register(id)
	}
	owned := keysOwnedBy("a", ids, 2)
	key, busy := owned[0], owned[1]
	do := routeDo(t, rt)
	do(pb.Operation_PUT, key, `"v"`)
	do(pb.Operation_PUT, busy, `"w"`)
	get := &pb.EntityOp{DatabaseName: "db", EntityKey: key, Operation: pb.Operation_GET}
	read := func(at readPlace) {
		t.Helper()
		if resp, err := rt.readAt(t.Context(), get, at); err != nil || string(resp.GetResult()) != `"v"` {
			t.Fatalf("readAt = %s, %v", resp.GetResult(), err)
		}
	}
	calls := func() map[string]int64 {
		n := map[string]int64{}
		for id, g := range procs {
			n[id] = g.calls.Load()
		}
		return n
	}

	_, at := rt.readShare("db", key, 1000)
	if at.owner == nil || at.owner.id != "a" {
		t.Fatalf("readShare placed %s at %+v, want its owner a", key, at)
	}
	before := calls()
	read(at)
	if after := calls(); after["a"] != before["a"]+1 {
		t.Errorf("a read placed at its owner: calls %v -> %v, want one more to a", before, after)
	}

	// Saturated: a holds a read of busy, and the read placed before goes
	// to the least loaded worker, as Process's would.
	held := make(chan error, 1)
	procs["a"].hold = busy
	go func() {
		_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: busy, Operation: pb.Operation_GET})
		held <- err
	}()
	<-procs["a"].entered
	before = calls()
	read(at)
	if after := calls(); after["a"] != before["a"] {
		t.Errorf("a read placed at its saturated owner: calls %v -> %v, want none more to a", before, after)
	}
	close(procs["a"].release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}

	// Renewed: the placement names the registration it replaced.
	_, at = rt.readShare("db", key, 1000)
	old := procs["a"]
	renewed := register("a")
	read(at)
	if old.calls.Load() != before["a"] || renewed.calls.Load() != 1 {
		t.Errorf("a read placed before its owner renewed: %d calls to the old registration (want %d), %d to the new (want 1)",
			old.calls.Load(), before["a"], renewed.calls.Load())
	}

	// Left the rotation: the read goes to the owner among the others.
	_, at = rt.readShare("db", key, 1000)
	rt.markUnavailable("a", "test")
	next := []string{"b", "c"}[rendezvousOrder("db", key, []string{"b", "c"})[0]]
	before = calls()
	read(at)
	if after := calls(); after["a"] != before["a"] || after[next] != before[next]+1 {
		t.Errorf("a read placed at an owner that left: calls %v -> %v, want one more to %s", before, after, next)
	}
}

// TestRouterAwaitWorkerReleased: the calls waiting at a main worker's
// start for a worker in rotation are released by the worker joining,
// whichever way it joins (a remote worker's first heartbeat, the
// in-process worker), not by the end of the start's wait, which is far
// off here; a remote worker registered but not yet heard from releases
// none. With no worker by the end of the wait, a waiting call is 503
// then, not before.
func TestRouterAwaitWorkerReleased(t *testing.T) {
	far := scaled(30 * time.Second)
	const waiters = 20
	wait := func(rt *router) <-chan error {
		done := make(chan error, waiters)
		for i := range waiters {
			go func() {
				op := &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprintf("k%d", i), Operation: pb.Operation_GET}
				if i%2 == 0 {
					op.Operation, op.Payload = pb.Operation_PUT, []byte(`1`)
				}
				_, err := rt.Process(t.Context(), op)
				done <- err
			}()
		}
		return done
	}
	stillWaiting := func(t *testing.T, done <-chan error, when string) {
		t.Helper()
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("%s: a call with no worker in rotation yet = %v; want it to wait", when, err)
		default:
		}
	}
	released := func(t *testing.T, done <-chan error, how string) {
		t.Helper()
		start := time.Now()
		for range waiters {
			// A read of a key never written is answered not found: by a worker.
			if err := <-done; err != nil && !errors.Is(err, errNotFound) {
				t.Fatalf("a call released by %s = %v", how, err)
			}
		}
		if d := time.Since(start); d > far/2 {
			t.Errorf("the calls waiting for a worker were released %v after %s; want them released by it, not by the start's wait", d, how)
		}
	}
	st := newMemStore()
	// waiting starts the calls on a router just started with no worker.
	waiting := func(t *testing.T) (*router, <-chan error) {
		rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
		rt.awaitWorkersUntil = time.Now().Add(far)
		done := wait(rt)
		stillWaiting(t, done, "before any worker")
		return rt, done
	}

	t.Run("remote", func(t *testing.T) {
		rt, done := waiting(t)
		w := newTestWorker(t, "w1", st)
		rt.add(&workerConn{id: "w1", proc: w, stats: w.stats, close: func() {}})
		stillWaiting(t, done, "a worker registered, not yet heard from")
		rt.seen("w1", cacheStats{})
		released(t, done, "the worker's first heartbeat")
	})

	t.Run("in-process", func(t *testing.T) {
		rt, done := waiting(t)
		w := newTestWorker(t, "local", st)
		rt.add(&workerConn{id: "local", proc: w, stats: w.stats})
		released(t, done, "the in-process worker's registration")
	})

	t.Run("none", func(t *testing.T) {
		rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
		const left = 300 * time.Millisecond
		start := time.Now()
		rt.awaitWorkersUntil = start.Add(left)
		done := wait(rt)
		for range waiters {
			err := <-done
			took := time.Since(start)
			if !errors.Is(err, errNoWorker) || statusOf(err) != http.StatusServiceUnavailable {
				t.Fatalf("a call that found no worker within the start's wait = %v (status %d), want errNoWorker, 503", err, statusOf(err))
			}
			if took < left || took > left+scaled(2*time.Second) {
				t.Errorf("a call that found no worker within the start's wait was answered %v after it began, want when the wait (%v) ended", took, left)
			}
		}
	})
}

// TestRouterAwaitsWorkersAtStart: a main worker that just started, with
// no worker in rotation yet (its workers, which outlived its restart,
// are reconnecting), holds a request until one comes into rotation
// instead of answering 503 at once; once awaitWorkersUntil has passed,
// a request with no worker is 503 at once again.
func TestRouterAwaitsWorkersAtStart(t *testing.T) {
	st := newMemStore()
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
	rt.awaitWorkersUntil = time.Now().Add(scaled(10 * time.Second))
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`)})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("a write with no worker yet, just after the start, = %v after %v; want it to wait for one", err, time.Since(start))
	default:
	}
	w := newTestWorker(t, "w1", st)
	rt.add(&workerConn{id: "w1", proc: w, stats: w.stats, close: func() {}})
	rt.seen("w1", cacheStats{})
	if err := <-done; err != nil {
		t.Fatalf("a write that waited for the first worker = %v", err)
	}
	rt.markUnavailable("w1", "test")
	rt.awaitWorkersUntil = time.Now()
	start = time.Now()
	_, err := rt.Process(t.Context(), &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET})
	if !errors.Is(err, errNoWorker) || time.Since(start) > scaled(time.Second) {
		t.Errorf("a read with no worker after the start's wait = %v after %v, want errNoWorker at once", err, time.Since(start))
	}
}

// BenchmarkRenewalWake: a write of an entity whose owner is renewing its
// subscription waits for the owner's first heartbeat; reported is how
// long after that heartbeat the write is answered (wake-µs, the median;
// wake-max-µs), the heartbeat coming at a random moment 1-21 ms after the
// write began waiting. Run with -benchtime=200x or so: each turn waits.
func BenchmarkRenewalWake(b *testing.B) {
	w := newTestWorker(b, "a", newMemStore())
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
	subscribe := func() {
		rt.add(&workerConn{id: "a", identity: [32]byte{1}, proc: w, stats: w.stats, close: func() {}})
	}
	subscribe()
	rt.seen("a", cacheStats{})
	op := &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`)}
	var waits []time.Duration
	for b.Loop() {
		subscribe()
		answered := make(chan time.Time, 1)
		go func() {
			if _, err := rt.Process(b.Context(), op); err != nil {
				b.Error(err)
			}
			answered <- time.Now()
		}()
		time.Sleep(time.Millisecond + time.Duration(rand.Int64N(int64(20*time.Millisecond))))
		heartbeat := time.Now()
		rt.seen("a", cacheStats{})
		waits = append(waits, (<-answered).Sub(heartbeat))
	}
	slices.Sort(waits)
	b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "wake-µs")
	b.ReportMetric(float64(waits[len(waits)-1].Microseconds()), "wake-max-µs")
}

// renewingRouter returns a router on the clock (time.Now counted in
// reads) with worker a available and then renewing its subscription;
// subscribe subscribes a again (the same key and log generation).
func renewingRouter(t *testing.T, reads *atomic.Int64) (rt *router, subscribe func()) {
	w := newTestWorker(t, "a", newMemStore())
	rt = newRouter(slog.New(slog.DiscardHandler), func() time.Time { reads.Add(1); return time.Now() }, 0, nil, nil)
	subscribe = func() {
		rt.add(&workerConn{id: "a", identity: [32]byte{1}, tags: map[string]string{walGenTag: "7"}, proc: w, stats: w.stats,
			close: func() {}})
	}
	// In a bubble: its goroutines must end before it does, the replaced
	// registrations' closes (closeWhenIdle) among them.
	t.Cleanup(func() { time.Sleep(time.Second) })
	subscribe()
	rt.seen("a", cacheStats{})
	subscribe()
	if _, s := rt.stateOf("a"); s != stateRenewing {
		t.Fatalf("a subscribed again: state %v, want renewing", s)
	}
	return rt, subscribe
}

// TestAwaitRenewalWakes: the calls waiting for a renewing registration
// (awaitRenewal) read no clock while they wait (they polled it every
// 10 ms) and return at the very instant, on the bubble's clock, its
// renewal ends: its first heartbeat (available), its leaving the
// rotation, another Subscribe replacing it, its ctx ending (ctx's
// error), and without any of these renewalAwait after its Subscribe,
// when it lapses out of the rotation. Waiting on a poll, the heartbeat's
// calls returned up to 10 ms after it (9 ms here). No waiter is left
// behind: the bubble ends only when every goroutine in it has.
func TestAwaitRenewalWakes(t *testing.T) {
	const waiters = 8
	mid := renewalAwait/2 + time.Millisecond // between two 10 ms polls
	for _, tc := range []struct {
		name string
		// end ends the wait at mid after the Subscribe; nil: nothing does.
		end     func(rt *router, subscribe func(), cancel context.CancelFunc)
		timeout time.Duration // ctx's; 0: none
		want    bool
		wantErr error
		at      time.Duration // when the waiters return, after the Subscribe
		state   workerState   // a's registration's then
	}{
		{"first heartbeat", func(rt *router, _ func(), _ context.CancelFunc) { rt.seen("a", cacheStats{}) },
			0, true, nil, mid, stateAvailable},
		{"left the rotation", func(rt *router, _ func(), _ context.CancelFunc) { rt.markUnavailable("a", "test") },
			0, false, nil, mid, stateOut},
		{"another subscribe", func(_ *router, subscribe func(), _ context.CancelFunc) { subscribe() },
			0, false, nil, mid, stateRenewing},
		{"lapsed", nil, 0, false, nil, renewalAwait, stateOut},
		{"ctx cancelled", func(_ *router, _ func(), cancel context.CancelFunc) { cancel() },
			0, false, context.Canceled, mid, stateRenewing},
		{"ctx deadline", nil, renewalAwait / 4, false, context.DeadlineExceeded, renewalAwait / 4, stateRenewing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var reads atomic.Int64
				rt, subscribe := renewingRouter(t, &reads)
				c, subscribed := rt.registered("a"), time.Now()
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tc.timeout > 0 {
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				type result struct {
					ok  bool
					err error
					at  time.Time
				}
				done := make(chan result, waiters)
				for range waiters {
					go func() {
						ok, err := rt.awaitRenewal(ctx, c)
						done <- result{ok, err, time.Now()}
					}()
				}
				synctest.Wait()
				if tc.end != nil {
					before := reads.Load()
					time.Sleep(mid)
					if n := reads.Load() - before; n != 0 {
						t.Errorf("%d waiters read the clock %d times while they waited %v: want none (no polling)", waiters, n, mid)
					}
					tc.end(rt, subscribe, cancel)
				}
				for range waiters {
					r := <-done
					if r.ok != tc.want || !errors.Is(r.err, tc.wantErr) || tc.wantErr == nil && r.err != nil {
						t.Fatalf("awaitRenewal = %v, %v; want %v, %v", r.ok, r.err, tc.want, tc.wantErr)
					}
					if got := r.at.Sub(subscribed); got != tc.at {
						t.Errorf("a waiter returned %v after the Subscribe, want %v: at the instant its wait ended", got, tc.at)
					}
				}
				if _, s := rt.stateOf("a"); s != tc.state {
					t.Errorf("a's registration is then in state %v, want %v", s, tc.state)
				}
			})
		})
	}
}

// TestRenewalWriteAnsweredAtHeartbeat: writes of a renewing owner's
// entities wait through another Subscribe of the same worker and are
// answered at the instant of its first heartbeat, on the bubble's clock
// (polling, 4 ms after it here).
func TestRenewalWriteAnsweredAtHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reads atomic.Int64
		rt, subscribe := renewingRouter(t, &reads)
		const writes = 8
		answered := make(chan time.Time, writes)
		for i := range writes {
			go func() {
				op := &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprint("k", i), Operation: pb.Operation_PUT, Payload: []byte(`1`)}
				if _, err := rt.Process(t.Context(), op); err != nil {
					t.Errorf("a write waiting for the renewing owner = %v", err)
				}
				answered <- time.Now()
			}()
		}
		synctest.Wait()
		time.Sleep(time.Second + 3*time.Millisecond)
		subscribe()
		synctest.Wait()
		time.Sleep(3 * time.Millisecond)
		if n := len(answered); n != 0 {
			t.Fatalf("%d writes answered before the renewing owner's first heartbeat, want them to wait", n)
		}
		heartbeat := time.Now()
		rt.seen("a", cacheStats{})
		for range writes {
			if at := <-answered; !at.Equal(heartbeat) {
				t.Errorf("a write waiting for the renewing owner was answered %v after its first heartbeat, want at once", at.Sub(heartbeat))
			}
		}
	})
}

// TestAwaitRenewalManyWaiters: requests, and direct waits some of them
// cancelled, wait on three workers renewing at once, on the real clock
// under -race: one is heard from, one leaves the rotation and comes
// back, one subscribes again and is heard from, once they all wait (each
// has read the clock once). Every request is answered, by a worker in
// rotation.
func TestAwaitRenewalManyWaiters(t *testing.T) {
	st := newMemStore()
	var reads atomic.Int64
	rt := newRouter(slog.New(slog.DiscardHandler), func() time.Time { reads.Add(1); return time.Now() }, 0, nil, nil)
	ids := []string{"a", "b", "c"}
	workers := map[string]*worker{}
	subscribe := func(id string) {
		w := workers[id]
		rt.add(&workerConn{id: id, identity: [32]byte{id[0]}, tags: map[string]string{walGenTag: "1"}, proc: w, stats: w.stats,
			close: func() {}})
	}
	for _, id := range ids {
		workers[id] = newTestWorker(t, id, st)
		subscribe(id)
		rt.seen(id, cacheStats{})
	}
	ctx, cancel := context.WithTimeout(t.Context(), scaled(time.Minute))
	defer cancel()
	const requests = 60
	for round := range 10 {
		for _, id := range ids {
			subscribe(id)
		}
		before := reads.Load()
		var wg sync.WaitGroup
		for i := range requests {
			wg.Go(func() {
				op := &pb.EntityOp{DatabaseName: "db", EntityKey: fmt.Sprint("k", i), Operation: pb.Operation_GET}
				if i%2 == 0 {
					op.Operation, op.Payload = pb.Operation_PUT, []byte(fmt.Sprint(round))
				}
				if _, err := rt.Process(ctx, op); err != nil && !errors.Is(err, errNotFound) {
					t.Errorf("round %d: %v %s = %v", round, op.GetOperation(), op.GetEntityKey(), err)
				}
			})
		}
		for i, id := range ids {
			c := rt.registered(id)
			wg.Go(func() {
				wctx, wcancel := context.WithCancel(ctx)
				if i == 0 {
					wcancel() // a wait whose client went
				}
				defer wcancel()
				if _, err := rt.awaitRenewal(wctx, c); err != nil && i != 0 {
					t.Errorf("round %d: awaitRenewal(%s) = %v", round, id, err)
				}
			})
		}
		// Only awaitRenewal reads the clock on a call's way: once
		// before it waits.
		for reads.Load()-before < requests+int64(len(ids)) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		if err := ctx.Err(); err != nil {
			wg.Wait()
			t.Fatalf("round %d: %d of the %d calls began waiting for the renewals: %v", round, reads.Load()-before, requests+len(ids), err)
		}
		wg.Go(func() { rt.seen("a", cacheStats{}) })
		wg.Go(func() { rt.markUnavailable("b", "test"); subscribe("b"); rt.seen("b", cacheStats{}) })
		wg.Go(func() { subscribe("c"); rt.seen("c", cacheStats{}) })
		wg.Wait()
	}
}
