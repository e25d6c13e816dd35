package main

// Regression tests of issue 12's findings on request budgets, permissions
// and UTF-8, each named after its finding. The budget tests run the real
// binary and watch it while the hostile request runs: its RSS must stay
// below 500 MB and /healthz must answer within 1 s.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// maxHostileRSS is the most memory a server may hold while it refuses a
// hostile request.
const maxHostileRSS = 500 << 20

// serverWatch samples servers while a hostile request runs: the RSS of
// each process (VmRSS in /proc/<pid>/status) and whether the first one
// answers /healthz within 1 s. Create it with watchServers; end it with
// check.
type serverWatch struct {
	nodes []*node
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	maxRSS  int64 // bytes, over every sample of every process
	samples int
	// slowest is the longest /healthz took.
	slowest time.Duration
	errs    []string
}

// watchServers starts sampling nodes (the first serves /healthz) at once
// and every 20 ms until check.
func watchServers(t *testing.T, nodes ...*node) *serverWatch {
	t.Helper()
	w := &serverWatch{nodes: nodes, stop: make(chan struct{}), done: make(chan struct{})}
	w.sample()
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				w.sample()
			}
		}
	}()
	return w
}

// sample takes one sample of every node.
func (w *serverWatch) sample() {
	client := http.Client{Timeout: time.Second}
	start := time.Now()
	resp, err := client.Get(w.nodes[0].base + "/healthz")
	took := time.Since(start)
	var problem string
	switch {
	case err != nil:
		problem = fmt.Sprintf("/healthz: %v", err)
	case resp.StatusCode != http.StatusOK:
		problem = fmt.Sprintf("/healthz = %d", resp.StatusCode)
	}
	if resp != nil {
		resp.Body.Close()
	}
	var rss int64
	for _, n := range w.nodes {
		r, err := vmRSS(n.cmd.Process.Pid)
		if err != nil {
			problem = err.Error()
		}
		rss = max(rss, r)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	w.maxRSS = max(w.maxRSS, rss)
	w.slowest = max(w.slowest, took)
	if problem != "" {
		w.errs = append(w.errs, problem)
	}
}

// check stops sampling after one last sample and fails t if a process
// held maxHostileRSS or more or /healthz did not answer in time.
func (w *serverWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("%d samples, max RSS %d MB, slowest /healthz %v", w.samples, w.maxRSS>>20, w.slowest.Round(time.Millisecond))
	if w.maxRSS >= maxHostileRSS {
		t.Errorf("server RSS reached %d MB during the request, want below %d MB", w.maxRSS>>20, maxHostileRSS>>20)
	}
	if len(w.errs) > 0 {
		t.Errorf("server did not answer /healthz within 1 s during the request: %v", w.errs)
	}
}

// vmRSS reads the resident set size of process pid, bytes.
func vmRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// callType sends one request with a Content-Type and the admin key.
func callType(t *testing.T, n *node, method, path, ct string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, n.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

// copyPatch is the finding's JSON Patch: n operations each copying the
// whole document into a new member, doubling it every time.
func copyPatch(n int) []byte {
	ops := make([]string, n)
	for i := range ops {
		ops[i] = fmt.Sprintf(`{"op":"copy","from":"","path":"/c%d"}`, i)
	}
	return []byte("[" + strings.Join(ops, ",") + "]")
}

// checkCopyPatchRefused patches amp/k with the 16-op copy patch (a 100-byte
// document would grow to 6.5 MB) and checks the 413, its sentence, and that
// the stored document did not change.
func checkCopyPatchRefused(t *testing.T, main *node, watched ...*node) {
	t.Helper()
	doc := `{"x":"` + strings.Repeat("a", 92) + `"}`
	if code, out, _ := main.call("PUT", "/entity/amp", testAdminKey, `{"k":`+doc+`}`); code != 200 {
		t.Fatalf("PUT amp/k = %d %s", code, out)
	}
	w := watchServers(t, watched...)
	code, out := callType(t, main, "PATCH", "/entity/amp?key=k", jsonPatchType, copyPatch(16))
	w.check(t)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "document limit of 1048576 bytes") {
		t.Errorf("PATCH with 16 copy ops = %d %.200s, want 413 naming the document limit", code, out)
	}
	if code, out, _ := main.call("GET", "/entity/amp?key=k", testAdminKey, nil); code != 200 || string(out) != doc {
		t.Errorf("GET amp/k after the refused patch = %d %.100s (%d bytes), want the document as it was", code, out, len(out))
	}
}

// TestPatchCopyAmplification16Ops: a 16-op copy patch must not grow a
// document past the document limit; it is refused while being applied.
func TestPatchCopyAmplification16Ops(t *testing.T) {
	n, _ := startDefault(t)
	checkCopyPatchRefused(t, n, n)
}

// TestPatchCopyAmplification16OpsRemoteWorker: through a remote worker the
// worker enforces the limit, so the client gets the 413 and nothing is
// stored (the finding: 413 to the client, 6.8 MB stored).
func TestPatchCopyAmplification16OpsRemoteWorker(t *testing.T) {
	c := startCluster(t, "w1")
	checkCopyPatchRefused(t, c.main, c.main, c.workers["w1"])
}

// refBombSchema is the finding's schema: levels nested anyOf levels of two
// $refs each, 2^levels branches for a value that matches none.
func refBombSchema(levels int) []byte {
	defs := make([]string, 0, levels+1)
	for i := range levels {
		ref := fmt.Sprintf(`{"$ref":"#/definitions/d%d"}`, i+1)
		defs = append(defs, fmt.Sprintf(`"d%d":{"anyOf":[%s,%s]}`, i, ref, ref))
	}
	defs = append(defs, fmt.Sprintf(`"d%d":{"type":"string"}`, levels))
	return []byte(`{"$ref":"#/definitions/d0","definitions":{` + strings.Join(defs, ",") + `}}`)
}

// TestSchemaRefBomb2To30: a schema of 2^30 branches is refused at
// PUT /schema with 400, so no document is ever validated against it.
func TestSchemaRefBomb2To30(t *testing.T) {
	n, _ := startDefault(t)
	w := watchServers(t, n)
	code, out, _ := n.call("PUT", "/schema/bomb.v1", testAdminKey, refBombSchema(30))
	w.check(t)
	if code != http.StatusBadRequest || !strings.Contains(string(out), "$refs expanded") {
		t.Errorf("PUT /schema/bomb.v1 (2^30 branches) = %d %s, want 400 about its $refs", code, out)
	}
	if code, _, _ := n.call("GET", "/schema/bomb.v1", testAdminKey, nil); code != http.StatusNotFound {
		t.Errorf("GET /schema/bomb.v1 after the refusal = %d, want 404", code)
	}
}

// TestSchemaNested3000Deep: a schema of items nested 3,000 deep is refused
// by the nesting budget before it is compiled (it took 13.8 s).
func TestSchemaNested3000Deep(t *testing.T) {
	n, _ := startDefault(t)
	body := strings.Repeat(`{"items":`, 3000) + "{}" + strings.Repeat("}", 3000)
	w := watchServers(t, n)
	start := time.Now()
	code, out, _ := n.call("PUT", "/schema/deep.v1", testAdminKey, body)
	took := time.Since(start)
	w.check(t)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "deeper than the limit of 64 levels") {
		t.Errorf("PUT /schema/deep.v1 (3,000 deep) = %d %s, want 413 naming the depth limit", code, out)
	}
	if took > time.Second {
		t.Errorf("PUT /schema/deep.v1 took %v, want the refusal within 1 s", took)
	}
}

