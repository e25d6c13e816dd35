package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

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
// package's non-test files made with errors.New or workerError: the
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

// isSentinelCall reports whether e is errors.New(...) or workerError(...).
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
		return fn.Name == "workerError"
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
		"errPatchConflict": errPatchConflict, "errConflict": errConflict, "errUnavailable": errUnavailable,
		"errConfig": errConfig, "errCorrupt": errCorrupt, "errUnauthenticated": errUnauthenticated,
		"errForbidden": errForbidden, "errRateLimited": errRateLimited, "errTooLarge": errTooLarge,
		"errUnsupportedMedia": errUnsupportedMedia, "errMethod": errMethod, "errTransport": errTransport,
		"errNoWorker": errNoWorker, "errHandingOver": errHandingOver, "errHandingOverLost": errHandingOverLost,
		"errHandoverDamaged": errHandoverDamaged, "errHandoverDamagedLost": errHandoverDamagedLost, "errAuditUnavailable": errAuditUnavailable,
		"errTooManyStreams": errTooManyStreams, "errGone": errGone, "errNoFeed": errNoFeed,
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
