package main

// Entity versions (ARCHITECTURE.md "Entity versions"): with a database's
// max_versions above 0, every PUT, PATCH and undelete of an entity keeps
// the document it stores as the entity's next version, sealed as entities
// are but bound to the version number too, and a DELETE is a soft delete
// that marks the latest version deleted. The owner does it under the
// entity's lock, durably, before the write is answered. An entity's
// versions live beside each other: one object per version and an index
// object with their metadata, read and written whole.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	pb "deltadatabase/proto"
)

// maxVersionsLimit bounds a database's max_versions: an entity's index is
// read and written whole on every write, and listed whole.
const maxVersionsLimit = 100

// checkMaxVersions checks a version count.
func checkMaxVersions(n int) error {
	if n < 0 || n > maxVersionsLimit {
		return reqErrorf(errInvalid, "max_versions %d is out of range: give 0 (versions off) to %d", n, maxVersionsLimit)
	}
	return nil
}

// versionSealKey is the entity key a version is sealed as: the key, a
// NUL (no entity key holds one, names.go) and the number, so that the GCM
// additional data binds database, key and version, and a version blob
// moved to another number or entity fails to open.
func versionSealKey(key string, n int64) string {
	return key + "\x00version " + strconv.FormatInt(n, 10)
}

// versionEntry is one version's metadata, as listed.
type versionEntry struct {
	Version int64 `json:"version"`
	// ETag is the entity's ETag while this version was its document.
	ETag string    `json:"etag"`
	Time time.Time `json:"time"`
	// Principal is the name of who wrote it; "" when unknown (the document
	// was stored before the database kept versions).
	Principal   string     `json:"principal"`
	Deleted     bool       `json:"deleted"`
	DeletedTime *time.Time `json:"deleted_time,omitempty"`
	DeletedBy   string     `json:"deleted_by,omitempty"`
	// Destroyed versions keep their metadata; their document is gone.
	Destroyed bool `json:"destroyed"`
}

// versionIndex is the stored metadata of an entity's versions, oldest
// first.
type versionIndex struct {
	DB       string         `json:"db"`
	Key      string         `json:"key"`
	Versions []versionEntry `json:"versions"`
}

// latest is the newest version, nil when there is none.
func (x *versionIndex) latest() *versionEntry {
	if len(x.Versions) == 0 {
		return nil
	}
	return &x.Versions[len(x.Versions)-1]
}

// find returns version n, nil when the index has no such version.
func (x *versionIndex) find(n int64) *versionEntry {
	for i := range x.Versions {
		if x.Versions[i].Version == n {
			return &x.Versions[i]
		}
	}
	return nil
}

// next is the number the next version gets.
func (x *versionIndex) next() int64 {
	if l := x.latest(); l != nil {
		return l.Version + 1
	}
	return 1
}

// readVersions reads the version index of key in db and its revision
// ("" when there is none yet).
func readVersions(ctx context.Context, st store, db, key string) (versionIndex, string, error) {
	x := versionIndex{DB: db, Key: key}
	rev, found, err := getJSONRev(ctx, st, versionsIndexKey(db, key), "versions of "+key, &x)
	if err != nil {
		return versionIndex{}, "", err
	}
	if found && (x.DB != db || x.Key != key) {
		return versionIndex{}, "", fmt.Errorf("versions of %s/%q: index names %s/%q: %w", db, key, x.DB, x.Key, errCorrupt)
	}
	return x, rev, nil
}

// versions reads the version index of key in db as its owner sees it:
// the one its log holds and the applier has not written yet, else the
// stored one (readVersions). The revision is "" for a logged one: only a
// worker without a log writes the index with PutIf.
func (w *worker) versions(ctx context.Context, db, key string) (versionIndex, string, error) {
	if w.wal != nil {
		if raw, ok := w.wal.unappliedObject(db, key, versionsIndexKey(db, key)); ok && raw != nil {
			x := versionIndex{DB: db, Key: key}
			if err := json.Unmarshal(raw, &x); err != nil {
				return versionIndex{}, "", fmt.Errorf("versions of %s/%q: logged index: %v: %w", db, key, err, errCorrupt)
			}
			return x, "", nil
		}
	}
	return readVersions(ctx, w.st, db, key)
}

