package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// frontEnds is one data plane behind both front ends: the REST server and
// the gRPC MainWorker service, served on loopback.
type frontEnds struct {
	rest   *restServer
	client pb.MainWorkerClient
	data   *dataPlane
	auth   *authenticator
	// grpcAddr is the address of the gRPC server behind client.
	grpcAddr string
}

// newFrontEnds builds a data plane with an in-process worker over a fresh
// store, keeping the budgets lim, and serves it over REST (in-process) and
// gRPC (a real listener).
func newFrontEnds(t *testing.T, lim budgets) *frontEnds {
	t.Helper()
	st := newMemStore()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	auth, err := newAuthenticator(t.Context(), authConfig{adminKey: testAdminKey, st: st, clientTTL: time.Hour, now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWorker(t, "local", st)
	w.lim = lim // one deployment: the worker has the main worker's budgets
	cat := newCatalog(st)
	rt := newRouter(log, time.Now, 0, cat.wrote, nil)
	rt.add(&workerConn{id: "local", proc: w, stats: w.stats})
	data := newDataPlane(rt, cat, w.schemas, lim)
	svc := newMainService(mainServiceOptions{router: rt, auth: auth, data: data, maxMsg: 4 << 20, log: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpcServerOptions(4 << 20)...)
	pb.RegisterMainWorkerServer(gs, svc)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return &frontEnds{rest: newRESTServer(restOptions{auth: auth, data: data, workers: rt.list, maxBody: 1 << 20, log: log}),
		client: pb.NewMainWorkerClient(dial(t, ln.Addr().String())), data: data, auth: auth, grpcAddr: ln.Addr().String()}
}

// restCall is one REST request of a frontEndCase.
type restCall struct {
	method, target, body string
	// header holds extra request headers ("Name: value").
	header []string
}

// do sends c with credential cred and returns the status and the body.
func (c restCall) do(s http.Handler, cred string) (int, string) {
	req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
	req.Header.Set("Authorization", "Bearer "+cred)
	for _, h := range c.header {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestFrontEndsSameSentence drives the same failing requests through REST
// and gRPC Process over one data plane: each fails with the same sentence
// on both, with the status and the code of one row of the error table,
// and nothing is stored. The PUT of a document that is not JSON has no
// REST twin (a REST PUT body is one JSON object of documents), nor has a
// body nested too deep (REST refuses the body before reading documents).
func TestFrontEndsSameSentence(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDocument: 1024, maxDepth: 8})
	ctx := t.Context()
	if err := fe.data.putSchema(ctx, principal{admin: true}, "order.v1", []byte(`{"type":"object","required":["id"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.data.bind(ctx, "shop", "order.v1"); err != nil {
		t.Fatal(err)
	}
	resp, err := fe.client.Process(ctx, clientProcess("PUT", "shop", "a", testAdminKey, []byte(`{"id": 1}`)))
	if err != nil {
		t.Fatalf("PUT shop/a = %v", err)
	}
	version := resp.GetVersion()
	reader := createTestKey(t, fe.auth, "reader", permRead, nil)
	limited := createTestKey(t, fe.auth, "limited", permRead|permWrite, []string{"other*"})
	big := `{"id": 1, "pad": "` + strings.Repeat("x", 1100) + `"}`
	bigSpaced := "{ \"id\" :\t1 ,\n\"pad\": \"" + strings.Repeat("x", 1100) + "\"}"
	deep := strings.Repeat(`{"a":`, 9) + "1" + strings.Repeat("}", 9)
	cases := []struct {
		name string
		rest restCall
		grpc *pb.ProcessRequest
		// cred is the credential of both calls; "" is the admin key.
		cred string
		// status is the REST status; the gRPC code is its row's.
		status int
		// want is a part of the sentence, so that a case fails for the
		// reason it names.
		want string
	}{
		{"bad database name", restCall{method: "GET", target: "/entity/-shop?key=a"},
			&pb.ProcessRequest{Operation: "GET", DatabaseName: "-shop", EntityKey: "a"}, "", 400, `database name "-shop"`},
		{"bad entity key", restCall{method: "GET", target: "/entity/shop?key=a%2Fb"},
			&pb.ProcessRequest{Operation: "GET", DatabaseName: "shop", EntityKey: "a/b"}, "", 400, `entity key "a/b"`},
		{"bad schema id", restCall{method: "PUT", target: "/entity/shop?schema=-x", body: `{"b":{"id":1}}`},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "b", SchemaId: "-x", Payload: []byte(`{"id":1}`)}, "", 400, `schema id "-x"`},
		{"schema failure on PUT", restCall{method: "PUT", target: "/entity/shop", body: `{"b":{"x":1}}`},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "b", Payload: []byte(`{"x":1}`)}, "", 400,
			`documents do not match schema "order.v1": "b": at (root): missing property 'id'`},
		{"unknown schema on PUT", restCall{method: "PUT", target: "/entity/shop?schema=nope.v1", body: `{"b":{"id":1}}`},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "b", SchemaId: "nope.v1", Payload: []byte(`{"id":1}`)}, "", 400,
			`unknown schema "nope.v1"`},
		{"schema failure on PATCH", restCall{method: "PATCH", target: "/entity/shop?key=a", body: `{"id":null}`, header: []string{"Content-Type: " + mergePatchType}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "a", ContentType: mergePatchType, Payload: []byte(`{"id":null}`)}, "", 400,
			`schema "order.v1": at (root): missing property 'id'`},
		{"If-Match does not hold", restCall{method: "PUT", target: "/entity/shop", body: `{"a":{"id":2}}`, header: []string{`If-Match: "nope"`}},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "a", IfMatch: "nope", Payload: []byte(`{"id":2}`)}, "", 412,
			`If-Match: entity "a" in database "shop" has version`},
		{"If-None-Match on an existing entity", restCall{method: "PATCH", target: "/entity/shop?key=a", body: `{"id":3}`, header: []string{"If-None-Match: *", "Content-Type: " + mergePatchType}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "a", IfNoneMatch: "*", ContentType: mergePatchType, Payload: []byte(`{"id":3}`)}, "", 412,
			`If-None-Match: entity "a" in database "shop" exists`},
		{"GET of a missing entity", restCall{method: "GET", target: "/entity/shop?key=nope"},
			&pb.ProcessRequest{Operation: "GET", DatabaseName: "shop", EntityKey: "nope"}, "", 404, `entity "nope" not found in database "shop"`},
		{"DELETE of a missing entity", restCall{method: "DELETE", target: "/entity/shop?key=nope"},
			&pb.ProcessRequest{Operation: "DELETE", DatabaseName: "shop", EntityKey: "nope"}, "", 404, `entity "nope" not found in database "shop"`},
		{"PATCH on a missing entity", restCall{method: "PATCH", target: "/entity/shop?key=nope", body: `{"id":1}`, header: []string{"Content-Type: " + mergePatchType}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "nope", ContentType: mergePatchType, Payload: []byte(`{"id":1}`)}, "", 404,
			`entity "nope" not found in database "shop"`},
		{"document too large", restCall{method: "PUT", target: "/entity/shop", body: `{"b":` + big + `}`},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "b", Payload: []byte(big)}, "", 413,
			`document "b" of 1120 bytes exceeds the document limit of 1024 bytes`},
		{"document too large, with whitespace", restCall{method: "PUT", target: "/entity/shop", body: `{"b":` + bigSpaced + `}`},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "b", Payload: []byte(bigSpaced)}, "", 413,
			`document "b" of 1123 bytes exceeds the document limit of 1024 bytes`},
		{"document too large, body split the slow way", restCall{method: "PUT", target: "/entity/shop", body: `{"\u0062":` + big + `}`},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "b", Payload: []byte(big)}, "", 413,
			`document "b" of 1120 bytes exceeds the document limit of 1024 bytes`},
		{"patch nested too deep", restCall{method: "PATCH", target: "/entity/shop?key=a", body: deep, header: []string{"Content-Type: " + mergePatchType}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "a", ContentType: mergePatchType, Payload: []byte(deep)}, "", 413,
			"patch nests arrays and objects deeper than the limit of 8 levels"},
		{"patch not UTF-8", restCall{method: "PATCH", target: "/entity/shop?key=a", body: "{\"id\":\"\xff\"}", header: []string{"Content-Type: " + mergePatchType}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "a", ContentType: mergePatchType, Payload: []byte("{\"id\":\"\xff\"}")}, "", 400,
			"patch is not valid UTF-8"},
		{"patch not JSON", restCall{method: "PATCH", target: "/entity/shop?key=a", body: `{"id":`, header: []string{"Content-Type: " + mergePatchType}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "a", ContentType: mergePatchType, Payload: []byte(`{"id":`)}, "", 400,
			"JSON"},
		{"JSON Patch that does not apply", restCall{method: "PATCH", target: "/entity/shop?key=a", body: `[{"op":"test","path":"/id","value":9}]`, header: []string{"Content-Type: " + jsonPatchType}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "a", ContentType: jsonPatchType, Payload: []byte(`[{"op":"test","path":"/id","value":9}]`)}, "", 409,
			"test"},
		{"patch of another media type", restCall{method: "PATCH", target: "/entity/shop?key=a", body: `{"id":2}`, header: []string{"Content-Type: text/plain"}},
			&pb.ProcessRequest{Operation: "PATCH", DatabaseName: "shop", EntityKey: "a", ContentType: "text/plain", Payload: []byte(`{"id":2}`)}, "", 415,
			`Content-Type "text/plain": PATCH takes`},
		{"write without the write permission", restCall{method: "PUT", target: "/entity/shop", body: `{"a":{"id":2}}`},
			&pb.ProcessRequest{Operation: "PUT", DatabaseName: "shop", EntityKey: "a", Payload: []byte(`{"id":2}`)}, reader, 403,
			"this credential lacks the write permission"},
		{"database outside the credential's limit", restCall{method: "GET", target: "/entity/shop?key=a"},
			&pb.ProcessRequest{Operation: "GET", DatabaseName: "shop", EntityKey: "a"}, limited, 403,
			`this credential may not access database "shop"`},
		{"unknown credential", restCall{method: "GET", target: "/entity/shop?key=a"},
			&pb.ProcessRequest{Operation: "GET", DatabaseName: "shop", EntityKey: "a"}, "dk_never-issued", 401, ""},
	}
	for _, c := range cases {
		cred := c.cred
		if cred == "" {
			cred = testAdminKey
		}
		code, body := c.rest.do(fe.rest, cred)
		var answer struct{ Error string }
		if err := json.Unmarshal([]byte(body), &answer); err != nil || code != c.status {
			t.Errorf("%s: REST %s %s = %d %s, want %d and an error body", c.name, c.rest.method, c.rest.target, code, body, c.status)
			continue
		}
		c.grpc.Token = cred
		_, err := fe.client.Process(ctx, c.grpc)
		wantCode := grpcCode(reqErrorf(sentinelOfStatus(t, c.status), "x"))
		if got := status.Code(err); got != wantCode {
			t.Errorf("%s: gRPC Process = %v, want %v (REST %d)", c.name, err, wantCode, c.status)
		}
		if got := errorMessage(err); got != answer.Error || !strings.Contains(got, c.want) {
			t.Errorf("%s: sentences differ or miss %q:\nREST %q\ngRPC %q", c.name, c.want, answer.Error, got)
		}
	}
	got, err := fe.client.Process(ctx, clientProcess("GET", "shop", "a", testAdminKey, nil))
	if err != nil || string(got.GetResult()) != `{"id":1}` || got.GetVersion() != version {
		t.Errorf("shop/a after the failed requests = %s (version %q), %v; want {\"id\":1} at version %q", got.GetResult(), got.GetVersion(), err, version)
	}
	if _, _, found, _ := fe.data.readEntity(ctx, "shop", "b"); found {
		t.Error("shop/b exists after refused PUTs")
	}
}

// TestFrontEndsStoreSameDocument: the same document, with whitespace and
// escapes, PUT through REST (its body split in one pass, or the slow way
// for an escaped key) and through gRPC, is stored as the same bytes,
// json.Compact's.
func TestFrontEndsStoreSameDocument(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	doc := "{ \"text\" : \"a \\\" b\\u00e9\\n\" ,\r\n \"n\": [ 1 , 2.5e3 , { } ] }"
	var want bytes.Buffer
	if err := json.Compact(&want, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"r": ` + doc + ` }`, `{"\u0073": ` + doc + `}`} {
		if code, answer := (restCall{method: "PUT", target: "/entity/shop", body: body}).do(fe.rest, testAdminKey); code != 200 {
			t.Fatalf("REST PUT %s = %d %s", body, code, answer)
		}
	}
	if _, err := fe.client.Process(t.Context(), clientProcess("PUT", "shop", "g", testAdminKey, []byte(doc))); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"r", "s", "g"} {
		got, _, found, err := fe.data.readEntity(t.Context(), "shop", key)
		if err != nil || !found || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("shop/%s = %q (found %v, %v), want %q", key, got, found, err, want.Bytes())
		}
	}
}

// sentinelOfStatus is the sentinel of the error table's first row with
// HTTP status code.
func sentinelOfStatus(t *testing.T, code int) error {
	t.Helper()
	for _, k := range errorTable {
		if k.status == code {
			return k.err
		}
	}
	t.Fatalf("no row of errorTable has status %d", code)
	return nil
}

// TestFrontEndsPatchWithoutRead: a PATCH by a principal that may write but
// not read is applied and answers the new version, and no document, on
// both front ends.
func TestFrontEndsPatchWithoutRead(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	ctx := t.Context()
	writer := createTestKey(t, fe.auth, "writer", permWrite, nil)
	if _, err := fe.client.Process(ctx, clientProcess("PUT", "db", "k", testAdminKey, []byte(`{"n":0}`))); err != nil {
		t.Fatal(err)
	}
	code, body := restCall{method: "PATCH", target: "/entity/db?key=k", body: `{"n":1}`,
		header: []string{"Content-Type: " + mergePatchType}}.do(fe.rest, writer)
	if code != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("REST PATCH without read = %d %s, want 200 {\"status\":\"ok\"}", code, body)
	}
	resp, err := fe.client.Process(ctx, clientProcess("PATCH", "db", "k", writer, []byte(`{"n":2}`)))
	if err != nil || len(resp.GetResult()) != 0 || resp.GetVersion() == "" {
		t.Errorf("gRPC PATCH without read = result %q version %q, %v; want no result and a version", resp.GetResult(), resp.GetVersion(), err)
	}
	got, err := fe.client.Process(ctx, clientProcess("GET", "db", "k", testAdminKey, nil))
	if err != nil || string(got.GetResult()) != `{"n":2}` {
		t.Errorf("db/k after both patches = %s, %v; want {\"n\":2}", got.GetResult(), err)
	}
}

// createTestKey creates an API key and returns its secret.
func createTestKey(t *testing.T, auth *authenticator, name string, perms perm, dbs []string) string {
	t.Helper()
	var names []string
	for _, p := range []perm{permRead, permWrite, permAdmin} {
		if perms&p != 0 {
			names = append(names, permName(p))
		}
	}
	k, err := auth.createKey(context.Background(), keyRequest{Name: name, Permissions: names, Databases: dbs})
	if err != nil {
		t.Fatal(err)
	}
	return k.Secret
}

// TestDepthLimitSameForEveryWrite: with a depth limit of 3, a document
// nested 3 deep is stored and one nested 4 deep refused (413) however it
// is written: PUT over REST and gRPC, an import's line, the result of a
// JSON Patch or of a merge patch. A JSON Patch's value was refused two
// levels earlier, counted with the array and the operation around it.
func TestDepthLimitSameForEveryWrite(t *testing.T) {
	fe := newFrontEnds(t, budgets{maxDepth: 3})
	jsonPatch := func(op, path, v string) string {
		return `[{"op":"` + op + `","path":"` + path + `","value":` + v + `}]`
	}
	for _, c := range []struct {
		doc  string
		want int
	}{{`[[[1]]]`, 200}, {`[[[[1]]]]`, 413}} {
		for _, call := range []struct {
			name string
			restCall
		}{
			{"REST PUT", restCall{method: "PUT", target: "/entity/d", body: `{"k":` + c.doc + `}`}},
			{"import", restCall{method: "POST", target: "/api/databases/d/import", body: `{"key":"k","doc":` + c.doc + `}`}},
			{"JSON Patch", restCall{method: "PATCH", target: "/entity/d?key=k", body: jsonPatch("replace", "", c.doc), header: []string{"Content-Type: " + jsonPatchType}}},
			{"merge patch", restCall{method: "PATCH", target: "/entity/d?key=k", body: c.doc, header: []string{"Content-Type: " + mergePatchType}}},
		} {
			code, body := call.do(fe.rest, testAdminKey)
			if call.name == "import" && code == 400 && strings.Contains(body, `"imported":0`) {
				code = 413 // the line refused: the report says why
			}
			if code != c.want || c.want == 413 && !strings.Contains(body, "limit of 3 levels") {
				t.Errorf("%s of %s = %d %s, want %d", call.name, c.doc, code, body, c.want)
			}
		}
		wantCode := map[int]codes.Code{200: codes.OK, 413: codes.ResourceExhausted}[c.want]
		grpc := map[string]*pb.ProcessRequest{
			"gRPC PUT":        clientProcess("PUT", "d", "k", testAdminKey, []byte(c.doc)),
			"gRPC JSON Patch": {Operation: "PATCH", DatabaseName: "d", EntityKey: "k", Token: testAdminKey, ContentType: jsonPatchType, Payload: []byte(jsonPatch("replace", "", c.doc))},
		}
		for name, req := range grpc {
			if _, err := fe.client.Process(t.Context(), req); status.Code(err) != wantCode {
				t.Errorf("%s of %s = %v, want %v", name, c.doc, err, wantCode)
			}
		}
	}
	// A value within the limit that makes the document deeper than it.
	code, body := restCall{method: "PATCH", target: "/entity/d?key=k", body: jsonPatch("add", "/0/0/-", "[1]"),
		header: []string{"Content-Type: " + jsonPatchType}}.do(fe.rest, testAdminKey)
	if code != 413 || !strings.Contains(body, "the patched document nests arrays and objects deeper than the limit of 3 levels") {
		t.Errorf("JSON Patch adding [1] at depth 3 = %d %s, want 413 for the patched document", code, body)
	}
}
