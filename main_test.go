package main

import (
	"bytes"
	"errors"
	"flag"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
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

// TestDocCitations: every citation of a section of ARCHITECTURE.md or
// API.md in the code names a heading that exists there, and nothing cites
// the product contract by its old section numbers, a file that is not in
// the repository.
func TestDocCitations(t *testing.T) {
	headings := map[string]map[string]bool{}
	for _, doc := range []string{"ARCHITECTURE.md", "API.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		headings[doc] = map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
				headings[doc][h] = true
			}
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	cite := regexp.MustCompile(`(ARCHITECTURE\.md|API\.md) "([^"]+)"`)
	joined := regexp.MustCompile(`\n\s*// `)
	n := 0
	for _, name := range append(files, "proto/deltadb.proto") {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		src := joined.ReplaceAllString(string(b), " ")
		if old := "SPEC" + " §"; strings.Contains(src, old) {
			t.Errorf("%s cites %q: cite an ARCHITECTURE.md or API.md section instead", name, old)
		}
		for _, m := range cite.FindAllStringSubmatch(src, -1) {
			n++
			if !headings[m[1]][m[2]] {
				t.Errorf("%s cites %s %q, which has no such heading", name, m[1], m[2])
			}
		}
	}
	if n == 0 {
		t.Error("found no citations at all: the pattern is broken")
	}
}

// TestSecretFlagOneWay: a secret given two ways (its flag or environment
// variable, and its file) is refused, naming the file flag; one way it is
// read, a file's white space trimmed; an empty file is refused.
func TestSecretFlagOneWay(t *testing.T) {
	dir := t.TempDir()
	full, empty := filepath.Join(dir, "full"), filepath.Join(dir, "empty")
	if err := os.WriteFile(full, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		value, file, want, wantErr string
	}{
		{"", "", "", ""},
		{"flag", "", "flag", ""},
		{"", full, "s3cret", ""},
		{"flag", full, "", "-join-token-file: give the join token once, not also with -join-token or " + joinTokenEnv},
		{"", empty, "", "the file is empty"},
		{"", filepath.Join(dir, "missing"), "", "-join-token-file: open"},
	} {
		got, _, err := secretFlag{name: "join-token", env: joinTokenEnv, what: "the join token", value: tc.value, file: tc.file}.read()
		if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("read(value %q, file %q) = %q, %v; want %q, error containing %q", tc.value, tc.file, got, err, tc.want, tc.wantErr)
		}
	}
	// A bad value from the environment names the variable too.
	t.Setenv("MASTER_KEY", "nothex")
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := configuredMasterKey(cfg); err == nil || !strings.Contains(err.Error(), "-master-key (or MASTER_KEY): ") {
		t.Errorf("MASTER_KEY=nothex: %v, want an error naming -master-key and MASTER_KEY", err)
	}
	// The server's flags: DELTADB_JOIN_TOKEN and -join-token-file together
	// are refused too (the environment is the flag's default).
	t.Setenv(joinTokenEnv, strings.Repeat("ab", 32))
	if _, err := parseFlags([]string{"-role=main", "-join-token-file=" + full}, io.Discard); err == nil || !strings.Contains(err.Error(), "not also with") {
		t.Errorf("parseFlags with %s and -join-token-file = %v, want refused", joinTokenEnv, err)
	}
}
