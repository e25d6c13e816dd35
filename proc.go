package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// processingWorker is one processing worker as the router calls it: the
// in-process worker of -role=all takes the WorkerRequest as is, remoteWorker
// (routing.go) signs it and sends it over gRPC. Errors wrap the sentinel
// errors of errors.go.
type processingWorker interface {
	Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error)
}

// worker is a processing worker: it seals and opens entities, reads and
// writes storage, and caches decrypted entities. Documents of a PUT arrive
// validated by the main worker; the result of a PATCH is validated here,
// against the schema IDs the main worker resolved. It is safe for
// concurrent use. Its keyring is nil until the master key is known (a
// remote worker receives it on Subscribe).
type worker struct {
	id      string
	st      store
	schemas *schemaRegistry
	cache   *lru[string, cachedEntity]
	log     *slog.Logger
	// lim bounds a PATCH: its operations and the size and nesting of the
	// result. The zero value is the defaults.
	lim budgets

	keys atomic.Pointer[keyring]
	// inFlight counts Process calls being served (for routing and
	// /admin/workers).
	inFlight atomic.Int64

	// epochMu guards epoch: the routing epoch the cache contents belong to.
	epochMu sync.Mutex
	epoch   uint64
	// epochSeen is epoch, stored once the cache holds nothing older, so
	// that a call of an epoch already seen (nearly every one) takes no
	// lock.
	epochSeen atomic.Uint64

	// minEpoch fences the calls routed to this worker before its log was
	// taken over (a pause past its lease): one sent to it then, and
	// admitted as it resumed, must not write an entity another worker
	// has written since. From the takeover's reopen (reopenLog) until
	// the new subscription is installed it refuses every call, then
	// those of its epoch or older (routedAfter): the main worker calls
	// the new registration only once it is in rotation, under a later
	// epoch. 0: no takeover.
	minEpoch atomic.Uint64

	// locks serialise storage access and cache fills for one entity
	// within this process, so a slow cache fill of an old value can never
	// overwrite the cache entry of a newer acknowledged write. Across a
	// purge, the cache's generation does that instead: a fill adds only
	// under the generation it read (or wrote) under (lru.AddAt), so a
	// value read before an epoch's or a takeover's purge is never cached
	// after it.
	locks keyLocks

	// indexes are the query indexes over the entities this worker owns
	// (index.go), kept by every write through wrote.
	indexes *workerIndexes

	// wal is the write-ahead log writes go through on the filesystem
	// backend (walwriter.go); nil writes each entity file durably.
	wal *walLog
}

// cachedEntity is one decrypted entity in the LRU.
type cachedEntity struct {
	doc     []byte
	version string // the entity's ETag value (envelopeHeader.etag)
	// rev is the storage revision of the stored envelope (store.GetRev),
	// "" if unknown (after a plain Put); a conditional write then reads
	// storage first.
	rev string
	// written is when the stored version was sealed (envelopeHeader.Written,
	// kept by a rekey), Unix nanoseconds.
	written int64
}

// cacheEntryOverhead is what a cached entity takes besides its bytes: the
// LRU entry, its map slot and the slice and string headers.
const cacheEntryOverhead = 160

// cachedSize is the memory entity e takes in the cache under key, for
// the cache's byte bound (-entity-cache-bytes): the document's whole
// allocation (its capacity), its strings and the entry.
func cachedSize(key string, e cachedEntity) int64 {
	return int64(len(key)+cap(e.doc)+len(e.version)+len(e.rev)) + cacheEntryOverhead
}

// newWorker returns a worker over st caching entities in cache and
// bounding patches by lim (the zero value is the defaults), writing
// through wal unless it is nil.
func newWorker(id string, st store, schemas *schemaRegistry, cache *lru[string, cachedEntity], lim budgets, log *slog.Logger,
	wal *walLog) *worker {
	return &worker{id: id, st: st, schemas: schemas, cache: cache, lim: lim, log: log, indexes: newWorkerIndexes(), wal: wal}
}

// setKeys installs the keyring built from the master key.
func (w *worker) setKeys(k *keyring) { w.keys.Store(k) }

// Process runs one entity operation. It implements processingWorker.
func (w *worker) Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	if req.GetOp().GetOperation() == pb.Operation_CHECKPOINT {
		return w.checkpoint(ctx)
	}
	c, err := w.check(req)
	if err != nil {
		return nil, err
	}
	return w.run(ctx, c)
}

