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
)

// TestPythonClient runs the unittest suite of clients/python
// (test_deltadb.py) against a live server with the admin key. A missing
// python3 skips it locally and fails it in CI.
func TestPythonClient(t *testing.T) {
	needBinary(t)
	needProgram(t, "python3", "install python3")
	n, _ := startDefault(t)
	cmd := exec.Command("python3", "-m", "unittest", "discover", "-s", "clients/python", "-v")
	cmd.Env = append(os.Environ(), "DDB_URL="+n.base, "DDB_TOKEN="+testAdminKey, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("clients/python:\n%s", out)
	if err != nil {
		t.Fatalf("python3 -m unittest: %v", err)
	}
	// The suite ran, all of it: no test skipped.
	m := regexp.MustCompile(`(?m)^Ran (\d+) tests? in `).FindSubmatch(out)
	if m == nil {
		t.Fatal("unittest printed no \"Ran N tests\" line")
	}
	if ran, _ := strconv.Atoi(string(m[1])); ran < 10 || strings.Contains(string(out), "skipped") {
		t.Errorf("unittest ran %d tests (skips: %v), want the whole suite", ran, strings.Contains(string(out), "skipped"))
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
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (CI=true): %s", name, install)
	}
	t.Skipf("%s is missing: %s to run this test", name, install)
	return ""
}
