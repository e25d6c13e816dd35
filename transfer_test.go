package main

// Export and import against the binary (transfer.go): the round trip, the
// streamed export of a database larger than the server may hold, the
// batches of an import (all or nothing each, the line of every error),
// budgets, a bound schema, permissions, and the modified time the
// listings answer.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "deltadatabase/proto"
)

// exportedLine is one line of an export as a client reads it.
type exportedLine struct {
	Key      string          `json:"key"`
	ETag     string          `json:"etag"`
	Modified time.Time       `json:"modified"`
	Doc      json.RawMessage `json:"doc"`
}

// exportDB exports db with token and returns its lines and headers,
// failing t unless the answer is 200 NDJSON.
func exportDB(t *testing.T, n *node, db, token, query string) ([]exportedLine, http.Header) {
	t.Helper()
	code, out, hdr := n.call("GET", "/api/databases/"+db+"/export"+query, token, nil)
	if code != 200 || hdr.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export %s = %d %s %s, want 200 application/x-ndjson", db, code, hdr.Get("Content-Type"), out)
	}
	var lines []exportedLine
	for i, l := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var e exportedLine
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatalf("export %s line %d = %s: %v", db, i+1, l, err)
		}
		lines = append(lines, e)
	}
	return lines, hdr
}

// importReply is an import's answer as a client reads it.
type importReply struct {
	Imported int    `json:"imported"`
	Batches  int    `json:"batches"`
	Rejected int    `json:"rejected_batches"`
	Lines    int    `json:"lines"`
	Error    string `json:"error"`
	Errors   []struct {
		Line   int               `json:"line"`
		Key    string            `json:"key"`
		Error  string            `json:"error"`
		Errors []validationIssue `json:"errors"`
	} `json:"errors"`
	Omitted    int `json:"errors_omitted"`
	ResumeLine int `json:"resume_line"`
}

// importNDJSON posts body to db's import and decodes the report.
func importNDJSON(t *testing.T, n *node, db, token, query, body string) (int, importReply) {
	t.Helper()
	code, out, _ := n.call("POST", "/api/databases/"+db+"/import"+query, token, body)
	var rep importReply
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("import %s = %d %s: not a report: %v", db, code, out, err)
	}
	return code, rep
}

// entityExists says whether key of db answers 200 (true) or 404 (false).
func entityExists(t *testing.T, n *node, db, key string) bool {
	t.Helper()
	code, out, _ := n.call("GET", "/entity/"+db+"?key="+key, testAdminKey, nil)
	if code != 200 && code != 404 {
		t.Fatalf("GET %s/%s = %d %s", db, key, code, out)
	}
	return code == 200
}

