package main

// The OpenAPI document against the code: every route of the mux is in
// openapi.json and every operation of openapi.json is a route, with the
// permission the route table gives it, the statuses the route tests see,
// and error answers of the shape writeError writes; and the route tables
// of README.md and API.md against the document. CI also validates the
// document against the OpenAPI 3.1 schema with a validator from npm.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// openAPIOperation is what the tests read of one operation.
type openAPIOperation struct {
	OperationID string `json:"operationId"`
	// Permission is x-permission: none, any (a valid credential), read,
	// write or admin.
	Permission string `json:"x-permission"`
	// Security is nil when the operation inherits the document's (bearer).
	Security    *[]map[string][]string     `json:"security"`
	Parameters  []openAPIParameter         `json:"parameters"`
	RequestBody json.RawMessage            `json:"requestBody"`
	Responses   map[string]openAPIResponse `json:"responses"`
}

// openAPIParameter is a parameter or a reference to one.
type openAPIParameter struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

// openAPIResponse is a response or a reference to one.
type openAPIResponse struct {
	Ref     string                     `json:"$ref"`
	Headers map[string]json.RawMessage `json:"headers"`
	Content map[string]struct {
		Schema struct {
			Ref   string `json:"$ref"`
			OneOf []struct {
				Ref string `json:"$ref"`
			} `json:"oneOf"`
		} `json:"schema"`
	} `json:"content"`
}

