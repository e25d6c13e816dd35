package main

// The dashboard's last hour (GET /admin/stats): a sampler reads the
// process's metrics registry (metrics.go) and the workers' cache counters
// every statsInterval and keeps what changed in each interval, in a ring of
// statsRetention/statsInterval points. Memory is bounded whatever the
// traffic: a point holds a few numbers, its latency buckets and the routes
// that answered errors in it (route labels are mux patterns, a bounded
// set). Nothing is written to storage; a restart begins a new hour.

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

// The sampler's clock: one point per interval, an hour of them.
const (
	statsInterval  = 10 * time.Second
	statsRetention = time.Hour
	// statsMinWindow is the shortest ?window= of GET /admin/stats.
	statsMinWindow = time.Minute
)

// statsReading is one reading of the cumulative counts the dashboard
// draws, at a time.
type statsReading struct {
	at time.Time
	// requests counts REST answers; errors counts those with a status of
	// 400 or more by "METHOD /route": [0] 4xx, [1] 5xx.
	requests uint64
	errors   map[string][2]uint64
	// latency counts REST answers per latency bucket (not cumulative),
	// summed over routes: len(latencyBuckets)+1 entries, +Inf last.
	latency []uint64
	// storage counts storage operations by operation; storageErrors
	// those whose result was an error.
	storage       map[string]uint64
	storageErrors uint64
	// cacheHits and cacheMisses are summed over the workers' caches.
	cacheHits, cacheMisses uint64
	// workersUp and workersDown count the workers by status now.
	workersUp, workersDown int
}

