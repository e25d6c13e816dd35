package main

// Tests of the handlers added or fixed: PUT with ?key=, a
// repeated key=, 201 on key creation, deleting databases and schemas,
// reading many entities, validating without storing, and listing keys
// with their documents.

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// decodeInto decodes an answer body into v or fails the test.
func decodeInto(t *testing.T, what string, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: answer %q: %v", what, body, err)
	}
}

// TestPutWithKeyQueryStoresNothing is the finding: PUT /entity/scratch?key=profile_1
// with a document as body stored its members as entities "name" and "email".
func TestPutWithKeyQueryStoresNothing(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	rec := ts.do("PUT", "/entity/scratch?key=profile_1", testAdminKey, `{"name":"Ada","email":"ada@example.com"}`, "")
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "profile_1") {
		t.Errorf("PUT with ?key= = %d %s, want 400 naming the key", rec.Code, rec.Body)
	}
	ts.mustDo(t, "GET", "/api/databases/scratch", testAdminKey, "", 404)
	ts.mustDo(t, "GET", "/entity/scratch?key=name", testAdminKey, "", 404)
	// A repeated key= is refused, not answered with one of them.
	ts.mustDo(t, "PUT", "/entity/scratch", testAdminKey, `{"a":1,"b":2}`, 200)
	if rec := ts.do("GET", "/entity/scratch?key=a&key=b", testAdminKey, "", ""); rec.Code != 400 {
		t.Errorf("GET with key=a&key=b = %d %s, want 400", rec.Code, rec.Body)
	}
	ts.mustDo(t, "DELETE", "/entity/scratch?key=a&key=b", testAdminKey, "", 400)
	ts.mustDo(t, "GET", "/entity/scratch?key=a", testAdminKey, "", 200)
	ts.mustDo(t, "GET", "/entity/scratch?key=b", testAdminKey, "", 200)
}

// TestCreateKeyCreated: POST /api/keys answers 201 with the Location of
// the new key, which DELETE accepts.
func TestCreateKeyCreated(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	rec := ts.do("POST", "/api/keys", testAdminKey, `{"name":"r","permissions":["read"]}`, "")
	var k newKey
	decodeInto(t, "POST /api/keys", rec.Body.Bytes(), &k)
	if rec.Code != 201 || rec.Header().Get("Location") != "/api/keys/"+k.ID {
		t.Fatalf("POST /api/keys = %d Location %q, want 201 /api/keys/%s", rec.Code, rec.Header().Get("Location"), k.ID)
	}
	ts.mustDo(t, "DELETE", rec.Header().Get("Location"), testAdminKey, "", 200)
	ts.mustDo(t, "GET", "/api/me", k.Secret, "", 401)
}

// TestDeleteDatabase: every entity and the binding go, through the write
// path (a cached entity is not served afterwards), the database leaves
// the listings, and a repeat answers 0.
func TestDeleteDatabase(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/schema/any.v1", testAdminKey, `{}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/big", testAdminKey, `{"schema":"any.v1"}`, 200)
	const n = 2500
	for start := 0; start < n; start += 1000 {
		batch := map[string]any{}
		for i := start; i < min(n, start+1000); i++ {
			batch[fmt.Sprintf("k%05d", i)] = map[string]int{"i": i}
		}
		b, _ := json.Marshal(batch)
		ts.mustDo(t, "PUT", "/entity/big", testAdminKey, string(b), 200)
	}
	ts.mustDo(t, "PUT", "/entity/kept", testAdminKey, `{"k00001":1}`, 200)
	ts.mustDo(t, "GET", "/entity/big?key=k00001", testAdminKey, "", 200) // cached now
	var got struct{ Deleted *int }
	decodeInto(t, "DELETE", ts.mustDo(t, "DELETE", "/api/databases/big", testAdminKey, "", 200), &got)
	if got.Deleted == nil || *got.Deleted != n {
		t.Fatalf("DELETE /api/databases/big deleted %v, want %d", got.Deleted, n)
	}
	ts.mustDo(t, "GET", "/entity/big?key=k00001", testAdminKey, "", 404)
	ts.mustDo(t, "GET", "/api/databases/big", testAdminKey, "", 404)
	if objs, err := ts.st.List(t.Context(), entityKeyPrefix("big", ""), "", 0); err != nil || len(objs) != 0 {
		t.Errorf("storage still holds %d entities of big (err %v)", len(objs), err)
	}
	var dbs []string
	decodeInto(t, "GET /api/databases", ts.mustDo(t, "GET", "/api/databases", testAdminKey, "", 200), &dbs)
	if !slices.Equal(dbs, []string{"kept"}) {
		t.Errorf("GET /api/databases = %q, want [kept]", dbs)
	}
	ts.mustDo(t, "GET", "/entity/kept?key=k00001", testAdminKey, "", 200)
	// The binding went with it: any document may be written again, and
	// the schema may be deleted.
	ts.mustDo(t, "DELETE", "/schema/any.v1", testAdminKey, "", 200)
	decodeInto(t, "DELETE again", ts.mustDo(t, "DELETE", "/api/databases/big", testAdminKey, "", 200), &got)
	if *got.Deleted != 0 {
		t.Errorf("second DELETE deleted %d, want 0", *got.Deleted)
	}
}

