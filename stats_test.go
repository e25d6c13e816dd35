package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// statsFixture is a sampler over a registry of its own, a fake clock and
// workers whose cache counters the test sets.
type statsFixture struct {
	clock   *fakeClock
	reg     *registry
	http    *httpMetrics
	store   store
	workers []workerInfo
	s       *statsSampler
}

func newStatsFixture(t *testing.T) *statsFixture {
	t.Helper()
	f := &statsFixture{clock: &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, reg: newRegistry()}
	f.http = newHTTPMetrics(f.reg)
	f.store = meterStore(f.reg, newTestFSStore(t))
	f.workers = []workerInfo{{WorkerID: "w1", Status: statusAvailable}, {WorkerID: "w2", Status: statusUnavailable}}
	f.s = newStatsSampler(f.reg, func() []workerInfo { return append([]workerInfo(nil), f.workers...) }, f.clock.now)
	return f
}

// answer observes n requests of route, method and status taking d each.
func (f *statsFixture) requests(n int, route, method string, status int, d time.Duration) {
	for range n {
		f.http.observe(requestRecord{Route: method + " " + route, Method: method, Status: status, Duration: d})
	}
}

// TestStatsSampler: one interval of known traffic gives the rates,
// quantiles, errors by route, cache hit rate, storage operations and
// worker counts it should, and the partial point counts from the last
// reading.
func TestStatsSampler(t *testing.T) {
	f := newStatsFixture(t)
	ctx := context.Background()
	f.requests(84, "/entity/{db}", "GET", 200, 800*time.Microsecond) // bucket (0.5ms, 1ms]
	f.requests(6, "/entity/{db}", "GET", 404, 800*time.Microsecond)
	f.requests(9, "/entity/{db}", "PUT", 500, 30*time.Millisecond) // bucket (25ms, 50ms]
	f.requests(1, "/api/keys", "POST", 403, 30*time.Millisecond)
	f.store.Put(ctx, "templates/a.json", []byte("x"))
	f.store.Get(ctx, "templates/a.json")
	f.store.Get(ctx, "templates/missing.json")
	f.workers[0].Cache = cacheStats{Hits: 30, Misses: 10}
	f.clock.advance(10 * time.Second)
	f.s.sample()

	a := f.s.answer(time.Hour)
	if len(a.Points) != 2 || !a.Points[1].Partial || a.Points[0].Partial {
		t.Fatalf("points = %+v, want one full and the partial one", a.Points)
	}
	p := a.Points[0]
	if p.Requests != 100 || p.RequestsPerSecond != 10 || p.Seconds != 10 {
		t.Errorf("requests %d at %v/s over %v s, want 100 at 10/s over 10 s", p.Requests, p.RequestsPerSecond, p.Seconds)
	}
	if p.P50MS == nil || *p.P50MS <= 0.5 || *p.P50MS > 1 {
		t.Errorf("p50 = %v ms, want in (0.5, 1]", ptrString(p.P50MS))
	}
	if p.P95MS == nil || *p.P95MS != 37.5 {
		t.Errorf("p95 = %v ms, want 37.5 (25 + 25*(95-90)/10)", ptrString(p.P95MS))
	}
	if p.ClientErrors != 7 || p.ServerErrors != 9 {
		t.Errorf("errors 4xx %d 5xx %d, want 7 and 9", p.ClientErrors, p.ServerErrors)
	}
	if p.CacheHitRate == nil || *p.CacheHitRate != 0.75 || p.CacheHits != 30 || p.CacheMisses != 10 {
		t.Errorf("cache hits %d misses %d rate %v, want 30, 10, 0.75", p.CacheHits, p.CacheMisses, ptrString(p.CacheHitRate))
	}
	if got := p.StorageOperations; got["put"] != 1 || got["get"] != 2 || p.StorageErrors != 0 {
		t.Errorf("storage operations %v errors %d, want put 1, get 2 (not found is no error), 0", got, p.StorageErrors)
	}
	if p.WorkersAvailable != 1 || p.WorkersUnavailable != 1 {
		t.Errorf("workers %d available %d unavailable, want 1 and 1", p.WorkersAvailable, p.WorkersUnavailable)
	}
	want := []routeErrors{{"PUT /entity/{db}", 0, 9}, {"GET /entity/{db}", 6, 0}, {"POST /api/keys", 1, 0}}
	if got, _ := json.Marshal(a.ErrorsByRoute); string(got) != mustJSON(t, want) {
		t.Errorf("errors_by_route = %s, want %s", got, mustJSON(t, want))
	}

	// The partial point: what happened since the reading, over the time
	// since it.
	f.requests(5, "/health", "GET", 200, time.Millisecond)
	f.workers[0].Cache = cacheStats{Hits: 31, Misses: 10}
	f.clock.advance(5 * time.Second)
	last := f.s.answer(time.Hour).Points[1]
	if last.Requests != 5 || last.Seconds != 5 || last.RequestsPerSecond != 1 || last.CacheHits != 1 || last.ClientErrors != 0 {
		t.Errorf("partial point = %+v, want 5 requests in 5 s, 1 cache hit, no errors", last)
	}
	if s := f.s.answer(time.Hour).Summary; s.Requests != 105 || s.Seconds != 15 || s.ClientErrors != 7 {
		t.Errorf("summary = %d requests in %v s with %d 4xx, want 105 in 15 s with 7", s.Requests, s.Seconds, s.ClientErrors)
	}
}

