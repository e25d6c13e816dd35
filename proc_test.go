package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	pb "deltadatabase/proto"
)

// TestWorkerChecksBothPaths: a read the call stream answers on its
// receiver (worker.cached) passes the same checks as one Process serves.
// Entries planted in the cache under names the worker refuses, or in a
// worker without the master key, are never answered by either path, and
// both count nothing in the cache's statistics; a cached read's newer
// routing epoch drops the cache as Process's does.
func TestWorkerChecksBothPaths(t *testing.T) {
	ctx := context.Background()
	doc := cachedEntity{doc: []byte(`"planted"`), version: "1"}
	read := func(db, key string, epoch uint64) *pb.WorkerRequest {
		return &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET},
			Owner: true, Epoch: epoch}
	}
	keyless := newWorker("w0", newMemStore(), nil, newLRU[string, cachedEntity](16, 0, time.Now), budgets{},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	for _, c := range []struct {
		name    string
		w       *worker
		db, key string
		want    error
	}{
		{"database name", newTestWorker(t, "w1", newMemStore()), "../db", "k", errInvalid},
		{"entity key", newTestWorker(t, "w1", newMemStore()), "db", "a/../b", errInvalid},
		{"no master key", keyless, "db", "k", errUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.w.cache.Add(cacheKey(c.db, c.key), doc)
			before := c.w.stats()
			if resp, ok := c.w.cached(read(c.db, c.key, 1)); ok {
				t.Errorf("cached answered %s", resp.GetResult())
			}
			if resp, err := c.w.Process(ctx, read(c.db, c.key, 1)); !errors.Is(err, c.want) {
				t.Errorf("Process = %s, %v; want %v", resp.GetResult(), err, c.want)
			}
			if st := c.w.stats(); st.Hits != before.Hits || st.Misses != before.Misses {
				t.Errorf("refused reads counted %d hits, %d misses; want none", st.Hits-before.Hits, st.Misses-before.Misses)
			}
		})
	}
	w := newTestWorker(t, "w1", newMemStore())
	w.observeEpoch(1)
	w.cache.Add(cacheKey("db", "k"), doc)
	if resp, ok := w.cached(read("db", "k", 1)); !ok || string(resp.GetResult()) != `"planted"` {
		t.Fatalf("cached read of the same epoch = %s, %v; want the cached entity", resp.GetResult(), ok)
	}
	if resp, ok := w.cached(read("db", "k", 2)); ok {
		t.Errorf("cached read of a newer epoch answered %s from the cache of the old one", resp.GetResult())
	}
	if _, err := w.Process(ctx, read("db", "k", 2)); !errors.Is(err, errNotFound) {
		t.Errorf("Process after the new epoch = %v, want not found (storage holds nothing)", err)
	}
}

// BenchmarkWorkerCached is the call stream's inline read of a cached
// entity (worker.cached) alone: the checks and the cache lookup, without
// the stream.
func BenchmarkWorkerCached(b *testing.B) {
	w := newTestWorker(b, "w1", newMemStore())
	w.cache.Add(cacheKey("db", "k"), cachedEntity{doc: []byte(`{"n":1}`), version: "1"})
	req := &pb.WorkerRequest{Op: &pb.EntityOp{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET},
		Owner: true, Epoch: 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := w.cached(req); !ok {
			b.Fatal("not cached")
		}
	}
}