// statsPoint is what changed between two readings. It is the JSON of one
// point of GET /admin/stats, plus the per-route errors and latency buckets
// that the window's totals are summed from.
type statsPoint struct {
	Start   time.Time `json:"start"`
	Seconds float64   `json:"seconds"`
	// Partial marks the last point: from the last reading to now.
	Partial           bool    `json:"partial,omitempty"`
	Requests          uint64  `json:"requests"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	// P50MS and P95MS are latency quantiles in milliseconds, estimated
	// from the histogram buckets; null when no request was answered.
	P50MS        *float64 `json:"p50_ms"`
	P95MS        *float64 `json:"p95_ms"`
	ClientErrors uint64   `json:"client_errors"`
	ServerErrors uint64   `json:"server_errors"`
	CacheHits    uint64   `json:"cache_hits"`
	CacheMisses  uint64   `json:"cache_misses"`
	// CacheHitRate is hits / (hits + misses), null without lookups.
	CacheHitRate *float64 `json:"cache_hit_rate"`
	// StorageOperations counts operations by name (get, put, put_if,
	// delete, list, list_dirs); StorageErrors those that failed.
	StorageOperations  map[string]uint64 `json:"storage_operations"`
	StorageErrors      uint64            `json:"storage_errors"`
	WorkersAvailable   int               `json:"workers_available"`
	WorkersUnavailable int               `json:"workers_unavailable"`

	errors  map[string][2]uint64
	latency []uint64
}

// routeErrors is one row of errors_by_route: a route's error answers in
// the window.
type routeErrors struct {
	Route        string `json:"route"`
	ClientErrors uint64 `json:"client_errors"`
	ServerErrors uint64 `json:"server_errors"`
}

// statsAnswer is the answer of GET /admin/stats.
type statsAnswer struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	WindowSeconds   float64 `json:"window_seconds"`
	// Points are oldest first; the last one is partial.
	Points []statsPoint `json:"points"`
	// Summary sums the points of the window.
	Summary statsPoint `json:"summary"`
	// ErrorsByRoute lists the routes that answered errors in the window,
	// most errors first.
	ErrorsByRoute []routeErrors `json:"errors_by_route"`
}

// statsSampler keeps the last hour of points. It is safe for concurrent
// use; mu guards last and the ring.
type statsSampler struct {
	reg     *registry
	workers func() []workerInfo
	now     func() time.Time
	every   time.Duration

	mu   sync.Mutex
	last statsReading
	// ring holds up to cap(ring) points; next is where the next one
	// goes once it is full.
	ring []statsPoint
	next int
}

// newStatsSampler returns a sampler of reg and the workers' caches whose
// first reading is taken now, so the first partial point counts from the
// start.
func newStatsSampler(reg *registry, workers func() []workerInfo, now func() time.Time) *statsSampler {
	s := &statsSampler{reg: reg, workers: workers, now: now, every: statsInterval,
		ring: make([]statsPoint, 0, int(statsRetention/statsInterval))}
	s.last = s.read()
	return s
}

// run takes a point every interval until ctx ends.
func (s *statsSampler) run(ctx context.Context) {
	runEvery(ctx, s.every, s.sample)
}

// sample takes a reading and keeps the point since the last one.
func (s *statsSampler) sample() {
	r := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := pointBetween(s.last, r)
	s.last = r
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, p)
		return
	}
	s.ring[s.next] = p
	s.next = (s.next + 1) % len(s.ring)
}

// answer returns the points that end within window of now, the partial
// one included, and their sums.
func (s *statsSampler) answer(window time.Duration) statsAnswer {
	r := s.read()
	s.mu.Lock()
	points := make([]statsPoint, 0, len(s.ring)+1)
	points = append(points, s.ring[s.next:]...)
	points = append(points, s.ring[:s.next]...)
	partial := pointBetween(s.last, r)
	s.mu.Unlock()
	partial.Partial = true
	points = append(points, partial)
	from := r.at.Add(-window)
	points = slices.DeleteFunc(points, func(p statsPoint) bool {
		return !p.Start.Add(time.Duration(p.Seconds * float64(time.Second))).After(from)
	})
	return statsAnswer{IntervalSeconds: s.every.Seconds(), WindowSeconds: window.Seconds(), Points: points,
		Summary: sumPoints(points), ErrorsByRoute: errorsByRoute(points)}
}

// read takes a reading of the registry and the workers now.
func (s *statsSampler) read() statsReading {
	r := statsReading{at: s.now(), errors: map[string][2]uint64{}, latency: make([]uint64, len(latencyBuckets)+1),
		storage: map[string]uint64{}}
	s.readRequests(&r)
	s.readLatency(&r)
	s.readStorage(&r)
	for _, w := range s.workers() {
		r.cacheHits += w.Cache.Hits
		r.cacheMisses += w.Cache.Misses
		if w.Status == statusAvailable {
			r.workersUp++
		} else {
			r.workersDown++
		}
	}
	return r
}

// readRequests reads deltadb_http_requests_total (route, method, status).
func (s *statsSampler) readRequests(r *statsReading) {
	s.reg.eachSample("deltadb_http_requests_total", func(lv func(string) string, _, _ string, v float64) {
		n := uint64(v)
		r.requests += n
		status := lv("status")
		if status < "400" || status == "other" {
			return
		}
		route := lv("method") + " " + lv("route")
		e := r.errors[route]
		if status >= "500" {
			e[1] += n
		} else {
			e[0] += n
		}
		r.errors[route] = e
	})
}

// statsBucketIndex maps the le label of a latency bucket to its index.
var statsBucketIndex = func() map[string]int {
	m := map[string]int{"+Inf": len(latencyBuckets)}
	for i, b := range latencyBuckets {
		m[formatFloat(b.Seconds())] = i
	}
	return m
}()

// readLatency reads the buckets of deltadb_http_request_duration_seconds,
// summed over routes and made non-cumulative.
func (s *statsSampler) readLatency(r *statsReading) {
	cum := make([]uint64, len(r.latency))
	s.reg.eachSample("deltadb_http_request_duration_seconds", func(_ func(string) string, suffix, le string, v float64) {
		if i, ok := statsBucketIndex[le]; ok && suffix == "_bucket" {
			cum[i] += uint64(v)
		}
	})
	for i := range cum {
		r.latency[i] = cum[i]
		if i > 0 {
			r.latency[i] = cum[i] - min(cum[i], cum[i-1])
		}
	}
}

// readStorage reads deltadb_storage_operations_total (backend,
// operation, result).
func (s *statsSampler) readStorage(r *statsReading) {
	s.reg.eachSample("deltadb_storage_operations_total", func(lv func(string) string, _, _ string, v float64) {
		r.storage[lv("operation")] += uint64(v)
		if lv("result") == "error" {
			r.storageErrors += uint64(v)
		}
	})
}

// pointBetween is what changed from reading a to reading b. Counters that
// went down (a worker restarted with a fresh cache) count as 0.
func pointBetween(a, b statsReading) statsPoint {
	secs := b.at.Sub(a.at).Seconds()
	p := statsPoint{Start: a.at.UTC(), Seconds: secs, Requests: sub(b.requests, a.requests),
		CacheHits: sub(b.cacheHits, a.cacheHits), CacheMisses: sub(b.cacheMisses, a.cacheMisses),
		StorageOperations: map[string]uint64{}, StorageErrors: sub(b.storageErrors, a.storageErrors),
		WorkersAvailable: b.workersUp, WorkersUnavailable: b.workersDown,
		errors: map[string][2]uint64{}, latency: make([]uint64, len(b.latency))}
	for route, e := range b.errors {
		old := a.errors[route]
		if d := [2]uint64{sub(e[0], old[0]), sub(e[1], old[1])}; d != [2]uint64{} {
			p.errors[route] = d
		}
	}
	for i := range b.latency {
		p.latency[i] = sub(b.latency[i], a.latency[i])
	}
	for op, n := range b.storage {
		if d := sub(n, a.storage[op]); d > 0 {
			p.StorageOperations[op] = d
		}
	}
	p.derive()
	return p
}

// sub is a - b, or 0 when a counter went down.
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// derive fills the figures computed from p's counts: rates, quantiles,
// error totals, hit rate.
func (p *statsPoint) derive() {
	p.RequestsPerSecond = 0
	if p.Seconds > 0 {
		p.RequestsPerSecond = float64(p.Requests) / p.Seconds
	}
	p.P50MS, p.P95MS = bucketQuantile(p.latency, 0.5), bucketQuantile(p.latency, 0.95)
	p.ClientErrors, p.ServerErrors = 0, 0
	for _, e := range p.errors {
		p.ClientErrors += e[0]
		p.ServerErrors += e[1]
	}
	p.CacheHitRate = nil
	if n := p.CacheHits + p.CacheMisses; n > 0 {
		rate := float64(p.CacheHits) / float64(n)
		p.CacheHitRate = &rate
	}
}

// bucketQuantile estimates quantile q, in milliseconds, of the latencies
// counted per bucket (latencyBuckets, then +Inf), as Prometheus's
// histogram_quantile does: linearly within the bucket that holds the
// rank. An observation in +Inf counts as the largest finite bound. nil
// when nothing was counted.
func bucketQuantile(counts []uint64, q float64) *float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return nil
	}
	rank := q * float64(total)
	var below uint64
	for i, c := range counts {
		if c == 0 || float64(below+c) < rank {
			below += c
			continue
		}
		if i == len(latencyBuckets) {
			break
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = latencyBuckets[i-1]
		}
		hi := latencyBuckets[i]
		d := lo + time.Duration(float64(hi-lo)*(rank-float64(below))/float64(c))
		ms := float64(d) / float64(time.Millisecond)
		return &ms
	}
	ms := float64(latencyBuckets[len(latencyBuckets)-1]) / float64(time.Millisecond)
	return &ms
}

// sumPoints adds points up into one point over their whole span.
func sumPoints(points []statsPoint) statsPoint {
	s := statsPoint{StorageOperations: map[string]uint64{}, errors: map[string][2]uint64{},
		latency: make([]uint64, len(latencyBuckets)+1)}
	for i, p := range points {
		if i == 0 {
			s.Start = p.Start
		}
		s.Seconds += p.Seconds
		s.Requests += p.Requests
		s.CacheHits += p.CacheHits
		s.CacheMisses += p.CacheMisses
		s.StorageErrors += p.StorageErrors
		s.WorkersAvailable, s.WorkersUnavailable = p.WorkersAvailable, p.WorkersUnavailable
		for op, n := range p.StorageOperations {
			s.StorageOperations[op] += n
		}
		for route, e := range p.errors {
			t := s.errors[route]
			s.errors[route] = [2]uint64{t[0] + e[0], t[1] + e[1]}
		}
		for i, c := range p.latency {
			s.latency[i] += c
		}
	}
	s.derive()
	return s
}

// errorsByRoute lists the routes with errors in points, most first.
func errorsByRoute(points []statsPoint) []routeErrors {
	totals := sumPoints(points).errors
	out := make([]routeErrors, 0, len(totals))
	for route, e := range totals {
		out = append(out, routeErrors{Route: route, ClientErrors: e[0], ServerErrors: e[1]})
	}
	slices.SortFunc(out, func(a, b routeErrors) int {
		return cmp.Or(cmp.Compare(b.ClientErrors+b.ServerErrors, a.ClientErrors+a.ServerErrors), cmp.Compare(a.Route, b.Route))
	})
	return out
}

// handleStats is GET /admin/stats?window=D: the points of the last D
// (a duration from 1m to 1h; default 1h).
func (s *restServer) handleStats(w http.ResponseWriter, r *http.Request, _ principal) error {
	window, err := statsWindow(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.stats.answer(window))
	return nil
}

// statsWindow reads ?window=: a Go duration from statsMinWindow to
// statsRetention, the hour kept (the budget of the route); absent is the
// whole hour.
func statsWindow(r *http.Request) (time.Duration, error) {
	q := r.URL.Query()
	if !q.Has("window") {
		return statsRetention, nil
	}
	d, err := time.ParseDuration(q.Get("window"))
	if err != nil || len(q["window"]) > 1 || d < statsMinWindow || d > statsRetention {
		return 0, reqErrorf(errInvalid, "window %q: want a duration from %s to %s, such as 15m",
			q.Get("window"), "1m", "1h")
	}
	return d, nil
}
