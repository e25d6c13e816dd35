package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// restServer is the main worker's REST API (README "API", API.md) and web UI:
// the route table, the middleware every request passes (request ID, canonical
// path, authentication and authorization) and the one place that writes error
// bodies. The handlers are in handlers.go. It is safe for concurrent use once
// built by newRESTServer.
type restServer struct {
	auth *authenticator
	// data runs every entity, database and schema operation.
	data *dataPlane
	// workers lists the processing workers for /admin/workers.
	workers func() []workerInfo
	// maxBody is the largest request body accepted; larger gets 413.
	maxBody int64
	// jobs runs the rekey jobs; nil answers their routes 503.
	jobs *keyJobs
	// checks runs the checks of stored entities (checks.go); nil answers
	// their routes 503.
	checks *checkJobs
	// oidcLogin is the UI's sign-in with the OpenID provider
	// (oidclogin.go); nil offers none.
	oidcLogin *oidcLogin
	// ready is the state GET /readyz reports (health.go).
	ready readiness
	// reg is the process's metrics for GET /metrics, metrics the REST
	// request metrics in it (setMetrics sets both).
	reg     *registry
	metrics *httpMetrics
	// stats keeps the last hour of reg for GET /admin/stats (stats.go).
	stats *statsSampler
	log   *slog.Logger
	mux   *http.ServeMux
	// idPrefix and idSeq make the IDs of requests that bring none: a
	// random prefix per server, then a sequence number; idRuns holds
	// runs of them formatted ahead (newRequestID).
	idPrefix string
	idSeq    atomic.Uint64
	idRuns   sync.Pool
	// audit writes the audit line of every request; nil writes none.
	audit *auditLog
	// auditNamesKey is the key of POST /admin/audit/hash.
	auditNamesKey []byte
	// tickets are the stream tickets of the change feed (feedticket.go).
	tickets *streamTickets
}

// workerInfo is one row of GET /admin/workers.
type workerInfo struct {
	WorkerID string            `json:"worker_id"`
	Status   string            `json:"status"`
	KeyID    string            `json:"key_id"`
	LastSeen time.Time         `json:"last_seen"`
	Tags     map[string]string `json:"tags"`
	InFlight int64             `json:"in_flight"`
	Cache    cacheStats        `json:"cache"`
}

// restOptions are the parts and settings of a REST server.
type restOptions struct {
	auth *authenticator
	data *dataPlane
	// workers lists the processing workers for /admin/workers.
	workers func() []workerInfo
	// maxBody is the largest request body accepted (-rest-max-body-size).
	maxBody int64
	// jobs runs the key jobs; nil answers their routes 503.
	jobs *keyJobs
	// reg is the process's metrics, served at GET /metrics, where the
	// REST request metrics are registered; nil is a registry of the
	// server's own.
	reg *registry
	// keyChecked says that the master key matched the storage's key
	// check: the server starts ready.
	keyChecked bool
	// logHealth is the write-ahead logs' health for readiness
	// (readiness.logHealth); nil without logs.
	logHealth func() error
	// feedHealth is the change feed's log's health for readiness (nil
	// without a feed).
	feedHealth func() error
	// oidcLogin is the UI's sign-in with the OpenID provider; nil offers
	// none.
	oidcLogin *oidcLogin
	// ctx ends the server's background work (the checks of stored
	// entities, stopped and waited for by checks.stop); nil builds no
	// check runner, and the check routes answer 503.
	ctx context.Context
	// audit is the audit log (audit.go); nil for none. auditNamesKey is
	// the key its names are hashed with, for POST /admin/audit/hash.
	audit         *auditLog
	auditNamesKey []byte
	log           *slog.Logger
}