// TestExportImportRoundTrip: an export lists every entity once in key
// order with its ETag, write time and document; importing it into
// another database and exporting that gives the same keys and documents.
func TestExportImportRoundTrip(t *testing.T) {
	n, _ := startDefault(t)
	before := time.Now().UTC()
	want := map[string]string{}
	for b := range 3 {
		body := map[string]json.RawMessage{}
		for i := range 80 {
			k := fmt.Sprintf("chat:%03d", b*80+i)
			doc := fmt.Sprintf(`{"title":"t%d","n":%d,"msgs":[{"role":"user","text":"héllo \u2028 %s"}],"nested":{"a":[1,2.5,null,true]}}`, i, i, k)
			body[k], want[k] = json.RawMessage(doc), doc
		}
		if code, out, _ := n.call("PUT", "/entity/src", testAdminKey, body); code != 200 {
			t.Fatalf("PUT = %d %s", code, out)
		}
	}
	after := time.Now().UTC()
	lines, hdr := exportDB(t, n, "src", testAdminKey, "")
	if hdr.Get("X-Entity-Count") != "240" {
		t.Errorf("X-Entity-Count = %q, want 240", hdr.Get("X-Entity-Count"))
	}
	if len(lines) != len(want) {
		t.Fatalf("export has %d lines, want %d", len(lines), len(want))
	}
	keys := make([]string, len(lines))
	for i, l := range lines {
		keys[i] = l.Key
		if !jsonEqual(l.Doc, []byte(want[l.Key])) {
			t.Errorf("line %d %s doc = %s, want %s", i+1, l.Key, l.Doc, want[l.Key])
		}
		if l.Modified.Before(before.Add(-time.Second)) || l.Modified.After(after.Add(time.Second)) {
			t.Errorf("line %d modified = %v, want between %v and %v", i+1, l.Modified, before, after)
		}
	}
	if !slices.IsSorted(keys) {
		t.Errorf("export keys not in key order: %q...", keys[:5])
	}
	_, _, gh := n.call("GET", "/entity/src?key="+lines[7].Key, testAdminKey, nil)
	if gh.Get("ETag") != lines[7].ETag {
		t.Errorf("export etag of %s = %q, GET ETag = %q", lines[7].Key, lines[7].ETag, gh.Get("ETag"))
	}
	// Prefix.
	if pl, ph := exportDB(t, n, "src", testAdminKey, "?prefix=chat:01"); len(pl) != 10 || ph.Get("X-Entity-Count") != "" {
		t.Errorf("export ?prefix=chat:01 = %d lines (X-Entity-Count %q), want 10 and none", len(pl), ph.Get("X-Entity-Count"))
	}

	// The export, as sent, imports into another database.
	_, raw, _ := n.call("GET", "/api/databases/src/export", testAdminKey, nil)
	code, out, _ := n.call("POST", "/api/databases/dst/import?batch=50", testAdminKey, raw)
	if want := `{"imported":240,"batches":5,"rejected_batches":0,"lines":240,"errors":[]}`; code != 200 || strings.TrimSpace(string(out)) != want {
		t.Fatalf("import = %d %s, want 200 %s", code, out, want)
	}
	again, _ := exportDB(t, n, "dst", testAdminKey, "")
	if len(again) != len(lines) {
		t.Fatalf("dst export has %d lines, want %d", len(again), len(lines))
	}
	for i := range again {
		if again[i].Key != lines[i].Key || !jsonEqual(again[i].Doc, lines[i].Doc) {
			t.Errorf("dst line %d = %s %s, want %s %s", i+1, again[i].Key, again[i].Doc, lines[i].Key, lines[i].Doc)
		}
	}
	// An empty database with no binding is 404, like GET /api/databases/{db}.
	if code, out, _ := n.call("GET", "/api/databases/nothing/export", testAdminKey, nil); code != 404 {
		t.Errorf("export of a missing database = %d %s, want 404", code, out)
	}
}

// TestImportBatches: a batch with a refused line is not written, the
// others are; each error names its line (and key); blank lines count as
// lines and are skipped.
func TestImportBatches(t *testing.T) {
	n, _ := startDefault(t)
	body := strings.Join([]string{
		`{"key":"k1","doc":{"v":1}}`,
		`{"key":"k2","doc":{"v":2}}`,
		`{"key":"k3","doc":{"v":3}}`,
		`{"key":"k4","doc":{"v":4}}`,
		`{"key":"k5","doc":{"v":5}`, // line 5: not JSON
		`{"key":"k6","doc":{"v":6}}`,
		``,
		`{"key":"k7","doc":{"v":7}}`,
		`{"key":"../k8","doc":{"v":8}}`, // line 9: a bad key
		`{"key":"k9","doc":{"v":9}}`,
		`{"key":"k10","doc":{"v":10}}`,
		`{"key":"k11","doc":{"v":11}, "extra": 1}`, // line 12: an unknown member
		`{"key":"k12","doc":{"v":12}}`,
		`{"key":"k13","doc":{"v":13}}`,
		`{"key":"k13","doc":{"v":14}}`, // line 15: the key again in the batch
		`{"key":"k14"}`,                // line 16: no doc
	}, "\n") + "\n"
	code, rep := importNDJSON(t, n, "imp", testAdminKey, "?batch=3", body)
	if code != 400 {
		t.Fatalf("import = %d %+v, want 400", code, rep)
	}
	var got []string
	for _, e := range rep.Errors {
		got = append(got, fmt.Sprintf("%d:%s", e.Line, e.Key))
	}
	if want := []string{"5:", "9:../k8", "12:", "15:k13", "16:"}; !slices.Equal(got, want) {
		t.Errorf("errors at %q, want %q (%+v)", got, want, rep.Errors)
	}
	// Batches (3 lines each, blank ones aside): k1-k3 written; k4, 5,
	// k6 refused; k7, 9, k9 refused; k10, 12, k12 refused; k13, 15, 16
	// refused.
	if rep.Imported != 3 || rep.Batches != 1 || rep.Rejected != 4 || rep.Lines != 16 || !strings.Contains(rep.Error, "line 5") {
		t.Errorf("report = %+v, want 3 imported, 1 batch, 4 rejected, 16 lines, error naming line 5", rep)
	}
	for i := 1; i <= 14; i++ {
		k := "k" + strconv.Itoa(i)
		if want := i <= 3; entityExists(t, n, "imp", k) != want {
			t.Errorf("%s exists = %v, want %v", k, !want, want)
		}
	}
	if code, rep := importNDJSON(t, n, "imp", testAdminKey, "?batch=0", "{}"); code != 400 || !strings.Contains(rep.Error, "batch") {
		t.Errorf("?batch=0 = %d %+v, want 400 naming batch", code, rep)
	}
}

