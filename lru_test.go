package main

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// check walks the list from the front and from the back and compares both
// walks with the map: same entries, consistent links, at most capacity.
// It takes c.mu itself.
func (c *lru[K, V]) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.items) > c.capacity {
		t.Fatalf("len = %d, want <= capacity %d", len(c.items), c.capacity)
	}
	var forward []*lruEntry[K, V]
	for e := c.root.next; e != &c.root; e = e.next {
		if e.next.prev != e {
			t.Fatalf("entry %v: next.prev does not point back", e.key)
		}
		if got, ok := c.items[e.key]; !ok || got != e {
			t.Fatalf("entry %v in list but map holds %p, %v", e.key, got, ok)
		}
		forward = append(forward, e)
		if len(forward) > len(c.items) {
			t.Fatalf("forward walk longer than map (%d): cycle or stray entry", len(c.items))
		}
	}
	var backward []*lruEntry[K, V]
	for e := c.root.prev; e != &c.root; e = e.prev {
		if e.prev.next != e {
			t.Fatalf("entry %v: prev.next does not point back", e.key)
		}
		backward = append(backward, e)
		if len(backward) > len(c.items) {
			t.Fatalf("backward walk longer than map (%d)", len(c.items))
		}
	}
	if len(forward) != len(c.items) {
		t.Fatalf("forward walk has %d entries, map %d", len(forward), len(c.items))
	}
	slices.Reverse(backward)
	if !slices.Equal(forward, backward) {
		t.Fatalf("forward and backward walks differ")
	}
	var bytes int64
	for _, e := range forward {
		bytes += e.size
	}
	if bytes != c.bytes || c.maxBytes > 0 && bytes > c.maxBytes {
		t.Fatalf("entries hold %d bytes, counted %d, bound %d", bytes, c.bytes, c.maxBytes)
	}
}

// keys returns the keys from most to least recently used.
func (c *lru[K, V]) keys() []K {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ks []K
	for e := c.root.next; e != &c.root; e = e.next {
		ks = append(ks, e.key)
	}
	return ks
}