// versionObject reads version n's envelope as the entity's owner sees it:
// logged and not yet written, else stored.
func (w *worker) versionObject(ctx context.Context, db, key string, n int64) ([]byte, error) {
	obj := versionObjectKey(db, key, n)
	if w.wal != nil {
		if data, ok := w.wal.unappliedObject(db, key, obj); ok {
			if data == nil {
				return nil, fmt.Errorf("get %s: removed in the write-ahead log: %w", obj, errNotFound)
			}
			return data, nil
		}
	}
	return w.st.Get(ctx, obj)
}

// versionWrite is the change of an entity's versions one write makes,
// held by its owner under the entity's lock from before the write to
// after it.
type versionWrite struct {
	w   *worker
	s   *keyring
	op  *pb.EntityOp
	x   versionIndex
	rev string
	// logged are the change's objects, in order, when the worker has a
	// log: they go in the log record of the write (walRecord.Objects),
	// durable with it, rather than to storage one by one.
	logged []walObject
}

// put writes one object of the change: logged, or stored durably.
func (vw *versionWrite) put(ctx context.Context, obj string, data []byte) error {
	if vw.w.wal != nil {
		vw.logged = append(vw.logged, walObject{Key: obj, Data: data})
		return nil
	}
	return vw.w.st.Put(ctx, obj, data)
}

// remove removes version n's object: logged, or from storage durably.
func (vw *versionWrite) remove(ctx context.Context, n int64) error {
	db, key := vw.op.GetDatabaseName(), vw.op.GetEntityKey()
	if vw.w.wal != nil {
		vw.logged = append(vw.logged, walObject{Key: versionObjectKey(db, key, n)})
		return nil
	}
	return deleteVersionObject(ctx, vw.w.st, db, key, n)
}

// beginVersions reads the entity's versions before a write with versions
// on, and keeps the entity's current document as a version first when
// the latest one is not it: stored before the database kept versions, or
// written by a write whose version a crash lost. The caller holds the
// entity's lock and the keyring's gate.
func (w *worker) beginVersions(ctx context.Context, s *keyring, op *pb.EntityOp) (*versionWrite, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	x, rev, err := w.versions(ctx, db, key)
	if err != nil {
		return nil, fmt.Errorf("versions of %s/%q: %w", db, key, err)
	}
	vw := &versionWrite{w: w, s: s, op: op, x: x, rev: rev}
	if l := x.latest(); l != nil && op.GetOperation() == pb.Operation_UNDELETE {
		// What the undelete brings back is no longer deleted.
		l.Deleted, l.DeletedTime, l.DeletedBy = false, nil, ""
	}
	sealed, _, err := w.stored(ctx, db, key)
	if errors.Is(err, errNotFound) {
		return vw, nil
	}
	if err != nil {
		return nil, fmt.Errorf("versions of %s/%q: %w", db, key, err)
	}
	h, _, err := parseHeader(sealed)
	if err != nil {
		return nil, fmt.Errorf("versions of %s/%q: %w", db, key, err)
	}
	if l := x.latest(); l != nil && l.ETag == h.etag() {
		return vw, nil
	}
	doc, _, err := s.open(ctx, db, key, sealed)
	if err != nil {
		return nil, fmt.Errorf("versions of %s/%q: %w", db, key, err)
	}
	return vw, vw.keep(ctx, doc, h.etag(), "", h.Written)
}

// keep stores doc as the next version (put) and adds it to the index
// (written by commit).
func (vw *versionWrite) keep(ctx context.Context, doc []byte, etag, principal string, at time.Time) error {
	db, key := vw.op.GetDatabaseName(), vw.op.GetEntityKey()
	n := vw.x.next()
	sealed, _, err := vw.s.seal(ctx, db, versionSealKey(key, n), doc)
	if err != nil {
		return fmt.Errorf("seal version %d of %s/%q: %w", n, db, key, err)
	}
	if err := vw.put(ctx, versionObjectKey(db, key, n), sealed); err != nil {
		return fmt.Errorf("store version %d of %s/%q: %w", n, db, key, err)
	}
	vw.x.Versions = append(vw.x.Versions, versionEntry{Version: n, ETag: etag, Time: at.UTC(), Principal: principal})
	return nil
}

