package main

// Integration tests: the real binary, built once, run as child processes
// that listen on 127.0.0.1:0 and say in their log which port they got; the
// tests speak to them over real sockets.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the binary built once by TestMain; empty with -short, which
// runs only the in-process tests (CI runs those again under -race).
var binPath string

// coverDir, from the environment variable DDB_COVERDIR, makes TestMain
// build the binary with -cover and the children write their coverage
// counters there (GOCOVERDIR); children then stop with SIGTERM, so that
// they exit normally and write them.
var coverDir = os.Getenv("DDB_COVERDIR")

func TestMain(m *testing.M) {
	flag.Parse()
	noteDefaultTimeout()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ddb-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "deltadatabase")
	build := []string{"build", "-o", binPath}
	if coverDir != "" {
		// atomic, as in the -race run whose counters CI merges with these.
		build = append(build, "-cover", "-covermode=atomic")
	}
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build binary: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needBinary skips t under -short: it runs the binary as a child process.
func needBinary(t *testing.T) {
	t.Helper()
	if binPath == "" {
		t.Skip("runs the binary; not with -short")
	}
}

// Fixed test secrets; none of them is used anywhere but in tests.
const (
	testMasterKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	testAdminKey  = "test-admin-key-0123456789"
	testJoinToken = "4a6f696e20746f6b656e20666f72207465737473206f6e6c792e2e2e2e2e2e21"
)

// node is one running child process of the binary.
type node struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port, once known (see waitHealthy)
	addr   string // 127.0.0.1:port of REST, once known
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// refusedAddr returns a loopback address where connections are refused: a
// TCP socket bound to a port but not listening. The socket stays bound
// until the test ends, so no other process can take the port meanwhile.
func refusedAddr(t *testing.T) string {
	t.Helper()
	_, addr := boundSocket(t)
	return addr
}

