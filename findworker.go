package main

// The worker's side of a query (FIND, ARCHITECTURE.md, Finding
// documents): evaluate the selector over entities this worker owns, read
// from its cache first and from storage (decrypting) on a miss, and
// answer the matches, projected to the fields asked for, each with its
// position in the order of the answer. The main worker says which
// entities: the keys of a scan, or the range of one of this worker's
// indexes (index.go). Every walk stops at the budgets the call carries
// (matches, entries examined, bytes, a deadline) and says how far it got,
// so that the main worker never answers a partial result as whole.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "deltadatabase/proto"
)

// findParallel is how many entities one FIND call reads and evaluates at
// once: storage reads (S3 above all) dominate a cache miss.
const findParallel = 8

// findCallBytes bounds the documents of one worker's answer to a FIND:
// well under the default gRPC message limit (-grpc-max-recv-msg-size,
// 4 MiB) between the main worker and its workers.
const findCallBytes = 2 << 20

// errEpochMoved: the call was routed under an older set of workers than
// this worker has seen since; the main worker plans again. It is an
// errUnavailable (its gRPC code comes back as one, which retryFind looks
// for), not a kind of failure of its own.
var errEpochMoved = fmt.Errorf("the set of workers changed during the query: %w", errUnavailable)

// workerQuery is a FindOp parsed by the worker.
type workerQuery struct {
	sel    *selector
	fields [][]string
	sort   [][]string
	op     *pb.FindOp
}

// compileWorkerQuery parses op's selector, fields and sort.
func compileWorkerQuery(op *pb.FindOp) (*workerQuery, error) {
	sel, err := parseSelector(op.GetSelector())
	if err != nil {
		return nil, err
	}
	q := &workerQuery{sel: sel, op: op}
	if q.fields, err = parsePaths(op.GetFields()); err != nil {
		return nil, err
	}
	if q.sort, err = parsePaths(op.GetSort()); err != nil {
		return nil, err
	}
	return q, nil
}

// parsePaths parses dotted field paths.
func parsePaths(names []string) ([][]string, error) {
	out := make([][]string, 0, len(names))
	for _, n := range names {
		p, err := parseFieldPath(n)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, reqErrorf(errInvalid, "a field name is empty")
		}
		out = append(out, p)
	}
	return out, nil
}

// find runs a FIND call: a scan of the keys listed, or an index read.
func (w *worker) find(ctx context.Context, s *keyring, req *pb.WorkerRequest) (*pb.WorkerResponse, error) {
	op := req.GetOp()
	db := op.GetDatabaseName()
	if err := validateDBName(db); err != nil {
		return nil, err
	}
	f := op.GetFind()
	w.indexes.keepOnly(db, f.GetLiveIndexes())
	q, err := compileWorkerQuery(f)
	if err != nil {
		return nil, err
	}
	var res *pb.FindResult
	if f.GetIndex() != nil {
		res, err = w.findIndexed(ctx, s, db, req.GetEpoch(), q)
	} else {
		res, err = w.findKeys(ctx, s, db, q)
	}
	if err != nil {
		return nil, fmt.Errorf("find in %s: %w", db, err)
	}
	return &pb.WorkerResponse{Found: res}, nil
}

// findKeys evaluates the keys of a scan.
func (w *worker) findKeys(ctx context.Context, s *keyring, db string, q *workerQuery) (*pb.FindResult, error) {
	keys := q.op.GetKeys()
	cands := make([]candidate, len(keys))
	for i, k := range keys {
		cands[i] = candidate{key: k, walk: []byte(k)}
	}
	out := newFindOutput(q.op)
	if err := w.evaluate(ctx, s, db, q, cands, out); err != nil {
		return nil, err
	}
	out.res.Done = !out.stopped
	return out.res, nil
}

// candidate is an entity to evaluate and its position in the walk: its
// key (a scan) or its index entry.
type candidate struct {
	key  string
	walk []byte
}

// findOutput collects a call's answer within its budgets.
type findOutput struct {
	res      *pb.FindResult
	bytes    int64
	maxBytes int64
	deadline time.Time // zero: none
	stopped  bool      // a budget ended the walk
}

// newFindOutput returns an empty answer with op's budgets.
func newFindOutput(op *pb.FindOp) *findOutput {
	out := &findOutput{res: &pb.FindResult{}, maxBytes: op.GetMaxBytes()}
	if out.maxBytes <= 0 || out.maxBytes > findCallBytes {
		out.maxBytes = findCallBytes
	}
	if d := op.GetDeadlineUnixNano(); d > 0 {
		out.deadline = time.Unix(0, d)
	}
	return out
}

// evaluated is what reading and matching one candidate gave.
type evaluated struct {
	skipped bool // not evaluated: the deadline passed first
	match   *pb.FindMatch
	err     error
}

