package main

// Indexes of documents by field values (ARCHITECTURE.md, Indexes), for
// POST/GET/DELETE /api/databases/{db}/index and the queries they serve.
//
// Two halves. The definitions (indexDefs) are what the main worker keeps:
// each database's indexes, a name and field paths each, stored under
// _meta/indexes/ as plaintext field names, never a value. The entries
// (ownedIndex) live in the memory of each processing worker, for the
// entities it owns: an entry is the collation keys of the document's
// values of the index's fields and the entity key, so that the entries in
// byte order are the documents in index order. No entry ever reaches
// storage. A worker builds an index by one scan of the entities it owns
// the first time a query needs it under the current set of workers (a
// start, a worker joining or leaving), and from then on keeps it by every
// write and delete it makes as the owner (workerIndexes.record), under the
// entity's lock, after the write is durable.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	pb "deltadatabase/proto"
)

// Index budgets: indexes per database, fields per index.
const (
	maxIndexes      = 16
	maxIndexFields  = 8
	maxIndexNameLen = 64
)

// indexDef is one index of a database as stored and listed.
type indexDef struct {
	Name   string   `json:"name"`
	Fields []string `json:"fields"`
	// ID is unique to this creation: an index deleted and created again
	// under the same name is another index, which workers build anew.
	ID string `json:"id"`
}

// spec is the index as a FIND call names it.
func (d indexDef) spec() *pb.IndexSpec { return &pb.IndexSpec{Id: d.ID, Fields: d.Fields} }

// storedIndexes is the stored form of a database's definitions.
type storedIndexes struct {
	Indexes []indexDef `json:"indexes"`
}

// indexDefs reads and changes index definitions for the main worker. A
// database's list is cached after its first read, replaced at once when
// changed through this process, and read again after recheckEvery. It is
// safe for concurrent use.
type indexDefs struct {
	st  store
	now func() time.Time
	// locks serialise the changes of one database's list in this process.
	locks keyLocks

	mu sync.Mutex
	m  map[string]cachedIndexes
}

// cachedIndexes is one database's list and when it was read.
type cachedIndexes struct {
	defs []indexDef
	at   time.Time
}

// newIndexDefs returns the definitions of st.
func newIndexDefs(st store, now func() time.Time) *indexDefs {
	return &indexDefs{st: st, now: now, m: map[string]cachedIndexes{}}
}

// list returns db's indexes, in creation order.
func (d *indexDefs) list(ctx context.Context, db string) ([]indexDef, error) {
	d.mu.Lock()
	c, ok := d.m[db]
	d.mu.Unlock()
	if ok && d.now().Sub(c.at) < recheckEvery {
		return c.defs, nil
	}
	defs, _, err := d.read(ctx, db)
	if err != nil {
		return nil, err
	}
	d.remember(db, defs)
	return defs, nil
}

// read reads db's list from storage with its revision ("" when none).
func (d *indexDefs) read(ctx context.Context, db string) ([]indexDef, string, error) {
	raw, rev, err := d.st.GetRev(ctx, indexesObjectKey(db))
	if errors.Is(err, errNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read indexes of %s: %w", db, err)
	}
	var v storedIndexes
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, "", fmt.Errorf("read indexes of %s: %w", db, errCorrupt)
	}
	return v.Indexes, rev, nil
}

// remember caches defs as db's list, read now.
func (d *indexDefs) remember(db string, defs []indexDef) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[db] = cachedIndexes{defs: defs, at: d.now()}
}

// change applies f to db's list under its lock and stores the result
// (removing the object when it is empty).
func (d *indexDefs) change(ctx context.Context, db string, f func([]indexDef) ([]indexDef, error)) error {
	key := indexesObjectKey(db)
	unlock, err := lockObject(ctx, &d.locks, d.st, key)
	if err != nil {
		return fmt.Errorf("indexes of %s: %w", db, err)
	}
	defer unlock()
	defs, rev, err := d.read(ctx, db)
	if err != nil {
		return err
	}
	next, err := f(slices.Clone(defs))
	if err != nil {
		return err
	}
	if len(next) == 0 && rev != "" {
		err = d.st.Delete(ctx, key)
	} else if len(next) > 0 {
		b, _ := json.Marshal(storedIndexes{Indexes: next})
		_, err = d.st.PutIf(ctx, key, b, rev)
	}
	if err != nil && !errors.Is(err, errNotFound) {
		return fmt.Errorf("store indexes of %s: %w", db, err)
	}
	d.remember(db, next)
	return nil
}

