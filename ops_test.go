package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// opsGet sends GET path to an ops listener, with no credential.
func opsGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	code, out, _ := httpCall(t, "GET", "http://"+addr+path, "", nil)
	return code, string(out)
}

// waitOps polls GET path on an ops listener until it answers want, and
// returns the body.
func waitOps(t *testing.T, addr, path string, want int) string {
	t.Helper()
	w := newWait(t, fmt.Sprintf("GET %s on the ops listener to answer %d", path, want), 20*time.Second)
	for {
		code, body := opsGet(t, addr, path)
		if code == want {
			return body
		}
		if w.over() {
			t.Fatalf("GET %s on the ops listener = %d %s, want %d: %v", path, code, body, want, w)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpsListener runs a main worker (with -pprof) and a processing
// worker (without), each with -ops-addr: both answer /healthz, /readyz
// and /metrics without a credential, the profiler only where -pprof is
// given, and the worker's readiness names its own checks.
func TestOpsListener(t *testing.T) {
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.main = startNode(t, clusterEnv, "-role=main", "-shared-fs="+c.dir, "-ops-addr=127.0.0.1:0", "-pprof")
	c.clusterAddr = c.main.logAddr("cluster listening")
	mainOps := c.main.logAddr("ops listening")
	w := c.startWorker("w1", "-ops-addr=127.0.0.1:0")
	workerOps := w.logAddr("ops listening")
	c.waitWorkers(20*time.Second, "w1")

	for _, p := range []string{"/healthz", "/health"} {
		if code, body := opsGet(t, mainOps, p); code != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
			t.Errorf("main ops GET %s = %d %s", p, code, body)
		}
	}
	var ready readyBody
	json.Unmarshal([]byte(waitOps(t, mainOps, "/readyz", 200)), &ready)
	if ready.Status != "ready" || !ready.Checks["workers"].OK || !ready.Checks["key_check"].OK {
		t.Errorf("main ops GET /readyz = %+v, want ready with the main worker's checks", ready)
	}
	c.putAndGet(3)
	body := waitOps(t, mainOps, "/metrics", 200)
	for _, want := range []string{`deltadb_workers{status="Available"} 1`,
		`deltadb_http_requests_total{route="/entity/{db}",method="GET",status="200"} 3`, "# TYPE deltadb_build_info gauge"} {
		if !strings.Contains(body, want) {
			t.Errorf("main ops GET /metrics lacks %s", want)
		}
	}
	if code, body := opsGet(t, mainOps, "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("main ops GET /debug/pprof/ with -pprof = %d, want 200 and the profile index", code)
	}
	if code, body := opsGet(t, mainOps, "/debug/pprof/cmdline"); code != 200 || !strings.Contains(body, "-pprof") {
		t.Errorf("main ops GET /debug/pprof/cmdline = %d %q", code, body)
	}

	for _, p := range []string{"/healthz", "/health"} {
		if code, body := opsGet(t, workerOps, p); code != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
			t.Errorf("worker ops GET %s = %d %s", p, code, body)
		}
	}
	ready = readyBody{}
	json.Unmarshal([]byte(waitOps(t, workerOps, "/readyz", 200)), &ready)
	if ready.Status != "ready" || !ready.Checks["subscribed"].OK || !ready.Checks["storage"].OK || !ready.Checks["serving"].OK {
		t.Errorf("worker ops GET /readyz = %+v, want ready: subscribed, storage, serving", ready)
	}
	body = waitOps(t, workerOps, "/metrics", 200)
	for _, want := range []string{"deltadb_cache_hits_total ", "deltadb_cache_entries 3", "deltadb_build_info{"} {
		if !strings.Contains(body, want) {
			t.Errorf("worker ops GET /metrics lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(body, "deltadb_http_requests_total") || strings.Contains(body, "deltadb_workers") {
		t.Errorf("worker ops GET /metrics shows the main worker's metrics:\n%s", body)
	}
	if code, _ := opsGet(t, workerOps, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("worker ops GET /debug/pprof/ without -pprof = %d, want 404", code)
	}

	// Without its main worker the worker is alive but not ready.
	c.main.kill()
	lone := launch(t, workerEnv, "-role=proc", "-worker-id=w2", "-main-addr="+refusedAddr(t),
		"-shared-fs="+c.dir, "-grpc-addr=127.0.0.1:0", "-ops-addr=127.0.0.1:0")
	loneOps := lone.logAddr("ops listening")
	if code, _ := opsGet(t, loneOps, "/healthz"); code != 200 {
		t.Errorf("unsubscribed worker GET /healthz = %d, want 200", code)
	}
	code, out := opsGet(t, loneOps, "/readyz")
	ready = readyBody{}
	json.Unmarshal([]byte(out), &ready)
	if code != http.StatusServiceUnavailable || ready.Checks["subscribed"].OK || !strings.Contains(ready.Error, "subscribed: not subscribed") {
		t.Errorf("unsubscribed worker GET /readyz = %d %s, want 503 naming the subscription", code, out)
	}
}

// TestWorkerReadiness checks the worker's readiness in-process: each
// check fails alone and is named with its reason.
func TestWorkerReadiness(t *testing.T) {
	fs := &faultStore{store: newTestFSStore(t)}
	now := time.Unix(1_000_000, 0)
	srv := &workerServer{w: &worker{id: "w1"}, now: func() time.Time { return now }}
	h := &workerHealth{srv: srv, st: fs, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
	get := func() (int, readyBody) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		var b readyBody
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatalf("GET /readyz body %q: %v", rec.Body, err)
		}
		return rec.Code, b
	}
	check := func(name string, wantCode int, failed, reason string) {
		t.Helper()
		code, b := get()
		if code != wantCode {
			t.Errorf("%s: GET /readyz = %d %+v, want %d", name, code, b, wantCode)
		}
		for _, c := range []string{"serving", "subscribed", "storage"} {
			got := b.Checks[c]
			if want := c != failed; got.OK != want || (!want && got.Reason != reason) {
				t.Errorf("%s: check %s = %+v, want ok=%v reason %q", name, c, got, want, reason)
			}
		}
	}
	check("never subscribed", 503, "subscribed", "not subscribed to a main worker")
	srv.sub.Store(&subscription{expires: now.Add(time.Hour)})
	check("subscribed", 200, "", "")
	srv.sub.Store(&subscription{expires: now.Add(-time.Second)})
	check("token expired", 503, "subscribed", "worker token expired")
	srv.sub.Store(&subscription{expires: now.Add(time.Hour)})
	err := error(errUnavailable)
	fs.fault.Store(&err)
	check("storage down", 503, "storage", "storage unreachable")
	fs.fault.Store(nil)
	h.stopping.Store(true)
	check("shutting down", 503, "serving", "shutting down")
}

// TestOpsMux builds the ops listener's routes with and without -pprof
// and checks what each answers, in-process.
func TestOpsMux(t *testing.T) {
	health := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"path": r.URL.Path}) })
	for _, withPprof := range []bool{false, true} {
		mux := newOpsMux(health, newRegistry(), config{pprof: withPprof})
		pprofCode := http.StatusNotFound
		if withPprof {
			pprofCode = http.StatusOK
		}
		for _, c := range []struct {
			method, path string
			want         int
			body         string
		}{
			{"GET", "/health", 200, `"/health"`},
			{"GET", "/healthz", 200, `"/healthz"`},
			{"GET", "/readyz", 200, `"/readyz"`},
			{"GET", "/metrics", 200, "# TYPE deltadb_build_info gauge"},
			{"GET", "/debug/pprof/", pprofCode, ""},
			{"GET", "/debug/pprof/heap", pprofCode, ""},
			{"POST", "/debug/pprof/symbol", pprofCode, ""},
			{"GET", "/nope", 404, `{"error":"no route for \"GET /nope\" on the ops listener"}`},
			// A route's path with another method is its 405, as on the
			// REST port (it was a 404 "no route").
			{"POST", "/healthz", 405, `{"error":"method \"POST\" is not allowed on \"/healthz\"; allowed: GET, HEAD"}`},
			{"DELETE", "/metrics", 405, `allowed: GET, HEAD"}`},
			{"POST", "/nope", 404, `no route for \"POST /nope\"`},
		} {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
			if rec.Code != c.want || !strings.Contains(rec.Body.String(), c.body) {
				t.Errorf("pprof=%v: %s %s = %d %.80q, want %d with %q", withPprof, c.method, c.path, rec.Code, rec.Body, c.want, c.body)
			}
			if got := rec.Header().Get("Allow"); (rec.Code == 405) != (got == "GET, HEAD") {
				t.Errorf("pprof=%v: %s %s = %d with Allow %q, want Allow: GET, HEAD exactly on a 405", withPprof, c.method, c.path, rec.Code, got)
			}
		}
	}
}

