package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

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
	s, err := newSealer([]byte("0123456789abcdef0123456789abcdef"), "k1", cryptoRand, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(id, st, newSchemaRegistry(st), newLRU[string, cachedEntity](16, 0, time.Now), slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.setSealer(s)
	return w
}

// TestEpochRuleDropsStaleCache: two in-process workers behind a router; the
// owner caches v1, loses the key to the other worker which writes v2, and
// gets it back: the new epoch makes it drop the cache and read v2.
func TestEpochRuleDropsStaleCache(t *testing.T) {
	st := newMemStore()
	a, b := newTestWorker(t, "a", st), newTestWorker(t, "b", st)
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, 0)
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
		resp, err := rt.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: key, Operation: op, Payload: []byte(payload)})
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

// TestReadFallbackBypassesCache: a read served by a non-owner (the owner is
// saturated) neither uses nor fills the non-owner's cache.
func TestReadFallbackBypassesCache(t *testing.T) {
	st := newMemStore()
	w := newTestWorker(t, "x", st)
	ctx := context.Background()
	w.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_PUT, Payload: []byte(`1`), Owner: true, Epoch: 1})
	st.Put(ctx, entityObjectKey("db", "k"), mustSeal(t, w, "db", "k", `2`))
	resp, err := w.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET, Owner: false, Epoch: 1})
	if err != nil || string(resp.GetResult()) != "2" {
		t.Errorf("non-owner GET = %s, %v, want 2 from storage", resp.GetResult(), err)
	}
}

// mustSeal seals doc as worker w would store it.
func mustSeal(t *testing.T, w *worker, db, key, doc string) []byte {
	t.Helper()
	b, err := w.sealer.Load().seal(db, key, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRouterNoWorkers: with no available worker a call is 503.
func TestRouterNoWorkers(t *testing.T) {
	rt := newRouter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, 0)
	_, err := rt.Process(context.Background(), &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", Operation: pb.Operation_GET})
	if statusOf(err) != 503 {
		t.Errorf("Process with no workers: status %d (%v), want 503", statusOf(err), err)
	}
}