// create adds def to db's indexes, unless an index with its fields
// exists (then it answers that one and created false). A name taken by
// an index of other fields is errConflict.
func (d *indexDefs) create(ctx context.Context, db string, def indexDef) (out indexDef, created bool, err error) {
	err = d.change(ctx, db, func(defs []indexDef) ([]indexDef, error) {
		for _, x := range defs {
			switch {
			case slices.Equal(x.Fields, def.Fields):
				out = x
				return defs, nil
			case x.Name == def.Name:
				return nil, reqErrorf(errConflict, "index %q of database %q already exists with fields %q; delete it first", x.Name, db, x.Fields)
			}
		}
		if len(defs) >= maxIndexes {
			return nil, reqErrorf(errTooLarge, "database %q has %d indexes, the limit", db, maxIndexes)
		}
		id, err := newIndexID()
		if err != nil {
			return nil, err
		}
		def.ID = id
		out, created = def, true
		return append(defs, def), nil
	})
	return out, created, err
}

// newIndexID returns a random index ID.
func newIndexID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("index id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// remove deletes db's index name; errNotFound when there is none.
func (d *indexDefs) remove(ctx context.Context, db, name string) error {
	return d.change(ctx, db, func(defs []indexDef) ([]indexDef, error) {
		i := slices.IndexFunc(defs, func(x indexDef) bool { return x.Name == name })
		if i < 0 {
			return nil, reqErrorf(errNotFound, "database %q has no index %q", db, name)
		}
		return slices.Delete(defs, i, i+1), nil
	})
}

// removeAll deletes every index of db (its deletion).
func (d *indexDefs) removeAll(ctx context.Context, db string) error {
	return d.change(ctx, db, func([]indexDef) ([]indexDef, error) { return nil, nil })
}

// defaultIndexName names an index created without a name: its fields'
// hash, so that the same fields get the same name.
func defaultIndexName(fields []string) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%q", fields)))
	return "idx-" + hex.EncodeToString(h[:6])
}

// workerIndexes are a processing worker's indexes: by database, then by
// index ID. It is safe for concurrent use.
type workerIndexes struct {
	mu   sync.Mutex
	byDB map[string]map[string]*ownedIndex
}

// newWorkerIndexes returns a worker's empty set of indexes.
func newWorkerIndexes() *workerIndexes {
	return &workerIndexes{byDB: map[string]map[string]*ownedIndex{}}
}

// ownedIndex is one index over the entities a worker owns under one
// routing epoch. Its entries are kept in byte order (sortedKeys) with,
// by entity key, each entity's entry, to replace it on the next write.
type ownedIndex struct {
	id    string
	paths [][]string
	// epoch, members and self are the routing epoch it was built under,
	// the workers then, and this worker's name among them: it holds the
	// entities whose owner that makes self.
	epoch   uint64
	members []string
	self    string
	// done is closed when the build ends; err is its failure.
	done chan struct{}
	err  error

	mu      sync.RWMutex
	entries sortedKeys
	byKey   map[string]string
}

// indexesOf returns the indexes db has on this worker.
func (x *workerIndexes) indexesOf(db string) []*ownedIndex {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]*ownedIndex, 0, len(x.byDB[db]))
	for _, ix := range x.byDB[db] {
		out = append(out, ix)
	}
	return out
}

// record keeps db's indexes up to date with a write of key that is
// durable: doc is the document now stored, nil after a delete. The
// worker calls it as the entity's owner, holding the entity's lock, so
// the entries of each entity change in the order of its writes.
func (x *workerIndexes) record(db, key string, doc []byte) {
	for _, ix := range x.indexesOf(db) {
		ix.set(key, doc)
	}
}