// newRESTServer builds the REST server of o and its route table.
func newRESTServer(o restOptions) *restServer {
	s := &restServer{auth: o.auth, data: o.data, workers: o.workers, maxBody: o.maxBody, jobs: o.jobs,
		oidcLogin: o.oidcLogin, log: o.log, mux: http.NewServeMux(), idPrefix: randomIDPrefix(),
		audit: o.audit, auditNamesKey: o.auditNamesKey, tickets: newStreamTickets(time.Now)}
	reg := o.reg
	if reg == nil {
		reg = newRegistry()
	}
	s.reg, s.metrics = reg, newHTTPMetrics(reg)
	s.stats = newStatsSampler(reg, o.workers, time.Now)
	if o.ctx != nil {
		s.checks = s.newCheckJobs(o.ctx)
	}
	s.ready.keyChecked.Store(o.keyChecked)
	s.ready.logHealth = o.logHealth
	s.ready.feedHealth = o.feedHealth
	s.routes()
	return s
}

// handler is a REST handler. It runs for principal p (the zero principal
// on open routes) and returns an error instead of writing one: the route
// wrapper writes it with writeError. A handler that returns an error has
// written nothing.
type handler func(w http.ResponseWriter, r *http.Request, p principal) error

// routes is the route table: one line per route (openapi.json describes each).
func (s *restServer) routes() {
	s.mux.Handle("GET /health", s.open(s.handleHealth))
	s.mux.Handle("GET /healthz", s.open(s.handleHealthz))
	s.mux.Handle("GET /readyz", s.open(s.handleReadyz))
	s.mux.Handle("GET /metrics", s.need(permAdmin, s.handleMetrics))
	s.mux.Handle("GET /openapi.json", s.open(s.handleOpenAPI))
	s.mux.Handle("POST /api/login", s.open(s.handleLogin))
	s.mux.Handle("GET /api/login/oidc", s.open(s.handleOIDCConfig))
	s.mux.Handle("POST /api/login/oidc", s.open(s.handleOIDCCode))
	s.mux.Handle("POST /api/logout", s.need(0, s.handleLogout))
	s.mux.Handle("GET /api/me", s.need(0, s.handleMe))
	s.mux.Handle("GET /api/keys", s.need(permAdmin, s.handleListKeys))
	s.mux.Handle("POST /api/keys", s.need(permAdmin, s.handleCreateKey))
	s.mux.Handle("DELETE /api/keys/{id}", s.need(permAdmin, s.handleDeleteKey))
	s.mux.Handle("PATCH /api/keys/{id}", s.need(permAdmin, s.handleEditKey))
	s.mux.Handle("POST /api/keys/{id}/rotate", s.need(permAdmin, s.handleRotateKey))
	s.mux.Handle("GET /api/databases", s.need(permRead, s.handleListDatabases))
	s.mux.Handle("GET /api/databases/{db}", s.need(permRead, s.handleGetDatabase))
	s.mux.Handle("PUT /api/databases/{db}", s.need(permWrite, s.handlePutDatabase))
	s.mux.Handle("GET /api/databases/{db}/keys", s.need(permRead, s.handleListEntityKeys))
	s.mux.Handle("DELETE /api/databases/{db}", s.need(permAdmin, s.handleDeleteDatabase))
	s.mux.Handle("POST /api/databases/{db}/get", s.need(permRead, s.handleGetMany))
	s.mux.Handle("GET /api/databases/{db}/export", s.need(permRead, s.handleExport))
	s.mux.Handle("POST /api/databases/{db}/import", s.need(permWrite, s.handleImport))
	s.mux.Handle("GET /api/databases/{db}/changes", s.needFeed(permRead, s.handleChanges))
	s.mux.Handle("POST /api/databases/{db}/changes/ticket", s.need(permRead, s.handleStreamTicket))
	s.mux.Handle("POST /api/databases/{db}/check", s.need(permWrite, s.handleStartCheck))
	s.mux.Handle("GET /api/databases/{db}/check", s.need(permRead, s.handleGetCheck))
	s.mux.Handle("POST /api/databases/{db}/find", s.need(permRead, s.handleFind))
	s.mux.Handle("POST /api/databases/{db}/explain", s.need(permRead, s.handleExplain))
	s.mux.Handle("GET /api/databases/{db}/index", s.need(permRead, s.handleListIndexes))
	s.mux.Handle("POST /api/databases/{db}/index", s.need(permWrite, s.handleCreateIndex))
	s.mux.Handle("DELETE /api/databases/{db}/index/{name}", s.need(permWrite, s.handleDeleteIndex))
	s.mux.Handle("GET /admin/workers", s.need(permAdmin, s.handleWorkers))
	s.mux.Handle("GET /admin/jobs", s.need(permAdmin, s.handleListJobs))
	s.mux.Handle("GET /admin/stats", s.need(permAdmin, s.handleStats))
	s.mux.Handle("POST /admin/databases/{db}/rekey", s.need(permAdmin, s.handleRekey))
	s.mux.Handle("POST /admin/audit/hash", s.need(permAdmin, s.handleAuditHash))
	s.mux.Handle("GET /admin/schemas", s.open(s.handleListSchemas))
	s.mux.Handle("GET /schema/{id}", s.open(s.handleGetSchema))
	s.mux.Handle("PUT /schema/{id}", s.need(permWrite, s.handlePutSchema))
	s.mux.Handle("DELETE /schema/{id}", s.need(permWrite, s.handleDeleteSchema))
	s.mux.Handle("POST /schema/{id}/validate", s.need(permRead, s.handleValidate))
	s.mux.Handle("GET /schema/{id}/databases", s.need(permRead, s.handleSchemaDatabases))
	s.mux.Handle("PUT /entity/{db}", s.need(permWrite, s.handlePutEntities))
	// patternGetEntity, written out: the route table's tests read the
	// patterns from the source. dispatch serves it first (serveGetEntity).
	s.mux.Handle("GET /entity/{db}", s.need(permRead, s.handleGetEntity))
	s.mux.Handle("PATCH /entity/{db}", s.need(permWrite, s.handlePatchEntity))
	s.mux.Handle("DELETE /entity/{db}", s.need(permWrite, s.handleDeleteEntity))
	s.mux.Handle("GET /entity/{db}/versions", s.need(permRead, s.handleListVersions))
	s.mux.Handle("POST /entity/{db}/undelete", s.need(permWrite, s.handleUndelete))
	s.mux.Handle("POST /entity/{db}/destroy", s.need(permAdmin, s.handleDestroy))
	s.mux.Handle("GET /", s.open(handleUI))
}