// TestImportSchemaBound: a database bound to a schema refuses the lines
// its schema refuses, each with the violations, and nothing of their
// batch is written.
func TestImportSchemaBound(t *testing.T) {
	n, _ := startDefault(t)
	schema := `{"type":"object","required":["title"],"properties":{"title":{"type":"string"}}}`
	if code, out, _ := n.call("PUT", "/schema/titled", testAdminKey, schema); code != 200 {
		t.Fatalf("PUT schema = %d %s", code, out)
	}
	if code, out, _ := n.call("PUT", "/api/databases/notes", testAdminKey, `{"schema":"titled"}`); code != 200 {
		t.Fatalf("bind = %d %s", code, out)
	}
	body := `{"key":"a","doc":{"title":"A"}}
{"key":"b","doc":{"title":2}}
{"key":"c","doc":{"title":"C"}}
{"key":"d","doc":{"title":"D"}}
`
	code, rep := importNDJSON(t, n, "notes", testAdminKey, "?batch=2", body)
	if code != 400 || rep.Imported != 2 || len(rep.Errors) != 1 || rep.Errors[0].Line != 2 || rep.Errors[0].Key != "b" {
		t.Fatalf("import = %d %+v, want 400 with line 2 (b) refused and 2 imported", code, rep)
	}
	if e := rep.Errors[0]; !strings.Contains(e.Error, "titled") || len(e.Errors) == 0 || e.Errors[0].Path != "/title" {
		t.Errorf("line 2 error = %+v, want the schema named and a violation at /title", e)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true} {
		if entityExists(t, n, "notes", k) != want {
			t.Errorf("%s exists = %v, want %v", k, !want, want)
		}
	}
}

