package main

// Queries against the binary: -role=all (and again after a restart),
// main + 2 workers (and again after a third joins), and main + 2 workers
// on S3 give the same answers, which are the in-process data plane's,
// whose key sets TestFindEveryOperator checks against the reference
// evaluation.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// findMarker is an indexed value that must never reach storage in the
// clear.
const findMarker = "PLAINTEXT-INDEX-MARKER-5e1f"

// findScenarioDocs are selectorDocs and a document holding findMarker in
// an indexed field.
func findScenarioDocs() map[string]string {
	docs := map[string]string{"z99": `{"name":"` + findMarker + `","age":99}`}
	for k, d := range selectorDocs {
		docs[k] = d
	}
	return docs
}

// findScenarioIndexes are the indexes of the scenario (name: fields).
var findScenarioIndexes = map[string][]string{"by-age": {"age"}, "by-name": {"name"}, "by-user-id": {"user.id", "age"}}

// findScenarioQueries are every selector case, paged by two, and sorted
// and projected queries.
func findScenarioQueries() []string {
	var out []string
	for _, c := range selectorCases {
		out = append(out, fmt.Sprintf(`{"selector":%s,"limit":2}`, c.sel))
	}
	return append(out,
		`{"selector":{"age":{"$gt":0}},"sort":[{"age":"desc"}],"fields":["_id","age"],"limit":4}`,
		`{"selector":{"age":{"$exists":true}},"sort":["age"],"limit":50}`,
		`{"selector":{"user.id":"u1","age":{"$gte":0}},"fields":["name","user.id"]}`,
		`{"selector":{"name":"`+findMarker+`"}}`,
	)
}

// findCaller sends one request with the admin key.
type findCaller func(method, path string, body any) (int, []byte)

// runFindScenario writes the scenario's documents and indexes through
// call and returns its answers.
func runFindScenario(t *testing.T, call findCaller) []string {
	t.Helper()
	docs := map[string]json.RawMessage{}
	for k, d := range findScenarioDocs() {
		docs[k] = json.RawMessage(d)
	}
	if code, out := call("PUT", "/entity/qdb", docs); code != 200 {
		t.Fatalf("PUT = %d %s", code, out)
	}
	for name, fields := range findScenarioIndexes {
		body := map[string]any{"index": map[string]any{"fields": fields}, "name": name}
		if code, out := call("POST", "/api/databases/qdb/index", body); code != 200 || !strings.Contains(string(out), `"created"`) {
			t.Fatalf("POST index %s = %d %s", name, code, out)
		}
	}
	return findScenarioAnswers(t, call)
}

// findScenarioAnswers runs the scenario's queries, following bookmarks,
// and renders each answer as its pages' keys and documents.
func findScenarioAnswers(t *testing.T, call findCaller) []string {
	t.Helper()
	var out []string
	for _, q := range findScenarioQueries() {
		var b strings.Builder
		bookmark := ""
		for page := 0; page < 100; page++ {
			var req map[string]any
			json.Unmarshal([]byte(q), &req)
			if bookmark != "" {
				req["bookmark"] = bookmark
			}
			code, raw := call("POST", "/api/databases/qdb/find", req)
			var ans findAnswer
			if code != 200 || json.Unmarshal(raw, &ans) != nil {
				t.Fatalf("find %s = %d %s", q, code, raw)
			}
			docs, _ := json.Marshal(ans.Docs)
			fmt.Fprintf(&b, "%q %s | ", ans.Keys, docs)
			if !ans.More {
				break
			}
			bookmark = ans.Bookmark
		}
		out = append(out, q+" => "+b.String())
	}
	return out
}

// inProcessFindAnswers are the scenario's answers from the in-process
// data plane with one worker.
func inProcessFindAnswers(t *testing.T) []string {
	t.Helper()
	ts := newAuthTestServer(t, authConfig{})
	return runFindScenario(t, func(method, path string, body any) (int, []byte) {
		b, _ := json.Marshal(body)
		if body == nil {
			b = nil
		}
		rec := ts.do(method, path, testAdminKey, string(b), "")
		return rec.Code, rec.Body.Bytes()
	})
}

