package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// logLine is one parsed log line: every attribute as text (JSON numbers
// and booleans as fmt prints them).
type logLine map[string]string

// parseLog parses the complete lines of a log written in format (text
// or json). A line that is not a JSON object in json, or not key=value
// pairs in text, fails the test: operators' tools parse every line.
func parseLog(t testing.TB, log, format string) []logLine {
	t.Helper()
	var out []logLine
	complete := log[:strings.LastIndexByte(log, '\n')+1]
	for _, line := range strings.Split(strings.TrimSuffix(complete, "\n"), "\n") {
		if line == "" {
			continue
		}
		var l logLine
		var err error
		if format == logFormatJSON {
			l, err = parseJSONLine(line)
		} else {
			l, err = parseTextLine(line)
		}
		if err != nil {
			t.Fatalf("log line %q is not %s: %v", line, format, err)
		}
		out = append(out, l)
	}
	return out
}

// parseJSONLine parses one line of the json format: a flat JSON object.
func parseJSONLine(line string) (logLine, error) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(line), &obj); err != nil {
		return nil, err
	}
	l := logLine{}
	for k, v := range obj {
		l[k] = fmt.Sprint(v)
	}
	return l, nil
}

// parseTextLine parses one line of slog's text format: key=value pairs
// separated by spaces, a value quoted (Go syntax) when it needs to be.
func parseTextLine(line string) (logLine, error) {
	l := logLine{}
	for rest := line; rest != ""; rest = strings.TrimPrefix(rest, " ") {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return nil, fmt.Errorf("no key=value at %q", rest)
		}
		value := after
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return nil, fmt.Errorf("value of %s: %w", key, err)
			}
			value, _ = strconv.Unquote(q)
			rest = after[len(q):]
		} else {
			value, rest, _ = strings.Cut(after, " ")
			rest = " " + rest
			if rest == " " {
				rest = ""
			}
		}
		if _, dup := l[key]; dup {
			return nil, fmt.Errorf("key %s twice", key)
		}
		l[key] = value
	}
	return l, nil
}

// linesWith returns the lines whose attributes include every pair of want.
func linesWith(lines []logLine, want logLine) []logLine {
	var out []logLine
	for _, l := range lines {
		match := true
		for k, v := range want {
			if got, ok := l[k]; !ok || got != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, l)
		}
	}
	return out
}

// TestParseTextLine: the test's parser of the text format reads what
// slog writes, quoting included, and refuses what is not key=value.
func TestParseTextLine(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("a b", "k", "v", "q", `x "y" z`, "n", 3, "e", "")
	got, err := parseTextLine(strings.TrimSuffix(b.String(), "\n"))
	if err != nil || got["msg"] != "a b" || got["k"] != "v" || got["q"] != `x "y" z` || got["n"] != "3" || got["e"] != "" || got["level"] != "INFO" {
		t.Errorf("parseTextLine(%q) = %v, %v", b.String(), got, err)
	}
	for _, bad := range []string{"no pairs", `k="open`, "k=v k=w"} {
		if _, err := parseTextLine(bad); err == nil {
			t.Errorf("parseTextLine(%q) = nil error, want one", bad)
		}
	}
}