// TestPut95000Keys: one PUT of 95,000 keys (one fsync each, about 50 s)
// is refused by -max-batch-keys and stores nothing.
func TestPut95000Keys(t *testing.T) {
	n, _ := startDefault(t)
	var b strings.Builder
	b.WriteString("{")
	for i := range 95000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"%s":1`, strconv.FormatInt(int64(i), 36))
	}
	b.WriteString("}")
	w := watchServers(t, n)
	code, out, _ := n.call("PUT", "/entity/many", testAdminKey, b.String())
	w.check(t)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "limit of 1000 entities") {
		t.Errorf("PUT of 95,000 keys = %d %s, want 413 naming the limit", code, out)
	}
	if code, out, _ := n.call("GET", "/api/databases", testAdminKey, nil); code != 200 || strings.Contains(string(out), "many") {
		t.Errorf("GET /api/databases after the refused PUT = %d %s, want no database many", code, out)
	}
}

// TestBudgetFlags: each budget is a flag; a smaller value is enforced.
func TestBudgetFlags(t *testing.T) {
	n, _ := startDefault(t, "-max-batch-keys=2", "-max-patch-ops=2", "-max-json-depth=3", "-max-document-size=64")
	cases := []struct {
		method, path, ct, body, want string
	}{
		{"PUT", "/entity/f", "", `{"a":1,"b":2,"c":3}`, "PUT of 3 entities exceeds the limit of 2 entities per request"},
		{"PUT", "/entity/f", "", `{"a":[[[1]]]}`, "body nests arrays and objects deeper than the limit of 3 levels"},
		{"PUT", "/entity/f", "", `{"a":"` + strings.Repeat("x", 70) + `"}`, `document "a" of 72 bytes exceeds the document limit of 64 bytes`},
		{"PATCH", "/entity/f?key=k", jsonPatchType, `[{"op":"test","path":"","value":{}},{"op":"test","path":"","value":{}},{"op":"test","path":"","value":{}}]`, "JSON patch of 3 operations exceeds the limit of 2 operations"},
		{"PATCH", "/entity/f?key=k", mergePatchType, `{"a":"` + strings.Repeat("x", 70) + `"}`, "the patched document of 78 bytes exceeds the document limit of 64 bytes"},
	}
	if code, out, _ := n.call("PUT", "/entity/f", testAdminKey, `{"k":{}}`); code != 200 {
		t.Fatalf("PUT f/k = %d %s", code, out)
	}
	for _, tc := range cases {
		code, out := callType(t, n, tc.method, tc.path, tc.ct, []byte(tc.body))
		var e struct{ Error string }
		json.Unmarshal(out, &e)
		if code != http.StatusRequestEntityTooLarge || e.Error != tc.want {
			t.Errorf("%s %s %.40s = %d %s, want 413 %q", tc.method, tc.path, tc.body, code, out, tc.want)
		}
	}
	if code, out, _ := n.call("GET", "/entity/f?key=k", testAdminKey, nil); code != 200 || string(out) != `{}` {
		t.Errorf("GET f/k after the refused writes = %d %s, want {}", code, out)
	}
}

// TestValidationTimeout: validating one document against one schema stops
// at the validation budget with 413. The schema (2^14 branches) is within
// the expansion limit; the budget here is 1 ms.
func TestValidationTimeout(t *testing.T) {
	r := newSchemaRegistry(newMemStore(), budgets{})
	r.lim.validationTimeout = time.Millisecond
	ctx := context.Background()
	if err := r.Put(ctx, "slow.v1", refBombSchema(14)); err != nil {
		t.Fatalf("Put(2^14 branches) = %v, want it accepted", err)
	}
	err := r.Validate(ctx, "slow.v1", []byte(`1`))
	if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "longer than the limit of 1ms") {
		t.Errorf("Validate(2^14 branches, 1 ms) = %v, want errTooLarge naming the limit", err)
	}
	r.lim.validationTimeout = time.Minute
	if err := r.Validate(ctx, "slow.v1", []byte(`"s"`)); err != nil {
		t.Errorf("Validate(matching document) = %v, want nil", err)
	}
}

// TestSchemaExpansion: the expansion count refuses bombs, flat or
// recursive, and accepts recursive schemas whose work is linear in the
// document (a tree, any JSON value).
func TestSchemaExpansion(t *testing.T) {
	cases := []struct {
		name, schema string
		ok           bool
	}{
		{"small", `{"type":"object","properties":{"a":{"type":"string"},"b":{"$ref":"#/properties/a"}}}`, true},
		{"tree", `{"type":"object","properties":{"children":{"type":"array","items":{"$ref":"#"}}}}`, true},
		{"any JSON", `{"anyOf":[{"type":"string"},{"type":"array","items":{"$ref":"#"}},{"type":"object","additionalProperties":{"$ref":"#"}}]}`, true},
		{"2^14 refs", string(refBombSchema(14)), true},
		{"2^20 refs", string(refBombSchema(20)), false},
		{"doubling per array level", `{"items":{"anyOf":[{"$ref":"#"},{"$ref":"#"}]}}`, false},
	}
	for _, tc := range cases {
		r := newSchemaRegistry(newMemStore(), budgets{})
		err := r.Put(context.Background(), "s.v1", []byte(tc.schema))
		if got := err == nil; got != tc.ok {
			t.Errorf("Put(%s) = %v, want accepted %v", tc.name, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, errInvalid) || !strings.Contains(err.Error(), "$refs expanded")) {
			t.Errorf("Put(%s) = %v, want errInvalid about the expansion", tc.name, err)
		}
	}
}

// TestCheckJSONText: depth counts only brackets outside strings; invalid
// UTF-8 anywhere is refused.
func TestCheckJSONText(t *testing.T) {
	cases := []struct {
		in   string
		want error
	}{
		{`[[1]]`, nil},
		{`[[[1]]]`, errTooLarge},
		{`{"a":{"b":{}}}`, errTooLarge},
		{`{"a":"[[[[{{{{"}`, nil},
		{`{"a\"[[[[":1}`, nil},
		{`["\\",[1]]`, nil},
		{"\"\xff\"", errInvalid},
		{"{\"\xc3\":1}", errInvalid},
		{`"é"`, nil},
	}
	for _, tc := range cases {
		err := checkJSONText("body", []byte(tc.in), 2)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("checkJSONText(%q, 2) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

// TestJSONSizeIsEncodedLength: jsonSize, which the patch budget counts
// with, is the length of the compact encoding, on random documents.
func TestJSONSizeIsEncodedLength(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	var gen func(depth int) any
	gen = func(depth int) any {
		switch k := rng.IntN(7); {
		case k == 0 || depth > 4:
			return []any{nil, true, false, json.Number("-1.5e3"), "a\"\\\n\x01é<"}[rng.IntN(5)]
		case k < 4:
			a := make([]any, rng.IntN(4))
			for i := range a {
				a[i] = gen(depth + 1)
			}
			return a
		default:
			m := map[string]any{}
			for i := range rng.IntN(4) {
				m[fmt.Sprintf("k\t%d", i)] = gen(depth + 1)
			}
			return m
		}
	}
	for range 500 {
		v := gen(0)
		b, err := encodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonSize(v, 1<<30); got != int64(len(b)) {
			t.Fatalf("jsonSize(%s) = %d, want %d", b, got, len(b))
		}
	}
}

// TestInvalidUTF8: invalid UTF-8 inside JSON strings is refused with 400
// wherever a document, a key or a schema arrives, and nothing is stored.
func TestInvalidUTF8(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 1 << 30})
	ts.mustDo(t, "PUT", "/entity/u", testAdminKey, `{"k":{"a":"ok"}}`, 200)
	cases := []struct{ method, path, ct, body string }{
		{"PUT", "/entity/u", "", "{\"k\":{\"a\":\"\xff\"}}"},
		{"PUT", "/entity/u", "", "{\"k\xc3\":{}}"},
		{"PATCH", "/entity/u?key=k", mergePatchType, "{\"a\":\"\xfe\xff\"}"},
		{"PATCH", "/entity/u?key=k", jsonPatchType, "[{\"op\":\"add\",\"path\":\"/a\",\"value\":\"\xed\xa0\x80\"}]"},
		{"PUT", "/schema/u.v1", "", "{\"title\":\"\xff\"}"},
		{"PUT", "/api/databases/u", "", "{\"schema\":\"\xff\"}"},
	}
	for _, tc := range cases {
		rec := ts.doWith(tc.method, tc.path, testAdminKey, tc.body, tc.ct)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "not valid UTF-8") {
			t.Errorf("%s %s %q = %d %s, want 400 about UTF-8", tc.method, tc.path, tc.body, rec.Code, rec.Body)
		}
	}
	if got := ts.mustDo(t, "GET", "/entity/u?key=k", testAdminKey, "", 200); string(got) != `{"a":"ok"}` {
		t.Errorf("GET u/k = %s, want it unchanged", got)
	}
	ts.mustDo(t, "GET", "/schema/u.v1", "", "", 404)

	client := pb.NewMainWorkerClient(dial(t, serveTestMain(t, 4<<20, ts.st, ts.auth).addr))
	for _, op := range []string{"PUT", "PATCH"} {
		_, err := client.Process(t.Context(), clientProcess(op, "u", "k", testAdminKey, []byte("{\"a\":\"\xff\"}")))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not valid UTF-8") {
			t.Errorf("Process %s with invalid UTF-8 = %v, want InvalidArgument about UTF-8", op, err)
		}
	}
}

// TestWriteOnlyPatchOverGRPC: like REST, Process answers a PATCH without
// the document to a key that may only write, and with it to one that may
// read.
func TestWriteOnlyPatchOverGRPC(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 1 << 30})
	creds := ts.credentials(t)
	client := pb.NewMainWorkerClient(dial(t, serveTestMain(t, 4<<20, ts.st, ts.auth).addr))
	ctx := t.Context()
	if _, err := client.Process(ctx, clientProcess("PUT", "chatdb", "k", testAdminKey, []byte(`{"secret":1}`))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind credKind
		want string
	}{{credWrite, ""}, {credAdmin, `{"secret":1}`}} {
		resp, err := client.Process(ctx, clientProcess("PATCH", "chatdb", "k", creds[tc.kind], []byte(`{}`)))
		if err != nil || string(resp.GetResult()) != tc.want || resp.GetVersion() == "" {
			t.Errorf("Process PATCH {} with %s credential = %q version %q, %v; want %q and a version",
				credNames[tc.kind], resp.GetResult(), resp.GetVersion(), err, tc.want)
		}
	}
}

// TestScopedKeySchemaOverwrite: a key limited to app* may not replace
// schema prod.v1, which database prod is bound to; prod's writes keep
// validating against the schema as it was. It may still replace a schema
// only its own databases are bound to.
func TestScopedKeySchemaOverwrite(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 1 << 30})
	key := ts.createKey(t, `{"name":"app","permissions":["read","write"],"databases":["app*"]}`).Secret
	strict := `{"type":"object","required":["id"]}`
	ts.mustDo(t, "PUT", "/schema/prod.v1", testAdminKey, strict, 200)
	ts.mustDo(t, "PUT", "/schema/app.v1", testAdminKey, strict, 200)
	ts.mustDo(t, "PUT", "/api/databases/prod", testAdminKey, `{"schema":"prod.v1"}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/app1", testAdminKey, `{"schema":"app.v1"}`, 200)

	rec := ts.do("PUT", "/schema/prod.v1", key, `{"type":"string"}`, "")
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `bound to database \"prod\"`) {
		t.Errorf("PUT /schema/prod.v1 with a key limited to app* = %d %s, want 403 naming prod", rec.Code, rec.Body)
	}
	if got := ts.mustDo(t, "GET", "/schema/prod.v1", "", "", 200); string(got) != strict {
		t.Errorf("schema prod.v1 = %s, want it unchanged", got)
	}
	ts.mustDo(t, "PUT", "/entity/prod", testAdminKey, `{"k":{"id":1}}`, 200)
	ts.mustDo(t, "PUT", "/schema/app.v1", key, `{"type":"object"}`, 200)
}

