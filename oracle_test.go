package main

// Regression tests of permission oracles: a key that may write
// but not read must learn nothing of a stored document through a PATCH's
// errors. Each probe is named after what it read on f1f22b5 (a pattern
// quoting a value, additionalProperties listing member names, minimum and
// maxLength telling numbers and lengths, JSON Patch "test" answering
// yes or no), and runs against the binary on both front ends: REST and
// gRPC Process.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// The stored document the probes try to read: a value, a member name and
// a number (7731, which the schema library writes 7,731) no request of
// theirs contains.
const (
	oracleSecret = "TOPSECRET-DOCVALUE-7731"
	oracleMember = "internal_note_4471"
	oracleDoc    = `{"internal_note_4471":"x","pin":7731,"secret":"TOPSECRET-DOCVALUE-7731","title":"t"}`
)

// oracleProbe is one schema a write-only key used to read the document
// through validation errors: leak is what its messages showed.
type oracleProbe struct {
	id, schema, leak string
}

// oracleServer is a server holding oracleDoc at vault/k, with a key that
// may only write and one that may read and write.
type oracleServer struct {
	main           *node
	client         pb.MainWorkerClient
	writer, reader string
}

// newOracleServer stores oracleDoc on main and creates the two keys.
func newOracleServer(t *testing.T, main *node) *oracleServer {
	t.Helper()
	if code, out, _ := main.call("PUT", "/entity/vault", testAdminKey, `{"k":`+oracleDoc+`}`); code != 200 {
		t.Fatalf("PUT vault/k = %d %s", code, out)
	}
	return &oracleServer{main: main, client: pb.NewMainWorkerClient(dial(t, main.logAddr("grpc listening"))),
		writer: oracleKey(t, main, "writer", "write"), reader: oracleKey(t, main, "reader", "read", "write")}
}

// oracleKey creates an API key with perms and returns its secret.
func oracleKey(t *testing.T, n *node, name string, perms ...string) string {
	t.Helper()
	code, out, _ := n.call("POST", "/api/keys", testAdminKey, map[string]any{"name": name, "permissions": perms})
	var k struct{ Secret string }
	if err := json.Unmarshal(out, &k); code != http.StatusCreated || err != nil || k.Secret == "" {
		t.Fatalf("POST /api/keys %s = %d %s", name, code, out)
	}
	return k.Secret
}

// patchAnswer is what a client learns from one PATCH: the status (REST) or
// code (gRPC) and the error sentence ("" on success).
type patchAnswer struct {
	status   int
	code     codes.Code
	sentence string
}

// patchREST sends a PATCH of vault/k with cred over REST.
func (o *oracleServer) patchREST(t *testing.T, cred, query, ct, patch string) patchAnswer {
	t.Helper()
	req, err := http.NewRequest("PATCH", o.main.base+"/entity/vault?key=k"+query, strings.NewReader(patch))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&body)
	return patchAnswer{status: resp.StatusCode, sentence: body.Error}
}

// patchGRPC sends the same PATCH over gRPC Process.
func (o *oracleServer) patchGRPC(t *testing.T, cred, schemaID, ct, patch string) patchAnswer {
	t.Helper()
	req := clientProcess("PATCH", "vault", "k", cred, []byte(patch))
	req.ContentType, req.SchemaId = ct, schemaID
	_, err := o.client.Process(context.Background(), req)
	return patchAnswer{code: status.Code(err), sentence: errorMessage(err)}
}

// unchanged checks that vault/k still holds oracleDoc.
func (o *oracleServer) unchanged(t *testing.T) {
	t.Helper()
	if code, out, _ := o.main.call("GET", "/entity/vault?key=k", testAdminKey, nil); code != 200 || string(out) != oracleDoc {
		t.Errorf("vault/k after the probe = %d %s, want %s", code, out, oracleDoc)
	}
}

// noLeak fails t when what a client was told shows the stored document.
func noLeak(t *testing.T, what string, a patchAnswer, leaks ...string) {
	t.Helper()
	for _, l := range append(leaks, oracleSecret, oracleMember) {
		if strings.Contains(a.sentence, l) {
			t.Errorf("%s told a key without read %q, which shows %q of the stored document", what, a.sentence, l)
			return
		}
	}
}