// commit prunes the versions beyond max (their objects first, so that
// none outlives its metadata) and writes the index: logged, or stored
// durably with PutIf.
func (vw *versionWrite) commit(ctx context.Context, max int) error {
	db, key := vw.op.GetDatabaseName(), vw.op.GetEntityKey()
	if max > 0 && len(vw.x.Versions) > max {
		drop := vw.x.Versions[:len(vw.x.Versions)-max]
		for _, e := range drop {
			if err := vw.remove(ctx, e.Version); err != nil {
				return err
			}
		}
		vw.x.Versions = slices.Clone(vw.x.Versions[len(drop):])
	}
	raw, err := json.Marshal(vw.x)
	if err != nil {
		return fmt.Errorf("store versions of %s/%q: %w", db, key, err)
	}
	if vw.w.wal != nil {
		return vw.put(ctx, versionsIndexKey(db, key), raw)
	}
	newRev, err := vw.w.st.PutIf(ctx, versionsIndexKey(db, key), raw, vw.rev)
	if err != nil {
		return fmt.Errorf("store versions of %s/%q: %w", db, key, err)
	}
	vw.rev = newRev
	return nil
}

// deleteVersionObject removes one version's object; one already gone is
// no error.
func deleteVersionObject(ctx context.Context, st store, db, key string, n int64) error {
	err := st.Delete(ctx, versionObjectKey(db, key, n))
	if err != nil && !errors.Is(err, errNotFound) {
		return fmt.Errorf("remove version %d of %s/%q: %w", n, db, key, err)
	}
	return nil
}

// record keeps doc, just sealed as the entity with header hdr by op's
// principal, as the next version and commits the index: the change a
// write with versions on makes.
func (vw *versionWrite) record(ctx context.Context, doc []byte, hdr envelopeHeader) error {
	if err := vw.keep(ctx, doc, hdr.etag(), principalOf(vw.op), hdr.Written); err != nil {
		return err
	}
	return vw.commit(ctx, int(vw.op.GetMaxVersions()))
}

// principalOf is the name a version records of the principal of op.
func principalOf(op *pb.EntityOp) string { return op.GetPrincipal() }

// markDeleted marks the latest version deleted by op's principal, for a
// soft delete, and writes the index (commit).
func (vw *versionWrite) markDeleted(ctx context.Context) error {
	l := vw.x.latest()
	if l == nil {
		return nil
	}
	now := time.Now().UTC()
	l.Deleted, l.DeletedTime, l.DeletedBy = true, &now, principalOf(vw.op)
	return vw.commit(ctx, int(vw.op.GetMaxVersions()))
}

// versionsNotFound is the 404 of an entity without versions.
func versionsNotFound(db, key string) error {
	return reqErrorf(errNotFound, "entity %q of database %q has no versions", key, db)
}

// listVersions answers the metadata of an entity's versions as JSON
// ({"key", "versions"}), oldest first. An entity with neither versions
// nor a document is errNotFound.
func (w *worker) listVersions(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	x, _, err := w.versions(ctx, db, key)
	if err != nil {
		return nil, err
	}
	if len(x.Versions) == 0 {
		if _, _, err := w.stored(ctx, db, key); errors.Is(err, errNotFound) {
			return nil, versionsNotFound(db, key)
		} else if err != nil {
			return nil, err
		}
	}
	if x.Versions == nil {
		x.Versions = []versionEntry{}
	}
	raw, err := json.Marshal(struct {
		Key      string         `json:"key"`
		Versions []versionEntry `json:"versions"`
	}{key, x.Versions})
	if err != nil {
		return nil, err
	}
	return okResponse(raw, ""), nil
}