// TestRequestIDHandler: a record logged with a request's context carries
// its request ID, also through loggers derived with With and WithGroup;
// one logged without carries none.
func TestRequestIDHandler(t *testing.T) {
	var b strings.Builder
	log, err := newLogger(&b, logFormatJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	ctx := withRequestID(context.Background(), "rid-1")
	log.InfoContext(ctx, "one")
	log.With("k", "v").InfoContext(ctx, "two")
	log.WithGroup("g").InfoContext(ctx, "three", "x", 1)
	log.Info("four")
	lines := parseLog(t, b.String(), logFormatJSON)
	if len(lines) != 4 {
		t.Fatalf("logged %d lines, want 4:\n%s", len(lines), b.String())
	}
	for i, l := range lines[:2] {
		if l["request_id"] != "rid-1" {
			t.Errorf("line %d = %v, want request_id rid-1", i+1, l)
		}
	}
	if !strings.Contains(b.String(), `"request_id":"rid-1"`) || strings.Count(b.String(), "rid-1") != 3 {
		t.Errorf("log = %s, want rid-1 on the three lines logged with the request's context", b.String())
	}
	if _, ok := lines[3]["request_id"]; ok {
		t.Errorf("line logged without a context = %v, want no request_id", lines[3])
	}
	if _, err := newLogger(&b, "xml", slog.LevelInfo); err == nil || !strings.Contains(err.Error(), "-log-format") {
		t.Errorf("newLogger(xml) = %v, want an error naming -log-format", err)
	}
}

// TestAccessLine: one access line per REST request, in both formats, with
// method, route pattern, status, response bytes, duration, client ID,
// client address and request ID, and nothing of the path's names, the
// query, the body or the credential.
func TestAccessLine(t *testing.T) {
	for _, format := range []string{logFormatText, logFormatJSON} {
		t.Run(format, func(t *testing.T) {
			var b syncBuffer
			s := newLocalREST(t)
			var err error
			if s.log, err = newLogger(&b, format, slog.LevelInfo); err != nil {
				t.Fatal(err)
			}
			const doc = `{"secret-doc":"DOC-MARKER-31"}`
			send := func(method, target, token, body, id string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, target, strings.NewReader(body))
				req.RemoteAddr = "192.0.2.7:4242"
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				if id != "" {
					req.Header.Set("X-Request-ID", id)
				}
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				return rec
			}
			send("PUT", "/entity/accessdb", testAdminKey, `{"key-name-77":`+doc+`}`, "put-1")
			get := send("GET", "/entity/accessdb?key=key-name-77", testAdminKey, "", "get-1")
			send("GET", "/entity/accessdb?key=key-name-77", "wrong-credential-55", "", "")
			send("DELETE", "/no/such/route", "", "", "bad id!")
			lines := linesWith(parseLog(t, b.String(), format), logLine{"msg": "request"})
			if len(lines) != 4 {
				t.Fatalf("%d access lines for 4 requests:\n%s", len(lines), b.String())
			}
			want := []logLine{
				{"level": "INFO", "method": "PUT", "route": "PUT /entity/{db}", "status": "200", "bytes": "16", "client": "admin", "addr": "192.0.2.7:4242", "request_id": "put-1"},
				{"method": "GET", "route": "GET /entity/{db}", "status": "200", "bytes": strconv.Itoa(get.Body.Len()), "client": "admin", "request_id": "get-1"},
				{"method": "GET", "route": "GET /entity/{db}", "status": "401", "client": ""},
				{"method": "DELETE", "route": "", "status": "404", "client": ""},
			}
			for i, w := range want {
				for k, v := range w {
					if lines[i][k] != v {
						t.Errorf("access line %d: %s = %q, want %q (%v)", i+1, k, lines[i][k], v, lines[i])
					}
				}
				if d, err := strconv.ParseFloat(lines[i]["duration_ms"], 64); err != nil || d < 0 {
					t.Errorf("access line %d: duration_ms = %q, want milliseconds", i+1, lines[i]["duration_ms"])
				}
				if id := lines[i]["request_id"]; !saneRequestID(id) || id == "bad id!" {
					t.Errorf("access line %d: request_id = %q, want a sane ID", i+1, id)
				}
			}
			if len(linesWith(lines, logLine{"request_id": lines[2]["request_id"]})) != 1 {
				t.Errorf("generated request ID %q is not unique to its request", lines[2]["request_id"])
			}
			for _, secret := range []string{testAdminKey, "wrong-credential-55", "DOC-MARKER-31", "key-name-77", "accessdb", "/no/such/route"} {
				if strings.Contains(b.String(), secret) {
					t.Errorf("the log holds %q:\n%s", secret, b.String())
				}
			}
			// The refusal logged before the access line names the same ID.
			refused := linesWith(parseLog(t, b.String(), format), logLine{"msg": "request refused"})
			if len(refused) != 1 || refused[0]["request_id"] != lines[2]["request_id"] {
				t.Errorf("request refused lines = %v, want one with request_id %q", refused, lines[2]["request_id"])
			}
		})
	}
}

