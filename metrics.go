package main

// Metrics in the Prometheus text exposition format (version 0.0.4),
// written here rather than by a client library. Each process (main
// worker, processing worker, or both in -role=all) builds one registry
// and serves it at GET /metrics; there is no global registry, so that
// in-process tests of several roles keep their numbers apart.
//
// Hot paths touch only atomics: a labelled family keeps its children in
// a copy-on-write map (lock-free lookups; the mutex is taken only the
// first time a combination of label values appears), and a histogram
// adds to one bucket, its sum and nothing else.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// registry is the metrics of one process, written in registration order.
// It is safe for concurrent use.
type registry struct {
	mu   sync.Mutex
	fams []*family
}

// family is one metric: its name, help text, type, label names and how
// to collect its samples at scrape time.
type family struct {
	name, help, kind string
	labels           []string
	collect          func(emit emitFunc)
}

// emitFunc takes one sample while a family is collected: the name suffix
// ("" or _bucket, _sum, _count), the values of the family's labels, an
// extra label (le of a bucket; "" for none) and the value.
type emitFunc func(suffix string, lv labelValues, le string, v float64)

// labelValues are the values of a family's labels, in the order of its
// label names; unused trailing entries are "". A fixed array, so that
// looking up a child by it allocates nothing.
type labelValues [3]string

// Metric types of the exposition format.
const (
	kindCounter   = "counter"
	kindGauge     = "gauge"
	kindHistogram = "histogram"
)

// newRegistry returns a registry holding the build information.
func newRegistry() *registry {
	r := &registry{}
	version, revision := buildVersion()
	r.add(&family{name: "deltadb_build_info", kind: kindGauge, labels: []string{"version", "revision", "goversion"},
		help: "Build of the running binary; the value is always 1.",
		collect: func(emit emitFunc) {
			emit("", labelValues{version, revision, runtime.Version()}, "", 1)
		}})
	return r
}

// buildVersion is the main module's version and VCS revision from the
// binary's build information ("unknown" where the build did not record
// them, as in `go test`).
func buildVersion() (version, revision string) {
	version, revision = "unknown", "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, revision
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			revision = s.Value
		}
	}
	return version, revision
}

// add registers f. Registering two families of one name is a programming
// error the exposition would carry to the scraper, so it panics at start.
func (r *registry) add(f *family) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.fams {
		if g.name == f.name {
			panic("metrics: " + f.name + " registered twice")
		}
	}
	r.fams = append(r.fams, f)
}

// counterFunc registers a counter whose samples collect emits at scrape
// time, from counts kept elsewhere (the LRU's, the authenticator's).
func (r *registry) counterFunc(name, help string, labels []string, collect func(emit func(lv labelValues, v float64))) {
	r.add(&family{name: name, help: help, kind: kindCounter, labels: labels, collect: plain(collect)})
}

// gaugeFunc registers a gauge whose samples collect emits at scrape time.
func (r *registry) gaugeFunc(name, help string, labels []string, collect func(emit func(lv labelValues, v float64))) {
	r.add(&family{name: name, help: help, kind: kindGauge, labels: labels, collect: plain(collect)})
}

// plain adapts a collector of plain samples (no suffix, no le).
func plain(collect func(emit func(lv labelValues, v float64))) func(emitFunc) {
	return func(emit emitFunc) {
		collect(func(lv labelValues, v float64) { emit("", lv, "", v) })
	}
}

// counterVec registers and returns a counter with labels.
func (r *registry) counterVec(name, help string, labels ...string) *counterVec {
	c := &counterVec{}
	r.add(&family{name: name, help: help, kind: kindCounter, labels: labels, collect: func(emit emitFunc) {
		c.children.each(func(lv labelValues, n *atomic.Uint64) { emit("", lv, "", float64(n.Load())) })
	}})
	return c
}

