package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// keyIndex holds, for each database listed since this process started, the
// sorted set of its entity keys, so that a page of a key listing costs O(log n
// + page size) instead of a scan of storage. A database's set is built by one
// scan (store.List) on first use and from then on kept current by record and
// forget, which the main worker calls for every write it routes
// (catalog.wrote). The main worker is the single entry point of writes
// (ARCHITECTURE.md "Processing workers and routing"), so the set stays exact;
// entities written to storage behind its back (by hand, or by a second main
// worker on the same storage) show in listings from this process's next start
// on.
//
// Memory: every key of every indexed database stays in memory, about 16
// bytes plus the key's length each, plus up to as much again of slack in
// the chunks (sortedKeys): 100,000 keys of 20 bytes take 4 to 8 MB.
// Databases with entities are not evicted; an empty one is not kept.
//
// keyIndex is safe for concurrent use.
type keyIndex struct {
	st store
	// flush, unless nil, is called before each scan (catalog.setFlush).
	flush func(context.Context) error
	// scans counts the scans of storage, for tests.
	scans atomic.Int64

	mu  sync.Mutex
	dbs map[string]*dbKeys // by database; an entry exists from the start of its scan
}

// dbKeys is one database's key set.
type dbKeys struct {
	// done is closed when the scan has ended; err is set then.
	done chan struct{}
	err  error

	mu sync.RWMutex // guards the fields below
	// building is true while the scan runs; writes recorded meanwhile
	// wait in pending and are applied, in order, over the scan's result.
	building bool
	pending  []keyChange
	keys     sortedKeys
}

// keyChange is a recorded write: key now exists (present) or not.
type keyChange struct {
	key     string
	present bool
}

// newKeyIndex returns an empty index over st.
func newKeyIndex(st store) *keyIndex {
	return &keyIndex{st: st, dbs: map[string]*dbKeys{}}
}

// get returns db's key set, scanning storage if it is not indexed yet.
// Concurrent first uses share one scan, which runs to its end even if the
// caller that started it gives up.
func (ix *keyIndex) get(ctx context.Context, db string) (*dbKeys, error) {
	ix.mu.Lock()
	d, ok := ix.dbs[db]
	if !ok {
		d = &dbKeys{done: make(chan struct{}), building: true}
		ix.dbs[db] = d
	}
	ix.mu.Unlock()
	if !ok {
		ix.build(context.WithoutCancel(ctx), db, d)
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for key index of %s: %w", db, ctx.Err())
	}
	if d.err != nil {
		return nil, d.err
	}
	return d, nil
}

// build fills d by one scan of db's entities, then applies the writes
// recorded during the scan. A failed scan leaves no entry behind, so the
// next use scans again; so does a database without entities, so that
// listing names that hold nothing (cheap to scan) costs no memory.
func (ix *keyIndex) build(ctx context.Context, db string, d *dbKeys) {
	ix.scans.Add(1)
	keys, err := ix.scan(ctx, db)
	d.mu.Lock()
	if err == nil {
		d.keys = sortedKeysOf(keys)
		for _, c := range d.pending {
			d.keys.set(c.key, c.present)
		}
	}
	d.building, d.pending, d.err = false, nil, err
	empty := d.keys.len() == 0
	d.mu.Unlock()
	if err != nil || empty {
		ix.mu.Lock()
		if ix.dbs[db] == d {
			delete(ix.dbs, db)
		}
		ix.mu.Unlock()
	}
	close(d.done)
}

// scan reads db's keys from storage once every acknowledged write is
// there (flush). The index takes writes from its entry's start, so
// those before it must be in the entity files first.
func (ix *keyIndex) scan(ctx context.Context, db string) ([]string, error) {
	if err := flushBeforeScan(ctx, ix.flush); err != nil {
		return nil, fmt.Errorf("scan keys of %s: %w", db, err)
	}
	return scanKeys(ctx, ix.st, db)
}

// scanKeys reads every entity key of db from storage, in byte order.
func scanKeys(ctx context.Context, st store, db string) ([]string, error) {
	base := entityKeyPrefix(db, "")
	objs, err := st.List(ctx, base, "", 0)
	if err != nil {
		return nil, fmt.Errorf("scan keys of %s: %w", db, err)
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		if keys[i], err = entityKeyOf(o); err != nil {
			return nil, fmt.Errorf("scan keys of %s: %w", db, err)
		}
	}
	return keys, nil
}

// record notes an acknowledged write: key of db now exists (present) or
// not. A database not indexed yet needs nothing: its scan, which starts
// later, sees the write.
func (ix *keyIndex) record(db, key string, present bool) {
	ix.mu.Lock()
	d := ix.dbs[db]
	ix.mu.Unlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.building {
		d.pending = append(d.pending, keyChange{key, present})
		return
	}
	d.keys.set(key, present)
}

