package main

// The route table test: every route registered in the REST mux against every
// kind of credential, with the exact status openapi.json and API.md promise. A
// route added to the mux without a row here fails TestRouteTableComplete.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/token"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
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
	// contentType, if set, is the request's Content-Type.
	contentType string
	// before, if set, runs before each request (with the admin key).
	before func(t *testing.T, ts *authTestServer)
	want   [numCredKinds]int
}

// routeTable lists every route of restServer.routes.
func routeTable() []routeCase {
	putK := func(t *testing.T, ts *authTestServer) {
		ts.mustDo(t, "PUT", "/entity/chatdb", testAdminKey, `{"k":{"a":1}}`, 200)
	}
	putGone := func(t *testing.T, ts *authTestServer) {
		ts.mustDo(t, "PUT", "/entity/gone", testAdminKey, `{"k":{"a":1}}`, 200)
	}
	putIndexB := func(t *testing.T, ts *authTestServer) {
		ts.mustDo(t, "POST", "/api/databases/chatdb/index", testAdminKey, `{"index":{"fields":["b"]},"name":"by-b"}`, 200)
	}
	putSchema := func(t *testing.T, ts *authTestServer) {
		ts.mustDo(t, "PUT", "/schema/d.v1", testAdminKey, `{"type":"object"}`, 200)
	}
	// verdb keeps versions; k is written, or written and soft-deleted.
	putVer := func(t *testing.T, ts *authTestServer) {
		ts.mustDo(t, "PUT", "/api/databases/verdb", testAdminKey, `{"max_versions":3}`, 200)
		ts.mustDo(t, "PUT", "/entity/verdb", testAdminKey, `{"k":{"a":1}}`, 200)
	}
	freshVer := func(t *testing.T, ts *authTestServer) {
		ts.mustDo(t, "DELETE", "/api/databases/verfresh", testAdminKey, "", 200)
		ts.mustDo(t, "PUT", "/api/databases/verfresh", testAdminKey, `{"max_versions":3}`, 200)
		ts.mustDo(t, "PUT", "/entity/verfresh", testAdminKey, `{"k":{"a":1}}`, 200)
		// Version 1 is no longer the current document, which destroy refuses.
		ts.mustDo(t, "PUT", "/entity/verfresh", testAdminKey, `{"k":{"a":2}}`, 200)
	}
	delVer := func(t *testing.T, ts *authTestServer) {
		putVer(t, ts)
		ts.mustDo(t, "DELETE", "/entity/verdb?key=k", testAdminKey, "", 200)
	}
	return []routeCase{
		// columns:                                                  none garb
		// admin read write aperm exp  del  sRead sAdm limited
		{"GET /health", "GET", "/health", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET /healthz", "GET", "/healthz", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET /readyz", "GET", "/readyz", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET /metrics", "GET", "/metrics", "", "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"GET /openapi.json", "GET", "/openapi.json", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"POST /api/login", "POST", "/api/login", `{"key":"{read}"}`, "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		// This server offers no sign-in with a provider (oidclogin_test.go
		// tests one that does).
		{"GET /api/login/oidc", "GET", "/api/login/oidc", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"POST /api/login/oidc", "POST", "/api/login/oidc", `{}`, "", nil, [numCredKinds]int{404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404}},
		{"GET /api/me", "GET", "/api/me", "", "", nil, [numCredKinds]int{401, 401, 200, 200, 200, 200, 401, 401, 200, 200, 200}},
		{"GET /api/keys", "GET", "/api/keys", "", "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"POST /api/keys", "POST", "/api/keys", `{"name":"t","permissions":["read"]}`, "", nil, [numCredKinds]int{401, 401, 201, 403, 403, 201, 401, 401, 403, 201, 403}},
		{"DELETE /api/keys/{id}", "DELETE", "/api/keys/key_0000000000000000", "", "", nil, [numCredKinds]int{401, 401, 404, 403, 403, 404, 401, 401, 403, 404, 403}},
		{"PATCH /api/keys/{id}", "PATCH", "/api/keys/key_0000000000000000", `{"name":"x"}`, "", nil, [numCredKinds]int{401, 401, 404, 403, 403, 404, 401, 401, 403, 404, 403}},
		{"POST /api/keys/{id}/rotate", "POST", "/api/keys/key_0000000000000000/rotate", "", "", nil, [numCredKinds]int{401, 401, 404, 403, 403, 404, 401, 401, 403, 404, 403}},
		{"GET /api/databases", "GET", "/api/databases", "", "", nil, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 200}},
		{"GET /api/databases/{db}", "GET", "/api/databases/chatdb", "", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"PUT /api/databases/{db}", "PUT", "/api/databases/chatdb", `{"schema":"t.v1"}`, "", nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"GET /api/databases/{db}/keys", "GET", "/api/databases/chatdb/keys?limit=5", "", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"GET /api/databases/{db}/keys", "GET", "/api/databases/chatdb/keys?include_docs=true", "", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"GET /api/databases/{db}/changes", "GET", "/api/databases/chatdb/changes", "", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"POST /api/databases/{db}/changes/ticket", "POST", "/api/databases/chatdb/changes/ticket", "", "", nil, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"POST /api/databases/{db}/get", "POST", "/api/databases/chatdb/get", `{"keys":["k","nope"]}`, "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"GET /api/databases/{db}/export", "GET", "/api/databases/chatdb/export", "", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"POST /api/databases/{db}/import", "POST", "/api/databases/chatdb/import", `{"key":"i","doc":{"a":1}}`, "", nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		// chatdb is bound to t.v1 (PUT /api/databases above).
		{"POST /api/databases/{db}/check", "POST", "/api/databases/chatdb/check", "", "", putK, [numCredKinds]int{401, 401, 202, 403, 202, 202, 401, 401, 403, 202, 403}},
		{"GET /api/databases/{db}/check", "GET", "/api/databases/chatdb/check", "", "", nil, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"DELETE /api/databases/{db}", "DELETE", "/api/databases/gone", "", "", putGone, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"POST /api/databases/{db}/find", "POST", "/api/databases/chatdb/find", `{"selector":{"a":1}}`, "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"POST /api/databases/{db}/explain", "POST", "/api/databases/chatdb/explain", `{"selector":{"a":1}}`, "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"POST /api/databases/{db}/index", "POST", "/api/databases/chatdb/index", `{"index":{"fields":["a"]},"name":"by-a"}`, "", putK, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"GET /api/databases/{db}/index", "GET", "/api/databases/chatdb/index", "", "", nil, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"DELETE /api/databases/{db}/index/{name}", "DELETE", "/api/databases/chatdb/index/by-b", "", "", putIndexB, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"GET /admin/workers", "GET", "/admin/workers", "", "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"GET /admin/jobs", "GET", "/admin/jobs", "", "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"GET /admin/stats", "GET", "/admin/stats?window=5m", "", "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"POST /admin/databases/{db}/rekey", "POST", "/admin/databases/chatdb/rekey", "", "", putK, [numCredKinds]int{401, 401, 202, 403, 403, 202, 401, 401, 403, 202, 403}},
		// A key limited to some databases may not hash: 403 for "db-limited"
		// whatever its permissions (TestAuditHashPermissions).
		{"POST /admin/audit/hash", "POST", "/admin/audit/hash", `{"input":"chatdb"}`, "", nil, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"GET /admin/schemas", "GET", "/admin/schemas", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET /schema/{id}", "GET", "/schema/t.v1", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		// chatdb is bound to t.v1 (PUT /api/databases above): a key limited
		// to other* may not change it, but may change a schema bound to
		// none of the databases outside its scope.
		{"PUT /schema/{id}", "PUT", "/schema/t.v1", `{"type":"object"}`, "", nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"PUT /schema/{id}", "PUT", "/schema/o.v1", `{"type":"object"}`, "", nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 200}},
		// t.v1 is still bound to chatdb: 409 for whoever may try.
		{"DELETE /schema/{id}", "DELETE", "/schema/t.v1", "", "", nil, [numCredKinds]int{401, 401, 409, 403, 409, 409, 401, 401, 403, 409, 403}},
		{"DELETE /schema/{id}", "DELETE", "/schema/d.v1", "", "", putSchema, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 200}},
		{"GET /schema/{id}/databases", "GET", "/schema/t.v1/databases", "", "", nil, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 200}},
		{"POST /schema/{id}/validate", "POST", "/schema/t.v1/validate", `{"a":1}`, "", nil, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 200}},
		{"PUT /entity/{db}", "PUT", "/entity/chatdb", `{"k":{"a":1}}`, "", nil, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"GET /entity/{db}", "GET", "/entity/chatdb?key=k", "", "", putK, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		// The table sends no Content-Type, so a PATCH that passes auth is 415.
		{"PATCH /entity/{db}", "PATCH", "/entity/chatdb?key=k", `{"a":2}`, "", putK, [numCredKinds]int{401, 401, 415, 403, 415, 415, 401, 401, 403, 415, 403}},
		// With a Content-Type: a write-only key patches but does not get
		// the document back (TestRouteTable checks the body).
		{"PATCH /entity/{db}", "PATCH", "/entity/chatdb?key=k", `{"a":2}`, mergePatchType, putK, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"DELETE /entity/{db}", "DELETE", "/entity/chatdb?key=k", "", "", putK, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		// A kept version reads with the read permission, as the entity does.
		{"GET /entity/{db}", "GET", "/entity/verfresh?key=k&version=1", "", "", freshVer, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"GET /entity/{db}/versions", "GET", "/entity/verdb/versions?key=k", "", "", putVer, [numCredKinds]int{401, 401, 200, 200, 403, 200, 401, 401, 200, 200, 403}},
		{"POST /entity/{db}/undelete", "POST", "/entity/verdb/undelete?key=k", "", "", delVer, [numCredKinds]int{401, 401, 200, 403, 200, 200, 401, 401, 403, 200, 403}},
		{"POST /entity/{db}/destroy", "POST", "/entity/verfresh/destroy?key=k&versions=1", "", "", freshVer, [numCredKinds]int{401, 401, 200, 403, 403, 200, 401, 401, 403, 200, 403}},
		{"GET /", "GET", "/", "", "", nil, [numCredKinds]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
		// Last: it ends the session tokens. A key is not a session: 400.
		{"POST /api/logout", "POST", "/api/logout", "", "", nil, [numCredKinds]int{401, 401, 400, 400, 400, 400, 401, 401, 200, 200, 400}},
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
			rec := ts.doWith(rc.method, rc.path, creds[kind], body, rc.contentType)
			if rec.Code != rc.want[kind] {
				t.Errorf("%s %s with %s credential = %d %s, want %d", rc.method, rc.path, credNames[kind], rec.Code, rec.Body, rc.want[kind])
				continue
			}
			if rc.method == "PATCH" && rec.Code == 200 {
				checkPatchAnswer(t, kind, rec)
			}
			checkErrorBody(t, rc.method+" "+rc.path+" ("+credNames[kind]+")", rec, ts.st.(*fsStore).root)
		}
	}
}

// checkPatchAnswer checks the body of a successful PATCH: the patched
// document for a credential that may read, {"status": "ok"} for one that
// may only write (the finding: a write-only key read the document through
// PATCH); both with the new ETag.
func checkPatchAnswer(t *testing.T, kind credKind, rec *httptest.ResponseRecorder) {
	t.Helper()
	want := `{"a":2}`
	if kind == credWrite {
		want = `{"status":"ok"}`
	}
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("PATCH with %s credential answered %s, want %s", credNames[kind], got, want)
	}
	if rec.Header().Get("ETag") == "" {
		t.Errorf("PATCH with %s credential answered no ETag", credNames[kind])
	}
}

// checkErrorBody checks that an error answer is {"error": "..."}, one
// sentence about the request: it must not show internals (the storage
// root, bucket or endpoint), the object layout, Go internals or a
// sentinel's text as a suffix. Every answer carries X-Request-ID, and the
// sentence of a 5xx names it. A 401 names the scheme.
func checkErrorBody(t *testing.T, what string, rec *httptest.ResponseRecorder, internals ...string) {
	t.Helper()
	id := rec.Header().Get("X-Request-ID")
	if id == "" {
		t.Errorf("%s: no X-Request-ID in the answer", what)
	}
	if rec.Code < 400 {
		return
	}
	var e struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Errorf("%s: error body %q, want {\"error\": \"...\"}", what, rec.Body)
	}
	for _, bad := range append([]string{"files/", "templates/", "_auth/", "_meta/", "open ", "json:", "Go value", "\n"}, internals...) {
		if bad != "" && strings.Contains(e.Error, bad) {
			t.Errorf("%s: error %q shows %q", what, e.Error, bad)
		}
	}
	for _, s := range allSentinels {
		if strings.HasSuffix(e.Error, ": "+s.Error()) {
			t.Errorf("%s: error %q ends in the sentinel %q", what, e.Error, s)
		}
	}
	if rec.Code >= 500 && !strings.Contains(e.Error, id) {
		t.Errorf("%s: 5xx error %q does not name the request ID %q", what, e.Error, id)
	}
	if rec.Code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("%s: 401 without WWW-Authenticate: Bearer", what)
	}
}

