package main

// Regression tests of findings on request budgets, permissions
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
	"testing/synctest"
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
	// 1 s on an idle machine, stretched by the load like the waits: at a
	// load of 15 per CPU a healthy server's answer alone can take a second.
	client := http.Client{Timeout: scaled(time.Second)}
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
		t.Errorf("server did not answer /healthz within %v (1 s scaled by the load) during the request: %v", scaled(time.Second), w.errs)
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
	if took > scaled(time.Second) {
		t.Errorf("PUT /schema/deep.v1 took %v, want the refusal within 1 s (scaled by the machine's load)", took)
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
		{"PUT", "/entity/f", "", `{"a":[[[[1]]]]}`, "a document of the body nests arrays and objects deeper than the limit of 3 levels"},
		{"PUT", "/entity/f", "", `{"a":"` + strings.Repeat("x", 70) + `"}`, `document "a" of 72 bytes exceeds the document limit of 64 bytes`},
		{"PATCH", "/entity/f?key=k", jsonPatchType, `[{"op":"test","path":"","value":{}},{"op":"test","path":"","value":{}},{"op":"test","path":"","value":{}}]`, "JSON patch of 3 operations exceeds the limit of 2 operations"},
		{"PATCH", "/entity/f?key=k", mergePatchType, `{"a":"` + strings.Repeat("x", 70) + `"}`, "the patched document of 78 bytes exceeds the document limit of 64 bytes"},
	}
	if code, out, _ := n.call("PUT", "/entity/f", testAdminKey, `{"k":{}}`); code != 200 {
		t.Fatalf("PUT f/k = %d %s", code, out)
	}
	// The depth limit is each document's, as over gRPC and in an import:
	// the body's object around the documents is not counted against it.
	if code, out, _ := n.call("PUT", "/entity/f", testAdminKey, `{"deep":[[[1]]]}`); code != 200 {
		t.Errorf("PUT of a document nested 3 deep with -max-json-depth=3 = %d %s, want 200", code, out)
	}
	_, rep := importNDJSON(t, n, "f", testAdminKey, "", `{"key":"deeper","doc":[[[[1]]]]}`)
	if len(rep.Errors) != 1 || rep.Errors[0].Error != "the line's document nests arrays and objects deeper than the limit of 3 levels" {
		t.Errorf("import of a document nested 4 deep = %+v, want the line refused naming the limit of 3", rep)
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

// TestResponseBudgetFloor: a -max-response-bytes below
// -max-document-size is raised to it, and -h says so, as it does of
// -max-inflight-read-bytes (it said only "at least one document", so
// -max-response-bytes=1000 looked taken and was 1 MiB).
func TestResponseBudgetFloor(t *testing.T) {
	if got := (budgets{maxResponse: 1000, maxDocument: 4096}).response(); got != 4096 {
		t.Errorf("response budget of -max-response-bytes=1000 -max-document-size=4096 = %d, want 4096", got)
	}
	var usage bytes.Buffer
	parseFlags([]string{"-h"}, &usage)
	for _, name := range []string{"max-response-bytes", "max-inflight-read-bytes"} {
		_, line, _ := strings.Cut(usage.String(), "  -"+name+" int\n")
		line, _, _ = strings.Cut(line, "\n")
		if !strings.Contains(line, "at least -max-document-size") {
			t.Errorf("-h says of -%s %q, want it to name its floor, -max-document-size", name, line)
		}
	}
}

// TestValidationTimeout: validating one document against one schema stops
// at the validation budget with 413. The schema (2^14 branches) is within
// the expansion limit; the budget here is 1 ms, which its 2^14 checks of
// the value exceed (refused before validating, or at the budget).
func TestValidationTimeout(t *testing.T) {
	r := newSchemaRegistry(newMemStore(), budgets{})
	r.lim.validationTimeout = time.Millisecond
	ctx := context.Background()
	if err := r.Put(ctx, "slow.v1", refBombSchema(14)); err != nil {
		t.Fatalf("Put(2^14 branches) = %v, want it accepted", err)
	}
	err := r.Validate(ctx, "slow.v1", []byte(`1`))
	if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "1ms") {
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

// TestSchemaPatternCost: a schema's pattern is bounded as a find's $regex
// is, more loosely (maxSchemaPattern instructions): matching takes time linear in the
// string times the instructions and cannot be interrupted, so a 15-byte
// pattern of 7002 instructions kept validating a 100 KB string for 3.7 s
// in the background after its 413 at -validation-timeout. A pattern
// applied many times counts each time against the expansion limit.
func TestSchemaPatternCost(t *testing.T) {
	ctx := context.Background()
	r := newSchemaRegistry(newMemStore(), budgets{})
	for _, c := range []struct {
		name, schema, want string
	}{
		{"counted alternation", `{"type":"string","pattern":"(a|aa){1,1000}b"}`, "too costly"},
		{"counted repetition", `{"properties":{"a":{"pattern":"a{0,1000}b"}}}`, "too costly"},
		{"pattern property", `{"patternProperties":{"^x{0,600}$":{"type":"string"}}}`, "too costly"},
		{"many applications", `{"$defs":{"p":{"pattern":"^[a-z]{1,100}$"}},"allOf":[` +
			strings.TrimSuffix(strings.Repeat(`{"$ref":"#/$defs/p"},`, 600), ",") + `]}`, "$refs expanded"},
	} {
		err := r.Put(ctx, "pat.v1", []byte(c.schema))
		if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Put(%s) = %v, want errInvalid saying %q", c.name, err, c.want)
		}
	}
	for _, ok := range []string{
		`{"type":"string","pattern":"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}`,
		`{"properties":{"role":{"pattern":"(?i)^(user|assistant|system)$"}},"patternProperties":{"^x-":{}}}`,
		`{"properties":{"name":{"pattern":"^[A-Za-z ]{1,300}$"},"title":{"pattern":"^.{1,500}$"}}}`,
	} {
		if err := r.Put(ctx, "pat.v1", []byte(ok)); err != nil {
			t.Errorf("Put(%s) = %v, want it stored", ok, err)
		}
	}
	// A template stored before these limits (or under looser ones) still
	// checks documents: refusing it now would refuse every write it checks.
	st := newMemStore()
	old := `{"properties":{"code":{"type":"string","pattern":"^a{0,700}b{0,700}$"}}}`
	if err := st.Put(ctx, schemaObjectKey("old.v1"), []byte(old)); err != nil {
		t.Fatal(err)
	}
	r = newSchemaRegistry(st, budgets{})
	if err := r.Validate(ctx, "old.v1", []byte(`{"code":"aaa"}`)); err != nil {
		t.Errorf("a document matching a stored template with a costly pattern: %v, want valid", err)
	}
	if err := r.Validate(ctx, "old.v1", []byte(`{"code":"ba"}`)); !errors.Is(err, errInvalid) || errors.Is(err, errCorrupt) {
		t.Errorf("a document not matching a stored template with a costly pattern: %v, want refused as invalid", err)
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

// bodyCase is one request whose body a test expects refused.
type bodyCase struct{ method, path, ct, body string }

// checkTextRefused sends each case with the admin key over REST to a
// server holding u/k = {"a":"ok"}, and payload as a gRPC PUT and PATCH of
// u/k; each must be refused with 400 (INVALID_ARGUMENT) and a sentence
// containing want, and neither u/k nor the schema u.v1 may change.
func checkTextRefused(t *testing.T, cases []bodyCase, payload []byte, want string) *authTestServer {
	t.Helper()
	ts := newAuthTestServer(t, authConfig{maxFailures: 1 << 30})
	ts.mustDo(t, "PUT", "/entity/u", testAdminKey, `{"k":{"a":"ok"}}`, 200)
	for _, tc := range cases {
		rec := ts.doWith(tc.method, tc.path, testAdminKey, tc.body, tc.ct)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s %s %q = %d %s, want 400 containing %q", tc.method, tc.path, tc.body, rec.Code, rec.Body, want)
		}
	}
	if got := ts.mustDo(t, "GET", "/entity/u?key=k", testAdminKey, "", 200); string(got) != `{"a":"ok"}` {
		t.Errorf("GET u/k = %s, want it unchanged", got)
	}
	ts.mustDo(t, "GET", "/schema/u.v1", "", "", 404)
	client := pb.NewMainWorkerClient(dial(t, serveTestMain(t, 4<<20, ts.st, ts.auth).addr))
	for _, op := range []string{"PUT", "PATCH"} {
		_, err := client.Process(t.Context(), clientProcess(op, "u", "k", testAdminKey, payload))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) {
			t.Errorf("Process %s %q = %v, want InvalidArgument containing %q", op, payload, err, want)
		}
	}
	return ts
}

// TestInvalidUTF8: invalid UTF-8 inside JSON strings is refused with 400
// wherever a document, a key or a schema arrives, and nothing is stored.
func TestInvalidUTF8(t *testing.T) {
	checkTextRefused(t, []bodyCase{
		{"PUT", "/entity/u", "", "{\"k\":{\"a\":\"\xff\"}}"},
		{"PUT", "/entity/u", "", "{\"k\xc3\":{}}"},
		{"PATCH", "/entity/u?key=k", mergePatchType, "{\"a\":\"\xfe\xff\"}"},
		{"PATCH", "/entity/u?key=k", jsonPatchType, "[{\"op\":\"add\",\"path\":\"/a\",\"value\":\"\xed\xa0\x80\"}]"},
		{"PUT", "/schema/u.v1", "", "{\"title\":\"\xff\"}"},
		{"PUT", "/api/databases/u", "", "{\"schema\":\"\xff\"}"},
	}, []byte("{\"a\":\"\xff\"}"), "not valid UTF-8")
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

// refChainSchema is the $ref chain of a finding: links
// definitions d_i = {"properties":{"a":{"$ref":"#/$defs/d_{i-1}"}}}
// under $defs (not a keyword of draft-07, the default), the root a $ref
// to the last.
func refChainSchema(links int) []byte {
	var b strings.Builder
	b.WriteString(`{"$defs":{"d_0":{"type":"string"}`)
	for i := 1; i < links; i++ {
		fmt.Fprintf(&b, `,"d_%d":{"properties":{"a":{"$ref":"#/$defs/d_%d"}}}`, i, i-1)
	}
	fmt.Fprintf(&b, `},"$ref":"#/$defs/d_%d"}`, links-1)
	return []byte(b.String())
}

// wideSchema is a schema of n properties, each {} (no $ref at all): the
// compiler's work grows with the square of n.
func wideSchema(n int) []byte { return propsSchema(n, `{}`) }

// propsSchema is a schema of n properties p0, p1, ..., each the schema
// child.
func propsSchema(n int, child string) []byte {
	var b strings.Builder
	b.WriteString(`{"properties":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"p%d":%s`, i, child)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// TestSchemaRefChain is a hostile-input probe: a chain of 4,000
// $refs cost 3.2 s of server time at PUT /schema, 8,000 links 14-18 s and
// 18,500 links (1 MB) 135 s, and the schema was stored. Now each is
// refused with 413 from the decoded document, before compiling (how fast:
// TestSchemaRefChainRefusedFast), and nothing is stored; so are 1,500 links (few nodes, but too many $ref
// targets for them) and 40,000 properties without any $ref. A chain of
// 500 links is still a schema.
func TestSchemaRefChain(t *testing.T) {
	s := newLocalREST(t)
	s.maxBody = 2 << 20
	for _, c := range []struct {
		name string
		body []byte
		want string // "" for accepted
	}{
		{"4000 links", refChainSchema(4000), "objects and booleans (subschemas), more than the limit of 10000"},
		{"8000 links", refChainSchema(8000), "more than the limit of 10000"},
		{"18500 links", refChainSchema(18500), "more than the limit of 10000"},
		{"1500 links", refChainSchema(1500), "distinct $ref targets among"},
		{"40000 properties", wideSchema(40000), "more than the limit of 10000"},
		{"500 links", refChainSchema(500), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			rec := serve(s, "PUT", "/schema/chain.v1", string(c.body))
			took := time.Since(start)
			t.Logf("%s (%d KB): %d in %v", c.name, len(c.body)>>10, rec.Code, took.Round(time.Millisecond))
			stored := serve(s, "GET", "/schema/chain.v1", "").Code == 200
			serve(s, "DELETE", "/schema/chain.v1", "")
			if c.want == "" {
				if rec.Code != 200 || !stored {
					t.Errorf("PUT = %d %s, want 200 and stored", rec.Code, rec.Body)
				}
				return
			}
			if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), c.want) {
				t.Errorf("PUT = %d %s, want 413 containing %q", rec.Code, rec.Body, c.want)
			}
			if stored {
				t.Error("the refused schema was stored")
			}
		})
	}
}