// TestDeleteDatabaseWithConcurrentWrites: entities written while the
// database is deleted are deleted too when the index shows them before
// the delete ends, and every entity is deleted at most once: the counts of
// the deletes add up to what was written.
func TestDeleteDatabaseWithConcurrentWrites(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	var wg sync.WaitGroup
	writes := 300
	ts.mustDo(t, "PUT", "/entity/busy", testAdminKey, `{"seed":1}`, 200)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range writes {
			if rec := ts.do("PUT", "/entity/busy", testAdminKey, fmt.Sprintf(`{"w%03d":1}`, i), ""); rec.Code != 200 {
				t.Errorf("PUT w%03d = %d %s", i, rec.Code, rec.Body)
				return
			}
		}
	}()
	deleted := 0
	for range 3 {
		var got struct{ Deleted int }
		decodeInto(t, "DELETE", ts.mustDo(t, "DELETE", "/api/databases/busy", testAdminKey, "", 200), &got)
		deleted += got.Deleted
	}
	wg.Wait()
	var got struct{ Deleted int }
	decodeInto(t, "DELETE", ts.mustDo(t, "DELETE", "/api/databases/busy", testAdminKey, "", 200), &got)
	if deleted+got.Deleted != writes+1 {
		t.Errorf("deletes counted %d, want %d (every entity written once)", deleted+got.Deleted, writes+1)
	}
	ts.mustDo(t, "GET", "/api/databases/busy", testAdminKey, "", 404)
}

// TestDeleteSchema: a bound schema is a 409 naming every bound database;
// once unbound it goes, and nothing uses it afterwards.
func TestDeleteSchema(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/schema/chat.v1", testAdminKey, `{"type":"object"}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/a1", testAdminKey, `{"schema":"chat.v1"}`, 200)
	ts.mustDo(t, "PUT", "/api/databases/b2", testAdminKey, `{"schema":"chat.v1"}`, 200)
	rec := ts.do("DELETE", "/schema/chat.v1", testAdminKey, "", "")
	if rec.Code != 409 || !strings.Contains(rec.Body.String(), `databases \"a1\", \"b2\"`) {
		t.Errorf("DELETE bound schema = %d %s, want 409 naming a1 and b2", rec.Code, rec.Body)
	}
	ts.mustDo(t, "PUT", "/api/databases/a1", testAdminKey, `{"schema":null}`, 200)
	rec = ts.do("DELETE", "/schema/chat.v1", testAdminKey, "", "")
	if rec.Code != 409 || !strings.Contains(rec.Body.String(), `database \"b2\"`) || strings.Contains(rec.Body.String(), "a1") {
		t.Errorf("DELETE schema bound to b2 = %d %s, want 409 naming only b2", rec.Code, rec.Body)
	}
	ts.mustDo(t, "GET", "/schema/chat.v1", "", "", 200)
	ts.mustDo(t, "PUT", "/api/databases/b2", testAdminKey, `{"schema":""}`, 200)
	ts.mustDo(t, "DELETE", "/schema/chat.v1", testAdminKey, "", 200)
	ts.mustDo(t, "GET", "/schema/chat.v1", "", "", 404)
	ts.mustDo(t, "PUT", "/entity/a1?schema=chat.v1", testAdminKey, `{"k":{}}`, 400)
	ts.mustDo(t, "POST", "/schema/chat.v1/validate", testAdminKey, `{}`, 404)
	ts.mustDo(t, "PUT", "/api/databases/a1", testAdminKey, `{"schema":"chat.v1"}`, 400)
	if got := strings.TrimSpace(string(ts.mustDo(t, "GET", "/admin/schemas", "", "", 200))); got != "[]" {
		t.Errorf("GET /admin/schemas = %s, want []", got)
	}
	ts.mustDo(t, "DELETE", "/schema/chat.v1", testAdminKey, "", 404)
}

