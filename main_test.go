package main

import (
	"bytes"
	"errors"
	"flag"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchFlagsOwnSet: the load tool's flags are not the server's: the
// server's -h does not list them and the server refuses them, while
// -role=bench (in any flag position and spelling) takes them.
func TestBenchFlagsOwnSet(t *testing.T) {
	var help bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseFlags(-h) = %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"-ceiling", "-concurrency", "-target", "-value-size"} {
		if strings.Contains(help.String(), f+" ") {
			t.Errorf("server -h lists the bench flag %s", f)
		}
	}
	if _, err := parseFlags([]string{"-concurrency=3"}, &help); err == nil {
		t.Error("the server accepts the bench flag -concurrency")
	}
	for _, c := range []struct {
		args  string
		bench bool
	}{
		{"-role=bench -concurrency=3", true},
		{"-concurrency=3 --role=bench", true},
		{"-role bench -concurrency=3", true},
		{"-token x -role bench -concurrency=3", true},
		{"-role=all", false},
		{"-shared-fs bench", false},
		{"-- -role=bench", false},
	} {
		args := strings.Fields(c.args)
		if got := benchRole(args); got != c.bench {
			t.Errorf("benchRole(%q) = %v, want %v", c.args, got, c.bench)
			continue
		}
		if !c.bench {
			continue
		}
		b, err := parseBenchFlags(args, &help)
		if err != nil || b.concurrency != 3 {
			t.Errorf("parseBenchFlags(%q) = concurrency %d, %v, want 3", c.args, b.concurrency, err)
		}
	}
}

// TestPackageDocNamesEveryFile: main.go's package doc maps every Go file
// of the package, so a file added without a line there fails here.
func TestPackageDocNamesEveryFile(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if !strings.HasSuffix(name, "_test.go") && !strings.Contains(doc, name) {
			t.Errorf("main.go's package doc does not name %s: add a line saying what it owns", name)
		}
	}
}
