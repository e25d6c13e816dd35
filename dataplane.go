package main

// The data plane: the one path of every entity and database operation of
// the main worker. The REST handlers (entities.go, databases.go,
// schemas.go) and gRPC Process (mainworker.go) are front ends: they turn
// their request into a call here and its answer or error into their
// status and body. Everything a write must go through is here, once:
// names, budgets, the schemas a database is bound to, one validation and
// compaction of each document, preconditions, routing of single and batch
// writes, and what a principal may see of the answer. Its operations on
// several entities at once (PUT, the read of many keys) are in batch.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "deltadatabase/proto"
)

// dataPlane runs entity and database operations for both front ends. The
// caller has authenticated and authorized the principal for the
// operation's permission and database; the data plane checks everything
// else. It is safe for concurrent use; newDataPlane builds it.
type dataPlane struct {
	proc    processor
	catalog *catalog
	schemas *schemaRegistry
	// lim are the request budgets; the zero value is the defaults.
	lim budgets
	// reads holds the documents read for answers and not yet sent
	// (lim.inflightRead()).
	reads *byteBudget
	// late is the overdue half of reads (lim.readShare()): the room that
	// the reads waiting longer than overdueAfter for their worker's
	// answer may hold together (watchRead).
	late *byteBudget
	// overdueAfter is how long a read waits for its worker's answer
	// before it is overdue: readOverdue (tests shorten it).
	overdueAfter time.Duration
	// roomWait is how long a read waits for room in reads before the
	// busy 503: callWait (tests shorten it).
	roomWait time.Duration
	// bindMu serialises, within this process, a binding's check that its
	// schema exists and its write with a schema deletion's check that no
	// database is bound to it and the deletion. Only bind and deleteSchema
	// take it.
	bindMu sync.Mutex
	// feed is the change feed; nil keeps none (S3, tests).
	feed *changeFeed
	// sortWait is held by the one sorted query that waits for more room
	// in reads for the matches it keeps (findRun.growRoom): queries
	// waiting for room while they hold some could each wait for the
	// others' room, so the others that find none free are refused.
	sortWait sync.Mutex
}

// newDataPlane returns the data plane routing through proc (the router)
// over cat and schemas, keeping the budgets lim.
func newDataPlane(proc processor, cat *catalog, schemas *schemaRegistry, lim budgets) *dataPlane {
	return &dataPlane{proc: proc, catalog: cat, schemas: schemas, lim: lim, reads: newByteBudget(lim.inflightRead()),
		late: newByteBudget(lim.readShare()), overdueAfter: readOverdue, roomWait: callWait}
}

// permissionFor is the permission an entity operation needs: read for a
// GET, write for the rest. Both front ends authorize with it.
func permissionFor(op pb.Operation) perm {
	if op == pb.Operation_GET {
		return permRead
	}
	return permWrite
}

// process runs one entity operation of any kind for p: gRPC Process's
// entry. schemaID is the schema to validate against besides the binding
// ("" for none).
func (d *dataPlane) process(ctx context.Context, p principal, schemaID string, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	op.Principal = principalName(p)
	switch op.GetOperation() {
	case pb.Operation_GET:
		// Held until the answer goes to gRPC, which sends it.
		resp, held, err := d.get(ctx, op.GetDatabaseName(), op.GetEntityKey(), nil)
		if err != nil {
			return nil, err
		}
		held.release()
		return resp, nil
	case pb.Operation_PUT:
		resps, err := d.put(ctx, schemaID, []*pb.EntityOp{op}, nil)
		if err != nil {
			return nil, err
		}
		return resps[0], nil
	case pb.Operation_PATCH:
		return d.patch(ctx, p, schemaID, op)
	case pb.Operation_DELETE:
		return d.delete(ctx, op)
	default:
		return nil, reqErrorf(errInvalid, "operation %v is not supported", op.GetOperation())
	}
}

// entityDoc is one document of a PUT: its entity key and the document as
// sent, or as stored once checked.
type entityDoc struct {
	key string
	doc json.RawMessage
	// scan is what splitEntityBody learned of doc.
	scan docScan
}

// docScan is what is known of a PUT's document before the data plane
// checks it (dataPlane.document).
type docScan uint8