// readVersion answers version op.Version of an entity: its document and
// the ETag it had.
func (w *worker) readVersion(ctx context.Context, s *keyring, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	db, key, n := op.GetDatabaseName(), op.GetEntityKey(), op.GetVersion()
	x, _, err := w.versions(ctx, db, key)
	if err != nil {
		return nil, err
	}
	e := x.find(n)
	if e == nil {
		return nil, reqErrorf(errNotFound, "version %d of entity %q not found in database %q", n, key, db)
	}
	gone := reqErrorf(errNotFound, "version %d of entity %q in database %q was destroyed", n, key, db)
	if e.Destroyed {
		return nil, gone
	}
	sealed, err := w.versionObject(ctx, db, key, n)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("version %d of %s/%q: object missing: %w: %w", n, db, key, err, gone)
	}
	if err != nil {
		return nil, fmt.Errorf("read version %d of %s/%q: %w", n, db, key, err)
	}
	doc, _, err := s.open(ctx, db, versionSealKey(key, n), sealed)
	if err != nil {
		return nil, fmt.Errorf("open version %d of %s/%q: %w", n, db, key, err)
	}
	return okResponse(doc, e.ETag), nil
}

// undelete brings back the document a soft delete removed: the latest
// version, if deleted, is stored again as the entity (a write with its
// own new version) and no longer marked deleted. An entity that exists
// is errConflict; one whose latest version is not deleted, errNotFound.
func (w *worker) undelete(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if err := w.prepareToChange(ctx, s, db, key); err != nil {
		return nil, fmt.Errorf("undelete entity %s/%q: %w", db, key, err)
	}
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, _, err := w.stored(ctx, db, key); err == nil {
		return nil, reqErrorf(errConflict, "entity %q of database %q exists: only a deleted entity can be undeleted", key, db)
	} else if !errors.Is(err, errNotFound) {
		return nil, err
	}
	x, _, err := w.versions(ctx, db, key)
	if err != nil {
		return nil, err
	}
	l := x.latest()
	if l == nil || !l.Deleted || l.Destroyed {
		return nil, reqErrorf(errNotFound, "entity %q of database %q has no deleted version to undelete", key, db)
	}
	got, err := w.readVersion(ctx, s, &pb.EntityOp{DatabaseName: db, EntityKey: key, Version: l.Version})
	if err != nil {
		return nil, err
	}
	e, err := w.store(ctx, s, op, owner, got.GetResult(), "", false)
	if err != nil {
		return nil, err
	}
	return okResponse(nil, e.version), nil
}

