package main

// POST /api/databases/{db}/find and /explain: CouchDB's _find request and
// answer for the parts we support (API.md, Finding documents), parsed
// into a findQuery, planned (findplan.go) and run across the workers
// (findexec.go). The data plane's find, explain and index operations are
// here; the REST handlers are in queries.go.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Find budgets besides the selector's (selector.go) and their defaults:
// the flags -find-max-scan and -find-timeout; an answer's documents are
// bounded by -max-response-bytes like every answer of several.
const (
	defaultFindMaxScan = 100000
	defaultFindTimeout = 10 * time.Second
	// defaultFindLimit is CouchDB's default limit.
	defaultFindLimit = 25
	maxFindLimit     = 10000
	maxFindSkip      = 10000
	maxFindFields    = 100
	maxSortFields    = maxIndexFields
)

func (b budgets) findScan() int64 { return cmp.Or(b.findMaxScan, defaultFindMaxScan) }
func (b budgets) findTime() time.Duration {
	return cmp.Or(b.findTimeout, defaultFindTimeout)
}

// findBytes is the response budget of a find: at least one document of
// the largest size and a margin, so that every page can hold one.
func (b budgets) findBytes() int64 {
	return max(b.response(), b.document()+findMatchOverhead)
}

// findMatchOverhead bounds what a document brings to an answer besides
// its bytes: its key (at most 256 bytes), ETag and JSON punctuation.
const findMatchOverhead = 1 << 10

// findRequest is the body of /find and /explain (CouchDB's _find).
type findRequest struct {
	Selector       json.RawMessage `json:"selector"`
	Fields         []string        `json:"fields"`
	Sort           json.RawMessage `json:"sort"`
	Limit          *int64          `json:"limit"`
	Skip           int64           `json:"skip"`
	Bookmark       string          `json:"bookmark"`
	UseIndex       json.RawMessage `json:"use_index"`
	ExecutionStats bool            `json:"execution_stats"`
	AllowFallback  *bool           `json:"allow_fallback"`
	// Accepted with the one value we implement (checkCouchOptions).
	R         *int  `json:"r"`
	Conflicts *bool `json:"conflicts"`
	Update    *bool `json:"update"`
	Stable    *bool `json:"stable"`
}

// findShape is the body /find takes, for error sentences.
const findShape = `{"selector": {...}, "fields": [...], "sort": [...], "limit": n, "skip": n, "bookmark": "...", "use_index": "name", "execution_stats": bool}`

// unsupportedFindMembers are members of CouchDB's _find we do not
// implement: named in the refusal rather than called unknown.
var unsupportedFindMembers = []string{"partition", "ddoc"}

// parseFindRequest decodes a /find body.
func parseFindRequest(body []byte) (findRequest, error) {
	var req findRequest
	var names []string
	if typeOf(bytes.TrimSpace(body)) == jtObject {
		forMembers(bytes.TrimSpace(body), func(name, _ []byte) bool {
			names = append(names, unquote(name))
			return true
		})
	}
	for _, n := range names {
		if slices.Contains(unsupportedFindMembers, n) {
			return req, reqErrorf(errInvalid, "member %q of CouchDB's _find is not supported", n)
		}
	}
	if err := decodeJSONBody(body, &req, findShape); err != nil {
		return req, err
	}
	return req, checkCouchOptions(req)
}

// checkCouchOptions refuses CouchDB options with a value we do not
// implement: one copy of each document (r 1), no conflicts, indexes always
// current (update true).
func checkCouchOptions(req findRequest) error {
	switch {
	case req.R != nil && *req.R != 1:
		return reqErrorf(errInvalid, `"r": %d is not supported: each document has one copy, so r is 1`, *req.R)
	case req.Conflicts != nil && *req.Conflicts:
		return reqErrorf(errInvalid, `"conflicts": true is not supported: documents have no conflicts`)
	case req.Update != nil && !*req.Update:
		return reqErrorf(errInvalid, `"update": false is not supported: indexes are always current`)
	}
	return nil
}

// findQuery is a parsed find request.
type findQuery struct {
	db     string
	sel    *selector
	fields []string
	// sort is the sort field paths as written; desc the one direction.
	sort []string
	desc bool
	// sortPaths is sort parsed, for the planner.
	sortPaths [][]string
	limit     int64
	skip      int64
	bookmark  *findBookmark
	useIndex  string
	fallback  bool
	stats     bool
	// hash identifies the query's order and matches, for its bookmarks.
	hash string
}