const (
	// docUnscanned: nothing; every check runs (a gRPC or import payload, a
	// REST body split the slow way).
	docUnscanned docScan = iota
	// docCompact: valid JSON without insignificant whitespace, a member
	// of a REST body whose text was checked whole (readEntitiesBody).
	docCompact
	// docSpaced: the same, with insignificant whitespace.
	docSpaced
)

// checkTarget checks the names of an entity operation.
func checkTarget(db, key string) error {
	if err := validateDBName(db); err != nil {
		return err
	}
	return validateEntityKey(key)
}

// checkSchemaID checks an explicit schema ID, "" meaning none.
func checkSchemaID(id string) error {
	if id == "" {
		return nil
	}
	return validateSchemaID(id)
}

// get reads entity key of db: its document (Result) and version, held in
// the in-flight read budget until the caller, having sent it, calls
// held.release. into, when not nil, is a zero response the answer may be
// written in (readHeld).
func (d *dataPlane) get(ctx context.Context, db, key string, into *pb.WorkerResponse) (resp *pb.WorkerResponse, held heldRead, err error) {
	if err := checkTarget(db, key); err != nil {
		return nil, heldRead{}, err
	}
	resp, held, err = d.readHeld(ctx, db, key, into)
	if err != nil {
		return nil, heldRead{}, entityError(err, db, key)
	}
	return resp, held, nil
}

// heldRead is the room a document read for an answer holds in the
// in-flight read budget until release gives it back, once the answer is
// sent. A value, not a closure, so that a read allocates nothing for it;
// the zero heldRead holds nothing.
type heldRead struct {
	budget *byteBudget
	n      int64
}

// release gives the room back; call it once.
func (h heldRead) release() {
	if h.budget != nil {
		h.budget.release(h.n)
	}
}

// readHeld reads entity key of db for an answer within the in-flight read
// budget (-max-inflight-read-bytes): it takes room for the largest
// document before the read (holdRead), so that reads waiting for room hold
// no memory, keeps the document's own size once read, and returns that
// room, to be released once the document is sent. When proc is a
// cachedReader (the router), a hit of the in-process worker's cache is
// answered without building a call, in into when not nil (a zero
// response).
func (d *dataPlane) readHeld(ctx context.Context, db, key string, into *pb.WorkerResponse) (*pb.WorkerResponse, heldRead, error) {
	room, err := d.holdRead(ctx, db, key)
	if err != nil {
		return nil, heldRead{}, err
	}
	var resp *pb.WorkerResponse
	ok := false
	if cr, can := d.proc.(cachedReader); can {
		resp, ok = cr.cachedRead(ctx, db, key, room.at, into)
	}
	if !ok {
		resp, err = d.watchRead(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET}, &room)
	}
	return d.keepRead(resp, room, err)
}

// readHeldOp is readHeld of any read op (an entity, a version of it).
func (d *dataPlane) readHeldOp(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, heldRead, error) {
	room, err := d.holdRead(ctx, op.GetDatabaseName(), op.GetEntityKey())
	if err != nil {
		return nil, heldRead{}, err
	}
	resp, err := d.watchRead(ctx, op, &room)
	return d.keepRead(resp, room, err)
}

// read sends read op, for which room is held, through Process, or
// through the readSharer's readAt where holdRead placed its entity.
func (d *dataPlane) read(ctx context.Context, op *pb.EntityOp, room readRoom) (*pb.WorkerResponse, error) {
	if room.at.owner != nil {
		if rs, ok := d.proc.(readSharer); ok {
			return rs.readAt(ctx, op, room.at)
		}
	}
	return d.proc.Process(ctx, op)
}

// readRoom is the room a read holds while it waits for its answer: n
// bytes of the read budget and, when its entity's owner has a share of
// the budget (readSharer), as many of that share, and of the overdue
// half once late (watchRead); at is where the readSharer placed the
// entity.
type readRoom struct {
	share *workerShare
	n     int64
	at    readPlace
	late  bool
}

// readSharer is a processor whose workers each have a share of the read
// budget (the router: readShare, readAt).
type readSharer interface {
	// readShare returns the share of the owner of entity key of db, of
	// capacity bytes (nil when that owner is the only worker), and
	// where it placed the entity.
	readShare(db, key string, capacity int64) (*workerShare, readPlace)
	// readAt is Process of a read op whose entity readShare placed at
	// at: the owner is not looked for again while at holds.
	readAt(ctx context.Context, op *pb.EntityOp, at readPlace) (*pb.WorkerResponse, error)
}

