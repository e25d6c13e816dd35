package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newLocalREST builds the REST server of -role=all in-process over an
// fsStore in a temp dir, with the test admin key.
func newLocalREST(tb testing.TB) *restServer {
	tb.Helper()
	st, err := newFSStore(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return newLocalRESTOver(tb, st)
}

// newLocalRESTOver is newLocalREST over st.
func newLocalRESTOver(tb testing.TB, st store) *restServer {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	schemas := newSchemaRegistry(st)
	cat := newCatalog(st)
	rt := newRouter(log, time.Now, saturatedInFlight)
	rt.written = cat.wrote
	cfg := config{keyID: "k1", entityCacheSize: 1024}
	if err := addLocalWorker(cfg, rt, st, schemas, []byte("0123456789abcdef0123456789abcdef"), log); err != nil {
		tb.Fatal(err)
	}
	auth, err := newAuthenticator(context.Background(), authConfig{adminKey: testAdminKey, st: st, clientTTL: time.Hour, now: time.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return newRESTServer(auth, rt, cat, schemas, rt.list, 1<<20, log)
}

// serve runs one request through the server's ServeHTTP.
func serve(s http.Handler, method, target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// TestUnknownRoutesAnswerJSON: the mux's own 404 and 405 come back as JSON
// error bodies, 405 with Allow.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	s := newLocalREST(t)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope.js", 404},
		{"POST", "/entity/db", 405},
		{"PATCH", "/health", 405},
		{"GET", "/entity/../admin/workers", 400},
	} {
		rec := serve(s, c.method, c.path, "")
		if rec.Code != c.want || !strings.HasPrefix(rec.Body.String(), `{"error":`) {
			t.Errorf("%s %s = %d %s, want %d with a JSON error", c.method, c.path, rec.Code, rec.Body, c.want)
		}
		if c.want == 405 && rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
}

// BenchmarkRESTGetHit is a cached GET through the whole handler stack.
func BenchmarkRESTGetHit(b *testing.B) {
	s := newLocalREST(b)
	if rec := serve(s, "PUT", "/entity/bench", `{"k":{"role":"user","content":"`+strings.Repeat("x", 1000)+`"}}`); rec.Code != 200 {
		b.Fatal(rec.Body)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rec := serve(s, "GET", "/entity/bench?key=k", ""); rec.Code != 200 {
				b.Fatal(rec.Body)
			}
		}
	})
}

// BenchmarkRESTPut is a durable 1 KiB PUT through the whole handler stack.
func BenchmarkRESTPut(b *testing.B) {
	s := newLocalREST(b)
	doc := `{"role":"user","content":"` + strings.Repeat("x", 1000) + `"}`
	b.ReportAllocs()
	b.SetParallelism(16)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if rec := serve(s, "PUT", "/entity/bench", fmt.Sprintf(`{"k%d":%s}`, i%512, doc)); rec.Code != 200 {
				b.Fatal(rec.Body)
			}
		}
	})
}