// destroy removes versions op.Versions of an entity for good: their
// objects, then their documents' place in the index (the metadata stays,
// marked destroyed); with a log, both in one record of its own. A version
// the index does not hold is errNotFound and nothing is removed.
func (w *worker) destroy(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	unlock, err := w.lockEntity(ctx, db, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	x, rev, err := w.versions(ctx, db, key)
	if err != nil {
		return nil, err
	}
	for _, n := range op.GetVersions() {
		if x.find(n) == nil {
			return nil, reqErrorf(errNotFound, "version %d of entity %q not found in database %q", n, key, db)
		}
	}
	if err := w.refuseCurrent(ctx, op, &x); err != nil {
		return nil, err
	}
	vw := &versionWrite{w: w, op: op, x: x, rev: rev}
	for _, n := range op.GetVersions() {
		if err := vw.remove(ctx, n); err != nil {
			return nil, err
		}
		vw.x.find(n).Destroyed = true
	}
	if err := vw.commit(ctx, 0); err != nil {
		return nil, err
	}
	if w.wal != nil {
		rec := &walRecord{Type: walVersions, DB: db, Key: key, Principal: op.GetPrincipal(), Objects: vw.logged}
		if err := w.logWrite(ctx, rec); err != nil {
			return nil, err
		}
	}
	return okResponse(nil, ""), nil
}

// refuseCurrent refuses (409) to destroy the version that is the entity's
// current document: the entity would still answer it after the answer
// said it was destroyed. Deleting the entity first (a soft delete) makes
// it a deleted version, which may be destroyed. The caller holds the
// entity's lock.
func (w *worker) refuseCurrent(ctx context.Context, op *pb.EntityOp, x *versionIndex) error {
	l := x.latest()
	if l == nil || l.Deleted || !slices.Contains(op.GetVersions(), l.Version) {
		return nil
	}
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if _, _, err := w.stored(ctx, db, key); errors.Is(err, errNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return reqErrorf(errConflict, "version %d is the current document of entity %q in database %q: delete the entity first, then destroy it", l.Version, key, db)
}

// softDelete marks the latest version of the entity op deletes deleted,
// keeping its document first if no version holds it, before the entity
// is removed. With a log it returns the objects that change, for the
// delete's record, and the caller calls release once the record is
// logged: a version it sealed must be logged under the data key it was
// sealed with (store). A missing entity is left to the deletion, which
// answers 404. The caller holds the entity's lock.
func (w *worker) softDelete(ctx context.Context, s *keyring, op *pb.EntityOp) (logged []walObject, release func(), err error) {
	db, key := op.GetDatabaseName(), op.GetEntityKey()
	if _, _, err := w.stored(ctx, db, key); errors.Is(err, errNotFound) {
		return nil, func() {}, nil
	}
	if err := s.prepare(ctx, db); err != nil {
		return nil, nil, fmt.Errorf("delete entity %s/%q: %w", db, key, err)
	}
	release = s.hold()
	vw, err := w.beginVersions(ctx, s, op)
	if err == nil {
		err = vw.markDeleted(ctx)
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return vw.logged, release, nil
}

// versionOps are the operations of entity versions, answered by
// versionOp.
var versionOps = map[pb.Operation]bool{pb.Operation_VERSIONS: true, pb.Operation_VERSION_GET: true,
	pb.Operation_UNDELETE: true, pb.Operation_DESTROY: true}

// versionOp runs one of versionOps.
func (w *worker) versionOp(ctx context.Context, s *keyring, op *pb.EntityOp, owner bool) (*pb.WorkerResponse, error) {
	switch op.GetOperation() {
	case pb.Operation_VERSIONS:
		return w.listVersions(ctx, op)
	case pb.Operation_VERSION_GET:
		return w.readVersion(ctx, s, op)
	case pb.Operation_UNDELETE:
		return w.undelete(ctx, s, op, owner)
	default:
		return w.destroy(ctx, op)
	}
}

// principalName is the name a write records of p: its name, else its
// client ID.
func principalName(p principal) string {
	if p.name != "" {
		return p.name
	}
	return p.clientID
}

// maxVersions is how many versions of each entity db keeps: its setting,
// else the -max-versions default.
func (d *dataPlane) maxVersions(ctx context.Context, db string) (int, error) {
	v, err := d.catalog.bindings.settings(ctx, db)
	if err != nil {
		return 0, err
	}
	if v.MaxVersions != nil {
		return *v.MaxVersions, nil
	}
	return d.lim.maxVersions, nil
}

// withVersions sets the version count of db on ops, writes of db.
func (d *dataPlane) withVersions(ctx context.Context, db string, ops ...*pb.EntityOp) error {
	n, err := d.maxVersions(ctx, db)
	if err != nil {
		return err
	}
	for _, op := range ops {
		op.MaxVersions = int32(n)
	}
	return nil
}

// setMaxVersions sets db's version count (nil: back to the default) and
// answers the database as it is then.
func (d *dataPlane) setMaxVersions(ctx context.Context, db string, n *int) error {
	if n != nil {
		if err := checkMaxVersions(*n); err != nil {
			return err
		}
	}
	d.bindMu.Lock()
	defer d.bindMu.Unlock()
	return d.catalog.bindings.update(ctx, db, func(v *dbBinding) { v.MaxVersions = n })
}

// versionOp sends one version operation of entity key of db.
func (d *dataPlane) versionOp(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if err := checkTarget(op.GetDatabaseName(), op.GetEntityKey()); err != nil {
		return nil, err
	}
	resp, err := d.proc.Process(ctx, op)
	if err != nil {
		return nil, entityError(err, op.GetDatabaseName(), op.GetEntityKey())
	}
	return resp, nil
}

// getVersion reads version n of an entity, held in the in-flight read
// budget as readHeld holds a document until the caller calls
// held.release.
func (d *dataPlane) getVersion(ctx context.Context, db, key string, n int64) (*pb.WorkerResponse, heldRead, error) {
	if err := checkTarget(db, key); err != nil {
		return nil, heldRead{}, err
	}
	resp, held, err := d.readHeldOp(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_VERSION_GET, Version: n})
	if err != nil {
		return nil, heldRead{}, entityError(err, db, key)
	}
	return resp, held, nil
}

// logCutter is a processor whose workers keep write-ahead logs
// (router.checkpointLogs).
type logCutter interface {
	checkpointLogs(ctx context.Context) error
}

// removeVersions removes every version of db's entities, for the
// deletion of the database. The logs are cut first: a version they hold
// would otherwise be written by the applier, or by a replay after a
// crash, once removed, and show up in a database of the same name.
func (d *dataPlane) removeVersions(ctx context.Context, db string) error {
	st := d.catalog.st
	if c, ok := d.proc.(logCutter); ok {
		ctx, cancel := context.WithTimeout(ctx, flushTimeout)
		err := c.checkpointLogs(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("remove versions of %s: %w", db, err)
		}
	}
	objs, err := st.List(ctx, versionsDBPrefix(db), "", 0)
	if err != nil {
		return fmt.Errorf("list versions of %s: %w", db, err)
	}
	for _, o := range objs {
		if err := st.Delete(ctx, o); err != nil && !errors.Is(err, errNotFound) {
			return fmt.Errorf("remove versions of %s: %w", db, err)
		}
	}
	return nil
}

// versionParam parses ?version=N; ok false when it is absent.
func versionParam(r *http.Request) (n int64, ok bool, err error) {
	v, count := queryParam(r.URL.RawQuery, "version")
	switch {
	case count == 0:
		return 0, false, nil
	case count > 1:
		return 0, false, reqErrorf(errInvalid, "?version= is given %d times; give it once", count)
	}
	n, ok = parseVersionNumber(v)
	if !ok {
		return 0, false, reqErrorf(errInvalid, "?version=%q is not a version number (1, 2, ...)", v)
	}
	return n, true, nil
}

// parseVersionNumber parses a version number as the server writes them
// (decimalParam): 1 and up, within int64.
func parseVersionNumber(s string) (int64, bool) {
	n, ok := decimalParam(s, 1, math.MaxInt64)
	return int64(n), ok
}

// versionsParam parses ?versions=1,2,... of a destroy.
func versionsParam(r *http.Request) ([]int64, error) {
	v, count := queryParam(r.URL.RawQuery, "versions")
	if count != 1 || v == "" {
		return nil, reqErrorf(errInvalid, "give the versions to destroy once, as ?versions=1,2,...")
	}
	parts := strings.Split(v, ",")
	if len(parts) > maxVersionsLimit {
		return nil, reqErrorf(errInvalid, "?versions= lists %d versions; at most %d", len(parts), maxVersionsLimit)
	}
	var ns []int64
	for _, p := range parts {
		n, ok := parseVersionNumber(p)
		if !ok {
			return nil, reqErrorf(errInvalid, "?versions=: %q is not a version number (1, 2, ...)", p)
		}
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return slices.Compact(ns), nil
}

// handleListVersions is GET /entity/{db}/versions?key=K: the metadata of
// the entity's kept versions, oldest first.
func (s *restServer) handleListVersions(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	resp, err := s.data.versionOp(r.Context(), &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_VERSIONS})
	if err != nil {
		return err
	}
	w.Header()["Content-Type"] = contentTypeJSON
	w.Write(resp.GetResult())
	return nil
}

// handleGetVersion answers GET /entity/{db}?key=K&version=N: version N's
// document with the ETag it had, or 304 with that ETag when inm (the
// request's If-None-Match, as parseETags returns it) matches it, as for
// the entity's current document.
func (s *restServer) handleGetVersion(w http.ResponseWriter, r *http.Request, db, key string, n int64, inm string) error {
	resp, held, err := s.data.getVersion(r.Context(), db, key, n)
	if err != nil {
		return err
	}
	defer held.release()
	w.Header().Set("ETag", etagOf(resp.GetVersion()))
	if inm != "" && matchesNoneOf(inm, resp.GetVersion()) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header()["Content-Type"] = contentTypeJSON
	w.Write(resp.GetResult())
	return nil
}

// handleUndelete is POST /entity/{db}/undelete?key=K: stores the document
// a soft delete removed again, as a new version, and answers its ETag.
func (s *restServer) handleUndelete(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	op := &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_UNDELETE, Principal: principalName(p)}
	if err := s.data.withVersions(r.Context(), db, op); err != nil {
		return err
	}
	resp, err := s.data.versionOp(r.Context(), op)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etagOf(resp.GetVersion()))
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleDestroy is POST /entity/{db}/destroy?key=K&versions=1,2: removes
// those versions for good.
func (s *restServer) handleDestroy(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	ns, err := versionsParam(r)
	if err != nil {
		return err
	}
	op := &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_DESTROY, Versions: ns, Principal: principalName(p)}
	if _, err := s.data.versionOp(r.Context(), op); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "destroyed": ns})
	return nil
}

