package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// benchLine matches one result line of -role=bench.
var benchLine = regexp.MustCompile(`^(\S+)\s+ops=(\d+)\s+errors=(\d+)\s+ops/s=\S+\s+p50=\S+\s+p99=\S+ c=(\d+)$`)

// benchResults runs -role=bench with args and returns its result lines by
// name, failing unless each has operations, no errors and concurrency c.
func benchResults(t *testing.T, c int, args ...string) map[string]int {
	t.Helper()
	out, err := runBinary(t, append([]string{"-role=bench", "-duration=300ms", fmt.Sprint("-concurrency=", c)}, args...)...)
	if err != nil {
		t.Fatalf("-role=bench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ops, _ := strconv.Atoi(m[2])
		if m[3] != "0" || ops == 0 || m[4] != fmt.Sprint(c) {
			t.Errorf("-role=bench %s: %q, want operations, errors=0 and c=%d", strings.Join(args, " "), line, c)
		}
		got[m[1]] = ops
	}
	return got
}

// TestBenchRole: the load tool drives a running server with PUTs and GETs
// that succeed and land in the database it names, and measures both raw
// ceilings; a bad -ops or -ceiling is an error naming the flag.
func TestBenchRole(t *testing.T) {
	n, _ := startDefault(t)
	got := benchResults(t, 2, "-target="+n.base, "-token="+testAdminKey, "-bench-db=loadtest", "-keys=20", "-value-size=200")
	if _, ok := got["put"]; !ok {
		t.Errorf("bench printed no put line: %v", got)
	}
	if _, ok := got["get"]; !ok {
		t.Errorf("bench printed no get line: %v", got)
	}
	if code, out, _ := n.call("GET", "/api/databases", testAdminKey, nil); code != 200 || strings.TrimSpace(string(out)) != `["loadtest"]` {
		t.Errorf("GET /api/databases after the bench = %d %s, want [\"loadtest\"]", code, out)
	}
	if _, ok := benchResults(t, 2, "-ceiling=http")["ceiling-http"]; !ok {
		t.Error("-ceiling=http printed no ceiling-http line")
	}
	if _, ok := benchResults(t, 2, "-ceiling=fsync", "-ceiling-dir="+t.TempDir())["ceiling-fsync"]; !ok {
		t.Error("-ceiling=fsync printed no ceiling-fsync line")
	}
	for _, c := range []struct{ arg, want string }{
		{"-ops=put,nope", "-ops"}, {"-ceiling=disk", "-ceiling"}, {"-concurrency=0", "-concurrency"},
	} {
		out, err := runBinary(t, "-role=bench", "-duration=100ms", "-target="+n.base, "-token="+testAdminKey, c.arg)
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("-role=bench %s: err=%v output %q, want a failure naming %s", c.arg, err, out, c.want)
		}
	}
}

// TestBenchCeilingServes: -ceiling=http -ceiling-addr serves the trivial
// handler until stopped, for another load tool: every path answers a JSON
// document of about -value-size bytes, as a warm GET answers one.
func TestBenchCeilingServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b, err := parseBenchFlags([]string{"-ceiling=http", "-ceiling-addr=" + addr, "-value-size=2000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runBench(ctx, b, io.Discard) }()
	var resp *http.Response
	waitFor(t, func() bool { resp, err = http.Get("http://" + addr + "/entity/bench?key=k1"); return err == nil })
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !json.Valid(body) || len(body) < 1900 || len(body) > 2100 {
		t.Errorf("trivial handler answered %d with %d bytes (valid JSON: %v), want 200 and a document of about 2000", resp.StatusCode, len(body), json.Valid(body))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("runBench after the stop = %v", err)
	}
}
