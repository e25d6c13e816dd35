package main

// Entity versions (versions.go): kept, listed, read, pruned, soft-deleted
// and undeleted, destroyed, sealed on disk, removed with their database.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// versionList is the answer of GET /entity/{db}/versions.
type versionList struct {
	Key      string         `json:"key"`
	Versions []versionEntry `json:"versions"`
}

// listVersionsOf lists the versions of key in db with token.
func listVersionsOf(t *testing.T, ts *authTestServer, db, key string) versionList {
	t.Helper()
	var l versionList
	decodeInto(t, "versions", ts.mustDo(t, "GET", "/entity/"+db+"/versions?key="+key, testAdminKey, "", 200), &l)
	return l
}

// putETag PUTs doc as key of db and returns its ETag.
func putETag(t *testing.T, ts *authTestServer, db, key, doc string) string {
	t.Helper()
	rec := ts.do("PUT", "/entity/"+db, testAdminKey, fmt.Sprintf(`{%q:%s}`, key, doc), "")
	if rec.Code != 200 {
		t.Fatalf("PUT %s/%s = %d %s", db, key, rec.Code, rec.Body)
	}
	return strings.Trim(rec.Header().Get("ETag"), `"`)
}

// versionNumbers are the numbers of l's versions, oldest first.
func versionNumbers(l versionList) []int64 {
	var ns []int64
	for _, v := range l.Versions {
		ns = append(ns, v.Version)
	}
	return ns
}