// versionsIn lists the version objects of db, grouped by directory (one
// entity each), in key order, with each directory's index read: the key
// to open them with. A directory without a readable index is errCorrupt.
func versionsIn(ctx context.Context, st store, db string, each func(x versionIndex, objs []int64) error) error {
	objs, err := st.List(ctx, versionsDBPrefix(db), "", 0)
	if err != nil {
		return fmt.Errorf("list versions of %s: %w", db, err)
	}
	byDir := map[string][]int64{}
	var dirs []string
	for _, o := range objs {
		_, dir, n, ok := parseVersionObject(o)
		if !ok {
			continue
		}
		if _, seen := byDir[dir]; !seen {
			dirs = append(dirs, dir)
		}
		byDir[dir] = append(byDir[dir], n)
	}
	for _, dir := range dirs {
		var x versionIndex
		found, err := getJSON(ctx, st, dir+versionsIndexName, "versions in "+dir, &x)
		if err == nil && (!found || x.DB != db || versionsDir(db, x.Key) != dir) {
			err = fmt.Errorf("versions in %s: no index naming their entity: %w", dir, errCorrupt)
		}
		if err != nil {
			return err
		}
		if err := each(x, byDir[dir]); err != nil {
			return err
		}
	}
	return nil
}

// reencryptVersions reseals every version of db not sealed under s,
// keeping its nonce (as resealOnce does an entity's), under its entity's
// lock.
func (k *keyring) reencryptVersions(ctx context.Context, db string, s *sealer, pace *pacer) error {
	return versionsIn(ctx, k.st, db, func(x versionIndex, ns []int64) error {
		for _, n := range ns {
			if err := pace.wait(ctx); err != nil {
				return fmt.Errorf("re-encrypt versions of %s: %w", db, err)
			}
			if err := k.resealVersion(ctx, db, x.Key, n, s); err != nil {
				return fmt.Errorf("re-encrypt version %d of %s/%q: %w", n, db, x.Key, err)
			}
		}
		return nil
	})
}

// resealVersion reseals version n of key under s unless it is already, or
// gone (pruned, destroyed).
func (k *keyring) resealVersion(ctx context.Context, db, key string, n int64, s *sealer) error {
	unlock, err := lockObject(ctx, &k.locks, k.st, entityObjectKey(db, key))
	if err != nil {
		return err
	}
	defer unlock()
	obj := versionObjectKey(db, key, n)
	sealed, rev, err := k.st.GetRev(ctx, obj)
	if errors.Is(err, errNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if h, _, err := parseHeader(sealed); err == nil && h.Format == formatDataKey && h.KeyID == s.keyID {
		return nil
	}
	sk := versionSealKey(key, n)
	doc, h, err := k.open(ctx, db, sk, sealed)
	if err != nil {
		return err
	}
	_, err = k.st.PutIf(ctx, obj, s.reseal(h, db, sk, doc), rev)
	return err
}
