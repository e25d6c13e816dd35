package main

// The REST handlers of queries (API.md, Finding documents): find,
// explain, and the indexes (CouchDB's _find, _explain and _index), and
// the data plane's index operations they call.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	pb "deltadatabase/proto"
)

// handleFind answers POST /api/databases/{db}/find.
func (s *restServer) handleFind(w http.ResponseWriter, r *http.Request, p principal) error {
	db, req, err := s.findBody(w, r)
	if err != nil {
		return err
	}
	ans, release, err := s.data.find(r.Context(), db, req)
	if err != nil {
		return err
	}
	defer release()
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// handleExplain answers POST /api/databases/{db}/explain.
func (s *restServer) handleExplain(w http.ResponseWriter, r *http.Request, p principal) error {
	db, req, err := s.findBody(w, r)
	if err != nil {
		return err
	}
	ans, err := s.data.explain(r.Context(), db, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// findBody reads the database and the body of /find and /explain.
func (s *restServer) findBody(w http.ResponseWriter, r *http.Request) (string, findRequest, error) {
	db, err := pathDB(r)
	if err != nil {
		return "", findRequest{}, err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return "", findRequest{}, err
	}
	req, err := parseFindRequest(body)
	return db, req, err
}

// indexRequest is the body of POST /api/databases/{db}/index (CouchDB's
// _index).
type indexRequest struct {
	Index *struct {
		Fields []json.RawMessage `json:"fields"`
	} `json:"index"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// indexShape is the body POST .../index takes, for error sentences.
const indexShape = `{"index": {"fields": ["field", ...]}, "name": "name", "type": "json"}`

// handleCreateIndex answers POST /api/databases/{db}/index.
func (s *restServer) handleCreateIndex(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	var req indexRequest
	if err := s.decodeBody(w, r, &req, indexShape); err != nil {
		return err
	}
	ans, err := s.data.createIndex(r.Context(), db, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// handleListIndexes answers GET /api/databases/{db}/index.
func (s *restServer) handleListIndexes(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	ans, err := s.data.listIndexes(r.Context(), db)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// handleDeleteIndex answers DELETE /api/databases/{db}/index/{name}.
func (s *restServer) handleDeleteIndex(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	if err := s.data.deleteIndex(r.Context(), db, r.PathValue("name")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// indexCreated answers POST .../index: "created", or "exists" when an
// index of those fields was there (its name is answered).
type indexCreated struct {
	Result string `json:"result"`
	Name   string `json:"name"`
}

// indexList answers GET .../index: the scan (_all_docs) and every index,
// by name.
type indexList struct {
	TotalRows int         `json:"total_rows"`
	Indexes   []indexInfo `json:"indexes"`
}

// createIndex defines an index of db, then has every worker build its
// part (within -find-timeout; a part not built by then is built by the
// first query that needs it).
func (d *dataPlane) createIndex(ctx context.Context, db string, req indexRequest) (indexCreated, error) {
	def, err := checkIndexRequest(db, req)
	if err != nil {
		return indexCreated{}, err
	}
	def, created, err := d.catalog.indexes.create(ctx, db, def)
	if err != nil {
		return indexCreated{}, err
	}
	ans := indexCreated{Result: "exists", Name: def.Name}
	if created {
		ans.Result = "created"
	}
	return ans, d.buildIndex(ctx, db, def)
}

// checkIndexRequest checks a POST .../index body and returns the
// definition it asks for (without its ID).
func checkIndexRequest(db string, req indexRequest) (indexDef, error) {
	if err := validateDBName(db); err != nil {
		return indexDef{}, err
	}
	if req.Type != "" && req.Type != "json" {
		return indexDef{}, reqErrorf(errInvalid, `index type %q is not supported: only "json"`, req.Type)
	}
	if req.Index == nil || len(req.Index.Fields) == 0 {
		return indexDef{}, reqErrorf(errInvalid, "body must be %s, with at least one field", indexShape)
	}
	if len(req.Index.Fields) > maxIndexFields {
		return indexDef{}, reqErrorf(errTooLarge, "an index has at most %d fields", maxIndexFields)
	}
	def := indexDef{Name: req.Name}
	for _, raw := range req.Index.Fields {
		name, desc, err := sortField(raw)
		if err != nil || desc {
			return indexDef{}, reqErrorf(errInvalid, `index fields are field names or {"field": "asc"}`)
		}
		def.Fields = append(def.Fields, name)
	}
	if _, err := parsePaths(def.Fields); err != nil {
		return indexDef{}, err
	}
	if def.Name == "" {
		def.Name = defaultIndexName(def.Fields)
	}
	return def, validateIdent("index name", def.Name, maxIndexNameLen)
}

// buildIndex has every worker build its part of def (a count of its
// entries, which builds first).
func (d *dataPlane) buildIndex(ctx context.Context, db string, def indexDef) error {
	fr, ok := d.proc.(findRouter)
	if !ok {
		return nil
	}
	defs, err := d.catalog.indexes.list(ctx, db)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.lim.findTime())
	defer cancel()
	m := fr.findMembers()
	_, err = fanOut(ctx, fr, m, db, func(self string) *pb.FindOp {
		return &pb.FindOp{Selector: []byte("{}"), Index: def.spec(), CountOnly: true, Members: m.ids, Self: self,
			LiveIndexes: indexIDs(defs)}
	})
	if ctx.Err() != nil {
		return nil // the workers go on building; the first query waits
	}
	if err != nil {
		return fmt.Errorf("build index %s of %s: %w", def.Name, db, err)
	}
	return nil
}

// indexIDs are the IDs of defs.
func indexIDs(defs []indexDef) []string {
	ids := make([]string, 0, len(defs))
	for _, d := range defs {
		ids = append(ids, d.ID)
	}
	return ids
}

// listIndexes lists db's indexes as CouchDB's GET _index does: the scan
// (_all_docs) first, then each index by name.
func (d *dataPlane) listIndexes(ctx context.Context, db string) (indexList, error) {
	if err := validateDBName(db); err != nil {
		return indexList{}, err
	}
	defs, err := d.catalog.indexes.list(ctx, db)
	if err != nil {
		return indexList{}, err
	}
	out := indexList{Indexes: []indexInfo{infoOf(nil)}}
	for _, def := range sortIndexDefs(defs) {
		out.Indexes = append(out.Indexes, infoOf(&def))
	}
	out.TotalRows = len(out.Indexes)
	return out, nil
}

// deleteIndex deletes db's index name, then tells the workers to drop
// their parts (those it cannot reach drop theirs at their next query of
// db).
func (d *dataPlane) deleteIndex(ctx context.Context, db, name string) error {
	if err := validateDBName(db); err != nil {
		return err
	}
	if err := validateIdent("index name", name, maxIndexNameLen); err != nil {
		return err
	}
	if err := d.catalog.indexes.remove(ctx, db, name); err != nil {
		return err
	}
	fr, ok := d.proc.(findRouter)
	if !ok {
		return nil
	}
	defs, err := d.catalog.indexes.list(ctx, db)
	if err != nil {
		return nil
	}
	m := fr.findMembers()
	// An empty scan: its only effect is the workers' keepOnly. Its
	// failure leaves parts to be dropped later, which is harmless.
	fanOut(ctx, fr, m, db, func(self string) *pb.FindOp {
		return &pb.FindOp{Selector: []byte("{}"), Members: m.ids, Self: self, LiveIndexes: indexIDs(defs)}
	})
	return nil
}