// TestClientProcessRequestID: a client's gRPC Process call gets a request
// ID, its sane x-request-id metadata or a generated one, answered in the
// header metadata and carried by the main worker's log lines for the call.
func TestClientProcessRequestID(t *testing.T) {
	var b syncBuffer
	log, err := newLogger(&b, logFormatJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	auth, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: st, clientTTL: time.Hour, now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	m := serveTestMainLog(t, 1<<20, st, auth, log)
	client := pb.NewMainWorkerClient(dial(t, m.addr))
	ids := map[string]bool{}
	for _, c := range []struct{ sent, want string }{{"grpc-trace-1", "grpc-trace-1"}, {"bad id!", ""}, {"", ""}} {
		ctx := context.Background()
		if c.sent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", c.sent)
		}
		var hdr metadata.MD
		_, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "missing", Operation: "GET", Token: testAdminKey}, grpc.Header(&hdr))
		if status.Code(err) != codes.NotFound {
			t.Fatalf("GET of a missing entity = %v, want NotFound", err)
		}
		got := strings.Join(hdr.Get("x-request-id"), ",")
		if c.want != "" && got != c.want || c.want == "" && (!saneRequestID(got) || got == c.sent || ids[got]) {
			t.Errorf("x-request-id %q: answered %q, want %q (or a new sane ID)", c.sent, got, c.want)
		}
		ids[got] = true
		logged := func(log string) bool {
			return len(linesWith(parseLog(t, log, logFormatJSON), logLine{"msg": "grpc process refused", "request_id": got})) == 1
		}
		if !logged(b.String()) {
			t.Errorf("x-request-id %q: no 'grpc process refused' line with request_id %q:\n%s", c.sent, got, b.String())
		}
	}
}