// TestStatsMemoryBounded: a day of samples keeps an hour of points; a
// window keeps the points that end within it.
func TestStatsMemoryBounded(t *testing.T) {
	f := newStatsFixture(t)
	for i := range 24 * 360 {
		f.requests(i%7, "/entity/{db}", "GET", 400+i%3*50, time.Millisecond)
		f.clock.advance(statsInterval)
		f.s.sample()
	}
	if n, c := len(f.s.ring), cap(f.s.ring); n != 360 || c != 360 {
		t.Errorf("ring holds %d points (capacity %d), want 360", n, c)
	}
	a := f.s.answer(time.Hour)
	if len(a.Points) != 361 {
		t.Errorf("an hour answers %d points, want 360 and the partial one", len(a.Points))
	}
	for i := 1; i < len(a.Points); i++ {
		if !a.Points[i].Start.After(a.Points[i-1].Start) {
			t.Fatalf("point %d starts %v, not after point %d at %v", i, a.Points[i].Start, i-1, a.Points[i-1].Start)
		}
	}
	if got := f.s.answer(5 * time.Minute).Points; len(got) != 31 {
		t.Errorf("a 5 minute window answers %d points, want 30 and the partial one", len(got))
	}
}

// TestBucketQuantile checks the estimate against hand-computed values.
func TestBucketQuantile(t *testing.T) {
	n := len(latencyBuckets) + 1
	counts := func(pairs ...int) []uint64 {
		c := make([]uint64, n)
		for i := 0; i < len(pairs); i += 2 {
			c[pairs[i]] = uint64(pairs[i+1])
		}
		return c
	}
	for _, tc := range []struct {
		counts []uint64
		q      float64
		want   float64 // ms; NaN for none
	}{
		{counts(), 0.5, math.NaN()},
		{counts(0, 4), 0.5, 0.125},         // half of (0, 0.25ms]
		{counts(0, 1, 1, 1), 0.5, 0.25},    // rank 1 ends the first bucket
		{counts(1, 10), 0.95, 0.4875},      // (0.25, 0.5]: 0.25 + 0.25*9.5/10
		{counts(n-1, 3), 0.5, 10000},       // +Inf: the largest bound
		{counts(2, 50, 7, 50), 0.95, 47.5}, // (25, 50]: 25 + 25*(95-50)/50
	} {
		got := bucketQuantile(tc.counts, tc.q)
		if math.IsNaN(tc.want) {
			if got != nil {
				t.Errorf("bucketQuantile(%v, %v) = %v, want nil", tc.counts, tc.q, *got)
			}
			continue
		}
		if got == nil || math.Abs(*got-tc.want) > 1e-9 {
			t.Errorf("bucketQuantile(%v, %v) = %v, want %v", tc.counts, tc.q, ptrString(got), tc.want)
		}
	}
}

