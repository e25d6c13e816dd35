package main

// The REST handlers of databases: GET /api/databases, GET, PUT and DELETE
// /api/databases/{db} (schema bindings, deletion) and the listing of a
// database's entity keys. They translate HTTP to calls of the data plane
// (dataplane.go) and its answers back.

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"
)

// handleListDatabases lists the databases the principal may use.
func (s *restServer) handleListDatabases(w http.ResponseWriter, r *http.Request, p principal) error {
	dbs, err := s.data.listDatabases(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, dbs)
	return nil
}

// handleGetDatabase answers a database's binding and entity count; 404
// when it has neither entities nor a binding.
func (s *restServer) handleGetDatabase(w http.ResponseWriter, r *http.Request, p principal) error {
	info, err := s.data.database(r.Context(), r.PathValue("db"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// handlePutDatabase sets a database's settings: its schema binding
// ({"schema": ID}, or null or "" to unbind) and how many versions of each
// entity it keeps ({"max_versions": N}, or null for the -max-versions
// default); either or both. A setting the body leaves out is kept.
func (s *restServer) handlePutDatabase(w http.ResponseWriter, r *http.Request, p principal) error {
	db, err := pathDB(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	set, err := decodeSettingsBody(body)
	if err != nil {
		return err
	}
	if set.versions {
		if err := s.data.setMaxVersions(r.Context(), db, set.maxVersions); err != nil {
			return err
		}
		s.log.InfoContext(r.Context(), "database version count set", attrDB, db, attrClient, p.clientID)
	}
	if !set.schema {
		info, err := s.data.databaseInfo(r.Context(), db)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, info)
		return nil
	}
	info, err := s.data.bind(r.Context(), db, set.id)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "database binding set", attrDB, db, attrSchema, set.id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, info)
	return nil
}

// databaseSettings is what a PUT /api/databases/{db} body sets: the
// schema binding when schema (id "": unbind), the version count when
// versions (maxVersions nil: the default).
type databaseSettings struct {
	schema, versions bool
	id               string
	maxVersions      *int
}

// decodeSettingsBody parses {"schema": ID | "" | null, "max_versions": N
// | null}, at least one of them.
func decodeSettingsBody(body []byte) (databaseSettings, error) {
	const shape = `{"schema": ID or null, "max_versions": N or null}`
	var b struct {
		Schema      json.RawMessage `json:"schema"`
		MaxVersions json.RawMessage `json:"max_versions"`
	}
	if err := decodeJSONBody(body, &b, shape); err != nil {
		return databaseSettings{}, err
	}
	if b.Schema == nil && b.MaxVersions == nil {
		return databaseSettings{}, reqErrorf(errInvalid, `body must be %s: it has neither "schema" (null or "" unbinds) nor "max_versions"`, shape)
	}
	var set databaseSettings
	if b.Schema != nil {
		var id *string
		if err := json.Unmarshal(b.Schema, &id); err != nil {
			return databaseSettings{}, reqErrorf(errInvalid, `body must be %s: "schema" is not a string or null`, shape)
		}
		set.schema = true
		if id != nil {
			set.id = *id
		}
	}
	if b.MaxVersions != nil {
		if err := json.Unmarshal(b.MaxVersions, &set.maxVersions); err != nil {
			return databaseSettings{}, reqErrorf(errInvalid, `body must be %s: "max_versions" is not a whole number or null`, shape)
		}
		set.versions = true
	}
	return set, nil
}

// keyPage is the answer of GET /api/databases/{db}/keys.
type keyPage struct {
	Keys []string `json:"keys"`
	// Next is the cursor of the following page; absent on the last page.
	Next string `json:"next,omitempty"`
}

// handleListEntityKeys lists a database's entity keys in key order, one
// page at a time (see dataPlane.listKeys), with their documents when
// ?include_docs=true (listDocs).
func (s *restServer) handleListEntityKeys(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := listParams(r)
	if err != nil {
		return err
	}
	docs, err := boolParam(r, "include_docs")
	if err != nil {
		return err
	}
	db := r.PathValue("db")
	keys, more, err := s.data.listKeys(r.Context(), db, q)
	if err != nil {
		return err
	}
	if docs {
		return s.listDocs(w, r, db, keys, more)
	}
	var next string
	if more {
		next = encodeCursor(keys[len(keys)-1])
	}
	writeJSON(w, http.StatusOK, keyPage{Keys: keys, Next: next})
	return nil
}

// listDocs answers a page of keys with their documents,
// {"items":[{"key":K,"etag":E,"modified":T,"doc":D},...],"next":C}, streamed one
// document at a time (dataPlane.eachDoc). The page ends early, with next
// after its last item, when the documents reach -max-response-bytes or a
// read fails after the first item; more says whether keys follow keys.
func (s *restServer) listDocs(w http.ResponseWriter, r *http.Request, db string, keys []string, more bool) error {
	st := &jsonStream{w: w}
	n, err := s.data.eachDoc(r.Context(), db, keys, func(k string, doc []byte, m docMeta, found bool) error {
		if !found {
			return nil // deleted since it was listed
		}
		sep := `,`
		if !st.started {
			sep = `{"items":[`
		}
		return st.write([]byte(sep+`{"key":`), jsonText(k), []byte(`,"etag":`), jsonText(m.etag), modifiedMember(m), []byte(`,"doc":`), doc, []byte(`}`))
	})
	switch {
	case err != nil && !st.started:
		return err
	case err != nil:
		s.endEarly(r, st, err)
	}
	end := `]`
	if n < len(keys) || more {
		end += `,"next":` + string(jsonText(encodeCursor(keys[max(n, 1)-1])))
	}
	if !st.started {
		end = `{"items":[` + end
	}
	st.write([]byte(end + "}\n"))
	return nil
}

// boolParam reads the query parameter name as true or false, written so
// (API.md: anything else is 400, "1" and "TRUE" included); absent is
// false.
func boolParam(r *http.Request, name string) (bool, error) {
	q := r.URL.Query()
	if !q.Has(name) {
		return false, nil
	}
	if err := repeatedParam(q, name); err != nil {
		return false, err
	}
	switch v := q.Get(name); v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, reqErrorf(errInvalid, "%s %q: want true or false", name, v)
	}
}

// listParams reads ?prefix=, ?limit= and ?cursor= of a listing: the key
// prefix, the page size and the key to start after ("" for the start).
func listParams(r *http.Request) (keyQuery, error) {
	q := r.URL.Query()
	k := keyQuery{prefix: q.Get("prefix"), limit: defaultListLimit}
	if err := repeatedParam(q, "prefix", "limit", "cursor"); err != nil {
		return keyQuery{}, err
	}
	if k.prefix != "" {
		if err := validateEntityKey(k.prefix); err != nil {
			return keyQuery{}, reqPrefixf(err, "prefix")
		}
	}
	if q.Has("limit") {
		n, ok := decimalParam(q.Get("limit"), 1, maxListLimit)
		if !ok {
			return keyQuery{}, reqErrorf(errInvalid, "limit %q: want a number from 1 to %d", q.Get("limit"), maxListLimit)
		}
		k.limit = int(n)
	}
	if q.Has("cursor") {
		after, err := decodeCursor(q.Get("cursor"))
		if err != nil {
			return keyQuery{}, err
		}
		k.after = after
	}
	return k, nil
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
// entity and then the binding (dataPlane.deleteDatabase) and answers
// {"deleted": N}; repeating it after a run cut short deletes the rest.
func (s *restServer) handleDeleteDatabase(w http.ResponseWriter, r *http.Request, p principal) error {
	db := r.PathValue("db")
	n, err := s.data.deleteDatabase(r.Context(), db)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "database deleted", attrDB, db, slog.Int("count", n), attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
	return nil
}

// modifiedMember is `,"modified":"<RFC 3339 time>"` for m's write time,
// nothing when it is unknown.
func modifiedMember(m docMeta) []byte {
	if m.modified.IsZero() {
		return nil
	}
	b := append([]byte(`,"modified":"`), m.modified.Format(time.RFC3339Nano)...)
	return append(b, '"')
}