// storedUnder lists the files under dir of st's root, relative to it.
func storedUnder(t *testing.T, root, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		if os.IsNotExist(err) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVersionsLifecycle(t *testing.T) {
	st := newTestFSStore(t)
	ts := newAuthTestServerOn(t, authConfig{}, st)
	info := ts.mustDo(t, "PUT", "/api/databases/vdb", testAdminKey, `{"max_versions":3}`, 200)
	if !jsonEqual(info, []byte(`{"name":"vdb","schema":null,"entities":0,"max_versions":3}`)) {
		t.Errorf("PUT settings = %s", info)
	}
	var etags []string
	for i := 1; i <= 4; i++ {
		etags = append(etags, putETag(t, ts, "vdb", "s1", fmt.Sprintf(`{"n":%d,"secret":"plain-marker-%d"}`, i, i)))
	}
	l := listVersionsOf(t, ts, "vdb", "s1")
	if got := fmt.Sprint(versionNumbers(l)); got != "[2 3 4]" {
		t.Fatalf("versions after 4 PUTs with max 3 = %s, want [2 3 4] (%+v)", got, l)
	}
	for i, v := range l.Versions {
		if v.ETag != etags[i+1] || v.Principal != "admin" || v.Deleted || v.Destroyed || v.Time.IsZero() {
			t.Errorf("version %d = %+v, want ETag %s by admin, not deleted", v.Version, v, etags[i+1])
		}
	}
	rec := ts.do("GET", "/entity/vdb?key=s1&version=3", testAdminKey, "", "")
	if rec.Code != 200 || !jsonEqual(rec.Body.Bytes(), []byte(`{"n":3,"secret":"plain-marker-3"}`)) || rec.Header().Get("ETag") != `"`+etags[2]+`"` {
		t.Errorf("GET version 3 = %d %s ETag %s", rec.Code, rec.Body, rec.Header().Get("ETag"))
	}
	ts.mustDo(t, "GET", "/entity/vdb?key=s1&version=1", testAdminKey, "", 404)
	ts.mustDo(t, "GET", "/entity/vdb?key=s1&version=x", testAdminKey, "", 400)
	ts.mustDo(t, "GET", "/entity/vdb?key=s1&version=0", testAdminKey, "", 400)
	if n := len(storedUnder(t, st.root, "_versions/vdb")); n != 4 { // three versions and the index
		t.Errorf("files under _versions/vdb = %d, want 4: the pruned version is removed", n)
	}

	// PATCH is a write: a new version.
	prec := ts.doWith("PATCH", "/entity/vdb?key=s1", testAdminKey, `{"n":5}`, mergePatchType)
	if prec.Code != 200 {
		t.Fatalf("PATCH = %d %s", prec.Code, prec.Body)
	}
	// A soft delete: gone from reads and listings, its version marked.
	ts.mustDo(t, "DELETE", "/entity/vdb?key=s1", testAdminKey, "", 200)
	ts.mustDo(t, "GET", "/entity/vdb?key=s1", testAdminKey, "", 404)
	if keys := ts.mustDo(t, "GET", "/api/databases/vdb/keys", testAdminKey, "", 200); !jsonEqual(keys, []byte(`{"keys":[]}`)) {
		t.Errorf("keys after soft delete = %s", keys)
	}
	l = listVersionsOf(t, ts, "vdb", "s1")
	last := l.Versions[len(l.Versions)-1]
	if last.Version != 5 || !last.Deleted || last.DeletedBy != "admin" || last.DeletedTime == nil {
		t.Errorf("latest version after DELETE = %+v, want 5 deleted by admin", last)
	}
	ts.mustDo(t, "DELETE", "/entity/vdb?key=s1", testAdminKey, "", 404)

	// Undelete: the document is back, as version 6.
	urec := ts.do("POST", "/entity/vdb/undelete?key=s1", testAdminKey, "", "")
	if urec.Code != 200 {
		t.Fatalf("undelete = %d %s", urec.Code, urec.Body)
	}
	grec := ts.do("GET", "/entity/vdb?key=s1", testAdminKey, "", "")
	if grec.Code != 200 || !jsonEqual(grec.Body.Bytes(), []byte(`{"n":5,"secret":"plain-marker-4"}`)) || grec.Header().Get("ETag") != urec.Header().Get("ETag") {
		t.Errorf("GET after undelete = %d %s ETag %s (undelete answered %s)", grec.Code, grec.Body, grec.Header().Get("ETag"), urec.Header().Get("ETag"))
	}
	l = listVersionsOf(t, ts, "vdb", "s1")
	if got := fmt.Sprint(versionNumbers(l)); got != "[4 5 6]" || l.Versions[1].Deleted || l.Versions[2].Principal != "admin" {
		t.Errorf("versions after undelete = %+v, want [4 5 6], 5 no longer deleted", l)
	}
	ts.mustDo(t, "POST", "/entity/vdb/undelete?key=s1", testAdminKey, "", 409)
	if keys := ts.mustDo(t, "GET", "/api/databases/vdb/keys", testAdminKey, "", 200); !jsonEqual(keys, []byte(`{"keys":["s1"]}`)) {
		t.Errorf("keys after undelete = %s", keys)
	}

	// Destroy: the documents go for good, the metadata says so. The
	// current document (version 6) is refused, nothing removed: the entity
	// would still answer it (the answer said destroyed, GET still read it).
	ts.mustDo(t, "POST", "/entity/vdb/destroy?key=s1&versions=5,6", testAdminKey, "", 409)
	ts.mustDo(t, "GET", "/entity/vdb?key=s1&version=5", testAdminKey, "", 200)
	ts.mustDo(t, "POST", "/entity/vdb/destroy?key=s1&versions=4,5", testAdminKey, "", 200)
	ts.mustDo(t, "GET", "/entity/vdb?key=s1&version=4", testAdminKey, "", 404)
	ts.mustDo(t, "POST", "/entity/vdb/destroy?key=s1&versions=9", testAdminKey, "", 404)
	ts.mustDo(t, "POST", "/entity/vdb/destroy?key=s1", testAdminKey, "", 400)
	l = listVersionsOf(t, ts, "vdb", "s1")
	if !l.Versions[0].Destroyed || !l.Versions[1].Destroyed || l.Versions[2].Destroyed {
		t.Errorf("versions after destroying 4 and 5 = %+v", l)
	}
	if n := len(storedUnder(t, st.root, "_versions/vdb")); n != 2 {
		t.Errorf("files under _versions/vdb after destroy = %d, want 2 (version 6 and the index)", n)
	}

	// Nothing on disk holds a document in plaintext.
	for _, f := range storedUnder(t, st.root, "") {
		raw, err := os.ReadFile(filepath.Join(st.root, f))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("plain-marker")) {
			t.Errorf("%s holds a document in plaintext", f)
		}
	}
	// A version blob moved to another number does not open.
	dir := versionsDir("vdb", "s1")
	six, err := st.Get(context.Background(), dir+"0000000006")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), dir+"0000000004", six); err != nil {
		t.Fatal(err)
	}
	var x versionIndex
	raw, _ := st.Get(context.Background(), versionsIndexKey("vdb", "s1"))
	json.Unmarshal(raw, &x)
	x.Versions[0].Destroyed = false
	raw, _ = json.Marshal(x)
	st.Put(context.Background(), versionsIndexKey("vdb", "s1"), raw)
	if rec := ts.do("GET", "/entity/vdb?key=s1&version=4", testAdminKey, "", ""); rec.Code != 500 {
		t.Errorf("GET of a version blob moved from 6 to 4 = %d %s, want 500", rec.Code, rec.Body)
	}

	// Deleting the database removes its versions and settings.
	ts.mustDo(t, "DELETE", "/api/databases/vdb", testAdminKey, "", 200)
	if left := storedUnder(t, st.root, "_versions/vdb"); len(left) != 0 {
		t.Errorf("after DELETE /api/databases/vdb, left: %v", left)
	}
	ts.mustDo(t, "GET", "/entity/vdb/versions?key=s1", testAdminKey, "", 404)
}