// openAPIDoc is what the tests read of openapi.json.
type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Servers    []struct{ URL string }                `json:"servers"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Parameters map[string]openAPIParameter `json:"parameters"`
		Responses  map[string]openAPIResponse  `json:"responses"`
		Schemas    map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

// loadOpenAPI reads openapi.json and returns the document and its
// operations by mux pattern ("GET /entity/{db}").
func loadOpenAPI(t *testing.T) (openAPIDoc, map[string]openAPIOperation) {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	ops := map[string]openAPIOperation{}
	for path, item := range doc.Paths {
		for method, rawOp := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			var op openAPIOperation
			if err := json.Unmarshal(rawOp, &op); err != nil {
				t.Fatalf("openapi.json %s %s: %v", method, path, err)
			}
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return doc, ops
}

// routeAccess returns, by mux pattern, the access each route of the
// package's source requires: "none" for s.open(...), "any" for
// s.need(0, ...), else the permission of s.need(permX, ...).
func routeAccess(t *testing.T) map[string]string {
	access := map[string]string{}
	for _, c := range muxCalls(t) {
		access[c.pattern] = wrapperAccess(c.call.Args[1])
	}
	return access
}

// wrapperAccess reads the access of a route's handler expression:
// s.open(h), s.need(0, h) or s.need(permX, h) (or s.needFeed, need with
// stream tickets); "unknown" for anything else.
func wrapperAccess(e ast.Expr) string {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return "unknown"
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	switch {
	case !ok:
		return "unknown"
	case sel.Sel.Name == "open":
		return "none"
	case sel.Sel.Name != "need" && sel.Sel.Name != "needFeed" || len(call.Args) != 2:
		return "unknown"
	}
	switch a := call.Args[0].(type) {
	case *ast.BasicLit:
		if a.Value == "0" {
			return "any"
		}
	case *ast.Ident:
		if p, ok := strings.CutPrefix(a.Name, "perm"); ok {
			return strings.ToLower(p)
		}
	}
	return "unknown"
}

// TestOpenAPIMatchesRoutes fails when the route table and openapi.json
// disagree: a route missing from the document or an operation the mux
// lacks, a permission or security that differs from the route's wrapper,
// or a status the route tests see (routeTable, routeErrorCases) that the
// operation does not list.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	access := routeAccess(t)
	if len(access) < 10 {
		t.Fatalf("found only %d routes in the source; is the parser still right?", len(access))
	}
	for p := range access {
		if _, ok := ops[p]; !ok {
			t.Errorf("route %q is in the mux but not in openapi.json: document it (paths, parameters, body, every status)", p)
		}
	}
	ids := map[string]string{}
	for p, op := range ops {
		want, ok := access[p]
		if !ok {
			t.Errorf("openapi.json documents %q, which the mux does not register", p)
			continue
		}
		if other, dup := ids[op.OperationID]; dup || op.OperationID == "" {
			t.Errorf("%s: operationId %q is empty or also that of %s", p, op.OperationID, other)
		}
		ids[op.OperationID] = p
		if op.Permission != want {
			t.Errorf("%s: x-permission %q, the route requires %q", p, op.Permission, want)
		}
		// An open route has security [], or lists {} (no credential) beside
		// the bearer it takes optionally; the others inherit bearer.
		open := op.Security != nil && (len(*op.Security) == 0 || slices.ContainsFunc(*op.Security, func(req map[string][]string) bool { return len(req) == 0 }))
		if open != (want == "none") {
			t.Errorf("%s: security %v does not match access %q (open routes have security [] or [{}, ...], the others inherit bearer)", p, op.Security, want)
		}
		checkOperationStatuses(t, doc, p, op, want)
	}
	seen := map[string]map[int]bool{}
	note := func(pattern string, code int) {
		if seen[pattern] == nil {
			seen[pattern] = map[int]bool{}
		}
		seen[pattern][code] = true
	}
	for _, rc := range routeTable() {
		for _, code := range rc.want {
			note(rc.pattern, code)
		}
	}
	for pattern, cases := range routeErrorCases("/nonexistent") {
		for _, c := range cases {
			if pattern != "" {
				note(pattern, c.want)
			}
		}
	}
	for pattern, codes := range seen {
		op, ok := ops[pattern]
		if !ok {
			continue // reported above
		}
		for code := range codes {
			if _, ok := op.Responses[strconv.Itoa(code)]; !ok {
				t.Errorf("%s answers %d in the route tests, but openapi.json does not list it", pattern, code)
			}
		}
	}
}

// pathParam matches a {name} segment of a path.
var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// checkOperationStatuses checks what follows from the shape of one
// operation: a credential can be refused (401, 429; 403 where a
// permission is needed) or, an OIDC token, not checked for want of its
// provider (503), a database name or schema ID in the path can be
// malformed (400; every path parameter must be declared), a body can be malformed or too large (400, 413).
func checkOperationStatuses(t *testing.T, doc openAPIDoc, pattern string, op openAPIOperation, access string) {
	t.Helper()
	var need []string
	if access != "none" {
		// 503: an OpenID provider that cannot be reached while a bearer
		// token's keys are needed (errProviderUnavailable).
		need = append(need, "401", "429", "503")
	}
	if access != "none" && access != "any" {
		need = append(need, "403")
	}
	_, path, _ := strings.Cut(pattern, " ")
	for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
		declared := slices.ContainsFunc(op.Parameters, func(p openAPIParameter) bool {
			ref, isRef := strings.CutPrefix(p.Ref, "#/components/parameters/")
			if isRef {
				p = doc.Components.Parameters[ref]
			}
			if p.Name == m[1] && p.In == "path" && (ref == "db" || ref == "schemaId") {
				need = append(need, "400") // a validated name
			}
			return p.Name == m[1] && p.In == "path"
		})
		if !declared {
			t.Errorf("%s: path parameter %q is not declared", pattern, m[1])
		}
	}
	if len(op.RequestBody) > 0 {
		need = append(need, "400", "413")
	}
	for _, code := range need {
		if _, ok := op.Responses[code]; !ok {
			t.Errorf("%s: openapi.json lists no %s response, which the route can answer", pattern, code)
		}
	}
}

// TestOpenAPIReferences: every $ref of openapi.json names something the
// document holds, every referenced parameter is declared as it is used,
// and every error response (4xx and 5xx, but for the 422 of validate and
// the 503 of readyz, which answer their own objects with an "error"
// member) is the Error object, or for an import's report (which
// has an "error" member) one of it and the Error object: so are the
// import's 400, 413, 500 and 503, whose answers hold the report.
func TestOpenAPIReferences(t *testing.T) {
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	checkRefsResolve(t, tree)
	doc, ops := loadOpenAPI(t)
	for p, op := range ops {
		for code, resp := range op.Responses {
			n, _ := strconv.Atoi(code)
			if n < 400 || code == "422" || p == "GET /readyz" {
				continue
			}
			if r, ok := strings.CutPrefix(resp.Ref, "#/components/responses/"); ok {
				resp = doc.Components.Responses[r]
			}
			if p == "POST /api/databases/{db}/import" && slices.Contains([]string{"400", "413", "500", "503"}, code) && resp.Content["application/json"].Schema.Ref != "" {
				t.Errorf("%s %s: error body schema %q, want oneOf ImportReport, Error: the import answers its report with it", p, code, resp.Content["application/json"].Schema.Ref)
				continue
			}
			if p == "POST /api/databases/{db}/import" && resp.Content["application/json"].Schema.Ref == "" {
				// The report, or Error before anything was read.
				if got := resp.Content["application/json"].Schema.OneOf; len(got) != 2 || got[1].Ref != "#/components/schemas/Error" {
					t.Errorf("%s %s: error body schema %+v, want oneOf ImportReport, Error", p, code, got)
				}
				continue
			}
			if got := resp.Content["application/json"].Schema.Ref; got != "#/components/schemas/Error" {
				t.Errorf("%s %s: error body schema %q, want #/components/schemas/Error", p, code, got)
			}
		}
	}
}

// resolvePointer follows a local reference "#/a/b" in tree.
func resolvePointer(tree any, ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	v := tree
	for _, tok := range strings.Split(p, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q is not an object member", tok)
		}
		if v, ok = m[tok]; !ok {
			return nil, fmt.Errorf("no member %q", tok)
		}
	}
	return v, nil
}

// TestOpenAPIServed: GET /openapi.json needs no credential and answers
// the repository's openapi.json byte for byte.
func TestOpenAPIServed(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	rec := ts.do("GET", "/openapi.json", "", "", "")
	want, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != 200 || rec.Body.String() != string(want) || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET /openapi.json = %d %s, %d bytes; want 200 application/json and openapi.json (%d bytes)",
			rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len(), len(want))
	}
}

// TestOpenAPIRequestID: every operation declares the X-Request-ID a
// request may bring, and every response the X-Request-ID the server
// answers (ServeHTTP sets it on every answer, before routing).
func TestOpenAPIRequestID(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	for p, op := range ops {
		declared := slices.ContainsFunc(op.Parameters, func(par openAPIParameter) bool {
			if ref, ok := strings.CutPrefix(par.Ref, "#/components/parameters/"); ok {
				par = doc.Components.Parameters[ref]
			}
			return par.Name == "X-Request-ID" && par.In == "header"
		})
		if !declared {
			t.Errorf("%s: no X-Request-ID header parameter", p)
		}
		for code, resp := range op.Responses {
			if r, ok := strings.CutPrefix(resp.Ref, "#/components/responses/"); ok {
				resp = doc.Components.Responses[r]
			}
			if _, ok := resp.Headers["X-Request-ID"]; !ok {
				t.Errorf("%s %s: the response declares no X-Request-ID header", p, code)
			}
		}
	}
}

// queryParamUse matches a query parameter read in the source: q.Get("x"),
// q.Has("x"), q["x"], r.URL.Query().Get("x"), boolParam(r, "x").
var queryParamUse = regexp.MustCompile(`(?:\bq|Query\(\))(?:\.(?:Get|Has)\(|\[)"([A-Za-z_]+)"|boolParam\(r, "([A-Za-z_]+)"\)`)

// TestOpenAPIQueryParameters: every query parameter a handler reads is
// declared in openapi.json (if_match and if_none_match of a multi-key PUT
// once were not).
func TestOpenAPIQueryParameters(t *testing.T) {
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage
		Components struct{ Parameters map[string]openAPIParameter }
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, p := range doc.Components.Parameters {
		declared[p.Name+" "+p.In] = true
	}
	for _, item := range doc.Paths {
		for _, rawOp := range item {
			var op struct{ Parameters []openAPIParameter }
			json.Unmarshal(rawOp, &op)
			for _, p := range op.Parameters {
				declared[p.Name+" "+p.In] = true
			}
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range queryParamUse.FindAllStringSubmatch(string(src), -1) {
			read[m[1]+m[2]] = name
		}
	}
	if len(read) < 8 {
		t.Fatalf("found only %d query parameters in the source (%v); is the pattern still right?", len(read), read)
	}
	for name, file := range read {
		if !declared[name+" query"] {
			t.Errorf("%s reads the query parameter %q, which openapi.json does not declare", file, name)
		}
	}
}

// TestOpenAPIServersRelative: the document's server URLs are relative, so
// it is right wherever it is fetched from (another host, port or proxy).
func TestOpenAPIServersRelative(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if len(doc.Servers) == 0 {
		t.Fatal("openapi.json lists no servers")
	}
	for _, s := range doc.Servers {
		if !strings.HasPrefix(s.URL, "/") || strings.HasPrefix(s.URL, "//") {
			t.Errorf("server %q is not relative to the document", s.URL)
		}
	}
}

// TestOpenAPIForDatabase: GET /openapi.json?database=DB types DB's
// documents with its bound schema for a credential that may read DB, and
// answers the generic document to anyone else, or for an unbound database.
func TestOpenAPIForDatabase(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	schema := `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["messages"],
		"properties": {"title": {"type": "string"}, "messages": {"type": "array", "items": {"$ref": "#/definitions/message"}},
			"pair": {"type": "array", "items": [{"type": "string"}, {"type": "number"}], "additionalItems": false}},
		"definitions": {"message": {"type": "object", "required": ["role", "content"],
			"properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": "string"}}}}}`
	ts.mustDo(t, "PUT", "/schema/chat.v1", testAdminKey, schema, 200)
	ts.mustDo(t, "PUT", "/api/databases/chatdb", testAdminKey, `{"schema": "chat.v1"}`, 200)
	reader := ts.createKey(t, `{"name": "r", "permissions": ["read"], "databases": ["chatdb"]}`).Secret
	elsewhere := ts.createKey(t, `{"name": "o", "permissions": ["read"], "databases": ["other"]}`).Secret
	writer := ts.createKey(t, `{"name": "w", "permissions": ["write"]}`).Secret

	for _, c := range []struct {
		name, query, token string
		typed              bool
	}{
		{"no database", "", testAdminKey, false},
		{"no credential", "?database=chatdb", "", false},
		{"admin", "?database=chatdb", testAdminKey, true},
		{"a key reading chatdb", "?database=chatdb", reader, true},
		{"a key reading another database", "?database=chatdb", elsewhere, false},
		{"a key without read", "?database=chatdb", writer, false},
		{"an unbound database", "?database=unbound", testAdminKey, false},
	} {
		rec := ts.do("GET", "/openapi.json"+c.query, c.token, "", "")
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: GET /openapi.json%s = %d %s", c.name, c.query, rec.Code, rec.Body)
			continue
		}
		if generic := bytes.Equal(rec.Body.Bytes(), openAPIDocument); generic == c.typed {
			t.Errorf("%s: typed document %v, want %v", c.name, !generic, c.typed)
		}
		if vary := rec.Header().Get("Vary"); (c.query != "") != (vary == "Authorization") {
			t.Errorf("%s: Vary %q", c.name, vary)
		}
	}

	rec := ts.do("GET", "/openapi.json?database=chatdb", reader, "", "")
	var doc struct {
		Info       struct{ Title string }
		Components struct{ Schemas map[string]json.RawMessage }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var tree any
	json.Unmarshal(rec.Body.Bytes(), &tree)
	checkRefsResolve(t, tree)
	wantDoc := `{"description": "A document of database \"chatdb\": schema \"chat.v1\".", "type": "object", "required": ["messages"],
		"properties": {"title": {"type": "string"}, "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Document.message"}},
			"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "items": {"not": {}}}}}`
	if !jsonEqual(doc.Components.Schemas["Document"], []byte(wantDoc)) {
		t.Errorf("Document = %s\nwant %s", doc.Components.Schemas["Document"], wantDoc)
	}
	wantMsg := `{"type": "object", "required": ["role", "content"], "properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": "string"}}}`
	if !jsonEqual(doc.Components.Schemas["Document.message"], []byte(wantMsg)) {
		t.Errorf("Document.message = %s\nwant %s", doc.Components.Schemas["Document.message"], wantMsg)
	}
	if doc.Info.Title != "DeltaDatabase REST API: database chatdb" {
		t.Errorf("title = %q", doc.Info.Title)
	}

	for _, c := range []struct {
		query, token string
		want         int
	}{
		{"?database=bad..name", testAdminKey, 400},
		{"?database=", testAdminKey, 400},
		{"?database=chatdb&database=other", testAdminKey, 400},
		{"?database=chatdb", "dk_not-a-key", 401},
	} {
		rec := ts.do("GET", "/openapi.json"+c.query, c.token, "", "")
		var e struct{ Error string }
		if rec.Code != c.want || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("GET /openapi.json%s = %d %s, want %d with an error sentence", c.query, rec.Code, rec.Body, c.want)
		}
	}
}