// TestStatsRoute: GET /admin/stats for the admin, its window budget, and
// refused to the others (the route table checks every credential kind).
func TestStatsRoute(t *testing.T) {
	ts := newAuthTestServer(t, authConfig{})
	ts.mustDo(t, "PUT", "/entity/statsdb", testAdminKey, `{"k":{"a":1}}`, 200)
	ts.mustDo(t, "GET", "/entity/statsdb?key=nope", testAdminKey, "", 404)
	var a statsAnswer
	if err := json.Unmarshal(ts.mustDo(t, "GET", "/admin/stats?window=15m", testAdminKey, "", 200), &a); err != nil {
		t.Fatal(err)
	}
	if a.WindowSeconds != 900 || a.IntervalSeconds != 10 || len(a.Points) == 0 || a.Summary.Requests < 2 {
		t.Errorf("answer = window %v s, interval %v s, %d points, %d requests; want 900, 10, some, at least 2",
			a.WindowSeconds, a.IntervalSeconds, len(a.Points), a.Summary.Requests)
	}
	found := false
	for _, e := range a.ErrorsByRoute {
		found = found || e.Route == "GET /entity/{db}" && e.ClientErrors == 1
	}
	if !found {
		t.Errorf("errors_by_route = %+v, want GET /entity/{db} with one 4xx", a.ErrorsByRoute)
	}
	for _, w := range []string{"0s", "59s", "61m", "2h", "soon", "-1m"} {
		rec := ts.do("GET", "/admin/stats?window="+w, testAdminKey, "", "")
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "from 1m to 1h") {
			t.Errorf("GET /admin/stats?window=%s = %d %s, want 400 naming the range", w, rec.Code, rec.Body)
		}
	}
	rec := ts.do("GET", "/admin/stats?window=1m&window=2m", testAdminKey, "", "")
	if rec.Code != http.StatusBadRequest {
		t.Errorf("two windows = %d, want 400", rec.Code)
	}
}

// TestStatsSamplerRuns: run samples on its clock until its context
// ends, and then returns.
func TestStatsSamplerRuns(t *testing.T) {
	f := newStatsFixture(t)
	f.s.every = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.s.run(ctx)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.s.mu.Lock()
		n := len(f.s.ring)
		f.s.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(errors.New("no points sampled within 5 s"))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func ptrString(p *float64) any {
	if p == nil {
		return "nil"
	}
	return *p
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// BenchmarkStatsSample is one sample of the dashboard's sampler over a
// registry that has seen 30 routes with 4 statuses each and the storage
// operations of both backends: the work done every 10 s.
func BenchmarkStatsSample(b *testing.B) {
	clock := &fakeClock{t: time.Now()}
	reg := newRegistry()
	m := newHTTPMetrics(reg)
	for r := range 30 {
		for _, code := range []int{200, 304, 404, 500} {
			m.observe(requestRecord{Route: fmt.Sprintf("GET /route%d/{db}", r), Method: "GET", Status: code, Duration: time.Millisecond})
		}
	}
	st := meterStore(reg, newTestFSStore(b))
	st.Get(context.Background(), "templates/none.json")
	s := newStatsSampler(reg, func() []workerInfo { return []workerInfo{{Status: statusAvailable}} }, clock.now)
	b.ResetTimer()
	for b.Loop() {
		clock.advance(statsInterval)
		s.sample()
	}
}