// TestVersionReadConditional: a version read (?version=N) answers 304
// with the version's ETag, no body, when If-None-Match names that ETag
// (or is *), as a GET of the current document does, and 200 with the
// document otherwise. On the old code it ignored If-None-Match (200 with
// the body).
func TestVersionReadConditional(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/api/databases/vdb", testAdminKey, `{"max_versions":3}`, 200)
	e1 := putETag(t, ts, "vdb", "k", `{"n":1}`)
	putETag(t, ts, "vdb", "k", `{"n":2}`)
	get := func(target, inm string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		rec := httptest.NewRecorder()
		ts.rest.ServeHTTP(rec, req)
		return rec
	}
	for _, inm := range []string{`"` + e1 + `"`, `W/"` + e1 + `"`, `"other", "` + e1 + `"`, "*"} {
		rec := get("/entity/vdb?key=k&version=1", inm)
		if rec.Code != http.StatusNotModified || rec.Header().Get("ETag") != `"`+e1+`"` || rec.Body.Len() != 0 {
			t.Errorf("version 1 with If-None-Match %s = %d %q ETag %s, want 304 with ETag %q and no body", inm, rec.Code, rec.Body, rec.Header().Get("ETag"), `"`+e1+`"`)
		}
	}
	rec := get("/entity/vdb?key=k&version=1", `"other"`)
	if rec.Code != 200 || !jsonEqual(rec.Body.Bytes(), []byte(`{"n":1}`)) || rec.Header().Get("ETag") != `"`+e1+`"` {
		t.Errorf("version 1 with If-None-Match of another ETag = %d %s ETag %s, want 200 with the document", rec.Code, rec.Body, rec.Header().Get("ETag"))
	}
	if rec := get("/entity/vdb?key=k&version=1", `"`); rec.Code != 400 {
		t.Errorf("version 1 with a malformed If-None-Match = %d %s, want 400", rec.Code, rec.Body)
	}
}

// TestVersionNumbersStrict: a version number in ?version= (a version
// read) and ?versions= (a destroy) is decimal digits without a sign,
// space, leading zero, fraction or base prefix, as the server writes
// them; any other form is 400 and, for a destroy, nothing is removed. On
// the old code strconv.ParseInt took "+1" and "01" (and a destroy also
// " 1"), which answered version 1.
func TestVersionNumbersStrict(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int64
		good bool
	}{
		{"1", 1, true}, {"10", 10, true}, {"9223372036854775807", 1<<63 - 1, true},
		{"", 0, false}, {"0", 0, false}, {"01", 0, false}, {"+1", 0, false}, {"-1", 0, false}, {" 1", 0, false},
		{"1 ", 0, false}, {"0x1", 0, false}, {"1.0", 0, false}, {"1e0", 0, false}, {"١", 0, false},
		{"9223372036854775808", 0, false}, {"1_0", 0, false},
	} {
		if n, ok := parseVersionNumber(c.in); n != c.n || ok != c.good {
			t.Errorf("parseVersionNumber(%q) = %d, %v, want %d, %v", c.in, n, ok, c.n, c.good)
		}
	}
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/api/databases/vdb", testAdminKey, `{"max_versions":3}`, 200)
	putETag(t, ts, "vdb", "k", `{"n":1}`)
	putETag(t, ts, "vdb", "k", `{"n":2}`)
	ts.mustDo(t, "GET", "/entity/vdb?key=k&version=1", testAdminKey, "", 200)
	for _, v := range []string{"%2B1", "+1", "01", "%201", "1%20", "0x1", "1.0", "", "-1"} {
		ts.mustDo(t, "GET", "/entity/vdb?key=k&version="+v, testAdminKey, "", 400)
		ts.mustDo(t, "POST", "/entity/vdb/destroy?key=k&versions="+v, testAdminKey, "", 400)
		ts.mustDo(t, "POST", "/entity/vdb/destroy?key=k&versions=2,"+v, testAdminKey, "", 400)
	}
	// Nothing was destroyed by the refused requests.
	for _, v := range listVersionsOf(t, ts, "vdb", "k").Versions {
		if v.Destroyed {
			t.Errorf("version %d destroyed by a refused request", v.Version)
		}
	}
}