// TestPprofCmdlineHidesSecrets is a hostile-input probe: with
// -pprof, the anonymous GET /debug/pprof/cmdline returned the admin and
// master keys given as flags. Now their values are redacted, in every
// form a flag takes, and the rest of the command line stays.
func TestPprofCmdlineHidesSecrets(t *testing.T) {
	admin := "admin-key-" + strings.Repeat("9", 20)
	dir := filepath.Join(t.TempDir(), "db")
	n := startNode(t, []string{"MASTER_KEY=", "ADMIN_KEY="}, "-shared-fs="+dir, "-ops-addr=127.0.0.1:0", "-pprof",
		"-admin-key", admin, "--master-key="+testMasterKey)
	code, body := opsGet(t, n.logAddr("ops listening"), "/debug/pprof/cmdline")
	if code != 200 || strings.Contains(body, admin) || strings.Contains(body, testMasterKey) {
		t.Fatalf("GET /debug/pprof/cmdline = %d %q, want 200 without the keys", code, body)
	}
	for _, want := range []string{"-pprof", "-admin-key\x00REDACTED", "--master-key=REDACTED", "-shared-fs=" + dir} {
		if !strings.Contains(body, strings.ReplaceAll(want, "\\x00", "\x00")) {
			t.Errorf("GET /debug/pprof/cmdline = %q, want %q in it", body, want)
		}
	}
	if code, _, _ := n.call("GET", "/api/me", admin, nil); code != 200 {
		t.Errorf("the admin key given as -admin-key VALUE does not work: %d", code)
	}
}

