package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// newLocalREST builds the REST server of -role=all in-process over an
// fsStore in a temp dir, with the test admin key.
func newLocalREST(tb testing.TB) *restServer {
	tb.Helper()
	st, err := newFSStore(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return newLocalRESTOver(tb, st)
}

// newLocalRESTOver is newLocalREST over st.
func newLocalRESTOver(tb testing.TB, st store) *restServer {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	schemas := newSchemaRegistry(st, budgets{})
	cat := newCatalog(st)
	cfg := config{role: "all", keyID: "k1", entityCacheSize: 1024, wal: testWALFlags}
	// As the main node: over a directory, the catalog flushes the log
	// before it scans storage.
	var ho *handovers
	if fsst, ok := walStore(cfg, st); ok {
		ho = newHandovers(fsst, log, time.Now)
	}
	rt := newRouter(log, time.Now, saturatedInFlight, cat.wrote, ho)
	if ho != nil {
		cat.setFlush(rt.flushLogs)
	}
	ring, err := newKeyring(st, []byte("0123456789abcdef0123456789abcdef"), cfg.keyID)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := addLocalWorker(context.Background(), cfg, rt, st, schemas, ring, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.close() })
	auth, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: st, clientTTL: time.Hour, now: time.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return newRESTServer(restOptions{auth: auth, data: newDataPlane(rt, cat, schemas, budgets{}), workers: rt.list, maxBody: 1 << 20, log: log})
}

// serve runs one request through the server's ServeHTTP.
func serve(s http.Handler, method, target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// TestUnknownRoutesAnswerJSON: the mux's own 404 and 405 come back as JSON
// error bodies, 405 with Allow.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	s := newLocalREST(t)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope.js", 404},
		{"POST", "/entity/db", 405},
		{"PATCH", "/health", 405},
		{"GET", "/entity/../admin/workers", 400},
		// Neither a route nor a UI file: 404 for every method, not the
		// UI route's 405 (a client's "/entity/../evil" arrives as "/evil").
		{"PUT", "/evil", 404},
		{"POST", "/evil", 404},
		{"DELETE", "/nope.js", 404},
		{"PATCH", "/static/app.css", 404},
		// A UI file takes GET and HEAD only.
		{"PUT", "/app.css", 405},
		{"DELETE", "/", 405},
		// A route of other methods only: 405 naming them, as for any
		// route, though the UI's file route takes every GET.
		{"GET", "/api/login", 405},
		{"GET", "/api/databases/db/import", 405},
		{"HEAD", "/api/keys/key_1/rotate", 405},
		// ... and for the methods that are not GET: the UI's file route
		// matching the path must not turn that route's 405 into a 404.
		{"PUT", "/api/databases/db/import", 405},
		{"DELETE", "/api/login", 405},
		{"PATCH", "/api/databases/db/changes/ticket", 405},
		{"PUT", "/api/keys/key_1/rotate", 405},
	} {
		rec := serve(s, c.method, c.path, "")
		if rec.Code != c.want || !strings.HasPrefix(rec.Body.String(), `{"error":`) {
			t.Errorf("%s %s = %d %s, want %d with a JSON error", c.method, c.path, rec.Code, rec.Body, c.want)
		}
		if c.want == 405 && rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
		if c.want == 405 && strings.HasPrefix(c.path, "/api/") && rec.Header().Get("Allow") != "POST" {
			t.Errorf("%s %s: Allow %q, want POST", c.method, c.path, rec.Header().Get("Allow"))
		}
	}
}

