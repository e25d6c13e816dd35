package main

// The heap floor of the garbage collector (-gc-heap-floor). Go's default
// pacing (GOGC=100) starts a collection when the heap has grown by its live
// size, and at least at 4 MiB. A server whose live heap is a few MiB (an
// empty or small entity cache) then collects dozens of times a second
// under load, each time marking all of its live heap: on a warm GET that
// was a larger share of the CPU than the request's own work (BENCHMARKS.md,
// "The read path"). The floor lets the heap grow to at least floor bytes
// before a collection, and changes nothing once the live heap is half the
// floor or more (then GOGC=100 paces as usual). The GOGC environment
// variable, when set, wins: no floor then.

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// defaultGCHeapFloor is -gc-heap-floor's default: with a few MiB live and
// some 4 KiB of garbage per warm GET (net/http's and ours), a collection
// every ~7,000 GETs instead of every few hundred, for at most 32 MiB of
// heap (twice the smallest default of -entity-cache-bytes).
const defaultGCHeapFloor = 32 << 20

// gcFloorShare is the share of the process's memory (memoryLimit: the
// cgroup's limit, else the machine's RAM) the floor may take: 1/16, so
// that in a small container the garbage the floor lets pile up stays a
// small part of the limit beside the cache (1/64) and the requests.
const gcFloorShare = 16

// gcHeapFloorFor is the floor -gc-heap-floor asks for, capped at
// 1/gcFloorShare of mem, the memory the process may use (0: unknown, no
// cap).
func gcHeapFloorFor(floor, mem int64) int64 {
	if mem <= 0 {
		return floor
	}
	return min(floor, mem/gcFloorShare)
}

// gcFloorState is the process's floor: one for the process, since the
// collector's setting is (tests run several servers in one process). The
// highest floor asked for holds while any is.
var gcFloorState struct {
	mu     sync.Mutex
	floors map[*gcFloor]uint64
	floor  uint64 // the highest of floors; 0 when none
	// armed is true while a sentinel's finalizer is pending.
	armed bool
}

// gcFloor is one holder of the floor; stop ends its hold.
type gcFloor struct{ once sync.Once }

// startGCFloor holds the collector's heap goal at floor bytes or more
// until stop is called, unless floor is 0 or GOGC is set in the
// environment. It tunes GOGC after every collection (a finalizer runs
// once per cycle, the technique of TiDB's gctuner): GOGC is what makes
// the goal max(floor, 2x the live heap).
func startGCFloor(floor int64) *gcFloor {
	g := &gcFloor{}
	if floor <= 0 || os.Getenv("GOGC") != "" {
		g.once.Do(func() {})
		return g
	}
	st := &gcFloorState
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.floors == nil {
		st.floors = map[*gcFloor]uint64{}
	}
	st.floors[g] = uint64(floor)
	st.floor = max(st.floor, uint64(floor))
	if !st.armed {
		armGCFloor()
	}
	tuneGCFloorLocked()
	return g
}

// stop ends g's hold; with the last hold, GOGC is 100 again.
func (g *gcFloor) stop() {
	g.once.Do(func() {
		st := &gcFloorState
		st.mu.Lock()
		defer st.mu.Unlock()
		delete(st.floors, g)
		st.floor = 0
		for _, f := range st.floors {
			st.floor = max(st.floor, f)
		}
		tuneGCFloorLocked()
	})
}

// gcSentinel is the object whose finalizer marks the end of a collection.
// It holds a pointer so that it is not a tiny allocation (a tiny object
// shares its block and may never be finalized).
type gcSentinel struct{ _ *int }

// armGCFloor sets a finalizer that runs after the next collection, tunes
// GOGC and arms itself again while a floor is held. gcFloorState.mu is
// held.
func armGCFloor() {
	gcFloorState.armed = true
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
		st := &gcFloorState
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.floor == 0 {
			st.armed = false // the last hold ended; a new one arms anew
			return
		}
		tuneGCFloorLocked()
		armGCFloor()
	})
}

// tuneGCFloorLocked sets GOGC for the live heap now. gcFloorState.mu is
// held.
func tuneGCFloorLocked() {
	debug.SetGCPercent(gcPercentFor(gcFloorState.floor, liveHeap()))
}

// gcPercentFor is the GOGC whose heap goal, for a live heap of live bytes,
// is floor; 100 once twice the live heap is the larger goal, or without a
// floor. The runtime's goal is the larger of about live x (1 + GOGC/100)
// and its minimum heap, 4 MiB x GOGC/100: GOGC is held to floor / 4 MiB
// x 100 so that the minimum is the floor itself, also before the first
// collection has measured the live heap (live 0), and a live heap that
// grows before the next collection lowers GOGC meets a goal near the
// floor, not a multiple of it.
func gcPercentFor(floor, live uint64) int {
	const heapMinimum = 4 << 20 // the runtime's defaultHeapMinimum
	if floor == 0 || live >= floor/2 {
		return 100
	}
	most := max(100, floor*100/heapMinimum)
	if live == 0 {
		return int(most)
	}
	return int(min(floor*100/live-100, most))
}

// liveHeap is the heap the last collection marked live, in bytes.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
