package main

// The REST handlers of databases: GET /api/databases, GET, PUT and DELETE
// /api/databases/{db} (schema bindings, deletion) and the listing of a
// database's entity keys.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"unicode/utf8"

	pb "deltadatabase/proto"
)

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
