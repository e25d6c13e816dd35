package main

import (
	"sync"
	"time"
)

// lru is a least-recently-used cache bounded by a count of entries and,
// optionally, by their bytes, with optional expiry. It is a map from key to
// entry plus an intrusive doubly linked list of the same entries, most
// recently used first, closed into a ring by a sentinel.
//
// An lru is safe for concurrent use: every method takes c.mu for its whole
// body. Callers never hold c.mu. The zero value is not usable; build one
// with newLRU.
type lru[K comparable, V any] struct {
	mu        sync.Mutex
	capacity  int              // maximum number of entries, >= 1
	maxBytes  int64            // maximum of bytes, the sum of sizeOf; 0: no byte bound
	sizeOf    func(K, V) int64 // an entry's bytes; nil with maxBytes 0
	bytes     int64            // sum of the entries' sizes
	ttl       time.Duration    // lifetime of an entry from its Add; 0: forever
	now       func() time.Time // clock for ttl
	items     map[K]*lruEntry[K, V]
	root      lruEntry[K, V] // sentinel: root.next is the most recent, root.prev the least
	gen       uint64         // generation, bumped by every Purge (Gen, AddAt)
	hits      uint64
	misses    uint64
	evictions uint64
}

// lruEntry is one cached value and its place in the recency list.
type lruEntry[K comparable, V any] struct {
	prev, next *lruEntry[K, V]
	key        K
	value      V
	size       int64     // sizeOf(key, value) when added; 0 without a byte bound
	expires    time.Time // zero when the cache has no ttl
}

// cacheStats is a snapshot of a cache's counters for the dashboard.
type cacheStats struct {
	Hits      uint64 `json:"hits"`      // Get calls that found a live entry
	Misses    uint64 `json:"misses"`    // Get calls that found nothing or an expired entry
	Evictions uint64 `json:"evictions"` // entries dropped for capacity or expiry
	Entries   int    `json:"entries"`   // entries held now, expired ones not yet dropped included
	Capacity  int    `json:"capacity"`  // maximum number of entries
	Bytes     int64  `json:"bytes"`     // bytes held now (0 without a byte bound)
	MaxBytes  int64  `json:"max_bytes"` // maximum of bytes; 0: bounded by count only
}

// newLRU returns an empty cache holding at most capacity entries; a
// capacity <= 0 is treated as 1. A ttl > 0 makes an entry expire ttl after
// its last Add, measured by now (time.Now when nil); ttl <= 0 means entries
// never expire.
func newLRU[K comparable, V any](capacity int, ttl time.Duration, now func() time.Time) *lru[K, V] {
	return newSizedLRU[K, V](capacity, 0, nil, ttl, now)
}

// newSizedLRU is newLRU bounded by bytes too: the entries' sizes (sizeOf)
// add up to at most maxBytes, the least recently used evicted to make room.
// A value larger than maxBytes on its own is not cached. maxBytes <= 0 or
// a nil sizeOf means no byte bound.
func newSizedLRU[K comparable, V any](capacity int, maxBytes int64, sizeOf func(K, V) int64, ttl time.Duration, now func() time.Time) *lru[K, V] {
	if maxBytes <= 0 || sizeOf == nil {
		maxBytes, sizeOf = 0, nil
	}
	if capacity <= 0 {
		capacity = 1
	}
	if ttl < 0 {
		ttl = 0
	}
	if now == nil {
		now = time.Now
	}
	c := &lru[K, V]{capacity: capacity, maxBytes: maxBytes, sizeOf: sizeOf, ttl: ttl, now: now, items: make(map[K]*lruEntry[K, V])}
	c.root.next, c.root.prev = &c.root, &c.root
	return c
}

