package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	pb "deltadatabase/proto"
)

// TestWriteValidatesOnce counts validations on the registry the main
// worker and the in-process worker share: a multi-key PUT validates each
// document once per schema (bound and ?schema=), a PATCH the patched
// document once per schema, and each request reads the binding at most
// once.
func TestWriteValidatesOnce(t *testing.T) {
	s := newLocalREST(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s.data.catalog.bindings.now = clock.now
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/schema/obj.v1", `{"type":"object"}`},
		{"PUT", "/schema/a.v1", `{"type":"object","required":["a"]}`},
		{"PUT", "/api/databases/db", `{"schema":"obj.v1"}`},
	} {
		if rec := serve(s, c.method, c.path, c.body); rec.Code != 200 {
			t.Fatalf("%s %s = %d %s", c.method, c.path, rec.Code, rec.Body)
		}
	}
	step := func(name string, wantValidations uint64, do func() *httptest.ResponseRecorder) {
		t.Helper()
		clock.advance(recheckEvery) // the binding is read again, once
		v0, b0 := s.data.schemas.validations.Load(), s.data.catalog.bindings.reads.Load()
		if rec := do(); rec.Code != 200 {
			t.Fatalf("%s = %d %s", name, rec.Code, rec.Body)
		}
		if got := s.data.schemas.validations.Load() - v0; got != wantValidations {
			t.Errorf("%s: %d validations, want %d", name, got, wantValidations)
		}
		if got := s.data.catalog.bindings.reads.Load() - b0; got > 1 {
			t.Errorf("%s: %d binding reads, want at most 1", name, got)
		}
	}
	step("PUT of 3 keys with ?schema=", 6, func() *httptest.ResponseRecorder {
		return serve(s, "PUT", "/entity/db?schema=a.v1", `{"k1":{"a":1},"k2":{"a":2},"k3":{"a":3}}`)
	})
	step("PUT of 2 keys", 2, func() *httptest.ResponseRecorder {
		return serve(s, "PUT", "/entity/db", `{"k1":{"a":1},"k2":{"a":2}}`)
	})
	step("PATCH with ?schema=", 2, func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("PATCH", "/entity/db?key=k1&schema=a.v1", strings.NewReader(`{"b":2}`))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		req.Header.Set("Content-Type", mergePatchType)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	})
}

// TestGRPCPutValidatesOnce: a client's PUT over gRPC is validated once, by
// the main worker, against the schema it names.
func TestGRPCPutValidatesOnce(t *testing.T) {
	m := startTestMain(t, 4<<20)
	ctx := context.Background()
	if err := m.svc.data.schemas.Put(ctx, "a.v1", []byte(`{"type":"object","required":["a"]}`)); err != nil {
		t.Fatal(err)
	}
	client := pb.NewMainWorkerClient(dial(t, m.addr))
	v0 := m.svc.data.schemas.validations.Load()
	_, err := client.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", SchemaId: "a.v1",
		Operation: "PUT", Payload: []byte(`{"a":1}`), Token: testAdminKey})
	if err != nil {
		t.Fatalf("PUT = %v", err)
	}
	if got := m.svc.data.schemas.validations.Load() - v0; got != 1 {
		t.Errorf("validations of one gRPC PUT = %d, want 1", got)
	}
	_, err = client.Process(ctx, &pb.ProcessRequest{DatabaseName: "db", EntityKey: "k", SchemaId: "a.v1",
		Operation: "PUT", Payload: []byte(`{"b":1}`), Token: testAdminKey})
	if msg := errorMessage(err); !strings.Contains(msg, `documents do not match schema "a.v1": "k": at (root): missing property`) || strings.Contains(msg, ": invalid") {
		t.Errorf("PUT of a document without a = %v, want the schema's sentence", err)
	}
}

// TestBindingCacheInvalidatedOnPut: a binding changed through PUT
// /api/databases/{db} applies to the very next write, although bindings
// are cached; one changed behind the server's back applies after
// recheckEvery.
func TestBindingCacheInvalidatedOnPut(t *testing.T) {
	s := newLocalREST(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s.data.catalog.bindings.now = clock.now
	put := func(path, body string, want int) {
		t.Helper()
		if rec := serve(s, "PUT", path, body); rec.Code != want {
			t.Errorf("PUT %s %s = %d %s, want %d", path, body, rec.Code, rec.Body, want)
		}
	}
	put("/schema/a.v1", `{"type":"object","required":["a"]}`, 200)
	put("/entity/db", `{"k":{"b":1}}`, 200) // unbound; the binding is cached
	put("/api/databases/db", `{"schema":"a.v1"}`, 200)
	put("/entity/db", `{"k":{"b":1}}`, 400)
	reads := s.data.catalog.bindings.reads.Load()
	put("/entity/db", `{"k":{"a":1}}`, 200)
	if got := s.data.catalog.bindings.reads.Load() - reads; got != 0 {
		t.Errorf("binding reads of a write within recheckEvery = %d, want 0 (cached)", got)
	}
	put("/api/databases/db", `{"schema":null}`, 200)
	put("/entity/db", `{"k":{"b":1}}`, 200)
	// Bound behind the server's back (another process, or by hand).
	if err := s.data.catalog.st.Put(t.Context(), bindingObjectKey("db"), []byte(`{"schema":"a.v1"}`)); err != nil {
		t.Fatal(err)
	}
	clock.advance(recheckEvery)
	put("/entity/db", `{"k":{"b":1}}`, 400)
}

// errorMessage is the message of a gRPC error, "" for nil.
func errorMessage(err error) string {
	if err == nil {
		return ""
	}
	return status.Convert(err).Message()
}