// ServeHTTP gives every request its ID (X-Request-ID, in the response
// and the context), then refuses non-canonical paths before routing:
// ServeMux would otherwise answer "/entity/../x" with a redirect, and a
// name with ".." is a 400 wherever it arrives (API.md "Names"). The
// request's context carries its ID and principal (requestCtx); a handler
// gets a copy of r with that context (withCtx), which the warm GET makes
// only for an error (serveGetEntity).
func (s *restServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// One allocation holds what the middleware keeps per request.
	st := &requestState{start: time.Now()}
	st.w.ResponseWriter = w
	info := &st.ctx.info
	info.id = s.requestID(r)
	st.idHeader[0] = info.id
	w.Header()[headerRequestID] = st.idHeader[:]
	st.ctx.Context = r.Context()
	ctx := &st.ctx
	var pattern string
	defer func() {
		// One clock read: Since reads only the monotonic clock, and the
		// end is the start moved by the duration.
		d := time.Since(st.start)
		s.finishRequest(requestRecord{Method: r.Method, Route: pattern, Status: st.w.status(), Bytes: st.w.bytes,
			Duration: d, End: st.start.Add(d), Principal: info.principal, RequestID: info.id, Client: s.auth.clientOf(r)})
	}()
	var out http.ResponseWriter = &st.w
	if s.audit != nil {
		r = withCtx(r, ctx, "") // the audit lines read the request's context
		aw := &auditWriter{ResponseWriter: &st.w, s: s, r: r, info: info}
		defer aw.finish() // before finishRequest: the line of an answer the handler left empty
		out = aw
	}
	pattern = s.dispatch(out, r, ctx)
}

// withCtx returns r with ctx, the request's context, and pattern, when
// not "", as the route it is served as: r itself when its context is ctx
// already (a copy made earlier for this request), else a copy.
func withCtx(r *http.Request, ctx context.Context, pattern string) *http.Request {
	if r.Context() != ctx {
		r = r.WithContext(ctx)
	}
	if pattern != "" {
		r.Pattern = pattern
	}
	return r
}