// validateReply is the answer of POST /schema/{id}/validate.
type validateReply struct {
	Valid   *bool
	Error   *string
	Errors  []validationIssue
	Omitted int
}

// TestValidateEndpoint: 200 {"valid": true}, or 422 with a sentence in
// "error" (as every error answer) and every violation as {path, message},
// in document order of the paths, the same bytes on every call; nothing is
// stored.
func TestValidateEndpoint(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/schema/chat.v1", testAdminKey, chatSchema, 200)
	var ok validateReply
	decodeInto(t, "valid", ts.mustDo(t, "POST", "/schema/chat.v1/validate", testAdminKey,
		`{"title":"t","messages":[{"role":"user","content":"hi"}]}`, 200), &ok)
	if ok.Valid == nil || !*ok.Valid || ok.Errors != nil || ok.Error != nil {
		t.Errorf("valid document: %+v, want valid true and no error or errors", ok)
	}
	msgs := make([]string, 12)
	for i := range msgs {
		msgs[i] = `{"role":"user","content":"x"}`
	}
	msgs[2], msgs[10] = `{"role":"bot","content":"x"}`, `{"content":5}`
	doc := `{"title":"t","messages":[` + strings.Join(msgs, ",") + `]}`
	first := ts.mustDo(t, "POST", "/schema/chat.v1/validate", testAdminKey, doc, 422)
	var bad validateReply
	decodeInto(t, "invalid", first, &bad)
	var paths []string
	for _, e := range bad.Errors {
		paths = append(paths, e.Path)
		if e.Message == "" {
			t.Errorf("error at %s has no message", e.Path)
		}
	}
	if bad.Valid == nil || *bad.Valid || !slices.Equal(paths, []string{"/messages/2/role", "/messages/10", "/messages/10/content"}) {
		t.Errorf("invalid document: %s, want valid false and errors at /messages/2/role, /messages/10, /messages/10/content", first)
	}
	if want := `the document does not match schema "chat.v1"`; bad.Error == nil || *bad.Error != want {
		t.Errorf("invalid document: %s, want the error %q", first, want)
	}
	for range 20 {
		if again := ts.mustDo(t, "POST", "/schema/chat.v1/validate", testAdminKey, doc, 422); string(again) != string(first) {
			t.Fatalf("answers differ between calls:\n%s\n%s", first, again)
		}
	}
	// The library reports the members of an object in map order; the
	// answer does not.
	ts.mustDo(t, "PUT", "/schema/strings.v1", testAdminKey, `{"additionalProperties":{"type":"string"}}`, 200)
	members := `{"m":1,"c":1,"x":1,"a":1,"q":1,"f":1,"z":1,"b":1,"k":1,"e":1,"t":1,"h":1}`
	first = ts.mustDo(t, "POST", "/schema/strings.v1/validate", testAdminKey, members, 422)
	decodeInto(t, "members", first, &bad)
	paths = nil
	for _, e := range bad.Errors {
		paths = append(paths, e.Path)
	}
	if want := []string{"/a", "/b", "/c", "/e", "/f", "/h", "/k", "/m", "/q", "/t", "/x", "/z"}; !slices.Equal(paths, want) {
		t.Errorf("paths of 12 members = %q, want %q", paths, want)
	}
	for range 20 {
		if again := ts.mustDo(t, "POST", "/schema/strings.v1/validate", testAdminKey, members, 422); string(again) != string(first) {
			t.Fatalf("answers differ between calls:\n%s\n%s", first, again)
		}
	}
	// Past maxValidationMessages the rest are counted, not listed.
	many := make([]string, 80)
	for i := range many {
		many[i] = `{"role":"bot","content":"x"}`
	}
	decodeInto(t, "many", ts.mustDo(t, "POST", "/schema/chat.v1/validate", testAdminKey,
		`{"title":"t","messages":[`+strings.Join(many, ",")+`]}`, 422), &bad)
	if len(bad.Errors) != maxValidationMessages || bad.Omitted != 80-maxValidationMessages || bad.Errors[1].Path != "/messages/1/role" {
		t.Errorf("80 violations: %d errors (second at %s), %d omitted; want %d, /messages/1/role, %d", len(bad.Errors),
			bad.Errors[1].Path, bad.Omitted, maxValidationMessages, 80-maxValidationMessages)
	}
	if got := strings.TrimSpace(string(ts.mustDo(t, "GET", "/api/databases", testAdminKey, "", 200))); got != "[]" {
		t.Errorf("after validating, GET /api/databases = %s, want []", got)
	}
}

