package main

// The REST handlers, one per route of restServer.routes. Each returns an
// error instead of writing it (the route wrapper in rest.go does), and
// every error about the client's request carries its sentence
// (reqErrorf).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	pb "deltadatabase/proto"
)

func (s *restServer) handleHealth(w http.ResponseWriter, r *http.Request, _ principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleLogin is POST /api/login {"key": K}.
func (s *restServer) handleLogin(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req struct {
		Key string `json:"key"`
	}
	if err := s.decodeBody(w, r, &req, `{"key": "<admin key or API key>"}`); err != nil {
		return err
	}
	if req.Key == "" {
		return reqErrorf(errInvalid, `body must be {"key": "<admin key or API key>"}`)
	}
	g, err := s.auth.login(req.Key, s.auth.clientOf(r))
	if err != nil {
		return err
	}
	notePrincipal(r.Context(), g.ClientID)
	s.log.InfoContext(r.Context(), "session created", attrClient, g.ClientID)
	writeJSON(w, http.StatusOK, g)
	return nil
}

// handleLogout is POST /api/logout: it revokes the session token it is
// sent with, durably, before answering.
func (s *restServer) handleLogout(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.auth.logout(r.Context(), bearer(r)); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "session ended", attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleMe is GET /api/me: who the credential acts for. databases is
// absent for all databases and [] for none (an OIDC token whose databases
// claim is empty); subject is an OIDC token's sub.
func (s *restServer) handleMe(w http.ResponseWriter, r *http.Request, p principal) error {
	var dbs *[]string
	if p.databases != nil {
		dbs = &p.databases
	}
	writeJSON(w, http.StatusOK, struct {
		ClientID    string    `json:"client_id"`
		Name        string    `json:"name"`
		Permissions []string  `json:"permissions"`
		IsAdmin     bool      `json:"is_admin"`
		Databases   *[]string `json:"databases,omitempty"`
		Subject     string    `json:"subject,omitempty"`
	}{p.clientID, p.name, permNames(p.perms), p.has(permAdmin), dbs, p.subject})
	return nil
}

// requireAllDatabases refuses key management to a principal limited to
// some databases: keys are global, and such a principal could otherwise
// create a key without its limit.
func requireAllDatabases(p principal) error {
	if p.databases != nil {
		return reqErrorf(errForbidden, "a key limited to some databases cannot manage API keys")
	}
	return nil
}

// handleListKeys is GET /api/keys.
func (s *restServer) handleListKeys(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.auth.listKeys())
	return nil
}

// handleCreateKey is POST /api/keys.
func (s *restServer) handleCreateKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	var req keyRequest
	if err := s.decodeBody(w, r, &req, `{"name", "permissions", "expires_in"?, "databases"?}`); err != nil {
		return err
	}
	k, err := s.auth.createKey(r.Context(), req)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "api key created", attrKeyID, k.ID, attrClient, p.clientID, slog.Any("permissions", k.Permissions))
	w.Header().Set("Location", "/api/keys/"+k.ID)
	writeJSON(w, http.StatusCreated, k)
	return nil
}

// handleDeleteKey is DELETE /api/keys/{id}.
func (s *restServer) handleDeleteKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := s.auth.deleteKey(r.Context(), id); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "api key deleted", attrKeyID, id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *restServer) handleListDatabases(w http.ResponseWriter, r *http.Request, p principal) error {
	dbs, err := s.catalog.listDatabases(r.Context())
	if err != nil {
		return err
	}
	visible := dbs[:0]
	for _, db := range dbs {
		if p.allowsDB(db) {
			visible = append(visible, db)
		}
	}
	writeJSON(w, http.StatusOK, visible)
	return nil
}

func (s *restServer) handleWorkers(w http.ResponseWriter, r *http.Request, p principal) error {
	writeJSON(w, http.StatusOK, s.workers())
	return nil
}

// jobsAvailable refuses the key-job routes on a server without key jobs.
func (s *restServer) jobsAvailable() error {
	if s.jobs == nil {
		return reqErrorf(errUnavailable, "key jobs are not available on this server")
	}
	return nil
}

func (s *restServer) handleListJobs(w http.ResponseWriter, r *http.Request, _ principal) error {
	if err := s.jobsAvailable(); err != nil {
		return err
	}
	jobs, err := s.jobs.list(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, jobs)
	return nil
}