// nodeCaller calls n with the admin key.
func nodeCaller(n *node) findCaller {
	return func(method, path string, body any) (int, []byte) {
		code, out, _ := n.call(method, path, testAdminKey, body)
		return code, out
	}
}

// compareFindAnswers fails for each answer of got that differs from want.
func compareFindAnswers(t *testing.T, where string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d answers, want %d", where, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s:\n got  %s\n want %s", where, got[i], want[i])
		}
	}
}

// assertNoPlaintext fails if a file under dir holds findMarker.
func assertNoPlaintext(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(findMarker)) || strings.Contains(p, findMarker) {
				t.Errorf("%s holds the indexed value in the clear", p)
			}
		}
		return nil
	})
}

// TestFindBinary: the same queries through -role=all, the same after a
// restart (indexes rebuilt), through main + 2 workers and after a third
// worker joins (indexes rebuilt for the new owners): the same answers as
// the in-process data plane, and no indexed value on storage.
func TestFindBinary(t *testing.T) {
	needBinary(t)
	want := inProcessFindAnswers(t)
	n, dir := startDefault(t)
	compareFindAnswers(t, "-role=all", runFindScenario(t, nodeCaller(n)), want)
	n.stop()
	n = startNode(t, keyEnv, "-shared-fs="+dir)
	compareFindAnswers(t, "-role=all after a restart", findScenarioAnswers(t, nodeCaller(n)), want)
	n.stop()
	assertNoPlaintext(t, dir)

	c := startCluster(t, "w1", "w2")
	compareFindAnswers(t, "main + 2 workers", runFindScenario(t, nodeCaller(c.main)), want)
	c.startWorker("w3")
	c.waitWorkers(20*time.Second, "w1", "w2", "w3")
	compareFindAnswers(t, "main + 3 workers", findScenarioAnswers(t, nodeCaller(c.main)), want)
	assertNoPlaintext(t, c.dir)
}

// TestS3Find: the same queries through main + 2 workers on S3.
func TestS3Find(t *testing.T) {
	needBinary(t)
	cfg := s3TestConfig(t)
	bucket := testBucket(t, cfg)
	want := inProcessFindAnswers(t)
	c, dirs := startS3Cluster(t, s3NodeArgs(cfg, bucket.bucket), "w1", "w2")
	compareFindAnswers(t, "S3, main + 2 workers", runFindScenario(t, nodeCaller(c.main)), want)
	for _, k := range bucketKeys(t, bucket, "") {
		raw, err := bucket.Get(t.Context(), k)
		if err == nil && bytes.Contains(raw, []byte(findMarker)) {
			t.Errorf("object %s holds the indexed value in the clear", k)
		}
	}
	if !slices.Contains(bucketKeys(t, bucket, metaPrefix), indexesObjectKey("qdb")) {
		t.Errorf("the bucket has no %s", indexesObjectKey("qdb"))
	}
	assertNoPlaintext(t, dirs[0])
}

// TestReadmeFind runs README's find example after its quick start and
// checks it prints what README says.
func TestReadmeFind(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		needProgram(t, tool, "README's find example runs it")
	}
	env := quickStartEnv(t)
	n := startNode(t, env, "-shared-fs="+filepath.Join(t.TempDir(), "db"))
	quick := strings.Replace(readmeBlock(t, "quickstart"), "DDB=http://127.0.0.1:8080", "DDB="+n.base, 1)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", quick+"\n"+readmeBlock(t, "find"))
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quick start and find: %v\n%s", err, out)
	}
	if want := strings.TrimSpace(readmeBlock(t, "find-output")); !strings.HasSuffix(strings.TrimSpace(string(out)), "\n"+want) {
		t.Errorf("README's find example printed\n%s\nwant it to end with\n%s", out, want)
	}
}