// TestImportBudgets: past the body, line or line-count budget the import
// stops with 413 naming the line; what was written before stays, the
// batch under way is not written; a document past -max-document-size is
// a refused line.
func TestImportBudgets(t *testing.T) {
	n, _ := startDefault(t, "-max-import-lines=5", "-max-import-bytes=200000", "-max-document-size=2000")
	line := func(k string) string { return `{"key":"` + k + `","doc":{"v":1}}` + "\n" }
	code, rep := importNDJSON(t, n, "b1", testAdminKey, "?batch=2", line("a")+line("b")+line("c")+line("d")+line("e")+line("f"))
	if code != 413 || rep.Imported != 4 || !strings.Contains(rep.Error, "line 6") || !strings.Contains(rep.Error, "-max-import-lines") || rep.ResumeLine != 5 {
		t.Errorf("6 lines over a limit of 5 = %d %+v, want 413 naming line 6, 4 imported, resume_line 5 (the batch under way)", code, rep)
	}
	checkImportReportDocumented(t, code)
	if entityExists(t, n, "b1", "e") || !entityExists(t, n, "b1", "d") {
		t.Errorf("after the line budget: e written or d not, want d and not e")
	}
	// A body over -max-import-bytes with its length known: nothing read.
	if code, out, _ := n.call("POST", "/api/databases/b2/import", testAdminKey, strings.Repeat(line("x"), 10000)); code != 413 || !strings.Contains(string(out), "-max-import-bytes") {
		t.Errorf("body over the budget = %d %s, want 413", code, out)
	}
	// A line over the document budget and 64 KiB: 413 naming the line.
	big := `{"key":"big","doc":"` + strings.Repeat("x", 70000) + `"}` + "\n"
	code, rep = importNDJSON(t, n, "b3", testAdminKey, "", line("a")+big)
	if code != 413 || !strings.Contains(rep.Error, "line 2") {
		t.Errorf("a line of 70 KB = %d %+v, want 413 naming line 2", code, rep)
	}
	// A document over -max-document-size is a refused line (its batch
	// not written).
	code, rep = importNDJSON(t, n, "b4", testAdminKey, "", line("a")+`{"key":"big","doc":"`+strings.Repeat("x", 3000)+`"}`+"\n")
	if code != 400 || len(rep.Errors) != 1 || rep.Errors[0].Line != 2 || !strings.Contains(rep.Errors[0].Error, "limit") || entityExists(t, n, "b4", "a") {
		t.Errorf("a document over the budget = %d %+v, want 400 refusing line 2, nothing written", code, rep)
	}
}

// TestTransferPermissions: export needs read, import write, each within a
// key's databases.
func TestTransferPermissions(t *testing.T) {
	n, _ := startDefault(t)
	for _, db := range []string{"mine", "theirs"} {
		if code, out, _ := n.call("PUT", "/entity/"+db, testAdminKey, `{"a":{"v":1}}`); code != 200 {
			t.Fatalf("PUT = %d %s", code, out)
		}
	}
	reader := createKeyHTTP(t, n, `{"name":"r","permissions":["read"]}`)
	writer := createKeyHTTP(t, n, `{"name":"w","permissions":["write"]}`)
	scoped := createKeyHTTP(t, n, `{"name":"s","permissions":["read","write"],"databases":["mine"]}`)
	const line = `{"key":"b","doc":{"v":2}}` + "\n"
	for _, c := range []struct {
		what, method, path, token string
		want                      int
	}{
		{"read-only import", "POST", "/api/databases/mine/import", reader.Secret, 403},
		{"read-only export", "GET", "/api/databases/mine/export", reader.Secret, 200},
		{"write-only export", "GET", "/api/databases/mine/export", writer.Secret, 403},
		{"write-only import", "POST", "/api/databases/mine/import", writer.Secret, 200},
		{"scoped export of another database", "GET", "/api/databases/theirs/export", scoped.Secret, 403},
		{"scoped import into another database", "POST", "/api/databases/theirs/import", scoped.Secret, 403},
		{"scoped export", "GET", "/api/databases/mine/export", scoped.Secret, 200},
		{"scoped import", "POST", "/api/databases/mine/import", scoped.Secret, 200},
		{"no credential", "GET", "/api/databases/mine/export", "", 401},
	} {
		code, out, _ := n.call(c.method, c.path, c.token, line)
		if code != c.want {
			t.Errorf("%s = %d %s, want %d", c.what, code, out, c.want)
		}
	}
	if entityExists(t, n, "theirs", "b") {
		t.Errorf("a refused import wrote theirs/b")
	}
}

// TestModifiedTime: the listing with documents, the get of many keys and
// the export answer each entity's write time, which a new write moves on,
// on both storage backends.
func TestModifiedTime(t *testing.T) {
	t.Run("fs", func(t *testing.T) {
		n, _ := startDefault(t)
		checkModifiedTime(t, n)
	})
	t.Run("s3", func(t *testing.T) {
		needBinary(t)
		cfg := s3TestConfig(t)
		bucket := testBucket(t, cfg)
		n := startNode(t, keyEnv, append(s3NodeArgs(cfg, bucket.bucket), "-shared-fs="+unusedDir(t))...)
		checkModifiedTime(t, n)
	})
}