// tracedCall sends one REST request with X-Request-ID id (none if ""),
// bearer token (none if "") and the headers of hdr ("Name: value"), and
// returns the status, body and the answer's X-Request-ID.
func tracedCall(t *testing.T, method, u, id, token, body string, hdr ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if id != "" {
		req.Header.Set("X-Request-ID", id)
	}
	for _, h := range hdr {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out strings.Builder
	if _, err := io.Copy(&out, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out.String(), resp.Header.Get("X-Request-ID")
}

// tamperEntities flips the last byte (the GCM tag's) of every stored
// entity of database db of cluster c, so that reading any of them fails
// decryption. A listing of the databases first makes the workers' logs
// write every acknowledged entity file (the catalog flushes them before
// it scans storage): until then a worker serves its logged records, and
// its applier would write them over the tampered files.
func tamperEntities(t *testing.T, c *cluster, db string) {
	t.Helper()
	if code, body, _ := httpCall(t, "GET", c.main.base+"/api/databases", testAdminKey, nil); code != 200 {
		t.Fatalf("list databases before tampering = %d %s", code, body)
	}
	n := 0
	err := filepath.WalkDir(filepath.Join(c.dir, "files", db), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b[len(b)-1] ^= 0xff
		n++
		return os.WriteFile(p, b, 0o600)
	})
	if err != nil || n == 0 {
		t.Fatalf("tamper entities of %s: %d files, %v", db, n, err)
	}
}

// waitLogLines waits until n's log, in format, has a line with every
// pair of want, and returns those lines (none after 5 s).
func waitLogLines(t *testing.T, n *node, format string, want logLine) []logLine {
	t.Helper()
	var found []logLine
	n.logOnceTrue(func(log string) bool {
		found = linesWith(parseLog(t, log, format), want)
		return len(found) > 0
	})
	return found
}

// TestRequestIDReachesWorker: in a main worker (text log) and a
// processing worker (json log, debug) the ID of a REST request, its own
// X-Request-ID or one generated for an insane one, is on the main
// worker's access line and on the worker's lines for that request; a
// failure at the worker is logged under that ID on both sides, and the
// client's 500 names it.
func TestRequestIDReachesWorker(t *testing.T) {
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	c.startMain()
	// A cache of one entity: the write of b evicts a, so a GET of a reads
	// storage.
	w := c.startWorker("w1", "-log-level=debug", "-log-format=json", "-cache-size=1")
	c.waitWorkers(20*time.Second, "w1")
	u := c.main.base + "/entity/tracedb"
	type call struct{ method, target, sent, body string }
	var ids []string
	for _, cl := range []call{
		{"PUT", u, "trace-put-a", `{"a":{"n":1}}`},
		{"PUT", u, "trace-put-b", `{"b":{"n":2}}`},
		{"GET", u + "?key=b", "trace-get-b", ""},
		{"GET", u + "?key=b", "bad id!", ""},
	} {
		code, out, id := tracedCall(t, cl.method, cl.target, cl.sent, testAdminKey, cl.body)
		if code != 200 {
			t.Fatalf("%s %s = %d %s", cl.method, cl.target, code, out)
		}
		if cl.sent == "bad id!" && (id == cl.sent || !saneRequestID(id)) || cl.sent != "bad id!" && id != cl.sent {
			t.Errorf("X-Request-ID %q: answered %q, want it kept if sane, else replaced by a sane one", cl.sent, id)
		}
		ids = append(ids, id)
	}
	routes := []string{"PUT /entity/{db}", "PUT /entity/{db}", "GET /entity/{db}", "GET /entity/{db}"}
	ops := []string{"PUT", "PUT", "GET", "GET"}
	for i, id := range ids {
		if got := waitLogLines(t, c.main, logFormatText, logLine{"msg": "request", "request_id": id}); len(got) != 1 ||
			got[0]["route"] != routes[i] || got[0]["status"] != "200" || got[0]["client"] != "admin" {
			t.Errorf("main worker's access lines with request_id %s = %v, want one %s 200 by admin", id, got, routes[i])
		}
		if got := waitLogLines(t, w, logFormatJSON, logLine{"msg": "worker request", "request_id": id}); len(got) != 1 ||
			got[0]["op"] != ops[i] || got[0]["code"] != "OK" || got[0]["worker_id"] != "w1" {
			t.Errorf("worker's lines with request_id %s = %v, want one %s OK", id, got, ops[i])
		}
	}

	tamperEntities(t, c, "tracedb")
	code, out, _ := tracedCall(t, "GET", u+"?key=a", "trace-corrupt-a", testAdminKey, "")
	if code != 500 || !strings.Contains(out, "trace-corrupt-a") {
		t.Errorf("GET of a tampered entity = %d %s, want 500 naming request ID trace-corrupt-a", code, out)
	}
	if got := waitLogLines(t, c.main, logFormatText, logLine{"msg": "request failed", "request_id": "trace-corrupt-a"}); len(got) != 1 || got[0]["level"] != "ERROR" {
		t.Errorf("main worker's 'request failed' lines for trace-corrupt-a = %v, want one at ERROR", got)
	}
	if got := waitLogLines(t, c.main, logFormatText, logLine{"msg": "request", "request_id": "trace-corrupt-a"}); len(got) != 1 || got[0]["status"] != "500" {
		t.Errorf("main worker's access lines for trace-corrupt-a = %v, want one with status 500", got)
	}
	if got := waitLogLines(t, w, logFormatJSON, logLine{"msg": "process failed", "request_id": "trace-corrupt-a"}); len(got) != 1 || !strings.Contains(got[0]["err"], "authentication failed") {
		t.Errorf("worker's 'process failed' lines for trace-corrupt-a = %v, want one naming the cause", got)
	}
	if got := waitLogLines(t, w, logFormatJSON, logLine{"msg": "worker request", "request_id": "trace-corrupt-a"}); len(got) != 1 || got[0]["code"] != "DataLoss" {
		t.Errorf("worker's lines for trace-corrupt-a = %v, want one with code DataLoss", got)
	}
}

// TestLogsHoldNoSecrets runs a main worker (json log) and a processing worker
// (text log), both at debug, through every kind of request, over REST and
// gRPC, that handles a secret or a document: schemas, API keys, sessions,
// entity writes, reads, patches, refused credentials, invalid bodies, a
// failure at the worker. Neither process's output may hold any secret or
// document it saw (ARCHITECTURE.md "Trust boundaries": logs); every line of
// each log parses in its format, and every request of the test left exactly
// one access line.
func TestLogsHoldNoSecrets(t *testing.T) {
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "db"), workers: map[string]*node{}}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	c.main = startNode(t, clusterEnv, "-role=main", "-shared-fs="+c.dir, "-log-format=json", "-log-level=debug", "-audit-log="+auditPath)
	c.clusterAddr = c.main.logAddr("cluster listening")
	w := c.startWorker("w1", "-log-level=debug", "-cache-size=1")
	c.waitWorkers(20*time.Second, "w1")

	secrets := map[string]string{"master key": testMasterKey, "admin key": testAdminKey, "join token": testJoinToken}
	rawMaster, _ := hex.DecodeString(testMasterKey)
	secrets["master key (base64)"] = base64.StdEncoding.EncodeToString(rawMaster)
	var sent []string // the X-Request-IDs of the test's requests
	do := func(want int, method, path, token, body string, hdr ...string) string {
		t.Helper()
		id := fmt.Sprintf("scan-%d", len(sent)+1)
		sent = append(sent, id)
		code, out, _ := tracedCall(t, method, c.main.base+path, id, token, body, hdr...)
		if code != want && !(want == 200 && code == 201) {
			t.Fatalf("%s %s = %d %s, want %d", method, path, code, out, want)
		}
		return out
	}
	doc := func(name string) string {
		secrets[name] = "DOC-MARKER-" + name
		return `{"n":1,"note":"DOC-MARKER-` + name + `"}`
	}

	secrets["schema"] = "SCHEMA-MARKER-9d2e"
	schema := `{"type":"object","description":"SCHEMA-MARKER-9d2e","properties":{"n":{"type":"integer"}}}`
	do(200, "PUT", "/schema/scan.v1", testAdminKey, schema)
	do(200, "GET", "/schema/scan.v1", "", "")
	var key struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(do(200, "POST", "/api/keys", testAdminKey, `{"name":"logscan","permissions":["read","write"]}`)), &key); err != nil || key.Secret == "" {
		t.Fatalf("POST /api/keys: %v %+v", err, key)
	}
	secrets["API key secret"] = key.Secret
	var session struct{ Token string }
	if err := json.Unmarshal([]byte(do(200, "POST", "/api/login", "", `{"key":"`+key.Secret+`"}`)), &session); err != nil || session.Token == "" {
		t.Fatalf("POST /api/login: %v %+v", err, session)
	}
	secrets["session token"] = session.Token
	do(200, "GET", "/api/me", session.Token, "")
	do(200, "PUT", "/entity/scandb?schema=scan.v1", key.Secret, `{"d1":`+doc("put")+`,"d2":`+doc("put-second")+`}`)
	do(200, "GET", "/entity/scandb?key=d1", session.Token, "")
	do(200, "PATCH", "/entity/scandb?key=d1", session.Token, `{"note":"DOC-MARKER-patch"}`, "Content-Type: "+mergePatchType)
	secrets["patch"] = "DOC-MARKER-patch"
	do(400, "PUT", "/entity/scandb?schema=scan.v1", key.Secret, `{"d3":{"n":"DOC-MARKER-invalid"}}`)
	secrets["invalid document"] = "DOC-MARKER-invalid"
	do(400, "PUT", "/entity/scandb", key.Secret, `{"d4": DOC-MARKER-badjson}`)
	secrets["bad JSON"] = "DOC-MARKER-badjson"
	wrongKey := "dk_" + strings.Repeat("5a", 32)
	secrets["wrong API key"] = wrongKey
	do(401, "GET", "/entity/scandb?key=d1", wrongKey, "")
	do(401, "POST", "/api/login", "", `{"key":"`+wrongKey+`"}`)
	secrets["wrong session token"] = session.Token + "x"
	do(401, "GET", "/entity/scandb?key=d1", session.Token+"x", "")

	// A gRPC client writes and reads with the API key.
	client := pb.NewMainWorkerClient(dial(t, c.main.logAddr("grpc listening")))
	gctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "scan-grpc")
	first, err := client.Process(gctx, &pb.ProcessRequest{DatabaseName: "scandb", EntityKey: "g1", Operation: "PUT",
		Payload: []byte(doc("grpc")), Token: key.Secret})
	if err != nil {
		t.Fatalf("gRPC PUT: %v", err)
	}
	// Written again, under an ID of its own: its audit line names the
	// version it replaced.
	g2ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "scan-grpc-2")
	second, err := client.Process(g2ctx, &pb.ProcessRequest{DatabaseName: "scandb", EntityKey: "g1", Operation: "PUT",
		Payload: []byte(doc("grpc-2")), Token: key.Secret})
	if err != nil {
		t.Fatalf("gRPC PUT again: %v", err)
	}
	if _, err := client.Process(gctx, &pb.ProcessRequest{DatabaseName: "scandb", EntityKey: "g1", Operation: "GET", Token: wrongKey}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC GET with a wrong key = %v, want Unauthenticated", err)
	}

	// A failure at the worker (a tampered entity, not in its cache of
	// one) is logged with its cause on both sides.
	tamperEntities(t, c, "scandb")
	do(500, "GET", "/entity/scandb?key=d2", key.Secret, "")
	do(200, "POST", "/api/logout", session.Token, "")
	do(200, "DELETE", "/api/keys/"+key.ID, testAdminKey, "")
	do(401, "GET", "/entity/scandb?key=d1", key.Secret, "")
	c.main.stop()
	w.stop()

	logs := map[string]struct {
		n      *node
		format string
	}{"main worker": {c.main, logFormatJSON}, "processing worker": {w, logFormatText}}
	for name, l := range logs {
		out := l.n.stderr.String() + l.n.stdout.String()
		for what, secret := range secrets {
			if strings.Contains(out, secret) {
				t.Errorf("the %s's output holds the %s %q", name, what, secret)
			}
		}
		if !strings.HasSuffix(l.n.stderr.String(), "\n") {
			t.Errorf("the %s's log does not end with a complete line", name)
		}
		parseLog(t, l.n.stderr.String(), l.format)
	}
	lines := parseLog(t, c.main.stderr.String(), logFormatJSON)
	for _, id := range sent {
		if got := linesWith(lines, logLine{"msg": "request", "request_id": id}); len(got) != 1 {
			t.Errorf("access lines with request_id %s: %d, want 1", id, len(got))
		}
	}
	checkAuditHoldsNoSecrets(t, auditPath, secrets, sent)
	checkAuditGRPC(t, auditPath, "scan-grpc")
	for _, line := range auditLines(t, auditPath) {
		if line["request_id"] == "scan-grpc-2" && (line["etag_before"] != first.GetVersion() || line["etag_after"] != second.GetVersion()) {
			t.Errorf("audit line of the second gRPC PUT = %v, want etag_before %s, etag_after %s", line, first.GetVersion(), second.GetVersion())
		}
	}
	if got := linesWith(lines, logLine{"msg": "grpc process refused", "request_id": "scan-grpc"}); len(got) != 1 {
		t.Errorf("'grpc process refused' lines with request_id scan-grpc: %d, want 1", len(got))
	}
	if got := linesWith(parseLog(t, w.stderr.String(), logFormatText), logLine{"msg": "worker request", "request_id": "scan-grpc"}); len(got) != 1 {
		t.Errorf("worker's lines with request_id scan-grpc: %d, want 1 (the gRPC PUT)", len(got))
	}
}