// allSentinels is every sentinel error of errors.go.
var allSentinels = []error{errNotFound, errInvalid, errPrecondition, errPatchConflict, errConflict, errUnavailable, errConfig,
	errCorrupt, errUnauthenticated, errForbidden, errRateLimited, errTooLarge, errUnsupportedMedia, errMethod, errTransport, errAuditUnavailable}

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
	var routes []string
	for _, c := range muxCalls(t) {
		routes = append(routes, c.pattern)
	}
	return routes
}

// muxCall is one mux.Handle or mux.HandleFunc call of the source.
type muxCall struct {
	pattern string
	call    *ast.CallExpr
}

// muxCalls parses the package's non-test Go files and returns every
// mux.Handle or mux.HandleFunc call in them.
func muxCalls(t *testing.T) []muxCall {
	t.Helper()
	var calls []muxCall
	for _, f := range sourceFiles(t) {
		ast.Inspect(f, func(n ast.Node) bool {
			if p, ok := muxPattern(n); ok {
				calls = append(calls, muxCall{p, n.(*ast.CallExpr)})
			}
			return true
		})
	}
	return calls
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

// clientProcess builds a client application's MainWorker.Process request.
// It is the one place that knows how the proto spells an operation.
func clientProcess(op, db, key, cred string, payload []byte) *pb.ProcessRequest {
	return &pb.ProcessRequest{DatabaseName: db, EntityKey: key, Operation: op,
		Payload: payload, Token: cred, ContentType: "application/merge-patch+json"}
}

// grpcCodeOfREST is the gRPC code a client gets on MainWorker.Process where
// REST answers the status. The route table sends PATCH without a
// Content-Type (415 once authorized); Process sends one, so it succeeds.
var grpcCodeOfREST = map[int]codes.Code{200: codes.OK, 401: codes.Unauthenticated, 403: codes.PermissionDenied, 415: codes.OK}

// TestClientProcessRouteTable runs the entity routes of the route table
// over the gRPC client path: every credential kind gets, for each
// operation, the code of the status REST answers it (permissions, database
// scope, expiry, deleted keys, sessions), and a key limited to other*
// reaches other1.
func TestClientProcessRouteTable(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 1 << 30})
	creds := ts.credentials(t)
	client := pb.NewMainWorkerClient(dial(t, serveTestMain(t, 4<<20, ts.st, ts.auth).addr))
	ctx := t.Context()
	putK := func(db string) {
		t.Helper()
		if _, err := client.Process(ctx, clientProcess("PUT", db, "k", testAdminKey, []byte(`{"a":1}`))); err != nil {
			t.Fatalf("PUT %s/k with the admin key = %v", db, err)
		}
	}
	ops := map[string]string{"GET /entity/{db}": "GET", "PUT /entity/{db}": "PUT", "PATCH /entity/{db}": "PATCH", "DELETE /entity/{db}": "DELETE"}
	rows := 0
	for _, rc := range routeTable() {
		op, ok := ops[rc.pattern]
		if !ok || rc.contentType != "" || strings.Contains(rc.path, "version=") {
			continue // Process always sends a Content-Type and reads no versions
		}
		rows++
		for kind := range numCredKinds {
			putK("chatdb")
			want, ok := grpcCodeOfREST[rc.want[kind]]
			if !ok {
				t.Fatalf("%s: REST status %d has no gRPC code in grpcCodeOfREST", rc.pattern, rc.want[kind])
			}
			_, err := client.Process(ctx, clientProcess(op, "chatdb", "k", creds[kind], []byte(`{"a":2}`)))
			if got := status.Code(err); got != want {
				t.Errorf("Process %s chatdb/k with %s credential = %v, want %v (REST %d)", op, credNames[kind], err, want, rc.want[kind])
			}
		}
	}
	if rows != len(ops) {
		t.Fatalf("found %d entity routes in routeTable, want %d", rows, len(ops))
	}
	// The database-limited key works inside its scope.
	putK("other1")
	for _, op := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		if _, err := client.Process(ctx, clientProcess(op, "other1", "k", creds[credLimited], []byte(`{"a":3}`))); err != nil {
			t.Errorf("Process %s other1/k with a key limited to other* = %v, want OK", op, err)
		}
	}
}