// requestState is the middleware's state of one request: the writer that
// counts the answer, the request's context with its ID and principal, and
// when it began.
type requestState struct {
	w     meteredWriter
	ctx   requestCtx
	start time.Time
	// idHeader is the X-Request-ID header's value slice (net/http copies
	// the header map's values before it writes them).
	idHeader [1]string
}

// headerRequestID is X-Request-ID in the canonical form of http.Header,
// so that reading and setting it does not canonicalize it every time.
const headerRequestID = "X-Request-Id"

// requestID is the client's X-Request-ID when it is sane, else a new one.
func (s *restServer) requestID(r *http.Request) string {
	if v := r.Header[headerRequestID]; len(v) > 0 && saneRequestID(v[0]) {
		return v[0]
	}
	return s.newRequestID()
}

// dispatch refuses a non-canonical path, then routes r within ctx, the
// request's context; it returns the route pattern that matched, "" for
// none.
func (s *restServer) dispatch(w http.ResponseWriter, r *http.Request, ctx context.Context) string {
	p := r.URL.Path
	if !canonicalPath(p) {
		s.writeError(w, withCtx(r, ctx, ""), reqErrorf(errInvalid, "path %q is not canonical", p))
		return ""
	}
	if what, ok := emptyNameRoutes[p]; ok {
		s.writeError(w, withCtx(r, ctx, ""), reqErrorf(errInvalid, "path %q names no %s", p, what))
		return ""
	}
	if err := checkContentEncoding(r.Header); err != nil {
		s.writeError(w, withCtx(r, ctx, ""), err)
		return ""
	}
	if err := checkQuery(r.URL.RawQuery); err != nil {
		s.writeError(w, withCtx(r, ctx, ""), err)
		return ""
	}
	if db, ok := entityGetDB(r); ok {
		return s.serveGetEntity(w, r, ctx, db)
	}
	r = withCtx(r, ctx, "")
	h, pattern := s.mux.Handler(r)
	if aw, ok := w.(*auditWriter); ok && !aw.admit(pattern) {
		return pattern
	}
	if pattern == "GET /" {
		// The UI's file route takes every GET; a GET of a route that
		// serves other methods only is that route's 405, not a 404.
		if allow := s.otherMethods(r); allow != "" {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, reqErrorf(errMethod, "method %q is not allowed on %q; allowed: %s", r.Method, p, allow))
			return ""
		}
	}
	if pattern == "" {
		// The mux's own 404 and 405 answers are plain text; every error
		// of the API is a JSON body, so keep only their status and Allow.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		allow := rec.header.Get("Allow")
		if allow != "" && s.uiOnly(r) {
			// The UI's file route is what takes the path's GET: the
			// request is a 405 only when a route of other methods has
			// the path (POST /entity/{db}/undelete and a PUT of it).
			allow = s.otherMethods(r)
		}
		if allow != "" {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, reqErrorf(errMethod, "method %q is not allowed on %q; allowed: %s", r.Method, p, allow))
			return ""
		}
		s.writeError(w, r, reqErrorf(errNotFound, "no route for %q", r.Method+" "+p))
		return ""
	}
	// Handler does not set the path values; ServeHTTP matches again and does.
	s.mux.ServeHTTP(w, r)
	return pattern
}

// checkContentEncoding refuses (415) a body in a Content-Encoding other
// than identity: no route decodes one, and a compressed body read as it
// is would be refused for a reason that is not the request's, or a body
// declared compressed but sent plain stored as sent.
func checkContentEncoding(h http.Header) error {
	for _, v := range h["Content-Encoding"] {
		for _, coding := range strings.Split(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return reqErrorf(errUnsupportedMedia, "Content-Encoding %q: send the body uncompressed", c)
			}
		}
	}
	return nil
}