// fakeClock is a settable clock for tests, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestLRUBehaviour(t *testing.T) {
	type op struct {
		do     string // add, get, peek, remove, purge
		k, v   string
		wantV  string
		wantOK bool
	}
	tests := []struct {
		name      string
		capacity  int
		ops       []op
		wantKeys  []string // most recent first
		wantStats cacheStats
	}{
		{
			name:      "get missing",
			capacity:  2,
			ops:       []op{{do: "get", k: "a"}},
			wantStats: cacheStats{Misses: 1, Capacity: 2},
		},
		{
			name:      "add then get",
			capacity:  2,
			ops:       []op{{do: "add", k: "a", v: "1"}, {do: "get", k: "a", wantV: "1", wantOK: true}},
			wantKeys:  []string{"a"},
			wantStats: cacheStats{Hits: 1, Entries: 1, Capacity: 2},
		},
		{
			name:     "replace keeps one entry",
			capacity: 2,
			ops: []op{
				{do: "add", k: "a", v: "1"}, {do: "add", k: "a", v: "2"},
				{do: "peek", k: "a", wantV: "2", wantOK: true},
			},
			wantKeys:  []string{"a"},
			wantStats: cacheStats{Entries: 1, Capacity: 2},
		},
		{
			name:     "evicts least recently added",
			capacity: 2,
			ops: []op{
				{do: "add", k: "a"}, {do: "add", k: "b"}, {do: "add", k: "c"},
				{do: "peek", k: "a"},
			},
			wantKeys:  []string{"c", "b"},
			wantStats: cacheStats{Evictions: 1, Entries: 2, Capacity: 2},
		},
		{
			name:     "get refreshes recency",
			capacity: 2,
			ops: []op{
				{do: "add", k: "a"}, {do: "add", k: "b"}, {do: "get", k: "a", wantOK: true},
				{do: "add", k: "c"},
			},
			wantKeys:  []string{"c", "a"},
			wantStats: cacheStats{Hits: 1, Evictions: 1, Entries: 2, Capacity: 2},
		},
		{
			name:     "peek does not refresh or count",
			capacity: 2,
			ops: []op{
				{do: "add", k: "a"}, {do: "add", k: "b"}, {do: "peek", k: "a", wantOK: true},
				{do: "add", k: "c"},
			},
			wantKeys:  []string{"c", "b"},
			wantStats: cacheStats{Evictions: 1, Entries: 2, Capacity: 2},
		},
		{
			name:     "re-add refreshes recency",
			capacity: 2,
			ops: []op{
				{do: "add", k: "a"}, {do: "add", k: "b"}, {do: "add", k: "a", v: "x"},
				{do: "add", k: "c"},
			},
			wantKeys:  []string{"c", "a"},
			wantStats: cacheStats{Evictions: 1, Entries: 2, Capacity: 2},
		},
		{
			name:     "remove is not an eviction",
			capacity: 2,
			ops: []op{
				{do: "add", k: "a"}, {do: "remove", k: "a", wantOK: true},
				{do: "remove", k: "a"}, {do: "get", k: "a"},
			},
			wantStats: cacheStats{Misses: 1, Capacity: 2},
		},
		{
			name:     "purge drops all, keeps counters",
			capacity: 3,
			ops: []op{
				{do: "add", k: "a"}, {do: "add", k: "b"}, {do: "get", k: "a", wantOK: true},
				{do: "purge"}, {do: "get", k: "b"}, {do: "add", k: "d"},
			},
			wantKeys:  []string{"d"},
			wantStats: cacheStats{Hits: 1, Misses: 1, Entries: 1, Capacity: 3},
		},
		{
			name:      "capacity zero means one",
			capacity:  0,
			ops:       []op{{do: "add", k: "a"}, {do: "add", k: "b"}},
			wantKeys:  []string{"b"},
			wantStats: cacheStats{Evictions: 1, Entries: 1, Capacity: 1},
		},
		{
			name:      "negative capacity means one",
			capacity:  -5,
			ops:       []op{{do: "add", k: "a"}},
			wantKeys:  []string{"a"},
			wantStats: cacheStats{Entries: 1, Capacity: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newLRU[string, string](tt.capacity, 0, nil)
			for i, o := range tt.ops {
				switch o.do {
				case "add":
					c.Add(o.k, o.v)
				case "get", "peek":
					get := c.Get
					if o.do == "peek" {
						get = c.Peek
					}
					v, ok := get(o.k)
					if v != o.wantV || ok != o.wantOK {
						t.Errorf("op %d: %s(%q) = %q, %v, want %q, %v", i, o.do, o.k, v, ok, o.wantV, o.wantOK)
					}
				case "remove":
					if ok := c.Remove(o.k); ok != o.wantOK {
						t.Errorf("op %d: Remove(%q) = %v, want %v", i, o.k, ok, o.wantOK)
					}
				case "purge":
					c.Purge()
				}
				c.check(t)
			}
			if got := c.keys(); !slices.Equal(got, tt.wantKeys) {
				t.Errorf("keys = %q, want %q", got, tt.wantKeys)
			}
			if got := c.Len(); got != len(tt.wantKeys) {
				t.Errorf("Len() = %d, want %d", got, len(tt.wantKeys))
			}
			if got := c.Stats(); got != tt.wantStats {
				t.Errorf("Stats() = %+v, want %+v", got, tt.wantStats)
			}
		})
	}
}

func TestLRUTTL(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	c := newLRU[string, int](4, time.Minute, clk.now)
	c.Add("a", 1)
	clk.advance(59 * time.Second)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(%q) at 59s = %d, %v, want 1, true", "a", v, ok)
	}
	c.Add("b", 2)
	clk.advance(time.Second) // a is exactly 60s old, b 1s
	if _, ok := c.Peek("a"); ok {
		t.Errorf("Peek(%q) at 60s = _, true, want false", "a")
	}
	if c.Len() != 2 {
		t.Errorf("Len() after Peek of expired = %d, want 2 (Peek leaves it)", c.Len())
	}
	if _, ok := c.Get("a"); ok {
		t.Errorf("Get(%q) at 60s = _, true, want false", "a")
	}
	c.check(t)
	if v, ok := c.Get("b"); !ok || v != 2 {
		t.Errorf("Get(%q) = %d, %v, want 2, true", "b", v, ok)
	}
	// Re-adding restarts the ttl.
	clk.advance(50 * time.Second)
	c.Add("b", 3)
	clk.advance(50 * time.Second)
	if v, ok := c.Get("b"); !ok || v != 3 {
		t.Errorf("Get(%q) after re-add = %d, %v, want 3, true", "b", v, ok)
	}
	want := cacheStats{Hits: 3, Misses: 1, Evictions: 1, Entries: 1, Capacity: 4}
	if got := c.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// TestLRUHit: Hit counts a hit of a live entry and makes it the most
