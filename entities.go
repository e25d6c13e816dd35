package main

// The REST handlers of entities: GET, PUT, PATCH and DELETE /entity/{db}
// and POST /api/databases/{db}/get. They translate HTTP to calls of the
// data plane (dataplane.go) and its answers back; like every handler they
// return errors instead of writing them (rest.go does).

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

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
	body, err := s.readEntitiesBody(w, r)
	if err != nil {
		return err
	}
	docs, err := decodeEntityBody(body)
	if err != nil {
		return err
	}
	keys := make([]string, len(docs))
	for i, d := range docs {
		keys[i] = d.key
	}
	noteKeys(r.Context(), keys)
	ops := make([]*pb.EntityOp, len(docs))
	scans := make([]docScan, len(docs))
	for i, d := range docs {
		ops[i] = &pb.EntityOp{DatabaseName: db, EntityKey: d.key, Operation: pb.Operation_PUT, Payload: d.doc,
			Principal: principalName(p)}
		scans[i] = d.scan
	}
	if err := batchPreconditions(r, ops); err != nil {
		return err
	}
	// The audit line of a one-key PUT names the version it replaced.
	ops[0].WantPrevious = s.audit != nil && len(ops) == 1
	resps, err := s.data.put(r.Context(), schemaID, ops, scans)
	if err != nil {
		return err
	}
	if len(resps) == 1 && resps[0].GetVersion() != "" {
		w.Header()["Etag"] = etagHeader(r.Context(), resps[0].GetVersion())
		noteETagBefore(r.Context(), resps[0].GetPreviousVersion())
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.DebugContext(r.Context(), "entities stored", attrDB, db, slog.Int("count", len(docs)), attrClient, p.clientID)
	}
	writeStatusOK(w)
	return nil
}

// statusOKBody is the answer {"status": "ok"} as writeJSON writes it.
var statusOKBody = []byte("{\"status\":\"ok\"}\n")

// writeStatusOK answers 200 {"status": "ok"} (a write's answer) without
// encoding it each time; net/http sets its Content-Length.
func writeStatusOK(w http.ResponseWriter) {
	w.Header()["Content-Type"] = contentTypeJSON
	w.Write(statusOKBody)
}

// entityBodyShape is what PUT /entity/{db} takes, for error sentences.
const entityBodyShape = "a JSON object mapping entity keys to documents"

// decodeEntityBody parses a PUT /entity body: a non-empty JSON object of
// entity keys and documents (the data plane checks both). Keys come back
// sorted so writes happen in a stable order. Most bodies are split in one
// pass (splitEntityBody), which notes each document as valid JSON: body
// must have passed readEntitiesBody's check of its whole text, which the
// data plane then does not repeat per document. The rest, and every
// malformed one, are decoded by encoding/json, whose errors the client
// reads.
func decodeEntityBody(body []byte) ([]entityDoc, error) {
	if docs, ok := splitEntityBody(body); ok {
		return docs, nil
	}
	var m map[string]json.RawMessage
	if err := decodeJSONBody(body, &m, entityBodyShape); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, reqErrorf(errInvalid, "body must be %s, with at least one key", entityBodyShape)
	}
	docs := make([]entityDoc, 0, len(m))
	for k, v := range m {
		docs = append(docs, entityDoc{key: k, doc: v})
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].key < docs[j].key })
	return docs, nil
}

// handleGetEntity answers an entity's document with its ETag, or 304 when
// If-None-Match names its version.
func (s *restServer) handleGetEntity(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.getEntity(r.Context(), w, r, r.PathValue("db"))
}

// getEntity is handleGetEntity of database db, the route's {db}, within
// ctx, the request's context: r's own may be net/http's, when the warm
// GET did not copy r to change it (serveGetEntity); only r's URL and
// headers are read.
func (s *restServer) getEntity(ctx context.Context, w http.ResponseWriter, r *http.Request, db string) error {
	if err := validateDBName(db); err != nil {
		return err
	}
	key, err := keyParam(r)
	if err != nil {
		return err
	}
	inm, err := parseETags("If-None-Match", r.Header["If-None-Match"])
	if err != nil {
		return err
	}
	if n, ok, err := versionParam(r); err != nil || ok {
		if err != nil {
			return err
		}
		return s.handleGetVersion(w, withCtx(r, ctx, patternGetEntity), db, key, n, inm)
	}
	resp, held, err := s.data.get(ctx, db, key, answerSpace(ctx))
	if err != nil {
		return err
	}
	defer held.release()
	h := w.Header()
	if v := resp.GetVersion(); v != "" {
		h["Etag"] = etagHeader(ctx, v)
		if inm != "" && matchesNoneOf(inm, v) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
	}
	h["Content-Type"] = contentTypeJSON
	w.Write(resp.GetResult())
	return nil
}

// etagHeader is the ETag header value of version v, in the slice the
// request's info keeps for it when ctx carries one (an answer's header
// values are not changed in place once set, see contentTypeJSON).
func etagHeader(ctx context.Context, v string) []string {
	if in, _ := ctx.Value(requestInfoKey{}).(*requestInfo); in != nil {
		in.etag[0] = etagOf(v)
		return in.etag[:]
	}
	return []string{etagOf(v)}
}

// contentTypeJSON is the Content-Type header value of a JSON answer, set
// without allocating: http.Header values are replaced or appended to
// (which copies a full slice), never written in place, so one slice can
// serve every response.
var contentTypeJSON = []string{"application/json"}

