package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

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
	version string // the entity's ETag value (envelopeHeader.etag)
	// rev is the storage revision of the stored envelope (store.GetRev),
	// "" if unknown (after a plain Put); a conditional write then reads
	// storage first.
	rev string
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
		if !req.GetOwner() {
			return w.getUncached(ctx, s, req)
		}
		return w.get(ctx, s, req)
	case pb.Operation_PUT:
		return w.put(ctx, s, req)
	case pb.Operation_PATCH:
		return w.patch(ctx, s, req)
	case pb.Operation_DELETE:
		return w.delete(ctx, s, req)
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

// getUncached serves a read for an entity this worker does not own (the
// owner was saturated): straight from storage, leaving the cache alone, so
// that nothing here can go stale while the owner takes the writes.
func (w *worker) getUncached(ctx context.Context, s *sealer, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	e, err := w.load(ctx, s, req.GetDatabaseName(), req.GetEntityKey())
	if err != nil {
		return nil, err
	}
	return okResponse(e.doc, e.version), nil
}

// load reads and decrypts one entity from storage.
func (w *worker) load(ctx context.Context, s *sealer, db, key string) (cachedEntity, error) {
	sealed, rev, err := w.st.GetRev(ctx, entityObjectKey(db, key))
	if err != nil {
		return cachedEntity{}, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	doc, hdr, err := s.open(db, key, sealed)
	if err != nil {
		return cachedEntity{}, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	return cachedEntity{doc: doc, version: hdr.etag(), rev: rev}, nil
}

// put validates, seals and durably stores one entity, then caches it.
// Without preconditions it is a blind write; with If-Match or
// If-None-Match it checks them against the stored entity under the
// entity's lock, atomically with the write.
func (w *worker) put(ctx context.Context, s *sealer, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	doc, err := compactJSON(req.GetPayload())
	if err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	ids, err := schemasFor(ctx, w.st, db, req.GetSchemaId())
	if err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	if err := validateDoc(ctx, w.schemas, ids, doc); err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !hasPreconditions(req) {
		e, err := w.store(ctx, s, req, doc, "", false)
		if err != nil {
			return nil, err
		}
		return okResponse(nil, e.version), nil
	}
	e, err := w.readModifyWrite(ctx, s, req, func(current) ([]byte, error) { return doc, nil })
	if err != nil {
		return nil, err
	}
	return okResponse(nil, e.version), nil
}

// patch applies a merge patch or JSON Patch (req.ContentType) to the
// stored entity under its lock, validates the result against the
// database's bound schema and req.SchemaId, stores it durably and answers
// the new document. A missing entity is errNotFound: PATCH never creates.
func (w *worker) patch(ctx context.Context, s *sealer, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	db, key, ct := req.GetDatabaseName(), req.GetEntityKey(), req.GetContentType()
	if ct != mergePatchType && ct != jsonPatchType {
		return nil, fmt.Errorf("patch entity %s/%q: content type %q is not %s or %s: %w",
			db, key, ct, mergePatchType, jsonPatchType, errInvalid)
	}
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e, err := w.readModifyWrite(ctx, s, req, func(cur current) ([]byte, error) {
		if !cur.exists {
			return nil, fmt.Errorf("patch entity %s/%q: %w", db, key, errNotFound)
		}
		doc, err := applyPatch(ct, cur.doc, req.GetPayload())
		if err != nil {
			return nil, fmt.Errorf("patch entity %s/%q: %w", db, key, err)
		}
		ids, err := schemasFor(ctx, w.st, db, req.GetSchemaId())
		if err == nil {
			err = validateDoc(ctx, w.schemas, ids, doc)
		}
		if err != nil {
			return nil, fmt.Errorf("patch entity %s/%q: %w", db, key, err)
		}
		return doc, nil
	})
	if err != nil {
		return nil, err
	}
	return okResponse(e.doc, e.version), nil
}

// delete removes one entity durably and evicts it. With preconditions it
// checks them first, under the entity's lock.
func (w *worker) delete(ctx context.Context, s *sealer, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if hasPreconditions(req) {
		cur, err := w.current(ctx, s, db, key, req.GetOwner())
		if err != nil {
			return nil, err
		}
		if err := checkPreconditions(req, cur); err != nil {
			return nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
		}
	}
	w.cache.Remove(cacheKey(db, key))
	if err := w.st.Delete(ctx, entityObjectKey(db, key)); err != nil {
		return nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
	}
	return okResponse(nil, ""), nil
}

// lockEntity takes the entity's stripe and then its storage lock, which
// on the filesystem also excludes writers in other processes. The
// returned function releases both.
func (w *worker) lockEntity(ctx context.Context, db, key string) (func(), error) {
	mu := w.stripe(db, key)
	mu.Lock()
	unlock, err := w.st.Lock(ctx, entityObjectKey(db, key))
	if err != nil {
		mu.Unlock()
		return nil, fmt.Errorf("lock entity %s/%q: %w", db, key, err)
	}
	return func() { unlock(); mu.Unlock() }, nil
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
func (w *worker) current(ctx context.Context, s *sealer, db, key string, useCache bool) (current, error) {
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

// readModifyWrite reads the entity, checks req's preconditions, lets next
// compute the new document from it and stores that with PutIf on the
// revision read. The caller holds the entity's lock, which excludes every
// writer in this process (and, on the filesystem, in others); PutIf
// catches the rest (S3 while ownership moves between workers), in which
// case it reads again and starts over.
func (w *worker) readModifyWrite(ctx context.Context, s *sealer, req *pb.ProcessRequest,
	next func(current) ([]byte, error)) (cachedEntity, error) {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	for attempt := 1; ; attempt++ {
		cur, err := w.current(ctx, s, db, key, req.GetOwner() && attempt == 1)
		if err != nil {
			return cachedEntity{}, err
		}
		if err := checkPreconditions(req, cur); err != nil {
			return cachedEntity{}, fmt.Errorf("write entity %s/%q: %w", db, key, err)
		}
		doc, err := next(cur)
		if err != nil {
			return cachedEntity{}, err
		}
		e, err := w.store(ctx, s, req, doc, cur.rev, true)
		if errors.Is(err, errPrecondition) && attempt < maxWriteAttempts {
			w.log.Warn("entity changed by another process during a write; retrying", attrDB, db)
			continue
		}
		return e, err
	}
}

// store seals doc and writes it: with PutIf on rev when conditional, else
// with a plain Put. The owner caches the result; anyone else evicts.
func (w *worker) store(ctx context.Context, s *sealer, req *pb.ProcessRequest, doc []byte, rev string, conditional bool) (cachedEntity, error) {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	sealed, err := s.seal(db, key, doc)
	if err != nil {
		return cachedEntity{}, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	hdr, err := s.header(sealed)
	if err != nil {
		return cachedEntity{}, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	e := cachedEntity{doc: doc, version: hdr.etag()}
	if conditional {
		e.rev, err = w.st.PutIf(ctx, entityObjectKey(db, key), sealed, rev)
	} else {
		err = w.st.Put(ctx, entityObjectKey(db, key), sealed)
	}
	if err != nil {
		// The stored state is unknown now; never serve a guess from cache.
		w.cache.Remove(cacheKey(db, key))
		return cachedEntity{}, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	if req.GetOwner() {
		w.cache.Add(cacheKey(db, key), e)
	} else {
		w.cache.Remove(cacheKey(db, key))
	}
	return e, nil
}

// hasPreconditions reports whether req carries If-Match or If-None-Match.
func hasPreconditions(req *pb.ProcessRequest) bool {
	return req.GetIfMatch() != "" || req.GetIfNoneMatch() != ""
}

// checkPreconditions evaluates If-Match and If-None-Match (ETag values
// without quotes, comma-separated, or "*") against the entity's current
// state, as RFC 9110 section 13.1 does for a write: If-Match holds if the
// entity exists and ("*" or) its version is listed; If-None-Match holds if
// it does not exist or ("*" aside) its version is not listed.
func checkPreconditions(req *pb.ProcessRequest, cur current) error {
	db, key := req.GetDatabaseName(), req.GetEntityKey()
	if m := req.GetIfMatch(); m != "" {
		if !cur.exists {
			return &preconditionError{msg: fmt.Sprintf("If-Match: entity %q does not exist in database %q", key, db)}
		}
		if m != "*" && !slices.Contains(strings.Split(m, ","), cur.version) {
			return &preconditionError{msg: fmt.Sprintf("If-Match: entity %q in database %q has version %q", key, db, cur.version), current: cur.version}
		}
	}
	if n := req.GetIfNoneMatch(); n != "" && cur.exists {
		if n == "*" || slices.Contains(strings.Split(n, ","), cur.version) {
			return &preconditionError{msg: fmt.Sprintf("If-None-Match: entity %q in database %q exists with version %q", key, db, cur.version), current: cur.version}
		}
	}
	return nil
}

// preconditionError is a failed If-Match or If-None-Match (412). It
// carries the entity's current version ("" if it does not exist) so that
// the answer can send it as ETag; across gRPC it travels in the
// versionHeader metadata. Its message is the client's sentence.
type preconditionError struct {
	msg     string
	current string
}

func (e *preconditionError) Error() string { return e.msg }
func (e *preconditionError) Unwrap() error { return &requestError{msg: e.msg, kind: errPrecondition} }

// versionHeader carries a preconditionError's current version from a
// remote worker to the main worker.
const versionHeader = "x-deltadb-version"

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

// workerServer serves ProcessingWorker over gRPC for a remote worker. Only
// calls signed with the call key of the worker's current subscription are
// served; without one (never subscribed, or the worker token expired) every
// call is Unauthenticated.
type workerServer struct {
	pb.UnimplementedProcessingWorkerServer
	w   *worker
	now func() time.Time
	sub atomic.Pointer[subscription]
}

// subscription is what a worker holds from its last Subscribe.
type subscription struct {
	token   string
	callKey []byte
	expires time.Time
	epoch   uint64
	every   time.Duration
}

// handledTrailer marks an error that came from a worker's handler, so the
// main worker can tell a worker's own error from a transport failure. It
// travels as a trailer of failed calls only, keeping successful calls
// free of metadata.
const handledTrailer = "x-deltadb-handled"

// callSkew is how far a signed call's timestamp may be from the worker's
// clock.
const callSkew = 5 * time.Minute

// Process serves one call of the main worker.
func (s *workerServer) Process(ctx context.Context, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	sub := s.sub.Load()
	now := s.now()
	switch {
	case sub == nil:
		return nil, handledError(ctx, status.Error(codes.Unauthenticated, "worker is not subscribed to a main worker"))
	case now.After(sub.expires):
		return nil, handledError(ctx, status.Error(codes.Unauthenticated, "worker token expired: subscribe again"))
	case !verifyCall(sub.callKey, s.w.id, req, now):
		return nil, handledError(ctx, status.Error(codes.Unauthenticated, "call is not signed by the main worker"))
	}
	resp, err := s.w.Process(ctx, req)
	if err != nil {
		if pe := (*preconditionError)(nil); errors.As(err, &pe) && pe.current != "" {
			grpc.SetTrailer(ctx, metadata.Pairs(versionHeader, pe.current))
		}
		return nil, handledError(ctx, grpcStatus(err))
	}
	return resp, nil
}

// handledError marks err as the worker's own answer (see handledTrailer).
func handledError(ctx context.Context, err error) error {
	grpc.SetTrailer(ctx, metadata.Pairs(handledTrailer, "1"))
	return err
}

// signCall returns the main worker's signature of req for worker id:
// HMAC-SHA256 under the call key handed to that worker on Subscribe, over
// every field that changes what the call does.
func signCall(callKey []byte, workerID string, req *pb.ProcessRequest) string {
	m := hmac.New(sha256.New, callKey)
	payload := sha256.Sum256(req.GetPayload())
	// Every field is length-prefixed, so no two different calls sign the
	// same bytes.
	b := make([]byte, 0, 256)
	for _, f := range []string{workerID, req.GetDatabaseName(), req.GetEntityKey(), req.GetSchemaId(),
		req.GetIfMatch(), req.GetIfNoneMatch(), req.GetContentType()} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(req.GetIssuedAtUnixNano()))
	b = binary.BigEndian.AppendUint64(b, req.GetEpoch())
	b = binary.BigEndian.AppendUint32(b, uint32(req.GetOperation()))
	if req.GetOwner() {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	m.Write(b)
	m.Write(payload[:])
	return hex.EncodeToString(m.Sum(nil))
}

// verifyCall checks a call's signature (in constant time) and freshness.
func verifyCall(callKey []byte, workerID string, req *pb.ProcessRequest, now time.Time) bool {
	issued := time.Unix(0, req.GetIssuedAtUnixNano())
	if d := now.Sub(issued); d > callSkew || d < -callSkew {
		return false
	}
	want := signCall(callKey, workerID, req)
	return hmac.Equal([]byte(want), []byte(req.GetToken()))
}

// remoteWorker is the main worker's processor for a worker over gRPC.
type remoteWorker struct {
	id      string
	client  pb.ProcessingWorkerClient
	callKey []byte
	now     func() time.Time
}

// Process signs req and sends it. It implements processor.
func (r *remoteWorker) Process(ctx context.Context, req *pb.ProcessRequest) (*pb.ProcessResponse, error) {
	req.IssuedAtUnixNano = r.now().UnixNano()
	req.Token = signCall(r.callKey, r.id, req)
	var tr metadata.MD
	resp, err := r.client.Process(ctx, req, grpc.Trailer(&tr))
	if err == nil {
		return resp, nil
	}
	if len(tr.Get(handledTrailer)) == 0 && status.Code(err) == codes.Unavailable {
		return nil, fmt.Errorf("worker %s: %s: %w: %w", r.id, status.Convert(err).Message(), errTransport, errUnavailable)
	}
	if status.Code(err) == codes.Unauthenticated {
		// The worker does not accept this main worker's signature (its
		// subscription expired or was replaced): a server-side fault that
		// another worker can serve, never the client's credential.
		return nil, fmt.Errorf("worker %s refused the call: %s: %w: %w", r.id, status.Convert(err).Message(), errTransport, errUnavailable)
	}
	err = fmt.Errorf("worker %s: %w", r.id, errorFromStatus(err))
	if v := tr.Get(versionHeader); len(v) > 0 && errors.Is(err, errPrecondition) {
		return nil, &preconditionError{msg: err.Error(), current: v[0]}
	}
	return nil, err
}

// grpcCodes pairs each sentinel error with its gRPC code: the one place
// where the two meet. grpcStatus takes the first sentinel that matches an
// error; errorFromStatus the first code that matches a status.
var grpcCodes = []struct {
	err  error
	code codes.Code
}{
	{errUnauthenticated, codes.Unauthenticated},
	{errForbidden, codes.PermissionDenied},
	{errTooLarge, codes.ResourceExhausted},
	{errRateLimited, codes.ResourceExhausted},
	{errInvalid, codes.InvalidArgument},
	{errNotFound, codes.NotFound},
	{errPrecondition, codes.FailedPrecondition},
	{errPatchConflict, codes.Aborted},
	{errUnavailable, codes.Unavailable},
	{errUnavailable, codes.DeadlineExceeded},
	{errCorrupt, codes.DataLoss},
}

// grpcStatus maps an error to a gRPC status (Internal when no sentinel
// matches).
func grpcStatus(err error) error {
	for _, m := range grpcCodes {
		if errors.Is(err, m.err) {
			return status.Error(m.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// errorFromStatus turns a gRPC error back into the sentinel error its code
// stands for, keeping the worker's message.
func errorFromStatus(err error) error {
	st := status.Convert(err)
	for _, m := range grpcCodes {
		if st.Code() == m.code {
			return &remoteError{msg: st.Message(), sentinel: m.err}
		}
	}
	return errors.New(st.Message())
}

// remoteError is an error a worker returned, with its sentinel restored.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// runProc runs a processing worker: it serves ProcessingWorker on
// -grpc-addr and keeps a subscription to the main worker at -main-addr,
// from which it receives the master key.
func runProc(ctx context.Context, cfg config, log *slog.Logger) error {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	id := workerIDOrHost(cfg.workerID)
	if err := validateDBName(id); err != nil {
		return fmt.Errorf("-worker-id: %w", err)
	}
	w := newWorker(id, st, newSchemaRegistry(st), newLRU[string, cachedEntity](cfg.cacheSize, cfg.cacheTTL, time.Now), log)
	srv := &workerServer{w: w, now: time.Now}
	addr := cmp.Or(cfg.grpcAddr, "127.0.0.1:0")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-grpc-addr: listen %s: %w", addr, err)
	}
	gs := grpc.NewServer(grpcServerOptions(cfg.grpcMaxRecv)...)
	pb.RegisterProcessingWorkerServer(gs, srv)
	go gs.Serve(ln)
	defer stopGRPC(gs)
	log.Info("worker listening", attrWorker, id, attrAddr, ln.Addr().String())
	// The key pair lives only in memory; 2048-bit RSA-OAEP keeps start-up
	// fast and is enough to wrap a 256-bit key.
	priv, err := rsa.GenerateKey(cryptoRand, 2048)
	if err != nil {
		return fmt.Errorf("generate worker key pair: %w", err)
	}
	sub := &subscriber{id: id, mainAddr: cfg.mainAddr, advertise: ln.Addr().String(), priv: priv, srv: srv,
		log: log, maxMsg: cfg.grpcMaxRecv}
	err = sub.run(ctx)
	// Forget the keys: the sealer is dropped and the call key zeroed.
	w.sealer.Store(nil)
	if old := srv.sub.Swap(nil); old != nil {
		zero(old.callKey)
	}
	return err
}

// grpcServerOptions are the options of every gRPC server of ours: the
// -grpc-max-recv-msg-size limit, both ways.
func grpcServerOptions(maxMsg int) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)}
}

// grpcDialOptions are the options of every gRPC client connection of ours.
// The connections between workers are plaintext (see README, Several
// workers).
func grpcDialOptions(maxMsg int) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg))}
}

// stopGRPC stops a gRPC server gracefully, forcing it after 10 s.
func stopGRPC(gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		gs.Stop()
	}
}

// subscriber keeps a worker subscribed to the main worker: subscribe with
// backoff, heartbeat, renew before the token expires, and subscribe again
// when the main worker restarts or forgets the worker.
type subscriber struct {
	id        string
	mainAddr  string
	advertise string
	priv      *rsa.PrivateKey
	srv       *workerServer
	log       *slog.Logger
	maxMsg    int
}

// Subscription backoff bounds.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// run subscribes and heartbeats until ctx ends.
func (s *subscriber) run(ctx context.Context) error {
	conn, err := grpc.NewClient(s.mainAddr, grpcDialOptions(s.maxMsg)...)
	if err != nil {
		return fmt.Errorf("-main-addr %s: %w", s.mainAddr, err)
	}
	defer conn.Close()
	client := pb.NewMainWorkerClient(conn)
	backoff := minBackoff
	for ctx.Err() == nil {
		sub, err := s.subscribe(ctx, client)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			s.log.Warn("subscribe failed; retrying", attrAddr, s.mainAddr, attrErr, err, "retry_in", wait.Round(time.Millisecond))
			sleepCtx(ctx, wait)
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		s.log.Info("subscribed", attrWorker, s.id, attrAddr, s.mainAddr, "expires", sub.expires.UTC().Format(time.RFC3339))
		s.heartbeat(ctx, client, sub)
	}
	return nil
}

// subscribe calls Subscribe and installs the unwrapped keys.
func (s *subscriber) subscribe(ctx context.Context, client pb.MainWorkerClient) (*subscription, error) {
	pub, err := x509.MarshalPKIXPublicKey(&s.priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := client.Subscribe(cctx, &pb.SubscribeRequest{WorkerId: s.id, Pubkey: pub,
		Tags: map[string]string{"grpc_addr": s.advertise}})
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	master, err := unwrapKey(s.priv, resp.GetWrappedKey())
	if err != nil {
		return nil, fmt.Errorf("subscribe: unwrap master key: %w", err)
	}
	defer zero(master)
	callKey, err := unwrapKey(s.priv, resp.GetWrappedCallKey())
	if err != nil {
		return nil, fmt.Errorf("subscribe: unwrap call key: %w", err)
	}
	seal, err := newSealer(master, resp.GetKeyId(), cryptoRand, time.Now)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	s.srv.w.setSealer(seal)
	sub := &subscription{token: resp.GetToken(), callKey: callKey, expires: time.Unix(resp.GetExpiresAtUnix(), 0),
		epoch: resp.GetEpoch(), every: time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond}
	if sub.every <= 0 {
		sub.every = time.Second
	}
	if old := s.srv.sub.Swap(sub); old != nil {
		zero(old.callKey)
	}
	return sub, nil
}

// heartbeat reports liveness until the subscription must be renewed, the
// main worker asks for a new subscription, or it stops answering.
func (s *subscriber) heartbeat(ctx context.Context, client pb.MainWorkerClient, sub *subscription) {
	renewAt := time.Now().Add(time.Until(sub.expires) * 4 / 5)
	t := time.NewTicker(sub.every)
	defer t.Stop()
	failures := 0
	// The first heartbeat goes at once: it makes the worker Available.
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if time.Now().After(renewAt) {
			s.log.Info("renewing subscription before the token expires", attrWorker, s.id)
			return
		}
		st := s.srv.w.stats()
		cctx, cancel := context.WithTimeout(ctx, 2*sub.every)
		resp, err := client.Heartbeat(cctx, &pb.HeartbeatRequest{WorkerId: s.id, Token: sub.token,
			InFlight: s.srv.w.inFlight.Load(), Cache: &pb.CacheStats{Hits: st.Hits, Misses: st.Misses,
				Evictions: st.Evictions, Entries: int64(st.Entries), Capacity: int64(st.Capacity)}})
		cancel()
		switch {
		case err != nil:
			if failures++; failures >= 3 {
				s.log.Warn("main worker not answering heartbeats; subscribing again", attrAddr, s.mainAddr, attrErr, err)
				return
			}
		case resp.GetResubscribe():
			s.log.Info("main worker asks for a new subscription", attrAddr, s.mainAddr)
			return
		default:
			failures = 0
		}
	}
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
