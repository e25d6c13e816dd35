package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
)

// sourceFiles parses the package's non-test Go files.
func sourceFiles(t *testing.T) []*ast.File {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		files = append(files, f)
	}
	return files
}

// sentinelNames returns the package-level error variables of the
// package's non-test files made with errors.New, workerError or
// unavailableError: the
// sentinels, wherever someone declares one.
func sentinelNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, f := range sourceFiles(t) {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, v := range vs.Values {
					if isSentinelCall(v) {
						names = append(names, vs.Names[i].Name)
					}
				}
			}
		}
	}
	return names
}

// isSentinelCall reports whether e is errors.New(...), workerError(...)
// or unavailableError(...).
func isSentinelCall(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	switch fn := call.Fun.(type) {
	case *ast.SelectorExpr:
		pkg, ok := fn.X.(*ast.Ident)
		return ok && pkg.Name == "errors" && fn.Sel.Name == "New"
	case *ast.Ident:
		return fn.Name == "workerError" || fn.Name == "unavailableError"
	}
	return false
}

// TestErrorTableComplete: every sentinel declared in the package has
// exactly one row of errorTable, and no column of it is left out: an HTTP
// status, a gRPC code, a sentence (a format naming the request ID for a
// 5xx, plain text otherwise) and what a failed write left behind.
func TestErrorTableComplete(t *testing.T) {
	rows := map[string]int{}
	for _, k := range errorTable {
		rows[k.err.Error()]++
	}
	names := sentinelNames(t)
	if len(names) < 10 {
		t.Fatalf("found %d sentinels in the package's files, want the 16 or so of errors.go: %v", len(names), names)
	}
	values := sentinelValues()
	for _, name := range names {
		v, ok := values[name]
		if !ok {
			t.Errorf("sentinel %s is not known to this test: add it to sentinelValues and a row to errorTable", name)
			continue
		}
		if rows[v.Error()] != 1 {
			t.Errorf("sentinel %s has %d rows in errorTable, want 1", name, rows[v.Error()])
		}
	}
	if len(errorTable) != len(names) {
		t.Errorf("errorTable has %d rows for %d sentinels", len(errorTable), len(names))
	}
	for _, k := range errorTable {
		switch {
		case k.status < 400 || k.status > 599:
			t.Errorf("%v: HTTP status %d, want a 4xx or 5xx", k.err, k.status)
		case k.code == codes.OK:
			t.Errorf("%v: no gRPC code", k.err)
		case k.msg == "":
			t.Errorf("%v: no sentence", k.err)
		case k.written != wroteNothing && k.written != mayHaveWritten:
			t.Errorf("%v: does not say whether a failed write left storage as it was", k.err)
		case k.status >= 500 && strings.Count(k.msg, "%s") != 1:
			t.Errorf("%v: 5xx sentence %q must name the request ID (one %%s)", k.err, k.msg)
		case k.status < 500 && strings.Contains(k.msg, "%"):
			t.Errorf("%v: sentence %q is shown as is; it must hold no format verb", k.err, k.msg)
		}
	}
}

// sentinelValues names the sentinels for TestErrorTableComplete.
func sentinelValues() map[string]error {
	return map[string]error{
		"errNotFound": errNotFound, "errInvalid": errInvalid, "errPrecondition": errPrecondition,
		"errPatchConflict": errPatchConflict, "errConflict": errConflict, "errUnavailable": errUnavailable, "errBusy": errBusy,
		"errConfig": errConfig, "errCorrupt": errCorrupt, "errUnauthenticated": errUnauthenticated,
		"errForbidden": errForbidden, "errRateLimited": errRateLimited, "errTooLarge": errTooLarge,
		"errUnsupportedMedia": errUnsupportedMedia, "errMethod": errMethod, "errTransport": errTransport,
		"errNoWorker": errNoWorker, "errHandingOver": errHandingOver, "errHandingOverLost": errHandingOverLost,
		"errHandoverDamaged": errHandoverDamaged, "errHandoverDamagedLost": errHandoverDamagedLost, "errAuditUnavailable": errAuditUnavailable,
		"errWriteFenced": errWriteFenced, "errCallLost": errCallLost, "errWorkerSlow": errWorkerSlow,
		"errTooManyStreams": errTooManyStreams, "errGone": errGone, "errNoFeed": errNoFeed,
		"errProviderUnavailable": errProviderUnavailable, "errChangeLogBroken": errChangeLogBroken,
		"errChangeLogUnreadable": errChangeLogUnreadable,
	}
}

// TestErrorLookupsAgree: each lookup answers from the sentinel's row,
// through wrapping, and a worker's status code comes back as the sentinel
// of its row, so that the REST status survives the gRPC hop.
func TestErrorLookupsAgree(t *testing.T) {
	for _, k := range errorTable {
		err := fmt.Errorf("get entity db/\"k\": %w", k.err)
		if got := statusOf(err); got != k.status {
			t.Errorf("statusOf(%v) = %d, want %d", k.err, got, k.status)
		}
		if got := grpcCode(err); got != k.code {
			t.Errorf("grpcCode(%v) = %v, want %v", k.err, got, k.code)
		}
		if got := nothingWritten(err); got != (k.written == wroteNothing) {
			t.Errorf("nothingWritten(%v) = %v", k.err, got)
		}
		back := sentinelOf(k.code)
		if got := statusOf(back); got != k.status && !errors.Is(k.err, errRateLimited) && !errors.Is(k.err, errUnsupportedMedia) &&
			!errors.Is(k.err, errMethod) && !errors.Is(k.err, errTooManyStreams) && !errors.Is(k.err, errNoFeed) {
			t.Errorf("%v: a worker's %v comes back as %v, status %d, want %d", k.err, k.code, back, got, k.status)
		}
		if _, tier := back.(workerError); tier {
			t.Errorf("%v: a worker's %v comes back as the worker tier's own %v", k.err, k.code, back)
		}
	}
	if got := statusOf(errors.New("unclassified")); got != 500 {
		t.Errorf("statusOf(unclassified) = %d, want 500", got)
	}
	if got := grpcCode(errors.New("unclassified")); got != codes.Internal {
		t.Errorf("grpcCode(unclassified) = %v, want Internal", got)
	}
}