// handlePatchEntity applies a merge patch or JSON Patch to one entity
// (API.md, PATCH) and answers the patched document with its new ETag; a
// principal without read gets {"status": "ok"} and the ETag instead.
func (s *restServer) handlePatchEntity(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	schemaID, err := schemaParam(r)
	if err != nil {
		return err
	}
	// The data plane checks the patch's text, as it does a gRPC payload's.
	body, err := s.readRawBody(w, r)
	if err != nil {
		return err
	}
	req := &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_PATCH, Payload: body,
		ContentType: r.Header.Get("Content-Type"), Principal: principalName(p), WantPrevious: s.audit != nil}
	if err := headerPreconditions(r, req); err != nil {
		return err
	}
	resp, err := s.data.patch(r.Context(), p, schemaID, req)
	if err != nil {
		return err
	}
	noteETagBefore(r.Context(), resp.GetPreviousVersion())
	w.Header().Set("ETag", etagOf(resp.GetVersion()))
	if resp.GetResult() == nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(resp.GetResult())
	return nil
}

// handleDeleteEntity deletes one entity, under If-Match or If-None-Match.
func (s *restServer) handleDeleteEntity(w http.ResponseWriter, r *http.Request, p principal) error {
	db, key, err := entityTarget(r)
	if err != nil {
		return err
	}
	req := &pb.EntityOp{DatabaseName: db, EntityKey: key, Operation: pb.Operation_DELETE, Principal: principalName(p),
		WantPrevious: s.audit != nil}
	if err := headerPreconditions(r, req); err != nil {
		return err
	}
	resp, err := s.data.delete(r.Context(), req)
	if err != nil {
		return err
	}
	noteETagBefore(r.Context(), resp.GetPreviousVersion())
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// schemaParam returns the validated ?schema= of a write, "" when absent.
func schemaParam(r *http.Request) (string, error) {
	q := r.URL.Query()
	if !q.Has("schema") {
		return "", nil
	}
	if err := repeatedParam(q, "schema"); err != nil {
		return "", err
	}
	id := q.Get("schema")
	return id, validateSchemaID(id)
}

// entityTarget returns the validated database and ?key= of an entity route.
func entityTarget(r *http.Request) (db, key string, err error) {
	if db, err = pathDB(r); err != nil {
		return "", "", err
	}
	if key, err = keyParam(r); err != nil {
		return "", "", err
	}
	return db, key, nil
}

// keyParam returns the validated ?key= of an entity route.
func keyParam(r *http.Request) (string, error) {
	key, n := queryParam(r.URL.RawQuery, "key")
	switch n {
	case 0:
		return "", reqErrorf(errInvalid, "missing ?key= query parameter")
	case 1:
	default:
		return "", reqErrorf(errInvalid, "?key= is given %d times; give it once", n)
	}
	if err := validateEntityKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// queryParam returns the first value of query parameter name in the raw
// query and how many times it is given, as url.ParseQuery reads the query
// (pairs split at '&', a pair with ';' or a bad escape skipped, nothing
// from a query of more than maxQueryParams pairs), without building its
// map: the entity routes read one parameter per request.
func queryParam(raw, name string) (first string, n int) {
	if strings.Count(raw, "&") >= maxQueryParams {
		return "", 0
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != name {
			continue
		}
		v, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		if n == 0 {
			first = v
		}
		n++
	}
	return first, n
}

// repeatedParam returns the 400 of the first of names that q gives more
// than once: a read with two limits, cursors or schemas would otherwise
// take one of them silently.
func repeatedParam(q url.Values, names ...string) error {
	for _, name := range names {
		if n := len(q[name]); n > 1 {
			return reqErrorf(errInvalid, "?%s= is given %d times; give it once", name, n)
		}
	}
	return nil
}

// decimalParam parses a number of a query parameter or header, from lo
// to hi: decimal digits, the first not 0 unless the number is 0 itself,
// nothing else. strconv alone takes "+5", "-0" and "0005", which the
// server never writes and would answer as 5 and 0; a sign, a space, a
// leading zero, a fraction or a base prefix is refused, as any malformed
// parameter, with the route's own sentence.
func decimalParam(s string, lo, hi uint64) (uint64, bool) {
	if s == "" || (s[0] == '0' && len(s) > 1) || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// maxQueryParams is url.ParseQuery's limit of pairs in a query.
const maxQueryParams = 10000

// getManyShape is the body POST /api/databases/{db}/get takes.
const getManyShape = `{"keys": [entity key, ...]}`

// handleGetMany is POST /api/databases/{db}/get {"keys": [...]}: the
// documents and ETags of up to the batch budget of keys, the keys that do
// not exist, and the keys not answered because the answer reached
// -max-response-bytes (or a read failed after the first document):
// {"documents":{...},"etags":{...},"modified":{...},"missing":[...],"remaining":[...]},
// the documents streamed one at a time.
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
	noteKeys(r.Context(), req.Keys)
	st := &jsonStream{w: w}
	etags, modified, missing := map[string]string{}, map[string]string{}, []string{}
	remaining, err := s.data.getMany(r.Context(), db, req.Keys, func(k string, doc []byte, m docMeta, found bool) error {
		if !found {
			missing = append(missing, k)
			return nil
		}
		sep := `,`
		if len(etags) == 0 {
			sep = `{"documents":{`
		}
		etags[k] = m.etag
		if !m.modified.IsZero() {
			modified[k] = m.modified.Format(time.RFC3339Nano)
		}
		return st.write([]byte(sep), jsonText(k), []byte(`:`), doc)
	})
	switch {
	case err != nil && !st.started:
		return err
	case err != nil:
		s.endEarly(r, st, err)
	}
	head := `}`
	if len(etags) == 0 {
		head = `{"documents":{}`
	}
	st.write([]byte(head+`,"etags":`), jsonText(etags), []byte(`,"modified":`), jsonText(modified), []byte(`,"missing":`), jsonText(missing),
		[]byte(`,"remaining":`), jsonText(remaining), []byte("}\n"))
	return nil
}
