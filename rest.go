package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	pb "deltadatabase/proto"
)

// restServer is the main worker's REST API (SPEC §3) and web UI. It is safe
// for concurrent use once built by newRESTServer.
type restServer struct {
	auth    *authenticator
	proc    processor
	st      store
	schemas *schemaRegistry
	// workers lists the processing workers for /admin/workers.
	workers func() []workerInfo
	// maxBody is the largest request body accepted; larger gets 413.
	maxBody int64
	log     *slog.Logger
	mux     *http.ServeMux
}

// workerInfo is one row of GET /admin/workers.
type workerInfo struct {
	WorkerID string            `json:"worker_id"`
	Status   string            `json:"status"`
	KeyID    string            `json:"key_id"`
	LastSeen time.Time         `json:"last_seen"`
	Tags     map[string]string `json:"tags"`
	InFlight int64             `json:"in_flight"`
	Cache    cacheStats        `json:"cache"`
}

// newRESTServer builds the REST server and its route table.
func newRESTServer(auth *authenticator, proc processor, st store, schemas *schemaRegistry,
	workers func() []workerInfo, maxBody int64, log *slog.Logger) *restServer {
	s := &restServer{auth: auth, proc: proc, st: st, schemas: schemas, workers: workers,
		maxBody: maxBody, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

// authedHandler is a handler that runs for an authenticated principal.
type authedHandler func(w http.ResponseWriter, r *http.Request, p principal)

// routes is the route table: one line per route (SPEC §3).
func (s *restServer) routes() {
	s.mux.HandleFunc("GET /health", s.handleHealth)
	s.mux.HandleFunc("POST /api/login", s.handleLogin)
	s.mux.Handle("GET /api/me", s.need(0, s.handleMe))
	s.mux.Handle("GET /api/keys", s.need(permAdmin, s.handleListKeys))
	s.mux.Handle("POST /api/keys", s.need(permAdmin, s.handleCreateKey))
	s.mux.Handle("DELETE /api/keys/{id}", s.need(permAdmin, s.handleDeleteKey))
	s.mux.Handle("GET /api/databases", s.need(permRead, s.handleListDatabases))
	s.mux.Handle("GET /api/databases/{db}", s.need(permRead, s.handleGetDatabase))
	s.mux.Handle("PUT /api/databases/{db}", s.need(permWrite, s.handlePutDatabase))
	s.mux.Handle("GET /api/databases/{db}/keys", s.need(permRead, s.handleListEntityKeys))
	s.mux.Handle("GET /admin/workers", s.need(permAdmin, s.handleWorkers))
	s.mux.HandleFunc("GET /admin/schemas", s.handleListSchemas)
	s.mux.HandleFunc("GET /schema/{id}", s.handleGetSchema)
	s.mux.Handle("PUT /schema/{id}", s.need(permWrite, s.handlePutSchema))
	s.mux.Handle("PUT /entity/{db}", s.need(permWrite, s.handlePutEntities))
	s.mux.Handle("GET /entity/{db}", s.need(permRead, s.handleGetEntity))
	s.mux.Handle("PATCH /entity/{db}", s.need(permWrite, s.handlePatchEntity))
	s.mux.Handle("DELETE /entity/{db}", s.need(permWrite, s.handleDeleteEntity))
	s.mux.Handle("GET /", uiHandler())
}

// ServeHTTP refuses non-canonical paths before routing: ServeMux would
// otherwise answer "/entity/../x" with a redirect, and SPEC §3 wants a
// name with ".." to be a 400 wherever it arrives.
func (s *restServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p != "/" && path.Clean(p) != strings.TrimSuffix(p, "/") || strings.Contains(p, "//") {
		writeError(w, fmt.Errorf("path %q is not canonical: %w", p, errInvalid))
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// The mux's own 404 and 405 answers are plain text; every error
		// of the API is a JSON body, so keep only their status and Allow.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeJSON(w, rec.code, map[string]string{"error": http.StatusText(rec.code)})
		return
	}
	// Handler does not set the path values; ServeHTTP matches again and does.
	s.mux.ServeHTTP(w, r)
}

// statusRecorder keeps the status and headers of a response and drops its
// body.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }

// need wraps h so that it runs only for a principal holding permission pm.
func (s *restServer) need(pm perm, h authedHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.auth.authenticateFrom(bearer(r), r.RemoteAddr)
		if err != nil {
			writeAuthError(w, err)
			return
		}
		if !p.has(pm) {
			writeError(w, fmt.Errorf("%s needs %s permission: %w", r.Pattern, permName(pm), errForbidden))
			return
		}
		if db := r.PathValue("db"); db != "" && !p.allowsDB(db) {
			writeError(w, fmt.Errorf("database %q is outside this key's databases: %w", db, errForbidden))
			return
		}
		h(w, r, p)
	})
}