// TestRedactArgs: the flags' forms, and secrets given where no flag name
// says so.
func TestRedactArgs(t *testing.T) {
	secrets := []string{"s3cr3t", "", "tok"}
	for _, c := range []struct{ in, want string }{
		{"-admin-key=abc", "-admin-key=REDACTED"},
		{"--join-token=xyz", "--join-token=REDACTED"},
		{"-s3-secret-key=", "-s3-secret-key=REDACTED"},
		{"-previous-master-key-file=/etc/k", "-previous-master-key-file=REDACTED"},
		{"-rest-addr=127.0.0.1:8080", "-rest-addr=127.0.0.1:8080"},
		{"-pprof", "-pprof"},
		{"s3cr3t", "REDACTED"},
		{"-x=pre-s3cr3t-post", "-x=pre-REDACTED-post"},
		{"-allow-weak-admin-key", "-allow-weak-admin-key"},
		{"--join-token=tok", "--join-token=REDACTED"},
	} {
		if got := redactArgs([]string{c.in}, secrets)[0]; got != c.want {
			t.Errorf("redactArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	got := redactArgs([]string{"deltadatabase", "-admin-key", "-starts-with-dash", "-rest-addr", "x", "-master-key", "k", "-pprof"}, nil)
	want := []string{"deltadatabase", "-admin-key", "REDACTED", "-rest-addr", "x", "-master-key", "REDACTED", "-pprof"}
	if !slices.Equal(got, want) {
		t.Errorf("redactArgs(separated values) = %q, want %q", got, want)
	}
}
