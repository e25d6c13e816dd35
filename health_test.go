package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// readyz sends GET /readyz without a credential and decodes the answer.
func readyz(t *testing.T, ts *authTestServer) (int, readyBody) {
	t.Helper()
	rec := ts.do("GET", "/readyz", "", "", "")
	var body readyBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET /readyz body %q: %v", rec.Body, err)
	}
	return rec.Code, body
}

// TestReadyzChecks fails each readiness check in turn: the answer is 503,
// names the failed check with its reason and keeps the others ok; with
// all passing it is 200 "ready". /healthz stays 200 throughout.
func TestReadyzChecks(t *testing.T) {
	cases := []struct {
		name, check, reason string
		fail                func(ts *authTestServer, fs *faultStore) (undo func())
	}{
		{"shutting down", "serving", "shutting down", func(ts *authTestServer, _ *faultStore) func() {
			ts.rest.ready.stopping.Store(true)
			return func() { ts.rest.ready.stopping.Store(false) }
		}},
		{"storage down", "storage", "storage unreachable", func(_ *authTestServer, fs *faultStore) func() {
			err := error(errUnavailable)
			fs.fault.Store(&err)
			return func() { fs.fault.Store(nil) }
		}},
		{"key not checked", "key_check", "master key not checked against the storage", func(ts *authTestServer, _ *faultStore) func() {
			ts.rest.ready.keyChecked.Store(false)
			return func() { ts.rest.ready.keyChecked.Store(true) }
		}},
		{"no worker", "workers", "no processing worker is Available", func(ts *authTestServer, _ *faultStore) func() {
			ts.rest.data.proc.(*router).markUnavailable("w1", "test")
			return func() {} // last case: the worker stays out
		}},
	}
	fs := &faultStore{store: newTestFSStore(t)}
	ts := newAuthTestServerOn(t, authConfig{}, fs)
	all := []string{"serving", "storage", "key_check", "workers"}
	if code, body := readyz(t, ts); code != http.StatusOK || body.Status != "ready" || len(body.Checks) != len(all) {
		t.Fatalf("GET /readyz = %d %+v, want 200 ready with %d checks", code, body, len(all))
	}
	for _, c := range cases {
		undo := c.fail(ts, fs)
		code, body := readyz(t, ts)
		undo()
		if code != http.StatusServiceUnavailable || body.Status != "not ready" || !strings.Contains(body.Error, c.check+": "+c.reason) {
			t.Errorf("%s: GET /readyz = %d %+v, want 503 not ready naming %s", c.name, code, body, c.check)
		}
		for _, name := range all {
			got := body.Checks[name]
			if want := name != c.check; got.OK != want || (!got.OK && got.Reason != c.reason) {
				t.Errorf("%s: check %s = %+v, want ok=%v", c.name, name, got, want)
			}
		}
		if rec := ts.do("GET", "/healthz", "", "", ""); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
			t.Errorf("%s: GET /healthz = %d %s, want 200 {\"status\":\"ok\"}", c.name, rec.Code, rec.Body)
		}
	}
}

// TestReadyzChangeFeed: while the change feed's log takes no records
// the main worker is not ready, naming the check; once it does again it
// is ready with the check passing.
func TestReadyzChangeFeed(t *testing.T) {
	ts := newAuthTestServerOn(t, authConfig{}, newTestFSStore(t))
	var down atomic.Bool
	ts.rest.ready.feedHealth = func() error {
		if down.Load() {
			return errChangeLogBroken
		}
		return nil
	}
	down.Store(true)
	code, body := readyz(t, ts)
	if want := "change_feed: the change feed's log takes no records"; code != http.StatusServiceUnavailable || !strings.Contains(body.Error, want) {
		t.Errorf("GET /readyz with the change log failed = %d %+v, want 503 naming %q", code, body, want)
	}
	down.Store(false)
	if code, body := readyz(t, ts); code != http.StatusOK || !body.Checks["change_feed"].OK {
		t.Errorf("GET /readyz with the change log repaired = %d %+v, want 200 with change_feed ok", code, body)
	}
}

// TestReachableAddr: an unspecified advertised host is replaced by the
// host the subscription came from; any other address is dialled as given.
func TestReachableAddr(t *testing.T) {
	cases := []struct {
		advertised, peer, want string
		replaced               bool
	}{
		{"[::]:50052", "10.0.0.7:41234", "10.0.0.7:50052", true},
		{"0.0.0.0:50052", "10.0.0.7:41234", "10.0.0.7:50052", true},
		{":50052", "[fd00::7]:41234", "[fd00::7]:50052", true},
		{"10.0.0.9:50052", "10.0.0.7:41234", "", false},
		{"worker-1.svc:50052", "10.0.0.7:41234", "", false},
		{"127.0.0.1:50052", "127.0.0.1:41234", "", false},
		{"[::]:50052", "", "", false},
		{"no port", "10.0.0.7:41234", "", false},
	}
	for _, c := range cases {
		got, ok := reachableAddr(c.advertised, c.peer)
		if got != c.want || ok != c.replaced {
			t.Errorf("reachableAddr(%q, %q) = %q, %v; want %q, %v", c.advertised, c.peer, got, ok, c.want, c.replaced)
		}
	}
}