// boundSocket returns a TCP socket bound to a loopback port, not
// listening (connections are refused until it listens), and its address.
// It is closed when the test ends.
func boundSocket(t *testing.T) (int, string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// startNode starts the binary with args (plus -rest-addr, -grpc-addr and
// -cluster-addr 127.0.0.1:0 unless given) and env, and waits until /health
// answers.
func startNode(t *testing.T, env []string, args ...string) *node {
	t.Helper()
	n := launch(t, env, args...)
	n.waitHealthy()
	return n
}

// launch starts the binary without waiting for it to become healthy.
func launch(t *testing.T, env []string, args ...string) *node {
	t.Helper()
	needBinary(t)
	n := &node{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	for _, flag := range []string{"-rest-addr", "-grpc-addr", "-cluster-addr"} {
		if !hasFlag(args, flag) {
			args = append(args, flag+"=127.0.0.1:0")
		}
	}
	n.cmd = exec.Command(binPath, args...)
	n.cmd.Env = withCoverDir(append(os.Environ(), env...))
	n.cmd.Stdout, n.cmd.Stderr = n.stdout, n.stderr
	// A test binary killed by its timeout runs no cleanup: without this a
	// node it left (one stopped with SIGSTOP, say) lives on, holding its
	// ports, its storage and whatever the test process inherited.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); close(n.done) }()
	t.Cleanup(n.finish)
	return n
}

func hasFlag(args []string, name string) bool { return flagValue(args, name) != "" }

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// logOnceTrue returns the process's log once ok holds for it, or after 5 s
// (scaled): a line logged before an answer reaches the test through a
// pipe, so it can arrive after the answer does.
func (n *node) logOnceTrue(ok func(log string) bool) string {
	log := n.stderr.String()
	for deadline := time.Now().Add(scaled(5 * time.Second)); !ok(log) && time.Now().Before(deadline); log = n.stderr.String() {
		time.Sleep(20 * time.Millisecond)
	}
	return log
}

// logAddr waits until the process has logged msg (such as "rest
// listening") and returns the addr of that line, in either -log-format.
func (n *node) logAddr(msg string) string {
	n.t.Helper()
	w := newWait(n.t, fmt.Sprintf("%q in the log", msg), 20*time.Second)
	for {
		for _, line := range strings.Split(n.stderr.String(), "\n") {
			var obj struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &obj) == nil && obj.Msg == msg && obj.Addr != "" {
				return obj.Addr
			}
			if !strings.Contains(line, `msg="`+msg+`"`) {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "addr="); ok {
					return v
				}
			}
		}
		select {
		case <-n.done:
			n.t.Fatalf("process exited before logging %q: %v\nstderr:\n%s", msg, n.cmd.ProcessState, n.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if w.over() {
			n.t.Fatalf("no %q line with addr= in the log: %v\nstderr:\n%s", msg, w, n.stderr)
		}
	}
}

// waitHealthy learns the REST address from the log, then polls /health
// until it answers 200 or the process exits.
func (n *node) waitHealthy() {
	n.t.Helper()
	n.addr = n.logAddr("rest listening")
	n.base = "http://" + n.addr
	w := newWait(n.t, "/health to answer 200", 20*time.Second)
	for !w.over() {
		select {
		case <-n.done:
			n.t.Fatalf("server exited early: %v\nstdout:\n%s\nstderr:\n%s", n.cmd.ProcessState, n.stdout, n.stderr)
		default:
		}
		resp, err := http.Get(n.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("server not healthy: %v\nstderr:\n%s", w, n.stderr)
}

// kill sends SIGKILL and waits for the process to end.
func (n *node) kill() {
	if n.cmd.Process != nil {
		n.cmd.Process.Kill()
	}
	<-n.done
}

// finish ends a process at the end of its test: SIGKILL, or when coverage
// is collected SIGTERM first, so that it writes its counters.
func (n *node) finish() {
	if coverDir != "" && n.cmd.Process != nil {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
			return
		case <-time.After(scaled(10 * time.Second)):
		}
	}
	n.kill()
}

// stop sends SIGTERM and waits for a graceful exit.
func (n *node) stop() {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(scaled(30 * time.Second)):
		n.t.Fatal("server did not stop within 30s (scaled by the load) of SIGTERM")
	}
}

// exitErr waits for a process expected to stop by itself and returns its
// stderr.
func (n *node) exitErr() string {
	n.t.Helper()
	select {
	case <-n.done:
	case <-time.After(scaled(20 * time.Second)):
		n.t.Fatal("process did not exit within 20s (scaled by the load)")
	}
	if n.cmd.ProcessState.ExitCode() == 0 {
		n.t.Fatalf("process exited 0, want an error; stderr:\n%s", n.stderr)
	}
	return n.stderr.String()
}

// call sends one request and returns the status and body.
func (n *node) call(method, path, token string, body any) (int, []byte, http.Header) {
	n.t.Helper()
	return httpCall(n.t, method, n.base+path, token, body)
}

// httpCall sends one request; body is a string, []byte or a value to
// encode as JSON.
func httpCall(t testing.TB, method, u, token string, body any) (int, []byte, http.Header) {
	t.Helper()
	code, out, hdr, err := doCall(method, u, token, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, out, hdr
}

// tryCall is httpCall for goroutines: it returns the error instead of
// failing the test.
func tryCall(method, u, token string, body any) (int, []byte, error) {
	code, out, _, err := doCall(method, u, token, body)
	return code, out, err
}

// doCall sends one request (see httpCall) and returns the status, body
// and headers.
func doCall(method, u, token string, body any) (int, []byte, http.Header, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("%s %s: encode body: %w", method, u, err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: read body: %w", method, u, err)
	}
	return resp.StatusCode, out, resp.Header, nil
}

// keyEnv is the environment of a node with the test's fixed keys.
var keyEnv = []string{"MASTER_KEY=" + testMasterKey, "ADMIN_KEY=" + testAdminKey}

// clusterEnv is the environment of a -role=main node: the fixed keys and
// the join token; workerEnv that of a -role=proc node: no keys of its own,
// the join token.
var (
	clusterEnv = append(slices.Clip(keyEnv), joinTokenEnv+"="+testJoinToken)
	workerEnv  = []string{"MASTER_KEY=", "ADMIN_KEY=", joinTokenEnv + "=" + testJoinToken}
)

// startDefault starts -role=all on a fresh storage dir.
func startDefault(t *testing.T, args ...string) (*node, string) {
	dir := filepath.Join(t.TempDir(), "db")
	return startNode(t, keyEnv, append([]string{"-shared-fs=" + dir}, args...)...), dir
}

// readmeBlock returns the fenced code block of README.md that follows the
// marker comment <!-- name -->.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "<!-- "+name+" -->")
	if !ok {
		t.Fatalf("README.md has no <!-- %s --> marker", name)
	}
	_, rest, _ = strings.Cut(rest, "```")
	_, rest, _ = strings.Cut(rest, "\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md block %s is not closed", name)
	}
	return block
}

// TestReadmeQuickStart runs README's quick start verbatim against a server
// started as README says (the same MASTER_KEY/ADMIN_KEY exports), only
// pointing DDB at this test's port, and compares its output with the
// output README shows.
func TestReadmeQuickStart(t *testing.T) {
	env := quickStartEnv(t)
	n := startNode(t, env, "-shared-fs="+filepath.Join(t.TempDir(), "db"))
	runQuickStart(t, n, env)
}

// quickStartEnv is the environment README's quick-start server block
// exports.
func quickStartEnv(t *testing.T) []string {
	env := []string{}
	for _, line := range strings.Split(readmeBlock(t, "quickstart-server"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export "); ok {
			env = append(env, strings.Fields(v)...)
		}
	}
	return env
}

// runQuickStart runs README's quick-start block against n and compares its
// output with README's.
func runQuickStart(t *testing.T, n *node, env []string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run README's quick start")
	}
	script := strings.Replace(readmeBlock(t, "quickstart"), "DDB=http://127.0.0.1:8080", "DDB="+n.base, 1)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quick start failed: %v\n%s", err, out)
	}
	want := strings.TrimSpace(readmeBlock(t, "quickstart-output"))
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("quick start printed:\n%s\nwant (README):\n%s", got, want)
	}
}