// checkQuery refuses (400) a query string that url.ParseQuery cannot
// read whole: a pair with a bad %-escape or a ';'. The routes' parsers
// skip such a pair, so a mistyped ?cursor=, ?prefix= or ?schema= was read
// as absent: a listing from the start or of every key, a write not
// validated against the schema it named.
func checkQuery(raw string) error {
	if !strings.ContainsAny(raw, "%;") {
		return nil // the common query: nothing to unescape
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(pair, ";") {
			return reqErrorf(errInvalid, "the query string holds a ';': separate parameters with '&' and send ';' as %%3B")
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return reqErrorf(errInvalid, "the query string holds a bad %%-escape: a %% must be followed by two hex digits (send %% as %%25)")
		}
		if _, err := url.QueryUnescape(v); err != nil {
			return reqErrorf(errInvalid, "query parameter %q holds a bad %%-escape: a %% must be followed by two hex digits (send %% as %%25)", name)
		}
	}
	return nil
}

// patternGetEntity is the route of an entity's GET, which dispatch
// serves without the mux (serveGetEntity).
const patternGetEntity = "GET /entity/{db}"

// entityGetDB returns the {db} of r when r is a GET of the route
// patternGetEntity, whose path has been found canonical: the mux would
// pick that route for it, with that path value (TestEntityGetRouteAsMux).
// A path written with escapes (RawPath set) is left to the mux.
func entityGetDB(r *http.Request) (string, bool) {
	const prefix = "/entity/"
	if r.Method != http.MethodGet || r.URL.RawPath != "" || !strings.HasPrefix(r.URL.Path, prefix) {
		return "", false
	}
	db := r.URL.Path[len(prefix):]
	if db == "" || strings.IndexByte(db, '/') >= 0 {
		return "", false
	}
	return db, true
}

// serveGetEntity serves the warm GET, the most frequent request, within
// ctx, the request's context, as the mux would serve its route
// (need(permRead, handleGetEntity)) without matching the route table
// twice and allocating its path values, and without copying r to give it
// ctx unless it fails: the cost of a GET then stays near a plain net/http
// handler's (BENCHMARKS.md, "The read path"). It returns the route's
// pattern.
func (s *restServer) serveGetEntity(w http.ResponseWriter, r *http.Request, ctx context.Context, db string) string {
	if aw, ok := w.(*auditWriter); ok {
		r = withCtx(r, ctx, patternGetEntity) // ServeHTTP's copy already
		r.SetPathValue("db", db)              // the audit line names the database
		if !aw.admit(patternGetEntity) {
			return patternGetEntity
		}
	}
	_, err := s.principalFor(ctx, r, permRead, db)
	if err == nil {
		err = s.getEntity(ctx, w, r, db)
	}
	if err != nil {
		s.writeError(w, withCtx(r, ctx, patternGetEntity), err)
	}
	return patternGetEntity
}

// canonicalPath reports whether p is a path as path.Clean writes it, but
// for a trailing slash. A rooted path (every request's but "*") is
// checked in one pass: no empty segment but a trailing slash's, no "." or
// ".." (TestCanonicalPathAsClean holds it to path.Clean).
func canonicalPath(p string) bool {
	if p == "/" {
		return true
	}
	if p == "" || p[0] != '/' {
		return path.Clean(p) == strings.TrimSuffix(p, "/") && !strings.Contains(p, "//")
	}
	for rest := p[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" && more || seg == "." || seg == ".." {
			return false
		}
		if !more {
			return true
		}
		rest = after
	}
}

// uiOnly reports whether the route a GET of r's path reaches is the UI's
// file route and the path names no UI file: then GET and HEAD are not
// allowed on it, whatever the mux's Allow says, and without a route of
// other methods (otherMethods) the answer is 404.
func (s *restServer) uiOnly(r *http.Request) bool {
	get := r.Clone(r.Context())
	get.Method = http.MethodGet
	_, pattern := s.mux.Handler(get)
	_, isFile := uiFile(r.URL.Path)
	return pattern == "GET /" && !isFile
}

// otherMethods lists, as an Allow header does, the methods other than GET
// and HEAD that have a route for r's path, when the path names no UI
// file; "" otherwise.
func (s *restServer) otherMethods(r *http.Request) string {
	if _, isFile := uiFile(r.URL.Path); isFile {
		return ""
	}
	var allow []string
	for _, m := range []string{http.MethodDelete, http.MethodPatch, http.MethodPost, http.MethodPut} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	return strings.Join(allow, ", ")
}