// histogramVec registers and returns a histogram of durations with
// labels, whose buckets have the upper bounds given (ascending; +Inf is
// added).
func (r *registry) histogramVec(name, help string, bounds []time.Duration, labels ...string) *histogramVec {
	h := &histogramVec{bounds: bounds}
	les := make([]string, len(bounds)+1)
	for i, b := range bounds {
		les[i] = formatFloat(b.Seconds())
	}
	les[len(bounds)] = "+Inf"
	h.children.newChild = func() *histogram { return &histogram{counts: make([]atomic.Uint64, len(bounds)+1)} }
	r.add(&family{name: name, help: help, kind: kindHistogram, labels: labels, collect: func(emit emitFunc) {
		h.children.each(func(lv labelValues, x *histogram) { x.collect(lv, les, emit) })
	}})
	return h
}

// eachSample calls f with every sample of the family named name, as a
// scrape would write it, lv giving a label's value by the label's name;
// it does nothing when no family has that name. The dashboard's sampler
// (stats.go) reads the registry through it.
func (r *registry) eachSample(name string, f func(lv func(label string) string, suffix, le string, v float64)) {
	r.mu.Lock()
	i := slices.IndexFunc(r.fams, func(g *family) bool { return g.name == name })
	var fam *family
	if i >= 0 {
		fam = r.fams[i]
	}
	r.mu.Unlock()
	if fam == nil {
		return
	}
	fam.collect(func(suffix string, lv labelValues, le string, v float64) {
		f(func(label string) string {
			if j := slices.Index(fam.labels, label); j >= 0 {
				return lv[j]
			}
			return ""
		}, suffix, le, v)
	})
}

// write writes every family in the text exposition format.
func (r *registry) write(w io.Writer) error {
	r.mu.Lock()
	fams := slices.Clone(r.fams)
	r.mu.Unlock()
	var b bytes.Buffer
	for _, f := range fams {
		f.write(&b)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// write writes f's HELP and TYPE lines and its samples.
func (f *family) write(b *bytes.Buffer) {
	b.WriteString("# HELP ")
	b.WriteString(f.name)
	b.WriteByte(' ')
	b.WriteString(escapeHelp(f.help))
	b.WriteString("\n# TYPE ")
	b.WriteString(f.name)
	b.WriteByte(' ')
	b.WriteString(f.kind)
	b.WriteByte('\n')
	f.collect(func(suffix string, lv labelValues, le string, v float64) {
		b.WriteString(f.name)
		b.WriteString(suffix)
		writeLabels(b, f.labels, lv, le)
		b.WriteByte(' ')
		b.WriteString(formatFloat(v))
		b.WriteByte('\n')
	})
}

// writeLabels writes {name="value",...}, with le last when not "", or
// nothing when there are no labels at all.
func writeLabels(b *bytes.Buffer, names []string, lv labelValues, le string) {
	if len(names) == 0 && le == "" {
		return
	}
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(lv[i]))
		b.WriteByte('"')
	}
	if le != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`le="`)
		b.WriteString(le)
		b.WriteByte('"')
	}
	b.WriteByte('}')
}

// helpEscaper and labelEscaper escape as the text format asks: in HELP
// text a backslash and a line feed, in label values also a double quote.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// formatFloat writes a sample value as the text format reads it: the
// shortest exact decimal, +Inf, -Inf or NaN.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// children are the per-label-values children of a labelled family. The
// map is replaced, never changed, so lookups need no lock; mu serialises
// the rare insertions. The zero value is ready to use with children of
// their zero value.
type children[C any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[labelValues]*C]
	// newChild makes a child; nil is new(C).
	newChild func() *C
}