// recent, as Get does; an absent or expired entry it reports absent and
// counts nothing, so that the Get that follows counts the one miss.
func TestLRUHit(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	c := newLRU[string, int](2, time.Minute, clk.now)
	c.Add("a", 1)
	c.Add("b", 2)
	if v, ok := c.Hit("a"); !ok || v != 1 {
		t.Fatalf("Hit(%q) = %d, %v, want 1, true", "a", v, ok)
	}
	c.Add("c", 3) // evicts b: a was made the most recent
	if _, ok := c.Peek("a"); !ok {
		t.Error("Hit did not make a the most recent: it was evicted")
	}
	if _, ok := c.Hit("b"); ok {
		t.Error("Hit of an evicted entry = true")
	}
	if got := c.Stats(); got.Hits != 1 || got.Misses != 0 {
		t.Errorf("after a hit and an absent Hit: %d hits, %d misses; want 1, 0", got.Hits, got.Misses)
	}
	clk.advance(time.Minute)
	if _, ok := c.Hit("a"); ok {
		t.Error("Hit of an expired entry = true")
	}
	if _, ok := c.Get("a"); ok {
		t.Error("Get of an expired entry = true")
	}
	c.check(t)
	want := cacheStats{Hits: 1, Misses: 1, Evictions: 2, Entries: 1, Capacity: 2}
	if got := c.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// TestLRUAddAt: a value read at a generation is added while no Purge came
// since, and not after one, which leaves what came after it in place.
func TestLRUAddAt(t *testing.T) {
	c := newLRU[string, int](4, 0, nil)
	g := c.Gen()
	if !c.AddAt("a", 1, g) {
		t.Fatal("AddAt at the current generation = false")
	}
	c.Purge()
	if c.AddAt("b", 2, g) {
		t.Error("AddAt at the generation before a Purge = true")
	}
	g2 := c.Gen()
	if g2 == g {
		t.Errorf("Gen() after a Purge = %d, unchanged", g2)
	}
	c.Add("c", 3)
	if c.AddAt("c", 4, g) {
		t.Error("AddAt at an old generation replaced an entry added after the Purge")
	}
	if v, ok := c.Peek("c"); !ok || v != 3 {
		t.Errorf("Peek(%q) = %d, %v, want 3, true", "c", v, ok)
	}
	if _, ok := c.Peek("b"); ok {
		t.Errorf("Peek(%q) found the value refused", "b")
	}
	if !c.AddAt("d", 5, g2) {
		t.Error("AddAt at the generation after the Purge = false")
	}
	c.check(t)
}

func TestLRUNoTTLNeverExpires(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	c := newLRU[int, int](2, 0, clk.now)
	c.Add(1, 1)
	clk.advance(100 * 365 * 24 * time.Hour)
	if _, ok := c.Get(1); !ok {
		t.Errorf("Get(1) after a century with ttl 0 = _, false, want true")
	}
}

func TestCacheStatsJSON(t *testing.T) {
	b, err := json.Marshal(cacheStats{Hits: 1, Misses: 2, Evictions: 3, Entries: 4, Capacity: 5, Bytes: 6, MaxBytes: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"hits":1,"misses":2,"evictions":3,"entries":4,"capacity":5,"bytes":6,"max_bytes":7}`
	if string(b) != want {
		t.Errorf("json.Marshal(cacheStats) = %s, want %s", b, want)
	}
}

// TestLRUStress runs seeded random operations against the cache and a
// slice model, checking the invariants and the model after every one.
func TestLRUStress(t *testing.T) {
	const capacity, keySpace = 16, 40
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	c := newLRU[int, int](capacity, 0, clk.now)
	var evictions int // by the model
	var model []int   // keys, most recent first
	vals := map[int]int{}
	touch := func(k int) {
		model = slices.DeleteFunc(model, func(x int) bool { return x == k })
		model = slices.Insert(model, 0, k)
	}
	for i := range n {
		k := rng.IntN(keySpace)
		switch r := rng.IntN(100); {
		case r < 45:
			c.Add(k, i)
			vals[k] = i
			touch(k)
			if len(model) > capacity {
				delete(vals, model[capacity])
				model = model[:capacity]
				evictions++
			}
		case r < 85:
			v, ok := c.Get(k)
			wv, wok := vals[k]
			if v != wv || ok != wok {
				t.Fatalf("op %d: Get(%d) = %d, %v, want %d, %v", i, k, v, ok, wv, wok)
			}
			if ok {
				touch(k)
			}
		case r < 92:
			v, ok := c.Peek(k)
			wv, wok := vals[k]
			if v != wv || ok != wok {
				t.Fatalf("op %d: Peek(%d) = %d, %v, want %d, %v", i, k, v, ok, wv, wok)
			}
		case r < 99:
			_, wok := vals[k]
			if ok := c.Remove(k); ok != wok {
				t.Fatalf("op %d: Remove(%d) = %v, want %v", i, k, ok, wok)
			}
			delete(vals, k)
			model = slices.DeleteFunc(model, func(x int) bool { return x == k })
		default:
			c.Purge()
			clear(vals)
			model = model[:0]
		}
		c.check(t)
		if got := c.keys(); !slices.Equal(got, model) {
			t.Fatalf("op %d: keys = %v, want %v", i, got, model)
		}
	}
	if s := c.Stats(); s.Evictions != uint64(evictions) {
		t.Errorf("Stats().Evictions = %d, want %d (the model's)", s.Evictions, evictions)
	}
}

// TestLRUByteBound runs seeded random Adds, Gets and Removes of values
// whose size is the value itself against a cache of 16 entries and 100
// bytes, and a model: after every operation the invariants hold (check:
// the bytes add up and stay within the bound) and the cache holds the
// model's keys in its order. A value over 100 is never cached and drops
// the key's older value.
func TestLRUByteBound(t *testing.T) {
	const capacity, maxBytes, keySpace = 16, 100, 40
	rng := rand.New(rand.NewPCG(3, 4))
	c := newSizedLRU[int, int64](capacity, maxBytes, func(_ int, v int64) int64 { return v }, 0, nil)
	var model []int // keys, most recent first
	vals := map[int]int64{}
	drop := func(k int) {
		model = slices.DeleteFunc(model, func(x int) bool { return x == k })
		delete(vals, k)
	}
	held := func() (n int64) {
		for _, v := range vals {
			n += v
		}
		return n
	}
	for i := range 20_000 {
		k := rng.IntN(keySpace)
		switch r := rng.IntN(100); {
		case r < 50:
			v := rng.Int64N(120) // over the bound one time in six
			c.Add(k, v)
			drop(k)
			if v > maxBytes {
				break
			}
			model, vals[k] = slices.Insert(model, 0, k), v
			for len(model) > capacity || held() > maxBytes {
				drop(model[len(model)-1])
			}
		case r < 90:
			v, ok := c.Get(k)
			if wv, wok := vals[k]; v != wv || ok != wok {
				t.Fatalf("op %d: Get(%d) = %d, %v, want %d, %v", i, k, v, ok, wv, wok)
			}
			if ok {
				model = slices.Insert(slices.DeleteFunc(model, func(x int) bool { return x == k }), 0, k)
			}
		default:
			c.Remove(k)
			drop(k)
		}
		c.check(t)
		if got := c.keys(); !slices.Equal(got, model) {
			t.Fatalf("op %d: keys = %v, want %v", i, got, model)
		}
		if s := c.Stats(); s.Bytes != held() || s.MaxBytes != maxBytes {
			t.Fatalf("op %d: Stats() bytes %d of %d, want %d of %d", i, s.Bytes, s.MaxBytes, held(), maxBytes)
		}
	}
}

func TestLRUConcurrent(t *testing.T) {
	c := newLRU[int, int](64, time.Hour, nil)
	const workers, ops = 8, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range ops {
				k := rng.IntN(200)
				switch rng.IntN(6) {
				case 0, 1:
					c.Add(k, i)
				case 2, 3:
					c.Get(k)
				case 4:
					c.Peek(k)
					c.Stats()
				case 5:
					c.Remove(k)
				}
			}
		})
	}
	wg.Wait()
	c.check(t)
	s := c.Stats()
	if s.Hits+s.Misses == 0 || s.Entries > 64 {
		t.Errorf("Stats() = %+v, want some lookups and Entries <= 64", s)
	}
}

func BenchmarkLRUGet(b *testing.B) {
	c := newLRU[string, []byte](1024, 0, nil)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "entity-" + strconv.Itoa(i)
		c.Add(keys[i], []byte("v"))
	}
	b.ResetTimer()
	for i := range b.N {
		c.Get(keys[i&1023])
	}
}

func BenchmarkLRUGetParallel(b *testing.B) {
	c := newLRU[string, []byte](1024, 0, nil)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "entity-" + strconv.Itoa(i)
		c.Add(keys[i], []byte("v"))
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i&1023])
			i++
		}
	})
}

// BenchmarkLRUAdd adds keys from a space four times the capacity, so most
// adds insert and evict.
func BenchmarkLRUAdd(b *testing.B) {
	c := newLRU[string, []byte](1024, 0, nil)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "entity-" + strconv.Itoa(i)
	}
	v := []byte("v")
	b.ResetTimer()
	for i := range b.N {
		c.Add(keys[i&4095], v)
	}
}

func BenchmarkLRUAddParallel(b *testing.B) {
	c := newLRU[string, []byte](1024, 0, nil)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "entity-" + strconv.Itoa(i)
	}
	v := []byte("v")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Add(keys[i&4095], v)
			i++
		}
	})
}