// TestGetMany: documents and ETags (the ones GET answers) of the keys
// that exist, the others in missing, each once, in the order asked.
func TestGetMany(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/chat", testAdminKey, `{"a":{"n":1},"b":[2],"c":"three"}`, 200)
	var got struct {
		Documents map[string]json.RawMessage
		ETags     map[string]string
		Missing   []string
	}
	decodeInto(t, "get", ts.mustDo(t, "POST", "/api/databases/chat/get", testAdminKey,
		`{"keys":["z","c","a","y","a","z"]}`, 200), &got)
	if len(got.Documents) != 2 || string(got.Documents["a"]) != `{"n":1}` || string(got.Documents["c"]) != `"three"` {
		t.Errorf("documents = %s, want a and c", got.Documents)
	}
	if !slices.Equal(got.Missing, []string{"z", "y"}) {
		t.Errorf("missing = %q, want [z y]", got.Missing)
	}
	for _, k := range []string{"a", "c"} {
		rec := ts.do("GET", "/entity/chat?key="+k, testAdminKey, "", "")
		if got.ETags[k] == "" || got.ETags[k] != rec.Header().Get("ETag") {
			t.Errorf("etag of %s = %q, GET answers %q", k, got.ETags[k], rec.Header().Get("ETag"))
		}
	}
	empty := ts.mustDo(t, "POST", "/api/databases/nothing/get", testAdminKey, `{"keys":[]}`, 200)
	if got := strings.TrimSpace(string(empty)); got != `{"documents":{},"etags":{},"modified":{},"missing":[],"remaining":[]}` {
		t.Errorf("no keys: %s, want empty documents, etags, modified, missing and remaining", got)
	}
}