// checkModifiedTime writes two entities of database m on n, one of them
// twice, and checks the write times n answers.
func checkModifiedTime(t *testing.T, n *node) {
	before := time.Now().UTC()
	n.call("PUT", "/entity/m", testAdminKey, `{"a":{"v":1},"b":{"v":1}}`)
	time.Sleep(20 * time.Millisecond)
	mid := time.Now().UTC()
	n.call("PUT", "/entity/m", testAdminKey, `{"b":{"v":2}}`)
	var page struct {
		Items []struct {
			Key      string    `json:"key"`
			Modified time.Time `json:"modified"`
		} `json:"items"`
	}
	_, out, _ := n.call("GET", "/api/databases/m/keys?include_docs=true", testAdminKey, nil)
	if err := json.Unmarshal(out, &page); err != nil || len(page.Items) != 2 {
		t.Fatalf("listing = %s (%v)", out, err)
	}
	a, b := page.Items[0].Modified, page.Items[1].Modified
	if a.Before(before.Add(-time.Second)) || a.After(mid) || !b.After(a) || b.Before(mid.Add(-time.Second)) {
		t.Errorf("modified a=%v b=%v, want a in [%v, %v] and b after a, after %v", a, b, before, mid, mid)
	}
	var many struct {
		Modified map[string]time.Time `json:"modified"`
	}
	_, out, _ = n.call("POST", "/api/databases/m/get", testAdminKey, `{"keys":["a","b","zz"]}`)
	if err := json.Unmarshal(out, &many); err != nil || !many.Modified["a"].Equal(a) || !many.Modified["b"].Equal(b) || len(many.Modified) != 2 {
		t.Errorf("get many modified = %s (%v), want a=%v b=%v", out, err, a, b)
	}
	if lines, _ := exportDB(t, n, "m", testAdminKey, ""); len(lines) != 2 || !lines[0].Modified.Equal(a) || !lines[1].Modified.Equal(b) {
		t.Errorf("export = %+v, want a at %v and b at %v", lines, a, b)
	}
}