// compileFind checks and parses a find request for database db.
func compileFind(db string, req findRequest) (*findQuery, error) {
	if err := validateDBName(db); err != nil {
		return nil, err
	}
	if req.Selector == nil {
		return nil, reqErrorf(errInvalid, `body must have a "selector": an object ({} matches every document)`)
	}
	sel, err := parseSelector(req.Selector)
	if err != nil {
		return nil, err
	}
	q := &findQuery{db: db, sel: sel, limit: defaultFindLimit, skip: req.Skip, fallback: true, stats: req.ExecutionStats}
	if err := q.setFields(req.Fields); err != nil {
		return nil, err
	}
	if err := q.setSort(req.Sort); err != nil {
		return nil, err
	}
	if err := q.setPaging(req); err != nil {
		return nil, err
	}
	if q.useIndex, err = parseUseIndex(req.UseIndex); err != nil {
		return nil, err
	}
	if req.AllowFallback != nil {
		q.fallback = *req.AllowFallback
	}
	q.hash = queryHash(db, req.Selector, q.sort, q.desc)
	if req.Bookmark != "" {
		if q.bookmark, err = decodeBookmark(req.Bookmark, q.hash); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// setFields checks the fields to return.
func (q *findQuery) setFields(fields []string) error {
	if len(fields) > maxFindFields {
		return reqErrorf(errTooLarge, `"fields" lists %d fields, more than the limit of %d`, len(fields), maxFindFields)
	}
	if _, err := parsePaths(fields); err != nil {
		return err
	}
	q.fields = fields
	return nil
}

// setSort parses CouchDB's sort: an array of field names (ascending) or
// {"field": "asc"|"desc"} objects, every field in the same direction.
func (q *findQuery) setSort(raw json.RawMessage) error {
	if raw == nil || string(raw) == "null" {
		return nil
	}
	if typeOf(raw) != jtArray {
		return reqErrorf(errInvalid, `"sort" must be an array of field names or {"field": "asc"|"desc"} objects`)
	}
	dirs := map[bool]bool{}
	var err error
	forElements(raw, func(e []byte) bool {
		var name string
		var desc bool
		if name, desc, err = sortField(e); err == nil {
			q.sort, dirs[desc] = append(q.sort, name), true
			q.desc = desc
		}
		return err == nil
	})
	switch {
	case err != nil:
		return err
	case len(q.sort) > maxSortFields:
		return reqErrorf(errTooLarge, `"sort" has %d fields, more than the limit of %d`, len(q.sort), maxSortFields)
	case len(dirs) > 1:
		return reqErrorf(errInvalid, `"sort": every field must have the same direction`)
	}
	q.sortPaths, err = parsePaths(q.sort)
	return err
}

// sortField reads one element of sort.
func sortField(e []byte) (name string, desc bool, err error) {
	switch typeOf(e) {
	case jtString:
		return unquote(e), false, nil
	case jtObject:
		n := 0
		var dir string
		forMembers(e, func(k, v []byte) bool {
			n++
			name, dir = unquote(k), unquote(v)
			return true
		})
		if n == 1 && (dir == "asc" || dir == "desc") {
			return name, dir == "desc", nil
		}
	}
	return "", false, reqErrorf(errInvalid, `"sort": each element is a field name or {"field": "asc"|"desc"}`)
}

// setPaging checks limit and skip.
func (q *findQuery) setPaging(req findRequest) error {
	if req.Limit != nil {
		q.limit = *req.Limit
	}
	switch {
	case q.limit < 0 || q.limit > maxFindLimit:
		return reqErrorf(errInvalid, `"limit" must be 0 to %d`, maxFindLimit)
	case q.skip < 0 || q.skip > maxFindSkip:
		return reqErrorf(errInvalid, `"skip" must be 0 to %d (page with "bookmark")`, maxFindSkip)
	}
	return nil
}

// parseUseIndex reads use_index: an index name, or CouchDB's [ddoc, name].
func parseUseIndex(raw json.RawMessage) (string, error) {
	if raw == nil || string(raw) == "null" {
		return "", nil
	}
	var name string
	if json.Unmarshal(raw, &name) == nil {
		return name, nil
	}
	var pair []string
	if json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		return pair[1], nil
	}
	return "", reqErrorf(errInvalid, `"use_index" must be an index name`)
}

// queryHash identifies a query's matches and order: its database,
// selector (compacted) and sort.
func queryHash(db string, selector []byte, sort []string, desc bool) string {
	var buf bytes.Buffer
	json.Compact(&buf, selector)
	h := sha256.New()
	fmt.Fprintf(h, "%q\x00%s\x00%q\x00%v", db, buf.Bytes(), sort, desc)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// findBookmark is where a page ended: opaque to clients (base64 of this
// JSON). It names the query, the plan's order (an index's, or key order,
// or a sorted one) and the position of the last entity dealt with; the
// next page starts strictly after it.
type findBookmark struct {
	Query string `json:"q"`
	Index string `json:"i,omitempty"`
	// Sorted: positions are sort tuples (findplan.go, heap plans).
	Sorted bool   `json:"s,omitempty"`
	Pos    []byte `json:"p"`
}

// encode is the bookmark as a client gets it.
func (b findBookmark) encode() string {
	raw, _ := json.Marshal(b)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// decodeBookmark reads a client's bookmark, which must come from the
// same query.
func decodeBookmark(s, hash string) (*findBookmark, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	var b findBookmark
	if err != nil || json.Unmarshal(raw, &b) != nil {
		return nil, reqErrorf(errInvalid, `"bookmark" is not a bookmark this server gave`)
	}
	if b.Query != hash {
		return nil, reqErrorf(errInvalid, `"bookmark" belongs to another query (another selector or sort)`)
	}
	return &b, nil
}

// findAnswer is the answer of /find: CouchDB's docs, bookmark and
// warning, with our keys, etags and more.
type findAnswer struct {
	Docs []json.RawMessage `json:"docs"`
	// Keys and ETags are each document's entity key and version, in the
	// order of docs.
	Keys  []string `json:"keys"`
	ETags []string `json:"etags"`
	// Bookmark resumes after the last entity this page dealt with.
	Bookmark string `json:"bookmark"`
	// More says that further pages may hold matches: the walk has not
	// reached the end (a limit or a budget ended the page).
	More           bool       `json:"more"`
	Warning        string     `json:"warning,omitempty"`
	ExecutionStats *findStats `json:"execution_stats,omitempty"`
}

// findStats are CouchDB's execution_stats.
type findStats struct {
	TotalKeysExamined int64   `json:"total_keys_examined"`
	TotalDocsExamined int64   `json:"total_docs_examined"`
	ResultsReturned   int     `json:"results_returned"`
	ExecutionTimeMS   float64 `json:"execution_time_ms"`
}

// find runs a query over db. Its documents are held within the in-flight
// read budget (-max-inflight-read-bytes) like every read for an answer:
// it reserves the room of a whole page before it runs (waiting for it as
// a read does, within -find-timeout), gives back what the page did not
// use, and the caller calls release once the answer is sent.
func (d *dataPlane) find(ctx context.Context, db string, req findRequest) (ans *findAnswer, release func(), err error) {
	start := time.Now()
	q, err := compileFind(db, req)
	if err != nil {
		return nil, nil, err
	}
	hold := min(d.lim.findBytes(), d.lim.inflightRead())
	// The page's room is waited for as a read's is, and within the
	// query's own time: without a bound a find behind a full budget
	// waited for as long as its client did.
	if err := d.reads.acquireWithin(ctx, hold, min(callWait, d.lim.findTime()), errBusy); err != nil {
		return nil, nil, fmt.Errorf("find in %s: %w", db, err)
	}
	ans, err = d.runFind(ctx, q, hold)
	if err != nil {
		d.reads.release(hold)
		return nil, nil, err
	}
	used := ans.bytes()
	d.reads.release(hold - used)
	if q.stats {
		ans.ExecutionStats.ResultsReturned = len(ans.Docs)
		ans.ExecutionStats.ExecutionTimeMS = durationMS(time.Since(start))
	} else {
		ans.ExecutionStats = nil
	}
	return ans, func() { d.reads.release(used) }, nil
}

// matchBytes is what one document counts against a find's bytes: its
// size, key, ETag and punctuation.
func matchBytes(doc []byte, key, etag string) int64 {
	return int64(len(doc) + len(key) + len(etag) + 16)
}

// bytes is what the answer's documents count.
func (a *findAnswer) bytes() int64 {
	n := int64(0)
	for i, doc := range a.Docs {
		n += matchBytes(doc, a.Keys[i], a.ETags[i])
	}
	return n
}

// runFind plans and runs q within maxBytes of documents, once more with the workers of the moment when
// the set of workers changed under the first run (a query has no effect
// to undo).
func (d *dataPlane) runFind(ctx context.Context, q *findQuery, maxBytes int64) (*findAnswer, error) {
	fr, ok := d.proc.(findRouter)
	if !ok {
		return nil, fmt.Errorf("find: the processor cannot fan out: %w", errUnavailable)
	}
	var ans *findAnswer
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var plan findPlan
		if plan, err = d.planFind(ctx, q); err != nil {
			return nil, err
		}
		run := newFindRun(d, fr, q, plan, maxBytes)
		if ans, err = run.run(ctx); !retryFind(err) || run.noRoom {
			break
		}
	}
	return ans, err
}

// joinWarnings joins warnings into one sentence list.
func joinWarnings(ws []string) string { return strings.Join(ws, "; ") }