// TestAccessLineAsSlog: the access line newLogger's loggers write
// themselves is, byte for byte, the line slog's handler of the same format
// writes for the same record and time, also for values that slog quotes
// or escapes (spaces, '=', quotes, control characters, invalid UTF-8,
// U+2028, non-printing runes) and for times in other zones and on whole
// seconds.
func TestAccessLineAsSlog(t *testing.T) {
	odd := []string{"", "GET", "a b", "a=b", `q"uote`, `back\slash`, "tab\there", "nl\nx", "\x00\x1f\x7f", "\xff\xfe",
		"line\u2028sep\u2029", "é中文", "zero\u200bwidth", "nbsp\u00a0", "GET /entity/{db}", "<html>&amp;"}
	east := time.FixedZone("east", 5*3600+30*60)
	times := []time.Time{time.Date(2026, 12, 5, 23, 59, 30, 123456789, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 100000000, east), time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.Local), time.Now()}
	durations := []time.Duration{0, time.Microsecond, 123456 * time.Microsecond, 20 * time.Minute, 1e6 * time.Hour}
	for _, format := range []string{logFormatText, logFormatJSON} {
		var want, got bytes.Buffer
		ref := slog.Handler(slog.NewTextHandler(&want, nil))
		if format == logFormatJSON {
			ref = slog.NewJSONHandler(&want, nil)
		}
		a := &accessLines{w: &got, json: format == logFormatJSON, on: true}
		for i, s := range odd {
			rec := requestRecord{Method: s, Route: odd[(i+1)%len(odd)], Status: 200 + i, Bytes: int64(i * 1000),
				Duration: durations[i%len(durations)], Principal: odd[(i+2)%len(odd)], RequestID: odd[(i+3)%len(odd)], Client: s + ":1"}
			now := times[i%len(times)]
			want.Reset()
			got.Reset()
			r := slog.NewRecord(now, slog.LevelInfo, msgAccess, 0)
			r.AddAttrs(slog.String(attrMethod, rec.Method), slog.String(attrRoute, rec.Route), slog.Int(attrStatus, rec.Status),
				slog.Int64(attrBytes, rec.Bytes), slog.Float64(attrDurationMS, durationMS(rec.Duration)),
				slog.String(attrClient, rec.Principal), slog.String(attrAddr, rec.Client), slog.String(attrRequestID, rec.RequestID))
			if err := ref.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			a.write(rec, now)
			if got.String() != want.String() {
				t.Errorf("%s access line of %+v at %v:\n got %q\nwant %q", format, rec, now, got.String(), want.String())
			}
		}
	}
}