// permName is the SPEC name of a single permission.
func permName(pm perm) string {
	switch pm {
	case permRead:
		return "read"
	case permWrite:
		return "write"
	default:
		return "admin"
	}
}

func (s *restServer) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *restServer) handleListDatabases(w http.ResponseWriter, r *http.Request, p principal) {
	dbs, err := listDatabases(r.Context(), s.st)
	if err != nil {
		writeError(w, err)
		return
	}
	visible := dbs[:0]
	for _, db := range dbs {
		if p.allowsDB(db) {
			visible = append(visible, db)
		}
	}
	writeJSON(w, http.StatusOK, visible)
}

func (s *restServer) handleWorkers(w http.ResponseWriter, r *http.Request, p principal) {
	writeJSON(w, http.StatusOK, s.workers())
}

func (s *restServer) handleListSchemas(w http.ResponseWriter, r *http.Request) {
	ids, err := s.schemas.List(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ids)
}

func (s *restServer) handleGetSchema(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		writeError(w, err)
		return
	}
	raw, err := s.schemas.Get(r.Context(), id)
	if err != nil {
		writeError(w, fmt.Errorf("schema %s: %w", id, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(raw)
}

func (s *restServer) handlePutSchema(w http.ResponseWriter, r *http.Request, p principal) {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		writeError(w, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.schemas.Put(r.Context(), id, body); err != nil {
		writeError(w, fmt.Errorf("schema %s: %w", id, err))
		return
	}
	s.log.Info("schema stored", attrSchema, id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handlePutEntities stores every entity of a {key: document, ...} body.
// All names and documents are checked before anything is written.
func (s *restServer) handlePutEntities(w http.ResponseWriter, r *http.Request, p principal) {
	db, err := pathDB(r)
	if err != nil {
		writeError(w, err)
		return
	}
	schemaID, err := schemaParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	docs, err := decodeEntityBody(body)
	if err != nil {
		writeError(w, err)
		return
	}
	// Validate everything before writing anything: against the bound
	// schema and ?schema= (the worker checks again as it writes).
	ids, err := schemasFor(r.Context(), s.st, db, schemaID)
	if err != nil {
		writeError(w, err)
		return
	}
	for _, id := range ids {
		if err := s.validateAll(r.Context(), id, docs); err != nil {
			writeError(w, err)
			return
		}
	}
	reqs := make([]*pb.ProcessRequest, len(docs))
	for i, d := range docs {
		reqs[i] = &pb.ProcessRequest{DatabaseName: db, EntityKey: d.key, Operation: pb.Operation_PUT, Payload: d.doc}
	}
	if err := batchPreconditions(r, reqs); err != nil {
		writeError(w, err)
		return
	}
	resps, err := s.putAll(r.Context(), reqs)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(resps) == 1 && resps[0].GetVersion() != "" {
		w.Header().Set("ETag", etagOf(resps[0].GetVersion()))
	}
	s.log.Debug("entities stored", attrDB, db, slog.Int("count", len(docs)), attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// putAll runs the writes of a PUT. A multi-key PUT with preconditions
// checks them all before writing any, under the router's entity write
// locks (batchProcessor) when the processor has them.
func (s *restServer) putAll(ctx context.Context, reqs []*pb.ProcessRequest) ([]*pb.ProcessResponse, error) {
	if len(reqs) > 1 && slices.ContainsFunc(reqs, hasPreconditions) {
		if bp, ok := s.proc.(batchProcessor); ok {
			return bp.ProcessAll(ctx, reqs)
		}
		return processAll(ctx, s.proc, reqs)
	}
	out := make([]*pb.ProcessResponse, 0, len(reqs))
	for _, req := range reqs {
		resp, err := s.proc.Process(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp)
	}
	return out, nil
}

// entityDoc is one (key, document) pair of a PUT body, in body order.
type entityDoc struct {
	key string
	doc json.RawMessage
}

// decodeEntityBody parses a PUT /entity body: a non-empty JSON object of
// valid entity keys. Keys come back sorted so writes happen in a stable
// order.
func decodeEntityBody(body []byte) ([]entityDoc, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("body must be a JSON object of {key: document}: %v: %w", err, errInvalid)
	}
	if dec.More() {
		return nil, fmt.Errorf("body has data after the JSON object: %w", errInvalid)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("body must be a non-empty JSON object of {key: document}: %w", errInvalid)
	}
	docs := make([]entityDoc, 0, len(m))
	for k, v := range m {
		if err := validateEntityKey(k); err != nil {
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
			failed = append(failed, fmt.Sprintf("%s: %v", d.key, ve))
		default:
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("documents do not match schema %s: %s: %w", id, strings.Join(failed, "; "), errInvalid)
	}
	return nil
}

func (s *restServer) handleGetEntity(w http.ResponseWriter, r *http.Request, p principal) {
	db, key, err := entityTarget(r)
	if err != nil {
		writeError(w, err)
		return
	}
	inm, err := parseETags("If-None-Match", r.Header.Values("If-None-Match"))
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := s.proc.Process(r.Context(), &pb.ProcessRequest{DatabaseName: db, EntityKey: key, Operation: pb.Operation_GET})
	if err != nil {
		writeError(w, err)
		return
	}
	if v := resp.GetVersion(); v != "" {
		w.Header().Set("ETag", etagOf(v))
		if inm != "" && matchesNoneOf(inm, v) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(resp.GetResult())
}

// handlePatchEntity applies a merge patch or JSON Patch to one entity
// (SPEC §10) and answers the patched document with its new ETag.
func (s *restServer) handlePatchEntity(w http.ResponseWriter, r *http.Request, p principal) {
	db, key, err := entityTarget(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ct, err := patchMediaType(r)
	if err != nil {
		writeError(w, err)
		return
	}
	schemaID, err := schemaParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	req := &pb.ProcessRequest{DatabaseName: db, EntityKey: key, Operation: pb.Operation_PATCH, Payload: body,
		ContentType: ct, SchemaId: schemaID}
	if err := headerPreconditions(r, req); err != nil {
		writeError(w, err)
		return
	}
	resp, err := s.proc.Process(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("ETag", etagOf(resp.GetVersion()))
	w.Header().Set("Content-Type", "application/json")
	w.Write(resp.GetResult())
}

// patchMediaType returns the patch type of a PATCH request's Content-Type
// (parameters such as charset ignored), or errUnsupportedMedia.
func patchMediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != mergePatchType && mt != jsonPatchType {
		return "", fmt.Errorf("Content-Type %q: PATCH takes %s or %s: %w", ct, mergePatchType, jsonPatchType, errUnsupportedMedia)
	}
	return mt, nil
}

func (s *restServer) handleDeleteEntity(w http.ResponseWriter, r *http.Request, p principal) {
	db, key, err := entityTarget(r)
	if err != nil {
		writeError(w, err)
		return
	}
	req := &pb.ProcessRequest{DatabaseName: db, EntityKey: key, Operation: pb.Operation_DELETE}
	if err := headerPreconditions(r, req); err != nil {
		writeError(w, err)
		return
	}
	if _, err := s.proc.Process(r.Context(), req); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
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

// pathDB returns the validated {db} of a route.
func pathDB(r *http.Request) (string, error) {
	db := r.PathValue("db")
	return db, validateDBName(db)
}

// entityTarget returns the validated database and ?key= of an entity route.
func entityTarget(r *http.Request) (db, key string, err error) {
	if db, err = pathDB(r); err != nil {
		return "", "", err
	}
	q := r.URL.Query()
	if !q.Has("key") {
		return "", "", fmt.Errorf("missing ?key= query parameter: %w", errInvalid)
	}
	key = q.Get("key")
	if err := validateEntityKey(key); err != nil {
		return "", "", err
	}
	return db, key, nil
}

// readBody reads the whole request body, refusing more than s.maxBody
// bytes with an error that maps to 413.
func (s *restServer) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.maxBody {
		return nil, fmt.Errorf("body of %d bytes exceeds -rest-max-body-size %d: %w", r.ContentLength, s.maxBody, errTooLarge)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("body exceeds -rest-max-body-size %d: %w", s.maxBody, errTooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %v: %w", err, errInvalid)
	}
	return b, nil
}

// statusOf maps an error to its HTTP status: the one place where sentinel
// errors become status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errPrecondition):
		return http.StatusPreconditionFailed
	case errors.Is(err, errPatchConflict):
		return http.StatusConflict
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError writes err as {"error": "..."} with its status. A failed
// precondition also sends the entity's current ETag.
func writeError(w http.ResponseWriter, err error) {
	if pe := (*preconditionError)(nil); errors.As(err, &pe) && pe.current != "" {
		w.Header().Set("ETag", etagOf(pe.current))
	}
	writeJSON(w, statusOf(err), map[string]string{"error": err.Error()})
}

// writeJSON writes v as a JSON body with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
