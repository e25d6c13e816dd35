package main

// The REST handlers of entities: GET, PUT, PATCH and DELETE /entity/{db}
// and POST /api/databases/{db}/get. Like every handler they return errors
// instead of writing them (rest.go does).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"

	pb "deltadatabase/proto"
)

// handlePutEntities stores every entity of a {key: document, ...} body.
// All names and documents are checked before anything is written.
func (s *restServer) handlePutEntities(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	if r.URL.Query().Has("key") {
		k := r.URL.Query().Get("key")
		return reqErrorf(errInvalid, "PUT /entity/%s takes no ?key=: the body is %s, so send {%q: document} without ?key=", db, entityBodyShape, k)
	}
	schemaID, err := schemaParam(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	docs, err := decodeEntityBody(body, s.lim)
	if err != nil {
		return err
	}
	// Validate everything before writing anything, against the bound
	// schema and ?schema=: the only validation these documents get.
	ids, err := s.catalog.bindings.schemasFor(r.Context(), db, schemaID)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.validateAll(r.Context(), id, docs); err != nil {
			return err
		}
	}
	ops := make([]*pb.EntityOp, len(docs))
	for i, d := range docs {
		doc, err := checkDocument(r.Context(), s.schemas, nil, d.doc)
		if err != nil {
			return err
		}
		ops[i] = &pb.EntityOp{DatabaseName: db, EntityKey: d.key, Operation: pb.Operation_PUT, Payload: doc}
	}
	if err := batchPreconditions(r, ops); err != nil {
		return err
	}
	resps, err := s.putAll(r.Context(), ops)
	if err != nil {
		return err
	}
	if len(resps) == 1 && resps[0].GetVersion() != "" {
		w.Header().Set("ETag", etagOf(resps[0].GetVersion()))
	}
	s.log.DebugContext(r.Context(), "entities stored", attrDB, db, slog.Int("count", len(docs)), attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// putAll runs the writes of a PUT. A multi-key PUT with preconditions
// checks them all before writing any, under the router's entity write
// locks (batchProcessor) when the processor has them.
func (s *restServer) putAll(ctx context.Context, ops []*pb.EntityOp) ([]*pb.WorkerResponse, error) {
	if len(ops) > 1 && slices.ContainsFunc(ops, hasPreconditions) {
		if bp, ok := s.proc.(batchProcessor); ok {
			return bp.ProcessAll(ctx, ops)
		}
		return processAll(ctx, s.proc, ops)
	}
	out := make([]*pb.WorkerResponse, 0, len(ops))
	for _, req := range ops {
		resp, err := s.proc.Process(ctx, req)
		if err != nil {
			return nil, entityError(err, req.GetDatabaseName(), req.GetEntityKey())
		}
		out = append(out, resp)
	}
	return out, nil
}

// entityError gives an error of the data plane about entity key of db the
// sentence a client sees when it has none: a missing entity.
func entityError(err error, db, key string) error {
	if _, ok := clientMessage(err); !ok && errors.Is(err, errNotFound) {
		return reqErrorf(errNotFound, "entity %q not found in database %q", key, db)
	}
	return err
}

// entityDoc is one (key, document) pair of a PUT body.
type entityDoc struct {
	key string
	doc json.RawMessage
}

// entityBodyShape is what PUT /entity/{db} takes, for error sentences.
const entityBodyShape = "a JSON object mapping entity keys to documents"

// decodeEntityBody parses a PUT /entity body: a non-empty JSON object of
// valid entity keys and documents within the budgets of lim: as many keys
// as a request may write (each is one durable write), documents no larger
// than a document may be. Keys come back sorted so writes happen in a
// stable order.
func decodeEntityBody(body []byte, lim budgets) ([]entityDoc, error) {
	var m map[string]json.RawMessage
	if err := decodeJSONBody(body, &m, entityBodyShape); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, reqErrorf(errInvalid, "body must be %s, with at least one key", entityBodyShape)
	}
	if len(m) > lim.batchKeys() {
		return nil, reqErrorf(errTooLarge, "PUT of %d entities exceeds the limit of %d entities per request", len(m), lim.batchKeys())
	}
	docs := make([]entityDoc, 0, len(m))
	for k, v := range m {
		if err := validateEntityKey(k); err != nil {
			return nil, err
		}
		if err := lim.checkDocumentSize(fmt.Sprintf("document %q", k), len(v)); err != nil {
			return nil, err
		}
		docs = append(docs, entityDoc{key: k, doc: v})
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].key < docs[j].key })
	return docs, nil
}

// validateAll validates every document against schema id and reports all
// failing keys at once.
func (s *restServer) validateAll(ctx context.Context, id string, docs []entityDoc) error {
	var failed []string
	for _, d := range docs {
		err := validateDoc(ctx, s.schemas, []string{id}, d.doc)
		var ve *validationError
		switch {
		case err == nil:
		case errors.As(err, &ve):
			failed = append(failed, fmt.Sprintf("%q: %v", d.key, ve))
		default:
			return err
		}
	}
	if len(failed) > 0 {
		return reqErrorf(errInvalid, "documents do not match schema %q: %s", id, strings.Join(failed, "; "))
	}
	return nil
}