// TestClientProcessRateLimit: failed authentications over gRPC count
// towards the address's limit like REST ones; once limited, a failing
// credential gets ResourceExhausted with the wait in the message until the
// window ends, while a valid one still works, over gRPC and REST.
func TestClientProcessRateLimit(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 3, failWindow: time.Minute})
	client := pb.NewMainWorkerClient(dial(t, serveTestMain(t, 4<<20, ts.st, ts.auth).addr))
	ctx := t.Context()
	get := clientProcess("GET", "db", "k", "", nil)
	if _, err := client.Process(ctx, get); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Process without a credential = %v, want Unauthenticated", err)
	}
	for i := range 3 {
		get.Token = fmt.Sprintf("dk_guess%d", i)
		if _, err := client.Process(ctx, get); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("guess %d = %v, want Unauthenticated", i, err)
		}
	}
	ts.clock.advance(20 * time.Second)
	_, err := client.Process(ctx, clientProcess("PUT", "db", "k", "dk_guess", []byte(`1`)))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "retry in 40 s") {
		t.Errorf("Process with a bad key when limited = %v, want ResourceExhausted saying retry in 40 s", err)
	}
	if _, err := client.Process(ctx, clientProcess("PUT", "db", "k", testAdminKey, []byte(`1`))); err != nil {
		t.Errorf("Process with the admin key when limited = %v, want OK", err)
	}
	// REST from the same address (127.0.0.1) is limited too.
	if rec := ts.do("GET", "/api/me", "dk_guess", "", "127.0.0.1:5555"); rec.Code != 429 || rec.Header().Get("Retry-After") != "40" {
		t.Errorf("REST from the limited address = %d Retry-After %q, want 429 and 40", rec.Code, rec.Header().Get("Retry-After"))
	}
	ts.clock.advance(40 * time.Second)
	if _, err := client.Process(ctx, get); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Process with a bad key after the window = %v, want Unauthenticated", err)
	}
}