// TestSchemaRefChainRefusedFast: against the binary (not under the race
// detector, which slows decoding tenfold), the 1 MB chain of 18,500 $refs
// (135 s of server time on f1f22b5) is refused within 1 s on an idle
// machine (stretched by the load: scaled), and the server answers its
// health check all along.
func TestSchemaRefChainRefusedFast(t *testing.T) {
	n, _ := startDefault(t, "-rest-max-body-size=2097152")
	w := watchServers(t, n)
	start := time.Now()
	code, out, _ := n.call("PUT", "/schema/chain.v1", testAdminKey, refChainSchema(18500))
	took := time.Since(start)
	w.check(t)
	t.Logf("18,500 links: %d in %v", code, took.Round(time.Millisecond))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "more than the limit of 10000") {
		t.Errorf("PUT /schema/chain.v1 (18,500 links) = %d %s, want 413 naming the limit", code, out)
	}
	if limit := scaled(time.Second); took > limit {
		t.Errorf("the refusal took %v, want under %v (1 s on an idle machine)", took, limit.Round(time.Millisecond))
	}
}

// TestSchemaCompileStopsWithRequest: a schema within the bounds that still
// takes long to compile (5,000 properties) stops compiling when its
// request ends, and at the time budget; neither stores it. A stored
// template that ran out of time is not cached as damaged.
func TestSchemaCompileStopsWithRequest(t *testing.T) {
	body := propsSchema(5000, `{"type":"integer"}`)
	st := newMemStore()
	r := newSchemaRegistry(st, budgets{})
	r.compileTimeout = time.Minute // the race detector makes it slow
	// Wall times swing with the machine's load, and decoding before the
	// compiler starts cannot be cut short: a request ending after a tenth
	// of a whole compilation must see Put return within a third of it in
	// one of three tries (run to its end, as before, it never does).
	var stopped bool
	for try := 1; try <= 3 && !stopped; try++ {
		start := time.Now()
		if err := r.Put(t.Context(), "full.v1", body); err != nil {
			t.Fatalf("Put(5,000 properties) = %v", err)
		}
		full := time.Since(start)
		ctx, cancel := context.WithTimeout(t.Context(), full/10)
		start = time.Now()
		err := r.Put(ctx, "gone.v1", body)
		took := time.Since(start)
		cancel()
		t.Logf("try %d: 5,000 properties compile in %v; with the request ending after %v, Put returned after %v",
			try, full.Round(time.Millisecond), (full / 10).Round(time.Millisecond), took.Round(time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Put with a request that ends after %v = %v, want its context's error", full/10, err)
		}
		if _, err := st.Get(t.Context(), schemaObjectKey("gone.v1")); !errors.Is(err, errNotFound) {
			t.Errorf("the schema of an ended request was stored: %v", err)
		}
		stopped = took <= full/10+full/4
	}
	if !stopped {
		t.Error("Put went on compiling after its request ended, in each of three tries")
	}

	r.compileTimeout = time.Millisecond
	err := r.Put(t.Context(), "slow.v1", body)
	if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "takes longer than the limit of 1ms to compile") {
		t.Errorf("Put over the compile time budget = %v, want 413 naming it", err)
	}
	if _, err := st.Get(t.Context(), schemaObjectKey("slow.v1")); !errors.Is(err, errNotFound) {
		t.Errorf("the schema over the time budget was stored: %v", err)
	}

	// A template stored by hand that runs out of time on its first use
	// compiles on its next one, once there is time.
	if err := st.Put(t.Context(), schemaObjectKey("hand.v1"), propsSchema(2000, `{"type":"integer"}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(t.Context(), "hand.v1", []byte(`{}`)); !errors.Is(err, errTooLarge) {
		t.Errorf("Validate with 1 ms to compile = %v, want 413", err)
	}
	r.compileTimeout = time.Minute
	if err := r.Validate(t.Context(), "hand.v1", []byte(`{"p1":1}`)); err != nil {
		t.Errorf("Validate once there is time again = %v, want nil", err)
	}
}

// TestLoneSurrogateRefused is a hostile-input probe: the escape
// "\ud800" (half of a UTF-16 surrogate pair) was accepted and later
// rewritten to U+FFFD. Now it is refused with 400, like invalid UTF-8,
// wherever a body is decoded (REST and gRPC), and nothing is stored; a
// whole pair and an escaped backslash before "ud800" are still text.
func TestLoneSurrogateRefused(t *testing.T) {
	ts := checkTextRefused(t, []bodyCase{
		{"PUT", "/entity/u", "", `{"k":{"a":"\ud800"}}`},
		{"PUT", "/entity/u", "", `{"k":{"a":"\uDC00 trailing half"}}`},
		{"PUT", "/entity/u", "", `{"k":{"a":"\ud800\u0041"}}`},
		{"PUT", "/entity/u", "", `{"k":{"a":"x\udbff"}}`},
		{"PUT", "/entity/u", "", `{"k\ud800":{}}`},
		{"PATCH", "/entity/u?key=k", mergePatchType, `{"a":"\ud800"}`},
		{"PATCH", "/entity/u?key=k", jsonPatchType, `[{"op":"add","path":"/a","value":"\ud800"}]`},
		{"PUT", "/schema/u.v1", "", `{"title":"\ud800"}`},
		{"PUT", "/api/databases/u", "", `{"schema":"\ud800"}`},
		{"POST", "/api/keys", "", `{"name":"\ud800","permissions":["read"]}`},
	}, []byte(`{"a":"\ud800"}`), "surrogate pair without the other half")
	ts.mustDo(t, "PUT", "/entity/u", testAdminKey, `{"pair":"\ud83d\ude00","slash":"\\ud800"}`, 200)
	for key, want := range map[string]string{"pair": "😀", "slash": `\ud800`} {
		var got string
		raw := ts.mustDo(t, "GET", "/entity/u?key="+key, testAdminKey, "", 200)
		if err := json.Unmarshal(raw, &got); err != nil || got != want {
			t.Errorf("GET u/%s = %s (%q, %v), want %q", key, raw, got, err, want)
		}
	}

}

// FuzzCheckJSONText: whatever checkJSONText lets through decodes without
// a character being replaced: U+FFFD comes out of encoding/json only where
// the text had it (as UTF-8 or as an escape).
func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{`"\ud800"`, `"\ud83d\ude00"`, `"\\ud800"`, `["\udc00"]`, `{"\ud800\u0041":1}`, `"\uD800\uDBFF"`, `"a\u00e9"`, `"\ufffd"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkJSONText("body", b, 64) != nil {
			return
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		out, _ := json.Marshal(v)
		had := bytes.Contains(b, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
		if bytes.Contains(out, []byte("\uFFFD")) && !had {
			t.Errorf("checkJSONText accepted %q, which decodes with U+FFFD in it", b)
		}
	})
}

// TestStringChecksBounded: a schema that checks one string 2^13 times
// (allOf lists of $refs to a minLength) against a 900 KB string is
// refused at once with 413, before validation starts: validating it took
// 3.6 s of CPU, of which 2.6 s ran on after the 1 s budget's answer. The
// same schema takes a short string, and a small schema the long one.
func TestStringChecksBounded(t *testing.T) {
	r := newSchemaRegistry(newMemStore(), budgets{})
	ctx := t.Context()
	defs := []string{`"d12":{"minLength":1}`}
	for i := range 12 {
		ref := fmt.Sprintf(`{"$ref":"#/definitions/d%d"}`, i+1)
		defs = append(defs, fmt.Sprintf(`"d%d":{"allOf":[%s,%s]}`, i, ref, ref))
	}
	checks := `{"properties":{"s":{"$ref":"#/definitions/d0"}},"definitions":{` + strings.Join(defs, ",") + `}}`
	for id, schema := range map[string]string{"checks.v1": checks, "small.v1": `{"properties":{"s":{"minLength":1}}}`} {
		if err := r.Put(ctx, id, []byte(schema)); err != nil {
			t.Fatalf("Put(%s) = %v", id, err)
		}
	}
	long := []byte(`{"s":"` + strings.Repeat("a", 900<<10) + `"}`)
	start := time.Now()
	err := r.Validate(ctx, "checks.v1", long)
	if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "bytes of strings") {
		t.Errorf("Validate(2^13 checks of a 900 KB string) = %v after %v, want 413 before validating", err, time.Since(start))
	}
	if err := r.Validate(ctx, "checks.v1", []byte(`{"s":"abc"}`)); err != nil {
		t.Errorf("Validate(2^13 checks of a short string) = %v, want nil", err)
	}
	if err := r.Validate(ctx, "small.v1", long); err != nil {
		t.Errorf("Validate(one check of a 900 KB string) = %v, want nil", err)
	}
}

// TestValidationValueWork: a document whose values the schema would check
// more often than a validation can within its budget is refused with 413
// before it is validated. Validation cannot be interrupted: an array of
// 10,000 numbers against an enum of 10,000 (one read-only POST
// /schema/{id}/validate of 60 KB) got its 413 after 1 s and went on for
// minutes of CPU, and a 1 MiB document an hour. Schemas wide but shallow
// per value (a record of 300 properties) keep taking large documents.
// TestValidationNumberWork plays a client that writes numbers the schema
// library's exact fractions cannot hold, or hold only at great cost: past
// an exponent of a million it dereferenced nil and took the server down
// (a bare maximum, and uniqueItems hashing a number inside an item); a
// few 1e999999 each took 25 ms of CPU counted as one check, so that a
// 1 MiB array of them ran for an hour after its 413.
func TestValidationNumberWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSchemaRegistry(newMemStore(), budgets{})
		ctx := t.Context()
		for id, schema := range map[string]string{
			"max.v1":      `{"properties":{"n":{"maximum":10}},"items":{"maximum":10}}`,
			"unique.v1":   `{"uniqueItems":true}`,
			"enum.v1":     `{"items":{"enum":[1e999999,2e999999,3e999999]}}`,
			"const.v1":    `{"items":{"const":1e999999}}`,
			"min.v1":      `{"items":{"minimum":1e999999}}`,
			"multiple.v1": `{"items":{"multipleOf":3e-999999}}`,
		} {
			if err := r.Put(ctx, id, []byte(schema)); err != nil {
				t.Fatalf("Put(%s) = %v", id, err)
			}
		}
		var items string
		for i := range 20 {
			items += strconv.Itoa(i) + ","
		}
		items += `[1e1000001]`
		for _, c := range []struct{ id, doc string }{
			{"max.v1", `{"n":1e1000001}`},
			{"max.v1", `{"n":-1e-1000001}`},
			{"max.v1", `{"n":1.23456789e-999999}`}, // 10^-1000007
			{"max.v1", `{"n":0.` + strings.Repeat("0", 1000000) + `1}`},
			{"unique.v1", `[` + items + `]`},
		} {
			err := r.Validate(ctx, c.id, []byte(c.doc))
			if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "is beyond what a schema can check") {
				t.Errorf("Validate(%s, %.60s) = %.200v, want 413 before validating", c.id, c.doc, err)
			}
		}
		// A number's checks count its digits and exponent: eleven of
		// 1e999999 are more than the budget allows, and so are the
		// schema's numbers: an enum of three of them, or a const, checked on 20
		// numbers, a minimum of a million digits on 300.
		var ve *validationError
		small := func(n int) string { return "[" + strings.Repeat("1,", n-1) + "1]" }
		for _, c := range []struct{ id, doc string }{
			{"max.v1", "[" + strings.Repeat("1e999999,", 10) + "1e999999]"},
			{"max.v1", `[` + strings.Repeat("7", 400000) + `,` + strings.Repeat("7", 400000) + `]`},
			{"enum.v1", small(20)},
			{"const.v1", small(20)},
			{"min.v1", small(300)},
			{"multiple.v1", small(300)},
		} {
			err := r.Validate(ctx, c.id, []byte(c.doc))
			if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "would check the document's values more than") {
				t.Errorf("Validate(%s, %.40s...) = %.200v, want 413 before validating", c.id, c.doc, err)
			}
		}
		for id, doc := range map[string]string{"enum.v1": small(2), "min.v1": small(30), "multiple.v1": small(30), "const.v1": "[1]"} {
			if err := r.Validate(ctx, id, []byte(doc)); !errors.As(err, &ve) {
				t.Errorf("Validate(%s, %.40s) = %.200v, want a violation", id, doc, err)
			}
		}
		for doc, valid := range map[string]bool{
			`{"n":1e400}`:                        false,
			`{"n":-1e-400}`:                      true,
			`{"n":9.99999999999999999999999e0}`:  true,
			`[1e999999]`:                         false,
			`{"n":-12345678901234567890123e100}`: true,
		} {
			err := r.Validate(ctx, "max.v1", []byte(doc))
			if valid && err != nil || !valid && !errors.As(err, &ve) {
				t.Errorf("Validate(max.v1, %.40s) = %.200v, want valid %v", doc, err, valid)
			}
		}
		if err := r.Validate(ctx, "unique.v1", []byte(`[1,1e-400,[1e999],2]`)); err != nil {
			t.Errorf("Validate(unique.v1, distinct numbers) = %v, want nil", err)
		}
	})
}