// evaluate reads and matches cands (findParallel at a time), then adds
// the matches to out in walk order until a budget ends the walk: the
// limit of matches, the bytes of documents (the first match of a call
// always fits), or the deadline. out.res.Through is the last candidate
// fully dealt with.
func (w *worker) evaluate(ctx context.Context, s *keyring, db string, q *workerQuery, cands []candidate, out *findOutput) error {
	results := make([]evaluated, len(cands))
	// The first candidate of a call is evaluated whatever the time, so
	// that every call makes progress.
	first := out.res.Examined == 0
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(findParallel, len(cands)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				deadline := out.deadline
				if first && i == 0 {
					deadline = time.Time{}
				}
				results[i] = w.evaluateOne(ctx, s, db, q, cands[i], deadline)
			}
		}()
	}
	for i := range cands {
		next <- i
	}
	close(next)
	wg.Wait()
	return out.add(q, cands, results)
}

// add appends the matches of results in walk order, stopping at the
// first budget that ends the walk.
func (out *findOutput) add(q *workerQuery, cands []candidate, results []evaluated) error {
	limit := q.op.GetLimit()
	for i, r := range results {
		if r.err != nil {
			return r.err
		}
		if r.skipped || limit > 0 && int64(len(out.res.Matches)) >= limit {
			out.stopped = true
			return nil
		}
		if m := r.match; m != nil {
			size := int64(len(m.Doc) + len(m.Key) + len(m.Version))
			if out.bytes+size > out.maxBytes && len(out.res.Matches) > 0 {
				out.stopped = true
				return nil
			}
			out.bytes += size
			out.res.Matches = append(out.res.Matches, m)
		}
		out.res.Examined++
		out.res.Through = cands[i].walk
	}
	return nil
}

// evaluateOne reads one candidate and matches it; a missing entity
// (deleted since it was listed) matches nothing.
func (w *worker) evaluateOne(ctx context.Context, s *keyring, db string, q *workerQuery, c candidate, deadline time.Time) evaluated {
	if !deadline.IsZero() && time.Now().After(deadline) || ctx.Err() != nil {
		return evaluated{skipped: true}
	}
	e, ok, err := w.findRead(ctx, s, db, c.key)
	if err != nil || !ok || !q.sel.matches(c.key, e.doc) {
		return evaluated{err: err}
	}
	m := &pb.FindMatch{Key: c.key, Version: e.version, Doc: e.doc, Position: c.walk}
	if len(q.sort) > 0 {
		if m.Position, err = sortPosition(q.sort, c.key, e.doc); err != nil {
			return evaluated{err: fmt.Errorf("entity %q: %w", c.key, err)}
		}
	}
	if len(q.fields) > 0 {
		m.Doc = project(q.fields, c.key, e.doc)
	}
	return evaluated{match: m}
}

// findRead reads an entity this worker owns for a query: from the cache,
// else from storage without filling the cache (a scan must not push the
// hot entities out). ok is false when it does not exist.
func (w *worker) findRead(ctx context.Context, s *keyring, db, key string) (cachedEntity, bool, error) {
	if e, ok := w.cache.Peek(cacheKey(db, key)); ok {
		return e, true, nil
	}
	e, err := w.load(ctx, s, db, key)
	if errors.Is(err, errNotFound) {
		return cachedEntity{}, false, nil
	}
	return e, err == nil, err
}

// sortPosition is an entity's place in a sorted answer: the collation keys
// of its sort fields (a missing one sorts first) and its key.
func sortPosition(sort [][]string, key string, doc []byte) ([]byte, error) {
	var pos []byte
	for _, path := range sort {
		v, st := lookup(target{v: doc, key: key, root: true}, path)
		if st != found {
			pos = append(pos, tagMissing)
			continue
		}
		var err error
		if pos, err = appendCollation(pos, v); err != nil {
			return nil, err
		}
	}
	return appendStringKey(pos, key), nil
}

// project returns the document reduced to the fields paths (CouchDB's
// fields): each that exists, at its path, in the order asked; "_id" is
// the entity key.
func project(paths [][]string, key string, doc []byte) []byte {
	out := &projection{}
	for _, p := range paths {
		if v, st := lookup(target{v: doc, key: key, root: true}, p); st == found {
			out.set(p, v)
		}
	}
	return out.appendJSON(nil)
}

// projection is an object being built by project, members in the order
// set. A member holds a value (raw) or a nested projection.
type projection struct {
	members []projMember
}

type projMember struct {
	name string
	raw  []byte
	obj  *projection
}

// set puts v at path. A path below a value already set whole is already
// in it.
func (o *projection) set(path []string, v []byte) {
	i := 0
	for i < len(o.members) && o.members[i].name != path[0] {
		i++
	}
	if i == len(o.members) {
		o.members = append(o.members, projMember{name: path[0]})
	}
	m := &o.members[i]
	switch {
	case len(path) == 1:
		m.raw, m.obj = v, nil
	case m.raw != nil:
	default:
		if m.obj == nil {
			m.obj = &projection{}
		}
		m.obj.set(path[1:], v)
	}
}

// appendJSON appends the projection as a JSON object.
func (o *projection) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	for i, m := range o.members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(dst, jsonString(m.name)...), ':')
		if m.obj != nil {
			dst = m.obj.appendJSON(dst)
		} else {
			dst = append(dst, m.raw...)
		}
	}
	return append(dst, '}')
}