// errorCase is a request to one route that must fail with status want
// (sent with the admin key unless token is set).
type errorCase struct {
	method, path, body string
	// header holds name, value pairs.
	header []string
	token  string
	// fault, if set, is what every storage call returns during the
	// request.
	fault error
	want  int
}

// routeErrorCases lists, by mux pattern, requests that fail on each route;
// TestRouteErrorBodies runs them on every backend. Failures of
// authentication and permission are run for every route by TestRouteTable.
// A pattern with no case here has no failure but those (and is listed in
// noErrorCases). Storage faults target names no earlier request touched,
// so that no cache answers in the storage's place.
func routeErrorCases(root string) map[string][]errorCase {
	// faults are storage failures whose messages hold what no client may
	// see: the storage root and the object layout.
	unavailable := fmt.Errorf("get %s/files/chatdb/6e/6e6f7065: open %s/files/chatdb/6e: input/output error: %w", root, root, errUnavailable)
	corrupt := fmt.Errorf("get %s/templates/t.v1.json: decrypt: message authentication failed: %w", root, errCorrupt)
	internal := fmt.Errorf("list %s/_auth/: open %s: too many open files", root, root)
	big := `{"k":"` + strings.Repeat("x", 1<<20) + `"}`
	return map[string][]errorCase{
		"POST /api/login": {
			{method: "POST", path: "/api/login", body: `{"key":"dk_never-issued"}`, token: "-", want: 401},
			{method: "POST", path: "/api/login", body: `{"key":1}`, token: "-", want: 400},
			{method: "POST", path: "/api/login", body: `[`, token: "-", want: 400},
			{method: "POST", path: "/api/login", body: `{"key":"k","x":1}`, token: "-", want: 400},
			{method: "POST", path: "/api/login", body: `{}`, token: "-", want: 400},
			{method: "POST", path: "/api/login", body: ``, token: "-", want: 400},
		},
		"POST /api/login/oidc": {
			{method: "POST", path: "/api/login/oidc", body: `{"code":"c"}`, token: "-", want: 404},
		},
		"POST /admin/audit/hash": {
			{method: "POST", path: "/admin/audit/hash", body: `{"input":""}`, want: 400},
			{method: "POST", path: "/admin/audit/hash", body: `{"input":"` + strings.Repeat("x", maxAuditHashInput+1) + `"}`, want: 400},
			{method: "POST", path: "/admin/audit/hash", body: `{"value":"x"}`, want: 400},
			{method: "POST", path: "/admin/audit/hash", body: `["x"]`, want: 400},
			{method: "POST", path: "/admin/audit/hash", body: big, want: 413},
		},
		"POST /api/logout": {
			{method: "POST", path: "/api/logout", want: 400}, // the admin key is not a session token
			{method: "POST", path: "/api/logout", token: "ds_AAAA", want: 401},
		},
		"POST /api/keys": {
			{method: "POST", path: "/api/keys", body: `{"name":"","permissions":["read"]}`, want: 400},
			{method: "POST", path: "/api/keys", body: `{"name":"n","permissions":["root"]}`, want: 400},
			{method: "POST", path: "/api/keys", body: `{"name":"n","permissions":["read"],"expires_in":"soon"}`, want: 400},
			{method: "POST", path: "/api/keys", body: `{"name":"n","permissions":["read"],"databases":["../x"]}`, want: 400},
			{method: "POST", path: "/api/keys", body: `{"name":"n","permissions":"read"}`, want: 400},
			{method: "POST", path: "/api/keys", body: `["n"]`, want: 400},
			{method: "POST", path: "/api/keys", body: big, want: 413},
			{method: "POST", path: "/api/keys", body: `{"name":"n","permissions":["read"]}`, fault: unavailable, want: 503},
		},
		"DELETE /api/keys/{id}": {
			{method: "DELETE", path: "/api/keys/key_0000000000000000", want: 404},
		},
		"GET /api/databases": {
			{method: "GET", path: "/api/databases", fault: unavailable, want: 503},
			{method: "GET", path: "/api/databases", fault: internal, want: 500},
		},
		"GET /api/databases/{db}": {
			{method: "GET", path: "/api/databases/nosuch", want: 404},
			{method: "GET", path: "/api/databases/a..b", want: 400},
			{method: "GET", path: "/api/databases/faultdb", fault: corrupt, want: 500},
		},
		"PUT /api/databases/{db}": {
			{method: "PUT", path: "/api/databases/chatdb", body: `{}`, want: 400},
			{method: "PUT", path: "/api/databases/chatdb", body: `{"schema":5}`, want: 400},
			{method: "PUT", path: "/api/databases/chatdb", body: `{"schema":"nope.v1"}`, want: 400},
			{method: "PUT", path: "/api/databases/chatdb", body: `{"schema":"a/b"}`, want: 400},
			{method: "PUT", path: "/api/databases/chatdb", body: `{"schema":"t.v1","x":1}`, want: 400},
			{method: "PUT", path: "/api/databases/chatdb", body: `{"schema":"t.v1"}`, fault: unavailable, want: 503},
		},
		"GET /api/databases/{db}/keys": {
			{method: "GET", path: "/api/databases/chatdb/keys?limit=0", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?cursor=%21%21", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?prefix=a%2Fb", want: 400},
			{method: "GET", path: "/api/databases/faultdb/keys", fault: unavailable, want: 503},
			{method: "GET", path: "/api/databases/chatdb/keys?include_docs=yes", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?include_docs=1", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?include_docs=true&include_docs=false", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?limit=1&limit=2", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?cursor=YQ&cursor=Yg", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?prefix=a&prefix=b", want: 400},
			// A pair url.ParseQuery skips is a 400, not a parameter absent.
			{method: "GET", path: "/api/databases/chatdb/keys?cursor=%zz", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?prefix=a%2", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?limit=1;x", want: 400},
			{method: "GET", path: "/api/databases/chatdb/keys?%zz=1", want: 400},
			{method: "GET", path: "/api/databases/faultdb/keys?include_docs=true", fault: corrupt, want: 500},
		},
		"GET /api/databases/{db}/changes": {
			{method: "GET", path: "/api/databases/chatdb/changes?limit=0", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?feed=x", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?include_docs=yes", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?include_docs=TRUE", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?since=1&since=2", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?limit=1&limit=2", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?prefix=a&prefix=b", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?feed=normal&feed=longpoll", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?prefix=%FF", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?prefix=a%00", want: 400},
			{method: "GET", path: "/api/databases/chatdb/changes?prefix=a%2Fb", want: 400},
			{method: "GET", path: "/api/databases/a..b/changes", want: 400},
		},
		"POST /api/databases/{db}/changes/ticket": {
			{method: "POST", path: "/api/databases/a..b/changes/ticket", want: 400},
		},
		"DELETE /api/databases/{db}": {
			{method: "DELETE", path: "/api/databases/a..b", want: 400},
			{method: "DELETE", path: "/api/databases/faultdb", fault: unavailable, want: 503},
		},
		"POST /api/databases/{db}/get": {
			{method: "POST", path: "/api/databases/chatdb/get", body: `{}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/get", body: `{"keys":"k"}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/get", body: `{"keys":["a/b"]}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/get", body: `{"keys":[],"x":1}`, want: 400},
			{method: "POST", path: "/api/databases/a..b/get", body: `{"keys":[]}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/get", body: `{"keys":[` + strings.Repeat(`"k",`, 1000) + `"k"]}`, want: 413},
			{method: "POST", path: "/api/databases/chatdb/get", body: `{"keys":["cold"]}`, fault: unavailable, want: 503},
		},
		"GET /api/databases/{db}/export": {
			{method: "GET", path: "/api/databases/a..b/export", want: 400},
			{method: "GET", path: "/api/databases/chatdb/export?prefix=a/b", want: 400},
			{method: "GET", path: "/api/databases/chatdb/export?prefix=a&prefix=b", want: 400},
			{method: "GET", path: "/api/databases/nothing/export", want: 404},
			{method: "GET", path: "/api/databases/faultdb2/export", fault: unavailable, want: 503},
		},
		"POST /api/databases/{db}/import": {
			{method: "POST", path: "/api/databases/a..b/import", body: `{"key":"k","doc":1}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/import?batch=0", body: `{"key":"k","doc":1}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/import?batch=1&batch=2", body: `{"key":"k","doc":1}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/import", body: `{"key":"k","doc":1,"x":2}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/import", body: `{"key":"k","doc":"` + strings.Repeat("x", 1<<20+70<<10) + `"}`, want: 413},
			{method: "POST", path: "/api/databases/faultdb3/import", body: `{"key":"k","doc":1}`, fault: unavailable, want: 503},
		},
		"POST /api/databases/{db}/find": {
			{method: "POST", path: "/api/databases/chatdb/find", body: `{}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/find", body: `{"selector":{"a":{"$where":"1"}}}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/find", body: `{"selector":{},"partition":"p"}`, want: 400},
			{method: "POST", path: "/api/databases/a..b/find", body: `{"selector":{}}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/find", body: `{"selector":{"a":{"$in":[` + strings.Repeat("1,", maxSelectorList) + `1]}}}`, want: 413},
			{method: "POST", path: "/api/databases/faultdb/find", body: `{"selector":{}}`, fault: unavailable, want: 503},
			{method: "POST", path: "/api/databases/faultdb/find", body: `{"selector":{}}`, fault: corrupt, want: 500},
		},
		"POST /api/databases/{db}/explain": {
			{method: "POST", path: "/api/databases/chatdb/explain", body: `{"selector":5}`, want: 400},
			{method: "POST", path: "/api/databases/faultdb/explain", body: `{"selector":{}}`, fault: unavailable, want: 503},
		},
		"POST /api/databases/{db}/index": {
			{method: "POST", path: "/api/databases/chatdb/index", body: `{"index":{"fields":[]}}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/index", body: `{"index":{"fields":["a"],"partial_filter_selector":{}}}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/index", body: `{"index":{"fields":["a"]},"type":"text"}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/index", body: `{"index":{"fields":[{"a":"desc"}]}}`, want: 400},
			{method: "POST", path: "/api/databases/chatdb/index", body: `{"index":{"fields":["a"]},"name":"a/b"}`, want: 400},
			{method: "POST", path: "/api/databases/faultdb/index", body: `{"index":{"fields":["a"]}}`, fault: unavailable, want: 503},
		},
		"GET /api/databases/{db}/index": {
			{method: "GET", path: "/api/databases/a..b/index", want: 400},
			{method: "GET", path: "/api/databases/faultdb/index", fault: unavailable, want: 503},
		},
		"DELETE /api/databases/{db}/index/{name}": {
			{method: "DELETE", path: "/api/databases/chatdb/index/nope", want: 404},
			{method: "DELETE", path: "/api/databases/faultdb/index/by-a", fault: unavailable, want: 503},
		},
		"GET /admin/schemas": {
			{method: "GET", path: "/admin/schemas", fault: internal, want: 500},
		},
		"GET /schema/{id}": {
			{method: "GET", path: "/schema/nosuch", token: "-", want: 404},
			{method: "GET", path: "/schema/a..b", token: "-", want: 400},
			{method: "GET", path: "/schema/t.v1", token: "-", fault: unavailable, want: 503},
		},
		"PUT /schema/{id}": {
			{method: "PUT", path: "/schema/bad.v1", body: `{"type":`, want: 400},
			{method: "PUT", path: "/schema/bad.v1", body: `{"type":5}`, want: 400},
			{method: "PUT", path: "/schema/bad.v1", body: `{"$ref":"other.json"}`, want: 400},
			{method: "PUT", path: "/schema/bad.v1", body: `{"$ref":"#/definitions/nope"}`, want: 400},
			{method: "PUT", path: "/schema/bad.v1", body: big, want: 413},
			{method: "PUT", path: "/schema/bad.v1", body: `{"type":"object"}`, fault: unavailable, want: 503},
		},
		"DELETE /schema/{id}": {
			{method: "DELETE", path: "/schema/nosuch", want: 404},
			{method: "DELETE", path: "/schema/a..b", want: 400},
			{method: "DELETE", path: "/schema/t.v1", fault: unavailable, want: 503},
		},
		"POST /schema/{id}/validate": {
			{method: "POST", path: "/schema/nosuch/validate", body: `{}`, want: 404},
			{method: "POST", path: "/schema/a..b/validate", body: `{}`, want: 400},
			{method: "POST", path: "/schema/t.v1/validate", body: `{"a":`, want: 400},
			{method: "POST", path: "/schema/t.v1/validate", body: ``, want: 400},
			{method: "POST", path: "/schema/t.v1/validate", body: big, want: 413},
			{method: "POST", path: "/schema/cold.v1/validate", body: `{}`, fault: unavailable, want: 503},
		},
		"PUT /entity/{db}": {
			{method: "PUT", path: "/entity/chatdb", body: `[]`, want: 400},
			{method: "PUT", path: "/entity/chatdb", body: `{}`, want: 400},
			{method: "PUT", path: "/entity/chatdb", body: `{"a":1} x`, want: 400},
			{method: "PUT", path: "/entity/chatdb", body: `{"a/b":1}`, want: 400},
			{method: "PUT", path: "/entity/chatdb", body: `{"a":`, want: 400},
			{method: "PUT", path: "/entity/chatdb?schema=nope.v1", body: `{"a":{}}`, want: 400},
			{method: "PUT", path: "/entity/chatdb?schema=t.v1", body: `{"a":5}`, want: 400},
			{method: "PUT", path: "/entity/chatdb?schema=t.v1&schema=nope.v1", body: `{"a":{}}`, want: 400},
			{method: "PUT", path: "/entity/chatdb?schema=t.v%zz1", body: `{"a":5}`, want: 400},
			{method: "PUT", path: "/entity/chatdb?if_match=a", body: `{"a":1}`, want: 400},
			{method: "PUT", path: "/entity/chatdb", body: `{"k":1}`, header: []string{"If-None-Match", "*"}, want: 412},
			{method: "PUT", path: "/entity/chatdb", body: big, want: 413},
			{method: "PUT", path: "/entity/chatdb", body: `{"a":1}`, fault: unavailable, want: 503},
			{method: "PUT", path: "/entity/chatdb", body: `{"a":1}`, fault: internal, want: 500},
			{method: "PUT", path: "/entity/chatdb?key=profile_1", body: `{"name":"Ada"}`, want: 400},
		},
		"GET /entity/{db}": {
			{method: "GET", path: "/entity/chatdb?key=nope", want: 404},
			{method: "GET", path: "/entity/nosuchdb?key=nope", want: 404},
			{method: "GET", path: "/entity/chatdb", want: 400},
			{method: "GET", path: "/entity/chatdb?key=a%2Fb", want: 400},
			{method: "GET", path: "/entity/chatdb?key=k&key=other", want: 400},
			{method: "GET", path: "/entity/chatdb?key=k", header: []string{"If-None-Match", "nope"}, want: 400},
			{method: "GET", path: "/entity/chatdb?key=cold", fault: unavailable, want: 503},
			{method: "GET", path: "/entity/chatdb?key=cold", fault: corrupt, want: 500},
		},
		"PATCH /entity/{db}": {
			{method: "PATCH", path: "/entity/chatdb?key=k", body: `{"a":2}`, want: 415},
			{method: "PATCH", path: "/entity/chatdb?key=k", body: `{"a":`, header: []string{"Content-Type", mergePatchType}, want: 400},
			{method: "PATCH", path: "/entity/chatdb?key=k", body: `{"op":"add"}`, header: []string{"Content-Type", jsonPatchType}, want: 400},
			{method: "PATCH", path: "/entity/chatdb?key=k", body: `[{"op":"frob","path":"/a"}]`, header: []string{"Content-Type", jsonPatchType}, want: 400},
			{method: "PATCH", path: "/entity/chatdb?key=k", body: `[{"op":"remove","path":"/nope"}]`, header: []string{"Content-Type", jsonPatchType}, want: 409},
			{method: "PATCH", path: "/entity/chatdb?key=nope", body: `{"a":2}`, header: []string{"Content-Type", mergePatchType}, want: 404},
			{method: "PATCH", path: "/entity/chatdb?key=k", body: `{"a":2}`, header: []string{"Content-Type", mergePatchType, "If-Match", `"stale"`}, want: 412},
			{method: "PATCH", path: "/entity/chatdb?key=k&schema=t.v1", body: `5`, header: []string{"Content-Type", mergePatchType}, want: 400},
			{method: "PATCH", path: "/entity/chatdb?key=cold", body: `{"a":2}`, header: []string{"Content-Type", mergePatchType}, fault: unavailable, want: 503},
		},
		"GET /entity/{db}/versions": {
			{method: "GET", path: "/entity/chatdb/versions?key=nope", want: 404},
			{method: "GET", path: "/entity/chatdb/versions", want: 400},
			{method: "GET", path: "/entity/a..b/versions?key=k", want: 400},
		},
		"POST /entity/{db}/undelete": {
			{method: "POST", path: "/entity/chatdb/undelete?key=nope", want: 404},
			{method: "POST", path: "/entity/chatdb/undelete?key=k", want: 409},
			{method: "POST", path: "/entity/chatdb/undelete", want: 400},
		},
		"POST /entity/{db}/destroy": {
			{method: "POST", path: "/entity/chatdb/destroy?key=k", want: 400},
			{method: "POST", path: "/entity/chatdb/destroy?key=k&versions=one", want: 400},
			{method: "POST", path: "/entity/chatdb/destroy?key=k&versions=0", want: 400},
			{method: "POST", path: "/entity/chatdb/destroy?key=k&versions=7", want: 404},
			// Version 1 of verr/k is its current document (runRouteErrorCases).
			{method: "POST", path: "/entity/verr/destroy?key=k&versions=1", want: 409},
		},
		"DELETE /entity/{db}": {
			{method: "DELETE", path: "/entity/chatdb?key=nope", want: 404},
			{method: "DELETE", path: "/entity/chatdb", want: 400},
			{method: "DELETE", path: "/entity/chatdb?key=k", header: []string{"If-Match", `"stale"`}, want: 412},
			{method: "DELETE", path: "/entity/chatdb?key=cold", fault: unavailable, want: 503},
		},
		"GET /": {
			{method: "GET", path: "/nope.js", token: "-", want: 404},
		},
		"GET /readyz": {
			{method: "GET", path: "/readyz", token: "-", fault: unavailable, want: 503},
		},
		"GET /admin/jobs": {
			{method: "GET", path: "/admin/jobs", fault: unavailable, want: 503},
		},
		"GET /admin/stats": {
			{method: "GET", path: "/admin/stats?window=2h", want: 400},
			{method: "GET", path: "/admin/stats?window=soon", want: 400},
		},
		"PATCH /api/keys/{id}": {
			{method: "PATCH", path: "/api/keys/key_0000000000000000", body: `{"name":"n"}`, want: 404},
			{method: "PATCH", path: "/api/keys/key_0000000000000000", body: `{}`, want: 400},
			{method: "PATCH", path: "/api/keys/key_0000000000000000", body: `{"nme":"x"}`, want: 400},
			{method: "PATCH", path: "/api/keys/key_0000000000000000", body: big, want: 413},
		},
		"POST /api/keys/{id}/rotate": {
			{method: "POST", path: "/api/keys/key_0000000000000000/rotate", want: 404},
			{method: "POST", path: "/api/keys/key_0000000000000000/rotate", body: `{"grace":"8d"}`, want: 400},
			{method: "POST", path: "/api/keys/key_0000000000000000/rotate", body: big, want: 413},
		},
		"POST /api/databases/{db}/check": {
			{method: "POST", path: "/api/databases/nosuchdb/check", want: 404},
			{method: "POST", path: "/api/databases/chatdb/check", want: 400}, // bound to no schema
			{method: "POST", path: "/api/databases/chatdb/check", body: `{"schema":"nope.v1"}`, want: 400},
			{method: "POST", path: "/api/databases/a..b/check", want: 400},
			{method: "POST", path: "/api/databases/chatdb/check", body: big, want: 413},
			{method: "POST", path: "/api/databases/faultcheck/check", fault: unavailable, want: 503},
		},
		"GET /api/databases/{db}/check": {
			{method: "GET", path: "/api/databases/nosuchdb/check", want: 404},
			{method: "GET", path: "/api/databases/a..b/check", want: 400},
		},
		"GET /schema/{id}/databases": {
			{method: "GET", path: "/schema/a..b/databases", want: 400},
			{method: "GET", path: "/schema/nope.v1/databases", want: 404},
			{method: "GET", path: "/schema/t.v1/databases", fault: unavailable, want: 503},
		},
		"POST /admin/databases/{db}/rekey": {
			{method: "POST", path: "/admin/databases/nosuchdb/rekey", want: 404},
			{method: "POST", path: "/admin/databases/-bad/rekey", want: 400},
			{method: "POST", path: "/admin/databases/chatdb/rekey", fault: unavailable, want: 503},
		},
		// Requests the mux refuses before any route.
		"": {
			{method: "PATCH", path: "/health", token: "-", want: 405},
			{method: "POST", path: "/entity/chatdb", want: 405},
			{method: "GET", path: "/entity/../admin/workers", want: 400},
			// An empty name segment is a 400 on every method.
			{method: "GET", path: "/entity/?key=a", want: 400},
			{method: "PUT", path: "/entity/", body: `{"a":1}`, want: 400},
			{method: "PATCH", path: "/entity/?key=a", body: `{"a":1}`, want: 400},
			{method: "DELETE", path: "/entity/?key=a", want: 400},
			{method: "GET", path: "/api/databases/", want: 400},
			{method: "DELETE", path: "/api/databases/", want: 400},
			{method: "GET", path: "/schema/", want: 400},
			// So is a missing one.
			{method: "GET", path: "/entity?key=a", want: 400},
			{method: "PUT", path: "/entity", body: `{"a":1}`, want: 400},
			{method: "DELETE", path: "/entity?key=a", want: 400},
			{method: "GET", path: "/schema", want: 400},
			{method: "POST", path: "/api/databases/chatdb/keys", want: 405},
		},
	}
}

// noErrorCases are the routes that fail only for a missing credential or
// permission, with the reason.
var noErrorCases = map[string]string{
	"GET /health":         "always answers",
	"GET /healthz":        "always answers",
	"GET /openapi.json":   "serves the embedded document",
	"GET /api/me":         "answers for any valid credential",
	"GET /api/login/oidc": "answers {\"enabled\": false} without a UI client (oidclogin_test.go: a provider down is 503)",
	"GET /api/keys":       "reads the keys in memory",
	"GET /admin/workers":  "reads the router in memory",
	"GET /metrics":        "reads counters in memory",
}

// faultStore is a store whose every call fails with the error set in
// fault, if any; it passes calls on otherwise.
type faultStore struct {
	store
	fault atomic.Pointer[error]
}

func (f *faultStore) failure() error {
	if p := f.fault.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *faultStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	return f.store.Get(ctx, key)
}

func (f *faultStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	if err := f.failure(); err != nil {
		return nil, "", err
	}
	return f.store.GetRev(ctx, key)
}

func (f *faultStore) Put(ctx context.Context, key string, data []byte) error {
	if err := f.failure(); err != nil {
		return err
	}
	return f.store.Put(ctx, key, data)
}

func (f *faultStore) PutIf(ctx context.Context, key string, data []byte, rev string) (string, error) {
	if err := f.failure(); err != nil {
		return "", err
	}
	return f.store.PutIf(ctx, key, data, rev)
}

func (f *faultStore) Delete(ctx context.Context, key string) error {
	if err := f.failure(); err != nil {
		return err
	}
	return f.store.Delete(ctx, key)
}

func (f *faultStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	return f.store.List(ctx, prefix, startAfter, limit)
}

func (f *faultStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	return f.store.ListDirs(ctx, prefix)
}

// TestRouteErrorBodies runs the error cases of every route on each backend
// (fs; S3 when the DELTADB_S3_* environment names a server) and checks
// each answer: the status, {"error": one sentence} that shows no storage
// root, bucket, object layout, Go internals or sentinel suffix, an
// X-Request-ID, and for a 5xx that the sentence names that ID.
func TestRouteErrorBodies(t *testing.T) {
	t.Run("fs", func(t *testing.T) {
		st := newTestFSStore(t)
		runRouteErrorCases(t, st, st.root)
	})
	t.Run("s3", func(t *testing.T) {
		st := newTestS3Store(t, nil)
		runRouteErrorCases(t, st, st.bucket, st.host)
	})
}

// runRouteErrorCases runs routeErrorCases over st; internals are strings
// of the backend (root, bucket, endpoint) no answer may contain.
func runRouteErrorCases(t *testing.T, st store, internals ...string) {
	fs := &faultStore{store: st}
	ts := newAuthTestServerOn(t, authConfig{maxFailures: 1 << 30}, fs)
	ts.mustDo(t, "PUT", "/schema/t.v1", testAdminKey, `{"type":"object"}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/verr", testAdminKey, `{"max_versions":2}`, 200)
	ts.mustDo(t, "PUT", "/entity/verr", testAdminKey, `{"k":1}`, 200)
	cases := routeErrorCases(internals[0])
	for _, rc := range routeTable() {
		if len(cases[rc.pattern]) == 0 && noErrorCases[rc.pattern] == "" {
			t.Errorf("route %q has no error case in routeErrorCases and no reason in noErrorCases", rc.pattern)
		}
	}
	for pattern, list := range cases {
		for _, c := range list {
			ts.mustDo(t, "PUT", "/entity/chatdb", testAdminKey, `{"k":{"a":1}}`, 200)
			what := fmt.Sprintf("%s %s %.40s", c.method, c.path, c.body)
			if got := ts.pattern(c.method, c.path); got != pattern && pattern != "" {
				t.Errorf("%s matches mux pattern %q, want %q", what, got, pattern)
			}
			req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			if c.token != "-" {
				req.Header.Set("Authorization", "Bearer "+cmp.Or(c.token, testAdminKey))
			}
			for i := 0; i+1 < len(c.header); i += 2 {
				req.Header.Set(c.header[i], c.header[i+1])
			}
			if c.fault != nil {
				fs.fault.Store(&c.fault)
			}
			rec := httptest.NewRecorder()
			ts.rest.ServeHTTP(rec, req)
			fs.fault.Store(nil)
			if rec.Code != c.want {
				t.Errorf("%s = %d %s, want %d", what, rec.Code, rec.Body, c.want)
				continue
			}
			checkErrorBody(t, what, rec, internals...)
		}
	}
}