func (s *restServer) handleGetEntity(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	inm, err := parseETags("If-None-Match", r.Header.Values("If-None-Match"))
	if err != nil {
		return err
	}
	resp, err := s.proc.Process(r.Context(), &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET})
	if err != nil {
		return entityError(err, db, key)
	}
	if v := resp.GetVersion(); v != "" {
		w.Header().Set("ETag", etagOf(v))
		if inm != "" && matchesNoneOf(inm, v) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(resp.GetResult())
	return nil
}

// handlePatchEntity applies a merge patch or JSON Patch to one entity
// (SPEC §10) and answers the patched document with its new ETag; a
// principal without read gets {"status": "ok"} and the ETag instead.
func (s *restServer) handlePatchEntity(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	ct, err := patchMediaType(r)
	if err != nil {
		return err
	}
	schemaID, err := schemaParam(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	// The worker validates the patched document against these.
	ids, err := s.catalog.bindings.schemasFor(r.Context(), db, schemaID)
	if err != nil {
		return err
	}
	req := &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_PATCH, Payload: body,
		ContentType: ct, SchemaIds: ids}
	if err := headerPreconditions(r, req); err != nil {
		return err
	}
	resp, err := s.proc.Process(r.Context(), req)
	if err != nil {
		return entityError(err, db, key)
	}
	w.Header().Set("ETag", etagOf(resp.GetVersion()))
	if !p.has(permRead) {
		// The patched document is for a principal that may read it.
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(resp.GetResult())
	return nil
}

// patchMediaType returns the patch type of a PATCH request's Content-Type
// (parameters such as charset ignored), or errUnsupportedMedia.
func patchMediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != mergePatchType && mt != jsonPatchType {
		return "", reqErrorf(errUnsupportedMedia, "Content-Type %q: PATCH takes %s or %s", ct, mergePatchType, jsonPatchType)
	}
	return mt, nil
}

func (s *restServer) handleDeleteEntity(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	req := &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_DELETE}
	if err := headerPreconditions(r, req); err != nil {
		return err
	}
	if _, err := s.proc.Process(r.Context(), req); err != nil {
		return entityError(err, db, key)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// schemaParam returns the validated ?schema= of a write, "" when absent.
func schemaParam(r *http.Request) (string, error) {
	q := r.URL.Query()
	if !q.Has("schema") {
		return "", nil
	}
	id := q.Get("schema")
	return id, validateSchemaID(id)
}

// entityTarget returns the validated database and ?key= of an entity route.
func entityTarget(r *http.Request) (db, key string, err error) {
	if db, err = pathDB(r); err != nil {
		return "", "", err
	}
	q := r.URL.Query()
	switch len(q["key"]) {
	case 0:
		return "", "", reqErrorf(errInvalid, "missing ?key= query parameter")
	case 1:
	default:
		return "", "", reqErrorf(errInvalid, "?key= is given %d times; give it once", len(q["key"]))
	}
	key = q.Get("key")
	if err := validateEntityKey(key); err != nil {
		return "", "", err
	}
	return db, key, nil
}

// readEntity reads entity key of db: its document and ETag, or found
// false when it does not exist.
func (s *restServer) readEntity(ctx context.Context, db, key string) (doc json.RawMessage, etag string, found bool, err error) {
	resp, err := s.proc.Process(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET})
	if errors.Is(err, errNotFound) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("read entity %q of %s: %w", key, db, err)
	}
	return resp.GetResult(), etagOf(resp.GetVersion()), true, nil
}

// getManyShape is the body POST /api/databases/{db}/get takes.
const getManyShape = `{"keys": [entity key, ...]}`

// getManyAnswer is the answer of POST /api/databases/{db}/get.
type getManyAnswer struct {
	Documents map[string]json.RawMessage `json:"documents"`
	ETags     map[string]string          `json:"etags"`
	// Missing lists the keys asked for that do not exist, in the order
	// asked, each once.
	Missing []string `json:"missing"`
}

// handleGetMany is POST /api/databases/{db}/get {"keys": [...]}: the
// documents and ETags of up to the batch budget of keys, and the keys that
// do not exist.
func (s *restServer) handleGetMany(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	var req struct {
		Keys []string `json:"keys"`
	}
	if err := s.decodeBody(w, r, &req, getManyShape); err != nil {
		return err
	}
	if req.Keys == nil {
		return reqErrorf(errInvalid, `body must be %s; it has no "keys"`, getManyShape)
	}
	if len(req.Keys) > s.lim.batchKeys() {
		return reqErrorf(errTooLarge, "a read of %d keys exceeds the limit of %d keys per request", len(req.Keys), s.lim.batchKeys())
	}
	for _, k := range req.Keys {
		if err := validateEntityKey(k); err != nil {
			return err
		}
	}
	ans := getManyAnswer{Documents: map[string]json.RawMessage{}, ETags: map[string]string{}, Missing: []string{}}
	seen := make(map[string]bool, len(req.Keys))
	for _, k := range req.Keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		doc, etag, found, err := s.readEntity(r.Context(), db, k)
		if err != nil {
			return err
		}
		if !found {
			ans.Missing = append(ans.Missing, k)
			continue
		}
		ans.Documents[k], ans.ETags[k] = doc, etag
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}