// emptyNameRoutes are the paths of routes whose name segment is empty or
// missing, with what the segment names: "/entity/" and "/entity" are a
// 400 on every method, where the mux would answer the UI (GET), 404 or
// 405.
var emptyNameRoutes = map[string]string{
	"/entity":         "database",
	"/entity/":        "database",
	"/schema":         "schema ID",
	"/api/databases/": "database",
	"/schema/":        "schema ID",
}

// maxRequestIDLen is the longest X-Request-ID taken from a client.
const maxRequestIDLen = 64

// saneRequestID reports whether a client's X-Request-ID may be used as
// the request's ID: 1 to maxRequestIDLen characters of [A-Za-z0-9._-], so
// it is safe in logs and headers.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// newRequestID returns an ID unique to this server process: its random
// prefix and a sequence number (base 36). The IDs come from runs of
// idRunLen formatted at once (idRun), so that a request's ID costs no
// allocation and no step on the shared counter of its own; the numbers
// are unique, not in the order of the requests.
func (s *restServer) newRequestID() string {
	run, _ := s.idRuns.Get().(*idRun)
	if run == nil || run.next == idRunLen {
		run = s.newIDRun()
	}
	start := uint16(0)
	if run.next > 0 {
		start = run.ends[run.next-1]
	}
	id := run.text[start:run.ends[run.next]]
	run.next++
	s.idRuns.Put(run)
	return id
}

// idRunLen is how many request IDs an idRun holds.
const idRunLen = 64

// idRun is a run of request IDs with consecutive numbers, formatted into
// one string and handed out in turn by newRequestID. Runs wait in
// restServer.idRuns, a sync.Pool, so that a run serves one request at a
// time; one the pool drops leaves its unused numbers unused.
type idRun struct {
	text string
	// ends[i] is where the i-th ID ends in text; next is the next to give.
	ends [idRunLen]uint16
	next int
}

// newIDRun takes idRunLen numbers from the server's counter and formats
// their IDs.
func (s *restServer) newIDRun() *idRun {
	first := s.idSeq.Add(idRunLen) - idRunLen + 1
	b := make([]byte, 0, idRunLen*(len(s.idPrefix)+8))
	run := &idRun{}
	for i := range uint64(idRunLen) {
		b = append(b, s.idPrefix...)
		b = append(b, '-')
		b = strconv.AppendUint(b, first+i, 36)
		run.ends[i] = uint16(len(b))
	}
	run.text = string(b)
	return run
}

// statusRecorder keeps the status and headers of a response and drops its
// body.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }

// open wraps h for a route that needs no credential.
func (s *restServer) open(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r, principal{}); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// need wraps h so that it runs only for a principal holding permission pm
// and, on routes with a {db}, allowed that database.
func (s *restServer) need(pm perm, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveAs(w, r, pm, r.PathValue("db"), h)
	})
}

// serveAs runs h for the request's principal once it holds permission pm
// and is allowed database db ("" on routes without one), and writes h's
// error.
func (s *restServer) serveAs(w http.ResponseWriter, r *http.Request, pm perm, db string, h handler) {
	p, err := s.principalFor(r.Context(), r, pm, db)
	if err == nil {
		err = h(w, r, p)
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// principalFor authenticates r's credential, notes the principal in ctx,
// the request's context (its access and audit lines name it), and checks
// that it holds permission pm and is allowed database db.
func (s *restServer) principalFor(ctx context.Context, r *http.Request, pm perm, db string) (principal, error) {
	if n := len(r.Header["Authorization"]); n > 1 {
		// Which one counts would be the first's by accident: a proxy's
		// header and a client's could mean different credentials.
		return principal{}, reqErrorf(errInvalid, "the request has %d Authorization headers; send one", n)
	}
	p, err := s.auth.authenticateFrom(bearer(r), s.auth.clientOf(r))
	if err != nil {
		return principal{}, err
	}
	notePrincipal(ctx, p)
	return p, authorize(p, pm, db)
}

// readBody reads the whole request body (readRawBody). Every body is JSON
// text: one that is not UTF-8 is refused (400), and one nested deeper than
// the budget (413), before anything decodes it.
func (s *restServer) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := s.readRawBody(w, r)
	if err != nil {
		return nil, err
	}
	if err := checkJSONText("body", b, s.data.lim.depth()); err != nil {
		return nil, err
	}
	return b, nil
}

// readEntitiesBody reads the body of a PUT, {key: document, ...}, as
// readBody does, with the nesting budget applied to each document, as a
// gRPC payload and an import's line have it: the object around the
// documents is not counted (dataPlane.document checks each document).
func (s *restServer) readEntitiesBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := s.readRawBody(w, r)
	if err != nil {
		return nil, err
	}
	depth := s.data.lim.depth()
	if err := checkJSONText("body", b, depth+1); err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, reqErrorf(errTooLarge, "a document of the body nests arrays and objects deeper than the limit of %d levels", depth)
		}
		return nil, err
	}
	return b, nil
}

