package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
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

	// locks serialise storage access and cache fills for one entity
	// within this process, so a slow cache fill of an old value can never
	// overwrite the cache entry of a newer acknowledged write.
	locks keyLocks
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
// bounding patches by lim (the zero value is the defaults).
func newWorker(id string, st store, schemas *schemaRegistry, cache *lru[string, cachedEntity], lim budgets, log *slog.Logger) *worker {
	return &worker{id: id, st: st, schemas: schemas, cache: cache, lim: lim, log: log}
}

// setKeys installs the keyring built from the master key.
func (w *worker) setKeys(k *keyring) { w.keys.Store(k) }

// Process runs one entity operation. It implements processingWorker.
func (w *worker) Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	s := w.keys.Load()
	if s == nil {
		return nil, fmt.Errorf("process: worker has no master key yet: %w", errUnavailable)
	}
	op := req.GetOp()
	if err := validateDBName(op.GetDatabaseName()); err != nil {
		return nil, err
	}
	if err := validateEntityKey(op.GetEntityKey()); err != nil {
		return nil, err
	}
	w.observeEpoch(req.GetEpoch())
	owner := req.GetOwner()
	switch op.GetOperation() {
	case pb.Operation_GET:
		if !owner {
			return w.getUncached(ctx, s, op)
		}
		return w.get(ctx, s, op)
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

// cacheKey is the LRU key of an entity.
func cacheKey(db, key string) string { return db + "\x00" + key }

// get serves a read from the cache, or from storage on a miss.
func (w *worker) get(ctx context.Context, s *keyring, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if e, ok := w.cache.Get(cacheKey(db, key)); ok {
		return okResponse(e.doc, e.version), nil
	}
	// The same lock as lockEntity's in-process part.
	unlock, err := w.locks.lock(ctx, entityObjectKey(db, key))
	if err != nil {
		return nil, fmt.Errorf("get entity %s/%q: %w", db, key, err)
	}
	defer unlock()
	// A writer may have filled the cache while we waited for the lock.
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
func (w *worker) getUncached(ctx context.Context, s *keyring, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	e, err := w.load(ctx, s, op.GetDatabaseName(), op.GetEntityKey())
	if err != nil {
		return nil, err
	}
	return okResponse(e.doc, e.version), nil
}

// load reads and decrypts one entity from storage. A missing entity is a
// requestError naming it.
func (w *worker) load(ctx context.Context, s *keyring, db, key string) (cachedEntity, error) {
	sealed, rev, err := w.st.GetRev(ctx, entityObjectKey(db, key))
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
	return cachedEntity{doc: doc, version: hdr.etag(), rev: rev}, nil
}

// put seals and durably stores one entity, then caches it. The document
// was validated by the main worker, once for the whole request. Without
// preconditions it is a blind write; with If-Match or If-None-Match it
// checks them against the stored entity under the entity's lock,
// atomically with the write.
func (w *worker) put(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if err := s.prepare(ctx, db); err != nil {
		return nil, fmt.Errorf("put entity %s/%q: %w", db, key, err)
	}
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	doc := op.GetPayload()
	if !hasPreconditions(op) {
		e, err := w.store(ctx, s, op, owner, doc, "", false)
		if err != nil {
			return nil, err
		}
		return okResponse(nil, e.version), nil
	}
	e, err := w.readModifyWrite(ctx, s, op, owner, func(current) ([]byte, error) { return doc, nil })
	if err != nil {
		return nil, err
	}
	return okResponse(nil, e.version), nil
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
	if err := s.prepare(ctx, db); err != nil {
		return nil, fmt.Errorf("patch entity %s/%q: %w", db, key, err)
	}
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
	return okResponse(e.doc, e.version), nil
}

// delete removes one entity durably and evicts it. With preconditions it
// checks them first, under the entity's lock.
func (w *worker) delete(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if hasPreconditions(op) {
		cur, err := w.current(ctx, s, db, key, owner)
		if err != nil {
			return nil, err
		}
		if err := checkPreconditions(op, cur); err != nil {
			return nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
		}
	}
	w.cache.Remove(cacheKey(db, key))
	err = w.st.Delete(ctx, entityObjectKey(db, key))
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("delete entity %s/%q: %w: %w", db, key, err,
			reqErrorf(errNotFound, "entity %q not found in database %q", key, db))
	}
	if err != nil {
		return nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
	}
	return okResponse(nil, ""), nil
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
	if owner {
		w.cache.Add(cacheKey(db, key), e)
	} else {
		w.cache.Remove(cacheKey(db, key))
	}
	return e, nil
}

// stats returns the worker's cache counters.
func (w *worker) stats() cacheStats { return w.cache.Stats() }

// okResponse is the answer to a successful operation.
func okResponse(result []byte, version string) *pb.WorkerResponse {
	return &pb.WorkerResponse{Result: result, Version: version}
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
	// calls are the sequence numbers of the main worker's calls served
	// under callKey.
	calls seqWindow
}

// handledTrailer marks an error that came from a worker's handler, so the
// main worker can tell a worker's own error from a transport failure. Its
// value says what the status message is: handledSentence, a sentence the
// client may see, or handledInternal, a fixed sentence standing for a
// failure logged at the worker. It travels as a trailer of failed calls
// only, keeping successful calls free of metadata.
const (
	handledTrailer  = "x-deltadb-handled"
	handledSentence = "sentence"
	handledInternal = "internal"
)

// callSkew is how far a signed call's timestamp may be from the worker's
// clock.
const callSkew = 5 * time.Minute

// Process serves one call of the main worker.
func (s *workerServer) Process(ctx context.Context, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	sub := s.sub.Load()
	now := s.now()
	switch {
	case sub == nil:
		return nil, s.refuse(ctx, "worker is not subscribed to a main worker")
	case now.After(sub.expires):
		return nil, s.refuse(ctx, "worker token expired: subscribe again")
	case !verifyCall(sub.callKey, s.w.id, req, now):
		return nil, s.refuse(ctx, "call is not signed by the main worker")
	case !sub.calls.accept(req.GetSeq()):
		return nil, s.refuse(ctx, "call replayed: its sequence number was seen before")
	}
	ctx = withRequestID(ctx, req.GetRequestId())
	resp, err := s.w.Process(ctx, req)
	s.logCall(ctx, req, err, s.now().Sub(now))
	if err != nil {
		return nil, s.failure(ctx, err)
	}
	return resp, nil
}

// msgWorkerCall is the message of a worker's line per served call.
const msgWorkerCall = "worker request"

// logCall writes one debug line per served call, carrying the request ID
// (from ctx) that the main worker's access line has: the operation, the
// gRPC code and the time taken; never the database, key or document.
func (s *workerServer) logCall(ctx context.Context, req *pb.WorkerRequest, err error, took time.Duration) {
	if !s.w.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	code := codes.OK
	if err != nil {
		code = grpcCode(err)
	}
	s.w.log.LogAttrs(ctx, slog.LevelDebug, msgWorkerCall, slog.String(attrWorker, s.w.id),
		slog.String("op", req.GetOp().GetOperation().String()), slog.Bool("owner", req.GetOwner()),
		slog.String("code", code.String()), slog.Float64(attrDurationMS, durationMS(took)))
}

// refuse answers a call the worker does not accept from this caller.
func (s *workerServer) refuse(ctx context.Context, why string) error {
	grpc.SetTrailer(ctx, metadata.Pairs(handledTrailer, handledInternal))
	return status.Error(codes.Unauthenticated, why)
}

// failure turns the worker's error into the status the main worker gets:
// its code, and the client sentence it carries or, for an internal
// failure, a fixed sentence while the cause is logged here with the
// request ID. Paths, object keys and wrapped chains stay at the worker.
func (s *workerServer) failure(ctx context.Context, err error) error {
	md := metadata.Pairs(handledTrailer, handledSentence)
	if pe := (*preconditionError)(nil); errors.As(err, &pe) && pe.current != "" {
		md.Append(versionHeader, pe.current)
	}
	rid := requestIDFrom(ctx)
	msg := publicMessage(err, rid)
	if _, ok := clientMessage(err); !ok {
		md.Set(handledTrailer, handledInternal)
		s.w.log.ErrorContext(ctx, "process failed", attrWorker, s.w.id, attrErr, err)
	}
	grpc.SetTrailer(ctx, md)
	return status.Error(grpcCode(err), msg)
}

// clientStatus is the status a client application gets from
// MainWorker.Process for err: the mapped code, the sentence a REST client
// would get (publicMessage), and a ProcessResponse detail with status
// "ERROR" and the same sentence, for clients that read those fields.
func clientStatus(err error, requestID string) error {
	msg := publicMessage(err, requestID)
	st := status.New(grpcCode(err), msg)
	if d, derr := st.WithDetails(&pb.ProcessResponse{Status: "ERROR", Error: msg}); derr == nil {
		st = d
	}
	return st.Err()
}

// grpcServerOptions are the options of every gRPC server of ours: the
// -grpc-max-recv-msg-size limit, both ways.
func grpcServerOptions(maxMsg int) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)}
}