// forget drops db's indexes after a write whose outcome is unknown: the
// next query that needs one builds it again from storage.
func (x *workerIndexes) forget(db string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.byDB, db)
}

// keepOnly drops db's indexes whose ID is not in live (deleted since).
func (x *workerIndexes) keepOnly(db string, live []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id := range x.byDB[db] {
		if !slices.Contains(live, id) {
			delete(x.byDB[db], id)
		}
	}
	if len(x.byDB[db]) == 0 {
		delete(x.byDB, db)
	}
}

// acquire returns db's index spec for routing epoch epoch, built: the
// worker's own when it was built under that epoch for these members,
// else a new one, built now by one scan (build). Concurrent callers share
// one build, which runs to its end even if the caller that started it
// gives up; the others wait for it until ctx ends. An index of a newer
// epoch than the call's is errEpochMoved.
func (x *workerIndexes) acquire(ctx context.Context, w *worker, s *keyring, db string, spec *pb.IndexSpec,
	epoch uint64, members []string, self string) (*ownedIndex, error) {
	paths, err := parsePaths(spec.GetFields())
	if err != nil || len(paths) == 0 {
		return nil, reqErrorf(errInvalid, "index %q has no valid fields", spec.GetId())
	}
	x.mu.Lock()
	ix := x.byDB[db][spec.GetId()]
	switch {
	case ix != nil && ix.epoch == epoch && ix.self == self && slices.Equal(ix.members, members):
		x.mu.Unlock()
		return ix.wait(ctx)
	case ix != nil && ix.epoch > epoch:
		x.mu.Unlock()
		return nil, errEpochMoved
	}
	ix = &ownedIndex{id: spec.GetId(), paths: paths, epoch: epoch, members: slices.Clone(members), self: self,
		done: make(chan struct{}), byKey: map[string]string{}}
	if x.byDB[db] == nil {
		x.byDB[db] = map[string]*ownedIndex{}
	}
	x.byDB[db][ix.id] = ix
	x.mu.Unlock()
	ix.err = ix.build(context.WithoutCancel(ctx), w, s, db)
	if ix.err != nil {
		x.mu.Lock()
		if x.byDB[db][ix.id] == ix {
			delete(x.byDB[db], ix.id)
		}
		x.mu.Unlock()
	}
	close(ix.done)
	return ix.wait(ctx)
}

// wait waits for the index's build to end.
func (ix *ownedIndex) wait(ctx context.Context) (*ownedIndex, error) {
	select {
	case <-ix.done:
		if ix.err != nil {
			return nil, ix.err
		}
		return ix, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for index %s: %w", ix.id, ctx.Err())
	}
}

// owns reports whether the index holds key: whether self owns it among
// members (rendezvous hashing, as the router places it).
func (ix *ownedIndex) owns(db, key string) bool {
	if len(ix.members) == 0 {
		return false
	}
	return ix.members[rendezvousOrder(db, key, ix.members)[0]] == ix.self
}