// Get returns the value for k and marks it most recently used. It counts a
// hit or a miss; an expired entry is a miss, is dropped and counts as an
// eviction.
func (c *lru[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.hit(k); ok {
		return v, true
	}
	if e, ok := c.items[k]; ok { // expired
		c.drop(e)
		c.evictions++
	}
	c.misses++
	var v V
	return v, false
}

// Hit is Get for a live entry; an absent or expired one is reported
// absent and counts nothing, left for the Get that follows it (a fast
// path that falls back to Get counts each read once).
func (c *lru[K, V]) Hit(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hit(k)
}

// hit returns the value of k's live entry, counts a hit and marks it most
// recently used; it reports false, counting nothing, without one. c.mu is
// held.
func (c *lru[K, V]) hit(k K) (v V, ok bool) {
	e, ok := c.items[k]
	if !ok || c.expired(e) {
		return v, false
	}
	c.hits++
	c.moveToFront(e)
	return e.value, true
}

// Peek returns the value for k without counting it or changing its
// recency. An expired entry is reported absent but left in place.
func (c *lru[K, V]) Peek(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok || c.expired(e) {
		var v V
		return v, false
	}
	return e.value, true
}

// Add stores v under k as the most recently used entry, replacing any
// previous value and restarting its ttl. If that puts the cache over
// capacity or over its bytes, the least recently used entries are evicted.
// A value over the byte bound on its own is not stored, and any previous
// value of k is dropped (it is stale).
func (c *lru[K, V]) Add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(k, v)
}

// add is Add's body. c.mu is held.
func (c *lru[K, V]) add(k K, v V) {
	var size int64
	if c.sizeOf != nil {
		size = c.sizeOf(k, v)
	}
	e, ok := c.items[k]
	if size > c.maxBytes && c.maxBytes > 0 {
		if ok {
			c.drop(e)
		}
		return
	}
	var expires time.Time
	if c.ttl > 0 {
		expires = c.now().Add(c.ttl)
	}
	if ok {
		c.bytes += size - e.size
		e.value, e.size, e.expires = v, size, expires
		c.moveToFront(e)
	} else {
		e = &lruEntry[K, V]{key: k, value: v, size: size, expires: expires}
		c.items[k] = e
		c.bytes += size
		c.pushFront(e)
	}
	for len(c.items) > c.capacity || c.maxBytes > 0 && c.bytes > c.maxBytes {
		c.drop(c.root.prev)
		c.evictions++
	}
}

// Gen returns the cache's generation, which every Purge bumps: a value
// read elsewhere after Gen returned g is added with AddAt(k, v, g), so
// that it is never installed after a purge that came after its read.
func (c *lru[K, V]) Gen() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// AddAt is Add if the cache is still at generation gen (Gen), else it
// adds nothing; it reports whether it added. Its check and its Add are
// one step under c.mu, ordered with every Purge.
func (c *lru[K, V]) AddAt(k K, v V, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return false
	}
	c.add(k, v)
	return true
}

// Remove drops k and reports whether it was present. It is not an eviction.
func (c *lru[K, V]) Remove(k K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if ok {
		c.drop(e)
	}
	return ok
}

// Len returns the number of entries held, expired ones not yet dropped
// included.
func (c *lru[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Purge drops every entry, for example when the key epoch changes, and
// bumps the generation (Gen). The counters are kept; nothing is counted
// as an eviction.
func (c *lru[K, V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.items)
	c.bytes = 0
	c.root.next, c.root.prev = &c.root, &c.root
}

// Stats returns a snapshot of the counters.
func (c *lru[K, V]) Stats() cacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cacheStats{
		Hits:      c.hits,
		Misses:    c.misses,
		Evictions: c.evictions,
		Entries:   len(c.items),
		Capacity:  c.capacity,
		Bytes:     c.bytes,
		MaxBytes:  c.maxBytes,
	}
}

// expired reports whether e has outlived the ttl. c.mu must be held.
func (c *lru[K, V]) expired(e *lruEntry[K, V]) bool {
	return c.ttl > 0 && !c.now().Before(e.expires)
}

// drop unlinks e and deletes it from the map. c.mu must be held.
func (c *lru[K, V]) drop(e *lruEntry[K, V]) {
	c.unlink(e)
	delete(c.items, e.key)
	c.bytes -= e.size
}

// pushFront links e in as the most recently used entry. c.mu must be held.
func (c *lru[K, V]) pushFront(e *lruEntry[K, V]) {
	e.prev, e.next = &c.root, c.root.next
	c.root.next.prev = e
	c.root.next = e
}

// unlink takes e out of the list. c.mu must be held.
func (c *lru[K, V]) unlink(e *lruEntry[K, V]) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

// moveToFront makes e the most recently used entry. c.mu must be held.
func (c *lru[K, V]) moveToFront(e *lruEntry[K, V]) {
	if c.root.next == e {
		return
	}
	c.unlink(e)
	c.pushFront(e)
}