// holdRead takes room in the read budget for the largest document before
// a read of entity key of db, so that reads waiting for room hold no
// memory. With several workers it first takes as much of the entity's
// owner's share, so that the reads waiting at an owner that stopped
// answering hold half the budget at most, and the others go on; a read
// waiting for room there holds nothing of the budget. A read of an
// owner that has answered nothing since one of its reads was overdue
// (workerShare.stuck) takes as much of the overdue half once it is in
// the share, as an overdue read does (watchRead), so that stalled
// owners, however many, hold half the budget at most together. The
// waits for the share and the overdue half last callWait at most
// together, the wait for the budget as long, as the call itself does:
// then 503, errWorkerSlow in the share and the overdue half (its
// worker's other reads got no answer), errBusy in the budget (the server
// is only busy). A wait ctx ended fails with ctx's error only: the
// client went away, and is not told the server is busy.
func (d *dataPlane) holdRead(ctx context.Context, db, key string) (readRoom, error) {
	room := readRoom{n: d.lim.document()}
	if rs, ok := d.proc.(readSharer); ok {
		room.share, room.at = rs.readShare(db, key, d.lim.readShare())
	}
	if room.share != nil {
		start := time.Now()
		if err := room.share.acquireWithin(ctx, room.n, callWait, errWorkerSlow); err != nil {
			return readRoom{}, fmt.Errorf("read entity %q of %s: its worker's share: %w", key, db, err)
		}
		// Looked at once in the share: a read that waited there while
		// its worker became stuck must not come in as if it answered.
		if room.share.stuck.Load() {
			wait := max(callWait-time.Since(start), time.Millisecond)
			if err := d.late.acquireWithin(ctx, room.n, wait, errWorkerSlow); err != nil {
				room.share.release(room.n)
				return readRoom{}, fmt.Errorf("read entity %q of %s: the overdue half, its worker having answered nothing for %v: %w",
					key, db, d.overdueAfter, err)
			}
			room.late = true
		}
	}
	if err := d.reads.acquireWithin(ctx, room.n, d.roomWait, errBusy); err != nil {
		room.free(d)
		return readRoom{}, fmt.Errorf("read entity %q of %s: %w", key, db, err)
	}
	return room, nil
}

// free gives back room's share and overdue half: the answer is in.
func (room readRoom) free(d *dataPlane) {
	if room.share != nil {
		room.share.release(room.n)
	}
	if room.late {
		d.late.release(room.n)
	}
}

// readOverdue is how long a read waits for its worker's answer before it
// is overdue (watchRead): a fifth of callWait, far longer than a read of
// a worker that answers takes.
const readOverdue = callWait / 5

// Where an overdue watch (watchRead) stands.
const (
	watchWaiting = int32(iota)
	watchAnswered
	watchLate
	watchEvicted
)

// watchRead is read of op, for which room is held, watched for its
// worker's answer when the worker has a share of the budget: a read
// that waits overdueAfter for it is overdue and marks its worker stuck
// (its next reads take room in the overdue half first, holdRead) until
// the worker answers a read again. The overdue read takes room in the
// overdue half too, and with none left there it ends at once with
// errWorkerSlow (503): so the reads waiting longer than overdueAfter, on
// any number of workers, hold half the budget at most together, and the
// workers that answer keep the other half. A read that holds the
// overdue half already (late) is not watched.
func (d *dataPlane) watchRead(ctx context.Context, op *pb.EntityOp, room *readRoom) (*pb.WorkerResponse, error) {
	share := room.share
	if share == nil {
		return d.read(ctx, op, *room)
	}
	var resp *pb.WorkerResponse
	var err error
	if room.late {
		resp, err = d.read(ctx, op, *room)
	} else {
		var state atomic.Int32
		cctx, cancel := context.WithCancel(ctx)
		n := room.n
		tm := time.AfterFunc(d.overdueAfter, func() {
			share.stuck.Store(true)
			if d.late.waiting.Load() == 0 && d.late.take(n) {
				if !state.CompareAndSwap(watchWaiting, watchLate) {
					d.late.release(n) // answered meanwhile
				}
				return
			}
			if state.CompareAndSwap(watchWaiting, watchEvicted) {
				cancel() // watchRead answers why
			}
		})
		resp, err = d.read(cctx, op, *room)
		tm.Stop()
		if !state.CompareAndSwap(watchWaiting, watchAnswered) {
			switch state.Load() {
			case watchLate:
				room.late = true
			case watchEvicted:
				if err != nil && ctx.Err() == nil {
					resp, err = nil, fmt.Errorf("read entity %q of %s: no answer for %v, and the reads waiting that long hold half the read budget: %w",
						op.GetEntityKey(), op.GetDatabaseName(), d.overdueAfter, errWorkerSlow)
				}
			}
		}
		cancel()
	}
	if (err == nil || errors.Is(err, errNotFound)) && share.stuck.Load() {
		share.stuck.Store(false) // it answers again
	}
	return resp, err
}