// TestLogTimeFormats: the access line's clock reads as time.Format would
// write it, across seconds, zones and fractions (the date of a second is
// cached).
func TestLogTimeFormats(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("w", -7*3600), time.FixedZone("e", 45*60)}
	base := time.Date(2026, 12, 5, 23, 59, 58, 0, time.UTC)
	for i := range 2000 {
		tm := base.Add(time.Duration(rng.Int64N(int64(5 * time.Second)))).In(zones[i%len(zones)])
		if i%7 == 0 {
			tm = tm.Truncate(time.Second)
		}
		if got, want := string(appendLogTime(nil, tm, false)), tm.Format("2006-01-02T15:04:05.000Z07:00"); got != want {
			t.Fatalf("text time of %v = %q, want %q", tm, got, want)
		}
		if got, want := string(appendLogTime(nil, tm, true)), tm.Format(time.RFC3339Nano); got != want {
			t.Fatalf("json time of %v = %q, want %q", tm, got, want)
		}
	}
}

// TestAppendDurationMS: the access line's duration reads as strconv
// writes the float64 milliseconds, in both formats, across the range
// written without it and past it.
func TestAppendDurationMS(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ds := []time.Duration{0, time.Microsecond, 999 * time.Microsecond, time.Millisecond, 1001 * time.Microsecond,
		123456 * time.Microsecond, 999999999 * time.Microsecond, 1e9 * time.Microsecond, 20 * time.Minute, 1e6 * time.Hour,
		-time.Millisecond, 1500 * time.Nanosecond}
	for range 20000 {
		ds = append(ds, time.Duration(rng.Int64N(int64(2e9)))*time.Microsecond/time.Duration(1+rng.IntN(1000)))
	}
	for _, d := range ds {
		for _, f := range []byte{'g', 'f'} {
			if got, want := string(appendDurationMS(nil, d, f)), strconv.FormatFloat(durationMS(d), f, -1, 64); got != want {
				t.Fatalf("duration %v in format %c = %q, strconv writes %q", d, f, got, want)
			}
		}
	}
}