// forget drops db's key set, after a write whose outcome is unknown: the
// next use scans storage again.
func (ix *keyIndex) forget(db string) {
	ix.mu.Lock()
	delete(ix.dbs, db)
	ix.mu.Unlock()
}

// page returns up to limit keys of db that start with prefix and sort
// after after ("" for the start), and whether more such keys follow.
func (ix *keyIndex) page(ctx context.Context, db, prefix, after string, limit int) ([]string, bool, error) {
	d, err := ix.get(ctx, db)
	if err != nil {
		return nil, false, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	keys, more := d.keys.page(prefix, after, limit)
	return keys, more, nil
}

// count returns the number of entities of db.
func (ix *keyIndex) count(ctx context.Context, db string) (int, error) {
	d, err := ix.get(ctx, db)
	if err != nil {
		return 0, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.keys.len(), nil
}

// chunkMax is the most keys a chunk of sortedKeys holds before it splits
// in two: large enough that the chunk list stays short (100,000 keys make
// a few hundred chunks), small enough that an insert moves little.
const chunkMax = 512

// sortedKeys is a set of strings in byte order, stored as a list of sorted
// chunks of at most chunkMax keys, every key of a chunk sorting before
// every key of the next one. Finding a key costs two binary searches,
// adding or removing one O(log n + chunkMax), and a page starting at any
// key O(log n + page size). The zero value is an empty set. It is not safe
// for concurrent use.
type sortedKeys struct {
	chunks [][]string // none empty
	n      int
}

// sortedKeysOf returns the set of keys, which must be sorted and distinct.
func sortedKeysOf(keys []string) sortedKeys {
	s := sortedKeys{n: len(keys)}
	for len(keys) > 0 {
		n := min(len(keys), chunkMax/2)
		s.chunks = append(s.chunks, slices.Clone(keys[:n]))
		keys = keys[n:]
	}
	return s
}

// len returns the number of keys.
func (s *sortedKeys) len() int { return s.n }

// seek returns the position of the first key >= k: its chunk and index
// within it, or (len(s.chunks), 0) if every key is smaller.
func (s *sortedKeys) seek(k string) (ci, i int) {
	ci = sort.Search(len(s.chunks), func(j int) bool {
		c := s.chunks[j]
		return c[len(c)-1] >= k
	})
	if ci < len(s.chunks) {
		i, _ = slices.BinarySearch(s.chunks[ci], k)
	}
	return ci, i
}

// set adds (present) or removes k.
func (s *sortedKeys) set(k string, present bool) {
	if present {
		s.add(k)
	} else {
		s.remove(k)
	}
}

// add inserts k if it is not in the set; a chunk that grows past chunkMax
// splits in two.
func (s *sortedKeys) add(k string) {
	ci, i := s.seek(k)
	switch {
	case len(s.chunks) == 0:
		s.chunks = [][]string{{k}}
		s.n++
		return
	case ci == len(s.chunks): // after every key: append to the last chunk
		ci, i = ci-1, len(s.chunks[ci-1])
	case s.chunks[ci][i] == k:
		return
	}
	c := slices.Insert(s.chunks[ci], i, k)
	s.n++
	if len(c) <= chunkMax {
		s.chunks[ci] = c
		return
	}
	half := len(c) / 2
	s.chunks[ci] = slices.Clip(c[:half])
	s.chunks = slices.Insert(s.chunks, ci+1, slices.Clone(c[half:]))
}

// remove deletes k if it is in the set. An emptied chunk goes, and a
// chunk merges with its next neighbour when together they fit in half a
// chunk, so that many deletes do not leave many tiny chunks.
func (s *sortedKeys) remove(k string) {
	ci, i := s.seek(k)
	if ci == len(s.chunks) || s.chunks[ci][i] != k {
		return
	}
	c := slices.Delete(s.chunks[ci], i, i+1)
	s.n--
	switch {
	case len(c) == 0:
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
	case ci+1 < len(s.chunks) && len(c)+len(s.chunks[ci+1]) <= chunkMax/2:
		s.chunks[ci] = append(c, s.chunks[ci+1]...)
		s.chunks = slices.Delete(s.chunks, ci+1, ci+2)
	default:
		s.chunks[ci] = c
	}
}

// page returns up to limit keys that start with prefix and sort after
// after, in order, and whether more such keys follow.
func (s *sortedKeys) page(prefix, after string, limit int) (keys []string, more bool) {
	ci, i := s.seek(max(prefix, after))
	keys = []string{}
	for ; ci < len(s.chunks); ci, i = ci+1, 0 {
		for _, k := range s.chunks[ci][i:] {
			switch {
			case k == after:
				continue
			case !strings.HasPrefix(k, prefix):
				return keys, false
			case len(keys) == limit:
				return keys, true
			}
			keys = append(keys, k)
		}
	}
	return keys, false
}