// cached answers req from the cache when it is the owner's plain read of
// an entity the cache holds. Nothing in it waits (no lock, no storage),
// so a Calls stream answers it without a goroutine of its own; false
// means the caller runs Process, which counts the cache's miss (cached
// counts only a hit).
func (w *worker) cached(req *pb.WorkerRequest) (*pb.WorkerResponse, bool) {
	if !ownersRead(req) {
		return nil, false
	}
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	e, ok := w.lookup(req)
	if !ok {
		return nil, false
	}
	return e.response(), true
}

// lookup is cached's check and lookup: the entity req, the owner's plain
// read (ownersRead), reads, when req passes check and the cache holds
// it. The in-process read (router.cachedRead) builds its answer from
// it where it likes, and counts it in flight on the router's side only:
// the worker's own count is read by a remote worker's heartbeat alone.
func (w *worker) lookup(req *pb.WorkerRequest) (cachedEntity, bool) {
	c, err := w.check(req)
	if err != nil {
		return cachedEntity{}, false
	}
	return w.cache.Hit(cacheKey(c.op.GetDatabaseName(), c.op.GetEntityKey()))
}

// checked is a request that passed check: the keyring it is served with,
// and its operation, whose names are valid.
type checked struct {
	s   *keyring
	req *pb.WorkerRequest
	op  *pb.EntityOp
	// logGen is the generation of the log the call is served under: its
	// write is never appended to a later one (walRecord.gen).
	logGen uint64
}

// check is what a request passes before it reaches the cache or storage,
// on both paths (Process, and the call stream's cached): the master key
// is known, the database name is valid and so is the entity key of every
// operation that names one (all but FIND), and the routing epoch the
// request carries is observed (a newer one drops the cache).
func (w *worker) check(req *pb.WorkerRequest) (checked, error) {
	s := w.keys.Load()
	if s == nil {
		return checked{}, fmt.Errorf("process: worker has no master key yet: %w", errUnavailable)
	}
	op := req.GetOp()
	// The generation first: one read after a takeover's reopen finds
	// minEpoch set already (walLog.reopen's onTaken).
	var gen uint64
	if w.wal != nil && op.GetOperation() != pb.Operation_GET && op.GetOperation() != pb.Operation_FIND {
		gen = w.wal.generation()
	}
	if req.GetEpoch() < w.minEpoch.Load() {
		return checked{}, errRoutedBeforeTakeover
	}
	if err := validateDBName(op.GetDatabaseName()); err != nil {
		return checked{}, err
	}
	if op.GetOperation() != pb.Operation_FIND {
		if err := validateEntityKey(op.GetEntityKey()); err != nil {
			return checked{}, err
		}
	}
	w.observeEpoch(req.GetEpoch())
	return checked{s: s, req: req, op: op, logGen: gen}, nil
}

// errRoutedBeforeTakeover: a call the main worker routed to this worker
// before its log was taken over, served after (503; the main worker gave
// up on it when it took the log over).
var errRoutedBeforeTakeover = fmt.Errorf("call routed to this worker before its write-ahead log was taken over; nothing done: %w", errUnavailable)

// routedAfter is told the routing epoch of a new subscription: after a
// takeover's reopen, the calls of that epoch or older were routed to this
// worker before it (minEpoch).
func (w *worker) routedAfter(epoch uint64) {
	w.minEpoch.CompareAndSwap(math.MaxUint64, epoch+1)
}

// logGenKey carries checked.logGen in a call's context to logWrite.
type logGenKey struct{}

// ownersRead reports whether req is the owner's plain read of an entity:
// the read the cache serves and fills (get).
func ownersRead(req *pb.WorkerRequest) bool {
	return req.GetOp().GetOperation() == pb.Operation_GET && req.GetOwner() && !req.GetOp().GetScan()
}

// run serves checked request c.
func (w *worker) run(ctx context.Context, c checked) (*pb.WorkerResponse, error) {
	s, op, owner := c.s, c.op, c.req.GetOwner()
	if c.logGen != 0 {
		ctx = context.WithValue(ctx, logGenKey{}, c.logGen)
	}
	if versionOps[op.GetOperation()] {
		return w.versionOp(ctx, s, op, owner)
	}
	switch op.GetOperation() {
	case pb.Operation_FIND:
		return w.find(ctx, s, c.req)
	case pb.Operation_GET:
		return w.read(ctx, c)
	case pb.Operation_PUT:
		return w.put(ctx, s, op, owner)
	case pb.Operation_PATCH:
		return w.patch(ctx, s, op, owner)
	case pb.Operation_DELETE:
		return w.delete(ctx, s, op, owner)
	default:
		return nil, reqErrorf(errInvalid, "operation %v is not supported", op.GetOperation())
	}
}