// TestAmbiguousRequestHeadersRefused: a request with two Authorization
// headers is 400 whichever comes first (it ran as the first, so a proxy's
// header and a client's could decide different credentials), and a body
// in a Content-Encoding the server does not decode is 415 naming it (a
// gzip body was refused as "not valid UTF-8", a body declared gzip but
// sent plain was stored as sent); neither writes anything.
func TestAmbiguousRequestHeadersRefused(t *testing.T) {
	s := newLocalREST(t)
	send := func(method, target, body string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		for i := 0; i < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	admin, wrong := "Bearer "+testAdminKey, "Bearer not-the-key"
	for _, c := range []struct {
		name   string
		header []string
		want   int
		says   string
	}{
		{"admin, then another", []string{"Authorization", admin, "Authorization", wrong}, 400, "Authorization"},
		{"another, then admin", []string{"Authorization", wrong, "Authorization", admin}, 400, "Authorization"},
		{"gzip", []string{"Authorization", admin, "Content-Encoding", "gzip"}, 415, `Content-Encoding "gzip"`},
		{"br, identity", []string{"Authorization", admin, "Content-Encoding", "identity", "Content-Encoding", "br"}, 415, "Content-Encoding"},
	} {
		rec := send("PUT", "/entity/hdr", `{"k":{"v":1}}`, c.header...)
		var body struct{ Error string }
		if rec.Code != c.want || json.Unmarshal(rec.Body.Bytes(), &body) != nil || !strings.Contains(body.Error, c.says) {
			t.Errorf("%s: PUT = %d %s, want %d with an error naming %s", c.name, rec.Code, rec.Body, c.want, c.says)
		}
	}
	if rec := send("GET", "/entity/hdr?key=k", "", "Authorization", admin); rec.Code != 404 {
		t.Errorf("GET after the refused PUTs = %d %s, want 404 (nothing written)", rec.Code, rec.Body)
	}
	// One credential, and an identity coding, are as before.
	if rec := send("PUT", "/entity/hdr", `{"k":{"v":1}}`, "Authorization", admin, "Content-Encoding", "Identity"); rec.Code != 200 {
		t.Errorf("PUT with Content-Encoding: identity = %d %s, want 200", rec.Code, rec.Body)
	}
}

// BenchmarkRESTGetHit is a cached GET through the whole handler stack.
func BenchmarkRESTGetHit(b *testing.B) {
	s := newLocalREST(b)
	if rec := serve(s, "PUT", "/entity/bench", `{"k":{"role":"user","content":"`+strings.Repeat("x", 1000)+`"}}`); rec.Code != 200 {
		b.Fatal(rec.Body)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rec := serve(s, "GET", "/entity/bench?key=k", ""); rec.Code != 200 {
				b.Fatal(rec.Body)
			}
		}
	})
}

// BenchmarkRESTPut is a durable 1 KiB PUT through the whole handler stack.
func BenchmarkRESTPut(b *testing.B) {
	s := newLocalREST(b)
	doc := `{"role":"user","content":"` + strings.Repeat("x", 1000) + `"}`
	b.ReportAllocs()
	b.SetParallelism(16)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if rec := serve(s, "PUT", "/entity/bench", fmt.Sprintf(`{"k%d":%s}`, i%512, doc)); rec.Code != 200 {
				b.Fatal(rec.Body)
			}
		}
	})
}

// TestPutAnswer: a PUT's answer is {"status":"ok"} as writeJSON writes
// it, JSON with its length and the entity's new ETag, over a real
// listener (net/http sets the length of the precomputed body).
func TestPutAnswer(t *testing.T) {
	s := newLocalREST(t)
	srv := httptest.NewServer(s)
	defer srv.Close()
	want := httptest.NewRecorder()
	writeJSON(want, http.StatusOK, map[string]string{"status": "ok"})
	req, _ := http.NewRequest("PUT", srv.URL+"/entity/db1", strings.NewReader(`{"k1": {"a": [1, 2]}}`))
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != want.Body.String() || resp.Header.Get("Content-Type") != "application/json" ||
		resp.ContentLength != int64(want.Body.Len()) {
		t.Fatalf("PUT answered %d %q, Content-Type %q, length %d; want 200 %q, application/json, %d",
			resp.StatusCode, body, resp.Header.Get("Content-Type"), resp.ContentLength, want.Body, want.Body.Len())
	}
	get := serve(s, "GET", "/entity/db1?key=k1", "")
	if etag := resp.Header.Get("ETag"); etag == "" || etag != get.Header().Get("ETag") || get.Body.String() != `{"a":[1,2]}` {
		t.Fatalf("PUT's ETag %q; GET answered %q with ETag %q", etag, get.Body, get.Header().Get("ETag"))
	}
}