// checkOwnSchemaRefused: a write-only key's PATCH with a schema of its own
// choosing (?schema=, schema_id) is refused with 403 / PermissionDenied
// and a sentence naming the read permission, on both front ends.
func checkOwnSchemaRefused(t *testing.T, o *oracleServer, p oracleProbe) {
	t.Helper()
	if code, out, _ := o.main.call("PUT", "/schema/"+p.id, o.writer, p.schema); code != 200 {
		t.Fatalf("PUT /schema/%s with the write-only key = %d %s", p.id, code, out)
	}
	rest := o.patchREST(t, o.writer, "&schema="+p.id, mergePatchType, `{}`)
	if rest.status != http.StatusForbidden || !strings.Contains(rest.sentence, "read permission") {
		t.Errorf("REST PATCH ?schema=%s with a write-only key = %d %q, want 403 naming the read permission", p.id, rest.status, rest.sentence)
	}
	noLeak(t, "REST PATCH ?schema=", rest, p.leak)
	grpc := o.patchGRPC(t, o.writer, p.id, mergePatchType, `{}`)
	if grpc.code != codes.PermissionDenied || grpc.sentence != rest.sentence {
		t.Errorf("gRPC PATCH schema_id=%s with a write-only key = %v %q, want PermissionDenied %q", p.id, grpc.code, grpc.sentence, rest.sentence)
	}
	noLeak(t, "gRPC PATCH schema_id", grpc, p.leak)
	o.unchanged(t)
}

// checkBoundSchemaTerse binds vault to the probe's schema (after the
// document was stored, which binding does not check again) and patches a
// member the probe does not look at: the key without read is told the
// schema's name alone; the key that may read keeps the schema's messages.
func checkBoundSchemaTerse(t *testing.T, o *oracleServer, p oracleProbe) {
	t.Helper()
	if code, out, _ := o.main.call("PUT", "/schema/"+p.id, testAdminKey, p.schema); code != 200 {
		t.Fatalf("PUT /schema/%s = %d %s", p.id, code, out)
	}
	if code, out, _ := o.main.call("PUT", "/api/databases/vault", testAdminKey, `{"schema":"`+p.id+`"}`); code != 200 {
		t.Fatalf("bind vault to %s = %d %s", p.id, code, out)
	}
	want := `the patched document does not match schema "` + p.id + `"`
	rest := o.patchREST(t, o.writer, "", mergePatchType, `{"title":"u"}`)
	if rest.status != http.StatusBadRequest || rest.sentence != want {
		t.Errorf("REST PATCH against bound %s with a write-only key = %d %q, want 400 %q", p.id, rest.status, rest.sentence, want)
	}
	noLeak(t, "REST PATCH against the bound schema", rest, p.leak)
	grpc := o.patchGRPC(t, o.writer, "", mergePatchType, `{"title":"u"}`)
	if grpc.code != codes.InvalidArgument || grpc.sentence != want {
		t.Errorf("gRPC PATCH against bound %s with a write-only key = %v %q, want InvalidArgument %q", p.id, grpc.code, grpc.sentence, want)
	}
	noLeak(t, "gRPC PATCH against the bound schema", grpc, p.leak)
	for _, a := range []patchAnswer{o.patchREST(t, o.reader, "", mergePatchType, `{"title":"u"}`),
		o.patchGRPC(t, o.reader, "", mergePatchType, `{"title":"u"}`)} {
		if !strings.Contains(a.sentence, `schema "`+p.id+`": at `) || !strings.Contains(a.sentence, p.leak) {
			t.Errorf("PATCH against bound %s with a key that may read = %d %v %q, want the schema's messages (showing %q)", p.id, a.status, a.code, a.sentence, p.leak)
		}
	}
	o.unchanged(t)
}

// runOracleProbe runs probe p on a fresh server: with its own schema, then
// with the schema bound to the database.
func runOracleProbe(t *testing.T, p oracleProbe) {
	n, _ := startDefault(t)
	o := newOracleServer(t, n)
	checkOwnSchemaRefused(t, o, p)
	checkBoundSchemaTerse(t, o, p)
}

// TestWriteOnlyPatchPatternLeak: {"pattern":"^$"} on a member quoted its
// value: `at /secret: 'TOPSECRET-DOCVALUE-7731' does not match pattern`.
func TestWriteOnlyPatchPatternLeak(t *testing.T) {
	runOracleProbe(t, oracleProbe{id: "leak.pattern", schema: `{"properties":{"secret":{"pattern":"^$"}}}`, leak: oracleSecret})
}

// TestWriteOnlyPatchAdditionalPropertiesLeak: additionalProperties:false
// listed the member names the schema does not know.
func TestWriteOnlyPatchAdditionalPropertiesLeak(t *testing.T) {
	runOracleProbe(t, oracleProbe{id: "leak.members",
		schema: `{"properties":{"pin":{},"secret":{},"title":{}},"additionalProperties":false}`, leak: oracleMember})
}

// TestWriteOnlyPatchMinimumLeak: a minimum above the stored number quoted
// the number.
func TestWriteOnlyPatchMinimumLeak(t *testing.T) {
	runOracleProbe(t, oracleProbe{id: "leak.minimum", schema: `{"properties":{"pin":{"minimum":100000}}}`, leak: "7,731"})
}

