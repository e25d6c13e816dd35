package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// testAuditKeys are the audit keys of testMasterKey.
func testAuditKeys(t testing.TB) auditKeys {
	t.Helper()
	master, err := hex.DecodeString(testMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := deriveAuditKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startTestAudit opens the audit log of o under the test keys and runs its
// writer as a main node does; stop (also run when the test ends) cancels
// the writer, waits for it and closes the log.
func startTestAudit(t testing.TB, o auditOptions) (l *auditLog, stop func()) {
	t.Helper()
	o.keys = testAuditKeys(t)
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	l, err := openAuditLog(o)
	if err != nil {
		t.Fatalf("openAuditLog() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := l.close(); err != nil {
				t.Errorf("close audit log: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return l, stop
}

// auditLines parses every line of the audit file at path.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s line %d is not JSON: %v: %s", path, i+1, err, line)
		}
		out = append(out, m)
	}
	return out
}

// verifyAudit runs the verifier of -role=audit-verify on files with the
// test master key.
func verifyAudit(t *testing.T, files ...string) (*auditVerifier, error) {
	t.Helper()
	v := &auditVerifier{keys: [][]byte{testAuditKeys(t).chain}}
	return v, v.verify(files)
}

// TestAuditRouteTable walks the route table with every credential kind
// through a REST server with an audit log (-audit-required): every request
// leaves exactly one line with its request ID, route pattern, method and
// status, the principal when it authenticated and none when refused with
// 401, the database and entity key it named; no credential of the test is
// anywhere in the file, and the chain verifies.
func TestAuditRouteTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, stop := startTestAudit(t, auditOptions{path: path, required: true})
	ts := newAuthTestServerOn(t, authConfig{maxFailures: 1 << 30}, newTestFSStore(t), func(o *restOptions) { o.audit = l })
	creds := ts.credentials(t)
	ts.mustDo(t, "PUT", "/schema/t.v1", testAdminKey, `{"type":"object"}`, 200)
	type sent struct {
		rc   routeCase
		kind credKind
		code int
		id   string
	}
	var all []sent
	for _, rc := range routeTable() {
		for kind := range numCredKinds {
			if rc.before != nil {
				rc.before(t, ts)
			}
			body := strings.ReplaceAll(rc.body, "{read}", creds[credRead])
			rec := ts.doWith(rc.method, rc.path, creds[kind], body, rc.contentType)
			all = append(all, sent{rc, kind, rec.Code, rec.Header().Get("X-Request-ID")})
		}
	}
	stop()

	byID := map[string][]map[string]any{}
	for _, line := range auditLines(t, path) {
		if id, ok := line["request_id"].(string); ok {
			byID[id] = append(byID[id], line)
		}
	}
	for _, s := range all {
		what := fmt.Sprintf("%s %s (%s)", s.rc.method, s.rc.path, credNames[s.kind])
		lines := byID[s.id]
		if len(lines) != 1 {
			t.Errorf("%s: %d audit lines with request ID %q, want 1", what, len(lines), s.id)
			continue
		}
		checkAuditLine(t, what, lines[0], s.rc, s.code)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for kind, c := range creds {
		if c != "" && bytes.Contains(raw, []byte(c)) {
			t.Errorf("the audit log holds the %s credential %q", credNames[kind], c)
		}
	}
	if _, err := verifyAudit(t, path); err != nil {
		t.Errorf("verify: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// checkAuditLine checks one request's line against the request and its
// answer.
func checkAuditLine(t *testing.T, what string, line map[string]any, rc routeCase, code int) {
	t.Helper()
	if line["route"] != rc.pattern || line["method"] != rc.method || line["status"] != float64(code) || line["type"] != "request" {
		t.Errorf("%s answered %d: audit line %v, want route %q, method and status", what, code, line, rc.pattern)
	}
	p, hasPrincipal := line["principal"].(map[string]any)
	needsCred := rc.want[credNone] == 401
	switch {
	case code == 401 && hasPrincipal:
		t.Errorf("%s answered 401: audit line names principal %v", what, p)
	case needsCred && code != 401 && (!hasPrincipal || p["id"] == ""):
		t.Errorf("%s answered %d: audit line names no principal: %v", what, code, line)
	}
	if want := pathDatabase(rc.path); strings.Contains(rc.pattern, "{db}") && line["database"] != want {
		t.Errorf("%s: audit line database = %v, want %q", what, line["database"], want)
	}
	if strings.Contains(rc.path, "/entity/") && strings.Contains(rc.path, "key=k") && line["key"] != "k" {
		t.Errorf("%s: audit line key = %v, want \"k\"", what, line["key"])
	}
}

// pathDatabase is the database a route table path names.
func pathDatabase(p string) string {
	p, _, _ = strings.Cut(p, "?")
	for _, pre := range []string{"/entity/", "/api/databases/", "/admin/databases/"} {
		if rest, ok := strings.CutPrefix(p, pre); ok {
			db, _, _ := strings.Cut(rest, "/")
			return db
		}
	}
	return ""
}

// checkAuditHoldsNoSecrets is TestLogsHoldNoSecrets's scan of the audit
// log: none of the secrets or documents, exactly one line for each
// request ID sent, and a chain that verifies.
func checkAuditHoldsNoSecrets(t *testing.T, path string, secrets map[string]string, sent []string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for what, secret := range secrets {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the audit log holds the %s %q", what, secret)
		}
	}
	count := map[string]int{}
	for _, line := range auditLines(t, path) {
		if id, ok := line["request_id"].(string); ok {
			count[id]++
		}
	}
	for _, id := range sent {
		if count[id] != 1 {
			t.Errorf("audit lines with request_id %s: %d, want 1", id, count[id])
		}
	}
	if _, err := verifyAudit(t, path); err != nil {
		t.Errorf("verify the audit log: %v", err)
	}
}

// checkAuditGRPC checks the audit lines of TestLogsHoldNoSecrets's two
// gRPC Process calls, request ID id: a PUT with the API key (OK, its
// principal and new ETag) and a GET with a wrong key (401, no principal).
func checkAuditGRPC(t *testing.T, path, id string) {
	t.Helper()
	var got []map[string]any
	for _, line := range auditLines(t, path) {
		if line["request_id"] == id {
			got = append(got, line)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d audit lines of the gRPC calls, want 2: %v", len(got), got)
	}
	put, get := got[0], got[1]
	p, _ := put["principal"].(map[string]any)
	if put["route"] != grpcProcessRoute || put["method"] != "PUT" || put["grpc_code"] != "OK" || put["status"] != float64(200) ||
		put["database"] != "scandb" || put["key"] != "g1" || put["etag_after"] == nil || p == nil || p["name"] != "logscan" {
		t.Errorf("audit line of the gRPC PUT = %v", put)
	}
	if get["method"] != "GET" || get["grpc_code"] != "Unauthenticated" || get["status"] != float64(401) || get["principal"] != nil {
		t.Errorf("audit line of the refused gRPC GET = %v", get)
	}
}

// writeTestAuditLog writes a closed audit log of n requests with a
// checkpoint every 5 lines and returns its lines (without newlines).
func writeTestAuditLog(t *testing.T, path string, n int) []string {
	t.Helper()
	l, stop := startTestAudit(t, auditOptions{path: path, checkpointEvery: 5})
	for i := range n {
		e := &auditEntry{RequestID: "req-" + strconv.Itoa(i), Client: "192.0.2.1:1",
			Method: "GET", Route: "GET /entity/{db}", Database: "chatdb", Key: "k" + strconv.Itoa(i), Status: 200}
		if _, err := l.appendRequest(e); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestAuditVerifyFindsTampering writes a log, checks that it verifies,
// then that each tampering is found and named by its line: one changed
// byte (in a request, in a chain value, in a checkpoint), a removed line,
// two swapped lines, a file cut in the middle of a line, a line rewritten
// with the chain recomputed after it (caught by the next checkpoint), and
// the wrong master key.
func TestAuditVerifyFindsTampering(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	lines := writeTestAuditLog(t, path, 12)
	// 1 open, requests with a checkpoint after every 5 lines, 1 close.
	if len(lines) < 15 {
		t.Fatalf("the log has %d lines, want at least 15:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	v, err := verifyAudit(t, path)
	if err != nil {
		t.Fatalf("verify the untouched log: %v", err)
	}
	if v.lines != len(lines) || !v.closed {
		t.Errorf("verified %d lines (closed %v), want %d, closed", v.lines, v.closed, len(lines))
	}
	at := func(n int) string { return fmt.Sprintf("%s line %d:", path, n) }
	cases := []struct {
		name   string
		change func(ls []string) string // the tampered file
		want   string
	}{
		{"changed byte in a request", func(ls []string) string {
			ls[3] = strings.Replace(ls[3], `"status":200`, `"status":201`, 1)
			return join(ls)
		}, at(4) + " changed"},
		{"changed byte in a key", func(ls []string) string {
			ls[7] = strings.Replace(ls[7], `"key":"k`, `"key":"K`, 1)
			return join(ls)
		}, at(8) + " changed"},
		{"changed chain value", func(ls []string) string {
			ls[3] = flipHex(ls[3], `"prev":"`)
			return join(ls)
		}, at(4) + " changed"},
		{"changed checkpoint", func(ls []string) string {
			ls[6] = strings.Replace(ls[6], `"reason":"every"`, `"reason":"evert"`, 1)
			return join(ls)
		}, at(7) + " changed"},
		{"broken JSON", func(ls []string) string {
			ls[4] = strings.Replace(ls[4], `{"seq"`, `["seq"`, 1)
			return join(ls)
		}, at(5) + " not an audit line"},
		{"removed line", func(ls []string) string {
			return join(slices.Delete(ls, 3, 4))
		}, at(4) + " a line removed before it (seq 4 is missing)"},
		{"removed lines", func(ls []string) string {
			return join(slices.Delete(ls, 3, 5))
		}, at(4) + " lines removed before it (seq 4 to 5 are missing)"},
		{"removed first line", func(ls []string) string {
			return join(ls[1:])
		}, at(1) + " the log does not start with a checkpoint"},
		{"swapped lines", func(ls []string) string {
			ls[3], ls[4] = ls[4], ls[3]
			return join(ls)
		}, at(4) + " out of order"},
		{"cut in a line", func(ls []string) string {
			s := join(ls[:9])
			return s + ls[9][:len(ls[9])/2]
		}, at(10) + " incomplete"},
		{"rewritten with the chain recomputed", func(ls []string) string {
			ls[2] = strings.Replace(ls[2], `"status":200`, `"status":204`, 1)
			return join(rechain(ls, 2))
		}, "the checkpoint does not verify"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(c.change(slices.Clone(lines))), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := verifyAudit(t, path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("verify = %v, want an error containing %q", err, c.want)
			}
		})
	}
	t.Run("cut at a line end", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(join(lines[:9])), 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := verifyAudit(t, path)
		if err != nil || v.closed {
			t.Fatalf("verify = %v (closed %v), want intact lines and a log not closed", err, v.closed)
		}
		var out bytes.Buffer
		v.report(&out, []string{path})
		if !strings.Contains(out.String(), "was not closed") {
			t.Errorf("report %q does not say the log was not closed", out.String())
		}
	})
	t.Run("wrong master key", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(join(lines)), 0o600); err != nil {
			t.Fatal(err)
		}
		other, _ := deriveAuditKeys(make([]byte, 32))
		err := (&auditVerifier{keys: [][]byte{other.chain}}).verify([]string{path})
		if err == nil || !strings.Contains(err.Error(), at(1)+" the checkpoint does not verify") {
			t.Errorf("verify with another master key = %v, want line 1's checkpoint refused", err)
		}
	})
}

// join is lines as a file.
func join(lines []string) string { return strings.Join(lines, "\n") + "\n" }

// flipHex changes the first hex digit after marker in line.
func flipHex(line, marker string) string {
	i := strings.Index(line, marker) + len(marker)
	c := byte('0')
	if line[i] == '0' {
		c = '1'
	}
	return line[:i] + string(c) + line[i+1:]
}

// rechain recomputes the chain value of every line after line from (an
// attacker without the key can do this; only checkpoints stop them).
func rechain(lines []string, from int) []string {
	for i := from + 1; i < len(lines); i++ {
		h := sha256.Sum256([]byte(lines[i-1]))
		j := strings.Index(lines[i], `"prev":"`) + len(`"prev":"`)
		lines[i] = lines[i][:j] + hex.EncodeToString(h[:]) + lines[i][j+64:]
	}
	return lines
}

// TestAuditVerifyRole runs -role=audit-verify on an intact log (exit 0)
// and on one with a changed byte (non-zero, naming the line).
func TestAuditVerifyRole(t *testing.T) {
	needBinary(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	lines := writeTestAuditLog(t, path, 8)
	out, err := runBinary(t, "-role=audit-verify", "-in", path, "-master-key="+testMasterKey)
	if err != nil || !strings.Contains(string(out), "audit log intact") {
		t.Fatalf("audit-verify of the intact log: %v\n%s", err, out)
	}
	lines[4] = strings.Replace(lines[4], `"chatdb"`, `"chatdc"`, 1)
	if err := os.WriteFile(path, []byte(join(lines)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runBinary(t, "-role=audit-verify", "-in", path, "-master-key="+testMasterKey)
	if err == nil || !strings.Contains(string(out), path+" line 5: changed") {
		t.Fatalf("audit-verify of the changed log: %v\n%s, want a failure naming line 5", err, out)
	}
	out, err = runBinary(t, "-role=audit-verify", "-in", path)
	if err == nil || !strings.Contains(string(out), "master key") {
		t.Errorf("audit-verify without a master key: %v\n%s, want a failure asking for it", err, out)
	}
}

// TestAuditRotation rotates a log many times: every file is 0600, each
// rotated file ends with its rotation checkpoint and the next opens with
// one, the chain verifies across them (from the live file's name), and
// a restart continues it. A rotated file removed from the middle is
// found.
func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	write := func(n int) {
		l, stop := startTestAudit(t, auditOptions{path: path, maxBytes: 2000, checkpointEvery: 7})
		for i := range n {
			if err := l.record(&auditEntry{RequestID: "r" + strconv.Itoa(i), Method: "GET", Route: "GET /api/me", Status: 200}); err != nil {
				t.Fatal(err)
			}
		}
		stop()
	}
	write(60)
	write(60) // a restart continues the chain
	files, err := auditFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 || files[0] != rotatedName(path, 1) || files[len(files)-1] != path {
		t.Fatalf("files = %v, want several rotated files, oldest first, then %s", files, path)
	}
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
		lines := auditLines(t, f)
		if first := lines[0]; first["type"] != "checkpoint" || first["reason"] != "open" {
			t.Errorf("%s starts with %v, want an open checkpoint", f, first)
		}
		if last := lines[len(lines)-1]; i < len(files)-1 && last["reason"] != "rotate" {
			t.Errorf("%s ends with %v, want the rotation checkpoint", f, last)
		}
	}
	v, err := verifyAudit(t, files...)
	if err != nil || !v.closed || v.firstSeq != 1 {
		t.Fatalf("verify across %d files = %v (closed %v, first seq %d)", len(files), err, v.closed, v.firstSeq)
	}
	restarts := 0
	for _, f := range files {
		for _, line := range auditLines(t, f) {
			if line["reason"] == "open" && line["after"] == "close" {
				restarts++
			}
		}
	}
	if restarts != 1 {
		t.Errorf("%d open checkpoints after a close, want 1 (the restart)", restarts)
	}
	missing := slices.Delete(slices.Clone(files), 1, 2)
	if _, err := verifyAudit(t, missing...); err == nil || !strings.Contains(err.Error(), files[2]+" line 1: lines removed before it") {
		t.Errorf("verify without %s = %v, want lines removed before %s line 1", files[1], err, files[2])
	}
	// Old files deleted by retention: the chain starts at a rotated
	// file's open checkpoint.
	if v, err := verifyAudit(t, files[2:]...); err != nil || v.firstSeq == 1 {
		t.Errorf("verify from the third file = %v (first seq %d), want intact from a later seq", err, v.firstSeq)
	}
}

// TestAuditTornTail: a writer that crashed in the middle of a line leaves
// a torn tail; the next start cuts it off, says so in its open
// checkpoint, and the log verifies.
func TestAuditTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := openAuditLog(auditOptions{path: path, keys: testAuditKeys(t), required: true, log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := l.appendRequest(&auditEntry{RequestID: "r1", Method: "GET", Route: "GET /api/me", Status: 200})
	if err != nil {
		t.Fatal(err)
	}
	l.flush(true) // what run does; then the process dies without close
	if err := l.waitDurable(seq); err != nil {
		t.Fatal(err)
	}
	l.f.Close()
	torn := `{"seq":3,"time":"2026-`
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(torn)
	f.Close()

	_, stop := startTestAudit(t, auditOptions{path: path})
	stop()
	lines := auditLines(t, path)
	open := lines[2]
	if open["reason"] != "open" || open["after"] != "crash" || open["dropped_bytes"] != float64(len(torn)) {
		t.Errorf("line 3 = %v, want an open checkpoint after a crash that dropped %d bytes", open, len(torn))
	}
	if _, err := verifyAudit(t, path); err != nil {
		t.Errorf("verify = %v", err)
	}
}

// TestAuditHMACNames: with -audit-hmac-names the database and entity keys
// are HMACs in the log, never the names; POST /admin/audit/hash answers
// the same HMAC to an admin, so the line can be found. Only the admin
// permission may ask, and not a key limited to some databases (it could
// test names of databases it may not see against the log).
func TestAuditHMACNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, stop := startTestAudit(t, auditOptions{path: path, hmacNames: true})
	ts := newAuthTestServerOn(t, authConfig{}, newTestFSStore(t), func(o *restOptions) { o.audit = l })
	ts.mustDo(t, "PUT", "/entity/secretdb", testAdminKey, `{"alice-private":{"a":1},"bob-private":{"b":2}}`, 200)
	ts.mustDo(t, "GET", "/entity/secretdb?key=alice-private", testAdminKey, "", 200)
	hash := func(token, input string, want int) string {
		rec := ts.do("POST", "/admin/audit/hash", token, `{"input":"`+input+`"}`, "")
		if rec.Code != want {
			t.Fatalf("POST /admin/audit/hash = %d %s, want %d", rec.Code, rec.Body, want)
		}
		var got struct{ Hash string }
		json.Unmarshal(rec.Body.Bytes(), &got)
		return got.Hash
	}
	dbHash, keyHash := hash(testAdminKey, "secretdb", 200), hash(testAdminKey, "alice-private", 200)
	if !strings.HasPrefix(dbHash, auditHashPrefix) || dbHash == keyHash {
		t.Fatalf("hashes %q, %q, want two different %s values", dbHash, keyHash, auditHashPrefix)
	}
	adminPerm := ts.createKey(t, `{"name":"ap","permissions":["admin"]}`).Secret
	if got := hash(adminPerm, "secretdb", 200); got != dbHash {
		t.Errorf("hash for a key with admin = %q, want %q", got, dbHash)
	}
	scopedAdmin := ts.createKey(t, `{"name":"sa","permissions":["admin"],"databases":["other*"]}`).Secret
	hash(scopedAdmin, "secretdb", http.StatusForbidden)
	hash(ts.createKey(t, `{"name":"rw","permissions":["read","write"]}`).Secret, "secretdb", http.StatusForbidden)
	hash("", "secretdb", http.StatusUnauthorized)
	hash(testAdminKey, "", http.StatusBadRequest)
	stop()

	raw, _ := os.ReadFile(path)
	for _, name := range []string{"secretdb", "alice-private", "bob-private"} {
		if bytes.Contains(raw, []byte(name)) {
			t.Errorf("the audit log holds the name %q", name)
		}
	}
	var found bool
	for _, line := range auditLines(t, path) {
		if line["route"] == "GET /entity/{db}" {
			found = line["database"] == dbHash && line["key"] == keyHash
		}
	}
	if !found {
		t.Errorf("no GET line with database %s and key %s", dbHash, keyHash)
	}
}

// TestAuditRequiredUnwritable runs the binary with -audit-required and an
// audit file that cannot be written (/dev/full: every write fails with
// ENOSPC; a chmod would not stop the root user tests may run as): requests
// are refused with 503 and a JSON error naming the request ID, readiness
// turns false naming the audit check, liveness stays true; without
// -audit-required the same server answers and logs the failure.
func TestAuditRequiredUnwritable(t *testing.T) {
	needBinary(t)
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	before, _ := os.Stat("/dev/full")
	n := startNode(t, keyEnv, "-shared-fs="+t.TempDir(), "-audit-log=/dev/full", "-audit-required")
	code, body, _ := n.call("GET", "/api/me", testAdminKey, nil)
	var e struct{ Error string }
	if code != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "audit log") {
		t.Errorf("GET /api/me = %d %s, want 503 with an error naming the audit log", code, body)
	}
	code, body, _ = n.call("PUT", "/entity/db1", testAdminKey, map[string]any{"k": map[string]int{"a": 1}})
	if code != http.StatusServiceUnavailable {
		t.Errorf("PUT /entity/db1 = %d %s, want 503", code, body)
	}
	code, body, _ = n.call("GET", "/readyz", "", nil)
	var ready readyBody
	if code != http.StatusServiceUnavailable || json.Unmarshal(body, &ready) != nil || ready.Checks["audit"].OK {
		t.Errorf("GET /readyz = %d %s, want 503 with the audit check failed", code, body)
	}
	if code, body, _ := n.call("GET", "/healthz", "", nil); code != 200 {
		t.Errorf("GET /healthz = %d %s, want 200", code, body)
	}
	if !strings.Contains(n.stderr.String(), "audit log failed") {
		t.Errorf("the log does not say the audit log failed:\n%s", n.stderr.String())
	}
	if after, _ := os.Stat("/dev/full"); after.Mode() != before.Mode() {
		t.Errorf("/dev/full mode changed from %v to %v", before.Mode(), after.Mode())
	}

	lax := startNode(t, keyEnv, "-shared-fs="+t.TempDir(), "-audit-log=/dev/full")
	if code, body, _ := lax.call("GET", "/api/me", testAdminKey, nil); code != 200 {
		t.Errorf("without -audit-required: GET /api/me = %d %s, want 200", code, body)
	}
}

// TestAuditGroupCommit: under -audit-required, requests that arrive
// together share one write and fdatasync, and each is answered only
// once its line is durable (the file holds it when record returns).
func TestAuditGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := startTestAudit(t, auditOptions{path: path, required: true})
	const clients, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("c%d-%d", c, i)
				if err := l.record(&auditEntry{RequestID: id, Method: "GET", Route: "GET /api/me", Status: 200}); err != nil {
					errs <- err
					return
				}
				b, err := os.ReadFile(path)
				if err != nil || !bytes.Contains(b, []byte(`"request_id":"`+id+`"`)) {
					errs <- fmt.Errorf("request %s answered before its line was in the file (%v)", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l.mu.Lock()
	syncs, lines := l.syncs, l.seq
	l.mu.Unlock()
	t.Logf("%d lines in %d fdatasyncs", lines, syncs)
	if syncs >= uint64(clients*each) {
		t.Errorf("%d fdatasyncs for %d concurrent requests: none shared", syncs, clients*each)
	}
}

// TestAuditFlags: the -audit-* flags that make no sense are refused at
// start, naming the flag.
func TestAuditFlags(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-audit-required", "need -audit-log"},
		{"-audit-hmac-names", "need -audit-log"},
		{"-audit-log=a.log -audit-max-bytes=-1", "-audit-max-bytes"},
		{"-audit-log=a.log -audit-checkpoint-every=0", "-audit-checkpoint-every"},
		{"-audit-log=a.log -audit-flush-interval=0s", "-audit-flush-interval"},
		{"-role=proc -audit-log=a.log", "-audit-log"},
	} {
		_, err := parseFlags(strings.Fields(c.args), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseFlags(%s) = %v, want an error naming %s", c.args, err, c.want)
		}
	}
}

// BenchmarkWarmGetAudit is BenchmarkWarmGet with the audit log off, on
// (buffered: written and synced every second) and required (each answer
// waits for its line's fdatasync, shared by the requests waiting
// together), side by side; the file is on the test's temporary
// directory. BENCHMARKS.md quotes it.
func BenchmarkWarmGetAudit(b *testing.B) {
	for _, mode := range []string{"off", "on", "required"} {
		b.Run(mode, func(b *testing.B) {
			benchWarmGet(b, func(s *restServer) {
				if mode != "off" {
					s.audit, _ = startTestAudit(b, auditOptions{path: filepath.Join(b.TempDir(), "audit.log"), required: mode == "required"})
				}
			})
		})
	}
}

// TestAuditETagBefore: the audit line of a write names the version it
// replaced or deleted (etag_before), asked with If-Match or not, and the
// version it wrote (etag_after); a write of a new entity, a refused one
// and a PUT of many keys name no version before.
func TestAuditETagBefore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, stop := startTestAudit(t, auditOptions{path: path})
	ts := newAuthTestServerOn(t, authConfig{}, newTestFSStore(t), func(o *restOptions) { o.audit = l })
	etag := func(rec *httptest.ResponseRecorder) string { return strings.Trim(rec.Header().Get("ETag"), `"`) }
	send := func(method, path, body, ifMatch string, want int) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		if method == "PATCH" {
			req.Header.Set("Content-Type", mergePatchType)
		}
		if ifMatch != "" {
			req.Header.Set("If-Match", `"`+ifMatch+`"`)
		}
		rec := httptest.NewRecorder()
		ts.rest.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, rec.Code, rec.Body, want)
		}
		return rec
	}
	e1 := etag(send("PUT", "/entity/adb", `{"k":{"n":1}}`, "", 200))
	e2 := etag(send("PUT", "/entity/adb", `{"k":{"n":2}}`, "", 200))
	e3 := etag(send("PATCH", "/entity/adb?key=k", `{"m":1}`, "", 200))
	e4 := etag(send("PUT", "/entity/adb", `{"k":{"n":4}}`, e3, 200))
	send("PUT", "/entity/adb", `{"k":{"n":5}}`, e1, 412)
	send("DELETE", "/entity/adb?key=k", "", "", 200)
	send("PUT", "/entity/adb", `{"a":1,"b":2}`, "", 200)
	send("PUT", "/entity/adb", `{"a":1,"b":2}`, "", 200)
	stop()
	var got []string
	for _, line := range auditLines(t, path) {
		if line["type"] == "request" {
			got = append(got, fmt.Sprintf("%v %v before=%v after=%v", line["method"], line["status"], line["etag_before"], line["etag_after"]))
		}
	}
	want := []string{
		"PUT 200 before=<nil> after=" + e1,
		"PUT 200 before=" + e1 + " after=" + e2,
		"PATCH 200 before=" + e2 + " after=" + e3,
		"PUT 200 before=" + e3 + " after=" + e4,
		"PUT 412 before=<nil> after=" + e4,
		"DELETE 200 before=" + e4 + " after=<nil>",
		"PUT 200 before=<nil> after=<nil>",
		"PUT 200 before=<nil> after=<nil>",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit lines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAuditOIDCPrincipal: a request made with an OpenID provider's access
// token is audited under the token's subject (id oidc:<sub>, name and
// subject), and the token itself appears nowhere in the log.
func TestAuditOIDCPrincipal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, stop := startTestAudit(t, auditOptions{path: path})
	ts := newAuthTestServerOn(t, authConfig{}, newTestFSStore(t), func(o *restOptions) { o.audit = l })
	k := testKeys()
	ti := newTestIssuer(t, k["es"])
	ts.auth.oidc = newTestVerifier(t, ti, ts.clock, oidcConfig{})
	tok := k["es"].token(t, ti.claims(ts.clock.now(), "read", "write"))
	ts.mustDo(t, "PUT", "/entity/odb", tok, `{"k":1}`, 200)
	stop()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(tok)) || bytes.Contains(raw, []byte(strings.Split(tok, ".")[2])) {
		t.Errorf("the audit log holds the OIDC token")
	}
	var got []any
	for _, line := range auditLines(t, path) {
		if line["route"] == "PUT /entity/{db}" {
			got = append(got, line["principal"])
		}
	}
	want := map[string]any{"id": "oidc:svc-1", "name": "svc-1", "subject": "svc-1"}
	if len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("principal of the PUT's audit line = %v, want %v", got, want)
	}
}