// checkRefsResolve fails for every local $ref of tree that names nothing.
func checkRefsResolve(t *testing.T, tree any) {
	t.Helper()
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if _, err := resolvePointer(tree, ref); err != nil {
					t.Errorf("%s: $ref %q: %v", at, ref, err)
				}
			}
			for k, c := range v {
				walk(c, at+"/"+k)
			}
		case []any:
			for i, c := range v {
				walk(c, fmt.Sprintf("%s/%d", at, i))
			}
		}
	}
	walk(tree, "")
}

// TestDocumentComponents translates schemas of each shape the registry
// compiles into OpenAPI components.
func TestDocumentComponents(t *testing.T) {
	for _, c := range []struct{ name, schema, want string }{
		{"true", `true`, `{"Document": {"description": "D."}}`},
		{"false", `false`, `{"Document": {"description": "D.", "not": {}}}`},
		{"own description", `{"description": "A chat.", "type": "object"}`, `{"Document": {"description": "D. A chat.", "type": "object"}}`},
		{"recursion through #", `{"$id": "x", "type": "array", "items": {"$ref": "#"}}`,
			`{"Document": {"description": "D.", "type": "array", "items": {"$ref": "#/components/schemas/Document"}}}`},
		{"a pointer into the schema", `{"properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a"}}}`,
			`{"Document": {"description": "D.", "properties": {"a": {"type": "string"}, "b": {"$ref": "#/components/schemas/Document/properties/a"}}}}`},
		{"$defs of 2020-12, names made safe and distinct", `{"$schema": "https://json-schema.org/draft/2020-12/schema",
			"$defs": {"a b": {"type": "string"}, "a_b": {"type": "number"}, "c~1d": {"$ref": "#/$defs/a%20b"}}, "$ref": "#/$defs/a_b"}`,
			`{"Document": {"description": "D.", "$ref": "#/components/schemas/Document.a_b_2"},
			  "Document.a_b": {"type": "string"}, "Document.a_b_2": {"type": "number"}, "Document.c_1d": {"$ref": "#/components/schemas/Document.a_b"}}`},
		{"an anchor is dropped (accepts more, never less)", `{"properties": {"a": {"$ref": "#node", "type": "object"}}}`,
			`{"Document": {"description": "D.", "properties": {"a": {"type": "object"}}}}`},
		{"data stays data", `{"enum": [{"$ref": "#", "items": [1]}], "default": {"$schema": 1}, "dependencies": {"a": ["b"], "c": {"required": ["d"]}}}`,
			`{"Document": {"description": "D.", "enum": [{"$ref": "#", "items": [1]}], "default": {"$schema": 1}, "dependencies": {"a": ["b"], "c": {"required": ["d"]}}}}`},
	} {
		s, err := decodeJSON([]byte(c.schema))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(documentComponents(s, "D."))
		if !jsonEqual(got, []byte(c.want)) {
			t.Errorf("%s: documentComponents(%s) = %s\nwant %s", c.name, c.schema, got, c.want)
		}
	}
}