// TestUnreachableWorkerNotStorage: the errors the router returns when a
// worker cannot be reached (routing.go builds them so) are 503 and read
// as an unreachable worker, in the client's sentence and the log, never
// as unavailable storage.
func TestUnreachableWorkerNotStorage(t *testing.T) {
	transport := fmt.Errorf("worker %s: %s: %w", "w1", "connection refused", errTransport)
	for _, err := range []error{errNoWorker, transport, fmt.Errorf("%w: %w", errNoWorker, transport)} {
		if got := statusOf(err); got != http.StatusServiceUnavailable {
			t.Errorf("statusOf(%v) = %d, want 503", err, got)
		}
		msg := publicMessage(err, "r1")
		if !strings.Contains(msg, "worker unreachable") || strings.Contains(msg, "storage") || !strings.Contains(msg, "r1") {
			t.Errorf("publicMessage(%v) = %q, want a worker unreachable sentence naming the request ID, no storage", err, msg)
		}
		if strings.Contains(err.Error(), "storage") {
			t.Errorf("logged error %q speaks of storage", err)
		}
	}
	if msg := publicMessage(fmt.Errorf("get x: %w", errUnavailable), "r2"); !strings.Contains(msg, "storage") {
		t.Errorf("publicMessage(storage down) = %q, want it to still name the storage", msg)
	}
}

// TestSIGTERMReadinessThenDrain runs the binary: on SIGTERM /readyz turns
// 503 "shutting down" while the server still answers, and a request in
// flight during the signal completes with 200 before the process exits.
func TestSIGTERMReadinessThenDrain(t *testing.T) {
	n, _ := startDefault(t, "-shutdown-delay=5s")
	if code, out, _ := n.call("GET", "/readyz", "", nil); code != http.StatusOK {
		t.Fatalf("GET /readyz before SIGTERM = %d %s, want 200", code, out)
	}
	// A PUT whose body is not all sent: with Expect: 100-continue the
	// server's "100 Continue" proves the handler runs and reads it.
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"inflight":{"a":1}}`
	fmt.Fprintf(conn, "PUT /entity/drain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", testAdminKey, len(body))
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("in-flight PUT: first line %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n') // the blank line ending the interim answer
	conn.Write([]byte(body[:5]))
	n.cmd.Process.Signal(syscall.SIGTERM)
	var code int
	var out []byte
	for deadline := time.Now().Add(scaled(5 * time.Second)); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, out, err = tryCall("GET", n.base+"/readyz", "", nil); err == nil && code == http.StatusServiceUnavailable {
			break
		}
	}
	var ready readyBody
	json.Unmarshal(out, &ready)
	if code != http.StatusServiceUnavailable || ready.Checks["serving"].Reason != "shutting down" || !strings.Contains(ready.Error, "shutting down") {
		t.Fatalf("GET /readyz after SIGTERM = %d %s, want 503 naming \"shutting down\"", code, out)
	}
	conn.Write([]byte(body[5:]))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("in-flight PUT after SIGTERM: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("in-flight PUT after SIGTERM = %d, want 200", resp.StatusCode)
	}
	select {
	case <-n.done:
	case <-time.After(scaled(30 * time.Second)):
		t.Fatal("server did not exit within 30s (scaled by the load) of SIGTERM")
	}
	if !n.cmd.ProcessState.Success() {
		t.Errorf("exit after SIGTERM = %v, want 0\n%s", n.cmd.ProcessState, n.stderr)
	}
}

// TestWorkerOnUnspecifiedHost runs a worker listening on 0.0.0.0:0 with no
// -advertise-addr: the main worker dials the address the subscription
// came from, the worker becomes Available and serves PUT and GET. Killed,
// it is reported as unreachable, never as unavailable storage.
func TestWorkerOnUnspecifiedHost(t *testing.T) {
	c := startCluster(t)
	w := c.startWorker("w0", "-grpc-addr=0.0.0.0:0")
	_, port, _ := net.SplitHostPort(w.logAddr("worker listening"))
	rows := c.waitWorkers(20*time.Second, "w0")
	if got, want := rows[0].Tags["grpc_addr"], "127.0.0.1:"+port; got != want {
		t.Errorf("worker's grpc_addr at the main = %q, want %q (the subscription's host, the listener's port)", got, want)
	}
	c.putAndGet(3)
	if code, out, _ := c.main.call("GET", "/readyz", "", nil); code != http.StatusOK {
		t.Errorf("GET /readyz with w0 Available = %d %s, want 200", code, out)
	}
	w.kill()
	code, out, _ := c.main.call("GET", "/entity/chatdb?key=k0", testAdminKey, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(out), "worker unreachable") || strings.Contains(string(out), "storage") {
		t.Errorf("GET with the only worker killed = %d %s, want 503 saying worker unreachable, not storage", code, out)
	}
	reported := func(log string) bool {
		return strings.Contains(log, "worker unreachable") || strings.Contains(log, "no processing worker is available")
	}
	if log := c.main.logOnceTrue(reported); strings.Contains(log, "storage unavailable") || !reported(log) {
		t.Errorf("main's log reports the dead worker as storage or not at all:\n%s", log)
	}
}