// get returns the child of lv, creating it the first time.
func (c *children[C]) get(lv labelValues) *C {
	if m := c.m.Load(); m != nil {
		if x, ok := (*m)[lv]; ok {
			return x
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if x, ok := (*old)[lv]; ok {
			return x
		}
	}
	next := make(map[labelValues]*C, 1)
	if old != nil {
		next = make(map[labelValues]*C, len(*old)+1)
		for k, v := range *old {
			next[k] = v
		}
	}
	x := new(C)
	if c.newChild != nil {
		x = c.newChild()
	}
	next[lv] = x
	c.m.Store(&next)
	return x
}

// each calls f for every child, in the order of their label values, so
// that a scrape reads the same from one time to the next.
func (c *children[C]) each(f func(labelValues, *C)) {
	m := c.m.Load()
	if m == nil {
		return
	}
	keys := make([]labelValues, 0, len(*m))
	for k := range *m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b labelValues) int {
		for i := range a {
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	for _, k := range keys {
		f(k, (*m)[k])
	}
}

// counterVec is a counter with labels. A nil *counterVec counts nothing,
// so that code built without metrics (tests) needs no checks.
type counterVec struct {
	children children[atomic.Uint64]
}

// add adds n to the child of lv.
func (c *counterVec) add(lv labelValues, n uint64) {
	if c == nil {
		return
	}
	c.children.get(lv).Add(n)
}

// inc adds 1 to the child of lv.
func (c *counterVec) inc(lv labelValues) { c.add(lv, 1) }

// histogramVec is a histogram of durations with labels. A nil
// *histogramVec observes nothing.
type histogramVec struct {
	bounds   []time.Duration
	children children[histogram]
}

// observe records d in the child of lv.
func (h *histogramVec) observe(lv labelValues, d time.Duration) {
	if h == nil {
		return
	}
	h.children.get(lv).observe(h.bounds, d)
}

// histogram is one child of a histogramVec: a count per bucket (not
// cumulative: each observation adds to one) and the sum.
type histogram struct {
	counts   []atomic.Uint64
	sumNanos atomic.Int64
}

// observe records d in the bucket of bounds it falls in. bounds are
// inclusive upper bounds (le): d equal to a bound counts in that bound's
// bucket, which BinarySearch finds.
func (x *histogram) observe(bounds []time.Duration, d time.Duration) {
	i, _ := slices.BinarySearch(bounds, d)
	x.counts[i].Add(1)
	x.sumNanos.Add(int64(d))
}

// collect emits the cumulative buckets, _sum and _count. The count is the
// sum of the buckets read, so +Inf and _count always agree.
func (x *histogram) collect(lv labelValues, les []string, emit emitFunc) {
	var cum uint64
	for i := range x.counts {
		cum += x.counts[i].Load()
		emit("_bucket", lv, les[i], float64(cum))
	}
	emit("_sum", lv, "", time.Duration(x.sumNanos.Load()).Seconds())
	emit("_count", lv, "", float64(cum))
}

// latencyBuckets are the upper bounds of every latency histogram: from
// a warm cache hit (well under a millisecond) to a slow S3 round trip.
var latencyBuckets = []time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// metricsContentType is the media type of the text exposition format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// serveMetrics answers a scrape with r's metrics.
func serveMetrics(w http.ResponseWriter, r *registry) {
	var b bytes.Buffer
	r.write(&b) // a bytes.Buffer does not fail
	w.Header().Set("Content-Type", metricsContentType)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// httpMetrics are the metrics of finished REST requests. A nil
// *httpMetrics records nothing.
type httpMetrics struct {
	requests *counterVec
	duration *histogramVec
	// okGet and okGetDuration are the series of a GET of an entity
	// answered 200, the most frequent request, found once: observe then
	// skips the lookup by three labels (nil until the first).
	okGet         atomic.Pointer[atomic.Uint64]
	okGetDuration atomic.Pointer[histogram]
}

// newHTTPMetrics registers the REST request metrics in r.
func newHTTPMetrics(r *registry) *httpMetrics {
	return &httpMetrics{
		requests: r.counterVec("deltadb_http_requests_total",
			"REST requests answered, by route pattern (unmatched: no route), method and status.", "route", "method", "status"),
		duration: r.histogramVec("deltadb_http_request_duration_seconds",
			"Time from a REST request's arrival to its answer, by route pattern.", latencyBuckets, "route"),
	}
}

// observe records one finished request. Its labels come from bounded
// sets whatever the client sends: the route pattern, never the path; a
// known method or "other"; a status code.
func (m *httpMetrics) observe(rec requestRecord) {
	if m == nil {
		return
	}
	if rec.Route == patternGetEntity && rec.Method == http.MethodGet && rec.Status == http.StatusOK {
		m.observeOKGet(rec.Duration)
		return
	}
	route := routeLabel(rec.Route)
	m.requests.inc(labelValues{route, methodLabel(rec.Method), statusLabel(rec.Status)})
	m.duration.observe(labelValues{route}, rec.Duration)
}

// observeOKGet records a GET of an entity answered 200, which took d, in
// its series (okGet, okGetDuration), found on the first.
func (m *httpMetrics) observeOKGet(d time.Duration) {
	c, h := m.okGet.Load(), m.okGetDuration.Load()
	if c == nil || h == nil {
		route := routeLabel(patternGetEntity)
		c = m.requests.children.get(labelValues{route, http.MethodGet, statusLabel(http.StatusOK)})
		h = m.duration.children.get(labelValues{route})
		m.okGet.Store(c)
		m.okGetDuration.Store(h)
	}
	c.Add(1)
	h.observe(m.duration.bounds, d)
}

// routeLabel is the path part of a mux pattern ("GET /entity/{db}" is
// "/entity/{db}": the method has its own label), "unmatched" for none.
func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		return pattern[i+1:]
	}
	return pattern
}

// methodLabel is m if it is a method the API knows, else "other".
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// statusLabels are the decimal strings of the status codes 100-599,
// made once so that labelling a request allocates nothing.
var statusLabels = func() []string {
	s := make([]string, 500)
	for i := range s {
		s[i] = strconv.Itoa(100 + i)
	}
	return s
}()

// statusLabel is code in decimal, "other" outside 100-599.
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return statusLabels[code-100]
}