// build fills the index by one scan: the entity keys of db in storage,
// those this worker owns, each read (cache first) and entered under the
// entity's lock, which every write of it here holds too, so that no
// write can come between the read and the entry. Writes during the build
// enter themselves (record): the index is registered before the listing.
func (ix *ownedIndex) build(ctx context.Context, w *worker, s *keyring, db string) error {
	// The entities this worker owns whose files its log has not written
	// yet are written first: the listing must name them.
	if err := w.flushLog(ctx); err != nil {
		return fmt.Errorf("build index %s: %w", ix.id, err)
	}
	keys, err := scanKeys(ctx, w.st, db)
	if err != nil {
		return fmt.Errorf("build index %s: %w", ix.id, err)
	}
	mine := keys[:0]
	for _, k := range keys {
		if ix.owns(db, k) {
			mine = append(mine, k)
		}
	}
	errs := make([]error, findParallel)
	var wg sync.WaitGroup
	for g := range findParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(mine) && errs[g] == nil; i += findParallel {
				errs[g] = ix.enter(ctx, w, s, db, mine[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("build index %s: %w", ix.id, err)
	}
	return nil
}

// enter reads entity key and enters it, under its lock.
func (ix *ownedIndex) enter(ctx context.Context, w *worker, s *keyring, db, key string) error {
	unlock, err := w.locks.lock(ctx, entityObjectKey(db, key))
	if err != nil {
		return err
	}
	defer unlock()
	e, ok, err := w.findRead(ctx, s, db, key)
	if err != nil {
		return err
	}
	if ok {
		ix.set(key, e.doc)
	}
	return nil
}

// entryOf is the index entry of entity key with document doc: the
// collation keys of its values of the index's fields, then its key; ok is
// false when it lacks one of the fields (CouchDB's json indexes leave
// such documents out too) or doc is nil.
func (ix *ownedIndex) entryOf(key string, doc []byte) (string, bool) {
	if doc == nil {
		return "", false
	}
	var e []byte
	for _, p := range ix.paths {
		v, st := lookup(target{v: doc, key: key, root: true}, p)
		if st != found {
			return "", false
		}
		var err error
		if e, err = appendCollation(e, v); err != nil {
			return "", false
		}
	}
	return string(appendStringKey(e, key)), true
}

// set replaces key's entry by the one of doc (nil: deleted).
func (ix *ownedIndex) set(key string, doc []byte) {
	entry, ok := ix.entryOf(key, doc)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old, had := ix.byKey[key]
	if had && (!ok || old != entry) {
		ix.entries.remove(old)
		delete(ix.byKey, key)
	}
	if ok && (!had || old != entry) {
		ix.entries.add(entry)
		ix.byKey[key] = entry
	}
}

// batch returns up to n entries within [start, end) (end empty: no upper
// bound) that come after `after` in the walk's direction (after empty:
// from the start), in that direction, as candidates.
func (ix *ownedIndex) batch(start, end, after []byte, desc bool, n int) []candidate {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]candidate, 0, n)
	add := func(e string) bool {
		if len(out) == n {
			return false
		}
		key, err := entryKey([]byte(e))
		if err == nil {
			out = append(out, candidate{key: key, walk: []byte(e)})
		}
		return true
	}
	if desc {
		hi := string(end)
		if len(after) > 0 && (hi == "" || string(after) < hi) {
			hi = string(after)
		}
		ix.entries.descend(hi, string(start), add)
		return out
	}
	lo := string(start)
	if len(after) > 0 && string(after) >= lo {
		lo = string(after) + "\x00" // the first entry strictly after
	}
	ix.entries.ascend(lo, string(end), add)
	return out
}

// count returns the number of entries within [start, end).
func (ix *ownedIndex) count(start, end []byte) int64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := int64(0)
	ix.entries.ascend(string(start), string(end), func(string) bool { n++; return true })
	return n
}

// entryKey decodes the entity key at the end of an index entry or sort
// position: the last string key.
func entryKey(e []byte) (string, error) {
	i := 0
	for {
		end, err := collationEnd(e, i)
		if err != nil {
			return "", err
		}
		if end == len(e) {
			return decodeStringKey(e[i:end])
		}
		i = end
	}
}

// ascend calls fn with each key k, lo <= k < hi (hi "": no bound), in
// order, until fn returns false.
func (s *sortedKeys) ascend(lo, hi string, fn func(string) bool) {
	ci, i := s.seek(lo)
	for ; ci < len(s.chunks); ci, i = ci+1, 0 {
		for _, k := range s.chunks[ci][i:] {
			if hi != "" && k >= hi || !fn(k) {
				return
			}
		}
	}
}

// descend calls fn with each key k, lo <= k < hi (hi "": no bound), in
// reverse order, until fn returns false.
func (s *sortedKeys) descend(hi, lo string, fn func(string) bool) {
	ci, i := len(s.chunks), 0
	if hi != "" {
		ci, i = s.seek(hi)
	}
	// Start just before position (ci, i).
	for {
		if i == 0 {
			if ci == 0 {
				return
			}
			ci--
			i = len(s.chunks[ci])
		}
		i--
		k := s.chunks[ci][i]
		if k < lo || !fn(k) {
			return
		}
	}
}

