package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// discardWriter is a reusable http.ResponseWriter that keeps nothing, so
// that a benchmark counts the server's allocations, not a recorder's.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkWarmGet is one warm GET through the whole REST server of
// -role=all (request ID, authentication, routing, the worker's cache,
// metrics and the access line in the text format to a logBuffer over
// io.Discard): its time and allocations, the server's own only.
func BenchmarkWarmGet(b *testing.B) { benchWarmGet(b, nil) }

// benchWarmGet is BenchmarkWarmGet on a server that setup, if not nil,
// changes first (BenchmarkWarmGetAudit gives it an audit log).
func benchWarmGet(b *testing.B, setup func(*restServer)) {
	s := newLocalREST(b)
	if setup != nil {
		setup(s)
	}
	out := newLogBuffer(io.Discard, logFlushEvery)
	defer out.Close()
	var err error
	if s.log, err = newLogger(out, logFormatText, slog.LevelInfo); err != nil {
		b.Fatal(err)
	}
	if rec := serve(s, "PUT", "/entity/bench", `{"k":{"role":"user","content":"`+strings.Repeat("x", 1000)+`"}}`); rec.Code != 200 {
		b.Fatal(rec.Body)
	}
	req := httptest.NewRequest("GET", "/entity/bench?key=k", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.RemoteAddr = "127.0.0.1:40000"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			s.ServeHTTP(w, req)
		}
	})
}