// docRoute matches a route named in a document: `METHOD /path`, the path
// ending at a space, a backquote, a query string or an optional part.
var docRoute = regexp.MustCompile("`(GET|PUT|POST|DELETE|PATCH) (/[^`\\s?\\[]*)")

// docNumber matches a number in a document with what binds to it (a
// date, a version, thousands): "412", "2019-09", "1,000", "1.5".
var docNumber = regexp.MustCompile(`[0-9](?:[0-9.,:-]*[0-9])?`)

// TestDocTablesMatchOpenAPI fails when the route tables of README.md and
// API.md drift from openapi.json: a row naming a route (in its first
// cell) that the document does not describe, a status the row gives that
// the operation does not list, or an operation no table names.
func TestDocTablesMatchOpenAPI(t *testing.T) {
	_, ops := loadOpenAPI(t)
	statuses := map[string]bool{} // every status some operation answers
	for _, op := range ops {
		for code := range op.Responses {
			statuses[code] = true
		}
	}
	tabled := map[string]bool{}
	for _, name := range []string{"README.md", "API.md"} {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(raw), "\n") {
			cells := strings.Split(line, "|")
			if !strings.HasPrefix(line, "|") || len(cells) < 3 {
				continue
			}
			var named []string
			answers := map[string]bool{}
			for _, m := range docRoute.FindAllStringSubmatch(cells[1], -1) {
				p := m[1] + " " + m[2]
				op, ok := ops[p]
				if !ok {
					t.Errorf("%s line %d names %s, which openapi.json does not describe", name, i+1, p)
					continue
				}
				named = append(named, p)
				tabled[p] = true
				for code := range op.Responses {
					answers[code] = true
				}
			}
			if len(named) == 0 {
				continue
			}
			for _, code := range docNumber.FindAllString(strings.Join(cells[2:], "|"), -1) {
				if statuses[code] && !answers[code] {
					t.Errorf("%s line %d gives %s for %v, which openapi.json does not list", name, i+1, code, named)
				}
			}
		}
	}
	for p := range ops {
		if !tabled[p] {
			t.Errorf("%s is in openapi.json but in no route table of README.md or API.md", p)
		}
	}
}

// TestDocOpenRoutes fails when the sentence of README.md or API.md that
// names the requests needing no credential ("Every request but ...")
// leaves out an operation openapi.json gives x-permission none: by its
// path, or its method and path (GET / is "the UI").
func TestDocOpenRoutes(t *testing.T) {
	_, ops := loadOpenAPI(t)
	for _, name := range []string{"README.md", "API.md"} {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		_, after, ok := strings.Cut(string(raw), "Every request but ")
		sentence, _, _ := strings.Cut(after, "Authorization")
		if !ok {
			t.Fatalf("%s has no sentence \"Every request but ...\"", name)
		}
		for p, op := range ops {
			method, path, _ := strings.Cut(p, " ")
			named := strings.Contains(sentence, "`"+path+"`") || strings.Contains(sentence, "`"+p+"`") ||
				p == "GET /" && strings.Contains(sentence, "the UI")
			if op.Permission == "none" && !named {
				t.Errorf("%s: the requests needing no credential leave out %s %s", name, method, path)
			}
		}
	}
}