// readRawBody reads the whole request body, refusing more than s.maxBody
// bytes with an error that maps to 413.
func (s *restServer) readRawBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.maxBody {
		return nil, reqErrorf(errTooLarge, "request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, s.maxBody)
	}
	b, err := readAllSized(http.MaxBytesReader(w, r.Body, s.maxBody), r.ContentLength)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, reqErrorf(errTooLarge, "request body exceeds the limit of %d bytes", s.maxBody)
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %v: %w", err, errInvalid)
	}
	return b, nil
}

// presizeMax bounds what readAllSized allocates before a byte of the
// body arrives: a client may announce -rest-max-body-size on many
// connections and send nothing.
const presizeMax = 64 << 10

// readAllSized is io.ReadAll of a body whose Content-Length is size (-1
// unknown): read into one buffer of that size and a byte more (where
// io.ReadAll grows from 512 bytes), the byte more to see the end. A body
// announced larger than presizeMax grows as it arrives, as io.ReadAll's.
func readAllSized(r io.Reader, size int64) ([]byte, error) {
	if size < 0 || size > presizeMax {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, size+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			// More than announced: net/http refuses that before the
			// handler; read the rest as io.ReadAll does.
			rest, err := io.ReadAll(r)
			return append(b, rest...), err
		}
	}
}

