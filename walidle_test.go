package main

import (
	"errors"
	"log/slog"
	"testing"

	pb "deltadatabase/proto"
)

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
	call := func(op pb.Operation, payload string, epoch uint64) *pb.WorkerRequest {
		return ownerCall(op, "a", payload, epoch)
	}
	if _, err := w.Process(ctx, call(pb.Operation_PUT, `"1"`, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	before := l.generation()
	if _, err := takeOverLog(ctx, st, "w1", claimGen, before, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Process(ctx, call(pb.Operation_PUT, `"2"`, 2)); err != nil {
		t.Fatal(err)
	}
	// Resumed, before it subscribes again: its writes are refused as
	// taken over (nothing written), not counted as a storage fault.
	if _, err := w.Process(ctx, call(pb.Operation_PUT, `"stale"`, 1)); !errors.Is(err, errWALTaken) || statusOf(err) != 503 {
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
		if _, err := w.Process(ctx, call(pb.Operation_PUT, v, 4)); err != nil {
			t.Fatalf("write %d after the reopen: %v", i, err)
		}
		resp, err := w.Process(ctx, call(pb.Operation_GET, "", 4))
		if err != nil || string(resp.GetResult()) != v {
			t.Errorf("after write %s: read %q, %v", v, resp.GetResult(), err)
		}
	}
}