// TestExportStreams: the export of a database several times larger than
// the server's cache is streamed: a client that reads it slowly sees the
// server's memory grow by far less than the database.
func TestExportStreams(t *testing.T) {
	n, _ := startDefault(t, "-entity-cache-bytes=1048576", "-rest-max-body-size=4194304")
	const docs, size = 240, 256 << 10
	pad := strings.Repeat("p", size)
	for b := 0; b < docs; b += 8 {
		body := map[string]json.RawMessage{}
		for i := b; i < b+8; i++ {
			body[fmt.Sprintf("big%04d", i)] = json.RawMessage(`{"i":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)
		}
		if code, out, _ := n.call("PUT", "/entity/large", testAdminKey, body); code != 200 {
			t.Fatalf("PUT = %d %s", code, out)
		}
	}
	base := rssOf(t, n.cmd.Process.Pid)
	req, _ := http.NewRequest("GET", n.base+"/api/databases/large/export", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReaderSize(resp.Body, 1<<20)
	peak, count := base, 0
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			count++
			if !bytes.Contains(line, []byte(`"i":`+strconv.Itoa(count-1)+`,`)) {
				t.Fatalf("line %d is not entity %d: %.80s", count, count-1, line)
			}
		}
		if err != nil {
			break
		}
		if count%20 == 0 {
			time.Sleep(50 * time.Millisecond) // a slow reader: the server must wait, not buffer
			peak = max(peak, rssOf(t, n.cmd.Process.Pid))
		}
	}
	if count != docs {
		t.Fatalf("export streamed %d lines, want %d", count, docs)
	}
	total := int64(docs * size)
	t.Logf("export of %d MiB: server RSS %d MiB before, peak %d MiB while streaming", total>>20, base>>20, peak>>20)
	if peak-base > total/3 {
		t.Errorf("server RSS grew by %d MiB while exporting %d MiB, want under a third: the export is held in memory", (peak-base)>>20, total>>20)
	}
}

// rssOf is the resident set size of process pid, bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestExportLeavesCache: an export reads what the cache lacks from
// storage without filling the cache, so a walk over a database larger
// than the cache evicts none of its hot entities.
func TestExportLeavesCache(t *testing.T) {
	n, _ := startDefault(t, "-entity-cache-size=5")
	body := map[string]json.RawMessage{}
	for i := range 40 {
		body[fmt.Sprintf("c%02d", i)] = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
	}
	if code, out, _ := n.call("PUT", "/entity/cold", testAdminKey, body); code != 200 {
		t.Fatalf("PUT = %d %s", code, out)
	}
	n.call("GET", "/entity/cold?key=c39", testAdminKey, nil) // hot
	cache := func() cacheStats {
		t.Helper()
		var ws []workerInfo
		_, out, _ := n.call("GET", "/admin/workers", testAdminKey, nil)
		if err := json.Unmarshal(out, &ws); err != nil || len(ws) != 1 {
			t.Fatalf("GET /admin/workers = %s (%v)", out, err)
		}
		return ws[0].Cache
	}
	before := cache()
	if lines, _ := exportDB(t, n, "cold", testAdminKey, ""); len(lines) != 40 {
		t.Fatalf("export has %d lines, want 40", len(lines))
	}
	after := cache()
	if after.Evictions != before.Evictions || after.Entries != before.Entries {
		t.Errorf("cache before the export %+v, after %+v: want no eviction and the same entries", before, after)
	}
	n.call("GET", "/entity/cold?key=c39", testAdminKey, nil)
	if hot := cache(); hot.Hits != after.Hits+1 {
		t.Errorf("the hot entity after the export: hits %d, want %d (still cached)", hot.Hits, after.Hits+1)
	}
}

// TestImportAudit: the audit line of an import names the keys its lines
// name, the first 1000 of them, and how many there were.
func TestImportAudit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, stop := startTestAudit(t, auditOptions{path: path, required: true})
	ts := newAuthTestServerOn(t, authConfig{}, newTestFSStore(t), func(o *restOptions) { o.audit = l })
	var small, big strings.Builder
	small.WriteString(`{"key":"a","doc":1}` + "\n" + `not json` + "\n" + `{"key":"b","doc":2}` + "\n")
	for i := range maxAuditKeys + 5 {
		fmt.Fprintf(&big, `{"key":"k%04d","doc":%d}`+"\n", i, i)
	}
	ts.mustDo(t, "POST", "/api/databases/aud/import", testAdminKey, small.String(), 400)
	ts.mustDo(t, "POST", "/api/databases/aud/import?batch=1000", testAdminKey, big.String(), 200)
	stop()
	var got []string
	for _, line := range auditLines(t, path) {
		if line["route"] != "POST /api/databases/{db}/import" {
			continue
		}
		keys, _ := line["keys"].([]any)
		first := any(nil)
		if len(keys) > 0 {
			first = keys[0]
		}
		got = append(got, fmt.Sprintf("%d keys, first %v, total %v", len(keys), first, line["keys_total"]))
	}
	want := []string{"2 keys, first a, total <nil>", fmt.Sprintf("%d keys, first k0000, total %d", maxAuditKeys, maxAuditKeys+5)}
	if !slices.Equal(got, want) {
		t.Errorf("audit lines of the imports: %q, want %q", got, want)
	}
}

// importGate passes every call to processor but the PUTs of the entity
// key: the first refuse of them fails with refuse; with hold, each
// waits for its context's end and fails with it (a worker that has not
// answered when the client hangs up).
type importGate struct {
	processor
	key    string
	refuse atomic.Int32
	hold   bool
	held   chan struct{}
}

func (g *importGate) Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if op.GetOperation() == pb.Operation_PUT && op.GetEntityKey() == g.key {
		if g.refuse.Add(-1) >= 0 {
			return nil, fmt.Errorf("entity %q of database %q waited %v for the handover of worker %q's log: %w",
				g.key, op.GetDatabaseName(), handoverWait, "w1", errHandingOver)
		}
		if g.hold {
			close(g.held)
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}
	return g.processor.Process(ctx, op)
}

// importLines are NDJSON lines {"key": "kI", "doc": {"v": I}} for I in
// from..to.
func importLines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, `{"key":"k%d","doc":{"v":%d}}`+"\n", i, i)
	}
	return b.String()
}

// TestImportRetrySoon: an import stopped by a write refused for now (its
// entity being handed over between workers, errHandingOver's retry-soon
// 503) answers 503 with Retry-After: 1 and the report: what was written
// (imported, batches) and resume_line, the first line of the batch under
// way; it is logged at WARN "import stopped", not at ERROR. Sending the
// lines from resume_line on again finishes the import: every entity is
// then there with its line's document. On the old code the answer had no
// Retry-After nor resume_line and the stop was logged at ERROR.
func TestImportRetrySoon(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	gate := &importGate{processor: fe.data.proc, key: "k5"}
	gate.refuse.Store(1)
	fe.data.proc = gate
	var logs syncBuffer
	var err error
	if fe.rest.log, err = newLogger(&logs, logFormatJSON, slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	post := func(body string) (*httptest.ResponseRecorder, importReply) {
		t.Helper()
		req := httptest.NewRequest("POST", "/api/databases/imp/import?batch=3", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		req.Header.Set("X-Request-ID", "imp-soon")
		rec := httptest.NewRecorder()
		fe.rest.ServeHTTP(rec, req)
		var rep importReply
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("import = %d %s: not a report: %v", rec.Code, rec.Body, err)
		}
		return rec, rep
	}
	// Batches of 3: k1-k3 written; k4-k6, whose k5 is refused for now
	// (k4 and k6 are written, as a batch's other writes run to their
	// end); k7 and k8 not read.
	rec, rep := post(importLines(1, 8))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("import stopped by a handover = %d, Retry-After %q; want 503, 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	checkImportReportDocumented(t, rec.Code)
	if rep.Imported != 5 || rep.Batches != 1 || rep.Lines != 6 || rep.ResumeLine != 4 ||
		!strings.HasPrefix(rep.Error, "this entity's worker left or another joined") || !strings.Contains(rep.Error, "imp-soon") {
		t.Errorf("report = %+v, want 5 imported, 1 batch, 6 lines, resume_line 4, the handover's sentence with the request ID", rep)
	}
	for i := 1; i <= 8; i++ {
		key := fmt.Sprintf("k%d", i)
		_, err := fe.data.process(t.Context(), principal{admin: true}, "", &pb.EntityOp{DatabaseName: "imp", EntityKey: key, Operation: pb.Operation_GET})
		if want := i <= 4 || i == 6; (err == nil) != want {
			t.Errorf("after the stop, %s: GET = %v, want written %v", key, err, want)
		}
	}
	lines := parseLog(t, logs.String(), logFormatJSON)
	if len(linesWith(lines, logLine{"msg": "import stopped", "level": "WARN", "request_id": "imp-soon", "status": "503"})) != 1 ||
		len(linesWith(lines, logLine{"level": "ERROR"})) != 0 {
		t.Errorf("log:\n%s\nwant one WARN \"import stopped\" with status 503, no ERROR", logs.String())
	}
	// The client sends the lines from resume_line on.
	if rec, rep = post(importLines(rep.ResumeLine, 8)); rec.Code != http.StatusOK || rep.Imported != 5 || rep.ResumeLine != 0 {
		t.Fatalf("import of the rest = %d %+v, want 200, 5 imported, no resume_line", rec.Code, rep)
	}
	for i := 1; i <= 8; i++ {
		key := fmt.Sprintf("k%d", i)
		resp, err := fe.data.process(t.Context(), principal{admin: true}, "", &pb.EntityOp{DatabaseName: "imp", EntityKey: key, Operation: pb.Operation_GET})
		if want := fmt.Sprintf(`{"v":%d}`, i); err != nil || string(resp.GetResult()) != want {
			t.Errorf("after the rest, %s = %v %s, want %s", key, err, resp.GetResult(), want)
		}
	}
}

// failingPut passes every call to processor but the PUT of key, which
// fails with err.
type failingPut struct {
	processor
	key string
	err error
}

func (f *failingPut) Process(ctx context.Context, op *pb.EntityOp) (*pb.WorkerResponse, error) {
	if op.GetOperation() == pb.Operation_PUT && op.GetEntityKey() == f.key {
		return nil, f.err
	}
	return f.processor.Process(ctx, op)
}

// TestImportInternalError: an import stopped by an internal failure of a
// write answers 500 with the report (what was written, resume_line, the
// fixed sentence naming the request ID), logged at ERROR, and
// openapi.json says so: its 500 of the import is the report or the Error
// object, as its 413 and 503 are (it listed the Error object alone, which
// a client generated from it could not read resume_line from).
func TestImportInternalError(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	fe.data.proc = &failingPut{processor: fe.data.proc, key: "k5", err: fmt.Errorf("put: decrypt: message authentication failed: %w", errCorrupt)}
	var logs syncBuffer
	var err error
	if fe.rest.log, err = newLogger(&logs, logFormatJSON, slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/api/databases/imp/import?batch=3", strings.NewReader(importLines(1, 8)))
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("X-Request-ID", "imp-500")
	rec := httptest.NewRecorder()
	fe.rest.ServeHTTP(rec, req)
	var rep importReply
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("import = %d %s: not a report: %v", rec.Code, rec.Body, err)
	}
	if rec.Code != 500 || rep.Imported != 5 || rep.Batches != 1 || rep.ResumeLine != 4 || rep.Error != "internal error (request ID imp-500)" {
		t.Errorf("import stopped by an internal error = %d %+v, want 500, 5 imported, 1 batch, resume_line 4, the internal error's sentence", rec.Code, rep)
	}
	if lines := parseLog(t, logs.String(), logFormatJSON); len(linesWith(lines, logLine{"msg": "import stopped", "level": "ERROR", "request_id": "imp-500", "status": "500"})) != 1 {
		t.Errorf("log:\n%s\nwant one ERROR \"import stopped\" with status 500", logs.String())
	}
	checkImportReportDocumented(t, rec.Code)
}

// checkImportReportDocumented fails t unless openapi.json's import answer
// of status code may be the import report.
func checkImportReportDocumented(t *testing.T, code int) {
	t.Helper()
	doc, ops := loadOpenAPI(t)
	resp, ok := ops["POST /api/databases/{db}/import"].Responses[strconv.Itoa(code)]
	if r, isRef := strings.CutPrefix(resp.Ref, "#/components/responses/"); isRef {
		resp = doc.Components.Responses[r]
	}
	schema := resp.Content["application/json"].Schema
	if !ok || schema.Ref != "#/components/schemas/ImportReport" && !slices.ContainsFunc(schema.OneOf, func(s struct {
		Ref string `json:"$ref"`
	}) bool {
		return s.Ref == "#/components/schemas/ImportReport"
	}) {
		t.Errorf("openapi.json: the import's %d answer is %+v, which is not the ImportReport the server sends", code, schema)
	}
}

// TestImportClientGone: an import whose client hangs up while a write is
// under way is counted and logged as 499 (client closed request), as any
// REST request whose client went away before its failed answer; on the
// old code it wrote no answer and was counted as a 200.
func TestImportClientGone(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	gate := &importGate{processor: fe.data.proc, key: "k2", hold: true, held: make(chan struct{})}
	fe.data.proc = gate
	srv := httptest.NewServer(fe.rest)
	defer srv.Close()
	ctx, hangUp := context.WithCancel(t.Context())
	defer hangUp()
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/api/databases/imp/import", strings.NewReader(importLines(1, 3)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	answered := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	waitClosed(t, gate.held, "the import's write of k2 did not start")
	hangUp()
	if err := <-answered; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client's import = %v, want its own cancellation", err)
	}
	const counted = `deltadb_http_requests_total{route="/api/databases/{db}/import",method="POST",status="499"} 1`
	waitScraped(t, fe.rest.reg, counted)
}