// decodeJSONBody decodes body, exactly one JSON value, into v: the one
// decoder of every JSON request body. Object members v does not declare
// and data after the value are refused. shape says what the route takes,
// for the client's sentence: "body must be <shape>".
func decodeJSONBody(body []byte, v any, shape string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		return reqErrorf(errInvalid, "body must be %s, with nothing after it", shape)
	}
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return reqErrorf(errInvalid, "body must be %s; it is empty", shape)
	case errors.As(err, &syn):
		return reqErrorf(errInvalid, "body must be %s; it is not valid JSON (at byte %d)", shape, syn.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return reqErrorf(errInvalid, "body must be %s; member %q has the wrong type", shape, typ.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return reqErrorf(errInvalid, "body must be %s; it has the unknown member %s", shape, strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return reqErrorf(errInvalid, "body must be %s", shape)
	}
}

// decodeOptionalBody is decodeJSONBody for a route whose body may be
// empty: an empty body leaves v as it is.
func (s *restServer) decodeOptionalBody(w http.ResponseWriter, r *http.Request, v any, shape string) error {
	body, err := s.readBody(w, r)
	if err != nil || len(body) == 0 {
		return err
	}
	return decodeJSONBody(body, v, shape)
}

// writeError answers err: {"error": sentence} with its status, where the
// sentence is publicMessage's (never the internal chain). It is the one
// place that writes error bodies. A 401 names the scheme
// (WWW-Authenticate), a 429 says when to retry (Retry-After), and so does
// a 503 that only means "try again shortly" (retrySoon: Retry-After: 1);
// a 412 sends the entity's current ETag. The cause of a 5xx is logged
// with the request ID, route and status: at error, but at warn for a
// refusal that only means "try again shortly" (retrySoon: the server
// busy, a handover under way); 401, 403 and 429 are logged at info (the
// chain never holds the credential). A failure that would be a 5xx
// while the client went away (the request's context ended: the client
// closed the connection or reset the stream) is statusClientClosed, 499,
// logged at info: the failure is the client's leaving (a wait for room
// or a worker's answer cut short), and nobody reads the answer, so it is
// not counted as an error of the server.
func (s *restServer) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	gone := code >= 500 && r.Context().Err() != nil
	if gone {
		code = statusClientClosed
	}
	soon := !gone && retrySoon(err)
	id := requestIDFrom(r.Context())
	var rl *rateLimitError
	var pe *preconditionError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(rl.seconds()))
	case code == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="deltadatabase"`)
	case errors.As(err, &pe) && pe.current != "":
		w.Header().Set("ETag", etagOf(pe.current))
	case soon:
		w.Header().Set("Retry-After", retrySoonAfter)
	}
	switch {
	case gone:
		// The client went away (its request context ended) while we
		// worked: nobody reads the answer and nothing failed on our side.
		s.log.InfoContext(r.Context(), "client went away", attrRoute, r.Pattern, attrStatus, code, attrErr, err)
	case soon:
		s.log.WarnContext(r.Context(), "request refused", attrRoute, r.Pattern, attrStatus, code, attrErr, err)
	case code >= 500:
		s.log.ErrorContext(r.Context(), "request failed", attrRoute, r.Pattern, attrStatus, code, attrErr, err)
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusTooManyRequests:
		s.log.InfoContext(r.Context(), "request refused", attrRoute, r.Pattern, attrStatus, code, attrAddr, s.auth.clientOf(r), attrErr, err)
	}
	body := errorBody{Error: publicMessage(err, id)}
	if gone {
		body.Error = fmt.Sprintf(clientClosed, id)
	}
	if ve := schemaIssues(err); ve != nil && code == http.StatusBadRequest {
		body.Errors, body.Omitted = ve.Issues, ve.Omitted
	}
	writeJSON(w, code, body)
}

// retrySoonAfter is the Retry-After of a 503 that only means "try again
// shortly" (retrySoon), in whole seconds as the 429's: a read budget
// frees as answers are sent, and a handover's wait is already behind
// the request (10 s).
const retrySoonAfter = "1"

// errorBody is every error answer: the sentence, and for a document its
// schema refuses (400 on PUT and PATCH) each violation as {path, message}
// (a JSON Pointer into the PUT body {key: document} or into the patched
// document) with the count of those left out.
type errorBody struct {
	Error   string            `json:"error"`
	Errors  []validationIssue `json:"errors,omitempty"`
	Omitted int               `json:"omitted,omitempty"`
}

// writeJSON writes v as a JSON body with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// jsonStream writes a 200 JSON answer piece by piece as its documents are
// read, so that no answer of many documents is held whole in memory.
// Nothing is sent before the first piece: an error until then is answered
// as any error (started is false).
type jsonStream struct {
	w       http.ResponseWriter
	started bool
	// err is the first failed write (the client went away); every later
	// write is skipped and returns it.
	err error
}

// write sends pieces, after the status and content type on the first.
func (j *jsonStream) write(pieces ...[]byte) error {
	if j.err != nil {
		return j.err
	}
	if !j.started {
		j.w.Header().Set("Content-Type", "application/json")
		j.w.WriteHeader(http.StatusOK)
		j.started = true
	}
	for _, p := range pieces {
		if _, err := j.w.Write(p); err != nil {
			j.err = fmt.Errorf("write answer: %w", err)
			return j.err
		}
	}
	return nil
}

// jsonText is v as JSON text; v is a string, a []string or a
// map[string]string, which always encode.
func jsonText(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// endEarly finishes the answer of a stream that stopped at err after it
// started: the answer says where it stopped (a listing's next, a
// get-many's remaining), so the client asks again for the rest and then
// gets the error itself, as any error; the cause is logged here. A client
// gone away is logged at debug.
func (s *restServer) endEarly(r *http.Request, st *jsonStream, err error) {
	if st.err != nil {
		s.log.DebugContext(r.Context(), "answer not sent", attrErr, err)
		return
	}
	s.log.WarnContext(r.Context(), "answer ended early by a failed read; the client asks again for the rest", attrErr, err)
}