// keepRead keeps, of the room held for a read, the size of the document
// read (resp), or none when the read failed (err). The owner's share and
// the overdue half are given back whole: the answer is in.
func (d *dataPlane) keepRead(resp *pb.WorkerResponse, room readRoom, err error) (*pb.WorkerResponse, heldRead, error) {
	room.free(d)
	held := room.n
	if err != nil {
		d.reads.release(held)
		return nil, heldRead{}, err
	}
	if size := int64(len(resp.GetResult())); size < held {
		d.reads.release(held - size)
		held = size
	}
	return resp, heldRead{budget: d.reads, n: held}, nil
}

// patch applies op's patch (a merge patch or JSON Patch, by its content
// type) to one entity. The worker validates the result against the
// database's bound schema and schemaID, resolved here, and keeps it within
// the document limit; the patch itself is bounded by the front end's
// message limit (-rest-max-body-size, -grpc-max-recv-msg-size). A
// principal without read gets the new version and no document, may not
// choose the schema nor test values (blindPatch), and a failure tells it
// nothing of the stored document (the worker sees op.MayRead unset).
func (d *dataPlane) patch(ctx context.Context, p principal, schemaID string, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if err := checkTarget(db, key); err != nil {
		return nil, err
	}
	ct, err := patchMediaType(op.GetContentType())
	if err != nil {
		return nil, err
	}
	if err := checkSchemaID(schemaID); err != nil {
		return nil, err
	}
	if err := checkPatchText(ct, op.GetPayload(), d.lim.depth()); err != nil {
		return nil, err
	}
	op.MayRead = p.has(permRead)
	if !op.MayRead {
		if err := blindPatch(schemaID, ct, op.GetPayload(), d.lim); err != nil {
			return nil, err
		}
	}
	if op.SchemaIds, err = d.catalog.bindings.schemasFor(ctx, db, schemaID); err != nil {
		return nil, err
	}
	op.ContentType = ct
	if err := d.withVersions(ctx, db, op); err != nil {
		return nil, err
	}
	resp, err := d.proc.Process(ctx, op)
	if err != nil {
		return nil, entityError(err, db, key)
	}
	if !p.has(permRead) {
		// Only a principal that may read gets the patched document.
		return okResponse(nil, resp.GetVersion()), nil
	}
	return resp, nil
}

// blindPatch refuses what a principal that may write but not read must
// not ask of a PATCH (API.md, PATCH without read): validation against a
// schema of its own choosing (schemaID), whose outcome would answer any
// question about the stored document, and a JSON Patch "test", which
// tells whether the document holds a value. A patch that does not parse
// is left to the worker, which answers why.
func blindPatch(schemaID, ct string, patch []byte, lim budgets) error {
	if schemaID != "" {
		return reqErrorf(errForbidden, "a PATCH validated against a schema of the request's choosing (?schema=, schema_id) needs the read permission: its outcome would show the stored document")
	}
	if ct != jsonPatchType {
		return nil
	}
	ops, err := parseJSONPatch(patch, lim.patchOps())
	if err != nil {
		return nil
	}
	for _, op := range ops {
		if op.op == "test" {
			return reqErrorf(errForbidden, "JSON patch operation %d (test %q) needs the read permission: its outcome would show the stored document", op.position, op.rawPath)
		}
	}
	return nil
}

