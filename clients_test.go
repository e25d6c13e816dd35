package main

// The client libraries of clients/ and the chat examples of examples/,
// run against the real binary.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Debian's Python and the wheels of its python3-setuptools-whl and
// python3-wheel-whl: what builds clients/python where no Python package
// index is reachable. Debian's setuptools needs Debian's Python (it reads
// the install layout Debian patches into it).
const (
	debianPython = "/usr/bin/python3"
	debianWheels = "/usr/share/python-wheels"
)

// TestPythonClient installs clients/python as a user would, with pip into
// a fresh virtual environment (of Debian's Python, building with Debian's
// setuptools and wheel, no package index), checks that nothing but the package came with
// it and that its type hints reach a type checker (py.typed, mypy
// --strict), then runs its unittest suite from outside the repository, so
// against the installed package, and against a live server. Missing tools
// skip it locally and fail it in CI.
func TestPythonClient(t *testing.T) {
	needBinary(t)
	py := needProgram(t, debianPython, "install Debian's python3 and python3-venv")
	mypy := needProgram(t, "mypy", "install Debian's mypy package")
	var wheels []string // Debian's setuptools and wheel
	for _, name := range []string{"setuptools-*.whl", "wheel-*.whl"} {
		w, _ := filepath.Glob(filepath.Join(debianWheels, name))
		if len(w) == 0 {
			missing(t, filepath.Join(debianWheels, name), "install python3-setuptools-whl and python3-wheel-whl")
		}
		wheels = append(wheels, w...)
	}
	tests, err := filepath.Abs(filepath.Join("clients", "python", "tests"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	venv := filepath.Join(dir, "venv")
	vpy := filepath.Join(venv, "bin", "python")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PIP_NO_INDEX=1", "PIP_DISABLE_PIP_VERSION_CHECK=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The user's command, pip install ./clients/python, on a copy: pip
	// builds in the source tree.
	if err := os.CopyFS(filepath.Join(dir, "clients", "python"), os.DirFS("clients/python")); err != nil {
		t.Fatal(err)
	}
	run(py, "-m", "venv", venv)
	run(vpy, append([]string{"-m", "pip", "install", "-q"}, wheels...)...)
	run(vpy, "-m", "pip", "install", "--no-build-isolation", "./clients/python")
	if got := strings.Fields(run(vpy, "-m", "pip", "list", "--format=freeze", "--exclude", "pip", "--exclude", "setuptools", "--exclude", "wheel")); !slices.Equal(got, []string{"deltadb==1.0.0"}) {
		t.Errorf("pip list in the virtual environment = %q, want deltadb==1.0.0 alone (no dependency)", got)
	}
	where := strings.TrimSpace(run(vpy, "-c", "import deltadb, os; print(os.path.dirname(deltadb.__file__))"))
	if !strings.HasPrefix(where, venv) {
		t.Errorf("deltadb imported from %s, want the virtual environment's site-packages", where)
	}
	checkPythonTypes(t, dir, mypy, vpy)

	n, _ := startDefault(t)
	cmd := exec.Command(vpy, "-m", "unittest", "discover", "-s", tests, "-v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DDB_URL="+n.base, "DDB_TOKEN="+testAdminKey, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("clients/python/tests:\n%s", out)
	if err != nil {
		t.Fatalf("python -m unittest: %v", err)
	}
	// The suite ran, all of it: no test skipped.
	m := regexp.MustCompile(`(?m)^Ran (\d+) tests? in `).FindSubmatch(out)
	if m == nil {
		t.Fatal("unittest printed no \"Ran N tests\" line")
	}
	if ran, _ := strconv.Atoi(string(m[1])); ran < 15 || strings.Contains(string(out), "skipped") {
		t.Errorf("unittest ran %d tests (skips: %v), want the whole suite", ran, strings.Contains(string(out), "skipped"))
	}
	runFollowExample(t, n, vpy, dir)
}

// runFollowExample runs README's follow-example (the Python client's
// follow, printing each new chat message) against n, appends a message
// through the REST API once it follows, and waits for the line it prints.
func runFollowExample(t *testing.T, n *node, vpy, dir string) {
	n.call("PUT", "/entity/chatdb", testAdminKey, map[string]any{"session_001": map[string]any{"messages": []any{}}})
	cmd := exec.Command(vpy, "-c", readmeBlock(t, "follow-example"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DDB_URL="+n.base, "DDB_TOKEN="+testAdminKey, "PYTHONDONTWRITEBYTECODE=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	w := newWait(t, "the example's event stream", 20*time.Second)
	for {
		_, metrics, _ := n.call("GET", "/metrics", testAdminKey, nil)
		if strings.Contains(string(metrics), "deltadb_changes_streams_open 1") {
			break
		}
		if w.over() {
			t.Fatalf("the README example opened no stream: %v\n%s", w, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	msg := map[string]any{"session_001": map[string]any{"messages": []any{map[string]string{"role": "user", "content": "hi"}}}}
	if code, body, _ := n.call("PUT", "/entity/chatdb", testAdminKey, msg); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	want := strings.TrimSpace(readmeBlock(t, "follow-example-output"))
	for w := newWait(t, "the example's line", 20*time.Second); !strings.Contains(out.String(), want); time.Sleep(50 * time.Millisecond) {
		if w.over() {
			t.Fatalf("the README example printed %q, want %q: %v", out, want, w)
		}
	}
}

// checkPythonTypes runs mypy --strict on the package's source, and on a
// program using the package installed in the virtual environment of
// python vpy: one that uses it rightly passes, one that passes a wrong
// type is refused (so the installed package's hints reach mypy).
func checkPythonTypes(t *testing.T, dir, mypy, vpy string) {
	t.Helper()
	good := `import deltadb
db = deltadb.Client("http://127.0.0.1:8080", "key")
doc, etag = db.append_message("chatdb", "s", {"role": "user", "content": "hi"})
tag: "str | None" = db.put("chatdb", "s", {"messages": []}, if_match=etag)
keys: "list[str]" = list(db.list_keys("chatdb"))
items: "list[deltadb.Item]" = list(db.list_keys("chatdb", include_docs=True))
try:
    db.put("chatdb", "bad", {})
except deltadb.ValidationFailed as err:
    paths: "list[str]" = [e["path"] for e in err.errors]
`
	bad := "import deltadb\ndeltadb.Client(\"http://x\").put(\"db\", 1, {})\n"
	for name, src := range map[string]string{"good.py": good, "bad.py": bad} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mypyRun := func(args ...string) (string, error) {
		cmd := exec.Command(mypy, append([]string{"--strict", "--no-incremental", "--cache-dir=" + filepath.Join(dir, ".mypy")}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	src, err := filepath.Abs(filepath.Join("clients", "python", "src", "deltadb"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := mypyRun(src); err != nil {
		t.Errorf("mypy --strict on clients/python/src/deltadb: %v\n%s", err, out)
	}
	if out, err := mypyRun("--python-executable", vpy, "good.py"); err != nil {
		t.Errorf("mypy --strict on a program using the installed package: %v\n%s", err, out)
	}
	if out, err := mypyRun("--python-executable", vpy, "bad.py"); err == nil || !strings.Contains(out, `Argument 2 to "put" of "Client" has incompatible type "int"; expected "str"`) {
		t.Errorf("mypy on a program passing an int key: %v\n%s\nwant the wrong argument refused", err, out)
	}
}

// TestReadmeExamples does what README tells a newcomer: the quick start,
// then, in the same shell, the examples block of "Clients and examples",
// each example in README's order. The quick start's output must be
// README's, every example must continue the quick start's session_001
// (printing its key as title, never "null" or a traceback), the last must
// print what README shows, and the server must hold those messages.
func TestReadmeExamples(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "python3", "go"} {
		needProgram(t, tool, "README's examples run it")
	}
	env := quickStartEnv(t)
	n := startNode(t, env, "-shared-fs="+filepath.Join(t.TempDir(), "db"))
	quick := strings.Replace(readmeBlock(t, "quickstart"), "DDB=http://127.0.0.1:8080", "DDB="+n.base, 1)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", quick+"\n"+readmeBlock(t, "examples"))
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("quick start and examples:\n%s", out)
	if err != nil {
		t.Fatalf("quick start and examples: %v", err)
	}
	got := strings.TrimSpace(string(out))
	if want := strings.TrimSpace(readmeBlock(t, "quickstart-output")); !strings.HasPrefix(got, want+"\n") {
		t.Fatalf("the quick start did not print README's output first")
	}
	last := strings.TrimSpace(readmeBlock(t, "examples-output"))
	if !strings.HasSuffix(got, "\n"+last) {
		t.Errorf("the last example did not print README's output:\n%s", last)
	}
	if c := strings.Count(got, "\nsession_001\n"); c != 3 || strings.Contains(got, "null") || strings.Contains(got, "Traceback") {
		t.Errorf("want three examples each printing the session's key as its title, got %d titles (or a null or a traceback)", c)
	}
	var admin string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "ADMIN_KEY="); ok {
			admin = v
		}
	}
	code, body, _ := n.call("GET", "/entity/chatdb?key=session_001", admin, nil)
	var s struct {
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal(body, &s); code != 200 || err != nil {
		t.Fatalf("GET session_001 = %d %s", code, body)
	}
	var stored []string
	for _, m := range s.Messages {
		stored = append(stored, "  "+m.Role+": "+m.Content)
	}
	if want := strings.Split(last, "\n")[1:]; !slices.Equal(stored, want) {
		t.Errorf("session_001 holds %q, want %q", stored, want)
	}
}

// needProgram returns the path of the program name, skipping t when it is
// missing, or failing t when CI=true (CI installs it: install says how).
func needProgram(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, name, install)
	}
	return p
}

// missing skips t, or fails it when CI=true, for want of what (install
// says how to get it).
func missing(t *testing.T, what, install string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (CI=true): %s", what, install)
	}
	t.Skipf("%s is missing: %s to run this test", what, install)
}

// TestTypeScriptClient builds clients/typescript as CI installs its tools
// (.ci/typescript.sh: typescript, openapi-typescript, @types/node, pinned
// by its lock file): the generated src/openapi.ts must be what
// openapi-typescript makes of openapi.json today, tsc --strict must
// compile the package and its tests, and node's test runner runs them
// against the binary. Then the typed program of typed/ is compiled
// against types generated from the live server's GET
// /openapi.json?database=chatdb, and run. Missing node or tools skip it
// locally and fail it in CI.
func TestTypeScriptClient(t *testing.T) {
	needBinary(t)
	node := needProgram(t, "node", "install nodejs")
	tools := os.Getenv("DELTADB_TS_TOOLS_DIR")
	if tools == "" {
		missing(t, "DELTADB_TS_TOOLS_DIR", `eval "$(bash .ci/typescript.sh install)"`)
	}
	bin := filepath.Join(tools, "node_modules", ".bin")
	pkg := filepath.Join(t.TempDir(), "typescript")
	for _, f := range []string{"package.json", "tsconfig.json", "src", "test", "typed"} {
		src := filepath.Join("clients", "typescript", f)
		if st, err := os.Stat(src); err != nil {
			t.Fatal(err)
		} else if !st.IsDir() {
			copyFile(t, src, filepath.Join(pkg, f))
		} else if err := os.CopyFS(filepath.Join(pkg, f), os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(tools, "node_modules"), filepath.Join(pkg, "node_modules")); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = pkg
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	spec, err := filepath.Abs("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	run(nil, filepath.Join(bin, "openapi-typescript"), spec, "-o", "fresh.ts")
	if fresh, committed := readFile(t, filepath.Join(pkg, "fresh.ts")), readFile(t, filepath.Join(pkg, "src", "openapi.ts")); fresh != committed {
		t.Errorf("clients/typescript/src/openapi.ts is not what openapi-typescript makes of openapi.json: run npm run generate there")
	}
	run(nil, filepath.Join(bin, "tsc"), "-p", ".")

	n, _ := startDefault(t)
	env := []string{"DDB_URL=" + n.base, "DDB_TOKEN=" + testAdminKey}
	out := run(env, node, "--test", "dist/test/")
	t.Logf("node --test:\n%s", out)
	if !regexp.MustCompile(`(?m)^# pass ([89]|[1-9]\d+)$`).MatchString(out) || !strings.Contains(out, "\n# fail 0\n") || !strings.Contains(out, "\n# skipped 0\n") {
		t.Errorf("node --test did not pass the whole suite")
	}

	// Types for one database, generated from the live server.
	n.call("PUT", "/schema/chat.v1", testAdminKey, json.RawMessage(`{"type": "object", "required": ["messages"],
		"properties": {"title": {"type": "string"}, "messages": {"type": "array", "items": {"$ref": "#/definitions/message"}}},
		"definitions": {"message": {"type": "object", "required": ["role", "content"],
			"properties": {"role": {"enum": ["user", "assistant", "system"]}, "content": {"type": "string"}}}}}`))
	if code, body, _ := n.call("PUT", "/api/databases/chatdb", testAdminKey, map[string]any{"schema": "chat.v1"}); code != 200 {
		t.Fatalf("bind chatdb = %d %s", code, body)
	}
	code, doc, _ := n.call("GET", "/openapi.json?database=chatdb", testAdminKey, nil)
	if code != 200 {
		t.Fatalf("GET /openapi.json?database=chatdb = %d %s", code, doc)
	}
	if err := os.WriteFile(filepath.Join(pkg, "chatdb.openapi.json"), doc, 0o600); err != nil {
		t.Fatal(err)
	}
	run(nil, filepath.Join(bin, "openapi-typescript"), "chatdb.openapi.json", "-o", "typed/chatdb.ts")
	run(nil, filepath.Join(bin, "tsc"), "-p", "typed")
	out = run(env, node, "dist-typed/typed/check.js")
	if want := `{"title":"Typed","roles":["user","assistant"],"role":"assistant"}`; strings.TrimSpace(out) != want {
		t.Errorf("the typed program printed %q, want %q", out, want)
	}
}

// readFile returns the contents of name.
func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// copyFile copies the regular file src to dst, creating dst's directory.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte(readFile(t, src)), 0o600); err != nil {
		t.Fatal(err)
	}
}
