package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMetricsDocumented: every metric the source registers has a row in
// API.md's Metrics table (the change feed's and the write-ahead log's
// were missing from it).
func TestMetricsDocumented(t *testing.T) {
	api, err := os.ReadFile("API.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(api), "\n## Metrics\n")
	table, _, _ = strings.Cut(table, "\n## ")
	files, _ := filepath.Glob("*.go")
	name := regexp.MustCompile(`"(deltadb_[a-z_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllSubmatch(src, -1) {
			if !strings.Contains(table, "| `"+string(m[1])+"`") && !strings.Contains(table, ", `"+string(m[1])+"`") {
				t.Errorf("%s registers %s, which API.md's Metrics table does not list", f, m[1])
			}
		}
	}
}

// TestExposition writes a registry of every kind and compares it byte for
// byte with the text format: HELP and TYPE lines, escaped help text and
// label values, children in label order, cumulative buckets ending in
// +Inf, _sum and _count.
func TestExposition(t *testing.T) {
	r := &registry{}
	c := r.counterVec("t_requests_total", "Requests by path.\nSecond line \\ backslash.", "path", "code")
	c.inc(labelValues{`/b"q"`, "200"})
	c.add(labelValues{"/a\\b\nc", "500"}, 2)
	c.inc(labelValues{`/b"q"`, "200"})
	r.gaugeFunc("t_temperature", "A gauge without labels.", nil, func(emit func(labelValues, float64)) {
		emit(labelValues{}, 21.5)
	})
	h := r.histogramVec("t_latency_seconds", "Latency.", []time.Duration{time.Millisecond, 100 * time.Millisecond}, "op")
	h.observe(labelValues{"get"}, time.Millisecond)     // on the bound: counts in le=0.001
	h.observe(labelValues{"get"}, 50*time.Millisecond)  // le=0.1
	h.observe(labelValues{"get"}, 2*time.Second)        // +Inf only
	h.observe(labelValues{"del"}, 500*time.Microsecond) // le=0.001
	r.counterFunc("t_empty_total", "A family with no samples yet.", []string{"x"}, func(func(labelValues, float64)) {})
	var b bytes.Buffer
	if err := r.write(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP t_requests_total Requests by path.\nSecond line \\ backslash.
# TYPE t_requests_total counter
t_requests_total{path="/a\\b\nc",code="500"} 2
t_requests_total{path="/b\"q\"",code="200"} 2
# HELP t_temperature A gauge without labels.
# TYPE t_temperature gauge
t_temperature 21.5
# HELP t_latency_seconds Latency.
# TYPE t_latency_seconds histogram
t_latency_seconds_bucket{op="del",le="0.001"} 1
t_latency_seconds_bucket{op="del",le="0.1"} 1
t_latency_seconds_bucket{op="del",le="+Inf"} 1
t_latency_seconds_sum{op="del"} 0.0005
t_latency_seconds_count{op="del"} 1
t_latency_seconds_bucket{op="get",le="0.001"} 1
t_latency_seconds_bucket{op="get",le="0.1"} 2
t_latency_seconds_bucket{op="get",le="+Inf"} 3
t_latency_seconds_sum{op="get"} 2.051
t_latency_seconds_count{op="get"} 3
# HELP t_empty_total A family with no samples yet.
# TYPE t_empty_total counter
`
	if got := b.String(); got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
}

// TestFormatFloat: values as the text format spells them.
func TestFormatFloat(t *testing.T) {
	cases := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {1, "1"}, {1234567, "1.234567e+06"}, {0.0025, "0.0025"}, {-3.5, "-3.5"},
	}
	for _, c := range cases {
		if got := formatFloat(c.v); got != c.want {
			t.Errorf("formatFloat(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	inf, nan := 1.0, 0.0
	inf /= nan
	if got := formatFloat(inf); got != "+Inf" {
		t.Errorf("formatFloat(+Inf) = %q", got)
	}
	if got := formatFloat(-inf); got != "-Inf" {
		t.Errorf("formatFloat(-Inf) = %q", got)
	}
	if got := formatFloat(nan / nan); got != "NaN" {
		t.Errorf("formatFloat(NaN) = %q", got)
	}
}

// TestRequestLabels: the labels of a REST request come from bounded sets
// whatever the client sends.
func TestRequestLabels(t *testing.T) {
	routes := []struct{ pattern, want string }{
		{"GET /entity/{db}", "/entity/{db}"},
		{"GET /", "/"},
		{"", "unmatched"},
	}
	for _, c := range routes {
		if got := routeLabel(c.pattern); got != c.want {
			t.Errorf("routeLabel(%q) = %q, want %q", c.pattern, got, c.want)
		}
	}
	methods := []struct{ m, want string }{{"GET", "GET"}, {"PATCH", "PATCH"}, {"BREW", "other"}, {"get", "other"}}
	for _, c := range methods {
		if got := methodLabel(c.m); got != c.want {
			t.Errorf("methodLabel(%q) = %q, want %q", c.m, got, c.want)
		}
	}
	statuses := []struct {
		code int
		want string
	}{{200, "200"}, {100, "100"}, {599, "599"}, {99, "other"}, {600, "other"}, {0, "other"}}
	for _, c := range statuses {
		if got := statusLabel(c.code); got != c.want {
			t.Errorf("statusLabel(%d) = %q, want %q", c.code, got, c.want)
		}
	}
}

// TestRegisterTwicePanics: a second family of one name is refused at
// registration, not written twice for the scraper to reject.
func TestRegisterTwicePanics(t *testing.T) {
	r := &registry{}
	r.counterVec("t_total", "x")
	defer func() {
		if recover() == nil {
			t.Error("second registration of t_total did not panic")
		}
	}()
	r.counterVec("t_total", "y")
}

// TestCounterConcurrent: concurrent increments, some creating children,
// all count (run with -race it also checks the copy-on-write map).
func TestCounterConcurrent(t *testing.T) {
	r := &registry{}
	c := r.counterVec("t_total", "x", "k")
	h := r.histogramVec("t_seconds", "x", latencyBuckets, "k")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				lv := labelValues{string(rune('a' + (g+i)%4))}
				c.inc(lv)
				h.observe(lv, time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	var total, count uint64
	c.children.each(func(_ labelValues, n *atomic.Uint64) { total += n.Load() })
	h.children.each(func(_ labelValues, x *histogram) {
		for i := range x.counts {
			count += x.counts[i].Load()
		}
	})
	if total != 8000 || count != 8000 {
		t.Errorf("counted %d increments and %d observations, want 8000 each", total, count)
	}
}

// TestRESTMetricsNeedAdmin: GET /metrics on the REST port answers the
// admin only, and shows the requests made before it by route pattern,
// never by raw path, a GET and a HEAD of the same route apart.
func TestRESTMetricsNeedAdmin(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	for _, p := range []string{"/entity/db1?key=a", "/entity/db2?key=b"} {
		ts.do("GET", p, testAdminKey, "", "")
	}
	if rec := ts.do("PUT", "/entity/db3", testAdminKey, `{"k":{"n":1}}`, ""); rec.Code != http.StatusOK {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	for _, m := range []string{"GET", "HEAD", "GET"} {
		if rec := ts.do(m, "/entity/db3?key=k", testAdminKey, "", ""); rec.Code != http.StatusOK {
			t.Fatalf("%s = %d %s", m, rec.Code, rec.Body)
		}
	}
	ts.do("POST", "/no/such/route", testAdminKey, "", "")
	ts.do("BREW", "/no/such/route", testAdminKey, "", "")
	if rec := ts.do("GET", "/metrics", "", "", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a credential = %d, want 401", rec.Code)
	}
	key := ts.createKey(t, `{"name":"reader","permissions":["read"]}`)
	if rec := ts.do("GET", "/metrics", key.Secret, "", ""); rec.Code != http.StatusForbidden {
		t.Errorf("GET /metrics with a read key = %d, want 403", rec.Code)
	}
	rec := ts.do("GET", "/metrics", testAdminKey, "", "")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != metricsContentType {
		t.Fatalf("GET /metrics as admin = %d %q, want 200 %q", rec.Code, rec.Header().Get("Content-Type"), metricsContentType)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`deltadb_http_requests_total{route="/entity/{db}",method="GET",status="404"} 2`,
		`deltadb_http_requests_total{route="unmatched",method="POST",status="404"} 1`,
		`deltadb_http_requests_total{route="unmatched",method="other",status="404"} 1`,
		`deltadb_http_requests_total{route="/metrics",method="GET",status="401"} 1`,
		`deltadb_http_requests_total{route="/entity/{db}",method="GET",status="200"} 2`,
		`deltadb_http_requests_total{route="/entity/{db}",method="HEAD",status="200"} 1`,
		`deltadb_http_request_duration_seconds_count{route="/entity/{db}"} 6`,
		`deltadb_build_info{version="`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(body, "db1") || strings.Contains(body, "/no/such") {
		t.Errorf("GET /metrics carries a raw path:\n%s", body)
	}
}

// scrape returns r's exposition.
func scrape(t *testing.T, r *registry) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// waitScraped waits until r's exposition holds line (a request is
// counted once its handler has returned, after the client saw its end).
func waitScraped(t *testing.T, r *registry, line string) {
	t.Helper()
	for w := newWait(t, "metrics with "+line, 10*time.Second); !strings.Contains(scrape(t, r), line); time.Sleep(5 * time.Millisecond) {
		if w.over() {
			t.Fatalf("metrics lack %s: %v\n%s", line, w, scrape(t, r))
		}
	}
}

// wantLines fails t for each line of want missing from the exposition.
func wantLines(t *testing.T, exposition string, want ...string) {
	t.Helper()
	lines := strings.Split(exposition, "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("exposition lacks the line %s", w)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", exposition)
	}
}

// TestStoreMetrics: every storage operation is counted by backend,
// operation and result, and timed.
func TestStoreMetrics(t *testing.T) {
	r := &registry{}
	st := meterStore(r, newTestFSStore(t))
	ctx := t.Context()
	st.Get(ctx, "files/db/missing")
	st.Put(ctx, "files/db/a", []byte("1"))
	_, rev, _ := st.GetRev(ctx, "files/db/a")
	st.PutIf(ctx, "files/db/a", []byte("2"), "not-"+rev)
	st.PutIf(ctx, "files/db/a", []byte("2"), rev)
	st.Delete(ctx, "files/db/a")
	st.Delete(ctx, "files/db/a")
	st.List(ctx, "files/", "", 0)
	st.ListDirs(ctx, "files/")
	wantLines(t, scrape(t, r),
		`deltadb_storage_operations_total{backend="fs",operation="get",result="not_found"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="get",result="ok"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="put",result="ok"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="put_if",result="conflict"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="put_if",result="ok"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="delete",result="ok"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="delete",result="not_found"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="list",result="ok"} 1`,
		`deltadb_storage_operations_total{backend="fs",operation="list_dirs",result="ok"} 1`,
		`deltadb_storage_operation_duration_seconds_count{backend="fs",operation="get"} 2`,
		`deltadb_storage_operation_duration_seconds_count{backend="fs",operation="put_if"} 2`,
	)
}

// TestS3RetriesMetric: each retried S3 request counts once; a request
// that succeeds at once counts none; the operation is labelled s3.
func TestS3RetriesMetric(t *testing.T) {
	r := &registry{}
	st := meterStore(r, newFakeS3Store(t, &fakeS3{script: []int{503, 500}}))
	if err := st.Put(t.Context(), "k", []byte("data")); err != nil {
		t.Fatalf("Put after two transient failures = %v", err)
	}
	wantLines(t, scrape(t, r),
		"deltadb_s3_retries_total 2",
		`deltadb_storage_operations_total{backend="s3",operation="put",result="ok"} 1`)
}

// TestAuthAndValidationMetrics: failed authentications, the 429s of the
// rate limit and failed validations are counted; successes are not.
func TestAuthAndValidationMetrics(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{maxFailures: 2})
	r := &registry{}
	registerAuthMetrics(r, ts.auth)
	registerSchemaMetrics(r, ts.rest.data.schemas)
	ts.do("GET", "/api/me", testAdminKey, "", "")
	for range 3 {
		ts.do("GET", "/api/me", "wrong", "", "")
	}
	ts.mustDo(t, "PUT", "/schema/s.v1", testAdminKey, `{"type":"object","required":["a"]}`, 200)
	ts.mustDo(t, "PUT", "/entity/db?schema=s.v1", testAdminKey, `{"ok":{"a":1}}`, 200)
	ts.mustDo(t, "PUT", "/entity/db?schema=s.v1", testAdminKey, `{"bad":{"b":1}}`, 400)
	wantLines(t, scrape(t, r),
		"deltadb_auth_failures_total 3",
		"deltadb_auth_rate_limited_total 1",
		"deltadb_validations_total 2",
		"deltadb_validation_failures_total 1")
}

// TestMetricsAllocateNothing: recording a request, a storage operation or
// a gRPC call whose labels were seen before allocates nothing, so the
// metrics add no garbage per request.
func TestMetricsAllocateNothing(t *testing.T) {
	r := &registry{}
	hm := newHTTPMetrics(r)
	rec := requestRecord{Method: "GET", Route: "GET /entity/{db}", Status: 200, Duration: time.Millisecond}
	ms := meterStore(r, newTestFSStore(t)).(*meteredStore)
	gm := newGRPCMetrics(r)
	start := time.Now()
	for name, f := range map[string]func(){
		"http":    func() { hm.observe(rec) },
		"storage": func() { ms.observe("get", start, errNotFound) },
		"grpc":    func() { gm.observe("/deltadb.ProcessingWorker/Process", start, nil) },
	} {
		f() // creates the children
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per observation, want 0", name, n)
		}
	}
}

// BenchmarkRESTGetHitMetrics is BenchmarkRESTGetHit with the REST
// metrics off and on, side by side: their cost on the hottest request.
func BenchmarkRESTGetHitMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", on), func(b *testing.B) {
			s := newLocalREST(b)
			if !on {
				s.metrics = nil
			}
			if rec := serve(s, "PUT", "/entity/bench", `{"k":{"role":"user","content":"`+strings.Repeat("x", 1000)+`"}}`); rec.Code != 200 {
				b.Fatal(rec.Body)
			}
			b.ReportAllocs()
			b.SetParallelism(16) // 32 goroutines on 2 CPUs, as c=32
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if rec := serve(s, "GET", "/entity/bench?key=k", ""); rec.Code != 200 {
						b.Error(rec.Body)
						return
					}
				}
			})
		})
	}
}

// BenchmarkHTTPMetricsObserve is the metrics' share of one REST request:
// a counter and a histogram of a route seen before, from 32 goroutines.
func BenchmarkHTTPMetricsObserve(b *testing.B) {
	m := newHTTPMetrics(&registry{})
	rec := requestRecord{Method: "GET", Route: "GET /entity/{db}", Status: 200, Duration: 700 * time.Microsecond}
	m.observe(rec)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observe(rec)
		}
	})
}