// handleRekey starts a rekey of the database; either way the answer is
// 202 with the job (the one already running, if any).
func (s *restServer) handleRekey(w http.ResponseWriter, r *http.Request, _ principal) error {
	db := r.PathValue("db")
	if err := validateDBName(db); err != nil {
		return err
	}
	if err := s.jobsAvailable(); err != nil {
		return err
	}
	job, _, err := s.jobs.startRekey(r.Context(), db)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, job)
	return nil
}

func (s *restServer) handleListSchemas(w http.ResponseWriter, r *http.Request, _ principal) error {
	ids, err := s.schemas.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ids)
	return nil
}

func (s *restServer) handleGetSchema(w http.ResponseWriter, r *http.Request, _ principal) error {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		return err
	}
	raw, err := s.schemas.Get(r.Context(), id)
	if errors.Is(err, errNotFound) {
		return reqErrorf(errNotFound, "schema %q not found", id)
	}
	if err != nil {
		return fmt.Errorf("schema %s: %w", id, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(raw)
	return nil
}

func (s *restServer) handlePutSchema(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if err := s.schemaInScope(r.Context(), p, id); err != nil {
		return err
	}
	if err := s.schemas.Put(r.Context(), id, body); err != nil {
		return fmt.Errorf("schema %s: %w", id, err)
	}
	s.log.InfoContext(r.Context(), "schema stored", attrSchema, id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// schemaInScope refuses a principal limited to some databases the
// schema id when a database outside its limit is bound to it: replacing
// it would change what that database accepts.
func (s *restServer) schemaInScope(ctx context.Context, p principal, id string) error {
	if p.admin || p.databases == nil {
		return nil
	}
	db, err := s.catalog.bindings.boundOutside(ctx, id, p.allowsDB)
	if err != nil {
		return err
	}
	if db != "" {
		return reqErrorf(errForbidden, "schema %q is bound to database %q, which this credential may not access", id, db)
	}
	return nil
}

// handleDeleteSchema is DELETE /schema/{id}: it removes the template,
// unless a database is still bound to it (409 naming them).
func (s *restServer) handleDeleteSchema(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		return err
	}
	if err := s.schemaInScope(r.Context(), p, id); err != nil {
		return err
	}
	b := s.catalog.bindings
	b.changes.Lock()
	defer b.changes.Unlock()
	dbs, err := b.boundTo(r.Context(), id)
	if err != nil {
		return fmt.Errorf("delete schema %s: %w", id, err)
	}
	if len(dbs) > 0 {
		return reqErrorf(errConflict, "schema %q is still bound to %s; unbind first (PUT /api/databases/{db} with {\"schema\": null})", id, nameList("database", dbs))
	}
	err = s.schemas.Delete(r.Context(), id)
	if errors.Is(err, errNotFound) {
		return reqErrorf(errNotFound, "schema %q not found", id)
	}
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "schema deleted", attrSchema, id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
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

// validateAnswer is the answer of POST /schema/{id}/validate.
type validateAnswer struct {
	Valid  bool              `json:"valid"`
	Errors []validationIssue `json:"errors,omitempty"`
	// Omitted counts the violations left out of Errors (beyond
	// maxValidationMessages).
	Omitted int `json:"omitted,omitempty"`
}

// handleValidate is POST /schema/{id}/validate: it checks the body, a
// document, against schema id without storing anything: 200 {"valid":
// true}, or 422 with the violations.
func (s *restServer) handleValidate(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if err := s.lim.checkDocumentSize("document", len(body)); err != nil {
		return err
	}
	err = s.schemas.Validate(r.Context(), id, body)
	var ve *validationError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, validateAnswer{Valid: true})
		return nil
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, validateAnswer{Errors: ve.Issues, Omitted: ve.Omitted})
		return nil
	case errors.Is(err, errNotFound):
		return reqErrorf(errNotFound, "schema %q not found", id)
	default:
		return err
	}
}

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
// (API.md "PATCH") and answers the patched document with its new ETag; a
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

// decodeBody reads the request body and decodes it into v with
// decodeJSONBody.
func (s *restServer) decodeBody(w http.ResponseWriter, r *http.Request, v any, shape string) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSONBody(body, v, shape)
}

// databaseInfo is the answer of GET and PUT /api/databases/{db}.
type databaseInfo struct {
	Name     string  `json:"name"`
	Schema   *string `json:"schema"` // null when not bound
	Entities int     `json:"entities"`
}