// patchMediaType returns the patch type of a PATCH's content type ct
// (parameters such as charset ignored), or errUnsupportedMedia.
func patchMediaType(ct string) (string, error) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != mergePatchType && mt != jsonPatchType {
		return "", reqErrorf(errUnsupportedMedia, "Content-Type %q: PATCH takes %s or %s", ct, mergePatchType, jsonPatchType)
	}
	return mt, nil
}

// delete deletes one entity, under op's preconditions.
func (d *dataPlane) delete(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if err := checkTarget(db, key); err != nil {
		return nil, err
	}
	if err := d.withVersions(ctx, db, op); err != nil {
		return nil, err
	}
	resp, err := d.proc.Process(ctx, op)
	if err != nil {
		return nil, entityError(err, db, key)
	}
	return resp, nil
}

// entityError gives an error about entity key of db the sentence a client
// sees when it has none: a missing entity.
func entityError(err error, db, key string) error {
	if _, ok := clientMessage(err); !ok && errors.Is(err, errNotFound) {
		return reqErrorf(errNotFound, "entity %q not found in database %q", key, db)
	}
	return err
}

// readEntity reads entity key of db: its document and ETag, or found
// false when it does not exist.
func (d *dataPlane) readEntity(ctx context.Context, db, key string) (doc json.RawMessage, etag string, found bool, err error) {
	resp, err := d.proc.Process(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET})
	if errors.Is(err, errNotFound) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("read entity %q of %s: %w", key, db, err)
	}
	return resp.GetResult(), etagOf(resp.GetVersion()), true, nil
}

// listDatabases returns the databases holding at least one entity that p
// may use, sorted.
func (d *dataPlane) listDatabases(ctx context.Context, p principal) ([]string, error) {
	dbs, err := d.catalog.listDatabases(ctx)
	if err != nil {
		return nil, err
	}
	visible := dbs[:0]
	for _, db := range dbs {
		if p.allowsDB(db) {
			visible = append(visible, db)
		}
	}
	return visible, nil
}

// databaseInfo is the answer of GET and PUT /api/databases/{db}.
type databaseInfo struct {
	Name     string  `json:"name"`
	Schema   *string `json:"schema"` // null when not bound
	Entities int     `json:"entities"`
	// MaxVersions is how many versions of each entity it keeps (0: off).
	MaxVersions int `json:"max_versions"`
}

// database answers db's binding and entity count; errNotFound when it has
// neither entities nor a binding.
func (d *dataPlane) database(ctx context.Context, db string) (databaseInfo, error) {
	if err := validateDBName(db); err != nil {
		return databaseInfo{}, err
	}
	info, err := d.databaseInfo(ctx, db)
	if err != nil {
		return databaseInfo{}, err
	}
	if info.Entities == 0 && info.Schema == nil {
		// A database given only a version count exists too: its settings
		// were answered by PUT and must read back.
		set, err := d.catalog.bindings.settings(ctx, db)
		if err != nil {
			return databaseInfo{}, err
		}
		if set.MaxVersions == nil {
			return databaseInfo{}, reqErrorf(errNotFound, "database %q has no entities and no settings", db)
		}
	}
	return info, nil
}

// databaseInfo reads db's binding and counts its entities (from the key
// index).
func (d *dataPlane) databaseInfo(ctx context.Context, db string) (databaseInfo, error) {
	id, err := d.catalog.bindings.get(ctx, db)
	if err != nil {
		return databaseInfo{}, err
	}
	n, err := d.catalog.keys.count(ctx, db)
	if err != nil {
		return databaseInfo{}, fmt.Errorf("count entities of %s: %w", db, err)
	}
	mv, err := d.maxVersions(ctx, db)
	if err != nil {
		return databaseInfo{}, err
	}
	info := databaseInfo{Name: db, Entities: n, MaxVersions: mv}
	if id != "" {
		info.Schema = &id
	}
	return info, nil
}

// bind binds db to schema id, or unbinds it for id "", and answers the
// database as it is then. Existing entities are not validated again; every
// later write is. Binding to an unknown schema is errInvalid.
func (d *dataPlane) bind(ctx context.Context, db, id string) (databaseInfo, error) {
	if err := validateDBName(db); err != nil {
		return databaseInfo{}, err
	}
	if err := d.setBinding(ctx, db, id); err != nil {
		return databaseInfo{}, err
	}
	return d.databaseInfo(ctx, db)
}