// TestWriteError: the client gets the sentence of a requestError, else a
// fixed sentence for the kind; a 5xx names the request ID and its cause is
// logged with ID (from the request's context, by the logger of every
// role), route and status; 401, 403 and 429 are logged at info;
// the headers of 401, 429 and 412 are set.
func TestWriteError(t *testing.T) {
	const root = "/srv/ddb/store"
	chain := func(kind error) error {
		return fmt.Errorf("get entity db/\"k\": get files/db/6b: open %s/files/db/6b: oops: %w", root, kind)
	}
	for _, c := range []struct {
		name   string
		err    error
		code   int
		msg    string // the exact error sentence; "{id}" is the request ID
		level  string // log level, "" for no log line
		header string // a header that must be set, "name: value"
	}{
		{"sentence", reqErrorf(errInvalid, "entity key is empty"), 400, "entity key is empty", "", ""},
		{"wrapped sentence", fmt.Errorf("put entity: %w", reqErrorf(errNotFound, `entity "k" not found in database "db"`)), 404, `entity "k" not found in database "db"`, "", ""},
		{"prefixed sentence", reqPrefixf(reqErrorf(errPatchConflict, `no member "a"`), "JSON patch operation %d", 2), 409, `JSON patch operation 2: no member "a"`, "", ""},
		{"internal 404", chain(errNotFound), 404, "not found", "", ""},
		{"internal 400", chain(errInvalid), 400, "the request is not valid", "", ""},
		{"corrupt", chain(errCorrupt), 500, "internal error (request ID {id})", "ERROR", ""},
		{"unclassified", errors.New("open " + root + ": boom"), 500, "internal error (request ID {id})", "ERROR", ""},
		{"unavailable", chain(errUnavailable), 503, "storage or workers unavailable, try again later (request ID {id})", "ERROR", ""},
		{"busy", chain(errBusy), 503, "the server is at its limit of concurrent reads; try again shortly (request ID {id})", "WARN", "Retry-After: 1"},
		{"unauthenticated", reqErrorf(errUnauthenticated, "unknown credential"), 401, "unknown credential", "INFO", `WWW-Authenticate: Bearer realm="deltadatabase"`},
		{"forbidden", reqErrorf(errForbidden, "this credential lacks the write permission"), 403, "this credential lacks the write permission", "INFO", ""},
		{"rate limited", &rateLimitError{retryAfter: 1500 * time.Millisecond}, 429, "too many failed authentications from this address; retry in 2 s", "INFO", "Retry-After: 2"},
		{"precondition", fmt.Errorf("put entity: %w", &preconditionError{msg: `If-Match: entity "k" in database "db" has version "v2"`, current: "v2"}),
			412, `If-Match: entity "k" in database "db" has version "v2"`, "", `ETag: "v2"`},
	} {
		var logBuf strings.Builder
		logger, err := newLogger(&logBuf, logFormatJSON, slog.LevelInfo)
		if err != nil {
			t.Fatal(err)
		}
		s := &restServer{log: logger}
		r := httptest.NewRequest("GET", "/entity/db?key=k", nil)
		r.Pattern = "GET /entity/{db}"
		r = r.WithContext(withRequestID(r.Context(), "req-42"))
		rec := httptest.NewRecorder()
		s.writeError(rec, r, c.err)
		var body struct{ Error string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Errorf("%s: body %q is not JSON: %v", c.name, rec.Body, err)
		}
		want := strings.ReplaceAll(c.msg, "{id}", "req-42")
		if rec.Code != c.code || body.Error != want {
			t.Errorf("%s: writeError(%v) = %d %q, want %d %q", c.name, c.err, rec.Code, body.Error, c.code, want)
		}
		if c.header != "" {
			name, value, _ := strings.Cut(c.header, ": ")
			if got := rec.Header().Get(name); got != value {
				t.Errorf("%s: header %s = %q, want %q", c.name, name, got, value)
			}
		}
		log := logBuf.String()
		switch {
		case c.level == "" && log != "":
			t.Errorf("%s: logged %q, want nothing", c.name, log)
		case c.level != "":
			var line map[string]any
			if err := json.Unmarshal([]byte(log), &line); err != nil {
				t.Errorf("%s: log %q is not one JSON line: %v", c.name, log, err)
			}
			want := map[string]any{"level": c.level, "request_id": "req-42", "route": "GET /entity/{db}", "status": float64(c.code), "err": c.err.Error()}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s: log %s = %v, want %v", c.name, k, line[k], v)
				}
			}
		}
	}
}