// findIndexed answers a FIND call that reads one of this worker's
// indexes: its entries within the call's range, in batches, each batch
// evaluated like a scan's keys (every candidate is read and matched
// against the whole selector, so an entry that changes meanwhile can
// never bring a document that does not match).
func (w *worker) findIndexed(ctx context.Context, s *keyring, db string, epoch uint64, q *workerQuery) (*pb.FindResult, error) {
	if epoch < w.currentEpoch() {
		return nil, errEpochMoved
	}
	f := q.op
	ix, err := w.indexes.acquire(ctx, w, s, db, f.GetIndex(), epoch, f.GetMembers(), f.GetSelf())
	if err != nil {
		return nil, err
	}
	if f.GetCountOnly() {
		return &pb.FindResult{Done: true, Count: ix.count(f.GetStart(), f.GetEnd())}, nil
	}
	out := newFindOutput(f)
	after, maxExamined := f.GetAfter(), f.GetMaxExamined()
	for {
		n := indexBatch
		if maxExamined > 0 {
			n = int(min(int64(n), maxExamined-out.res.Examined))
		}
		if n <= 0 || f.GetLimit() > 0 && int64(len(out.res.Matches)) >= f.GetLimit() {
			out.stopped = true
			break
		}
		batch := ix.batch(f.GetStart(), f.GetEnd(), after, f.GetDescending(), n)
		if len(batch) == 0 {
			break
		}
		after = batch[len(batch)-1].walk
		if err := w.evaluate(ctx, s, db, q, ownedOnly(ix, db, batch), out); err != nil {
			return nil, err
		}
		if out.stopped {
			break
		}
		out.res.Through = after
	}
	out.res.Done = !out.stopped
	return out.res, nil
}

// indexBatch is how many index entries findIndexed evaluates at a time.
const indexBatch = 64

// ownedOnly drops the candidates the index holds but no longer owns (a
// write routed under an older epoch arriving late).
func ownedOnly(ix *ownedIndex, db string, batch []candidate) []candidate {
	out := batch[:0]
	for _, c := range batch {
		if ix.owns(db, c.key) {
			out = append(out, c)
		}
	}
	return out
}

// currentEpoch is the newest routing epoch this worker has seen.
func (w *worker) currentEpoch() uint64 {
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	return w.epoch
}

// collationEnd returns the index just past the collation key starting at
// b[i].
func collationEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errBadJSON
	}
	switch b[i] {
	case tagMissing, tagNull, tagFalse, tagTrue:
		return i + 1, nil
	case tagNumber:
		return numberKeyEnd(b, i+1)
	case tagString:
		for j := i + 1; j+1 < len(b); j++ {
			if b[j] == 0 {
				if b[j+1] == 1 {
					return j + 2, nil
				}
				j++
			}
		}
	case tagArray, tagObject:
		for j := i + 1; j < len(b); {
			if b[j] == tagEnd {
				return j + 1, nil
			}
			end, err := collationEnd(b, j)
			if err != nil {
				return 0, err
			}
			j = end
		}
	}
	return 0, errBadJSON
}

// numberKeyEnd returns the end of a number key whose sign class is at
// b[i].
func numberKeyEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errBadJSON
	}
	end := byte(0)
	switch b[i] {
	case numZero:
		return i + 1, nil
	case numNegative:
		end = 0xff
	case numPositive:
	default:
		return 0, errBadJSON
	}
	j := i + 1 + 8
	if j > len(b) {
		return 0, errBadJSON
	}
	k := bytes.IndexByte(b[j:], end)
	if k < 0 {
		return 0, errBadJSON
	}
	return j + k + 1, nil
}

// decodeStringKey decodes a string's collation key.
func decodeStringKey(k []byte) (string, error) {
	if len(k) < 3 || k[0] != tagString {
		return "", errBadJSON
	}
	var out []byte
	for j := 1; j < len(k)-2; j++ {
		out = append(out, k[j])
		if k[j] == 0 {
			j++
		}
	}
	return string(out), nil
}

// sortIndexDefs orders definitions by name, for listings.
func sortIndexDefs(defs []indexDef) []indexDef {
	out := slices.Clone(defs)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