// handleGetDatabase answers a database's binding and entity count; 404
// when it has neither entities nor a binding.
func (s *restServer) handleGetDatabase(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	info, err := s.databaseInfo(r.Context(), db)
	if err != nil {
		return err
	}
	if info.Entities == 0 && info.Schema == nil {
		return reqErrorf(errNotFound, "database %q has no entities and no schema binding", db)
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// handlePutDatabase binds a database to a schema ({"schema": ID}) or
// unbinds it ({"schema": null} or {"schema": ""}). Existing entities are
// not validated again; every later write is.
func (s *restServer) handlePutDatabase(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	id, err := decodeBindingBody(body)
	if err != nil {
		return err
	}
	if err := s.bind(r.Context(), db, id); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "database binding set", attrDB, db, attrSchema, id, attrClient, p.clientID)
	info, err := s.databaseInfo(r.Context(), db)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// decodeBindingBody parses {"schema": ID | "" | null}; "" means unbind.
func decodeBindingBody(body []byte) (string, error) {
	const shape = `{"schema": ID or null}`
	var b struct {
		Schema json.RawMessage `json:"schema"`
	}
	if err := decodeJSONBody(body, &b, shape); err != nil {
		return "", err
	}
	if b.Schema == nil {
		return "", reqErrorf(errInvalid, `body must be %s: it has no "schema" (null or "" unbinds)`, shape)
	}
	var id *string
	if err := json.Unmarshal(b.Schema, &id); err != nil {
		return "", reqErrorf(errInvalid, `body must be %s: "schema" is not a string or null`, shape)
	}
	if id == nil {
		return "", nil
	}
	return *id, nil
}

// bind stores (id != "") or removes (id == "") db's binding. Binding to an
// unknown schema is errInvalid.
func (s *restServer) bind(ctx context.Context, db, id string) error {
	s.catalog.bindings.changes.Lock()
	defer s.catalog.bindings.changes.Unlock()
	if id == "" {
		return s.catalog.bindings.set(ctx, db, "")
	}
	if err := validateSchemaID(id); err != nil {
		return err
	}
	if _, err := s.schemas.Get(ctx, id); errors.Is(err, errNotFound) {
		return reqErrorf(errInvalid, "unknown schema %q", id)
	} else if err != nil {
		return fmt.Errorf("bind %s: %w", db, err)
	}
	return s.catalog.bindings.set(ctx, db, id)
}

// databaseInfo reads db's binding and counts its entities (from the key
// index).
func (s *restServer) databaseInfo(ctx context.Context, db string) (databaseInfo, error) {
	id, err := s.catalog.bindings.get(ctx, db)
	if err != nil {
		return databaseInfo{}, err
	}
	n, err := s.catalog.keys.count(ctx, db)
	if err != nil {
		return databaseInfo{}, fmt.Errorf("count entities of %s: %w", db, err)
	}
	info := databaseInfo{Name: db, Entities: n}
	if id != "" {
		info.Schema = &id
	}
	return info, nil
}

// keyPage is the answer of GET /api/databases/{db}/keys.
type keyPage struct {
	Keys []string `json:"keys"`
	// Next is the cursor of the following page; absent on the last page.
	Next string `json:"next,omitempty"`
}

// handleListEntityKeys lists a database's entity keys in key (byte) order, one
// page at a time, from the key index: O(page size) once the database is
// indexed. The cursor is the last key of the previous page, so a
// key appears at most once across pages whatever is written meanwhile,
// and every key that exists throughout the listing appears.
func (s *restServer) handleListEntityKeys(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	prefix, limit, after, err := listParams(r)
	if err != nil {
		return err
	}
	docs, err := boolParam(r, "include_docs")
	if err != nil {
		return err
	}
	keys, more, err := s.catalog.keys.page(r.Context(), db, prefix, after, limit)
	if err != nil {
		return fmt.Errorf("list keys of %s: %w", db, err)
	}
	page := keyPage{Keys: keys}
	if more {
		page.Next = encodeCursor(keys[len(keys)-1])
	}
	if !docs {
		writeJSON(w, http.StatusOK, page)
		return nil
	}
	items, err := s.keyItems(r.Context(), db, keys)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, docPage{Items: items, Next: page.Next})
	return nil
}

// docPage is the answer of GET /api/databases/{db}/keys?include_docs=true.
type docPage struct {
	Items []keyItem `json:"items"`
	// Next is as in keyPage.
	Next string `json:"next,omitempty"`
}

// keyItem is one entity of a docPage.
type keyItem struct {
	Key  string          `json:"key"`
	ETag string          `json:"etag"`
	Doc  json.RawMessage `json:"doc"`
}

// keyItems reads the entities of a page of keys. One deleted since the
// page was listed is left out.
func (s *restServer) keyItems(ctx context.Context, db string, keys []string) ([]keyItem, error) {
	items := make([]keyItem, 0, len(keys))
	for _, k := range keys {
		doc, etag, found, err := s.readEntity(ctx, db, k)
		if err != nil {
			return nil, err
		}
		if found {
			items = append(items, keyItem{Key: k, ETag: etag, Doc: doc})
		}
	}
	return items, nil
}

// boolParam reads the query parameter name as true or false; absent is
// false.
func boolParam(r *http.Request, name string) (bool, error) {
	q := r.URL.Query()
	if !q.Has(name) {
		return false, nil
	}
	b, err := strconv.ParseBool(q.Get(name))
	if err != nil || len(q[name]) > 1 {
		return false, reqErrorf(errInvalid, "%s %q: want true or false", name, q.Get(name))
	}
	return b, nil
}

// listParams reads ?prefix=, ?limit= and ?cursor= of a listing: the key
// prefix, the page size and the key to start after ("" for the start).
func listParams(r *http.Request) (prefix string, limit int, after string, err error) {
	q := r.URL.Query()
	prefix, limit = q.Get("prefix"), defaultListLimit
	if prefix != "" {
		if err := validateEntityKey(prefix); err != nil {
			return "", 0, "", reqPrefixf(err, "prefix")
		}
	}
	if q.Has("limit") {
		limit, err = strconv.Atoi(q.Get("limit"))
		if err != nil || limit < 1 || limit > maxListLimit {
			return "", 0, "", reqErrorf(errInvalid, "limit %q: want a number from 1 to %d", q.Get("limit"), maxListLimit)
		}
	}
	if q.Has("cursor") {
		if after, err = decodeCursor(q.Get("cursor")); err != nil {
			return "", 0, "", err
		}
	}
	return prefix, limit, after, nil
}

// encodeCursor makes the opaque cursor that resumes a listing after key:
// the key in unpadded base64url.
func encodeCursor(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

// decodeCursor inverts encodeCursor; anything that does not decode to a
// valid entity key is errInvalid.
func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !utf8.Valid(b) || validateEntityKey(string(b)) != nil {
		return "", reqErrorf(errInvalid, "cursor %q is not one this server issued", c)
	}
	return string(b), nil
}

// handleDeleteDatabase is DELETE /api/databases/{db}: it deletes every
// entity of db, each through the write path of a single DELETE (entity
// lock, owner's cache, durable before counted, key index), then the
// binding, and answers {"deleted": N}. A run cut short (a crash, a lost
// client) leaves some entities; repeating the request deletes the rest,
// and deleting a database that has nothing left answers 0.
func (s *restServer) handleDeleteDatabase(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	n, err := s.deleteEntities(r.Context(), db)
	if err != nil {
		return fmt.Errorf("delete database %s after %d entities: %w", db, n, err)
	}
	if err := s.bind(r.Context(), db, ""); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "database deleted", attrDB, db, slog.Int("count", n), attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
	return nil
}

// deleteEntities deletes db's entities and returns how many it deleted.
// It walks the key index page by page, then walks it again while a walk
// still deleted something, so that entities written meanwhile go too; an
// entity already gone (deleted meanwhile) is not counted.
func (s *restServer) deleteEntities(ctx context.Context, db string) (int, error) {
	total := 0
	for {
		n, err := s.deletePass(ctx, db)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// deletePass deletes the entities the key index lists for db, one page
// after another, each through the write path of a single DELETE.
func (s *restServer) deletePass(ctx context.Context, db string) (int, error) {
	n, after := 0, ""
	for {
		keys, more, err := s.catalog.keys.page(ctx, db, "", after, maxListLimit)
		if err != nil {
			return n, err
		}
		for _, k := range keys {
			_, err := s.proc.Process(ctx, &pb.EntityOp{DatabaseName: db, EntityKey: k, Operation: pb.Operation_DELETE})
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
