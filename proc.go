package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"

	pb "deltadatabase/proto"
)

// processor runs one entity operation. The in-process worker of -role=all
// and the gRPC client of a remote worker both satisfy it, so the main
// worker's data path is the same for both. Errors wrap the sentinel errors
// of store.go.
type processor interface {
	Process(ctx context.Context, req *pb.ProcessRequest) (*pb.ProcessResponse, error)
}

// worker is a processing worker: it validates, seals and opens entities,
// reads and writes storage, and caches decrypted entities. It is safe for
// concurrent use. Its sealer is nil until the master key is known (a remote
// worker receives it on Subscribe).
type worker struct {
	id      string
	st      store
	schemas *schemaRegistry
	cache   *lru[string, cachedEntity]
	log     *slog.Logger

	sealer atomic.Pointer[sealer]
	// inFlight counts Process calls being served (for routing and
	// /admin/workers).
	inFlight atomic.Int64

	// epochMu guards epoch: the routing epoch the cache contents belong to.
	epochMu sync.Mutex
	epoch   uint64

	// stripes serialise storage access and cache fills for one entity
	// within this process, so a slow cache fill of an old value can never
	// overwrite the cache entry of a newer acknowledged write.
	stripes [256]sync.Mutex
	seed    maphash.Seed
}

// cachedEntity is one decrypted entity in the LRU.
type cachedEntity struct {
	doc     []byte
	version string
}

// newWorker returns a worker over st whose LRU holds cacheSize entities.
func newWorker(id string, st store, schemas *schemaRegistry, cache *lru[string, cachedEntity], log *slog.Logger) *worker {
	return &worker{id: id, st: st, schemas: schemas, cache: cache, log: log, seed: maphash.MakeSeed()}
}

// setSealer installs the sealer built from the master key.
func (w *worker) setSealer(s *sealer) { w.sealer.Store(s) }

// Process runs one entity operation. It implements processor.
func (w *worker) Process(ctx context.Context, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	s := w.sealer.Load()
	if s == nil {
		return nil, fmt.Errorf("process: worker has no master key yet: %w", errUnavailable)
	}
	if err := validateDBName(req.GetDatabaseName()); err != nil {
		return nil, err
	}
	if err := validateEntityKey(req.GetEntityKey()); err != nil {
		return nil, err
	}
	w.observeEpoch(req.GetEpoch())
	switch req.GetOperation() {
	case pb.Operation_GET:
		return w.get(ctx, s, req)
	case pb.Operation_PUT:
		return w.put(ctx, s, req)
	case pb.Operation_DELETE:
		return w.delete(ctx, req)
	default:
		return nil, fmt.Errorf("process: operation %v not supported: %w", req.GetOperation(), errInvalid)
	}
}

// observeEpoch drops the cache when the main worker's routing epoch is newer
// than the one the cache was filled under: while this worker did not own
// some entities, another worker may have written them (SPEC §5).
func (w *worker) observeEpoch(epoch uint64) {
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	if epoch > w.epoch {
		if w.epoch != 0 {
			w.cache.Purge()
		}
		w.epoch = epoch
	}
}

// stripe returns the mutex that serialises access to one entity.
func (w *worker) stripe(db, key string) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(w.seed)
	h.WriteString(db)
	h.WriteByte(0)
	h.WriteString(key)
	return &w.stripes[h.Sum64()%uint64(len(w.stripes))]
}

// cacheKey is the LRU key of an entity.
func cacheKey(db, key string) string { return db + "\x00" + key }

// get serves a read from the cache, or from storage on a miss.
func (w *worker) get(ctx context.Context, s *sealer, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	if e, ok := w.cache.Get(cacheKey(db, key)); ok {
		return okResponse(e.doc, e.version), nil
	}
	mu := w.stripe(db, key)
	mu.Lock()
	defer mu.Unlock()
	// A writer may have filled the cache while we waited for the stripe.
	if e, ok := w.cache.Peek(cacheKey(db, key)); ok {
		return okResponse(e.doc, e.version), nil
	}
	e, err := w.load(ctx, s, db, key)
	if err != nil {
		return nil, err
	}
	w.cache.Add(cacheKey(db, key), e)
	return okResponse(e.doc, e.version), nil
}

// load reads and decrypts one entity from storage.
func (w *worker) load(ctx context.Context, s *sealer, db, key string) (cachedEntity, error) {
	sealed, err := w.st.Get(ctx, entityObjectKey(db, key))
	if err != nil {
		return cachedEntity{}, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	doc, hdr, err := s.open(db, key, sealed)
	if err != nil {
		return cachedEntity{}, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	return cachedEntity{doc: doc, version: hdr.etag()}, nil
}

// put validates, seals and durably stores one entity, then caches it.
func (w *worker) put(ctx context.Context, s *sealer, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	doc, err := compactJSON(req.GetPayload())
	if err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	if id := req.GetSchemaId(); id != "" {
		if err := w.schemas.Validate(ctx, id, doc); err != nil {
			return nil, fmt.Errorf("put entity %s/%q: schema %s: %w", db, key, id, err)
		}
	}
	sealed, err := s.seal(db, key, doc)
	if err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	hdr, err := s.header(sealed)
	if err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	mu := w.stripe(db, key)
	mu.Lock()
	defer mu.Unlock()
	if err := w.st.Put(ctx, entityObjectKey(db, key), sealed); err != nil {
		// The stored state is unknown now; never serve a guess from cache.
		w.cache.Remove(cacheKey(db, key))
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	w.cache.Add(cacheKey(db, key), cachedEntity{doc: doc, version: hdr.etag()})
	return okResponse(nil, hdr.etag()), nil
}

// delete removes one entity durably and evicts it.
func (w *worker) delete(ctx context.Context, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	mu := w.stripe(db, key)
	mu.Lock()
	defer mu.Unlock()
	w.cache.Remove(cacheKey(db, key))
	if err := w.st.Delete(ctx, entityObjectKey(db, key)); err != nil {
		return nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
	}
	return okResponse(nil, ""), nil
}

// stats returns the worker's cache counters.
func (w *worker) stats() cacheStats { return w.cache.Stats() }

// okResponse is the answer to a successful operation.
func okResponse(result []byte, version string) *pb.ProcessResponse {
	return &pb.ProcessResponse{Status: "OK", Result: result, Version: version}
}

// compactJSON checks that b is one JSON value and returns it without
// insignificant whitespace.
func compactJSON(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("document is not valid JSON: %v: %w", err, errInvalid)
	}
	if buf.Len() == 0 {
		return nil, fmt.Errorf("document is empty: %w", errInvalid)
	}
	return buf.Bytes(), nil
}