// TestErrorsQuoteInputShort: a bad request carrying a 200 KB key, JSON
// pointer, member name, operator or header is answered by a short
// sentence that quotes the input's first bytes, marked as cut: the answer
// was as large as the request (a pointer quoted twice made it twice).
func TestErrorsQuoteInputShort(t *testing.T) {
	s := newLocalREST(t)
	for _, put := range [][2]string{
		{"/entity/db1", `{"k1": {"a": 1}}`},
		{"/schema/strings", `{"type": "object", "additionalProperties": {"type": "string"}}`},
		{"/api/databases/s", `{"schema": "strings"}`},
	} {
		if rec := serve(s, "PUT", put[0], put[1]); rec.Code != 200 {
			t.Fatalf("PUT %s = %d %s", put[0], rec.Code, rec.Body)
		}
	}
	big := strings.Repeat("é", 100000) // 200 KB, two bytes a letter
	mid := strings.Repeat("a", 30000)  // within the header size limit
	// An import's report names a refused line's key only if it is one.
	rec := serve(s, "POST", "/api/databases/db1/import", `{"key":"`+big+`","doc":{}}`+"\n")
	if rec.Code != 400 || rec.Body.Len() > 1024 {
		t.Errorf("import of a 200 KB key = %d, answer of %d bytes %.300q; want 400 under 1 KiB", rec.Code, rec.Body.Len(), rec.Body)
	}
	for _, c := range []struct {
		name, method, target, header, body string
	}{
		{"patch path naming nothing", "PATCH", "/entity/db1?key=k1", jsonPatchType, `[{"op":"remove","path":"/` + big + `"}]`},
		{"patch pointer", "PATCH", "/entity/db1?key=k1", jsonPatchType, `[{"op":"remove","path":"` + big + `"}]`},
		{"patch op", "PATCH", "/entity/db1?key=k1", jsonPatchType, `[{"op":"` + big + `","path":"/a"}]`},
		{"patch index", "PATCH", "/entity/db1?key=k1", jsonPatchType, `[{"op":"add","path":"/a/` + strings.Repeat("9", 200000) + `","value":1}]`},
		{"selector operator", "POST", "/api/databases/db1/find", "", `{"selector":{"a":{"$` + big + `":1}}}`},
		{"find member", "POST", "/api/databases/db1/find", "", `{"` + big + `":1}`},
		{"settings member", "PUT", "/api/databases/db1", "", `{"` + big + `":1}`},
		{"Content-Type", "PATCH", "/entity/db1?key=k1", mid, `{}`},
		{"limit", "GET", "/api/databases/db1/keys?limit=" + mid, "", ""},
		{"cursor", "GET", "/api/databases/db1/keys?cursor=" + mid, "", ""},
		{"version", "GET", "/entity/db1?key=k1&version=" + mid, "", ""},
		{"route", "DELETE", "/admin/keys/" + mid, "", ""},
		{"method", "BREW" + mid, "/entity/db1", "", ""},
		{"schema's pattern", "PUT", "/schema/bad", "", `{"pattern": "(` + big + `"}`},
		{"violations under a long member", "PUT", "/entity/s", "", `{"k": {"1` + big + `": 1, "2` + big + `": 2, "3` + big + `": 3}}`},
	} {
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		if c.header != "" {
			req.Header.Set("Content-Type", c.header)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code < 400 || body.Error == "" {
			t.Errorf("%s: %d %.200s, want an error body", c.name, rec.Code, rec.Body)
			continue
		}
		if rec.Body.Len() > 1024 || !strings.Contains(body.Error, "…") || !utf8.ValidString(body.Error) {
			t.Errorf("%s: %d answer of %d bytes %.300q, want under 1 KiB quoting the input cut", c.name, rec.Code, rec.Body.Len(), body.Error)
		}
	}
}

// TestCutQuotedPieces: each quoted value is cut to maxQuoted bytes on a
// character and escape boundary, with an ellipsis; short values, text
// outside quotes and a sentence already cut stay as they are.
func TestCutQuotedPieces(t *testing.T) {
	long := strings.Repeat("a", 62)
	for _, c := range []struct{ in, want string }{
		{`entity "k" not found`, `entity "k" not found`},
		{`key "` + long + `é€x": bad`, `key "` + long + `é…": bad`},
		{`key "` + long + `\u00e9zzz" and "b"`, `key "` + long + `…" and "b"`},
		{`key "` + long[:60] + `\"\u00e9zzz"`, `key "` + long[:60] + `\"…"`},
		{`key "` + long + `a` + `aa\"` + `" then "unclosed` + long, `key "` + long + `aa…" then "unclosed` + long},
		{fmt.Sprintf("%q: %q", strings.Repeat("b", 100), strings.Repeat("c", 100)), `"` + strings.Repeat("b", 64) + `…": "` + strings.Repeat("c", 64) + `…"`},
	} {
		got := cutQuotedPieces(c.in, '"')
		if got != c.want {
			t.Errorf("cutQuotedPieces(%q) =\n%q, want\n%q", c.in, got, c.want)
		}
		if again := cutQuotedPieces(got, '"'); again != got {
			t.Errorf("cutting %q again = %q, want it unchanged", got, again)
		}
	}
}