// handleMetrics is GET /metrics on the REST port (admin only; the ops
// listener serves the same without a credential).
func (s *restServer) handleMetrics(w http.ResponseWriter, r *http.Request, _ principal) error {
	serveMetrics(w, s.reg)
	return nil
}

// registerCacheMetrics registers the entity cache's counters and size, as
// stats (the worker's LRU) reports them at scrape time.
func registerCacheMetrics(r *registry, stats func() cacheStats) {
	r.counterFunc("deltadb_cache_hits_total", "Entity cache lookups that found a live entry.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(stats().Hits)) })
	r.counterFunc("deltadb_cache_misses_total", "Entity cache lookups that found nothing or an expired entry.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(stats().Misses)) })
	r.counterFunc("deltadb_cache_evictions_total", "Entity cache entries dropped for capacity or expiry.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(stats().Evictions)) })
	r.gaugeFunc("deltadb_cache_entries", "Entities held in the entity cache now.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(stats().Entries)) })
	r.gaugeFunc("deltadb_cache_capacity", "Most entities the entity cache holds.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(stats().Capacity)) })
}

// registerWorkerMetrics registers the main worker's count of processing
// workers by status, from list (the router's) at scrape time. Both
// statuses are always written, so that a query for either finds a 0.
func registerWorkerMetrics(r *registry, list func() []workerInfo) {
	r.gaugeFunc("deltadb_workers", "Processing workers known to this main worker, by status.", []string{"status"},
		func(emit func(labelValues, float64)) {
			n := map[string]int{statusAvailable: 0, statusUnavailable: 0}
			for _, w := range list() {
				n[w.Status]++
			}
			for _, s := range []string{statusAvailable, statusUnavailable} {
				emit(labelValues{s}, float64(n[s]))
			}
		})
}

// storeMetrics are the metrics of storage operations, shared by every
// meteredStore of a process.
type storeMetrics struct {
	ops     *counterVec
	latency *histogramVec
}

// meterStore returns st counted and timed by operation and result, with
// backend (fs or s3) as a label. With the S3 backend it also registers
// the count of retried S3 requests.
func meterStore(r *registry, st store) store {
	backend := "fs"
	if s3, ok := st.(*s3Store); ok {
		backend = "s3"
		r.counterFunc("deltadb_s3_retries_total", "S3 requests sent again after a transient failure (5xx, throttling, timeout, connection error).", nil,
			func(emit func(labelValues, float64)) { emit(labelValues{}, float64(s3.retries.Load())) })
	}
	m := &storeMetrics{
		ops: r.counterVec("deltadb_storage_operations_total",
			"Storage operations, by backend, operation and result (ok, not_found, conflict, error).", "backend", "operation", "result"),
		latency: r.histogramVec("deltadb_storage_operation_duration_seconds",
			"Time of storage operations, by backend and operation.", latencyBuckets, "backend", "operation"),
	}
	return &meteredStore{store: st, backend: backend, m: m}
}

// meteredStore is a store whose operations are counted and timed. Lock
// and Close pass through uncounted: they are not storage I/O of a
// request's data.
type meteredStore struct {
	store
	backend string
	m       *storeMetrics
}

// observe records one operation that started at start and ended in err.
func (s *meteredStore) observe(op string, start time.Time, err error) {
	s.m.ops.inc(labelValues{s.backend, op, resultLabel(err)})
	s.m.latency.observe(labelValues{s.backend, op}, time.Since(start))
}

// resultLabel classifies a storage error as the result label: a few
// values, whatever the error.
func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errNotFound):
		return "not_found"
	case errors.Is(err, errPrecondition):
		return "conflict"
	default:
		return "error"
	}
}

func (s *meteredStore) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	b, err := s.store.Get(ctx, key)
	s.observe("get", start, err)
	return b, err
}

func (s *meteredStore) Put(ctx context.Context, key string, data []byte) error {
	start := time.Now()
	err := s.store.Put(ctx, key, data)
	s.observe("put", start, err)
	return err
}

func (s *meteredStore) GetRev(ctx context.Context, key string) ([]byte, string, error) {
	start := time.Now()
	b, rev, err := s.store.GetRev(ctx, key)
	s.observe("get", start, err)
	return b, rev, err
}

func (s *meteredStore) PutIf(ctx context.Context, key string, data []byte, rev string) (string, error) {
	start := time.Now()
	newRev, err := s.store.PutIf(ctx, key, data, rev)
	s.observe("put_if", start, err)
	return newRev, err
}

func (s *meteredStore) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.store.Delete(ctx, key)
	s.observe("delete", start, err)
	return err
}