// grpcDialOptions are the options of every gRPC client connection of ours:
// creds (TLS on every cluster link, see cluster.go) and the message limit.
func grpcDialOptions(maxMsg int, creds grpccreds.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(creds),
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
	// join is the join token, ident this worker's TLS identity, pin where
	// the proven main worker's certificate is pinned for srv.
	join   []byte
	ident  *clusterIdentity
	pin    *pinnedMain
	log    *slog.Logger
	maxMsg int
	// now is the clock of renewals and of the sealer's headers.
	now func() time.Time
	// retry spaces failed subscription attempts.
	retry backoff
}

// subscribeBackoff spaces the attempts of a worker to subscribe.
var subscribeBackoff = backoff{base: 200 * time.Millisecond, max: 10 * time.Second, jitter: rand.Int64N}

// run subscribes and heartbeats until ctx ends.
func (s *subscriber) run(ctx context.Context) error {
	// Any certificate will do for Subscribe's handshake: the main worker
	// proves the join token over that very connection before anything it
	// says is used.
	conn, err := s.dial(anyPeer)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pb.NewMainWorkerClient(conn)
	failures := 0
	for ctx.Err() == nil {
		sub, err := s.subscribe(ctx, client)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			s.log.Warn("subscribe failed; retrying", attrAddr, s.mainAddr, attrErr, err, "attempt", failures)
			_ = s.retry.sleep(ctx, failures) // ctx's end stops the loop
			continue
		}
		failures = 0
		s.log.Info("subscribed", attrWorker, s.id, attrAddr, s.mainAddr, "expires", sub.expires.UTC().Format(time.RFC3339))
		// Heartbeats carry the worker token: they go only to the main
		// worker that proved the join token.
		hconn, err := s.dial(pinned(*s.pin.fp.Load()))
		if err != nil {
			return err
		}
		s.heartbeat(ctx, pb.NewMainWorkerClient(hconn), sub)
		hconn.Close()
	}
	return nil
}

