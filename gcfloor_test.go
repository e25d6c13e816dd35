package main

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// TestGCPercentFor: the GOGC that puts the heap goal at the floor for a
// small live heap, Go's own 100 once twice the live heap reaches it.
func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		floor, live uint64
		want        int
	}{
		{0, 4 << 20, 100},
		{128 << 20, 8 << 20, 1500},
		{128 << 20, 4 << 20, 3100},
		{128 << 20, 1 << 20, 3200}, // the runtime's minimum heap, 4 MiB x 32, is the floor
		{128 << 20, 0, 3200},
		{128 << 20, 32 << 20, 300},
		{128 << 20, 64 << 20, 100},
		{128 << 20, 1 << 30, 100},
		{32 << 20, 3 << 20, 800},
		{4 << 20, 1 << 20, 100},
	} {
		if got := gcPercentFor(c.floor, c.live); got != c.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", c.floor, c.live, got, c.want)
		}
	}
}

// TestGCHeapFloorCappedByMemory: the floor is at most 1/16 of the memory
// the process may use (a cgroup's limit, the same figure that sizes the
// entity cache's default), and as asked where that memory is unknown or
// large; 0 stays Go's default pacing.
func TestGCHeapFloorCappedByMemory(t *testing.T) {
	for _, c := range []struct{ floor, mem, want int64 }{
		{defaultGCHeapFloor, 0, defaultGCHeapFloor},         // unknown
		{defaultGCHeapFloor, 8 << 30, defaultGCHeapFloor},   // a large machine
		{defaultGCHeapFloor, 512 << 20, defaultGCHeapFloor}, // exactly 1/16
		{defaultGCHeapFloor, 256 << 20, 16 << 20},           // a small container
		{defaultGCHeapFloor, 64 << 20, 4 << 20},             // a tiny one
		{256 << 20, 1 << 30, 64 << 20},                      // asked for more than 1/16
		{0, 256 << 20, 0},                                   // off
	} {
		if got := gcHeapFloorFor(c.floor, c.mem); got != c.want {
			t.Errorf("gcHeapFloorFor(%d, %d) = %d, want %d", c.floor, c.mem, got, c.want)
		}
	}
}

// gcCount is the number of collections the process has completed.
func gcCount() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapGoal is the heap size at which the collector means to end its next
// collection.
func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gogc is the collector's GOGC now.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// churn allocates n bytes of short-lived garbage in 4 KiB pieces.
func churn(n int) {
	var keep []byte
	for i := 0; i < n/4096; i++ {
		keep = make([]byte, 4096)
		keep[0] = byte(i)
	}
	runtime.KeepAlive(keep)
}

// TestGCFloorCollectsLess: with a 256 MiB floor, 128 MiB of garbage over
// a small live heap takes at most a collection or two where Go's default
// pacing takes dozens; the floor's end restores GOGC=100, and GOGC set in
// the environment leaves the collector alone.
func TestGCFloorCollectsLess(t *testing.T) {
	t.Setenv("GOGC", "")
	runtime.GC()
	// Go's default pacing collects each time the heap grows by about what
	// is live (4 MiB at least): its goal is far below the garbage. How
	// many collections the garbage then takes also depends on how the
	// machine schedules the collector beside the churn, which outruns it
	// (2 to 25 on two busy cores, the CPU limiter never engaged): the
	// goal is checked, the count logged.
	const garbage = 128 << 20
	if goal := heapGoal(); goal > garbage/8 {
		t.Fatalf("heap goal without the floor %d MiB, want at most %d MiB (the garbage's eighth)", goal>>20, garbage>>23)
	}
	before := gcCount()
	churn(garbage)
	without := gcCount() - before

	g := startGCFloor(256 << 20)
	runtime.GC() // the finalizer tunes after each collection, this one included
	deadline := time.Now().Add(10 * time.Second)
	for gogc() <= 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if gogc() <= 100 {
		t.Fatalf("GOGC = %d under a 256 MiB floor, want more than 100", gogc())
	}
	if goal := heapGoal(); goal < 256<<20 {
		t.Errorf("heap goal under a 256 MiB floor %d MiB, want 256 MiB or more", goal>>20)
	}
	before = gcCount()
	churn(garbage)
	with := gcCount() - before
	g.stop()
	t.Logf("collections for 128 MiB of garbage: %d without the floor, %d with it", without, with)
	if with > 2 {
		t.Errorf("collections for 128 MiB of garbage: %d with a 256 MiB floor, want at most 2 (%d without)", with, without)
	}
	if got := gogc(); got != 100 {
		t.Errorf("GOGC = %d after the floor's end, want 100", got)
	}

	t.Setenv("GOGC", "100")
	g = startGCFloor(256 << 20)
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if got := gogc(); got != 100 {
		t.Errorf("GOGC = %d with GOGC set in the environment, want the environment's 100", got)
	}
	g.stop()
}
