package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	pb "deltadatabase/proto"
)

// TestKeyLocksForget: a released key lock leaves nothing behind.
func TestKeyLocksForget(t *testing.T) {
	var l keyLocks
	parallel(64, 16, func(i int) {
		unlock, err := l.lock(t.Context(), fmt.Sprint("k", i%4))
		if err != nil {
			t.Error(err)
			return
		}
		unlock()
		unlock()
	})
	if n := l.len(); n != 0 {
		t.Errorf("keyLocks holds %d entries after all unlocked, want 0", n)
	}
}

// TestKeyLocksWaiterCancelled: a waiter whose context ends returns at once
// with the context's error, without the lock; the holder keeps it, and the
// key is free for the next waiter after the holder releases it.
func TestKeyLocksWaiterCancelled(t *testing.T) {
	var l keyLocks
	unlock, err := l.lock(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		u, err := l.lock(ctx, "k")
		if u != nil {
			u()
		}
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled waiter = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled waiter still waiting after 5s")
	}
	if n := l.len(); n != 1 {
		t.Errorf("entries while held = %d, want 1 (the holder's)", n)
	}
	other, err := l.lock(t.Context(), "other")
	if err != nil {
		t.Fatalf("lock of another key while k is held = %v", err)
	}
	other()
	unlock()
	again, err := l.lock(t.Context(), "k")
	if err != nil {
		t.Fatalf("lock after release = %v", err)
	}
	again()
	if n := l.len(); n != 0 {
		t.Errorf("entries after all released = %d, want 0", n)
	}
}

// lockCountingStore counts the store locks taken.
type lockCountingStore struct {
	store
	locks atomic.Uint64
}

func (s *lockCountingStore) Lock(ctx context.Context, key string) (func(), error) {
	s.locks.Add(1)
	return s.store.Lock(ctx, key)
}

// TestWriteTakesThreeLocks: a PUT through the router to the in-process
// worker takes exactly three locks (the router's per-entity lock, the
// worker's per-key lock, the store's cross-process lock); a GET miss takes
// only the worker's, a GET hit none. (The first write to a database also
// creates its data keys, under their own lock, once: it is made first.)
func TestWriteTakesThreeLocks(t *testing.T) {
	st := &lockCountingStore{store: newTestFSStore(t)}
	w := newTestWorker(t, "w1", st)
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, 0, nil, nil)
	rt.add(&workerConn{id: "w1", proc: w, stats: w.stats})
	count := func() uint64 { return rt.writes.taken.Load() + w.locks.taken.Load() + st.locks.Load() }
	ctx := t.Context()
	if _, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: "db", EntityKey: "first", Operation: pb.Operation_PUT, Payload: []byte(`0`)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		op   *pb.EntityOp
		want uint64
	}{
		{"PUT", &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`)}, 3},
		{"GET hit", &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET}, 0},
		{"GET miss", &pb.EntityOp{DatabaseName: "db", EntityKey: "nope", Operation: pb.Operation_GET}, 1},
		{"PUT If-Match", &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`2`), IfMatch: "*"}, 3},
		{"DELETE", &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_DELETE}, 3},
	} {
		before := count()
		rt.Process(ctx, tc.op)
		if got := count() - before; got != tc.want {
			t.Errorf("%s took %d locks, want %d", tc.name, got, tc.want)
		}
	}
}

// TestLoggedWriteLeavesFileLockToApplier: through the write-ahead log, a
// PUT or DELETE takes the router's and the worker's locks but not the
// store's cross-process lock, whether its entity keeps versions or not
// (it writes no file but the log: its versions are in its record); the
// applier takes that lock when it writes the entity's files.
func TestLoggedWriteLeavesFileLockToApplier(t *testing.T) {
	fst := newTestFSStore(t)
	st := &lockCountingStore{store: fst}
	w := newTestWorker(t, "w1", st)
	o := testWALOptions()
	o.lock, o.applyDelay, o.maxUnapplied = w.lockEntity, time.Hour, 1<<30
	l, err := openWAL(t.Context(), fst, "w1", true, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.crash)
	w.wal = l
	rt := newRouter(slog.New(slog.DiscardHandler), time.Now, 0, nil, nil)
	rt.add(&workerConn{id: "w1", proc: w, stats: w.stats})
	ctx := t.Context()
	if _, err := rt.Process(ctx, &pb.EntityOp{DatabaseName: "db", EntityKey: "first", Operation: pb.Operation_PUT, Payload: []byte(`0`)}); err != nil {
		t.Fatal(err)
	}
	if err := l.flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		op               *pb.EntityOp
		inProcess, store uint64
	}{
		{"PUT", &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`)}, 2, 0},
		{"PUT If-Match", &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`2`), IfMatch: "*"}, 2, 0},
		{"DELETE", &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_DELETE}, 2, 0},
		{"PUT keeping versions", &pb.EntityOp{DatabaseName: "db", EntityKey: "v", Operation: pb.Operation_PUT, Payload: []byte(`1`), MaxVersions: 2}, 2, 0},
	} {
		before, storeBefore := rt.writes.taken.Load()+w.locks.taken.Load(), st.locks.Load()
		if _, err := rt.Process(ctx, tc.op); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := rt.writes.taken.Load() + w.locks.taken.Load() - before; got != tc.inProcess {
			t.Errorf("%s took %d in-process locks, want %d", tc.name, got, tc.inProcess)
		}
		if got := st.locks.Load() - storeBefore; got != tc.store {
			t.Errorf("%s took %d store locks, want %d", tc.name, got, tc.store)
		}
		// The applier writes the file under the entity's whole lock.
		storeBefore = st.locks.Load()
		if err := l.flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := st.locks.Load() - storeBefore; got != 1 {
			t.Errorf("after %s the applier took %d store locks, want 1", tc.name, got)
		}
	}
	if _, err := fst.Get(ctx, entityObjectKey("db", "k")); !errors.Is(err, errNotFound) {
		t.Errorf("entity file of the deleted entity: %v, want errNotFound", err)
	}
}