func TestVersionsOff(t *testing.T) {
	st := newTestFSStore(t)
	ts := newAuthTestServerOn(t, authConfig{}, st)
	putETag(t, ts, "odb", "k", `{"a":1}`)
	putETag(t, ts, "odb", "k", `{"a":2}`)
	if l := listVersionsOf(t, ts, "odb", "k"); len(l.Versions) != 0 {
		t.Errorf("versions with max_versions 0 = %+v", l)
	}
	ts.mustDo(t, "DELETE", "/entity/odb?key=k", testAdminKey, "", 200)
	ts.mustDo(t, "POST", "/entity/odb/undelete?key=k", testAdminKey, "", 404)
	if left := storedUnder(t, st.root, "_versions"); len(left) != 0 {
		t.Errorf("versions off wrote %v", left)
	}
	// Turning versions on keeps the document stored before as version 1
	// at the next write.
	putETag(t, ts, "odb", "k", `{"a":3}`)
	ts.mustDo(t, "PUT", "/api/databases/odb", testAdminKey, `{"max_versions":5}`, 200)
	putETag(t, ts, "odb", "k", `{"a":4}`)
	l := listVersionsOf(t, ts, "odb", "k")
	if got := fmt.Sprint(versionNumbers(l)); got != "[1 2]" || l.Versions[0].Principal != "" || l.Versions[1].Principal != "admin" {
		t.Errorf("versions after turning them on = %+v, want 1 (unknown writer) and 2", l)
	}
	if rec := ts.do("GET", "/entity/odb?key=k&version=1", testAdminKey, "", ""); !jsonEqual(rec.Body.Bytes(), []byte(`{"a":3}`)) {
		t.Errorf("version 1 = %d %s", rec.Code, rec.Body)
	}
	// The schema binding and the version count are set apart.
	ts.mustDo(t, "PUT", "/schema/o.v1", testAdminKey, `{"type":"object"}`, 200)
	info := ts.mustDo(t, "PUT", "/api/databases/odb", testAdminKey, `{"schema":"o.v1"}`, 200)
	if !jsonEqual(info, []byte(`{"name":"odb","schema":"o.v1","entities":1,"max_versions":5}`)) {
		t.Errorf("binding a schema = %s, want the version count kept", info)
	}
	info = ts.mustDo(t, "PUT", "/api/databases/odb", testAdminKey, `{"max_versions":null}`, 200)
	if !jsonEqual(info, []byte(`{"name":"odb","schema":"o.v1","entities":1,"max_versions":0}`)) {
		t.Errorf("max_versions null = %s, want the default 0 and the binding kept", info)
	}
	for _, body := range []string{`{}`, `{"max_versions":-1}`, `{"max_versions":101}`, `{"max_versions":"3"}`, `{"max_versions":1.5}`} {
		rec := ts.do("PUT", "/api/databases/odb", testAdminKey, body, "")
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("PUT settings %s = %d %s, want 400", body, rec.Code, rec.Body)
		}
	}
	// A database with only a version count reads back; without any
	// setting or entity it is 404.
	ts.mustDo(t, "PUT", "/api/databases/emptydb", testAdminKey, `{"max_versions":3}`, 200)
	if info := ts.mustDo(t, "GET", "/api/databases/emptydb", testAdminKey, "", 200); !jsonEqual(info, []byte(`{"name":"emptydb","schema":null,"entities":0,"max_versions":3}`)) {
		t.Errorf("GET a database with only max_versions = %s", info)
	}
	if rec := ts.do("GET", "/api/databases/nodb", testAdminKey, "", ""); rec.Code != 404 {
		t.Errorf("GET a database with nothing = %d %s, want 404", rec.Code, rec.Body)
	}
}

// nodeVersions lists the versions of key in db on n.
func nodeVersions(t *testing.T, n *node, db, key string) versionList {
	t.Helper()
	code, out, _ := n.call("GET", "/entity/"+db+"/versions?key="+key, testAdminKey, nil)
	var l versionList
	if code != 200 || json.Unmarshal(out, &l) != nil {
		t.Fatalf("GET versions of %s/%s = %d %s", db, key, code, out)
	}
	return l
}