// setBinding stores (id != "") or removes (id == "") db's binding under
// bindMu, checking that schema id exists.
func (d *dataPlane) setBinding(ctx context.Context, db, id string) error {
	d.bindMu.Lock()
	defer d.bindMu.Unlock()
	if id == "" {
		return d.catalog.bindings.set(ctx, db, "")
	}
	if err := validateSchemaID(id); err != nil {
		return err
	}
	if _, err := d.schemas.Get(ctx, id); errors.Is(err, errNotFound) {
		return reqErrorf(errInvalid, "unknown schema %q", id)
	} else if err != nil {
		return fmt.Errorf("bind %s: %w", db, err)
	}
	return d.catalog.bindings.set(ctx, db, id)
}

// deleteDatabase deletes every entity of db, each through the write path
// of a single DELETE (entity lock, owner's cache, durable before counted,
// key index), then its binding, and returns how many entities it deleted.
// A run cut short (a crash, a lost client) leaves some entities; running
// it again deletes the rest, and a database with nothing left answers 0.
func (d *dataPlane) deleteDatabase(ctx context.Context, db string) (int, error) {
	if err := validateDBName(db); err != nil {
		return 0, err
	}
	n, err := d.deleteEntities(ctx, db)
	if err != nil {
		return n, fmt.Errorf("delete database %s after %d entities: %w", db, n, err)
	}
	if err := d.catalog.indexes.removeAll(ctx, db); err != nil {
		return n, err
	}
	if err := d.removeVersions(ctx, db); err != nil {
		return n, err
	}
	if err := d.unbind(ctx, db); err != nil {
		return n, err
	}
	if d.feed != nil {
		d.feed.databaseDeleted(db)
	}
	return n, nil
}

// unbind removes db's schema binding.
func (d *dataPlane) unbind(ctx context.Context, db string) error {
	d.bindMu.Lock()
	defer d.bindMu.Unlock()
	return d.catalog.bindings.update(ctx, db, func(v *dbBinding) { *v = dbBinding{} })
}

