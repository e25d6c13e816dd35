package main

// The client libraries of clients/, run against the real binary.

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPythonClient runs the unittest suite of clients/python
// (test_deltadb.py) against a live server with the admin key. A missing
// python3 skips it locally and fails it in CI.
func TestPythonClient(t *testing.T) {
	needBinary(t)
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is needed to test clients/python")
		}
		t.Skip("python3 not installed")
	}
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