// TestListIncludeDocs pages through a database with include_docs=true:
// every entity once, in key order, with the document and ETag GET
// answers.
func TestListIncludeDocs(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	batch := map[string]any{}
	for i := range 250 {
		batch[fmt.Sprintf("s%03d", i)] = map[string]int{"i": i}
	}
	b, _ := json.Marshal(batch)
	ts.mustDo(t, "PUT", "/entity/docs", testAdminKey, string(b), 200)
	ts.mustDo(t, "PUT", "/entity/docs", testAdminKey, `{"t":1}`, 200)
	i, cursor := 0, ""
	for pages := 1; ; pages++ {
		q := url.Values{"include_docs": {"true"}, "prefix": {"s"}, "limit": {"100"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Items []struct {
				Key, ETag string
				Doc       struct{ I int }
			}
			Next string
			Keys []string
		}
		decodeInto(t, "page", ts.mustDo(t, "GET", "/api/databases/docs/keys?"+q.Encode(), testAdminKey, "", 200), &page)
		if page.Keys != nil {
			t.Errorf("page %d has keys as well as items", pages)
		}
		for _, it := range page.Items {
			if it.Key != fmt.Sprintf("s%03d", i) || it.Doc.I != i {
				t.Fatalf("item %d = %+v, want key s%03d with i %d", i, it, i, i)
			}
			if i%50 == 0 {
				if etag := ts.do("GET", "/entity/docs?key="+it.Key, testAdminKey, "", "").Header().Get("ETag"); etag != it.ETag {
					t.Errorf("item %s etag %q, GET answers %q", it.Key, it.ETag, etag)
				}
			}
			i++
		}
		if page.Next == "" {
			if pages != 3 || i != 250 {
				t.Errorf("listed %d items on %d pages, want 250 on 3", i, pages)
			}
			return
		}
		cursor = page.Next
	}
}

// TestDeleteDatabaseAfterCrash kills the real binary half-way through a
// DELETE /api/databases/{db} of many entities, restarts it, and repeats the
// request: it answers 200 with the rest, and nothing of the database is
// left, neither an entity nor the binding.
func TestDeleteDatabaseAfterCrash(t *testing.T) {
	n, dir := startDefault(t)
	c := entityClient{t, n.base}
	const total = 2000
	for start := 0; start < total; start += 1000 {
		batch := map[string]any{}
		for i := start; i < start+1000; i++ {
			batch[fmt.Sprintf("e%05d", i)] = map[string]int{"i": i}
		}
		c.want(c.do("PUT", "/entity/crash", batch), 200, "PUT batch")
	}
	c.want(c.do("PUT", "/schema/any.v1", `{}`), 200, "PUT schema")
	c.want(c.do("PUT", "/api/databases/crash", `{"schema":"any.v1"}`), 200, "bind")
	entities := func(c entityClient) int {
		var info struct{ Entities int }
		decodeInto(t, "GET database", c.want(c.do("GET", "/api/databases/crash", nil), 200, "GET database").body, &info)
		return info.Entities
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.send("DELETE", "/api/databases/crash", nil) // cut short by the kill below
	}()
	deadline := time.Now().Add(time.Minute)
	for entities(c) > total-100 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	n.kill()
	<-done

	n = startNode(t, keyEnv, "-shared-fs="+dir)
	c = entityClient{t, n.base}
	left := entities(c)
	if left <= 0 || left >= total {
		t.Fatalf("after the kill %d of %d entities are left, want some deleted and some not", left, total)
	}
	var got struct{ Deleted int }
	decodeInto(t, "DELETE", c.want(c.do("DELETE", "/api/databases/crash", nil), 200, "DELETE after restart").body, &got)
	if got.Deleted != left {
		t.Errorf("DELETE after restart deleted %d, want the %d left", got.Deleted, left)
	}
	c.want(c.do("GET", "/api/databases/crash", nil), 404, "GET deleted database")
	if r := c.want(c.do("GET", "/api/databases", nil), 200, "list"); strings.Contains(string(r.body), "crash") {
		t.Errorf("GET /api/databases = %s, still lists crash", r.body)
	}
	var files []string
	filepath.WalkDir(filepath.Join(dir, "files", "crash"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Errorf("%d files left under files/crash, such as %s", len(files), files[0])
	}
	c.want(c.do("DELETE", "/schema/any.v1", nil), 200, "DELETE the schema, no longer bound")
	decodeInto(t, "DELETE", c.want(c.do("DELETE", "/api/databases/crash", nil), 200, "DELETE again").body, &got)
	if got.Deleted != 0 {
		t.Errorf("DELETE of a deleted database deleted %d, want 0", got.Deleted)
	}
}

// TestFailedBatchWritesNothing: a multi-key PUT that fails, on a document
// that does not match ?schema= or the database's bound schema, or on one
// key's precondition, answers its error and writes none of its keys, read
// back through the API. The failing key sorts last, so a batch validated
// or checked only as it is written would have stored the others first.
func TestFailedBatchWritesNothing(t *testing.T) {
	ts := httptest.NewServer(newLocalREST(t))
	t.Cleanup(ts.Close)
	c := entityClient{t, ts.URL}
	c.want(c.do("PUT", "/schema/chat.v1", chatSchema), 200, "PUT schema")
	c.want(c.do("PUT", "/api/databases/bound", `{"schema":"chat.v1"}`), 200, "bind")
	valid, invalid := `{"messages":[]}`, `{"messages":[{"role":"robot","content":1}]}`
	batch := `{"a1":` + valid + `,"b2":` + valid + `,"zz9":` + invalid + `}`
	c.want(c.do("PUT", "/entity/free?schema=chat.v1", batch), 400, "PUT ?schema= batch with an invalid document")
	c.want(c.do("PUT", "/entity/bound", batch), 400, "PUT batch with an invalid document into a bound database")
	c.want(c.do("PUT", "/entity/pre", `{"zz9":1}`), 200, "PUT pre/zz9")
	stale := c.want(c.do("PUT", "/entity/other", `{"k":1}`), 200, "PUT other/k").etag()
	c.want(c.do("PUT", "/entity/pre?if_match=zz9:"+url.QueryEscape(stale), `{"a1":2,"b2":2,"zz9":2}`), 412, "PUT batch with a stale if_match")
	for _, db := range []string{"free", "bound", "pre"} {
		for _, key := range []string{"a1", "b2"} {
			c.want(c.do("GET", "/entity/"+db+"?key="+key, nil), 404, "GET "+db+"/"+key+" after the failed batch")
		}
	}
	c.want(c.do("GET", "/entity/free?key=zz9", nil), 404, "GET free/zz9 after the failed batch")
	if got := c.do("GET", "/entity/pre?key=zz9", nil); string(got.body) != "1" {
		t.Errorf("pre/zz9 after the failed batch = %s, want 1", got.body)
	}
	// The control: the same batch without its failing member is written.
	c.want(c.do("PUT", "/entity/bound", `{"a1":`+valid+`,"b2":`+valid+`}`), 200, "PUT valid batch")
	c.want(c.do("GET", "/entity/bound?key=b2", nil), 200, "GET bound/b2 after the valid batch")
}