func TestBatchPutAndGet(t *testing.T) {
	n, _ := startDefault(t)
	body := map[string]any{
		"s1":        map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}},
		"s2":        []any{1, 2, 3},
		"s3":        "just a string",
		"ключ ü 日本": map[string]any{"nested": map[string]any{"ok": true}},
	}
	code, out, _ := n.call("PUT", "/entity/chatdb", testAdminKey, body)
	if code != 200 || strings.TrimSpace(string(out)) != `{"status":"ok"}` {
		t.Fatalf("batch PUT = %d %s, want 200 {\"status\":\"ok\"}", code, out)
	}
	for k, v := range body {
		code, out, hdr := n.call("GET", "/entity/chatdb?key="+url.QueryEscape(k), testAdminKey, nil)
		want, _ := json.Marshal(v)
		if code != 200 || !jsonEqual(out, want) {
			t.Errorf("GET %q = %d %s, want 200 %s", k, code, out, want)
		}
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %q Content-Type = %q, want application/json", k, ct)
		}
	}
	code, out, _ = n.call("GET", "/api/databases", testAdminKey, nil)
	if code != 200 || strings.TrimSpace(string(out)) != `["chatdb"]` {
		t.Errorf("GET /api/databases = %d %s, want 200 [\"chatdb\"]", code, out)
	}
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// TestEntityAndSchemaStatusCodes checks every status API.md
// ("Errors and request IDs") and openapi.json give the
// entity and schema endpoints, and that each error body is {"error": ...}.
func TestEntityAndSchemaStatusCodes(t *testing.T) {
	n, dir := startDefault(t, "-rest-max-body-size=4096")
	chat := `{"type":"object","required":["messages"],"properties":{"messages":{"type":"array","items":{"type":"object","required":["role","content"],"properties":{"role":{"enum":["user","assistant","system"]},"content":{"type":"string"}}}}}}`
	if code, out, _ := n.call("PUT", "/schema/chat.v1", testAdminKey, chat); code != 200 {
		t.Fatalf("PUT schema = %d %s", code, out)
	}
	if code, out, _ := n.call("PUT", "/entity/chatdb", testAdminKey, `{"exists":{"a":1}}`); code != 200 {
		t.Fatalf("PUT = %d %s", code, out)
	}
	big := `{"k":"` + strings.Repeat("x", 5000) + `"}`
	cases := []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/health", "", "", 200},
		{"GET", "/entity/chatdb?key=exists", testAdminKey, "", 200},
		{"GET", "/entity/chatdb?key=missing", testAdminKey, "", 404},
		{"GET", "/entity/chatdb", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=", testAdminKey, "", 400},
		{"GET", "/entity/bad%20db?key=a", testAdminKey, "", 400},
		{"GET", "/entity/%2e%2e?key=a", testAdminKey, "", 400},
		{"GET", "/entity/a%2fb?key=a", testAdminKey, "", 400},
		{"GET", "/entity/a%2F..%2Fb?key=a", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=..", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=a%2Fb", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=a%5Cb", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=a%00b", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=%ff", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=" + strings.Repeat("k", 257), testAdminKey, "", 400},
		{"GET", "/entity/" + strings.Repeat("d", 65) + "?key=a", testAdminKey, "", 400},
		{"GET", "/entity/chatdb?key=exists", "", "", 401},
		{"GET", "/entity/chatdb?key=exists", "wrong-key", "", 401},
		{"PUT", "/entity/chatdb", "", `{"a":1}`, 401},
		{"PUT", "/entity/chatdb", testAdminKey, `not json`, 400},
		{"PUT", "/entity/chatdb", testAdminKey, `[1,2]`, 400},
		{"PUT", "/entity/chatdb", testAdminKey, `{}`, 400},
		{"PUT", "/entity/chatdb", testAdminKey, `{"a":1} {"b":2}`, 400},
		{"PUT", "/entity/chatdb", testAdminKey, `{"a/b":1}`, 400},
		{"PUT", "/entity/chatdb", testAdminKey, `{"..":1}`, 400},
		{"PUT", "/entity/..", testAdminKey, `{"a":1}`, 400},
		{"PUT", "/entity/chatdb", testAdminKey, big, 413},
		{"PUT", "/entity/chatdb?schema=nope.v1", testAdminKey, `{"a":{"messages":[]}}`, 400},
		{"PUT", "/entity/chatdb?schema=bad%2fid", testAdminKey, `{"a":{"messages":[]}}`, 400},
		{"PUT", "/entity/chatdb?schema=chat.v1", testAdminKey, `{"ok1":{"messages":[]},"zz-bad1":{"messages":[{"role":"robot","content":"x"}]}}`, 400},
		{"PUT", "/entity/chatdb?schema=chat.v1", testAdminKey, `{"ok2":{"messages":[{"role":"user","content":"x"}]}}`, 200},
		{"DELETE", "/entity/chatdb?key=missing", testAdminKey, "", 404},
		{"DELETE", "/entity/chatdb", testAdminKey, "", 400},
		{"DELETE", "/entity/chatdb?key=exists", "", "", 401},
		{"DELETE", "/entity/chatdb?key=ok2", testAdminKey, "", 200},
		{"GET", "/schema/chat.v1", "", "", 200},
		{"GET", "/schema/none.v1", "", "", 404},
		{"GET", "/schema/bad..id", "", "", 400},
		{"PUT", "/schema/new.v1", "", `{"type":"object"}`, 401},
		{"PUT", "/schema/new.v1", testAdminKey, `{"type":`, 400},
		{"PUT", "/schema/chat.v1", testAdminKey, `{"type":5}`, 400},
		{"PUT", "/schema/bad..id", testAdminKey, `{"type":"object"}`, 400},
		{"PUT", "/schema/new.v1", testAdminKey, big, 413},
		{"GET", "/admin/schemas", "", "", 200},
		{"GET", "/admin/workers", testAdminKey, "", 200},
		{"GET", "/admin/workers", "", "", 401},
		{"GET", "/api/databases", "", "", 401},
	}
	for _, c := range cases {
		code, out, _ := n.call(c.method, c.path, c.token, c.body)
		if code != c.want {
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, code, out, c.want)
			continue
		}
		if code >= 400 {
			var e struct{ Error string }
			if json.Unmarshal(out, &e) != nil || e.Error == "" {
				t.Errorf("%s %s error body = %s, want {\"error\": \"...\"}", c.method, c.path, out)
			}
		}
	}
	// The failed schema batch (its invalid key sorts last) wrote nothing,
	// named the failing key and kept the old schema; the failed schema
	// replacement kept chat.v1.
	if code, _, _ := n.call("GET", "/entity/chatdb?key=ok1", testAdminKey, nil); code != 404 {
		t.Errorf("ok1 of a failed batch: GET = %d, want 404 (nothing written)", code)
	}
	_, out, _ := n.call("PUT", "/entity/chatdb?schema=chat.v1", testAdminKey, `{"bad1":{"messages":[{"role":"robot","content":"x"}]}}`)
	if !strings.Contains(string(out), "bad1") || !strings.Contains(string(out), "role") {
		t.Errorf("validation error %s does not name the key and the failing field", out)
	}
	if _, out, _ := n.call("GET", "/schema/chat.v1", "", nil); !jsonEqual(out, []byte(chat)) {
		t.Errorf("chat.v1 after a rejected replacement = %s, want the original", out)
	}
	if _, out, _ := n.call("GET", "/admin/schemas", "", nil); strings.TrimSpace(string(out)) != `["chat.v1"]` {
		t.Errorf("GET /admin/schemas = %s, want [\"chat.v1\"]", out)
	}
	// No rejected name reached the disk.
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if strings.Contains(p, "..") || strings.Contains(info.Name(), "bad") {
			t.Errorf("unexpected path on disk: %s", p)
		}
		return nil
	})
	var workers []workerInfo
	_, out, _ = n.call("GET", "/admin/workers", testAdminKey, nil)
	if json.Unmarshal(out, &workers) != nil || len(workers) != 1 || workers[0].Status != "Available" || workers[0].KeyID != "main-key-v1" {
		t.Errorf("GET /admin/workers = %s, want one Available worker with key_id main-key-v1", out)
	}
}