// TestBudgetsOverGRPC: Process keeps the REST budgets: a payload over the
// document limit or nested too deep, and a JSON Patch with too many
// operations or that would grow the document past the limit, are
// RESOURCE_EXHAUSTED with the REST sentence, and nothing is stored.
func TestBudgetsOverGRPC(t *testing.T) {
	tm := startTestMain(t, 4<<20)
	client := pb.NewMainWorkerClient(dial(t, tm.addr))
	ctx := t.Context()
	doc := `{"x":"` + strings.Repeat("a", 92) + `"}`
	if _, err := client.Process(ctx, clientProcess("PUT", "g", "k", testAdminKey, []byte(doc))); err != nil {
		t.Fatal(err)
	}
	patchOps := "[" + strings.TrimSuffix(strings.Repeat(`{"op":"test","path":"","value":{}},`, 1001), ",") + "]"
	cases := []struct {
		op, ct, payload, want string
	}{
		{"PUT", "", `{"a":"` + strings.Repeat("x", 1<<20) + `"}`, `document "k" of 1048584 bytes exceeds the document limit of 1048576 bytes`},
		{"PUT", "", strings.Repeat("[", 65) + strings.Repeat("]", 65), `document "k" nests arrays and objects deeper than the limit of 64 levels`},
		{"PATCH", jsonPatchType, string(copyPatch(16)), "the patched document would exceed the document limit of 1048576 bytes"},
		{"PATCH", jsonPatchType, patchOps, "JSON patch of 1001 operations exceeds the limit of 1000 operations"},
	}
	for _, tc := range cases {
		req := clientProcess(tc.op, "g", "k", testAdminKey, []byte(tc.payload))
		req.ContentType = tc.ct
		_, err := client.Process(ctx, req)
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Process %s %.40s = %v, want ResourceExhausted %q", tc.op, tc.payload, err, tc.want)
		}
	}
	resp, err := client.Process(ctx, clientProcess("GET", "g", "k", testAdminKey, nil))
	if err != nil || string(resp.GetResult()) != doc {
		t.Errorf("GET g/k after the refused writes = %.80s, %v; want it unchanged", resp.GetResult(), err)
	}
}