// TestVersionsRealBinary: versions of -role=all (the write-ahead log on)
// survive a restart, are resealed by a rekey, counted and checked by
// -role=verify, and carried by backup and restore.
func TestVersionsRealBinary(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	args := []string{"-shared-fs=" + dir, "-max-versions=3"}
	n := startNode(t, keyEnv, args...)
	for i := 1; i <= 4; i++ {
		if code, out, _ := n.call("PUT", "/entity/vdb", testAdminKey, fmt.Sprintf(`{"s1":{"n":%d},"s2":{"m":%d}}`, i, i)); code != 200 {
			t.Fatalf("PUT %d = %d %s", i, code, out)
		}
	}
	if code, out, _ := n.call("DELETE", "/entity/vdb?key=s1", testAdminKey, nil); code != 200 {
		t.Fatalf("DELETE = %d %s", code, out)
	}
	n.stop()

	n = startNode(t, keyEnv, args...)
	l := nodeVersions(t, n, "vdb", "s1")
	if got := fmt.Sprint(versionNumbers(l)); got != "[2 3 4]" || !l.Versions[2].Deleted {
		t.Fatalf("versions after a restart = %+v, want [2 3 4], 4 deleted", l)
	}
	if code, out, _ := n.call("POST", "/entity/vdb/undelete?key=s1", testAdminKey, nil); code != 200 {
		t.Fatalf("undelete after a restart = %d %s", code, out)
	}
	if code, out, _ := n.call("GET", "/entity/vdb?key=s1", testAdminKey, nil); code != 200 || !jsonEqual(out, []byte(`{"n":4}`)) {
		t.Fatalf("GET after undelete = %d %s", code, out)
	}
	// A rekey reseals the versions under the new data key.
	code, out, _ := n.call("POST", "/admin/databases/vdb/rekey", testAdminKey, nil)
	var job jobView
	if code != 202 || json.Unmarshal(out, &job) != nil {
		t.Fatalf("rekey = %d %s", code, out)
	}
	deadline := time.Now().Add(scaled(30 * time.Second))
	for j := findJob(t, n, job.ID); j.State != "done"; j = findJob(t, n, job.ID) {
		if time.Now().After(deadline) || j.State == "failed" {
			t.Fatalf("rekey job = %+v", j)
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.stop()
	fst := mustFSStore(t, dir)
	ent, err := fst.Get(t.Context(), entityObjectKey("vdb", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	eh, _, _ := parseHeader(ent)
	for _, v := range []int64{3, 4, 5} {
		blob, err := fst.Get(t.Context(), versionObjectKey("vdb", "s1", v))
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if h, _, err := parseHeader(blob); err != nil || h.KeyID != eh.KeyID {
			t.Errorf("version %d sealed under key %q (%v), want the entity's after the rekey, %q", v, h.KeyID, err, eh.KeyID)
		}
	}

	verifyArgs := []string{"-role=verify", "-shared-fs=" + dir, "-master-key=" + testMasterKey, "-progress=off"}
	if out, err := runToolArgs(t, verifyArgs...); err != nil || !strings.Contains(out, "versions: 6, 0 failed") {
		t.Errorf("verify = %v\n%s\nwant 6 versions (3 of s1, 3 of s2), none failed", err, out)
	}
	archive := filepath.Join(t.TempDir(), "backup.tar")
	if out, err := runToolArgs(t, "-role=backup", "-shared-fs="+dir, "-out="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// A version changed on disk fails verify, named.
	p, err := fst.path(versionObjectKey("vdb", "s1", 4))
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := os.ReadFile(p)
	blob[len(blob)-3] ^= 1
	os.WriteFile(p, blob, 0o600)
	vout, err := runToolArgs(t, verifyArgs...)
	if err == nil || !strings.Contains(vout, `vdb "s1 (version 4)"`) || !strings.Contains(vout, "versions: 6, 1 failed") {
		t.Errorf("verify of a changed version = %v\n%s\nwant it named", err, vout)
	}

	restored := t.TempDir()
	if out, err := runToolArgs(t, "-role=restore", "-shared-fs="+restored, "-in="+archive, "-master-key="+testMasterKey, "-progress=off"); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	n = startNode(t, keyEnv, "-shared-fs="+restored, "-max-versions=3")
	defer n.stop()
	if code, out, _ := n.call("GET", "/entity/vdb?key=s1&version=4", testAdminKey, nil); code != 200 || !jsonEqual(out, []byte(`{"n":4}`)) {
		t.Errorf("version 4 after restore = %d %s", code, out)
	}
	if l := nodeVersions(t, n, "vdb", "s2"); fmt.Sprint(versionNumbers(l)) != "[2 3 4]" {
		t.Errorf("versions of s2 after restore = %+v", l)
	}
}

// TestVersionsAfterRotation: a master-key rotation covers versions. They
// are sealed under their database's data key, which the rotation rewraps
// under the new key: afterwards the new key alone opens every kept
// version and the old key alone opens none.
func TestVersionsAfterRotation(t *testing.T) {
	ctx := t.Context()
	st := newTestFSStore(t)
	ts := newAuthTestServerOn(t, authConfig{}, st)
	oldKey, newKey := make([]byte, 32), bytes.Repeat([]byte{7}, 32) // the test server's key, a new one
	if err := checkMasterKey(ctx, st, oldKey, "test-key"); err != nil {
		t.Fatal(err)
	}
	ts.mustDo(t, "PUT", "/api/databases/rdb", testAdminKey, `{"max_versions":5}`, 200)
	for i := 1; i <= 3; i++ {
		putETag(t, ts, "rdb", "s1", fmt.Sprintf(`{"n":%d}`, i))
	}
	ts.mustDo(t, "DELETE", "/entity/rdb?key=s1", testAdminKey, "", 200)

	prevID, _, err := checkKeys(ctx, st, newKey, "new-key", oldKey)
	if err != nil {
		t.Fatalf("checkKeys(new, previous old) = %v", err)
	}
	ring, _ := newKeyring(st, newKey, "new-key")
	if err := ring.addPrevious(oldKey, prevID); err != nil {
		t.Fatal(err)
	}
	rot := &rotator{st: st, ring: ring, log: slog.New(slog.DiscardHandler), done: func() {}}
	if err := rot.run(ctx, nil, "", nil); err != nil {
		t.Fatalf("rotation = %v", err)
	}

	fresh, _ := newKeyring(st, newKey, "new-key")
	old, _ := newKeyring(st, oldKey, "test-key")
	for n := int64(1); n <= 3; n++ {
		blob, err := st.Get(ctx, versionObjectKey("rdb", "s1", n))
		if err != nil {
			t.Fatalf("version %d: %v", n, err)
		}
		doc, _, err := fresh.open(ctx, "rdb", versionSealKey("s1", n), blob)
		if err != nil || !jsonEqual(doc, []byte(fmt.Sprintf(`{"n":%d}`, n))) {
			t.Errorf("version %d under the new key after the rotation = %s, %v", n, doc, err)
		}
		if _, _, err := old.open(ctx, "rdb", versionSealKey("s1", n), blob); err == nil {
			t.Errorf("version %d still opens under the old key alone after the rotation", n)
		}
	}
}

// TestVersionsImport: an import's lines are writes like PUTs: each keeps
// its document as the entity's next version, by the importing key.
func TestVersionsImport(t *testing.T) {
	ts := newAuthTestServerOn(t, authConfig{}, newTestFSStore(t))
	ts.mustDo(t, "PUT", "/api/databases/idb", testAdminKey, `{"max_versions":3}`, 200)
	putETag(t, ts, "idb", "k", `{"v":1}`)
	ts.mustDo(t, "POST", "/api/databases/idb/import", testAdminKey, `{"key":"k","doc":{"v":2}}`+"\n"+`{"key":"j","doc":{"v":1}}`+"\n", 200)
	for key, want := range map[string]string{"k": "[1 2]", "j": "[1]"} {
		l := listVersionsOf(t, ts, "idb", key)
		if got := fmt.Sprint(versionNumbers(l)); got != want || l.Versions[len(l.Versions)-1].Principal != "admin" {
			t.Errorf("versions of %s after the import = %+v, want %s, the last by admin", key, l, want)
		}
	}
	if rec := ts.do("GET", "/entity/idb?key=k&version=2", testAdminKey, "", ""); rec.Code != 200 || !jsonEqual(rec.Body.Bytes(), []byte(`{"v":2}`)) {
		t.Errorf("version 2 of k = %d %s, want the imported document", rec.Code, rec.Body)
	}
}