// TestWarmGetFromCacheChecked: a GET that the in-process worker's cache
// answers without a call (router.cachedRead) is checked as a call is: it
// counts as the cache's hit, a newer routing epoch drops the cache before
// it is read (the GET after it is a miss and reads storage), and a worker
// without its master key answers 503, not the cached document. The
// caller's request is left as it was given.
func TestWarmGetFromCacheChecked(t *testing.T) {
	s := newLocalREST(t)
	rt := s.data.proc.(*router)
	var w *worker
	for _, c := range rt.workers {
		w = c.proc.(*worker)
	}
	if rec := serve(s, "PUT", "/entity/hot", `{"k":{"n":1}}`); rec.Code != 200 {
		t.Fatal(rec.Body)
	}
	get := func(want int) {
		t.Helper()
		req := httptest.NewRequest("GET", "/entity/hot?key=k", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		ctx := req.Context()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != want || want == 200 && rec.Body.String() != `{"n":1}` {
			t.Fatalf("GET = %d %s, want %d", rec.Code, rec.Body, want)
		}
		if req.Context() != ctx || req.Pattern != "" {
			t.Errorf("the server changed the caller's request: pattern %q", req.Pattern)
		}
	}
	get(200) // the PUT filled the cache
	before := w.stats()
	get(200)
	if got := w.stats(); got.Hits != before.Hits+1 || got.Misses != before.Misses {
		t.Errorf("warm GET: hits %d->%d, misses %d->%d, want one hit", before.Hits, got.Hits, before.Misses, got.Misses)
	}
	rt.bumpEpoch()
	before = w.stats()
	get(200)
	if got := w.stats(); got.Hits != before.Hits || got.Misses != before.Misses+1 {
		t.Errorf("GET after a new epoch: hits %d->%d, misses %d->%d, want one miss (the cache dropped)", before.Hits, got.Hits, before.Misses, got.Misses)
	}
	keys := w.keys.Swap(nil)
	get(503)
	w.keys.Store(keys)
	get(200)
}

// TestCanonicalPathAsClean: canonicalPath's one pass gives what its
// definition does (path.Clean's output, but for a trailing slash, and no
// "//") on every path of up to four segments of "", ".", "..", "...",
// ".a", "a", rooted or not, with a trailing slash or without.
func TestCanonicalPathAsClean(t *testing.T) {
	segs := []string{"", ".", "..", "...", ".a", "a"}
	paths := []string{"", "/", "//", "*"}
	var grow func(prefix string, depth int)
	grow = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, s := range segs {
			p := prefix + s
			paths = append(paths, p, p+"/", "/"+p, "/"+p+"/")
			grow(p+"/", depth-1)
		}
	}
	grow("", 4)
	for _, p := range paths {
		want := p == "/" || path.Clean(p) == strings.TrimSuffix(p, "/") && !strings.Contains(p, "//")
		if got := canonicalPath(p); got != want {
			t.Errorf("canonicalPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestAccessLinesSurviveSIGTERM: the access log is written in batches,
// yet every request a -role=all server answered before SIGTERM stopped
// it, also those answered during -shutdown-delay right before the end,
// has its access line in the log once the process has exited.
func TestAccessLinesSurviveSIGTERM(t *testing.T) {
	n := startNode(t, keyEnv, "-shared-fs="+t.TempDir(), "-shutdown-delay=500ms")
	if code, out, _ := n.call("PUT", "/entity/sigdb", testAdminKey, `{"k":{"n":1}}`); code != 200 {
		t.Fatalf("PUT = %d %s", code, out)
	}
	var mu sync.Mutex
	var answered []string
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				id := fmt.Sprintf("sig-%d-%d", g, i)
				req, _ := http.NewRequest("GET", n.base+"/entity/sigdb?key=k", nil)
				req.Header.Set("Authorization", "Bearer "+testAdminKey)
				req.Header.Set("X-Request-ID", id)
				resp, err := client.Do(req)
				if err != nil {
					return // the server has stopped
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					answered = append(answered, id)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop within 30s of SIGTERM")
	}
	wg.Wait()
	logged := map[string]bool{}
	for _, l := range linesWith(parseLog(t, n.stderr.String(), logFormatText), logLine{"msg": msgAccess}) {
		logged[l["request_id"]] = true
	}
	missing := 0
	for _, id := range answered {
		if !logged[id] {
			missing++
		}
	}
	if len(answered) < 100 || missing > 0 {
		t.Errorf("%d of %d answered requests have no access line after SIGTERM (the last answered: %s)", missing, len(answered), answered[len(answered)-1])
	}
}

// TestQueryParamAsParseQuery: queryParam, which the entity routes use to
// read ?key= without building url.Values, finds the value and the count
// url.ParseQuery would give, on escapes, repeats, empty pairs, semicolons,
// bad escapes and a query past the limit of pairs.
func TestQueryParamAsParseQuery(t *testing.T) {
	queries := []string{"", "key=a", "key=a&key=b", "x=1&key=%2Fa%20b&y", "key", "key=", "&&key=a&&", "k%65y=a",
		"key=a;b", "key=a&key=b;c", "key=%zz&key=b", "%zz=1&key=c", "key=a+b", "key=%E4%B8%AD", "KEY=a", "key=a=b",
		strings.Repeat("x=1&", maxQueryParams-1) + "key=a", strings.Repeat("x=1&", maxQueryParams) + "key=a"}
	for _, q := range queries {
		vals, _ := url.ParseQuery(q)
		got, n := queryParam(q, "key")
		if want := vals.Get("key"); got != want || n != len(vals["key"]) {
			t.Errorf("queryParam(%.40q) = %q, %d; url.ParseQuery gives %q, %d", q, got, n, want, len(vals["key"]))
		}
	}
}

// TestEntityGetRouteAsMux: dispatch serves GET /entity/{db} without the
// mux (entityGetDB), and must do so exactly for the requests the mux
// would route there, with the same {db}; the rest still reach the mux.
func TestEntityGetRouteAsMux(t *testing.T) {
	s := newLocalREST(t)
	probe := http.NewServeMux()
	var got string
	probe.HandleFunc(patternGetEntity, func(w http.ResponseWriter, r *http.Request) { got = r.PathValue("db") })
	for _, c := range []struct {
		method, target string
		fast           bool
	}{
		{"GET", "/entity/db1?key=k", true},
		{"GET", "/entity/db1", true},
		{"GET", "/entity/caf%C3%A9?key=k", true},
		{"GET", "/entity/a%20b?key=k", true},
		{"GET", "/entity/a%2Fb?key=k", false}, // an escaped slash: the mux reads it
		{"GET", "/entity/%61bc?key=k", false}, // escaped otherwise than Go would: left to the mux
		{"GET", "/entity/db1/versions?key=k", false},
		{"GET", "/entity/", false},
		{"GET", "/entity", false},
		{"GET", "/entityx/db1", false},
		{"GET", "/api/databases/db1", false},
		{"HEAD", "/entity/db1?key=k", false},
		{"POST", "/entity/db1?key=k", false},
		{"PUT", "/entity/db1?key=k", false},
		{"get", "/entity/db1?key=k", false},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if !canonicalPath(r.URL.Path) {
			t.Fatalf("%s: not a canonical path; dispatch refuses it before routing", c.target)
		}
		db, ok := entityGetDB(r)
		if ok != c.fast {
			t.Errorf("%s %s: served without the mux = %v, want %v", c.method, c.target, ok, c.fast)
		}
		if !ok {
			continue
		}
		if _, pattern := s.mux.Handler(r); pattern != patternGetEntity {
			t.Errorf("%s %s: the mux routes it to %q, not %q", c.method, c.target, pattern, patternGetEntity)
		}
		got = "-"
		probe.ServeHTTP(httptest.NewRecorder(), r)
		if got != db {
			t.Errorf("%s %s: {db} = %q, the mux reads %q", c.method, c.target, db, got)
		}
	}
}