// TestSchemaTemplateDroppedByHand: a template file written into
// <shared-fs>/templates/ by hand is listed and enforced, and replacing it
// by hand takes effect within recheckEvery.
func TestSchemaTemplateDroppedByHand(t *testing.T) {
	n, dir := startDefault(t)
	tdir := filepath.Join(dir, "templates")
	os.MkdirAll(tdir, 0o700)
	write := func(doc string) {
		if err := os.WriteFile(filepath.Join(tdir, "hand.v1.json"), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"type":"object","required":["a"]}`)
	if _, out, _ := n.call("GET", "/admin/schemas", "", nil); !strings.Contains(string(out), "hand.v1") {
		t.Fatalf("GET /admin/schemas = %s, want hand.v1 listed", out)
	}
	if code, out, _ := n.call("PUT", "/entity/db?schema=hand.v1", testAdminKey, `{"x":{"b":1}}`); code != 400 {
		t.Errorf("PUT without a = %d %s, want 400", code, out)
	}
	write(`{"type":"object","required":["b"]}`)
	// The server trusts its cached template for up to recheckEvery.
	deadline := time.Now().Add(recheckEvery + 5*time.Second)
	for {
		code, out, _ := n.call("PUT", "/entity/db?schema=hand.v1", testAdminKey, `{"x":{"b":1}}`)
		if code == 200 {
			break
		}
		if code != 400 || time.Now().After(deadline) {
			t.Fatalf("PUT after the template was replaced by hand = %d %s, want 200 within %v", code, out, recheckEvery)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConcurrentClients: 32 clients x 50 mixed PUT/GET on distinct keys;
// every final value is the last one its client wrote.
func TestConcurrentClients(t *testing.T) {
	n, _ := startDefault(t, "-entity-cache-size=64")
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for c := range 32 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("c%d-k%d", c, i%10)
				if i%2 == 0 {
					code, out, err := tryCall("PUT", n.base+"/entity/load", testAdminKey, map[string]any{key: map[string]int{"c": c, "i": i}})
					if err != nil || code != 200 {
						errs <- fmt.Errorf("PUT %s = %d %s %v", key, code, out, err)
						return
					}
				} else if code, out, err := tryCall("GET", n.base+"/entity/load?key="+fmt.Sprintf("c%d-k%d", c, (i-1)%10), testAdminKey, nil); err != nil || code != 200 {
					errs <- fmt.Errorf("GET = %d %s %v", code, out, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for c := range 32 {
		for k := range 10 {
			// The last even i with i%10 == k.
			last := -1
			for i := 0; i < 50; i += 2 {
				if i%10 == k {
					last = i
				}
			}
			if last < 0 {
				continue
			}
			_, out, _ := n.call("GET", fmt.Sprintf("/entity/load?key=c%d-k%d", c, k), testAdminKey, nil)
			want := fmt.Sprintf(`{"c":%d,"i":%d}`, c, last)
			if !jsonEqual(out, []byte(want)) {
				t.Errorf("c%d-k%d = %s, want %s", c, k, out, want)
			}
		}
	}
}

// TestRestartKeys: the same key keeps the data; a wrong key and a missing
// key refuse to start with a clear message; no file holds plaintext.
func TestRestartKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	marker := "PLAINTEXT-MARKER-7f3a9c"
	n := startNode(t, keyEnv, "-shared-fs="+dir)
	n.call("PUT", "/entity/secrets", testAdminKey, map[string]string{"doc1": marker, "doc2-" + marker: "x"})
	n.call("PUT", "/schema/s.v1", testAdminKey, `{"type":"string"}`)
	n.stop()
	if log := n.stderr.String() + n.stdout.String(); strings.Contains(log, marker) || strings.Contains(log, testMasterKey) || strings.Contains(log, testAdminKey) {
		t.Errorf("the output holds entity data or a key:\n%s", log)
	}

	n = startNode(t, keyEnv, "-shared-fs="+dir)
	if code, out, _ := n.call("GET", "/entity/secrets?key=doc1", testAdminKey, nil); code != 200 || string(out) != `"`+marker+`"` {
		t.Errorf("after restart GET doc1 = %d %s, want the marker", code, out)
	}
	n.stop()

	wrong := strings.Repeat("ab", 32)
	msg := launch(t, []string{"MASTER_KEY=" + wrong, "ADMIN_KEY=x"}, "-shared-fs="+dir).exitErr()
	if !strings.Contains(msg, "wrong master key") || strings.Contains(msg, wrong) {
		t.Errorf("wrong key: stderr = %q, want 'wrong master key' and no key material", msg)
	}
	msg = launch(t, []string{"MASTER_KEY=", "ADMIN_KEY=x"}, "-shared-fs="+dir).exitErr()
	if !strings.Contains(msg, "already holds data") {
		t.Errorf("no key on non-empty storage: stderr = %q, want 'already holds data'", msg)
	}

	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			if err == nil && info.Mode().Perm() != 0o700 {
				t.Errorf("dir %s mode %v, want 0700", p, info.Mode().Perm())
			}
			return nil
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("file %s mode %v, want 0600", p, info.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(marker)) || strings.Contains(p, marker) {
			t.Errorf("%s contains the plaintext marker", p)
		}
		return nil
	})
}

// TestMasterKeyFile: -master-key-file works, and is refused together with
// MASTER_KEY so that a start never guesses which key is meant.
func TestMasterKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	keyFile := filepath.Join(t.TempDir(), "master.key")
	os.WriteFile(keyFile, []byte(testMasterKey+"\n"), 0o600)
	n := startNode(t, []string{"MASTER_KEY=", "ADMIN_KEY=" + testAdminKey}, "-shared-fs="+dir, "-master-key-file="+keyFile)
	n.call("PUT", "/entity/db", testAdminKey, `{"k":1}`)
	n.stop()
	n = startNode(t, keyEnv, "-shared-fs="+dir) // the same key from the environment
	if code, out, _ := n.call("GET", "/entity/db?key=k", testAdminKey, nil); code != 200 || string(out) != "1" {
		t.Errorf("GET with the same key from MASTER_KEY = %d %s", code, out)
	}
	n.stop()
	msg := launch(t, keyEnv, "-shared-fs="+dir, "-master-key-file="+keyFile).exitErr()
	if !strings.Contains(msg, "-master-key-file") {
		t.Errorf("both -master-key-file and MASTER_KEY: stderr = %q", msg)
	}
}

// TestGeneratedKeysPrintedOnce: with no keys, a fresh storage gets both
// keys generated and printed on stdout (not in the log), and they work.
func TestGeneratedKeysPrintedOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	n := startNode(t, []string{"MASTER_KEY=", "ADMIN_KEY="}, "-shared-fs="+dir)
	out := n.stdout.String()
	var master, admin string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if v, ok := strings.CutPrefix(f[0], "MASTER_KEY="); ok {
			master = v
		}
		if v, ok := strings.CutPrefix(f[0], "ADMIN_KEY="); ok {
			admin = v
		}
	}
	if len(master) != 64 || admin == "" {
		t.Fatalf("stdout = %q, want MASTER_KEY= and ADMIN_KEY= lines", out)
	}
	if strings.Contains(n.stderr.String(), master) || strings.Contains(n.stderr.String(), admin) {
		t.Error("a generated key appears in the log")
	}
	if code, _, _ := n.call("PUT", "/entity/db", admin, `{"k":1}`); code != 200 {
		t.Errorf("PUT with the generated admin key = %d, want 200", code)
	}
	n.stop()
	n = startNode(t, []string{"MASTER_KEY=" + master, "ADMIN_KEY=" + admin}, "-shared-fs="+dir)
	if strings.Contains(n.stdout.String(), "MASTER_KEY=") {
		t.Error("a restart with the key printed a new master key")
	}
	if code, out, _ := n.call("GET", "/entity/db?key=k", admin, nil); code != 200 || string(out) != "1" {
		t.Errorf("GET after restart = %d %s, want 200 1", code, out)
	}
}

// TestKillDuringWrites: SIGKILL during 16-way concurrent PUTs; after a
// restart every PUT answered 200 before the kill reads back equal.
func TestKillDuringWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	n := startNode(t, keyEnv, "-shared-fs="+dir)
	var mu sync.Mutex
	acked := map[string]int{} // key -> highest i acknowledged
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("w%d-%d", c, i%20)
				body, _ := json.Marshal(map[string]int{key: i})
				req, _ := http.NewRequestWithContext(ctx, "PUT", n.base+"/entity/crash", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testAdminKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked[key] = i
					mu.Unlock()
				}
			}
		})
	}
	// The kill lands once writes are going (100 acknowledged) and at
	// least 1.5 s in.
	time.Sleep(1500 * time.Millisecond)
	for w := newWait(t, "100 acknowledged writes", 20*time.Second); !w.over(); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		enough := len(acked) >= 100
		mu.Unlock()
		if enough {
			break
		}
	}
	n.cmd.Process.Kill()
	<-n.done
	cancel()
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no PUT was acknowledged before the kill")
	}
	n = startNode(t, keyEnv, "-shared-fs="+dir)
	// A client writes increasing values per key, so the stored value may
	// be a later write that was durable but not yet answered, never an
	// older one.
	for key, i := range acked {
		code, out, _ := n.call("GET", "/entity/crash?key="+key, testAdminKey, nil)
		var got int
		if code != 200 || json.Unmarshal(out, &got) != nil || got < i {
			t.Errorf("acknowledged %s=%d: after kill GET = %d %s", key, i, code, out)
		}
	}
	t.Logf("%d acknowledged keys checked after SIGKILL", len(acked))
	// The kill's leftover temp files are young: a start keeps them (they
	// could be another live process's writes). Aged past staleTempAge,
	// the next start removes them.
	n.cmd.Process.Kill()
	<-n.done
	old := time.Now().Add(-staleTempAge - time.Minute)
	temps := func() (found []string) {
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && strings.HasPrefix(info.Name(), tmpPrefix) {
				found = append(found, p)
			}
			return nil
		})
		return found
	}
	for _, p := range temps() {
		os.Chtimes(p, old, old)
	}
	n = startNode(t, keyEnv, "-shared-fs="+dir)
	if left := temps(); len(left) > 0 {
		t.Errorf("stale temp files left after restart: %v", left)
	}
}

// TestBadFlags: a bad flag value or role stops at start with a one-line
// error naming the flag: an address that is not host:port too, before any
// start-up log line (a proc's -main-addr used to be dialled forever).
func TestBadFlags(t *testing.T) {
	needBinary(t)
	token := "-join-token=" + strings.Repeat("a", 64)
	for _, c := range []struct{ args, want string }{
		{"-rest-addr=bogus", "-rest-addr"},
		{"-grpc-addr=127.0.0.1:99999", "-grpc-addr"},
		{"-cluster-addr=nohost " + token, "-cluster-addr"},
		{"-role=proc -main-addr=nohostport " + token, "-main-addr"},
		{"-role=proc -advertise-addr=10.0.0.1:0 " + token, "-advertise-addr"},
		{"-role=nope", "-role"},
		{"-cache-size=-1", "-cache-size"},
		{"-rest-max-body-size=0", "-rest-max-body-size"},
		{"-cache-ttl=soon", "cache-ttl"},
		{"-master-key=abc", "-master-key"},
		{"-pprof", "-pprof"},
		{"-grpc-max-connection-idle=0s", "-grpc-max-connection-idle"},
		{"-grpc-addr=127.0.0.1:0 -ops-addr=nohost", "-ops-addr"},
		{"-log-format=xml", "-log-format"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, binPath, strings.Fields(c.args+" -shared-fs="+t.TempDir())...)
		cmd.Env = withCoverDir(os.Environ())
		out, err := cmd.CombinedOutput()
		cancel()
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err == nil || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: err=%v output %q, want a one-line failure naming %s", c.args, err, out, c.want)
		}
	}
	// A -changes-dir that cannot be made (a file is in its way) fails
	// after the flags parsed, before the storage is opened
	// (TestBadFileFlagsTouchNothing): the error names it.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runBinary(t, "-rest-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0", "-cluster-addr=127.0.0.1:0",
		"-changes-dir="+filepath.Join(file, "feed"), "-shared-fs="+t.TempDir())
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err == nil || !strings.HasPrefix(lines[len(lines)-1], "deltadatabase: -changes-dir: ") {
		t.Errorf("-changes-dir under a file: err=%v output %q, want a last line naming -changes-dir", err, out)
	}
	// A -shared-fs that cannot be made is named too, on either role that
	// opens it (it used to say only "open fs store PATH: ...").
	for _, role := range []string{"-role=all", "-role=proc"} {
		out, err := runBinary(t, role, "-rest-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0", "-cluster-addr=127.0.0.1:0",
			token, "-shared-fs="+filepath.Join(file, "db"))
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err == nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "deltadatabase: -shared-fs: ") {
			t.Errorf("%s -shared-fs under a file: err=%v output %q, want one line naming -shared-fs", role, err, out)
		}
	}
}

// TestAddressInUseTouchesNothing: a start whose address is taken stops
// with one line naming the flag before it opens the storage, so no keys
// are generated and printed by a start that then fails (the next start
// on that storage, without those keys, was refused); the next start on a
// free port is a first start.
func TestAddressInUseTouchesNothing(t *testing.T) {
	needBinary(t)
	dir := filepath.Join(t.TempDir(), "db")
	for _, flag := range []string{"-rest-addr", "-grpc-addr", "-cluster-addr", "-ops-addr"} {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, binPath, "-shared-fs="+dir, "-rest-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0",
			"-cluster-addr=127.0.0.1:0", "-join-token="+testJoinToken, flag+"="+taken.Addr().String())
		cmd.Env = withCoverDir(slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "MASTER_KEY=") }))
		out, err := cmd.CombinedOutput()
		cancel()
		taken.Close()
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err == nil || len(lines) != 1 || !strings.Contains(lines[0], flag+": listen") {
			t.Errorf("%s taken: err=%v output %q, want a one-line failure naming %s", flag, err, out, flag)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s taken: the storage was created (%v)", flag, err)
		}
	}
	n := startNode(t, nil, "-shared-fs="+dir)
	if !strings.Contains(n.stdout.String(), "MASTER_KEY=") {
		t.Errorf("the start after them did not generate the keys: %q", n.stdout)
	}
}

// TestBadFileFlagsTouchNothing: a flag naming a file the main worker
// opens after its keys are loaded (TLS certificates, the audit log, the
// key store) or a -worker-id that cannot name a worker stops the start
// with one line naming the flag before the storage is touched: no keys
// generated, printed and stored by a start that then fails. So does an
// OpenID provider -oidc-required cannot reach.
func TestBadFileFlagsTouchNothing(t *testing.T) {
	needBinary(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "db")
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing", "x.pem")
	for _, c := range []struct{ args, want string }{
		{"-tls-cert=" + missing + " -tls-key=" + missing, "-tls-cert: "},
		{"-join-token=" + testJoinToken + " -cluster-tls-cert=" + missing + " -cluster-tls-key=" + missing, "-cluster-tls-cert: "},
		{"-join-token=" + testJoinToken + " -cluster-tls-ca=" + missing, "-cluster-tls-ca: "},
		{"-audit-log=" + filepath.Join(tmp, "missing", "audit.log"), "-audit-log: "},
		{"-audit-log=" + tmp, "-audit-log: "},
		{"-key-store=" + filepath.Join(file, "keys.json"), "-key-store: "},
		{"-key-store=" + tmp, "-key-store: "},
		{"-changes-dir=" + filepath.Join(file, "feed"), "-changes-dir: "},
		{"-worker-id=a/b", `-worker-id: worker ID "a/b"`},
		{"-worker-id=.w", `-worker-id: worker ID ".w" must start with a letter or digit`},
		// Not a bad value but a provider down: the start stops as early.
		{"-oidc-issuer=http://127.0.0.1:1 -oidc-audience=ddb -oidc-required", "-oidc-issuer: "},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		args := append([]string{"-shared-fs=" + dir, "-rest-addr=127.0.0.1:0", "-grpc-addr=127.0.0.1:0", "-cluster-addr=127.0.0.1:0"},
			strings.Fields(c.args)...)
		cmd := exec.CommandContext(ctx, binPath, args...)
		cmd.Env = withCoverDir(slices.DeleteFunc(os.Environ(), func(e string) bool {
			return strings.HasPrefix(e, "MASTER_KEY=") || strings.HasPrefix(e, "ADMIN_KEY=")
		}))
		out, err := cmd.CombinedOutput()
		cancel()
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); err == nil || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: err=%v output %q, want one line naming %s", c.args, err, out, c.want)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the storage was created (%v)", c.args, err)
		}
	}
}

// runBinary runs the binary to its end and returns its combined output.
func runBinary(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	needBinary(t)
	cmd := exec.Command(binPath, args...)
	cmd.Env = withCoverDir(os.Environ())
	return cmd.CombinedOutput()
}

// withCoverDir adds GOCOVERDIR to env when the binary was built with
// -cover: it then writes its counters there, and prints no warning that
// would add a line to what a test reads of its output.
func withCoverDir(env []string) []string {
	if coverDir == "" {
		return env
	}
	return append(env, "GOCOVERDIR="+coverDir)
}

// cluster is one main worker and its processing workers, all separate
// processes of the binary sharing one storage directory.
type cluster struct {
	t           *testing.T
	dir         string
	clusterAddr string
	main        *node
	workers     map[string]*node
}

// startCluster starts -role=main and one -role=proc per worker ID and waits
// until every worker is Available.
func startCluster(t *testing.T, ids ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.startMain()
	for _, id := range ids {
		c.startWorker(id)
	}
	c.waitWorkers(20*time.Second, ids...)
	return c
}

// startMain starts the main worker on ports of its choosing, or restarts
// it on the ports it had, which its workers and the test know.
func (c *cluster) startMain() {
	args := []string{"-role=main", "-shared-fs=" + c.dir}
	if c.main != nil {
		args = append(args, "-rest-addr="+c.main.addr, "-cluster-addr="+c.clusterAddr)
	}
	c.main = startNode(c.t, clusterEnv, args...)
	c.clusterAddr = c.main.logAddr("cluster listening")
}

// startWorker starts a processing worker with no keys of its own.
func (c *cluster) startWorker(id string, extra ...string) *node {
	n := launch(c.t, workerEnv, append([]string{"-role=proc", "-worker-id=" + id,
		"-main-addr=" + c.clusterAddr, "-shared-fs=" + c.dir, "-grpc-addr=127.0.0.1:0"}, extra...)...)
	c.workers[id] = n
	return n
}

// workers returns GET /admin/workers.
func (c *cluster) workerRows() []workerInfo {
	_, out, _ := c.main.call("GET", "/admin/workers", testAdminKey, nil)
	var rows []workerInfo
	json.Unmarshal(out, &rows)
	return rows
}

// waitWorkers waits until exactly ids are Available, for d on an idle
// machine.
func (c *cluster) waitWorkers(d time.Duration, ids ...string) []workerInfo {
	c.t.Helper()
	w := newWait(c.t, fmt.Sprintf("workers %v Available", ids), d)
	for {
		rows := c.workerRows()
		avail := []string{}
		for _, r := range rows {
			if r.Status == "Available" {
				avail = append(avail, r.WorkerID)
			}
		}
		if strings.Join(avail, ",") == strings.Join(ids, ",") {
			return rows
		}
		if w.over() {
			c.t.Fatalf("available workers = %v, want %v: %v", avail, ids, w)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// putAndGet writes chatdb k0..k(n-1) = i through the main worker and reads
// each back.
func (c *cluster) putAndGet(n int) {
	t := c.t
	t.Helper()
	for i := range n {
		if code, out, _ := c.main.call("PUT", "/entity/chatdb", testAdminKey, map[string]int{fmt.Sprintf("k%d", i): i}); code != 200 {
			t.Fatalf("PUT k%d = %d %s", i, code, out)
		}
	}
	for i := range n {
		if code, out, _ := c.main.call("GET", fmt.Sprintf("/entity/chatdb?key=k%d", i), testAdminKey, nil); code != 200 || string(out) != fmt.Sprint(i) {
			t.Fatalf("GET k%d = %d %s", i, code, out)
		}
	}
}

// waitBusy waits until every worker's heartbeated cache counters show more
// than n entries and n hits: traffic reached them all.
func (c *cluster) waitBusy(n int) {
	c.t.Helper()
	w := newWait(c.t, "traffic on every worker's cache counters", 10*time.Second)
	for {
		rows := c.workerRows()
		busy := 0
		for _, r := range rows {
			if r.Cache.Entries > n && r.Cache.Hits > uint64(n) {
				busy++
			}
		}
		if busy == len(c.workers) {
			return
		}
		if w.over() {
			c.t.Fatalf("workers' counters do not show traffic on all of them: %+v (%v)", rows, w)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Timing of killUnderLoad.
const (
	// killGrace is how long after the kill requests may still fail: the
	// in-flight calls to the victim are retried on another worker, and the
	// victim leaves the rotation at the latest when its heartbeats are
	// missed (heartbeatMisses * heartbeatEvery).
	killGrace = 3 * time.Second
	// loadAfterKill is how long the load goes on after the kill; from
	// kill+killGrace to its end no request may fail.
	loadAfterKill = killGrace + 3*time.Second
)

// killUnderLoad SIGKILLs worker victim while 8 clients write, once the load
// has 50 acknowledged writes, and keeps the load on for loadAfterKill. No
// request may fail from killGrace after the kill to the end of the load
// (and that window must have seen successful writes); a client's request
// that was in flight at the kill may fail, at most one per client, because
// a call that failed at the transport level goes to the next worker. The
// others must be Available again as the only workers, and every
// acknowledged write must read back (or a later one of the same client).
// It returns the acknowledged writes.
func (c *cluster) killUnderLoad(victim string, rest ...string) map[string]int {
	t := c.t
	t.Helper()
	const clients = 8
	var mu sync.Mutex
	acked := map[string]int{}
	var killedAt time.Time
	var failedEarly, failedLate []string
	okLate := 0
	warm := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("load%d-%d", cl, i%25)
				code, out, err := tryCall("PUT", c.main.base+"/entity/chatdb", testAdminKey, map[string]int{key: i})
				mu.Lock()
				since := time.Duration(-1)
				if !killedAt.IsZero() {
					since = time.Since(killedAt)
				}
				switch {
				case err == nil && code == 200:
					acked[key] = i
					if len(acked) == 50 {
						close(warm)
					}
					if since > killGrace {
						okLate++
					}
				case since > killGrace:
					failedLate = append(failedLate, fmt.Sprintf("%s at kill+%v: %d %s %v", key, since.Round(time.Millisecond), code, out, err))
				case since >= 0:
					failedEarly = append(failedEarly, fmt.Sprintf("%s at kill+%v: %d %s %v", key, since.Round(time.Millisecond), code, out, err))
				default:
					failedLate = append(failedLate, fmt.Sprintf("%s before the kill: %d %s %v", key, code, out, err))
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-warm:
	case <-time.After(scaled(20 * time.Second)):
		cancel()
		wg.Wait()
		t.Fatalf("fewer than 50 writes acknowledged in 20 s (scaled by the load) before the kill")
	}
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	c.workers[victim].kill()
	time.Sleep(loadAfterKill) // the load runs for this window; nothing waits on it
	cancel()
	wg.Wait()
	if len(failedLate) > 0 {
		t.Errorf("%d requests failed outside the %v after the kill, e.g. %s", len(failedLate), killGrace, failedLate[0])
	}
	if len(failedEarly) > clients {
		t.Errorf("%d requests failed within %v of the kill, want at most one per client (%d): a call that fails at the transport level must go to the next worker; e.g. %s",
			len(failedEarly), killGrace, clients, failedEarly[0])
	}
	if okLate == 0 {
		t.Errorf("no write was acknowledged from kill+%v to the end of the load: the window checked nothing", killGrace)
	}
	c.waitWorkers(10*time.Second, rest...)
	for key, i := range acked {
		code, out, _ := c.main.call("GET", "/entity/chatdb?key="+key, testAdminKey, nil)
		var got int
		if code != 200 || json.Unmarshal(out, &got) != nil || got < i {
			t.Errorf("acknowledged %s=%d: after the kill GET = %d %s", key, i, code, out)
		}
	}
	t.Logf("%d acknowledged keys checked after SIGKILL of %s; %d writes acknowledged after kill+%v, %d failed before",
		len(acked), victim, okLate, killGrace, len(failedEarly))
	return acked
}

// TestScaleOutWorkers: one main and two workers as processes; both are
// Available, traffic reaches both, SIGKILL of one under load loses no
// acknowledged write and the next requests succeed, and a restarted main
// gets its workers back by themselves.
func TestScaleOutWorkers(t *testing.T) {
	c := startCluster(t, "w1", "w2")
	c.putAndGet(200)
	c.waitBusy(20)
	c.killUnderLoad("w2", "w1")

	// Restart the main worker: w1 subscribes again by itself.
	c.main.stop()
	c.startMain()
	c.waitWorkers(20*time.Second, "w1")
	if code, out, _ := c.main.call("GET", "/entity/chatdb?key=k7", testAdminKey, nil); code != 200 || string(out) != "7" {
		t.Errorf("after main restart GET k7 = %d %s, want 200 7", code, out)
	}
}

// TestStaleCacheAfterOwnerChange: worker A caches v1; a third worker joins
// and takes the key, v2 is written through it; it leaves and A owns the key
// again. The routing epoch makes A drop its cache, so the read is v2.
func TestStaleCacheAfterOwnerChange(t *testing.T) {
	c := startCluster(t, "wa", "wb")
	// A key owned by wa with {wa, wb} and by wc with {wa, wb, wc}.
	key := ""
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("s%d", i)
		if ids := []string{"wa", "wb"}; ids[rendezvousOrder("chatdb", k, ids)[0]] == "wa" {
			if ids := []string{"wa", "wb", "wc"}; ids[rendezvousOrder("chatdb", k, ids)[0]] == "wc" {
				key = k
			}
		}
	}
	put := func(v string) {
		if code, out, _ := c.main.call("PUT", "/entity/chatdb", testAdminKey, map[string]string{key: v}); code != 200 {
			t.Fatalf("PUT %s = %d %s", v, code, out)
		}
	}
	get := func() string {
		_, out, _ := c.main.call("GET", "/entity/chatdb?key="+key, testAdminKey, nil)
		return string(out)
	}
	put("v1")
	if got := get(); got != `"v1"` {
		t.Fatalf("GET = %s, want v1", got)
	}
	c.startWorker("wc")
	c.waitWorkers(20*time.Second, "wa", "wb", "wc")
	put("v2")
	c.workers["wc"].kill()
	c.waitWorkers(10*time.Second, "wa", "wb")
	if got := get(); got != `"v2"` {
		t.Errorf("after the owner changed back GET = %s, want \"v2\" (a stale cache entry was served)", got)
	}
}

// TestWorkerWrongMainAddress: a worker pointed at no main worker keeps
// retrying with growing backoff and says why.
func TestWorkerWrongMainAddress(t *testing.T) {
	n := launch(t, workerEnv, "-role=proc", "-worker-id=lost", "-main-addr="+refusedAddr(t), "-shared-fs="+t.TempDir())
	n.waitLog("subscribe failed; retrying", 3) // fails if the worker exits
	if log := n.stderr.String(); !strings.Contains(log, "connection refused") {
		t.Errorf("log does not say why (connection refused):\n%s", log)
	}
}
