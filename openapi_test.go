package main

// The OpenAPI document against the code: every route of the mux is in
// openapi.json and every operation of openapi.json is a route, with the
// permission the route table gives it, the statuses the route tests see,
// and error answers of the shape writeError writes. CI also validates the
// document against the OpenAPI 3.1 schema with a validator from npm.

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"os"
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
	Ref     string `json:"$ref"`
	Content map[string]struct {
		Schema struct {
			Ref string `json:"$ref"`
		} `json:"schema"`
	} `json:"content"`
}

// openAPIDoc is what the tests read of openapi.json.
type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
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
// s.open(h), s.need(0, h) or s.need(permX, h); "unknown" for anything
// else.
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
	case sel.Sel.Name != "need" || len(call.Args) != 2:
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
		if open := op.Security != nil && len(*op.Security) == 0; open != (want == "none") {
			t.Errorf("%s: security %v does not match access %q (open routes have security [], the others inherit bearer)", p, op.Security, want)
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
// permission is needed), a database name or schema ID in the path can be
// malformed (400; every path parameter must be declared), a body can be malformed or too large (400, 413).
func checkOperationStatuses(t *testing.T, doc openAPIDoc, pattern string, op openAPIOperation, access string) {
	t.Helper()
	var need []string
	if access != "none" {
		need = append(need, "401", "429")
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
// member or none) is the Error object.
func TestOpenAPIReferences(t *testing.T) {
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
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