func (s *meteredStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	start := time.Now()
	keys, err := s.store.List(ctx, prefix, startAfter, limit)
	s.observe("list", start, err)
	return keys, err
}

func (s *meteredStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	start := time.Now()
	dirs, err := s.store.ListDirs(ctx, prefix)
	s.observe("list_dirs", start, err)
	return dirs, err
}

// grpcMetrics are the metrics of the gRPC calls a server answered.
type grpcMetrics struct {
	calls    *counterVec
	duration *histogramVec
}

// newGRPCMetrics registers the gRPC call metrics in r.
func newGRPCMetrics(r *registry) *grpcMetrics {
	return &grpcMetrics{
		calls: r.counterVec("deltadb_grpc_calls_total",
			"gRPC calls answered, by full method name and status code.", "method", "code"),
		duration: r.histogramVec("deltadb_grpc_call_duration_seconds",
			"Time of gRPC calls answered, by full method name (streams: until they end).", latencyBuckets, "method"),
	}
}

// serverOptions are the interceptors that count and time every call. The
// method label is bounded: gRPC calls interceptors only for the methods
// the server registered.
func (m *grpcMetrics) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			m.observe(info.FullMethod, start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := time.Now()
			err := h(srv, ss)
			m.observe(info.FullMethod, start, err)
			return err
		}),
	}
}

// observe records one call of method that started at start and ended in
// err.
func (m *grpcMetrics) observe(method string, start time.Time, err error) {
	m.calls.inc(labelValues{method, status.Code(err).String()})
	m.duration.observe(labelValues{method}, time.Since(start))
}

// registerAuthMetrics registers the authenticator's counts of failed
// authentications and of attempts refused by the rate limit.
func registerAuthMetrics(r *registry, a *authenticator) {
	r.counterFunc("deltadb_auth_failures_total",
		"Credentials refused (unknown, expired, deleted, ended sessions), REST and gRPC, rate-limited attempts included.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(a.failures.Load())) })
	r.counterFunc("deltadb_auth_rate_limited_total",
		"Failed authentications answered 429 (gRPC: RESOURCE_EXHAUSTED) because their client is over -auth-fail-limit.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(a.rateLimited.Load())) })
}

// registerSchemaMetrics registers the schema registry's counts of
// documents validated and of those that failed.
func registerSchemaMetrics(r *registry, s *schemaRegistry) {
	r.counterFunc("deltadb_validations_total", "Documents validated against a schema.", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(s.validations.Load())) })
	r.counterFunc("deltadb_validation_failures_total",
		"Documents that did not pass validation against a schema (not matching, not JSON, over the time budget).", nil,
		func(emit func(labelValues, float64)) { emit(labelValues{}, float64(s.failures.Load())) })
}
