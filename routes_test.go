package main

// The route table test: every route registered in the REST mux against
// every kind of credential, with the exact status SPEC §3 promises. A
// route added to the mux without a row here fails TestRouteTableComplete.

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// credKind is one kind of credential the route table is run with.
type credKind int

const (
	credNone      credKind = iota // no Authorization header
	credGarbage                   // a credential that was never issued
	credAdmin                     // the admin key
	credRead                      // an API key with read
	credWrite                     // an API key with write
	credAdminPerm                 // an API key with the admin permission
	credExpired                   // an API key with all permissions, expired
	credDeleted                   // an API key with all permissions, deleted
	credSessRead                  // a session token of the read key
	credSessAdmin                 // a session token of the admin key
	credLimited                   // an API key with read and write on "other*" only
	numCredKinds
)

var credNames = [numCredKinds]string{"none", "garbage", "admin", "read", "write", "admin-perm",
	"expired", "deleted", "session(read)", "session(admin)", "db-limited"}

// routeCase is one row of the route table: a request that succeeds for a
// credential with enough rights, and the status for each credential kind.
type routeCase struct {
	pattern      string // the mux pattern the request must match
	method, path string
	body         string // "{read}" is replaced by the read key's secret
	// before, if set, runs before each request (with the admin key).
	before func(t *testing.T, ts *authTestServer)
	want   [numCredKinds]int
}

// routeTable lists every route of restServer.routes.
func routeTable() []routeCase {
	putK := func(t *testing.T, ts *authTestServer) {
		ts.mustDo(t, "PUT", "/entity/chatdb", testAdminKey, `{"k":{"a":1}}`, 200)
	}
	return []routeCase{
		// columns:                                                  none garb admin read write aperm exp  del  sRead sAdm limited
		{"GET /health", "GET", "/health", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"POST /api/login", "POST", "/api/login", `{"key":"{read}"}`, nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET /api/me", "GET", "/api/me", "", nil, [numCredKinds]int{401, 401, 200, 200, 200, 200, 401, 401, 200, 200, 200}},
		{"GET /api/keys", "GET", "/api/keys", "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"POST /api/keys", "POST", "/api/keys", `{"name":"t","permissions":["read"]}`, nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"DELETE /api/keys/{id}", "DELETE", "/api/keys/key_0000000000000000", "", nil, [numCredKinds]int{401, 401, 404, 403, 403, 404, 401, 401, 403, 404, 403}},
		{"GET /api/databases", "GET", "/api/databases", "", nil, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 200}},
		{"GET /api/databases/{db}", "GET", "/api/databases/chatdb", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"PUT /api/databases/{db}", "PUT", "/api/databases/chatdb", `{"schema":"t.v1"}`, nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"GET /api/databases/{db}/keys", "GET", "/api/databases/chatdb/keys?limit=5", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"GET /admin/workers", "GET", "/admin/workers", "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"GET /admin/schemas", "GET", "/admin/schemas", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET /schema/{id}", "GET", "/schema/t.v1", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"PUT /schema/{id}", "PUT", "/schema/t.v1", `{"type":"object"}`, nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 200}},
		{"PUT /entity/{db}", "PUT", "/entity/chatdb", `{"k":{"a":1}}`, nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"GET /entity/{db}", "GET", "/entity/chatdb?key=k", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		// The table sends no Content-Type, so a PATCH that passes auth is 415.
		{"PATCH /entity/{db}", "PATCH", "/entity/chatdb?key=k", `{"a":2}`, putK, [numCredKinds]int{401, 401, 415, 403, 415, 415, 401, 401, 403, 415, 403}},
		{"DELETE /entity/{db}", "DELETE", "/entity/chatdb?key=k", "", putK, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"GET /", "GET", "/", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
	}
}

// TestRouteTable runs every route with every credential kind and checks
// the exact status, that errors are {"error": ...} bodies and that a 401
// carries WWW-Authenticate.
func TestRouteTable(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 1 << 30})
	creds := ts.credentials(t)
	ts.mustDo(t, "PUT", "/schema/t.v1", testAdminKey, `{"type":"object"}`, 200)
	for _, rc := range routeTable() {
		if got := ts.pattern(rc.method, rc.path); got != rc.pattern {
			t.Errorf("%s %s matches mux pattern %q, want %q", rc.method, rc.path, got, rc.pattern)
			continue
		}
		for kind := range numCredKinds {
			if rc.before != nil {
				rc.before(t, ts)
			}
			body := strings.ReplaceAll(rc.body, "{read}", creds[credRead])
			rec := ts.do(rc.method, rc.path, creds[kind], body, "")
			if rec.Code != rc.want[kind] {
				t.Errorf("%s %s with %s credential = %d %s, want %d", rc.method, rc.path, credNames[kind], rec.Code, rec.Body, rc.want[kind])
				continue
			}
			checkErrorBody(t, rc.method+" "+rc.path+" ("+credNames[kind]+")", rec)
		}
	}
}