// TestGeneratedRequestIDsUnique: the IDs the server makes for requests
// that bring none, asked for by many requests at once across several
// runs of formatted IDs, are sane, carry the server's prefix, and are
// never given twice.
func TestGeneratedRequestIDsUnique(t *testing.T) {
	s := newLocalREST(t)
	const workers, each = 8, 5 * idRunLen
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				ids[g] = append(ids[g], s.newRequestID())
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, list := range ids {
		for _, id := range list {
			if seen[id] || !saneRequestID(id) || !strings.HasPrefix(id, s.idPrefix+"-") {
				t.Fatalf("request ID %q: given twice %v, sane %v, prefix %q", id, seen[id], saneRequestID(id), s.idPrefix)
			}
			seen[id] = true
		}
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct IDs, want %d", len(seen), workers*each)
	}
}

// TestRequestID: a sane X-Request-ID of the request is kept, anything else
// is replaced by a generated one; every answer carries it, and the ID
// reaches the handler's context.
func TestRequestID(t *testing.T) {
	s := newLocalREST(t)
	var seen string
	s.mux.Handle("GET /test-request-id", s.open(func(w http.ResponseWriter, r *http.Request, _ principal) error {
		seen = requestIDFrom(r.Context())
		return nil
	}))
	generated := map[string]bool{}
	for _, c := range []struct {
		in   string
		keep bool
	}{
		{"abc-123_X.y", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"has space", false},
		{"new\nline", false},
		{"quote\"", false},
		{"ünï", false},
		{"a/b", false},
	} {
		req := httptest.NewRequest("GET", "/test-request-id", nil)
		if c.in != "" {
			req.Header["X-Request-Id"] = []string{c.in}
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-ID")
		if got != seen {
			t.Errorf("X-Request-ID %q: answer has %q, context had %q", c.in, got, seen)
		}
		if c.keep && got != c.in || !c.keep && (got == c.in || !saneRequestID(got) || generated[got]) {
			t.Errorf("X-Request-ID %q: answer has %q, want it kept: %v (generated IDs sane and unique)", c.in, got, c.keep)
		}
		if !c.keep {
			generated[got] = true
		}
	}
	// Errors before any route carry an ID too.
	rec := serve(s, "GET", "/entity/../x", "")
	if rec.Code != 400 || rec.Header().Get("X-Request-ID") == "" {
		t.Errorf("non-canonical path = %d with X-Request-ID %q, want 400 with an ID", rec.Code, rec.Header().Get("X-Request-ID"))
	}
}

// TestWriteErrorClientGone: a failure caused by the client hanging up (its
// request context ended, e.g. during a long validation) is logged at info
// as such, never as a server error.
func TestWriteErrorClientGone(t *testing.T) {
	var logBuf strings.Builder
	s := &restServer{log: slog.New(slog.NewJSONHandler(&logBuf, nil))}
	ctx, cancel := context.WithCancel(withRequestID(t.Context(), "req-7"))
	cancel()
	r := httptest.NewRequest("PUT", "/entity/db", nil).WithContext(ctx)
	r.Pattern = "PUT /entity/{db}"
	s.writeError(httptest.NewRecorder(), r, fmt.Errorf("validate: %w", ctx.Err()))
	log := logBuf.String()
	if !strings.Contains(log, `"level":"INFO"`) || !strings.Contains(log, "client went away") || strings.Contains(log, `"level":"ERROR"`) {
		t.Errorf("log of a request whose client went away = %s, want one INFO line \"client went away\"", log)
	}
}

// TestFailureLogLevels: each front end logs a 503 that only means "try
// again shortly" (the server at its limit of concurrent reads, an
// entity's log being handed over) at warn, as a refusal, with the
// request ID; a fault (storage, a worker lost or unreachable, a damaged
// log, the audit log, corrupt data) stays at error, and a failure whose
// client went away is info. errBusy was logged at error like a fault,
// and so was a gRPC call whose client went away.
func TestFailureLogLevels(t *testing.T) {
	busy := fmt.Errorf("read entity \"k\" of db: wait for 1 bytes of the read budget: no room after 15s: %w", errBusy)
	cases := []struct {
		name  string
		err   error
		level string
	}{
		{"busy", busy, "WARN"},
		{"busy at a worker", errorFromStatus(withReason(status.New(codes.Unavailable, "x"), errBusy).Err(), false), "WARN"},
		{"handing over", fmt.Errorf("route: %w", errHandingOver), "WARN"},
		{"handing over after a lost worker", fmt.Errorf("%w: %v: %w", errHandingOverLost, errHandingOver, errTransport), "ERROR"},
		{"handover damaged", errHandoverDamaged, "ERROR"},
		{"no worker", errNoWorker, "ERROR"},
		{"worker unreachable", errTransport, "ERROR"},
		{"worker slow", errWorkerSlow, "ERROR"},
		{"storage", fmt.Errorf("get: %w", errUnavailable), "ERROR"},
		{"change log broken", errChangeLogBroken, "ERROR"},
		{"audit", errAuditUnavailable, "ERROR"},
		{"corrupt", errCorrupt, "ERROR"},
	}
	msgs := map[string][3]string{ // REST, gRPC, worker
		"WARN":  {"request refused", "grpc process refused", "process refused"},
		"ERROR": {"request failed", "grpc process failed", "process failed"},
	}
	for _, c := range cases {
		var logs syncBuffer
		log, err := newLogger(&logs, logFormatJSON, slog.LevelInfo)
		if err != nil {
			t.Fatal(err)
		}
		ctx := withRequestID(t.Context(), "lvl-1")
		r := httptest.NewRequest("GET", "/entity/db?key=k", nil).WithContext(ctx)
		r.Pattern = "GET /entity/{db}"
		(&restServer{log: log}).writeError(httptest.NewRecorder(), r, c.err)
		(&mainService{log: log}).logFailure(ctx, &pb.ProcessRequest{DatabaseName: "db"}, c.err)
		(&workerServer{w: &worker{id: "w1", log: log}}).failure(ctx, c.err)
		lines := parseLog(t, logs.String(), logFormatJSON)
		for i, msg := range msgs[c.level] {
			if got := linesWith(lines, logLine{"msg": msg, "level": c.level, "request_id": "lvl-1"}); len(got) != 1 || len(lines) != 3 {
				t.Errorf("%s: front end %d logged:\n%s\nwant one %s line %q with the request ID among 3", c.name, i, logs.String(), c.level, msg)
			}
		}
	}
	// A gRPC call whose client went away, as REST's (TestWriteErrorClientGone).
	var logs syncBuffer
	log, err := newLogger(&logs, logFormatJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(withRequestID(t.Context(), "lvl-2"))
	cancel()
	(&mainService{log: log}).logFailure(ctx, &pb.ProcessRequest{DatabaseName: "db"}, fmt.Errorf("wait: %w", ctx.Err()))
	if got := linesWith(parseLog(t, logs.String(), logFormatJSON), logLine{"msg": "client went away", "level": "INFO", "request_id": "lvl-2"}); len(got) != 1 {
		t.Errorf("gRPC call whose client went away logged:\n%s\nwant one INFO line \"client went away\"", logs.String())
	}
	// A worker's call the main worker cancelled (its client went away),
	// failed by its storage read cut short: INFO, not ERROR.
	var wlogs syncBuffer
	if log, err = newLogger(&wlogs, logFormatJSON, slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	(&workerServer{w: &worker{id: "w1", log: log}}).failure(ctx, fmt.Errorf("read entity: %w", ctx.Err()))
	lines := parseLog(t, wlogs.String(), logFormatJSON)
	if len(linesWith(lines, logLine{"msg": "call cancelled", "level": "INFO", "request_id": "lvl-2"})) != 1 || len(lines) != 1 {
		t.Errorf("worker's call cancelled by the main worker logged:\n%s\nwant one INFO line \"call cancelled\"", wlogs.String())
	}
}

// TestReadAllSized: a body read into the buffer its Content-Length
// sizes is the whole body whatever the length said, as io.ReadAll reads
// it, and a read error comes back.
func TestReadAllSized(t *testing.T) {
	body := strings.Repeat("0123456789", 300)
	for _, size := range []int64{-1, 0, 1, 2999, 3000, 3001, 10000} {
		for _, r := range []io.Reader{strings.NewReader(body), iotest.OneByteReader(strings.NewReader(body)), iotest.DataErrReader(strings.NewReader(body))} {
			got, err := readAllSized(r, size)
			if err != nil || string(got) != body {
				t.Fatalf("readAllSized(size %d) = %d bytes, %v; want the %d bytes", size, len(got), err, len(body))
			}
		}
	}
	if _, err := readAllSized(iotest.TimeoutReader(strings.NewReader(body)), 3000); err == nil {
		t.Fatal("readAllSized hid a read error")
	}
	// An announced length is not allocated before the bytes come: a
	// client may announce the limit on many connections and send one byte.
	if got, err := readAllSized(strings.NewReader("x"), 64<<20); err != nil || string(got) != "x" || cap(got) > presizeMax+1 {
		t.Errorf("readAllSized of 1 byte announced as 64 MiB = %q (capacity %d), %v; want it read into at most %d bytes", got, cap(got), err, presizeMax+1)
	}
}

// TestNoJobsNoChecksSentence: a REST server built without key jobs or
// entity checks answers their routes 404 saying so; on the old code it
// answered 503 "storage or workers unavailable", which named neither
// cause (the 5xx's sentence replaced the one the route gave).
func TestNoJobsNoChecksSentence(t *testing.T) {
	ts := newAuthTestServerOn(t, authConfig{}, newTestFSStore(t), func(o *restOptions) { o.jobs = nil })
	ts.rest.checks = nil
	ts.mustDo(t, "PUT", "/entity/db1", testAdminKey, `{"k":{"a":1}}`, 200)
	for _, c := range []struct{ method, target, want string }{
		{"GET", "/admin/jobs", "this server runs no key jobs"},
		{"POST", "/admin/databases/db1/rekey", "this server runs no key jobs"},
		{"GET", "/api/databases/db1/check", "this server runs no entity checks"},
	} {
		rec := ts.do(c.method, c.target, testAdminKey, "", "")
		var body errorBody
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != 404 || body.Error != c.want {
			t.Errorf("%s %s = %d %s, want 404 %q", c.method, c.target, rec.Code, rec.Body, c.want)
		}
	}
}