// TestWriteOnlyPatchMaxLengthLeak: a maxLength under the stored string's
// length told the length (23).
func TestWriteOnlyPatchMaxLengthLeak(t *testing.T) {
	runOracleProbe(t, oracleProbe{id: "leak.length", schema: `{"properties":{"secret":{"maxLength":3}}}`, leak: "23"})
}

// TestWriteOnlyPatchBoundSchemaRemoteWorker: through a remote worker, which
// applies and validates the patch, a key without read is told the
// schema's name alone too (the worker learns it from the main worker).
func TestWriteOnlyPatchBoundSchemaRemoteWorker(t *testing.T) {
	c := startCluster(t, "w1")
	checkBoundSchemaTerse(t, newOracleServer(t, c.main), oracleProbe{id: "leak.pattern",
		schema: `{"properties":{"secret":{"pattern":"^$"}}}`, leak: oracleSecret})
}

// TestWriteOnlyPatchTestOracle: a JSON Patch "test" answered a write-only
// key's guesses (409 wrong, 200 right). It is refused whatever the guess,
// on both front ends; a key that may read keeps the RFC 6902 answers.
func TestWriteOnlyPatchTestOracle(t *testing.T) {
	n, _ := startDefault(t)
	o := newOracleServer(t, n)
	guess := func(v string) string { return `[{"op":"test","path":"/secret","value":"` + v + `"}]` }
	for _, g := range []string{"wrong-guess", oracleSecret} {
		rest := o.patchREST(t, o.writer, "", jsonPatchType, guess(g))
		if rest.status != http.StatusForbidden || !strings.Contains(rest.sentence, "read permission") {
			t.Errorf("REST JSON Patch test %q with a write-only key = %d %q, want 403 naming the read permission", g, rest.status, rest.sentence)
		}
		grpc := o.patchGRPC(t, o.writer, "", jsonPatchType, guess(g))
		if grpc.code != codes.PermissionDenied || grpc.sentence != rest.sentence {
			t.Errorf("gRPC JSON Patch test %q with a write-only key = %v %q, want PermissionDenied %q", g, grpc.code, grpc.sentence, rest.sentence)
		}
	}
	o.unchanged(t)
	for g, want := range map[string]int{"wrong-guess": http.StatusConflict, oracleSecret: http.StatusOK} {
		if a := o.patchREST(t, o.reader, "", jsonPatchType, guess(g)); a.status != want {
			t.Errorf("REST JSON Patch test %q with a key that may read = %d %q, want %d", g, a.status, a.sentence, want)
		}
	}
	// Appending without read, the use a write-only key has for JSON Patch,
	// still works.
	if a := o.patchREST(t, o.writer, "", jsonPatchType, `[{"op":"add","path":"/log","value":1}]`); a.status != http.StatusOK {
		t.Errorf("REST JSON Patch add with a write-only key = %d %q, want 200", a.status, a.sentence)
	}
}

// TestWriteOnlyPatchSizeLeak: a patched document over the document limit
// was refused with its size, which tells the stored document's. A key
// without read is told the limit alone, on both front ends; one that may
// read keeps the size.
func TestWriteOnlyPatchSizeLeak(t *testing.T) {
	fe := newFrontEnds(t, budgets{})
	ctx := t.Context()
	stored := `{"s":"` + strings.Repeat("x", 1000000) + `"}`
	if _, err := fe.client.Process(ctx, clientProcess("PUT", "db", "k", testAdminKey, []byte(stored))); err != nil {
		t.Fatal(err)
	}
	writer := createTestKey(t, fe.auth, "writer", permWrite, nil)
	patch := `{"t":"` + strings.Repeat("y", 60000) + `"}`
	want := "the patched document exceeds the document limit of 1048576 bytes"
	code, body := restCall{method: "PATCH", target: "/entity/db?key=k", body: patch,
		header: []string{"Content-Type: " + mergePatchType}}.do(fe.rest, writer)
	if code != 413 || !strings.Contains(body, want) {
		t.Errorf("REST PATCH past the limit without read = %d %.200s, want 413 %q", code, body, want)
	}
	_, err := fe.client.Process(ctx, clientProcess("PATCH", "db", "k", writer, []byte(patch)))
	if got := errorMessage(err); got != want {
		t.Errorf("gRPC PATCH past the limit without read = %q, want %q", got, want)
	}
	_, err = fe.client.Process(ctx, clientProcess("PATCH", "db", "k", testAdminKey, []byte(patch)))
	if got := errorMessage(err); !strings.Contains(got, "the patched document of 1060015 bytes") {
		t.Errorf("gRPC PATCH past the limit with read = %q, want its size (1060015 bytes)", got)
	}
}