// checkErrorBody checks that an error answer is {"error": "..."} and that
// a 401 names the scheme.
func checkErrorBody(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 400 {
		return
	}
	var e struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Errorf("%s: error body %q, want {\"error\": \"...\"}", what, rec.Body)
	}
	if rec.Code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("%s: 401 without WWW-Authenticate: Bearer", what)
	}
}

// TestRouteTableComplete fails when the REST mux registers a route that
// routeTable does not list, or routeTable lists one the mux lacks. The
// registered patterns are read from the source: every
// "<x>.mux.Handle(Func)(\"METHOD /path\", ...)" call in the package.
func TestRouteTableComplete(t *testing.T) {
	registered := registeredRoutes(t)
	if len(registered) < 10 {
		t.Fatalf("found only %d registered routes in the source: %v; is the parser still right?", len(registered), registered)
	}
	var listed []string
	for _, rc := range routeTable() {
		listed = append(listed, rc.pattern)
	}
	for _, p := range registered {
		if !slices.Contains(listed, p) {
			t.Errorf("route %q is registered in the mux but not in routeTable: add a row with the status of every credential kind", p)
		}
	}
	for _, p := range listed {
		if !slices.Contains(registered, p) {
			t.Errorf("routeTable lists %q, which the mux does not register", p)
		}
	}
}

// registeredRoutes returns the pattern of every mux.Handle or
// mux.HandleFunc call in the package's non-test Go files.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if p, ok := muxPattern(n); ok {
				routes = append(routes, p)
			}
			return true
		})
	}
	return routes
}

// muxPattern reports the pattern of a call x.mux.Handle("P", ...) or
// x.mux.HandleFunc("P", ...).
func muxPattern(n ast.Node) (string, bool) {
	call, ok := n.(*ast.CallExpr)
	if !ok || len(call.Args) == 0 {
		return "", false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc" {
		return "", false
	}
	recv, ok := sel.X.(*ast.SelectorExpr)
	if !ok || recv.Sel.Name != "mux" {
		return "", false
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	p, err := strconv.Unquote(lit.Value)
	return p, err == nil
}

// credentials creates one credential of every kind through the API and
// returns them by kind. The expired key is created with expires_in 1h and
// the clock then moved past it.
func (ts *authTestServer) credentials(t *testing.T) [numCredKinds]string {
	t.Helper()
	var c [numCredKinds]string
	c[credGarbage] = "dk_this-key-was-never-issued"
	c[credAdmin] = testAdminKey
	c[credRead] = ts.createKey(t, `{"name":"r","permissions":["read"]}`).Secret
	c[credWrite] = ts.createKey(t, `{"name":"w","permissions":["write"]}`).Secret
	c[credAdminPerm] = ts.createKey(t, `{"name":"a","permissions":["admin"]}`).Secret
	c[credExpired] = ts.createKey(t, `{"name":"e","permissions":["read","write","admin"],"expires_in":"1h"}`).Secret
	del := ts.createKey(t, `{"name":"d","permissions":["read","write","admin"]}`)
	ts.mustDo(t, "DELETE", "/api/keys/"+del.ID, testAdminKey, "", 200)
	c[credDeleted] = del.Secret
	c[credSessRead] = ts.login(t, c[credRead]).Token
	c[credSessAdmin] = ts.login(t, testAdminKey).Token
	c[credLimited] = ts.createKey(t, `{"name":"l","permissions":["read","write"],"databases":["other*"]}`).Secret
	ts.clock.advance(2 * time.Hour)
	return c
}

// pattern returns the mux pattern a request would be routed to.
func (ts *authTestServer) pattern(method, path string) string {
	_, p := ts.rest.mux.Handler(httptest.NewRequest(method, path, nil))
	return p
}