// read serves a GET: the owner's plain read through the cache (get), a
// walk's read past it (getScan), and a read for an entity this worker
// does not own straight from storage (getUncached).
func (w *worker) read(ctx context.Context, c checked) (*pb.WorkerResponse, error) {
	switch {
	case ownersRead(c.req):
		return w.get(ctx, c.s, c.op)
	case !c.req.GetOwner():
		return w.getUncached(ctx, c.s, c.op)
	}
	return w.getScan(ctx, c.s, c.op)
}

// observeEpoch drops the cache when the main worker's routing epoch is newer
// than the one the cache was filled under: while this worker did not own some
// entities, another worker may have written them (ARCHITECTURE.md "Processing
// workers and routing").
func (w *worker) observeEpoch(epoch uint64) {
	if epoch <= w.epochSeen.Load() {
		return
	}
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	if epoch > w.epoch {
		if w.epoch != 0 {
			w.cache.Purge()
		}
		w.epoch = epoch
		w.epochSeen.Store(epoch)
	}
}

// cacheKey is the LRU key of an entity.
func cacheKey(db, key string) string { return db + "\x00" + key }

// get serves the owner's read from the cache, or from storage on a miss,
// filling the cache.
func (w *worker) get(ctx context.Context, s *keyring, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if e, ok := w.cache.Get(cacheKey(db, key)); ok {
		return e.response(), nil
	}
	// The same lock as lockEntity's in-process part.
	unlock, err := w.locks.lock(ctx, entityObjectKey(db, key))
	if err != nil {
		return nil, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	defer unlock()
	// A writer may have filled the cache while we waited for the lock.
	if e, ok := w.cache.Peek(cacheKey(db, key)); ok {
		return e.response(), nil
	}
	// The generation before the storage read: a purge after it (a newer
	// epoch, a takeover) may mean another worker wrote the entity since,
	// and then what was read is not cached (the read is answered, as any
	// read running alongside that write may be).
	gen := w.cache.Gen()
	e, err := w.load(ctx, s, db, key)
	if err != nil {
		return nil, err
	}
	w.cache.AddAt(cacheKey(db, key), e, gen)
	return e.response(), nil
}

// getUncached serves a read for an entity this worker does not own (the
// owner was saturated): straight from storage, leaving the cache alone, so
// that nothing here can go stale while the owner takes the writes.
func (w *worker) getUncached(ctx context.Context, s *keyring, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	e, err := w.load(ctx, s, op.GetDatabaseName(), op.GetEntityKey())
	if err != nil {
		return nil, err
	}
	return e.response(), nil
}

// getScan serves a read of a walk over a database (EntityOp.scan) as
// findRead does: from the cache when it holds the entity, else from
// storage, leaving the cache as it was.
func (w *worker) getScan(ctx context.Context, s *keyring, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if e, ok := w.cache.Peek(cacheKey(op.GetDatabaseName(), op.GetEntityKey())); ok {
		return e.response(), nil
	}
	return w.getUncached(ctx, s, op)
}

// load reads and decrypts one entity from storage. A missing entity is a
// requestError naming it.
func (w *worker) load(ctx context.Context, s *keyring, db, key string) (cachedEntity, error) {
	sealed, rev, err := w.stored(ctx, db, key)
	if errors.Is(err, errNotFound) {
		return cachedEntity{}, fmt.Errorf("get entity %s/%q: %w: %w", db, key, err,
			reqErrorf(errNotFound, "entity %q not found in database %q", key, db))
	}
	if err != nil {
		return cachedEntity{}, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	doc, hdr, err := s.open(ctx, db, key, sealed)
	if err != nil {
		return cachedEntity{}, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	return cachedEntity{doc: doc, version: hdr.etag(), rev: rev, written: hdr.Written.UnixNano()}, nil
}

// stored reads an entity's envelope and storage revision: its newest
// logged record whose entity file the log's applier has not written yet,
// else the file.
func (w *worker) stored(ctx context.Context, db, key string) ([]byte, string, error) {
	if w.wal != nil {
		if rec, ok := w.wal.unappliedRecord(db, key); ok {
			if rec.Type == walDelete {
				return nil, "", fmt.Errorf("entity deleted, its file not yet removed: %w", errNotFound)
			}
			return rec.Sealed, fsRev(rec.Sealed), nil
		}
	}
	return w.st.GetRev(ctx, entityObjectKey(db, key))
}

// prepareToChange is keyring.prepare for a write that needs its entity
// to be stored (a PATCH, a PUT with If-Match, an undelete, whose versions
// were sealed under a data key): a database without data keys gets its
// first one only if the entity is stored (sealed under the master key,
// from before data keys). Otherwise the write is refused (404, 412)
// before anything is sealed, and a data key made for it would leave
// storage changed by a refused request. An entity written meanwhile was
// written with a data key of its own making, which seal then reads.
func (w *worker) prepareToChange(ctx context.Context, s *keyring, db, key string) error {
	ok, err := s.hasDataKeys(ctx, db)
	if err != nil || ok {
		return err
	}
	if _, _, err := w.stored(ctx, db, key); errors.Is(err, errNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return s.prepare(ctx, db)
}

// put seals and durably stores one entity, then caches it. The document
// was validated by the main worker, once for the whole request. Without
// preconditions it is a blind write; with If-Match or If-None-Match it
// checks them against the stored entity under the entity's lock,
// atomically with the write.
func (w *worker) put(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	prepare := s.prepare
	if op.GetIfMatch() != "" {
		prepare = func(ctx context.Context, db string) error { return w.prepareToChange(ctx, s, db, key) }
	}
	if err := prepare(ctx, db); err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	if err := w.waitRoom(ctx); err != nil {
		return nil, err
	}
	unlock, err := w.lockWrite(ctx, op)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, err := w.previousVersion(ctx, op, owner)
	if err != nil {
		return nil, err
	}
	doc := op.GetPayload()
	var e cachedEntity
	if !hasPreconditions(op) {
		e, err = w.store(ctx, s, op, owner, doc, "", false)
	} else {
		e, err = w.readModifyWrite(ctx, s, op, owner, func(current) ([]byte, error) { return doc, nil })
	}
	if err != nil {
		return nil, err
	}
	return &pb.WorkerResponse{Version: e.version, Modified: e.written, PreviousVersion: prev}, nil
}

// previousVersion is the ETag value of the entity a write of op is
// about to replace or delete, when op asks for it (the audit log's
// etag_before), else "": from the cache when this worker owns the entity
// and knows its storage revision, else from the stored envelope's header;
// "" when the entity does not exist. The caller holds the entity's lock.
func (w *worker) previousVersion(ctx context.Context, op *pb.EntityOp, owner bool) (string, error) {
	if !op.GetWantPrevious() {
		return "", nil
	}
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if owner {
		if e, ok := w.cache.Peek(cacheKey(db, key)); ok && e.rev != "" {
			return e.version, nil
		}
	}
	sealed, _, err := w.stored(ctx, db, key)
	if errors.Is(err, errNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	h, _, err := parseHeader(sealed)
	if err != nil {
		return "", fmt.Errorf("entity %s/%q: %w", db, key, err)
	}
	return h.etag(), nil
}

// patch applies a merge patch or JSON Patch (op.ContentType) to the
// stored entity under its lock, validates the result against
// op.SchemaIds (resolved by the main worker: workers never read
// bindings), stores it durably and answers the new document. A missing
// entity is errNotFound: PATCH never creates. Unless op.MayRead, a
// failure says nothing of the stored document (withoutDocument).
func (w *worker) patch(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool) (*pb.WorkerResponse, error) {
	db, key, ct := op.GetDatabaseName(), op.GetEntityKey(), op.GetContentType()
	if ct != mergePatchType && ct != jsonPatchType {
		return nil, reqErrorf(errInvalid, "content type %q is not %s or %s", ct, mergePatchType, jsonPatchType)
	}
	if err := w.prepareToChange(ctx, s, db, key); err != nil {
		return nil, fmt.Errorf("patch entity %s/%q: %w", db, key, err)
	}
	if err := w.waitRoom(ctx); err != nil {
		return nil, err
	}
	unlock, err := w.lockWrite(ctx, op)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, err := w.previousVersion(ctx, op, owner)
	if err != nil {
		return nil, err
	}
	e, err := w.readModifyWrite(ctx, s, op, owner, func(cur current) ([]byte, error) {
		if !cur.exists {
			return nil, reqErrorf(errNotFound, "entity %q not found in database %q", key, db)
		}
		doc, err := applyPatch(ct, cur.doc, op.GetPayload(), w.lim)
		if err == nil {
			err = w.schemas.validateDoc(ctx, op.GetSchemaIds(), doc)
		}
		if err != nil && !op.GetMayRead() {
			err = withoutDocument(err)
		}
		if err != nil {
			return nil, fmt.Errorf("patch entity %s/%q: %w", db, key, err)
		}
		return doc, nil
	})
	if err != nil {
		return nil, err
	}
	resp := e.response()
	resp.PreviousVersion = prev
	return resp, nil
}

// delete removes one entity durably and evicts it. With preconditions it
// checks them first, under the entity's lock.
func (w *worker) delete(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if err := w.waitRoom(ctx); err != nil {
		return nil, err
	}
	unlock, err := w.lockWrite(ctx, op)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, err := w.previousVersion(ctx, op, owner)
	if err != nil {
		return nil, err
	}
	if hasPreconditions(op) {
		cur, err := w.current(ctx, s, db, key, owner)
		if err != nil {
			return nil, err
		}
		if err := checkPreconditions(op, cur); err != nil {
			return nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
		}
	}
	var logged []walObject
	if op.GetMaxVersions() > 0 {
		objs, release, err := w.softDelete(ctx, s, op)
		if err != nil {
			return nil, err
		}
		defer release()
		logged = objs
	}
	w.cache.Remove(cacheKey(db, key))
	if w.wal != nil {
		err = w.logDelete(ctx, op, logged)
	} else {
		err = w.st.Delete(ctx, entityObjectKey(db, key))
	}
	w.wrote(db, key, nil, err)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("delete entity %s/%q: %w: %w", db, key, err,
			reqErrorf(errNotFound, "entity %q not found in database %q", key, db))
	}
	if err != nil {
		return nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
	}
	resp := okResponse(nil, "")
	resp.PreviousVersion = prev
	return resp, nil
}

// wrote tells the query indexes (index.go) the outcome of a write of key
// in db that this worker made as its owner, holding the entity's lock:
// doc is the document now durably stored, nil when the entity is gone. A
// write whose outcome is unknown drops db's indexes, to be built again.
// It is the one hook of the indexes in the write path: whatever makes a
// write durable (the store, a log) calls it at the moment the write is.
func (w *worker) wrote(db, key string, doc []byte, err error) {
	switch {
	case err == nil:
		w.indexes.record(db, key, doc)
	case doc == nil && errors.Is(err, errNotFound):
		w.indexes.record(db, key, nil)
	case !nothingWritten(err):
		w.indexes.forget(db)
	}
}

// lockEntity takes the entity's lock for a write: the in-process lock
// that also guards cache fills, then the storage lock, which on the
// filesystem excludes writers in other processes (lockObject). The
// returned function releases both.
func (w *worker) lockEntity(ctx context.Context, db, key string) (func(), error) {
	unlock, err := lockObject(ctx, &w.locks, w.st, entityObjectKey(db, key))
	if err != nil {
		return nil, fmt.Errorf("lock entity %s/%q: %w", db, key, err)
	}
	return unlock, nil
}

// lockWrite takes the entity's lock for a put, patch or delete of op:
// lockEntity's, except that through the log a write that keeps no
// versions takes only the in-process lock. Such a write touches no file
// but the log, which is this process's alone: the fence, checked after
// each group's fdatasync, is what keeps a taker from missing an
// acknowledged record, and the applier takes the cross-process lock when
// it writes the entity's files (applyOne), so a rekey's reseal and those
// files still never interleave. What the write reads of the files (a
// precondition, the previous ETag, the versions' index) is whole either
// way: files are replaced by a rename. A write that keeps versions logs
// their objects with its record too: the applier writes them.
func (w *worker) lockWrite(ctx context.Context, op *pb.EntityOp) (func(), error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if w.wal == nil {
		return w.lockEntity(ctx, db, key)
	}
	unlock, err := w.locks.lock(ctx, entityObjectKey(db, key))
	if err != nil {
		return nil, fmt.Errorf("lock entity %s/%q: %w", db, key, err)
	}
	return unlock, nil
}

// current is an entity as a write finds it.
type current struct {
	exists  bool
	doc     []byte
	version string // ETag value; "" when it does not exist
	rev     string // storage revision; "" when it does not exist
}

// current returns the entity's stored state: from the cache when this
// worker owns it and knows the storage revision, else from storage. The
// caller holds the entity's lock.
func (w *worker) current(ctx context.Context, s *keyring, db, key string, useCache bool) (current, error) {
	if useCache {
		if e, ok := w.cache.Peek(cacheKey(db, key)); ok && e.rev != "" {
			return current{exists: true, doc: e.doc, version: e.version, rev: e.rev}, nil
		}
	}
	e, err := w.load(ctx, s, db, key)
	if errors.Is(err, errNotFound) {
		return current{}, nil
	}
	if err != nil {
		return current{}, err
	}
	return current{exists: true, doc: e.doc, version: e.version, rev: e.rev}, nil
}

// maxWriteAttempts bounds how often readModifyWrite starts over after
// losing a race with a writer in another process.
const maxWriteAttempts = 3

// readModifyWrite reads the entity, checks op's preconditions, lets next
// compute the new document from it and stores that with PutIf on the
// revision read. The caller holds the entity's lock, which excludes every
// writer in this process (and, on the filesystem, in others); PutIf
// catches the rest (S3 while ownership moves between workers), in which
// case it reads again and starts over.
func (w *worker) readModifyWrite(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool,
	next func(current) ([]byte, error)) (cachedEntity, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	for attempt := 1; ; attempt++ {
		cur, err := w.current(ctx, s, db, key, owner && attempt == 1)
		if err != nil {
			return cachedEntity{}, err
		}
		if err := checkPreconditions(op, cur); err != nil {
			return cachedEntity{}, fmt.Errorf("write entity %s/%q: %w", db, key, err)
		}
		doc, err := next(cur)
		if err != nil {
			return cachedEntity{}, err
		}
		e, err := w.store(ctx, s, op, owner, doc, cur.rev, true)
		if errors.Is(err, errPrecondition) && attempt < maxWriteAttempts {
			w.log.WarnContext(ctx, "entity changed by another process during a write; retrying", attrDB, db)
			continue
		}
		return e, err
	}
}

// store seals doc and writes it: with PutIf on rev when conditional, else
// with a plain Put. The owner caches the result; anyone else evicts.
func (w *worker) store(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool, doc []byte, rev string, conditional bool) (cachedEntity, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	// As get's fill: a purge between here and the fill may mean another
	// worker wrote the entity since (a takeover while this write, logged
	// before it, was paused).
	gen := w.cache.Gen()
	// The data key chosen must not change before the entity is stored
	// (keyring.applyEpoch, rekey.go).
	defer s.hold()()
	sealed, hdr, err := s.seal(ctx, db, key, doc)
	if err != nil {
		return cachedEntity{}, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	if cap(doc) > len(doc)+len(doc)/8 {
		// The cache keeps the whole allocation: a PUT's document may sit
		// in up to twice its length (its compaction buffer's growth).
		doc = bytes.Clone(doc)
	}
	e := cachedEntity{doc: doc, version: hdr.etag(), written: hdr.Written.UnixNano()}
	var vw *versionWrite
	var logged []walObject
	if op.GetMaxVersions() > 0 {
		if vw, err = w.beginVersions(ctx, s, op); err != nil {
			return cachedEntity{}, err
		}
		if w.wal != nil {
			// The version goes in the entity's log record: durable with it,
			// in its group commit.
			if err := vw.record(ctx, doc, hdr); err != nil {
				return cachedEntity{}, fmt.Errorf("put entity %s/%q: %w", db, key, err)
			}
			logged = vw.logged
		}
	}
	switch {
	case w.wal != nil:
		e.rev, err = w.logPut(ctx, op, sealed, e.version, rev, conditional, logged)
	case conditional:
		e.rev, err = w.st.PutIf(ctx, entityObjectKey(db, key), sealed, rev)
	default:
		err = w.st.Put(ctx, entityObjectKey(db, key), sealed)
	}
	w.wrote(db, key, doc, err)
	if err != nil {
		// The stored state is unknown now; never serve a guess from cache.
		w.cache.Remove(cacheKey(db, key))
		return cachedEntity{}, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	if vw != nil && w.wal == nil {
		if err := w.keptVersion(ctx, vw, doc, hdr); err != nil {
			w.cache.Remove(cacheKey(db, key))
			return cachedEntity{}, err
		}
	}
	if owner {
		w.cache.AddAt(cacheKey(db, key), e, gen)
	} else {
		w.cache.Remove(cacheKey(db, key))
	}
	return e, nil
}

// keptVersion records the document a write stored as its entity's next
// version, before the write is answered, without a log. The entity is
// stored already: a failure here is a 503 of a write that may be stored,
// and the next write of the entity keeps its document (beginVersions).
func (w *worker) keptVersion(ctx context.Context, vw *versionWrite, doc []byte, hdr envelopeHeader) error {
	if err := vw.record(ctx, doc, hdr); err != nil {
		return fmt.Errorf("entity %s/%q stored, its version not: %w: %w", vw.op.GetDatabaseName(), vw.op.GetEntityKey(), err, errUnavailable)
	}
	return nil
}

// logPut stores a sealed entity through the log: on condition that its
// storage revision is still rev when conditional (as PutIf), appended to
// the log with the objects of its versions, if any, and synced with its
// group, then its files written without a sync of their own. The caller
// holds the entity's lock. It returns the new revision.
func (w *worker) logPut(ctx context.Context, op *pb.EntityOp, sealed []byte, etag, rev string, conditional bool, objs []walObject) (string, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if conditional {
		if err := w.checkRev(ctx, db, key, rev); err != nil {
			return "", err
		}
	}
	rec := &walRecord{Type: walPut, DB: db, Key: key, Principal: op.GetPrincipal(), ETag: etag, Sealed: sealed, Objects: objs}
	if err := w.logWrite(ctx, rec); err != nil {
		return "", err
	}
	return fsRev(sealed), nil
}

// checkRev checks that an entity's storage revision is still rev ("":
// that it does not exist), as PutIf does.
func (w *worker) checkRev(ctx context.Context, db, key, rev string) error {
	_, cur, err := w.stored(ctx, db, key)
	switch {
	case errors.Is(err, errNotFound) && rev == "":
		return nil
	case err != nil && !errors.Is(err, errNotFound):
		return err
	case err != nil:
		return fmt.Errorf("entity %s/%q missing: %w", db, key, errPrecondition)
	case cur != rev:
		return fmt.Errorf("entity %s/%q changed: %w", db, key, errPrecondition)
	}
	return nil
}

// logDelete deletes an entity through the log, with the objects of its
// versions (softDelete), if any: a missing one is errNotFound and logs
// nothing. The caller holds the entity's lock.
func (w *worker) logDelete(ctx context.Context, op *pb.EntityOp, objs []walObject) error {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	sealed, _, err := w.stored(ctx, db, key)
	if err != nil {
		return err
	}
	rec := &walRecord{Type: walDelete, DB: db, Key: key, Principal: op.GetPrincipal(), Objects: objs}
	if h, _, err := parseHeader(sealed); err == nil {
		rec.ETag = h.etag()
	}
	return w.logWrite(ctx, rec)
}

// logWrite appends rec to the log and returns once its group commit is
// on disk: the write is durable, and this worker reads it from the log's
// table of unapplied records until the applier has written its entity
// file (walapply.go). The caller holds the entity's lock.
func (w *worker) logWrite(ctx context.Context, rec *walRecord) error {
	rec.gen, _ = ctx.Value(logGenKey{}).(uint64)
	err := w.wal.write(rec)
	if errors.Is(err, errWALTaken) {
		// Another process applied this worker's log: what the cache holds
		// may be older than what is stored by the time it is used again.
		w.cache.Purge()
	}
	if err != nil {
		return fmt.Errorf("log entity %s/%q: %w", rec.DB, rec.Key, err)
	}
	return nil
}

// waitRoom waits, before a write takes its entity's lock, while the log's
// applier is too far behind (walLog.waitRoom).
func (w *worker) waitRoom(ctx context.Context) error {
	if w.wal == nil {
		return nil
	}
	if err := w.wal.waitRoom(ctx); err != nil {
		return fmt.Errorf("wait for the write-ahead log's applier: %w", err)
	}
	return nil
}

// flushLog returns once the entity files hold every write this worker
// acknowledged before the call (walLog.flush): before a scan of storage.
func (w *worker) flushLog(ctx context.Context) error {
	if w.wal == nil {
		return nil
	}
	if err := w.wal.flush(ctx); err != nil {
		return fmt.Errorf("flush write-ahead log of worker %q: %w", w.id, err)
	}
	return nil
}

// checkpoint checkpoints the worker's log on the main worker's request:
// another worker is about to take some of its entities, or the main
// worker is about to scan storage. The flush first: a checkpoint waits
// only for the records of the segments it cuts, and one of them
// replaced meanwhile by a later write (in the next segment) may have no
// entity file yet.
func (w *worker) checkpoint(ctx context.Context) (*pb.WorkerResponse, error) {
	if w.wal == nil {
		return okResponse(nil, ""), nil
	}
	if err := w.flushLog(ctx); err != nil {
		return nil, err
	}
	if err := w.wal.checkpoint(ctx); err != nil {
		return nil, fmt.Errorf("checkpoint write-ahead log: %w", err)
	}
	return okResponse(nil, ""), nil
}

// reopenLog starts a new generation of the worker's log if another
// process took it over (the worker subscribes again), dropping the cache:
// the taker may have stored values newer than it holds. It returns the
// generation, 0 without a log.
func (w *worker) reopenLog() (uint64, error) {
	if w.wal == nil {
		return 0, nil
	}
	taken, err := w.wal.reopen(func() { w.minEpoch.Store(math.MaxUint64) })
	if err != nil {
		return 0, fmt.Errorf("reopen write-ahead log: %w", err)
	}
	if taken {
		w.cache.Purge()
		w.log.Info("write-ahead log was taken over by the main worker; writing a new generation", attrWorker, w.id)
	}
	return w.wal.generation(), nil
}

// close closes the worker's log, once no write is in flight.
func (w *worker) close() error {
	if w.wal == nil {
		return nil
	}
	return w.wal.Close()
}

// stats returns the worker's cache counters.
func (w *worker) stats() cacheStats { return w.cache.Stats() }

// response is the answer carrying entity e: its document, version and
// write time.
func (e cachedEntity) response() *pb.WorkerResponse {
	return e.answerIn(&pb.WorkerResponse{})
}

// answerIn writes e's answer into the zero response into and returns it.
func (e cachedEntity) answerIn(into *pb.WorkerResponse) *pb.WorkerResponse {
	into.Result, into.Version, into.Modified = e.doc, e.version, e.written
	return into
}

// okResponse is the answer to a successful operation.
func okResponse(result []byte, version string) *pb.WorkerResponse {
	return &pb.WorkerResponse{Result: result, Version: version}
}

// errorDetail is the ProcessResponse detail of a failed call: status
// "ERROR", the sentence msg and, for a document its schema refuses, the
// violations (as REST's "errors").
func errorDetail(err error, msg string) *pb.ProcessResponse {
	d := &pb.ProcessResponse{Status: "ERROR", Error: msg}
	if ve := schemaIssues(err); ve != nil && grpcCode(err) == codes.InvalidArgument {
		for _, is := range ve.Issues {
			d.Errors = append(d.Errors, &pb.ValidationIssue{Path: is.Path, Message: is.Message})
		}
		d.Omitted = int32(ve.Omitted)
	}
	return d
}

// issuesFromDetail returns the violations a ProcessResponse detail of st
// lists, nil when it lists none.
func issuesFromDetail(st *status.Status) *validationError {
	for _, d := range st.Details() {
		pr, ok := d.(*pb.ProcessResponse)
		if !ok || len(pr.GetErrors()) == 0 {
			continue
		}
		ve := &validationError{Omitted: int(pr.GetOmitted())}
		for _, is := range pr.GetErrors() {
			ve.Issues = append(ve.Issues, validationIssue{Path: is.GetPath(), Message: is.GetMessage()})
		}
		return ve
	}
	return nil
}

// clientStatus is the status a client application gets from
// MainWorker.Process for err: the mapped code, the sentence a REST client
// would get (publicMessage), and a ProcessResponse detail with status
// "ERROR" and the same sentence, for clients that read those fields.
func clientStatus(err error, requestID string) error {
	msg := publicMessage(err, requestID)
	st := withReason(status.New(grpcCode(err), msg), err)
	if d, derr := st.WithDetails(errorDetail(err, msg)); derr == nil {
		st = d
	}
	return st.Err()
}