func TestValidationValueWork(t *testing.T) {
	// In a bubble the budgets' timers (compile, validation) run on the
	// bubble's clock, which stands still while a compilation or a
	// validation computes: what is checked here is which documents are
	// refused before validating, counted, not how fast this machine
	// validates the rest. On the real clock the documents let through
	// (an enum of 10,000 checked per value, 100,000 numbers) took more
	// than the 1 s budget under -race at load 19 on 2 cores, and the
	// compilation of 1,000 allOf items more than its 2 s.
	synctest.Test(t, func(t *testing.T) {
		r := newSchemaRegistry(newMemStore(), budgets{})
		ctx := t.Context()
		nums := make([]string, 10000)
		for i := range nums {
			nums[i] = strconv.Itoa(i)
		}
		enum := "[" + strings.Join(nums, ",") + "]"
		props := make([]string, 300)
		for i := range props {
			props[i] = fmt.Sprintf(`"p%d":{"type":"number","minimum":0}`, i)
		}
		for id, schema := range map[string]string{
			"items.enum":  `{"type":"array","items":{"enum":` + enum + `}}`,
			"allof.items": `{"allOf":[` + strings.Repeat(`{"items":{"minimum":0}},`, 999) + `{"items":{"minimum":0}}]}`,
			"wide.v1":     `{"type":"object","properties":{` + strings.Join(props, ",") + `,"v":{"type":"array","items":{"type":"number"}}}}`,
		} {
			if err := r.Put(ctx, id, []byte(schema)); err != nil {
				t.Fatalf("Put(%s) = %v", id, err)
			}
		}
		numbers := "[" + strings.Repeat("-1,", 9999) + "-1]"
		for _, id := range []string{"items.enum", "allof.items"} {
			err := r.Validate(ctx, id, []byte(numbers))
			if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "would check the document's values more than") {
				t.Errorf("Validate(%s, 10,000 numbers) = %.200v, want 413 before validating", id, err)
			}
		}
		var ve *validationError
		if err := r.Validate(ctx, "items.enum", []byte(`[-1,5]`)); !errors.As(err, &ve) {
			t.Errorf("Validate(items.enum, [-1,5]) = %v, want a violation", err)
		}
		if err := r.Validate(ctx, "allof.items", []byte(`[1,2,3]`)); err != nil {
			t.Errorf("Validate(allof.items, [1,2,3]) = %v, want nil", err)
		}
		// The documents of one PUT share the budget: 1,000 of 2 values each
		// against the enum are 20 million checks.
		docs := make([]entityDoc, 1000)
		for i := range docs {
			docs[i] = entityDoc{key: fmt.Sprint(i), doc: json.RawMessage(`[-1]`)}
		}
		err := r.validateDocs(ctx, []string{"items.enum"}, docs)
		if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "the request's documents") {
			t.Errorf("validateDocs(items.enum, 1,000 documents) = %.200v, want 413 before validating", err)
		}
		if err := r.validateDocs(ctx, []string{"items.enum"}, docs[:10]); !errors.As(err, &ve) {
			t.Errorf("validateDocs(items.enum, 10 documents) = %.200v, want their violations", err)
		}
		wide := `{"p0":1,"p299":2,"v":[` + strings.Repeat("1.5,", 100000) + `1]}`
		if err := r.Validate(ctx, "wide.v1", []byte(wide)); err != nil {
			t.Errorf("Validate(300 properties, 100,000 numbers) = %.200v, want nil", err)
		}
	})
}