// deleteEntities deletes db's entities and returns how many it deleted.
// It walks the key index page by page, then walks it again while a walk
// still deleted something, so that entities written meanwhile go too; an
// entity already gone (deleted meanwhile) is not counted.
func (d *dataPlane) deleteEntities(ctx context.Context, db string) (int, error) {
	total := 0
	for {
		n, err := d.deletePass(ctx, db)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// deletePass deletes the entities the key index lists for db, one page
// after another, each through the write path of a single DELETE.
func (d *dataPlane) deletePass(ctx context.Context, db string) (int, error) {
	n, after := 0, ""
	for {
		keys, more, err := d.catalog.keys.page(ctx, db, "", after, maxListLimit)
		if err != nil {
			return n, err
		}
		for _, k := range keys {
			_, err := d.proc.Process(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: k, Operation: pb.Operation_DELETE})
			switch {
			case err == nil:
				n++
			case errors.Is(err, errNotFound):
			default:
				return n, fmt.Errorf("delete entity %q: %w", k, err)
			}
		}
		if !more {
			return n, nil
		}
		after = keys[len(keys)-1]
	}
}

// keyQuery asks for one page of a database's entity keys.
type keyQuery struct {
	// prefix is the keys' common start, "" for all.
	prefix string
	// after is the key the page starts after, "" for the first page.
	after string
	// limit is the page size.
	limit int
}

// listKeys lists a page of db's entity keys in key (byte) order from the
// key index: O(page size) once the database is indexed. more says whether
// keys follow the page; the next page starts after its last key, so a key
// appears at most once across pages whatever is written meanwhile, and
// every key that exists throughout the listing appears.
func (d *dataPlane) listKeys(ctx context.Context, db string, q keyQuery) (keys []string, more bool, err error) {
	if err := validateDBName(db); err != nil {
		return nil, false, err
	}
	keys, more, err = d.catalog.keys.page(ctx, db, q.prefix, q.after, q.limit)
	if err != nil {
		return nil, false, fmt.Errorf("list keys of %s: %w", db, err)
	}
	return keys, more, nil
}

// schemaIDs lists the stored schemas.
func (d *dataPlane) schemaIDs(ctx context.Context) ([]string, error) {
	return d.schemas.List(ctx)
}

// schema returns schema id as stored.
func (d *dataPlane) schema(ctx context.Context, id string) ([]byte, error) {
	if err := validateSchemaID(id); err != nil {
		return nil, err
	}
	raw, err := d.schemas.Get(ctx, id)
	if errors.Is(err, errNotFound) {
		return nil, reqErrorf(errNotFound, "schema %q not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", id, err)
	}
	return raw, nil
}

// boundSchema returns the schema db is bound to, its ID and its bytes as
// stored; id "" when db is not bound.
func (d *dataPlane) boundSchema(ctx context.Context, db string) (id string, raw []byte, err error) {
	if id, err = d.catalog.bindings.get(ctx, db); err != nil || id == "" {
		return "", nil, err
	}
	if raw, err = d.schemas.Get(ctx, id); err != nil {
		return "", nil, fmt.Errorf("schema %q bound to database %q: %w", id, db, err)
	}
	return id, raw, nil
}

// putSchema stores schema id for p (raw, the body checked for UTF-8 and
// nesting).
func (d *dataPlane) putSchema(ctx context.Context, p principal, id string, raw []byte) error {
	if err := validateSchemaID(id); err != nil {
		return err
	}
	if err := d.schemaInScope(ctx, p, id); err != nil {
		return err
	}
	if err := d.schemas.Put(ctx, id, raw); err != nil {
		return fmt.Errorf("schema %s: %w", id, err)
	}
	return nil
}

// schemaInScope refuses a principal limited to some databases the
// schema id when a database outside its limit is bound to it: replacing
// it would change what that database accepts.
func (d *dataPlane) schemaInScope(ctx context.Context, p principal, id string) error {
	if p.admin || p.databases == nil {
		return nil
	}
	db, err := d.catalog.bindings.boundOutside(ctx, id, p.allowsDB)
	if err != nil {
		return err
	}
	if db != "" {
		return reqErrorf(errForbidden, "schema %q is bound to database %q, which this credential may not access", id, db)
	}
	return nil
}

// deleteSchema removes schema id for p, unless a database is still bound
// to it (errConflict naming them).
func (d *dataPlane) deleteSchema(ctx context.Context, p principal, id string) error {
	if err := validateSchemaID(id); err != nil {
		return err
	}
	if err := d.schemaInScope(ctx, p, id); err != nil {
		return err
	}
	d.bindMu.Lock()
	defer d.bindMu.Unlock()
	dbs, err := d.catalog.bindings.boundTo(ctx, id)
	if err != nil {
		return fmt.Errorf("delete schema %s: %w", id, err)
	}
	if len(dbs) > 0 {
		return reqErrorf(errConflict, "schema %q is still bound to %s; unbind first (PUT /api/databases/{db} with {\"schema\": null})", id, nameList("database", dbs))
	}
	err = d.schemas.Delete(ctx, id)
	if errors.Is(err, errNotFound) {
		return reqErrorf(errNotFound, "schema %q not found", id)
	}
	return err
}

// maxNamesListed is the most names an error sentence lists.
const maxNamesListed = 10

// nameList renders names for a sentence: `database "a"`, `databases "a",
// "b" and 3 more`.
func nameList(noun string, names []string) string {
	if len(names) == 1 {
		return fmt.Sprintf("%s %q", noun, names[0])
	}
	quoted := make([]string, 0, maxNamesListed)
	for _, n := range names[:min(len(names), maxNamesListed)] {
		quoted = append(quoted, strconv.Quote(n))
	}
	out := noun + "s " + strings.Join(quoted, ", ")
	if more := len(names) - len(quoted); more > 0 {
		out += fmt.Sprintf(" and %d more", more)
	}
	return out
}

// checkAgainst checks doc against schema id without storing anything:
// nil when it matches, the schema's *validationError when it does not.
func (d *dataPlane) checkAgainst(ctx context.Context, id string, doc []byte) error {
	if err := validateSchemaID(id); err != nil {
		return err
	}
	if err := d.lim.checkDocumentSize("document", len(doc)); err != nil {
		return err
	}
	err := d.schemas.Validate(ctx, id, doc)
	if errors.Is(err, errNotFound) {
		return reqErrorf(errNotFound, "schema %q not found", id)
	}
	return err
}