// dial connects to the main worker over TLS, checking its certificate
// with pin.
func (s *subscriber) dial(pin func([32]byte) error) (*grpc.ClientConn, error) {
	creds := grpccreds.NewTLS(s.ident.tlsConfig(pin, false))
	conn, err := grpc.NewClient(s.mainAddr, grpcDialOptions(s.maxMsg, creds)...)
	if err != nil {
		return nil, fmt.Errorf("-main-addr %s: %w", s.mainAddr, err)
	}
	return conn, nil
}

// subscribe calls Subscribe, proving the join token, and installs the
// unwrapped keys once the main worker has proved it too.
func (s *subscriber) subscribe(ctx context.Context, client pb.MainWorkerClient) (*subscription, error) {
	pub, err := x509.MarshalPKIXPublicKey(&s.priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := client.Subscribe(cctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	exporter, mainFP, err := peerChannel(stream.Context())
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	req := &pb.SubscribeRequest{WorkerId: s.id, Pubkey: pub, CertSha256: s.ident.fp[:],
		Tags: map[string]string{"grpc_addr": s.advertise}}
	if req.Proof, err = workerProof(s.join, exporter, req); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := stream.Send(req); err != nil {
		return nil, fmt.Errorf("subscribe: send: %w", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	want, err := mainProof(s.join, exporter, mainFP, resp)
	if err != nil || !hmac.Equal(want, resp.GetProof()) {
		return nil, errors.New("subscribe: the main worker did not prove the join token; its answer and keys are ignored")
	}
	return s.install(resp, mainFP)
}

// peerChannel is the TLS exporter of a client stream's connection and the
// fingerprint of the server's certificate.
func peerChannel(ctx context.Context) ([]byte, [32]byte, error) {
	p, _ := peer.FromContext(ctx)
	var info grpccreds.TLSInfo
	if p != nil {
		info, _ = p.AuthInfo.(grpccreds.TLSInfo)
	}
	if len(info.State.PeerCertificates) == 0 {
		return nil, [32]byte{}, errors.New("connection to the main worker is not TLS")
	}
	exporter, err := channelBinding(info.State)
	return exporter, certFingerprint(info.State.PeerCertificates[0].Raw), err
}

// install unwraps the keys of a proven answer, builds the sealer, pins the
// main worker's certificate for its calls and makes the subscription
// current.
func (s *subscriber) install(resp *pb.SubscribeResponse, mainFP [32]byte) (*subscription, error) {
	master, err := unwrapKey(s.priv, resp.GetWrappedKey())
	if err != nil {
		return nil, fmt.Errorf("subscribe: unwrap master key: %w", err)
	}
	defer zero(master)
	callKey, err := unwrapKey(s.priv, resp.GetWrappedCallKey())
	if err != nil {
		return nil, fmt.Errorf("subscribe: unwrap call key: %w", err)
	}
	ring, err := newKeyring(s.srv.w.st, master, resp.GetKeyId())
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	ring.now = s.now
	// A fresh keyring has no data key cached: it is at the epoch at once.
	ring.epoch = resp.GetKeysEpoch()
	if w := resp.GetWrappedPreviousKey(); len(w) > 0 {
		prev, err := unwrapKey(s.priv, w)
		if err != nil {
			return nil, fmt.Errorf("subscribe: unwrap previous master key: %w", err)
		}
		err = ring.addPrevious(prev, resp.GetPreviousKeyId())
		zero(prev)
		if err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	s.srv.w.setKeys(ring)
	s.pin.fp.Store(&mainFP)
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
	now := s.now()
	renewAt := now.Add(sub.expires.Sub(now) * 4 / 5)
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
		if s.now().After(renewAt) {
			s.log.Info("renewing subscription before the token expires", attrWorker, s.id)
			return
		}
		st := s.srv.w.stats()
		ring := s.srv.w.keys.Load()
		cctx, cancel := context.WithTimeout(ctx, 2*sub.every)
		resp, err := client.Heartbeat(cctx, &pb.HeartbeatRequest{WorkerId: s.id, Token: sub.token,
			InFlight: s.srv.w.inFlight.Load(), Cache: &pb.CacheStats{Hits: st.Hits, Misses: st.Misses,
				Evictions: st.Evictions, Entries: int64(st.Entries), Capacity: int64(st.Capacity),
				Bytes: st.Bytes, MaxBytes: st.MaxBytes},
			KeysEpoch: ring.keysEpoch()})
		cancel()
		if err == nil {
			// Reported applied in the next heartbeat (rekey.go).
			ring.applyEpoch(resp.GetKeysEpoch())
		}
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
